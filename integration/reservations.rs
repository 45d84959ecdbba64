//! Dynamic reservations and persistent volumes end to end: a real broker
//! and agent on loopback, driven by `weir reserve`, `weir volume`, `weir
//! run --volume` and `weir status`. Data written into a volume by one task
//! is read back by the next, after the agent is killed with SIGKILL, and
//! after the broker is; a DESTROY deletes it.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Cluster, WEIR};

const SPEC: &str = "cpus:2;mem:1024;disk:4096";

fn text(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn agent_id(cluster: &Cluster) -> String {
    let state = cluster.wait_for(Duration::from_secs(30), |s| s["agents"][0]["connected"] == true);
    state["agents"][0]["id"].as_str().unwrap().to_owned()
}

/// `weir run` in role db with the volume mounted; returns stdout.
fn run_on_volume(cluster: &Cluster, command: &str) -> String {
    let out = cluster.weir(&["run", "--role", "db", "--volume", "vol1", "--cpus", "0.2", "--mem", "32", "--", command]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    stdout
}

#[test]
fn a_volume_keeps_its_data_across_tasks_agent_and_broker_restarts() {
    let mut cluster = Cluster::start(1, SPEC, &[]);
    let agent = agent_id(&cluster);

    // RESERVE, and again with the same id: one reservation.
    let reserve = ["reserve", "--agent", &agent, "--role", "db", "--id", "r1", "cpus:1;mem:256;disk:1024"];
    let out = cluster.weir(&reserve);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, format!("RESERVE on {agent}: OPERATION_FINISHED: reserved cpus:1;mem:256;disk:1024 for role db as r1\n"));
    let out = cluster.weir(&reserve);
    assert_eq!(text(&out).0, format!("RESERVE on {agent}: OPERATION_FINISHED: reservation r1 already exists; nothing done\n"));
    let state = cluster.state();
    assert_eq!(state["agents"][0]["reservations"].as_array().unwrap().len(), 1);

    // CREATE; bad input fails with the reason and changes nothing.
    let create = |extra: &[&str]| {
        let mut args = vec!["volume", "create", "--agent", &agent, "--role", "db", "--reservation", "r1"];
        args.extend_from_slice(extra);
        cluster.weir(&args)
    };
    for (args, reason) in [
        (vec!["--size", "512", "--path", "../../etc", "vol2"], "container_path \"../../etc\" may not hold empty, '.' or '..' components"),
        (vec!["--size=-5", "--path", "data", "vol2"], "create.size: size -5 must be a finite number of MiB above 0"),
        (vec!["--size", "5000", "--path", "data", "vol2"], "reservation r1 has 1024 MiB of disk outside volumes; volume vol2 needs 5000"),
    ] {
        let out = create(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr, format!("CREATE on {agent}: OPERATION_FAILED: {reason}\n"));
    }
    let out = cluster.weir(&["volume", "create", "--agent", "nope", "--role", "db", "--reservation", "r1", "--size", "1", "--path", "d", "v"]);
    assert_eq!(text(&out).1, "CREATE on nope: OPERATION_FAILED: agent nope is not known\n");
    let out = create(&["--size", "512", "--path", "data", "vol1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(text(&out).0, format!("CREATE on {agent}: OPERATION_FINISHED: created volume vol1 of 512 MiB on reservation r1\n"));
    let out = cluster.weir(&["unreserve", "--agent", &agent, "--role", "db", "r1"]);
    assert_eq!(text(&out).1, format!("UNRESERVE on {agent}: OPERATION_FAILED: reservation r1 still holds volumes vol1; destroy them first\n"));

    // The volume lives outside the sandboxes (the agent makes it once it
    // has checkpointed the broker's word).
    let volume_dir = cluster.agent_dir(0).join("volumes/roles/db/vol1");
    support_wait(|| volume_dir.is_dir(), "the volume's directory on the agent");

    // A task writes into it and ends; the next task reads the data back.
    run_on_volume(&cluster, "echo persisted-$$ > data/file && ls -la data/ >&2");
    let written = std::fs::read_to_string(volume_dir.join("file")).expect("the task wrote into the volume");
    assert!(written.starts_with("persisted-"));
    assert_eq!(run_on_volume(&cluster, "cat data/file"), written);

    // `weir status` and `weir volume list` show both, per agent and role.
    let (status, _) = text(&cluster.weir(&["status"]));
    assert!(status.contains("r1") && status.contains("cpus:1;mem:256;disk:1024") && status.contains("vol1"), "{status}");
    let (list, _) = text(&cluster.weir(&["volume", "list"]));
    assert!(list.contains("vol1") && list.contains("512 MiB") && list.contains("data"), "{list}");

    // kill -9 of the agent: it comes back with the volume and the data.
    cluster.agents[0].kill9();
    cluster.add_agent(0, SPEC);
    cluster.wait_for(Duration::from_secs(30), |s| s["agents"][0]["connected"] == true && s["agents"][0]["volumes"][0]["id"] == "vol1");
    assert_eq!(run_on_volume(&cluster, "cat data/file"), written);

    // A changed --resources that no longer holds the reservation is refused
    // by name instead of losing it.
    cluster.agents[0].kill9();
    let refused = Command::new(WEIR)
        .args([
            "agent",
            "--broker",
            &cluster.broker_addr,
            "--listen",
            "127.0.0.1:0",
            "--resources",
            "cpus:2;mem:1024;disk:100",
            "--work-dir",
            cluster.agent_dir(0).to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&refused);
    assert_ne!(refused.status.code(), Some(0));
    assert!(stderr.contains("does not hold the checkpointed reservations r1 (cpus:1;mem:256;disk:1024 for role db) with volume(s) vol1"), "{stderr}");
    cluster.add_agent(0, SPEC);
    cluster.wait_for(Duration::from_secs(30), |s| s["agents"][0]["connected"] == true);

    // kill -9 of the broker: the new one learns the books from the agent.
    cluster.restart_broker();
    let state = cluster.wait_for(Duration::from_secs(30), |s| s["agents"][0]["volumes"][0]["id"] == "vol1");
    assert_eq!(state["agents"][0]["reservations"][0]["id"], "r1");
    assert_eq!(run_on_volume(&cluster, "cat data/file"), written);

    // DESTROY deletes the data; then the reservation can go.
    let out = cluster.weir(&["volume", "destroy", "--agent", &agent, "--role", "db", "vol1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    support_wait(|| !volume_dir.exists(), "the destroyed volume's directory to go");
    let out = cluster.weir(&["unreserve", "--agent", &agent, "--role", "db", "r1"]);
    assert_eq!(text(&out).0, format!("UNRESERVE on {agent}: OPERATION_FINISHED: unreserved r1 (cpus:1;mem:256;disk:1024)\n"));
    let state = cluster.wait_for(Duration::from_secs(10), |s| s["agents"][0]["reservations"].as_array().is_some_and(|r| r.is_empty()));
    assert_eq!(state["agents"][0]["total"]["cpus"], 2.0);
}

fn support_wait(mut pred: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pred() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

mod sdk_driven {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::support::Cluster;
    use super::SPEC;
    use weir_model::{OfferId, ReservationId, ResourceSet, Resources, VolumeId};
    use weir_proto::convert::resources_to_proto;
    use weir_proto::v1;
    use weir_sdk::operations::{create_volume, destroy_volume, finished, launch, mount, reserve};
    use weir_sdk::{Framework, FrameworkConfig};

    async fn subscribe(cluster: &Cluster, name: &str) -> Framework {
        let mut config = FrameworkConfig::new(cluster.broker_addr.clone(), name);
        config.roles = vec!["db".into()];
        config.failover_timeout = Duration::from_secs(60);
        config.reconnect = false;
        Framework::subscribe(config).await.expect("subscribe")
    }

    /// The next event, updates acknowledged on the way.
    async fn next(fw: &mut Framework, deadline: Instant) -> v1::Event {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, fw.next_event()).await.expect("timed out").expect("stream").expect("open");
        if let Some(v1::event::Kind::Update(u)) = &event.kind {
            fw.acknowledge(u.status.as_ref().unwrap()).await.unwrap();
        }
        event
    }

    async fn next_offer(fw: &mut Framework, want_volume: bool) -> v1::Offer {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v1::event::Kind::Offers(offers)) = next(fw, deadline).await.kind {
                for offer in offers.offers {
                    if !want_volume || !offer.volumes.is_empty() {
                        return offer;
                    }
                    fw.decline(&[OfferId::new(offer.id)], Some(Duration::ZERO)).await.unwrap();
                }
            }
        }
    }

    async fn wait_task(fw: &mut Framework, task: &str, state: v1::TaskState) -> v1::TaskStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v1::event::Kind::Update(u)) = next(fw, deadline).await.kind {
                let status = u.status.unwrap();
                if status.task_id == task && status.state == state as i32 {
                    return status;
                }
            }
        }
    }

    async fn wait_statuses(fw: &mut Framework, n: usize) -> Vec<v1::OperationStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < n {
            if let Some(v1::event::Kind::OperationStatus(s)) = next(fw, deadline).await.kind {
                got.push(s);
            }
        }
        got
    }

    fn task(id: &str, cmd: &str, volume: &VolumeId) -> v1::TaskInfo {
        let mut t = v1::TaskInfo {
            task_id: id.into(),
            name: id.into(),
            resources: resources_to_proto(&ResourceSet::parse("cpus(db):0.2;mem(db):32").unwrap()),
            command: Some(v1::CommandInfo { shell: true, value: cmd.into(), ..Default::default() }),
            ..Default::default()
        };
        mount(&mut t, volume, "", false);
        t
    }

    /// A framework's volume is offered to it alone, keeps its data across
    /// tasks (the writer is killed) and goes with DESTROY. Another
    /// framework of the same role is offered the reservation, never the
    /// volume.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frameworks_volume_is_its_own_and_outlives_a_killed_task() {
        let cluster = Cluster::start(1, SPEC, &[]);
        let mut owner = subscribe(&cluster, "owner").await;
        let mut other = subscribe(&cluster, "other").await;
        let stop = Arc::new(AtomicBool::new(false));
        let (saw_volume, saw_reservation) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        let watcher = tokio::spawn({
            let (stop, saw_volume, saw_reservation) = (stop.clone(), saw_volume.clone(), saw_reservation.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let event = match tokio::time::timeout(Duration::from_millis(200), other.next_event()).await {
                        Ok(Ok(Some(event))) => event,
                        Err(_) => continue,
                        // The stream ended: stop rather than spin on it.
                        Ok(_) => break,
                    };
                    if let Some(v1::event::Kind::Offers(offers)) = event.kind {
                        for offer in offers.offers {
                            saw_volume.fetch_or(!offer.volumes.is_empty(), Ordering::Relaxed);
                            if !offer.reservations.is_empty() {
                                saw_reservation.fetch_add(1, Ordering::Relaxed);
                            }
                            other.decline(&[OfferId::new(offer.id)], Some(Duration::from_millis(300))).await.unwrap();
                        }
                    }
                }
            }
        });

        let (reservation, volume) = (ReservationId::new("r1"), VolumeId::new("vol"));
        let offer = next_offer(&mut owner, false).await;
        let ops = vec![
            reserve("op-r", &reservation, &Resources::parse("cpus:1;mem:256;disk:1024").unwrap(), "owner"),
            create_volume("op-c", &volume, &reservation, 512.0, "data", false),
            launch(vec![task("writer", "echo from-the-writer > data/f && sleep 600", &volume)]),
        ];
        owner.accept(&[OfferId::new(offer.id)], ops, Some(Duration::ZERO)).await.unwrap();
        let statuses = wait_statuses(&mut owner, 2).await;
        assert!(statuses.iter().all(finished), "{statuses:?}");
        wait_task(&mut owner, "writer", v1::TaskState::TaskRunning).await;
        let file = cluster.agent_dir(0).join("volumes/roles/db/vol/f");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !file.exists() {
            assert!(Instant::now() < deadline, "the writer never wrote");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        owner.kill(&weir_model::TaskId::new("writer"), None).await.unwrap();
        wait_task(&mut owner, "writer", v1::TaskState::TaskKilled).await;

        // A new task of the same framework reads the data back.
        let offer = next_offer(&mut owner, true).await;
        assert_eq!(offer.volumes[0].id, "vol");
        owner.accept(&[OfferId::new(offer.id)], vec![launch(vec![task("reader", "cat data/f", &volume)])], Some(Duration::ZERO)).await.unwrap();
        wait_task(&mut owner, "reader", v1::TaskState::TaskFinished).await;
        let stdout = cluster.agent_dir(0).join(format!("sandboxes/{}/reader/stdout", owner.id()));
        assert_eq!(std::fs::read_to_string(&stdout).unwrap(), "from-the-writer\n");

        // DESTROY removes the data.
        let offer = next_offer(&mut owner, true).await;
        owner.accept(&[OfferId::new(offer.id)], vec![destroy_volume("op-d", &volume)], Some(Duration::ZERO)).await.unwrap();
        let statuses = wait_statuses(&mut owner, 1).await;
        assert!(finished(&statuses[0]), "{statuses:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while file.parent().unwrap().exists() {
            assert!(Instant::now() < deadline, "the destroyed volume's data is still there");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        stop.store(true, Ordering::Relaxed);
        watcher.await.unwrap();
        assert!(!saw_volume.load(Ordering::Relaxed), "another framework of the role was offered the owner's volume");
        assert!(saw_reservation.load(Ordering::Relaxed) > 0, "the other framework of the role was never offered the reservation");
    }
}

