//! Deterministic failover tests: one agent, one framework and a broker
//! core, with the in-memory election and registry. Messages travel through
//! queues delivered one at a time; the leader is replaced after every
//! single delivery of a task launch in turn (offer, accept, run, update,
//! acknowledgement…): in-flight messages are lost with the old leader, a
//! new core recovers from the registry, the agent re-registers and the
//! framework re-subscribes and reconciles. Whatever the step, the task ends
//! up running exactly once, known once, acknowledged, and offers resume.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use weir_ha::memory::{MemoryElection, MemoryRegistry};
use weir_ha::LeaderInfo;
use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_to_proto, task_state_from_proto, task_state_to_proto};
use weir_proto::v1;

use super::*;

/// What the wall clock read when the first broker started.
const WALL_START: Duration = Duration::from_secs(1_700_000_000);
const AGENT_RESOURCES: &str = "cpus:4;mem:1024";
const TASK_RESOURCES: &str = "cpus:1;mem:128";

struct FakeAgent {
    id: String,
    /// Tasks it runs, with their latest status.
    tasks: BTreeMap<String, (v1::TaskInfo, v1::TaskStatus)>,
    /// Updates not yet acknowledged, oldest first.
    unacked: VecDeque<v1::TaskStatus>,
    seen_epoch: u64,
    next_uuid: u8,
}

impl FakeAgent {
    fn register(&self) -> v1::agent_message::Register {
        v1::agent_message::Register {
            agent: Some(v1::AgentInfo {
                id: self.id.clone(),
                hostname: "agent.test".into(),
                resources: resources_to_proto(&ResourceSet::parse(AGENT_RESOURCES).unwrap()),
                attributes: Vec::new(),
                http_address: "127.0.0.1:5051".into(),
            }),
            tasks: self
                .tasks
                .values()
                .map(|(info, latest)| v1::RunningTask {
                    framework_id: latest.framework_id.clone(),
                    task: Some(info.clone()),
                    latest: Some(latest.clone()),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn handle(&mut self, msg: v1::BrokerMessage) -> Vec<v1::AgentMessage> {
        let update = |s: &v1::TaskStatus| v1::AgentMessage {
            kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate { status: Some(s.clone()) })),
        };
        match msg.kind {
            Some(v1::broker_message::Kind::Registered(r)) => {
                assert!(r.leader_epoch >= self.seen_epoch, "a deposed broker registered the agent");
                self.seen_epoch = r.leader_epoch;
                self.id = r.agent_id;
                // Resent after every registration, as the real agent does.
                self.unacked.iter().map(update).collect()
            }
            Some(v1::broker_message::Kind::RunTask(run)) => {
                let task = run.task.unwrap();
                if self.tasks.contains_key(&task.task_id) {
                    return Vec::new();
                }
                self.next_uuid += 1;
                let status = v1::TaskStatus {
                    task_id: task.task_id.clone(),
                    state: task_state_to_proto(TaskState::Running) as i32,
                    source: v1::task_status::Source::Agent as i32,
                    agent_id: self.id.clone(),
                    framework_id: run.framework_id.clone(),
                    uuid: vec![self.next_uuid; 16],
                    ..Default::default()
                };
                self.tasks.insert(task.task_id.clone(), (task, status.clone()));
                self.unacked.push_back(status.clone());
                vec![update(&status)]
            }
            Some(v1::broker_message::Kind::Acknowledge(ack)) => {
                self.unacked.retain(|s| s.uuid != ack.uuid);
                Vec::new()
            }
            Some(v1::broker_message::Kind::KillTask(kill)) => panic!("nobody asked to kill {}", kill.task_id),
            _ => Vec::new(),
        }
    }
}

#[derive(Default)]
struct FakeFramework {
    id: String,
    /// What it believes of every task it launched.
    tasks: BTreeMap<String, TaskState>,
    launches: u32,
    offers_seen: u32,
}

impl FakeFramework {
    fn subscribe(&self) -> v1::Call {
        v1::Call {
            framework_id: self.id.clone(),
            kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
        data: None,
                framework: Some(v1::FrameworkInfo {
                    id: self.id.clone(),
                    name: "sim".into(),
                    failover_timeout_seconds: 600.0,
                    ..Default::default()
                }),
            })),
        }
    }

    fn wants_a_task(&self) -> bool {
        !self.tasks.values().any(|s| !s.is_terminal())
    }

    fn handle(&mut self, event: v1::Event) -> Vec<v1::Call> {
        let call = |kind| v1::Call { framework_id: String::new(), kind: Some(kind) };
        match event.kind {
            Some(v1::event::Kind::Subscribed(s)) => {
                self.id = s.framework_id;
                let tasks = self
                    .tasks
                    .keys()
                    .map(|t| v1::call::reconcile::Task { task_id: t.clone(), agent_id: String::new() })
                    .collect();
                vec![call(v1::call::Kind::Reconcile(v1::call::Reconcile { tasks }))]
            }
            Some(v1::event::Kind::Offers(offers)) => {
                self.offers_seen += 1;
                let mut calls = Vec::new();
                for offer in offers.offers {
                    if self.wants_a_task() {
                        self.launches += 1;
                        let id = format!("t{}", self.launches);
                        self.tasks.insert(id.clone(), TaskState::Staging);
                        let task = v1::TaskInfo {
                            task_id: id.clone(),
                            name: id,
                            agent_id: offer.agent_id.clone(),
                            resources: resources_to_proto(&ResourceSet::parse(TASK_RESOURCES).unwrap()),
                            command: Some(v1::CommandInfo { shell: true, value: "sleep 600".into(), ..Default::default() }),
                            ..Default::default()
                        };
                        calls.push(call(v1::call::Kind::Accept(v1::call::Accept {
                            offer_ids: vec![offer.id],
                            operations: vec![v1::Operation {
                                kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks: vec![task] })),
                                ..Default::default()
                            }],
                            filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
                        })));
                    } else {
                        calls.push(call(v1::call::Kind::Decline(v1::call::Decline {
                            offer_ids: vec![offer.id],
                            filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
                        })));
                    }
                }
                calls
            }
            Some(v1::event::Kind::Update(u)) => {
                let status = u.status.unwrap();
                let state = task_state_from_proto("state", status.state).unwrap();
                self.tasks.insert(status.task_id.clone(), state);
                if status.uuid.is_empty() {
                    Vec::new()
                } else {
                    vec![call(v1::call::Kind::Acknowledge(v1::call::Acknowledge {
                        agent_id: status.agent_id,
                        task_id: status.task_id,
                        uuid: status.uuid,
                    }))]
                }
            }
            _ => Vec::new(),
        }
    }
}

