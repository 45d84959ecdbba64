//! The shared pool end to end: a real `weir broker` and real `weir agent`
//! processes on loopback, driven by `weir run`, `weir status` and the SDK.

mod support;

use std::time::{Duration, Instant};

use support::{kill_marked, pids_with, Cluster};
use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto};
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};

const SPEC: &str = "cpus:2;mem:1024;disk:1000;ports:[31000-31010]";

#[test]
fn run_streams_output_and_exits_with_the_task_code() {
    let cluster = Cluster::start(2, SPEC, &[]);
    let out = cluster.weir(&["run", "--cpus", "0.5", "--mem", "64", "--", "echo hello-from-weir; echo to-stderr >&2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("hello-from-weir"), "stdout: {stdout}");
    assert!(stderr.contains("to-stderr"), "stderr: {stderr}");
    assert!(stderr.contains("TASK_FINISHED"), "stderr: {stderr}");

    // `weir logs` reads the finished task's sandbox through its agent.
    let framework = stderr
        .split_whitespace()
        .skip_while(|w| *w != "framework")
        .nth(1)
        .expect("weir run names its framework")
        .to_owned();
    let logs = cluster.weir(&["logs", "weir-run-0", "--framework", &framework]);
    assert_eq!(logs.status.code(), Some(0), "{}", String::from_utf8_lossy(&logs.stderr));
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello-from-weir\n");
    let logs = cluster.weir(&["logs", "weir-run-0", "--framework", &framework, "--stderr"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "");
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "to-stderr\n");
    let logs = cluster.weir(&["logs", "../../etc/passwd"]);
    assert_eq!(logs.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&logs.stderr).contains("task id \"../../etc/passwd\" contains '/'"), "{}", String::from_utf8_lossy(&logs.stderr));
    assert!(logs.stdout.is_empty());
    let logs = cluster.weir(&["logs", "no-such-task"]);
    assert_eq!(logs.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&logs.stderr).contains("no task \"no-such-task\" is known"));

    let out = cluster.weir(&["run", "--cpus", "0.5", "--mem", "64", "--", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));

    // Three instances, spread over the two agents; all succeed.
    let out = cluster.weir(&["run", "--instances", "3", "--cpus", "1", "--mem", "64", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // Argument form without a shell.
    let out = cluster.weir(&["run", "--cpus", "0.1", "--", "/bin/echo", "argv", "form"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("argv form"));

    // Everything is free again afterwards.
    let state = cluster.wait_for(Duration::from_secs(10), |s| s["tasks"].as_array().is_some_and(|t| t.is_empty()));
    assert_eq!(state["totals"]["used"]["cpus"], 0.0);
    assert!(state["completed_tasks"].as_array().unwrap().len() >= 6);
}

#[test]
fn status_shows_agents_frameworks_and_json() {
    let cluster = Cluster::start(2, SPEC, &["broker.roles.weights=analytics=2"]);
    let out = cluster.weir(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(text.contains("agent0.test") && text.contains("agent1.test"), "{text}");
    assert!(text.contains("agents 2/2 reachable"), "{text}");
    let out = cluster.weir(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(doc["totals"]["total"]["cpus"], 4.0);
    assert_eq!(doc["roles"][0]["role"], "analytics");
    assert_eq!(doc["roles"][0]["weight"], 2.0);

    let metrics = support::http_get(&format!("http://{}/metrics", cluster.broker_addr)).unwrap();
    assert!(metrics.contains("weir_broker_agents{state=\"reachable\"} 2"), "{metrics}");
    assert_eq!(support::http_get(&format!("http://{}/health", cluster.broker_addr)).unwrap(), "ok\n");

    // The agent's file endpoints name no path outside a sandbox the agent
    // itself recorded.
    let agent = doc["agents"][0]["http_address"].as_str().unwrap().to_owned();
    let err = support::http_get(&format!("http://{agent}/files/read?framework_id=x&task_id=y&file=../../etc/passwd")).unwrap_err();
    assert!(err.contains("400"), "{err}");
    let err = support::http_get(&format!("http://{agent}/files/read?framework_id=../..&task_id=etc&file=stdout")).unwrap_err();
    assert!(err.contains("404"), "{err}");
    let err = support::http_get(&format!("http://{agent}/files/read?framework_id=x&task_id=y&file=stdout&offset=-1")).unwrap_err();
    assert!(err.contains("400"), "{err}");
}

#[test]
fn bad_flags_are_refused_with_exit_code_2() {
    let out = std::process::Command::new(support::WEIR)
        .args(["run", "--broker", "127.0.0.1:1", "--cpus=-1", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cpus"), "{err}");

    let out = std::process::Command::new(support::WEIR)
        .args(["agent", "--resources", "bogus:1", "--broker", "127.0.0.1:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown resource \"bogus\""), "{err}");

    let out = std::process::Command::new(support::WEIR).args(["status", "--broker", "127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the broker at 127.0.0.1:1"));
}

/// A framework driven through the SDK, recording every update it acknowledges.
struct TestFramework {
    fw: Framework,
    updates: Vec<v1::TaskStatus>,
}

impl TestFramework {
    async fn subscribe(cluster: &Cluster, name: &str) -> TestFramework {
        let mut config = FrameworkConfig::new(cluster.broker_addr.clone(), name);
        config.reconnect = false;
        TestFramework { fw: Framework::subscribe(config).await.expect("subscribe"), updates: Vec::new() }
    }

    async fn subscribe_with(config: FrameworkConfig) -> TestFramework {
        TestFramework { fw: Framework::subscribe(config).await.expect("subscribe"), updates: Vec::new() }
    }

    /// Waits for an offer (on `agent_host` if given) and launches `cmd` there.
    async fn launch(&mut self, task: &str, cmd: &str, agent_host: Option<&str>) -> String {
        let want = ResourceSet::parse("cpus:0.5;mem:64").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no suitable offer");
            let event = tokio::time::timeout(Duration::from_secs(20), self.fw.next_event()).await.expect("event").expect("stream").expect("open");
            if let Some(v1::event::Kind::Offers(offers)) = event.kind {
                let mut launched_on = None;
                for offer in offers.offers {
                    let id = weir_model::OfferId::new(offer.id.clone());
                    let fits = resources_from_proto("o", &offer.resources).unwrap().contains(&want);
                    if launched_on.is_none() && fits && agent_host.is_none_or(|h| h == offer.hostname) {
                        let info = v1::TaskInfo {
                            task_id: task.into(),
                            name: task.into(),
                            resources: resources_to_proto(&want),
                            command: Some(v1::CommandInfo { shell: true, value: cmd.into(), ..Default::default() }),
                            ..Default::default()
                        };
                        self.fw.launch(&[id], vec![info], Some(Duration::ZERO)).await.unwrap();
                        launched_on = Some(offer.agent_id);
                    } else {
                        // Back to the pool at once: a later launch may want it.
                        self.fw.decline(&[id], Some(Duration::ZERO)).await.unwrap();
                    }
                }
                if let Some(agent) = launched_on {
                    return agent;
                }
            }
        }
    }

    /// Like `wait_state`, but an update already received counts.
    async fn wait_seen(&mut self, task: &str, state: TaskState, timeout: Duration) -> v1::TaskStatus {
        let seen = self.updates.iter().find(|s| s.task_id == task && task_state_from_proto("s", s.state).unwrap() == state);
        match seen {
            Some(status) => status.clone(),
            None => self.wait_state(task, state, timeout).await,
        }
    }

    /// Waits until `task` reaches `state`, acknowledging updates on the way.
    async fn wait_state(&mut self, task: &str, state: TaskState, timeout: Duration) -> v1::TaskStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, self.fw.next_event())
                .await
                .unwrap_or_else(|_| panic!("{task} did not reach {state}; updates so far: {:?}", self.updates))
                .expect("stream")
                .expect("open");
            if let Some(v1::event::Kind::Update(u)) = event.kind {
                let status = u.status.unwrap();
                self.fw.acknowledge(&status).await.unwrap();
                self.updates.push(status.clone());
                if status.task_id == task && task_state_from_proto("s", status.state).unwrap() == state {
                    return status;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_kill_and_reconcile_through_the_sdk() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(2, SPEC, &[]));
    let marker = format!("weir-it-kill-{}", std::process::id());
    let mut fw = TestFramework::subscribe(&cluster, "sdk-test").await;
    let agent = fw.launch("sleeper", &format!("sleep 300 # {marker}"), None).await;
    fw.wait_state("sleeper", TaskState::Running, Duration::from_secs(20)).await;
    // RUNNING means its supervisor started; the task's own process follows.
    tokio::task::block_in_place(|| wait_until(Duration::from_secs(5), "the task's process", || pids_with(&marker).len() == 1));

    // Explicit reconciliation: known task RUNNING, unknown task UNKNOWN.
    fw.fw.reconcile(vec![("sleeper".into(), Some(agent.clone().into())), ("ghost".into(), None)]).await.unwrap();
    let running = fw.wait_state("sleeper", TaskState::Running, Duration::from_secs(5)).await;
    assert!(running.uuid.is_empty(), "reconciliation updates need no acknowledgement");
    fw.wait_state("ghost", TaskState::Unknown, Duration::from_secs(5)).await;

    // Kill: TASK_KILLED and the process is gone.
    fw.fw.kill(&"sleeper".into(), Some(&agent.into())).await.unwrap();
    fw.wait_state("sleeper", TaskState::Killed, Duration::from_secs(10)).await;
    assert!(pids_with(&marker).is_empty(), "killed task left a process behind");

    // A failing task reports its exit code.
    fw.launch("failing", "exit 7", None).await;
    let failed = fw.wait_state("failing", TaskState::Failed, Duration::from_secs(20)).await;
    assert_eq!(failed.exit_code, Some(7));

    // A bad launch is refused by the broker with TASK_ERROR.
    fw.launch("bad task id", "true", None).await;
    let err = fw.wait_state("bad task id", TaskState::Error, Duration::from_secs(10)).await;
    assert!(err.message.contains("whitespace"), "{}", err.message);
    fw.fw.teardown().await.unwrap();
    tokio::task::block_in_place(|| {
        cluster.wait_for(Duration::from_secs(10), |s| s["frameworks"].as_array().is_some_and(|f| f.is_empty()))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_agent_makes_its_tasks_unreachable() {
    let mut cluster =
        tokio::task::block_in_place(|| Cluster::start(2, SPEC, &["broker.agent.unreachable.timeout=2s"]));
    let marker = format!("weir-it-unreach-{}", std::process::id());
    let mut fw = TestFramework::subscribe(&cluster, "unreachable-test").await;
    fw.launch("victim", &format!("sleep 300 # {marker}"), Some("agent1.test")).await;
    fw.wait_state("victim", TaskState::Running, Duration::from_secs(20)).await;

    cluster.agents[1].kill9();
    let started = Instant::now();
    let status = fw.wait_state("victim", TaskState::Unreachable, Duration::from_secs(15)).await;
    eprintln!("unreachable after {:?}", started.elapsed());
    assert_eq!(status.reason, "REASON_AGENT_UNREACHABLE");
    let state = tokio::task::block_in_place(|| {
        cluster.wait_for(Duration::from_secs(5), |s| s["agents"].as_array().unwrap().iter().any(|a| a["reachable"] == false))
    });
    assert_eq!(state["totals"]["total"]["cpus"], 2.0, "only the reachable agent counts");

    // Implicit reconciliation reports the task unreachable.
    fw.fw.reconcile(vec![]).await.unwrap();
    fw.wait_state("victim", TaskState::Unreachable, Duration::from_secs(5)).await;
    kill_marked(&marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_rebuilds_its_books_from_agents_and_frameworks() {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut cluster = tokio::task::block_in_place(|| Cluster::start_at(&listen, 1, SPEC, &[]));
    let marker = format!("weir-it-restart-{}", std::process::id());
    let mut config = FrameworkConfig::new(cluster.broker_addr.clone(), "survivor");
    config.failover_timeout = Duration::from_secs(60);
    let mut fw = TestFramework::subscribe_with(config).await;
    let framework_id = fw.fw.id().clone();
    let agent = fw.launch("long", &format!("sleep 300 # {marker}"), None).await;
    fw.wait_state("long", TaskState::Running, Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| wait_until(Duration::from_secs(5), "the task's process", || pids_with(&marker).len() == 1));

    tokio::task::block_in_place(|| cluster.restart_broker());
    let resubscribed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match fw.fw.next_event().await {
                Ok(Some(v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) })) => return s.framework_id,
                Ok(Some(_)) => {}
                other => panic!("stream ended: {other:?}"),
            }
        }
    })
    .await
    .expect("re-subscribed within 30 s");
    assert_eq!(resubscribed, framework_id.to_string());
    // The SDK re-subscribes with the same id; the agent re-registers with
    // its task; the new broker's books show both.
    let state = tokio::task::block_in_place(|| {
        cluster.wait_for(Duration::from_secs(30), |s| {
            s["tasks"].as_array().is_some_and(|t| t.len() == 1 && t[0]["state"] == "TASK_RUNNING")
                && s["frameworks"].as_array().is_some_and(|f| f.len() == 1 && f[0]["active"] == true)
        })
    });
    assert_eq!(state["frameworks"][0]["id"], framework_id.to_string());
    assert_eq!(state["agents"][0]["id"], agent);
    assert_eq!(state["totals"]["used"]["cpus"], 0.5);
    assert_eq!(pids_with(&marker).len(), 1, "the task kept running through the broker restart");

    fw.fw.reconcile(vec![("long".into(), Some(agent.clone().into()))]).await.unwrap();
    fw.wait_state("long", TaskState::Running, Duration::from_secs(10)).await;
    fw.fw.kill(&"long".into(), Some(&agent.into())).await.unwrap();
    fw.wait_state("long", TaskState::Killed, Duration::from_secs(10)).await;
    assert!(pids_with(&marker).is_empty());
    kill_marked(&marker);
}

fn wait_until(timeout: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn interrupting_weir_run_kills_its_tasks_and_exits_130() {
    let cluster = Cluster::start(1, SPEC, &[]);
    let marker = format!("weir-it-int-{}", std::process::id());
    let mut run = std::process::Command::new(support::WEIR)
        .args(["run", "--broker", &cluster.broker_addr, "--cpus", "0.5", "--", &format!("sleep 300 # {marker}")])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the task to start", || pids_with(&marker).len() == 1);
    signal(run.id(), "INT");
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(pids_with(&marker).is_empty(), "the task outlived weir run's Ctrl-C");
    let state = cluster.wait_for(Duration::from_secs(10), |s| s["frameworks"].as_array().is_some_and(|f| f.is_empty()));
    assert_eq!(state["completed_tasks"][0]["state"], "TASK_KILLED");
}

#[test]
fn standalone_stops_everything_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("weir-it-sa-{}", std::process::id());
    let (mut standalone, line) = support::spawn_weir(
        "standalone",
        &[
            "standalone",
            "--work-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--resources",
            SPEC,
            "-D",
            "agent.listen=127.0.0.1:0",
            "-D",
            "agent.kill.grace.period=1s",
        ],
        "weir standalone: broker",
    );
    let broker = support::addr_in(&line);
    let mut run = std::process::Command::new(support::WEIR)
        .args(["run", "--broker", &broker, "--cpus", "0.5", "--", &format!("trap '' TERM; sleep 300 # {marker}")])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the task to start", || !pids_with(&marker).is_empty());
    let status = standalone.terminate();
    assert!(status.success(), "standalone exited with {status:?}");
    assert!(pids_with(&marker).is_empty(), "a task outlived weir standalone (even one ignoring SIGTERM)");
    // weir run sees its broker go away and ends with an error.
    let code = run.wait().unwrap().code();
    assert_ne!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_survive_an_agent_killed_with_sigkill() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(1, SPEC, &[]));
    let marker = format!("weir-it-survive-{}", std::process::id());
    let mut fw = TestFramework::subscribe(&cluster, "survivor").await;
    let agent = fw.launch("short", "sleep 3; exit 4", None).await;
    fw.launch("long", &format!("sleep 300 # {marker}"), None).await;
    fw.wait_seen("short", TaskState::Running, Duration::from_secs(20)).await;
    fw.wait_seen("long", TaskState::Running, Duration::from_secs(20)).await;

    tokio::task::block_in_place(|| wait_until(Duration::from_secs(5), "the task's process", || pids_with(&marker).len() == 1));
    cluster.agents[0].kill9();
    assert_eq!(pids_with(&marker).len(), 1, "the task died with its agent");
    // "short" ends while no agent is there to see it.
    std::thread::sleep(Duration::from_secs(4));
    tokio::task::block_in_place(|| cluster.add_agent(0, SPEC));

    let failed = fw.wait_seen("short", TaskState::Failed, Duration::from_secs(20)).await;
    assert_eq!(failed.exit_code, Some(4), "the true exit status, recorded by the supervisor");
    let state = tokio::task::block_in_place(|| {
        cluster.wait_for(Duration::from_secs(10), |s| {
            s["agents"][0]["connected"] == true && s["tasks"].as_array().is_some_and(|t| t.len() == 1 && t[0]["state"] == "TASK_RUNNING")
        })
    });
    assert_eq!(state["agents"][0]["id"], agent, "the agent came back under the same id");
    assert_eq!(pids_with(&marker).len(), 1);

    // The re-attached task can still be killed.
    fw.fw.kill(&"long".into(), Some(&agent.into())).await.unwrap();
    fw.wait_state("long", TaskState::Killed, Duration::from_secs(10)).await;
    assert!(pids_with(&marker).is_empty());
    kill_marked(&marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_away_past_its_reregister_timeout_loses_its_tasks() {
    let mut cluster = tokio::task::block_in_place(|| {
        Cluster::start(1, SPEC, &["broker.agent.unreachable.timeout=1s", "broker.agent.reregister.timeout=2s"])
    });
    let marker = format!("weir-it-gone-{}", std::process::id());
    let mut fw = TestFramework::subscribe(&cluster, "gone-test").await;
    fw.launch("doomed", &format!("sleep 300 # {marker}"), None).await;
    fw.wait_seen("doomed", TaskState::Running, Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| wait_until(Duration::from_secs(5), "the task's process", || pids_with(&marker).len() == 1));
    cluster.agents[0].kill9();
    fw.wait_state("doomed", TaskState::Unreachable, Duration::from_secs(10)).await;
    let gone = fw.wait_state("doomed", TaskState::Gone, Duration::from_secs(10)).await;
    assert_eq!(gone.reason, "REASON_AGENT_REMOVED");
    assert_eq!(pids_with(&marker).len(), 1, "still running on the lost agent");

    // The agent returns: it is told to kill the task, which stays gone.
    tokio::task::block_in_place(|| cluster.add_agent(0, SPEC));
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(15), "the returning agent to kill its task", || pids_with(&marker).is_empty())
    });
    let state = tokio::task::block_in_place(|| cluster.wait_for(Duration::from_secs(10), |s| s["agents"][0]["connected"] == true));
    assert!(state["tasks"].as_array().unwrap().is_empty());
    kill_marked(&marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_that_fails_over_in_time_keeps_its_tasks() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(1, SPEC, &[]));
    let marker = format!("weir-it-fwfo-{}", std::process::id());
    let mut config = FrameworkConfig::new(cluster.broker_addr.clone(), "failing-over");
    config.failover_timeout = Duration::from_secs(60);
    config.reconnect = false;
    let mut first = TestFramework::subscribe_with(config.clone()).await;
    let id = first.fw.id().clone();
    let agent = first.launch("kept", &format!("sleep 300 # {marker}"), None).await;
    first.wait_seen("kept", TaskState::Running, Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| wait_until(Duration::from_secs(5), "the task's process", || pids_with(&marker).len() == 1));
    drop(first); // the scheduler dies: its stream closes

    let state = tokio::task::block_in_place(|| {
        cluster.wait_for(Duration::from_secs(10), |s| s["frameworks"][0]["active"] == false)
    });
    assert_eq!(state["tasks"][0]["state"], "TASK_RUNNING", "tasks survive the scheduler within its failover timeout");

    config.framework_id = Some(id.clone());
    let mut second = TestFramework::subscribe_with(config).await;
    assert_eq!(second.fw.id(), &id);
    second.fw.reconcile(vec![("kept".into(), Some(agent.clone().into()))]).await.unwrap();
    second.wait_state("kept", TaskState::Running, Duration::from_secs(10)).await;
    assert_eq!(pids_with(&marker).len(), 1);
    second.fw.kill(&"kept".into(), Some(&agent.into())).await.unwrap();
    second.wait_state("kept", TaskState::Killed, Duration::from_secs(10)).await;
    kill_marked(&marker);
}

#[test]
fn a_task_over_its_memory_limit_fails_with_the_reason() {
    let cluster = Cluster::start(1, SPEC, &[]);
    let out = cluster.weir(&["run", "--cpus", "0.5", "--mem", "64", "--", "head -c 300M /dev/zero | tail"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(stderr.contains("TASK_FAILED: memory limit exceeded: peak 64.0 MiB of a 64.0 MiB limit"), "{stderr}");
    let state = cluster.state();
    assert_eq!(state["completed_tasks"][0]["state"], "TASK_FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_hog_gets_its_share_and_its_usage_is_reported() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(1, SPEC, &[]));
    let mut fw = TestFramework::subscribe(&cluster, "hog").await;
    // TestFramework launches with cpus:0.5: a busy loop may use half a core.
    fw.launch("hog", "while :; do :; done", None).await;
    fw.wait_seen("hog", TaskState::Running, Duration::from_secs(20)).await;
    // The broker's books carry the usage its agent reports.
    let state = tokio::task::block_in_place(|| {
        cluster.wait_for(Duration::from_secs(10), |s| s["tasks"][0]["cpu_seconds"].as_f64().is_some_and(|c| c > 0.1))
    });
    assert!(state["tasks"][0]["mem_used_mib"].as_f64().is_some());
    // The rate, from the agent's own live readings two seconds apart.
    let agent = state["agents"][0]["http_address"].as_str().unwrap().to_owned();
    let read = || -> (Instant, f64) {
        let doc = support::state_of(&agent);
        (Instant::now(), doc["tasks"][0]["usage"]["cpu_seconds"].as_f64().unwrap())
    };
    let (t0, c0) = tokio::task::block_in_place(read);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (t1, c1) = tokio::task::block_in_place(read);
    let rate = (c1 - c0) / (t1 - t0).as_secs_f64();
    // Near half a core: capped by the CFS quota, and (on two cores) not
    // starved far below it.
    assert!((0.25..=0.6).contains(&rate), "a cpus:0.5 busy loop used {rate:.2} of a core");
    let status = cluster.weir(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("CPU TIME") && text.contains("MEM USED"), "{text}");
    let agent = state["agents"][0]["http_address"].as_str().unwrap().to_owned();
    let agent_state = support::state_of(&agent);
    assert_eq!(agent_state["isolation"], "cgroups");
    assert!(agent_state["tasks"][0]["usage"]["mem_limit_bytes"].as_u64() == Some(64 * 1024 * 1024));
    fw.fw.teardown().await.unwrap();
}

#[test]
fn weir_logs_follow_prints_output_as_it_comes_until_the_task_ends() {
    let cluster = Cluster::start(1, SPEC, &[]);
    let mut run = std::process::Command::new(support::WEIR)
        .args(["run", "--broker", &cluster.broker_addr, "--name", "follow", "--cpus", "0.1", "--", "for i in 1 2 3; do echo line$i; sleep 0.5; done"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    cluster.wait_for(Duration::from_secs(20), |s| s["tasks"].as_array().is_some_and(|t| t.iter().any(|t| t["id"] == "follow-0")));
    let out = cluster.weir(&["logs", "follow-0", "--follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // --follow returns only once the task has ended, with all of its output.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line1\nline2\nline3\n");
    assert_eq!(run.wait().unwrap().code(), Some(0));
}

#[test]
fn with_switch_user_tasks_run_as_their_user_and_system_banned_or_unknown_users_are_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: switching users needs the agent to run as root (CI runs as root)");
        return;
    }
    let mut cluster = Cluster::start(0, SPEC, &[]);
    cluster.add_agent_with(0, SPEC, &["agent.tasks.switch-user=true"]);
    cluster.wait_for(Duration::from_secs(30), |s| s["agents"].as_array().is_some_and(|a| a.len() == 1));
    let run = |user: &str, script: &str| {
        let out = cluster.weir(&["run", "--user", user, "--cpus", "0.1", "--mem", "32", "--", script]);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // As `nobody`: its name, its uid, a sandbox it owns; root's files stay out of reach.
    let escape = format!("/root/weir-escape-{}", std::process::id());
    let (code, stdout, stderr) =
        run("nobody", &format!("id -un; id -u; stat -c %U .; echo x > mine && stat -c %U mine; echo $USER; touch {escape} || echo refused"));
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let uid = nix::unistd::User::from_name("nobody").unwrap().expect("Debian has nobody").uid.as_raw();
    assert_eq!(stdout, format!("nobody\n{uid}\nnobody\nnobody\nnobody\nrefused\n"), "stderr: {stderr}");
    assert!(!std::path::Path::new(&escape).exists(), "the task wrote as root");
    // Refused before anything runs, each saying why.
    for (user, why) in [
        ("root", "user root has uid 0, below agent.tasks.min-uid 1000"),
        ("yarn", "user yarn is banned from running tasks"),
        ("no-such-user-weir", "user no-such-user-weir does not exist on this agent"),
    ] {
        let (code, stdout, stderr) = run(user, "echo ran");
        assert_ne!(code, Some(0), "{user}: {stdout}{stderr}");
        assert!(!stdout.contains("ran"), "{user} ran: {stdout}");
        assert!(stderr.contains(why), "{user}: {stderr}");
    }
}
