//! Dynamic reservations and persistent volumes in the broker core: every
//! operation and validation rule with its exact wording, offers, DRF roles,
//! teardown, failover, and a property test that the books stay consistent
//! over random operation sequences.

use std::time::Duration;

use prost::Message;
use proptest::prelude::*;
use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;

use super::tests::{ms, state_of, task, Harness, AGENT_A, AGENT_B, FW_1, FW_2};
use super::*;

fn unreserved(spec: &str) -> Vec<v1::Resource> {
    resources_to_proto(&ResourceSet::parse(spec).unwrap())
}

fn op(id: &str, kind: v1::operation::Kind) -> v1::Operation {
    v1::Operation { id: id.into(), kind: Some(kind), ..Default::default() }
}

fn reserve(id: &str, spec: &str) -> v1::operation::Kind {
    v1::operation::Kind::Reserve(v1::operation::Reserve {
        reservation_id: id.into(),
        resources: unreserved(spec),
        principal: "db-admin".into(),
        ..Default::default()
    })
}

fn unreserve(id: &str) -> v1::operation::Kind {
    v1::operation::Kind::Unreserve(v1::operation::Unreserve { reservation_id: id.into() })
}

fn create(volume: &str, reservation: &str, size: f64, path: &str, shared: bool) -> v1::operation::Kind {
    v1::operation::Kind::Create(v1::operation::Create {
        volume_id: volume.into(),
        reservation_id: reservation.into(),
        size,
        container_path: path.into(),
        shared,
        principal: "db-admin".into(),
        backing: String::new(),
    })
}

fn destroy(volume: &str) -> v1::operation::Kind {
    v1::operation::Kind::Destroy(v1::operation::Destroy { volume_id: volume.into() })
}

fn grow(volume: &str, size: f64) -> v1::operation::Kind {
    v1::operation::Kind::Grow(v1::operation::Grow { volume_id: volume.into(), size })
}

fn shrink(volume: &str, size: f64) -> v1::operation::Kind {
    v1::operation::Kind::Shrink(v1::operation::Shrink { volume_id: volume.into(), size })
}

fn launch(tasks: Vec<v1::TaskInfo>) -> v1::Operation {
    v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })), ..Default::default() }
}

fn mounting(mut t: v1::TaskInfo, volume: &str, path: &str) -> v1::TaskInfo {
    t.volumes.push(v1::VolumeMount { volume_id: volume.into(), container_path: path.into(), read_only: false });
    t
}

fn accept_ops(offer: &v1::Offer, operations: Vec<v1::Operation>) -> v1::call::Kind {
    v1::call::Kind::Accept(v1::call::Accept {
        offer_ids: vec![offer.id.clone()],
        operations,
        filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
    })
}

fn statuses_in(out: &[Output], conn: ConnId) -> Vec<(String, String, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::OperationStatus(s)) }) if *c == conn => Some((
                s.operation_id.clone(),
                v1::OperationState::try_from(s.state).unwrap().as_str_name().to_owned(),
                s.message.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn checkpoints_in(out: &[Output], conn: ConnId) -> Vec<v1::broker_message::CheckpointResources> {
    out.iter()
        .filter_map(|o| match o {
            Output::Agent(c, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::CheckpointResources(r)) })
                if *c == conn =>
            {
                Some(r.clone())
            }
            _ => None,
        })
        .collect()
}

fn finished(id: &str, message: &str) -> (String, String, String) {
    (id.into(), "OPERATION_FINISHED".into(), message.into())
}

fn failed(id: &str, message: &str) -> (String, String, String) {
    (id.into(), "OPERATION_FAILED".into(), message.into())
}

/// One agent with `cpus:4;mem:4096;disk:10000`, a framework in role `db`
/// on FW_1, and its first offer.
fn setup() -> (Harness, String, String, v1::Offer) {
    let mut h = Harness::new();
    let agent = h.register_agent(AGENT_A, "", "cpus:4;mem:4096;disk:10000", vec![]);
    let fw = h.subscribe(FW_1, "db", &["db"], 60.0);
    let out = h.advance(ms(100));
    let offer = Harness::offers_in(&out, FW_1).remove(0);
    (h, agent, fw, offer)
}

/// Waits out the accept filter and returns the next offer to `conn`.
fn next_offer(h: &mut Harness, conn: ConnId) -> Option<v1::Offer> {
    for _ in 0..20 {
        let out = h.advance(ms(200));
        if let Some(o) = Harness::offers_in(&out, conn).into_iter().next() {
            return Some(o);
        }
    }
    None
}

fn check(h: &Harness) {
    h.core.check_invariants().unwrap_or_else(|e| panic!("invariants: {e}"));
}

#[test]
fn reserve_create_and_launch_on_the_volume_in_one_accept() {
    let (mut h, agent, fw, offer) = setup();
    let t = mounting(task("db-1", "cpus(db):1;mem(db):512"), "data", "");
    let out = h.call(
        FW_1,
        accept_ops(
            &offer,
            vec![
                op("op-1", reserve("r1", "cpus:1;mem:512;disk:2000")),
                op("op-2", create("data", "r1", 1000.0, "var/db", false)),
                launch(vec![t]),
            ],
        ),
    );
    assert_eq!(
        statuses_in(&out, FW_1),
        vec![
            finished("op-1", "reserved cpus:1;mem:512;disk:2000 for role db as r1"),
            finished("op-2", "created volume data of 1000 MiB on reservation r1"),
        ]
    );
    // The agent checkpoints the volume before it hears of the task.
    let first_checkpoint = out.iter().position(|o| matches!(o, Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::CheckpointResources(_)) })));
    let run = out.iter().position(|o| matches!(o, Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::RunTask(_)) })));
    assert!(first_checkpoint.unwrap() < run.unwrap());
    let last = checkpoints_in(&out, AGENT_A).pop().unwrap();
    assert_eq!(last.reservations.len(), 1);
    assert_eq!(last.volumes[0].id, "data");
    assert_eq!(last.volumes[0].owner_framework_id, fw);
    // The task carries the volume's path and its disk.
    let run = Harness::run_tasks_in(&out, AGENT_A).remove(0);
    assert_eq!(run.volumes[0].container_path, "var/db");
    assert_eq!(
        weir_proto::convert::resources_from_proto("r", &run.resources).unwrap(),
        ResourceSet::parse("cpus(db):1;mem(db):512;disk(db):1000").unwrap()
    );
    check(&h);
    let state = h.core.state(h.now);
    assert_eq!(state.agents[0].reservations[0].id, "r1");
    assert_eq!(state.agents[0].volumes[0].used_by, vec![format!("{fw}/db-1")]);
    assert_eq!(state.operations.len(), 2);
    // The volume is in use: no other task, no DESTROY.
    let offer = next_offer(&mut h, FW_1).unwrap();
    assert!(offer.volumes.is_empty(), "a volume in use is not offered");
    assert_eq!(offer.reservations[0].id, "r1");
    let out = h.call(FW_1, accept_ops(&offer, vec![op("op-3", destroy("data"))]));
    assert_eq!(statuses_in(&out, FW_1), vec![failed("op-3", &format!("volume data is in use by task {fw}/db-1"))]);
    // Once the task ends, the volume is offered again, with its reservation.
    h.agent_update(AGENT_A, &fw, "db-1", TaskState::Finished, 1);
    let offer = next_offer(&mut h, FW_1).unwrap();
    assert_eq!(offer.volumes.len(), 1);
    assert_eq!(offer.volumes[0].container_path, "var/db");
    assert_eq!(offer.reservations[0].principal, "db-admin");
    check(&h);
    let _ = agent;
}

