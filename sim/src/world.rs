//! The simulated cluster: one event queue ordered by (time, sequence), the
//! real cores, and everything around them that a real cluster has —
//! streams, processes, a registry, crashes — reduced to data.
//!
//! - Streams: each agent or framework stream to the broker is two ordered
//!   queues (like the gRPC streams they stand for: ordered, no loss of a
//!   single message). Each message gets a random delay but never overtakes
//!   the one before it. A break loses whatever is in flight both ways, and
//!   both ends learn of it.
//! - The broker: the real `BrokerCore`. Its outputs are carried out in
//!   order; registry writes land in an in-memory registry at once (the
//!   shell holds what follows a write until it has landed). A failover
//!   may strike in the middle of carrying out one call's outputs; a new
//!   core with the next epoch recovers from the registry and every stream
//!   to the old one breaks.
//! - Agents: the real `AgentCore`. After each input the checkpoint it
//!   would write is kept as its durable state; then its effects run. A
//!   crash may fall between the two (the effects are lost). A restarted
//!   agent is a new core recovered from that checkpoint, re-attached to
//!   the processes that kept running.
//! - The launcher: a spawn becomes a process that starts after a delay and
//!   exits when its plan says, or when signalled. Processes outlive agent
//!   restarts (their supervisors do); only the agent incarnation that
//!   started or re-attached a process hears from it.
//! - Frameworks: anything implementing [`SimFramework`].
//!
//! Invariants are checked after every event (the broker's books, no task
//! running twice, the update history's order) and once more after the
//! quiet phase (nothing lost, everything delivered, no process unknown).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use weir_agent::core::{AgentCore, CoreSettings, Effect, Input, Signal};
use weir_broker::{BrokerCore, BrokerSettings, Output};
use weir_ha::memory::MemoryRegistry;
use weir_model::{AgentId, FrameworkId, ResourceSet, TaskId, TaskState};
use weir_proto::convert::{resources_to_proto, task_state_from_proto};
use weir_proto::v1;

use crate::framework::{FrameworkCtx, ScriptedFramework, SimFramework, TaskPlan, FRAMEWORK_TICK};
use crate::history::{Delivery, History};
use crate::rng::SimRng;
use crate::{Outcome, SimConfig, Stats, Violation, ViolationKind};

/// Wall-clock time at the start of every run (2023-11-14): brokers and
/// agents turn their monotonic time into epoch timestamps from it.
pub const UNIX_ORIGIN: Duration = Duration::from_secs(1_700_000_000);
const BROKER_TICK: Duration = Duration::from_millis(100);
const AGENT_TICK: Duration = Duration::from_millis(250);
const AGENT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Longest time an agent stays cut off in a partition; longer than the
/// re-register timeout so removal happens too.
const LONG_PARTITION_MS: u64 = 40_000;

/// The broker's timeouts, shortened so a minute of simulated time sees
/// every one of them fire.
pub fn broker_settings() -> BrokerSettings {
    BrokerSettings {
        allocation_interval: Duration::from_millis(100),
        offer_timeout: Duration::from_secs(5),
        agent_unreachable_timeout: Duration::from_secs(6),
        agent_reregister_timeout: Duration::from_secs(30),
        agent_heartbeat_interval: AGENT_HEARTBEAT,
        framework_heartbeat_interval: Duration::from_secs(15),
        refuse_default: Duration::from_secs(1),
        weights: Vec::new(),
        recovery_timeout: Duration::from_secs(5),
        max_failover_timeout: Duration::from_secs(7 * 24 * 3600),
        max_frameworks: 1000,
        max_roles: 1000,
        drain_grace_default: Duration::from_secs(10),
        locality_delay: weir_allocator::DEFAULT_LOCALITY_DELAY,
        allocator_policy: "drf".to_owned(),
        revocation_grace: Duration::from_secs(10),
        revocable_grace: Duration::ZERO,
        decline_backoff_after: 8,
        decline_backoff_max: Duration::from_secs(60),
        fair_share_bound: true,
        acls: weir_broker::acl::Acls::open(),
    }
}

fn agent_settings() -> CoreSettings {
    CoreSettings { kill_grace_period: Duration::from_secs(2), status_update_retry_interval: Duration::from_secs(1) }
}

type StreamId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Agent(usize),
    Framework(usize),
}

enum Down {
    Agent(v1::BrokerMessage),
    Framework(v1::Event),
    /// The broker closed the stream after what came before.
    Close,
}

enum Up {
    Agent(v1::AgentMessage),
    Framework(v1::Call),
}

struct Stream {
    peer: Peer,
    epoch: u64,
    /// The broker has seen the first message (REGISTER or SUBSCRIBE).
    opened: bool,
    down: VecDeque<Down>,
    up: VecDeque<Up>,
    last_down: Duration,
    last_up: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    BrokerTick,
    DeliverDown(StreamId),
    DeliverUp(StreamId),
    AgentTick(usize, u64),
    AgentHeartbeat(usize, u64),
    AgentAttach(usize, u64),
    AgentRestart(usize, u64),
    ProcessStarted(u32),
    ProcessExit { pid: u32, code: Option<i32>, signal: Option<i32> },
    FrameworkTick(usize),
    FrameworkSubscribe(usize, u64),
    FrameworkJoin,
    Fault,
    Quiesce,
}

struct SimAgent {
    info: v1::AgentInfo,
    core: Option<AgentCore>,
    /// Bumped on every restart: timers and processes of an older
    /// incarnation no longer reach this one.
    incarnation: u64,
    /// The last checkpoint written: what a restart recovers.
    durable: Option<v1::AgentCheckpoint>,
    stream: Option<StreamId>,
    seen_epoch: u64,
    /// Crash right after the next input's checkpoint, before its effects.
    crash_before_effects: bool,
    /// Cut off from the broker until then.
    partitioned_until: Duration,
}

