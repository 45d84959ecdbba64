//! The broker tried as an attacker would (issue 21): a real `weir broker`
//! with a token file, an agent registration secret and ACLs, a real
//! `weir agent` holding the secret, and calls made the way an intruder
//! would make them: without credentials, with wrong ones, with a revoked
//! token, in a role the ACLs forbid, against another principal's
//! framework. Each case checks the answer the caller gets and that the
//! books (`/state`, read as the operator) did not change.
//!
//! docs/SECURITY.md holds the table of these cases and their results.
//! Loopback only; every wait has a fixed bound.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_proto::v1;
use weir_proto::v1::agent_client::AgentClient;
use weir_proto::v1::operator_client::OperatorClient;
use weir_proto::v1::scheduler_client::SchedulerClient;

const SPEC: &str = "cpus:2;mem:1024;disk:1000";
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";
const OPS: &str = "ops-token-0123456789abc";
const AGENT_SECRET: &str = "agent-secret-0123456789";

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A broker with authentication and ACLs on, and one agent that has the
/// registration secret.
struct Secured {
    broker: support::Proc,
    agent: support::Proc,
    addr: String,
    tokens: PathBuf,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Drop for Secured {
    fn drop(&mut self) {
        self.agent.terminate();
        self.broker.terminate();
    }
}

const ACLS: &[&str] = &[
    "broker.acl.register-framework=alice: analytics; bob: batch; ops: *",
    "broker.acl.teardown-framework=ops: *",
    "broker.acl.view-framework=ops: *; alice: alice; bob: bob",
    "broker.acl.reserve=ops: *",
    "broker.acl.unreserve=ops: *",
    "broker.acl.drain-agent=ops: *",
    "broker.acl.update-weight=ops: *",
    "broker.acl.update-quota=ops: *",
    "broker.acl.view-role=ops: *; alice: analytics; bob: batch",
    "broker.acl.get-endpoint=ops: /metrics",
];

const AGENT_VIEW_ACL: &str = "agent.acl.view-framework=ops: *; alice: alice; bob: bob";

fn secured() -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    write_private(&tokens, &format!("# principal token\nalice {ALICE}\nbob {BOB}\nops {OPS}\n"));
    let secret = dir.path().join("agent-secret");
    write_private(&secret, &format!("{AGENT_SECRET}\n"));
    let work = dir.path().join("broker");
    let tokens_define = format!("broker.auth.tokens.file={}", tokens.display());
    let secret_define = format!("broker.auth.agent.secret.file={}", secret.display());
    let mut args = vec![
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--work-dir",
        work.to_str().unwrap(),
        "-D",
        &tokens_define,
        "-D",
        &secret_define,
        "-D",
        "broker.auth.tokens.reload.interval=200ms",
        "-D",
        "broker.ui.actions.enabled=true",
    ];
    for acl in ACLS {
        args.extend(["-D", acl]);
    }
    let (broker, line) = support::spawn_weir("broker", &args, "listening on");
    let addr = support::addr_in(&line);
    let agent_secret_define = format!("agent.auth.secret.file={}", secret.display());
    // The agent's HTTP port asks for the same tokens and lets each
    // principal read its own frameworks' sandboxes (ops: all).
    let agent_tokens_define = format!("agent.auth.tokens.file={}", tokens.display());
    let agent_work = dir.path().join("agent");
    // The agent is given a token in its environment, as an operator might
    // (it needs none): its tasks must not inherit it.
    let (agent, _) = support::spawn_weir_env(
        "agent",
        &[
            "agent",
            "--broker",
            &addr,
            "--listen",
            "127.0.0.1:0",
            "--resources",
            SPEC,
            "--work-dir",
            agent_work.to_str().unwrap(),
            "--hostname",
            "agent0.test",
            "-D",
            &agent_secret_define,
            "-D",
            &agent_tokens_define,
            "-D",
            AGENT_VIEW_ACL,
        ],
        "agent",
        &[("WEIR_TOKEN", OPS)],
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let s = Secured { broker, agent, addr, tokens, dir, rt };
    s.wait_for(|st| st["agents"].as_array().is_some_and(|a| a.len() == 1));
    s
}

/// `METHOD path` over HTTP/1.1 with an optional bearer token: status and body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

impl Secured {
    /// `/state` as the operator sees it (everything).
    fn state(&self) -> Value {
        self.state_as(OPS).expect("the operator reads /state")
    }

