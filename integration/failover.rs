//! Broker failover with a real ZooKeeper (Debian's `zookeeper` package),
//! three `weir broker --zk` processes, two agents following `zk://`, and a
//! framework (the SDK, in this process) that keeps long tasks running and
//! short tasks coming. The leader is killed with SIGKILL several times,
//! then stopped (SIGSTOP) until its ZooKeeper session expires. After each
//! failover: a new leader, agents and framework follow it, no long task is
//! lost or duplicated, status updates and offers resume. The time from the
//! leader's death to the first offer of the new leader is printed (see
//! docs/BENCHMARKS.md); it is measured here, not asserted.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{signal, spawn_weir, supervisors_in, working_in, Proc};
use weir_ha::testing::ZkServer;
use weir_ha::ZkAddress;
use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto};
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};

/// The brokers' ZooKeeper session timeout; `WEIR_FAILOVER_SESSION_TIMEOUT`
/// overrides it (0.4 s to 4 s: the test server's tick is 200 ms).
fn session_timeout() -> String {
    std::env::var("WEIR_FAILOVER_SESSION_TIMEOUT").unwrap_or_else(|_| "2s".to_owned())
}
const LONG_TASKS: usize = 4;

/// What the framework has seen, shared with the test's checks.
#[derive(Default)]
struct Seen {
    /// When each batch of offers arrived, with the epoch of the broker.
    offers: Vec<(Instant, u64)>,
    /// Every state each task went through, in order.
    states: BTreeMap<String, Vec<TaskState>>,
    /// Epochs of every SUBSCRIBED.
    subscriptions: Vec<u64>,
    /// Offer ids ever received, to catch an offer made twice.
    offer_ids: Vec<String>,
    errors: Vec<String>,
    next_short: usize,
}

impl Seen {
    fn last_state(&self, task: &str) -> Option<TaskState> {
        self.states.get(task).and_then(|s| s.last().copied())
    }
}

fn resources(spec: &str) -> ResourceSet {
    ResourceSet::parse(spec).unwrap()
}

