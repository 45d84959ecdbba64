//! The agent's async shell. Every input to the core (a broker message, a
//! process exit, a timer) goes through one channel and one loop, so the
//! core sees them in a single order; the loop carries out the effects.
//!
//! - Effects on the world go through [`AgentEffects`]: time from a
//!   [`Clock`], processes through a [`Launcher`], the checkpoint through a
//!   [`CheckpointStore`]. The shell reads no clock of its own and starts no
//!   process itself, so tests run it with fakes.
//! - Checkpoint before effects: the inputs of one batch are handled, the
//!   checkpoint is written, and only then are their effects (send, spawn,
//!   signal) carried out. A failed write holds every effect back; the write
//!   is retried on each tick and the held effects go, in order, once one
//!   succeeds. Meanwhile `/health` says unhealthy.
//! - The broker stream (`weir.v1.Agent/Attach`) is opened by the agent and
//!   re-opened with capped backoff when it breaks; each new stream starts
//!   with REGISTER carrying the agent id and its tasks.
//! - HTTP on `listen`: `/health`, `/state`, `/files/browse` (a sandbox
//!   directory as JSON) and `/files/read` (bytes of a sandbox file, by
//!   offset and length); nothing outside a sandbox can be named
//!   (`sandbox_files.rs`), and who may read what is `http_auth.rs`'s.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::Extension;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use weir_ha::{LeaderInfo, ZkAddress};
use weir_model::{AgentId, Clock, FrameworkId, ResourceSet, SystemClock, TaskId};
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;
use weir_proto::v1::agent_client::AgentClient;

use crate::checkpoint::{self, CheckpointStore, FileCheckpointStore};
use crate::copies::{Copies, Done};
use crate::core::{AgentCore, CoreSettings, Effect, Input};
use crate::error::AgentError;
use crate::http_auth::{HttpAuth, Reader};
use crate::isolation;
use crate::volumes;
use crate::launcher::process::{self, ProcessLauncher};
use crate::launcher::{ExitFuture, Launched, Launcher, Recovered};

/// The header that carries the registration secret (the broker's
/// `shell::auth::AGENT_SECRET_HEADER`).
pub const AGENT_SECRET_HEADER: &str = "x-weir-agent-secret";

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
    /// Whose name tasks run under (`agent.tasks.switch-user` and limits).
    pub task_users: crate::users::UserPolicy,
    /// Sandboxes of ended tasks untouched this long are deleted.
    pub sandbox_gc_age: Duration,
    /// How often the disk each volume uses is measured (above zero).
    pub volume_usage_interval: Duration,
    /// How often backed volumes that tasks mount are synced (above zero).
    pub volume_sync_interval: Duration,
    /// How backings are reached (Hadoop configuration, time bound).
    pub volume_store: weir_hdfs_volumes::StoreSettings,
    /// Kill every task when the agent stops (standalone); otherwise they
    /// keep running and a restarted agent re-attaches to them.
    pub kill_tasks_on_shutdown: bool,
    /// Connection caps and timeouts of the HTTP port.
    pub http: weir_net::http::HttpLimits,
    /// The broker's agent registration secret (`agent.auth.secret.file`),
    /// sent when the agent attaches; None: sent nothing.
    pub registration_secret: Option<weir_net::secret::Secret>,
    /// PEM of the CA that signed the broker's certificate
    /// (`agent.tls.ca.file`): set, the agent attaches over TLS.
    pub broker_ca: Option<Vec<u8>>,
    /// The agent's own certificate and key (PEM; those of its HTTP port),
    /// shown to the broker over TLS: a broker with mutual TLS
    /// (`broker.tls.client.ca.file`) then asks for no secret.
    pub broker_identity: Option<(Vec<u8>, weir_net::secret::Secret)>,
    /// TLS on the agent's HTTP port (`agent.tls.cert.file`,
    /// `agent.tls.key.file`); None: plain text.
    pub http_tls: Option<weir_net::http::Tls>,
    /// Tokens and ACLs on the agent's HTTP port (`agent.auth.tokens.file`,
    /// `agent.acl.view-framework`); default: open.
    pub http_auth: crate::http_auth::HttpAuth,
}

/// What the agent acts on the world through, each behind a trait so the
/// real shell runs in tests without processes, disks or real time.
#[derive(Clone)]
pub struct AgentEffects {
    pub clock: Arc<dyn Clock>,
    pub launcher: Arc<dyn Launcher>,
    pub checkpoints: Arc<dyn CheckpointStore>,
}

