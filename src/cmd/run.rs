//! `weir run -- CMD ARGS…`: a small framework that runs a command on the
//! cluster, streams its output and exits with its exit code.
//!
//! It subscribes with no failover timeout (if it dies, the broker kills its
//! tasks; behind `zk://` it follows broker failovers and has 30 s), launches `--instances` copies on whatever offers fit, declines the
//! rest, streams stdout/stderr from the agents' sandboxes, and on Ctrl-C
//! kills what it started before exiting 130.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::watch;
use weir_conf::Daemon;
use weir_model::{AgentId, OfferId, ResourceSet, TaskId, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto};
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};

use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Broker address (default: broker.listen, where a local standalone listens).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// CPUs per instance.
    #[arg(long, default_value_t = 1.0)]
    cpus: f64,
    /// Memory per instance, MiB.
    #[arg(long, default_value_t = 128.0)]
    mem: f64,
    /// How many copies to run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    instances: u32,
    /// Role to run in (default: the default role "*").
    #[arg(long)]
    role: Option<String>,
    /// Mount this persistent volume of the role (see `weir volume`) into
    /// each task at its container path; the task then uses the role's
    /// reserved cpus and mem.
    #[arg(long, value_name = "VOLUME_ID", requires = "role")]
    volume: Option<String>,
    /// Where the volume appears in the sandbox (default: the volume's path).
    #[arg(long, value_name = "PATH", requires = "volume")]
    volume_path: Option<String>,
    /// Framework name shown in `weir status`.
    #[arg(long, default_value = "weir-run")]
    name: String,
    /// The user the tasks run as on agents that switch users
    /// (agent.tasks.switch-user); default: $USER.
    #[arg(long)]
    user: Option<String>,
    /// The command; a single word with spaces or shell syntax runs under /bin/sh -c.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Debug, Clone)]
struct Outcome {
    state: TaskState,
    code: u8,
    message: String,
}

