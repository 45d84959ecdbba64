//! The running shim: the RM core and scheduler behind the
//! ApplicationClientProtocol (clients) and ApplicationMasterProtocol (AMs)
//! servers, a framework subscribed to the broker (one role per YARN queue)
//! that turns the scheduler's decisions into launches, kills and declines,
//! and a poller that turns the broker's agents into YARN nodes.
//!
//! Node capacity comes from the broker's operator API (`GetState`'s typed
//! `AgentSummary` list, read through `weir_proto::convert`): each agent's
//! total and used resources, whoever uses them. Offers would only show what is free for our roles at that moment,
//! and vanish when declined, so they cannot say what a node *has*.
//!
//! Offers are matched by the [`Scheduler`]; an offer nothing fits is
//! declined at once (briefly while some application waits, for
//! `offer_refuse` when none does), so the shim never hoards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use weir_proto::v1;
use weir_proto::v1::operator_client::OperatorClient;
use weir_sdk::{Framework, FrameworkConfig};

use weir_yarn_ipc::Error;
use weir_yarn_ipc::client::{Client, ClientConfig};
use weir_yarn_ipc::connection::AuthPolicy;
use weir_yarn_ipc::server::{Server, ServerConfig, ServerHandle};
use weir_yarn_ipc::security::credentials::Credentials;
use crate::am_protocol::{AmProtocol, Rm};
use crate::client_protocol::ClientProtocol;
use crate::core::{self as yarn_core, CoreHandle, YarnCore};
use crate::framework::{is_unreachable, offer_from_proto, reserved_of, take_resources, task_event};
use weir_yarn_api::ids::NodeId;
use weir_yarn_api::records as r;
use crate::capacity_scheduler::{Amounts, CapacityScheduler, QueuePolicy};
use crate::container_executor::ContainerExecutor;
use crate::rm_core::{Capacity, NodeState, ObservedNode, RmCore};
use crate::scheduler::{exit_status, Allocated, Effect, Scheduler, SchedulerConfig, TaskPlan};
use weir_model::{AgentState, AgentSummary, Clock, DrainState, Milli, SystemClock};
use weir_yarn_api::tokens::{Issuer, NM_KEY_SECRET};
use weir_yarn_api::{APPLICATION_CLIENT_PROTOCOL, APPLICATION_MASTER_PROTOCOL, CONTAINER_MANAGEMENT_PROTOCOL};

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
    /// Where ApplicationMasterProtocol is served (port 0: any).
    pub scheduler_address: SocketAddr,
    pub scheduler: SchedulerConfig,
    /// The `weir` program agents run for node managers and containers.
    pub weir_binary: PathBuf,
    /// SIGTERM to SIGKILL when a container is killed.
    pub container_kill_grace: Duration,
    /// Given to node managers (`--hadoop-conf-dir`), which give it to
    /// containers as HADOOP_CONF_DIR: the client configuration naming
    /// this shim, where every agent can read it.
    pub nm_hadoop_conf_dir: Option<PathBuf>,
    /// How long the broker keeps the shim's tasks (every YARN container)
    /// while its stream is broken, before it tears the framework down.
    pub failover_timeout: Duration,
    /// Where the ResourceManager REST API (`/ws/v1/cluster`) is served;
    /// None: not served.
    pub web_address: Option<SocketAddr>,
    /// Where the admin protocols (`yarn rmadmin`) are served; None: not served.
    pub admin_address: Option<SocketAddr>,
    /// The hosts `refreshNodes` drains (YARN's exclude file).
    pub nodes_exclude_path: Option<PathBuf>,
    /// A capacity-scheduler.xml the queues come from (its leaves are
    /// `queues`), re-read by `refreshQueues`, with what was read at start.
    pub capacity_scheduler: Option<(PathBuf, CapacityScheduler)>,
    /// Whether queues get their capacities as guarantees at the broker,
    /// taken back by preemption (YARN's
    /// `yarn.resourcemanager.scheduler.monitor.enable`); without it a
    /// capacity is a weight only.
    pub preemption: bool,
    /// Queue, application and admin ACLs (`yarn-shim.acl.enable`,
    /// `yarn-shim.admin.acl`; see `acl`).
    pub acls: crate::acl::AclPolicy,
    /// This host's name, for addresses others must reach when the shim
    /// listens on every address (the web UI link the broker shows).
    pub advertised_host: Option<String>,
    /// How the shim proves itself to a broker with security on.
    pub broker_auth: BrokerAuth,
    /// Kerberos on the client and admin ports
    /// (`yarn-shim.security.authentication=kerberos`): SASL GSSAPI with
    /// the service principal's keytab; SIMPLE refused. The scheduler and
    /// node manager ports take tokens only, with or without it.
    pub kerberos: Option<weir_yarn_ipc::security::sasl_gssapi::KerberosAcceptor>,
    /// Whose name containers run under
    /// (`yarn-shim.nodemanager.container-executor.class`).
    pub container_executor: crate::container_executor::ContainerExecutor,
}

/// The shim's credentials for the broker (`yarn-shim.broker.token.file`,
/// `yarn-shim.broker.tls.ca.file`): its bearer token, and the CA its TLS
/// certificate is checked against. None: plain, unauthenticated.
#[derive(Debug, Clone, Default)]
pub struct BrokerAuth {
    pub token: Option<weir_sdk::Token>,
    pub tls_ca: Option<Vec<u8>>,
}

