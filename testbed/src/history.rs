//! A scenario run's record.
//!
//! - `history.jsonl`: what the workload's framework did and heard, one
//!   [`Event`] a line, in the order it happened;
//! - `exec/<task>`: what each task's own process wrote when it started and
//!   when it ended ([`Exec`]) — the truth about what ran, where and when,
//!   independent of what Weir reported;
//! - `books.json`: the leading broker's and every agent's tasks after the
//!   run healed and quietened ([`Books`]);
//! - `faults.jsonl`: the fault timeline ([`crate::fault::FaultRecord`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One thing the workload's framework did or heard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// (Re-)subscribed, to the broker leading `epoch`.
    Subscribed { at_ms: u64, framework_id: String, epoch: u64 },
    /// An ACCEPT carrying this task was sent.
    Launch { at_ms: u64, task: String, agent_id: String, hostname: String },
    /// A status update, as received (before acknowledging it).
    Update {
        at_ms: u64,
        task: String,
        state: String,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        source: String,
        /// Hex; empty for updates the broker made up (reconciliation).
        #[serde(default)]
        uuid: String,
        #[serde(default)]
        agent_id: String,
        #[serde(default)]
        message: String,
    },
    /// The stream to the broker broke (the SDK re-subscribes).
    Disconnected { at_ms: u64, error: String },
    /// An explicit reconciliation of this many tasks.
    Reconcile { at_ms: u64, tasks: usize },
}

impl Event {
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::Subscribed { at_ms, .. }
            | Event::Launch { at_ms, .. }
            | Event::Update { at_ms, .. }
            | Event::Disconnected { at_ms, .. }
            | Event::Reconcile { at_ms, .. } => *at_ms,
        }
    }
}

/// Reads history.jsonl; a line that does not parse (the last one of a
/// killed writer) is reported, not fatal.
pub fn parse_history(text: &str) -> (Vec<Event>, Vec<String>) {
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(e) => events.push(e),
            Err(e) => bad.push(format!("history line {}: {e}", i + 1)),
        }
    }
    (events, bad)
}

/// One run of a task's process, from its own records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    pub task: String,
    pub host: String,
    pub pid: u32,
    pub start_ms: u64,
    /// When it ended and with what code, if it got that far.
    pub end: Option<(u64, i32)>,
}

/// The shell a task runs: it notes its start and end in `dir/<task>`
/// (`start MS HOST PID`, `end MS HOST PID CODE`), sleeps `run_ms` and
/// exits with `code`.
pub fn task_command(dir: &str, task: &str, run_ms: u64, code: i32) -> String {
    format!(
        "f={dir}/{task}; echo \"start $(date +%s%3N) $(hostname) $$\" >> $f; sleep {}.{:03}; \
         echo \"end $(date +%s%3N) $(hostname) $$ {code}\" >> $f; exit {code}",
        run_ms / 1000,
        run_ms % 1000
    )
}

/// The runs recorded in one task's file; each `end` closes the `start` of
/// the same host and pid.
pub fn parse_exec(task: &str, text: &str) -> Vec<Exec> {
    let mut out: Vec<Exec> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["start", ms, host, pid] => {
                if let (Ok(ms), Ok(pid)) = (ms.parse(), pid.parse()) {
                    out.push(Exec { task: task.to_owned(), host: (*host).to_owned(), pid, start_ms: ms, end: None });
                }
            }
            ["end", ms, host, pid, code] => {
                if let (Ok(ms), Ok(pid), Ok(code)) = (ms.parse(), pid.parse::<u32>(), code.parse()) {
                    if let Some(e) = out.iter_mut().rev().find(|e| e.host == *host && e.pid == pid && e.end.is_none()) {
                        e.end = Some((ms, code));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A task the books hold, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BookTask {
    pub framework_id: String,
    pub task: String,
    pub agent_id: String,
    pub state: String,
}

/// What the leader and the agents said after the run quietened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Books {
    /// The leading broker's node and epoch.
    pub leader: String,
    pub epoch: u64,
    /// Brokers that said they lead (more than one is a split brain).
    pub leaders: Vec<String>,
    /// Live tasks in the leader's books.
    pub broker_tasks: Vec<BookTask>,
    /// Agents the leader knows: id → (hostname, reachable).
    pub agents: BTreeMap<String, (String, bool)>,
    /// Agents the leader marked gone.
    #[serde(default)]
    pub gone_agents: Vec<String>,
    /// Live tasks each agent reports on its own /state, by agent id.
    pub agent_tasks: BTreeMap<String, Vec<BookTask>>,
    /// Agents whose /state could not be read: id → why.
    #[serde(default)]
    pub unreadable_agents: BTreeMap<String, String>,
    /// Offers outstanding to frameworks that are not connected.
    pub offers_to_inactive: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_notes_its_runs_and_the_parser_pairs_starts_with_ends() {
        let cmd = task_command("/testbed/runs/r1/exec", "t7", 1250, 3);
        assert!(cmd.contains("sleep 1.250;"), "{cmd}");
        assert!(cmd.contains("$(hostname) $$ 3\" >> $f; exit 3"), "{cmd}");
        let text = "start 100 agent1 40\nstart 150 agent2 41\nend 160 agent2 41 0\ngarbage\nend 300 agent1 40 1\nstart 400 agent1 40\n";
        let runs = parse_exec("t7", text);
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].end, Some((300, 1)));
        assert_eq!(runs[1].end, Some((160, 0)));
        assert_eq!(runs[2], Exec { task: "t7".into(), host: "agent1".into(), pid: 40, start_ms: 400, end: None });
    }

    #[test]
    fn history_lines_round_trip_and_a_torn_last_line_is_reported() {
        let e = Event::Update {
            at_ms: 5,
            task: "t1".into(),
            state: "TASK_RUNNING".into(),
            reason: String::new(),
            source: "SOURCE_AGENT".into(),
            uuid: "ab".into(),
            agent_id: "A1".into(),
            message: String::new(),
        };
        let text = format!("{}\n{{\"event\":\"upd", serde_json::to_string(&e).unwrap());
        let (events, bad) = parse_history(&text);
        assert_eq!(events, vec![e]);
        assert_eq!(bad.len(), 1, "{bad:?}");
    }
}
