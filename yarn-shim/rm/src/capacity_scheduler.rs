//! Queues from a Hadoop administrator's `capacity-scheduler.xml`.
//!
//! The file's queue tree (`yarn.scheduler.capacity.<path>.queues`) becomes
//! the shim's queues: its leaves are the queues applications are submitted
//! to (YARN's leaf names are unique, and so are ours), each a broker role
//! weighted by its absolute capacity (the product of the capacities on its
//! path), so that weighted DRF shares the pool as the capacities say.
//!
//! Read per queue: `capacity`, `maximum-capacity`, `state` (a child of a
//! STOPPED queue is stopped), `user-limit-factor`,
//! `minimum-user-limit-percent`, `ordering-policy`, `maximum-applications`,
//! `maximum-am-resource-percent`, `acl_submit_applications`,
//! `acl_administer_queue`; and the global `maximum-applications`,
//! `maximum-am-resource-percent` and `queue-mappings` (`u:` and `g:`
//! rules). Hadoop's checks are kept: siblings' capacities add up to 100,
//! a maximum is at least the capacity, leaf names are unique. Every other
//! key is reported by name with its file and line (`unsupported`), never
//! silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use weir_conf::hadoop_xml::Property;
use weir_model::Milli;

pub const PREFIX: &str = "yarn.scheduler.capacity.";
pub const ROOT: &str = "root";
/// Hadoop's default for `maximum-applications`.
const DEFAULT_MAX_APPLICATIONS: u32 = 10_000;
const DEFAULT_MAX_AM_PERCENT: f64 = 0.1;
/// The most queues one file may declare.
pub const MAX_QUEUES: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    Running,
    Stopped,
}

/// One queue of the tree, its figures as fractions (Hadoop writes
/// percentages).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConf {
    /// `root.eng.analytics`.
    pub path: String,
    /// The last part of the path.
    pub name: String,
    /// Share of the parent (0..=1).
    pub capacity: f64,
    pub maximum_capacity: f64,
    /// Share of the whole cluster: the capacities multiplied down the path.
    pub absolute_capacity: f64,
    pub absolute_maximum_capacity: f64,
    /// Its own state, or STOPPED if a queue above it is.
    pub state: QueueState,
    /// How far one user may go beyond the queue's capacity
    /// (`user-limit-factor`: 1 is the capacity; None: no user limit, as in
    /// a fair-scheduler.xml).
    pub user_limit_factor: Option<f64>,
    /// The least share each of the queue's active users is held to
    /// (`minimum-user-limit-percent`, 1..=100: 25 lets four users share
    /// the queue evenly before a fifth waits).
    pub minimum_user_limit_percent: f64,
    /// Serve the leaf's applications by least use first (`ordering-policy`
    /// `fair`, the Fair Scheduler's `fair` and `drf`) rather than in
    /// submission order (`fifo`).
    pub fair_ordering: bool,
    /// Applications it holds at once (running and waiting).
    pub maximum_applications: u32,
    pub maximum_am_resource_percent: f64,
    pub acl_submit_applications: String,
    pub acl_administer_queue: String,
    /// Child paths; empty for a leaf.
    pub children: Vec<String>,
    /// A fair-scheduler.xml's `minResources` and `maxResources` (None in a
    /// capacity-scheduler.xml, whose capacities say it instead).
    pub min_resources: Option<Bound>,
    pub max_resources: Option<Bound>,
}

/// Resources of a queue, as amounts or as shares of the cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Absolute(Amounts),
    Share { cpus: f64, mem: f64 },
}

impl Bound {
    /// What it comes to in a cluster of `cluster`, at most the cluster.
    /// `zero_is_unbounded`: a kind given as 0 is the whole cluster (a
    /// maximum of `90000 mb, 0 vcores`, as Hadoop's own example writes, is
    /// no limit on cpus).
    pub fn of(self, cluster: Amounts, zero_is_unbounded: bool) -> Amounts {
        let pick = |m: Milli, total: Milli| if zero_is_unbounded && m.is_zero() { total } else { m.min(total) };
        match self {
            Bound::Absolute(a) => Amounts { cpus: pick(a.cpus, cluster.cpus), mem: pick(a.mem, cluster.mem) },
            Bound::Share { cpus, mem } => {
                let a = Amounts { cpus: cluster.scaled(cpus).cpus, mem: cluster.scaled(mem).mem };
                Amounts { cpus: pick(a.cpus, cluster.cpus), mem: pick(a.mem, cluster.mem) }
            }
        }
    }
}

/// Which file a queue tree came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A capacity-scheduler.xml: capacities are shares, guarantees and
    /// limits.
    Capacity,
    /// A fair-scheduler.xml: weights are shares, minResources guarantees
    /// and maxResources limits.
    Fair,
}

impl QueueConf {
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
}

/// `u:user:queue` / `g:group:queue` (`%user` and `%primary_group` allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMapping {
    pub group: bool,
    pub source: String,
    pub queue: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapacityScheduler {
    /// Every queue, root first, parents before their children.
    pub queues: Vec<QueueConf>,
    pub mappings: Vec<QueueMapping>,
    /// A fair-scheduler.xml's `queuePlacementPolicy` (empty: the queue the
    /// application names, else `default`).
    pub placement: Vec<PlacementRule>,
    /// A fair-scheduler.xml's queue weights, by path (parents too), so
    /// that a queue placement creates can be weighed in beside them.
    pub weights: BTreeMap<String, f64>,
    /// Keys read but not acted on, as `file:line: key (why)`.
    pub unsupported: Vec<String>,
    pub source: Source,
    /// How queues are measured (`resource-calculator`): memory only
    /// (Hadoop's DefaultResourceCalculator, the default) or memory and
    /// cpus (DominantResourceCalculator). A fair-scheduler.xml's bounds
    /// name their kinds themselves.
    pub memory_only: bool,
}

/// The file's keys, and those read so far (the rest are reported).
struct Keys<'a> {
    keys: BTreeMap<&'a str, &'a Property>,
    used: Vec<&'a str>,
}

impl<'a> Keys<'a> {
    fn read(&mut self, key: &str) -> Option<&'a Property> {
        let p = self.keys.get(key).copied()?;
        self.used.push(p.name.as_str());
        Some(p)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error("{0}")]
    Conf(String),
    #[error("{at}: {key}: {message}")]
    Value { at: String, key: String, message: String },
    #[error("{0}")]
    Tree(String),
}

