//! The allocator's one error type. Every variant names the input that was
//! wrong; a call that returns an error has changed nothing.

use weir_model::{AgentId, FrameworkId, ResourceSet, Role};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    #[error("agent {0} is not known to the allocator")]
    UnknownAgent(AgentId),
    #[error("agent {0} is already known to the allocator; remove it before adding it again")]
    DuplicateAgent(AgentId),
    #[error("agent {agent} reports {used} in use, which is more than its total {total}")]
    UsedExceedsTotal { agent: AgentId, used: Box<ResourceSet>, total: Box<ResourceSet> },
    #[error("framework {0} is not known to the allocator")]
    UnknownFramework(FrameworkId),
    #[error("framework {0} is already subscribed; remove it before adding it again")]
    DuplicateFramework(FrameworkId),
    #[error("framework {framework} is not subscribed to role {role}")]
    NotInRole { framework: FrameworkId, role: Role },
    #[error("weight {weight} for role {role} is not a finite number greater than 0")]
    BadWeight { role: Role, weight: f64 },
    #[error(
        "cannot recover {wanted} on agent {agent} for framework {framework} in role {role}: \
         only {allocated} is allocated to it there"
    )]
    NotAllocated {
        agent: AgentId,
        framework: FrameworkId,
        role: Role,
        wanted: Box<ResourceSet>,
        allocated: Box<ResourceSet>,
    },
    #[error(
        "cannot recover {wanted} on agent {agent} for framework {framework} in role {role} as {}: \
         {lent} of what it holds there is revocable",
        if *revocable_asked { "revocable" } else { "not revocable" }
    )]
    RevocableMismatch {
        agent: AgentId,
        framework: FrameworkId,
        role: Role,
        wanted: Box<ResourceSet>,
        revocable_asked: bool,
        lent: Box<ResourceSet>,
    },
    #[error("quota for role {role} refused: {reason}")]
    BadQuota { role: Role, reason: String },
    #[error("role {role} refused: {reason}")]
    BadRole { role: Role, reason: String },
    #[error("cannot convert {from} into {to} on agent {agent}: {reason}")]
    BadConversion { agent: AgentId, from: Box<ResourceSet>, to: Box<ResourceSet>, reason: String },
}
