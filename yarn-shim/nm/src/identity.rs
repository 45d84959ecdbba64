//! Containers as their users (LinuxContainerExecutor): who a container's
//! files belong to, and how a node manager running as root writes them
//! *as that user*.
//!
//! The node manager never writes as root into a directory a container's
//! user owns, where the user could have put a symlink to anywhere: what
//! goes into such a directory (the work dir's links, scripts and tokens,
//! the application's dirs under `usercache/<user>`, the container's log
//! dir) is written by a fresh thread whose file-system identity (fsuid,
//! fsgid, groups, all per thread on Linux) is the user's, so the kernel
//! checks each step as it would for the user's own process, and the
//! thread's identity ends with it. Only the directories whose parent root
//! owns (`usercache/<user>`, `logs/<app>`) are made by root and handed
//! over.

use std::path::Path;

/// A user, resolved on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary one included.
    pub groups: Vec<u32>,
}

impl Identity {
    /// Reads `name` from the account database.
    pub fn lookup(name: &str) -> Result<Identity, String> {
        let user = match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => u,
            Ok(None) => return Err(format!("user {name} does not exist on this node")),
            Err(e) => return Err(format!("cannot look up user {name}: {e}")),
        };
        let c_name = std::ffi::CString::new(name).map_err(|_| format!("user name {name:?} has a NUL byte"))?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .map_err(|e| format!("cannot read the groups of user {name}: {e}"))?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        Ok(Identity { name: name.to_owned(), uid: user.uid.as_raw(), gid: user.gid.as_raw(), groups })
    }
}

/// Runs `work` on a new thread whose file-system identity is `who`'s
/// (needs root; the rest of the process keeps its own). The thread ends
/// with `work`, and its identity with it.
pub fn as_user<T: Send>(who: &Identity, work: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                become_fs_user(who)?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(format!("the thread working as user {} panicked", who.name)))
    })
}

/// Runs `work` as `owner` ([`as_user`]) where there is one, else here as
/// the node manager's own user.
pub fn as_owner<T: Send>(owner: Option<&Identity>, work: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
    match owner {
        Some(who) => as_user(who, work),
        None => work(),
    }
}

/// This thread's fsuid, fsgid and groups become `who`'s. The raw system
/// calls, not libc's wrappers: glibc applies `setgroups` to every thread
/// of the process, the kernel to the caller only. Changing the fsuid from
/// 0 also drops the file capabilities (CAP_DAC_OVERRIDE, CAP_CHOWN, …)
/// from this thread's effective set, so root's overrides do not apply.
fn become_fs_user(who: &Identity) -> Result<(), String> {
    use nix::libc::{c_long, syscall, SYS_setfsgid, SYS_setfsuid, SYS_setgroups};
    let failed = |what: &str| Err(format!("cannot take user {}'s {what} to write its files: {}", who.name, std::io::Error::last_os_error()));
    // SAFETY: plain system calls on this thread's credentials, with a
    // pointer to a live array of `groups.len()` gid_t.
    unsafe {
        if syscall(SYS_setgroups, who.groups.len() as c_long, who.groups.as_ptr()) != 0 {
            return failed("groups");
        }
        // setfsuid/setfsgid answer the previous value and never fail
        // loudly: a second call tells whether the first took.
        syscall(SYS_setfsgid, who.gid as c_long);
        if syscall(SYS_setfsgid, who.gid as c_long) != who.gid as c_long {
            return failed("group id (the node manager must run as root)");
        }
        syscall(SYS_setfsuid, who.uid as c_long);
        if syscall(SYS_setfsuid, who.uid as c_long) != who.uid as c_long {
            return failed("user id (the node manager must run as root)");
        }
    }
    Ok(())
}

/// The uid that owns `dir` itself (a symlink is not followed).
pub fn owner_of(dir: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::symlink_metadata(dir)?.uid())
}

/// Opens `path` for reading, without following a symlink at its end, and
/// checks through that descriptor that it is a regular file `owner` owns,
/// as Hadoop's `SecureIOUtils` does before a node manager serves a
/// container's log or map output: a link the container's user made (in
/// the path's middle too) leads to a file of someone else, which is
/// refused.
pub fn open_owned(path: &Path, owner: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.uid() != owner {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("owned by uid {}, not by uid {owner}, the owner of the application's directory", meta.uid()),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_file_is_served_only_if_the_directorys_owner_owns_it() {
        let tmp = tempfile::tempdir().unwrap();
        let me = owner_of(tmp.path()).unwrap();
        let mine = tmp.path().join("mine");
        std::fs::write(&mine, "x").unwrap();
        assert!(open_owned(&mine, me).is_ok());
        let e = open_owned(&mine, me.wrapping_add(1)).unwrap_err();
        assert!(e.to_string().contains("not by uid"), "{e}");
        std::os::unix::fs::symlink(&mine, tmp.path().join("link")).unwrap();
        assert!(open_owned(&tmp.path().join("link"), me).is_err(), "a final symlink is not followed");
        assert!(open_owned(tmp.path(), me).is_err(), "a directory is no file");
    }

    #[test]
    fn as_user_writes_as_the_user_and_the_process_stays_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: taking another user's identity needs root (CI runs as root)");
            return;
        }
        let Ok(nobody) = Identity::lookup("nobody") else { return };
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(nobody.uid), Some(nobody.gid)).unwrap();
        let file = theirs.join("f");
        as_user(&nobody, || std::fs::write(&file, "x").map_err(|e| e.to_string())).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (nobody.uid, nobody.gid));
        // Root's overrides are gone on that thread: a root-only dir is closed to it.
        let roots = tmp.path().join("roots");
        std::fs::create_dir(&roots).unwrap();
        std::fs::set_permissions(&roots, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let refused = as_user(&nobody, || std::fs::write(roots.join("f"), "x").map_err(|e| e.to_string()));
        assert!(refused.unwrap_err().contains("ermission denied"));
        // And this thread is still root.
        std::fs::write(roots.join("f"), "x").unwrap();
        assert_eq!(std::fs::metadata(roots.join("f")).unwrap().uid(), 0);
    }
}
