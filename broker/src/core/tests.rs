//! Deterministic tests of the broker core: a tiny in-process cluster of
//! fake agent and framework connections, with time passed in by hand.

use std::time::Duration;

use proptest::prelude::*;
use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_to_proto, task_state_from_proto, task_state_to_proto};
use weir_proto::v1;

use super::*;

pub(super) const AGENT_A: ConnId = 1;
pub(super) const AGENT_B: ConnId = 2;
pub(super) const FW_1: ConnId = 10;
pub(super) const FW_2: ConnId = 11;

/// What the wall clock read when the harness's core started.
const WALL_START: Duration = Duration::from_secs(1_700_000_000);

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) struct Harness {
    pub(super) core: BrokerCore,
    pub(super) now: Duration,
    /// Everything the core has sent, in order.
    pub(super) log: Vec<Output>,
    /// Agent streams that heartbeat whenever time advances.
    pub(super) live_agents: Vec<ConnId>,
}

impl Harness {
    pub(super) fn new() -> Harness {
        let settings = BrokerSettings { agent_unreachable_timeout: Duration::from_secs(5), ..Default::default() };
        Harness { core: BrokerCore::new(settings, "b", Duration::ZERO, WALL_START), now: Duration::ZERO, log: Vec::new(), live_agents: Vec::new() }
    }

    pub(super) fn record(&mut self, out: Vec<Output>) -> Vec<Output> {
        self.log.extend(out.iter().cloned());
        out
    }

    pub(super) fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        let heartbeat = v1::AgentMessage { kind: Some(v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat::default())) };
        for conn in self.live_agents.clone() {
            let out = self.core.agent_message(conn, &heartbeat, self.now);
            self.record(out);
        }
        let out = self.core.tick(self.now);
        self.record(out)
    }

    pub(super) fn register_agent(&mut self, conn: ConnId, id: &str, spec: &str, tasks: Vec<v1::RunningTask>) -> String {
        let msg = v1::agent_message::Register {
            agent: Some(v1::AgentInfo {
                id: id.to_owned(),
                hostname: format!("host{conn}"),
                resources: resources_to_proto(&ResourceSet::parse(spec).unwrap()),
                attributes: vec![v1::Attribute { name: "rack".into(), value: "r1".into() }],
                http_address: format!("127.0.0.1:{}", 5000 + conn),
            }),
            tasks,
            ..Default::default()
        };
        let out = self.core.agent_register(conn, &msg, self.now);
        let out = self.record(out);
        match &out.last() {
            Some(Output::Agent(c, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::Registered(r)) })) => {
                assert_eq!(*c, conn);
                self.live_agents.push(conn);
                r.agent_id.clone()
            }
            other => panic!("agent not registered: {other:?}"),
        }
    }

    pub(super) fn call(&mut self, conn: ConnId, kind: v1::call::Kind) -> Vec<Output> {
        let call = v1::Call { framework_id: String::new(), kind: Some(kind) };
        let out = self.core.framework_call(conn, &call, self.now);
        self.record(out)
    }

    pub(super) fn subscribe(&mut self, conn: ConnId, name: &str, roles: &[&str], failover: f64) -> String {
        self.subscribe_as(conn, "", name, roles, failover)
    }

    pub(super) fn subscribe_as(&mut self, conn: ConnId, id: &str, name: &str, roles: &[&str], failover: f64) -> String {
        let out = self.call(
            conn,
            v1::call::Kind::Subscribe(v1::call::Subscribe {
        data: None,
                framework: Some(v1::FrameworkInfo {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    failover_timeout_seconds: failover,
                    ..Default::default()
                }),
            }),
        );
        for o in out {
            if let Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) }) = o {
                assert_eq!(c, conn);
                return s.framework_id;
            }
        }
        panic!("not subscribed");
    }

    /// Offers the framework on `conn` received in `out`.
    pub(super) fn offers_in(out: &[Output], conn: ConnId) -> Vec<v1::Offer> {
        out.iter()
            .filter_map(|o| match o {
                Output::Offers(c, batch) if *c == conn => Some(batch.to_proto()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    pub(super) fn updates_in(out: &[Output], conn: ConnId) -> Vec<v1::TaskStatus> {
        out.iter()
            .filter_map(|o| match o {
                Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::Update(u)) }) if *c == conn => u.status.clone(),
                _ => None,
            })
            .collect()
    }

    pub(super) fn errors_in(out: &[Output], conn: ConnId) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Framework(c, v1::Event { kind: Some(v1::event::Kind::Error(e)) }) if *c == conn => Some(e.message.clone()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn run_tasks_in(out: &[Output], conn: ConnId) -> Vec<v1::TaskInfo> {
        out.iter()
            .filter_map(|o| match o {
                Output::Agent(c, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::RunTask(r)) }) if *c == conn => r.task.clone(),
                _ => None,
            })
            .collect()
    }

    pub(super) fn agent_update(&mut self, conn: ConnId, framework: &str, task: &str, state: TaskState, uuid: u8) -> Vec<Output> {
        let msg = v1::AgentMessage {
            kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate {
                status: Some(v1::TaskStatus {
                    task_id: task.into(),
                    state: task_state_to_proto(state) as i32,
                    framework_id: framework.into(),
                    uuid: vec![uuid; 16],
                    exit_code: (state == TaskState::Failed).then_some(3),
                    ..Default::default()
                }),
            })),
        };
        let out = self.core.agent_message(conn, &msg, self.now);
        self.record(out)
    }
}

pub(super) fn task(id: &str, spec: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: resources_to_proto(&ResourceSet::parse(spec).unwrap()),
        command: Some(v1::CommandInfo { shell: true, value: "true".into(), ..Default::default() }),
        ..Default::default()
    }
}

pub(super) fn accept(offers: &[&v1::Offer], tasks: Vec<v1::TaskInfo>) -> v1::call::Kind {
    v1::call::Kind::Accept(v1::call::Accept {
        offer_ids: offers.iter().map(|o| o.id.clone()).collect(),
        operations: vec![v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })), ..Default::default() }],
        filters: None,
    })
}

pub(super) fn state_of(s: &v1::TaskStatus) -> TaskState {
    task_state_from_proto("state", s.state).unwrap()
}

