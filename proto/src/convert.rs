//! Hand-written conversions between `weir.v1` wire types and `weir-model`.
//!
//! Everything that arrives from the network passes through here first, so
//! this is where bad input is caught: unknown resource names, negative or
//! non-finite scalars, inverted or out-of-range port ranges, bad ids. Each
//! error says which field of which message was wrong.

use crate::v1;
use weir_model::ids::validate_id;
use weir_model::{Milli, Ranges, ResourceSet, Resources, Role, TaskState};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field} is missing")]
    Missing { field: String },
}

impl ProtoError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ProtoError::Invalid { field: field.into(), reason: reason.into() }
    }
    pub fn missing(field: impl Into<String>) -> Self {
        ProtoError::Missing { field: field.into() }
    }
}

/// The most resource entries accepted in one message field.
pub const MAX_RESOURCE_ENTRIES: usize = 1024;
/// The most ranges accepted in one `ports` entry.
pub const MAX_RANGES: usize = 4096;

/// Checks an id from the wire and wraps it in its type.
pub fn id<T: From<String>>(field: &str, value: &str) -> Result<T, ProtoError> {
    validate_id(field, value).map_err(|reason| ProtoError::invalid(field, reason))?;
    Ok(T::from(value.to_owned()))
}

pub fn resources_from_proto(field: &str, list: &[v1::Resource]) -> Result<ResourceSet, ProtoError> {
    if list.len() > MAX_RESOURCE_ENTRIES {
        return Err(ProtoError::invalid(
            field,
            format!("{} entries; at most {MAX_RESOURCE_ENTRIES} are allowed", list.len()),
        ));
    }
    let mut out = ResourceSet::default();
    for (i, r) in list.iter().enumerate() {
        let at = format!("{field}[{i}] ({})", r.name);
        let bundle = if r.role.is_empty() || r.role == "*" {
            &mut out.unreserved
        } else {
            validate_id("role", &r.role).map_err(|reason| ProtoError::invalid(&at, reason))?;
            out.reserved.entry(Role::new(r.role.clone())).or_default()
        };
        match (r.name.as_str(), &r.value) {
            ("ports", Some(v1::resource::Value::Ranges(ranges))) => {
                if ranges.range.len() > MAX_RANGES {
                    return Err(ProtoError::invalid(&at, format!("more than {MAX_RANGES} ranges")));
                }
                let mut list = Vec::with_capacity(ranges.range.len());
                for range in &ranges.range {
                    if range.begin > range.end || range.end > Ranges::MAX_VALUE {
                        return Err(ProtoError::invalid(
                            &at,
                            format!(
                                "range {}-{} must have begin <= end <= {}",
                                range.begin,
                                range.end,
                                Ranges::MAX_VALUE
                            ),
                        ));
                    }
                    list.push((range.begin, range.end));
                }
                bundle.ports = bundle.ports.add(&Ranges::new(list));
            }
            ("cpus" | "mem" | "disk" | "gpus", Some(v1::resource::Value::Scalar(value))) => {
                let milli = Milli::from_f64(*value).ok_or_else(|| {
                    ProtoError::invalid(&at, format!("{value} is not a finite number between 0 and {}", Milli::MAX.0 / 1000))
                })?;
                let slot = match r.name.as_str() {
                    "cpus" => &mut bundle.cpus,
                    "mem" => &mut bundle.mem,
                    "disk" => &mut bundle.disk,
                    _ => &mut bundle.gpus,
                };
                *slot = Milli(slot.0.saturating_add(milli.0).min(Milli::MAX.0));
            }
            ("cpus" | "mem" | "disk" | "gpus", _) => {
                return Err(ProtoError::invalid(&at, "must have a scalar value"));
            }
            ("ports", _) => return Err(ProtoError::invalid(&at, "must have a ranges value")),
            (other, _) => {
                return Err(ProtoError::invalid(
                    &at,
                    format!("unknown resource {other:?}; known resources are cpus, mem, disk, gpus and ports"),
                ))
            }
        }
    }
    out.reserved.retain(|_, r| !r.is_empty());
    Ok(out)
}

fn bundle_to_proto(r: &Resources, role: &str, out: &mut Vec<v1::Resource>) {
    for name in weir_model::resources::SCALAR_NAMES {
        let value = r.scalar(name).unwrap_or_default();
        if !value.is_zero() {
            out.push(v1::Resource {
                name: name.to_owned(),
                value: Some(v1::resource::Value::Scalar(value.as_f64())),
                role: role.to_owned(),
                reservation: None,
            });
        }
    }
    if !r.ports.is_empty() {
        out.push(v1::Resource {
            name: "ports".to_owned(),
            value: Some(v1::resource::Value::Ranges(v1::Ranges {
                range: r.ports.iter().map(|(begin, end)| v1::Range { begin, end }).collect(),
            })),
            role: role.to_owned(),
            reservation: None,
        });
    }
}

