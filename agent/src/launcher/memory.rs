//! A launcher that runs nothing: each "process" is an entry in a table that
//! a test ends by hand ([`MemoryLauncher::exit`]) or that a signal ends, as
//! a well-behaved process would. The table outlives the agents that use it
//! (share the launcher through an `Arc`), so a restarted agent finds the
//! tasks its predecessor started still running, as supervisors outlive a
//! real agent.
//!
//! It records every spawn and signal, so a test can check which effects
//! the shell carried out and when.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;
use weir_model::{FrameworkId, TaskId};
use weir_proto::v1;

use super::{Exit, ExitFuture, Launched, Launcher, Recovered};
use crate::core::Signal;
use crate::isolation::Usage;

struct Process {
    framework: FrameworkId,
    task: TaskId,
    /// `None` while it runs; every waiter sees the same end.
    ended: watch::Sender<Option<Exit>>,
}

#[derive(Default)]
struct Table {
    next_pid: u32,
    processes: BTreeMap<u32, Process>,
    spawned: Vec<(FrameworkId, TaskId)>,
    signals: Vec<(u32, Signal)>,
    /// Task id → the error its next spawn fails with.
    refuse: HashMap<String, String>,
    /// Processes that ignore SIGTERM (SIGKILL still ends them).
    stubborn: Vec<String>,
}

#[derive(Default)]
pub struct MemoryLauncher {
    table: Mutex<Table>,
}

impl MemoryLauncher {
    pub fn new() -> MemoryLauncher {
        MemoryLauncher { table: Mutex::new(Table { next_pid: 1000, ..Table::default() }) }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every task started so far, in order.
    pub fn spawned(&self) -> Vec<(FrameworkId, TaskId)> {
        self.table().spawned.clone()
    }

    /// Every signal sent so far, in order.
    pub fn signals(&self) -> Vec<(u32, Signal)> {
        self.table().signals.clone()
    }

    /// The pid of the task's running process.
    pub fn pid_of(&self, task: &str) -> Option<u32> {
        let table = self.table();
        table.processes.iter().find(|(_, p)| p.task.as_str() == task && p.ended.borrow().is_none()).map(|(pid, _)| *pid)
    }

    /// The next spawn of `task` fails with `error`.
    pub fn refuse(&self, task: &str, error: &str) {
        self.table().refuse.insert(task.to_owned(), error.to_owned());
    }

    /// `task`'s process ignores SIGTERM.
    pub fn ignore_term(&self, task: &str) {
        self.table().stubborn.push(task.to_owned());
    }

    /// Ends `task`'s running process; false if it has none.
    pub fn exit(&self, task: &str, exit: Exit) -> bool {
        let table = self.table();
        let running = table.processes.values().find(|p| p.task.as_str() == task && p.ended.borrow().is_none());
        match running {
            Some(p) => {
                p.ended.send_replace(Some(exit));
                true
            }
            None => false,
        }
    }

    fn waiter(ended: &watch::Sender<Option<Exit>>) -> ExitFuture {
        let mut rx = ended.subscribe();
        Box::pin(async move {
            match rx.wait_for(|e| e.is_some()).await {
                Ok(exit) => exit.clone().unwrap_or(Exit::KILLED),
                // The table went away with its launcher: nothing runs.
                Err(_) => Exit::KILLED,
            }
        })
    }
}

impl Launcher for MemoryLauncher {
    fn isolation(&self) -> &'static str {
        "none"
    }

    fn spawn(&self, _agent_id: &str, framework: &FrameworkId, task: &TaskId, _info: &v1::TaskInfo) -> Result<Launched, String> {
        let mut table = self.table();
        if let Some(error) = table.refuse.remove(task.as_str()) {
            return Err(error);
        }
        let pid = table.next_pid;
        table.next_pid += 1;
        let (ended, _) = watch::channel(None);
        let exit = MemoryLauncher::waiter(&ended);
        table.processes.insert(pid, Process { framework: framework.clone(), task: task.clone(), ended });
        table.spawned.push((framework.clone(), task.clone()));
        let sandbox = PathBuf::from("/memory/sandboxes").join(framework.as_str()).join(format!("{}.{pid}", task.as_str()));
        Ok(Launched { pid, sandbox, exit, notes: Vec::new() })
    }

    fn signal(&self, pid: u32, signal: Signal) {
        let mut table = self.table();
        table.signals.push((pid, signal));
        let Some(p) = table.processes.get(&pid) else { return };
        if signal == Signal::Term && table.stubborn.iter().any(|t| t == p.task.as_str()) {
            return;
        }
        let number = match signal {
            Signal::Term => 15,
            Signal::Kill => 9,
        };
        p.ended.send_if_modified(|e| {
            let running = e.is_none();
            if running {
                *e = Some(Exit::Ended { code: None, signal: Some(number), limitation: None });
            }
            running
        });
    }

    fn recover(&self, framework: &FrameworkId, task: &TaskId, pid: u32, _sandbox: &Path) -> Recovered {
        let table = self.table();
        let Some(p) = table.processes.get(&pid).filter(|p| &p.framework == framework && &p.task == task) else {
            return Recovered::Vanished(Exit::Ended { code: None, signal: None, limitation: None });
        };
        let ended = p.ended.borrow().clone();
        match ended {
            Some(exit) => Recovered::Ended(exit),
            None => Recovered::Running(MemoryLauncher::waiter(&p.ended)),
        }
    }

    fn usage(&self, _framework: &FrameworkId, _task: &TaskId) -> Option<Usage> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn processes_end_by_hand_or_by_signal_and_survive_for_a_restarted_agent() {
        let launcher = MemoryLauncher::new();
        let (f, info) = (FrameworkId::new("F"), v1::TaskInfo::default());
        let a = launcher.spawn("A", &f, &TaskId::new("a"), &info).unwrap();
        let b = launcher.spawn("A", &f, &TaskId::new("b"), &info).unwrap();
        assert!(launcher.exit("a", Exit::Ended { code: Some(3), signal: None, limitation: None }));
        assert_eq!(a.exit.await, Exit::Ended { code: Some(3), signal: None, limitation: None });

        // A second agent re-attaches to b; its end reaches that agent.
        let Recovered::Running(again) = launcher.recover(&f, &TaskId::new("b"), b.pid, &b.sandbox) else { panic!("b runs") };
        launcher.signal(b.pid, Signal::Term);
        assert_eq!(again.await, Exit::Ended { code: None, signal: Some(15), limitation: None });
        assert_eq!(b.exit.await, Exit::Ended { code: None, signal: Some(15), limitation: None });
        assert!(matches!(launcher.recover(&f, &TaskId::new("b"), b.pid, &b.sandbox), Recovered::Ended(_)));
        assert!(matches!(launcher.recover(&f, &TaskId::new("c"), 4242, Path::new("/x")), Recovered::Vanished(_)));

        launcher.refuse("d", "no such program");
        assert_eq!(launcher.spawn("A", &f, &TaskId::new("d"), &info).err().as_deref(), Some("no such program"));
        assert_eq!(launcher.spawned().len(), 2);
        assert_eq!(launcher.signals(), vec![(b.pid, Signal::Term)]);
    }
}
