//! The server side of one IPC connection as a synchronous state machine:
//! bytes of one frame in, one [`Step`] out. No sockets, clocks or
//! randomness (the SASL nonce is handed in), so every protocol rule is
//! tested here without a network, and `fuzz/` drives it with garbage.
//!
//! Order enforced: preamble → SASL on call id -33 (when the preamble asked
//! for it, or the port requires tokens) → exactly one connection context on
//! call id -3 → calls with ids ≥ 0. Pings (-4) are accepted at any point and
//! never answered. Any violation yields a FATAL frame and the connection is
//! closed; a closed state machine stays closed.
//!
//! SASL negotiation is Hadoop's `Server`'s: the port's [`AuthMethods`] are
//! TOKEN (where a secret manager exists), then KERBEROS (when the port has
//! a [`KerberosAcceptor`]: `hadoop.security.authentication=kerberos`) or
//! else SIMPLE (unless tokens are required). A SIMPLE-only port answers
//! NEGOTIATE with SUCCESS; otherwise the reply lists the auths and a client
//! without a token for this port picks SIMPLE in its INITIATE and gets no
//! reply, or KERBEROS and runs GSSAPI (RFC 4752) in CHALLENGE/RESPONSE
//! rounds. A Kerberos-authenticated connection's user is its principal's
//! short name (`hadoop.security.auth_to_local`); the connection context may
//! only name that principal (Hadoop would treat another name as a proxy
//! user, and no proxy users are configured).

use crate::error::Error;
use crate::frame::{encode_frame, AuthProtocol, FrameCursor, Preamble};
use crate::header::{
    error_frame, response_header, ACCESS_CONTROL_EXCEPTION_CLASS, SASL_EXCEPTION_CLASS, AUTHORIZATION_FAILED_CALL_ID,
    CONNECTION_CONTEXT_CALL_ID, PING_CALL_ID, RPC_SERVER_EXCEPTION_CLASS, SASL_CALL_ID,
    VERSION_MISMATCH_CLASS,
};
use crate::proto::rpc_request_header_proto::OperationProto;
use crate::proto::rpc_response_header_proto::{RpcErrorCodeProto, RpcStatusProto};
use crate::proto::rpc_sasl_proto::{SaslAuth, SaslState};
use crate::proto::{
    IpcConnectionContextProto, RequestHeaderProto, RpcKindProto, RpcRequestHeaderProto, RpcSaslProto,
    UserInformationProto,
};
use crate::security::digest_md5::{DigestMd5Server, MECHANISM, REALM};
use crate::security::sasl_gssapi::{self, GssapiServer, KerberosAcceptor, Outcome};

/// SASL method name for token authentication.
pub const TOKEN_METHOD: &str = "TOKEN";
/// SASL method name for SIMPLE (no SASL mechanism; its mechanism name is "").
pub const SIMPLE_METHOD: &str = "SIMPLE";
/// SASL method name for Kerberos (mechanism GSSAPI).
pub const KERBEROS_METHOD: &str = sasl_gssapi::METHOD;
/// What Hadoop's server throws for a principal its rules cannot map.
const ILLEGAL_ARGUMENT_CLASS: &str = "java.lang.IllegalArgumentException";
/// What Hadoop's server throws for an unauthorized proxy user.
const AUTHORIZATION_EXCEPTION_CLASS: &str = "org.apache.hadoop.security.authorize.AuthorizationException";

/// How a connection authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// SIMPLE: the user is whatever the connection context claims.
    Simple,
    /// A token (DIGEST-MD5): the token's identifier says who.
    Token,
    /// Kerberos (GSSAPI): this principal, mapped to the call's user by
    /// `hadoop.security.auth_to_local`.
    Kerberos { principal: String },
}

/// Looks up a token's password by its identifier bytes; None = reject.
pub type PasswordLookup = dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync;

/// Whether a port lets clients in without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    /// SIMPLE clients (spark-submit, yarn CLI) need no SASL; SASL clients
    /// authenticate with a token when the port has a secret manager, or
    /// fall back to SIMPLE (a container holding tokens for other services).
    SimpleAllowed,
    /// Every client must authenticate with a token (the AMRM and NM ports).
    TokenRequired,
}

impl AuthPolicy {
    /// The methods a port accepts, as Hadoop's `Server.getAuthMethods`
    /// computes them with security off: TOKEN first when a secret manager
    /// exists, then SIMPLE unless the port requires tokens.
    pub fn methods(self, has_secret_manager: bool) -> AuthMethods {
        match self {
            AuthPolicy::SimpleAllowed => AuthMethods { token: has_secret_manager, kerberos: false, simple: true },
            AuthPolicy::TokenRequired => AuthMethods { token: true, kerberos: false, simple: false },
        }
    }
}

/// The authentication methods one port accepts (Hadoop's
/// `enabledAuthMethods`), in Hadoop's order: TOKEN, KERBEROS, SIMPLE. At
/// least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthMethods {
    token: bool,
    kerberos: bool,
    simple: bool,
}

/// A policy as if the port had a secret manager (what the AMRM and NM
/// ports have, and what the fuzz targets drive).
impl From<AuthPolicy> for AuthMethods {
    fn from(policy: AuthPolicy) -> AuthMethods {
        policy.methods(true)
    }
}

impl AuthMethods {
    /// With Kerberos on (Hadoop's security on): KERBEROS replaces SIMPLE,
    /// so SIMPLE clients are refused; TOKEN stays as the policy has it.
    pub fn with_kerberos(self) -> AuthMethods {
        AuthMethods { kerberos: true, simple: false, ..self }
    }

    /// The auths offered in a NEGOTIATE reply, without the challenge, as
    /// Hadoop's `buildNegotiateResponse` builds them: TOKEN/DIGEST-MD5 with
    /// protocol "" and server id "default"; KERBEROS/GSSAPI with the
    /// protocol and server id of the service principal; SIMPLE with
    /// mechanism "" and neither protocol nor server id.
    fn offered(self, kerberos: Option<&KerberosAcceptor>) -> Vec<SaslAuth> {
        let mut auths = Vec::new();
        if self.token {
            auths.push(SaslAuth {
                method: TOKEN_METHOD.into(),
                mechanism: MECHANISM.into(),
                protocol: Some(String::new()),
                server_id: Some(REALM.into()),
                challenge: None,
            });
        }
        if let Some(k) = kerberos.filter(|_| self.kerberos) {
            auths.push(SaslAuth {
                method: KERBEROS_METHOD.into(),
                mechanism: sasl_gssapi::MECHANISM.into(),
                protocol: Some(k.protocol().into()),
                server_id: Some(k.server_id().into()),
                challenge: None,
            });
        }
        if self.simple {
            auths.push(SaslAuth { method: SIMPLE_METHOD.into(), mechanism: String::new(), protocol: None, server_id: None, challenge: None });
        }
        auths
    }

