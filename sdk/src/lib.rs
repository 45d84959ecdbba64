//! A framework's client for the broker's scheduler API.
//!
//! [`Framework::subscribe`] opens the stream and waits for SUBSCRIBED;
//! [`Framework::next_event`] yields events and, when the stream breaks,
//! re-subscribes with the same framework id (so a framework with a failover
//! timeout keeps its tasks) and yields SUBSCRIBED again; the typed call
//! methods send calls on the current stream.
//!
//! The broker address may be `zk://host:port,…/path`: the SDK then finds
//! the leading broker through ZooKeeper, and when another broker takes over
//! it drops the old stream and re-subscribes to the new leader. A broker
//! whose epoch is smaller than one already seen is never followed.

pub mod auth;
pub mod operations;

pub use auth::{BearerToken, Token};

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use weir_ha::{LeaderInfo, ZkAddress};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use weir_model::{AgentId, FrameworkId, OfferId, TaskId};
use weir_proto::v1;
use weir_proto::v1::scheduler_client::SchedulerClient;

#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    #[error("broker address {addr:?} is not valid: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("cannot reach the broker at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("the broker refused the subscription: {0}")]
    Refused(String),
    #[error("the stream to the broker is closed")]
    Disconnected,
    #[error("no broker leads at {addr} yet")]
    NoLeader { addr: String },
    #[error("the broker at {addr} leads epoch {epoch}, older than epoch {seen} already seen; not following it")]
    StaleLeader { addr: String, epoch: u64, seen: u64 },
    #[error("gave up reconnecting to the broker at {addr} after {attempts} attempts: {last}")]
    GaveUp { addr: String, attempts: u32, last: String },
}

/// Who the framework is and how it reconnects.
#[derive(Debug, Clone)]
pub struct FrameworkConfig {
    /// `host:port` of the broker (an `http://` prefix is optional).
    pub broker: String,
    pub name: String,
    pub roles: Vec<String>,
    /// How long the broker keeps this framework's tasks while it is away.
    pub failover_timeout: Duration,
    /// Set to resume an earlier framework (scheduler failover).
    pub framework_id: Option<FrameworkId>,
    pub user: String,
    pub hostname: String,
    /// The framework's web UI (`http://host:port`), which the broker's UI
    /// links to; empty when it has none.
    pub webui_url: String,
    /// Re-subscribe when the stream breaks (false: `next_event` ends).
    pub reconnect: bool,
    /// Attempts before giving up; the wait doubles from 100 ms to 5 s.
    pub max_reconnect_attempts: u32,
    /// Where the data its tasks read is (hosts' bytes, HDFS files,
    /// volumes): the broker offers the agents holding it first. Sent with
    /// every SUBSCRIBE, so it survives a reconnection; change it with
    /// [`Framework::revive_for_data`].
    pub data: Option<v1::DataLocality>,
    /// Take revocable offers (the REVOCABLE_RESOURCES capability): the
    /// headroom held for guaranteed roles that do not use it, lent until
    /// they ask, when tasks on it are the first revoked (see
    /// [`offer_is_revocable`]).
    pub revocable_resources: bool,
    /// Sent as `authorization: Bearer …` to a broker with authentication
    /// on; the broker then records the token's principal on the framework.
    pub token: Option<Token>,
    /// PEM of the CA that signed the broker's certificate: set, the SDK
    /// speaks TLS to the broker (`broker.tls.*`) and trusts only that CA.
    pub tls_ca: Option<Vec<u8>>,
    /// A client certificate and its key (PEM) shown to the broker over
    /// TLS: a broker with mutual TLS (`broker.tls.client.ca.file`) takes
    /// the certificate's principal instead of a token.
    pub tls_identity: Option<TlsIdentity>,
}

/// A client certificate chain and private key, in PEM; `Debug` never
/// shows the key.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity(<certificate and key>)")
    }
}

