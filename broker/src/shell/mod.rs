//! The broker's async shell: one port serving gRPC (scheduler, agent and
//! operator APIs) and HTTP (`/state`, `/metrics`, `/health`, the web UI
//! under `/ui/`), a timer that
//! ticks the core, and the map from connection ids to outbound channels.
//!
//! The shell holds no books. Every stream handler converts what arrives
//! into a core call under the lock, then hands the core's outputs to the
//! right channels. A slow reader whose channel fills up is disconnected
//! rather than allowed to grow the broker's memory.
//!
//! As an elected leader ([`run_leader`]) two more rules hold:
//! - outputs that follow a registry write wait until it has landed (in
//!   order: everything after them waits too), so nothing is acknowledged
//!   that a new leader would not know; a failed write ends the leadership;
//! - nothing reaches the core once the leadership lease is not fresh: the
//!   broker reports itself lost and is stopped by its owner.

pub mod auth;
mod grpc;
pub mod hdfs;
mod http;
mod metrics;
mod stream;
#[cfg(test)]
mod tests;
mod standby;
mod ui;

pub use standby::{serve_standby, Standby};
pub use ui::UiSettings;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tonic::Status;
use weir_ha::{LeaseGuard, Record, Registry, Write};
use weir_model::{Clock, FrameworkId, SystemClock};
use weir_proto::v1;

use crate::core::{BrokerCore, BrokerSettings, ConnId, Output};
use stream::StreamSender;

/// Messages queued for one stream before the broker gives up on its reader.

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("broker server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
}

/// How the shell is set up (the core's tunables are in [`BrokerSettings`]).
#[derive(Clone)]
pub struct ShellSettings {
    pub listen: SocketAddr,
    pub max_message_size: usize,
    /// Connection caps and HTTP timeouts of the one port (gRPC and HTTP).
    pub http: weir_net::http::HttpLimits,
    /// Messages one agent or framework stream may have waiting for its
    /// reader before the stream is closed (RESOURCE_EXHAUSTED).
    pub stream_queue_max: usize,
    /// Where the shell reads time: monotonic `now` for every core call, and
    /// the wall clock once at start for the timestamps of status updates.
    pub clock: Arc<dyn Clock>,
    /// The web UI (`broker.ui.*`).
    pub ui: UiSettings,
    /// Token file and agent registration secret (`broker.auth.*`).
    pub auth: auth::AuthSettings,
    /// TLS on the port (`broker.tls.*`); None: plain text.
    pub tls: Option<weir_net::http::Tls>,
}

impl ShellSettings {
    /// Settings with the machine's clock.
    pub fn new(listen: SocketAddr, max_message_size: usize) -> ShellSettings {
        ShellSettings {
            listen,
            max_message_size,
            http: weir_net::http::HttpLimits::default(),
            stream_queue_max: DEFAULT_STREAM_QUEUE_MAX,
            clock: Arc::new(SystemClock::new()),
            ui: UiSettings::default(),
            auth: auth::AuthSettings::default(),
            tls: None,
        }
    }
}

impl std::fmt::Debug for ShellSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellSettings").field("listen", &self.listen).field("max_message_size", &self.max_message_size).finish_non_exhaustive()
    }
}

/// Room for a RECONCILE of every task of a large framework.
pub const DEFAULT_STREAM_QUEUE_MAX: usize = 100_000;

enum Sender {
    Agent(StreamSender<v1::BrokerMessage>),
    Framework(StreamSender<ToFramework>),
}

/// What a framework's stream carries: events, and OFFERS the core booked
/// but left to be built here, outside the core's lock, when the stream
/// sends them.
pub(super) enum ToFramework {
    Event(v1::Event),
    Offers(crate::core::OfferBatch),
}

impl ToFramework {
    pub(super) fn into_event(self) -> v1::Event {
        match self {
            ToFramework::Event(event) => event,
            ToFramework::Offers(batch) => batch.into_event(),
        }
    }
}

