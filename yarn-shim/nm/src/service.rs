//! The node manager: ContainerManagementProtocol (`startContainers`,
//! `stopContainers`, `getContainerStatuses`) on its port, NM-token
//! authenticated, and the handoff socket its containers' tasks wait on.
//!
//! `startContainers` checks the container token (signed with the shim's
//! NM key, not expired, for this node, for the application whose NM token
//! the caller holds), waits for the container's task to report in,
//! localizes the launch context's resources into the task's sandbox,
//! writes the credentials and the launch script, and hands the script to
//! the task. Failures are per container, in `failed_requests`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use super::handoff::{self, ToContainer, ToNm};
use super::identity::{self, Identity};
use super::launch::{self, LaunchSpec};
use super::layout::Layout;
use super::localize::Localizer;
use super::shuffle::{self, ShuffleService};
use super::web::WebServer;
use base64::Engine as _;
use weir_yarn_ipc::Error;
use weir_yarn_ipc::connection::AuthPolicy;
use weir_yarn_ipc::server::{decode_request as decode, CallContext, RpcError, Server, ServerConfig, ServerHandle, Service};
use weir_yarn_ipc::security::credentials::Credentials;
use weir_yarn_api::convert;
use weir_yarn_api::ids::ContainerId;
use weir_yarn_api::records as r;
use weir_yarn_api::resource::Capacity;
use weir_yarn_api::tokens::{NmKey, NmTokenHolder};
use weir_yarn_api::CONTAINER_MANAGEMENT_PROTOCOL;

/// How long `startContainers` waits for the container's task to report in.
const HELLO_WAIT: Duration = Duration::from_secs(60);
/// stopContainers: SIGTERM, then SIGKILL after this long
/// (yarn.nodemanager.sleep-delay-before-sigkill.ms is 250 ms).
const STOP_GRACE_MS: u64 = 250;
/// Most bytes unpacked from one archive.
const MAX_ARCHIVE_BYTES: u64 = 16 << 30;

#[derive(Debug, Clone)]
pub struct NmSettings {
    /// The host the node manager is known by (the NodeId's host).
    pub host: String,
    pub port: u16,
    /// Where the node manager keeps its cache, the applications' local
    /// dirs and the containers' logs (see [`crate::layout`]).
    pub work_dir: PathBuf,
    /// Passed to containers as HADOOP_CONF_DIR, if set.
    pub hadoop_conf_dir: Option<PathBuf>,
    pub ipc: ServerConfig,
    /// The web port (container logs), NM_HTTP_PORT; 0 takes a free one.
    pub http_port: u16,
    /// yarn.nodemanager.aux-services; only `mapreduce_shuffle` is known.
    pub aux_services: Vec<String>,
    /// The shuffle's port (mapreduce.shuffle.port); 0 takes a free one.
    pub shuffle_port: u16,
    /// yarn.nodemanager.env-whitelist.
    pub env_whitelist: Vec<String>,
    /// yarn.nodemanager.admin-env, unparsed (`NAME=value,…`).
    pub admin_env: String,
    /// yarn.nodemanager.user-home-dir: HOME in containers.
    pub user_home_dir: String,
    /// Variables the node manager's configuration gives it (JAVA_HOME,
    /// HADOOP_*_HOME): containers inherit them through the whitelist as
    /// they would the node manager's own environment, which they override.
    pub node_env: Vec<(String, String)>,
    /// LinuxContainerExecutor: containers run as their users (see
    /// [`LinuxExecutor`]); None: as the node manager's user.
    pub linux_executor: Option<LinuxExecutor>,
}

/// Containers as their users. The agent starts each container's task as
/// the user the shim names (the application's, or `local_user` for
/// all); the node manager, root, checks that the task that reported in
/// for a container runs as that user (the kernel says who is at the other
/// end of the handoff socket) and gives the container's files to it. A
/// task running as the node manager's own user means the agent does not
/// switch users (`agent.tasks.switch-user` off): everything then runs as
/// that user, as it always did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxExecutor {
    /// Every container runs as this user (YARN's nonsecure-mode
    /// local-user); None: as its application's user.
    pub local_user: Option<String>,
}