#[test]
fn the_same_id_twice_is_one_reservation_and_one_volume() {
    let (mut h, _, _, offer) = setup();
    h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;disk:2000")), op("b", create("v", "r1", 500.0, "data", false))]));
    let total = h.core.agents.values().next().unwrap().total.clone();
    // A retry (the framework did not hear back) changes nothing.
    let offer = next_offer(&mut h, FW_1).unwrap();
    let out = h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;disk:2000")), op("b", create("v", "r1", 500.0, "data", false))]));
    assert_eq!(
        statuses_in(&out, FW_1),
        vec![finished("a", "reservation r1 already exists; nothing done"), finished("b", "volume v already exists; nothing done")]
    );
    assert_eq!(h.core.agents.values().next().unwrap().total, total);
    // The same id with other content is refused.
    let offer = next_offer(&mut h, FW_1).unwrap();
    let out = h.call(FW_1, accept_ops(&offer, vec![op("c", reserve("r1", "cpus:2")), op("d", create("v", "r1", 600.0, "data", false))]));
    let agent = h.core.agents.keys().next().unwrap().clone();
    assert_eq!(
        statuses_in(&out, FW_1),
        vec![
            failed("c", &format!("reservation r1 already exists on agent {agent} for role db with cpus:1;disk:2000")),
            failed("d", &format!("volume v of role db already exists on agent {agent} with other settings")),
        ]
    );
    check(&h);
}

#[test]
fn every_validation_rule_fails_with_its_reason_and_changes_nothing() {
    let (mut h, agent, _, offer) = setup();
    h.call(FW_1, accept_ops(&offer, vec![op("setup", reserve("r1", "cpus:1;disk:2000")), op("v", create("v1", "r1", 1500.0, "data", false))]));
    let before = (h.core.agents[&AgentId::new(agent.clone())].total.clone(), h.core.agents[&AgentId::new(agent.clone())].volumes.clone());
    let offer = next_offer(&mut h, FW_1).unwrap();
    let mut bad_role = op("1", reserve("r2", "cpus:1"));
    bad_role.role = "web".into();
    let cases: Vec<(v1::Operation, String)> = vec![
        (bad_role, "operation names role web but the offers are allocated to role db".into()),
        (
            op("2", v1::operation::Kind::Reserve(v1::operation::Reserve { role: "web".into(), resources: unreserved("cpus:1"), ..Default::default() })),
            "RESERVE for role web but the operation acts in role db".into(),
        ),
        (op("3", reserve("r2", "cpus:40")), "RESERVE of cpus:40 needs more than the offers hold: only cpus:3;mem:4096;disk:8000 unreserved".into()),
        (op("4", reserve("r2", "")), "RESERVE names no resources".into()),
        (op("5", reserve("bad id", "cpus:1")), "reserve.reservation_id: reserve.reservation_id \"bad id\" contains ' '; ids may not hold whitespace, control characters or path separators".into()),
        (op("6", unreserve("r1")), "reservation r1 still holds volumes v1; destroy them first".into()),
        (op("7", unreserve("nope")), format!("reservation nope does not exist on agent {agent}")),
        (op("8", create("v2", "nope", 10.0, "x", false)), format!("reservation nope does not exist on agent {agent}")),
        (op("9", create("v2", "r1", 600.0, "x", false)), "reservation r1 has 500 MiB of disk outside volumes; volume v2 needs 600".into()),
        (op("10", create("v2", "r1", -5.0, "x", false)), "create.size: size -5 must be a finite number of MiB above 0".into()),
        (op("11", create("v2", "r1", f64::NAN, "x", false)), "create.size: size NaN must be a finite number of MiB above 0".into()),
        (op("12", create("v2", "r1", 10.0, "../../etc", false)), "container_path \"../../etc\" may not hold empty, '.' or '..' components".into()),
        (op("13", create("v2", "r1", 10.0, "/etc", false)), "container_path \"/etc\" must be relative to the sandbox".into()),
        (op("14", destroy("nope")), format!("volume nope of role db does not exist on agent {agent}")),
        (op("15", grow("v1", 501.0)), "reservation r1 has 500 MiB of disk outside volumes; growing volume v1 needs 501".into()),
        (op("16", shrink("v1", 1500.0)), "shrinking volume v1 (1500 MiB) by 1500 MiB would leave nothing".into()),
        (op("17", shrink("v1", -1.0)), "shrink.size: size -1 must be a finite number of MiB above 0".into()),
        (v1::Operation { id: "18".into(), kind: None, ..Default::default() }, "operation has no kind".into()),
        (op("bad id", destroy("v1")), "operation id \"bad id\" contains ' '; ids may not hold whitespace, control characters or path separators".into()),
    ];
    let (ops, expected): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    let ids: Vec<String> = ops.iter().map(|o| o.id.clone()).collect();
    let out = h.call(FW_1, accept_ops(&offer, ops));
    let got = statuses_in(&out, FW_1);
    for ((id, message), got) in ids.iter().zip(&expected).zip(&got) {
        assert_eq!(got, &failed(id, message));
    }
    assert_eq!(got.len(), expected.len());
    assert!(checkpoints_in(&out, AGENT_A).is_empty(), "a failed operation changes nothing");
    let a = &h.core.agents[&AgentId::new(agent.clone())];
    assert_eq!((a.total.clone(), a.volumes.clone()), before);
    check(&h);
}

