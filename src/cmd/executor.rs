//! `weir executor`: the small supervisor each task runs under.
//!
//! The agent starts it as the leader of a new process group; it starts the
//! task in that same group, waits for it and records how it ended in a
//! status file (write, fsync, rename), so an agent that was down at the
//! time still learns the task's true exit status. It outlives the agent:
//! nothing ties it to the agent's process.
//!
//! Its own exit status mirrors the task's (the code, or 128 + the signal),
//! and it exits so even when the status file cannot be written (a full
//! disk): the agent then reads the task's end from the supervisor's status
//! instead of taking the missing record for a SIGKILL. Nothing it says on
//! stderr (a file on that same full disk) may panic.
//!
//! SIGTERM and SIGINT sent to the group reach the task; the supervisor
//! itself only notes them (a no-op handler, reset to default in the task by
//! exec), so it stays to record the outcome.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to record the task's exit status.
    #[arg(long, value_name = "FILE")]
    status_file: PathBuf,
    /// A cgroup's `cgroup.procs` file to join before the task starts
    /// (repeatable; one per controller on cgroup v1).
    #[arg(long = "cgroup-procs", value_name = "FILE")]
    cgroup_procs: Vec<PathBuf>,
    /// Run the task as this uid (with --gid and --groups), the supervisor
    /// staying root to join cgroups and record the exit.
    #[arg(long, requires = "gid")]
    uid: Option<u32>,
    #[arg(long, requires = "uid")]
    gid: Option<u32>,
    /// Supplementary groups of the task's user, comma-separated gids.
    #[arg(long, value_delimiter = ',', requires = "uid")]
    groups: Vec<u32>,
    /// The task's program and arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

extern "C" fn note_signal(_: std::ffi::c_int) {}

pub fn main(args: Args) -> Result<ExitCode> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler does nothing, so it is async-signal-safe, and
        // no other code of this process installs handlers.
        unsafe { signal(sig, SigHandler::Handler(note_signal)) }.with_context(|| format!("catching {sig}"))?;
    }
    // Join the task's cgroups first: the task inherits them and never runs
    // outside its limits.
    for procs in &args.cgroup_procs {
        if let Err(e) = std::fs::write(procs, std::process::id().to_string()) {
            let record = serde_json::json!({ "error": format!("cannot join cgroup {}: {e}", procs.display()) });
            record_status(&args.status_file, &record)?;
            return Ok(ExitCode::from(126));
        }
    }
    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    if let (Some(uid), Some(gid)) = (args.uid, args.gid) {
        let groups = args.groups.clone();
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only setgroups, setgid and setuid
        // run, which are async-signal-safe.
        unsafe {
            command.pre_exec(move || weir_agent::users::become_user(uid, gid, &groups));
        }
    }
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let record = serde_json::json!({ "error": format!("cannot start {:?}: {e}", args.command[0]) });
            record_status(&args.status_file, &record)?;
            return Ok(ExitCode::from(127));
        }
    };
    let status = loop {
        match child.wait() {
            Ok(status) => break status,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("waiting for the task"),
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let record = serde_json::json!({ "code": status.code(), "signal": status.signal() });
    if let Err(e) = record_status(&args.status_file, &record) {
        // The task has ended all the same: say so through our own status.
        // Our stderr is a file in the sandbox, on the disk that is full:
        // eprintln! would panic there and exit 101 in place of the task's
        // status (the testbed's long run saw exactly that).
        let _ = writeln!(std::io::stderr(), "weir executor: cannot record the task's exit status: {e:#}");
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        _ => ExitCode::from(1),
    })
}

fn record_status(path: &Path, record: &serde_json::Value) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(record.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk (here: a status file that cannot be created) does not
    /// turn a task that succeeded into a failure: the supervisor's own
    /// status still says how the task ended.
    #[test]
    fn an_unwritable_status_file_still_ends_with_the_tasks_status() {
        let dir = tempfile::tempdir().unwrap();
        let status_file = dir.path().join("no-such-dir").join("exit.json");
        let run = |cmd: &str| {
            let args = Args { status_file: status_file.clone(), cgroup_procs: Vec::new(), uid: None, gid: None, groups: Vec::new(), command: vec!["/bin/sh".into(), "-c".into(), cmd.into()] };
            main(args).unwrap()
        };
        assert_eq!(run("exit 0"), ExitCode::from(0));
        assert_eq!(run("exit 3"), ExitCode::from(3));
        assert_eq!(run("kill -9 $$"), ExitCode::from(137));
        assert!(!status_file.exists());
    }
}
