//! `weir testbed fault …`: faults done to the testbed's nodes, each
//! appended with its time to the fault log (`faults.jsonl` in the testbed
//! cache, and the scenario's own when one runs) and printed.
//!
//! How each is done:
//! - kill: `docker kill -s KILL`; restart: `docker start` (or `docker
//!   restart` when it runs); pause/unpause: `docker pause` (the freezer);
//! - partition: blackhole routes inside each node of one group to every
//!   node of the other, and back: packets vanish, connections hang until
//!   their own timeouts, as on a cut cable;
//! - delay, reorder: `tc netem` on the node's interface; loss: netem, or
//!   where the kernel has no netem, iptables' `statistic` match;
//! - fill-disk: `fallocate` of all that is free on the agent's sandbox
//!   file system (a 256 MiB tmpfs, never the host's disk);
//! - heal: undo the network faults and the fill on the nodes named.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use weir_testbed::fault::{Fault, FaultRecord};

use super::docker;

#[derive(clap::Args, Debug)]
pub struct FaultArgs {
    #[command(subcommand)]
    command: FaultCommand,
}

#[derive(clap::Subcommand, Debug)]
enum FaultCommand {
    /// kill -9 every process of a node (`leader` names the leading broker).
    Kill { node: String },
    /// Start a killed node again (restart it if it runs).
    Restart { node: String },
    /// Freeze a node's processes.
    Pause { node: String },
    Unpause { node: String },
    /// Cut the network between two groups (comma-separated nodes; the
    /// second group defaults to every other node).
    Partition { a: String, b: Option<String> },
    /// Undo partitions, delay, loss and disk fills on these nodes (all when none).
    Heal { nodes: Vec<String> },
    /// Delay the node's outgoing packets (tc netem).
    Delay {
        node: String,
        ms: u32,
        #[arg(long, default_value_t = 0)]
        jitter: u32,
    },
    /// Drop a share of the node's packets, both ways.
    Loss { node: String, percent: u32 },
    /// Reorder the node's packets: PERCENT go at once, the rest MS late (tc netem).
    Reorder {
        node: String,
        percent: u32,
        #[arg(long, default_value_t = 50)]
        ms: u32,
    },
    /// Fill an agent's sandbox disk.
    FillDisk { node: String },
    /// Print the fault log.
    Log,
}

/// The testbed-wide fault log.
pub fn global_log() -> PathBuf {
    docker::cache_dir().join("faults.jsonl")
}

