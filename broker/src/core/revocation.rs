//! Revocation with a grace period (issue 19), as the Mesos paper describes
//! it. Guarantees are first kept by headroom (the allocator never lets
//! free resources fall below what guaranteed roles lack); revocation is
//! for when that is not enough: a guarantee set on a cluster already full,
//! agents lost, or tasks launched before the guarantee existed.
//!
//! After each complete allocation cycle: when topmost guaranteed roles
//! that have a framework asking lack more than the unreserved free
//! resources and the revocations under way will give, the broker takes
//! back, in this order:
//! 1. revocable offers (lent headroom nobody launched on yet), rescinded
//!    at once, newest first;
//! 2. tasks on revocable resources, newest first, with
//!    `broker.revocation.revocable-grace` (0 s by default: lent resources
//!    come back at once, as Mesos revokes them);
//! 3. other tasks, newest first, with `broker.revocation.grace`.
//!
//! Whatever it takes:
//! - never in a starved role or below it, nor one its framework labelled
//!   `weir.revocation.exempt=true` (a task others depend on);
//! - each only if it gives some of a kind still lacking (so nothing is
//!   revoked for nothing, and few are);
//! - never a plain task whose removal would take any role above it (its
//!   own included) below that role's guarantee (revocable holdings never
//!   count towards a guarantee, so they are always fair game);
//! - only unreserved resources count (a reservation cannot go to another
//!   role).
//!
//! Each framework hears `Event.Revocation` (its tasks, the deadline, the
//! role they go to; one event per grace); at the deadline the broker
//! kills those still running, and their end carries the reason
//! `REASON_CONTAINER_PREEMPTED`. The freed resources then sit in the
//! headroom, which only the starved role may take. Revocations are not
//! recorded in the registry: a new leader plans afresh.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_model::{FrameworkId, Resources, Role, TaskId};
use weir_proto::{convert, v1};

use super::{event, kill_task_message, BrokerCore, Output};

pub use weir_model::task::REVOKED_REASON;

#[derive(Debug, Clone)]
pub(super) struct Revocation {
    pub(super) for_role: Role,
    pub(super) deadline: Duration,
    /// The kill has been sent (its end is then reported as revoked).
    pub(super) killed: bool,
}

/// Per kind, `a - b`, or 0.
fn minus(a: &Resources, b: &Resources) -> Resources {
    let mut out = Resources::default();
    for name in weir_model::resources::SCALAR_NAMES {
        let v = a.scalar(name).unwrap_or_default().0.saturating_sub(b.scalar(name).unwrap_or_default().0);
        set(&mut out, name, v);
    }
    out
}

fn set(r: &mut Resources, name: &str, v: u64) {
    let m = weir_model::Milli(v);
    match name {
        "cpus" => r.cpus = m,
        "mem" => r.mem = m,
        "disk" => r.disk = m,
        _ => r.gpus = m,
    }
}

/// Whether `r` holds some of a kind `needed` still lacks.
fn helps(r: &Resources, needed: &Resources) -> bool {
    weir_model::resources::SCALAR_NAMES.iter().any(|n| {
        !needed.scalar(n).unwrap_or_default().is_zero() && !r.scalar(n).unwrap_or_default().is_zero()
    })
}

/// Whether `role` is `outer` or lies below it.
fn within(role: &Role, outer: &Role) -> bool {
    role == outer || (role.as_str().len() > outer.as_str().len() && role.as_str().starts_with(outer.as_str()) && role.as_str().as_bytes()[outer.as_str().len()] == b'/')
}