    /// Java's `List.toString` of the enabled methods, as Hadoop's messages print it.
    fn list(self) -> String {
        let names: Vec<&str> = [(self.token, TOKEN_METHOD), (self.kerberos, KERBEROS_METHOD), (self.simple, SIMPLE_METHOD)]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        format!("[{}]", names.join(", "))
    }
}

/// A call ready for a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingCall {
    pub call_id: i32,
    pub client_id: Vec<u8>,
    pub retry_count: i32,
    pub protocol: String,
    pub method: String,
    pub request: Vec<u8>,
}

/// What the shell must do after a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send (connection context, ping).
    Nothing,
    /// Send this frame and keep reading (SASL replies).
    Reply(Vec<u8>),
    /// Hand the call to its service.
    Dispatch(IncomingCall),
    /// Send the frame, if any, then close the connection.
    Close(Option<Vec<u8>>),
}

#[derive(Debug)]
enum State {
    AwaitSaslNegotiate,
    /// The DIGEST-MD5 server whose challenge went out with NEGOTIATE, if
    /// the port offers TOKEN.
    AwaitSaslInitiate(Option<DigestMd5Server>),
    /// GSSAPI rounds: the client's RESPONSEs to our CHALLENGEs.
    AwaitSaslResponse(GssapiServer),
    AwaitContext,
    Ready,
    Closed,
}

#[derive(Debug)]
pub struct Connection {
    state: State,
    methods: AuthMethods,
    kerberos: Option<KerberosAcceptor>,
    authentication: Authentication,
    /// The short name of the Kerberos principal, once authenticated.
    kerberos_user: Option<String>,
    user: Option<UserInformationProto>,
    context_protocol: Option<String>,
    token_identifier: Option<Vec<u8>>,
    nonce: Option<String>,
}

fn fatal(call_id: i32, client_id: &[u8], detail: RpcErrorCodeProto, class: &str, message: &str) -> Vec<u8> {
    error_frame(call_id, client_id, RpcStatusProto::Fatal, detail, class, message)
}

impl Connection {
    /// Checks the preamble. On failure the error is returned with the FATAL
    /// frame to send before closing, if the client can understand one.
    /// `methods` is an [`AuthMethods`] or an [`AuthPolicy`] (read as
    /// having a secret manager).
    pub fn start(
        preamble: &[u8],
        methods: impl Into<AuthMethods>,
        nonce: String,
    ) -> Result<Connection, (Error, Option<Vec<u8>>)> {
        Connection::start_with(preamble, methods.into(), None, nonce)
    }

    /// [`Connection::start`] on a port with Kerberos: `methods` gain
    /// KERBEROS (and lose SIMPLE) when `kerberos` is given.
    pub fn start_with(
        preamble: &[u8],
        methods: AuthMethods,
        kerberos: Option<KerberosAcceptor>,
        nonce: String,
    ) -> Result<Connection, (Error, Option<Vec<u8>>)> {
        let methods = if kerberos.is_some() { methods.with_kerberos() } else { methods };
        let p = match Preamble::parse(preamble) {
            Ok(p) => p,
            Err(e @ Error::UnsupportedVersion(_)) => {
                let f = fatal(
                    AUTHORIZATION_FAILED_CALL_ID,
                    b"",
                    RpcErrorCodeProto::FatalVersionMismatch,
                    VERSION_MISMATCH_CLASS,
                    &e.to_string(),
                );
                return Err((e, Some(f)));
            }
            Err(e) => return Err((e, None)),
        };
        let state = match p.auth {
            AuthProtocol::None if !methods.simple => {
                let msg = format!("SIMPLE authentication is not enabled.  Available:{}", methods.list());
                let f = fatal(
                    AUTHORIZATION_FAILED_CALL_ID,
                    b"",
                    RpcErrorCodeProto::FatalUnauthorized,
                    ACCESS_CONTROL_EXCEPTION_CLASS,
                    &msg,
                );
                return Err((Error::Auth(msg), Some(f)));
            }
            AuthProtocol::None => State::AwaitContext,
            AuthProtocol::Sasl => State::AwaitSaslNegotiate,
        };
        Ok(Connection {
            state,
            methods,
            kerberos,
            authentication: Authentication::Simple,
            kerberos_user: None,
            user: None,
            context_protocol: None,
            token_identifier: None,
            nonce: Some(nonce),
        })
    }

    /// The user from the connection context, once it arrived.
    pub fn user(&self) -> Option<&UserInformationProto> {
        self.user.as_ref()
    }

    /// The user calls run as: the Kerberos principal's short name on a
    /// Kerberos connection, else the connection context's effective user.
    pub fn call_user(&self) -> Option<String> {
        self.kerberos_user.clone().or_else(|| self.user.as_ref().and_then(|u| u.effective_user.clone()))
    }

    /// How the connection authenticated.
    pub fn authentication(&self) -> &Authentication {
        &self.authentication
    }

    /// The protocol named in the connection context.
    pub fn context_protocol(&self) -> Option<&str> {
        self.context_protocol.as_deref()
    }

    /// The identifier of the token the client authenticated with.
    pub fn token_identifier(&self) -> Option<&[u8]> {
        self.token_identifier.as_deref()
    }

