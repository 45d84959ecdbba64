//! Dynamic reservations and persistent volumes in the whole-cluster
//! simulation: a stateful framework reserves, creates volumes, runs tasks
//! on them, resizes and destroys them, retries under the same ids and
//! sends hostile operations, beside the scripted frameworks and through
//! every fault (agent crashes and restarts, broker failovers, partitions).
//! The broker's books (reservations and volumes included) are checked
//! after every event. Replay a failing seed with
//! `cargo run -p weir-sim -- --seeds N --reservations --trace`.

use weir_sim::{SimConfig, StatefulFramework, World};

fn config(seed: u64) -> SimConfig {
    let mut config = SimConfig::new(seed);
    config.agent_disk_mib = 8192;
    config
}

fn run_with_volumes(seed: u64) -> weir_sim::stateful::StatefulStats {
    let mut world = World::new(config(seed));
    let db = StatefulFramework::new("db", "db");
    let stats = db.stats();
    world.add_framework(Box::new(db));
    let outcome = world.run();
    let report: Vec<String> = outcome.violations.iter().map(|v| format!("{:?} at {:?}: {}", v.kind, v.at, v.message)).collect();
    assert!(report.is_empty(), "seed {seed} with reservations failed:\n{}", report.join("\n"));
    let stats = stats.borrow().clone();
    stats
}

#[test]
fn reservations_and_volumes_keep_the_books_balanced_through_faults() {
    let mut total = weir_sim::stateful::StatefulStats::default();
    for seed in 0..8 {
        let s = run_with_volumes(seed);
        total.finished += s.finished;
        total.failed += s.failed;
        total.hostile_failed += s.hostile_failed;
        total.launched_on_volumes += s.launched_on_volumes;
    }
    // The runs must have exercised the operations, not merely kept away.
    assert!(total.finished >= 20, "{total:?}");
    assert!(total.hostile_failed >= 3, "{total:?}");
    assert!(total.launched_on_volumes >= 5, "{total:?}");
}

#[test]
fn a_run_with_reservations_is_a_function_of_its_seed() {
    let once = |seed| {
        let mut world = World::new(config(seed));
        world.add_framework(Box::new(StatefulFramework::new("db", "db")));
        world.run().trace_hash
    };
    assert_eq!(once(5), once(5));
}
