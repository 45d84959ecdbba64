//! The YARN side in the simulation: the real `YarnCore` (the shim's books
//! and scheduler) as a framework, driven by scripted YARN clients and
//! ApplicationMasters.
//!
//! What is real: every decision of the YARN core (placing AM containers
//! and asks on offers, node managers per agent, declines, kills, revives,
//! attempts that fail and retry, completed containers) and its conversions
//! of offers and task updates (`weir_yarn_rm::framework`, the same the
//! shim uses). What is scripted: the client submitting applications and
//! the AMs (register when their container was started, ask for a few
//! containers, release some, finish). Node manager and container tasks
//! run as simulated processes that live until killed; starting an AM
//! through the node manager always succeeds here.
//!
//! Invariants checked: the core's own (`check_invariants`) after every
//! event it handles; at the end, its live containers and node managers are
//! exactly the broker's live tasks of this framework (no container the
//! broker lost track of, no broker task YARN forgot).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use weir_model::TaskId;
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;
use weir_yarn_api::ids::{ApplicationId, AttemptId, ContainerId};
use weir_yarn_api::resource::Capacity;
use weir_yarn_rm::core::{Now, YarnCore};
use weir_yarn_rm::framework::{is_unreachable, offer_from_proto, task_event};
use weir_yarn_rm::rm_core::{AmEndpoint, FinalStatus, RmCore, Submission};
use weir_yarn_rm::shim::nodes_from_agents;
use weir_yarn_rm::scheduler::{AllocateCall, AllocateOutcome, Ask, Effect, Scheduler, SchedulerConfig, TaskPlan as YarnTask};

use crate::framework::{FrameworkCtx, SimFramework, TaskPlan};
use crate::world::UNIX_ORIGIN;

/// The one queue (and broker role) of the simulated YARN cluster.
const QUEUE: &str = "default";
/// At most this many applications not yet over.
const MAX_APPS: usize = 3;

/// One application as its client and AM see it.
#[derive(Debug)]
struct App {
    id: ApplicationId,
    /// The attempt whose AM container was started (`StartAm`), waiting
    /// to register.
    started: Option<AttemptId>,
    /// The attempt whose AM registered and calls allocate.
    registered: Option<AttemptId>,
    response_id: i32,
    asked: bool,
    /// Containers the AM was given and holds.
    held: BTreeSet<ContainerId>,
    /// When the AM finishes (simulated time).
    finish_at: Duration,
    done: bool,
}

/// What the YARN side got done in a run, so a test can tell a run that
/// exercised it from one where nothing happened.
#[derive(Debug, Clone, Default)]
pub struct YarnStats {
    pub submitted: u64,
    pub ams_registered: u64,
    pub containers_allocated: u64,
    pub containers_completed: u64,
    pub ams_finished: u64,
}

pub struct YarnParticipant {
    stats: Rc<RefCell<YarnStats>>,
    label: String,
    id: String,
    core: YarnCore,
    apps: BTreeMap<ApplicationId, App>,
    quiescing: bool,
    /// The core's own invariants broken, first one kept.
    broken: Option<String>,
}

impl YarnParticipant {
    pub fn new(label: impl Into<String>) -> YarnParticipant {
        let books = RmCore::new(UNIX_ORIGIN.as_millis() as i64, &[QUEUE.to_owned()], 50).unwrap_or_else(|e| panic!("the simulation's queue is valid: {e}"));
        let config = SchedulerConfig {
            nm_mem_mb: weir_model::Milli::from_units(64),
            locality_delay_ms: 1_000,
            am_liveness_ms: 30_000,
            nm_idle_ms: 5_000,
            am_exit_grace_ms: 2_000,
            busy_refuse_ms: 500,
            idle_refuse_ms: 5_000,
            ..SchedulerConfig::default()
        };
        YarnParticipant {
            stats: Rc::default(),
            label: label.into(),
            id: String::new(),
            core: YarnCore::new(books, Scheduler::new(config)),
            apps: BTreeMap::new(),
            quiescing: false,
            broken: None,
        }
    }

