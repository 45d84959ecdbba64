//! Backed volumes end to end: a real broker and two agents on loopback,
//! driven by `weir volume create --backing`, `weir volume sync` and `weir
//! run --volume`. A volume written on agent A is synced to its backing
//! (when its task ends, and on SYNC); A is killed with SIGKILL in the
//! middle of a sync and removed; the volume is created on agent B and the
//! last complete copy is there; A comes back and its stale copy is refused.
//!
//! The backing is a local directory, and also a real HDFS when
//! `WEIR_TEST_HDFS` names one (`hdfs://127.0.0.1:9000`; otherwise that
//! test says so and passes).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Cluster, WEIR};
use weir_hdfs_volumes::backing::Backing;

const SPEC: &str = "cpus:2;mem:1024;disk:4096";
/// The file the interrupted sync is copying: big enough that a debug
/// build spends seconds hashing and copying it.
const BIG: u64 = 96 << 20;

fn text(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn agent_named(state: &Value, hostname: &str) -> Option<Value> {
    state["agents"].as_array()?.iter().find(|a| a["hostname"] == hostname).cloned()
}

fn volume_of(state: &Value, hostname: &str) -> Value {
    agent_named(state, hostname).map(|a| a["volumes"][0].clone()).unwrap_or(Value::Null)
}

/// The backing's pointer (generation, owner) and its tmp/ entries.
fn backing_now(uri: &str) -> (Option<(u64, String)>, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = weir_hdfs_volumes::open(uri, &Default::default()).unwrap();
        let tmp = store.list("tmp").await.map(|l| l.len()).unwrap_or(0);
        let backing = Backing::attach(store, "pgdata").await.unwrap();
        (backing.current().await.unwrap().map(|p| (p.generation, p.owner)), tmp)
    })
}

#[test]
fn a_backed_volume_moves_to_another_agent_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    moves_and_fences(&format!("file://{}/backings/pgdata", dir.path().display()));
}

