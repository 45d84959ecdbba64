//! The allocator state machine: hierarchical weighted DRF (or another
//! `Policy`) over a tree of roles, then frameworks within a role, with
//! quotas (limits cut grants; guarantees keep headroom).
//!
//! Invariants (checked by `check_invariants` in tests):
//! - for every agent, `free + Σ allocations == total`, and every allocation
//!   record is non-empty;
//! - a client's (framework, role) `allocated` is the sum of its records on
//!   all agents, and a role's `allocated` the sum of its clients';
//! - a role's `reserved_free` is the sum of its reserved bundles that are
//!   free on all agents: the role is sorted by `allocated + reserved_free`,
//!   so reserving does not let a role grow past its share (as Mesos does);
//! - unless `order_dirty`, a client sits in its role's `order` exactly when
//!   it is offerable (framework active, role subscribed, not suppressed),
//!   under the key of its current share, and a role sits in `role_order`
//!   exactly when its `order` is non-empty, under its current weighted share;
//! - an agent is a candidate exactly when it is active and its free
//!   resources could make an offer;
//! - a role is known (in `role_ix`) while it has a client, a child role,
//!   reserved resources free on an agent, or a weight, band or quota other
//!   than the default; the moment it has none of these it is forgotten and
//!   its slot reused, so roles that come and go cannot pile up;
//! - roles form a tree by name (`a/b` under `a`); a role's `subtree` is
//!   its usage plus its children's subtrees; unless `order_dirty`, a role
//!   sits in its parent's `child_order` (or `role_order` at the top)
//!   exactly when something below it is offerable, under the key of its
//!   current numbers, and a role with children and offerable clients of
//!   its own has its `OWN_CLIENTS` entry there;
//! - `quota_roles` counts the roles with a guarantee or a limit;
//! - revocable books: an agent's `revocable` record of a client is
//!   non-empty and within the unreserved part of its allocation record
//!   there; a client's `revocable` is the sum of its records, a role's the
//!   sum of its subtree's clients'; `revocable_frameworks` counts the
//!   frameworks that take revocable resources.
//!
//! Ids are mapped to dense `u32` slots once, at the edge; the cycle itself
//! works on slots, integer keys and pre-summed scalars.

use std::collections::BTreeMap;
use std::mem;
use std::sync::Arc;
use std::time::Duration;

use weir_model::{AgentId, FrameworkId, Milli, ResourceSet, Resources, Role};

use crate::candidates::AgentBitset;
use crate::error::AllocatorError;
use crate::held::{Held, Ports};
use crate::policy::{self, ClientView, Policy, RoleView};
use crate::quota::{limit_scalars, limits_of};
use weir_model::Quota;
use crate::scalars::Scalars;
use crate::sorted::Ordered;

/// Limits below which free resources are not worth offering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatorConfig {
    pub min_allocatable_cpus: Milli,
    pub min_allocatable_mem: Milli,
    /// Delay scheduling: how long a framework that wants data on some
    /// agents passes over the others (which go to the next in line) before
    /// it takes one of them. Zero turns locality off.
    pub locality_delay: Duration,
    /// Offers bounded by fair share (no offer hoarding), under DRF: while
    /// more than one top-level role asks, a role whose weighted share
    /// (held plus offered) has reached its fair share of the pool (its
    /// weight over the asking roles' weights) gets no more offers; what it
    /// cannot take waits for the others. One role asking still gets
    /// everything. Off by default.
    pub fair_share_bound: bool,
}

impl Default for AllocatorConfig {
    /// Mesos' defaults: 0.01 cpus or 32 MiB of memory.
    fn default() -> Self {
        AllocatorConfig {
            min_allocatable_cpus: Milli(10),
            min_allocatable_mem: Milli::from_units(32),
            locality_delay: DEFAULT_LOCALITY_DELAY,
            fair_share_bound: false,
        }
    }
}

/// How long a framework waits for an agent holding its data by default:
/// a few allocation cycles, about what YARN's node-locality delay (one
/// scheduling opportunity per node of a rack) comes to.
pub const DEFAULT_LOCALITY_DELAY: Duration = Duration::from_secs(3);

/// Resources on one agent allocated (offered) to one framework in one role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub agent: AgentId,
    pub framework: FrameworkId,
    pub role: Role,
    pub resources: ResourceSet,
    /// Bytes of the data the framework wants that the agent holds (0 when
    /// it stated none, or none is there).
    pub data_bytes: u64,
    /// Revocable: part of the guarantee headroom, lent to a framework that
    /// accepts revocable resources while the guaranteed roles do not ask
    /// for it; the first thing revoked when they do. Given back with
    /// [`Allocator::recover_revocable`].
    pub revocable: bool,
}

/// Where the data a framework's tasks will read is: bytes per agent.
#[derive(Clone, Debug, Default)]
struct Wants {
    /// Agent slot → bytes of the wanted data there.
    agents: BTreeMap<u32, u64>,
    /// When the framework first passed over an agent without its data
    /// since it last launched a task on an agent with its data; its wait
    /// for a local agent ends `locality_delay` later.
    waiting_since: Option<Duration>,
}

/// What a cycle learns while it only reads the books, applied at its end.
#[derive(Default)]
struct CycleNotes {
    /// (client, agent) filters found expired.
    expired: Vec<(u32, u32)>,
    /// Frameworks that passed over an agent for want of their data.
    waiting: Vec<u32>,
}

/// A role as the fairness policy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleShare {
    pub role: Role,
    pub weight: f64,
    /// Scalars only: ports are not summed across agents.
    pub allocated: Resources,
    /// Dominant share of `allocated` plus the role's reservations nobody
    /// holds, against the total of active agents.
    pub dominant_share: f64,
    /// `dominant_share / weight`, the quantity roles are ordered by.
    pub weighted_share: f64,
    /// Frameworks with a (framework, role) pair in this role, by id.
    pub frameworks: Vec<FrameworkId>,
    /// The role's priority band (strict-priority policy; 0 by default).
    pub priority: u32,
    /// Its guarantee and limit (for the role's whole subtree).
    pub quota: Quota,
    /// Revocable resources held in the role's subtree (part of `subtree`
    /// and of the limit's measure, never of the guarantee's).
    pub revocable: Resources,
    /// Scalars held in the role and every role below it, plus their
    /// reservations nobody holds: what its quota and share are measured on.
    pub subtree: Resources,
    /// The role above it (`eng` for `eng/analytics`), if any.
    pub parent: Option<Role>,
}

/// Sort key in the ordered sets: (share as IEEE bits, last grant, rank by
/// id, slot). Shares are never negative, so their bit patterns order like
/// the values. At equal shares the client granted least recently comes
/// first (never granted: 0), so a framework that lets its offers time out
/// cannot keep winning ties against one still waiting; ids break the rest.
type Key = (u64, u64, u32, u32);

/// A role's sort key among its siblings: (the policy's first field, with
/// its top bit set unless the role is below its guarantee; the policy's
/// second field; rank by name; slot). A role under its guarantee goes
/// before every sibling that is not, whatever the policy: guarantees come
/// first, as Mesos' quota stage does. The same shape as a client's `Key`,
/// so re-filing a role costs what it did before quotas.
type RoleKey = Key;

/// The top bit of a role key's first field: set while the role is not
/// below its guarantee. Policies' first fields are below it (shares are
/// non-negative floats, bands and arrivals are small).
const NOT_BELOW_GUARANTEE: u64 = 1 << 63;

/// The slot of a role's own clients in its `child_order`, when it has
/// child roles too (Mesos' "virtual leaf"): they compete with the
/// children as one more child.
const OWN_CLIENTS: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Agent {
    id: AgentId,
    total: ResourceSet,
    free: ResourceSet,
    /// `free.unreserved.ports`, inline: the cycle records a grant's ports
    /// from here instead of chasing the port list's heap block.
    free_ports: Ports,
    active: bool,
    /// By client slot; short (one entry per framework with something here).
    allocations: Vec<(u32, Held)>,
    /// By client slot: the part of its record here that is revocable
    /// (empty on almost every agent).
    revocable: Vec<(u32, Scalars)>,
}

#[derive(Clone, Debug)]
struct Framework {
    id: FrameworkId,
    /// Position among all frameworks by id; ties in share break on it.
    rank: u32,
    active: bool,
    /// False for a framework only known from an agent's running tasks
    /// (agent re-registered before the framework did).
    subscribed: bool,
    /// Client slots, one per role the framework has or had resources in.
    clients: Vec<u32>,
    /// Subscription order (lower is older): the FIFO policy's key.
    arrival: u64,
    /// Agents the framework yields until a time (slot → until): it let an
    /// offer of them time out, so anyone else eligible goes first; with
    /// nobody else it still gets them. `None` when empty.
    yields: Option<BTreeMap<u32, Duration>>,
    /// The agents holding the data its tasks will read. `None`: no
    /// preference, any agent will do.
    wants: Option<Box<Wants>>,
    /// It accepts revocable resources (REVOCABLE_RESOURCES capability).
    takes_revocable: bool,
}

#[derive(Clone, Debug)]
struct RoleState {
    name: Role,
    rank: u32,
    weight: f64,
    allocated: Scalars,
    /// Its reservations that nobody holds (free on their agents). They
    /// count towards the role's share: a role cannot grow past its share
    /// by reserving.
    reserved_free: Scalars,
    /// Key under which the role sits in its parent's `child_order` (or
    /// `role_order` at the top), if it does.
    key: Option<RoleKey>,
    /// Client slots of this role (offerable or not).
    clients: Vec<u32>,
    /// Offerable clients by (share, framework rank).
    order: Ordered<Key>,
    /// The role above (`eng` for `eng/analytics`).
    parent: Option<u32>,
    /// Roles directly below.
    children: Vec<u32>,
    /// Children with something offerable below them, plus `OWN_CLIENTS`
    /// when the role has children and offerable clients of its own.
    /// Empty for a role without children (the cycle then reads `order`).
    child_order: Ordered<RoleKey>,
    /// The key of the `OWN_CLIENTS` entry in `child_order`, if there is one.
    own_key: Option<RoleKey>,
    /// `usage()` of this role and every role below it.
    subtree: Scalars,
    /// The revocable part of `subtree`: counted by limits and shares, not
    /// towards the guarantee.
    revocable: Scalars,
    priority: u32,
    guarantee: Scalars,
    /// Per scalar; `u64::MAX` where unlimited.
    limit: Scalars,
}

/// The refusal of a recover or mark that names resources the pair does
/// not hold there.
fn not_allocated(agent: &AgentId, framework: &FrameworkId, role: &Role, wanted: &ResourceSet, allocated: ResourceSet) -> AllocatorError {
    AllocatorError::NotAllocated {
        agent: agent.clone(),
        framework: framework.clone(),
        role: role.clone(),
        wanted: Box::new(wanted.clone()),
        allocated: Box::new(allocated),
    }
}

/// A decline filter: the agent is kept from the client until `until`.
#[derive(Debug, Clone, Copy)]
struct Filter {
    until: Duration,
}

/// One (framework, role) pair: the unit DRF accounts for within a role.
#[derive(Clone, Debug)]
struct Client {
    framework: u32,
    role: u32,
    allocated: Scalars,
    /// The revocable part of `allocated`.
    revocable: Scalars,
    /// The framework asked for this role (it may hold resources in a role it
    /// is not, or no longer, subscribed to).
    subscribed: bool,
    suppressed: bool,
    /// Agents refused in this role (slot → filter), as Mesos keeps decline
    /// filters per (framework, role, agent): declining an offer made in
    /// one role does not keep the agent from the framework's other roles.
    /// `None` when empty, so an unfiltered client costs one branch in the
    /// cycle.
    filters: Option<BTreeMap<u32, Filter>>,
    /// Grant sequence number of the client's last grant (0: never).
    last_granted: u64,
    key: Option<Key>,
}

impl RoleState {
    /// Nothing keeps the role: no client (so nothing allocated), no
    /// reservation free on any agent, the default weight.
    fn unused(&self) -> bool {
        self.clients.is_empty()
            && self.children.is_empty()
            && self.reserved_free == Scalars::default()
            && self.weight == DEFAULT_WEIGHT
            && self.priority == 0
            && !self.has_quota()
    }

    fn has_quota(&self) -> bool {
        self.guarantee != Scalars::default() || self.limit != Scalars::UNLIMITED
    }