    /// A view of the counters that stays readable after the participant
    /// is handed to the world.
    pub fn stats(&self) -> Rc<RefCell<YarnStats>> {
        self.stats.clone()
    }

    fn now(ctx: &FrameworkCtx) -> Now {
        Now { mono: ctx.now, unix_ms: (UNIX_ORIGIN + ctx.now).as_millis() as i64 }
    }

    fn call(&self, kind: v1::call::Kind) -> v1::Call {
        v1::Call { framework_id: self.id.clone(), kind: Some(kind) }
    }

    fn check(&mut self) {
        if self.broken.is_none() {
            if let Err(e) = self.core.check_invariants() {
                self.broken = Some(e);
            }
        }
    }

    /// What the core decided, as scheduler-API calls (the shim's
    /// `carry_out`, with simulated tasks).
    fn drain(&mut self) -> Vec<v1::Call> {
        self.check();
        let mut calls = Vec::new();
        for effect in self.core.take_effects() {
            let kind = match effect {
                Effect::Launch { offer_id, agent_id, tasks } => {
                    let tasks = tasks.into_iter().map(|t| task_info(t, agent_id.as_str())).collect();
                    v1::call::Kind::Accept(v1::call::Accept {
                        offer_ids: vec![offer_id.to_string()],
                        operations: vec![v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })), ..Default::default() }],
                        filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
                    })
                }
                Effect::Decline { offer_id, refuse_ms } => v1::call::Kind::Decline(v1::call::Decline {
                    offer_ids: vec![offer_id.to_string()],
                    filters: Some(v1::Filters { refuse_seconds: Some(refuse_ms.max(0) as f64 / 1000.0) }),
                }),
                Effect::Kill { task_id, agent_id } => {
                    v1::call::Kind::Kill(v1::call::Kill { task_id: task_id.to_string(), agent_id: agent_id.to_string() })
                }
                Effect::Revive => v1::call::Kind::Revive(v1::call::Revive { roles: vec![], data: None }),
                Effect::Data { host_bytes } => v1::call::Kind::Revive(v1::call::Revive {
                    roles: vec![],
                    data: Some(v1::DataLocality { host_bytes: host_bytes.into_iter().collect(), ..Default::default() }),
                }),
                Effect::Reconcile { tasks } => v1::call::Kind::Reconcile(v1::call::Reconcile {
                    tasks: tasks
                        .into_iter()
                        .map(|(t, a)| v1::call::reconcile::Task { task_id: t.to_string(), agent_id: a.to_string() })
                        .collect(),
                }),
                // The simulated shim's queues are fixed: no refreshQueues.
                Effect::Roles { .. } => continue,
                Effect::StartAm { application, container } => {
                    // The node manager's startContainers, as if it answered
                    // at once: the AM will register on a later tick.
                    if let Some(app) = self.apps.get_mut(&application) {
                        app.started = Some(container.id.attempt);
                    }
                    continue;
                }
            };
            calls.push(self.call(kind));
        }
        calls
    }

    fn submit(&mut self, ctx: &mut FrameworkCtx) {
        let Ok((id, _)) = self.core.rm_mut().new_application() else { return };
        let submission = Submission {
            id,
            name: format!("sim-{}", id.id),
            queue: QUEUE.to_owned(),
            user: "sim".to_owned(),
            application_type: "SIM".to_owned(),
            tags: Vec::new(),
            priority: 0,
            am_resource: Some(Capacity { memory_mb: 256, vcores: 1 }),
            max_attempts: 2,
            unmanaged_am: false,
            am_launch: Some(Default::default()),
        };
        let now = Self::now(ctx);
        if self.core.rm_mut().submit(submission, now.unix_ms).is_ok() {
            self.stats.borrow_mut().submitted += 1;
            let finish_at = ctx.now + ctx.rng.millis(5_000, 20_000);
            self.apps.insert(
                id,
                App { id, started: None, registered: None, response_id: 0, asked: false, held: BTreeSet::new(), finish_at, done: false },
            );
        }
    }

    /// One heartbeat of every AM: register once started, ask, take what
    /// came, release a little, finish when its time is up.
    fn run_ams(&mut self, ctx: &mut FrameworkCtx) {
        let now = Self::now(ctx);
        let ids: Vec<ApplicationId> = self.apps.keys().copied().collect();
        for id in ids {
            let Some(app) = self.apps.get_mut(&id) else { continue };
            if app.done {
                continue;
            }
            if let Some(attempt) = app.started.take() {
                let endpoint = AmEndpoint { host: "sim".into(), rpc_port: 1, tracking_url: String::new() };
                if self.core.register(attempt, endpoint, now).is_ok() {
                    self.stats.borrow_mut().ams_registered += 1;
                    app.registered = Some(attempt);
                    app.response_id = 0;
                    app.asked = false;
                    app.held.clear();
                }
            }
            let Some(attempt) = app.registered else { continue };
            if ctx.now >= app.finish_at || self.quiescing {
                if self.core.finish(attempt, FinalStatus::Succeeded, "", now).is_ok() {
                    self.stats.borrow_mut().ams_finished += 1;
                }
                app.done = true;
                continue;
            }
            let mut call = AllocateCall { response_id: app.response_id, ..Default::default() };
            if !app.asked {
                let want = 1 + ctx.rng.below(4) as i32;
                call.asks.push(Ask {
                    priority: 1,
                    resource_name: "*".into(),
                    capability: Capacity { memory_mb: 128, vcores: 1 },
                    num_containers: want,
                    relax_locality: true,
                    allocation_request_id: 0,
                });
                app.asked = true;
            }
            if let Some(&victim) = app.held.iter().next().filter(|_| ctx.rng.chance(0.05)) {
                call.releases.push(victim);
                app.held.remove(&victim);
            }
            match self.core.allocate(attempt, call, now) {
                Ok(AllocateOutcome::Fresh(result)) => {
                    app.response_id = result.response_id;
                    let mut stats = self.stats.borrow_mut();
                    stats.containers_allocated += result.allocated.len() as u64;
                    stats.containers_completed += result.completed.len() as u64;
                    app.held.extend(result.allocated.iter().map(|c| c.id));
                    for c in &result.completed {
                        app.held.remove(&c.id);
                    }
                    if result.shutdown {
                        app.done = true;
                    }
                }
                Ok(AllocateOutcome::Replay(_)) => {}
                // The attempt failed meanwhile (its AM container was lost);
                // a new attempt's AM starts from scratch.
                Err(_) => app.registered = None,
            }
        }
        self.apps.retain(|_, a| !(a.done && ctx.rng.chance(0.5)));
    }
}

