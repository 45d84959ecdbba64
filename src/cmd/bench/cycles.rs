//! In-process timings of the allocator's cycle and the broker core's whole
//! tick, for `weir bench all` (issue 22's rows "allocation cycle" and
//! "tick ÷ cycle").
//!
//! - [`allocator_cycle`]: the cluster of `allocator/examples/cycle_times`
//!   (agents of `cpus:32;mem:131072;disk:500000;ports:[31000-32000]`,
//!   agents / 10 frameworks round-robin over frameworks / 10 roles); each
//!   timed sample is one `allocate()` that offers every agent, everything
//!   given back between samples (untimed). The first cycle ranks everything
//!   once (the lazy re-sort) and is not counted.
//! - [`tick_ratio`]: the broker core's steady tick against the
//!   allocator's cycle on the same cluster (`weir_broker::bench`, which
//!   says how).
//!
//! Medians, not means: the machine is shared, and a neighbour's burst
//! lands in the tail.

use anyhow::Result;
use weir_allocator::{Allocator, AllocatorConfig};
pub use weir_broker::bench::{tick_ratio, Samples};
use weir_broker::bench::timed_allocations;
use weir_model::{AgentId, FrameworkId, ResourceSet, Role};

fn spec(s: &str) -> Result<ResourceSet> {
    ResourceSet::parse(s).map_err(|e| anyhow::anyhow!("{s}: {e}"))
}

/// `cycles` timed full cycles of the allocator on `agents` agents.
pub fn allocator_cycle(agents: usize, cycles: usize) -> Result<Samples> {
    let frameworks = (agents / 10).max(1);
    let roles = (frameworks / 10).max(1);
    let mut alloc = Allocator::new(AllocatorConfig::default());
    let total = spec("cpus:32;mem:131072;disk:500000;ports:[31000-32000]")?;
    for a in 0..agents {
        alloc.add_agent(AgentId::new(format!("agent-{a:06}")), total.clone(), vec![])?;
    }
    for f in 0..frameworks {
        alloc.add_framework(FrameworkId::new(format!("framework-{f:05}")), vec![Role::new(format!("role-{}", f % roles))])?;
    }
    timed_allocations(&mut alloc, agents, cycles).map_err(|e| anyhow::anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_clusters_are_measured_offering_every_agent() {
        // The functions themselves fail if a cycle or tick does not offer
        // every agent; a small cluster keeps this quick.
        let s = allocator_cycle(200, 3).unwrap();
        assert_eq!(s.len(), 3);
        assert!(s.min() <= s.median());
        let r = tick_ratio(200, 20, 3).unwrap();
        assert_eq!((r.tick.len(), r.cycle.len()), (3, 3));
        assert!(r.ratio() > 0.0);
    }
}
