//! What both halves of Weir's YARN side speak: the YARN records generated
//! from Hadoop's `.proto` files (Hadoop's field numbers), YARN's ids with
//! their string forms, the YARN resource (memory, vcores), conversions
//! between records and these types, the tokens (AMRM, NM, container: the
//! identifiers Hadoop encodes and their HMAC passwords), container exit
//! statuses and the protocol names.
//!
//! Invariants: conversions from the wire validate what the typed side
//! relies on and name the bad field; a token verifies only under the key
//! that signed it and only until it expires. No I/O, no clocks (time comes
//! in as milliseconds since the epoch).
//!
//! Imported by `weir-yarn-rm` and `weir-yarn-nm`, which never import each
//! other.

pub mod convert;
pub mod exit_status;
pub mod ids;
pub mod records;
pub mod resource;
pub mod tokens;

/// `declaringClassProtocolName` of the client protocol (port 8032).
pub const APPLICATION_CLIENT_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ApplicationClientProtocolPB";
/// `declaringClassProtocolName` of the ApplicationMaster protocol (port 8030).
pub const APPLICATION_MASTER_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ApplicationMasterProtocolPB";
/// `declaringClassProtocolName` of the node managers' protocol.
pub const CONTAINER_MANAGEMENT_PROTOCOL: &str = "org.apache.hadoop.yarn.api.ContainerManagementProtocolPB";
/// `declaringClassProtocolName` of the RM's admin protocol (port 8033, `yarn rmadmin`).
pub const RESOURCE_MANAGER_ADMINISTRATION_PROTOCOL: &str = "org.apache.hadoop.yarn.server.api.ResourceManagerAdministrationProtocolPB";
/// `declaringClassProtocolName` of the HA status protocol (`yarn rmadmin -getServiceState`; its `@ProtocolInfo` name).
pub const HA_SERVICE_PROTOCOL: &str = "org.apache.hadoop.ha.HAServiceProtocol";
/// `declaringClassProtocolName` of the group lookup protocol (its `@ProtocolInfo` name).
pub const GET_USER_MAPPINGS_PROTOCOL: &str = "org.apache.hadoop.tools.GetUserMappingsProtocol";
/// YARN's name for the one rack the shim knows.
pub const DEFAULT_RACK: &str = "/default-rack";