/// Outputs waiting for registry writes (and everything queued after them).
struct Batch {
    writes: Vec<Write>,
    outputs: Vec<Output>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A broker that leads an elected term: see [`run_leader`].
pub struct Leading {
    pub epoch: u64,
    /// The registry's records when the term began.
    pub records: Vec<Record>,
    pub registry: Arc<dyn Registry>,
    pub guard: LeaseGuard,
}

struct Inner {
    core: BrokerCore,
    conns: HashMap<ConnId, Sender>,
    next_conn: ConnId,
    last_allocation_seconds: f64,
    registry: Option<Arc<dyn Registry>>,
    pending: VecDeque<Batch>,
    /// Why this broker stopped leading, once it has.
    lost: watch::Sender<Option<String>>,
    /// Messages one stream may have waiting for its reader.
    stream_queue_max: usize,
    /// Asks for HDFS block locations, to the locator task.
    locate: mpsc::Sender<(FrameworkId, Vec<String>)>,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Shared {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
    guard: LeaseGuard,
    writer: Arc<Notify>,
    metrics: Arc<prometheus_client::registry::Registry>,
    /// The histograms in `metrics` the shell observes into.
    measured: metrics::ShellMetrics,
    ui: Arc<ui::Ui>,
    /// `broker.acl.*`, for the checks the shell makes (operators, views).
    acls: Arc<crate::acl::Acls>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in the core; the
        // books may then be half-updated, but serving them is still better
        // than taking the whole broker down with a poisoned lock.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True while this broker may act: always without an election; as a
    /// leader, while its lease is fresh and nothing has ended the term.
    fn may_act(&self, inner: &Inner) -> bool {
        if inner.lost.borrow().is_some() {
            return false;
        }
        if !self.guard.is_valid() {
            tracing::error!(epoch = inner.core.epoch(), "leadership lease is not fresh; stepping down");
            inner.lost.send_replace(Some("the leadership lease was not renewed in time".to_owned()));
            return false;
        }
        true
    }

    /// Runs a core call and carries out its outputs.
    fn apply(&self, what: &'static str, f: impl FnOnce(&mut BrokerCore, Duration) -> Vec<Output>) {
        let now = self.now();
        let mut inner = self.lock();
        if !self.may_act(&inner) {
            return;
        }
        let began = self.now();
        let outputs = f(&mut inner.core, now);
        let count = outputs.len();
        self.submit(&mut inner, outputs, None);
        note_if_slow(what, self.now().saturating_sub(began), count);
    }

    /// Like [`apply`], for a caller that must know the outputs' registry
    /// writes have landed (an operator call about to answer).
    async fn apply_durably(&self, f: impl FnOnce(&mut BrokerCore, Duration) -> Result<Vec<Output>, String>) -> Result<(), String> {
        let rx = {
            let now = self.now();
            let mut inner = self.lock();
            if !self.may_act(&inner) {
                return Err("this broker no longer leads".to_owned());
            }
            let outputs = f(&mut inner.core, now)?;
            let (tx, rx) = oneshot::channel();
            self.submit(&mut inner, outputs, Some(tx));
            rx
        };
        rx.await.unwrap_or_else(|_| Err("this broker stopped before the change was recorded".to_owned()))
    }

    /// Sends outputs now, or queues them behind registry writes.
    fn submit(&self, inner: &mut Inner, outputs: Vec<Output>, done: Option<oneshot::Sender<Result<(), String>>>) {
        for latency in inner.core.take_launch_latencies() {
            self.measured.launch_latency.observe(latency.as_secs_f64());
        }
        let mut writes = Vec::new();
        let mut rest = Vec::with_capacity(outputs.len());
        for output in outputs {
            match output {
                Output::Registry(write) => writes.push(write),
                other => rest.push(other),
            }
        }
        if inner.registry.is_none() || (writes.is_empty() && inner.pending.is_empty()) {
            inner.dispatch(rest);
            if let Some(done) = done {
                let _ = done.send(Ok(()));
            }
            return;
        }
        inner.pending.push_back(Batch { writes, outputs: rest, done });
        self.writer.notify_one();
    }

    fn register(&self, sender: Sender) -> ConnId {
        let mut inner = self.lock();
        inner.next_conn += 1;
        let conn = inner.next_conn;
        inner.conns.insert(conn, sender);
        conn
    }
}

impl Inner {
    fn dispatch(&mut self, outputs: Vec<Output>) {
        let mut overflowed = Vec::new();
        for output in outputs {
            match output {
                Output::Agent(conn, msg) => {
                    if let Some(Sender::Agent(tx)) = self.conns.get(&conn) {
                        if tx.try_send(msg).is_err() {
                            overflowed.push(conn);
                        }
                    }
                }
                Output::Framework(conn, msg) => {
                    if let Some(Sender::Framework(tx)) = self.conns.get(&conn) {
                        if tx.try_send(ToFramework::Event(msg)).is_err() {
                            overflowed.push(conn);
                        }
                    }
                }
                Output::Offers(conn, batch) => {
                    if let Some(Sender::Framework(tx)) = self.conns.get(&conn) {
                        if tx.try_send(ToFramework::Offers(batch)).is_err() {
                            overflowed.push(conn);
                        }
                    }
                }
                // Dropping the sender ends the response stream once the
                // reader has drained what was queued.
                Output::Close(conn) => {
                    self.conns.remove(&conn);
                }
                // `Shared::submit` takes these out first.
                Output::Registry(_) => {}
                Output::LocateHdfs { framework, paths } => {
                    if self.locate.try_send((framework.clone(), paths)).is_err() {
                        tracing::warn!(framework_id = %framework, "too many HDFS location asks waiting; this one is dropped (the framework's next REVIVE asks again)");
                    }
                }
            }
        }
        for conn in overflowed {
            if let Some(sender) = self.conns.remove(&conn) {
                tracing::warn!(conn, "stream reader too slow or gone; closing it");
                let status = Status::resource_exhausted(format!(
                    "the broker closed this stream: its reader fell {} messages behind (broker.stream.queue.max)",
                    self.stream_queue_max
                ));
                match sender {
                    Sender::Agent(tx) => tx.close_with(status),
                    Sender::Framework(tx) => tx.close_with(status),
                }
            }
        }
    }
}

/// A broker serving in the background.
pub struct RunningBroker {
    addr: SocketAddr,
    shared: Shared,
    lost: watch::Receiver<Option<String>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), BrokerError>>>,
}

impl RunningBroker {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resolves with the reason when this broker stops leading on its own
    /// (lease not renewed, registry write failed). Never, without an election.
    pub fn lost(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            loop {
                if let Some(reason) = lost.borrow_and_update().clone() {
                    return reason;
                }
                if lost.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// The `/state` document right now.
    pub fn state(&self) -> crate::core::state::StateDoc {
        let now = self.shared.now();
        self.shared.lock().core.state(now)
    }

    /// Stops serving: every stream is closed, then the server exits.
    pub async fn stop(mut self) -> Result<(), BrokerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Clients may hold their half of a stream open; after a grace
        // period the connections are simply dropped.
        match tokio::time::timeout(Duration::from_secs(3), self.finished()).await {
            Ok(result) => result,
            Err(_) => {
                if let Some(task) = self.task.take() {
                    task.abort();
                }
                tracing::info!("broker stopped (connections still open were dropped)");
                Ok(())
            }
        }
    }

    /// Resolves when the server exits: after `stop`, or on its own on an
    /// error.
    pub async fn finished(&mut self) -> Result<(), BrokerError> {
        let Some(task) = self.task.as_mut() else { return Ok(()) };
        let result = match task.await {
            Ok(result) => result,
            Err(join) => Err(BrokerError::Serve(std::io::Error::other(join.to_string()))),
        };
        self.task = None;
        result
    }
}

/// A fresh broker instance id (ids it makes start with it, so they stay
/// unique across restarts and failovers).
pub fn new_instance_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// Binds the listener and starts serving, alone (no election).
pub async fn run(settings: BrokerSettings, shell: ShellSettings) -> Result<RunningBroker, BrokerError> {
    start(settings, shell, new_instance_id(), None).await
}

/// Binds the listener and starts serving as the elected leader of
/// `leading.epoch`, recovering from the registry's records.
pub async fn run_leader(
    settings: BrokerSettings,
    shell: ShellSettings,
    instance: String,
    leading: Leading,
) -> Result<RunningBroker, BrokerError> {
    start(settings, shell, instance, Some(leading)).await
}

async fn start(
    settings: BrokerSettings,
    shell: ShellSettings,
    instance: String,
    leading: Option<Leading>,
) -> Result<RunningBroker, BrokerError> {
    let authenticator = Arc::new(auth::Authenticator::load(&shell.auth)?);
    let listener = tokio::net::TcpListener::bind(shell.listen)
        .await
        .map_err(|source| BrokerError::Bind { addr: shell.listen, source })?;
    let addr = listener.local_addr().map_err(|source| BrokerError::Bind { addr: shell.listen, source })?;
    let clock = shell.clock.clone();
    let now = clock.now();
    let tick_every = settings.allocation_interval.clamp(Duration::from_millis(10), Duration::from_millis(100));
    let heartbeat_every = settings.framework_heartbeat_interval;
    let acls = Arc::new(settings.acls.clone());
    let mut core = BrokerCore::new(settings, instance.clone(), now, clock.unix_time());
    let (registry, guard) = match leading {
        Some(leading) => {
            core.recover(&leading.records, leading.epoch, now);
            (Some(leading.registry), leading.guard)
        }
        None => (None, LeaseGuard::always()),
    };
    let (lost_tx, lost_rx) = watch::channel(None);
    let (locate_tx, locate_rx) = mpsc::channel(hdfs::QUEUE);
    let inner = Arc::new(Mutex::new(Inner {
        core,
        conns: HashMap::new(),
        next_conn: 0,
        last_allocation_seconds: 0.0,
        registry: registry.clone(),
        pending: VecDeque::new(),
        lost: lost_tx,
        stream_queue_max: shell.stream_queue_max,
        locate: locate_tx,
    }));
    let measured = metrics::ShellMetrics::new();
    let shared = Shared {
        metrics: Arc::new(metrics::registry(inner.clone(), clock.clone(), &measured)),
        measured,
        ui: Arc::new(ui::Ui::new(shell.ui.clone())),
        inner,
        clock,
        guard,
        writer: Arc::new(Notify::new()),
        acls: acls.clone(),
    };
    match &shell.tls {
        Some(_) => tracing::info!(broker_id = %instance, %addr, "broker listening (gRPC and HTTP over TLS)"),
        None => tracing::info!(broker_id = %instance, %addr, "broker listening (gRPC and HTTP)"),
    }
    if shell.tls.is_none() {
        tracing::warn!("TLS IS OFF: tokens, the agent secret and all traffic cross the network in clear text (broker.tls.cert.file, docs/SECURITY.md)");
    }
    authenticator.announce();
    if acls.any_set() {
        tracing::info!("ACLs are set: what no broker.acl.* rule allows is denied");
    }
    let watcher = tokio::spawn(authenticator.clone().watch());
    let writer = registry.map(|registry| tokio::spawn(registry_writer(shared.clone(), registry)));

    let router = grpc::router(shared.clone(), shell.max_message_size)
        .merge(http::router(shared.clone()))
        .fallback(http::unknown_path)
        .layer(axum::middleware::from_fn_with_state(authenticator, auth::authenticate));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let ticker = tokio::spawn(tick_loop(shared.clone(), tick_every, heartbeat_every));
    let locator = tokio::spawn(hdfs::locator(shared.clone(), locate_rx));
    let closer = shared.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.await;
            // End every stream so the graceful shutdown can finish.
            closer.lock().conns.clear();
        };
        let listener = weir_net::AdmittingListener::new(listener, shell.http.connections, "broker");
        let result = weir_net::http::serve_tls(listener, router, shell.http, shell.tls, shutdown).await.map_err(BrokerError::Serve);
        ticker.abort();
        locator.abort();
        watcher.abort();
        if let Some(writer) = writer {
            writer.abort();
        }
        result
    });
    Ok(RunningBroker { addr, shared, lost: lost_rx, stop: Some(stop_tx), task: Some(task) })
}