#[test]
fn grow_and_shrink_change_the_size_within_the_reservation() {
    let (mut h, agent, _, offer) = setup();
    let out = h.call(
        FW_1,
        accept_ops(
            &offer,
            vec![
                op("a", reserve("r1", "disk:2000;cpus:1")),
                op("b", create("v1", "r1", 1000.0, "data", false)),
                op("c", grow("v1", 1000.0)),
                op("d", shrink("v1", 1500.0)),
            ],
        ),
    );
    assert_eq!(statuses_in(&out, FW_1)[2], finished("c", "volume v1 is now 2000 MiB"));
    assert_eq!(statuses_in(&out, FW_1)[3], finished("d", "volume v1 is now 500 MiB"));
    assert_eq!(checkpoints_in(&out, AGENT_A).last().unwrap().volumes[0].size, 500.0);
    let _ = agent;
    check(&h);
}

#[test]
fn reserved_resources_go_only_to_their_role_and_volumes_only_to_their_owner() {
    let (mut h, agent, fw1, offer) = setup();
    let fw2 = h.subscribe(FW_2, "other-db", &["db"], 60.0);
    h.subscribe(12, "web", &["web"], 60.0);
    h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;mem:512;disk:2000")), op("b", create("mine", "r1", 1000.0, "data", false))]));
    // FW_1 steps aside; the other framework of role db gets the reserved
    // resources but not FW_1's volume, and cannot use its disk either.
    h.call(FW_1, v1::call::Kind::Suppress(v1::call::Suppress::default()));
    let mut web_got_reserved = false;
    let mut db2_offer = None;
    for _ in 0..30 {
        let out = h.advance(ms(200));
        for o in Harness::offers_in(&out, 12) {
            web_got_reserved |= o.resources.iter().any(|r| !r.role.is_empty() && r.role != "*");
            h.call(12, v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![o.id], filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) }));
        }
        if let Some(o) = Harness::offers_in(&out, FW_2).into_iter().find(|o| o.resources.iter().any(|r| r.role == "db")) {
            db2_offer = Some(o);
            break;
        }
        for o in Harness::offers_in(&out, FW_2) {
            h.call(FW_2, v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![o.id], filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) }));
        }
    }
    assert!(!web_got_reserved, "role web was offered db's reservation");
    let offer = db2_offer.expect("the other db framework is offered the reservation");
    assert!(offer.volumes.is_empty(), "another framework of the role saw the volume");
    assert_eq!(offer.reservations[0].id, "r1");
    let out = h.call(
        FW_2,
        accept_ops(
            &offer,
            vec![
                op("x", destroy("mine")),
                launch(vec![mounting(task("steal", "cpus(db):0.5"), "mine", "d"), task("scratch", "cpus(db):0.5;disk(db):1500")]),
            ],
        ),
    );
    assert_eq!(statuses_in(&out, FW_2), vec![failed("x", "volume mine belongs to another framework")]);
    let updates = Harness::updates_in(&out, FW_2);
    assert_eq!(updates.len(), 2);
    assert!(updates.iter().all(|u| state_of(u) == TaskState::Error));
    assert_eq!(updates[0].message, "task mounts volume mine, which belongs to another framework");
    assert_eq!(updates[1].message, format!("role db has 2000 MiB of reserved disk on agent {agent}; volumes and tasks would need 2500"));
    check(&h);
    let _ = (fw1, fw2);
}

#[test]
fn shared_volumes_are_seen_and_mounted_by_every_framework_of_the_role() {
    let (mut h, _, _, offer) = setup();
    let _fw2 = h.subscribe(FW_2, "other-db", &["db"], 60.0);
    let out = h.call(
        FW_1,
        accept_ops(
            &offer,
            vec![
                op("a", reserve("r1", "cpus:2;mem:512;disk:2000")),
                op("b", create("common", "r1", 1000.0, "data", true)),
                launch(vec![mounting(task("one", "cpus(db):1"), "common", "")]),
            ],
        ),
    );
    assert_eq!(Harness::run_tasks_in(&out, AGENT_A).len(), 1);
    h.call(FW_1, v1::call::Kind::Suppress(v1::call::Suppress::default()));
    let mut got = None;
    for _ in 0..30 {
        let out = h.advance(ms(200));
        if let Some(o) = Harness::offers_in(&out, FW_2).into_iter().find(|o| !o.volumes.is_empty()) {
            got = Some(o);
            break;
        }
        for o in Harness::offers_in(&out, FW_2) {
            h.call(FW_2, v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![o.id], filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) }));
        }
    }
    let offer = got.expect("a shared volume in use is still offered to the role");
    let out = h.call(FW_2, accept_ops(&offer, vec![launch(vec![mounting(task("two", "cpus(db):1"), "common", "")])]));
    assert_eq!(Harness::run_tasks_in(&out, AGENT_A).len(), 1, "{:?}", Harness::updates_in(&out, FW_2));
    check(&h);
}

#[test]
fn teardown_keeps_reservations_unless_asked_to_release_them() {
    let (mut h, agent, _, offer) = setup();
    h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;disk:2000")), op("b", create("v1", "r1", 1000.0, "data", false))]));
    h.call(FW_1, v1::call::Kind::Teardown(v1::call::Teardown::default()));
    let a = &h.core.agents[&AgentId::new(agent.clone())];
    assert_eq!((a.reservations.len(), a.volumes.len()), (1, 1));
    check(&h);
    // A new framework of the role makes its own and releases them on leaving.
    let _ = h.subscribe(FW_2, "db2", &["db"], 60.0);
    let offer = next_offer(&mut h, FW_2).unwrap();
    // The volume stays its owner's: another framework never gets it (an
    // operator can destroy it).
    assert!(offer.volumes.is_empty());
    assert_eq!(offer.reservations[0].id, "r1");
    h.call(FW_2, accept_ops(&offer, vec![op("c", reserve("r2", "cpus:1;disk:1000")), op("d", create("v2", "r2", 1000.0, "d", false))]));
    let out = h.call(FW_2, v1::call::Kind::Teardown(v1::call::Teardown { release_reservations: true }));
    let a = &h.core.agents[&AgentId::new(agent.clone())];
    assert_eq!(a.reservations.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["r1"]);
    assert_eq!(a.volumes.len(), 1);
    assert_eq!(checkpoints_in(&out, AGENT_A).last().unwrap().reservations.len(), 1);
    check(&h);
}

