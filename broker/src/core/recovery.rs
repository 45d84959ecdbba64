//! What survives a broker failover: the registry.
//!
//! The leader writes a record for every admitted agent, every subscribed
//! framework (with its failover timeout), every role weight an operator
//! set and every agent's reservations and volumes (`resources`, one
//! `CheckpointResources` per agent), and the shell lands each write before
//! the acknowledgement that follows it (an operation's status, the
//! CHECKPOINT_RESOURCES to the agent). A new leader starts from these records: frameworks are known
//! (disconnected, with their failover timeout plus the recovery period to
//! come back), and the agents are expected. Tasks are not recorded: agents
//! report them when they re-register, as after a plain broker restart.
//!
//! Until every expected agent has re-registered, or the recovery timeout
//! has passed, the core makes no offers. Agents still missing then are
//! entered as unreachable, with the reservations and volumes the registry
//! holds for them (counted against their roles, offered to nobody while
//! the agent is away); they have the usual re-register timeout to come
//! back before they are removed. A removed agent's reservations and
//! volumes stay in the registry and in `/state` (`missing_agents`): the
//! broker never forgets data it acknowledged because a machine is away.
//!
//! When an agent re-registers, the registry's reservations and volumes
//! win over the agent's report (see `reconcile_resources`): they are
//! exactly what was acknowledged, and they differ from the agent's only
//! when a CHECKPOINT_RESOURCES was lost with a leader that died after its
//! write landed. The agent is sent the registry's list at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prost::Message;
use weir_ha::{Record, Write};
use weir_model::{AgentId, FrameworkId, Reservation, ReservationId, ResourceSet, Role, Volume, VolumeId};
use weir_proto::convert;
use weir_proto::v1;

use super::{Agent, BrokerCore, Framework, Output};

pub(super) const AGENTS: &str = "agents";
pub(super) const FRAMEWORKS: &str = "frameworks";
pub(super) const WEIGHTS: &str = "weights";
/// A role's priority band and quota (`RolePolicy`, weight 0), by role.
pub(super) const QUOTAS: &str = "quotas";
/// An agent's reservations and volumes (`CheckpointResources`), by agent id.
pub(super) const RESOURCES: &str = "resources";

/// One agent's reservations and volumes, as the books key them.
pub(super) type Books = (BTreeMap<ReservationId, Reservation>, BTreeMap<(Role, VolumeId), Volume>);

/// Reads a `CheckpointResources` into books, checking it as an agent's
/// report is checked.
pub(super) fn books_from_proto(field: &str, c: &v1::broker_message::CheckpointResources) -> Result<Books, String> {
    let (reservations, volumes) =
        convert::reservations_and_volumes_from_proto(field, &c.reservations, &c.volumes).map_err(|e| e.to_string())?;
    Ok((
        reservations.into_iter().map(|r| (r.id.clone(), r)).collect(),
        volumes.into_iter().map(|v| ((v.role.clone(), v.id.clone()), v)).collect(),
    ))
}

pub(super) fn books_to_proto(reservations: &BTreeMap<ReservationId, Reservation>, volumes: &BTreeMap<(Role, VolumeId), Volume>) -> v1::broker_message::CheckpointResources {
    v1::broker_message::CheckpointResources {
        reservations: reservations.values().map(convert::reservation_to_proto).collect(),
        volumes: volumes.values().map(convert::volume_to_proto).collect(),
    }
}

/// `configured` with each reservation's resources moved from unreserved to
/// its role; `Err` names the first that does not fit.
pub(super) fn total_with(configured: &ResourceSet, reservations: &BTreeMap<ReservationId, Reservation>) -> Result<ResourceSet, String> {
    let mut total = configured.clone();
    for r in reservations.values() {
        let from = ResourceSet::unreserved(r.resources.clone());
        total = total.checked_sub(&from).map_err(|_| {
            format!("reservation {} ({} for role {}) does not fit in the agent's unreserved resources", r.id, r.resources, r.role)
        })?;
        total.reserved.entry(r.role.clone()).or_default().add_assign(&r.resources);
    }
    Ok(total)
}

pub(super) fn put(collection: &str, key: &str, value: &impl Message) -> Write {
    Write::Put(Record { collection: collection.to_owned(), key: key.to_owned(), value: value.encode_to_vec() })
}

pub(super) fn delete(collection: &str, key: &str) -> Write {
    Write::Delete { collection: collection.to_owned(), key: key.to_owned() }
}

#[derive(Debug, Clone)]
pub(super) struct Recovery {
    expected: BTreeSet<AgentId>,
    deadline: Duration,
}

