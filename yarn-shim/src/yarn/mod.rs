//! The YARN layer on top of the IPC server: records (generated), ids, the
//! ResourceManager's deterministic core, and the protocol services that
//! convert wire messages to core calls and back.

pub mod am_protocol;
pub mod client_protocol;
pub mod convert;
pub mod ids;
pub mod records;
pub mod rm_core;
pub mod scheduler;
pub mod tokens;

/// `declaringClassProtocolName` of the client protocol (port 8032).
pub const APPLICATION_CLIENT_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ApplicationClientProtocolPB";
/// `declaringClassProtocolName` of the ApplicationMaster protocol (port 8030).
pub const APPLICATION_MASTER_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ApplicationMasterProtocolPB";
/// `declaringClassProtocolName` of the node managers' protocol.
pub const CONTAINER_MANAGEMENT_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ContainerManagementProtocolPB";
