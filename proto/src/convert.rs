//! Hand-written conversions between `weir.v1` wire types and `weir-model`.
//!
//! Everything that arrives from the network passes through here first, so
//! this is where bad input is caught: unknown resource names, negative or
//! non-finite scalars, inverted or out-of-range port ranges, bad ids. Each
//! error says which field of which message was wrong.

use crate::v1;
use weir_model::ids::validate_id;
use weir_model::reservation::{validate_backing, validate_container_path, validate_labels};
use weir_model::{
    AgentId, AgentState, AgentSummary, DrainState, FrameworkId, Limits, Milli, Offer, OfferId, Ranges, Reservation, ReservationId,
    ResourceSet, Quota, Resources, Role, TaskState, Unavailability, Volume, VolumeId, VolumeMount,
};

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

/// The most attributes an agent may have.
pub const MAX_ATTRIBUTES: usize = 64;
/// The longest attribute value accepted.
pub const MAX_ATTRIBUTE_VALUE: usize = 1024;
/// The longest agent hostname accepted (DNS's limit).
pub const MAX_HOSTNAME: usize = 255;
/// The longest `host:port` accepted.
pub const MAX_ADDRESS: usize = MAX_HOSTNAME + 6;

/// Checks an id from the wire and wraps it in its type.
pub fn id<T: From<String>>(field: &str, value: &str) -> Result<T, ProtoError> {
    validate_id(field, value).map_err(|reason| ProtoError::invalid(field, reason))?;
    Ok(T::from(value.to_owned()))
}

