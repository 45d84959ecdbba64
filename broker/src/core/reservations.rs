//! Dynamic reservations and persistent volumes: RESERVE, UNRESERVE, CREATE,
//! DESTROY, GROW and SHRINK, from a framework's ACCEPT (on what its offers
//! hold) or from an operator (on what nobody holds).
//!
//! Each operation is checked as Mesos checks it, then applied at once, in
//! order, and answered with an `OperationStatus`: OPERATION_FINISHED, or
//! OPERATION_FAILED with the reason and nothing changed. Ids are the
//! caller's: an operation repeated with the same id and the same content
//! finishes again without doing anything twice; the same id with other
//! content fails.
//!
//! Books per agent (checked by `check_invariants`):
//! - `total` is what the agent reported (`configured`) with every
//!   reservation's resources moved from unreserved to its role;
//! - every volume lies on a reservation of its role, and the volumes on a
//!   reservation need no more disk than it holds;
//! - disk of a role that tasks use as scratch space (not as a volume) plus
//!   every volume of the role fits in the role's reserved disk, so a
//!   volume's disk is never handed out twice;
//! - a volume that is not `shared` is mounted by at most one live task.
//!
//! The agent is told the whole list after every change
//! (CHECKPOINT_RESOURCES, before any task that follows on its stream), and
//! reports what it checkpointed when it re-registers. The list is also in
//! the registry (collection `resources`, written before the agent or the
//! caller hears of the change), so a new leader knows every acknowledged
//! reservation and volume even for agents that never come back, and sends
//! an agent that re-registers without one its list again (see
//! `recovery.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use weir_model::reservation::{validate_backing, validate_container_path, validate_labels};
use weir_model::{AgentId, FrameworkId, Milli, Reservation, ReservationId, ResourceSet, Resources, Role, VolumeId};
use weir_model::Volume;
use weir_proto::convert::{self, ProtoError};
use weir_proto::v1;

use crate::acl::{authorize, Action};
use super::state::VolumeSyncDoc;
use super::{agent_message, event, BrokerCore, Output};

/// Bytes of an agent's sync error kept.
const MAX_SYNC_ERROR: usize = 2048;
/// Sync reports kept for `/state` before those of vanished volumes go.
const MAX_SYNC_REPORTS: usize = 10_000;

/// How many operation statuses `/state` remembers.
pub(super) const OPERATIONS_KEPT: usize = 1000;

/// How an operation that passed its checks stands.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Done; the message says what was done.
    Finished(String),
    /// In the books; the agent carries out the rest (a SYNC, or restoring
    /// a backed volume) and its VOLUME_SYNC report ends it.
    Pending(String),
}

/// Who asks for an operation, and on what.
#[derive(Clone, Copy)]
pub(super) enum Actor<'a> {
    /// A framework, on the resources of its accepted offers, allocated to
    /// it in `role`.
    Framework { id: &'a FrameworkId, role: &'a Role },
    /// An operator (its principal; empty: anonymous), on the agent's free
    /// resources.
    Operator { principal: &'a str },
}

impl Actor<'_> {
    fn framework(&self) -> Option<&FrameworkId> {
        match self {
            Actor::Framework { id, .. } => Some(id),
            Actor::Operator { .. } => None,
        }
    }
}

/// The kind of an operation, as statuses and logs name it.
pub(super) fn operation_kind(op: &v1::Operation) -> &'static str {
    match &op.kind {
        Some(v1::operation::Kind::Launch(_)) => "LAUNCH",
        Some(v1::operation::Kind::Reserve(_)) => "RESERVE",
        Some(v1::operation::Kind::Unreserve(_)) => "UNRESERVE",
        Some(v1::operation::Kind::Create(_)) => "CREATE",
        Some(v1::operation::Kind::Destroy(_)) => "DESTROY",
        Some(v1::operation::Kind::Grow(_)) => "GROW",
        Some(v1::operation::Kind::Shrink(_)) => "SHRINK",
        Some(v1::operation::Kind::Sync(_)) => "SYNC",
        None => "UNKNOWN",
    }
}

/// The ACL action an operation needs, on the role it acts in.
pub(crate) fn operation_action(op: &v1::Operation) -> Option<Action> {
    match &op.kind {
        Some(v1::operation::Kind::Reserve(_)) => Some(Action::Reserve),
        Some(v1::operation::Kind::Unreserve(_)) => Some(Action::Unreserve),
        Some(v1::operation::Kind::Create(_) | v1::operation::Kind::Grow(_) | v1::operation::Kind::Shrink(_) | v1::operation::Kind::Sync(_)) => {
            Some(Action::CreateVolume)
        }
        Some(v1::operation::Kind::Destroy(_)) => Some(Action::DestroyVolume),
        Some(v1::operation::Kind::Launch(_)) | None => None,
    }
}

