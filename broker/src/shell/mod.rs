//! The broker's async shell: one port serving gRPC (scheduler, agent and
//! operator APIs) and HTTP (`/state`, `/metrics`, `/health`), a timer that
//! ticks the core, and the map from connection ids to outbound channels.
//!
//! The shell holds no books. Every stream handler converts what arrives
//! into a core call under the lock, then hands the core's outputs to the
//! right channels. A slow reader whose channel fills up is disconnected
//! rather than allowed to grow the broker's memory.

mod grpc;
mod http;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::Status;
use weir_proto::v1;

use crate::core::{BrokerCore, BrokerSettings, ConnId, Output};

/// Messages queued for one stream before the broker gives up on its reader.
const STREAM_BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("broker server failed: {0}")]
    Serve(std::io::Error),
}

/// How the shell is set up (the core's tunables are in [`BrokerSettings`]).
#[derive(Debug, Clone)]
pub struct ShellSettings {
    pub listen: SocketAddr,
    pub max_message_size: usize,
}

enum Sender {
    Agent(mpsc::Sender<Result<v1::BrokerMessage, Status>>),
    Framework(mpsc::Sender<Result<v1::Event, Status>>),
}

struct Inner {
    core: BrokerCore,
    conns: HashMap<ConnId, Sender>,
    next_conn: ConnId,
    last_allocation_seconds: f64,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Shared {
    inner: Arc<Mutex<Inner>>,
    started: Instant,
}

impl Shared {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in the core; the
        // books may then be half-updated, but serving them is still better
        // than taking the whole broker down with a poisoned lock.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a core call and carries out its outputs.
    fn apply(&self, f: impl FnOnce(&mut BrokerCore, Duration) -> Vec<Output>) {
        let now = self.now();
        let mut inner = self.lock();
        let outputs = f(&mut inner.core, now);
        inner.dispatch(outputs);
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
                        if tx.try_send(Ok(msg)).is_err() {
                            overflowed.push(conn);
                        }
                    }
                }
                Output::Framework(conn, msg) => {
                    if let Some(Sender::Framework(tx)) = self.conns.get(&conn) {
                        if tx.try_send(Ok(msg)).is_err() {
                            overflowed.push(conn);
                        }
                    }
                }
                // Dropping the sender ends the response stream once the
                // reader has drained what was queued.
                Output::Close(conn) => {
                    self.conns.remove(&conn);
                }
            }
        }
        for conn in overflowed {
            if let Some(sender) = self.conns.remove(&conn) {
                tracing::warn!(conn, "stream reader too slow or gone; closing it");
                let status = Status::resource_exhausted("the broker closed this stream: its reader fell too far behind");
                match sender {
                    Sender::Agent(tx) => drop(tx.try_send(Err(status))),
                    Sender::Framework(tx) => drop(tx.try_send(Err(status))),
                }
            }
        }
    }
}

/// A broker serving in the background.
pub struct RunningBroker {
    addr: SocketAddr,
    shared: Shared,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), BrokerError>>>,
}

impl RunningBroker {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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

/// Binds the listener and starts serving. Ids are prefixed with a random
/// broker instance id so they stay unique across broker restarts.
pub async fn run(settings: BrokerSettings, shell: ShellSettings) -> Result<RunningBroker, BrokerError> {
    let listener = tokio::net::TcpListener::bind(shell.listen)
        .await
        .map_err(|source| BrokerError::Bind { addr: shell.listen, source })?;
    let addr = listener.local_addr().map_err(|source| BrokerError::Bind { addr: shell.listen, source })?;
    let instance = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let started = Instant::now();
    let tick_every = settings.allocation_interval.clamp(Duration::from_millis(10), Duration::from_millis(100));
    let heartbeat_every = settings.framework_heartbeat_interval;
    let shared = Shared {
        inner: Arc::new(Mutex::new(Inner {
            core: BrokerCore::new(settings, instance.clone(), Duration::ZERO),
            conns: HashMap::new(),
            next_conn: 0,
            last_allocation_seconds: 0.0,
        })),
        started,
    };
    tracing::info!(broker_id = %instance, %addr, "broker listening (gRPC and HTTP)");

    let router = grpc::router(shared.clone(), shell.max_message_size).merge(http::router(shared.clone()));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let ticker = tokio::spawn(tick_loop(shared.clone(), tick_every, heartbeat_every));
    let closer = shared.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.await;
            // End every stream so the graceful shutdown can finish.
            closer.lock().conns.clear();
        };
        let served = axum::serve(listener, router).with_graceful_shutdown(shutdown);
        let result = served.await.map_err(BrokerError::Serve);
        ticker.abort();
        result
    });
    Ok(RunningBroker { addr, shared, stop: Some(stop_tx), task: Some(task) })
}

async fn tick_loop(shared: Shared, every: Duration, heartbeat_every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat = Instant::now();
    loop {
        interval.tick().await;
        let now = shared.now();
        let mut inner = shared.lock();
        let cycles_before = inner.core.counters().allocation_cycles;
        let began = Instant::now();
        let outputs = inner.core.tick(now);
        if inner.core.counters().allocation_cycles != cycles_before {
            inner.last_allocation_seconds = began.elapsed().as_secs_f64();
        }
        inner.dispatch(outputs);
        if last_heartbeat.elapsed() >= heartbeat_every {
            last_heartbeat = Instant::now();
            let heartbeat = v1::Event { kind: Some(v1::event::Kind::Heartbeat(v1::event::Heartbeat {})) };
            let frameworks: Vec<ConnId> = inner
                .conns
                .iter()
                .filter(|(_, s)| matches!(s, Sender::Framework(_)))
                .map(|(c, _)| *c)
                .collect();
            inner.dispatch(frameworks.into_iter().map(|c| Output::Framework(c, heartbeat.clone())).collect());
        }
    }
}
