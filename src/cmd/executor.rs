//! `weir executor`: the supervisor each task runs under, when the small
//! `weir-supervisor` binary is not installed next to `weir`. Both run
//! `weir_supervisor::run` (see there for the contract: join the cgroups,
//! switch user, run the task, record its end, outlive the agent); this
//! only parses the same command line with clap.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

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

pub fn main(args: Args) -> Result<ExitCode> {
    let user = match (args.uid, args.gid) {
        (Some(uid), Some(gid)) => Some(weir_supervisor::User { uid, gid, groups: args.groups }),
        _ => None,
    };
    let args = weir_supervisor::Args {
        status_file: args.status_file,
        cgroup_procs: args.cgroup_procs,
        user,
        command: args.command.into_iter().map(Into::into).collect(),
    };
    let code = weir_supervisor::run(&args).map_err(anyhow::Error::msg)?;
    Ok(ExitCode::from(code))
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