#[test]
fn offer_launch_update_acknowledge() {
    let mut h = Harness::new();
    let agent = h.register_agent(AGENT_A, "", "cpus:4;mem:4096", vec![]);
    let fw = h.subscribe(FW_1, "test", &[], 0.0);
    let out = h.advance(ms(100));
    let offers = Harness::offers_in(&out, FW_1);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].agent_id, agent);
    assert_eq!(offers[0].hostname, "hostA".replace('A', "1"));

    let out = h.call(FW_1, accept(&[&offers[0]], vec![task("t1", "cpus:1;mem:128")]));
    let launched = Harness::run_tasks_in(&out, AGENT_A);
    assert_eq!(launched.len(), 1);
    assert_eq!(launched[0].agent_id, agent);

    // The rest of the agent is offered again only after the filter (5 s).
    let out = h.advance(ms(200));
    assert!(Harness::offers_in(&out, FW_1).is_empty());
    let out = h.advance(Duration::from_secs(5));
    let again = Harness::offers_in(&out, FW_1);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources, resources_to_proto(&ResourceSet::parse("cpus:3;mem:3968").unwrap()));

    let out = h.agent_update(AGENT_A, &fw, "t1", TaskState::Running, 1);
    assert_eq!(state_of(&Harness::updates_in(&out, FW_1)[0]), TaskState::Running);
    let out = h.call(
        FW_1,
        v1::call::Kind::Acknowledge(v1::call::Acknowledge { agent_id: agent.clone(), task_id: "t1".into(), uuid: vec![1; 16] }),
    );
    assert!(matches!(
        &out[0],
        Output::Agent(AGENT_A, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::Acknowledge(a)) }) if a.uuid == vec![1; 16]
    ));

    let out = h.agent_update(AGENT_A, &fw, "t1", TaskState::Failed, 2);
    let update = &Harness::updates_in(&out, FW_1)[0];
    assert_eq!(state_of(update), TaskState::Failed);
    assert_eq!(update.exit_code, Some(3));
    let state = h.core.state(h.now);
    assert!(state.tasks.is_empty());
    assert_eq!(state.completed_tasks[0].state, "TASK_FAILED");
    // A retried terminal update still reaches the framework (at least once).
    let out = h.agent_update(AGENT_A, &fw, "t1", TaskState::Failed, 2);
    assert_eq!(Harness::updates_in(&out, FW_1).len(), 1);
}

#[test]
fn bad_accepts_are_rejected_without_changing_the_books() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.register_agent(AGENT_B, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 0.0);
    h.subscribe(FW_2, "two", &[], 0.0);
    let out = h.advance(ms(100));
    let mine = Harness::offers_in(&out, FW_1);
    let theirs = Harness::offers_in(&out, FW_2);
    assert_eq!((mine.len(), theirs.len()), (1, 1));
    let before = serde_json::to_value(h.core.state(h.now).totals).unwrap();

    // Someone else's offer: tasks dropped, nothing launched, FW_1's offer returned.
    let out = h.call(FW_1, accept(&[&theirs[0]], vec![task("x", "cpus:1;mem:1")]));
    let updates = Harness::updates_in(&out, FW_1);
    assert_eq!(state_of(&updates[0]), TaskState::Dropped);
    assert_eq!(updates[0].message, format!("offer {} belongs to another framework", theirs[0].id));
    assert!(Harness::run_tasks_in(&out, AGENT_A).is_empty() && Harness::run_tasks_in(&out, AGENT_B).is_empty());
    let after = serde_json::to_value(h.core.state(h.now).totals).unwrap();
    assert_eq!(before, after, "a rejected accept must not change the books");

    // An unknown offer.
    let out = h.call(FW_1, accept(&[&v1::Offer { id: "nope".into(), ..Default::default() }], vec![]));
    assert_eq!(Harness::errors_in(&out, FW_1), vec!["ACCEPT refused: offer nope is no longer valid (used, declined, rescinded or timed out)"]);

    // Bad tasks in a good accept: each gets TASK_ERROR, the good one runs.
    let mut no_command = task("c", "cpus:0.1");
    no_command.command = None;
    let secret = |name: &str| v1::Secret { name: name.into(), value: b"s3cr3t-value".to_vec() };
    let mut bad_secret = task("sec", "cpus:0.1");
    bad_secret.secrets = vec![secret("../key")];
    let mut ok = task("ok", "cpus:1;mem:100");
    ok.secrets = vec![secret("key")];
    let out = h.call(
        FW_1,
        accept(
            &[&mine[0]],
            vec![
                task("big", "cpus:3"),
                ok,
                task("ok", "cpus:0.5"),
                task("bad/id", "cpus:0.1"),
                task("zero", "disk:1"),
                no_command,
                bad_secret,
            ],
        ),
    );
    let messages: Vec<(String, String)> =
        Harness::updates_in(&out, FW_1).iter().map(|s| (s.task_id.clone(), s.message.clone())).collect();
    assert_eq!(
        messages,
        vec![
            ("big".into(), "task needs cpus:3 but only cpus:2;mem:1024 is left in the offers".into()),
            ("ok".into(), "task id ok is already in use by this framework".into()),
            ("bad/id".into(), "task_id: task_id \"bad/id\" contains '/'; ids may not hold whitespace, control characters or path separators".into()),
            ("zero".into(), "task must use some cpus or mem".into()),
            ("c".into(), "task has no command".into()),
            (
                "sec".into(),
                "task.secrets[0].name: \"../key\" must be 1 to 64 of letters, digits, '.', '_' and '-', not starting with '.'".into()
            ),
        ]
    );
    let ran = Harness::run_tasks_in(&out, h.core.agent_conn(&AgentId::new(mine[0].agent_id.clone())).unwrap());
    assert_eq!(ran.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(), vec!["ok"]);
    // The secret goes to the agent, and nowhere in the broker's state.
    assert_eq!(ran[0].secrets, vec![secret("key")]);
    let state = serde_json::to_string(&h.core.state(h.now)).unwrap();
    assert!(state.contains("\"ok\"") && !state.contains("s3cr3t") && !state.contains("115,51,99"), "{state}");
    // The offer is used up; accepting it again fails.
    let out = h.call(FW_1, accept(&[&mine[0]], vec![task("again", "cpus:0.1")]));
    assert_eq!(state_of(&Harness::updates_in(&out, FW_1)[0]), TaskState::Dropped);
}

#[test]
fn decline_filters_and_suppress_revive() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 0.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    h.call(
        FW_1,
        v1::call::Kind::Decline(v1::call::Decline {
            offer_ids: vec![offers[0].id.clone()],
            filters: Some(v1::Filters { refuse_seconds: Some(2.0) }),
        }),
    );
    assert!(Harness::offers_in(&h.advance(ms(1000)), FW_1).is_empty());
    assert_eq!(Harness::offers_in(&h.advance(ms(1100)), FW_1).len(), 1, "filter lapses after refuse_seconds");

    let offers = Harness::offers_in(&h.log, FW_1);
    let last = offers.last().unwrap().clone();
    h.call(FW_1, v1::call::Kind::Suppress(v1::call::Suppress { roles: vec![] }));
    h.call(
        FW_1,
        v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![last.id], filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) }),
    );
    assert!(Harness::offers_in(&h.advance(ms(1000)), FW_1).is_empty(), "suppressed framework gets nothing");
    h.call(FW_1, v1::call::Kind::Revive(v1::call::Revive { roles: vec![], data: None }));
    assert_eq!(Harness::offers_in(&h.advance(ms(100)), FW_1).len(), 1);

    let out = h.call(FW_1, v1::call::Kind::Revive(v1::call::Revive { roles: vec!["other".into()], data: None }));
    assert_eq!(Harness::errors_in(&out, FW_1), vec!["REVIVE refused: role \"other\" is not one of this framework's roles"]);
    let out = h.call(
        FW_1,
        v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![], filters: Some(v1::Filters { refuse_seconds: Some(f64::NAN) }) }),
    );
    assert_eq!(Harness::errors_in(&out, FW_1), vec!["DECLINE refused: filters.refuse_seconds NaN must be a finite number >= 0"]);
}

