//! Container logs over HTTP as YARN's NodeManager serves them: a listing
//! and each file with `?start=`; nothing outside the container's log dir
//! can be named, whether by `..`, an encoded slash, or a symlink the
//! container left there.

use std::io::{Read, Write};
use std::net::SocketAddr;

use weir_yarn_api::ids::{ApplicationId, AttemptId, ContainerId};
use weir_yarn_nm::layout::Layout;
use weir_yarn_nm::web::WebServer;

fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_listed_and_served_and_nothing_else_is() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path().join("nm"));
    let id = ContainerId { attempt: AttemptId { app: ApplicationId { cluster_timestamp: 1700, id: 1 }, attempt: 1 }, id: 2 };
    let (_, _, dir) = layout.prepare_container("alice", id).unwrap();
    let stdout: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    std::fs::write(dir.join("stdout"), &stdout).unwrap();
    std::fs::write(dir.join("stderr"), "oops\n").unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "do not serve").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("link")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();

    let web = WebServer::start("127.0.0.1:0".parse().unwrap(), layout, "node1:4545".into(), std::sync::Arc::new(Vec::new)).await.unwrap();
    let addr = web.address();
    let fetch = move |t: String| tokio::task::spawn_blocking(move || get(addr, &t));
    let base = format!("/node/containerlogs/{id}/alice");

    let (status, page) = fetch(base.clone()).await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains(&format!("href=\"{base}/stdout/?start=-4096\"")), "{page}");
    assert!(page.contains("stderr") && page.contains("Total file length is 5000 bytes"), "{page}");
    assert!(!page.contains("link") && !page.contains("sub"), "{page}");

    assert_eq!(fetch(format!("{base}/stdout")).await.unwrap(), (200, stdout[5000 - 4096..].to_owned()));
    assert_eq!(fetch(format!("{base}/stdout/?start=0")).await.unwrap(), (200, stdout.clone()));
    assert_eq!(fetch(format!("{base}/stdout?start=-10")).await.unwrap(), (200, stdout[4990..].to_owned()));
    assert_eq!(fetch(format!("{base}/stdout?start=3&end=7")).await.unwrap(), (200, stdout[3..7].to_owned()));
    assert_eq!(fetch(format!("{base}/stderr")).await.unwrap(), (200, "oops\n".to_owned()));
    assert_eq!(fetch(format!("{base}/stdout?start=9&end=2")).await.unwrap().0, 400);

    // Nothing outside the log dir.
    for target in [
        format!("{base}/link"),
        format!("{base}/sub"),
        format!("{base}/nothing"),
        format!("/node/containerlogs/{id}/alice/%2e%2e"),
        format!("/node/containerlogs/{id}/alice/%2E%2E%2F%2E%2E%2Fsecret"),
        format!("/node/containerlogs/{id}/..%2F..%2F..%2Fx/stdout"),
        format!("/node/containerlogs/..%2F{id}/alice/stdout"),
        "/node/containerlogs/container_1700_0001_01_000003/alice/stdout".to_owned(),
        "/node/containerlogs/container_x/alice".to_owned(),
    ] {
        let (status, body) = fetch(target.clone()).await.unwrap();
        assert!([400, 404].contains(&status), "{target}: {status}");
        assert!(!body.contains("do not serve"), "{target}");
    }
}