/// Two brokers on free ports electing through ZooKeeper at `zk`, with a
/// short session and the given recovery timeout; each working under `dir`.
/// Returns them and their ports.
fn zk_brokers(zk: &str, dir: &std::path::Path, recovery_timeout: &str) -> (Vec<support::Proc>, Vec<u16>) {
    let recovery = format!("broker.recovery.timeout={recovery_timeout}");
    let ports: Vec<u16> = (0..2).map(|_| support::free_port()).collect();
    let brokers = (0..2)
        .map(|i| {
            let work = dir.join(format!("broker{i}"));
            let listen = format!("127.0.0.1:{}", ports[i]);
            support::spawn_weir(
                &format!("broker{i}"),
                &["broker", "--zk", zk, "--listen", &listen, "--work-dir", work.to_str().unwrap(), "-D", "broker.zk.session.timeout=2s", "-D", &recovery],
                "standing by",
            )
            .0
        })
        .collect();
    (brokers, ports)
}

/// Broker failover with ZooKeeper: the new leader learns the reservation
/// and the volume from the agent's re-registration, and a task after the
/// failover reads what one before it wrote.
#[test]
fn a_volume_survives_a_zookeeper_failover() {
    use support::{spawn_weir, supervisors_in, working_in, signal};
    let server = weir_ha::testing::ZkServer::start();
    let zk = server.url("/weir/volumes");
    let dir = tempfile::tempdir().unwrap();
    let (mut brokers, ports) = zk_brokers(&zk, dir.path(), "20s");
    let agent_dir = dir.path().join("agent0");
    let (_agent, _) = spawn_weir(
        "agent0",
        &["agent", "--broker", &zk, "--listen", "127.0.0.1:0", "--resources", SPEC, "--work-dir", agent_dir.to_str().unwrap(), "--hostname", "agent0.test"],
        "agent",
    );
    let weir = |args: &[&str]| {
        let out = Command::new(WEIR).args(args).args(["--broker", &zk]).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "weir {args:?}\nstdout: {stdout}\nstderr: {stderr}");
        stdout
    };
    let agent = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(WEIR).args(["status", "--json", "--broker", &zk]).output().unwrap();
            let state: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
            if let Some(id) = state.as_ref().and_then(|s| s["agents"][0]["id"].as_str()) {
                break id.to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "the agent never registered");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    weir(&["reserve", "--agent", &agent, "--role", "db", "--id", "r1", "cpus:1;mem:256;disk:1024"]);
    weir(&["volume", "create", "--agent", &agent, "--role", "db", "--reservation", "r1", "--size", "256", "--path", "data", "vol1"]);
    let run = |cmd: &str| {
        let out = Command::new(WEIR)
            .args(["run", "--broker", &zk, "--role", "db", "--volume", "vol1", "--cpus", "0.2", "--mem", "32", "--", cmd])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
        stdout
    };
    run("echo before-failover > data/f");

    // Kill whichever broker leads; the other takes over.
    let contenders = |zk: &str| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(weir_ha::zk::contenders(&weir_ha::ZkAddress::parse(zk).unwrap(), Duration::from_secs(5))).unwrap_or_default()
    };
    let leader = contenders(&zk).into_iter().find(|c| c.leading).expect("a leader");
    let i = ports.iter().position(|p| leader.info.address.ends_with(&format!(":{p}"))).unwrap();
    brokers[i].kill9();
    support_wait_long(
        || {
            let out = Command::new(WEIR).args(["volume", "list", "--broker", &zk]).output().unwrap();
            let now = contenders(&zk).into_iter().find(|c| c.leading).map(|c| c.info.epoch);
            now.is_some_and(|e| e > leader.info.epoch) && text(&out).0.contains("vol1")
        },
        "a new leader that knows the volume",
    );
    assert_eq!(run("cat data/f"), "before-failover\n");
    drop(brokers);
    let d = dir.path().display().to_string();
    for pid in supervisors_in(&d).into_iter().chain(working_in(&d)) {
        signal(-pid, 9);
        signal(pid, 9);
    }
}