/// Whether an offer is revocable (its resources are marked so; an offer
/// is revocable as a whole).
pub fn offer_is_revocable(offer: &v1::Offer) -> bool {
    offer.resources.iter().any(|r| r.revocable)
}

impl FrameworkConfig {
    pub fn new(broker: impl Into<String>, name: impl Into<String>) -> FrameworkConfig {
        FrameworkConfig {
            broker: broker.into(),
            name: name.into(),
            roles: Vec::new(),
            failover_timeout: Duration::ZERO,
            framework_id: None,
            user: std::env::var("USER").unwrap_or_default(),
            hostname: String::new(),
            webui_url: String::new(),
            reconnect: true,
            max_reconnect_attempts: 20,
            data: None,
            revocable_resources: false,
            token: None,
            tls_ca: None,
            tls_identity: None,
        }
    }
}

/// A subscribed framework.
pub struct Framework {
    config: FrameworkConfig,
    id: FrameworkId,
    /// Who leads, when the broker address is `zk://`.
    leader: Option<watch::Receiver<Option<LeaderInfo>>>,
    /// The epoch of the broker the current stream is with; the largest seen.
    epoch: u64,
    calls: Option<mpsc::Sender<v1::Call>>,
    events: Option<Streaming<v1::Event>>,
    /// The data locality last stated, sent again with every re-SUBSCRIBE.
    data: std::sync::Mutex<Option<v1::DataLocality>>,
}

pub use weir_model::task::REVOKED_REASON;

/// A revocation notice (issue 19): these tasks of the framework are taken
/// back for a role below its guarantee; those still running at `deadline`
/// are killed. Ending them sooner (with [`Framework::kill`]) after saving
/// their work is the framework's chance to lose less.
#[derive(Debug, Clone, PartialEq)]
pub struct RevocationNotice {
    pub tasks: Vec<(TaskId, AgentId)>,
    pub deadline: std::time::SystemTime,
    pub for_role: String,
    pub message: String,
}

/// The revocation notice in `event`, if it is one. Entries with bad ids
/// are left out, and a deadline that is not a time is taken as now.
pub fn revocation(event: &v1::Event) -> Option<RevocationNotice> {
    let Some(v1::event::Kind::Revocation(r)) = &event.kind else { return None };
    let tasks = r
        .tasks
        .iter()
        .filter_map(|t| {
            let task = weir_proto::convert::id::<TaskId>("task_id", &t.task_id).ok()?;
            let agent = weir_proto::convert::id::<AgentId>("agent_id", &t.agent_id).ok()?;
            Some((task, agent))
        })
        .collect();
    let deadline = Duration::try_from_secs_f64(r.deadline)
        .ok()
        .and_then(|d| std::time::UNIX_EPOCH.checked_add(d))
        .unwrap_or_else(std::time::SystemTime::now);
    Some(RevocationNotice { tasks, deadline, for_role: r.for_role.clone(), message: r.message.clone() })
}

/// Whether a task's status says the broker ended it by revocation.
pub fn revoked(status: &v1::TaskStatus) -> bool {
    status.reason == REVOKED_REASON
}

