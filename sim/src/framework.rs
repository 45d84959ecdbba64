//! Frameworks in the simulation: anything that speaks the scheduler API
//! (`weir.v1` Call/Event) implements [`SimFramework`], and the world runs
//! it: opens its stream, delivers its events, ticks it, breaks its stream
//! and reconnects it. The world records every call and event itself, so
//! the history checker needs nothing from the implementation.
//!
//! [`ScriptedFramework`] is a native framework with random habits: it
//! launches tasks of random sizes and durations, declines, holds offers
//! until they time out, kills, reconciles, and acknowledges every update
//! that carries a uuid. A YARN participant (the shim's deterministic core
//! behind a scripted YARN client and AMs) implements the same trait.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto};
use weir_proto::v1;

use crate::rng::SimRng;

/// What a framework may use while it handles an event or a tick.
pub struct FrameworkCtx<'a> {
    pub now: Duration,
    /// The run's one random stream: draw from it, never from elsewhere.
    pub rng: &'a mut SimRng,
    /// The broker's agents as its operator API shows them now.
    pub pool: &'a [weir_model::AgentSummary],
}

/// A participant that talks to the broker as a framework.
pub trait SimFramework {
    /// A short label for traces ("fw0", "yarn").
    fn label(&self) -> &str;
    /// The failover timeout it subscribes with. The world keeps its
    /// disconnections shorter than this, except when it abandons it.
    fn failover_timeout(&self) -> Duration;
    /// The first call on a new stream: SUBSCRIBE, naming its framework id
    /// once it has one.
    fn subscribe(&mut self, ctx: &mut FrameworkCtx) -> v1::Call;
    /// An event arrived on the current stream.
    fn on_event(&mut self, event: &v1::Event, ctx: &mut FrameworkCtx) -> Vec<v1::Call>;
    /// Called every [`FRAMEWORK_TICK`] while subscribed.
    fn tick(&mut self, ctx: &mut FrameworkCtx) -> Vec<v1::Call>;
    /// The stream ended (broken, closed by the broker, or the broker
    /// failed over); offers held are void. A new stream follows.
    fn on_disconnected(&mut self, now: Duration);
    /// The final, fault-free phase begins: stop starting new work, give
    /// back what is held and reconcile, so every task reaches an answer.
    fn quiesce(&mut self, ctx: &mut FrameworkCtx) -> Vec<v1::Call>;
    /// The participant's own books, checked after every event (a YARN
    /// core's invariants, say).
    fn check_step(&self) -> Result<(), String> {
        Ok(())
    }
    /// At the end of the quiet phase, given the broker's live tasks of this
    /// framework: whatever does not match the participant's own books.
    fn check_final(&self, _live_broker_tasks: &std::collections::BTreeSet<String>) -> Vec<String> {
        Vec::new()
    }
}

pub const FRAMEWORK_TICK: Duration = Duration::from_millis(500);

/// The command of a simulated task: `sim:RUN_MS:EXIT_CODE:IGNORES_TERM`.
/// RUN_MS 0 runs until killed. The simulated launcher reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPlan {
    pub run_for: Option<Duration>,
    pub exit_code: i32,
    pub ignores_term: bool,
}

impl TaskPlan {
    pub fn random(rng: &mut SimRng) -> TaskPlan {
        TaskPlan {
            run_for: if rng.chance(0.2) { None } else { Some(rng.millis(300, 15_000)) },
            exit_code: if rng.chance(0.8) { 0 } else { 1 + rng.below(3) as i32 },
            ignores_term: rng.chance(0.2),
        }
    }

    pub fn command(&self) -> String {
        format!("sim:{}:{}:{}", self.run_for.map_or(0, |d| d.as_millis()), self.exit_code, u8::from(self.ignores_term))
    }

