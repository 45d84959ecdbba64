//! Dynamic reservations and persistent volumes: what a RESERVE or CREATE
//! made on one agent.
//!
//! A [`Reservation`] sets a bundle of an agent's resources aside for a role
//! (on top of the static `name(role):value` ones from the agent's
//! configuration); a [`Volume`] is a directory on the agent that lives on
//! part of a reservation's disk and outlives the tasks that use it.
//! Invariants the books keep (the broker's `check_invariants` and the
//! agent's checkpoint check them): every volume names a reservation of its
//! role on the same agent, and the volumes on a reservation together need
//! no more disk than it holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{FrameworkId, Milli, ReservationId, Resources, Role, VolumeId};

/// The longest `container_path` accepted.
pub const MAX_CONTAINER_PATH: usize = 1024;
/// The most labels on one reservation.
pub const MAX_LABELS: usize = 64;
/// The longest label key or value.
pub const MAX_LABEL_LEN: usize = 1024;

/// Resources on one agent reserved for one role by a RESERVE.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    pub role: Role,
    /// Who asked: the framework's principal or the operator's.
    pub principal: String,
    pub labels: BTreeMap<String, String>,
    /// Never empty.
    pub resources: Resources,
    /// The framework that made it (`None`: an operator). A framework that
    /// asks for its reservations to go at teardown releases only these.
    pub framework: Option<FrameworkId>,
}

/// A persistent volume on part of a reservation's disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Volume {
    pub id: VolumeId,
    pub role: Role,
    /// The reservation whose disk it lives on (same agent, same role).
    pub reservation: ReservationId,
    /// Disk in MiB; never zero.
    pub size: Milli,
    /// Where a task sees it, relative to its sandbox, unless the task's
    /// mount names another path.
    pub container_path: String,
    /// The framework that created it (`None`: an operator; then any
    /// framework of the role may use it).
    pub owner: Option<FrameworkId>,
    /// Offered to every framework of the role, not only its owner.
    pub shared: bool,
    pub principal: String,
    /// Where the agent keeps a durable copy (`hdfs://…` or `file:///…`),
    /// checked by [`validate_backing`]; with one the volume can move to
    /// another agent.
    pub backing: Option<String>,
}

impl Volume {
    /// Whether a framework of the volume's role may see and mount it.
    pub fn visible_to(&self, framework: &FrameworkId) -> bool {
        self.shared || self.owner.as_ref().is_none_or(|owner| owner == framework)
    }
}

/// A task's use of a volume.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VolumeMount {
    pub volume: VolumeId,
    /// Relative to the sandbox; checked by [`validate_container_path`].
    pub container_path: String,
    pub read_only: bool,
}

/// Checks a path a volume is to appear at inside a sandbox: relative,
/// without `..`, `.` or empty components, printable, bounded. A path that
/// could name anything outside the sandbox is refused, never normalised.
pub fn validate_container_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("container_path must not be empty".to_owned());
    }
    if path.len() > MAX_CONTAINER_PATH {
        return Err(format!("container_path is {} bytes long; at most {MAX_CONTAINER_PATH} are allowed", path.len()));
    }
    if path.starts_with('/') {
        return Err(format!("container_path {path:?} must be relative to the sandbox"));
    }
    if let Some(bad) = path.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!("container_path {path:?} contains {bad:?}"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("container_path {path:?} may not hold empty, '.' or '..' components"));
        }
    }
    if path.split('/').next() == Some(crate::task::SECRETS_DIR) {
        return Err(format!("container_path {path:?} is where the task's secrets go"));
    }
    Ok(())
}

/// The longest backing URI accepted.
pub const MAX_BACKING_LEN: usize = 1024;