impl CapacityScheduler {
    /// Reads a `capacity-scheduler.xml` (with its includes), or a
    /// `fair-scheduler.xml` (an `<allocations>` file, see
    /// [`crate::fair_scheduler`]).
    pub fn load(path: &Path) -> Result<CapacityScheduler, CapacityError> {
        let bytes = crate::fair_scheduler::read_bounded(path)?;
        if crate::fair_scheduler::is_allocation_file(&bytes) {
            return crate::fair_scheduler::parse(&bytes, path);
        }
        let props = weir_conf::hadoop_xml::parse_hadoop_file(path).map_err(|e| CapacityError::Conf(e.to_string()))?;
        CapacityScheduler::from_properties(&props)
    }

    pub fn from_properties(props: &[Property]) -> Result<CapacityScheduler, CapacityError> {
        // The last definition of a key wins, as in Hadoop.
        let mut k = Keys { keys: BTreeMap::new(), used: Vec::new() };
        for p in props {
            k.keys.insert(p.name.as_str(), p);
        }
        let at = |p: &Property| format!("{}:{}", p.file.display(), p.line);
        let number = |p: &Property, lo: f64, hi: f64| -> Result<f64, CapacityError> {
            let v: f64 = p.value.trim().parse().map_err(|_| CapacityError::Value {
                at: at(p),
                key: p.name.clone(),
                message: format!("{:?} is not a number", p.value.trim()),
            })?;
            if !v.is_finite() || v < lo || v > hi {
                return Err(CapacityError::Value { at: at(p), key: p.name.clone(), message: format!("{v} is not within {lo}..={hi}") });
            }
            Ok(v)
        };

        let global_max_apps = match k.read(&format!("{PREFIX}maximum-applications")) {
            Some(p) => number(p, 0.0, f64::from(u32::MAX))? as u32,
            None => DEFAULT_MAX_APPLICATIONS,
        };
        let global_am = match k.read(&format!("{PREFIX}maximum-am-resource-percent")) {
            Some(p) => number(p, 0.0, 1.0)?,
            None => DEFAULT_MAX_AM_PERCENT,
        };

        let mut queues: Vec<QueueConf> = Vec::new();
        // (path, parent's absolute capacity and maximum, parent stopped)
        let mut todo: Vec<(String, f64, f64, bool)> = vec![(ROOT.to_owned(), 1.0, 1.0, false)];
        while let Some((path, parent_abs, parent_abs_max, parent_stopped)) = todo.pop() {
            if queues.len() >= MAX_QUEUES {
                return Err(CapacityError::Tree(format!("more than {MAX_QUEUES} queues")));
            }
            let key = |attr: &str| format!("{PREFIX}{path}.{attr}");
            let children: Vec<String> = match k.read(&key("queues")) {
                Some(p) => {
                    let mut names = Vec::new();
                    for name in p.value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let ok = name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        if !ok || name == ROOT {
                            return Err(CapacityError::Value { at: at(p), key: p.name.clone(), message: format!("{name:?} is not a queue name") });
                        }
                        if names.iter().any(|n| n == name) {
                            return Err(CapacityError::Value { at: at(p), key: p.name.clone(), message: format!("queue {name:?} is listed twice") });
                        }
                        names.push(name.to_owned());
                    }
                    names.into_iter().map(|n| format!("{path}.{n}")).collect()
                }
                None => Vec::new(),
            };
            let is_root = path == ROOT;
            let capacity = match k.read(&key("capacity")) {
                Some(p) => number(p, 0.0, 100.0)? / 100.0,
                None if is_root => 1.0,
                None => return Err(CapacityError::Tree(format!("queue {path} has no capacity ({})", key("capacity")))),
            };
            let maximum_capacity = match k.read(&key("maximum-capacity")) {
                // Hadoop's -1: no maximum below the parent's.
                Some(p) if p.value.trim() == "-1" => 1.0,
                Some(p) => {
                    let m = number(p, 0.0, 100.0)? / 100.0;
                    if m + 1e-9 < capacity {
                        return Err(CapacityError::Value {
                            at: at(p),
                            key: p.name.clone(),
                            message: format!("maximum {} is below the capacity {}", m * 100.0, capacity * 100.0),
                        });
                    }
                    m
                }
                None => 1.0,
            };
            let state = match k.read(&key("state")) {
                Some(p) => match p.value.trim() {
                    "RUNNING" => QueueState::Running,
                    "STOPPED" => QueueState::Stopped,
                    other => {
                        return Err(CapacityError::Value { at: at(p), key: p.name.clone(), message: format!("{other:?} is neither RUNNING nor STOPPED") })
                    }
                },
                None => QueueState::Running,
            };
            let state = if parent_stopped { QueueState::Stopped } else { state };
            let user_limit_factor = match k.read(&key("user-limit-factor")) {
                Some(p) => number(p, 0.0, 1e6)?,
                None => 1.0,
            };
            let minimum_user_limit_percent = match k.read(&key("minimum-user-limit-percent")) {
                Some(p) => number(p, 1.0, 100.0)?,
                None => 100.0,
            };
            let fair_ordering = match k.read(&key("ordering-policy")) {
                Some(p) => match p.value.trim() {
                    "fifo" => false,
                    "fair" => true,
                    other => return Err(CapacityError::Value { at: at(p), key: p.name.clone(), message: format!("{other:?} is neither fifo nor fair") }),
                },
                None => false,
            };
            let absolute_capacity = if is_root { 1.0 } else { parent_abs * capacity };
            let maximum_applications = match k.read(&key("maximum-applications")) {
                Some(p) => number(p, 0.0, f64::from(u32::MAX))? as u32,
                // Hadoop: the global figure times the queue's absolute capacity.
                None => (f64::from(global_max_apps) * absolute_capacity) as u32,
            };
            let maximum_am_resource_percent = match k.read(&key("maximum-am-resource-percent")) {
                Some(p) => number(p, 0.0, 1.0)?,
                None => global_am,
            };
            // Hadoop's defaults: everyone at the root, no one else below it.
            // Untrimmed, as Hadoop reads ACLs: a leading space makes the
            // rest a group list.
            let acl = |p: Option<&Property>| p.map(|p| p.value.clone()).unwrap_or_else(|| if is_root { "*".to_owned() } else { " ".to_owned() });
            let acl_submit_applications = acl(k.read(&key("acl_submit_applications")));
            let acl_administer_queue = acl(k.read(&key("acl_administer_queue")));
            let name = path.rsplit('.').next().unwrap_or(&path).to_owned();
            let absolute_maximum_capacity = if is_root { 1.0 } else { parent_abs_max * maximum_capacity };
            for child in children.iter().rev() {
                todo.push((child.clone(), absolute_capacity, absolute_maximum_capacity, state == QueueState::Stopped));
            }
            queues.push(QueueConf {
                path,
                name,
                capacity,
                maximum_capacity,
                absolute_capacity,
                absolute_maximum_capacity,
                state,
                user_limit_factor: Some(user_limit_factor),
                minimum_user_limit_percent,
                fair_ordering,
                maximum_applications,
                maximum_am_resource_percent,
                acl_submit_applications,
                acl_administer_queue,
                children,
                min_resources: None,
                max_resources: None,
            });
        }