pub struct Shim {
    admin_address: Option<SocketAddr>,
    client_address: SocketAddr,
    scheduler_address: SocketAddr,
    web_address: Option<SocketAddr>,
    servers: Vec<ServerHandle>,
    tasks: Vec<JoinHandle<()>>,
    core: CoreHandle,
}


impl Shim {
    /// Subscribes to the broker, reads the nodes once, then serves clients.
    /// Fails if the broker cannot be reached or the address is taken.
    pub async fn start(settings: ShimSettings) -> Result<Shim, Error> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let started = clock.unix_millis();
        let mut books = RmCore::new(started, &settings.queues, settings.max_completed_applications)
            .map_err(|e| Error::Protocol(format!("YARN shim configuration: {e}")))?;
        books.set_acls(settings.acls.clone());
        if let Some((path, conf)) = &settings.capacity_scheduler {
            books.set_queue_conf(conf.clone()).map_err(|e| Error::Protocol(format!("{}: {e}", path.display())))?;
        }
        let (effects, effects_rx) = mpsc::unbounded_channel();
        let (core, core_task) =
            yarn_core::spawn(YarnCore::new(books, Scheduler::new(settings.scheduler.clone())), clock.clone(), effects);

        // The REST API's address is bound first so that the subscription
        // can name it as the framework's web UI (the broker's UI links there).
        let web_listener = match settings.web_address {
            None => None,
            Some(bind) => Some(
                TcpListener::bind(bind)
                    .await
                    .map_err(|e| Error::Broker(format!("cannot serve the ResourceManager REST API on {bind}: {e}")))?,
            ),
        };
        let web_address = match &web_listener {
            Some(l) => Some(l.local_addr().map_err(|e| Error::Broker(e.to_string()))?),
            None => None,
        };
        let proxy = web_address.map(|a| a.to_string());
        let mut config = FrameworkConfig::new(settings.broker.clone(), "yarn-shim");
        // One role per leaf queue: the queue tree's path below root when a
        // capacity-scheduler.xml gives one (`eng/analytics`).
        config.roles = match &settings.capacity_scheduler {
            Some((_, conf)) => conf.roles(),
            None => settings.queues.clone(),
        };
        config.user = settings.user.clone();
        config.token = settings.broker_auth.token.clone();
        config.tls_ca = settings.broker_auth.tls_ca.clone();
        config.failover_timeout = settings.failover_timeout;
        config.webui_url = web_address.map(|a| web_ui_url(a, settings.advertised_host.as_deref())).unwrap_or_default();
        // A cluster starts in any order: behind ZooKeeper, the elected
        // broker may not serve yet (its standby port answers 503) when the
        // shim starts. Keep trying for a minute before giving up.
        let patience = if weir_ha::ZkAddress::is_zk(&settings.broker) { Duration::from_secs(60) } else { Duration::ZERO };
        let give_up = std::time::Instant::now() + patience;
        let framework = loop {
            match Framework::subscribe(config.clone()).await {
                Ok(f) => break f,
                Err(e @ (weir_sdk::SdkError::Connect { .. } | weir_sdk::SdkError::NoLeader { .. })) if std::time::Instant::now() < give_up => {
                    info!(error = %e, "cannot subscribe to the broker yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(Error::Broker(format!("cannot subscribe to the broker at {}: {e}", settings.broker))),
            }
        };
        info!(framework_id = %framework.id(), roles = ?config.roles, "YARN shim subscribed to the broker");

        let mut operator = BrokerLink::new(&settings.broker, &settings.broker_auth)?;
        let policies = QueuePolicies::new(settings.preemption);
        let cluster = refresh_nodes(&mut operator, &core).await?;
        if let Some((path, _)) = &settings.capacity_scheduler {
            policies.push(&mut operator, &core, cluster, true).await.map_err(|e| Error::Broker(format!("{}: {e}", path.display())))?;
        }

        let listener = TcpListener::bind(settings.client_address)
            .await
            .map_err(|e| Error::Broker(format!("cannot listen for YARN clients on {}: {e}", settings.client_address)))?;
        let am_listener = TcpListener::bind(settings.scheduler_address)
            .await
            .map_err(|e| Error::Broker(format!("cannot listen for ApplicationMasters on {}: {e}", settings.scheduler_address)))?;
        let scheduler_address = am_listener.local_addr().map_err(|e| Error::Broker(e.to_string()))?;
        let rm = Arc::new(Rm { core: core.clone(), tokens: Issuer::new(scheduler_address.to_string(), started, started as u64) });


        let mut server = Server::new(settings.ipc.clone());
        let client_protocol = Arc::new(ClientProtocol::new(core.clone()).with_proxy(proxy.clone()).with_kerberos(settings.kerberos.is_some()));
        if let Some(kerberos) = &settings.kerberos {
            server.set_kerberos(kerberos.clone());
            info!(principal = kerberos.principal(), "Kerberos on: the client and admin ports take KERBEROS (and TOKEN on the client port), never SIMPLE");
        }
        // Delegation tokens this RM issued authenticate on the client port;
        // with a secret manager there it offers TOKEN, then SIMPLE, as
        // Hadoop's RM does with security off.
        server.set_token_passwords(client_protocol.delegation_token_passwords(clock.clone()));
        server.register(APPLICATION_CLIENT_PROTOCOL, client_protocol);
        let server = server.spawn(listener)?;
        let client_address = server.local_addr;
        info!(%client_address, cluster_timestamp = started, "YARN ApplicationClientProtocol listening");

        let mut am_config = settings.ipc.clone();
        am_config.auth = AuthPolicy::TokenRequired;
        let mut am_server = Server::new(am_config);
        am_server.register(APPLICATION_MASTER_PROTOCOL, Arc::new(AmProtocol::new(rm.clone())));
        let (lookup, token_clock) = (rm.clone(), clock.clone());
        am_server.set_token_passwords(Arc::new(move |identifier: &[u8]| {
            lookup.tokens.amrm_password(identifier, token_clock.unix_millis().max(0) as u64)
        }));
        let am_server = am_server.spawn(am_listener)?;
        info!(%scheduler_address, "YARN ApplicationMasterProtocol listening");

        let mut servers = vec![server, am_server];
        let mut admin_address = None;
        if let Some(bind) = settings.admin_address {
            let listener = TcpListener::bind(bind)
                .await
                .map_err(|e| Error::Broker(format!("cannot serve the admin protocols (yarn rmadmin) on {bind}: {e}")))?;
            let admin = Arc::new(crate::admin_protocol::AdminProtocol::new(
                core.clone(),
                BrokerLink::new(&settings.broker, &settings.broker_auth)?,
                settings.nodes_exclude_path.clone(),
                settings.capacity_scheduler.as_ref().map(|(path, _)| path.clone()),
                policies.clone(),
            ));
            let mut admin_server = Server::new(settings.ipc.clone());
            if let Some(kerberos) = &settings.kerberos {
                admin_server.set_kerberos(kerberos.clone());
            }
            admin_server.register(weir_yarn_api::RESOURCE_MANAGER_ADMINISTRATION_PROTOCOL, admin.clone());
            admin_server.register(weir_yarn_api::GET_USER_MAPPINGS_PROTOCOL, admin);
            admin_server.register(weir_yarn_api::HA_SERVICE_PROTOCOL, Arc::new(crate::admin_protocol::HaStatus));
            let admin_server = admin_server.spawn(listener)?;
            admin_address = Some(admin_server.local_addr);
            info!(address = %admin_server.local_addr, "YARN admin protocols (yarn rmadmin) listening");
            servers.push(admin_server);
        }

        let poller = {
            let core = core.clone();
            let every = settings.nodes_refresh_interval.max(Duration::from_millis(100));
            let from_file = settings.capacity_scheduler.is_some();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    match refresh_nodes(&mut operator, &core).await {
                        // Quotas follow the cluster's size: pushed again
                        // when agents come or go.
                        Ok(cluster) if from_file => {
                            if let Err(e) = policies.push(&mut operator, &core, cluster, false).await {
                                warn!(error = %e, "cannot set the queues' roles at the broker; trying again");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "cannot read the broker's agents; YARN nodes are as last seen"),
                    }
                }
            })
        };
        let mut tasks = vec![poller, core_task];
        if let (Some(listener), Some(address)) = (web_listener, web_address) {
            let app = crate::rest::router(core.clone(), crate::rest::RestInfo { started_on_ms: started, proxy, kerberos: settings.kerberos.is_some() });
            // Capped and timed out like every other listener (docs/limits.md).
            let limits = weir_net::http::HttpLimits::default();
            let listener = weir_net::AdmittingListener::new(listener, limits.connections, "YARN REST API");
            tasks.push(tokio::spawn(async move {
                if let Err(e) = weir_net::http::serve(listener, app, limits, std::future::pending()).await {
                    warn!(error = %e, "the ResourceManager REST API stopped");
                }
            }));
            info!(%address, "YARN ResourceManager REST API listening");
        }
        tasks.push(tokio::spawn(drive(framework, rm.clone(), effects_rx, Arc::new(settings))));
        Ok(Shim { admin_address, client_address, scheduler_address, web_address, servers, tasks, core })
    }

    /// Where the admin protocols really listen, if served.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin_address
    }

    /// Where ApplicationClientProtocol really listens.
    pub fn client_address(&self) -> SocketAddr {
        self.client_address
    }

    /// Where ApplicationMasterProtocol really listens.
    pub fn scheduler_address(&self) -> SocketAddr {
        self.scheduler_address
    }

    /// Where the REST API really listens, if it is served.
    pub fn web_address(&self) -> Option<SocketAddr> {
        self.web_address
    }

    /// The way to the YARN core, for tests.
    pub fn core(&self) -> CoreHandle {
        self.core.clone()
    }

    pub fn stop(self) {
        for s in self.servers {
            s.shutdown();
        }
        for t in self.tasks {
            t.abort();
        }
    }
}

