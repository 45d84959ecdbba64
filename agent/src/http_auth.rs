//! Who may read what on the agent's HTTP port (`/state`, `/files/*`),
//! as a Mesos agent with `--authenticate_http_readonly` and ACLs does.
//!
//! - Authentication: with `agent.auth.tokens.file` set, every request but
//!   `/health` must carry a token of that file (the broker's format,
//!   `PRINCIPAL TOKEN [EXPIRES]`, re-read when it changes), as
//!   `authorization: Bearer TOKEN` or HTTP Basic; else it is answered 401
//!   saying why, logged at WARN with the peer and never the token. With
//!   `agent.tls.client.ca.file`, a client certificate of that CA stands
//!   for a token (its principal: the common name or an alternative name).
//! - Authorization: `agent.acl.view-framework` (the broker's rules and
//!   action, `weir_model::acl`): a sandbox is read, and a task shown in
//!   `/state`, only if the caller may view the principal its framework
//!   belongs to. The broker names that principal in each RUN_TASK
//!   (`TaskInfo.principal`), and the agent checkpoints it with the task.
//!
//! Nothing set: the port answers anyone, as it always has.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use weir_model::acl::{authorize, Acls, Action, Refusal};
use weir_net::tls::ClientCertificate;
use weir_net::tokens::TokenFile;

/// The agent's HTTP security settings, read at start.
#[derive(Clone, Default)]
pub struct HttpAuth {
    /// `agent.auth.tokens.file`, read; None: no authentication.
    pub tokens: Option<Arc<TokenFile>>,
    /// `agent.acl.*` (only `view-framework` is asked).
    pub acls: Acls,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("tokens", &self.tokens.as_ref().map(|t| t.path().to_owned()))
            .field("acls_set", &self.acls.any_set())
            .finish()
    }
}

impl HttpAuth {
    /// Says at start what the port asks for.
    pub fn announce(&self) {
        match &self.tokens {
            None => tracing::warn!(
                "agent HTTP AUTHENTICATION IS OFF (agent.auth.tokens.file is not set): anyone who reaches the agent's port \
                 can read /state and every task's sandbox"
            ),
            Some(t) => tracing::info!(tokens = %t.path().display(), acls = self.acls.any_set(), "agent HTTP port requires a token"),
        }
    }

    /// May `reader` see the tasks of frameworks that belong to `owner`?
    pub fn may_view(&self, reader: &Reader, owner: &str) -> Result<(), Refusal> {
        authorize(&self.acls, &reader.principal, Action::ViewFramework, owner)
    }
}

/// Who a request on the agent's port comes from (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    /// Empty: anonymous (authentication off).
    pub principal: String,
}

/// The middleware: checks the token and hands the handlers a [`Reader`],
/// or answers 401 at once. `/health` needs nothing (liveness probes).
pub async fn authenticate(
    State(auth): State<Arc<HttpAuth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/health" {
        return next.run(request).await;
    }
    // A client certificate of agent.tls.client.ca.file stands for a token.
    let certified = request.extensions().get::<ClientCertificate>().and_then(|c| c.principal.clone());
    let reader = match (&auth.tokens, certified) {
        (_, Some(principal)) if !request.headers().contains_key(header::AUTHORIZATION) => Ok(Reader { principal }),
        (None, _) => Ok(Reader { principal: String::new() }),
        (Some(tokens), _) => match request.headers().get(header::AUTHORIZATION) {
            None => Err("this agent requires a token: send `authorization: Bearer TOKEN` (weir --token-file FILE, or WEIR_TOKEN)"),
            Some(value) => tokens.principal_of(Some(value.as_bytes())).map(|principal| Reader { principal }),
        },
    };
    match reader {
        Ok(reader) => {
            request.extensions_mut().insert(reader);
            next.run(request).await
        }
        Err(reason) => {
            let peer = request
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            if let Some(suppressed) = weir_net::throttle::AUTH_FAILURES.admit_now() {
                tracing::warn!(?peer, %path, reason, suppressed, "agent HTTP request refused: not authenticated");
            }
            (
                StatusCode::UNAUTHORIZED,
                [
                    (header::WWW_AUTHENTICATE, "Bearer realm=\"weir\""),
                    (header::CONTENT_TYPE, "text/plain"),
                ],
                format!("unauthenticated: {reason}\n"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;
    use weir_model::acl::Scope;
    use weir_net::tokens::parse_tokens;

    fn auth() -> Arc<HttpAuth> {
        let tokens = TokenFile::from_digests(
            parse_tokens("alice aaaaaaaaaaaaaaaa1\nbob bbbbbbbbbbbbbbbb1").unwrap(),
        );
        let acls = Acls::scoped_from_lists(Scope::Agent, [(Action::ViewFramework, "alice: alice")])
            .unwrap();
        Arc::new(HttpAuth {
            tokens: Some(Arc::new(tokens)),
            acls,
        })
    }

    async fn call(auth: Arc<HttpAuth>, path: &str, authorization: Option<&str>) -> (StatusCode, String) {
        call_with(auth, path, authorization, None).await
    }

    async fn call_with(auth: Arc<HttpAuth>, path: &str, authorization: Option<&str>, certificate: Option<ClientCertificate>) -> (StatusCode, String) {
        let router = axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/state",
                get(|axum::Extension(r): axum::Extension<Reader>| async move { r.principal }),
            )
            .layer(axum::middleware::from_fn_with_state(auth, authenticate));
        let mut request = axum::http::Request::get(path);
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        if let Some(c) = certificate {
            request = request.extension(c);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn requests_without_a_valid_token_are_refused_saying_why_and_health_stays_open() {
        let (status, body) = call(auth(), "/state", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("this agent requires a token"), "{body}");
        let (status, body) = call(auth(), "/state", Some("Bearer wrongwrongwrongwrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body.contains("not valid") && !body.contains("wrongwrong"),
            "{body}"
        );
        assert_eq!(
            call(auth(), "/state", Some("Bearer aaaaaaaaaaaaaaaa1")).await,
            (StatusCode::OK, "alice".to_owned())
        );
        assert_eq!(call(auth(), "/health", None).await.0, StatusCode::OK);
        // A verified client certificate names the reader (mutual TLS);
        // one that names no principal does not stand for a token.
        let certified = |p: Option<&str>| Some(ClientCertificate { principal: p.map(str::to_owned) });
        assert_eq!(call_with(auth(), "/state", None, certified(Some("bob"))).await, (StatusCode::OK, "bob".to_owned()));
        assert_eq!(call_with(auth(), "/state", None, certified(None)).await.0, StatusCode::UNAUTHORIZED);
        let off = Arc::new(HttpAuth::default());
        assert_eq!(
            call(off, "/state", None).await,
            (StatusCode::OK, String::new())
        );
    }

    #[test]
    fn a_reader_views_only_what_the_agents_acl_allows() {
        let auth = auth();
        let alice = Reader {
            principal: "alice".into(),
        };
        let bob = Reader {
            principal: "bob".into(),
        };
        assert!(auth.may_view(&alice, "alice").is_ok());
        let refusal = auth.may_view(&bob, "alice").unwrap_err().to_string();
        assert!(
            refusal.contains("principal \"bob\" may not view-framework \"alice\"")
                && refusal.contains("agent.acl.view-framework"),
            "{refusal}"
        );
        // No list set: everyone sees everything.
        assert!(HttpAuth::default().may_view(&bob, "alice").is_ok());
    }
}
