//! The ResourceManager's scheduler as a deterministic state machine:
//! application attempts, their asks, the containers placed for them, and
//! the node manager each agent runs. No I/O and no clock: every call takes
//! a [`Now`] (monotonic time for its timers, wall-clock time for what
//! clients see), and what the shell must do comes back as [`Effect`]s.
//! It lives inside [`crate::core::YarnCore`], beside the RM's books.
//!
//! How YARN meets the pool:
//! - the shim is one framework; every offer it gets is matched here against
//!   the applications of the offer's role (a YARN queue is a broker role),
//!   first come first served within a queue;
//! - an application's AM container and every container its AM is given is
//!   one broker task (`weir yarn-container`), so the broker's books and DRF
//!   see what YARN really uses; the first container on an agent also
//!   brings that agent's node manager task (`weir yarn-nodemanager`) with
//!   a port from the same offer;
//! - asks are absolute counts per (priority, resource name, size,
//!   allocation request id), as YARN's `allocate` sends them; a container
//!   placed on a node lowers the node's, the rack's and the `*` count.
//!   Node-local first, then rack, then anywhere once the priority has
//!   waited `locality_delay_ms` (delay scheduling); `relax_locality =
//!   false` on `*` means only the named nodes will do.
//!
//! Invariants (`check_invariants`): finished containers are forgotten;
//! each node manager counts exactly the live containers of its agent; an
//! attempt's asks never hold negative counts; the current attempt number
//! never exceeds the attempts allowed.

use std::collections::{BTreeMap, BTreeSet};

use weir_model::{AgentId, Milli, OfferId, TaskId};
use weir_yarn_api::ids::{ApplicationId, AttemptId, ContainerId, NodeId};
use crate::capacity_scheduler::{Amounts, LeafRules};
use crate::core::Now;
use crate::rm_core::{AppFilter, AppState, Capacity, FinalStatus, NodeState, RmCore, RmError};

/// YARN's `ContainerExitStatus` values the shim reports.
pub use weir_yarn_api::exit_status;

/// YARN's name for the one rack the shim knows.
pub use weir_yarn_api::DEFAULT_RACK;
/// The `*` resource name: anywhere.
pub const ANY: &str = "*";

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// What each node manager task takes (besides one port).
    pub nm_cpus: Milli,
    pub nm_mem_mb: Milli,
    /// How long a priority with node-specific asks waits for those nodes
    /// before taking any node.
    pub locality_delay_ms: i64,
    /// An attempt that has not called `allocate` (or registered) for this
    /// long has expired (yarn.am.liveness-monitor.expiry-interval-ms).
    pub am_liveness_ms: i64,
    /// A node manager with no live container for this long is stopped.
    pub nm_idle_ms: i64,
    /// After an AM unregistered, how long its container may take to exit.
    pub am_exit_grace_ms: i64,
    /// Attempts when the client asks for 0 (yarn.resourcemanager.am.max-attempts).
    pub default_max_attempts: i32,
    /// How long a declined offer stays away while there is unmet demand
    /// (short: it is needed soon) and while there is none.
    pub busy_refuse_ms: i64,
    pub idle_refuse_ms: i64,
    /// Most containers placed from one offer; the rest of the offer goes
    /// back at once, so the broker's DRF picks who gets the next slice
    /// (frameworks taking whole agents per offer is how Mesos hoards).
    pub max_containers_per_offer: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            nm_cpus: Milli::ZERO,
            nm_mem_mb: Milli::from_units(128),
            locality_delay_ms: 3_000,
            am_liveness_ms: 600_000,
            nm_idle_ms: 10_000,
            am_exit_grace_ms: 10_000,
            default_max_attempts: 2,
            busy_refuse_ms: 1_000,
            idle_refuse_ms: 60_000,
            max_containers_per_offer: 1,
        }
    }
}

/// An offer as the scheduler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub id: OfferId,
    pub agent_id: AgentId,
    pub hostname: String,
    /// The role (YARN queue) the offer is allocated to.
    pub role: String,
    pub cpus: Milli,
    pub mem_mb: Milli,
    /// Inclusive port ranges.
    pub ports: Vec<(u64, u64)>,
}

/// A broker task to launch.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskPlan {
    /// `http_port` 0: the offer had no second port; the node manager's web
    /// server takes any free one.
    NodeManager { task_id: TaskId, host: String, port: u64, http_port: u64, cpus: Milli, mem_mb: Milli },
    /// `user`: the application's user (who the container runs as under
    /// LinuxContainerExecutor, see `container_executor`).
    Container { task_id: TaskId, container: ContainerId, capacity: Capacity, nm_port: u64, user: String },
}

/// A container handed to (or started for) an ApplicationMaster.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocated {
    pub id: ContainerId,
    /// The node manager's address: where `startContainers` goes.
    pub node: NodeId,
    /// The node manager's web port (container logs); 0 when the offer had
    /// no port to spare for it, and only the node manager knows it.
    pub http_port: u64,
    pub agent_id: AgentId,
    pub capacity: Capacity,
    pub priority: i32,
    pub allocation_request_id: i64,
    pub user: String,
}

impl Allocated {
    /// `host:port` of the node manager's web server, as YARN's
    /// `Container.nodeHttpAddress` (the IPC address when it is unknown).
    pub fn node_http_address(&self) -> String {
        match self.http_port {
            0 => self.node.to_string(),
            port => format!("{}:{port}", self.node.host),
        }
    }

