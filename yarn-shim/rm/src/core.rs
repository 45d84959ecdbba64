//! The one YARN core: the ResourceManager's books (`rm_core`: applications,
//! queues, nodes) and its scheduler (`scheduler`: attempts, asks,
//! containers, node managers) as a single deterministic state machine.
//!
//! [`YarnCore`] is plain data with no I/O, no clock and no locks: time
//! comes in as a [`Now`], and what the shell must do (launch, decline,
//! kill, revive, start an AM) is kept in an outbox that the owner drains
//! with [`YarnCore::take_effects`] after every input. No wire bytes are
//! made and nothing is signed in here: the protocol services encode and
//! sign what the core decided, outside it.
//!
//! In the running shim one task owns the core ([`spawn`]); the client
//! protocol, the AM protocol, the node poller and the framework loop send
//! it work through a bounded channel ([`CoreHandle::call`]), one job at a
//! time, in arrival order. The simulation drives the same type directly.
//!
//! Invariants (`check_invariants`): those of the books and of the
//! scheduler, and every effect a call produced reaches the outbox.
//!
//! For the client protocol's attempt and container reports the core also
//! keeps a small [`Seen`] ledger, written only from what passes through it
//! (AM starts, allocations, registrations, aborts) and pruned on every
//! tick to the live containers and the applications the books still hold.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use weir_model::Clock;
use weir_yarn_api::ids::{ApplicationId, AttemptId, ContainerId};

use crate::rm_core::{AmEndpoint, AppState, FinalStatus, ObservedNode, RmCore, RmError};
use crate::scheduler::{AllocateCall, AllocateOutcome, Allocated, AmError, Effect, Offer, Registered, Scheduler, TaskEvent};

/// The time of one input, read once by the shell: `mono` (monotonic,
/// since the shell's clock started) for every deadline and timer;
/// `unix_ms` (wall clock) only for what clients see (start and finish
/// times, token dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Duration,
    pub unix_ms: i64,
}

impl Now {
    pub fn from_clock(clock: &dyn Clock) -> Now {
        Now { mono: clock.now(), unix_ms: clock.unix_millis() }
    }

    /// Monotonic time in whole milliseconds, as the scheduler's timers
    /// count.
    pub fn mono_ms(&self) -> i64 {
        i64::try_from(self.mono.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The same milliseconds on both clocks: for tests and the simulation,
/// where the difference does not matter.
impl From<i64> for Now {
    fn from(ms: i64) -> Now {
        Now { mono: Duration::from_millis(ms.max(0) as u64), unix_ms: ms }
    }
}

/// YARN's attempt states, as far as this RM can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Waiting for its AM container.
    Scheduled,
    /// The AM container is being started; its AM has not registered.
    Launched,
    Running,
    Finished,
    Failed,
    Killed,
}

/// One attempt, for getApplicationAttempt(s) and the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    pub id: AttemptId,
    pub state: AttemptState,
    pub am_container: Option<Allocated>,
    pub start_ms: i64,
    /// 0 while the attempt runs, as YARN reports it.
    pub finish_ms: i64,
    pub diagnostics: String,
}

/// One live container, for getContainer(s) and the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerReport {
    pub container: Allocated,
    pub is_am: bool,
    pub created_ms: i64,
}

/// What an application report needs from the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppUsage {
    pub current_attempt: Option<AttemptId>,
    pub containers: i32,
    pub used: weir_yarn_api::resource::Capacity,
    /// MB × seconds and vcores × seconds its containers held, ended ones
    /// and live ones up to now (YARN's aggregate resource allocation).
    pub memory_seconds: i64,
    pub vcore_seconds: i64,
}

/// Resources × time an application's ended containers held, in
/// milliseconds (rounded down to seconds only when reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HeldMillis {
    memory_mb_ms: i64,
    vcore_ms: i64,
}

impl HeldMillis {
    fn add(&mut self, c: &ContainerReport, until_ms: i64) {
        let ms = until_ms.saturating_sub(c.created_ms).max(0);
        self.memory_mb_ms = self.memory_mb_ms.saturating_add(c.container.capacity.memory_mb.saturating_mul(ms));
        self.vcore_ms = self.vcore_ms.saturating_add(i64::from(c.container.capacity.vcores).saturating_mul(ms));
    }
}

