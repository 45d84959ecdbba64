//! Starts real `weir` processes on loopback for integration tests, and
//! cleans up after them (every child is killed when its handle drops).

#![allow(dead_code)]

pub mod kdc;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");
/// The small supervisor tasks run under (the agent finds it next to `weir`).
pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_weir-supervisor");

/// A child process that is killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.pid(), 15);
        self.child.wait().expect("wait for child")
    }
}

/// Sends signal number `sig` to `pid` (negative: a process group). A
/// process that is already gone is no error here.
pub fn signal(pid: i32, sig: i32) {
    let sig = Signal::try_from(sig).expect("a signal number");
    let _ = kill(Pid::from_raw(pid), sig);
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spawns `weir ARGS…`, waits for a stdout line containing `ready`, and
/// returns the process and that line. Output after that goes to the test's
/// stderr, prefixed with `name`.
pub fn spawn_weir(name: &str, args: &[&str], ready: &str) -> (Proc, String) {
    spawn_weir_env(name, args, ready, &[])
}

/// `weir standalone` on loopback for the YARN tests: every listener on
/// port 0, the agent known as 127.0.0.1 (so node managers stay on
/// loopback), the agent offering `spec`. Callers add their own `-D`s.
pub fn loopback_standalone_args<'a>(work_dir: &'a str, spec: &'a str) -> Vec<&'a str> {
    vec![
        "standalone",
        "--work-dir",
        work_dir,
        "--listen",
        "127.0.0.1:0",
        "--resources",
        spec,
        "-D",
        "agent.listen=127.0.0.1:0",
        "-D",
        "agent.hostname=127.0.0.1",
        "-D",
        "yarn-shim.client.address=127.0.0.1:0",
        "-D",
        "yarn-shim.scheduler.address=127.0.0.1:0",
        "-D",
        "yarn-shim.webapp.address=127.0.0.1:0",
        "-D",
        "yarn-shim.admin.address=127.0.0.1:0",
    ]
}

/// `weir standalone` on loopback (see [`loopback_standalone_args`]) in
/// `work_dir`, offering `spec`, with more `-D KEY=VALUE` settings: the
/// process and the broker's address.
pub fn spawn_loopback_standalone(work_dir: &str, spec: &str, defines: &[&str]) -> (Proc, String) {
    let mut args = loopback_standalone_args(work_dir, spec);
    for d in defines {
        args.extend(["-D", d]);
    }
    let (proc, line) = spawn_weir("standalone", &args, "weir standalone: broker");
    let broker = addr_in(&line);
    (proc, broker)
}

/// The `/state` document of a broker or agent at `address` (`host:port`).
pub fn state_of(address: &str) -> Value {
    let url = format!("http://{address}/state");
    let body = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// `spec` with `{ports}` replaced by two free ports: tests run side by
/// side, and each agent's node manager needs ports of its own (IPC, web).
pub fn spec_with_free_port(spec: &str) -> String {
    let (ipc, web) = (free_port(), free_port());
    spec.replace("{ports}", &format!("ports:[{ipc}-{ipc},{web}-{web}]"))
}

/// `spawn_weir` with more environment variables for the process (and so
/// for the tasks its agent starts, which inherit them).
pub fn spawn_weir_env(name: &str, args: &[&str], ready: &str, envs: &[(&str, &str)]) -> (Proc, String) {
    let mut child = Command::new(WEIR)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {WEIR}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let tag = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{tag}] {line}");
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    let tag = name.to_owned();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[{tag}:out] {line}");
            if !sent && line.contains(&ready) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{name} did not print {:?} within 60 s", "ready line"));
    (Proc { child, name: name.to_owned() }, line)
}

/// The last whitespace-separated word of the first `host:port` in `line`.
pub fn addr_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .map(|w| w.trim_end_matches([',', ')']).to_owned())
        .unwrap_or_else(|| panic!("no 127.0.0.1 address in {line:?}"))
}

pub struct Cluster {
    pub broker: Proc,
    pub broker_addr: String,
    pub agents: Vec<Proc>,
    pub dir: tempfile::TempDir,
}

