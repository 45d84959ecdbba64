//! The data-locality benchmark: the real broker core (allocator, offers,
//! books) driving a large simulated cluster whose files are spread over
//! the agents in HDFS-like blocks (three replicas each), with frameworks
//! that run a stream of jobs whose tasks each read one block. No network,
//! no agent cores: agents finish tasks when their time is up, and the
//! frameworks answer every offer at once. Run the same seed twice, with
//! the frameworks stating their data (DataLocality, delay scheduling in
//! the allocator) and without (placement with no locality), and compare:
//! the fraction of tasks launched on an agent holding their block, how
//! long tasks waited for a launch, and each framework's dominant share.
//!
//!   cargo run --release -p weir-sim --bin weir-locality

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use weir_broker::{BrokerCore, BrokerSettings, Output};
use weir_model::{ResourceSet, TaskState};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_to_proto};
use weir_proto::v1;

use crate::rng::SimRng;

const TICK: Duration = Duration::from_millis(100);
const BLOCK_BYTES: u64 = 128 << 20;
const AGENT_SPEC: &str = "cpus:8;mem:32768";
const TASK_CPUS: f64 = 1.0;
const TASK_MEM: f64 = 2048.0;
const AGENT_CONN_BASE: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct LocalityConfig {
    pub seed: u64,
    pub agents: usize,
    pub frameworks: usize,
    /// Blocks in the file system, each on three distinct agents.
    pub blocks: usize,
    /// Simulated time the jobs arrive for; tasks launched in the first
    /// `warmup` are not counted.
    pub duration: Duration,
    pub warmup: Duration,
    /// Frameworks state their data and the allocator delays for it.
    pub locality: bool,
    /// A job (a burst of tasks) arrives at each framework every this
    /// often on average...
    pub job_interval: Duration,
    /// ...with this many tasks on average, each running 5 to 25 s.
    pub job_tasks: usize,
    /// How long a framework's task waits for an agent with its block
    /// before it runs on any (as Spark's `spark.locality.wait`).
    pub task_wait: Duration,
}

