//! Wire records ⇄ the shared types (ids, resources). Decoding says which
//! field was wrong; the RM's and NM's own conversions build on these.

use crate::ids::{ApplicationId, AttemptId, ContainerId, NodeId};
use crate::records as r;
use crate::resource::Capacity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad {field}: {reason}")]
pub struct ConvertError {
    pub field: &'static str,
    pub reason: String,
}

pub fn bad(field: &'static str, reason: impl Into<String>) -> ConvertError {
    ConvertError { field, reason: reason.into() }
}

pub fn app_id_from_proto(field: &'static str, p: Option<&r::ApplicationIdProto>) -> Result<ApplicationId, ConvertError> {
    let p = p.ok_or_else(|| bad(field, "missing"))?;
    match (p.id, p.cluster_timestamp) {
        (Some(id), Some(ts)) => Ok(ApplicationId { cluster_timestamp: ts, id }),
        _ => Err(bad(field, "needs both id and cluster_timestamp")),
    }
}

pub fn app_id_to_proto(id: ApplicationId) -> r::ApplicationIdProto {
    r::ApplicationIdProto { id: Some(id.id), cluster_timestamp: Some(id.cluster_timestamp) }
}

pub fn capacity_to_proto(c: Capacity) -> r::ResourceProto {
    r::ResourceProto { memory: Some(c.memory_mb), virtual_cores: Some(c.vcores) }
}

pub fn capacity_from_proto(p: &r::ResourceProto) -> Capacity {
    Capacity { memory_mb: p.memory.unwrap_or(0), vcores: p.virtual_cores.unwrap_or(0) }
}

pub fn node_id_to_proto(id: &NodeId) -> r::NodeIdProto {
    r::NodeIdProto { host: Some(id.host.clone()), port: Some(id.port) }
}

pub fn attempt_to_proto(a: AttemptId) -> r::ApplicationAttemptIdProto {
    r::ApplicationAttemptIdProto { application_id: Some(app_id_to_proto(a.app)), attempt_id: Some(a.attempt) }
}

pub fn attempt_from_proto(p: Option<&r::ApplicationAttemptIdProto>) -> Option<AttemptId> {
    let p = p?;
    let app = p.application_id.as_ref()?;
    Some(AttemptId { app: ApplicationId { cluster_timestamp: app.cluster_timestamp?, id: app.id? }, attempt: p.attempt_id? })
}

pub fn container_to_proto(c: ContainerId) -> r::ContainerIdProto {
    r::ContainerIdProto {
        app_id: Some(app_id_to_proto(c.attempt.app)),
        app_attempt_id: Some(attempt_to_proto(c.attempt)),
        id: Some(c.id),
    }
}

pub fn container_from_proto(p: &r::ContainerIdProto) -> Option<ContainerId> {
    let attempt = attempt_from_proto(p.app_attempt_id.as_ref())?;
    Some(ContainerId { attempt, id: p.id? })
}