/// Lands queued registry writes, then releases what waited for them, in
/// order. Writes of every batch queued meanwhile go out together.
async fn registry_writer(shared: Shared, registry: Arc<dyn Registry>) {
    loop {
        shared.writer.notified().await;
        loop {
            let (writes, count) = {
                let mut inner = shared.lock();
                let count = inner.pending.len();
                let writes: Vec<Write> = inner.pending.iter_mut().flat_map(|b| std::mem::take(&mut b.writes)).collect();
                (writes, count)
            };
            if count == 0 {
                break;
            }
            let result = if writes.is_empty() { Ok(()) } else { registry.apply(writes).await };
            let mut inner = shared.lock();
            match result {
                Ok(()) => {
                    for _ in 0..count {
                        let Some(batch) = inner.pending.pop_front() else { break };
                        inner.dispatch(batch.outputs);
                        if let Some(done) = batch.done {
                            let _ = done.send(Ok(()));
                        }
                    }
                }
                Err(err) => {
                    // Nothing after a failed write is acknowledged: clients
                    // will redo it with the next leader.
                    tracing::error!(error = %err, "registry write failed; stepping down");
                    for batch in inner.pending.drain(..) {
                        if let Some(done) = batch.done {
                            let _ = done.send(Err(format!("the registry write failed: {err}")));
                        }
                    }
                    inner.lost.send_replace(Some(format!("registry write failed: {err}")));
                    return;
                }
            }
        }
    }
}

