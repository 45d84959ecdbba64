//! The YARN core's side of the broker's scheduler API: broker offers and
//! task updates as the core reads them. The shim's framework loop and the
//! cluster simulation both use these, so both feed the core alike.

use weir_proto::v1;

use crate::scheduler::{Offer, TaskEvent};

/// A broker offer as the scheduler reads it, through the one conversion
/// layer (`weir_proto::convert`). Only the unreserved part: reserved
/// resources would need the role in the task's resources, and the shim
/// does not place on reservations yet.
pub fn offer_from_proto(o: &v1::Offer) -> Result<Offer, String> {
    let offer = weir_proto::convert::offer_from_proto("offer", o).map_err(|e| e.to_string())?;
    let free = offer.resources.unreserved;
    Ok(Offer {
        id: offer.id,
        agent_id: offer.agent,
        hostname: offer.hostname,
        role: offer.role.to_string(),
        cpus: free.cpus,
        mem_mb: free.mem,
        ports: free.ports.iter().collect(),
    })
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
