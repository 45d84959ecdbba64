//! A guarantee reclaimed on a full cluster (issue 19): the real broker core
//! (allocator with quotas, revocation) driving simulated agents that start
//! a task one tick after its launch and end it `KILL_TAKES` after a kill.
//! `analytics` fills the whole cluster with 1-cpu tasks; then an operator
//! guarantees `prod` half of the cluster's cpus and prod's framework
//! arrives wanting more than that. The report says when prod reached its
//! guarantee and what analytics kept; nothing ends but by revocation.
//!
//! No network and no agent cores: outputs are carried out at once, in
//! order, at the tick they were made.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use weir_broker::core::roles::RolePolicy;
use weir_broker::{BrokerCore, BrokerSettings, Output};
use weir_model::{Quota, ResourceSet, Resources, Role, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto, task_state_to_proto};
use weir_proto::v1;

const TICK: Duration = Duration::from_millis(50);
const AGENT_SPEC: &str = "cpus:8;mem:32768";
const AGENT_CONN_BASE: u64 = 1_000_000;
/// How long an agent takes to end a task it is told to kill (TERM, exit).
const KILL_TAKES: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct GuaranteeConfig {
    pub agents: usize,
    pub grace: Duration,
    /// When prod's guarantee is set and its framework arrives.
    pub prod_arrives: Duration,
    pub duration: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct GuaranteeReport {
    pub cluster_cpus: u64,
    /// Running tasks (1 cpu each) per framework at the end.
    pub analytics_running: u64,
    pub prod_running: u64,
    /// When prod first ran its guaranteed half, after it arrived.
    pub prod_reached_guarantee_after: Option<Duration>,
    /// Tasks revoked (named in notices) and ended with the revoked reason.
    pub revoked: u64,
    pub ended_revoked: u64,
    /// Tasks that ended any other way (none should).
    pub ended_otherwise: u64,
}

struct Sim {
    core: BrokerCore,
    /// (when, agent conn, message) an agent sends later.
    pending: Vec<(Duration, u64, v1::AgentMessage)>,
    running: BTreeMap<u64, u64>,
    ids: BTreeMap<u64, String>,
    report: GuaranteeReport,
    next_task: u64,
    next_uuid: u64,
}

fn update(framework: &str, task: &str, state: TaskState, uuid: u64) -> v1::AgentMessage {
    v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate {
            status: Some(v1::TaskStatus {
                task_id: task.to_owned(),
                state: task_state_to_proto(state) as i32,
                framework_id: framework.to_owned(),
                uuid: uuid.to_be_bytes().repeat(2),
                ..Default::default()
            }),
        })),
    }
}

impl Sim {
    fn subscribe(&mut self, conn: u64, name: &str, role: &str) {
        let call = v1::Call {
            framework_id: String::new(),
            kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
                framework: Some(v1::FrameworkInfo { name: name.into(), roles: vec![role.into()], ..Default::default() }),
                data: None,
            })),
        };
        let id = self
            .core
            .framework_call(conn, &call, Duration::ZERO)
            .into_iter()
            .find_map(|o| match o {
                Output::Framework(_, v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) }) => Some(s.framework_id),
                _ => None,
            })
            .expect("framework subscribed");
        self.ids.insert(conn, id);
    }

    /// Carries out outputs: frameworks fill every offer with 1-cpu tasks;
    /// agents start launched tasks next tick and end killed ones later.
    fn carry_out(&mut self, mut outputs: VecDeque<Output>, now: Duration) {
        while let Some(output) = outputs.pop_front() {
            match output {
                Output::Offers(conn, batch) => {
                    let offers = v1::event::Offers { offers: batch.to_proto() };
                    let framework = self.ids[&conn].clone();
                    for offer in offers.offers {
                        let free = resources_from_proto("offer", &offer.resources).expect("offers parse").unreserved;
                        let fits = (free.cpus.as_f64().floor() as u64).min((free.mem.as_f64() / 2048.0).floor() as u64);
                        let tasks: Vec<v1::TaskInfo> = (0..fits)
                            .map(|_| {
                                self.next_task += 1;
                                let id = format!("t{}", self.next_task);
                                v1::TaskInfo {
                                    task_id: id.clone(),
                                    name: id,
                                    agent_id: offer.agent_id.clone(),
                                    resources: resources_to_proto(&ResourceSet::parse("cpus:1;mem:2048").expect("spec parses")),
                                    command: Some(v1::CommandInfo { shell: true, value: "sleep 1000".into(), ..Default::default() }),
                                    ..Default::default()
                                }
                            })
                            .collect();
                        let kind = if tasks.is_empty() {
                            v1::call::Kind::Decline(v1::call::Decline {
                                offer_ids: vec![offer.id.clone()],
                                filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
                            })
                        } else {
                            v1::call::Kind::Accept(v1::call::Accept {
                                offer_ids: vec![offer.id.clone()],
                                operations: vec![v1::Operation {
                                    kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })),
                                    ..Default::default()
                                }],
                                filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
                            })
                        };
                        let call = v1::Call { framework_id: framework.clone(), kind: Some(kind) };
                        outputs.extend(self.core.framework_call(conn, &call, now));
                    }
                }
                Output::Framework(_, v1::Event { kind: Some(v1::event::Kind::Revocation(r)) }) => {
                    // Like a framework that cannot checkpoint: it waits.
                    self.report.revoked += r.tasks.len() as u64;
                }
                Output::Framework(conn, v1::Event { kind: Some(v1::event::Kind::Update(u)) }) => {
                    let Some(status) = u.status else { continue };
                    let state = task_state_from_proto("state", status.state).expect("states parse");
                    let running = self.running.entry(conn).or_default();
                    match state {
                        TaskState::Running => *running += 1,
                        s if s.is_terminal() => {
                            *running -= 1;
                            if status.reason == weir_model::task::REVOKED_REASON {
                                self.report.ended_revoked += 1;
                            } else {
                                self.report.ended_otherwise += 1;
                            }
                        }
                        _ => {}
                    }
                }
                Output::Agent(conn, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::RunTask(run)) }) => {
                    let task = run.task.expect("run task has its task");
                    self.next_uuid += 1;
                    self.pending.push((now + TICK, conn, update(&run.framework_id, &task.task_id, TaskState::Running, self.next_uuid)));
                }
                Output::Agent(conn, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::KillTask(kill)) }) => {
                    self.next_uuid += 1;
                    self.pending.push((now + KILL_TAKES, conn, update(&kill.framework_id, &kill.task_id, TaskState::Killed, self.next_uuid)));
                }
                _ => {}
            }
        }
    }
}

