//! The agent core: every task's lifecycle and its status-update stream, as
//! a deterministic state machine with no I/O.
//!
//! The shell feeds it what happened (the broker sent a task, a process
//! started or exited, an acknowledgement arrived, time passed) and carries
//! out the effects (send a message, spawn a process, signal one).
//!
//! Invariants:
//! - each task's updates leave in order, one at a time: only the oldest
//!   unacknowledged update is in flight, resent every retry interval (and at
//!   once after re-registration) until the broker relays an acknowledgement
//!   with its uuid; a stale acknowledgement changes nothing;
//! - a task record lives until its terminal update is acknowledged, so
//!   nothing is lost across broker restarts or reconnects;
//! - a kill is SIGTERM to the task's process group, then SIGKILL at the
//!   grace deadline, and the task reports TASK_KILLED.
//!
//! Reservations and volumes are the broker's to decide: the core keeps the
//! last list the broker sent (CHECKPOINT_RESOURCES), checkpoints it, reports
//! it on every registration, and asks the shell to create the directories
//! of new volumes and delete those of destroyed ones. A task may mount only
//! a volume the list holds; a volume a live task mounts is never deleted.
//!
//! Update uuids are `nonce ‖ counter`: the shell picks the nonce at start
//! (random), so the core stays deterministic and uuids stay unique across
//! agent restarts.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use weir_model::{AgentId, FrameworkId, Role, TaskId, TaskState, VolumeId};
use weir_proto::convert::{self, task_state_to_proto};
use weir_proto::v1;

/// How many finished tasks `/state` remembers.
const COMPLETED_KEPT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// What the shell tells the core.
#[derive(Debug, Clone)]
pub enum Input {
    Registered { agent_id: AgentId },
    RunTask { framework: String, task: Box<v1::TaskInfo> },
    KillTask { framework: String, task: String },
    Acknowledge { framework: String, task: String, uuid: Vec<u8> },
    /// `message`: for the RUNNING update (empty normally).
    Spawned { framework: FrameworkId, task: TaskId, pid: u32, sandbox: PathBuf, message: String },
    SpawnFailed { framework: FrameworkId, task: TaskId, error: String },
    /// `limitation`: the task hit a resource limit (e.g. the OOM killer);
    /// the message says which.
    Exited { framework: FrameworkId, task: TaskId, code: Option<i32>, signal: Option<i32>, limitation: Option<String> },
    /// The broker's whole list of this agent's reservations and volumes.
    CheckpointResources(v1::broker_message::CheckpointResources),
    /// A volume's measured disk use (the shell measures every few seconds).
    VolumeUsage { role: Role, volume: VolumeId, used_mib: f64 },
    /// The broker asks for a backed volume's copy to be prepared or synced;
    /// passed on as an effect so it follows the CHECKPOINT_RESOURCES before it.
    SyncVolume(v1::broker_message::SyncVolume),
    Disconnected,
    Tick,
    Shutdown,
    /// The shell's marker in its input queue: once the shell sees it
    /// handled, so is every input queued before it. Nothing for the core.
    Barrier,
}

/// What the core asks the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(v1::AgentMessage),
    Spawn { framework: FrameworkId, task: TaskId, info: Box<v1::TaskInfo> },
    Signal { framework: FrameworkId, task: TaskId, pid: u32, signal: Signal },
    /// Create the directories of these volumes (kept if they exist).
    CreateVolumes(Vec<(Role, VolumeId)>),
    /// Delete these volumes and their data.
    DestroyVolumes(Vec<(Role, VolumeId)>),
    /// Prepare (restore) or sync a backed volume's copy (`copies.rs`).
    SyncVolume(v1::broker_message::SyncVolume),
}

#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub kill_grace_period: Duration,
    pub status_update_retry_interval: Duration,
}

#[derive(Debug, Clone)]
struct TaskRecord {
    info: v1::TaskInfo,
    state: TaskState,
    latest: v1::TaskStatus,
    /// Unacknowledged updates, oldest (in flight) first.
    pending: VecDeque<v1::TaskStatus>,
    last_sent: Option<Duration>,
    pid: Option<u32>,
    sandbox: Option<PathBuf>,
    kill_requested: bool,
    kill_deadline: Option<Duration>,
    killed_hard: bool,
    /// Why the agent is killing it (a volume past its size): it then ends
    /// TASK_FAILED with this message, not TASK_KILLED.
    limitation: Option<String>,
}

/// A task as `/state` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskView {
    pub framework_id: String,
    /// The principal its framework belongs to, as the broker sent it
    /// (empty: none, or a task checkpointed before agents were told).
    pub principal: String,
    pub task_id: String,
    pub name: String,
    pub state: String,
    pub pid: Option<u32>,
    pub sandbox: Option<PathBuf>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub message: String,
    pub unacknowledged_updates: usize,
}

pub struct AgentCore {
    settings: CoreSettings,
    agent_id: Option<AgentId>,
    registered: bool,
    shutting_down: bool,
    nonce: [u8; 8],
    counter: u64,
    tasks: BTreeMap<(FrameworkId, TaskId), TaskRecord>,
    completed: VecDeque<TaskView>,
    /// Something the checkpoint holds has changed since it was last taken.
    dirty: bool,
    /// The broker's last CHECKPOINT_RESOURCES (validated).
    reservations: Vec<v1::ReservationInfo>,
    volumes: Vec<v1::VolumeInfo>,
    /// Volumes the broker destroyed while a task still mounted them: their
    /// data is deleted once no task does (not checkpointed: after a crash
    /// the directory is left behind, never deleted on a guess).
    destroy_when_unmounted: std::collections::BTreeSet<(Role, VolumeId)>,
}

impl AgentCore {
    pub fn new(settings: CoreSettings, nonce: [u8; 8]) -> AgentCore {
        AgentCore {
            settings,
            agent_id: None,
            registered: false,
            shutting_down: false,
            nonce,
            counter: 0,
            tasks: BTreeMap::new(),
            completed: VecDeque::new(),
            dirty: false,
            reservations: Vec::new(),
            volumes: Vec::new(),
            destroy_when_unmounted: Default::default(),
        }
    }

    /// What a restarted agent needs: its id, its tasks, their supervisors
    /// and every update not yet acknowledged. Clears the dirty flag.
    pub fn checkpoint(&mut self) -> v1::AgentCheckpoint {
        self.dirty = false;
        self.snapshot()
    }

