//! The real launcher: task processes, their supervisors and cgroups.
//!
//! Each task runs in its own process group (so a kill reaches every child
//! of a shell command) with its sandbox as working directory and `stdout` /
//! `stderr` files there. `/bin/sh -c VALUE` when the command is a shell
//! command, else the program and its argv. With a supervisor
//! (`weir-supervisor` next to `weir`, else `weir executor`) the group's
//! leader is the supervisor: it joins the task's cgroups before it starts
//! the task, outlives the agent, and records how the task ended in the
//! sandbox, which is what the agent reports.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::signal::{self as nix_signal, Signal as NixSignal};
use nix::unistd::Pid;
use weir_model::{FrameworkId, TaskId};
use weir_proto::v1;

use super::{Exit, ExitFuture, Launched, Launcher, Recovered};
use crate::core::Signal;
use crate::isolation::{self, Usage};

/// Starts tasks as processes, under a supervisor and in cgroups when the
/// agent is configured so.
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    sandboxes: PathBuf,
    volumes: PathBuf,
    supervisor: Option<Supervisor>,
    /// With cgroup isolation: this agent's part of the cgroup tree.
    cgroup_scope: Option<String>,
    /// Whose name tasks run under (see `users`).
    users: crate::users::UserPolicy,
}

impl ProcessLauncher {
    /// Sandboxes go under `WORK_DIR/sandboxes`. Cgroup isolation needs a
    /// supervisor and a machine that lets the agent create cgroups; without
    /// either the agent says so loudly and runs plain processes.
    /// `weir`: the binary whose supervisor tasks run under (see
    /// [`Supervisor::beside`]).
    pub fn new(work_dir: &Path, weir: Option<PathBuf>, mode: isolation::Mode) -> ProcessLauncher {
        let supervisor = weir.as_deref().map(Supervisor::beside);
        match &supervisor {
            Some(Supervisor::Small(path)) => tracing::info!(supervisor = %path.display(), "tasks run under the small supervisor"),
            Some(Supervisor::Weir(path)) => tracing::warn!(
                supervisor = %path.display(),
                "{SMALL_SUPERVISOR} is not installed next to weir: tasks run under `weir executor`, which costs several times more CPU per launch"
            ),
            None => {}
        }
        let cgroup_scope = match (mode, &supervisor) {
            (isolation::Mode::None, _) => {
                tracing::warn!("agent.isolation = none: tasks run as plain processes with no resource limits");
                None
            }
            (isolation::Mode::Cgroups, None) => {
                tracing::error!("cgroup isolation needs task supervisors; tasks run as plain processes with NO resource limits");
                None
            }
            (isolation::Mode::Cgroups, Some(_)) => match isolation::available() {
                Ok(()) => Some(isolation::scope_of(work_dir)),
                Err(reason) => {
                    tracing::error!(%reason, "cgroups are not available; tasks run as plain processes with NO resource limits");
                    None
                }
            },
        };
        ProcessLauncher {
            sandboxes: work_dir.join("sandboxes"),
            volumes: work_dir.join("volumes"),
            supervisor,
            cgroup_scope,
            users: crate::users::UserPolicy::default(),
        }
    }

    /// Tasks run as their users under `policy` (`agent.tasks.*`).
    pub fn with_users(mut self, policy: crate::users::UserPolicy) -> ProcessLauncher {
        if policy.switch && !nix::unistd::geteuid().is_root() {
            tracing::error!("agent.tasks.switch-user is on but the agent does not run as root: tasks of any other user will be refused");
        }
        self.users = policy;
        self
    }

    fn cgroup(&self, framework: &FrameworkId, task: &TaskId) -> Option<String> {
        self.cgroup_scope.as_deref().map(|scope| isolation::name(scope, framework.as_str(), task.as_str()))
    }