impl Drop for Cluster {
    /// Tasks outlive their agents by design (they run under supervisors),
    /// so a test that ends early, or kills an agent, must not leave them
    /// behind: kill every process group whose supervisor works in this
    /// cluster's directory.
    fn drop(&mut self) {
        let dir = self.dir.path().display().to_string();
        for pid in pids_with(&dir).into_iter().chain(supervisors_in(&dir)).chain(working_in(&dir)) {
            signal(-pid, 9);
            signal(pid, 9);
        }
    }
}

/// Every process but this one: pid, command line (NULs as spaces), and
/// its `/proc` directory for further reads.
fn processes() -> Vec<(i32, String, PathBuf)> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok().filter(|p| *p != me)?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmd).replace('\0', " "), e.path()))
        })
        .collect()
}

/// Processes whose working directory is under `dir` (tasks run in their
/// sandboxes, even after their supervisor is gone).
pub fn working_in(dir: &str) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, _, proc_dir)| std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd.display().to_string().starts_with(dir)))
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Task supervisors (`weir-supervisor`, or `weir executor` where that is
/// missing; `pids_with` skips both) working under `dir`.
pub fn supervisors_in(dir: &str) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, cmd, _)| (cmd.starts_with(SUPERVISOR) || (cmd.starts_with(WEIR) && cmd.contains(" executor "))) && cmd.contains(dir))
        .map(|(pid, _, _)| pid)
        .collect()
}

impl Cluster {
    /// A broker plus `agents` agents, each with `spec` resources.
    pub fn start(agents: usize, spec: &str, broker_defines: &[&str]) -> Cluster {
        Cluster::start_at("127.0.0.1:0", agents, spec, broker_defines)
    }

    fn spawn_broker(dir: &Path, listen: &str, broker_defines: &[String]) -> (Proc, String) {
        let work = dir.join("broker");
        let mut args = vec!["broker".to_owned(), "--listen".into(), listen.into(), "--work-dir".into(), work.display().to_string()];
        for d in broker_defines {
            args.push("-D".into());
            args.push(d.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (broker, line) = spawn_weir("broker", &args, "listening on");
        (broker, addr_in(&line))
    }

    /// Like `start`, with the broker on a given address (so it can be
    /// restarted in the same place).
    pub fn start_at(listen: &str, agents: usize, spec: &str, broker_defines: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let defines: Vec<String> = broker_defines.iter().map(|d| d.to_string()).collect();
        let (broker, broker_addr) = Cluster::spawn_broker(dir.path(), listen, &defines);
        let mut cluster = Cluster { broker, broker_addr, agents: Vec::new(), dir };
        for i in 0..agents {
            cluster.add_agent(i, spec);
        }
        cluster.wait_for(Duration::from_secs(30), |s| s["agents"].as_array().map_or(0, |a| a.len()) == agents);
        cluster
    }

    /// Kills the broker with SIGKILL and starts a new one on the same
    /// address: everything it knew must come back from agents and frameworks.
    pub fn restart_broker(&mut self) {
        self.broker.kill9();
        let (broker, addr) = Cluster::spawn_broker(self.dir.path(), &self.broker_addr, &[]);
        assert_eq!(addr, self.broker_addr);
        self.broker = broker;
    }

    pub fn agent_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("agent{i}"))
    }

    pub fn add_agent(&mut self, i: usize, spec: &str) {
        self.add_agent_with(i, spec, &[]);
    }

    /// Like `add_agent`, with `-D KEY=VALUE` settings of its own.
    pub fn add_agent_with(&mut self, i: usize, spec: &str, defines: &[&str]) {
        self.add_agent_on(i, spec, &format!("agent{i}.test"), defines);
    }

    /// Like `add_agent_with`, registering under `hostname`.
    pub fn add_agent_on(&mut self, i: usize, spec: &str, hostname: &str, defines: &[&str]) {
        let work = self.agent_dir(i);
        let mut args = vec![
            "agent",
            "--broker",
            &self.broker_addr,
            "--listen",
            "127.0.0.1:0",
            "--resources",
            spec,
            "--work-dir",
            work.to_str().unwrap(),
            "--hostname",
            hostname,
            "-D",
            "agent.kill.grace.period=1s",
            "-D",
            "agent.status.update.retry.interval=500ms",
        ];
        for d in defines {
            args.push("-D");
            args.push(d);
        }
        let (agent, _) = spawn_weir(&format!("agent{i}"), &args, "agent");
        if self.agents.len() > i {
            self.agents[i] = agent;
        } else {
            self.agents.push(agent);
        }
    }