    /// Past the handshake: authenticated as the port demands and the
    /// connection context read, so calls (and big frames) are legal.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    fn close(&mut self, frame: Vec<u8>) -> Step {
        self.state = State::Closed;
        Step::Close(Some(frame))
    }

    fn fatal(&mut self, call_id: i32, client_id: &[u8], detail: RpcErrorCodeProto, message: &str) -> Step {
        let f = fatal(call_id, client_id, detail, RPC_SERVER_EXCEPTION_CLASS, message);
        self.close(f)
    }

    fn unauthorized(&mut self, message: &str) -> Step {
        let f = fatal(
            AUTHORIZATION_FAILED_CALL_ID,
            b"",
            RpcErrorCodeProto::FatalUnauthorized,
            ACCESS_CONTROL_EXCEPTION_CLASS,
            message,
        );
        self.close(f)
    }

    /// Handles one frame body (without its length prefix).
    pub fn on_frame(&mut self, body: &[u8], passwords: &PasswordLookup) -> Step {
        if self.is_closed() {
            return Step::Close(None);
        }
        let mut cursor = FrameCursor::new(body);
        let header: RpcRequestHeaderProto = match cursor.decode("RPC request header") {
            Ok(h) => h,
            Err(e) => {
                return self.fatal(
                    AUTHORIZATION_FAILED_CALL_ID,
                    b"",
                    RpcErrorCodeProto::FatalInvalidRpcHeader,
                    &e.to_string(),
                )
            }
        };
        let call_id = header.call_id;
        let client_id = header.client_id.clone();
        if header.rpc_kind.is_some() && header.rpc_kind() != RpcKindProto::RpcProtocolBuffer {
            let msg = format!(
                "rpc kind {} is not supported; this server speaks protobuf RPC (2) only",
                header.rpc_kind.unwrap_or_default()
            );
            return self.fatal(call_id, &client_id, RpcErrorCodeProto::FatalInvalidRpcHeader, &msg);
        }
        match header.rpc_op.map(|_| header.rpc_op()) {
            Some(OperationProto::RpcCloseConnection) => {
                self.state = State::Closed;
                return Step::Close(None);
            }
            Some(OperationProto::RpcContinuationPacket) => {
                return self.fatal(
                    call_id,
                    &client_id,
                    RpcErrorCodeProto::FatalInvalidRpcHeader,
                    "continuation packets are not supported",
                )
            }
            _ => {}
        }
        if call_id == PING_CALL_ID {
            return Step::Nothing;
        }
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Closed => Step::Close(None),
            State::AwaitSaslNegotiate => self.on_sasl_negotiate(call_id, cursor),
            State::AwaitSaslInitiate(server) => self.on_sasl_initiate(call_id, cursor, server, passwords),
            State::AwaitSaslResponse(server) => self.on_sasl_response(call_id, cursor, server),
            State::AwaitContext => self.on_context(call_id, &client_id, cursor),
            State::Ready => {
                self.state = State::Ready;
                self.on_call(header, cursor)
            }
        }
    }

    fn read_sasl(&mut self, call_id: i32, mut cursor: FrameCursor<'_>, expect: SaslState) -> Result<RpcSaslProto, Step> {
        if call_id != SASL_CALL_ID {
            return Err(self.unauthorized(&format!(
                "call id {call_id} before authentication finished; SASL (call id -33) must come first"
            )));
        }
        let msg: RpcSaslProto = match cursor.decode("SASL message") {
            Ok(m) => m,
            Err(e) => {
                return Err(self.fatal(
                    AUTHORIZATION_FAILED_CALL_ID,
                    b"",
                    RpcErrorCodeProto::FatalDeserializingRequest,
                    &e.to_string(),
                ))
            }
        };
        if msg.state != expect as i32 {
            return Err(self.unauthorized(&format!(
                "SASL message in state {} where {} was expected",
                SaslState::try_from(msg.state).map(|s| s.as_str_name().to_string()).unwrap_or_else(|_| msg.state.to_string()),
                expect.as_str_name()
            )));
        }
        Ok(msg)
    }

    /// Hadoop's `buildSaslNegotiateResponse`: a SIMPLE-only port answers
    /// SUCCESS (the client switches to SIMPLE); otherwise NEGOTIATE with the
    /// enabled auths, TOKEN first carrying the first DIGEST-MD5 challenge.
    fn on_sasl_negotiate(&mut self, call_id: i32, cursor: FrameCursor<'_>) -> Step {
        if let Err(step) = self.read_sasl(call_id, cursor, SaslState::Negotiate) {
            return step;
        }
        let h = response_header(SASL_CALL_ID, b"", RpcStatusProto::Success);
        if !self.methods.token && !self.methods.kerberos {
            self.state = State::AwaitContext;
            let reply = RpcSaslProto { version: None, state: SaslState::Success as i32, token: None, auths: vec![] };
            return Step::Reply(encode_frame(&[&h, &reply]));
        }
        let server = self.methods.token.then(|| DigestMd5Server::new(self.nonce.take().unwrap_or_default()));
        let mut auths = self.methods.offered(self.kerberos.as_ref());
        if let (Some(token), Some(server)) = (auths.first_mut(), &server) {
            token.challenge = Some(server.challenge());
        }
        let reply = RpcSaslProto { version: None, state: SaslState::Negotiate as i32, token: None, auths };
        self.state = State::AwaitSaslInitiate(server);
        Step::Reply(encode_frame(&[&h, &reply]))
    }

    /// The client's choice must be one of the offered auths exactly (as
    /// Hadoop compares them); SIMPLE ends SASL with no reply, TOKEN runs
    /// DIGEST-MD5.
    fn on_sasl_initiate(
        &mut self,
        call_id: i32,
        cursor: FrameCursor<'_>,
        server: Option<DigestMd5Server>,
        passwords: &PasswordLookup,
    ) -> Step {
        let msg = match self.read_sasl(call_id, cursor, SaslState::Initiate) {
            Ok(m) => m,
            Err(step) => return step,
        };
        let [chosen] = msg.auths.as_slice() else {
            let f = fatal(
                AUTHORIZATION_FAILED_CALL_ID,
                b"",
                RpcErrorCodeProto::FatalUnauthorized,
                SASL_EXCEPTION_CLASS,
                "Client mechanism is malformed",
            );
            return self.close(f);
        };
        if !self.methods.offered(self.kerberos.as_ref()).contains(chosen) {
            return self.unauthorized(&format!(
                "{} authentication is not enabled.  Available:{}",
                chosen.method,
                self.methods.list()
            ));
        }
        if chosen.method == SIMPLE_METHOD {
            self.state = State::AwaitContext;
            return Step::Nothing;
        }
        let token = msg.token.unwrap_or_default();
        if chosen.method == KERBEROS_METHOD {
            let Some(kerberos) = &self.kerberos else { return self.unauthorized("KERBEROS authentication is not enabled") };
            return match kerberos.server() {
                Ok(gss) => self.gssapi_round(gss, &token),
                Err(e) => self.sasl_failed(&format!("GSS initiate failed: the server cannot accept Kerberos: {e}")),
            };
        }
        let Some(mut server) = server else { return self.unauthorized("TOKEN authentication is not enabled") };
        match server.respond(&token, passwords) {
            Ok(ok) => {
                self.authentication = Authentication::Token;
                self.token_identifier = Some(ok.identifier);
                self.state = State::AwaitContext;
                let reply = RpcSaslProto { version: None, state: SaslState::Success as i32, token: Some(ok.rspauth), auths: vec![] };
                let h = response_header(SASL_CALL_ID, b"", RpcStatusProto::Success);
                Step::Reply(encode_frame(&[&h, &reply]))
            }
            Err(e) => self.unauthorized(&e.to_string()),
        }
    }

    /// A RESPONSE in a GSSAPI exchange.
    fn on_sasl_response(&mut self, call_id: i32, cursor: FrameCursor<'_>, gss: GssapiServer) -> Step {
        let msg = match self.read_sasl(call_id, cursor, SaslState::Response) {
            Ok(m) => m,
            Err(step) => return step,
        };
        self.gssapi_round(gss, msg.token())
    }

    /// Feeds one client token to GSSAPI: a CHALLENGE to send, or SUCCESS
    /// with the principal mapped to a user (Hadoop's `createRemoteUser`
    /// fails the same way for a principal no rule maps).
    fn gssapi_round(&mut self, mut gss: GssapiServer, token: &[u8]) -> Step {
        let h = response_header(SASL_CALL_ID, b"", RpcStatusProto::Success);
        match gss.respond(token) {
            Ok(Outcome::Challenge(t)) => {
                self.state = State::AwaitSaslResponse(gss);
                let reply = RpcSaslProto { version: None, state: SaslState::Challenge as i32, token: Some(t), auths: vec![] };
                Step::Reply(encode_frame(&[&h, &reply]))
            }
            Ok(Outcome::Success(principal)) => {
                let short = match self.kerberos.as_ref().map(|k| k.rules().short_name(&principal)) {
                    Some(Ok(short)) => short,
                    Some(Err(e)) => {
                        let msg = format!("Illegal principal name {principal}: org.apache.hadoop.security.authentication.util.KerberosName$NoMatchingRule: {e}");
                        let f = fatal(AUTHORIZATION_FAILED_CALL_ID, b"", RpcErrorCodeProto::FatalUnauthorized, ILLEGAL_ARGUMENT_CLASS, &msg);
                        return self.close(f);
                    }
                    None => return self.unauthorized("KERBEROS authentication is not enabled"),
                };
                self.kerberos_user = Some(short);
                self.authentication = Authentication::Kerberos { principal };
                self.state = State::AwaitContext;
                let reply = RpcSaslProto { version: None, state: SaslState::Success as i32, token: None, auths: vec![] };
                Step::Reply(encode_frame(&[&h, &reply]))
            }
            Err(e) => self.sasl_failed(&e.0),
        }
    }

    /// A failed SASL exchange, as Hadoop reports one: FATAL_UNAUTHORIZED
    /// with `javax.security.sasl.SaslException`.
    fn sasl_failed(&mut self, message: &str) -> Step {
        let f = fatal(AUTHORIZATION_FAILED_CALL_ID, b"", RpcErrorCodeProto::FatalUnauthorized, SASL_EXCEPTION_CLASS, message);
        self.close(f)
    }

    fn on_context(&mut self, call_id: i32, client_id: &[u8], mut cursor: FrameCursor<'_>) -> Step {
        if call_id != CONNECTION_CONTEXT_CALL_ID {
            let msg = if call_id == SASL_CALL_ID {
                "SASL message after authentication finished (or without SASL in the preamble)".to_string()
            } else {
                format!("call id {call_id} before the connection context; connection context not established")
            };
            return self.fatal(call_id, client_id, RpcErrorCodeProto::FatalInvalidRpcHeader, &msg);
        }
        match cursor.decode::<IpcConnectionContextProto>("connection context") {
            Ok(ctx) => {
                // Hadoop: a context naming someone other than the Kerberos
                // principal asks to act as a proxy user.
                if let Authentication::Kerberos { principal } = &self.authentication {
                    let claimed = ctx.user_info.as_ref().and_then(|u| u.effective_user.as_deref()).filter(|u| !u.is_empty());
                    if let Some(claimed) = claimed.filter(|c| c != principal) {
                        let msg = format!("User: {principal} is not allowed to impersonate {claimed}");
                        let f = fatal(AUTHORIZATION_FAILED_CALL_ID, b"", RpcErrorCodeProto::FatalUnauthorized, AUTHORIZATION_EXCEPTION_CLASS, &msg);
                        return self.close(f);
                    }
                }
                self.user = ctx.user_info;
                self.context_protocol = ctx.protocol;
                self.state = State::Ready;
                Step::Nothing
            }
            Err(e) => self.fatal(call_id, client_id, RpcErrorCodeProto::FatalDeserializingRequest, &e.to_string()),
        }
    }

    fn on_call(&mut self, header: RpcRequestHeaderProto, mut cursor: FrameCursor<'_>) -> Step {
        let call_id = header.call_id;
        if call_id == CONNECTION_CONTEXT_CALL_ID {
            return self.fatal(
                call_id,
                &header.client_id,
                RpcErrorCodeProto::FatalInvalidRpcHeader,
                "connection context already processed; a second one is not allowed",
            );
        }
        if call_id < 0 {
            return self.fatal(
                call_id,
                &header.client_id,
                RpcErrorCodeProto::FatalInvalidRpcHeader,
                &format!("call id {call_id} is neither a call (>= 0) nor a ping (-4)"),
            );
        }
        let method_header: RequestHeaderProto = match cursor.decode("request header") {
            Ok(h) => h,
            Err(e) => {
                return self.fatal(
                    call_id,
                    &header.client_id,
                    RpcErrorCodeProto::FatalDeserializingRequest,
                    &e.to_string(),
                )
            }
        };
        let request = if cursor.is_empty() {
            Vec::new()
        } else {
            match cursor.next_delimited("request payload") {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    return self.fatal(
                        call_id,
                        &header.client_id,
                        RpcErrorCodeProto::FatalDeserializingRequest,
                        &e.to_string(),
                    )
                }
            }
        };
        Step::Dispatch(IncomingCall {
            call_id,
            client_id: header.client_id,
            retry_count: header.retry_count.unwrap_or(-1),
            protocol: method_header.declaring_class_protocol_name,
            method: method_header.method_name,
            request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RawMessage;
    use crate::header::{call_frame, request_header};
    use crate::proto::RpcResponseHeaderProto;
    use crate::security::digest_md5::DigestMd5Client;

    const CID: [u8; 16] = [9; 16];
    const ID: &[u8] = b"ident";
    const PW: &[u8] = b"pw";

    fn lookup(id: &[u8]) -> Option<Vec<u8>> {
        (id == ID).then(|| PW.to_vec())
    }

    fn simple() -> Connection {
        Connection::start(b"hrpc\x09\x00\x00", AuthPolicy::SimpleAllowed, "n".into()).unwrap()
    }

    fn body(frame: Vec<u8>) -> Vec<u8> {
        frame[4..].to_vec()
    }

    fn context_body(call_id: i32) -> Vec<u8> {
        let ctx = IpcConnectionContextProto {
            user_info: Some(UserInformationProto { effective_user: Some("alice".into()), real_user: None }),
            protocol: Some("test.EchoProtocolPB".into()),
        };
        body(encode_frame(&[&request_header(call_id, &CID, -1), &ctx]))
    }

    fn call_body(call_id: i32) -> Vec<u8> {
        body(call_frame(&request_header(call_id, &CID, -1), "test.EchoProtocolPB", "echo", b"hi"))
    }

    fn sasl_body(msg: &RpcSaslProto) -> Vec<u8> {
        body(encode_frame(&[&request_header(SASL_CALL_ID, b"", -1), msg]))
    }

    /// Decodes a reply frame: header and optional SASL message.
    fn reply(frame: &[u8]) -> (RpcResponseHeaderProto, Option<RpcSaslProto>) {
        let mut c = FrameCursor::new(&frame[4..]);
        let h: RpcResponseHeaderProto = c.decode("h").unwrap();
        let m = if c.is_empty() { None } else { Some(c.decode("sasl").unwrap()) };
        (h, m)
    }

    fn expect_fatal(step: Step, detail: RpcErrorCodeProto, class: &str, msg_part: &str) -> RpcResponseHeaderProto {
        let Step::Close(Some(f)) = step else { panic!("expected FATAL close, got {step:?}") };
        let (h, _) = reply(&f);
        assert_eq!(h.status(), RpcStatusProto::Fatal);
        assert_eq!(h.error_detail(), detail);
        assert_eq!(h.exception_class_name.as_deref(), Some(class));
        let m = h.error_msg.clone().unwrap_or_default();
        assert!(m.contains(msg_part), "{m:?} should contain {msg_part:?}");
        h
    }

    #[test]
    fn simple_connection_context_then_calls_and_pings() {
        let mut c = simple();
        assert_eq!(c.on_frame(&context_body(-3), &lookup), Step::Nothing);
        assert_eq!(c.user().and_then(|u| u.effective_user.as_deref()), Some("alice"));
        assert_eq!(c.context_protocol(), Some("test.EchoProtocolPB"));
        assert_eq!(c.on_frame(&body(encode_frame(&[&request_header(-4, &CID, -1)])), &lookup), Step::Nothing);
        let Step::Dispatch(call) = c.on_frame(&call_body(7), &lookup) else { panic!() };
        assert_eq!(call.call_id, 7);
        assert_eq!(call.client_id, CID);
        assert_eq!((call.protocol.as_str(), call.method.as_str(), call.request.as_slice()), ("test.EchoProtocolPB", "echo", &b"hi"[..]));
    }

    #[test]
    fn call_before_context_is_fatal() {
        let mut c = simple();
        let h = expect_fatal(
            c.on_frame(&call_body(0), &lookup),
            RpcErrorCodeProto::FatalInvalidRpcHeader,
            RPC_SERVER_EXCEPTION_CLASS,
            "connection context not established",
        );
        assert_eq!(h.call_id, 0);
        assert_eq!(c.on_frame(&context_body(-3), &lookup), Step::Close(None));
    }

    #[test]
    fn second_context_is_fatal() {
        let mut c = simple();
        c.on_frame(&context_body(-3), &lookup);
        expect_fatal(
            c.on_frame(&context_body(-3), &lookup),
            RpcErrorCodeProto::FatalInvalidRpcHeader,
            RPC_SERVER_EXCEPTION_CLASS,
            "already processed",
        );
        assert!(c.is_closed());
    }

    #[test]
    fn undecodable_headers_are_fatal() {
        let mut c = simple();
        expect_fatal(c.on_frame(b"\x05\xff\xff", &lookup), RpcErrorCodeProto::FatalInvalidRpcHeader, RPC_SERVER_EXCEPTION_CLASS, "truncated RPC request header");
        let mut c = simple();
        expect_fatal(c.on_frame(b"", &lookup), RpcErrorCodeProto::FatalInvalidRpcHeader, RPC_SERVER_EXCEPTION_CLASS, "RPC request header");
        let mut c = simple();
        expect_fatal(c.on_frame(b"\x02\x08\xff", &lookup), RpcErrorCodeProto::FatalInvalidRpcHeader, RPC_SERVER_EXCEPTION_CLASS, "cannot decode");
        // Bad context payload.
        let mut c = simple();
        let f = body(encode_frame(&[&request_header(-3, &CID, -1), &RawMessage(b"\x12\x05ab")]));
        expect_fatal(c.on_frame(&f, &lookup), RpcErrorCodeProto::FatalDeserializingRequest, RPC_SERVER_EXCEPTION_CLASS, "connection context");
        // Bad method header.
        let mut c = simple();
        c.on_frame(&context_body(-3), &lookup);
        let f = body(encode_frame(&[&request_header(1, &CID, -1), &RawMessage(b"\x0a\x09x")]));
        let h = expect_fatal(c.on_frame(&f, &lookup), RpcErrorCodeProto::FatalDeserializingRequest, RPC_SERVER_EXCEPTION_CLASS, "request header");
        assert_eq!(h.call_id, 1);
        // Writable RPC kind.
        let mut c = simple();
        let mut h = request_header(-3, &CID, -1);
        h.rpc_kind = Some(1);
        expect_fatal(c.on_frame(&body(encode_frame(&[&h])), &lookup), RpcErrorCodeProto::FatalInvalidRpcHeader, RPC_SERVER_EXCEPTION_CLASS, "rpc kind 1");
        // Unknown negative call id after the context.
        let mut c = simple();
        c.on_frame(&context_body(-3), &lookup);
        expect_fatal(c.on_frame(&call_body(-9), &lookup), RpcErrorCodeProto::FatalInvalidRpcHeader, RPC_SERVER_EXCEPTION_CLASS, "call id -9");
    }

    #[test]
    fn close_connection_op_closes_silently() {
        let mut c = simple();
        let mut h = request_header(0, &CID, -1);
        h.rpc_op = Some(OperationProto::RpcCloseConnection as i32);
        assert_eq!(c.on_frame(&body(encode_frame(&[&h])), &lookup), Step::Close(None));
    }

    #[test]
    fn preamble_failures_answer_what_clients_understand() {
        let (e, f) = Connection::start(b"hrpc\x08\x00\x00", AuthPolicy::SimpleAllowed, "n".into()).unwrap_err();
        assert!(e.to_string().contains("IPC version 8"));
        let (h, _) = reply(&f.unwrap());
        assert_eq!(h.error_detail(), RpcErrorCodeProto::FatalVersionMismatch);
        assert_eq!(h.exception_class_name.as_deref(), Some(VERSION_MISMATCH_CLASS));
        let (_, f) = Connection::start(b"HTTP/1.", AuthPolicy::SimpleAllowed, "n".into()).unwrap_err();
        assert!(f.is_none());
        let (_, f) = Connection::start(b"hrpc\x09\x00\x00", AuthPolicy::TokenRequired, "n".into()).unwrap_err();
        let (h, _) = reply(&f.unwrap());
        assert_eq!(h.error_detail(), RpcErrorCodeProto::FatalUnauthorized);
        assert_eq!(h.exception_class_name.as_deref(), Some(ACCESS_CONTROL_EXCEPTION_CLASS));
        assert_eq!(h.call_id as i32, -1);
    }

    fn negotiate(c: &mut Connection) -> Vec<u8> {
        let step = c.on_frame(&sasl_body(&RpcSaslProto { state: SaslState::Negotiate as i32, ..Default::default() }), &lookup);
        let Step::Reply(f) = step else { panic!("{step:?}") };
        let (h, m) = reply(&f);
        assert_eq!(h.call_id as i32, SASL_CALL_ID);
        let m = m.unwrap();
        assert_eq!(m.state(), SaslState::Negotiate);
        let a = &m.auths[0];
        assert_eq!((a.method.as_str(), a.mechanism.as_str()), ("TOKEN", "DIGEST-MD5"));
        assert_eq!((a.protocol.as_deref(), a.server_id.as_deref()), (Some(""), Some("default")));
        a.challenge.clone().unwrap()
    }

    fn initiate(token: Vec<u8>) -> Vec<u8> {
        sasl_body(&RpcSaslProto {
            state: SaslState::Initiate as i32,
            token: Some(token),
            auths: vec![SaslAuth { method: "TOKEN".into(), mechanism: "DIGEST-MD5".into(), protocol: Some(String::new()), server_id: Some("default".into()), challenge: None }],
            version: None,
        })
    }

    fn sasl_conn() -> Connection {
        Connection::start(b"hrpc\x09\x00\xdf", AuthPolicy::TokenRequired, "the-nonce".into()).unwrap()
    }

    #[test]
    fn sasl_token_auth_succeeds_with_the_right_password() {
        let mut c = sasl_conn();
        let challenge = negotiate(&mut c);
        let mut client = DigestMd5Client::new(ID, PW, "cn".into());
        let step = c.on_frame(&initiate(client.respond(&challenge).unwrap()), &lookup);
        let Step::Reply(f) = step else { panic!("{step:?}") };
        let m = reply(&f).1.unwrap();
        assert_eq!(m.state(), SaslState::Success);
        client.verify_server(m.token()).unwrap();
        assert_eq!(c.token_identifier(), Some(ID));
        assert_eq!(c.on_frame(&context_body(-3), &lookup), Step::Nothing);
        assert!(matches!(c.on_frame(&call_body(0), &lookup), Step::Dispatch(_)));
    }

    #[test]
    fn wrong_password_is_fatal_access_control_on_call_id_minus_one() {
        let mut c = sasl_conn();
        let challenge = negotiate(&mut c);
        let mut client = DigestMd5Client::new(ID, b"bad", "cn".into());
        let h = expect_fatal(
            c.on_frame(&initiate(client.respond(&challenge).unwrap()), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            ACCESS_CONTROL_EXCEPTION_CLASS,
            "wrong token password",
        );
        assert_eq!(h.call_id as i32, AUTHORIZATION_FAILED_CALL_ID);
        assert_eq!(c.token_identifier(), None);
    }

    #[test]
    fn replayed_nonce_is_rejected() {
        // A response computed for another connection's nonce.
        let mut other = sasl_conn();
        let mut c2 = Connection::start(b"hrpc\x09\x00\xdf", AuthPolicy::TokenRequired, "fresh-nonce".into()).unwrap();
        let old_challenge = negotiate(&mut other);
        negotiate(&mut c2);
        let mut client = DigestMd5Client::new(ID, PW, "cn".into());
        expect_fatal(
            c2.on_frame(&initiate(client.respond(&old_challenge).unwrap()), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            ACCESS_CONTROL_EXCEPTION_CLASS,
            "replayed",
        );
    }

    #[test]
    fn sasl_order_violations_are_fatal() {
        // Context before SASL.
        let mut c = sasl_conn();
        expect_fatal(c.on_frame(&context_body(-3), &lookup), RpcErrorCodeProto::FatalUnauthorized, ACCESS_CONTROL_EXCEPTION_CLASS, "SASL (call id -33) must come first");
        // INITIATE before NEGOTIATE.
        let mut c = sasl_conn();
        expect_fatal(c.on_frame(&initiate(b"x".to_vec()), &lookup), RpcErrorCodeProto::FatalUnauthorized, ACCESS_CONTROL_EXCEPTION_CLASS, "INITIATE where NEGOTIATE");
        // Unoffered mechanism.
        let mut c = sasl_conn();
        negotiate(&mut c);
        let mut m = RpcSaslProto { state: SaslState::Initiate as i32, ..Default::default() };
        m.auths.push(SaslAuth { method: "KERBEROS".into(), mechanism: "GSSAPI".into(), ..Default::default() });
        expect_fatal(
            c.on_frame(&sasl_body(&m), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            ACCESS_CONTROL_EXCEPTION_CLASS,
            "KERBEROS authentication is not enabled.  Available:[TOKEN]",
        );
        // Garbage SASL message.
        let mut c = sasl_conn();
        let f = body(encode_frame(&[&request_header(SASL_CALL_ID, b"", -1), &RawMessage(b"\x10")]));
        expect_fatal(c.on_frame(&f, &lookup), RpcErrorCodeProto::FatalDeserializingRequest, RPC_SERVER_EXCEPTION_CLASS, "SASL message");
        // SASL on a simple connection.
        let mut c = simple();
        expect_fatal(
            c.on_frame(&sasl_body(&RpcSaslProto { state: 1, ..Default::default() }), &lookup),
            RpcErrorCodeProto::FatalInvalidRpcHeader,
            RPC_SERVER_EXCEPTION_CLASS,
            "SASL message after authentication",
        );
    }

    fn negotiate_reply(c: &mut Connection) -> RpcSaslProto {
        let step = c.on_frame(&sasl_body(&RpcSaslProto { state: SaslState::Negotiate as i32, ..Default::default() }), &lookup);
        let Step::Reply(f) = step else { panic!("{step:?}") };
        reply(&f).1.unwrap()
    }

    fn simple_auth() -> SaslAuth {
        SaslAuth { method: "SIMPLE".into(), mechanism: String::new(), protocol: None, server_id: None, challenge: None }
    }

    fn initiate_with(auths: Vec<SaslAuth>) -> Vec<u8> {
        sasl_body(&RpcSaslProto { state: SaslState::Initiate as i32, token: Some(vec![]), auths, version: None })
    }

    /// The client port with a secret manager, as Hadoop's server with
    /// security off: TOKEN (with the first challenge) then SIMPLE, and a
    /// client without a token for it (Skein's AM) goes on as SIMPLE.
    #[test]
    fn simple_allowed_port_offers_token_then_simple_and_accepts_simple() {
        let mut c = Connection::start(b"hrpc\x09\x00\xdf", AuthPolicy::SimpleAllowed.methods(true), "n".into()).unwrap();
        let m = negotiate_reply(&mut c);
        assert_eq!(m.state(), SaslState::Negotiate);
        let methods: Vec<(&str, &str)> = m.auths.iter().map(|a| (a.method.as_str(), a.mechanism.as_str())).collect();
        assert_eq!(methods, [("TOKEN", "DIGEST-MD5"), ("SIMPLE", "")]);
        assert!(m.auths[0].challenge.is_some());
        assert_eq!(m.auths[1], simple_auth());
        // Hadoop's client sends INITIATE naming SIMPLE and does not wait.
        assert_eq!(c.on_frame(&initiate_with(vec![simple_auth()]), &lookup), Step::Nothing);
        assert_eq!(c.on_frame(&context_body(-3), &lookup), Step::Nothing);
        assert_eq!(c.user().and_then(|u| u.effective_user.as_deref()), Some("alice"));
        assert_eq!(c.token_identifier(), None);
        assert!(matches!(c.on_frame(&call_body(0), &lookup), Step::Dispatch(_)));
    }

    #[test]
    fn simple_allowed_port_still_authenticates_tokens() {
        let mut c = Connection::start(b"hrpc\x09\x00\xdf", AuthPolicy::SimpleAllowed.methods(true), "n".into()).unwrap();
        let m = negotiate_reply(&mut c);
        let mut client = DigestMd5Client::new(ID, PW, "cn".into());
        let step = c.on_frame(&initiate(client.respond(m.auths[0].challenge()).unwrap()), &lookup);
        let Step::Reply(f) = step else { panic!("{step:?}") };
        assert_eq!(reply(&f).1.unwrap().state(), SaslState::Success);
        assert_eq!(c.token_identifier(), Some(ID));
    }

    /// No secret manager: Hadoop's SIMPLE-only server answers NEGOTIATE
    /// with SUCCESS, which the client reads as "switch to SIMPLE".
    #[test]
    fn simple_only_port_answers_negotiate_with_success() {
        let mut c = Connection::start(b"hrpc\x09\x00\xdf", AuthPolicy::SimpleAllowed.methods(false), "n".into()).unwrap();
        let m = negotiate_reply(&mut c);
        assert_eq!(m.state(), SaslState::Success);
        assert!(m.auths.is_empty());
        assert_eq!(c.on_frame(&context_body(-3), &lookup), Step::Nothing);
        assert!(matches!(c.on_frame(&call_body(0), &lookup), Step::Dispatch(_)));
    }

    #[test]
    fn token_required_port_refuses_simple_as_hadoop_words_it() {
        let mut c = sasl_conn();
        let m = negotiate_reply(&mut c);
        assert_eq!(m.auths.len(), 1);
        expect_fatal(
            c.on_frame(&initiate_with(vec![simple_auth()]), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            ACCESS_CONTROL_EXCEPTION_CLASS,
            "SIMPLE authentication is not enabled.  Available:[TOKEN]",
        );
        // Two auths in one INITIATE.
        let mut c = Connection::start(b"hrpc\x09\x00\xdf", AuthPolicy::SimpleAllowed, "n".into()).unwrap();
        negotiate_reply(&mut c);
        expect_fatal(
            c.on_frame(&initiate_with(vec![simple_auth(), simple_auth()]), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            SASL_EXCEPTION_CLASS,
            "Client mechanism is malformed",
        );
        // An auth that differs from the offer (SIMPLE with a server id).
        let mut c = Connection::start(b"hrpc\x09\x00\xdf", AuthPolicy::SimpleAllowed, "n".into()).unwrap();
        negotiate_reply(&mut c);
        let odd = SaslAuth { server_id: Some("default".into()), ..simple_auth() };
        expect_fatal(
            c.on_frame(&initiate_with(vec![odd]), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            ACCESS_CONTROL_EXCEPTION_CLASS,
            "SIMPLE authentication is not enabled.  Available:[TOKEN, SIMPLE]",
        );
    }

    fn kerberos_conn(rounds: usize, last: &[u8], peer: &str, token: bool) -> Connection {
        let methods = AuthPolicy::SimpleAllowed.methods(token);
        let k = crate::security::sasl_gssapi::tests::acceptor(rounds, last, peer);
        Connection::start_with(b"hrpc\x09\x00\xdf", methods, Some(k), "n".into()).unwrap()
    }

    fn kerberos_auth() -> SaslAuth {
        SaslAuth { method: "KERBEROS".into(), mechanism: "GSSAPI".into(), protocol: Some("rm".into()), server_id: Some("localhost".into()), challenge: None }
    }

    fn sasl_step(c: &mut Connection, msg: RpcSaslProto) -> RpcSaslProto {
        let step = c.on_frame(&sasl_body(&msg), &lookup);
        let Step::Reply(f) = step else { panic!("{step:?}") };
        reply(&f).1.unwrap()
    }

    fn response(token: &[u8]) -> RpcSaslProto {
        RpcSaslProto { state: SaslState::Response as i32, token: Some(token.to_vec()), ..Default::default() }
    }

    fn kerberos_context(user: Option<&str>) -> Vec<u8> {
        let ctx = IpcConnectionContextProto {
            user_info: Some(UserInformationProto { effective_user: user.map(Into::into), real_user: None }),
            protocol: Some("test.EchoProtocolPB".into()),
        };
        body(encode_frame(&[&request_header(-3, &CID, -1), &ctx]))
    }

    /// Through GSSAPI's rounds to SUCCESS, as Java's client drives them.
    fn kerberos_login(c: &mut Connection) {
        let m = sasl_step(c, RpcSaslProto { state: SaslState::Initiate as i32, token: Some(b"ok".to_vec()), auths: vec![kerberos_auth()], version: None });
        assert_eq!((m.state(), m.token()), (SaslState::Challenge, &b"ap-rep"[..]));
        let m = sasl_step(c, response(b""));
        assert_eq!((m.state(), m.token()), (SaslState::Challenge, &b"W\x01\x00\x00\x00"[..]));
        let m = sasl_step(c, response(b"W\x01\x00\x00\x00"));
        assert_eq!(m.state(), SaslState::Success);
        assert!(m.token.is_none());
    }

    /// Security on: TOKEN then KERBEROS (protocol and server id from the
    /// service principal), no SIMPLE, and SIMPLE refused in Hadoop's words
    /// whether asked for in the preamble or in INITIATE.
    #[test]
    fn kerberos_port_offers_token_and_kerberos_and_refuses_simple() {
        let mut c = kerberos_conn(1, b"ap-rep", "alice@EXAMPLE.COM", true);
        let m = negotiate_reply(&mut c);
        assert_eq!(m.state(), SaslState::Negotiate);
        assert_eq!(m.auths.len(), 2);
        assert_eq!((m.auths[0].method.as_str(), m.auths[0].challenge.is_some()), ("TOKEN", true));
        assert_eq!(m.auths[1], kerberos_auth());
        expect_fatal(
            c.on_frame(&initiate_with(vec![simple_auth()]), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            ACCESS_CONTROL_EXCEPTION_CLASS,
            "SIMPLE authentication is not enabled.  Available:[TOKEN, KERBEROS]",
        );
        let k = crate::security::sasl_gssapi::tests::acceptor(1, b"", "x");
        let (e, f) = Connection::start_with(b"hrpc\x09\x00\x00", AuthPolicy::SimpleAllowed.methods(true), Some(k.clone()), "n".into()).unwrap_err();
        assert_eq!(e.to_string(), "authentication failed: SIMPLE authentication is not enabled.  Available:[TOKEN, KERBEROS]");
        assert_eq!(reply(&f.unwrap()).0.error_detail(), RpcErrorCodeProto::FatalUnauthorized);
        // A port without a secret manager (the admin port) offers KERBEROS alone.
        let (e, _) = Connection::start_with(b"hrpc\x09\x00\x00", AuthPolicy::SimpleAllowed.methods(false), Some(k), "n".into()).unwrap_err();
        assert!(e.to_string().ends_with("Available:[KERBEROS]"), "{e}");
        let mut c = kerberos_conn(1, b"", "alice@EXAMPLE.COM", false);
        let m = negotiate_reply(&mut c);
        assert_eq!((m.state(), m.auths.clone()), (SaslState::Negotiate, vec![kerberos_auth()]));
    }

    #[test]
    fn kerberos_login_maps_the_principal_to_the_calls_user() {
        let mut c = kerberos_conn(1, b"ap-rep", "alice@EXAMPLE.COM", true);
        negotiate_reply(&mut c);
        kerberos_login(&mut c);
        assert_eq!(c.on_frame(&kerberos_context(Some("alice@EXAMPLE.COM")), &lookup), Step::Nothing);
        assert_eq!(c.call_user().as_deref(), Some("alice"));
        assert_eq!(c.authentication(), &Authentication::Kerberos { principal: "alice@EXAMPLE.COM".into() });
        assert!(matches!(c.on_frame(&call_body(0), &lookup), Step::Dispatch(_)));
        // A context without a user is the principal too.
        let mut c = kerberos_conn(1, b"ap-rep", "alice@EXAMPLE.COM", true);
        negotiate_reply(&mut c);
        kerberos_login(&mut c);
        assert_eq!(c.on_frame(&kerberos_context(None), &lookup), Step::Nothing);
        assert_eq!(c.call_user().as_deref(), Some("alice"));
    }

    #[test]
    fn kerberos_refusals_impersonation_unmapped_principal_and_junk() {
        // Claiming another user in the context: a proxy user, not allowed.
        let mut c = kerberos_conn(1, b"ap-rep", "alice@EXAMPLE.COM", true);
        negotiate_reply(&mut c);
        kerberos_login(&mut c);
        expect_fatal(
            c.on_frame(&kerberos_context(Some("bob")), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            AUTHORIZATION_EXCEPTION_CLASS,
            "User: alice@EXAMPLE.COM is not allowed to impersonate bob",
        );
        // A principal of a realm no rule maps.
        let mut c = kerberos_conn(1, b"", "mallory@EVIL.COM", true);
        negotiate_reply(&mut c);
        let m = sasl_step(&mut c, RpcSaslProto { state: SaslState::Initiate as i32, token: Some(b"ok".to_vec()), auths: vec![kerberos_auth()], version: None });
        assert_eq!(m.state(), SaslState::Challenge);
        expect_fatal(
            c.on_frame(&sasl_body(&response(b"W\x01\x00\x00\x00")), &lookup),
            RpcErrorCodeProto::FatalUnauthorized,
            ILLEGAL_ARGUMENT_CLASS,
            "Illegal principal name mallory@EVIL.COM",
        );
        // A bad Kerberos token.
        let mut c = kerberos_conn(1, b"", "alice@EXAMPLE.COM", true);
        negotiate_reply(&mut c);
        let junk = RpcSaslProto { state: SaslState::Initiate as i32, token: Some(b"junk".to_vec()), auths: vec![kerberos_auth()], version: None };
        expect_fatal(c.on_frame(&sasl_body(&junk), &lookup), RpcErrorCodeProto::FatalUnauthorized, SASL_EXCEPTION_CLASS, "GSS accept failed");
        // KERBEROS with another server id than offered.
        let mut c = kerberos_conn(1, b"", "alice@EXAMPLE.COM", true);
        negotiate_reply(&mut c);
        let odd = SaslAuth { server_id: Some("elsewhere".into()), ..kerberos_auth() };
        expect_fatal(c.on_frame(&initiate_with(vec![odd]), &lookup), RpcErrorCodeProto::FatalUnauthorized, ACCESS_CONTROL_EXCEPTION_CLASS, "KERBEROS authentication is not enabled");
        // A context instead of the next RESPONSE, and a NEGOTIATE again.
        let mut c = kerberos_conn(2, b"", "alice@EXAMPLE.COM", true);
        negotiate_reply(&mut c);
        sasl_step(&mut c, RpcSaslProto { state: SaslState::Initiate as i32, token: Some(b"ok".to_vec()), auths: vec![kerberos_auth()], version: None });
        expect_fatal(c.on_frame(&kerberos_context(None), &lookup), RpcErrorCodeProto::FatalUnauthorized, ACCESS_CONTROL_EXCEPTION_CLASS, "must come first");
        let mut c = kerberos_conn(2, b"", "alice@EXAMPLE.COM", true);
        negotiate_reply(&mut c);
        sasl_step(&mut c, RpcSaslProto { state: SaslState::Initiate as i32, token: Some(b"ok".to_vec()), auths: vec![kerberos_auth()], version: None });
        let again = RpcSaslProto { state: SaslState::Negotiate as i32, ..Default::default() };
        expect_fatal(c.on_frame(&sasl_body(&again), &lookup), RpcErrorCodeProto::FatalUnauthorized, ACCESS_CONTROL_EXCEPTION_CLASS, "NEGOTIATE where RESPONSE");
    }
}
