//! The node manager over real Hadoop IPC: callers without an NM token are
//! turned away; forged, foreign and misdirected container tokens fail per
//! container with the reason while the node manager keeps serving; a good
//! start reaches the waiting container task as a launch script.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

use prost::Message;
use weir_yarn_ipc::client::{Client, ClientConfig};
use weir_yarn_nm::handoff::{self, ToContainer, ToNm};
use weir_yarn_nm::service::{NmSettings, NodeManager};
use weir_yarn_api::ids::{ApplicationId, AttemptId, ContainerId, NodeId};
use weir_yarn_api::records as r;
use weir_yarn_api::resource::Capacity;
use weir_yarn_api::tokens::{ContainerSpec, Issuer, NmKey};
use weir_yarn_api::CONTAINER_MANAGEMENT_PROTOCOL;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn allocated(app: i32, id: i64, node: &NodeId) -> ContainerSpec {
    ContainerSpec {
        id: ContainerId { attempt: AttemptId { app: ApplicationId { cluster_timestamp: 7, id: app }, attempt: 1 }, id },
        node: node.clone(),
        capacity: Capacity { memory_mb: 256, vcores: 1 },
        priority: 1,
        allocation_request_id: 0,
        user: "alice".into(),
    }
}

fn start(token: weir_yarn_ipc::proto::TokenProto) -> r::StartContainersRequestProto {
    r::StartContainersRequestProto {
        start_container_request: vec![r::StartContainerRequestProto {
            container_launch_context: Some(r::ContainerLaunchContextProto { command: vec!["echo".into(), "hi".into()], ..Default::default() }),
            container_token: Some(token),
        }],
    }
}

