//! Hierarchical roles and quotas: DRF among siblings at each level, limits
//! (never exceeded, offers cut to fit, over a whole subtree), guarantees
//! (headroom nobody else may take), the checks on guarantees, and property
//! tests over random clusters, role trees and call sequences.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir_model::{AgentId, FrameworkId, Milli, ResourceSet, Resources, Role};

use crate::policy;
use crate::{Allocation, Allocator, AllocatorConfig, AllocatorError, Limits, Quota};

fn res(spec: &str) -> ResourceSet {
    ResourceSet::parse(spec).expect("test spec parses")
}
fn agent(i: usize) -> AgentId {
    AgentId::new(format!("agent-{i}"))
}
fn fw(name: &str) -> FrameworkId {
    FrameworkId::new(name)
}
fn role(name: &str) -> Role {
    Role::new(name)
}
fn cpus(n: u64) -> Milli {
    Milli::from_units(n)
}
fn guarantee(spec: &str) -> Quota {
    Quota { guarantee: Resources::parse(spec).expect("spec parses"), limit: Limits::default() }
}
fn limit_cpus(n: u64) -> Quota {
    Quota { guarantee: Resources::default(), limit: Limits { cpus: Some(cpus(n)), ..Limits::default() } }
}

/// `n` agents of 8 cpus and 32 GiB.
fn cluster(n: usize) -> Allocator {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    for i in 0..n {
        alloc.add_agent(agent(i), res("cpus:8;mem:32768"), vec![]).unwrap();
    }
    alloc
}

/// Offered cpus per role in one cycle.
fn cpus_by_role(offers: &[Allocation]) -> BTreeMap<String, u64> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for o in offers {
        *by.entry(o.role.to_string()).or_default() += o.resources.total().cpus.0 / 1000;
    }
    by
}

#[test]
fn siblings_share_by_drf_at_each_level() {
    // eng (weight 3) vs ops at the top; eng/a vs eng/b inside eng.
    let mut alloc = cluster(8);
    alloc.set_weight(role("eng"), 3.0).unwrap();
    for (f, r) in [("a", "eng/a"), ("b", "eng/b"), ("o", "ops")] {
        alloc.add_framework(fw(f), vec![role(r)]).unwrap();
    }
    let offers = alloc.allocate(Duration::ZERO);
    alloc.check_invariants();
    let by = cpus_by_role(&offers);
    assert_eq!(by, BTreeMap::from([("eng/a".into(), 24), ("eng/b".into(), 24), ("ops".into(), 16)]), "{by:?}");
    let shares: BTreeMap<String, (f64, Option<Role>)> =
        alloc.role_shares().into_iter().map(|s| (s.role.to_string(), (s.dominant_share, s.parent))).collect();
    assert_eq!(shares["eng"], (0.75, None));
    assert_eq!(shares["eng/a"], (0.375, Some(role("eng"))));
}

#[test]
fn a_parents_own_frameworks_compete_with_its_children_as_one_child() {
    let mut alloc = cluster(6);
    alloc.add_framework(fw("own"), vec![role("eng")]).unwrap();
    alloc.add_framework(fw("a"), vec![role("eng/a")]).unwrap();
    alloc.add_framework(fw("b"), vec![role("eng/b")]).unwrap();
    let by = cpus_by_role(&alloc.allocate(Duration::ZERO));
    alloc.check_invariants();
    assert_eq!(by, BTreeMap::from([("eng".into(), 16), ("eng/a".into(), 16), ("eng/b".into(), 16)]));
}

#[test]
fn roles_above_a_leaf_are_kept_while_it_is_and_forgotten_with_it() {
    let mut alloc = cluster(1);
    alloc.add_framework(fw("x"), vec![role("eng/analytics/adhoc")]).unwrap();
    assert!(alloc.has_role(&role("eng")) && alloc.has_role(&role("eng/analytics")));
    assert_eq!(alloc.role_count(), 3);
    let offers = alloc.allocate(Duration::ZERO);
    assert_eq!(alloc.role_shares().iter().find(|s| s.role == role("eng")).unwrap().subtree.cpus, cpus(8));
    for o in &offers {
        alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
    }
    alloc.remove_framework(&fw("x")).unwrap();
    alloc.check_invariants();
    assert_eq!(alloc.role_count(), 0, "{:?}", alloc.role_shares());
    // A quota keeps a parent, and with it nothing else.
    alloc.set_quota(role("eng"), limit_cpus(4)).unwrap();
    assert_eq!(alloc.role_count(), 1);
    alloc.set_quota(role("eng"), Quota::default()).unwrap();
    assert_eq!(alloc.role_count(), 0);
    alloc.check_invariants();
}

