//! YARN clients against `weir standalone` (issue 6): the real Hadoop CLI
//! and `spark-submit` from pyspark, unchanged, through the Hadoop client
//! configuration standalone writes; and malformed IPC clients that must be
//! turned away without disturbing the others.
//!
//! Needs Java (17+) and `pip install pyspark` (scripts/test.sh installs
//! pyspark); without them the test fails and says so.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_yarn_shim::ipc::client::{Client, ClientConfig};
use weir_yarn_shim::ipc::frame::{read_frame, FrameCursor};
use weir_yarn_shim::ipc::header::{call_frame, request_header};
use weir_yarn_shim::proto::rpc_response_header_proto::RpcStatusProto;
use weir_yarn_shim::proto::RpcResponseHeaderProto;
use weir_yarn_shim::yarn::records as r;
use weir_yarn_shim::yarn::APPLICATION_CLIENT_PROTOCOL;
use weir_yarn_shim::Error;

const SPEC: &str = "cpus:2;mem:4096;disk:1000";

/// A running `weir standalone` and the Hadoop configuration it wrote.
struct Standalone {
    _proc: support::Proc,
    conf_dir: PathBuf,
    /// Where yarn-site.xml says the ResourceManager is.
    yarn_addr: String,
    agent_http: String,
    dir: tempfile::TempDir,
}

/// Starts standalone on free ports (the shim's too, via -D) and reads
/// back what a Hadoop client would: yarn-site.xml and core-site.xml.
fn standalone() -> Standalone {
    let dir = tempfile::tempdir().unwrap();
    let (proc, line) = support::spawn_weir(
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
            "yarn-shim.client.address=127.0.0.1:0",
        ],
        "weir standalone: broker",
    );
    let broker = support::addr_in(&line);
    // Written before standalone prints its endpoints.
    let conf_dir = dir.path().join("hadoop-conf");
    let yarn_site = std::fs::read_to_string(conf_dir.join("yarn-site.xml"))
        .unwrap_or_else(|e| panic!("standalone did not write {}/yarn-site.xml ({e}); is the YARN shim running?", conf_dir.display()));
    let core_site = std::fs::read_to_string(conf_dir.join("core-site.xml")).expect("core-site.xml written");
    assert!(core_site.contains("<name>fs.defaultFS</name>\n    <value>file:///</value>"), "{core_site}");
    let yarn_addr = yarn_site
        .split("<name>yarn.resourcemanager.address</name>")
        .nth(1)
        .and_then(|rest| rest.split("<value>").nth(1))
        .and_then(|v| v.split("</value>").next())
        .expect("yarn.resourcemanager.address in yarn-site.xml")
        .to_owned();
    assert_ne!(yarn_addr, "127.0.0.1:0", "yarn-site.xml must name the port the shim really bound");
    let state = support::http_get(&format!("http://{broker}/state")).expect("broker /state");
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let agent_http = state["agents"][0]["http_address"].as_str().expect("the agent registered").to_owned();
    Standalone { _proc: proc, conf_dir, yarn_addr, agent_http, dir }
}

/// Java and Spark as the user has them; a missing one fails the test.
struct Clients {
    java: PathBuf,
    spark_home: PathBuf,
}

fn clients() -> Clients {
    let java = std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|j| j.exists())
        .unwrap_or_else(|| PathBuf::from("java"));
    let ok = Command::new(&java).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "this test runs the real YARN clients and needs Java 17+ on PATH (or JAVA_HOME); none was found");
    let out = Command::new("python3")
        .args(["-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"])
        .output()
        .expect("this test needs python3 with pyspark (pip install pyspark)");
    assert!(
        out.status.success(),
        "this test needs pyspark (pip install pyspark; scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spark_home = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(spark_home.join("jars").is_dir(), "pyspark at {} has no jars/ directory", spark_home.display());
    Clients { java, spark_home }
}

