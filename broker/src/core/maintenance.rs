//! Maintenance: an operator drains an agent before taking its machine away.
//!
//! ```text
//! ACTIVE ──drain──► DRAINING ──no task left──► DRAINED ──mark gone──► GONE
//!    ▲                 │ deadline: its tasks        │
//!    └───reactivate────┴─ are killed ───────────────┘
//! ```
//!
//! - DRAINING: the agent's offers are rescinded and the allocator offers it
//!   to nobody; frameworks with tasks there hear `AGENT_DRAINING` with the
//!   deadline (when the drain starts and when they re-subscribe), so they
//!   can move their work first; at the deadline the broker sends the agent
//!   a kill for every task still there (again after the agent
//!   re-registers, if it had no stream then).
//! - DRAINED: the books place no task on it (after a failover, not before
//!   the agent is back or recovery has given up on it). It stays unoffered
//!   until reactivated or marked gone (at once if the drain asked for it).
//! - GONE: removed from the books and the registry's agent records; it
//!   may not re-register under its id (its work directory must go).
//!
//! A maintenance window scheduled ahead (Mesos' maintenance schedule,
//! `weir agent maintain`) keeps the agent ACTIVE and offered until its
//! start, but every offer from it carries the window (`unavailability`)
//! and frameworks with tasks there hear `AGENT_DRAINING` with the start as
//! the deadline, so they can place short work there and move long work
//! away. At the start the agent drains with the start as its deadline
//! (its tasks still there are killed at once), and when the window ends
//! it is reactivated by itself.
//!
//! Every state but ACTIVE, and every window, is a registry record (`maintenance`, keyed by
//! agent id; the deadline in Unix time, since a new leader's monotonic
//! clock is another), written before the operator is answered, so a
//! drain survives a failover: the new leader keeps the agent unoffered and
//! kills at the same deadline.

use std::time::Duration;

use prost::Message;
use weir_ha::Record;
use weir_model::{AgentId, DrainState, FrameworkId, Unavailability};
use weir_proto::convert;
use weir_proto::v1;

use super::recovery::{delete, put};
use super::{agent_message, event, kill_task_message, BrokerCore, Output};

/// The registry collection of agents under maintenance.
pub(super) const MAINTENANCE: &str = "maintenance";

/// Grace periods longer than this are cut to it.
pub const MAX_DRAIN_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

/// One agent that is not ACTIVE (and not gone).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Drain {
    /// When its remaining tasks are killed (monotonic).
    deadline: Duration,
    /// Mark it gone once drained.
    mark_gone: bool,
    drained: bool,
    /// The kills went out on the stream it had at the deadline; cleared
    /// when it re-registers, so they go again on the new one.
    kills_sent: bool,
    /// A maintenance window's drain: reactivated when the window ends;
    /// its `deadline` is the window's start. In Unix time, as recorded: a
    /// new leader's monotonic clock is another.
    window: Option<Unavailability>,
}

impl BrokerCore {
    /// Drains an agent: no new offers, its tasks killed `grace` from now
    /// (`None`: `broker.agent.drain.grace.default`), DRAINED once none is
    /// left, and gone then if `mark_gone`. Draining a draining agent again
    /// sets a new deadline and `mark_gone`; draining a drained one with
    /// `mark_gone` marks it gone. The outputs start with the registry
    /// write the answer must wait for.
    pub fn drain_agent(&mut self, id: &AgentId, grace: Option<Duration>, mark_gone: bool, now: Duration) -> Result<(DrainState, String, Vec<Output>), String> {
        if self.gone_agents.contains(id) {
            return Err(format!("agent {id} was marked gone; it cannot be drained"));
        }
        if !self.agents.contains_key(id) && !self.awaiting_agent(id) && !self.drains.contains_key(id) {
            return Err(format!("agent {id} is not known to the broker"));
        }
        let grace = grace.unwrap_or(self.settings.drain_grace_default).min(MAX_DRAIN_GRACE);
        let mut out = Vec::new();
        // An operator's drain replaces a window: it ends when the operator
        // says so, not when the window would have.
        if self.windows.remove(id).is_some() {
            tracing::info!(agent_id = %id, "maintenance window replaced by a drain");
        }
        match self.drains.get_mut(id) {
            Some(drain) if drain.drained => {
                if mark_gone {
                    self.mark_agent_gone_now(id, &mut out);
                    return Ok((DrainState::Drained, format!("agent {id} was drained and is now gone"), out));
                }
                return Ok((DrainState::Drained, format!("agent {id} is drained already"), out));
            }
            Some(drain) => {
                drain.deadline = now + grace;
                drain.mark_gone = mark_gone;
                drain.window = None;
                tracing::info!(agent_id = %id, grace = ?grace, mark_gone, "agent drain changed");
            }
            None => {
                self.drains.insert(id.clone(), Drain { deadline: now + grace, mark_gone, drained: false, kills_sent: false, window: None });
                tracing::info!(agent_id = %id, grace = ?grace, mark_gone, "draining agent");
            }
        }
        self.record_drain(id, &mut out);
        self.rescind_agent_offers(id, &mut out);
        if self.agents.contains_key(id) {
            let _ = self.allocator.set_agent_active(id, false);
        }
        for framework in self.frameworks_with_tasks_on(id) {
            self.tell_draining(&framework, id, &mut out);
        }
        self.check_drain(id, now, &mut out);
        let message = if self.gone_agents.contains(id) {
            format!("agent {id} had no task left: drained and now gone")
        } else if self.drain_state(id) == DrainState::Drained {
            format!("agent {id} had no task left: drained")
        } else {
            format!("agent {id} is draining; tasks still running there are killed in {grace:?}")
        };
        Ok((self.drain_state(id), message, out))
    }

