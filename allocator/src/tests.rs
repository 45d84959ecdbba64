//! Behaviour tests: the DRF paper's example, unit cases for each call, and
//! proptest properties over random call sequences checked against a small
//! model of what the broker knows (outstanding allocations, filters,
//! suppression).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use weir_model::{AgentId, FrameworkId, Milli, Ranges, ResourceSet, Resources, Role};

use crate::{Allocation, Allocator, AllocatorConfig, AllocatorError};

fn res(spec: &str) -> ResourceSet {
    ResourceSet::parse(spec).expect("test spec parses")
}
fn agent(i: usize) -> AgentId {
    AgentId::new(format!("agent-{i}"))
}
fn fw(i: usize) -> FrameworkId {
    FrameworkId::new(format!("fw-{i}"))
}
fn role(name: &str) -> Role {
    Role::new(name)
}
fn star() -> Role {
    Role::default_role()
}
fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
const FOREVER: Duration = Duration::from_secs(1 << 40);

/// A framework in the simulations below: accepts each offer by launching
/// one task if it fits and giving the rest back, or declining the whole
/// offer with a long filter if it does not.
fn answer_one_task(alloc: &mut Allocator, offer: &Allocation, task: &Resources) -> bool {
    let task_set = ResourceSet::unreserved(task.clone());
    if offer.resources.unreserved.contains(task) {
        let rest = offer.resources.checked_sub(&task_set).expect("task fits");
        if !rest.is_empty() {
            alloc.recover(&offer.agent, &offer.framework, &offer.role, &rest).expect("rest was offered");
        }
        true
    } else {
        alloc.recover(&offer.agent, &offer.framework, &offer.role, &offer.resources).expect("offer was offered");
        alloc.add_filter(&offer.framework, &offer.role, &offer.agent, FOREVER).expect("known ids");
        false
    }
}

/// Runs cycles until nothing is offered; returns tasks launched per framework.
fn run_until_quiet(alloc: &mut Allocator, tasks: &BTreeMap<FrameworkId, Resources>) -> BTreeMap<FrameworkId, usize> {
    let mut launched: BTreeMap<FrameworkId, usize> = BTreeMap::new();
    for cycle in 0..100_000u64 {
        let offers = alloc.allocate(secs(cycle));
        if offers.is_empty() {
            return launched;
        }
        for offer in &offers {
            if answer_one_task(alloc, offer, &tasks[&offer.framework]) {
                *launched.entry(offer.framework.clone()).or_default() += 1;
            }
        }
    }
    panic!("simulation did not settle");
}

fn drf_paper_example(roles: [Role; 2]) {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:9;mem:18432"), vec![]).unwrap();
    let (a, b) = (FrameworkId::new("A"), FrameworkId::new("B"));
    alloc.add_framework(a.clone(), vec![roles[0].clone()]).unwrap();
    alloc.add_framework(b.clone(), vec![roles[1].clone()]).unwrap();
    let tasks = BTreeMap::from([
        (a.clone(), Resources::parse("cpus:1;mem:4096").unwrap()),
        (b.clone(), Resources::parse("cpus:3;mem:1024").unwrap()),
    ]);
    let launched = run_until_quiet(&mut alloc, &tasks);
    assert_eq!(launched[&a], 3, "A: {launched:?}");
    assert_eq!(launched[&b], 2, "B: {launched:?}");
    // Both end with a dominant share of 2/3: A on memory, B on cpus.
    assert!((alloc.framework_share(&a).unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert!((alloc.framework_share(&b).unwrap() - 2.0 / 3.0).abs() < 1e-9);
    alloc.check_invariants();
}

#[test]
fn drf_paper_example_frameworks_in_one_role() {
    drf_paper_example([star(), star()]);
}

#[test]
fn drf_paper_example_frameworks_in_their_own_roles() {
    drf_paper_example([role("a"), role("b")]);
}

#[test]
fn a_cycle_spreads_agents_across_frameworks() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    for i in 0..6 {
        alloc.add_agent(agent(i), res("cpus:4;mem:8192"), vec![]).unwrap();
    }
    for i in 0..3 {
        alloc.add_framework(fw(i), vec![star()]).unwrap();
    }
    let offers = alloc.allocate(secs(0));
    assert_eq!(offers.len(), 6);
    let mut per_fw: BTreeMap<FrameworkId, usize> = BTreeMap::new();
    for o in &offers {
        *per_fw.entry(o.framework.clone()).or_default() += 1;
        assert_eq!(o.resources, res("cpus:4;mem:8192"));
    }
    assert_eq!(per_fw.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    // Everything is out: a second cycle offers nothing.
    assert!(alloc.allocate(secs(1)).is_empty());
    alloc.check_invariants();
}

#[test]
fn weights_order_roles() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    for i in 0..9 {
        alloc.add_agent(agent(i), res("cpus:1;mem:1024"), vec![]).unwrap();
    }
    alloc.set_weight(role("heavy"), 2.0).unwrap();
    alloc.add_framework(fw(0), vec![role("heavy")]).unwrap();
    alloc.add_framework(fw(1), vec![role("light")]).unwrap();
    let offers = alloc.allocate(secs(0));
    let heavy = offers.iter().filter(|o| o.role == role("heavy")).count();
    assert_eq!(heavy, 6, "weight 2 vs 1 gets 6 of 9 agents: {offers:?}");
    let shares = alloc.role_shares();
    assert_eq!(shares.len(), 2);
    assert_eq!(shares[0].role, role("heavy"));
    assert_eq!(shares[0].allocated.cpus, Milli::from_units(6));
    assert!((shares[0].weighted_share - shares[1].weighted_share).abs() < 1e-9);
    assert_eq!(shares[1].frameworks, vec![fw(1)]);
}

#[test]
fn reserved_resources_go_only_to_their_role() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:2;mem:1024;cpus(db):4;mem(db):4096"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    let offers = alloc.allocate(secs(0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, res("cpus:2;mem:1024"));
    // The reservation waits for its role.
    assert_eq!(alloc.free(&agent(0)).unwrap(), res("cpus(db):4;mem(db):4096"));
    alloc.add_framework(fw(1), vec![role("db")]).unwrap();
    let offers = alloc.allocate(secs(1));
    assert_eq!(offers.len(), 1);
    assert_eq!((offers[0].framework.clone(), offers[0].resources.clone()), (fw(1), res("cpus(db):4;mem(db):4096")));
    alloc.check_invariants();
}

#[test]
fn reserved_and_unreserved_to_one_framework_make_one_offer() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:2;mem:1024;cpus(db):4"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![role("db")]).unwrap();
    let offers = alloc.allocate(secs(0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, res("cpus:2;mem:1024;cpus(db):4"));
    alloc.recover(&agent(0), &fw(0), &role("db"), &res("cpus(db):1;mem:24")).unwrap();
    assert_eq!(alloc.free(&agent(0)).unwrap(), res("cpus(db):1;mem:24"));
}

