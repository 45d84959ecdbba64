//! The broker core: a deterministic state machine with no I/O.
//!
//! The shell feeds it what happened — an agent attached, a framework called,
//! a connection dropped, time passed — together with the current time, and
//! carries out what comes back: messages for connections, and connections to
//! close. Given the same inputs it produces the same outputs, so whole
//! clusters can be tested in one process.
//!
//! Books kept here, and the invariants between them:
//! - every live offer's resources are allocated in the allocator to its
//!   (framework, role) on its agent, and appear in no other offer;
//! - every non-terminal task's resources are allocated likewise until its
//!   terminal update arrives (or its framework or agent is removed);
//! - an agent or framework is in the allocator exactly while it is in
//!   `agents` / `frameworks`.

mod accept;
mod agents;
mod backoff;
mod frameworks;
mod invariants;
mod maintenance;
pub use maintenance::MAX_DRAIN_GRACE;
mod locality;
mod keyed;
use keyed::Keyed;
/// Offer keys, seeded per process like the agents' and frameworks' maps.
type KeyMap<V> = HashMap<OfferKey, V, keyed::Hasher>;
type KeySet = std::collections::HashSet<OfferKey, keyed::Hasher>;
mod outgoing;
pub use outgoing::OfferBatch;
use outgoing::{offer_id_text, offer_key_of, AgentHost, ExpiryQueue, OutgoingOffer};
mod recovery;
mod reservations;
pub(crate) use reservations::{operation_action, operator_operation_role};
mod revocation;
pub mod roles;
pub mod state;
pub use recovery::RecoveryReport;
#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod reservation_tests;
#[cfg(test)]
mod maintenance_tests;
#[cfg(test)]
mod roles_tests;
#[cfg(test)]
mod revocable_tests;
#[cfg(test)]
mod guarantee_props;
#[cfg(test)]
mod security_tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use weir_allocator::{Allocator, AllocatorConfig};
use weir_model::{AgentId, FrameworkId, Milli, OfferId, Reservation, ReservationId, ResourceSet, Role, TaskId, TaskState, Volume, VolumeId};
use weir_proto::convert::task_state_to_proto;
use weir_proto::v1;

/// Identifies one stream (an agent's or a framework's) in the shell.
pub type ConnId = u64;

/// What the shell must do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Agent(ConnId, v1::BrokerMessage),
    Framework(ConnId, v1::Event),
    /// An OFFERS event for a framework, to be built (outside the broker's
    /// lock) with [`OfferBatch::into_event`] and sent like `Framework`.
    Offers(ConnId, OfferBatch),
    /// Close the stream once what was queued before has been sent.
    Close(ConnId),
    /// Write this to the durable registry before carrying out anything
    /// that comes after it (the acknowledgement it describes).
    Registry(weir_ha::Write),
    /// Ask the NameNodes where the blocks of these HDFS files are, and
    /// hand the answer to [`BrokerCore::hdfs_located`].
    LocateHdfs { framework: FrameworkId, paths: Vec<String> },
}

impl Output {
    /// This output as the shell sends it: `Offers` built into the
    /// `Framework` event it becomes, anything else as it is.
    pub fn built(self) -> Output {
        match self {
            Output::Offers(conn, batch) => Output::Framework(conn, batch.into_event()),
            other => other,
        }
    }
}

