//! The agent's side of backed volumes: each volume with a backing
//! (`hdfs://…`) has a durable copy there, kept by `weir_hdfs_volumes::backing`.
//!
//! - A backed volume is usable only once this agent holds a copy it may
//!   sync: restored from the backing (which takes the backing over at a new
//!   generation, fencing any older copy elsewhere) or attached to an empty
//!   one. Tasks that mount it wait for that; if it fails, they fail with
//!   the reason (an unreachable NameNode, a path that belongs to another
//!   volume…).
//! - Syncs: when a task that mounts it ends, every
//!   `agent.volume.sync.interval` while tasks mount it, and on SYNC. One at
//!   a time per volume. Each is reported to the broker (VOLUME_SYNC).
//! - What a copy last synced (its generation and files) is kept in
//!   `WORK_DIR/volumes/backing/<role>/<id>.json`; its presence means "this
//!   agent holds a copy". A copy whose backing moved on (the volume was
//!   created on another agent meanwhile) is stale: its syncs are refused
//!   and logged as errors, the backing keeps the newer copy, and tasks
//!   that would mount it fail instead of reading old data (checked before
//!   each task starts; if the backing cannot be reached then, the task
//!   starts on the local copy, with a warning).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use weir_hdfs_volumes::backing::{Backing, LocalState, SyncReport};
use weir_hdfs_volumes::StoreSettings;
use weir_model::{Role, VolumeId};

use crate::volumes;

#[derive(Clone, Debug, PartialEq)]
enum Readiness {
    /// Not prepared yet on this agent (no copy).
    Unprepared,
    Preparing,
    Ready,
    Failed(String),
}

struct Copy {
    backing: String,
    /// The store's client, made once (an HDFS client keeps its NameNode
    /// connection between syncs).
    store: std::sync::OnceLock<Arc<dyn weir_hdfs_volumes::VolumeStore>>,
    /// One restore or sync at a time.
    busy: tokio::sync::Mutex<()>,
    ready: watch::Sender<Readiness>,
    /// Live tasks that mount it.
    users: AtomicUsize,
    /// The backing moved past this copy (found by a sync or a check).
    fenced: std::sync::atomic::AtomicBool,
}

/// Every backed volume's copy on this agent.
pub struct Copies {
    /// `WORK_DIR/volumes`.
    root: PathBuf,
    settings: StoreSettings,
    copies: Mutex<HashMap<(Role, VolumeId), Arc<Copy>>>,
}

/// How a restore or sync went, for the broker and the log.
pub struct Done {
    /// create (attached to an empty backing), restore, sync, task-ended, interval.
    pub trigger: &'static str,
    pub backing: String,
    pub result: Result<SyncReport, String>,
    /// The copy is stale: the backing moved past it.
    pub stale: bool,
}

impl Copies {
    pub fn new(root: PathBuf, settings: StoreSettings) -> Copies {
        Copies { root, settings, copies: Mutex::new(HashMap::new()) }
    }

    fn state_path(&self, role: &Role, id: &VolumeId) -> PathBuf {
        self.root.join("backing").join(role.as_str()).join(format!("{id}.json"))
    }

