//! The agent's async shell. Every input to the core (a broker message, a
//! process exit, a timer) goes through one channel and one loop, so the
//! core sees them in a single order; the loop carries out the effects.
//!
//! - The broker stream (`weir.v1.Agent/Attach`) is opened by the agent and
//!   re-opened with capped backoff when it breaks; each new stream starts
//!   with REGISTER carrying the agent id and its tasks.
//! - HTTP on `listen`: `/health`, `/state`, and `/files/read` (bytes of a
//!   task's `stdout` or `stderr`, by offset and length; nothing outside a
//!   sandbox can be named).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use weir_ha::{LeaderInfo, ZkAddress};
use weir_model::{AgentId, FrameworkId, ResourceSet, TaskId};
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;
use weir_proto::v1::agent_client::AgentClient;

use crate::core::{AgentCore, CoreSettings, Effect, Input};
use crate::isolation;
use crate::launcher::{self, LaunchContext};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot detect this machine's resources: {0}")]
    Detect(String),
    #[error("agent resources: {0}")]
    BadResources(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the broker refused this agent: {0}")]
    Refused(String),
    #[error("broker address {addr:?} is not valid: {reason}")]
    BadBroker { addr: String, reason: String },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
}

/// Everything the agent needs, read from configuration by the binary.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// `host:port` of the broker (an `http://` prefix is optional).
    pub broker: String,
    /// The HTTP endpoint; port 0 picks a free port.
    pub listen: SocketAddr,
    pub work_dir: PathBuf,
    /// A resource spec; `None` detects the machine's resources.
    pub resources: Option<String>,
    pub hostname: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub heartbeat_interval: Duration,
    pub kill_grace_period: Duration,
    pub status_update_retry_interval: Duration,
    /// The `weir` binary that supervises each task (`weir executor`), so
    /// tasks outlive the agent; `None` runs them as the agent's children.
    pub supervisor: Option<PathBuf>,
    /// `cgroups` (falls back to plain processes, loudly, where cgroups
    /// cannot be used) or `none`.
    pub isolation: isolation::Mode,
    /// Sandboxes of ended tasks untouched this long are deleted.
    pub sandbox_gc_age: Duration,
    /// Kill every task when the agent stops (standalone); otherwise they
    /// keep running and a restarted agent re-attaches to them.
    pub kill_tasks_on_shutdown: bool,
}

/// The largest checkpoint read back.
const MAX_CHECKPOINT_BYTES: u64 = 256 << 20;

fn checkpoint_path(work_dir: &std::path::Path) -> PathBuf {
    work_dir.join("meta").join("checkpoint.pb")
}

/// The checkpoint's framing: magic, payload length, payload, checksum, so a
/// truncated or corrupted file is told from a valid one (a bare protobuf
/// cut at a field boundary would decode as a smaller, wrong state).
const CHECKPOINT_MAGIC: &[u8; 8] = b"WEIRCKP1";

/// FNV-1a 64: enough to catch torn and damaged files (not an adversary),
/// and stable across releases (it also names cgroup scopes).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

