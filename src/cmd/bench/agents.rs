//! `weir bench agents --count N`: N emulated agents (weir_agent::emulated)
//! against a real `weir broker` process, then a probe framework.
//!
//! Phases, each bounded:
//! 1. start the broker (its heartbeat interval from `--heartbeat-seconds`);
//! 2. open N / `--agents-per-connection` HTTP/2 connections and attach every
//!    agent; time until the last REGISTERED (`--register-timeout`);
//! 3. subscribe the probe (weir-sdk): it keeps a few offers, declines the
//!    rest with `--refuse-seconds` (the broker's default filter), and
//!    launches `--probe-rate` short tasks a second; warm up for one filter
//!    period, so the initial offer of every agent is behind us;
//! 4. measure for `--duration` seconds: broker CPU (utime + stime from
//!    /proc/PID/stat), resident memory (VmRSS, VmHWM from /proc/PID/status),
//!    offers received per second, and per probe task the time from sending
//!    ACCEPT to seeing TASK_RUNNING and TASK_FINISHED;
//! 5. stop everything.

use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::watch;
use weir_agent::emulated::{self, EmulatedAgent, EmulatorStats};
use weir_model::{AgentId, OfferId, ResourceSet};
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};

use super::daemons::{self, cpu_seconds, memory, mib, percentile, Scratch};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many emulated agents.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    count: u64,
    /// Agents sharing one HTTP/2 connection (each is its own stream; the
    /// broker allows 200 streams per connection).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=200))]
    agents_per_connection: u64,
    /// What each agent offers.
    #[arg(long, default_value = "cpus:8;mem:32768;disk:100000;ports:[31000-32000]")]
    resources: String,
    /// Agent heartbeat interval the broker asks for (agent.heartbeat.interval).
    #[arg(long, default_value_t = 1.0)]
    heartbeat_seconds: f64,
    /// Seconds to measure the steady state.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Probe tasks launched per second.
    #[arg(long, default_value_t = 10.0)]
    probe_rate: f64,
    /// The probe's decline filter (the broker's default is 5 s).
    #[arg(long, default_value_t = 5.0)]
    refuse_seconds: f64,
    /// Give up if the agents have not all registered by then (seconds).
    #[arg(long, default_value_t = 180.0)]
    register_timeout: f64,
    /// Extra configuration for the broker (repeatable), e.g. broker.allocation.interval=100ms.
    #[arg(long = "broker-define", value_name = "KEY=VALUE")]
    broker_defines: Vec<String>,
    /// The agent registration secret the emulated agents send (the broker's
    /// broker.auth.agent.secret.file). With `--ca-file` they connect over
    /// TLS, and the probe sends `--token-file`'s token: security on.
    #[arg(long, value_name = "FILE")]
    agent_secret_file: Option<std::path::PathBuf>,
}

/// Offers the probe keeps for its launches (the rest are declined): enough
/// for one filter period of launches, as declined agents come back in bursts.
fn held_offers(rate: f64, refuse: Duration) -> usize {
    (rate * (refuse.as_secs_f64() + 2.0)).ceil().max(8.0) as usize
}

/// What one run measured.
pub(super) struct AgentsReport {
    /// The broker's resident memory at the end of the window, bytes.
    pub broker_rss: u64,
    /// ACCEPT → TASK_RUNNING of the window's probe tasks, seconds.
    pub running_p50: f64,
    pub running_p99: f64,
    /// The one-line summary `weir bench agents` prints.
    pub summary: String,
}

pub async fn main(args: Args) -> Result<ExitCode> {
    let report = measure(args).await?;
    println!("{}", report.summary);
    Ok(ExitCode::SUCCESS)
}