/// The broker's tunables, read from configuration by the binary.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub allocation_interval: Duration,
    pub offer_timeout: Duration,
    pub agent_unreachable_timeout: Duration,
    /// How long an unreachable agent may take to come back before it is removed.
    pub agent_reregister_timeout: Duration,
    pub agent_heartbeat_interval: Duration,
    pub framework_heartbeat_interval: Duration,
    pub refuse_default: Duration,
    pub weights: Vec<(Role, f64)>,
    /// After a failover, how long the new leader waits for the agents in
    /// the registry to re-register before it makes offers without them.
    pub recovery_timeout: Duration,
    /// Longer failover timeouts asked for at SUBSCRIBE are cut to this.
    pub max_failover_timeout: Duration,
    /// Frameworks the broker keeps (connected or waiting to fail over); a
    /// new one past this is refused with the reason.
    pub max_frameworks: usize,
    /// Roles the broker keeps (weighted or subscribed to); a new one past
    /// this is refused with the reason.
    pub max_roles: usize,
    /// How long a drained agent's tasks may run on when the operator
    /// names no grace period.
    pub drain_grace_default: Duration,
    /// Delay scheduling: how long a framework that said where its data is
    /// passes over agents without it (zero: locality off).
    pub locality_delay: Duration,
    /// `broker.allocator.policy`: the name of a `weir_allocator::policy`.
    pub allocator_policy: String,
    /// How long a framework has to give up a task revoked for a
    /// guaranteed role before the broker kills it.
    pub revocation_grace: Duration,
    /// The same for a task running on revocable resources (lent headroom,
    /// taken back first): zero by default, as Mesos revokes them at once.
    pub revocable_grace: Duration,
    /// Decline backoff (see `core/backoff.rs`): from this many offers
    /// declined in a row on, a decline's filter doubles per decline...
    pub decline_backoff_after: u32,
    /// ... up to this (zero: no backoff).
    pub decline_backoff_max: Duration,
    /// Offers bounded by fair share (`broker.offer.fair-share-bound`): see
    /// `weir_allocator::AllocatorConfig::fair_share_bound`.
    pub fair_share_bound: bool,
    /// Who may do what (`broker.acl.*`); open by default.
    pub acls: crate::acl::Acls,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            allocation_interval: Duration::from_millis(100),
            offer_timeout: Duration::from_secs(60),
            agent_unreachable_timeout: Duration::from_secs(15),
            agent_reregister_timeout: Duration::from_secs(600),
            agent_heartbeat_interval: Duration::from_secs(1),
            framework_heartbeat_interval: Duration::from_secs(15),
            refuse_default: Duration::from_secs(5),
            weights: Vec::new(),
            recovery_timeout: Duration::from_secs(30),
            max_failover_timeout: Duration::from_secs(7 * 24 * 3600),
            max_frameworks: 1000,
            max_roles: 1000,
            drain_grace_default: Duration::from_secs(300),
            locality_delay: weir_allocator::DEFAULT_LOCALITY_DELAY,
            allocator_policy: weir_allocator::policy::default_policy().name().to_owned(),
            revocation_grace: Duration::from_secs(10),
            revocable_grace: Duration::ZERO,
            decline_backoff_after: 0,
            decline_backoff_max: Duration::from_secs(60),
            fair_share_bound: false,
            acls: crate::acl::Acls::open(),
        }
    }
}

/// Agents offered per allocation call (see `BrokerCore::max_offers_per_cycle`).
/// At a few µs of bookkeeping per offer, a call stays in the low tens of
/// milliseconds; a 50,000-agent cycle goes out over about 25 ticks.
pub const MAX_OFFERS_PER_CYCLE: usize = 2_000;

/// How many removed agents are remembered (to tell them to kill their
/// tasks if they come back).
const REMOVED_AGENTS_KEPT: usize = 10_000;
/// How many removed frameworks are remembered (to kill their tasks on
/// agents that were away when they were removed).
const REMOVED_FRAMEWORKS_KEPT: usize = 10_000;
/// Launch latencies kept between two `take_launch_latencies` (the shell
/// takes them after every call; the bound only matters if it stops).
pub(super) const MAX_LAUNCH_LATENCIES: usize = 100_000;
/// How many finished tasks `/state` remembers.
const COMPLETED_TASKS_KEPT: usize = 1000;
/// Filters longer than this are clamped (a framework cannot hide an agent forever).
const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone)]
struct Agent {
    /// Its hostname and attributes, shared with every offer of it.
    host: Arc<AgentHost>,
    http_address: String,
    /// What the agent reported: its configured resources, static
    /// reservations included, dynamic ones not.
    configured: ResourceSet,
    /// `configured` with each dynamic reservation moved to its role.
    total: ResourceSet,
    reservations: BTreeMap<ReservationId, Reservation>,
    volumes: BTreeMap<(Role, VolumeId), Volume>,
    conn: Option<ConnId>,
    last_seen: Duration,
    reachable: bool,
    unreachable_since: Option<Duration>,
    registered_at: Duration,
    tasks: BTreeSet<(FrameworkId, TaskId)>,
    /// Its outstanding offers (a few at most: one per role it is offered
    /// in at a time), oldest first.
    offers: Vec<OfferKey>,
}

#[derive(Debug, Clone)]
struct Framework {
    name: String,
    /// Who subscribed it (FrameworkInfo.principal, set by the shell from
    /// the caller's token with authentication on). Only that principal
    /// may re-subscribe under its id.
    principal: String,
    roles: Vec<Role>,
    user: String,
    hostname: String,
    /// The framework's own web UI, as it announced it (for the broker UI).
    webui_url: String,
    failover_timeout: Duration,
    conn: Option<ConnId>,
    /// Set while the framework has no stream; it is removed once
    /// `failover_timeout` has passed since.
    disconnected_at: Option<Duration>,
    /// Known only from tasks an agent reported; never subscribed to this broker.
    recovered: bool,
    registered_at: Duration,
    /// Its outstanding offers (iterate them sorted where order shows).
    offers: KeySet,
    tasks: BTreeSet<TaskId>,
    /// What it said its tasks read (DataLocality).
    data: Option<locality::DataWanted>,
    /// It stated the REVOCABLE_RESOURCES capability at its last SUBSCRIBE.
    takes_revocable: bool,
    /// Offers declined in a row, per role (see `backoff.rs`).
    declines: BTreeMap<Role, u32>,
}