        // Hadoop's checks on the tree.
        for parent in queues.iter().filter(|q| !q.is_leaf()) {
            let sum: f64 = queues.iter().filter(|q| parent.children.contains(&q.path)).map(|q| q.capacity * 100.0).sum();
            if (sum - 100.0).abs() > 1e-3 && sum > 0.0 {
                return Err(CapacityError::Tree(format!("the capacities of {}'s children add up to {sum}, not 100", parent.path)));
            }
        }
        let mut leaves: BTreeMap<&str, &str> = BTreeMap::new();
        for leaf in queues.iter().filter(|q| q.is_leaf()) {
            if let Some(other) = leaves.insert(&leaf.name, &leaf.path) {
                return Err(CapacityError::Tree(format!("leaf queue name {} is used twice ({other} and {})", leaf.name, leaf.path)));
            }
        }
        if queues.len() == 1 {
            return Err(CapacityError::Tree(format!("root has no queues ({PREFIX}root.queues)")));
        }

        let mut mappings = Vec::new();
        if let Some(p) = k.read(&format!("{PREFIX}queue-mappings")) {
            for rule in p.value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let parts: Vec<&str> = rule.split(':').collect();
                let bad = |why: &str| CapacityError::Value { at: at(p), key: p.name.clone(), message: format!("{rule:?}: {why}") };
                let [kind, source, queue] = parts[..] else { return Err(bad("a mapping is u:USER:QUEUE or g:GROUP:QUEUE")) };
                let group = match kind {
                    "u" => false,
                    "g" => true,
                    _ => return Err(bad("a mapping is u:USER:QUEUE or g:GROUP:QUEUE")),
                };
                let queue = queue.rsplit('.').next().unwrap_or(queue);
                let known = matches!(queue, "%user" | "%primary_group") || leaves.contains_key(queue);
                if !known {
                    return Err(bad(&format!("{queue} is not a leaf queue")));
                }
                mappings.push(QueueMapping { group, source: source.to_owned(), queue: queue.to_owned() });
            }
        }

        let memory_only = match k.read(&format!("{PREFIX}resource-calculator")) {
            None => true,
            Some(p) => match p.value.trim().rsplit('.').next().unwrap_or_default() {
                "DefaultResourceCalculator" => true,
                "DominantResourceCalculator" => false,
                other => {
                    return Err(CapacityError::Value {
                        at: at(p),
                        key: p.name.clone(),
                        message: format!("{other:?} is neither DefaultResourceCalculator nor DominantResourceCalculator"),
                    })
                }
            },
        };

        let mut unsupported = Vec::new();
        for p in props {
            if !k.used.contains(&p.name.as_str()) {
                let why = if p.name.starts_with(PREFIX) { "not supported by Weir; ignored" } else { "not a capacity-scheduler key; ignored" };
                unsupported.push(format!("{}: {} ({why})", at(p), p.name));
            }
        }
        Ok(CapacityScheduler { queues, mappings, placement: Vec::new(), weights: BTreeMap::new(), unsupported, source: Source::Capacity, memory_only })
    }

    pub fn leaves(&self) -> impl Iterator<Item = &QueueConf> {
        self.queues.iter().filter(|q| q.is_leaf())
    }

    pub fn queue(&self, path_or_name: &str) -> Option<&QueueConf> {
        self.queues.iter().find(|q| q.path == path_or_name || (q.is_leaf() && q.name == path_or_name))
    }

    /// The leaf a submission lands in: the first mapping that matches the
    /// user or one of `groups` (the primary group first), if any; else the
    /// queue asked for.
    pub fn mapped_queue(&self, user: &str, groups: &[String], asked: &str) -> String {
        for m in &self.mappings {
            let matches = if m.group { groups.iter().any(|g| *g == m.source) } else { m.source == user || m.source == "%user" };
            if matches {
                return match m.queue.as_str() {
                    "%user" => user.to_owned(),
                    "%primary_group" => groups.first().cloned().unwrap_or_else(|| asked.to_owned()),
                    q => q.to_owned(),
                };
            }
        }
        asked.to_owned()
    }

    /// The broker roles the shim subscribes in: one per leaf queue.
    pub fn roles(&self) -> Vec<String> {
        self.leaves().map(|q| role_of(&q.path)).collect()
    }

    /// What the shim asks the broker for every queue's role below root,
    /// parents first, for a cluster of `cluster` (the reachable agents'
    /// total):
    ///
    /// - weight: the queue's capacity, in percent of its parent, so that
    ///   DRF among siblings at each level of the role tree shares as the
    ///   capacities say (a queue of capacity 0 weighs the least a role may);
    /// - limit: its absolute maximum capacity of the cluster, when below
    ///   the whole (YARN's hard `maximum-capacity`), or a fair-scheduler's
    ///   `maxResources`;
    /// - guarantee (only with `preemption`, as YARN enforces capacities
    ///   only when its preemption monitor is on, and only for a queue with
    ///   an application in it or below it, `busy`: an idle queue's
    ///   capacity is for the others to use, as in YARN, and the broker
    ///   would otherwise keep it free): its capacity of its parent's
    ///   guarantee, the root's being the cluster. Taken down the tree,
    ///   rounded down, so that siblings never add up to more than their
    ///   parent. From a fair-scheduler.xml: its `minResources`.
    pub fn policies(&self, cluster: Amounts, preemption: bool, busy: &dyn Fn(&str) -> bool) -> Vec<QueuePolicy> {
        let busy_below = |q: &QueueConf| self.leaves().any(|leaf| (leaf.path == q.path || leaf.path.starts_with(&format!("{}.", q.path))) && busy(&leaf.name));
        let mut guarantees: BTreeMap<&str, Amounts> = BTreeMap::from([(ROOT, cluster)]);
        let mut out = Vec::new();
        for parent in &self.queues {
            let siblings: Vec<&QueueConf> = self.queues.iter().filter(|q| parent.children.contains(&q.path)).collect();
            let sum: f64 = siblings.iter().map(|q| q.capacity).sum::<f64>().max(1.0);
            let above = guarantees.get(parent.path.as_str()).copied().unwrap_or_default();
            for q in siblings {
                let guarantee = match self.source {
                    Source::Capacity => above.scaled(q.capacity / sum),
                    Source::Fair => q.min_resources.map(|b| b.of(cluster, false)).unwrap_or_default(),
                };
                guarantees.insert(&q.path, guarantee);
                let limit = match self.source {
                    Source::Capacity => (q.absolute_maximum_capacity < 1.0 - 1e-9).then(|| cluster.scaled(q.absolute_maximum_capacity)),
                    Source::Fair => q.max_resources.map(|b| b.of(cluster, true)),
                };
                out.push(QueuePolicy {
                    role: role_of(&q.path),
                    weight: ((q.capacity * 100.0 * 1e6).round() / 1e6).max(0.01),
                    guarantee: (preemption && guarantee != Amounts::default() && busy_below(q)).then_some(guarantee),
                    limit,
                    memory_only: self.memory_only,
                });
            }
        }
        // Parents first: the order the queue list keeps.
        let order: BTreeMap<String, usize> = self.queues.iter().enumerate().map(|(i, q)| (role_of(&q.path), i)).collect();
        out.sort_by_key(|p| order.get(&p.role).copied().unwrap_or(usize::MAX));
        out
    }
}