impl Clients {
    /// A Hadoop CLI class, the way the `yarn` script runs it.
    fn yarn(&self, conf_dir: &Path, class: &str, args: &[&str]) -> (Output, String) {
        let cp = format!("{}:{}/jars/*", conf_dir.display(), self.spark_home.display());
        let out = Command::new(&self.java)
            .args(["-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", &cp, class])
            .args(args)
            .env("HADOOP_CONF_DIR", conf_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("[{class} {}]\n{text}", args.join(" "));
        (out, text)
    }

    fn applications(&self, conf_dir: &Path, args: &[&str]) -> (Output, String) {
        let mut all = vec!["application"];
        all.extend_from_slice(args);
        self.yarn(conf_dir, "org.apache.hadoop.yarn.client.cli.ApplicationCLI", &all)
    }
}

/// The line of a CLI listing that names `id`.
fn line_of<'a>(text: &'a str, id: &str) -> &'a str {
    text.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("{id} is not listed:\n{text}"))
}

#[test]
fn real_yarn_clients_see_nodes_submit_list_and_kill() {
    let clients = clients();
    let sa = standalone();
    let conf = sa.conf_dir.as_path();

    // yarn node -list: the agent is a RUNNING node with its capacity.
    let (out, text) = clients.yarn(conf, "org.apache.hadoop.yarn.client.cli.NodeCLI", &["-list", "-showDetails"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Total Nodes:1"), "{text}");
    let node = line_of(&text, &sa.agent_http);
    assert!(node.contains("RUNNING"), "{node}");
    assert!(text.contains("Configured Resources : <memory:4096, vCores:2>"), "{text}");

    // spark-submit --master yarn gets an id; the application waits ACCEPTED.
    let app_py = sa.dir.path().join("app.py");
    std::fs::write(&app_py, "print('never runs yet')\n").unwrap();
    let staging = sa.dir.path().join("staging");
    let out = Command::new(clients.spark_home.join("bin/spark-submit"))
        .args(["--master", "yarn", "--deploy-mode", "cluster", "--name", "weir-it"])
        .args(["--conf", "spark.yarn.submit.waitAppCompletion=false"])
        // Spark's own jars are on this machine: do not zip and upload them.
        .args(["--conf", &format!("spark.yarn.jars=local:{}/jars/*", clients.spark_home.display())])
        .args(["--conf", &format!("spark.yarn.stagingDir=file://{}", staging.display())])
        .arg(&app_py)
        .env("SPARK_HOME", &clients.spark_home)
        .env("HADOOP_CONF_DIR", conf)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("[spark-submit]\n{text}");
    assert!(out.status.success(), "spark-submit failed:\n{text}");
    let app = text
        .split_whitespace()
        .skip_while(|w| *w != "assigned:")
        .nth(1)
        .unwrap_or_else(|| panic!("spark-submit printed no application id:\n{text}"))
        .to_owned();
    assert!(app.starts_with("application_"), "{app}");
    assert!(text.contains(&format!("Application report for {app} (state: ACCEPTED)")), "{text}");

    // yarn application -list (default states) shows it ACCEPTED.
    let (out, text) = clients.applications(conf, &["-list"]);
    assert!(out.status.success(), "{text}");
    let row = line_of(&text, &app);
    assert!(row.contains("ACCEPTED") && row.contains("weir-it") && row.contains("SPARK") && row.contains("default"), "{row}");

    let (out, text) = clients.applications(conf, &["-status", &app]);
    assert!(out.status.success(), "{text}");
    for expected in ["State : ACCEPTED", "Final-State : UNDEFINED", "Queue : default", "Application-Name : weir-it"] {
        assert!(text.contains(expected), "-status lacks {expected:?}:\n{text}");
    }

    // -kill, then the application is KILLED everywhere.
    let (out, text) = clients.applications(conf, &["-kill", &app]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("Killing application {app}")), "{text}");
    let (_, text) = clients.applications(conf, &["-list"]);
    assert!(!text.contains(&app), "a killed application is not in the default (live) listing:\n{text}");
    let (_, text) = clients.applications(conf, &["-list", "-appStates", "KILLED"]);
    let row = line_of(&text, &app);
    assert!(row.contains("KILLED"), "{row}");
    let (_, text) = clients.applications(conf, &["-status", &app]);
    assert!(text.contains("State : KILLED") && text.contains("Final-State : KILLED"), "{text}");
    let (_, text) = clients.applications(conf, &["-kill", &app]);
    assert!(text.contains("has already finished"), "{text}");

    // An unknown id gets the CLI's own "doesn't exist" message.
    let unknown = format!("{}9999", &app[..app.rfind('_').unwrap() + 1]);
    let (_, text) = clients.applications(conf, &["-status", &unknown]);
    assert!(text.contains(&format!("Application with id '{unknown}' doesn't exist in RM")), "{text}");
}

const PREAMBLE: &[u8] = b"hrpc\x09\x00\x00";

/// What the server did with one bad connection: the response headers it
/// sent (if any) before closing. Panics if it neither answers nor closes.
async fn turned_away(addr: &str, bytes: &[u8]) -> Vec<RpcResponseHeaderProto> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut headers = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read_frame(&mut s, 1 << 20).await {
                Ok(Some(frame)) => headers.push(FrameCursor::new(&frame).decode::<RpcResponseHeaderProto>("response header").unwrap()),
                Ok(None) | Err(Error::Io(_)) | Err(Error::Truncated { .. }) => return,
                Err(e) => panic!("unexpected bytes from the server: {e}"),
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the server neither answered nor closed the connection after {:?}…", &bytes[..bytes.len().min(16)]);
    headers
}

async fn metrics(client: &Client) -> r::YarnClusterMetricsProto {
    let response: r::GetClusterMetricsResponseProto = client
        .call_message(APPLICATION_CLIENT_PROTOCOL, "getClusterMetrics", &r::GetClusterMetricsRequestProto {})
        .await
        .expect("a well-behaved client is still served");
    response.cluster_metrics.expect("cluster metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_clients_are_turned_away_and_others_keep_being_served() {
    let sa = tokio::task::block_in_place(standalone);
    let addr = sa.yarn_addr.clone();
    let good = Client::connect(addr.parse().unwrap(), ClientConfig::simple("alice", APPLICATION_CLIENT_PROTOCOL)).await.unwrap();
    assert_eq!(metrics(&good).await.num_active_nms, Some(1));

    // A client that sends half a frame and stalls must not hold others up.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(PREAMBLE).await.unwrap();
    stalled.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.unwrap();

    // Garbage (an HTTP request) and a wrong magic: closed.
    turned_away(&addr, b"GET /ws/v1/cluster HTTP/1.1\r\nHost: x\r\n\r\n").await;
    metrics(&good).await;
    turned_away(&addr, b"hrpx\x09\x00\x00\x00\x00\x00\x00").await;
    metrics(&good).await;

    // A frame over the bound: one FATAL reply, then closed, nothing allocated.
    let mut oversized = PREAMBLE.to_vec();
    oversized.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let headers = turned_away(&addr, &oversized).await;
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(headers[0].status, RpcStatusProto::Fatal as i32, "{headers:?}");
    assert!(headers[0].error_msg().contains("exceeds the limit"), "{headers:?}");
    metrics(&good).await;

    // A call before the connection context: FATAL, closed.
    let mut early = PREAMBLE.to_vec();
    early.extend(call_frame(&request_header(0, &[7; 16], 0), APPLICATION_CLIENT_PROTOCOL, "getClusterMetrics", &[]));
    let headers = turned_away(&addr, &early).await;
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(headers[0].status, RpcStatusProto::Fatal as i32, "{headers:?}");

    // An unknown method is an error on that call only; the connection lives.
    match good.call(APPLICATION_CLIENT_PROTOCOL, "getResourceProfile", &[]).await {
        Err(Error::Remote { class, fatal: false, .. }) => assert_eq!(class, "org.apache.hadoop.ipc.RpcNoSuchMethodException"),
        other => panic!("expected RpcNoSuchMethodException, got {other:?}"),
    }
    // An undecodable request payload likewise.
    match good.call(APPLICATION_CLIENT_PROTOCOL, "getApplicationReport", &[0xff, 0xff, 0xff]).await {
        Err(Error::Remote { fatal: false, message, .. }) => assert!(message.contains("cannot decode"), "{message}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    // Same good connection, and a new one, both still work.
    metrics(&good).await;
    let fresh = Client::connect(addr.parse().unwrap(), ClientConfig::simple("bob", APPLICATION_CLIENT_PROTOCOL)).await.unwrap();
    assert_eq!(metrics(&fresh).await.num_node_managers, Some(1));
    drop(stalled);
}