struct World {
    election: MemoryElection,
    registry: MemoryRegistry,
    broker: BrokerCore,
    now: Duration,
    agent: FakeAgent,
    framework: FakeFramework,
    /// Streams of the current term (new ones after every failover).
    agent_conn: ConnId,
    framework_conn: ConnId,
    agent_registered: bool,
    to_agent: VecDeque<v1::BrokerMessage>,
    to_framework: VecDeque<v1::Event>,
    from_agent: VecDeque<v1::AgentMessage>,
    from_framework: VecDeque<v1::Call>,
    deliveries: usize,
    failovers: u32,
}

fn settings() -> BrokerSettings {
    BrokerSettings { recovery_timeout: Duration::from_secs(5), ..Default::default() }
}

impl World {
    fn new() -> World {
        let election = MemoryElection::new();
        let epoch = election.enter(LeaderInfo { id: "b1".into(), address: "b1:5050".into(), epoch: 0 });
        let registry = MemoryRegistry::new();
        let mut broker = BrokerCore::new(settings(), "b1", Duration::ZERO, WALL_START);
        broker.recover(&registry.load_now(), epoch, Duration::ZERO);
        let mut world = World {
            election,
            registry,
            broker,
            now: Duration::ZERO,
            agent: FakeAgent { id: String::new(), tasks: BTreeMap::new(), unacked: VecDeque::new(), seen_epoch: 0, next_uuid: 0 },
            framework: FakeFramework::default(),
            agent_conn: 1,
            framework_conn: 2,
            agent_registered: false,
            to_agent: VecDeque::new(),
            to_framework: VecDeque::new(),
            from_agent: VecDeque::new(),
            from_framework: VecDeque::new(),
            deliveries: 0,
            failovers: 0,
        };
        world.connect();
        world
    }