    /// Whether the subtree holds less than the guarantee of some kind
    /// (revocable holdings do not count: they can be taken back).
    fn below_guarantee(&self) -> bool {
        self.guarantee.0.iter().zip(self.guaranteed_use().0).any(|(g, u)| u < *g)
    }

    /// What counts towards the guarantee: the subtree less its revocable
    /// holdings.
    fn guaranteed_use(&self) -> Scalars {
        self.subtree.saturating_sub(&self.revocable)
    }

    /// What the subtree lacks of its guarantee.
    fn shortfall(&self) -> Scalars {
        self.guarantee.saturating_sub(&self.guaranteed_use())
    }

    /// Whether something below this role (its own clients included) is
    /// offerable.
    fn has_offerable(&self) -> bool {
        !self.order.is_empty() || !self.child_order.is_empty()
    }

    /// What the role is sorted by: what it holds plus its reservations
    /// nobody holds.
    fn usage(&self) -> Scalars {
        let mut u = self.allocated;
        u.add(&self.reserved_free);
        u
    }
}

impl Agent {
    fn add_free(&mut self, r: &ResourceSet) {
        self.free.add_assign(r);
        if !r.unreserved.ports.is_empty() {
            self.free_ports = Ports::of(&self.free.unreserved.ports);
        }
    }
}

/// A deterministic, synchronous hierarchical DRF allocator. See the crate
/// README for the algorithm and its costs.
#[derive(Clone, Debug)]
pub struct Allocator {
    config: AllocatorConfig,
    agents: Vec<Option<Agent>>,
    free_agent_slots: Vec<u32>,
    agent_ix: BTreeMap<AgentId, u32>,
    candidates: AgentBitset,
    /// Scalars of all active agents: the denominator of every share.
    total: Scalars,
    frameworks: Vec<Option<Framework>>,
    free_framework_slots: Vec<u32>,
    framework_ix: BTreeMap<FrameworkId, u32>,
    /// Role slots; those in `free_role_slots` hold a forgotten role and
    /// are in no index.
    roles: Vec<RoleState>,
    free_role_slots: Vec<u32>,
    role_ix: BTreeMap<Role, u32>,
    clients: Vec<Option<Client>>,
    free_client_slots: Vec<u32>,
    /// Top-level roles with something offerable below them, by the
    /// policy's key.
    role_order: Ordered<RoleKey>,
    policy: Arc<dyn Policy>,
    /// `policy.orders_roles_by_first_member()`, asked once.
    first_member_needed: bool,
    /// The policy is DRF: keys are computed without the trait's calls.
    drf: bool,
    /// Roles with a guarantee or a limit: 0 keeps the cycle on its path
    /// without quota arithmetic.
    quota_roles: usize,
    /// Subscriptions so far: the clock of `Framework::arrival`.
    arrivals: u64,
    /// Totals, ranks or membership changed in bulk: every key is stale and
    /// the ordered sets are rebuilt once, at the next cycle.
    order_dirty: bool,
    cycles: u64,
    /// Grants made so far: the clock of `Client::last_granted`.
    grants: u64,
    /// Frameworks with at least one yield; 0 skips the second pick.
    yielding_frameworks: usize,
    /// Some framework stated where its data is (set at each cycle's
    /// start): without one, the cycle skips every locality check.
    wants_active: bool,
    /// Scratch buffer for the candidate list, kept to avoid reallocating.
    scratch: Vec<u32>,
    /// Set at the start of an allocation call while guarantees need
    /// headroom.
    headroom: Option<Headroom>,
    /// Frameworks that take revocable resources: 0 skips the revocable
    /// pass.
    revocable_frameworks: usize,
    /// This call's fair-share bound (`AllocatorConfig::fair_share_bound`):
    /// the share bits of `1 / Σ weights` of the asking top-level roles; a
    /// top-level role whose weighted share is at or above it (and that is
    /// not below its guarantee) is passed over. `None`: no bound.
    fair_bound: Option<u64>,
    /// Set while a cycle picks a client for revocable resources: only
    /// frameworks that take them are eligible.
    revocable_pass: bool,
}

/// At most this many grants split one agent's unreserved resources in a
/// cycle under quotas (each cut to a limit or the headroom): bounds the
/// work per agent; what is left waits for the next cycle.
const MAX_GRANTS_PER_AGENT: usize = 8;

/// `r`'s scalars less `give` (ports dropped: they went with the grant).
fn give_back(r: &Resources, give: &Scalars) -> Resources {
    let mut rest = Scalars::of(r).saturating_sub(give).to_resources();
    rest.ports = Default::default();
    rest
}

/// The guarantee headroom books of one allocation call.
#[derive(Clone, Debug)]
struct Headroom {
    /// Unreserved free scalars of active agents, kept current by grants.
    free: Scalars,
    /// Revocable resources lent out: part of the headroom (revocation
    /// takes them back first), kept current by revocable grants.
    lent: Scalars,
    /// Roles with a guarantee and no guaranteed role above them.
    tops: Vec<u32>,
}

/// A role's weight until an operator sets another.
pub const DEFAULT_WEIGHT: f64 = 1.0;

/// How many agents ahead of the one being offered `prefetch_agent` looks.
const PREFETCH_DISTANCE: usize = 8;


/// SplitMix64: a fixed, well-mixed function of the cycle number, so the
/// start agent moves around the cluster but the run is reproducible.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn take_slot<T>(slots: &mut Vec<Option<T>>, free: &mut Vec<u32>, value: T) -> u32 {
    match free.pop() {
        Some(ix) => {
            slots[ix as usize] = Some(value);
            ix
        }
        None => {
            slots.push(Some(value));
            (slots.len() - 1) as u32
        }
    }
}

impl Allocator {
    pub fn new(config: AllocatorConfig) -> Self {
        Allocator {
            config,
            agents: Vec::new(),
            free_agent_slots: Vec::new(),
            agent_ix: BTreeMap::new(),
            candidates: AgentBitset::default(),
            total: Scalars::default(),
            frameworks: Vec::new(),
            free_framework_slots: Vec::new(),
            framework_ix: BTreeMap::new(),
            roles: Vec::new(),
            free_role_slots: Vec::new(),
            role_ix: BTreeMap::new(),
            clients: Vec::new(),
            free_client_slots: Vec::new(),
            role_order: Ordered::default(),
            policy: policy::default_policy(),
            first_member_needed: false,
            drf: true,
            quota_roles: 0,
            arrivals: 0,
            order_dirty: false,
            cycles: 0,
            grants: 0,
            yielding_frameworks: 0,
            wants_active: false,
            scratch: Vec::new(),
            headroom: None,
            revocable_frameworks: 0,
            revocable_pass: false,
            fair_bound: None,
        }
    }

    // ----- slot accessors: a slot held in an index always holds a value -----

    fn agent(&self, a: u32) -> &Agent {
        self.agents[a as usize].as_ref().expect("agent slot in use")
    }
    fn agent_mut(&mut self, a: u32) -> &mut Agent {
        self.agents[a as usize].as_mut().expect("agent slot in use")
    }
    fn framework(&self, f: u32) -> &Framework {
        self.frameworks[f as usize].as_ref().expect("framework slot in use")
    }
    fn framework_mut(&mut self, f: u32) -> &mut Framework {
        self.frameworks[f as usize].as_mut().expect("framework slot in use")
    }
    fn client(&self, c: u32) -> &Client {
        self.clients[c as usize].as_ref().expect("client slot in use")
    }
    fn client_mut(&mut self, c: u32) -> &mut Client {
        self.clients[c as usize].as_mut().expect("client slot in use")
    }

    fn agent_slot(&self, agent: &AgentId) -> Result<u32, AllocatorError> {
        self.agent_ix.get(agent).copied().ok_or_else(|| AllocatorError::UnknownAgent(agent.clone()))
    }
    fn framework_slot(&self, framework: &FrameworkId) -> Result<u32, AllocatorError> {
        self.framework_ix.get(framework).copied().ok_or_else(|| AllocatorError::UnknownFramework(framework.clone()))
    }
    fn client_of(&self, f: u32, role: &Role) -> Option<u32> {
        let r = *self.role_ix.get(role)?;
        self.framework(f).clients.iter().copied().find(|&c| self.client(c).role == r)
    }

    /// The slot of `role`, created (with every role above it: `eng` for
    /// `eng/analytics`) if it is new.
    fn role_slot_or_create(&mut self, role: &Role) -> u32 {
        if let Some(&r) = self.role_ix.get(role) {
            return r;
        }
        let parent = role.as_str().rfind('/').map(|i| self.role_slot_or_create(&Role::new(&role.as_str()[..i])));
        let state = RoleState {
            name: role.clone(),
            rank: 0,
            weight: DEFAULT_WEIGHT,
            allocated: Scalars::default(),
            reserved_free: Scalars::default(),
            key: None,
            clients: Vec::new(),
            order: Ordered::default(),
            parent,
            children: Vec::new(),
            child_order: Ordered::default(),
            own_key: None,
            subtree: Scalars::default(),
            revocable: Scalars::default(),
            priority: 0,
            guarantee: Scalars::default(),
            limit: Scalars::UNLIMITED,
        };
        let r = match self.free_role_slots.pop() {
            Some(r) => {
                self.roles[r as usize] = state;
                r
            }
            None => {
                self.roles.push(state);
                (self.roles.len() - 1) as u32
            }
        };
        self.role_ix.insert(role.clone(), r);
        if let Some(p) = parent {
            self.roles[p as usize].children.push(r);
        }
        self.order_dirty = true;
        r
    }

    /// Files role `r` under key `k` among its siblings: its parent's
    /// `child_order`, or `role_order` at the top.
    fn sibling_insert(&mut self, r: u32, k: RoleKey) {
        match self.roles[r as usize].parent {
            Some(p) => self.roles[p as usize].child_order.insert(k),
            None => self.role_order.insert(k),
        };
    }

    /// Takes key `k` of role `r` out of its siblings' order.
    fn sibling_remove(&mut self, r: u32, k: &RoleKey) {
        match self.roles[r as usize].parent {
            Some(p) => self.roles[p as usize].child_order.remove(k),
            None => self.role_order.remove(k),
        };
    }

    /// Adds (or removes) `amount` to the subtree usage of role `r` and of
    /// every role above it.
    #[inline]
    fn add_subtree(&mut self, r: u32, amount: &Scalars, add: bool) {
        let role = &mut self.roles[r as usize];
        if add {
            role.subtree.add(amount);
        } else {
            role.subtree.sub(amount);
        }
        let mut at = role.parent;
        while let Some(x) = at {
            let role = &mut self.roles[x as usize];
            if add {
                role.subtree.add(amount);
            } else {
                role.subtree.sub(amount);
            }
            at = role.parent;
        }
    }

    /// Forgets role `r` if nothing keeps it ([`RoleState::unused`]). A
    /// role only subscribed to, reserved for or weighted comes back as new
    /// the next time it is named; nothing about it is lost.
    fn forget_role_if_unused(&mut self, r: u32) {
        let role = &self.roles[r as usize];
        if !role.unused() {
            return;
        }
        debug_assert!(role.allocated == Scalars::default());
        let name = role.name.clone();
        if self.role_ix.get(&name) != Some(&r) {
            return;
        }
        if let Some(k) = role.key {
            self.sibling_remove(r, &k);
        }
        self.role_ix.remove(&name);
        let role = &mut self.roles[r as usize];
        role.key = None;
        // Stale keys of removed clients, when a rebuild is pending.
        role.order.clear();
        role.child_order.clear();
        role.own_key = None;
        let parent = role.parent.take();
        self.free_role_slots.push(r);
        // A parent kept only for this child goes with it.
        if let Some(p) = parent {
            self.roles[p as usize].children.retain(|&x| x != r);
            self.refresh_role(p);
            self.forget_role_if_unused(p);
        }
    }

    fn client_or_create(&mut self, f: u32, role: &Role) -> u32 {
        if let Some(c) = self.client_of(f, role) {
            return c;
        }
        let r = self.role_slot_or_create(role);
        let client =
            Client {
                framework: f,
                role: r,
                allocated: Scalars::default(),
                revocable: Scalars::default(),
                subscribed: false,
                suppressed: false,
                filters: None,
                last_granted: 0,
                key: None,
            };
        let c = take_slot(&mut self.clients, &mut self.free_client_slots, client);
        self.roles[r as usize].clients.push(c);
        self.framework_mut(f).clients.push(c);
        self.order_dirty = true;
        c
    }

