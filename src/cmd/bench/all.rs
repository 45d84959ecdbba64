//! `weir bench all`: every row of issue 22's table that can run on this
//! machine, one after another, then one table with the target beside each
//! figure and ✔ or ✘. The whole set takes a few minutes (bounded well
//! under 15: each row has its own bound, see `--help`).
//!
//! Rows that need what is not here print SKIPPED with the reason (cgroups
//! not writable, Spark or Hadoop not installed: those jobs have their own
//! scripts and take many minutes), and a row whose run failed prints
//! FAILED with the error; neither stops the others. The exit code is 0
//! whenever the set ran, whatever the figures: this measures, it does not
//! judge a build.
//!
//! Each row runs the same code as its own command (`weir bench launch`,
//! `weir bench agents`, the allocator's `cycle_times`, the broker's
//! `core_cycle`, the shim's `alloc_rate`), with a shorter run where noted
//! in the row's name.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::FromArgMatches;

use super::{agents, cycles, launch};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Emulated agents for the agents rows (issue 22's figure is at 50,000).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    agents: u64,
    /// Seconds each agents row measures (after registration and warm-up).
    #[arg(long, default_value_t = 20.0)]
    agents_duration: f64,
    /// Tasks each launch row runs.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    launch_tasks: u64,
    /// Only the rows whose name contains one of these words (repeatable):
    /// e.g. `--only cycle --only tick`.
    #[arg(long)]
    only: Vec<String>,
}

/// How a row came out.
enum Outcome {
    /// The figure as printed, and whether it meets the target.
    Measured(String, bool),
    Skipped(String),
    Failed(String),
}

struct Row {
    name: String,
    target: &'static str,
    outcome: Outcome,
    took: Duration,
}

