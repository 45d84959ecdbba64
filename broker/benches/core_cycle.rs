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

/// A core with `agents` agents and `frameworks` subscribed frameworks,
/// nothing offered yet, the whole cycle in one tick.
fn cluster(agents: u64, frameworks: u64) -> BrokerCore {
    let resources = ResourceSet::parse("cpus:8;mem:32768;disk:100000").unwrap();
    weir_broker::bench::cluster(agents, frameworks, &resources, BrokerSettings::default()).unwrap().0
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
