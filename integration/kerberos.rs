//! Kerberos on the YARN shim's ports (issue 21) against a real MIT KDC
//! that the test starts on loopback (`support::kdc`), with the real
//! clients: the Hadoop `yarn` CLI and `spark-submit` from pyspark, `kinit`-ed
//! as alice. With a ticket a SparkPi job runs and is alice's; after
//! `kdestroy` the same clients are refused with Hadoop's message, and a
//! client configured for SIMPLE is refused with the shim's.
//!
//! Runs only where the KDC tools exist (Debian's krb5-kdc,
//! krb5-admin-server, krb5-user; scripts/test.sh installs them) and prints
//! SKIPPED with the reason otherwise. Needs Java 17+ and pyspark like
//! `integration/yarn.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::kdc::{Kdc, REALM};

/// Room for an AM and two small executors beside the node manager.
const SPARK_SPEC: &str = "cpus:4;mem:6144;disk:1000;{ports}";

const PI_PY: &str = r#"
import sys
from random import random
from operator import add
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("KerberizedPi").getOrCreate()
slices = int(sys.argv[1]) if len(sys.argv) > 1 else 2
n = 100000 * slices
def inside(_):
    x, y = random() * 2 - 1, random() * 2 - 1
    return 1 if x * x + y * y <= 1 else 0
count = spark.sparkContext.parallelize(range(1, n + 1), slices).map(inside).reduce(add)
print("Pi is roughly %f" % (4.0 * count / n))
spark.stop()
"#;

/// A realm with alice and the shim's service principal, or None (and
/// SKIPPED printed) when the KDC tools are not installed.
struct Realm {
    kdc: Kdc,
    alice: (String, PathBuf),
    rm: (String, PathBuf),
}

fn realm() -> Option<Realm> {
    if let Some(why) = Kdc::unavailable() {
        eprintln!("SKIPPED: no Kerberos KDC here: {why}");
        return None;
    }
    let kdc = Kdc::start().unwrap_or_else(|e| panic!("the KDC tools are installed but the realm did not start: {e}"));
    let alice = kdc.add_principal("alice").unwrap();
    let rm = kdc.add_principal("rm/localhost").unwrap();
    Some(Realm { kdc, alice, rm })
}

/// A Kerberized `weir standalone` and the Hadoop configuration it wrote.
struct Shim {
    proc: support::Proc,
    dir: tempfile::TempDir,
    /// The configuration standalone wrote, with the ResourceManager
    /// connection retries shortened: a Hadoop client retries a refused
    /// connection for 15 minutes by default (YARN-4288 retries IOExceptions).
    conf_dir: PathBuf,
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.proc.terminate();
    }
}

/// Standalone with `yarn-shim.security.authentication=kerberos`, the
/// service principal written as Hadoop configurations do (`rm/_HOST@…`).
/// The shim gets the realm's krb5.conf, never alice's ticket cache: its
/// containers must get by with tokens.
fn kerberized_standalone(realm: &Realm, spec: &str, extra: &[&str]) -> Shim {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::spec_with_free_port(spec);
    let work = dir.path().to_str().unwrap().to_owned();
    let mut args = support::loopback_standalone_args(&work, &spec);
    let defines = [
        "yarn-shim.security.authentication=kerberos".to_owned(),
        format!("yarn-shim.resourcemanager.principal=rm/_HOST@{REALM}"),
        format!("yarn-shim.resourcemanager.keytab={}", realm.rm.1.display()),
        "yarn-shim.nodemanager.idle.timeout=2s".to_owned(),
    ];
    for d in defines.iter().map(String::as_str).chain(extra.iter().copied()) {
        args.extend(["-D", d]);
    }
    let krb5_conf = realm.kdc.krb5_conf().display().to_string();
    let rcache = realm.kdc.dir().display().to_string();
    let (proc, _) =
        support::spawn_weir_env("standalone", &args, "weir standalone: broker", &[("KRB5_CONFIG", &krb5_conf), ("KRB5RCACHEDIR", &rcache)]);
    let written = dir.path().join("hadoop-conf");
    let core_site = std::fs::read_to_string(written.join("core-site.xml")).unwrap();
    let yarn_site = std::fs::read_to_string(written.join("yarn-site.xml")).unwrap();
    assert!(core_site.contains("<name>hadoop.security.authentication</name>\n    <value>kerberos</value>"), "{core_site}");
    assert!(yarn_site.contains(&format!("<name>yarn.resourcemanager.principal</name>\n    <value>rm/localhost@{REALM}</value>")), "{yarn_site}");
    let client_conf = dir.path().join("client-conf");
    std::fs::create_dir_all(&client_conf).unwrap();
    std::fs::write(client_conf.join("core-site.xml"), core_site).unwrap();
    let quick = "  <property><name>yarn.resourcemanager.connect.max-wait.ms</name><value>3000</value></property>\n  \
                 <property><name>yarn.resourcemanager.connect.retry-interval.ms</name><value>500</value></property>\n</configuration>";
    std::fs::write(client_conf.join("yarn-site.xml"), yarn_site.replace("</configuration>", quick)).unwrap();
    Shim { proc, dir, conf_dir: client_conf }
}

