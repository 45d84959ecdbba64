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
//! Whatever the launched tasks do not use goes back to the allocator, with a
//! filter for the accept's `refuse_seconds` (Mesos applies it to accepts too,
//! so a framework is not immediately re-offered the crumbs it left).

use std::collections::BTreeSet;
use std::time::Duration;

use weir_model::{AgentId, FrameworkId, OfferId, ResourceSet, Role, TaskId, TaskState};
use weir_proto::convert::{self, task_state_to_proto};
use weir_proto::v1;

use super::{agent_message, broker_status, refuse_duration, BrokerCore, ConnId, Output, Task};

const MAX_TASKS_PER_ACCEPT: usize = 10_000;
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
                None => Vec::new(),
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

        // Layer 1: the offers.
        let mut offer_error: Option<String> = None;
        let mut valid: Vec<OfferId> = Vec::new();
        let mut seen = BTreeSet::new();
        for raw in &accept.offer_ids {
            let id = OfferId::new(raw.clone());
            if !seen.insert(id.clone()) {
                offer_error.get_or_insert(format!("offer {raw} is named twice"));
                continue;
            }
            match self.offers.get(&id) {
                None => {
                    offer_error.get_or_insert(format!("offer {raw} is no longer valid (used, declined, rescinded or timed out)"));
                }
                Some(offer) if &offer.framework != framework => {
                    offer_error.get_or_insert(format!("offer {raw} belongs to another framework"));
                }
                Some(_) => valid.push(id),
            }
        }
        if accept.offer_ids.is_empty() {
            offer_error = Some("ACCEPT names no offers".to_owned());
        }
        let agent: Option<(AgentId, Role)> = valid.first().and_then(|id| self.offers.get(id)).map(|o| (o.agent.clone(), o.role.clone()));
        if let Some((agent, role)) = &agent {
            for id in &valid {
                let o = &self.offers[id];
                if &o.agent != agent {
                    offer_error.get_or_insert("offers on different agents cannot be combined".to_owned());
                } else if &o.role != role {
                    offer_error.get_or_insert("offers for different roles cannot be combined".to_owned());
                }
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
                for id in &valid {
                    self.remove_offer(id);
                }
                for t in &tasks {
                    let task_id = TaskId::new(t.task_id.clone());
                    let status = broker_status(framework, &task_id, None, TaskState::Dropped, "REASON_INVALID_OFFERS", message.clone(), self.timestamp(now));
                    self.notify_framework(framework, status, out);
                }
                if tasks.is_empty() {
                    self.call_error(conn, &format!("ACCEPT refused: {message}"), out);
                }
                return;
            }
        };
        // The offers are consumed whatever happens to the tasks; their
        // resources stay allocated to the framework until given back below.
        for id in &valid {
            if let Some(offer) = self.offers.remove(id) {
                self.offer_expiry.remove(&(offer.expires, id.clone()));
            }
            if let Some(a) = self.agents.get_mut(&agent) {
                a.offers.remove(id);
            }
            if let Some(f) = self.frameworks.get_mut(framework) {
                f.offers.remove(id);
            }
        }
        self.counters.offers_accepted += valid.len() as u64;
        let agent_conn = self.agent_conn(&agent);

        // Layer 2: each task.
        let mut launched_ids = BTreeSet::new();
        for t in tasks {
            let task_id = TaskId::new(t.task_id.clone());
            let checked = self.check_task(framework, &agent, &role, t, &available, &launched_ids);
            let resources = match checked {
                Ok(resources) => resources,
                Err(message) => {
                    tracing::info!(framework_id = %framework, task_id = %t.task_id, %message, "task refused");
                    self.counters.tasks_errored += 1;
                    let status = broker_status(framework, &task_id, Some(&agent), TaskState::Error, "REASON_TASK_INVALID", message, self.timestamp(now));
                    self.notify_framework(framework, status, out);
                    continue;
                }
            };
            let Some(agent_conn) = agent_conn else {
                let status = broker_status(
                    framework,
                    &task_id,
                    Some(&agent),
                    TaskState::Dropped,
                    "REASON_AGENT_DISCONNECTED",
                    format!("agent {agent} is not connected"),
                    self.timestamp(now),
                );
                self.notify_framework(framework, status, out);
                continue;
            };
            available = match available.checked_sub(&resources) {
                Ok(rest) => rest,
                Err(_) => continue, // check_task proved containment
            };
            launched_ids.insert(task_id.clone());
            let mut info = t.clone();
            info.agent_id = agent.to_string();
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
                    resources,
                    state: TaskState::Staging,
                    latest: status,
                    usage: None,
                },
            );
            if let Some(a) = self.agents.get_mut(&agent) {
                a.tasks.insert((framework.clone(), task_id.clone()));
            }
            if let Some(f) = self.frameworks.get_mut(framework) {
                f.tasks.insert(task_id.clone());
            }
            self.counters.tasks_launched += 1;
            tracing::info!(framework_id = %framework, task_id = %task_id, agent_id = %agent, "launching task");
            out.push(Output::Agent(
                agent_conn,
                agent_message(v1::broker_message::Kind::RunTask(v1::broker_message::RunTask {
                    framework_id: framework.to_string(),
                    task: Some(info),
                })),
            ));
        }

        if !available.is_empty() {
            if let Err(err) = self.allocator.recover(&agent, framework, &role, &available) {
                tracing::error!(framework_id = %framework, error = %err, "books out of step: unused offer resources were not allocated");
            }
            self.add_filter(framework, &agent, refuse, now);
            self.dirty = true;
        }
    }

    /// Checks one task of an ACCEPT; returns the resources it takes.
    fn check_task(
        &self,
        framework: &FrameworkId,
        agent: &AgentId,
        role: &Role,
        t: &v1::TaskInfo,
        available: &ResourceSet,
        launched: &BTreeSet<TaskId>,
    ) -> Result<ResourceSet, String> {
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
        if !t.kill_grace_seconds.is_finite() || t.kill_grace_seconds < 0.0 {
            return Err(format!("kill_grace_seconds {} must be a finite number >= 0", t.kill_grace_seconds));
        }
        let resources = convert::resources_from_proto("task.resources", &t.resources).map_err(|e| e.to_string())?;
        if resources.reserved.keys().any(|r| r != role) {
            return Err(format!("task resources are reserved for a role other than the offer's role {role}"));
        }
        let total = resources.total();
        if total.cpus.is_zero() && total.mem.is_zero() {
            return Err("task must use some cpus or mem".to_owned());
        }
        if !available.contains(&resources) {
            return Err(format!("task needs {resources} but only {available} is left in the offers"));
        }
        Ok(resources)
    }
}
