//! Draining an agent under load, with real processes: a real ZooKeeper,
//! two `weir broker --zk` processes, two agents and a framework (the SDK,
//! in this process) that fills every offer with long tasks. `weir agent
//! drain` takes one agent out with a grace period; the leader is killed
//! right after. The new leader must keep the drain: the tasks on the
//! drained agent end at the deadline (not before, and within the agent's
//! kill grace after it), nothing is launched there from the drain on, the
//! tasks on the other agent run on untouched, the agent reaches DRAINED
//! (shown by `weir agent list`), and `weir agent reactivate` brings its
//! offers back.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{signal, spawn_weir, supervisors_in, working_in, Proc};
use weir_ha::testing::ZkServer;
use weir_ha::ZkAddress;
use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto};
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");
const GRACE: Duration = Duration::from_secs(12);

/// One task as the framework saw it.
#[derive(Debug, Clone)]
struct Seen {
    agent: String,
    launched_at: Instant,
    states: Vec<(TaskState, Instant)>,
}

#[derive(Default)]
struct Books {
    tasks: BTreeMap<String, Seen>,
    /// (agent, deadline) of every AGENT_DRAINING notice.
    drain_notices: Vec<(String, f64)>,
    errors: Vec<String>,
}

/// Fills every offer with `sleep 600` tasks of cpus:0.5;mem:32.
async fn framework(broker: String, books: Arc<Mutex<Books>>) {
    let mut config = FrameworkConfig::new(broker, "drain-test");
    config.failover_timeout = Duration::from_secs(300);
    config.max_reconnect_attempts = 1000;
    let mut fw = Framework::subscribe(config).await.expect("subscribe");
    let size = ResourceSet::parse("cpus:0.5;mem:32").unwrap();
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
        match event.kind {
            Some(v1::event::Kind::Subscribed(_)) => {
                let live: Vec<_> = books
                    .lock()
                    .unwrap()
                    .tasks
                    .iter()
                    .filter(|(_, t)| !t.states.last().is_some_and(|(s, _)| s.is_terminal()))
                    .map(|(id, _)| (weir_model::TaskId::new(id.clone()), None))
                    .collect();
                let _ = fw.reconcile(live).await;
            }
            Some(v1::event::Kind::Offers(offers)) => {
                for offer in offers.offers {
                    let mut available = resources_from_proto("offer", &offer.resources).unwrap();
                    let mut tasks = Vec::new();
                    while let Ok(rest) = available.checked_sub(&size) {
                        available = rest;
                        next += 1;
                        let id = format!("t{next}");
                        books.lock().unwrap().tasks.insert(
                            id.clone(),
                            Seen { agent: offer.agent_id.clone(), launched_at: Instant::now(), states: Vec::new() },
                        );
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
                    if t.states.last().map(|(s, _)| *s) != Some(state) {
                        t.states.push((state, Instant::now()));
                    }
                }
                let _ = fw.acknowledge(&status).await;
            }
            // Like a framework that cannot move its work: it waits for the kill.
            Some(v1::event::Kind::AgentDraining(d)) => books.lock().unwrap().drain_notices.push((d.agent_id, d.deadline)),
            Some(v1::event::Kind::Error(e)) => books.lock().unwrap().errors.push(e.message),
            _ => {}
        }
    }
}

struct Pool {
    zk: ZkAddress,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    brokers: Vec<Option<Proc>>,
    agents: Vec<Proc>,
    rt: tokio::runtime::Runtime,
}

impl Drop for Pool {
    fn drop(&mut self) {
        let dir = self.dir.path().display().to_string();
        for pid in supervisors_in(&dir).into_iter().chain(working_in(&dir)) {
            signal(-pid, 9);
            signal(pid, 9);
        }
    }
}

impl Pool {
    fn start_broker(&mut self, i: usize) {
        let work = self.dir.path().join(format!("broker{i}"));
        let (proc, _) = spawn_weir(
            &format!("broker{i}"),
            &[
                "broker",
                "--zk",
                &self.zk.to_string(),
                "--listen",
                &format!("127.0.0.1:{}", self.ports[i]),
                "--work-dir",
                work.to_str().unwrap(),
                "-D",
                "broker.zk.session.timeout=2s",
                "-D",
                "broker.recovery.timeout=20s",
                "-D",
                "broker.allocation.interval=50ms",
            ],
            "standing by",
        );
        self.brokers[i] = Some(proc);
    }

