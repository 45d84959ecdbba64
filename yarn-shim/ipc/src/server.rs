//! The async shell around [`Connection`]: accepts TCP connections, reads
//! bounded frames, feeds them to the state machine, runs dispatched calls
//! concurrently (responses go out as they complete, tagged with their call
//! id) and closes idle connections.
//!
//! Bounded under hostile load: connections are admitted within per-listener
//! and per-peer caps (`weir_net`); until a connection has finished its
//! handshake (preamble, SASL, connection context) only frames up to
//! `handshake_max_frame_len` are legal and the whole handshake must end
//! within `handshake_timeout`; only then does `max_frame_len` apply, and
//! even then a frame's memory grows with the bytes that arrive, not with
//! the length declared.
//!
//! Services are registered by protocol name (`declaringClassProtocolName`,
//! e.g. `org.apache.hadoop.yarn.api.ApplicationClientProtocolPB`) and see
//! only the method name and the request bytes; they answer bytes or an
//! [`RpcError`] naming the Java exception class the client will rebuild.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_net::{Admitted, AdmittingListener, ConnectionLimits};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Instrument};
use weir_net::throttle::AUTH_FAILURES;

use crate::error::Error;
use crate::connection::{AuthPolicy, Authentication, Connection, IncomingCall, PasswordLookup, Step};
use crate::security::sasl_gssapi::KerberosAcceptor;
use crate::frame::{read_frame, FrameCursor, DEFAULT_HANDSHAKE_MAX_FRAME_LEN, DEFAULT_MAX_FRAME_LEN, PREAMBLE_LEN};
use crate::proto::RpcResponseHeaderProto;
use crate::header::{
    error_frame, success_frame, AUTHORIZATION_FAILED_CALL_ID, NO_SUCH_METHOD_CLASS, NO_SUCH_PROTOCOL_CLASS,
    RPC_SERVER_EXCEPTION_CLASS,
};
use crate::proto::rpc_response_header_proto::{RpcErrorCodeProto, RpcStatusProto};

/// What a service call knows about its caller.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub peer: SocketAddr,
    /// `effectiveUser` from the connection context; on a Kerberos
    /// connection the principal's short name (`auth_to_local`).
    pub user: Option<String>,
    /// How the connection authenticated.
    pub authentication: Authentication,
    /// `realUser` from the connection context (proxy users).
    pub real_user: Option<String>,
    /// Identifier bytes of the token the connection authenticated with.
    pub token_identifier: Option<Vec<u8>>,
    pub call_id: i32,
    pub client_id: Vec<u8>,
    pub retry_count: i32,
}

/// A Java exception to send back: status ERROR with `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub class: String,
    pub message: String,
    pub detail: RpcErrorCodeProto,
}

impl RpcError {
    /// An exception thrown by the application (errorDetail ERROR_APPLICATION),
    /// e.g. `org.apache.hadoop.yarn.exceptions.ApplicationNotFoundException`.
    pub fn application(class: impl Into<String>, message: impl Into<String>) -> Self {
        RpcError { class: class.into(), message: message.into(), detail: RpcErrorCodeProto::ErrorApplication }
    }

    /// What a service answers for a method it does not implement.
    pub fn no_such_method(protocol: &str, method: &str) -> Self {
        RpcError {
            class: NO_SUCH_METHOD_CLASS.into(),
            message: format!("Unknown method {method} called on {protocol} protocol."),
            detail: RpcErrorCodeProto::ErrorNoSuchMethod,
        }
    }
}

/// A request message, or the RPC server error a client gets for one that
/// does not decode (`what` names the message type).
pub fn decode_request<M: prost::Message + Default>(what: &str, bytes: &[u8]) -> Result<M, RpcError> {
    M::decode(bytes).map_err(|e| RpcError {
        class: RPC_SERVER_EXCEPTION_CLASS.into(),
        message: format!("cannot decode {what}: {e}"),
        detail: RpcErrorCodeProto::ErrorRpcServer,
    })
}

