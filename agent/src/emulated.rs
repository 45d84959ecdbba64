//! Emulated agents for the scale harness (`weir bench agents`): each speaks
//! the real agent protocol (`weir.v1.Agent/Attach`) with its own hostname
//! and resources, heartbeats at the interval the broker names, and answers
//! every launch at once with TASK_RUNNING then TASK_FINISHED, without
//! running anything.
//!
//! They follow the real agent's update rule (only the oldest unacknowledged
//! update of a task is in flight; the next goes when the broker relays the
//! acknowledgement, and an unacknowledged one is resent after
//! `retry`), so the broker and the framework see the traffic a real agent
//! would cause. Many emulated agents share one HTTP/2 connection (a
//! [`Channel`]): each is its own stream, as each real agent's is.
//!
//! With a CA the connection is TLS, and with the registration secret each
//! stream sends it as a real agent does, so a broker with security on can
//! be measured too.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use weir_proto::v1;
use weir_proto::v1::agent_client::AgentClient;

/// Counters shared by every emulated agent of one run.
#[derive(Debug, Default)]
pub struct EmulatorStats {
    pub registered: AtomicU64,
    pub heartbeats: AtomicU64,
    pub launches: AtomicU64,
    pub updates_sent: AtomicU64,
    pub acknowledgements: AtomicU64,
    pub kills: AtomicU64,
    pub streams_ended: AtomicU64,
    pub refused: AtomicU64,
}

/// Who one emulated agent is.
#[derive(Debug, Clone)]
pub struct EmulatedAgent {
    /// Distinct per agent of a run: it names the agent and its update uuids.
    pub index: u64,
    pub hostname: String,
    pub resources: Vec<v1::Resource>,
}

/// Opens one HTTP/2 connection to the broker, to be shared (cloned) by up
/// to the broker's stream limit of emulated agents; over TLS trusting `ca`
/// (PEM) when one is given.
pub async fn connect(broker: &str, ca: Option<&[u8]>) -> Result<Channel, String> {
    let host_port = broker.trim_start_matches("http://").trim_start_matches("https://");
    let mut endpoint = match ca {
        None => tonic::transport::Endpoint::from_shared(format!("http://{host_port}")).map_err(|e| e.to_string())?,
        Some(ca) => tonic::transport::Endpoint::from_shared(format!("https://{host_port}"))
            .map_err(|e| e.to_string())?
            .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca)))
            .map_err(|e| format!("TLS configuration: {e}"))?,
    };
    endpoint = endpoint.connect_timeout(Duration::from_secs(10));
    endpoint
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))
}

/// One task's unacknowledged updates, oldest (in flight) first.
struct Pending {
    queue: VecDeque<v1::TaskStatus>,
    sent_at: Instant,
}

fn wall_clock() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn status_message(status: v1::TaskStatus) -> v1::AgentMessage {
    v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::StatusUpdate(v1::agent_message::StatusUpdate { status: Some(status) })),
    }
}

