//! Role policies end to end (issue 19), with real processes on loopback: a
//! `weir broker`, one `weir agent` and two native frameworks (the SDK, in
//! this process) that fill every offer with `sleep` tasks. `weir role set`
//! puts a limit on analytics (it runs exactly that many tasks, never
//! more), lifts it (analytics fills the agent), then gives prod a
//! guarantee on the full cluster. prod's framework arrives; the broker
//! revokes analytics' newest tasks (the framework hears the notice and,
//! like one that cannot checkpoint, waits), kills them at the grace
//! period's end with REASON_CONTAINER_PREEMPTED, and prod reaches its
//! guarantee while analytics keeps the rest. `weir quota list` shows it.
//!
//! Revocable resources: analytics, subscribed with REVOCABLE_RESOURCES,
//! runs tasks on prod's idle headroom from revocable offers; when prod
//! arrives those (and only those) are revoked and killed at once, long
//! before the plain grace period, and prod reaches its guarantee.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::Cluster;
use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto};
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};

const GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Books {
    /// Task id → its states, with the reason of each.
    tasks: BTreeMap<String, Vec<(TaskState, String)>>,
    revocations: Vec<weir_sdk::RevocationNotice>,
    errors: Vec<String>,
    /// Tasks launched on revocable offers.
    revocable: Vec<String>,
}

impl Books {
    fn running(&self) -> usize {
        self.tasks.values().filter(|s| s.last().is_some_and(|(s, _)| *s == TaskState::Running)).count()
    }
}

/// A framework in `role` that fills every offer with `sleep 600` tasks of
/// cpus:1;mem:64 and records what happens to them.
async fn framework(broker: String, name: &'static str, role: &'static str, books: Arc<Mutex<Books>>) {
    run_framework(broker, name, role, false, books).await
}

/// [`framework`], taking revocable offers when `revocable`.
async fn run_framework(broker: String, name: &'static str, role: &'static str, revocable: bool, books: Arc<Mutex<Books>>) {
    let mut config = FrameworkConfig::new(broker, name);
    config.roles = vec![role.to_owned()];
    config.revocable_resources = revocable;
    let mut fw = match Framework::subscribe(config).await {
        Ok(fw) => fw,
        Err(e) => {
            books.lock().unwrap().errors.push(e.to_string());
            return;
        }
    };
    let size = ResourceSet::parse("cpus:1;mem:64").unwrap();
    let mut next = 0;
    loop {
        let event = match fw.next_event().await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                books.lock().unwrap().errors.push(e.to_string());
                return;
            }
        };
        if let Some(notice) = weir_sdk::revocation(&event) {
            books.lock().unwrap().revocations.push(notice);
            continue;
        }
        match event.kind {
            Some(v1::event::Kind::Offers(offers)) => {
                for offer in offers.offers {
                    let mut available = resources_from_proto("offer", &offer.resources).unwrap();
                    let mut tasks = Vec::new();
                    while let Ok(rest) = available.checked_sub(&size) {
                        available = rest;
                        next += 1;
                        let id = format!("{name}-{next}");
                        books.lock().unwrap().tasks.insert(id.clone(), Vec::new());
                        if weir_sdk::offer_is_revocable(&offer) {
                            books.lock().unwrap().revocable.push(id.clone());
                        }
                        tasks.push(v1::TaskInfo {
                            task_id: id.clone(),
                            name: id,
                            agent_id: offer.agent_id.clone(),
                            resources: resources_to_proto(&size),
                            command: Some(v1::CommandInfo { shell: true, value: "sleep 600".into(), ..Default::default() }),
                            ..Default::default()
                        });
                    }
                    let offer_id = weir_model::OfferId::new(offer.id.clone());
                    let _ = if tasks.is_empty() {
                        fw.decline(&[offer_id], Some(Duration::from_millis(200))).await
                    } else {
                        fw.launch(&[offer_id], tasks, Some(Duration::from_millis(200))).await
                    };
                }
            }
            Some(v1::event::Kind::Update(update)) => {
                let status = update.status.unwrap();
                let state = task_state_from_proto("state", status.state).unwrap();
                if let Some(t) = books.lock().unwrap().tasks.get_mut(&status.task_id) {
                    if t.last().map(|(s, _)| *s) != Some(state) {
                        t.push((state, status.reason.clone()));
                    }
                }
                let _ = fw.acknowledge(&status).await;
            }
            Some(v1::event::Kind::Error(e)) => books.lock().unwrap().errors.push(e.message),
            _ => {}
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn weir_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.weir(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "weir {args:?} failed: {stdout}{stderr}");
    stdout
}