    /// How a supervised task ended: its supervisor's record, and with
    /// isolation whether the OOM killer struck (then the cgroup goes).
    fn supervised_exit(&self, framework: &FrameworkId, task: &TaskId, record: Option<ExitRecord>) -> Exit {
        let limitation = self.cgroup(framework, task).and_then(|name| {
            let oom = isolation::oom_message(&name);
            isolation::destroy(&name);
            oom
        });
        match record {
            Some(ExitRecord { error: Some(error), .. }) => Exit::NotStarted { error },
            Some(r) => Exit::Ended { code: r.code, signal: r.signal, limitation },
            None => Exit::Ended { code: None, signal: None, limitation },
        }
    }
}

impl Launcher for ProcessLauncher {
    fn isolation(&self) -> &'static str {
        if self.cgroup_scope.is_some() { "cgroups" } else { "none" }
    }

    fn spawn(&self, agent_id: &str, framework: &FrameworkId, task: &TaskId, info: &v1::TaskInfo) -> Result<Launched, String> {
        // Who it runs as is settled before anything is made for it.
        let request = crate::users::Request {
            user: info.command.as_ref().map(|c| c.user.as_str()).unwrap_or_default(),
            principal: &info.principal,
            asks_for_root: weir_model::task::asks_for_root(&info.labels),
        };
        let user = crate::users::resolve(&self.users, request)?;
        let cgroup_procs = match self.cgroup(framework, task) {
            Some(name) => {
                let resources = weir_proto::convert::resources_from_proto("task.resources", &info.resources)
                    .map(|r| r.total())
                    .unwrap_or_default();
                isolation::create(&name, &resources).map_err(|e| format!("cannot isolate the task: {e}"))?
            }
            None => Vec::new(),
        };
        let ctx = LaunchContext {
            agent_id: agent_id.to_owned(),
            sandboxes: self.sandboxes.clone(),
            volumes: self.volumes.clone(),
            supervisor: self.supervisor.clone(),
            user,
        };
        let started = spawn(&ctx, framework, task, info, &cgroup_procs).map_err(|e| e.to_string())?;
        let Started { pid, sandbox, mut child, notes } = started;
        let exit: ExitFuture = if self.supervisor.is_some() {
            let this = self.clone();
            let (framework, task, sandbox) = (framework.clone(), task.clone(), sandbox.clone());
            Box::pin(async move {
                let supervisor = child.wait().await.ok().map(exit_of);
                remove_secrets(&sandbox);
                let record = read_exit(&sandbox).or(Some(without_record(supervisor)));
                this.supervised_exit(&framework, &task, record)
            })
        } else {
            let sandbox = sandbox.clone();
            Box::pin(async move {
                let (code, signal) = child.wait().await.map(exit_of).unwrap_or((None, None));
                remove_secrets(&sandbox);
                Exit::Ended { code, signal, limitation: None }
            })
        };
        Ok(Launched { pid, sandbox, exit, notes })
    }

    fn signal(&self, pid: u32, sig: Signal) {
        signal(pid, sig)
    }

    fn recover(&self, framework: &FrameworkId, task: &TaskId, pid: u32, sandbox: &Path) -> Recovered {
        if let Some(record) = read_exit(sandbox) {
            remove_secrets(sandbox);
            return Recovered::Ended(self.supervised_exit(framework, task, Some(record)));
        }
        if !supervisor_alive(pid, sandbox) {
            remove_secrets(sandbox);
            return Recovered::Vanished(self.supervised_exit(framework, task, None));
        }
        // Not our child: poll until it is gone, then read its record.
        let this = self.clone();
        let (framework, task, sandbox) = (framework.clone(), task.clone(), sandbox.to_owned());
        Recovered::Running(Box::pin(async move {
            while supervisor_alive(pid, &sandbox) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            remove_secrets(&sandbox);
            // No record: killed with SIGKILL along with its task.
            let record = read_exit(&sandbox).or(Some(without_record(None)));
            this.supervised_exit(&framework, &task, record)
        }))
    }

    fn usage(&self, framework: &FrameworkId, task: &TaskId) -> Option<Usage> {
        self.cgroup(framework, task).map(|name| isolation::usage(&name))
    }
}

