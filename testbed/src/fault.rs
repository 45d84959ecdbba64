//! Faults: what `weir testbed fault` does to the cluster's nodes, the
//! timestamped log of each one, and the seeded schedules scenarios run.
//!
//! A node is a compose service name (`zk1`, `broker2`, `agent3`, `yarn`,
//! `client`). In a schedule, `@leader` stands for whichever broker leads
//! when the fault starts, and `@rest` for every node not in the other
//! group of a partition; the runner resolves them and logs the names.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_sim::rng::SimRng;

/// One fault, or the end of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// `docker kill -s KILL`: every process of the node dies at once.
    Kill { node: String },
    /// Start a killed node again (or restart a running one).
    Restart { node: String },
    /// Freeze every process of the node (the cgroup freezer): the hardest
    /// case for leases, since the node does not know time passed.
    Pause { node: String },
    Unpause { node: String },
    /// Cut the network between two groups of nodes, both ways; nodes in
    /// neither group are untouched.
    Partition { a: Vec<String>, b: Vec<String> },
    /// Undo network faults (partitions, delay, loss) and disk fills on
    /// these nodes (all nodes when empty). A partition has two sides:
    /// heal it everywhere.
    Heal { nodes: Vec<String> },
    /// Delay every packet the node sends (`tc netem`).
    Delay { node: String, ms: u32, jitter_ms: u32 },
    /// Drop this share of the node's packets, both ways.
    Loss { node: String, percent: u32 },
    /// Send this share of packets at once and delay the rest (`tc netem`).
    Reorder { node: String, percent: u32, ms: u32 },
    /// Fill the agent's sandbox file system.
    FillDisk { node: String },
}

impl Fault {
    /// The nodes it touches (a partition's two groups).
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            Fault::Kill { node }
            | Fault::Restart { node }
            | Fault::Pause { node }
            | Fault::Unpause { node }
            | Fault::Delay { node, .. }
            | Fault::Loss { node, .. }
            | Fault::Reorder { node, .. }
            | Fault::FillDisk { node } => vec![node],
            Fault::Partition { a, b } => a.iter().chain(b).map(String::as_str).collect(),
            Fault::Heal { nodes } => nodes.iter().map(String::as_str).collect(),
        }
    }

    /// The same fault with `@leader` and `@rest` replaced.
    pub fn resolve(&self, leader: &str, all: &[String]) -> Fault {
        let one = |n: &String| if n == "@leader" { leader.to_owned() } else { n.clone() };
        let many = |v: &[String]| -> Vec<String> { v.iter().map(one).collect() };
        let rest = |other: &[String]| -> Vec<String> { all.iter().filter(|n| !other.contains(n)).cloned().collect() };
        match self {
            Fault::Partition { a, b } => {
                let (a, b) = (many(a), many(b));
                match (a.iter().any(|n| n == "@rest"), b.iter().any(|n| n == "@rest")) {
                    (false, true) => Fault::Partition { b: rest(&a), a },
                    (true, false) => Fault::Partition { a: rest(&b), b },
                    _ => Fault::Partition { a, b },
                }
            }
            Fault::Heal { nodes } => Fault::Heal { nodes: many(nodes) },
            Fault::Kill { node } => Fault::Kill { node: one(node) },
            Fault::Restart { node } => Fault::Restart { node: one(node) },
            Fault::Pause { node } => Fault::Pause { node: one(node) },
            Fault::Unpause { node } => Fault::Unpause { node: one(node) },
            Fault::Delay { node, ms, jitter_ms } => Fault::Delay { node: one(node), ms: *ms, jitter_ms: *jitter_ms },
            Fault::Loss { node, percent } => Fault::Loss { node: one(node), percent: *percent },
            Fault::Reorder { node, percent, ms } => Fault::Reorder { node: one(node), percent: *percent, ms: *ms },
            Fault::FillDisk { node } => Fault::FillDisk { node: one(node) },
        }
    }

    /// Whether every process of `node` may have died here (a kill or a
    /// restart): what it had not reported yet may be gone with it.
    pub fn kills(&self, node: &str) -> bool {
        matches!(self, Fault::Kill { node: n } | Fault::Restart { node: n } if n == node)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { node } => write!(f, "kill -9 {node}"),
            Fault::Restart { node } => write!(f, "restart {node}"),
            Fault::Pause { node } => write!(f, "pause {node}"),
            Fault::Unpause { node } => write!(f, "unpause {node}"),
            Fault::Partition { a, b } => write!(f, "partition {} | {}", a.join(","), b.join(",")),
            Fault::Heal { nodes } if nodes.is_empty() => write!(f, "heal all"),
            Fault::Heal { nodes } => write!(f, "heal {}", nodes.join(",")),
            Fault::Delay { node, ms, jitter_ms } => write!(f, "delay {node} {ms}ms ±{jitter_ms}ms"),
            Fault::Loss { node, percent } => write!(f, "loss {node} {percent}%"),
            Fault::Reorder { node, percent, ms } => write!(f, "reorder {node} {percent}% (others {ms}ms late)"),
            Fault::FillDisk { node } => write!(f, "fill-disk {node}"),
        }
    }
}

