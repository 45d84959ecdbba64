//! An agent as the broker's books hold it, for those who read the pool
//! rather than run tasks in it (the YARN shim's nodes, `weir status`).
//!
//! Invariant kept by whoever builds one (the broker core, or the proto
//! conversion, which checks it): `used` and `offered` are what the broker
//! has allocated on this agent, so `used + offered ⊆ total`. An
//! unreachable agent's tasks stay counted in `used` until they are known
//! to be gone.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{AgentId, ResourceSet};

/// Whether the broker can reach an agent now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentState {
    /// Registered and its stream is open: it gets offers and launches.
    Reachable,
    /// Its stream ended; it is unreachable if it does not come back within
    /// `broker.agent.unreachable.timeout`. No offers meanwhile.
    Disconnected,
    /// Silent past the timeout: its tasks are TASK_UNREACHABLE, and it is
    /// removed after `broker.agent.reregister.timeout`.
    Unreachable,
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentState::Reachable => "reachable",
            AgentState::Disconnected => "disconnected",
            AgentState::Unreachable => "unreachable",
        })
    }
}

/// Where an agent is in an operator's maintenance, independent of
/// [`AgentState`] (a draining agent may also be unreachable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DrainState {
    /// Offered and launched on.
    Active,
    /// Offered to nobody; its tasks are killed at `deadline` (since the
    /// Unix epoch) if they have not ended by then.
    Draining { deadline: std::time::Duration },
    /// No task left: waits to be reactivated or marked gone.
    Drained,
}

impl DrainState {
    pub fn name(&self) -> &'static str {
        match self {
            DrainState::Active => "active",
            DrainState::Draining { .. } => "draining",
            DrainState::Drained => "drained",
        }
    }
}

/// A maintenance window scheduled ahead (Mesos' maintenance schedule):
/// the machine goes away at `start` (since the Unix epoch) for
/// `duration`. Until then it is offered as usual, its offers saying so;
/// at `start` its tasks still there are killed and it is offered to nobody
/// until the window ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unavailability {
    pub start: std::time::Duration,
    pub duration: std::time::Duration,
}

impl Unavailability {
    /// When the machine is back (since the Unix epoch).
    pub fn end(&self) -> std::time::Duration {
        self.start.saturating_add(self.duration)
    }
}

impl fmt::Display for DrainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub id: AgentId,
    pub hostname: String,
    /// `host:port` of the agent's own HTTP endpoint.
    pub http_address: String,
    pub state: AgentState,
    pub attributes: Vec<(String, String)>,
    /// What the agent brings to the pool, reservations included.
    pub total: ResourceSet,
    /// Allocated to its tasks that have not ended.
    pub used: ResourceSet,
    /// In offers outstanding on it.
    pub offered: ResourceSet,
    /// How many of its tasks have not ended.
    pub tasks: u32,
    /// Its maintenance: active, draining or drained.
    pub drain: DrainState,
    /// Its maintenance window, if one is scheduled or under way.
    pub unavailability: Option<Unavailability>,
}