struct FrameworkSlot {
    framework: Box<dyn SimFramework>,
    id: String,
    stream: Option<StreamId>,
    subscribed: bool,
    /// Bumped on every disconnection, so a stale re-subscribe is dropped.
    generation: u64,
    /// Abandoned: never comes back; its tasks must end once its failover
    /// timeout has passed.
    abandoned: bool,
    quiesced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcState {
    Starting,
    Running,
    Exited,
}

struct Process {
    agent: usize,
    framework: FrameworkId,
    task: TaskId,
    /// The agent incarnation that hears from it.
    watcher: u64,
    state: ProcState,
    plan: TaskPlan,
    exit: Option<(Option<i32>, Option<i32>)>,
}

struct Broker {
    core: BrokerCore,
    /// The next call's outputs are carried out only in part, then it dies.
    dies_mid_output: bool,
}

pub struct World {
    config: SimConfig,
    rng: SimRng,
    now: Duration,
    seq: u64,
    queue: BTreeMap<(Duration, u64), Ev>,
    broker: Broker,
    registry: MemoryRegistry,
    streams: BTreeMap<StreamId, Stream>,
    next_stream: StreamId,
    agents: Vec<SimAgent>,
    frameworks: Vec<FrameworkSlot>,
    processes: BTreeMap<u32, Process>,
    next_pid: u32,
    history: History,
    violations: Vec<Violation>,
    quiet: bool,
    trace_hash: u64,
    stats: Stats,
}

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
}

impl World {
    pub fn new(config: SimConfig) -> World {
        let mut rng = SimRng::new(config.seed);
        let registry = MemoryRegistry::new();
        let mut core = BrokerCore::new(broker_settings(), "b1", Duration::ZERO, UNIX_ORIGIN);
        core.recover(&registry.load_now(), 1, Duration::ZERO);
        let agents = (0..config.agents)
            .map(|i| {
                let cpus = 2 + rng.below(7);
                let mem = 1024 * (1 + rng.below(8));
                // Ports too: the YARN participant gives each node manager one.
                let disk = if config.agent_disk_mib > 0 { format!(";disk:{}", config.agent_disk_mib) } else { String::new() };
                let resources = ResourceSet::parse(&format!("cpus:{cpus};mem:{mem};ports:[31000-31009]{disk}")).unwrap_or_default();
                SimAgent {
                    info: v1::AgentInfo {
                        id: String::new(),
                        hostname: format!("host{i}"),
                        resources: resources_to_proto(&resources),
                        attributes: Vec::new(),
                        http_address: format!("10.0.0.{i}:5051"),
                    },
                    core: None,
                    incarnation: 0,
                    durable: None,
                    stream: None,
                    seen_epoch: 0,
                    crash_before_effects: false,
                    partitioned_until: Duration::ZERO,
                }
            })
            .collect();
        let mut world = World {
            rng,
            now: Duration::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            broker: Broker { core, dies_mid_output: false },
            registry,
            streams: BTreeMap::new(),
            next_stream: 1,
            agents,
            frameworks: Vec::new(),
            processes: BTreeMap::new(),
            next_pid: 1000,
            history: History::default(),
            violations: Vec::new(),
            quiet: false,
            trace_hash: 0xcbf2_9ce4_8422_2325,
            stats: Stats::default(),
            config,
        };
        for i in 0..world.agents.len() {
            world.start_agent(i);
        }
        for _ in 0..world.config.frameworks {
            world.join_framework();
        }
        world.at(Duration::ZERO, Ev::BrokerTick);
        if world.config.faults {
            let first = world.rng.millis(500, 3000);
            world.at(first, Ev::Fault);
        }
        world.at(world.config.fault_time, Ev::Quiesce);
        world
    }

    /// Adds a framework of one's own (e.g. a YARN participant) before the
    /// run starts; it joins like the scripted ones.
    pub fn add_framework(&mut self, framework: Box<dyn SimFramework>) {
        self.frameworks.push(FrameworkSlot {
            framework,
            id: String::new(),
            stream: None,
            subscribed: false,
            generation: 0,
            abandoned: false,
            quiesced: false,
        });
        let i = self.frameworks.len() - 1;
        let delay = self.rng.millis(0, 500);
        self.after(delay, Ev::FrameworkSubscribe(i, 0));
        self.after(FRAMEWORK_TICK, Ev::FrameworkTick(i));
    }

    fn join_framework(&mut self) {
        let label = format!("fw{}", self.frameworks.len());
        let timeout = self.rng.millis(10_000, 30_000);
        self.add_framework(Box::new(ScriptedFramework::new(label, timeout)));
    }

    fn at(&mut self, time: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.insert((time.max(self.now), self.seq), ev);
    }

    fn after(&mut self, delay: Duration, ev: Ev) {
        self.at(self.now + delay, ev);
    }

    fn trace(&mut self, line: impl FnOnce() -> String) {
        let line = format!("{:>9.3} {}", self.now.as_secs_f64(), line());
        self.trace_hash = fnv(self.trace_hash, line.as_bytes());
        if self.config.trace {
            println!("{line}");
        }
    }

    fn violation(&mut self, kind: ViolationKind, message: String) {
        self.trace(|| format!("VIOLATION {kind:?}: {message}"));
        self.violations.push(Violation { kind, at: self.now, message });
    }

    fn wall(&self) -> f64 {
        (UNIX_ORIGIN + self.now).as_secs_f64()
    }