fn support_wait_long(mut pred: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pred() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A task that fills its volume past the volume's size is stopped and
/// told why.
#[test]
fn a_task_that_overfills_its_volume_fails_with_the_reason() {
    let cluster = Cluster::start(1, SPEC, &[]);
    let agent = agent_id(&cluster);
    let out = cluster.weir(&["reserve", "--agent", &agent, "--role", "db", "--id", "r1", "cpus:1;mem:256;disk:64"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let out = cluster.weir(&["volume", "create", "--agent", &agent, "--role", "db", "--reservation", "r1", "--size", "1", "--path", "data", "small"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let started = std::time::Instant::now();
    let out = cluster.weir(&["run", "--role", "db", "--volume", "small", "--cpus", "0.2", "--mem", "32", "--", "head -c 3145728 /dev/zero > data/big; sleep 60"]);
    let (_, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("TASK_FAILED: volume small uses 3.0 MiB of its 1 MiB"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(40), "the task was not stopped in time");
}

/// The registry holds reservations and volumes: with the agent down, the
/// leader is killed; the new leader shows the agent's reservation and
/// volume in `/state` (as a missing agent's) before the agent is back, and
/// once it re-registers they are its again and its volume is offered to
/// role db (a task mounts it).
#[test]
fn a_new_leader_knows_reservations_from_the_registry_before_the_agent_returns() {
    use support::{spawn_weir, supervisors_in, working_in, signal};
    let server = weir_ha::testing::ZkServer::start();
    let zk = server.url("/weir/registry-volumes");
    let dir = tempfile::tempdir().unwrap();
    let (mut brokers, ports) = zk_brokers(&zk, dir.path(), "120s");
    let agent_dir = dir.path().join("agent0");
    let agent_args = ["agent", "--broker", &zk, "--listen", "127.0.0.1:0", "--resources", SPEC, "--work-dir", agent_dir.to_str().unwrap(), "--hostname", "agent0.test"];
    let (mut agent_proc, _) = spawn_weir("agent0", &agent_args, "agent");
    let weir = |args: &[&str]| {
        let out = Command::new(WEIR).args(args).args(["--broker", &zk]).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "weir {args:?}\nstdout: {stdout}\nstderr: {stderr}");
        stdout
    };
    let status = || -> Option<serde_json::Value> {
        let out = Command::new(WEIR).args(["status", "--json", "--broker", &zk]).output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let mut agent = String::new();
    support_wait_long(
        || {
            agent = status().and_then(|s| s["agents"][0]["id"].as_str().map(str::to_owned)).unwrap_or_default();
            !agent.is_empty()
        },
        "the agent to register",
    );
    weir(&["reserve", "--agent", &agent, "--role", "db", "--id", "r1", "cpus:1;mem:256;disk:1024"]);
    weir(&["volume", "create", "--agent", &agent, "--role", "db", "--reservation", "r1", "--size", "256", "--path", "data", "vol1"]);

    // The agent goes down first, then the leader.
    agent_proc.kill9();
    let contenders = |zk: &str| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(weir_ha::zk::contenders(&weir_ha::ZkAddress::parse(zk).unwrap(), Duration::from_secs(5))).unwrap_or_default()
    };
    let leader = contenders(&zk).into_iter().find(|c| c.leading).expect("a leader");
    let i = ports.iter().position(|p| leader.info.address.ends_with(&format!(":{p}"))).unwrap();
    brokers[i].kill9();
    let new_port = ports[1 - i];
    let state = || -> serde_json::Value {
        support::http_get(&format!("http://127.0.0.1:{new_port}/state")).ok().and_then(|b| serde_json::from_str(&b).ok()).unwrap_or_default()
    };
    // Before the agent is back: the new leader, still recovering, shows
    // the reservation and the volume as the awaited agent's.
    let mut seen = serde_json::Value::Null;
    support_wait_long(
        || {
            seen = state();
            seen["missing_agents"][0]["id"] == agent.as_str()
        },
        "the new leader to show the missing agent's reservations",
    );
    assert_eq!(seen["broker"]["recovering"], true, "{seen}");
    assert_eq!(seen["missing_agents"][0]["status"], "awaited", "{seen}");
    assert_eq!(seen["missing_agents"][0]["reservations"][0]["id"], "r1", "{seen}");
    assert_eq!(seen["missing_agents"][0]["reservations"][0]["role"], "db", "{seen}");
    assert_eq!(seen["missing_agents"][0]["volumes"][0]["id"], "vol1", "{seen}");
    assert_eq!(seen["agents"].as_array().map(Vec::len), Some(0), "{seen}");

    // The agent returns: the books are its again, recovery ends, and the
    // volume is offered to role db.
    let (_agent_proc, _) = spawn_weir("agent0-again", &agent_args, "agent");
    support_wait_long(
        || {
            seen = state();
            seen["agents"][0]["connected"] == true && seen["broker"]["recovering"] == false
        },
        "the agent to re-register with the new leader",
    );
    assert_eq!(seen["agents"][0]["reservations"][0]["id"], "r1", "{seen}");
    assert_eq!(seen["agents"][0]["volumes"][0]["id"], "vol1", "{seen}");
    assert_eq!(seen["missing_agents"].as_array().map(Vec::len), Some(0), "{seen}");
    let out = Command::new(WEIR)
        .args(["run", "--broker", &zk, "--role", "db", "--volume", "vol1", "--cpus", "0.2", "--mem", "32", "--", "echo ok > data/f && cat data/f"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout, "ok\n");
    drop(brokers);
    let d = dir.path().display().to_string();
    for pid in supervisors_in(&d).into_iter().chain(working_in(&d)) {
        signal(-pid, 9);
        signal(pid, 9);
    }
}