/// A role from the wire: nested roles (`eng/analytics`) allowed, each
/// part checked as an id ([`weir_model::ids::validate_role`]).
pub fn role(field: &str, value: &str) -> Result<Role, ProtoError> {
    weir_model::ids::validate_role(value).map_err(|reason| ProtoError::invalid(field, reason))?;
    Ok(Role::new(value.to_owned()))
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
            out.reserved.entry(role(&at, &r.role)?).or_default()
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
                revocable: false,
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
                revocable: false,
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

/// An agent's attributes from the wire: at most [`MAX_ATTRIBUTES`], names
/// that are valid ids, values of at most [`MAX_ATTRIBUTE_VALUE`] bytes.
pub fn attributes_from_proto(field: &str, list: &[v1::Attribute]) -> Result<Vec<(String, String)>, ProtoError> {
    if list.len() > MAX_ATTRIBUTES {
        return Err(ProtoError::invalid(field, format!("{} attributes; at most {MAX_ATTRIBUTES} are allowed", list.len())));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        validate_id("attribute name", &a.name).map_err(|r| ProtoError::invalid(format!("{field}[{i}]"), r))?;
        if a.value.len() > MAX_ATTRIBUTE_VALUE {
            return Err(ProtoError::invalid(format!("{field}[{i}]"), format!("value longer than {MAX_ATTRIBUTE_VALUE} bytes")));
        }
        out.push((a.name.clone(), a.value.clone()));
    }
    Ok(out)
}

pub fn attributes_to_proto(list: &[(String, String)]) -> Vec<v1::Attribute> {
    list.iter().map(|(name, value)| v1::Attribute { name: name.clone(), value: value.clone() }).collect()
}

pub fn agent_state_to_proto(state: AgentState) -> v1::AgentState {
    match state {
        AgentState::Reachable => v1::AgentState::AgentReachable,
        AgentState::Disconnected => v1::AgentState::AgentDisconnected,
        AgentState::Unreachable => v1::AgentState::AgentUnreachable,
    }
}

pub fn agent_state_from_proto(field: &str, raw: i32) -> Result<AgentState, ProtoError> {
    let state = v1::AgentState::try_from(raw)
        .map_err(|_| ProtoError::invalid(field, format!("{raw} is not an agent state")))?;
    Ok(match state {
        v1::AgentState::Unspecified => return Err(ProtoError::missing(field)),
        v1::AgentState::AgentReachable => AgentState::Reachable,
        v1::AgentState::AgentDisconnected => AgentState::Disconnected,
        v1::AgentState::AgentUnreachable => AgentState::Unreachable,
    })
}

/// A drain state as the wire carries it: the state and, while draining,
/// its deadline in Unix seconds (0 otherwise).
pub fn drain_state_to_proto(drain: DrainState) -> (v1::DrainState, f64) {
    match drain {
        DrainState::Active => (v1::DrainState::DrainActive, 0.0),
        DrainState::Draining { deadline } => (v1::DrainState::DrainDraining, deadline.as_secs_f64()),
        DrainState::Drained => (v1::DrainState::DrainDrained, 0.0),
    }
}

/// Reads a drain state; a DRAINING one needs a finite deadline >= 0
/// (read to the millisecond).
pub fn drain_state_from_proto(field: &str, raw: i32, deadline: f64) -> Result<DrainState, ProtoError> {
    let state = v1::DrainState::try_from(raw).map_err(|_| ProtoError::invalid(field, format!("{raw} is not a drain state")))?;
    Ok(match state {
        v1::DrainState::DrainActive => DrainState::Active,
        v1::DrainState::DrainDrained => DrainState::Drained,
        v1::DrainState::DrainDraining => {
            if !deadline.is_finite() || !(0.0..=MAX_UNIX_SECONDS).contains(&deadline) {
                return Err(ProtoError::invalid(field, format!("drain deadline {deadline} is not a time since the Unix epoch")));
            }
            // Whole milliseconds, as the broker makes them: a double holds
            // those exactly, so a deadline reads back as it was written.
            DrainState::Draining { deadline: std::time::Duration::from_millis((deadline * 1000.0).round() as u64) }
        }
    })
}

/// Unix times past this (the year 5138) are not believed.
const MAX_UNIX_SECONDS: f64 = 1e11;

/// Maintenance windows longer than this (about ten years) are refused.
pub const MAX_WINDOW_SECONDS: f64 = 3.2e8;

pub fn unavailability_to_proto(u: &Unavailability) -> v1::Unavailability {
    v1::Unavailability { start: u.start.as_secs_f64(), duration: u.duration.as_secs_f64() }
}

/// Reads a maintenance window: a start since the Unix epoch and a
/// duration of at most [`MAX_WINDOW_SECONDS`], both finite and read to the
/// millisecond.
pub fn unavailability_from_proto(field: &str, u: &v1::Unavailability) -> Result<Unavailability, ProtoError> {
    if !u.start.is_finite() || !(0.0..=MAX_UNIX_SECONDS).contains(&u.start) {
        return Err(ProtoError::invalid(format!("{field}.start"), format!("{} is not a time since the Unix epoch", u.start)));
    }
    if !u.duration.is_finite() || !(0.0..=MAX_WINDOW_SECONDS).contains(&u.duration) {
        return Err(ProtoError::invalid(
            format!("{field}.duration"),
            format!("{} is not a duration of 0 to {MAX_WINDOW_SECONDS} seconds", u.duration),
        ));
    }
    let millis = |s: f64| std::time::Duration::from_millis((s * 1000.0).round() as u64);
    Ok(Unavailability { start: millis(u.start), duration: millis(u.duration) })
}

pub fn agent_summary_to_proto(agent: &AgentSummary) -> v1::AgentSummary {
    let (drain, drain_deadline) = drain_state_to_proto(agent.drain);
    v1::AgentSummary {
        drain: drain as i32,
        drain_deadline,
        unavailability: agent.unavailability.as_ref().map(unavailability_to_proto),
        id: agent.id.to_string(),
        hostname: agent.hostname.clone(),
        http_address: agent.http_address.clone(),
        state: agent_state_to_proto(agent.state) as i32,
        attributes: attributes_to_proto(&agent.attributes),
        total: resources_to_proto(&agent.total),
        used: resources_to_proto(&agent.used),
        offered: resources_to_proto(&agent.offered),
        tasks: agent.tasks,
        reservations: Vec::new(),
        volumes: Vec::new(),
    }
}

/// One agent of a `GetStateResponse`, checked: a valid id, a hostname of
/// 1 to [`MAX_HOSTNAME`] bytes, a known state, valid attributes and
/// resources, and `used + offered` within `total`.
pub fn agent_summary_from_proto(field: &str, agent: &v1::AgentSummary) -> Result<AgentSummary, ProtoError> {
    let id = id::<AgentId>(&format!("{field}.id"), &agent.id)?;
    if agent.hostname.is_empty() || agent.hostname.len() > MAX_HOSTNAME {
        return Err(ProtoError::invalid(
            format!("{field}.hostname"),
            format!("must be 1 to {MAX_HOSTNAME} bytes long, not {}", agent.hostname.len()),
        ));
    }
    if agent.http_address.len() > MAX_ADDRESS {
        return Err(ProtoError::invalid(format!("{field}.http_address"), format!("longer than {MAX_ADDRESS} bytes")));
    }
    let state = agent_state_from_proto(&format!("{field}.state"), agent.state)?;
    let drain = drain_state_from_proto(&format!("{field}.drain"), agent.drain, agent.drain_deadline)?;
    let unavailability =
        agent.unavailability.as_ref().map(|u| unavailability_from_proto(&format!("{field}.unavailability"), u)).transpose()?;
    let attributes = attributes_from_proto(&format!("{field}.attributes"), &agent.attributes)?;
    let total = resources_from_proto(&format!("{field}.total"), &agent.total)?;
    let used = resources_from_proto(&format!("{field}.used"), &agent.used)?;
    let offered = resources_from_proto(&format!("{field}.offered"), &agent.offered)?;
    if !total.contains(&used.add(&offered)) {
        return Err(ProtoError::invalid(
            format!("{field}.used"),
            format!("used ({used}) and offered ({offered}) exceed the agent's total ({total})"),
        ));
    }
    Ok(AgentSummary {
        id,
        hostname: agent.hostname.clone(),
        http_address: agent.http_address.clone(),
        state,
        attributes,
        total,
        used,
        offered,
        tasks: agent.tasks,
        drain,
        unavailability,
    })
}

/// Every agent of a `GetStateResponse`; the first bad one is an error
/// naming it (`get_state.agents[i]…`).
pub fn agents_from_proto(response: &v1::GetStateResponse) -> Result<Vec<AgentSummary>, ProtoError> {
    response
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| agent_summary_from_proto(&format!("get_state.agents[{i}]"), a))
        .collect()
}

