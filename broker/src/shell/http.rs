//! HTTP on the broker's port: `/state` (JSON), `/metrics` (OpenMetrics
//! text, see `metrics.rs`), `/health`, and the web UI (`ui/`, under `/ui/`;
//! `/` leads there). Any other path is 404 for HTTP
//! clients and UNIMPLEMENTED for gRPC ones (told apart by content type).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::{metrics, Shared};

/// What a path no route knows answers. Set on the merged router, after the
/// gRPC routes (whose own fallback answers every request 200 with a gRPC
/// status, which confuses HTTP clients and monitors).
pub(super) async fn unknown_path(request: axum::extract::Request) -> axum::response::Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no gRPC method {}", request.uri().path())).into_http();
    }
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], format!("no such path: {}\n", request.uri().path()))
        .into_response()
}

pub(super) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/state", get(state))
        .route("/metrics", get(serve_metrics))
        .merge(super::ui::router())
        .with_state(shared)
}

async fn state(
    axum::extract::State(shared): axum::extract::State<Shared>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
) -> impl IntoResponse {
    let now = shared.now();
    let mut doc = shared.lock().core.state(now);
    doc.retain_viewable_by(&shared.acls, &caller.principal);
    match serde_json::to_string_pretty(&doc) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e.to_string()),
    }
}

async fn serve_metrics(
    axum::extract::State(shared): axum::extract::State<Shared>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
) -> impl IntoResponse {
    if let Err(refusal) = crate::acl::authorize(&shared.acls, &caller.principal, crate::acl::Action::GetEndpoint, "/metrics") {
        tracing::warn!(principal = %caller.principal, %refusal, "refused /metrics");
        return (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "text/plain")], format!("forbidden: {refusal}\n"));
    }
    match metrics::encode(&shared.metrics) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e.to_string())
        }
    }
}
