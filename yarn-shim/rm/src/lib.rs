//! Weir's YARN ResourceManager. `rm_core` keeps the applications, queues
//! and nodes; `scheduler` the attempts, asks and containers, matched
//! against the broker's offers; `client_protocol` (port 8032) and
//! `am_protocol` (port 8030) decode calls, ask the cores and encode;
//! `shim` runs it all as a framework on the pool, and `hadoop_conf`
//! writes the client configuration that unchanged Hadoop clients read.
//!
//! Depends on `weir-yarn-api` (records, ids, tokens) and `weir-yarn-ipc`
//! (the IPC server and client), never on the node manager.

pub mod acl;
pub mod admin_protocol;
pub mod alloc_rate;
pub mod capacity_scheduler;
pub mod am_protocol;
pub mod client_protocol;
pub mod container_executor;
pub mod convert;
pub mod core;
pub mod fair_scheduler;
pub mod framework;
pub mod hadoop_conf;
pub mod metrics;
pub mod rm_core;
pub mod scheduler;
pub mod rest;
pub mod shim;