/// The web UI address the broker shows for the shim: by this host's name
/// when the shim listens on every address (0.0.0.0 reaches nobody).
fn web_ui_url(bound: SocketAddr, host: Option<&str>) -> String {
    match host {
        Some(host) if bound.ip().is_unspecified() => format!("http://{host}:{}", bound.port()),
        _ => format!("http://{bound}"),
    }
}

/// The queues' roles at the broker (weights, and quotas from the
/// capacities; see [`CapacityScheduler::policies`]), as last set: set
/// again when the queue file is reloaded or the cluster's size changes.
#[derive(Clone)]
pub(crate) struct QueuePolicies {
    preemption: bool,
    last: Arc<tokio::sync::Mutex<Vec<QueuePolicy>>>,
}

impl QueuePolicies {
    pub(crate) fn new(preemption: bool) -> QueuePolicies {
        QueuePolicies { preemption, last: Default::default() }
    }

    /// Sets the roles of the core's queue tree for a cluster of `cluster`
    /// (all or nothing, SetRolePolicies), unless they are what was last
    /// set and `always` is false.
    pub(crate) async fn push(&self, link: &mut BrokerLink, core: &CoreHandle, cluster: Amounts, always: bool) -> Result<(), Error> {
        let preemption = self.preemption;
        let policies = core
            .call(move |core, _| {
                // The queues' AM and user limits follow the cluster's size
                // as the roles do.
                if let Some(rules) = core.rm().queue_conf().map(|conf| conf.leaf_rules(cluster)) {
                    core.set_leaf_rules(rules);
                }
                let rm = core.rm();
                rm.queue_conf().map(|conf| conf.policies(cluster, preemption, &|queue| rm.has_unfinished_applications(queue)))
            })
            .await
            .map_err(|e| Error::Broker(e.to_string()))?;
        let Some(policies) = policies else { return Ok(()) };
        let mut last = self.last.lock().await;
        if !always && *last == policies {
            return Ok(());
        }
        let amounts = |a: Option<Amounts>, memory_only: bool| match a {
            None => Vec::new(),
            Some(a) => [("cpus", a.cpus), ("mem", a.mem)]
                .into_iter()
                .filter(|(name, _)| !memory_only || *name == "mem")
                .map(|(name, m)| v1::Resource { name: name.into(), value: Some(v1::resource::Value::Scalar(m.as_f64())), ..Default::default() })
                .collect(),
        };
        // Roles of queues removed since are set back to the defaults
        // (weight 1, no quota): a removed queue keeps no guarantee.
        let gone = last.iter().filter(|old| !policies.iter().any(|p| p.role == old.role));
        let roles: Vec<v1::RolePolicy> = policies
            .iter()
            .map(|p| v1::RolePolicy {
                role: p.role.clone(),
                weight: p.weight,
                guarantee: amounts(p.guarantee, p.memory_only),
                limit: amounts(p.limit, p.memory_only),
                ..Default::default()
            })
            .chain(gone.map(|old| v1::RolePolicy { role: old.role.clone(), weight: 1.0, ..Default::default() }))
            .collect();
        info!(?policies, cpus = %cluster.cpus, mem_mb = %cluster.mem, "queue roles from the queue file");
        let client = link.client().await?;
        client
            .set_role_policies(v1::SetRolePoliciesRequest { roles, force: false })
            .await
            .map_err(|e| Error::Broker(format!("the broker refused the queues' roles: {}", e.message())))?;
        *last = policies;
        Ok(())
    }
}