    /// Reads a plan back; anything else runs forever and exits 0.
    pub fn parse(command: &str) -> TaskPlan {
        let mut parts = command.strip_prefix("sim:").unwrap_or("0:0:0").split(':');
        let mut next = || parts.next().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
        let run = next();
        let code = next();
        let ignores = next();
        TaskPlan {
            run_for: (run > 0).then(|| Duration::from_millis(run)),
            exit_code: code as i32,
            ignores_term: ignores == 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Belief {
    state: TaskState,
    agent: String,
}

/// A native framework with random but plausible habits.
pub struct ScriptedFramework {
    label: String,
    id: String,
    failover_timeout: Duration,
    next_task: u64,
    tasks: BTreeMap<String, Belief>,
    /// Offers kept without an answer, oldest first (some time out).
    held: Vec<v1::Offer>,
    quiescing: bool,
    /// At most this many tasks not known to be over.
    max_live: usize,
}

impl ScriptedFramework {
    pub fn new(label: impl Into<String>, failover_timeout: Duration) -> ScriptedFramework {
        ScriptedFramework {
            label: label.into(),
            id: String::new(),
            failover_timeout,
            next_task: 0,
            tasks: BTreeMap::new(),
            held: Vec::new(),
            quiescing: false,
            max_live: 12,
        }
    }

    fn call(&self, kind: v1::call::Kind) -> v1::Call {
        v1::Call { framework_id: self.id.clone(), kind: Some(kind) }
    }

    fn live(&self) -> usize {
        self.tasks.values().filter(|b| !b.state.is_terminal()).count()
    }

    fn reconcile_explicit(&self) -> v1::Call {
        let tasks = self
            .tasks
            .iter()
            .filter(|(_, b)| !b.state.is_terminal())
            .map(|(t, b)| v1::call::reconcile::Task { task_id: t.clone(), agent_id: b.agent.clone() })
            .collect();
        self.call(v1::call::Kind::Reconcile(v1::call::Reconcile { tasks }))
    }

    fn decline(&self, offer: &v1::Offer, ctx: &mut FrameworkCtx) -> v1::Call {
        let refuse = ctx.rng.below(2000) as f64 / 1000.0;
        self.call(v1::call::Kind::Decline(v1::call::Decline {
            offer_ids: vec![offer.id.clone()],
            filters: Some(v1::Filters { refuse_seconds: Some(refuse) }),
        }))
    }

    /// Launches a few tasks of random sizes that fit in the offer.
    fn launch(&mut self, offer: &v1::Offer, ctx: &mut FrameworkCtx) -> v1::Call {
        let mut left = resources_from_proto("offer", &offer.resources).map(|r| r.total()).unwrap_or_default();
        let mut tasks = Vec::new();
        let want = 1 + ctx.rng.below(3);
        for _ in 0..want {
            if self.live() + tasks.len() >= self.max_live {
                break;
            }
            let cpus = (1 + ctx.rng.below(10)) as f64 / 10.0;
            let mem = 16 * (1 + ctx.rng.below(16));
            let Ok(size) = ResourceSet::parse(&format!("cpus:{cpus};mem:{mem}")) else { break };
            let Ok(rest) = left.checked_sub(&size.total()) else { break };
            left = rest;
            self.next_task += 1;
            let task_id = format!("{}-t{}", self.label, self.next_task);
            let plan = TaskPlan::random(ctx.rng);
            tasks.push(v1::TaskInfo {
                task_id: task_id.clone(),
                name: task_id.clone(),
                agent_id: offer.agent_id.clone(),
                resources: resources_to_proto(&size),
                command: Some(v1::CommandInfo { shell: true, value: plan.command(), ..Default::default() }),
                kill_grace_seconds: 1.0,
                ..Default::default()
            });
            self.tasks.insert(task_id, Belief { state: TaskState::Staging, agent: offer.agent_id.clone() });
        }
        let refuse = ctx.rng.below(1000) as f64 / 1000.0;
        self.call(v1::call::Kind::Accept(v1::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })), ..Default::default() }],
            filters: Some(v1::Filters { refuse_seconds: Some(refuse) }),
        }))
    }
}

/// SUBSCRIBE for a simulated framework: `id` empty the first time, its
/// own id when it fails over.
pub(crate) fn subscribe_call(id: &str, label: &str, roles: Vec<String>, failover_timeout: Duration) -> v1::Call {
    let info = v1::FrameworkInfo {
        id: id.to_owned(),
        name: label.to_owned(),
        roles,
        failover_timeout_seconds: failover_timeout.as_secs_f64(),
        user: "sim".into(),
        hostname: "sim".into(),
        webui_url: String::new(),
        principal: String::new(),
        capabilities: Vec::new(),
    };
    v1::Call { framework_id: id.to_owned(), kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe { framework: Some(info), data: None })) }
}

impl SimFramework for ScriptedFramework {
    fn label(&self) -> &str {
        &self.label
    }

