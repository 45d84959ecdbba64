//! The framework side of the broker core: SUBSCRIBE and failover, and every
//! call a subscribed framework makes except ACCEPT (see `accept.rs`).
//!
//! A framework's stream is bound to its framework id by SUBSCRIBE; any other
//! call first, or a call naming another framework, is an ERROR. A framework
//! that disconnects keeps its tasks for its `failover_timeout` (0: removed at
//! once, as in Mesos), gets no offers meanwhile, and resumes on re-subscribe.

use std::time::Duration;

use weir_model::{AgentId, FrameworkId, Role, TaskId, TaskState};
use weir_proto::convert::{self, ProtoError};
use weir_proto::v1;

use super::{agent_message, kill_task_message, broker_status, event, refuse_duration, secs, BrokerCore, ConnId, Framework, Output};

const MAX_ROLES: usize = 64;

/// Whether a SUBSCRIBE states the REVOCABLE_RESOURCES capability.
fn takes_revocable(info: &v1::FrameworkInfo) -> bool {
    info.capabilities.contains(&(v1::framework_info::Capability::RevocableResources as i32))
}
const MAX_NAME: usize = 256;
const MAX_RECONCILE: usize = 100_000;

impl BrokerCore {
    /// A call arriving on a framework's stream.
    pub fn framework_call(&mut self, conn: ConnId, call: &v1::Call, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        let bound = self.framework_conns.get(&conn).cloned();
        match (&call.kind, bound) {
            (Some(v1::call::Kind::Subscribe(sub)), None) => self.subscribe(conn, call, sub, now, &mut out),
            (Some(v1::call::Kind::Subscribe(_)), Some(_)) => {
                self.call_error(conn, "this stream is already subscribed", &mut out)
            }
            (_, None) => {
                self.call_error(conn, "the first call on a stream must be SUBSCRIBE", &mut out);
                out.push(Output::Close(conn));
            }
            (kind, Some(framework)) => {
                if !call.framework_id.is_empty() && call.framework_id != framework.as_str() {
                    self.call_error(
                        conn,
                        &format!("call names framework {} but this stream belongs to {framework}", call.framework_id),
                        &mut out,
                    );
                    return out;
                }
                match kind {
                    Some(v1::call::Kind::Accept(accept)) => self.accept(conn, &framework, accept, now, &mut out),
                    Some(v1::call::Kind::Decline(decline)) => self.decline(conn, &framework, decline, now, &mut out),
                    Some(v1::call::Kind::Revive(revive)) => {
                        if let Some(data) = &revive.data {
                            self.set_data(conn, &framework, data, &mut out);
                        }
                        self.revive(conn, &framework, &revive.roles, &mut out)
                    }
                    Some(v1::call::Kind::Suppress(suppress)) => {
                        self.suppress(conn, &framework, &suppress.roles, &mut out)
                    }
                    Some(v1::call::Kind::Kill(kill)) => self.kill(conn, &framework, kill, now, &mut out),
                    Some(v1::call::Kind::Acknowledge(ack)) => self.acknowledge(conn, &framework, ack, &mut out),
                    Some(v1::call::Kind::Reconcile(rec)) => self.reconcile(conn, &framework, rec, now, &mut out),
                    Some(v1::call::Kind::Teardown(teardown)) => {
                        tracing::info!(framework_id = %framework, release = teardown.release_reservations, "framework asked to be torn down");
                        self.remove_framework(&framework, now, &mut out);
                        if teardown.release_reservations {
                            self.release_framework_resources(&framework, &mut out);
                        }
                    }
                    Some(v1::call::Kind::Subscribe(_)) => unreachable!("matched above"),
                    None => self.call_error(conn, "call has no kind", &mut out),
                }
            }
        }
        out
    }

    /// An operator kills one task (the broker UI's action). The agent kills
    /// it and its framework hears TASK_KILLED as for its own KILL; a task
    /// whose agent is not connected cannot be killed now, and the operator
    /// is told so rather than left waiting.
    pub fn operator_kill(&mut self, framework: &FrameworkId, task: &TaskId) -> Result<Vec<Output>, String> {
        let Some(t) = self.tasks.get(&(framework.clone(), task.clone())) else {
            return Err(format!("no live task {task} of framework {framework}"));
        };
        let Some(conn) = self.agent_conn(&t.agent) else {
            return Err(format!("the agent {} of task {task} is not connected; it cannot be killed now", t.agent));
        };
        tracing::info!(framework_id = %framework, task_id = %task, agent_id = %t.agent, "operator kills task");
        Ok(vec![Output::Agent(conn, kill_task_message(framework, task))])
    }