fn outcome(status: &v1::TaskStatus, state: TaskState) -> Outcome {
    let code = match state {
        TaskState::Finished => 0,
        _ => match (status.exit_code, status.signal) {
            (Some(c), _) if (1..=255).contains(&c) => c as u8,
            (_, Some(s)) if (1..=127).contains(&s) => 128 + s as u8,
            _ => 1,
        },
    };
    Outcome { state, code, message: status.message.clone() }
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let config = settings::load(options, &[Daemon::Broker], "warn")?;
    let broker = settings::broker_address(&config, args.broker.clone())?;
    let reserved_for = match (&args.volume, &args.role) {
        (Some(_), Some(role)) => format!("({role})"),
        _ => String::new(),
    };
    let wanted = ResourceSet::parse(&format!("cpus{reserved_for}:{};mem{reserved_for}:{}", args.cpus, args.mem))
        .map_err(|e| settings::ConfigProblem(format!("--cpus/--mem: {e}")))?;
    if wanted.total().cpus.is_zero() && wanted.total().mem.is_zero() {
        return Err(settings::ConfigProblem("--cpus and --mem cannot both be 0".into()).into());
    }
    let command = if args.command.len() == 1 {
        v1::CommandInfo { shell: true, value: args.command[0].clone(), ..Default::default() }
    } else {
        v1::CommandInfo { shell: false, value: args.command[0].clone(), arguments: args.command.clone(), ..Default::default() }
    };
    let mut fw_config = FrameworkConfig::new(broker.clone(), args.name.clone());
    fw_config.token = settings::token();
    fw_config.tls_ca = settings::tls_ca();
    fw_config.tls_identity = settings::tls_identity();
    fw_config.roles = args.role.iter().cloned().collect();
    if let Some(user) = &args.user {
        fw_config.user = user.clone();
    }
    // Behind ZooKeeper, brokers fail over: follow the new leader, and give
    // it time to hear from us again before it kills what we started.
    if weir_ha::ZkAddress::is_zk(&broker) {
        fw_config.reconnect = true;
        fw_config.failover_timeout = Duration::from_secs(30);
    } else {
        fw_config.reconnect = false;
    }
    let mut framework = Framework::subscribe(fw_config)
        .await
        .with_context(|| format!("cannot subscribe to the broker at {broker} (is `weir standalone` running?)"))?;
    eprintln!("weir run: framework {} subscribed; waiting for {} × {wanted}", framework.id(), args.instances);

    let total = args.instances as usize;
    let mut launched = 0usize;
    let mut agents_of: BTreeMap<TaskId, AgentId> = BTreeMap::new();
    let mut outcomes: Vec<(TaskId, Outcome)> = Vec::new();
    let mut streams: BTreeMap<TaskId, watch::Sender<bool>> = BTreeMap::new();
    let mut stream_handles = Vec::new();
    let mut interrupted = false;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let ctrl_c = super::shutdown_signal();
    tokio::pin!(ctrl_c);

    while outcomes.len() < total {
        let event = tokio::select! {
            e = framework.next_event() => e?,
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                eprintln!("weir run: interrupted; killing {} task(s)", agents_of.len().saturating_sub(outcomes.len()));
                for (task, agent) in &agents_of {
                    if !outcomes.iter().any(|(t, _)| t == task) {
                        framework.kill(task, Some(agent)).await?;
                    }
                }
                if launched < total {
                    // Nothing more will start; count the rest as not run.
                    break;
                }
                continue;
            }
            _ = tokio::time::sleep(Duration::from_secs(5)), if launched < total => {
                if last_progress.elapsed() >= Duration::from_secs(5) {
                    eprintln!("weir run: still waiting for offers ({launched}/{total} launched, {:.0}s)", started.elapsed().as_secs_f64());
                    last_progress = Instant::now();
                }
                continue;
            }
        };
        let Some(event) = event else { bail!("the broker closed the stream") };
        match event.kind {
            Some(v1::event::Kind::Offers(offers)) => {
                for offer in offers.offers {
                    let offer_id = OfferId::new(offer.id.clone());
                    let mut available = resources_from_proto("offer", &offer.resources).context("broker sent a bad offer")?;
                    let mut tasks = Vec::new();
                    while launched < total {
                        let Ok(rest) = available.checked_sub(&wanted) else { break };
                        available = rest;
                        let id = TaskId::new(format!("{}-{launched}", sanitize(&args.name)));
                        tasks.push(v1::TaskInfo {
                            task_id: id.to_string(),
                            name: args.name.clone(),
                            agent_id: offer.agent_id.clone(),
                            resources: resources_to_proto(&wanted),
                            command: Some(command.clone()),
                            volumes: args
                                .volume
                                .iter()
                                .map(|v| v1::VolumeMount {
                                    volume_id: v.clone(),
                                    container_path: args.volume_path.clone().unwrap_or_default(),
                                    read_only: false,
                                })
                                .collect(),
                            ..Default::default()
                        });
                        agents_of.insert(id, AgentId::new(offer.agent_id.clone()));
                        launched += 1;
                    }
                    if tasks.is_empty() {
                        framework.decline(&[offer_id], Some(Duration::from_secs(1))).await?;
                    } else {
                        eprintln!("weir run: launching {} task(s) on {}", tasks.len(), offer.hostname);
                        framework.launch(&[offer_id], tasks, Some(Duration::from_secs(5))).await?;
                    }
                }
                if launched == total {
                    framework.suppress().await?;
                }
            }
            Some(v1::event::Kind::Update(update)) => {
                let Some(status) = update.status else { continue };
                framework.acknowledge(&status).await?;
                let state = task_state_from_proto("status.state", status.state).context("broker sent a bad update")?;
                let task = TaskId::new(status.task_id.clone());
                eprintln!("weir run: {task} {state}{}", if status.message.is_empty() { String::new() } else { format!(": {}", super::printable(&status.message)) });
                if state == TaskState::Running && !streams.contains_key(&task) {
                    let (tx, rx) = watch::channel(false);
                    streams.insert(task.clone(), tx);
                    let agent = agents_of.get(&task).cloned().unwrap_or_else(|| AgentId::new(status.agent_id.clone()));
                    stream_handles.push(tokio::spawn(stream_output(broker.clone(), framework.id().to_string(), task.clone(), agent, rx)));
                }
                if state.is_terminal() && !outcomes.iter().any(|(t, _)| t == &task) {
                    if let Some(tx) = streams.get(&task) {
                        let _ = tx.send(true);
                    }
                    outcomes.push((task, outcome(&status, state)));
                }
            }
            Some(v1::event::Kind::Error(e)) => bail!("the broker reported an error: {}", e.message),
            Some(v1::event::Kind::Rescind(_)) | Some(v1::event::Kind::Heartbeat(_)) | Some(v1::event::Kind::Subscribed(_)) => {}
            Some(v1::event::Kind::Failure(f)) => eprintln!("weir run: agent {} failed: {}", super::printable(&f.agent_id), super::printable(&f.message)),
            // `weir run` makes no resource operations.
            Some(v1::event::Kind::OperationStatus(_)) => {}
            // Its task cannot move or checkpoint: it runs until the deadline.
            Some(v1::event::Kind::Revocation(r)) => eprintln!(
                "weir run: {} task(s) revoked for role {} (below its guarantee); killed at the deadline",
                r.tasks.len(),
                super::printable(&r.for_role)
            ),
            // Its tasks cannot move: they run until the drain kills them.
            Some(v1::event::Kind::AgentDraining(d)) => eprintln!(
                "weir run: agent {} ({}) is draining; tasks there will be killed at its deadline",
                super::printable(&d.agent_id),
                super::printable(&d.hostname)
            ),
            None => {}
        }
    }
    for tx in streams.values() {
        let _ = tx.send(true);
    }
    for handle in stream_handles {
        let _ = handle.await;
    }
    let _ = framework.teardown().await;
    if interrupted {
        return Ok(ExitCode::from(130));
    }
    let first_failure = outcomes.iter().find(|(_, o)| o.state != TaskState::Finished);
    match first_failure {
        None => Ok(ExitCode::SUCCESS),
        Some((task, o)) => {
            eprintln!("weir run: {task} ended {}{} (exit code {})", o.state, if o.message.is_empty() { String::new() } else { format!(": {}", super::printable(&o.message)) }, o.code);
            Ok(ExitCode::from(o.code))
        }
    }
}

fn sanitize(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    s.chars().take(64).collect()
}

/// Streams a task's stdout and stderr until told the task ended.
async fn stream_output(broker: String, framework: String, task: TaskId, agent: AgentId, done: watch::Receiver<bool>) {
    let Some(agent) = agent_http_address(&broker, &agent).await else {
        eprintln!("weir run: cannot find the agent of {task}; its output will not be shown");
        return;
    };
    let streams = [super::sandbox::Stream::Stdout, super::sandbox::Stream::Stderr];
    if let Err(e) = super::sandbox::copy_output(&agent, &framework, task.as_str(), &streams, done).await {
        eprintln!("weir run: cannot show the output of {task}: {e}");
    }
}

async fn agent_http_address(broker: &str, agent: &AgentId) -> Option<String> {
    let (_, state) = super::status::fetch_state(broker).await.ok()?;
    state.agents.iter().find(|a| a.id == agent.as_str()).map(|a| a.http_address.clone())
}
