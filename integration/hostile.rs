//! Hostile input against a real `weir standalone` (issue 24): memory
//! before authentication, connection floods, slow HTTP clients, gRPC
//! messages over the limit, a reconcile bigger than any buffer, unknown
//! paths. Each test asserts what the attacker's client sees and that the
//! honest clients and running work carry on.
//!
//! Loopback only; every loop has a fixed bound.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_proto::v1;
use weir_proto::v1::scheduler_client::SchedulerClient;
use weir_yarn_ipc::frame::{encode_frame, read_frame, FrameCursor};
use weir_yarn_ipc::header::{request_header, CONNECTION_CONTEXT_CALL_ID};
use weir_yarn_ipc::proto::rpc_response_header_proto::RpcStatusProto;
use weir_yarn_ipc::proto::{IpcConnectionContextProto, RpcResponseHeaderProto, UserInformationProto};

const SPEC: &str = "cpus:2;mem:2048;disk:1000";

/// A running `weir standalone`: its broker and its YARN client port.
struct Standalone {
    proc: support::Proc,
    broker: String,
    yarn: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Standalone {
    /// SIGTERM, so standalone stops its agent, which kills its tasks.
    fn drop(&mut self) {
        self.proc.terminate();
    }
}

fn standalone(defines: &[&str]) -> Standalone {
    let dir = tempfile::tempdir().unwrap();
    let (proc, broker) = support::spawn_loopback_standalone(dir.path().to_str().unwrap(), SPEC, defines);
    let yarn = yarn_address(&dir.path().join("hadoop-conf"));
    Standalone { proc, broker, yarn, _dir: dir }
}

/// yarn.resourcemanager.address from the yarn-site.xml standalone wrote.
fn yarn_address(conf_dir: &Path) -> SocketAddr {
    let site = std::fs::read_to_string(conf_dir.join("yarn-site.xml")).expect("standalone wrote yarn-site.xml");
    site.split("<name>yarn.resourcemanager.address</name>")
        .nth(1)
        .and_then(|rest| rest.split("<value>").nth(1))
        .and_then(|v| v.split("</value>").next())
        .and_then(|v| v.parse().ok())
        .expect("yarn.resourcemanager.address in yarn-site.xml")
}

/// Resident memory of `pid` in KiB, from /proc.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A connection from `source` (any 127.x.y.z), so per-peer caps can be
/// exercised on loopback.
fn connect_from(rt: &tokio::runtime::Runtime, source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        socket.connect(to).await
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether the server has closed `s` (EOF or reset) within `wait`.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    let end = Instant::now() + wait;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
    false
}

/// The FATAL message of the one frame the server sent before closing.
fn fatal_reply(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let body = rt.block_on(async {
        let mut r: &[u8] = &reply;
        read_frame(&mut r, 1 << 20).await
    });
    let body = body.expect("a frame").expect("a FATAL reply before the close");
    let h: RpcResponseHeaderProto = FrameCursor::new(&body).decode("response header").unwrap();
    assert_eq!(h.status(), RpcStatusProto::Fatal, "{h:?}");
    h.error_msg.unwrap_or_default()
}

/// Preamble (SIMPLE) and connection context: past the handshake.
fn simple_handshake() -> Vec<u8> {
    let mut bytes = b"hrpc\x09\x00\x00".to_vec();
    let context = IpcConnectionContextProto {
        user_info: Some(UserInformationProto { effective_user: Some("mallory".into()), real_user: None }),
        protocol: Some(weir_yarn_api::APPLICATION_CLIENT_PROTOCOL.into()),
    };
    let header = request_header(CONNECTION_CONTEXT_CALL_ID, &[0; 16], -1);
    bytes.extend(encode_frame(&[&header, &context]));
    bytes
}

fn weir(args: &[&str]) -> std::process::Output {
    Command::new(support::WEIR).args(args).stdin(Stdio::null()).output().expect("run weir")
}

/// Item 1: a frame declared before authentication is refused by its
/// length, and frames declared after it cost what arrived, not what was
/// declared: 1,000 connections declaring 127 MiB leave the process small.
#[test]
fn frames_declared_before_authentication_are_refused_and_cost_no_memory() {
    let s = standalone(&["yarn-shim.ipc.connections.per.peer.max=2000", "yarn-shim.ipc.connections.max=2000"]);
    let declared = (127u32 << 20).to_be_bytes();

    // Before SASL: refused at once, with the limit in the answer.
    let mut c = TcpStream::connect(s.yarn).unwrap();
    c.write_all(b"hrpc\x09\x00\xdf").unwrap();
    c.write_all(&declared).unwrap();
    assert_eq!(fatal_reply(&mut c), "frame of 133169152 bytes exceeds the limit of 65536 before authentication");

    // Past the handshake (SIMPLE needs none): 1,000 connections each
    // declare 127 MiB, send a byte and wait.
    let before = rss_kib(s.proc.pid());
    let mut held = Vec::new();
    let handshake = simple_handshake();
    for _ in 0..1000 {
        let mut c = TcpStream::connect(s.yarn).unwrap();
        c.write_all(&handshake).unwrap();
        c.write_all(&declared).unwrap();
        c.write_all(b"x").unwrap();
        held.push(c);
    }
    std::thread::sleep(Duration::from_secs(2));
    let during = rss_kib(s.proc.pid());
    eprintln!("standalone RSS: {before} KiB before, {during} KiB with 1,000 connections declaring 127 MiB");
    assert!(during < 256 * 1024, "RSS {during} KiB with 1,000 declared 127 MiB frames");
    // They are all still open (nothing was refused), and honest work goes on.
    let mut open = 0;
    for c in held.iter_mut().take(50) {
        if !closed_by_server(c, Duration::from_millis(20)) {
            open += 1;
        }
    }
    assert_eq!(open, 50);
    let out = weir(&["status", "--broker", &s.broker]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Item 2: a flood of idle connections on a YARN port is capped (the rest
/// closed at accept) and the broker's port, `weir status` and `weir run`
/// answer while it is held; a task running before the flood finishes.
#[test]
fn a_flood_on_a_yarn_port_is_capped_and_the_broker_answers_meanwhile() {
    let s = standalone(&[
        "yarn-shim.ipc.connections.max=1000",
        "yarn-shim.ipc.connections.per.peer.max=300",
        "yarn-shim.ipc.handshake.timeout=2m",
        "yarn-shim.ipc.idle.timeout=2m",
    ]);
    let running = Command::new(support::WEIR)
        .args(["run", "--broker", &s.broker, "--cpus", "0.1", "--mem", "16", "--", "sh", "-c", "sleep 6; echo survived"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // 1,600 connections from four loopback addresses, 400 from each in
    // turn: the first three each fill their per-peer cap of 300, the
    // fourth fills the listener's cap of 1,000 after 100.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut held = Vec::new();
    for i in 0..1600u32 {
        let source = [127, 0, 0, 10 + (i / 400) as u8];
        match connect_from(&rt, source, s.yarn) {
            Ok(c) => held.push((source, c)),
            Err(e) => panic!("connect {i}: {e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut closed = 0;
    for (_, c) in held.iter_mut() {
        if closed_by_server(c, Duration::from_millis(1)) {
            closed += 1;
        }
    }
    assert_eq!(held.len() - closed, 1000, "{closed} of {} closed", held.len());

    let started = Instant::now();
    let out = weir(&["status", "--broker", &s.broker]);
    eprintln!("weir status took {:?} with the YARN port flooded", started.elapsed());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(support::http_get(&format!("http://{}/health", s.broker)).map(|b| b.contains("ok")), Ok(true));
    let out = weir(&["run", "--broker", &s.broker, "--cpus", "0.1", "--mem", "16", "--", "echo", "hello-through-the-flood"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello-through-the-flood"));

    let out = running.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("survived"));
    drop(held);
}

/// Items 2 and 6: a client trickling header lines is cut off while others
/// are served; an unknown path is 404, not 200 with a gRPC status.
#[test]
fn slow_http_clients_are_cut_off_and_unknown_paths_are_404() {
    let s = standalone(&["broker.http.header.read.timeout=1s"]);
    let mut slow = TcpStream::connect(&s.broker).unwrap();
    slow.write_all(b"GET /state HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut cut_off = false;
    for i in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(support::http_get(&format!("http://{}/health", s.broker)).map(|b| b.contains("ok")), Ok(true));
        if slow.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).is_err() {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a header trickled for 10 s was still being read");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());

    let mut c = TcpStream::connect(&s.broker).unwrap();
    c.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.ends_with("no such path: /nope\n"), "{answer}");
}

fn subscribe_call(name: String) -> v1::Call {
    let framework = v1::FrameworkInfo { name, user: "mallory".into(), hostname: "h".into(), ..Default::default() };
    v1::Call { framework_id: String::new(), kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe { framework: Some(framework), data: None })) }
}

/// Item 5: a call over the message limit is answered RESOURCE_EXHAUSTED
/// with the limit; a RECONCILE of 20,000 tasks is answered in full on a
/// stream that stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_limits_answer_with_a_status_and_a_big_reconcile_streams() {
    let s = standalone(&["broker.max.message.size=256k"]);
    let endpoint = format!("http://{}", s.broker);

    let (tx, rx) = mpsc::channel(4);
    tx.send(subscribe_call("x".repeat(300 * 1024))).await.unwrap();
    let mut client = SchedulerClient::connect(endpoint.clone()).await.unwrap();
    let answer = match client.subscribe(ReceiverStream::new(rx)).await {
        Err(status) => status,
        Ok(events) => {
            let mut events = events.into_inner();
            tokio::time::timeout(Duration::from_secs(10), events.message()).await.expect("an answer").expect_err("an error status")
        }
    };
    assert_eq!(answer.code(), tonic::Code::ResourceExhausted, "{answer:?}");
    assert!(answer.message().starts_with("message larger than the broker's limit of 262144 bytes (broker.max.message.size)"), "{answer:?}");
    drop(tx);

    // 20,000 tasks in one RECONCILE (about 400 KiB; under a 16 MiB limit
    // in the default setup, so here in two calls of 10,000).
    let (tx, rx) = mpsc::channel(4);
    tx.send(subscribe_call("reconciler".into())).await.unwrap();
    let mut events = client.subscribe(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let framework_id = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
        if let Some(v1::event::Kind::Subscribed(s)) = event.kind {
            break s.framework_id;
        }
    };
    for half in 0..2 {
        let tasks = (0..10_000).map(|i| v1::call::reconcile::Task { task_id: format!("t-{half}-{i}"), agent_id: String::new() }).collect();
        let call = v1::Call { framework_id: framework_id.clone(), kind: Some(v1::call::Kind::Reconcile(v1::call::Reconcile { tasks })) };
        assert!(call.encoded_len() < 256 * 1024);
        tx.send(call).await.unwrap();
    }
    let mut updates = 0;
    while updates < 20_000 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.message())
            .await
            .expect("updates keep coming")
            .expect("the stream stays healthy")
            .expect("the stream stays open");
        if let Some(v1::event::Kind::Update(u)) = event.kind {
            assert_eq!(u.status.unwrap().state(), v1::TaskState::TaskUnknown);
            updates += 1;
        }
    }
    // Still open: one more answer comes.
    let tasks = vec![v1::call::reconcile::Task { task_id: "last".into(), agent_id: String::new() }];
    tx.send(v1::Call { framework_id, kind: Some(v1::call::Kind::Reconcile(v1::call::Reconcile { tasks })) }).await.unwrap();
    let last = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
        if let Some(v1::event::Kind::Update(u)) = event.kind {
            break u.status.unwrap().task_id;
        }
    };
    assert_eq!(last, "last");
}

/// Item 3: a framework that subscribes and never answers its offers does
/// not starve a newcomer in the same role: once its offer times out, the
/// newcomer (`weir run`) is offered the agent and its task runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_framework_does_not_starve_a_newcomer() {
    let s = standalone(&["broker.offer.timeout=2s"]);
    let (tx, rx) = mpsc::channel(4);
    tx.send(subscribe_call("silent".into())).await.unwrap();
    let mut client = SchedulerClient::connect(format!("http://{}", s.broker)).await.unwrap();
    let mut events = client.subscribe(ReceiverStream::new(rx)).await.unwrap().into_inner();
    // Wait until the silent framework holds the whole agent in an offer.
    for _ in 0..100 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
        if matches!(event.kind, Some(v1::event::Kind::Offers(_))) {
            break;
        }
    }
    let started = Instant::now();
    let mut run = Command::new(support::WEIR)
        .args(["run", "--broker", &s.broker, "--cpus", "1", "--mem", "64", "--", "echo", "fed"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep reading (never answering) so the silent framework's stream stays healthy.
    let reader = tokio::spawn(async move {
        while let Ok(Some(_)) = events.message().await {}
    });
    let mut finished = None;
    for _ in 0..300 {
        if let Some(status) = run.try_wait().unwrap() {
            finished = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if finished.is_none() {
        let _ = run.kill();
    }
    let out = run.wait_with_output().unwrap();
    eprintln!("weir run finished after {:?} next to a silent framework", started.elapsed());
    assert!(finished.is_some_and(|s| s.success()), "weir run starved for 30 s: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("fed"));
    reader.abort();
    drop(tx);
}

/// Item 4: the piles a client can grow are bounded with a clear error:
/// frameworks kept (connected or waiting to fail over) and roles; a year's
/// failover timeout is cut to the maximum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frameworks_and_roles_are_bounded_with_a_clear_error() {
    // The YARN shim is one framework already.
    let s = standalone(&["broker.frameworks.max=3", "broker.roles.max=4", "broker.framework.failover.timeout.max=1h"]);
    let endpoint = format!("http://{}", s.broker);
    let mut client = SchedulerClient::connect(endpoint.clone()).await.unwrap();
    // Named with a terminal escape, which `weir status` must not print raw.
    let mut year = subscribe_call("away\x1b[2Jfor-a-year".into());
    if let Some(v1::call::Kind::Subscribe(sub)) = &mut year.kind {
        sub.framework.as_mut().unwrap().failover_timeout_seconds = 365.0 * 24.0 * 3600.0;
    }
    // Two frameworks subscribe with a year's failover timeout and leave.
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel(4);
        tx.send(year.clone()).await.unwrap();
        let mut events = client.subscribe(ReceiverStream::new(rx)).await.unwrap().into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
        assert!(matches!(first.kind, Some(v1::event::Kind::Subscribed(_))), "{first:?}");
    }
    // Wait for the shim's own subscription too: three frameworks held.
    let mut state = String::new();
    for _ in 0..100 {
        state = support::http_get(&format!("http://{}/state", s.broker)).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&state).unwrap();
        if doc["frameworks"].as_array().map_or(0, |f| f.len()) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(state.contains("\"failover_timeout_seconds\": 3600.0"), "a year cut to an hour:\n{state}");
    let status = weir(&["status", "--broker", &s.broker]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(!shown.contains('\x1b') && shown.contains("away\\u{1b}[2Jfor-a-year"), "{shown}");
    // A fourth is refused, and says why.
    let (tx, rx) = mpsc::channel(4);
    tx.send(subscribe_call("one-too-many".into())).await.unwrap();
    let mut events = client.subscribe(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let refusal = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
    let Some(v1::event::Kind::Error(error)) = refusal.kind else { panic!("{refusal:?}") };
    assert_eq!(
        error.message,
        "subscription refused: the broker already holds its limit of 3 frameworks, connected or waiting to fail over (broker.frameworks.max)"
    );
    assert!(tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().is_none(), "then the stream ends");
    drop(tx);

    // Roles: "*" and the shim's "default" exist; three new ones do not fit in 4.
    let mut operator = v1::operator_client::OperatorClient::connect(endpoint).await.unwrap();
    let weights = ["r1", "r2", "r3"].map(|r| v1::RoleWeight { role: r.into(), weight: 2.0 }).to_vec();
    let refused = operator.update_weights(v1::UpdateWeightsRequest { weights }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(refused.message(), "role r1 is new and 3 new role(s) would take the broker past its limit of 4 roles (broker.roles.max)");
    let known = operator.get_weights(v1::GetWeightsRequest {}).await.unwrap().into_inner().weights;
    assert!(!known.iter().any(|w| w.role == "r1"), "all or nothing: {known:?}");

    // Two fit; weighted back to the default, they are removed and make room again.
    let weights = ["r1", "r2"].map(|r| v1::RoleWeight { role: r.into(), weight: 2.0 }).to_vec();
    operator.update_weights(v1::UpdateWeightsRequest { weights }).await.unwrap();
    let full = operator.update_weights(v1::UpdateWeightsRequest { weights: vec![v1::RoleWeight { role: "r3".into(), weight: 2.0 }] });
    assert_eq!(full.await.unwrap_err().code(), tonic::Code::InvalidArgument);
    let weights = ["r1", "r2"].map(|r| v1::RoleWeight { role: r.into(), weight: 1.0 }).to_vec();
    operator.update_weights(v1::UpdateWeightsRequest { weights }).await.unwrap();
    let known = operator.get_weights(v1::GetWeightsRequest {}).await.unwrap().into_inner().weights;
    assert!(!known.iter().any(|w| w.role == "r1" || w.role == "r2"), "removed: {known:?}");
    operator.update_weights(v1::UpdateWeightsRequest { weights: vec![v1::RoleWeight { role: "r3".into(), weight: 2.0 }] }).await.unwrap();
}
