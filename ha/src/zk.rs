//! The ZooKeeper implementations.
//!
//! Layout under the address's path (e.g. `/weir`):
//! - `leader/member-NNNNNNNNNN`: one ephemeral sequential node per broker
//!   campaigning, holding its [`LeaderInfo`] as JSON. The lowest sequence
//!   number leads and is the epoch. Each contender watches only its
//!   predecessor (no herd when a leader dies), as Curator's LeaderLatch.
//! - `registry/<collection>/<key>`: one persistent node per record.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use zookeeper_client::{Acl, Acls, Client, CreateMode, CreateOptions, Permission, SessionState};

use crate::{Backoff, Contender, HaError, Lease, LeaderElection, LeaderInfo, Leadership, Record, Registry, Write, ZkAddress};

const ELECTION: &str = "/leader";
const MEMBER_PREFIX: &str = "member-";
const REGISTRY: &str = "/registry";
/// Records above this are refused (ZooKeeper's own limit is about 1 MiB).
const MAX_RECORD: usize = 512 * 1024;
/// Writes per ZooKeeper multi request.
const MULTI_CHUNK: usize = 256;

/// Nodes of a session with credentials: its identity may do anything,
/// everyone else only read (agents and frameworks find the leader
/// without credentials), as Mesos sets them.
static CREATOR_ALL_ANYONE_READ: [Acl; 2] =
    [Acl::new_const(Permission::ALL, "auth", ""), Acl::new_const(Permission::READ, "world", "anyone")];

fn acls(secured: bool) -> Acls<'static> {
    if secured {
        Acls::new(&CREATOR_ALL_ANYONE_READ)
    } else {
        Acls::anyone_all()
    }
}

fn persistent(secured: bool) -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(acls(secured))
}

/// One ZooKeeper session, rooted at the address's path.
#[derive(Clone)]
pub struct ZkSession {
    client: Client,
    address: ZkAddress,
}

/// How many times each session event happened in this process (every
/// session's: `connected`, `connect_failed`, `disconnected`,
/// `sync_connected`, `expired`, `closed`, `auth_failed`), for metrics.
static SESSION_EVENTS: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn note_session_event(event: &'static str) {
    *SESSION_EVENTS.lock().unwrap_or_else(|p| p.into_inner()).entry(event).or_default() += 1;
}

fn session_event_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Disconnected => "disconnected",
        SessionState::SyncConnected => "sync_connected",
        SessionState::AuthFailed => "auth_failed",
        SessionState::Expired => "expired",
        SessionState::Closed => "closed",
        SessionState::ConnectedReadOnly => "connected_read_only",
    }
}

/// The session events counted so far (see `SESSION_EVENTS`), by name.
pub fn session_events() -> Vec<(&'static str, u64)> {
    SESSION_EVENTS.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (*k, *v)).collect()
}

impl ZkSession {
    /// Connects, creates the base path if needed, and roots the client there.
    pub async fn connect(address: &ZkAddress, session_timeout: Duration) -> Result<ZkSession, HaError> {
        let mut connector = Client::connector();
        connector = connector.with_session_timeout(session_timeout);
        if let Some(digest) = &address.digest {
            connector = connector.with_auth("digest", digest.expose().as_bytes());
        }
        let secured = address.digest.is_some();
        let client = connector
            .connect(&address.hosts)
            .await
            .map_err(|e| {
                note_session_event("connect_failed");
                HaError::zk(format!("connect to {}", address.hosts), e)
            })?;
        note_session_event("connected");
        // Every later state change of this session, until it ends.
        let mut states = client.state_watcher();
        tokio::spawn(async move {
            loop {
                let state = states.changed().await;
                note_session_event(session_event_name(state));
                if state.is_terminated() {
                    return;
                }
            }
        });
        for dir in [ELECTION, REGISTRY] {
            let path = format!("{}{dir}", address.path);
            // Made only when missing: ZooKeeper checks the parent's ACL
            // before existence, so a session without the brokers'
            // credentials (an agent finding the leader) may not even try.
            let exists = client.check_stat(&path).await.map_err(|e| HaError::zk(format!("read {path}"), e))?.is_some();
            if !exists {
                client.mkdir(&path, &persistent(secured)).await.map_err(|e| HaError::zk(format!("create {path}"), e))?;
            }
        }
        let client = client
            .chroot(address.path.clone())
            .map_err(|_| HaError::zk("chroot", format!("{} is not a usable path", address.path)))?;
        Ok(ZkSession { client, address: address.clone() })
    }