/// The role an operator's operation acts in, as written (checked later).
pub(crate) fn operator_operation_role(op: &v1::Operation) -> &str {
    match &op.kind {
        Some(v1::operation::Kind::Reserve(r)) if op.role.is_empty() => r.role.as_str(),
        _ => op.role.as_str(),
    }
}

fn err(e: ProtoError) -> String {
    e.to_string()
}

fn reserved_for(role: &Role, r: &Resources) -> ResourceSet {
    let mut set = ResourceSet::default();
    if !r.is_empty() {
        set.reserved.insert(role.clone(), r.clone());
    }
    set
}

impl BrokerCore {
    /// Who acts: the framework's principal, or the operator's.
    fn actor_principal(&self, actor: Actor<'_>) -> String {
        match actor {
            Actor::Framework { id, .. } => self.frameworks.get(id).map(|f| f.principal.clone()).unwrap_or_default(),
            Actor::Operator { principal } => principal.to_owned(),
        }
    }

    /// The principal a reservation or volume records: the actor's when it
    /// has one (a different one named in the operation is refused, so
    /// nobody makes a record in another's name), else the one named.
    fn recorded_principal(&self, actor: Actor<'_>, field: &str, named: &str) -> Result<String, String> {
        let acting = self.actor_principal(actor);
        if acting.is_empty() {
            return Ok(named.to_owned());
        }
        if !named.is_empty() && named != acting {
            return Err(format!("permission denied: {field} {named:?} is not the caller's principal {acting:?}"));
        }
        Ok(acting)
    }

