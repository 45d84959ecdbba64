//! `weir yarn-container`: the broker task that holds one YARN container's
//! resources and, once the ApplicationMaster starts the container, runs it.
//! See [`super::handoff`] for the protocol with the node manager.
//!
//! Signals: the agent kills a task by signalling its whole process group,
//! which includes the container's processes, so this process only notes
//! SIGTERM/SIGINT: before a launch it then exits at once; after, it waits
//! for the container to end and reports how it did.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::handoff::{self, ToContainer, ToNm};

/// How long to keep trying to reach the node manager (it is launched in
/// the same offer and may start after this task).
const CONNECT_FOR: Duration = Duration::from_secs(120);

static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn note_terminate(_: nix::libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

fn connect(port: u16) -> std::io::Result<UnixStream> {
    let address = handoff::address(&handoff::socket_name(port))?;
    UnixStream::connect_addr(&address)
}

/// Exit code for a container that ended by `status`.
fn exit_code(code: Option<i32>, signal: Option<i32>) -> ExitCode {
    match (code, signal) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(s)) => ExitCode::from((128 + s).clamp(0, 255) as u8),
        _ => ExitCode::from(1),
    }
}

pub fn main(nm_port: u16, container: &str) -> ExitCode {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe. Failing to install it only costs the
        // graceful stop, so the error is not fatal.
        let _ = unsafe { signal(s, SigHandler::Handler(note_terminate)) };
    }
    let sandbox = std::env::var("WEIR_SANDBOX")
        .ok()
        .or_else(|| std::env::current_dir().ok().map(|d| d.display().to_string()))
        .unwrap_or_else(|| ".".into());
    let deadline = Instant::now() + CONNECT_FOR;
    // Connect, say hello, wait for the launch; reconnect if the node
    // manager goes away before it.
    let (stream, launch) = loop {
        if TERMINATE.load(Ordering::SeqCst) {
            eprintln!("weir yarn-container: {container} stopped before it was started");
            return ExitCode::from(143);
        }
        if Instant::now() > deadline {
            eprintln!("weir yarn-container: no node manager on port {nm_port} for {CONNECT_FOR:?}; giving up on {container}");
            return ExitCode::from(1);
        }
        let Ok(mut stream) = connect(nm_port) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let hello = ToNm::Hello { container: container.to_owned(), sandbox: sandbox.clone(), pid: std::process::id() };
        if stream.write_all(&handoff::encode(&hello)).is_err() {
            continue;
        }
        let Ok(reader) = stream.try_clone() else { continue };
        let rx = read_messages(reader);
        match wait_for_launch(&rx) {
            Some(Ok(launch)) => break (stream, (launch, rx)),
            Some(Err(reason)) => {
                eprintln!("weir yarn-container: {container} will not be started: {reason}");
                return ExitCode::from(1);
            }
            None if TERMINATE.load(Ordering::SeqCst) => continue,
            None => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
    };
    let ((script, work_dir), rx) = launch;
    let mut stream = stream;
    let child = std::process::Command::new("/bin/bash").arg(&script).current_dir(&work_dir).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir yarn-container: cannot run {script}: {e}");
            let _ = stream.write_all(&handoff::encode(&ToNm::Exited { code: Some(127), signal: None }));
            return ExitCode::from(127);
        }
    };
    let _ = stream.write_all(&handoff::encode(&ToNm::Started { pid: child.id() }));
    let mut stop_at: Option<Instant> = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                eprintln!("weir yarn-container: waiting for {container}: {e}");
                break None;
            }
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(ToContainer::Stop { grace_ms })) if stop_at.is_none() => {
                // Our group: the container's processes, this process and
                // the agent's supervisor (both only note SIGTERM).
                let _ = nix::sys::signal::killpg(nix::unistd::getpgrp(), nix::sys::signal::Signal::SIGTERM);
                stop_at = Some(Instant::now() + Duration::from_millis(grace_ms));
            }
            _ => {}
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            kill_group_but_us();
            stop_at = None;
        }
    };
    let (code, signal) = status.map_or((None, None), |s| (s.code(), s.signal()));
    let _ = stream.write_all(&handoff::encode(&ToNm::Exited { code, signal }));
    exit_code(code.or(if status.is_none() { Some(1) } else { None }), signal)
}

/// SIGKILLs every process of our process group except this one and its
/// parent (the agent's supervisor, which must record the exit).
fn kill_group_but_us() {
    use nix::unistd::{getpgrp, getpid, getppid};
    let (me, parent, group) = (getpid().as_raw(), getppid().as_raw(), getpgrp().as_raw());
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid == me || pid == parent {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the ")" that ends the command: state ppid pgrp …
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let pgrp = rest.split_whitespace().nth(2).and_then(|g| g.parse::<i32>().ok());
        if pgrp == Some(group) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

type Incoming = mpsc::Receiver<Result<ToContainer, String>>;

/// Reads messages on a thread; the channel closes with the connection.
fn read_messages(stream: UnixStream) -> Incoming {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = Vec::new();
            match (&mut reader).take(handoff::MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if tx.send(handoff::decode::<ToContainer>(&line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Some(Ok(script, dir)) to launch, Some(Err) to give up, None when the
/// connection ended or a signal came first.
fn wait_for_launch(rx: &Incoming) -> Option<Result<(String, String), String>> {
    loop {
        if TERMINATE.load(Ordering::SeqCst) {
            return None;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(ToContainer::Launch { script, work_dir })) => return Some(Ok((script, work_dir))),
            Ok(Ok(ToContainer::Abandon { reason })) => return Some(Err(reason)),
            Ok(Ok(ToContainer::Stop { .. })) => return Some(Err("stopped before it was started".into())),
            Ok(Err(e)) => return Some(Err(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
}
