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
        sandbox_gc_age: Duration::from_secs(3600),
        kill_tasks_on_shutdown: true,
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