    /// Applies one non-LAUNCH operation on `agent`. `pool` is what the
    /// operation may draw on: the accepted offers' resources (allocated to
    /// the framework), or for an operator the agent's free resources. On
    /// success the books, the allocator and `pool` have changed and the
    /// message says what was done; on failure nothing has changed.
    pub(super) fn apply_operation(
        &mut self,
        agent: &AgentId,
        actor: Actor<'_>,
        op: &v1::Operation,
        pool: &mut ResourceSet,
        out: &mut Vec<Output>,
    ) -> Result<Outcome, String> {
        if !self.agents.contains_key(agent) {
            return Err(format!("agent {agent} is not known"));
        }
        if !op.id.is_empty() {
            weir_model::ids::validate_id("operation id", &op.id)?;
        }
        // The role the operation acts in.
        let role = match actor {
            Actor::Framework { role, .. } => {
                if !op.role.is_empty() && op.role != role.as_str() {
                    return Err(format!("operation names role {} but the offers are allocated to role {role}", op.role));
                }
                role.clone()
            }
            Actor::Operator { .. } => {
                convert::id::<Role>("operation.role", operator_operation_role(op)).map_err(err)?
            }
        };
        if role == Role::default_role() {
            return Err("reservations and volumes need a role other than \"*\"".to_owned());
        }
        if let Some(action) = operation_action(op) {
            let principal = self.actor_principal(actor);
            if let Err(refusal) = authorize(&self.settings.acls, &principal, action, role.as_str()) {
                tracing::warn!(%principal, framework_id = ?actor.framework().map(|f| f.to_string()), %agent, action = action.name(), %role, %refusal, "operation refused by ACL");
                return Err(refusal.to_string());
            }
        }
        if self.agent_conn(agent).is_none() {
            return Err(format!("agent {agent} is not connected; it must checkpoint the change"));
        }
        let outcome = match &op.kind {
            Some(v1::operation::Kind::Reserve(r)) => Outcome::Finished(self.reserve(agent, actor, &role, r, pool)?),
            Some(v1::operation::Kind::Unreserve(u)) => Outcome::Finished(self.unreserve(agent, actor, &role, u, pool)?),
            Some(v1::operation::Kind::Create(c)) => self.create_volume(agent, actor, &role, op, c, pool)?,
            Some(v1::operation::Kind::Destroy(d)) => Outcome::Finished(self.destroy_volume(agent, actor, &role, &d.volume_id)?),
            Some(v1::operation::Kind::Grow(g)) => {
                Outcome::Finished(self.resize_volume(agent, actor, &role, &g.volume_id, g.size, true, pool)?)
            }
            Some(v1::operation::Kind::Shrink(s)) => {
                Outcome::Finished(self.resize_volume(agent, actor, &role, &s.volume_id, s.size, false, pool)?)
            }
            // Changes nothing in the books: no CHECKPOINT_RESOURCES.
            Some(v1::operation::Kind::Sync(s)) => return self.sync_volume(agent, actor, &role, op, &s.volume_id, out),
            Some(v1::operation::Kind::Launch(_)) => return Err("LAUNCH is not a resource operation".to_owned()),
            None => return Err("operation has no kind".to_owned()),
        };
        self.checkpoint_resources(agent, out);
        if let (Outcome::Pending(_), Some(v1::operation::Kind::Create(c))) = (&outcome, &op.kind) {
            // After CHECKPOINT_RESOURCES on the stream, before any task.
            self.send_sync_volume(agent, actor, &role, &op.id, &c.volume_id, true, out);
        }
        self.dirty = true;
        Ok(outcome)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_sync_volume(&self, agent: &AgentId, actor: Actor<'_>, role: &Role, operation: &str, volume: &str, create: bool, out: &mut Vec<Output>) {
        let Some(conn) = self.agent_conn(agent) else { return };
        out.push(Output::Agent(
            conn,
            agent_message(v1::broker_message::Kind::SyncVolume(v1::broker_message::SyncVolume {
                operation_id: operation.to_owned(),
                framework_id: actor.framework().map(|f| f.to_string()).unwrap_or_default(),
                role: role.to_string(),
                volume_id: volume.to_owned(),
                create,
            })),
        ));
    }

    /// SYNC: asks the agent to copy a backed volume to its backing now.
    fn sync_volume(
        &mut self,
        agent: &AgentId,
        actor: Actor<'_>,
        role: &Role,
        op: &v1::Operation,
        raw: &str,
        out: &mut Vec<Output>,
    ) -> Result<Outcome, String> {
        let id = convert::id::<VolumeId>("sync.volume_id", raw).map_err(err)?;
        let Some(volume) = self.agents[agent].volumes.get(&(role.clone(), id.clone())) else {
            return Err(format!("volume {id} of role {role} does not exist on agent {agent}"));
        };
        if let Some(framework) = actor.framework() {
            if !volume.visible_to(framework) {
                return Err(format!("volume {id} belongs to another framework than {framework}"));
            }
        }
        let Some(backing) = volume.backing.clone() else {
            return Err(format!("volume {id} has no backing to sync to"));
        };
        if op.id.is_empty() {
            return Err("SYNC needs an operation id: its final status comes later and carries it".to_owned());
        }
        self.send_sync_volume(agent, actor, role, &op.id, id.as_str(), false, out);
        Ok(Outcome::Pending(format!("agent {agent} is syncing volume {id} to {backing}")))
    }

    fn reserve(
        &mut self,
        agent: &AgentId,
        actor: Actor<'_>,
        role: &Role,
        r: &v1::operation::Reserve,
        pool: &mut ResourceSet,
    ) -> Result<String, String> {
        if !r.role.is_empty() && r.role != role.as_str() {
            return Err(format!("RESERVE for role {} but the operation acts in role {role}", r.role));
        }
        let resources = convert::unreserved_from_proto("reserve.resources", &r.resources).map_err(err)?;
        if resources.is_empty() {
            return Err("RESERVE names no resources".to_owned());
        }
        let labels: BTreeMap<String, String> = r.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        validate_labels(&labels).map_err(|e| format!("reserve.labels: {e}"))?;
        if r.principal.len() > weir_model::ids::MAX_ID_LEN {
            return Err("reserve.principal is longer than 256 bytes".to_owned());
        }
        let principal = self.recorded_principal(actor, "reserve.principal", &r.principal)?;
        let id = if r.reservation_id.is_empty() {
            ReservationId::new(self.fresh_id("R"))
        } else {
            convert::id::<ReservationId>("reserve.reservation_id", &r.reservation_id).map_err(err)?
        };
        if let Some(existing) = self.agents[agent].reservations.get(&id) {
            if &existing.role == role && existing.resources == resources {
                return Ok(format!("reservation {id} already exists; nothing done"));
            }
            return Err(format!(
                "reservation {id} already exists on agent {agent} for role {} with {}",
                existing.role, existing.resources
            ));
        }
        if !pool.unreserved.contains(&resources) {
            let whose = match actor {
                Actor::Framework { .. } => "the offers hold",
                Actor::Operator { .. } => "are free on the agent",
            };
            return Err(format!("RESERVE of {resources} needs more than {whose}: only {} unreserved", pool.unreserved));
        }
        let from = ResourceSet::unreserved(resources.clone());
        let to = reserved_for(role, &resources);
        self.convert_resources(agent, actor, role, &from, &to)?;
        *pool = pool.checked_sub(&from).map_err(|e| e.to_string())?.add(&to);
        let reservation = Reservation {
            id: id.clone(),
            role: role.clone(),
            principal,
            labels,
            resources: resources.clone(),
            framework: actor.framework().cloned(),
        };
        tracing::info!(agent_id = %agent, reservation_id = %id, role = %role, resources = %resources, "reserved");
        self.agents.get_mut(agent).expect("checked above").reservations.insert(id.clone(), reservation);
        Ok(format!("reserved {resources} for role {role} as {id}"))
    }

    fn unreserve(
        &mut self,
        agent: &AgentId,
        actor: Actor<'_>,
        role: &Role,
        u: &v1::operation::Unreserve,
        pool: &mut ResourceSet,
    ) -> Result<String, String> {
        let id = convert::id::<ReservationId>("unreserve.reservation_id", &u.reservation_id).map_err(err)?;
        let a = &self.agents[agent];
        let Some(reservation) = a.reservations.get(&id).cloned() else {
            return Err(format!("reservation {id} does not exist on agent {agent}"));
        };
        if &reservation.role != role {
            return Err(format!("reservation {id} is for role {}, not {role}", reservation.role));
        }
        let on_it: Vec<String> =
            a.volumes.values().filter(|v| v.reservation == id).map(|v| v.id.to_string()).collect();
        if !on_it.is_empty() {
            return Err(format!("reservation {id} still holds volumes {}; destroy them first", on_it.join(", ")));
        }
        let to = ResourceSet::unreserved(reservation.resources.clone());
        let from = reserved_for(role, &reservation.resources);
        if !pool.contains(&from) {
            let whose = match actor {
                Actor::Framework { .. } => "in the offers",
                Actor::Operator { .. } => "free",
            };
            return Err(format!("reservation {id} ({}) is not all {whose}; it is in use or offered elsewhere", reservation.resources));
        }
        // The role's volumes and scratch disk must still fit without it.
        let disk_left = self.agents[agent].total.reserved.get(role).map_or(Milli::ZERO, |r| r.disk);
        let needed = self.role_disk_claimed(agent, role, Milli::ZERO);
        if Milli(disk_left.0.saturating_sub(reservation.resources.disk.0)) < needed {
            return Err(format!(
                "unreserving {id} would leave role {role} {} MiB of disk on agent {agent}, less than its volumes and tasks use ({needed})",
                Milli(disk_left.0.saturating_sub(reservation.resources.disk.0))
            ));
        }
        self.convert_resources(agent, actor, role, &from, &to)?;
        *pool = pool.checked_sub(&from).map_err(|e| e.to_string())?.add(&to);
        tracing::info!(agent_id = %agent, reservation_id = %id, role = %role, "unreserved");
        self.agents.get_mut(agent).expect("checked above").reservations.remove(&id);
        Ok(format!("unreserved {id} ({})", reservation.resources))
    }

    fn create_volume(
        &mut self,
        agent: &AgentId,
        actor: Actor<'_>,
        role: &Role,
        op: &v1::Operation,
        c: &v1::operation::Create,
        pool: &ResourceSet,
    ) -> Result<Outcome, String> {
        let id = convert::id::<VolumeId>("create.volume_id", &c.volume_id).map_err(err)?;
        let backing = if c.backing.is_empty() {
            None
        } else {
            validate_backing(&c.backing).map_err(|e| format!("create.backing: {e}"))?;
            if op.id.is_empty() {
                return Err("CREATE with a backing needs an operation id: its final status comes from the agent and carries it".to_owned());
            }
            Some(c.backing.clone())
        };
        let reservation_id = convert::id::<ReservationId>("create.reservation_id", &c.reservation_id).map_err(err)?;
        let size = convert::size_from_proto("create.size", c.size).map_err(err)?;
        validate_container_path(&c.container_path)?;
        if c.principal.len() > weir_model::ids::MAX_ID_LEN {
            return Err("create.principal is longer than 256 bytes".to_owned());
        }
        let principal = self.recorded_principal(actor, "create.principal", &c.principal)?;
        let volume = Volume {
            id: id.clone(),
            role: role.clone(),
            reservation: reservation_id.clone(),
            size,
            container_path: c.container_path.clone(),
            owner: actor.framework().cloned(),
            shared: c.shared,
            principal,
            backing,
        };
        let a = &self.agents[agent];
        if let Some(existing) = a.volumes.get(&(role.clone(), id.clone())) {
            let same = existing.reservation == volume.reservation
                && existing.size == volume.size
                && existing.container_path == volume.container_path
                && existing.shared == volume.shared
                && existing.owner == volume.owner
                && existing.backing == volume.backing;
            if same {
                return Ok(Outcome::Finished(format!("volume {id} already exists; nothing done")));
            }
            return Err(format!("volume {id} of role {role} already exists on agent {agent} with other settings"));
        }
        let Some(reservation) = a.reservations.get(&reservation_id) else {
            return Err(format!("reservation {reservation_id} does not exist on agent {agent}"));
        };
        if &reservation.role != role {
            return Err(format!("reservation {reservation_id} is for role {}, not {role}", reservation.role));
        }
        let on_it = self.volume_disk_on(agent, &reservation_id);
        let room = Milli(reservation.resources.disk.0.saturating_sub(on_it.0));
        if room < size {
            return Err(format!("reservation {reservation_id} has {room} MiB of disk outside volumes; volume {id} needs {size}"));
        }
        let in_pool = pool.reserved.get(role).map_or(Milli::ZERO, |r| r.disk);
        if in_pool < size {
            let whose = match actor {
                Actor::Framework { .. } => "in the offers",
                Actor::Operator { .. } => "free",
            };
            return Err(format!("volume {id} needs {size} MiB of role {role}'s disk {whose}; only {in_pool} is"));
        }
        self.check_role_disk(agent, role, size)?;
        if let Some(uri) = &volume.backing {
            self.check_backing_free(agent, role, &id, uri)?;
        }
        tracing::info!(agent_id = %agent, volume_id = %id, role = %role, size = %size, backing = ?volume.backing, "volume created");
        let backing = volume.backing.clone();
        self.agents.get_mut(agent).expect("checked above").volumes.insert((role.clone(), id.clone()), volume);
        self.wants_stale = true;
        let created = format!("created volume {id} of {size} MiB on reservation {reservation_id}");
        Ok(match backing {
            None => Outcome::Finished(created),
            Some(uri) => Outcome::Pending(format!("{created}; agent {agent} attaches it to {uri} (restoring the copy there, if any)")),
        })
    }

    /// A backing holds one volume: refuses a backing that another volume
    /// uses, or that this volume uses on an agent still in the books (it
    /// moves only once that agent is removed; the generation fence in the
    /// backing keeps the old copy from writing after that).
    fn check_backing_free(&self, agent: &AgentId, role: &Role, id: &VolumeId, uri: &str) -> Result<(), String> {
        for (other, a) in &self.agents {
            for v in a.volumes.values() {
                if v.backing.as_deref() != Some(uri) {
                    continue;
                }
                if &v.role != role || &v.id != id {
                    return Err(format!("backing {uri} already backs volume {} of role {} on agent {other}", v.id, v.role));
                }
                if other != agent {
                    let state = if a.reachable { "reachable" } else { "unreachable" };
                    return Err(format!(
                        "volume {id} with backing {uri} is still on agent {other} ({state}); it can move only once that agent is removed"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Why a volume's copy on `agent` may not be used, if its agent found
    /// the backing moved past it.
    pub(super) fn stale_copy(&self, agent: &AgentId, role: &Role, id: &VolumeId) -> Option<&str> {
        self.volume_syncs
            .get(&(agent.clone(), role.clone(), id.clone()))
            .filter(|s| s.stale)
            .map(|s| s.error.as_str())
    }

    /// What an agent reports of a backed volume's copy: kept for `/state`,
    /// and, for a SYNC or a backed CREATE, the operation's final status. A
    /// CREATE whose backing could not be attached is undone (the volume
    /// leaves the books unless a task already holds it).
    pub(super) fn volume_sync_report(&mut self, agent: &AgentId, report: &v1::agent_message::VolumeSync, now: Duration, out: &mut Vec<Output>) {
        let (Ok(role), Ok(id)) = (
            convert::id::<Role>("volume_sync.role", &report.role),
            convert::id::<VolumeId>("volume_sync.volume_id", &report.volume_id),
        ) else {
            tracing::warn!(agent_id = %agent, "agent sent a VOLUME_SYNC with bad ids");
            self.counters.bad_calls += 1;
            return;
        };
        let Some(volume) = self.agents.get(agent).and_then(|a| a.volumes.get(&(role.clone(), id.clone()))).cloned() else {
            tracing::info!(agent_id = %agent, volume_id = %id, "VOLUME_SYNC for a volume the books do not hold; ignored");
            return;
        };
        let backing = volume.backing.clone().unwrap_or_default();
        let error: String = report.error.chars().take(MAX_SYNC_ERROR).collect();
        let doc = VolumeSyncDoc {
            trigger: report.trigger.chars().take(32).collect(),
            error: error.clone(),
            stale: report.stale,
            generation: report.generation,
            files_total: report.files_total,
            files_copied: report.files_copied,
            bytes_total: report.bytes_total,
            bytes_copied: report.bytes_copied,
            millis: report.millis,
            timestamp: self.timestamp(now),
        };
        if error.is_empty() {
            tracing::info!(agent_id = %agent, volume_id = %id, trigger = %doc.trigger, generation = doc.generation, files_copied = doc.files_copied, bytes_copied = doc.bytes_copied, millis = doc.millis, "volume synced");
        } else {
            tracing::warn!(agent_id = %agent, volume_id = %id, trigger = %doc.trigger, %error, "volume sync failed");
        }
        self.volume_syncs.insert((agent.clone(), role.clone(), id.clone()), doc.clone());
        self.wants_stale = true;
        if self.volume_syncs.len() > MAX_SYNC_REPORTS {
            let agents = &self.agents;
            self.volume_syncs.retain(|(a, r, v), _| agents.get(a).is_some_and(|a| a.volumes.contains_key(&(r.clone(), v.clone()))));
        }
        if report.operation_id.is_empty() {
            return;
        }
        let framework = convert::id::<FrameworkId>("volume_sync.framework_id", &report.framework_id).ok();
        let create = report.trigger == "create" || report.trigger == "restore";
        let op = v1::Operation {
            id: report.operation_id.chars().take(weir_model::ids::MAX_ID_LEN).collect(),
            role: role.to_string(),
            kind: Some(if create {
                v1::operation::Kind::Create(v1::operation::Create { volume_id: id.to_string(), ..Default::default() })
            } else {
                v1::operation::Kind::Sync(v1::operation::Sync { volume_id: id.to_string() })
            }),
        };
        let result = if !error.is_empty() {
            if create && self.volume_users(agent, &role, &id).is_empty() {
                if let Some(a) = self.agents.get_mut(agent) {
                    a.volumes.remove(&(role.clone(), id.clone()));
                }
                self.wants_stale = true;
                self.checkpoint_resources(agent, out);
                self.dirty = true;
                Err(format!("{error}; volume {id} is not created"))
            } else {
                // The agent's errors name the volume and the backing.
                Err(error)
            }
        } else if report.trigger == "restore" {
            Ok(Outcome::Finished(format!(
                "restored volume {id} from {backing}: generation {}, {} files, {} bytes in {} ms",
                doc.generation, doc.files_total, doc.bytes_total, doc.millis
            )))
        } else if create {
            Ok(Outcome::Finished(format!("volume {id} is backed by {backing} (empty; generation {})", doc.generation)))
        } else {
            Ok(Outcome::Finished(format!(
                "synced volume {id} to {backing}: generation {}, {} files ({} copied), {} of {} bytes copied in {} ms",
                doc.generation, doc.files_total, doc.files_copied, doc.bytes_copied, doc.bytes_total, doc.millis
            )))
        };
        self.operation_status(agent, framework.as_ref(), &op, result, now, out);
    }

    /// The volume an operation names, if the actor may change it.
    fn own_volume(&self, agent: &AgentId, actor: Actor<'_>, role: &Role, raw: &str, field: &str) -> Result<Volume, String> {
        let id = convert::id::<VolumeId>(field, raw).map_err(err)?;
        let Some(volume) = self.agents[agent].volumes.get(&(role.clone(), id.clone())) else {
            return Err(format!("volume {id} of role {role} does not exist on agent {agent}"));
        };
        if let (Some(framework), Some(owner)) = (actor.framework(), &volume.owner) {
            if owner != framework {
                return Err(format!("volume {id} belongs to another framework"));
            }
        }
        if let Some((framework, task)) = self.volume_users(agent, role, &id).first() {
            return Err(format!("volume {id} is in use by task {framework}/{task}"));
        }
        Ok(volume.clone())
    }

    fn destroy_volume(&mut self, agent: &AgentId, actor: Actor<'_>, role: &Role, raw: &str) -> Result<String, String> {
        let volume = self.own_volume(agent, actor, role, raw, "destroy.volume_id")?;
        tracing::info!(agent_id = %agent, volume_id = %volume.id, role = %role, "volume destroyed");
        self.volume_syncs.remove(&(agent.clone(), role.clone(), volume.id.clone()));
        self.agents.get_mut(agent).expect("checked above").volumes.remove(&(role.clone(), volume.id.clone()));
        self.wants_stale = true;
        Ok(format!("destroyed volume {} ({} MiB); its data is deleted", volume.id, volume.size))
    }

    #[allow(clippy::too_many_arguments)]
    fn resize_volume(
        &mut self,
        agent: &AgentId,
        actor: Actor<'_>,
        role: &Role,
        raw: &str,
        by: f64,
        grow: bool,
        pool: &ResourceSet,
    ) -> Result<String, String> {
        let (kind, field) = if grow { ("grow", "grow.size") } else { ("shrink", "shrink.size") };
        let volume = self.own_volume(agent, actor, role, raw, &format!("{kind}.volume_id"))?;
        let by = convert::size_from_proto(field, by).map_err(err)?;
        let new_size = if grow {
            let on_it = self.volume_disk_on(agent, &volume.reservation);
            let disk = self.agents[agent].reservations.get(&volume.reservation).map_or(Milli::ZERO, |r| r.resources.disk);
            let room = Milli(disk.0.saturating_sub(on_it.0));
            if room < by {
                return Err(format!(
                    "reservation {} has {room} MiB of disk outside volumes; growing volume {} needs {by}",
                    volume.reservation, volume.id
                ));
            }
            let in_pool = pool.reserved.get(role).map_or(Milli::ZERO, |r| r.disk);
            if in_pool < by {
                return Err(format!("growing volume {} needs {by} MiB of role {role}'s disk at hand; only {in_pool} is", volume.id));
            }
            self.check_role_disk(agent, role, by)?;
            Milli(volume.size.0 + by.0)
        } else {
            if by >= volume.size {
                return Err(format!("shrinking volume {} ({} MiB) by {by} MiB would leave nothing", volume.id, volume.size));
            }
            Milli(volume.size.0 - by.0)
        };
        if let Some(v) = self.agents.get_mut(agent).expect("checked above").volumes.get_mut(&(role.clone(), volume.id.clone())) {
            v.size = new_size;
        }
        tracing::info!(agent_id = %agent, volume_id = %volume.id, size = %new_size, "volume resized");
        Ok(format!("volume {} is now {new_size} MiB", volume.id))
    }

    /// Moves resources between reservations in the allocator and in the
    /// agent's total.
    fn convert_resources(&mut self, agent: &AgentId, actor: Actor<'_>, role: &Role, from: &ResourceSet, to: &ResourceSet) -> Result<(), String> {
        let holder = match actor {
            Actor::Framework { id, .. } => Some((id, role)),
            Actor::Operator { .. } => None,
        };
        self.allocator.convert(agent, holder, from, to).map_err(|e| e.to_string())?;
        let a = self.agents.get_mut(agent).expect("checked by the caller");
        a.total = a.total.checked_sub(from).map_err(|e| e.to_string())?.add(to);
        Ok(())
    }

    /// Disk of `role` on `agent` that volumes and tasks' scratch space
    /// claim, plus `extra`.
    fn role_disk_claimed(&self, agent: &AgentId, role: &Role, extra: Milli) -> Milli {
        let a = &self.agents[agent];
        let volumes: u64 = a.volumes.values().filter(|v| &v.role == role).map(|v| v.size.0).sum();
        let scratch: u64 = a
            .tasks
            .iter()
            .filter_map(|k| self.tasks.get(k))
            .filter_map(|t| t.resources.reserved.get(role).map(|r| r.disk.0.saturating_sub(t.volume_disk.0)))
            .sum();
        Milli(volumes.saturating_add(scratch).saturating_add(extra.0))
    }

    /// Refuses `extra` more disk for volumes or scratch space of `role`
    /// when the role's reserved disk on the agent would not hold it.
    pub(super) fn check_role_disk(&self, agent: &AgentId, role: &Role, extra: Milli) -> Result<(), String> {
        let disk = self.agents[agent].total.reserved.get(role).map_or(Milli::ZERO, |r| r.disk);
        let claimed = self.role_disk_claimed(agent, role, extra);
        if claimed > disk {
            return Err(format!(
                "role {role} has {disk} MiB of reserved disk on agent {agent}; volumes and tasks would need {claimed}"
            ));
        }
        Ok(())
    }

    fn volume_disk_on(&self, agent: &AgentId, reservation: &ReservationId) -> Milli {
        Milli(self.agents[agent].volumes.values().filter(|v| &v.reservation == reservation).map(|v| v.size.0).sum())
    }

    /// Live tasks that mount a volume, in order.
    pub(super) fn volume_users(&self, agent: &AgentId, role: &Role, volume: &VolumeId) -> Vec<(FrameworkId, weir_model::TaskId)> {
        let Some(a) = self.agents.get(agent) else { return Vec::new() };
        a.tasks
            .iter()
            .filter(|k| self.tasks.get(*k).is_some_and(|t| &t.role == role && t.volumes.contains(volume)))
            .cloned()
            .collect()
    }

    /// Records every reservation and volume an agent holds in the registry,
    /// then tells the agent. The registry write comes first, so the shell
    /// holds this message and everything after it (the operation's status)
    /// until the write has landed: a new leader knows all it acknowledged.
    pub(super) fn checkpoint_resources(&mut self, agent: &AgentId, out: &mut Vec<Output>) {
        self.record_resources(agent, out);
        let Some(conn) = self.agent_conn(agent) else { return };
        let a = &self.agents[agent];
        out.push(Output::Agent(
            conn,
            agent_message(v1::broker_message::Kind::CheckpointResources(v1::broker_message::CheckpointResources {
                reservations: a.reservations.values().map(convert::reservation_to_proto).collect(),
                volumes: a.volumes.values().map(convert::volume_to_proto).collect(),
            })),
        ));
    }

    /// Records an operation's outcome, and sends it to the framework that
    /// asked (if any).
    pub(super) fn operation_status(
        &mut self,
        agent: &AgentId,
        framework: Option<&FrameworkId>,
        op: &v1::Operation,
        result: Result<Outcome, String>,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> v1::OperationStatus {
        let kind = operation_kind(op);
        let (state, message, reason) = match result {
            Ok(Outcome::Finished(m)) => (v1::OperationState::OperationFinished, m, String::new()),
            Ok(Outcome::Pending(m)) => (v1::OperationState::OperationPending, m, String::new()),
            Err(m) => {
                self.counters.operations_failed += 1;
                tracing::info!(agent_id = %agent, kind, operation_id = %op.id, message = %m, "operation failed");
                (v1::OperationState::OperationFailed, m, "REASON_OPERATION_INVALID".to_owned())
            }
        };
        if state == v1::OperationState::OperationFinished {
            self.counters.operations_finished += 1;
        }
        let status = v1::OperationStatus {
            operation_id: op.id.clone(),
            state: state as i32,
            message,
            reason,
            agent_id: agent.to_string(),
            framework_id: framework.map(|f| f.to_string()).unwrap_or_default(),
            kind: kind.to_owned(),
            timestamp: self.timestamp(now),
        };
        self.operations.push_back(status.clone());
        while self.operations.len() > OPERATIONS_KEPT {
            self.operations.pop_front();
        }
        if let Some(conn) = framework.and_then(|f| self.frameworks.get(f)).and_then(|f| f.conn) {
            out.push(Output::Framework(conn, event(v1::event::Kind::OperationStatus(status.clone()))));
        }
        status
    }

    /// An operator's operations on an agent's free resources, in order.
    /// Returns each one's status and the outputs to carry out.
    pub fn operator_operations(&mut self, principal: &str, agent: &AgentId, ops: &[v1::Operation], now: Duration) -> (Vec<v1::OperationStatus>, Vec<Output>) {
        let mut out = Vec::new();
        let mut statuses = Vec::new();
        for op in ops.iter().take(super::accept::MAX_OPERATIONS_PER_ACCEPT) {
            let result = match self.allocator.free(agent) {
                None => Err(format!("agent {agent} is not known")),
                Some(_) if self.recovery.is_some() => Err("the broker is recovering; try again once agents have re-registered".to_owned()),
                Some(mut free) => self.apply_operation(agent, Actor::Operator { principal }, op, &mut free, &mut out),
            };
            statuses.push(self.operation_status(agent, None, op, result, now, &mut out));
        }
        (statuses, out)
    }

    /// A framework asked, at teardown, for what it reserved to go: its
    /// volumes are destroyed and its reservations that are free and hold no
    /// other volume are unreserved. Called after its tasks and offers left
    /// the books.
    pub(super) fn release_framework_resources(&mut self, framework: &FrameworkId, out: &mut Vec<Output>) {
        let agents: Vec<AgentId> = self.agents.keys().cloned().collect();
        for agent in agents {
            let mut changed = false;
            let volumes: Vec<(Role, VolumeId)> = self.agents[&agent]
                .volumes
                .iter()
                .filter(|(_, v)| v.owner.as_ref() == Some(framework))
                .map(|(k, _)| k.clone())
                .collect();
            for (role, id) in volumes {
                if self.volume_users(&agent, &role, &id).is_empty() {
                    self.agents.get_mut(&agent).expect("listed").volumes.remove(&(role, id));
                    self.wants_stale = true;
                    changed = true;
                }
            }
            let reservations: Vec<Reservation> = self.agents[&agent]
                .reservations
                .values()
                .filter(|r| r.framework.as_ref() == Some(framework))
                .cloned()
                .collect();
            for r in reservations {
                let mut free = self.allocator.free(&agent).unwrap_or_default();
                let unreserve = v1::operation::Unreserve { reservation_id: r.id.to_string() };
                match self.unreserve(&agent, Actor::Operator { principal: "" }, &r.role, &unreserve, &mut free) {
                    Ok(_) => changed = true,
                    Err(reason) => {
                        tracing::info!(agent_id = %agent, reservation_id = %r.id, %reason, "reservation kept at teardown")
                    }
                }
            }
            if changed {
                self.checkpoint_resources(&agent, out);
                self.dirty = true;
            }
        }
    }

    /// Every reservation and volume on an agent, for the operator API.
    pub fn reservations_of(&self, agent: &AgentId) -> (Vec<v1::ReservationInfo>, Vec<v1::VolumeInfo>) {
        let Some(a) = self.agents.get(agent) else { return (Vec::new(), Vec::new()) };
        (
            a.reservations.values().map(convert::reservation_to_proto).collect(),
            a.volumes.values().map(convert::volume_to_proto).collect(),
        )
    }

    /// The reservations and volumes an offer in `role` shows `framework`:
    /// the role's reservations on the agent, and the volumes of the role it
    /// may use that no live task holds (a shared one even then).
    pub(super) fn offer_annotations(&self, agent: &AgentId, framework: &FrameworkId, role: &Role) -> (Vec<v1::ReservationInfo>, Vec<v1::VolumeInfo>) {
        let Some(a) = self.agents.get(agent) else { return (Vec::new(), Vec::new()) };
        let reservations = a.reservations.values().filter(|r| &r.role == role).map(convert::reservation_to_proto).collect();
        let volumes = a
            .volumes
            .values()
            .filter(|v| &v.role == role && v.visible_to(framework))
            .filter(|v| self.stale_copy(agent, role, &v.id).is_none())
            .filter(|v| v.shared || self.volume_users(agent, role, &v.id).is_empty())
            .map(convert::volume_to_proto)
            .collect();
        (reservations, volumes)
    }
}