#[test]
fn operators_work_on_free_resources() {
    let mut h = Harness::new();
    let agent = h.register_agent(AGENT_A, "", "cpus:4;mem:4096;disk:10000", vec![]);
    let agent_id = AgentId::new(agent.clone());
    let mut r = op("o1", reserve("ops-r", "cpus:1;disk:3000"));
    r.role = "db".into();
    let mut c = op("o2", create("ops-v", "ops-r", 3000.0, "data", false));
    c.role = "db".into();
    let (statuses, out) = h.core.operator_operations("", &agent_id, &[r, c], h.now);
    assert!(statuses.iter().all(|s| s.state == v1::OperationState::OperationFinished as i32), "{statuses:?}");
    assert_eq!(checkpoints_in(&out, AGENT_A).len(), 2);
    check(&h);
    // The role's frameworks see the operator's volume.
    let _ = h.subscribe(FW_1, "db", &["db"], 60.0);
    let offer = Harness::offers_in(&h.advance(ms(100)), FW_1).remove(0);
    assert_eq!(offer.volumes[0].id, "ops-v");
    // Held in an offer now: an operator cannot take it back.
    let mut u = op("o3", unreserve("ops-r"));
    u.role = "db".into();
    let (statuses, _) = h.core.operator_operations("", &agent_id, &[u.clone()], h.now);
    assert_eq!(statuses[0].message, "reservation ops-r still holds volumes ops-v; destroy them first");
    let (statuses, _) = h.core.operator_operations("", &AgentId::new("nope"), &[u], h.now);
    assert_eq!(statuses[0].message, "agent nope is not known");
    let mut w = op("o4", reserve("x", "cpus:1"));
    w.role = "*".into();
    let (statuses, _) = h.core.operator_operations("", &agent_id, &[w], h.now);
    assert_eq!(statuses[0].message, "reservations and volumes need a role other than \"*\"");
    check(&h);
}

#[test]
fn a_new_leader_rebuilds_reservations_from_the_agent_and_offers_them_only_to_their_role() {
    let (mut h, agent, fw, offer) = setup();
    let out = h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;disk:2000")), op("b", create("v1", "r1", 1000.0, "data", false))]));
    let checkpoint = checkpoints_in(&out, AGENT_A).pop().unwrap();
    // A fresh core: the agent re-registers with what it checkpointed.
    let mut h2 = Harness::new();
    let msg = v1::agent_message::Register {
        agent: Some(v1::AgentInfo {
            id: agent.clone(),
            hostname: "host1".into(),
            resources: unreserved("cpus:4;mem:4096;disk:10000"),
            ..Default::default()
        }),
        tasks: vec![],
        reservations: checkpoint.reservations.clone(),
        volumes: checkpoint.volumes.clone(),
        ..Default::default()
    };
    h2.core.agent_register(AGENT_A, &msg, h2.now);
    check(&h2);
    h2.subscribe(FW_2, "web", &["web"], 60.0);
    let out = h2.advance(ms(100));
    let web = Harness::offers_in(&out, FW_2).remove(0);
    assert!(web.resources.iter().all(|r| r.role.is_empty()), "role web got a reservation of db");
    h2.subscribe_as(FW_1, &fw, "db", &["db"], 60.0);
    let offer = next_offer(&mut h2, FW_1).unwrap();
    assert_eq!(offer.volumes[0].id, "v1");
    assert_eq!(offer.volumes[0].owner_framework_id, fw);
    // A report that does not fit the agent's resources is refused by name.
    let mut bad = msg.clone();
    bad.agent.as_mut().unwrap().resources = unreserved("cpus:4;mem:4096;disk:100");
    let out = Harness::new().core.agent_register(AGENT_A, &bad, Duration::ZERO);
    let refused = out.iter().find_map(|o| match o {
        Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::Refused(r)) }) => Some(r.message.clone()),
        _ => None,
    });
    assert_eq!(
        refused.unwrap(),
        "registration refused: register.reservations: reservation r1 (cpus:1;disk:2000 for role db) does not fit in the agent's unreserved resources"
    );
}

/// The registry as a leader's writes left it (in order).
fn registry_of(log: &[Output]) -> weir_ha::memory::MemoryRegistry {
    let registry = weir_ha::memory::MemoryRegistry::new();
    for o in log {
        if let Output::Registry(w) = o {
            registry.apply_now(vec![w.clone()]).unwrap();
        }
    }
    registry
}

fn register_msg(agent: &str, c: &v1::broker_message::CheckpointResources) -> v1::agent_message::Register {
    v1::agent_message::Register {
        agent: Some(v1::AgentInfo { id: agent.to_owned(), hostname: "host1".into(), resources: unreserved("cpus:4;mem:4096;disk:10000"), ..Default::default() }),
        tasks: vec![],
        reservations: c.reservations.clone(),
        volumes: c.volumes.clone(),
    }
}

/// A fresh core that leads term 2 from `registry`.
fn new_leader(registry: &weir_ha::memory::MemoryRegistry) -> (Harness, RecoveryReport) {
    let mut h = Harness::new();
    let report = h.core.recover(&registry.load_now(), 2, h.now);
    (h, report)
}

#[test]
fn reservations_and_volumes_are_written_to_the_registry_before_anything_acknowledges_them() {
    let (mut h, agent, _fw, offer) = setup();
    let out = h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;disk:2000")), op("b", create("v1", "r1", 1000.0, "data", false))]));
    // Each operation: the registry write, then the agent's checkpoint, then the status.
    let order: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Output::Registry(weir_ha::Write::Put(r)) if r.collection == "resources" => Some("registry"),
            Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::CheckpointResources(_)) }) => Some("checkpoint"),
            Output::Framework(_, v1::Event { kind: Some(v1::event::Kind::OperationStatus(_)) }) => Some("status"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["registry", "checkpoint", "status", "registry", "checkpoint", "status"]);
    let registry = registry_of(&h.log);
    let record = registry.load_now().into_iter().find(|r| r.collection == "resources").unwrap();
    assert_eq!(record.key, agent);
    let c = v1::broker_message::CheckpointResources::decode(record.value.as_slice()).unwrap();
    assert_eq!(c, checkpoints_in(&out, AGENT_A).pop().unwrap());
    // An operator's operation is recorded the same way, down to an empty
    // list (which still says the registry knows this agent's list).
    for (id, kind) in [("c", destroy("v1")), ("d", unreserve("r1"))] {
        let (statuses, out) = h.core.operator_operations("", &AgentId::new(agent.clone()), &[v1::Operation { role: "db".into(), ..op(id, kind) }], h.now);
        assert_eq!(statuses[0].state, v1::OperationState::OperationFinished as i32, "{}", statuses[0].message);
        assert!(matches!(out.first(), Some(Output::Registry(weir_ha::Write::Put(r))) if r.collection == "resources"));
        h.record(out);
    }
    let record = registry_of(&h.log).load_now().into_iter().find(|r| r.collection == "resources").unwrap();
    assert_eq!(v1::broker_message::CheckpointResources::decode(record.value.as_slice()).unwrap(), Default::default());
}

