//! Strict priority: roles sit in priority bands (`priority`, higher first;
//! 0 by default). Among siblings, every role of a higher band comes before
//! any role of a lower one, so a lower band gets only what the higher
//! bands leave (what they do not ask for, or cannot take on that agent);
//! inside a band, and among clients of a role, weighted DRF.

use super::{share_bits, ClientView, Policy, RoleView};

#[derive(Clone, Copy, Debug, Default)]
pub struct StrictPriority;

impl Policy for StrictPriority {
    fn name(&self) -> &'static str {
        "strict-priority"
    }

    fn client_key(&self, client: &ClientView) -> u64 {
        share_bits(client.share)
    }

    fn role_key(&self, role: &RoleView) -> (u64, u64) {
        (u64::from(u32::MAX - role.priority), share_bits(role.weighted_share))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_higher_band_goes_first_whatever_its_share_and_drf_inside_a_band() {
        let role = |weighted_share, priority| RoleView { weighted_share, priority, first_member: 0 };
        let p = StrictPriority;
        assert!(p.role_key(&role(0.99, 2)) < p.role_key(&role(0.0, 1)));
        assert!(p.role_key(&role(0.1, 1)) < p.role_key(&role(0.2, 1)));
        assert!(p.role_key(&role(5.0, u32::MAX)) < p.role_key(&role(0.0, 0)));
    }

    #[test]
    fn a_lower_band_gets_only_what_the_higher_band_leaves() {
        use std::time::Duration;
        use weir_model::{AgentId, FrameworkId, ResourceSet, Role};

        let mut alloc = crate::Allocator::new(crate::AllocatorConfig::default());
        alloc.set_policy(std::sync::Arc::new(StrictPriority));
        for i in 0..4 {
            alloc.add_agent(AgentId::new(format!("a{i}")), ResourceSet::parse("cpus:4;mem:4096").unwrap(), vec![]).unwrap();
        }
        alloc.set_priority(Role::new("prod"), 2);
        // Weight does not lift a lower band over a higher one.
        alloc.set_weight(Role::new("batch"), 100.0).unwrap();
        let (prod, batch) = (FrameworkId::new("prod"), FrameworkId::new("batch"));
        alloc.add_framework(batch.clone(), vec![Role::new("batch")]).unwrap();
        alloc.add_framework(prod.clone(), vec![Role::new("prod")]).unwrap();
        let offers = alloc.allocate(Duration::ZERO);
        assert_eq!(offers.len(), 4);
        assert!(offers.iter().all(|o| o.framework == prod), "{offers:?}");
        for o in &offers {
            alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
        }
        // prod asks for nothing more: batch gets what it leaves.
        alloc.suppress(&prod, None).unwrap();
        let offers = alloc.allocate(Duration::from_secs(1));
        assert_eq!(offers.len(), 4);
        assert!(offers.iter().all(|o| o.framework == batch), "{offers:?}");
        alloc.check_invariants();
    }
}
