//! YARN allocation rate: emulated ApplicationMasters over real Hadoop IPC
//! (SASL DIGEST-MD5 with AMRM tokens, the real ApplicationMasterProtocol
//! service) against the shim's RM core and scheduler, with emulated agents
//! offering resources in place of a broker. Each AM registers, asks for its
//! containers, and calls `allocate` (as Spark does while asks are pending)
//! until it holds them all. Measures containers allocated per second and
//! the allocate round trip (p50, p99), with one and with many applications.
//!
//!   cargo run --release -p weir-yarn-rm --example alloc_rate -- APPS CONTAINERS_PER_APP [AGENTS] [PER_OFFER]
//!
//! Prints one summary line. Loopback only; every loop is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_yarn_ipc::client::{Client, ClientConfig};
use weir_yarn_ipc::connection::AuthPolicy;
use weir_yarn_ipc::server::{Server, ServerConfig};
use weir_yarn_rm::am_protocol::{AmProtocol, Rm};
use weir_yarn_api::ids::AttemptId;
use weir_yarn_api::records as r;
use weir_yarn_rm::rm_core::{Capacity, NodeState, ObservedNode, RmCore, Submission};
use weir_yarn_rm::core::{Now, YarnCore};
use weir_yarn_rm::scheduler::{Offer, Scheduler, SchedulerConfig};
use weir_model::SystemClock;
use weir_yarn_api::tokens::Issuer;
use weir_yarn_api::APPLICATION_MASTER_PROTOCOL;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn arg(i: usize, default: u64) -> u64 {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
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

#[tokio::main]
async fn main() {
    let apps = arg(1, 1).clamp(1, 1000);
    let per_app = arg(2, 10_000).clamp(1, 1_000_000);
    let agents = arg(3, 1000).clamp(1, 100_000);
    let per_offer = arg(4, 64).clamp(1, 64) as usize;
    let started = now_ms();
    let mut core = RmCore::new(started, &["default".to_string()], 10_000).unwrap();
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
    let config = SchedulerConfig { max_containers_per_offer: per_offer, ..SchedulerConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (effects, mut effects_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut core = YarnCore::new(core, Scheduler::new(config));
    // Applications, each with its AM container placed, before the core's
    // task takes the core over.
    let mut attempts = Vec::new();
    {
        for _ in 0..apps {
            let (id, _) = core.rm_mut().new_application().unwrap();
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
            core.rm_mut().submit(s, now_ms()).unwrap();
            attempts.push(AttemptId { app: id, attempt: 1 });
        }
        core.tick(Now::from(now_ms()));
        let mut round = 0;
        while core.scheduler().has_demand() && round < 1000 {
            round += 1;
            core.offers(offers(agents, round), Now::from(now_ms()));
        }
        core.take_effects();
    }
    let (handle, _core_task) = weir_yarn_rm::core::spawn(core, Arc::new(SystemClock::new()), effects);
    tokio::spawn(async move { while effects_rx.recv().await.is_some() {} });
    let rm = Arc::new(Rm { core: handle, tokens: Issuer::new(addr.to_string(), started, started as u64) });
    let mut server = Server::new(ServerConfig { auth: AuthPolicy::TokenRequired, ..ServerConfig::default() });
    server.register(APPLICATION_MASTER_PROTOCOL, Arc::new(AmProtocol::new(rm.clone())));
    let lookup = rm.clone();
    server.set_token_passwords(Arc::new(move |identifier: &[u8]| lookup.tokens.amrm_password(identifier, now_ms() as u64)));
    let _server = server.spawn(listener).unwrap();

    // The emulated agents: offer everything every 10 ms while demand lasts.
    let offerer = {
        let rm = rm.clone();
        tokio::spawn(async move {
            let mut round = 1000;
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                round += 1;
                let batch = offers(agents, round);
                let more = rm.core.call(move |core, now| {
                    if core.scheduler().has_demand() {
                        core.offers(batch, now);
                    }
                }).await;
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
        handles.push(tokio::spawn(async move {
            let client = Client::connect(addr, config).await.expect("connect");
            let _: r::RegisterApplicationMasterResponseProto = client
                .call_message(APPLICATION_MASTER_PROTOCOL, "registerApplicationMaster", &r::RegisterApplicationMasterRequestProto::default())
                .await
                .expect("register");
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
                    client.call_message(APPLICATION_MASTER_PROTOCOL, "allocate", &request).await.expect("allocate");
                rtts.push(t.elapsed());
                response_id = answer.response_id();
                got += answer.allocated_containers.len() as u64;
                // Spark's pace while asks are pending is 200 ms; the harness
                // asks as fast as answers come, to find the ceiling.
                if answer.allocated_containers.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            (got, rtts)
        }));
    }
    let mut total = 0;
    let mut rtts = Vec::new();
    for h in handles {
        let (got, r) = h.await.unwrap();
        total += got;
        rtts.extend(r);
    }
    let elapsed = start.elapsed();
    offerer.abort();
    rtts.sort();
    let pct = |p: f64| rtts.get(((rtts.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
    println!(
        "yarn-alloc apps={apps} containers={total} agents={agents} per_offer={per_offer}: {:.0} containers/s over {:.2}s; allocate rtt p50={:.2}ms p99={:.2}ms ({} calls)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        rtts.len()
    );
}