    /// Runs to the end; returns what was found.
    pub fn run(mut self) -> Outcome {
        let end = self.config.fault_time + self.config.quiet_time;
        while let Some(((time, _), ev)) = self.queue.pop_first() {
            if time > end {
                break;
            }
            self.now = self.now.max(time);
            self.stats.events += 1;
            self.handle(ev);
            self.check_step();
            if !self.violations.is_empty() {
                break;
            }
        }
        if self.violations.is_empty() {
            self.now = self.now.max(end);
            self.check_final();
        }
        self.stats.broker_epoch = self.broker.core.epoch();
        Outcome { seed: self.config.seed, trace_hash: self.trace_hash, violations: self.violations, stats: self.stats }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::BrokerTick => {
                let out = self.broker.core.tick(self.now);
                self.broker_outputs(out);
                self.after(BROKER_TICK, Ev::BrokerTick);
            }
            Ev::DeliverDown(s) => self.deliver_down(s),
            Ev::DeliverUp(s) => self.deliver_up(s),
            Ev::AgentTick(i, inc) if self.agents[i].incarnation == inc && self.agents[i].core.is_some() => {
                self.agent_input(i, Input::Tick);
                self.after(AGENT_TICK, Ev::AgentTick(i, inc));
            }
            Ev::AgentHeartbeat(i, inc) if self.agents[i].incarnation == inc && self.agents[i].core.is_some() => {
                if let Some(s) = self.agents[i].stream {
                    let hb = v1::AgentMessage { kind: Some(v1::agent_message::Kind::Heartbeat(Default::default())) };
                    self.send_up(s, Up::Agent(hb));
                }
                self.after(AGENT_HEARTBEAT, Ev::AgentHeartbeat(i, inc));
            }
            Ev::AgentAttach(i, inc) => self.agent_attach(i, inc),
            Ev::AgentRestart(i, inc) if self.agents[i].incarnation == inc && self.agents[i].core.is_none() => {
                self.start_agent(i)
            }
            Ev::ProcessStarted(pid) => self.process_started(pid),
            Ev::ProcessExit { pid, code, signal } => self.process_exit(pid, code, signal),
            Ev::FrameworkTick(i) => {
                if self.frameworks[i].abandoned {
                    return;
                }
                if self.frameworks[i].subscribed {
                    let calls = self.with_framework(i, |f, ctx| f.tick(ctx));
                    self.framework_calls(i, calls);
                }
                self.after(FRAMEWORK_TICK, Ev::FrameworkTick(i));
            }
            Ev::FrameworkSubscribe(i, generation) => self.framework_subscribe(i, generation),
            Ev::FrameworkJoin => self.join_framework(),
            Ev::Fault if !self.quiet => {
                self.fault();
                let next = self.rng.millis(self.config.fault_interval_ms / 4, self.config.fault_interval_ms * 7 / 4);
                self.after(next, Ev::Fault);
            }
            Ev::Quiesce => self.quiesce(),
            _ => {} // a timer of an incarnation that is gone
        }
    }

    // ---- the network ----------------------------------------------------

    fn delay(&mut self) -> Duration {
        if self.rng.chance(0.05) {
            self.rng.millis(100, 1500)
        } else {
            self.rng.millis(1, 40)
        }
    }

    fn open_stream(&mut self, peer: Peer) -> StreamId {
        let id = self.next_stream;
        self.next_stream += 1;
        let epoch = self.broker.core.epoch();
        self.streams.insert(
            id,
            Stream { peer, epoch, opened: false, down: VecDeque::new(), up: VecDeque::new(), last_down: self.now, last_up: self.now },
        );
        id
    }

    fn send_up(&mut self, s: StreamId, msg: Up) {
        let delay = self.delay();
        let Some(stream) = self.streams.get_mut(&s) else { return };
        let at = (self.now + delay).max(stream.last_up);
        stream.last_up = at;
        stream.up.push_back(msg);
        self.at(at, Ev::DeliverUp(s));
    }

    fn send_down(&mut self, s: StreamId, msg: Down) {
        let delay = self.delay();
        let Some(stream) = self.streams.get_mut(&s) else { return };
        let at = (self.now + delay).max(stream.last_down);
        stream.last_down = at;
        stream.down.push_back(msg);
        self.at(at, Ev::DeliverDown(s));
    }

    /// The stream ends: what is in flight is lost; the peer learns now,
    /// the broker too if it is the one that held it (`tell_broker`).
    fn break_stream(&mut self, s: StreamId, tell_broker: bool, reason: &str) {
        let Some(stream) = self.streams.remove(&s) else { return };
        let peer = stream.peer;
        self.trace(|| format!("break s{s} {peer:?}: {reason}"));
        if tell_broker && stream.epoch == self.broker.core.epoch() && stream.opened {
            let out = match peer {
                Peer::Agent(_) => self.broker.core.agent_detached(s, self.now),
                Peer::Framework(_) => self.broker.core.framework_detached(s, self.now),
            };
            self.broker_outputs(out);
        }
        match peer {
            Peer::Agent(i) => {
                if self.agents[i].stream == Some(s) {
                    self.agents[i].stream = None;
                    if self.agents[i].core.is_some() {
                        self.agent_input(i, Input::Disconnected);
                        let inc = self.agents[i].incarnation;
                        let delay = self.rng.millis(50, 1500);
                        let at = (self.now + delay).max(self.agents[i].partitioned_until);
                        self.at(at, Ev::AgentAttach(i, inc));
                    }
                }
            }
            Peer::Framework(i) => {
                if self.frameworks[i].stream == Some(s) {
                    let slot = &mut self.frameworks[i];
                    slot.stream = None;
                    slot.subscribed = false;
                    slot.generation += 1;
                    slot.framework.on_disconnected(self.now);
                    if !slot.abandoned {
                        let generation = slot.generation;
                        let delay = self.rng.millis(50, 2000);
                        self.after(delay, Ev::FrameworkSubscribe(i, generation));
                    }
                }
            }
        }
    }

    fn deliver_up(&mut self, s: StreamId) {
        let Some(stream) = self.streams.get_mut(&s) else { return };
        let Some(msg) = stream.up.pop_front() else { return };
        let first = !stream.opened;
        stream.opened = true;
        let now = self.now;
        let out = match msg {
            Up::Agent(m) => {
                self.trace(|| format!("up   s{s} {}", describe_agent_message(&m)));
                match (&m.kind, first) {
                    (Some(v1::agent_message::Kind::Register(r)), true) => self.broker.core.agent_register(s, r, now),
                    _ => self.broker.core.agent_message(s, &m, now),
                }
            }
            Up::Framework(c) => {
                self.trace(|| format!("up   s{s} {}", describe_call(&c)));
                self.broker.core.framework_call(s, &c, now)
            }
        };
        self.broker_outputs(out);
    }

    fn deliver_down(&mut self, s: StreamId) {
        let Some(stream) = self.streams.get_mut(&s) else { return };
        let Some(msg) = stream.down.pop_front() else { return };
        let peer = stream.peer;
        match (msg, peer) {
            (Down::Close, _) => self.break_stream(s, true, "closed by the broker"),
            (Down::Agent(m), Peer::Agent(i)) => {
                self.trace(|| format!("down s{s} agent{i} {}", describe_broker_message(&m)));
                self.agent_receive(i, s, m);
            }
            (Down::Framework(e), Peer::Framework(i)) => {
                let label = self.frameworks[i].framework.label().to_owned();
                self.trace(|| format!("down s{s} {label} {}", describe_event(&e)));
                self.framework_receive(i, e);
            }
            _ => {}
        }
    }

    // ---- the broker -----------------------------------------------------

    fn broker_outputs(&mut self, mut out: Vec<Output>) {
        let dies = std::mem::take(&mut self.broker.dies_mid_output);
        if dies {
            let keep = self.rng.below(out.len() as u64 + 1) as usize;
            out.truncate(keep);
        }
        for o in out {
            match o {
                Output::Registry(write) => {
                    if let Err(e) = self.registry.apply_now(vec![write]) {
                        self.violation(ViolationKind::Broker, format!("the broker wrote a bad registry record: {e}"));
                    }
                }
                Output::Agent(conn, msg) => self.send_down(conn, Down::Agent(msg)),
                Output::Framework(conn, event) => self.send_down(conn, Down::Framework(event)),
                Output::Offers(conn, batch) => self.send_down(conn, Down::Framework(batch.into_event())),
                Output::Close(conn) => self.send_down(conn, Down::Close),
                // No simulated framework names HDFS files; nothing to locate.
                Output::LocateHdfs { .. } => {}
            }
        }
        if dies {
            self.fail_over();
        }
    }

    /// The leader dies; the next one recovers from the registry, and every
    /// stream to the old one breaks.
    fn fail_over(&mut self) {
        let epoch = self.broker.core.epoch() + 1;
        self.trace(|| format!("broker failover to epoch {epoch}"));
        self.stats.broker_failovers += 1;
        let mut core = BrokerCore::new(broker_settings(), format!("b{epoch}"), self.now, UNIX_ORIGIN + self.now);
        let report = core.recover(&self.registry.load_now(), epoch, self.now);
        if !report.skipped.is_empty() {
            self.violation(ViolationKind::Broker, format!("the new leader skipped registry records: {:?}", report.skipped));
        }
        self.broker = Broker { core, dies_mid_output: false };
        let old: Vec<StreamId> = self.streams.keys().copied().collect();
        for s in old {
            self.break_stream(s, false, "the broker failed over");
        }
    }

    // ---- agents ---------------------------------------------------------

    /// Starts (or restarts) an agent process from its durable checkpoint.
    fn start_agent(&mut self, i: usize) {
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&self.rng.next_u64().to_be_bytes());
        let mut core = AgentCore::new(agent_settings(), nonce);
        let agent = &mut self.agents[i];
        agent.incarnation += 1;
        let inc = agent.incarnation;
        let mut live = Vec::new();
        if let Some(checkpoint) = agent.durable.clone() {
            match core.recover(checkpoint) {
                Ok(l) => live = l,
                Err(e) => {
                    self.violation(ViolationKind::Agent, format!("agent{i} cannot recover from its own checkpoint: {e}"));
                    return;
                }
            }
            self.stats.agent_restarts += 1;
        }
        self.agents[i].core = Some(core);
        self.trace(|| format!("agent{i} starts (incarnation {inc}, {} supervised tasks)", live.len()));
        for (framework, task, pid, _sandbox) in live {
            let known = self.processes.get_mut(&pid).filter(|p| p.agent == i && p.framework == framework && p.task == task);
            let input = match known {
                Some(p) if p.state != ProcState::Exited => {
                    p.watcher = inc; // re-attached
                    None
                }
                Some(p) => {
                    let (code, signal) = p.exit.unwrap_or((None, None));
                    Some(Input::Exited { framework, task, code, signal, limitation: None })
                }
                None => Some(Input::Exited { framework, task, code: None, signal: None, limitation: None }),
            };
            if let Some(input) = input {
                self.agent_input(i, input);
            }
        }
        let delay = self.rng.millis(10, 500);
        self.after(delay, Ev::AgentAttach(i, inc));
        self.after(AGENT_TICK, Ev::AgentTick(i, inc));
        self.after(AGENT_HEARTBEAT, Ev::AgentHeartbeat(i, inc));
    }

    fn crash_agent(&mut self, i: usize) {
        let inc = self.agents[i].incarnation;
        self.trace(|| format!("agent{i} crashes (incarnation {inc})"));
        self.agents[i].core = None;
        self.agents[i].crash_before_effects = false;
        self.agents[i].incarnation += 1;
        // A launch under way when the agent died: its supervisor may or
        // may not have been started.
        let starting: Vec<u32> = self
            .processes
            .iter()
            .filter(|(_, p)| p.agent == i && p.watcher == inc && p.state == ProcState::Starting)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in starting {
            if !self.config.orphan_launches || self.rng.chance(0.5) {
                self.processes.remove(&pid);
            }
        }
        if let Some(s) = self.agents[i].stream.take() {
            self.break_stream(s, true, "the agent crashed");
        }
        let next = self.agents[i].incarnation;
        let delay = if self.quiet { Duration::from_millis(100) } else { self.rng.millis(200, 4000) };
        self.after(delay, Ev::AgentRestart(i, next));
    }

    fn agent_attach(&mut self, i: usize, inc: u64) {
        let agent = &self.agents[i];
        if agent.incarnation != inc || agent.core.is_none() || agent.stream.is_some() {
            return;
        }
        if self.now < agent.partitioned_until {
            let at = agent.partitioned_until;
            self.at(at, Ev::AgentAttach(i, inc));
            return;
        }
        let s = self.open_stream(Peer::Agent(i));
        self.agents[i].stream = Some(s);
        let Some(core) = &self.agents[i].core else { return };
        let register = core.register_message(self.agents[i].info.clone());
        self.trace(|| format!("agent{i} attaches on s{s}"));
        self.send_up(s, Up::Agent(register));
    }

    fn agent_receive(&mut self, i: usize, s: StreamId, m: v1::BrokerMessage) {
        if self.agents[i].stream != Some(s) || self.agents[i].core.is_none() {
            return;
        }
        let input = match m.kind {
            Some(v1::broker_message::Kind::Registered(r)) => {
                if r.leader_epoch < self.agents[i].seen_epoch {
                    self.break_stream(s, true, "registered by a deposed broker");
                    return;
                }
                self.agents[i].seen_epoch = r.leader_epoch;
                Input::Registered { agent_id: AgentId::new(r.agent_id) }
            }
            Some(v1::broker_message::Kind::Refused(r)) => {
                self.trace(|| format!("agent{i} refused: {}", r.message));
                self.break_stream(s, true, "refused");
                return;
            }
            Some(v1::broker_message::Kind::RunTask(r)) => match r.task {
                Some(task) => Input::RunTask { framework: r.framework_id, task: Box::new(task) },
                None => return,
            },
            Some(v1::broker_message::Kind::KillTask(k)) => Input::KillTask { framework: k.framework_id, task: k.task_id },
            Some(v1::broker_message::Kind::Acknowledge(a)) => {
                Input::Acknowledge { framework: a.framework_id, task: a.task_id, uuid: a.uuid }
            }
            Some(v1::broker_message::Kind::CheckpointResources(c)) => Input::CheckpointResources(c),
            // The simulation's volumes have no backing.
            Some(v1::broker_message::Kind::SyncVolume(v)) => Input::SyncVolume(v),
            None => return,
        };
        self.agent_input(i, input);
    }

    /// One input to an agent core: handle, write the checkpoint, then
    /// carry out the effects (unless the agent dies in between).
    fn agent_input(&mut self, i: usize, input: Input) {
        let (now, wall) = (self.now, self.wall());
        let Some(core) = self.agents[i].core.as_mut() else { return };
        let effects = core.handle(input, now, wall);
        if core.is_dirty() {
            let checkpoint = core.checkpoint();
            for t in &checkpoint.tasks {
                let task = t.info.as_ref().map(|i| i.task_id.clone()).unwrap_or_default();
                for p in &t.pending {
                    let state = task_state_from_proto("state", p.state).unwrap_or(TaskState::Unknown);
                    self.history.generated((t.framework_id.clone(), task.clone()), &p.uuid, state);
                }
            }
            self.agents[i].durable = Some(checkpoint);
        }
        if self.agents[i].crash_before_effects {
            self.trace(|| format!("agent{i} dies after its checkpoint, before {} effects", effects.len()));
            self.crash_agent(i);
            return;
        }
        for effect in effects {
            match effect {
                Effect::Send(msg) => {
                    if let Some(s) = self.agents[i].stream {
                        self.send_up(s, Up::Agent(msg));
                    }
                }
                Effect::Spawn { framework, task, info } => self.spawn(i, framework, task, &info),
                Effect::Signal { pid, signal, .. } => self.signal(pid, signal),
                // Volume directories are the real shell's; the books are
                // in the checkpoint the core keeps.
                Effect::CreateVolumes(_) | Effect::DestroyVolumes(_) | Effect::SyncVolume(_) => {}
            }
        }
    }

    // ---- the launcher ---------------------------------------------------

    fn spawn(&mut self, i: usize, framework: FrameworkId, task: TaskId, info: &v1::TaskInfo) {
        if let Some((pid, p)) =
            self.processes.iter().find(|(_, p)| p.framework == framework && p.task == task && p.state != ProcState::Exited)
        {
            let message = format!("{framework}/{task} started on agent{i} while pid {pid} still runs it on agent{}", p.agent);
            self.violation(ViolationKind::DoubleRun, message);
        }
        let plan = TaskPlan::parse(info.command.as_ref().map(|c| c.value.as_str()).unwrap_or(""));
        let pid = self.next_pid;
        self.next_pid += 1;
        let watcher = self.agents[i].incarnation;
        self.processes.insert(pid, Process { agent: i, framework, task, watcher, state: ProcState::Starting, plan, exit: None });
        self.stats.processes += 1;
        let delay = self.rng.millis(5, 300);
        self.after(delay, Ev::ProcessStarted(pid));
    }

    fn process_started(&mut self, pid: u32) {
        let Some(p) = self.processes.get_mut(&pid) else { return };
        if p.state != ProcState::Starting {
            return;
        }
        p.state = ProcState::Running;
        let (i, watcher, framework, task, run_for, code) = (p.agent, p.watcher, p.framework.clone(), p.task.clone(), p.plan.run_for, p.plan.exit_code);
        if let Some(run_for) = run_for {
            self.after(run_for, Ev::ProcessExit { pid, code: Some(code), signal: None });
        }
        if self.agents[i].incarnation == watcher {
            let sandbox = format!("/sim/agent{i}/{framework}/{task}").into();
            self.agent_input(i, Input::Spawned { framework, task, pid, sandbox, message: String::new() });
        }
    }

    fn signal(&mut self, pid: u32, signal: Signal) {
        let Some(p) = self.processes.get(&pid) else { return };
        if p.state == ProcState::Exited {
            return;
        }
        match signal {
            Signal::Term if p.plan.ignores_term => {}
            Signal::Term => {
                let delay = self.rng.millis(10, 300);
                self.after(delay, Ev::ProcessExit { pid, code: None, signal: Some(15) });
            }
            Signal::Kill => {
                let delay = self.rng.millis(1, 30);
                self.after(delay, Ev::ProcessExit { pid, code: None, signal: Some(9) });
            }
        }
    }

    fn process_exit(&mut self, pid: u32, code: Option<i32>, signal: Option<i32>) {
        let Some(p) = self.processes.get_mut(&pid) else { return };
        if p.state != ProcState::Running {
            return;
        }
        p.state = ProcState::Exited;
        p.exit = Some((code, signal));
        let (i, watcher, framework, task) = (p.agent, p.watcher, p.framework.clone(), p.task.clone());
        if self.agents[i].incarnation == watcher {
            self.agent_input(i, Input::Exited { framework, task, code, signal, limitation: None });
        }
    }

    // ---- frameworks -----------------------------------------------------

    fn with_framework<T>(&mut self, i: usize, f: impl FnOnce(&mut dyn SimFramework, &mut FrameworkCtx) -> T) -> T {
        // What a framework could read from the broker's operator API
        // (`GetState`) right now, as the YARN shim polls it for its nodes.
        let pool = self.broker.core.agent_summaries();
        let mut ctx = FrameworkCtx { now: self.now, rng: &mut self.rng, pool: &pool };
        f(self.frameworks[i].framework.as_mut(), &mut ctx)
    }

    fn framework_subscribe(&mut self, i: usize, generation: u64) {
        let slot = &self.frameworks[i];
        if slot.generation != generation || slot.stream.is_some() || slot.abandoned {
            return;
        }
        let s = self.open_stream(Peer::Framework(i));
        self.frameworks[i].stream = Some(s);
        let call = self.with_framework(i, |f, ctx| f.subscribe(ctx));
        self.send_up(s, Up::Framework(call));
    }

    fn framework_receive(&mut self, i: usize, e: v1::Event) {
        match &e.kind {
            Some(v1::event::Kind::Subscribed(sub)) => {
                let slot = &mut self.frameworks[i];
                if !slot.id.is_empty() && slot.id != sub.framework_id {
                    let message = format!("{} subscribed as {} but was {}", slot.framework.label(), sub.framework_id, slot.id);
                    self.violation(ViolationKind::Broker, message);
                }
                let slot = &mut self.frameworks[i];
                slot.id = sub.framework_id.clone();
                slot.subscribed = true;
            }
            Some(v1::event::Kind::Update(u)) => {
                if let Some(status) = &u.status {
                    let id = self.frameworks[i].id.clone();
                    if status.framework_id != id {
                        self.violation(ViolationKind::Broker, format!("framework {id} got an update of framework {}", status.framework_id));
                    }
                    let state = task_state_from_proto("state", status.state).unwrap_or(TaskState::Unknown);
                    let from_agent = status.source == v1::task_status::Source::Agent as i32;
                    let key = (id, status.task_id.clone());
                    self.history.delivered(
                        key.clone(),
                        Delivery { uuid: status.uuid.clone(), state, reason: status.reason.clone(), from_agent },
                    );
                    self.stats.updates_delivered += 1;
                    for problem in self.history.check_task_order(&key) {
                        self.violation(ViolationKind::UpdateOrder, problem);
                    }
                }
            }
            _ => {}
        }
        let mut calls = self.with_framework(i, |f, ctx| f.on_event(&e, ctx));
        if self.quiet && self.frameworks[i].subscribed && !self.frameworks[i].quiesced {
            self.frameworks[i].quiesced = true;
            calls.extend(self.with_framework(i, |f, ctx| f.quiesce(ctx)));
        }
        self.framework_calls(i, calls);
    }

    fn framework_calls(&mut self, i: usize, calls: Vec<v1::Call>) {
        let Some(s) = self.frameworks[i].stream else { return };
        for call in calls {
            if let Some(v1::call::Kind::Accept(accept)) = &call.kind {
                for op in &accept.operations {
                    if let Some(v1::operation::Kind::Launch(launch)) = &op.kind {
                        for t in &launch.tasks {
                            self.history.launched.insert((self.frameworks[i].id.clone(), t.task_id.clone()));
                            self.stats.tasks_launched += 1;
                        }
                    }
                }
            }
            self.send_up(s, Up::Framework(call));
        }
    }

    // ---- faults ---------------------------------------------------------

    fn fault(&mut self) {
        let roll = self.rng.below(100);
        let n_agents = self.agents.len() as u64;
        match roll {
            0..30 => {
                let open: Vec<StreamId> = self.streams.keys().copied().collect();
                if let Some(&s) = self.rng.pick(&open) {
                    self.stats.count("stream break");
                    self.break_stream(s, true, "network");
                }
            }
            30..45 => {
                let i = self.rng.below(n_agents) as usize;
                if self.agents[i].core.is_some() {
                    self.stats.count("agent crash");
                    if self.rng.chance(0.5) {
                        self.agents[i].crash_before_effects = true;
                    } else {
                        self.crash_agent(i);
                    }
                }
            }
            45..53 => {
                self.stats.count("broker failover");
                if self.rng.chance(0.5) {
                    self.broker.dies_mid_output = true;
                } else {
                    self.fail_over();
                }
            }
            53..63 => {
                let i = self.rng.below(n_agents) as usize;
                let long = if self.rng.chance(0.2) { LONG_PARTITION_MS } else { 15_000 };
                let length = self.rng.millis(2_000, long);
                self.stats.count("agent partition");
                self.trace(|| format!("agent{i} partitioned for {length:?}"));
                self.agents[i].partitioned_until = self.now + length;
                if let Some(s) = self.agents[i].stream {
                    self.break_stream(s, true, "partition");
                }
            }
            63..71 => {
                let jump = self.rng.millis(1_000, 9_000);
                self.stats.count("time jump");
                self.trace(|| format!("time jumps {jump:?}"));
                self.now += jump;
            }
            71..73 if self.stats.abandoned < 2 => {
                let live: Vec<usize> = (0..self.frameworks.len()).filter(|&i| !self.frameworks[i].abandoned).collect();
                if let Some(&i) = self.rng.pick(&live) {
                    self.stats.abandoned += 1;
                    self.stats.count("framework abandoned");
                    let label = self.frameworks[i].framework.label().to_owned();
                    self.trace(|| format!("{label} is abandoned"));
                    self.frameworks[i].abandoned = true;
                    if let Some(s) = self.frameworks[i].stream {
                        self.break_stream(s, true, "framework abandoned");
                    }
                    let delay = self.rng.millis(500, 5000);
                    self.after(delay, Ev::FrameworkJoin);
                }
            }
            _ => {}
        }
    }

    /// The quiet phase: no more faults; everyone comes back and frameworks
    /// stop starting work and reconcile.
    fn quiesce(&mut self) {
        self.trace(|| "quiet phase".to_owned());
        self.quiet = true;
        self.broker.dies_mid_output = false;
        for i in 0..self.agents.len() {
            self.agents[i].partitioned_until = self.now;
            self.agents[i].crash_before_effects = false;
            let inc = self.agents[i].incarnation;
            if self.agents[i].core.is_none() {
                self.after(Duration::from_millis(100), Ev::AgentRestart(i, inc));
            } else {
                self.after(Duration::from_millis(100), Ev::AgentAttach(i, inc));
            }
        }
        for i in 0..self.frameworks.len() {
            if self.frameworks[i].subscribed && !self.frameworks[i].abandoned {
                self.frameworks[i].quiesced = true;
                let calls = self.with_framework(i, |f, ctx| f.quiesce(ctx));
                self.framework_calls(i, calls);
            }
        }
    }

    // ---- invariants -----------------------------------------------------

    fn check_step(&mut self) {
        if let Err(e) = self.broker.core.check_invariants() {
            self.violation(ViolationKind::Books, e);
        }
        let broken: Vec<String> = self.frameworks.iter().filter_map(|f| f.framework.check_step().err()).collect();
        for e in broken {
            self.violation(ViolationKind::FrameworkBooks, e);
        }
    }

    fn check_final(&mut self) {
        let state = self.broker.core.state(self.now);
        let broker_tasks: BTreeMap<(String, String), (String, String)> =
            state.tasks.iter().map(|t| ((t.framework_id.clone(), t.id.clone()), (t.agent_id.clone(), t.state.clone()))).collect();
        // What each agent core believes runs (task → agent index).
        let mut agent_live: BTreeMap<(String, String), (usize, Option<u32>)> = BTreeMap::new();
        for (i, a) in self.agents.iter().enumerate() {
            let Some(core) = &a.core else {
                self.violations.push(Violation { kind: ViolationKind::Liveness, at: self.now, message: format!("agent{i} is still down") });
                continue;
            };
            for t in core.tasks() {
                let terminal = ["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_GONE", "TASK_DROPPED", "TASK_UNKNOWN"]
                    .contains(&t.state.as_str());
                if !terminal {
                    agent_live.insert((t.framework_id.clone(), t.task_id.clone()), (i, t.pid));
                }
            }
        }
        let running: BTreeMap<(String, String), u32> = self
            .processes
            .iter()
            .filter(|(_, p)| p.state != ProcState::Exited)
            .map(|(pid, p)| ((p.framework.to_string(), p.task.to_string()), *pid))
            .collect();
        let abandoned: Vec<String> = self.frameworks.iter().filter(|f| f.abandoned).map(|f| f.id.clone()).collect();
        let mut found = Vec::new();

        for key in &self.history.launched {
            if abandoned.contains(&key.0) {
                continue;
            }
            let name = format!("{}/{}", key.0, key.1);
            match self.history.last_heard(key) {
                Some(last) if last.state.is_terminal() => {
                    if let Some(pid) = running.get(key) {
                        found.push((ViolationKind::Zombie, format!("{name}: the framework last heard {} ({}), yet pid {pid} still runs it", last.state, last.reason)));
                    }
                }
                last => {
                    let heard = last.map_or("nothing".to_owned(), |l| format!("{} ({})", l.state, l.reason));
                    let in_broker = broker_tasks.get(key);
                    let on_agent = agent_live.get(key);
                    let process = running.get(key);
                    let fine = last.is_some_and(|l| l.state == TaskState::Running)
                        && in_broker.is_some_and(|(_, s)| s == "TASK_RUNNING")
                        && on_agent.is_some()
                        && process.is_some();
                    if !fine {
                        found.push((
                            ViolationKind::LostTask,
                            format!("{name}: the framework last heard {heard}; broker {in_broker:?}, agent {on_agent:?}, process {process:?}"),
                        ));
                    }
                }
            }
        }
        for (key, pid) in &running {
            let name = format!("{}/{}", key.0, key.1);
            match agent_live.get(key) {
                Some((_, Some(p))) if p == pid => {}
                other => found.push((ViolationKind::Orphan, format!("{name}: pid {pid} runs, but its agent knows {other:?}"))),
            }
            if abandoned.contains(&key.0) {
                found.push((ViolationKind::RemovedFrameworkTask, format!("{name}: pid {pid} runs after its framework was abandoned past its failover timeout")));
            }
        }
        for (key, (agent, st)) in &broker_tasks {
            if !agent_live.contains_key(key) {
                found.push((ViolationKind::Books, format!("{}/{}: the broker holds it {st} on {agent}, but no agent runs it", key.0, key.1)));
            }
        }
        for f in &self.frameworks {
            if f.abandoned || f.id.is_empty() {
                continue;
            }
            let live: std::collections::BTreeSet<String> = state
                .tasks
                .iter()
                .filter(|t| t.framework_id == f.id)
                .filter(|t| !["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_GONE", "TASK_DROPPED", "TASK_UNKNOWN"].contains(&t.state.as_str()))
                .map(|t| t.id.clone())
                .collect();
            for problem in f.framework.check_final(&live) {
                found.push((ViolationKind::FrameworkBooks, problem));
            }
        }
        for problem in self.history.check_order() {
            found.push((ViolationKind::UpdateOrder, problem));
        }
        let gone = |f: &str| abandoned.iter().any(|a| a == f);
        for problem in self.history.check_complete(gone) {
            found.push((ViolationKind::UpdateLost, problem));
        }
        for (kind, message) in found {
            self.violations.push(Violation { kind, at: self.now, message });
        }
    }
}

