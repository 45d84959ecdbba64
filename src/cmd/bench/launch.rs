//! `weir bench launch`: real short tasks (`true`) through one real
//! `weir agent`, end to end: a framework (weir-sdk) launches `--tasks`
//! tasks, at most `--in-flight` at a time, packing as many into each offer
//! as fit, and counts until it has seen every TASK_FINISHED. Throughput =
//! tasks ÷ (last FINISHED − first ACCEPT).
//!
//! `--isolation cgroups|none` sets the agent's `agent.isolation`; the
//! summary says which isolation the agent actually used (it falls back to
//! none, loudly, where cgroups cannot be written).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weir_model::{OfferId, ResourceSet};
use weir_proto::convert::{resources_from_proto, resources_to_proto};
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};

use super::daemons::{self, cpu_seconds, percentile, Daemon, Scratch};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many tasks to run.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    tasks: u64,
    /// Tasks launched but not yet finished, at most.
    #[arg(long, default_value_t = 256)]
    in_flight: u64,
    /// The agent's isolation (agent.isolation): cgroups or none.
    #[arg(long, default_value = "none")]
    isolation: String,
    /// What the agent offers (room for --in-flight tasks of 0.01 cpus / 4 MiB).
    #[arg(long, default_value = "cpus:64;mem:65536;disk:100000")]
    resources: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Extra configuration for the broker and the agent (repeatable).
    #[arg(long = "define", value_name = "KEY=VALUE")]
    defines: Vec<String>,
}

/// What one run measured.
pub(super) struct LaunchReport {
    /// The isolation the agent actually used (its `/state`).
    pub isolation: String,
    pub tasks_per_second: f64,
    /// The one-line summary `weir bench launch` prints.
    pub summary: String,
}

pub async fn main(args: Args) -> Result<ExitCode> {
    let report = measure(args).await?;
    println!("{}", report.summary);
    Ok(ExitCode::SUCCESS)
}

/// Starts the broker and the agent, runs the tasks, stops both.
pub(super) async fn measure(args: Args) -> Result<LaunchReport> {
    if args.isolation != "cgroups" && args.isolation != "none" {
        bail!("--isolation must be cgroups or none, not {:?}", args.isolation);
    }
    daemons::raise_fd_limit();
    let scratch = Scratch::new("launch")?;
    let (broker, addr) = daemons::start_broker(&scratch, &args.defines).await?;
    let agent_port = daemons::free_port()?;
    let mut agent_args: Vec<String> = args.defines.iter().flat_map(|d| ["-D".to_owned(), d.clone()]).collect();
    agent_args.extend([
        "-D".to_owned(),
        format!("agent.isolation={}", args.isolation),
        "agent".into(),
        "--broker".into(),
        addr.clone(),
        "--listen".into(),
        format!("127.0.0.1:{agent_port}"),
        "--resources".into(),
        args.resources.clone(),
        "--work-dir".into(),
        scratch.0.join("agent").display().to_string(),
    ]);
    let agent = Daemon::start("agent", &agent_args, &scratch.0, "agent starting").await;
    let agent = match agent {
        Ok((agent, _)) => agent,
        Err(e) => {
            broker.stop(Duration::from_secs(5)).await;
            return Err(e);
        }
    };
    eprintln!(
        "weir bench: broker pid {} on {addr}, agent pid {} (isolation {} asked); logs in {}",
        broker.pid,
        agent.pid,
        args.isolation,
        scratch.0.display()
    );
    let result = run(&args, &addr, agent_port, broker.pid, agent.pid).await;
    agent.stop(Duration::from_secs(10)).await;
    broker.stop(Duration::from_secs(10)).await;
    result
}