/// One Hadoop protocol's implementation.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    async fn call(&self, ctx: &CallContext, method: &str, request: &[u8]) -> Result<Vec<u8>, RpcError>;
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame once the connection has authenticated.
    pub max_frame_len: usize,
    /// Largest frame before that (SASL messages, connection context).
    pub handshake_max_frame_len: usize,
    /// Preamble, SASL and connection context must all arrive within this.
    pub handshake_timeout: Duration,
    /// A connection with no frame and no call in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections per listener and per peer address.
    pub connections: ConnectionLimits,
    pub auth: AuthPolicy,
    /// Calls one connection may have in flight before we stop reading it.
    pub max_in_flight_per_connection: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            handshake_max_frame_len: DEFAULT_HANDSHAKE_MAX_FRAME_LEN,
            handshake_timeout: Duration::from_secs(10),
            // Hadoop clients close their own connections after 10 s without
            // calls and ping every minute while a call is out.
            idle_timeout: Duration::from_secs(60),
            connections: ConnectionLimits::DEFAULT,
            auth: AuthPolicy::SimpleAllowed,
            max_in_flight_per_connection: 256,
        }
    }
}

pub struct Server {
    config: ServerConfig,
    services: HashMap<String, Arc<dyn Service>>,
    /// The secret manager's lookup; None = the port has none (and so a
    /// SIMPLE-allowed port offers only SIMPLE, as Hadoop does).
    passwords: Option<Arc<PasswordLookup>>,
    /// With one, the port offers KERBEROS instead of SIMPLE.
    kerberos: Option<KerberosAcceptor>,
}

/// A running server; dropping it does not stop it, [`ServerHandle::shutdown`] does.
pub struct ServerHandle {
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// Stops accepting; open connections end with their tasks.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

enum Out {
    Frame(Vec<u8>),
    /// Write this frame, then close the socket.
    Last(Vec<u8>),
}

impl Server {
    pub fn new(config: ServerConfig) -> Self {
        Server { config, services: HashMap::new(), passwords: None, kerberos: None }
    }

    pub fn register(&mut self, protocol: &str, service: Arc<dyn Service>) -> &mut Self {
        self.services.insert(protocol.to_string(), service);
        self
    }

    /// How token passwords are found (a secret manager lookup). With one,
    /// SASL NEGOTIATE offers TOKEN; without one a SIMPLE-allowed port offers
    /// only SIMPLE and a token-required port rejects every token.
    pub fn set_token_passwords(&mut self, lookup: Arc<PasswordLookup>) -> &mut Self {
        self.passwords = Some(lookup);
        self
    }

    /// Kerberos on this port (`hadoop.security.authentication=kerberos`):
    /// SASL offers KERBEROS/GSSAPI and SIMPLE is refused.
    pub fn set_kerberos(&mut self, acceptor: KerberosAcceptor) -> &mut Self {
        self.kerberos = Some(acceptor);
        self
    }

    /// Serves on `listener` in a background task.
    pub fn spawn(self, listener: TcpListener) -> std::io::Result<ServerHandle> {
        let local_addr = listener.local_addr()?;
        let mut listener = AdmittingListener::new(listener, self.config.connections, "hadoop ipc");
        let server = Arc::new(self);
        let task = tokio::spawn(async move {
            info!(%local_addr, "Hadoop IPC server listening");
            loop {
                // Errors (EMFILE) are backed off inside, logged once a run.
                let (stream, peer) = listener.accept().await;
                let server = server.clone();
                let span = tracing::info_span!("ipc_connection", %peer);
                tokio::spawn(server.serve_connection(stream, peer).instrument(span));
            }
        });
        Ok(ServerHandle { local_addr, task })
    }

    async fn serve_connection(self: Arc<Self>, stream: Admitted<TcpStream>, peer: SocketAddr) {
        let _ = stream.get_ref().set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let idle = self.config.idle_timeout;
        let handshake_ends = tokio::time::Instant::now() + self.config.handshake_timeout;
        let mut preamble = [0u8; PREAMBLE_LEN];
        let first_deadline = handshake_ends.min(tokio::time::Instant::now() + idle);
        match tokio::time::timeout_at(first_deadline, rd.read_exact(&mut preamble)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "connection closed before a full preamble");
                return;
            }
            Err(_) => {
                debug!("no preamble within the handshake timeout");
                return;
            }
        }
        let mut nonce = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
        let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
        let methods = self.config.auth.methods(self.passwords.is_some());
        let mut conn = match Connection::start_with(&preamble, methods, self.kerberos.clone(), nonce) {
            Ok(c) => c,
            Err((e, frame)) => {
                if let Some(suppressed) = AUTH_FAILURES.admit_now() {
                    warn!(error = %e, suppressed, "rejecting connection");
                }
                if let Some(f) = frame {
                    let _ = wr.write_all(&f).await;
                }
                let _ = wr.shutdown().await;
                return;
            }
        };