    fn snapshot(&self) -> v1::AgentCheckpoint {
        v1::AgentCheckpoint {
            agent_id: self.agent_id.as_ref().map(|a| a.to_string()).unwrap_or_default(),
            update_counter: self.counter,
            reservations: self.reservations.clone(),
            volumes: self.volumes.clone(),
            tasks: self
                .tasks
                .iter()
                .map(|((framework, _), t)| v1::CheckpointedTask {
                    framework_id: framework.to_string(),
                    info: Some(t.info.clone()),
                    latest: Some(t.latest.clone()),
                    pending: t.pending.iter().cloned().collect(),
                    supervisor_pid: t.pid.unwrap_or(0),
                    sandbox: t.sandbox.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    kill_requested: t.kill_requested,
                })
                .collect(),
        }
    }

    /// Whether the checkpoint is out of date.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Restores what a checkpoint holds, before the agent registers. Returns
    /// the tasks whose supervisor was running, for the shell to re-attach.
    pub fn recover(&mut self, checkpoint: v1::AgentCheckpoint) -> Result<Vec<(FrameworkId, TaskId, u32, PathBuf)>, String> {
        if !checkpoint.agent_id.is_empty() {
            weir_model::ids::validate_id("agent_id", &checkpoint.agent_id)?;
            self.agent_id = Some(AgentId::new(checkpoint.agent_id));
        }
        self.counter = self.counter.max(checkpoint.update_counter);
        convert::reservations_and_volumes_from_proto("checkpoint", &checkpoint.reservations, &checkpoint.volumes)
            .map_err(|e| e.to_string())?;
        self.reservations = checkpoint.reservations;
        self.volumes = checkpoint.volumes;
        let mut live = Vec::new();
        let mut orphans = Vec::new();
        for (i, t) in checkpoint.tasks.into_iter().enumerate() {
            let info = t.info.ok_or_else(|| format!("tasks[{i}] has no task info"))?;
            weir_model::ids::validate_id("framework_id", &t.framework_id).map_err(|e| format!("tasks[{i}]: {e}"))?;
            weir_model::ids::validate_id("task_id", &info.task_id).map_err(|e| format!("tasks[{i}]: {e}"))?;
            let latest = t.latest.unwrap_or_default();
            let state = weir_proto::convert::task_state_from_proto("latest.state", latest.state).unwrap_or(TaskState::Staging);
            let key = (FrameworkId::new(t.framework_id), TaskId::new(info.task_id.clone()));
            let sandbox = (!t.sandbox.is_empty()).then(|| PathBuf::from(&t.sandbox));
            let pid = (t.supervisor_pid != 0).then_some(t.supervisor_pid);
            if let (Some(pid), Some(sandbox)) = (pid, sandbox.clone()) {
                live.push((key.0.clone(), key.1.clone(), pid, sandbox));
            } else if !state.is_terminal() && t.pending.iter().all(|p| p.state != task_state_to_proto(TaskState::Running) as i32) {
                // Recorded before its supervisor's pid was: whether it
                // started cannot be known. It is reported failed below.
                orphans.push((key.0.clone(), key.1.clone()));
            }
            self.tasks.insert(
                key,
                TaskRecord {
                    info,
                    state,
                    latest,
                    pending: t.pending.into_iter().collect(),
                    last_sent: None,
                    pid,
                    sandbox,
                    kill_requested: t.kill_requested,
                    kill_deadline: None,
                    killed_hard: false,
                    limitation: None,
                },
            );
        }
        for (framework, task) in orphans {
            let key = (framework, task);
            let mut ignored = Vec::new();
            self.update(&key, TaskState::Failed, "REASON_AGENT_RESTARTED", "the agent restarted before the task's supervisor was recorded", None, None, Duration::ZERO, 0.0, &mut ignored);
        }
        Ok(live)
    }

    /// What a task the agent holds was launched with.
    pub fn task_info(&self, framework: &FrameworkId, task: &TaskId) -> Option<v1::TaskInfo> {
        self.tasks.get(&(framework.clone(), task.clone())).map(|t| t.info.clone())
    }