/// A YARN task as the simulated launcher runs it: until killed.
fn task_info(plan: YarnTask, agent_id: &str) -> v1::TaskInfo {
    let forever = TaskPlan { run_for: None, exit_code: 0, ignores_term: false }.command();
    let (task_id, resources) = match plan {
        YarnTask::NodeManager { task_id, port, cpus, mem_mb, .. } => {
            let spec = format!("cpus:{};mem:{};ports:[{port}-{port}]", cpus.as_f64(), mem_mb.as_f64());
            (task_id, weir_model::ResourceSet::parse(&spec).unwrap_or_default())
        }
        YarnTask::Container { task_id, capacity, .. } => {
            let spec = format!("cpus:{};mem:{}", capacity.vcores.max(0), capacity.memory_mb.max(0));
            (task_id, weir_model::ResourceSet::parse(&spec).unwrap_or_default())
        }
    };
    v1::TaskInfo {
        task_id: task_id.to_string(),
        name: task_id.to_string(),
        agent_id: agent_id.to_owned(),
        resources: resources_to_proto(&resources),
        command: Some(v1::CommandInfo { shell: true, value: forever, ..Default::default() }),
        kill_grace_seconds: 1.0,
        ..Default::default()
    }
}

impl SimFramework for YarnParticipant {
    fn label(&self) -> &str {
        &self.label
    }