impl NmSettings {
    /// Hadoop's defaults for everything but where the node manager is.
    pub fn new(host: String, port: u16, work_dir: PathBuf) -> NmSettings {
        NmSettings {
            host,
            port,
            work_dir,
            hadoop_conf_dir: None,
            // Well under the node manager task's own memory (128 MiB by default).
            ipc: ServerConfig { max_frame_len: 16 << 20, ..ServerConfig::default() },
            http_port: 0,
            aux_services: vec![crate::shuffle::SERVICE_NAME.to_owned()],
            shuffle_port: 0,
            env_whitelist: launch::DEFAULT_ENV_WHITELIST.iter().map(|s| (*s).to_owned()).collect(),
            admin_env: launch::DEFAULT_ADMIN_ENV.to_owned(),
            user_home_dir: "/home/".to_owned(),
            node_env: Vec::new(),
            linux_executor: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum SlotState {
    /// The task reported in and waits.
    Waiting,
    /// startContainers is localizing for it.
    Starting,
    Running,
    Done { exit_status: i32, diagnostics: String },
}

struct Slot {
    sandbox: PathBuf,
    /// Who the container's task runs as (from the socket, per the kernel).
    peer_uid: Option<u32>,
    to_container: mpsc::UnboundedSender<ToContainer>,
    state: SlotState,
    capacity: Capacity,
}

impl Slot {
    /// What the node manager's REST API shows of it (YARN's NM states).
    fn view(&self, id: ContainerId) -> crate::web::ContainerView {
        let (state, exit_code, diagnostics) = match &self.state {
            SlotState::Waiting => ("NEW", None, String::new()),
            SlotState::Starting => ("LOCALIZING", None, String::new()),
            SlotState::Running => ("RUNNING", None, String::new()),
            SlotState::Done { exit_status, diagnostics } => ("DONE", Some(*exit_status), diagnostics.clone()),
        };
        crate::web::ContainerView { id, state, exit_code, diagnostics, memory_mb: self.capacity.memory_mb, vcores: self.capacity.vcores }
    }
}

struct Inner {
    key: NmKey,
    settings: NmSettings,
    localizer: Localizer,
    java_home: Option<PathBuf>,
    layout: Layout,
    /// The port containers are told in NM_HTTP_PORT.
    http_port: u16,
    /// (service name, meta data) of each auxiliary service running here.
    aux_meta: Vec<(String, Vec<u8>)>,
    shuffle: Option<ShuffleService>,
    /// Shared with the web server's container listing.
    slots: Arc<Mutex<HashMap<ContainerId, Slot>>>,
    arrived: Notify,
}

pub struct NodeManager {
    inner: Arc<Inner>,
    server: ServerHandle,
    handoff: tokio::task::JoinHandle<()>,
    address: SocketAddr,
    web: WebServer,
}

impl NodeManager {
    /// Binds the protocol port on the address `host` resolves to (so a
    /// loopback host stays on loopback) and the handoff socket.
    pub async fn start(key: NmKey, settings: NmSettings) -> Result<NodeManager, Error> {
        let bind = tokio::net::lookup_host((settings.host.as_str(), settings.port))
            .await
            .map_err(|e| Error::Protocol(format!("node manager host {}: {e}", settings.host)))?
            .next()
            .ok_or_else(|| Error::Protocol(format!("node manager host {} resolves to nothing", settings.host)))?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| Error::Protocol(format!("node manager cannot listen on {bind}: {e}")))?;
        let std_listener = std::os::unix::net::UnixListener::bind_addr(
            &handoff::address(&handoff::socket_name(settings.port)).map_err(|e| Error::Protocol(e.to_string()))?,
        )
        .map_err(|e| Error::Protocol(format!("node manager cannot open its handoff socket: {e}")))?;
        std_listener.set_nonblocking(true).map_err(|e| Error::Protocol(e.to_string()))?;
        let unix = tokio::net::UnixListener::from_std(std_listener).map_err(|e| Error::Protocol(e.to_string()))?;
        let cache = settings.work_dir.join("filecache");
        std::fs::create_dir_all(&cache).map_err(|e| Error::Protocol(format!("cannot create {}: {e}", cache.display())))?;
        let layout = Layout::new(settings.work_dir.clone());
        let mut shuffle = None;
        let mut aux_meta = Vec::new();
        for name in &settings.aux_services {
            if name == shuffle::SERVICE_NAME {
                let service = ShuffleService::start(SocketAddr::new(bind.ip(), settings.shuffle_port), layout.clone())
                    .await
                    .map_err(|e| Error::Protocol(format!("starting {name}: {e}")))?;
                aux_meta.push((name.clone(), shuffle::meta_data(service.port())));
                shuffle = Some(service);
            } else {
                // Hadoop would fail to find the service's class; a node
                // manager that does not start would take every container
                // of this agent down with it, so only say so.
                warn!(service = %name, "unknown auxiliary service in yarn-shim.nodemanager.aux-services; not started");
            }
        }
        let slots: Arc<Mutex<HashMap<ContainerId, Slot>>> = Arc::new(Mutex::new(HashMap::new()));
        let view = {
            let slots = slots.clone();
            Arc::new(move || {
                let slots = slots.lock().unwrap_or_else(|p| p.into_inner());
                slots.iter().map(|(id, s)| s.view(*id)).collect::<Vec<_>>()
            })
        };
        let web = WebServer::start(SocketAddr::new(bind.ip(), settings.http_port), layout.clone(), format!("{}:{}", settings.host, settings.port), view)
            .await
            .map_err(|e| Error::Protocol(format!("starting the web server: {e}")))?;
        let inner = Arc::new(Inner {
            key: key.clone(),
            localizer: Localizer::new(cache, MAX_ARCHIVE_BYTES),
            java_home: settings
                .node_env
                .iter()
                .find(|(k, _)| k == "JAVA_HOME")
                .map(|(_, v)| PathBuf::from(v))
                .or_else(launch::detect_java_home),
            layout,
            http_port: web.address().port(),
            aux_meta,
            shuffle,
            settings: settings.clone(),
            slots,
            arrived: Notify::new(),
        });
        let mut config = settings.ipc.clone();
        config.auth = AuthPolicy::TokenRequired;
        let mut server = Server::new(config);
        server.register(CONTAINER_MANAGEMENT_PROTOCOL, Arc::new(Cmp { inner: inner.clone() }));
        let lookup_key = key;
        server.set_token_passwords(Arc::new(move |identifier: &[u8]| lookup_key.nm_password(identifier)));
        let server = server.spawn(listener).map_err(|e| Error::Protocol(e.to_string()))?;
        let address = server.local_addr;
        let handoff = tokio::spawn(accept_containers(unix, inner.clone()));
        info!(%address, host = %settings.host, java_home = ?inner.java_home, "node manager listening");
        Ok(NodeManager { inner, server, handoff, address, web })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Containers that reported in, and their state, for tests and logs.
    pub fn containers(&self) -> Vec<(ContainerId, String)> {
        let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().map(|(id, s)| (*id, format!("{:?}", s.state))).collect()
    }

    /// The web server's address (container logs); its port is NM_HTTP_PORT.
    pub fn http_address(&self) -> SocketAddr {
        self.web.address()
    }

    /// The shuffle's address, if `mapreduce_shuffle` runs here.
    pub fn shuffle_address(&self) -> Option<SocketAddr> {
        self.inner.shuffle.as_ref().map(ShuffleService::address)
    }

    pub fn stop(self) {
        if let Some(shuffle) = &self.inner.shuffle {
            shuffle.stop();
        }
        self.web.stop();
        self.server.shutdown();
        self.handoff.abort();
    }
}

async fn accept_containers(listener: tokio::net::UnixListener, inner: Arc<Inner>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_container(stream, inner.clone()));
            }
            Err(e) => {
                warn!(error = %e, "handoff socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_line(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Option<Result<ToNm, String>> {
    let mut line = Vec::new();
    match reader.take(handoff::MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            Some(handoff::decode(&line))
        }
    }
}

/// One container task's connection: hello, then started/exited reports;
/// launch and stop orders go the other way.
async fn serve_container(stream: tokio::net::UnixStream, inner: Arc<Inner>) {
    let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let (container, sandbox) = match read_line(&mut reader).await {
        Some(Ok(ToNm::Hello { container, sandbox, pid })) => {
            debug!(container_id = %container, pid, %sandbox, "container task reported in");
            (container, sandbox)
        }
        Some(Ok(other)) => {
            warn!(message = ?other, "a container task spoke before saying hello");
            return;
        }
        Some(Err(e)) => {
            warn!(error = %e, "bad message on the handoff socket");
            return;
        }
        None => return,
    };
    let Ok(id) = container.parse::<ContainerId>() else {
        let _ = write.write_all(&handoff::encode(&ToContainer::Abandon { reason: format!("{container:?} is not a container id") })).await;
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut slots = inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get_mut(&id) {
            // A task that reconnects (this node manager restarted) keeps
            // its state; a finished one is not started again.
            Some(slot) => {
                slot.to_container = tx;
                slot.sandbox = PathBuf::from(&sandbox);
                slot.peer_uid = peer_uid;
            }
            None => {
                slots.insert(
                    id,
                    Slot { sandbox: PathBuf::from(&sandbox), peer_uid, to_container: tx, state: SlotState::Waiting, capacity: Capacity::default() },
                );
            }
        }
    }
    inner.arrived.notify_waiters();
    loop {
        tokio::select! {
            order = rx.recv() => match order {
                Some(order) => {
                    if write.write_all(&handoff::encode(&order)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            report = read_line(&mut reader) => match report {
                Some(Ok(ToNm::Started { pid })) => {
                    info!(container_id = %id, pid, "container running");
                    set_state(&inner, id, SlotState::Running);
                }
                Some(Ok(ToNm::Exited { code, signal })) => {
                    let exit_status = code.unwrap_or_else(|| 128 + signal.unwrap_or(0));
                    let diagnostics = match (code, signal) {
                        (Some(0), _) => String::new(),
                        (Some(c), _) => format!("Exception from container-launch. Exit code: {c}"),
                        (None, Some(s)) => format!("Container killed by signal {s}"),
                        _ => "Container ended with an unknown status".into(),
                    };
                    info!(container_id = %id, exit_status, "container exited");
                    set_state(&inner, id, SlotState::Done { exit_status, diagnostics });
                }
                Some(Ok(ToNm::Hello { .. })) | Some(Err(_)) => {
                    warn!(container_id = %id, "unexpected message from a container task");
                }
                None => break,
            },
        }
    }
    // The task is gone; if it never said how the container ended, it was
    // killed with it.
    let mut slots = inner.slots.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(slot) = slots.get_mut(&id) {
        if !matches!(slot.state, SlotState::Done { .. }) {
            slot.state = SlotState::Done { exit_status: weir_yarn_api::exit_status::ABORTED, diagnostics: "Container's task ended".into() };
        }
    }
}

fn set_state(inner: &Inner, id: ContainerId, state: SlotState) {
    let mut slots = inner.slots.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(slot) = slots.get_mut(&id) {
        slot.state = state;
    }
}

struct Cmp {
    inner: Arc<Inner>,
}

fn failure(id: Option<&r::ContainerIdProto>, message: String) -> r::ContainerExceptionMapProto {
    r::ContainerExceptionMapProto {
        container_id: id.cloned(),
        exception: Some(r::SerializedExceptionProto {
            message: Some(message),
            trace: Some(String::new()),
            class_name: Some("org.apache.hadoop.yarn.exceptions.YarnException".into()),
            cause: None,
        }),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Cmp {
    fn holder(ctx: &CallContext) -> Result<NmTokenHolder, RpcError> {
        ctx.token_identifier.as_deref().and_then(NmKey::holder).ok_or_else(|| {
            RpcError::application("org.apache.hadoop.security.AccessControlException", "the node manager needs an NM token")
        })
    }

    async fn start(&self, holder: &NmTokenHolder, req: &r::StartContainerRequestProto) -> Result<ContainerId, String> {
        let inner = &self.inner;
        let token = req.container_token.as_ref().ok_or("the request has no container token")?;
        let grant = inner.key.verify_container_token(token, now_ms())?;
        let id = grant.container;
        if id.attempt.app != holder.attempt.app {
            return Err(format!(
                "NMToken for application attempt : {} was used for starting container with container token issued for application attempt : {}",
                holder.attempt, id.attempt
            ));
        }
        let me = format!("{}:{}", inner.settings.host, inner.settings.port);
        if grant.node != me {
            return Err(format!("the container token for {id} is for node {}, this is {me}", grant.node));
        }
        let ctx = req.container_launch_context.as_ref().ok_or("the request has no container launch context")?;
        // ContainerManagerImpl: service data for a service not running here
        // fails the start, before anything is localized.
        for entry in &ctx.service_data {
            if !inner.aux_meta.iter().any(|(name, _)| name == entry.key()) {
                return Err(format!("The auxService:{} does not exist", entry.key()));
            }
        }
        if let Some(shuffle) = &inner.shuffle {
            if let Some(entry) = ctx.service_data.iter().find(|e| e.key() == shuffle::SERVICE_NAME) {
                shuffle
                    .register(id.attempt.app, &grant.user, entry.value())
                    .map_err(|e| format!("{}: {e}", shuffle::SERVICE_NAME))?;
            }
        }
        // Wait for the container's task to report in.
        let deadline = tokio::time::Instant::now() + HELLO_WAIT;
        let (sandbox, peer_uid) = loop {
            let arrived = inner.arrived.notified();
            {
                let mut slots = inner.slots.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = slots.get_mut(&id) {
                    if slot.state != SlotState::Waiting {
                        return Err(format!("Container {id} has already been started on this node"));
                    }
                    slot.state = SlotState::Starting;
                    slot.capacity = grant.capacity;
                    break (slot.sandbox.clone(), slot.peer_uid);
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Err(format!("the task for container {id} did not report in within {HELLO_WAIT:?}"));
            }
        };
        let prepared = match self.owner(id, &grant.user, peer_uid) {
            Ok(owner) => self.prepare(id, &grant.user, owner, ctx, &sandbox).await,
            Err(e) => Err(e),
        };
        match prepared {
            Ok(script) => {
                let slots = inner.slots.lock().unwrap_or_else(|p| p.into_inner());
                let slot = slots.get(&id).ok_or("the container's task went away")?;
                slot.to_container
                    .send(ToContainer::Launch { script: script.display().to_string(), work_dir: sandbox.display().to_string() })
                    .map_err(|_| "the container's task went away".to_owned())?;
                info!(container_id = %id, user = %grant.user, "container launched");
                Ok(id)
            }
            Err(e) => {
                let slots = inner.slots.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = slots.get(&id) {
                    let _ = slot.to_container.send(ToContainer::Abandon { reason: e.clone() });
                }
                warn!(container_id = %id, error = %e, "container could not be started");
                Err(e)
            }
        }
    }

    /// Who container `id` of `submitter`'s application runs as, if not as
    /// the node manager's own user (see [`container_owner`]).
    fn owner(&self, id: ContainerId, submitter: &str, peer_uid: Option<u32>) -> Result<Option<Identity>, String> {
        let me = nix::unistd::geteuid().as_raw();
        container_owner(self.inner.settings.linux_executor.as_ref(), id, submitter, peer_uid, me, Identity::lookup)
    }

    /// Localizes, writes the credentials and the launch script; as
    /// `owner` where there is one (see [`crate::identity`]).
    async fn prepare(&self, id: ContainerId, user: &str, owner: Option<Identity>, ctx: &r::ContainerLaunchContextProto, sandbox: &Path) -> Result<PathBuf, String> {
        let inner = &self.inner;
        inner.localizer.localize_as(&ctx.local_resources, sandbox, owner.as_ref()).await.map_err(|e| e.to_string())?;
        let token_file = sandbox.join("container_tokens");
        let credentials = match &ctx.tokens {
            Some(bytes) => bytes.clone(),
            None => Credentials::default().to_bytes(),
        };
        let settings = &inner.settings;
        let (user_dir, app_dir, log_dir) = match &owner {
            Some(o) => inner.layout.prepare_container_for(user, id, o)?,
            None => inner.layout.prepare_container(user, id).map_err(|e| e.to_string())?,
        };
        // MapReduce points java.io.tmpdir at $PWD/tmp and refuses to start
        // without it; Hadoop's container executors create it.
        let tmp = sandbox.join("tmp");
        identity::as_owner(owner.as_ref(), || {
            write_private(&token_file, &credentials)?;
            std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))
        })?;
        let inherited: Vec<(String, String)> = settings
            .env_whitelist
            .iter()
            .filter_map(|k| {
                let configured = settings.node_env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                configured.or_else(|| std::env::var(k).ok()).map(|v| (k.clone(), v))
            })
            .collect();
        // Each auxiliary service's meta data, as Hadoop's
        // AuxiliaryServiceHelper puts it: NM_AUX_SERVICE_<name>=base64.
        let extra_env: Vec<(String, String)> = inner
            .aux_meta
            .iter()
            .map(|(name, data)| (format!("NM_AUX_SERVICE_{name}"), base64::engine::general_purpose::STANDARD.encode(data)))
            .collect();
        let admin_env = launch::parse_admin_env(&settings.admin_env);
        let container_id = id.to_string();
        let local_dirs = [app_dir];
        let user_local_dirs = [user_dir];
        let spec = LaunchSpec {
            container_id: &container_id,
            user,
            nm_host: &inner.settings.host,
            nm_port: inner.settings.port,
            nm_http_port: inner.http_port,
            work_dir: sandbox,
            log_dir: &log_dir,
            local_dirs: &local_dirs,
            user_local_dirs: &user_local_dirs,
            home: &settings.user_home_dir,
            hadoop_conf_dir: settings.hadoop_conf_dir.as_deref(),
            token_file: &token_file,
            java_home: inner.java_home.as_deref(),
            extra_env: &extra_env,
            inherited: &inherited,
            admin_env: &admin_env,
        };
        identity::as_owner(owner.as_ref(), || launch::write_launch_script(ctx, &spec).map_err(|e| e.to_string()))
    }
}

/// Under LinuxContainerExecutor, the user container `id` of
/// `submitter`'s application runs as (`local_user` if set), whom its task
/// (uid `peer_uid`, per the kernel) must run as, for a node manager of uid
/// `me`; None: as the node manager's own user (no executor, or the agent
/// does not switch users: the task runs as `me`). Refused, saying why,
/// when the task runs as someone else or the node manager cannot hand
/// files over (not root).
fn container_owner(
    linux: Option<&LinuxExecutor>,
    id: ContainerId,
    submitter: &str,
    peer_uid: Option<u32>,
    me: u32,
    lookup: impl Fn(&str) -> Result<Identity, String>,
) -> Result<Option<Identity>, String> {
    let Some(linux) = linux else { return Ok(None) };
    let name = linux.local_user.as_deref().unwrap_or(submitter);
    let peer = peer_uid.ok_or_else(|| format!("cannot tell which user the task of container {id} runs as"))?;
    if peer == me {
        return Ok(None);
    }
    let owner = lookup(name).map_err(|e| format!("Container {id} cannot run as {name}: {e}"))?;
    if owner.uid != peer {
        return Err(format!("the task of container {id} runs as uid {peer}, not as user {name} (uid {}), whom it must run as", owner.uid));
    }
    if me != 0 {
        return Err(format!(
            "the node manager runs as uid {me}, not root, and cannot give container {id}'s directories to user {name}: an agent runs it as root for the principals of agent.tasks.root-principals only"
        ));
    }
    Ok(Some(owner))
}

/// Writes `bytes` to a new `path` (mode 0600: the container's
/// credentials are its user's alone), replacing what is there without
/// writing through a symlink.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("replace", e)),
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| failed("create", e))?;
    file.write_all(bytes).map_err(|e| failed("write", e))
}

#[async_trait::async_trait]
impl Service for Cmp {
    async fn call(&self, ctx: &CallContext, method: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        let holder = Self::holder(ctx)?;
        match method {
            "startContainers" => {
                let req: r::StartContainersRequestProto = decode("StartContainersRequestProto", request)?;
                // Hadoop answers every start with all services' meta data.
                let mut response = r::StartContainersResponseProto {
                    services_meta_data: self
                        .inner
                        .aux_meta
                        .iter()
                        .map(|(name, data)| r::StringBytesMapProto { key: Some(name.clone()), value: Some(data.clone()) })
                        .collect(),
                    ..Default::default()
                };
                for one in &req.start_container_request {
                    match self.start(&holder, one).await {
                        Ok(id) => response.succeeded_requests.push(convert::container_to_proto(id)),
                        Err(e) => {
                            let id = one
                                .container_token
                                .as_ref()
                                .and_then(|t| r::ContainerTokenIdentifierProto::decode(&t.identifier[..]).ok())
                                .and_then(|t| t.container_id);
                            response.failed_requests.push(failure(id.as_ref(), e));
                        }
                    }
                }
                Ok(response.encode_to_vec())
            }
            "stopContainers" => {
                let req: r::StopContainersRequestProto = decode("StopContainersRequestProto", request)?;
                let mut response = r::StopContainersResponseProto::default();
                let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
                for raw in &req.container_id {
                    let Some(id) = convert::container_from_proto(raw) else {
                        response.failed_requests.push(failure(Some(raw), "an incomplete container id".into()));
                        continue;
                    };
                    match slots.get(&id) {
                        Some(_) if id.attempt.app != holder.attempt.app => response
                            .failed_requests
                            .push(failure(Some(raw), format!("{id} does not belong to {}", holder.attempt.app))),
                        Some(slot) => {
                            info!(container_id = %id, "stopping container at the AM's request");
                            let _ = slot.to_container.send(ToContainer::Stop { grace_ms: STOP_GRACE_MS });
                            response.succeeded_requests.push(*raw);
                        }
                        None => response
                            .failed_requests
                            .push(failure(Some(raw), format!("Container {id} is not handled by this NodeManager"))),
                    }
                }
                Ok(response.encode_to_vec())
            }
            "getContainerStatuses" => {
                let req: r::GetContainerStatusesRequestProto = decode("GetContainerStatusesRequestProto", request)?;
                let mut response = r::GetContainerStatusesResponseProto::default();
                let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
                for raw in &req.container_id {
                    let slot = convert::container_from_proto(raw).filter(|id| id.attempt.app == holder.attempt.app).and_then(|id| slots.get(&id));
                    let Some(slot) = slot else {
                        response.failed_requests.push(failure(Some(raw), "Container is not handled by this NodeManager".into()));
                        continue;
                    };
                    let (state, exit, diagnostics) = match &slot.state {
                        SlotState::Waiting | SlotState::Starting => (r::ContainerStateProto::CNew, -1000, String::new()),
                        SlotState::Running => (r::ContainerStateProto::CRunning, -1000, String::new()),
                        SlotState::Done { exit_status, diagnostics } => (r::ContainerStateProto::CComplete, *exit_status, diagnostics.clone()),
                    };
                    response.status.push(r::ContainerStatusProto {
                        container_id: Some(*raw),
                        state: Some(state as i32),
                        diagnostics: Some(diagnostics),
                        exit_status: Some(exit),
                        capability: Some(convert::capacity_to_proto(slot.capacity)),
                        execution_type: Some(r::ExecutionTypeProto::Guaranteed as i32),
                    });
                }
                Ok(response.encode_to_vec())
            }
            other => Err(RpcError::no_such_method(CONTAINER_MANAGEMENT_PROTOCOL, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_yarn_api::ids::{ApplicationId, AttemptId};

    #[test]
    fn a_container_goes_only_to_a_task_of_its_run_as_user() {
        let id = ContainerId { attempt: AttemptId { app: ApplicationId { cluster_timestamp: 1, id: 1 }, attempt: 1 }, id: 2 };
        let users = |name: &str| match name {
            "alice" => Ok(Identity { name: "alice".into(), uid: 1001, gid: 1001, groups: vec![1001] }),
            "nobody" => Ok(Identity { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534] }),
            other => Err(format!("user {other} does not exist on this node")),
        };
        let submitters = LinuxExecutor { local_user: None };
        let owner = |linux: Option<&LinuxExecutor>, submitter: &str, peer: Option<u32>, me: u32| container_owner(linux, id, submitter, peer, me, users);
        // DefaultContainerExecutor, or an agent that does not switch: the node manager's user.
        assert_eq!(owner(None, "alice", Some(0), 0), Ok(None));
        assert_eq!(owner(Some(&submitters), "alice", Some(0), 0), Ok(None));
        assert_eq!(owner(Some(&submitters), "alice", Some(1000), 1000), Ok(None));
        // The submitter, or the local user for everyone.
        assert_eq!(owner(Some(&submitters), "alice", Some(1001), 0).unwrap().map(|o| o.uid), Some(1001));
        let local = LinuxExecutor { local_user: Some("nobody".into()) };
        assert_eq!(owner(Some(&local), "alice", Some(65534), 0).unwrap().map(|o| o.name), Some("nobody".into()));
        // A task of someone else (another user's task claiming the container) is refused.
        let e = owner(Some(&submitters), "alice", Some(65534), 0).unwrap_err();
        assert!(e.contains("runs as uid 65534, not as user alice (uid 1001)"), "{e}");
        assert!(owner(Some(&local), "alice", Some(1001), 0).unwrap_err().contains("not as user nobody"));
        // Unknown users, unknown peers and a node manager that is not root: said so.
        assert!(owner(Some(&submitters), "mallory", Some(1002), 0).unwrap_err().contains("user mallory does not exist"));
        assert!(owner(Some(&submitters), "alice", None, 0).unwrap_err().contains("cannot tell which user"));
        assert!(owner(Some(&submitters), "alice", Some(1001), 1000).unwrap_err().contains("not root"));
    }
}