pub fn resources_to_proto(set: &ResourceSet) -> Vec<v1::Resource> {
    let mut out = Vec::new();
    bundle_to_proto(&set.unreserved, "", &mut out);
    for (role, r) in &set.reserved {
        bundle_to_proto(r, role.as_str(), &mut out);
    }
    out
}

pub fn task_state_to_proto(state: TaskState) -> v1::TaskState {
    match state {
        TaskState::Staging => v1::TaskState::TaskStaging,
        TaskState::Starting => v1::TaskState::TaskStarting,
        TaskState::Running => v1::TaskState::TaskRunning,
        TaskState::Killing => v1::TaskState::TaskKilling,
        TaskState::Finished => v1::TaskState::TaskFinished,
        TaskState::Failed => v1::TaskState::TaskFailed,
        TaskState::Killed => v1::TaskState::TaskKilled,
        TaskState::Error => v1::TaskState::TaskError,
        TaskState::Unreachable => v1::TaskState::TaskUnreachable,
        TaskState::Gone => v1::TaskState::TaskGone,
        TaskState::Dropped => v1::TaskState::TaskDropped,
        TaskState::Unknown => v1::TaskState::TaskUnknown,
    }
}

pub fn task_state_from_proto(field: &str, raw: i32) -> Result<TaskState, ProtoError> {
    let state = v1::TaskState::try_from(raw)
        .map_err(|_| ProtoError::invalid(field, format!("{raw} is not a task state")))?;
    Ok(match state {
        v1::TaskState::Unspecified => return Err(ProtoError::missing(field)),
        v1::TaskState::TaskStaging => TaskState::Staging,
        v1::TaskState::TaskStarting => TaskState::Starting,
        v1::TaskState::TaskRunning => TaskState::Running,
        v1::TaskState::TaskKilling => TaskState::Killing,
        v1::TaskState::TaskFinished => TaskState::Finished,
        v1::TaskState::TaskFailed => TaskState::Failed,
        v1::TaskState::TaskKilled => TaskState::Killed,
        v1::TaskState::TaskError => TaskState::Error,
        v1::TaskState::TaskUnreachable => TaskState::Unreachable,
        v1::TaskState::TaskGone => TaskState::Gone,
        v1::TaskState::TaskDropped => TaskState::Dropped,
        v1::TaskState::TaskUnknown => TaskState::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(name: &str, v: f64) -> v1::Resource {
        v1::Resource { name: name.into(), value: Some(v1::resource::Value::Scalar(v)), role: String::new(), reservation: None }
    }

    #[test]
    fn resources_round_trip() {
        let set = ResourceSet::parse("cpus:1.5;mem:512;ports:[31000-31002,31005];disk(analytics):100").unwrap();
        let wire = resources_to_proto(&set);
        assert_eq!(resources_from_proto("r", &wire).unwrap(), set);
    }

    #[test]
    fn bad_resources_name_the_field() {
        let err = |list: Vec<v1::Resource>| resources_from_proto("offer.resources", &list).unwrap_err().to_string();
        assert_eq!(
            err(vec![scalar("cpus", 1.0), scalar("mem", -1.0)]),
            "offer.resources[1] (mem): -1 is not a finite number between 0 and 1125899906842"
        );
        assert!(err(vec![scalar("cpus", f64::NAN)]).contains("not a finite number"));
        assert!(err(vec![scalar("bogus", 1.0)]).contains("unknown resource \"bogus\""));
        let ports = v1::Resource {
            name: "ports".into(),
            value: Some(v1::resource::Value::Ranges(v1::Ranges { range: vec![v1::Range { begin: 9, end: 3 }] })),
            role: String::new(),
            reservation: None,
        };
        assert!(err(vec![ports]).contains("range 9-3 must have begin <= end <= 65535"));
        assert!(err(vec![v1::Resource { name: "cpus".into(), value: None, role: String::new(), reservation: None }])
            .contains("must have a scalar value"));
    }

    #[test]
    fn task_states_round_trip() {
        for raw in 1..=12 {
            let state = task_state_from_proto("s", raw).unwrap();
            assert_eq!(task_state_to_proto(state) as i32, raw);
        }
        assert_eq!(task_state_from_proto("status.state", 0).unwrap_err().to_string(), "status.state is missing");
        assert!(task_state_from_proto("status.state", 99).is_err());
    }
}
