//! The broker's `/state` document: what `weir status` shows and operators
//! scrape. Built from the books on demand; nothing here is kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use weir_model::{AgentState, AgentSummary, Milli, ResourceSet, Resources, Role};
use weir_proto::v1;

use super::{Agent, BrokerCore};

/// Resources as plain numbers, for people and scripts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResourcesDoc {
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    pub gpus: f64,
    /// Port ranges in the `[31000-31009,32000]` form; empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ports: String,
}

impl From<&Resources> for ResourcesDoc {
    fn from(r: &Resources) -> Self {
        ResourcesDoc {
            cpus: r.cpus.as_f64(),
            mem: r.mem.as_f64(),
            disk: r.disk.as_f64(),
            gpus: r.gpus.as_f64(),
            ports: if r.ports.is_empty() { String::new() } else { r.ports.to_string() },
        }
    }
}

impl From<&ResourceSet> for ResourcesDoc {
    fn from(r: &ResourceSet) -> Self {
        ResourcesDoc::from(&r.total())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateDoc {
    pub broker: BrokerDoc,
    pub totals: TotalsDoc,
    pub agents: Vec<AgentDoc>,
    pub frameworks: Vec<FrameworkDoc>,
    pub roles: Vec<RoleDoc>,
    /// The allocation policy and the guarantees' standing.
    #[serde(default)]
    pub allocation: AllocationDoc,
    pub tasks: Vec<TaskDoc>,
    pub completed_tasks: Vec<TaskDoc>,
    /// The latest resource operations (RESERVE, CREATE…), newest first.
    #[serde(default)]
    pub operations: Vec<OperationDoc>,
    /// Reservations and volumes the registry holds for agents the books do
    /// not (yet) hold: awaited after a failover or restart, or removed
    /// after their re-register timeout. Their data is on those machines.
    #[serde(default)]
    pub missing_agents: Vec<MissingAgentDoc>,
    /// Agents an operator marked gone (refused if they re-register).
    #[serde(default)]
    pub gone_agents: Vec<String>,
    /// Offers outstanding, by id.
    #[serde(default)]
    pub offers: Vec<OfferDoc>,
}

impl StateDoc {
    /// The books as `principal` may see them: the frameworks (with their
    /// tasks, offers and operations) the `view-framework` ACL lets it
    /// see, and the roles `view-role` lets it see. The pool itself
    /// (agents, totals) stays: it names no framework.
    pub fn retain_viewable_by(&mut self, acls: &crate::acl::Acls, principal: &str) {
        use crate::acl::{authorize, Action};
        self.retain_viewable(|owner| authorize(acls, principal, Action::ViewFramework, owner).is_ok());
        self.roles.retain(|r| authorize(acls, principal, Action::ViewRole, &r.role).is_ok());
    }

    /// Leaves out the frameworks whose principal `may_view` refuses, with
    /// their tasks, offers and operations.
    fn retain_viewable(&mut self, may_view: impl Fn(&str) -> bool) {
        let hidden: std::collections::HashSet<String> =
            self.frameworks.iter().filter(|f| !may_view(&f.principal)).map(|f| f.id.clone()).collect();
        if hidden.is_empty() {
            return;
        }
        self.frameworks.retain(|f| !hidden.contains(&f.id));
        self.tasks.retain(|t| !hidden.contains(&t.framework_id));
        self.completed_tasks.retain(|t| !hidden.contains(&t.framework_id) && may_view(&t.principal));
        self.offers.retain(|o| !hidden.contains(&o.framework_id));
        self.operations.retain(|o| !hidden.contains(&o.framework_id));
    }
}

/// An offer made and not yet accepted, declined, rescinded or expired.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OfferDoc {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    pub role: String,
    /// In the agent's `--resources` form.
    pub resources: String,
    /// Until it is rescinded (`broker.offer.timeout`).
    pub expires_in_seconds: f64,
    /// Lent guarantee headroom (`Resource.revocable`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revocable: bool,
}

/// An agent known only from the registry's `resources` record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MissingAgentDoc {
    pub id: String,
    /// From the registry's agent record; empty if it holds none (removed).
    pub hostname: String,
    /// `awaited` (a new leader waits for it to re-register) or `removed`.
    pub status: String,
    pub reservations: Vec<ReservationDoc>,
    pub volumes: Vec<VolumeDoc>,
}

