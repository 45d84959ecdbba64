//! Hadoop IPC v9: framing, headers, the connection state machine, and the
//! async server and client shells around it.

pub mod client;
pub mod connection;
pub mod frame;
pub mod header;
pub mod server;