/// What a new leader found in the registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    pub agents: usize,
    pub frameworks: usize,
    pub weights: usize,
    /// Roles with a priority band or a quota.
    pub quotas: usize,
    /// Agents whose reservations and volumes the registry holds.
    pub resources: usize,
    /// Agents under maintenance (draining, drained or gone).
    pub maintenance: usize,
    /// Records that could not be used, each with the reason.
    pub skipped: Vec<String>,
}

impl BrokerCore {
    /// The leadership term this core acts in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// True while a new leader still waits for agents to re-register.
    pub fn recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// Starts leading term `epoch` from the registry's records. Call once,
    /// on a fresh core, before any other input. A record that cannot be
    /// used is skipped and reported, never fatal: one bad record must not
    /// keep every broker from leading.
    pub fn recover(&mut self, records: &[Record], epoch: u64, now: Duration) -> RecoveryReport {
        self.epoch = epoch;
        let mut report = RecoveryReport::default();
        let mut expected = BTreeSet::new();
        for record in records {
            let what = format!("{}/{}", record.collection, record.key);
            let result = match record.collection.as_str() {
                AGENTS => self.recover_agent(record).map(|id| {
                    expected.insert(id);
                    report.agents += 1;
                }),
                FRAMEWORKS => self.recover_framework(record, now).map(|()| report.frameworks += 1),
                WEIGHTS => self.recover_weight(record).map(|()| report.weights += 1),
                QUOTAS => self.recover_quota(record).map(|()| report.quotas += 1),
                RESOURCES => self.recover_resources(record).map(|()| report.resources += 1),
                super::maintenance::MAINTENANCE => self.recover_drain(record).map(|()| report.maintenance += 1),
                other => Err(format!("unknown collection {other:?}")),
            };
            if let Err(reason) = result {
                tracing::error!(record = %what, %reason, "skipping a registry record");
                report.skipped.push(format!("{what}: {reason}"));
            }
        }
        tracing::info!(
            epoch,
            agents = report.agents,
            frameworks = report.frameworks,
            weights = report.weights,
            quotas = report.quotas,
            resources = report.resources,
            skipped = report.skipped.len(),
            "recovered the registry; waiting for agents to re-register"
        );
        self.recovery = Some(Recovery { expected, deadline: now + self.settings.recovery_timeout });
        self.dirty = true;
        report
    }

    fn recover_agent(&mut self, record: &Record) -> Result<AgentId, String> {
        let info = v1::AgentInfo::decode(record.value.as_slice()).map_err(|e| format!("not an AgentInfo: {e}"))?;
        let id = convert::id::<AgentId>("agent id", &record.key).map_err(|e| e.to_string())?;
        if info.id != record.key {
            return Err(format!("record names agent {:?}", info.id));
        }
        convert::resources_from_proto("resources", &info.resources).map_err(|e| e.to_string())?;
        self.registered_agents.insert(id.clone(), info);
        Ok(id)
    }

    fn recover_framework(&mut self, record: &Record, now: Duration) -> Result<(), String> {
        let info = v1::FrameworkInfo::decode(record.value.as_slice()).map_err(|e| format!("not a FrameworkInfo: {e}"))?;
        let id = convert::id::<FrameworkId>("framework id", &record.key).map_err(|e| e.to_string())?;
        if info.id != record.key {
            return Err(format!("record names framework {:?}", info.id));
        }
        let mut roles = Vec::new();
        for role in &info.roles {
            weir_model::ids::validate_role(role)?;
            roles.push(Role::new(role.clone()));
        }
        if roles.is_empty() {
            roles.push(Role::default_role());
        }
        let timeout = info.failover_timeout_seconds;
        if !timeout.is_finite() || timeout < 0.0 {
            return Err(format!("failover timeout {timeout} is not a number >= 0"));
        }
        self.allocator.add_framework(id.clone(), roles.clone()).map_err(|e| e.to_string())?;
        let _ = self.allocator.set_framework_active(&id, false);
        let failover_timeout = Duration::from_secs_f64(timeout.min(self.settings.max_failover_timeout.as_secs_f64()));
        self.failover_deadlines.insert(((now + self.settings.recovery_timeout).saturating_add(failover_timeout), id.clone()));
        self.frameworks.insert(
            id.clone(),
            Framework {
                name: info.name.clone(),
                principal: info.principal.clone(),
                roles,
                user: info.user.clone(),
                hostname: info.hostname.clone(),
                webui_url: info.webui_url.clone(),
                failover_timeout,
                conn: None,
                disconnected_at: Some(now + self.settings.recovery_timeout),
                recovered: false,
                registered_at: now,
                offers: Default::default(),
                tasks: Default::default(),
                data: None,
                takes_revocable: false,
                declines: Default::default(),
            },
        );
        self.registered_frameworks.insert(id, info);
        Ok(())
    }