    /// Opens the streams of a term: REGISTER and SUBSCRIBE go first.
    fn connect(&mut self) {
        self.agent_registered = false;
        self.from_agent.push_front(v1::AgentMessage {
            kind: Some(v1::agent_message::Kind::Register(self.agent.register())),
        });
        self.from_framework.push_front(self.framework.subscribe());
    }

    /// Carries out the broker's outputs: registry writes land at once (the
    /// shell holds what follows them until they have), messages queue.
    fn absorb(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Registry(write) => self.registry.apply_now(vec![write]).unwrap(),
                Output::Agent(c, m) if c == self.agent_conn => self.to_agent.push_back(m),
                Output::Framework(c, e) if c == self.framework_conn => self.to_framework.push_back(e),
                Output::Offers(c, batch) if c == self.framework_conn => self.to_framework.push_back(batch.into_event()),
                _ => {}
            }
        }
    }

    /// Delivers one message; false when none is in flight.
    fn deliver_one(&mut self) -> bool {
        let now = self.now;
        if let Some(m) = self.to_agent.pop_front() {
            let replies = self.agent.handle(m);
            self.from_agent.extend(replies);
        } else if let Some(m) = self.from_agent.pop_front() {
            let out = match (&m.kind, self.agent_registered) {
                (Some(v1::agent_message::Kind::Register(r)), false) => {
                    self.agent_registered = true;
                    self.broker.agent_register(self.agent_conn, r, now)
                }
                _ => self.broker.agent_message(self.agent_conn, &m, now),
            };
            self.absorb(out);
        } else if let Some(e) = self.to_framework.pop_front() {
            let calls = self.framework.handle(e);
            self.from_framework.extend(calls);
        } else if let Some(c) = self.from_framework.pop_front() {
            let out = self.broker.framework_call(self.framework_conn, &c, now);
            self.absorb(out);
        } else {
            return false;
        }
        self.deliveries += 1;
        true
    }

    /// The leader dies: what was in flight is lost; the next broker is
    /// elected, recovers from the registry, and everyone reconnects to it.
    fn fail_over(&mut self) {
        let old = self.broker.epoch();
        self.election.expire(old, "killed");
        let name = format!("b{}", old + 1);
        let epoch = self.election.enter(LeaderInfo { id: name.clone(), address: format!("{name}:5050"), epoch: 0 });
        assert!(epoch > old);
        self.now += Duration::from_secs(2);
        self.broker = BrokerCore::new(settings(), name, self.now, WALL_START + self.now);
        self.broker.recover(&self.registry.load_now(), epoch, self.now);
        self.to_agent.clear();
        self.to_framework.clear();
        self.from_agent.clear();
        self.from_framework.clear();
        self.agent_conn += 10;
        self.framework_conn += 10;
        self.failovers += 1;
        self.connect();
    }

    /// Time passes: heartbeat and tick.
    fn advance(&mut self) {
        self.now += Duration::from_millis(200);
        let now = self.now;
        // The agent retries unacknowledged updates every second.
        if self.agent_registered && now.as_millis() % 1000 == 0 {
            for status in self.agent.unacked.clone() {
                self.from_agent.push_back(v1::AgentMessage {
                    kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate { status: Some(status) })),
                });
            }
        }
        if self.agent_registered {
            let heartbeat = v1::AgentMessage { kind: Some(v1::agent_message::Kind::Heartbeat(Default::default())) };
            let out = self.broker.agent_message(self.agent_conn, &heartbeat, now);
            self.absorb(out);
        }
        let out = self.broker.tick(now);
        self.absorb(out);
    }

    /// Runs for `rounds` rounds of time, failing the leader over right
    /// after delivery number `fail_at`.
    fn run(&mut self, rounds: usize, fail_at: Option<usize>) {
        for _ in 0..rounds {
            while self.deliver_one() {
                if fail_at == Some(self.deliveries) && self.failovers == 0 {
                    self.fail_over();
                }
            }
            self.advance();
        }
    }

    fn check_settled(&self, label: &str) {
        // Exactly one task runs on the agent, and nothing is unacknowledged.
        assert_eq!(self.agent.tasks.len(), 1, "{label}: the agent runs {:?}", self.agent.tasks.keys());
        assert!(self.agent.unacked.is_empty(), "{label}: unacknowledged {:?}", self.agent.unacked);
        let task = self.agent.tasks.keys().next().unwrap().clone();
        // The framework believes exactly that task runs.
        let running: Vec<_> = self.framework.tasks.iter().filter(|(_, s)| !s.is_terminal()).collect();
        assert_eq!(running, vec![(&task, &TaskState::Running)], "{label}: the framework believes {:?}", self.framework.tasks);
        // The broker knows it once, running on that agent, and nothing else.
        let state = self.broker.state(self.now);
        assert!(!state.broker.recovering, "{label}: still recovering");
        let tasks: Vec<_> = state.tasks.iter().map(|t| (t.id.as_str(), t.state.as_str(), t.agent_id.as_str())).collect();
        assert_eq!(tasks, vec![(task.as_str(), "TASK_RUNNING", self.agent.id.as_str())], "{label}");
        assert_eq!(state.totals.used.cpus, 1.0, "{label}: used resources");
        // The registry holds the agent and the framework.
        let records = self.registry.load_now();
        assert!(records.iter().any(|r| r.collection == "agents" && r.key == self.agent.id), "{label}: {records:?}");
        assert!(records.iter().any(|r| r.collection == "frameworks" && r.key == self.framework.id), "{label}: {records:?}");
    }
}

