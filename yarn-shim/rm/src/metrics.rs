//! `/metrics` on the shim's web port: YARN's books as Prometheus metrics
//! (OpenMetrics text through `prometheus_client`), every name
//! `weir_yarn_*`.
//!
//! Read from the core at each scrape (one job on its channel, so one
//! consistent moment), plus the IPC server's call counts
//! (`weir_yarn_ipc::server::calls`). Every application and node state is
//! always exported, 0 when empty, so dashboard series do not come and go.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::core::{CoreHandle, CoreStopped};
use crate::rm_core::{AppFilter, AppState, NodeState};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Node states as YARN names them.
const NODE_STATES: [(NodeState, &str); 5] = [
    (NodeState::Running, "RUNNING"),
    (NodeState::Unhealthy, "UNHEALTHY"),
    (NodeState::Lost, "LOST"),
    (NodeState::Decommissioning, "DECOMMISSIONING"),
    (NodeState::Decommissioned, "DECOMMISSIONED"),
];

/// One scrape's worth of the shim's books.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Applications the shim still remembers, by YARN state.
    pub applications: Vec<(&'static str, i64)>,
    /// Containers the scheduler holds, by state.
    pub containers: Vec<(&'static str, i64)>,
    pub nodes: Vec<(&'static str, i64)>,
    /// ((protocol, method, result), calls).
    pub ipc_calls: Vec<((String, String, &'static str), u64)>,
}

/// Reads the books and encodes them.
pub async fn scrape(core: &CoreHandle) -> Result<String, CoreStopped> {
    let mut snapshot = core
        .call(|core, _| {
            let rm = core.rm();
            let apps = rm.applications(&AppFilter::default());
            let applications = AppState::ALL
                .iter()
                .map(|s| (s.java_name(), count(apps.iter().filter(|a| a.state == *s).count())))
                .collect();
            let containers = core.scheduler().container_counts().iter().map(|(s, n)| (*s, count(*n))).collect();
            let nodes = NODE_STATES.iter().map(|(s, name)| (*name, count(rm.nodes(&[*s]).len()))).collect();
            Snapshot { applications, containers, nodes, ipc_calls: Vec::new() }
        })
        .await?;
    snapshot.ipc_calls = weir_yarn_ipc::server::calls::counts();
    Ok(encode(snapshot))
}

/// OpenMetrics text of one snapshot.
pub fn encode(snapshot: Snapshot) -> String {
    let mut registry = Registry::with_prefix("weir_yarn");
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        for (name, help, samples) in [
            ("applications", "YARN applications the shim remembers, by state.", &self.applications),
            ("containers", "YARN containers the scheduler holds, by state.", &self.containers),
            ("nodes", "YARN nodes (the broker's agents), by state.", &self.nodes),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (state, n) in samples {
                ConstGauge::new(*n).encode(family.encode_family(&[("state", *state)])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "ipc_calls",
            "Hadoop IPC calls served, by protocol, method and result (success, error, server_error, no_such_method, no_such_protocol).",
            None,
            MetricType::Counter,
        )?;
        for ((protocol, method, result), n) in &self.ipc_calls {
            // Protocol and method names are Java identifiers with dots (an
            // unknown one is `-`): nothing to escape.
            let labels = [("protocol", protocol.as_str()), ("method", method.as_str()), ("result", *result)];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_a_sample_and_counters_end_in_total() {
        let text = encode(Snapshot {
            applications: AppState::ALL.iter().map(|s| (s.java_name(), i64::from(*s == AppState::Running))).collect(),
            containers: vec![("ALLOCATED", 0), ("RUNNING", 2), ("COMPLETE", 5)],
            nodes: NODE_STATES.iter().map(|(_, n)| (*n, 1)).collect(),
            ipc_calls: vec![(("org.apache.hadoop.yarn.api.ApplicationClientProtocolPB".into(), "getClusterNodes".into(), "success"), 3)],
        });
        assert!(text.contains("# TYPE weir_yarn_applications gauge\n"), "{text}");
        assert!(text.contains("weir_yarn_applications{state=\"RUNNING\"} 1\n"), "{text}");
        assert!(text.contains("weir_yarn_applications{state=\"KILLED\"} 0\n"), "{text}");
        assert!(text.contains("weir_yarn_containers{state=\"RUNNING\"} 2\n"), "{text}");
        assert!(text.contains("weir_yarn_nodes{state=\"DECOMMISSIONING\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE weir_yarn_ipc_calls counter\n"), "{text}");
        assert!(
            text.contains(
                "weir_yarn_ipc_calls_total{protocol=\"org.apache.hadoop.yarn.api.ApplicationClientProtocolPB\",method=\"getClusterNodes\",result=\"success\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