    fn recover_weight(&mut self, record: &Record) -> Result<(), String> {
        let w = v1::RoleWeight::decode(record.value.as_slice()).map_err(|e| format!("not a RoleWeight: {e}"))?;
        if w.role != record.key {
            return Err(format!("record names role {:?}", w.role));
        }
        weir_model::ids::validate_role(&w.role)?;
        self.allocator.set_weight(Role::new(w.role), w.weight).map_err(|e| e.to_string())
    }

    /// A role's band and quota, as acknowledged: restored unchecked (the
    /// agents whose total they were checked against are not back yet).
    fn recover_quota(&mut self, record: &Record) -> Result<(), String> {
        let p = v1::RolePolicy::decode(record.value.as_slice()).map_err(|e| format!("not a RolePolicy: {e}"))?;
        if p.role != record.key {
            return Err(format!("record names role {:?}", p.role));
        }
        let p = super::roles::role_policy_from_proto("quota", &p)?;
        self.allocator.restore_quota(p.role.clone(), p.quota);
        self.allocator.set_priority(p.role, p.priority);
        Ok(())
    }

    fn recover_resources(&mut self, record: &Record) -> Result<(), String> {
        let c = v1::broker_message::CheckpointResources::decode(record.value.as_slice())
            .map_err(|e| format!("not a CheckpointResources: {e}"))?;
        let id = convert::id::<AgentId>("agent id", &record.key).map_err(|e| e.to_string())?;
        books_from_proto("resources", &c)?;
        self.registered_resources.insert(id, c);
        Ok(())
    }

    /// Ends recovery once every expected agent is back or time is up.
    pub(super) fn check_recovery(&mut self, now: Duration, _out: &mut [Output]) {
        let Some(recovery) = &self.recovery else { return };
        if !recovery.expected.is_empty() && now < recovery.deadline {
            return;
        }
        let missing: Vec<AgentId> = recovery.expected.iter().cloned().collect();
        self.recovery = None;
        self.dirty = true;
        for id in &missing {
            let Some(info) = self.registered_agents.get(id).cloned() else { continue };
            let Ok(configured) = convert::resources_from_proto("resources", &info.resources) else { continue };
            // Its reservations and volumes as the registry holds them: they
            // count against their roles while the agent is away.
            let (reservations, volumes) = match self.registered_books(id) {
                Some(Ok(books)) => books,
                Some(Err(reason)) => {
                    tracing::error!(agent_id = %id, %reason, "the registry's reservations for this agent are unusable; waiting for its report");
                    Default::default()
                }
                None => Default::default(),
            };
            let (total, reservations, volumes) = match total_with(&configured, &reservations) {
                Ok(total) => (total, reservations, volumes),
                Err(reason) => {
                    tracing::error!(agent_id = %id, %reason, "the registry's reservations do not fit the agent; waiting for its report");
                    (configured.clone(), Default::default(), Default::default())
                }
            };
            if self.allocator.add_agent(id.clone(), total.clone(), Vec::new()).is_err() {
                continue;
            }
            let _ = self.allocator.set_agent_active(id, false);
            self.removal_scan_at = self.removal_scan_at.min(now.saturating_add(self.settings.agent_reregister_timeout));
            self.agents.insert(
                id.clone(),
                Agent {
                    host: super::AgentHost::new(
                        info.hostname.clone(),
                        info.attributes.iter().map(|a| (a.name.clone(), a.value.clone())).collect(),
                    ),
                    http_address: info.http_address.clone(),
                    configured,
                    total,
                    reservations,
                    volumes,
                    conn: None,
                    last_seen: now,
                    reachable: false,
                    unreachable_since: Some(now),
                    registered_at: now,
                    tasks: Default::default(),
                    offers: Default::default(),
                },
            );
            tracing::warn!(agent_id = %id, "agent did not re-register after the failover; unreachable until it does");
        }
        tracing::info!(epoch = self.epoch, missing = missing.len(), "recovery complete; offers resume");
    }

    /// True while this new leader waits for `id` to re-register.
    pub(super) fn awaiting_agent(&self, id: &AgentId) -> bool {
        self.recovery.as_ref().is_some_and(|r| r.expected.contains(id))
    }

    pub(super) fn agent_recovered(&mut self, id: &AgentId) {
        if let Some(recovery) = &mut self.recovery {
            recovery.expected.remove(id);
        }
    }

    /// The registry's reservations and volumes for an agent, if it holds any.
    pub(super) fn registered_books(&self, id: &AgentId) -> Option<Result<Books, String>> {
        self.registered_resources.get(id).map(|c| books_from_proto("resources", c))
    }

