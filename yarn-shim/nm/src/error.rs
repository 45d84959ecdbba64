//! The error of the node manager's newer parts (directory layout, the
//! shuffle service, container logs over HTTP). Each message names the input
//! that was wrong and why, so a refusal in the log explains itself.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NmError {
    /// A user, application, container or file name that cannot be a single
    /// path component under the node manager's directories.
    #[error("{what} {value:?} cannot name a directory: {why}")]
    BadName { what: &'static str, value: String, why: &'static str },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    /// Service data or a map output index that is not what Hadoop writes.
    #[error("{what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
}

impl NmError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> NmError {
        NmError::Io { action, path: path.into(), source }
    }
}