/// An offer's key in the books: the number in its id (`{id_prefix}-O{n}`).
/// The books index offers by it rather than by the id's text, whose long
/// common prefix made every B-tree step a string comparison.
type OfferKey = u64;

#[derive(Debug, Clone)]
struct Offer {
    framework: FrameworkId,
    agent: AgentId,
    role: Role,
    resources: ResourceSet,
    expires: Duration,
    /// Lent headroom (`Resource.revocable` on the wire): given back with
    /// `recover_revocable`, and rescinded first for a starved guarantee.
    revocable: bool,
}

#[derive(Debug, Clone)]
struct Task {
    agent: AgentId,
    role: Role,
    name: String,
    resources: ResourceSet,
    state: TaskState,
    latest: v1::TaskStatus,
    /// The latest usage its agent measured (with isolation).
    usage: Option<v1::TaskUsage>,
    /// Volumes (of `role`, on `agent`) it mounts.
    volumes: Vec<VolumeId>,
    /// Disk in `resources` that is volumes' rather than scratch space.
    volume_disk: Milli,
    /// When this broker sent its LAUNCH, until its first RUNNING (for the
    /// launch latency); unknown for tasks an agent reported.
    launched_at: Option<Duration>,
    /// When the books took it in (launched, or reported by a
    /// re-registering agent): revocation takes the newest first.
    placed_at: Duration,
    /// Launched on revocable offers: its resources are lent headroom, the
    /// first revoked for a guaranteed role. A task a re-registering agent
    /// reports is not (the agent does not know; a new leader counts it
    /// as plain use).
    revocable: bool,
    /// Labelled `weir.revocation.exempt=true`: never revoked.
    exempt: bool,
}

#[derive(Debug, Clone)]
struct CompletedTask {
    framework: FrameworkId,
    /// Its framework's principal when it ended: `/state` and the UI show
    /// it (and `view-framework` decides by it) after the framework is gone.
    principal: String,
    task: TaskId,
    agent: AgentId,
    name: String,
    state: TaskState,
    message: String,
    exit_code: Option<i32>,
}

/// Counters exported as Prometheus metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    pub offers_made: u64,
    pub offers_declined: u64,
    pub offers_rescinded: u64,
    pub offers_accepted: u64,
    pub tasks_launched: u64,
    pub tasks_finished: u64,
    pub tasks_failed: u64,
    pub tasks_killed: u64,
    pub tasks_errored: u64,
    pub status_updates: u64,
    pub allocation_cycles: u64,
    pub agents_registered: u64,
    pub agents_reregistered: u64,
    pub agents_unreachable: u64,
    pub bad_calls: u64,
    pub operations_finished: u64,
    pub operations_failed: u64,
}

