//! In-memory election and registry: the same contracts as ZooKeeper's, in
//! one process, for deterministic tests. Losing a "session" is an explicit
//! call ([`MemoryElection::expire`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::{Contender, HaError, Lease, LeaderElection, LeaderInfo, Leadership, Record, Registry, Write};

struct Member {
    info: LeaderInfo,
    lease: Arc<Lease>,
    lost: watch::Sender<Option<String>>,
}

#[derive(Default)]
struct Board {
    last_epoch: u64,
    /// In the order they entered (= epoch order); the first one leads.
    members: Vec<Member>,
}

/// An election board shared by every contender of one test.
#[derive(Clone)]
pub struct MemoryElection {
    board: Arc<Mutex<Board>>,
    changed: Arc<Notify>,
    leader: Arc<watch::Sender<Option<LeaderInfo>>>,
}

impl Default for MemoryElection {
    fn default() -> Self {
        MemoryElection {
            board: Arc::default(),
            changed: Arc::new(Notify::new()),
            leader: Arc::new(watch::channel(None).0),
        }
    }
}

impl MemoryElection {
    pub fn new() -> MemoryElection {
        MemoryElection::default()
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A contender that campaigns as `info` (its epoch is assigned on entry).
    pub fn contender(&self, info: LeaderInfo) -> MemoryContender {
        MemoryContender { election: self.clone(), info }
    }

    /// Enters `info` into the election at once and returns its epoch.
    pub fn enter(&self, info: LeaderInfo) -> u64 {
        self.enter_member(info).0
    }

    fn enter_member(&self, mut info: LeaderInfo) -> (u64, Arc<Lease>, watch::Receiver<Option<String>>) {
        let mut board = self.lock();
        board.last_epoch += 1;
        info.epoch = board.last_epoch;
        let lease = Arc::new(Lease::new(Duration::MAX / 4));
        let (lost, lost_rx) = watch::channel(None);
        board.members.push(Member { info, lease: lease.clone(), lost });
        let epoch = board.last_epoch;
        drop(board);
        self.publish();
        (epoch, lease, lost_rx)
    }

    /// The contender with this epoch loses its session (or resigns).
    pub fn expire(&self, epoch: u64, reason: &str) {
        let mut board = self.lock();
        if let Some(pos) = board.members.iter().position(|m| m.info.epoch == epoch) {
            let member = board.members.remove(pos);
            member.lease.mark_lost();
            let _ = member.lost.send(Some(reason.to_owned()));
        }
        drop(board);
        self.publish();
    }

    /// Who leads now.
    pub fn leader(&self) -> Option<LeaderInfo> {
        self.lock().members.first().map(|m| m.info.clone())
    }

    /// Leader detection, as agents and frameworks use it.
    pub fn watch(&self) -> watch::Receiver<Option<LeaderInfo>> {
        self.leader.subscribe()
    }

    fn publish(&self) {
        let leader = self.leader();
        self.leader.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader.clone();
            changed
        });
        self.changed.notify_waiters();
    }
}

/// One broker's view of a [`MemoryElection`].
pub struct MemoryContender {
    election: MemoryElection,
    info: LeaderInfo,
}

#[async_trait::async_trait]
impl LeaderElection for MemoryContender {
    async fn campaign(&self) -> Result<Leadership, HaError> {
        let (epoch, lease, lost) = self.election.enter_member(self.info.clone());
        loop {
            let notified = self.election.changed.notified();
            if self.election.leader().is_some_and(|l| l.epoch == epoch) {
                break;
            }
            if lost.borrow().is_some() {
                return Err(HaError::LeadershipLost("expired while campaigning".to_owned()));
            }
            notified.await;
        }
        let election = self.election.clone();
        Ok(Leadership::new(epoch, lease, lost, Box::new(move || election.expire(epoch, "resigned"))))
    }

    async fn contenders(&self) -> Result<Vec<Contender>, HaError> {
        let board = self.election.lock();
        Ok(board
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| Contender { info: m.info.clone(), leading: i == 0 })
            .collect())
    }
}