    fn start_agent(&mut self, i: usize) {
        let work = self.dir.path().join(format!("agent{i}"));
        let (proc, _) = spawn_weir(
            &format!("agent{i}"),
            &[
                "agent",
                "--broker",
                &self.zk.to_string(),
                "--listen",
                "127.0.0.1:0",
                "--resources",
                "cpus:2;mem:512",
                "--work-dir",
                work.to_str().unwrap(),
                "--hostname",
                &format!("agent{i}.test"),
                "-D",
                "agent.kill.grace.period=1s",
                "-D",
                "agent.status.update.retry.interval=300ms",
            ],
            "agent",
        );
        self.agents.push(proc);
    }

    fn leader(&self, not: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let contenders = self.rt.block_on(weir_ha::zk::contenders(&self.zk, Duration::from_secs(5))).unwrap_or_default();
            if let Some(leader) = contenders.iter().find(|c| c.leading) {
                let port: u16 = leader.info.address.rsplit(':').next().unwrap().parse().unwrap();
                let i = self.ports.iter().position(|p| *p == port).expect("leader is one of ours");
                if Some(i) != not {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no leader: {contenders:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn state(&self, i: usize) -> Option<serde_json::Value> {
        let body = support::http_get(&format!("http://127.0.0.1:{}/state", self.ports[i])).ok()?;
        serde_json::from_str(&body).ok()
    }

    /// `weir ARGS… --broker zk://…` to completion: (success, stdout, stderr).
    fn weir(&self, args: &[&str]) -> (bool, String, String) {
        let zk = self.zk.to_string();
        let out = Command::new(WEIR).args(args).args(["--broker", &zk]).stdin(Stdio::null()).output().expect("run weir");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running_on(books: &Books, agent: &str) -> Vec<String> {
    books
        .tasks
        .iter()
        .filter(|(_, t)| t.agent == agent && t.states.last().map(|(s, _)| *s) == Some(TaskState::Running))
        .map(|(id, _)| id.clone())
        .collect()
}

/// The row of `weir agent list` for `agent`, split into words.
fn list_row(pool: &Pool, agent: &str) -> Vec<String> {
    let (ok, out, err) = pool.weir(&["agent", "list"]);
    assert!(ok, "weir agent list failed: {err}");
    eprintln!("weir agent list:\n{out}");
    out.lines().find(|l| l.contains(agent)).unwrap_or_else(|| panic!("{agent} not in\n{out}")).split_whitespace().map(str::to_owned).collect()
}

#[test]
fn a_drain_under_load_ends_the_tasks_there_at_its_deadline_and_survives_a_failover() {
    let server = ZkServer::start();
    let zk = ZkAddress::parse(&server.url("/weir/drain")).unwrap();
    let mut pool = Pool {
        zk: zk.clone(),
        dir: tempfile::tempdir().unwrap(),
        ports: (0..2).map(|_| support::free_port()).collect(),
        brokers: vec![None, None],
        agents: Vec::new(),
        rt: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
    };
    for i in 0..2 {
        pool.start_broker(i);
    }
    let leader = pool.leader(None);
    for i in 0..2 {
        pool.start_agent(i);
    }
    let books = Arc::new(Mutex::new(Books::default()));
    pool.rt.spawn(framework(zk.to_string(), books.clone()));

    // Under load: both agents full (4 tasks each).
    let agents: Vec<String> = {
        let mut ids = Vec::new();
        wait_until("both agents full of running tasks", Duration::from_secs(60), || {
            let b = books.lock().unwrap();
            let mut on: BTreeMap<&str, usize> = BTreeMap::new();
            for t in b.tasks.values().filter(|t| t.states.last().map(|(s, _)| *s) == Some(TaskState::Running)) {
                *on.entry(t.agent.as_str()).or_default() += 1;
            }
            ids = on.keys().map(|s| s.to_string()).collect();
            on.len() == 2 && on.values().all(|n| *n == 4)
        });
        ids
    };
    let (drained, other) = (agents[0].clone(), agents[1].clone());
    let doomed = running_on(&books.lock().unwrap(), &drained);
    let spared = running_on(&books.lock().unwrap(), &other);
    assert_eq!(row_state(&list_row(&pool, &drained)), "ACTIVE");

    let (ok, out, err) = pool.weir(&["agent", "drain", &drained, "--grace", &format!("{}s", GRACE.as_secs())]);
    let drained_at = Instant::now();
    assert!(ok, "weir agent drain failed: {err}");
    assert!(out.contains(&format!("agent {drained} is draining")), "{out}");
    wait_until("the framework to hear of the drain", Duration::from_secs(10), || {
        books.lock().unwrap().drain_notices.iter().any(|(a, _)| *a == drained)
    });
    let row = list_row(&pool, &drained);
    assert_eq!(row_state(&row), "DRAINING", "{row:?}");

    // The leader dies at once; the new one must keep the drain.
    pool.brokers[leader].as_mut().unwrap().kill9();
    let new = pool.leader(Some(leader));
    wait_until("the agents and tasks on the new leader", Duration::from_secs(30), || {
        pool.state(new).is_some_and(|s| {
            s["agents"].as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|a| a["connected"] == true))
                && s["broker"]["recovering"] == false
        })
    });
    let state = pool.state(new).unwrap();
    let agent_doc = state["agents"].as_array().unwrap().iter().find(|a| a["id"] == drained.as_str()).unwrap().clone();
    assert_eq!(agent_doc["drain"], "draining", "{agent_doc:#}");

    // Its tasks end at the deadline: not before, and soon after (the
    // agent's kill grace is 1 s).
    wait_until("the drained agent's tasks to end", GRACE + Duration::from_secs(20), || {
        let b = books.lock().unwrap();
        doomed.iter().all(|id| b.tasks[id].states.last().is_some_and(|(s, _)| s.is_terminal()))
    });
    {
        let b = books.lock().unwrap();
        for id in &doomed {
            let (state, at) = *b.tasks[id].states.last().unwrap();
            assert_eq!(state, TaskState::Killed, "{id}");
            let after = at.duration_since(drained_at);
            assert!(after + Duration::from_millis(500) >= GRACE, "{id} ended {after:?} after the drain, before its {GRACE:?} grace");
            assert!(after <= GRACE + Duration::from_secs(8), "{id} ended {after:?} after the drain");
            eprintln!("{id} on the drained agent: TASK_KILLED {:.2}s after the drain (grace {GRACE:?})", after.as_secs_f64());
        }
    }
    wait_until("DRAINED", Duration::from_secs(10), || {
        pool.state(new).is_some_and(|s| s["agents"].as_array().unwrap().iter().any(|a| a["id"] == drained.as_str() && a["drain"] == "drained"))
    });
    assert_eq!(row_state(&list_row(&pool, &drained)), "DRAINED");

    // Nothing was launched there from the drain on, while offers went on
    // elsewhere: the tasks on the other agent were never touched.
    std::thread::sleep(Duration::from_secs(2));
    {
        let b = books.lock().unwrap();
        let late: Vec<_> = b.tasks.iter().filter(|(_, t)| t.agent == drained && t.launched_at > drained_at).map(|(id, _)| id).collect();
        assert!(late.is_empty(), "launched on the draining agent: {late:?}");
        for id in &spared {
            let states: Vec<_> = b.tasks[id].states.iter().map(|(s, _)| *s).collect();
            assert!(states.iter().all(|s| !s.is_terminal()) && states.last() == Some(&TaskState::Running), "{id} on the other agent: {states:?}");
        }
        assert!(b.errors.is_empty(), "framework errors: {:?}", b.errors);
    }
    for id in &spared {
        let dir = pool.dir.path().display().to_string();
        let alive = supervisors_in(&dir).into_iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&format!("/{id}/.weir-exit.json")))
        });
        assert!(alive, "{id} no longer runs");
    }