        let (tx, mut rx) = mpsc::channel::<Out>(64);
        let writer = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let (bytes, last) = match out {
                    Out::Frame(b) => (b, false),
                    Out::Last(b) => (b, true),
                };
                if let Err(e) = wr.write_all(&bytes).await {
                    debug!(error = %e, "write failed; dropping connection");
                    break;
                }
                if last {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });

        let limit = self.config.max_in_flight_per_connection.max(1);
        let in_flight = Arc::new(Semaphore::new(limit));
        loop {
            let established = conn.is_established();
            let idle_ends = tokio::time::Instant::now() + idle;
            let (deadline, max) = if established {
                (idle_ends, self.config.max_frame_len)
            } else {
                (handshake_ends.min(idle_ends), self.config.handshake_max_frame_len.min(self.config.max_frame_len))
            };
            let frame = match tokio::time::timeout_at(deadline, read_frame(&mut rd, max)).await {
                Err(_) if !established => {
                    debug!(timeout_secs = self.config.handshake_timeout.as_secs_f64(), "closing a connection that did not finish its handshake in time");
                    break;
                }
                Err(_) if in_flight.available_permits() < limit => continue,
                Err(_) => {
                    info!(idle_secs = idle.as_secs_f64(), "closing idle connection");
                    break;
                }
                Ok(Ok(Some(f))) => f,
                Ok(Ok(None)) => {
                    debug!("peer closed the connection");
                    break;
                }
                Ok(Err(e @ Error::FrameTooLarge { .. })) => {
                    // Before authentication this is what a flood looks like: not worth a warning each.
                    let e = if established { e.to_string() } else { format!("{e} before authentication") };
                    if established {
                        warn!(error = %e, "rejecting oversized frame");
                    } else {
                        debug!(error = %e, "rejecting oversized frame");
                    }
                    let f = error_frame(
                        AUTHORIZATION_FAILED_CALL_ID,
                        b"",
                        RpcStatusProto::Fatal,
                        RpcErrorCodeProto::FatalInvalidRpcHeader,
                        RPC_SERVER_EXCEPTION_CLASS,
                        &e,
                    );
                    let _ = tx.send(Out::Last(f)).await;
                    break;
                }
                Ok(Err(e)) => {
                    debug!(error = %e, "read failed");
                    break;
                }
            };
            let no_tokens = |_: &[u8]| None;
            let passwords: &PasswordLookup = match &self.passwords {
                Some(p) => p.as_ref(),
                None => &no_tokens,
            };
            match conn.on_frame(&frame, passwords) {
                Step::Nothing => {}
                Step::Reply(f) => {
                    if tx.send(Out::Frame(f)).await.is_err() {
                        break;
                    }
                }
                Step::Close(f) => {
                    if let Some(f) = f {
                        // The reply's own words: for a refused login (a bad
                        // ticket, an unmapped principal) the reason is here.
                        let reason = f
                            .get(4..)
                            .and_then(|body| FrameCursor::new(body).decode::<RpcResponseHeaderProto>("response header").ok())
                            .and_then(|h| h.error_msg)
                            .unwrap_or_default();
                        if let Some(suppressed) = AUTH_FAILURES.admit_now() {
                            warn!(%reason, suppressed, "closing connection after a FATAL reply");
                        }
                        let _ = tx.send(Out::Last(f)).await;
                    }
                    break;
                }
                Step::Dispatch(call) => {
                    if let (Authentication::Kerberos { principal }, 0) = (conn.authentication(), call.call_id) {
                        debug!(%principal, user = conn.call_user().as_deref().unwrap_or(""), "Kerberos client's first call");
                    }
                    let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
                    let ctx = CallContext {
                        peer,
                        user: conn.call_user(),
                        authentication: conn.authentication().clone(),
                        real_user: conn.user().and_then(|u| u.real_user.clone()),
                        token_identifier: conn.token_identifier().map(<[u8]>::to_vec),
                        call_id: call.call_id,
                        client_id: call.client_id.clone(),
                        retry_count: call.retry_count,
                    };
                    let server = self.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let frame = server.run_call(ctx, call).await;
                        let _ = tx.send(Out::Frame(frame)).await;
                        drop(permit);
                    });
                }
            }
        }
        drop(tx);
        let _ = writer.await;
    }

    /// Runs one call to completion and encodes its response frame. A
    /// panicking service becomes ERROR_RPC_SERVER, not a hung client.
    async fn run_call(&self, ctx: CallContext, call: IncomingCall) -> Vec<u8> {
        let IncomingCall { call_id, client_id, protocol, method, request, .. } = call;
        let Some(service) = self.services.get(&protocol).cloned() else {
            warn!(call_id, protocol, method, "unknown protocol");
            calls::note("-", "-", calls::NO_SUCH_PROTOCOL);
            return error_frame(
                call_id,
                &client_id,
                RpcStatusProto::Error,
                RpcErrorCodeProto::ErrorNoSuchProtocol,
                NO_SUCH_PROTOCOL_CLASS,
                &format!("Unknown protocol: {protocol}"),
            );
        };
        debug!(call_id, protocol, method, user = ctx.user.as_deref().unwrap_or(""), "call");
        let m = method.clone();
        let joined = tokio::spawn(async move { service.call(&ctx, &m, &request).await }).await;
        match &joined {
            Ok(Ok(_)) => calls::note(&protocol, &method, calls::SUCCESS),
            // A method the service does not know is the client's word only:
            // it is not a label (clients could make up any number).
            Ok(Err(e)) if e.detail == RpcErrorCodeProto::ErrorNoSuchMethod => calls::note(&protocol, "-", calls::NO_SUCH_METHOD),
            Ok(Err(e)) if e.detail == RpcErrorCodeProto::ErrorApplication => calls::note(&protocol, &method, calls::ERROR),
            Ok(Err(_)) | Err(_) => calls::note(&protocol, &method, calls::SERVER_ERROR),
        }
        match joined {
            Ok(Ok(response)) => success_frame(call_id, &client_id, &response),
            Ok(Err(e)) => {
                debug!(call_id, protocol, method, class = e.class, "call failed");
                error_frame(call_id, &client_id, RpcStatusProto::Error, e.detail, &e.class, &e.message)
            }
            Err(e) => {
                warn!(call_id, protocol, method, error = %e, "service task failed");
                error_frame(
                    call_id,
                    &client_id,
                    RpcStatusProto::Error,
                    RpcErrorCodeProto::ErrorRpcServer,
                    RPC_SERVER_EXCEPTION_CLASS,
                    &format!("{protocol}.{method} failed inside the server"),
                )
            }
        }
    }
}

