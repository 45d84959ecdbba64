//! The agent's checkpoint: its framing on disk and where it is kept.
//!
//! The checkpoint is what a restarted agent needs (its id, its tasks, their
//! supervisors, every unacknowledged update). The shell writes it after each
//! batch of inputs that changed state and before any effect of those inputs
//! runs; a write only counts once [`CheckpointStore::write`] returned `Ok`,
//! which for the file store means it is on disk (write, fsync, rename, fsync
//! of the directory), so a crash leaves the old checkpoint or the new one.
//!
//! Framing: magic, payload length (u64 big-endian), `AgentCheckpoint`
//! protobuf, checksum; a truncated or damaged file is told from a valid one
//! (a bare protobuf cut at a field boundary would decode as a smaller,
//! wrong state).
//! - `WEIRCKP2` (written): CRC-32 (big-endian u32) of everything before it.
//! - `WEIRCKP1` (read only, older agents): FNV-1a 64 (big-endian u64) of the
//!   payload, so an upgraded agent re-attaches to its tasks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message;
use weir_proto::v1;

use crate::error::AgentError;

/// The largest checkpoint read back.
const MAX_CHECKPOINT_BYTES: u64 = 256 << 20;

const MAGIC_V1: &[u8; 8] = b"WEIRCKP1";
const MAGIC_V2: &[u8; 8] = b"WEIRCKP2";
/// Magic and payload length.
const HEADER: usize = 8 + 8;

/// Where the checkpoint is kept. Implementations: [`FileCheckpointStore`]
/// (the agent's), [`MemoryCheckpointStore`] and [`FailingCheckpointStore`]
/// (tests).
pub trait CheckpointStore: Send + Sync + 'static {
    /// Names the checkpoint in logs, errors and `/health`.
    fn location(&self) -> PathBuf;
    /// The stored checkpoint; `None` when there is none yet. A damaged one
    /// is an error naming what is wrong with it.
    fn read(&self) -> Result<Option<v1::AgentCheckpoint>, AgentError>;
    /// Replaces the checkpoint; durable once this returns `Ok`.
    fn write(&self, checkpoint: &v1::AgentCheckpoint) -> Result<(), AgentError>;
    /// Moves a damaged checkpoint out of the way, kept for a person to look
    /// at; `stamp` (Unix seconds) tells several apart. Returns where it went.
    fn set_aside(&self, stamp: u64) -> Result<PathBuf, String>;
}

/// Reads the checkpoint; a damaged one is set aside, reported by name, and
/// the agent starts afresh (a new agent: the tasks it ran are unknown to it).
pub fn load(store: &dyn CheckpointStore, stamp: u64) -> Option<v1::AgentCheckpoint> {
    match store.read() {
        Ok(checkpoint) => checkpoint,
        Err(err) => {
            let aside = store.set_aside(stamp);
            tracing::error!(
                error = %err,
                moved_to = %aside.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                moved = aside.is_ok(),
                "the agent's checkpoint is unusable; starting afresh as a new agent (tasks it ran are unknown to it)"
            );
            None
        }
    }
}

/// The bytes of a checkpoint, framed as `WEIRCKP2`.
pub fn encode(checkpoint: &v1::AgentCheckpoint) -> Vec<u8> {
    let payload = checkpoint.encode_to_vec();
    let mut bytes = Vec::with_capacity(HEADER + payload.len() + 4);
    bytes.extend_from_slice(MAGIC_V2);
    bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    bytes.extend_from_slice(&payload);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

/// A checkpoint from its bytes (`WEIRCKP2` or `WEIRCKP1`); the error says
/// what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<v1::AgentCheckpoint, String> {
    let trailer = match bytes.get(..8) {
        Some(m) if m == MAGIC_V2 => 4,
        Some(m) if m == MAGIC_V1 => 8,
        _ => return Err(format!("not a Weir checkpoint ({} bytes, bad or missing header)", bytes.len())),
    };
    if bytes.len() < HEADER + trailer {
        return Err(format!("truncated or padded: {} bytes is shorter than any checkpoint", bytes.len()));
    }
    let len = u64::from_be_bytes(bytes[8..HEADER].try_into().unwrap_or_default());
    let held = bytes.len() - HEADER - trailer;
    if len != held as u64 {
        return Err(format!("truncated or padded: header says {len} bytes of state, file holds {held}"));
    }
    let (framed, stored) = bytes.split_at(HEADER + held);
    let payload = &framed[HEADER..];
    let intact = match trailer {
        4 => u32::from_be_bytes(stored.try_into().unwrap_or_default()) == crc32fast::hash(framed),
        _ => u64::from_be_bytes(stored.try_into().unwrap_or_default()) == crate::fnv::fnv1a(payload),
    };
    if !intact {
        return Err("checksum mismatch: the file is damaged".to_owned());
    }
    v1::AgentCheckpoint::decode(payload).map_err(|e| format!("not a valid checkpoint: {e}"))
}