/// The leading broker's operator API: the address itself, or whichever
/// broker leads behind a `zk://` address (followed across failovers).
pub(crate) struct BrokerLink {
    broker: String,
    auth: BrokerAuth,
    leader: Option<tokio::sync::watch::Receiver<Option<weir_ha::LeaderInfo>>>,
    client: Option<(String, OperatorLink)>,
}

/// The operator API's client, with the shim's token on every call.
type OperatorLink = OperatorClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, weir_sdk::BearerToken>>;

impl BrokerLink {
    pub(crate) fn new(broker: &str, auth: &BrokerAuth) -> Result<BrokerLink, Error> {
        let leader = if weir_ha::ZkAddress::is_zk(broker) {
            let address = weir_ha::ZkAddress::parse(broker).map_err(|e| Error::Broker(e.to_string()))?;
            Some(weir_ha::detect(&address))
        } else {
            None
        };
        Ok(BrokerLink { broker: broker.to_owned(), auth: auth.clone(), leader, client: None })
    }

    async fn address(&mut self) -> Result<String, Error> {
        let Some(leader) = self.leader.as_mut() else { return Ok(self.broker.clone()) };
        match weir_ha::current_leader(leader, Duration::from_secs(10)).await {
            Some(l) => Ok(l.address),
            None => Err(Error::Broker(format!("no broker leads at {}", self.broker))),
        }
    }

    pub(crate) async fn client(&mut self) -> Result<&mut OperatorLink, Error> {
        let address = self.address().await?;
        if self.client.as_ref().is_none_or(|(a, _)| *a != address) {
            let endpoint = weir_sdk::grpc_endpoint(&address, self.auth.tls_ca.as_deref())
                .map_err(|e| Error::Broker(format!("broker address {address}: {e}")))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10));
            let channel =
                endpoint.connect().await.map_err(|e| Error::Broker(format!("cannot reach the broker at {address}: {e}")))?;
            let client = OperatorClient::with_interceptor(channel, weir_sdk::BearerToken::new(self.auth.token.clone()));
            self.client = Some((address, client.max_decoding_message_size(64 << 20)));
        }
        Ok(&mut self.client.as_mut().expect("set above").1)
    }
}

/// Reads the broker's agents into the core's nodes; returns the total of
/// the reachable agents not drained (what the cluster's quotas divide).
pub(crate) async fn refresh_nodes(link: &mut BrokerLink, core: &CoreHandle) -> Result<Amounts, Error> {
    let result = link.client().await?.get_state(v1::GetStateRequest {}).await;
    let state = match result {
        Ok(state) => state.into_inner(),
        Err(s) => {
            // Reconnect next time (the broker may have failed over).
            link.client = None;
            return Err(Error::Broker(format!("GetState failed: {}", s.message())));
        }
    };
    let agents = weir_proto::convert::agents_from_proto(&state).map_err(|e| Error::Broker(format!("the broker's agents: {e}")))?;
    let nodes = nodes_from_agents(&agents);
    let mut cluster = Amounts::default();
    for a in agents.iter().filter(|a| a.state == AgentState::Reachable && matches!(a.drain, DrainState::Active)) {
        let total = a.total.total();
        cluster.cpus = Milli(cluster.cpus.0 + total.cpus.0);
        cluster.mem = Milli(cluster.mem.0 + total.mem.0);
    }
    debug!(nodes = nodes.len(), "nodes from the broker");
    core.call(move |core, now| core.observe_nodes(nodes, now)).await.map_err(|e| Error::Broker(e.to_string()))?;
    Ok(cluster)

}