/// What `yarn logs -applicationId` asks a node manager for while the
/// application runs: the web service's list of log files, then each file
/// with `size`; nothing outside the container's log dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_web_service_lists_and_serves_what_yarn_logs_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path().join("nm"));
    let id = ContainerId { attempt: AttemptId { app: ApplicationId { cluster_timestamp: 1700, id: 1 }, attempt: 1 }, id: 2 };
    let (_, _, dir) = layout.prepare_container("alice", id).unwrap();
    std::fs::write(dir.join("stdout"), "0123456789").unwrap();
    std::fs::write(dir.join("stderr"), "").unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "do not serve").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("link")).unwrap();

    let web = WebServer::start("127.0.0.1:0".parse().unwrap(), layout, "node1:4545".into(), std::sync::Arc::new(Vec::new)).await.unwrap();
    let addr = web.address();
    let fetch = move |t: String| tokio::task::spawn_blocking(move || get(addr, &t));

    // Hadoop's AuthenticatedURL asks with OPTIONS first.
    let options = move |t: String| {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(format!("OPTIONS {t} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            raw
        })
    };
    let reply = options(format!("/ws/v1/node/containers/{id}/logs?user.name=alice")).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200") && !reply.to_ascii_lowercase().contains("www-authenticate"), "{reply}");

    let (status, body) = fetch(format!("/ws/v1/node/containers/{id}/logs")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let info = &json["containerLogsInfo"];
    assert_eq!(info["logAggregationType"], "LOCAL");
    assert_eq!(info["containerId"], id.to_string());
    assert_eq!(info["nodeId"], "node1:4545");
    let files: Vec<(&str, &str)> =
        info["containerLogInfo"].as_array().unwrap().iter().map(|f| (f["fileName"].as_str().unwrap(), f["fileSize"].as_str().unwrap())).collect();
    assert_eq!(files, [("stderr", "0"), ("stdout", "10")]);

    let (status, body) = fetch(format!("/ws/v1/node/containers/{id}/logs/stdout")).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("LogAggregationType: LOCAL\n"), "{body}");
    assert!(body.contains("LogType:stdout\n") && body.contains("LogLength:10\n"), "{body}");
    assert!(body.contains("LogContents:\n0123456789\nEnd of LogType:stdout\n"), "{body}");
    let (_, body) = fetch(format!("/ws/v1/node/containers/{id}/logs/stdout?size=-3")).await.unwrap();
    assert!(body.contains("LogContents:\n789\nEnd"), "{body}");
    let (_, body) = fetch(format!("/ws/v1/node/containerlogs/{id}/stdout?size=4")).await.unwrap();
    assert!(body.contains("LogContents:\n0123\nEnd"), "{body}");
    assert_eq!(fetch(format!("/ws/v1/node/containers/{id}/logs/stdout?size=x")).await.unwrap().0, 400);

    for target in [
        format!("/ws/v1/node/containers/{id}/logs/link"),
        format!("/ws/v1/node/containers/{id}/logs/nothing"),
        format!("/ws/v1/node/containers/{id}/logs/%2E%2E%2F%2E%2E%2Fsecret"),
        "/ws/v1/node/containers/container_1700_0001_01_000009/logs".to_owned(),
        "/ws/v1/node/containers/container_x/logs".to_owned(),
        "/ws/v1/node/nothing".to_owned(),
    ] {
        let (status, body) = fetch(target.clone()).await.unwrap();
        assert!([400, 404].contains(&status), "{target}: {status}");
        assert!(!body.contains("do not serve"), "{target}");
    }
}

/// The NodeManager REST API: node info, applications and containers as
/// YARN's NM lists them; unknown and malformed ids are YARN's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_rest_api_lists_the_node_its_applications_and_containers() {
    use weir_yarn_nm::web::ContainerView;
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path().join("nm"));
    let app = ApplicationId { cluster_timestamp: 1700, id: 1 };
    let id = |n| ContainerId { attempt: AttemptId { app, attempt: 1 }, id: n };
    let views = vec![
        ContainerView { id: id(1), state: "RUNNING", exit_code: None, diagnostics: String::new(), memory_mb: 1024, vcores: 1 },
        ContainerView { id: id(2), state: "DONE", exit_code: Some(3), diagnostics: "exited 3".into(), memory_mb: 512, vcores: 1 },
    ];
    let web = WebServer::start("127.0.0.1:0".parse().unwrap(), layout, "node1:4545".into(), std::sync::Arc::new(move || views.clone())).await.unwrap();
    let addr = web.address();
    let fetch = move |t: String| tokio::task::spawn_blocking(move || get(addr, &t));
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();

    let (status, body) = fetch("/ws/v1/node/info".into()).await.unwrap();
    assert_eq!(status, 200);
    let info = &json(&body)["nodeInfo"];
    assert_eq!((info["id"].as_str(), info["nodeHostName"].as_str()), (Some("node1:4545"), Some("node1")));
    assert_eq!(info["totalPmemAllocatedContainersMB"], 1024, "only live containers count");
    let (_, body) = fetch("/ws/v1/node/apps".into()).await.unwrap();
    let apps = &json(&body)["apps"]["app"];
    assert_eq!(apps[0]["id"], app.to_string());
    assert_eq!(apps[0]["containerids"].as_array().unwrap().len(), 2);
    let (_, body) = fetch("/ws/v1/node/containers".into()).await.unwrap();
    let list = json(&body)["containers"]["container"].as_array().unwrap().clone();
    assert_eq!((list[0]["state"].as_str(), list[1]["state"].as_str(), list[1]["exitCode"].as_i64()), (Some("RUNNING"), Some("DONE"), Some(3)));
    let (status, body) = fetch(format!("/ws/v1/node/containers/{}", id(2))).await.unwrap();
    assert_eq!((status, json(&body)["container"]["diagnostics"].as_str()), (200, Some("exited 3")));
    let (status, body) = fetch(format!("/ws/v1/node/containers/{}", id(9))).await.unwrap();
    assert_eq!((status, json(&body)["RemoteException"]["exception"].as_str()), (404, Some("NotFoundException")));
    assert_eq!(fetch("/ws/v1/node/containers/container_x".into()).await.unwrap().0, 400);
    assert_eq!(fetch("/ws/v1/node/apps/application_1700_0002".into()).await.unwrap().0, 404);
    assert_eq!(fetch("/ws/v1/node/apps/nope".into()).await.unwrap().0, 400);
}