#[test]
fn filters_suppression_and_revive() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:1;mem:1024"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    alloc.add_filter(&fw(0), &star(), &agent(0), secs(10)).unwrap();
    assert!(alloc.allocate(secs(5)).is_empty());
    assert_eq!(alloc.allocate(secs(10)).len(), 1, "a filter ends at its `until`");
    alloc.recover(&agent(0), &fw(0), &star(), &res("cpus:1;mem:1024")).unwrap();
    alloc.suppress(&fw(0), None).unwrap();
    assert!(alloc.allocate(secs(11)).is_empty());
    alloc.add_filter(&fw(0), &star(), &agent(0), secs(100)).unwrap();
    alloc.revive(&fw(0), None).unwrap();
    assert_eq!(alloc.allocate(secs(12)).len(), 1, "revive clears filters too");
    alloc.check_invariants();
}

#[test]
fn a_decline_in_one_role_leaves_the_agent_to_the_frameworks_other_roles() {
    // The YARN shim holds one role per queue; its idle queue's role is the
    // lowest share and gets the agent first. Declining it there must not
    // keep the agent from the busy queue's role (Mesos filters by
    // framework, role and agent).
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:4;mem:4096"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![role("idle"), role("busy")]).unwrap();
    let offers = alloc.allocate(secs(0));
    assert_eq!(offers.len(), 1);
    let first = offers[0].role.clone();
    let other = if first == role("idle") { role("busy") } else { role("idle") };
    alloc.recover(&agent(0), &fw(0), &first, &offers[0].resources).unwrap();
    alloc.add_filter(&fw(0), &first, &agent(0), secs(60)).unwrap();
    let offers = alloc.allocate(secs(1));
    assert_eq!(offers.iter().map(|o| o.role.clone()).collect::<Vec<_>>(), vec![other.clone()], "{offers:?}");
    alloc.recover(&agent(0), &fw(0), &other, &offers[0].resources).unwrap();
    alloc.add_filter(&fw(0), &other, &agent(0), secs(60)).unwrap();
    assert!(alloc.allocate(secs(2)).is_empty(), "filtered in both roles");
    // A revive naming one role lifts that role's filter only.
    alloc.revive(&fw(0), Some(&[other.clone()])).unwrap();
    let offers = alloc.allocate(secs(3));
    assert_eq!(offers.iter().map(|o| o.role.clone()).collect::<Vec<_>>(), vec![other], "{offers:?}");
    // A filter names a role the framework is in.
    assert!(matches!(alloc.add_filter(&fw(0), &role("elsewhere"), &agent(0), secs(9)), Err(AllocatorError::NotInRole { .. })));
    alloc.check_invariants();
}

#[test]
fn at_equal_shares_the_client_granted_least_recently_goes_first() {
    // fw-0 never answers: each time its offer is taken back (timed out or
    // rescinded, no filter) it is back at share 0, tied with fw-1 which
    // waits. Ties used to break on framework id, so fw-0 won every cycle
    // and fw-1 starved; now the one granted least recently wins.
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:2;mem:1024"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    alloc.add_framework(fw(1), vec![star()]).unwrap();
    let mut winners = Vec::new();
    for cycle in 0..4 {
        let offers = alloc.allocate(secs(cycle));
        assert_eq!(offers.len(), 1);
        winners.push(offers[0].framework.clone());
        alloc.recover(&offers[0].agent, &offers[0].framework, &offers[0].role, &offers[0].resources).unwrap();
        alloc.check_invariants();
    }
    assert_eq!(winners, [fw(0), fw(1), fw(0), fw(1)]);
}

#[test]
fn inactive_agents_and_frameworks_get_no_offers_but_keep_counting() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:2;mem:2048"), vec![(fw(9), star(), res("cpus:1;mem:1024"))]).unwrap();
    alloc.add_agent(agent(1), res("cpus:2;mem:2048"), vec![]).unwrap();
    // fw-9 is only known from its running task: counted, never offered.
    assert_eq!(alloc.framework_share(&fw(9)), Some(0.25));
    alloc.set_agent_active(&agent(1), false).unwrap();
    assert_eq!(alloc.total(), Resources::parse("cpus:2;mem:2048").unwrap());
    assert_eq!(alloc.framework_share(&fw(9)), Some(0.5));
    assert!(alloc.allocate(secs(0)).is_empty());
    alloc.add_framework(fw(9), vec![star()]).unwrap();
    let offers = alloc.allocate(secs(1));
    assert_eq!(offers.len(), 1);
    assert_eq!((offers[0].agent.clone(), offers[0].resources.clone()), (agent(0), res("cpus:1;mem:1024")));
    alloc.set_framework_active(&fw(9), false).unwrap();
    alloc.set_agent_active(&agent(1), true).unwrap();
    assert!(alloc.allocate(secs(2)).is_empty());
    alloc.set_framework_active(&fw(9), true).unwrap();
    assert_eq!(alloc.allocate(secs(3)).len(), 1);
    alloc.remove_framework(&fw(9)).unwrap();
    assert_eq!(alloc.free(&agent(0)).unwrap(), res("cpus:2;mem:2048"));
    alloc.check_invariants();
}

#[test]
fn a_removed_agents_filters_do_not_pass_to_its_slot() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:1;mem:1024"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    alloc.add_filter(&fw(0), &star(), &agent(0), FOREVER).unwrap();
    alloc.remove_agent(&agent(0)).unwrap();
    alloc.add_agent(agent(1), res("cpus:1;mem:1024"), vec![]).unwrap();
    assert_eq!(alloc.allocate(secs(0)).len(), 1);
}

#[test]
fn small_leftovers_are_not_offered() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:0.005;mem:16;disk:100"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    assert!(alloc.allocate(secs(0)).is_empty());
    alloc.check_invariants();
}

#[test]
fn errors_name_the_input() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:1;mem:1024"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    let e = |r: Result<(), AllocatorError>| r.unwrap_err().to_string();
    assert_eq!(e(alloc.remove_agent(&agent(7))), "agent agent-7 is not known to the allocator");
    assert!(e(alloc.add_agent(agent(0), res("cpus:1"), vec![])).contains("agent agent-0 is already known"));
    assert!(e(alloc.add_framework(fw(0), vec![])).contains("framework fw-0 is already subscribed"));
    assert_eq!(e(alloc.set_weight(role("x"), -1.0)), "weight -1 for role x is not a finite number greater than 0");
    assert!(e(alloc.suppress(&fw(0), Some(&[role("x")]))).contains("framework fw-0 is not subscribed to role x"));
    assert!(e(alloc.add_agent(agent(1), res("cpus:1"), vec![(fw(0), star(), res("cpus:2"))]))
        .contains("agent agent-1 reports cpus:2 in use, which is more than its total cpus:1"));
    let offers = alloc.allocate(secs(0));
    assert_eq!(offers.len(), 1);
    assert_eq!(
        e(alloc.recover(&agent(0), &fw(0), &star(), &res("cpus:2"))),
        "cannot recover cpus:2 on agent agent-0 for framework fw-0 in role *: only cpus:1;mem:1024 is allocated to it there"
    );
}

