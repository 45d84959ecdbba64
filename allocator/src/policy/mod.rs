//! Allocation policies: how the allocator orders the candidates for an
//! agent's free resources.
//!
//! The allocator keeps every offerable (framework, role) client in an
//! ordered set per role, and every role in an ordered set per parent role
//! (or at the top); for each agent it walks those sets from the front and
//! grants to the first client that can take the agent. A policy only says
//! what the leading fields of those sort keys are; the walk, the books,
//! quotas (limits and guarantee headroom, which come before any policy)
//! and the tie-breaks (least recently granted, then id) stay the
//! allocator's. So a policy is a pure function of a few numbers, and a new
//! one is one file here plus one line in [`ALL`].
//!
//! Keys are recomputed only when a client's or role's numbers change
//! (O(log n) per grant), never per comparison, so a policy costs the
//! cycle nothing beyond the virtual call at each re-file.

use std::fmt::Debug;
use std::sync::Arc;

mod drf;
mod fifo;
mod strict_priority;

pub use drf::Drf;
pub use fifo::Fifo;
pub use strict_priority::StrictPriority;

/// What a policy sees of one (framework, role) client.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientView {
    /// Dominant share of what the client holds, against the active total.
    pub share: f64,
    /// When its framework first subscribed (or was first seen): a
    /// sequence number, lower is older.
    pub arrival: u64,
}

/// What a policy sees of one role among its siblings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoleView {
    /// Dominant share of what the role's subtree holds (plus reservations
    /// nobody holds) divided by its weight.
    pub weighted_share: f64,
    /// The role's priority band (higher goes first under strict priority).
    pub priority: u32,
    /// The smallest client key among the role's offerable clients and
    /// child roles (for policies that order roles by their best member;
    /// 0 unless the policy's `orders_roles_by_first_member`).
    pub first_member: u64,
}

/// One allocation policy. Lower keys go first.
pub trait Policy: Debug + Send + Sync {
    /// The name `broker.allocator.policy` selects it by.
    fn name(&self) -> &'static str;

    /// The leading field of a client's key within its role.
    fn client_key(&self, client: &ClientView) -> u64;

    /// The two leading fields of a role's key among its siblings.
    fn role_key(&self, role: &RoleView) -> (u64, u64);

    /// Whether `role_key` reads `RoleView::first_member` (it costs two
    /// lookups per re-file, so the allocator fills it in only when asked).
    fn orders_roles_by_first_member(&self) -> bool {
        false
    }
}

/// Every policy, by name. The first is the default.
pub const ALL: &[fn() -> Arc<dyn Policy>] = &[|| Arc::new(Drf), || Arc::new(StrictPriority), || Arc::new(Fifo)];

/// The policy called `name`, or `None`.
pub fn by_name(name: &str) -> Option<Arc<dyn Policy>> {
    ALL.iter().map(|make| make()).find(|p| p.name() == name)
}

/// The names of every policy, for error messages and documentation.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|make| make().name()).collect()
}

/// The default policy: weighted DRF.
pub fn default_policy() -> Arc<dyn Policy> {
    Arc::new(Drf)
}

/// A non-negative share as sort bits: IEEE bit patterns of non-negative
/// floats order like their values (`+ 0.0` turns -0.0 into +0.0).
pub fn share_bits(share: f64) -> u64 {
    debug_assert!(share >= 0.0 && share.is_finite(), "share {share}");
    (share + 0.0).to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_is_found_by_its_name_and_names_are_unique() {
        let names = names();
        assert_eq!(names, vec!["drf", "strict-priority", "fifo"]);
        for name in &names {
            assert_eq!(by_name(name).map(|p| p.name()), Some(*name));
        }
        assert!(by_name("lottery").is_none());
        assert_eq!(default_policy().name(), "drf");
    }

    #[test]
    fn share_bits_order_like_shares() {
        let shares = [0.0, -0.0, 1e-9, 0.25, 0.5, 1.0, 3.0];
        for a in shares {
            for b in shares {
                assert_eq!(share_bits(a).cmp(&share_bits(b)), a.partial_cmp(&b).unwrap(), "{a} vs {b}");
            }
        }
    }
}