pub struct BrokerCore {
    settings: BrokerSettings,
    /// Makes ids unique across broker restarts (the shell passes a random one).
    id_prefix: Arc<str>,
    next_id: u64,
    allocator: Allocator,
    agents: Keyed<AgentId, Agent>,
    agent_conns: HashMap<ConnId, AgentId>,
    frameworks: Keyed<FrameworkId, Framework>,
    framework_conns: HashMap<ConnId, FrameworkId>,
    /// Outstanding offers (sort the keys where the order shows).
    offers: KeyMap<Offer>,
    /// Offers by expiry, so a tick looks only at the ones due.
    offer_expiry: ExpiryQueue,
    /// (removal time, framework) of every disconnected framework that has
    /// a failover deadline: the tick looks at the first entry only, so its
    /// cost does not grow with frameworks waiting to fail over.
    failover_deadlines: BTreeSet<(Duration, FrameworkId)>,
    tasks: BTreeMap<(FrameworkId, TaskId), Task>,
    completed: VecDeque<CompletedTask>,
    /// Agents removed after their re-register timeout, oldest first.
    removed_agents: VecDeque<AgentId>,
    /// Frameworks removed (failover timeout passed, or torn down), oldest
    /// first: an agent that returns with their tasks is told to kill them.
    removed_frameworks: VecDeque<FrameworkId>,
    /// Tasks of removed agents that were told to die: their last updates
    /// are acknowledged here (the framework already heard TASK_GONE).
    doomed_tasks: BTreeSet<(FrameworkId, TaskId)>,
    /// Tasks whose end the framework has not acknowledged yet, and which
    /// the books no longer hold: reported ended at a re-registration (a new
    /// leader never saw them run), or retired when their final update came
    /// in. The update is on its way (the agent resends it until it is
    /// acknowledged); until then reconciliation answers nothing for them,
    /// never TASK_UNKNOWN.
    ended_unacked: BTreeMap<(FrameworkId, TaskId), (AgentId, v1::TaskStatus)>,
    /// Something changed that an allocation cycle could act on.
    dirty: bool,
    last_allocation: Option<Duration>,
    /// The earliest moment a decline filter lapses (then a cycle is due).
    next_filter_expiry: Option<Duration>,
    /// A cycle was cut short at `max_offers_per_cycle`: the next tick goes
    /// on with it without waiting for the allocation interval.
    allocation_unfinished: bool,
    /// When a framework waiting for agents with its data stops waiting
    /// (the allocator's `locality_deadline` after the last cycle).
    locality_deadline: Option<Duration>,
    /// Agents or volumes changed since frameworks' data was last placed.
    wants_stale: bool,
    /// Agents offered per allocation call: the core holds the shell's lock
    /// while it books offers, so one huge cycle would stall every stream.
    max_offers_per_cycle: usize,
    /// No reachable agent can have been silent past the unreachable timeout
    /// before this moment (oldest `last_seen` at the last scan + timeout),
    /// so ticks skip the scan over every agent until then.
    unreachable_scan_after: Duration,
    /// Likewise, no unreachable agent is due for removal before this.
    removal_scan_at: Duration,
    started_at: Duration,
    /// Wall-clock time since the Unix epoch at `started_at`, read by the
    /// shell: the core turns its monotonic times into protocol timestamps
    /// with it (see [`BrokerCore::timestamp`]) and never reads a clock.
    unix_started_at: Duration,
    counters: Counters,
    /// The leadership term this core acts in (0: no election).
    epoch: u64,
    /// Set while a new leader waits for the agents of the registry.
    recovery: Option<recovery::Recovery>,
    /// What the registry holds, so only changes are written.
    registered_agents: BTreeMap<AgentId, v1::AgentInfo>,
    registered_frameworks: BTreeMap<FrameworkId, v1::FrameworkInfo>,
    /// Each agent's reservations and volumes as the registry holds them
    /// (kept for agents that are away or were removed: `/state` shows them
    /// as a missing agent's until it returns).
    registered_resources: BTreeMap<AgentId, v1::broker_message::CheckpointResources>,
    /// The latest resource operations' statuses, oldest first (for `/state`).
    operations: VecDeque<v1::OperationStatus>,
    /// Agents under maintenance (DRAINING or DRAINED), see `maintenance.rs`.
    drains: BTreeMap<AgentId, maintenance::Drain>,
    /// Maintenance windows not yet begun (their agents still offered).
    windows: BTreeMap<AgentId, weir_model::Unavailability>,
    /// Agents an operator marked gone: refused if they re-register.
    gone_agents: BTreeSet<AgentId>,
    /// Launch latencies (LAUNCH to first RUNNING) not yet taken by the shell.
    launch_latencies: Vec<Duration>,
    /// Tasks being revoked for a guaranteed role, until they end.
    revocations: BTreeMap<(FrameworkId, TaskId), revocation::Revocation>,
    /// Each backed volume's last restore or sync as its agent reported it.
    volume_syncs: BTreeMap<(AgentId, weir_model::Role, weir_model::VolumeId), state::VolumeSyncDoc>,
}

