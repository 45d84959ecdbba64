//! `weir-sim`: runs many seeds of the cluster simulation and prints the
//! failing ones, or replays one seed with its trace.
//!
//!   cargo run --release -p weir-sim -- --seeds 0..10000
//!   cargo run --release -p weir-sim -- --seeds 1234 --trace
//!   cargo run --release -p weir-sim -- --seeds 0..1000 --yarn   (with the YARN core)
//!   cargo run --release -p weir-sim -- --seeds 0..1000 --reservations   (with a stateful framework)

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use weir_sim::{run, SimConfig, ViolationKind};

#[derive(Parser)]
#[command(about = "Runs Weir's seeded cluster simulation")]
struct Args {
    /// Seeds to run: `N` or `A..B` (B excluded).
    #[arg(long, default_value = "0..100")]
    seeds: String,
    /// Print every event of each run (use with one seed).
    #[arg(long)]
    trace: bool,
    #[arg(long, default_value_t = 4)]
    agents: usize,
    #[arg(long, default_value_t = 3)]
    frameworks: usize,
    /// Let agent crashes orphan a launch under way (a known finding).
    #[arg(long)]
    orphan_launches: bool,
    /// Add the YARN participant (the real YARN core, scripted clients and
    /// ApplicationMasters) beside the scripted frameworks.
    #[arg(long)]
    yarn: bool,
    /// Add a stateful framework that reserves, creates volumes and runs
    /// tasks on them (dynamic reservations and persistent volumes).
    #[arg(long)]
    reservations: bool,
    /// Print every violation of a failing seed, not just the first.
    #[arg(long)]
    verbose: bool,
}

fn parse_seeds(spec: &str) -> anyhow::Result<Range<u64>> {
    if let Some((a, b)) = spec.split_once("..") {
        let a: u64 = a.parse().with_context(|| format!("bad seed range start in {spec:?}"))?;
        let b: u64 = b.parse().with_context(|| format!("bad seed range end in {spec:?}"))?;
        if b <= a {
            bail!("empty seed range {spec:?}");
        }
        Ok(a..b)
    } else {
        let n: u64 = spec.parse().with_context(|| format!("bad seed {spec:?}"))?;
        Ok(n..n + 1)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seeds = parse_seeds(&args.seeds)?;
    let started = Instant::now();
    let mut failing: BTreeMap<ViolationKind, Vec<u64>> = BTreeMap::new();
    let (mut runs, mut launched, mut failovers) = (0u64, 0u64, 0u64);
    for seed in seeds {
        let mut config = SimConfig::new(seed);
        config.trace = args.trace;
        config.agents = args.agents;
        config.frameworks = args.frameworks;
        config.orphan_launches = args.orphan_launches;
        if args.reservations {
            config.agent_disk_mib = 8192;
        }
        let outcome = if args.yarn || args.reservations {
            let mut world = weir_sim::World::new(config);
            if args.yarn {
                world.add_framework(Box::new(weir_sim::YarnParticipant::new("yarn")));
            }
            if args.reservations {
                world.add_framework(Box::new(weir_sim::StatefulFramework::new("db", "db")));
            }
            world.run()
        } else {
            run(config)
        };
        runs += 1;
        launched += outcome.stats.tasks_launched;
        failovers += outcome.stats.broker_failovers;
        if let Some(first) = outcome.violations.first() {
            println!("seed {seed} FAILED at {:.3}s: {:?}: {}", first.at.as_secs_f64(), first.kind, first.message);
            if args.verbose {
                for v in &outcome.violations[1..] {
                    println!("    {:?}: {}", v.kind, v.message);
                }
            }
            failing.entry(first.kind).or_default().push(seed);
        } else if args.trace || runs == 1 && args.seeds.parse::<u64>().is_ok() {
            println!("seed {seed} passed: trace hash {:016x}, {:?}", outcome.trace_hash, outcome.stats);
        }
    }
    let failed: usize = failing.values().map(Vec::len).sum();
    println!(
        "{runs} seeds, {failed} failed, {launched} tasks launched, {failovers} broker failovers, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for (kind, seeds) in &failing {
        let shown: Vec<String> = seeds.iter().take(20).map(u64::to_string).collect();
        println!("  {kind:?}: {} seeds, e.g. {}", seeds.len(), shown.join(" "));
    }
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
