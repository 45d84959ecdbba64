//! A seeded, deterministic simulation of a whole Weir cluster in one
//! process: the real `BrokerCore` and `AgentCore`s, frameworks speaking
//! `weir.v1`, and a simulated network, launcher, registry and clock, with
//! faults injected at random — stream breaks, agent crashes and restarts,
//! broker failovers, partitions, time jumps, abandoned frameworks. The
//! same seed gives the same run, event for event (`Outcome::trace_hash`).
//!
//! After every event the broker's books must balance, no task may run
//! twice, and status updates must reach frameworks in order; after a
//! final quiet phase nothing may be lost. See `README.md` for the model
//! and how to replay a seed, and [`framework::SimFramework`] for plugging
//! in another participant (the YARN shim).

pub mod framework;
pub mod guarantee;
pub mod history;
pub mod locality;
pub mod rng;
pub mod stateful;
mod world;
pub mod yarn;

use std::collections::BTreeMap;
use std::time::Duration;

pub use framework::{FrameworkCtx, ScriptedFramework, SimFramework};
pub use world::{broker_settings, World, UNIX_ORIGIN};
pub use stateful::StatefulFramework;
pub use yarn::YarnParticipant;

/// What one run looks like.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub agents: usize,
    pub frameworks: usize,
    /// How long faults are injected (simulated time).
    pub fault_time: Duration,
    /// The quiet phase after it: long enough for every timeout and retry.
    pub quiet_time: Duration,
    pub faults: bool,
    /// Mean time between faults.
    pub fault_interval_ms: u64,
    /// Let an agent crash leave a launch's process running although its
    /// checkpoint has no pid for it (the real race; see README, findings).
    pub orphan_launches: bool,
    /// Print every event.
    pub trace: bool,
    /// Disk per agent, MiB (0: none, as before volumes existed; runs of
    /// the other participants stay what they were).
    pub agent_disk_mib: u64,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            agents: 4,
            frameworks: 3,
            fault_time: Duration::from_secs(60),
            quiet_time: Duration::from_secs(75),
            faults: true,
            fault_interval_ms: 1500,
            orphan_launches: false,
            trace: false,
            agent_disk_mib: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// The broker's books disagree with themselves (`check_invariants`) or
    /// with the agents at the end.
    Books,
    /// Something the broker did that no correct broker does.
    Broker,
    /// An agent core failed (e.g. could not read its own checkpoint).
    Agent,
    /// A second process for a task while the first still runs.
    DoubleRun,
    /// Status updates reached a framework out of order, or forged.
    UpdateOrder,
    /// An update an agent durably queued never reached its framework.
    UpdateLost,
    /// A launched task neither runs (known to the broker) nor was reported ended.
    LostTask,
    /// A task of a framework removed after its failover timeout still runs.
    RemovedFrameworkTask,
    /// A task the framework was told had ended still runs.
    Zombie,
    /// A process runs that its agent does not know of.
    Orphan,
    /// The cluster did not come back together in the quiet phase.
    Liveness,
    /// A participant's own books (the YARN core's invariants, or YARN's
    /// containers against the broker's tasks).
    FrameworkBooks,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: ViolationKind,
    pub at: Duration,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub events: u64,
    pub tasks_launched: u64,
    pub processes: u64,
    pub updates_delivered: u64,
    pub broker_failovers: u64,
    pub broker_epoch: u64,
    pub agent_restarts: u64,
    pub abandoned: u64,
    pub faults: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn count(&mut self, fault: &'static str) {
        *self.faults.entry(fault).or_default() += 1;
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// FNV-1a over every trace line: equal for equal runs.
    pub trace_hash: u64,
    pub violations: Vec<Violation>,
    pub stats: Stats,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs one seed with the scripted frameworks.
pub fn run(config: SimConfig) -> Outcome {
    World::new(config).run()
}