#[test]
fn a_limit_cuts_offers_to_fit_and_the_rest_goes_to_the_next_in_line() {
    let mut alloc = cluster(2);
    alloc.set_quota(role("capped"), limit_cpus(10)).unwrap();
    alloc.add_framework(fw("c"), vec![role("capped")]).unwrap();
    let offers = alloc.allocate(Duration::ZERO);
    alloc.check_invariants();
    assert_eq!(cpus_by_role(&offers)["capped"], 8 + 2, "{offers:?}");
    // Nothing more, however often it asks.
    assert!(alloc.allocate(Duration::from_secs(1)).is_empty());
    // What the limit left on the cut agent (6 cpus, no memory) fits no
    // task: it is offered to nobody.
    alloc.add_framework(fw("o"), vec![role("other")]).unwrap();
    assert!(alloc.allocate(Duration::from_secs(2)).is_empty());
    // With memory back on that agent, the next in line gets it all.
    let capped = offers.iter().find(|o| o.resources.total().cpus == cpus(2)).unwrap();
    let mem_only = ResourceSet::unreserved(Resources { mem: capped.resources.total().mem, ..Resources::default() });
    alloc.recover(&capped.agent, &capped.framework, &capped.role, &mem_only).unwrap();
    let offers = alloc.allocate(Duration::from_secs(3));
    alloc.check_invariants();
    assert_eq!(cpus_by_role(&offers), BTreeMap::from([("other".into(), 6)]), "{offers:?}");
    assert_eq!(alloc.role_shares().iter().find(|s| s.role == role("capped")).unwrap().subtree.cpus, cpus(10));
}

#[test]
fn a_parents_limit_bounds_its_whole_subtree() {
    let mut alloc = cluster(4);
    alloc.set_quota(role("eng"), limit_cpus(12)).unwrap();
    alloc.add_framework(fw("a"), vec![role("eng/a")]).unwrap();
    alloc.add_framework(fw("b"), vec![role("eng/b")]).unwrap();
    let offers = alloc.allocate(Duration::ZERO);
    alloc.check_invariants();
    let by = cpus_by_role(&offers);
    assert_eq!(by.values().sum::<u64>(), 12, "{by:?}");
}

#[test]
fn a_guarantee_keeps_headroom_nobody_else_may_take() {
    let mut alloc = cluster(4);
    alloc.set_quota(role("prod"), guarantee("cpus:16")).unwrap();
    alloc.add_framework(fw("an"), vec![role("analytics")]).unwrap();
    let offers = alloc.allocate(Duration::ZERO);
    alloc.check_invariants();
    assert_eq!(cpus_by_role(&offers)["analytics"], 16, "{offers:?}");
    assert_eq!(alloc.guarantee_shortfall().cpus, cpus(16));
    // Production arrives and gets its guarantee from the headroom.
    alloc.add_framework(fw("p"), vec![role("prod")]).unwrap();
    let offers = alloc.allocate(Duration::from_secs(1));
    alloc.check_invariants();
    assert_eq!(cpus_by_role(&offers)["prod"], 16, "{offers:?}");
    assert_eq!(alloc.guarantee_shortfall().cpus, Milli(0));
}

#[test]
fn a_role_under_its_guarantee_goes_first_whatever_its_weight() {
    let mut alloc = cluster(4);
    alloc.set_weight(role("big"), 100.0).unwrap();
    alloc.set_quota(role("small"), guarantee("cpus:16")).unwrap();
    alloc.add_framework(fw("b"), vec![role("big")]).unwrap();
    alloc.add_framework(fw("s"), vec![role("small")]).unwrap();
    let by = cpus_by_role(&alloc.allocate(Duration::ZERO));
    // small reaches its guarantee; past it, big's weight rules.
    assert_eq!(by, BTreeMap::from([("big".into(), 16), ("small".into(), 16)]));
}

/// Offered cpus per role in one cycle, (normal, revocable).
fn cpus_by_role_and_kind(offers: &[Allocation]) -> BTreeMap<String, (u64, u64)> {
    let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for o in offers {
        let e = by.entry(o.role.to_string()).or_default();
        let n = o.resources.total().cpus.0 / 1000;
        if o.revocable {
            e.1 += n;
        } else {
            e.0 += n;
        }
    }
    by
}