#[tokio::test]
async fn the_node_manager_checks_tokens_and_hands_good_starts_to_the_waiting_task() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let issuer = Arc::new(Issuer::new("127.0.0.1:1".into(), 7, now_ms() as u64));
    let key = NmKey::parse(&issuer.nm_key_text()).unwrap();
    let settings =
        NmSettings::new("127.0.0.1".into(), port, dir.path().to_path_buf());
    let nm = NodeManager::start(key, settings).await.unwrap();
    let node = NodeId { host: "127.0.0.1".into(), port: port as i32 };

    // No token: the port requires one.
    let simple = Client::connect(nm.address(), ClientConfig::simple("alice", CONTAINER_MANAGEMENT_PROTOCOL)).await;
    let refused = match simple {
        Err(e) => e.to_string(),
        Ok(c) => c.call(CONTAINER_MANAGEMENT_PROTOCOL, "getContainerStatuses", &[]).await.unwrap_err().to_string(),
    };
    assert!(!refused.is_empty());

    // The container's task reports in and waits.
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    let good = allocated(1, 2, &node);
    let mut task = std::os::unix::net::UnixStream::connect_addr(&handoff::address(&handoff::socket_name(port)).unwrap()).unwrap();
    let hello = ToNm::Hello { container: good.id.to_string(), sandbox: sandbox.display().to_string(), pid: 1 };
    task.write_all(&handoff::encode(&hello)).unwrap();

    let attempt = good.id.attempt;
    let config = ClientConfig {
        user: attempt.to_string(),
        protocol: CONTAINER_MANAGEMENT_PROTOCOL.into(),
        token: Some(issuer.nm_token(attempt, &node, "alice")),
        max_frame_len: 1 << 20,
    };
    let client = Client::connect(nm.address(), config).await.unwrap();
    let call = |req: r::StartContainersRequestProto| {
        let client = &client;
        async move {
            let bytes = client.call(CONTAINER_MANAGEMENT_PROTOCOL, "startContainers", &req.encode_to_vec()).await.unwrap();
            r::StartContainersResponseProto::decode(&bytes[..]).unwrap()
        }
    };
    let failure = |resp: &r::StartContainersResponseProto| {
        assert!(resp.succeeded_requests.is_empty());
        resp.failed_requests[0].exception.as_ref().unwrap().message().to_owned()
    };

    let mut forged = issuer.container_token(&good, false, now_ms());
    forged.password[0] ^= 1;
    assert!(failure(&call(start(forged)).await).contains("password is wrong"));
    let foreign = allocated(2, 2, &node);
    let msg = failure(&call(start(issuer.container_token(&foreign, false, now_ms()))).await);
    assert!(msg.contains("NMToken for application attempt"), "{msg}");
    let elsewhere = NodeId { host: "127.0.0.1".into(), port: 1 };
    let mut misdirected = allocated(1, 3, &elsewhere);
    misdirected.node = elsewhere;
    let msg = failure(&call(start(issuer.container_token(&misdirected, false, now_ms()))).await);
    assert!(msg.contains("is for node"), "{msg}");
    let expired = failure(&call(start(issuer.container_token(&good, false, now_ms() - 700_000))).await);
    assert!(expired.contains("expired"), "{expired}");

    // Still serving: the good start reaches the waiting task.
    // Service data for an auxiliary service not running here fails the start.
    let mut unknown = start(issuer.container_token(&good, false, now_ms()));
    unknown.start_container_request[0].container_launch_context.as_mut().unwrap().service_data =
        vec![r::StringBytesMapProto { key: Some("spark_shuffle".into()), value: Some(vec![1]) }];
    let msg = failure(&call(unknown).await);
    assert_eq!(msg, "The auxService:spark_shuffle does not exist");

    let ok = call(start(issuer.container_token(&good, false, now_ms()))).await;
    assert_eq!(ok.succeeded_requests.len(), 1, "{:?}", ok.failed_requests);
    // The shuffle's port, as ShuffleHandler.serializeMetaData writes it.
    let shuffle_port = nm.shuffle_address().unwrap().port();
    assert_eq!(ok.services_meta_data.len(), 1);
    assert_eq!(ok.services_meta_data[0].key(), "mapreduce_shuffle");
    assert_eq!(ok.services_meta_data[0].value(), (shuffle_port as i32).to_be_bytes());
    let mut line = String::new();
    BufReader::new(task.try_clone().unwrap()).read_line(&mut line).unwrap();
    match handoff::decode::<ToContainer>(line.trim_end().as_bytes()).unwrap() {
        ToContainer::Launch { script, work_dir } => {
            assert_eq!(work_dir, sandbox.display().to_string());
            let text = std::fs::read_to_string(&script).unwrap();
            assert!(text.contains("exec /bin/bash -c \"echo hi\""), "{text}");
            assert!(text.contains(&format!("export CONTAINER_ID=\"{}\"", good.id)), "{text}");
            // YARN's layout: the application's dir under usercache, logs
            // per container, and tmp/ in the working directory.
            let app_dir = dir.path().join("usercache/alice/appcache").join(good.id.attempt.app.to_string());
            let log_dir = dir.path().join("logs").join(good.id.attempt.app.to_string()).join(good.id.to_string());
            assert!(text.contains(&format!("export LOCAL_DIRS=\"{}\"", app_dir.display())), "{text}");
            assert!(text.contains(&format!("export LOG_DIRS=\"{}\"", log_dir.display())), "{text}");
            assert!(text.contains(&format!("export LOCAL_USER_DIRS=\"{}\"", dir.path().join("usercache/alice").display())), "{text}");
            assert!(text.contains("export HOME=\"/home/\""), "{text}");
            assert!(text.contains("export USER=\"alice\""), "{text}");
            // The container's tokens are its user's alone.
            let tokens = std::fs::metadata(sandbox.join("container_tokens")).unwrap();
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&tokens.permissions()) & 0o777, 0o600);
            // The web port serves this container's logs; the shuffle's port
            // is there as Hadoop's AuxiliaryServiceHelper puts it.
            assert!(text.contains(&format!("export NM_HTTP_PORT=\"{}\"", nm.http_address().port())), "{text}");
            let port = (nm.shuffle_address().unwrap().port() as i32).to_be_bytes();
            use base64::Engine as _;
            let meta = base64::engine::general_purpose::STANDARD.encode(port);
            assert!(text.contains(&format!("export NM_AUX_SERVICE_mapreduce_shuffle=\"{meta}\"")), "{text}");
            assert!(sandbox.join("tmp").is_dir() && app_dir.is_dir() && log_dir.is_dir());
        }
        other => panic!("expected a launch, got {other:?}"),
    }
    // A second start of the same container is refused.
    let again = failure(&call(start(issuer.container_token(&good, false, now_ms()))).await);
    assert!(again.contains("already been started"), "{again}");
    nm.stop();
}
