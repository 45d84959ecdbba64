use super::*;
use weir_yarn_api::records::ContainerLaunchContextProto;
use crate::rm_core::{ObservedNode, Submission};

const TS: i64 = 1_700_000_000_000;

/// Defaults, but any number of containers per offer.
fn cfg() -> SchedulerConfig {
    SchedulerConfig { max_containers_per_offer: 100, ..SchedulerConfig::default() }
}

fn node(agent: &str, host: &str) -> ObservedNode {
    ObservedNode {
        agent_id: agent.into(),
        node_id: NodeId { host: host.into(), port: 5051 },
        http_address: format!("{host}:5051"),
        capability: Capacity { memory_mb: 8192, vcores: 8 },
        used: Capacity::default(),
        containers: 0,
        state: NodeState::Running,
        health_report: String::new(),
        decommission_deadline_ms: None,
    }
}

fn rm() -> RmCore {
    let mut c = RmCore::new(TS, &["default".to_string(), "batch".to_string()], 10).unwrap();
    c.observe_nodes(vec![node("a1", "host1"), node("a2", "host2")], 0);
    c
}

fn submit(rm: &mut RmCore, queue: &str, max_attempts: i32) -> ApplicationId {
    let (id, _) = rm.new_application().unwrap();
    let s = Submission {
        id,
        name: "pi".into(),
        queue: queue.into(),
        user: "alice".into(),
        application_type: "SPARK".into(),
        tags: vec![],
        priority: 0,
        am_resource: Some(Capacity { memory_mb: 1024, vcores: 1 }),
        max_attempts,
        unmanaged_am: false,
        am_launch: Some(ContainerLaunchContextProto::default()),
    };
    rm.submit(s, 0).unwrap();
    id
}

fn tid(id: impl ToString) -> TaskId {
    TaskId::new(id.to_string())
}

fn offer(id: &str, agent: &str, host: &str, role: &str, cpus: f64, mem: f64) -> Offer {
    Offer {
        id: id.into(),
        agent_id: agent.into(),
        hostname: host.into(),
        role: role.into(),
        cpus: Milli::from_f64(cpus).unwrap(),
        mem_mb: Milli::from_f64(mem).unwrap(),
        ports: vec![(31000, 31005)],
    }
}

fn any(priority: i32, n: i32, mem: i64) -> Ask {
    Ask {
        priority,
        resource_name: ANY.into(),
        capability: Capacity { memory_mb: mem, vcores: 1 },
        num_containers: n,
        relax_locality: true,
        allocation_request_id: 0,
    }
}

fn launched(effects: &[Effect]) -> Vec<TaskPlan> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Launch { tasks, .. } => Some(tasks.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn kills(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Kill { task_id, .. } => Some(task_id.to_string()),
            _ => None,
        })
        .collect()
}

fn fresh(outcome: AllocateOutcome) -> AllocateResult {
    match outcome {
        AllocateOutcome::Fresh(r) => r,
        AllocateOutcome::Replay(_) => panic!("expected a fresh answer"),
    }
}

/// An application whose AM runs and registered on agent a1.
fn registered(s: &mut Scheduler, rm: &mut RmCore, now: i64) -> (ApplicationId, AttemptId) {
    let app = submit(rm, "default", 2);
    s.tick(rm, now);
    let effects = s.offers(vec![offer("o-am", "a1", "host1", "default", 4.0, 4096.0)], now);
    let am = ContainerId { attempt: AttemptId { app, attempt: 1 }, id: 1 };
    assert!(launched(&effects).iter().any(|t| matches!(t, TaskPlan::Container { container, .. } if *container == am)));
    s.task_update(rm, &tid(am), TaskEvent::Running, now);
    s.register(rm, am.attempt, now).unwrap();
    s.check_invariants().unwrap();
    (app, am.attempt)
}

#[test]
fn an_accepted_application_gets_its_am_container_and_the_agent_a_node_manager() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    assert!(s.offers(vec![offer("o0", "a1", "host1", "default", 4.0, 4096.0)], 0).iter().all(|e| matches!(e, Effect::Decline { refuse_ms: 60_000, .. })));
    let app = submit(&mut rm, "default", 2);
    assert_eq!(s.tick(&mut rm, 1), vec![Effect::Revive]);
    assert!(s.has_demand());
    let effects = s.offers(vec![offer("o1", "a1", "host1", "default", 4.0, 4096.0)], 2);
    let tasks = launched(&effects);
    assert_eq!(tasks.len(), 2, "{effects:?}");
    assert!(matches!(&tasks[0], TaskPlan::NodeManager { port: 31000, host, .. } if host == "host1"));
    let am = ContainerId { attempt: AttemptId { app, attempt: 1 }, id: 1 };
    assert_eq!(tasks[1], TaskPlan::Container { task_id: tid(am), container: am, capacity: Capacity { memory_mb: 1024, vcores: 1 }, nm_port: 31000, user: "alice".into() });
    let start = effects.iter().position(|e| matches!(e, Effect::StartAm { .. })).unwrap();
    let launch = effects.iter().position(|e| matches!(e, Effect::Launch { .. })).unwrap();
    assert!(launch < start, "the launch comes before the AM start");
    assert!(!s.has_demand());
    s.check_invariants().unwrap();
    // The next container on a1 reuses the node manager.
    assert_eq!(s.node_manager(&"a1".into()), Some(("host1".into(), 31000)));
}