#[test]
fn the_headroom_is_lent_as_revocable_resources_and_comes_back_for_the_guarantee() {
    let mut alloc = cluster(4);
    alloc.set_quota(role("prod"), guarantee("cpus:16")).unwrap();
    alloc.add_framework(fw("an"), vec![role("analytics")]).unwrap();
    alloc.set_takes_revocable(&fw("an"), true).unwrap();
    let offers = alloc.allocate(Duration::ZERO);
    alloc.check_invariants();
    assert_eq!(cpus_by_role_and_kind(&offers)["analytics"], (16, 16), "{offers:?}");
    assert!(offers.iter().filter(|o| o.revocable).all(|o| o.resources.reserved.is_empty()));
    // Lent, not given: the guarantee still lacks all of it, and the
    // revocable part counts for the share and the books, not the guarantee.
    assert_eq!(alloc.guarantee_shortfall().cpus, cpus(16));
    let an = alloc.role_shares().into_iter().find(|s| s.role == role("analytics")).unwrap();
    assert_eq!((an.subtree.cpus, an.revocable.cpus), (cpus(32), cpus(16)));
    // Production asks: nothing is free, so it is starved (revocation's
    // cue) until the revocable resources come back; then it gets them.
    alloc.add_framework(fw("p"), vec![role("prod")]).unwrap();
    assert!(alloc.allocate(Duration::from_secs(1)).is_empty());
    assert_eq!(alloc.starved_guarantees(), vec![(role("prod"), Resources { cpus: cpus(16), ..Resources::default() })]);
    for o in offers.iter().filter(|o| o.revocable) {
        alloc.recover_revocable(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
    }
    alloc.check_invariants();
    let offers = alloc.allocate(Duration::from_secs(2));
    alloc.check_invariants();
    assert_eq!(cpus_by_role_and_kind(&offers), BTreeMap::from([("prod".into(), (16, 0))]), "{offers:?}");
    assert!(alloc.starved_guarantees().is_empty());
}

#[test]
fn frameworks_without_the_capability_are_never_offered_revocable_resources() {
    let mut alloc = cluster(4);
    alloc.set_quota(role("prod"), guarantee("cpus:16")).unwrap();
    alloc.add_framework(fw("plain"), vec![role("analytics")]).unwrap();
    let offers = alloc.allocate(Duration::ZERO);
    alloc.check_invariants();
    assert_eq!(cpus_by_role_and_kind(&offers)["analytics"], (16, 0));
    assert!(alloc.allocate(Duration::from_secs(1)).is_empty());
    // A framework with the capability joins: it gets the held-back half as
    // revocable; the other still gets nothing more.
    alloc.add_framework(fw("rev"), vec![role("batch")]).unwrap();
    alloc.set_takes_revocable(&fw("rev"), true).unwrap();
    let offers = alloc.allocate(Duration::from_secs(2));
    alloc.check_invariants();
    assert!(offers.iter().all(|o| o.revocable && o.framework == fw("rev")), "{offers:?}");
    assert_eq!(cpus_by_role_and_kind(&offers)["batch"], (0, 16));
    // Revoking the capability stops new revocable offers; what is held stays.
    alloc.set_takes_revocable(&fw("rev"), false).unwrap();
    for o in &offers {
        alloc.recover_revocable(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
    }
    assert!(alloc.allocate(Duration::from_secs(3)).is_empty());
    alloc.check_invariants();
}

#[test]
fn limits_cut_revocable_grants_too() {
    let mut alloc = cluster(4);
    alloc.set_quota(role("prod"), guarantee("cpus:16")).unwrap();
    alloc.set_quota(role("analytics"), limit_cpus(20)).unwrap();
    alloc.add_framework(fw("an"), vec![role("analytics")]).unwrap();
    alloc.set_takes_revocable(&fw("an"), true).unwrap();
    let offers = alloc.allocate(Duration::ZERO);
    alloc.check_invariants();
    assert_eq!(cpus_by_role_and_kind(&offers)["analytics"], (16, 4), "{offers:?}");
    let an = alloc.role_shares().into_iter().find(|s| s.role == role("analytics")).unwrap();
    assert_eq!(an.subtree.cpus, cpus(20));
}

#[test]
fn revocable_holdings_do_not_count_towards_a_guarantee() {
    // prod (16 guaranteed) takes revocable resources from web's headroom.
    let mut alloc = cluster(4);
    alloc.set_quota(role("prod"), guarantee("cpus:8")).unwrap();
    alloc.set_quota(role("web"), guarantee("cpus:16")).unwrap();
    alloc.add_framework(fw("p"), vec![role("prod")]).unwrap();
    alloc.set_takes_revocable(&fw("p"), true).unwrap();
    let offers = alloc.allocate(Duration::ZERO);
    alloc.check_invariants();
    // Its guarantee and the slack (32 - 8 - 16) as its own, web's 16 lent.
    assert_eq!(cpus_by_role_and_kind(&offers)["prod"], (16, 16), "{offers:?}");
    alloc.add_framework(fw("w"), vec![role("web")]).unwrap();
    assert_eq!(alloc.starved_guarantees(), vec![(role("web"), Resources { cpus: cpus(16), ..Resources::default() })]);
    // Giving back a revocable offer as if it were not is refused, changing nothing.
    let lent = offers.iter().find(|o| o.revocable).unwrap();
    let before = alloc.role_shares();
    let err = alloc.recover(&lent.agent, &lent.framework, &lent.role, &lent.resources).unwrap_err();
    assert!(matches!(err, AllocatorError::RevocableMismatch { .. }), "{err}");
    let normal = offers.iter().find(|o| !o.revocable).unwrap();
    let err = alloc.recover_revocable(&normal.agent, &normal.framework, &normal.role, &normal.resources).unwrap_err();
    assert!(matches!(err, AllocatorError::RevocableMismatch { .. }), "{err}");
    assert_eq!(before, alloc.role_shares());
    alloc.check_invariants();
}

#[test]
fn revocable_books_follow_removed_agents_and_frameworks() {
    let mut alloc = cluster(2);
    alloc.set_quota(role("prod"), guarantee("cpus:8")).unwrap();
    alloc.add_framework(fw("an"), vec![role("eng/analytics")]).unwrap();
    alloc.set_takes_revocable(&fw("an"), true).unwrap();
    let offers = alloc.allocate(Duration::ZERO);
    assert_eq!(cpus_by_role_and_kind(&offers)["eng/analytics"], (8, 8));
    let lent_on = offers.iter().find(|o| o.revocable).unwrap().agent.clone();
    alloc.remove_agent(&lent_on).unwrap();
    alloc.check_invariants();
    alloc.add_agent(agent(9), res("cpus:8;mem:32768"), vec![]).unwrap();
    alloc.allocate(Duration::from_secs(1));
    alloc.check_invariants();
    alloc.remove_framework(&fw("an")).unwrap();
    alloc.check_invariants();
    assert!(alloc.role_shares().iter().all(|s| s.revocable.is_empty()));
}

#[test]
fn guarantees_are_checked_with_the_figures_and_a_refusal_changes_nothing() {
    let mut alloc = cluster(2); // 16 cpus
    alloc.set_quota(role("prod"), guarantee("cpus:10")).unwrap();
    let before = alloc.role_shares();
    let err = alloc.set_quota(role("batch"), guarantee("cpus:7")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "quota for role batch refused: guarantees would add up to cpus 17 (batch 7, prod 10), more than the cluster's cpus 16"
    );
    let err = alloc.set_quota(role("prod/web"), guarantee("cpus:11")).unwrap_err();
    assert!(err.to_string().contains("the guarantees of the roles below prod add up to cpus 11 (prod/web 11)"), "{err}");
    let bad = Quota { guarantee: Resources::parse("cpus:3").unwrap(), limit: Limits { cpus: Some(cpus(2)), ..Limits::default() } };
    assert_eq!(
        alloc.set_quota(role("x"), bad).unwrap_err(),
        AllocatorError::BadQuota { role: role("x"), reason: "its guarantee of cpus 3 is more than its limit of cpus 2".into() }
    );
    assert_eq!(alloc.role_shares(), before);
    assert!(!alloc.has_role(&role("batch")) && !alloc.has_role(&role("prod/web")));
    // A new leader restores what was acknowledged before its agents return.
    let mut empty = Allocator::new(AllocatorConfig::default());
    empty.restore_quota(role("prod"), guarantee("cpus:10"));
    assert_eq!(empty.quota(&role("prod")), guarantee("cpus:10"));
    assert!(empty.check_quotas(false).is_ok());
    let err = empty.check_quotas(true).unwrap_err().to_string();
    assert!(err.contains("more than the cluster's cpus 0"), "{err}");
    empty.restore_quota(role("prod/a"), guarantee("cpus:11"));
    let err = empty.check_quotas(false).unwrap_err();
    assert!(matches!(&err, AllocatorError::BadQuota { role, .. } if role.as_str() == "prod"), "{err}");
    assert_eq!(empty.guaranteed_total().cpus, cpus(10));
    alloc.check_invariants();
}

// ----- properties -----

const TREE: [&str; 6] = ["eng", "eng/analytics", "eng/analytics/adhoc", "eng/web", "prod", "prod/db"];

#[derive(Clone, Debug)]
enum Step {
    /// Every outstanding allocation is kept (tasks launched) or given back.
    Allocate { keep: u8 },
    /// Gives back the `pick`-th allocation kept.
    Finish(usize),
    Suppress(usize, bool),
    Subscribe(usize),
}

#[derive(Clone, Debug)]
struct Setup {
    agents: Vec<(u64, u64)>,
    /// Per role of `TREE`: (weight, priority, guarantee cpus, limit cpus).
    roles: Vec<(f64, u32, u64, Option<u64>)>,
    /// Role of each framework (index into `TREE`), and whether it takes
    /// revocable resources.
    frameworks: Vec<(usize, bool)>,
    policy: usize,
}

fn arb_setup() -> impl Strategy<Value = Setup> {
    (
        prop::collection::vec((1u64..16, 1u64..64), 1..8),
        prop::collection::vec((0.5f64..4.0, 0u32..3, prop_oneof![3 => Just(0u64), 1 => 1u64..12], prop::option::weighted(0.4, 0u64..40)), 6),
        prop::collection::vec((0usize..6, any::<bool>()), 1..6),
        0usize..3,
    )
        .prop_map(|(agents, roles, frameworks, policy)| Setup { agents, roles, frameworks, policy })
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3).prop_map(|keep| Step::Allocate { keep }),
        2 => any::<usize>().prop_map(Step::Finish),
        1 => (0usize..6, any::<bool>()).prop_map(|(f, s)| Step::Suppress(f, s)),
        1 => (0usize..6).prop_map(Step::Subscribe),
    ]
}