/// The small supervisor's file name; the agent looks for it next to `weir`.
pub const SMALL_SUPERVISOR: &str = "weir-supervisor";

/// The program each task runs under: both run the same code
/// (`weir_supervisor::run`) with the same command line, so a task started
/// under one is recovered the same way as under the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervisor {
    /// `weir-supervisor`: std and libc only, half `weir executor`'s CPU
    /// per launch.
    Small(PathBuf),
    /// `weir executor`: the whole `weir` binary (tokio, clap, …), exec'd
    /// once per task; used when the small one is not installed.
    Weir(PathBuf),
}

impl Supervisor {
    /// The small supervisor when it is installed next to `weir`, else
    /// `weir executor`.
    pub fn beside(weir: &Path) -> Supervisor {
        use std::os::unix::fs::PermissionsExt;
        let small = weir.with_file_name(SMALL_SUPERVISOR);
        match std::fs::metadata(&small) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Supervisor::Small(small),
            _ => Supervisor::Weir(weir.to_owned()),
        }
    }

    fn command(&self) -> tokio::process::Command {
        match self {
            Supervisor::Small(path) => tokio::process::Command::new(path),
            Supervisor::Weir(weir) => {
                let mut c = tokio::process::Command::new(weir);
                c.arg("executor");
                c
            }
        }
    }
}

/// What the launcher knows of the agent, for the task's environment.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    pub agent_id: String,
    pub sandboxes: PathBuf,
    /// `WORK_DIR/volumes`: where the volumes a task mounts live.
    pub volumes: PathBuf,
    /// What each task runs under (so tasks outlive the agent); `None` runs
    /// tasks as direct children.
    pub supervisor: Option<Supervisor>,
    /// Who the task runs as; `None`: the agent's own user.
    pub user: Option<crate::users::TaskUser>,
}

/// Where a supervisor records how its task ended.
pub const STATUS_FILE: &str = ".weir-exit.json";

