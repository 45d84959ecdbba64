//! The supervisor each task runs under: `weir-supervisor` (a small binary
//! found next to `weir`) and `weir executor` (the fallback) both run this.
//!
//! The agent starts it as the leader of a new process group; it joins the
//! task's cgroups, starts the task in that same group (as the task's user
//! when asked), waits for it and records how it ended in a status file
//! (write, fsync, rename), so an agent that was down at the time still
//! learns the task's true exit status. It outlives the agent: nothing ties
//! it to the agent's process.
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
//!
//! Only std and libc: it is exec'd once per task, and everything it links
//! and initialises is paid on every launch.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};

/// How it is called; the agent builds this command line.
pub const USAGE: &str = "usage: weir-supervisor --status-file FILE [--cgroup-procs FILE]... [--uid UID --gid GID [--groups GID,...]] -- CMD [ARG]...";

/// Exit status when a cgroup could not be joined (the task never ran).
pub const CANNOT_ISOLATE: u8 = 126;
/// Exit status when the command could not be started.
pub const CANNOT_START: u8 = 127;

/// The user a task runs as, the supervisor staying root to join cgroups
/// and record the exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Where to record the task's exit status.
    pub status_file: PathBuf,
    /// `cgroup.procs` files to join before the task starts (one per
    /// controller on cgroup v1).
    pub cgroup_procs: Vec<PathBuf>,
    pub user: Option<User>,
    /// The task's program and arguments.
    pub command: Vec<OsString>,
}

impl Args {
    /// Parses the arguments after the program name: the options (`--name
    /// VALUE` or `--name=VALUE`), then `--` and the command.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
        let mut args = args.into_iter();
        let mut status_file = None;
        let mut cgroup_procs = Vec::new();
        let (mut uid, mut gid, mut groups) = (None, None, Vec::new());
        loop {
            let Some(arg) = args.next() else { return Err("no `--` before the task's command".to_owned()) };
            if arg == "--" {
                break;
            }
            let bytes = arg.as_bytes();
            let (name, inline) = match bytes.iter().position(|b| *b == b'=') {
                Some(i) => (&bytes[..i], Some(OsStr::from_bytes(&bytes[i + 1..]).to_owned())),
                None => (bytes, None),
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"));
            match name.as_str() {
                "--status-file" => status_file = Some(PathBuf::from(value()?)),
                "--cgroup-procs" => cgroup_procs.push(PathBuf::from(value()?)),
                "--uid" => uid = Some(number(&name, &value()?)?),
                "--gid" => gid = Some(number(&name, &value()?)?),
                "--groups" => {
                    let list = value()?;
                    let list = list.to_string_lossy();
                    groups = list.split(',').filter(|g| !g.is_empty()).map(|g| number(&name, OsStr::new(g))).collect::<Result<_, _>>()?;
                }
                _ => return Err(format!("unknown option {:?}", arg)),
            }
        }
        let command: Vec<OsString> = args.collect();
        if command.is_empty() {
            return Err("no command after `--`".to_owned());
        }
        let status_file = status_file.ok_or("--status-file is required")?;
        let user = match (uid, gid) {
            (Some(uid), Some(gid)) => Some(User { uid, gid, groups }),
            (None, None) if groups.is_empty() => None,
            _ => return Err("--uid and --gid go together (and --groups needs them)".to_owned()),
        };
        Ok(Args { status_file, cgroup_procs, user, command })
    }
}

fn number(option: &str, value: &OsStr) -> Result<u32, String> {
    value.to_str().and_then(|v| v.trim().parse().ok()).ok_or_else(|| format!("{option}: {value:?} is not a number"))
}

/// How the task ended, as recorded in the status file. The agent reads it
/// as JSON: `{"code":N,"signal":N}` (either may be null) or `{"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ended { code: Option<i32>, signal: Option<i32> },
    NotStarted { error: String },
}