#[test]
fn one_offer_yields_at_most_the_configured_containers_and_the_rest_goes_back() {
    let mut rm = rm();
    let mut s = Scheduler::new(SchedulerConfig { max_containers_per_offer: 1, ..cfg() });
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 3, 256)], ..Default::default() }, 1).unwrap());
    for i in 0..3 {
        let tasks = launched(&s.offers(vec![offer(&format!("o{i}"), "a1", "host1", "default", 3.0, 3000.0)], 2 + i));
        assert_eq!(tasks.len(), 1, "one container per offer: {tasks:?}");
    }
    assert!(!s.has_demand());
}

#[test]
fn offers_for_an_idle_queue_are_declined_for_long_and_too_small_ones_briefly() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    submit(&mut rm, "default", 2);
    s.tick(&mut rm, 0);
    let effects = s.offers(
        vec![offer("o1", "a1", "host1", "batch", 4.0, 4096.0), offer("o2", "a2", "host2", "default", 4.0, 1000.0)],
        1,
    );
    assert_eq!(
        effects,
        vec![Effect::Decline { offer_id: "o1".into(), refuse_ms: 60_000 }, Effect::Decline { offer_id: "o2".into(), refuse_ms: 1000 }]
    );
    // Room for the container but not for the node manager beside it.
    let tight = s.offers(vec![offer("o3", "a2", "host2", "default", 1.0, 1100.0)], 2);
    assert!(matches!(tight[..], [Effect::Decline { .. }]), "{tight:?}");
}

#[test]
fn asks_become_containers_with_nm_tokens_once_and_responses_follow_response_ids() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 3, 512)], ..Default::default() }, 10).unwrap());
    assert_eq!((r.response_id, r.allocated.len()), (1, 0));
    assert!(r.effects.contains(&Effect::Revive));
    let first = AllocateResult { effects: Vec::new(), ..r.clone() };
    // Room for two 512 MiB containers beside what a1 already runs.
    let effects = s.offers(vec![offer("o2", "a1", "host1", "default", 2.0, 1100.0)], 20);
    let tasks = launched(&effects);
    assert_eq!(tasks.len(), 2);
    assert!(tasks.iter().all(|t| matches!(t, TaskPlan::Container { nm_port: 31000, .. })), "no second node manager");
    // The AM repeats call 0: it gets the same answer again.
    assert_eq!(s.allocate(&rm, attempt, AllocateCall { response_id: 0, ..Default::default() }, 21).unwrap(), AllocateOutcome::Replay(Box::new(first)));
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 1, asks: vec![any(1, 1, 512)], ..Default::default() }, 30).unwrap());
    assert_eq!(r.allocated.len(), 2);
    assert_eq!(r.nm_token_nodes, vec![NodeId { host: "host1".into(), port: 31000 }]);
    assert!(r.allocated.iter().all(|c| c.priority == 1 && c.capacity.memory_mb == 512));
    let err = s.allocate(&rm, attempt, AllocateCall { response_id: 7, ..Default::default() }, 31).unwrap_err();
    assert!(err.to_string().contains("expect responseId to be 2, but get 7"), "{err}");
    assert_eq!(err.java_class(), "org.apache.hadoop.yarn.exceptions.InvalidApplicationMasterRequestException");
    // The third container lands elsewhere, with a token for that node.
    let effects = s.offers(vec![offer("o3", "a2", "host2", "default", 2.0, 2048.0)], 40);
    assert_eq!(launched(&effects).len(), 2, "node manager + container");
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 2, ..Default::default() }, 50).unwrap());
    assert_eq!(r.allocated.len(), 1);
    assert_eq!(r.nm_token_nodes, vec![NodeId { host: "host2".into(), port: 31000 }]);
    s.check_invariants().unwrap();
    // Nothing is asked any more.
    assert!(!s.has_demand());
}

#[test]
fn finished_and_released_containers_are_reported_once_with_yarn_exit_statuses() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 3, 256)], ..Default::default() }, 1).unwrap());
    s.offers(vec![offer("o", "a1", "host1", "default", 3.0, 3000.0)], 2);
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 1, ..Default::default() }, 3).unwrap());
    let ids: Vec<ContainerId> = r.allocated.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        s.task_update(&mut rm, &tid(id), TaskEvent::Running, 4);
    }
    s.task_update(&mut rm, &tid(ids[0]), TaskEvent::Exited { code: Some(0), signal: None, message: String::new() }, 5);
    s.task_update(&mut rm, &tid(ids[1]), TaskEvent::MemoryLimit { message: "memory limit 256 MiB reached".into() }, 5);
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 2, releases: vec![ids[2]], ..Default::default() }, 6).unwrap());
    assert_eq!(kills(&r.effects), vec![ids[2].to_string()]);
    let statuses: Vec<(ContainerId, i32)> = r.completed.iter().map(|c| (c.id, c.exit_status)).collect();
    assert_eq!(statuses, vec![(ids[0], 0), (ids[1], exit_status::KILLED_EXCEEDED_PMEM)]);
    assert!(r.completed[1].diagnostics.contains("beyond physical memory limits"));
    s.task_update(&mut rm, &tid(ids[2]), TaskEvent::Killed { message: "Task killed".into() }, 7);
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 3, ..Default::default() }, 8).unwrap());
    assert_eq!(r.completed.len(), 1);
    assert_eq!((r.completed[0].id, r.completed[0].exit_status), (ids[2], exit_status::ABORTED));
    assert_eq!(r.completed[0].diagnostics, "Container released by application");
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 4, ..Default::default() }, 9).unwrap());
    assert!(r.completed.is_empty(), "each completion is delivered once");
    s.check_invariants().unwrap();
}

