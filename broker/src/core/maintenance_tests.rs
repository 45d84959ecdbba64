//! Draining agents: offers stop at once, tasks are killed at the deadline
//! and not before, the agent is DRAINED when its last task ends, and the
//! drain (or the agent being gone) outlives a failover.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use weir_ha::{Record, Write};
use weir_model::{AgentId, DrainState, TaskState};
use weir_proto::v1;

use super::tests::{accept, ms, task, Harness, AGENT_A, AGENT_B, FW_1};
use super::*;

const WALL_START: Duration = Duration::from_secs(1_700_000_000);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Kills the broker sent to the agent on `conn`, as `framework/task`.
fn kills_in(out: &[Output], conn: ConnId) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Agent(c, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(k)) }) if *c == conn => {
                Some(format!("{}/{}", k.framework_id, k.task_id))
            }
            _ => None,
        })
        .collect()
}

fn rescinds_in(out: &[Output], conn: ConnId) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::Rescind(r)) }) if *c == conn => Some(r.offer_id.clone()),
            _ => None,
        })
        .collect()
}

fn drain_notices_in(out: &[Output], conn: ConnId) -> Vec<v1::event::AgentDraining> {
    out.iter()
        .filter_map(|o| match o {
            Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::AgentDraining(d)) }) if *c == conn => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// The registry as a map, after applying every write in `out` to it.
fn apply_writes(registry: &mut BTreeMap<(String, String), Vec<u8>>, out: &[Output]) {
    for o in out {
        match o {
            Output::Registry(Write::Put(r)) => {
                registry.insert((r.collection.clone(), r.key.clone()), r.value.clone());
            }
            Output::Registry(Write::Delete { collection, key }) => {
                registry.remove(&(collection.clone(), key.clone()));
            }
            _ => {}
        }
    }
}

fn records(registry: &BTreeMap<(String, String), Vec<u8>>) -> Vec<Record> {
    registry.iter().map(|((c, k), v)| Record { collection: c.clone(), key: k.clone(), value: v.clone() }).collect()
}

fn offered_agents(out: &[Output], conn: ConnId) -> Vec<String> {
    Harness::offers_in(out, conn).into_iter().map(|o| o.agent_id).collect()
}

/// Two agents, one framework with one running task on each.
fn two_agents_with_tasks() -> (Harness, AgentId, AgentId, String) {
    let mut h = Harness::new();
    let a = h.register_agent(AGENT_A, "", "cpus:4;mem:4096", vec![]);
    let b = h.register_agent(AGENT_B, "", "cpus:4;mem:4096", vec![]);
    let fw = h.subscribe(FW_1, "batch", &[], 60.0);
    let out = h.advance(ms(100));
    let offers = Harness::offers_in(&out, FW_1);
    assert_eq!(offers.len(), 2);
    for (i, offer) in offers.iter().enumerate() {
        let out = h.call(FW_1, accept(&[offer], vec![task(&format!("t{i}-{}", offer.agent_id), "cpus:1;mem:128")]));
        assert_eq!(Harness::run_tasks_in(&out, if offer.agent_id == a { AGENT_A } else { AGENT_B }).len(), 1);
        let conn = if offer.agent_id == a { AGENT_A } else { AGENT_B };
        h.agent_update(conn, &fw, &format!("t{i}-{}", offer.agent_id), TaskState::Running, i as u8 + 1);
    }
    (h, AgentId::new(a), AgentId::new(b), fw)
}

fn task_on(h: &Harness, agent: &AgentId) -> String {
    h.core.state(h.now).tasks.iter().find(|t| t.agent_id == agent.as_str()).map(|t| t.id.clone()).unwrap()
}