impl LocalityConfig {
    /// 1,000 agents of 8 slots, 4 frameworks, jobs keeping about 70 % of
    /// the slots busy.
    pub fn standard(seed: u64, locality: bool) -> LocalityConfig {
        LocalityConfig {
            seed,
            agents: 1000,
            frameworks: 4,
            blocks: 50_000,
            duration: Duration::from_secs(300),
            warmup: Duration::from_secs(60),
            locality,
            job_interval: Duration::from_millis(1500),
            job_tasks: 130,
            task_wait: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct LocalityReport {
    pub launched: u64,
    pub node_local: u64,
    /// Time from a task's arrival to its launch, sorted.
    pub delays: Vec<Duration>,
    /// Each framework's dominant share, averaged over one-second samples.
    pub mean_shares: Vec<f64>,
    /// Busy slots over all slots, averaged likewise.
    pub utilisation: f64,
    /// Offers answered, and how many of them launched nothing.
    pub offers: u64,
    pub offers_declined: u64,
}

impl LocalityReport {
    pub fn local_fraction(&self) -> f64 {
        self.node_local as f64 / self.launched.max(1) as f64
    }

    pub fn delay_quantile(&self, q: f64) -> Duration {
        if self.delays.is_empty() {
            return Duration::ZERO;
        }
        self.delays[((self.delays.len() - 1) as f64 * q).round() as usize]
    }
}

#[derive(Debug, Clone)]
struct PendingTask {
    id: u64,
    block: usize,
    arrived: Duration,
    runs_for: Duration,
}

struct Framework {
    conn: u64,
    id: String,
    pending: VecDeque<PendingTask>,
    next_job: Duration,
    /// Bytes per host last stated to the broker.
    stated: BTreeMap<String, u64>,
    running: usize,
    /// It told the broker it wants no offers (nothing waiting), as a
    /// Mesos framework with nothing to run does.
    suppressed: bool,
}

struct Running {
    agent_conn: u64,
    framework: usize,
    task: String,
    ends: Duration,
}

/// One run; see the module comment.
pub fn run(config: &LocalityConfig) -> LocalityReport {
    let mut rng = SimRng::new(config.seed);
    let settings = BrokerSettings {
        locality_delay: if config.locality { weir_allocator::DEFAULT_LOCALITY_DELAY } else { Duration::ZERO },
        ..BrokerSettings::default()
    };
    let mut core = BrokerCore::new(settings, "loc", Duration::ZERO, crate::UNIX_ORIGIN);
    core.set_max_offers_per_cycle(usize::MAX);
    let resources = resources_to_proto(&ResourceSet::parse(AGENT_SPEC).expect("agent spec parses"));
    let mut hosts = Vec::with_capacity(config.agents);
    for a in 0..config.agents {
        let register = v1::agent_message::Register {
            agent: Some(v1::AgentInfo {
                id: String::new(),
                hostname: format!("host{a}"),
                resources: resources.clone(),
                attributes: vec![],
                http_address: String::new(),
            }),
            ..Default::default()
        };
        core.agent_register(AGENT_CONN_BASE + a as u64, &register, Duration::ZERO);
        hosts.push(format!("host{a}"));
    }
    // Three distinct agents per block.
    let replicas: Vec<[usize; 3]> = (0..config.blocks)
        .map(|_| {
            let a = rng.below(config.agents as u64) as usize;
            let mut b = rng.below(config.agents as u64) as usize;
            while b == a {
                b = rng.below(config.agents as u64) as usize;
            }
            let mut c = rng.below(config.agents as u64) as usize;
            while c == a || c == b {
                c = rng.below(config.agents as u64) as usize;
            }
            [a, b, c]
        })
        .collect();
    let host_index: HashMap<String, usize> = hosts.iter().enumerate().map(|(i, h)| (h.clone(), i)).collect();

    let mut frameworks: Vec<Framework> = Vec::new();
    for f in 0..config.frameworks {
        let conn = 1 + f as u64;
        let call = v1::Call {
            framework_id: String::new(),
            kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
                framework: Some(v1::FrameworkInfo { name: format!("jobs{f}"), ..Default::default() }),
                data: None,
            })),
        };
        let id = core
            .framework_call(conn, &call, Duration::ZERO)
            .into_iter()
            .find_map(|o| match o {
                Output::Framework(_, v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) }) => Some(s.framework_id),
                _ => None,
            })
            .expect("framework subscribed");
        frameworks.push(Framework {
            conn,
            id,
            pending: VecDeque::new(),
            next_job: rng.millis(0, config.job_interval.as_millis() as u64),
            stated: BTreeMap::new(),
            running: 0,
            suppressed: false,
        });
    }

    let mut report = LocalityReport { mean_shares: vec![0.0; config.frameworks], ..Default::default() };
    let mut samples = 0u64;
    let mut busy_sum = 0f64;
    let mut running: Vec<Running> = Vec::new();
    let mut next_task = 0u64;
    let mut launched_at: HashMap<String, (usize, u64)> = HashMap::new();
    let slots = (config.agents * 8) as f64;
    let end = config.duration;
    let mut now = Duration::ZERO;
    let mut outputs: VecDeque<Output> = VecDeque::new();
    while now < end {
        now += TICK;
        // Jobs arrive.
        for fw in frameworks.iter_mut() {
            while fw.next_job <= now {
                let tasks = 1 + rng.below(2 * config.job_tasks as u64) as usize;
                for _ in 0..tasks {
                    next_task += 1;
                    fw.pending.push_back(PendingTask {
                        id: next_task,
                        block: rng.below(config.blocks as u64) as usize,
                        arrived: fw.next_job,
                        runs_for: rng.millis(5_000, 25_000),
                    });
                }
                fw.next_job += rng.millis(0, 2 * config.job_interval.as_millis() as u64);
            }
        }
        // Agents heartbeat every 5 s, spread over the ticks.
        let heartbeat = v1::AgentMessage { kind: Some(v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat::default())) };
        let tick_no = (now.as_millis() / TICK.as_millis()) as usize;
        for a in (tick_no % 50..config.agents).step_by(50) {
            outputs.extend(core.agent_message(AGENT_CONN_BASE + a as u64, &heartbeat, now));
        }
        // Tasks end.
        let mut i = 0;
        while i < running.len() {
            if running[i].ends <= now {
                let done = running.swap_remove(i);
                frameworks[done.framework].running -= 1;
                let msg = v1::AgentMessage {
                    kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate {
                        status: Some(v1::TaskStatus {
                            task_id: done.task,
                            state: task_state_to_proto(TaskState::Finished) as i32,
                            framework_id: frameworks[done.framework].id.clone(),
                            uuid: next_task.to_be_bytes().repeat(2),
                            exit_code: Some(0),
                            ..Default::default()
                        }),
                    })),
                };
                outputs.extend(core.agent_message(done.agent_conn, &msg, now));
            } else {
                i += 1;
            }
        }
        // Frameworks with nothing waiting suppress offers; with work again
        // they revive (stating their data, with locality).
        for fw in frameworks.iter_mut() {
            let kind = match (fw.pending.is_empty(), fw.suppressed) {
                (true, false) => v1::call::Kind::Suppress(v1::call::Suppress { roles: vec![] }),
                (false, true) => v1::call::Kind::Revive(v1::call::Revive { roles: vec![], data: None }),
                _ => continue,
            };
            fw.suppressed = !fw.suppressed;
            let call = v1::Call { framework_id: fw.id.clone(), kind: Some(kind) };
            outputs.extend(core.framework_call(fw.conn, &call, now));
        }
        // Frameworks state their data: the hosts holding the blocks their
        // waiting tasks read.
        if config.locality && (now.as_millis() % 500) == 0 {
            for fw in frameworks.iter_mut().filter(|fw| !fw.suppressed) {
                let mut host_bytes: BTreeMap<String, u64> = BTreeMap::new();
                for t in &fw.pending {
                    for &a in &replicas[t.block] {
                        *host_bytes.entry(hosts[a].clone()).or_insert(0) += BLOCK_BYTES;
                    }
                }
                if host_bytes != fw.stated {
                    let call = v1::Call {
                        framework_id: fw.id.clone(),
                        kind: Some(v1::call::Kind::Revive(v1::call::Revive {
                            roles: vec![],
                            data: Some(v1::DataLocality { host_bytes: host_bytes.clone().into_iter().collect(), ..Default::default() }),
                        })),
                    };
                    outputs.extend(core.framework_call(fw.conn, &call, now));
                    fw.stated = host_bytes;
                }
            }
        }
        outputs.extend(core.tick(now));
        // Carry out what the core said, answering offers at once.
        while let Some(output) = outputs.pop_front() {
            match output {
                Output::Offers(conn, batch) => {
                    let offers = v1::event::Offers { offers: batch.to_proto() };
                    let f = (conn - 1) as usize;
                    for offer in offers.offers {
                        report.offers += 1;
                        let Some(&agent) = host_index.get(&offer.hostname) else { continue };
                        let free = resources_from_proto("offer", &offer.resources).expect("broker offers parse").unreserved;
                        let fits = ((free.cpus.as_f64() / TASK_CPUS).floor()).min((free.mem.as_f64() / TASK_MEM).floor()) as usize;
                        let chosen = choose(&mut frameworks[f].pending, agent, fits, &replicas, now, config);
                        if chosen.is_empty() {
                            report.offers_declined += 1;
                            let decline = v1::Call {
                                framework_id: frameworks[f].id.clone(),
                                kind: Some(v1::call::Kind::Decline(v1::call::Decline {
                                    offer_ids: vec![offer.id.clone()],
                                    filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
                                })),
                            };
                            outputs.extend(core.framework_call(conn, &decline, now));
                            continue;
                        }
                        let mut tasks = Vec::new();
                        for t in chosen {
                            let local = replicas[t.block].contains(&agent);
                            if now >= config.warmup {
                                report.launched += 1;
                                report.node_local += u64::from(local);
                                report.delays.push(now.saturating_sub(t.arrived));
                            }
                            let task_id = format!("t{}", t.id);
                            launched_at.insert(task_id.clone(), (f, t.runs_for.as_millis() as u64));
                            tasks.push(v1::TaskInfo {
                                task_id: task_id.clone(),
                                name: task_id,
                                agent_id: offer.agent_id.clone(),
                                resources: resources_to_proto(
                                    &ResourceSet::parse(&format!("cpus:{TASK_CPUS};mem:{TASK_MEM}")).expect("task spec parses"),
                                ),
                                command: Some(v1::CommandInfo { shell: true, value: "true".into(), ..Default::default() }),
                                ..Default::default()
                            });
                        }
                        let accept = v1::Call {
                            framework_id: frameworks[f].id.clone(),
                            kind: Some(v1::call::Kind::Accept(v1::call::Accept {
                                offer_ids: vec![offer.id.clone()],
                                operations: vec![v1::Operation {
                                    kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })),
                                    ..Default::default()
                                }],
                                filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
                            })),
                        };
                        outputs.extend(core.framework_call(conn, &accept, now));
                    }
                }
                Output::Agent(conn, v1::BrokerMessage { kind: Some(v1::broker_message::Kind::RunTask(run)) }) => {
                    let Some(task) = run.task else { continue };
                    let Some(&(f, millis)) = launched_at.get(&task.task_id) else { continue };
                    frameworks[f].running += 1;
                    running.push(Running { agent_conn: conn, framework: f, task: task.task_id, ends: now + Duration::from_millis(millis) });
                }
                Output::Framework(conn, v1::Event { kind: Some(v1::event::Kind::Error(e)) }) => {
                    panic!("the broker refused a call of framework {conn}: {}", e.message);
                }
                _ => {}
            }
        }
        if now >= config.warmup && now.as_millis() % 1000 == 0 {
            samples += 1;
            let busy: usize = frameworks.iter().map(|f| f.running).sum();
            busy_sum += busy as f64 / slots;
            for (f, fw) in frameworks.iter().enumerate() {
                // One task is 1 of 8 cpus and 2 of 32 GiB on its agent: cpus dominate.
                report.mean_shares[f] += fw.running as f64 * TASK_CPUS / (slots * TASK_CPUS);
            }
        }
    }
    for share in &mut report.mean_shares {
        *share /= samples.max(1) as f64;
    }
    report.utilisation = busy_sum / samples.max(1) as f64;
    report.delays.sort();
    report
}

/// The tasks a framework launches on an offer of `fits` slots on `agent`:
/// those whose block is there first (oldest first), then, with no
/// locality, any others; with locality, only those that have waited
/// `task_wait` already.
fn choose(
    pending: &mut VecDeque<PendingTask>,
    agent: usize,
    fits: usize,
    replicas: &[[usize; 3]],
    now: Duration,
    config: &LocalityConfig,
) -> Vec<PendingTask> {
    let mut chosen = Vec::new();
    let mut i = 0;
    while i < pending.len() && chosen.len() < fits {
        if replicas[pending[i].block].contains(&agent) {
            chosen.push(pending.remove(i).expect("index in range"));
        } else {
            i += 1;
        }
    }
    // Oldest first: once one has not waited long enough, nobody behind has.
    while chosen.len() < fits {
        match pending.front() {
            Some(t) if !config.locality || now.saturating_sub(t.arrived) >= config.task_wait => {
                chosen.push(pending.pop_front().expect("front exists"));
            }
            _ => break,
        }
    }
    chosen
}
