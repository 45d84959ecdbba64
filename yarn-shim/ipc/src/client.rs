//! A Hadoop IPC v9 client: preamble, optional SASL (TOKEN/DIGEST-MD5, or
//! SIMPLE when the server offers it and there is no token for it),
//! connection context, then pipelined calls. Responses are matched to calls
//! by call id by one reader task, so many calls may be outstanding on one
//! connection. Used by tests and, later, by shim parts that call out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::connection::{SIMPLE_METHOD, TOKEN_METHOD};
use crate::frame::{encode_frame, read_frame, AuthProtocol, FrameCursor, Preamble, DEFAULT_MAX_FRAME_LEN};
use crate::header::{
    call_frame, request_header, response_call_id, CONNECTION_CONTEXT_CALL_ID, PING_CALL_ID, SASL_CALL_ID,
};
use crate::proto::rpc_response_header_proto::RpcStatusProto;
use crate::proto::rpc_sasl_proto::{SaslAuth, SaslState};
use crate::proto::{IpcConnectionContextProto, RpcResponseHeaderProto, RpcSaslProto, TokenProto, UserInformationProto};
use crate::security::digest_md5::{DigestMd5Client, MECHANISM};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `effectiveUser` in the connection context.
    pub user: String,
    /// The protocol named in the connection context.
    pub protocol: String,
    /// The token for this server (SASL TOKEN/DIGEST-MD5); None = SIMPLE
    /// (see [`Client::connect_holding_other_tokens`]).
    pub token: Option<TokenProto>,
    pub max_frame_len: usize,
}

impl ClientConfig {
    pub fn simple(user: &str, protocol: &str) -> Self {
        ClientConfig {
            user: user.into(),
            protocol: protocol.into(),
            token: None,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// What Hadoop's `SaslRpcClient.selectSaslClient` picks from a NEGOTIATE:
/// the first auth it knows whose mechanism matches and for which it has
/// credentials (TOKEN needs a token; SIMPLE needs nothing).
fn select_auth<'a>(auths: &'a [SaslAuth], token: Option<&TokenProto>) -> Result<&'a SaslAuth> {
    auths
        .iter()
        .find(|a| match a.method.as_str() {
            TOKEN_METHOD => a.mechanism == MECHANISM && token.is_some(),
            SIMPLE_METHOD => a.mechanism.is_empty(),
            _ => false,
        })
        .ok_or_else(|| {
            let methods: Vec<&str> = auths.iter().map(|a| a.method.as_str()).collect();
            Error::Auth(format!("Client cannot authenticate via:[{}]", methods.join(", ")))
        })
}

type Pending = Arc<Mutex<Option<HashMap<i32, oneshot::Sender<Result<Vec<u8>>>>>>>;

pub struct Client {
    writer: AsyncMutex<OwnedWriteHalf>,
    pending: Pending,
    next_call_id: AtomicI32,
    client_id: [u8; 16],
    reader: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn remote(h: &RpcResponseHeaderProto) -> Error {
    Error::Remote {
        class: h.exception_class_name.clone().unwrap_or_default(),
        message: h.error_msg.clone().unwrap_or_default(),
        fatal: h.status() == RpcStatusProto::Fatal,
    }
}

async fn read_sasl_reply(rd: &mut OwnedReadHalf, max: usize) -> Result<RpcSaslProto> {
    let frame = read_frame(rd, max).await?.ok_or(Error::Closed(" during SASL"))?;
    let mut c = FrameCursor::new(&frame);
    let h: RpcResponseHeaderProto = c.decode("RPC response header")?;
    if h.status() != RpcStatusProto::Success {
        return Err(remote(&h));
    }
    if response_call_id(&h) != SASL_CALL_ID {
        return Err(Error::Protocol(format!("expected a SASL reply (call id -33), got call id {}", response_call_id(&h))));
    }
    c.decode("SASL message")
}

/// SaslRpcClient's exchange: NEGOTIATE; a SUCCESS reply means SIMPLE;
/// otherwise INITIATE with the selected auth (SIMPLE: no reply awaited;
/// TOKEN: DIGEST-MD5 and the server's rspauth checked).
async fn sasl_connect(rd: &mut OwnedReadHalf, wr: &mut OwnedWriteHalf, token: Option<&TokenProto>, max: usize) -> Result<()> {
    let sasl_header = request_header(SASL_CALL_ID, b"", -1);
    let negotiate = RpcSaslProto { state: SaslState::Negotiate as i32, ..Default::default() };
    let frame = encode_frame(&[&sasl_header, &negotiate]);
    wr.write_all(&frame).await?;
    let offer = read_sasl_reply(rd, max).await?;
    match offer.state() {
        SaslState::Success => return Ok(()),
        SaslState::Negotiate => {}
        other => return Err(Error::Auth(format!("server answered NEGOTIATE with SASL {}", other.as_str_name()))),
    }
    let chosen = select_auth(&offer.auths, token)?;
    let (Some(token), TOKEN_METHOD) = (token, chosen.method.as_str()) else {
        let initiate = RpcSaslProto {
            version: None,
            state: SaslState::Initiate as i32,
            token: Some(Vec::new()),
            auths: vec![chosen.clone()],
        };
        let frame = encode_frame(&[&sasl_header, &initiate]);
        wr.write_all(&frame).await?;
        return Ok(());
    };
    let mut cnonce = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut cnonce[..]);
    let mut digest =
        DigestMd5Client::new(&token.identifier, &token.password, base64::engine::general_purpose::STANDARD.encode(cnonce));
    let response = digest.respond(chosen.challenge())?;
    let initiate = RpcSaslProto {
        version: None,
        state: SaslState::Initiate as i32,
        token: Some(response),
        auths: vec![SaslAuth { challenge: None, ..chosen.clone() }],
    };
    let frame = encode_frame(&[&sasl_header, &initiate]);
    wr.write_all(&frame).await?;
    let done = read_sasl_reply(rd, max).await?;
    if done.state() != SaslState::Success {
        return Err(Error::Auth(format!("server answered SASL {} instead of SUCCESS", done.state().as_str_name())));
    }
    digest.verify_server(done.token())
}

impl Client {
    /// Connects; SASL when `config.token` is set, SIMPLE otherwise.
    pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Client> {
        let sasl = config.token.is_some();
        Client::open(addr, config, sasl).await
    }