    /// The timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        self.client.session_timeout()
    }

    pub fn address(&self) -> &ZkAddress {
        &self.address
    }

    /// Resolves when the session is over for good (expired, closed, auth failed).
    pub async fn ended(&self) -> SessionState {
        let mut states = self.client.state_watcher();
        loop {
            let state = states.changed().await;
            if state.is_terminated() {
                return state;
            }
        }
    }
}

/// A member's sequence number, plus one: epoch 0 means "no election".
fn sequence_of(name: &str) -> Option<u64> {
    name.strip_prefix(MEMBER_PREFIX)?.parse::<u64>().ok().map(|s| s + 1)
}

/// The election's members, lowest sequence (the leader) first.
async fn members(client: &Client) -> Result<Vec<(u64, String)>, HaError> {
    let children = client.list_children(ELECTION).await.map_err(|e| HaError::zk("list the election", e))?;
    let mut members: Vec<(u64, String)> = children.into_iter().filter_map(|c| Some((sequence_of(&c)?, c))).collect();
    members.sort();
    Ok(members)
}

async fn member_info(client: &Client, seq: u64, name: &str) -> Result<Option<LeaderInfo>, HaError> {
    match client.get_data(&format!("{ELECTION}/{name}")).await {
        Ok((data, _)) => {
            // A member whose data we cannot read is shown, not trusted.
            let mut info: LeaderInfo = serde_json::from_slice(&data).unwrap_or_else(|_| LeaderInfo {
                id: format!("<unreadable {name}>"),
                address: String::new(),
                epoch: 0,
            });
            info.epoch = seq;
            Ok(Some(info))
        }
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(HaError::zk(format!("read {ELECTION}/{name}"), e)),
    }
}

/// A broker's place in the ZooKeeper election.
pub struct ZkElection {
    session: ZkSession,
    me: LeaderInfo,
}

impl ZkElection {
    pub fn new(session: ZkSession, me: LeaderInfo) -> ZkElection {
        ZkElection { session, me }
    }
}

#[async_trait::async_trait]
impl LeaderElection for ZkElection {
    async fn campaign(&self) -> Result<Leadership, HaError> {
        let client = &self.session.client;
        let data = serde_json::to_vec(&self.me).map_err(|e| HaError::zk("encode the member", e))?;
        let (_, seq) = client
            .create(
                &format!("{ELECTION}/{MEMBER_PREFIX}"),
                &data,
                &CreateMode::EphemeralSequential.with_acls(acls(self.session.address.digest.is_some())),
            )
            .await
            .map_err(|e| HaError::zk("enter the election", e))?;
        let own = format!("{ELECTION}/{MEMBER_PREFIX}{seq}");
        let epoch = sequence_of(&own[ELECTION.len() + 1..])
            .ok_or_else(|| HaError::zk("enter the election", format!("unexpected node name {own}")))?;
        tracing::info!(broker_id = %self.me.id, epoch, node = %own, "campaigning for leadership");
        loop {
            let members = members(client).await?;
            let Some(pos) = members.iter().position(|(s, _)| *s == epoch) else {
                return Err(HaError::LeadershipLost(format!("election node {own} vanished while campaigning")));
            };
            if pos == 0 {
                break;
            }
            // Wait for the one just ahead to go, then look again.
            let predecessor = format!("{ELECTION}/{}", members[pos - 1].1);
            let (stat, watcher) =
                client.check_and_watch_stat(&predecessor).await.map_err(|e| HaError::zk("watch the predecessor", e))?;
            if stat.is_some() {
                tracing::debug!(epoch, %predecessor, "standing by");
                let event = watcher.changed().await;
                if event.session_state.is_terminated() {
                    return Err(HaError::LeadershipLost(format!("ZooKeeper session {:?}", event.session_state)));
                }
            }
        }
        let timeout = self.session.session_timeout();
        // Act only on a confirmation newer than two thirds of the session
        // timeout: a broker that was paused (or cut off) stops before the
        // server can expire its session and elect someone else.
        let lease = Arc::new(Lease::new(timeout * 2 / 3));
        let (lost_tx, lost_rx) = watch::channel(None);
        let lost_tx = Arc::new(lost_tx);
        let renewer = {
            let (client, lease, lost_tx, own) = (client.clone(), lease.clone(), lost_tx.clone(), own.clone());
            let session_id = client.session_id().0;
            tokio::spawn(async move {
                let mut every = tokio::time::interval(timeout / 5);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let sent = Instant::now();
                    match client.check_stat(&own).await {
                        Ok(Some(stat)) if stat.ephemeral_owner == session_id => lease.renew(sent),
                        Ok(_) => {
                            lease.mark_lost();
                            let _ = lost_tx.send(Some(format!("election node {own} is gone")));
                            return;
                        }
                        Err(e) if matches!(e, zookeeper_client::Error::SessionExpired | zookeeper_client::Error::ClientClosed) => {
                            lease.mark_lost();
                            let _ = lost_tx.send(Some(format!("ZooKeeper session ended: {e}")));
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not confirm leadership; the lease runs out unless ZooKeeper answers"),
                    }
                }
            })
        };
        let watcher = {
            let (session, lease, lost_tx) = (self.session.clone(), lease.clone(), lost_tx.clone());
            tokio::spawn(async move {
                let state = session.ended().await;
                lease.mark_lost();
                let _ = lost_tx.send(Some(format!("ZooKeeper session {state:?}")));
            })
        };
        tracing::info!(broker_id = %self.me.id, epoch, "elected leader");
        let client = client.clone();
        let on_resign = Box::new(move || {
            renewer.abort();
            watcher.abort();
            // Best effort: if it fails the session's end removes the node.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = client.delete(&own, None).await;
                });
            }
        });
        Ok(Leadership::new(epoch, lease, lost_rx, on_resign))
    }

    async fn contenders(&self) -> Result<Vec<Contender>, HaError> {
        contenders_of(&self.session.client).await
    }
}

