//! ACCEPT: turning offers into tasks.
//!
//! Validation happens in two layers, as in Mesos:
//! - the offers: each must exist and belong to the caller, all on one agent
//!   and in one role. If any fails, no task runs: each gets TASK_DROPPED and
//!   the valid offers' resources go back to the allocator;
//! - each task: id, uniqueness, agent, command and resources that fit in
//!   what is left of the offers. A bad task gets TASK_ERROR and takes
//!   nothing; the good ones run.
//!
//! Resource operations (RESERVE, UNRESERVE, CREATE, DESTROY, GROW, SHRINK;
//! see `reservations.rs`) are applied in order with the launches: a task
//! after a CREATE can mount the new volume. Each gets an OperationStatus;
//! with bad offers they all fail.
//!
//! Whatever the launched tasks do not use goes back to the allocator, with a
//! filter for the accept's `refuse_seconds` (Mesos applies it to accepts too,
//! so a framework is not immediately re-offered the crumbs it left).

use std::collections::BTreeSet;
use std::time::Duration;

use weir_model::{AgentId, FrameworkId, Milli, ResourceSet, Role, TaskId, TaskState, VolumeId};
use weir_proto::convert::{self, task_state_to_proto};
use weir_proto::v1;

use super::reservations::Actor;
use super::{agent_message, broker_status, refuse_duration, BrokerCore, ConnId, Output, Task};

const MAX_TASKS_PER_ACCEPT: usize = 10_000;
/// The most operations (of every kind) in one ACCEPT or operator call.
pub(super) const MAX_OPERATIONS_PER_ACCEPT: usize = 1_000;

/// A task that passed its checks: what it takes and which volumes it mounts.
struct CheckedTask {
    resources: ResourceSet,
    volumes: Vec<VolumeId>,
    volume_disk: Milli,
    info: v1::TaskInfo,
}
const MAX_COMMAND_BYTES: usize = 1 << 20;