#[test]
fn without_a_failover_the_launch_settles() {
    let mut world = World::new();
    world.run(20, None);
    world.check_settled("no failover");
    assert_eq!(world.framework.launches, 1);
}

#[test]
fn a_leader_change_after_any_single_delivery_loses_and_duplicates_nothing() {
    // How many deliveries a failure-free launch takes (and some after).
    let mut probe = World::new();
    probe.run(20, None);
    let total = probe.deliveries;
    assert!(total >= 8, "a launch should take several deliveries, took {total}");
    for fail_at in 1..=total {
        let mut world = World::new();
        world.run(60, Some(fail_at));
        assert_eq!(world.failovers, 1, "step {fail_at}: the failover happened");
        let label = format!("failover after delivery {fail_at} of {total}");
        world.check_settled(&label);
        assert!(world.broker.epoch() == 2, "{label}");
        assert!(world.framework.launches <= 2, "{label}: launched {} times", world.framework.launches);
        // Offers resumed under the new leader: the core is making them.
        assert!(world.broker.counters().offers_made > 0, "{label}: no offers from the new leader");
    }
}

#[test]
fn a_new_leader_makes_no_offers_until_agents_are_back_or_the_recovery_timeout_passes() {
    let registry = MemoryRegistry::new();
    // A first term admits two agents and a framework.
    let mut first = BrokerCore::new(settings(), "b1", Duration::ZERO, WALL_START);
    first.recover(&[], 1, Duration::ZERO);
    let register = |id: &str| v1::agent_message::Register {
        agent: Some(v1::AgentInfo {
            id: id.into(),
            hostname: format!("{id}.test"),
            resources: resources_to_proto(&ResourceSet::parse(AGENT_RESOURCES).unwrap()),
            ..Default::default()
        }),
        tasks: Vec::new(),
        ..Default::default()
    };
    let mut writes = Vec::new();
    for (conn, id) in [(1, "a1"), (2, "a2")] {
        writes.extend(first.agent_register(conn, &register(id), Duration::ZERO));
    }
    let fw = FakeFramework::default();
    writes.extend(first.framework_call(3, &fw.subscribe(), Duration::ZERO));
    for w in writes {
        if let Output::Registry(w) = w {
            registry.apply_now(vec![w]).unwrap();
        }
    }
    assert_eq!(registry.load_now().len(), 5, "two agents (each with its empty list of reservations) and a framework are recorded");

    // The next term: one agent comes back, the framework too.
    let t0 = Duration::from_secs(100);
    let mut next = BrokerCore::new(settings(), "b2", t0, WALL_START + t0);
    let report = next.recover(&registry.load_now(), 2, t0);
    assert_eq!((report.agents, report.frameworks, report.skipped.len()), (2, 1, 0));
    next.agent_register(11, &register("a1"), t0);
    let fw_id = registry.load_now().iter().find(|r| r.collection == "frameworks").unwrap().key.clone();
    let resubscribe = FakeFramework { id: fw_id, ..Default::default() }.subscribe();
    next.framework_call(13, &resubscribe, t0);
    let offers = |out: &[Output]| out.iter().filter(|o| matches!(o, Output::Offers(..))).count();
    for step in 1..=24 {
        let out = next.tick(t0 + Duration::from_millis(200 * step));
        assert_eq!(offers(&out), 0, "no offers while a2 has not re-registered (step {step})");
        assert!(next.recovering());
    }
    // The recovery timeout passes: offers of a1 only; a2 is unreachable.
    let out = next.tick(t0 + Duration::from_secs(5));
    assert!(!next.recovering());
    assert_eq!(offers(&out), 1);
    let state = next.state(t0 + Duration::from_secs(5));
    let a2 = state.agents.iter().find(|a| a.id == "a2").expect("a2 is known from the registry");
    assert!(!a2.reachable);

    // A second registry read by yet another leader sees the same, and a
    // damaged record is skipped and reported, not fatal.
    let mut records = registry.load_now();
    records.push(weir_ha::Record { collection: "agents".into(), key: "bad".into(), value: vec![0xff, 0xff] });
    records.push(weir_ha::Record { collection: "mystery".into(), key: "x".into(), value: vec![] });
    let mut third = BrokerCore::new(settings(), "b3", t0, WALL_START + t0);
    let report = third.recover(&records, 3, t0);
    assert_eq!(report.agents, 2);
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(report.skipped[0].contains("agents/bad"), "{:?}", report.skipped);
}

