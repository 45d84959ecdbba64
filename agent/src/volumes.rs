//! Persistent volumes on disk: `WORK_DIR/volumes/roles/<role>/<id>`, apart
//! from the sandboxes so sandbox garbage collection never reaches them.
//!
//! A task sees a volume at `SANDBOX/<container_path>`: a bind mount of the
//! volume's directory made before its command starts, remounted read-only
//! for a `read_only` mount. Where the agent may not mount (not root,
//! EPERM) it says so in the log and the task's RUNNING message and makes a
//! symbolic link instead (then `read_only` is not enforced). Mounts are
//! undone when the task ends (and, after an agent restart, for tasks that
//! ended while it was down); a sandbox is only ever deleted by
//! [`remove_sandbox`], which unmounts first and never crosses a mount
//! point, so deleting a sandbox never reaches volume data. Paths are built only
//! from ids and container paths that were validated (no separators in ids;
//! relative paths without `..` for container paths), and checked again
//! here, so nothing outside the volume root or the sandbox can be named.

use std::path::{Path, PathBuf};

use weir_model::reservation::validate_container_path;
use weir_model::{Role, VolumeId};
use weir_proto::{convert, v1};

/// The directory of one volume.
pub fn volume_dir(root: &Path, role: &Role, id: &VolumeId) -> PathBuf {
    root.join("roles").join(role.as_str()).join(id.as_str())
}

/// Creates a volume's directory (an existing one, with its data, is kept).
pub fn create(root: &Path, role: &Role, id: &VolumeId) -> std::io::Result<PathBuf> {
    let dir = volume_dir(root, role, id);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Deletes a volume and its data (DESTROY).
pub fn destroy(root: &Path, role: &Role, id: &VolumeId) -> std::io::Result<()> {
    let dir = volume_dir(root, role, id);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Bytes of the files under `dir` (symbolic links are not followed, so a
/// link cannot make a volume look bigger or smaller than it is).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

/// Mounts every volume a task mounts into its sandbox (see the module
/// doc). Returns notes for the task's RUNNING message (empty when every
/// volume was bind-mounted). The task's role is the one its resources are
/// reserved for.
pub fn mount_volumes(root: &Path, sandbox: &Path, info: &v1::TaskInfo) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    if info.volumes.is_empty() {
        return Ok(notes);
    }
    let resources = convert::resources_from_proto("task.resources", &info.resources).map_err(|e| e.to_string())?;
    let role = resources.reserved.keys().next().cloned().ok_or("a task that mounts volumes must use reserved resources")?;
    for m in convert::mounts_from_proto("task.volumes", &info.volumes).map_err(|e| e.to_string())? {
        validate_container_path(&m.container_path)?;
        let source = volume_dir(root, &role, &m.volume);
        if !source.is_dir() {
            return Err(format!("volume {} of role {role} has no directory at {}", m.volume, source.display()));
        }
        let link = sandbox.join(&m.container_path);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let why_not = match bind_mount(&source, &link, m.read_only) {
            Ok(()) => continue,
            Err(why_not) => why_not,
        };
        let note = format!(
            "volume {} is a symbolic link, not a bind mount ({why_not}){}",
            m.volume,
            if m.read_only { "; read_only is NOT enforced" } else { "" }
        );
        tracing::warn!(volume_id = %m.volume, target = %link.display(), "{note}");
        let _ = std::fs::remove_dir(&link);
        std::os::unix::fs::symlink(&source, &link)
            .map_err(|e| format!("cannot link volume {} at {}: {e}", m.volume, link.display()))?;
        notes.push(note);
    }
    Ok(notes)
}

/// Bind-mounts `source` at `target` (created as a directory), read-only if
/// asked. `Err` says why mounting is impossible (the caller falls back to
/// a link); any other failure is also reported that way, after undoing a
/// half-made mount, so a task never runs with a writable "read-only" one.
fn bind_mount(source: &Path, target: &Path, read_only: bool) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    if !nix::unistd::geteuid().is_root() {
        return Err("the agent is not root".to_owned());
    }
    std::fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("mount --bind {} failed: {e}", source.display()))?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            return Err(format!("remounting {} read-only failed: {e}", target.display()));
        }
    }
    Ok(())
}

/// Mount points at or below `dir`, deepest first (from
/// `/proc/self/mountinfo`; none where it cannot be read).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else { return Vec::new() };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(unescape_mountinfo(escaped)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// `/proc/self/mountinfo` writes space, tab, newline and backslash as
/// `\ooo` octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Undoes every mount inside a sandbox (a task's volumes, once it ended).
/// Returns the mount points that could not be unmounted, with the reason.
pub fn unmount_under(sandbox: &Path) -> Vec<String> {
    let mut failed = Vec::new();
    for point in mounts_under(sandbox) {
        match nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => tracing::debug!(mount = %point.display(), "volume unmounted"),
            Err(e) => failed.push(format!("{}: {e}", point.display())),
        }
    }
    failed
}

/// Deletes a sandbox without ever reaching into a volume: its mounts are
/// undone first, and the deletion refuses to cross into anything still
/// mounted (a mount point listed in mountinfo, or a directory on another
/// device), leaving it and reporting it instead.
pub fn remove_sandbox(sandbox: &Path) -> std::io::Result<()> {
    let failed = unmount_under(sandbox);
    if !failed.is_empty() {
        tracing::warn!(sandbox = %sandbox.display(), failed = ?failed, "cannot unmount inside a sandbox; leaving those mounts in place");
    }
    let mounted: std::collections::HashSet<PathBuf> = mounts_under(sandbox).into_iter().collect();
    let dev = {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(sandbox)?.dev()
    };
    let base = sandbox.canonicalize()?;
    remove_tree(&base, dev, &mounted)
}

