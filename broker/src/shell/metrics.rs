//! `/metrics`: the broker's books as Prometheus metrics, through
//! `prometheus_client`'s registry and OpenMetrics text encoder.
//!
//! Nothing is counted twice: every value is read from the core (its
//! `/state` document and [`Counters`]) when a scrape asks, under the lock
//! once, so a scrape shows one consistent moment. The names, types and
//! labels are the broker's public interface (dashboards, tests, docs):
//! every metric is `weir_broker_*`; counters end in `_total`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use weir_model::{Clock, Resources};

use super::Inner;
use crate::core::state::{ResourcesDoc, StateDoc};
use crate::core::Counters;

/// What `/metrics` answers with: OpenMetrics text.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Task states a live task can be in: each is always exported (0 when no
/// task is in it), so a dashboard's series do not come and go.
const LIVE_TASK_STATES: [&str; 5] = ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_UNREACHABLE"];

/// What the shell measures itself (the books do not know wall time):
/// histograms, observed as things happen.
#[derive(Clone, Debug)]
pub(super) struct ShellMetrics {
    /// Wall time of each tick that ran (part of) an allocation cycle.
    pub allocation_cycle: Histogram,
    /// From a task's LAUNCH to its first TASK_RUNNING (core time).
    pub launch_latency: Histogram,
}

impl ShellMetrics {
    pub fn new() -> ShellMetrics {
        ShellMetrics {
            // 100 µs to about 26 s.
            allocation_cycle: Histogram::new(exponential_buckets(0.0001, 4.0, 10)),
            // 5 ms to about 41 s.
            launch_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
        }
    }
}

/// The broker's registry: the shell's histograms and one collector that
/// reads the books on each scrape.
pub(super) fn registry(inner: Arc<Mutex<Inner>>, clock: Arc<dyn Clock>, shell: &ShellMetrics) -> Registry {
    let mut registry = Registry::with_prefix("weir_broker");
    registry.register(
        "allocation_cycle_seconds",
        "Wall time of each tick that ran an allocation cycle (or a part of a cut-short one).",
        shell.allocation_cycle.clone(),
    );
    registry.register(
        "launch_latency_seconds",
        "Time from a task's LAUNCH to its first TASK_RUNNING.",
        shell.launch_latency.clone(),
    );
    registry.register_collector(Box::new(BooksCollector { inner, clock }));
    registry
}

/// Encodes a registry as OpenMetrics text.
pub(super) fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

struct BooksCollector {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for BooksCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BooksCollector").finish_non_exhaustive()
    }
}

impl Collector for BooksCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let now = self.clock.now();
        let snapshot = {
            let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let leading = inner.lost.borrow().is_none();
            Snapshot {
                doc: inner.core.state(now),
                counters: inner.core.counters().clone(),
                offered_by_role: inner.core.offered_by_role().into_iter().map(|(r, res)| (r.to_string(), res)).collect(),
                last_allocation_seconds: inner.last_allocation_seconds,
                leading,
                zk_session_events: weir_ha::zk::session_events(),
            }
        };
        snapshot.encode(encoder)
    }
}