    pub fn state(&self) -> Value {
        state_of(&self.broker_addr)
    }

    /// Polls `/state` until `pred` holds or the timeout passes (then panics
    /// with the last state).
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state();
            if pred(&state) {
                return state;
            }
            if Instant::now() > deadline {
                panic!("condition not reached within {timeout:?}; last state:\n{state:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `weir ARGS…` against this cluster's broker to completion.
    pub fn weir(&self, args: &[&str]) -> std::process::Output {
        let mut full: Vec<&str> = args.to_vec();
        let pos = full.iter().position(|a| *a == "--").unwrap_or(full.len());
        full.insert(pos, "--broker");
        full.insert(pos + 1, &self.broker_addr);
        Command::new(WEIR).args(&full).stdin(Stdio::null()).output().expect("run weir")
    }
}

/// A tiny blocking HTTP/1.1 GET over loopback (keeps the tests free of an
/// HTTP client stack).
pub fn http_get(url: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

/// The body of a chunked HTTP/1.1 response, its chunks joined.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Pids of live processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<i32> {
    processes()
        .into_iter()
        // `weir run -- CMD` carries the marker in its own argv: only the
        // task's processes count.
        .filter(|(_, cmd, _)| !cmd.starts_with(WEIR) && cmd.contains(marker))
        .filter(|(_, _, proc_dir)| !std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z ")))
        .map(|(pid, _, _)| pid)
        .collect()
}

pub fn kill_marked(marker: &str) {
    for pid in pids_with(marker) {
        signal(pid, 9);
    }
}

/// A loopback port that was free a moment ago, from below the kernel's
/// ephemeral range. The daemons a test starts bind most of their ports
/// to 0, so an ephemeral port handed out here could be given to one of
/// them before the task meant to use it binds it (seen in the hadoop
/// file: a node manager's port taken by an HTTP listener, "Address
/// already in use"). One test process never hands a port out twice; it
/// starts at a place of its own so that two processes rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32_768)
        .clamp(LOW + 1_000, 65_536);
    let span = high - LOW;
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let _ = NEXT.compare_exchange(u32::MAX, seed % span, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Every file named `name` under `dir`, recursively (symlinked
/// directories are not followed).
pub fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(files_named(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}

/// The π a job's output prints ("Pi is roughly …").
pub fn pi_in(text: &str) -> f64 {
    let rest = text.split("Pi is roughly ").nth(1).unwrap_or_else(|| panic!("no π in:\n{text}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// `weir` where every user may run it: a hard link (or, across file
/// systems, a copy) in `dir/bin`, with `dir` and `bin` opened to others.
/// Tasks that run as other users (LinuxContainerExecutor's containers
/// run `weir yarn-container`) cannot reach a binary under `/root`, where
/// the test command's target directory lives: name this one in
/// `yarn-shim.weir.binary`, as an operator installs weir where every
/// user can run it.
pub fn weir_for_every_user(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in [dir, bin.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let weir = bin.join("weir");
    if std::fs::hard_link(WEIR, &weir).is_err() {
        std::fs::copy(WEIR, &weir).unwrap();
    }
    std::fs::set_permissions(&weir, std::fs::Permissions::from_mode(0o755)).unwrap();
    weir
}

/// A user made for a test (`useradd`, uid from 1000 up, no home) and
/// removed after it; one left by a test that died is taken over.
pub struct TestUser(pub String);

impl TestUser {
    pub fn create(name: &str) -> TestUser {
        let out = Command::new("useradd").args(["--no-create-home", "--shell", "/usr/sbin/nologin", name]).output().expect("useradd");
        // 9: the user exists (left by an earlier run).
        assert!(out.status.success() || out.status.code() == Some(9), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
        TestUser(name.to_owned())
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}
