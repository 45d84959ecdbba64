//! The YARN core in the whole-cluster simulation: beside the scripted
//! native frameworks, a YARN participant (the real `YarnCore` with
//! scripted clients and ApplicationMasters) shares the pool through every
//! fault. Its own invariants hold after every event, and at the end its
//! containers and node managers are exactly the broker's live tasks of
//! the YARN framework. Replay a failing seed with
//! `cargo run -p weir-sim -- --seeds N --yarn --trace`.

use weir_sim::{SimConfig, World, YarnParticipant};

fn run_with_yarn(seed: u64) -> weir_sim::yarn::YarnStats {
    let mut world = World::new(SimConfig::new(seed));
    let yarn = YarnParticipant::new("yarn");
    let stats = yarn.stats();
    world.add_framework(Box::new(yarn));
    let outcome = world.run();
    let report: Vec<String> = outcome.violations.iter().map(|v| format!("{:?} at {:?}: {}", v.kind, v.at, v.message)).collect();
    assert!(report.is_empty(), "seed {seed} with YARN failed:\n{}", report.join("\n"));
    let stats = stats.borrow().clone();
    stats
}

#[test]
fn yarn_applications_run_through_faults_and_their_containers_match_the_brokers_tasks() {
    let mut total = weir_sim::yarn::YarnStats::default();
    // Seed 1 is an open finding (below), not a YARN failure.
    for seed in [0, 2, 3, 4, 5, 6] {
        let s = run_with_yarn(seed);
        total.submitted += s.submitted;
        total.ams_registered += s.ams_registered;
        total.containers_allocated += s.containers_allocated;
        total.ams_finished += s.ams_finished;
    }
    // The runs must have exercised YARN, not merely kept out of the way.
    assert!(total.submitted >= 6, "{total:?}");
    assert!(total.ams_registered >= 3, "{total:?}");
    assert!(total.containers_allocated >= 3, "{total:?}");
    assert!(total.ams_finished >= 1, "{total:?}");
}

#[test]
fn a_run_with_yarn_is_a_function_of_its_seed() {
    let once = |seed| {
        let mut world = World::new(SimConfig::new(seed));
        world.add_framework(Box::new(YarnParticipant::new("yarn")));
        world.run().trace_hash
    };
    assert_eq!(once(7), once(7));
}

/// Seen once while adding the YARN participant (before the YARN core
/// reconciled and re-killed): a native framework's task that its agent
/// re-reported RUNNING to a new leader, after a partition, an agent crash
/// and a failover, was answered TASK_UNKNOWN on reconciliation (a
/// Zombie). The run changed with the YARN fixes and no longer shows it;
/// the broker-side cause was not traced, so the seed stays as a test.
#[test]
fn seed_1_with_yarn_a_running_task_is_not_reported_unknown() {
    run_with_yarn(1);
}

/// Found by the simulation: an idle node manager's KILL was answered at
/// once with its state (its agent was away), the scheduler then replaced
/// the stopping node manager with a new one and forgot the old, which ran
/// on forever. Kills now stay asked until an end is heard, are
/// reconciled, and are sent again to a task still reported running.
#[test]
fn seed_39_with_yarn_a_lost_kill_of_a_stopping_node_manager_is_sent_again() {
    run_with_yarn(39);
}
