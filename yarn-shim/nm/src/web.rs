//! The node manager's web address (NM_HTTP_PORT): container logs as
//! YARN's NodeManager lays out their URLs, so links from Spark's and
//! MapReduce's UIs and `yarn application -status` resolve:
//!
//! - `/node/containerlogs/<container>/<user>`: the container's log files
//!   (an HTML list linking each).
//! - `/node/containerlogs/<container>/<user>/<file>?start=&end=`: the
//!   file's bytes from `start` to `end` as plain text; negative values
//!   count from the end, and `start` defaults to -4096 as in YARN's page.
//!
//! Invariants: a container id must parse (typed, digits only) and only
//! picks `logs/<app>/<container>` under the node manager's root; a user or
//! file must be one plain path component; a file must be a regular file
//! directly in that dir, checked through the descriptor that is then read
//! (opened with O_NOFOLLOW), so a symlink a container leaves there cannot
//! name anything else. The user is checked for form only (YARN does not
//! check it either while ACLs are off).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tracing::{info, warn};
use weir_yarn_api::ids::ContainerId;

use crate::body::{Segment, Source};
use crate::error::NmError;
use crate::layout::{self, Layout};

/// YARN's ContainerLogsPage shows the last 4 KiB unless told otherwise.
pub const DEFAULT_START: i64 = -4096;
/// Most files listed for one container.
const MAX_LISTED: usize = 1000;

pub struct WebServer {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl WebServer {
    pub async fn start(bind: SocketAddr, layout: Layout) -> Result<WebServer, NmError> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| NmError::Listen { address: bind.to_string(), source })?;
        let address = listener.local_addr().map_err(|source| NmError::Listen { address: bind.to_string(), source })?;
        let app = router(Arc::new(layout));
        // The default caps and timeouts: the node manager runs in a small
        // cgroup and must not be held open by idle or trickling clients.
        let limits = weir_net::http::HttpLimits::default();
        let listener = weir_net::AdmittingListener::new(listener, limits.connections, "node manager web");
        let task = tokio::spawn(async move {
            if let Err(e) = weir_net::http::serve(listener, app, limits, std::future::pending()).await {
                warn!(error = %e, "the node manager's web server stopped");
            }
        });
        info!(%address, "node manager web server listening");
        Ok(WebServer { address, task })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn router(layout: Arc<Layout>) -> axum::Router {
    axum::Router::new()
        .route("/node/containerlogs/{container}/{user}", get(listing))
        .route("/node/containerlogs/{container}/{user}/", get(listing))
        .route("/node/containerlogs/{container}/{user}/{file}", get(file))
        .route("/node/containerlogs/{container}/{user}/{file}/", get(file))
        .with_state(layout)
}

fn refuse(status: StatusCode, message: String) -> Response {
    warn!(status = status.as_u16(), reason = %message, "container log request refused");
    (status, message).into_response()
}

/// The container's log dir, if the names are well formed.
fn log_dir(layout: &Layout, container: &str, user: &str) -> Result<(ContainerId, std::path::PathBuf), Box<Response>> {
    let bad = |m: String| Box::new(refuse(StatusCode::BAD_REQUEST, m));
    let id: ContainerId = container.parse().map_err(|e| bad(format!("{e}")))?;
    layout::user(user).map_err(|e| bad(e.to_string()))?;
    Ok((id, layout.container_log_dir(id)))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn listing(State(layout): State<Arc<Layout>>, UrlPath((container, user)): UrlPath<(String, String)>) -> Response {
    let (id, dir) = match log_dir(&layout, &container, &user) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let entries = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(String, u64)>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir)?.take(MAX_LISTED) {
            let entry = entry?;
            let meta = entry.metadata()?;
            // symlinks and dirs are not log files (DirEntry::metadata does
            // not follow links).
            if meta.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    files.push((name.to_owned(), meta.len()));
                }
            }
        }
        files.sort();
        Ok(files)
    })
    .await;
    let files = match entries {
        Ok(Ok(files)) => files,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return refuse(StatusCode::NOT_FOUND, format!("Container does not exist or has no logs on this node: {id}"))
        }
        Ok(Err(e)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot list the logs of {id}: {e}")),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut page = format!("<!DOCTYPE html>\n<html><head><title>Logs for {id}</title></head><body>\n<h1>Logs for {id}</h1>\n<ul>\n");
    for (name, len) in files {
        let name = escape(&name);
        page.push_str(&format!(
            "<li><a href=\"/node/containerlogs/{id}/{user}/{name}/?start={DEFAULT_START}\">{name}</a> : Total file length is {len} bytes.</li>\n",
            user = escape(&user)
        ));
    }
    page.push_str("</ul>\n</body></html>\n");
    Html(page).into_response()
}

/// Resolves YARN's start/end (negative counts from the end) against a
/// file of `len` bytes; None when start comes after end.
pub fn range(start: Option<&str>, end: Option<&str>, len: u64) -> Result<(u64, u64), String> {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let parse = |v: Option<&str>, default: i64, what: &str| -> Result<i64, String> {
        match v.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("Invalid log {what} value: {v}")),
        }
    };
    let resolve = |v: i64| if v < 0 { (len_i.saturating_add(v)).max(0) } else { v.min(len_i) };
    let s = resolve(parse(start, DEFAULT_START, "start")?);
    let e = resolve(parse(end, len_i, "end")?);
    if s > e {
        return Err(format!("Invalid start and end values. Start: [{s}] End: [{e}]"));
    }
    Ok((s as u64, e as u64))
}

async fn file(
    State(layout): State<Arc<Layout>>,
    UrlPath((container, user, name)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (id, dir) = match log_dir(&layout, &container, &user) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if let Err(e) = layout::component("log file", &name) {
        return refuse(StatusCode::BAD_REQUEST, e.to_string());
    }
    let path = dir.join(&name);
    let opened = tokio::task::spawn_blocking(move || open_log(&path)).await;
    let (file, len) = match opened {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return refuse(StatusCode::NOT_FOUND, format!("Cannot find this log on the local disk: {name} of {id} ({e})")),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (start, end) = match range(query.get("start").map(String::as_str), query.get("end").map(String::as_str), len) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let body = crate::body::segments(vec![Segment { prefix: Default::default(), source: Source::File(file), offset: start, length: end - start }]);
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    response
}

/// Opens a log without following a symlink and checks, through the same
/// descriptor, that it is a regular file; returns it and its length.
fn open_log(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_yarns_start_and_end() {
        assert_eq!(range(None, None, 10_000), Ok((10_000 - 4096, 10_000)));
        assert_eq!(range(None, None, 100), Ok((0, 100)));
        assert_eq!(range(Some("0"), None, 100), Ok((0, 100)));
        assert_eq!(range(Some("10"), Some("-10"), 100), Ok((10, 90)));
        assert_eq!(range(Some("500"), None, 100), Ok((100, 100)));
        assert!(range(Some("50"), Some("10"), 100).unwrap_err().starts_with("Invalid start and end values"));
        assert!(range(Some("x"), None, 100).is_err());
        assert_eq!(range(Some(&i64::MIN.to_string()), None, 100), Ok((0, 100)));
    }
}