/// One line of the fault timeline (JSON lines, one per fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// When it was done, Unix milliseconds, and the same as RFC 3339.
    pub at_ms: u64,
    pub time: String,
    pub fault: Fault,
    /// Empty when it worked; what went wrong otherwise.
    #[serde(default)]
    pub error: String,
}

impl FaultRecord {
    pub fn new(at_ms: u64, fault: Fault, error: String) -> FaultRecord {
        FaultRecord { at_ms, time: crate::rfc3339_ms(at_ms), fault, error }
    }
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} fault {}", self.time, self.fault)?;
        if !self.error.is_empty() {
            write!(f, " FAILED: {}", self.error)?;
        }
        Ok(())
    }
}

/// Reads a fault log; lines that do not parse are skipped.
pub fn parse_log(text: &str) -> Vec<FaultRecord> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// A fault, and what ends it after a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// From the start of the fault phase.
    pub start: Duration,
    pub fault: Fault,
    pub lasts: Duration,
    pub heal: Fault,
}

/// The kinds of episode a schedule draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LeaderKill,
    LeaderPause,
    LeaderPartition,
    AgentKill,
    AgentPause,
    AgentPartition,
    AgentLoss,
    AgentFillDisk,
    ZkKill,
    /// Two agents with one broker cut off from the rest of the cluster.
    SplitBrain,
}

pub const ALL_KINDS: [Kind; 10] = [
    Kind::LeaderKill,
    Kind::LeaderPause,
    Kind::LeaderPartition,
    Kind::AgentKill,
    Kind::AgentPause,
    Kind::AgentPartition,
    Kind::AgentLoss,
    Kind::AgentFillDisk,
    Kind::ZkKill,
    Kind::SplitBrain,
];

fn nodes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// One episode of `kind` at `start`, its targets and length drawn from `rng`.
pub fn episode(kind: Kind, start: Duration, agents: usize, rng: &mut SimRng) -> Episode {
    let agent = format!("agent{}", 1 + rng.below(agents.max(1) as u64));
    let secs = |rng: &mut SimRng, lo: u64, hi: u64| Duration::from_secs(lo + rng.below(hi - lo + 1));
    let (fault, lasts, heal) = match kind {
        Kind::LeaderKill => {
            let l = secs(rng, 5, 15);
            (Fault::Kill { node: "@leader".into() }, l, Fault::Restart { node: "@leader".into() })
        }
        Kind::LeaderPause => {
            let l = secs(rng, 3, 25);
            (Fault::Pause { node: "@leader".into() }, l, Fault::Unpause { node: "@leader".into() })
        }
        Kind::LeaderPartition => {
            let l = secs(rng, 5, 25);
            (Fault::Partition { a: nodes(&["@leader"]), b: nodes(&["@rest"]) }, l, Fault::Heal { nodes: vec![] })
        }
        Kind::AgentKill => {
            let l = secs(rng, 2, 12);
            (Fault::Kill { node: agent.clone() }, l, Fault::Restart { node: agent })
        }
        Kind::AgentPause => {
            let l = secs(rng, 3, 25);
            (Fault::Pause { node: agent.clone() }, l, Fault::Unpause { node: agent })
        }
        Kind::AgentPartition => {
            // Sometimes past the unreachable timeout (15 s by default).
            let l = secs(rng, 5, 40);
            (Fault::Partition { a: vec![agent], b: nodes(&["@rest"]) }, l, Fault::Heal { nodes: vec![] })
        }
        Kind::AgentLoss => {
            let l = secs(rng, 10, 25);
            let percent = 10 + rng.below(31) as u32;
            (Fault::Loss { node: agent.clone(), percent }, l, Fault::Heal { nodes: vec![agent] })
        }
        Kind::AgentFillDisk => {
            let l = secs(rng, 5, 15);
            (Fault::FillDisk { node: agent.clone() }, l, Fault::Heal { nodes: vec![agent] })
        }
        Kind::ZkKill => {
            let zk = format!("zk{}", 1 + rng.below(3));
            let l = secs(rng, 5, 15);
            (Fault::Kill { node: zk.clone() }, l, Fault::Restart { node: zk })
        }
        Kind::SplitBrain => {
            let first = 1 + rng.below(agents.max(2) as u64 - 1);
            let group = vec!["@leader".to_owned(), format!("agent{first}"), format!("agent{}", first + 1)];
            let l = secs(rng, 5, 30);
            (Fault::Partition { a: group, b: nodes(&["@rest"]) }, l, Fault::Heal { nodes: vec![] })
        }
    };
    Episode { start, fault, lasts, heal }
}