#[test]
fn weights_set_by_an_operator_survive_a_failover() {
    let registry = MemoryRegistry::new();
    let mut first = BrokerCore::new(settings(), "b1", Duration::ZERO, WALL_START);
    first.recover(&[], 1, Duration::ZERO);
    for o in first.set_weight(Role::new("analytics"), 3.0).unwrap() {
        if let Output::Registry(w) = o {
            registry.apply_now(vec![w]).unwrap();
        }
    }
    let mut next = BrokerCore::new(settings(), "b2", Duration::ZERO, WALL_START);
    next.recover(&registry.load_now(), 2, Duration::ZERO);
    assert!(next.weights().contains(&(Role::new("analytics"), 3.0)), "{:?}", next.weights());
}

#[test]
fn a_role_weighted_back_to_the_default_is_removed_everywhere() {
    let registry = MemoryRegistry::new();
    let mut first = BrokerCore::new(settings(), "b1", Duration::ZERO, WALL_START);
    first.recover(&[], 1, Duration::ZERO);
    let apply = |outputs: Vec<Output>| {
        for o in outputs {
            if let Output::Registry(w) = o {
                registry.apply_now(vec![w]).unwrap();
            }
        }
    };
    apply(first.set_weight(Role::new("analytics"), 3.0).unwrap());
    apply(first.set_weight(Role::new("batch"), 2.0).unwrap());
    apply(first.set_weight(Role::new("analytics"), 1.0).unwrap());
    assert_eq!(first.weights(), vec![(Role::new("batch"), 2.0)]);
    let mut next = BrokerCore::new(settings(), "b2", Duration::ZERO, WALL_START);
    next.recover(&registry.load_now(), 2, Duration::ZERO);
    assert_eq!(next.weights(), vec![(Role::new("batch"), 2.0)]);
}

#[test]
fn removing_roles_makes_room_under_the_role_limit() {
    let mut core = BrokerCore::new(BrokerSettings { max_roles: 2, ..settings() }, "b1", Duration::ZERO, WALL_START);
    core.recover(&[], 1, Duration::ZERO);
    core.set_weight(Role::new("a"), 2.0).unwrap();
    core.set_weight(Role::new("b"), 2.0).unwrap();
    let full = core.set_weight(Role::new("c"), 2.0).unwrap_err();
    assert!(full.contains("broker.roles.max"), "{full}");
    // The default weight for an unknown role asks for no room.
    core.set_weight(Role::new("d"), 1.0).unwrap();
    core.set_weight(Role::new("a"), 1.0).unwrap();
    core.set_weight(Role::new("c"), 2.0).unwrap();
    assert_eq!(core.weights(), vec![(Role::new("b"), 2.0), (Role::new("c"), 2.0)]);
}