fn describe_task_status(s: &v1::TaskStatus) -> String {
    let state = task_state_from_proto("state", s.state).map(|s| s.name()).unwrap_or("?");
    let uuid = if s.uuid.is_empty() { String::new() } else { format!(" uuid {}", crate::history::hex(&s.uuid[s.uuid.len().saturating_sub(3)..])) };
    format!("{}/{} {state} {}{uuid}", s.framework_id, s.task_id, s.reason)
}

fn describe_agent_message(m: &v1::AgentMessage) -> String {
    use v1::agent_message::Kind;
    match &m.kind {
        Some(Kind::Register(r)) => {
            let tasks: Vec<String> = r
                .tasks
                .iter()
                .map(|t| {
                    let state = t.latest.as_ref().and_then(|l| task_state_from_proto("state", l.state).ok()).map_or("?", |s| s.name());
                    format!("{}/{}:{state}", t.framework_id, t.task.as_ref().map_or("", |t| t.task_id.as_str()))
                })
                .collect();
            format!("REGISTER {} tasks {tasks:?}", r.agent.as_ref().map_or("", |a| a.id.as_str()))
        }
        Some(Kind::Heartbeat(_)) => "HEARTBEAT".to_owned(),
        Some(Kind::StatusUpdate(u)) => format!("UPDATE {}", u.status.as_ref().map(describe_task_status).unwrap_or_default()),
        Some(Kind::VolumeSync(v)) => format!("VOLUME_SYNC {}/{} {} {}", v.role, v.volume_id, v.trigger, v.error),
        None => "EMPTY".to_owned(),
    }
}