#[test]
fn revoked_containers_are_named_for_preemption_until_they_end_preempted() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 2, 256)], ..Default::default() }, 1).unwrap());
    s.offers(vec![offer("o", "a1", "host1", "default", 3.0, 3000.0)], 2);
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 1, ..Default::default() }, 3).unwrap());
    let ids: Vec<ContainerId> = r.allocated.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        s.task_update(&mut rm, &tid(id), TaskEvent::Running, 4);
    }
    // The broker revokes one container (and names a task that is no
    // container, and one that is not ours): only ours is named.
    assert_eq!(s.preempt(&[tid(ids[1]), tid("nm-a1"), tid("container_1_0099_01_000002")]), 1);
    assert_eq!(s.preempt(&[tid(ids[1])]), 0, "named once");
    for response_id in 2..4 {
        let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id, ..Default::default() }, 5).unwrap());
        assert_eq!(r.preempt.iter().map(|c| c.id).collect::<Vec<_>>(), vec![ids[1]], "in every answer until it ends");
    }
    // The broker kills it at the deadline: it ends PREEMPTED, not as the
    // application's failure, and is no longer named.
    s.task_update(&mut rm, &tid(ids[1]), TaskEvent::Preempted { message: "revoked for role prod".into() }, 6);
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 4, ..Default::default() }, 7).unwrap());
    assert!(r.preempt.is_empty());
    assert_eq!((r.completed[0].id, r.completed[0].exit_status), (ids[1], exit_status::PREEMPTED));
    assert!(r.completed[0].diagnostics.starts_with("Container preempted by scheduler."), "{}", r.completed[0].diagnostics);
    s.check_invariants().unwrap();
}

#[test]
fn an_am_that_dies_is_retried_then_the_application_fails_with_its_exit() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    let (app, attempt) = registered(&mut s, &mut rm, 0);
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 1, 256)], ..Default::default() }, 1).unwrap());
    s.offers(vec![offer("o", "a1", "host1", "default", 3.0, 3000.0)], 2);
    let executor = ContainerId { attempt, id: 2 };
    let am = ContainerId { attempt, id: 1 };
    let effects = s.task_update(&mut rm, &tid(am), TaskEvent::Exited { code: Some(13), signal: None, message: String::new() }, 3);
    assert_eq!(kills(&effects), vec![executor.to_string()], "the failed attempt's containers go");
    assert!(effects.contains(&Effect::Revive));
    let second = s.current_attempt(app).unwrap();
    assert_eq!(second.attempt, 2);
    assert_eq!(s.allocate(&rm, attempt, AllocateCall::default(), 4).unwrap_err(), AmError::AttemptNotFound(attempt));
    // The old attempt's container ending later changes nothing.
    s.task_update(&mut rm, &tid(executor), TaskEvent::Killed { message: String::new() }, 5);
    let effects = s.offers(vec![offer("o2", "a2", "host2", "default", 4.0, 4096.0)], 6);
    let am2 = ContainerId { attempt: second, id: 1 };
    assert!(launched(&effects).iter().any(|t| matches!(t, TaskPlan::Container { container, .. } if *container == am2)));
    assert_eq!(s.allocate(&rm, second, AllocateCall::default(), 7).unwrap_err(), AmError::NotRegistered(second));
    s.task_update(&mut rm, &tid(am2), TaskEvent::Exited { code: Some(1), signal: None, message: "boom".into() }, 8);
    let report = rm.application(app).unwrap();
    assert_eq!(report.state, AppState::Failed);
    assert!(report.diagnostics.contains("failed 2 times"), "{}", report.diagnostics);
    assert!(report.diagnostics.contains("exitCode: 1"), "{}", report.diagnostics);
    s.tick(&mut rm, 9);
    assert!(s.current_attempt(app).is_none(), "a failed application with nothing live is forgotten");
    s.check_invariants().unwrap();
}

#[test]
fn killing_an_application_kills_every_container_and_frees_the_node_manager_later() {
    let mut rm = rm();
    let mut s = Scheduler::new(SchedulerConfig { nm_idle_ms: 1000, ..cfg() });
    let (app, attempt) = registered(&mut s, &mut rm, 0);
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 2, 256)], ..Default::default() }, 1).unwrap());
    s.offers(vec![offer("o", "a1", "host1", "default", 3.0, 3000.0)], 2);
    rm.kill(app, None, 3).unwrap();
    let effects = s.tick(&mut rm, 3);
    let mut killed = kills(&effects);
    killed.sort();
    let all: Vec<String> = (1..=3).map(|i| ContainerId { attempt, id: i }.to_string()).collect();
    assert_eq!(killed, all);
    assert!(kills(&s.tick(&mut rm, 4)).is_empty(), "each kill is asked once");
    for id in &all {
        s.task_update(&mut rm, &tid(id), TaskEvent::Killed { message: String::new() }, 5);
    }
    s.tick(&mut rm, 6);
    assert!(s.live_containers(app).is_empty());
    // Idle for the node manager's timeout: it is stopped too.
    let nm_task = |t: &str| t.starts_with("nodemanager-a1-");
    assert!(kills(&s.tick(&mut rm, 500)).is_empty());
    let nm: Vec<Effect> = s.tick(&mut rm, 1005);
    assert!(kills(&nm).iter().any(|t| nm_task(t)), "{nm:?}");
    s.check_invariants().unwrap();
}