impl BrokerCore {
    /// A core starting at monotonic time `now`, when the wall clock reads
    /// `unix_now` (since the Unix epoch).
    pub fn new(settings: BrokerSettings, id_prefix: impl Into<String>, now: Duration, unix_now: Duration) -> BrokerCore {
        let mut allocator =
            Allocator::new(AllocatorConfig {
                locality_delay: settings.locality_delay,
                fair_share_bound: settings.fair_share_bound,
                ..AllocatorConfig::default()
            });
        match weir_allocator::policy::by_name(&settings.allocator_policy) {
            Some(policy) => allocator.set_policy(policy),
            // The binary checks the name when it reads the configuration.
            None => tracing::error!(policy = %settings.allocator_policy, "unknown allocation policy; using drf"),
        }
        for (role, weight) in &settings.weights {
            // Weights were validated when the settings were read.
            let _ = allocator.set_weight(role.clone(), *weight);
        }
        BrokerCore {
            settings,
            id_prefix: Arc::from(id_prefix.into()),
            next_id: 0,
            allocator,
            agents: Keyed::default(),
            agent_conns: HashMap::new(),
            frameworks: Keyed::default(),
            framework_conns: HashMap::new(),
            offers: KeyMap::default(),
            offer_expiry: ExpiryQueue::default(),
            failover_deadlines: BTreeSet::new(),
            tasks: BTreeMap::new(),
            completed: VecDeque::new(),
            removed_agents: VecDeque::new(),
            removed_frameworks: VecDeque::new(),
            doomed_tasks: BTreeSet::new(),
            ended_unacked: BTreeMap::new(),
            dirty: false,
            last_allocation: None,
            next_filter_expiry: None,
            allocation_unfinished: false,
            locality_deadline: None,
            wants_stale: false,
            max_offers_per_cycle: MAX_OFFERS_PER_CYCLE,
            unreachable_scan_after: Duration::ZERO,
            removal_scan_at: Duration::ZERO,
            started_at: now,
            unix_started_at: unix_now,
            counters: Counters::default(),
            epoch: 0,
            recovery: None,
            registered_agents: BTreeMap::new(),
            registered_frameworks: BTreeMap::new(),
            registered_resources: BTreeMap::new(),
            operations: VecDeque::new(),
            drains: BTreeMap::new(),
            windows: BTreeMap::new(),
            gone_agents: BTreeSet::new(),
            launch_latencies: Vec::new(),
            volume_syncs: BTreeMap::new(),
            revocations: BTreeMap::new(),
        }
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Launch latencies measured since the last call (LAUNCH sent to the
    /// task's first RUNNING, in the core's time), for the shell's histogram.
    pub fn take_launch_latencies(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.launch_latencies)
    }

    /// Resources in outstanding offers, by the role they are offered to.
    pub fn offered_by_role(&self) -> BTreeMap<Role, weir_model::Resources> {
        let mut by_role: BTreeMap<Role, weir_model::Resources> = BTreeMap::new();
        for o in self.offers.values() {
            by_role.entry(o.role.clone()).or_default().add_assign(&o.resources.total());
        }
        by_role
    }

    /// Sets how many agents one allocation call offers (at least 1); the
    /// rest of the cycle follows on the next ticks.
    pub fn set_max_offers_per_cycle(&mut self, max: usize) {
        self.max_offers_per_cycle = max.max(1);
    }

    /// True while an allocation cycle was cut short and the shell should
    /// tick again soon rather than after the allocation interval.
    pub fn allocation_unfinished(&self) -> bool {
        self.allocation_unfinished && self.dirty
    }

    /// `TaskStatus.timestamp` for the monotonic time `now`: seconds since
    /// the Unix epoch, as the protocol says. Derived from the wall time at
    /// start, so a wall-clock step while running does not show (updates
    /// stay ordered), at the price of slow drift over a long uptime.
    pub(crate) fn timestamp(&self, now: Duration) -> f64 {
        (self.unix_started_at + now.saturating_sub(self.started_at)).as_secs_f64()
    }

    fn fresh_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{}-{kind}{:04}", self.id_prefix, self.next_id)
    }

    /// Timers: offer expiry, unreachable agents, framework failover, and
    /// the batched allocation cycle.
    pub fn tick(&mut self, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        self.check_recovery(now, &mut out);
        if self.wants_stale {
            self.refresh_all_wants();
        }
        if self.locality_deadline.is_some_and(|t| t <= now) {
            self.locality_deadline = None;
            self.dirty = true;
        }
        self.expire_offers(now, &mut out);
        self.detect_unreachable_agents(now, &mut out);
        self.remove_lost_agents(now, &mut out);
        self.expire_disconnected_frameworks(now, &mut out);
        self.check_windows(now, &mut out);
        self.check_drains(now, &mut out);
        if self.next_filter_expiry.is_some_and(|t| t <= now) {
            // Only the earliest filter was tracked: the next one to lapse
            // must wake the allocator too, or an agent refused in several
            // roles for different times waits for some other event.
            self.next_filter_expiry = self.allocator.next_filter_expiry(now);
            self.dirty = true;
        }
        let interval_passed =
            self.last_allocation.is_none_or(|last| now >= last + self.settings.allocation_interval);
        // A half-recovered view makes no offers: they could hand out what
        // an agent that has not re-registered yet is already running.
        if self.dirty && (interval_passed || self.allocation_unfinished) && self.recovery.is_none() {
            self.allocate(now, &mut out);
            if !self.allocation_unfinished {
                self.plan_revocations(now, &mut out);
            }
        }
        self.enforce_revocations(now, &mut out);
        out
    }

