//! The durable copy of one persistent volume, kept in a [`VolumeStore`].
//!
//! Layout under the backing's root:
//!
//! ```text
//! VOLUME                      "weir-volume <id>": whose backing this is
//! CURRENT                     "generation <n>\nowner <agent>": the pointer
//! manifests/<n>               JSON: every file (path, size, sha256, mode) and directory of generation n
//! blobs/<sha256>              file contents, by hash (shared between generations)
//! claims/<n>                  "owner <agent>": who writes generation n (create-if-absent)
//! tmp/<uuid>                  uploads and pointer files before their rename
//! ```
//!
//! A sync uploads only the files whose size, mtime or mode changed since
//! the last one (the caller keeps a [`LocalState`]), into `blobs/` through
//! `tmp/` and a rename, then writes the new manifest, then replaces
//! `CURRENT` by rename: a reader that follows `CURRENT` sees the previous
//! complete generation or the new one, never a mix; a writer killed half-way
//! leaves `CURRENT` where it was. Blobs of the current and the previous
//! generation are kept, so a reader that read `CURRENT` just before a switch
//! still finds its files.
//!
//! Fencing: a copy may write generation n+1 only if `CURRENT` is the n it
//! last synced or restored and it holds the claim of n+1 (claims are made
//! with an atomic create-if-absent). A restore on another agent (the volume
//! moved) claims the next generation before it reads and commits it after,
//! so the old copy, coming back, finds a newer claim or a newer `CURRENT`
//! and is refused with [`BackingError::Stale`]. What is left unfenced: a
//! sync whose final check passed in the milliseconds before another
//! agent's claim; the broker moves only volumes of removed agents, which
//! are not syncing.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{PutMode, StoreError, VolumeStore};

/// Bound on what is read of `VOLUME`, `CURRENT` and claims.
pub const MAX_POINTER_BYTES: u64 = 4096;
/// Bound on a manifest (about 200,000 files of average path length).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Files (and directories) one volume may hold to be synced.
pub const MAX_FILES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("backing {uri} belongs to volume {owner}, not to {volume}")]
    BelongsToOther { uri: String, volume: String, owner: String },
    #[error("backing {uri} exists and is not a Weir volume backing (it holds {entries}); choose an empty or new path")]
    NotABacking { uri: String, entries: String },
    #[error(
        "volume {volume}: this copy is at generation {have} but {uri} holds generation {current} of agent {owner}; \
         the stale copy is not synced over it"
    )]
    Stale { uri: String, volume: String, have: u64, current: u64, owner: String },
    #[error("backing {uri}: {path} is damaged: {reason}")]
    Corrupt { uri: String, path: String, reason: String },
    #[error("volume directory {path}: cannot {op}: {reason}")]
    Local { path: PathBuf, op: &'static str, reason: String },
}

pub type Result<T, E = BackingError> = std::result::Result<T, E>;

/// One generation's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub volume: String,
    pub generation: u64,
    pub owner: String,
    pub dirs: Vec<String>,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub mode: u32,
}

/// What a copy remembers of its last sync or restore, so the next sync
/// uploads only what changed and knows which generation it builds on. The
/// caller keeps it durable ([`LocalState::save`]) beside the volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    pub generation: u64,
    pub files: BTreeMap<String, LocalFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalFile {
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    pub sha256: String,
}