/// Starts the broker, the agents and the probe, measures, stops them.
pub(super) async fn measure(args: Args) -> Result<AgentsReport> {
    if !(args.probe_rate > 0.0 && args.probe_rate <= 1000.0) {
        bail!("--probe-rate must be in (0, 1000]");
    }
    if !(args.heartbeat_seconds >= 0.01 && args.duration > 0.0 && args.refuse_seconds >= 0.0) {
        bail!("--heartbeat-seconds must be ≥ 0.01, --duration > 0, --refuse-seconds ≥ 0");
    }
    let fds = daemons::raise_fd_limit();
    let resources = ResourceSet::parse(&args.resources).map_err(|e| anyhow::anyhow!("--resources: {e}"))?;
    let scratch = Scratch::new("agents")?;
    let mut defines = vec![
        format!("agent.heartbeat.interval={}ms", (args.heartbeat_seconds * 1000.0).round() as u64),
        "broker.max.message.size=64m".to_owned(),
    ];
    defines.extend(args.broker_defines.iter().cloned());
    let (broker, addr) = daemons::start_broker(&scratch, &defines).await?;
    eprintln!("weir bench: broker pid {} on {addr} (log {}); fd limit {fds}", broker.pid, broker.log.display());
    let result = run(&args, &addr, broker.pid, &resources).await;
    broker.stop(Duration::from_secs(10)).await;
    result
}

async fn run(args: &Args, addr: &str, broker_pid: u32, resources: &ResourceSet) -> Result<AgentsReport> {
    let n = args.count;
    let stats = Arc::new(EmulatorStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let wire_resources = resources_to_proto(resources);
    let gen_cpu0 = cpu_seconds(std::process::id())?;
    let ca = crate::settings::tls_ca();
    let secret = match &args.agent_secret_file {
        None => None,
        Some(path) => Some(Arc::new(weir_net::secret::Secret::new(
            weir_net::secret::read_secret_value(path).map_err(|e| anyhow::anyhow!("--agent-secret-file: {e}"))?,
        ))),
    };

    // Phase 2: connections, then agents; registration is timed from the
    // first connection attempt to the last REGISTERED.
    let started = Instant::now();
    let connections = n.div_ceil(args.agents_per_connection);
    let mut agent_tasks = Vec::with_capacity(n as usize);
    let mut connecting = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (addr, ca) = (addr.to_owned(), ca.clone());
        connecting.spawn(async move { (c, emulated::connect(&addr, ca.as_deref()).await) });
    }
    while let Some(joined) = connecting.join_next().await {
        let (c, channel) = joined.context("connection task")?;
        let channel = channel.map_err(|e| anyhow::anyhow!("connection {c} to the broker: {e}"))?;
        let first = c * args.agents_per_connection;
        for index in first..(first + args.agents_per_connection).min(n) {
            let agent = EmulatedAgent { index, hostname: format!("emu-{index:06}"), resources: wire_resources.clone() };
            let (channel, secret, stats, stop, first_error) = (channel.clone(), secret.clone(), stats.clone(), stop_rx.clone(), first_error.clone());
            agent_tasks.push(tokio::spawn(async move {
                if let Err(e) = emulated::run(channel, secret, agent, Duration::from_secs(10), stats, stop).await {
                    first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                }
            }));
        }
    }
    let connected = started.elapsed();
    let deadline = started + Duration::from_secs_f64(args.register_timeout);
    let mut last_report = Instant::now();
    while stats.registered.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} agents registered within {}s (first error: {:?})",
                stats.registered.load(Ordering::Relaxed),
                args.register_timeout,
                first_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
            );
        }
        if stats.refused.load(Ordering::Relaxed) > 0 {
            bail!("the broker refused an agent: {:?}", first_error.lock().unwrap_or_else(|p| p.into_inner()).clone());
        }
        // Emulated agents do not retry: one that could not attach (no
        // secret, say) will never register.
        if let Some(e) = first_error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            bail!("an agent could not attach: {e}");
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!("weir bench: {} of {n} registered after {:.1}s", stats.registered.load(Ordering::Relaxed), started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let registered_in = started.elapsed();
    let (rss_registered, _) = memory(broker_pid)?;
    eprintln!(
        "weir bench: {n} agents on {connections} connections registered in {:.2}s (connections open after {:.2}s); broker RSS {:.0} MiB",
        registered_in.as_secs_f64(),
        connected.as_secs_f64(),
        mib(rss_registered)
    );

    // Phases 3 and 4: the probe, warm-up, then the measured window.
    let warmup = Duration::from_secs_f64((args.refuse_seconds + 2.0).max(5.0));
    let window = Duration::from_secs_f64(args.duration);
    let probe_started = Instant::now();
    let window_start = probe_started + warmup;
    let window_end = window_start + window;
    let probe = tokio::spawn(probe(
        addr.to_owned(),
        args.probe_rate,
        Duration::from_secs_f64(args.refuse_seconds),
        window_start,
        window_end,
    ));
    tokio::time::sleep_until(window_start.into()).await;
    let broker_cpu0 = cpu_seconds(broker_pid)?;
    let hb0 = stats.heartbeats.load(Ordering::Relaxed);
    tokio::time::sleep_until(window_end.into()).await;
    let broker_cpu = (cpu_seconds(broker_pid)? - broker_cpu0) / window.as_secs_f64();
    let heartbeats = (stats.heartbeats.load(Ordering::Relaxed) - hb0) as f64 / window.as_secs_f64();
    let (rss, peak) = memory(broker_pid)?;
    let report = probe.await.context("probe task")??;
    let gen_cpu = (cpu_seconds(std::process::id())? - gen_cpu0) / started.elapsed().as_secs_f64();
    let still_registered = stats.registered.load(Ordering::Relaxed) - stats.streams_ended.load(Ordering::Relaxed);

    let _ = stop_tx.send(true);
    for t in &agent_tasks {
        t.abort();
    }

    let mut running = report.running;
    let mut finished = report.finished;
    let mut to_agent = report.to_agent;
    let ms = |s: f64| s * 1000.0;
    let (running_p50, running_p99) = (percentile(&mut running, 50.0), percentile(&mut running, 99.0));
    let summary = format!(
        "bench agents: agents={n} connections={connections} registered_in={:.2}s broker_cpu={:.0}% broker_rss={:.0}MiB broker_rss_peak={:.0}MiB \
         offers_per_s={:.0} heartbeats_per_s={:.0} probe_launches={} probe_running_p50={:.1}ms probe_running_p99={:.1}ms \
         probe_finished_p50={:.1}ms probe_finished_p99={:.1}ms probe_to_agent_p50={:.1}ms probe_to_agent_p99={:.1}ms probe_lost={} probe_no_offer={} agents_connected_at_end={still_registered} generator_cpu={:.0}%",
        registered_in.as_secs_f64(),
        broker_cpu * 100.0,
        mib(rss),
        mib(peak),
        report.offers as f64 / window.as_secs_f64(),
        heartbeats,
        finished.len(),
        ms(running_p50),
        ms(running_p99),
        ms(percentile(&mut finished, 50.0)),
        ms(percentile(&mut finished, 99.0)),
        ms(percentile(&mut to_agent, 50.0)),
        ms(percentile(&mut to_agent, 99.0)),
        report.lost,
        report.no_offer,
        gen_cpu * 100.0,
    );
    Ok(AgentsReport { broker_rss: rss, running_p50, running_p99, summary })
}