    pub fn agent_id(&self) -> Option<&AgentId> {
        self.agent_id.as_ref()
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// True once a shutdown was asked for and every task has ended.
    pub fn is_drained(&self) -> bool {
        self.shutting_down && self.tasks.values().all(|t| t.pid.is_none() || t.state.is_terminal())
    }

    /// Tasks whose process still runs (for shutdown waits and tests).
    pub fn live_tasks(&self) -> usize {
        self.tasks.values().filter(|t| !t.state.is_terminal()).count()
    }

    /// The REGISTER message for a (re)connection: this agent's id, if it has
    /// one, and every task it still knows with its latest status.
    pub fn register_message(&self, info: v1::AgentInfo) -> v1::AgentMessage {
        register_message_of(&self.snapshot(), info)
    }

    /// The reservations and volumes this agent holds (validated).
    pub fn reservations(&self) -> (&[v1::ReservationInfo], &[v1::VolumeInfo]) {
        (&self.reservations, &self.volumes)
    }

    /// Volumes a live task mounts, as (role, id).
    fn mounted(&self) -> std::collections::BTreeSet<(Role, VolumeId)> {
        self.tasks
            .values()
            .filter(|t| !t.state.is_terminal() || t.pid.is_some())
            .flat_map(|t| {
                let role = task_role(&t.info);
                t.info.volumes.iter().filter_map(move |m| role.clone().map(|r| (r, VolumeId::new(m.volume_id.clone()))))
            })
            .collect()
    }

    /// A volume measured past its size: every live task that mounts it is
    /// killed and ends TASK_FAILED (REASON_CONTAINER_LIMITATION_DISK), as
    /// Mesos' disk isolator does when it enforces quotas.
    fn volume_usage(&mut self, role: &Role, volume: &VolumeId, used_mib: f64, now: Duration, out: &mut Vec<Effect>) {
        let Some(size) = self.volumes.iter().find(|v| v.role == role.as_str() && v.id == volume.as_str()).map(|v| v.size) else {
            return;
        };
        if used_mib <= size {
            return;
        }
        let users: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_terminal() && t.limitation.is_none())
            .filter(|(_, t)| task_role(&t.info).as_ref() == Some(role) && t.info.volumes.iter().any(|m| m.volume_id == volume.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in users {
            let message = format!("volume {volume} uses {used_mib:.1} MiB of its {size} MiB");
            tracing::warn!(framework_id = %key.0, task_id = %key.1, %message, "killing a task whose volume is past its size");
            if let Some(t) = self.tasks.get_mut(&key) {
                t.limitation = Some(message);
            }
            self.dirty = true;
            self.start_kill(&key, now, out);
        }
    }

    /// Deletes the volumes destroyed while in use that no task mounts now.
    fn destroy_unmounted(&mut self, out: &mut Vec<Effect>) {
        if self.destroy_when_unmounted.is_empty() {
            return;
        }
        let mounted = self.mounted();
        let free: Vec<_> = self.destroy_when_unmounted.iter().filter(|v| !mounted.contains(*v)).cloned().collect();
        for v in &free {
            self.destroy_when_unmounted.remove(v);
        }
        if !free.is_empty() {
            out.push(Effect::DestroyVolumes(free));
        }
    }

    fn checkpoint_resources(&mut self, msg: v1::broker_message::CheckpointResources, out: &mut Vec<Effect>) {
        if let Err(e) = convert::reservations_and_volumes_from_proto("checkpoint_resources", &msg.reservations, &msg.volumes) {
            tracing::error!(error = %e, "the broker sent reservations and volumes that do not add up; kept the old ones");
            return;
        }
        let key = |v: &v1::VolumeInfo| (Role::new(v.role.clone()), VolumeId::new(v.id.clone()));
        let old: std::collections::BTreeSet<_> = self.volumes.iter().map(key).collect();
        let new: std::collections::BTreeSet<_> = msg.volumes.iter().map(key).collect();
        let mounted = self.mounted();
        let volumes = msg.volumes;
        let mut destroyed = Vec::new();
        for gone in old.difference(&new) {
            if mounted.contains(gone) {
                // A task still uses it (its framework was torn down and the
                // kill is under way, say): the broker's list is the truth,
                // but the data goes only once the task has ended.
                tracing::warn!(role = %gone.0, volume_id = %gone.1, "volume destroyed while a task mounts it; its data goes when the task ends");
                self.destroy_when_unmounted.insert(gone.clone());
            } else {
                destroyed.push(gone.clone());
            }
        }
        // Created again before it was deleted: it stays.
        self.destroy_when_unmounted.retain(|v| !new.contains(v));
        let created: Vec<_> = new.difference(&old).cloned().collect();
        tracing::info!(reservations = msg.reservations.len(), volumes = volumes.len(), created = created.len(), destroyed = destroyed.len(), "reservations and volumes checkpointed");
        self.reservations = msg.reservations;
        self.volumes = volumes;
        if !created.is_empty() {
            out.push(Effect::CreateVolumes(created));
        }
        if !destroyed.is_empty() {
            out.push(Effect::DestroyVolumes(destroyed));
        }
    }

    pub fn tasks(&self) -> Vec<TaskView> {
        self.tasks.iter().map(|((f, t), r)| view(f, t, r)).chain(self.completed.iter().cloned()).collect()
    }

    /// Sandboxes of tasks that have not ended (never garbage-collected).
    pub fn live_sandboxes(&self) -> std::collections::HashSet<PathBuf> {
        self.tasks.values().filter(|t| !t.state.is_terminal() || t.pid.is_some()).filter_map(|t| t.sandbox.clone()).collect()
    }

    /// The sandbox of a task, live or recently completed, and the
    /// principal its framework belongs to (who may read it is decided by
    /// that).
    pub fn sandbox(&self, framework: &str, task: &str) -> Option<(PathBuf, String)> {
        let key = (FrameworkId::new(framework), TaskId::new(task));
        if let Some(t) = self.tasks.get(&key) {
            return t.sandbox.clone().map(|s| (s, t.info.principal.clone()));
        }
        self.completed
            .iter()
            .rev()
            .find(|c| c.framework_id == framework && c.task_id == task)
            .and_then(|c| c.sandbox.clone().map(|s| (s, c.principal.clone())))
    }

    pub fn handle(&mut self, input: Input, now: Duration, wall: f64) -> Vec<Effect> {
        let mut out = Vec::new();
        if !matches!(input, Input::Tick | Input::Disconnected | Input::VolumeUsage { .. } | Input::SyncVolume(_)) {
            self.dirty = true;
        }
        match input {
            Input::Registered { agent_id } => {
                tracing::info!(agent_id = %agent_id, tasks = self.tasks.len(), "registered with the broker");
                self.agent_id = Some(agent_id);
                self.registered = true;
                // Everything unacknowledged goes again, now.
                let keys: Vec<_> = self.tasks.keys().cloned().collect();
                for key in keys {
                    self.send_head(&key, now, &mut out);
                }
            }
            Input::Disconnected => self.registered = false,
            Input::CheckpointResources(msg) => self.checkpoint_resources(msg, &mut out),
            Input::VolumeUsage { role, volume, used_mib } => self.volume_usage(&role, &volume, used_mib, now, &mut out),
            Input::SyncVolume(msg) => out.push(Effect::SyncVolume(msg)),
            Input::RunTask { framework, task } => self.run_task(&framework, *task, now, wall, &mut out),
            Input::KillTask { framework, task } => self.kill_task(&framework, &task, now, wall, &mut out),
            Input::Acknowledge { framework, task, uuid } => self.acknowledge(&framework, &task, &uuid, now, &mut out),
            Input::Spawned { framework, task, pid, sandbox, message } => {
                let key = (framework.clone(), task.clone());
                let grace = self.grace(&key);
                let Some(t) = self.tasks.get_mut(&key) else { return out };
                t.pid = Some(pid);
                t.sandbox = Some(sandbox);
                tracing::info!(framework_id = %framework, task_id = %task, pid, "task started");
                if t.kill_requested {
                    // Killed before it even started: carry the kill out now.
                    t.kill_deadline = Some(now + grace);
                    out.push(Effect::Signal { framework, task, pid, signal: Signal::Term });
                } else {
                    self.update(&key, TaskState::Running, "", &message, None, None, now, wall, &mut out);
                }
            }
            Input::SpawnFailed { framework, task, error } => {
                let key = (framework, task);
                let message = format!("could not start the command: {error}");
                self.update(&key, TaskState::Failed, "REASON_EXECUTOR_TERMINATED", &message, None, None, now, wall, &mut out);
            }
            Input::Exited { framework, task, code, signal, limitation } => {
                let key = (framework.clone(), task.clone());
                let Some(t) = self.tasks.get_mut(&key) else { return out };
                t.pid = None;
                t.kill_deadline = None;
                let killed = t.kill_requested;
                let over_disk = t.limitation.clone();
                tracing::info!(framework_id = %framework, task_id = %task, ?code, ?signal, "task exited");
                let (state, reason, message) = match (code, signal) {
                    _ if over_disk.is_some() => {
                        (TaskState::Failed, "REASON_CONTAINER_LIMITATION_DISK", over_disk.clone().unwrap_or_default())
                    }
                    _ if killed => (TaskState::Killed, "REASON_TASK_KILLED", "Task killed".to_owned()),
                    _ if limitation.is_some() => (
                        TaskState::Failed,
                        "REASON_CONTAINER_LIMITATION_MEMORY",
                        limitation.clone().unwrap_or_default(),
                    ),
                    (Some(0), _) => (TaskState::Finished, "REASON_COMMAND_EXITED", "Command exited with status 0".to_owned()),
                    (Some(c), _) => (TaskState::Failed, "REASON_COMMAND_EXITED", format!("Command exited with status {c}")),
                    (None, Some(s)) => (TaskState::Failed, "REASON_COMMAND_EXITED", format!("Command terminated by signal {s}")),
                    (None, None) => (TaskState::Failed, "REASON_EXECUTOR_TERMINATED", "Command ended with an unknown status".to_owned()),
                };
                let (exit_code, sig) = if killed || over_disk.is_some() { (None, None) } else { (code, signal) };
                self.update(&key, state, reason, &message, exit_code, sig, now, wall, &mut out);
                self.destroy_unmounted(&mut out);
            }
            Input::Tick => self.tick(now, &mut out),
            Input::Barrier => {}
            Input::Shutdown => {
                self.shutting_down = true;
                let keys: Vec<_> = self.tasks.keys().cloned().collect();
                for key in keys {
                    self.start_kill(&key, now, &mut out);
                }
            }
        }
        out
    }

    fn grace(&self, key: &(FrameworkId, TaskId)) -> Duration {
        self.tasks
            .get(key)
            .map(|t| t.info.kill_grace_seconds)
            .filter(|g| g.is_finite() && *g > 0.0)
            .map(|g| Duration::from_secs_f64(g.min(3600.0)))
            .unwrap_or(self.settings.kill_grace_period)
    }

    fn run_task(&mut self, framework: &str, info: v1::TaskInfo, now: Duration, wall: f64, out: &mut Vec<Effect>) {
        let framework_id = FrameworkId::new(framework);
        let task_id = TaskId::new(info.task_id.clone());
        let problem = self.check_task(framework, &info);
        if self.tasks.get(&(framework_id.clone(), task_id.clone())).is_some_and(|t| !t.state.is_terminal()) {
            // Do not disturb the live task: answer on a separate record is
            // impossible (same key), so just report through the log. The
            // broker never sends a duplicate of a live task.
            tracing::warn!(framework_id = %framework, task_id = %task_id, "duplicate launch of a live task ignored");
            return;
        }
        if problem.is_none() && self.shutting_down {
            return self.reject(framework_id, task_id, info, "the agent is shutting down", now, wall, out);
        }
        if let Some(problem) = problem {
            return self.reject(framework_id, task_id, info, &problem, now, wall, out);
        }
        let key = (framework_id.clone(), task_id.clone());
        // The secrets go to the launcher only: the record (so the
        // checkpoint, `/state` and what the agent reports when it
        // re-registers) never holds them. A task is never started again
        // from its record.
        let mut kept = info.clone();
        kept.secrets.clear();
        self.tasks.insert(key.clone(), new_record(kept, &framework_id, wall));
        tracing::info!(framework_id = %framework_id, task_id = %task_id, "launching task");
        self.update(&key, TaskState::Starting, "", "", None, None, now, wall, out);
        out.push(Effect::Spawn { framework: framework_id, task: task_id, info: Box::new(info) });
    }

    fn check_task(&self, framework: &str, info: &v1::TaskInfo) -> Option<String> {
        if let Err(e) = weir_model::ids::validate_id("framework_id", framework) {
            return Some(e);
        }
        if let Err(e) = weir_model::ids::validate_id("task_id", &info.task_id) {
            return Some(e);
        }
        let Some(command) = &info.command else { return Some("task has no command".to_owned()) };
        let program = if command.shell { &command.value } else { command.arguments.first().unwrap_or(&command.value) };
        if program.trim().is_empty() {
            return Some("task command is empty".to_owned());
        }
        if command.value.contains('\0') || command.arguments.iter().any(|a| a.contains('\0')) {
            return Some("task command contains a NUL byte".to_owned());
        }
        if let Err(e) = convert::resources_from_proto("task.resources", &info.resources) {
            return Some(e.to_string());
        }
        if let Err(e) = convert::check_secrets("task.secrets", &info.secrets) {
            return Some(e.to_string());
        }
        match convert::mounts_from_proto("task.volumes", &info.volumes) {
            Err(e) => return Some(e.to_string()),
            Ok(mounts) => {
                let role = task_role(info);
                for m in mounts {
                    if m.container_path.is_empty() {
                        return Some(format!("task mounts volume {} with no container_path", m.volume));
                    }
                    let held = role.as_ref().is_some_and(|r| {
                        self.volumes.iter().any(|v| v.role == r.as_str() && v.id == m.volume.as_str())
                    });
                    if !held {
                        return Some(format!("task mounts volume {}, which this agent does not hold for the task's role", m.volume));
                    }
                }
            }
        }
        None
    }

    /// A launch that cannot run: TASK_ERROR on a record of its own, so the
    /// update is delivered and acknowledged like any other.
    #[allow(clippy::too_many_arguments)]
    fn reject(&mut self, framework: FrameworkId, task: TaskId, info: v1::TaskInfo, message: &str, now: Duration, wall: f64, out: &mut Vec<Effect>) {
        tracing::warn!(framework_id = %framework, task_id = %task, message, "refusing task");
        if weir_model::ids::validate_id("task_id", task.as_str()).is_err()
            || weir_model::ids::validate_id("framework_id", framework.as_str()).is_err()
        {
            // Cannot be keyed or acknowledged safely; the broker validates
            // ids before sending, so this is only reachable by a bad broker.
            return;
        }
        let key = (framework.clone(), task);
        let mut info = info;
        info.secrets.clear();
        self.tasks.insert(key.clone(), new_record(info, &framework, wall));
        self.update(&key, TaskState::Error, "REASON_TASK_INVALID", message, None, None, now, wall, out);
    }

    fn kill_task(&mut self, framework: &str, task: &str, now: Duration, wall: f64, out: &mut Vec<Effect>) {
        let key = (FrameworkId::new(framework), TaskId::new(task));
        match self.tasks.get(&key) {
            Some(t) if !t.state.is_terminal() => {
                tracing::info!(framework_id = %framework, task_id = %task, "killing task");
                self.start_kill(&key, now, out);
            }
            Some(_) => {}
            None => {
                if weir_model::ids::validate_id("task_id", task).is_err() || weir_model::ids::validate_id("framework_id", framework).is_err() {
                    return;
                }
                let info = v1::TaskInfo { task_id: task.to_owned(), ..Default::default() };
                self.tasks.insert(key.clone(), new_record(info, &key.0, wall));
                self.update(&key, TaskState::Dropped, "REASON_RECONCILIATION", "unknown task", None, None, now, wall, out);
            }
        }
    }

    fn start_kill(&mut self, key: &(FrameworkId, TaskId), now: Duration, out: &mut Vec<Effect>) {
        let grace = self.grace(key);
        let Some(t) = self.tasks.get_mut(key) else { return };
        if t.state.is_terminal() || t.kill_requested {
            return;
        }
        t.kill_requested = true;
        if let Some(pid) = t.pid {
            t.kill_deadline = Some(now + grace);
            out.push(Effect::Signal { framework: key.0.clone(), task: key.1.clone(), pid, signal: Signal::Term });
        }
        // Not spawned yet: the kill is carried out when it is.
    }

    fn acknowledge(&mut self, framework: &str, task: &str, uuid: &[u8], now: Duration, out: &mut Vec<Effect>) {
        let key = (FrameworkId::new(framework), TaskId::new(task));
        let Some(t) = self.tasks.get_mut(&key) else {
            tracing::debug!(framework_id = %framework, task_id = %task, "acknowledgement for an unknown task ignored");
            return;
        };
        if t.pending.front().is_none_or(|head| head.uuid != uuid) {
            tracing::debug!(framework_id = %framework, task_id = %task, "stale acknowledgement ignored");
            return;
        }
        t.pending.pop_front();
        t.last_sent = None;
        if t.pending.is_empty() && t.state.is_terminal() && t.pid.is_none() {
            if let Some(record) = self.tasks.remove(&key) {
                self.completed.push_back(view(&key.0, &key.1, &record));
                while self.completed.len() > COMPLETED_KEPT {
                    self.completed.pop_front();
                }
            }
            return;
        }
        self.send_head(&key, now, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        key: &(FrameworkId, TaskId),
        state: TaskState,
        reason: &str,
        message: &str,
        exit_code: Option<i32>,
        signal: Option<i32>,
        now: Duration,
        wall: f64,
        out: &mut Vec<Effect>,
    ) {
        self.counter += 1;
        let mut uuid = self.nonce.to_vec();
        uuid.extend_from_slice(&self.counter.to_be_bytes());
        let status = v1::TaskStatus {
            task_id: key.1.to_string(),
            state: task_state_to_proto(state) as i32,
            message: message.to_owned(),
            reason: reason.to_owned(),
            source: v1::task_status::Source::Agent as i32,
            agent_id: self.agent_id.as_ref().map(|a| a.to_string()).unwrap_or_default(),
            framework_id: key.0.to_string(),
            timestamp: wall,
            uuid,
            exit_code,
            signal,
        };
        let Some(t) = self.tasks.get_mut(key) else { return };
        t.state = state;
        t.latest = status.clone();
        t.pending.push_back(status);
        if t.pending.len() == 1 {
            self.send_head(key, now, out);
        }
    }

    fn send_head(&mut self, key: &(FrameworkId, TaskId), now: Duration, out: &mut Vec<Effect>) {
        if !self.registered {
            return;
        }
        let agent_id = self.agent_id.as_ref().map(|a| a.to_string()).unwrap_or_default();
        let Some(t) = self.tasks.get_mut(key) else { return };
        let Some(head) = t.pending.front_mut() else { return };
        head.agent_id = agent_id;
        t.last_sent = Some(now);
        out.push(Effect::Send(v1::AgentMessage {
            kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate { status: Some(head.clone()) })),
        }));
    }

    fn tick(&mut self, now: Duration, out: &mut Vec<Effect>) {
        let retry = self.settings.status_update_retry_interval;
        let due: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| !t.pending.is_empty() && t.last_sent.is_none_or(|at| now.saturating_sub(at) >= retry))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.send_head(&key, now, out);
        }
        // A kill under way when the agent restarted: its deadline died with
        // the old process (and the TERM may never have been sent), so a task
        // that ignores TERM would run on forever. Start the kill over.
        let unfinished: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.kill_requested && t.pid.is_some() && t.kill_deadline.is_none() && !t.state.is_terminal())
            .map(|(k, _)| k.clone())
            .collect();
        for key in unfinished {
            let grace = self.grace(&key);
            let Some(t) = self.tasks.get_mut(&key) else { continue };
            let Some(pid) = t.pid else { continue };
            tracing::info!(framework_id = %key.0, task_id = %key.1, pid, "kill interrupted by a restart; SIGTERM again");
            t.kill_deadline = Some(now + grace);
            out.push(Effect::Signal { framework: key.0.clone(), task: key.1.clone(), pid, signal: Signal::Term });
        }
        for (key, t) in self.tasks.iter_mut() {
            if let (Some(deadline), Some(pid)) = (t.kill_deadline, t.pid) {
                if now >= deadline && !t.killed_hard {
                    t.killed_hard = true;
                    tracing::info!(framework_id = %key.0, task_id = %key.1, pid, "grace period over; SIGKILL");
                    out.push(Effect::Signal { framework: key.0.clone(), task: key.1.clone(), pid, signal: Signal::Kill });
                }
            }
        }
    }
}