pub fn offer_to_proto(offer: &Offer) -> v1::Offer {
    v1::Offer {
        id: offer.id.to_string(),
        framework_id: offer.framework.to_string(),
        agent_id: offer.agent.to_string(),
        hostname: offer.hostname.clone(),
        resources: resources_to_proto(&offer.resources),
        attributes: attributes_to_proto(&offer.attributes),
        role: offer.role.to_string(),
        reservations: Vec::new(),
        volumes: Vec::new(),
        data_bytes: offer.data_bytes,
        unavailability: offer.unavailability.as_ref().map(unavailability_to_proto),
    }
}

/// An offer from the broker, checked: valid ids and role, a hostname of 1
/// to [`MAX_HOSTNAME`] bytes, valid attributes, and some resources.
pub fn offer_from_proto(field: &str, offer: &v1::Offer) -> Result<Offer, ProtoError> {
    let hostname = &offer.hostname;
    if hostname.is_empty() || hostname.len() > MAX_HOSTNAME {
        return Err(ProtoError::invalid(
            format!("{field}.hostname"),
            format!("must be 1 to {MAX_HOSTNAME} bytes long, not {}", hostname.len()),
        ));
    }
    let resources = resources_from_proto(&format!("{field}.resources"), &offer.resources)?;
    if resources.is_empty() {
        return Err(ProtoError::invalid(format!("{field}.resources"), "an offer must hold some resources"));
    }
    Ok(Offer {
        id: id::<OfferId>(&format!("{field}.id"), &offer.id)?,
        framework: id::<FrameworkId>(&format!("{field}.framework_id"), &offer.framework_id)?,
        agent: id::<AgentId>(&format!("{field}.agent_id"), &offer.agent_id)?,
        hostname: hostname.clone(),
        role: role(&format!("{field}.role"), &offer.role)?,
        resources,
        attributes: attributes_from_proto(&format!("{field}.attributes"), &offer.attributes)?,
        data_bytes: offer.data_bytes,
        unavailability: offer.unavailability.as_ref().map(|u| unavailability_from_proto(&format!("{field}.unavailability"), u)).transpose()?,
    })
}

/// The most reservations or volumes accepted in one message field.
pub const MAX_RESERVATIONS: usize = 10_000;
/// The most volumes one task may mount.
pub const MAX_MOUNTS: usize = 64;

/// A size in MiB from the wire: finite, positive, within [`Milli::MAX`].
pub fn size_from_proto(field: &str, value: f64) -> Result<Milli, ProtoError> {
    match Milli::from_f64(value) {
        Some(m) if !m.is_zero() => Ok(m),
        _ => Err(ProtoError::invalid(field, format!("size {value} must be a finite number of MiB above 0"))),
    }
}

/// A quota from the wire: the guarantee as unreserved scalars (no ports),
/// the limit as scalars each named once (a kind not named is unlimited;
/// a limit of 0 is kept).
pub fn quota_from_proto(field: &str, guarantee: &[v1::Resource], limit: &[v1::Resource]) -> Result<Quota, ProtoError> {
    let guarantee = unreserved_from_proto(&format!("{field}.guarantee"), guarantee)?;
    if !guarantee.ports.is_empty() {
        return Err(ProtoError::invalid(format!("{field}.guarantee"), "ports cannot be guaranteed (quotas are scalars: cpus, mem, disk, gpus)"));
    }
    let mut limits = Limits::default();
    for (i, r) in limit.iter().enumerate() {
        let at = format!("{field}.limit[{i}] ({})", r.name);
        if !(r.role.is_empty() || r.role == "*") {
            return Err(ProtoError::invalid(&at, "must be unreserved (no role)"));
        }
        let Some(v1::resource::Value::Scalar(value)) = &r.value else {
            return Err(ProtoError::invalid(&at, "must have a scalar value (quotas are scalars: cpus, mem, disk, gpus)"));
        };
        let milli = Milli::from_f64(*value).ok_or_else(|| {
            ProtoError::invalid(&at, format!("{value} is not a finite number between 0 and {}", Milli::MAX.0 / 1000))
        })?;
        let slot = limits.get_mut(&r.name).ok_or_else(|| {
            ProtoError::invalid(&at, format!("unknown resource {:?}; limits are for cpus, mem, disk and gpus", r.name))
        })?;
        if slot.replace(milli).is_some() {
            return Err(ProtoError::invalid(&at, "named twice"));
        }
    }
    Ok(Quota { guarantee, limit: limits })
}

