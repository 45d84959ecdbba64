//! The IPC server and client over loopback: SIMPLE and token (DIGEST-MD5)
//! authentication, pipelining, Java exceptions, malformed input on a raw
//! socket, idle timeout, and an independent Python DIGEST-MD5 client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_yarn_ipc::client::{Client, ClientConfig};
use weir_yarn_ipc::connection::AuthPolicy;
use weir_yarn_ipc::frame::{read_frame, FrameCursor};
use weir_yarn_ipc::server::{CallContext, RpcError, Server, ServerConfig, ServerHandle, Service};
use weir_yarn_ipc::proto::rpc_response_header_proto::{RpcErrorCodeProto, RpcStatusProto};
use weir_yarn_ipc::proto::{RpcResponseHeaderProto, TokenProto};
use weir_yarn_ipc::security::secret_manager::SecretManager;
use weir_yarn_ipc::Error;

const ECHO: &str = "test.EchoProtocolPB";
const NOT_FOUND: &str = "org.apache.hadoop.yarn.exceptions.ApplicationNotFoundException";

struct Echo;

#[async_trait::async_trait]
impl Service for Echo {
    async fn call(&self, ctx: &CallContext, method: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        match method {
            "echo" => Ok(request.to_vec()),
            "sleep" => {
                let ms: u64 = std::str::from_utf8(request).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(request.to_vec())
            }
            "whoami" => {
                let token = ctx.token_identifier.clone().unwrap_or_default();
                Ok(format!("{}|{}", ctx.user.as_deref().unwrap_or("-"), String::from_utf8_lossy(&token)).into_bytes())
            }
            "fail" => Err(RpcError::application(NOT_FOUND, "Application with id 'application_1_0001' doesn't exist in RM.")),
            "panic" => panic!("service bug"),
            other => Err(RpcError::no_such_method(ECHO, other)),
        }
    }
}

const KEY_LIFETIME_MS: u64 = 3_600_000;