impl BrokerCore {
    pub(super) fn accept(
        &mut self,
        conn: ConnId,
        framework: &FrameworkId,
        accept: &v1::call::Accept,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let tasks: Vec<&v1::TaskInfo> = accept
            .operations
            .iter()
            .flat_map(|op| match &op.kind {
                Some(v1::operation::Kind::Launch(launch)) => launch.tasks.iter().collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        let refuse = match refuse_duration(accept.filters.as_ref(), self.settings.refuse_default) {
            Ok(r) => r,
            Err(message) => {
                self.call_error(conn, &format!("ACCEPT refused: {message}"), out);
                return;
            }
        };
        if tasks.len() > MAX_TASKS_PER_ACCEPT {
            self.call_error(conn, &format!("ACCEPT refused: more than {MAX_TASKS_PER_ACCEPT} tasks"), out);
            return;
        }
        if accept.operations.len() > MAX_OPERATIONS_PER_ACCEPT {
            self.call_error(conn, &format!("ACCEPT refused: more than {MAX_OPERATIONS_PER_ACCEPT} operations"), out);
            return;
        }
        let resource_ops = accept.operations.iter().filter(|op| !matches!(op.kind, Some(v1::operation::Kind::Launch(_))));

        // Layer 1: the offers.
        let mut offer_error: Option<String> = None;
        let mut valid: Vec<super::OfferKey> = Vec::new();
        let mut seen = BTreeSet::new();
        for raw in &accept.offer_ids {
            if !seen.insert(raw.as_str()) {
                offer_error.get_or_insert(format!("offer {raw} is named twice"));
                continue;
            }
            let key = self.offer_key(raw);
            match key.and_then(|k| self.offers.get(&k)) {
                None => {
                    offer_error.get_or_insert(format!("offer {raw} is no longer valid (used, declined, rescinded or timed out)"));
                }
                Some(offer) if &offer.framework != framework => {
                    offer_error.get_or_insert(format!("offer {raw} belongs to another framework"));
                }
                Some(_) => valid.extend(key),
            }
        }
        if accept.offer_ids.is_empty() {
            offer_error = Some("ACCEPT names no offers".to_owned());
        }
        let agent: Option<(AgentId, Role)> = valid.first().and_then(|id| self.offers.get(id)).map(|o| (o.agent.clone(), o.role.clone()));
        // Revocable offers are accepted on their own: a task is revocable
        // or not as a whole, and lent headroom is never reserved.
        let revocable = valid.first().and_then(|id| self.offers.get(id)).is_some_and(|o| o.revocable);
        if let Some((agent, role)) = &agent {
            for id in &valid {
                let o = &self.offers[id];
                if &o.agent != agent {
                    offer_error.get_or_insert("offers on different agents cannot be combined".to_owned());
                } else if &o.role != role {
                    offer_error.get_or_insert("offers for different roles cannot be combined".to_owned());
                } else if o.revocable != revocable {
                    offer_error.get_or_insert("revocable and non-revocable offers cannot be combined".to_owned());
                }
            }
            if revocable && resource_ops.clone().next().is_some() {
                offer_error.get_or_insert("resource operations cannot use revocable offers".to_owned());
            }
        }
        let mut available = ResourceSet::default();
        for id in &valid {
            available.add_assign(&self.offers[id].resources);
        }
        let (agent, role) = match (offer_error, agent) {
            (None, Some(pair)) => pair,
            (error, _) => {
                let message = error.unwrap_or_else(|| "no valid offer".to_owned());
                self.counters.bad_calls += 1;
                tracing::warn!(framework_id = %framework, %message, "ACCEPT with bad offers; dropping its tasks");
                for &key in &valid {
                    self.remove_offer(key);
                }
                for t in &tasks {
                    let task_id = TaskId::new(t.task_id.clone());
                    let status = broker_status(framework, &task_id, None, TaskState::Dropped, "REASON_INVALID_OFFERS", message.clone(), self.timestamp(now));
                    self.notify_framework(framework, status, out);
                }
                let mut answered = false;
                for op in resource_ops {
                    let agent = AgentId::new(String::new());
                    self.operation_status(&agent, Some(framework), op, Err(message.clone()), now, out);
                    answered = true;
                }
                if tasks.is_empty() && !answered {
                    self.call_error(conn, &format!("ACCEPT refused: {message}"), out);
                }
                return;
            }
        };
        // The offers are consumed whatever happens to the tasks; their
        // resources stay allocated to the framework until given back below.
        for &key in &valid {
            self.unlink_offer(key);
        }
        self.counters.offers_accepted += valid.len() as u64;
        if !accept.operations.is_empty() {
            self.reset_declines(framework, Some(std::slice::from_ref(&role)));
        }

        // Layer 2: each operation in order; for a LAUNCH, each task.
        let mut launched_ids = BTreeSet::new();
        for op in &accept.operations {
            let launch = match &op.kind {
                Some(v1::operation::Kind::Launch(launch)) => launch,
                _ => {
                    let result = self.apply_operation(&agent, Actor::Framework { id: framework, role: &role }, op, &mut available, out);
                    self.operation_status(&agent, Some(framework), op, result, now, out);
                    continue;
                }
            };
            for t in &launch.tasks {
                self.launch_one(framework, &agent, &role, revocable, t, &mut available, &mut launched_ids, now, out);
            }
        }
        if !available.is_empty() {
            if let Err(err) = self.give_back_resources(&agent, framework, &role, &available, revocable) {
                tracing::error!(framework_id = %framework, error = %err, "books out of step: unused offer resources were not allocated");
            }
            self.add_filter(framework, &role, &agent, refuse, now);
            self.dirty = true;
        }
    }

    /// Checks and launches one task of an ACCEPT, or tells the framework
    /// why not.
    #[allow(clippy::too_many_arguments)]
    fn launch_one(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        role: &Role,
        revocable: bool,
        t: &v1::TaskInfo,
        available: &mut ResourceSet,
        launched_ids: &mut BTreeSet<TaskId>,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let task_id = TaskId::new(t.task_id.clone());
        let checked = match self.check_task(framework, agent, role, t, available, launched_ids) {
            Ok(checked) => checked,
            Err(message) => {
                tracing::info!(framework_id = %framework, task_id = %t.task_id, %message, "task refused");
                self.counters.tasks_errored += 1;
                let status = broker_status(framework, &task_id, Some(agent), TaskState::Error, "REASON_TASK_INVALID", message, self.timestamp(now));
                self.notify_framework(framework, status, out);
                return;
            }
        };
        let Some(agent_conn) = self.agent_conn(agent) else {
            let status = broker_status(
                framework,
                &task_id,
                Some(agent),
                TaskState::Dropped,
                "REASON_AGENT_DISCONNECTED",
                format!("agent {agent} is not connected"),
                self.timestamp(now),
            );
            self.notify_framework(framework, status, out);
            return;
        };
        *available = match available.checked_sub(&checked.resources) {
            Ok(rest) => rest,
            Err(_) => return, // check_task proved containment
        };
        launched_ids.insert(task_id.clone());
        let mut info = checked.info;
        info.agent_id = agent.to_string();
        info.allocation_role = role.to_string();
        // The agent keeps the task as sent and reports it when it
        // re-registers, to this leader or the next: its resources say it
        // runs on lent resources, as Mesos marks them.
        if revocable {
            for r in &mut info.resources {
                r.revocable = true;
            }
        }
        // A task runs as its command's user, else its framework's (Mesos'
        // rule); agents that switch users need the name.
        if let Some(command) = info.command.as_mut().filter(|c| c.user.is_empty()) {
            if let Some(f) = self.frameworks.get(framework) {
                command.user = f.user.clone();
            }
        }
        // The agent decides who reads the task's sandbox by its
        // framework's principal; what the framework wrote is not trusted.
        info.principal = self.frameworks.get(framework).map(|f| f.principal.clone()).unwrap_or_default();
        let status = v1::TaskStatus {
            task_id: task_id.to_string(),
            state: task_state_to_proto(TaskState::Staging) as i32,
            source: v1::task_status::Source::Broker as i32,
            agent_id: agent.to_string(),
            framework_id: framework.to_string(),
            timestamp: self.timestamp(now),
            ..Default::default()
        };
        self.tasks.insert(
            (framework.clone(), task_id.clone()),
            Task {
                agent: agent.clone(),
                role: role.clone(),
                name: t.name.clone(),
                resources: checked.resources,
                state: TaskState::Staging,
                latest: status,
                usage: None,
                volumes: checked.volumes,
                volume_disk: checked.volume_disk,
                launched_at: Some(now),
                placed_at: now,
                revocable,
                exempt: weir_model::task::exempt_from_revocation(&t.labels),
            },
        );
        if let Some(a) = self.agents.get_mut(agent) {
            a.tasks.insert((framework.clone(), task_id.clone()));
        }
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.tasks.insert(task_id.clone());
        }
        self.counters.tasks_launched += 1;
        self.allocator.note_launch(framework, agent);
        tracing::info!(framework_id = %framework, task_id = %task_id, agent_id = %agent, "launching task");
        out.push(Output::Agent(
            agent_conn,
            agent_message(v1::broker_message::Kind::RunTask(v1::broker_message::RunTask {
                framework_id: framework.to_string(),
                task: Some(info),
            })),
        ));
    }

    /// Checks one task of an ACCEPT; returns what it takes, with the
    /// volumes it mounts resolved (their disk added to its resources, their
    /// paths filled in for the agent).
    fn check_task(
        &self,
        framework: &FrameworkId,
        agent: &AgentId,
        role: &Role,
        t: &v1::TaskInfo,
        available: &ResourceSet,
        launched: &BTreeSet<TaskId>,
    ) -> Result<CheckedTask, String> {
        let task_id: TaskId = convert::id("task_id", &t.task_id).map_err(|e| e.to_string())?;
        if launched.contains(&task_id) || self.tasks.contains_key(&(framework.clone(), task_id.clone())) {
            return Err(format!("task id {task_id} is already in use by this framework"));
        }
        if !t.agent_id.is_empty() && t.agent_id != agent.as_str() {
            return Err(format!("task names agent {} but the offers are for agent {agent}", t.agent_id));
        }
        let command = t.command.as_ref().ok_or("task has no command")?;
        let program = if command.shell { &command.value } else { command.arguments.first().unwrap_or(&command.value) };
        if program.trim().is_empty() {
            return Err("task command is empty".to_owned());
        }
        let command_size = command.value.len()
            + command.arguments.iter().map(String::len).sum::<usize>()
            + command.environment.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if command_size > MAX_COMMAND_BYTES {
            return Err(format!("task command is {command_size} bytes; at most {MAX_COMMAND_BYTES} are allowed"));
        }
        // Passed on to the agent in the RUN_TASK and nowhere else: the
        // broker's books keep no TaskInfo.
        convert::check_secrets("task.secrets", &t.secrets).map_err(|e| e.to_string())?;
        if !t.kill_grace_seconds.is_finite() || t.kill_grace_seconds < 0.0 {
            return Err(format!("kill_grace_seconds {} must be a finite number >= 0", t.kill_grace_seconds));
        }
        let mut resources = convert::resources_from_proto("task.resources", &t.resources).map_err(|e| e.to_string())?;
        if resources.reserved.keys().any(|r| r != role) {
            return Err(format!("task resources are reserved for a role other than the offer's role {role}"));
        }
        let total = resources.total();
        if total.cpus.is_zero() && total.mem.is_zero() {
            return Err("task must use some cpus or mem".to_owned());
        }
        let mounts = convert::mounts_from_proto("task.volumes", &t.volumes).map_err(|e| e.to_string())?;
        let mut info = t.clone();
        let mut volumes = Vec::new();
        let mut volume_disk = Milli::ZERO;
        for (i, m) in mounts.iter().enumerate() {
            let Some(volume) = self.agents.get(agent).and_then(|a| a.volumes.get(&(role.clone(), m.volume.clone()))) else {
                return Err(format!("task mounts volume {}, which role {role} does not have on agent {agent}", m.volume));
            };
            if !volume.visible_to(framework) {
                return Err(format!("task mounts volume {}, which belongs to another framework", m.volume));
            }
            if let Some(why) = self.stale_copy(agent, role, &m.volume) {
                return Err(format!("task mounts volume {}, whose copy on agent {agent} is stale: {why}", m.volume));
            }
            let users = self.volume_users(agent, role, &m.volume);
            if !volume.shared {
                if let Some((f, task)) = users.first() {
                    return Err(format!("volume {} is in use by task {f}/{task}", m.volume));
                }
            }
            if m.container_path.is_empty() {
                info.volumes[i].container_path = volume.container_path.clone();
            }
            // A shared volume in use already has its disk counted.
            if users.is_empty() {
                volume_disk = Milli(volume_disk.0 + volume.size.0);
            }
            volumes.push(m.volume.clone());
        }
        let scratch = resources.reserved.get(role).map_or(Milli::ZERO, |r| r.disk);
        if !volume_disk.is_zero() {
            resources.reserved.entry(role.clone()).or_default().disk = Milli(scratch.0 + volume_disk.0);
        }
        if !available.contains(&resources) {
            return Err(format!("task needs {resources} but only {available} is left in the offers"));
        }
        if !scratch.is_zero() {
            self.check_role_disk(agent, role, scratch)?;
        }
        // The agent gets the resources as booked, volume disk included, so
        // what it reports after a failover books the same.
        info.resources = convert::resources_to_proto(&resources);
        Ok(CheckedTask { resources, volumes, volume_disk, info })
    }
}