/// Builds the cluster; guarantees that do not fit are refused and skipped
/// (and must have changed nothing).
fn build(setup: &Setup) -> Allocator {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.set_policy(policy::ALL[setup.policy]());
    for (i, (c, m)) in setup.agents.iter().enumerate() {
        alloc.add_agent(agent(i), res(&format!("cpus:{c};mem:{}", m * 512)), vec![]).unwrap();
    }
    for (name, (weight, priority, g, limit)) in TREE.iter().zip(&setup.roles) {
        alloc.set_weight(role(name), *weight).unwrap();
        alloc.set_priority(role(name), *priority);
        let quota = Quota {
            guarantee: Resources { cpus: cpus(*g), ..Resources::default() },
            limit: Limits { cpus: limit.map(|l| cpus(l.max(*g))), ..Limits::default() },
        };
        let before = alloc.role_shares();
        if alloc.set_quota(role(name), quota).is_err() {
            prop_assert_eq_unit(&before, &alloc.role_shares());
        }
    }
    alloc
}

fn prop_assert_eq_unit<T: PartialEq + std::fmt::Debug>(a: &T, b: &T) {
    assert_eq!(a, b, "a refused call changed the books");
}

/// Roles in `TREE` order with their quota, subtree usage and priority.
fn check_quotas(alloc: &Allocator, free_unreserved: &Resources) -> Result<(), TestCaseError> {
    for share in alloc.role_shares() {
        if let Some(limit) = share.quota.limit.cpus {
            prop_assert!(share.subtree.cpus <= limit, "{} holds {} cpus over its limit {}", share.role, share.subtree.cpus, limit);
        }
    }
    // The headroom: what is free plus what is lent as revocable (which
    // revocation takes back first) covers what the guarantees lack.
    let lack = alloc.guarantee_shortfall();
    let lent = alloc.role_shares().iter().filter(|s| s.parent.is_none()).fold(Milli(0), |acc, s| Milli(acc.0 + s.revocable.cpus.0));
    prop_assert!(
        lack.cpus.0 <= free_unreserved.cpus.0 + lent.0,
        "headroom broken: guarantees lack {} cpus, {} free, {} lent",
        lack.cpus,
        free_unreserved.cpus,
        lent
    );
    Ok(())
}

