//! Steady-state timings of the broker core's tick against the allocator's
//! cycle on the same cluster, shared by `weir bench all` (issue 22's row
//! "tick ÷ cycle") and `examples/tick_times` (for a profiler).
//!
//! The cluster is `benches/core_cycle.rs`' (agents of
//! `cpus:8;mem:32768;disk:100000`, frameworks in the default role), the
//! whole cycle in one tick. Steady state on both sides: a timed
//! [`BrokerCore::tick`] that offers every agent, then every offer declined
//! with no filter (untimed); and, on an allocator holding the same cluster,
//! a timed `allocate()` then everything recovered. The ratio of the medians
//! is what the books (offer ids, indexes, OFFERS events) cost on top of the
//! DRF decision itself. Medians, not means: the machine is shared, and a
//! neighbour's burst lands in the tail.

use std::time::{Duration, Instant};

use weir_allocator::{Allocator, AllocatorConfig};
use weir_model::{AgentId, FrameworkId, ResourceSet, Role};
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;

use crate::{BrokerCore, BrokerSettings, Output};

/// What went wrong in a measurement (a cycle that did not offer everything).
pub type Error = String;

/// Sorted samples of one measurement.
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut samples: Vec<Duration>) -> Samples {
        samples.sort();
        Samples(samples)
    }

    pub fn median(&self) -> Duration {
        self.0.get(self.0.len() / 2).copied().unwrap_or_default()
    }

    pub fn min(&self) -> Duration {
        self.0.first().copied().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Timed `allocate()` calls on a cluster whose every agent is free, each
/// offering all `agents`, everything recovered after each (untimed); one
/// untimed cycle first.
pub fn timed_allocations(
    alloc: &mut Allocator,
    agents: usize,
    cycles: usize,
) -> Result<Samples, Error> {
    let mut times = Vec::with_capacity(cycles);
    for i in 0..=cycles {
        let now = Duration::from_secs(i as u64);
        let start = Instant::now();
        let offers = alloc.allocate(now);
        let took = start.elapsed();
        if offers.len() != agents {
            return Err(format!(
                "cycle {i} offered {} agents of {agents}",
                offers.len()
            ));
        }
        if i > 0 {
            times.push(took);
        }
        for o in &offers {
            alloc
                .recover(&o.agent, &o.framework, &o.role, &o.resources)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(Samples::new(times))
}

/// The broker's steady tick and the allocator's cycle on the same cluster.
pub struct TickRatio {
    pub tick: Samples,
    pub cycle: Samples,
}

impl TickRatio {
    pub fn ratio(&self) -> f64 {
        self.tick.median().as_secs_f64() / self.cycle.median().as_secs_f64().max(1e-12)
    }
}

/// A core with `agents` agents of `resources` and `frameworks` subscribed
/// frameworks (connections 0 to `frameworks` - 1, ids returned in that
/// order), nothing offered yet; the whole cycle goes in one tick (the
/// running broker spreads it over ticks of `MAX_OFFERS_PER_CYCLE`).
pub fn cluster(
    agents: u64,
    frameworks: u64,
    resources: &ResourceSet,
    settings: BrokerSettings,
) -> Result<(BrokerCore, Vec<String>), Error> {
    let mut core = BrokerCore::new(settings, "bench", Duration::ZERO, Duration::ZERO);
    core.set_max_offers_per_cycle(usize::MAX);
    let wire = resources_to_proto(resources);
    for a in 0..agents {
        let register = v1::agent_message::Register {
            agent: Some(v1::AgentInfo {
                id: String::new(),
                hostname: format!("host{a}"),
                resources: wire.clone(),
                attributes: vec![],
                http_address: String::new(),
            }),
            tasks: vec![],
            ..Default::default()
        };
        core.agent_register(1_000_000 + a, &register, Duration::ZERO);
    }
    let mut ids = Vec::new();
    for f in 0..frameworks {
        let call = v1::Call {
            framework_id: String::new(),
            kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
                data: None,
                framework: Some(v1::FrameworkInfo {
                    name: format!("fw{f}"),
                    ..Default::default()
                }),
            })),
        };
        for o in core.framework_call(f, &call, Duration::ZERO) {
            if let Output::Framework(
                _,
                v1::Event {
                    kind: Some(v1::event::Kind::Subscribed(s)),
                },
            ) = o
            {
                ids.push(s.framework_id);
            }
        }
    }
    if ids.len() as u64 != frameworks {
        return Err(format!(
            "{} of {frameworks} frameworks subscribed",
            ids.len()
        ));
    }
    Ok((core, ids))
}

/// `ticks` timed steady ticks of a broker core with `agents` agents and
/// `frameworks` frameworks, and as many allocator cycles on the same cluster.
pub fn tick_ratio(agents: u64, frameworks: u64, ticks: usize) -> Result<TickRatio, Error> {
    let resources =
        ResourceSet::parse("cpus:8;mem:32768;disk:100000").map_err(|e| e.to_string())?;
    // No decline backoff: every tick offers every agent again.
    let settings = BrokerSettings {
        decline_backoff_max: Duration::ZERO,
        ..BrokerSettings::default()
    };
    let (mut core, ids) = cluster(agents, frameworks, &resources, settings)?;
    let mut ticks_taken = Vec::with_capacity(ticks);
    // One allocation interval apart, so that the agents (which send no
    // heartbeats here) stay well inside the unreachable timeout.
    let interval = BrokerSettings::default().allocation_interval;
    for i in 0..=ticks {
        let now = Duration::from_secs(1) + interval * i as u32;
        let start = Instant::now();
        let out = core.tick(now);
        let took = start.elapsed();
        let mut offered = 0;
        for o in out {
            // The shell builds the event outside the lock; so does this,
            // outside the timed part.
            let Output::Framework(
                conn,
                v1::Event {
                    kind: Some(v1::event::Kind::Offers(offers)),
                },
            ) = o.built()
            else {
                continue;
            };
            offered += offers.offers.len() as u64;
            let Some(framework_id) = ids.get(conn as usize).cloned() else {
                return Err(format!("offers to an unknown connection {conn}"));
            };
            let decline = v1::Call {
                framework_id,
                kind: Some(v1::call::Kind::Decline(v1::call::Decline {
                    offer_ids: offers.offers.into_iter().map(|o| o.id).collect(),
                    filters: Some(v1::Filters {
                        refuse_seconds: Some(0.0),
                    }),
                })),
            };
            core.framework_call(conn, &decline, now);
        }
        if offered != agents {
            return Err(format!("tick {i} offered {offered} agents of {agents}"));
        }
        // The first tick pays the allocator's one-off ranking; not counted.
        if i > 0 {
            ticks_taken.push(took);
        }
    }
    drop(core);

    let mut alloc = Allocator::new(AllocatorConfig::default());
    for a in 0..agents {
        alloc
            .add_agent(
                AgentId::new(format!("agent-{a:06}")),
                resources.clone(),
                vec![],
            )
            .map_err(|e| e.to_string())?;
    }
    for f in 0..frameworks {
        alloc
            .add_framework(
                FrameworkId::new(format!("framework-{f:05}")),
                vec![Role::default_role()],
            )
            .map_err(|e| e.to_string())?;
    }
    let cycle = timed_allocations(&mut alloc, agents as usize, ticks)?;
    Ok(TickRatio {
        tick: Samples::new(ticks_taken),
        cycle,
    })
}