#[test]
fn a_backed_volume_moves_to_another_agent_on_hdfs() {
    let Ok(base) = std::env::var("WEIR_TEST_HDFS") else {
        eprintln!("WEIR_TEST_HDFS is not set: the HDFS-backed volume is not tested");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    moves_and_fences(&format!("{}/weir-test/volume-{nanos}/pgdata", base.trim_end_matches('/')));
}

fn moves_and_fences(uri: &str) {
    let mut cluster = Cluster::start(
        2,
        SPEC,
        &["broker.agent.unreachable.timeout=1s", "broker.agent.reregister.timeout=3s"],
    );
    let state = cluster.wait_for(Duration::from_secs(30), |s| {
        agent_named(s, "agent0.test").is_some() && agent_named(s, "agent1.test").is_some()
    });
    let a = agent_named(&state, "agent0.test").unwrap()["id"].as_str().unwrap().to_owned();
    let b = agent_named(&state, "agent1.test").unwrap()["id"].as_str().unwrap().to_owned();
    let weir = |cluster: &Cluster, args: &[&str]| {
        let out = cluster.weir(args);
        let (stdout, stderr) = text(&out);
        (out.status.code(), stdout, stderr)
    };
    let (code, _, stderr) = weir(&cluster, &["reserve", "--agent", &a, "--role", "db", "--id", "r1", "cpus:1;mem:256;disk:1024"]);
    assert_eq!(code, Some(0), "{stderr}");

    // CREATE with a backing: pending until the agent has attached it.
    let create = |cluster: &Cluster, agent: &str, backing: &str| {
        weir(cluster, &["volume", "create", "--agent", agent, "--role", "db", "--reservation", "r1", "--size", "512", "--path", "data", "--backing", backing, "pgdata"])
    };
    let (code, stdout, stderr) = create(&cluster, &a, uri);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("CREATE on {a}: OPERATION_PENDING: created volume pgdata of 512 MiB on reservation r1; agent {a} attaches it to {uri}")), "{stdout}");
    assert!(stdout.contains(&format!("CREATE on {a}: OPERATION_FINISHED: volume pgdata is backed by {uri} (empty; generation 1)")), "{stdout}");

    // A task writes; when it ends the agent syncs.
    let run = cluster.weir(&["run", "--role", "db", "--volume", "pgdata", "--cpus", "0.2", "--mem", "32", "--", "echo written-on-A > data/note && mkdir -p data/sub && echo deep > data/sub/file"]);
    assert_eq!(run.status.code(), Some(0), "{:?}", text(&run));
    let state = cluster.wait_for(Duration::from_secs(60), |s| volume_of(s, "agent0.test")["last_sync"]["generation"] == 2);
    let synced = &volume_of(&state, "agent0.test")["last_sync"];
    assert_eq!((synced["trigger"].as_str(), synced["files_copied"].as_u64(), synced["bytes_copied"].as_u64()), (Some("task-ended"), Some(2), Some(18)), "{synced}");
    assert_eq!(volume_of(&state, "agent0.test")["backing"], uri);

    // SYNC: nothing changed, nothing copied; the status says so.
    let (code, stdout, stderr) = weir(&cluster, &["volume", "sync", "--agent", &a, "--role", "db", "pgdata"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("SYNC on {a}: OPERATION_FINISHED: synced volume pgdata to {uri}: generation 3, 2 files (0 copied), 0 of 18 bytes copied in ")), "{stdout}");
    assert_eq!(backing_now(uri).0, Some((3, a.clone())));
    let (_, list, _) = weir(&cluster, &["volume", "list"]);
    assert!(list.contains(uri) && list.contains("sync generation 3"), "{list}");

    // A task writes a big file; the agent is killed with SIGKILL while the
    // sync after it copies: the backing keeps a complete generation.
    let mut writer = Command::new(WEIR)
        .args(["run", "--broker", &cluster.broker_addr, "--role", "db", "--volume", "pgdata", "--cpus", "0.2", "--mem", "32", "--"])
        .arg(format!("head -c {BIG} /dev/zero > data/big && echo changed > data/note"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the sync of the big file never started");
        if backing_now(uri).1 > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.agents[0].kill9();
    let (pointer, _) = backing_now(uri);
    let (generation, owner) = pointer.unwrap();
    assert_eq!(owner, a);
    assert!(generation == 3 || generation == 4, "generation {generation}");
    eprintln!("killed mid-sync; the backing holds generation {generation}");

    // A is removed; the volume is created on B from its backing.
    cluster.wait_for(Duration::from_secs(30), |s| agent_named(s, "agent0.test").is_none());
    let _ = writer.wait();
    let (code, _, stderr) = weir(&cluster, &["reserve", "--agent", &b, "--role", "db", "--id", "r1", "cpus:1;mem:256;disk:1024"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) = create(&cluster, &b, uri);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("CREATE on {b}: OPERATION_FINISHED: restored volume pgdata from {uri}: generation ")), "{stdout}");
    let on_b = cluster.agent_dir(1).join("volumes/roles/db/pgdata");
    assert_eq!(std::fs::read_to_string(on_b.join("sub/file")).unwrap(), "deep\n");
    match std::fs::metadata(on_b.join("big")) {
        // The interrupted generation: the old note, no big file.
        Err(_) => assert_eq!(std::fs::read_to_string(on_b.join("note")).unwrap(), "written-on-A\n"),
        // The sync had switched just before the kill: all of it.
        Ok(meta) => {
            assert_eq!(meta.len(), BIG);
            assert_eq!(std::fs::read_to_string(on_b.join("note")).unwrap(), "changed\n");
        }
    }
    let restored_note = std::fs::read_to_string(on_b.join("note")).unwrap();
    let run = cluster.weir(&["run", "--role", "db", "--volume", "pgdata", "--cpus", "0.2", "--mem", "32", "--", "cat data/note"]);
    assert_eq!(text(&run).0, restored_note, "{:?}", text(&run));
    let (b_pointer, _) = backing_now(uri);
    let (b_generation, b_owner) = b_pointer.unwrap();
    assert_eq!(b_owner, b);

    // A returns with its stale copy: its sync is refused and says so, and
    // the backing keeps B's generation.
    cluster.add_agent(0, SPEC);
    // It says so as soon as it is back.
    let state = cluster.wait_for(Duration::from_secs(30), |s| volume_of(s, "agent0.test")["last_sync"]["trigger"] == "registered");
    assert_eq!(volume_of(&state, "agent0.test")["last_sync"]["stale"], true, "the broker must offer the stale copy to nobody");
    let said = volume_of(&state, "agent0.test")["last_sync"]["error"].as_str().unwrap().to_owned();
    assert!(said.starts_with("volume pgdata here is a stale copy (generation ") && said.ends_with(&format!("{uri} holds generation {b_generation} of agent {b}")), "{said}");
    let (code, _, stderr) = weir(&cluster, &["volume", "sync", "--agent", &a, "--role", "db", "pgdata"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("SYNC on {a}: OPERATION_FAILED: volume pgdata: this copy is at generation "))
            && stderr.contains(&format!(" but {uri} holds generation {b_generation} of agent {b}; the stale copy is not synced over it")),
        "{stderr}"
    );
    let state = cluster.state();
    assert!(volume_of(&state, "agent0.test")["last_sync"]["error"].as_str().unwrap().contains("stale copy"));
    assert_eq!(backing_now(uri).0, Some((b_generation, b.clone())));
}