/// The broker's agents (typed, from `GetState`) → YARN nodes. Memory is
/// in MiB on both sides; YARN's vcores are whole, so capacity rounds cpus
/// down and use rounds them up (a node is never shown roomier than it is).
pub fn nodes_from_agents(agents: &[AgentSummary]) -> Vec<ObservedNode> {
    let whole = |m: Milli, up: bool| if up { m.0.div_ceil(1000) } else { m.0 / 1000 };
    let capacity = |r: &weir_model::Resources, up: bool| Capacity {
        memory_mb: i64::try_from(whole(r.mem, up)).unwrap_or(i64::MAX),
        vcores: i32::try_from(whole(r.cpus, up)).unwrap_or(i32::MAX),
    };
    agents
        .iter()
        .map(|a| {
            let port = a.http_address.rsplit_once(':').and_then(|(_, p)| p.parse::<i32>().ok()).unwrap_or(0);
            let hostname = match a.hostname.as_str() {
                "" => a.http_address.rsplit_once(':').map(|(h, _)| h.to_owned()).unwrap_or_default(),
                h => h.to_owned(),
            };
            // An operator's drain says more than the connection does: YARN
            // shows a decommissioning node whether or not it is healthy.
            let (state, health_report) = match (a.drain, a.state) {
                (DrainState::Draining { .. }, _) => (NodeState::Decommissioning, "agent draining".to_owned()),
                (DrainState::Drained, _) => (NodeState::Decommissioned, "agent drained".to_owned()),
                (DrainState::Active, AgentState::Reachable) => (NodeState::Running, String::new()),
                (DrainState::Active, AgentState::Disconnected) => (NodeState::Unhealthy, "agent disconnected from the broker".to_owned()),
                (DrainState::Active, AgentState::Unreachable) => (NodeState::Lost, "agent unreachable".to_owned()),
            };
            let decommission_deadline_ms = match a.drain {
                DrainState::Draining { deadline } => Some(i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX)),
                _ => None,
            };
            ObservedNode {
                agent_id: a.id.to_string(),
                node_id: NodeId { host: hostname, port },
                http_address: a.http_address.clone(),
                capability: capacity(&a.total.total(), false),
                used: capacity(&a.used.total(), true),
                containers: i32::try_from(a.tasks).unwrap_or(i32::MAX),
                state,
                health_report,
                decommission_deadline_ms,
            }
        })
        .collect()
}

/// How often the scheduler looks at applications (new, ended, silent).
const TICK: Duration = Duration::from_millis(200);
/// How long the shim keeps trying to start an AM through its node manager
/// (the node manager task may still be starting).
const AM_START_TRIES_FOR: Duration = Duration::from_secs(60);

/// The framework's event loop: offers and updates go to the scheduler,
/// its effects come back here (also those of AM calls, via the channel).
/// Ends when the SDK gives up on the broker.
async fn drive(mut framework: Framework, rm: Arc<Rm>, mut effects: mpsc::UnboundedReceiver<Effect>, settings: Arc<ShimSettings>) {
    let mut tick = tokio::time::interval(TICK);
    // Offers with a reservation for the shim's role: (role, reserved part),
    // until the offer is launched on, declined or rescinded.
    let mut reservations: std::collections::HashMap<weir_model::OfferId, (String, weir_model::Resources)> = Default::default();
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Inputs go to the core's task; whatever it decides comes back on
    // `effects` (also what AM calls decided), carried out in order here.
    loop {
        let todo: Vec<Effect> = tokio::select! {
            biased;
            Some(effect) = effects.recv() => vec![effect],
            _ = tick.tick() => {
                if rm.core.call(|core, now| core.tick(now)).await.is_err() {
                    return;
                }
                Vec::new()
            }
            event = framework.next_event() => match event {
                Ok(Some(v1::Event { kind: Some(kind) })) => match kind {
                    v1::event::Kind::Offers(o) => {
                        let mut offers = Vec::with_capacity(o.offers.len());
                        for offer in &o.offers {
                            match offer_from_proto(offer) {
                                Ok(parsed) => {
                                    let reserved = reserved_of(offer);
                                    if !reserved.is_empty() {
                                        reservations.insert(parsed.id.clone(), (parsed.role.clone(), reserved));
                                    }
                                    offers.push(parsed)
                                }
                                Err(e) => warn!(framework_id = %framework.id(), offer_id = %offer.id, error = %e, "an offer the shim cannot read; it times out unused"),
                            }
                        }
                        debug!(framework_id = %framework.id(), offers = offers.len(), "offers");
                        if rm.core.call(move |core, now| core.offers(offers, now)).await.is_err() {
                            return;
                        }
                        Vec::new()
                    }
                    v1::event::Kind::Update(u) => {
                        if let Some(status) = u.status.as_ref() {
                            if let Some(event) = task_event(status) {
                                let task_id = weir_model::TaskId::new(status.task_id.clone());
                                let agent_id = weir_model::AgentId::new(status.agent_id.clone());
                                let unreachable = is_unreachable(status);
                                let update = move |core: &mut YarnCore, now| {
                                    core.task_update(&task_id, &agent_id, event, now);
                                    if unreachable {
                                        core.unreachable(&task_id, &agent_id);
                                    }
                                };
                                if rm.core.call(update).await.is_err() {
                                    return;
                                }
                            }
                            if let Err(e) = framework.acknowledge(status).await {
                                warn!(framework_id = %framework.id(), task_id = %status.task_id, error = %e, "cannot acknowledge an update");
                            }
                        }
                        Vec::new()
                    }
                    v1::event::Kind::Subscribed(_) => {
                        // (Re-)subscribed, perhaps to a new leader: launches
                        // and kills sent on the old stream may be lost.
                        if rm.core.call(|core, now| core.reconcile(now)).await.is_err() {
                            return;
                        }
                        Vec::new()
                    }
                    v1::event::Kind::Error(e) => {
                        warn!(framework_id = %framework.id(), message = %e.message, "broker error");
                        Vec::new()
                    }
                    v1::event::Kind::Rescind(r) => {
                        reservations.remove(&weir_model::OfferId::new(r.offer_id));
                        Vec::new()
                    }
                    v1::event::Kind::Revocation(r) => {
                        // Named to their AMs now; the broker kills them at
                        // the deadline, and they end PREEMPTED.
                        let tasks: Vec<weir_model::TaskId> = r.tasks.iter().map(|t| weir_model::TaskId::new(t.task_id.clone())).collect();
                        info!(framework_id = %framework.id(), tasks = tasks.len(), for_role = %r.for_role, deadline = r.deadline, "revocation");
                        if rm.core.call(move |core, _| core.preempt(&tasks)).await.is_err() {
                            return;
                        }
                        Vec::new()
                    }
                    _ => Vec::new(),
                },
                Ok(Some(_)) => Vec::new(),
                Ok(None) => {
                    warn!(framework_id = %framework.id(), "the broker ended the YARN shim's subscription");
                    return;
                }
                Err(e) => {
                    warn!(framework_id = %framework.id(), error = %e, "lost the broker");
                    return;
                }
            },
        };
        for effect in todo {
            // What is left of a launch's offer's reservation, used first.
            let reserved = match &effect {
                Effect::Launch { offer_id, .. } | Effect::Decline { offer_id, .. } => reservations.remove(offer_id),
                _ => None,
            };
            carry_out(&mut framework, &rm, &settings, effect, reserved).await;
        }
    }
}