impl LocalState {
    /// Reads a saved state; a missing file is the state of a copy that has
    /// never synced (generation 0).
    pub fn load(path: &Path) -> Result<LocalState> {
        let local = |op, reason: String| BackingError::Local { path: path.to_owned(), op, reason };
        let bytes = match std::fs::metadata(path) {
            Ok(meta) if meta.len() > MAX_MANIFEST_BYTES => {
                return Err(local("read the sync state", format!("{} bytes is past {MAX_MANIFEST_BYTES}", meta.len())))
            }
            Ok(_) => std::fs::read(path).map_err(|e| local("read the sync state", e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LocalState::default()),
            Err(e) => return Err(local("read the sync state", e.to_string())),
        };
        serde_json::from_slice(&bytes).map_err(|e| local("parse the sync state", e.to_string()))
    }

    /// Writes the state durably (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let local = |op, reason: String| BackingError::Local { path: path.to_owned(), op, reason };
        let bytes = serde_json::to_vec(self).map_err(|e| local("encode the sync state", e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| local("write the sync state", e.to_string()))
    }
}

/// What one sync or restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The generation the backing now holds.
    pub generation: u64,
    /// Files the generation holds, and those that were copied this time.
    pub files_total: u64,
    pub files_copied: u64,
    /// Bytes the generation holds, and those that were copied this time.
    pub bytes_total: u64,
    pub bytes_copied: u64,
    /// Entries neither a file nor a directory (symbolic links, sockets) or
    /// with names that are not UTF-8: not kept.
    pub skipped: u64,
    pub millis: u64,
}

/// The pointer `CURRENT` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    pub generation: u64,
    pub owner: String,
}

/// One volume's backing in a store.
#[derive(Clone, Debug)]
pub struct Backing {
    store: Arc<dyn VolumeStore>,
    volume: String,
}

fn generation_name(generation: u64) -> String {
    format!("{generation:020}")
}