/// Under strict priority with nothing filtered: an offer to a role means no
/// sibling in a higher band (of it or of any role above it) could be
/// offered at all, unless a limit or a guarantee cut in.
fn check_bands(alloc: &Allocator, offers: &[Allocation], asking: &BTreeMap<Role, bool>) -> Result<(), TestCaseError> {
    if alloc.policy().name() != "strict-priority" {
        return Ok(());
    }
    let shares: BTreeMap<Role, crate::RoleShare> = alloc.role_shares().into_iter().map(|s| (s.role.clone(), s)).collect();
    if shares.values().any(|s| s.quota != Quota::default()) {
        return Ok(());
    }
    for o in offers {
        // Walk up from the offer's role; at each level, no asking sibling
        // may sit in a higher band.
        let mut at = Some(o.role.clone());
        while let Some(r) = at {
            let me = &shares[&r];
            for (other, s) in &shares {
                let sibling = s.parent == me.parent && *other != r;
                let asks = asking.iter().any(|(leaf, on)| *on && (leaf == other || crate::quota::is_below(leaf.as_str(), other.as_str())));
                prop_assert!(
                    !(sibling && asks && s.priority > me.priority),
                    "{} (band {}) was offered {} while {} (band {}) asked",
                    r,
                    me.priority,
                    o.agent,
                    other,
                    s.priority
                );
            }
            at = me.parent.clone();
        }
    }
    Ok(())
}