/// `reserved`: what is left of the offer's reservation for `role`, which
/// the task's cpus and mem come from first.
fn task_info(
    plan: TaskPlan,
    agent_id: &weir_model::AgentId,
    rm: &Rm,
    settings: &ShimSettings,
    role: &str,
    reserved: &mut weir_model::Resources,
) -> v1::TaskInfo {
    let weir = settings.weir_binary.display().to_string();
    match plan {
        TaskPlan::NodeManager { task_id, host, port, http_port, cpus, mem_mb } => {
            let mut resources = take_resources(reserved, role, cpus, mem_mb);
            let mut ports = vec![v1::Range { begin: port, end: port }];
            if http_port != 0 {
                ports.push(v1::Range { begin: http_port, end: http_port });
            }
            resources.push(v1::Resource {
                name: "ports".into(),
                value: Some(v1::resource::Value::Ranges(v1::Ranges { range: ports })),
                ..Default::default()
            });
            let mut environment = std::collections::HashMap::new();
            if let Ok(log) = std::env::var("RUST_LOG") {
                environment.insert("RUST_LOG".to_owned(), log);
            }
            v1::TaskInfo {
                allocation_role: String::new(),
                principal: String::new(),
                task_id: task_id.to_string(),
                name: format!("YARN node manager {host}:{port}"),
                agent_id: agent_id.to_string(),
                resources,
                command: Some(v1::CommandInfo {
                    shell: false,
                    value: weir.clone(),
                    arguments: {
                        let mut args = vec![weir, "yarn-nodemanager".into(), "--host".into(), host, "--port".into(), port.to_string()];
                        if http_port != 0 {
                            args.extend(["--http-port".into(), http_port.to_string()]);
                        }
                        if let Some(dir) = &settings.nm_hadoop_conf_dir {
                            args.extend(["--hadoop-conf-dir".into(), dir.display().to_string()]);
                        }
                        if let ContainerExecutor::Linux { local_user } = &settings.container_executor {
                            args.push("--linux-container-executor".into());
                            if let Some(user) = local_user {
                                args.extend(["--nonsecure-local-user".into(), user.clone()]);
                            }
                        }
                        args
                    },
                    environment: environment.into_iter().collect(),
                    // Under LinuxContainerExecutor the node manager gives
                    // each container's files to its user: root, where the
                    // agent trusts this framework with it.
                    user: if settings.container_executor.is_linux() { "root".into() } else { String::new() },
                }),
                kill_grace_seconds: 2.0,
                // Every container on the node ends with its node manager:
                // revocation (YARN preemption) takes containers instead.
                labels: {
                    let mut labels = vec![("yarn.role".to_owned(), "nodemanager".to_owned()), (weir_model::task::REVOCATION_EXEMPT_LABEL.to_owned(), "true".to_owned())];
                    if settings.container_executor.is_linux() {
                        labels.push((weir_model::task::RUN_AS_ROOT_LABEL.to_owned(), "true".to_owned()));
                    }
                    labels.into_iter().collect()
                },
                volumes: Vec::new(),
                // A file in the node manager's sandbox, not its environment
                // (which its children inherit and /proc shows).
                secrets: vec![v1::Secret { name: NM_KEY_SECRET.to_owned(), value: rm.tokens.nm_key_text().into_bytes() }],
            }
        }
        TaskPlan::Container { task_id, container, capacity, nm_port, user } => v1::TaskInfo {
            allocation_role: String::new(),
            principal: String::new(),
            task_id: task_id.to_string(),
            name: format!("YARN {container}"),
            agent_id: agent_id.to_string(),
            resources: take_resources(
                reserved,
                role,
                weir_model::Milli::from_units(capacity.vcores.max(0) as u64),
                weir_model::Milli::from_units(capacity.memory_mb.max(0) as u64),
            ),
            command: Some(v1::CommandInfo {
                shell: false,
                value: weir.clone(),
                arguments: vec![weir, "yarn-container".into(), "--nm-port".into(), nm_port.to_string(), "--container-id".into(), container.to_string()],
                environment: Default::default(),
                // The agent (with agent.tasks.switch-user) starts it as this
                // user, or refuses it saying why; empty: the framework's.
                user: settings.container_executor.run_as(&user).unwrap_or_default().to_owned(),
            }),
            kill_grace_seconds: settings.container_kill_grace.as_secs_f64(),
            labels: [
                ("yarn.application".to_owned(), container.attempt.app.to_string()),
                ("yarn.container".to_owned(), container.to_string()),
            ]
            .into_iter()
            .collect(),
            volumes: Vec::new(),
            secrets: Vec::new(),
        },
    }
}