#[test]
fn a_limit_holds_and_a_guarantee_is_reclaimed_by_revocation_with_real_processes() {
    let grace = format!("broker.revocation.grace={}s", GRACE.as_secs());
    let cluster = Cluster::start(1, "cpus:4;mem:1024", &["broker.allocation.interval=50ms", &grace]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // A limit: analytics runs 3 one-cpu tasks on a 4-cpu agent, never 4.
    let out = weir_ok(&cluster, &["role", "set", "analytics", "--limit", "cpus:3"]);
    assert_eq!(out, "role analytics: weight 1, band 0, guarantee none, limit cpus:3\n");
    let analytics = Arc::new(Mutex::new(Books::default()));
    rt.spawn(framework(cluster.broker_addr.clone(), "analytics", "analytics", analytics.clone()));
    wait_until("analytics runs 3 tasks", Duration::from_secs(30), || analytics.lock().unwrap().running() == 3);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(analytics.lock().unwrap().running(), 3, "the limit held while analytics kept asking");
    assert_eq!(cluster.state()["roles"].as_array().unwrap().iter().find(|r| r["role"] == "analytics").unwrap()["limit"]["cpus"], 3.0);

    // Lifted: analytics fills the agent.
    weir_ok(&cluster, &["role", "set", "analytics", "--limit", "none"]);
    wait_until("analytics fills the agent", Duration::from_secs(30), || analytics.lock().unwrap().running() == 4);

    // A guarantee the full cluster holds, refused past it with the figures.
    let out = cluster.weir(&["role", "set", "prod", "--guarantee", "cpus:5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("more than the cluster's cpus 4"), "{stderr}");
    weir_ok(&cluster, &["quota", "set", "prod", "--guarantee", "cpus:2;mem:128"]);
    let table = weir_ok(&cluster, &["quota", "list"]);
    eprintln!("weir quota list:\n{table}");
    assert!(table.starts_with("policy: drf; guaranteed roles lack cpus:2;mem:128 (held back from the others)\n"), "{table}");
    let row: Vec<&str> = table.lines().find(|l| l.trim_start().starts_with("prod ")).expect("prod listed").split_whitespace().collect();
    assert_eq!(row, ["prod", "1", "0", "cpus:2;mem:128", "none", "-", "-", "0.0%"]);

    // prod arrives on the full cluster: two of analytics' tasks are revoked.
    let prod = Arc::new(Mutex::new(Books::default()));
    let arrived = Instant::now();
    rt.spawn(framework(cluster.broker_addr.clone(), "prod", "prod", prod.clone()));
    wait_until("a revocation notice", Duration::from_secs(10), || !analytics.lock().unwrap().revocations.is_empty());
    let notice = analytics.lock().unwrap().revocations[0].clone();
    assert_eq!(notice.tasks.len(), 2, "{notice:?}");
    assert_eq!(notice.for_role, "prod");
    let doc = cluster.state();
    assert_eq!(doc["allocation"]["revocations"].as_array().unwrap().len(), 2, "{doc:#}");
    wait_until("prod reaches its guarantee", GRACE + Duration::from_secs(15), || prod.lock().unwrap().running() == 2);
    let took = arrived.elapsed();
    eprintln!("prod reached its guarantee {took:?} after it arrived (grace {GRACE:?})");
    assert!(took >= GRACE, "nothing was killed before the grace period ended");

    // The revoked tasks ended as revoked; analytics keeps the rest.
    let books = analytics.lock().unwrap();
    for (task, _) in &notice.tasks {
        let states = &books.tasks[task.as_str()];
        let (state, reason) = states.last().unwrap();
        assert_eq!((*state, reason.as_str()), (TaskState::Killed, weir_sdk::REVOKED_REASON), "{task}: {states:?}");
    }
    assert_eq!(books.running(), 2);
    assert!(books.errors.is_empty() && prod.lock().unwrap().errors.is_empty(), "{:?}", books.errors);
    drop(books);
    let doc = cluster.wait_for(Duration::from_secs(5), |s| s["allocation"]["revocations"].as_array().is_some_and(|r| r.is_empty()));
    let prod_row = doc["roles"].as_array().unwrap().iter().find(|r| r["role"] == "prod").unwrap().clone();
    assert_eq!(prod_row["consumed"]["cpus"], 2.0, "{prod_row:#}");
    assert_eq!(doc["allocation"]["guarantee_shortfall"]["cpus"], 0.0);
    // Nothing more is revoked: analytics runs on.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(analytics.lock().unwrap().revocations.len(), 1);
    assert_eq!(analytics.lock().unwrap().running(), 2);
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn idle_headroom_runs_revocable_tasks_that_are_revoked_first_and_at_once_with_real_processes() {
    // A plain grace far longer than the test waits: only revocable tasks
    // (grace 0 s by default) can make room in time.
    let cluster = Cluster::start(1, "cpus:4;mem:1024", &["broker.allocation.interval=50ms", "broker.revocation.grace=60s"]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    weir_ok(&cluster, &["quota", "set", "prod", "--guarantee", "cpus:2;mem:128"]);

    // analytics takes revocable offers: two plain tasks, two on prod's headroom.
    let analytics = Arc::new(Mutex::new(Books::default()));
    rt.spawn(run_framework(cluster.broker_addr.clone(), "analytics", "analytics", true, analytics.clone()));
    wait_until("analytics fills the agent", Duration::from_secs(30), || analytics.lock().unwrap().running() == 4);
    let lent = analytics.lock().unwrap().revocable.clone();
    assert_eq!(lent.len(), 2, "two tasks on revocable offers: {lent:?}");
    let doc = cluster.state();
    let role = doc["roles"].as_array().unwrap().iter().find(|r| r["role"] == "analytics").unwrap().clone();
    assert_eq!((role["consumed"]["cpus"].as_f64(), role["revocable"]["cpus"].as_f64()), (Some(4.0), Some(2.0)), "{role:#}");
    let mut marked: Vec<String> =
        doc["tasks"].as_array().unwrap().iter().filter(|t| t["revocable"] == true).map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    marked.sort();
    let mut expected = lent.clone();
    expected.sort();
    assert_eq!(marked, expected);
    assert_eq!(doc["allocation"]["guarantee_shortfall"]["cpus"], 2.0, "lent, not given");

    // prod arrives: the revocable tasks go, at once; the plain ones stay.
    let prod = Arc::new(Mutex::new(Books::default()));
    let arrived = Instant::now();
    rt.spawn(framework(cluster.broker_addr.clone(), "prod", "prod", prod.clone()));
    wait_until("prod reaches its guarantee", Duration::from_secs(15), || prod.lock().unwrap().running() == 2);
    let took = arrived.elapsed();
    eprintln!("prod reached its guarantee {took:?} after it arrived (revocable grace 0s, plain grace 60s)");
    let books = analytics.lock().unwrap();
    assert_eq!(books.revocations.len(), 1, "{:?}", books.revocations);
    let mut named: Vec<String> = books.revocations[0].tasks.iter().map(|(t, _)| t.to_string()).collect();
    named.sort();
    assert_eq!(named, expected, "only the revocable tasks are revoked");
    for task in &lent {
        let (state, reason) = books.tasks[task].last().unwrap().clone();
        assert_eq!((state, reason.as_str()), (TaskState::Killed, weir_sdk::REVOKED_REASON), "{task}");
    }
    assert_eq!(books.running(), 2);
    assert!(books.errors.is_empty() && prod.lock().unwrap().errors.is_empty(), "{:?}", books.errors);
    drop(books);
    rt.shutdown_timeout(Duration::from_secs(1));
}
