//! Weir's YARN node manager: one per agent, run as a task of the YARN
//! framework. `service` serves ContainerManagementProtocol (NM-token SASL;
//! container tokens checked for key, expiry, node and application); each
//! container's task waits on a handoff socket (`handoff`, `container`);
//! `startContainers` localizes the launch context's resources
//! (`localize`) and writes Hadoop's launch script (`launch`), which the
//! container task then runs inside its own cgroup.
//!
//! Depends on `weir-yarn-api` and `weir-yarn-ipc`, never on the
//! ResourceManager.

pub mod body;
pub mod container;
pub mod error;
pub mod handoff;
pub mod identity;
pub mod launch;
pub mod layout;
pub mod localize;
pub mod service;
pub mod shuffle;
pub mod web;