impl Outcome {
    pub fn to_json(&self) -> String {
        let opt = |v: Option<i32>| v.map_or_else(|| "null".to_owned(), |n| n.to_string());
        match self {
            Outcome::Ended { code, signal } => format!("{{\"code\":{},\"signal\":{}}}", opt(*code), opt(*signal)),
            Outcome::NotStarted { error } => format!("{{\"error\":{}}}", json_string(error)),
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Records `outcome` in `path`: written to a temporary file beside it,
/// fsync'd, then renamed, so a reader sees a whole record or none.
pub fn record(path: &Path, outcome: &Outcome) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| with_path(e, "creating", &tmp))?;
    f.write_all(outcome.to_json().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).map_err(|e| with_path(e, "renaming to", path))
}

fn with_path(e: std::io::Error, doing: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

/// Says something on stderr, which may be a file on a full disk: never
/// panics (eprintln! would, and exit 101 in place of the task's status).
pub fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "weir supervisor: {message}");
}

extern "C" fn note_signal(_: libc::c_int) {}

/// TERM and INT reach the whole group; the supervisor notes them and stays.
fn catch_term_and_int() -> std::io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler does nothing, so it is async-signal-safe; the
        // sigaction struct is fully initialised (zeroed, then set).
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Becomes `user`: groups and gid while still privileged, then uid. For a
/// child between fork and exec: only async-signal-safe calls.
fn become_user(user: &User) -> std::io::Result<()> {
    let groups: &[libc::gid_t] = &user.groups;
    // SAFETY: plain system calls on valid pointers and lengths; nothing is
    // allocated.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 || libc::setgid(user.gid) != 0 || libc::setuid(user.uid) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs the task to its end and records how it ended; returns the
/// supervisor's own exit status. `Err` only when the record of a task that
/// never started could not be written (the agent then reads the status).
pub fn run(args: &Args) -> Result<u8, String> {
    catch_term_and_int().map_err(|e| format!("catching SIGTERM and SIGINT: {e}"))?;
    // Join the task's cgroups first: the task inherits them and never runs
    // outside its limits.
    for procs in &args.cgroup_procs {
        if let Err(e) = std::fs::write(procs, std::process::id().to_string()) {
            let outcome = Outcome::NotStarted { error: format!("cannot join cgroup {}: {e}", procs.display()) };
            record(&args.status_file, &outcome).map_err(|e| e.to_string())?;
            return Ok(CANNOT_ISOLATE);
        }
    }
    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    if let Some(user) = args.user.clone() {
        // SAFETY: between fork and exec only setgroups, setgid and setuid
        // run, which are async-signal-safe (the groups were copied before).
        unsafe {
            command.pre_exec(move || become_user(&user));
        }
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let outcome = Outcome::NotStarted { error: format!("cannot start {:?}: {e}", args.command[0]) };
            record(&args.status_file, &outcome).map_err(|e| e.to_string())?;
            return Ok(CANNOT_START);
        }
    };
    let status = loop {
        match child.wait() {
            Ok(status) => break status,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("waiting for the task: {e}")),
        }
    };
    let (code, signal) = (status.code(), status.signal());
    if let Err(e) = record(&args.status_file, &Outcome::Ended { code, signal }) {
        // The task has ended all the same: say so through our own status.
        say(&format!("cannot record the task's exit status: {e}"));
    }
    Ok(match (code, signal) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_agents_command_line_parses() {
        let args = Args::parse(os(&[
            "--status-file",
            "/s/.weir-exit.json",
            "--cgroup-procs",
            "/cg/memory/t/cgroup.procs",
            "--cgroup-procs=/cg/cpu/t/cgroup.procs",
            "--uid",
            "1000",
            "--gid",
            "1001",
            "--groups",
            "4,27",
            "--",
            "/bin/sh",
            "-c",
            "--uid 0",
        ]))
        .unwrap();
        assert_eq!(args.status_file, PathBuf::from("/s/.weir-exit.json"));
        assert_eq!(args.cgroup_procs, vec![PathBuf::from("/cg/memory/t/cgroup.procs"), PathBuf::from("/cg/cpu/t/cgroup.procs")]);
        assert_eq!(args.user, Some(User { uid: 1000, gid: 1001, groups: vec![4, 27] }));
        assert_eq!(args.command, os(&["/bin/sh", "-c", "--uid 0"]), "what follows -- is the task's, untouched");
        let empty_groups = Args::parse(os(&["--status-file", "f", "--uid", "5", "--gid", "5", "--groups", "", "--", "true"])).unwrap();
        assert_eq!(empty_groups.user, Some(User { uid: 5, gid: 5, groups: vec![] }));
    }

    #[test]
    fn a_bad_command_line_says_what_is_wrong() {
        let err = |a: &[&str]| Args::parse(os(a)).unwrap_err();
        assert!(err(&["--status-file", "f"]).contains("no `--`"));
        assert!(err(&["--status-file", "f", "true"]).contains("unknown option \"true\""));
        assert!(err(&["--status-file", "f", "--"]).contains("no command"));
        assert!(err(&["--", "true"]).contains("--status-file is required"));
        assert!(err(&["--status-file", "f", "--uid", "1", "--", "true"]).contains("go together"));
        assert!(err(&["--status-file", "f", "--uid", "x", "--gid", "1", "--", "true"]).contains("not a number"));
        assert!(err(&["--status-file"]).contains("needs a value"));
        assert!(err(&["--bogus", "--", "true"]).contains("unknown option"));
    }

    #[test]
    fn records_are_the_json_the_agent_reads() {
        assert_eq!(Outcome::Ended { code: Some(3), signal: None }.to_json(), r#"{"code":3,"signal":null}"#);
        assert_eq!(Outcome::Ended { code: None, signal: Some(9) }.to_json(), r#"{"code":null,"signal":9}"#);
        let error = Outcome::NotStarted { error: "cannot start \"x\\y\":\n\u{1}".into() }.to_json();
        assert_eq!(error, r#"{"error":"cannot start \"x\\y\":\n\u0001"}"#);
    }

    fn run_in(dir: &Path, command: &[&str]) -> (u8, Option<String>) {
        let status_file = dir.join(".weir-exit.json");
        let args = Args { status_file: status_file.clone(), cgroup_procs: Vec::new(), user: None, command: os(command) };
        let code = run(&args).unwrap();
        (code, std::fs::read_to_string(&status_file).ok())
    }

    #[test]
    fn the_tasks_end_is_recorded_and_mirrored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run_in(dir.path(), &["/bin/sh", "-c", "exit 3"]), (3, Some(r#"{"code":3,"signal":null}"#.into())));
        assert_eq!(run_in(dir.path(), &["/bin/sh", "-c", "kill -9 $$"]), (137, Some(r#"{"code":null,"signal":9}"#.into())));
        let (code, record) = run_in(dir.path(), &["/no/such/program"]);
        assert_eq!(code, CANNOT_START);
        assert!(record.unwrap().starts_with(r#"{"error":"cannot start \"/no/such/program\": "#));
        assert!(!dir.path().join(".weir-exit.tmp").exists(), "the temporary file is renamed into place");
    }

    #[test]
    fn an_unjoinable_cgroup_means_the_task_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let args = Args {
            status_file: dir.path().join(".weir-exit.json"),
            cgroup_procs: vec![dir.path().join("no-such-cgroup").join("cgroup.procs")],
            user: None,
            command: os(&["/bin/sh", "-c", &format!("touch {}", marker.display())]),
        };
        assert_eq!(run(&args).unwrap(), CANNOT_ISOLATE);
        assert!(std::fs::read_to_string(&args.status_file).unwrap().contains("cannot join cgroup"));
        assert!(!marker.exists());
    }

    /// A full disk (here: a status file that cannot be created) does not
    /// turn a task that succeeded into a failure: the supervisor's own
    /// status still says how the task ended.
    #[test]
    fn an_unwritable_status_file_still_ends_with_the_tasks_status() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        assert_eq!(run_in(&missing, &["/bin/sh", "-c", "exit 0"]), (0, None));
        assert_eq!(run_in(&missing, &["/bin/sh", "-c", "exit 3"]), (3, None));
        assert_eq!(run_in(&missing, &["/bin/sh", "-c", "kill -9 $$"]), (137, None));
    }
}