    /// Writes an agent's reservations and volumes to the registry if they
    /// changed. Must come before anything that acknowledges the change. An
    /// agent with none still has a record: it tells a later leader that
    /// the registry, not the agent's report, knows the agent's list.
    pub(super) fn record_resources(&mut self, id: &AgentId, out: &mut Vec<Output>) {
        let Some(a) = self.agents.get(id) else { return };
        let now = books_to_proto(&a.reservations, &a.volumes);
        if self.registered_resources.get(id) != Some(&now) {
            out.push(Output::Registry(put(RESOURCES, id.as_str(), &now)));
            self.registered_resources.insert(id.clone(), now);
        }
    }

    /// A removed agent's record goes only if it holds nothing: the
    /// reservations and volumes of a machine that is away are kept.
    pub(super) fn forget_resources(&mut self, id: &AgentId, out: &mut Vec<Output>) {
        if self.registered_resources.get(id).is_some_and(|c| c.reservations.is_empty() && c.volumes.is_empty()) {
            self.registered_resources.remove(id);
            out.push(Output::Registry(delete(RESOURCES, id.as_str())));
        }
    }

    /// What a re-registering agent's books become: the registry's
    /// reservations and volumes when it holds a record for the agent and
    /// they fit the agent's resources and the tasks it reports (`used`),
    /// else the agent's report (first registration, or a registry written
    /// before reservations were recorded). The flag says the agent must be
    /// sent the list because it differs from what it reported.
    pub(super) fn reconcile_resources(
        &self,
        id: &AgentId,
        configured: &ResourceSet,
        reported: Books,
        used: &ResourceSet,
    ) -> (Books, bool) {
        let registered = match self.registered_books(id) {
            None => return (reported, false),
            Some(Err(reason)) => {
                tracing::error!(agent_id = %id, %reason, "the registry's reservations for this agent are unusable; keeping the agent's");
                return (reported, false);
            }
            Some(Ok(books)) => books,
        };
        if registered == reported {
            return (reported, false);
        }
        let fits = total_with(configured, &registered.0).and_then(|total| {
            if total.contains(used) {
                Ok(())
            } else {
                Err(format!("the agent's tasks ({used}) do not fit in {total}"))
            }
        });
        if let Err(reason) = fits {
            tracing::error!(agent_id = %id, %reason, "the registry's reservations no longer fit the agent; keeping the agent's and rewriting the registry");
            return (reported, false);
        }
        let names = |b: &Books| -> String {
            let mut v: Vec<String> = b.0.keys().map(|r| format!("reservation {r}")).collect();
            v.extend(b.1.keys().map(|(role, vol)| format!("volume {vol} of {role}")));
            v.join(", ")
        };
        tracing::warn!(
            agent_id = %id,
            registry = %names(&registered),
            agent = %names(&reported),
            "the agent's reservations differ from the registry's (a checkpoint was lost in a failover); sending it the registry's"
        );
        (registered, true)
    }

    /// Records an admitted agent (its identity and resources, not its tasks).
    pub(super) fn record_agent(&mut self, id: &AgentId, msg: &v1::agent_message::Register, out: &mut Vec<Output>) {
        let mut info = msg.agent.clone().unwrap_or_default();
        info.id = id.to_string();
        if self.registered_agents.get(id) != Some(&info) {
            out.push(Output::Registry(put(AGENTS, id.as_str(), &info)));
            self.registered_agents.insert(id.clone(), info);
        }
    }

    pub(super) fn forget_agent(&mut self, id: &AgentId, out: &mut Vec<Output>) {
        if self.registered_agents.remove(id).is_some() {
            out.push(Output::Registry(delete(AGENTS, id.as_str())));
        }
    }

    pub(super) fn record_framework(&mut self, id: &FrameworkId, out: &mut Vec<Output>) {
        let Some(f) = self.frameworks.get(id) else { return };
        let info = v1::FrameworkInfo {
            id: id.to_string(),
            name: f.name.clone(),
            roles: f.roles.iter().map(|r| r.to_string()).collect(),
            failover_timeout_seconds: f.failover_timeout.as_secs_f64(),
            user: f.user.clone(),
            hostname: f.hostname.clone(),
            webui_url: f.webui_url.clone(),
            principal: f.principal.clone(),
            // Stated afresh at each SUBSCRIBE; a framework waiting to
            // re-subscribe gets no offers anyway.
            capabilities: Vec::new(),
        };
        if self.registered_frameworks.get(id) != Some(&info) {
            out.push(Output::Registry(put(FRAMEWORKS, id.as_str(), &info)));
            self.registered_frameworks.insert(id.clone(), info);
        }
    }

    pub(super) fn forget_framework(&mut self, id: &FrameworkId, out: &mut Vec<Output>) {
        if self.registered_frameworks.remove(id).is_some() {
            out.push(Output::Registry(delete(FRAMEWORKS, id.as_str())));
        }
    }
}
