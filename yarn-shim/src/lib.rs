//! Weir's YARN shim: the Hadoop IPC v9 protocol layer (framing, headers, an
//! async server and client), SASL DIGEST-MD5 with token authentication, a
//! token secret manager and the Hadoop credentials file format.
//!
//! The YARN protocols are [`ipc::server::Service`]s registered on
//! [`ipc::server::Server`]: `yarn` holds the records, the ResourceManager's
//! deterministic core and the ApplicationClientProtocol service.

pub mod error;
pub mod hadoop_conf;
pub mod ipc;
pub mod nm;
pub mod proto;
pub mod security;
pub mod shim;
pub mod yarn;

pub use error::Error;