/// Keeps LONG_TASKS long tasks alive and one short task after another.
async fn framework(broker: String, seen: Arc<Mutex<Seen>>) {
    let mut config = FrameworkConfig::new(broker, "failover-test");
    config.failover_timeout = Duration::from_secs(300);
    config.max_reconnect_attempts = 1000;
    let mut fw = Framework::subscribe(config).await.expect("subscribe");
    seen.lock().unwrap().subscriptions.push(fw.leader_epoch());
    let long = resources("cpus:0.25;mem:32");
    let short = resources("cpus:0.1;mem:16");
    loop {
        let event = match fw.next_event().await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                seen.lock().unwrap().errors.push(e.to_string());
                return;
            }
        };
        match event.kind {
            Some(v1::event::Kind::Subscribed(_)) => {
                let tasks: Vec<_> = {
                    let mut s = seen.lock().unwrap();
                    s.subscriptions.push(fw.leader_epoch());
                    s.states
                        .iter()
                        .filter(|(_, st)| !st.last().unwrap().is_terminal())
                        .map(|(t, _)| (weir_model::TaskId::new(t.clone()), None))
                        .collect()
                };
                let _ = fw.reconcile(tasks).await;
            }
            Some(v1::event::Kind::Offers(offers)) => {
                let epoch = fw.leader_epoch();
                for offer in offers.offers {
                    let mut tasks = Vec::new();
                    {
                        let mut s = seen.lock().unwrap();
                        s.offers.push((Instant::now(), epoch));
                        if s.offer_ids.contains(&offer.id) {
                            s.errors.push(format!("offer {} arrived twice", offer.id));
                        }
                        s.offer_ids.push(offer.id.clone());
                        let mut available = resources_from_proto("offer", &offer.resources).unwrap();
                        let longs = s.states.keys().filter(|k| k.starts_with("long-")).count();
                        let mut plan = Vec::new();
                        for i in longs..LONG_TASKS {
                            plan.push((format!("long-{i}"), long.clone(), "sleep 600"));
                        }
                        let shorts_running = s
                            .states
                            .iter()
                            .filter(|(k, st)| k.starts_with("short-") && !st.last().unwrap().is_terminal())
                            .count();
                        if shorts_running == 0 {
                            plan.push((format!("short-{}", s.next_short), short.clone(), "sleep 0.3"));
                        }
                        for (id, wanted, cmd) in plan {
                            let Ok(rest) = available.checked_sub(&wanted) else { continue };
                            available = rest;
                            if id.starts_with("short-") {
                                s.next_short += 1;
                            }
                            s.states.insert(id.clone(), vec![TaskState::Staging]);
                            tasks.push(v1::TaskInfo {
                                task_id: id.clone(),
                                name: id,
                                agent_id: offer.agent_id.clone(),
                                resources: resources_to_proto(&wanted),
                                command: Some(v1::CommandInfo { shell: true, value: cmd.to_owned(), ..Default::default() }),
                                ..Default::default()
                            });
                        }
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
                {
                    let mut s = seen.lock().unwrap();
                    let states = s.states.entry(status.task_id.clone()).or_default();
                    if states.last() != Some(&state) {
                        states.push(state);
                    }
                }
                let _ = fw.acknowledge(&status).await;
            }
            Some(v1::event::Kind::Error(e)) => seen.lock().unwrap().errors.push(e.message),
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
        for b in self.brokers.iter().flatten() {
            signal(b.pid(), 18); // SIGCONT, in case a check failed while it was stopped
        }
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
                &format!("broker.zk.session.timeout={}", session_timeout()),
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
                "agent.status.update.retry.interval=300ms",
            ],
            "agent",
        );
        self.agents.push(proc);
    }

    /// The index of the leading broker, once ZooKeeper names one that is
    /// not `not`.
    fn wait_leader(&self, not: Option<usize>, timeout: Duration) -> (usize, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            let contenders = self.rt.block_on(weir_ha::zk::contenders(&self.zk, Duration::from_secs(5))).unwrap_or_default();
            if let Some(leader) = contenders.iter().find(|c| c.leading) {
                let port: u16 = leader.info.address.rsplit(':').next().unwrap().parse().unwrap();
                let i = self.ports.iter().position(|p| *p == port).expect("leader is one of ours");
                if Some(i) != not {
                    return (i, leader.info.epoch);
                }
            }
            assert!(Instant::now() < deadline, "no new leader within {timeout:?}: {contenders:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn state(&self, i: usize) -> Option<serde_json::Value> {
        let body = support::http_get(&format!("http://127.0.0.1:{}/state", self.ports[i])).ok()?;
        serde_json::from_str(&body).ok()
    }
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many times a task runs on this machine: one supervisor
/// (`weir-supervisor`, started per launch with the task's sandbox in its
/// arguments) per launch, alive.
fn task_instances(dir: &str, task: &str) -> usize {
    supervisors_in(dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&format!("/{task}/.weir-exit.json")))
        })
        .count()
}

#[derive(Clone, Copy, Debug)]
enum Failure {
    Kill,
    SessionExpiry,
}