/// Runs one emulated agent until `stop` turns true or its stream ends.
/// Returns an error if it could not attach or was refused. `secret`: the
/// registration secret, sent as a real agent sends it.
pub async fn run(
    channel: Channel,
    secret: Option<Arc<weir_net::secret::Secret>>,
    agent: EmulatedAgent,
    retry: Duration,
    stats: Arc<EmulatorStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<v1::AgentMessage>(64);
    let register = v1::AgentMessage {
        kind: Some(v1::agent_message::Kind::Register(v1::agent_message::Register {
            agent: Some(v1::AgentInfo {
                id: String::new(),
                hostname: agent.hostname.clone(),
                resources: agent.resources.clone(),
                attributes: Vec::new(),
                http_address: String::new(),
            }),
            tasks: Vec::new(),
            ..Default::default()
        })),
    };
    tx.send(register).await.map_err(|_| "stream closed before REGISTER".to_owned())?;
    let mut client = AgentClient::new(channel).max_decoding_message_size(16 << 20);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(secret) = &secret {
        let value = secret.expose().parse().map_err(|_| "the registration secret is not a valid header value (printable ASCII)".to_owned())?;
        request.metadata_mut().insert(crate::shell::AGENT_SECRET_HEADER, value);
    }
    let mut stream = client.attach(request).await.map_err(|s| s.message().to_owned())?.into_inner();

    let mut agent_id = String::new();
    let mut counter = 0u64;
    let mut tasks: HashMap<(String, String), Pending> = HashMap::new();
    // No heartbeats until REGISTERED names the interval.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(3600));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let send = |msg: v1::AgentMessage| -> Result<(), String> {
        // The stream holds 64 messages; a broker that falls that far behind
        // an agent that sends a few a second has stopped reading.
        tx.try_send(msg).map_err(|e| format!("cannot send to the broker: {e}"))
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = heartbeat.tick() => {
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                send(v1::AgentMessage { kind: Some(v1::agent_message::Kind::Heartbeat(v1::agent_message::Heartbeat { usage: Vec::new() })) })?;
                let now = Instant::now();
                for p in tasks.values_mut() {
                    if now.duration_since(p.sent_at) >= retry {
                        if let Some(head) = p.queue.front() {
                            p.sent_at = now;
                            stats.updates_sent.fetch_add(1, Ordering::Relaxed);
                            send(status_message(head.clone()))?;
                        }
                    }
                }
            }
            message = stream.message() => {
                let message = match message {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        stats.streams_ended.fetch_add(1, Ordering::Relaxed);
                        return Err("the broker closed the stream".to_owned());
                    }
                    Err(status) => {
                        stats.streams_ended.fetch_add(1, Ordering::Relaxed);
                        return Err(status.message().to_owned());
                    }
                };
                match message.kind {
                    Some(v1::broker_message::Kind::Registered(r)) => {
                        agent_id = r.agent_id;
                        let every = Duration::from_secs_f64(r.heartbeat_interval_seconds.clamp(0.01, 3600.0));
                        heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        stats.registered.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(v1::broker_message::Kind::Refused(r)) => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(format!("refused: {}", r.message));
                    }
                    Some(v1::broker_message::Kind::RunTask(run)) => {
                        let Some(task) = run.task else { continue };
                        stats.launches.fetch_add(1, Ordering::Relaxed);
                        let mut queue = VecDeque::with_capacity(2);
                        for (state, reason, message) in [
                            (v1::TaskState::TaskRunning, "", ""),
                            (v1::TaskState::TaskFinished, "REASON_COMMAND_EXITED", "Command exited with status 0"),
                        ] {
                            counter += 1;
                            let mut uuid = agent.index.to_be_bytes().to_vec();
                            uuid.extend_from_slice(&counter.to_be_bytes());
                            queue.push_back(v1::TaskStatus {
                                task_id: task.task_id.clone(),
                                state: state as i32,
                                message: message.to_owned(),
                                reason: reason.to_owned(),
                                source: v1::task_status::Source::Agent as i32,
                                agent_id: agent_id.clone(),
                                framework_id: run.framework_id.clone(),
                                timestamp: wall_clock(),
                                uuid,
                                exit_code: (state == v1::TaskState::TaskFinished).then_some(0),
                                signal: None,
                            });
                        }
                        if let Some(head) = queue.front() {
                            stats.updates_sent.fetch_add(1, Ordering::Relaxed);
                            send(status_message(head.clone()))?;
                        }
                        tasks.insert((run.framework_id, task.task_id), Pending { queue, sent_at: Instant::now() });
                    }
                    Some(v1::broker_message::Kind::Acknowledge(ack)) => {
                        stats.acknowledgements.fetch_add(1, Ordering::Relaxed);
                        let key = (ack.framework_id, ack.task_id);
                        let Some(p) = tasks.get_mut(&key) else { continue };
                        if p.queue.front().is_none_or(|head| head.uuid != ack.uuid) {
                            continue;
                        }
                        p.queue.pop_front();
                        match p.queue.front() {
                            Some(next) => {
                                p.sent_at = Instant::now();
                                stats.updates_sent.fetch_add(1, Ordering::Relaxed);
                                send(status_message(next.clone()))?;
                            }
                            None => {
                                tasks.remove(&key);
                            }
                        }
                    }
                    Some(v1::broker_message::Kind::KillTask(kill)) => {
                        // Nothing runs: a kill only ever meets a task whose
                        // updates are still on their way, or none.
                        stats.kills.fetch_add(1, Ordering::Relaxed);
                        let _ = kill;
                    }
                    // Nothing is stored: an emulated agent holds no volumes.
                    Some(v1::broker_message::Kind::CheckpointResources(_)) | Some(v1::broker_message::Kind::SyncVolume(_)) => {}
                    None => {}
                }
            }
        }
    }
}