#[test]
fn a_new_leader_knows_reservations_from_the_registry_and_resends_a_lost_checkpoint() {
    let (mut h, agent, fw, offer) = setup();
    h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;disk:2000")), op("b", create("v1", "r1", 1000.0, "data", false))]));
    let registry = registry_of(&h.log);
    let (mut h2, report) = new_leader(&registry);
    assert_eq!((report.agents, report.frameworks, report.resources, report.skipped.len()), (1, 1, 1, 0));
    // Before the agent is back, /state shows what the registry holds for it.
    let state = h2.core.state(h2.now);
    assert!(state.agents.is_empty());
    assert_eq!(state.missing_agents.len(), 1);
    let missing = &state.missing_agents[0];
    assert_eq!((missing.id.as_str(), missing.hostname.as_str(), missing.status.as_str()), (agent.as_str(), "host1", "awaited"));
    assert_eq!(missing.reservations[0].id, "r1");
    assert_eq!(missing.volumes[0].id, "v1");
    // The agent re-registers without them: the CHECKPOINT_RESOURCES never
    // reached it before the old leader died. The registry's list wins and
    // is sent to it after REGISTERED.
    let out = h2.core.agent_register(AGENT_A, &register_msg(&agent, &Default::default()), h2.now);
    let kinds: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::Registered(_)) }) => Some("registered"),
            Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::CheckpointResources(_)) }) => Some("checkpoint"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["registered", "checkpoint"]);
    let sent = checkpoints_in(&out, AGENT_A).pop().unwrap();
    assert_eq!((sent.reservations[0].id.as_str(), sent.volumes[0].id.as_str()), ("r1", "v1"));
    h2.record(out);
    h2.live_agents.push(AGENT_A);
    check(&h2);
    assert!(h2.core.state(h2.now).missing_agents.is_empty());
    // Offered again only to their role, the volume only to its owner.
    h2.subscribe(FW_2, "web", &["web"], 60.0);
    let out = h2.advance(ms(100));
    let web = Harness::offers_in(&out, FW_2).remove(0);
    assert!(web.resources.iter().all(|r| r.role.is_empty()), "role web got a reservation of db");
    assert!(web.volumes.is_empty() && web.reservations.is_empty());
    h2.subscribe_as(FW_1, &fw, "db", &["db"], 60.0);
    let offer = next_offer(&mut h2, FW_1).unwrap();
    assert_eq!(offer.volumes[0].id, "v1");
    assert_eq!(offer.reservations[0].id, "r1");
}

#[test]
fn an_acknowledged_unreserve_wins_over_an_agent_that_never_heard_of_it() {
    let (mut h, agent, _fw, offer) = setup();
    let out = h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;disk:2000"))]));
    let old = checkpoints_in(&out, AGENT_A).pop().unwrap();
    let (statuses, out) = h.core.operator_operations("", &AgentId::new(agent.clone()), &[v1::Operation { role: "db".into(), ..op("b", unreserve("r1")) }], h.now);
    assert_eq!(statuses[0].state, v1::OperationState::OperationFinished as i32, "{}", statuses[0].message);
    h.record(out);
    // The registry's (empty) list wins over the agent's stale report of r1.
    let registry = registry_of(&h.log);
    let (mut h2, report) = new_leader(&registry);
    assert_eq!(report.resources, 1);
    let out = h2.core.agent_register(AGENT_A, &register_msg(&agent, &old), h2.now);
    let id = AgentId::new(agent.clone());
    assert!(h2.core.agents[&id].reservations.is_empty(), "{:?}", h2.core.agents[&id].reservations);
    let sent = checkpoints_in(&out, AGENT_A).pop().expect("the agent is told r1 is gone");
    assert!(sent.reservations.is_empty());
    check(&h2);
}

#[test]
fn an_agent_that_never_returns_keeps_its_reservations_in_the_books_and_in_state() {
    let (mut h, _agent, _fw, offer) = setup();
    h.call(FW_1, accept_ops(&offer, vec![op("a", reserve("r1", "cpus:1;disk:2000")), op("b", create("v1", "r1", 1000.0, "data", false))]));
    let registry = registry_of(&h.log);
    let (mut h2, _) = new_leader(&registry);
    // Recovery times out: the agent is unreachable, with its reservation
    // and volume in the books (offered to nobody while it is away).
    h2.advance(Duration::from_secs(31));
    assert!(!h2.core.recovering());
    check(&h2);
    let state = h2.core.state(h2.now);
    let a = &state.agents[0];
    assert!(!a.reachable);
    assert_eq!((a.reservations[0].id.as_str(), a.volumes[0].id.as_str()), ("r1", "v1"));
    assert_eq!(a.resources, "cpus:3;mem:4096;disk:8000;cpus(db):1;disk(db):2000");
    // Removed after the re-register timeout: still listed, as removed.
    h2.advance(Duration::from_secs(601));
    let state = h2.core.state(h2.now);
    assert!(state.agents.is_empty());
    assert_eq!(state.missing_agents[0].status, "removed");
    assert_eq!(state.missing_agents[0].reservations[0].id, "r1");
    // And it survives the next failover too.
    let registry = registry_of(&[h.log.clone(), h2.log.clone()].concat());
    let (h3, report) = new_leader(&registry);
    assert_eq!((report.agents, report.resources), (0, 1));
    assert_eq!(h3.core.state(h3.now).missing_agents[0].volumes[0].id, "v1");
}