#[test]
fn a_backing_that_cannot_be_used_fails_the_create_naming_it() {
    let mut cluster = Cluster::start(0, SPEC, &[]);
    cluster.add_agent_with(0, SPEC, &["agent.volume.backing.timeout=3s"]);
    let state = cluster.wait_for(Duration::from_secs(30), |s| agent_named(s, "agent0.test").is_some());
    let a = agent_named(&state, "agent0.test").unwrap()["id"].as_str().unwrap().to_owned();
    let out = cluster.weir(&["reserve", "--agent", &a, "--role", "db", "--id", "r1", "cpus:1;mem:256;disk:1024"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let create = |id: &str, backing: &str| {
        let out = cluster.weir(&["volume", "create", "--agent", &a, "--role", "db", "--reservation", "r1", "--size", "100", "--path", id, "--backing", backing, id]);
        let (stdout, stderr) = text(&out);
        (out.status.code(), stdout, stderr)
    };
    let dir = tempfile::tempdir().unwrap();

    // A backing that another volume used: it keeps its owner after a DESTROY.
    let taken = format!("file://{}/taken", dir.path().display());
    assert_eq!(create("v1", &taken).0, Some(0));
    let out = cluster.weir(&["volume", "destroy", "--agent", &a, "--role", "db", "v1"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let (code, _, stderr) = create("v2", &taken);
    assert_eq!(code, Some(1));
    assert!(stderr.ends_with(&format!("CREATE on {a}: OPERATION_FAILED: backing {taken} belongs to volume v1, not to v2; volume v2 is not created\n")), "{stderr}");

    // A path that holds something else.
    std::fs::create_dir_all(dir.path().join("busy")).unwrap();
    std::fs::write(dir.path().join("busy/report.csv"), "a,b\n").unwrap();
    let busy = format!("file://{}/busy", dir.path().display());
    let (code, _, stderr) = create("v3", &busy);
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&format!("OPERATION_FAILED: backing {busy} exists and is not a Weir volume backing (it holds report.csv)")), "{stderr}");

    // A NameNode nobody runs: refused within agent.volume.backing.timeout.
    let started = Instant::now();
    let (code, _, stderr) = create("v4", "hdfs://127.0.0.1:1/weir/v4");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("OPERATION_FAILED: hdfs://127.0.0.1:1/weir/v4 is unreachable"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());

    // None of them is left in the books; the agent's list agrees.
    let state = cluster.wait_for(Duration::from_secs(10), |s| agent_named(s, "agent0.test").is_some_and(|a| a["volumes"].as_array().is_some_and(|v| v.is_empty())));
    assert_eq!(state["operations"][0]["state"], "OPERATION_FAILED");
    // The agent removes the directory when the broker's DESTROY reaches it,
    // just after the books drop the volume: give it a moment.
    let dir = cluster.agent_dir(0).join("volumes/roles/db/v4");
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.exists(), "the failed volume's directory stayed");
}