    /// An operator tears a framework down (the broker UI's action): as its
    /// own TEARDOWN without releasing reservations, after an ERROR that
    /// tells it why its stream closes.
    pub fn operator_teardown(&mut self, framework: &FrameworkId, now: Duration) -> Result<Vec<Output>, String> {
        let Some(f) = self.frameworks.get(framework) else {
            return Err(format!("no framework {framework}"));
        };
        let mut out = Vec::new();
        if let Some(conn) = f.conn {
            out.push(Output::Framework(
                conn,
                event(v1::event::Kind::Error(v1::event::Error { message: "framework torn down by an operator".to_owned() })),
            ));
        }
        tracing::info!(framework_id = %framework, "operator tears framework down");
        self.remove_framework(framework, now, &mut out);
        Ok(out)
    }

    /// The principal a framework belongs to (empty: unknown or anonymous).
    pub fn framework_principal(&self, framework: &FrameworkId) -> Option<&str> {
        self.frameworks.get(framework).map(|f| f.principal.as_str())
    }

    pub(super) fn call_error(&mut self, conn: ConnId, message: &str, out: &mut Vec<Output>) {
        self.counters.bad_calls += 1;
        tracing::warn!(conn, message, "bad framework call");
        out.push(Output::Framework(
            conn,
            event(v1::event::Kind::Error(v1::event::Error { message: message.to_owned() })),
        ));
    }