impl CapacityScheduler {
    /// What the scheduler holds each leaf's applications to in a cluster
    /// of `cluster` ([`LeafRules`]): the AM limit, the users' limit and the
    /// order applications are served in.
    pub fn leaf_rules(&self, cluster: Amounts) -> BTreeMap<String, LeafRules> {
        self.leaves()
            .map(|q| {
                // YARN's LeafQueue for a busy cluster: the AMs' share of
                // the queue's capacity (YARN lets it grow with the queue's
                // use beyond its capacity; this one does not). A negative
                // share (the Fair Scheduler's -1) is no limit.
                let am_mb = (q.maximum_am_resource_percent >= 0.0)
                    .then(|| (cluster.mem.as_f64() * q.absolute_capacity * q.maximum_am_resource_percent).floor() as i64);
                let users = q.user_limit_factor.map(|factor| {
                    let capacity = cluster.scaled(q.absolute_capacity);
                    let maximum = cluster.scaled(q.absolute_maximum_capacity);
                    let by_factor = capacity.times(factor);
                    UserLimit {
                        capacity,
                        ceiling: Amounts { cpus: by_factor.cpus.min(maximum.cpus), mem: by_factor.mem.min(maximum.mem) },
                        minimum_percent: q.minimum_user_limit_percent,
                        cluster,
                        memory_only: self.memory_only,
                    }
                });
                (q.name.clone(), LeafRules { am_mb, users, fair_ordering: q.fair_ordering })
            })
            .collect()
    }
}

/// What one leaf queue's applications are held to, for a cluster of a
/// given size.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LeafRules {
    /// Memory (MB) the queue's AMs may hold together
    /// (`maximum-am-resource-percent` of its capacity); None: no limit.
    /// One AM always runs, whatever its size.
    pub am_mb: Option<i64>,
    /// The most one user may hold in the queue; None: no limit.
    pub users: Option<UserLimit>,
    /// Least use first (`fair`) rather than submission order (`fifo`).
    pub fair_ordering: bool,
}

/// One user's limit in a leaf queue, as YARN's capacity scheduler works
/// it out (`UsersManager.computeUserLimit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserLimit {
    /// The queue's capacity in the cluster's figures.
    pub capacity: Amounts,
    /// The most any user may hold: the capacity times
    /// `user-limit-factor`, at most the queue's maximum capacity.
    pub ceiling: Amounts,
    /// `minimum-user-limit-percent`.
    pub minimum_percent: f64,
    pub cluster: Amounts,
    /// How amounts compare: memory alone, or by dominant share.
    pub memory_only: bool,
}

impl UserLimit {
    /// Each user's limit while the queue holds `queue_used` and a user
    /// asks for `required` more, `active_users` of them asking: the
    /// queue's current capacity (its capacity while it is within it, else
    /// what it holds plus the ask) shared evenly among the active users
    /// but never below `minimum-user-limit-percent` of it, and never above
    /// the ceiling. Worked out kind by kind.
    pub fn limit(&self, queue_used: Amounts, required: Amounts, active_users: usize) -> Amounts {
        let current = if self.less(queue_used, self.capacity) {
            self.capacity
        } else {
            queue_used.plus(required)
        };
        let users = active_users.max(1) as u64;
        let even = Amounts { cpus: Milli(current.cpus.0.div_ceil(users)), mem: Milli(current.mem.0.div_ceil(users)) };
        let least = current.times(self.minimum_percent / 100.0);
        Amounts { cpus: even.cpus.max(least.cpus).min(self.ceiling.cpus), mem: even.mem.max(least.mem).min(self.ceiling.mem) }
    }

    /// Whether `used` is over `limit` as the queue's resource calculator
    /// compares: memory alone, or the dominant shares of the cluster. A
    /// user may take a container while not over (so the last may go past
    /// the limit by up to one container), as in YARN.
    pub fn over(&self, used: Amounts, limit: Amounts) -> bool {
        if self.memory_only {
            used.mem > limit.mem
        } else {
            self.dominant(used) > self.dominant(limit) + 1e-12
        }
    }

    fn less(&self, a: Amounts, b: Amounts) -> bool {
        if self.memory_only {
            a.mem < b.mem
        } else {
            self.dominant(a) + 1e-12 < self.dominant(b)
        }
    }

    fn dominant(&self, a: Amounts) -> f64 {
        let share = |x: Milli, total: Milli| if total.is_zero() { 0.0 } else { x.as_f64() / total.as_f64() };
        share(a.cpus, self.cluster.cpus).max(share(a.mem, self.cluster.mem))
    }
}

/// One rule of a Fair Scheduler `queuePlacementPolicy`, tried in order
/// until one places the application (Hadoop 3.2's rules).
#[derive(Debug, Clone, PartialEq)]
pub enum PlacementRule {
    /// The queue the application names (not `default`).
    Specified { create: bool },
    /// `root.<user>`.
    User { create: bool },
    /// `root.<primary group>`.
    PrimaryGroup { create: bool },
    /// `root.<group>` for the first secondary group with such a queue.
    SecondaryGroupExistingQueue,
    /// `<the inner rule's queue>.<user>`.
    NestedUserQueue { parent: Box<PlacementRule>, create: bool },
    /// The rule's `queue` (`root.default` if none).
    Default { queue: String, create: bool },
    Reject,
}

impl PlacementRule {
    /// Whether the rule places every application (nothing after it is
    /// ever tried).
    pub fn is_terminal(&self) -> bool {
        match self {
            PlacementRule::User { create } | PlacementRule::PrimaryGroup { create } => *create,
            PlacementRule::Default { .. } | PlacementRule::Reject => true,
            // The parent it names may be a leaf, which holds no queues.
            PlacementRule::NestedUserQueue { .. } | PlacementRule::Specified { .. } | PlacementRule::SecondaryGroupExistingQueue => false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            PlacementRule::Specified { .. } => "specified",
            PlacementRule::User { .. } => "user",
            PlacementRule::PrimaryGroup { .. } => "primaryGroup",
            PlacementRule::SecondaryGroupExistingQueue => "secondaryGroupExistingQueue",
            PlacementRule::NestedUserQueue { .. } => "nestedUserQueue",
            PlacementRule::Default { .. } => "default",
            PlacementRule::Reject => "reject",
        }
    }
}