    fn new_framework(&mut self, id: &FrameworkId, subscribed: bool) -> u32 {
        self.arrivals += 1;
        let fw = Framework {
            id: id.clone(),
            rank: 0,
            arrival: self.arrivals,
            active: subscribed,
            subscribed,
            clients: Vec::new(),
            yields: None,
            wants: None,
            takes_revocable: false,
        };
        let f = take_slot(&mut self.frameworks, &mut self.free_framework_slots, fw);
        self.framework_ix.insert(id.clone(), f);
        self.order_dirty = true;
        f
    }

    // ----- keeping the ordered sets current -----

    fn offerable(&self, c: u32) -> bool {
        let client = self.client(c);
        client.subscribed && !client.suppressed && self.framework(client.framework).active
    }

    /// Re-files a client (and then its role) after its share or its
    /// offerability changed. O(log n); a no-op while a rebuild is pending.
    fn refresh_client(&mut self, c: u32) {
        if self.order_dirty {
            return;
        }
        let client = self.client(c);
        let (r, old) = (client.role, client.key);
        let new = self.offerable(c).then(|| self.client_key(c));
        if new != old {
            let order = &mut self.roles[r as usize].order;
            match (old, new) {
                (Some(o), Some(n)) => order.replace(&o, n),
                (Some(o), None) => {
                    order.remove(&o);
                }
                (None, Some(n)) => {
                    order.insert(n);
                }
                (None, None) => {}
            }
            self.client_mut(c).key = new;
        }
        self.refresh_role(r);
    }

    /// Client `c`'s key in its role's `order`.
    #[inline(always)]
    fn client_key(&self, c: u32) -> Key {
        let client = self.client(c);
        let fw = self.framework(client.framework);
        let share = client.allocated.dominant_share(&self.total);
        // DRF's key written out: the call through the trait costs the
        // default policy's cycle a few per cent (measured with callgrind).
        let first = if self.drf { policy::share_bits(share) } else { self.policy_client_key(share, fw.arrival) };
        (first, client.last_granted, fw.rank, c)
    }

    #[inline(never)]
    fn policy_client_key(&self, share: f64, arrival: u64) -> u64 {
        self.policy.client_key(&ClientView { share, arrival })
    }

    /// Role `r`'s key among its siblings.
    #[inline(always)]
    fn role_key(&self, r: u32) -> RoleKey {
        let role = &self.roles[r as usize];
        if self.drf && self.quota_roles == 0 {
            // DRF's key written out (see `client_key`).
            let share = role.subtree.dominant_share(&self.total) / role.weight;
            return (NOT_BELOW_GUARANTEE | policy::share_bits(share), 0, role.rank, r);
        }
        self.policy_role_key(r)
    }

    /// `role_key` through the policy, with guarantees.
    #[inline(never)]
    fn policy_role_key(&self, r: u32) -> RoleKey {
        let role = &self.roles[r as usize];
        let first_member = if !self.first_member_needed {
            0
        } else {
            match (role.order.first(), role.child_order.first()) {
                (Some(c), Some(k)) => c.0.min(k.0 & !NOT_BELOW_GUARANTEE),
                (Some(c), None) => c.0,
                (None, Some(k)) => k.0 & !NOT_BELOW_GUARANTEE,
                (None, None) => u64::MAX,
            }
        };
        let view = RoleView {
            weighted_share: role.subtree.dominant_share(&self.total) / role.weight,
            priority: role.priority,
            first_member,
        };
        let (a, b) = self.policy.role_key(&view);
        let below = self.quota_roles > 0 && role.below_guarantee();
        let flag = if below { 0 } else { NOT_BELOW_GUARANTEE };
        (flag | a.min(NOT_BELOW_GUARANTEE - 1), b, role.rank, r)
    }

    /// The key of role `r`'s own clients among its children: they count
    /// as one child of the default weight holding what the role holds
    /// itself, never under a guarantee (guarantees are the role's).
    fn own_clients_key(&self, r: u32) -> RoleKey {
        let role = &self.roles[r as usize];
        let view = RoleView {
            weighted_share: role.usage().dominant_share(&self.total),
            priority: role.priority,
            first_member: if self.first_member_needed { role.order.first().map_or(u64::MAX, |c| c.0) } else { 0 },
        };
        let (a, b) = self.policy.role_key(&view);
        (NOT_BELOW_GUARANTEE | a.min(NOT_BELOW_GUARANTEE - 1), b, role.rank, OWN_CLIENTS)
    }

    /// Re-files role `r` after its books or its offerable members changed,
    /// and then every role above it (their subtrees changed too). O(depth
    /// × log siblings); a no-op while a rebuild is pending.
    fn refresh_role(&mut self, r: u32) {
        if self.order_dirty {
            return;
        }
        let role = &self.roles[r as usize];
        if role.parent.is_none() && role.children.is_empty() {
            // A role with none above or below: one re-file in
            // `role_order`, as before nested roles.
            let new = role.has_offerable().then(|| self.role_key(r));
            let old = role.key;
            if new != old {
                match (old, new) {
                    (Some(o), Some(n)) => self.role_order.replace(&o, n),
                    (Some(o), None) => {
                        self.role_order.remove(&o);
                    }
                    (None, Some(n)) => {
                        self.role_order.insert(n);
                    }
                    (None, None) => {}
                }
                self.roles[r as usize].key = new;
            }
            if self.roles[r as usize].own_key.is_none() {
                return;
            }
        }
        let mut at = Some(r);
        while let Some(x) = at {
            self.refresh_own_clients_entry(x);
            let role = &self.roles[x as usize];
            let new = role.has_offerable().then(|| self.role_key(x));
            let old = role.key;
            if new != old {
                match (old, new, self.roles[x as usize].parent) {
                    (Some(o), Some(n), Some(p)) => self.roles[p as usize].child_order.replace(&o, n),
                    _ => {
                        if let Some(k) = old {
                            self.sibling_remove(x, &k);
                        }
                        if let Some(k) = new {
                            self.sibling_insert(x, k);
                        }
                    }
                }
                self.roles[x as usize].key = new;
            }
            at = self.roles[x as usize].parent;
        }
    }

    /// Keeps the `OWN_CLIENTS` entry of role `r`'s `child_order` in step:
    /// present while `r` has children and offerable clients of its own.
    fn refresh_own_clients_entry(&mut self, r: u32) {
        let role = &self.roles[r as usize];
        let old = role.own_key;
        if role.children.is_empty() && old.is_none() {
            return;
        }
        let wanted = !role.children.is_empty() && !role.order.is_empty();
        let new = wanted.then(|| self.own_clients_key(r));
        if old != new {
            let role = &mut self.roles[r as usize];
            match (old, new) {
                (Some(o), Some(n)) => role.child_order.replace(&o, n),
                _ => {
                    if let Some(k) = old {
                        role.child_order.remove(&k);
                    }
                    if let Some(k) = new {
                        role.child_order.insert(k);
                    }
                }
            }
            role.own_key = new;
        }
    }

    /// Recomputes ranks and every key from scratch: O(n log n) once, instead
    /// of O(n) work on each of many bulk changes (e.g. 10,000 agents added).
    fn rebuild_order(&mut self) {
        for (rank, &f) in self.framework_ix.values().enumerate() {
            self.frameworks[f as usize].as_mut().expect("framework slot in use").rank = rank as u32;
        }
        for (rank, &r) in self.role_ix.values().enumerate() {
            let role = &mut self.roles[r as usize];
            role.rank = rank as u32;
            role.order.clear();
            role.child_order.clear();
            role.own_key = None;
            role.key = None;
        }
        self.role_order.clear();
        for c in 0..self.clients.len() as u32 {
            let Some(client) = &self.clients[c as usize] else { continue };
            let r = client.role;
            let key = self.offerable(c).then(|| self.client_key(c));
            if let Some(k) = key {
                self.roles[r as usize].order.insert(k);
            }
            self.client_mut(c).key = key;
        }
        // Deepest roles first: a role's key depends on its children's.
        let mut by_depth: Vec<(usize, u32)> =
            self.role_ix.iter().map(|(name, &r)| (name.as_str().matches('/').count(), r)).collect();
        by_depth.sort_unstable_by(|a, b| b.cmp(a));
        for (_, r) in by_depth {
            if !self.roles[r as usize].children.is_empty() && !self.roles[r as usize].order.is_empty() {
                let k = self.own_clients_key(r);
                self.roles[r as usize].child_order.insert(k);
                self.roles[r as usize].own_key = Some(k);
            }
            if self.roles[r as usize].has_offerable() {
                let k = self.role_key(r);
                self.roles[r as usize].key = Some(k);
                self.sibling_insert(r, k);
            }
        }
        self.order_dirty = false;
    }

    fn allocatable(&self, r: &Resources) -> bool {
        !r.is_empty() && (r.cpus >= self.config.min_allocatable_cpus || r.mem >= self.config.min_allocatable_mem)
    }

    /// Whether an agent's free resources could make an offer.
    fn has_offerable(&self, free: &ResourceSet) -> bool {
        self.allocatable(&free.unreserved) || !free.reserved.is_empty()
    }

    fn touch_candidate(&mut self, a: u32) {
        let agent = self.agent(a);
        let on = agent.active && self.has_offerable(&agent.free);
        self.candidates.set(a, on);
    }

    /// Reserved bundles of `set` became free (`add`) or stopped being free:
    /// their roles' `reserved_free` follows, and the roles are re-filed.
    fn account_reserved_free(&mut self, set: &ResourceSet, add: bool) {
        for (role, bundle) in &set.reserved {
            let r = self.role_slot_or_create(role);
            let amount = Scalars::of(bundle);
            let state = &mut self.roles[r as usize];
            if add {
                state.reserved_free.add(&amount);
            } else {
                state.reserved_free.sub(&amount);
            }
            self.add_subtree(r, &amount, add);
            self.refresh_role(r);
            if !add {
                self.forget_role_if_unused(r);
            }
        }
    }

    /// Stamps a grant on client `c`; `account` then re-files it.
    fn note_grant(&mut self, c: u32) {
        self.grants += 1;
        let seq = self.grants;
        self.client_mut(c).last_granted = seq;
    }

    /// Adds (or with `add == false`, removes) `amount` to a client's and
    /// its role's books and re-files both.
    fn account(&mut self, c: u32, amount: &Scalars, add: bool) {
        let client = self.client_mut(c);
        let r = client.role;
        if add {
            client.allocated.add(amount);
            self.roles[r as usize].allocated.add(amount);
        } else {
            client.allocated.sub(amount);
            self.roles[r as usize].allocated.sub(amount);
        }
        self.add_subtree(r, amount, add);
        self.refresh_client(c);
    }

    // ----- agents -----

    /// Adds an agent with `total` resources, of which `used` are held by
    /// running tasks (an agent re-registering after a broker failover).
    /// Frameworks named in `used` that are not subscribed yet are remembered
    /// (inactive) so their usage counts; `add_framework` adopts them later.
    pub fn add_agent(
        &mut self,
        agent: AgentId,
        total: ResourceSet,
        used: Vec<(FrameworkId, Role, ResourceSet)>,
    ) -> Result<(), AllocatorError> {
        if self.agent_ix.contains_key(&agent) {
            return Err(AllocatorError::DuplicateAgent(agent));
        }
        let used_sum = used.iter().fold(ResourceSet::default(), |acc, (_, _, r)| acc.add(r));
        let free = total.checked_sub(&used_sum).map_err(|_| AllocatorError::UsedExceedsTotal {
            agent: agent.clone(),
            used: Box::new(used_sum.clone()),
            total: Box::new(total.clone()),
        })?;
        let a = take_slot(
            &mut self.agents,
            &mut self.free_agent_slots,
            Agent {
                id: agent.clone(),
                total,
                free_ports: Ports::of(&free.unreserved.ports),
                free,
                active: true,
                allocations: Vec::new(),
                revocable: Vec::new(),
            },
        );
        self.agent_ix.insert(agent, a);
        let free_now = self.agent(a).free.clone();
        self.account_reserved_free(&free_now, true);
        for (framework, role, resources) in used {
            if resources.is_empty() {
                continue;
            }
            let f = match self.framework_ix.get(&framework) {
                Some(&f) => f,
                None => self.new_framework(&framework, false),
            };
            let c = self.client_or_create(f, &role);
            let allocations = &mut self.agent_mut(a).allocations;
            match allocations.iter_mut().find(|(owner, _)| *owner == c) {
                Some((_, held)) => held.add(&resources),
                None => allocations.push((c, Held::of(&resources))),
            }
            self.account(c, &Scalars::of_set(&resources), true);
        }
        self.total.add(&Scalars::of_set(&self.agent(a).total));
        self.order_dirty = true;
        self.touch_candidate(a);
        Ok(())
    }

