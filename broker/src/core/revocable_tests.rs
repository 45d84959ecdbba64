//! Revocable resources through the broker core: the guarantee headroom
//! nobody asks for is offered, marked revocable, to frameworks that
//! subscribed with REVOCABLE_RESOURCES (and to no other); tasks on it are
//! tracked as revocable and, when the guaranteed role asks, revocable
//! offers are rescinded and revocable tasks revoked before anything else,
//! with `broker.revocation.revocable-grace` (0 s: at once).

use std::time::Duration;

use weir_model::{Quota, Resources, Role, TaskState};
use weir_proto::v1;

use super::roles::RolePolicy;
use super::tests::{accept, ms, task, Harness, AGENT_A, AGENT_B, FW_1, FW_2};
use super::*;

/// Two agents of 8 cpus; prod is guaranteed 8 cpus and has no framework.
fn with_idle_guarantee() -> Harness {
    with_idle_guarantee_on(&["cpus:8;mem:8192", "cpus:8;mem:8192"], "cpus:8")
}

fn with_idle_guarantee_on(agents: &[&str], guarantee: &str) -> Harness {
    let mut h = Harness::new();
    for (conn, spec) in [AGENT_A, AGENT_B].into_iter().zip(agents) {
        h.register_agent(conn, "", spec, vec![]);
    }
    let prod = RolePolicy {
        role: Role::new("prod"),
        weight: 1.0,
        priority: 0,
        quota: Quota { guarantee: Resources::parse(guarantee).unwrap(), ..Quota::default() },
    };
    h.core.set_role_policies(vec![prod], false).unwrap();
    h
}

fn subscribe_revocable(h: &mut Harness, conn: ConnId, name: &str, role: &str) -> String {
    let out = h.call(
        conn,
        v1::call::Kind::Subscribe(v1::call::Subscribe {
            data: None,
            framework: Some(v1::FrameworkInfo {
                name: name.to_owned(),
                roles: vec![role.to_owned()],
                capabilities: vec![v1::framework_info::Capability::RevocableResources as i32],
                ..Default::default()
            }),
        }),
    );
    out.iter()
        .find_map(|o| match o {
            Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) }) if *c == conn => Some(s.framework_id.clone()),
            _ => None,
        })
        .expect("subscribed")
}

fn is_revocable(o: &v1::Offer) -> bool {
    assert!(!o.resources.is_empty());
    let marked = o.resources.iter().filter(|r| r.revocable).count();
    assert!(marked == 0 || marked == o.resources.len(), "an offer is revocable as a whole: {o:?}");
    marked > 0
}

fn cpus(o: &v1::Offer) -> f64 {
    o.resources
        .iter()
        .filter(|r| r.name == "cpus")
        .map(|r| match r.value {
            Some(v1::resource::Value::Scalar(v)) => v,
            _ => 0.0,
        })
        .sum()
}

fn conn_of(h: &Harness, agent_id: &str) -> ConnId {
    if h.core.state(h.now).agents[0].id == agent_id {
        AGENT_A
    } else {
        AGENT_B
    }
}

/// FW_1 (analytics, with the capability) holds one plain and one
/// revocable offer of 8 cpus each, in that order.
fn analytics_offered(h: &mut Harness) -> (String, v1::Offer, v1::Offer) {
    let fw = subscribe_revocable(h, FW_1, "analytics", "analytics");
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_1);
    assert_eq!(offers.len(), 2, "{offers:?}");
    let (lent, plain): (Vec<v1::Offer>, Vec<v1::Offer>) = offers.into_iter().partition(is_revocable);
    assert_eq!((plain.len(), lent.len()), (1, 1));
    assert_eq!((cpus(&plain[0]), cpus(&lent[0])), (8.0, 8.0));
    (fw, plain[0].clone(), lent[0].clone())
}

