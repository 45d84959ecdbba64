//! Listeners that stay up under hostile load.
//!
//! Every port Weir opens to the network (the broker's gRPC+HTTP port, the
//! agent's HTTP port, the YARN shim's Hadoop IPC ports, the node
//! manager's ports) accepts through an [`AdmittingListener`]: a cap on
//! open connections per listener and per peer address, so one flood
//! cannot take the file descriptors the other ports need, and a back-off
//! on accept errors (EMFILE) instead of a log line per failed accept.
//! [`rlimit::raise_open_file_limit`] lifts the soft open-file limit to the
//! hard one at start; [`http::serve`] (feature `http`) serves an axum
//! router with header-read and request timeouts; [`secret`] reads token
//! and key files, refusing ones others may read; [`tokens`] (feature
//! `auth`) reads bearer-token files; [`throttle`] bounds the log lines
//! refused clients can cause.
//!
//! Invariant: a connection counts against its caps from accept until its
//! [`Admitted`] stream is dropped, never longer.

pub mod admission;
#[cfg(feature = "http")]
pub mod http;
pub mod listener;
pub mod rlimit;
pub mod secret;
pub mod throttle;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "auth")]
pub mod tokens;

pub use admission::{Admission, ConnectionLimits, Permit, Refusal};
pub use listener::{Admitted, AdmittingListener};