/// A node manager whose containers have all ended still serves their
/// application (MapReduce reducers fetch map outputs from it): it is idle
/// only once that application has ended.
#[test]
fn a_node_manager_is_kept_while_an_application_that_ran_there_is_running() {
    let mut rm = rm();
    let mut s = Scheduler::new(SchedulerConfig { nm_idle_ms: 1000, ..cfg() });
    let (app, attempt) = registered(&mut s, &mut rm, 0);
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 1, 256)], ..Default::default() }, 1).unwrap());
    let tasks = launched(&s.offers(vec![offer("o2", "a2", "host2", "default", 3.0, 3000.0)], 2));
    assert_eq!(tasks.len(), 2, "a node manager and the container on a2: {tasks:?}");
    let map = ContainerId { attempt, id: 2 };
    s.task_update(&mut rm, &tid(map), TaskEvent::Running, 3);
    s.task_update(&mut rm, &tid(map), TaskEvent::Exited { code: Some(0), signal: None, message: String::new() }, 4);
    let on_a2 = |effects: &[Effect]| kills(effects).iter().any(|t| t.starts_with("nodemanager-a2-"));
    assert!(!on_a2(&s.tick(&mut rm, 10_000)), "a2's node manager stopped while its application runs");
    // The application ends: a2's node manager is idle from then on.
    rm.kill(app, None, 20_000).unwrap();
    s.tick(&mut rm, 20_000);
    let am = ContainerId { attempt, id: 1 };
    s.task_update(&mut rm, &tid(am), TaskEvent::Killed { message: String::new() }, 20_001);
    assert!(!on_a2(&s.tick(&mut rm, 20_500)));
    assert!(on_a2(&s.tick(&mut rm, 21_100)), "idle for nm_idle_ms after its application ended");
    s.check_invariants().unwrap();
}

#[test]
fn node_local_asks_wait_for_their_node_until_the_locality_delay() {
    let mut rm = rm();
    let mut s = Scheduler::new(SchedulerConfig { locality_delay_ms: 3000, ..cfg() });
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    let mut on_host2 = any(1, 1, 256);
    on_host2.resource_name = "host2".into();
    let rack = Ask { resource_name: "/default-rack".into(), ..any(1, 1, 256) };
    let _ = rack;
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 1, 256), on_host2], ..Default::default() }, 1000).unwrap());
    assert!(launched(&s.offers(vec![offer("o1", "a1", "host1", "default", 3.0, 3000.0)], 2000)).is_empty(), "host1 is not where it wants to be");
    let tasks = launched(&s.offers(vec![offer("o2", "a1", "host1", "default", 3.0, 3000.0)], 4001));
    assert_eq!(tasks.len(), 1, "after the delay any node will do");
    let r = fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 1, ..Default::default() }, 4002).unwrap());
    assert_eq!(r.allocated[0].node.host, "host1");
}

#[test]
fn a_node_local_ask_is_met_on_its_node_at_once_and_strict_locality_never_relaxes() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    let on_host2 = Ask { resource_name: "host2".into(), ..any(1, 1, 256) };
    let strict = Ask { relax_locality: false, ..any(1, 1, 256) };
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![strict, on_host2], ..Default::default() }, 0).unwrap());
    assert!(launched(&s.offers(vec![offer("o1", "a1", "host1", "default", 3.0, 3000.0)], 100_000)).is_empty());
    let tasks = launched(&s.offers(vec![offer("o2", "a2", "host2", "default", 3.0, 3000.0)], 100_001));
    assert_eq!(tasks.len(), 2, "node manager and the container on host2: {tasks:?}");
}

#[test]
fn a_silent_attempt_expires() {
    let mut rm = rm();
    let mut s = Scheduler::new(SchedulerConfig { am_liveness_ms: 1000, default_max_attempts: 1, ..cfg() });
    let (app, attempt) = registered(&mut s, &mut rm, 0);
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, ..Default::default() }, 500).unwrap());
    assert!(kills(&s.tick(&mut rm, 1400)).is_empty());
    let effects = s.tick(&mut rm, 1600);
    assert_eq!(kills(&effects), vec![ContainerId { attempt, id: 1 }.to_string()]);
    assert_eq!(s.current_attempt(app).unwrap().attempt, 2, "the application asked for two attempts");
    // The second attempt's AM never registers in time either.
    s.offers(vec![offer("o2", "a2", "host2", "default", 4.0, 4096.0)], 1700);
    s.tick(&mut rm, 2800);
    let report = rm.application(app).unwrap();
    assert_eq!(report.state, AppState::Failed);
    assert!(report.diagnostics.contains("timed out"), "{}", report.diagnostics);
}

