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
//!
//! A request that fails is answered UNAUTHENTICATED (gRPC) or 401 (HTTP)
//! before it reaches the core, so it changes nothing. Tokens are kept only
//! as SHA-256 digests and compared as such: neither a log line nor an
//! answer ever holds one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use weir_net::secret::{read_secret_file, read_secret_value, SecretFileError};

/// The header that carries an agent's registration secret.
pub const AGENT_SECRET_HEADER: &str = "x-weir-agent-secret";
/// The shortest token accepted in a token file.
pub const MIN_TOKEN_LEN: usize = 16;
const MAX_PRINCIPAL: usize = 256;

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

/// One line of the token file: whose token, and until when (Unix
/// seconds) it is good, if it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub principal: String,
    pub expires: Option<i64>,
}

/// The tokens' digests and what each stands for.
type Digests = HashMap<[u8; 32], TokenEntry>;

/// An expiry as the token file writes it: RFC 3339 or Unix seconds.
fn parse_expiry(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return (secs > 0).then_some(secs);
    }
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp())
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Reads a token file: `PRINCIPAL TOKEN [EXPIRES]` per line, `#` comments
/// and blank lines ignored. Errors name the line, never the token.
pub fn parse_tokens(text: &str) -> Result<Digests, String> {
    let mut out = Digests::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(principal), Some(token), expiry, None) = (words.next(), words.next(), words.next(), words.next()) else {
            return Err(format!("line {}: expected PRINCIPAL TOKEN [EXPIRES] (two or three words)", i + 1));
        };
        let expires = match expiry {
            None => None,
            Some(text) => Some(parse_expiry(text).ok_or_else(|| {
                format!("line {}: the expiry of {principal}'s token, {:?}, is neither RFC 3339 (2027-01-31T00:00:00Z) nor Unix seconds", i + 1, text.chars().take(40).collect::<String>())
            })?),
        };
        if principal.len() > MAX_PRINCIPAL || !principal.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c)) {
            return Err(format!(
                "line {}: principal {:?} may hold only letters, digits, '.', '_', '@' and '-' (at most {MAX_PRINCIPAL})",
                i + 1,
                principal.chars().take(80).collect::<String>()
            ));
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!("line {}: the token of {principal} is shorter than {MIN_TOKEN_LEN} characters", i + 1));
        }
        if out.insert(digest(token), TokenEntry { principal: principal.to_owned(), expires }).is_some() {
            return Err(format!("line {}: the token of {principal} is also given to another line", i + 1));
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("token file {path}: {reason}")]
    Tokens { path: PathBuf, reason: String },
}

struct TokenFile {
    path: PathBuf,
    digests: RwLock<Arc<Digests>>,
    /// (modification time, length) when last read.
    seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
}

