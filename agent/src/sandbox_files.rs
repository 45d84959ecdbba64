//! A task's sandbox as the agent's HTTP serves it (`/files/browse`,
//! `/files/read`): paths relative to the sandbox, resolved so that nothing
//! outside it can be read.
//!
//! Invariant: a path served is the sandbox's canonical path followed by
//! the request's components, and its own canonical form is still inside
//! the sandbox. So `..`, absolute paths and symbolic links that lead out
//! (a task can make any link it likes in its sandbox) are all refused; a
//! volume bind-mounted into the sandbox stays readable, as its path does
//! not leave the sandbox. The task's secrets (`.weir-secrets`) are neither
//! listed nor read.

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::error::AgentError;

/// Entries one listing returns at most (a task may make millions of files).
pub const MAX_ENTRIES: usize = 10_000;
/// Longest relative path accepted, in bytes.
const MAX_PATH: usize = 4096;

/// One entry of a sandbox directory.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub name: String,
    /// Relative to the sandbox, `/`-separated.
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    /// Seconds since the epoch; 0 if unknown.
    pub mtime: u64,
}

/// A directory's listing, sorted by name.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Listing {
    pub path: String,
    pub entries: Vec<Entry>,
    /// True when more than [`MAX_ENTRIES`] entries were there.
    pub truncated: bool,
}

/// Refuses, before any file system access, a path that could not name a
/// file inside a sandbox: too long, NUL, absolute, or with `..`.
pub fn check_relative(relative: &str) -> Result<(), AgentError> {
    let bad = |reason: &str| AgentError::BadPath { path: truncate(relative), reason: reason.to_owned() };
    if relative.len() > MAX_PATH {
        return Err(bad("longer than 4096 bytes"));
    }
    if relative.contains('\0') {
        return Err(bad("holds a NUL byte"));
    }
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(bad("may not hold '..'")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("must be relative to the sandbox")),
        }
    }
    Ok(())
}

/// Resolves `relative` (empty: the sandbox itself) inside `sandbox`.
pub fn resolve(sandbox: &Path, relative: &str) -> Result<PathBuf, AgentError> {
    check_relative(relative)?;
    let root = sandbox.canonicalize().map_err(|e| AgentError::NotFound(format!("the sandbox is gone: {e}")))?;
    let real = root.join(relative).canonicalize().map_err(|e| AgentError::NotFound(format!("{}: {e}", truncate(relative))))?;
    if !real.starts_with(&root) {
        return Err(AgentError::BadPath { path: truncate(relative), reason: "leads out of the sandbox".to_owned() });
    }
    // The task's secrets are the task's alone, whoever may read its logs
    // (a link the task made to them leads here too).
    if real.starts_with(root.join(weir_model::task::SECRETS_DIR)) {
        return Err(AgentError::BadPath { path: truncate(relative), reason: "holds the task's secrets, which are not served".to_owned() });
    }
    Ok(real)
}

/// Lists the directory `relative` of `sandbox`.
pub fn list(sandbox: &Path, relative: &str) -> Result<Listing, AgentError> {
    let dir = resolve(sandbox, relative)?;
    let read = std::fs::read_dir(&dir).map_err(|e| AgentError::NotFound(format!("{}: {e}", truncate(relative))))?;
    let prefix = relative.trim_matches('/');
    let at_root = sandbox.canonicalize().is_ok_and(|root| root == dir);
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in read.flatten() {
        if entries.len() == MAX_ENTRIES {
            truncated = true;
            break;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if at_root && name == weir_model::task::SECRETS_DIR {
            continue;
        }
        // Follows links, as reading does; a dangling one shows as a file.
        let meta = std::fs::metadata(entry.path()).ok();
        entries.push(Entry {
            path: if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") },
            name,
            is_dir: meta.as_ref().is_some_and(|m| m.is_dir()),
            size: meta.as_ref().map_or(0, |m| m.len()),
            mtime: meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Listing { path: prefix.to_owned(), entries, truncated })
}

/// A request's path as error messages quote it: at most 200 bytes.
fn truncate(path: &str) -> String {
    if path.len() <= 200 {
        return path.to_owned();
    }
    let mut end = 200;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::v1;

    fn sandbox() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        std::fs::create_dir_all(sandbox.join("sub")).unwrap();
        std::fs::write(sandbox.join("stdout"), b"out").unwrap();
        std::fs::write(sandbox.join("sub/inner.txt"), b"inner").unwrap();
        std::fs::write(dir.path().join("secret"), b"not yours").unwrap();
        (dir, sandbox)
    }

    #[test]
    fn files_inside_the_sandbox_resolve() {
        let (_dir, sandbox) = sandbox();
        let root = sandbox.canonicalize().unwrap();
        assert_eq!(resolve(&sandbox, "stdout").unwrap(), root.join("stdout"));
        assert_eq!(resolve(&sandbox, "./sub/inner.txt").unwrap(), root.join("sub/inner.txt"));
        assert_eq!(resolve(&sandbox, "").unwrap(), root);
    }

    #[test]
    fn nothing_outside_the_sandbox_resolves() {
        let (dir, sandbox) = sandbox();
        std::os::unix::fs::symlink(dir.path().join("secret"), sandbox.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", sandbox.join("etc")).unwrap();
        for path in ["../secret", "sub/../../secret", "/etc/passwd", "link", "etc/passwd", "etc", "a\0b"] {
            match resolve(&sandbox, path) {
                Err(AgentError::BadPath { .. }) => {}
                other => panic!("{path:?} resolved to {other:?}"),
            }
        }
        assert!(matches!(resolve(&sandbox, &"a/".repeat(5000)), Err(AgentError::BadPath { .. })));
        assert!(matches!(resolve(&sandbox, "missing"), Err(AgentError::NotFound(_))));
    }

    #[test]
    fn a_listing_names_paths_relative_to_the_sandbox() {
        let (_dir, sandbox) = sandbox();
        let top = list(&sandbox, "").unwrap();
        let names: Vec<(&str, &str, bool)> = top.entries.iter().map(|e| (e.name.as_str(), e.path.as_str(), e.is_dir)).collect();
        assert_eq!(names, vec![("stdout", "stdout", false), ("sub", "sub", true)]);
        assert_eq!(top.entries[0].size, 3);
        let sub = list(&sandbox, "sub/").unwrap();
        assert_eq!(sub.entries[0].path, "sub/inner.txt");
        assert!(list(&sandbox, "stdout").is_err(), "a file is not a directory");
    }

    #[test]
    fn the_tasks_secrets_are_neither_listed_nor_read() {
        let (_dir, sandbox) = sandbox();
        let secret = v1::Secret { name: "key".into(), value: b"s3cr3t".to_vec() };
        crate::launcher::process::write_secrets(&sandbox, &[secret], None).unwrap();
        std::os::unix::fs::symlink("../.weir-secrets/key", sandbox.join("sub/link")).unwrap();
        for path in [".weir-secrets/key", ".weir-secrets", "./.weir-secrets/key", "sub/../.weir-secrets", "sub/link"] {
            match resolve(&sandbox, path) {
                Err(AgentError::BadPath { reason, .. }) => assert!(reason.contains("secrets") || reason.contains(".."), "{path}: {reason}"),
                other => panic!("{path:?} resolved to {other:?}"),
            }
        }
        for top in ["", ".", "./"] {
            let names: Vec<String> = list(&sandbox, top).unwrap().entries.into_iter().map(|e| e.name).collect();
            assert_eq!(names, vec!["stdout", "sub"], "listing {top:?}");
        }
    }
}