#[test]
fn finishing_records_the_outcome_and_clears_remaining_containers() {
    let mut rm = rm();
    let mut s = Scheduler::new(SchedulerConfig { am_exit_grace_ms: 100, ..cfg() });
    let (app, attempt) = registered(&mut s, &mut rm, 0);
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 1, 256)], ..Default::default() }, 1).unwrap());
    s.offers(vec![offer("o", "a1", "host1", "default", 3.0, 3000.0)], 2);
    assert!(s.finish(&mut rm, attempt, FinalStatus::Succeeded, "", 10).unwrap());
    assert!(s.finish(&mut rm, attempt, FinalStatus::Succeeded, "", 11).unwrap(), "finishing twice is fine");
    let report = rm.application(app).unwrap();
    assert_eq!((report.state, report.final_status), (AppState::Finished, FinalStatus::Succeeded));
    let executor = ContainerId { attempt, id: 2 };
    assert_eq!(kills(&s.tick(&mut rm, 20)), vec![executor.to_string()], "the AM gets its grace");
    assert_eq!(kills(&s.tick(&mut rm, 200)), vec![ContainerId { attempt, id: 1 }.to_string()]);
    // An AM that exits after unregistering does not fail anything.
    s.task_update(&mut rm, &tid(ContainerId { attempt, id: 1 }), TaskEvent::Exited { code: Some(0), signal: None, message: String::new() }, 201);
    assert_eq!(rm.application(app).unwrap().state, AppState::Finished);
}

#[test]
fn asks_larger_than_any_node_or_negative_are_refused() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    let err = s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, 1, 100_000)], ..Default::default() }, 1).unwrap_err();
    assert_eq!(err.java_class(), "org.apache.hadoop.yarn.exceptions.InvalidResourceRequestException");
    let err = s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks: vec![any(1, -1, 100)], ..Default::default() }, 1).unwrap_err();
    assert!(err.to_string().contains("negative"));
    // A refused call changes nothing: response 0 is still expected.
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, ..Default::default() }, 2).unwrap());
}

mod random {
    use super::{any as ask_any, *};
    use proptest::prelude::{prop_oneof, proptest, Just, ProptestConfig, Strategy, TestCaseError};

    #[derive(Debug, Clone)]
    enum Step {
        Submit,
        Offer { agent: u8, cpus: u8, mem: u16 },
        Ask { app: u8, n: u8, node: Option<u8> },
        Release { app: u8, which: u8 },
        Update { which: u8, kind: u8 },
        Register { app: u8 },
        Finish { app: u8 },
        Kill { app: u8 },
        Tick { ms: u16 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Submit),
            (0..3u8, 0..5u8, 0..5000u16).prop_map(|(agent, cpus, mem)| Step::Offer { agent, cpus, mem }),
            (0..4u8, 0..4u8, proptest::option::of(0..3u8)).prop_map(|(app, n, node)| Step::Ask { app, n, node }),
            (0..4u8, 0..8u8).prop_map(|(app, which)| Step::Release { app, which }),
            (0..16u8, 0..5u8).prop_map(|(which, kind)| Step::Update { which, kind }),
            (0..4u8).prop_map(|app| Step::Register { app }),
            (0..4u8).prop_map(|app| Step::Finish { app }),
            (0..4u8).prop_map(|app| Step::Kill { app }),
            (0..20_000u16).prop_map(|ms| Step::Tick { ms }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn any_sequence_keeps_the_invariants(steps in proptest::collection::vec(step(), 1..60)) {
            let mut rm = rm();
            let mut s = Scheduler::new(SchedulerConfig { am_liveness_ms: 30_000, nm_idle_ms: 5_000, ..cfg() });
            let mut now = 0i64;
            let mut apps: Vec<ApplicationId> = Vec::new();
            let mut tasks: Vec<String> = Vec::new();
            let mut response: BTreeMap<AttemptId, i32> = BTreeMap::new();
            let attempt_of = |s: &Scheduler, apps: &[ApplicationId], i: u8| apps.get(i as usize).and_then(|a| s.current_attempt(*a));
            for st in steps {
                now += 1;
                match st {
                    Step::Submit => apps.push(submit(&mut rm, "default", 2)),
                    Step::Offer { agent, cpus, mem } => {
                        let o = offer(&format!("o{now}"), &format!("a{agent}"), &format!("host{agent}"), "default", cpus as f64, mem as f64);
                        for e in s.offers(vec![o], now) {
                            if let Effect::Launch { tasks: t, .. } = e {
                                tasks.extend(t.into_iter().map(|p| match p { TaskPlan::NodeManager { task_id, .. } | TaskPlan::Container { task_id, .. } => task_id.to_string() }));
                            }
                        }
                    }
                    Step::Ask { app, n, node } => {
                        if let Some(a) = attempt_of(&s, &apps, app) {
                            let r = *response.get(&a).unwrap_or(&0);
                            let mut asks = vec![ask_any(1, n as i32, 300)];
                            if let Some(h) = node { asks.push(Ask { resource_name: format!("host{h}"), ..ask_any(1, n as i32, 300) }); }
                            if let Ok(AllocateOutcome::Fresh(out)) = s.allocate(&rm, a, AllocateCall { response_id: r, asks, ..Default::default() }, now) {
                                response.insert(a, out.response_id);
                            }
                        }
                    }
                    Step::Release { app, which } => {
                        if let Some(a) = attempt_of(&s, &apps, app) {
                            let r = *response.get(&a).unwrap_or(&0);
                            let release = vec![ContainerId { attempt: a, id: which as i64 }];
                            if let Ok(AllocateOutcome::Fresh(out)) = s.allocate(&rm, a, AllocateCall { response_id: r, releases: release, ..Default::default() }, now) {
                                response.insert(a, out.response_id);
                            }
                        }
                    }
                    Step::Update { which, kind } => {
                        if let Some(t) = tasks.get(which as usize).cloned() {
                            let ev = match kind {
                                0 => TaskEvent::Running,
                                1 => TaskEvent::Exited { code: Some(0), signal: None, message: String::new() },
                                2 => TaskEvent::Exited { code: Some(1), signal: None, message: String::new() },
                                3 => TaskEvent::Lost { message: String::new() },
                                _ => TaskEvent::Killed { message: String::new() },
                            };
                            s.task_update(&mut rm, &tid(&t), ev, now);
                        }
                    }
                    Step::Register { app } => {
                        if let Some(a) = attempt_of(&s, &apps, app) { let _ = s.register(&mut rm, a, now); }
                    }
                    Step::Finish { app } => {
                        if let Some(a) = attempt_of(&s, &apps, app) { let _ = s.finish(&mut rm, a, FinalStatus::Succeeded, "", now); }
                    }
                    Step::Kill { app } => {
                        if let Some(a) = apps.get(app as usize) { let _ = rm.kill(*a, None, now); }
                    }
                    Step::Tick { ms } => {
                        now += ms as i64;
                        s.tick(&mut rm, now);
                    }
                }
                s.check_invariants().map_err(TestCaseError::fail)?;
                rm.check_invariants().map_err(TestCaseError::fail)?;
            }
        }
    }
}

#[test]
fn an_am_hears_of_a_node_turning_decommissioning_then_decommissioned_once_each() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    let call = |id| AllocateCall { response_id: id, ..Default::default() };
    // Nodes that were there at registration are no news.
    assert!(fresh(s.allocate(&rm, attempt, call(0), 1).unwrap()).updated_nodes.is_empty());

