//! `weir testbed scenario`: the workload runs in the client container
//! while a seeded schedule of faults runs from the host; then everything
//! is healed, the books are read until they agree (the convergence time),
//! and the checker judges the run.
//!
//! The run's folder (printed at the start) holds `faults.jsonl` (the
//! timeline), `history.jsonl` and `exec/` (from the client), `books.json`,
//! `run.json`, `report.json`, `workload.log`, and — when the check fails,
//! or with `--save-logs` — every node's log under `logs/`.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use weir_testbed::check::{book_violations, check, Run};
use weir_testbed::fault::{self, Episode, Fault, Kind};
use weir_testbed::history::{parse_exec, parse_history, Books};

use super::{docker, faults};

#[derive(clap::Args, Debug)]
pub struct ScenarioArgs {
    /// Seeds the fault schedule and the workload's task lengths.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long faults are injected (and the workload launches).
    #[arg(long, default_value = "10m", value_parser = weir_conf::parse_duration)]
    duration: Duration,
    /// The short scenario CI runs instead of a seeded schedule: the leader
    /// killed and restarted, an agent cut off for 25 s, an agent killed and
    /// restarted.
    #[arg(long)]
    ci: bool,
    /// Fault kinds to draw from (default: all): leader-kill, leader-pause,
    /// leader-partition, agent-kill, agent-pause, agent-partition,
    /// agent-loss, agent-fill-disk, zk-kill, split-brain.
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// The cluster must converge within this after the last heal.
    #[arg(long, default_value = "90s", value_parser = weir_conf::parse_duration)]
    bound: Duration,
    /// The run's folder (default: ~/.cache/weir/testbed/runs/<run id>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Settings for every weir daemon, e.g. --define broker.agent.unreachable.timeout=5s
    /// (the cluster is re-created with them).
    #[arg(long = "define", value_name = "KEY=VALUE")]
    defines: Vec<String>,
    /// Use the images as they are (do not run docker/build.sh).
    #[arg(long)]
    no_build: bool,
    /// Leave the cluster up afterwards (default: `weir testbed down`).
    #[arg(long)]
    keep_up: bool,
    /// Save every node's log even when the check passes.
    #[arg(long)]
    save_logs: bool,
}

/// What run.json keeps besides the history, for `weir testbed check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunMeta {
    run_id: String,
    seed: u64,
    ci: bool,
    framework_ids: Vec<String>,
    last_heal_ms: u64,
    converged_ms: Option<u64>,
    bound_ms: u64,
    defines: Vec<String>,
}

fn kind_of(name: &str) -> Result<Kind> {
    let k = match name.trim() {
        "leader-kill" => Kind::LeaderKill,
        "leader-pause" => Kind::LeaderPause,
        "leader-partition" => Kind::LeaderPartition,
        "agent-kill" => Kind::AgentKill,
        "agent-pause" => Kind::AgentPause,
        "agent-partition" => Kind::AgentPartition,
        "agent-loss" => Kind::AgentLoss,
        "agent-fill-disk" => Kind::AgentFillDisk,
        "zk-kill" => Kind::ZkKill,
        "split-brain" => Kind::SplitBrain,
        other => bail!("unknown fault kind {other:?}"),
    };
    Ok(k)
}

/// `20261207T064125Z`.
fn compact_time(ms: u64) -> String {
    let t = weir_testbed::rfc3339_ms(ms);
    format!("{}Z", t[..19].replace(['-', ':'], ""))
}