/// One run; see the module comment.
pub fn run(config: &GuaranteeConfig) -> GuaranteeReport {
    let settings = BrokerSettings { revocation_grace: config.grace, ..BrokerSettings::default() };
    let mut sim = Sim {
        core: BrokerCore::new(settings, "g", Duration::ZERO, crate::UNIX_ORIGIN),
        pending: Vec::new(),
        running: BTreeMap::new(),
        ids: BTreeMap::new(),
        report: GuaranteeReport { cluster_cpus: 8 * config.agents as u64, ..Default::default() },
        next_task: 0,
        next_uuid: 0,
    };
    sim.core.set_max_offers_per_cycle(usize::MAX);
    let resources = resources_to_proto(&ResourceSet::parse(AGENT_SPEC).expect("agent spec parses"));
    for a in 0..config.agents {
        let register = v1::agent_message::Register {
            agent: Some(v1::AgentInfo { hostname: format!("host{a}"), resources: resources.clone(), ..Default::default() }),
            ..Default::default()
        };
        sim.core.agent_register(AGENT_CONN_BASE + a as u64, &register, Duration::ZERO);
    }
    let (analytics, prod) = (1, 2);
    sim.subscribe(analytics, "analytics", "analytics");
    let half = Resources { cpus: weir_model::Milli::from_units(4 * config.agents as u64), ..Resources::default() };
    let mut now = Duration::ZERO;
    while now < config.duration {
        now += TICK;
        if now == config.prod_arrives {
            let quota = Quota { guarantee: half.clone(), ..Quota::default() };
            let policy = RolePolicy { quota, ..RolePolicy::default_for(Role::new("prod")) };
            sim.core.set_role_policies(vec![policy], false).expect("half the cluster fits");
            sim.subscribe(prod, "prod", "prod");
        }
        let heartbeat = v1::AgentMessage { kind: Some(v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat::default())) };
        let mut outputs: VecDeque<Output> = VecDeque::new();
        if now.as_millis().is_multiple_of(1000) {
            for a in 0..config.agents {
                outputs.extend(sim.core.agent_message(AGENT_CONN_BASE + a as u64, &heartbeat, now));
            }
        }
        let due: Vec<(Duration, u64, v1::AgentMessage)> = {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut sim.pending).into_iter().partition(|(at, _, _)| *at <= now);
            sim.pending = later;
            due
        };
        for (_, conn, msg) in due {
            outputs.extend(sim.core.agent_message(conn, &msg, now));
        }
        outputs.extend(sim.core.tick(now));
        sim.carry_out(outputs, now);
        let prod_running = sim.running.get(&prod).copied().unwrap_or(0);
        if sim.report.prod_reached_guarantee_after.is_none() && prod_running >= 4 * config.agents as u64 {
            sim.report.prod_reached_guarantee_after = Some(now.saturating_sub(config.prod_arrives));
        }
        if now.as_millis().is_multiple_of(1000) {
            if let Err(broken) = sim.core.check_invariants() {
                panic!("broker invariants broken at {now:?}: {broken}");
            }
        }
    }
    sim.report.analytics_running = sim.running.get(&analytics).copied().unwrap_or(0);
    sim.report.prod_running = sim.running.get(&prod).copied().unwrap_or(0);
    sim.report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prod_reaches_its_half_within_the_grace_period_and_a_second_and_analytics_keeps_the_rest() {
        let config = GuaranteeConfig {
            agents: 50,
            grace: Duration::from_secs(10),
            prod_arrives: Duration::from_secs(5),
            duration: Duration::from_secs(30),
        };
        let report = run(&config);
        eprintln!("{report:?}");
        let took = report.prod_reached_guarantee_after.unwrap_or_else(|| panic!("prod never reached its guarantee: {report:?}"));
        assert!(took <= config.grace + Duration::from_secs(1), "{took:?}: {report:?}");
        assert!(took >= config.grace, "nothing is killed before the grace period ends: {report:?}");
        assert_eq!(report.prod_running, report.cluster_cpus / 2, "{report:?}");
        assert_eq!(report.analytics_running, report.cluster_cpus / 2, "analytics keeps the rest: {report:?}");
        assert_eq!(report.revoked, report.cluster_cpus / 2);
        assert_eq!((report.ended_revoked, report.ended_otherwise), (report.cluster_cpus / 2, 0), "{report:?}");
    }
}
