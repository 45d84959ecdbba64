//! The YARN allocation-rate harness: emulated ApplicationMasters over real
//! Hadoop IPC (SASL DIGEST-MD5 with AMRM tokens, the real
//! ApplicationMasterProtocol service) against the shim's RM core and
//! scheduler, with emulated agents offering resources every 10 ms in place
//! of a broker. Each AM registers, asks for its containers and calls
//! `allocate` (as Spark does while asks are pending, but as fast as the
//! answers come) until it holds them all.
//!
//! A library function rather than only an example so that `weir bench all`
//! runs the very same measurement as
//! `cargo run --release -p weir-yarn-rm --example alloc_rate`.
//! Loopback only; every loop is bounded (offer rounds while placing AMs,
//! each AM's 300 s deadline).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_model::SystemClock;
use weir_yarn_api::ids::AttemptId;
use weir_yarn_api::records as r;
use weir_yarn_api::tokens::Issuer;
use weir_yarn_api::APPLICATION_MASTER_PROTOCOL;
use weir_yarn_ipc::client::{Client, ClientConfig};
use weir_yarn_ipc::connection::AuthPolicy;
use weir_yarn_ipc::server::{Server, ServerConfig};

use crate::am_protocol::{AmProtocol, Rm};
use crate::core::{Now, YarnCore};
use crate::rm_core::{Capacity, NodeState, ObservedNode, RmCore, Submission};
use crate::scheduler::{Offer, Scheduler, SchedulerConfig};

