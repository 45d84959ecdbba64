//! Weir's YARN shim: the Hadoop IPC v9 protocol layer (framing, headers, an
//! async server and client), SASL DIGEST-MD5 with token authentication, a
//! token secret manager and the Hadoop credentials file format.
//!
//! The ResourceManager and NodeManager protocols will be built on top of
//! [`ipc::server::Server`] by registering [`ipc::server::Service`]s.

pub mod error;
pub mod ipc;
pub mod proto;
pub mod security;

pub use error::Error;
