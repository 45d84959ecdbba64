//! One allocation cycle at cluster scale, and the incremental path the
//! broker takes after a single task ends (`recover` + `allocate`).
//!
//! Cluster: every agent `cpus:32;mem:131072;disk:500000;ports:[31000-32000]`,
//! frameworks spread round-robin over `frameworks / 10` roles ("role-<n>"),
//! or all in one role (the within-role set at its largest), equal weights,
//! all active, none suppressed or filtered. Setup and the
//! `recover` calls that bring the cluster back to "everything free" between
//! cycles are outside the timed part; the first (ranking) cycle is run in
//! setup too, so each timed cycle starts from the same books.
//!
//! `quota_cycle` runs the same full cycle with roles three levels deep
//! (5 organisations × 4 teams × 5 projects = 100 leaf roles, frameworks
//! round-robin over the leaves) and quotas on every organisation
//! (guarantee 10 % and limit 30 % of the cluster), so every grant pays the
//! tree walk, the limit caps and the guarantee headroom, beside the flat
//! figure (`full_cycle/10000_agents_x_1000_frameworks_in_100_roles`).
//!
//! Run: `cargo bench -p weir-allocator --bench allocation_cycle`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use weir_allocator::{Allocation, Allocator, AllocatorConfig, Limits, Quota};
use weir_model::{AgentId, FrameworkId, Milli, ResourceSet, Resources, Role};

fn cluster(agents: usize, frameworks: usize, roles: usize) -> Allocator {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    let total = ResourceSet::parse("cpus:32;mem:131072;disk:500000;ports:[31000-32000]").expect("spec parses");
    for f in 0..frameworks {
        let role = Role::new(format!("role-{}", f % roles));
        alloc.add_framework(FrameworkId::new(format!("framework-{f:05}")), vec![role]).expect("new framework");
    }
    for a in 0..agents {
        alloc.add_agent(AgentId::new(format!("agent-{a:06}")), total.clone(), vec![]).expect("new agent");
    }
    // Rank everything once, then give it all back.
    let offers = alloc.allocate(Duration::ZERO);
    assert_eq!(offers.len(), agents, "every agent is offered");
    recover_all(&mut alloc, &offers);
    alloc
}

fn recover_all(alloc: &mut Allocator, offers: &[Allocation]) {
    for o in offers {
        alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).expect("offered resources come back");
    }
}

fn full_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_cycle");
    group.sample_size(20);
    let sizes = [(1_000, 100, 10), (10_000, 1_000, 100), (50_000, 5_000, 500), (50_000, 5_000, 1)];
    for (agents, frameworks, roles) in sizes {
        let mut alloc = cluster(agents, frameworks, roles);
        let mut now = Duration::ZERO;
        group.bench_function(format!("{agents}_agents_x_{frameworks}_frameworks_in_{roles}_roles"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    now += Duration::from_secs(1);
                    let start = Instant::now();
                    let offers = alloc.allocate(black_box(now));
                    timed += start.elapsed();
                    assert_eq!(offers.len(), agents);
                    recover_all(&mut alloc, &offers);
                }
                timed
            })
        });
    }
    group.finish();
}

/// The same full cycles through `allocate_into` with one output buffer kept
/// across cycles, as a broker that reuses its buffer would run them.
fn full_cycle_reused_buffer(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_cycle_reused_buffer");
    group.sample_size(20);
    for (agents, frameworks, roles) in [(10_000, 1_000, 100), (50_000, 5_000, 500)] {
        let mut alloc = cluster(agents, frameworks, roles);
        let mut now = Duration::ZERO;
        let mut offers = Vec::new();
        group.bench_function(format!("{agents}_agents_x_{frameworks}_frameworks_in_{roles}_roles"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    now += Duration::from_secs(1);
                    offers.clear();
                    let start = Instant::now();
                    alloc.allocate_into(black_box(now), &mut offers);
                    timed += start.elapsed();
                    assert_eq!(offers.len(), agents);
                    recover_all(&mut alloc, &offers);
                }
                timed
            })
        });
    }
    group.finish();
}

