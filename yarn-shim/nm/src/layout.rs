//! Where the node manager keeps things on disk, laid out as Hadoop's
//! NodeManager lays out one local dir and one log dir, so that code written
//! for YARN (MapReduce's `YarnOutputFiles`, the shuffle's lookup, log
//! links) finds them:
//!
//! ```text
//! <root>/usercache/<user>/                      LOCAL_USER_DIRS
//! <root>/usercache/<user>/appcache/<app>/       LOCAL_DIRS, shared by the app's containers
//! <root>/usercache/<user>/appcache/<app>/output/<map attempt>/file.out(.index)
//! <root>/logs/<app>/<container>/                LOG_DIRS (stdout, stderr, syslog…)
//! ```
//!
//! Under LinuxContainerExecutor `usercache/<user>` and everything below,
//! and `logs/<app>` and below, belong to the container's user
//! ([`Layout::prepare_container_for`]).
//!
//! Invariant: every path built here stays under `root`. User names come
//! from signed container tokens, but are still checked to be one plain path
//! component; application and container ids are typed and print digits.

use std::path::{Path, PathBuf};

use weir_yarn_api::ids::{ApplicationId, ContainerId};

use crate::error::NmError;
use crate::identity::{self, Identity};

pub const USERCACHE: &str = "usercache";
pub const APPCACHE: &str = "appcache";
pub const LOGS: &str = "logs";

/// Checks that `value` is one plain path component: not empty, not `.` or
/// `..`, no `/` or NUL, at most 255 bytes.
pub fn component<'a>(what: &'static str, value: &'a str) -> Result<&'a str, NmError> {
    let bad = |why| Err(NmError::BadName { what, value: value.chars().take(300).collect(), why });
    if value.is_empty() {
        return bad("it is empty");
    }
    if value == "." || value == ".." {
        return bad("it is a relative directory");
    }
    if value.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if value.bytes().any(|b| b == b'/' || b == 0 || b == b'\\') {
        return bad("it contains a path separator or NUL");
    }
    Ok(value)
}

/// The user name rule of Hadoop's LinuxContainerExecutor
/// (`^[_.A-Za-z0-9][-@_.A-Za-z0-9]{0,255}?[$]?$`), which also keeps it one
/// path component once `.` and `..` are excluded.
pub fn user(value: &str) -> Result<&str, NmError> {
    let b = value.as_bytes();
    let first = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
    let rest = |c: u8| first(c) || c == b'-' || c == b'@';
    let body = b.strip_suffix(b"$").unwrap_or(b);
    let ok = !body.is_empty() && body.len() <= 256 && first(body[0]) && body[1..].iter().all(|&c| rest(c));
    if !ok {
        return Err(NmError::BadName { what: "user", value: value.chars().take(300).collect(), why: "it is not a valid user name" });
    }
    component("user", value)
}

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn user_dir(&self, user_name: &str) -> Result<PathBuf, NmError> {
        Ok(self.root.join(USERCACHE).join(user(user_name)?))
    }

    pub fn app_dir(&self, user_name: &str, app: ApplicationId) -> Result<PathBuf, NmError> {
        Ok(self.user_dir(user_name)?.join(APPCACHE).join(app.to_string()))
    }

    /// Where MapReduce's `YarnOutputFiles` puts a map attempt's output
    /// (`output/<attempt>/file.out` under one of LOCAL_DIRS).
    pub fn map_output_dir(&self, user_name: &str, app: ApplicationId, map_attempt: &str) -> Result<PathBuf, NmError> {
        Ok(self.app_dir(user_name, app)?.join("output").join(component("map attempt", map_attempt)?))
    }

    pub fn app_log_dir(&self, app: ApplicationId) -> PathBuf {
        self.root.join(LOGS).join(app.to_string())
    }

    pub fn container_log_dir(&self, container: ContainerId) -> PathBuf {
        self.app_log_dir(container.attempt.app).join(container.to_string())
    }

    /// Creates the application's dirs (if this is its first container
    /// here) and the container's log dir; returns (user dir, app dir, log dir).
    pub fn prepare_container(&self, user_name: &str, container: ContainerId) -> Result<(PathBuf, PathBuf, PathBuf), NmError> {
        let user_dir = self.user_dir(user_name)?;
        let app_dir = self.app_dir(user_name, container.attempt.app)?;
        let log_dir = self.container_log_dir(container);
        for d in [&app_dir, &log_dir] {
            std::fs::create_dir_all(d).map_err(|e| NmError::io("create", d, e))?;
        }
        Ok((user_dir, app_dir, log_dir))
    }

    /// The same for a container that runs as `owner`, as YARN's
    /// container-executor lays it out: `usercache/<user>` and
    /// `logs/<app>` made by the node manager (root, in directories only it
    /// may write) and given to `owner`, mode 0750; the application's dir
    /// and the container's log dir below them made as `owner`
    /// ([`identity::as_user`]). The node manager, root, still reads them
    /// (logs, map outputs), checking each file's owner.
    pub fn prepare_container_for(&self, user_name: &str, container: ContainerId, owner: &Identity) -> Result<(PathBuf, PathBuf, PathBuf), String> {
        let user_dir = self.user_dir(user_name).map_err(|e| e.to_string())?;
        let app_dir = self.app_dir(user_name, container.attempt.app).map_err(|e| e.to_string())?;
        let app_log_dir = self.app_log_dir(container.attempt.app);
        let log_dir = self.container_log_dir(container);
        for handed in [&user_dir, &app_log_dir] {
            hand_over(handed, owner)?;
        }
        identity::as_user(owner, || {
            for d in [&app_dir, &log_dir] {
                std::fs::create_dir_all(d).map_err(|e| NmError::io("create", d, e).to_string())?;
            }
            Ok(())
        })?;
        Ok((user_dir, app_dir, log_dir))
    }
}