    /// The agent's slot and the (framework, role) client that `resources`
    /// on it are said to be held by; NotAllocated when there is no such
    /// client.
    fn holder(&self, agent: &AgentId, framework: &FrameworkId, role: &Role, resources: &ResourceSet) -> Result<(u32, u32), AllocatorError> {
        let a = self.agent_slot(agent)?;
        let f = self.framework_slot(framework)?;
        let c = self.client_of(f, role).ok_or_else(|| not_allocated(agent, framework, role, resources, ResourceSet::default()))?;
        Ok((a, c))
    }

    /// Marks `resources`, held by `framework` in `role` on `agent`, as
    /// lent (revocable): what a task launched on a revocable offer holds,
    /// as its agent reports it when it re-registers (with a new leader
    /// too, whose books start from [`Allocator::add_agent`]). Refused,
    /// changing nothing, unless that pair holds them there.
    pub fn mark_lent(&mut self, agent: &AgentId, framework: &FrameworkId, role: &Role, resources: &ResourceSet) -> Result<(), AllocatorError> {
        let not_allocated = |allocated: ResourceSet| not_allocated(agent, framework, role, resources, allocated);
        let (a, c) = self.holder(agent, framework, role, resources)?;
        let amount = Scalars::of_set(resources);
        let slot = self.agent_mut(a);
        let Some((_, held)) = slot.allocations.iter().find(|(owner, _)| *owner == c) else {
            return Err(not_allocated(ResourceSet::default()));
        };
        let lent = slot.revocable.iter().find(|(owner, _)| *owner == c).map(|(_, l)| *l).unwrap_or_default();
        let mut wanted = lent;
        wanted.add(&amount);
        if held.scalars().min(&wanted) != wanted {
            return Err(not_allocated(held.to_set()));
        }
        match slot.revocable.iter_mut().find(|(owner, _)| *owner == c) {
            Some((_, l)) => l.add(&amount),
            None => slot.revocable.push((c, amount)),
        }
        self.add_revocable(c, &amount, true);
        self.refresh_client(c);
        self.order_dirty = true;
        Ok(())
    }

    /// Forgets an agent; whatever was allocated on it is gone with it.
    pub fn remove_agent(&mut self, agent: &AgentId) -> Result<(), AllocatorError> {
        let a = self.agent_slot(agent)?;
        let removed = self.agents[a as usize].take().expect("agent slot in use");
        self.agent_ix.remove(agent);
        self.free_agent_slots.push(a);
        self.candidates.set(a, false);
        if removed.active {
            self.total.sub(&Scalars::of_set(&removed.total));
            self.order_dirty = true;
        }
        for (c, lent) in &removed.revocable {
            self.add_revocable(*c, lent, false);
        }
        for (c, held) in &removed.allocations {
            self.account(*c, &held.scalars(), false);
        }
        self.account_reserved_free(&removed.free, false);
        // The slot will be reused: filters naming it must not outlive it.
        for client in self.clients.iter_mut().flatten() {
            if let Some(filters) = &mut client.filters {
                filters.remove(&a);
                if filters.is_empty() {
                    client.filters = None;
                }
            }
        }
        for fw in self.frameworks.iter_mut().flatten() {
            if let Some(yields) = &mut fw.yields {
                yields.remove(&a);
                if yields.is_empty() {
                    fw.yields = None;
                }
            }
            if let Some(wants) = &mut fw.wants {
                wants.agents.remove(&a);
                if wants.agents.is_empty() {
                    fw.wants = None;
                }
            }
        }
        Ok(())
    }

    /// An unreachable agent is not offered, and leaves the cluster total,
    /// but what is allocated on it still counts against its holders.
    pub fn set_agent_active(&mut self, agent: &AgentId, active: bool) -> Result<(), AllocatorError> {
        let a = self.agent_slot(agent)?;
        let slot = self.agent_mut(a);
        if slot.active != active {
            slot.active = active;
            let scalars = Scalars::of_set(&slot.total);
            if active {
                self.total.add(&scalars);
            } else {
                self.total.sub(&scalars);
            }
            self.order_dirty = true;
            self.touch_candidate(a);
        }
        Ok(())
    }

    // ----- frameworks -----

    /// Subscribes a framework in `roles` (duplicates are ignored), active.
    pub fn add_framework(&mut self, framework: FrameworkId, roles: Vec<Role>) -> Result<(), AllocatorError> {
        let f = match self.framework_ix.get(&framework) {
            Some(&f) if self.framework(f).subscribed => return Err(AllocatorError::DuplicateFramework(framework)),
            Some(&f) => f,
            None => self.new_framework(&framework, true),
        };
        let fw = self.framework_mut(f);
        fw.subscribed = true;
        fw.active = true;
        for role in &roles {
            let c = self.client_or_create(f, role);
            self.client_mut(c).subscribed = true;
        }
        self.order_dirty = true;
        Ok(())
    }