#[test]
fn a_drained_agent_gets_no_offers_and_its_tasks_are_killed_at_the_deadline_not_before() {
    let (mut h, a, b, fw) = two_agents_with_tasks();
    let (on_a, on_b) = (task_on(&h, &a), task_on(&h, &b));
    // The rest of both agents is on offer again once the accept filter lapses.
    let out = h.advance(secs(6));
    let mut on_offer = offered_agents(&out, FW_1);
    on_offer.sort();
    assert_eq!(on_offer, vec![a.to_string(), b.to_string()]);

    let (state, message, out) = h.core.drain_agent(&a, Some(secs(10)), false, h.now).unwrap();
    let out = h.record(out);
    let deadline = WALL_START + h.now + secs(10);
    assert_eq!(state, DrainState::Draining { deadline });
    assert_eq!(message, format!("agent {a} is draining; tasks still running there are killed in 10s"));
    // The registry hears first: everything after it waits for the write.
    let Some(Output::Registry(Write::Put(record))) = out.first() else { panic!("no registry write first: {out:?}") };
    assert_eq!((record.collection.as_str(), record.key.as_str()), ("maintenance", a.as_str()));
    let offer_on_a = Harness::offers_in(&h.log, FW_1).into_iter().filter(|o| o.agent_id == a.as_str()).last().unwrap();
    assert_eq!(rescinds_in(&out, FW_1), vec![offer_on_a.id.clone()]);
    let notices = drain_notices_in(&out, FW_1);
    assert_eq!(notices.len(), 1);
    assert_eq!((notices[0].agent_id.as_str(), notices[0].deadline), (a.as_str(), deadline.as_secs_f64()));
    h.core.check_invariants().unwrap();

    // An accept of the rescinded offer launches nothing.
    let out = h.call(FW_1, accept(&[&offer_on_a], vec![task("late", "cpus:1;mem:64")]));
    assert!(Harness::run_tasks_in(&out, AGENT_A).is_empty());

    // Until the deadline: nothing killed, nothing offered on A; B goes on.
    let mut before = Vec::new();
    for _ in 0..9 {
        before.extend(h.advance(secs(1)));
    }
    assert!(kills_in(&before, AGENT_A).is_empty(), "killed before the deadline");
    assert!(!offered_agents(&before, FW_1).contains(&a.to_string()));
    assert!(h.core.offers.values().any(|o| o.agent == b), "B's offer stands");

    let out = h.advance(secs(1));
    assert_eq!(kills_in(&out, AGENT_A), vec![format!("{fw}/{on_a}")]);
    assert!(kills_in(&out, AGENT_B).is_empty(), "a task elsewhere was killed");
    // Once: the agent's own kill grace does the rest.
    let out = h.advance(secs(1));
    assert!(kills_in(&out, AGENT_A).is_empty());
    assert!(matches!(h.core.drain_state(&a), DrainState::Draining { .. }), "a task is left");

    // The last task ends: DRAINED, and the registry says so.
    h.agent_update(AGENT_A, &fw, &on_a, TaskState::Killed, 9);
    let out = h.advance(ms(100));
    assert_eq!(h.core.drain_state(&a), DrainState::Drained);
    let drained = out.iter().find_map(|o| match o {
        Output::Registry(Write::Put(r)) if r.collection == "maintenance" => Some(v1::AgentMaintenance::decode(r.value.as_slice()).unwrap()),
        _ => None,
    });
    assert_eq!(drained.map(|m| m.drain), Some(v1::DrainState::DrainDrained as i32));
    let doc = h.core.state(h.now);
    assert_eq!(doc.agents.iter().find(|d| d.id == a.as_str()).unwrap().drain, "drained");
    assert!(doc.tasks.iter().any(|t| t.id == on_b), "the task on B runs on");

    // Still not offered while drained...
    let mut later = Vec::new();
    for _ in 0..10 {
        later.extend(h.advance(secs(1)));
    }
    assert!(!offered_agents(&later, FW_1).contains(&a.to_string()));
    assert!(Harness::run_tasks_in(&h.log, AGENT_A).len() == 1, "only the task before the drain ran on A");
    // ...until reactivated.
    let (_, out) = h.core.reactivate_agent(&a).unwrap();
    assert!(matches!(&out[..], [Output::Registry(Write::Delete { collection, .. })] if collection == "maintenance"));
    let out = h.advance(ms(100));
    assert!(offered_agents(&out, FW_1).contains(&a.to_string()));
    assert_eq!(h.core.drain_state(&a), DrainState::Active);
    h.core.check_invariants().unwrap();
}