/// How a supervised task ended, as its supervisor recorded it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ExitRecord {
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The supervisor's record for a sandbox, if it wrote one (and it parses).
pub fn read_exit(sandbox: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(sandbox.join(STATUS_FILE)).ok()?;
    if bytes.len() > 4096 {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// A task's end when its supervisor left no record: the supervisor's own
/// exit code mirrors the task's (it exits so when the record cannot be
/// written, a full disk); killed by a signal, it took the task with it
/// (SIGKILL to the group, say), and so did an end we could not read.
pub fn without_record(supervisor: Option<(Option<i32>, Option<i32>)>) -> ExitRecord {
    match supervisor {
        Some((Some(code), _)) => ExitRecord { code: Some(code), signal: None, error: None },
        Some((None, Some(signal))) => ExitRecord { code: None, signal: Some(signal), error: None },
        _ => ExitRecord { code: None, signal: Some(9), error: None },
    }
}

/// Whether `pid` is still the supervisor of `sandbox` (and not a process
/// that reused its pid).
pub fn supervisor_alive(pid: u32, sandbox: &Path) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    // Signal 0 only asks whether the pid exists (EPERM: it does, as
    // another user's process, so the command line decides).
    if matches!(nix_signal::kill(Pid::from_raw(raw), None), Err(Errno::ESRCH)) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
    let needle = sandbox.join(STATUS_FILE);
    !zombie && String::from_utf8_lossy(&cmdline).contains(&*needle.to_string_lossy())
}

/// A started task: its pid, its sandbox, and the handle to wait on.
pub struct Started {
    pub pid: u32,
    pub sandbox: PathBuf,
    pub child: tokio::process::Child,
    /// Said in the RUNNING update (a volume linked, not mounted).
    pub notes: Vec<String>,
}

/// Picks a fresh sandbox directory: `<root>/<framework>/<task>`, or
/// `<task>.<n>` when an earlier run of the same task id left one behind.
fn sandbox_path(root: &Path, framework: &FrameworkId, task: &TaskId) -> PathBuf {
    let base = root.join(framework.as_str());
    let first = base.join(task.as_str());
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| base.join(format!("{}.{n}", task.as_str())))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// `cgroup_procs`: the task's cgroup files its supervisor joins first
/// (empty without isolation; only honoured with a supervisor).
pub fn spawn(
    ctx: &LaunchContext,
    framework: &FrameworkId,
    task: &TaskId,
    info: &v1::TaskInfo,
    cgroup_procs: &[PathBuf],
) -> std::io::Result<Started> {
    let sandbox = sandbox_path(&ctx.sandboxes, framework, task);
    std::fs::create_dir_all(&sandbox)?;
    let notes = crate::volumes::mount_volumes(&ctx.volumes, &sandbox, info).map_err(std::io::Error::other)?;
    let stdout = std::fs::File::create(sandbox.join("stdout"))?;
    let stderr = std::fs::File::create(sandbox.join("stderr"))?;
    // The task's user owns its sandbox (and writes there); the supervisor's
    // status file is the agent's to write, as root.
    if let Some(u) = &ctx.user {
        let (uid, gid) = (Some(nix::unistd::Uid::from_raw(u.uid)), Some(nix::unistd::Gid::from_raw(u.gid)));
        for path in [sandbox.clone(), sandbox.join("stdout"), sandbox.join("stderr")] {
            nix::unistd::chown(&path, uid, gid).map_err(|e| std::io::Error::other(format!("cannot give {} to user {}: {e}", path.display(), u.name)))?;
        }
    }
    let secrets = match write_secrets(&sandbox, &info.secrets, ctx.user.as_ref()) {
        Ok(dir) => dir,
        Err(e) => {
            crate::volumes::unmount_under(&sandbox);
            return Err(e);
        }
    };
    let command = info.command.clone().unwrap_or_default();
    let argv: Vec<String> = if command.shell {
        vec!["/bin/sh".to_owned(), "-c".to_owned(), command.value.clone()]
    } else {
        let mut argv = if command.arguments.is_empty() { vec![command.value.clone()] } else { command.arguments.clone() };
        if !command.value.is_empty() {
            argv[0] = command.value.clone();
        }
        argv
    };
    let mut cmd = match &ctx.supervisor {
        Some(supervisor) => {
            let mut c = supervisor.command();
            c.arg("--status-file").arg(sandbox.join(STATUS_FILE));
            for procs in cgroup_procs {
                c.arg("--cgroup-procs").arg(procs);
            }
            if let Some(u) = &ctx.user {
                let groups: Vec<String> = u.groups.iter().map(u32::to_string).collect();
                c.arg("--uid").arg(u.uid.to_string()).arg("--gid").arg(u.gid.to_string()).arg("--groups").arg(groups.join(","));
            }
            c.arg("--").args(&argv);
            c
        }
        None => {
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            if let Some(u) = ctx.user.clone() {
                // SAFETY: between fork and exec only setgroups, setgid and
                // setuid run, which are async-signal-safe.
                unsafe {
                    c.pre_exec(move || crate::users::become_user(u.uid, u.gid, &u.groups));
                }
            }
            c
        }
    };
    cmd.current_dir(&sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    // The agent's own credentials, if it was given any in its environment
    // (WEIR_TOKEN), are not the task's.
    cmd.env_remove("WEIR_TOKEN");
    for (k, v) in &command.environment {
        cmd.env(k, v);
    }
    if let Some(dir) = &secrets {
        cmd.env(weir_model::task::SECRETS_DIR_ENV, dir);
    }
    cmd.env("WEIR_TASK_ID", task.as_str())
        .env("WEIR_FRAMEWORK_ID", framework.as_str())
        .env("WEIR_AGENT_ID", &ctx.agent_id)
        .env("WEIR_SANDBOX", &sandbox)
        .env("MESOS_SANDBOX", &sandbox);
    if let Some(u) = &ctx.user {
        cmd.env("USER", &u.name).env("LOGNAME", &u.name).env("HOME", &u.home);
    }
    if let Ok(resources) = weir_proto::convert::resources_from_proto("task.resources", &info.resources) {
        let ports = resources.total().ports;
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().flat_map(|(b, e)| (b..=e).map(|p| p.to_string())).take(1000).collect();
            for (i, p) in list.iter().enumerate() {
                cmd.env(format!("PORT{i}"), p);
            }
            cmd.env("PORTS", list.join(","));
        }
    }
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            remove_secrets(&sandbox);
            crate::volumes::unmount_under(&sandbox);
            return Err(e);
        }
    };
    let pid = child.id().ok_or_else(|| std::io::Error::other("the process ended before its pid was read"))?;
    Ok(Started { pid, sandbox, child, notes })
}

