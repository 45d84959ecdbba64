//! First in, first out, for a single-tenant cluster: the framework that
//! subscribed first is offered everything it will take before the next
//! one gets anything. Roles are ordered by their oldest offerable member,
//! so weights and shares play no part (quotas still do: they come before
//! any policy).

use super::{ClientView, Policy, RoleView};

#[derive(Clone, Copy, Debug, Default)]
pub struct Fifo;

impl Policy for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }

    fn client_key(&self, client: &ClientView) -> u64 {
        client.arrival
    }

    fn role_key(&self, role: &RoleView) -> (u64, u64) {
        (role.first_member, 0)
    }

    fn orders_roles_by_first_member(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_first_whatever_the_shares() {
        let client = |share, arrival| ClientView { share, arrival };
        assert!(Fifo.client_key(&client(0.9, 1)) < Fifo.client_key(&client(0.0, 2)));
        let role = |weighted_share, first_member| RoleView { weighted_share, priority: 0, first_member };
        assert!(Fifo.role_key(&role(0.9, 1)) < Fifo.role_key(&role(0.0, 2)));
    }

    #[test]
    fn the_framework_that_came_first_takes_everything_it_will() {
        use std::time::Duration;
        use weir_model::{AgentId, FrameworkId, ResourceSet, Role};

        let mut alloc = crate::Allocator::new(crate::AllocatorConfig::default());
        alloc.set_policy(std::sync::Arc::new(Fifo));
        for i in 0..3 {
            alloc.add_agent(AgentId::new(format!("a{i}")), ResourceSet::parse("cpus:4;mem:4096").unwrap(), vec![]).unwrap();
        }
        // Later ids sort first, and the newcomer's role sorts first by name:
        // only arrival counts.
        let (first, second) = (FrameworkId::new("z-first"), FrameworkId::new("a-second"));
        alloc.add_framework(first.clone(), vec![Role::new("zz")]).unwrap();
        alloc.add_framework(second.clone(), vec![Role::new("aa")]).unwrap();
        let offers = alloc.allocate(Duration::ZERO);
        assert!(offers.len() == 3 && offers.iter().all(|o| o.framework == first), "{offers:?}");
        alloc.check_invariants();
        // It declines one agent for good: that one goes to the next.
        let o = &offers[0];
        alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
        alloc.add_filter(&first, &o.role, &o.agent, Duration::from_secs(1 << 40)).unwrap();
        let next = alloc.allocate(Duration::from_secs(1));
        assert!(next.len() == 1 && next[0].framework == second && next[0].agent == o.agent, "{next:?}");
        alloc.check_invariants();
    }
}