    // Reactivated: offered again, and the framework fills it.
    let (ok, out, err) = pool.weir(&["agent", "reactivate", &drained]);
    assert!(ok, "weir agent reactivate failed: {err}");
    assert!(out.contains("active again"), "{out}");
    wait_until("tasks on the reactivated agent", Duration::from_secs(30), || running_on(&books.lock().unwrap(), &drained).len() == 4);
    assert_eq!(row_state(&list_row(&pool, &drained)), "ACTIVE");
}

#[test]
fn mark_gone_refuses_the_agent_and_bad_requests_say_why() {
    let server = ZkServer::start();
    let zk = ZkAddress::parse(&server.url("/weir/gone")).unwrap();
    let mut pool = Pool {
        zk,
        dir: tempfile::tempdir().unwrap(),
        ports: vec![support::free_port()],
        brokers: vec![None],
        agents: Vec::new(),
        rt: tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap(),
    };
    pool.start_broker(0);
    pool.start_agent(0);
    let mut agent = String::new();
    wait_until("the agent", Duration::from_secs(30), || {
        pool.state(0).and_then(|s| s["agents"][0]["id"].as_str().map(str::to_owned)).map(|id| agent = id).is_some()
    });

    let (ok, _, err) = pool.weir(&["agent", "mark-gone", &agent]);
    assert!(!ok);
    assert!(err.contains(&format!("agent {agent} is active; only a drained agent can be marked gone")), "{err}");
    let (ok, _, err) = pool.weir(&["agent", "drain", "no-such-agent"]);
    assert!(!ok);
    assert!(err.contains("agent no-such-agent is not known to the broker"), "{err}");
    let (ok, _, err) = pool.weir(&["agent", "drain", &agent, "--grace", "soon"]);
    assert!(!ok && err.contains("--grace"), "{err}");

    let (ok, out, err) = pool.weir(&["agent", "drain", &agent, "--mark-gone"]);
    assert!(ok, "{err}");
    assert!(out.contains("drained and now gone"), "{out}");
    wait_until("the agent to leave the books", Duration::from_secs(10), || {
        pool.state(0).is_some_and(|s| s["agents"].as_array().unwrap().is_empty() && s["gone_agents"][0] == agent.as_str())
    });
    assert_eq!(row_state(&list_row(&pool, &agent)), "GONE");
    // The agent process was refused and stops; restarted on the same
    // work directory it is refused again.
    let status = pool.agents[0].terminate();
    let _ = status;
    let work = pool.dir.path().join("agent0");
    let out = Command::new(WEIR)
        .args(["agent", "--broker", &pool.zk.to_string(), "--listen", "127.0.0.1:0", "--resources", "cpus:2;mem:512"])
        .args(["--work-dir", work.to_str().unwrap(), "-D", "agent.kill.grace.period=1s"])
        .stdin(Stdio::null())
        .output()
        .expect("run weir agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a gone agent must not run on");
    assert!(stderr.contains("marked gone by an operator"), "{stderr}");
    let _ = pool.brokers[0].as_mut().map(|b| b.terminate());
}