#[derive(Debug, Clone)]
enum Step {
    Reserve { id: u8, cpus: u8, disk: u16 },
    Unreserve { id: u8 },
    Create { id: u8, on: u8, size: u16, shared: bool },
    Destroy { id: u8 },
    Grow { id: u8, by: u16 },
    Shrink { id: u8, by: u16 },
    Launch { task: u8, volume: Option<u8>, disk: u16 },
    Finish { task: u8 },
    /// `lost`: the last CHECKPOINT_RESOURCES never reached the agent.
    Failover { lost: bool },
    Teardown { release: bool },
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4u8, 0..3u8, 0..3000u16).prop_map(|(id, cpus, disk)| Step::Reserve { id, cpus, disk }),
        (0..4u8).prop_map(|id| Step::Unreserve { id }),
        (0..4u8, 0..4u8, 0..2000u16, any::<bool>()).prop_map(|(id, on, size, shared)| Step::Create { id, on, size, shared }),
        (0..4u8).prop_map(|id| Step::Destroy { id }),
        (0..4u8, 0..1000u16).prop_map(|(id, by)| Step::Grow { id, by }),
        (0..4u8, 0..1000u16).prop_map(|(id, by)| Step::Shrink { id, by }),
        (0..6u8, proptest::option::of(0..4u8), 0..1500u16).prop_map(|(task, volume, disk)| Step::Launch { task, volume, disk }),
        (0..6u8).prop_map(|task| Step::Finish { task }),
        any::<bool>().prop_map(|lost| Step::Failover { lost }),
        any::<bool>().prop_map(|release| Step::Teardown { release }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Over random operations, launches, task ends, teardowns and broker
    /// failovers (the new core recovers from the registry the old one
    /// wrote, and the agent re-registers with its last checkpoint or, when
    /// that was lost in flight, the one before), the books after the
    /// failover are the ones before it, and they stay consistent: reserved + unreserved is
    /// the agent's total, no volume without its reservation, no volume disk
    /// handed out twice; a failed operation changes nothing.
    #[test]
    fn books_stay_consistent_over_random_operations(steps in prop::collection::vec(arb_step(), 1..40)) {
        let (mut h, agent, mut fw, _) = setup();
        let agent_id = AgentId::new(agent.clone());
        let mut checkpoint = v1::broker_message::CheckpointResources::default();
        let mut previous = checkpoint.clone();
        let registry = weir_ha::memory::MemoryRegistry::new();
        let mut epoch = 1;
        let mut running: Vec<(String, u8)> = Vec::new();
        let mut uuid = 0u8;
        for step in steps {
            let Some(offer) = next_offer(&mut h, FW_1) else { continue };
            let books_before = (h.core.agents[&agent_id].total.clone(), h.core.agents[&agent_id].reservations.clone(), h.core.agents[&agent_id].volumes.clone());
            let operation = match step.clone() {
                Step::Reserve { id, cpus, disk } => Some(op("s", reserve(&format!("r{id}"), &format!("cpus:{cpus};disk:{disk}")))),
                Step::Unreserve { id } => Some(op("s", unreserve(&format!("r{id}")))),
                Step::Create { id, on, size, shared } => Some(op("s", create(&format!("v{id}"), &format!("r{on}"), f64::from(size), "data", shared))),
                Step::Destroy { id } => Some(op("s", destroy(&format!("v{id}")))),
                Step::Grow { id, by } => Some(op("s", grow(&format!("v{id}"), f64::from(by)))),
                Step::Shrink { id, by } => Some(op("s", shrink(&format!("v{id}"), f64::from(by)))),
                _ => None,
            };
            match step {
                Step::Launch { task: n, volume, disk } => {
                    let spec = if disk == 0 { "cpus(db):0.1".to_owned() } else { format!("cpus(db):0.1;disk(db):{disk}") };
                    let mut t = task(&format!("t{n}-{uuid}"), &spec);
                    if let Some(v) = volume {
                        t = mounting(t, &format!("v{v}"), "");
                    }
                    let out = h.call(FW_1, accept_ops(&offer, vec![launch(vec![t.clone()])]));
                    if !Harness::run_tasks_in(&out, AGENT_A).is_empty() {
                        running.push((t.task_id.clone(), n));
                    }
                    uuid = uuid.wrapping_add(1);
                }
                Step::Finish { task: n } => {
                    h.call(FW_1, v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![offer.id.clone()], filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) }));
                    if let Some(pos) = running.iter().position(|(_, m)| *m == n) {
                        let (id, _) = running.remove(pos);
                        uuid = uuid.wrapping_add(1);
                        h.agent_update(AGENT_A, &fw, &id, TaskState::Finished, uuid);
                    }
                }
                Step::Failover { lost } => {
                    for o in &h.log {
                        if let Output::Registry(w) = o {
                            registry.apply_now(vec![w.clone()]).unwrap();
                        }
                    }
                    let books = (h.core.agents[&agent_id].reservations.clone(), h.core.agents[&agent_id].volumes.clone());
                    let reported = if lost { previous.clone() } else { checkpoint.clone() };
                    let running_tasks: Vec<v1::RunningTask> = h.core.tasks.iter().map(|((f, _), t)| v1::RunningTask {
                        framework_id: f.to_string(),
                        task: Some(v1::TaskInfo {
                            task_id: t.latest.task_id.clone(),
                            name: t.name.clone(),
                            resources: resources_to_proto(&t.resources),
                            volumes: t.volumes.iter().map(|v| v1::VolumeMount { volume_id: v.to_string(), ..Default::default() }).collect(),
                            ..Default::default()
                        }),
                        latest: Some(v1::TaskStatus { state: weir_proto::convert::task_state_to_proto(TaskState::Running) as i32, ..t.latest.clone() }),
                    }).collect();
                    let mut fresh = Harness::new();
                    epoch += 1;
                    let report = fresh.core.recover(&registry.load_now(), epoch, fresh.now);
                    prop_assert!(report.skipped.is_empty(), "{:?}", report.skipped);
                    let msg = v1::agent_message::Register {
                        agent: Some(v1::AgentInfo { id: agent.clone(), hostname: "host1".into(), resources: unreserved("cpus:4;mem:4096;disk:10000"), ..Default::default() }),
                        tasks: running_tasks,
                        reservations: reported.reservations.clone(),
                        volumes: reported.volumes.clone(),
                        ..Default::default()
                    };
                    let out = fresh.core.agent_register(AGENT_A, &msg, fresh.now);
                    prop_assert!(out.iter().any(|o| matches!(o, Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::Registered(_)) }))), "{out:?}");
                    let a = &fresh.core.agents[&agent_id];
                    prop_assert_eq!(&(a.reservations.clone(), a.volumes.clone()), &books, "the books after the failover are not the ones before it");
                    // The agent is sent the list iff its report differed.
                    let resent = checkpoints_in(&out, AGENT_A).pop();
                    prop_assert_eq!(resent.is_some(), reported != checkpoint);
                    if let Some(c) = resent { previous = c.clone(); checkpoint = c; } else { previous = checkpoint.clone(); }
                    fresh.record(out);
                    fresh.live_agents.push(AGENT_A);
                    fresh.subscribe_as(FW_1, &fw, "db", &["db"], 60.0);
                    h = fresh;
                    check(&h);
                    continue;
                }
                Step::Teardown { release } => {
                    h.call(FW_1, v1::call::Kind::Teardown(v1::call::Teardown { release_reservations: release }));
                    if let Some(c) = checkpoints_in(&h.log, AGENT_A).pop() {
                        if c != checkpoint { previous = std::mem::replace(&mut checkpoint, c); }
                    }
                    running.clear();
                    fw = h.subscribe(FW_1, "db", &["db"], 60.0);
                    check(&h);
                    continue;
                }
                _ => {}
            }
            if let Some(operation) = operation {
                let out = h.call(FW_1, accept_ops(&offer, vec![operation]));
                let statuses = statuses_in(&out, FW_1);
                prop_assert_eq!(statuses.len(), 1);
                if statuses[0].1 == "OPERATION_FAILED" {
                    let a = &h.core.agents[&agent_id];
                    prop_assert_eq!(&(a.total.clone(), a.reservations.clone(), a.volumes.clone()), &books_before, "{}", statuses[0].2);
                    prop_assert!(checkpoints_in(&out, AGENT_A).is_empty());
                }
                if let Some(c) = checkpoints_in(&out, AGENT_A).pop() { previous = std::mem::replace(&mut checkpoint, c); }
            }
            if let Err(e) = h.core.check_invariants() {
                prop_assert!(false, "after {:?}: {}", step, e);
            }
        }
    }
}