    /// Replaces the roles `framework` is subscribed to (UPDATE_FRAMEWORK).
    /// What it holds in a role it leaves stays allocated, and counted, until
    /// recovered; it is just offered nothing more there.
    pub fn update_framework(&mut self, framework: &FrameworkId, roles: Vec<Role>) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        if !self.framework(f).subscribed {
            return Err(AllocatorError::UnknownFramework(framework.clone()));
        }
        for c in self.framework(f).clients.clone() {
            let keep = roles.contains(&self.roles[self.client(c).role as usize].name);
            let client = self.client_mut(c);
            if keep && !client.subscribed {
                // Joined afresh: a suppression from an earlier membership lapses.
                client.suppressed = false;
            }
            if !keep {
                // Its filters are a subscription's: they go with it.
                client.filters = None;
            }
            client.subscribed = keep;
            self.refresh_client(c);
        }
        for role in &roles {
            let c = self.client_or_create(f, role);
            self.client_mut(c).subscribed = true;
        }
        // A role left with nothing held there is let go of at once, so a
        // framework moving through many roles does not keep them all.
        for c in self.framework(f).clients.clone() {
            if !self.client(c).subscribed && self.client(c).allocated == Scalars::default() && !self.holds_anywhere(c) {
                self.drop_client(f, c);
            }
        }
        Ok(())
    }

    /// Whether client `c` has an allocation record on any agent (ports
    /// alone hold no scalars). A scan: only framework updates ask.
    fn holds_anywhere(&self, c: u32) -> bool {
        self.agents.iter().flatten().any(|agent| agent.allocations.iter().any(|(owner, _)| *owner == c))
    }

    /// Removes client `c` of framework `f`, which holds nothing.
    fn drop_client(&mut self, f: u32, c: u32) {
        let client = self.clients[c as usize].take().expect("client slot in use");
        self.free_client_slots.push(c);
        self.framework_mut(f).clients.retain(|&x| x != c);
        let role = &mut self.roles[client.role as usize];
        if let Some(k) = client.key {
            role.order.remove(&k);
        }
        role.clients.retain(|&x| x != c);
        self.refresh_role(client.role);
        self.forget_role_if_unused(client.role);
    }

    /// Unsubscribes a framework; everything allocated to it is freed.
    pub fn remove_framework(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        let fw = self.frameworks[f as usize].take().expect("framework slot in use");
        if fw.takes_revocable {
            self.revocable_frameworks -= 1;
        }
        self.framework_ix.remove(framework);
        self.free_framework_slots.push(f);
        let mut touched = Vec::new();
        let mut freed = ResourceSet::default();
        // A scan of all agents: removal is rare, and keeping a per-client
        // agent list would cost every grant in the cycle.
        for (a, slot) in self.agents.iter_mut().enumerate() {
            let Some(agent) = slot else { continue };
            if !agent.allocations.iter().any(|(c, _)| fw.clients.contains(c)) {
                continue;
            }
            let mut kept = Vec::with_capacity(agent.allocations.len());
            for (c, held) in mem::take(&mut agent.allocations) {
                if fw.clients.contains(&c) {
                    let set = held.to_set();
                    agent.add_free(&set);
                    freed.add_assign(&set);
                } else {
                    kept.push((c, held));
                }
            }
            agent.allocations = kept;
            agent.revocable.retain(|(c, _)| !fw.clients.contains(c));
            touched.push(a as u32);
        }
        for a in touched {
            self.touch_candidate(a);
        }
        self.account_reserved_free(&freed, true);
        for &c in &fw.clients {
            if self.client(c).revocable != Scalars::default() {
                let lent = self.client(c).revocable;
                self.add_revocable(c, &lent, false);
            }
            let client = self.clients[c as usize].take().expect("client slot in use");
            let role = &mut self.roles[client.role as usize];
            role.allocated.sub(&client.allocated);
            role.clients.retain(|&x| x != c);
            self.add_subtree(client.role, &client.allocated, false);
            self.free_client_slots.push(c);
            self.forget_role_if_unused(client.role);
        }
        self.order_dirty = true;
        Ok(())
    }

    /// Whether `framework` takes revocable resources (the headroom held
    /// for guaranteed roles that do not ask for it, lent until they do).
    /// Revocable resources it holds stay revocable either way.
    pub fn set_takes_revocable(&mut self, framework: &FrameworkId, takes: bool) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        let fw = self.framework_mut(f);
        if fw.takes_revocable != takes {
            fw.takes_revocable = takes;
            if takes {
                self.revocable_frameworks += 1;
            } else {
                self.revocable_frameworks -= 1;
            }
        }
        Ok(())
    }

    /// A disconnected framework keeps its allocations but gets no offers.
    pub fn set_framework_active(&mut self, framework: &FrameworkId, active: bool) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        let fw = self.framework_mut(f);
        if fw.active != active {
            fw.active = active;
            for c in fw.clients.clone() {
                self.refresh_client(c);
            }
        }
        Ok(())
    }

    /// The clients of `framework` in `roles` (all of its subscribed roles
    /// when `None`), or an error naming a role it is not subscribed to.
    fn clients_in(&self, f: u32, roles: Option<&[Role]>) -> Result<Vec<u32>, AllocatorError> {
        let fw = self.framework(f);
        match roles {
            None => Ok(fw.clients.iter().copied().filter(|&c| self.client(c).subscribed).collect()),
            Some(roles) => roles
                .iter()
                .map(|role| {
                    self.client_of(f, role).filter(|&c| self.client(c).subscribed).ok_or_else(|| {
                        AllocatorError::NotInRole { framework: fw.id.clone(), role: role.clone() }
                    })
                })
                .collect(),
        }
    }

    /// Stops offers to `framework` in `roles` (all its roles when `None`).
    pub fn suppress(&mut self, framework: &FrameworkId, roles: Option<&[Role]>) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        for c in self.clients_in(f, roles)? {
            self.client_mut(c).suppressed = true;
            self.refresh_client(c);
        }
        Ok(())
    }

    /// Resumes offers to `framework` in `roles` (all when `None`) and drops
    /// its filters in those roles, as a REVIVE does in Mesos.
    pub fn revive(&mut self, framework: &FrameworkId, roles: Option<&[Role]>) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        let clients = self.clients_in(f, roles)?;
        self.framework_mut(f).yields = None;
        for c in clients {
            let client = self.client_mut(c);
            client.suppressed = false;
            client.filters = None;
            self.refresh_client(c);
        }
        // Agents passed over only because of a filter kept their free
        // resources and so are still candidates: nothing else to wake up.
        Ok(())
    }

    /// Refuses `agent` to `framework` in `role` until the time `until` (a
    /// DECLINE with `refuse_seconds` of an offer made in `role`); a later
    /// filter for the same triple replaces it. The framework's other roles
    /// still get the agent: one queue of the YARN shim turning an agent
    /// down must not starve its other queues.
    pub fn add_filter(&mut self, framework: &FrameworkId, role: &Role, agent: &AgentId, until: Duration) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        let a = self.agent_slot(agent)?;
        let [c] = self.clients_in(f, Some(std::slice::from_ref(role)))?[..] else { unreachable!("one role, one client") };
        self.client_mut(c).filters.get_or_insert_with(BTreeMap::new).insert(a, Filter { until });
        Ok(())
    }

    /// When the earliest filter still in force after `now` lapses.
    pub fn next_filter_expiry(&self, now: Duration) -> Option<Duration> {
        self.clients.iter().flatten().filter_map(|c| c.filters.as_ref()).flat_map(|f| f.values().map(|f| f.until)).filter(|t| *t > now).min()
    }

    /// Puts `framework` behind every other eligible client for `agent`
    /// until `until`: what the broker does when an offer times out, so a
    /// framework that never answers cannot keep an agent from the others
    /// in line. Unlike a filter, the agent still goes to it when nobody
    /// else wants it. A REVIVE drops it.
    pub fn add_yield(&mut self, framework: &FrameworkId, agent: &AgentId, until: Duration) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        let a = self.agent_slot(agent)?;
        self.framework_mut(f).yields.get_or_insert_with(BTreeMap::new).insert(a, until);
        self.yielding_frameworks = self.frameworks.iter().flatten().filter(|fw| fw.yields.is_some()).count();
        Ok(())
    }

    /// States where the data `framework`'s tasks will read is (bytes per
    /// agent; unknown agents are skipped, as data on no agent of the pool
    /// cannot be brought closer), replacing what it stated before (a wait
    /// it is in goes on). Until it launches on an agent with its data
    /// ([`Allocator::note_launch`]) or has waited `locality_delay`, the
    /// framework passes over agents without it, which go to the next in
    /// line; its place in line (its share) does not change. Empty: no
    /// preference.
    pub fn set_wants(&mut self, framework: &FrameworkId, data: &[(AgentId, u64)]) -> Result<(), AllocatorError> {
        let f = self.framework_slot(framework)?;
        let agents: BTreeMap<u32, u64> = data
            .iter()
            .filter(|(_, bytes)| *bytes > 0)
            .filter_map(|(agent, bytes)| Some((*self.agent_ix.get(agent)?, *bytes)))
            .fold(BTreeMap::new(), |mut acc, (a, bytes)| {
                *acc.entry(a).or_insert(0) += bytes;
                acc
            });
        let fw = self.framework_mut(f);
        // A framework restating its data (as its pending tasks change) keeps
        // the wait it is in: otherwise stating often would wait forever.
        let waiting_since = fw.wants.as_ref().and_then(|w| w.waiting_since);
        fw.wants = (!agents.is_empty()).then(|| Box::new(Wants { agents, waiting_since }));
        Ok(())
    }

    /// `framework` launched a task on `agent`: if the agent holds its data,
    /// its wait for data ends (the next pass-over starts another), as
    /// delay scheduling resets on a local launch. Being offered a local
    /// agent is not enough: a framework that declines it (its tasks do not
    /// fit there) still reaches the end of its wait and gets others.
    pub fn note_launch(&mut self, framework: &FrameworkId, agent: &AgentId) {
        let (Some(&f), Some(&a)) = (self.framework_ix.get(framework), self.agent_ix.get(agent)) else { return };
        if let Some(wants) = &mut self.framework_mut(f).wants {
            if wants.agents.contains_key(&a) {
                wants.waiting_since = None;
            }
        }
    }

    /// When the first framework now waiting for agents with its data will
    /// have waited `locality_delay` (and takes any agent): the caller runs
    /// a cycle then, even if nothing else changed.
    pub fn locality_deadline(&self) -> Option<Duration> {
        // A wait starts only in a cycle that saw some framework's data.
        if !self.wants_active {
            return None;
        }
        self.frameworks
            .iter()
            .flatten()
            .filter_map(|fw| fw.wants.as_ref()?.waiting_since)
            .min()
            .map(|since| since + self.config.locality_delay)
    }

    /// Bytes of `framework`'s wanted data on each agent, as the allocator
    /// holds them (agents it knows only).
    pub fn wants(&self, framework: &FrameworkId) -> Vec<(AgentId, u64)> {
        let Some(&f) = self.framework_ix.get(framework) else { return Vec::new() };
        let Some(wants) = &self.framework(f).wants else { return Vec::new() };
        wants.agents.iter().map(|(&a, &bytes)| (self.agent(a).id.clone(), bytes)).collect()
    }

    // ----- roles -----

    /// Switches the allocation policy; every key is recomputed before the
    /// next cycle.
    pub fn set_policy(&mut self, policy: Arc<dyn Policy>) {
        self.first_member_needed = policy.orders_roles_by_first_member();
        self.drf = policy.name() == policy::Drf.name();
        self.policy = policy;
        self.order_dirty = true;
    }

    pub fn policy(&self) -> &dyn Policy {
        self.policy.as_ref()
    }

    /// Sets a role's priority band (used by the strict-priority policy;
    /// higher goes first). 0, the default, with nothing else keeping the
    /// role, forgets it.
    pub fn set_priority(&mut self, role: Role, priority: u32) {
        let r = self.role_slot_or_create(&role);
        self.roles[r as usize].priority = priority;
        self.refresh_role(r);
        self.forget_role_if_unused(r);
    }

    /// Sets a role's quota, checked: each limit at least the guarantee of
    /// its kind, the guarantees of the roles below within this one's (and
    /// this one within any guaranteed role above), and the guarantees of
    /// the topmost guaranteed roles together within the cluster's active
    /// total. Refused with the figures, changing nothing.
    pub fn set_quota(&mut self, role: Role, quota: Quota) -> Result<(), AllocatorError> {
        self.check_quota(&role, &quota, true)?;
        self.apply_quota(role, quota);
        Ok(())
    }

    /// Sets a role's quota without any check: for a new leader restoring
    /// acknowledged quotas before its agents have re-registered, and for
    /// a caller changing several roles at once that then calls
    /// [`Allocator::check_quotas`] on the result (and puts the old quotas
    /// back if it fails).
    pub fn restore_quota(&mut self, role: Role, quota: Quota) {
        self.apply_quota(role, quota);
    }

    /// Checks every role's quota as [`Allocator::set_quota`] checks one
    /// (the cluster's total only with `against_cluster`); the error names
    /// the first role at fault, with the figures.
    pub fn check_quotas(&self, against_cluster: bool) -> Result<(), AllocatorError> {
        for (name, &r) in &self.role_ix {
            let role = &self.roles[r as usize];
            if let Some((kind, g, l)) = crate::quota::first_excess(&role.guarantee, &role.limit) {
                return Err(AllocatorError::BadQuota {
                    role: name.clone(),
                    reason: format!("its guarantee of {kind} {g} is more than its limit of {kind} {l}"),
                });
            }
        }
        let guarantees: BTreeMap<Role, Scalars> = self
            .role_ix
            .iter()
            .map(|(name, &r)| (name.clone(), self.roles[r as usize].guarantee))
            .filter(|(_, g)| *g != Scalars::default())
            .collect();
        crate::quota::check_guarantees(&guarantees, against_cluster.then_some(&self.total)).map_err(|reason| {
            // Name the role whose guarantee is at fault: the one the
            // message names as "below R", else the first guaranteed role.
            let role = guarantees
                .keys()
                .find(|r| reason.contains(&format!("below {r} ")))
                .or_else(|| guarantees.keys().next())
                .cloned()
                .unwrap_or_else(Role::default_role);
            AllocatorError::BadQuota { role, reason }
        })
    }

    /// Sum of the guarantees of the topmost guaranteed roles (what the
    /// cluster must hold for every guarantee to be kept).
    pub fn guaranteed_total(&self) -> Resources {
        let mut sum = Scalars::default();
        for &r in self.role_ix.values() {
            if self.roles[r as usize].guarantee != Scalars::default() && !self.guarantee_above(r) {
                sum.add(&self.roles[r as usize].guarantee);
            }
        }
        sum.to_resources()
    }

    /// Whether some role above `r` has a guarantee (which covers `r`'s).
    fn guarantee_above(&self, r: u32) -> bool {
        let mut up = self.roles[r as usize].parent;
        while let Some(p) = up {
            if self.roles[p as usize].guarantee != Scalars::default() {
                return true;
            }
            up = self.roles[p as usize].parent;
        }
        false
    }

    fn check_quota(&self, role: &Role, quota: &Quota, against_cluster: bool) -> Result<(), AllocatorError> {
        let bad = |reason: String| AllocatorError::BadQuota { role: role.clone(), reason };
        let guarantee = Scalars::of(&quota.guarantee);
        let limit = limit_scalars(&quota.limit);
        if let Some((kind, g, l)) = crate::quota::first_excess(&guarantee, &limit) {
            return Err(bad(format!("its guarantee of {kind} {g} is more than its limit of {kind} {l}")));
        }
        let mut guarantees: BTreeMap<Role, Scalars> = self
            .role_ix
            .iter()
            .map(|(name, &r)| (name.clone(), self.roles[r as usize].guarantee))
            .filter(|(name, g)| name != role && *g != Scalars::default())
            .collect();
        if guarantee != Scalars::default() {
            guarantees.insert(role.clone(), guarantee);
        }
        crate::quota::check_guarantees(&guarantees, against_cluster.then_some(&self.total)).map_err(bad)
    }

    fn apply_quota(&mut self, role: Role, quota: Quota) {
        let r = self.role_slot_or_create(&role);
        let had = self.roles[r as usize].has_quota();
        let state = &mut self.roles[r as usize];
        state.guarantee = Scalars::of(&quota.guarantee);
        state.limit = limit_scalars(&quota.limit);
        let has = state.has_quota();
        match (had, has) {
            (false, true) => self.quota_roles += 1,
            (true, false) => self.quota_roles -= 1,
            _ => {}
        }
        self.refresh_role(r);
        self.forget_role_if_unused(r);
    }

    /// `role`'s quota (the default, nothing guaranteed and no limit, for a
    /// role the allocator does not know).
    pub fn quota(&self, role: &Role) -> Quota {
        let Some(&r) = self.role_ix.get(role) else { return Quota::default() };
        let state = &self.roles[r as usize];
        Quota { guarantee: state.guarantee.to_resources(), limit: limits_of(&state.limit) }
    }

    /// The topmost guaranteed roles that lack part of their guarantee
    /// and have a framework asking (offerable) below them, with what
    /// they lack: whom revocation works for.
    pub fn starved_guarantees(&self) -> Vec<(Role, Resources)> {
        self.role_ix
            .iter()
            .filter(|(_, &r)| {
                let role = &self.roles[r as usize];
                role.guarantee != Scalars::default() && !self.guarantee_above(r) && role.below_guarantee() && self.asks(r)
            })
            .map(|(name, &r)| {
                let role = &self.roles[r as usize];
                (name.clone(), role.shortfall().to_resources())
            })
            .collect()
    }

    /// Whether some client in role `r`'s subtree is offerable (subscribed,
    /// active, not suppressed). Reads the books, not the ordered sets, so
    /// it holds while a rebuild is pending.
    fn asks(&self, r: u32) -> bool {
        let role = &self.roles[r as usize];
        role.clients.iter().any(|&c| self.offerable(c)) || role.children.iter().any(|&child| self.asks(child))
    }

    /// Unreserved free scalars of active agents (a scan of every agent).
    pub fn free_unreserved_total(&self) -> Resources {
        let mut free = Scalars::default();
        for agent in self.agents.iter().flatten().filter(|agent| agent.active) {
            free.add(&Scalars::of(&agent.free.unreserved));
        }
        free.to_resources()
    }

    /// Per kind, what the guaranteed roles lack now (what is held back
    /// from everyone else while agents have it free).
    pub fn guarantee_shortfall(&self) -> Resources {
        let mut lack = Scalars::default();
        for &r in self.role_ix.values() {
            if !self.guarantee_above(r) {
                let role = &self.roles[r as usize];
                lack.add(&role.shortfall());
            }
        }
        lack.to_resources()
    }

    pub fn set_weight(&mut self, role: Role, weight: f64) -> Result<(), AllocatorError> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(AllocatorError::BadWeight { role, weight });
        }
        let r = self.role_slot_or_create(&role);
        self.roles[r as usize].weight = weight;
        self.refresh_role(r);
        // Back to the default, a role nobody uses is forgotten: weighting
        // is also how an operator removes a role.
        self.forget_role_if_unused(r);
        Ok(())
    }

    // ----- resources coming back -----

    /// Returns `resources` allocated to (`framework`, `role`) on `agent`:
    /// a declined or rescinded offer, or a finished task. Refused, changing
    /// nothing, unless they are all allocated to that pair on that agent.
    pub fn recover(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        resources: &ResourceSet,
    ) -> Result<(), AllocatorError> {
        self.recover_inner(agent, framework, role, resources, false)
    }

    /// [`Allocator::recover`] for revocable resources (a revocable offer
    /// or a task launched on one). Refused, changing nothing, unless they
    /// are all allocated to that pair on that agent and revocable there
    /// (unreserved scalars; ports are not lent apart from the rest).
    pub fn recover_revocable(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        resources: &ResourceSet,
    ) -> Result<(), AllocatorError> {
        self.recover_inner(agent, framework, role, resources, true)
    }

    fn recover_inner(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        role: &Role,
        resources: &ResourceSet,
        revocable: bool,
    ) -> Result<(), AllocatorError> {
        let not_allocated = |allocated: ResourceSet| not_allocated(agent, framework, role, resources, allocated);
        let (a, c) = self.holder(agent, framework, role, resources)?;
        let slot = self.agent_mut(a);
        let Some(pos) = slot.allocations.iter().position(|(owner, _)| *owner == c) else {
            return Err(not_allocated(ResourceSet::default()));
        };
        let held = &slot.allocations[pos].1;
        let left = match held.checked_sub(resources) {
            Ok(left) => left,
            Err(_) => return Err(not_allocated(held.to_set())),
        };
        let amount = Scalars::of_set(resources);
        let lent_at = slot.revocable.iter().position(|(owner, _)| *owner == c);
        let lent = lent_at.map(|i| slot.revocable[i].1).unwrap_or_default();
        // Revocable resources come back as such, and the rest never out
        // of what is lent: the books of both stay exact.
        let fits = if revocable {
            resources.reserved.is_empty() && crate::quota::first_excess(&amount, &lent).is_none()
        } else {
            crate::quota::first_excess(&lent, &left.unreserved_scalars()).is_none()
        };
        if !fits {
            return Err(AllocatorError::RevocableMismatch {
                agent: agent.clone(),
                framework: framework.clone(),
                role: role.clone(),
                wanted: Box::new(resources.clone()),
                revocable_asked: revocable,
                lent: Box::new(ResourceSet::unreserved(lent.to_resources())),
            });
        }
        if left.is_empty() {
            slot.allocations.swap_remove(pos);
        } else {
            slot.allocations[pos].1 = left;
        }
        slot.add_free(resources);
        if let (true, Some(i)) = (revocable, lent_at) {
            slot.revocable[i].1.sub(&amount);
            if slot.revocable[i].1 == Scalars::default() {
                slot.revocable.swap_remove(i);
            }
            self.add_revocable(c, &amount, false);
        }
        self.account(c, &amount, false);
        self.account_reserved_free(resources, true);
        self.touch_candidate(a);
        Ok(())
    }

    /// Changes the reservation of resources on `agent` without changing
    /// their amounts (RESERVE: unreserved → reserved for a role; UNRESERVE:
    /// back). `holder` names the (framework, role) they are allocated to
    /// (an accepted offer's); `None` means they are free. The agent's total
    /// changes with them; shares do not (the same amounts stay where they
    /// were). Refused, changing nothing, unless `from` and `to` hold the
    /// same amounts and `from` is all there.
    pub fn convert(
        &mut self,
        agent: &AgentId,
        holder: Option<(&FrameworkId, &Role)>,
        from: &ResourceSet,
        to: &ResourceSet,
    ) -> Result<(), AllocatorError> {
        let a = self.agent_slot(agent)?;
        let bad = |reason: &str| AllocatorError::BadConversion {
            agent: agent.clone(),
            from: Box::new(from.clone()),
            to: Box::new(to.clone()),
            reason: reason.to_owned(),
        };
        if from.total() != to.total() {
            return Err(bad("a conversion must keep the amounts"));
        }
        let client = match holder {
            None => None,
            Some((framework, role)) => {
                let f = self.framework_slot(framework)?;
                Some(self.client_of(f, role).ok_or_else(|| bad("nothing is allocated to that framework in that role"))?)
            }
        };
        let new_total = self.agent(a).total.checked_sub(from).map_err(|_| bad("not on the agent"))?.add(to);
        let slot = self.agent_mut(a);
        match client {
            None => {
                let free = slot.free.checked_sub(from).map_err(|_| bad("not free"))?;
                slot.free = free;
                slot.add_free(to);
                slot.free_ports = Ports::of(&slot.free.unreserved.ports);
                slot.total = new_total;
                self.account_reserved_free(from, false);
                self.account_reserved_free(to, true);
                self.touch_candidate(a);
                return Ok(());
            }
            Some(c) => {
                let pos = slot
                    .allocations
                    .iter()
                    .position(|(owner, _)| *owner == c)
                    .ok_or_else(|| bad("nothing is allocated to that framework in that role on this agent"))?;
                let mut held = slot.allocations[pos].1.checked_sub(from).map_err(|_| bad("not allocated to that framework"))?;
                held.add(to);
                slot.allocations[pos].1 = held;
            }
        }
        slot.total = new_total;
        self.touch_candidate(a);
        Ok(())
    }

    // ----- the cycle -----

    /// One allocation cycle: every candidate agent's free resources are
    /// offered, reserved bundles to their role, the unreserved bundle by
    /// hierarchical DRF. Shares are updated after every grant.
    pub fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        let mut out = Vec::new();
        self.allocate_into(now, &mut out);
        out
    }

    /// [`Allocator::allocate`], appending to `out`. A caller that keeps one
    /// buffer across cycles spares the allocator a large allocation per
    /// cycle (with glibc, that large request also forces the consolidation
    /// of every small chunk the previous cycle's offers freed, which then
    /// makes each id clone of this cycle take malloc's slow path).
    pub fn allocate_into(&mut self, now: Duration, out: &mut Vec<Allocation>) {
        self.allocate_at_most(now, usize::MAX, out);
    }

    /// [`Allocator::allocate_into`], stopping once `max_agents` agents have
    /// been granted in this call. Returns whether every candidate was
    /// looked at; if not, what is left stays free for the next call, which
    /// starts at another rotation point. The prefix of a cycle is itself a
    /// fair cycle (shares are updated after every grant), so a caller that
    /// must not stall for a whole large cycle can spread one over several
    /// calls.
    pub fn allocate_at_most(&mut self, now: Duration, max_agents: usize, out: &mut Vec<Allocation>) -> bool {
        if self.order_dirty {
            self.rebuild_order();
        }
        let slots = self.agents.len() as u64;
        if slots == 0 || self.role_order.is_empty() {
            self.cycles += 1;
            return true;
        }
        let start = (splitmix64(self.cycles) % slots) as u32;
        self.cycles += 1;
        let mut list = mem::take(&mut self.scratch);
        self.candidates.collect_from(start, &mut list);
        // Usually one offer per candidate agent: reserve once rather than
        // reallocating a 50,000-entry vector some sixteen times.
        out.reserve(list.len().min(max_agents));
        self.wants_active = self.frameworks.iter().flatten().any(|fw| fw.wants.is_some());
        if self.quota_roles > 0 {
            self.start_headroom();
        }
        self.fair_bound = self.fair_share_bound();
        let mut notes = CycleNotes::default();
        let mut grants: Vec<(u32, ResourceSet)> = Vec::new();
        let mut revocable: Vec<(u32, ResourceSet)> = Vec::new();
        let mut granted = 0usize;
        let mut complete = true;
        for (i, &a) in list.iter().enumerate() {
            if granted >= max_agents {
                complete = false;
                break;
            }
            if let Some(&ahead) = list.get(i + PREFETCH_DISTANCE) {
                self.prefetch_agent(ahead);
            }
            self.offer_agent(a, now, &mut grants, &mut revocable, &mut notes);
            if grants.is_empty() && revocable.is_empty() {
                continue;
            }
            granted += 1;
            let agent_id = self.agent(a).id.clone();
            for (c, resources) in grants.drain(..) {
                out.push(self.allocation(a, &agent_id, c, resources, false));
            }
            for (c, resources) in revocable.drain(..) {
                out.push(self.allocation(a, &agent_id, c, resources, true));
            }
        }
        self.scratch = list;
        if self.yielding_frameworks > 0 {
            for fw in self.frameworks.iter_mut().flatten() {
                if let Some(yields) = &mut fw.yields {
                    yields.retain(|_, until| *until > now);
                    if yields.is_empty() {
                        fw.yields = None;
                    }
                }
            }
            self.yielding_frameworks = self.frameworks.iter().flatten().filter(|fw| fw.yields.is_some()).count();
        }
        for f in notes.waiting {
            if let Some(wants) = &mut self.framework_mut(f).wants {
                wants.waiting_since.get_or_insert(now);
            }
        }
        for (c, a) in notes.expired {
            let client = self.client_mut(c);
            if let Some(filters) = &mut client.filters {
                if filters.get(&a).is_some_and(|f| f.until <= now) {
                    filters.remove(&a);
                }
                if filters.is_empty() {
                    client.filters = None;
                }
            }
        }
        complete
    }

    /// The `Allocation` of a grant of `resources` on agent `a` to client `c`.
    #[inline(always)]
    fn allocation(&self, a: u32, agent_id: &AgentId, c: u32, resources: ResourceSet, revocable: bool) -> Allocation {
        let client = self.client(c);
        let fw = self.framework(client.framework);
        let data_bytes = if self.wants_active { fw.wants.as_ref().and_then(|w| w.agents.get(&a)).copied().unwrap_or(0) } else { 0 };
        let framework = fw.id.clone();
        let role = self.roles[client.role as usize].name.clone();
        Allocation { agent: agent_id.clone(), framework, role, resources, data_bytes, revocable }
    }

    /// Asks the CPU to start loading what the cycle will read of agent `a`
    /// a few agents from now: its id (cloned into the offer) and its
    /// records (written). Slots are visited in order, so the agent structs
    /// themselves stream in; these heap blocks are scattered, and waiting
    /// for them one agent at a time is most of a large cycle.
    #[inline]
    fn prefetch_agent(&self, a: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Some(agent) = &self.agents[a as usize] {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is
            // a hint that never faults or reads into the program, whatever
            // the address (here: live heap blocks, or a dangling-but-aligned
            // pointer for an empty Vec).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(agent.id.as_str().as_ptr().cast());
                _mm_prefetch::<_MM_HINT_T0>(agent.allocations.as_ptr().cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = a;
    }

    /// Whether client `c` refuses `agent` at `now`; an expired filter is
    /// noted for removal after the cycle.
    fn filtered(&self, c: u32, a: u32, now: Duration, notes: &mut CycleNotes) -> bool {
        let client = self.client(c);
        let Some(filters) = &client.filters else { return false };
        match filters.get(&a) {
            Some(Filter { until }) if *until > now => true,
            Some(_) => {
                notes.expired.push((c, a));
                false
            }
            None => false,
        }
    }

    /// Whether `framework` yields `agent` at `now`.
    fn yielding(&self, f: u32, a: u32, now: Duration) -> bool {
        self.framework(f).yields.as_ref().and_then(|y| y.get(&a)).is_some_and(|until| *until > now)
    }

    /// Whether framework `f` waits for agents with its data rather than
    /// take agent `a` (delay scheduling): it wants data, `a` holds none of
    /// it, and it has not yet waited `locality_delay` since it first passed
    /// an agent over. Passing `a` over starts that wait.
    fn waits_for_data(&self, f: u32, a: u32, now: Duration, notes: &mut CycleNotes) -> bool {
        if !self.wants_active {
            return false;
        }
        let Some(wants) = &self.framework(f).wants else { return false };
        if wants.agents.contains_key(&a) || self.config.locality_delay.is_zero() {
            return false;
        }
        match wants.waiting_since {
            Some(since) => now.saturating_sub(since) < self.config.locality_delay,
            None => {
                notes.waiting.push(f);
                true
            }
        }
    }

    /// The lowest-share offerable client of role `r` not refusing agent `a`
    /// (and, with `honour_yields`, not yielding it), nor waiting for agents
    /// with its data.
    fn pick_in_role(&self, r: u32, a: u32, now: Duration, notes: &mut CycleNotes, honour_yields: bool) -> Option<u32> {
        self.roles[r as usize].order.iter().map(|&(_, _, _, c)| c).find(|&c| {
            let f = self.client(c).framework;
            !(self.revocable_pass && !self.framework(f).takes_revocable)
                && !self.filtered(c, a, now, notes)
                && !(honour_yields && self.yielding(f, a, now))
                && !self.waits_for_data(f, a, now, notes)
        })
    }

    /// The first client in role `r`'s subtree, walking each role's
    /// `child_order` (its own clients at their `OWN_CLIENTS` place), that
    /// `pick_in_role` would take.
    #[inline]
    fn pick_in_tree(&self, r: u32, a: u32, now: Duration, notes: &mut CycleNotes, honour_yields: bool) -> Option<u32> {
        let role = &self.roles[r as usize];
        if role.children.is_empty() {
            return self.pick_in_role(r, a, now, notes, honour_yields);
        }
        role.child_order.iter().find_map(|k| match k.3 {
            OWN_CLIENTS => self.pick_in_role(r, a, now, notes, honour_yields),
            child => self.pick_in_tree(child, a, now, notes, honour_yields),
        })
    }

    /// `pick_in_tree` with quotas: the first client (and how much of
    /// `free` it may be given) whose role and every role above it leave
    /// room under their limits, and whose grant keeps the guarantee
    /// headroom (`slack` is what may be given beyond it; a role under
    /// its guarantee may also have its shortfall). `covered`: a role
    /// above has a guarantee, which already bounded `cap`.
    #[allow(clippy::too_many_arguments)]
    fn pick_capped(
        &self,
        r: u32,
        a: u32,
        now: Duration,
        notes: &mut CycleNotes,
        honour_yields: bool,
        cap: Scalars,
        slack: &Scalars,
        free: &Scalars,
        covered: bool,
    ) -> Option<(u32, Scalars)> {
        let role = &self.roles[r as usize];
        let mut cap = cap.min(&role.limit.saturating_sub(&role.subtree));
        let mut covered = covered;
        if !covered && role.guarantee != Scalars::default() {
            let mut room = role.shortfall();
            room.add(slack);
            cap = cap.min(&room);
            covered = true;
        }
        if !self.worth_giving(a, &free.min(&cap)) {
            return None;
        }
        let own = |notes: &mut CycleNotes| {
            let cap = if covered { cap } else { cap.min(slack) };
            if !self.worth_giving(a, &free.min(&cap)) {
                return None;
            }
            self.pick_in_role(r, a, now, notes, honour_yields).map(|c| (c, cap))
        };
        if role.children.is_empty() {
            return own(notes);
        }
        role.child_order.iter().find_map(|k| match k.3 {
            OWN_CLIENTS => own(notes),
            child => self.pick_capped(child, a, now, notes, honour_yields, cap, slack, free, covered),
        })
    }

    /// What may still be given beyond the guarantee headroom this cycle:
    /// unreserved free resources of active agents minus what the
    /// guaranteed roles still lack (unlimited when none lacks anything).
    fn headroom_slack(&self) -> Scalars {
        let Some(h) = &self.headroom else { return Scalars::UNLIMITED };
        let mut required = Scalars::default();
        // Called for every grant: with nothing lent (the usual case) the
        // revocable books cannot change the sums, so skip them.
        if h.lent == Scalars::default() {
            for &t in &h.tops {
                let role = &self.roles[t as usize];
                required.add(&role.guarantee.saturating_sub(&role.subtree));
            }
            return h.free.saturating_sub(&required);
        }
        for &t in &h.tops {
            required.add(&self.roles[t as usize].shortfall());
        }
        let mut have = h.free;
        have.add(&h.lent);
        have.saturating_sub(&required)
    }

    /// Sets up this call's headroom books: the topmost guaranteed roles
    /// and, if any of them lacks something, the unreserved free resources
    /// of active agents.
    fn start_headroom(&mut self) {
        self.headroom = None;
        let tops: Vec<u32> = self
            .role_ix
            .values()
            .copied()
            .filter(|&r| self.roles[r as usize].guarantee != Scalars::default() && !self.guarantee_above(r))
            .collect();
        if !tops.iter().any(|&t| self.roles[t as usize].below_guarantee()) {
            return;
        }
        // The unreserved free resources of active agents, from the books
        // rather than a scan of every agent (a tenth of the quota'd cycle
        // at 10,000 agents): the active total less what every role holds
        // or has reserved. Exact, except that what is held on inactive
        // agents is subtracted too, which only makes the headroom more
        // careful.
        let mut free = self.total;
        let mut lent = Scalars::default();
        for &r in self.role_ix.values() {
            let role = &self.roles[r as usize];
            if role.parent.is_none() {
                free = free.saturating_sub(&role.subtree);
                lent.add(&role.revocable);
            }
        }
        self.headroom = Some(Headroom { free, lent, tops });
    }

    /// Offers agent `a`'s unreserved free resources under quotas: each
    /// grant is cut to what the winner's limits and the headroom allow,
    /// and what is left goes to the next in line (a few times at most).
    /// Returns the winner of the whole bundle, if one took it, with its
    /// ports (the record is then made from them, as on the path without
    /// quotas).
    fn offer_unreserved_with_quotas(
        &mut self,
        a: u32,
        now: Duration,
        grants: &mut Vec<(u32, ResourceSet)>,
        notes: &mut CycleNotes,
    ) -> Option<(u32, Ports)> {
        let mut whole = None;
        for _ in 0..MAX_GRANTS_PER_AGENT {
            if !self.allocatable(&self.agent(a).free.unreserved) {
                break;
            }
            let free = Scalars::of(&self.agent(a).free.unreserved);
            let slack = self.headroom_slack();
            let mut winner =
                self.top_roles().find_map(|k| self.pick_capped(k.3, a, now, notes, true, Scalars::UNLIMITED, &slack, &free, false));
            if winner.is_none() && self.yielding_frameworks > 0 {
                winner = self
                    .top_roles()
                    .find_map(|k| self.pick_capped(k.3, a, now, notes, false, Scalars::UNLIMITED, &slack, &free, false));
            }
            let Some((c, cap)) = winner else { break };
            let give = free.min(&cap);
            let agent = self.agent_mut(a);
            let bundle = if give == free {
                let ports = mem::replace(&mut agent.free_ports, Ports::EMPTY);
                if !grants.iter().any(|(owner, _)| *owner == c) {
                    whole = Some((c, ports));
                }
                mem::take(&mut agent.free.unreserved)
            } else {
                // The ports go with the first grant: quotas do not count them.
                let mut cut = give.to_resources();
                cut.ports = mem::take(&mut agent.free.unreserved.ports);
                agent.free_ports = Ports::EMPTY;
                let rest = give_back(&agent.free.unreserved, &give);
                agent.free.unreserved = rest;
                cut
            };
            self.note_grant(c);
            self.account(c, &give, true);
            if let Some(h) = &mut self.headroom {
                h.free.sub(&give);
            }
            match grants.iter_mut().find(|(owner, _)| *owner == c) {
                Some((_, set)) => set.unreserved.add_assign(&bundle),
                None => grants.push((c, ResourceSet::unreserved(bundle))),
            }
        }
        whole
    }

    /// The top-level roles in order, up to the fair-share bound: keys sort
    /// by weighted share, so the roles past the bound are a suffix.
    #[inline]
    fn top_roles(&self) -> impl Iterator<Item = &RoleKey> {
        let bound = self.fair_bound;
        self.role_order.iter().take_while(move |k| match bound {
            None => true,
            Some(b) => k.0 & NOT_BELOW_GUARANTEE == 0 || (k.0 & !NOT_BELOW_GUARANTEE) < b,
        })
    }

    /// This call's fair-share bound (see `fair_bound`), or `None` when it
    /// is off, the policy is not DRF, or at most one top-level role asks.
    fn fair_share_bound(&self) -> Option<u64> {
        if !self.config.fair_share_bound || !self.drf || self.role_order.len() < 2 {
            return None;
        }
        let weights: f64 = self.role_order.iter().map(|k| self.roles[k.3 as usize].weight).sum();
        Some(policy::share_bits(1.0 / weights))
    }

    /// Lends what the headroom kept of agent `a`'s unreserved free
    /// resources to frameworks that take revocable resources: one grant
    /// at most, cut to the winner's limits (limits count revocable
    /// holdings), picked in the policy's order among those frameworks.
    /// Only while some guaranteed role lacks (`headroom` is set): what
    /// nobody holds back is offered as usual.
    fn offer_revocable(&mut self, a: u32, now: Duration, revocable: &mut Vec<(u32, ResourceSet)>, notes: &mut CycleNotes) {
        if self.headroom.is_none() || !self.allocatable(&self.agent(a).free.unreserved) {
            return;
        }
        let free = Scalars::of(&self.agent(a).free.unreserved);
        self.revocable_pass = true;
        let mut winner = self
            .role_order
            .iter()
            .find_map(|k| self.pick_capped(k.3, a, now, notes, true, Scalars::UNLIMITED, &Scalars::UNLIMITED, &free, false));
        if winner.is_none() && self.yielding_frameworks > 0 {
            winner = self.role_order.iter().find_map(|k| {
                self.pick_capped(k.3, a, now, notes, false, Scalars::UNLIMITED, &Scalars::UNLIMITED, &free, false)
            });
        }
        self.revocable_pass = false;
        let Some((c, cap)) = winner else { return };
        let give = free.min(&cap);
        let agent = self.agent_mut(a);
        let mut bundle = give.to_resources();
        bundle.ports = mem::take(&mut agent.free.unreserved.ports);
        agent.free_ports = Ports::EMPTY;
        agent.free.unreserved = give_back(&agent.free.unreserved, &give);
        match agent.revocable.iter_mut().find(|(owner, _)| *owner == c) {
            Some((_, lent)) => lent.add(&give),
            None => agent.revocable.push((c, give)),
        }
        self.note_grant(c);
        self.add_revocable(c, &give, true);
        self.account(c, &give, true);
        if let Some(h) = &mut self.headroom {
            h.free.sub(&give);
            h.lent.add(&give);
        }
        revocable.push((c, ResourceSet::unreserved(bundle)));
    }

    /// Adds (or removes) `amount` to the revocable books of client `c`
    /// and of its role and every role above it. Call before `account`,
    /// which re-files them.
    fn add_revocable(&mut self, c: u32, amount: &Scalars, add: bool) {
        let client = self.client_mut(c);
        if add {
            client.revocable.add(amount);
        } else {
            client.revocable.sub(amount);
        }
        let mut at = Some(client.role);
        while let Some(x) = at {
            let role = &mut self.roles[x as usize];
            if add {
                role.revocable.add(amount);
            } else {
                role.revocable.sub(amount);
            }
            at = role.parent;
        }
    }

    /// Whether `give`, from agent `a`'s unreserved free resources, is
    /// worth an offer under quotas: not empty, and with at least the
    /// minimum of cpus and of memory wherever the agent has that much at
    /// all. An offer of an agent's memory without its cpus (or the
    /// reverse) fits no task; worse, handing the parts out separately lets
    /// a guaranteed role receive them in separate offers it declines one
    /// by one, and never reach its guarantee (seen in
    /// `integration/quotas.rs`). What is left waits for the next cycle.
    fn worth_giving(&self, a: u32, give: &Scalars) -> bool {
        let (min_cpus, min_mem) = (self.config.min_allocatable_cpus.0, self.config.min_allocatable_mem.0);
        let has = &self.agent(a).total.unreserved;
        *give != Scalars::default()
            && (give.0[0] >= min_cpus || has.cpus.0 < min_cpus)
            && (give.0[1] >= min_mem || has.mem.0 < min_mem)
    }

    /// `pick_in_role` for everyone not yielding `a`, else for anyone.
    fn pick_in_role_yielding_last(&self, r: u32, a: u32, now: Duration, notes: &mut CycleNotes) -> Option<u32> {
        let first = self.pick_in_role(r, a, now, notes, true);
        if first.is_some() || self.yielding_frameworks == 0 {
            return first;
        }
        self.pick_in_role(r, a, now, notes, false)
    }

    /// Offers agent `a`'s free resources, pushing (client, resources) grants
    /// (at most one per client) and recording them on the agent.
    fn offer_agent(
        &mut self,
        a: u32,
        now: Duration,
        grants: &mut Vec<(u32, ResourceSet)>,
        revocable: &mut Vec<(u32, ResourceSet)>,
        notes: &mut CycleNotes,
    ) {
        if !self.agent(a).active {
            self.candidates.set(a, false);
            return;
        }
        if !self.agent(a).free.reserved.is_empty() {
            let reserved_roles: Vec<Role> = self.agent(a).free.reserved.keys().cloned().collect();
            for role in reserved_roles {
                let Some(&r) = self.role_ix.get(&role) else { continue };
                let Some(c) = self.pick_in_role_yielding_last(r, a, now, notes) else { continue };
                let bundle = self.agent_mut(a).free.reserved.remove(&role).expect("reserved bundle present");
                self.note_grant(c);
                self.account(c, &Scalars::of(&bundle), true);
                let state = &mut self.roles[r as usize];
                state.reserved_free.sub(&Scalars::of(&bundle));
                self.add_subtree(r, &Scalars::of(&bundle), false);
                self.refresh_role(r);
                let mut set = ResourceSet::default();
                set.reserved.insert(role, bundle);
                grants.push((c, set));
            }
        }
        let mut unreserved_ports = None;
        if self.quota_roles > 0 {
            unreserved_ports = self.offer_unreserved_with_quotas(a, now, grants, notes);
            if self.revocable_frameworks > 0 {
                self.offer_revocable(a, now, revocable, notes);
            }
        } else if self.allocatable(&self.agent(a).free.unreserved) {
            let mut winner = self.top_roles().find_map(|k| self.pick_in_tree(k.3, a, now, notes, true));
            if winner.is_none() && self.yielding_frameworks > 0 {
                winner = self.top_roles().find_map(|k| self.pick_in_tree(k.3, a, now, notes, false));
            }
            if let Some(c) = winner {
                let agent = self.agent_mut(a);
                let bundle = mem::take(&mut agent.free.unreserved);
                unreserved_ports = Some((c, mem::replace(&mut agent.free_ports, Ports::EMPTY)));
                self.note_grant(c);
                self.account(c, &Scalars::of(&bundle), true);
                match grants.iter_mut().find(|(owner, _)| *owner == c) {
                    Some((_, set)) => set.unreserved = bundle,
                    None => grants.push((c, ResourceSet::unreserved(bundle))),
                }
            }
        }
        let agent = self.agents[a as usize].as_mut().expect("agent slot in use");
        for (c, resources) in revocable.iter() {
            match agent.allocations.iter_mut().find(|(owner, _)| owner == c) {
                Some((_, held)) => held.add(resources),
                None => agent.allocations.push((*c, Held::of(resources))),
            }
        }
        for (c, resources) in grants.iter() {
            match agent.allocations.iter_mut().find(|(owner, _)| owner == c) {
                Some((_, held)) => held.add(resources),
                None => {
                    // Most agents only ever hold one framework's records:
                    // start at one entry, not the usual four (~300 bytes
                    // less per agent, 15 MB on 50,000 agents).
                    if agent.allocations.capacity() == 0 {
                        agent.allocations.reserve_exact(1);
                    }
                    let held = match unreserved_ports.take() {
                        Some((owner, ports)) if owner == *c => Held::of_with_ports(resources, ports),
                        other => {
                            unreserved_ports = other;
                            Held::of(resources)
                        }
                    };
                    agent.allocations.push((*c, held));
                }
            }
        }
        self.touch_candidate(a);
    }

    // ----- observations -----

    /// Roles the allocator knows (weighted, subscribed to, held in or
    /// reserved for).
    pub fn role_count(&self) -> usize {
        self.role_ix.len()
    }

    pub fn has_role(&self, role: &Role) -> bool {
        self.role_ix.contains_key(role)
    }

    /// Every known role, by name, with its allocation and shares.
    pub fn role_shares(&self) -> Vec<RoleShare> {
        self.role_ix
            .values()
            .map(|&r| {
                let role = &self.roles[r as usize];
                let share = role.subtree.dominant_share(&self.total);
                let mut frameworks: Vec<FrameworkId> =
                    role.clients.iter().map(|&c| self.framework(self.client(c).framework).id.clone()).collect();
                frameworks.sort();
                RoleShare {
                    role: role.name.clone(),
                    weight: role.weight,
                    allocated: role.allocated.to_resources(),
                    dominant_share: share,
                    weighted_share: share / role.weight,
                    frameworks,
                    priority: role.priority,
                    quota: Quota { guarantee: role.guarantee.to_resources(), limit: limits_of(&role.limit) },
                    subtree: role.subtree.to_resources(),
                    revocable: role.revocable.to_resources(),
                    parent: role.parent.map(|p| self.roles[p as usize].name.clone()),
                }
            })
            .collect()
    }

    /// Dominant share of everything allocated to `framework`, over all its
    /// roles, against the total of active agents.
    pub fn framework_share(&self, framework: &FrameworkId) -> Option<f64> {
        let f = *self.framework_ix.get(framework)?;
        let mut sum = Scalars::default();
        for &c in &self.framework(f).clients {
            sum.add(&self.client(c).allocated);
        }
        Some(sum.dominant_share(&self.total))
    }

    /// Dominant share of what `framework` holds in `role`, the quantity
    /// frameworks within a role are ordered by.
    pub fn framework_role_share(&self, framework: &FrameworkId, role: &Role) -> Option<f64> {
        let f = *self.framework_ix.get(framework)?;
        let c = self.client_of(f, role)?;
        Some(self.client(c).allocated.dominant_share(&self.total))
    }

    /// What is neither offered nor in use on `agent`.
    pub fn free(&self, agent: &AgentId) -> Option<ResourceSet> {
        let a = *self.agent_ix.get(agent)?;
        Some(self.agent(a).free.clone())
    }

    /// Scalars of all active agents (ports are not summed across agents).
    pub fn total(&self) -> Resources {
        self.total.to_resources()
    }

    /// Role slots allocated, in use or free; for tests.
    #[cfg(test)]
    pub(crate) fn role_slots(&self) -> usize {
        self.roles.len()
    }

    /// Checks every invariant listed at the top of this module; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut client_sums: BTreeMap<u32, Scalars> = BTreeMap::new();
        let mut total = Scalars::default();
        for (a, slot) in self.agents.iter().enumerate() {
            let Some(agent) = slot else { continue };
            let mut sum = agent.free.clone();
            for (c, held) in &agent.allocations {
                assert!(!held.is_empty(), "empty allocation record on {}", agent.id);
                sum.add_assign(&held.to_set());
                client_sums.entry(*c).or_default().add(&held.scalars());
            }
            assert_eq!(Scalars::of_set(&sum), Scalars::of_set(&agent.total), "free + allocated != total on {}", agent.id);
            assert_eq!(agent.free_ports, Ports::of(&agent.free.unreserved.ports), "inline free ports of {}", agent.id);
            if agent.active {
                total.add(&Scalars::of_set(&agent.total));
            }
            assert_eq!(
                self.candidates.get(a as u32),
                agent.active && self.has_offerable(&agent.free),
                "candidate bit of {}",
                agent.id
            );
        }
        assert_eq!(total, self.total);
        let mut lent_sums: BTreeMap<u32, Scalars> = BTreeMap::new();
        for agent in self.agents.iter().flatten() {
            for (c, lent) in &agent.revocable {
                assert!(*lent != Scalars::default(), "empty revocable record on {}", agent.id);
                let held = agent.allocations.iter().find(|(owner, _)| owner == c).map(|(_, h)| h.unreserved_scalars());
                assert!(
                    held.is_some_and(|h| crate::quota::first_excess(lent, &h).is_none()),
                    "revocable record of client {c} on {} beyond what it holds",
                    agent.id
                );
                lent_sums.entry(*c).or_default().add(lent);
            }
        }
        let mut role_lent: BTreeMap<u32, Scalars> = BTreeMap::new();
        for (c, slot) in self.clients.iter().enumerate() {
            let Some(client) = slot else { continue };
            assert_eq!(client.revocable, lent_sums.get(&(c as u32)).copied().unwrap_or_default(), "revocable of client {c}");
            let mut at = Some(client.role);
            while let Some(r) = at {
                role_lent.entry(r).or_default().add(&client.revocable);
                at = self.roles[r as usize].parent;
            }
        }
        for &r in self.role_ix.values() {
            let role = &self.roles[r as usize];
            assert_eq!(role.revocable, role_lent.get(&r).copied().unwrap_or_default(), "revocable of role {}", role.name);
        }
        assert_eq!(
            self.revocable_frameworks,
            self.frameworks.iter().flatten().filter(|fw| fw.takes_revocable).count(),
            "count of frameworks taking revocable resources"
        );
        let mut role_sums: BTreeMap<u32, Scalars> = BTreeMap::new();
        for (c, slot) in self.clients.iter().enumerate() {
            let Some(client) = slot else { continue };
            assert_eq!(client.allocated, client_sums.get(&(c as u32)).copied().unwrap_or_default());
            assert_eq!(self.role_ix.get(&self.roles[client.role as usize].name), Some(&client.role), "client {c} in a forgotten role");
            role_sums.entry(client.role).or_default().add(&client.allocated);
            if !self.order_dirty {
                assert_eq!(client.key.is_some(), self.offerable(c as u32));
                if let Some(k) = client.key {
                    assert!(self.roles[client.role as usize].order.contains(&k));
                    assert_eq!(k, self.client_key(c as u32), "key of client {c}");
                }
            }
        }
        let mut reserved_free: BTreeMap<Role, Scalars> = BTreeMap::new();
        for agent in self.agents.iter().flatten() {
            for (role, bundle) in &agent.free.reserved {
                reserved_free.entry(role.clone()).or_default().add(&Scalars::of(bundle));
            }
        }
        for (name, &r) in &self.role_ix {
            let role = &self.roles[r as usize];
            assert_eq!(&role.name, name);
            assert_eq!(role.reserved_free, reserved_free.get(&role.name).copied().unwrap_or_default(), "reserved_free of {}", role.name);
            assert!(!role.unused(), "role {} is kept with nothing to keep it", role.name);
            assert!(!self.free_role_slots.contains(&r), "role {} is in use and free", role.name);
        }
        for (role, amount) in &reserved_free {
            assert!(*amount == Scalars::default() || self.role_ix.contains_key(role), "role {role} has free reservations but is forgotten");
        }
        assert_eq!(self.role_ix.len() + self.free_role_slots.len(), self.roles.len());
        for (r, role) in self.roles.iter().enumerate() {
            if self.free_role_slots.contains(&(r as u32)) {
                assert!(role.key.is_none() && role.clients.is_empty());
                continue;
            }
            assert_eq!(role.allocated, role_sums.get(&(r as u32)).copied().unwrap_or_default());
            let mut subtree = role.usage();
            for &child in &role.children {
                let c = &self.roles[child as usize];
                assert_eq!(c.parent, Some(r as u32), "parent of {}", c.name);
                assert!(crate::quota::is_below(c.name.as_str(), role.name.as_str()), "{} under {}", c.name, role.name);
                assert_eq!(c.name.as_str().matches('/').count(), role.name.as_str().matches('/').count() + 1);
                subtree.add(&c.subtree);
            }
            assert_eq!(role.subtree, subtree, "subtree of {}", role.name);
            match role.parent {
                Some(p) => assert!(self.roles[p as usize].children.contains(&(r as u32)), "{} missing from its parent", role.name),
                None => assert!(!role.name.as_str().contains('/'), "{} has no parent", role.name),
            }
            if !self.order_dirty {
                let r = r as u32;
                assert_eq!(role.key.is_some(), role.has_offerable(), "key of role {}", role.name);
                if let Some(k) = role.key {
                    assert_eq!(k, self.role_key(r), "key of role {}", role.name);
                    let filed = match role.parent {
                        Some(p) => self.roles[p as usize].child_order.contains(&k),
                        None => self.role_order.contains(&k),
                    };
                    assert!(filed, "role {} missing from its siblings' order", role.name);
                }
                let own = role.child_order.iter().find(|k| k.3 == OWN_CLIENTS);
                let wanted = (!role.children.is_empty() && !role.order.is_empty()).then(|| self.own_clients_key(r));
                assert_eq!(own.copied(), wanted, "own clients of {}", role.name);
                assert_eq!(role.own_key, wanted, "own key of {}", role.name);
                for k in role.child_order.iter().filter(|k| k.3 != OWN_CLIENTS) {
                    assert_eq!(self.roles[k.3 as usize].key, Some(*k), "child entry of {}", role.name);
                }
            }
        }
        if !self.order_dirty {
            for k in self.role_order.iter() {
                assert_eq!(self.roles[k.3 as usize].parent, None);
                assert_eq!(self.roles[k.3 as usize].key, Some(*k));
            }
        }
        let with_quota = self.role_ix.values().filter(|&&r| self.roles[r as usize].has_quota()).count();
        assert_eq!(self.quota_roles, with_quota, "count of roles with quotas");
    }
}