#[derive(Debug, Clone)]
struct SeenAttempt {
    am_container: Allocated,
    start_ms: i64,
    registered: bool,
}

/// What the core saw of attempts and containers (see the module comment).
#[derive(Debug, Default)]
struct Seen {
    attempts: BTreeMap<AttemptId, SeenAttempt>,
    containers: BTreeMap<ContainerId, ContainerReport>,
    /// What each application's ended containers held, counted as they
    /// leave `containers`.
    held: BTreeMap<ApplicationId, HeldMillis>,
}

/// Why an attempt or container report cannot be given: YARN's exceptions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    App(#[from] crate::rm_core::RmError),
    #[error("ApplicationAttempt with id '{0}' doesn't exist in RM.")]
    AttemptNotFound(AttemptId),
    #[error("Container with id '{0}' doesn't exist in RM.")]
    ContainerNotFound(ContainerId),
    /// signalToContainer's answer for a container the RM does not know.
    #[error("Trying to signal an absent container {0}")]
    SignalAbsent(ContainerId),
}

impl ReportError {
    pub fn java_class(&self) -> &'static str {
        match self {
            ReportError::App(e) => e.java_class(),
            ReportError::AttemptNotFound(_) => "org.apache.hadoop.yarn.exceptions.ApplicationAttemptNotFoundException",
            ReportError::ContainerNotFound(_) => "org.apache.hadoop.yarn.exceptions.ContainerNotFoundException",
            ReportError::SignalAbsent(_) => "org.apache.hadoop.yarn.exceptions.YarnException",
        }
    }
}

pub struct YarnCore {
    rm: RmCore,
    scheduler: Scheduler,
    outbox: Vec<Effect>,
    /// Tasks last heard TASK_UNREACHABLE: the scheduler has given them up
    /// (their containers are lost), but whether they still run is open
    /// until a terminal update says so. Reconciled with the live ones every
    /// [`RECONCILE_EVERY`]; one that turns up running is killed.
    unsettled: BTreeMap<weir_model::TaskId, weir_model::AgentId>,
    last_reconcile: Duration,
    /// Kills asked of the broker and not yet answered by an end, with when
    /// each was last sent. A kill can be lost (the agent was away, the
    /// stream broke, the scheduler replaced a stopping node manager), so a
    /// task here that is reported running is killed again, at most once
    /// per [`RECONCILE_EVERY`] (the broker answers a kill it cannot forward
    /// at once with the task's state, which must not start a loop).
    killing: BTreeMap<weir_model::TaskId, (weir_model::AgentId, Duration)>,
    /// The latest monotonic time any input carried: when the effects it
    /// produced were decided.
    last_now: Duration,
    seen: Seen,
}

/// How often tasks last heard unreachable are reconciled.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(10);

impl YarnCore {
    pub fn new(rm: RmCore, scheduler: Scheduler) -> YarnCore {
        YarnCore { rm, scheduler, outbox: Vec::new(), unsettled: BTreeMap::new(), last_reconcile: Duration::ZERO, killing: BTreeMap::new(), last_now: Duration::ZERO, seen: Seen::default() }
    }

    /// Records what the effects from `from` on say about attempts and
    /// containers (an AM start opens an attempt).
    fn see_effects(&mut self, from: usize, now: Now) {
        for effect in &self.outbox[from..] {
            if let Effect::StartAm { container, .. } = effect {
                self.seen.attempts.insert(
                    container.id.attempt,
                    SeenAttempt { am_container: container.clone(), start_ms: now.unix_ms, registered: false },
                );
                self.seen
                    .containers
                    .insert(container.id, ContainerReport { container: container.clone(), is_am: true, created_ms: now.unix_ms });
            }
        }
    }

    /// Forgets containers that are no longer live and attempts of
    /// applications the books no longer hold: the ledger stays bounded.
    /// An ended container's time is counted to `now` (so to within one
    /// tick of its end).
    fn prune_seen(&mut self, now: Now) {
        let (rm, scheduler) = (&self.rm, &self.scheduler);
        let mut live: BTreeMap<ApplicationId, Vec<ContainerId>> = BTreeMap::new();
        let held = &mut self.seen.held;
        self.seen.containers.retain(|id, c| {
            let alive = live.entry(id.attempt.app).or_insert_with(|| scheduler.live_containers(id.attempt.app)).contains(id);
            if !alive {
                held.entry(id.attempt.app).or_default().add(c, now.unix_ms);
            }
            alive
        });
        self.seen.attempts.retain(|id, _| rm.application(id.app).is_ok());
        held.retain(|app, _| rm.application(*app).is_ok());
    }

