//! `weir testbed measure`: timings on the testbed, for docs/BENCHMARKS.md.
//!
//! - failover: the leader is killed (kill -9) → another broker serves as
//!   leader with its recovery done (offers resume);
//! - partition detection: an agent is cut off → the leader marks it
//!   unreachable;
//! - partition recovery: the cut is healed → the leader has it reachable
//!   and connected again (re-registered, its tasks reconciled).
//!
//! Each is measured from the host through the published ports (polled
//! every 100 ms), `--rounds` times; the cluster is re-created with
//! `--define` settings first, so defaults and tuned timeouts compare.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use weir_testbed::fault::Fault;

use super::{docker, faults};

#[derive(clap::Args, Debug)]
pub struct MeasureArgs {
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Settings for every weir daemon (KEY=VALUE), e.g. tuned timeouts.
    #[arg(long = "define", value_name = "KEY=VALUE")]
    defines: Vec<String>,
    #[arg(long)]
    no_build: bool,
    /// Leave the cluster up afterwards.
    #[arg(long)]
    keep_up: bool,
}

async fn until(limit: Duration, mut pred: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pred().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn agent_state(h: &super::Health, host: &str) -> Option<(bool, bool)> {
    h.state.as_ref()?.agents.iter().find(|a| a.hostname == host).map(|a| (a.reachable, a.connected))
}

fn show(label: &str, xs: &[Option<Duration>]) {
    let secs: Vec<String> = xs.iter().map(|x| x.map_or("timeout".to_owned(), |d| format!("{:.1}", d.as_secs_f64()))).collect();
    let ok: Vec<f64> = xs.iter().flatten().map(Duration::as_secs_f64).collect();
    let mean = if ok.is_empty() { f64::NAN } else { ok.iter().sum::<f64>() / ok.len() as f64 };
    println!("measure: {label:<28} mean {mean:5.1} s   runs: {}", secs.join(", "));
}

pub async fn main(args: MeasureArgs) -> Result<ExitCode> {
    std::env::set_var("WEIR_TESTBED_DEFINES", args.defines.join(" "));
    super::up(&super::UpArgs { agents: 4, no_build: args.no_build, timeout: Duration::from_secs(240) }).await?;
    let logs = [docker::cache_dir().join("measure-faults.jsonl")];
    let limit = Duration::from_secs(120);
    let (mut failover, mut detect, mut heal) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let h = super::health().await;
        let Some(leader) = h.leader().map(str::to_owned) else { bail!("no single leader: {}", h.summary()) };
        let epoch = h.leaders[0].1;
        faults::inject(&Fault::Kill { node: leader.clone() }, &logs);
        failover.push(
            until(limit, async || {
                let h = super::health().await;
                h.leaders.iter().any(|(n, e)| n != &leader && *e > epoch) && h.state.as_ref().is_some_and(|s| !s.broker.recovering)
            })
            .await,
        );
        faults::inject(&Fault::Restart { node: leader }, &logs);
        super::wait_healthy(4, limit).await?;

        let agent = format!("agent{}", 1 + round % 4);
        let all = docker::services()?;
        faults::inject(&Fault::Partition { a: vec![agent.clone()], b: vec!["@rest".into()] }.resolve("", &all), &logs);
        detect.push(until(limit, async || agent_state(&super::health().await, &agent).is_some_and(|(r, _)| !r)).await);
        faults::inject(&Fault::Heal { nodes: vec![] }, &logs);
        heal.push(until(limit, async || agent_state(&super::health().await, &agent) == Some((true, true))).await);
        super::wait_healthy(4, limit).await?;
    }
    println!("measure: settings: {}", if args.defines.is_empty() { "defaults".to_owned() } else { args.defines.join(" ") });
    show("failover (kill -9 leader)", &failover);
    show("partitioned agent detected", &detect);
    show("healed agent back", &heal);
    if !args.keep_up {
        super::down()?;
    }
    Ok(ExitCode::SUCCESS)
}