// ----- properties over random call sequences -----

#[derive(Clone, Debug)]
enum Op {
    AddAgent { agent: usize, cpus: u64, mem: u64, reserved: Option<usize>, ports: bool, used_by: Option<(usize, usize, u64)> },
    RemoveAgent(usize),
    SetAgentActive(usize, bool),
    AddFramework { framework: usize, roles: Vec<usize> },
    RemoveFramework(usize),
    UpdateFramework { framework: usize, roles: Vec<usize> },
    SetFrameworkActive(usize, bool),
    Suppress(usize, Option<usize>),
    Revive(usize, Option<usize>),
    SetWeight(usize, f64),
    AddFilter { framework: usize, role: usize, agent: usize, secs: u64 },
    /// Gives back the `pick`-th outstanding allocation: all of it, half of
    /// its cpus, or (invalid) more than it holds.
    Recover { pick: usize, how: u8 },
    /// Recover naming ids the allocator may not know.
    RecoverUnknown { agent: usize, framework: usize, role: usize },
    Allocate { advance: u64 },
}

// "analytics" holds frameworks of its own beside its child role, so the
// hierarchy (and the own-clients entry) is exercised too.
const ROLES: [&str; 3] = ["*", "analytics/adhoc", "analytics"];

fn arb_op() -> impl Strategy<Value = Op> {
    let id = 0usize..6;
    prop_oneof![
        3 => (id.clone(), 1u64..16, 1u64..32, prop::option::of(0usize..3), any::<bool>(), prop::option::weighted(0.2, (0usize..6, 0usize..3, 1u64..20)))
            .prop_map(|(agent, cpus, mem, reserved, ports, used_by)| Op::AddAgent { agent, cpus, mem, reserved, ports, used_by }),
        1 => id.clone().prop_map(Op::RemoveAgent),
        1 => (id.clone(), any::<bool>()).prop_map(|(a, b)| Op::SetAgentActive(a, b)),
        2 => (id.clone(), prop::collection::vec(0usize..3, 0..3)).prop_map(|(framework, roles)| Op::AddFramework { framework, roles }),
        1 => id.clone().prop_map(Op::RemoveFramework),
        1 => (id.clone(), prop::collection::vec(0usize..3, 0..3)).prop_map(|(framework, roles)| Op::UpdateFramework { framework, roles }),
        1 => (id.clone(), any::<bool>()).prop_map(|(f, b)| Op::SetFrameworkActive(f, b)),
        1 => (id.clone(), prop::option::of(0usize..3)).prop_map(|(f, r)| Op::Suppress(f, r)),
        1 => (id.clone(), prop::option::of(0usize..3)).prop_map(|(f, r)| Op::Revive(f, r)),
        1 => (0usize..3, prop_oneof![Just(0.0), Just(-1.0), Just(f64::NAN), Just(f64::INFINITY), Just(crate::DEFAULT_WEIGHT), 0.1f64..10.0])
            .prop_map(|(r, w)| Op::SetWeight(r, w)),
        1 => (id.clone(), 0usize..3, id.clone(), 0u64..20).prop_map(|(framework, role, agent, secs)| Op::AddFilter { framework, role, agent, secs }),
        4 => (any::<usize>(), 0u8..3).prop_map(|(pick, how)| Op::Recover { pick, how }),
        1 => (id.clone(), id.clone(), 0usize..3).prop_map(|(agent, framework, role)| Op::RecoverUnknown { agent, framework, role }),
        3 => (0u64..10).prop_map(|advance| Op::Allocate { advance }),
    ]
}

/// What the broker would know, kept independently of the allocator.
#[derive(Default)]
struct Model {
    agents: BTreeMap<AgentId, (ResourceSet, bool)>,
    frameworks: BTreeMap<FrameworkId, ModelFramework>,
    outstanding: BTreeMap<(AgentId, FrameworkId, Role), ResourceSet>,
    now: Duration,
}

#[derive(Default)]
struct ModelFramework {
    /// Subscribed roles only.
    roles: BTreeSet<Role>,
    subscribed: bool,
    active: bool,
    suppressed: BTreeSet<Role>,
    /// Decline filters by (role, agent), subscribed roles only.
    filters: BTreeMap<(Role, AgentId), Duration>,
}

/// Everything a caller can observe, to compare before and after a refused call.
#[derive(Debug, PartialEq)]
struct Observed {
    shares: Vec<crate::RoleShare>,
    free: Vec<Option<ResourceSet>>,
    total: Resources,
    framework_shares: Vec<Option<f64>>,
}

fn observe(alloc: &Allocator) -> Observed {
    Observed {
        shares: alloc.role_shares(),
        free: (0..6).map(|i| alloc.free(&agent(i))).collect(),
        total: alloc.total(),
        framework_shares: (0..6).map(|i| alloc.framework_share(&fw(i))).collect(),
    }
}

fn sub_model(held: &ResourceSet, gone: &ResourceSet) -> ResourceSet {
    held.checked_sub(gone).expect("model: recovered what was held")
}