    /// getApplicationAttempts: every attempt of `app` this RM knows, oldest
    /// first, the current one last (SCHEDULED while it waits for its AM).
    pub fn attempt_reports(&self, app: ApplicationId) -> Result<Vec<AttemptReport>, ReportError> {
        let application = self.rm.application(app)?;
        let current = self.scheduler.current_attempt(app);
        let final_state = match application.state {
            AppState::Finished => Some(AttemptState::Finished),
            AppState::Failed => Some(AttemptState::Failed),
            AppState::Killed => Some(AttemptState::Killed),
            _ => None,
        };
        let finish_ms = application.finish_ms.unwrap_or(0);
        let mut reports: Vec<AttemptReport> = self
            .seen
            .attempts
            .range(AttemptId { app, attempt: 0 }..=AttemptId { app, attempt: i32::MAX })
            .map(|(id, a)| {
                let is_current = current == Some(*id);
                let state = match (final_state, is_current, a.registered) {
                    (Some(s), true, _) => s,
                    (Some(_), false, _) | (None, false, _) => AttemptState::Failed,
                    (None, true, true) => AttemptState::Running,
                    (None, true, false) => AttemptState::Launched,
                };
                let ended = !matches!(state, AttemptState::Running | AttemptState::Launched);
                AttemptReport {
                    id: *id,
                    state,
                    am_container: Some(a.am_container.clone()),
                    start_ms: a.start_ms,
                    finish_ms: if ended && is_current { finish_ms } else { 0 },
                    diagnostics: if is_current { application.diagnostics.clone() } else { String::new() },
                }
            })
            .collect();
        if let Some(id) = current.filter(|id| !self.seen.attempts.contains_key(id)) {
            reports.push(AttemptReport {
                id,
                state: final_state.unwrap_or(AttemptState::Scheduled),
                am_container: None,
                start_ms: application.submit_ms,
                finish_ms,
                diagnostics: application.diagnostics.clone(),
            });
        }
        Ok(reports)
    }

    /// The current attempt of `app` and what its live containers hold
    /// (for application reports and `yarn top`).
    pub fn app_usage(&self, app: ApplicationId, now_ms: i64) -> AppUsage {
        let live = self.scheduler.live_containers(app);
        let mut usage = AppUsage { current_attempt: self.scheduler.current_attempt(app), ..AppUsage::default() };
        let mut held = self.seen.held.get(&app).copied().unwrap_or_default();
        for c in live.iter().filter_map(|id| self.seen.containers.get(id)) {
            usage.containers += 1;
            usage.used.memory_mb += c.container.capacity.memory_mb;
            usage.used.vcores += c.container.capacity.vcores;
            held.add(c, now_ms);
        }
        usage.memory_seconds = held.memory_mb_ms / 1000;
        usage.vcore_seconds = held.vcore_ms / 1000;
        usage
    }

    /// getApplicationAttemptReport.
    pub fn attempt_report(&self, attempt: AttemptId) -> Result<AttemptReport, ReportError> {
        self.attempt_reports(attempt.app)?
            .into_iter()
            .find(|a| a.id == attempt)
            .ok_or(ReportError::AttemptNotFound(attempt))
    }

    /// getContainers: the live containers of an attempt (as YARN's
    /// scheduler reports them: completed ones are gone).
    pub fn container_reports(&self, attempt: AttemptId) -> Result<Vec<ContainerReport>, ReportError> {
        self.attempt_report(attempt)?;
        let live = self.scheduler.live_containers(attempt.app);
        Ok(self.seen.containers.values().filter(|c| c.container.id.attempt == attempt && live.contains(&c.container.id)).cloned().collect())
    }

    /// getContainerReport: a live container.
    pub fn container_report(&self, id: ContainerId) -> Result<ContainerReport, ReportError> {
        self.attempt_report(id.attempt)?;
        let live = self.scheduler.live_containers(id.attempt.app).contains(&id);
        self.seen.containers.get(&id).filter(|_| live).cloned().ok_or(ReportError::ContainerNotFound(id))
    }

