//! High availability for the broker: who leads, how others find the
//! leader, and the small durable registry a new leader recovers from.
//!
//! Three pieces, each a trait with an in-memory implementation (for the
//! deterministic tests) and a ZooKeeper one (for real deployments):
//!
//! - [`LeaderElection`]: brokers campaign; one at a time holds a
//!   [`Leadership`], which carries its *epoch* (strictly increasing across
//!   leaders) and tells when it is lost. A leadership is only acted on while
//!   its lease is fresh ([`Leadership::is_valid`]): a broker that was paused
//!   or cut off from ZooKeeper stops before its session can expire.
//! - leader detection ([`detect`]): agents, frameworks and the CLI watch
//!   who leads, as a `tokio::sync::watch` of [`LeaderInfo`].
//! - [`Registry`]: a few durable records (collection, key, bytes), written
//!   by the leader before it acknowledges the change they describe.

mod address;
mod backoff;
pub mod memory;
pub mod testing;
pub mod zk;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use address::{ZkAddress, ZkDigest};
pub use backoff::Backoff;

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("bad ZooKeeper address {address:?}: {reason}")]
    BadAddress { address: String, reason: String },
    #[error("ZooKeeper {operation} failed: {message}")]
    ZooKeeper { operation: String, message: String },
    #[error("leadership lost: {0}")]
    LeadershipLost(String),
    #[error("registry record {collection}/{key} is not acceptable: {reason}")]
    BadRecord { collection: String, key: String, reason: String },
}

impl HaError {
    pub(crate) fn zk(operation: impl Into<String>, err: impl std::fmt::Display) -> HaError {
        HaError::ZooKeeper { operation: operation.into(), message: err.to_string() }
    }
}

/// Who a broker is, as published while it campaigns or leads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderInfo {
    /// The broker's instance id (also the prefix of the ids it makes).
    pub id: String,
    /// Where agents, frameworks and the CLI reach it (`host:port`).
    pub address: String,
    /// The leadership term: a new leader always has a larger epoch. Zero
    /// for a contender that does not lead.
    #[serde(default)]
    pub epoch: u64,
}

/// A contender as `weir status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contender {
    pub info: LeaderInfo,
    pub leading: bool,
}

/// Brokers campaign through this.
#[async_trait::async_trait]
pub trait LeaderElection: Send + Sync {
    /// Enters the election and resolves once this contender leads.
    async fn campaign(&self) -> Result<Leadership, HaError>;
    /// Everyone in the election, leader first.
    async fn contenders(&self) -> Result<Vec<Contender>, HaError>;
}

/// Holds a lease on leadership. Dropping it resigns.
pub struct Leadership {
    epoch: u64,
    lease: Arc<Lease>,
    lost: watch::Receiver<Option<String>>,
    /// Runs on resign or drop (deletes the election node, …).
    on_resign: Option<Box<dyn FnOnce() + Send>>,
}

/// When the leadership was last confirmed, and for how long that counts.
pub(crate) struct Lease {
    verified_at: Mutex<Instant>,
    length: Duration,
    lost: AtomicBool,
}

impl Lease {
    pub(crate) fn new(length: Duration) -> Lease {
        Lease { verified_at: Mutex::new(Instant::now()), length, lost: AtomicBool::new(false) }
    }

    /// Confirmation sent at `sent` came back positive.
    pub(crate) fn renew(&self, sent: Instant) {
        let mut at = self.verified_at.lock().unwrap_or_else(|p| p.into_inner());
        if sent > *at {
            *at = sent;
        }
    }

    pub(crate) fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    fn is_valid(&self) -> bool {
        let at = *self.verified_at.lock().unwrap_or_else(|p| p.into_inner());
        !self.lost.load(Ordering::SeqCst) && at.elapsed() < self.length
    }
}