#[test]
fn offers_time_out_and_are_rescinded() {
    let mut h = Harness::new();
    h.core.settings.offer_timeout = Duration::from_secs(10);
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 0.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    let out = h.advance(Duration::from_secs(10));
    assert!(out.iter().any(|o| matches!(o, Output::Framework(FW_1, v1::Event { kind: Some(v1::event::Kind::Rescind(r)) }) if r.offer_id == offers[0].id)));
    // Rescinded resources are offered again in the same cycle, as a new offer.
    let again = Harness::offers_in(&out, FW_1);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, offers[0].id);
}

#[test]
fn a_framework_that_never_answers_does_not_starve_a_newcomer() {
    // FW_1 subscribes first and never answers; FW_2 comes later in the same
    // role. Once FW_1's offer times out the agent goes to FW_2 in the same
    // tick (it used to go back to FW_1, tie after tie, for minutes).
    let mut h = Harness::new();
    h.core.settings.offer_timeout = Duration::from_secs(10);
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "silent", &[], 0.0);
    assert_eq!(Harness::offers_in(&h.advance(ms(100)), FW_1).len(), 1);
    h.subscribe(FW_2, "newcomer", &[], 0.0);
    assert!(Harness::offers_in(&h.advance(ms(100)), FW_2).is_empty(), "everything is offered to FW_1");
    let out = h.advance(Duration::from_secs(10));
    assert!(Harness::offers_in(&out, FW_1).is_empty());
    let to_newcomer = Harness::offers_in(&out, FW_2);
    assert_eq!(to_newcomer.len(), 1, "within one offer timeout plus one allocation cycle");
    // FW_2 declines for a short while: with nobody else in line the agent
    // goes back to FW_1 even though it yielded it.
    h.call(
        FW_2,
        v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![to_newcomer[0].id.clone()], filters: Some(v1::Filters { refuse_seconds: Some(60.0) }) }),
    );
    assert_eq!(Harness::offers_in(&h.advance(ms(100)), FW_1).len(), 1);
    h.core.check_invariants().unwrap();
}

#[test]
fn piles_are_bounded_frameworks_roles_and_failover_timeouts() {
    let mut h = Harness::new();
    h.core.settings.max_frameworks = 2;
    h.core.settings.max_roles = 3;
    h.core.settings.max_failover_timeout = Duration::from_secs(60);
    // A year asked, a minute kept: the framework is gone a minute after it left.
    let one = h.subscribe(FW_1, "one", &[], 365.0 * 24.0 * 3600.0);
    h.core.framework_detached(FW_1, h.now);
    h.subscribe(FW_2, "two", &["a"], 0.0);
    // Two frameworks held (one waiting to fail over): a third is refused.
    let out = h.call(30, v1::call::Kind::Subscribe(v1::call::Subscribe {
        data: None,
        framework: Some(v1::FrameworkInfo { name: "three".into(), ..Default::default() }),
    }));
    assert_eq!(
        Harness::errors_in(&out, 30),
        vec!["subscription refused: the broker already holds its limit of 2 frameworks, connected or waiting to fail over (broker.frameworks.max)"]
    );
    assert!(out.iter().any(|o| matches!(o, Output::Close(30))));
    // Roles: "*" and "a" exist; one more fits, two do not; none was added.
    assert_eq!(
        h.core.set_weight(Role::new("b"), 2.0).map(|_| ()).and_then(|_| h.core.set_weight(Role::new("c"), 2.0).map(|_| ())),
        Err("role c is new and 1 new role(s) would take the broker past its limit of 3 roles (broker.roles.max)".to_owned())
    );
    assert!(h.core.set_weight(Role::new("b"), 3.0).is_ok(), "a known role can always be reweighted");
    h.advance(Duration::from_secs(61));
    assert!(!h.core.state(h.now).frameworks.iter().any(|f| f.id == one), "removed after the capped failover timeout");
    h.core.check_invariants().unwrap();
}

#[test]
fn an_agent_whose_stream_closed_is_not_offered_until_it_is_back() {
    let mut h = Harness::new();
    let agent = h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 0.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    assert_eq!(offers.len(), 1);
    h.live_agents.clear();
    let out = h.core.agent_detached(AGENT_A, h.now);
    assert!(
        out.iter().any(|o| matches!(o, Output::Framework(FW_1, v1::Event { kind: Some(v1::event::Kind::Rescind(r)) }) if r.offer_id == offers[0].id)),
        "rescinded at once, not at the unreachable timeout: {out:?}"
    );
    assert!(Harness::offers_in(&h.advance(ms(1000)), FW_1).is_empty(), "not offered while it has no stream");
    h.register_agent(AGENT_B, &agent, "cpus:2;mem:1024", vec![]);
    assert_eq!(Harness::offers_in(&h.advance(ms(100)), FW_1).len(), 1, "offered again once back");
    h.core.check_invariants().unwrap();
}

#[test]
fn an_update_from_an_agent_the_task_was_not_placed_on_is_dropped() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    let fw = h.subscribe(FW_1, "one", &[], 60.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    let launched = h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64")]));
    assert_eq!(Harness::run_tasks_in(&launched, AGENT_A).len(), 1);
    assert_eq!(Harness::updates_in(&h.agent_update(AGENT_A, &fw, "t", TaskState::Running, 1), FW_1).len(), 1);
    // A second agent claims the task failed: the framework hears nothing.
    h.register_agent(AGENT_B, "", "cpus:1;mem:512", vec![]);
    let forged = h.agent_update(AGENT_B, &fw, "t", TaskState::Failed, 2);
    assert!(Harness::updates_in(&forged, FW_1).is_empty(), "{forged:?}");
    let state = h.core.state(h.now);
    assert_eq!(state.tasks.iter().find(|t| t.id == "t").map(|t| t.state.as_str()), Some("TASK_RUNNING"));
    h.core.check_invariants().unwrap();
}