/// The MAINTENANCE column of a `weir agent list` row.
fn row_state(row: &[String]) -> &str {
    row.get(3).map(String::as_str).unwrap_or_default()
}

/// A maintenance window as offers and notices carry it: (start, duration).
type Window = Option<(f64, f64)>;

/// What the maintenance-window framework saw.
#[derive(Default)]
struct WindowBooks {
    /// (agent, the window the offer carried, when).
    offers: Vec<(String, Window, Instant)>,
    /// (agent, deadline, window) of every AGENT_DRAINING notice.
    notices: Vec<(String, f64, Window)>,
    /// task id → (agent, states).
    tasks: BTreeMap<String, (String, Vec<(TaskState, Instant)>)>,
}

/// One `sleep 600` per agent, on its first offer; every other offer is
/// declined for 300 ms, so offers keep coming and each can be read.
async fn window_framework(broker: String, books: Arc<Mutex<WindowBooks>>) {
    let mut fw = Framework::subscribe(FrameworkConfig::new(broker, "window-test")).await.expect("subscribe");
    let size = ResourceSet::parse("cpus:0.5;mem:32").unwrap();
    while let Ok(Some(event)) = fw.next_event().await {
        match event.kind {
            Some(v1::event::Kind::Offers(offers)) => {
                for offer in offers.offers {
                    let window = offer.unavailability.map(|u| (u.start, u.duration));
                    let id = format!("w-{}", offer.agent_id);
                    let first = {
                        let mut b = books.lock().unwrap();
                        b.offers.push((offer.agent_id.clone(), window, Instant::now()));
                        let first = !b.tasks.values().any(|(agent, _)| *agent == offer.agent_id);
                        if first {
                            b.tasks.insert(id.clone(), (offer.agent_id.clone(), Vec::new()));
                        }
                        first
                    };
                    let offer_id = weir_model::OfferId::new(offer.id.clone());
                    let _ = if first {
                        let task = v1::TaskInfo {
                            task_id: id.clone(),
                            name: id,
                            agent_id: offer.agent_id.clone(),
                            resources: resources_to_proto(&size),
                            command: Some(v1::CommandInfo { shell: true, value: "sleep 600".into(), ..Default::default() }),
                            ..Default::default()
                        };
                        fw.launch(&[offer_id], vec![task], Some(Duration::from_millis(300))).await
                    } else {
                        fw.decline(&[offer_id], Some(Duration::from_millis(300))).await
                    };
                }
            }
            Some(v1::event::Kind::Update(update)) => {
                let status = update.status.unwrap();
                let state = task_state_from_proto("state", status.state).unwrap();
                if let Some((_, states)) = books.lock().unwrap().tasks.get_mut(&status.task_id) {
                    states.push((state, Instant::now()));
                }
                let _ = fw.acknowledge(&status).await;
            }
            Some(v1::event::Kind::AgentDraining(d)) => {
                books.lock().unwrap().notices.push((d.agent_id, d.deadline, d.unavailability.map(|u| (u.start, u.duration))));
            }
            _ => {}
        }
    }
}