pub async fn main(args: FaultArgs) -> Result<ExitCode> {
    let fault = match args.command {
        FaultCommand::Log => {
            let text = std::fs::read_to_string(global_log()).unwrap_or_default();
            for r in weir_testbed::fault::parse_log(&text) {
                println!("{r}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        FaultCommand::Kill { node } => Fault::Kill { node },
        FaultCommand::Restart { node } => Fault::Restart { node },
        FaultCommand::Pause { node } => Fault::Pause { node },
        FaultCommand::Unpause { node } => Fault::Unpause { node },
        FaultCommand::Partition { a, b } => {
            let list = |s: &str| s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect::<Vec<_>>();
            Fault::Partition { a: list(&a), b: b.as_deref().map(list).unwrap_or_else(|| vec!["@rest".to_owned()]) }
        }
        FaultCommand::Heal { nodes } => Fault::Heal { nodes },
        FaultCommand::Delay { node, ms, jitter } => Fault::Delay { node, ms, jitter_ms: jitter },
        FaultCommand::Loss { node, percent } => Fault::Loss { node, percent: percent.min(100) },
        FaultCommand::Reorder { node, percent, ms } => Fault::Reorder { node, percent: percent.min(100), ms },
        FaultCommand::FillDisk { node } => Fault::FillDisk { node },
    };
    let leader = if fault.nodes().iter().any(|n| *n == "leader" || *n == "@leader") {
        super::health().await.leader().map(str::to_owned).unwrap_or_default()
    } else {
        String::new()
    };
    let fault = rename_leader(&fault).resolve(&leader, &docker::services()?);
    let record = inject(&fault, &[]);
    Ok(if record.error.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `leader` as the operator types it is `@leader` in a schedule.
fn rename_leader(f: &Fault) -> Fault {
    let s = serde_json::to_string(f).unwrap_or_default().replace("\"leader\"", "\"@leader\"");
    serde_json::from_str(&s).unwrap_or_else(|_| f.clone())
}

/// Does the fault, logs it (globally and in `also`), prints the line.
pub fn inject(fault: &Fault, also: &[PathBuf]) -> FaultRecord {
    let at = weir_testbed::now_ms();
    let error = match apply(fault) {
        Ok(()) => String::new(),
        Err(e) => format!("{e:#}"),
    };
    let record = FaultRecord::new(at, fault.clone(), error);
    let line = serde_json::to_string(&record).unwrap_or_default();
    for path in std::iter::once(global_log()).chain(also.iter().cloned()) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            let _ = writeln!(f, "{line}");
        }
    }
    println!("{record}");
    record
}

const IPTABLES_CHAIN: &str = "WEIR_TESTBED";
const FILL: &str = "/var/lib/weir/agent/sandboxes/.testbed-fill";

fn apply(fault: &Fault) -> Result<()> {
    for n in fault.nodes() {
        if n.starts_with('@') {
            bail!("{n} could not be resolved (no single leader?)");
        }
    }
    match fault {
        Fault::Kill { node } => docker::container_verb(&["kill", "-s", "KILL"], node),
        Fault::Restart { node } => match docker::state(node)?.as_str() {
            "paused" => {
                docker::container_verb(&["unpause"], node)?;
                docker::container_verb(&["restart", "-t", "2"], node)
            }
            "running" => docker::container_verb(&["restart", "-t", "2"], node),
            _ => docker::container_verb(&["start"], node),
        },
        Fault::Pause { node } => docker::container_verb(&["pause"], node),
        Fault::Unpause { node } => docker::container_verb(&["unpause"], node),
        Fault::Partition { a, b } => {
            if a.is_empty() || b.is_empty() {
                bail!("a partition needs two non-empty groups");
            }
            // A stopped node has no address and a frozen one takes no
            // commands: the cut is made between the running ones (a node
            // started later is not cut off).
            let running = |g: &[String]| -> Vec<String> { g.iter().filter(|n| docker::state(n).is_ok_and(|s| s == "running")).cloned().collect() };
            let (a, b) = (&running(a), &running(b));
            if a.is_empty() || b.is_empty() {
                bail!("a partition needs a running node on each side");
            }
            let ips = |g: &[String]| -> Result<Vec<String>> { g.iter().map(|n| docker::ip(n)).collect() };
            let (ia, ib) = (ips(a)?, ips(b)?);
            let mut problems = Vec::new();
            for (nodes, others) in [(a, &ib), (b, &ia)] {
                for n in nodes {
                    let script: String = others.iter().map(|ip| format!("ip route replace blackhole {ip}/32; ")).collect();
                    if let Err(e) = docker::exec(n, &["sh", "-c", &script]) {
                        problems.push(format!("{n}: {e:#}"));
                    }
                }
            }
            if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("; ")) }
        }
        Fault::Heal { nodes } => {
            let nodes: Vec<String> = if nodes.is_empty() { docker::services()? } else { nodes.clone() };
            let script = format!(
                "ip route show type blackhole | while read -r _ dst _; do ip route del blackhole \"$dst\"; done; \
                 tc qdisc del dev eth0 root 2>/dev/null; iptables -F {IPTABLES_CHAIN} 2>/dev/null; rm -f {FILL}; true"
            );
            let mut problems = Vec::new();
            for n in &nodes {
                match docker::state(n).as_deref() {
                    Ok("running") => {}
                    Ok(_) => continue, // nothing to heal in a stopped or frozen node
                    Err(e) => {
                        problems.push(format!("{n}: {e:#}"));
                        continue;
                    }
                }
                if let Err(e) = docker::exec(n, &["sh", "-c", &script]) {
                    problems.push(format!("{n}: {e:#}"));
                }
            }
            if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("; ")) }
        }
        Fault::Delay { node, ms, jitter_ms } => netem(node, &format!("delay {ms}ms {jitter_ms}ms")),
        Fault::Reorder { node, percent, ms } => netem(node, &format!("delay {ms}ms reorder {}% 50%", 100 - percent.min(&100))),
        Fault::Loss { node, percent } => match netem(node, &format!("loss {percent}%")) {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("no netem") => {
                let p = f64::from(*percent) / 100.0;
                let c = IPTABLES_CHAIN;
                let script = format!(
                    "iptables -N {c} 2>/dev/null; iptables -C INPUT -j {c} 2>/dev/null || iptables -I INPUT -j {c}; \
                     iptables -C OUTPUT -j {c} 2>/dev/null || iptables -I OUTPUT -j {c}; iptables -F {c}; \
                     iptables -A {c} -i eth0 -m statistic --mode random --probability {p} -j DROP && \
                     iptables -A {c} -o eth0 -m statistic --mode random --probability {p} -j DROP"
                );
                docker::exec(node, &["sh", "-c", &script]).map(|_| ())
            }
            Err(e) => Err(e),
        },
        Fault::FillDisk { node } => {
            let script = format!(
                "d=$(dirname {FILL}); avail=$(df --output=avail -B1 \"$d\" | tail -n1 | tr -d ' '); \
                 fallocate -l \"$avail\" {FILL} 2>/dev/null || dd if=/dev/zero of={FILL} bs=1M 2>/dev/null; \
                 df -h \"$d\" | tail -n1"
            );
            docker::exec(node, &["sh", "-c", &script]).map(|_| ())
        }
    }
}

/// `tc qdisc replace … netem ARGS`; a kernel without netem is said so.
fn netem(node: &str, args: &str) -> Result<()> {
    let cmd = format!("tc qdisc replace dev eth0 root netem {args}");
    match docker::exec(node, &["sh", "-c", &cmd]) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("qdisc kind is unknown") => {
            bail!("this kernel has no netem (CONFIG_NET_SCH_NETEM is off), so delay and reordering cannot be injected here; loss falls back to iptables")
        }
        Err(e) => Err(e),
    }
}
