//! The broker core's full allocation tick: the allocator's DRF cycle plus
//! everything the core does around it (offer records, expiry index, one
//! OFFERS event per framework). Compare with the allocator's own
//! `allocation_cycle` bench to see what the books cost on top of DRF.
//!
//! Run: `cargo bench -p weir-broker --bench core_cycle`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use weir_broker::{BrokerCore, BrokerSettings, Output};
use weir_model::ResourceSet;
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;

/// A core with `agents` agents and `frameworks` subscribed frameworks,
/// nothing offered yet.
fn cluster(agents: u64, frameworks: u64) -> BrokerCore {
    let mut core = BrokerCore::new(BrokerSettings::default(), "bench", Duration::ZERO, Duration::ZERO);
    // The whole cycle in one tick (the running broker spreads it over
    // several of MAX_OFFERS_PER_CYCLE agents each).
    core.set_max_offers_per_cycle(usize::MAX);
    let resources = resources_to_proto(&ResourceSet::parse("cpus:8;mem:32768;disk:100000").unwrap());
    for a in 0..agents {
        let register = v1::agent_message::Register {
            agent: Some(v1::AgentInfo {
                id: String::new(),
                hostname: format!("host{a}"),
                resources: resources.clone(),
                attributes: vec![],
                http_address: String::new(),
            }),
            tasks: vec![],
            ..Default::default()
        };
        core.agent_register(1_000_000 + a, &register, Duration::ZERO);
    }
    for f in 0..frameworks {
        let call = v1::Call {
            framework_id: String::new(),
            kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
        data: None,
                framework: Some(v1::FrameworkInfo { name: format!("fw{f}"), ..Default::default() }),
            })),
        };
        core.framework_call(f, &call, Duration::ZERO);
    }
    core
}

fn offers_made(out: &[Output]) -> usize {
    out.iter()
        .map(|o| match o {
            Output::Offers(_, batch) => batch.len(),
            _ => 0,
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker_core_tick");
    group.sample_size(10);
    for (agents, frameworks) in [(1_000u64, 100u64), (10_000, 1_000), (50_000, 5_000)] {
        // Sanity: one tick offers every agent.
        let mut probe = cluster(agents, frameworks);
        assert_eq!(offers_made(&probe.tick(Duration::from_secs(1))), agents as usize);
        drop(probe);
        group.bench_function(format!("{agents}_agents_x_{frameworks}_frameworks"), |b| {
            b.iter_batched(
                || cluster(agents, frameworks),
                |mut core| {
                    let out = core.tick(Duration::from_secs(1));
                    (out, core)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