fn backed(volume: &str, reservation: &str, backing: &str) -> v1::operation::Kind {
    v1::operation::Kind::Create(v1::operation::Create {
        volume_id: volume.into(),
        reservation_id: reservation.into(),
        size: 500.0,
        container_path: "data".into(),
        backing: backing.into(),
        ..Default::default()
    })
}

fn operator_op(id: &str, kind: v1::operation::Kind) -> v1::Operation {
    v1::Operation { id: id.into(), role: "db".into(), kind: Some(kind) }
}

fn sync_volumes_in(out: &[Output], conn: ConnId) -> Vec<v1::broker_message::SyncVolume> {
    out.iter()
        .filter_map(|o| match o {
            Output::Agent(c, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::SyncVolume(s)) }) if *c == conn => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn state_name(s: &v1::OperationStatus) -> &'static str {
    v1::OperationState::try_from(s.state).unwrap().as_str_name()
}

fn volume_sync(operation: &str, volume: &str, trigger: &str, error: &str, generation: u64) -> v1::AgentMessage {
    v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::VolumeSync(v1::agent_message::VolumeSync {
            operation_id: operation.into(),
            role: "db".into(),
            volume_id: volume.into(),
            trigger: trigger.into(),
            error: error.into(),
            generation,
            files_total: 3,
            files_copied: 1,
            bytes_total: 300,
            bytes_copied: 12,
            millis: 15,
            ..Default::default()
        })),
    }
}

#[test]
fn a_backed_volume_is_pending_until_its_agent_has_attached_it_and_syncs_are_reported() {
    let mut h = Harness::new();
    let agent = AgentId::new(h.register_agent(AGENT_A, "", "cpus:4;mem:4096;disk:10000", vec![]));
    let backing = "hdfs://127.0.0.1:9000/weir/volumes/pgdata";
    let (statuses, out) = h.core.operator_operations("", 
        &agent,
        &[operator_op("o1", reserve("r1", "cpus:1;disk:2000")), operator_op("o2", backed("pgdata", "r1", backing))],
        h.now,
    );
    assert_eq!(state_name(&statuses[1]), "OPERATION_PENDING", "{statuses:?}");
    assert!(statuses[1].message.contains(backing), "{}", statuses[1].message);
    // The agent hears of the volume, then is asked to attach it.
    let last_checkpoint = out.iter().rposition(|o| matches!(o, Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::CheckpointResources(_)) })));
    let sync = out.iter().position(|o| matches!(o, Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::SyncVolume(_)) })));
    assert!(last_checkpoint.unwrap() < sync.unwrap());
    assert_eq!(checkpoints_in(&out, AGENT_A).pop().unwrap().volumes[0].backing, backing);
    let asked = sync_volumes_in(&out, AGENT_A).remove(0);
    assert_eq!((asked.operation_id.as_str(), asked.volume_id.as_str(), asked.create), ("o2", "pgdata", true));

    h.core.agent_message(AGENT_A, &volume_sync("o2", "pgdata", "restore", "", 4), h.now);
    let state = h.core.state(h.now);
    let done = &state.operations[0];
    assert_eq!((done.id.as_str(), done.kind.as_str(), done.state.as_str()), ("o2", "CREATE", "OPERATION_FINISHED"));
    assert_eq!(done.message, format!("restored volume pgdata from {backing}: generation 4, 3 files, 300 bytes in 15 ms"));

    // SYNC: pending, then the agent's numbers.
    let (statuses, out) = h.core.operator_operations("", &agent, &[operator_op("o3", v1::operation::Kind::Sync(v1::operation::Sync { volume_id: "pgdata".into() }))], h.now);
    assert_eq!(state_name(&statuses[0]), "OPERATION_PENDING");
    assert!(checkpoints_in(&out, AGENT_A).is_empty(), "a SYNC changes no books");
    assert_eq!(sync_volumes_in(&out, AGENT_A)[0].create, false);
    h.core.agent_message(AGENT_A, &volume_sync("o3", "pgdata", "sync", "", 5), h.now);
    let state = h.core.state(h.now);
    assert_eq!(
        state.operations[0].message,
        format!("synced volume pgdata to {backing}: generation 5, 3 files (1 copied), 12 of 300 bytes copied in 15 ms")
    );
    let volume = &state.agents[0].volumes[0];
    assert_eq!(volume.backing, backing);
    let last = volume.last_sync.as_ref().unwrap();
    assert_eq!((last.trigger.as_str(), last.generation, last.bytes_copied, last.millis), ("sync", 5, 12, 15));

    // A stale copy's refusal is shown on the volume; no operation asked for it.
    h.core.agent_message(AGENT_A, &volume_sync("", "pgdata", "interval", "volume pgdata: this copy is at generation 3 but …", 0), h.now);
    let state = h.core.state(h.now);
    assert!(state.agents[0].volumes[0].last_sync.as_ref().unwrap().error.contains("generation 3"));
    // o1, o2 and o3 pending and final: the agent's own syncs are not operations.
    assert_eq!(state.operations.len(), 5);
    check(&h);
}