    /// Back to ACTIVE: offered again (once it is connected). Reactivating
    /// an active agent does nothing; a gone one cannot come back.
    pub fn reactivate_agent(&mut self, id: &AgentId) -> Result<(String, Vec<Output>), String> {
        if self.gone_agents.contains(id) {
            return Err(format!("agent {id} was marked gone; start it with a fresh work directory to bring the machine back"));
        }
        if self.windows.remove(id).is_some() {
            let mut out = vec![Output::Registry(delete(MAINTENANCE, id.as_str()))];
            // Its outstanding offers still name the window.
            self.rescind_agent_offers(id, &mut out);
            self.dirty = true;
            tracing::info!(agent_id = %id, "maintenance window cancelled");
            return Ok((format!("agent {id}'s maintenance window is cancelled"), out));
        }
        if self.drains.remove(id).is_none() {
            if self.agents.contains_key(id) || self.awaiting_agent(id) {
                return Ok((format!("agent {id} is active; nothing to do"), Vec::new()));
            }
            return Err(format!("agent {id} is not known to the broker"));
        }
        if self.agents.get(id).is_some_and(|a| a.reachable && a.conn.is_some()) {
            let _ = self.allocator.set_agent_active(id, true);
        }
        self.dirty = true;
        tracing::info!(agent_id = %id, "agent reactivated");
        Ok((format!("agent {id} is active again"), vec![Output::Registry(delete(MAINTENANCE, id.as_str()))]))
    }

    /// Schedules a maintenance window (`window` in Unix time): the agent
    /// stays offered, its offers carrying the window, until the start;
    /// then it drains with the start as its deadline; when the window
    /// ends it is active again. Scheduling again replaces the window (a
    /// window under way starts over: a drain at once, if its start has
    /// passed). Refused for an agent an operator drained, an unknown or
    /// gone one, an empty window or one that has ended. The outputs start
    /// with the registry write the answer must wait for.
    pub fn schedule_maintenance(&mut self, id: &AgentId, window: Unavailability, now: Duration) -> Result<(String, Vec<Output>), String> {
        if self.gone_agents.contains(id) {
            return Err(format!("agent {id} was marked gone; it cannot be scheduled for maintenance"));
        }
        if !self.agents.contains_key(id) && !self.awaiting_agent(id) && !self.drains.contains_key(id) {
            return Err(format!("agent {id} is not known to the broker"));
        }
        if self.drains.get(id).is_some_and(|d| d.window.is_none()) {
            return Err(format!(
                "agent {id} is {} by an operator's drain; reactivate it before scheduling a window",
                self.drain_state(id)
            ));
        }
        if window.duration.is_zero() {
            return Err("a maintenance window needs a duration > 0".to_owned());
        }
        let start = self.monotonic_time(window.start);
        if self.monotonic_time(window.end()) <= now {
            return Err(format!("the window ends at {:.3} (Unix seconds), which has passed", window.end().as_secs_f64()));
        }
        let mut out = Vec::new();
        if self.drains.remove(id).is_some() {
            // A window under way starts over with the new one.
            if self.agent_conn(id).is_some() {
                let _ = self.allocator.set_agent_active(id, true);
            }
        }
        self.windows.insert(id.clone(), window);
        tracing::info!(agent_id = %id, start = window.start.as_secs_f64(), duration = ?window.duration, "maintenance window scheduled");
        self.record_drain(id, &mut out);
        // Offers out now do not carry the window; new ones will.
        self.rescind_agent_offers(id, &mut out);
        self.dirty = true;
        for framework in self.frameworks_with_tasks_on(id) {
            self.tell_draining(&framework, id, &mut out);
        }
        self.check_windows(now, &mut out);
        let message = if now >= start {
            format!("agent {id}'s maintenance window has begun: it is draining until {:.0} (Unix seconds)", window.end().as_secs_f64())
        } else {
            format!(
                "agent {id} goes into maintenance in {:.0}s for {:.0}s; its offers say so until then",
                (start - now).as_secs_f64().ceil(),
                window.duration.as_secs_f64()
            )
        };
        Ok((message, out))
    }