/// Checks the form of a volume's backing URI: `hdfs://[authority]/path` or
/// `file:///path`, a path below the root without empty, `.` or `..`
/// components, printable, bounded. Whether it can be reached is the agent's
/// to find out.
pub fn validate_backing(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_BACKING_LEN {
        return Err(format!("backing is {} bytes long; at most {MAX_BACKING_LEN} are allowed", uri.len()));
    }
    if let Some(bad) = uri.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("backing {uri:?} contains {bad:?}"));
    }
    let path = if let Some(rest) = uri.strip_prefix("hdfs://") {
        rest.find('/').map(|i| &rest[i..])
    } else {
        uri.strip_prefix("file://").filter(|p| p.starts_with('/'))
    };
    let Some(path) = path else {
        return Err(format!("backing {uri:?} must be hdfs://[namenode]/path or file:///path"));
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err(format!("backing {uri:?} names the root of a file system; give a directory for the volume"));
    }
    if path[1..].split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(format!("backing {uri:?} may not hold empty, '.' or '..' path components"));
    }
    Ok(())
}

/// Checks a reservation's labels: at most [`MAX_LABELS`], keys non-empty,
/// keys and values at most [`MAX_LABEL_LEN`] bytes.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("{} labels; at most {MAX_LABELS} are allowed", labels.len()));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN {
            return Err(format!("label {k:?}: keys must be 1 to {MAX_LABEL_LEN} bytes and values at most {MAX_LABEL_LEN}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_stay_inside_the_sandbox() {
        assert!(validate_container_path("data").is_ok());
        assert!(validate_container_path("var/lib/db").is_ok());
        assert_eq!(validate_container_path("").unwrap_err(), "container_path must not be empty");
        assert_eq!(validate_container_path("/etc").unwrap_err(), "container_path \"/etc\" must be relative to the sandbox");
        for bad in ["..", "../x", "a/../../x", "a//b", "./a", "a/", "a/."] {
            assert_eq!(
                validate_container_path(bad).unwrap_err(),
                format!("container_path {bad:?} may not hold empty, '.' or '..' components"),
            );
        }
        assert!(validate_container_path("a\nb").unwrap_err().contains("'\\n'"));
        assert!(validate_container_path(&"x".repeat(1025)).unwrap_err().contains("1025 bytes"));
        // The agent deletes that directory when the task ends.
        assert!(validate_container_path(".weir-secrets/x").unwrap_err().contains("secrets"));
        assert!(validate_container_path(".weir-secrets").is_err());
        assert!(validate_container_path("a/.weir-secrets").is_ok());
    }

    #[test]
    fn backings_are_hdfs_or_file_uris_below_a_root() {
        for good in ["hdfs://nn:9000/weir/v1", "hdfs://ns1/v", "hdfs:///weir/v", "file:///tmp/b/", "hdfs://nn/a/b.c"] {
            assert_eq!(validate_backing(good), Ok(()), "{good}");
        }
        assert!(validate_backing("s3://b/v").unwrap_err().contains("must be hdfs://"));
        assert!(validate_backing("hdfs://nn:9000").unwrap_err().contains("must be hdfs://"));
        assert!(validate_backing("file://rel/v").unwrap_err().contains("must be hdfs://"));
        assert!(validate_backing("hdfs://nn:9000/").unwrap_err().contains("root of a file system"));
        assert!(validate_backing("hdfs://nn/a/../b").unwrap_err().contains("'..'"));
        assert!(validate_backing("hdfs://nn/a b").unwrap_err().contains("' '"));
        assert!(validate_backing(&format!("hdfs://nn/{}", "x".repeat(1100))).unwrap_err().contains("at most 1024"));
    }

    #[test]
    fn volumes_are_seen_by_their_owner_unless_shared() {
        let mut v = Volume {
            id: VolumeId::new("v"),
            role: Role::new("db"),
            reservation: ReservationId::new("r"),
            size: Milli::from_units(10),
            container_path: "data".into(),
            owner: Some(FrameworkId::new("f1")),
            shared: false,
            principal: String::new(),
            backing: None,
        };
        assert!(v.visible_to(&FrameworkId::new("f1")));
        assert!(!v.visible_to(&FrameworkId::new("f2")));
        v.shared = true;
        assert!(v.visible_to(&FrameworkId::new("f2")));
        v.shared = false;
        v.owner = None;
        assert!(v.visible_to(&FrameworkId::new("f2")));
    }
}