async fn contenders_of(client: &Client) -> Result<Vec<Contender>, HaError> {
    let mut out = Vec::new();
    for (i, (seq, name)) in members(client).await?.iter().enumerate() {
        if let Some(info) = member_info(client, *seq, name).await? {
            out.push(Contender { info, leading: i == 0 });
        }
    }
    // The first one that still exists leads.
    if let Some(first) = out.first_mut() {
        first.leading = true;
    }
    Ok(out)
}

/// Everyone in the election behind `address`, leader first (for `weir status`).
pub async fn contenders(address: &ZkAddress, timeout: Duration) -> Result<Vec<Contender>, HaError> {
    let session = tokio::time::timeout(timeout, ZkSession::connect(address, timeout))
        .await
        .map_err(|_| HaError::zk(format!("connect to {}", address.hosts), format!("no answer within {timeout:?}")))??;
    contenders_of(&session.client).await
}

/// Watches who leads behind `address`. The value is `None` until a leader
/// is known, and keeps the last known leader while ZooKeeper is
/// unreachable. The watching task ends when every receiver is dropped.
pub fn detect(address: ZkAddress) -> watch::Receiver<Option<LeaderInfo>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        tokio::select! {
            _ = tx.closed() => {}
            _ = follow(&address, &tx) => {}
        }
    });
    rx
}

