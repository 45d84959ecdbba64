//! The run's record, Jepsen-style: what agents promised (status updates
//! they durably queued, with their uuids) and what frameworks were told,
//! and the checks over it once the run is quiet.
//!
//! - Order: for each task, the first delivery of each agent update comes
//!   in the order the agent generated them (retries may repeat one; none
//!   may overtake an earlier one), and every delivered uuid was generated
//!   by an agent for that very task.
//! - Completeness: every generated update reached its framework, unless
//!   the framework is gone (abandoned past its failover timeout) or the
//!   broker told it the task was GONE because its agent was removed (the
//!   broker then acknowledges the agent's last updates itself; see
//!   DESIGN.md, "Broker: agents that go away").

use std::collections::{BTreeMap, BTreeSet};

use weir_model::TaskState;

/// (framework id, task id)
pub type TaskKey = (String, String);

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub uuid: Vec<u8>,
    pub state: TaskState,
    pub reason: String,
    pub from_agent: bool,
}

#[derive(Default)]
pub struct History {
    /// Updates agents durably queued, per task, in the order generated.
    pub generated: BTreeMap<TaskKey, Vec<(Vec<u8>, TaskState)>>,
    generated_uuids: BTreeSet<Vec<u8>>,
    /// Every update a framework received, per task, in delivery order.
    pub delivered: BTreeMap<TaskKey, Vec<Delivery>>,
    /// Tasks frameworks asked to launch (ACCEPT sent).
    pub launched: BTreeSet<TaskKey>,
}

impl History {
    /// Notes an update an agent has written to its checkpoint; a uuid seen
    /// before is a retry and is not noted again.
    pub fn generated(&mut self, key: TaskKey, uuid: &[u8], state: TaskState) {
        if uuid.is_empty() || !self.generated_uuids.insert(uuid.to_vec()) {
            return;
        }
        self.generated.entry(key).or_default().push((uuid.to_vec(), state));
    }

    pub fn delivered(&mut self, key: TaskKey, delivery: Delivery) {
        self.delivered.entry(key).or_default().push(delivery);
    }

    /// The last state a framework heard for a task.
    pub fn last_heard(&self, key: &TaskKey) -> Option<&Delivery> {
        self.delivered.get(key).and_then(|d| d.last())
    }

    /// Whether the broker told the framework the task's agent was removed.
    pub fn told_agent_removed(&self, key: &TaskKey) -> bool {
        self.delivered
            .get(key)
            .is_some_and(|d| d.iter().any(|u| !u.from_agent && u.state == TaskState::Gone && u.reason == "REASON_AGENT_REMOVED"))
    }

    /// Order and provenance of what was delivered, for every task.
    pub fn check_order(&self) -> Vec<String> {
        self.delivered.keys().flat_map(|key| self.check_task_order(key)).collect()
    }

    /// Order and provenance of what was delivered for one task; checked
    /// after every delivery.
    pub fn check_task_order(&self, key: &TaskKey) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(deliveries) = self.delivered.get(key) else { return problems };
        let generated = self.generated.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let mut seen = BTreeSet::new();
        let mut last_index: Option<usize> = None;
        for d in deliveries.iter().filter(|d| !d.uuid.is_empty()) {
            let Some(index) = generated.iter().position(|(u, _)| u == &d.uuid) else {
                problems.push(format!("{}/{}: delivered update {} ({}) was never generated for this task", key.0, key.1, hex(&d.uuid), d.state));
                continue;
            };
            if !seen.insert(index) {
                continue; // a retry: at least once is allowed
            }
            if let Some(last) = last_index.filter(|last| index < *last) {
                problems.push(format!(
                    "{}/{}: update #{index} ({}) first arrived after update #{last} ({})",
                    key.0, key.1, generated[index].1, generated[last].1
                ));
            }
            last_index = Some(index);
        }
        problems
    }

    /// Generated updates that never reached a framework that should have
    /// had them. `gone(framework)` says a framework was abandoned.
    pub fn check_complete(&self, gone: impl Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, generated) in &self.generated {
            if gone(&key.0) || self.told_agent_removed(key) {
                continue;
            }
            let delivered: BTreeSet<&Vec<u8>> =
                self.delivered.get(key).map(|d| d.iter().map(|u| &u.uuid).collect()).unwrap_or_default();
            for (i, (uuid, state)) in generated.iter().enumerate() {
                if !delivered.contains(uuid) {
                    problems.push(format!("{}/{}: update #{i} ({state}, {}) never reached the framework", key.0, key.1, hex(uuid)));
                }
            }
        }
        problems
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TaskKey {
        ("F".into(), "t".into())
    }

    fn delivery(uuid: &[u8], state: TaskState) -> Delivery {
        Delivery { uuid: uuid.to_vec(), state, reason: String::new(), from_agent: true }
    }

    #[test]
    fn retries_pass_but_overtaking_and_forgery_and_loss_are_caught() {
        let mut h = History::default();
        h.generated(key(), b"1", TaskState::Starting);
        h.generated(key(), b"2", TaskState::Running);
        h.generated(key(), b"2", TaskState::Running); // a retry, not a new update
        h.generated(key(), b"3", TaskState::Finished);
        for u in [b"1", b"1", b"2", b"1", b"3"] {
            h.delivered(key(), delivery(u, TaskState::Running));
        }
        assert!(h.check_order().is_empty(), "{:?}", h.check_order());
        assert!(h.check_complete(|_| false).is_empty());

        let mut bad = History::default();
        bad.generated(key(), b"1", TaskState::Starting);
        bad.generated(key(), b"2", TaskState::Running);
        bad.delivered(key(), delivery(b"2", TaskState::Running));
        bad.delivered(key(), delivery(b"1", TaskState::Starting));
        bad.delivered(key(), delivery(b"9", TaskState::Running));
        assert_eq!(bad.check_order().len(), 2, "{:?}", bad.check_order());

        let mut lost = History::default();
        lost.generated(key(), b"1", TaskState::Starting);
        assert_eq!(lost.check_complete(|_| false).len(), 1);
        assert!(lost.check_complete(|f| f == "F").is_empty(), "an abandoned framework's updates are not owed");
    }
}