#[test]
fn an_agent_with_no_task_drains_at_once_and_a_gone_agent_is_removed_and_refused() {
    let mut h = Harness::new();
    let a = AgentId::new(h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]));
    h.subscribe(FW_1, "idle", &[], 0.0);
    h.advance(ms(100));

    let err = |r: Result<(String, Vec<Output>), String>| r.unwrap_err();
    assert_eq!(
        err(h.core.mark_agent_gone(&a)),
        format!("agent {a} is active; only a drained agent can be marked gone (weir agent drain first)")
    );
    assert_eq!(err(h.core.mark_agent_gone(&AgentId::new("nobody"))), "agent nobody is not known to the broker");
    assert_eq!(h.core.drain_agent(&AgentId::new("nobody"), None, false, h.now).unwrap_err(), "agent nobody is not known to the broker");

    let (state, message, out) = h.core.drain_agent(&a, None, false, h.now).unwrap();
    h.record(out.clone());
    assert_eq!(state, DrainState::Drained);
    assert_eq!(message, format!("agent {a} had no task left: drained"));
    assert_eq!(rescinds_in(&out, FW_1).len(), 1, "its offer is taken back");

    let (message, out) = h.core.mark_agent_gone(&a).unwrap();
    assert_eq!(message, format!("agent {a} is gone"));
    assert!(out.iter().any(|o| matches!(o, Output::Close(AGENT_A))));
    assert!(out.iter().any(|o| matches!(o, Output::Registry(Write::Delete { collection, key }) if collection == "agents" && key == a.as_str())));
    assert!(out.iter().any(|o| matches!(o, Output::Registry(Write::Put(r)) if r.collection == "maintenance")));
    assert!(h.core.agent_summaries().is_empty());
    assert_eq!(h.core.state(h.now).gone_agents, vec![a.to_string()]);
    h.core.check_invariants().unwrap();
    assert_eq!(
        err(h.core.reactivate_agent(&a)),
        format!("agent {a} was marked gone; start it with a fresh work directory to bring the machine back")
    );

    // It comes back under its id: refused, with the reason.
    let register = v1::agent_message::Register {
        agent: Some(v1::AgentInfo {
            id: a.to_string(),
            hostname: "host1".into(),
            resources: weir_proto::convert::resources_to_proto(&ResourceSet::parse("cpus:2;mem:1024").unwrap()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let out = h.core.agent_register(3, &register, h.now);
    let refused = out.iter().find_map(|o| match o {
        Output::Agent(3, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::Refused(r)) }) => Some(r.message.clone()),
        _ => None,
    });
    assert_eq!(
        refused.as_deref(),
        Some(format!("agent {a} was marked gone by an operator; start the agent with a fresh work directory to rejoin").as_str())
    );
    assert!(h.core.agent_summaries().is_empty());
}

#[test]
fn drain_with_mark_gone_removes_the_agent_once_its_tasks_end() {
    let (mut h, a, b, fw) = two_agents_with_tasks();
    let on_a = task_on(&h, &a);
    let (state, _, out) = h.core.drain_agent(&a, Some(secs(30)), true, h.now).unwrap();
    h.record(out);
    assert!(matches!(state, DrainState::Draining { .. }));
    // The framework moves its task away before the deadline.
    h.agent_update(AGENT_A, &fw, &on_a, TaskState::Finished, 7);
    let out = h.advance(ms(100));
    assert!(kills_in(&out, AGENT_A).is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::Close(AGENT_A))));
    assert_eq!(h.core.state(h.now).gone_agents, vec![a.to_string()]);
    assert_eq!(h.core.agent_summaries().iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![b]);
    h.core.check_invariants().unwrap();
}

