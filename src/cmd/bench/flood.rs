//! `weir bench flood`: hostile connections against one `weir standalone`
//! on loopback (issue 24), two phases:
//!
//! 1. `--frames N` connections finish the SIMPLE handshake, declare a
//!    `--declare-mib` frame and send one byte of it, and stay: the summary
//!    gives standalone's resident memory (now and peak) while they are held.
//! 2. `--connections M` connections (from `--sources` loopback addresses)
//!    are opened to the YARN client port and held, sending nothing; the
//!    ones the shim closes at accept (over its caps) are dropped. While the
//!    rest are held, `weir status` is run `--probes` times and one
//!    `weir run -- true` task is launched; the summary gives their times.
//!
//! Every loop is bounded; everything started is stopped at the end.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use weir_yarn_ipc::frame::encode_frame;
use weir_yarn_ipc::header::{request_header, CONNECTION_CONTEXT_CALL_ID};
use weir_yarn_ipc::proto::{IpcConnectionContextProto, UserInformationProto};

use super::daemons::{self, memory, mib, percentile, Daemon, Scratch};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Phase 1: connections each declaring a large frame.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    frames: u64,
    /// The frame length each of them declares, in MiB (under 128).
    #[arg(long, default_value_t = 127, value_parser = clap::value_parser!(u32).range(1..=127))]
    declare_mib: u32,
    /// Phase 2: connections opened and held on the YARN client port.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    connections: u64,
    /// Loopback source addresses (127.0.0.10 …) phase 2 spreads over.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=200))]
    sources: u8,
    /// `weir status` runs while the flood is held.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    probes: u32,
    /// Extra configuration for standalone (repeatable).
    #[arg(long = "define", value_name = "KEY=VALUE")]
    defines: Vec<String>,
}

pub async fn main(args: Args) -> Result<ExitCode> {
    let fd_limit = daemons::raise_fd_limit();
    let scratch = Scratch::new("flood")?;
    let work = scratch.0.join("standalone");
    let mut sa_args: Vec<String> = args.defines.iter().flat_map(|d| ["-D".to_owned(), d.clone()]).collect();
    for d in ["agent.listen=127.0.0.1:0", "agent.hostname=127.0.0.1", "yarn-shim.client.address=127.0.0.1:0", "yarn-shim.scheduler.address=127.0.0.1:0"] {
        sa_args.extend(["-D".to_owned(), d.to_owned()]);
    }
    sa_args.extend([
        "standalone".into(),
        "--work-dir".into(),
        work.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{}", daemons::free_port()?),
        "--resources".into(),
        "cpus:2;mem:2048;disk:1000".into(),
    ]);
    let (standalone, banner) = Daemon::start("standalone", &sa_args, &scratch.0, "weir standalone: broker").await?;
    let broker = banner.split_whitespace().find(|w| w.starts_with("127.0.0.1:")).context("no broker address in the banner")?.to_owned();
    let yarn = yarn_address(&work.join("hadoop-conf"))?;
    eprintln!("weir bench flood: standalone {} (broker {broker}, YARN client port {yarn}); open-file limit {fd_limit}", standalone.pid);
    let result = run(&args, standalone.pid, &broker, yarn).await;
    standalone.stop(Duration::from_secs(10)).await;
    println!("{}", result?);
    Ok(ExitCode::SUCCESS)
}