impl Model {
    fn run(&mut self, alloc: &mut Allocator, op: &Op) -> Result<(), TestCaseError> {
        let before = observe(alloc);
        let result: Result<(), AllocatorError> = match op.clone() {
            Op::AddAgent { agent: i, cpus, mem, reserved, ports, used_by } => {
                let mut total = ResourceSet::unreserved(Resources {
                    cpus: Milli::from_units(cpus),
                    mem: Milli::from_units(mem * 256),
                    ports: if ports { Ranges::single(31000, 31009) } else { Ranges::default() },
                    ..Resources::default()
                });
                if let Some(r) = reserved {
                    if ROLES[r] != "*" {
                        total.reserved.insert(role(ROLES[r]), Resources::parse("cpus:2;mem:512").unwrap());
                    }
                }
                let used: Vec<_> = used_by
                    .map(|(f, r, c)| (fw(f), role(ROLES[r]), res(&format!("cpus:{c};mem:256"))))
                    .into_iter()
                    .collect();
                let fits = used_by.is_none_or(|(_, _, c)| c <= cpus);
                let valid = !self.agents.contains_key(&agent(i)) && fits;
                let r = alloc.add_agent(agent(i), total.clone(), used.clone());
                if valid && r.is_ok() {
                    self.agents.insert(agent(i), (total, true));
                    for (f, ro, u) in used {
                        // Known from now on, but not subscribed to anything.
                        self.frameworks.entry(f.clone()).or_default();
                        self.outstanding.entry((agent(i), f, ro)).or_default().add_assign(&u);
                    }
                }
                prop_assert_eq!(valid, r.is_ok(), "add_agent {:?}", r);
                r
            }
            Op::RemoveAgent(i) => {
                let valid = self.agents.remove(&agent(i)).is_some();
                if valid {
                    self.outstanding.retain(|(a, _, _), _| *a != agent(i));
                    for m in self.frameworks.values_mut() {
                        m.filters.retain(|(_, a), _| *a != agent(i));
                    }
                }
                let r = alloc.remove_agent(&agent(i));
                prop_assert_eq!(valid, r.is_ok());
                r
            }
            Op::SetAgentActive(i, on) => {
                let valid = match self.agents.get_mut(&agent(i)) {
                    Some(a) => {
                        a.1 = on;
                        true
                    }
                    None => false,
                };
                let r = alloc.set_agent_active(&agent(i), on);
                prop_assert_eq!(valid, r.is_ok());
                r
            }
            Op::AddFramework { framework: i, roles } => {
                let roles: Vec<Role> = roles.iter().map(|r| role(ROLES[*r])).collect();
                let m = self.frameworks.get(&fw(i));
                let valid = m.is_none_or(|m| !m.subscribed);
                let r = alloc.add_framework(fw(i), roles.clone());
                if valid {
                    let m = self.frameworks.entry(fw(i)).or_default();
                    m.subscribed = true;
                    m.active = true;
                    m.roles.extend(roles.iter().cloned());
                    m.suppressed.clear();
                }
                prop_assert_eq!(valid, r.is_ok());
                r
            }
            Op::RemoveFramework(i) => {
                let valid = self.frameworks.remove(&fw(i)).is_some();
                self.outstanding.retain(|(_, f, _), _| *f != fw(i));
                let r = alloc.remove_framework(&fw(i));
                prop_assert_eq!(valid, r.is_ok());
                r
            }
            Op::UpdateFramework { framework: i, roles } => {
                let roles: Vec<Role> = roles.iter().map(|r| role(ROLES[*r])).collect();
                let valid = self.frameworks.get(&fw(i)).is_some_and(|m| m.subscribed);
                if valid {
                    let m = self.frameworks.get_mut(&fw(i)).unwrap();
                    let new: BTreeSet<Role> = roles.iter().cloned().collect();
                    // A role joined afresh starts unsuppressed; one kept keeps its state.
                    m.suppressed.retain(|r| new.contains(r) && m.roles.contains(r));
                    // Filters go with the role they were made in.
                    m.filters.retain(|(r, _), _| new.contains(r));
                    m.roles = new;
                }
                let r = alloc.update_framework(&fw(i), roles);
                prop_assert_eq!(valid, r.is_ok());
                r
            }
            Op::SetFrameworkActive(i, on) => {
                let valid = match self.frameworks.get_mut(&fw(i)) {
                    Some(m) => {
                        m.active = on;
                        true
                    }
                    None => false,
                };
                let r = alloc.set_framework_active(&fw(i), on);
                prop_assert_eq!(valid, r.is_ok());
                r
            }
            Op::Suppress(i, ro) | Op::Revive(i, ro) => {
                let suppress = matches!(op, Op::Suppress(..));
                let ro: Option<Vec<Role>> = ro.map(|r| vec![role(ROLES[r])]);
                let valid = match self.frameworks.get_mut(&fw(i)) {
                    None => false,
                    Some(m) => {
                        let subscribed = m.subscribed;
                        let targets: Vec<Role> = match &ro {
                            None => m.roles.iter().cloned().collect(),
                            Some(list) => list.clone(),
                        };
                        // Only subscribed roles can be named (placeholders have none).
                        let ok = ro.as_ref().is_none_or(|l| l.iter().all(|r| subscribed && m.roles.contains(r)));
                        if ok {
                            for t in targets {
                                if suppress {
                                    m.suppressed.insert(t);
                                } else {
                                    m.suppressed.remove(&t);
                                    m.filters.retain(|(r, _), _| *r != t);
                                }
                            }
                        }
                        ok
                    }
                };
                let r = if suppress { alloc.suppress(&fw(i), ro.as_deref()) } else { alloc.revive(&fw(i), ro.as_deref()) };
                prop_assert_eq!(valid, r.is_ok(), "{:?} {:?}", op, r);
                r
            }
            Op::SetWeight(r, w) => {
                let valid = w.is_finite() && w > 0.0;
                let res = alloc.set_weight(role(ROLES[r]), w);
                prop_assert_eq!(valid, res.is_ok());
                res
            }
            Op::AddFilter { framework, role: ri, agent: a, secs } => {
                let until = self.now + Duration::from_secs(secs);
                let r0 = role(ROLES[ri]);
                let valid = self.agents.contains_key(&agent(a))
                    && self.frameworks.get(&fw(framework)).is_some_and(|m| m.subscribed && m.roles.contains(&r0));
                if valid {
                    self.frameworks.get_mut(&fw(framework)).unwrap().filters.insert((r0.clone(), agent(a)), until);
                }
                let r = alloc.add_filter(&fw(framework), &r0, &agent(a), until);
                prop_assert_eq!(valid, r.is_ok());
                r
            }
            Op::Recover { pick, how } => {
                if self.outstanding.is_empty() {
                    return Ok(());
                }
                let key = self.outstanding.keys().nth(pick % self.outstanding.len()).unwrap().clone();
                let held = self.outstanding[&key].clone();
                let wanted = match how {
                    0 => held.clone(),
                    1 => {
                        let mut half = ResourceSet::default();
                        half.unreserved.cpus = Milli(held.unreserved.cpus.0 / 2);
                        half
                    }
                    _ => held.add(&res("cpus:1")),
                };
                let valid = how < 2;
                let r = alloc.recover(&key.0, &key.1, &key.2, &wanted);
                if valid {
                    let left = sub_model(&held, &wanted);
                    if left.is_empty() {
                        self.outstanding.remove(&key);
                    } else {
                        self.outstanding.insert(key, left);
                    }
                }
                prop_assert_eq!(valid, r.is_ok(), "{:?}", r);
                r
            }
            Op::RecoverUnknown { agent: a, framework: f, role: ro } => {
                let key = (agent(a), fw(f), role(ROLES[ro]));
                if self.outstanding.contains_key(&key) {
                    return Ok(());
                }
                let r = alloc.recover(&key.0, &key.1, &key.2, &res("cpus:1"));
                prop_assert!(r.is_err());
                r
            }
            Op::Allocate { advance } => {
                self.now += Duration::from_secs(advance);
                let free_before: BTreeMap<AgentId, ResourceSet> =
                    self.agents.keys().map(|a| (a.clone(), alloc.free(a).unwrap())).collect();
                let offers = alloc.allocate(self.now);
                let mut offered: BTreeMap<AgentId, ResourceSet> = BTreeMap::new();
                let mut seen = BTreeSet::new();
                for o in &offers {
                    prop_assert!(seen.insert((o.agent.clone(), o.framework.clone(), o.role.clone())), "one offer per pair per agent");
                    prop_assert!(!o.resources.is_empty());
                    let (_, active) = &self.agents[&o.agent];
                    prop_assert!(*active, "offer on an inactive agent");
                    let m = &self.frameworks[&o.framework];
                    prop_assert!(m.subscribed && m.active, "offer to inactive framework {}", o.framework);
                    prop_assert!(m.roles.contains(&o.role), "offer in an unsubscribed role");
                    prop_assert!(!m.suppressed.contains(&o.role), "offer to suppressed {} in {}", o.framework, o.role);
                    prop_assert!(
                        m.filters.get(&(o.role.clone(), o.agent.clone())).is_none_or(|until| *until <= self.now),
                        "offer to {} on filtered {}",
                        o.framework,
                        o.agent
                    );
                    prop_assert!(o.resources.reserved.keys().all(|r| *r == o.role), "reservation of another role");
                    offered.entry(o.agent.clone()).or_default().add_assign(&o.resources);
                    self.outstanding
                        .entry((o.agent.clone(), o.framework.clone(), o.role.clone()))
                        .or_default()
                        .add_assign(&o.resources);
                }
                for (a, sum) in &offered {
                    prop_assert!(free_before[a].contains(sum), "offered {} on {} with only {} free", sum, a, free_before[a]);
                }
                // Nothing worth offering is left behind while someone could take it.
                for (a, (_, active)) in &self.agents {
                    let free = alloc.free(a).unwrap();
                    let eligible = |r: Option<&Role>| {
                        self.frameworks.values().any(|m| {
                            m.subscribed
                                && m.active
                                && m.roles.iter().any(|ro| {
                                    !m.suppressed.contains(ro)
                                        && r.is_none_or(|r| r == ro)
                                        && m.filters.get(&(ro.clone(), a.clone())).is_none_or(|until| *until <= self.now)
                                })
                        })
                    };
                    let unreserved = &free.unreserved;
                    let allocatable = unreserved.cpus >= Milli(10) || unreserved.mem >= Milli::from_units(32);
                    prop_assert!(!(*active && allocatable && eligible(None)), "{} left with {} free", a, free);
                    for r in free.reserved.keys() {
                        prop_assert!(!(*active && eligible(Some(r))), "{} left with {} free", a, free);
                    }
                }
                return self.check(alloc);
            }
        };
        if result.is_err() {
            prop_assert_eq!(before, observe(alloc), "refused {:?} changed state", op);
        }
        self.check(alloc)
    }