/// The role a task's resources are reserved for, if any.
fn task_role(info: &v1::TaskInfo) -> Option<Role> {
    info.resources.iter().find(|r| !r.role.is_empty() && r.role != "*").map(|r| Role::new(r.role.clone()))
}

/// The REGISTER message that a checkpoint stands for. The shell builds it
/// from the last checkpoint written, so the broker is never told of a task
/// or a state that a crash would make the agent forget.
pub fn register_message_of(checkpoint: &v1::AgentCheckpoint, info: v1::AgentInfo) -> v1::AgentMessage {
    let mut info = info;
    info.id = checkpoint.agent_id.clone();
    let tasks = checkpoint
        .tasks
        .iter()
        .map(|t| v1::RunningTask { framework_id: t.framework_id.clone(), task: t.info.clone(), latest: t.latest.clone() })
        .collect();
    v1::AgentMessage { kind: Some(v1::agent_message::Kind::Register(v1::agent_message::Register {
        agent: Some(info),
        tasks,
        reservations: checkpoint.reservations.clone(),
        volumes: checkpoint.volumes.clone(),
    })) }
}

fn new_record(info: v1::TaskInfo, framework: &FrameworkId, wall: f64) -> TaskRecord {
    let latest = v1::TaskStatus {
        task_id: info.task_id.clone(),
        state: task_state_to_proto(TaskState::Staging) as i32,
        framework_id: framework.to_string(),
        timestamp: wall,
        ..Default::default()
    };
    TaskRecord {
        info,
        state: TaskState::Staging,
        latest,
        pending: VecDeque::new(),
        last_sent: None,
        pid: None,
        sandbox: None,
        kill_requested: false,
        kill_deadline: None,
        killed_hard: false,
        limitation: None,
    }
}