async fn run(args: &Args, pid: u32, broker: &str, yarn: SocketAddr) -> Result<String> {
    let (rss_before, _) = memory(pid)?;
    // Phase 1.
    let handshake = simple_handshake();
    let declared = (args.declare_mib << 20).to_be_bytes();
    let mut framed = Vec::new();
    for i in 0..args.frames {
        let source = Ipv4Addr::new(127, 0, 1, 1 + (i % 200) as u8);
        let mut c = connect_from(source, yarn).await.with_context(|| format!("phase 1, connection {i}"))?;
        c.write_all(&handshake).await?;
        c.write_all(&declared).await?;
        c.write_all(b"x").await?;
        framed.push(c);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_frames, hwm_frames) = memory(pid)?;
    drop(framed);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Phase 2.
    let mut held: Vec<TcpStream> = Vec::new();
    let mut closed_at_accept = 0u64;
    let mut failed_connects = 0u64;
    let started = Instant::now();
    for i in 0..args.connections {
        let source = Ipv4Addr::new(127, 0, 0, 10 + (i % u64::from(args.sources)) as u8);
        match tokio::time::timeout(Duration::from_secs(5), connect_from(source, yarn)).await {
            Ok(Ok(c)) => held.push(c),
            _ => failed_connects += 1,
        }
        // Let go of what the shim closed, every 500 connections.
        if i % 500 == 499 {
            let before = held.len();
            held.retain(|c| !closed_by_peer(c));
            closed_at_accept += (before - held.len()) as u64;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = held.len();
    held.retain(|c| !closed_by_peer(c));
    closed_at_accept += (before - held.len()) as u64;
    let flood_secs = started.elapsed().as_secs_f64();
    let (rss_held, _) = memory(pid)?;

    let exe = std::env::current_exe()?;
    let mut status_ms = Vec::new();
    for _ in 0..args.probes {
        let t = Instant::now();
        let out = tokio::process::Command::new(&exe).args(["status", "--broker", broker]).output().await?;
        if !out.status.success() {
            bail!("weir status failed during the flood: {}", String::from_utf8_lossy(&out.stderr));
        }
        status_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let t = Instant::now();
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&exe).args(["run", "--broker", broker, "--cpus", "0.1", "--mem", "16", "--", "true"]).output(),
    )
    .await;
    let run_ms = t.elapsed().as_secs_f64() * 1000.0;
    let run_ok = matches!(&run, Ok(Ok(o)) if o.status.success());
    let held_count = held.len();
    drop(held);
    Ok(format!(
        "flood: {} connections declaring {} MiB each: standalone RSS {:.0} MiB (before {:.0} MiB, peak {:.0} MiB); \
         {} connections in {:.1}s from {} addresses: {} held by the shim, {} closed at accept, {} failed to connect, RSS {:.0} MiB; \
         weir status p50 {:.0} ms max {:.0} ms ({} runs); weir run -- true {} in {:.0} ms",
        args.frames,
        args.declare_mib,
        mib(rss_frames),
        mib(rss_before),
        mib(hwm_frames),
        args.connections,
        flood_secs,
        args.sources,
        held_count,
        closed_at_accept,
        failed_connects,
        mib(rss_held),
        percentile(&mut status_ms.clone(), 50.0),
        percentile(&mut status_ms, 100.0),
        args.probes,
        if run_ok { "finished" } else { "FAILED" },
        run_ms,
    ))
}

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    socket.connect(to).await
}

/// Whether the peer has closed `c` (EOF or reset), without waiting.
fn closed_by_peer(c: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match c.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Preamble (SIMPLE) and connection context: past the handshake.
fn simple_handshake() -> Vec<u8> {
    let mut bytes = b"hrpc\x09\x00\x00".to_vec();
    let context = IpcConnectionContextProto {
        user_info: Some(UserInformationProto { effective_user: Some("bench".into()), real_user: None }),
        protocol: Some(weir_yarn_api::APPLICATION_CLIENT_PROTOCOL.into()),
    };
    bytes.extend(encode_frame(&[&request_header(CONNECTION_CONTEXT_CALL_ID, &[0; 16], -1), &context]));
    bytes
}

/// yarn.resourcemanager.address from the yarn-site.xml standalone wrote.
fn yarn_address(conf_dir: &std::path::Path) -> Result<SocketAddr> {
    let path = conf_dir.join("yarn-site.xml");
    let site = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    site.split("<name>yarn.resourcemanager.address</name>")
        .nth(1)
        .and_then(|rest| rest.split("<value>").nth(1))
        .and_then(|v| v.split("</value>").next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no yarn.resourcemanager.address in {}", path.display()))
}
