//! Role policies through the broker core: quotas and bands shape the
//! offers frameworks get, bad changes are refused with the figures and
//! change nothing, `/state` shows them, and they survive a failover.

use std::time::Duration;

use weir_ha::memory::MemoryRegistry;
use weir_model::{Limits, Milli, Quota, Resources, Role};
use weir_proto::v1;

use super::roles::RolePolicy;
use super::tests::{accept, ms, task, Harness, AGENT_A, AGENT_B, FW_1, FW_2};
use weir_model::TaskState;
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
    // Its guarantee from the headroom (the 2 cpus batch's limit left on
    // the other agent, without memory, fit no task and are offered to nobody).
    assert_eq!(offered_cpus(&Harness::offers_in(&out, FW_2)), 8.0, "{:?}", Harness::offers_in(&out, FW_2));
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

/// Two agents of 8 cpus, filled by analytics with four 4-cpu tasks: a0
/// and a1 on the first agent offered, then (a later cycle) a2 and a3 on
/// the other, which are the newest.
fn full_of_analytics() -> (Harness, String) {
    let mut h = two_agents();
    let fw = h.subscribe(FW_1, "analytics", &["analytics"], 0.0);
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_1);
    assert_eq!(offers.len(), 2);
    h.call(FW_1, accept(&[&offers[0]], vec![task("a0", "cpus:4;mem:4096"), task("a1", "cpus:4;mem:4096")]));
    let decline = v1::call::Decline { offer_ids: vec![offers[1].id.clone()], filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) };
    h.call(FW_1, v1::call::Kind::Decline(decline));
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_1);
    assert_eq!(offers.len(), 1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("a2", "cpus:4;mem:4096"), task("a3", "cpus:4;mem:4096")]));
    (h, fw)
}

fn revocations_in(out: &[Output], conn: ConnId) -> Vec<v1::event::Revocation> {
    out.iter()
        .filter_map(|o| match o {
            Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::Revocation(r)) }) if *c == conn => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn kills_in(out: &[Output]) -> Vec<(ConnId, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Agent(c, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(k)) }) => Some((*c, k.task_id.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_starved_guarantee_revokes_the_newest_tasks_never_below_another_guarantee_and_kills_at_the_deadline() {
    let (mut h, analytics) = full_of_analytics();
    // analytics keeps 6 cpus whatever happens; prod is owed 10.
    h.core
        .set_role_policies(vec![policy("analytics", 1.0, 0, "cpus:6", None), policy("prod", 1.0, 0, "cpus:10", None)], false)
        .unwrap();
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    let out = h.advance(ms(200));
    let notices = revocations_in(&out, FW_1);
    assert_eq!(notices.len(), 1, "{out:?}");
    let mut revoked: Vec<String> = notices[0].tasks.iter().map(|t| t.task_id.clone()).collect();
    revoked.sort();
    // Three tasks would give prod its 10 but leave analytics 4 < 6: two
    // go, the newest (launched second).
    assert_eq!(revoked.len(), 2, "{notices:?}");
    assert_eq!(revoked, ["a2", "a3"], "the newest go");
    assert_eq!(h.core.state(h.now).allocation.revocations.len(), 2);
    assert_eq!(notices[0].for_role, "prod");
    assert!(notices[0].deadline > 1_700_000_000.0);
    // Nothing more is revoked while these are under way.
    let out = h.advance(ms(200));
    assert!(revocations_in(&out, FW_1).is_empty());
    // The framework gives one back itself before the deadline.
    let (released, kept) = (revoked[0].clone(), revoked[1].clone());
    let agent_of = |h: &Harness, t: &str| h.core.state(h.now).tasks.iter().find(|x| x.id == t).map(|x| x.agent_id.clone()).unwrap();
    let conn_of = |h: &Harness, t: &str| if agent_of(h, t) == h.core.state(h.now).agents[0].id { AGENT_A } else { AGENT_B };
    let released_conn = conn_of(&h, &released);
    let out = h.agent_update(released_conn, &analytics, &released, TaskState::Killed, 7);
    let update = &Harness::updates_in(&out, FW_1)[0];
    assert_ne!(update.reason, "REASON_CONTAINER_PREEMPTED", "released by its framework, not killed by the broker");
    // prod gets what was released.
    let out = h.advance(ms(200));
    assert!(offered_cpus(&Harness::offers_in(&out, FW_2)) >= 4.0);
    // At the deadline the other is killed, once, and reported as revoked.
    let out = h.advance(Duration::from_secs(10));
    let kept_conn = conn_of(&h, &kept);
    assert_eq!(kills_in(&out), vec![(kept_conn, kept.clone())]);
    let out = h.advance(ms(200));
    assert!(kills_in(&out).is_empty());
    let out = h.agent_update(kept_conn, &analytics, &kept, TaskState::Killed, 8);
    let update = &Harness::updates_in(&out, FW_1)[0];
    assert_eq!(update.reason, "REASON_CONTAINER_PREEMPTED");
    assert!(update.message.starts_with("revoked for role prod"), "{}", update.message);
    assert!(h.core.state(h.now).allocation.revocations.is_empty());
    // analytics kept its guarantee: nothing more is revoked, ever.
    for _ in 0..5 {
        let out = h.advance(Duration::from_secs(1));
        assert!(revocations_in(&out, FW_1).is_empty());
    }
    let state = h.core.state(h.now);
    assert_eq!(state.roles.iter().find(|r| r.role == "analytics").unwrap().consumed.cpus, 8.0);
}

/// A task labelled `weir.revocation.exempt=true` (the YARN shim's node managers)
/// is never revoked: the next newest go instead.
#[test]
fn a_task_exempt_from_revocation_is_passed_over() {
    let mut h = two_agents();
    h.subscribe(FW_1, "analytics", &["analytics"], 0.0);
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_1);
    let mut keeper = task("keeper", "cpus:4;mem:4096");
    keeper.labels.insert(weir_model::task::REVOCATION_EXEMPT_LABEL.to_owned(), "true".to_owned());
    h.call(FW_1, accept(&[&offers[0]], vec![task("a0", "cpus:4;mem:4096"), task("a1", "cpus:4;mem:4096")]));
    let decline = v1::call::Decline { offer_ids: vec![offers[1].id.clone()], filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) };
    h.call(FW_1, v1::call::Kind::Decline(decline));
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("a2", "cpus:4;mem:4096"), keeper]));
    h.core.set_role_policies(vec![policy("prod", 1.0, 0, "cpus:8", None)], false).unwrap();
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    let out = h.advance(ms(200));
    let notices = revocations_in(&out, FW_1);
    let mut revoked: Vec<String> = notices.iter().flat_map(|n| n.tasks.iter().map(|t| t.task_id.clone())).collect();
    revoked.sort();
    assert_eq!(revoked.len(), 2, "{notices:?}");
    assert!(!revoked.contains(&"keeper".to_owned()), "{revoked:?}");
    assert!(revoked.contains(&"a2".to_owned()), "the newest one not exempt goes first: {revoked:?}");
}

