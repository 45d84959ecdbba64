//! Hadoop IPC v9, the security boundary of Weir's YARN side: the 7-byte
//! preamble and bounded frames (`frame`), request and response headers
//! (`header`), the per-connection protocol as a synchronous state machine
//! (`connection`: preamble → SASL → connection context → calls), the async
//! server and client shells around it, and `security`: SASL DIGEST-MD5,
//! token secret managers and Hadoop's credentials file.
//!
//! Invariants: nothing past the handshake is read or buffered before a
//! connection has authenticated as its policy requires; every length is
//! checked against a bound before anything is allocated; every violation
//! ends the connection with a FATAL response that says what was wrong.
//! This crate knows nothing of YARN: protocols are `server::Service`s.

pub mod client;
pub mod connection;
pub mod error;
pub mod frame;
pub mod header;
pub mod proto;
pub mod security;
pub mod server;

pub use error::Error;
