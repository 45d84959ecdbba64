//! The `weir` binary as a process: how it ends when what it writes to
//! goes away or fills up.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// `weir conf dump | head -1`, `weir testbed status | head`: when the
/// reader goes away, a tool ends as Unix tools do — killed by SIGPIPE
/// (a shell reports 141), nothing on stderr — instead of panicking in
/// println! ("failed printing to stdout: Broken pipe", status 101).
#[test]
fn a_tool_whose_reader_went_away_ends_quietly_by_sigpipe() {
    let mut child = Command::new(support::WEIR)
        .args(["conf", "dump"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    // The reader is gone before weir writes its first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("weir ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "weir said something on stderr: {stderr}");
    let sigpipe = nix::sys::signal::Signal::SIGPIPE as i32;
    assert_eq!(out.status.signal(), Some(sigpipe), "weir ended with {} (want: killed by SIGPIPE)", out.status);
}

/// The testbed's long run (`fill-disk`): the supervisor of a task that
/// exited 0 could neither write its status file nor its stderr (both on
/// the full sandbox disk), panicked in eprintln! and exited 101, which the
/// agent reported as TASK_FAILED "Command exited with status 101". Its
/// exit status must stay the task's, with stderr on a full device.
#[test]
fn a_supervisor_on_a_full_disk_exits_with_its_tasks_status() {
    let dir = tempfile::tempdir().unwrap();
    // A status file that cannot be created, as on a full disk.
    let status_file = dir.path().join("no-such-dir").join("exit.json");
    for (task, want) in [("exit 0", 0), ("exit 3", 3)] {
        let out = Command::new(support::WEIR)
            .arg("executor")
            .arg("--status-file")
            .arg(&status_file)
            .args(["--", "/bin/sh", "-c", task])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full"))
            .output()
            .expect("weir executor runs");
        assert_eq!(out.status.code(), Some(want), "the supervisor of `{task}` ended with {}", out.status);
    }
}