    /// One allocation call: every agent's free resources become offers, up
    /// to `max_offers_per_cycle` agents; the rest follow on the next ticks.
    fn allocate(&mut self, now: Duration, out: &mut Vec<Output>) {
        self.last_allocation = Some(now);
        self.counters.allocation_cycles += 1;
        let mut allocations = Vec::new();
        let complete = self.allocator.allocate_at_most(now, self.max_offers_per_cycle, &mut allocations);
        self.allocation_unfinished = !complete;
        self.dirty = !complete;
        self.locality_deadline = self.allocator.locality_deadline();
        // One OFFERS event per framework, in the order of their first offer.
        let mut batches: Vec<(ConnId, OfferBatch)> = Vec::new();
        let mut batch_of: HashMap<ConnId, usize, keyed::Hasher> = HashMap::default();
        for allocation in allocations {
            // Only a window not begun: a draining agent is not offered.
            let unavailability = if self.windows.is_empty() { None } else { self.unavailability(&allocation.agent) };
            // Reservations and volumes only with the reserved resources
            // they stand on: an offer of the unreserved part alone does not
            // let a task use a volume.
            let (reservations, volumes) = if allocation.resources.reserved.get(&allocation.role).is_some_and(|r| !r.is_empty()) {
                self.offer_annotations(&allocation.agent, &allocation.framework, &allocation.role)
            } else {
                Default::default()
            };
            let Some((f, conn)) = self.frameworks.get_mut(&allocation.framework).and_then(|f| f.conn.map(|c| (f, c))) else {
                // The allocator offers only active frameworks; if the books
                // disagree, give the resources straight back.
                let _ = self.give_back_resources(
                    &allocation.agent,
                    &allocation.framework,
                    &allocation.role,
                    &allocation.resources,
                    allocation.revocable,
                );
                continue;
            };
            let Some(agent) = self.agents.get_mut(&allocation.agent) else {
                continue;
            };
            self.next_id += 1;
            let key = self.next_id;
            let expires = now + self.settings.offer_timeout;
            agent.offers.push(key);
            f.offers.insert(key);
            let host = agent.host.clone();
            self.offer_expiry.push(expires, key);
            self.offers.insert(
                key,
                Offer {
                    framework: allocation.framework.clone(),
                    agent: allocation.agent.clone(),
                    role: allocation.role.clone(),
                    resources: allocation.resources.clone(),
                    expires,
                    revocable: allocation.revocable,
                },
            );
            self.counters.offers_made += 1;
            let offer = OutgoingOffer {
                key,
                framework: allocation.framework,
                agent: allocation.agent,
                role: allocation.role,
                resources: allocation.resources,
                revocable: allocation.revocable,
                host,
                data_bytes: allocation.data_bytes,
                unavailability,
                reservations,
                volumes,
            };
            let i = *batch_of.entry(conn).or_insert_with(|| {
                batches.push((conn, OfferBatch { prefix: self.id_prefix.clone(), offers: Vec::new() }));
                batches.len() - 1
            });
            batches[i].1.offers.push(offer);
        }
        for (conn, batch) in batches {
            tracing::debug!(conn, count = batch.len(), "sending offers");
            out.push(Output::Offers(conn, batch));
        }
    }

    fn expire_offers(&mut self, now: Duration, out: &mut Vec<Output>) {
        while let Some(key) = self.offer_expiry.pop_due(now) {
            // An entry whose offer was taken back already is stale.
            let Some((framework, agent)) = self.offers.get(&key).map(|o| (o.framework.clone(), o.agent.clone())) else {
                continue;
            };
            tracing::info!(offer_id = %self.offer_id(key), "offer timed out; rescinding");
            self.rescind_offer(key, out);
            // A framework that lets offers time out goes behind everyone
            // else in line for that agent for a while (it still gets it if
            // nobody else wants it): otherwise a silent framework that wins
            // the tie wins it again each time and starves the others.
            let until = now + self.settings.refuse_default.max(Duration::from_secs(1));
            if let Err(err) = self.allocator.add_yield(&framework, &agent, until) {
                tracing::error!(framework_id = %framework, agent_id = %agent, error = %err, "could not put a timed-out framework behind the others");
            }
        }
    }