async fn follow(address: &ZkAddress, tx: &watch::Sender<Option<LeaderInfo>>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match ZkSession::connect(address, Duration::from_secs(10)).await {
            Ok(session) => {
                backoff.reset();
                if let Err(e) = follow_session(&session.client, tx).await {
                    tracing::warn!(zk = %address, error = %e, "leader detection lost ZooKeeper; reconnecting");
                }
            }
            Err(e) => tracing::warn!(zk = %address, error = %e, "leader detection cannot reach ZooKeeper; retrying"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn follow_session(client: &Client, tx: &watch::Sender<Option<LeaderInfo>>) -> Result<(), HaError> {
    loop {
        let (children, watcher) =
            client.list_and_watch_children(ELECTION).await.map_err(|e| HaError::zk("watch the election", e))?;
        let mut members: Vec<(u64, String)> =
            children.into_iter().filter_map(|c| Some((sequence_of(&c)?, c))).collect();
        members.sort();
        let mut leader = None;
        for (seq, name) in &members {
            if let Some(info) = member_info(client, *seq, name).await? {
                leader = Some(info);
                break;
            }
        }
        tx.send_if_modified(|current| {
            if *current != leader {
                tracing::info!(leader = ?leader.as_ref().map(|l| (&l.id, &l.address, l.epoch)), "leader changed");
                *current = leader.clone();
                true
            } else {
                false
            }
        });
        let event = watcher.changed().await;
        if event.session_state.is_terminated() {
            return Err(HaError::zk("watch the election", format!("session {:?}", event.session_state)));
        }
    }
}

/// The registry on ZooKeeper. Only the leader writes, so it keeps a mirror
/// of which records exist and turns every write into exactly the create,
/// set or delete that will succeed; writes go out in multi requests.
pub struct ZkRegistry {
    session: ZkSession,
    existing: Mutex<HashSet<(String, String)>>,
    collections: Mutex<HashSet<String>>,
}

impl ZkRegistry {
    pub fn new(session: ZkSession) -> ZkRegistry {
        ZkRegistry { session, existing: Mutex::default(), collections: Mutex::default() }
    }
}

#[async_trait::async_trait]
impl Registry for ZkRegistry {
    async fn load(&self) -> Result<Vec<Record>, HaError> {
        let client = &self.session.client;
        let mut records = Vec::new();
        let mut collections =
            client.list_children(REGISTRY).await.map_err(|e| HaError::zk("list the registry", e))?;
        collections.sort();
        for collection in &collections {
            let dir = format!("{REGISTRY}/{collection}");
            let mut keys = client.list_children(&dir).await.map_err(|e| HaError::zk(format!("list {dir}"), e))?;
            keys.sort();
            // Pipelined: every request is sent before the first answer is awaited.
            let reads: Vec<_> = keys.iter().map(|k| client.get_data(&format!("{dir}/{k}"))).collect();
            for (key, read) in keys.iter().zip(reads) {
                let Some(decoded) = crate::decode_key(key) else {
                    tracing::warn!(path = %format!("{dir}/{key}"), "ignoring a registry node whose name Weir did not write");
                    continue;
                };
                match read.await {
                    Ok((value, _)) => records.push(Record { collection: collection.clone(), key: decoded, value }),
                    Err(zookeeper_client::Error::NoNode) => {}
                    Err(e) => return Err(HaError::zk(format!("read {dir}/{key}"), e)),
                }
            }
        }
        let mut existing = self.existing.lock().unwrap_or_else(|p| p.into_inner());
        existing.clear();
        existing.extend(records.iter().map(|r| (r.collection.clone(), r.key.clone())));
        *self.collections.lock().unwrap_or_else(|p| p.into_inner()) = collections.into_iter().collect();
        Ok(records)
    }

    async fn apply(&self, writes: Vec<Write>) -> Result<(), HaError> {
        let client = &self.session.client;
        for write in &writes {
            let (collection, key) = match write {
                Write::Put(r) => (&r.collection, &r.key),
                Write::Delete { collection, key } => (collection, key),
            };
            crate::memory::check_record_name(collection, key)?;
            if let Write::Put(r) = write {
                if r.value.len() > MAX_RECORD {
                    return Err(HaError::BadRecord {
                        collection: r.collection.clone(),
                        key: r.key.clone(),
                        reason: format!("{} bytes; at most {MAX_RECORD} are stored", r.value.len()),
                    });
                }
                let known = self.collections.lock().unwrap_or_else(|p| p.into_inner()).contains(collection);
                if !known {
                    let dir = format!("{REGISTRY}/{collection}");
                    match client.create(&dir, &[], &persistent(self.session.address.digest.is_some())).await {
                        Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                        Err(e) => return Err(HaError::zk(format!("create {dir}"), e)),
                    }
                    self.collections.lock().unwrap_or_else(|p| p.into_inner()).insert(collection.clone());
                }
            }
        }
        for chunk in writes.chunks(MULTI_CHUNK) {
            let mut existing = self.existing.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut multi = client.new_multi_writer();
            let mut ops = 0;
            for write in chunk {
                let result = match write {
                    Write::Put(r) => {
                        let path = format!("{REGISTRY}/{}/{}", r.collection, crate::encode_key(&r.key));
                        if existing.insert((r.collection.clone(), r.key.clone())) {
                            multi.add_create(&path, &r.value, &persistent(self.session.address.digest.is_some()))
                        } else {
                            multi.add_set_data(&path, &r.value, None)
                        }
                    }
                    Write::Delete { collection, key } => {
                        if !existing.remove(&(collection.clone(), key.clone())) {
                            continue;
                        }
                        multi.add_delete(&format!("{REGISTRY}/{collection}/{}", crate::encode_key(key)), None)
                    }
                };
                result.map_err(|e| HaError::zk("build a registry write", e))?;
                ops += 1;
            }
            if ops == 0 {
                continue;
            }
            multi.commit().await.map_err(|e| HaError::zk("write the registry", e))?;
            *self.existing.lock().unwrap_or_else(|p| p.into_inner()) = existing;
        }
        Ok(())
    }
}