impl BrokerCore {
    /// Picks tasks to revoke for starved guaranteed roles and tells their
    /// frameworks (see the module's doc).
    pub(super) fn plan_revocations(&mut self, now: Duration, out: &mut Vec<Output>) {
        let tasks = &self.tasks;
        self.revocations.retain(|key, _| tasks.get(key).is_some_and(|t| !t.state.is_terminal()));
        let starved = self.allocator.starved_guarantees();
        if starved.is_empty() {
            return;
        }
        let mut needed = starved.iter().fold(Resources::default(), |acc, (_, lack)| acc.add(lack));
        needed = minus(&needed, &self.allocator.free_unreserved_total());
        // What revocations under way will free, counted once.
        let shares: BTreeMap<Role, weir_allocator::RoleShare> =
            self.allocator.role_shares().into_iter().map(|s| (s.role.clone(), s)).collect();
        let path = |role: &Role| {
            let mut roles = vec![role.clone()];
            while let Some(parent) = roles.last().and_then(|r| shares.get(r)).and_then(|s| s.parent.clone()) {
                roles.push(parent);
            }
            roles
        };
        // Plain tasks being taken from each role (revocable ones never
        // counted towards a guarantee in the first place).
        let mut taken: BTreeMap<Role, Resources> = BTreeMap::new();
        for key in self.revocations.keys() {
            if let Some(t) = self.tasks.get(key) {
                needed = minus(&needed, &t.resources.unreserved);
                if !t.revocable {
                    for r in path(&t.role) {
                        taken.entry(r).or_default().add_assign(&t.resources.unreserved);
                    }
                }
            }
        }
        if !helps(&needed, &needed) {
            return;
        }
        // Lent headroom nobody runs on yet comes back first, at once.
        let mut lent: Vec<super::OfferKey> = self
            .offers
            .iter()
            .filter(|(_, o)| o.revocable && !starved.iter().any(|(role, _)| within(&o.role, role)))
            .map(|(&key, _)| key)
            .collect();
        lent.sort_unstable_by(|a, b| b.cmp(a));
        for key in lent {
            let Some(offer) = self.offers.get(&key) else { continue };
            if !helps(&offer.resources.unreserved, &needed) {
                continue;
            }
            needed = minus(&needed, &offer.resources.unreserved);
            tracing::info!(offer_id = %self.offer_id(key), framework_id = %offer.framework, agent_id = %offer.agent, "rescinding a revocable offer for a guaranteed role");
            self.rescind_offer(key, out);
            if !helps(&needed, &needed) {
                return;
            }
        }
        let mut candidates: Vec<(&(FrameworkId, TaskId), &super::Task)> = self
            .tasks
            .iter()
            .filter(|(key, t)| {
                !t.state.is_terminal()
                    && !t.exempt
                    && !self.revocations.contains_key(*key)
                    && !t.resources.unreserved.is_empty()
                    && !starved.iter().any(|(role, _)| within(&t.role, role))
            })
            .collect();
        // Revocable tasks first, then the newest.
        candidates.sort_by(|a, b| {
            b.1.revocable.cmp(&a.1.revocable).then_with(|| b.1.placed_at.cmp(&a.1.placed_at)).then_with(|| a.0.cmp(b.0))
        });
        let mut victims: Vec<(FrameworkId, TaskId)> = Vec::new();
        for (key, t) in candidates {
            if !helps(&t.resources.unreserved, &needed) {
                continue;
            }
            let roles = path(&t.role);
            let keeps_guarantees = t.revocable
                || roles.iter().all(|r| {
                    let Some(share) = shares.get(r) else { return true };
                    let held = minus(&share.subtree, &share.revocable);
                    let left = minus(&minus(&held, taken.get(r).unwrap_or(&Resources::default())), &t.resources.unreserved);
                    weir_model::resources::SCALAR_NAMES.iter().all(|n| {
                        let g = share.quota.guarantee.scalar(n).unwrap_or_default();
                        g.is_zero() || left.scalar(n).unwrap_or_default() >= g
                    })
                });
            if !keeps_guarantees {
                continue;
            }
            if !t.revocable {
                for r in roles {
                    taken.entry(r).or_default().add_assign(&t.resources.unreserved);
                }
            }
            needed = minus(&needed, &t.resources.unreserved);
            victims.push(key.clone());
            if !helps(&needed, &needed) {
                break;
            }
        }
        if victims.is_empty() {
            return;
        }
        let for_role = starved.iter().map(|(r, _)| r.to_string()).collect::<Vec<_>>().join(",");
        let (plain_grace, lent_grace) = (self.settings.revocation_grace, self.settings.revocable_grace);
        let grace = move |revocable: bool| if revocable { lent_grace } else { plain_grace };
        // One event per framework and grace: a notice has one deadline.
        let mut by_framework: BTreeMap<(FrameworkId, bool), Vec<v1::event::RevokedTask>> = BTreeMap::new();
        for key in victims {
            let Some(t) = self.tasks.get(&key) else { continue };
            let grace = grace(t.revocable);
            tracing::info!(framework_id = %key.0, task_id = %key.1, role = %t.role, for_role = %for_role, revocable = t.revocable, grace_seconds = grace.as_secs_f64(), "revoking a task for a guaranteed role");
            by_framework.entry((key.0.clone(), t.revocable)).or_default().push(v1::event::RevokedTask {
                task_id: key.1.to_string(),
                agent_id: t.agent.to_string(),
                role: t.role.to_string(),
                resources: convert::resources_to_proto(&t.resources),
                revocable: t.revocable,
            });
            self.revocations.insert(key, Revocation { for_role: Role::new(for_role.clone()), deadline: now + grace, killed: false });
        }
        for ((framework, revocable), tasks) in by_framework {
            let grace = grace(revocable);
            let deadline = now + grace;
            if let Some(conn) = self.frameworks.get(&framework).and_then(|f| f.conn) {
                let message = format!(
                    "{} {}task(s) revoked for role {for_role}, which is below its guarantee; they are killed in {}s unless ended sooner",
                    tasks.len(),
                    if revocable { "revocable " } else { "" },
                    grace.as_secs_f64()
                );
                out.push(Output::Framework(
                    conn,
                    event(v1::event::Kind::Revocation(v1::event::Revocation {
                        tasks,
                        deadline: self.timestamp(deadline),
                        for_role: for_role.clone(),
                        message,
                    })),
                ));
            }
        }
    }

    /// Kills revoked tasks whose deadline has passed (once; a task whose
    /// agent has no stream now is killed when the next tick finds one).
    pub(super) fn enforce_revocations(&mut self, now: Duration, out: &mut Vec<Output>) {
        if self.revocations.is_empty() {
            return;
        }
        let due: Vec<(FrameworkId, TaskId)> =
            self.revocations.iter().filter(|(_, r)| !r.killed && r.deadline <= now).map(|(k, _)| k.clone()).collect();
        for key in due {
            let Some(task) = self.tasks.get(&key) else {
                self.revocations.remove(&key);
                continue;
            };
            let Some(conn) = self.agents.get(&task.agent).and_then(|a| a.conn) else { continue };
            tracing::info!(framework_id = %key.0, task_id = %key.1, agent_id = %task.agent, "revocation deadline passed; killing the task");
            out.push(Output::Agent(conn, kill_task_message(&key.0, &key.1)));
            if let Some(r) = self.revocations.get_mut(&key) {
                r.killed = true;
            }
        }
    }

    /// Revocations under way, for `/state`: (framework, task, for role,
    /// deadline, killed).
    pub(super) fn revocations_doc(&self, now: Duration) -> Vec<super::state::RevocationDoc> {
        self.revocations
            .iter()
            .map(|((framework, task), r)| super::state::RevocationDoc {
                framework_id: framework.to_string(),
                task_id: task.to_string(),
                for_role: r.for_role.to_string(),
                seconds_left: r.deadline.saturating_sub(now).as_secs_f64(),
                killed: r.killed,
            })
            .collect()
    }
}
