//! Persistent volumes on disk: `WORK_DIR/volumes/roles/<role>/<id>`, apart
//! from the sandboxes so sandbox garbage collection never reaches them.
//!
//! A task sees a volume at `SANDBOX/<container_path>`, a symbolic link to
//! the volume's directory made before its command starts (deleting the
//! sandbox later deletes the link, never the data). Paths are built only
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

/// Links every volume a task mounts into its sandbox. The task's role is
/// the one its resources are reserved for.
pub fn link_mounts(root: &Path, sandbox: &Path, info: &v1::TaskInfo) -> Result<(), String> {
    if info.volumes.is_empty() {
        return Ok(());
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
        std::os::unix::fs::symlink(&source, &link)
            .map_err(|e| format!("cannot link volume {} at {}: {e}", m.volume, link.display()))?;
    }
    Ok(())
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
        link_mounts(&root, &sandbox, &info).unwrap();
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
        assert!(link_mounts(&root, &sandbox, &bad).unwrap_err().contains("'..'"));
    }
}