/// A server on an ephemeral port whose token passwords come from `secrets`;
/// the identifier's first 4 bytes name the master key id (a stand-in for a
/// real token identifier's keyId field).
async fn start(config: ServerConfig, secrets: Arc<Mutex<SecretManager>>) -> ServerHandle {
    let mut server = Server::new(config);
    server.register(ECHO, Arc::new(Echo));
    server.set_token_passwords(Arc::new(move |id: &[u8]| {
        let key_id = i32::from_be_bytes(id.get(..4)?.try_into().ok()?);
        secrets.lock().ok()?.password_for(key_id, id, 0).ok()
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    server.spawn(listener).unwrap()
}

fn secrets() -> Arc<Mutex<SecretManager>> {
    Arc::new(Mutex::new(SecretManager::new(b"master-key-1".to_vec(), KEY_LIFETIME_MS, 0)))
}

fn issue(secrets: &Mutex<SecretManager>, name: &str) -> TokenProto {
    let m = secrets.lock().unwrap();
    let mut identifier = m.current_key_id().to_be_bytes().to_vec();
    identifier.extend_from_slice(name.as_bytes());
    TokenProto { password: m.sign(&identifier), identifier, kind: "YARN_AM_RM_TOKEN".into(), service: String::new() }
}

fn remote_of(e: Error) -> (String, String, bool) {
    match e {
        Error::Remote { class, message, fatal } => (class, message, fatal),
        other => panic!("expected a remote exception, got {other}"),
    }
}

#[tokio::test]
async fn simple_calls_errors_and_pings() {
    let server = start(ServerConfig::default(), secrets()).await;
    let c = Client::connect(server.local_addr, ClientConfig::simple("alice", ECHO)).await.unwrap();
    assert_eq!(c.call(ECHO, "echo", b"hello").await.unwrap(), b"hello");
    assert_eq!(c.call(ECHO, "echo", b"").await.unwrap(), b"");
    assert_eq!(c.call(ECHO, "whoami", b"").await.unwrap(), b"alice|");
    c.ping().await.unwrap();

    let (class, message, fatal) = remote_of(c.call(ECHO, "fail", b"").await.unwrap_err());
    assert_eq!(class, NOT_FOUND);
    assert_eq!(message, "Application with id 'application_1_0001' doesn't exist in RM.");
    assert!(!fatal);

    let (class, message, _) = remote_of(c.call(ECHO, "nope", b"").await.unwrap_err());
    assert_eq!(class, "org.apache.hadoop.ipc.RpcNoSuchMethodException");
    assert!(message.contains("Unknown method nope"), "{message}");

    let (class, message, _) = remote_of(c.call("org.example.Other", "x", b"").await.unwrap_err());
    assert_eq!(class, "org.apache.hadoop.ipc.RpcNoSuchProtocolException");
    assert_eq!(message, "Unknown protocol: org.example.Other");

    let (class, _, _) = remote_of(c.call(ECHO, "panic", b"").await.unwrap_err());
    assert_eq!(class, "org.apache.hadoop.ipc.RpcServerException");

    // ERROR responses leave the connection usable.
    assert_eq!(c.call(ECHO, "echo", b"still here").await.unwrap(), b"still here");

    // Each call is counted by protocol, method and result (other tests of
    // this process count theirs too, hence `>=`); a made-up method or
    // protocol name is not kept as a label.
    let counts = weir_yarn_ipc::server::calls::counts();
    let calls = |method: &str, result: &str| -> u64 {
        counts.iter().filter(|((p, m, r), _)| p == ECHO && m == method && *r == result).map(|(_, n)| *n).sum()
    };
    assert!(calls("echo", "success") >= 3, "{counts:?}");
    assert!(calls("fail", "error") >= 1, "{counts:?}");
    assert!(calls("panic", "server_error") >= 1, "{counts:?}");
    assert!(calls("-", "no_such_method") >= 1, "{counts:?}");
    assert!(counts.iter().any(|((p, m, r), _)| p == "-" && m == "-" && *r == "no_such_protocol"), "{counts:?}");
    assert!(!counts.iter().any(|((p, m, _), _)| m == "nope" || p == "org.example.Other"), "{counts:?}");
    server.shutdown();
}

#[tokio::test]
async fn pipelined_calls_are_answered_by_call_id_as_they_complete() {
    let server = start(ServerConfig::default(), secrets()).await;
    let c = Arc::new(Client::connect(server.local_addr, ClientConfig::simple("bob", ECHO)).await.unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for ms in [400u64, 200, 0] {
        let (c, order) = (c.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let r = c.call(ECHO, "sleep", ms.to_string().as_bytes()).await.unwrap();
            order.lock().unwrap().push(ms);
            r
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results, vec![b"400".to_vec(), b"200".to_vec(), b"0".to_vec()]);
    assert_eq!(*order.lock().unwrap(), vec![0, 200, 400], "the slow call must not block the fast ones");
    server.shutdown();
}

#[tokio::test]
async fn many_connections_at_once() {
    let server = start(ServerConfig::default(), secrets()).await;
    let addr = server.local_addr;
    let mut tasks = Vec::new();
    for i in 0..32 {
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(addr, ClientConfig::simple(&format!("u{i}"), ECHO)).await.unwrap();
            for j in 0..10 {
                let msg = format!("{i}-{j}");
                assert_eq!(c.call(ECHO, "echo", msg.as_bytes()).await.unwrap(), msg.as_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    server.shutdown();
}

#[tokio::test]
async fn token_auth_identifies_the_caller_and_rejects_bad_tokens() {
    let secrets = secrets();
    let config = ServerConfig { auth: AuthPolicy::TokenRequired, ..Default::default() };
    let server = start(config, secrets.clone()).await;
    let token = issue(&secrets, "attempt_1");
    let mut cfg = ClientConfig::simple("am", ECHO);
    cfg.token = Some(token.clone());
    let c = Client::connect(server.local_addr, cfg.clone()).await.unwrap();
    let who = c.call(ECHO, "whoami", b"").await.unwrap();
    assert!(who.ends_with(b"attempt_1"), "{}", String::from_utf8_lossy(&who));

    // Tokens signed before a key roll still work.
    secrets.lock().unwrap().roll(b"master-key-2".to_vec(), 1);
    let c2 = Client::connect(server.local_addr, cfg.clone()).await.unwrap();
    assert_eq!(c2.call(ECHO, "echo", b"x").await.unwrap(), b"x");

    // A wrong password: FATAL AccessControlException during connect.
    let mut bad = cfg.clone();
    bad.token = Some(TokenProto { password: b"guess".to_vec(), ..token });
    let (class, message, fatal) = remote_of(Client::connect(server.local_addr, bad).await.err().unwrap());
    assert_eq!(class, "org.apache.hadoop.security.AccessControlException");
    assert!(message.contains("wrong token password"), "{message}");
    assert!(fatal);

    // No token on a port that requires one.
    let c = Client::connect(server.local_addr, ClientConfig::simple("sneaky", ECHO)).await.unwrap();
    let (class, message, _) = remote_of(c.call(ECHO, "echo", b"x").await.unwrap_err());
    assert_eq!(class, "org.apache.hadoop.security.AccessControlException");
    assert!(message.contains("SIMPLE authentication is not enabled"), "{message}");
    server.shutdown();
}

/// A client inside a container holds tokens for other services and so
/// speaks SASL to every port (Hadoop's `trySasl`); on a SIMPLE-allowed port
/// it goes on as SIMPLE when it has no token for it (Skein's AM calling
/// the client port), and as TOKEN when it has one.
#[tokio::test]
async fn sasl_client_without_a_token_falls_back_to_simple_where_offered() {
    let secrets = secrets();
    let server = start(ServerConfig::default(), secrets.clone()).await;
    let c = Client::connect_holding_other_tokens(server.local_addr, ClientConfig::simple("skein", ECHO)).await.unwrap();
    assert_eq!(c.call(ECHO, "whoami", b"").await.unwrap(), b"skein|");

    let mut cfg = ClientConfig::simple("am", ECHO);
    cfg.token = Some(issue(&secrets, "delegated"));
    let c = Client::connect_holding_other_tokens(server.local_addr, cfg).await.unwrap();
    let who = c.call(ECHO, "whoami", b"").await.unwrap();
    assert!(who.ends_with(b"delegated"), "{}", String::from_utf8_lossy(&who));
    server.shutdown();

    // A port with no secret manager answers NEGOTIATE with SUCCESS.
    let mut bare = Server::new(ServerConfig::default());
    bare.register(ECHO, Arc::new(Echo));
    let bare = bare.spawn(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let c = Client::connect_holding_other_tokens(bare.local_addr, ClientConfig::simple("skein", ECHO)).await.unwrap();
    assert_eq!(c.call(ECHO, "whoami", b"").await.unwrap(), b"skein|");
    bare.shutdown();

    // A token-required port offers only TOKEN: the client gives up as
    // Hadoop's does, with Hadoop's words.
    let strict = start(ServerConfig { auth: AuthPolicy::TokenRequired, ..Default::default() }, secrets).await;
    let err = Client::connect_holding_other_tokens(strict.local_addr, ClientConfig::simple("skein", ECHO)).await.err().unwrap();
    assert!(matches!(&err, Error::Auth(m) if m == "Client cannot authenticate via:[TOKEN]"), "{err}");
    strict.shutdown();
}

async fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<RpcResponseHeaderProto> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    // Half-close, so a truncated frame ends in EOF rather than a wait.
    s.shutdown().await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut s, 1 << 20)).await.unwrap().ok()??;
    let h = FrameCursor::new(&frame).decode("h").unwrap();
    // After a FATAL the server closes.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "server must close after FATAL");
    Some(h)
}

#[tokio::test]
async fn malformed_input_on_the_wire_gets_fatal_replies() {
    let config = ServerConfig { max_frame_len: 1024, ..Default::default() };
    let server = start(config, secrets()).await;
    let addr = server.local_addr;

    let h = raw(addr, b"hrpc\x09\x00\x00\x7f\xff\xff\xff").await.unwrap();
    assert_eq!(h.status(), RpcStatusProto::Fatal);
    assert_eq!(h.error_msg.as_deref(), Some("frame of 2147483647 bytes exceeds the limit of 1024 before authentication"));

    let h = raw(addr, b"hrpc\x07\x00\x00").await.unwrap();
    assert_eq!(h.error_detail(), RpcErrorCodeProto::FatalVersionMismatch);
    assert_eq!(h.error_msg.as_deref(), Some("IPC version 7 is not supported (server speaks 9)"));

    assert!(raw(addr, b"GET / HTTP/1.1\r\n\r\n").await.is_none());

    // A call before the connection context.
    let call = weir_yarn_ipc::header::call_frame(
        &weir_yarn_ipc::header::request_header(0, &[1; 16], -1),
        ECHO,
        "echo",
        b"x",
    );
    let mut bytes = b"hrpc\x09\x00\x00".to_vec();
    bytes.extend_from_slice(&call);
    let h = raw(addr, &bytes).await.unwrap();
    assert_eq!(h.error_detail(), RpcErrorCodeProto::FatalInvalidRpcHeader);
    assert_eq!(h.client_id.as_deref(), Some(&[1u8; 16][..]));

    // Garbage header.
    let h = raw(addr, b"hrpc\x09\x00\x00\x00\x00\x00\x03\x05\xff\xff").await.unwrap();
    assert_eq!(h.error_detail(), RpcErrorCodeProto::FatalInvalidRpcHeader);

    // A truncated frame then EOF: the server just closes.
    assert!(raw(addr, b"hrpc\x09\x00\x00\x00\x00\x00\x10abc").await.is_none());
    server.shutdown();
}

/// Writes `bytes` then reads until the server closes (or 5 s pass):
/// everything the server sent.
async fn send_and_read_to_close(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("server closes").unwrap_or(0);
    out
}

async fn fatal_message(reply: &[u8]) -> String {
    let mut r: &[u8] = reply;
    let body = read_frame(&mut r, 1 << 20).await.unwrap().expect("a FATAL reply");
    let h: RpcResponseHeaderProto = FrameCursor::new(&body).decode("response header").unwrap();
    assert_eq!(h.status(), RpcStatusProto::Fatal);
    h.error_msg.unwrap_or_default()
}

#[tokio::test]
async fn before_authentication_only_handshake_sized_frames_are_legal() {
    let server = start(ServerConfig::default(), secrets()).await;
    let addr = server.local_addr;
    // SASL preamble, then a 127 MiB frame instead of NEGOTIATE.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut bytes = b"hrpc\x09\x00\xdf".to_vec();
    bytes.extend_from_slice(&(127u32 << 20).to_be_bytes());
    let reply = send_and_read_to_close(&mut s, &bytes).await;
    assert_eq!(fatal_message(&reply).await, "frame of 133169152 bytes exceeds the limit of 65536 before authentication");
    // SIMPLE preamble, no context yet: the same.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut bytes = b"hrpc\x09\x00\x00".to_vec();
    bytes.extend_from_slice(&(65537u32).to_be_bytes());
    let reply = send_and_read_to_close(&mut s, &bytes).await;
    assert_eq!(fatal_message(&reply).await, "frame of 65537 bytes exceeds the limit of 65536 before authentication");
    // After the handshake the configured limit applies: a client still works.
    let c = Client::connect(addr, ClientConfig::simple("alice", ECHO)).await.unwrap();
    let big = vec![7u8; 200_000];
    assert_eq!(c.call(ECHO, "echo", &big).await.unwrap(), big);
    server.shutdown();
}

#[tokio::test]
async fn a_handshake_that_dawdles_is_cut_off_even_while_bytes_trickle() {
    let config = ServerConfig { handshake_timeout: Duration::from_millis(500), ..Default::default() };
    let server = start(config, secrets()).await;
    let mut s = TcpStream::connect(server.local_addr).await.unwrap();
    s.write_all(b"hrpc\x09\x00\xdf").await.unwrap();
    let started = std::time::Instant::now();
    // Pings are legal before SASL; one every 100 ms keeps the idle timer
    // happy but not the handshake deadline.
    let ping = weir_yarn_ipc::header::call_frame(&weir_yarn_ipc::header::request_header(-4, &[0; 16], -1), ECHO, "", b"");
    let mut closed = false;
    for _ in 0..100 {
        if s.write_all(&ping).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the server kept a connection that never finished its handshake");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    server.shutdown();
}

#[tokio::test]
async fn connections_over_the_per_peer_cap_are_closed_and_others_still_served() {
    let config = ServerConfig {
        connections: weir_net::ConnectionLimits { max_connections: 100, max_per_peer: 3 },
        ..Default::default()
    };
    let server = start(config, secrets()).await;
    let addr = server.local_addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(addr, ClientConfig::simple("alice", ECHO)).await.unwrap());
    }
    let refused = Client::connect(addr, ClientConfig::simple("alice", ECHO)).await;
    let calls = match refused {
        Err(_) => true,
        Ok(c) => c.call(ECHO, "echo", b"x").await.is_err(),
    };
    assert!(calls, "a fourth connection from one address must be closed");
    // From another loopback address the listener still has room.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = sock.connect(addr).await.unwrap();
    other.write_all(b"hrpc\x09\x00\xdf").await.unwrap();
    let mut buf = [0u8; 1];
    assert!(tokio::time::timeout(Duration::from_millis(300), other.read(&mut buf)).await.is_err(), "held open");
    assert_eq!(held[0].call(ECHO, "echo", b"still").await.unwrap(), b"still");
    server.shutdown();
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let config = ServerConfig { idle_timeout: Duration::from_millis(200), ..Default::default() };
    let server = start(config, secrets()).await;
    let mut s = TcpStream::connect(server.local_addr).await.unwrap();
    s.write_all(b"hrpc\x09\x00\x00").await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    assert_eq!(n, 0);
    server.shutdown();
}

#[tokio::test]
async fn independent_pure_sasl_client_authenticates() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pure_sasl_client.py");
    let probe = std::process::Command::new("python3").args(["-c", "import puresasl"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => {
            println!("SKIPPED: python3 with the pure-sasl package is not available (pip install pure-sasl)");
            return;
        }
    }
    let secrets = secrets();
    let config = ServerConfig { auth: AuthPolicy::TokenRequired, ..Default::default() };
    let server = start(config, secrets.clone()).await;
    let token = issue(&secrets, "python-attempt");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let port = server.local_addr.port().to_string();
    let run = |password: Vec<u8>| {
        let (script, port, id) = (script.to_string(), port.clone(), hex(&token.identifier));
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("python3")
                .args([script.as_str(), "127.0.0.1", port.as_str(), id.as_str(), hex(&password).as_str()])
                .output()
                .unwrap();
            assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
    };
    assert_eq!(run(token.password.clone()).await.unwrap(), "OK hello from pure-sasl");
    let wrong = run(b"wrong".to_vec()).await.unwrap();
    assert!(wrong.starts_with("REMOTE org.apache.hadoop.security.AccessControlException:"), "{wrong}");
    let _ = TokenProto::default().encode_to_vec();
    server.shutdown();
}