fn reservation_doc(r: &weir_model::Reservation) -> ReservationDoc {
    ReservationDoc {
        id: r.id.to_string(),
        role: r.role.to_string(),
        principal: r.principal.clone(),
        labels: r.labels.clone(),
        resources: r.resources.to_string(),
        framework_id: r.framework.as_ref().map(|f| f.to_string()).unwrap_or_default(),
    }
}

/// A volume as `/state` shows it; `used_by` lists `framework/task`.
fn volume_doc(v: &weir_model::Volume, used_by: Vec<String>, last_sync: Option<VolumeSyncDoc>) -> VolumeDoc {
    VolumeDoc {
        id: v.id.to_string(),
        role: v.role.to_string(),
        reservation_id: v.reservation.to_string(),
        size_mib: v.size.as_f64(),
        container_path: v.container_path.clone(),
        owner_framework_id: v.owner.as_ref().map(|f| f.to_string()).unwrap_or_default(),
        shared: v.shared,
        used_by,
        backing: v.backing.clone().unwrap_or_default(),
        last_sync,
    }
}

/// A dynamic reservation on an agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReservationDoc {
    pub id: String,
    pub role: String,
    pub principal: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// In the agent's `--resources` form, e.g. `cpus:1;disk:1024`.
    pub resources: String,
    /// The framework that made it; empty for an operator's.
    #[serde(default)]
    pub framework_id: String,
}

/// A persistent volume on an agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeDoc {
    pub id: String,
    pub role: String,
    pub reservation_id: String,
    pub size_mib: f64,
    pub container_path: String,
    /// The framework that created it; empty for an operator's.
    #[serde(default)]
    pub owner_framework_id: String,
    pub shared: bool,
    /// Live tasks mounting it, as `framework/task`.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Where its durable copy is (`hdfs://…`); empty: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backing: String,
    /// Its agent's last restore or sync of that copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<VolumeSyncDoc>,
}

/// One restore or sync of a backed volume, as its agent reported it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeSyncDoc {
    /// create, restore, sync (an operator's or framework's SYNC),
    /// task-ended, interval.
    pub trigger: String,
    /// Empty when it worked; else why not (a stale copy says so).
    #[serde(default)]
    pub error: String,
    /// The backing moved past this copy: offered to nobody, mounted by no
    /// task, until the volume is destroyed or a restore replaces it.
    #[serde(default)]
    pub stale: bool,
    /// The generation the backing holds after it.
    pub generation: u64,
    pub files_total: u64,
    pub files_copied: u64,
    pub bytes_total: u64,
    pub bytes_copied: u64,
    pub millis: u64,
    /// Seconds since the Unix epoch, when the broker heard of it.
    pub timestamp: f64,
}