/// Makes `dir` (whose parent only the node manager writes) if missing and
/// gives it to `owner`, mode 0750; refuses a symlink there.
fn hand_over(dir: &Path, owner: &Identity) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| NmError::io("create", parent, e).to_string())?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(NmError::io("create", dir, e).to_string()),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| NmError::io("read", dir, e).to_string())?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    std::os::unix::fs::lchown(dir, Some(owner.uid), Some(owner.gid))
        .map_err(|e| format!("cannot give {} to user {}: {e}", dir.display(), owner.name))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(|e| NmError::io("set the mode of", dir, e).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_yarn_api::ids::AttemptId;

    fn container(app: i32, id: i64) -> ContainerId {
        ContainerId { attempt: AttemptId { app: ApplicationId { cluster_timestamp: 1700, id: app }, attempt: 1 }, id }
    }

    #[test]
    fn containers_of_one_application_share_its_dir_and_have_their_own_logs() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path().to_path_buf());
        let (u1, a1, l1) = layout.prepare_container("alice", container(1, 2)).unwrap();
        let (u2, a2, l2) = layout.prepare_container("alice", container(1, 3)).unwrap();
        let (_, a3, _) = layout.prepare_container("alice", container(2, 2)).unwrap();
        assert_eq!(u1, tmp.path().join("usercache/alice"));
        assert_eq!(a1, tmp.path().join("usercache/alice/appcache/application_1700_0001"));
        assert_eq!((&u1, &a1), (&u2, &a2));
        assert_ne!(a1, a3);
        assert_eq!(l1, tmp.path().join("logs/application_1700_0001/container_1700_0001_01_000002"));
        assert_ne!(l1, l2);
        assert!(a1.is_dir() && l1.is_dir() && l2.is_dir());
    }

    #[test]
    fn names_that_would_leave_the_root_are_refused() {
        let layout = Layout::new(PathBuf::from("/nm"));
        for bad in ["", ".", "..", "a/b", "../x", "-x", "a b", "a\0b"] {
            assert!(layout.user_dir(bad).is_err(), "{bad:?}");
        }
        assert!(layout.user_dir("alice.b@corp").is_ok());
        assert!(layout.user_dir("machine$").is_ok());
        let app = ApplicationId { cluster_timestamp: 1, id: 1 };
        for bad in ["..", "a/../../x", ""] {
            assert!(layout.map_output_dir("alice", app, bad).is_err(), "{bad:?}");
        }
    }
}