#[test]
fn the_idle_headroom_is_offered_as_revocable_only_to_frameworks_that_take_it() {
    let mut h = with_idle_guarantee();
    // Without the capability: half the cluster, the rest held back.
    h.subscribe(FW_2, "batch", &["batch"], 0.0);
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_2);
    assert_eq!(offers.iter().map(cpus).sum::<f64>(), 8.0, "{offers:?}");
    assert!(!offers.iter().any(is_revocable));
    // With it: the held-back half, marked revocable, and only to it.
    subscribe_revocable(&mut h, FW_1, "analytics", "analytics");
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_1);
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert!(is_revocable(&offers[0]));
    assert_eq!(cpus(&offers[0]), 8.0);
    assert!(Harness::offers_in(&out, FW_2).is_empty());
    let state = h.core.state(h.now);
    assert!(state.offers.iter().any(|o| o.revocable && o.framework_id == offers[0].framework_id));
    let analytics = state.frameworks.iter().find(|f| f.name == "analytics").unwrap();
    assert!(analytics.takes_revocable);
    assert_eq!(analytics.revocable.cpus, 8.0);
    assert!(!state.frameworks.iter().find(|f| f.name == "batch").unwrap().takes_revocable);
    let role = state.roles.iter().find(|r| r.role == "analytics").unwrap();
    assert_eq!((role.consumed.cpus, role.revocable.cpus), (8.0, 8.0));
    // The guarantee still lacks all of it: lent, not given.
    assert_eq!(state.allocation.guarantee_shortfall.cpus, 8.0);
}

#[test]
fn revocable_tasks_are_revoked_first_and_at_once_when_the_guaranteed_role_asks() {
    let mut h = with_idle_guarantee();
    let (analytics, plain, lent) = analytics_offered(&mut h);
    // The revocable task first, the plain one later (newer): revocable goes first anyway.
    h.call(FW_1, accept(&[&lent], vec![task("r0", "cpus:8;mem:8192")]));
    h.advance(ms(10));
    h.call(FW_1, accept(&[&plain], vec![task("p0", "cpus:8;mem:8192")]));
    let state = h.core.state(h.now);
    let revocable: Vec<(&str, bool)> = state.tasks.iter().map(|t| (t.id.as_str(), t.revocable)).collect();
    assert_eq!(revocable, [("p0", false), ("r0", true)]);
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    let out = h.advance(ms(200));
    let notices = revocations_in(&out, FW_1);
    assert_eq!(notices.len(), 1, "{out:?}");
    let named: Vec<(&str, bool)> = notices[0].tasks.iter().map(|t| (t.task_id.as_str(), t.revocable)).collect();
    assert_eq!(named, [("r0", true)]);
    assert_eq!(notices[0].for_role, "prod");
    // Zero grace: killed in the same tick.
    let lent_conn = conn_of(&h, &lent.agent_id);
    assert_eq!(kills_in(&out), vec![(lent_conn, "r0".to_owned())]);
    let out = h.agent_update(lent_conn, &analytics, "r0", TaskState::Killed, 1);
    assert_eq!(Harness::updates_in(&out, FW_1)[0].reason, "REASON_CONTAINER_PREEMPTED");
    // prod gets its guarantee in the next cycle; the plain task runs on.
    let out = h.advance(ms(200));
    let offers = Harness::offers_in(&out, FW_2);
    assert_eq!(offers.iter().map(cpus).sum::<f64>(), 8.0, "{offers:?}");
    assert!(!offers.iter().any(is_revocable));
    assert!(h.core.state(h.now).tasks.iter().any(|t| t.id == "p0"));
}

#[test]
fn a_grace_for_revocable_tasks_can_be_set() {
    let mut h = with_idle_guarantee();
    h.core.settings.revocable_grace = Duration::from_secs(2);
    let (analytics, _plain, lent) = analytics_offered(&mut h);
    h.call(FW_1, accept(&[&lent], vec![task("r0", "cpus:8;mem:8192")]));
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    let out = h.advance(ms(200));
    assert_eq!(revocations_in(&out, FW_1).len(), 1);
    assert!(kills_in(&out).is_empty(), "killed at the end of its grace, not before");
    let out = h.advance(Duration::from_secs(2));
    assert_eq!(kills_in(&out), vec![(conn_of(&h, &lent.agent_id), "r0".to_owned())]);
    let _ = analytics;
}

#[test]
fn revocable_offers_are_rescinded_before_any_task_is_revoked() {
    let mut h = with_idle_guarantee();
    let (_, plain, lent) = analytics_offered(&mut h);
    h.call(FW_1, accept(&[&plain], vec![task("p0", "cpus:8;mem:8192")]));
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    let out = h.advance(ms(200));
    let rescinded: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::Rescind(r)) }) if *c == FW_1 => Some(r.offer_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rescinded, [lent.id.clone()]);
    assert!(revocations_in(&out, FW_1).is_empty(), "{out:?}");
    let out = h.advance(ms(200));
    assert_eq!(Harness::offers_in(&out, FW_2).iter().map(cpus).sum::<f64>(), 8.0);
    assert!(revocations_in(&out, FW_1).is_empty());
}