async fn carry_out(framework: &mut Framework, rm: &Arc<Rm>, settings: &Arc<ShimSettings>, effect: Effect, reserved: Option<(String, weir_model::Resources)>) {
    let id = framework.id().clone();
    debug!(framework_id = %id, ?effect, "carrying out");
    let result = match effect {
        Effect::Launch { offer_id, agent_id, tasks } => {
            let (role, mut budget) = reserved.unwrap_or_default();
            let infos: Vec<v1::TaskInfo> = tasks.into_iter().map(|t| task_info(t, &agent_id, rm, settings, &role, &mut budget)).collect();
            info!(framework_id = %id, %agent_id, tasks = infos.len(), "launching YARN tasks");
            framework.launch(&[offer_id], infos, Some(Duration::ZERO)).await
        }
        Effect::Decline { offer_id, refuse_ms } => {
            framework.decline(&[offer_id], Some(Duration::from_millis(refuse_ms.max(0) as u64))).await
        }
        Effect::Kill { task_id, agent_id } => {
            framework.kill(&task_id, Some(&agent_id)).await
        }
        Effect::Revive => framework.revive().await,
        Effect::Roles { roles } => {
            info!(framework_id = %framework.id(), ?roles, "the queues changed; subscribing in their roles");
            framework.update_roles(roles).await
        }
        Effect::Data { host_bytes } => {
            debug!(framework_id = %id, hosts = host_bytes.len(), "stating where node-local containers are wanted");
            framework.revive_for_data(v1::DataLocality { host_bytes: host_bytes.into_iter().collect(), ..Default::default() }).await
        }
        Effect::Reconcile { tasks } => {
            debug!(framework_id = %id, tasks = tasks.len(), "reconciling tasks last heard unreachable");
            framework.reconcile(tasks.into_iter().map(|(t, a)| (t, Some(a))).collect()).await
        }
        Effect::StartAm { application, container } => {
            let (rm, settings) = (rm.clone(), settings.clone());
            tokio::spawn(async move {
                if let Err(why) = start_am(&rm, &settings, application, &container).await {
                    warn!(application_id = %application, container_id = %container.id, error = %why, "cannot start the ApplicationMaster");
                    let why = format!("Error launching {}. Got exception: {why}", container.id.attempt);
                    let id = container.id;
                    // Its effects reach the driver through the core's channel.
                    let _ = rm.core.call(move |core, _| core.abort_container(id, exit_status::INVALID, &why)).await;
                }
            });
            Ok(())
        }
    };
    if let Err(e) = result {
        warn!(framework_id = %id, error = %e, "a call to the broker failed");
    }
}

