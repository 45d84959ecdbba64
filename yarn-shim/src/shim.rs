//! The running shim: the RM core behind the ApplicationClientProtocol
//! server, a framework subscribed to the broker (one role per YARN queue),
//! and a poller that turns the broker's agents into YARN nodes.
//!
//! Node capacity comes from the broker's state document (the operator
//! API's `GetState`): each agent's total and used resources, whoever uses
//! them. Offers would only show what is free for our roles at that moment,
//! and vanish when declined, so they cannot say what a node *has*.
//!
//! Nothing runs in YARN containers yet (ApplicationMaster protocol and
//! container launch come next), so every offer is declined at once, with a
//! refusal filter, so the shim never holds resources it cannot use.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use weir_proto::v1;
use weir_proto::v1::operator_client::OperatorClient;
use weir_sdk::{Framework, FrameworkConfig};

use crate::error::Error;
use crate::ipc::server::{Server, ServerConfig, ServerHandle};
use crate::yarn::client_protocol::{ClientProtocol, Clock};
use crate::yarn::ids::NodeId;
use crate::yarn::rm_core::{Capacity, NodeState, ObservedNode, RmCore};
use crate::yarn::APPLICATION_CLIENT_PROTOCOL;

#[derive(Debug, Clone)]
pub struct ShimSettings {
    /// `host:port` of the broker (not `zk://`: the node poller needs one
    /// broker's operator API).
    pub broker: String,
    /// Where ApplicationClientProtocol is served (port 0: any).
    pub client_address: SocketAddr,
    pub queues: Vec<String>,
    pub ipc: ServerConfig,
    pub nodes_refresh_interval: Duration,
    /// How long a declined offer's agent is not offered to us again.
    pub offer_refuse: Duration,
    pub max_completed_applications: usize,
    /// Framework user and name shown by the broker.
    pub user: String,
}

pub struct Shim {
    client_address: SocketAddr,
    server: ServerHandle,
    tasks: Vec<JoinHandle<()>>,
    core: Arc<Mutex<RmCore>>,
}

fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Shim {
    /// Subscribes to the broker, reads the nodes once, then serves clients.
    /// Fails if the broker cannot be reached or the address is taken.
    pub async fn start(settings: ShimSettings) -> Result<Shim, Error> {
        let started = epoch_ms();
        let core = RmCore::new(started, &settings.queues, settings.max_completed_applications)
            .map_err(|e| Error::Protocol(format!("YARN shim configuration: {e}")))?;
        let core = Arc::new(Mutex::new(core));

        let mut config = FrameworkConfig::new(settings.broker.clone(), "yarn-shim");
        config.roles = settings.queues.clone();
        config.user = settings.user.clone();
        let framework = Framework::subscribe(config)
            .await
            .map_err(|e| Error::Broker(format!("cannot subscribe to the broker at {}: {e}", settings.broker)))?;
        info!(framework_id = %framework.id(), roles = ?settings.queues, "YARN shim subscribed to the broker");

        let mut operator = BrokerLink::new(&settings.broker)?;
        refresh_nodes(&mut operator, &core).await?;

        let listener = TcpListener::bind(settings.client_address)
            .await
            .map_err(|e| Error::Broker(format!("cannot listen for YARN clients on {}: {e}", settings.client_address)))?;
        let clock: Clock = Arc::new(epoch_ms);
        let mut server = Server::new(settings.ipc.clone());
        server.register(APPLICATION_CLIENT_PROTOCOL, Arc::new(ClientProtocol::new(core.clone(), clock)));
        let server = server.spawn(listener)?;
        let client_address = server.local_addr;
        info!(%client_address, cluster_timestamp = started, "YARN ApplicationClientProtocol listening");

        let poller = {
            let core = core.clone();
            let every = settings.nodes_refresh_interval.max(Duration::from_millis(100));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if let Err(e) = refresh_nodes(&mut operator, &core).await {
                        warn!(error = %e, "cannot read the broker's agents; YARN nodes are as last seen");
                    }
                }
            })
        };
        let offers = tokio::spawn(decline_offers(framework, settings.offer_refuse));
        Ok(Shim { client_address, server, tasks: vec![poller, offers], core })
    }

    /// Where ApplicationClientProtocol really listens.
    pub fn client_address(&self) -> SocketAddr {
        self.client_address
    }

    /// The core, for tests and the next protocols.
    pub fn core(&self) -> Arc<Mutex<RmCore>> {
        self.core.clone()
    }

    pub fn stop(self) {
        self.server.shutdown();
        for t in self.tasks {
            t.abort();
        }
    }
}