    let draining = ObservedNode { state: NodeState::Decommissioning, decommission_deadline_ms: Some(TS + 60_000), ..node("a2", "host2") };
    rm.observe_nodes(vec![node("a1", "host1"), draining], TS);
    let r = fresh(s.allocate(&rm, attempt, call(1), 2).unwrap());
    let states: Vec<_> = r.updated_nodes.iter().map(|n| (n.observed.agent_id.as_str(), n.observed.state)).collect();
    assert_eq!(states, vec![("a2", NodeState::Decommissioning)]);
    let wire = crate::convert::node_to_proto(&r.updated_nodes[0]);
    assert_eq!(wire.decommissioning_timeout, Some(60));
    assert_eq!(wire.node_update_type, Some(weir_yarn_api::records::NodeUpdateTypeProto::NodeDecommissioning as i32));
    // A replay repeats it; the next answer does not.
    assert_eq!(s.allocate(&rm, attempt, call(1), 3).unwrap(), AllocateOutcome::Replay(Box::new(AllocateResult { effects: Vec::new(), ..r })));
    rm.observe_nodes(vec![node("a1", "host1"), ObservedNode { state: NodeState::Decommissioning, ..node("a2", "host2") }], TS + 1000);
    assert!(fresh(s.allocate(&rm, attempt, call(2), 4).unwrap()).updated_nodes.is_empty());

    rm.observe_nodes(vec![node("a1", "host1"), ObservedNode { state: NodeState::Decommissioned, ..node("a2", "host2") }], TS + 2000);
    let r = fresh(s.allocate(&rm, attempt, call(3), 5).unwrap());
    assert_eq!(r.updated_nodes.iter().map(|n| n.observed.state).collect::<Vec<_>>(), vec![NodeState::Decommissioned]);
    assert_eq!(r.cluster_nodes, 1, "only a1 runs");
    assert_eq!(
        crate::convert::node_to_proto(&r.updated_nodes[0]).node_update_type,
        Some(weir_yarn_api::records::NodeUpdateTypeProto::NodeUnusable as i32)
    );
}

#[test]
fn node_local_asks_are_stated_to_the_broker_as_data_locality_and_cleared_when_met() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    let (_, attempt) = registered(&mut s, &mut rm, 0);
    let data = |effects: Vec<Effect>| -> Vec<BTreeMap<String, u64>> {
        effects.into_iter().filter_map(|e| if let Effect::Data { host_bytes } = e { Some(host_bytes) } else { None }).collect()
    };
    // Two containers of 256 MB wanted on host2, one of 512 on host3, and
    // rack and `*` asks, which name no host.
    let asks = vec![
        Ask { resource_name: "host2".into(), ..any(1, 2, 256) },
        Ask { resource_name: "host3".into(), ..any(2, 1, 512) },
        Ask { resource_name: "/default-rack".into(), ..any(1, 2, 256) },
        any(1, 2, 256),
        any(2, 1, 512),
    ];
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 0, asks, ..Default::default() }, 10).unwrap());
    assert_eq!(
        data(s.tick(&mut rm, 20)),
        vec![BTreeMap::from([("host2".to_owned(), 512u64 << 20), ("host3".to_owned(), 512u64 << 20)])]
    );
    assert!(data(s.tick(&mut rm, 30)).is_empty(), "stated once, until it changes");
    // The AM withdraws its node-level asks: the broker hears an empty set.
    let withdrawn = vec![Ask { resource_name: "host2".into(), ..any(1, 0, 256) }, Ask { resource_name: "host3".into(), ..any(2, 0, 512) }];
    fresh(s.allocate(&rm, attempt, AllocateCall { response_id: 1, asks: withdrawn, ..Default::default() }, 40).unwrap());
    assert_eq!(data(s.tick(&mut rm, 50)), vec![BTreeMap::new()]);
}