/// Runs the pool through `failures`; returns the failover times.
fn run(failures: &[Failure]) -> Vec<Duration> {
    let server = ZkServer::start();
    let zk = ZkAddress::parse(&server.url("/weir/failover")).unwrap();
    let mut pool = Pool {
        zk: zk.clone(),
        dir: tempfile::tempdir().unwrap(),
        ports: (0..3).map(|_| support::free_port()).collect(),
        brokers: vec![None, None, None],
        agents: Vec::new(),
        rt: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
    };
    let dir = pool.dir.path().display().to_string();
    for i in 0..3 {
        pool.start_broker(i);
    }
    let (mut leader, mut epoch) = pool.wait_leader(None, Duration::from_secs(30));
    for i in 0..2 {
        pool.start_agent(i);
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    pool.rt.spawn(framework(zk.to_string(), seen.clone()));

    let running_longs = |s: &Seen| (0..LONG_TASKS).filter(|i| s.last_state(&format!("long-{i}")) == Some(TaskState::Running)).count();
    wait_until("the long tasks to run", Duration::from_secs(60), || running_longs(&seen.lock().unwrap()) == LONG_TASKS);
    wait_until("short tasks to finish", Duration::from_secs(30), || {
        let s = seen.lock().unwrap();
        s.states.iter().filter(|(k, st)| k.starts_with("short-") && st.last() == Some(&TaskState::Finished)).count() >= 2
    });

    let mut times = Vec::new();
    for (round, failure) in failures.iter().enumerate() {
        let finished_shorts = |s: &Seen| {
            s.states.iter().filter(|(k, st)| k.starts_with("short-") && st.last() == Some(&TaskState::Finished)).count()
        };
        let shorts_before = finished_shorts(&seen.lock().unwrap());
        let old = leader;
        let died = Instant::now();
        let old_pid = pool.brokers[old].as_ref().unwrap().pid();
        match failure {
            Failure::Kill => pool.brokers[old].as_mut().unwrap().kill9(),
            Failure::SessionExpiry => signal(old_pid, 19), // SIGSTOP
        }
        eprintln!("round {round}: {failure:?} on broker{old} (epoch {epoch})");
        let (new, new_epoch) = pool.wait_leader(Some(old), Duration::from_secs(30));
        assert!(new_epoch > epoch, "epochs must grow: {epoch} then {new_epoch}");
        // Offers resume: the first offer made in the new epoch.
        wait_until("offers from the new leader", Duration::from_secs(40), || {
            seen.lock().unwrap().offers.iter().any(|(at, e)| *at > died && *e == new_epoch)
        });
        let resumed = seen.lock().unwrap().offers.iter().find(|(at, e)| *at > died && *e == new_epoch).unwrap().0;
        times.push(resumed - died);
        eprintln!("round {round}: broker{new} leads epoch {new_epoch}; offers resumed after {:?}", resumed - died);

        // Status updates continue: a short task launched now finishes.
        wait_until("a short task to finish after the failover", Duration::from_secs(30), || {
            finished_shorts(&seen.lock().unwrap()) > shorts_before
        });
        // Both agents follow the new leader, and it knows every long task
        // exactly once, running.
        wait_until("agents and tasks on the new leader", Duration::from_secs(30), || {
            let Some(state) = pool.state(new) else { return false };
            let agents = state["agents"].as_array().unwrap();
            let longs: Vec<_> = state["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["id"].as_str().unwrap_or_default().starts_with("long-") && t["state"] == "TASK_RUNNING")
                .collect();
            agents.len() == 2 && agents.iter().all(|a| a["reachable"] == true && a["connected"] == true) && longs.len() == LONG_TASKS
        });
        {
            let s = seen.lock().unwrap();
            for i in 0..LONG_TASKS {
                let id = format!("long-{i}");
                let states = &s.states[&id];
                assert!(
                    states.iter().all(|st| !st.is_terminal()),
                    "{id} must survive every failover, went through {states:?}"
                );
            }
            assert!(s.errors.is_empty(), "framework errors: {:?}", s.errors);
            assert_eq!(s.subscriptions.last(), Some(&new_epoch), "the framework follows the new leader");
        }
        for i in 0..LONG_TASKS {
            assert_eq!(task_instances(&dir, &format!("long-{i}")), 1, "long-{i} must run exactly once");
        }

        // The old broker: after a kill, start it again as a standby; after
        // a session expiry, let it run again and check it stepped down.
        match failure {
            Failure::Kill => pool.start_broker(old),
            Failure::SessionExpiry => {
                signal(old_pid, 18); // SIGCONT
                wait_until("the deposed leader to stop serving", Duration::from_secs(10), || pool.state(old).is_none());
                // It campaigns again as a standby, and is never the leader
                // while the new one lives.
                std::thread::sleep(Duration::from_millis(500));
                assert_eq!(pool.wait_leader(None, Duration::from_secs(5)).0, new, "the deposed leader must not take over");
            }
        }
        leader = new;
        epoch = new_epoch;
    }
    // No offer id ever arrived twice, and nothing arrived from an old
    // epoch after a newer one subscribed.
    let s = seen.lock().unwrap();
    assert!(s.errors.is_empty(), "framework errors: {:?}", s.errors);
    let mut max_epoch = 0;
    for (_, e) in &s.offers {
        assert!(*e >= max_epoch, "an offer from epoch {e} after epoch {max_epoch}");
        max_epoch = *e;
    }
    times
}

fn report(kind: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    eprintln!(
        "failover ({kind}, session timeout {}): {} runs, median {:.2}s, all {:?}",
        session_timeout(),
        times.len(),
        median.as_secs_f64(),
        times.iter().map(|t| format!("{:.2}s", t.as_secs_f64())).collect::<Vec<_>>()
    );
}

#[test]
fn leader_killed_three_times_nothing_lost_offers_resume() {
    let times = run(&[Failure::Kill, Failure::Kill, Failure::Kill]);
    report("kill -9", &times);
}

#[test]
fn leader_session_expires_it_steps_down_and_the_pool_follows_the_new_one() {
    let times = run(&[Failure::SessionExpiry, Failure::Kill]);
    report("session expiry, then kill -9", &times);
}

/// (status line, Location header) of a GET.
fn head_of(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.lines().next()?.to_owned();
    let location = text.lines().find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: "))).unwrap_or_default().to_owned();
    Some((status, location))
}

/// A bookmarked UI address of any broker leads to the leader's page.
#[test]
fn a_standby_redirects_the_web_ui_to_the_leader() {
    let server = ZkServer::start();
    let mut pool = Pool {
        zk: ZkAddress::parse(&server.url("/weir/ui")).unwrap(),
        dir: tempfile::tempdir().unwrap(),
        ports: (0..2).map(|_| support::free_port()).collect(),
        brokers: vec![None, None],
        agents: Vec::new(),
        rt: tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap(),
    };
    pool.start_broker(0);
    pool.start_broker(1);
    let (leader, _) = pool.wait_leader(None, Duration::from_secs(30));
    let standby = 1 - leader;
    let path = "/ui/tasks?q=a%20b&page=2";
    let mut last = None;
    wait_until("the standby to redirect", Duration::from_secs(20), || {
        last = head_of(pool.ports[standby], path);
        last.as_ref().is_some_and(|(status, _)| status.contains(" 307 "))
    });
    let (_, location) = last.unwrap();
    assert_eq!(location, format!("http://127.0.0.1:{}{path}", pool.ports[leader]));
    let (status, _) = head_of(pool.ports[leader], path).unwrap();
    assert!(status.contains(" 200 "), "the leader serves the page: {status}");
}

#[test]
fn a_broker_with_zookeeper_credentials_leads_and_nobody_else_writes_its_znodes() {
    use std::os::unix::fs::PermissionsExt;
    let server = ZkServer::start();
    let url = server.url("/weir/secured");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("zk-auth");
    std::fs::write(&secret, "weir:s3cret\n").unwrap();
    let define = format!("broker.zk.auth.file={}", secret.display());
    let work = dir.path().join("broker");
    let args = ["broker", "--zk", &url, "--listen", "127.0.0.1:0", "--work-dir", work.to_str().unwrap(), "-D", &define];
    // A credentials file others may read is refused at start, saying so.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(support::WEIR).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("broker.zk.auth.file") && stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "the secret was printed: {stderr}");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_broker, _) = spawn_weir("secured-broker", &args, "standing by");
    let plain = ZkAddress::parse(&url).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Found without credentials, as agents and frameworks find it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rt.block_on(weir_ha::zk::contenders(&plain, Duration::from_secs(5))).unwrap_or_default().iter().any(|c| c.leading) {
        assert!(Instant::now() < deadline, "the broker never led");
        std::thread::sleep(Duration::from_millis(200));
    }
    // But without them nothing of the broker's can be written.
    let write = rt.block_on(async {
        let session = weir_ha::zk::ZkSession::connect(&plain, Duration::from_secs(4)).await?;
        let record = weir_ha::Record { collection: "weights".into(), key: "mine".into(), value: b"100".to_vec() };
        weir_ha::Registry::apply(&weir_ha::zk::ZkRegistry::new(session), vec![weir_ha::Write::Put(record)]).await
    });
    let err = write.expect_err("an unauthenticated client wrote to the broker's registry").to_string();
    assert!(err.to_lowercase().contains("auth"), "{err}");
}