pub async fn main(args: ScenarioArgs) -> Result<ExitCode> {
    let episodes: Vec<Episode> = if args.ci {
        fault::ci_schedule()
    } else {
        let kinds: Vec<Kind> = if args.kinds.is_empty() { fault::ALL_KINDS.to_vec() } else { args.kinds.iter().map(|k| kind_of(k)).collect::<Result<_>>()? };
        fault::schedule(args.seed, args.duration, 4, &kinds)
    };
    let fault_time = episodes.last().map_or(Duration::ZERO, |e| e.start + e.lasts);
    let run_id = format!("{}-{}seed{}", compact_time(weir_testbed::now_ms()), if args.ci { "ci-" } else { "" }, args.seed);
    let out = args.out.clone().unwrap_or_else(|| docker::cache_dir().join("runs").join(&run_id));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    println!("weir testbed scenario {run_id}: {} fault episodes over {:.0} s; run folder {}", episodes.len(), fault_time.as_secs_f64(), out.display());

    // The daemons' settings go in through compose's environment: a change
    // re-creates the containers.
    std::env::set_var("WEIR_TESTBED_DEFINES", args.defines.join(" "));
    super::up(&super::UpArgs { agents: 4, no_build: args.no_build, timeout: Duration::from_secs(240) }).await?;

    let client = docker::require("client")?;
    let workload_log = std::fs::File::create(out.join("workload.log"))?;
    let launch_for = fault_time + Duration::from_secs(5);
    let mut workload = tokio::process::Command::new("docker")
        .args(["exec", &client, "weir", "testbed", "workload", "--run", &run_id, "--seed", &args.seed.to_string()])
        .arg("--duration")
        .arg(format!("{}s", launch_for.as_secs()))
        .stdin(Stdio::null())
        .stdout(workload_log.try_clone()?)
        .stderr(workload_log)
        .kill_on_drop(true)
        .spawn()
        .context("starting the workload in the client container")?;
    let fault_log = out.join("faults.jsonl");
    let logs = [fault_log.clone()];

    let t0 = Instant::now();
    for e in &episodes {
        tokio::time::sleep(e.start.saturating_sub(t0.elapsed())).await;
        if let Ok(Some(status)) = workload.try_wait() {
            println!("weir testbed scenario: the workload ended early ({status}); see {}", out.join("workload.log").display());
            break;
        }
        let leader = wait_leader(Duration::from_secs(30)).await.unwrap_or_default();
        let all = docker::services()?;
        let f = e.fault.resolve(&leader, &all);
        faults::inject(&f, &logs);
        tokio::time::sleep(e.lasts).await;
        faults::inject(&e.heal.resolve(&leader, &all), &logs);
    }
    heal_everything(&logs)?;
    let last_heal = weir_testbed::now_ms();

    // Books until they agree, while the workload drains.
    let mut converged: Option<u64> = None;
    let mut books = Books::default();
    let mut workload_status = None;
    let give_up = Instant::now() + args.bound.max(Duration::from_secs(300)) + Duration::from_secs(240);
    loop {
        if workload_status.is_none() {
            if let Ok(Some(s)) = workload.try_wait() {
                workload_status = Some(s);
            }
        }
        match read_books(&client) {
            Ok(b) => {
                if converged.is_none() && book_violations(&b).is_empty() {
                    converged = Some(weir_testbed::now_ms().saturating_sub(last_heal));
                    println!("weir testbed scenario: converged {:.1} s after the last heal", converged.unwrap_or(0) as f64 / 1e3);
                }
                books = b;
            }
            Err(e) => println!("weir testbed scenario: cannot read the books yet: {e:#}"),
        }
        let bound_passed = weir_testbed::now_ms().saturating_sub(last_heal) > args.bound.as_millis() as u64;
        if workload_status.is_some() && (converged.is_some() || bound_passed) {
            break;
        }
        if Instant::now() > give_up {
            println!("weir testbed scenario: the workload did not end; stopping it");
            let _ = workload.kill().await;
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The final books, after the workload's teardown.
    if let Ok(b) = read_books(&client) {
        books = b;
    }
    std::fs::write(out.join("books.json"), serde_json::to_string_pretty(&books)?)?;
    copy_run(&client, &run_id, &out)?;
    let framework_ids: Vec<String> = std::fs::read_to_string(out.join("framework_id")).map(|s| vec![s.trim().to_owned()]).unwrap_or_default();
    let meta = RunMeta {
        run_id: run_id.clone(),
        seed: args.seed,
        ci: args.ci,
        framework_ids,
        last_heal_ms: last_heal,
        converged_ms: converged,
        bound_ms: args.bound.as_millis() as u64,
        defines: args.defines.clone(),
    };
    std::fs::write(out.join("run.json"), serde_json::to_string_pretty(&meta)?)?;
    let ok = judge(&out)?;
    if !ok || args.save_logs {
        save_logs(&out)?;
    }
    if !args.keep_up {
        super::down()?;
    }
    println!("weir testbed scenario {run_id}: {} — {}", if ok { "PASSED" } else { "FAILED" }, out.display());
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The leading broker's node, once exactly one leads.
async fn wait_leader(within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(l) = super::health().await.leader() {
            return Some(l.to_owned());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every node running and unfrozen, every network fault and fill undone.
fn heal_everything(logs: &[PathBuf]) -> Result<()> {
    for s in docker::services()? {
        match docker::state(&s)?.as_str() {
            "paused" => {
                faults::inject(&Fault::Unpause { node: s }, logs);
            }
            "running" => {}
            _ => {
                faults::inject(&Fault::Restart { node: s }, logs);
            }
        }
    }
    faults::inject(&Fault::Heal { nodes: vec![] }, logs);
    Ok(())
}

fn read_books(client: &str) -> Result<Books> {
    let out = docker::run(std::process::Command::new("docker").args(["exec", client, "weir", "testbed", "books"]))?;
    serde_json::from_slice(&out.stdout).context("weir testbed books printed no books")
}

/// The workload's history and the tasks' run records, from the client.
fn copy_run(client: &str, run_id: &str, out: &Path) -> Result<()> {
    let from = format!("{client}:{}/{run_id}/.", super::workload::RUNS);
    docker::run(std::process::Command::new("docker").args(["cp", &from]).arg(out))?;
    Ok(())
}

fn save_logs(out: &Path) -> Result<()> {
    let dir = out.join("logs");
    std::fs::create_dir_all(&dir)?;
    for s in docker::services()? {
        let Some(id) = docker::container(&s)? else { continue };
        let file = std::fs::File::create(dir.join(format!("{s}.log")))?;
        let _ = std::process::Command::new("docker").args(["logs", "--timestamps", &id]).stdout(file.try_clone()?).stderr(file).status();
    }
    println!("weir testbed scenario: node logs saved in {}", dir.display());
    Ok(())
}

/// Loads a run folder into the checker's input.
pub fn load(dir: &Path) -> Result<Run> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()));
    let meta: RunMeta = serde_json::from_str(&read("run.json")?).context("run.json")?;
    let (events, torn) = parse_history(&read("history.jsonl").unwrap_or_default());
    for t in torn {
        println!("note: {t}");
    }
    let mut execs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("exec")) {
        for entry in entries.flatten() {
            let task = entry.file_name().to_string_lossy().into_owned();
            execs.extend(parse_exec(&task, &std::fs::read_to_string(entry.path()).unwrap_or_default()));
        }
    }
    let faults = fault::parse_log(&read("faults.jsonl").unwrap_or_default());
    let books: Option<Books> = read("books.json").ok().and_then(|t| serde_json::from_str(&t).ok());
    Ok(Run { events, execs, faults, books, converged_ms: meta.converged_ms, bound_ms: meta.bound_ms, framework_ids: meta.framework_ids })
}

/// Checks a run folder, writes report.json, prints the verdict.
fn judge(dir: &Path) -> Result<bool> {
    let run = load(dir)?;
    let report = check(&run);
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    let failed_faults = run.faults.iter().filter(|f| !f.error.is_empty()).count();
    println!(
        "checker: {} tasks launched, {} updates, {} task runs, {} faults ({failed_faults} failed to apply), terminal states {:?}, converged {}",
        report.tasks_launched,
        report.updates,
        report.execs,
        report.faults,
        report.terminal,
        report.converged_ms.map_or("never".to_owned(), |ms| format!("in {:.1} s (bound {:.0} s)", ms as f64 / 1e3, report.bound_ms as f64 / 1e3))
    );
    if report.tasks_launched == 0 {
        println!("checker: VIOLATION: the workload launched no task");
        return Ok(false);
    }
    for v in &report.violations {
        println!("checker: VIOLATION: {v}");
    }
    Ok(report.ok())
}

pub fn check_main(dir: &Path) -> Result<ExitCode> {
    Ok(if judge(dir)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