impl AgentEffects {
    /// The machine's: its clocks, processes with the settings' supervisor
    /// and isolation, and `WORK_DIR/meta/checkpoint.pb`.
    pub fn real(settings: &AgentSettings) -> AgentEffects {
        AgentEffects {
            clock: Arc::new(SystemClock::new()),
            launcher: Arc::new(
                ProcessLauncher::new(&settings.work_dir, settings.supervisor.clone(), settings.isolation).with_users(settings.task_users.clone()),
            ),
            checkpoints: Arc::new(FileCheckpointStore::in_work_dir(&settings.work_dir)),
        }
    }
}

/// Refusals in a row, before the first registration, after which the agent
/// gives up (the broker will not change its mind about bad resources).
const MAX_FIRST_REFUSALS: u32 = 3;
/// The most bytes one `/files/read` returns.
const MAX_READ: u64 = 1 << 20;
/// How often the token file is looked at for changes (as the broker's
/// default `broker.auth.tokens.reload.interval`).
const TOKEN_FILE_RELOAD: Duration = Duration::from_secs(2);

struct Shared {
    clock: Arc<dyn Clock>,
    launcher: Arc<dyn Launcher>,
    checkpoints: Arc<dyn CheckpointStore>,
    /// Why the last checkpoint write failed; `None` once one succeeded.
    checkpoint_error: Mutex<Option<String>>,
    /// The last checkpoint known to be stored. REGISTER is built from it,
    /// not from the core, since REGISTER is an effect too.
    durable: Mutex<v1::AgentCheckpoint>,
    core: Mutex<AgentCore>,
    outbound: Mutex<Option<mpsc::Sender<v1::AgentMessage>>>,
    events: mpsc::UnboundedSender<Input>,
    /// Barriers sent into `events`, and those the event loop has handled
    /// (see [`Shared::settle`]).
    barriers_sent: AtomicU64,
    barriers_passed: watch::Sender<u64>,
    sandboxes: PathBuf,
    /// `WORK_DIR/volumes`: persistent volumes, never garbage-collected.
    volumes: PathBuf,
    /// Backed volumes' copies.
    copies: Copies,
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

    fn checkpoint_error(&self) -> MutexGuard<'_, Option<String>> {
        self.checkpoint_error.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the event loop has handled (and tried to checkpoint)
    /// every input queued so far, or 5 s. The last stream's RUN_TASKs may
    /// still wait in the queue when it ends: the next REGISTER must name
    /// them, or the broker takes them for gone while they start anyway
    /// (the testbed saw TASK_GONE, then STARTING, RUNNING, FINISHED, after
    /// an agent was paused with launches in flight).
    async fn settle(&self) {
        let target = self.barriers_sent.fetch_add(1, Ordering::SeqCst) + 1;
        let mut passed = self.barriers_passed.subscribe();
        if self.events.send(Input::Barrier).is_err() {
            return;
        }
        if tokio::time::timeout(Duration::from_secs(5), passed.wait_for(|n| *n >= target)).await.is_err() {
            tracing::warn!("inputs still queued after 5 s; registering with what is stored");
        }
    }

    /// REGISTER for a new stream, from what is stored.
    fn register_message(&self) -> v1::AgentMessage {
        let durable = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        crate::core::register_message_of(&durable, self.info.clone())
    }

    /// Writes the checkpoint; false if that failed. A failure is logged
    /// when it starts or its cause changes (not on every retry) and shown
    /// by `/health` until a write succeeds.
    fn save(&self, checkpoint: v1::AgentCheckpoint, held: usize) -> bool {
        let path = self.checkpoints.location();
        let result = self.checkpoints.write(&checkpoint);
        let mut failing = self.checkpoint_error();
        match result {
            Ok(()) => {
                *self.durable.lock().unwrap_or_else(|p| p.into_inner()) = checkpoint;
                if let Some(cause) = failing.take() {
                    tracing::warn!(path = %path.display(), held, previous_error = %cause, "the checkpoint is written again; carrying out the effects held back");
                }
                true
            }
            Err(err) => {
                let cause = match err {
                    AgentError::Checkpoint { reason, .. } => reason,
                    other => other.to_string(),
                };
                if failing.as_deref() == Some(cause.as_str()) {
                    tracing::debug!(path = %path.display(), error = %cause, held, "the checkpoint still cannot be written");
                } else {
                    tracing::error!(path = %path.display(), error = %cause, held, "cannot write the checkpoint; no message, launch or kill is carried out until a write succeeds (retried every tick)");
                }
                *failing = Some(cause);
                false
            }
        }
    }
}