/// Where a submission goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    /// An existing leaf, by name.
    Queue(String),
    /// A leaf to create first (a placement rule with `create`): its path.
    Create(String),
}

/// A name as the Fair Scheduler puts it in a queue path: dots would be
/// levels, so they become `_dot_`.
fn queue_part(name: &str) -> String {
    name.trim().replace('.', "_dot_")
}

impl CapacityScheduler {
    /// Where a submission by `user` (of `groups`, primary first) naming
    /// `asked` goes: by the placement policy when the file has one, else
    /// by the queue mappings (applications sent to `default`). Err: the
    /// policy rejects it (Hadoop's words).
    pub fn place(&self, user: &str, groups: &[String], asked: &str) -> Result<Placed, String> {
        let asked = asked.trim();
        let asked = asked.strip_prefix("root.").unwrap_or(asked);
        if self.placement.is_empty() {
            let queue = if asked.is_empty() || asked == "default" { self.mapped_queue(user, groups, "default") } else { asked.to_owned() };
            return Ok(Placed::Queue(queue));
        }
        for rule in &self.placement {
            if matches!(rule, PlacementRule::Reject) {
                break;
            }
            if let Some(placed) = self.apply(rule, user, groups, asked) {
                return Ok(placed);
            }
        }
        Err(format!("Application rejected by queue placement policy: no rule placed the application of user {user} (queue asked: {})", if asked.is_empty() { "none" } else { asked }))
    }

    /// What one rule makes of a submission: a queue, or None (the next
    /// rule is tried).
    fn apply(&self, rule: &PlacementRule, user: &str, groups: &[String], asked: &str) -> Option<Placed> {
        let at = |path: String, create: bool| self.leaf_or_create(&path, create);
        match rule {
            PlacementRule::Specified { create } => {
                if asked.is_empty() || asked == "default" {
                    return None;
                }
                // A leaf's own name will do, as everywhere in Weir (leaf
                // names are unique); else a path below root.
                match self.queue(asked) {
                    Some(q) if q.is_leaf() => Some(Placed::Queue(q.name.clone())),
                    _ => at(format!("{ROOT}.{asked}"), *create),
                }
            }
            PlacementRule::User { create } => at(format!("{ROOT}.{}", queue_part(user)), *create),
            PlacementRule::PrimaryGroup { create } => at(format!("{ROOT}.{}", queue_part(groups.first()?)), *create),
            PlacementRule::SecondaryGroupExistingQueue => {
                groups.iter().skip(1).find_map(|g| self.leaf_or_create(&format!("{ROOT}.{}", queue_part(g)), false))
            }
            PlacementRule::NestedUserQueue { parent, create } => {
                // The inner rule names the parent: an existing parent
                // queue, or (with its own create) a new one; a leaf holds
                // no queues.
                let parent_path = self.apply_parent(parent, user, groups, asked)?;
                if self.queues.iter().any(|q| q.path == parent_path && q.is_leaf()) {
                    return None;
                }
                at(format!("{parent_path}.{}", queue_part(user)), *create)
            }
            PlacementRule::Default { queue, create } => {
                let q = queue.strip_prefix("root.").unwrap_or(queue);
                at(format!("{ROOT}.{q}"), *create)
            }
            PlacementRule::Reject => None,
        }
    }

    /// The path the inner rule of a nestedUserQueue names as the parent
    /// (it must exist or be creatable by that rule).
    fn apply_parent(&self, rule: &PlacementRule, user: &str, groups: &[String], asked: &str) -> Option<String> {
        let (path, create) = match rule {
            PlacementRule::Specified { create } if !asked.is_empty() && asked != "default" => (format!("{ROOT}.{asked}"), *create),
            PlacementRule::User { create } => (format!("{ROOT}.{}", queue_part(user)), *create),
            PlacementRule::PrimaryGroup { create } => (format!("{ROOT}.{}", queue_part(groups.first()?)), *create),
            PlacementRule::SecondaryGroupExistingQueue => {
                return groups.iter().skip(1).map(|g| format!("{ROOT}.{}", queue_part(g))).find(|p| self.queues.iter().any(|q| q.path == *p));
            }
            PlacementRule::Default { queue, create } => (format!("{ROOT}.{}", queue.strip_prefix("root.").unwrap_or(queue)), *create),
            _ => return None,
        };
        (self.queues.iter().any(|q| q.path == path) || create).then_some(path)
    }

    /// `path` if it is a leaf; a leaf to create if it does not exist and
    /// `create` allows (and its parent, if it exists, is not a leaf with
    /// applications' name); None otherwise (a parent queue takes no
    /// applications).
    fn leaf_or_create(&self, path: &str, create: bool) -> Option<Placed> {
        match self.queues.iter().find(|q| q.path == path) {
            Some(q) if q.is_leaf() => Some(Placed::Queue(q.name.clone())),
            Some(_) => None,
            None => {
                let name = path.rsplit('.').next().unwrap_or(path);
                let valid = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                (create && valid && self.queue(name).is_none()).then(|| Placed::Create(path.to_owned()))
            }
        }
    }

    /// Whether placing submissions needs the user's groups.
    pub fn needs_groups(&self) -> bool {
        !self.mappings.is_empty() || !self.placement.is_empty()
    }

    /// This tree with a new leaf at `path` (and any parents it needs),
    /// weighted 1 beside its siblings as the Fair Scheduler weighs the
    /// queues it creates; the siblings' shares are worked out anew.
    pub fn with_leaf(&self, path: &str) -> Result<CapacityScheduler, CapacityError> {
        if self.queues.len() + path.matches('.').count() > MAX_QUEUES {
            return Err(CapacityError::Tree(format!("more than {MAX_QUEUES} queues")));
        }
        let mut next = self.clone();
        let parts: Vec<&str> = path.split('.').collect();
        if parts.first() != Some(&ROOT) || parts.len() < 2 {
            return Err(CapacityError::Tree(format!("{path} is not a queue path below root")));
        }
        let mut made: Option<String> = None;
        for depth in 2..=parts.len() {
            let (here, parent) = (parts[..depth].join("."), parts[..depth - 1].join("."));
            if next.queues.iter().any(|q| q.path == here) {
                continue;
            }
            let Some(p) = next.queues.iter().position(|q| q.path == parent) else { unreachable!("parents are made first") };
            let new_parent = made.as_deref() == Some(parent.as_str());
            if next.queues[p].is_leaf() && next.queues[p].path != ROOT && !new_parent {
                return Err(CapacityError::Tree(format!("{parent} is a leaf queue: it cannot hold {here}")));
            }
            let mut leaf = next.queues[p].clone();
            leaf.name = parts[depth - 1].to_owned();
            leaf.path = here.clone();
            leaf.children = Vec::new();
            leaf.min_resources = None;
            leaf.max_resources = None;
            next.queues[p].children.push(here.clone());
            // After its parent's other descendants: parents stay before children.
            let at = next.queues.iter().rposition(|q| q.path == parent || q.path.starts_with(&format!("{parent}."))).map_or(next.queues.len(), |i| i + 1);
            next.queues.insert(at, leaf);
            next.weights.insert(here.clone(), 1.0);
            made = Some(here);
        }
        next.reshare();
        Ok(next)
    }