    /// Connects as a Hadoop client whose user holds tokens, maybe none for
    /// this server (a process inside a container): it always speaks SASL,
    /// and the server's NEGOTIATE decides (SIMPLE when it offers it and
    /// `config.token` is None).
    pub async fn connect_holding_other_tokens(addr: SocketAddr, config: ClientConfig) -> Result<Client> {
        Client::open(addr, config, true).await
    }

    async fn open(addr: SocketAddr, config: ClientConfig, sasl: bool) -> Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let mut client_id = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut client_id[..]);
        let auth = if sasl { AuthProtocol::Sasl } else { AuthProtocol::None };
        wr.write_all(&Preamble { service_class: 0, auth }.encode()).await?;
        if sasl {
            sasl_connect(&mut rd, &mut wr, config.token.as_ref(), config.max_frame_len).await?;
        }

        let context = IpcConnectionContextProto {
            user_info: Some(UserInformationProto { effective_user: Some(config.user.clone()), real_user: None }),
            protocol: Some(config.protocol.clone()),
        };
        let frame = encode_frame(&[&request_header(CONNECTION_CONTEXT_CALL_ID, &client_id, -1), &context]);
        wr.write_all(&frame).await?;

        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_responses(rd, pending.clone(), config.max_frame_len));
        Ok(Client { writer: AsyncMutex::new(wr), pending, next_call_id: AtomicI32::new(0), client_id, reader })
    }

    pub fn client_id(&self) -> &[u8; 16] {
        &self.client_id
    }

    /// Calls `method` of `protocol`; the error is [`Error::Remote`] when the
    /// server threw.
    pub async fn call(&self, protocol: &str, method: &str, request: &[u8]) -> Result<Vec<u8>> {
        let call_id = self.next_call_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match p.as_mut() {
                Some(map) => map.insert(call_id, tx),
                None => return Err(Error::Closed("")),
            };
        }
        let frame = call_frame(&request_header(call_id, &self.client_id, 0), protocol, method, request);
        self.writer.lock().await.write_all(&frame).await?;
        rx.await.map_err(|_| Error::Closed(" before the response arrived"))?
    }

    /// [`Client::call`] with protobuf messages on both sides.
    pub async fn call_message<Q: prost::Message, A: prost::Message + Default>(&self, protocol: &str, method: &str, request: &Q) -> Result<A> {
        let bytes = self.call(protocol, method, &request.encode_to_vec()).await?;
        A::decode(bytes.as_slice()).map_err(|source| Error::Decode { what: "response payload", source })
    }

    /// Sends a ping (no reply is expected).
    pub async fn ping(&self) -> Result<()> {
        let frame = encode_frame(&[&request_header(PING_CALL_ID, &self.client_id, -1)]);
        self.writer.lock().await.write_all(&frame).await?;
        Ok(())
    }
}

async fn read_responses(mut rd: OwnedReadHalf, pending: Pending, max: usize) {
    let fail_all = |err: &dyn Fn() -> Error| {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = p.take() {
            for (_, tx) in map {
                let _ = tx.send(Err(err()));
            }
        }
    };
    loop {
        let frame = match read_frame(&mut rd, max).await {
            Ok(Some(f)) => f,
            Ok(None) => return fail_all(&|| Error::Closed("")),
            Err(e) => {
                let msg = e.to_string();
                return fail_all(&|| Error::Protocol(format!("reading a response: {msg}")));
            }
        };
        let mut c = FrameCursor::new(&frame);
        let h: RpcResponseHeaderProto = match c.decode("RPC response header") {
            Ok(h) => h,
            Err(e) => {
                let msg = e.to_string();
                return fail_all(&|| Error::Protocol(msg.clone()));
            }
        };
        if h.status() == RpcStatusProto::Fatal {
            return fail_all(&|| remote(&h));
        }
        let result = if h.status() == RpcStatusProto::Success {
            if c.is_empty() {
                Ok(Vec::new())
            } else {
                c.next_delimited("response payload").map(<[u8]>::to_vec)
            }
        } else {
            Err(remote(&h))
        };
        let tx = pending.lock().unwrap_or_else(|e| e.into_inner()).as_mut().and_then(|m| m.remove(&response_call_id(&h)));
        if let Some(tx) = tx {
            let _ = tx.send(result);
        }
    }
}
