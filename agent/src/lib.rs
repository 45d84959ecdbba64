//! The Weir agent: reports a machine's resources to the broker and runs
//! the tasks it is sent, reporting every state change until acknowledged.
//!
//! [`core`] is the deterministic task lifecycle; [`shell`] is the broker
//! stream, the HTTP endpoint and the timers, and reaches the world only
//! through [`launcher`] (processes: [`launcher::process`], or
//! [`launcher::memory`] for tests), [`checkpoint`] (what survives a restart)
//! and a [`weir_model::Clock`]. [`isolation`] puts tasks in cgroups.
//! [`sandbox_files`] serves sandboxes without letting a path out of one;
//! [`http_auth`] decides who may read them.
//! [`copies`] keeps backed volumes' copies in their backing (HDFS).
//! [`detect`] finds the machine's resources. [`emulated`] are agents that
//! run nothing, for the scale harness. [`error`] is the one error type.

pub mod checkpoint;
pub mod copies;
pub mod core;
pub mod detect;
pub mod emulated;
pub mod error;
mod fnv;
pub mod http_auth;
pub mod isolation;
pub mod launcher;
pub mod sandbox_files;
pub mod shell;
pub mod users;
pub mod volumes;

pub use detect::detect_resources;
pub use error::AgentError;
pub use shell::{run, run_with, AgentEffects, AgentSettings};