fn remove_tree(dir: &Path, dev: u64, mounted: &std::collections::HashSet<PathBuf>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if mounted.contains(dir) {
        return Err(std::io::Error::other(format!("{} is a mount point; not deleting into it", dir.display())));
    }
    let mut first_err = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        let result = if meta.is_dir() {
            if meta.dev() != dev {
                Err(std::io::Error::other(format!("{} is on another file system; not deleting into it", path.display())))
            } else {
                remove_tree(&path, dev, mounted)
            }
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = result {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => std::fs::remove_dir(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_live_outside_sandboxes_and_survive_their_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("volumes");
        let sandbox = dir.path().join("sandboxes/f/t");
        std::fs::create_dir_all(&sandbox).unwrap();
        let (role, id) = (Role::new("db"), VolumeId::new("data"));
        let vol = create(&root, &role, &id).unwrap();
        assert_eq!(vol, dir.path().join("volumes/roles/db/data"));
        let info = v1::TaskInfo {
            resources: convert::resources_to_proto(&weir_model::ResourceSet::parse("cpus(db):1;disk(db):10").unwrap()),
            volumes: vec![v1::VolumeMount { volume_id: "data".into(), container_path: "var/db".into(), read_only: false }],
            ..Default::default()
        };
        mount_volumes(&root, &sandbox, &info).unwrap();
        std::fs::write(sandbox.join("var/db/file"), b"kept").unwrap();
        // A sandbox garbage-collection pass deletes the link, not the data.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let deleted = crate::launcher::process::collect_garbage(&dir.path().join("sandboxes"), &Default::default(), later);
        assert_eq!(deleted, vec![sandbox.clone()]);
        assert!(!sandbox.exists());
        assert_eq!(std::fs::read(vol.join("file")).unwrap(), b"kept");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        std::fs::write(vol.join("sub/more"), vec![0u8; 3000]).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("link")).unwrap();
        assert_eq!(disk_usage(&vol), 4 + 3000 + "/etc".len() as u64);
        destroy(&root, &role, &id).unwrap();
        assert!(!vol.exists());
        destroy(&root, &role, &id).unwrap();
        // A path that escapes is refused even if it reached the agent.
        let mut bad = info.clone();
        bad.volumes[0].container_path = "../../x".into();
        std::fs::create_dir_all(&sandbox).unwrap();
        create(&root, &role, &id).unwrap();
        assert!(mount_volumes(&root, &sandbox, &bad).unwrap_err().contains("'..'"));
    }

    /// Unmounts whatever a test left mounted under its directory, even
    /// when it fails (before the temporary directory is deleted).
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            unmount_under(&self.0);
        }
    }

    #[test]
    fn a_read_only_volume_cannot_be_written_by_the_task_and_deleting_a_sandbox_never_crosses_a_mount() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: bind mounts need root (the symlink fallback is what runs here)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let _unmount = Unmount(dir.path().to_path_buf());
        let root = dir.path().join("volumes");
        let sandbox = dir.path().join("sandboxes/f/t");
        std::fs::create_dir_all(&sandbox).unwrap();
        let (role, id) = (Role::new("db"), VolumeId::new("data"));
        let vol = create(&root, &role, &id).unwrap();
        std::fs::write(vol.join("file"), b"data").unwrap();
        let logs = create(&root, &role, &VolumeId::new("logs")).unwrap();
        let mount = |volume: &str, path: &str, read_only: bool| v1::VolumeMount { volume_id: volume.into(), container_path: path.into(), read_only };
        let info = v1::TaskInfo {
            resources: convert::resources_to_proto(&weir_model::ResourceSet::parse("cpus(db):1;disk(db):10").unwrap()),
            volumes: vec![mount("data", "ro", true), mount("logs", "var/rw", false)],
            ..Default::default()
        };
        assert_eq!(mount_volumes(&root, &sandbox, &info).unwrap(), Vec::<String>::new(), "bind-mounted, nothing to say");
        let base = sandbox.canonicalize().unwrap();
        assert_eq!(mounts_under(&sandbox), [base.join("var/rw"), base.join("ro")]);
        // The task, a shell in its sandbox, reads the read-only mount but
        // cannot write it (not even as root); the read-write one it can.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("cat ro/file && echo x > var/rw/written && echo y > ro/refused")
            .current_dir(&sandbox)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "data");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{out:?}");
        assert!(!vol.join("refused").exists());
        assert_eq!(std::fs::read(logs.join("written")).unwrap(), b"x\n");
        // A deletion that finds a mount still in place refuses to cross it
        // (remove_dir_all would have deleted the volume's data through it).
        let mounted = mounts_under(&sandbox).into_iter().collect();
        let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::symlink_metadata(&sandbox).unwrap());
        let err = remove_tree(&base, dev, &mounted).unwrap_err().to_string();
        assert!(err.contains("is a mount point; not deleting into it"), "{err}");
        assert_eq!(std::fs::read(vol.join("file")).unwrap(), b"data");
        assert_eq!(std::fs::read(logs.join("written")).unwrap(), b"x\n");
        // Garbage collection unmounts first: the sandbox goes, the data stays.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let deleted = crate::launcher::process::collect_garbage(&dir.path().join("sandboxes"), &Default::default(), later);
        assert_eq!(deleted, vec![sandbox.clone()]);
        assert!(!sandbox.exists());
        assert!(mounts_under(dir.path()).is_empty());
        assert_eq!(std::fs::read(vol.join("file")).unwrap(), b"data");
        assert_eq!(std::fs::read(logs.join("written")).unwrap(), b"x\n");
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