/// Calls served, by protocol, method and result, for the shim's metrics.
/// Protocols are the server's own; methods are counted under their name
/// only once a service answered them (an unknown method counts as `-`),
/// and at most [`calls::MAX_SERIES`] series are kept.
pub mod calls {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    pub const SUCCESS: &str = "success";
    /// The service threw an application exception (ERROR_APPLICATION).
    pub const ERROR: &str = "error";
    /// The service failed inside the server, or refused the request's bytes.
    pub const SERVER_ERROR: &str = "server_error";
    pub const NO_SUCH_METHOD: &str = "no_such_method";
    pub const NO_SUCH_PROTOCOL: &str = "no_such_protocol";
    pub const MAX_SERIES: usize = 1000;

    type Key = (String, String, &'static str);
    static CALLS: Mutex<BTreeMap<Key, u64>> = Mutex::new(BTreeMap::new());

    pub(crate) fn note(protocol: &str, method: &str, result: &'static str) {
        let mut calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
        let key = (protocol.to_owned(), method.to_owned(), result);
        if let Some(n) = calls.get_mut(&key) {
            *n += 1;
        } else if calls.len() < MAX_SERIES {
            calls.insert(key, 1);
        }
    }

    /// Every (protocol, method, result) counted so far in this process.
    pub fn counts() -> Vec<(Key, u64)> {
        CALLS.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}