fn describe_broker_message(m: &v1::BrokerMessage) -> String {
    use v1::broker_message::Kind;
    match &m.kind {
        Some(Kind::Registered(r)) => format!("REGISTERED {} epoch {}", r.agent_id, r.leader_epoch),
        Some(Kind::Refused(r)) => format!("REFUSED {}", r.message),
        Some(Kind::RunTask(r)) => format!("RUN {}/{}", r.framework_id, r.task.as_ref().map_or("", |t| t.task_id.as_str())),
        Some(Kind::KillTask(k)) => format!("KILL {}/{}", k.framework_id, k.task_id),
        Some(Kind::Acknowledge(a)) => format!("ACK {}/{} {}", a.framework_id, a.task_id, crate::history::hex(&a.uuid[a.uuid.len().saturating_sub(3)..])),
        Some(Kind::CheckpointResources(c)) => format!("CHECKPOINT {} reservations {} volumes", c.reservations.len(), c.volumes.len()),
        Some(Kind::SyncVolume(v)) => format!("SYNC_VOLUME {}/{} create {}", v.role, v.volume_id, v.create),
        None => "EMPTY".to_owned(),
    }
}

fn describe_call(c: &v1::Call) -> String {
    use v1::call::Kind;
    let body = match &c.kind {
        Some(Kind::Subscribe(_)) => "SUBSCRIBE".to_owned(),
        Some(Kind::Accept(a)) => {
            let tasks: Vec<&str> = a
                .operations
                .iter()
                .filter_map(|o| match &o.kind {
                    Some(v1::operation::Kind::Launch(l)) => Some(l.tasks.iter().map(|t| t.task_id.as_str())),
                    _ => None,
                })
                .flatten()
                .collect();
            let ops: Vec<String> = a
                .operations
                .iter()
                .filter(|o| !matches!(o.kind, Some(v1::operation::Kind::Launch(_))))
                .map(|o| format!("{:?}", o.kind))
                .collect();
            if ops.is_empty() {
                format!("ACCEPT {:?} {tasks:?}", a.offer_ids)
            } else {
                format!("ACCEPT {:?} {ops:?} {tasks:?}", a.offer_ids)
            }
        }
        Some(Kind::Decline(d)) => format!("DECLINE {:?}", d.offer_ids),
        Some(Kind::Revive(_)) => "REVIVE".to_owned(),
        Some(Kind::Suppress(_)) => "SUPPRESS".to_owned(),
        Some(Kind::Kill(k)) => format!("KILL {}", k.task_id),
        Some(Kind::Acknowledge(a)) => format!("ACK {} {}", a.task_id, crate::history::hex(&a.uuid[a.uuid.len().saturating_sub(3)..])),
        Some(Kind::Reconcile(r)) => format!("RECONCILE {}", r.tasks.len()),
        Some(Kind::Teardown(_)) => "TEARDOWN".to_owned(),
        None => "EMPTY".to_owned(),
    };
    format!("{} {body}", c.framework_id)
}