    /// The agent's maintenance window (Unix time), scheduled or under way.
    pub fn unavailability(&self, id: &AgentId) -> Option<Unavailability> {
        self.windows.get(id).copied().or_else(|| self.drains.get(id).and_then(|d| d.window))
    }

    fn frameworks_with_tasks_on(&self, id: &AgentId) -> std::collections::BTreeSet<FrameworkId> {
        self.agents.get(id).map(|a| a.tasks.iter().map(|(f, _)| f.clone()).collect()).unwrap_or_default()
    }

    /// Timer work for windows: a window that starts drains its agent; a
    /// window that ends reactivates it.
    pub(super) fn check_windows(&mut self, now: Duration, out: &mut Vec<Output>) {
        let starting: Vec<(AgentId, Unavailability)> =
            self.windows.iter().filter(|(_, w)| self.monotonic_time(w.start) <= now).map(|(id, w)| (id.clone(), *w)).collect();
        for (id, window) in starting {
            self.windows.remove(&id);
            tracing::info!(agent_id = %id, "maintenance window begins; draining the agent");
            let deadline = self.monotonic_time(window.start);
            self.drains.insert(id.clone(), Drain { deadline, mark_gone: false, drained: false, kills_sent: false, window: Some(window) });
            self.record_drain(&id, out);
            self.rescind_agent_offers(&id, out);
            if self.agents.contains_key(&id) {
                let _ = self.allocator.set_agent_active(&id, false);
            }
            self.check_drain(&id, now, out);
        }
        let ending: Vec<AgentId> = self
            .drains
            .iter()
            .filter(|(_, d)| d.window.is_some_and(|w| self.monotonic_time(w.end()) <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ending {
            tracing::info!(agent_id = %id, "maintenance window ended");
            if let Ok((_, more)) = self.reactivate_agent(&id) {
                out.extend(more);
            }
        }
    }

    /// Removes a DRAINED agent for good.
    pub fn mark_agent_gone(&mut self, id: &AgentId) -> Result<(String, Vec<Output>), String> {
        if self.gone_agents.contains(id) {
            return Ok((format!("agent {id} is already gone"), Vec::new()));
        }
        let state = self.drain_state(id);
        if state != DrainState::Drained {
            let known = self.agents.contains_key(id) || self.awaiting_agent(id) || self.drains.contains_key(id);
            if !known {
                return Err(format!("agent {id} is not known to the broker"));
            }
            return Err(format!("agent {id} is {state}; only a drained agent can be marked gone (weir agent drain first)"));
        }
        let mut out = Vec::new();
        self.mark_agent_gone_now(id, &mut out);
        Ok((format!("agent {id} is gone"), out))
    }

    /// An agent's maintenance state, its deadline in Unix time.
    pub fn drain_state(&self, id: &AgentId) -> DrainState {
        match self.drains.get(id) {
            None => DrainState::Active,
            Some(d) if d.drained => DrainState::Drained,
            // To the millisecond: what the wire and the registry carry exactly.
            Some(d) => DrainState::Draining { deadline: Duration::from_millis(u64::try_from(self.unix_time(d.deadline).as_millis()).unwrap_or(u64::MAX)) },
        }
    }

    /// Agents marked gone, in id order.
    pub fn gone_agents(&self) -> impl Iterator<Item = &AgentId> {
        self.gone_agents.iter()
    }

    pub(super) fn is_gone(&self, id: &AgentId) -> bool {
        self.gone_agents.contains(id)
    }

    /// True if the agent must not be offered (DRAINING or DRAINED).
    pub(super) fn is_draining(&self, id: &AgentId) -> bool {
        self.drains.contains_key(id)
    }

    /// A draining agent re-registered: its kills (if due) go again on the
    /// new stream, and it stays unoffered.
    pub(super) fn drain_agent_reregistered(&mut self, id: &AgentId) {
        if let Some(d) = self.drains.get_mut(id) {
            d.kills_sent = false;
            let _ = self.allocator.set_agent_active(id, false);
        }
    }

    /// A re-subscribed framework hears of the drains and windows its
    /// tasks are under.
    pub(super) fn tell_drains_to(&self, framework: &FrameworkId, out: &mut Vec<Output>) {
        let draining = self.drains.iter().filter(|(_, d)| !d.drained).map(|(id, _)| id);
        for id in draining.chain(self.windows.keys()) {
            let has_tasks = self.agents.get(id).is_some_and(|a| a.tasks.iter().any(|(f, _)| f == framework));
            if has_tasks {
                self.tell_draining(framework, id, out);
            }
        }
    }

    /// AGENT_DRAINING to one framework: the drain's deadline, or for a
    /// window not begun its start.
    fn tell_draining(&self, framework: &FrameworkId, id: &AgentId, out: &mut Vec<Output>) {
        let Some(conn) = self.frameworks.get(framework).and_then(|f| f.conn) else { return };
        let unavailability = self.unavailability(id);
        let deadline = match (self.drain_state(id), unavailability) {
            (DrainState::Draining { deadline }, _) => deadline.as_secs_f64(),
            (DrainState::Active, Some(window)) => window.start.as_secs_f64(),
            _ => return,
        };
        out.push(Output::Framework(
            conn,
            event(v1::event::Kind::AgentDraining(v1::event::AgentDraining {
                agent_id: id.to_string(),
                hostname: self.agents.get(id).map(|a| a.host.hostname.clone()).unwrap_or_default(),
                deadline,
                unavailability: unavailability.as_ref().map(convert::unavailability_to_proto),
            })),
        ));
    }

    /// Timer work for drains: kills at the deadline, DRAINED when no task
    /// is left, gone after that if asked. Looks only at agents under
    /// maintenance.
    pub(super) fn check_drains(&mut self, now: Duration, out: &mut Vec<Output>) {
        let due: Vec<AgentId> = self.drains.iter().filter(|(_, d)| !d.drained).map(|(id, _)| id.clone()).collect();
        for id in due {
            self.check_drain(&id, now, out);
        }
    }

    fn check_drain(&mut self, id: &AgentId, now: Duration, out: &mut Vec<Output>) {
        // A new leader does not know what an absent agent runs until it is
        // back (or recovery gives up on it).
        if self.awaiting_agent(id) {
            return;
        }
        let Some(d) = self.drains.get(id).cloned() else { return };
        if d.drained {
            return;
        }
        let no_task_left = self.agents.get(id).is_none_or(|a| a.tasks.is_empty());
        if no_task_left {
            tracing::info!(agent_id = %id, "agent drained");
            if let Some(d) = self.drains.get_mut(id) {
                d.drained = true;
            }
            if d.mark_gone {
                self.mark_agent_gone_now(id, out);
            } else {
                self.record_drain(id, out);
            }
            return;
        }
        if d.kills_sent || now < d.deadline {
            return;
        }
        let tasks: Vec<_> = self.agents.get(id).map(|a| a.tasks.iter().cloned().collect()).unwrap_or_default();
        // Kills go only on a live stream; without one they go when the
        // agent re-registers (which clears `kills_sent`).
        let Some(conn) = self.agent_conn(id) else { return };
        tracing::info!(agent_id = %id, tasks = tasks.len(), "drain deadline passed; killing the agent's tasks");
        for (framework, task) in &tasks {
            if self.tasks.get(&(framework.clone(), task.clone())).is_some_and(|t| !t.state.is_terminal()) {
                out.push(Output::Agent(conn, kill_task_message(framework, task)));
            }
        }
        if let Some(d) = self.drains.get_mut(id) {
            d.kills_sent = true;
        }
    }

    /// Removes a drained agent from the books and the registry for good.
    fn mark_agent_gone_now(&mut self, id: &AgentId, out: &mut Vec<Output>) {
        self.drains.remove(id);
        self.windows.remove(id);
        self.gone_agents.insert(id.clone());
        let record = v1::AgentMaintenance { agent_id: id.to_string(), drain: v1::DrainState::DrainDrained as i32, gone: true, ..Default::default() };
        out.push(Output::Registry(put(MAINTENANCE, id.as_str(), &record)));
        if self.agents.contains_key(id) {
            self.drop_agent_from_allocator(id, out);
        }
        if let Some(agent) = self.agents.remove(id) {
            if let Some(conn) = agent.conn {
                self.agent_conns.remove(&conn);
                out.push(Output::Agent(
                    conn,
                    agent_message(v1::broker_message::Kind::Refused(v1::broker_message::Refused {
                        message: format!("agent {id} was marked gone by an operator"),
                    })),
                ));
                out.push(Output::Close(conn));
            }
        }
        self.forget_agent(id, out);
        // The machine is gone for good: so are its reservations and volumes.
        if self.registered_resources.remove(id).is_some() {
            out.push(Output::Registry(delete(super::recovery::RESOURCES, id.as_str())));
        }
        self.dirty = true;
        tracing::warn!(agent_id = %id, "agent marked gone");
    }

    fn record_drain(&self, id: &AgentId, out: &mut Vec<Output>) {
        let mark_gone = match (self.drains.get(id), self.windows.contains_key(id)) {
            (Some(d), _) => d.mark_gone,
            (None, true) => false,
            (None, false) => return,
        };
        let (drain, deadline) = convert::drain_state_to_proto(self.drain_state(id));
        let window = self.unavailability(id).as_ref().map(convert::unavailability_to_proto);
        let record = v1::AgentMaintenance { agent_id: id.to_string(), drain: drain as i32, deadline, mark_gone, gone: false, window };
        out.push(Output::Registry(put(MAINTENANCE, id.as_str(), &record)));
    }

    /// Reads one `maintenance` record at recovery.
    pub(super) fn recover_drain(&mut self, record: &Record) -> Result<(), String> {
        let m = v1::AgentMaintenance::decode(record.value.as_slice()).map_err(|e| format!("not an AgentMaintenance: {e}"))?;
        let id = convert::id::<AgentId>("agent id", &record.key).map_err(|e| e.to_string())?;
        if m.agent_id != record.key {
            return Err(format!("record names agent {:?}", m.agent_id));
        }
        if m.gone {
            self.gone_agents.insert(id);
            return Ok(());
        }
        let state = convert::drain_state_from_proto("drain", m.drain, m.deadline).map_err(|e| e.to_string())?;
        let window = m.window.as_ref().map(|w| convert::unavailability_from_proto("window", w)).transpose().map_err(|e| e.to_string())?;
        let drain = match (state, window) {
            (DrainState::Active, None) => return Err("an ACTIVE agent without a window has no maintenance record".to_owned()),
            (DrainState::Active, Some(w)) => {
                self.windows.insert(id, w);
                return Ok(());
            }
            // A window's drain is recorded with its start as the deadline.
            (DrainState::Drained, Some(w)) => {
                Drain { deadline: self.monotonic_time(w.start), mark_gone: m.mark_gone, drained: true, kills_sent: false, window }
            }
            (DrainState::Drained, None) => Drain { deadline: Duration::ZERO, mark_gone: m.mark_gone, drained: true, kills_sent: false, window },
            (DrainState::Draining { deadline }, _) => {
                Drain { deadline: self.monotonic_time(deadline), mark_gone: m.mark_gone, drained: false, kills_sent: false, window }
            }
        };
        self.drains.insert(id, drain);
        Ok(())
    }

    /// Unix time of the monotonic `t` (see [`BrokerCore::timestamp`]).
    fn unix_time(&self, t: Duration) -> Duration {
        (self.unix_started_at + t).saturating_sub(self.started_at)
    }

    /// Monotonic time of the Unix time `t`; a time before this core
    /// started is its start.
    fn monotonic_time(&self, t: Duration) -> Duration {
        self.started_at + t.saturating_sub(self.unix_started_at)
    }
}