#[test]
fn a_queues_ams_stay_within_its_am_limit_but_one_always_runs() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    // 1.5 AMs' worth for default; batch has no limit.
    s.set_leaf_rules(BTreeMap::from([("default".to_owned(), LeafRules { am_mb: Some(1536), ..LeafRules::default() })]));
    let (first, second, third) = (submit(&mut rm, "default", 1), submit(&mut rm, "default", 1), submit(&mut rm, "batch", 1));
    s.tick(&mut rm, 0);
    let ams = |effects: &[Effect]| {
        effects.iter().filter_map(|e| if let Effect::StartAm { application, .. } = e { Some(*application) } else { None }).collect::<Vec<_>>()
    };
    let effects = s.offers(vec![offer("o1", "a1", "host1", "default", 8.0, 8192.0)], 1);
    assert_eq!(ams(&effects), vec![first], "the second AM would pass the limit: {effects:?}");
    // The held application says why, in YARN's words; the first says nothing new.
    let waits = s.take_waits();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(waits[0].0, second);
    assert!(waits[0].1.as_deref().unwrap().contains("Queue's AM resource limit exceeded"), "{waits:?}");
    // Another queue's AM is not held by default's limit.
    let effects = s.offers(vec![offer("o2", "a2", "host2", "batch", 8.0, 8192.0)], 2);
    assert_eq!(ams(&effects), vec![third]);
    // A limit smaller than one AM still lets one run: the first ends, the second starts.
    s.set_leaf_rules(BTreeMap::from([("default".to_owned(), LeafRules { am_mb: Some(100), ..LeafRules::default() })]));
    let _ = rm.kill(first, None, 3);
    s.tick(&mut rm, 3);
    let effects = s.offers(vec![offer("o3", "a1", "host1", "default", 8.0, 8192.0)], 4);
    assert_eq!(ams(&effects), vec![second], "{effects:?}");
    // Started at last, it is no longer held.
    assert_eq!(s.take_waits(), vec![(second, None)]);
}

fn submit_as(rm: &mut RmCore, queue: &str, user: &str) -> ApplicationId {
    let (id, _) = rm.new_application().unwrap();
    let s = Submission {
        id,
        name: "pi".into(),
        queue: queue.into(),
        user: user.into(),
        application_type: "SPARK".into(),
        tags: vec![],
        priority: 0,
        am_resource: Some(Capacity { memory_mb: 1024, vcores: 1 }),
        max_attempts: 1,
        unmanaged_am: false,
        am_launch: Some(ContainerLaunchContextProto::default()),
    };
    rm.submit(s, 0).unwrap();
    id
}

/// Applications (queue, user, containers of 1 GiB to ask for), their AMs
/// started on a1 and registered, then asking.
fn running(s: &mut Scheduler, rm: &mut RmCore, apps: &[(&str, &str, i32)], now: i64) -> Vec<ApplicationId> {
    let ids: Vec<ApplicationId> = apps.iter().map(|(queue, user, _)| submit_as(rm, queue, user)).collect();
    s.tick(rm, now);
    // AMs only: nobody has registered, so nobody asks for more yet.
    for round in 0..apps.len() {
        for (queue, _, _) in apps {
            s.offers(vec![offer(&format!("o-am-{queue}-{round}"), "a1", "host1", queue, 8.0, 8192.0)], now);
        }
    }
    for (app, (_, _, n)) in ids.iter().zip(apps) {
        let am = ContainerId { attempt: AttemptId { app: *app, attempt: 1 }, id: 1 };
        s.task_update(rm, &tid(am), TaskEvent::Running, now);
        s.register(rm, am.attempt, now).unwrap();
        fresh(s.allocate(rm, am.attempt, AllocateCall { response_id: 0, asks: vec![any(1, *n, 1024)], ..Default::default() }, now).unwrap());
    }
    let _ = s.take_waits();
    ids
}

fn memory_rules(capacity_mb: f64, ceiling_mb: f64, minimum_percent: f64) -> LeafRules {
    let amounts = |mem: f64| Amounts { cpus: Milli::from_units(16), mem: Milli::from_f64(mem).unwrap() };
    LeafRules {
        am_mb: None,
        users: Some(crate::capacity_scheduler::UserLimit {
            capacity: amounts(capacity_mb),
            ceiling: amounts(ceiling_mb),
            minimum_percent,
            cluster: amounts(16384.0),
            memory_only: true,
        }),
        fair_ordering: false,
    }
}

fn memory_held_by(s: &Scheduler, app: ApplicationId) -> i64 {
    s.containers.values().filter(|c| c.allocated.id.attempt.app == app).map(|c| c.allocated.capacity.memory_mb).sum()
}