/// The agent's store: `WORK_DIR/meta/checkpoint.pb`.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    path: PathBuf,
}

impl FileCheckpointStore {
    pub fn new(path: PathBuf) -> FileCheckpointStore {
        FileCheckpointStore { path }
    }

    /// Where an agent with this work directory keeps its checkpoint.
    pub fn in_work_dir(work_dir: &Path) -> FileCheckpointStore {
        FileCheckpointStore::new(work_dir.join("meta").join("checkpoint.pb"))
    }

    fn bad(&self, reason: String) -> AgentError {
        AgentError::Checkpoint { path: self.path.clone(), reason }
    }

    /// Write, fsync, rename, fsync the directory: a crash leaves the old
    /// checkpoint or the new one, and a returned write survives it.
    fn write_durably(&self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        // The agent's alone (tasks' commands and environments, the agent's
        // id): 0600, also over a temporary file an older agent left 0644.
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl CheckpointStore for FileCheckpointStore {
    fn location(&self) -> PathBuf {
        self.path.clone()
    }

    fn read(&self) -> Result<Option<v1::AgentCheckpoint>, AgentError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.bad(e.to_string())),
        };
        if meta.len() > MAX_CHECKPOINT_BYTES {
            return Err(self.bad(format!("{} bytes is more than the {MAX_CHECKPOINT_BYTES} allowed", meta.len())));
        }
        let bytes = std::fs::read(&self.path).map_err(|e| self.bad(e.to_string()))?;
        decode(&bytes).map(Some).map_err(|reason| self.bad(reason))
    }

    fn write(&self, checkpoint: &v1::AgentCheckpoint) -> Result<(), AgentError> {
        self.write_durably(&encode(checkpoint)).map_err(|e| self.bad(format!("cannot write: {e}")))
    }

    fn set_aside(&self, stamp: u64) -> Result<PathBuf, String> {
        let aside = self.path.with_extension(format!("corrupt-{stamp}"));
        std::fs::rename(&self.path, &aside).map_err(|e| e.to_string())?;
        Ok(aside)
    }
}

/// A checkpoint kept in memory, framed as on disk; clones share it, so a
/// test can restart an agent on the checkpoint its predecessor wrote.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpointStore {
    bytes: Arc<Mutex<Option<Vec<u8>>>>,
    writes: Arc<AtomicU64>,
}

impl MemoryCheckpointStore {
    pub fn new() -> MemoryCheckpointStore {
        MemoryCheckpointStore::default()
    }

    /// How many writes succeeded.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// The checkpoint last written, if any.
    pub fn checkpoint(&self) -> Option<v1::AgentCheckpoint> {
        self.read().ok().flatten()
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn location(&self) -> PathBuf {
        PathBuf::from("memory:checkpoint")
    }

    fn read(&self) -> Result<Option<v1::AgentCheckpoint>, AgentError> {
        let bytes = self.bytes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match bytes {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some).map_err(|reason| AgentError::Checkpoint { path: self.location(), reason }),
        }
    }

    fn write(&self, checkpoint: &v1::AgentCheckpoint) -> Result<(), AgentError> {
        *self.bytes.lock().unwrap_or_else(|p| p.into_inner()) = Some(encode(checkpoint));
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn set_aside(&self, _stamp: u64) -> Result<PathBuf, String> {
        self.bytes.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(PathBuf::from("memory:discarded"))
    }
}

/// Wraps a store and fails every write while switched on (a full or broken
/// disk), for tests of what the agent holds back meanwhile.
pub struct FailingCheckpointStore {
    inner: Arc<dyn CheckpointStore>,
    failing: AtomicBool,
    failed: AtomicU64,
}

impl FailingCheckpointStore {
    pub fn new(inner: Arc<dyn CheckpointStore>) -> FailingCheckpointStore {
        FailingCheckpointStore { inner, failing: AtomicBool::new(false), failed: AtomicU64::new(0) }
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many writes were refused.
    pub fn failed_writes(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }
}

impl CheckpointStore for FailingCheckpointStore {
    fn location(&self) -> PathBuf {
        self.inner.location()
    }

    fn read(&self) -> Result<Option<v1::AgentCheckpoint>, AgentError> {
        self.inner.read()
    }

    fn write(&self, checkpoint: &v1::AgentCheckpoint) -> Result<(), AgentError> {
        if self.failing.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(AgentError::Checkpoint { path: self.location(), reason: "cannot write: No space left on device (injected)".to_owned() });
        }
        self.inner.write(checkpoint)
    }