/// The leading broker's operator API: the address itself, or whichever
/// broker leads behind a `zk://` address (followed across failovers).
struct BrokerLink {
    broker: String,
    leader: Option<tokio::sync::watch::Receiver<Option<weir_ha::LeaderInfo>>>,
    client: Option<(String, OperatorClient<tonic::transport::Channel>)>,
}

impl BrokerLink {
    fn new(broker: &str) -> Result<BrokerLink, Error> {
        let leader = if weir_ha::ZkAddress::is_zk(broker) {
            let address = weir_ha::ZkAddress::parse(broker).map_err(|e| Error::Broker(e.to_string()))?;
            Some(weir_ha::detect(&address))
        } else {
            None
        };
        Ok(BrokerLink { broker: broker.to_owned(), leader, client: None })
    }

    async fn address(&mut self) -> Result<String, Error> {
        let Some(leader) = self.leader.as_mut() else { return Ok(self.broker.clone()) };
        match weir_ha::current_leader(leader, Duration::from_secs(10)).await {
            Some(l) => Ok(l.address),
            None => Err(Error::Broker(format!("no broker leads at {}", self.broker))),
        }
    }

    async fn client(&mut self) -> Result<&mut OperatorClient<tonic::transport::Channel>, Error> {
        let address = self.address().await?;
        if self.client.as_ref().is_none_or(|(a, _)| *a != address) {
            let endpoint = tonic::transport::Endpoint::from_shared(weir_sdk::endpoint(&address))
                .map_err(|e| Error::Broker(format!("broker address {address}: {e}")))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10));
            let channel =
                endpoint.connect().await.map_err(|e| Error::Broker(format!("cannot reach the broker at {address}: {e}")))?;
            self.client = Some((address, OperatorClient::new(channel).max_decoding_message_size(64 << 20)));
        }
        Ok(&mut self.client.as_mut().expect("set above").1)
    }
}

async fn refresh_nodes(link: &mut BrokerLink, core: &Mutex<RmCore>) -> Result<(), Error> {
    let result = link.client().await?.get_state(v1::GetStateRequest {}).await;
    let state = match result {
        Ok(state) => state.into_inner(),
        Err(s) => {
            // Reconnect next time (the broker may have failed over).
            link.client = None;
            return Err(Error::Broker(format!("GetState failed: {}", s.message())));
        }
    };
    let nodes = nodes_from_state(&state.state_json)?;
    debug!(nodes = nodes.len(), "nodes from the broker");
    core.lock().unwrap_or_else(|p| p.into_inner()).observe_nodes(nodes, epoch_ms());
    Ok(())
}