#[test]
fn one_user_stays_within_the_queues_user_limit_and_a_second_user_still_gets_containers() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    // default's capacity is 4 GiB of 16, user-limit-factor 1: one user's
    // limit is the capacity; batch has no rules.
    s.set_leaf_rules(BTreeMap::from([("default".to_owned(), memory_rules(4096.0, 4096.0, 100.0))]));
    let ids = running(&mut s, &mut rm, &[("default", "alice", 10), ("default", "bob", 2), ("batch", "carol", 10)], 1);
    let (alice, bob, carol) = (ids[0], ids[1], ids[2]);
    // YARN's containersPending, pendingMB, pendingVirtualCores: every ask.
    assert_eq!(s.pending(), (22, 22 * 1024, 22));
    let effects = s.offers(vec![offer("o1", "a2", "host2", "default", 16.0, 16384.0)], 2);
    // Alice: AM + 3 = 4 GiB, not over, so one more (YARN lets the last
    // container go past the limit): 5 GiB, then nothing while she is over.
    assert_eq!(memory_held_by(&s, alice), 5120, "{effects:?}");
    // Bob, a second user of the queue, is not held by her use.
    assert_eq!(memory_held_by(&s, bob), 3072, "{effects:?}");
    let waits = s.take_waits();
    assert!(waits.iter().any(|(id, why)| *id == alice && why.as_deref().is_some_and(|w| w.contains("User capacity has reached its maximum limit"))), "{waits:?}");
    let effects = s.offers(vec![offer("o2", "a2", "host2", "default", 16.0, 16384.0)], 3);
    assert!(launched(&effects).is_empty(), "{effects:?}");
    // Alice's six still wait (held), carol's ten too.
    assert_eq!(s.pending().0, 16);
    // In a queue without rules: all ten.
    s.offers(vec![offer("o3", "a2", "host2", "batch", 16.0, 16384.0)], 4);
    assert_eq!(memory_held_by(&s, carol), 11264);
    s.check_invariants().unwrap();
}

#[test]
fn a_user_limit_factor_above_one_lets_one_user_go_past_the_capacity() {
    let mut rm = rm();
    let mut s = Scheduler::new(cfg());
    s.set_leaf_rules(BTreeMap::from([("default".to_owned(), memory_rules(4096.0, 8192.0, 100.0))]));
    let alice = running(&mut s, &mut rm, &[("default", "alice", 10)], 1)[0];
    s.offers(vec![offer("o1", "a2", "host2", "default", 16.0, 16384.0)], 2);
    assert_eq!(memory_held_by(&s, alice), 9216);
}

#[test]
fn user_limits_share_the_queue_among_its_active_users() {
    let limits = memory_rules(4096.0, 8192.0, 25.0).users.unwrap();
    let mem = |mb: f64| Amounts { cpus: Milli::ZERO, mem: Milli::from_f64(mb).unwrap() };
    // Within its capacity the queue's capacity is shared: evenly among
    // four, but never below 25 % each.
    assert_eq!(limits.limit(mem(1024.0), mem(1024.0), 1).mem, Milli::from_units(4096));
    assert_eq!(limits.limit(mem(1024.0), mem(1024.0), 2).mem, Milli::from_units(2048));
    assert_eq!(limits.limit(mem(1024.0), mem(1024.0), 8).mem, Milli::from_units(1024));
    // Over its capacity, what it holds plus the ask, up to the ceiling.
    assert_eq!(limits.limit(mem(6144.0), mem(1024.0), 1).mem, Milli::from_units(7168));
    assert_eq!(limits.limit(mem(12288.0), mem(1024.0), 1).mem, Milli::from_units(8192));
    assert!(limits.over(mem(8193.0), mem(8192.0)) && !limits.over(mem(8192.0), mem(8192.0)));
    // By dominant share: 4 of 16 cpus is over 2 GiB of 16.
    let drf = crate::capacity_scheduler::UserLimit { memory_only: false, ..limits };
    let both = |cpus: u64, mb: u64| Amounts { cpus: Milli::from_units(cpus), mem: Milli::from_units(mb) };
    assert!(drf.over(both(4, 1024), both(1, 2048)));
    assert!(!limits.over(both(4, 1024), both(1, 2048)));
}

#[test]
fn a_fair_queue_serves_the_application_holding_least_first() {
    for fair in [false, true] {
        let mut rm = rm();
        let mut s = Scheduler::new(SchedulerConfig { max_containers_per_offer: 1, ..SchedulerConfig::default() });
        s.set_leaf_rules(BTreeMap::from([("default".to_owned(), LeafRules { fair_ordering: fair, ..LeafRules::default() })]));
        let ids = running(&mut s, &mut rm, &[("default", "alice", 10), ("default", "bob", 10)], 1);
        for i in 0..4 {
            s.offers(vec![offer(&format!("o{i}"), "a2", "host2", "default", 1.0, 1024.0 + if i == 0 { 128.0 } else { 0.0 })], 3 + i);
        }
        let (a, b) = (memory_held_by(&s, ids[0]), memory_held_by(&s, ids[1]));
        if fair {
            assert_eq!((a, b), (3072, 3072), "fair: two each");
        } else {
            assert_eq!((a, b), (5120, 1024), "fifo: all to the first");
        }
    }
}