/// A row's arguments, parsed as its own command parses them (its defaults
/// and checks included).
fn parse<A: clap::Args + FromArgMatches>(name: &'static str, argv: &[String]) -> Result<A> {
    let cmd = A::augment_args(clap::Command::new(name));
    let matches = cmd.try_get_matches_from(std::iter::once(name.to_owned()).chain(argv.iter().cloned()))?;
    Ok(A::from_arg_matches(&matches)?)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The allocator's cycle, then the row's outcome against `target_ms`.
fn cycle_row(agents: usize, cycles: usize, target_ms: f64) -> Outcome {
    match cycles::allocator_cycle(agents, cycles) {
        Ok(s) => Outcome::Measured(
            format!("median {} (min {}, {} cycles)", ms(s.median()), ms(s.min()), s.len()),
            s.median().as_secs_f64() * 1e3 <= target_ms,
        ),
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

pub async fn main(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|w| name.contains(w.as_str()));
    let plan: Vec<(String, &'static str)> = vec![
        ("allocation cycle, 10,000 agents × 1,000 frameworks".into(), "≤ 2 ms"),
        ("allocation cycle, 50,000 × 5,000".into(), "≤ 20 ms"),
        ("broker's whole tick ÷ allocation cycle, 10,000 × 1,000 (steady ticks)".into(), "≤ 1.5×"),
        ("YARN containers allocated per second, 1,000 AMs (shim, emulated agents)".into(), "≥ 100k/s, allocate p99 ≤ 10 ms"),
        (format!("real task launches through one agent, no isolation ({} tasks)", args.launch_tasks), "≥ 2,000/s"),
        (format!("real task launches through one agent, cgroups ({} tasks)", args.launch_tasks), "≥ 1,000/s"),
        (format!("{} emulated agents, probe ACCEPT → RUNNING p99, 5 s heartbeats", thousands(args.agents)), "≤ 50 ms"),
        (format!("broker resident memory with {} agents (5 s heartbeats)", thousands(args.agents)), "≤ 512 MiB"),
        (format!("{} emulated agents, probe ACCEPT → RUNNING p99, 1 s heartbeats", thousands(args.agents)), "≤ 100 ms"),
        ("PySpark π on Weir ÷ Spark standalone".into(), "≤ 1.0×"),
        ("MapReduce pi and DistributedShell on Weir ÷ Hadoop's YARN".into(), "≤ 0.7×"),
    ];
    let chosen: Vec<usize> = (0..plan.len()).filter(|&i| wanted(&plan[i].0)).collect();
    eprintln!("weir bench all: {} rows; load average {}", chosen.len(), load_average());
    let mut rows: Vec<Row> = Vec::new();
    // The 5 s agents run yields two rows (p99 and RSS); keep its RSS.
    let mut agents_rss: Option<Result<u64, String>> = None;
    for (n, &i) in chosen.iter().enumerate() {
        let (name, target) = plan[i].clone();
        eprintln!("weir bench all: [{}/{}] {name} …", n + 1, chosen.len());
        let t = Instant::now();
        let outcome = match i {
            0 => cycle_row(10_000, 100, 2.0),
            1 => cycle_row(50_000, 20, 20.0),
            2 => match cycles::tick_ratio(10_000, 1_000, 20) {
                Ok(r) => Outcome::Measured(
                    format!("{:.2}× (tick {}, cycle {}, medians)", r.ratio(), ms(r.tick.median()), ms(r.cycle.median())),
                    r.ratio() <= 1.5,
                ),
                Err(e) => Outcome::Failed(format!("{e:#}")),
            },
            3 => {
                let config = weir_yarn_rm::alloc_rate::AllocRateConfig { apps: 1000, containers_per_app: 100, agents: 1000, per_offer: 1 };
                match weir_yarn_rm::alloc_rate::run(config).await {
                    Ok(r) => {
                        let (rate, p99) = (r.containers_per_second(), r.round_trip(0.99));
                        Outcome::Measured(
                            format!("{:.0}/s, allocate p50 {} / p99 {} ({} containers)", rate, ms(r.round_trip(0.5)), ms(p99), r.containers),
                            rate >= 100_000.0 && p99 <= Duration::from_millis(10),
                        )
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            4 | 5 => {
                let isolation = if i == 4 { "none" } else { "cgroups" };
                let argv = vec!["--tasks".into(), args.launch_tasks.to_string(), "--isolation".into(), isolation.into(), "--timeout".into(), "120".into()];
                match parse::<launch::Args>("launch", &argv) {
                    Err(e) => Outcome::Failed(format!("{e:#}")),
                    Ok(a) => match launch::measure(a).await {
                        Ok(r) if r.isolation != isolation => Outcome::Skipped(format!(
                            "the agent ran with isolation {:?}, not {isolation} (cgroups not writable here?); {:.0}/s",
                            r.isolation, r.tasks_per_second
                        )),
                        Ok(r) => Outcome::Measured(format!("{:.0}/s", r.tasks_per_second), r.tasks_per_second >= if i == 4 { 2000.0 } else { 1000.0 }),
                        Err(e) => Outcome::Failed(format!("{e:#}")),
                    },
                }
            }
            6 | 8 => {
                let heartbeat = if i == 6 { "5" } else { "1" };
                let argv = vec![
                    "--count".into(),
                    args.agents.to_string(),
                    "--heartbeat-seconds".into(),
                    heartbeat.into(),
                    "--duration".into(),
                    args.agents_duration.to_string(),
                    "--register-timeout".into(),
                    "120".into(),
                ];
                let target = if i == 6 { 0.050 } else { 0.100 };
                let report = match parse::<agents::Args>("agents", &argv) {
                    Err(e) => Err(format!("{e:#}")),
                    Ok(a) => agents::measure(a).await.map_err(|e| format!("{e:#}")),
                };
                if i == 6 {
                    agents_rss = Some(report.as_ref().map(|r| r.broker_rss).map_err(|e| e.clone()));
                }
                match report {
                    Ok(r) if r.running_p99.is_nan() => Outcome::Failed(format!("no probe task reached RUNNING in the window: {}", r.summary)),
                    Ok(r) => Outcome::Measured(
                        format!("{:.0} ms (p50 {:.1} ms)", r.running_p99 * 1e3, r.running_p50 * 1e3),
                        r.running_p99 <= target,
                    ),
                    Err(e) => Outcome::Failed(e),
                }
            }
            7 => match &agents_rss {
                Some(Ok(rss)) => {
                    let mib = super::daemons::mib(*rss);
                    Outcome::Measured(format!("{mib:.0} MiB"), mib <= 512.0)
                }
                Some(Err(e)) => Outcome::Failed(format!("the 5 s agents run failed: {e}")),
                None => Outcome::Skipped("measured by the 5 s heartbeat agents row, which was not chosen".into()),
            },
            9 => Outcome::Skipped("needs Spark and minutes of JVM starts: scripts/bench-spark-pi.sh 5 8".into()),
            10 => Outcome::Skipped("needs Hadoop 3.2 and its HDFS: scripts/bench-hadoop-jobs.sh 2".into()),
            _ => Outcome::Skipped("unknown row".into()),
        };
        let took = t.elapsed();
        let line = match &outcome {
            Outcome::Measured(figure, ok) => format!("{figure} {}", if *ok { "✔" } else { "✘" }),
            Outcome::Skipped(why) => format!("SKIPPED: {why}"),
            Outcome::Failed(why) => format!("FAILED: {why}"),
        };
        eprintln!("weir bench all: [{}/{}] {line} ({:.1} s)", n + 1, chosen.len(), took.as_secs_f64());
        rows.push(Row { name, target, outcome, took });
    }
    println!("{}", table(&rows));
    println!("(weir bench all: {:.0} s in all; load average at the end {})", started.elapsed().as_secs_f64(), load_average());
    Ok(ExitCode::SUCCESS)
}

/// `50000` → `50,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows as a Markdown table (readable as is, and pasted into
/// docs/BENCHMARKS.md).
fn table(rows: &[Row]) -> String {
    let mut out = String::from("| figure | measured | target | met | took |\n|---|---|---|---|---|\n");
    for r in rows {
        let (figure, met) = match &r.outcome {
            Outcome::Measured(f, ok) => (f.clone(), if *ok { "✔" } else { "✘" }),
            Outcome::Skipped(why) => (format!("SKIPPED: {why}"), "—"),
            Outcome::Failed(why) => (format!("FAILED: {why}"), "—"),
        };
        out.push_str(&format!("| {} | {} | {} | {} | {:.0} s |\n", r.name, figure.replace('|', "/"), r.target, met, r.took.as_secs_f64()));
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(50_000), "50,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn rows_become_one_table_with_targets_and_marks() {
        let rows = vec![
            Row { name: "a".into(), target: "≤ 2 ms", outcome: Outcome::Measured("1.5 ms".into(), true), took: Duration::from_secs(1) },
            Row { name: "b".into(), target: "≥ 1", outcome: Outcome::Measured("0 | 1".into(), false), took: Duration::ZERO },
            Row { name: "c".into(), target: "≤ 1.0×", outcome: Outcome::Skipped("needs Spark".into()), took: Duration::ZERO },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[2], "| a | 1.5 ms | ≤ 2 ms | ✔ | 1 s |");
        assert_eq!(lines[3], "| b | 0 / 1 | ≥ 1 | ✘ | 0 s |", "a | inside a figure would break the table");
        assert_eq!(lines[4], "| c | SKIPPED: needs Spark | ≤ 1.0× | — | 0 s |");
    }

    #[test]
    fn row_arguments_parse_as_their_commands_do() {
        let a: launch::Args = parse("launch", &["--tasks".into(), "10".into(), "--isolation".into(), "none".into()]).unwrap();
        assert_eq!(format!("{a:?}").contains("tasks: 10"), true);
        assert!(parse::<launch::Args>("launch", &["--tasks".into(), "0".into()]).is_err());
    }
}