    fn failover_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn subscribe(&mut self, _ctx: &mut FrameworkCtx) -> v1::Call {
        self.call(v1::call::Kind::Subscribe(v1::call::Subscribe {
        data: None,
            framework: Some(v1::FrameworkInfo {
                id: self.id.clone(),
                name: self.label.clone(),
                user: "yarn".into(),
                roles: vec![QUEUE.to_owned()],
                failover_timeout_seconds: self.failover_timeout().as_secs_f64(),
                ..Default::default()
            }),
        }))
    }

    fn on_event(&mut self, event: &v1::Event, ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        let now = Self::now(ctx);
        let mut calls = Vec::new();
        match &event.kind {
            Some(v1::event::Kind::Subscribed(s)) => {
                self.id = s.framework_id.clone();
                self.core.reconcile(now);
            }
            Some(v1::event::Kind::Offers(o)) => {
                let mut offers = Vec::new();
                for offer in &o.offers {
                    match offer_from_proto(offer) {
                        Ok(offer) => offers.push(offer),
                        Err(_) => calls.push(self.call(v1::call::Kind::Decline(v1::call::Decline {
                            offer_ids: vec![offer.id.clone()],
                            filters: None,
                        }))),
                    }
                }
                self.core.offers(offers, now);
            }
            Some(v1::event::Kind::Update(u)) => {
                if let Some(status) = &u.status {
                    if let Some(event) = task_event(status) {
                        let (task, agent) = (TaskId::new(status.task_id.clone()), weir_model::AgentId::new(status.agent_id.clone()));
                        self.core.task_update(&task, &agent, event, now);
                        if is_unreachable(status) {
                            self.core.unreachable(&task, &agent);
                        }
                    }
                    if !status.uuid.is_empty() {
                        calls.push(self.call(v1::call::Kind::Acknowledge(v1::call::Acknowledge {
                            agent_id: status.agent_id.clone(),
                            task_id: status.task_id.clone(),
                            uuid: status.uuid.clone(),
                        })));
                    }
                }
            }
            _ => {}
        }
        calls.extend(self.drain());
        calls
    }

    fn tick(&mut self, ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        if self.core.rm().nodes(&[]).is_empty() {
            self.core.observe_nodes(nodes_from_agents(ctx.pool), Self::now(ctx));
        }
        if !self.quiescing && self.apps.values().filter(|a| !a.done).count() < MAX_APPS && ctx.rng.chance(0.15) {
            self.submit(ctx);
        }
        let now = Self::now(ctx);
        // The shim polls the broker's agents for its nodes; here they are
        // read on every tick through the same conversion.
        self.core.observe_nodes(nodes_from_agents(ctx.pool), now);
        self.core.tick(now);
        self.run_ams(ctx);
        self.drain()
    }

    fn on_disconnected(&mut self, _now: Duration) {}

    fn quiesce(&mut self, ctx: &mut FrameworkCtx) -> Vec<v1::Call> {
        self.quiescing = true;
        let now = Self::now(ctx);
        // Applications whose AM never registered are killed, as a client
        // giving up would; the others finish on their AM's next heartbeat.
        let waiting: Vec<ApplicationId> = self.apps.values().filter(|a| a.registered.is_none() && !a.done).map(|a| a.id).collect();
        for id in waiting {
            let _ = self.core.rm_mut().kill(id, Some("the simulation is winding down"), now.unix_ms);
            if let Some(app) = self.apps.get_mut(&id) {
                app.done = true;
            }
        }
        self.run_ams(ctx);
        self.drain()
    }

    fn check_step(&self) -> Result<(), String> {
        match &self.broken {
            Some(e) => Err(format!("{}: the YARN core's invariants: {e}", self.label)),
            None => Ok(()),
        }
    }

    fn check_final(&self, live_broker_tasks: &BTreeSet<String>) -> Vec<String> {
        let ours: BTreeSet<String> = self.core.scheduler().live_tasks().into_iter().map(|(t, _)| t.to_string()).collect();
        let mut problems = Vec::new();
        for t in ours.difference(live_broker_tasks) {
            problems.push(format!("{}: YARN counts {t} as live, but the broker has no live task for it", self.label));
        }
        for t in live_broker_tasks.difference(&ours) {
            problems.push(format!("{}: the broker runs {t} for YARN, but the YARN core does not know it", self.label));
        }
        problems
    }
}