/// A maintenance window scheduled ahead with `weir agent maintain`, on
/// real processes: until its start the agent is offered with the window
/// on every offer (the other agent's offers carry none) and the
/// framework with a task there is told; at the start the task is killed
/// and the agent is offered to nobody; when the window ends it is offered
/// again, without a window. `weir agent list` shows the window throughout.
#[test]
fn a_maintenance_window_is_on_offers_drains_at_its_start_and_ends_by_itself() {
    let cluster = support::Cluster::start(2, "cpus:2;mem:512", &["broker.agent.heartbeat.interval=1s"]);
    let books = Arc::new(Mutex::new(WindowBooks::default()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.spawn(window_framework(cluster.broker_addr.clone(), books.clone()));
    let running = |books: &WindowBooks| -> Vec<String> {
        books.tasks.values().filter(|(_, s)| s.last().is_some_and(|(st, _)| *st == TaskState::Running)).map(|(a, _)| a.clone()).collect()
    };
    wait_until("a task running on each agent", Duration::from_secs(30), || running(&books.lock().unwrap()).len() == 2);
    let state = cluster.state();
    let agents: Vec<String> = state["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    let (a, b) = (agents[0].clone(), agents[1].clone());

    let out = cluster.weir(&["agent", "maintain", "--start", "+6s", "--duration", "8s", &a]);
    let scheduled_at = Instant::now();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("agent {a} goes into maintenance in")) && text.contains("for 8s"), "{text}");
    let listed = String::from_utf8_lossy(&cluster.weir(&["agent", "list"]).stdout).to_string();
    let row = listed.lines().find(|l| l.contains(&a)).unwrap_or_default().to_owned();
    assert!(row.contains("ACTIVE") && row.contains("in ") && row.contains("for 8s"), "{listed}");

    // Before the start: the notice, and offers from A that carry the window.
    std::thread::sleep(Duration::from_secs(4));
    {
        let books = books.lock().unwrap();
        let notice = books.notices.iter().find(|n| n.0 == a).unwrap_or_else(|| panic!("no AGENT_DRAINING for {a}: {:?}", books.notices));
        let window = notice.2.expect("the notice carries the window");
        assert_eq!((notice.1, window.1), (window.0, 8.0), "the deadline is the window's start");
        let since: Vec<_> = books.offers.iter().filter(|o| o.2 > scheduled_at).collect();
        let from_a: Vec<_> = since.iter().filter(|o| o.0 == a).collect();
        assert!(!from_a.is_empty(), "A was not offered before its window: {since:?}");
        assert!(from_a.iter().all(|o| o.1 == Some(window)), "{from_a:?}");
        assert!(since.iter().filter(|o| o.0 == b).all(|o| o.1.is_none()), "B's offers named a window");
        assert_eq!(running(&books).len(), 2, "a task ended before the window");
    }

    // The start: A's task is killed, B's runs on, A is not offered.
    wait_until("the task on A to end", Duration::from_secs(8), || !running(&books.lock().unwrap()).contains(&a));
    let ended = scheduled_at.elapsed();
    assert!(ended >= Duration::from_millis(5500), "killed {ended:?} after scheduling, before the start");
    let row = String::from_utf8_lossy(&cluster.weir(&["agent", "list"]).stdout).lines().find(|l| l.contains(&a)).unwrap_or_default().to_owned();
    assert!(row.contains("DRAIN") && row.contains("ends in"), "{row}");
    let during = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    {
        let books = books.lock().unwrap();
        assert!(!books.offers.iter().any(|o| o.0 == a && o.2 > during), "A was offered during its window");
        assert!(running(&books).contains(&b));
    }

    // The end (14 s after scheduling): A is offered again, with no window.
    wait_until("an offer from A after its window", Duration::from_secs(15), || {
        books.lock().unwrap().offers.iter().any(|o| o.0 == a && o.2 > scheduled_at + Duration::from_secs(14) && o.1.is_none())
    });
    let row = String::from_utf8_lossy(&cluster.weir(&["agent", "list"]).stdout).lines().find(|l| l.contains(&a)).unwrap_or_default().to_owned();
    assert!(row.contains("ACTIVE") && !row.contains("ends in"), "{row}");
    rt.shutdown_background();
}