#[test]
fn backed_volumes_refuse_bad_backings_and_a_failed_attach_undoes_the_create() {
    let mut h = Harness::new();
    let agent = AgentId::new(h.register_agent(AGENT_A, "", "cpus:4;mem:4096;disk:10000", vec![]));
    let b = AgentId::new(h.register_agent(AGENT_B, "", "cpus:4;mem:4096;disk:10000", vec![]));
    let uri = "hdfs://nn:9000/weir/v";
    let (statuses, _) = h.core.operator_operations("", &agent, &[operator_op("r", reserve("r1", "cpus:1;disk:2000"))], h.now);
    assert_eq!(state_name(&statuses[0]), "OPERATION_FINISHED");
    h.core.operator_operations("", &b, &[operator_op("r", reserve("r1", "cpus:1;disk:2000"))], h.now);
    let message = |h: &mut Harness, on: &AgentId, op: v1::Operation| h.core.operator_operations("", on, &[op], h.now).0.remove(0).message;

    assert_eq!(message(&mut h, &agent, operator_op("x", backed("v", "r1", "s3://bucket/v"))), "create.backing: backing \"s3://bucket/v\" must be hdfs://[namenode]/path or file:///path");
    assert_eq!(
        message(&mut h, &agent, operator_op("", backed("v", "r1", uri))),
        "CREATE with a backing needs an operation id: its final status comes from the agent and carries it"
    );
    let (statuses, _) = h.core.operator_operations("", &agent, &[operator_op("c1", backed("v", "r1", uri))], h.now);
    assert_eq!(state_name(&statuses[0]), "OPERATION_PENDING");
    h.core.agent_message(AGENT_A, &volume_sync("c1", "v", "create", "", 1), h.now);
    // One backing, one volume.
    assert_eq!(message(&mut h, &agent, operator_op("c2", backed("w", "r1", uri))), format!("backing {uri} already backs volume v of role db on agent {agent}"));
    // The same volume elsewhere only once its agent is gone.
    assert_eq!(
        message(&mut h, &b, operator_op("c3", backed("v", "r1", uri))),
        format!("volume v with backing {uri} is still on agent {agent} (reachable); it can move only once that agent is removed")
    );
    assert_eq!(message(&mut h, &agent, operator_op("s", v1::operation::Kind::Sync(v1::operation::Sync { volume_id: "nope".into() }))), format!("volume nope of role db does not exist on agent {agent}"));

    // The agent cannot attach: the CREATE fails with its reason and the
    // volume leaves the books (and the agent's list).
    let (statuses, _) = h.core.operator_operations("", &b, &[operator_op("c4", backed("other", "r1", "hdfs://nn:9000/weir/taken"))], h.now);
    assert_eq!(state_name(&statuses[0]), "OPERATION_PENDING");
    let error = "backing hdfs://nn:9000/weir/taken belongs to volume someone, not to other";
    let out = h.core.agent_message(AGENT_B, &volume_sync("c4", "other", "create", error, 0), h.now);
    assert!(checkpoints_in(&out, AGENT_B).pop().unwrap().volumes.is_empty());
    let state = h.core.state(h.now);
    let done = &state.operations[0];
    assert_eq!((done.id.as_str(), done.state.as_str()), ("c4", "OPERATION_FAILED"));
    assert_eq!(done.message, format!("{error}; volume other is not created"));
    assert!(state.agents.iter().all(|a| a.volumes.iter().all(|v| v.id != "other")));
    let unbacked = op("s2", v1::operation::Kind::Sync(v1::operation::Sync { volume_id: "plain".into() }));
    let mut plain = operator_op("p", create("plain", "r1", 100.0, "p", false));
    plain.role = "db".into();
    h.core.operator_operations("", &b, &[plain], h.now);
    let mut unbacked = unbacked;
    unbacked.role = "db".into();
    assert_eq!(message(&mut h, &b, unbacked), "volume plain has no backing to sync to");
    check(&h);
}

#[test]
fn a_stale_copy_is_offered_to_nobody_and_mounted_by_no_task() {
    let mut h = Harness::new();
    let agent = AgentId::new(h.register_agent(AGENT_A, "", "cpus:4;mem:4096;disk:10000", vec![]));
    let backing = "hdfs://nn:9000/weir/pgdata";
    h.core.operator_operations("", &agent, &[operator_op("o1", reserve("r1", "cpus:2;mem:1024;disk:2000")), operator_op("o2", backed("pgdata", "r1", backing))], h.now);
    h.core.agent_message(AGENT_A, &volume_sync("o2", "pgdata", "create", "", 1), h.now);
    let fw = h.subscribe(FW_1, "db", &["db"], 60.0);
    let offer = Harness::offers_in(&h.advance(ms(100)), FW_1).remove(0);
    assert_eq!(offer.volumes[0].id, "pgdata");
    // The agent finds the backing moved on (the volume lives elsewhere now).
    let mut stale = volume_sync("", "pgdata", "registered", "volume pgdata here is a stale copy (generation 1); … holds generation 3 of agent X", 0);
    if let Some(v1::agent_message::Kind::VolumeSync(v)) = stale.kind.as_mut() {
        v.stale = true;
    }
    h.core.agent_message(AGENT_A, &stale, h.now);
    let t = mounting(task("db-1", "cpus(db):1;mem(db):128"), "pgdata", "");
    let out = h.call(FW_1, accept_ops(&offer, vec![launch(vec![t])]));
    let update = Harness::updates_in(&out, FW_1).remove(0);
    assert_eq!(state_of(&update), TaskState::Error);
    assert!(update.message.contains(&format!("task mounts volume pgdata, whose copy on agent {agent} is stale: volume pgdata here is a stale copy")), "{}", update.message);
    let offer = next_offer(&mut h, FW_1).unwrap();
    assert!(offer.volumes.is_empty(), "a stale copy was offered: {:?}", offer.volumes);
    assert_eq!(offer.reservations[0].id, "r1");
    assert!(h.core.state(h.now).agents[0].volumes[0].last_sync.as_ref().unwrap().stale);
    // Nor does it count as holding the volume's data for placement.
    let data = v1::DataLocality { volume_ids: vec!["pgdata".into()], ..Default::default() };
    h.call(FW_1, v1::call::Kind::Revive(v1::call::Revive { roles: vec![], data: Some(data) }));
    let fw = FrameworkId::new(fw);
    assert!(h.core.data_on_agents(&fw).is_empty(), "{:?}", h.core.data_on_agents(&fw));
    // A DESTROY clears it; the reservation stays.
    let out = h.call(FW_1, accept_ops(&offer, vec![op("d", destroy("pgdata"))]));
    assert_eq!(statuses_in(&out, FW_1), vec![finished("d", "destroyed volume pgdata (500 MiB); its data is deleted")]);
    check(&h);
    let _ = fw;
}