    fn failover_timeout(&self) -> Duration {
        self.failover_timeout
    }

    fn subscribe(&mut self, _ctx: &mut FrameworkCtx) -> v1::Call {
        subscribe_call(&self.id, &self.label, Vec::new(), self.failover_timeout)
    }

    fn on_event(&mut self, event: &v1::Event, ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        match &event.kind {
            Some(v1::event::Kind::Subscribed(s)) => {
                self.id = s.framework_id.clone();
                // After any (re)connection: ask about everything not known
                // to be over, including launches that may have been lost.
                vec![self.reconcile_explicit()]
            }
            Some(v1::event::Kind::Offers(offers)) => {
                let mut calls = Vec::new();
                for offer in &offers.offers {
                    let roll = ctx.rng.below(100);
                    if self.quiescing || self.live() >= self.max_live || (15..35).contains(&roll) {
                        calls.push(self.decline(offer, ctx));
                    } else if roll < 15 {
                        self.held.push(offer.clone());
                    } else {
                        calls.push(self.launch(offer, ctx));
                    }
                }
                calls
            }
            Some(v1::event::Kind::Rescind(r)) => {
                self.held.retain(|o| o.id != r.offer_id);
                Vec::new()
            }
            Some(v1::event::Kind::Update(u)) => {
                let Some(status) = &u.status else { return Vec::new() };
                if let Ok(state) = task_state_from_proto("state", status.state) {
                    let agent = if status.agent_id.is_empty() {
                        self.tasks.get(&status.task_id).map(|b| b.agent.clone()).unwrap_or_default()
                    } else {
                        status.agent_id.clone()
                    };
                    self.tasks.insert(status.task_id.clone(), Belief { state, agent });
                }
                if status.uuid.is_empty() {
                    return Vec::new();
                }
                vec![self.call(v1::call::Kind::Acknowledge(v1::call::Acknowledge {
                    agent_id: status.agent_id.clone(),
                    task_id: status.task_id.clone(),
                    uuid: status.uuid.clone(),
                }))]
            }
            _ => Vec::new(),
        }
    }

    fn tick(&mut self, ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        let mut calls = Vec::new();
        if !self.held.is_empty() && ctx.rng.chance(0.1) {
            // Answer the oldest held offer, possibly long after it expired.
            let offer = self.held.remove(0);
            if self.quiescing || ctx.rng.chance(0.5) {
                calls.push(self.decline(&offer, ctx));
            } else {
                calls.push(self.launch(&offer, ctx));
            }
        }
        if !self.quiescing && ctx.rng.chance(0.04) {
            let live: Vec<(String, String)> =
                self.tasks.iter().filter(|(_, b)| !b.state.is_terminal()).map(|(t, b)| (t.clone(), b.agent.clone())).collect();
            if let Some((task_id, agent_id)) = ctx.rng.pick(&live).cloned() {
                calls.push(self.call(v1::call::Kind::Kill(v1::call::Kill { task_id, agent_id })));
            }
        }
        if self.quiescing && ctx.rng.chance(0.1) {
            // Until every task is accounted for, ask again now and then
            // (Mesos' reconciliation advice): an UNREACHABLE answer, or
            // none while a new leader recovers, is not the last word.
            calls.push(self.reconcile_explicit());
        } else if ctx.rng.chance(0.02) {
            calls.push(if ctx.rng.chance(0.5) {
                self.reconcile_explicit()
            } else {
                self.call(v1::call::Kind::Reconcile(v1::call::Reconcile { tasks: Vec::new() }))
            });
        }
        if !self.quiescing && ctx.rng.chance(0.02) {
            calls.push(self.call(v1::call::Kind::Revive(v1::call::Revive { roles: Vec::new(), data: None })));
        }
        calls
    }

    fn on_disconnected(&mut self, _now: Duration) {
        self.held.clear();
    }

    fn quiesce(&mut self, ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        self.quiescing = true;
        let held = std::mem::take(&mut self.held);
        let mut calls: Vec<v1::Call> = held.iter().map(|o| self.decline(o, ctx)).collect();
        calls.push(self.reconcile_explicit());
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_from_its_command() {
        let mut rng = SimRng::new(1);
        for _ in 0..100 {
            let plan = TaskPlan::random(&mut rng);
            assert_eq!(TaskPlan::parse(&plan.command()), plan);
        }
    }
}
