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
}