/// Agents in the broker's state document → YARN nodes. Memory is in MiB
/// on both sides; YARN's vcores are whole, so capacity rounds cpus down
/// and use rounds them up (a node is never shown roomier than it is).
pub fn nodes_from_state(json: &str) -> Result<Vec<ObservedNode>, Error> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::Broker(format!("the broker's state is not JSON: {e}")))?;
    let agents = doc["agents"].as_array().ok_or_else(|| Error::Broker("the broker's state has no agents list".into()))?;
    let mut nodes = Vec::with_capacity(agents.len());
    for a in agents {
        let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
        let id = text("id");
        if id.is_empty() {
            return Err(Error::Broker("an agent in the broker's state has no id".into()));
        }
        let http_address = text("http_address");
        let port = http_address.rsplit_once(':').and_then(|(_, p)| p.parse::<i32>().ok()).unwrap_or(0);
        let hostname = match text("hostname") {
            h if h.is_empty() => http_address.rsplit_once(':').map(|(h, _)| h.to_owned()).unwrap_or_default(),
            h => h,
        };
        let res = |k: &str, round: fn(f64) -> f64| Capacity {
            memory_mb: a[k]["mem"].as_f64().unwrap_or(0.0).max(0.0) as i64,
            vcores: round(a[k]["cpus"].as_f64().unwrap_or(0.0).max(0.0)).min(i32::MAX as f64) as i32,
        };
        let (reachable, connected) = (a["reachable"].as_bool().unwrap_or(false), a["connected"].as_bool().unwrap_or(false));
        let (state, health_report) = match (reachable, connected) {
            (true, true) => (NodeState::Running, String::new()),
            (true, false) => (NodeState::Unhealthy, "agent disconnected from the broker".to_owned()),
            (false, _) => (NodeState::Lost, "agent unreachable".to_owned()),
        };
        nodes.push(ObservedNode {
            agent_id: id,
            node_id: NodeId { host: hostname, port },
            http_address,
            capability: res("total", f64::floor),
            used: res("used", f64::ceil),
            containers: a["tasks"].as_u64().unwrap_or(0).min(i32::MAX as u64) as i32,
            state,
            health_report,
        });
    }
    Ok(nodes)
}

/// Declines every offer (nothing can run in a YARN container yet) and
/// acknowledges updates; ends when the SDK gives up on the broker.
async fn decline_offers(mut framework: Framework, refuse: Duration) {
    loop {
        match framework.next_event().await {
            Ok(Some(v1::Event { kind: Some(kind) })) => match kind {
                v1::event::Kind::Offers(o) => {
                    let ids: Vec<_> = o.offers.iter().map(|o| weir_model::OfferId::new(o.id.clone())).collect();
                    debug!(framework_id = %framework.id(), offers = ids.len(), "declining offers: no YARN container to launch");
                    if let Err(e) = framework.decline(&ids, Some(refuse)).await {
                        warn!(framework_id = %framework.id(), error = %e, "cannot decline offers");
                    }
                }
                v1::event::Kind::Update(u) => {
                    if let Some(status) = u.status.as_ref() {
                        let _ = framework.acknowledge(status).await;
                    }
                }
                v1::event::Kind::Error(e) => warn!(framework_id = %framework.id(), message = %e.message, "broker error"),
                _ => {}
            },
            Ok(Some(_)) => {}
            Ok(None) => {
                warn!(framework_id = %framework.id(), "the broker ended the YARN shim's subscription");
                return;
            }
            Err(e) => {
                warn!(framework_id = %framework.id(), error = %e, "lost the broker");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_become_nodes_with_their_total_and_used_resources() {
        let json = r#"{"agents":[
            {"id":"a1","hostname":"box","http_address":"127.0.0.1:5051","reachable":true,"connected":true,
             "total":{"cpus":2.5,"mem":4096,"disk":0,"gpus":0},"used":{"cpus":0.5,"mem":512,"disk":0,"gpus":0},"tasks":1},
            {"id":"a2","hostname":"","http_address":"10.0.0.2:6000","reachable":false,"connected":false,
             "total":{"cpus":1,"mem":1024},"used":{"cpus":0,"mem":0},"tasks":0}]}"#;
        let nodes = nodes_from_state(json).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].node_id, NodeId { host: "box".into(), port: 5051 });
        assert_eq!(nodes[0].capability, Capacity { memory_mb: 4096, vcores: 2 });
        assert_eq!(nodes[0].used, Capacity { memory_mb: 512, vcores: 1 });
        assert_eq!((nodes[0].state, nodes[0].containers), (NodeState::Running, 1));
        assert_eq!(nodes[1].node_id, NodeId { host: "10.0.0.2".into(), port: 6000 });
        assert_eq!(nodes[1].state, NodeState::Lost);
        assert!(nodes_from_state("{}").is_err());
        assert!(nodes_from_state("nope").is_err());
        assert!(nodes_from_state(r#"{"agents":[{"hostname":"x"}]}"#).is_err());
    }
}