fn describe_event(e: &v1::Event) -> String {
    use v1::event::Kind;
    match &e.kind {
        Some(Kind::Subscribed(s)) => format!("SUBSCRIBED {} epoch {}", s.framework_id, s.leader_epoch),
        Some(Kind::Offers(o)) => format!("OFFERS {:?}", o.offers.iter().map(|o| format!("{}@{}", o.id, o.agent_id)).collect::<Vec<_>>()),
        Some(Kind::Rescind(r)) => format!("RESCIND {}", r.offer_id),
        Some(Kind::Update(u)) => format!("UPDATE {}", u.status.as_ref().map(describe_task_status).unwrap_or_default()),
        Some(Kind::Failure(f)) => format!("FAILURE {}", f.agent_id),
        Some(Kind::Error(e)) => format!("ERROR {}", e.message),
        Some(Kind::Heartbeat(_)) => "HEARTBEAT".to_owned(),
        Some(Kind::OperationStatus(o)) => format!("OPERATION {} {} {}", o.operation_id, o.state, o.message),
        Some(Kind::AgentDraining(d)) => format!("DRAINING {} until {}", d.agent_id, d.deadline),
        Some(Kind::Revocation(r)) => format!("REVOKE {:?} for {} until {}", r.tasks.iter().map(|t| &t.task_id).collect::<Vec<_>>(), r.for_role, r.deadline),
        None => "EMPTY".to_owned(),
    }
}