#[test]
fn silent_agent_becomes_unreachable_and_comes_back() {
    let mut h = Harness::new();
    let agent = h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    let fw = h.subscribe(FW_1, "one", &[], 60.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    let launched = h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64")]));
    let info = Harness::run_tasks_in(&launched, AGENT_A)[0].clone();
    h.agent_update(AGENT_A, &fw, "t", TaskState::Running, 1);
    h.live_agents.clear();
    let out = h.advance(Duration::from_secs(6));
    let updates = Harness::updates_in(&out, FW_1);
    assert_eq!(updates.len(), 1);
    assert_eq!(state_of(&updates[0]), TaskState::Unreachable);
    assert!(out.contains(&Output::Close(AGENT_A)));

    // Explicit reconciliation reports it unreachable too.
    let out = h.call(
        FW_1,
        v1::call::Kind::Reconcile(v1::call::Reconcile { tasks: vec![v1::call::reconcile::Task { task_id: "t".into(), agent_id: agent.clone() }] }),
    );
    assert_eq!(state_of(&Harness::updates_in(&out, FW_1)[0]), TaskState::Unreachable);

    // It re-registers with the task still running: RUNNING again.
    let running = v1::RunningTask {
        framework_id: fw.clone(),
        task: Some(info),
        latest: Some(v1::TaskStatus { task_id: "t".into(), state: task_state_to_proto(TaskState::Running) as i32, framework_id: fw.clone(), ..Default::default() }),
    };
    h.register_agent(AGENT_B, &agent, "cpus:2;mem:1024", vec![running]);
    let updates = Harness::updates_in(&h.log[h.log.len() - 3..], FW_1);
    assert_eq!(state_of(updates.last().unwrap()), TaskState::Running);
    let state = h.core.state(h.now);
    assert_eq!(state.tasks[0].state, "TASK_RUNNING");
    assert!(state.agents[0].reachable);
    assert_eq!(state.agents[0].used.cpus, 1.0);
}

/// `TaskStatus.timestamp` is seconds since the Unix epoch; the updates the
/// broker makes itself once carried seconds since the broker started.
#[test]
fn updates_the_broker_makes_carry_unix_time() {
    let mut h = Harness::new();
    let agent = h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 60.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64")]));
    let unix_now = |h: &Harness| (WALL_START + h.now).as_secs_f64();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-3;

    // STAGING, from the broker's books, through reconciliation.
    let out = h.call(FW_1, v1::call::Kind::Reconcile(v1::call::Reconcile { tasks: vec![] }));
    let staging = &Harness::updates_in(&out, FW_1)[0];
    assert!(close(staging.timestamp, unix_now(&h)), "reconciliation at {}", staging.timestamp);

    // TASK_UNREACHABLE when the agent falls silent.
    h.live_agents.clear();
    let out = h.advance(Duration::from_secs(6));
    let unreachable = &Harness::updates_in(&out, FW_1)[0];
    assert_eq!(state_of(unreachable), TaskState::Unreachable);
    assert!(close(unreachable.timestamp, unix_now(&h)), "unreachable at {}", unreachable.timestamp);

    // TASK_UNREACHABLE again, through reconciliation, later.
    h.advance(Duration::from_secs(3));
    let out = h.call(
        FW_1,
        v1::call::Kind::Reconcile(v1::call::Reconcile { tasks: vec![v1::call::reconcile::Task { task_id: "t".into(), agent_id: agent }] }),
    );
    let reconciled = &Harness::updates_in(&out, FW_1)[0];
    assert_eq!(state_of(reconciled), TaskState::Unreachable);
    assert!(close(reconciled.timestamp, unix_now(&h)), "reconciled at {}", reconciled.timestamp);

    // TASK_UNKNOWN for a task the broker never heard of.
    let out = h.call(
        FW_1,
        v1::call::Kind::Reconcile(v1::call::Reconcile { tasks: vec![v1::call::reconcile::Task { task_id: "zz".into(), agent_id: String::new() }] }),
    );
    let unknown = &Harness::updates_in(&out, FW_1)[0];
    assert_eq!(state_of(unknown), TaskState::Unknown);
    assert!(close(unknown.timestamp, unix_now(&h)), "unknown at {}", unknown.timestamp);
}

/// What `GetStateResponse.agents` carries: each agent's state and its
/// books as exact resource sets, the same after the wire and back.
#[test]
fn agent_summaries_follow_the_books() {
    use weir_model::{AgentState, AgentSummary};
    let mut h = Harness::new();
    let a = h.register_agent(AGENT_A, "", "cpus:4;mem:4096;ports:[31000-31009]", vec![]);
    let b = h.register_agent(AGENT_B, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 60.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    let on_a = offers.iter().find(|o| o.agent_id == a).unwrap();
    h.call(FW_1, accept(&[on_a], vec![task("t", "cpus:1.5;mem:512;ports:[31000-31000]")]));
    let summary = |h: &Harness, id: &str| -> AgentSummary {
        h.core.agent_summaries().into_iter().find(|s| s.id.as_str() == id).unwrap()
    };

    let sa = summary(&h, &a);
    assert_eq!(sa.state, AgentState::Reachable);
    assert_eq!((sa.hostname.as_str(), sa.http_address.as_str()), ("host1", "127.0.0.1:5001"));
    assert_eq!(sa.attributes, vec![("rack".to_owned(), "r1".to_owned())]);
    assert_eq!(sa.total, ResourceSet::parse("cpus:4;mem:4096;ports:[31000-31009]").unwrap());
    assert_eq!(sa.used, ResourceSet::parse("cpus:1.5;mem:512;ports:[31000-31000]").unwrap());
    assert!(sa.offered.is_empty(), "the rest is filtered after the accept: {}", sa.offered);
    assert_eq!(sa.tasks, 1);
    let sb = summary(&h, &b);
    assert_eq!((sb.used.is_empty(), sb.offered.clone()), (true, ResourceSet::parse("cpus:2;mem:1024").unwrap()));
    let ids: Vec<String> = h.core.agent_summaries().iter().map(|s| s.id.to_string()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ordered by id");

    // Through the one conversion layer and back: nothing lost.
    let response = v1::GetStateResponse {
        agents: h.core.agent_summaries().iter().map(weir_proto::convert::agent_summary_to_proto).collect(),
        ..Default::default()
    };
    assert_eq!(weir_proto::convert::agents_from_proto(&response).unwrap(), h.core.agent_summaries());

    // Stream gone: disconnected; silent past the timeout: unreachable,
    // its task still counted as used.
    h.core.agent_detached(AGENT_A, h.now);
    h.live_agents.retain(|c| *c != AGENT_A);
    assert_eq!(summary(&h, &a).state, AgentState::Disconnected);
    h.advance(Duration::from_secs(6));
    let sa = summary(&h, &a);
    assert_eq!((sa.state, sa.tasks), (AgentState::Unreachable, 1));
    assert_eq!(sa.used, ResourceSet::parse("cpus:1.5;mem:512;ports:[31000-31000]").unwrap());
    assert_eq!(summary(&h, &b).state, AgentState::Reachable);
}

#[test]
fn reconciliation_explicit_and_implicit() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 0.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("a", "cpus:0.5"), task("b", "cpus:0.5")]));
    let out = h.call(FW_1, v1::call::Kind::Reconcile(v1::call::Reconcile { tasks: vec![] }));
    let ids: Vec<_> = Harness::updates_in(&out, FW_1).iter().map(|s| (s.task_id.clone(), state_of(s))).collect();
    assert_eq!(ids, vec![("a".into(), TaskState::Staging), ("b".into(), TaskState::Staging)]);
    let out = h.call(
        FW_1,
        v1::call::Kind::Reconcile(v1::call::Reconcile { tasks: vec![v1::call::reconcile::Task { task_id: "zz".into(), agent_id: String::new() }] }),
    );
    let s = &Harness::updates_in(&out, FW_1)[0];
    assert_eq!((s.task_id.as_str(), state_of(s), s.uuid.is_empty()), ("zz", TaskState::Unknown, true));
}

