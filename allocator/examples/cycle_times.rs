//! Distribution of full-cycle times, for a noisy machine where criterion's
//! mean says more about the neighbours than about the code: the minimum and
//! lower quartile of many cycles are what the allocator itself costs.
//!
//! Same cluster as `benches/allocation_cycle.rs`.
//! Run: `cargo run --release -p weir-allocator --example cycle_times -- 10000 300`
//! (agents, cycles; frameworks = agents / 10 in frameworks / 10 roles); a
//! third argument `reuse` runs `allocate_into` with one buffer kept across
//! cycles; `quotas` runs the cluster of the bench's `quota_cycle` instead
//! (roles three levels deep: 5 organisations × 4 teams × 5 projects, each
//! organisation guaranteed 10 % and limited to 30 % of the cluster);
//! `fair` (alone or in `quotas+fair`) turns the fair-share bound on, as
//! the broker runs it by default.

use std::time::{Duration, Instant};

use weir_allocator::{Allocator, AllocatorConfig, Limits, Quota};
use weir_model::{AgentId, FrameworkId, Milli, ResourceSet, Resources, Role};

fn main() {
    let mut args = std::env::args().skip(1);
    let agents: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let cycles: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100).max(1);
    let mode = args.next().unwrap_or_default();
    let (reuse, quotas, fair) = (mode == "reuse", mode.starts_with("quotas"), mode.ends_with("fair"));
    let frameworks = (agents / 10).max(1);
    let roles = (frameworks / 10).max(1);
    let mut alloc = Allocator::new(AllocatorConfig { fair_share_bound: fair, ..AllocatorConfig::default() });
    let total = ResourceSet::parse("cpus:32;mem:131072;disk:500000;ports:[31000-32000]").expect("spec parses");
    for a in 0..agents {
        alloc.add_agent(AgentId::new(format!("agent-{a:06}")), total.clone(), vec![]).expect("new agent");
    }
    if quotas {
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
    }
    for f in 0..frameworks {
        let role = if quotas {
            let leaf = f % 100;
            Role::new(format!("org-{}/team-{}/project-{}", leaf / 20, (leaf / 5) % 4, leaf % 5))
        } else {
            Role::new(format!("role-{}", f % roles))
        };
        alloc.add_framework(FrameworkId::new(format!("framework-{f:05}")), vec![role]).expect("new framework");
    }
    let mut times = Vec::with_capacity(cycles);
    let mut offers = Vec::new();
    for i in 0..=cycles {
        offers.clear();
        let now = Duration::from_secs(i as u64);
        let start = Instant::now();
        if reuse {
            alloc.allocate_into(now, &mut offers);
        } else {
            offers = alloc.allocate(now);
        }
        // Every agent is offered in every cycle, the bound included (the
        // roles reach their fair shares together); quota'd cycles may cut
        // an agent into several offers.
        assert!(quotas || offers.len() == agents, "cycle {i} offered {} agents of {agents}", offers.len());
        // Cycle 0 ranks everything once (the lazy re-sort); not counted.
        if i > 0 {
            times.push(start.elapsed());
        }
        for o in &offers {
            alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).expect("offered resources come back");
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "{}{}{agents} agents x {frameworks} frameworks in {}, {cycles} cycles: \
         min {:.2} ms, p25 {:.2} ms, median {:.2} ms, mean {:.2} ms, max {:.2} ms",
        if reuse { "allocate_into, " } else { "" },
        if fair { "fair-share bound, " } else { "" },
        if quotas { "100 roles 3 levels deep with quotas".to_owned() } else { format!("{roles} roles") },
        ms(times[0]),
        ms(times[times.len() / 4]),
        ms(times[times.len() / 2]),
        ms(mean),
        ms(times[times.len() - 1]),
    );
}
