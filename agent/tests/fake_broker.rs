//! The agent's shell against an in-test broker: a small tonic server that
//! implements `weir.v1.Agent` on 127.0.0.1:0 and hands every attached
//! stream to the test, which plays the broker's side of the protocol by
//! hand (register, launch, acknowledge or not, drop the stream).
//!
//! What a broker relies on and these tests check: REGISTER comes first on
//! every stream and carries the agent's real HTTP address; a launched task
//! reports STARTING, RUNNING, FINISHED in that order, each resent with the
//! same uuid until acknowledged and the next one held back until then; a
//! dropped stream is re-opened and the agent re-registers with the id it
//! was given and its live tasks, resending what is still unacknowledged;
//! a broker that refuses a new agent three times makes `run` fail with its
//! message.
//!
//! `with_fakes` runs the same shell on a fake launcher, an in-memory
//! checkpoint and a hand-moved clock: no update, launch or kill goes out
//! before the checkpoint that records it is written, resends and kill
//! deadlines follow the given clock, and a restarted agent re-attaches to
//! the tasks its predecessor left running.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use weir_agent::AgentSettings;
use weir_proto::v1;
use weir_proto::v1::agent_message::Kind as Up;
use weir_proto::v1::agent_server::{Agent, AgentServer};
use weir_proto::v1::broker_message::Kind as Down;

/// How long any single expected message may take to arrive.
const PATIENCE: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(200);

/// One attached agent stream, as the test sees it.
struct Connection {
    from_agent: Streaming<v1::AgentMessage>,
    to_agent: mpsc::Sender<Result<v1::BrokerMessage, Status>>,
    heartbeats: usize,
}

struct FakeBroker {
    connections: mpsc::UnboundedSender<Connection>,
}

#[tonic::async_trait]
impl Agent for FakeBroker {
    type AttachStream = Pin<Box<dyn Stream<Item = Result<v1::BrokerMessage, Status>> + Send + 'static>>;