/// Starts an attempt's AM in its container, as YARN's AMLauncher does:
/// the client's launch context plus the AMRM token and the AM's
/// environment, through the node manager's startContainers.
async fn start_am(rm: &Rm, settings: &ShimSettings, application: weir_yarn_api::ids::ApplicationId, container: &Allocated) -> Result<(), String> {
    let attempt = container.id.attempt;
    let default_max = settings.scheduler.default_max_attempts;
    let (mut launch, submit_ms, max_attempts, now) = rm
        .core
        .call(move |core, now| {
            let app = core.rm().application(application).map_err(|e| e.to_string())?;
            let max = if app.submission.max_attempts > 0 { app.submission.max_attempts } else { default_max };
            Ok::<_, String>((app.submission.am_launch.clone().unwrap_or_default(), app.submit_ms, max, now.unix_ms))
        })
        .await
        .map_err(|e| e.to_string())??;
    let mut credentials = match launch.tokens.as_deref() {
        Some(bytes) if !bytes.is_empty() => Credentials::from_bytes(bytes).map_err(|e| format!("the application's tokens do not parse: {e}"))?,
        _ => Credentials::default(),
    };
    let amrm = rm.tokens.amrm_token(attempt);
    credentials.add_token(&amrm.service.clone(), amrm);
    launch.tokens = Some(credentials.to_bytes());
    for (k, v) in [
        ("APP_SUBMIT_TIME_ENV", submit_ms.to_string()),
        ("MAX_APP_ATTEMPTS", max_attempts.to_string()),
        ("APPLICATION_WEB_PROXY_BASE", format!("/proxy/{application}")),
    ] {
        launch.environment.retain(|e| e.key() != k);
        launch.environment.push(r::StringStringMapProto { key: Some(k.into()), value: Some(v) });
    }
    let request = r::StartContainersRequestProto {
        start_container_request: vec![r::StartContainerRequestProto {
            container_launch_context: Some(launch),
            container_token: Some(rm.tokens.container_token(&container.token_spec(), true, now)),
        }],
    };
    let config = ClientConfig {
        user: attempt.to_string(),
        protocol: CONTAINER_MANAGEMENT_PROTOCOL.into(),
        token: Some(rm.tokens.nm_token(attempt, &container.node, &container.user)),
        max_frame_len: settings.ipc.max_frame_len,
    };
    let deadline = tokio::time::Instant::now() + AM_START_TRIES_FOR;
    let client = loop {
        let last = match tokio::net::lookup_host((container.node.host.as_str(), container.node.port as u16)).await {
            Ok(mut addrs) => match addrs.next() {
                Some(addr) => match Client::connect(addr, config.clone()).await {
                    Ok(client) => break client,
                    Err(e) => e.to_string(),
                },
                None => format!("{} resolves to nothing", container.node.host),
            },
            Err(e) => format!("cannot resolve {}: {e}", container.node.host),
        };
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the node manager at {} did not answer within {AM_START_TRIES_FOR:?}: {last}", container.node));
        }
        // A node manager that ended (its port taken, say) will not answer.
        let (agent, host, port) = (container.agent_id.clone(), container.node.host.clone(), container.node.port as u64);
        let still_there = rm.core.call(move |core, _| core.node_manager_is(&agent, &host, port)).await.unwrap_or(false);
        if !still_there {
            return Err(format!(
                "the node manager at {} ended before the AM could start (its task's stderr on agent {} says why): {last}",
                container.node, container.agent_id
            ));
        }
        // The node manager was launched with the AM's task and starts in
        // milliseconds: poll briskly.
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let answer = client
        .call(CONTAINER_MANAGEMENT_PROTOCOL, "startContainers", &request.encode_to_vec())
        .await
        .map_err(|e| format!("startContainers on {}: {e}", container.node))?;
    let answer = r::StartContainersResponseProto::decode(&answer[..]).map_err(|e| format!("startContainers answer: {e}"))?;
    if let Some(failed) = answer.failed_requests.first() {
        let message = failed.exception.as_ref().map(|e| e.message().to_owned()).unwrap_or_default();
        return Err(message);
    }
    info!(application_id = %application, container_id = %container.id, node = %container.node, "ApplicationMaster started");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_ui_is_announced_by_host_name_when_bound_to_every_address() {
        let any: SocketAddr = "0.0.0.0:8088".parse().unwrap();
        let one: SocketAddr = "127.0.0.1:8088".parse().unwrap();
        assert_eq!(web_ui_url(any, Some("yarn")), "http://yarn:8088");
        assert_eq!(web_ui_url(one, Some("yarn")), "http://127.0.0.1:8088");
        assert_eq!(web_ui_url(any, None), "http://0.0.0.0:8088");
    }

    #[test]
    fn agents_become_nodes_with_their_total_and_used_resources() {
        let agent = |id: &str, host: &str, http: &str, state, total: &str, used: &str, tasks| AgentSummary {
            id: id.into(),
            hostname: host.into(),
            http_address: http.into(),
            state,
            attributes: Vec::new(),
            total: weir_model::ResourceSet::parse(total).unwrap(),
            used: weir_model::ResourceSet::parse(used).unwrap(),
            offered: Default::default(),
            tasks,
            drain: DrainState::Active,
            unavailability: None,
        };
        let deadline = Duration::from_millis(1_700_000_123_456);
        let nodes = nodes_from_agents(&[
            agent("a1", "box", "127.0.0.1:5051", AgentState::Reachable, "cpus:2.5;mem:4096", "cpus:0.5;mem:512", 1),
            agent("a2", "", "10.0.0.2:6000", AgentState::Unreachable, "cpus:1;mem:1024", "cpus:0;mem:0", 0),
            agent("a3", "b3", "b3:5051", AgentState::Disconnected, "cpus:1;mem:1024", "cpus:0;mem:0", 0),
            AgentSummary {
                drain: DrainState::Draining { deadline },
                ..agent("a4", "b4", "b4:5051", AgentState::Unreachable, "cpus:1;mem:1024", "cpus:0;mem:0", 0)
            },
            AgentSummary { drain: DrainState::Drained, ..agent("a5", "b5", "b5:5051", AgentState::Reachable, "cpus:1;mem:1024", "cpus:0;mem:0", 0) },
        ]);
        assert_eq!(nodes.len(), 5);
        assert_eq!((nodes[3].state, nodes[3].decommission_deadline_ms), (NodeState::Decommissioning, Some(1_700_000_123_456)));
        assert_eq!((nodes[4].state, nodes[4].decommission_deadline_ms), (NodeState::Decommissioned, None));
        assert_eq!(nodes[0].decommission_deadline_ms, None);
        assert_eq!(nodes[0].node_id, NodeId { host: "box".into(), port: 5051 });
        assert_eq!(nodes[0].capability, Capacity { memory_mb: 4096, vcores: 2 });
        assert_eq!(nodes[0].used, Capacity { memory_mb: 512, vcores: 1 });
        assert_eq!((nodes[0].state, nodes[0].containers), (NodeState::Running, 1));
        assert_eq!(nodes[1].node_id, NodeId { host: "10.0.0.2".into(), port: 6000 });
        assert_eq!(nodes[1].state, NodeState::Lost);
        assert_eq!(nodes[2].state, NodeState::Unhealthy);
    }
}
