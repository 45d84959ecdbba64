//! The agent's effects on processes, behind one trait: start a task (with
//! its supervisor and isolation), signal its process group, find out about
//! a supervisor recorded in the checkpoint, wait for a task's end.
//!
//! [`process::ProcessLauncher`] is the real one; [`memory::MemoryLauncher`]
//! runs nothing and lets a test end tasks by hand, so the real shell can be
//! driven without processes.
//!
//! Contract the shell relies on: `spawn` returns once the task runs (or
//! could not be started) and its [`Launched::exit`] resolves exactly once,
//! when it has ended; the pid it names is the task's process group, the one
//! [`Launcher::signal`] reaches.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use weir_model::{FrameworkId, TaskId};
use weir_proto::v1;

use crate::core::{Input, Signal};
use crate::isolation::Usage;

pub mod memory;
pub mod process;

/// Resolves when a task has ended, with how it ended.
pub type ExitFuture = Pin<Box<dyn Future<Output = Exit> + Send + 'static>>;

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    /// Its supervisor could not start the command.
    NotStarted { error: String },
    /// `limitation`: a resource limit ended it (e.g. the OOM killer).
    Ended { code: Option<i32>, signal: Option<i32>, limitation: Option<String> },
}

impl Exit {
    /// Killed with SIGKILL (a supervisor that left no record was killed
    /// along with its task).
    pub const KILLED: Exit = Exit::Ended { code: None, signal: Some(9), limitation: None };

    /// What the core is told.
    pub fn into_input(self, framework: FrameworkId, task: TaskId) -> Input {
        match self {
            Exit::NotStarted { error } => Input::SpawnFailed { framework, task, error },
            Exit::Ended { code, signal, limitation } => Input::Exited { framework, task, code, signal, limitation },
        }
    }
}

/// A started task.
pub struct Launched {
    pub pid: u32,
    pub sandbox: PathBuf,
    pub exit: ExitFuture,
    /// For the RUNNING update's message (e.g. a volume that could only be
    /// linked, not bind-mounted); empty normally.
    pub notes: Vec<String>,
}

/// What became of a supervisor named in the checkpoint.
pub enum Recovered {
    /// Still running: re-attached, and watched until it ends.
    Running(ExitFuture),
    /// Ended while the agent was down and recorded how.
    Ended(Exit),
    /// Gone without a record.
    Vanished(Exit),
}

pub trait Launcher: Send + Sync + 'static {
    /// `cgroups` or `none`, for `/state`.
    fn isolation(&self) -> &'static str;

    /// Isolates and starts a task in a fresh sandbox. It may block for a
    /// few milliseconds, so the shell calls it off its event loop. The error
    /// says why the task could not start.
    fn spawn(&self, agent_id: &str, framework: &FrameworkId, task: &TaskId, info: &v1::TaskInfo) -> Result<Launched, String>;

    /// Signals the task's whole process group; one already gone is fine.
    fn signal(&self, pid: u32, signal: Signal);

    /// A task whose supervisor `pid` the checkpoint names.
    fn recover(&self, framework: &FrameworkId, task: &TaskId, pid: u32, sandbox: &Path) -> Recovered;

    /// What a running task uses now; `None` without isolation.
    fn usage(&self, framework: &FrameworkId, task: &TaskId) -> Option<Usage>;
}