    fn set_aside(&self, stamp: u64) -> Result<PathBuf, String> {
        self.inner.set_aside(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> v1::AgentCheckpoint {
        v1::AgentCheckpoint {
            agent_id: "A1".into(),
            update_counter: 7,
            tasks: vec![v1::CheckpointedTask { framework_id: "F1".into(), sandbox: "/s".into(), supervisor_pid: 42, ..Default::default() }],
            reservations: vec![v1::ReservationInfo { id: "r1".into(), role: "db".into(), ..Default::default() }],
            volumes: vec![v1::VolumeInfo { id: "data".into(), role: "db".into(), reservation_id: "r1".into(), size: 10.0, ..Default::default() }],
        }
    }

    /// What an agent before `WEIRCKP2` wrote.
    fn encode_v1(checkpoint: &v1::AgentCheckpoint) -> Vec<u8> {
        let payload = checkpoint.encode_to_vec();
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&crate::fnv::fnv1a(&payload).to_be_bytes());
        bytes
    }

    #[test]
    fn checkpoints_round_trip_and_damage_is_detected_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta/checkpoint.pb");
        let store = FileCheckpointStore::new(path.clone());
        assert!(store.read().unwrap().is_none(), "no checkpoint yet");
        // A temporary file an older agent left readable to all.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path.with_extension("tmp"), b"old").unwrap();
        std::fs::set_permissions(path.with_extension("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        store.write(&sample()).unwrap();
        assert_eq!(store.read().unwrap(), Some(sample()));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "the checkpoint is the agent's alone");
        let good = std::fs::read(&path).unwrap();

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 3].to_vec(), "truncated or padded"),
            (good[..20].to_vec(), "truncated or padded"),
            (Vec::new(), "not a Weir checkpoint"),
            (b"garbage that is long enough to pass".to_vec(), "not a Weir checkpoint"),
            ({ let mut b = good.clone(); b[20] ^= 0xff; b }, "checksum mismatch"),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let err = store.read().unwrap_err().to_string();
            assert!(err.starts_with(&format!("checkpoint {}: ", path.display())), "{err}");
            assert!(err.contains(expected), "{err}");
            // The agent does not stop: the file is moved aside, kept.
            assert!(load(&store, 1_700_000_000).is_none());
            assert!(!path.exists());
            let kept = std::fs::read_dir(path.parent().unwrap()).unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains("corrupt-"));
            assert!(kept, "the damaged checkpoint was not kept");
        }
    }

    #[test]
    fn new_checkpoints_are_crc32_framed_and_old_fnv_ones_still_read() {
        let new = encode(&sample());
        assert_eq!(&new[..8], b"WEIRCKP2");
        assert_eq!(decode(&new).unwrap(), sample());
        let old = encode_v1(&sample());
        assert_eq!(&old[..8], b"WEIRCKP1");
        assert_eq!(decode(&old).unwrap(), sample(), "an upgraded agent must read what its predecessor wrote");

        // Through the file store too: an old file is read, the next write
        // replaces it with the new framing.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.pb");
        std::fs::write(&path, &old).unwrap();
        let store = FileCheckpointStore::new(path.clone());
        assert_eq!(store.read().unwrap(), Some(sample()));
        store.write(&sample()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), new);
    }

    #[test]
    fn damage_at_any_byte_is_detected_in_both_framings() {
        for (name, good) in [("WEIRCKP2", encode(&sample())), ("WEIRCKP1", encode_v1(&sample()))] {
            for i in 0..good.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = good.clone();
                    bad[i] ^= flip;
                    assert!(decode(&bad).is_err(), "{name}: flipping {flip:#04x} at byte {i} went unnoticed");
                }
            }
            for len in 0..good.len() {
                assert!(decode(&good[..len]).is_err(), "{name}: truncation to {len} bytes went unnoticed");
            }
            let mut padded = good.clone();
            padded.push(0);
            assert!(decode(&padded).is_err(), "{name}: a padded file went unnoticed");
        }
    }

    #[test]
    fn a_file_write_that_cannot_be_done_names_the_path_and_the_cause_and_keeps_the_old_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.pb");
        let store = FileCheckpointStore::new(path.clone());
        store.write(&sample()).unwrap();
        // The temporary file cannot be created where a directory stands.
        std::fs::create_dir(path.with_extension("tmp")).unwrap();
        let newer = v1::AgentCheckpoint { update_counter: 8, ..sample() };
        let err = store.write(&newer).unwrap_err().to_string();
        assert!(err.starts_with(&format!("checkpoint {}: cannot write: ", path.display())), "{err}");
        assert!(err.to_lowercase().contains("directory"), "the cause is missing: {err}");
        assert_eq!(store.read().unwrap(), Some(sample()), "a failed write must leave the old checkpoint whole");
    }

    #[test]
    fn a_failing_store_refuses_writes_until_switched_off_and_names_its_location() {
        let memory = MemoryCheckpointStore::new();
        let store = FailingCheckpointStore::new(Arc::new(memory.clone()));
        store.set_failing(true);
        let err = store.write(&sample()).unwrap_err().to_string();
        assert!(err.starts_with("checkpoint memory:checkpoint: cannot write"), "{err}");
        assert_eq!((store.failed_writes(), memory.writes()), (1, 0));
        assert_eq!(store.read().unwrap(), None, "a refused write must leave nothing behind");
        store.set_failing(false);
        store.write(&sample()).unwrap();
        assert_eq!(memory.checkpoint(), Some(sample()));
    }
}