    /// What the container token says of this container.
    pub fn token_spec(&self) -> weir_yarn_api::tokens::ContainerSpec {
        weir_yarn_api::tokens::ContainerSpec {
            id: self.id,
            node: self.node.clone(),
            user: self.user.clone(),
            capacity: self.capacity,
            priority: self.priority,
            allocation_request_id: self.allocation_request_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub id: ContainerId,
    pub exit_status: i32,
    pub diagnostics: String,
    pub capacity: Capacity,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Launch { offer_id: OfferId, agent_id: AgentId, tasks: Vec<TaskPlan> },
    Decline { offer_id: OfferId, refuse_ms: i64 },
    Kill { task_id: TaskId, agent_id: AgentId },
    /// Ask the broker for the fate of tasks last heard unreachable.
    Reconcile { tasks: Vec<(TaskId, AgentId)> },
    /// Start the AM in its container through the node manager (the shell
    /// adds the AMRM token to the client's launch context).
    StartAm { application: ApplicationId, container: Allocated },
    /// New demand: clear the broker's refusal filters.
    Revive,
    /// Tell the broker where the containers asked for by node are wanted
    /// (bytes per host: containers × their memory), so that it offers
    /// those agents to the shim first (DataLocality). Empty: none.
    Data { host_bytes: BTreeMap<String, u64> },
    /// The queues changed (`refreshQueues`): subscribe in these roles
    /// instead, one per leaf queue.
    Roles { roles: Vec<String> },
}

/// How a container's task ended (or that it runs), from its status updates.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Running,
    Exited { code: Option<i32>, signal: Option<i32>, message: String },
    /// Killed at the shim's request.
    Killed { message: String },
    /// Over its memory limit.
    MemoryLimit { message: String },
    /// The agent was lost.
    Lost { message: String },
    /// Revoked by the broker for a guaranteed role (YARN's preemption).
    Preempted { message: String },
    /// Could not be launched at all.
    Failed { message: String },
}

impl TaskEvent {
    fn is_terminal(&self) -> bool {
        !matches!(self, TaskEvent::Running)
    }
}

/// One entry of `allocate`'s asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub priority: i32,
    pub resource_name: String,
    pub capability: Capacity,
    pub num_containers: i32,
    pub relax_locality: bool,
    pub allocation_request_id: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllocateCall {
    pub response_id: i32,
    pub asks: Vec<Ask>,
    pub releases: Vec<ContainerId>,
    pub blacklist_additions: Vec<String>,
    pub blacklist_removals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllocateResult {
    pub response_id: i32,
    pub allocated: Vec<Allocated>,
    pub completed: Vec<Completed>,
    /// Nodes this attempt needs an NM token for (first container there).
    pub nm_token_nodes: Vec<NodeId>,
    /// Nodes that appeared or changed state since this attempt last heard
    /// (a draining agent's node turns DECOMMISSIONING here first).
    pub updated_nodes: Vec<crate::rm_core::Node>,
    pub cluster_nodes: i32,
    pub headroom: Capacity,
    /// Live containers the scheduler takes back (YARN's strict preemption
    /// contract): the AM may save their work before they are killed.
    pub preempt: Vec<Allocated>,
    /// The application has ended (killed, say): the AM should shut down.
    pub shutdown: bool,
    /// The application's priority (as submitted), which YARN repeats in
    /// every allocate answer.
    pub priority: i32,
    /// Wall-clock ms at which the answer's tokens are issued (and expire
    /// from): kept so a replay signs the very same tokens.
    pub issued_ms: i64,
    pub effects: Vec<Effect>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AllocateOutcome {
    /// The AM repeated its last call: the last answer again (encoded
    /// anew by the shell, byte for byte the same; no effects this time).
    Replay(Box<AllocateResult>),
    Fresh(AllocateResult),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub maximum_capability: Capacity,
    pub queue: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmError {
    #[error("Application attempt {0} doesn't exist in ApplicationMasterService cache.")]
    AttemptNotFound(AttemptId),
    #[error("AM is not registered for known application attempt: {0} or RM had restarted after AM registered. AM should re-register.")]
    NotRegistered(AttemptId),
    #[error("Application Master is already registered : {0}")]
    AlreadyRegistered(ApplicationId),
    #[error("Invalid responseId in AllocateRequest from application attempt: {attempt}, expect responseId to be {expected}, but get {got}")]
    InvalidResponseId { attempt: AttemptId, expected: i32, got: i32 },
    #[error("Invalid resource request, requested resource {asked} is negative or greater than the maximum allowed allocation {max}")]
    InvalidResource { asked: Capacity, max: Capacity },
    #[error("Invalid resource request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Rm(RmError),
}

impl AmError {
    pub fn java_class(&self) -> &'static str {
        match self {
            AmError::AttemptNotFound(_) => "org.apache.hadoop.yarn.exceptions.ApplicationAttemptNotFoundException",
            AmError::NotRegistered(_) => "org.apache.hadoop.yarn.exceptions.ApplicationMasterNotRegisteredException",
            AmError::AlreadyRegistered(_) | AmError::InvalidResponseId { .. } => {
                "org.apache.hadoop.yarn.exceptions.InvalidApplicationMasterRequestException"
            }
            AmError::InvalidResource { .. } | AmError::InvalidRequest(_) => {
                "org.apache.hadoop.yarn.exceptions.InvalidResourceRequestException"
            }
            AmError::Rm(e) => e.java_class(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for an offer to place the AM container in.
    WaitingForAm,
    /// The AM container is placed and being started.
    Launched,
    Registered,
    Unregistered,
    /// Failed; its containers are being killed.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AskKey {
    priority: i32,
    allocation_request_id: i64,
    memory_mb: i64,
    vcores: i32,
    resource_name: String,
}

#[derive(Debug, Clone)]
struct AskEntry {
    num: i32,
    relax_locality: bool,
}

#[derive(Debug)]
struct Attempt {
    id: AttemptId,
    phase: Phase,
    last_heard_ms: i64,
    unregistered_ms: Option<i64>,
    last_response_id: i32,
    last_response: Option<Box<AllocateResult>>,
    asks: BTreeMap<AskKey, AskEntry>,
    blacklist: BTreeSet<String>,
    fresh: Vec<ContainerId>,
    completed: Vec<Completed>,
    nm_tokens_sent: BTreeSet<NodeId>,
    /// Each node's state as this attempt was last told it, and the node
    /// generation it was told at (`updated_nodes`).
    nodes_seen: BTreeMap<String, NodeState>,
    nodes_seen_generation: u64,
    next_container: i64,
    /// Since when each priority has had unmet `*` asks (delay scheduling).
    waiting_since: BTreeMap<i32, i64>,
    /// Containers the broker revoked: named in every allocate answer's
    /// PreemptionMessage until they end.
    to_preempt: BTreeSet<ContainerId>,
}

impl Attempt {
    fn new(id: AttemptId, now_ms: i64) -> Attempt {
        Attempt {
            id,
            phase: Phase::WaitingForAm,
            last_heard_ms: now_ms,
            unregistered_ms: None,
            last_response_id: 0,
            last_response: None,
            asks: BTreeMap::new(),
            blacklist: BTreeSet::new(),
            fresh: Vec::new(),
            completed: Vec::new(),
            nm_tokens_sent: BTreeSet::new(),
            nodes_seen: BTreeMap::new(),
            nodes_seen_generation: 0,
            next_container: 1,
            waiting_since: BTreeMap::new(),
            to_preempt: BTreeSet::new(),
        }
    }

    fn wants_containers(&self) -> bool {
        self.phase == Phase::Registered && self.asks.iter().any(|(k, e)| k.resource_name == ANY && e.num > 0)
    }
}

#[derive(Debug)]
struct App {
    id: ApplicationId,
    queue: String,
    user: String,
    am_capacity: Capacity,
    max_attempts: i32,
    attempt: Attempt,
    /// Set once the application is final in the RM: its containers go.
    ending: bool,
    /// Why it waits although offers came (a limit held it back), as last
    /// told to the core; logged once per reason.
    held: Option<String>,
}

impl App {
    /// It waits for its AM container or for containers it asked for.
    fn wants(&self) -> bool {
        !self.ending && (self.attempt.phase == Phase::WaitingForAm || self.attempt.wants_containers())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContainerState {
    Allocated,
    Running,
    Done,
}

#[derive(Debug, Clone)]
struct Container {
    allocated: Allocated,
    is_am: bool,
    state: ContainerState,
    /// Why the shim killed it: the exit status and diagnostics to report.
    killed_for: Option<(i32, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NmState {
    Launching,
    Running,
    Stopping,
}

#[derive(Debug, Clone)]
struct NodeManager {
    task_id: TaskId,
    host: String,
    port: u64,
    http_port: u64,
    state: NmState,
    live_containers: usize,
    idle_since_ms: i64,
    /// Applications that ran containers here and have not ended: their
    /// map outputs (mapreduce_shuffle) and logs are served from here, so
    /// the node manager is not idle until they end.
    serves: std::collections::BTreeSet<ApplicationId>,
}

pub struct Scheduler {
    config: SchedulerConfig,
    apps: BTreeMap<ApplicationId, App>,
    containers: BTreeMap<ContainerId, Container>,
    /// One node manager per agent.
    nms: BTreeMap<AgentId, NodeManager>,
    nm_seq: u64,
    /// The hosts last stated to the broker (`Effect::Data`).
    stated_hosts: BTreeMap<String, u64>,
    /// What each leaf queue's applications are held to (AM limit, users'
    /// limit, order); queues not named have no limits and are served in
    /// submission order.
    rules: BTreeMap<String, LeafRules>,
    /// Applications whose wait for a container changed reason since the
    /// core last asked ([`Scheduler::take_waits`]): held by a limit (the
    /// reason, in YARN's words), or no longer (None).
    waits: Vec<(ApplicationId, Option<String>)>,
}

/// What a queue's live containers hold, in total and per user, while an
/// offer is matched.
#[derive(Debug, Default)]
struct QueueUse {
    total: Amounts,
    by_user: BTreeMap<String, Amounts>,
    /// Users with an application that waits for a container.
    active_users: usize,
}

fn amounts_of(c: Capacity) -> Amounts {
    let (cpus, mem) = milli_of(c);
    Amounts { cpus, mem }
}

/// Resources left in an offer while it is being matched.
/// Exact (thousandths), so a container fits exactly when it fits: no
/// epsilon, no drift after many takes.
struct Room {
    cpus: Milli,
    mem_mb: Milli,
    ports: Vec<(u64, u64)>,
}

/// A YARN size in the pool's units; negative sizes never get here
/// (allocate refuses them), and are read as nothing if they did.
fn milli_of(c: Capacity) -> (Milli, Milli) {
    (Milli::from_units(c.vcores.max(0) as u64), Milli::from_units(c.memory_mb.max(0) as u64))
}

impl Room {
    fn fits(&self, c: Capacity, extra_cpus: Milli, extra_mem: Milli) -> bool {
        let (cpus, mem) = milli_of(c);
        self.cpus.0 >= cpus.0.saturating_add(extra_cpus.0) && self.mem_mb.0 >= mem.0.saturating_add(extra_mem.0)
    }

    /// Takes what `fits` said is there (saturating, so a caller that did
    /// not ask first cannot wrap around).
    fn take(&mut self, cpus: Milli, mem: Milli) {
        self.cpus = Milli(self.cpus.0.saturating_sub(cpus.0));
        self.mem_mb = Milli(self.mem_mb.0.saturating_sub(mem.0));
    }

    fn take_capacity(&mut self, c: Capacity) {
        let (cpus, mem) = milli_of(c);
        self.take(cpus, mem);
    }

    fn take_port(&mut self) -> Option<u64> {
        let (i, (b, e)) = self.ports.iter().copied().enumerate().find(|(_, (b, e))| b <= e)?;
        if b == e {
            self.ports.remove(i);
        } else {
            self.ports[i] = (b + 1, e);
        }
        Some(b)
    }
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler {
            config,
            apps: BTreeMap::new(),
            containers: BTreeMap::new(),
            nms: BTreeMap::new(),
            nm_seq: 0,
            stated_hosts: BTreeMap::new(),
            rules: BTreeMap::new(),
            waits: Vec::new(),
        }
    }

    /// Each leaf queue's rules (see `CapacityScheduler::leaf_rules`),
    /// replacing the last.
    pub fn set_leaf_rules(&mut self, rules: BTreeMap<String, LeafRules>) {
        self.rules = rules;
    }

    /// Why `app`'s AM may not start now, in YARN's words: its queue's AM
    /// limit is reached beside the AMs the queue already holds (never when
    /// it holds none: YARN lets one application run however small the
    /// limit).
    fn am_refusal(&self, app: &App) -> Option<String> {
        let limit = self.rules.get(&app.queue)?.am_mb?;
        let held: i64 = self
            .apps
            .values()
            .filter(|a| a.queue == app.queue && !a.ending && a.attempt.phase != Phase::WaitingForAm)
            .map(|a| i64::from(a.am_capacity.memory_mb.max(0)))
            .sum();
        let asked = i64::from(app.am_capacity.memory_mb.max(0));
        (held > 0 && held + asked > limit).then(|| {
            format!(
                "Application is added to the scheduler and is not yet activated. Queue's AM resource limit exceeded.  Details : AM Resource Request = <memory:{asked}, vCores:{}>; Queue Resource Limit for AM = <memory:{limit}>; Queue AM Resource Usage = <memory:{held}>; (queue {}, maximum-am-resource-percent)",
                app.am_capacity.vcores, app.queue
            )
        })
    }

    /// What the live containers of `queue` hold, and its active users.
    fn queue_use(&self, queue: &str) -> QueueUse {
        let mut usage = QueueUse::default();
        for c in self.containers.values() {
            if self.apps.get(&c.allocated.id.attempt.app).is_some_and(|a| a.queue == queue) {
                let cap = amounts_of(c.allocated.capacity);
                usage.total = usage.total.plus(cap);
                let user = usage.by_user.entry(c.allocated.user.clone()).or_default();
                *user = user.plus(cap);
            }
        }
        let active: BTreeSet<&str> = self.apps.values().filter(|a| a.queue == queue && a.wants()).map(|a| a.user.as_str()).collect();
        usage.active_users = active.len();
        usage
    }

    /// Why `user` may not take a container of `cap` in `queue` now, in
    /// YARN's words: they are over their limit there (see
    /// [`crate::capacity_scheduler::UserLimit::limit`]).
    fn user_refusal(&self, queue: &str, usage: &QueueUse, user: &str, cap: Capacity) -> Option<String> {
        let limits = self.rules.get(queue)?.users?;
        let used = usage.by_user.get(user).copied().unwrap_or_default();
        let limit = limits.limit(usage.total, amounts_of(cap), usage.active_users);
        limits.over(used, limit).then(|| {
            format!(
                "User capacity has reached its maximum limit: user {user} holds <memory:{}, vCores:{}> in queue {queue}, its limit is <memory:{}, vCores:{}> (user-limit-factor, minimum-user-limit-percent)",
                used.mem.as_f64() as i64,
                used.cpus.as_f64(),
                limit.mem.as_f64() as i64,
                limit.cpus.as_f64()
            )
        })
    }

    /// Records why `id` waits (or that it no longer waits for a limit),
    /// logging each new reason once.
    fn set_held(&mut self, id: ApplicationId, why: Option<String>) {
        let Some(app) = self.apps.get_mut(&id) else { return };
        if app.held == why {
            return;
        }
        if let Some(why) = &why {
            tracing::info!(application_id = %id, queue = %app.queue, user = %app.user, reason = %why, "application waits for its queue's limits");
        }
        app.held = why.clone();
        self.waits.push((id, why));
    }

    /// The applications whose reason to wait changed since the last call
    /// (held by a limit: the reason; free again: None), for the RM's
    /// diagnostics.
    pub fn take_waits(&mut self) -> Vec<(ApplicationId, Option<String>)> {
        std::mem::take(&mut self.waits)
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Whether some application waits for containers.
    pub fn has_demand(&self) -> bool {
        self.apps.values().any(App::wants)
    }

    /// Whether an application of the queue whose role is `role` waits for
    /// a container (any queue's for the catch-all role, `*` or none).
    fn has_demand_in(&self, role: &str) -> bool {
        if role.is_empty() || role == "*" {
            return self.has_demand();
        }
        let queue = crate::capacity_scheduler::queue_of(role);
        self.apps.values().any(|a| a.queue == queue && a.wants())
    }

    /// What the live applications wait for: containers (their `*` asks,
    /// and each AM not yet placed), memory (MB) and vcores, as YARN's
    /// `containersPending`, `pendingMB` and `pendingVirtualCores`.
    pub fn pending(&self) -> (i64, i64, i64) {
        let mut total = (0i64, 0i64, 0i64);
        for app in self.apps.values().filter(|a| !a.ending) {
            if app.attempt.phase == Phase::WaitingForAm {
                total.0 += 1;
                total.1 += i64::from(app.am_capacity.memory_mb.max(0));
                total.2 += i64::from(app.am_capacity.vcores.max(0));
            }
            if app.attempt.phase == Phase::Registered {
                for (key, entry) in app.attempt.asks.iter().filter(|(k, e)| k.resource_name == ANY && e.num > 0) {
                    let n = i64::from(entry.num);
                    total.0 += n;
                    total.1 += n * i64::from(key.memory_mb.max(0));
                    total.2 += n * i64::from(key.vcores.max(0));
                }
            }
        }
        total
    }

    /// Containers the scheduler holds, by state (YARN's names: ALLOCATED,
    /// RUNNING, COMPLETE), for metrics.
    pub fn container_counts(&self) -> [(&'static str, usize); 3] {
        let count = |s: ContainerState| self.containers.values().filter(|c| c.state == s).count();
        [
            ("ALLOCATED", count(ContainerState::Allocated)),
            ("RUNNING", count(ContainerState::Running)),
            ("COMPLETE", count(ContainerState::Done)),
        ]
    }

    /// The live containers of an application, for tests and `/state`.
    pub fn live_containers(&self, app: ApplicationId) -> Vec<ContainerId> {
        self.containers
            .iter()
            .filter(|(id, c)| id.attempt.app == app && c.state != ContainerState::Done)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The current attempt of an application.
    pub fn current_attempt(&self, app: ApplicationId) -> Option<AttemptId> {
        self.apps.get(&app).map(|a| a.attempt.id)
    }

    /// The node manager (host, port) of an agent, if one runs or starts.
    /// Every broker task the scheduler counts as live, with its agent:
    /// containers not yet done and node managers not yet ended (a
    /// stopping one still runs). A simulation compares it with the
    /// broker's books.
    pub fn live_tasks(&self) -> Vec<(TaskId, AgentId)> {
        let containers = self.containers.values().map(|c| (TaskId::new(c.allocated.id.to_string()), c.allocated.agent_id.clone()));
        let nms = self.nms.iter().map(|(agent, nm)| (nm.task_id.clone(), agent.clone()));
        containers.chain(nms).collect()
    }

    /// Whether `task_id` is a container or node manager the scheduler
    /// counts as live.
    pub fn knows_task(&self, task_id: &TaskId) -> bool {
        self.nms.values().any(|nm| nm.task_id == *task_id)
            || task_id.as_str().parse::<ContainerId>().is_ok_and(|cid| self.containers.contains_key(&cid))
    }

    /// The application now belongs to `queue` (a move): its next
    /// containers come from that role's offers.
    pub fn set_queue(&mut self, id: ApplicationId, queue: &str) {
        if let Some(app) = self.apps.get_mut(&id) {
            tracing::info!(application_id = %id, from = %app.queue, to = %queue, "application moved to another queue");
            app.queue = queue.to_owned();
        }
    }

    pub fn node_manager(&self, agent_id: &AgentId) -> Option<(String, u64)> {
        self.nms.get(agent_id).filter(|n| n.state != NmState::Stopping).map(|n| (n.host.clone(), n.port))
    }

    /// Looks at the RM's applications: adopts newly accepted ones, winds
    /// down ended ones, expires silent attempts, stops idle node managers.
    pub fn tick(&mut self, rm: &mut RmCore, now: impl Into<Now>) -> Vec<Effect> {
        let now: Now = now.into();
        let now_ms = now.mono_ms();
        let mut out = Vec::new();
        let live = AppFilter { states: vec![AppState::Accepted, AppState::Running], ..AppFilter::default() };
        let adopt: Vec<_> = rm
            .applications(&live)
            .into_iter()
            .filter(|a| !self.apps.contains_key(&a.id()))
            .map(|a| a.submission.clone())
            .collect();
        for s in adopt {
            if s.unmanaged_am {
                let _ = rm.fail(s.id, "unmanaged ApplicationMasters are not supported by Weir's YARN shim", now.unix_ms);
                continue;
            }
            if s.am_launch.is_none() {
                let _ = rm.fail(s.id, "the submission has no AM container launch context", now.unix_ms);
                continue;
            }
            let am_capacity = s.am_resource.unwrap_or(Capacity { memory_mb: 1024, vcores: 1 });
            let max_attempts = if s.max_attempts > 0 { s.max_attempts } else { self.config.default_max_attempts };
            let attempt = Attempt::new(AttemptId { app: s.id, attempt: 1 }, now_ms);
            tracing::info!(application_id = %s.id, queue = %s.queue, am = %am_capacity, "application waits for its AM container");
            self.apps.insert(
                s.id,
                App { id: s.id, queue: s.queue, user: s.user, am_capacity, max_attempts: max_attempts.max(1), attempt, ending: false, held: None },
            );
            out.push(Effect::Revive);
        }

        let ids: Vec<ApplicationId> = self.apps.keys().copied().collect();
        for id in ids {
            let rm_state = rm.application(id).map(|a| (a.state, a.final_status)).ok();
            let final_now = rm_state.is_none_or(|(s, _)| s.is_final());
            if final_now {
                let (code, why) = match rm_state {
                    Some((AppState::Killed, _)) => (exit_status::KILLED_BY_RESOURCEMANAGER, "Container killed by the ResourceManager: the application was killed"),
                    _ => (exit_status::KILLED_AFTER_APP_COMPLETION, "Container killed by the ResourceManager: the application has completed"),
                };
                let app = self.apps.get_mut(&id).expect("listed above");
                app.ending = true;
                app.attempt.asks.clear();
                let am_grace_over = match app.attempt.unregistered_ms {
                    Some(at) => now_ms - at >= self.config.am_exit_grace_ms,
                    None => true,
                };
                let victims: Vec<ContainerId> = self
                    .containers
                    .iter()
                    .filter(|(cid, c)| cid.attempt.app == id && c.state != ContainerState::Done && c.killed_for.is_none())
                    .filter(|(_, c)| !c.is_am || am_grace_over)
                    .map(|(cid, _)| *cid)
                    .collect();
                for cid in victims {
                    self.kill_container(cid, code, why, &mut out);
                }
                if self.live_containers(id).is_empty() {
                    tracing::debug!(application_id = %id, "application's containers are all gone");
                    self.apps.remove(&id);
                }
                continue;
            }
            let app = self.apps.get(&id).expect("listed above");
            let silent = matches!(app.attempt.phase, Phase::Launched | Phase::Registered)
                && now_ms - app.attempt.last_heard_ms > self.config.am_liveness_ms;
            if silent {
                let why = format!("ApplicationMaster for attempt {} timed out", app.attempt.id);
                self.fail_attempt(rm, id, &why, now, &mut out);
            }
        }

        let apps = &self.apps;
        for nm in self.nms.values_mut() {
            let before = nm.serves.len();
            nm.serves.retain(|id| apps.get(id).is_some_and(|a| !a.ending));
            if nm.serves.len() < before && nm.serves.is_empty() && nm.live_containers == 0 {
                nm.idle_since_ms = now_ms;
            }
        }
        let idle: Vec<AgentId> = self
            .nms
            .iter()
            .filter(|(_, n)| {
                n.state != NmState::Stopping && n.live_containers == 0 && n.serves.is_empty() && now_ms - n.idle_since_ms >= self.config.nm_idle_ms
            })
            .map(|(a, _)| a.clone())
            .collect();
        for agent in idle {
            let nm = self.nms.get_mut(&agent).expect("listed above");
            nm.state = NmState::Stopping;
            tracing::info!(agent_id = %agent, task_id = %nm.task_id, "stopping an idle node manager");
            out.push(Effect::Kill { task_id: nm.task_id.clone(), agent_id: agent });
        }
        let wanted = self.wanted_hosts();
        if wanted != self.stated_hosts {
            self.stated_hosts = wanted.clone();
            out.push(Effect::Data { host_bytes: wanted });
        }
        out
    }

    /// Where the live attempts' node-level asks want containers: bytes
    /// per host (containers × memory), what the broker's delay
    /// scheduling weighs. Rack and `*` asks name no host.
    fn wanted_hosts(&self) -> BTreeMap<String, u64> {
        let mut hosts = BTreeMap::new();
        for app in self.apps.values() {
            for (key, entry) in &app.attempt.asks {
                if entry.num > 0 && key.resource_name != ANY && !key.resource_name.starts_with('/') {
                    let bytes = (entry.num as u64).saturating_mul(key.memory_mb.max(0) as u64).saturating_mul(1 << 20);
                    *hosts.entry(key.resource_name.clone()).or_insert(0u64) += bytes;
                }
            }
        }
        hosts
    }

    /// Matches offers against the applications of each offer's role.
    /// Every offer is either used (the rest goes back) or declined.
    pub fn offers(&mut self, offers: Vec<Offer>, now: impl Into<Now>) -> Vec<Effect> {
        let now: Now = now.into();
        let now_ms = now.mono_ms();
        let mut out = Vec::new();
        for offer in offers {
            let tasks = self.place(&offer, now_ms, &mut out);
            if tasks.is_empty() {
                // The broker filters per role: a queue with nothing to run
                // turns the agent down for long (new demand revives), one
                // with demand only briefly (the offer was too small or
                // badly placed; the next may fit).
                let refuse_ms =
                    if self.has_demand_in(&offer.role) { self.config.busy_refuse_ms } else { self.config.idle_refuse_ms };
                out.push(Effect::Decline { offer_id: offer.id, refuse_ms });
            } else {
                // Launch first: StartAm effects pushed by `place` refer to it.
                let at = out.iter().position(|e| matches!(e, Effect::StartAm { .. })).unwrap_or(out.len());
                out.insert(at, Effect::Launch { offer_id: offer.id, agent_id: offer.agent_id, tasks });
            }
        }
        out
    }

    fn place(&mut self, offer: &Offer, now_ms: i64, out: &mut Vec<Effect>) -> Vec<TaskPlan> {
        let mut room = Room { cpus: offer.cpus, mem_mb: offer.mem_mb, ports: offer.ports.clone() };
        let mut tasks = Vec::new();
        let role = offer.role.as_str();
        // A nested queue's role is its path (`eng/analytics`); leaf names
        // are unique.
        let queue_matches = |q: &str| role.is_empty() || role == "*" || crate::capacity_scheduler::queue_of(role) == q;
        let mut ids: Vec<ApplicationId> =
            self.apps.values().filter(|a| !a.ending && queue_matches(&a.queue)).map(|a| a.id).collect();
        // What the queues with rules hold, kept up to date below as
        // containers are placed.
        let queues: BTreeSet<String> = ids.iter().map(|id| self.apps[id].queue.clone()).filter(|q| self.rules.contains_key(q)).collect();
        let mut uses: BTreeMap<String, QueueUse> = queues.into_iter().map(|q| (q.clone(), self.queue_use(&q))).collect();
        // A fair queue serves the application holding the least memory
        // first (YARN's FairOrderingPolicy), ties in submission order.
        if ids.iter().any(|id| self.rules.get(&self.apps[id].queue).is_some_and(|r| r.fair_ordering)) {
            let mut held: BTreeMap<ApplicationId, i64> = BTreeMap::new();
            for c in self.containers.values() {
                *held.entry(c.allocated.id.attempt.app).or_default() += i64::from(c.allocated.capacity.memory_mb.max(0));
            }
            let fair = |id: &ApplicationId| self.rules.get(&self.apps[id].queue).is_some_and(|r| r.fair_ordering);
            ids.sort_by_key(|id| (if fair(id) { held.get(id).copied().unwrap_or(0) } else { 0 }, *id));
        }
        let max = self.config.max_containers_per_offer.max(1);
        let placed = |tasks: &Vec<TaskPlan>| tasks.iter().filter(|t| matches!(t, TaskPlan::Container { .. })).count();
        'apps: for id in ids {
            if placed(&tasks) >= max {
                break;
            }
            let (queue, user) = (self.apps[&id].queue.clone(), self.apps[&id].user.clone());
            // The AM container first.
            if self.apps[&id].attempt.phase == Phase::WaitingForAm {
                let cap = self.apps[&id].am_capacity;
                let refusal = self
                    .am_refusal(&self.apps[&id])
                    .or_else(|| uses.get(&queue).and_then(|usage| self.user_refusal(&queue, usage, &user, cap)));
                if let Some(why) = refusal {
                    self.set_held(id, Some(why));
                    continue;
                }
                if let Some((nm_port, http_port)) = self.room_for(offer, &mut room, cap, &mut tasks, now_ms) {
                    let app = self.apps.get_mut(&id).expect("listed");
                    let cid = ContainerId { attempt: app.attempt.id, id: app.attempt.next_container };
                    app.attempt.next_container += 1;
                    app.attempt.phase = Phase::Launched;
                    app.attempt.last_heard_ms = now_ms;
                    let allocated = Allocated {
                        id: cid,
                        node: NodeId { host: offer.hostname.clone(), port: nm_port as i32 },
                        http_port,
                        agent_id: offer.agent_id.clone(),
                        capacity: cap,
                        priority: 0,
                        allocation_request_id: -1,
                        user: app.user.clone(),
                    };
                    tracing::info!(application_id = %id, container_id = %cid, agent_id = %offer.agent_id, "AM container placed");
                    tasks.push(TaskPlan::Container { task_id: TaskId::new(cid.to_string()), container: cid, capacity: cap, nm_port, user: app.user.clone() });
                    self.add_container(allocated.clone(), true);
                    Self::count_use(&mut uses, &queue, &user, cap);
                    self.set_held(id, None);
                    out.push(Effect::StartAm { application: id, container: allocated });
                }
                continue;
            }
            if !self.apps[&id].attempt.wants_containers() || self.apps[&id].attempt.blacklist.contains(&offer.hostname) {
                continue;
            }
            // Then the AM's asks, highest priority (lowest number) first.
            let groups: Vec<AskKey> = self.apps[&id]
                .attempt
                .asks
                .iter()
                .filter(|(k, e)| k.resource_name == ANY && e.num > 0)
                .map(|(k, _)| k.clone())
                .collect();
            for any_key in groups {
                while placed(&tasks) < max {
                    let Some(locality) = self.locality_for(id, &any_key, &offer.hostname, now_ms) else { break };
                    let cap = Capacity { memory_mb: any_key.memory_mb, vcores: any_key.vcores };
                    if let Some(why) = uses.get(&queue).and_then(|usage| self.user_refusal(&queue, usage, &user, cap)) {
                        self.set_held(id, Some(why));
                        continue 'apps;
                    }
                    let Some((nm_port, http_port)) = self.room_for(offer, &mut room, cap, &mut tasks, now_ms) else { break };
                    let app = self.apps.get_mut(&id).expect("listed");
                    let cid = ContainerId { attempt: app.attempt.id, id: app.attempt.next_container };
                    app.attempt.next_container += 1;
                    for name in [Some(ANY.to_owned()), locality.node.then(|| offer.hostname.clone()), locality.rack.then(|| DEFAULT_RACK.to_owned())]
                        .into_iter()
                        .flatten()
                    {
                        let key = AskKey { resource_name: name, ..any_key.clone() };
                        if let Some(e) = app.attempt.asks.get_mut(&key) {
                            e.num = (e.num - 1).max(0);
                        }
                    }
                    app.attempt.waiting_since.remove(&any_key.priority);
                    let allocated = Allocated {
                        id: cid,
                        node: NodeId { host: offer.hostname.clone(), port: nm_port as i32 },
                        http_port,
                        agent_id: offer.agent_id.clone(),
                        capacity: cap,
                        priority: any_key.priority,
                        allocation_request_id: any_key.allocation_request_id,
                        user: app.user.clone(),
                    };
                    app.attempt.fresh.push(cid);
                    tracing::debug!(application_id = %id, container_id = %cid, agent_id = %offer.agent_id, node_local = locality.node, "container placed");
                    tasks.push(TaskPlan::Container { task_id: TaskId::new(cid.to_string()), container: cid, capacity: cap, nm_port, user: app.user.clone() });
                    self.add_container(allocated, false);
                    Self::count_use(&mut uses, &queue, &user, cap);
                    self.set_held(id, None);
                }
            }
        }
        tasks
    }

    /// Adds a container just placed to its queue's use, if the queue has
    /// rules.
    fn count_use(uses: &mut BTreeMap<String, QueueUse>, queue: &str, user: &str, cap: Capacity) {
        if let Some(usage) = uses.get_mut(queue) {
            usage.total = usage.total.plus(amounts_of(cap));
            let held = usage.by_user.entry(user.to_owned()).or_default();
            *held = held.plus(amounts_of(cap));
        }
    }

    /// Room for a container of `cap` on this offer's agent, starting the
    /// agent's node manager in the same launch if it has none. Returns the
    /// node manager's IPC and web ports.
    fn room_for(&mut self, offer: &Offer, room: &mut Room, cap: Capacity, tasks: &mut Vec<TaskPlan>, now_ms: i64) -> Option<(u64, u64)> {
        if let Some(nm) = self.nms.get(&offer.agent_id).filter(|n| n.state != NmState::Stopping) {
            if !room.fits(cap, Milli::ZERO, Milli::ZERO) {
                return None;
            }
            room.take_capacity(cap);
            return Some((nm.port, nm.http_port));
        }
        let (nm_cpus, nm_mem) = (self.config.nm_cpus, self.config.nm_mem_mb);
        if !room.fits(cap, nm_cpus, nm_mem) {
            return None;
        }
        let port = room.take_port()?;
        // Its web server gets a port of the offer too, when there is one,
        // so that container log links name a port the pool gave out.
        let http_port = room.take_port().unwrap_or(0);
        room.take_capacity(cap);
        room.take(nm_cpus, nm_mem);
        self.nm_seq += 1;
        let task_id = TaskId::new(format!("nodemanager-{}-{}", offer.agent_id, self.nm_seq));
        tracing::info!(agent_id = %offer.agent_id, %task_id, port, http_port, "starting a node manager");
        tasks.push(TaskPlan::NodeManager { task_id: task_id.clone(), host: offer.hostname.clone(), port, http_port, cpus: nm_cpus, mem_mb: nm_mem });
        // A node manager that ended or is stopping is replaced (its task id
        // differs); containers it left running still count on this agent.
        let live_containers = self.containers.values().filter(|c| c.allocated.agent_id == offer.agent_id).count();
        self.nms.insert(
            offer.agent_id.clone(),
            NodeManager {
                task_id,
                host: offer.hostname.clone(),
                port,
                http_port,
                state: NmState::Launching,
                live_containers,
                idle_since_ms: now_ms,
                serves: Default::default(),
            },
        );
        Some((port, http_port))
    }

    fn locality_for(&self, id: ApplicationId, any_key: &AskKey, host: &str, now_ms: i64) -> Option<Locality> {
        let attempt = &self.apps[&id].attempt;
        let any = attempt.asks.get(any_key).filter(|e| e.num > 0)?;
        let wanted = |name: &str| {
            let key = AskKey { resource_name: name.to_owned(), ..any_key.clone() };
            attempt.asks.get(&key).is_some_and(|e| e.num > 0)
        };
        if wanted(host) {
            return Some(Locality { node: true, rack: wanted(DEFAULT_RACK) });
        }
        if !any.relax_locality {
            return None;
        }
        // Node-specific asks at this priority (other than this node): wait
        // for them a while before settling for any node.
        let has_node_asks = attempt.asks.iter().any(|(k, e)| {
            k.priority == any_key.priority
                && k.allocation_request_id == any_key.allocation_request_id
                && k.memory_mb == any_key.memory_mb
                && k.vcores == any_key.vcores
                && k.resource_name != ANY
                && !k.resource_name.starts_with('/')
                && e.num > 0
        });
        if wanted(DEFAULT_RACK) {
            return Some(Locality { node: false, rack: true });
        }
        if has_node_asks {
            let since = attempt.waiting_since.get(&any_key.priority).copied().unwrap_or(now_ms);
            if now_ms - since < self.config.locality_delay_ms {
                return None;
            }
        }
        Some(Locality { node: false, rack: false })
    }

    fn add_container(&mut self, allocated: Allocated, is_am: bool) {
        if let Some(nm) = self.nms.get_mut(&allocated.agent_id) {
            nm.live_containers += 1;
            nm.serves.insert(allocated.id.attempt.app);
        }
        self.containers.insert(allocated.id, Container { allocated, is_am, state: ContainerState::Allocated, killed_for: None });
    }

    fn kill_container(&mut self, id: ContainerId, code: i32, why: &str, out: &mut Vec<Effect>) {
        let Some(c) = self.containers.get_mut(&id) else { return };
        if c.state == ContainerState::Done || c.killed_for.is_some() {
            return;
        }
        c.killed_for = Some((code, why.to_owned()));
        tracing::info!(container_id = %id, exit_status = code, reason = why, "killing container");
        out.push(Effect::Kill { task_id: TaskId::new(id.to_string()), agent_id: c.allocated.agent_id.clone() });
    }

    /// Kills a container the shell could not start (its AM launch failed):
    /// its end is reported with `code` and `why`.
    pub fn abort_container(&mut self, id: ContainerId, code: i32, why: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        self.kill_container(id, code, why, &mut out);
        out
    }

    fn fail_attempt(&mut self, rm: &mut RmCore, id: ApplicationId, why: &str, now: Now, out: &mut Vec<Effect>) {
        let now_ms = now.mono_ms();
        let Some(app) = self.apps.get_mut(&id) else { return };
        let attempt = app.attempt.id;
        app.attempt.phase = Phase::Failed;
        tracing::warn!(application_id = %id, attempt_id = %attempt, reason = why, "application attempt failed");
        let victims: Vec<ContainerId> = self
            .containers
            .iter()
            .filter(|(cid, c)| cid.attempt == attempt && c.state != ContainerState::Done)
            .map(|(cid, _)| *cid)
            .collect();
        for cid in victims {
            self.kill_container(cid, exit_status::ABORTED, "Container of a failed application attempt", out);
        }
        let app = self.apps.get_mut(&id).expect("present above");
        if attempt.attempt < app.max_attempts {
            app.attempt = Attempt::new(AttemptId { app: id, attempt: attempt.attempt + 1 }, now_ms);
            tracing::info!(application_id = %id, attempt_id = %app.attempt.id, "starting a new attempt");
            // The report shows no AM until the new one registers, as YARN's.
            let _ = rm.set_am_endpoint(id, None);
            out.push(Effect::Revive);
        } else {
            let diagnostics = format!(
                "Application {id} failed {n} times (global limit ={n}; local limit is ={n}) due to {why}. Failing the application.",
                n = app.max_attempts
            );
            if let Err(e) = rm.fail(id, &diagnostics, now.unix_ms) {
                tracing::warn!(application_id = %id, error = %e, "cannot mark the application failed");
            }
            app.ending = true;
        }
    }

    /// A status update for one of the shim's tasks (`task_id` is a
    /// container id or a node manager's task id).
    /// The broker revoked these tasks: those that are live containers of
    /// an application's current attempt are named in its next allocate
    /// answers (PreemptionMessage) until they end, killed by the broker at
    /// its deadline unless the AM releases them first. Returns how many
    /// containers that was.
    pub fn preempt(&mut self, tasks: &[TaskId]) -> usize {
        let mut named = 0;
        for task in tasks {
            let Ok(cid) = task.as_str().parse::<ContainerId>() else { continue };
            let live = self.containers.get(&cid).is_some_and(|c| c.state != ContainerState::Done);
            let Some(app) = self.apps.get_mut(&cid.attempt.app) else { continue };
            if live && app.attempt.id == cid.attempt && app.attempt.to_preempt.insert(cid) {
                tracing::info!(container_id = %cid, "container to be preempted");
                named += 1;
            }
        }
        named
    }

    pub fn task_update(&mut self, rm: &mut RmCore, task_id: &TaskId, event: TaskEvent, now: impl Into<Now>) -> Vec<Effect> {
        let now: Now = now.into();
        let now_ms = now.mono_ms();
        let mut out = Vec::new();
        if let Some((agent, nm)) = self.nms.iter_mut().find(|(_, n)| n.task_id == *task_id) {
            match event {
                TaskEvent::Running => {
                    if nm.state == NmState::Launching {
                        nm.state = NmState::Running;
                    }
                }
                ref ended => {
                    tracing::info!(agent_id = %agent, %task_id, event = ?ended, "node manager ended");
                    let agent = agent.clone();
                    self.nms.remove(&agent);
                }
            }
            return out;
        }
        let Ok(cid) = task_id.as_str().parse::<ContainerId>() else {
            tracing::debug!(%task_id, "update for a task the scheduler does not know");
            return out;
        };
        let Some(c) = self.containers.get_mut(&cid) else { return out };
        if c.state == ContainerState::Done {
            return out;
        }
        if !event.is_terminal() {
            c.state = ContainerState::Running;
            return out;
        }
        c.state = ContainerState::Done;
        let (exit, diagnostics) = match (&c.killed_for, &event) {
            (_, TaskEvent::MemoryLimit { message }) => (
                exit_status::KILLED_EXCEEDED_PMEM,
                format!("Container {cid} is running beyond physical memory limits ({}). {message}. Killing container.", c.allocated.capacity),
            ),
            (Some((code, why)), _) => (*code, why.clone()),
            (None, TaskEvent::Exited { code, signal, message }) => match (code, signal) {
                (Some(code), _) => (*code, if *code == 0 { String::new() } else { format!("Exception from container-launch. Exit code: {code}. {message}") }),
                (None, Some(sig)) => (128 + sig, format!("Container killed by signal {sig}. {message}")),
                (None, None) => (exit_status::INVALID, message.clone()),
            },
            (None, TaskEvent::Lost { message }) => (exit_status::ABORTED, format!("Container released on a *lost* node: {message}")),
            (None, TaskEvent::Killed { message }) => (exit_status::KILLED_BY_RESOURCEMANAGER, message.clone()),
            (None, TaskEvent::Preempted { message }) => (exit_status::PREEMPTED, format!("Container preempted by scheduler. {message}")),
            (None, TaskEvent::Failed { message }) => (exit_status::INVALID, format!("Container could not be launched: {message}")),
            (None, TaskEvent::Running) => unreachable!("terminal events only"),
        };
        let (is_am, agent, capacity) = (c.is_am, c.allocated.agent_id.clone(), c.allocated.capacity);
        tracing::info!(container_id = %cid, exit_status = exit, %diagnostics, "container completed");
        if let Some(nm) = self.nms.get_mut(&agent) {
            nm.live_containers = nm.live_containers.saturating_sub(1);
            if nm.live_containers == 0 {
                nm.idle_since_ms = now_ms;
            }
        }
        self.containers.remove(&cid);
        let app_id = cid.attempt.app;
        let Some(app) = self.apps.get_mut(&app_id) else { return out };
        if app.attempt.id != cid.attempt {
            return out;
        }
        if is_am && matches!(app.attempt.phase, Phase::Launched | Phase::Registered) && !app.ending {
            let why = format!(
                "AM Container for {} exited with  exitCode: {exit}\nFailing this attempt.Diagnostics: {diagnostics}",
                cid.attempt
            );
            self.fail_attempt(rm, app_id, &why, now, &mut out);
            return out;
        }
        if !is_am && app.attempt.phase == Phase::Registered {
            app.attempt.fresh.retain(|f| *f != cid);
            app.attempt.completed.push(Completed { id: cid, exit_status: exit, diagnostics, capacity });
        }
        out
    }

    /// registerApplicationMaster from the attempt the AMRM token names.
    pub fn register(&mut self, rm: &mut RmCore, attempt: AttemptId, now: impl Into<Now>) -> Result<Registered, AmError> {
        let now: Now = now.into();
        let now_ms = now.mono_ms();
        let app = self.current(attempt)?;
        match app.attempt.phase {
            Phase::Registered => return Err(AmError::AlreadyRegistered(attempt.app)),
            Phase::Launched => {}
            _ => return Err(AmError::AttemptNotFound(attempt)),
        }
        rm.am_registered(attempt.app, now.unix_ms).map_err(AmError::Rm)?;
        let app = self.apps.get_mut(&attempt.app).expect("found above");
        app.attempt.phase = Phase::Registered;
        app.attempt.last_heard_ms = now_ms;
        // Node changes are news from here on, as in YARN.
        app.attempt.nodes_seen = rm.nodes(&[]).iter().map(|n| (n.observed.agent_id.clone(), n.observed.state)).collect();
        app.attempt.nodes_seen_generation = rm.node_generation();
        app.attempt.last_response_id = 0;
        tracing::info!(application_id = %attempt.app, attempt_id = %attempt, "ApplicationMaster registered");
        Ok(Registered { maximum_capability: rm.maximum_capability(), queue: app.queue.clone() })
    }

    fn current(&self, attempt: AttemptId) -> Result<&App, AmError> {
        match self.apps.get(&attempt.app) {
            Some(app) if app.attempt.id == attempt => Ok(app),
            _ => Err(AmError::AttemptNotFound(attempt)),
        }
    }

    /// allocate: new absolute asks, releases and blacklist changes in;
    /// new containers, completed containers and NM token nodes out.
    /// The answer is kept (typed, without its effects) so that a repeated
    /// call gets it again.
    pub fn allocate(&mut self, rm: &RmCore, attempt: AttemptId, call: AllocateCall, now: impl Into<Now>) -> Result<AllocateOutcome, AmError> {
        let now: Now = now.into();
        let now_ms = now.mono_ms();
        let app = self.current(attempt)?;
        if app.attempt.phase == Phase::Launched {
            return Err(AmError::NotRegistered(attempt));
        }
        if !matches!(app.attempt.phase, Phase::Registered | Phase::Unregistered) {
            return Err(AmError::AttemptNotFound(attempt));
        }
        let last = app.attempt.last_response_id;
        if call.response_id.wrapping_add(1) == last {
            if let Some(last) = &app.attempt.last_response {
                return Ok(AllocateOutcome::Replay(last.clone()));
            }
        }
        if call.response_id != last {
            return Err(AmError::InvalidResponseId { attempt, expected: last, got: call.response_id });
        }
        let max = rm.maximum_capability();
        for ask in &call.asks {
            let c = ask.capability;
            if ask.num_containers < 0 {
                return Err(AmError::InvalidRequest(format!("negative container count {} for {}", ask.num_containers, ask.resource_name)));
            }
            if ask.num_containers > 0 && (c.memory_mb < 0 || c.vcores < 0 || !(c.memory_mb <= max.memory_mb && c.vcores <= max.vcores)) {
                return Err(AmError::InvalidResource { asked: c, max });
            }
            if ask.resource_name.is_empty() {
                return Err(AmError::InvalidRequest("an ask with an empty resource name".into()));
            }
        }
        let mut effects = Vec::new();
        let app = self.apps.get_mut(&attempt.app).expect("found above");
        let shutdown = app.ending;
        let a = &mut app.attempt;
        a.last_heard_ms = now_ms;
        let mut more_demand = false;
        for ask in call.asks {
            let key = AskKey {
                priority: ask.priority,
                allocation_request_id: ask.allocation_request_id,
                memory_mb: ask.capability.memory_mb,
                vcores: ask.capability.vcores,
                resource_name: ask.resource_name,
            };
            let before = a.asks.get(&key).map_or(0, |e| e.num);
            if key.resource_name == ANY {
                if ask.num_containers > before {
                    more_demand = true;
                }
                if ask.num_containers > 0 {
                    a.waiting_since.entry(key.priority).or_insert(now_ms);
                }
            }
            if ask.num_containers == 0 {
                a.asks.remove(&key);
            } else {
                a.asks.insert(key, AskEntry { num: ask.num_containers, relax_locality: ask.relax_locality });
            }
        }
        for host in call.blacklist_additions {
            a.blacklist.insert(host);
        }
        for host in &call.blacklist_removals {
            a.blacklist.remove(host);
        }
        if a.phase == Phase::Unregistered {
            a.asks.clear();
        }
        let fresh: Vec<ContainerId> = std::mem::take(&mut a.fresh);
        let completed = std::mem::take(&mut a.completed);
        a.last_response_id = last.wrapping_add(1);
        let response_id = a.last_response_id;
        let mut releases = Vec::new();
        for cid in call.releases {
            if cid.attempt.app != attempt.app {
                continue;
            }
            releases.push(cid);
        }
        for cid in releases {
            self.kill_container(cid, exit_status::ABORTED, "Container released by application", &mut effects);
        }
        let app = self.apps.get_mut(&attempt.app).expect("found above");
        let mut allocated = Vec::new();
        let mut nm_token_nodes = Vec::new();
        for cid in fresh {
            if let Some(c) = self.containers.get(&cid) {
                if app.attempt.nm_tokens_sent.insert(c.allocated.node.clone()) {
                    nm_token_nodes.push(c.allocated.node.clone());
                }
                allocated.push(c.allocated.clone());
            }
        }
        if more_demand {
            effects.push(Effect::Revive);
        }
        let mut updated_nodes = Vec::new();
        let a = &mut self.apps.get_mut(&attempt.app).expect("found above").attempt;
        if a.nodes_seen_generation != rm.node_generation() {
            a.nodes_seen_generation = rm.node_generation();
            for n in rm.nodes(&[]) {
                if a.nodes_seen.get(&n.observed.agent_id) != Some(&n.observed.state) {
                    a.nodes_seen.insert(n.observed.agent_id.clone(), n.observed.state);
                    updated_nodes.push(n.clone());
                }
            }
        }
        let containers = &self.containers;
        a.to_preempt.retain(|cid| containers.get(cid).is_some_and(|c| c.state != ContainerState::Done));
        let preempt: Vec<Allocated> = a.to_preempt.iter().filter_map(|cid| containers.get(cid)).map(|c| c.allocated.clone()).collect();
        let running = rm.nodes(&[NodeState::Running]);
        let headroom = running.iter().fold(Capacity::default(), |h, n| Capacity {
            memory_mb: h.memory_mb + (n.observed.capability.memory_mb - n.observed.used.memory_mb).max(0),
            vcores: h.vcores + (n.observed.capability.vcores - n.observed.used.vcores).max(0),
        });
        let result = AllocateResult {
            response_id,
            allocated,
            completed,
            nm_token_nodes,
            updated_nodes,
            cluster_nodes: running.len() as i32,
            headroom,
            preempt,
            shutdown,
            priority: rm.application(attempt.app).map_or(0, |a| a.submission.priority),
            issued_ms: now.unix_ms,
            effects: Vec::new(),
        };
        if let Some(app) = self.apps.get_mut(&attempt.app) {
            app.attempt.last_response = Some(Box::new(result.clone()));
        }
        Ok(AllocateOutcome::Fresh(AllocateResult { effects, ..result }))
    }

    /// finishApplicationMaster: the application's outcome. Returns whether
    /// the attempt is now unregistered (always, once accepted).
    pub fn finish(
        &mut self,
        rm: &mut RmCore,
        attempt: AttemptId,
        status: FinalStatus,
        diagnostics: &str,
        now: impl Into<Now>,
    ) -> Result<bool, AmError> {
        let now: Now = now.into();
        let app = self.current(attempt)?;
        match app.attempt.phase {
            Phase::Unregistered => return Ok(true),
            Phase::Registered => {}
            Phase::Launched => return Err(AmError::NotRegistered(attempt)),
            _ => return Err(AmError::AttemptNotFound(attempt)),
        }
        let already_final = rm.application(attempt.app).map(|a| a.state.is_final()).unwrap_or(true);
        if !already_final {
            rm.am_finished(attempt.app, status, diagnostics, now.unix_ms).map_err(AmError::Rm)?;
        }
        let app = self.apps.get_mut(&attempt.app).expect("found above");
        app.attempt.phase = Phase::Unregistered;
        app.attempt.unregistered_ms = Some(now.mono_ms());
        app.attempt.asks.clear();
        tracing::info!(application_id = %attempt.app, attempt_id = %attempt, ?status, "ApplicationMaster unregistered");
        Ok(true)
    }

    /// Checks the invariants in the module comment.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, c) in &self.containers {
            if c.state == ContainerState::Done {
                return Err(format!("container {id} is done but still kept"));
            }
        }
        for app in self.apps.values() {
            if app.attempt.id.attempt > app.max_attempts {
                return Err(format!("{} is attempt {} of at most {}", app.id, app.attempt.id.attempt, app.max_attempts));
            }
            if let Some((k, e)) = app.attempt.asks.iter().find(|(_, e)| e.num < 0) {
                return Err(format!("{} asks for {} containers at {:?}", app.attempt.id, e.num, k));
            }
        }
        for (agent, nm) in &self.nms {
            let live = self.containers.values().filter(|c| c.allocated.agent_id == *agent).count();
            if nm.live_containers != live {
                return Err(format!("node manager on {agent} counts {} live containers, there are {live}", nm.live_containers));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Locality {
    node: bool,
    rack: bool,
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