/// Gives an offer back as what it is (revocable or not).
fn give_back(alloc: &mut Allocator, o: &Allocation) {
    if o.revocable {
        alloc.recover_revocable(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
    } else {
        alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn limits_headroom_bands_and_books_hold_over_random_runs(setup in arb_setup(), steps in prop::collection::vec(arb_step(), 1..40)) {
        let mut alloc = build(&setup);
        alloc.check_invariants();
        let frameworks: Vec<FrameworkId> = (0..setup.frameworks.len()).map(|i| fw(&format!("f{i}"))).collect();
        let mut subscribed = vec![false; frameworks.len()];
        let mut suppressed = vec![false; frameworks.len()];
        let mut kept: Vec<Allocation> = Vec::new();
        let mut now = Duration::ZERO;
        for step in steps {
            match step {
                Step::Subscribe(i) => {
                    let i = i % frameworks.len();
                    if !subscribed[i] {
                        alloc.add_framework(frameworks[i].clone(), vec![role(TREE[setup.frameworks[i].0])]).unwrap();
                        alloc.set_takes_revocable(&frameworks[i], setup.frameworks[i].1).unwrap();
                        subscribed[i] = true;
                    }
                }
                Step::Suppress(i, on) => {
                    let i = i % frameworks.len();
                    if subscribed[i] {
                        if on { alloc.suppress(&frameworks[i], None).unwrap() } else { alloc.revive(&frameworks[i], None).unwrap() }
                        suppressed[i] = on;
                    }
                }
                Step::Finish(pick) => {
                    if !kept.is_empty() {
                        let o = kept.swap_remove(pick % kept.len());
                        give_back(&mut alloc, &o);
                    }
                }
                Step::Allocate { keep } => {
                    now += Duration::from_secs(1);
                    let mut asking: BTreeMap<Role, bool> = BTreeMap::new();
                    for (i, (f, _)) in setup.frameworks.iter().enumerate() {
                        let on = subscribed[i] && !suppressed[i];
                        let e = asking.entry(role(TREE[*f])).or_default();
                        *e |= on;
                    }
                    let lacking = !alloc.guarantee_shortfall().is_empty();
                    let offers = alloc.allocate(now);
                    alloc.check_invariants();
                    check_bands(&alloc, &offers, &asking)?;
                    for o in offers.iter().filter(|o| o.revocable) {
                        let i = frameworks.iter().position(|f| *f == o.framework).unwrap();
                        prop_assert!(setup.frameworks[i].1, "{} does not take revocable resources and was offered {}", o.framework, o.resources);
                        prop_assert!(lacking, "revocable resources offered while no guarantee lacked anything");
                    }
                    for (n, o) in offers.into_iter().enumerate() {
                        if (n + keep as usize).is_multiple_of(3) {
                            give_back(&mut alloc, &o);
                        } else {
                            kept.push(o);
                        }
                    }
                }
            }
            alloc.check_invariants();
            let free: Resources = (0..setup.agents.len()).filter_map(|i| alloc.free(&agent(i))).fold(Resources::default(), |acc, f| acc.add(&f.unreserved));
            check_quotas(&alloc, &free)?;
            // Totals balance: what is kept plus what is free is the cluster.
            let held = kept.iter().fold(Resources::default(), |acc, o| acc.add(&o.resources.total()));
            prop_assert_eq!(held.cpus.0 + free.cpus.0, alloc.total().cpus.0);
        }
    }
}
