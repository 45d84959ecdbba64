//! The YARN core's side of the broker's scheduler API: broker offers and
//! task updates as the core reads them. The shim's framework loop and the
//! cluster simulation both use these, so both feed the core alike.

use weir_model::{Milli, Resources};
use weir_proto::v1;

use crate::scheduler::{Offer, TaskEvent};

/// A broker offer as the scheduler reads it, through the one conversion
/// layer (`weir_proto::convert`): cpus and mem reserved for the offer's
/// role (the queue's) count with the unreserved ones (tasks take the
/// reserved ones first, see [`take_resources`]); ports only unreserved.
pub fn offer_from_proto(o: &v1::Offer) -> Result<Offer, String> {
    let offer = weir_proto::convert::offer_from_proto("offer", o).map_err(|e| e.to_string())?;
    let free = &offer.resources.unreserved;
    let reserved = offer.resources.reserved.get(&offer.role).cloned().unwrap_or_default();
    Ok(Offer {
        id: offer.id.clone(),
        agent_id: offer.agent.clone(),
        hostname: offer.hostname.clone(),
        role: offer.role.to_string(),
        cpus: Milli(free.cpus.0 + reserved.cpus.0),
        mem_mb: Milli(free.mem.0 + reserved.mem.0),
        ports: free.ports.iter().collect(),
    })
}

/// What of an offer is reserved for its role (to hand out first).
pub fn reserved_of(o: &v1::Offer) -> Resources {
    weir_proto::convert::offer_from_proto("offer", o)
        .ok()
        .and_then(|offer| offer.resources.reserved.get(&offer.role).cloned())
        .unwrap_or_default()
}

/// `cpus` and `mem` for one task in `role`, taken from `reserved` (what is
/// left of the offer's reservation, reduced here) first and unreserved for
/// the rest: a queue uses its reservations before the shared pool.
pub fn take_resources(reserved: &mut Resources, role: &str, cpus: Milli, mem: Milli) -> Vec<v1::Resource> {
    let mut out = Vec::new();
    for (name, wanted, left) in [("cpus", cpus, &mut reserved.cpus), ("mem", mem, &mut reserved.mem)] {
        let from_reserved = Milli(wanted.0.min(left.0));
        let rest = Milli(wanted.0 - from_reserved.0);
        *left = Milli(left.0 - from_reserved.0);
        if !from_reserved.is_zero() {
            out.push(v1::Resource {
                name: name.into(),
                value: Some(v1::resource::Value::Scalar(from_reserved.as_f64())),
                role: role.to_owned(),
                ..Default::default()
            });
        }
        if !rest.is_zero() {
            out.push(v1::Resource { name: name.into(), value: Some(v1::resource::Value::Scalar(rest.as_f64())), ..Default::default() });
        }
    }
    out
}

/// A broker task update as the scheduler reads it; None for steps that
/// change nothing (staging, starting, killing).
pub fn task_event(s: &v1::TaskStatus) -> Option<TaskEvent> {
    use v1::TaskState as S;
    let message = s.message.clone();
    Some(match S::try_from(s.state).ok()? {
        S::TaskRunning => TaskEvent::Running,
        S::TaskFinished => TaskEvent::Exited { code: Some(s.exit_code.unwrap_or(0)), signal: None, message },
        S::TaskFailed if s.reason == "REASON_CONTAINER_LIMITATION_MEMORY" => TaskEvent::MemoryLimit { message },
        S::TaskFailed if s.exit_code.is_some() || s.signal.is_some() => TaskEvent::Exited { code: s.exit_code, signal: s.signal, message },
        S::TaskFailed | S::TaskError | S::TaskDropped => TaskEvent::Failed { message },
        S::TaskKilled if s.reason == weir_model::task::REVOKED_REASON => TaskEvent::Preempted { message },
        S::TaskKilled => TaskEvent::Killed { message },
        S::TaskUnreachable | S::TaskGone | S::TaskUnknown => TaskEvent::Lost { message },
        S::TaskStaging | S::TaskStarting | S::TaskKilling | S::Unspecified => return None,
    })
}

/// Whether an update says the task's agent is unreachable: not an end, so
/// the core keeps asking about the task (`YarnCore::unreachable`).
pub fn is_unreachable(s: &v1::TaskStatus) -> bool {
    s.state == v1::TaskState::TaskUnreachable as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_task_reads_as_preempted_and_another_kill_as_killed() {
        let status = |reason: &str| v1::TaskStatus {
            state: v1::TaskState::TaskKilled as i32,
            reason: reason.into(),
            message: "m".into(),
            ..Default::default()
        };
        assert_eq!(task_event(&status(weir_model::task::REVOKED_REASON)), Some(TaskEvent::Preempted { message: "m".into() }));
        assert_eq!(task_event(&status("")), Some(TaskEvent::Killed { message: "m".into() }));
    }
    use weir_model::ResourceSet;
    use weir_proto::convert::{resources_from_proto, resources_to_proto};

    /// A queue's reservation counts in the offer and is used before the
    /// shared pool; what a task takes from it comes out of the budget.
    #[test]
    fn a_queues_reservation_is_offered_and_used_first() {
        let wire = v1::Offer {
            id: "o1".into(),
            framework_id: "f".into(),
            agent_id: "a".into(),
            hostname: "h".into(),
            role: "default".into(),
            resources: resources_to_proto(&ResourceSet::parse("cpus:2;mem:1024;cpus(default):1;mem(default):512;cpus(other):5").unwrap()),
            ..Default::default()
        };
        let offer = offer_from_proto(&wire).unwrap();
        assert_eq!((offer.cpus, offer.mem_mb), (Milli::from_units(3), Milli::from_units(1536)));
        let mut budget = reserved_of(&wire);
        assert_eq!(budget, Resources::parse("cpus:1;mem:512").unwrap());
        let first = take_resources(&mut budget, "default", Milli(1500), Milli::from_units(256));
        assert_eq!(resources_from_proto("t", &first).unwrap(), ResourceSet::parse("cpus:0.5;cpus(default):1;mem(default):256").unwrap());
        let second = take_resources(&mut budget, "default", Milli(500), Milli::from_units(512));
        assert_eq!(resources_from_proto("t", &second).unwrap(), ResourceSet::parse("cpus:0.5;mem:256;mem(default):256").unwrap());
        assert!(budget.is_empty());
    }
}