    /// Takes an offer back: tells its framework and returns the resources.
    fn rescind_offer(&mut self, key: OfferKey, out: &mut Vec<Output>) {
        if let Some(offer) = self.remove_offer(key) {
            self.counters.offers_rescinded += 1;
            if let Some(conn) = self.frameworks.get(&offer.framework).and_then(|f| f.conn) {
                out.push(Output::Framework(conn, event(v1::event::Kind::Rescind(v1::event::Rescind { offer_id: offer_id_text(&self.id_prefix, key) }))));
            }
        }
    }

    /// Removes an offer from every index and gives its resources back to the
    /// allocator. The caller decides what the framework is told.
    fn remove_offer(&mut self, key: OfferKey) -> Option<Offer> {
        let offer = self.unlink_offer(key)?;
        if let Err(err) = self.give_back_resources(&offer.agent, &offer.framework, &offer.role, &offer.resources, offer.revocable) {
            tracing::error!(offer_id = %self.offer_id(key), error = %err, "books out of step: offer resources were not allocated");
        }
        self.dirty = true;
        Some(offer)
    }

    /// Removes an offer from every index; its resources stay allocated.
    /// (Its expiry entry goes stale: see [`ExpiryQueue`].)
    fn unlink_offer(&mut self, key: OfferKey) -> Option<Offer> {
        let offer = self.offers.remove(&key)?;
        if let Some(agent) = self.agents.get_mut(&offer.agent) {
            if let Some(i) = agent.offers.iter().position(|&k| k == key) {
                agent.offers.remove(i);
            }
        }
        if let Some(f) = self.frameworks.get_mut(&offer.framework) {
            f.offers.remove(&key);
        }
        let offers = &self.offers;
        self.offer_expiry.compact(offers.len(), |key| offers.contains_key(&key));
        Some(offer)
    }

    /// The id frameworks know the offer `key` by.
    fn offer_id(&self, key: OfferKey) -> OfferId {
        OfferId::new(offer_id_text(&self.id_prefix, key))
    }

    /// The key of the outstanding offer whose id is `raw`, if there is one.
    /// Only the exact id this broker sent matches (not another rendering
    /// of the same number, nor another broker's prefix).
    fn offer_key(&self, raw: &str) -> Option<OfferKey> {
        offer_key_of(&self.id_prefix, raw).filter(|key| self.offers.contains_key(key))
    }

    /// Gives resources back to the allocator as what they are: revocable
    /// (lent headroom) or not.
    fn give_back_resources(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        resources: &ResourceSet,
        revocable: bool,
    ) -> Result<(), weir_allocator::AllocatorError> {
        if revocable {
            self.allocator.recover_revocable(agent, framework, role, resources)
        } else {
            self.allocator.recover(agent, framework, role, resources)
        }
    }

    /// Keeps `agent` from `framework` in `role` for `refuse`.
    fn add_filter(&mut self, framework: &FrameworkId, role: &Role, agent: &AgentId, refuse: Duration, now: Duration) {
        if refuse.is_zero() {
            return;
        }
        let until = now + refuse.min(MAX_REFUSE);
        if let Err(err) = self.allocator.add_filter(framework, role, agent, until) {
            tracing::error!(framework_id = %framework, agent_id = %agent, error = %err, "could not add a decline filter");
            return;
        }
        self.next_filter_expiry = Some(self.next_filter_expiry.map_or(until, |t| t.min(until)));
    }