fn read_checkpoint(path: &std::path::Path) -> Result<Option<v1::AgentCheckpoint>, AgentError> {
    use prost::Message;
    let bad = |reason: String| AgentError::Checkpoint { path: path.to_owned(), reason };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    if meta.len() > MAX_CHECKPOINT_BYTES {
        return Err(bad(format!("{} bytes is more than the {MAX_CHECKPOINT_BYTES} allowed", meta.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let header = 8 + 8;
    if bytes.len() < 8 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(bad(format!("not a Weir checkpoint ({} bytes, bad or missing header)", bytes.len())));
    }
    if bytes.len() < header + 8 {
        return Err(bad(format!("truncated or padded: {} bytes is shorter than any checkpoint", bytes.len())));
    }
    let len = u64::from_be_bytes(bytes[8..16].try_into().unwrap_or_default()) as usize;
    if bytes.len() != header + len + 8 {
        return Err(bad(format!("truncated or padded: header says {len} bytes of state, file holds {}", bytes.len().saturating_sub(header + 8))));
    }
    let payload = &bytes[header..header + len];
    let stored = u64::from_be_bytes(bytes[header + len..].try_into().unwrap_or_default());
    if stored != checksum(payload) {
        return Err(bad("checksum mismatch: the file is damaged".to_owned()));
    }
    v1::AgentCheckpoint::decode(payload).map(Some).map_err(|e| bad(format!("not a valid checkpoint: {e}")))
}

/// Reads the checkpoint; a damaged one is moved aside (kept for a person
/// to look at), reported by name, and the agent starts afresh.
fn load_checkpoint(path: &std::path::Path) -> Option<v1::AgentCheckpoint> {
    match read_checkpoint(path) {
        Ok(cp) => cp,
        Err(err) => {
            let aside = path.with_extension(format!("corrupt-{}", SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)));
            let moved = std::fs::rename(path, &aside);
            tracing::error!(
                error = %err,
                moved_to = %aside.display(),
                moved = moved.is_ok(),
                "the agent's checkpoint is unusable; starting afresh as a new agent (tasks it ran are unknown to it)"
            );
            None
        }
    }
}

/// Write, fsync, rename: a crash leaves the old checkpoint or the new one.
fn write_checkpoint(path: &std::path::Path, checkpoint: &v1::AgentCheckpoint) -> std::io::Result<()> {
    use prost::Message;
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    let payload = checkpoint.encode_to_vec();
    f.write_all(CHECKPOINT_MAGIC)?;
    f.write_all(&(payload.len() as u64).to_be_bytes())?;
    f.write_all(&payload)?;
    f.write_all(&checksum(&payload).to_be_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Refusals in a row, before the first registration, after which the agent
/// gives up (the broker will not change its mind about bad resources).
const MAX_FIRST_REFUSALS: u32 = 3;
/// The most bytes one `/files/read` returns.
const MAX_READ: u64 = 1 << 20;

struct Shared {
    /// With cgroup isolation: this agent's part of the cgroup tree.
    cgroup_scope: Option<String>,
    core: Mutex<AgentCore>,
    checkpoint: PathBuf,
    supervisor: Option<PathBuf>,
    outbound: Mutex<Option<mpsc::Sender<v1::AgentMessage>>>,
    events: mpsc::UnboundedSender<Input>,
    started: Instant,
    sandboxes: PathBuf,
    info: v1::AgentInfo,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, AgentCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, msg: v1::AgentMessage) {
        let outbound = self.outbound.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = outbound.as_ref() {
            // A full or closed stream loses the message; status updates are
            // resent by the core until acknowledged, heartbeats recur.
            let _ = tx.try_send(msg);
        }
    }
}

fn wall_clock() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Runs the agent until `shutdown` resolves; then kills every task (TERM,
/// then KILL after the grace period), waits for them and returns.
pub async fn run(settings: AgentSettings, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), AgentError> {
    let resources = match &settings.resources {
        Some(spec) => ResourceSet::parse(spec).map_err(|e| AgentError::BadResources(e.to_string()))?,
        None => crate::detect::detect_resources(&settings.work_dir)?,
    };
    if resources.is_empty() {
        return Err(AgentError::BadResources("the agent has no resources to offer".to_owned()));
    }
    let sandboxes = settings.work_dir.join("sandboxes");
    std::fs::create_dir_all(&sandboxes)
        .map_err(|e| AgentError::Detect(format!("cannot create {}: {e}", sandboxes.display())))?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| AgentError::Bind { addr: settings.listen, source })?;
    let http_addr = listener.local_addr().map_err(|source| AgentError::Bind { addr: settings.listen, source })?;
    let hostname = settings.hostname.clone().unwrap_or_else(crate::detect::hostname);
    let info = v1::AgentInfo {
        id: String::new(),
        hostname: hostname.clone(),
        resources: resources_to_proto(&resources),
        attributes: settings.attributes.iter().map(|(n, v)| v1::Attribute { name: n.clone(), value: v.clone() }).collect(),
        http_address: http_addr.to_string(),
    };
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    let core = AgentCore::new(
        CoreSettings {
            kill_grace_period: settings.kill_grace_period,
            status_update_retry_interval: settings.status_update_retry_interval,
        },
        nonce,
    );
    let mut core = core;
    let checkpoint = checkpoint_path(&settings.work_dir);
    let recovered = match load_checkpoint(&checkpoint) {
        Some(cp) => {
            let live = core.recover(cp).map_err(|reason| AgentError::Checkpoint { path: checkpoint.clone(), reason })?;
            tracing::info!(agent_id = ?core.agent_id().map(|a| a.to_string()), tasks = core.live_tasks(), supervisors = live.len(), "recovered from checkpoint");
            live
        }
        None => Vec::new(),
    };
    let cgroup_scope = match (settings.isolation, &settings.supervisor) {
        (isolation::Mode::None, _) => {
            tracing::warn!("agent.isolation = none: tasks run as plain processes with no resource limits");
            None
        }
        (isolation::Mode::Cgroups, None) => {
            tracing::error!("cgroup isolation needs task supervisors; tasks run as plain processes with NO resource limits");
            None
        }
        (isolation::Mode::Cgroups, Some(_)) => match isolation::available() {
            Ok(()) => Some(scope_of(&settings.work_dir)),
            Err(reason) => {
                tracing::error!(%reason, "cgroups are not available; tasks run as plain processes with NO resource limits");
                None
            }
        },
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        cgroup_scope,
        checkpoint,
        supervisor: settings.supervisor.clone(),
        core: Mutex::new(core),
        outbound: Mutex::new(None),
        events: events_tx,
        started: Instant::now(),
        sandboxes,
        info,
    });
    tracing::info!(%hostname, %http_addr, resources = %resources, broker = %settings.broker, "agent starting");

    let http = tokio::spawn({
        let router = router(shared.clone());
        async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "agent HTTP server failed");
            }
        }
    });
    // Tasks that ran under a supervisor before the restart: either they
    // ended meanwhile (their supervisor left a record) or they still run
    // and are watched until they do.
    for (framework, task, pid, sandbox) in recovered {
        if let Some(record) = launcher::read_exit(&sandbox) {
            tracing::info!(framework_id = %framework, task_id = %task, ?record, "task ended while the agent was down");
            let _ = shared.events.send(exit_input(shared.cgroup_scope.as_deref(), framework, task, Some(record)));
        } else if launcher::supervisor_alive(pid, &sandbox) {
            tracing::info!(framework_id = %framework, task_id = %task, pid, "re-attached to a running task");
            tokio::spawn(watch_supervisor(shared.clone(), framework, task, pid, sandbox));
        } else {
            tracing::warn!(framework_id = %framework, task_id = %task, pid, "task's supervisor is gone and left no exit status");
            let _ = shared.events.send(exit_input(shared.cgroup_scope.as_deref(), framework, task, None));
        }
    }
    let event_loop = tokio::spawn(event_loop(shared.clone(), events_rx));
    let gc = tokio::spawn({
        let shared = shared.clone();
        let age = settings.sandbox_gc_age;
        async move {
            let mut interval = tokio::time::interval(Duration::from_secs(3600));
            loop {
                interval.tick().await;
                let keep = shared.core().live_sandboxes();
                let cutoff = SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH);
                let root = shared.sandboxes.clone();
                let deleted = tokio::task::spawn_blocking(move || launcher::collect_garbage(&root, &keep, cutoff)).await.unwrap_or_default();
                if !deleted.is_empty() {
                    tracing::info!(count = deleted.len(), "old sandboxes deleted");
                }
            }
        }
    });
    let ticker = tokio::spawn({
        let events = shared.events.clone();
        let every = settings.status_update_retry_interval.min(Duration::from_millis(250)).max(Duration::from_millis(20));
        async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                if events.send(Input::Tick).is_err() {
                    return;
                }
            }
        }
    });
    let (fatal_tx, mut fatal_rx) = watch::channel::<Option<String>>(None);
    let connection = tokio::spawn(connection_loop(shared.clone(), settings.clone(), fatal_tx));

    let fatal = tokio::select! {
        _ = shutdown => None,
        _ = fatal_rx.changed() => fatal_rx.borrow().clone(),
    };

    if settings.kill_tasks_on_shutdown {
        // Stop: kill everything, wait (bounded) for the processes to go.
        let _ = shared.events.send(Input::Shutdown);
        let limit = Instant::now() + settings.kill_grace_period + Duration::from_secs(5);
        while !shared.core().is_drained() && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let live = shared.core().live_tasks();
        if live > 0 {
            tracing::warn!(live, "tasks still running at shutdown");
        }
    } else {
        let live = shared.core().live_tasks();
        tracing::info!(live, "agent stopping; its tasks keep running and a restarted agent re-attaches to them");
    }
    connection.abort();
    gc.abort();
    ticker.abort();
    http.abort();
    event_loop.abort();
    tracing::info!("agent stopped");
    match fatal {
        Some(message) => Err(AgentError::Refused(message)),
        None => Ok(()),
    }
}