    /// signalToContainer with a shutdown command: the container is killed
    /// (its AM sees it complete with `code`). Unknown or ended containers
    /// are YARN's "absent container".
    pub fn signal_shutdown(&mut self, id: ContainerId, code: i32, why: &str) -> Result<(), ReportError> {
        self.rm.application(id.attempt.app).map_err(|_| ReportError::SignalAbsent(id))?;
        if !self.scheduler.live_containers(id.attempt.app).contains(&id) {
            return Err(ReportError::SignalAbsent(id));
        }
        self.abort_container(id, code, why);
        Ok(())
    }

    /// failApplicationAttempt: the attempt's AM container is killed, so the
    /// attempt fails as it would if its AM died (a new attempt follows
    /// while attempts remain). Ok(false): nothing to do (the application
    /// has ended, or the attempt has no live AM container yet).
    pub fn fail_attempt(&mut self, attempt: AttemptId, why: &str) -> Result<bool, ReportError> {
        let report = self.attempt_report(attempt)?;
        if self.rm.application(attempt.app)?.state.is_final() {
            return Ok(false);
        }
        let Some(am) = report.am_container.filter(|c| self.scheduler.live_containers(attempt.app).contains(&c.id)) else {
            return Ok(false);
        };
        self.abort_container(am.id, weir_yarn_api::exit_status::KILLED_BY_RESOURCEMANAGER, why);
        Ok(true)
    }

    /// moveApplicationAcrossQueues: the books and the scheduler both, so
    /// the application's next containers come from offers of its new
    /// queue's role (running ones stay where they were placed, charged to
    /// the role they were launched in). Returns the queue it left.
    pub fn move_to_queue(&mut self, id: ApplicationId, target: &str) -> Result<String, RmError> {
        let from = self.rm.move_to_queue(id, target)?;
        let to = self.rm.application(id)?.submission.queue.clone();
        self.scheduler.set_queue(id, &to);
        // Its new queue's role may have turned agents down while idle.
        self.outbox.push(Effect::Revive);
        Ok(from)
    }

    /// The books, for reading (reports, lookups).
    /// Takes a reloaded queue tree ([`RmCore::set_queue_conf`]); when its
    /// leaves differ, the shell is told to change the framework's roles.
    pub fn set_queue_conf(&mut self, conf: crate::capacity_scheduler::CapacityScheduler) -> Result<(), RmError> {
        let roles = conf.roles();
        if self.rm.set_queue_conf(conf)? {
            self.outbox.push(Effect::Roles { roles });
        }
        Ok(())
    }

    /// The queue a submission by `user` (of `groups`) naming `asked` goes
    /// to: the fair-scheduler.xml's placement policy or the
    /// capacity-scheduler.xml's mappings ([`CapacityScheduler::place`]);
    /// a leaf a placement rule creates is added to the tree first (and its
    /// role subscribed, `Effect::Roles`). Err: the policy rejects the
    /// application, with the diagnostics to record.
    ///
    /// [`CapacityScheduler::place`]: crate::capacity_scheduler::CapacityScheduler::place
    pub fn place(&mut self, user: &str, groups: &[String], asked: &str) -> Result<String, String> {
        use crate::capacity_scheduler::Placed;
        let Some(conf) = self.rm.queue_conf() else { return Ok(asked.strip_prefix("root.").unwrap_or(asked).to_owned()) };
        match conf.place(user, groups, asked)? {
            Placed::Queue(queue) => Ok(queue),
            Placed::Create(path) => {
                let next = conf.with_leaf(&path).map_err(|e| format!("Application rejected: queue {path} cannot be created: {e}"))?;
                self.set_queue_conf(next).map_err(|e| format!("Application rejected: queue {path} cannot be created: {e}"))?;
                tracing::info!(queue = %path, %user, "queue created by the placement policy");
                Ok(path.rsplit('.').next().unwrap_or(&path).to_owned())
            }
        }
    }

    /// Each leaf queue's rules (AM and users' limits, order), as the
    /// cluster's size makes them.
    pub fn set_leaf_rules(&mut self, rules: BTreeMap<String, crate::capacity_scheduler::LeafRules>) {
        self.scheduler.set_leaf_rules(rules);
    }

    pub fn rm(&self) -> &RmCore {
        &self.rm
    }