impl Backing {
    /// Opens the backing of `volume`, marking an empty or new path as its
    /// own. A path that holds another volume's backing, or anything that is
    /// not a backing, is refused.
    pub async fn attach(store: Arc<dyn VolumeStore>, volume: &str) -> Result<Backing> {
        let backing = Backing { store, volume: volume.to_owned() };
        if let Some(owner) = backing.owner().await? {
            return backing.check_owner(owner);
        }
        let entries = backing.store.list("").await?;
        if !entries.is_empty() {
            let mut names: Vec<String> = entries.iter().take(3).map(|e| e.name.clone()).collect();
            if entries.len() > 3 {
                names.push(format!("and {} more", entries.len() - 3));
            }
            return Err(BackingError::NotABacking { uri: backing.uri().to_owned(), entries: names.join(", ") });
        }
        let marker = format!("weir-volume {volume}\n");
        match backing.store.put("VOLUME", &mut marker.as_bytes(), PutMode::CreateNew).await {
            Ok(_) => Ok(backing),
            // Someone marked it between our look and our write.
            Err(StoreError::AlreadyExists { .. }) => match backing.owner().await? {
                Some(owner) => backing.check_owner(owner),
                None => Err(BackingError::Corrupt {
                    uri: backing.uri().to_owned(),
                    path: "VOLUME".to_owned(),
                    reason: "it vanished while being read".to_owned(),
                }),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub fn uri(&self) -> &str {
        self.store.uri()
    }

    fn check_owner(self, owner: String) -> Result<Backing> {
        if owner == self.volume {
            Ok(self)
        } else {
            Err(BackingError::BelongsToOther { uri: self.uri().to_owned(), volume: self.volume, owner })
        }
    }

    async fn read_small(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        match self.store.get(path, &mut out, max).await {
            Ok(_) => Ok(Some(out)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn corrupt(&self, path: &str, reason: impl Into<String>) -> BackingError {
        BackingError::Corrupt { uri: self.uri().to_owned(), path: path.to_owned(), reason: reason.into() }
    }

    async fn owner(&self) -> Result<Option<String>> {
        let Some(bytes) = self.read_small("VOLUME", MAX_POINTER_BYTES).await? else { return Ok(None) };
        let text = String::from_utf8(bytes).map_err(|_| self.corrupt("VOLUME", "not UTF-8"))?;
        match text.trim_end().strip_prefix("weir-volume ") {
            Some(id) if !id.is_empty() => Ok(Some(id.to_owned())),
            _ => Err(self.corrupt("VOLUME", "it does not read \"weir-volume <id>\"")),
        }
    }

    /// The generation `CURRENT` points at (`None`: never synced).
    pub async fn current(&self) -> Result<Option<Pointer>> {
        let Some(bytes) = self.read_small("CURRENT", MAX_POINTER_BYTES).await? else { return Ok(None) };
        let text = String::from_utf8(bytes).map_err(|_| self.corrupt("CURRENT", "not UTF-8"))?;
        parse_pointer(&text).map(Some).ok_or_else(|| self.corrupt("CURRENT", "it does not read \"generation <n>\\nowner <agent>\""))
    }

    /// The manifest of one generation, checked against its name.
    pub async fn manifest(&self, generation: u64) -> Result<Manifest> {
        let path = format!("manifests/{}", generation_name(generation));
        let bytes = self
            .read_small(&path, MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| self.corrupt(&path, "CURRENT points at it but it is missing"))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&path, e.to_string()))?;
        if manifest.generation != generation || manifest.volume != self.volume {
            return Err(self.corrupt(
                &path,
                format!("it holds generation {} of volume {}", manifest.generation, manifest.volume),
            ));
        }
        Ok(manifest)
    }

    /// Claims generation `generation` for `agent`. An existing claim of
    /// the same agent is its own (a sync it did not finish) and is taken
    /// over; another agent's is refused as [`BackingError::Stale`].
    async fn claim(&self, generation: u64, agent: &str, have: u64) -> Result<()> {
        let path = format!("claims/{}", generation_name(generation));
        let text = format!("owner {agent}\n");
        match self.store.put(&path, &mut text.as_bytes(), PutMode::CreateNew).await {
            Ok(_) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {
                let owner = self.claim_owner(&path).await?;
                if owner == agent {
                    Ok(())
                } else {
                    Err(self.stale(have, generation, owner))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn claim_owner(&self, path: &str) -> Result<String> {
        let bytes = self.read_small(path, MAX_POINTER_BYTES).await?.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        text.trim_end()
            .strip_prefix("owner ")
            .map(str::to_owned)
            .ok_or_else(|| self.corrupt(path, "it does not read \"owner <agent>\""))
    }

    /// Claims of generations above `above` made by agents other than `agent`.
    async fn foreign_claim(&self, above: u64, agent: &str) -> Result<Option<(u64, String)>> {
        for entry in self.store.list("claims").await?.into_iter().rev() {
            let Ok(generation) = entry.name.parse::<u64>() else { continue };
            if generation <= above {
                break;
            }
            let owner = self.claim_owner(&format!("claims/{}", entry.name)).await?;
            if owner != agent {
                return Ok(Some((generation, owner)));
            }
        }
        Ok(None)
    }

    fn stale(&self, have: u64, current: u64, owner: String) -> BackingError {
        BackingError::Stale { uri: self.uri().to_owned(), volume: self.volume.clone(), have, current, owner }
    }

    /// Writes `bytes` to `path` through `tmp/` and a rename, so readers see
    /// the old file or the whole new one.
    async fn put_atomic(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let tmp = format!("tmp/{}", uuid::Uuid::new_v4());
        self.store.put(&tmp, &mut &bytes[..], PutMode::Overwrite).await?;
        self.store.rename(&tmp, path, true).await?;
        Ok(())
    }

    /// Uploads the changes of `dir` since `state` as the next generation
    /// and switches `CURRENT` to it. Returns the report and the state to
    /// keep for the next sync.
    pub async fn sync(&self, dir: &Path, state: &LocalState, agent: &str) -> Result<(SyncReport, LocalState)> {
        let started = Instant::now();
        let current = self.current().await?;
        let at = current.as_ref().map_or(0, |p| p.generation);
        // This copy's own last sync switched CURRENT but died before the
        // caller saved its state: build on it (the copy's files are the
        // truth; what the manifest lacks is uploaded again).
        let own_next = current.as_ref().is_some_and(|p| p.owner == agent && p.generation == state.generation + 1);
        if at != state.generation && !own_next {
            let owner = current.map(|p| p.owner).unwrap_or_else(|| "(none: the backing is empty)".to_owned());
            return Err(self.stale(state.generation, at, owner));
        }
        if let Some((generation, owner)) = self.foreign_claim(at, agent).await? {
            return Err(self.stale(state.generation, generation, owner));
        }
        let next = at + 1;
        self.claim(next, agent, at).await?;
        let previous = if at == 0 { None } else { Some(self.manifest(at).await?) };
        let in_backing: BTreeSet<String> =
            previous.iter().flat_map(|m| m.files.iter().map(|f| f.sha256.clone())).collect();

        let scan = scan(dir).await?;
        let mut report = SyncReport { generation: next, skipped: scan.skipped, ..SyncReport::default() };
        let mut files = Vec::with_capacity(scan.files.len());
        let mut new_state = LocalState { generation: next, files: BTreeMap::new() };
        let mut uploaded: BTreeSet<String> = BTreeSet::new();
        for found in scan.files {
            let known = state.files.get(&found.path).filter(|k| {
                k.size == found.size && k.mtime_ns == found.mtime_ns && k.mode == found.mode && in_backing.contains(&k.sha256)
            });
            let (size, sha256) = match known {
                Some(k) => (k.size, k.sha256.clone()),
                None => {
                    let meta = self.upload(dir, &found.path, &in_backing, &mut uploaded).await?;
                    report.files_copied += 1;
                    report.bytes_copied += meta.0;
                    meta
                }
            };
            report.files_total += 1;
            report.bytes_total += size;
            new_state.files.insert(
                found.path.clone(),
                LocalFile { size, mtime_ns: found.mtime_ns, mode: found.mode, sha256: sha256.clone() },
            );
            files.push(FileEntry { path: found.path, size, sha256, mode: found.mode });
        }
        let manifest = Manifest { volume: self.volume.clone(), generation: next, owner: agent.to_owned(), dirs: scan.dirs, files };
        let encoded = serde_json::to_vec(&manifest).map_err(|e| self.corrupt("manifest", e.to_string()))?;
        self.put_atomic(&format!("manifests/{}", generation_name(next)), &encoded).await?;
        self.commit(next, at, agent, state.generation).await?;
        self.collect_garbage(next, at).await;
        report.millis = started.elapsed().as_millis() as u64;
        Ok((report, new_state))
    }

    /// Whether a copy at `generation` of `agent` is behind the backing (the
    /// volume moved on elsewhere): `Some(pointer)` if so.
    pub async fn moved_past(&self, generation: u64, agent: &str) -> Result<Option<Pointer>> {
        Ok(self.current().await?.filter(|p| {
            p.generation > generation && !(p.owner == agent && p.generation == generation + 1)
        }))
    }

    /// Switches `CURRENT` from `from` to `next`, after checking nobody moved
    /// it or claimed past it meanwhile.
    async fn commit(&self, next: u64, from: u64, agent: &str, have: u64) -> Result<()> {
        let current = self.current().await?;
        let at = current.as_ref().map_or(0, |p| p.generation);
        if at != from {
            let owner = current.map(|p| p.owner).unwrap_or_default();
            return Err(self.stale(have, at, owner));
        }
        if let Some((generation, owner)) = self.foreign_claim(next, agent).await? {
            return Err(self.stale(have, generation, owner));
        }
        let pointer = format!("generation {next}\nowner {agent}\n");
        self.put_atomic("CURRENT", pointer.as_bytes()).await
    }

    /// Uploads one file into `blobs/` unless its content is already there.
    async fn upload(
        &self,
        dir: &Path,
        path: &str,
        in_backing: &BTreeSet<String>,
        uploaded: &mut BTreeSet<String>,
    ) -> Result<(u64, String)> {
        let full = dir.join(path);
        let mut file = tokio::fs::File::open(&full)
            .await
            .map_err(|e| BackingError::Local { path: full.clone(), op: "open", reason: e.to_string() })?;
        let tmp = format!("tmp/{}", uuid::Uuid::new_v4());
        // The hash is of the bytes that went up, so a file that changes
        // while it is read is stored consistently (and synced again next
        // time, since its mtime moved).
        let meta = self.store.put(&tmp, &mut file, PutMode::Overwrite).await?;
        let sha = meta.sha256_hex();
        if in_backing.contains(&sha) || uploaded.contains(&sha) {
            self.store.delete(&tmp).await?;
        } else {
            self.store.rename(&tmp, &format!("blobs/{sha}"), true).await?;
            uploaded.insert(sha.clone());
        }
        Ok((meta.size, sha))
    }

    /// Deletes what neither the new nor the previous generation needs.
    /// Failures are logged, never fatal: the switch already happened.
    async fn collect_garbage(&self, next: u64, previous: u64) {
        if let Err(e) = self.try_collect_garbage(next, previous).await {
            tracing::warn!(backing = self.uri(), error = %e, "cannot delete old generations; they stay until the next sync");
        }
    }

    async fn try_collect_garbage(&self, next: u64, previous: u64) -> Result<()> {
        let mut keep = BTreeSet::new();
        for generation in [next, previous] {
            if generation > 0 {
                keep.extend(self.manifest(generation).await?.files.into_iter().map(|f| f.sha256));
            }
        }
        for entry in self.store.list("blobs").await? {
            if !keep.contains(&entry.name) {
                self.store.delete(&format!("blobs/{}", entry.name)).await?;
            }
        }
        for folder in ["manifests", "claims"] {
            for entry in self.store.list(folder).await? {
                if entry.name.parse::<u64>().is_ok_and(|g| g < previous) {
                    self.store.delete(&format!("{folder}/{}", entry.name)).await?;
                }
            }
        }
        // Only the writer holding the newest claim reaches this point, so
        // what is left in tmp/ is from syncs that died.
        self.store.delete("tmp").await?;
        Ok(())
    }

    /// Restores the current generation into `dir` (which must be empty or
    /// absent) and takes the backing over for `agent` at a new generation,
    /// which fences every other copy. The data is laid down in a staging
    /// directory beside `dir` and renamed into place, so `dir` never holds
    /// half a restore.
    pub async fn restore(&self, dir: &Path, agent: &str) -> Result<(SyncReport, LocalState)> {
        let started = Instant::now();
        let current = self.current().await?;
        let at = current.as_ref().map_or(0, |p| p.generation);
        // Claim first: an old copy that tries to sync from now on is refused.
        let highest_claim = self
            .store
            .list("claims")
            .await?
            .iter()
            .filter_map(|e| e.name.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let next = at.max(highest_claim) + 1;
        self.claim(next, agent, at).await?;
        let manifest = if at == 0 {
            Manifest { volume: self.volume.clone(), generation: 0, owner: agent.to_owned(), dirs: vec![], files: vec![] }
        } else {
            self.manifest(at).await?
        };
        let staging = staging_dir(dir)?;
        let local = |op, e: std::io::Error| BackingError::Local { path: staging.clone(), op, reason: e.to_string() };
        match tokio::fs::remove_dir_all(&staging).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(local("clear the restore staging", e)),
            _ => {}
        }
        tokio::fs::create_dir_all(&staging).await.map_err(|e| local("create", e))?;
        let mut report = SyncReport { generation: next, ..SyncReport::default() };
        for d in &manifest.dirs {
            check_manifest_path(self, d)?;
            tokio::fs::create_dir_all(staging.join(d)).await.map_err(|e| local("create", e))?;
        }
        let mut state = LocalState { generation: next, files: BTreeMap::new() };
        for f in &manifest.files {
            check_manifest_path(self, &f.path)?;
            let target = staging.join(&f.path);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| local("create", e))?;
            }
            let mut out = tokio::fs::File::create(&target).await.map_err(|e| local("create", e))?;
            let blob = format!("blobs/{}", f.sha256);
            let meta = self.store.get(&blob, &mut out, f.size).await?;
            if meta.size != f.size || meta.sha256_hex() != f.sha256 {
                return Err(self.corrupt(
                    &blob,
                    format!("{} needs {} bytes with sha256 {}, read {meta:?}", f.path, f.size, f.sha256),
                ));
            }
            out.sync_all().await.map_err(|e| local("fsync", e))?;
            drop(out);
            tokio::fs::set_permissions(&target, std::fs::Permissions::from_mode(f.mode & 0o7777))
                .await
                .map_err(|e| local("set the mode of", e))?;
            let written = tokio::fs::metadata(&target).await.map_err(|e| local("stat", e))?;
            state.files.insert(
                f.path.clone(),
                LocalFile { size: f.size, mtime_ns: mtime_ns(&written), mode: written.mode(), sha256: f.sha256.clone() },
            );
            report.files_total += 1;
            report.files_copied += 1;
            report.bytes_total += f.size;
            report.bytes_copied += f.size;
        }
        let taken = Manifest { generation: next, owner: agent.to_owned(), ..manifest };
        let encoded = serde_json::to_vec(&taken).map_err(|e| self.corrupt("manifest", e.to_string()))?;
        self.put_atomic(&format!("manifests/{}", generation_name(next)), &encoded).await?;
        self.commit(next, at, agent, at).await?;
        match tokio::fs::remove_dir(dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(BackingError::Local { path: dir.to_owned(), op: "replace (it must be empty)", reason: e.to_string() })
            }
            _ => {}
        }
        tokio::fs::rename(&staging, dir)
            .await
            .map_err(|e| BackingError::Local { path: dir.to_owned(), op: "move the restored data into", reason: e.to_string() })?;
        self.collect_garbage(next, at).await;
        report.millis = started.elapsed().as_millis() as u64;
        Ok((report, state))
    }
}

impl SyncReport {
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.millis)
    }
}

fn parse_pointer(text: &str) -> Option<Pointer> {
    let mut lines = text.lines();
    let generation = lines.next()?.strip_prefix("generation ")?.parse().ok()?;
    let owner = lines.next()?.strip_prefix("owner ")?.to_owned();
    Some(Pointer { generation, owner })
}

/// A manifest names paths inside the volume only; one that does not was
/// not written by a backing and is refused before anything is written.
fn check_manifest_path(backing: &Backing, path: &str) -> Result<()> {
    crate::check_path(backing.uri(), path, false).map_err(|e| backing.corrupt("manifest", e.to_string()))
}

fn staging_dir(dir: &Path) -> Result<PathBuf> {
    let name = dir.file_name().ok_or_else(|| BackingError::Local {
        path: dir.to_owned(),
        op: "restore into",
        reason: "it has no name".to_owned(),
    })?;
    Ok(dir.with_file_name(format!(".restore-{}", name.to_string_lossy())))
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec())
}

struct Found {
    path: String,
    size: u64,
    mtime_ns: i64,
    mode: u32,
}

struct Scan {
    files: Vec<Found>,
    dirs: Vec<String>,
    skipped: u64,
}

/// Lists the regular files and directories under `dir` (links are not
/// followed), sorted by path.
async fn scan(dir: &Path) -> Result<Scan> {
    let root = dir.to_owned();
    tokio::task::spawn_blocking(move || scan_blocking(&root))
        .await
        .map_err(|e| BackingError::Local { path: dir.to_owned(), op: "scan", reason: e.to_string() })?
}

fn scan_blocking(root: &Path) -> Result<Scan> {
    let local = |path: &Path, e: std::io::Error| BackingError::Local { path: path.to_owned(), op: "scan", reason: e.to_string() };
    let mut out = Scan { files: Vec::new(), dirs: Vec::new(), skipped: 0 };
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((full, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&full).map_err(|e| local(&full, e))? {
            let entry = entry.map_err(|e| local(&full, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %entry.path().display(), "not synced: the name is not UTF-8");
                out.skipped += 1;
                continue;
            };
            let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let meta = std::fs::symlink_metadata(entry.path()).map_err(|e| local(&entry.path(), e))?;
            if out.files.len() + out.dirs.len() >= MAX_FILES {
                return Err(local(root, std::io::Error::other(format!("it holds more than {MAX_FILES} entries"))));
            }
            if meta.is_dir() {
                out.dirs.push(path.clone());
                stack.push((entry.path(), path));
            } else if meta.is_file() {
                out.files.push(Found { path, size: meta.len(), mtime_ns: mtime_ns(&meta), mode: meta.mode() });
            } else {
                tracing::debug!(path = %entry.path().display(), "not synced: neither a file nor a directory");
                out.skipped += 1;
            }
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.dirs.sort();
    Ok(out)
}