impl Leadership {
    pub(crate) fn new(
        epoch: u64,
        lease: Arc<Lease>,
        lost: watch::Receiver<Option<String>>,
        on_resign: Box<dyn FnOnce() + Send>,
    ) -> Leadership {
        Leadership { epoch, lease, lost, on_resign: Some(on_resign) }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// True while the leadership is confirmed recently enough to act on.
    /// False for good once it is known lost.
    pub fn is_valid(&self) -> bool {
        self.guard().is_valid()
    }

    /// A cheap handle the broker's shell checks before every action.
    pub fn guard(&self) -> LeaseGuard {
        LeaseGuard { lease: Some(self.lease.clone()), lost: Some(self.lost.clone()) }
    }

    /// Resolves with the reason once the leadership is lost (session
    /// expired, node deleted, lease not renewed in time).
    pub async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        loop {
            if let Some(reason) = lost.borrow_and_update().clone() {
                return reason;
            }
            if lost.changed().await.is_err() {
                return "the election went away".to_owned();
            }
        }
    }

    /// Steps down: the next contender takes over.
    pub fn resign(mut self) {
        self.lease.mark_lost();
        if let Some(f) = self.on_resign.take() {
            f();
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.lease.mark_lost();
        if let Some(f) = self.on_resign.take() {
            f();
        }
    }
}

/// See [`Leadership::guard`].
#[derive(Clone)]
pub struct LeaseGuard {
    /// `None`: no election, always valid.
    lease: Option<Arc<Lease>>,
    lost: Option<watch::Receiver<Option<String>>>,
}

impl LeaseGuard {
    pub fn is_valid(&self) -> bool {
        self.lease.as_ref().is_none_or(|l| l.is_valid()) && self.lost.as_ref().is_none_or(|l| l.borrow().is_none())
    }

    /// A guard that is always valid: a broker without an election.
    pub fn always() -> LeaseGuard {
        LeaseGuard { lease: None, lost: None }
    }
}

/// One durable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub collection: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// A change to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Record),
    Delete { collection: String, key: String },
}

/// The durable registry the leader writes before it acknowledges.
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    /// Every record, sorted by (collection, key).
    async fn load(&self) -> Result<Vec<Record>, HaError>;
    /// Applies writes in order. On error none or some may have applied;
    /// the caller must stop acting as leader.
    async fn apply(&self, writes: Vec<Write>) -> Result<(), HaError>;
}

/// Collections become path components as they are: keep them plain.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("{what} must be 1 to 255 bytes long"));
    }
    if name == "." || name == ".." || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:@".contains(&b)) {
        return Err(format!("{what} {name:?} may hold only letters, digits and . _ - : @"));
    }
    Ok(())
}

/// Turns a key into a znode name: bytes outside `[A-Za-z0-9._-]` become
/// `%XX`, so any id (even `..` or one with `/`) is one plain path component.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"_-".contains(&b) || (b == b'.' && key != "." && key != "..") {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_key`]; `None` for a name it could not have made.
pub fn decode_key(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Resolves once a leader with an epoch above `epoch` is known; its epoch.
/// Never, if the detector is gone.
pub async fn newer_leader(leader: &mut watch::Receiver<Option<LeaderInfo>>, epoch: u64) -> u64 {
    loop {
        if let Some(l) = leader.borrow_and_update().as_ref().filter(|l| l.epoch > epoch) {
            return l.epoch;
        }
        if leader.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The current leader, waiting up to `timeout` for one to be known.
pub async fn current_leader(leader: &mut watch::Receiver<Option<LeaderInfo>>, timeout: Duration) -> Option<LeaderInfo> {
    let wait = async {
        loop {
            if let Some(l) = leader.borrow_and_update().clone() {
                return Some(l);
            }
            if leader.changed().await.is_err() {
                return None;
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.ok().flatten()
}

/// Watches who leads, behind a `zk://` address. See [`zk::detect`].
pub fn detect(address: &ZkAddress) -> watch::Receiver<Option<LeaderInfo>> {
    zk::detect(address.clone())
}