    /// free + everything outstanding == total, with no port offered twice.
    fn check(&self, alloc: &Allocator) -> Result<(), TestCaseError> {
        alloc.check_invariants();
        for (a, (total, _)) in &self.agents {
            let free = alloc.free(a).unwrap();
            let mut sum = free.clone();
            let mut ports = free.unreserved.ports.count();
            for ((oa, _, _), r) in &self.outstanding {
                if oa == a {
                    sum.add_assign(r);
                    ports += r.unreserved.ports.count();
                }
            }
            prop_assert_eq!(&sum.unreserved.cpus, &total.unreserved.cpus);
            prop_assert_eq!(&sum.unreserved.mem, &total.unreserved.mem);
            prop_assert_eq!(&sum.reserved, &total.reserved);
            prop_assert_eq!(ports, total.unreserved.ports.count(), "ports offered twice on {}", a);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_call_sequences_keep_the_books(ops in prop::collection::vec(arb_op(), 1..80)) {
        let mut alloc = Allocator::new(AllocatorConfig::default());
        let mut model = Model::default();
        for op in &ops {
            model.run(&mut alloc, op)?;
        }
    }

    #[test]
    fn same_calls_same_offers(ops in prop::collection::vec(arb_op(), 1..60)) {
        let run = || {
            let mut alloc = Allocator::new(AllocatorConfig::default());
            let mut model = Model::default();
            let mut out = Vec::new();
            for op in &ops {
                if let Op::Allocate { advance } = op {
                    model.now += Duration::from_secs(*advance);
                    out.push(alloc.allocate(model.now));
                } else {
                    let _ = model.run(&mut alloc, op);
                }
            }
            out
        };
        prop_assert_eq!(run(), run());
    }
}

/// Frameworks that each keep taking one fixed-size task per offer from one
/// agent; returns (framework, weight, task dominant share) and the allocator.
fn progressive_filling(tasks: &[(u64, u64, f64)], own_roles: bool) -> Result<(), TestCaseError> {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:64;mem:131072"), vec![]).unwrap();
    let total = Resources::parse("cpus:64;mem:131072").unwrap();
    let mut sizes = BTreeMap::new();
    let mut weights = BTreeMap::new();
    for (i, &(cpus, mem, weight)) in tasks.iter().enumerate() {
        let r = if own_roles { role(&format!("role-{i}")) } else { star() };
        if own_roles {
            alloc.set_weight(r.clone(), weight).unwrap();
        }
        alloc.add_framework(fw(i), vec![r]).unwrap();
        let task = Resources { cpus: Milli(cpus * 250), mem: Milli::from_units(mem * 128), ..Resources::default() };
        let task_share = (task.cpus.0 as f64 / total.cpus.0 as f64).max(task.mem.0 as f64 / total.mem.0 as f64);
        sizes.insert(fw(i), (task, task_share));
        weights.insert(fw(i), if own_roles { weight } else { 1.0 });
    }
    let mut blocked = BTreeSet::new();
    for cycle in 0..10_000u64 {
        let offers = alloc.allocate(secs(cycle));
        if offers.is_empty() {
            break;
        }
        for o in &offers {
            if !answer_one_task(&mut alloc, o, &sizes[&o.framework].0) {
                blocked.insert(o.framework.clone());
            }
        }
        // Whoever got a task had the lowest weighted share among those not
        // blocked, so nobody is ahead of an unblocked framework by more than
        // its own last task.
        for i in weights.keys() {
            for j in weights.keys() {
                if blocked.contains(j) {
                    continue;
                }
                let (si, sj) = (alloc.framework_share(i).unwrap(), alloc.framework_share(j).unwrap());
                let ti = sizes[i].1;
                prop_assert!(
                    (si - ti) / weights[i] <= sj / weights[j] + 1e-9,
                    "{} at {} (task {}, weight {}) is ahead of {} at {} (weight {})",
                    i, si, ti, weights[i], j, sj, weights[j]
                );
            }
        }
    }
    // The run ends when nobody can place another task: each framework was
    // either refused (blocked) or its task no longer fits what is free.
    let free = alloc.free(&agent(0)).unwrap();
    for (f, (task, _)) in &sizes {
        prop_assert!(blocked.contains(f) || !free.unreserved.contains(task), "{} could still run a task in {}", f, free);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn equal_weights_keep_dominant_shares_within_one_task(
        tasks in prop::collection::vec((1u64..16, 1u64..64, Just(1.0)), 2..6),
        own_roles in any::<bool>(),
    ) {
        progressive_filling(&tasks, own_roles)?;
    }

    #[test]
    fn weights_are_honoured_in_proportion(
        tasks in prop::collection::vec((1u64..16, 1u64..64, prop_oneof![Just(1.0), Just(2.0), Just(3.0)]), 2..6),
    ) {
        progressive_filling(&tasks, true)?;
    }
}

#[test]
fn progressive_filling_regression() {
    progressive_filling(&[(4, 44, 1.0), (12, 20, 1.0)], false).unwrap();
}

#[test]
fn weight_two_gets_twice_the_share() {
    // Identical tasks, weights 2 and 1: shares end 2:1 within one task.
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:30;mem:30720"), vec![]).unwrap();
    alloc.set_weight(role("a"), 2.0).unwrap();
    alloc.add_framework(fw(0), vec![role("a")]).unwrap();
    alloc.add_framework(fw(1), vec![role("b")]).unwrap();
    let task = Resources::parse("cpus:1;mem:1024").unwrap();
    let tasks = BTreeMap::from([(fw(0), task.clone()), (fw(1), task)]);
    let launched = run_until_quiet(&mut alloc, &tasks);
    assert_eq!((launched[&fw(0)], launched[&fw(1)]), (20, 10));
}

/// A cycle spread over several bounded calls offers each agent exactly once,
/// never more than the bound per call, and says when it has looked at all.
#[test]
fn a_bounded_cycle_offers_every_agent_once_over_several_calls() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    for i in 0..1000 {
        alloc.add_agent(agent(i), res("cpus:4;mem:4096"), vec![]).unwrap();
    }
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    alloc.add_framework(fw(1), vec![star()]).unwrap();
    let mut offered = BTreeSet::new();
    let mut per_framework: BTreeMap<FrameworkId, usize> = BTreeMap::new();
    let mut calls = 0;
    loop {
        let mut out = Vec::new();
        let complete = alloc.allocate_at_most(secs(1), 64, &mut out);
        calls += 1;
        assert!(out.len() <= 64, "a call granted {} agents", out.len());
        for a in &out {
            assert!(offered.insert(a.agent.clone()), "{} offered twice", a.agent);
            *per_framework.entry(a.framework.clone()).or_default() += 1;
        }
        if complete {
            break;
        }
        assert!(calls < 100, "the cycle never completed");
    }
    assert_eq!(offered.len(), 1000);
    assert!(calls >= 1000 / 64, "{calls} calls");
    // Fair across the calls: the two frameworks split the agents evenly.
    assert_eq!(per_framework.values().copied().collect::<Vec<_>>(), vec![500, 500]);
    let mut out = Vec::new();
    assert!(alloc.allocate_at_most(secs(2), 64, &mut out), "nothing left to offer");
    assert!(out.is_empty());
}

/// RESERVE and UNRESERVE change where resources belong, not how much there
/// is: held or free, the books still add up, and the reserved part then goes
/// only to its role.
#[test]
fn convert_moves_resources_between_reservations_without_changing_amounts() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:4;mem:4096;disk:1000"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![role("db")]).unwrap();
    alloc.add_framework(fw(1), vec![role("web")]).unwrap();
    let offers = alloc.allocate(secs(0));
    assert_eq!(offers.len(), 1);
    let offer = &offers[0];
    let (holder_fw, holder_role) = (offer.framework.clone(), offer.role.clone());
    // The winner reserves part of what it holds for its own role.
    let from = res("cpus:1;disk:500");
    let mut to = ResourceSet::default();
    to.reserved.insert(holder_role.clone(), from.unreserved.clone());
    alloc.convert(&agent(0), Some((&holder_fw, &holder_role)), &from, &to).unwrap();
    alloc.check_invariants();
    // Refused, changing nothing: more than is held, or amounts that differ.
    let too_much = res("cpus:9");
    let mut too_much_to = ResourceSet::default();
    too_much_to.reserved.insert(holder_role.clone(), too_much.unreserved.clone());
    assert!(matches!(
        alloc.convert(&agent(0), Some((&holder_fw, &holder_role)), &too_much, &too_much_to),
        Err(AllocatorError::BadConversion { .. })
    ));
    assert!(alloc.convert(&agent(0), None, &res("cpus:1"), &res("cpus:2")).is_err());
    alloc.check_invariants();
    // Everything comes back; the reserved part is offered only to its role.
    let mut back = offer.resources.checked_sub(&from).unwrap();
    back.add_assign(&to);
    alloc.recover(&agent(0), &holder_fw, &holder_role, &back).unwrap();
    alloc.add_filter(&holder_fw, &holder_role, &agent(0), FOREVER).unwrap();
    let offers = alloc.allocate(secs(1));
    assert_eq!(offers.len(), 1);
    assert_ne!(offers[0].framework, holder_fw);
    assert!(offers[0].resources.reserved.is_empty(), "another role got {}", offers[0].resources);
    // Free resources convert too (an operator's UNRESERVE).
    alloc.convert(&agent(0), None, &to, &from).unwrap();
    alloc.check_invariants();
    assert_eq!(alloc.free(&agent(0)).unwrap(), res("cpus:1;disk:500"));
}

/// A role's reservations count towards its share even while nobody holds
/// them (as in Mesos): a role that reserved half the cluster is not also
/// first in line for the other half.
#[test]
fn unallocated_reservations_count_towards_their_roles_share() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus(a):4;mem(a):4096"), vec![]).unwrap();
    alloc.add_agent(agent(1), res("cpus:4;mem:4096"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![role("a")]).unwrap();
    alloc.add_framework(fw(1), vec![role("b")]).unwrap();
    // fa does not want its reservation now: it stays free, and still counts.
    alloc.add_filter(&fw(0), &role("a"), &agent(0), FOREVER).unwrap();
    let offers = alloc.allocate(secs(0));
    alloc.check_invariants();
    assert_eq!(offers.len(), 1);
    assert_eq!((offers[0].agent.clone(), offers[0].framework.clone()), (agent(1), fw(1)), "role a sorted ahead despite its reservation");
    let shares = alloc.role_shares();
    let a = shares.iter().find(|s| s.role == role("a")).unwrap();
    assert_eq!(a.dominant_share, 0.5);
    assert!(a.allocated.is_empty());
    // Held or free, the reservation counts the same.
    alloc.recover(&agent(1), &fw(1), &role("b"), &offers[0].resources).unwrap();
    alloc.remove_agent(&agent(0)).unwrap();
    alloc.check_invariants();
    assert_eq!(alloc.role_shares().iter().find(|s| s.role == role("a")).unwrap().dominant_share, 0.0);
}

#[test]
fn roles_nobody_uses_are_forgotten_and_their_slots_reused() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:4;mem:4096"), vec![]).unwrap();
    // Weighted, a role is kept; back to the default weight it goes.
    for round in 0..3 {
        for i in 0..1000 {
            alloc.set_weight(role(&format!("r{i}")), 2.0).unwrap();
        }
        assert_eq!(alloc.role_count(), 1000, "round {round}");
        for i in 0..1000 {
            alloc.set_weight(role(&format!("r{i}")), crate::DEFAULT_WEIGHT).unwrap();
        }
        assert_eq!(alloc.role_count(), 0, "round {round}");
        alloc.check_invariants();
    }
    assert!(alloc.role_slots() <= 1000, "slots are reused: {}", alloc.role_slots());