/// Writes a task's secrets (`TaskInfo.secrets`) into `SANDBOX/.weir-secrets/`,
/// each in a file of its name: the directory 0700, the files 0400, both
/// owned by the task's user (the agent's when it switches none), written
/// before the task starts. Returns the directory, `None` without secrets.
/// Names are checked again here: none may lead out of the directory.
pub fn write_secrets(sandbox: &Path, secrets: &[v1::Secret], user: Option<&crate::users::TaskUser>) -> std::io::Result<Option<PathBuf>> {
    use std::os::unix::fs::DirBuilderExt;
    if secrets.is_empty() {
        return Ok(None);
    }
    weir_proto::convert::check_secrets("task.secrets", secrets).map_err(std::io::Error::other)?;
    let dir = sandbox.join(weir_model::task::SECRETS_DIR);
    // Fails if anything is there already; from here on the directory is ours.
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let written = fill_secrets(&dir, secrets, user);
    if written.is_err() {
        remove_secrets(sandbox);
    }
    written.map(|()| Some(dir))
}

fn fill_secrets(dir: &Path, secrets: &[v1::Secret], user: Option<&crate::users::TaskUser>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for secret in secrets {
        let path = dir.join(&secret.name);
        // create_new: never through a link or over a file put there first.
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(&path)?;
        f.write_all(&secret.value)?;
        if let Some(u) = user {
            std::os::unix::fs::fchown(&f, Some(u.uid), Some(u.gid))
                .map_err(|e| std::io::Error::other(format!("cannot give secret {} to user {}: {e}", secret.name, u.name)))?;
        }
    }
    if let Some(u) = user {
        std::os::unix::fs::chown(dir, Some(u.uid), Some(u.gid))
            .map_err(|e| std::io::Error::other(format!("cannot give {} to user {}: {e}", dir.display(), u.name)))?;
    }
    Ok(())
}

/// Deletes a task's secrets once it has ended (or could not start), so
/// they do not outlive it in a sandbox kept for its logs. No volume is
/// ever mounted there (`validate_container_path` refuses the name), and
/// `remove_dir_all` does not follow a link the task may have put there.
pub fn remove_secrets(sandbox: &Path) {
    let dir = sandbox.join(weir_model::task::SECRETS_DIR);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %dir.display(), error = %e, "cannot delete a task's secrets"),
    }
}