    /// The books, for the client protocol's own calls (new application,
    /// submit, kill): the scheduler reads them on its next tick.
    pub fn rm_mut(&mut self) -> &mut RmCore {
        &mut self.rm
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// What the shell must do, in the order the core decided it.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        for effect in &self.outbox {
            if let Effect::Kill { task_id, agent_id } = effect {
                self.killing.insert(task_id.clone(), (agent_id.clone(), self.last_now));
            }
        }
        std::mem::take(&mut self.outbox)
    }

    pub fn tick(&mut self, now: Now) {
        self.last_now = self.last_now.max(now.mono);
        self.rm.expire_lifetimes(now.unix_ms);
        let from = self.outbox.len();
        let effects = self.scheduler.tick(&mut self.rm, now);
        self.outbox.extend(effects);
        self.see_effects(from, now);
        self.prune_seen(now);
        if now.mono.saturating_sub(self.last_reconcile) >= RECONCILE_EVERY {
            self.reconcile(now);
        }
    }

    /// Asks the broker about every task the core counts as live or last
    /// heard unreachable (explicit reconciliation, as Mesos advises after
    /// every (re)subscription and periodically): a launch lost on a broken
    /// stream comes back TASK_UNKNOWN and its container ends as lost; one
    /// that runs although given up is killed (see `task_update`).
    pub fn reconcile(&mut self, now: Now) {
        self.last_reconcile = now.mono;
        let mut tasks: BTreeMap<weir_model::TaskId, weir_model::AgentId> = self.unsettled.clone();
        tasks.extend(self.killing.iter().map(|(t, (a, _))| (t.clone(), a.clone())));
        tasks.extend(self.scheduler.live_tasks());
        if !tasks.is_empty() {
            self.outbox.push(Effect::Reconcile { tasks: tasks.into_iter().collect() });
        }
    }

    /// The broker reported `task_id` TASK_UNREACHABLE (besides the
    /// `TaskEvent::Lost` that ends its container): keep asking until its
    /// fate is known.
    pub fn unreachable(&mut self, task_id: &weir_model::TaskId, agent_id: &weir_model::AgentId) {
        self.unsettled.insert(task_id.clone(), agent_id.clone());
    }

    /// Tasks whose fate is still open (for `/state` and tests).
    pub fn unsettled(&self) -> impl Iterator<Item = &weir_model::TaskId> {
        self.unsettled.keys()
    }

    pub fn offers(&mut self, offers: Vec<Offer>, now: Now) {
        self.last_now = self.last_now.max(now.mono);
        let from = self.outbox.len();
        let effects = self.scheduler.offers(offers, now);
        self.outbox.extend(effects);
        self.see_effects(from, now);
        // Applications a queue's limits hold back say why in their reports.
        for (id, why) in self.scheduler.take_waits() {
            self.rm.set_waiting_diagnostics(id, why);
        }
    }

    /// A broker update about one of our tasks on `agent_id`. A task that
    /// runs although the scheduler has given it up (it was lost when its
    /// agent became unreachable, then the agent came back with it; or a
    /// kill never reached it) is killed, as YARN's RM kills the containers
    /// a returning node manager reports but the RM no longer knows.
    /// The broker revoked these tasks (issue 19's revocation): see
    /// [`Scheduler::preempt`].
    pub fn preempt(&mut self, tasks: &[weir_model::TaskId]) -> usize {
        self.scheduler.preempt(tasks)
    }

    pub fn task_update(&mut self, task_id: &weir_model::TaskId, agent_id: &weir_model::AgentId, event: TaskEvent, now: Now) {
        self.last_now = self.last_now.max(now.mono);
        if event != TaskEvent::Running {
            // Any end settles it, unless this very update is the
            // unreachable one (the shell then calls `unreachable`).
            self.unsettled.remove(task_id);
            self.killing.remove(task_id);
        }
        let from = self.outbox.len();
        if event == TaskEvent::Running {
            let again = match self.killing.get(task_id) {
                Some((_, sent)) => now.mono.saturating_sub(*sent) >= RECONCILE_EVERY,
                None => !self.scheduler.knows_task(task_id),
            };
            if again {
                tracing::info!(%task_id, %agent_id, "a task the YARN scheduler gave up or is killing still runs; killing it");
                self.outbox.push(Effect::Kill { task_id: task_id.clone(), agent_id: agent_id.clone() });
                return;
            }
            if self.killing.contains_key(task_id) {
                return;
            }
        }
        let effects = self.scheduler.task_update(&mut self.rm, task_id, event, now);
        self.outbox.extend(effects);
        self.see_effects(from, now);
    }

    /// A container that could not be started (its AM, say) ends with
    /// `code` and `why`.
    pub fn abort_container(&mut self, id: ContainerId, code: i32, why: &str) {
        let effects = self.scheduler.abort_container(id, code, why);
        self.outbox.extend(effects);
    }

    pub fn observe_nodes(&mut self, nodes: Vec<ObservedNode>, now: Now) {
        self.rm.observe_nodes(nodes, now.unix_ms);
    }

    /// registerApplicationMaster: the attempt runs, and the application
    /// report shows where its AM listens.
    pub fn register(&mut self, attempt: AttemptId, endpoint: AmEndpoint, now: Now) -> Result<Registered, AmError> {
        let registered = self.scheduler.register(&mut self.rm, attempt, now)?;
        self.rm.set_am_endpoint(attempt.app, Some(endpoint)).map_err(AmError::Rm)?;
        if let Some(a) = self.seen.attempts.get_mut(&attempt) {
            a.registered = true;
        }
        Ok(registered)
    }

    /// allocate; the effects go to the outbox, the answer (fresh or a
    /// replay) back to the caller to encode.
    pub fn allocate(&mut self, attempt: AttemptId, call: AllocateCall, now: Now) -> Result<AllocateOutcome, AmError> {
        let mut outcome = self.scheduler.allocate(&self.rm, attempt, call, now)?;
        if let AllocateOutcome::Fresh(result) = &mut outcome {
            let from = self.outbox.len();
            self.outbox.append(&mut result.effects);
            self.see_effects(from, now);
            for c in &result.allocated {
                self.seen.containers.insert(c.id, ContainerReport { container: c.clone(), is_am: false, created_ms: now.unix_ms });
            }
        }
        Ok(outcome)
    }

    pub fn finish(&mut self, attempt: AttemptId, status: FinalStatus, diagnostics: &str, now: Now) -> Result<bool, AmError> {
        self.scheduler.finish(&mut self.rm, attempt, status, diagnostics, now)
    }

    /// Whether the node manager `agent_id` runs is still the one at
    /// `host:port` (an AM start stops waiting for one that ended).
    pub fn node_manager_is(&self, agent_id: &weir_model::AgentId, host: &str, port: u64) -> bool {
        self.scheduler.node_manager(agent_id).is_some_and(|(h, p)| h == host && p == port)
    }

    pub fn live_containers(&self, app: ApplicationId) -> Vec<ContainerId> {
        self.scheduler.live_containers(app)
    }

    pub fn check_invariants(&self) -> Result<(), String> {
        self.rm.check_invariants()?;
        self.scheduler.check_invariants()
    }
}