impl TokenFile {
    fn load(path: &Path) -> Result<TokenFile, AuthError> {
        let file = TokenFile { path: path.to_owned(), digests: RwLock::new(Arc::new(Digests::new())), seen: Default::default() };
        file.reload()?;
        Ok(file)
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    fn reload(&self) -> Result<usize, AuthError> {
        let stamp = self.stamp();
        let text = read_secret_file(&self.path)?;
        let digests = parse_tokens(&text).map_err(|reason| AuthError::Tokens { path: self.path.clone(), reason })?;
        let count = digests.len();
        *self.digests.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(digests);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        Ok(count)
    }

    /// Re-reads the file if it changed. A file that became unreadable or
    /// wrong keeps the tokens read before (logged at each look until
    /// fixed): a typo must not lock every operator out.
    fn reload_if_changed(&self) {
        let stamp = self.stamp();
        if stamp.is_some() && stamp == *self.seen.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        match self.reload() {
            Ok(count) => tracing::info!(path = %self.path.display(), principals = count, "token file re-read"),
            Err(err) => tracing::error!(error = %err, "token file not re-read; the tokens read before stay in force"),
        }
    }

    fn entry(&self, token: &str) -> Option<TokenEntry> {
        let digests = self.digests.read().unwrap_or_else(|p| p.into_inner()).clone();
        digests.get(&digest(token)).cloned()
    }
}

/// What the middleware checks requests against.
pub struct Authenticator {
    tokens: Option<TokenFile>,
    agent_secret: Option<[u8; 32]>,
    reload_interval: Duration,
}

impl Authenticator {
    /// Reads the files named in `settings`: a file others may read, an
    /// unreadable one or a bad line stops the broker at start.
    pub fn load(settings: &AuthSettings) -> Result<Authenticator, AuthError> {
        let tokens = settings.tokens_file.as_deref().map(TokenFile::load).transpose()?;
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
                tokens = %t.path.display(),
                "agent AUTHENTICATION IS OFF (broker.auth.agent.secret.file is not set): anyone who reaches this port can register an agent"
            ),
            (Some(t), true) => tracing::info!(tokens = %t.path.display(), "frameworks and operators authenticate by token, agents by the registration secret"),
        }
    }

    /// Re-reads the token file whenever it changes, until the broker stops.
    pub async fn watch(self: Arc<Self>) {
        let Some(tokens) = &self.tokens else { return };
        let mut every = tokio::time::interval(self.reload_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            tokens.reload_if_changed();
        }
    }

    /// Who sent these headers, for a framework or operator request.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, &'static str> {
        let Some(tokens) = &self.tokens else { return Ok(Caller::anonymous()) };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err("this broker requires a token: send `authorization: Bearer TOKEN` (weir --token-file FILE, or WEIR_TOKEN)");
        };
        let value = value.to_str().map_err(|_| "the authorization header is not text")?;
        let (scheme, rest) = value.split_once(' ').ok_or("the authorization header is neither `Bearer TOKEN` nor HTTP Basic")?;
        let (claimed, token) = if scheme.eq_ignore_ascii_case("bearer") {
            (None, rest.trim().to_owned())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).map_err(|_| "the Basic credentials are not base64")?;
            let text = String::from_utf8(decoded).map_err(|_| "the Basic credentials are not UTF-8")?;
            let (user, password) = text.split_once(':').ok_or("the Basic credentials are not USER:PASSWORD")?;
            (Some(user.to_owned()), password.to_owned())
        } else {
            return Err("the authorization header is neither `Bearer TOKEN` nor HTTP Basic");
        };
        match tokens.entry(&token) {
            Some(entry) if claimed.as_ref().is_none_or(|c| c == &entry.principal) => {
                if entry.expires.is_some_and(|at| at <= unix_now()) {
                    return Err("the token has expired (its line in the token file gives an expiry that has passed)");
                }
                Ok(Caller { principal: entry.principal, authenticated: true })
            }
            _ => Err("the token is not valid (unknown, revoked, or not that principal's)"),
        }
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
    if path.starts_with("/weir.v1.Agent/") {
        if let Err(reason) = auth.agent_ok(request.headers()) {
            tracing::warn!(?peer, %path, reason, "agent refused: not authenticated");
            return refuse(grpc, &path, reason);
        }
        request.extensions_mut().insert(Caller { principal: String::new(), authenticated: auth.agents_on() });
        return next.run(request).await;
    }
    match auth.caller(request.headers()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(reason) => {
            tracing::warn!(?peer, %path, reason, "request refused: not authenticated");
            refuse(grpc, &path, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_read_and_bad_lines_named_without_the_token() {
        let tokens = parse_tokens("# who\nalice  aaaaaaaaaaaaaaaa1\n\nbob bbbbbbbbbbbbbbbb2\n").unwrap();
        assert_eq!(tokens.get(&digest("aaaaaaaaaaaaaaaa1")).map(|e| e.principal.as_str()), Some("alice"));
        assert_eq!(tokens.len(), 2);
        let dated = parse_tokens("carol cccccccccccccccc3 2027-01-31T00:00:00Z\ndave dddddddddddddddd4 1700000000").unwrap();
        assert_eq!(dated[&digest("cccccccccccccccc3")].expires, Some(1_801_353_600));
        assert_eq!(dated[&digest("dddddddddddddddd4")].expires, Some(1_700_000_000));
        let err = parse_tokens("carol cccccccccccccccc3 tomorrow").unwrap_err();
        assert!(err.contains("line 1") && err.contains("neither RFC 3339") && !err.contains("cccc"), "{err}");
        let err = parse_tokens("alice short-token").unwrap_err();
        assert!(err.contains("line 1") && err.contains("shorter than 16") && !err.contains("short-token"), "{err}");
        let err = parse_tokens("alice aaaaaaaaaaaaaaaa1\nbob aaaaaaaaaaaaaaaa1").unwrap_err();
        assert!(err.contains("line 2") && !err.contains("aaaa"), "{err}");
        assert!(parse_tokens("al ice xxxxxxxxxxxxxxxxxx 1 2").unwrap_err().contains("two or three words"));
        assert!(parse_tokens("al/ice xxxxxxxxxxxxxxxxxx").unwrap_err().contains("may hold only"));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_basic_credentials_name_the_principal_and_wrong_ones_are_refused() {
        let digests = parse_tokens("alice aaaaaaaaaaaaaaaa1\nold oooooooooooooooo1 1700000000\nnew nnnnnnnnnnnnnnnn1 4102444800").unwrap();
        let file = TokenFile { path: PathBuf::from("/nonexistent"), digests: RwLock::new(Arc::new(digests)), seen: Default::default() };
        let auth = Authenticator { tokens: Some(file), agent_secret: Some(digest("agent-secret")), reload_interval: Duration::from_secs(1) };
        let alice = Caller { principal: "alice".into(), authenticated: true };
        assert_eq!(auth.caller(&headers(&[("authorization", "Bearer aaaaaaaaaaaaaaaa1")])), Ok(alice.clone()));
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:aaaaaaaaaaaaaaaa1");
        assert_eq!(auth.caller(&headers(&[("authorization", &format!("Basic {basic}"))])), Ok(alice));
        let as_bob = base64::engine::general_purpose::STANDARD.encode("bob:aaaaaaaaaaaaaaaa1");
        assert!(auth.caller(&headers(&[("authorization", &format!("Basic {as_bob}"))])).is_err());
        assert!(auth.caller(&headers(&[("authorization", "Bearer wrongwrongwrongwrong")])).is_err());
        // A token past its expiry is refused as such; one before it works.
        assert_eq!(auth.caller(&headers(&[("authorization", "Bearer oooooooooooooooo1")])).unwrap_err(), "the token has expired (its line in the token file gives an expiry that has passed)");
        assert_eq!(auth.caller(&headers(&[("authorization", "Bearer nnnnnnnnnnnnnnnn1")])).unwrap().principal, "new");
        assert!(auth.caller(&headers(&[])).is_err());
        assert!(auth.agent_ok(&headers(&[(AGENT_SECRET_HEADER, "agent-secret")])).is_ok());
        assert!(auth.agent_ok(&headers(&[(AGENT_SECRET_HEADER, "agent-secreT")])).is_err());
        assert!(auth.agent_ok(&headers(&[])).is_err());
        assert_eq!(Authenticator::off().caller(&headers(&[])), Ok(Caller::anonymous()));
    }
}
