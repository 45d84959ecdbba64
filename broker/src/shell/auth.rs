//! Authentication on the broker's one port: every request but `/health`
//! passes [`authenticate`] before any handler runs.
//!
//! - Frameworks and operators (Scheduler and Operator gRPC, `/state`,
//!   `/metrics`, the UI) send `authorization: Bearer TOKEN` (or HTTP Basic
//!   with the principal as user and the token as password, for browsers).
//!   Tokens come from the token file (`broker.auth.tokens.file`), one
//!   `PRINCIPAL TOKEN [EXPIRES]` per line (EXPIRES: RFC 3339 or Unix
//!   seconds; after it the token is refused as expired); the file is
//!   re-read when it changes, so removing a line revokes that token.
//! - Agents (Agent gRPC) send the shared registration secret
//!   (`broker.auth.agent.secret.file`) in `x-weir-agent-secret`.
//! - With mutual TLS (`broker.tls.client.ca.file`) a client certificate
//!   of that CA stands for a token (its principal: the common name, or
//!   an alternative name) when no `authorization` header is sent, and for
//!   the secret on the Agent API. Without one, tokens work as above.
//!
//! A request that fails is answered UNAUTHENTICATED (gRPC) or 401 (HTTP)
//! before it reaches the core, so it changes nothing. Tokens are kept only
//! as SHA-256 digests and compared as such: neither a log line nor an
//! answer ever holds one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use weir_net::secret::{read_secret_value, SecretFileError};
use weir_net::tls::ClientCertificate;
use weir_net::tokens::{digest, TokenFile, TokenFileError};

/// The header that carries an agent's registration secret.
pub const AGENT_SECRET_HEADER: &str = "x-weir-agent-secret";

/// Where the secrets are (`broker.auth.*`); no file: that kind of caller
/// is not authenticated.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub tokens_file: Option<PathBuf>,
    pub agent_secret_file: Option<PathBuf>,
    /// How often the token file's modification time is looked at.
    pub reload_interval: Duration,
}

/// Who a request comes from, as the handlers see it (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's principal; empty without authentication (anonymous).
    pub principal: String,
    /// False while authentication is off: the principal is then whatever
    /// the caller claims where the protocol has a field for it.
    pub authenticated: bool,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller { principal: String::new(), authenticated: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
}

/// What the middleware checks requests against.
pub struct Authenticator {
    tokens: Option<Arc<TokenFile>>,
    agent_secret: Option<[u8; 32]>,
    reload_interval: Duration,
}

impl Authenticator {
    /// Reads the files named in `settings`: a file others may read, an
    /// unreadable one or a bad line stops the broker at start.
    pub fn load(settings: &AuthSettings) -> Result<Authenticator, AuthError> {
        let tokens = settings.tokens_file.as_deref().map(TokenFile::load).transpose()?.map(Arc::new);
        let agent_secret = settings.agent_secret_file.as_deref().map(read_secret_value).transpose()?.map(|s| digest(&s));
        Ok(Authenticator { tokens, agent_secret, reload_interval: settings.reload_interval.max(Duration::from_millis(100)) })
    }

    pub fn off() -> Authenticator {
        Authenticator { tokens: None, agent_secret: None, reload_interval: Duration::from_secs(5) }
    }

    pub fn tokens_on(&self) -> bool {
        self.tokens.is_some()
    }

    pub fn agents_on(&self) -> bool {
        self.agent_secret.is_some()
    }

    /// Says at start what is and is not protected; loudly when nothing is.
    pub fn announce(&self) {
        match (&self.tokens, self.agent_secret.is_some()) {
            (None, false) => tracing::warn!(
                "AUTHENTICATION IS OFF: anyone who reaches this port can register frameworks in any role, register agents, \
                 tear down frameworks and read the state; set broker.auth.tokens.file and broker.auth.agent.secret.file (docs/SECURITY.md)"
            ),
            (None, true) => tracing::warn!(
                "framework and operator AUTHENTICATION IS OFF (broker.auth.tokens.file is not set): anyone who reaches this port can \
                 register frameworks and act as an operator; agents must send the registration secret"
            ),
            (Some(t), false) => tracing::warn!(
                tokens = %t.path().display(),
                "agent AUTHENTICATION IS OFF (broker.auth.agent.secret.file is not set): anyone who reaches this port can register an agent"
            ),
            (Some(t), true) => tracing::info!(tokens = %t.path().display(), "frameworks and operators authenticate by token, agents by the registration secret"),
        }
    }

    /// Re-reads the token file whenever it changes, until the broker stops.
    pub async fn watch(self: Arc<Self>) {
        let Some(tokens) = self.tokens.clone() else { return };
        tokens.watch(self.reload_interval).await
    }