    // A framework's roles go with it, unless something else keeps them.
    alloc.set_weight(role("weighted"), 3.0).unwrap();
    alloc.add_framework(fw(0), vec![role("weighted"), role("plain")]).unwrap();
    assert_eq!(alloc.role_count(), 2);
    let offers = alloc.allocate(secs(1));
    assert_eq!(offers.len(), 1);
    alloc.remove_framework(&fw(0)).unwrap();
    alloc.check_invariants();
    assert!(alloc.has_role(&role("weighted")) && !alloc.has_role(&role("plain")));

    // Reserved for, a role is kept until its reservation goes.
    alloc.convert(&agent(0), None, &res("cpus:1"), &res("cpus(ops):1")).unwrap();
    assert!(alloc.has_role(&role("ops")));
    alloc.convert(&agent(0), None, &res("cpus(ops):1"), &res("cpus:1")).unwrap();
    assert!(!alloc.has_role(&role("ops")));
    alloc.check_invariants();
}

#[test]
fn a_framework_moving_through_roles_keeps_only_those_it_holds_in() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:4;mem:4096"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![role("a")]).unwrap();
    let offers = alloc.allocate(secs(1));
    assert_eq!(offers.len(), 1);
    // It leaves role a holding the offer: a stays until that comes back.
    alloc.update_framework(&fw(0), vec![role("b")]).unwrap();
    for i in 0..500 {
        alloc.update_framework(&fw(0), vec![role(&format!("x{i}"))]).unwrap();
    }
    alloc.check_invariants();
    assert_eq!(alloc.role_count(), 2, "a (held) and x499 (subscribed)");
    alloc.recover(&offers[0].agent, &offers[0].framework, &offers[0].role, &offers[0].resources).unwrap();
    alloc.update_framework(&fw(0), vec![role("c")]).unwrap();
    alloc.check_invariants();
    assert_eq!(alloc.role_count(), 1);
    assert!(alloc.has_role(&role("c")));
}

