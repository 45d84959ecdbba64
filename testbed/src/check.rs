//! The checker: what one scenario run must show, whatever faults it had.
//!
//! 1. **One terminal state**: every task the workload launched reached a
//!    terminal state, and only one (a task heard LOST then FINISHED broke
//!    the promise); nothing non-terminal came after it.
//! 2. **At most once**: each task's process ran at most once (task ids are
//!    never reused, and Weir never starts a task twice), so never two at a
//!    time; and no process ran for a task that was never launched.
//! 3. **No lost update**: a process that ended by itself on a node that
//!    was not killed meanwhile was reported as it ended (exit 0: FINISHED,
//!    else FAILED) — unless the broker removed its agent and said so
//!    (GONE, REASON_AGENT_REMOVED: then the agent's last updates are
//!    acknowledged by the broker, by design). A task that ran was never
//!    reported DROPPED or ERROR (which say it did not).
//! 4. **Books**: after healing, one broker leads; the tasks in its books
//!    are exactly the tasks the agents run, on the same agents; every
//!    agent is reachable or marked gone; no offer waits on a framework
//!    that is not connected.
//! 5. **Convergence**: all of that held within the stated bound after the
//!    last fault was healed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use weir_model::TaskState;

use crate::fault::FaultRecord;
use crate::history::{BookTask, Books, Event, Exec};

/// A run, as saved in its folder.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub events: Vec<Event>,
    pub execs: Vec<Exec>,
    pub faults: Vec<FaultRecord>,
    pub books: Option<Books>,
    /// Milliseconds from the last heal until the books converged; `None`
    /// when they never did within the wait.
    pub converged_ms: Option<u64>,
    /// The bound on that, milliseconds.
    pub bound_ms: u64,
    /// The workload's framework id(s) (one, or more after a re-subscribe
    /// with a new id, which would itself be a problem).
    pub framework_ids: Vec<String>,
}

/// What the checker found.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tasks_launched: usize,
    pub updates: usize,
    pub execs: usize,
    pub faults: usize,
    pub terminal: BTreeMap<String, usize>,
    pub converged_ms: Option<u64>,
    pub bound_ms: u64,
    pub violations: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

fn state(name: &str) -> Option<TaskState> {
    use TaskState::*;
    [Staging, Starting, Running, Killing, Finished, Failed, Killed, Error, Unreachable, Gone, Dropped, Unknown]
        .into_iter()
        .find(|s| s.name() == name)
}

/// Whether a state's name (`TASK_FINISHED`…) is a terminal state.
pub fn is_terminal(name: &str) -> bool {
    state(name).is_some_and(TaskState::is_terminal)
}

