//! The node manager's web address (NM_HTTP_PORT): container logs as
//! YARN's NodeManager lays out their URLs, so links from Spark's and
//! MapReduce's UIs and `yarn application -status` resolve:
//!
//! - `/node/containerlogs/<container>/<user>`: the container's log files
//!   (an HTML list linking each).
//! - `/node/containerlogs/<container>/<user>/<file>?start=&end=`: the
//!   file's bytes from `start` to `end` as plain text; negative values
//!   count from the end, and `start` defaults to -4096 as in YARN's page.
//! - `/ws/v1/node/containers/<container>/logs`: the NodeManager web
//!   service `yarn logs -applicationId` asks for a running application's
//!   log files (JSON `containerLogsInfo`, aggregation type `LOCAL`).
//! - `/ws/v1/node/info`, `/ws/v1/node/apps[/<app>]`,
//!   `/ws/v1/node/containers[/<container>]`: the NodeManager REST API.
//! - `/ws/v1/node/containers/<container>/logs/<file>?size=N` (and the
//!   older `/ws/v1/node/containerlogs/<container>/<file>`): one file with
//!   the header lines `yarn logs` prints (`LogType:`, `LogLength:`, ...);
//!   `size` > 0 takes the first N bytes, < 0 the last N, absent all.
//!
//! Invariants: a container id must parse (typed, digits only) and only
//! picks `logs/<app>/<container>` under the node manager's root; a user or
//! file must be one plain path component; a file must be a regular file
//! directly in that dir, checked through the descriptor that is then read
//! (opened with O_NOFOLLOW) and owned by the owner of `logs/<app>`, so a
//! symlink a container leaves there, or in place of its log dir, cannot
//! name anything else. The user is checked for form only (YARN does not
//! check it either while ACLs are off).

use std::collections::HashMap;
use std::net::SocketAddr;
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

/// A container as the node manager's REST API shows it.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub id: ContainerId,
    /// YARN's NM container state: NEW, LOCALIZING, RUNNING, DONE.
    pub state: &'static str,
    pub exit_code: Option<i32>,
    pub diagnostics: String,
    pub memory_mb: i64,
    pub vcores: i32,
}

/// The containers the node manager holds now.
pub type Containers = Arc<dyn Fn() -> Vec<ContainerView> + Send + Sync>;

/// What the handlers need: where logs are, the node's id, its containers.
struct Web {
    layout: Layout,
    /// `host:port` of the node manager (YARN's NodeId).
    node_id: String,
    containers: Containers,
    started_ms: i64,
}

pub struct WebServer {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl WebServer {
    /// Serves on `bind`; `node_id` is the node manager's `host:port`.
    pub async fn start(bind: SocketAddr, layout: Layout, node_id: String, containers: Containers) -> Result<WebServer, NmError> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| NmError::Listen { address: bind.to_string(), source })?;
        let address = listener.local_addr().map_err(|source| NmError::Listen { address: bind.to_string(), source })?;
        let app = router(layout, node_id, containers);
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

pub fn router(layout: Layout, node_id: String, containers: Containers) -> axum::Router {
    let started_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    axum::Router::new()
        .route("/ws/v1/node", get(ws_node_info))
        .route("/ws/v1/node/info", get(ws_node_info))
        .route("/ws/v1/node/apps", get(ws_apps))
        .route("/ws/v1/node/apps/{app}", get(ws_app))
        .route("/ws/v1/node/containers", get(ws_containers))
        .route("/ws/v1/node/containers/{container}", get(ws_container))
        .route("/node/containerlogs/{container}/{user}", get(listing))
        .route("/node/containerlogs/{container}/{user}/", get(listing))
        .route("/node/containerlogs/{container}/{user}/{file}", get(file))
        .route("/node/containerlogs/{container}/{user}/{file}/", get(file))
        // Hadoop's web clients (AuthenticatedURL) first send OPTIONS to
        // learn whether the server wants Kerberos; 200 without a
        // WWW-Authenticate challenge means "simple".
        .route("/ws/v1/node/containers/{container}/logs", get(ws_logs).options(allow_get))
        .route("/ws/v1/node/containers/{container}/logs/{file}", get(ws_log_file).options(allow_get))
        .route("/ws/v1/node/containerlogs/{container}/{file}", get(ws_log_file).options(allow_get))
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "no such page on this node manager".into()) })
        .with_state(Arc::new(Web { layout, node_id, containers, started_ms }))
}