/// The testbed's long run: a framework reconciled a task whose end the
/// broker had just passed on, before reading and acknowledging it, and
/// heard TASK_UNKNOWN after TASK_FINISHED: two ends of one task. Until
/// the end is acknowledged, reconciliation leaves the task to the update
/// stream, which the agent resends until then.
#[test]
fn a_task_reconciled_between_its_end_and_the_acknowledgement_hears_no_second_end() {
    let mut h = Harness::new();
    let agent = h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    let fw = h.subscribe(FW_1, "one", &[], 0.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("t1", "cpus:0.5")]));
    let heard = |out: &[Output]| Harness::updates_in(out, FW_1).iter().map(state_of).collect::<Vec<_>>();
    let out = h.agent_update(AGENT_A, &fw, "t1", TaskState::Finished, 2);
    assert_eq!(heard(&out), vec![TaskState::Finished]);
    let reconcile = |agent_id: &str| {
        v1::call::Kind::Reconcile(v1::call::Reconcile { tasks: vec![v1::call::reconcile::Task { task_id: "t1".into(), agent_id: agent_id.to_owned() }] })
    };
    for agent_id in [agent.as_str(), ""] {
        let out = h.call(FW_1, reconcile(agent_id));
        assert_eq!(heard(&out), Vec::<TaskState>::new(), "a second end for a task whose FINISHED is unacknowledged");
    }
    // The agent's retry tells the end again; its acknowledgement settles it.
    let out = h.agent_update(AGENT_A, &fw, "t1", TaskState::Finished, 2);
    assert_eq!(heard(&out), vec![TaskState::Finished]);
    h.call(FW_1, v1::call::Kind::Acknowledge(v1::call::Acknowledge { agent_id: agent.clone(), task_id: "t1".into(), uuid: vec![2; 16] }));
    assert!(h.core.ended_unacked.is_empty(), "the framework acknowledged the end: nothing is pending");
}

#[test]
fn framework_failover_and_teardown() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    let fw = h.subscribe(FW_1, "one", &[], 30.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64")]));
    h.core.framework_detached(FW_1, h.now);
    h.advance(Duration::from_secs(20));
    assert_eq!(h.core.state(h.now).tasks.len(), 1, "tasks survive within the failover timeout");
    let again = h.subscribe_as(FW_2, &fw, "one", &[], 30.0);
    assert_eq!(again, fw);
    assert_eq!(Harness::offers_in(&h.advance(Duration::from_secs(6)), FW_2).len(), 1);

    // Calls before SUBSCRIBE are refused.
    let out = h.call(99, v1::call::Kind::Teardown(v1::call::Teardown::default()));
    assert_eq!(Harness::errors_in(&out, 99), vec!["the first call on a stream must be SUBSCRIBE"]);

    let out = h.call(FW_2, v1::call::Kind::Teardown(v1::call::Teardown::default()));
    assert!(out.iter().any(|o| matches!(o, Output::Agent(AGENT_A, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(k)) }) if k.task_id == "t")));
    assert!(out.contains(&Output::Close(FW_2)));
    let state = h.core.state(h.now);
    assert!(state.frameworks.is_empty() && state.tasks.is_empty());
    assert_eq!(state.totals.free.cpus, 2.0);
}

#[test]
fn framework_without_failover_timeout_is_removed_on_disconnect() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 0.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64")]));
    let out = h.core.framework_detached(FW_1, h.now);
    assert!(out.iter().any(|o| matches!(o, Output::Agent(AGENT_A, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(_)) }))));
    assert!(h.core.state(h.now).frameworks.is_empty());
}

#[test]
fn bad_registrations_are_refused_with_the_reason() {
    let mut h = Harness::new();
    let msg = v1::agent_message::Register {
        agent: Some(v1::AgentInfo { hostname: "h".into(), resources: vec![], ..Default::default() }),
        tasks: vec![],
        ..Default::default()
    };
    let out = h.core.agent_register(AGENT_A, &msg, h.now);
    assert_eq!(
        out,
        vec![
            Output::Agent(
                AGENT_A,
                agent_message(v1::broker_message::Kind::Refused(v1::broker_message::Refused {
                    message: "registration refused: register.agent.resources: an agent must offer some resources".into()
                }))
            ),
            Output::Close(AGENT_A)
        ]
    );
    assert!(h.core.state(h.now).agents.is_empty());
}