/// A quota to the wire: (guarantee, limit); limits of 0 are sent.
pub fn quota_to_proto(quota: &Quota) -> (Vec<v1::Resource>, Vec<v1::Resource>) {
    let guarantee = resources_to_proto(&ResourceSet::unreserved(quota.guarantee.clone()));
    let limit = weir_model::resources::SCALAR_NAMES
        .iter()
        .zip(quota.limit.by_kind())
        .filter_map(|(name, v)| {
            Some(v1::Resource {
                name: (*name).to_owned(),
                value: Some(v1::resource::Value::Scalar(v?.as_f64())),
                role: String::new(),
                reservation: None,
                revocable: false,
            })
        })
        .collect();
    (guarantee, limit)
}

/// Unreserved resources from the wire (a reservation's bundle): a role on
/// any entry is refused, so nothing can be reserved twice over.
pub fn unreserved_from_proto(field: &str, list: &[v1::Resource]) -> Result<Resources, ProtoError> {
    let set = resources_from_proto(field, list)?;
    if !set.reserved.is_empty() {
        return Err(ProtoError::invalid(field, "must be unreserved resources (no role)"));
    }
    Ok(set.unreserved)
}

pub fn reservation_to_proto(r: &Reservation) -> v1::ReservationInfo {
    v1::ReservationInfo {
        id: r.id.to_string(),
        role: r.role.to_string(),
        principal: r.principal.clone(),
        labels: r.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        resources: resources_to_proto(&ResourceSet::unreserved(r.resources.clone())),
        framework_id: r.framework.as_ref().map(|f| f.to_string()).unwrap_or_default(),
    }
}

/// A reservation from an agent or the registry: valid ids and role (not
/// `*`), bounded labels and principal, some unreserved-form resources.
pub fn reservation_from_proto(field: &str, r: &v1::ReservationInfo) -> Result<Reservation, ProtoError> {
    let role = id::<Role>(&format!("{field}.role"), &r.role)?;
    if role == Role::default_role() {
        return Err(ProtoError::invalid(format!("{field}.role"), "cannot reserve for the default role \"*\""));
    }
    let labels = r.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    validate_labels(&labels).map_err(|e| ProtoError::invalid(format!("{field}.labels"), e))?;
    if r.principal.len() > weir_model::ids::MAX_ID_LEN {
        return Err(ProtoError::invalid(format!("{field}.principal"), "longer than 256 bytes"));
    }
    let resources = unreserved_from_proto(&format!("{field}.resources"), &r.resources)?;
    if resources.is_empty() {
        return Err(ProtoError::invalid(format!("{field}.resources"), "a reservation must hold some resources"));
    }
    Ok(Reservation {
        id: id::<ReservationId>(&format!("{field}.id"), &r.id)?,
        role,
        principal: r.principal.clone(),
        labels,
        resources,
        framework: if r.framework_id.is_empty() {
            None
        } else {
            Some(id::<FrameworkId>(&format!("{field}.framework_id"), &r.framework_id)?)
        },
    })
}

pub fn volume_to_proto(v: &Volume) -> v1::VolumeInfo {
    v1::VolumeInfo {
        id: v.id.to_string(),
        role: v.role.to_string(),
        reservation_id: v.reservation.to_string(),
        size: v.size.as_f64(),
        container_path: v.container_path.clone(),
        owner_framework_id: v.owner.as_ref().map(|f| f.to_string()).unwrap_or_default(),
        shared: v.shared,
        principal: v.principal.clone(),
        backing: v.backing.clone().unwrap_or_default(),
    }
}

pub fn volume_from_proto(field: &str, v: &v1::VolumeInfo) -> Result<Volume, ProtoError> {
    validate_container_path(&v.container_path).map_err(|e| ProtoError::invalid(format!("{field}.container_path"), e))?;
    if v.principal.len() > weir_model::ids::MAX_ID_LEN {
        return Err(ProtoError::invalid(format!("{field}.principal"), "longer than 256 bytes"));
    }
    Ok(Volume {
        id: id::<VolumeId>(&format!("{field}.id"), &v.id)?,
        role: id::<Role>(&format!("{field}.role"), &v.role)?,
        reservation: id::<ReservationId>(&format!("{field}.reservation_id"), &v.reservation_id)?,
        size: size_from_proto(&format!("{field}.size"), v.size)?,
        container_path: v.container_path.clone(),
        owner: if v.owner_framework_id.is_empty() {
            None
        } else {
            Some(id::<FrameworkId>(&format!("{field}.owner_framework_id"), &v.owner_framework_id)?)
        },
        shared: v.shared,
        principal: v.principal.clone(),
        backing: if v.backing.is_empty() {
            None
        } else {
            validate_backing(&v.backing).map_err(|e| ProtoError::invalid(format!("{field}.backing"), e))?;
            Some(v.backing.clone())
        },
    })
}