/// Inputs handled before one checkpoint write at most. Each write is
/// fsync'd (milliseconds), so inputs that queued up meanwhile share one
/// write (group commit) instead of paying one each.
const INPUTS_PER_CHECKPOINT: usize = 1024;

async fn event_loop(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Input>) {
    let ctx_root = shared.sandboxes.clone();
    while let Some(input) = events.recv().await {
        let (effects, agent_id) = {
            let mut core = shared.core();
            let mut effects = core.handle(input, shared.started.elapsed(), wall_clock());
            for _ in 1..INPUTS_PER_CHECKPOINT {
                let Ok(input) = events.try_recv() else { break };
                effects.extend(core.handle(input, shared.started.elapsed(), wall_clock()));
            }
            if core.is_dirty() {
                let checkpoint = core.checkpoint();
                // Written before any effect of these inputs is carried out,
                // so what was promised (an update queued, a task started)
                // survives a crash.
                if let Err(e) = write_checkpoint(&shared.checkpoint, &checkpoint) {
                    tracing::error!(path = %shared.checkpoint.display(), error = %e, "cannot write the checkpoint");
                }
            }
            (effects, core.agent_id().map(|a| a.to_string()).unwrap_or_default())
        };
        for effect in effects {
            match effect {
                Effect::Send(msg) => shared.send(msg),
                Effect::Signal { pid, signal, .. } => launcher::signal(pid, signal),
                Effect::Spawn { framework, task, info } => {
                    let ctx = LaunchContext { agent_id: agent_id.clone(), sandboxes: ctx_root.clone(), supervisor: shared.supervisor.clone() };
                    // Creating cgroups and starting a process take about a
                    // millisecond each; done here, one after another, they
                    // would hold every other input back. Each task's own
                    // inputs still arrive in order (Spawned, then Exited).
                    let shared = shared.clone();
                    tokio::task::spawn_blocking(move || start_task(&shared, &ctx, framework, task, &info));
                }
            }
        }
    }
}

