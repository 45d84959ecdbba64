//! The `weir` command line as a shell pipeline uses it.

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