/// A job for the core's task: runs with the core and the time it runs at.
type Job = Box<dyn FnOnce(&mut YarnCore, Now) + Send>;

/// How many jobs may wait for the core: callers beyond that wait for room
/// (back-pressure), so a burst of clients cannot grow memory without bound.
const QUEUE: usize = 1024;

/// The way to the core's task. Cheap to clone.
#[derive(Clone)]
pub struct CoreHandle {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the YARN core has stopped")]
pub struct CoreStopped;

impl CoreHandle {
    /// Runs `f` on the core, after every job sent before it, and returns
    /// its result. Effects it produced go to the shell's effect channel
    /// before this returns.
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut YarnCore, Now) -> R + Send + 'static) -> Result<R, CoreStopped> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |core, now| {
            // The caller may have gone (its connection closed): the work
            // is done all the same, only the answer is dropped.
            let _ = tx.send(f(core, now));
        });
        self.jobs.send(job).await.map_err(|_| CoreStopped)?;
        rx.await.map_err(|_| CoreStopped)
    }
}

/// Starts the task that owns `core`: it runs jobs one at a time with the
/// time read from `clock` just before each, and sends each job's effects
/// to `effects`. It ends when every handle is dropped.
pub fn spawn(mut core: YarnCore, clock: std::sync::Arc<dyn Clock>, effects: mpsc::UnboundedSender<Effect>) -> (CoreHandle, tokio::task::JoinHandle<()>) {
    let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            job(&mut core, Now::from_clock(clock.as_ref()));
            for effect in core.take_effects() {
                // The shell's receiver lives as long as the shim.
                let _ = effects.send(effect);
            }
        }
    });
    (CoreHandle { jobs }, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::SchedulerConfig;
    use weir_model::ManualClock;

    fn core() -> YarnCore {
        YarnCore::new(RmCore::new(1, &["default".to_string()], 10).unwrap(), Scheduler::new(SchedulerConfig::default()))
    }

    fn capacity(memory_mb: i64, vcores: i32) -> weir_yarn_api::resource::Capacity {
        weir_yarn_api::resource::Capacity { memory_mb, vcores }
    }

    /// Agent a1 as a running node on host h.
    fn node(memory_mb: i64, vcores: i32) -> ObservedNode {
        ObservedNode {
            agent_id: "a1".into(),
            node_id: weir_yarn_api::ids::NodeId { host: "h".into(), port: 5051 },
            http_address: "h:5051".into(),
            capability: capacity(memory_mb, vcores),
            used: Default::default(),
            containers: 0,
            state: crate::rm_core::NodeState::Running,
            health_report: String::new(),
            decommission_deadline_ms: None,
        }
    }

    /// An offer "o1" of agent a1 to the default queue, with one port.
    fn offer(cpus: u64, mem_mb: u64) -> Offer {
        Offer {
            id: "o1".into(),
            agent_id: "a1".into(),
            hostname: "h".into(),
            role: "default".into(),
            cpus: weir_model::Milli::from_units(cpus),
            mem_mb: weir_model::Milli::from_units(mem_mb),
            ports: vec![(31000, 31000)],
        }
    }

    fn submission(id: ApplicationId, priority: i32, am: weir_yarn_api::resource::Capacity, launch: bool) -> crate::rm_core::Submission {
        crate::rm_core::Submission {
            priority,
            am_resource: Some(am),
            am_launch: launch.then(Default::default),
            ..crate::rm_core::Submission::for_test(id)
        }
    }

    #[tokio::test]
    async fn jobs_run_in_order_with_the_clock_read_per_job_and_effects_reach_the_shell() {
        let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
        clock.advance(Duration::from_millis(5));
        let (effects_tx, mut effects_rx) = mpsc::unbounded_channel();
        let (handle, task) = spawn(core(), std::sync::Arc::new(clock.clone()), effects_tx);
        let node = node(1024, 2);
        handle.call(move |c, now| c.observe_nodes(vec![node], now)).await.unwrap();
        let (id, _) = handle.call(|c, _| c.rm_mut().new_application()).await.unwrap().unwrap();
        let seen = handle.call(|_, now| now).await.unwrap();
        assert_eq!(seen, Now { mono: Duration::from_millis(5), unix_ms: 1_700_000_000_005 });
        // An app without an AM launch context fails on the next tick; an
        // offer nobody wants is declined: the decline is an effect.
        let submission = submission(id, 0, capacity(128, 1), false);
        handle.call(move |c, now| c.rm_mut().submit(submission, now.unix_ms)).await.unwrap().unwrap();
        handle.call(|c, now| c.tick(now)).await.unwrap();
        let offer = offer(1, 64);
        handle.call(move |c, now| c.offers(vec![offer], now)).await.unwrap();
        assert!(matches!(effects_rx.try_recv(), Ok(Effect::Decline { .. })));
        let state = handle.call(move |c, _| c.rm().application(id).map(|a| a.state)).await.unwrap().unwrap();
        assert!(state.is_final(), "{state:?}");
        handle.call(|c, _| c.check_invariants()).await.unwrap().unwrap();
        drop(handle);
        task.await.unwrap();
    }

    #[test]
    fn a_registered_am_shows_in_the_report_and_allocate_answers_carry_the_priority() {
        let mut c = core();
        let node = node(4096, 4);
        c.observe_nodes(vec![node], Now::from(0));
        let (id, _) = c.rm_mut().new_application().unwrap();
        let submission = submission(id, 3, capacity(512, 1), true);
        c.rm_mut().submit(submission, 1).unwrap();
        c.tick(Now::from(2));
        let offer = offer(4, 4096);
        c.offers(vec![offer], Now::from(3));
        let am = ContainerId { attempt: AttemptId { app: id, attempt: 1 }, id: 1 };
        c.task_update(&weir_model::TaskId::new(am.to_string()), &"a1".into(), TaskEvent::Running, Now::from(4));
        let report = crate::convert::report_to_proto(c.rm().application(id).unwrap());
        assert_eq!((report.host(), report.rpc_port()), ("N/A", -1), "no AM has registered yet");
        let endpoint = AmEndpoint { host: "box".into(), rpc_port: 41000, tracking_url: "http://box:8088/".into() };
        c.register(am.attempt, endpoint, Now::from(5)).unwrap();
        let report = crate::convert::report_to_proto(c.rm().application(id).unwrap());
        assert_eq!((report.host(), report.rpc_port(), report.tracking_url()), ("box", 41000, "http://box:8088/"));
        let answer = match c.allocate(am.attempt, AllocateCall::default(), Now::from(6)).unwrap() {
            AllocateOutcome::Fresh(r) => r,
            AllocateOutcome::Replay(_) => panic!("a first call is fresh"),
        };
        assert_eq!(answer.priority, 3);
    }

    #[test]
    fn memory_and_vcore_seconds_count_live_containers_to_now_and_ended_ones_to_their_end() {
        let mut c = core();
        c.observe_nodes(vec![node(4096, 4)], Now::from(0));
        let (id, _) = c.rm_mut().new_application().unwrap();
        c.rm_mut().submit(submission(id, 0, capacity(512, 2), true), 1).unwrap();
        c.tick(Now::from(2));
        c.offers(vec![offer(4, 4096)], Now::from(1_000));
        let am = ContainerId { attempt: AttemptId { app: id, attempt: 1 }, id: 1 };
        c.task_update(&weir_model::TaskId::new(am.to_string()), &"a1".into(), TaskEvent::Running, Now::from(1_100));
        assert_eq!(c.app_usage(id, 1_000).memory_seconds, 0);
        let usage = c.app_usage(id, 11_000);
        assert_eq!((usage.memory_seconds, usage.vcore_seconds), (512 * 10, 2 * 10));
        // The AM container ends at 21 s: counted to the tick that sees it go.
        c.task_update(&weir_model::TaskId::new(am.to_string()), &"a1".into(), TaskEvent::Exited { code: Some(0), signal: None, message: String::new() }, Now::from(21_000));
        c.tick(Now::from(21_000));
        let later = c.app_usage(id, 99_000);
        assert_eq!((later.containers, later.memory_seconds, later.vcore_seconds), (0, 512 * 20, 2 * 20));
        let mut report = crate::convert::report_to_proto(c.rm().application(id).unwrap());
        crate::convert::add_usage(&mut report, &later);
        let usage = report.app_resource_usage.unwrap();
        assert_eq!((usage.memory_seconds(), usage.vcore_seconds()), (10_240, 40));
    }

    #[test]
    fn a_moved_application_takes_its_containers_from_its_new_queues_offers() {
        let mut c = YarnCore::new(RmCore::new(1, &["default".to_string(), "batch".to_string()], 10).unwrap(), Scheduler::new(SchedulerConfig::default()));
        c.observe_nodes(vec![node(4096, 4)], Now::from(0));
        let (id, _) = c.rm_mut().new_application().unwrap();
        c.rm_mut().submit(submission(id, 0, capacity(512, 1), true), 1).unwrap();
        c.tick(Now::from(2));
        assert_eq!(c.move_to_queue(id, "root.batch").unwrap(), "default");
        assert_eq!(c.rm().application(id).unwrap().submission.queue, "batch");
        // The old queue's offer is not for it any more.
        c.offers(vec![offer(4, 4096)], Now::from(3));
        assert!(c.take_effects().iter().all(|e| !matches!(e, Effect::StartAm { .. })), "placed from the old queue's offer");
        // The new queue's is.
        c.offers(vec![Offer { id: "o2".into(), role: "batch".into(), ..offer(4, 4096) }], Now::from(4));
        assert!(c.take_effects().iter().any(|e| matches!(e, Effect::StartAm { application, .. } if *application == id)));
        assert!(c.move_to_queue(id, "nope").is_err());
        c.check_invariants().unwrap();
    }
}