/// Isolates and starts one task, then watches it until it exits; reports
/// each step to the event loop.
fn start_task(shared: &Arc<Shared>, ctx: &LaunchContext, framework: FrameworkId, task: TaskId, info: &v1::TaskInfo) {
    let cgroup = match &shared.cgroup_scope {
        Some(scope) => {
            let name = isolation::name(scope, framework.as_str(), task.as_str());
            let resources = weir_proto::convert::resources_from_proto("task.resources", &info.resources)
                .map(|r| r.total())
                .unwrap_or_default();
            match isolation::create(&name, &resources) {
                Ok(procs) => procs,
                Err(e) => {
                    let _ = shared.events.send(Input::SpawnFailed { framework, task, error: format!("cannot isolate the task: {e}") });
                    return;
                }
            }
        }
        None => Vec::new(),
    };
    match launcher::spawn(ctx, &framework, &task, info, &cgroup) {
        Ok(started) => {
            let started_sandbox = started.sandbox.clone();
            let _ = shared.events.send(Input::Spawned {
                framework: framework.clone(),
                task: task.clone(),
                pid: started.pid,
                sandbox: started.sandbox,
            });
            let events = shared.events.clone();
            let mut child = started.child;
            let supervised = shared.supervisor.is_some();
            let sandbox = started_sandbox;
            let scope = shared.cgroup_scope.clone();
            tokio::spawn(async move {
                let status = child.wait().await;
                let input = if supervised {
                    // The supervisor's record is the task's status; none
                    // means it was SIGKILLed too.
                    let record = launcher::read_exit(&sandbox).or(Some(launcher::ExitRecord { code: None, signal: Some(9), error: None }));
                    exit_input(scope.as_deref(), framework, task, record)
                } else {
                    let (code, signal) = status.map(launcher::exit_of).unwrap_or((None, None));
                    Input::Exited { framework, task, code, signal, limitation: None }
                };
                let _ = events.send(input);
            });
        }
        Err(e) => {
            tracing::warn!(framework_id = %framework, task_id = %task, error = %e, "cannot start task");
            let _ = shared.events.send(Input::SpawnFailed { framework, task, error: e.to_string() });
        }
    }
}