/// Checks a run; every broken promise is one line of `violations`.
pub fn check(run: &Run) -> Report {
    let mut v = Vec::new();
    let mut launched: BTreeMap<&str, u64> = BTreeMap::new();
    let mut updates: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &run.events {
        match e {
            Event::Launch { task, at_ms, .. } if launched.insert(task, *at_ms).is_some() => {
                v.push(format!("{task}: launched twice (task ids must be unique)"));
            }
            Event::Update { task, .. } => updates.entry(task).or_default().push(e),
            _ => {}
        }
    }
    let mut report = Report {
        tasks_launched: launched.len(),
        updates: updates.values().map(Vec::len).sum(),
        execs: run.execs.len(),
        faults: run.faults.len(),
        converged_ms: run.converged_ms,
        bound_ms: run.bound_ms,
        ..Report::default()
    };

    // 1. One terminal state each, nothing after it.
    let mut final_state: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for task in launched.keys() {
        let heard = updates.get(task).map(Vec::as_slice).unwrap_or(&[]);
        let mut terminals: Vec<(&str, &str)> = Vec::new();
        for u in heard {
            let Event::Update { state, reason, .. } = u else { continue };
            if is_terminal(state) {
                if !terminals.iter().any(|(s, _)| s == state) {
                    terminals.push((state, reason));
                }
            } else if let Some((first, _)) = terminals.first() {
                v.push(format!("{task}: {state} heard after its terminal {first}"));
            }
        }
        match terminals.as_slice() {
            [] => v.push(format!(
                "{task}: never reached a terminal state (last heard: {})",
                heard.last().map_or("nothing".to_owned(), |u| match u {
                    Event::Update { state, .. } => state.clone(),
                    _ => String::new(),
                })
            )),
            [one] => {
                final_state.insert(task, *one);
                *report.terminal.entry(one.0.to_owned()).or_default() += 1;
            }
            many => {
                let names: Vec<String> = many.iter().map(|(s, r)| if r.is_empty() { (*s).to_owned() } else { format!("{s} ({r})") }).collect();
                v.push(format!("{task}: reached {} terminal states: {}", many.len(), names.join(" then ")));
                final_state.insert(task, many[0]);
            }
        }
    }
    for (task, heard) in &updates {
        if !launched.contains_key(task) {
            let states: Vec<&str> = heard.iter().filter_map(|u| if let Event::Update { state, .. } = u { Some(state.as_str()) } else { None }).collect();
            v.push(format!("{task}: updates for a task never launched: {}", states.join(", ")));
        }
    }

    // 2. At most once.
    let mut runs: BTreeMap<&str, Vec<&Exec>> = BTreeMap::new();
    for e in &run.execs {
        runs.entry(&e.task).or_default().push(e);
    }
    for (task, execs) in &runs {
        if !launched.contains_key(task) {
            v.push(format!("{task}: a process ran for a task never launched (on {})", execs[0].host));
        }
        if execs.len() > 1 {
            let mut sorted = execs.clone();
            sorted.sort_by_key(|e| e.start_ms);
            let overlap = sorted.windows(2).any(|w| w[0].end.is_none_or(|(end, _)| end > w[1].start_ms));
            let places: Vec<String> = sorted
                .iter()
                .map(|e| format!("{} pid {} from {}{}", e.host, e.pid, e.start_ms, e.end.map_or(" (no end)".to_owned(), |(m, _)| format!(" to {m}"))))
                .collect();
            v.push(format!(
                "{task}: ran {} times{}: {}",
                execs.len(),
                if overlap { ", two at a time" } else { "" },
                places.join("; ")
            ));
        }
    }

    // 3. No lost update.
    for (task, execs) in &runs {
        let Some((heard, reason)) = final_state.get(task).copied() else { continue };
        if matches!(heard, "TASK_DROPPED" | "TASK_ERROR") {
            v.push(format!("{task}: ran on {} but was reported {heard}", execs[0].host));
            continue;
        }
        let [exec] = execs.as_slice() else { continue };
        let Some((end_ms, code)) = exec.end else { continue };
        // A node killed or restarted between the start and a little after
        // the end may have taken the exit status with it.
        let killed = run.faults.iter().any(|f| f.fault.kills(&exec.host) && f.at_ms + 1000 >= exec.start_ms && f.at_ms <= end_ms + 30_000);
        let removed = heard == "TASK_GONE" && reason == "REASON_AGENT_REMOVED";
        let expected = if code == 0 { "TASK_FINISHED" } else { "TASK_FAILED" };
        if heard != expected && !killed && !removed {
            v.push(format!("{task}: its process exited {code} on {} at {end_ms} but the framework heard {heard}{}", exec.host, if reason.is_empty() { String::new() } else { format!(" ({reason})") }));
        }
    }

    // 4. The books, after healing.
    match &run.books {
        None => v.push("no books: the run ended before the leader's and agents' tasks were read".to_owned()),
        Some(b) => {
            v.extend(book_violations(b));
            for t in &b.broker_tasks {
                if run.framework_ids.contains(&t.framework_id) && final_state.contains_key(t.task.as_str()) {
                    v.push(format!("{}: the leader still holds it ({}) but the framework heard it end", t.task, t.state));
                }
            }
        }
    }

    // 5. Convergence.
    match run.converged_ms {
        Some(ms) if ms <= run.bound_ms => {}
        Some(ms) => v.push(format!("converged {:.1} s after healing, past the bound of {:.1} s", ms as f64 / 1e3, run.bound_ms as f64 / 1e3)),
        None => v.push(format!("did not converge within {:.1} s after healing", run.bound_ms as f64 / 1e3)),
    }
    report.violations = v;
    report
}