/// Java and pyspark's Spark, as integration/yarn.rs finds them.
struct Clients {
    java: PathBuf,
    spark_home: PathBuf,
}

fn clients() -> Clients {
    let java = std::env::var_os("JAVA_HOME").map(|h| PathBuf::from(h).join("bin/java")).filter(|j| j.exists()).unwrap_or_else(|| PathBuf::from("java"));
    let ok = Command::new(&java).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "this test runs the real YARN clients and needs Java 17+ on PATH (or JAVA_HOME); none was found");
    let out = Command::new("python3")
        .args(["-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"])
        .output()
        .expect("this test needs python3 with pyspark (pip install pyspark)");
    assert!(out.status.success(), "this test needs pyspark (pip install pyspark): {}", String::from_utf8_lossy(&out.stderr));
    let spark_home = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Clients { java, spark_home }
}

fn python() -> String {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn text_of(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl Clients {
    /// `yarn application ARGS` (the CLI's class, as the `yarn` script runs
    /// it) with the realm's krb5.conf and the test's ticket cache.
    fn applications(&self, realm: &Realm, conf_dir: &Path, args: &[&str]) -> (Output, String) {
        let mut all = vec!["application"];
        all.extend_from_slice(args);
        self.cli(realm, conf_dir, "org.apache.hadoop.yarn.client.cli.ApplicationCLI", &all)
    }

    /// A Hadoop CLI class as the `yarn` script runs it. HADOOP_USER_NAME
    /// says bob: with Kerberos, Hadoop's client must ignore it.
    fn cli(&self, realm: &Realm, conf_dir: &Path, class: &str, args: &[&str]) -> (Output, String) {
        let cp = format!("{}:{}/jars/*", conf_dir.display(), self.spark_home.display());
        let krb5 = format!("-Djava.security.krb5.conf={}", realm.kdc.krb5_conf().display());
        let out = Command::new(&self.java)
            .args(["-Xshare:auto", "-XX:TieredStopAtLevel=1", &krb5, "-cp", &cp, class])
            .args(args)
            .env("HADOOP_CONF_DIR", conf_dir)
            .env("KRB5CCNAME", realm.kdc.ccache())
            .env("HADOOP_USER_NAME", "bob")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = text_of(&out);
        eprintln!("[{class} {}]\n{text}", args.join(" "));
        (out, text)
    }

    /// `spark-submit --master yarn --deploy-mode MODE` of pi.py as the
    /// ticket cache's principal. Spark is told not to fetch HDFS, Hive or
    /// HBase delegation tokens: the job uses none of them.
    fn spark_submit(&self, realm: &Realm, shim: &Shim, mode: &str, app: &Path) -> (Output, String) {
        let staging = shim.dir.path().join("staging");
        let python = python();
        let krb5 = format!("-Djava.security.krb5.conf={}", realm.kdc.krb5_conf().display());
        let out = Command::new(self.spark_home.join("bin/spark-submit"))
            .args(["--master", "yarn", "--deploy-mode", mode])
            .args(["--conf", &format!("spark.yarn.jars=local:{}/jars/*", self.spark_home.display())])
            .args(["--conf", &format!("spark.yarn.stagingDir=file://{}", staging.display())])
            .args(["--conf", "spark.executor.instances=2", "--conf", "spark.executor.cores=1"])
            .args(["--conf", "spark.executor.memory=512m", "--conf", "spark.driver.memory=512m"])
            .args(["--conf", "spark.ui.enabled=false", "--conf", "spark.yarn.maxAppAttempts=1"])
            .args(["--conf", &format!("spark.pyspark.python={python}")])
            .args(["--conf", "spark.yarn.appMasterEnv.SPARK_LOCAL_IP=127.0.0.1"])
            .args(["--conf", "spark.executorEnv.SPARK_LOCAL_IP=127.0.0.1"])
            .args(["--conf", "spark.yarn.report.interval=500ms"])
            .args(["--conf", "spark.security.credentials.hadoopfs.enabled=false"])
            .args(["--conf", "spark.security.credentials.hive.enabled=false"])
            .args(["--conf", "spark.security.credentials.hbase.enabled=false"])
            .args(["--conf", &format!("spark.driver.extraJavaOptions={krb5}")])
            .args(["--conf", &format!("spark.executor.extraJavaOptions={krb5}")])
            .arg(app)
            .arg("4")
            .env("SPARK_HOME", &self.spark_home)
            .env("HADOOP_CONF_DIR", &shim.conf_dir)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env("PYSPARK_PYTHON", &python)
            .env("SPARK_SUBMIT_OPTS", &krb5)
            .env("KRB5CCNAME", realm.kdc.ccache())
            // Ignored with Kerberos: the ticket says who submits.
            .env("HADOOP_USER_NAME", "bob")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = text_of(&out);
        eprintln!("[spark-submit {mode}]\n{text}");
        (out, text)
    }
}

/// Hadoop's client without a Kerberos ticket and without a token.
const NO_TICKET: &str = "Client cannot authenticate via:[TOKEN, KERBEROS]";

/// The yarn CLI with and without a ticket, and configured for SIMPLE.
#[test]
fn yarn_cli_lists_with_a_ticket_and_is_refused_without_one() {
    let Some(realm) = realm() else { return };
    let clients = clients();
    // bob administers; alice's ticket makes her alice whatever she claims.
    let shim = kerberized_standalone(&realm, "cpus:2;mem:4096;disk:1000", &["yarn-shim.admin.acl=bob"]);

    realm.kdc.kinit(&realm.alice.0, &realm.alice.1).unwrap();
    let (out, text) = clients.applications(&realm, &shim.conf_dir, &["-list", "-appStates", "ALL"]);
    assert!(out.status.success(), "yarn application -list with alice's ticket failed:\n{text}");
    assert!(text.contains("Total number of applications"), "{text}");
    // The admin port speaks Kerberos too, and its ACL sees alice, not the
    // bob of HADOOP_USER_NAME.
    let (out, text) = clients.cli(&realm, &shim.conf_dir, "org.apache.hadoop.yarn.client.cli.RMAdminCLI", &["-refreshAdminAcls"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("User alice doesn't have permission to call 'refreshAdminAcls'"), "{text}");

    realm.kdc.kdestroy().unwrap();
    let (out, text) = clients.applications(&realm, &shim.conf_dir, &["-list"]);
    assert!(!out.status.success(), "yarn application -list without a ticket succeeded:\n{text}");
    assert!(text.contains(NO_TICKET), "expected Hadoop's {NO_TICKET:?}:\n{text}");

    // A client whose configuration says SIMPLE: the shim refuses it.
    let simple = shim.dir.path().join("simple-conf");
    std::fs::create_dir_all(&simple).unwrap();
    let core = std::fs::read_to_string(shim.conf_dir.join("core-site.xml")).unwrap().replace("<value>kerberos</value>", "<value>simple</value>");
    std::fs::write(simple.join("core-site.xml"), core).unwrap();
    std::fs::copy(shim.conf_dir.join("yarn-site.xml"), simple.join("yarn-site.xml")).unwrap();
    let (out, text) = clients.applications(&realm, &simple, &["-list"]);
    assert!(!out.status.success(), "a SIMPLE client was let in:\n{text}");
    assert!(text.contains("SIMPLE authentication is not enabled.  Available:[TOKEN, KERBEROS]"), "{text}");
}

/// The issue's "done when": SparkPi on a Kerberized shim with a real KDC,
/// its π right and its application alice's; without a ticket the same
/// submission is refused with Hadoop's message.
#[test]
fn spark_pi_runs_on_a_kerberized_shim_and_is_refused_without_a_ticket() {
    let Some(realm) = realm() else { return };
    let clients = clients();
    let shim = kerberized_standalone(&realm, SPARK_SPEC, &[]);
    let pi_py = shim.dir.path().join("pi.py");
    std::fs::write(&pi_py, PI_PY).unwrap();

    realm.kdc.kinit(&realm.alice.0, &realm.alice.1).unwrap();
    let (out, text) = clients.spark_submit(&realm, &shim, "cluster", &pi_py);
    assert!(out.status.success(), "spark-submit with alice's ticket failed:\n{text}");
    assert!(text.contains("final status: SUCCEEDED"), "{text}");
    assert!(text.contains("user: alice"), "the application should be alice's:\n{text}");
    let outputs: Vec<String> = support::files_named(shim.dir.path(), "stdout")
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|t| t.contains("Pi is roughly"))
        .collect();
    assert_eq!(outputs.len(), 1, "one AM printed π");
    let pi: f64 = outputs[0].split("Pi is roughly ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok()).unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.05, "π = {pi}");

    // Client mode: the driver is spark-submit itself (Kerberos), its AM in
    // a container asks for executors with its AMRM token.
    let (out, text) = clients.spark_submit(&realm, &shim, "client", &pi_py);
    assert!(out.status.success(), "spark-submit (client) with alice's ticket failed:\n{text}");
    let pi: f64 = text.split("Pi is roughly ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok()).unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.05, "π = {pi}");

    realm.kdc.kdestroy().unwrap();
    let (out, text) = clients.spark_submit(&realm, &shim, "cluster", &pi_py);
    assert!(!out.status.success(), "spark-submit without a ticket succeeded:\n{text}");
    assert!(text.contains(NO_TICKET), "expected Hadoop's {NO_TICKET:?}:\n{text}");
    // Nothing was submitted the last time: alice sees her two jobs.
    realm.kdc.kinit(&realm.alice.0, &realm.alice.1).unwrap();
    let (out, text) = clients.applications(&realm, &shim.conf_dir, &["-list", "-appStates", "ALL"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Total number of applications (application-types: [], states: [NEW, NEW_SAVING, SUBMITTED, ACCEPTED, RUNNING, FINISHED, FAILED, KILLED] and tags: []):2"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("application_") && l.contains("alice") && l.contains("SUCCEEDED")).count(), 2, "{text}");
}

/// Hadoop IPC by hand, for MIT's own GSS-API initiator (not Java): what
/// Hadoop's `SaslRpcClient` sends, one frame at a time.
mod raw {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use weir_yarn_ipc::frame::{encode_frame, read_frame, FrameCursor};
    use weir_yarn_ipc::header::{call_frame, request_header};
    use weir_yarn_ipc::proto::rpc_response_header_proto::RpcStatusProto;
    use weir_yarn_ipc::proto::rpc_sasl_proto::{SaslAuth, SaslState};
    use weir_yarn_ipc::proto::{IpcConnectionContextProto, RpcResponseHeaderProto, RpcSaslProto, UserInformationProto};
    use weir_yarn_ipc::security::gssapi::{Credential, SecurityContext};

    pub async fn read(s: &mut TcpStream) -> (RpcResponseHeaderProto, Vec<u8>) {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), read_frame(s, 1 << 20)).await.unwrap().unwrap().unwrap();
        let mut c = FrameCursor::new(&frame);
        let h: RpcResponseHeaderProto = c.decode("header").unwrap();
        let rest = if c.is_empty() { Vec::new() } else { c.next_delimited("payload").unwrap().to_vec() };
        (h, rest)
    }

    pub async fn send_sasl(s: &mut TcpStream, msg: &RpcSaslProto) {
        s.write_all(&encode_frame(&[&request_header(-33, b"", -1), msg])).await.unwrap();
    }

    /// What a server with principal rm/localhost offers for Kerberos.
    pub fn kerberos_auth() -> SaslAuth {
        SaslAuth { method: "KERBEROS".into(), mechanism: "GSSAPI".into(), protocol: Some("rm".into()), server_id: Some("localhost".into()), challenge: None }
    }

    /// Connects with the SASL preamble and NEGOTIATEs: the stream and the offer.
    pub async fn negotiate(addr: std::net::SocketAddr) -> (TcpStream, RpcSaslProto) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"hrpc\x09\x00\xdf").await.unwrap();
        send_sasl(&mut s, &RpcSaslProto { state: SaslState::Negotiate as i32, ..Default::default() }).await;
        let (_, body) = read(&mut s).await;
        (s, prost::Message::decode(&body[..]).unwrap())
    }

    /// GSSAPI as `principal` (its ticket in `ccache`) to `service`, through
    /// the wrapped security-layer offer and choice to SUCCESS; then the
    /// connection context naming `principal` and `protocol`.
    pub async fn login(s: &mut TcpStream, principal: &str, ccache: &std::path::Path, service: &str, protocol: &str) {
        let mut ctx = SecurityContext::initiator(Credential::initiator(principal, ccache).unwrap(), service).unwrap();
        let first = ctx.step(b"").unwrap();
        send_sasl(s, &RpcSaslProto { state: SaslState::Initiate as i32, token: Some(first.token), auths: vec![kerberos_auth()], version: None }).await;
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 10, "GSSAPI did not end");
            let (h, body) = read(s).await;
            assert_eq!(h.status(), RpcStatusProto::Success, "{h:?}");
            let m: RpcSaslProto = prost::Message::decode(&body[..]).unwrap();
            match m.state() {
                SaslState::Success => break,
                SaslState::Challenge if !ctx.is_complete() => {
                    let step = ctx.step(m.token()).unwrap();
                    send_sasl(s, &RpcSaslProto { state: SaslState::Response as i32, token: Some(step.token), ..Default::default() }).await;
                }
                SaslState::Challenge => {
                    // The wrapped offer: no security layer, size 0. Choose it.
                    let offer = ctx.unwrap(m.token()).unwrap();
                    assert_eq!(offer, [1, 0, 0, 0]);
                    let choice = ctx.wrap(&[1, 0, 0, 0]).unwrap();
                    send_sasl(s, &RpcSaslProto { state: SaslState::Response as i32, token: Some(choice), ..Default::default() }).await;
                }
                other => panic!("unexpected SASL state {other:?}"),
            }
        }
        let context = IpcConnectionContextProto {
            user_info: Some(UserInformationProto { effective_user: Some(principal.into()), real_user: None }),
            protocol: Some(protocol.into()),
        };
        s.write_all(&encode_frame(&[&request_header(-3, &[7; 16], -1), &context])).await.unwrap();
    }

    /// One call and its response (header, payload).
    pub async fn call(s: &mut TcpStream, call_id: i32, protocol: &str, method: &str, request: &[u8]) -> (RpcResponseHeaderProto, Vec<u8>) {
        s.write_all(&call_frame(&request_header(call_id, &[7; 16], -1), protocol, method, request)).await.unwrap();
        read(s).await
    }
}

