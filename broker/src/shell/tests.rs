//! The shell over real sockets on loopback, with a manual clock: what a
//! client sees of time, typed state and metrics.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_model::{AgentState, ManualClock, ResourceSet};
use weir_proto::convert::{agents_from_proto, resources_to_proto};
use weir_proto::v1;
use weir_proto::v1::agent_client::AgentClient;
use weir_proto::v1::operator_client::OperatorClient;
use weir_proto::v1::scheduler_client::SchedulerClient;

use super::*;

const WALL_START: Duration = Duration::from_secs(1_700_000_000);

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn clients_see_epoch_timestamps_typed_agents_and_metrics() {
    let clock = ManualClock::new(WALL_START);
    clock.advance(Duration::from_secs(30));
    let mut shell = ShellSettings::new("127.0.0.1:0".parse().unwrap(), 4 << 20);
    shell.clock = Arc::new(clock.clone());
    let broker = run(BrokerSettings::default(), shell).await.unwrap();
    let endpoint = format!("http://{}", broker.local_addr());

    // An agent registers.
    let (agent_tx, agent_rx) = mpsc::channel(8);
    let register = v1::agent_message::Register {
        agent: Some(v1::AgentInfo {
            id: String::new(),
            hostname: "node1".into(),
            resources: resources_to_proto(&ResourceSet::parse("cpus:4;mem:2048").unwrap()),
            attributes: vec![v1::Attribute { name: "rack".into(), value: "r1".into() }],
            http_address: "node1:5051".into(),
        }),
        tasks: Vec::new(),
        ..Default::default()
    };
    agent_tx.send(v1::AgentMessage { kind: Some(v1::agent_message::Kind::Register(register)) }).await.unwrap();
    let mut agent = AgentClient::connect(endpoint.clone()).await.unwrap();
    let mut from_broker = agent.attach(ReceiverStream::new(agent_rx)).await.unwrap().into_inner();
    let registered = from_broker.message().await.unwrap().unwrap();
    let Some(v1::broker_message::Kind::Registered(registered)) = registered.kind else { panic!("{registered:?}") };

    // A framework asks about a task the broker never heard of: the answer
    // the broker makes itself carries the wall clock's time.
    let (call_tx, call_rx) = mpsc::channel(8);
    let subscribe = v1::call::Subscribe {
        data: None,
        framework: Some(v1::FrameworkInfo { name: "probe".into(), user: "u".into(), hostname: "h".into(), ..Default::default() }),
    };
    call_tx.send(v1::Call { framework_id: String::new(), kind: Some(v1::call::Kind::Subscribe(subscribe)) }).await.unwrap();
    let mut scheduler = SchedulerClient::connect(endpoint.clone()).await.unwrap();
    let mut events = scheduler.subscribe(ReceiverStream::new(call_rx)).await.unwrap().into_inner();
    let framework_id = loop {
        let event = events.message().await.unwrap().unwrap();
        if let Some(v1::event::Kind::Subscribed(s)) = event.kind {
            break s.framework_id;
        }
    };
    clock.advance(Duration::from_millis(1500));
    let reconcile = v1::call::Reconcile { tasks: vec![v1::call::reconcile::Task { task_id: "zz".into(), agent_id: String::new() }] };
    call_tx.send(v1::Call { framework_id, kind: Some(v1::call::Kind::Reconcile(reconcile)) }).await.unwrap();
    let status = loop {
        let event = events.message().await.unwrap().unwrap();
        if let Some(v1::event::Kind::Update(u)) = event.kind {
            break u.status.unwrap();
        }
    };
    assert_eq!(status.task_id, "zz");
    assert_eq!(status.timestamp, 1_700_000_031.5, "seconds since the Unix epoch");

    // GetState: the agent, typed.
    let mut operator = OperatorClient::connect(endpoint).await.unwrap();
    let state = operator.get_state(v1::GetStateRequest {}).await.unwrap().into_inner();
    assert!(!state.broker_id.is_empty() && state.state_json.contains(&registered.agent_id));
    assert_eq!((state.leader_epoch, state.recovering), (0, false));
    let agents = agents_from_proto(&state).unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].id.as_str(), registered.agent_id);
    assert_eq!((agents[0].hostname.as_str(), agents[0].http_address.as_str()), ("node1", "node1:5051"));
    assert_eq!(agents[0].state, AgentState::Reachable);
    assert_eq!(agents[0].total, ResourceSet::parse("cpus:4;mem:2048").unwrap());
    assert!(agents[0].used.is_empty());
    assert!(agents[0].offered.is_empty() || agents[0].offered == agents[0].total, "all of it offered to the probe, or nothing yet");

    // /metrics over HTTP: OpenMetrics, ending in # EOF.
    let response = http_get(broker.local_addr(), "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.to_ascii_lowercase().contains("content-type: application/openmetrics-text; version=1.0.0"), "{response}");
    assert!(response.contains("weir_broker_agents{state=\"reachable\"} 1\n"), "{response}");
    assert!(response.trim_end().ends_with("# EOF"), "{response}");

    drop(call_tx);
    drop(agent_tx);
    broker.stop().await.unwrap();
}