    /// Each queue's share of its parent from the weights (a queue with no
    /// weight recorded keeps its share as its weight), and the absolute
    /// shares down the tree.
    fn reshare(&mut self) {
        let weight_of = |q: &QueueConf, weights: &BTreeMap<String, f64>| weights.get(&q.path).copied().unwrap_or(q.capacity);
        let mut absolute: BTreeMap<String, f64> = BTreeMap::from([(ROOT.to_owned(), 1.0)]);
        for i in 0..self.queues.len() {
            let children = self.queues[i].children.clone();
            let sum: f64 = self.queues.iter().filter(|q| children.contains(&q.path)).map(|q| weight_of(q, &self.weights)).sum();
            let above = absolute.get(&self.queues[i].path).copied().unwrap_or(1.0);
            let weights = self.weights.clone();
            for q in self.queues.iter_mut().filter(|q| children.contains(&q.path)) {
                q.capacity = if sum > 0.0 { weight_of(q, &weights) / sum } else { 0.0 };
                q.absolute_capacity = above * q.capacity;
                absolute.insert(q.path.clone(), q.absolute_capacity);
            }
        }
    }
}

/// A queue's broker role: its path below root with `/` between the parts
/// (`root.eng.analytics` → `eng/analytics`), so that the queue tree is the
/// broker's role tree.
pub fn role_of(path: &str) -> String {
    path.strip_prefix("root.").unwrap_or(path).replace('.', "/")
}

/// The queue a broker role stands for: its last part (leaf names are
/// unique, so `eng/analytics` is the queue `analytics`).
pub fn queue_of(role: &str) -> &str {
    role.rsplit('/').next().unwrap_or(role)
}

/// Cpus and memory (MiB), the two kinds a YARN queue is measured in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub cpus: Milli,
    pub mem: Milli,
}

impl Amounts {
    /// `fraction` of these, rounded down to a thousandth.
    pub fn scaled(self, fraction: f64) -> Amounts {
        let f = fraction.clamp(0.0, 1.0);
        let scale = |m: Milli| Milli(((m.0 as f64) * f).floor() as u64).min(m);
        Amounts { cpus: scale(self.cpus), mem: scale(self.mem) }
    }

    /// Times `factor`, which may be above 1 (rounded down).
    pub fn times(self, factor: f64) -> Amounts {
        let f = if factor.is_finite() { factor.max(0.0) } else { 0.0 };
        let scale = |m: Milli| Milli(((m.0 as f64) * f).floor().min(u64::MAX as f64) as u64);
        Amounts { cpus: scale(self.cpus), mem: scale(self.mem) }
    }

    pub fn plus(self, other: Amounts) -> Amounts {
        Amounts { cpus: Milli(self.cpus.0.saturating_add(other.cpus.0)), mem: Milli(self.mem.0.saturating_add(other.mem.0)) }
    }
}