    async fn attach(&self, request: Request<Streaming<v1::AgentMessage>>) -> Result<Response<Self::AttachStream>, Status> {
        let (to_agent, rx) = mpsc::channel(64);
        let connection = Connection { from_agent: request.into_inner(), to_agent, heartbeats: 0 };
        self.connections.send(connection).map_err(|_| Status::unavailable("test is over"))?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn start_fake_broker() -> (SocketAddr, mpsc::UnboundedReceiver<Connection>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServer::new(FakeBroker { connections: tx }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

fn settings(broker: SocketAddr, work_dir: &std::path::Path) -> AgentSettings {
    AgentSettings {
        registration_secret: None,
        broker_ca: None,
        http_tls: None,
        http_auth: Default::default(),
        broker_identity: None,
        broker: broker.to_string(),
        listen: "127.0.0.1:0".parse().unwrap(),
        work_dir: work_dir.to_owned(),
        resources: Some("cpus:2;mem:256;disk:100;ports:[31000-31001]".to_owned()),
        hostname: Some("fake-host".to_owned()),
        attributes: vec![("rack".to_owned(), "r1".to_owned())],
        heartbeat_interval: Duration::from_millis(100),
        kill_grace_period: Duration::from_secs(1),
        status_update_retry_interval: RETRY,
        supervisor: None,
        isolation: weir_agent::isolation::Mode::None,
        task_users: weir_agent::users::UserPolicy::default(),
        sandbox_gc_age: Duration::from_secs(3600),
        volume_usage_interval: Duration::from_secs(5),
        volume_sync_interval: Duration::from_secs(60),
        volume_store: Default::default(),
        kill_tasks_on_shutdown: true,
        http: Default::default(),
    }
}

async fn next_connection(connections: &mut mpsc::UnboundedReceiver<Connection>) -> Connection {
    tokio::time::timeout(PATIENCE, connections.recv()).await.expect("the agent did not attach in time").expect("broker gone")
}

impl Connection {
    /// The next message that is not a heartbeat (heartbeats are counted).
    async fn next(&mut self) -> Up {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.from_agent.message())
                .await
                .expect("nothing from the agent in time")
                .expect("stream error")
                .expect("the agent closed the stream");
            match msg.kind.expect("a message with no kind") {
                Up::Heartbeat(_) => self.heartbeats += 1,
                other => return other,
            }
        }
    }

    async fn register(&mut self) -> v1::agent_message::Register {
        match self.next().await {
            Up::Register(r) => r,
            other => panic!("the first message must be REGISTER, got {other:?}"),
        }
    }

    async fn update(&mut self) -> v1::TaskStatus {
        match self.next().await {
            Up::StatusUpdate(u) => u.status.expect("an update with no status"),
            other => panic!("expected a status update, got {other:?}"),
        }
    }

    async fn send(&self, kind: Down) {
        self.to_agent.send(Ok(v1::BrokerMessage { kind: Some(kind) })).await.expect("the agent's stream is gone");
    }

    async fn registered(&self, agent_id: &str) {
        self.registered_in(agent_id, 0).await;
    }

    /// REGISTERED from a broker leading `epoch`.
    async fn registered_in(&self, agent_id: &str, epoch: u64) {
        self.send(Down::Registered(v1::broker_message::Registered {
            agent_id: agent_id.to_owned(),
            heartbeat_interval_seconds: 0.1,
            leader_epoch: epoch,
        }))
        .await;
    }

    async fn ack(&self, status: &v1::TaskStatus) {
        self.send(Down::Acknowledge(v1::broker_message::Acknowledge {
            framework_id: status.framework_id.clone(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone(),
        }))
        .await;
    }

    /// Receives the next update, checks its task and state, and checks it
    /// is resent unchanged (and nothing else for that task overtakes it)
    /// while it is not acknowledged; then acknowledges it.
    async fn expect_resent_then_ack(&mut self, task: &str, state: v1::TaskState) -> v1::TaskStatus {
        let first = self.update().await;
        assert_eq!((first.task_id.as_str(), first.state()), (task, state), "{first:?}");
        assert_eq!(first.uuid.len(), 16);
        let again = self.update().await;
        assert_eq!(again.uuid, first.uuid, "the next update came before {state:?} was acknowledged");
        assert_eq!(again.state(), state);
        self.ack(&first).await;
        first
    }
}

fn shell_task(id: &str, command: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        task_id: id.to_owned(),
        name: id.to_owned(),
        command: Some(v1::CommandInfo { shell: true, value: command.to_owned(), ..Default::default() }),
        ..Default::default()
    }
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn registers_runs_a_task_with_acknowledged_updates_and_reregisters_after_the_stream_drops() {
    let (broker, mut connections) = start_fake_broker().await;
    let work = tempfile::tempdir().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(weir_agent::run(settings(broker, work.path()), async move {
        let _ = stop_rx.await;
    }));

    // First stream: REGISTER with no id, the real HTTP address, the resources.
    let mut conn = next_connection(&mut connections).await;
    let register = conn.register().await;
    let info = register.agent.expect("REGISTER without AgentInfo");
    assert_eq!(info.id, "");
    assert_eq!(info.hostname, "fake-host");
    assert_eq!(info.attributes, vec![v1::Attribute { name: "rack".into(), value: "r1".into() }]);
    let resources = weir_proto::convert::resources_from_proto("resources", &info.resources).unwrap();
    assert_eq!(resources, weir_model::ResourceSet::parse("cpus:2;mem:256;disk:100;ports:[31000-31001]").unwrap());
    assert!(register.tasks.is_empty());
    let http: SocketAddr = info.http_address.parse().expect("http_address is not host:port");
    assert_ne!(http.port(), 0, "the bound port, not the configured 0, must be reported");
    let health = http_get(&info.http_address, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200") && health.trim_end().ends_with("ok"), "{health}");
    conn.registered("A1").await;

    // A task: STARTING, RUNNING, FINISHED, each resent until acknowledged.
    conn.send(Down::RunTask(v1::broker_message::RunTask { framework_id: "F1".into(), task: Some(shell_task("t1", "echo hi")) })).await;
    let starting = conn.expect_resent_then_ack("t1", v1::TaskState::TaskStarting).await;
    assert_eq!((starting.agent_id.as_str(), starting.framework_id.as_str()), ("A1", "F1"));
    assert_eq!(starting.source(), v1::task_status::Source::Agent);
    assert!(starting.timestamp > 1.0e9, "timestamp must be wall time, got {}", starting.timestamp);
    conn.expect_resent_then_ack("t1", v1::TaskState::TaskRunning).await;
    let finished = conn.expect_resent_then_ack("t1", v1::TaskState::TaskFinished).await;
    assert_eq!(finished.reason, "REASON_COMMAND_EXITED");
    assert_eq!(finished.exit_code, Some(0));
    let stdout = std::fs::read_to_string(work.path().join("sandboxes/F1/t1/stdout")).unwrap();
    assert_eq!(stdout, "hi\n");
    assert!(conn.heartbeats >= 1, "no heartbeat in all that time");

    // A long task whose RUNNING is left unacknowledged when the stream drops.
    conn.send(Down::RunTask(v1::broker_message::RunTask { framework_id: "F1".into(), task: Some(shell_task("t2", "sleep 30")) })).await;
    conn.expect_resent_then_ack("t2", v1::TaskState::TaskStarting).await;
    let running = conn.update().await;
    assert_eq!((running.task_id.as_str(), running.state()), ("t2", v1::TaskState::TaskRunning));
    drop(conn);

    // Second stream: the same id, the live task with its latest status, and
    // the unacknowledged update again (same uuid) once registered.
    let mut conn = next_connection(&mut connections).await;
    let register = conn.register().await;
    assert_eq!(register.agent.as_ref().map(|a| a.id.as_str()), Some("A1"));
    let live: Vec<_> = register
        .tasks
        .iter()
        .map(|t| (t.framework_id.as_str(), t.task.as_ref().map(|i| i.task_id.as_str()), t.latest.as_ref().map(|s| s.state())))
        .collect();
    assert_eq!(live, vec![("F1", Some("t2"), Some(v1::TaskState::TaskRunning))]);
    conn.registered("A1").await;
    let resent = conn.update().await;
    assert_eq!(resent.uuid, running.uuid);
    conn.ack(&resent).await;

    // /state shows the live task with its pid and sandbox.
    let state = http_get(&register.agent.unwrap().http_address, "/state").await;
    let body = state.split("\r\n\r\n").nth(1).unwrap_or_default();
    let doc: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {state}"));
    assert_eq!(doc["agent_id"], "A1");
    let t2 = doc["tasks"].as_array().unwrap().iter().find(|t| t["task_id"] == "t2").unwrap().clone();
    assert_eq!(t2["state"], "TASK_RUNNING");
    assert!(t2["pid"].as_u64().is_some_and(|p| p > 0));

    // Kill it through the new stream.
    conn.send(Down::KillTask(v1::broker_message::KillTask { framework_id: "F1".into(), task_id: "t2".into() })).await;
    let killed = conn.update().await;
    assert_eq!((killed.task_id.as_str(), killed.state()), ("t2", v1::TaskState::TaskKilled));
    assert_eq!(killed.reason, "REASON_TASK_KILLED");
    conn.ack(&killed).await;

    let _ = stop_tx.send(());
    let result = tokio::time::timeout(PATIENCE, agent).await.expect("the agent did not stop").unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn three_refusals_before_the_first_registration_end_the_agent_with_the_message() {
    let (broker, mut connections) = start_fake_broker().await;
    let work = tempfile::tempdir().unwrap();
    let agent = tokio::spawn(weir_agent::run(settings(broker, work.path()), std::future::pending()));
    for _ in 0..3 {
        let mut conn = next_connection(&mut connections).await;
        conn.register().await;
        conn.send(Down::Refused(v1::broker_message::Refused { message: "resources do not parse".into() })).await;
    }
    let result = tokio::time::timeout(PATIENCE, agent).await.expect("the agent kept retrying").unwrap();
    let err = result.expect_err("run must fail after three refusals");
    assert!(err.to_string().contains("resources do not parse"), "{err}");
}

#[tokio::test]
async fn a_broker_whose_epoch_is_older_than_one_seen_is_left_and_not_obeyed() {
    let (broker, mut connections) = start_fake_broker().await;
    let work = tempfile::tempdir().unwrap();
    let agent = tokio::spawn(weir_agent::run(settings(broker, work.path()), std::future::pending()));
    let mut leader = next_connection(&mut connections).await;
    leader.register().await;
    leader.registered_in("A1", 5).await;
    drop(leader);

    // A deposed leader (epoch 3) answers the next attempt and tries to
    // launch a task: the agent must leave without running it.
    let mut deposed = next_connection(&mut connections).await;
    deposed.register().await;
    deposed.registered_in("A1", 3).await;
    deposed
        .send(Down::RunTask(v1::broker_message::RunTask { framework_id: "F".into(), task: Some(shell_task("t", "true")) }))
        .await;
    loop {
        match tokio::time::timeout(PATIENCE, deposed.from_agent.message()).await.expect("the agent stayed with a deposed broker") {
            Ok(Some(v1::AgentMessage { kind: Some(Up::Heartbeat(_)) })) => continue,
            Ok(Some(other)) => panic!("the agent answered a deposed broker: {other:?}"),
            Ok(None) | Err(_) => break,
        }
    }

    // The current leader (epoch 6) is obeyed, and t never ran.
    let mut current = next_connection(&mut connections).await;
    let register = current.register().await;
    assert!(register.tasks.is_empty(), "a task from the deposed broker ran: {:?}", register.tasks);
    current.registered_in("A1", 6).await;
    current
        .send(Down::RunTask(v1::broker_message::RunTask { framework_id: "F".into(), task: Some(shell_task("u", "true")) }))
        .await;
    let update = current.update().await;
    assert_eq!(update.task_id, "u");
    agent.abort();
}

// The same shell with its effects faked: a launcher that runs nothing, a
// checkpoint in memory (failing on demand) and a clock moved by hand. What
// the broker sees must be what it sees from a real agent.

mod with_fakes {
    use std::sync::Arc;

    use weir_agent::checkpoint::{CheckpointStore, FailingCheckpointStore, MemoryCheckpointStore};
    use weir_agent::core::Signal;
    use weir_agent::launcher::memory::MemoryLauncher;
    use weir_agent::launcher::Exit;
    use weir_agent::AgentEffects;
    use weir_model::{Clock, FrameworkId, ManualClock, TaskId};

    use super::*;

    const EPOCH: Duration = Duration::from_secs(1_700_000_000);

    fn effects(clock: &ManualClock, launcher: &Arc<MemoryLauncher>, store: Arc<dyn CheckpointStore>) -> AgentEffects {
        AgentEffects { clock: Arc::new(clock.clone()), launcher: launcher.clone(), checkpoints: store }
    }

    fn run_task(id: &str) -> Down {
        Down::RunTask(v1::broker_message::RunTask { framework_id: "F1".into(), task: Some(shell_task(id, "never run")) })
    }

    fn kill_task(id: &str) -> Down {
        Down::KillTask(v1::broker_message::KillTask { framework_id: "F1".into(), task_id: id.into() })
    }

    fn ended(code: i32) -> Exit {
        Exit::Ended { code: Some(code), signal: None, limitation: None }
    }

    impl Connection {
        /// Nothing but heartbeats for `how_long`.
        async fn expect_nothing_for(&mut self, how_long: Duration) {
            let until = tokio::time::Instant::now() + how_long;
            loop {
                match tokio::time::timeout_at(until, self.from_agent.message()).await {
                    Err(_) => return,
                    Ok(Ok(Some(v1::AgentMessage { kind: Some(Up::Heartbeat(_)) }))) => self.heartbeats += 1,
                    Ok(other) => panic!("expected nothing from the agent, got {other:?}"),
                }
            }
        }

        /// The next update, checked for task and state, then acknowledged.
        async fn expect_and_ack(&mut self, task: &str, state: v1::TaskState) -> v1::TaskStatus {
            let status = self.update().await;
            assert_eq!((status.task_id.as_str(), status.state()), (task, state), "{status:?}");
            self.ack(&status).await;
            status
        }
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let waited = tokio::time::timeout(PATIENCE, async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        waited.await.unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    #[tokio::test]
    async fn tasks_run_end_and_are_killed_on_a_fake_launcher_with_time_from_the_given_clock() {
        let (broker, mut connections) = start_fake_broker().await;
        let work = tempfile::tempdir().unwrap();
        let (clock, launcher, store) = (ManualClock::new(EPOCH), Arc::new(MemoryLauncher::new()), MemoryCheckpointStore::new());
        let agent = tokio::spawn(weir_agent::run_with(
            settings(broker, work.path()),
            effects(&clock, &launcher, Arc::new(store.clone())),
            std::future::pending(),
        ));
        let mut conn = next_connection(&mut connections).await;
        conn.register().await;
        conn.registered("A1").await;

        conn.send(run_task("t1")).await;
        let starting = conn.expect_and_ack("t1", v1::TaskState::TaskStarting).await;
        assert_eq!(starting.timestamp, clock.unix_seconds(), "the timestamp must come from the given clock");
        conn.expect_and_ack("t1", v1::TaskState::TaskRunning).await;
        assert_eq!(launcher.spawned(), vec![(FrameworkId::new("F1"), TaskId::new("t1"))]);
        let pid = launcher.pid_of("t1").expect("t1 runs");
        let recorded = store.checkpoint().expect("a checkpoint").tasks;
        assert_eq!(recorded.iter().map(|t| t.supervisor_pid).collect::<Vec<_>>(), vec![pid], "RUNNING went before its pid was checkpointed");

        // Its end, unacknowledged: resent only once the clock has moved on
        // by the retry interval, however many ticks pass meanwhile.
        assert!(launcher.exit("t1", ended(3)));
        let failed = conn.update().await;
        assert_eq!((failed.state(), failed.exit_code, failed.message.as_str()), (v1::TaskState::TaskFailed, Some(3), "Command exited with status 3"));
        conn.expect_nothing_for(RETRY * 3).await;
        clock.advance(RETRY);
        let again = conn.update().await;
        assert_eq!(again.uuid, failed.uuid);
        conn.ack(&again).await;

        // A process that ignores TERM gets KILL when the clock passes the
        // grace period, not before.
        launcher.ignore_term("t2");
        conn.send(run_task("t2")).await;
        conn.expect_and_ack("t2", v1::TaskState::TaskStarting).await;
        conn.expect_and_ack("t2", v1::TaskState::TaskRunning).await;
        let pid = launcher.pid_of("t2").expect("t2 runs");
        conn.send(kill_task("t2")).await;
        wait_until("TERM was sent", || launcher.signals() == vec![(pid, Signal::Term)]).await;
        conn.expect_nothing_for(RETRY * 2).await;
        assert_eq!(launcher.signals(), vec![(pid, Signal::Term)], "KILL before the grace period was over");
        clock.advance(Duration::from_secs(1));
        conn.expect_and_ack("t2", v1::TaskState::TaskKilled).await;
        assert_eq!(launcher.signals(), vec![(pid, Signal::Term), (pid, Signal::Kill)]);
        agent.abort();
    }

    #[tokio::test]
    async fn a_failed_checkpoint_write_holds_launches_updates_and_kills_until_a_write_succeeds() {
        let (broker, mut connections) = start_fake_broker().await;
        let work = tempfile::tempdir().unwrap();
        let (clock, launcher, memory) = (ManualClock::new(EPOCH), Arc::new(MemoryLauncher::new()), MemoryCheckpointStore::new());
        let store = Arc::new(FailingCheckpointStore::new(Arc::new(memory.clone())));
        let agent = tokio::spawn(weir_agent::run_with(settings(broker, work.path()), effects(&clock, &launcher, store.clone()), std::future::pending()));
        let mut conn = next_connection(&mut connections).await;
        let http = conn.register().await.agent.unwrap().http_address;
        conn.registered("A1").await;
        wait_until("the registration is checkpointed", || memory.checkpoint().is_some_and(|c| c.agent_id == "A1")).await;

        // The disk fails: the launch is recorded in memory only, so it is
        // neither started nor reported, and the agent says it is unhealthy.
        store.set_failing(true);
        conn.send(run_task("t1")).await;
        conn.expect_nothing_for(Duration::from_secs(1)).await;
        assert!(launcher.spawned().is_empty(), "a task was started before its launch was checkpointed");
        assert!(store.failed_writes() >= 2, "the write was not retried on the tick: {} attempts", store.failed_writes());
        let health = http_get(&http, "/health").await;
        assert!(health.starts_with("HTTP/1.1 503"), "{health}");
        assert!(health.contains("memory:checkpoint") && health.contains("No space left on device"), "{health}");

        // A new stream meanwhile: REGISTER tells only what is stored.
        drop(conn);
        let mut conn = next_connection(&mut connections).await;
        let register = conn.register().await;
        assert!(register.tasks.is_empty(), "REGISTER named a task that is not checkpointed: {:?}", register.tasks);
        conn.registered("A1").await;

        // The disk is back: the held effects go, in order, and the task runs.
        store.set_failing(false);
        let starting = conn.expect_and_ack("t1", v1::TaskState::TaskStarting).await;
        let mut running = conn.update().await;
        if running.uuid == starting.uuid {
            // Held once and resent on registration: the same update twice.
            running = conn.update().await;
        }
        assert_eq!((running.task_id.as_str(), running.state()), ("t1", v1::TaskState::TaskRunning), "{running:?}");
        conn.ack(&running).await;
        assert_eq!(launcher.spawned(), vec![(FrameworkId::new("F1"), TaskId::new("t1"))]);
        assert!(memory.checkpoint().is_some_and(|c| c.tasks.len() == 1 && c.tasks[0].supervisor_pid != 0));
        let health = http_get(&http, "/health").await;
        assert!(health.starts_with("HTTP/1.1 200") && health.trim_end().ends_with("ok"), "{health}");

        // The same for a kill: no signal while the disk fails.
        let pid = launcher.pid_of("t1").expect("t1 runs");
        store.set_failing(true);
        conn.send(kill_task("t1")).await;
        conn.expect_nothing_for(Duration::from_millis(600)).await;
        assert!(launcher.signals().is_empty(), "a kill went before it was checkpointed");
        store.set_failing(false);
        conn.expect_and_ack("t1", v1::TaskState::TaskKilled).await;
        assert_eq!(launcher.signals(), vec![(pid, Signal::Term)]);
        agent.abort();
    }

    #[tokio::test]
    async fn a_restarted_agent_reattaches_to_tasks_that_outlived_it_and_reports_those_that_ended_meanwhile() {
        let (broker, mut connections) = start_fake_broker().await;
        let work = tempfile::tempdir().unwrap();
        let (clock, launcher, store) = (ManualClock::new(EPOCH), Arc::new(MemoryLauncher::new()), MemoryCheckpointStore::new());
        let keep_tasks = AgentSettings { kill_tasks_on_shutdown: false, ..settings(broker, work.path()) };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn(weir_agent::run_with(keep_tasks.clone(), effects(&clock, &launcher, Arc::new(store.clone())), async move {
            let _ = stopped.await;
        }));
        let mut conn = next_connection(&mut connections).await;
        conn.register().await;
        conn.registered("A1").await;
        for task in ["t1", "t2"] {
            conn.send(run_task(task)).await;
            conn.expect_and_ack(task, v1::TaskState::TaskStarting).await;
            conn.expect_and_ack(task, v1::TaskState::TaskRunning).await;
        }
        // Stopped once the acknowledgements are on disk, so the restarted
        // agent has nothing to resend (resending would be right, too).
        wait_until("the acknowledgements are checkpointed", || store.checkpoint().is_some_and(|c| c.tasks.iter().all(|t| t.pending.is_empty()))).await;
        let _ = stop.send(());
        tokio::time::timeout(PATIENCE, first).await.expect("the agent did not stop").unwrap().unwrap();
        drop(conn);

        // While no agent runs, t2 ends; t1 goes on.
        assert!(launcher.exit("t2", ended(7)));
        let _second = tokio::spawn(weir_agent::run_with(keep_tasks, effects(&clock, &launcher, Arc::new(store.clone())), std::future::pending()));
        let mut conn = loop {
            // The first agent's stream may still be reported; skip it.
            let mut conn = next_connection(&mut connections).await;
            if let Ok(Some(msg)) = conn.from_agent.message().await {
                if let Some(Up::Register(r)) = msg.kind {
                    assert_eq!(r.agent.as_ref().map(|a| a.id.as_str()), Some("A1"), "the restarted agent forgot its id");
                    let t1 = r.tasks.iter().find(|t| t.task.as_ref().is_some_and(|i| i.task_id == "t1")).expect("t1 is not re-registered");
                    assert_eq!(t1.latest.as_ref().map(|s| s.state()), Some(v1::TaskState::TaskRunning));
                    break conn;
                }
            }
        };
        conn.registered("A1").await;
        let t2 = conn.expect_and_ack("t2", v1::TaskState::TaskFailed).await;
        assert_eq!(t2.exit_code, Some(7));
        assert!(launcher.exit("t1", ended(0)));
        conn.expect_and_ack("t1", v1::TaskState::TaskFinished).await;
        assert_eq!(launcher.spawned().len(), 2, "a task was started twice");
    }

    /// A store whose writes take `delay` (a slow disk), switched on by the test.
    struct SlowCheckpointStore {
        inner: MemoryCheckpointStore,
        delay: std::sync::Mutex<Duration>,
    }

    impl CheckpointStore for SlowCheckpointStore {
        fn location(&self) -> std::path::PathBuf {
            self.inner.location()
        }

        fn read(&self) -> Result<Option<v1::AgentCheckpoint>, weir_agent::AgentError> {
            self.inner.read()
        }

        fn write(&self, checkpoint: &v1::AgentCheckpoint) -> Result<(), weir_agent::AgentError> {
            let delay = *self.delay.lock().unwrap();
            std::thread::sleep(delay);
            self.inner.write(checkpoint)
        }

        fn set_aside(&self, stamp: u64) -> Result<std::path::PathBuf, String> {
            self.inner.set_aside(stamp)
        }
    }

    /// The testbed's long run: an agent paused with launches in flight
    /// read them, then the end of its stream, and re-registered before it
    /// had handled them; the broker took the tasks it did not name for
    /// gone (TASK_GONE) and they ran anyway. A REGISTER names every task
    /// whose RUN_TASK came before it, even when the checkpoint is slow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_launch_read_just_before_the_stream_ended_is_named_in_the_next_register() {
        let (broker, mut connections) = start_fake_broker().await;
        let work = tempfile::tempdir().unwrap();
        let (clock, launcher, memory) = (ManualClock::new(EPOCH), Arc::new(MemoryLauncher::new()), MemoryCheckpointStore::new());
        let store = Arc::new(SlowCheckpointStore { inner: memory.clone(), delay: std::sync::Mutex::new(Duration::ZERO) });
        let agent = tokio::spawn(weir_agent::run_with(settings(broker, work.path()), effects(&clock, &launcher, store.clone()), std::future::pending()));
        let mut conn = next_connection(&mut connections).await;
        conn.register().await;
        conn.registered("A1").await;
        wait_until("the registration is checkpointed", || memory.checkpoint().is_some_and(|c| c.agent_id == "A1")).await;

        // Each write now takes longer than the agent's reconnection.
        *store.delay.lock().unwrap() = Duration::from_millis(800);
        conn.send(run_task("t1")).await;
        drop(conn);
        let mut conn = next_connection(&mut connections).await;
        let register = conn.register().await;
        let named: Vec<&str> = register.tasks.iter().filter_map(|t| t.task.as_ref()).map(|t| t.task_id.as_str()).collect();
        assert_eq!(named, vec!["t1"], "REGISTER left out the task launched just before the stream ended");
        agent.abort();
    }
}

/// Found by the testbed: an agent listening on every address (0.0.0.0, as
/// on a machine of a real cluster) reported `0.0.0.0:PORT` as its HTTP
/// address, which the broker then handed to `weir logs`, `weir run` and
/// the YARN shim. It must report the name it is known by.
#[tokio::test]
async fn an_agent_listening_on_every_address_reports_its_host_name_as_its_http_address() {
    let (broker, mut connections) = start_fake_broker().await;
    let work = tempfile::tempdir().unwrap();
    let mut s = settings(broker, work.path());
    s.listen = "0.0.0.0:0".parse().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(weir_agent::run(s, async move {
        let _ = stop_rx.await;
    }));
    let mut conn = next_connection(&mut connections).await;
    let info = conn.register().await.agent.expect("REGISTER without AgentInfo");
    let (host, port) = info.http_address.rsplit_once(':').expect("host:port");
    assert_eq!(host, "fake-host", "{}", info.http_address);
    assert_ne!(port, "0");
    let _ = stop_tx.send(());
    let _ = agent.await;
}