    /// Moves a task that reached a terminal state out of the live books.
    fn retire_task(&mut self, framework: &FrameworkId, task_id: &TaskId) {
        let Some(task) = self.tasks.remove(&(framework.clone(), task_id.clone())) else {
            return;
        };
        if let Some(agent) = self.agents.get_mut(&task.agent) {
            agent.tasks.remove(&(framework.clone(), task_id.clone()));
        }
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.tasks.remove(task_id);
        }
        if let Err(err) = self.give_back_resources(&task.agent, framework, &task.role, &task.resources, task.revocable) {
            tracing::error!(task_id = %task_id, error = %err, "books out of step: task resources were not allocated");
        }
        match task.state {
            TaskState::Finished => self.counters.tasks_finished += 1,
            TaskState::Killed => self.counters.tasks_killed += 1,
            TaskState::Error => self.counters.tasks_errored += 1,
            _ => self.counters.tasks_failed += 1,
        }
        self.dirty = true;
        let (state, message) = (task.state, task.latest.message.clone());
        self.record_completed(framework, task_id, &task, state, &message);
    }

    fn record_completed(&mut self, framework: &FrameworkId, task_id: &TaskId, task: &Task, state: TaskState, message: &str) {
        self.completed.push_back(CompletedTask {
            framework: framework.clone(),
            principal: self.frameworks.get(framework).map(|f| f.principal.clone()).unwrap_or_default(),
            task: task_id.clone(),
            agent: task.agent.clone(),
            name: task.name.clone(),
            state,
            message: message.to_owned(),
            exit_code: task.latest.exit_code,
        });
        while self.completed.len() > COMPLETED_TASKS_KEPT {
            self.completed.pop_front();
        }
    }

    /// Sends a status update to a framework if it has a stream.
    fn notify_framework(&self, framework: &FrameworkId, status: v1::TaskStatus, out: &mut Vec<Output>) {
        if let Some(conn) = self.frameworks.get(framework).and_then(|f| f.conn) {
            out.push(Output::Framework(
                conn,
                event(v1::event::Kind::Update(v1::event::Update { status: Some(status) })),
            ));
        }
    }

    /// Whether `roles` fit under `broker.roles.max`; the error names the
    /// first new role and the limit.
    pub fn room_for_roles(&self, roles: &[Role]) -> Result<(), String> {
        // A nested role brings the roles above it that are not known yet.
        let mut named: Vec<Role> = Vec::new();
        for role in roles {
            let mut at = Some(role.as_str());
            while let Some(name) = at {
                let r = Role::new(name);
                if !named.contains(&r) {
                    named.push(r);
                }
                at = name.rfind('/').map(|i| &name[..i]);
            }
        }
        let new: Vec<&Role> = named.iter().filter(|r| !self.allocator.has_role(r)).collect();
        match new.first() {
            Some(first) if self.allocator.role_count() + new.len() > self.settings.max_roles => Err(format!(
                "role {first} is new and {} new role(s) would take the broker past its limit of {} roles (broker.roles.max)",
                new.len(),
                self.settings.max_roles
            )),
            _ => Ok(()),
        }
    }

    pub fn weights(&self) -> Vec<(Role, f64)> {
        self.allocator.role_shares().into_iter().map(|r| (r.role, r.weight)).collect()
    }

    /// Sets a role's weight. The outputs hold the registry write that must
    /// land before the change is acknowledged. The default weight removes
    /// the record: a role nothing else keeps (no framework, allocation or
    /// reservation) is then forgotten, which is how an operator removes a
    /// role.
    pub fn set_weight(&mut self, role: Role, weight: f64) -> Result<Vec<Output>, String> {
        weir_model::ids::validate_role(role.as_str())?;
        let default = weight == weir_allocator::DEFAULT_WEIGHT;
        if !default {
            self.room_for_roles(std::slice::from_ref(&role))?;
        }
        self.allocator.set_weight(role.clone(), weight).map_err(|e| e.to_string())?;
        self.dirty = true;
        let write = if default {
            recovery::delete(recovery::WEIGHTS, role.as_str())
        } else {
            recovery::put(recovery::WEIGHTS, role.as_str(), &v1::RoleWeight { role: role.to_string(), weight })
        };
        Ok(vec![Output::Registry(write)])
    }
}

fn event(kind: v1::event::Kind) -> v1::Event {
    v1::Event { kind: Some(kind) }
}

fn agent_message(kind: v1::broker_message::Kind) -> v1::BrokerMessage {
    v1::BrokerMessage { kind: Some(kind) }
}

/// KILL of one task, to its agent.
fn kill_task_message(framework: &FrameworkId, task: &TaskId) -> v1::BrokerMessage {
    agent_message(v1::broker_message::Kind::KillTask(v1::broker_message::KillTask {
        framework_id: framework.to_string(),
        task_id: task.to_string(),
    }))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A status update the broker itself generates (no uuid: nothing to
/// acknowledge); `timestamp` from [`BrokerCore::timestamp`].
fn broker_status(
    framework: &FrameworkId,
    task: &TaskId,
    agent: Option<&AgentId>,
    state: TaskState,
    reason: &str,
    message: impl Into<String>,
    timestamp: f64,
) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: task.to_string(),
        state: task_state_to_proto(state) as i32,
        message: message.into(),
        reason: reason.to_owned(),
        source: v1::task_status::Source::Broker as i32,
        agent_id: agent.map(|a| a.to_string()).unwrap_or_default(),
        framework_id: framework.to_string(),
        timestamp,
        uuid: Vec::new(),
        exit_code: None,
        signal: None,
    }
}

/// Turns a `refuse_seconds` from the wire into a duration, or says why not.
fn refuse_duration(filters: Option<&v1::Filters>, default: Duration) -> Result<Duration, String> {
    match filters.and_then(|f| f.refuse_seconds) {
        None => Ok(default),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s.min(MAX_REFUSE.as_secs_f64()))),
        Some(s) => Err(format!("filters.refuse_seconds {s} must be a finite number >= 0")),
    }
}
