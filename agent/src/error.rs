//! The agent's one error enum. It lives in its own module so that every
//! other module (detection, checkpoints, the shell) imports it from here and
//! none of them imports another just for its error type.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot detect this machine's resources: {0}")]
    Detect(String),
    #[error("agent resources: {0}")]
    BadResources(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the broker refused this agent: {0}")]
    Refused(String),
    #[error("broker address {addr:?} is not valid: {reason}")]
    BadBroker { addr: String, reason: String },
    #[error("path {path:?} {reason}")]
    BadPath { path: String, reason: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
}
