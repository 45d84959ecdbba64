//! Task states, as a framework sees them (the Mesos set).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Accepted by the broker, on its way to the agent.
    Staging,
    /// The agent is preparing the sandbox.
    Starting,
    Running,
    Killing,
    Finished,
    Failed,
    Killed,
    /// Rejected before it ran: bad launch, bad resources.
    Error,
    /// The task's agent stopped answering; it may come back.
    Unreachable,
    /// The task's agent was removed; the task is gone for good.
    Gone,
    /// The broker or agent dropped the launch (e.g. agent went away first).
    Dropped,
    /// Reconciliation found no record of the task.
    Unknown,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Gone
                | TaskState::Dropped
                | TaskState::Unknown
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The reason a task's end carries when the broker killed it at the end of
/// a revocation's grace period (issue 19): Mesos' name for a container
/// ended to make room, which the YARN shim maps to PREEMPTED (-102).
pub const REVOKED_REASON: &str = "REASON_CONTAINER_PREEMPTED";

/// The task label (`TaskInfo.labels`) by which a framework exempts a task
/// from revocation: `weir.revocation.exempt=true` (issue 19). For tasks
/// others depend on, such as the YARN shim's node managers, whose end ends
/// every container on them: revocation takes other tasks instead.
pub const REVOCATION_EXEMPT_LABEL: &str = "weir.revocation.exempt";

/// The task label (`TaskInfo.labels`) by which a task asks to run as root
/// on an agent with `agent.tasks.switch-user`: `weir.run-as-root=true`.
/// Granted only to frameworks whose principal the agent lists in
/// `agent.tasks.root-principals`; the YARN shim asks it for its node
/// managers under LinuxContainerExecutor (they give containers' files to
/// the containers' users, YARN's container-executor's work). A task
/// naming root without it is held to `agent.tasks.min-uid` like any
/// other, so a framework's other tasks never run as root by mistake.
pub const RUN_AS_ROOT_LABEL: &str = "weir.run-as-root";

/// Whether labels ask for root.
pub fn asks_for_root(labels: &std::collections::HashMap<String, String>) -> bool {
    label_is_true(labels, RUN_AS_ROOT_LABEL)
}

/// Whether labels exempt a task from revocation.
pub fn exempt_from_revocation(labels: &std::collections::HashMap<String, String>) -> bool {
    label_is_true(labels, REVOCATION_EXEMPT_LABEL)
}

/// Whether label `key` says `true`.
fn label_is_true(labels: &std::collections::HashMap<String, String>, key: &str) -> bool {
    labels.get(key).is_some_and(|v| v.trim() == "true")
}

/// The directory of a task's sandbox its secrets (`TaskInfo.secrets`) are
/// written to, and the variable that names it to the task. No volume may be
/// mounted there (`reservation::validate_container_path`): the agent
/// deletes the directory when the task ends.
pub const SECRETS_DIR: &str = ".weir-secrets";
pub const SECRETS_DIR_ENV: &str = "WEIR_SECRETS_DIR";