async fn allow_get() -> Response {
    ([(header::ALLOW, "GET, OPTIONS")], "").into_response()
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

/// A log file: name, length, last modified.
struct LogFile {
    name: String,
    len: u64,
    modified: std::time::SystemTime,
}

/// The regular files of a container's log dir, by name; an error response
/// when the dir is missing or unreadable.
async fn log_files(id: ContainerId, dir: std::path::PathBuf) -> Result<Vec<LogFile>, Response> {
    let entries = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<LogFile>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir)?.take(MAX_LISTED) {
            let entry = entry?;
            let meta = entry.metadata()?;
            // symlinks and dirs are not log files (DirEntry::metadata does
            // not follow links).
            if meta.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    files.push(LogFile { name: name.to_owned(), len: meta.len(), modified });
                }
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    })
    .await;
    match entries {
        Ok(Ok(files)) => Ok(files),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(refuse(StatusCode::NOT_FOUND, format!("Container does not exist or has no logs on this node: {id}")))
        }
        Ok(Err(e)) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot list the logs of {id}: {e}"))),
        Err(e) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn listing(State(web): State<Arc<Web>>, UrlPath((container, user)): UrlPath<(String, String)>) -> Response {
    let (id, dir) = match log_dir(&web.layout, &container, &user) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let files = match log_files(id, dir).await {
        Ok(files) => files,
        Err(response) => return response,
    };
    let mut page = format!("<!DOCTYPE html>\n<html><head><title>Logs for {id}</title></head><body>\n<h1>Logs for {id}</h1>\n<ul>\n");
    for LogFile { name, len, .. } in files {
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
    State(web): State<Arc<Web>>,
    UrlPath((container, user, name)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (id, dir) = match log_dir(&web.layout, &container, &user) {
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

/// The container's id and log dir, for the web services (no user in
/// their paths).
fn ws_log_dir(layout: &Layout, container: &str) -> Result<(ContainerId, std::path::PathBuf), Box<Response>> {
    let id: ContainerId = container.parse().map_err(|e| Box::new(refuse(StatusCode::BAD_REQUEST, format!("{e}"))))?;
    Ok((id, layout.container_log_dir(id)))
}

/// `GET /ws/v1/node/containers/{id}/logs`: the container's log files as
/// YARN's NMWebServices lists them.
async fn ws_logs(State(web): State<Arc<Web>>, UrlPath(container): UrlPath<String>) -> Response {
    let (id, dir) = match ws_log_dir(&web.layout, &container) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let files = match log_files(id, dir).await {
        Ok(files) => files,
        Err(response) => return response,
    };
    let infos: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            serde_json::json!({
                "fileName": f.name,
                "fileSize": f.len.to_string(),
                "lastModifiedTime": httpdate::fmt_http_date(f.modified),
            })
        })
        .collect();
    let body = serde_json::json!({
        "containerLogsInfo": {
            "containerLogInfo": infos,
            "logAggregationType": "LOCAL",
            "containerId": id.to_string(),
            "nodeId": web.node_id,
        }
    });
    axum::Json(body).into_response()
}

/// `size` as YARN's log web service reads it: the byte range of a file of
/// `len` bytes: > 0 the first N, < 0 the last N, 0 none, absent all.
pub fn size_range(size: Option<&str>, len: u64) -> Result<(u64, u64), String> {
    let size = match size.map(str::trim).filter(|v| !v.is_empty()) {
        None => return Ok((0, len)),
        Some(v) => v.parse::<i64>().map_err(|_| format!("Invalid log size value: {v}"))?,
    };
    Ok(match size {
        0 => (0, 0),
        n if n > 0 => (0, len.min(n.unsigned_abs())),
        n => (len.saturating_sub(n.unsigned_abs()), len),
    })
}

/// `GET /ws/v1/node/containers/{id}/logs/{file}?size=`: the file framed
/// by the header and footer lines `yarn logs` prints for each log.
async fn ws_log_file(
    State(web): State<Arc<Web>>,
    UrlPath((container, name)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (id, dir) = match ws_log_dir(&web.layout, &container) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if let Err(e) = layout::component("log file", &name) {
        return refuse(StatusCode::BAD_REQUEST, e.to_string());
    }
    let path = dir.join(&name);
    let opened = tokio::task::spawn_blocking(move || {
        let (file, len) = open_log(&path)?;
        let modified = file.metadata()?.modified().unwrap_or(std::time::UNIX_EPOCH);
        Ok::<_, std::io::Error>((file, len, modified))
    })
    .await;
    let (file, len, modified) = match opened {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return refuse(StatusCode::NOT_FOUND, format!("Cannot find this log on the local disk: {name} of {id} ({e})")),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (start, end) = match size_range(query.get("size").map(String::as_str), len) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let header = format!(
        "LogAggregationType: LOCAL\n{rule}\nLogType:{name}\nLogLastModifiedTime:{modified}\nLogLength:{len}\nLogContents:\n",
        rule = "=".repeat(name.len() + 9),
        modified = httpdate::fmt_http_date(modified),
    );
    let footer = format!("\nEnd of LogType:{name}\n{}\n\n", "*".repeat(name.len() + 16));
    let total = header.len() as u64 + (end - start) + footer.len() as u64;
    let body = crate::body::segments(vec![
        Segment { prefix: header.into_bytes().into(), source: Source::File(file), offset: start, length: end - start },
        Segment { prefix: footer.into_bytes().into(), source: Source::Nothing, offset: 0, length: 0 },
    ]);
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    response
}

fn not_found_json(message: String) -> Response {
    warn!(reason = %message, "node manager REST request refused");
    let body = serde_json::json!({ "RemoteException": { "exception": "NotFoundException", "message": message, "javaClassName": "org.apache.hadoop.yarn.webapp.NotFoundException" } });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn bad_json(message: String) -> Response {
    let body = serde_json::json!({ "RemoteException": { "exception": "BadRequestException", "message": message, "javaClassName": "org.apache.hadoop.yarn.webapp.BadRequestException" } });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// `GET /ws/v1/node/info`: YARN's `nodeInfo`.
async fn ws_node_info(State(web): State<Arc<Web>>) -> Response {
    let containers = (web.containers)();
    let live = containers.iter().filter(|c| c.state != "DONE");
    let (mem, vcores) = live.fold((0i64, 0i64), |(m, v), c| (m + c.memory_mb, v + i64::from(c.vcores)));
    let host = web.node_id.rsplit_once(':').map_or(web.node_id.as_str(), |(h, _)| h);
    axum::Json(serde_json::json!({
        "nodeInfo": {
            "id": web.node_id,
            "nodeHostName": host,
            "healthReport": "",
            "nodeHealthy": true,
            "lastNodeUpdateTime": web.started_ms,
            "nmStartupTime": web.started_ms,
            "totalPmemAllocatedContainersMB": mem,
            "totalVmemAllocatedContainersMB": mem,
            "totalVCoresAllocatedContainers": vcores,
            "vmemCheckEnabled": false,
            "pmemCheckEnabled": true,
            "nodeManagerVersion": "3.2.1-weir",
            "hadoopVersion": "3.2.1-weir",
        }
    }))
    .into_response()
}

fn container_json(web: &Web, c: &ContainerView) -> serde_json::Value {
    serde_json::json!({
        "id": c.id.to_string(),
        "state": c.state,
        "exitCode": c.exit_code.unwrap_or(-1000),
        "diagnostics": c.diagnostics,
        "totalMemoryNeededMB": c.memory_mb,
        "totalVCoresNeeded": c.vcores,
        "nodeId": web.node_id,
        "containerLogsDir": web.layout.container_log_dir(c.id).display().to_string(),
        "containerLogFiles": [],
    })
}

async fn ws_containers(State(web): State<Arc<Web>>) -> Response {
    let mut containers = (web.containers)();
    containers.sort_by_key(|c| c.id);
    if containers.is_empty() {
        return axum::Json(serde_json::json!({ "containers": null })).into_response();
    }
    let list: Vec<_> = containers.iter().map(|c| container_json(&web, c)).collect();
    axum::Json(serde_json::json!({ "containers": { "container": list } })).into_response()
}

async fn ws_container(State(web): State<Arc<Web>>, UrlPath(raw): UrlPath<String>) -> Response {
    let Ok(id) = raw.parse::<ContainerId>() else { return bad_json(format!("invalid container id, {raw}")) };
    match (web.containers)().into_iter().find(|c| c.id == id) {
        Some(c) => axum::Json(serde_json::json!({ "container": container_json(&web, &c) })).into_response(),
        None => not_found_json(format!("container with id, {raw}, not found")),
    }
}

/// The applications with containers here, each with its containers' ids.
fn apps_of(containers: &[ContainerView]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut apps: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for c in containers {
        apps.entry(c.id.attempt.app.to_string()).or_default().push(c.id.to_string());
    }
    apps.values_mut().for_each(|ids| ids.sort());
    apps
}

async fn ws_apps(State(web): State<Arc<Web>>) -> Response {
    let apps = apps_of(&(web.containers)());
    if apps.is_empty() {
        return axum::Json(serde_json::json!({ "apps": null })).into_response();
    }
    let list: Vec<_> = apps.into_iter().map(|(id, ids)| serde_json::json!({ "id": id, "state": "RUNNING", "containerids": ids })).collect();
    axum::Json(serde_json::json!({ "apps": { "app": list } })).into_response()
}

async fn ws_app(State(web): State<Arc<Web>>, UrlPath(raw): UrlPath<String>) -> Response {
    if raw.parse::<weir_yarn_api::ids::ApplicationId>().is_err() {
        return bad_json(format!("Invalid ApplicationId: {raw}"));
    }
    match apps_of(&(web.containers)()).remove(&raw) {
        Some(ids) => axum::Json(serde_json::json!({ "app": { "id": raw, "state": "RUNNING", "containerids": ids } })).into_response(),
        None => not_found_json(format!("app with id {raw} not found")),
    }
}

/// Opens a log (`logs/<app>/<container>/<file>`) without following a
/// symlink and checks, through the same descriptor, that it is a regular
/// file owned by the owner of `logs/<app>` (the container's user, who
/// could have linked its own log dir anywhere); returns it and its length.
fn open_log(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let app_log_dir = path.parent().and_then(Path::parent).ok_or_else(|| std::io::Error::other("not a container's log"))?;
    let file = crate::identity::open_owned(path, crate::identity::owner_of(app_log_dir)?)?;
    let len = file.metadata()?.len();
    Ok((file, len))
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