/// Two agents, two frameworks in one role; fw-0 (first in line) wants the
/// data on agent-1.
fn locality_pair(delay: Duration) -> Allocator {
    let mut alloc = Allocator::new(AllocatorConfig { locality_delay: delay, ..AllocatorConfig::default() });
    for i in 0..2 {
        alloc.add_agent(agent(i), res("cpus:4;mem:4096"), vec![]).unwrap();
    }
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    alloc.add_framework(fw(1), vec![star()]).unwrap();
    alloc.set_wants(&fw(0), &[(agent(1), 128 << 20), (AgentId::new("not-in-the-pool"), 1)]).unwrap();
    alloc
}

#[test]
fn a_framework_waiting_for_its_data_gets_the_agent_that_holds_it() {
    let mut alloc = locality_pair(secs(3));
    assert_eq!(alloc.wants(&fw(0)), vec![(agent(1), 128 << 20)], "agents outside the pool are skipped");
    let offers = alloc.allocate(secs(0));
    let got: BTreeMap<AgentId, (FrameworkId, u64)> =
        offers.iter().map(|o| (o.agent.clone(), (o.framework.clone(), o.data_bytes))).collect();
    assert_eq!(got[&agent(1)], (fw(0), 128 << 20), "{offers:?}");
    assert_eq!(got[&agent(0)], (fw(1), 0), "the agent without the data goes to the next in line: {offers:?}");
    alloc.check_invariants();

    // Without locality, fw-0 takes whichever agent the cycle visits first.
    let mut plain = locality_pair(Duration::ZERO);
    let first = plain.allocate(secs(0));
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|o| o.framework != fw(0) || o.data_bytes == 0 || o.agent == agent(1)));
}

#[test]
fn the_wait_for_data_is_bounded_by_the_locality_delay() {
    let mut alloc = locality_pair(secs(3));
    alloc.remove_framework(&fw(1)).unwrap();
    // agent-1 (the data) is busy: fw-0 holds it, and wants more.
    let offers = alloc.allocate(secs(0));
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].agent, agent(1));
    // agent-0 stays free while fw-0 waits (from its first pass-over, at
    // 0 s; being granted agent-1 does not end the wait, only a launch
    // there would)...
    assert!(alloc.allocate(secs(1)).is_empty());
    assert!(alloc.allocate(secs(2)).is_empty());
    // ...until the delay has passed since that pass-over.
    let late = alloc.allocate(secs(4));
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].agent.clone(), late[0].data_bytes), (agent(0), 0));
    alloc.check_invariants();

    // A launch on agent-1 ends a wait: agent-0, free again, waits anew.
    alloc.recover(&late[0].agent, &late[0].framework, &late[0].role, &late[0].resources).unwrap();
    alloc.note_launch(&fw(0), &agent(1));
    assert!(alloc.allocate(secs(5)).is_empty());
    assert!(alloc.allocate(secs(7)).is_empty());
    assert_eq!(alloc.allocate(secs(8)).len(), 1);
}

#[test]
fn locality_does_not_change_who_is_next_in_line() {
    // fw-0 holds agent-3 and has no preference; fw-1, first in line by
    // share, wants the data on agent-1.
    let mut alloc = Allocator::new(AllocatorConfig::default());
    for i in 0..3 {
        alloc.add_agent(agent(i), res("cpus:4;mem:4096"), vec![]).unwrap();
    }
    alloc.add_framework(fw(0), vec![star()]).unwrap();
    alloc.add_framework(fw(1), vec![star()]).unwrap();
    alloc.add_agent(agent(3), res("cpus:4;mem:4096"), vec![(fw(0), star(), res("cpus:4;mem:4096"))]).unwrap();
    alloc.set_wants(&fw(1), &[(agent(1), 1)]).unwrap();
    let offers = alloc.allocate(secs(0));
    let by_agent: BTreeMap<AgentId, FrameworkId> = offers.iter().map(|o| (o.agent.clone(), o.framework.clone())).collect();
    // fw-1 passes over the others while it waits; fw-0 takes them.
    assert_eq!(by_agent, BTreeMap::from([(agent(0), fw(0)), (agent(1), fw(1)), (agent(2), fw(0))]), "{offers:?}");
    // A removed agent leaves the wants; with none left, no preference.
    alloc.remove_agent(&agent(1)).unwrap();
    assert!(alloc.wants(&fw(1)).is_empty());
    alloc.check_invariants();
}