/// The shape of one run.
#[derive(Debug, Clone, Copy)]
pub struct AllocRateConfig {
    /// ApplicationMasters (1–1,000).
    pub apps: u64,
    /// Containers each asks for (1–1,000,000).
    pub containers_per_app: u64,
    /// Emulated agents offering every 10 ms (1–100,000).
    pub agents: u64,
    /// Containers placed per offer at most (1–64).
    pub per_offer: usize,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct AllocRate {
    pub config: AllocRateConfig,
    /// Containers the AMs received.
    pub containers: u64,
    /// First register → last container received.
    pub elapsed: Duration,
    /// `allocate` round trips, sorted.
    pub round_trips: Vec<Duration>,
}

impl AllocRate {
    pub fn containers_per_second(&self) -> f64 {
        self.containers as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-quantile (0–1) of the `allocate` round trip.
    pub fn round_trip(&self, p: f64) -> Duration {
        let rtts = &self.round_trips;
        rtts.get(((rtts.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default()
    }
}

impl fmt::Display for AllocRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        write!(
            f,
            "yarn-alloc apps={} containers={} agents={} per_offer={}: {:.0} containers/s over {:.2}s; allocate rtt p50={:.2}ms p99={:.2}ms ({} calls)",
            c.apps,
            self.containers,
            c.agents,
            c.per_offer,
            self.containers_per_second(),
            self.elapsed.as_secs_f64(),
            self.round_trip(0.50).as_secs_f64() * 1e3,
            self.round_trip(0.99).as_secs_f64() * 1e3,
            self.round_trips.len()
        )
    }
}

/// Why a run could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum AllocRateError {
    #[error("setting up the RM core: {0}")]
    Setup(String),
    #[error("IPC: {0}")]
    Ipc(String),
    #[error("an emulated AM task failed: {0}")]
    Am(String),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn offers(agents: u64, round: u64) -> Vec<Offer> {
    (0..agents)
        .map(|a| Offer {
            id: format!("o{round}-{a}").into(),
            agent_id: format!("agent-{a}").into(),
            hostname: format!("host{a}"),
            role: "default".into(),
            cpus: weir_model::Milli::from_units(64),
            mem_mb: weir_model::Milli::from_units(262_144),
            ports: vec![(31000, 31010)],
        })
        .collect()
}

/// Runs one measurement; the caller's tokio runtime carries the IPC server,
/// the RM core's task and the AMs.
pub async fn run(config: AllocRateConfig) -> Result<AllocRate, AllocRateError> {
    let AllocRateConfig { apps, containers_per_app: per_app, agents, per_offer } = config;
    let config = AllocRateConfig {
        apps: apps.clamp(1, 1000),
        containers_per_app: per_app.clamp(1, 1_000_000),
        agents: agents.clamp(1, 100_000),
        per_offer: per_offer.clamp(1, 64),
    };
    let AllocRateConfig { apps, containers_per_app: per_app, agents, per_offer } = config;
    let started = now_ms();
    let setup = |e: &dyn fmt::Display| AllocRateError::Setup(e.to_string());
    let mut core = RmCore::new(started, &["default".to_string()], 10_000).map_err(|e| setup(&e))?;
    core.observe_nodes(
        (0..agents.min(1000))
            .map(|a| ObservedNode {
                agent_id: format!("agent-{a}"),
                node_id: weir_yarn_api::ids::NodeId { host: format!("host{a}"), port: 5051 },
                http_address: format!("host{a}:5051"),
                capability: Capacity { memory_mb: 262_144, vcores: 64 },
                used: Capacity::default(),
                containers: 0,
                state: NodeState::Running,
                health_report: String::new(),
                decommission_deadline_ms: None,
            })
            .collect(),
        started,
    );
    let scheduler = SchedulerConfig { max_containers_per_offer: per_offer, ..SchedulerConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| AllocRateError::Ipc(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| AllocRateError::Ipc(e.to_string()))?;
    let (effects, mut effects_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut core = YarnCore::new(core, Scheduler::new(scheduler));
    // Applications, each with its AM container placed, before the core's
    // task takes the core over.
    let mut attempts = Vec::new();
    for _ in 0..apps {
        let (id, _) = core.rm_mut().new_application().map_err(|e| setup(&e))?;
        let s = Submission {
            id,
            name: "alloc-rate".into(),
            queue: "default".into(),
            user: "bench".into(),
            application_type: "YARN".into(),
            tags: vec![],
            priority: 0,
            am_resource: Some(Capacity { memory_mb: 1024, vcores: 1 }),
            max_attempts: 1,
            unmanaged_am: false,
            am_launch: Some(Default::default()),
        };
        core.rm_mut().submit(s, now_ms()).map_err(|e| setup(&e))?;
        attempts.push(AttemptId { app: id, attempt: 1 });
    }
    core.tick(Now::from(now_ms()));
    let mut round = 0;
    while core.scheduler().has_demand() && round < 1000 {
        round += 1;
        core.offers(offers(agents, round), Now::from(now_ms()));
    }
    core.take_effects();
    let (handle, core_task) = crate::core::spawn(core, Arc::new(SystemClock::new()), effects);
    let drain = tokio::spawn(async move { while effects_rx.recv().await.is_some() {} });
    let rm = Arc::new(Rm { core: handle, tokens: Issuer::new(addr.to_string(), started, started as u64) });
    // Every AM connects from 127.0.0.1: room for all of them from one peer
    // (the default per-peer cap, 512, would refuse half of 1,000 AMs).
    let connections = weir_net::admission::ConnectionLimits { max_connections: 4096, max_per_peer: 2048 };
    let mut server = Server::new(ServerConfig { auth: AuthPolicy::TokenRequired, connections, ..ServerConfig::default() });
    server.register(APPLICATION_MASTER_PROTOCOL, Arc::new(AmProtocol::new(rm.clone())));
    let lookup = rm.clone();
    server.set_token_passwords(Arc::new(move |identifier: &[u8]| lookup.tokens.amrm_password(identifier, now_ms() as u64)));
    let server = server.spawn(listener).map_err(|e| AllocRateError::Ipc(e.to_string()))?;

    // The emulated agents: offer everything every 10 ms while demand lasts.
    let offerer = {
        let rm = rm.clone();
        tokio::spawn(async move {
            let mut round = 1000;
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                round += 1;
                let batch = offers(agents, round);
                let more = rm
                    .core
                    .call(move |core, now| {
                        if core.scheduler().has_demand() {
                            core.offers(batch, now);
                        }
                    })
                    .await;
                if more.is_err() {
                    return;
                }
            }
        })
    };

    let start = Instant::now();
    let mut handles = Vec::new();
    for attempt in attempts {
        let token = rm.tokens.amrm_token(attempt);
        let config = ClientConfig {
            user: attempt.to_string(),
            protocol: APPLICATION_MASTER_PROTOCOL.into(),
            token: Some(token),
            max_frame_len: 128 << 20,
        };
        handles.push(tokio::spawn(am(addr, config, per_app)));
    }
    let mut total = 0;
    let mut round_trips = Vec::new();
    let mut failure = None;
    for h in handles {
        match h.await {
            Ok(Ok((got, rtts))) => {
                total += got;
                round_trips.extend(rtts);
            }
            Ok(Err(e)) => failure = failure.or(Some(AllocRateError::Ipc(e))),
            Err(e) => failure = failure.or(Some(AllocRateError::Am(e.to_string()))),
        }
    }
    let elapsed = start.elapsed();
    offerer.abort();
    drop(server);
    core_task.abort();
    drain.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    round_trips.sort();
    Ok(AllocRate { config, containers: total, elapsed, round_trips })
}

/// One emulated AM: register, ask once, `allocate` until it holds
/// `per_app` containers or 300 s have passed.
async fn am(addr: std::net::SocketAddr, config: ClientConfig, per_app: u64) -> Result<(u64, Vec<Duration>), String> {
    // A thousand AMs connecting at once can overflow the listener's accept
    // queue (the kernel then resets the connection): retry a few times
    // rather than lose the row; a real AM's client retries too.
    let mut attempt = 0;
    let client = loop {
        match Client::connect(addr, config.clone()).await {
            Ok(client) => break client,
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "alloc_rate: connect failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(format!("connect (after {attempt} retries): {e}")),
        }
    };
    let _: r::RegisterApplicationMasterResponseProto = client
        .call_message(APPLICATION_MASTER_PROTOCOL, "registerApplicationMaster", &r::RegisterApplicationMasterRequestProto::default())
        .await
        .map_err(|e| format!("registerApplicationMaster: {e}"))?;
    let ask = r::ResourceRequestProto {
        priority: Some(r::PriorityProto { priority: Some(1) }),
        resource_name: Some("*".into()),
        capability: Some(r::ResourceProto { memory: Some(1024), virtual_cores: Some(1) }),
        num_containers: Some(per_app as i32),
        relax_locality: Some(true),
        ..Default::default()
    };
    let mut got = 0u64;
    let mut response_id = 0;
    let mut rtts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first = true;
    while got < per_app && Instant::now() < deadline {
        let request = r::AllocateRequestProto {
            ask: if first { vec![ask.clone()] } else { vec![] },
            response_id: Some(response_id),
            ..Default::default()
        };
        first = false;
        let t = Instant::now();
        let answer: r::AllocateResponseProto =
            client.call_message(APPLICATION_MASTER_PROTOCOL, "allocate", &request).await.map_err(|e| format!("allocate: {e}"))?;
        rtts.push(t.elapsed());
        response_id = answer.response_id();
        got += answer.allocated_containers.len() as u64;
        // Spark's pace while asks are pending is 200 ms; the harness asks
        // as fast as answers come, to find the ceiling.
        if answer.allocated_containers.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok((got, rtts))
}