#[test]
fn drf_paper_example_through_the_broker() {
    // 9 CPUs, 18 GB; A's tasks ⟨1 CPU, 4 GB⟩, B's ⟨3 CPUs, 1 GB⟩. Each
    // framework launches one task per offer and declines the rest with no
    // filter; DRF must end with A = 3 tasks and B = 2.
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:9;mem:18432", vec![]);
    h.subscribe(FW_1, "A", &[], 0.0);
    h.subscribe(FW_2, "B", &[], 0.0);
    let (mut a, mut b) = (0, 0);
    for _ in 0..50 {
        let out = h.advance(ms(100));
        for (conn, spec, count) in [(FW_1, "cpus:1;mem:4096", &mut a), (FW_2, "cpus:3;mem:1024", &mut b)] {
            for offer in Harness::offers_in(&out, conn) {
                let fits = resources_to_proto(&ResourceSet::parse(spec).unwrap());
                let available = weir_proto::convert::resources_from_proto("o", &offer.resources).unwrap();
                let want = weir_proto::convert::resources_from_proto("t", &fits).unwrap();
                let tasks = if available.contains(&want) {
                    *count += 1;
                    vec![task(&format!("t{count}"), spec)]
                } else {
                    vec![]
                };
                let mut call = accept(&[&offer], tasks);
                if let v1::call::Kind::Accept(a) = &mut call {
                    a.filters = Some(v1::Filters { refuse_seconds: Some(0.0) });
                }
                h.call(conn, call);
            }
        }
    }
    assert_eq!((a, b), (3, 2));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Random calls, good and bad, never break the books: nothing offered
    /// twice, no agent over-committed, totals consistent.
    #[test]
    fn books_stay_consistent(ops in prop::collection::vec((0u8..10, 0u8..4, 1u64..4000), 1..80)) {
        let mut h = Harness::new();
        h.register_agent(AGENT_A, "", "cpus:4;mem:4096", vec![]);
        h.register_agent(AGENT_B, "", "cpus:2;mem:8192", vec![]);
        let fws = [h.subscribe(FW_1, "one", &["x"], 10.0), h.subscribe(FW_2, "two", &["y"], 10.0)];
        let mut next = 0;
        for (op, who, n) in ops {
            let conn = if who % 2 == 0 { FW_1 } else { FW_2 };
            let fw = &fws[(who % 2) as usize];
            match op {
                0 => { h.advance(ms(n)); }
                1 | 2 => {
                    let offers = Harness::offers_in(&h.log, conn);
                    if let Some(offer) = offers.last() {
                        next += 1;
                        let spec = format!("cpus:{};mem:{}", (n % 3) as f64 * 0.5, n % 2000);
                        h.call(conn, accept(&[offer], vec![task(&format!("t{next}"), &spec)]));
                    }
                }
                3 => {
                    let offers = Harness::offers_in(&h.log, conn);
                    if let Some(offer) = offers.first() {
                        h.call(conn, v1::call::Kind::Decline(v1::call::Decline { offer_ids: vec![offer.id.clone()], filters: Some(v1::Filters { refuse_seconds: Some((n % 3) as f64) }) }));
                    }
                }
                4 => {
                    let tasks = h.core.state(h.now).tasks;
                    if let Some(t) = tasks.iter().find(|t| &t.framework_id == fw) {
                        let agent_conn = h.core.agent_conn(&AgentId::new(t.agent_id.clone())).unwrap();
                        let state = if n % 2 == 0 { TaskState::Finished } else { TaskState::Running };
                        h.agent_update(agent_conn, fw, &t.id.clone(), state, (n % 250) as u8);
                    }
                }
                5 => { h.call(conn, v1::call::Kind::Suppress(v1::call::Suppress { roles: vec![] })); }
                6 => { h.call(conn, v1::call::Kind::Revive(v1::call::Revive { roles: vec![], data: None })); }
                8 => {
                    // Drain (or reactivate) one agent; its tasks die at the deadline.
                    let agent = AgentId::new(h.core.state(h.now).agents[(who / 2) as usize % 2].id.clone());
                    if n % 3 == 0 {
                        let (_, out) = h.core.reactivate_agent(&agent).unwrap();
                        h.record(out);
                    } else {
                        let (_, _, out) = h.core.drain_agent(&agent, Some(ms(n)), false, h.now).unwrap();
                        h.record(out);
                        prop_assert!(h.core.agents[&agent].offers.is_empty());
                    }
                }
                _ => { h.call(conn, accept(&[&v1::Offer { id: format!("bogus{n}"), ..Default::default() }], vec![task("z", "cpus:1")])); }
            }
            let state = h.core.state(h.now);
            for agent in &state.agents {
                let sum = agent.used.cpus + agent.offered.cpus + agent.free.cpus;
                prop_assert!((sum - agent.total.cpus).abs() < 1e-9, "cpus on {} do not add up: {:?}", agent.id, agent);
                let mem = agent.used.mem + agent.offered.mem + agent.free.mem;
                prop_assert!((mem - agent.total.mem).abs() < 1e-9);
            }
            prop_assert!(h.core.check_invariants().is_ok(), "{:?}", h.core.check_invariants());
            // No offer id appears in two live offers; no resource offered twice.
            let live: Vec<_> = h.core.offers.values().collect();
            for a in &h.core.agents {
                let mut on_agent = ResourceSet::default();
                for o in live.iter().filter(|o| &o.agent == a.0) {
                    on_agent.add_assign(&o.resources);
                }
                prop_assert!(a.1.total.contains(&on_agent));
            }
            // What GetState carries passes its own validation (used +
            // offered within total) and converts back unchanged.
            let summaries = h.core.agent_summaries();
            let wire = v1::GetStateResponse {
                agents: summaries.iter().map(weir_proto::convert::agent_summary_to_proto).collect(),
                ..Default::default()
            };
            prop_assert_eq!(weir_proto::convert::agents_from_proto(&wire), Ok(summaries));
        }
    }
}

#[test]
fn an_agent_gone_too_long_is_removed_and_told_to_kill_its_tasks_when_it_returns() {
    let mut h = Harness::new();
    h.core.settings.agent_reregister_timeout = Duration::from_secs(60);
    let agent = h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    let fw = h.subscribe(FW_1, "one", &[], 3600.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    let launched = h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64")]));
    let info = Harness::run_tasks_in(&launched, AGENT_A)[0].clone();
    h.agent_update(AGENT_A, &fw, "t", TaskState::Running, 1);
    h.live_agents.clear();
    h.advance(Duration::from_secs(6)); // unreachable
    assert!(Harness::updates_in(&h.advance(Duration::from_secs(30)), FW_1).is_empty(), "not removed yet");
    let out = h.advance(Duration::from_secs(30));
    let gone = Harness::updates_in(&out, FW_1);
    assert_eq!(gone.len(), 1);
    assert_eq!((state_of(&gone[0]), gone[0].reason.as_str()), (TaskState::Gone, "REASON_AGENT_REMOVED"));
    let state = h.core.state(h.now);
    assert!(state.agents.is_empty() && state.tasks.is_empty());
    assert_eq!(state.completed_tasks[0].state, "TASK_GONE");

    // It comes back, still running the task: the task must die, and not
    // come back to life in the books.
    let running = v1::RunningTask {
        framework_id: fw.clone(),
        task: Some(info),
        latest: Some(v1::TaskStatus { task_id: "t".into(), state: task_state_to_proto(TaskState::Running) as i32, framework_id: fw.clone(), ..Default::default() }),
    };
    h.register_agent(AGENT_B, &agent, "cpus:2;mem:1024", vec![running]);
    let kills: Vec<_> = h.log.iter().filter(|o| matches!(o, Output::Agent(AGENT_B, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(k)) }) if k.task_id == "t")).collect();
    assert_eq!(kills.len(), 1);
    assert!(h.core.state(h.now).tasks.is_empty());
    assert_eq!(h.core.state(h.now).totals.free.cpus, 2.0);
    // Its KILLED update is acknowledged by the broker, not forwarded.
    let out = h.agent_update(AGENT_B, &fw, "t", TaskState::Killed, 9);
    assert!(Harness::updates_in(&out, FW_1).is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::Agent(AGENT_B, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::Acknowledge(a)) }) if a.uuid == vec![9; 16])));
}