/// What is wrong with the books of a quiet cluster: not exactly one
/// leader; an agent neither reachable nor gone; a task the leader books
/// that its agent does not run, or the other way round; an agent whose
/// state cannot be read; an offer waiting on a framework that is gone.
/// Empty once the cluster has converged.
pub fn book_violations(b: &Books) -> Vec<String> {
    let mut v = Vec::new();
    if b.leaders.len() != 1 {
        v.push(format!("{} brokers lead after healing: {:?}", b.leaders.len(), b.leaders));
    }
    for (id, (host, reachable)) in &b.agents {
        if !reachable && !b.gone_agents.contains(id) {
            v.push(format!("agent {id} ({host}) is neither reachable nor marked gone after healing"));
        }
    }
    let in_books: BTreeSet<(&str, &str, &str)> =
        b.broker_tasks.iter().map(|t| (t.framework_id.as_str(), t.task.as_str(), t.agent_id.as_str())).collect();
    let on_agents: BTreeSet<(&str, &str, &str)> =
        b.agent_tasks.values().flatten().map(|t: &BookTask| (t.framework_id.as_str(), t.task.as_str(), t.agent_id.as_str())).collect();
    for (fw, task, agent) in in_books.difference(&on_agents) {
        if !b.unreadable_agents.contains_key(*agent) {
            v.push(format!("{fw}/{task}: the leader books it on {agent}, which does not run it"));
        }
    }
    for (fw, task, agent) in on_agents.difference(&in_books) {
        v.push(format!("{fw}/{task}: agent {agent} runs it but the leader's books do not hold it there"));
    }
    for (id, why) in &b.unreadable_agents {
        v.push(format!("agent {id}: its own state could not be read after healing: {why}"));
    }
    for o in &b.offers_to_inactive {
        v.push(format!("offer {o} is outstanding to a framework that is not connected"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    fn launch(task: &str, at: u64) -> Event {
        Event::Launch { at_ms: at, task: task.into(), agent_id: "A1".into(), hostname: "agent1".into() }
    }

    fn update(task: &str, at: u64, state: &str, reason: &str) -> Event {
        Event::Update {
            at_ms: at,
            task: task.into(),
            state: state.into(),
            reason: reason.into(),
            source: "SOURCE_AGENT".into(),
            uuid: format!("{at:x}"),
            agent_id: "A1".into(),
            message: String::new(),
        }
    }

    fn exec(task: &str, host: &str, pid: u32, start: u64, end: Option<(u64, i32)>) -> Exec {
        Exec { task: task.into(), host: host.into(), pid, start_ms: start, end }
    }

    fn books() -> Books {
        Books {
            leader: "broker1".into(),
            epoch: 2,
            leaders: vec!["broker1".into()],
            agents: [("A1".to_owned(), ("agent1".to_owned(), true))].into_iter().collect(),
            ..Books::default()
        }
    }

    /// A clean run: two tasks, one finished, one failed, as their
    /// processes ended; the books are empty; converged in time.
    fn clean() -> Run {
        Run {
            events: vec![
                launch("t1", 10),
                launch("t2", 11),
                update("t1", 20, "TASK_STARTING", ""),
                update("t1", 21, "TASK_RUNNING", ""),
                update("t2", 22, "TASK_RUNNING", ""),
                update("t1", 120, "TASK_FINISHED", ""),
                update("t2", 130, "TASK_FAILED", ""),
                update("t2", 131, "TASK_FAILED", ""),
            ],
            execs: vec![exec("t1", "agent1", 7, 21, Some((119, 0))), exec("t2", "agent1", 8, 22, Some((129, 3)))],
            books: Some(books()),
            converged_ms: Some(4_000),
            bound_ms: 60_000,
            framework_ids: vec!["F1".into()],
            ..Run::default()
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let r = check(&clean());
        assert!(r.ok(), "{:?}", r.violations);
        assert_eq!((r.tasks_launched, r.execs), (2, 2));
        assert_eq!(r.terminal.get("TASK_FAILED"), Some(&1));
    }

    /// The checker must be able to fail: a task whose process ran twice
    /// (on two agents, at the same time) is caught.
    #[test]
    fn a_task_run_twice_is_caught() {
        let mut run = clean();
        run.execs.push(exec("t1", "agent2", 9, 50, None));
        let r = check(&run);
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(r.violations[0].starts_with("t1: ran 2 times, two at a time: agent1 pid 7"), "{}", r.violations[0]);
        // One after the other is still twice.
        let mut run = clean();
        run.execs.push(exec("t1", "agent2", 9, 200, Some((300, 0))));
        let r = check(&run);
        assert!(r.violations[0].starts_with("t1: ran 2 times: "), "{:?}", r.violations);
    }

    /// A lost update is caught: the process finished, nobody killed its
    /// node, but the framework only ever heard RUNNING; or it heard a
    /// made-up LOST instead of the FINISHED the agent must have sent.
    #[test]
    fn a_lost_update_is_caught() {
        let mut run = clean();
        run.events.retain(|e| !matches!(e, Event::Update { task, state, .. } if task == "t1" && state == "TASK_FINISHED"));
        let r = check(&run);
        assert_eq!(r.violations, vec!["t1: never reached a terminal state (last heard: TASK_RUNNING)".to_owned()]);

        let mut run = clean();
        for e in &mut run.events {
            if let Event::Update { task, state, .. } = e {
                if task == "t1" && state == "TASK_FINISHED" {
                    *state = "TASK_GONE".into();
                }
            }
        }
        let r = check(&run);
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(r.violations[0].contains("t1: its process exited 0 on agent1 at 119 but the framework heard TASK_GONE"), "{:?}", r.violations);

        // Not when its agent was removed and the broker said so, nor when
        // the node was killed around its end.
        let mut removed = run.clone();
        for e in &mut removed.events {
            if let Event::Update { task, state, reason, .. } = e {
                if task == "t1" && state == "TASK_GONE" {
                    *reason = "REASON_AGENT_REMOVED".into();
                }
            }
        }
        assert!(check(&removed).ok(), "{:?}", check(&removed).violations);
        let mut killed = run.clone();
        killed.faults.push(FaultRecord::new(125, Fault::Kill { node: "agent1".into() }, String::new()));
        assert!(check(&killed).ok(), "{:?}", check(&killed).violations);
    }

    #[test]
    fn two_terminal_states_and_updates_after_the_end_are_caught() {
        let mut run = clean();
        run.events.insert(5, update("t1", 100, "TASK_UNREACHABLE", ""));
        run.events.push(update("t1", 140, "TASK_GONE", "REASON_AGENT_REMOVED"));
        run.events.push(update("t1", 150, "TASK_RUNNING", ""));
        let r = check(&run);
        assert!(r.violations.iter().any(|v| v == "t1: reached 2 terminal states: TASK_FINISHED then TASK_GONE (REASON_AGENT_REMOVED)"), "{:?}", r.violations);
        assert!(r.violations.iter().any(|v| v == "t1: TASK_RUNNING heard after its terminal TASK_FINISHED"), "{:?}", r.violations);
    }

    #[test]
    fn books_that_disagree_and_slow_convergence_are_caught() {
        let mut run = clean();
        let t = |task: &str, agent: &str| BookTask { framework_id: "F9".into(), task: task.into(), agent_id: agent.into(), state: "TASK_RUNNING".into() };
        let b = run.books.as_mut().unwrap();
        b.broker_tasks = vec![t("x", "A1"), t("y", "A1")];
        b.agent_tasks.insert("A1".into(), vec![t("x", "A1"), t("z", "A1")]);
        b.agents.insert("A2".into(), ("agent2".into(), false));
        b.leaders.push("broker3".into());
        run.converged_ms = Some(61_000);
        let r = check(&run);
        let expected = [
            "2 brokers lead after healing",
            "agent A2 (agent2) is neither reachable nor marked gone",
            "F9/y: the leader books it on A1, which does not run it",
            "F9/z: agent A1 runs it but the leader's books do not hold it there",
            "converged 61.0 s after healing, past the bound of 60.0 s",
        ];
        for e in expected {
            assert!(r.violations.iter().any(|v| v.starts_with(e)), "missing {e:?} in {:?}", r.violations);
        }
        assert_eq!(r.violations.len(), expected.len(), "{:?}", r.violations);
    }

    #[test]
    fn a_process_for_a_task_never_launched_and_a_dropped_task_that_ran_are_caught() {
        let mut run = clean();
        run.execs.push(exec("ghost", "agent3", 5, 10, None));
        for e in &mut run.events {
            if let Event::Update { task, state, .. } = e {
                if task == "t2" && state == "TASK_FAILED" {
                    *state = "TASK_DROPPED".into();
                }
            }
        }
        let r = check(&run);
        assert!(r.violations.contains(&"ghost: a process ran for a task never launched (on agent3)".to_owned()), "{:?}", r.violations);
        assert!(r.violations.contains(&"t2: ran on agent1 but was reported TASK_DROPPED".to_owned()), "{:?}", r.violations);
    }
}