/// Deletes sandboxes under `root` (`<root>/<framework>/<task>`) that were
/// last modified before `older_than`, except those in `keep` (live tasks).
/// Framework directories left empty go too. Returns what was deleted.
pub fn collect_garbage(root: &Path, keep: &std::collections::HashSet<PathBuf>, older_than: std::time::SystemTime) -> Vec<PathBuf> {
    let mut deleted = Vec::new();
    let Ok(frameworks) = std::fs::read_dir(root) else { return deleted };
    for framework in frameworks.flatten() {
        let fw_path = framework.path();
        if !fw_path.is_dir() {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(&fw_path) else { continue };
        for task in tasks.flatten() {
            let path = task.path();
            if keep.contains(&path) {
                continue;
            }
            let old = task.metadata().and_then(|m| m.modified()).is_ok_and(|m| m < older_than);
            // Never `remove_dir_all`: it would follow a live bind mount into
            // a volume's data.
            if old && crate::volumes::remove_sandbox(&path).is_ok() {
                deleted.push(path);
            }
        }
        // Only succeeds when empty.
        let _ = std::fs::remove_dir(&fw_path);
    }
    deleted
}

/// Signals the task's whole process group.
pub fn signal(pid: u32, signal: Signal) {
    let sig = match signal {
        Signal::Term => NixSignal::SIGTERM,
        Signal::Kill => NixSignal::SIGKILL,
    };
    let Ok(pgid) = i32::try_from(pid) else { return };
    // The group may already be gone; that is fine.
    let _ = nix_signal::killpg(Pid::from_raw(pgid), sig);
}

/// Exit code or signal of a finished child.
pub fn exit_of(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    (status.code(), status.signal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_missing_record_is_read_from_the_supervisors_own_status() {
        let ended = |code, signal| ExitRecord { code, signal, error: None };
        assert_eq!(without_record(Some((Some(0), None))), ended(Some(0), None), "a task that succeeded on a full disk");
        assert_eq!(without_record(Some((Some(3), None))), ended(Some(3), None));
        assert_eq!(without_record(Some((None, Some(9)))), ended(None, Some(9)));
        assert_eq!(without_record(None), ended(None, Some(9)));
    }

    fn shell_task(cmd: &str) -> v1::TaskInfo {
        v1::TaskInfo {
            task_id: "t".into(),
            command: Some(v1::CommandInfo { shell: true, value: cmd.into(), ..Default::default() }),
            ..Default::default()
        }
    }

    fn alive_with(marker: &str) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let zombie = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| s.contains(") Z "));
                !zombie && String::from_utf8_lossy(&cmd).replace('\0', " ").contains(marker)
            })
            .count()
    }

    #[test]
    fn the_small_supervisor_is_used_where_it_is_installed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let weir = dir.path().join("weir");
        assert_eq!(Supervisor::beside(&weir), Supervisor::Weir(weir.clone()), "not installed: weir executor");
        let small = dir.path().join(SMALL_SUPERVISOR);
        std::fs::write(&small, "").unwrap();
        assert_eq!(Supervisor::beside(&weir), Supervisor::Weir(weir.clone()), "not executable: weir executor");
        std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(Supervisor::beside(&weir), Supervisor::Small(small));
    }

    #[test]
    fn garbage_collection_keeps_live_and_recent_sandboxes() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |p: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("stdout"), "x").unwrap();
            path
        };
        let (old, live, recent) = (mk("F1/old"), mk("F1/live"), mk("F2/recent"));
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in [&old, &live] {
            std::fs::File::open(p).unwrap().set_modified(past).unwrap();
        }
        let keep = [live.clone()].into_iter().collect();
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(collect_garbage(dir.path(), &keep, cutoff), vec![old.clone()]);
        assert!(!old.exists() && live.exists() && recent.exists());
    }

    #[tokio::test]
    async fn secrets_are_files_of_the_task_and_never_its_environment() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let ctx = LaunchContext { agent_id: "A1".into(), sandboxes: dir.path().to_owned(), volumes: dir.path().join("volumes"), supervisor: None, user: None };
        let mut info = shell_task("cat \"$WEIR_SECRETS_DIR/nm-key\" > got; echo \"$WEIR_SECRETS_DIR\" > dir; env > env.txt");
        info.secrets = vec![v1::Secret { name: "nm-key".into(), value: b"s3cr3t-value".to_vec() }];
        let mut started = spawn(&ctx, &"F1".into(), &"t".into(), &info, &[]).unwrap();
        let secrets = started.sandbox.join(weir_model::task::SECRETS_DIR);
        let (d, f) = (std::fs::metadata(&secrets).unwrap(), std::fs::metadata(secrets.join("nm-key")).unwrap());
        assert_eq!((d.permissions().mode() & 0o777, f.permissions().mode() & 0o777), (0o700, 0o400));
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!((d.uid(), f.uid()), (me, me), "the task's user (the agent's own here)");
        assert_eq!(exit_of(started.child.wait().await.unwrap()), (Some(0), None));
        let read = |name: &str| std::fs::read_to_string(started.sandbox.join(name)).unwrap();
        assert_eq!(read("got"), "s3cr3t-value");
        assert_eq!(read("dir").trim(), secrets.display().to_string());
        assert!(!read("env.txt").contains("s3cr3t"));
        // A name that leads out is refused before anything is written.
        info.secrets[0].name = "../stdout".into();
        assert!(spawn(&ctx, &"F1".into(), &"u".into(), &info, &[]).is_err());

        // Through the launcher: gone when the task ends.
        let launcher = ProcessLauncher::new(dir.path(), None, isolation::Mode::None);
        info.secrets[0].name = "nm-key".into();
        let launched = launcher.spawn("A1", &"F1".into(), &"v".into(), &info).unwrap();
        assert!(launched.sandbox.join(weir_model::task::SECRETS_DIR).exists() || launched.sandbox.join("got").exists());
        launched.exit.await;
        assert!(!launched.sandbox.join(weir_model::task::SECRETS_DIR).exists());
        assert_eq!(std::fs::read_to_string(launched.sandbox.join("got")).unwrap(), "s3cr3t-value");
    }

    #[tokio::test]
    async fn exit_codes_output_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = LaunchContext { agent_id: "A1".into(), sandboxes: dir.path().to_owned(), volumes: dir.path().join("volumes"), supervisor: None, user: None };
        let info = shell_task("echo out $WEIR_TASK_ID; echo err >&2; exit 3");
        let mut started = spawn(&ctx, &"F1".into(), &"t".into(), &info, &[]).unwrap();
        let status = started.child.wait().await.unwrap();
        assert_eq!(exit_of(status), (Some(3), None));
        assert_eq!(std::fs::read_to_string(started.sandbox.join("stdout")).unwrap(), "out t\n");
        assert_eq!(std::fs::read_to_string(started.sandbox.join("stderr")).unwrap(), "err\n");
        // A second run of the same task id gets a fresh sandbox.
        let again = spawn(&ctx, &"F1".into(), &"t".into(), &info, &[]).unwrap();
        assert_ne!(again.sandbox, started.sandbox);
        let missing = v1::TaskInfo {
            command: Some(v1::CommandInfo { shell: false, value: "/no/such/program".into(), ..Default::default() }),
            ..shell_task("")
        };
        assert!(spawn(&ctx, &"F1".into(), &"u".into(), &missing, &[]).is_err());
    }

    #[tokio::test]
    async fn term_reaches_the_whole_group_and_kill_ends_a_stubborn_one() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = LaunchContext { agent_id: "A1".into(), sandboxes: dir.path().to_owned(), volumes: dir.path().join("volumes"), supervisor: None, user: None };
        let marker = format!("weir-launcher-test-{}", std::process::id());
        // The shell starts a child; TERM to the group must reach it too.
        let info = shell_task(&format!("sleep 60 # {marker}-a & wait"));
        let mut started = spawn(&ctx, &"F1".into(), &"group".into(), &info, &[]).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(alive_with(&format!("{marker}-a")) >= 1);
        signal(started.pid, Signal::Term);
        let status = started.child.wait().await.unwrap();
        assert_eq!(exit_of(status).1, Some(15));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(alive_with(&format!("{marker}-a")), 0, "the child of the shell survived");

        let info = shell_task(&format!("trap '' TERM; sleep 60 # {marker}-b"));
        let mut started = spawn(&ctx, &"F1".into(), &"stubborn".into(), &info, &[]).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal(started.pid, Signal::Term);
        let early = tokio::time::timeout(Duration::from_millis(500), started.child.wait()).await;
        assert!(early.is_err(), "TERM was ignored, so it must still run");
        signal(started.pid, Signal::Kill);
        let status = started.child.wait().await.unwrap();
        assert_eq!(exit_of(status).1, Some(9));
    }
}
