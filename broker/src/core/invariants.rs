//! The books' invariants as one check, for tests and the cluster
//! simulation (`weir-sim`) to call after every step.
//!
//! What it checks (the promises listed at the top of `core/mod.rs`):
//! - on every agent, what the allocator holds free plus every live offer
//!   plus every task in the books is exactly the agent's total;
//! - offers, tasks and connections are indexed consistently: an offer is in
//!   its agent's and its framework's sets and in the expiry queue; a task
//!   in its agent's and framework's sets; a connection binds one id whose
//!   record names that connection;
//! - every agent the books hold is known to the allocator; none under
//!   maintenance holds an offer, and none is one marked gone;
//! - reservations and volumes (see `reservations.rs`): the total is the
//!   reported resources with each reservation moved to its role; every
//!   volume lies on a reservation of its role with room for it; a role's
//!   volumes plus its tasks' scratch disk fit in its reserved disk; a
//!   volume that is not shared has at most one live user, and every mount
//!   names a volume that exists.
//!
//! It walks all the books, so it is for tests, not for the shell's loop.

use std::collections::BTreeMap;

use weir_model::{Milli, ResourceSet, Role};

use super::BrokerCore;

impl BrokerCore {
    /// Checks the books against each other; says what is out of step.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, a) in &self.agents {
            let Some(free) = self.allocator.free(id) else {
                return Err(format!("agent {id} is in the books but not in the allocator"));
            };
            if a.offers.iter().collect::<std::collections::BTreeSet<_>>().len() != a.offers.len() {
                return Err(format!("agent {id} lists an offer twice: {:?}", a.offers));
            }
            if self.is_draining(id) && !a.offers.is_empty() {
                return Err(format!("agent {id} is under maintenance ({}) but has {} offer(s)", self.drain_state(id), a.offers.len()));
            }
            if self.is_gone(id) {
                return Err(format!("agent {id} was marked gone but is in the books"));
            }
            let mut sum = free.clone();
            let mut offered = ResourceSet::default();
            for offer_id in &a.offers {
                let Some(o) = self.offers.get(offer_id) else {
                    return Err(format!("agent {id} lists offer {offer_id}, which does not exist"));
                };
                if &o.agent != id {
                    return Err(format!("agent {id} lists offer {offer_id}, which is on agent {}", o.agent));
                }
                offered.add_assign(&o.resources);
            }
            sum.add_assign(&offered);
            let mut used = ResourceSet::default();
            for key in &a.tasks {
                let Some(t) = self.tasks.get(key) else {
                    return Err(format!("agent {id} lists task {}/{}, which is not in the books", key.0, key.1));
                };
                if &t.agent != id {
                    return Err(format!("agent {id} lists task {}/{}, which the books place on {}", key.0, key.1, t.agent));
                }
                used.add_assign(&t.resources);
            }
            sum.add_assign(&used);
            if sum != a.total {
                return Err(format!(
                    "agent {id}: free {free} + offered {offered} + used {used} = {sum}, but its total is {}",
                    a.total
                ));
            }
        }
        self.check_reservation_books()?;
        for (key, o) in &self.offers {
            let offer_id = self.offer_id(*key);
            if self.offer_key(offer_id.as_str()) != Some(*key) {
                return Err(format!("offer {offer_id}'s id does not lead back to key {key}"));
            }
            if !self.agents.get(&o.agent).is_some_and(|a| a.offers.contains(key)) {
                return Err(format!("offer {offer_id} is not listed by its agent {}", o.agent));
            }
            if !self.frameworks.get(&o.framework).is_some_and(|f| f.offers.contains(key)) {
                return Err(format!("offer {offer_id} is not listed by its framework {}", o.framework));
            }
            if !self.offer_expiry.contains(o.expires, *key) {
                return Err(format!("offer {offer_id} never expires: it is not in the expiry queue"));
            }
        }
        // Stale entries (of offers taken back) are bounded by compaction.
        if self.offer_expiry.len() > 2 * self.offers.len() + 1024 {
            return Err(format!("{} offers but {} expiry entries", self.offers.len(), self.offer_expiry.len()));
        }
        for ((framework, task_id), t) in &self.tasks {
            if t.state.is_terminal() {
                return Err(format!("task {framework}/{task_id} is {} but still in the live books", t.state));
            }
            if !self.agents.get(&t.agent).is_some_and(|a| a.tasks.contains(&(framework.clone(), task_id.clone()))) {
                return Err(format!("task {framework}/{task_id} is not listed by its agent {}", t.agent));
            }
            if !self.frameworks.get(framework).is_some_and(|f| f.tasks.contains(task_id)) {
                return Err(format!("task {framework}/{task_id} is not listed by its framework"));
            }
        }
        for (id, f) in &self.frameworks {
            for task_id in &f.tasks {
                if !self.tasks.contains_key(&(id.clone(), task_id.clone())) {
                    return Err(format!("framework {id} lists task {task_id}, which is not in the books"));
                }
            }
            for offer_id in &f.offers {
                if self.offers.get(offer_id).is_none_or(|o| &o.framework != id) {
                    return Err(format!("framework {id} lists offer {offer_id}, which is not its own"));
                }
            }
        }
        for (conn, id) in &self.agent_conns {
            if self.agents.get(id).and_then(|a| a.conn) != Some(*conn) {
                return Err(format!("connection {conn} is bound to agent {id}, whose record names another"));
            }
        }
        for (id, a) in &self.agents {
            if let Some(conn) = a.conn {
                if self.agent_conns.get(&conn) != Some(id) {
                    return Err(format!("agent {id} names connection {conn}, which is not bound to it"));
                }
            }
        }
        for (conn, id) in &self.framework_conns {
            if self.frameworks.get(id).and_then(|f| f.conn) != Some(*conn) {
                return Err(format!("connection {conn} is bound to framework {id}, whose record names another"));
            }
        }
        for (id, f) in &self.frameworks {
            if let Some(conn) = f.conn {
                if self.framework_conns.get(&conn) != Some(id) {
                    return Err(format!("framework {id} names connection {conn}, which is not bound to it"));
                }
            }
        }
        Ok(())
    }

    fn check_reservation_books(&self) -> Result<(), String> {
        for (id, a) in &self.agents {
            let mut expected = a.configured.clone();
            for (rid, r) in &a.reservations {
                if &r.id != rid {
                    return Err(format!("agent {id}: reservation filed as {rid} is named {}", r.id));
                }
                let from = ResourceSet::unreserved(r.resources.clone());
                expected = match expected.checked_sub(&from) {
                    Ok(rest) => rest,
                    Err(_) => return Err(format!("agent {id}: reservation {rid} ({}) is not in its unreserved resources", r.resources)),
                };
                expected.reserved.entry(r.role.clone()).or_default().add_assign(&r.resources);
            }
            if expected != a.total {
                return Err(format!("agent {id}: reported {} with its reservations is {expected}, but its total is {}", a.configured, a.total));
            }
            let mut on_reservation: BTreeMap<_, Milli> = BTreeMap::new();
            let mut by_role: BTreeMap<Role, Milli> = BTreeMap::new();
            for ((role, vid), v) in &a.volumes {
                if &v.role != role || &v.id != vid {
                    return Err(format!("agent {id}: volume filed as {role}/{vid} is {}/{}", v.role, v.id));
                }
                let Some(r) = a.reservations.get(&v.reservation).filter(|r| &r.role == role) else {
                    return Err(format!("agent {id}: volume {vid} lies on {}, not a reservation of role {role}", v.reservation));
                };
                let sum = on_reservation.entry(v.reservation.clone()).or_default();
                *sum = Milli(sum.0 + v.size.0);
                if *sum > r.resources.disk {
                    return Err(format!("agent {id}: volumes on reservation {} need {sum} MiB; it holds {}", r.id, r.resources.disk));
                }
                let role_sum = by_role.entry(role.clone()).or_default();
                *role_sum = Milli(role_sum.0 + v.size.0);
            }
            let mut users: BTreeMap<(Role, weir_model::VolumeId), usize> = BTreeMap::new();
            for key in &a.tasks {
                let Some(t) = self.tasks.get(key) else { continue };
                let disk = t.resources.reserved.get(&t.role).map_or(Milli::ZERO, |r| r.disk);
                if t.volume_disk > disk {
                    return Err(format!("task {}/{}: volume disk {} exceeds its reserved disk {disk}", key.0, key.1, t.volume_disk));
                }
                let role_sum = by_role.entry(t.role.clone()).or_default();
                *role_sum = Milli(role_sum.0 + disk.0 - t.volume_disk.0);
                for m in &t.volumes {
                    let Some(v) = a.volumes.get(&(t.role.clone(), m.clone())) else {
                        return Err(format!("task {}/{} mounts volume {m}, which agent {id} does not hold", key.0, key.1));
                    };
                    let n = users.entry((t.role.clone(), m.clone())).or_default();
                    *n += 1;
                    if *n > 1 && !v.shared {
                        return Err(format!("agent {id}: volume {m} is not shared but has {n} live users"));
                    }
                }
            }
            for (role, claimed) in by_role {
                let disk = a.total.reserved.get(&role).map_or(Milli::ZERO, |r| r.disk);
                if claimed > disk {
                    return Err(format!("agent {id}: role {role} has {disk} MiB of reserved disk but volumes and scratch claim {claimed}"));
                }
            }
        }
        Ok(())
    }
}
