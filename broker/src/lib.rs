//! The Weir broker: Mesos' master role. [`core`] is the deterministic state
//! machine that keeps the books (agents, frameworks, offers, tasks) and
//! drives the allocator; [`shell`] wires it to gRPC streams, HTTP and timers.

pub mod acl;
pub mod bench;
pub mod core;
pub mod shell;

pub use crate::core::{BrokerCore, BrokerSettings, ConnId, Output};
pub use crate::shell::{new_instance_id, run, run_leader, serve_standby, BrokerError, Leading, RunningBroker, ShellSettings, Standby, UiSettings};