/// Runs the agent until `shutdown` resolves; then kills every task (TERM,
/// then KILL after the grace period) if the settings say so, and returns.
pub async fn run(settings: AgentSettings, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), AgentError> {
    let effects = AgentEffects::real(&settings);
    run_with(settings, effects, shutdown).await
}

/// [`run`] with the given clock, launcher and checkpoint store.
pub async fn run_with(
    settings: AgentSettings,
    effects: AgentEffects,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let AgentEffects { clock, launcher, checkpoints } = effects;
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
        // Listening on every address (0.0.0.0), it is reached by name:
        // the broker, `weir logs` and the YARN shim use this address.
        http_address: crate::detect::advertised(http_addr, &hostname),
    };
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    let mut core = AgentCore::new(
        CoreSettings {
            kill_grace_period: settings.kill_grace_period,
            status_update_retry_interval: settings.status_update_retry_interval,
        },
        nonce,
    );
    let stored = checkpoint::load(&*checkpoints, clock.unix_time().as_secs());
    let durable = stored.clone().unwrap_or_default();
    let recovered = match stored {
        Some(cp) => {
            let live = core.recover(cp).map_err(|reason| AgentError::Checkpoint { path: checkpoints.location(), reason })?;
            tracing::info!(agent_id = ?core.agent_id().map(|a| a.to_string()), tasks = core.live_tasks(), supervisors = live.len(), "recovered from checkpoint");
            live
        }
        None => Vec::new(),
    };
    let volumes_root = settings.work_dir.join("volumes");
    check_reservations_fit(&resources, &core)?;
    for v in core.reservations().1 {
        let (role, id) = (weir_model::Role::new(v.role.clone()), weir_model::VolumeId::new(v.id.clone()));
        volumes::create(&volumes_root, &role, &id)
            .map_err(|e| AgentError::Detect(format!("cannot create volume {} under {}: {e}", v.id, volumes_root.display())))?;
    }
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        clock,
        launcher,
        checkpoints,
        checkpoint_error: Mutex::new(None),
        durable: Mutex::new(durable),
        core: Mutex::new(core),
        outbound: Mutex::new(None),
        events: events_tx,
        barriers_sent: AtomicU64::new(0),
        barriers_passed: watch::Sender::new(0),
        sandboxes,
        copies: Copies::new(volumes_root.clone(), settings.volume_store.clone()),
        volumes: volumes_root,
        info,
    });
    tracing::info!(%hostname, %http_addr, resources = %resources, broker = %settings.broker, "agent starting");

    settings.http_auth.announce();
    if let Some(tokens) = settings.http_auth.tokens.clone() {
        tokio::spawn(tokens.watch(TOKEN_FILE_RELOAD));
    }
    let http = tokio::spawn({
        let router = router(shared.clone(), Arc::new(settings.http_auth.clone()));
        let listener = weir_net::AdmittingListener::new(listener, settings.http.connections, "agent http");
        let limits = settings.http;
        let tls = settings.http_tls.clone();
        async move {
            if let Err(e) = weir_net::http::serve_tls(listener, router, limits, tls, std::future::pending()).await {
                tracing::error!(error = %e, "agent HTTP server failed");
            }
        }
    });
    // Tasks that ran under a supervisor before the restart: either they
    // ended meanwhile (their supervisor left a record) or they still run
    // and are watched until they do.
    for (framework, task, pid, sandbox) in recovered {
        match shared.launcher.recover(&framework, &task, pid, &sandbox) {
            Recovered::Ended(exit) => {
                tracing::info!(framework_id = %framework, task_id = %task, ?exit, "task ended while the agent was down");
                unmount_task_volumes(&sandbox).await;
                let _ = shared.events.send(exit.into_input(framework, task));
            }
            Recovered::Running(exit) => {
                tracing::info!(framework_id = %framework, task_id = %task, pid, "re-attached to a running task");
                let info = shared.core().task_info(&framework, &task);
                let backed = info.map(|info| backed_mounts(&shared, &info)).unwrap_or_default();
                for (role, id, backing) in &backed {
                    shared.copies.task_started(role, id, backing);
                }
                tokio::spawn(report_exit(shared.clone(), framework, task, exit, sandbox, backed));
            }
            Recovered::Vanished(exit) => {
                tracing::warn!(framework_id = %framework, task_id = %task, pid, "task's supervisor is gone and left no exit status");
                unmount_task_volumes(&sandbox).await;
                let _ = shared.events.send(exit.into_input(framework, task));
            }
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
                // Compared with the sandboxes' modification times, which
                // are wall-clock times.
                let cutoff = UNIX_EPOCH + shared.clock.unix_time().saturating_sub(age);
                let root = shared.sandboxes.clone();
                let deleted = tokio::task::spawn_blocking(move || process::collect_garbage(&root, &keep, cutoff)).await.unwrap_or_default();
                if !deleted.is_empty() {
                    tracing::info!(count = deleted.len(), "old sandboxes deleted");
                }
            }
        }
    });
    // Volumes past their size get their tasks killed (the core decides).
    let volume_meter = tokio::spawn({
        let shared = shared.clone();
        let every = settings.volume_usage_interval.max(Duration::from_millis(10));
        async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                let (root, volumes) = {
                    let core = shared.core();
                    let list: Vec<(weir_model::Role, weir_model::VolumeId)> = core
                        .reservations()
                        .1
                        .iter()
                        .map(|v| (weir_model::Role::new(v.role.clone()), weir_model::VolumeId::new(v.id.clone())))
                        .collect();
                    (shared.volumes.clone(), list)
                };
                if volumes.is_empty() {
                    continue;
                }
                let measured = tokio::task::spawn_blocking(move || {
                    volumes
                        .into_iter()
                        .map(|(role, id)| {
                            let bytes = volumes::disk_usage(&volumes::volume_dir(&root, &role, &id));
                            (role, id, bytes as f64 / (1024.0 * 1024.0))
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for (role, volume, used_mib) in measured {
                    if shared.events.send(Input::VolumeUsage { role, volume, used_mib }).is_err() {
                        return;
                    }
                }
            }
        }
    });
    // Backed volumes that tasks mount are synced on a timer as well as
    // when each task ends.
    let volume_syncer = tokio::spawn({
        let shared = shared.clone();
        let every = settings.volume_sync_interval.max(Duration::from_millis(10));
        async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                for (role, id, backing) in shared.copies.in_use() {
                    let agent = shared.core().agent_id().map(|a| a.to_string()).unwrap_or_default();
                    let done = shared.copies.sync(&role, &id, &backing, &agent, "interval").await;
                    report_sync(&shared, &role, &id, done, "", "");
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
        let drained = async {
            while !shared.core().is_drained() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let _ = tokio::time::timeout(settings.kill_grace_period + Duration::from_secs(5), drained).await;
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
    volume_meter.abort();
    volume_syncer.abort();
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
    // Effects of inputs whose checkpoint is not on disk yet, oldest first.
    let mut held: Vec<Effect> = Vec::new();
    // A write failed: the core holds state the stored checkpoint lacks, so
    // the next batch writes even if it changed nothing (a tick retries).
    let mut unsaved = false;
    while let Some(input) = events.recv().await {
        let mut barriers = u64::from(matches!(input, Input::Barrier));
        let (ready, agent_id) = {
            let mut core = shared.core();
            let earlier = held.len();
            let effects = core.handle(input, shared.clock.now(), shared.clock.unix_seconds());
            hold(&mut held, earlier, effects);
            for _ in 1..INPUTS_PER_CHECKPOINT {
                let Ok(input) = events.try_recv() else { break };
                barriers += u64::from(matches!(input, Input::Barrier));
                let effects = core.handle(input, shared.clock.now(), shared.clock.unix_seconds());
                hold(&mut held, earlier, effects);
            }
            if core.is_dirty() || unsaved {
                // Written before any effect of these inputs is carried out,
                // so what was promised (an update queued, a task started)
                // survives a crash.
                let checkpoint = core.checkpoint();
                unsaved = !shared.save(checkpoint, held.len());
            }
            let ready = if unsaved { Vec::new() } else { std::mem::take(&mut held) };
            (ready, core.agent_id().map(|a| a.to_string()).unwrap_or_default())
        };
        if barriers > 0 {
            shared.barriers_passed.send_modify(|n| *n += barriers);
        }
        for effect in ready {
            carry_out(&shared, effect, &agent_id);
        }
    }
}

/// Adds a batch's effects to those held. While the disk fails, each tick
/// resends the unacknowledged updates; a message equal to one held from an
/// earlier batch adds nothing, so the held list does not grow per tick.
fn hold(held: &mut Vec<Effect>, earlier: usize, effects: Vec<Effect>) {
    for effect in effects {
        if matches!(effect, Effect::Send(_)) && held[..earlier].contains(&effect) {
            continue;
        }
        held.push(effect);
    }
}

fn carry_out(shared: &Arc<Shared>, effect: Effect, agent_id: &str) {
    match effect {
        Effect::Send(msg) => shared.send(msg),
        Effect::Signal { framework, task, pid, signal } => {
            tracing::debug!(framework_id = %framework, task_id = %task, pid, ?signal, "signalling task");
            shared.launcher.signal(pid, signal);
        }
        Effect::CreateVolumes(list) => {
            for (role, id) in list {
                match volumes::create(&shared.volumes, &role, &id) {
                    Ok(dir) => tracing::info!(role = %role, volume_id = %id, path = %dir.display(), "volume created"),
                    Err(e) => tracing::error!(role = %role, volume_id = %id, error = %e, "cannot create the volume's directory"),
                }
            }
        }
        Effect::DestroyVolumes(list) => {
            for (role, id) in list {
                shared.copies.forget(&role, &id);
                match volumes::destroy(&shared.volumes, &role, &id) {
                    Ok(()) => tracing::info!(role = %role, volume_id = %id, "volume destroyed; its data is deleted"),
                    Err(e) => tracing::error!(role = %role, volume_id = %id, error = %e, "cannot delete the volume's directory"),
                }
            }
        }
        Effect::Spawn { framework, task, info } => {
            // Creating cgroups and starting a process take about a
            // millisecond each; done here, one after another, they would
            // hold every other input back. Each task's own inputs still
            // arrive in order (Spawned, then its exit).
            let shared = shared.clone();
            let agent_id = agent_id.to_owned();
            let backed = backed_mounts(&shared, &info);
            if backed.is_empty() {
                tokio::task::spawn_blocking(move || start_task(&shared, &agent_id, framework, task, &info, Vec::new()));
                return;
            }
            // A backed volume must hold its restored copy before the task
            // sees it.
            tokio::spawn(async move {
                for (role, id, backing) in &backed {
                    if let Err(error) = shared.copies.ensure(role, id, backing, &agent_id).await {
                        tracing::error!(framework_id = %framework, task_id = %task, %error, "task not started");
                        let _ = shared.events.send(Input::SpawnFailed { framework, task, error });
                        return;
                    }
                }
                for (role, id, backing) in &backed {
                    shared.copies.task_started(role, id, backing);
                }
                let _ = tokio::task::spawn_blocking(move || start_task(&shared, &agent_id, framework, task, &info, backed)).await;
            });
        }
        Effect::SyncVolume(msg) => {
            let shared = shared.clone();
            let agent_id = agent_id.to_owned();
            tokio::spawn(async move { sync_volume(&shared, &agent_id, msg).await });
        }
    }
}

/// Backed volumes a task mounts: (role, id, backing).
fn backed_mounts(shared: &Shared, info: &v1::TaskInfo) -> Vec<(weir_model::Role, weir_model::VolumeId, String)> {
    if info.volumes.is_empty() {
        return Vec::new();
    }
    let Ok(resources) = weir_proto::convert::resources_from_proto("task.resources", &info.resources) else { return Vec::new() };
    let Some(role) = resources.reserved.keys().next().cloned() else { return Vec::new() };
    let core = shared.core();
    let known = core.reservations().1;
    info.volumes
        .iter()
        .filter_map(|m| known.iter().find(|v| v.role == role.as_str() && v.id == m.volume_id && !v.backing.is_empty()))
        .map(|v| (role.clone(), weir_model::VolumeId::new(v.id.clone()), v.backing.clone()))
        .collect()
}

/// Checks every backed volume this agent holds a copy of against its
/// backing; a stale one is reported (and logged as an error).
async fn check_copies(shared: Arc<Shared>, agent_id: String) {
    let backed: Vec<(weir_model::Role, weir_model::VolumeId, String)> = shared
        .core()
        .reservations()
        .1
        .iter()
        .filter(|v| !v.backing.is_empty())
        .map(|v| (weir_model::Role::new(v.role.clone()), weir_model::VolumeId::new(v.id.clone()), v.backing.clone()))
        .collect();
    for (role, id, backing) in backed {
        if let Some(stale) = shared.copies.stale(&role, &id, &backing, &agent_id).await {
            let done = Done { trigger: "registered", backing: backing.clone(), result: Err(stale), stale: true };
            report_sync(&shared, &role, &id, done, "", "");
        }
    }
}

/// The broker's SYNC, or the preparation of a backed volume just created.
async fn sync_volume(shared: &Arc<Shared>, agent_id: &str, msg: v1::broker_message::SyncVolume) {
    let (role, id) = (weir_model::Role::new(msg.role.clone()), weir_model::VolumeId::new(msg.volume_id.clone()));
    let backing = shared.core().reservations().1.iter().find(|v| v.role == msg.role && v.id == msg.volume_id).map(|v| v.backing.clone());
    let done = match backing {
        Some(backing) if !backing.is_empty() => {
            if msg.create {
                shared.copies.prepare(&role, &id, &backing, agent_id).await
            } else {
                shared.copies.sync(&role, &id, &backing, agent_id, "sync").await
            }
        }
        _ => Done {
            trigger: if msg.create { "create" } else { "sync" },
            backing: String::new(),
            result: Err(format!("volume {id} of role {role} has no backing on this agent")),
            stale: false,
        },
    };
    report_sync(shared, &role, &id, done, &msg.operation_id, &msg.framework_id);
}

/// Tells the broker (and the log) how a restore or sync went.
fn report_sync(shared: &Shared, role: &weir_model::Role, id: &weir_model::VolumeId, done: Done, operation_id: &str, framework_id: &str) {
    let stale = done.stale;
    let (error, report) = match done.result {
        Ok(report) => {
            tracing::info!(role = %role, volume_id = %id, backing = %done.backing, trigger = done.trigger, generation = report.generation, files = report.files_total, files_copied = report.files_copied, bytes_copied = report.bytes_copied, millis = report.millis, "volume copy done");
            (String::new(), report)
        }
        Err(error) => {
            tracing::error!(role = %role, volume_id = %id, backing = %done.backing, trigger = done.trigger, %error, "volume copy failed");
            (error, Default::default())
        }
    };
    shared.send(v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::VolumeSync(v1::agent_message::VolumeSync {
            operation_id: operation_id.to_owned(),
            framework_id: framework_id.to_owned(),
            role: role.to_string(),
            volume_id: id.to_string(),
            backing: done.backing,
            trigger: done.trigger.to_owned(),
            error,
            generation: report.generation,
            files_total: report.files_total,
            files_copied: report.files_copied,
            bytes_total: report.bytes_total,
            bytes_copied: report.bytes_copied,
            millis: report.millis,
            stale,
        })),
    });
}


/// Refuses to start with `--resources` that no longer hold the checkpointed
/// reservations: the broker would refuse the agent, and starting afresh
/// would lose them and their volumes. The message names what would be lost.
fn check_reservations_fit(resources: &ResourceSet, core: &AgentCore) -> Result<(), AgentError> {
    let (reservations, volumes) = core.reservations();
    let mut left = resources.unreserved.clone();
    let mut lost = Vec::new();
    for r in reservations {
        let Ok(wanted) = weir_proto::convert::unreserved_from_proto("reservation", &r.resources) else { continue };
        match left.checked_sub(&wanted) {
            Ok(rest) => left = rest,
            Err(_) => {
                let on_it: Vec<&str> = volumes.iter().filter(|v| v.reservation_id == r.id).map(|v| v.id.as_str()).collect();
                let with = if on_it.is_empty() { String::new() } else { format!(" with volume(s) {}", on_it.join(", ")) };
                lost.push(format!("{} ({wanted} for role {}){with}", r.id, r.role));
            }
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    Err(AgentError::BadResources(format!(
        "{resources} does not hold the checkpointed reservations {}; starting would lose them. \
         Give the agent resources that hold them, or unreserve them first",
        lost.join(", ")
    )))
}

/// Starts one task and watches it until it ends; reports each step to the
/// event loop.
/// `backed`: the backed volumes it mounts (counted as used already).
fn start_task(
    shared: &Arc<Shared>,
    agent_id: &str,
    framework: FrameworkId,
    task: TaskId,
    info: &v1::TaskInfo,
    backed: Vec<(weir_model::Role, weir_model::VolumeId, String)>,
) {
    match shared.launcher.spawn(agent_id, &framework, &task, info) {
        Ok(Launched { pid, sandbox, exit, notes }) => {
            let message = notes.join("; ");
            let _ = shared.events.send(Input::Spawned { framework: framework.clone(), task: task.clone(), pid, sandbox: sandbox.clone(), message });
            tokio::spawn(report_exit(shared.clone(), framework, task, exit, sandbox, backed));
        }
        Err(error) => {
            tracing::warn!(framework_id = %framework, task_id = %task, %error, "cannot start task");
            for (role, id, backing) in &backed {
                shared.copies.task_ended(role, id, backing);
            }
            let _ = shared.events.send(Input::SpawnFailed { framework, task, error });
        }
    }
}

/// Waits for a task's end, undoes its volume mounts, syncs the backed
/// volumes it mounted, and tells the event loop how it ended.
async fn report_exit(
    shared: Arc<Shared>,
    framework: FrameworkId,
    task: TaskId,
    exit: ExitFuture,
    sandbox: PathBuf,
    backed: Vec<(weir_model::Role, weir_model::VolumeId, String)>,
) {
    let exit = exit.await;
    unmount_task_volumes(&sandbox).await;
    // Synced before the end is reported, so a framework that hears the
    // task ended finds its writes in the backing.
    for (role, id, backing) in &backed {
        shared.copies.task_ended(role, id, backing);
        let agent = shared.core().agent_id().map(|a| a.to_string()).unwrap_or_default();
        let done = shared.copies.sync(role, id, backing, &agent, "task-ended").await;
        report_sync(&shared, role, id, done, "", "");
    }
    let _ = shared.events.send(exit.into_input(framework, task));
}

/// Unmounts whatever is mounted inside an ended task's sandbox (its
/// volumes), off the event loop.
async fn unmount_task_volumes(sandbox: &Path) {
    let sandbox = sandbox.to_path_buf();
    let failed = tokio::task::spawn_blocking(move || volumes::unmount_under(&sandbox)).await.unwrap_or_default();
    if !failed.is_empty() {
        tracing::warn!(?failed, "cannot unmount an ended task's volumes");
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
    let mut channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned()).map_err(|e| e.to_string())?;
    if let Some(ca) = &settings.broker_ca {
        let https = format!("https://{}", endpoint.trim_start_matches("http://").trim_start_matches("https://"));
        channel = tonic::transport::Endpoint::from_shared(https)
            .map_err(|e| e.to_string())?
            .tls_config({
                let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
                match &settings.broker_identity {
                    Some((cert, key)) => tls.identity(tonic::transport::Identity::from_pem(cert, key.expose())),
                    None => tls,
                }
            })
            .map_err(|e| format!("TLS configuration: {e}"))?;
    }
    let channel = channel
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))?;
    let mut client = AgentClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(4096);
    shared.settle().await;
    let register = shared.register_message();
    tx.send(register).await.map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(secret) = &settings.registration_secret {
        let value = secret.expose().parse().map_err(|_| "the registration secret is not a valid header value (printable ASCII)".to_owned())?;
        request.metadata_mut().insert(AGENT_SECRET_HEADER, value);
    }
    let mut stream = client.attach(request).await.map_err(|s| match s.code() {
        tonic::Code::Unauthenticated => format!("the broker refused the agent: {} (agent.auth.secret.file)", s.message()),
        _ => s.message().to_owned(),
    })?.into_inner();
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
                // A copy the backing moved past while this agent was away
                // is told at once, not at its next sync.
                tokio::spawn(check_copies(shared.clone(), r.agent_id.clone()));
                Input::Registered { agent_id: AgentId::new(r.agent_id) }
            }
            Some(v1::broker_message::Kind::Refused(r)) => break Ok(Registration::Refused(r.message)),
            Some(v1::broker_message::Kind::RunTask(r)) => match r.task {
                Some(task) => Input::RunTask { framework: r.framework_id, task: Box::new(task) },
                None => continue,
            },
            Some(v1::broker_message::Kind::KillTask(k)) => Input::KillTask { framework: k.framework_id, task: k.task_id },
            Some(v1::broker_message::Kind::CheckpointResources(c)) => Input::CheckpointResources(c),
            Some(v1::broker_message::Kind::SyncVolume(s)) => Input::SyncVolume(s),
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

fn router(shared: Arc<Shared>, auth: Arc<HttpAuth>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/state", get(state))
        .route("/files/read", get(read_file))
        .route("/files/browse", get(browse))
        .layer(axum::Extension(auth.clone()))
        .layer(axum::middleware::from_fn_with_state(auth, crate::http_auth::authenticate))
        .with_state(shared)
}

/// Unhealthy while the checkpoint cannot be written: the agent then holds
/// back every message, launch and kill, so it only looks alive.
async fn health(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let failing = shared.checkpoint_error().clone();
    match failing {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(cause) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: cannot write the checkpoint {}: {cause}; messages, launches and kills are held until it can\n",
                shared.checkpoints.location().display()
            ),
        ),
    }
}

/// Usage of every running task (none without isolation).
fn task_usage(shared: &Shared) -> Vec<(String, String, isolation::Usage)> {
    let running: Vec<(String, String)> = shared
        .core()
        .tasks()
        .into_iter()
        .filter(|t| t.pid.is_some())
        .map(|t| (t.framework_id, t.task_id))
        .collect();
    running
        .into_iter()
        .filter_map(|(framework, task)| {
            let usage = shared.launcher.usage(&FrameworkId::new(framework.as_str()), &TaskId::new(task.as_str()))?;
            Some((framework, task, usage))
        })
        .collect()
}

/// The agent and its tasks; a caller sees only the tasks of frameworks
/// `agent.acl.view-framework` lets it view.
async fn state(State(shared): State<Arc<Shared>>, Extension(auth): Extension<Arc<HttpAuth>>, Extension(reader): Extension<Reader>) -> impl IntoResponse {
    let usage: HashMap<(String, String), isolation::Usage> =
        task_usage(&shared).into_iter().map(|(f, t, u)| ((f, t), u)).collect();
    let core = shared.core();
    let tasks: Vec<serde_json::Value> = core
        .tasks()
        .into_iter()
        .filter(|t| auth.may_view(&reader, &t.principal).is_ok())
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
        "isolation": shared.launcher.isolation(),
        "tasks": tasks,
    });
    axum::Json(doc)
}