fn endpoint_of(address: &str) -> String {
    if address.starts_with("http://") || address.starts_with("https://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

async fn connection_loop(shared: Arc<Shared>, settings: AgentSettings, fatal: watch::Sender<Option<String>>) {
    // With `zk://…` the broker is whichever one leads; it is looked up
    // before every attempt and followed when it changes.
    let mut leader = match ZkAddress::is_zk(&settings.broker) {
        true => match ZkAddress::parse(&settings.broker) {
            Ok(address) => Some(weir_ha::detect(&address)),
            Err(err) => {
                let _ = fatal.send(Some(err.to_string()));
                return;
            }
        },
        false => None,
    };
    // The largest leader epoch seen: a broker with a smaller one is a
    // deposed leader and is never obeyed.
    let mut seen_epoch = 0u64;
    let mut backoff = weir_ha::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut refusals = 0u32;
    let mut ever_registered = false;
    loop {
        // Which broker to try, and the epoch it leads (as far as known).
        let (endpoint, target_epoch) = match leader.as_mut() {
            None => (endpoint_of(&settings.broker), seen_epoch),
            Some(leader) => match { let current = leader.borrow_and_update().clone(); current } {
                Some(l) => (endpoint_of(&l.address), l.epoch),
                None => {
                    tracing::info!(broker = %settings.broker, "no broker leads yet; waiting");
                    let _ = tokio::time::timeout(Duration::from_secs(5), leader.changed()).await;
                    continue;
                }
            },
        };
        match attach_once(&shared, &endpoint, &settings, leader.as_mut(), target_epoch, &mut seen_epoch).await {
            Ok(Registration::Ended) => {
                ever_registered = true;
                refusals = 0;
                backoff.reset();
            }
            Ok(Registration::Refused(message)) => {
                refusals += 1;
                tracing::error!(broker = %settings.broker, %message, "broker refused the agent");
                if !ever_registered && refusals >= MAX_FIRST_REFUSALS {
                    let _ = fatal.send(Some(message));
                    return;
                }
            }
            Err(reason) => tracing::warn!(broker = %settings.broker, %reason, backoff = ?backoff.peek(), "cannot reach the broker; retrying"),
        }
        *shared.outbound.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let _ = shared.events.send(Input::Disconnected);
        let delay = backoff.next_delay();
        match leader.as_mut() {
            // A new leader is tried at once, whatever the backoff.
            Some(leader) => tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = weir_ha::newer_leader(leader, target_epoch) => backoff.reset(),
            },
            None => tokio::time::sleep(delay).await,
        }
    }
}

enum Registration {
    /// Registered, then the stream ended.
    Ended,
    Refused(String),
}

async fn attach_once(
    shared: &Arc<Shared>,
    endpoint: &str,
    settings: &AgentSettings,
    mut leader: Option<&mut watch::Receiver<Option<LeaderInfo>>>,
    target_epoch: u64,
    seen_epoch: &mut u64,
) -> Result<Registration, String> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))?;
    let mut client = AgentClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(4096);
    let register = shared.core().register_message(shared.info.clone());
    tx.send(register).await.map_err(|e| e.to_string())?;
    let mut stream = client.attach(ReceiverStream::new(rx)).await.map_err(|s| s.message().to_owned())?.into_inner();
    *shared.outbound.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
    let heartbeat = {
        let tx = tx.clone();
        let every = settings.heartbeat_interval;
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                let usage = task_usage(&shared)
                    .into_iter()
                    .map(|(framework, task, u)| v1::TaskUsage {
                        framework_id: framework,
                        task_id: task,
                        cpu_seconds: u.cpu_seconds,
                        mem_bytes: u.mem_bytes,
                        mem_peak_bytes: u.mem_peak_bytes,
                        mem_limit_bytes: u.mem_limit_bytes,
                    })
                    .collect();
                let msg = v1::AgentMessage { kind: Some(v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat { usage })) };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut registered = false;
    // Until REGISTERED says otherwise, this stream is with the broker the
    // detector named.
    let mut stream_epoch = target_epoch;
    let result = loop {
        let next = match leader.as_deref_mut() {
            Some(leader) => tokio::select! {
                next = stream.message() => next,
                new = weir_ha::newer_leader(leader, stream_epoch) => {
                    tracing::warn!(from = stream_epoch, to = new, "another broker leads now; leaving this one");
                    break if registered { Ok(Registration::Ended) } else { Err("the leader changed".to_owned()) };
                }
            },
            None => stream.message().await,
        };
        let msg = match next {
            Ok(Some(msg)) => msg,
            Ok(None) => break if registered { Ok(Registration::Ended) } else { Err("the broker closed the stream".to_owned()) },
            Err(status) => {
                break if registered { Ok(Registration::Ended) } else { Err(status.message().to_owned()) };
            }
        };
        let input = match msg.kind {
            Some(v1::broker_message::Kind::Registered(r)) => {
                if r.leader_epoch < *seen_epoch {
                    tracing::error!(epoch = r.leader_epoch, seen = *seen_epoch, "refusing a deposed broker");
                    break Err(format!(
                        "the broker leads epoch {}, older than epoch {} already seen; it was deposed",
                        r.leader_epoch, *seen_epoch
                    ));
                }
                *seen_epoch = r.leader_epoch;
                stream_epoch = r.leader_epoch;
                registered = true;
                tracing::info!(agent_id = %r.agent_id, epoch = r.leader_epoch, "registered with the broker");
                Input::Registered { agent_id: AgentId::new(r.agent_id) }
            }
            Some(v1::broker_message::Kind::Refused(r)) => break Ok(Registration::Refused(r.message)),
            Some(v1::broker_message::Kind::RunTask(r)) => match r.task {
                Some(task) => Input::RunTask { framework: r.framework_id, task: Box::new(task) },
                None => continue,
            },
            Some(v1::broker_message::Kind::KillTask(k)) => Input::KillTask { framework: k.framework_id, task: k.task_id },
            Some(v1::broker_message::Kind::Acknowledge(a)) => {
                Input::Acknowledge { framework: a.framework_id, task: a.task_id, uuid: a.uuid }
            }
            None => continue,
        };
        if shared.events.send(input).is_err() {
            break Ok(Registration::Ended);
        }
    };
    heartbeat.abort();
    if registered {
        tracing::warn!("stream to the broker ended; reconnecting");
    }
    result
}

fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/state", get(state))
        .route("/files/read", get(read_file))
        .with_state(shared)
}

/// Usage of every running task, read from its cgroup (none without isolation).
fn task_usage(shared: &Shared) -> Vec<(String, String, isolation::Usage)> {
    let Some(scope) = &shared.cgroup_scope else { return Vec::new() };
    let running: Vec<(String, String)> = shared
        .core()
        .tasks()
        .into_iter()
        .filter(|t| t.pid.is_some())
        .map(|t| (t.framework_id, t.task_id))
        .collect();
    running
        .into_iter()
        .map(|(framework, task)| {
            let usage = isolation::usage(&isolation::name(scope, &framework, &task));
            (framework, task, usage)
        })
        .collect()
}

async fn state(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let usage: HashMap<(String, String), isolation::Usage> =
        task_usage(&shared).into_iter().map(|(f, t, u)| ((f, t), u)).collect();
    let core = shared.core();
    let tasks: Vec<serde_json::Value> = core
        .tasks()
        .into_iter()
        .map(|t| {
            let u = usage.get(&(t.framework_id.clone(), t.task_id.clone())).copied();
            let mut v = serde_json::to_value(&t).unwrap_or_default();
            if let (Some(u), Some(obj)) = (u, v.as_object_mut()) {
                obj.insert("usage".into(), serde_json::to_value(u).unwrap_or_default());
            }
            v
        })
        .collect();
    let doc = serde_json::json!({
        "agent_id": core.agent_id().map(|a| a.to_string()),
        "registered": core.is_registered(),
        "hostname": shared.info.hostname,
        "http_address": shared.info.http_address,
        "resources": weir_proto::convert::resources_from_proto("resources", &shared.info.resources).map(|r| r.to_string()).unwrap_or_default(),
        "isolation": if shared.cgroup_scope.is_some() { "cgroups" } else { "none" },
        "tasks": tasks,
    });
    axum::Json(doc)
}

