//! An offer as a framework receives it: resources on one agent, allocated
//! to one of the framework's roles until accepted, declined or rescinded.

use serde::{Deserialize, Serialize};

use crate::{AgentId, FrameworkId, OfferId, ResourceSet, Role, Unavailability};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub framework: FrameworkId,
    pub agent: AgentId,
    pub hostname: String,
    /// The role the resources are allocated to (a YARN queue, for the shim).
    pub role: Role,
    /// Never empty; reservations included.
    pub resources: ResourceSet,
    pub attributes: Vec<(String, String)>,
    /// Bytes of the data the framework said its tasks read that this
    /// agent holds (0: none, or it said nothing).
    pub data_bytes: u64,
    /// The agent's maintenance window, when one is scheduled: tasks
    /// launched here are killed at its start.
    pub unavailability: Option<Unavailability>,
}