/// The status a sandbox path error answers with.
fn path_status(err: &AgentError) -> StatusCode {
    match err {
        AgentError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The sandbox of the task the query names, from the agent's own records,
/// if the reader may view its framework (`agent.acl.view-framework`).
fn query_sandbox(shared: &Shared, auth: &HttpAuth, reader: &Reader, q: &HashMap<String, String>) -> Result<PathBuf, (StatusCode, String)> {
    let param = |name: &str| q.get(name).map(String::as_str).unwrap_or_default();
    let (framework, task) = (param("framework_id"), param("task_id"));
    let found = shared.core().sandbox(framework, task);
    let (sandbox, owner) = found.ok_or_else(|| (StatusCode::NOT_FOUND, format!("no sandbox for task {task:?} of framework {framework:?}\n")))?;
    if let Err(refusal) = auth.may_view(reader, &owner) {
        tracing::warn!(principal = %reader.principal, framework_id = %framework, task_id = %task, %refusal, "sandbox read refused by ACL");
        return Err((StatusCode::FORBIDDEN, format!("{refusal}\n")));
    }
    Ok(sandbox)
}

/// A sandbox directory (`path`, relative; empty for the sandbox) as JSON.
async fn browse(
    State(shared): State<Arc<Shared>>,
    Extension(auth): Extension<Arc<HttpAuth>>,
    Extension(reader): Extension<Reader>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let path = q.get("path").cloned().unwrap_or_default();
    if let Err(e) = crate::sandbox_files::check_relative(&path) {
        return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
    }
    let sandbox = match query_sandbox(&shared, &auth, &reader, &q) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match tokio::task::spawn_blocking(move || crate::sandbox_files::list(&sandbox, &path)).await {
        Ok(Ok(listing)) => axum::Json(listing).into_response(),
        Ok(Err(e)) => (path_status(&e), format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("listing failed: {e}\n")).into_response(),
    }
}

/// Bytes of one sandbox file: `file` (or `path`) relative to the sandbox,
/// `offset`, `length` (at most 1 MiB).
async fn read_file(
    State(shared): State<Arc<Shared>>,
    Extension(auth): Extension<Arc<HttpAuth>>,
    Extension(reader): Extension<Reader>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let file = q.get("path").or_else(|| q.get("file")).cloned().unwrap_or_default();
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
    if let Err(e) = crate::sandbox_files::check_relative(&file) {
        return (StatusCode::BAD_REQUEST, format!("{e}\n").into_bytes());
    }
    let sandbox = match query_sandbox(&shared, &auth, &reader, &q) {
        Ok(s) => s,
        Err((status, e)) => return (status, e.into_bytes()),
    };
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, AgentError> {
        let path = crate::sandbox_files::resolve(&sandbox, &file)?;
        let io = |e: std::io::Error| AgentError::NotFound(format!("cannot read {file:?}: {e}"));
        let mut f = std::fs::File::open(&path).map_err(io)?;
        if f.metadata().map_err(io)?.is_dir() {
            return Err(AgentError::BadPath { path: file.clone(), reason: "is a directory".to_owned() });
        }
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = Vec::new();
        f.take(length).read_to_end(&mut buf).map_err(io)?;
        Ok(buf)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => (StatusCode::OK, bytes),
        Ok(Err(e)) => (path_status(&e), format!("{e}\n").into_bytes()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("read failed: {e}\n").into_bytes()),
    }
}