    fn state_as(&self, token: &str) -> Result<Value, u16> {
        let (status, body) = http(&self.addr, "GET", "/state", Some(token));
        if status != 200 {
            return Err(status);
        }
        let body = if body.contains("\r\n") && !body.trim_start().starts_with('{') { support::dechunk(&body) } else { body };
        Ok(serde_json::from_str(&body).unwrap_or_else(|e| panic!("/state is not JSON: {e}: {body}")))
    }

    fn wait_for(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.state();
            if pred(&state) {
                return state;
            }
            assert!(Instant::now() < deadline, "condition not reached within 30 s; last state:\n{state:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Opens a framework stream with SUBSCRIBE: the SUBSCRIBED framework id,
    /// or the status / ERROR event that ended it. The stream is kept open
    /// (returned) so the framework stays active.
    fn subscribe(&self, token: Option<&str>, id: &str, roles: &[&str], principal: &str) -> (Result<String, (tonic::Code, String)>, Option<mpsc::Sender<v1::Call>>) {
        self.rt.block_on(async {
            let mut client = SchedulerClient::connect(self.endpoint()).await.unwrap();
            let (tx, rx) = mpsc::channel(16);
            tx.send(v1::Call {
                framework_id: id.to_owned(),
                kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
                    framework: Some(v1::FrameworkInfo {
                        id: id.to_owned(),
                        name: "intruder".into(),
                        roles: roles.iter().map(|r| r.to_string()).collect(),
                        failover_timeout_seconds: 600.0,
                        principal: principal.to_owned(),
                        ..Default::default()
                    }),
                    data: None,
                })),
            })
            .await
            .unwrap();
            let mut request = tonic::Request::new(ReceiverStream::new(rx));
            if let Some(t) = token {
                request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            let mut events = match client.subscribe(request).await {
                Ok(r) => r.into_inner(),
                Err(s) => return (Err((s.code(), s.message().to_owned())), None),
            };
            let answer = match events.message().await {
                Ok(Some(v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) })) => Ok(s.framework_id),
                Ok(Some(v1::Event { kind: Some(v1::event::Kind::Error(e)) })) => Err((tonic::Code::Ok, e.message)),
                Ok(other) => Err((tonic::Code::Ok, format!("{other:?}"))),
                Err(s) => Err((s.code(), s.message().to_owned())),
            };
            // Keep reading in the background so the stream stays healthy.
            tokio::spawn(async move { while let Ok(Some(_)) = events.message().await {} });
            (answer, Some(tx))
        })
    }

    fn operator(&self, token: Option<&str>) -> OperatorClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, impl tonic::service::Interceptor>> {
        let channel = self.rt.block_on(tonic::transport::Endpoint::from_shared(self.endpoint()).unwrap().connect()).unwrap();
        let header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = token.map(|t| format!("Bearer {t}").parse().unwrap());
        OperatorClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            if let Some(h) = &header {
                r.metadata_mut().insert("authorization", h.clone());
            }
            Ok(r)
        })
    }

    /// A REGISTER on the Agent API, as a fake agent sends it.
    fn fake_agent(&self, secret: Option<&str>) -> Result<(), (tonic::Code, String)> {
        self.rt.block_on(async {
            let mut client = AgentClient::connect(self.endpoint()).await.unwrap();
            let (tx, rx) = mpsc::channel(4);
            tx.send(v1::AgentMessage {
                kind: Some(v1::agent_message::Kind::Register(v1::agent_message::Register {
                    agent: Some(v1::AgentInfo {
                        hostname: "fake.test".into(),
                        resources: weir_proto::convert::resources_to_proto(&weir_model::ResourceSet::parse("cpus:64;mem:65536").unwrap()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
            let mut request = tonic::Request::new(ReceiverStream::new(rx));
            if let Some(s) = secret {
                request.metadata_mut().insert("x-weir-agent-secret", s.parse().unwrap());
            }
            let mut stream = client.attach(request).await.map_err(|s| (s.code(), s.message().to_owned()))?.into_inner();
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Err(s)) => Err((s.code(), s.message().to_owned())),
                _ => Ok(()),
            }
        })
    }
}

/// What an attack must leave alone: agents, frameworks (id, principal,
/// active), tasks, reservations, weights.
fn books(state: &Value) -> Value {
    let agents: Vec<Value> = state["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| serde_json::json!([a["id"], a["hostname"], a["drain"], a["reservations"]]))
        .collect();
    let frameworks: Vec<Value> =
        state["frameworks"].as_array().unwrap().iter().map(|f| serde_json::json!([f["id"], f["principal"], f["active"], f["roles"]])).collect();
    let roles: Vec<Value> = state["roles"].as_array().unwrap().iter().map(|r| serde_json::json!([r["role"], r["weight"]])).collect();
    serde_json::json!({ "agents": agents, "frameworks": frameworks, "tasks": state["tasks"], "roles": roles })
}

fn no_secret_in(text: &str, what: &str) {
    for secret in [ALICE, BOB, OPS, AGENT_SECRET] {
        assert!(!text.contains(secret), "{what} holds a secret");
    }
}

#[test]
fn unauthenticated_http_is_401_and_changes_nothing() {
    let s = secured();
    let before = books(&s.state());
    for path in ["/state", "/metrics", "/ui/", "/ui/frameworks"] {
        let (status, body) = http(&s.addr, "GET", path, None);
        assert_eq!(status, 401, "GET {path} without a token: {body}");
        assert!(body.contains("requires a token"), "{body}");
        let (status, body) = http(&s.addr, "GET", path, Some("not-a-real-token-000000"));
        assert_eq!(status, 401, "GET {path} with a wrong token: {body}");
        assert!(body.contains("not valid"), "{body}");
    }
    // A monitor's liveness probe needs no token.
    assert_eq!(http(&s.addr, "GET", "/health", None).0, 200);
    let (status, _) = http(&s.addr, "POST", "/ui/frameworks/F-x/teardown", None);
    assert_eq!(status, 401);
    assert_eq!(books(&s.state()), before);
}

#[test]
fn unauthenticated_and_wrongly_authenticated_grpc_is_refused() {
    let s = secured();
    let before = books(&s.state());
    // Frameworks.
    for token in [None, Some("not-a-real-token-000000")] {
        let (answer, _) = s.subscribe(token, "", &["analytics"], "");
        let (code, message) = answer.unwrap_err();
        assert_eq!(code, tonic::Code::Unauthenticated, "{message}");
    }
    // Operators.
    for token in [None, Some("not-a-real-token-000000")] {
        let mut op = s.operator(token);
        let agent = before["agents"][0][0].as_str().unwrap().to_owned();
        let err = s.rt.block_on(op.drain_agent(v1::DrainAgentRequest { agent_id: agent, ..Default::default() })).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{}", err.message());
        let err = s.rt.block_on(op.get_state(v1::GetStateRequest {})).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        no_secret_in(err.message(), "an UNAUTHENTICATED answer");
    }
    // Agents: a fake one without the secret, or with a wrong one.
    for secret in [None, Some("guessed-secret-0000000")] {
        let (code, message) = s.fake_agent(secret).unwrap_err();
        assert_eq!(code, tonic::Code::Unauthenticated, "{message}");
        no_secret_in(&message, "the agent refusal");
    }
    assert_eq!(books(&s.state()), before, "nothing changed");
    // The real agent, with the secret, is registered; a fake with the
    // secret would be too (the secret is the only proof asked).
    assert_eq!(before["agents"].as_array().unwrap().len(), 1);
}

#[test]
fn acls_refuse_roles_principals_and_other_principals_frameworks() {
    let s = secured();
    // A role alice's ACL does not give her.
    let before = books(&s.state());
    let (answer, _) = s.subscribe(Some(ALICE), "", &["batch"], "");
    let (code, message) = answer.unwrap_err();
    assert_eq!(code, tonic::Code::PermissionDenied, "{message}");
    assert!(message.contains("principal \"alice\" may not register-framework \"batch\""), "{message}");
    assert!(message.contains("broker.acl.register-framework"), "{message}");
    // Naming another principal than the token's.
    let (answer, _) = s.subscribe(Some(ALICE), "", &["analytics"], "ops");
    let (code, message) = answer.unwrap_err();
    assert_eq!(code, tonic::Code::PermissionDenied, "{message}");
    assert!(message.contains("is not the principal of the token"), "{message}");
    assert_eq!(books(&s.state()), before, "refused subscriptions changed nothing");

    // Alice in her role: accepted, her principal recorded.
    let (answer, _alice_stream) = s.subscribe(Some(ALICE), "", &["analytics"], "");
    let alice_fw = answer.expect("alice subscribes in analytics");
    let state = s.wait_for(|st| st["frameworks"].as_array().is_some_and(|f| f.iter().any(|f| f["id"] == alice_fw.as_str())));
    let fw = state["frameworks"].as_array().unwrap().iter().find(|f| f["id"] == alice_fw.as_str()).unwrap().clone();
    assert_eq!(fw["principal"], "alice");
    let before = books(&state);

    // Bob takes over alice's framework id: refused, alice stays active.
    let (answer, _) = s.subscribe(Some(BOB), &alice_fw, &["batch"], "");
    let (_, message) = answer.unwrap_err();
    assert!(message.contains("permission denied") && message.contains("belongs to principal \"alice\""), "{message}");
    // Bob tears it down through the UI: 403 with the rule.
    let (status, body) = http(&s.addr, "POST", &format!("/ui/frameworks/{alice_fw}/teardown"), Some(BOB));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("teardown-framework"), "{body}");
    assert_eq!(books(&s.state()), before, "alice's framework is untouched");

    // Bob does not even see it; alice and the operator do.
    let seen_by = |token| s.state_as(token).unwrap()["frameworks"].as_array().unwrap().iter().any(|f| f["id"] == alice_fw.as_str());
    assert!(!seen_by(BOB));
    assert!(seen_by(ALICE));
    assert!(seen_by(OPS));

    // The operator may tear it down (the ACL is not a blanket refusal).
    let (status, body) = http(&s.addr, "POST", &format!("/ui/frameworks/{alice_fw}/teardown"), Some(OPS));
    assert!(status == 303 || status == 302 || status == 200, "{status}: {body}");
    s.wait_for(|st| st["frameworks"].as_array().is_some_and(|f| f.iter().all(|f| f["id"] != alice_fw.as_str())));
}

#[test]
fn operator_calls_need_their_acl() {
    let s = secured();
    let before = books(&s.state());
    let agent = s.state()["agents"][0]["id"].as_str().unwrap().to_owned();
    let mut alice = s.operator(Some(ALICE));
    let denied = |r: Result<(), tonic::Status>, what: &str, key: &str| {
        let err = r.err().unwrap_or_else(|| panic!("{what} by alice was allowed"));
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{what}: {}", err.message());
        assert!(err.message().contains(key), "{what}: {}", err.message());
    };
    denied(s.rt.block_on(alice.drain_agent(v1::DrainAgentRequest { agent_id: agent.clone(), ..Default::default() })).map(|_| ()), "drain", "broker.acl.drain-agent");
    denied(
        s.rt.block_on(alice.update_weights(v1::UpdateWeightsRequest { weights: vec![v1::RoleWeight { role: "analytics".into(), weight: 5.0 }] }))
            .map(|_| ()),
        "update weights",
        "broker.acl.update-weight",
    );
    let reserve = v1::Operation {
        id: "r".into(),
        role: "analytics".into(),
        kind: Some(v1::operation::Kind::Reserve(v1::operation::Reserve {
            reservation_id: "r1".into(),
            resources: weir_proto::convert::resources_to_proto(&weir_model::ResourceSet::parse("cpus:1").unwrap()),
            ..Default::default()
        })),
    };
    denied(
        s.rt.block_on(alice.apply_operations(v1::ApplyOperationsRequest { agent_id: agent.clone(), operations: vec![reserve.clone()] }))
            .map(|_| ()),
        "reserve",
        "broker.acl.reserve",
    );
    assert_eq!(books(&s.state()), before, "refused operator calls changed nothing");

    // The operator may; the reservation records its principal.
    let mut ops = s.operator(Some(OPS));
    let answer = s.rt.block_on(ops.apply_operations(v1::ApplyOperationsRequest { agent_id: agent, operations: vec![reserve] })).unwrap().into_inner();
    assert_eq!(answer.statuses[0].state, v1::OperationState::OperationFinished as i32, "{answer:?}");
    let state = s.wait_for(|st| st["agents"][0]["reservations"].as_array().is_some_and(|r| !r.is_empty()));
    assert_eq!(state["agents"][0]["reservations"][0]["principal"], "ops", "{:#}", state["agents"][0]);
}

/// Roles and the cluster's metrics name no framework: `view-role` and
/// `get-endpoint` decide who sees them.
#[test]
fn roles_and_metrics_need_their_acl() {
    let s = secured();
    let mut ops = s.operator(Some(OPS));
    let weights = ["analytics", "batch"].map(|role| v1::RoleWeight { role: role.into(), weight: 2.0 }).to_vec();
    s.rt.block_on(ops.update_weights(v1::UpdateWeightsRequest { weights })).expect("the operator sets weights");
    let roles_in = |state: &Value| -> Vec<String> {
        let mut roles: Vec<String> = state["roles"].as_array().unwrap().iter().map(|r| r["role"].as_str().unwrap().to_owned()).collect();
        roles.sort();
        roles
    };
    let both = s.wait_for(|st| roles_in(st).len() >= 2);
    assert!(roles_in(&both).contains(&"analytics".to_owned()) && roles_in(&both).contains(&"batch".to_owned()), "{:#}", both["roles"]);
    // In /state, GetWeights and GetRolePolicies each sees their own.
    for (token, role) in [(ALICE, "analytics"), (BOB, "batch")] {
        assert_eq!(roles_in(&s.state_as(token).unwrap()), vec![role.to_owned()]);
        let mut op = s.operator(Some(token));
        let weights = s.rt.block_on(op.get_weights(v1::GetWeightsRequest {})).unwrap().into_inner().weights;
        assert_eq!(weights.iter().map(|w| w.role.as_str()).collect::<Vec<_>>(), vec![role]);
        let policies = s.rt.block_on(op.get_role_policies(v1::GetRolePoliciesRequest {})).unwrap().into_inner().roles;
        assert!(policies.iter().all(|p| p.role == role), "{token}: {policies:?}");
        let state = s.rt.block_on(op.get_state(v1::GetStateRequest {})).unwrap().into_inner();
        let doc: Value = serde_json::from_str(&state.state_json).unwrap();
        assert_eq!(roles_in(&doc), vec![role.to_owned()]);
    }
    let mut op = s.operator(Some(OPS));
    let weights = s.rt.block_on(op.get_weights(v1::GetWeightsRequest {})).unwrap().into_inner().weights;
    assert!(weights.len() >= 2, "{weights:?}");
    // /metrics: the operator only.
    let (status, body) = http(&s.addr, "GET", "/metrics", Some(ALICE));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("get-endpoint") && body.contains("/metrics"), "{body}");
    let (status, body) = http(&s.addr, "GET", "/metrics", Some(OPS));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("# TYPE"), "{body}");
}

#[test]
fn a_revoked_token_stops_working_after_the_file_is_reread() {
    let s = secured();
    assert!(s.state_as(BOB).is_ok(), "bob's token works at first");
    // Remove bob's line (an editor writes a new file; keep it private).
    write_private(&s.tokens, &format!("alice {ALICE}\nops {OPS}\n"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.state_as(BOB).is_ok() {
        assert!(Instant::now() < deadline, "bob's token still works 20 s after it was removed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.state_as(BOB).unwrap_err(), 401);
    let (answer, _) = s.subscribe(Some(BOB), "", &["batch"], "");
    assert_eq!(answer.unwrap_err().0, tonic::Code::Unauthenticated);
    // The others' tokens still work.
    assert!(s.state_as(ALICE).is_ok() && s.state_as(OPS).is_ok());
}

#[test]
fn a_token_past_its_expiry_is_refused_as_expired() {
    let s = secured();
    // bob's line gets an expiry a few seconds from now (Unix seconds).
    let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 4;
    write_private(&s.tokens, &format!("alice {ALICE}\nbob {BOB} {soon}\nops {OPS}\n"));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Re-read: it works until the expiry, then is refused.
    let mut worked = false;
    loop {
        match s.state_as(BOB) {
            Ok(_) => worked = true,
            Err(status) => {
                assert_eq!(status, 401);
                if worked {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "bob's token never worked and then expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = http(&s.addr, "GET", "/state", Some(BOB));
    assert!(status == 401 && body.contains("expired"), "{status} {body}");
    let (answer, _) = s.subscribe(Some(BOB), "", &["batch"], "");
    let refusal = answer.unwrap_err();
    assert!(refusal.0 == tonic::Code::Unauthenticated && refusal.1.contains("expired"), "{refusal:?}");
    assert!(s.state_as(ALICE).is_ok());
}

#[test]
fn the_cli_sends_its_token_and_secrets_stay_out_of_state_and_tasks() {
    let s = secured();
    let token_file = s.dir.path().join("alice.token");
    write_private(&token_file, ALICE);
    // `weir status` without a token is refused with a clear message.
    let out = Command::new(support::WEIR).args(["status", "--broker", &s.addr]).env_remove("WEIR_TOKEN").env_remove("WEIR_TOKEN_FILE").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401") && stderr.contains("--token-file"), "{stderr}");
    // With it, it runs a task as alice; the task's environment holds no
    // secret (not the agent's own WEIR_TOKEN either).
    let out = Command::new(support::WEIR)
        .args(["--token-file", token_file.to_str().unwrap(), "run", "--broker", &s.addr, "--role", "analytics", "--cpus", "0.1", "--mem", "32", "--", "env"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "weir run: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("PATH="), "the task printed its environment: {stdout}");
    no_secret_in(&stdout, "the task's environment");
    let (_, state) = http(&s.addr, "GET", "/state", Some(OPS));
    no_secret_in(&state, "/state");
    // A token file others may read is refused before anything is sent.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(support::WEIR).args(["--token-file", token_file.to_str().unwrap(), "status", "--broker", &s.addr]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn an_agents_sandboxes_need_a_token_and_the_view_acl() {
    let s = secured();
    let token_file = s.dir.path().join("alice.token");
    write_private(&token_file, ALICE);
    // `weir run` as alice reads the task's output from the agent with
    // alice's token (the agent asks for one).
    let out = Command::new(support::WEIR)
        .args(["--token-file", token_file.to_str().unwrap(), "run", "--broker", &s.addr, "--role", "analytics", "--cpus", "0.1", "--mem", "32", "--", "echo", "alices-private-output"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("alices-private-output"), "weir run: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let state = s.wait_for(|st| st["completed_tasks"].as_array().is_some_and(|t| !t.is_empty()));
    let task = &state["completed_tasks"][0];
    let (framework, task_id) = (task["framework_id"].as_str().unwrap().to_owned(), task["id"].as_str().unwrap().to_owned());
    let agent = state["agents"][0]["http_address"].as_str().unwrap().to_owned();
    let before = books(&s.state());
    let read = format!("/files/read?framework_id={framework}&task_id={task_id}&file=stdout");
    let browse = format!("/files/browse?framework_id={framework}&task_id={task_id}");

    // No token, a wrong one: 401 saying why, for every path but /health.
    for path in [read.as_str(), browse.as_str(), "/state"] {
        let (status, body) = http(&agent, "GET", path, None);
        assert_eq!(status, 401, "GET {path} without a token: {body}");
        assert!(body.contains("this agent requires a token") && !body.contains("alices-private"), "{body}");
        let (status, body) = http(&agent, "GET", path, Some("not-a-real-token-000000"));
        assert_eq!(status, 401, "GET {path} with a wrong token: {body}");
        assert!(body.contains("not valid"), "{body}");
    }
    assert_eq!(http(&agent, "GET", "/health", None).0, 200);
    // Bob reads alice's sandbox straight from the agent: 403 naming the rule.
    for path in [read.as_str(), browse.as_str()] {
        let (status, body) = http(&agent, "GET", path, Some(BOB));
        assert_eq!(status, 403, "bob GET {path}: {body}");
        assert!(body.contains("principal \"bob\" may not view-framework \"alice\"") && body.contains("agent.acl.view-framework"), "{body}");
        assert!(!body.contains("alices-private-output"), "{body}");
    }
    // Nor does he see her task in the agent's /state; alice and ops do.
    let agent_tasks = |token| {
        let (status, body) = http(&agent, "GET", "/state", Some(token));
        assert_eq!(status, 200, "{body}");
        let body = if body.trim_start().starts_with('{') { body } else { support::dechunk(&body) };
        let doc: Value = serde_json::from_str(&body).unwrap();
        doc["tasks"].as_array().unwrap().iter().filter(|t| t["task_id"] == task_id.as_str()).cloned().collect::<Vec<_>>()
    };
    assert!(agent_tasks(BOB).is_empty());
    assert_eq!(agent_tasks(ALICE)[0]["principal"], "alice");
    assert_eq!(agent_tasks(OPS).len(), 1);
    // Alice and ops read it.
    for token in [ALICE, OPS] {
        let (status, body) = http(&agent, "GET", &read, Some(token));
        assert!(status == 200 && body.contains("alices-private-output"), "{status}: {body}");
    }
    // The broker's UI reads the sandbox with its user's own credentials.
    let (status, body) = http(&s.addr, "GET", &format!("/ui/tasks/{framework}/{task_id}/raw?path=stdout"), Some(ALICE));
    assert!(status == 200 && body.contains("alices-private-output"), "UI as alice: {status}: {body}");
    let (status, body) = http(&s.addr, "GET", &format!("/ui/tasks/{framework}/{task_id}/raw?path=stdout"), Some(BOB));
    assert!(status != 200 && !body.contains("alices-private-output"), "UI as bob: {status}: {body}");
    assert_eq!(books(&s.state()), before, "refused reads changed nothing");
}

#[test]
fn a_token_file_others_may_read_stops_the_broker_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice {ALICE}\n")).unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o640)).unwrap();
    let define = format!("broker.auth.tokens.file={}", tokens.display());
    let work = dir.path().join("broker");
    let out = Command::new(support::WEIR)
        .args(["broker", "--listen", "127.0.0.1:0", "--work-dir", work.to_str().unwrap(), "-D", &define])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mode 0640") && stderr.contains("chmod 600"), "{stderr}");
    no_secret_in(&stderr, "the start-up error");
}

#[test]
fn a_broker_without_authentication_says_so_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("broker");
    let mut child = Command::new(support::WEIR)
        .args(["broker", "--listen", "127.0.0.1:0", "--work-dir", work.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("AUTHENTICATION IS OFF") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the broker warns that authentication is off");
    assert!(line.contains("WARN"), "{line}");
}

/// `weir standalone --secure` in `dir`: the process, the broker's
/// address, the agent's, the CA and admin token files it made, and the
/// YARN shim's REST address.
fn secure_standalone(dir: &Path) -> (support::Proc, String, String, PathBuf, PathBuf, String) {
    let rest = format!("127.0.0.1:{}", support::free_port());
    let web = format!("yarn-shim.webapp.address={rest}");
    let args = [
        "standalone",
        "--secure",
        "--work-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--resources",
        SPEC,
        "-D",
        "agent.listen=127.0.0.1:0",
        "-D",
        &web,
    ];
    let (proc, line) = support::spawn_weir("secure", &args, "weir standalone: broker");
    assert!(line.contains("over TLS, tokens required"), "{line}");
    let addr = support::addr_in(&line);
    let agent = line.split_whitespace().filter(|w| w.starts_with("127.0.0.1:")).nth(1).expect("the agent's address").trim_end_matches(',').to_owned();
    (proc, addr, agent, dir.join("secure/ca.pem"), dir.join("secure/admin.token"), rest)
}

#[test]
fn standalone_secure_serves_tls_with_tokens_and_plain_text_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr, agent, ca, admin, rest) = secure_standalone(dir.path());
    let key_mode = std::fs::metadata(dir.path().join("secure/broker-key.pem")).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600, "the private key is the owner's only");
    let weir = |args: &[&str], with_ca: bool, with_token: bool| {
        let mut cmd = Command::new(support::WEIR);
        cmd.args(args).env_remove("WEIR_TOKEN").env_remove("WEIR_TOKEN_FILE").env_remove("WEIR_CA_FILE").stdin(Stdio::null());
        if with_ca {
            cmd.env("WEIR_CA_FILE", &ca);
        }
        if with_token {
            cmd.env("WEIR_TOKEN_FILE", &admin);
        }
        cmd.output().unwrap()
    };
    // The documented way in: CA and token. The agent attached over TLS
    // with the registration secret.
    let out = weir(&["status", "--json", "--broker", &addr], true, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(before["agents"].as_array().unwrap().len(), 1, "the agent registered over TLS");

    // Plain HTTP to the TLS port: told so, in plain HTTP.
    let (status, body) = http(&addr, "GET", "/state", Some("whatever-token-00000000"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("this port speaks TLS"), "{body}");
    // The agent's port too (sandbox files).
    let (status, body) = http(&agent, "GET", "/state", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("this port speaks TLS"), "{body}");
    // The CLI over plain text: a clear error naming the fix.
    let out = weir(&["status", "--broker", &addr], false, true);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("speaks TLS") && stderr.contains("--ca-file"), "{stderr}");
    // A plain gRPC framework: no stream, nothing registered.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plain = rt.block_on(async {
        let mut client = SchedulerClient::connect(format!("http://{addr}")).await.map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(1);
        tx.send(v1::Call::default()).await.unwrap();
        client.subscribe(ReceiverStream::new(rx)).await.map(|_| ()).map_err(|s| s.to_string())
    });
    assert!(plain.is_err(), "a plain-text gRPC client got a stream from a TLS port");
    // TLS without a token: 401 / UNAUTHENTICATED.
    let out = weir(&["status", "--broker", &addr], true, false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    // A client that does not trust this CA refuses the broker.
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, std::fs::read_to_string(dir.path().join("secure/broker.pem")).unwrap()).unwrap();
    let out = Command::new(support::WEIR)
        .args(["status", "--broker", &addr])
        .env("WEIR_CA_FILE", &other_ca)
        .env("WEIR_TOKEN_FILE", &admin)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a certificate that is not the CA must not be trusted as one");

    let out = weir(&["status", "--json", "--broker", &addr], true, true);
    let after: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(books(&after), books(&before), "the refused calls changed nothing");
    // The YARN shim came up too: subscribed over TLS with the admin token
    // (yarn-shim.broker.token.file, .tls.ca.file), and its node list read
    // from the broker's operator API, so YARN clients see the agent.
    let frameworks = after["frameworks"].as_array().unwrap();
    let shim = frameworks.iter().find(|f| f["name"] == "yarn-shim").unwrap_or_else(|| panic!("no yarn-shim among {frameworks:?}"));
    assert_eq!(shim["principal"], "admin", "{shim}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = support::http_get(&format!("http://{rest}/ws/v1/cluster/nodes")).unwrap_or_default();
        if nodes.contains("RUNNING") {
            break;
        }
        assert!(Instant::now() < deadline, "the shim never listed the agent as a node: {nodes}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // And a task runs end to end over TLS with the token (its output
    // read from the agent's TLS port).
    let out = weir(&["run", "--broker", &addr, "--cpus", "0.1", "--mem", "32", "--", "echo", "over-tls"], true, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("over-tls"));
    proc.terminate();
}

/// A certificate signed by a CA of our own (not the cluster's): PEM
/// certificate and private key files in `dir` (the key 0600).
fn foreign_certificate(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "an intruder's CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file) = (dir.join("foreign.pem"), dir.join("foreign-key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    write_private(&key_file, &key.serialize_pem());
    (cert_file, key_file)
}

#[test]
fn standalone_secure_takes_client_certificates_of_its_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr, _agent, ca, admin_token, _) = secure_standalone(dir.path());
    let secure = dir.path().join("secure");
    let (admin_cert, admin_key) = (secure.join("admin.pem"), secure.join("admin-key.pem"));
    let weir = |args: &[&str], cert: Option<(&Path, &Path)>, token: bool| {
        let mut cmd = Command::new(support::WEIR);
        cmd.args(args).env_remove("WEIR_TOKEN").env_remove("WEIR_TOKEN_FILE").env_remove("WEIR_CERT_FILE").env_remove("WEIR_KEY_FILE").env("WEIR_CA_FILE", &ca).stdin(Stdio::null());
        if let Some((c, k)) = cert {
            cmd.env("WEIR_CERT_FILE", c).env("WEIR_KEY_FILE", k);
        }
        if token {
            cmd.env("WEIR_TOKEN_FILE", &admin_token);
        }
        cmd.output().unwrap()
    };
    // admin's certificate stands for the token: status, and a task whose
    // framework is recorded as admin's, its output read from the agent
    // (mutual TLS there too).
    let out = weir(&["status", "--json", "--broker", &addr], Some((&admin_cert, &admin_key)), false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = weir(&["run", "--broker", &addr, "--cpus", "0.1", "--mem", "32", "--", "echo", "by-certificate"], Some((&admin_cert, &admin_key)), false);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("by-certificate"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = weir(&["status", "--json", "--broker", &addr], None, true);
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    let done = state["completed_tasks"].as_array().unwrap();
    assert!(done.iter().any(|t| t["principal"] == "admin"), "the task's framework is admin's: {done:?}");

    // A certificate of another CA, even naming admin: the handshake fails,
    // with or without a token; nothing changes.
    let (foreign_cert, foreign_key) = foreign_certificate(dir.path(), "admin");
    for token in [false, true] {
        let out = weir(&["status", "--broker", &addr], Some((&foreign_cert, &foreign_key)), token);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a foreign certificate was accepted (token: {token})");
        assert!(!stderr.contains("401"), "refused at the handshake, not by authentication: {stderr}");
    }
    // Without a certificate the token still works (mutual TLS is optional).
    let out = weir(&["status", "--json", "--broker", &addr], None, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(books(&after)["agents"], books(&before)["agents"], "the refused calls changed nothing");

    // An agent with a certificate of the CA attaches without the secret.
    let work = dir.path().join("agent2");
    let (cert, key, ca_define) = (
        format!("agent.tls.cert.file={}", secure.join("broker.pem").display()),
        format!("agent.tls.key.file={}", secure.join("broker-key.pem").display()),
        format!("agent.tls.ca.file={}", ca.display()),
    );
    let args = ["agent", "--broker", &addr, "--listen", "127.0.0.1:0", "--resources", SPEC, "--work-dir", work.to_str().unwrap(), "--hostname", "agent2.test", "-D", &cert, "-D", &key, "-D", &ca_define];
    let (mut agent2, _) = support::spawn_weir("agent2", &args, "agent");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = weir(&["status", "--json", "--broker", &addr], None, true);
        let state: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if state["agents"].as_array().is_some_and(|a| a.iter().any(|a| a["hostname"] == "agent2.test")) {
            break;
        }
        assert!(Instant::now() < deadline, "the agent with a certificate never registered");
        std::thread::sleep(Duration::from_millis(200));
    }
    agent2.terminate();
    proc.terminate();
}