// ----- offers bounded by fair share -----

/// `n` agents of 8 cpus, the fair-share bound on.
fn bounded(n: usize) -> Allocator {
    let mut alloc = Allocator::new(AllocatorConfig { fair_share_bound: true, ..AllocatorConfig::default() });
    for i in 0..n {
        alloc.add_agent(agent(i), res("cpus:8;mem:8192"), vec![]).unwrap();
    }
    alloc
}

fn agents_by_framework(offers: &[Allocation]) -> BTreeMap<FrameworkId, usize> {
    let mut by = BTreeMap::new();
    for o in offers {
        *by.entry(o.framework.clone()).or_default() += 1;
    }
    by
}

#[test]
fn one_role_asking_still_gets_everything_under_the_fair_share_bound() {
    let mut alloc = bounded(4);
    alloc.add_framework(fw(0), vec![role("a")]).unwrap();
    alloc.add_framework(fw(1), vec![role("a")]).unwrap();
    let offers = alloc.allocate(secs(0));
    assert_eq!(offers.len(), 4);
    alloc.check_invariants();
}

#[test]
fn a_role_at_its_fair_share_is_not_offered_more_while_another_role_asks() {
    // b asks but refuses every agent for now: without the bound a takes
    // the whole pool; with it, its half (weights 1 and 1).
    for (on, expected) in [(false, 4), (true, 2)] {
        let mut alloc = Allocator::new(AllocatorConfig { fair_share_bound: on, ..AllocatorConfig::default() });
        for i in 0..4 {
            alloc.add_agent(agent(i), res("cpus:8;mem:8192"), vec![]).unwrap();
        }
        alloc.add_framework(fw(0), vec![role("a")]).unwrap();
        alloc.add_framework(fw(1), vec![role("b")]).unwrap();
        for i in 0..4 {
            alloc.add_filter(&fw(1), &role("b"), &agent(i), secs(10)).unwrap();
        }
        let offers = alloc.allocate(secs(0));
        assert_eq!(agents_by_framework(&offers).get(&fw(0)), Some(&expected), "bound {on}: {offers:?}");
        alloc.check_invariants();
        // Once b's filters lapse it gets what a left.
        let offers = alloc.allocate(secs(11));
        assert_eq!(agents_by_framework(&offers).get(&fw(1)).copied().unwrap_or(0), 4 - expected);
    }
}

#[test]
fn the_fair_share_bound_follows_weights_and_lapses_when_the_other_role_stops_asking() {
    let mut alloc = bounded(4);
    alloc.set_weight(role("a"), 3.0).unwrap();
    alloc.add_framework(fw(0), vec![role("a")]).unwrap();
    alloc.add_framework(fw(1), vec![role("b")]).unwrap();
    for i in 0..4 {
        alloc.add_filter(&fw(1), &role("b"), &agent(i), secs(10)).unwrap();
    }
    // a's fair share is 3/4 of the pool.
    assert_eq!(agents_by_framework(&alloc.allocate(secs(0))).get(&fw(0)), Some(&3));
    // b suppresses: a is the only role asking and gets the rest.
    alloc.suppress(&fw(1), None).unwrap();
    assert_eq!(agents_by_framework(&alloc.allocate(secs(1))).get(&fw(0)), Some(&1));
    alloc.check_invariants();
}

/// The two-queue YARN case: one framework in `default` (33) and
/// `eng/batch` (eng 67), each holding one cpu, others holding the rest;
/// when 8 cpus come free, one cpu per offer (the rest back), batch must get
/// about twice default's share.
#[test]
fn nested_weights_split_freed_cpus_between_one_frameworks_two_roles() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.set_weight(role("default"), 33.3333).unwrap();
    alloc.set_weight(role("eng"), 66.6667).unwrap();
    alloc.set_weight(role("eng/batch"), 100.0).unwrap();
    let used = vec![
        (fw(0), role("default"), res("cpus:1;mem:896")),
        (fw(0), role("eng/batch"), res("cpus:1;mem:896")),
        (fw(1), role("native"), res("cpus:2;mem:128")),
        (fw(2), role("placeholder"), res("cpus:8;mem:64")),
    ];
    alloc.add_agent(agent(0), res("cpus:12;mem:20480"), used).unwrap();
    alloc.add_framework(fw(0), vec![role("default"), role("eng/batch")]).unwrap();
    alloc.add_framework(fw(1), vec![role("native")]).unwrap();
    alloc.suppress(&fw(1), None).unwrap();
    alloc.add_framework(fw(2), vec![role("placeholder")]).unwrap();
    alloc.suppress(&fw(2), None).unwrap();
    // Memory-only offers while the cpus are held: declined (with filters).
    let mut t = 0;
    for o in alloc.allocate(secs(t)) {
        alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
        alloc.add_filter(&o.framework, &o.role, &o.agent, secs(t + 1)).unwrap();
    }
    t += 1;
    alloc.recover(&agent(0), &fw(2), &role("placeholder"), &res("cpus:8;mem:64")).unwrap();
    let mut got = BTreeMap::new();
    for _ in 0..20 {
        let offers = alloc.allocate(secs(t));
        let Some(o) = offers.into_iter().next() else { break };
        if o.framework != fw(0) {
            alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
            continue;
        }
        let take = res("cpus:1;mem:896");
        if o.resources.total().cpus < Milli::from_units(1) {
            alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
            break;
        }
        *got.entry(o.role.to_string()).or_insert(0) += 1;
        alloc.recover(&o.agent, &o.framework, &o.role, &o.resources.checked_sub(&take).unwrap()).unwrap();
    }
    eprintln!("{got:?}");
    assert!(got["eng/batch"] >= 5, "{got:?}");
}

#[test]
fn a_frameworks_refusal_leaves_the_agent_to_the_others_of_its_role() {
    let mut alloc = Allocator::new(AllocatorConfig::default());
    alloc.add_agent(agent(0), res("cpus:2;mem:1024;disk:4096"), vec![]).unwrap();
    alloc.add_framework(fw(0), vec![role("db")]).unwrap();
    alloc.add_framework(fw(1), vec![role("db")]).unwrap();
    for t in 0..6 {
        let offers = alloc.allocate(secs(t));
        assert_eq!(offers.len(), 1, "round {t}: {offers:?}");
        let o = &offers[0];
        alloc.recover(&o.agent, &o.framework, &o.role, &o.resources).unwrap();
        if o.framework == fw(1) {
            alloc.add_filter(&o.framework, &o.role, &o.agent, secs(t) + Duration::from_millis(300)).unwrap();
        } else {
            return;
        }
    }
    panic!("fw 0 was never offered the agent");
}
