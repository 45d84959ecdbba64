//! The cluster simulation over a fixed set of seeds, in CI.
//!
//! Each seed is a whole run: four agents, three scripted frameworks, a
//! minute of random faults (stream breaks, agent crashes, broker
//! failovers, partitions, time jumps, an abandoned framework), then a quiet
//! phase after which nothing may be lost. A failure names its seed; replay
//! it with `cargo run -p weir-sim -- --seeds N --trace`.

use weir_sim::{run, SimConfig};

fn assert_passes(seed: u64) {
    let outcome = run(SimConfig::new(seed));
    let report: Vec<String> = outcome.violations.iter().map(|v| format!("{:?} at {:?}: {}", v.kind, v.at, v.message)).collect();
    assert!(report.is_empty(), "seed {seed} failed (replay: cargo run -p weir-sim -- --seeds {seed} --trace):\n{}", report.join("\n"));
    assert!(outcome.stats.tasks_launched > 0, "seed {seed} launched nothing: {:?}", outcome.stats);
}

#[test]
fn a_run_is_a_function_of_its_seed() {
    let a = run(SimConfig::new(42));
    let b = run(SimConfig::new(42));
    assert_eq!(a.trace_hash, b.trace_hash, "same seed, different runs");
    assert_eq!(a.stats.events, b.stats.events);
    let c = run(SimConfig::new(43));
    assert_ne!(a.trace_hash, c.trace_hash, "different seeds should differ");
}

#[test]
fn fixed_seeds_keep_every_invariant() {
    for seed in 0..10 {
        assert_passes(seed);
    }
}

/// Seeds that found bugs in the cores, fixed since; each names its fix.
#[test]
fn seeds_that_found_bugs_stay_fixed() {
    // 9: a re-registering agent's ended tasks stayed in its task list
    //    ("a re-registering agent's ended-but-unacknowledged tasks…");
    //    seeds 0..10 above all tripped the books check of the same commit.
    // 2: TASK_UNKNOWN to a reconcile while a new leader awaited the agent.
    // 93: an agent returned with tasks of a framework removed meanwhile.
    // 14, 80, 116, 278: KILL answered TASK_UNKNOWN for a task on an awaited or
    //    unreachable agent.
    // 792, 1013: an agent restart in the middle of a kill left a task that
    //    ignores TERM running forever (agent core).
    for seed in [2, 9, 14, 80, 93, 116, 278, 792, 1013] {
        assert_passes(seed);
    }
}

/// Not fixed: a framework removed (failover timeout passed) by one leader,
/// while one of its tasks' agents is away; the broker fails over; the agent
/// returns to the new leader, whose registry no longer holds the framework,
/// so it keeps the tasks under a placeholder framework that never expires:
/// they run, holding their resources, forever. The same leader kills them
/// (`removed_frameworks`); across a failover it cannot tell "removed" from
/// "never seen" without the removal being recorded in the registry.
#[test]
#[ignore = "finding: tasks of a framework removed before a failover outlive it (RemovedFrameworkTask)"]
fn seed_32_tasks_of_a_framework_removed_before_a_failover_are_killed() {
    assert_passes(32);
}

/// Not fixed: an agent a new leader recovered from the registry (tasks
/// unknown) stays away past the re-register timeout and is removed: no
/// framework hears TASK_GONE for its tasks (the books held none). When it
/// returns, the broker kills its tasks and acknowledges their final
/// updates itself, assuming the frameworks already heard GONE; they never
/// hear anything but what reconciliation says (UNREACHABLE, later UNKNOWN),
/// and the updates the agent durably queued (FINISHED, KILLED) are lost.
#[test]
#[ignore = "finding: a removed agent's final updates are swallowed although its frameworks never heard TASK_GONE (UpdateLost)"]
fn seed_123_a_removed_agents_final_updates_reach_frameworks_that_never_heard_gone() {
    assert_passes(123);
}

/// The hook a YARN participant will use: any `SimFramework` joins the run,
/// gets the same network, faults and checks. Here, one that only declines.
#[test]
fn another_kind_of_framework_plugs_in() {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;
    use weir_proto::v1;
    use weir_sim::{FrameworkCtx, SimFramework, World};

    struct Decliner {
        id: String,
        offers: Rc<Cell<u32>>,
    }
    impl SimFramework for Decliner {
        fn label(&self) -> &str {
            "decliner"
        }
        fn failover_timeout(&self) -> Duration {
            Duration::from_secs(30)
        }
        fn subscribe(&mut self, _ctx: &mut FrameworkCtx) -> v1::Call {
            let framework = v1::FrameworkInfo { id: self.id.clone(), name: "decliner".into(), failover_timeout_seconds: 30.0, ..Default::default() };
            v1::Call { framework_id: self.id.clone(), kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe { framework: Some(framework), data: None })) }
        }
        fn on_event(&mut self, event: &v1::Event, _ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
            match &event.kind {
                Some(v1::event::Kind::Subscribed(s)) => {
                    self.id = s.framework_id.clone();
                    Vec::new()
                }
                Some(v1::event::Kind::Offers(o)) => {
                    self.offers.set(self.offers.get() + o.offers.len() as u32);
                    let decline = v1::call::Decline { offer_ids: o.offers.iter().map(|o| o.id.clone()).collect(), filters: None };
                    vec![v1::Call { framework_id: self.id.clone(), kind: Some(v1::call::Kind::Decline(decline)) }]
                }
                _ => Vec::new(),
            }
        }
        fn tick(&mut self, _ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
            Vec::new()
        }
        fn on_disconnected(&mut self, _now: Duration) {}
        fn quiesce(&mut self, _ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
            Vec::new()
        }
    }

    let offers = Rc::new(Cell::new(0));
    let mut world = World::new(SimConfig::new(7));
    world.add_framework(Box::new(Decliner { id: String::new(), offers: offers.clone() }));
    let outcome = world.run();
    assert!(outcome.passed(), "{:?}", outcome.violations);
    assert!(offers.get() > 0, "the plugged-in framework was offered nothing");
}
