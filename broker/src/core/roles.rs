//! Role policies (issue 19): an operator's weight, priority band and quota
//! (guarantee and limit per scalar kind) for each role, nested roles
//! included (`eng/analytics`). The allocator enforces them; this module
//! checks a change as a whole, applies it all or nothing, and records it
//! in the registry (weights in `weights`, band and quota in `quotas`)
//! before it is acknowledged, so a new leader keeps them.
//!
//! A change is refused, changing nothing, when a role name or weight is
//! bad, when it would take the broker past `broker.roles.max`, when a
//! guarantee is above its limit or the guarantees below a role add up to
//! more than its own, or when the guarantees would add up to more than
//! the cluster (unless `force`, for agents still joining). A cluster that
//! has shrunk below its guarantees (agents lost) does not block changes
//! that do not add to them; `/state` reports it (`allocation.guarantees_fit`).

use weir_allocator::DEFAULT_WEIGHT;
use weir_model::{Quota, Role};
use weir_proto::{convert, v1};

use super::{recovery, BrokerCore, Output};

/// One role's policy as an operator sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolePolicy {
    pub role: Role,
    pub weight: f64,
    pub priority: u32,
    pub quota: Quota,
}

impl RolePolicy {
    /// The policy a role has when nobody set one.
    pub fn default_for(role: Role) -> RolePolicy {
        RolePolicy { role, weight: DEFAULT_WEIGHT, priority: 0, quota: Quota::default() }
    }

    fn is_default(&self) -> bool {
        self.weight == DEFAULT_WEIGHT && self.priority == 0 && self.quota.is_none()
    }
}

impl BrokerCore {
    /// The allocation policy in force (`broker.allocator.policy`).
    pub fn allocation_policy(&self) -> &'static str {
        self.allocator.policy().name()
    }

    /// Every role's policy, by name (roles at their defaults that nothing
    /// uses are not known, and not listed).
    pub fn role_policies(&self) -> Vec<RolePolicy> {
        self.allocator
            .role_shares()
            .into_iter()
            .map(|s| RolePolicy { role: s.role, weight: s.weight, priority: s.priority, quota: s.quota })
            .collect()
    }

    /// Every role's shares and quota standing (for the operator API).
    pub fn role_shares(&self) -> Vec<weir_allocator::RoleShare> {
        self.allocator.role_shares()
    }

    /// What guaranteed roles lack now (held back from everyone else).
    pub fn guarantee_shortfall(&self) -> weir_model::Resources {
        self.allocator.guarantee_shortfall()
    }

    fn role_policy(&self, role: &Role) -> RolePolicy {
        self.role_policies().into_iter().find(|p| &p.role == role).unwrap_or_else(|| RolePolicy::default_for(role.clone()))
    }

    /// Replaces the policies of the roles named, all or nothing. The
    /// outputs hold the registry writes that must land before the change
    /// is acknowledged.
    pub fn set_role_policies(&mut self, policies: Vec<RolePolicy>, force: bool) -> Result<Vec<Output>, String> {
        for (i, p) in policies.iter().enumerate() {
            weir_model::ids::validate_role(p.role.as_str()).map_err(|e| format!("roles[{i}]: {e}"))?;
            if !(p.weight.is_finite() && p.weight > 0.0) {
                return Err(format!("roles[{i}]: weight {} for role {} must be a finite number > 0", p.weight, p.role));
            }
            if policies[..i].iter().any(|q| q.role == p.role) {
                return Err(format!("roles[{i}]: role {} is named twice", p.role));
            }
        }
        let adding: Vec<Role> = policies.iter().filter(|p| !p.is_default()).map(|p| p.role.clone()).collect();
        self.room_for_roles(&adding)?;
        let before: Vec<RolePolicy> = policies.iter().map(|p| self.role_policy(&p.role)).collect();
        let over_before = self.allocator.check_quotas(true).is_err();
        let guaranteed_before = self.allocator.guaranteed_total();
        for p in &policies {
            self.apply_role_policy(p);
        }
        let verdict = self.allocator.check_quotas(false).and_then(|()| match self.allocator.check_quotas(!force) {
            // Agents lost since: a change that adds no guarantee may go on.
            Err(_) if over_before && guaranteed_before.contains(&self.allocator.guaranteed_total()) => Ok(()),
            other => other,
        });
        if let Err(err) = verdict {
            for p in before.iter().rev() {
                self.apply_role_policy(p);
            }
            return Err(err.to_string());
        }
        self.dirty = true;
        let mut outputs = Vec::new();
        for p in &policies {
            tracing::info!(role = %p.role, weight = p.weight, priority = p.priority, guarantee = %p.quota.guarantee, limit = %p.quota.limit, "role policy set");
            outputs.push(Output::Registry(if p.weight == DEFAULT_WEIGHT {
                recovery::delete(recovery::WEIGHTS, p.role.as_str())
            } else {
                recovery::put(recovery::WEIGHTS, p.role.as_str(), &v1::RoleWeight { role: p.role.to_string(), weight: p.weight })
            }));
            outputs.push(Output::Registry(if p.priority == 0 && p.quota.is_none() {
                recovery::delete(recovery::QUOTAS, p.role.as_str())
            } else {
                recovery::put(recovery::QUOTAS, p.role.as_str(), &quota_record(p))
            }));
        }
        Ok(outputs)
    }

    /// Applies a policy already checked (or one being put back).
    pub(super) fn apply_role_policy(&mut self, p: &RolePolicy) {
        self.allocator.restore_quota(p.role.clone(), p.quota.clone());
        self.allocator.set_priority(p.role.clone(), p.priority);
        if let Err(err) = self.allocator.set_weight(p.role.clone(), p.weight) {
            tracing::error!(role = %p.role, error = %err, "a checked weight was refused");
        }
    }
}

/// A role's policy on the wire (weight included).
pub fn role_policy_to_proto(p: &RolePolicy) -> v1::RolePolicy {
    let (guarantee, limit) = convert::quota_to_proto(&p.quota);
    v1::RolePolicy { role: p.role.to_string(), weight: p.weight, priority: p.priority, guarantee, limit, ..Default::default() }
}

/// A role's policy from the wire: weight 0 is the default weight.
pub fn role_policy_from_proto(field: &str, p: &v1::RolePolicy) -> Result<RolePolicy, String> {
    weir_model::ids::validate_role(&p.role).map_err(|e| format!("{field}: {e}"))?;
    let quota = convert::quota_from_proto(field, &p.guarantee, &p.limit).map_err(|e| e.to_string())?;
    let weight = if p.weight == 0.0 { DEFAULT_WEIGHT } else { p.weight };
    Ok(RolePolicy { role: Role::new(p.role.clone()), weight, priority: p.priority, quota })
}

/// The registry's `quotas` record: band and quota (the weight is kept in
/// `weights`).
fn quota_record(p: &RolePolicy) -> v1::RolePolicy {
    v1::RolePolicy { weight: 0.0, ..role_policy_to_proto(p) }
}
