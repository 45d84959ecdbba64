//! The crate's one error type. Every message names the input that was
//! wrong: the file and line, the key, the value and where it came from.

use std::path::PathBuf;

/// Everything that can go wrong while loading or reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// A configuration file is not a well-formed Hadoop configuration file.
    #[error("{}:{line}: {message}", file.display())]
    Xml { file: PathBuf, line: u64, message: String },

    /// A configuration file exists but could not be read.
    #[error("cannot read {}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `--conf-dir` or `$WEIR_CONF_DIR` names something that is not a
    /// readable directory.
    #[error("configuration directory {} (from {origin}): {problem}", dir.display())]
    ConfDir { dir: PathBuf, origin: String, problem: String },

    /// A `-D` argument that is not `KEY=VALUE`.
    #[error("-D {arg:?}: expected KEY=VALUE with a non-empty KEY")]
    BadOverride { arg: String },

    /// A value longer than [`crate::MAX_VALUE_BYTES`] given with `-D` or
    /// [`crate::Config::set`].
    #[error("{key} from {origin}: value is {len} bytes long, more than the limit of {limit}")]
    ValueTooLong { key: String, origin: String, len: usize, limit: usize },

    /// A declared key that has no value (or an empty one).
    #[error("{key} is not set")]
    Unset { key: String },

    /// `weir conf get` asked for a key that no default file declares and no
    /// source sets.
    #[error("{key} is not set (no default file declares it{})", did_you_mean(suggestion))]
    UnknownKey { key: String, suggestion: Option<String> },

    /// A getter (or `set`) was called with a key that no default file
    /// declares: a bug in the caller, not in the user's configuration.
    #[error("{key} is not declared in any default file (conf/defaults/*-default.xml){}", did_you_mean(suggestion))]
    Undeclared { key: String, suggestion: Option<String> },

    /// A value does not have the type its getter expects.
    #[error("{key} = {value:?} (from {origin}): expected {expected}")]
    BadValue { key: String, value: String, origin: String, expected: String },

    /// `${...}` references in a value cannot be expanded.
    #[error("cannot expand {key} (from {origin}): {problem}")]
    Expansion { key: String, origin: String, problem: String },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean {s}?"),
        None => String::new(),
    }
}