#[test]
fn no_revocation_while_the_guaranteed_role_asks_for_nothing() {
    let (mut h, _) = full_of_analytics();
    h.core.set_role_policies(vec![policy("prod", 1.0, 0, "cpus:8", None)], false).unwrap();
    let out = h.advance(ms(200));
    assert!(revocations_in(&out, FW_1).is_empty(), "no prod framework: nothing to revoke for");
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    h.call(FW_2, v1::call::Kind::Suppress(v1::call::Suppress { roles: vec![] }));
    let out = h.advance(ms(200));
    assert!(revocations_in(&out, FW_1).is_empty(), "prod suppressed: it asks for nothing");
}

#[test]
fn offers_are_bounded_by_fair_share_while_another_role_asks() {
    // batch refuses both agents for a minute; web takes what it is
    // offered. Without the bound web would hold the whole pool; with it
    // (broker.offer.fair-share-bound), its half, and batch gets the other
    // when its filter lapses.
    let mut h = Harness::new();
    let settings = BrokerSettings { agent_unreachable_timeout: Duration::from_secs(5), fair_share_bound: true, ..Default::default() };
    h.core = BrokerCore::new(settings, "b", Duration::ZERO, Duration::from_secs(1_700_000_000));
    h.register_agent(AGENT_A, "", "cpus:8;mem:8192", vec![]);
    h.register_agent(AGENT_B, "", "cpus:8;mem:8192", vec![]);
    h.live_agents.extend([AGENT_A, AGENT_B]);
    h.subscribe(FW_2, "batch", &["batch"], 0.0);
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_2);
    assert_eq!(offers.len(), 2, "batch alone asks: it is offered everything");
    let decline = v1::call::Decline { offer_ids: offers.iter().map(|o| o.id.clone()).collect(), filters: Some(v1::Filters { refuse_seconds: Some(60.0) }) };
    h.call(FW_2, v1::call::Kind::Decline(decline));
    h.subscribe(FW_1, "web", &["web"], 0.0);
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_1);
    assert_eq!(offered_cpus(&offers), 8.0, "{offers:?}");
    h.call(FW_1, accept(&[&offers[0]], vec![task("w0", "cpus:8;mem:8192")]));
    for _ in 0..5 {
        let out = h.advance(Duration::from_secs(1));
        assert!(Harness::offers_in(&out, FW_1).is_empty(), "web is at its fair share while batch asks");
    }
    let out = h.advance(Duration::from_secs(60));
    assert_eq!(offered_cpus(&Harness::offers_in(&out, FW_2)), 8.0);
}

#[test]
fn the_roles_above_a_nested_role_count_against_the_limit_of_roles() {
    let mut h = Harness::new();
    h.core = BrokerCore::new(BrokerSettings { max_roles: 2, ..Default::default() }, "b", Duration::ZERO, Duration::from_secs(1_700_000_000));
    let err = h.core.set_role_policies(vec![policy("eng/web/api", 2.0, 0, "", None)], false).unwrap_err();
    assert!(err.contains("3 new role(s) would take the broker past its limit of 2 roles"), "{err}");
    h.core.set_role_policies(vec![policy("eng/web", 2.0, 0, "", None)], false).unwrap();
    assert_eq!(h.core.role_policies().len(), 2);
}