/// One queue's role at the broker: weight, and quota from the capacities.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePolicy {
    pub role: String,
    pub weight: f64,
    pub guarantee: Option<Amounts>,
    pub limit: Option<Amounts>,
    /// The quota is on memory alone (YARN's DefaultResourceCalculator):
    /// its cpus are neither guaranteed nor limited.
    pub memory_only: bool,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Properties of a capacity-scheduler.xml, one per line in order
    /// (`yarn.scheduler.capacity.` added unless the key starts with `yarn.`).
    pub(crate) fn props(pairs: &[(&str, &str)]) -> Vec<Property> {
        pairs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Property {
                name: if k.starts_with("yarn.") { (*k).to_owned() } else { format!("{PREFIX}{k}") },
                value: (*v).to_owned(),
                is_final: false,
                file: "capacity-scheduler.xml".into(),
                line: i as u64 + 1,
            })
            .collect()
    }

    /// Hadoop 3.2.1's `etc/hadoop/capacity-scheduler.xml`, key by key.
    fn stock() -> Vec<Property> {
        props(&[
            ("maximum-applications", "10000"),
            ("maximum-am-resource-percent", "0.1"),
            ("resource-calculator", "org.apache.hadoop.yarn.util.resource.DefaultResourceCalculator"),
            ("root.queues", "default"),
            ("root.default.capacity", "100"),
            ("root.default.user-limit-factor", "1"),
            ("root.default.maximum-capacity", "100"),
            ("root.default.state", "RUNNING"),
            ("root.default.acl_submit_applications", "*"),
            ("root.default.acl_administer_queue", "*"),
            ("root.default.acl_application_max_priority", "*"),
            ("root.default.maximum-application-lifetime", "-1"),
            ("root.default.default-application-lifetime", "-1"),
            ("node-locality-delay", "40"),
            ("rack-locality-additional-delay", "-1"),
            ("queue-mappings", ""),
            ("queue-mappings-override.enable", "false"),
            ("per-node-heartbeat.maximum-offswitch-assignments", "1"),
            ("application.fail-fast", "false"),
        ])
    }

    #[test]
    fn leaf_rules_are_the_am_percent_user_limits_and_order_of_each_leaf() {
        let cs = CapacityScheduler::from_properties(&props(&[
            ("root.queues", "a,b"),
            ("root.a.capacity", "25"),
            ("root.a.maximum-capacity", "50"),
            ("root.a.user-limit-factor", "4"),
            ("root.a.minimum-user-limit-percent", "25"),
            ("root.a.ordering-policy", "fair"),
            ("root.b.capacity", "75"),
            ("root.b.maximum-am-resource-percent", "0.5"),
        ]))
        .unwrap();
        assert!(cs.unsupported.is_empty(), "{:?}", cs.unsupported);
        let cluster = Amounts { cpus: Milli::from_units(8), mem: Milli::from_units(8192) };
        let rules = cs.leaf_rules(cluster);
        // a: 25 % of 8 GiB, 10 % of that (the default); b: 75 %, half.
        assert_eq!((rules["a"].am_mb, rules["b"].am_mb), (Some(204), Some(3072)));
        assert_eq!((rules["a"].fair_ordering, rules["b"].fair_ordering), (true, false));
        // a's users: 4 × its capacity, but no more than its maximum (50 %).
        let a = rules["a"].users.unwrap();
        assert_eq!((a.capacity.mem, a.ceiling.mem, a.ceiling.cpus, a.minimum_percent), (Milli::from_units(2048), Milli::from_units(4096), Milli::from_units(4), 25.0));
        // b's: Hadoop's defaults, factor 1 (its capacity).
        let b = rules["b"].users.unwrap();
        assert_eq!((b.ceiling.mem, b.minimum_percent, b.memory_only), (Milli::from_units(6144), 100.0, true));
        let bad = CapacityScheduler::from_properties(&props(&[("root.queues", "a"), ("root.a.capacity", "100"), ("root.a.ordering-policy", "lottery")]));
        assert!(bad.unwrap_err().to_string().contains("\"lottery\" is neither fifo nor fair"));
    }

    #[test]
    fn hadoops_stock_file_is_one_default_queue_and_its_other_keys_are_named() {
        let cs = CapacityScheduler::from_properties(&stock()).unwrap();
        let leaves: Vec<_> = cs.leaves().map(|q| q.path.as_str()).collect();
        assert_eq!(leaves, ["root.default"]);
        let d = cs.queue("default").unwrap();
        assert_eq!((d.capacity, d.absolute_capacity, d.maximum_capacity, d.state), (1.0, 1.0, 1.0, QueueState::Running));
        assert_eq!((d.maximum_applications, d.maximum_am_resource_percent, d.acl_submit_applications.as_str()), (10_000, 0.1, "*"));
        let cluster = Amounts { cpus: Milli(8000), mem: Milli(16_384_000) };
        assert_eq!(
            cs.policies(cluster, true, &|_| true),
            vec![QueuePolicy { role: "default".into(), weight: 100.0, guarantee: Some(cluster), limit: None, memory_only: true }]
        );
        assert_eq!(cs.roles(), ["default"]);
        let named: Vec<&str> = cs.unsupported.iter().map(|u| u.split(": ").nth(1).unwrap().split(' ').next().unwrap()).collect();
        assert_eq!(
            named,
            [
                "yarn.scheduler.capacity.root.default.acl_application_max_priority",
                "yarn.scheduler.capacity.root.default.maximum-application-lifetime",
                "yarn.scheduler.capacity.root.default.default-application-lifetime",
                "yarn.scheduler.capacity.node-locality-delay",
                "yarn.scheduler.capacity.rack-locality-additional-delay",
                "yarn.scheduler.capacity.queue-mappings-override.enable",
                "yarn.scheduler.capacity.per-node-heartbeat.maximum-offswitch-assignments",
                "yarn.scheduler.capacity.application.fail-fast",
            ]
        );
        assert_eq!(cs.unsupported[0], "capacity-scheduler.xml:11: yarn.scheduler.capacity.root.default.acl_application_max_priority (not supported by Weir; ignored)");
        assert!(cs.memory_only, "DefaultResourceCalculator measures memory only");
        let dominant = props(&[("root.queues", "a"), ("root.a.capacity", "100"), ("resource-calculator", "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator")]);
        assert!(!CapacityScheduler::from_properties(&dominant).unwrap().memory_only);
        let bad = props(&[("root.queues", "a"), ("root.a.capacity", "100"), ("resource-calculator", "x.Lottery")]);
        assert!(CapacityScheduler::from_properties(&bad).unwrap_err().to_string().contains("\"Lottery\" is neither DefaultResourceCalculator nor DominantResourceCalculator"));
    }

    fn nested() -> Vec<Property> {
        props(&[
            ("root.queues", "prod,eng"),
            ("root.prod.capacity", "60"),
            ("root.prod.maximum-capacity", "100"),
            ("root.eng.capacity", "40"),
            ("root.eng.maximum-capacity", "50"),
            ("root.eng.queues", "analytics,adhoc"),
            ("root.eng.analytics.capacity", "75"),
            ("root.eng.adhoc.capacity", "25"),
            ("root.eng.adhoc.state", "RUNNING"),
            ("root.eng.adhoc.maximum-applications", "3"),
            ("root.eng.state", "STOPPED"),
            ("queue-mappings", "u:alice:analytics,g:ops:prod,u:%user:%user"),
        ])
    }

    #[test]
    fn nested_queues_multiply_their_capacities_and_a_stopped_parent_stops_its_children() {
        let cs = CapacityScheduler::from_properties(&nested()).unwrap();
        let paths: Vec<_> = cs.queues.iter().map(|q| q.path.as_str()).collect();
        assert_eq!(paths, ["root", "root.prod", "root.eng", "root.eng.analytics", "root.eng.adhoc"]);
        let analytics = cs.queue("analytics").unwrap();
        assert!((analytics.absolute_capacity - 0.3).abs() < 1e-9);
        assert!((analytics.absolute_maximum_capacity - 0.5).abs() < 1e-9);
        assert_eq!(analytics.maximum_applications, 3000);
        assert_eq!(cs.queue("adhoc").unwrap().maximum_applications, 3);
        assert_eq!(cs.queue("adhoc").unwrap().state, QueueState::Stopped, "its parent is stopped");
        assert_eq!(cs.queue("prod").unwrap().state, QueueState::Running);
        assert_eq!(cs.roles(), ["prod", "eng/analytics", "eng/adhoc"]);
        assert_eq!(queue_of("eng/analytics"), "analytics");
        // Weights of the parent at each level; eng's maximum of 50 % is a
        // limit on eng and everything below it; guarantees only with
        // preemption, taken down the tree.
        let cluster = Amounts { cpus: Milli(10_000), mem: Milli(10_240_000) };
        let policies = cs.policies(cluster, false, &|_| true);
        let by_role: BTreeMap<&str, &QueuePolicy> = policies.iter().map(|p| (p.role.as_str(), p)).collect();
        let roles: Vec<&str> = policies.iter().map(|p| p.role.as_str()).collect();
        assert_eq!(roles, ["prod", "eng", "eng/analytics", "eng/adhoc"]);
        assert_eq!((by_role["prod"].weight, by_role["eng"].weight, by_role["eng/analytics"].weight, by_role["eng/adhoc"].weight), (60.0, 40.0, 75.0, 25.0));
        let half = Amounts { cpus: Milli(5_000), mem: Milli(5_120_000) };
        assert_eq!((by_role["eng"].limit, by_role["eng/analytics"].limit, by_role["prod"].limit), (Some(half), Some(half), None));
        assert!(policies.iter().all(|p| p.guarantee.is_none()));
        let policies = cs.policies(cluster, true, &|_| true);
        let g: BTreeMap<&str, Amounts> = policies.iter().map(|p| (p.role.as_str(), p.guarantee.unwrap())).collect();
        assert_eq!(g["prod"], Amounts { cpus: Milli(6_000), mem: Milli(6_144_000) });
        assert_eq!(g["eng"], Amounts { cpus: Milli(4_000), mem: Milli(4_096_000) });
        assert_eq!(g["eng/analytics"], Amounts { cpus: Milli(3_000), mem: Milli(3_072_000) });
        assert_eq!(g["eng/adhoc"], Amounts { cpus: Milli(1_000), mem: Milli(1_024_000) });
        // Only queues with applications (and those above them) hold a
        // guarantee: an idle queue's capacity is for the others.
        let policies = cs.policies(cluster, true, &|q| q == "analytics");
        let held: Vec<&str> = policies.iter().filter(|p| p.guarantee.is_some()).map(|p| p.role.as_str()).collect();
        assert_eq!(held, ["eng", "eng/analytics"]);
        assert!(cs.unsupported.is_empty(), "{:?}", cs.unsupported);
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(cs.mapped_queue("alice", &groups(&["staff"]), "default"), "analytics");
        assert_eq!(cs.mapped_queue("bob", &groups(&["staff", "ops"]), "default"), "prod");
        assert_eq!(cs.mapped_queue("carol", &groups(&["staff"]), "default"), "carol");
    }

    proptest::proptest! {
        /// Any mix of capacity keys over a few queue paths, with values
        /// good and bad: an answer, never a panic; and a tree it accepts
        /// keeps Hadoop's rules.
        #[test]
        fn any_file_is_read_or_refused_and_accepted_trees_add_up(
            entries in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["root", "root.a", "root.b", "root.a.x", "root.a.y", "root.c"]),
                    proptest::sample::select(vec!["queues", "capacity", "maximum-capacity", "state", "maximum-applications", "user-limit-factor", "bogus"]),
                    proptest::sample::select(vec!["a,b", "x,y", "c", "a", "", "50", "100", "0", "-1", "75", "25", "RUNNING", "STOPPED", "x", "1e309", "NaN", "-5"]),
                ),
                0..24,
            )
        ) {
            let props: Vec<(String, String)> = entries.iter().map(|(q, k, v)| (format!("{q}.{k}"), v.to_string())).collect();
            let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if let Ok(cs) = CapacityScheduler::from_properties(&super::tests::props(&props)) {
                proptest::prop_assert!(cs.leaves().count() >= 1);
                for parent in cs.queues.iter().filter(|q| !q.is_leaf()) {
                    let sum: f64 = cs.queues.iter().filter(|q| parent.children.contains(&q.path)).map(|q| q.capacity).sum();
                    proptest::prop_assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-5, "{} children sum {sum}", parent.path);
                }
                for q in &cs.queues {
                    proptest::prop_assert!((0.0..=1.0 + 1e-9).contains(&q.absolute_capacity) && q.maximum_capacity + 1e-9 >= q.capacity);
                }
                let cluster = Amounts { cpus: Milli(7_001), mem: Milli(12_345_678) };
                let policies = cs.policies(cluster, true, &|q| q.len() % 2 == 1);
                proptest::prop_assert!(policies.iter().all(|p| p.weight.is_finite() && p.weight > 0.0));
                // Guarantees nest: siblings never add up to more than their
                // parent (the broker refuses such a set), nor the top to more
                // than the cluster; a limit is never below the guarantee.
                let guarantee = |role: &str| policies.iter().find(|p| p.role == role).and_then(|p| p.guarantee).unwrap_or_default();
                for parent in &cs.queues {
                    let above = if parent.path == ROOT { cluster } else { guarantee(&role_of(&parent.path)) };
                    let kids = parent.children.iter().map(|c| guarantee(&role_of(c)));
                    let (cpus, mem) = kids.fold((0, 0), |(c, m), g| (c + g.cpus.0, m + g.mem.0));
                    proptest::prop_assert!(cpus <= above.cpus.0 && mem <= above.mem.0, "below {}: {cpus} {mem} > {above:?}", parent.path);
                }
                for p in &policies {
                    if let (Some(l), Some(g)) = (p.limit, p.guarantee) {
                        proptest::prop_assert!(l.cpus >= g.cpus && l.mem >= g.mem, "{p:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_files_say_which_key_and_line_and_why() {
        let err = |pairs: &[(&str, &str)]| CapacityScheduler::from_properties(&props(pairs)).unwrap_err().to_string();
        assert_eq!(err(&[("root.queues", "a,b"), ("root.a.capacity", "50"), ("root.b.capacity", "40")]), "the capacities of root's children add up to 90, not 100");
        assert_eq!(err(&[("root.queues", "a"), ("root.a.capacity", "lots")]), "capacity-scheduler.xml:2: yarn.scheduler.capacity.root.a.capacity: \"lots\" is not a number");
        assert_eq!(err(&[("root.queues", "a"), ("root.a.capacity", "100"), ("root.a.maximum-capacity", "50")]), "capacity-scheduler.xml:3: yarn.scheduler.capacity.root.a.maximum-capacity: maximum 50 is below the capacity 100");
        assert_eq!(err(&[("root.queues", "a")]), "queue root.a has no capacity (yarn.scheduler.capacity.root.a.capacity)");
        assert_eq!(err(&[("root.queues", "a"), ("root.a.capacity", "100"), ("root.a.state", "PAUSED")]), "capacity-scheduler.xml:3: yarn.scheduler.capacity.root.a.state: \"PAUSED\" is neither RUNNING nor STOPPED");
        assert_eq!(err(&[("root.queues", "a/b")]), "capacity-scheduler.xml:1: yarn.scheduler.capacity.root.queues: \"a/b\" is not a queue name");
        assert_eq!(
            err(&[("root.queues", "x,y"), ("root.x.capacity", "50"), ("root.y.capacity", "50"), ("root.x.queues", "q"), ("root.y.queues", "q"), ("root.x.q.capacity", "100"), ("root.y.q.capacity", "100")]),
            "leaf queue name q is used twice (root.x.q and root.y.q)"
        );
        assert_eq!(err(&[("maximum-applications", "10")]), "root has no queues (yarn.scheduler.capacity.root.queues)");
        assert!(err(&[("root.queues", "a"), ("root.a.capacity", "100"), ("queue-mappings", "u:bob")]).contains("a mapping is u:USER:QUEUE"));
        assert!(err(&[("root.queues", "a"), ("root.a.capacity", "100"), ("queue-mappings", "u:bob:nowhere")]).contains("nowhere is not a leaf queue"));
        // A cycle cannot be written (children are named under their parent),
        // but a huge tree is cut off.
        let many: Vec<(String, String)> = std::iter::once(("root.queues".to_owned(), (0..1200).map(|i| format!("q{i}")).collect::<Vec<_>>().join(",")))
            .chain((0..1200).map(|i| (format!("root.q{i}.capacity"), "0".to_owned())))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(err(&many), "more than 1000 queues");
    }
}