#[test]
fn a_framework_away_past_its_failover_timeout_is_removed_and_its_tasks_killed() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 10.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64")]));
    h.core.framework_detached(FW_1, h.now);
    let out = h.advance(Duration::from_secs(9));
    assert!(!out.iter().any(|o| matches!(o, Output::Agent(_, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(_)) }))));
    assert_eq!(h.core.state(h.now).frameworks.len(), 1);
    let out = h.advance(Duration::from_secs(1));
    assert!(out.iter().any(|o| matches!(o, Output::Agent(AGENT_A, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(k)) }) if k.task_id == "t")));
    let state = h.core.state(h.now);
    assert!(state.frameworks.is_empty() && state.tasks.is_empty());
    assert_eq!(state.totals.free.cpus, 2.0, "its resources are back in the pool");
}

/// A cycle larger than `MAX_OFFERS_PER_CYCLE` goes out over several ticks
/// without waiting for the allocation interval, each agent offered once.
#[test]
fn a_large_cycle_is_spread_over_ticks_and_offers_each_agent_once() {
    let mut h = Harness::new();
    let count = MAX_OFFERS_PER_CYCLE + MAX_OFFERS_PER_CYCLE / 2;
    for i in 0..count as u64 {
        h.register_agent(1_000 + i, "", "cpus:2;mem:1024", vec![]);
    }
    h.subscribe(FW_1, "one", &[], 60.0);
    let first = Harness::offers_in(&h.advance(ms(100)), FW_1);
    assert_eq!(first.len(), MAX_OFFERS_PER_CYCLE);
    assert!(h.core.allocation_unfinished());
    // Same instant: the allocation interval has not passed, the cycle goes on.
    let out = h.core.tick(h.now);
    let second = Harness::offers_in(&h.record(out), FW_1);
    assert_eq!(second.len(), count - MAX_OFFERS_PER_CYCLE);
    assert!(!h.core.allocation_unfinished());
    let agents: std::collections::BTreeSet<String> = first.iter().chain(&second).map(|o| o.agent_id.clone()).collect();
    assert_eq!(agents.len(), count, "an agent was offered twice");
    assert!(Harness::offers_in(&h.core.tick(h.now), FW_1).is_empty());
}

/// Ticks skip the scan for silent agents until one could be silent; an
/// agent that registers later is still found silent at its own deadline.
#[test]
fn agents_falling_silent_at_different_times_are_each_found_on_time() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.live_agents.clear();
    h.advance(Duration::from_secs(3));
    h.register_agent(AGENT_B, "", "cpus:2;mem:1024", vec![]);
    h.live_agents.clear();
    // A was last heard at 0 s, B at 3 s; the timeout is 5 s.
    let out = h.advance(ms(2_001));
    assert!(out.contains(&Output::Close(AGENT_A)), "A silent 5.001 s");
    assert!(!out.contains(&Output::Close(AGENT_B)));
    let out = h.advance(ms(2_999));
    assert!(!out.contains(&Output::Close(AGENT_B)), "B silent exactly 5 s is not yet unreachable");
    let out = h.advance(ms(1));
    assert!(out.contains(&Output::Close(AGENT_B)), "B silent 5.001 s");
}

#[test]
fn a_task_reported_ended_on_reregistration_keeps_its_resources_until_its_update_and_is_never_reported_again() {
    let mut h = Harness::new();
    let agent = h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    let fw = h.subscribe(FW_1, "one", &[], 60.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    let launched = h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64")]));
    let info = Harness::run_tasks_in(&launched, AGENT_A)[0].clone();
    h.agent_update(AGENT_A, &fw, "t", TaskState::Running, 1);

    // The stream drops; the task finishes meanwhile; the agent comes back
    // reporting it ended, its FINISHED update not yet acknowledged.
    h.core.agent_detached(AGENT_A, h.now);
    h.live_agents.clear();
    let finished = v1::RunningTask {
        framework_id: fw.clone(),
        task: Some(info),
        latest: Some(v1::TaskStatus { task_id: "t".into(), state: task_state_to_proto(TaskState::Finished) as i32, framework_id: fw.clone(), ..Default::default() }),
    };
    h.register_agent(AGENT_B, &agent, "cpus:2;mem:1024", vec![finished]);
    assert_eq!(h.core.check_invariants(), Ok(()));
    assert_eq!(h.core.state(h.now).agents[0].used.cpus, 1.0, "held until the update retires it");

    let out = h.agent_update(AGENT_B, &fw, "t", TaskState::Finished, 2);
    assert_eq!(state_of(&Harness::updates_in(&out, FW_1)[0]), TaskState::Finished);
    assert_eq!(h.core.check_invariants(), Ok(()));
    assert_eq!(h.core.state(h.now).agents[0].used.cpus, 0.0);

    // The agent falls silent: nothing is reported UNREACHABLE for the
    // task that already finished.
    h.live_agents.clear();
    let out = h.advance(Duration::from_secs(6));
    assert!(Harness::updates_in(&out, FW_1).is_empty(), "{:?}", Harness::updates_in(&out, FW_1));
    assert_eq!(h.core.check_invariants(), Ok(()));
}

#[test]
fn launch_latency_runs_from_the_launch_to_the_first_running() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:4;mem:4096", vec![]);
    let fw = h.subscribe(FW_1, "latency", &[], 0.0);
    let out = h.advance(ms(100));
    let offers = Harness::offers_in(&out, FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("t1", "cpus:1;mem:128")]));
    assert!(h.core.take_launch_latencies().is_empty(), "nothing runs yet");
    h.advance(ms(250));
    h.agent_update(AGENT_A, &fw, "t1", TaskState::Starting, 1);
    h.advance(ms(50));
    h.agent_update(AGENT_A, &fw, "t1", TaskState::Running, 2);
    h.agent_update(AGENT_A, &fw, "t1", TaskState::Running, 3);
    assert_eq!(h.core.take_launch_latencies(), vec![ms(300)], "once, from the LAUNCH to the first RUNNING");
    assert!(h.core.take_launch_latencies().is_empty());
}

#[test]
fn an_operator_kills_a_task_and_tears_a_framework_down() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    let fw = h.subscribe(FW_1, "one", &[], 30.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    h.call(FW_1, accept(&[&offers[0]], vec![task("t", "cpus:1;mem:64"), task("u", "cpus:1;mem:64")]));
    let before = h.core.state(h.now).tasks.len();

    let (f, t) = (FrameworkId::new(fw.clone()), TaskId::new("t"));
    let out = h.core.operator_kill(&f, &t).unwrap();
    assert!(matches!(&out[..], [Output::Agent(AGENT_A, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(k)) })] if k.task_id == "t"));
    assert_eq!(h.core.state(h.now).tasks.len(), before, "the books change when the agent reports the kill");
    assert!(h.core.operator_kill(&f, &TaskId::new("nope")).unwrap_err().contains("no live task nope"));
    assert!(h.core.operator_teardown(&FrameworkId::new("nope"), h.now).is_err());

    let out = h.core.operator_teardown(&f, h.now).unwrap();
    assert_eq!(Harness::errors_in(&out, FW_1), vec!["framework torn down by an operator"]);
    assert!(out.contains(&Output::Close(FW_1)));
    let kills = out.iter().filter(|o| matches!(o, Output::Agent(AGENT_A, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(_)) }))).count();
    assert_eq!(kills, 2);
    let state = h.core.state(h.now);
    assert!(state.frameworks.is_empty() && state.tasks.is_empty());
    h.core.check_invariants().unwrap();
}