    fn copy(&self, role: &Role, id: &VolumeId, backing: &str) -> Arc<Copy> {
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        let entry = copies.entry((role.clone(), id.clone()));
        let existing = match entry {
            std::collections::hash_map::Entry::Occupied(e) if e.get().backing == backing => return e.get().clone(),
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                return v.insert(self.new_copy(role, id, backing)).clone();
            }
        };
        // Destroyed and created again with another backing.
        *existing = self.new_copy(role, id, backing);
        existing.clone()
    }

    fn new_copy(&self, role: &Role, id: &VolumeId, backing: &str) -> Arc<Copy> {
        let held = self.state_path(role, id).exists();
        let (ready, _) = watch::channel(if held { Readiness::Ready } else { Readiness::Unprepared });
        Arc::new(Copy {
            backing: backing.to_owned(),
            store: std::sync::OnceLock::new(),
            busy: tokio::sync::Mutex::new(()),
            ready,
            users: AtomicUsize::new(0),
            fenced: std::sync::atomic::AtomicBool::new(false),
        })
    }

    async fn open(&self, copy: &Copy, id: &VolumeId) -> Result<Backing, String> {
        let store = match copy.store.get() {
            Some(store) => store.clone(),
            None => {
                let store = weir_hdfs_volumes::open(&copy.backing, &self.settings).map_err(|e| e.to_string())?;
                copy.store.get_or_init(|| store).clone()
            }
        };
        Backing::attach(store, id.as_str()).await.map_err(|e| e.to_string())
    }

    /// Makes the volume usable here: nothing if this agent holds its copy;
    /// else restores the backing's copy (an empty one attaches) and takes
    /// the backing over for `agent`.
    pub async fn prepare(&self, role: &Role, id: &VolumeId, backing: &str, agent: &str) -> Done {
        let copy = self.copy(role, id, backing);
        let _busy = copy.busy.lock().await;
        let state_path = self.state_path(role, id);
        if *copy.ready.borrow() == Readiness::Ready {
            let result = LocalState::load(&state_path)
                .map(|s| SyncReport { generation: s.generation, ..SyncReport::default() })
                .map_err(|e| e.to_string());
            return Done { trigger: "create", backing: copy.backing.clone(), result, stale: copy.fenced.load(Ordering::SeqCst) };
        }
        copy.ready.send_replace(Readiness::Preparing);
        let (trigger, result) = match self.restore(&copy, role, id, agent, &state_path).await {
            Ok((trigger, report)) => {
                copy.fenced.store(false, Ordering::SeqCst);
                copy.ready.send_replace(Readiness::Ready);
                (trigger, Ok(report))
            }
            Err(e) => {
                copy.ready.send_replace(Readiness::Failed(e.clone()));
                ("create", Err(e))
            }
        };
        Done { trigger, backing: copy.backing.clone(), result, stale: false }
    }

    async fn restore(
        &self,
        copy: &Copy,
        role: &Role,
        id: &VolumeId,
        agent: &str,
        state_path: &Path,
    ) -> Result<(&'static str, SyncReport), String> {
        let backing = self.open(copy, id).await?;
        let had_copy = backing.current().await.map_err(|e| e.to_string())?.is_some();
        let dir = volumes::volume_dir(&self.root, role, id);
        let (report, state) = backing.restore(&dir, agent).await.map_err(|e| e.to_string())?;
        state.save(state_path).map_err(|e| e.to_string())?;
        Ok((if had_copy { "restore" } else { "create" }, report))
    }

    /// Waits until the volume is usable; prepares it if nobody has.
    /// Refuses a copy the backing has moved on from.
    pub async fn ensure(&self, role: &Role, id: &VolumeId, backing: &str, agent: &str) -> Result<(), String> {
        let copy = self.copy(role, id, backing);
        let mut ready = copy.ready.subscribe();
        loop {
            let now = ready.borrow_and_update().clone();
            match now {
                Readiness::Ready => return self.check_fresh(&copy, role, id, agent).await,
                // A failure may have passed (a NameNode back up): try again.
                Readiness::Failed(_) | Readiness::Unprepared => {
                    let done = self.prepare(role, id, backing, agent).await;
                    return done.result.map(|_| ()).map_err(|e| format!("volume {id} cannot be restored from {backing}: {e}"));
                }
                Readiness::Preparing => {
                    if ready.changed().await.is_err() {
                        return Err(format!("volume {id}: its preparation was abandoned"));
                    }
                }
            }
        }
    }

    /// Why this agent's copy of a volume is stale, if it holds one and the
    /// backing moved past it (a backing that cannot be read says nothing).
    pub async fn stale(&self, role: &Role, id: &VolumeId, backing: &str, agent: &str) -> Option<String> {
        let copy = self.copy(role, id, backing);
        if *copy.ready.borrow() != Readiness::Ready {
            return None;
        }
        self.check_fresh(&copy, role, id, agent).await.err()
    }

    /// Whether the backing still holds this copy's generation (or has not
    /// moved past it): a copy the volume moved away from is not mounted.
    async fn check_fresh(&self, copy: &Copy, role: &Role, id: &VolumeId, agent: &str) -> Result<(), String> {
        let state = LocalState::load(&self.state_path(role, id)).map_err(|e| e.to_string())?;
        let moved = match self.open(copy, id).await {
            Ok(backing) => backing.moved_past(state.generation, agent).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match moved {
            Ok(Some(pointer)) => {
                copy.fenced.store(true, Ordering::SeqCst);
                Err(format!(
                    "volume {id} here is a stale copy (generation {}); {} holds generation {} of agent {}",
                    state.generation, copy.backing, pointer.generation, pointer.owner
                ))
            }
            Ok(None) => Ok(()),
            Err(error) => {
                tracing::warn!(role = %role, volume_id = %id, backing = %copy.backing, %error, "cannot check the backing; the task uses the local copy");
                Ok(())
            }
        }
    }

    /// Copies what changed to the backing as a new generation.
    pub async fn sync(&self, role: &Role, id: &VolumeId, backing: &str, agent: &str, trigger: &'static str) -> Done {
        let copy = self.copy(role, id, backing);
        let _busy = copy.busy.lock().await;
        let result = self.sync_locked(&copy, role, id, agent).await;
        if let Err(e) = &result {
            tracing::error!(role = %role, volume_id = %id, backing = %copy.backing, trigger, error = %e, "volume not synced");
        }
        Done { trigger, backing: copy.backing.clone(), result, stale: copy.fenced.load(Ordering::SeqCst) }
    }

    async fn sync_locked(&self, copy: &Copy, role: &Role, id: &VolumeId, agent: &str) -> Result<SyncReport, String> {
        if *copy.ready.borrow() != Readiness::Ready {
            return Err(format!("volume {id} holds no copy of {} yet (it was not restored here)", copy.backing));
        }
        let state_path = self.state_path(role, id);
        let state = LocalState::load(&state_path).map_err(|e| e.to_string())?;
        let backing = self.open(copy, id).await?;
        let dir = volumes::volume_dir(&self.root, role, id);
        let (report, state) = backing.sync(&dir, &state, agent).await.map_err(|e| {
            if matches!(e, weir_hdfs_volumes::backing::BackingError::Stale { .. }) {
                copy.fenced.store(true, Ordering::SeqCst);
            }
            e.to_string()
        })?;
        state.save(&state_path).map_err(|e| e.to_string())?;
        Ok(report)
    }

    pub fn task_started(&self, role: &Role, id: &VolumeId, backing: &str) {
        self.copy(role, id, backing).users.fetch_add(1, Ordering::SeqCst);
    }

    pub fn task_ended(&self, role: &Role, id: &VolumeId, backing: &str) {
        let copy = self.copy(role, id, backing);
        let _ = copy.users.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(1)));
    }

    /// Backed volumes that live tasks mount: the interval syncs them.
    pub fn in_use(&self) -> Vec<(Role, VolumeId, String)> {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        copies
            .iter()
            .filter(|(_, c)| c.users.load(Ordering::SeqCst) > 0)
            .map(|((role, id), c)| (role.clone(), id.clone(), c.backing.clone()))
            .collect()
    }

    /// A destroyed volume: its local copy's record goes with its data (the
    /// backing keeps its copy).
    pub fn forget(&self, role: &Role, id: &VolumeId) {
        self.copies.lock().unwrap_or_else(|p| p.into_inner()).remove(&(role.clone(), id.clone()));
        match std::fs::remove_file(self.state_path(role, id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(role = %role, volume_id = %id, error = %e, "cannot delete the volume's sync record")
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copies(root: &Path) -> Copies {
        Copies::new(root.join("volumes"), StoreSettings::default())
    }

    fn dir(root: &Path) -> PathBuf {
        volumes::volume_dir(&root.join("volumes"), &Role::new("db"), &VolumeId::new("pgdata"))
    }

    #[tokio::test]
    async fn a_copy_moves_and_the_old_one_is_neither_synced_nor_mounted() {
        let tmp = tempfile::tempdir().unwrap();
        let backing = format!("file://{}/backing", tmp.path().display());
        let (a_root, b_root) = (tmp.path().join("a"), tmp.path().join("b"));
        let (a, b) = (copies(&a_root), copies(&b_root));
        let (role, id) = (Role::new("db"), VolumeId::new("pgdata"));

        // A attaches to the empty backing and syncs what a task wrote.
        let done = a.prepare(&role, &id, &backing, "A").await;
        assert_eq!((done.trigger, done.result.unwrap().generation), ("create", 1));
        std::fs::write(dir(&a_root).join("note"), "from A").unwrap();
        a.task_started(&role, &id, &backing);
        assert_eq!(a.in_use(), vec![(role.clone(), id.clone(), backing.clone())]);
        a.task_ended(&role, &id, &backing);
        assert!(a.in_use().is_empty());
        let done = a.sync(&role, &id, &backing, "A", "task-ended").await;
        let report = done.result.unwrap();
        assert_eq!((report.generation, report.files_copied, report.bytes_copied), (2, 1, 6));
        a.ensure(&role, &id, &backing, "A").await.unwrap();

        // B has no copy: a task's ensure restores it first.
        b.ensure(&role, &id, &backing, "B").await.unwrap();
        assert_eq!(std::fs::read_to_string(dir(&b_root).join("note")).unwrap(), "from A");

        // A's copy is stale now: not synced, not mounted, and it says why.
        let err = a.sync(&role, &id, &backing, "A", "interval").await.result.unwrap_err();
        assert!(err.contains("this copy is at generation 2") && err.contains("of agent B"), "{err}");
        let err = a.ensure(&role, &id, &backing, "A").await.unwrap_err();
        assert_eq!(err, format!("volume pgdata here is a stale copy (generation 2); {backing} holds generation 3 of agent B"));

        // A fresh agent restarted from its files is ready at once (its
        // record survives), and DESTROY forgets it.
        let b_again = copies(&b_root);
        assert_eq!(b_again.prepare(&role, &id, &backing, "B").await.result.unwrap().generation, 3);
        b_again.forget(&role, &id);
        assert!(!b_root.join("volumes/backing/db/pgdata.json").exists());
    }

    #[tokio::test]
    async fn a_backing_that_cannot_be_attached_fails_every_task_that_waits_for_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("busy")).unwrap();
        std::fs::write(tmp.path().join("busy/other"), "x").unwrap();
        let backing = format!("file://{}/busy", tmp.path().display());
        let c = copies(tmp.path());
        let (role, id) = (Role::new("db"), VolumeId::new("pgdata"));
        let err = c.ensure(&role, &id, &backing, "A").await.unwrap_err();
        assert!(err.starts_with(&format!("volume pgdata cannot be restored from {backing}: backing {backing} exists and is not a Weir volume backing")), "{err}");
        let err = c.ensure(&role, &id, &backing, "A").await.unwrap_err();
        assert!(err.contains("is not a Weir volume backing"), "{err}");
        let err = c.sync(&role, &id, &backing, "A", "sync").await.result.unwrap_err();
        assert!(err.contains("holds no copy"), "{err}");
    }
}