#[test]
fn a_drain_and_a_gone_agent_survive_a_failover() {
    let (mut h, a, b, fw) = two_agents_with_tasks();
    let on_a = task_on(&h, &a);
    let mut registry = BTreeMap::new();
    apply_writes(&mut registry, &h.log);
    let (_, _, out) = h.core.drain_agent(&a, Some(secs(20)), false, h.now).unwrap();
    apply_writes(&mut registry, &out);
    let deadline = WALL_START + h.now + secs(20);

    // A new leader, whose clocks read otherwise, 5 s later.
    let t0 = secs(1000);
    let unix_now = deadline - secs(15);
    let mut core = BrokerCore::new(BrokerSettings { agent_unreachable_timeout: secs(5), ..Default::default() }, "c", t0, unix_now);
    let report = core.recover(&records(&registry), 2, t0);
    assert_eq!((report.maintenance, report.skipped.len()), (1, 0), "{report:?}");
    assert_eq!(core.drain_state(&a), DrainState::Draining { deadline });

    // The agents come back with their tasks; the framework re-subscribes.
    let running = |id: &str| v1::RunningTask {
        framework_id: fw.clone(),
        task: Some(task(id, "cpus:1;mem:128")),
        latest: Some(v1::TaskStatus {
            task_id: id.into(),
            framework_id: fw.clone(),
            state: weir_proto::convert::task_state_to_proto(TaskState::Running) as i32,
            ..Default::default()
        }),
    };
    let on_b = task_on(&h, &b);
    let register = |id: &AgentId, t: &str| v1::agent_message::Register {
        agent: Some(v1::AgentInfo {
            id: id.to_string(),
            hostname: "h".into(),
            resources: weir_proto::convert::resources_to_proto(&ResourceSet::parse("cpus:4;mem:4096").unwrap()),
            ..Default::default()
        }),
        tasks: vec![running(t)],
        ..Default::default()
    };
    core.agent_register(AGENT_A, &register(&a, &on_a), t0);
    core.agent_register(AGENT_B, &register(&b, &on_b), t0);
    let subscribe = v1::Call {
        framework_id: fw.clone(),
        kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
            framework: Some(v1::FrameworkInfo { id: fw.clone(), name: "batch".into(), failover_timeout_seconds: 60.0, ..Default::default() }),
            ..Default::default()
        })),
    };
    let out = core.framework_call(FW_1, &subscribe, t0);
    assert_eq!(drain_notices_in(&out, FW_1).iter().map(|d| d.deadline).collect::<Vec<_>>(), vec![deadline.as_secs_f64()]);

    let mut all = Vec::new();
    let heartbeat = v1::AgentMessage { kind: Some(v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat::default())) };
    for step in 1..=20u64 {
        let now = t0 + ms(step * 1000);
        core.agent_message(AGENT_A, &heartbeat, now);
        core.agent_message(AGENT_B, &heartbeat, now);
        let out = core.tick(now);
        if step < 15 {
            assert!(kills_in(&out, AGENT_A).is_empty(), "killed {step} s after the failover, before the deadline");
        }
        all.extend(out);
        core.check_invariants().unwrap();
    }
    assert!(!offered_agents(&all, FW_1).is_empty(), "offers resumed");
    assert!(!offered_agents(&all, FW_1).contains(&a.to_string()), "the draining agent was offered after the failover");
    assert_eq!(kills_in(&all, AGENT_A), vec![format!("{fw}/{on_a}")]);
    assert!(kills_in(&all, AGENT_B).is_empty());

    // Drained, then gone: a third leader still refuses it.
    let update = v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate {
            status: Some(v1::TaskStatus {
                task_id: on_a.clone(),
                framework_id: fw.clone(),
                state: weir_proto::convert::task_state_to_proto(TaskState::Killed) as i32,
                uuid: vec![4; 16],
                ..Default::default()
            }),
        })),
    };
    let now = t0 + secs(21);
    apply_writes(&mut registry, &core.agent_message(AGENT_A, &update, now));
    apply_writes(&mut registry, &core.tick(now));
    assert_eq!(core.drain_state(&a), DrainState::Drained);
    let (_, out) = core.mark_agent_gone(&a).unwrap();
    apply_writes(&mut registry, &out);
    assert!(!registry.contains_key(&("agents".to_owned(), a.to_string())));
    let mut third = BrokerCore::new(BrokerSettings::default(), "d", secs(5), unix_now + secs(60));
    third.recover(&records(&registry), 3, secs(5));
    let out = third.agent_register(AGENT_A, &register(&a, &on_a), secs(5));
    assert!(matches!(out.last(), Some(Output::Close(AGENT_A))), "{out:?}");
    assert_eq!(third.state(secs(5)).gone_agents, vec![a.to_string()]);
}