pub fn endpoint(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// A gRPC endpoint for `addr`: over TLS trusting only `ca` (PEM) when it
/// is given, plain otherwise.
pub fn grpc_endpoint(addr: &str, ca: Option<&[u8]>) -> Result<tonic::transport::Endpoint, String> {
    grpc_endpoint_as(addr, ca, None)
}

/// [`grpc_endpoint`] that, over TLS, shows `identity` as the client
/// certificate.
pub fn grpc_endpoint_as(addr: &str, ca: Option<&[u8]>, identity: Option<&TlsIdentity>) -> Result<tonic::transport::Endpoint, String> {
    let url = match ca {
        Some(_) => format!("https://{}", addr.trim_start_matches("http://").trim_start_matches("https://")),
        None => endpoint(addr),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url).map_err(|e| e.to_string())?;
    match ca {
        None => Ok(endpoint),
        Some(ca) => endpoint
            .tls_config({
                let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
                match identity {
                    Some(id) => tls.identity(tonic::transport::Identity::from_pem(&id.cert_pem, &id.key_pem)),
                    None => tls,
                }
            })
            .map_err(|e| format!("TLS configuration: {e}")),
    }
}

impl Framework {
    /// Connects and subscribes; returns once the broker said SUBSCRIBED.
    pub async fn subscribe(config: FrameworkConfig) -> Result<Framework, SdkError> {
        let mut leader = if ZkAddress::is_zk(&config.broker) {
            let address = ZkAddress::parse(&config.broker)
                .map_err(|e| SdkError::BadAddress { addr: config.broker.clone(), reason: e.to_string() })?;
            Some(weir_ha::detect(&address))
        } else {
            None
        };
        let (id, calls, events, epoch) = open(&config, config.framework_id.as_ref(), leader.as_mut(), 0, config.data.clone()).await?;
        tracing::info!(framework_id = %id, broker = %config.broker, epoch, "subscribed");
        let data = std::sync::Mutex::new(config.data.clone());
        Ok(Framework { config, id, leader, epoch, calls: Some(calls), events: Some(events), data })
    }

    /// The epoch of the broker this framework follows (0 without ZooKeeper).
    pub fn leader_epoch(&self) -> u64 {
        self.epoch
    }

    pub fn id(&self) -> &FrameworkId {
        &self.id
    }

    /// The next event, re-subscribing if the stream broke. `Ok(None)` means
    /// the stream ended and reconnecting is off (or the broker closed it on
    /// purpose after a teardown).
    pub async fn next_event(&mut self) -> Result<Option<v1::Event>, SdkError> {
        if let Some(events) = self.events.as_mut() {
            let epoch = self.epoch;
            let message = match self.leader.as_mut() {
                Some(leader) => tokio::select! {
                    message = events.message() => Some(message),
                    new = weir_ha::newer_leader(leader, epoch) => {
                        tracing::warn!(framework_id = %self.id, from = epoch, to = new, "another broker leads now; following it");
                        None
                    }
                },
                None => Some(events.message().await),
            };
            match message {
                Some(Ok(Some(event))) => return Ok(Some(event)),
                Some(Ok(None)) if self.config.reconnect => tracing::warn!(framework_id = %self.id, "broker closed the stream"),
                Some(Ok(None)) => tracing::debug!(framework_id = %self.id, "broker closed the stream"),
                Some(Err(status)) => tracing::warn!(framework_id = %self.id, error = %status.message(), "stream to the broker broke"),
                None => {}
            }
            self.events = None;
            self.calls = None;
        }
        if !self.config.reconnect {
            return Ok(None);
        }
        let mut wait = Duration::from_millis(100);
        let mut last = String::new();
        // The newest leader already tried; a newer one is tried at once.
        let mut tried = self.epoch;
        for attempt in 1..=self.config.max_reconnect_attempts {
            match self.leader.as_mut() {
                Some(leader) => tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    newer = weir_ha::newer_leader(leader, tried) => {
                        tried = newer;
                        wait = Duration::from_millis(100);
                    }
                },
                None => tokio::time::sleep(wait).await,
            }
            let data = self.data.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match open(&self.config, Some(&self.id), self.leader.as_mut(), self.epoch, data).await {
                Ok((id, calls, events, epoch)) => {
                    tracing::info!(framework_id = %id, attempt, epoch, "re-subscribed");
                    self.adopt(id.clone(), calls, events, epoch);
                    return Ok(Some(v1::Event {
                        kind: Some(v1::event::Kind::Subscribed(v1::event::Subscribed {
                            framework_id: id.to_string(),
                            heartbeat_interval_seconds: 0.0,
                            leader_epoch: epoch,
                        })),
                    }));
                }
                Err(err) => {
                    tracing::info!(framework_id = %self.id, attempt, error = %err, "re-subscription failed; retrying");
                    last = err.to_string();
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        Err(SdkError::GaveUp { addr: self.config.broker.clone(), attempts: self.config.max_reconnect_attempts, last })
    }

    /// Changes the framework's roles (Mesos' UPDATE_FRAMEWORK), as a
    /// re-subscription under the same id: the broker offers in the new
    /// roles from then on; tasks keep running, charged to the role they
    /// were launched in. The next event is the broker's SUBSCRIBED.
    pub async fn update_roles(&mut self, roles: Vec<String>) -> Result<(), SdkError> {
        let mut config = self.config.clone();
        config.roles = roles;
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (id, calls, events, epoch) = open(&config, Some(&self.id), self.leader.as_mut(), self.epoch, data).await?;
        tracing::info!(framework_id = %id, roles = ?config.roles, "re-subscribed in new roles");
        self.config = config;
        self.adopt(id, calls, events, epoch);
        Ok(())
    }

    /// Takes a new subscription's stream as the current one.
    fn adopt(&mut self, id: FrameworkId, calls: mpsc::Sender<v1::Call>, events: Streaming<v1::Event>, epoch: u64) {
        self.id = id;
        self.epoch = epoch;
        self.calls = Some(calls);
        self.events = Some(events);
    }

    /// Sends a raw call on the current stream.
    pub async fn call(&self, kind: v1::call::Kind) -> Result<(), SdkError> {
        let calls = self.calls.as_ref().ok_or(SdkError::Disconnected)?;
        calls
            .send(v1::Call { framework_id: self.id.to_string(), kind: Some(kind) })
            .await
            .map_err(|_| SdkError::Disconnected)
    }

    pub async fn launch(&self, offers: &[OfferId], tasks: Vec<v1::TaskInfo>, refuse: Option<Duration>) -> Result<(), SdkError> {
        self.call(v1::call::Kind::Accept(v1::call::Accept {
            offer_ids: offers.iter().map(|o| o.to_string()).collect(),
            operations: vec![v1::Operation { kind: Some(v1::operation::Kind::Launch(v1::operation::Launch { tasks })), ..Default::default() }],
            filters: refuse.map(|r| v1::Filters { refuse_seconds: Some(r.as_secs_f64()) }),
        }))
        .await
    }

    /// ACCEPT with operations applied in order (see [`operations`]); each
    /// one but LAUNCH is answered by an `OperationStatus` event.
    pub async fn accept(&self, offers: &[OfferId], operations: Vec<v1::Operation>, refuse: Option<Duration>) -> Result<(), SdkError> {
        self.call(v1::call::Kind::Accept(v1::call::Accept {
            offer_ids: offers.iter().map(|o| o.to_string()).collect(),
            operations,
            filters: refuse.map(|r| v1::Filters { refuse_seconds: Some(r.as_secs_f64()) }),
        }))
        .await
    }

    pub async fn decline(&self, offers: &[OfferId], refuse: Option<Duration>) -> Result<(), SdkError> {
        self.call(v1::call::Kind::Decline(v1::call::Decline {
            offer_ids: offers.iter().map(|o| o.to_string()).collect(),
            filters: refuse.map(|r| v1::Filters { refuse_seconds: Some(r.as_secs_f64()) }),
        }))
        .await
    }

    pub async fn kill(&self, task: &TaskId, agent: Option<&AgentId>) -> Result<(), SdkError> {
        self.call(v1::call::Kind::Kill(v1::call::Kill {
            task_id: task.to_string(),
            agent_id: agent.map(|a| a.to_string()).unwrap_or_default(),
        }))
        .await
    }

    /// Acknowledges an update if it needs it (broker-generated ones do not).
    pub async fn acknowledge(&self, status: &v1::TaskStatus) -> Result<(), SdkError> {
        if status.uuid.is_empty() {
            return Ok(());
        }
        self.call(v1::call::Kind::Acknowledge(v1::call::Acknowledge {
            agent_id: status.agent_id.clone(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone(),
        }))
        .await
    }

    pub async fn reconcile(&self, tasks: Vec<(TaskId, Option<AgentId>)>) -> Result<(), SdkError> {
        self.call(v1::call::Kind::Reconcile(v1::call::Reconcile {
            tasks: tasks
                .into_iter()
                .map(|(t, a)| v1::call::reconcile::Task { task_id: t.to_string(), agent_id: a.map(|a| a.to_string()).unwrap_or_default() })
                .collect(),
        }))
        .await
    }

    pub async fn revive(&self) -> Result<(), SdkError> {
        self.call(v1::call::Kind::Revive(v1::call::Revive { roles: vec![], data: None })).await
    }

    /// REVIVE stating where the data the framework's tasks will read is
    /// (an empty one: no preference). Remembered for re-subscriptions.
    pub async fn revive_for_data(&self, data: v1::DataLocality) -> Result<(), SdkError> {
        *self.data.lock().unwrap_or_else(|p| p.into_inner()) = Some(data.clone());
        self.call(v1::call::Kind::Revive(v1::call::Revive { roles: vec![], data: Some(data) })).await
    }

    pub async fn suppress(&self) -> Result<(), SdkError> {
        self.call(v1::call::Kind::Suppress(v1::call::Suppress { roles: vec![] })).await
    }

    /// Ends the framework: the broker kills its tasks and forgets it. Its
    /// reservations and volumes stay for the next framework of its role
    /// (see [`Framework::teardown_releasing`]).
    pub async fn teardown(self) -> Result<(), SdkError> {
        self.teardown_with(false).await
    }

    /// Ends the framework and unreserves what it reserved and destroys its
    /// volumes (their data is deleted).
    pub async fn teardown_releasing(self) -> Result<(), SdkError> {
        self.teardown_with(true).await
    }

    async fn teardown_with(mut self, release_reservations: bool) -> Result<(), SdkError> {
        self.config.reconnect = false;
        self.call(v1::call::Kind::Teardown(v1::call::Teardown { release_reservations })).await?;
        // Wait for the broker to close the stream, so the teardown is done
        // when this returns.
        while let Ok(Some(_)) = self.next_event().await {}
        Ok(())
    }
}

/// Where to connect: the address itself, or the leader ZooKeeper names
/// (waiting a little for one to be elected).
async fn broker_address(config: &FrameworkConfig, leader: Option<&mut watch::Receiver<Option<LeaderInfo>>>) -> Result<String, SdkError> {
    let Some(leader) = leader else { return Ok(config.broker.clone()) };
    match weir_ha::current_leader(leader, Duration::from_secs(10)).await {
        Some(l) => Ok(l.address),
        None => Err(SdkError::NoLeader { addr: config.broker.clone() }),
    }
}

async fn open(
    config: &FrameworkConfig,
    id: Option<&FrameworkId>,
    leader: Option<&mut watch::Receiver<Option<LeaderInfo>>>,
    seen_epoch: u64,
    data: Option<v1::DataLocality>,
) -> Result<(FrameworkId, mpsc::Sender<v1::Call>, Streaming<v1::Event>, u64), SdkError> {
    let broker = broker_address(config, leader).await?;
    let addr = endpoint(&broker);
    let channel = grpc_endpoint_as(&addr, config.tls_ca.as_deref(), config.tls_identity.as_ref())
        .map_err(|reason| SdkError::BadAddress { addr: config.broker.clone(), reason })?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| SdkError::Connect { addr: config.broker.clone(), reason: source_chain(&e) })?;
    let mut client = SchedulerClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(1024);
    let subscribe = v1::Call {
        framework_id: id.map(|i| i.to_string()).unwrap_or_default(),
        kind: Some(v1::call::Kind::Subscribe(v1::call::Subscribe {
            data,
            framework: Some(v1::FrameworkInfo {
                id: id.map(|i| i.to_string()).unwrap_or_default(),
                name: config.name.clone(),
                roles: config.roles.clone(),
                failover_timeout_seconds: config.failover_timeout.as_secs_f64(),
                user: config.user.clone(),
                hostname: config.hostname.clone(),
                webui_url: config.webui_url.clone(),
                // The broker fills it in from the token.
                principal: String::new(),
                capabilities: if config.revocable_resources {
                    vec![v1::framework_info::Capability::RevocableResources as i32]
                } else {
                    Vec::new()
                },
            }),
        })),
    };
    tx.send(subscribe).await.map_err(|_| SdkError::Disconnected)?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    BearerToken::new(config.token.clone()).apply(&mut request);
    let mut events = client
        .subscribe(request)
        .await
        .map_err(|s| refused_or_unreachable(config, s))?
        .into_inner();
    match events.message().await {
        Ok(Some(v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) })) if s.leader_epoch < seen_epoch => {
            Err(SdkError::StaleLeader { addr: broker, epoch: s.leader_epoch, seen: seen_epoch })
        }
        Ok(Some(v1::Event { kind: Some(v1::event::Kind::Subscribed(s)) })) => {
            Ok((FrameworkId::new(s.framework_id), tx, events, s.leader_epoch))
        }
        Ok(Some(v1::Event { kind: Some(v1::event::Kind::Error(e)) })) => Err(SdkError::Refused(e.message)),
        Ok(_) => Err(SdkError::Refused("the broker closed the stream before SUBSCRIBED".to_owned())),
        Err(s) => Err(refused_or_unreachable(config, s)),
    }
}

/// A status that ends a subscription: a refusal to authenticate or
/// authorize is final (`Refused`, no reconnecting with the same
/// credentials); anything else may be a broker going away.
fn refused_or_unreachable(config: &FrameworkConfig, status: tonic::Status) -> SdkError {
    match status.code() {
        tonic::Code::Unauthenticated => SdkError::Refused(format!("unauthenticated: {}", status.message())),
        tonic::Code::PermissionDenied => SdkError::Refused(status.message().to_owned()),
        _ => SdkError::Connect { addr: config.broker.clone(), reason: status.message().to_owned() },
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod revocation_tests {
    use super::*;

    #[test]
    fn a_revocation_notice_is_read_and_bad_entries_left_out() {
        let event = v1::Event {
            kind: Some(v1::event::Kind::Revocation(v1::event::Revocation {
                tasks: vec![
                    v1::event::RevokedTask { task_id: "t1".into(), agent_id: "a1".into(), ..Default::default() },
                    v1::event::RevokedTask { task_id: "../x".into(), agent_id: "a1".into(), ..Default::default() },
                ],
                deadline: 1_700_000_010.5,
                for_role: "prod".into(),
                message: "m".into(),
            })),
        };
        let notice = revocation(&event).unwrap();
        assert_eq!(notice.tasks, vec![(TaskId::new("t1"), AgentId::new("a1"))]);
        assert_eq!(notice.deadline, std::time::UNIX_EPOCH + Duration::from_secs_f64(1_700_000_010.5));
        assert_eq!(notice.for_role, "prod");
        assert!(revocation(&v1::Event { kind: Some(v1::event::Kind::Heartbeat(v1::event::Heartbeat {})) }).is_none());
        let bad = v1::Event { kind: Some(v1::event::Kind::Revocation(v1::event::Revocation { deadline: f64::NAN, ..Default::default() })) };
        assert!(revocation(&bad).is_some(), "a bad deadline is not a panic");
        assert!(revoked(&v1::TaskStatus { reason: REVOKED_REASON.into(), ..Default::default() }));
    }
}