struct ProbeReport {
    /// Seconds from ACCEPT to TASK_RUNNING / TASK_FINISHED, for launches
    /// made inside the window.
    running: Vec<f64>,
    finished: Vec<f64>,
    /// ACCEPT → the agent's RUNNING timestamp (the way down, through the broker).
    to_agent: Vec<f64>,
    /// Offers received inside the window.
    offers: u64,
    /// Window launches that ended otherwise or not within 10 s.
    lost: u64,
    /// Launch slots in the window with no offer at hand.
    no_offer: u64,
}

struct Launch {
    sent: Instant,
    /// Wall clock at ACCEPT, to split the path at the agent's timestamp.
    sent_wall: f64,
    running: Option<Instant>,
    in_window: bool,
}

fn wall_clock() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The probe framework: holds a few offers, declines the rest, launches
/// `rate` tasks a second until `window_end`, then waits (at most 10 s) for
/// the window's tasks to finish.
async fn probe(broker: String, rate: f64, refuse: Duration, window_start: Instant, window_end: Instant) -> Result<ProbeReport> {
    let mut config = FrameworkConfig::new(broker, "weir-bench-probe");
    config.token = crate::settings::token();
    config.tls_ca = crate::settings::tls_ca();
    config.tls_identity = crate::settings::tls_identity();
    config.reconnect = false;
    let mut framework = Framework::subscribe(config).await.context("subscribing the probe")?;
    let task_resources = resources_to_proto(&ResourceSet::parse("cpus:0.1;mem:32").map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut held: VecDeque<(OfferId, AgentId)> = VecDeque::new();
    let hold = held_offers(rate, refuse);
    let mut launches: HashMap<String, Launch> = HashMap::new();
    let mut report = ProbeReport { running: Vec::new(), finished: Vec::new(), to_agent: Vec::new(), offers: 0, lost: 0, no_offer: 0 };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let give_up = window_end + Duration::from_secs(10);
    let mut next_task = 0u64;
    let mut outstanding = 0u64;
    loop {
        let now = Instant::now();
        if now >= window_end && outstanding == 0 {
            break;
        }
        if now >= give_up {
            report.lost += outstanding;
            break;
        }
        tokio::select! {
            event = framework.next_event() => {
                let Some(event) = event? else { bail!("the broker closed the probe's stream") };
                match event.kind {
                    Some(v1::event::Kind::Offers(offers)) => {
                        let received = Instant::now();
                        if received >= window_start && received < window_end {
                            report.offers += offers.offers.len() as u64;
                        }
                        let mut decline = Vec::new();
                        for offer in offers.offers {
                            if held.len() < hold {
                                held.push_back((OfferId::new(offer.id), AgentId::new(offer.agent_id)));
                            } else {
                                decline.push(OfferId::new(offer.id));
                            }
                        }
                        if !decline.is_empty() {
                            framework.decline(&decline, Some(refuse)).await?;
                        }
                    }
                    Some(v1::event::Kind::Rescind(r)) => held.retain(|(id, _)| id.as_str() != r.offer_id),
                    Some(v1::event::Kind::Update(u)) => {
                        let Some(status) = u.status else { continue };
                        framework.acknowledge(&status).await?;
                        let seen = Instant::now();
                        let Some(launch) = launches.get_mut(&status.task_id) else { continue };
                        match v1::TaskState::try_from(status.state) {
                            Ok(v1::TaskState::TaskRunning) => {
                                launch.running = Some(seen);
                                if launch.in_window {
                                    report.to_agent.push(status.timestamp - launch.sent_wall);
                                }
                            }
                            Ok(v1::TaskState::TaskFinished) => {
                                let launch = launches.remove(&status.task_id).context("launch vanished")?;
                                if launch.in_window {
                                    outstanding -= 1;
                                    if let Some(r) = launch.running {
                                        report.running.push((r - launch.sent).as_secs_f64());
                                    }
                                    report.finished.push((seen - launch.sent).as_secs_f64());
                                }
                            }
                            Ok(v1::TaskState::TaskStarting | v1::TaskState::TaskStaging) => {}
                            _ => {
                                let launch = launches.remove(&status.task_id).context("launch vanished")?;
                                if launch.in_window {
                                    outstanding -= 1;
                                    report.lost += 1;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ = ticker.tick(), if now < window_end => {
                let in_window = now >= window_start;
                let Some((offer, agent)) = held.pop_front() else {
                    if in_window {
                        report.no_offer += 1;
                    }
                    continue;
                };
                next_task += 1;
                let task_id = format!("probe-{next_task}");
                let task = v1::TaskInfo {
                    task_id: task_id.clone(),
                    name: "probe".to_owned(),
                    agent_id: agent.to_string(),
                    resources: task_resources.clone(),
                    command: Some(v1::CommandInfo { shell: true, value: "true".to_owned(), ..Default::default() }),
                    ..Default::default()
                };
                let (sent, sent_wall) = (Instant::now(), wall_clock());
                framework.launch(&[offer], vec![task], Some(refuse)).await?;
                if in_window {
                    outstanding += 1;
                }
                launches.insert(task_id, Launch { sent, sent_wall, running: None, in_window });
            }
            _ = tokio::time::sleep_until(give_up.into()) => {}
        }
    }
    let _ = framework.teardown().await;
    Ok(report)
}