#[test]
fn a_draining_agent_that_was_away_at_the_deadline_is_told_to_kill_when_it_returns() {
    let (mut h, a, _b, fw) = two_agents_with_tasks();
    let on_a = task_on(&h, &a);
    let (_, _, out) = h.core.drain_agent(&a, Some(secs(2)), false, h.now).unwrap();
    h.record(out);
    // Its stream breaks before the deadline and it stays away past it.
    h.live_agents.retain(|c| *c != AGENT_A);
    h.core.agent_detached(AGENT_A, h.now);
    let out = h.advance(secs(3));
    assert!(kills_in(&out, AGENT_A).is_empty(), "no stream to send kills on");
    // It re-registers (on a new stream) with its task: killed now, not offered.
    let register = v1::agent_message::Register {
        agent: Some(v1::AgentInfo {
            id: a.to_string(),
            hostname: "host1".into(),
            resources: weir_proto::convert::resources_to_proto(&ResourceSet::parse("cpus:4;mem:4096").unwrap()),
            ..Default::default()
        }),
        tasks: vec![v1::RunningTask {
            framework_id: fw.clone(),
            task: Some(task(&on_a, "cpus:1;mem:128")),
            latest: Some(v1::TaskStatus {
                task_id: on_a.clone(),
                framework_id: fw.clone(),
                state: weir_proto::convert::task_state_to_proto(TaskState::Running) as i32,
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let out = h.core.agent_register(7, &register, h.now);
    h.record(out);
    h.live_agents.push(7);
    let out = h.advance(ms(100));
    assert_eq!(kills_in(&out, 7), vec![format!("{fw}/{on_a}")]);
    let later = h.advance(secs(6));
    assert!(!offered_agents(&later, FW_1).contains(&a.to_string()));
    h.core.check_invariants().unwrap();
}

fn window(start: Duration, duration: Duration) -> weir_model::Unavailability {
    weir_model::Unavailability { start, duration }
}

/// Offers on `agent` in `out`, with the window each carries (start, duration).
fn windows_on(out: &[Output], agent: &AgentId) -> Vec<Option<(f64, f64)>> {
    Harness::offers_in(out, FW_1)
        .into_iter()
        .filter(|o| o.agent_id == agent.as_str())
        .map(|o| o.unavailability.map(|u| (u.start, u.duration)))
        .collect()
}

#[test]
fn a_window_scheduled_ahead_is_on_offers_then_drains_at_its_start_and_ends_by_itself() {
    let (mut h, a, b, fw) = two_agents_with_tasks();
    let (on_a, on_b) = (task_on(&h, &a), task_on(&h, &b));
    h.advance(secs(6));
    let start = WALL_START + h.now + secs(20);
    let (message, out) = h.core.schedule_maintenance(&a, window(start, secs(30)), h.now).unwrap();
    let out = h.record(out);
    assert_eq!(message, format!("agent {a} goes into maintenance in 20s for 30s; its offers say so until then"));
    let Some(Output::Registry(Write::Put(record))) = out.first() else { panic!("no registry write first: {out:?}") };
    let record = v1::AgentMaintenance::decode(record.value.as_slice()).unwrap();
    assert_eq!(record.drain, v1::DrainState::DrainActive as i32);
    assert_eq!(record.window.map(|w| (w.start, w.duration)), Some((start.as_secs_f64(), 30.0)));
    // The offer out on A without the window is taken back; the framework
    // with a task there hears the window, the start as its deadline.
    assert_eq!(rescinds_in(&out, FW_1).len(), 1);
    let notices = drain_notices_in(&out, FW_1);
    assert_eq!(notices.len(), 1);
    assert_eq!((notices[0].deadline, notices[0].unavailability.map(|u| u.duration)), (start.as_secs_f64(), Some(30.0)));
    assert_eq!(h.core.drain_state(&a), DrainState::Active);

    // Until the start A is offered, saying when it goes; B's offers say nothing.
    let mut before = Vec::new();
    for _ in 0..19 {
        before.extend(h.advance(secs(1)));
    }
    assert!(kills_in(&before, AGENT_A).is_empty(), "killed before the window");
    assert!(!windows_on(&before, &a).is_empty(), "A was not offered before its window");
    assert!(windows_on(&before, &a).iter().all(|w| *w == Some((start.as_secs_f64(), 30.0))));
    assert!(windows_on(&before, &b).iter().all(Option::is_none));
    let doc = h.core.state(h.now);
    let listed = doc.agents.iter().find(|d| d.id == a.as_str()).unwrap();
    assert_eq!((listed.drain.as_str(), listed.maintenance.map(|w| w.end)), ("active", Some((start + secs(30)).as_secs_f64())));
    // A task launched in the offer is accepted: the framework knows.
    let offer = Harness::offers_in(&h.log, FW_1).into_iter().rfind(|o| o.agent_id == a.as_str()).unwrap();
    let out = h.call(FW_1, accept(&[&offer], vec![task("short", "cpus:1;mem:64")]));
    assert_eq!(Harness::run_tasks_in(&out, AGENT_A).len(), 1);
    h.agent_update(AGENT_A, &fw, "short", TaskState::Running, 20);

    // The start: both tasks on A are killed, A's offers end, B runs on.
    let out = h.advance(secs(1));
    let mut killed = kills_in(&out, AGENT_A);
    killed.sort();
    let mut expected = vec![format!("{fw}/{on_a}"), format!("{fw}/short")];
    expected.sort();
    assert_eq!(killed, expected);
    assert_eq!(h.core.drain_state(&a), DrainState::Draining { deadline: start });
    assert!(!h.core.offers.values().any(|o| o.agent == a));
    h.agent_update(AGENT_A, &fw, &on_a, TaskState::Killed, 21);
    h.agent_update(AGENT_A, &fw, "short", TaskState::Killed, 22);
    let mut during = h.advance(ms(100));
    assert_eq!(h.core.drain_state(&a), DrainState::Drained);
    for _ in 0..28 {
        during.extend(h.advance(secs(1)));
    }
    assert!(windows_on(&during, &a).is_empty(), "offered during its window");
    assert!(h.core.state(h.now).tasks.iter().any(|t| t.id == on_b));
    h.core.check_invariants().unwrap();

    // The end: active again, the record gone, offered without a window.
    let mut after = Vec::new();
    for _ in 0..3 {
        after.extend(h.advance(secs(1)));
    }
    assert_eq!(h.core.drain_state(&a), DrainState::Active);
    assert!(after.iter().any(|o| matches!(o, Output::Registry(Write::Delete { collection, key }) if collection == "maintenance" && key == a.as_str())));
    after.extend(h.advance(secs(6)));
    assert_eq!(windows_on(&after, &a), vec![None], "offered again, without the window");
    assert!(h.core.unavailability(&a).is_none());
    h.core.check_invariants().unwrap();
}

#[test]
fn windows_refuse_what_cannot_be_and_reactivate_cancels_one() {
    let (mut h, a, b, _fw) = two_agents_with_tasks();
    let now = WALL_START + h.now;
    let err = |h: &mut Harness, id: &AgentId, w| h.core.schedule_maintenance(id, w, h.now).unwrap_err();
    assert_eq!(err(&mut h, &a, window(now + secs(5), Duration::ZERO)), "a maintenance window needs a duration > 0");
    assert!(err(&mut h, &a, window(now - secs(100), secs(50))).contains("which has passed"));
    assert_eq!(err(&mut h, &AgentId::new("nobody"), window(now, secs(5))), "agent nobody is not known to the broker");
    let (_, _, out) = h.core.drain_agent(&b, Some(secs(60)), false, h.now).unwrap();
    h.record(out);
    assert_eq!(
        err(&mut h, &b, window(now + secs(5), secs(5))),
        format!("agent {b} is draining by an operator's drain; reactivate it before scheduling a window")
    );

    let (_, out) = h.core.schedule_maintenance(&a, window(now + secs(60), secs(60)), h.now).unwrap();
    h.record(out);
    let (message, out) = h.core.reactivate_agent(&a).unwrap();
    assert_eq!(message, format!("agent {a}'s maintenance window is cancelled"));
    assert!(matches!(out.first(), Some(Output::Registry(Write::Delete { collection, .. })) if collection == "maintenance"));
    h.record(out);
    assert!(h.core.unavailability(&a).is_none());
    let later = h.advance(secs(6));
    assert!(windows_on(&later, &a).iter().all(Option::is_none));

    // An operator's drain takes a window over: it does not end by itself.
    let (_, out) = h.core.schedule_maintenance(&a, window(now, secs(10)), h.now).unwrap();
    h.record(out);
    assert!(matches!(h.core.drain_state(&a), DrainState::Draining { .. }), "a window whose start has passed drains at once");
    let (_, _, out) = h.core.drain_agent(&a, Some(secs(1)), false, h.now).unwrap();
    h.record(out);
    assert!(h.core.unavailability(&a).is_none());
    h.advance(secs(30));
    assert_ne!(h.core.drain_state(&a), DrainState::Active, "an operator's drain ended with the window it replaced");
    h.core.check_invariants().unwrap();
}

#[test]
fn windows_survive_a_failover_before_and_during_them() {
    let (mut h, a, b, _fw) = two_agents_with_tasks();
    let mut registry = BTreeMap::new();
    apply_writes(&mut registry, &h.log);
    let now = WALL_START + h.now;
    let (_, out) = h.core.schedule_maintenance(&a, window(now + secs(30), secs(60)), h.now).unwrap();
    apply_writes(&mut registry, &out);
    let (_, out) = h.core.schedule_maintenance(&b, window(now, secs(60)), h.now).unwrap();
    apply_writes(&mut registry, &out);
    assert!(matches!(h.core.drain_state(&b), DrainState::Draining { .. }));
    let expected = (h.core.unavailability(&a), h.core.unavailability(&b));

    // A new leader with other clocks, 10 s later.
    let t0 = secs(500);
    let mut core = BrokerCore::new(BrokerSettings::default(), "c", t0, now + secs(10));
    let report = core.recover(&records(&registry), 2, t0);
    assert_eq!((report.maintenance, report.skipped.len()), (2, 0), "{report:?}");
    assert_eq!((core.unavailability(&a), core.unavailability(&b)), expected);
    assert_eq!(core.drain_state(&a), DrainState::Active);
    assert!(matches!(core.drain_state(&b), DrainState::Draining { .. }));
    // A's window begins 20 s into this leader's time; B's ends at 50 s.
    core.tick(t0 + secs(21));
    assert!(matches!(core.drain_state(&a), DrainState::Draining { .. }));
    core.tick(t0 + secs(51));
    assert_eq!(core.drain_state(&b), DrainState::Active);
    assert!(core.unavailability(&b).is_none());
}