    fn subscribe(&mut self, conn: ConnId, call: &v1::Call, sub: &v1::call::Subscribe, now: Duration, out: &mut Vec<Output>) {
        let parsed = (|| -> Result<(Option<FrameworkId>, String, Vec<Role>, Duration), ProtoError> {
            let info = sub.framework.as_ref().ok_or_else(|| ProtoError::missing("subscribe.framework"))?;
            let id = if info.id.is_empty() {
                None
            } else {
                Some(convert::id::<FrameworkId>("subscribe.framework.id", &info.id)?)
            };
            if !call.framework_id.is_empty() && call.framework_id != info.id {
                return Err(ProtoError::invalid("framework_id", "must match subscribe.framework.id"));
            }
            if info.name.is_empty() || info.name.len() > MAX_NAME {
                return Err(ProtoError::invalid(
                    "subscribe.framework.name",
                    format!("must be 1 to {MAX_NAME} bytes long"),
                ));
            }
            if info.roles.len() > MAX_ROLES {
                return Err(ProtoError::invalid(
                    "subscribe.framework.roles",
                    format!("{} roles; at most {MAX_ROLES} are allowed", info.roles.len()),
                ));
            }
            let mut roles = Vec::new();
            for role in &info.roles {
                weir_model::ids::validate_role(role).map_err(|r| ProtoError::invalid("subscribe.framework.roles", r))?;
                let role = Role::new(role.clone());
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            if roles.is_empty() {
                roles.push(Role::default_role());
            }
            let timeout = info.failover_timeout_seconds;
            if !timeout.is_finite() || timeout < 0.0 {
                return Err(ProtoError::invalid(
                    "subscribe.framework.failover_timeout_seconds",
                    format!("{timeout} must be a finite number >= 0"),
                ));
            }
            let max = self.settings.max_failover_timeout;
            if timeout > max.as_secs_f64() {
                tracing::info!(asked_secs = timeout, max_secs = max.as_secs_f64(), "failover timeout cut to broker.framework.failover.timeout.max");
            }
            Ok((id, info.name.clone(), roles, Duration::from_secs_f64(timeout.min(max.as_secs_f64()))))
        })();
        let (id, name, roles, failover_timeout) = match parsed {
            Ok(p) => p,
            Err(err) => {
                self.call_error(conn, &format!("subscription refused: {err}"), out);
                out.push(Output::Close(conn));
                return;
            }
        };
        let info = sub.framework.clone().unwrap_or_default();
        if let Some(refusal) = self.over_limits(id.as_ref(), &roles) {
            self.call_error(conn, &format!("subscription refused: {refusal}"), out);
            out.push(Output::Close(conn));
            return;
        }
        if info.principal.len() > weir_model::ids::MAX_ID_LEN {
            self.call_error(conn, "subscription refused: subscribe.framework.principal is longer than 256 bytes", out);
            out.push(Output::Close(conn));
            return;
        }
        // A framework belongs to the principal that subscribed it: another
        // one re-subscribing under its id would take over its tasks and
        // could tear it down. A placeholder kept for tasks an agent
        // reported (principal unknown) goes to the first to claim it.
        if let Some(existing) = id.as_ref().and_then(|id| self.frameworks.get(id)) {
            if !existing.principal.is_empty() && existing.principal != info.principal {
                let id = id.as_ref().map(|i| i.to_string()).unwrap_or_default();
                tracing::warn!(framework_id = %id, owner = %existing.principal, principal = %info.principal, "subscription refused: framework belongs to another principal");
                self.call_error(
                    conn,
                    &format!(
                        "subscription refused: permission denied: framework {id} belongs to principal {:?}, not {:?}",
                        existing.principal, info.principal
                    ),
                    out,
                );
                out.push(Output::Close(conn));
                return;
            }
        }
        let id = match id {
            Some(id) => id,
            None => FrameworkId::new(self.fresh_id("F")),
        };
        // Subscribing again under a removed id starts afresh: what it
        // launches from now on is its own again.
        self.removed_frameworks.retain(|f| f != &id);
        if let Some(existing) = self.frameworks.get_mut(&id) {
            // Failover: the new stream takes over from the old one.
            if let Some(old) = existing.conn.take() {
                self.framework_conns.remove(&old);
                out.push(Output::Framework(
                    old,
                    event(v1::event::Kind::Error(v1::event::Error {
                        message: "framework failed over to a new stream".to_owned(),
                    })),
                ));
                out.push(Output::Close(old));
            }
            if existing.roles != roles {
                // What it holds in a role it leaves stays counted there
                // until given back; it is offered nothing more in it.
                if let Err(err) = self.allocator.update_framework(&id, roles.clone()) {
                    tracing::error!(framework_id = %id, error = %err, "could not change the framework's roles");
                } else {
                    tracing::info!(framework_id = %id, roles = ?roles, "framework roles changed");
                    existing.roles = roles.clone();
                }
            }
            existing.conn = Some(conn);
            if let Some(at) = existing.disconnected_at.take() {
                self.failover_deadlines.remove(&(at.saturating_add(existing.failover_timeout), id.clone()));
            }
            existing.name = name.clone();
            existing.principal = info.principal.clone();
            existing.user = info.user.clone();
            existing.hostname = info.hostname.clone();
            existing.webui_url = info.webui_url.clone();
            existing.failover_timeout = failover_timeout;
            existing.recovered = false;
            existing.takes_revocable = takes_revocable(&info);
            let _ = self.allocator.set_framework_active(&id, true);
            let _ = self.allocator.set_takes_revocable(&id, takes_revocable(&info));
            tracing::info!(framework_id = %id, name = %name, "framework re-subscribed");
        } else {
            if let Err(err) = self.allocator.add_framework(id.clone(), roles.clone()) {
                self.call_error(conn, &format!("subscription refused: {err}"), out);
                out.push(Output::Close(conn));
                return;
            }
            self.frameworks.insert(
                id.clone(),
                Framework {
                    name: name.clone(),
                    principal: info.principal.clone(),
                    roles: roles.clone(),
                    user: info.user.clone(),
                    hostname: info.hostname.clone(),
                    webui_url: info.webui_url.clone(),
                    failover_timeout,
                    conn: Some(conn),
                    disconnected_at: None,
                    recovered: false,
                    registered_at: now,
                    offers: Default::default(),
                    tasks: Default::default(),
                    data: None,
                    takes_revocable: takes_revocable(&info),
                    declines: Default::default(),
                },
            );
            let _ = self.allocator.set_takes_revocable(&id, takes_revocable(&info));
            tracing::info!(framework_id = %id, name = %name, roles = ?roles, revocable = takes_revocable(&info), "framework subscribed");
        }
        self.framework_conns.insert(conn, id.clone());
        self.dirty = true;
        if let Some(data) = &sub.data {
            self.set_data(conn, &id, data, out);
        }
        self.record_framework(&id, out);
        out.push(Output::Framework(
            conn,
            event(v1::event::Kind::Subscribed(v1::event::Subscribed {
                framework_id: id.to_string(),
                heartbeat_interval_seconds: secs(self.settings.framework_heartbeat_interval),
                leader_epoch: self.epoch,
            })),
        ));
        self.tell_drains_to(&id, out);
    }

    /// The framework's stream ended.
    pub fn framework_detached(&mut self, conn: ConnId, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(id) = self.framework_conns.remove(&conn) else { return out };
        let Some(framework) = self.frameworks.get_mut(&id) else { return out };
        if framework.conn != Some(conn) {
            return out;
        }
        framework.conn = None;
        framework.disconnected_at = Some(now);
        let timeout = framework.failover_timeout;
        if !framework.recovered {
            self.failover_deadlines.insert((now.saturating_add(timeout), id.clone()));
        }
        let mut offers: Vec<_> = framework.offers.iter().copied().collect();
        offers.sort_unstable();
        for offer in offers {
            self.remove_offer(offer);
        }
        let _ = self.allocator.set_framework_active(&id, false);
        if timeout.is_zero() {
            tracing::info!(framework_id = %id, "framework disconnected with no failover timeout; removing it");
            self.remove_framework(&id, now, &mut out);
        } else {
            tracing::info!(framework_id = %id, failover_timeout = ?timeout, "framework disconnected; waiting for it to fail over");
        }
        out
    }

    /// Removes frameworks whose failover deadline has passed. Looks at the
    /// deadlines due only (a framework recovered from the registry gets the
    /// recovery period on top of its timeout, so its deadline may lie ahead).
    pub(super) fn expire_disconnected_frameworks(&mut self, now: Duration, out: &mut Vec<Output>) {
        while let Some((due, id)) = self.failover_deadlines.first().cloned() {
            if due > now {
                break;
            }
            self.failover_deadlines.remove(&(due, id.clone()));
            let still_due = self
                .frameworks
                .get(&id)
                .is_some_and(|f| f.conn.is_none() && !f.recovered && f.disconnected_at.is_some());
            if still_due {
                tracing::info!(framework_id = %id, "framework failover timeout passed; removing it");
                self.remove_framework(&id, now, out);
            }
        }
    }

    /// Why a SUBSCRIBE would take the broker past its limits, if it would:
    /// a new framework past `max_frameworks`, or new roles past `max_roles`.
    fn over_limits(&self, id: Option<&FrameworkId>, roles: &[Role]) -> Option<String> {
        let known = id.is_some_and(|id| self.frameworks.contains_key(id));
        if !known && self.frameworks.len() >= self.settings.max_frameworks {
            return Some(format!(
                "the broker already holds its limit of {} frameworks, connected or waiting to fail over (broker.frameworks.max)",
                self.settings.max_frameworks
            ));
        }
        self.room_for_roles(roles).err()
    }

    /// Removes a framework: its offers go back, its tasks are killed and
    /// dropped from the books, its stream (if any) is closed.
    pub(super) fn remove_framework(&mut self, id: &FrameworkId, _now: Duration, out: &mut Vec<Output>) {
        let Some(framework) = self.frameworks.get(id).cloned() else { return };
        if let Some(at) = framework.disconnected_at {
            self.failover_deadlines.remove(&(at.saturating_add(framework.failover_timeout), id.clone()));
        }
        let mut offers: Vec<_> = framework.offers.iter().copied().collect();
        offers.sort_unstable();
        for offer in offers {
            self.remove_offer(offer);
        }
        for task_id in &framework.tasks {
            if let Some(task) = self.tasks.remove(&(id.clone(), task_id.clone())) {
                if let Some(conn) = self.agent_conn(&task.agent) {
                    out.push(Output::Agent(
                        conn,
                        kill_task_message(id, task_id),
                    ));
                }
                if let Some(agent) = self.agents.get_mut(&task.agent) {
                    agent.tasks.remove(&(id.clone(), task_id.clone()));
                }
            }
        }
        if let Err(err) = self.allocator.remove_framework(id) {
            tracing::error!(framework_id = %id, error = %err, "books out of step: framework unknown to the allocator");
        }
        self.frameworks.remove(id);
        self.forget_framework(id, out);
        // Nobody will acknowledge its ends any more.
        self.ended_unacked.retain(|(framework, _), _| framework != id);
        self.removed_frameworks.push_back(id.clone());
        while self.removed_frameworks.len() > super::REMOVED_FRAMEWORKS_KEPT {
            self.removed_frameworks.pop_front();
        }
        if let Some(conn) = framework.conn {
            self.framework_conns.remove(&conn);
            out.push(Output::Close(conn));
        }
        self.dirty = true;
        tracing::info!(framework_id = %id, tasks = framework.tasks.len(), "framework removed");
    }

    fn decline(&mut self, conn: ConnId, framework: &FrameworkId, decline: &v1::call::Decline, now: Duration, out: &mut Vec<Output>) {
        let refuse = match refuse_duration(decline.filters.as_ref(), self.settings.refuse_default) {
            Ok(r) => r,
            Err(message) => return self.call_error(conn, &format!("DECLINE refused: {message}"), out),
        };
        for raw in &decline.offer_ids {
            let key = self.offer_key(raw);
            match key.and_then(|k| self.offers.get(&k).map(|o| (k, o))) {
                Some((key, offer)) if &offer.framework == framework => {
                    let (agent, role) = (offer.agent.clone(), offer.role.clone());
                    self.remove_offer(key);
                    let refuse = self.backed_off_refuse(framework, &role, refuse);
                    self.add_filter(framework, &role, &agent, refuse, now);
                    self.counters.offers_declined += 1;
                }
                // Mesos ignores declines of offers that are gone (rescinded
                // or already used): the framework could not have known.
                Some(_) => self.call_error(conn, &format!("DECLINE: offer {raw} belongs to another framework"), out),
                None => tracing::debug!(framework_id = %framework, offer_id = %raw, "decline of an unknown offer ignored"),
            }
        }
    }

    fn parse_roles(&self, framework: &FrameworkId, raw: &[String]) -> Result<Option<Vec<Role>>, String> {
        if raw.is_empty() {
            return Ok(None);
        }
        let mine = &self.frameworks.get(framework).map(|f| f.roles.clone()).unwrap_or_default();
        let mut roles = Vec::new();
        for r in raw {
            let role = Role::new(r.clone());
            if !mine.contains(&role) {
                return Err(format!("role {r:?} is not one of this framework's roles"));
            }
            roles.push(role);
        }
        Ok(Some(roles))
    }

    fn revive(&mut self, conn: ConnId, framework: &FrameworkId, roles: &[String], out: &mut Vec<Output>) {
        match self.parse_roles(framework, roles) {
            Ok(roles) => {
                if let Err(err) = self.allocator.revive(framework, roles.as_deref()) {
                    return self.call_error(conn, &format!("REVIVE refused: {err}"), out);
                }
                self.reset_declines(framework, roles.as_deref());
                self.dirty = true;
            }
            Err(message) => self.call_error(conn, &format!("REVIVE refused: {message}"), out),
        }
    }

    fn suppress(&mut self, conn: ConnId, framework: &FrameworkId, roles: &[String], out: &mut Vec<Output>) {
        match self.parse_roles(framework, roles) {
            Ok(roles) => {
                if let Err(err) = self.allocator.suppress(framework, roles.as_deref()) {
                    self.call_error(conn, &format!("SUPPRESS refused: {err}"), out);
                }
            }
            Err(message) => self.call_error(conn, &format!("SUPPRESS refused: {message}"), out),
        }
    }

    fn kill(&mut self, conn: ConnId, framework: &FrameworkId, kill: &v1::call::Kill, now: Duration, out: &mut Vec<Output>) {
        let task_id = match convert::id::<TaskId>("kill.task_id", &kill.task_id) {
            Ok(t) => t,
            Err(err) => return self.call_error(conn, &format!("KILL refused: {err}"), out),
        };
        let key = (framework.clone(), task_id.clone());
        let Some(task) = self.tasks.get(&key) else {
            let agent = (!kill.agent_id.is_empty()).then(|| AgentId::new(kill.agent_id.clone()));
            match self.unknown_task_status(framework, &task_id, agent.as_ref(), now) {
                Some(status) => self.notify_framework(framework, status, out),
                None => tracing::info!(framework_id = %framework, task_id = %task_id, "kill of a task whose end is on its way, or on an agent not yet re-registered; ignored"),
            }
            return;
        };
        let agent = task.agent.clone();
        match self.agent_conn(&agent) {
            Some(agent_conn) => {
                tracing::info!(framework_id = %framework, task_id = %task_id, agent_id = %agent, "killing task");
                out.push(Output::Agent(
                    agent_conn,
                    kill_task_message(framework, &task_id),
                ));
            }
            None => {
                // The agent cannot be reached: the kill cannot be carried
                // out now; tell the framework where the task stands.
                if let Some(status) = self.reconciliation_status(framework, &task_id, now) {
                    self.notify_framework(framework, status, out);
                }
            }
        }
    }

    /// What to tell a framework that asks about (reconciles or kills) a
    /// task the books do not hold, on the agent it names, as Mesos does:
    /// nothing while a new leader still awaits that agent (it may come back
    /// with the task), TASK_UNREACHABLE while the agent is unreachable (the
    /// task may run there), else TASK_UNKNOWN. A terminal answer for a task
    /// that turns up later is never corrected, so it must not be guessed;
    /// and nothing for a task its agent reported ended with its updates
    /// still on their way (they arrive next, in order).
    fn unknown_task_status(&self, framework: &FrameworkId, task: &TaskId, agent: Option<&AgentId>, now: Duration) -> Option<v1::TaskStatus> {
        // Reported ended, its updates still on their way: they tell it, in
        // order. An answer here would overtake them (the long testbed run
        // heard FINISHED by reconciliation, then the queued RUNNING).
        if self.ended_unacked.get(&(framework.clone(), task.clone())).is_some_and(|(on, _)| agent.is_none_or(|a| a == on)) {
            return None;
        }
        if agent.is_some_and(|a| self.awaiting_agent(a)) {
            return None;
        }
        let (state, message) = match agent.and_then(|a| self.agent_reachable(a)) {
            Some(false) => (TaskState::Unreachable, "the task's agent is unreachable"),
            _ => (TaskState::Unknown, "the broker has no record of this task"),
        };
        Some(broker_status(framework, task, agent, state, "REASON_RECONCILIATION", message, self.timestamp(now)))
    }

    fn acknowledge(&mut self, conn: ConnId, framework: &FrameworkId, ack: &v1::call::Acknowledge, out: &mut Vec<Output>) {
        let parsed = convert::id::<AgentId>("acknowledge.agent_id", &ack.agent_id)
            .and_then(|a| convert::id::<TaskId>("acknowledge.task_id", &ack.task_id).map(|t| (a, t)));
        let (agent, task) = match parsed {
            Ok(p) => p,
            Err(err) => return self.call_error(conn, &format!("ACKNOWLEDGE refused: {err}"), out),
        };
        if ack.uuid.is_empty() || ack.uuid.len() > 64 {
            return self.call_error(conn, "ACKNOWLEDGE refused: acknowledge.uuid must be 1 to 64 bytes", out);
        }
        // The framework has heard the end of a task reported ended at a
        // re-registration: reconciliation need not tell it any more.
        let key = (framework.clone(), task.clone());
        if self.ended_unacked.get(&key).is_some_and(|(on, latest)| on == &agent && (latest.uuid.is_empty() || latest.uuid == ack.uuid)) {
            self.ended_unacked.remove(&key);
        }
        // Forwarded without checking the books: the agent holds the update
        // stream and ignores an acknowledgement that does not match.
        if let Some(agent_conn) = self.agents.get(&agent).and_then(|a| a.conn) {
            out.push(Output::Agent(
                agent_conn,
                agent_message(v1::broker_message::Kind::Acknowledge(v1::broker_message::Acknowledge {
                    framework_id: framework.to_string(),
                    task_id: task.to_string(),
                    uuid: ack.uuid.clone(),
                })),
            ));
        }
    }

    fn reconcile(&mut self, conn: ConnId, framework: &FrameworkId, rec: &v1::call::Reconcile, now: Duration, out: &mut Vec<Output>) {
        if rec.tasks.len() > MAX_RECONCILE {
            return self.call_error(conn, &format!("RECONCILE refused: more than {MAX_RECONCILE} tasks"), out);
        }
        let mut statuses = Vec::new();
        if rec.tasks.is_empty() {
            // Implicit: every task the broker knows for this framework.
            if let Some(f) = self.frameworks.get(framework) {
                for task in &f.tasks {
                    if let Some(status) = self.reconciliation_status(framework, task, now) {
                        statuses.push(status);
                    }
                }
            }
        } else {
            for (i, t) in rec.tasks.iter().enumerate() {
                let task = match convert::id::<TaskId>(&format!("reconcile.tasks[{i}].task_id"), &t.task_id) {
                    Ok(task) => task,
                    Err(err) => return self.call_error(conn, &format!("RECONCILE refused: {err}"), out),
                };
                let agent = if t.agent_id.is_empty() { None } else { Some(AgentId::new(t.agent_id.clone())) };
                let status = match self.reconciliation_status(framework, &task, now) {
                    Some(status) => status,
                    None => match self.unknown_task_status(framework, &task, agent.as_ref(), now) {
                        Some(status) => status,
                        None => continue,
                    },
                };
                statuses.push(status);
            }
        }
        for status in statuses {
            self.notify_framework(framework, status, out);
        }
    }
}
