//! The broker's `/metrics` read by a real scraper's parser: Python's
//! `prometheus_client` (its strict OpenMetrics parser; scripts/test.sh
//! installs it). Every family must parse, the names the Grafana dashboard
//! (docs/grafana-dashboard.json) is built on must be there, and the launch
//! latency histogram must move when tasks run. The YARN shim's `/metrics`
//! parses too, and shows a drained agent's node DECOMMISSIONED.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::Cluster;

/// Parses OpenMetrics text with `prometheus_client` and prints, as JSON,
/// each family's type and samples `[name, labels, value]`.
const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out[family.name] = {"type": family.type, "samples": [[s.name, s.labels, s.value] for s in family.samples]}
print(json.dumps(out))
"#;

type Families = BTreeMap<String, serde_json::Value>;

fn scrape(cluster: &Cluster) -> (String, Families) {
    scrape_url(&format!("http://{}/metrics", cluster.broker_addr))
}

fn scrape_url(url: &str) -> (String, Families) {
    let text = support::http_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let mut python = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus_client: pip install prometheus_client, as scripts/test.sh does)");
    python.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused /metrics (is it installed? scripts/test.sh installs it):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    (text, serde_json::from_slice(&out.stdout).expect("the parser's JSON"))
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(families: &Families, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let samples = families.get(family).unwrap_or_else(|| panic!("no family {family}"))["samples"].as_array().unwrap();
    samples
        .iter()
        .find(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {samples:?}"))[2]
        .as_f64()
        .unwrap()
}

#[test]
fn metrics_parse_with_prometheus_client_and_the_launch_histogram_moves() {
    let cluster = Cluster::start(1, "cpus:2;mem:1024;disk:1000", &["broker.allocation.interval=50ms"]);
    let (_, before) = scrape(&cluster);
    let families_and_types = [
        ("weir_broker_allocation_cycle_seconds", "histogram"),
        ("weir_broker_launch_latency_seconds", "histogram"),
        ("weir_broker_offers_made", "counter"),
        ("weir_broker_offers_declined", "counter"),
        ("weir_broker_offers_rescinded", "counter"),
        ("weir_broker_tasks_launched", "counter"),
        ("weir_broker_tasks", "gauge"),
        ("weir_broker_agents", "gauge"),
        ("weir_broker_agents_maintenance", "gauge"),
        ("weir_broker_role_resources", "gauge"),
        ("weir_broker_resources_total", "gauge"),
        ("weir_broker_leader", "gauge"),
        ("weir_broker_zk_session_events", "counter"),
    ];
    for (family, kind) in families_and_types {
        assert_eq!(before.get(family).map(|f| f["type"].as_str().unwrap()), Some(kind), "{family}");
    }
    let launches = |f: &Families| sample(f, "weir_broker_launch_latency_seconds", "weir_broker_launch_latency_seconds_count", &[]);
    assert_eq!(launches(&before), 0.0);
    assert_eq!(sample(&before, "weir_broker_agents", "weir_broker_agents", &[("state", "reachable")]), 1.0);
    assert_eq!(sample(&before, "weir_broker_leader", "weir_broker_leader", &[]), 1.0);

    for _ in 0..3 {
        let out = cluster.weir(&["run", "--cpus", "0.5", "--mem", "64", "--", "true"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    cluster.wait_for(Duration::from_secs(10), |s| s["tasks"].as_array().is_some_and(|t| t.is_empty()));
    let (text, after) = scrape(&cluster);
    assert_eq!(launches(&after), 3.0, "{text}");
    let sum = sample(&after, "weir_broker_launch_latency_seconds", "weir_broker_launch_latency_seconds_sum", &[]);
    let inf = sample(&after, "weir_broker_launch_latency_seconds", "weir_broker_launch_latency_seconds_bucket", &[("le", "+Inf")]);
    assert!(sum > 0.0 && sum < 60.0, "three launches took {sum} s in all");
    assert_eq!(inf, 3.0);
    eprintln!("launch latency: {} launches, mean {:.3} s", launches(&after), sum / 3.0);
    assert!(sample(&after, "weir_broker_tasks_launched", "weir_broker_tasks_launched_total", &[]) >= 3.0);
    assert!(sample(&after, "weir_broker_allocation_cycle_seconds", "weir_broker_allocation_cycle_seconds_count", &[]) >= 1.0);
    assert_eq!(sample(&after, "weir_broker_tasks", "weir_broker_tasks", &[("state", "TASK_RUNNING")]), 0.0);
}

#[test]
fn the_shims_metrics_parse_and_a_drained_agent_is_a_decommissioned_node() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::spec_with_free_port("cpus:2;mem:2048;disk:1000;{ports}");
    let (_standalone, broker) = support::spawn_loopback_standalone(dir.path().to_str().unwrap(), &spec, &[]);
    let yarn_site = std::fs::read_to_string(dir.path().join("hadoop-conf/yarn-site.xml")).expect("yarn-site.xml");
    let web = yarn_site
        .split("<name>yarn.resourcemanager.webapp.address</name>")
        .nth(1)
        .and_then(|rest| rest.split("<value>").nth(1))
        .and_then(|rest| rest.split("</value>").next())
        .expect("yarn-site.xml names the web address")
        .to_owned();
    let url = format!("http://{web}/metrics");
    let nodes = |f: &Families, state: &str| sample(f, "weir_yarn_nodes", "weir_yarn_nodes", &[("state", state)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let families = loop {
        let (_, f) = scrape_url(&url);
        if nodes(&f, "RUNNING") == 1.0 {
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "the shim never saw the agent's node: {f:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for (family, kind) in [
        ("weir_yarn_applications", "gauge"),
        ("weir_yarn_containers", "gauge"),
        ("weir_yarn_nodes", "gauge"),
        ("weir_yarn_ipc_calls", "counter"),
    ] {
        assert_eq!(families.get(family).map(|f| f["type"].as_str().unwrap()), Some(kind), "{family}");
    }
    assert_eq!(sample(&families, "weir_yarn_applications", "weir_yarn_applications", &[("state", "RUNNING")]), 0.0);

    let state = support::state_of(&broker);
    let agent = state["agents"][0]["id"].as_str().expect("the agent").to_owned();
    let out = Command::new(support::WEIR).args(["agent", "drain", &agent, "--broker", &broker]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Nothing ran there: drained at once; YARN shows it DECOMMISSIONED.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, f) = scrape_url(&url);
        if nodes(&f, "DECOMMISSIONED") == 1.0 {
            assert_eq!(nodes(&f, "RUNNING"), 0.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the node never showed DECOMMISSIONED: {f:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The dashboard in docs/ is built on exactly the names exported: each
    // `weir_…` it queries is a sample name of the broker's or the shim's.
    let (_, broker_families) = scrape_url(&format!("http://{broker}/metrics"));
    let (_, shim_families) = scrape_url(&url);
    let exported: std::collections::BTreeSet<String> = broker_families
        .values()
        .chain(shim_families.values())
        .flat_map(|f| f["samples"].as_array().unwrap().iter().map(|s| s[0].as_str().unwrap().to_owned()).collect::<Vec<_>>())
        .chain(broker_families.keys().chain(shim_families.keys()).cloned())
        // A counter with no sample yet (no ZooKeeper here) still has its name.
        .chain(broker_families.iter().chain(shim_families.iter()).filter(|(_, f)| f["type"] == "counter").map(|(n, _)| format!("{n}_total")))
        .collect();
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("weir_") {
                let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    let missing: Vec<_> = queried.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "the dashboard queries names nobody exports: {missing:?}");

    let reported = support::http_get(&format!("http://{web}/ws/v1/cluster/nodes?states=DECOMMISSIONED")).unwrap();
    assert!(reported.contains("\"state\":\"DECOMMISSIONED\""), "{reported}");
}