async fn run(args: &Args, addr: &str, agent_port: u16, broker_pid: u32, agent_pid: u32) -> Result<LaunchReport> {
    let mut config = FrameworkConfig::new(addr.to_owned(), "weir-bench-launch");
    config.token = crate::settings::token();
    config.tls_ca = crate::settings::tls_ca();
    config.tls_identity = crate::settings::tls_identity();
    config.reconnect = false;
    let mut framework = Framework::subscribe(config).await.context("subscribing")?;
    let per_task = ResourceSet::parse("cpus:0.01;mem:4").map_err(|e| anyhow::anyhow!("{e}"))?;
    let per_task_wire = resources_to_proto(&per_task);
    let command = v1::CommandInfo { shell: false, value: "true".into(), arguments: vec!["true".into()], ..Default::default() };

    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    let mut launched = 0u64;
    let mut finished = 0u64;
    let mut failed = 0u64;
    let mut first_failure: Option<String> = None;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Vec::with_capacity(args.tasks as usize);
    let mut first_launch: Option<Instant> = None;
    let mut cpu0 = (0.0, 0.0);
    while finished + failed < args.tasks {
        let event = tokio::select! {
            e = framework.next_event() => e?,
            _ = tokio::time::sleep_until(deadline.into()) => bail!(
                "timed out after {}s: {launched} launched, {finished} finished, {failed} failed", args.timeout
            ),
        };
        let Some(event) = event else { bail!("the broker closed the stream") };
        match event.kind {
            Some(v1::event::Kind::Offers(offers)) => {
                for offer in offers.offers {
                    let room = args.in_flight.saturating_sub(launched - finished - failed).min(args.tasks - launched);
                    let available = resources_from_proto("offer", &offer.resources).map_err(|e| anyhow::anyhow!("{e}"))?.total();
                    let fit = fits(&available, &per_task.total());
                    let count = room.min(fit);
                    let id = OfferId::new(offer.id);
                    if count == 0 {
                        framework.decline(&[id], Some(Duration::ZERO)).await?;
                        continue;
                    }
                    let now = Instant::now();
                    if first_launch.is_none() {
                        first_launch = Some(now);
                        cpu0 = (cpu_seconds(broker_pid)?, cpu_seconds(agent_pid)?);
                    }
                    let tasks: Vec<v1::TaskInfo> = (0..count)
                        .map(|i| v1::TaskInfo {
                            task_id: format!("t{}", launched + i),
                            name: "true".into(),
                            agent_id: offer.agent_id.clone(),
                            resources: per_task_wire.clone(),
                            command: Some(command.clone()),
                            ..Default::default()
                        })
                        .collect();
                    for t in &tasks {
                        sent.insert(t.task_id.clone(), now);
                    }
                    launched += count;
                    framework.launch(&[id], tasks, Some(Duration::ZERO)).await?;
                }
            }
            Some(v1::event::Kind::Update(u)) => {
                let Some(status) = u.status else { continue };
                framework.acknowledge(&status).await?;
                match v1::TaskState::try_from(status.state) {
                    Ok(v1::TaskState::TaskFinished) => {
                        // Updates are delivered at least once: a resent
                        // FINISHED counted again made `finished` pass
                        // `launched`, and the run stalled declining offers.
                        if let Some(t) = sent.remove(&status.task_id) {
                            finished += 1;
                            latencies.push(t.elapsed().as_secs_f64());
                        }
                    }
                    Ok(v1::TaskState::TaskStaging | v1::TaskState::TaskStarting | v1::TaskState::TaskRunning) => {}
                    _ => {
                        if sent.remove(&status.task_id).is_some() {
                            failed += 1;
                            first_failure.get_or_insert_with(|| format!("{} {:?}: {}", status.task_id, status.state, status.message));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let first = first_launch.context("nothing was launched")?;
    let elapsed = first.elapsed().as_secs_f64();
    let broker_cpu = (cpu_seconds(broker_pid)? - cpu0.0) / elapsed;
    let agent_cpu = (cpu_seconds(agent_pid)? - cpu0.1) / elapsed;
    let isolation = effective_isolation(agent_port).await.unwrap_or_else(|e| format!("unknown ({e})"));
    let _ = framework.teardown().await;
    if let Some(f) = &first_failure {
        eprintln!("weir bench: first failure: {f}");
    }
    let tasks_per_second = (finished + failed) as f64 / elapsed;
    let summary = format!(
        "bench launch: isolation={isolation} tasks={} finished={finished} failed={failed} elapsed={elapsed:.2}s tasks_per_s={tasks_per_second:.0} \
         finished_p50={:.1}ms finished_p99={:.1}ms in_flight={} broker_cpu={:.0}% agent_cpu={:.0}%",
        args.tasks,
        percentile(&mut latencies, 50.0) * 1000.0,
        percentile(&mut latencies, 99.0) * 1000.0,
        args.in_flight,
        broker_cpu * 100.0,
        agent_cpu * 100.0,
    );
    Ok(LaunchReport { isolation, tasks_per_second, summary })
}

/// How many bundles of `each` fit in `available` (scalars only).
fn fits(available: &weir_model::Resources, each: &weir_model::Resources) -> u64 {
    let ratio = |have: f64, need: f64| if need > 0.0 { (have / need + 1e-9).floor() as u64 } else { u64::MAX };
    ratio(available.cpus.as_f64(), each.cpus.as_f64()).min(ratio(available.mem.as_f64(), each.mem.as_f64()))
}

/// What the agent says it isolates with (its `/state`, read with this
/// process's CA and token, as the agent may ask for them).
async fn effective_isolation(port: u16) -> Result<String> {
    let (client, scheme) = crate::settings::http_client(Duration::from_secs(10))?;
    let request = crate::settings::with_token(client.get(format!("{scheme}://127.0.0.1:{port}/state")));
    let doc: serde_json::Value = request.send().await?.error_for_status()?.json().await?;
    Ok(doc.get("isolation").and_then(|v| v.as_str()).unwrap_or("unknown").to_owned())
}