/// Found by the testbed (docker/, `weir testbed scenario --ci`): the
/// leader was killed while tasks were finishing. Their agents re-registered
/// with the new leader reporting them ended, the final updates not yet
/// acknowledged; the framework re-subscribed and reconciled them before
/// those updates were resent, and heard TASK_UNKNOWN — then TASK_FINISHED:
/// two ends of one task. The new leader must leave the answer to the
/// agent's resent updates (answering FINISHED itself overtook a queued
/// RUNNING in the 25-minute seeded run).
#[test]
fn a_task_reported_ended_with_its_update_pending_reconciles_to_that_end_not_unknown() {
    let registry = MemoryRegistry::new();
    let mut first = BrokerCore::new(settings(), "b1", Duration::ZERO, WALL_START);
    first.recover(&[], 1, Duration::ZERO);
    let mut agent = FakeAgent { id: "a1".into(), tasks: BTreeMap::new(), unacked: VecDeque::new(), seen_epoch: 0, next_uuid: 0 };
    let mut writes = first.agent_register(1, &agent.register(), Duration::ZERO);
    writes.extend(first.framework_call(3, &FakeFramework::default().subscribe(), Duration::ZERO));
    for w in writes {
        if let Output::Registry(w) = w {
            registry.apply_now(vec![w]).unwrap();
        }
    }
    let fw_id = registry.load_now().iter().find(|r| r.collection == "frameworks").unwrap().key.clone();
    // Under the first leader the task ran and finished; the FINISHED update
    // was lost with that leader, unacknowledged.
    let info = v1::TaskInfo {
        task_id: "t1".into(),
        name: "t1".into(),
        agent_id: "a1".into(),
        resources: resources_to_proto(&ResourceSet::parse(TASK_RESOURCES).unwrap()),
        ..Default::default()
    };
    let finished = v1::TaskStatus {
        task_id: "t1".into(),
        state: task_state_to_proto(TaskState::Finished) as i32,
        message: "Command exited with status 0".into(),
        reason: "REASON_COMMAND_EXITED".into(),
        source: v1::task_status::Source::Agent as i32,
        agent_id: "a1".into(),
        framework_id: fw_id.clone(),
        uuid: vec![7; 16],
        exit_code: Some(0),
        ..Default::default()
    };
    agent.tasks.insert("t1".into(), (info, finished.clone()));
    agent.unacked.push_back(finished.clone());

    // The next leader: the agent re-registers and at once resends the
    // update, before the framework is back (so it reaches nobody); then the
    // framework re-subscribes and reconciles t1 before the next retry.
    let t0 = Duration::from_secs(30);
    let mut next = BrokerCore::new(settings(), "b2", t0, WALL_START + t0);
    next.recover(&registry.load_now(), 2, t0);
    next.agent_register(11, &agent.register(), t0);
    let resent = v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate { status: Some(finished.clone()) })),
    };
    next.agent_message(11, &resent, t0);
    let framework = FakeFramework { id: fw_id.clone(), ..Default::default() };
    next.framework_call(13, &framework.subscribe(), t0);
    let reconcile = v1::Call {
        framework_id: fw_id.clone(),
        kind: Some(v1::call::Kind::Reconcile(v1::call::Reconcile {
            tasks: vec![v1::call::reconcile::Task { task_id: "t1".into(), agent_id: "a1".into() }],
        })),
    };
    let heard = |out: Vec<Output>| -> Vec<TaskState> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::Framework(13, v1::Event { kind: Some(v1::event::Kind::Update(u)) }) => {
                    Some(task_state_from_proto("state", u.status.unwrap().state).unwrap())
                }
                _ => None,
            })
            .collect()
    };
    // Not TASK_UNKNOWN; and not the end either, which would overtake the
    // agent's queued updates (a RUNNING still unacknowledged would follow it).
    assert_eq!(heard(next.framework_call(13, &reconcile, t0)), Vec::<TaskState>::new(), "the update stream tells the end");
    // The next retry of the update: the same end, acknowledged.
    assert_eq!(heard(next.agent_message(11, &resent, t0)), vec![TaskState::Finished]);
    let ack = v1::Call {
        framework_id: fw_id.clone(),
        kind: Some(v1::call::Kind::Acknowledge(v1::call::Acknowledge { agent_id: "a1".into(), task_id: "t1".into(), uuid: finished.uuid.clone() })),
    };
    next.framework_call(13, &ack, t0);
    assert!(next.ended_unacked.is_empty(), "the framework acknowledged the end: nothing is pending");
}