/// A seeded schedule: one episode at a time, 3-10 s apart, for `length`
/// of fault time. The same seed gives the same schedule.
pub fn schedule(seed: u64, length: Duration, agents: usize, kinds: &[Kind]) -> Vec<Episode> {
    let mut rng = SimRng::new(seed);
    let mut out = Vec::new();
    let mut at = Duration::from_secs(3 + rng.below(8));
    while at < length && !kinds.is_empty() {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let e = episode(kind, at, agents, &mut rng);
        at = e.start + e.lasts + Duration::from_secs(3 + rng.below(8));
        out.push(e);
    }
    out
}

/// The short scenario CI runs: the leader killed and restarted, an agent
/// cut off past the unreachable timeout and healed, an agent killed and
/// restarted.
pub fn ci_schedule() -> Vec<Episode> {
    let s = Duration::from_secs;
    vec![
        Episode { start: s(10), fault: Fault::Kill { node: "@leader".into() }, lasts: s(8), heal: Fault::Restart { node: "@leader".into() } },
        Episode {
            start: s(35),
            fault: Fault::Partition { a: nodes(&["agent2"]), b: nodes(&["@rest"]) },
            lasts: s(25),
            heal: Fault::Heal { nodes: vec![] },
        },
        Episode { start: s(75), fault: Fault::Kill { node: "agent3".into() }, lasts: s(6), heal: Fault::Restart { node: "agent3".into() } },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_and_episodes_do_not_overlap() {
        let a = schedule(7, Duration::from_secs(1800), 4, &ALL_KINDS);
        assert_eq!(a, schedule(7, Duration::from_secs(1800), 4, &ALL_KINDS));
        assert_ne!(a, schedule(8, Duration::from_secs(1800), 4, &ALL_KINDS));
        assert!(a.len() > 40, "{} episodes in 30 minutes", a.len());
        for w in a.windows(2) {
            assert!(w[0].start + w[0].lasts < w[1].start, "{w:?}");
        }
        for e in &a {
            for n in e.fault.nodes() {
                assert!(["@leader", "@rest"].contains(&n) || n.starts_with("agent") || n.starts_with("zk"), "{n}");
                if let Some(i) = n.strip_prefix("agent") {
                    let i: usize = i.parse().unwrap();
                    assert!((1..=4).contains(&i), "{n}");
                }
            }
        }
    }

    #[test]
    fn placeholders_resolve_to_the_leader_and_everyone_else() {
        let all = nodes(&["zk1", "broker1", "broker2", "agent1", "agent2", "client"]);
        let p = Fault::Partition { a: nodes(&["@leader", "agent1"]), b: nodes(&["@rest"]) }.resolve("broker2", &all);
        assert_eq!(p, Fault::Partition { a: nodes(&["broker2", "agent1"]), b: nodes(&["zk1", "broker1", "agent2", "client"]) });
        assert_eq!(p.to_string(), "partition broker2,agent1 | zk1,broker1,agent2,client");
        assert_eq!(Fault::Kill { node: "@leader".into() }.resolve("broker1", &all), Fault::Kill { node: "broker1".into() });
    }

    #[test]
    fn the_log_is_json_lines_with_readable_times() {
        let r = FaultRecord::new(1_796_625_685_123, Fault::Pause { node: "agent2".into() }, String::new());
        assert_eq!(r.to_string(), "2026-12-07T06:41:25.123Z fault pause agent2");
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains(r#""kind":"pause""#), "{line}");
        assert_eq!(parse_log(&format!("{line}\nnot json\n{line}\n")), vec![r.clone(), r]);
    }
}
