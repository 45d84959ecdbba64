//! `weir-locality`: the data-locality benchmark (see `weir_sim::locality`).
//! Runs each seed with and without data locality on the same cluster,
//! files and jobs, and prints the comparison.
//!
//!   cargo run --release -p weir-sim --bin weir-locality -- --seeds 1..4

use std::time::{Duration, Instant};

use clap::Parser;
use weir_sim::locality::{run, LocalityConfig, LocalityReport};

#[derive(Parser)]
#[command(about = "Compares placement with and without data locality on a simulated cluster")]
struct Args {
    /// Seeds: `N` or `A..B` (B excluded).
    #[arg(long, default_value = "1")]
    seeds: String,
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    #[arg(long, default_value_t = 4)]
    frameworks: usize,
    /// Simulated seconds of arriving jobs (the first 60 are not counted).
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Mean tasks per job (130 keeps about 62 % of the slots busy; 180
    /// about 85 %).
    #[arg(long, default_value_t = 130)]
    job_tasks: usize,
}

fn seeds(spec: &str) -> anyhow::Result<std::ops::Range<u64>> {
    Ok(match spec.split_once("..") {
        Some((a, b)) => a.parse()?..b.parse()?,
        None => {
            let n: u64 = spec.parse()?;
            n..n + 1
        }
    })
}

fn row(label: &str, r: &LocalityReport, took: Duration) {
    println!(
        "{label:<12} {:>9} {:>9.1}% {:>9.2}s {:>9.2}s {:>9.2}s {:>7.1}%  [{}]  {:>6.1}s",
        r.launched,
        100.0 * r.local_fraction(),
        r.delay_quantile(0.5).as_secs_f64(),
        r.delay_quantile(0.9).as_secs_f64(),
        r.delay_quantile(0.99).as_secs_f64(),
        100.0 * r.utilisation,
        r.mean_shares.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(" "),
        took.as_secs_f64(),
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "{:<12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8}  {}  {:>7}",
        "placement", "launched", "node-local", "p50 wait", "p90 wait", "p99 wait", "busy", "mean share per framework", "runtime"
    );
    for seed in seeds(&args.seeds)? {
        println!("seed {seed}: {} agents, {} frameworks, {} s, {} tasks per job", args.agents, args.frameworks, args.seconds, args.job_tasks);
        let mut reports = Vec::new();
        for locality in [false, true] {
            let mut config = LocalityConfig::standard(seed, locality);
            config.agents = args.agents;
            config.frameworks = args.frameworks;
            config.duration = Duration::from_secs(args.seconds);
            config.job_tasks = args.job_tasks;
            let began = Instant::now();
            let report = run(&config);
            row(if locality { "locality" } else { "no locality" }, &report, began.elapsed());
            reports.push(report);
        }
        let (plain, local) = (&reports[0], &reports[1]);
        let extra = local.delay_quantile(0.5).as_secs_f64() - plain.delay_quantile(0.5).as_secs_f64();
        let drift = plain.mean_shares.iter().zip(&local.mean_shares).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        println!("  extra median wait {extra:+.2}s; largest change of a framework's mean share {drift:.3}");
    }
    Ok(())
}