/// Everything waits while the core holds the lock, so a long core call
/// shows directly in every client's latency: say so in the log.
const SLOW_CORE_CALL: Duration = Duration::from_millis(100);

fn note_if_slow(what: &'static str, took: Duration, outputs: usize) {
    if took >= SLOW_CORE_CALL {
        tracing::warn!(call = what, millis = took.as_millis() as u64, outputs, "slow core call (every stream waited)");
    } else if tracing::enabled!(tracing::Level::DEBUG) && took >= Duration::from_millis(10) {
        tracing::debug!(call = what, millis = took.as_millis() as u64, outputs, "core call");
    }
}

async fn tick_loop(shared: Shared, every: Duration, heartbeat_every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat = shared.now();
    let mut unfinished = false;
    loop {
        if unfinished {
            // The rest of a cut-short allocation cycle: soon, but after the
            // streams queued behind this lock have had their turn.
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            interval.tick().await;
        }
        let now = shared.now();
        let mut inner = shared.lock();
        if !shared.may_act(&inner) {
            unfinished = false;
            continue;
        }
        let cycles_before = inner.core.counters().allocation_cycles;
        let began = shared.now();
        let outputs = inner.core.tick(now);
        let took = shared.now().saturating_sub(began);
        if inner.core.counters().allocation_cycles != cycles_before {
            inner.last_allocation_seconds = took.as_secs_f64();
            shared.measured.allocation_cycle.observe(took.as_secs_f64());
        }
        unfinished = inner.core.allocation_unfinished();
        shared.ui.sample(now, shared.clock.unix_time(), || inner.core.dominant_shares());
        let count = outputs.len();
        shared.submit(&mut inner, outputs, None);
        note_if_slow("tick", took, count);
        if now.saturating_sub(last_heartbeat) >= heartbeat_every {
            last_heartbeat = now;
            let heartbeat = v1::Event { kind: Some(v1::event::Kind::Heartbeat(v1::event::Heartbeat {})) };
            let frameworks: Vec<ConnId> = inner
                .conns
                .iter()
                .filter(|(_, s)| matches!(s, Sender::Framework(_)))
                .map(|(c, _)| *c)
                .collect();
            shared.submit(&mut inner, frameworks.into_iter().map(|c| Output::Framework(c, heartbeat.clone())).collect(), None);
        }
    }
}