/// One task's worth (here: one whole offer) comes back on a 50,000-agent
/// cluster that is otherwise fully allocated, and a cycle re-offers it.
fn recover_then_allocate(c: &mut Criterion) {
    let mut group = c.benchmark_group("incremental");
    let (agents, frameworks) = (50_000, 5_000);
    let mut alloc = cluster(agents, frameworks, frameworks / 10);
    let mut held = alloc.allocate(Duration::ZERO);
    let mut now = Duration::ZERO;
    let mut next = 0usize;
    group.bench_function(format!("recover_and_allocate_{agents}_agents_x_{frameworks}_frameworks"), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                now += Duration::from_secs(1);
                let i = next % held.len();
                next += 1;
                let o = &held[i];
                let start = Instant::now();
                alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).expect("held resources come back");
                let mut offers = alloc.allocate(black_box(now));
                timed += start.elapsed();
                assert_eq!(offers.len(), 1);
                held[i] = offers.pop().expect("one offer");
            }
            timed
        })
    });
    group.finish();
}

/// An agent joins a fully allocated 50,000-agent cluster and is offered:
/// the total changed, so this cycle pays the lazy re-sort of every
/// (framework, role) key once.
fn agent_joins_then_allocate(c: &mut Criterion) {
    let mut group = c.benchmark_group("incremental");
    let (agents, frameworks) = (50_000, 5_000);
    let mut alloc = cluster(agents, frameworks, frameworks / 10);
    let _held = alloc.allocate(Duration::ZERO);
    let total = ResourceSet::parse("cpus:32;mem:131072;disk:500000;ports:[31000-32000]").expect("spec parses");
    let newcomer = AgentId::new("agent-newcomer");
    let mut now = Duration::ZERO;
    group.bench_function(format!("add_agent_and_allocate_{agents}_agents_x_{frameworks}_frameworks"), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                now += Duration::from_secs(1);
                let start = Instant::now();
                alloc.add_agent(newcomer.clone(), total.clone(), vec![]).expect("new agent");
                let offers = alloc.allocate(black_box(now));
                timed += start.elapsed();
                assert_eq!(offers.len(), 1);
                alloc.remove_agent(&newcomer).expect("known agent");
            }
            timed
        })
    });
    group.finish();
}

/// The three-level, quota'd cluster of `quota_cycle`.
fn quota_cluster(agents: usize, frameworks: usize) -> Allocator {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    let total = ResourceSet::parse("cpus:32;mem:131072;disk:500000;ports:[31000-32000]").expect("spec parses");
    for a in 0..agents {
        alloc.add_agent(AgentId::new(format!("agent-{a:06}")), total.clone(), vec![]).expect("new agent");
    }
    let share = |pct: u64| Resources {
        cpus: Milli::from_units(32 * agents as u64 * pct / 100),
        mem: Milli::from_units(131_072 * agents as u64 * pct / 100),
        ..Resources::default()
    };
    for org in 0..5 {
        let limit = share(30);
        let quota = Quota { guarantee: share(10), limit: Limits { cpus: Some(limit.cpus), mem: Some(limit.mem), ..Limits::default() } };
        alloc.set_quota(Role::new(format!("org-{org}")), quota).expect("quotas fit");
    }
    for f in 0..frameworks {
        let leaf = f % 100;
        let role = Role::new(format!("org-{}/team-{}/project-{}", leaf / 20, (leaf / 5) % 4, leaf % 5));
        alloc.add_framework(FrameworkId::new(format!("framework-{f:05}")), vec![role]).expect("new framework");
    }
    let offers = alloc.allocate(Duration::ZERO);
    assert_eq!(offered_cpus(&offers), 32_000 * agents as u64, "every agent is offered in full");
    recover_all(&mut alloc, &offers);
    alloc
}

fn offered_cpus(offers: &[Allocation]) -> u64 {
    offers.iter().map(|o| o.resources.total().cpus.0).sum()
}

/// Full cycles of the three-level, quota'd cluster (see the header).
fn quota_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("quota_cycle");
    group.sample_size(20);
    let (agents, frameworks) = (10_000, 1_000);
    let mut alloc = quota_cluster(agents, frameworks);
    let mut now = Duration::ZERO;
    group.bench_function(format!("{agents}_agents_x_{frameworks}_frameworks_in_3_levels_with_quotas"), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                now += Duration::from_secs(1);
                let start = Instant::now();
                let offers = alloc.allocate(black_box(now));
                timed += start.elapsed();
                assert_eq!(offered_cpus(&offers), 32_000 * agents as u64);
                recover_all(&mut alloc, &offers);
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, quota_cycle, full_cycle, full_cycle_reused_buffer, recover_then_allocate, agent_joins_then_allocate);
criterion_main!(benches);