/// One operation's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OperationDoc {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub message: String,
    pub agent_id: String,
    #[serde(default)]
    pub framework_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerDoc {
    pub id: String,
    pub uptime_seconds: f64,
    pub version: String,
    /// The leadership term (0 without an election).
    #[serde(default)]
    pub leader_epoch: u64,
    /// True while a new leader waits for agents to re-register (no offers).
    #[serde(default)]
    pub recovering: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TotalsDoc {
    pub total: ResourcesDoc,
    pub used: ResourcesDoc,
    pub offered: ResourcesDoc,
    pub free: ResourcesDoc,
    pub offers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentDoc {
    pub id: String,
    pub hostname: String,
    pub http_address: String,
    pub reachable: bool,
    pub connected: bool,
    pub attributes: Vec<(String, String)>,
    pub resources: String,
    pub total: ResourcesDoc,
    pub used: ResourcesDoc,
    pub offered: ResourcesDoc,
    pub free: ResourcesDoc,
    pub tasks: usize,
    pub registered_seconds_ago: f64,
    /// Since its last message (heartbeats come every
    /// `broker.agent.heartbeat.interval`).
    #[serde(default)]
    pub last_seen_seconds_ago: f64,
    #[serde(default)]
    pub reservations: Vec<ReservationDoc>,
    #[serde(default)]
    pub volumes: Vec<VolumeDoc>,
    /// Maintenance: `active`, `draining` or `drained`.
    #[serde(default)]
    pub drain: String,
    /// While draining: when its tasks are killed (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<f64>,
    /// Its maintenance window, scheduled or under way (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<WindowDoc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowDoc {
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameworkDoc {
    pub id: String,
    pub name: String,
    /// Who it belongs to (the authenticated principal that subscribed
    /// it); empty without authentication unless it named one.
    #[serde(default)]
    pub principal: String,
    pub roles: Vec<String>,
    pub user: String,
    pub hostname: String,
    /// The framework's own web UI, as it announced it; empty if none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub webui_url: String,
    pub active: bool,
    pub recovered: bool,
    pub failover_timeout_seconds: f64,
    pub dominant_share: f64,
    pub used: ResourcesDoc,
    pub offered: ResourcesDoc,
    pub offers: usize,
    pub tasks: usize,
    pub registered_seconds_ago: f64,
    /// It subscribed with the REVOCABLE_RESOURCES capability.
    #[serde(default)]
    pub takes_revocable: bool,
    /// The revocable part of `used` and `offered`.
    #[serde(default)]
    pub revocable: ResourcesDoc,
    /// Offers declined in a row, per role with a run going.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub declines_in_a_row: BTreeMap<String, u32>,
    /// The least filter its next decline gets (decline backoff; 0: none).
    #[serde(default)]
    pub decline_backoff_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleDoc {
    pub role: String,
    pub weight: f64,
    pub dominant_share: f64,
    pub weighted_share: f64,
    pub allocated: ResourcesDoc,
    pub frameworks: usize,
    /// Reserved for the role on reachable agents, static and dynamic.
    #[serde(default)]
    pub reserved: ResourcesDoc,
    /// Its persistent volumes and their total size.
    #[serde(default)]
    pub volumes: usize,
    #[serde(default)]
    pub volume_mib: f64,
    /// Its priority band (strict-priority policy).
    #[serde(default)]
    pub priority: u32,
    /// Its guarantee, for its whole subtree.
    #[serde(default)]
    pub guarantee: ResourcesDoc,
    /// Its limit per kind, for its whole subtree; a kind not listed is
    /// unlimited.
    #[serde(default)]
    pub limit: BTreeMap<String, f64>,
    /// What its quota is measured on: what it and the roles below it
    /// hold, plus their reservations nobody holds.
    #[serde(default)]
    pub consumed: ResourcesDoc,
    /// The revocable part of `consumed` (lent headroom): counted by the
    /// limit and the share, never towards the guarantee.
    #[serde(default)]
    pub revocable: ResourcesDoc,
    /// The role above it (`eng` for `eng/analytics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AllocationDoc {
    /// `broker.allocator.policy`: drf, strict-priority or fifo.
    pub policy: String,
    /// The sum of the guarantees (of the topmost guaranteed roles).
    pub guaranteed: ResourcesDoc,
    /// What guaranteed roles lack now; held back from everyone else.
    pub guarantee_shortfall: ResourcesDoc,
    /// False when the cluster's reachable agents no longer hold every
    /// guarantee (agents lost since the guarantees were set).
    pub guarantees_fit: bool,
    /// Tasks being revoked for guaranteed roles, until they end.
    #[serde(default)]
    pub revocations: Vec<RevocationDoc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RevocationDoc {
    pub framework_id: String,
    pub task_id: String,
    pub for_role: String,
    /// Until the broker kills it (0 once due).
    pub seconds_left: f64,
    /// The kill has been sent.
    pub killed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDoc {
    pub id: String,
    pub name: String,
    pub framework_id: String,
    /// The principal its framework belongs to (a completed task keeps it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub principal: String,
    pub agent_id: String,
    pub state: String,
    pub role: String,
    pub resources: ResourcesDoc,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// CPU time used so far (with isolation on its agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Memory in use now, MiB (with isolation on its agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_used_mib: Option<f64>,
    /// It runs on revocable resources (revoked first, with
    /// `broker.revocation.revocable-grace`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revocable: bool,
}

impl BrokerCore {
    /// Every agent in the books, ordered by id: what `GetStateResponse.agents`
    /// carries (programs read this; people read [`BrokerCore::state`]).
    pub fn agent_summaries(&self) -> Vec<AgentSummary> {
        self.agents
            .iter()
            .map(|(id, a)| {
                let (used, offered) = self.allocated_on(a);
                AgentSummary {
                    id: id.clone(),
                    hostname: a.host.hostname.clone(),
                    http_address: a.http_address.clone(),
                    state: match (a.reachable, a.conn.is_some()) {
                        (true, true) => AgentState::Reachable,
                        (true, false) => AgentState::Disconnected,
                        (false, _) => AgentState::Unreachable,
                    },
                    attributes: a.host.attributes.clone(),
                    total: a.total.clone(),
                    used,
                    offered,
                    tasks: u32::try_from(a.tasks.len()).unwrap_or(u32::MAX),
                    drain: self.drain_state(id),
                    unavailability: self.unavailability(id),
                }
            })
            .collect()
    }

    /// Each role's and each framework's dominant share now, as
    /// (name, share): what the UI's share history samples. Frameworks are
    /// named `name (id)`.
    pub fn dominant_shares(&self) -> (Vec<(String, f64)>, Vec<(String, f64)>) {
        let roles = self.allocator.role_shares().into_iter().map(|r| (r.role.to_string(), r.dominant_share)).collect();
        let frameworks = self
            .frameworks
            .iter()
            .map(|(id, f)| (format!("{} ({id})", f.name), self.allocator.framework_share(id).unwrap_or(0.0)))
            .collect();
        (roles, frameworks)
    }

    /// (used by its tasks, in its outstanding offers) on one agent.
    fn allocated_on(&self, a: &Agent) -> (ResourceSet, ResourceSet) {
        let mut used = ResourceSet::default();
        for key in &a.tasks {
            if let Some(t) = self.tasks.get(key) {
                used.add_assign(&t.resources);
            }
        }
        let mut offered = ResourceSet::default();
        for o in &a.offers {
            if let Some(o) = self.offers.get(o) {
                offered.add_assign(&o.resources);
            }
        }
        (used, offered)
    }

    pub fn state(&self, now: Duration) -> StateDoc {
        let mut total = Resources::default();
        let mut used = Resources::default();
        let mut offered = Resources::default();
        let mut agents = Vec::with_capacity(self.agents.len());
        for (id, a) in &self.agents {
            let (a_used, a_offered) = self.allocated_on(a);
            let (a_used, a_offered) = (a_used.total(), a_offered.total());
            let a_total = a.total.total();
            let a_free = self.allocator.free(id).map(|f| f.total()).unwrap_or_default();
            if a.reachable {
                total.add_assign(&a_total);
            }
            used.add_assign(&a_used);
            offered.add_assign(&a_offered);
            agents.push(AgentDoc {
                id: id.to_string(),
                hostname: a.host.hostname.clone(),
                http_address: a.http_address.clone(),
                reachable: a.reachable,
                connected: a.conn.is_some(),
                attributes: a.host.attributes.clone(),
                resources: a.total.to_string(),
                total: (&a_total).into(),
                used: (&a_used).into(),
                offered: (&a_offered).into(),
                free: (&a_free).into(),
                tasks: a.tasks.len(),
                registered_seconds_ago: now.saturating_sub(a.registered_at).as_secs_f64(),
                drain: self.drain_state(id).name().to_owned(),
                drain_deadline: match self.drain_state(id) {
                    weir_model::DrainState::Draining { deadline } => Some(deadline.as_secs_f64()),
                    _ => None,
                },
                maintenance: self.unavailability(id).map(|w| WindowDoc { start: w.start.as_secs_f64(), end: w.end().as_secs_f64() }),
                last_seen_seconds_ago: now.saturating_sub(a.last_seen).as_secs_f64(),
                reservations: a.reservations.values().map(reservation_doc).collect(),
                volumes: a
                    .volumes
                    .values()
                    .map(|v| {
                        let users = self.volume_users(id, &v.role, &v.id).iter().map(|(f, t)| format!("{f}/{t}")).collect();
                        let last_sync = self.volume_syncs.get(&(id.clone(), v.role.clone(), v.id.clone())).cloned();
                        volume_doc(v, users, last_sync)
                    })
                    .collect(),
            });
        }
        let free = self
            .agents
            .iter()
            .filter(|(_, a)| a.reachable)
            .filter_map(|(id, _)| self.allocator.free(id))
            .fold(Resources::default(), |acc, f| acc.add(&f.total()));

        let frameworks = self
            .frameworks
            .iter()
            .map(|(id, f)| {
                let mut f_used = Resources::default();
                let mut f_revocable = Resources::default();
                for t in &f.tasks {
                    if let Some(t) = self.tasks.get(&(id.clone(), t.clone())) {
                        f_used.add_assign(&t.resources.total());
                        if t.revocable {
                            f_revocable.add_assign(&t.resources.total());
                        }
                    }
                }
                let mut f_offered = Resources::default();
                for o in &f.offers {
                    if let Some(o) = self.offers.get(o) {
                        f_offered.add_assign(&o.resources.total());
                        if o.revocable {
                            f_revocable.add_assign(&o.resources.total());
                        }
                    }
                }
                FrameworkDoc {
                    id: id.to_string(),
                    name: f.name.clone(),
                    roles: f.roles.iter().map(|r| r.to_string()).collect(),
                    user: f.user.clone(),
                    hostname: f.hostname.clone(),
                    webui_url: f.webui_url.clone(),
                    principal: f.principal.clone(),
                    active: f.conn.is_some(),
                    recovered: f.recovered,
                    failover_timeout_seconds: if f.failover_timeout == Duration::MAX {
                        -1.0
                    } else {
                        f.failover_timeout.as_secs_f64()
                    },
                    dominant_share: self.allocator.framework_share(id).unwrap_or(0.0),
                    used: (&f_used).into(),
                    offered: (&f_offered).into(),
                    offers: f.offers.len(),
                    tasks: f.tasks.len(),
                    registered_seconds_ago: now.saturating_sub(f.registered_at).as_secs_f64(),
                    takes_revocable: f.takes_revocable,
                    revocable: (&f_revocable).into(),
                    declines_in_a_row: f.declines.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
                    decline_backoff_seconds: self
                        .next_decline_backoff(f.declines.values().copied().max().unwrap_or(0))
                        .as_secs_f64(),
                }
            })
            .collect();

        let mut reserved: BTreeMap<Role, (Resources, usize, u64)> = BTreeMap::new();
        for a in self.agents.values().filter(|a| a.reachable) {
            for (role, r) in &a.total.reserved {
                reserved.entry(role.clone()).or_default().0.add_assign(r);
            }
            for v in a.volumes.values() {
                let entry = reserved.entry(v.role.clone()).or_default();
                entry.1 += 1;
                entry.2 += v.size.0;
            }
        }
        let roles = self
            .allocator
            .role_shares()
            .into_iter()
            .map(|r| {
                let (res, volumes, volume_milli) = reserved.get(&r.role).cloned().unwrap_or_default();
                RoleDoc {
                    role: r.role.to_string(),
                    weight: r.weight,
                    dominant_share: r.dominant_share,
                    weighted_share: r.weighted_share,
                    allocated: (&r.allocated).into(),
                    frameworks: r.frameworks.len(),
                    reserved: (&res).into(),
                    volumes,
                    volume_mib: Milli(volume_milli).as_f64(),
                    priority: r.priority,
                    guarantee: (&r.quota.guarantee).into(),
                    limit: weir_model::resources::SCALAR_NAMES
                        .iter()
                        .zip(r.quota.limit.by_kind())
                        .filter_map(|(k, v)| Some(((*k).to_owned(), v?.as_f64())))
                        .collect(),
                    consumed: (&r.subtree).into(),
                    revocable: (&r.revocable).into(),
                    parent: r.parent.map(|p| p.to_string()),
                }
            })
            .collect();

        let tasks = self
            .tasks
            .iter()
            .map(|((framework, id), t)| TaskDoc {
                id: id.to_string(),
                name: t.name.clone(),
                framework_id: framework.to_string(),
                principal: self.frameworks.get(framework).map(|f| f.principal.clone()).unwrap_or_default(),
                agent_id: t.agent.to_string(),
                state: t.state.name().to_owned(),
                role: t.role.to_string(),
                resources: (&t.resources).into(),
                message: t.latest.message.clone(),
                exit_code: t.latest.exit_code,
                cpu_seconds: t.usage.as_ref().map(|u| u.cpu_seconds),
                mem_used_mib: t.usage.as_ref().map(|u| u.mem_bytes as f64 / (1024.0 * 1024.0)),
                revocable: t.revocable,
            })
            .collect();
        let completed_tasks = self
            .completed
            .iter()
            .rev()
            .map(|c| TaskDoc {
                id: c.task.to_string(),
                name: c.name.clone(),
                framework_id: c.framework.to_string(),
                principal: match self.frameworks.get(&c.framework) {
                    Some(f) if c.principal.is_empty() => f.principal.clone(),
                    _ => c.principal.clone(),
                },
                agent_id: c.agent.to_string(),
                state: c.state.name().to_owned(),
                role: String::new(),
                resources: ResourcesDoc::default(),
                message: c.message.clone(),
                exit_code: c.exit_code,
                cpu_seconds: None,
                mem_used_mib: None,
                revocable: false,
            })
            .collect();

        StateDoc {
            broker: BrokerDoc {
                id: self.id_prefix.to_string(),
                uptime_seconds: now.saturating_sub(self.started_at).as_secs_f64(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                leader_epoch: self.epoch,
                recovering: self.recovery.is_some(),
            },
            totals: TotalsDoc {
                total: (&total).into(),
                used: (&used).into(),
                offered: (&offered).into(),
                free: (&free).into(),
                offers: self.offers.len(),
            },
            agents,
            frameworks,
            roles,
            allocation: AllocationDoc {
                policy: self.allocation_policy().to_owned(),
                guaranteed: (&self.allocator.guaranteed_total()).into(),
                guarantee_shortfall: (&self.allocator.guarantee_shortfall()).into(),
                guarantees_fit: self.allocator.check_quotas(true).is_ok(),
                revocations: self.revocations_doc(now),
            },
            tasks,
            completed_tasks,
            operations: self
                .operations
                .iter()
                .rev()
                .map(|o| OperationDoc {
                    id: o.operation_id.clone(),
                    kind: o.kind.clone(),
                    state: v1::OperationState::try_from(o.state).map(|s| s.as_str_name().to_owned()).unwrap_or_default(),
                    message: o.message.clone(),
                    agent_id: o.agent_id.clone(),
                    framework_id: o.framework_id.clone(),
                })
                .collect(),
            missing_agents: self.missing_agents(),
            gone_agents: self.gone_agents.iter().map(|a| a.to_string()).collect(),
            offers: {
                let mut keys: Vec<_> = self.offers.keys().copied().collect();
                keys.sort_unstable();
                keys.into_iter().map(|key| (key, &self.offers[&key]))
            }
                .map(|(key, o)| OfferDoc {
                    id: self.offer_id(key).to_string(),
                    framework_id: o.framework.to_string(),
                    agent_id: o.agent.to_string(),
                    role: o.role.to_string(),
                    resources: o.resources.to_string(),
                    expires_in_seconds: o.expires.saturating_sub(now).as_secs_f64(),
                    revocable: o.revocable,
                })
                .collect(),
        }
    }

    fn missing_agents(&self) -> Vec<MissingAgentDoc> {
        let mut missing = Vec::new();
        for id in self.registered_resources.keys().filter(|id| !self.agents.contains_key(*id)) {
            let Some(Ok((reservations, volumes))) = self.registered_books(id) else { continue };
            if reservations.is_empty() && volumes.is_empty() {
                continue;
            }
            missing.push(MissingAgentDoc {
                id: id.to_string(),
                hostname: self.registered_agents.get(id).map(|a| a.hostname.clone()).unwrap_or_default(),
                status: if self.awaiting_agent(id) { "awaited" } else { "removed" }.to_owned(),
                reservations: reservations.values().map(reservation_doc).collect(),
                volumes: volumes.values().map(|v| volume_doc(v, Vec::new(), None)).collect(),
            });
        }
        missing
    }
}
