//! Role policies through the broker core: quotas and bands shape the
//! offers frameworks get, bad changes are refused with the figures and
//! change nothing, `/state` shows them, and they survive a failover.

use std::time::Duration;

use weir_ha::memory::MemoryRegistry;
use weir_model::{Limits, Milli, Quota, Resources, Role};
use weir_proto::v1;

use super::roles::RolePolicy;
use super::tests::{ms, Harness, AGENT_A, AGENT_B, FW_1, FW_2};
use super::*;

fn policy(role: &str, weight: f64, priority: u32, guarantee: &str, limit_cpus: Option<u64>) -> RolePolicy {
    RolePolicy {
        role: Role::new(role),
        weight,
        priority,
        quota: Quota {
            guarantee: if guarantee.is_empty() { Resources::default() } else { Resources::parse(guarantee).unwrap() },
            limit: Limits { cpus: limit_cpus.map(Milli::from_units), ..Limits::default() },
        },
    }
}

fn offered_cpus(offers: &[v1::Offer]) -> f64 {
    offers
        .iter()
        .flat_map(|o| &o.resources)
        .filter(|r| r.name == "cpus")
        .map(|r| match r.value {
            Some(v1::resource::Value::Scalar(v)) => v,
            _ => 0.0,
        })
        .sum()
}

fn two_agents() -> Harness {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:8;mem:8192", vec![]);
    h.register_agent(AGENT_B, "", "cpus:8;mem:8192", vec![]);
    h
}

#[test]
fn a_limit_cuts_offers_and_a_guarantee_holds_headroom_through_the_broker() {
    let mut h = two_agents();
    h.core
        .set_role_policies(vec![policy("eng/batch", 1.0, 0, "", Some(6)), policy("prod", 1.0, 0, "cpus:8", None)], false)
        .unwrap();
    h.subscribe(FW_1, "batch", &["eng/batch"], 0.0);
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_1);
    assert_eq!(offered_cpus(&offers), 6.0, "{offers:?}");
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    let out = h.advance(ms(200));
    // Its guarantee from the headroom, plus the 2 cpus batch's limit left.
    assert_eq!(offered_cpus(&Harness::offers_in(&out, FW_2)), 10.0, "{:?}", Harness::offers_in(&out, FW_2));
    let state = h.core.state(h.now);
    assert_eq!(state.allocation.policy, "drf");
    assert_eq!(state.allocation.guaranteed.cpus, 8.0);
    assert!(state.allocation.guarantees_fit);
    let batch = state.roles.iter().find(|r| r.role == "eng/batch").unwrap();
    assert_eq!(batch.limit.get("cpus"), Some(&6.0));
    assert_eq!(batch.consumed.cpus, 6.0);
    assert_eq!(batch.parent.as_deref(), Some("eng"));
    let prod = state.roles.iter().find(|r| r.role == "prod").unwrap();
    assert_eq!(prod.guarantee.cpus, 8.0);
}

#[test]
fn bad_changes_are_refused_with_the_figures_and_change_nothing() {
    let mut h = two_agents();
    h.core.set_role_policies(vec![policy("prod", 2.0, 1, "cpus:10", None)], false).unwrap();
    let before = h.core.role_policies();
    let err = h.core.set_role_policies(vec![policy("prod", 5.0, 3, "cpus:10", None), policy("batch", 1.0, 0, "cpus:7", None)], false).unwrap_err();
    assert_eq!(err, "quota for role batch refused: guarantees would add up to cpus 17 (batch 7, prod 10), more than the cluster's cpus 16");
    assert_eq!(h.core.role_policies(), before, "all or nothing: prod's new weight was put back too");
    for (bad, why) in [
        (policy("a//b", 1.0, 0, "", None), "empty part"),
        (policy("a", f64::NAN, 0, "", None), "finite number"),
        (policy("a", 1.0, 0, "cpus:3", Some(2)), "its guarantee of cpus 3 is more than its limit of cpus 2"),
        (policy("prod/x", 1.0, 0, "cpus:11", None), "the guarantees of the roles below prod add up to cpus 11"),
    ] {
        let err = h.core.set_role_policies(vec![bad], false).unwrap_err();
        assert!(err.contains(why), "{err}");
        assert_eq!(h.core.role_policies(), before);
    }
    // Agents still joining: force skips only the cluster check.
    h.core.set_role_policies(vec![policy("batch", 1.0, 0, "cpus:7", None)], true).unwrap();
    assert!(!h.core.state(h.now).allocation.guarantees_fit);
    // Over the cluster already: a change that adds no guarantee still goes.
    h.core.set_role_policies(vec![policy("batch", 3.0, 0, "cpus:6", None)], false).unwrap();
    assert!(h.core.set_role_policies(vec![policy("batch", 3.0, 0, "cpus:8", None)], false).is_err());
}

#[test]
fn strict_priority_from_the_settings_gives_the_higher_band_first() {
    let settings = BrokerSettings { allocator_policy: "strict-priority".into(), ..Default::default() };
    let mut h = Harness::new();
    h.core = BrokerCore::new(settings, "b", Duration::ZERO, Duration::from_secs(1_700_000_000));
    h.register_agent(AGENT_A, "", "cpus:8;mem:8192", vec![]);
    h.register_agent(AGENT_B, "", "cpus:8;mem:8192", vec![]);
    h.core.set_role_policies(vec![policy("prod", 1.0, 5, "", None)], false).unwrap();
    h.subscribe(FW_1, "batch", &["batch"], 0.0);
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    let out = h.advance(ms(200));
    assert_eq!(Harness::offers_in(&out, FW_2).len(), 2);
    assert!(Harness::offers_in(&out, FW_1).is_empty());
    assert_eq!(h.core.state(h.now).allocation.policy, "strict-priority");
}

#[test]
fn role_policies_survive_a_failover_and_defaults_remove_their_records() {
    let registry = MemoryRegistry::new();
    let mut first = BrokerCore::new(BrokerSettings::default(), "b1", Duration::ZERO, Duration::from_secs(1_700_000_000));
    first.recover(&[], 1, Duration::ZERO);
    let write = |outputs: Vec<Output>| {
        for o in outputs {
            if let Output::Registry(w) = o {
                registry.apply_now(vec![w]).unwrap();
            }
        }
    };
    // No agents yet: force.
    write(first.set_role_policies(vec![policy("eng/web", 2.0, 3, "cpus:4;mem:1024", Some(10))], true).unwrap());
    write(first.set_role_policies(vec![policy("ops", 1.0, 1, "", None)], true).unwrap());
    let mut next = BrokerCore::new(BrokerSettings::default(), "b2", Duration::ZERO, Duration::from_secs(1_700_000_000));
    let report = next.recover(&registry.load_now(), 2, Duration::ZERO);
    assert_eq!((report.weights, report.quotas, report.skipped.len()), (1, 2, 0), "{report:?}");
    assert_eq!(next.role_policies(), first.role_policies());
    // Back to the defaults: the records go, and the role with them.
    write(next.set_role_policies(vec![RolePolicy::default_for(Role::new("eng/web")), RolePolicy::default_for(Role::new("ops"))], false).unwrap());
    assert!(registry.load_now().iter().all(|r| r.collection != "quotas" && r.collection != "weights"), "{:?}", registry.load_now());
    assert!(next.role_policies().is_empty());
}