/// Reservations and volumes as an agent reports or is told them: each
/// valid, ids unique (volumes per role), every volume on a reservation of
/// its role, and the volumes on a reservation within its disk.
pub fn reservations_and_volumes_from_proto(
    field: &str,
    reservations: &[v1::ReservationInfo],
    volumes: &[v1::VolumeInfo],
) -> Result<(Vec<Reservation>, Vec<Volume>), ProtoError> {
    if reservations.len() > MAX_RESERVATIONS || volumes.len() > MAX_RESERVATIONS {
        return Err(ProtoError::invalid(field, format!("more than {MAX_RESERVATIONS} reservations or volumes")));
    }
    let mut by_id = std::collections::BTreeMap::new();
    for (i, r) in reservations.iter().enumerate() {
        let r = reservation_from_proto(&format!("{field}.reservations[{i}]"), r)?;
        if by_id.insert(r.id.clone(), r.clone()).is_some() {
            return Err(ProtoError::invalid(format!("{field}.reservations[{i}].id"), format!("reservation {} is listed twice", r.id)));
        }
    }
    let mut used: std::collections::BTreeMap<ReservationId, Milli> = std::collections::BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(volumes.len());
    for (i, v) in volumes.iter().enumerate() {
        let at = format!("{field}.volumes[{i}]");
        let v = volume_from_proto(&at, v)?;
        if !seen.insert((v.role.clone(), v.id.clone())) {
            return Err(ProtoError::invalid(format!("{at}.id"), format!("volume {} of role {} is listed twice", v.id, v.role)));
        }
        let Some(r) = by_id.get(&v.reservation).filter(|r| r.role == v.role) else {
            return Err(ProtoError::invalid(
                format!("{at}.reservation_id"),
                format!("volume {} names reservation {}, which is not a reservation of role {}", v.id, v.reservation, v.role),
            ));
        };
        let total = used.entry(v.reservation.clone()).or_default();
        *total = Milli(total.0.saturating_add(v.size.0));
        if *total > r.resources.disk {
            return Err(ProtoError::invalid(
                format!("{at}.size"),
                format!("volumes on reservation {} need {} MiB of disk; it holds {}", r.id, total, r.resources.disk),
            ));
        }
        out.push(v);
    }
    Ok((by_id.into_values().collect(), out))
}

pub fn mount_to_proto(m: &VolumeMount) -> v1::VolumeMount {
    v1::VolumeMount { volume_id: m.volume.to_string(), container_path: m.container_path.clone(), read_only: m.read_only }
}

/// A task's mounts: at most [`MAX_MOUNTS`], valid ids and paths, no volume
/// or path twice. An empty path is kept empty (the volume's own applies).
pub fn mounts_from_proto(field: &str, list: &[v1::VolumeMount]) -> Result<Vec<VolumeMount>, ProtoError> {
    if list.len() > MAX_MOUNTS {
        return Err(ProtoError::invalid(field, format!("{} volumes; at most {MAX_MOUNTS} are allowed", list.len())));
    }
    let mut out: Vec<VolumeMount> = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let volume = id::<VolumeId>(&format!("{at}.volume_id"), &m.volume_id)?;
        if !m.container_path.is_empty() {
            validate_container_path(&m.container_path).map_err(|e| ProtoError::invalid(format!("{at}.container_path"), e))?;
        }
        if out.iter().any(|o| o.volume == volume) {
            return Err(ProtoError::invalid(&at, format!("volume {volume} is mounted twice")));
        }
        out.push(VolumeMount { volume, container_path: m.container_path.clone(), read_only: m.read_only });
    }
    Ok(out)
}

/// The most secrets one task may carry, and their largest total size.
pub const MAX_SECRETS: usize = 64;
pub const MAX_SECRET_BYTES: usize = 64 << 10;

