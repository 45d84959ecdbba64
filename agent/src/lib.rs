//! The Weir agent: reports a machine's resources to the broker and runs
//! the tasks it is sent, reporting every state change until acknowledged.
//!
//! [`core`] is the deterministic task lifecycle; [`launcher`] starts and
//! signals processes; [`shell`] is the broker stream, the HTTP endpoint and
//! the timers. [`detect`] finds the machine's resources. [`emulated`] are
//! agents that run nothing, for the scale harness.

pub mod core;
pub mod detect;
pub mod emulated;
pub mod isolation;
pub mod launcher;
pub mod shell;

pub use detect::detect_resources;
pub use shell::{run, AgentError, AgentSettings};
