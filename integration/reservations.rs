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

    // The volume lives outside the sandboxes.
    let volume_dir = cluster.agent_dir(0).join("volumes/roles/db/vol1");
    assert!(volume_dir.is_dir(), "{} missing", volume_dir.display());

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