/// Checks a task's secrets: each name a plain file name (no path, no
/// leading dot), no name twice, bounded count and size. Errors name the
/// secret, never its value.
pub fn check_secrets(field: &str, list: &[v1::Secret]) -> Result<(), ProtoError> {
    if list.len() > MAX_SECRETS {
        return Err(ProtoError::invalid(field, format!("{} secrets; at most {MAX_SECRETS} are allowed", list.len())));
    }
    let total: usize = list.iter().map(|s| s.name.len() + s.value.len()).sum();
    if total > MAX_SECRET_BYTES {
        return Err(ProtoError::invalid(field, format!("{total} bytes; at most {MAX_SECRET_BYTES} are allowed")));
    }
    for (i, secret) in list.iter().enumerate() {
        let at = format!("{field}[{i}].name");
        let name = &secret.name;
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if name.is_empty() || name.len() > 64 || !plain || name.starts_with('.') {
            return Err(ProtoError::invalid(
                at,
                format!("{:?} must be 1 to 64 of letters, digits, '.', '_' and '-', not starting with '.'", name.chars().take(80).collect::<String>()),
            ));
        }
        if list[..i].iter().any(|s| &s.name == name) {
            return Err(ProtoError::invalid(at, format!("secret {name} is named twice")));
        }
    }
    Ok(())
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

    #[test]
    fn quotas_round_trip_and_bad_ones_are_named() {
        let quota = Quota {
            guarantee: Resources::parse("cpus:4;mem:2048").unwrap(),
            limit: Limits { cpus: Some(Milli::from_units(8)), gpus: Some(Milli(0)), ..Limits::default() },
        };
        let (g, l) = quota_to_proto(&quota);
        assert_eq!(l.len(), 2, "a limit of 0 is sent");
        assert_eq!(quota_from_proto("q", &g, &l).unwrap(), quota);
        let scalar = |name: &str, v: f64| v1::Resource { name: name.into(), value: Some(v1::resource::Value::Scalar(v)), role: String::new(), reservation: None, revocable: false };
        let err = quota_from_proto("q", &[], &[scalar("cpus", 1.0), scalar("cpus", 2.0)]).unwrap_err();
        assert_eq!(err.to_string(), "q.limit[1] (cpus): named twice");
        let err = quota_from_proto("q", &[], &[scalar("ports", 1.0)]).unwrap_err();
        assert!(err.to_string().contains("unknown resource \"ports\""), "{err}");
        assert!(quota_from_proto("q", &[scalar("cpus", -1.0)], &[]).is_err());
        assert!(quota_from_proto("q", &[], &[scalar("mem", f64::NAN)]).is_err());
    }

    fn scalar(name: &str, v: f64) -> v1::Resource {
        v1::Resource { name: name.into(), value: Some(v1::resource::Value::Scalar(v)), role: String::new(), reservation: None, revocable: false }
    }

    #[test]
    fn nested_roles_are_read_and_paths_out_of_them_refused() {
        let mut nested = scalar("cpus", 1.0);
        nested.role = "eng/analytics".into();
        let set = resources_from_proto("r", &[nested.clone()]).unwrap();
        assert!(set.reserved.contains_key(&Role::new("eng/analytics")));
        for bad in ["eng/../x", "/eng", "eng/", "eng//a"] {
            nested.role = bad.into();
            assert!(resources_from_proto("r", &[nested.clone()]).is_err(), "{bad}");
            assert!(role("offer.role", bad).is_err(), "{bad}");
        }
        assert_eq!(role("offer.role", "eng/analytics").unwrap(), Role::new("eng/analytics"));
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
                revocable: false,
        };
        assert!(err(vec![ports]).contains("range 9-3 must have begin <= end <= 65535"));
        assert!(err(vec![v1::Resource { name: "cpus".into(), value: None, role: String::new(), reservation: None, revocable: false }])
            .contains("must have a scalar value"));
    }

    fn summary() -> AgentSummary {
        AgentSummary {
            id: AgentId::new("b-A0001"),
            hostname: "node1.example".into(),
            http_address: "node1.example:5051".into(),
            state: AgentState::Disconnected,
            attributes: vec![("rack".into(), "r1".into())],
            total: ResourceSet::parse("cpus:8;mem:16384;ports:[31000-31999];cpus(yarn):2").unwrap(),
            used: ResourceSet::parse("cpus:1.5;mem:2048;cpus(yarn):1").unwrap(),
            offered: ResourceSet::parse("cpus:6;ports:[31000-31009]").unwrap(),
            tasks: 3,
            drain: DrainState::Draining { deadline: std::time::Duration::from_secs(1_800_000_000) },
            unavailability: Some(Unavailability {
                start: std::time::Duration::from_millis(1_800_000_000_250),
                duration: std::time::Duration::from_secs(7200),
            }),
        }
    }

    #[test]
    fn agent_summaries_round_trip() {
        let agent = summary();
        let wire = agent_summary_to_proto(&agent);
        assert_eq!(wire.state, v1::AgentState::AgentDisconnected as i32);
        assert_eq!(agent_summary_from_proto("a", &wire).unwrap(), agent);
        let response = v1::GetStateResponse { agents: vec![wire.clone(), wire], ..Default::default() };
        assert_eq!(agents_from_proto(&response).unwrap(), vec![agent.clone(), agent]);
        for state in [AgentState::Reachable, AgentState::Disconnected, AgentState::Unreachable] {
            assert_eq!(agent_state_from_proto("s", agent_state_to_proto(state) as i32).unwrap(), state);
        }
        for drain in [DrainState::Active, DrainState::Drained, DrainState::Draining { deadline: std::time::Duration::from_millis(1_700_000_000_250) }] {
            let (raw, deadline) = drain_state_to_proto(drain);
            assert_eq!(drain_state_from_proto("d", raw as i32, deadline).unwrap(), drain);
        }
    }

    #[test]
    fn bad_agent_summaries_name_the_field() {
        let err = |change: fn(&mut v1::AgentSummary)| {
            let mut wire = agent_summary_to_proto(&summary());
            change(&mut wire);
            let response = v1::GetStateResponse { agents: vec![agent_summary_to_proto(&summary()), wire], ..Default::default() };
            agents_from_proto(&response).unwrap_err().to_string()
        };
        assert!(err(|a| a.id = "no spaces allowed".into()).starts_with("get_state.agents[1].id: "));
        assert_eq!(err(|a| a.id.clear()), "get_state.agents[1].id: get_state.agents[1].id must not be empty");
        assert_eq!(err(|a| a.state = 0), "get_state.agents[1].state is missing");
        assert_eq!(err(|a| a.state = 9), "get_state.agents[1].state: 9 is not an agent state");
        assert_eq!(err(|a| a.drain = 7), "get_state.agents[1].drain: 7 is not a drain state");
        assert_eq!(
            err(|a| a.drain_deadline = f64::NAN),
            "get_state.agents[1].drain: drain deadline NaN is not a time since the Unix epoch"
        );
        assert_eq!(
            err(|a| a.unavailability.as_mut().unwrap().start = -1.0),
            "get_state.agents[1].unavailability.start: -1 is not a time since the Unix epoch"
        );
        assert_eq!(
            err(|a| a.unavailability.as_mut().unwrap().duration = f64::INFINITY),
            "get_state.agents[1].unavailability.duration: inf is not a duration of 0 to 320000000 seconds"
        );
        assert_eq!(err(|a| a.hostname.clear()), "get_state.agents[1].hostname: must be 1 to 255 bytes long, not 0");
        assert!(err(|a| a.attributes[0].name = "bad name".into()).starts_with("get_state.agents[1].attributes[0]: "));
        assert!(err(|a| a.total[0] = scalar("cpus", f64::INFINITY)).starts_with("get_state.agents[1].total[0] (cpus): "));
        // More in use than the agent has: the books could not balance.
        assert_eq!(
            err(|a| a.used.push(scalar("mem", 20000.0))),
            "get_state.agents[1].used: used (cpus:1.5;mem:22048;cpus(yarn):1) and offered (cpus:6;ports:[31000-31009]) \
             exceed the agent's total (cpus:8;mem:16384;ports:[31000-31999];cpus(yarn):2)"
        );
    }

    #[test]
    fn offers_round_trip_and_bad_ones_name_the_field() {
        let offer = Offer {
            id: OfferId::new("b-O0007"),
            framework: FrameworkId::new("b-F0002"),
            agent: AgentId::new("b-A0001"),
            hostname: "node1".into(),
            role: Role::new("analytics"),
            resources: ResourceSet::parse("cpus:2;mem:1024;ports:[31000-31009]").unwrap(),
            attributes: vec![("rack".into(), "r1".into())],
            data_bytes: 128 << 20,
            unavailability: Some(Unavailability { start: std::time::Duration::from_secs(1_900_000_000), duration: std::time::Duration::from_secs(60) }),
        };
        let wire = offer_to_proto(&offer);
        assert_eq!(offer_from_proto("offers[0]", &wire).unwrap(), offer);
        let err = |change: fn(&mut v1::Offer)| {
            let mut bad = wire.clone();
            change(&mut bad);
            offer_from_proto("offers[3]", &bad).unwrap_err().to_string()
        };
        assert_eq!(err(|o| o.id.clear()), "offers[3].id: offers[3].id must not be empty");
        assert!(err(|o| o.agent_id = "a/b".into()).starts_with("offers[3].agent_id: "));
        assert!(err(|o| o.role.clear()).starts_with("offers[3].role: "));
        assert_eq!(err(|o| o.resources.clear()), "offers[3].resources: an offer must hold some resources");
        assert!(err(|o| o.resources[0] = scalar("cpus", -2.0)).starts_with("offers[3].resources[0] (cpus): "));
        assert_eq!(err(|o| o.hostname.clear()), "offers[3].hostname: must be 1 to 255 bytes long, not 0");
        assert_eq!(
            err(|o| o.unavailability.as_mut().unwrap().duration = -5.0),
            "offers[3].unavailability.duration: -5 is not a duration of 0 to 320000000 seconds"
        );
    }

    #[test]
    fn reservations_and_volumes_are_checked_together() {
        let r = |id: &str, role: &str, spec: &str| v1::ReservationInfo {
            id: id.into(),
            role: role.into(),
            resources: resources_to_proto(&ResourceSet::parse(spec).unwrap()),
            ..Default::default()
        };
        let v = |id: &str, role: &str, on: &str, size: f64, path: &str| v1::VolumeInfo {
            id: id.into(),
            role: role.into(),
            reservation_id: on.into(),
            size,
            container_path: path.into(),
            ..Default::default()
        };
        let check = |rs: Vec<v1::ReservationInfo>, vs: Vec<v1::VolumeInfo>| {
            reservations_and_volumes_from_proto("reg", &rs, &vs).map(|_| ()).map_err(|e| e.to_string())
        };
        let good = r("r1", "db", "cpus:1;disk:100");
        assert_eq!(check(vec![good.clone()], vec![v("a", "db", "r1", 60.0, "x"), v("b", "db", "r1", 40.0, "y")]), Ok(()));
        let back = reservation_from_proto("r", &good).unwrap();
        assert_eq!(reservation_to_proto(&back), good);
        assert_eq!(
            check(vec![good.clone()], vec![v("a", "db", "r1", 60.0, "x"), v("b", "db", "r1", 41.0, "y")]),
            Err("reg.volumes[1].size: volumes on reservation r1 need 101 MiB of disk; it holds 100".into())
        );
        assert_eq!(
            check(vec![good.clone()], vec![v("a", "web", "r1", 1.0, "x")]),
            Err("reg.volumes[0].reservation_id: volume a names reservation r1, which is not a reservation of role web".into())
        );
        assert_eq!(
            check(vec![good.clone(), good.clone()], vec![]),
            Err("reg.reservations[1].id: reservation r1 is listed twice".into())
        );
        assert_eq!(
            check(vec![good.clone()], vec![v("a", "db", "r1", 1.0, "x"), v("a", "db", "r1", 1.0, "y")]),
            Err("reg.volumes[1].id: volume a of role db is listed twice".into())
        );
        assert_eq!(check(vec![r("r2", "*", "cpus:1")], vec![]), Err("reg.reservations[0].role: cannot reserve for the default role \"*\"".into()));
        assert_eq!(check(vec![r("r2", "db", "cpus(db):1")], vec![]), Err("reg.reservations[0].resources: must be unreserved resources (no role)".into()));
        assert_eq!(check(vec![r("r2", "db", "")], vec![]), Err("reg.reservations[0].resources: a reservation must hold some resources".into()));
        assert_eq!(
            check(vec![good.clone()], vec![v("a", "db", "r1", 1.0, "../up")]),
            Err("reg.volumes[0].container_path: container_path \"../up\" may not hold empty, '.' or '..' components".into())
        );
        assert_eq!(
            check(vec![good], vec![v("a", "db", "r1", -1.0, "x")]),
            Err("reg.volumes[0].size: size -1 must be a finite number of MiB above 0".into())
        );
        let mounts = vec![
            v1::VolumeMount { volume_id: "a".into(), container_path: String::new(), read_only: true },
            v1::VolumeMount { volume_id: "a".into(), container_path: "z".into(), read_only: false },
        ];
        assert_eq!(mounts_from_proto("t.volumes", &mounts).unwrap_err().to_string(), "t.volumes[1]: volume a is mounted twice");
        assert_eq!(mounts_from_proto("t.volumes", &mounts[..1]).unwrap()[0].container_path, "");
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

    #[test]
    fn secrets_are_checked_by_name_and_never_shown() {
        let secret = |name: &str, value: &str| v1::Secret { name: name.into(), value: value.as_bytes().to_vec() };
        assert!(check_secrets("task.secrets", &[secret("yarn-nm-key", "s3cr3t-value"), secret("a.b_c", "")]).is_ok());
        for bad in ["", ".hidden", "a/b", "..", "x y", &"n".repeat(65)] {
            let err = check_secrets("task.secrets", &[secret(bad, "s3cr3t-value")]).unwrap_err().to_string();
            assert!(err.starts_with("task.secrets[0].name: "), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        let err = check_secrets("t", &[secret("k", "s3cr3t-value"), secret("k", "s3cr3t-value")]).unwrap_err().to_string();
        assert_eq!(err, "t[1].name: secret k is named twice");
        assert!(check_secrets("t", &[secret("big", &"x".repeat(MAX_SECRET_BYTES))]).is_err());
        // Debug of the secret and of a task holding it: name shown, value not.
        let task = v1::TaskInfo { task_id: "t".into(), secrets: vec![secret("yarn-nm-key", "s3cr3t-value")], ..Default::default() };
        let shown = format!("{task:?} {:?} {:#?}", task.secrets[0], task);
        assert!(shown.contains("yarn-nm-key") && shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("115, 51"), "{shown}");
    }
}