#[test]
fn revocable_and_plain_offers_are_not_combined_and_lent_resources_are_not_reserved() {
    // One agent of 16 cpus: a plain and a revocable offer of it (the
    // guarantee holds memory too, or the plain offer would take all of it
    // and leave cpus nobody can use).
    let mut h = with_idle_guarantee_on(&["cpus:16;mem:16384"], "cpus:8;mem:8192");
    let (_, plain, lent) = analytics_offered(&mut h);
    let out = h.call(FW_1, accept(&[&plain, &lent], vec![task("t", "cpus:1;mem:128")]));
    let update = &Harness::updates_in(&out, FW_1)[0];
    assert_eq!(state_of(update), TaskState::Dropped);
    assert!(update.message.contains("revocable and non-revocable offers cannot be combined"), "{}", update.message);
    let out = h.advance(ms(200));
    let lent = Harness::offers_in(&out, FW_1).into_iter().find(is_revocable).expect("offered again");
    let reserve = v1::Operation {
        kind: Some(v1::operation::Kind::Reserve(v1::operation::Reserve {
            resources: weir_proto::convert::resources_to_proto(&weir_model::ResourceSet::parse("cpus:1").unwrap()),
            ..Default::default()
        })),
        ..Default::default()
    };
    let out = h.call(FW_1, v1::call::Kind::Accept(v1::call::Accept { offer_ids: vec![lent.id.clone()], operations: vec![reserve], filters: None }));
    assert!(format!("{out:?}").contains("resource operations cannot use revocable offers"), "{out:?}");
    // Books balanced: the lent half came back and is lent again, beside
    // the plain offer still held.
    let out = h.advance(ms(200));
    let again = Harness::offers_in(&out, FW_1);
    assert_eq!(again.len(), 1);
    assert!(is_revocable(&again[0]));
    assert_eq!(cpus(&again[0]), 8.0);
    assert_eq!(h.core.state(h.now).offers.len(), 2);
}

fn state_of(s: &v1::TaskStatus) -> TaskState {
    super::tests::state_of(s)
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
fn a_revocable_task_stays_revocable_when_its_agent_re_registers() {
    let mut h = with_idle_guarantee();
    let (analytics, plain, lent) = analytics_offered(&mut h);
    let lent_conn = conn_of(&h, &lent.agent_id);
    let out = h.call(FW_1, accept(&[&lent], vec![task("r0", "cpus:8;mem:8192")]));
    // The agent is told the task runs on lent resources.
    let sent = Harness::run_tasks_in(&out, lent_conn);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].resources.iter().all(|r| r.revocable), "{:?}", sent[0].resources);
    h.call(FW_1, accept(&[&plain], vec![task("p0", "cpus:8;mem:8192")]));
    h.agent_update(lent_conn, &analytics, "r0", TaskState::Running, 1);
    // The agent re-registers (a broken connection, or a new leader: the
    // same path), reporting the task as it was sent.
    let running = v1::RunningTask {
        framework_id: analytics.clone(),
        task: Some(sent[0].clone()),
        latest: Some(v1::TaskStatus {
            task_id: "r0".into(),
            framework_id: analytics.clone(),
            agent_id: lent.agent_id.clone(),
            state: weir_proto::convert::task_state_to_proto(TaskState::Running) as i32,
            ..Default::default()
        }),
    };
    h.register_agent(lent_conn, &lent.agent_id, "cpus:8;mem:8192", vec![running]);
    let state = h.core.state(h.now);
    let flags: Vec<(&str, bool)> = state.tasks.iter().map(|t| (t.id.as_str(), t.revocable)).collect();
    assert_eq!(flags, [("p0", false), ("r0", true)]);
    // Booked to the role it was allocated to (unreserved resources name
    // none: the task as sent to the agent does), and still lent.
    let role = state.roles.iter().find(|r| r.role == "analytics").unwrap();
    assert_eq!((role.consumed.cpus, role.revocable.cpus), (16.0, 8.0), "{:?}", state.roles);
    assert!(state.roles.iter().all(|r| r.role == "analytics" || r.role == "prod" || r.consumed.cpus == 0.0), "{:?}", state.roles);
    // And it is still what goes first, at once, when prod asks.
    h.subscribe(FW_2, "prod", &["prod"], 0.0);
    let out = h.advance(ms(200));
    let notices = revocations_in(&out, FW_1);
    assert_eq!(notices.len(), 1, "{out:?}");
    assert_eq!(notices[0].tasks.iter().map(|t| (t.task_id.as_str(), t.revocable)).collect::<Vec<_>>(), [("r0", true)]);
    assert_eq!(kills_in(&out), vec![(lent_conn, "r0".to_owned())]);
}