/// A registry in a map, shared by clones.
#[derive(Clone, Default)]
pub struct MemoryRegistry {
    records: Arc<Mutex<BTreeMap<(String, String), Vec<u8>>>>,
}

impl MemoryRegistry {
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), Vec<u8>>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn load_now(&self) -> Vec<Record> {
        self.lock()
            .iter()
            .map(|((collection, key), value)| Record { collection: collection.clone(), key: key.clone(), value: value.clone() })
            .collect()
    }

    pub fn apply_now(&self, writes: Vec<Write>) -> Result<(), HaError> {
        let mut records = self.lock();
        for write in writes {
            match write {
                Write::Put(r) => {
                    check_record_name(&r.collection, &r.key)?;
                    records.insert((r.collection, r.key), r.value);
                }
                Write::Delete { collection, key } => {
                    records.remove(&(collection, key));
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn check_record_name(collection: &str, key: &str) -> Result<(), HaError> {
    let bad = |reason: String| HaError::BadRecord { collection: collection.to_owned(), key: key.to_owned(), reason };
    crate::validate_name("collection", collection).map_err(bad)?;
    if key.is_empty() || key.len() > 1024 {
        return Err(bad(format!("a key must be 1 to 1024 bytes long, not {}", key.len())));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Registry for MemoryRegistry {
    async fn load(&self) -> Result<Vec<Record>, HaError> {
        Ok(self.load_now())
    }

    async fn apply(&self, writes: Vec<Write>) -> Result<(), HaError> {
        self.apply_now(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> LeaderInfo {
        LeaderInfo { id: id.to_owned(), address: format!("{id}:1"), epoch: 0 }
    }

    #[tokio::test]
    async fn the_first_contender_leads_and_the_next_takes_over_when_it_goes() {
        let election = MemoryElection::new();
        let mut watch = election.watch();
        let a = election.contender(info("a"));
        let b = election.contender(info("b"));
        let lead_a = a.campaign().await.unwrap();
        assert!(lead_a.is_valid());
        let b_campaign = tokio::spawn(async move { b.campaign().await.map(|l| (l.epoch(), l)) });
        tokio::task::yield_now().await;
        assert_eq!(election.leader().unwrap().id, "a");
        assert_eq!(watch.borrow_and_update().as_ref().unwrap().id, "a");
        let guard = lead_a.guard();
        election.expire(lead_a.epoch(), "session expired");
        assert!(!guard.is_valid(), "a lost leadership must never look valid");
        assert_eq!(lead_a.lost().await, "session expired");
        let (epoch_b, lead_b) = b_campaign.await.unwrap().unwrap();
        assert!(epoch_b > lead_a.epoch(), "epochs grow");
        assert!(lead_b.is_valid());
        watch.changed().await.unwrap();
        assert_eq!(watch.borrow().as_ref().unwrap().id, "b");
        drop(lead_b);
        assert_eq!(election.leader(), None);
    }

    #[test]
    fn the_registry_keeps_what_was_put_and_forgets_what_was_deleted() {
        let r = MemoryRegistry::new();
        let put = |c: &str, k: &str, v: &[u8]| Write::Put(Record { collection: c.into(), key: k.into(), value: v.to_vec() });
        r.apply_now(vec![put("agents", "a1", b"x"), put("agents", "a2", b"y"), put("weights", "r", b"2")]).unwrap();
        r.apply_now(vec![Write::Delete { collection: "agents".into(), key: "a1".into() }, put("agents", "a2", b"z")]).unwrap();
        let all = r.load_now();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], Record { collection: "agents".into(), key: "a2".into(), value: b"z".to_vec() });
        let err = r.apply_now(vec![put("../agents", "x", b"")]).unwrap_err().to_string();
        assert!(err.contains("../agents/x"), "{err}");
        r.apply_now(vec![put("agents", "../x y/*", b"")]).unwrap();
    }
}