fn revive_with(data: v1::DataLocality) -> v1::call::Kind {
    v1::call::Kind::Revive(v1::call::Revive { roles: vec![], data: Some(data) })
}

#[test]
fn offers_go_to_the_framework_whose_data_the_agent_holds_and_say_how_much() {
    let mut h = Harness::new();
    // host21 and host22; FW_1 (first in line) reads data on host22.
    h.register_agent(21, "", "cpus:4;mem:4096", vec![]);
    h.register_agent(22, "", "cpus:4;mem:4096", vec![]);
    h.subscribe(FW_1, "reader", &["*"], 0.0);
    h.subscribe(FW_2, "other", &["*"], 0.0);
    let data = v1::DataLocality { host_bytes: [("host22".to_owned(), 256 << 20), ("elsewhere".to_owned(), 1)].into(), ..Default::default() };
    let out = h.call(FW_1, revive_with(data.clone()));
    assert!(Harness::errors_in(&out, FW_1).is_empty(), "{out:?}");
    let out = h.advance(Duration::from_secs(1));
    let mine = Harness::offers_in(&out, FW_1);
    let theirs = Harness::offers_in(&out, FW_2);
    assert_eq!(mine.iter().map(|o| (o.hostname.as_str(), o.data_bytes)).collect::<Vec<_>>(), vec![("host22", 256 << 20)], "{out:?}");
    assert_eq!(theirs.iter().map(|o| (o.hostname.as_str(), o.data_bytes)).collect::<Vec<_>>(), vec![("host21", 0)]);
    assert!(h.core.check_invariants().is_ok());

    // An empty DataLocality clears it.
    let out = h.call(FW_1, revive_with(v1::DataLocality::default()));
    assert!(Harness::errors_in(&out, FW_1).is_empty());
    assert!(h.core.allocator.wants(&FrameworkId::new(h.core.frameworks.keys().next().unwrap().to_string())).is_empty());
}

#[test]
fn a_framework_waiting_for_its_data_gets_another_agent_after_the_locality_delay() {
    let mut h = Harness::new();
    h.register_agent(21, "", "cpus:4;mem:4096", vec![]);
    h.subscribe(FW_1, "reader", &["*"], 0.0);
    // Its data is on a host that joins later; until then it waits, then
    // takes host21 once the delay has passed, with nothing else changing.
    let data = v1::DataLocality { host_bytes: [("host22".to_owned(), 64 << 20)].into(), ..Default::default() };
    h.call(FW_1, revive_with(data));
    let out = h.advance(Duration::from_secs(1));
    assert!(Harness::offers_in(&out, FW_1).is_empty() || Harness::offers_in(&out, FW_1)[0].data_bytes == 0);
    let mut got = Harness::offers_in(&out, FW_1);
    let mut waited = Duration::from_secs(1);
    while got.is_empty() && waited < Duration::from_secs(10) {
        let out = h.advance(Duration::from_millis(500));
        waited += Duration::from_millis(500);
        got = Harness::offers_in(&out, FW_1);
    }
    assert_eq!(got.len(), 1, "offered after {waited:?}");
    assert!(waited <= Duration::from_secs(1) + weir_allocator::DEFAULT_LOCALITY_DELAY + Duration::from_secs(1), "{waited:?}");
    // The agent with the data joins: the framework's next offer there says so.
    h.register_agent(22, "", "cpus:4;mem:4096", vec![]);
    let out = h.advance(Duration::from_secs(1));
    assert_eq!(Harness::offers_in(&out, FW_1).iter().map(|o| (o.hostname.as_str(), o.data_bytes)).collect::<Vec<_>>(), vec![("host22", 64 << 20)]);
}

#[test]
fn bad_data_locality_is_refused_with_the_field_named() {
    let mut h = Harness::new();
    h.subscribe(FW_1, "reader", &["*"], 0.0);
    let cases = [
        (v1::DataLocality { host_bytes: [(String::new(), 1)].into(), ..Default::default() }, "data.host_bytes"),
        (v1::DataLocality { hdfs_paths: vec!["/no/scheme".into()], ..Default::default() }, "must be an hdfs:// URI"),
        (v1::DataLocality { volume_ids: vec!["bad/id".into()], ..Default::default() }, "data.volume_ids[0]"),
        (
            v1::DataLocality { hdfs_paths: (0..=super::locality::MAX_DATA_PATHS).map(|i| format!("hdfs://nn:1/{i}")).collect(), ..Default::default() },
            "at most 1000",
        ),
    ];
    for (data, says) in cases {
        let out = h.call(FW_1, revive_with(data));
        let errors = Harness::errors_in(&out, FW_1);
        assert!(errors.len() == 1 && errors[0].starts_with("data locality refused") && errors[0].contains(says), "{errors:?}");
    }
    // HDFS files go to the shell to be located.
    let out = h.call(FW_1, revive_with(v1::DataLocality { hdfs_paths: vec!["hdfs://127.0.0.1:9000/d/a".into()], ..Default::default() }));
    assert!(out.iter().any(|o| matches!(o, Output::LocateHdfs { paths, .. } if paths == &vec!["hdfs://127.0.0.1:9000/d/a".to_owned()])), "{out:?}");
}

#[test]
fn every_lapsing_filter_wakes_the_allocator_not_only_the_earliest() {
    let mut h = Harness::new();
    h.register_agent(AGENT_A, "", "cpus:2;mem:1024", vec![]);
    h.register_agent(AGENT_B, "", "cpus:2;mem:1024", vec![]);
    h.subscribe(FW_1, "one", &[], 0.0);
    let offers = Harness::offers_in(&h.advance(ms(100)), FW_1);
    assert_eq!(offers.len(), 2);
    // One agent refused for 1 s, the other for 3 s.
    for (offer, secs) in offers.iter().zip([1.0, 3.0]) {
        h.call(
            FW_1,
            v1::call::Kind::Decline(v1::call::Decline {
                offer_ids: vec![offer.id.clone()],
                filters: Some(v1::Filters { refuse_seconds: Some(secs) }),
            }),
        );
    }
    let first = Harness::offers_in(&h.advance(ms(1100)), FW_1);
    assert_eq!(first.iter().map(|o| o.agent_id.clone()).collect::<Vec<_>>(), vec![offers[0].agent_id.clone()]);
    // Nothing else happens (the new offer is held); the 3 s filter lapses
    // and the other agent is offered without any other event.
    let second = Harness::offers_in(&h.advance(ms(2100)), FW_1);
    assert_eq!(second.iter().map(|o| o.agent_id.clone()).collect::<Vec<_>>(), vec![offers[1].agent_id.clone()], "{second:?}");
}