/// Service tickets fetched into the cache now, so this process's
/// initiator never needs to find the KDC itself.
fn fetch_service_tickets(realm: &Realm, services: &[&str]) {
    for service in services {
        let out = Command::new("kvno").arg(service).envs(realm.kdc.env()).output().unwrap();
        assert!(out.status.success(), "kvno {service}: {}", text_of(&out));
    }
}

/// The shim's IPC server against MIT's own GSS-API initiator (not Java):
/// the SASL GSSAPI rounds, the security-layer negotiation with real
/// wrap/unwrap, the principal's short name as the call's user; a ticket
/// for a service whose key the server lacks, and junk, are refused.
#[tokio::test]
async fn ipc_server_accepts_mits_initiator_and_maps_the_principal() {
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    use weir_yarn_ipc::proto::rpc_response_header_proto::RpcStatusProto;
    use weir_yarn_ipc::proto::rpc_sasl_proto::SaslState;
    use weir_yarn_ipc::proto::RpcSaslProto;
    use weir_yarn_ipc::security::auth_to_local::AuthToLocal;
    use weir_yarn_ipc::security::gssapi::{Credential, SecurityContext};
    use weir_yarn_ipc::security::sasl_gssapi::KerberosAcceptor;
    use weir_yarn_ipc::server::{CallContext, RpcError, Server, ServerConfig, Service};

    let Some(realm) = realm() else { return };
    let nm = realm.kdc.add_principal("nm/localhost").unwrap();
    realm.kdc.kinit(&realm.alice.0, &realm.alice.1).unwrap();
    fetch_service_tickets(&realm, &[&realm.rm.0, &nm.0]);

    struct WhoAmI;
    #[async_trait::async_trait]
    impl Service for WhoAmI {
        async fn call(&self, ctx: &CallContext, _: &str, _: &[u8]) -> Result<Vec<u8>, RpcError> {
            Ok(ctx.user.clone().unwrap_or_default().into_bytes())
        }
    }
    let rules = AuthToLocal::parse("RULE:[1:$1@$0](alice@WEIR\\.TEST)s/.*/alice_local/ DEFAULT", REALM).unwrap();
    let acceptor = KerberosAcceptor::from_keytab(&realm.rm.0, &realm.rm.1, rules).unwrap();
    let mut server = Server::new(ServerConfig::default());
    server.register("test.WhoAmI", Arc::new(WhoAmI));
    server.set_kerberos(acceptor);
    let handle = server.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let addr = handle.local_addr;
    let ccache = realm.kdc.ccache();

    // A complete login as alice, then one call.
    let (mut s, offer) = raw::negotiate(addr).await;
    // No secret manager on this port: KERBEROS alone (the shim's client
    // port offers TOKEN first).
    assert_eq!(offer.auths, [raw::kerberos_auth()]);
    raw::login(&mut s, &realm.alice.0, &ccache, &realm.rm.0, "test.WhoAmI").await;
    let (h, body) = raw::call(&mut s, 0, "test.WhoAmI", "who", b"").await;
    assert_eq!(h.status(), RpcStatusProto::Success, "{h:?}");
    assert_eq!(String::from_utf8(body).unwrap(), "alice_local", "the rule maps alice@WEIR.TEST");

    // A ticket for nm/localhost presented to the rm/localhost acceptor.
    let (mut s, _) = raw::negotiate(addr).await;
    let mut wrong = SecurityContext::initiator(Credential::initiator(&realm.alice.0, &ccache).unwrap(), &nm.0).unwrap();
    let first = wrong.step(b"").unwrap();
    raw::send_sasl(&mut s, &RpcSaslProto { state: SaslState::Initiate as i32, token: Some(first.token), auths: vec![raw::kerberos_auth()], version: None }).await;
    let (h, _) = raw::read(&mut s).await;
    assert_eq!(h.status(), RpcStatusProto::Fatal, "{h:?}");
    assert_eq!(h.exception_class_name(), "javax.security.sasl.SaslException");
    assert!(h.error_msg().starts_with("GSS accept failed"), "{}", h.error_msg());

    // Junk where the Kerberos AP-REQ belongs, to the real acceptor.
    for junk in [&b""[..], b"\x00", b"\x60\x80", b"\x60\x03\x06\x01\x00", &[0xffu8; 300][..], &[0x60u8; 4000][..]] {
        let (mut s, _) = raw::negotiate(addr).await;
        raw::send_sasl(&mut s, &RpcSaslProto { state: SaslState::Initiate as i32, token: Some(junk.to_vec()), auths: vec![raw::kerberos_auth()], version: None }).await;
        let (h, _) = raw::read(&mut s).await;
        assert_eq!(h.status(), RpcStatusProto::Fatal, "{junk:?}: {h:?}");
        assert!(h.error_msg().starts_with("GSS accept failed"), "{junk:?}: {}", h.error_msg());
    }

    // SIMPLE in the preamble: Hadoop's refusal.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"hrpc\x09\x00\x00").await.unwrap();
    let (h, _) = raw::read(&mut s).await;
    assert_eq!(h.error_msg(), "SIMPLE authentication is not enabled.  Available:[KERBEROS]");
    handle.shutdown();
}