/// One scrape's worth of the books.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub doc: StateDoc,
    pub counters: Counters,
    pub offered_by_role: BTreeMap<String, Resources>,
    pub last_allocation_seconds: f64,
    /// False once this broker has lost its leadership (it stops serving soon).
    pub leading: bool,
    pub zk_session_events: Vec<(&'static str, u64)>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let doc = &self.doc;
        let connected = |reachable: bool, connected: bool| count(doc.agents.iter().filter(|a| a.reachable == reachable && (!reachable || a.connected == connected)).count());
        let agents = [("reachable", connected(true, true)), ("disconnected", connected(true, false)), ("unreachable", connected(false, false))];
        gauges(&mut encoder, "agents", "Agents known to the broker, by connection state.", "state", &agents)?;
        let drain = |name: &str| count(doc.agents.iter().filter(|a| a.drain == name || (name == "active" && a.drain.is_empty())).count());
        let maintenance = [
            ("active", drain("active")),
            ("draining", drain("draining")),
            ("drained", drain("drained")),
            ("gone", count(doc.gone_agents.len())),
        ];
        gauges(&mut encoder, "agents_maintenance", "Agents by maintenance state (weir agent drain).", "state", &maintenance)?;
        let active = count(doc.frameworks.iter().filter(|f| f.active).count());
        let frameworks = [("active", active), ("inactive", count(doc.frameworks.len()) - active)];
        gauges(&mut encoder, "frameworks", "Frameworks known to the broker.", "state", &frameworks)?;
        let mut tasks: BTreeMap<&str, i64> = LIVE_TASK_STATES.iter().map(|s| (*s, 0)).collect();
        for t in &doc.tasks {
            *tasks.entry(t.state.as_str()).or_default() += 1;
        }
        let tasks: Vec<(&str, i64)> = tasks.into_iter().collect();
        gauges(&mut encoder, "tasks", "Tasks not yet in a terminal state, by state.", "state", &tasks)?;
        gauge(&mut encoder, "offers", "Outstanding offers.", count(doc.totals.offers))?;
        for (name, help, r) in [
            ("resources_total", "Resources of reachable agents.", &doc.totals.total),
            ("resources_used", "Resources used by tasks.", &doc.totals.used),
            ("resources_offered", "Resources in outstanding offers.", &doc.totals.offered),
            ("resources_free", "Resources neither used nor offered.", &doc.totals.free),
        ] {
            gauges(&mut encoder, name, help, "resource", &scalars(r))?;
        }
        let mut family = encoder.encode_descriptor(
            "role_resources",
            "Resources by role: used by its tasks, reserved for it (static and dynamic, on reachable agents), in offers to it.",
            None,
            MetricType::Gauge,
        )?;
        for r in &doc.roles {
            let offered = self.offered_by_role.get(&r.role).map(ResourcesDoc::from).unwrap_or_default();
            for (kind, res) in [("used", &r.allocated), ("reserved", &r.reserved), ("offered", &offered)] {
                for (resource, value) in scalars(res) {
                    let labels = [("role", Escaped(&r.role)), ("kind", Escaped(kind)), ("resource", Escaped(resource))];
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        drop(family);
        let shares: Vec<(&str, f64)> = doc.roles.iter().map(|r| (r.role.as_str(), r.dominant_share)).collect();
        if !shares.is_empty() {
            gauges(&mut encoder, "role_dominant_share", "Dominant share of each role.", "role", &shares)?;
        }
        let c = &self.counters;
        for (name, help, value) in [
            ("offers_made", "Offers sent to frameworks.", c.offers_made),
            ("offers_declined", "Offers declined.", c.offers_declined),
            ("offers_rescinded", "Offers rescinded (timed out, agent lost or drained).", c.offers_rescinded),
            ("offers_accepted", "Offers accepted.", c.offers_accepted),
            ("tasks_launched", "Tasks sent to agents.", c.tasks_launched),
            ("tasks_finished", "Tasks that finished.", c.tasks_finished),
            ("tasks_failed", "Tasks that failed, were lost or gone.", c.tasks_failed),
            ("tasks_killed", "Tasks killed.", c.tasks_killed),
            ("tasks_errored", "Tasks refused at launch (TASK_ERROR).", c.tasks_errored),
            ("status_updates", "Status updates received from agents.", c.status_updates),
            ("allocation_cycles", "Allocation cycles run.", c.allocation_cycles),
            ("agents_registered", "Agent registrations.", c.agents_registered),
            ("agents_reregistered", "Agent re-registrations.", c.agents_reregistered),
            ("agents_unreachable", "Times an agent was marked unreachable.", c.agents_unreachable),
            ("bad_calls", "Calls and messages refused as invalid.", c.bad_calls),
        ] {
            // The encoder adds `_total` to a counter's samples.
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let mut family = encoder.encode_descriptor(
            "zk_session_events",
            "ZooKeeper session events in this process (connected, connect_failed, disconnected, sync_connected, expired, closed, auth_failed).",
            None,
            MetricType::Counter,
        )?;
        for (event, n) in &self.zk_session_events {
            ConstCounter::new(*n).encode(family.encode_family(&[("event", Escaped(event))])?)?;
        }
        drop(family);
        gauge(&mut encoder, "leader", "1 while this broker leads (or runs without an election); 0 once it lost its term.", i64::from(self.leading))?;
        let epoch = i64::try_from(doc.broker.leader_epoch).unwrap_or(i64::MAX);
        gauge(&mut encoder, "leader_epoch", "Leadership term this broker serves (0: no election).", epoch)?;
        let recovering = i64::from(doc.broker.recovering);
        gauge(&mut encoder, "recovering", "1 while a new leader waits for agents to re-register (no offers).", recovering)?;
        let last = ConstGauge::new(self.last_allocation_seconds);
        last.encode(encoder.encode_descriptor(
            "last_allocation_seconds",
            "Wall time of the last tick that ran an allocation cycle.",
            None,
            MetricType::Gauge,
        )?)
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn scalars(r: &ResourcesDoc) -> [(&'static str, f64); 4] {
    [("cpus", r.cpus), ("mem", r.mem), ("disk", r.disk), ("gpus", r.gpus)]
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A gauge with one sample per value of one label.
fn gauges<V>(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, label: &'static str, samples: &[(&str, V)]) -> fmt::Result
where
    V: Copy,
    ConstGauge<V>: EncodeMetric,
{
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value_of_label, value) in samples {
        let labels = [(label, Escaped(value_of_label))];
        ConstGauge::new(*value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A label value escaped as the text format requires (`prometheus_client`
/// writes label values as they are; a role name may hold a `"`).
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use weir_model::{ResourceSet, Role};
    use weir_proto::convert::resources_to_proto;
    use weir_proto::v1;

    use super::*;
    use crate::core::{BrokerCore, BrokerSettings};

    /// One parsed sample: its name, labels and value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// Parses OpenMetrics text strictly enough to catch what a scraper
    /// would refuse: every sample belongs to the family declared just
    /// before it (a counter's samples end in `_total`), label values are
    /// quoted and escaped, values are numbers, families are declared once,
    /// and `# EOF` ends it. Returns each family's type and every sample.
    fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        let mut family: Option<(String, String)> = None;
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if line == "# EOF" {
                assert!(lines.next().is_none(), "text after # EOF");
                return (types, samples);
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').expect("HELP has a name and text");
                assert!(!types.contains_key(name), "{name} declared twice");
                let next = lines.next().expect("TYPE follows HELP");
                let (typed, kind) = next.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')).expect("a TYPE line");
                assert_eq!(typed, name, "TYPE names the family HELP named");
                assert!(["counter", "gauge"].contains(&kind), "{kind}");
                types.insert(name.to_owned(), kind.to_owned());
                family = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let (name_and_labels, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line:?}"));
            let (name, labels) = match name_and_labels.split_once('{') {
                None => (name_and_labels.to_owned(), BTreeMap::new()),
                Some((name, rest)) => (name.to_owned(), parse_labels(rest.strip_suffix('}').expect("labels end in }"))),
            };
            let (family_name, kind) = family.as_ref().expect("a sample after its family's TYPE");
            let expected = if kind == "counter" { format!("{family_name}_total") } else { family_name.clone() };
            assert_eq!(name, expected, "sample {line:?} in family {family_name}");
            samples.push((name, labels, value));
        }
        panic!("no # EOF at the end");
    }

    fn parse_labels(mut text: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        while !text.is_empty() {
            let (key, rest) = text.split_once("=\"").expect("label=\"value\"");
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().expect("closing quote") {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().expect("escaped char").1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => panic!("bad escape \\{c}"),
                    },
                    (_, c) => value.push(c),
                }
            };
            assert!(labels.insert(key.to_owned(), value).is_none(), "label {key} twice");
            text = rest[end + 1..].strip_prefix(',').unwrap_or(&rest[end + 1..]);
        }
        labels
    }

    fn snapshot() -> Snapshot {
        let mut core = BrokerCore::new(BrokerSettings::default(), "m", Duration::ZERO, Duration::ZERO);
        let register = v1::agent_message::Register {
            agent: Some(v1::AgentInfo {
                id: String::new(),
                hostname: "h1".into(),
                resources: resources_to_proto(&ResourceSet::parse("cpus:4;mem:2048").unwrap()),
                attributes: Vec::new(),
                http_address: "127.0.0.1:5051".into(),
            }),
            tasks: Vec::new(),
            ..Default::default()
        };
        core.agent_register(1, &register, Duration::ZERO);
        // A role name may hold a quote: it must come out escaped.
        core.set_weight(Role::new("odd\"role"), 2.0).unwrap();
        core.tick(Duration::from_secs(1));
        Snapshot {
            doc: core.state(Duration::from_secs(1)),
            counters: core.counters().clone(),
            offered_by_role: core.offered_by_role().into_iter().map(|(r, res)| (r.to_string(), res)).collect(),
            last_allocation_seconds: 0.25,
            leading: true,
            zk_session_events: vec![("connected", 2), ("expired", 1)],
        }
    }

    #[test]
    fn metrics_parse_and_keep_their_names_types_and_labels() {
        let mut registry = Registry::with_prefix("weir_broker");
        registry.register_collector(Box::new(snapshot()));
        let text = encode(&registry).unwrap();
        let (types, samples) = parse(&text);
        let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
            let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            samples.iter().find(|(n, l, _)| n == name && *l == labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}")).2
        };

        assert_eq!(value("weir_broker_agents", &[("state", "reachable")]), 1.0);
        assert_eq!(value("weir_broker_agents", &[("state", "unreachable")]), 0.0);
        assert_eq!(value("weir_broker_agents", &[("state", "disconnected")]), 0.0);
        assert_eq!(value("weir_broker_agents_maintenance", &[("state", "active")]), 1.0);
        for state in ["draining", "drained", "gone"] {
            assert_eq!(value("weir_broker_agents_maintenance", &[("state", state)]), 0.0);
        }
        assert!(text.contains("weir_broker_agents{state=\"reachable\"} 1\n"), "counts print as integers:\n{text}");
        assert_eq!(value("weir_broker_frameworks", &[("state", "active")]), 0.0);
        assert_eq!(value("weir_broker_frameworks", &[("state", "inactive")]), 0.0);
        for state in LIVE_TASK_STATES {
            assert_eq!(value("weir_broker_tasks", &[("state", state)]), 0.0);
        }
        assert_eq!(value("weir_broker_offers", &[]), 0.0);
        for family in ["resources_total", "resources_used", "resources_offered", "resources_free"] {
            for resource in ["cpus", "mem", "disk", "gpus"] {
                value(&format!("weir_broker_{family}"), &[("resource", resource)]);
            }
        }
        assert_eq!(value("weir_broker_resources_total", &[("resource", "cpus")]), 4.0);
        assert_eq!(value("weir_broker_resources_free", &[("resource", "mem")]), 2048.0);
        value("weir_broker_role_dominant_share", &[("role", "odd\"role")]);
        // Nobody subscribed: the whole agent sits unoffered, so every role shows 0.
        for kind in ["used", "reserved", "offered"] {
            assert_eq!(value("weir_broker_role_resources", &[("role", "odd\"role"), ("kind", kind), ("resource", "cpus")]), 0.0);
        }
        assert_eq!(types.get("weir_broker_zk_session_events").map(String::as_str), Some("counter"));
        assert_eq!(value("weir_broker_zk_session_events_total", &[("event", "connected")]), 2.0);
        assert_eq!(value("weir_broker_zk_session_events_total", &[("event", "expired")]), 1.0);
        assert_eq!(value("weir_broker_leader", &[]), 1.0);
        for counter in [
            "offers_made", "offers_declined", "offers_rescinded", "offers_accepted", "tasks_launched", "tasks_finished",
            "tasks_failed", "tasks_killed", "tasks_errored", "status_updates", "allocation_cycles", "agents_registered",
            "agents_reregistered", "agents_unreachable", "bad_calls",
        ] {
            assert_eq!(types.get(&format!("weir_broker_{counter}")).map(String::as_str), Some("counter"), "{counter}");
            value(&format!("weir_broker_{counter}_total"), &[]);
        }
        assert_eq!(value("weir_broker_agents_registered_total", &[]), 1.0);
        assert_eq!(value("weir_broker_leader_epoch", &[]), 0.0);
        assert_eq!(value("weir_broker_recovering", &[]), 0.0);
        assert_eq!(value("weir_broker_last_allocation_seconds", &[]), 0.25);
        let gauges = types.iter().filter(|(_, kind)| *kind == "gauge").count();
        assert_eq!((gauges, types.len()), (15, 31), "{types:?}");
    }
}