async fn read_file(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    let param = |name: &str| q.get(name).cloned().unwrap_or_default();
    let (framework, task, file) = (param("framework_id"), param("task_id"), param("file"));
    if file != "stdout" && file != "stderr" {
        return (StatusCode::BAD_REQUEST, format!("file must be stdout or stderr, not {file:?}\n").into_bytes());
    }
    let number = |name: &str, default: u64| -> Result<u64, String> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{name} {v:?} is not a whole number\n")),
        }
    };
    let (offset, length) = match (number("offset", 0), number("length", 65536)) {
        (Ok(o), Ok(l)) => (o, l.min(MAX_READ)),
        (Err(e), _) | (_, Err(e)) => return (StatusCode::BAD_REQUEST, e.into_bytes()),
    };
    // The sandbox comes from the agent's own records, never from the
    // request, so no path outside a sandbox can be named.
    let Some(sandbox) = shared.core().sandbox(&framework, &task) else {
        return (StatusCode::NOT_FOUND, format!("no sandbox for task {task:?} of framework {framework:?}\n").into_bytes());
    };
    let read = (|| -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(sandbox.join(&file))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.take(length).read_to_end(&mut buf)?;
        Ok(buf)
    })();
    match read {
        Ok(bytes) => (StatusCode::OK, bytes),
        Err(e) => (StatusCode::NOT_FOUND, format!("cannot read {file} of task {task:?}: {e}\n").into_bytes()),
    }
}

/// The input for a supervised task that ended: its supervisor's record,
/// and with isolation whether the OOM killer struck (then the cgroup goes).
fn exit_input(scope: Option<&str>, framework: FrameworkId, task: TaskId, record: Option<launcher::ExitRecord>) -> Input {
    let limitation = scope.and_then(|scope| {
        let name = isolation::name(scope, framework.as_str(), task.as_str());
        let oom = isolation::oom_message(&name);
        isolation::destroy(&name);
        oom
    });
    match record {
        Some(launcher::ExitRecord { error: Some(error), .. }) => Input::SpawnFailed { framework, task, error },
        Some(r) => Input::Exited { framework, task, code: r.code, signal: r.signal, limitation },
        None => Input::Exited { framework, task, code: None, signal: None, limitation },
    }
}

/// This agent's corner of the cgroup tree: stable across restarts (it
/// comes from the work directory) and distinct for agents sharing a host.
fn scope_of(work_dir: &std::path::Path) -> String {
    let path = std::fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_owned());
    // FNV-1a (`checksum`): stable across releases, unlike std's hasher.
    format!("agent-{:016x}", checksum(path.to_string_lossy().as_bytes()))
}

/// Watches a supervisor this agent did not start (found in the checkpoint):
/// it is not our child, so poll until it is gone, then read its record.
async fn watch_supervisor(shared: Arc<Shared>, framework: FrameworkId, task: TaskId, pid: u32, sandbox: PathBuf) {
    while launcher::supervisor_alive(pid, &sandbox) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No record: killed with SIGKILL along with its task.
    let record = launcher::read_exit(&sandbox).or(Some(launcher::ExitRecord { code: None, signal: Some(9), error: None }));
    let _ = shared.events.send(exit_input(shared.cgroup_scope.as_deref(), framework, task, record));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> v1::AgentCheckpoint {
        v1::AgentCheckpoint {
            agent_id: "A1".into(),
            update_counter: 7,
            tasks: vec![v1::CheckpointedTask { framework_id: "F1".into(), sandbox: "/s".into(), supervisor_pid: 42, ..Default::default() }],
        }
    }

    #[test]
    fn checkpoints_round_trip_and_damage_is_detected_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta/checkpoint.pb");
        assert!(read_checkpoint(&path).unwrap().is_none(), "no checkpoint yet");
        write_checkpoint(&path, &sample()).unwrap();
        assert_eq!(read_checkpoint(&path).unwrap(), Some(sample()));
        let good = std::fs::read(&path).unwrap();

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 3].to_vec(), "truncated or padded"),
            (good[..20].to_vec(), "truncated or padded"),
            (Vec::new(), "not a Weir checkpoint"),
            (b"garbage that is long enough to pass".to_vec(), "not a Weir checkpoint"),
            ({ let mut b = good.clone(); b[20] ^= 0xff; b }, "checksum mismatch"),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let err = read_checkpoint(&path).unwrap_err().to_string();
            assert!(err.starts_with(&format!("checkpoint {}: ", path.display())), "{err}");
            assert!(err.contains(expected), "{err}");
            // The agent does not stop: the file is moved aside, kept.
            assert!(load_checkpoint(&path).is_none());
            assert!(!path.exists());
            let kept = std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains("corrupt-"));
            assert!(kept, "the damaged checkpoint was not kept");
        }
    }
}