fn view(framework: &FrameworkId, task: &TaskId, t: &TaskRecord) -> TaskView {
    TaskView {
        framework_id: framework.to_string(),
        principal: t.info.principal.clone(),
        task_id: task.to_string(),
        name: t.info.name.clone(),
        state: t.state.name().to_owned(),
        pid: t.pid,
        sandbox: t.sandbox.clone(),
        exit_code: t.latest.exit_code,
        signal: t.latest.signal,
        message: t.latest.message.clone(),
        unacknowledged_updates: t.pending.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);
    const RETRY: Duration = Duration::from_secs(2);

    fn core() -> AgentCore {
        let mut c = AgentCore::new(CoreSettings { kill_grace_period: GRACE, status_update_retry_interval: RETRY }, [7; 8]);
        c.handle(Input::Registered { agent_id: AgentId::new("A1") }, Duration::ZERO, 0.0);
        c
    }

    fn task(id: &str) -> Box<v1::TaskInfo> {
        Box::new(v1::TaskInfo {
            task_id: id.into(),
            command: Some(v1::CommandInfo { shell: true, value: "true".into(), ..Default::default() }),
            ..Default::default()
        })
    }

    fn sent(effects: &[Effect]) -> Vec<(String, TaskState, Vec<u8>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(v1::AgentMessage { kind: Some(v1::agent_message::Kind::StatusUpdate(u)) }) => {
                    let s = u.status.as_ref().unwrap();
                    let state = weir_proto::convert::task_state_from_proto("s", s.state).unwrap();
                    Some((s.task_id.clone(), state, s.uuid.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn fw() -> FrameworkId {
        FrameworkId::new("F1")
    }

    fn ack(c: &mut AgentCore, task: &str, uuid: &[u8], now: Duration) -> Vec<Effect> {
        c.handle(Input::Acknowledge { framework: "F1".into(), task: task.into(), uuid: uuid.to_vec() }, now, 0.0)
    }

    #[test]
    fn updates_go_in_order_one_at_a_time_until_acknowledged() {
        let mut c = core();
        let t0 = Duration::ZERO;
        let out = c.handle(Input::RunTask { framework: "F1".into(), task: task("t") }, t0, 0.0);
        let starting = sent(&out);
        assert_eq!(starting.len(), 1);
        assert_eq!(starting[0].1, TaskState::Starting);
        assert!(out.iter().any(|e| matches!(e, Effect::Spawn { .. })));

        // RUNNING and FINISHED happen before STARTING is acknowledged: they
        // wait their turn.
        let out = c.handle(Input::Spawned { framework: fw(), task: "t".into(), pid: 42, sandbox: "/s".into(), message: String::new() }, t0, 0.0);
        assert!(sent(&out).is_empty());
        let out = c.handle(Input::Exited { framework: fw(), task: "t".into(), code: Some(0), signal: None, limitation: None }, t0, 0.0);
        assert!(sent(&out).is_empty());

        // A stale acknowledgement changes nothing.
        assert!(ack(&mut c, "t", b"nope", t0).is_empty());
        // The retry interval resends the head, with the same uuid.
        assert!(sent(&c.handle(Input::Tick, Duration::from_secs(1), 0.0)).is_empty());
        let again = sent(&c.handle(Input::Tick, RETRY, 0.0));
        assert_eq!(again, starting);

        let running = sent(&ack(&mut c, "t", &starting[0].2, RETRY));
        assert_eq!(running[0].1, TaskState::Running);
        let finished = sent(&ack(&mut c, "t", &running[0].2, RETRY));
        assert_eq!(finished[0].1, TaskState::Finished);
        assert_ne!(finished[0].2, running[0].2, "every update has its own uuid");
        assert_eq!(c.live_tasks(), 0);
        ack(&mut c, "t", &finished[0].2, RETRY);
        // Acknowledged terminal task: moved to the completed list.
        assert_eq!(c.tasks()[0].state, "TASK_FINISHED");
        assert_eq!(c.tasks()[0].unacknowledged_updates, 0);
        assert!(sent(&c.handle(Input::Tick, RETRY * 10, 0.0)).is_empty());
    }

    #[test]
    fn secrets_reach_the_launcher_only() {
        let mut c = core();
        let mut info = task("t");
        info.secrets = vec![v1::Secret { name: "key".into(), value: b"s3cr3t".to_vec() }];
        let out = c.handle(Input::RunTask { framework: "F1".into(), task: info }, Duration::ZERO, 0.0);
        let spawned = out.iter().find_map(|e| match e {
            Effect::Spawn { info, .. } => Some(info.clone()),
            _ => None,
        });
        assert_eq!(spawned.expect("spawned").secrets.len(), 1, "the launcher gets them");
        // Kept nowhere else: not in the checkpoint, its REGISTER, or what
        // the agent holds of the task.
        let checkpoint = c.checkpoint();
        assert!(checkpoint.tasks.iter().all(|t| t.info.as_ref().is_some_and(|i| i.secrets.is_empty())));
        assert_eq!(checkpoint.tasks.len(), 1);
        let register = prost::Message::encode_to_vec(&register_message_of(&checkpoint, v1::AgentInfo::default()));
        assert!(!register.windows(6).any(|w| w == b"s3cr3t"));
        assert!(c.task_info(&fw(), &TaskId::new("t")).unwrap().secrets.is_empty());
        // A refused task's record holds none either.
        let mut bad = task("u");
        bad.secrets = vec![v1::Secret { name: "../key".into(), value: b"s3cr3t".to_vec() }];
        let out = c.handle(Input::RunTask { framework: "F1".into(), task: bad }, Duration::ZERO, 0.0);
        assert!(!out.iter().any(|e| matches!(e, Effect::Spawn { .. })));
        assert_eq!(sent(&out)[0].1, TaskState::Error);
        assert!(c.checkpoint().tasks.iter().all(|t| t.info.as_ref().is_some_and(|i| i.secrets.is_empty())));
    }

    #[test]
    fn exit_codes_and_signals_map_to_states() {
        for (code, signal, state, message) in [
            (Some(0), None, TaskState::Finished, "Command exited with status 0"),
            (Some(3), None, TaskState::Failed, "Command exited with status 3"),
            (None, Some(9), TaskState::Failed, "Command terminated by signal 9"),
        ] {
            let mut c = core();
            c.handle(Input::RunTask { framework: "F1".into(), task: task("t") }, Duration::ZERO, 0.0);
            c.handle(Input::Spawned { framework: fw(), task: "t".into(), pid: 1, sandbox: "/s".into(), message: String::new() }, Duration::ZERO, 0.0);
            c.handle(Input::Exited { framework: fw(), task: "t".into(), code, signal, limitation: None }, Duration::ZERO, 0.0);
            let view = &c.tasks()[0];
            assert_eq!((view.state.as_str(), view.message.as_str()), (state.name(), message));
            assert_eq!((view.exit_code, view.signal), (code.filter(|c| *c != 0).or(code), signal));
        }
    }

    #[test]
    fn kill_is_term_then_kill_at_the_grace_deadline() {
        let mut c = core();
        let t0 = Duration::from_secs(100);
        c.handle(Input::RunTask { framework: "F1".into(), task: task("t") }, t0, 0.0);
        c.handle(Input::Spawned { framework: fw(), task: "t".into(), pid: 42, sandbox: "/s".into(), message: String::new() }, t0, 0.0);
        let out = c.handle(Input::KillTask { framework: "F1".into(), task: "t".into() }, t0, 0.0);
        assert_eq!(out, vec![Effect::Signal { framework: fw(), task: "t".into(), pid: 42, signal: Signal::Term }]);
        let out = c.handle(Input::Tick, t0 + GRACE - Duration::from_millis(1), 0.0);
        assert!(!out.iter().any(|e| matches!(e, Effect::Signal { .. })));
        let out = c.handle(Input::Tick, t0 + GRACE, 0.0);
        assert!(out.contains(&Effect::Signal { framework: fw(), task: "t".into(), pid: 42, signal: Signal::Kill }));
        // Only once.
        let out = c.handle(Input::Tick, t0 + GRACE * 2, 0.0);
        assert!(!out.iter().any(|e| matches!(e, Effect::Signal { .. })));
        c.handle(Input::Exited { framework: fw(), task: "t".into(), code: None, signal: Some(9), limitation: None }, t0 + GRACE, 0.0);
        assert_eq!(c.tasks()[0].state, "TASK_KILLED");
    }

    #[test]
    fn a_kill_interrupted_by_a_restart_starts_over_after_recovery() {
        let mut c = core();
        let t0 = Duration::from_secs(10);
        c.handle(Input::RunTask { framework: "F1".into(), task: task("t") }, t0, 0.0);
        c.handle(Input::Spawned { framework: fw(), task: "t".into(), pid: 42, sandbox: "/s".into(), message: String::new() }, t0, 0.0);
        c.handle(Input::KillTask { framework: "F1".into(), task: "t".into() }, t0, 0.0);
        // The agent dies before the grace period is over; the task ignores
        // TERM and keeps running under its supervisor.
        let mut restarted = AgentCore::new(CoreSettings { kill_grace_period: GRACE, status_update_retry_interval: RETRY }, [8; 8]);
        let live = restarted.recover(c.checkpoint()).unwrap();
        assert_eq!(live.len(), 1);
        restarted.handle(Input::Registered { agent_id: AgentId::new("A1") }, Duration::ZERO, 0.0);
        let signals = |out: &[Effect]| out.iter().filter_map(|e| match e { Effect::Signal { signal, .. } => Some(*signal), _ => None }).collect::<Vec<_>>();
        assert_eq!(signals(&restarted.handle(Input::Tick, Duration::ZERO, 0.0)), vec![Signal::Term], "the kill starts over");
        assert!(signals(&restarted.handle(Input::Tick, Duration::from_millis(1), 0.0)).is_empty(), "once");
        assert_eq!(signals(&restarted.handle(Input::Tick, GRACE, 0.0)), vec![Signal::Kill], "then KILL at the deadline");
    }

    #[test]
    fn bad_launches_get_task_error_without_spawning() {
        let mut c = core();
        let mut no_command = task("t");
        no_command.command = None;
        let out = c.handle(Input::RunTask { framework: "F1".into(), task: no_command }, Duration::ZERO, 0.0);
        assert!(!out.iter().any(|e| matches!(e, Effect::Spawn { .. })));
        assert_eq!(sent(&out)[0].1, TaskState::Error);
        assert_eq!(c.tasks()[0].message, "task has no command");
        let out = c.handle(Input::SpawnFailed { framework: fw(), task: "x".into(), error: "nope".into() }, Duration::ZERO, 0.0);
        assert!(out.is_empty(), "a spawn failure for an unknown task is ignored");
    }

    #[test]
    fn unknown_kill_is_answered_with_dropped() {
        let mut c = core();
        let out = c.handle(Input::KillTask { framework: "F1".into(), task: "ghost".into() }, Duration::ZERO, 0.0);
        assert_eq!(sent(&out)[0].1, TaskState::Dropped);
    }

    #[test]
    fn nothing_is_sent_while_disconnected_and_all_is_resent_on_registration() {
        let mut c = core();
        c.handle(Input::Disconnected, Duration::ZERO, 0.0);
        let out = c.handle(Input::RunTask { framework: "F1".into(), task: task("t") }, Duration::ZERO, 0.0);
        assert!(sent(&out).is_empty());
        assert!(sent(&c.handle(Input::Tick, RETRY * 5, 0.0)).is_empty());
        // The re-registration message carries the task and the same id.
        let msg = c.register_message(v1::AgentInfo::default());
        let Some(v1::agent_message::Kind::Register(reg)) = msg.kind else { panic!() };
        assert_eq!(reg.agent.unwrap().id, "A1");
        assert_eq!(reg.tasks.len(), 1);
        let out = c.handle(Input::Registered { agent_id: AgentId::new("A1") }, RETRY * 5, 0.0);
        assert_eq!(sent(&out)[0].1, TaskState::Starting);
    }

    #[test]
    fn shutdown_kills_every_task_and_refuses_new_ones() {
        let mut c = core();
        for t in ["a", "b"] {
            c.handle(Input::RunTask { framework: "F1".into(), task: task(t) }, Duration::ZERO, 0.0);
            c.handle(Input::Spawned { framework: fw(), task: t.into(), pid: 10, sandbox: "/s".into(), message: String::new() }, Duration::ZERO, 0.0);
        }
        let out = c.handle(Input::Shutdown, Duration::ZERO, 0.0);
        assert_eq!(out.iter().filter(|e| matches!(e, Effect::Signal { signal: Signal::Term, .. })).count(), 2);
        assert!(!c.is_drained());
        let out = c.handle(Input::RunTask { framework: "F1".into(), task: task("late") }, Duration::ZERO, 0.0);
        assert!(!out.iter().any(|e| matches!(e, Effect::Spawn { .. })));
        for t in ["a", "b"] {
            c.handle(Input::Exited { framework: fw(), task: t.into(), code: None, signal: Some(15), limitation: None }, Duration::ZERO, 0.0);
        }
        assert!(c.is_drained());
    }

    fn resources_message(volumes: &[(&str, f64)]) -> v1::broker_message::CheckpointResources {
        v1::broker_message::CheckpointResources {
            reservations: vec![v1::ReservationInfo {
                id: "r1".into(),
                role: "db".into(),
                resources: convert::resources_to_proto(&weir_model::ResourceSet::parse("cpus:1;disk:100").unwrap()),
                ..Default::default()
            }],
            volumes: volumes
                .iter()
                .map(|(id, size)| v1::VolumeInfo {
                    id: (*id).into(),
                    role: "db".into(),
                    reservation_id: "r1".into(),
                    size: *size,
                    container_path: "data".into(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn volumes_are_checkpointed_reported_and_never_deleted_under_a_task() {
        let mut c = core();
        let t0 = Duration::ZERO;
        let out = c.handle(Input::CheckpointResources(resources_message(&[("data", 50.0)])), t0, 0.0);
        assert_eq!(out, vec![Effect::CreateVolumes(vec![(Role::new("db"), VolumeId::new("data"))])]);
        assert!(c.is_dirty());
        let checkpoint = c.checkpoint();
        assert_eq!(checkpoint.volumes.len(), 1);
        // A restarted agent reports them when it registers.
        let mut restarted = AgentCore::new(CoreSettings { kill_grace_period: GRACE, status_update_retry_interval: RETRY }, [8; 8]);
        restarted.recover(checkpoint.clone()).unwrap();
        let Some(v1::agent_message::Kind::Register(reg)) = restarted.register_message(v1::AgentInfo::default()).kind else { panic!() };
        assert_eq!((reg.reservations.len(), reg.volumes.len()), (1, 1));
        // A task may mount only what the agent holds.
        let mut t = task("uses");
        t.resources = convert::resources_to_proto(&weir_model::ResourceSet::parse("cpus(db):1;disk(db):50").unwrap());
        t.volumes.push(v1::VolumeMount { volume_id: "other".into(), container_path: "d".into(), read_only: false });
        let out = c.handle(Input::RunTask { framework: "F1".into(), task: t.clone() }, t0, 0.0);
        assert_eq!(sent(&out)[0].1, TaskState::Error);
        t.task_id = "uses2".into();
        t.volumes[0].volume_id = "data".into();
        let out = c.handle(Input::RunTask { framework: "F1".into(), task: t }, t0, 0.0);
        assert!(out.iter().any(|e| matches!(e, Effect::Spawn { .. })));
        // Destroyed while a task mounts it (a torn-down framework's task
        // still being killed): the list follows the broker, the data stays
        // until the task has ended.
        let out = c.handle(Input::CheckpointResources(resources_message(&[])), t0, 0.0);
        assert!(!out.iter().any(|e| matches!(e, Effect::DestroyVolumes(_))));
        assert!(c.reservations().1.is_empty());
        c.handle(Input::Spawned { framework: fw(), task: "uses2".into(), pid: 9, sandbox: "/s".into(), message: String::new() }, t0, 0.0);
        let out = c.handle(Input::Exited { framework: fw(), task: "uses2".into(), code: Some(0), signal: None, limitation: None }, t0, 0.0);
        assert!(out.contains(&Effect::DestroyVolumes(vec![(Role::new("db"), VolumeId::new("data"))])), "{out:?}");
        // Books that do not add up are refused whole.
        let out = c.handle(Input::CheckpointResources(resources_message(&[("big", 500.0)])), t0, 0.0);
        assert!(out.is_empty());
        assert!(c.reservations().1.is_empty());
    }

    #[test]
    fn a_task_whose_volume_grows_past_its_size_fails_with_the_reason() {
        let mut c = core();
        let t0 = Duration::ZERO;
        c.handle(Input::CheckpointResources(resources_message(&[("data", 50.0)])), t0, 0.0);
        let mut t = task("writer");
        t.resources = convert::resources_to_proto(&weir_model::ResourceSet::parse("cpus(db):1;disk(db):50").unwrap());
        t.volumes.push(v1::VolumeMount { volume_id: "data".into(), container_path: "d".into(), read_only: false });
        c.handle(Input::RunTask { framework: "F1".into(), task: t }, t0, 0.0);
        c.handle(Input::Spawned { framework: fw(), task: "writer".into(), pid: 9, sandbox: "/s".into(), message: String::new() }, t0, 0.0);
        let usage = |used| Input::VolumeUsage { role: Role::new("db"), volume: VolumeId::new("data"), used_mib: used };
        c.checkpoint();
        assert!(c.handle(usage(50.0), t0, 0.0).is_empty(), "within its size: nothing happens");
        assert!(!c.is_dirty(), "a measurement alone is not worth a checkpoint write");
        let out = c.handle(usage(64.5), t0, 0.0);
        assert!(out.contains(&Effect::Signal { framework: fw(), task: "writer".into(), pid: 9, signal: Signal::Term }), "{out:?}");
        assert!(c.handle(usage(70.0), t0, 0.0).is_empty(), "killed once");
        c.handle(Input::Exited { framework: fw(), task: "writer".into(), code: None, signal: Some(15), limitation: None }, t0, 0.0);
        let latest = &c.tasks[&(fw(), TaskId::new("writer"))].latest;
        assert_eq!(latest.state, task_state_to_proto(TaskState::Failed) as i32);
        assert_eq!(latest.reason, "REASON_CONTAINER_LIMITATION_DISK");
        assert_eq!(latest.message, "volume data uses 64.5 MiB of its 50 MiB");
    }
}