/// RM delegation tokens on a Kerberized shim: issued and renewed over a
/// Kerberos connection, then good for TOKEN (DIGEST-MD5) on the client
/// port, where no new token is issued; a forged one is refused.
#[tokio::test]
async fn rm_delegation_tokens_come_over_kerberos_and_authenticate_on_the_client_port() {
    use prost::Message;
    use weir_yarn_api::records as r;
    use weir_yarn_api::APPLICATION_CLIENT_PROTOCOL;
    use weir_yarn_ipc::client::{Client, ClientConfig};
    use weir_yarn_ipc::proto as common;
    use weir_yarn_ipc::proto::rpc_response_header_proto::RpcStatusProto;

    let Some(realm) = realm() else { return };
    realm.kdc.kinit(&realm.alice.0, &realm.alice.1).unwrap();
    fetch_service_tickets(&realm, &[&realm.rm.0]);
    let shim = kerberized_standalone(&realm, "cpus:2;mem:4096;disk:1000", &[]);
    let yarn_site = std::fs::read_to_string(shim.conf_dir.join("yarn-site.xml")).unwrap();
    let addr: std::net::SocketAddr = yarn_site
        .split("<name>yarn.resourcemanager.address</name>")
        .nth(1)
        .and_then(|rest| rest.split("<value>").nth(1))
        .and_then(|rest| rest.split("</value>").next())
        .unwrap()
        .parse()
        .unwrap();

    let (mut s, offer) = raw::negotiate(addr).await;
    let methods: Vec<&str> = offer.auths.iter().map(|a| a.method.as_str()).collect();
    assert_eq!(methods, ["TOKEN", "KERBEROS"]);
    raw::login(&mut s, &realm.alice.0, &realm.kdc.ccache(), &realm.rm.0, APPLICATION_CLIENT_PROTOCOL).await;
    let get = common::GetDelegationTokenRequestProto { renewer: "alice".into() }.encode_to_vec();
    let (h, body) = raw::call(&mut s, 0, APPLICATION_CLIENT_PROTOCOL, "getDelegationToken", &get).await;
    assert_eq!(h.status(), RpcStatusProto::Success, "{h:?}");
    let token = common::GetDelegationTokenResponseProto::decode(&body[..]).unwrap().token.unwrap();
    assert_eq!(token.kind, "RM_DELEGATION_TOKEN");
    assert_eq!(r::YarnDelegationTokenIdentifierProto::decode(&token.identifier[..]).unwrap().owner(), "alice");
    let renew = common::RenewDelegationTokenRequestProto { token: token.clone() }.encode_to_vec();
    let (h, body) = raw::call(&mut s, 1, APPLICATION_CLIENT_PROTOCOL, "renewDelegationToken", &renew).await;
    assert_eq!(h.status(), RpcStatusProto::Success, "{h:?}");
    assert!(common::RenewDelegationTokenResponseProto::decode(&body[..]).unwrap().new_expiry_time > 0);

    // The token alone, no ticket involved: DIGEST-MD5 on the client port.
    let config = ClientConfig { token: Some(token.clone()), ..ClientConfig::simple("mallory", APPLICATION_CLIENT_PROTOCOL) };
    let c = Client::connect(addr, config.clone()).await.unwrap();
    let metrics: r::GetClusterMetricsResponseProto =
        c.call_message(APPLICATION_CLIENT_PROTOCOL, "getClusterMetrics", &r::GetClusterMetricsRequestProto {}).await.unwrap();
    assert!(metrics.cluster_metrics.is_some());
    let err = c
        .call_message::<_, common::GetDelegationTokenResponseProto>(APPLICATION_CLIENT_PROTOCOL, "getDelegationToken", &common::GetDelegationTokenRequestProto { renewer: "alice".into() })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("java.io.IOException") && err.contains("Delegation Token can be issued only with kerberos authentication"), "{err}");
    let mut forged = config;
    if let Some(t) = forged.token.as_mut() {
        t.password = vec![7; 20];
    }
    assert!(Client::connect(addr, forged).await.is_err(), "a forged token was accepted");
    drop(shim);
}