    /// Who sent these headers, for a framework or operator request.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, &'static str> {
        let Some(tokens) = &self.tokens else { return Ok(Caller::anonymous()) };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err("this broker requires a token: send `authorization: Bearer TOKEN` (weir --token-file FILE, or WEIR_TOKEN)");
        };
        let principal = tokens.principal_of(Some(value.as_bytes()))?;
        Ok(Caller { principal, authenticated: true })
    }

    fn agent_ok(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(expected) = &self.agent_secret else { return Ok(()) };
        let Some(value) = headers.get(AGENT_SECRET_HEADER) else {
            return Err("this broker requires the agent registration secret (agent.auth.secret.file)");
        };
        let sent = value.to_str().map_err(|_| "the agent registration secret is not text")?;
        // Digests of equal length compared in full: no early exit on the
        // secret's own bytes.
        let sent = digest(sent.trim());
        if sent.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return Err("the agent registration secret is wrong");
        }
        Ok(())
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/grpc"))
}

fn refuse(grpc: bool, path: &str, reason: &str) -> Response {
    if grpc {
        return tonic::Status::unauthenticated(reason.to_owned()).into_http::<axum::body::Body>().into_response();
    }
    // Browsers asking for the UI get a login prompt (Basic); programs see
    // that a bearer token is expected.
    let challenge = if path.starts_with("/ui") || path == "/" { "Basic realm=\"weir\"" } else { "Bearer realm=\"weir\"" };
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge), (header::CONTENT_TYPE, "text/plain")], format!("unauthenticated: {reason}\n"))
        .into_response()
}

/// The middleware: checks the request's credentials and hands the
/// handlers a [`Caller`], or answers it at once.
pub(super) async fn authenticate(State(auth): State<Arc<Authenticator>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/health" {
        return next.run(request).await;
    }
    let grpc = is_grpc(request.headers());
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    // A client certificate the TLS handshake verified against
    // broker.tls.client.ca.file (mutual TLS).
    let certificate = request.extensions().get::<ClientCertificate>().cloned();
    if path.starts_with("/weir.v1.Agent/") {
        // An agent with a certificate of the cluster's CA needs no secret.
        if certificate.is_some() {
            request.extensions_mut().insert(Caller { principal: String::new(), authenticated: true });
            return next.run(request).await;
        }
        if let Err(reason) = auth.agent_ok(request.headers()) {
            if let Some(suppressed) = weir_net::throttle::AUTH_FAILURES.admit_now() {
                tracing::warn!(?peer, %path, reason, suppressed, "agent refused: not authenticated");
            }
            return refuse(grpc, &path, reason);
        }
        request.extensions_mut().insert(Caller { principal: String::new(), authenticated: auth.agents_on() });
        return next.run(request).await;
    }
    let by_certificate = match certificate {
        Some(ClientCertificate { principal: Some(principal) }) if !request.headers().contains_key(header::AUTHORIZATION) => {
            Some(Caller { principal, authenticated: true })
        }
        _ => None,
    };
    match by_certificate.map_or_else(|| auth.caller(request.headers()), Ok) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(reason) => {
            if let Some(suppressed) = weir_net::throttle::AUTH_FAILURES.admit_now() {
                tracing::warn!(?peer, %path, reason, suppressed, "request refused: not authenticated");
            }
            refuse(grpc, &path, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use weir_net::tokens::parse_tokens;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_basic_credentials_name_the_principal_and_wrong_ones_are_refused() {
        let file = TokenFile::from_digests(parse_tokens("alice aaaaaaaaaaaaaaaa1\nold oooooooooooooooo1 1700000000").unwrap());
        let auth = Authenticator { tokens: Some(Arc::new(file)), agent_secret: Some(digest("agent-secret")), reload_interval: Duration::from_secs(1) };
        let alice = Caller { principal: "alice".into(), authenticated: true };
        assert_eq!(auth.caller(&headers(&[("authorization", "Bearer aaaaaaaaaaaaaaaa1")])), Ok(alice.clone()));
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:aaaaaaaaaaaaaaaa1");
        assert_eq!(auth.caller(&headers(&[("authorization", &format!("Basic {basic}"))])), Ok(alice));
        assert!(auth.caller(&headers(&[("authorization", "Bearer wrongwrongwrongwrong")])).is_err());
        assert!(auth.caller(&headers(&[("authorization", "Bearer oooooooooooooooo1")])).unwrap_err().contains("expired"));
        assert!(auth.caller(&headers(&[])).unwrap_err().contains("this broker requires a token"));
        assert!(auth.agent_ok(&headers(&[(AGENT_SECRET_HEADER, "agent-secret")])).is_ok());
        assert!(auth.agent_ok(&headers(&[(AGENT_SECRET_HEADER, "agent-secreT")])).is_err());
        assert!(auth.agent_ok(&headers(&[])).is_err());
        assert_eq!(Authenticator::off().caller(&headers(&[])), Ok(Caller::anonymous()));
    }
}
