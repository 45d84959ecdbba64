//! The ResourceManager REST API (`/ws/v1/cluster/...`) at the shim's web
//! address, as tools built on YARN's REST read it (`yarn-api-client`,
//! Jupyter Enterprise Gateway, monitoring that reads `/info`):
//!
//! - `/ws/v1/cluster`, `/ws/v1/cluster/info`: `clusterInfo` with
//!   `startedOn`, `haState`, `resourceManagerVersion`.
//! - `/ws/v1/cluster/metrics`: `clusterMetrics`.
//! - `/ws/v1/cluster/apps` with YARN's filters (`states`, `user`, `queue`,
//!   `limit`, `startedTimeBegin`/`End`, `finishedTimeBegin`/`End`,
//!   `applicationTypes`, `applicationTags`), `/apps/{id}`,
//!   `/apps/{id}/state` (GET, and PUT `{"state":"KILLED"}` to kill),
//!   `/apps/{id}/appattempts`, `/apps/{id}/appattempts/{attempt}/containers`.
//! - `/ws/v1/cluster/apps/{id}/queue` and `/priority` (GET, PUT),
//!   `/ws/v1/cluster/apps/new-application` (POST), `/ws/v1/cluster/scheduler`.
//! - `/ws/v1/cluster/nodes`, `/ws/v1/cluster/nodes/{id}`.
//!
//! - `/proxy/{id}/...`: YARN's web proxy to the application master's UI
//!   (its registered tracking URL; GET only, answers up to 16 MiB).
//! - POST `/ws/v1/cluster/apps`: submission over REST (YARN's JSON
//!   `application-submission-context`), as the user of `?user.name=`.
//!
//! JSON, or XML for `Accept: application/xml`; field names and types as
//! YARN's (`RMWebServices`); errors
//! are YARN's `RemoteException` bodies (`exception`, `message`,
//! `javaClassName`) with its status codes. Every answer is built from the
//! same reports the client protocol returns, so the two never disagree.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use tracing::info;
use weir_yarn_api::ids::{ApplicationId, AttemptId, NodeId};
use weir_yarn_api::records as r;

use crate::convert;
use crate::core::CoreHandle;
use crate::acl::{self, AppAccess, Caller};
use crate::rm_core::{AppFilter, AppState, KillOutcome};

/// What `/info` says besides the books.
#[derive(Debug, Clone)]
pub struct RestInfo {
    /// When the shim started (ms since the epoch): `startedOn`, and the
    /// cluster timestamp in application ids.
    pub started_on_ms: i64,
    /// This server's own `host:port`: running applications' `trackingUrl`
    /// goes through its proxy.
    pub proxy: Option<String>,
    /// Kerberos is on for the IPC ports. This API has no SPNEGO, so it
    /// then believes no `?user.name=`: changes and named requests are
    /// refused (401), anonymous reads stay open.
    pub kerberos: bool,
}

struct Rest {
    core: CoreHandle,
    info: RestInfo,
    /// For the web proxy to ApplicationMasters' UIs.
    http: reqwest::Client,
}

/// The Hadoop version clients see (the protocols are Hadoop 3's).
pub const RESOURCE_MANAGER_VERSION: &str = "3.2.1-weir";

/// Longest query value accepted (YARN has no limit; a huge one is an
/// attack, not a filter).
const MAX_QUERY_VALUE: usize = 4096;

pub fn router(core: CoreHandle, info: RestInfo) -> axum::Router {
    axum::Router::new()
        // YARN's web UI lives at /cluster; tools probe it to find the
        // active ResourceManager. A page naming the REST API stands in
        // until Weir has a web UI.
        .route("/cluster", get(cluster_page))
        .route("/ws/v1/cluster", get(cluster_info))
        .route("/ws/v1/cluster/info", get(cluster_info))
        .route("/ws/v1/cluster/metrics", get(cluster_metrics))
        .route("/metrics", get(prometheus_metrics))
        .route("/ws/v1/cluster/apps", get(apps).post(submit))
        .route("/ws/v1/cluster/apps/{id}", get(app))
        .route("/ws/v1/cluster/apps/{id}/state", get(app_state).put(put_app_state))
        .route("/ws/v1/cluster/apps/new-application", axum::routing::post(new_application))
        .route("/ws/v1/cluster/apps/{id}/queue", get(app_queue).put(put_app_queue))
        .route("/ws/v1/cluster/apps/{id}/priority", get(app_priority).put(put_app_priority))
        .route("/ws/v1/cluster/scheduler", get(scheduler))
        .route("/ws/v1/cluster/apps/{id}/appattempts", get(app_attempts))
        .route("/ws/v1/cluster/apps/{id}/appattempts/{attempt}/containers", get(attempt_containers))
        .route("/ws/v1/cluster/nodes", get(nodes))
        .route("/ws/v1/cluster/nodes/{id}", get(node))
        .fallback(|| async { remote_exception(StatusCode::NOT_FOUND, "NotFoundException", "org.apache.hadoop.yarn.webapp.NotFoundException", "no such resource") })
        .route("/proxy/{id}", get(proxy_root))
        .route("/proxy/{id}/", get(proxy))
        .route("/proxy/{id}/{*rest}", get(proxy))
        .with_state(Arc::new(Rest { core, info, http: proxy_client() }))
        .layer(axum::middleware::from_fn(xml_when_asked))
        .layer(axum::middleware::from_fn(options_probe))
}

/// `Accept: application/xml` (and not JSON): the JSON answer rewritten as
/// YARN's XML (the top key is the root element, arrays repeat their
/// element, `null` is an empty element).
async fn xml_when_asked(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let accept = request.headers().get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let wants_xml = accept.contains("xml") && !accept.contains("json");
    let response = next.run(request).await;
    if !wants_xml {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let json_body = parts.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.contains("json"));
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return remote_exception(StatusCode::INTERNAL_SERVER_ERROR, "WebApplicationException", "javax.ws.rs.WebApplicationException", "answer too large");
    };
    let Some(value) = json_body.then(|| serde_json::from_slice::<Value>(&bytes).ok()).flatten() else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>");
    if let Value::Object(map) = &value {
        for (name, inner) in map {
            to_xml(name, inner, &mut xml);
        }
    }
    parts.headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/xml"));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(xml))
}

fn to_xml(name: &str, value: &Value, out: &mut String) {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    match value {
        Value::Array(items) => items.iter().for_each(|item| to_xml(name, item, out)),
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in map {
                to_xml(k, v, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

/// Hadoop's web clients (AuthenticatedURL: `yarn top`, `yarn logs`) first
/// send OPTIONS to learn whether the server wants Kerberos; 200 without a
/// WWW-Authenticate challenge means "simple", on every path.
async fn options_probe(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.method() == axum::http::Method::OPTIONS {
        return ([(axum::http::header::ALLOW, "GET, PUT, POST, OPTIONS")], "").into_response();
    }
    next.run(request).await
}

/// YARN's error body.
fn remote_exception(status: StatusCode, exception: &str, class: &str, message: &str) -> Response {
    let body = json!({ "RemoteException": { "exception": exception, "message": message, "javaClassName": class } });
    (status, axum::Json(body)).into_response()
}

fn not_found(message: String) -> Response {
    remote_exception(StatusCode::NOT_FOUND, "NotFoundException", "org.apache.hadoop.yarn.webapp.NotFoundException", &message)
}

fn bad_request(message: String) -> Response {
    remote_exception(StatusCode::BAD_REQUEST, "BadRequestException", "org.apache.hadoop.yarn.webapp.BadRequestException", &message)
}

fn unavailable() -> Response {
    remote_exception(
        StatusCode::SERVICE_UNAVAILABLE,
        "YarnException",
        "org.apache.hadoop.yarn.exceptions.YarnException",
        "the ResourceManager is shutting down",
    )
}

fn app_id_text(report: &r::ApplicationReportProto) -> String {
    convert::app_id_from_proto("application_id", report.application_id.as_ref()).map(|id| id.to_string()).unwrap_or_default()
}

/// `appattempt_<cluster timestamp>_<app>_<attempt>`, as YARN prints it.
fn attempt_id(raw: &str) -> Option<AttemptId> {
    let rest = raw.strip_prefix("appattempt_")?;
    let (app, attempt) = rest.rsplit_once('_')?;
    let app: ApplicationId = format!("application_{app}").parse().ok()?;
    let attempt = attempt.parse::<i32>().ok().filter(|a| *a > 0)?;
    Some(AttemptId { app, attempt })
}

fn app_id(raw: &str) -> Result<ApplicationId, Response> {
    raw.parse().map_err(|_| bad_request(format!("Invalid ApplicationId: {raw}")))
}

async fn cluster_page() -> Response {
    axum::response::Html(
        "<!DOCTYPE html>\n<html><head><title>Weir: YARN ResourceManager</title></head><body>\n<h1>Weir's YARN ResourceManager</h1>\n<p>REST API: <a href=\"/ws/v1/cluster/info\">/ws/v1/cluster/info</a>, <a href=\"/ws/v1/cluster/apps\">/ws/v1/cluster/apps</a>, <a href=\"/ws/v1/cluster/nodes\">/ws/v1/cluster/nodes</a>.</p>\n</body></html>\n",
    )
    .into_response()
}

async fn cluster_info(State(rest): State<Arc<Rest>>) -> Response {
    let started = rest.info.started_on_ms;
    axum::Json(json!({
        "clusterInfo": {
            "id": started,
            "startedOn": started,
            "state": "STARTED",
            "haState": "ACTIVE",
            "rmStateStoreName": "none (Weir keeps YARN's books in the shim)",
            "resourceManagerVersion": RESOURCE_MANAGER_VERSION,
            "resourceManagerBuildVersion": format!("{RESOURCE_MANAGER_VERSION} from weir {}", env!("CARGO_PKG_VERSION")),
            "resourceManagerVersionBuiltOn": "",
            "hadoopVersion": RESOURCE_MANAGER_VERSION,
            "hadoopBuildVersion": format!("{RESOURCE_MANAGER_VERSION} from weir {}", env!("CARGO_PKG_VERSION")),
            "hadoopVersionBuiltOn": "",
            "haZooKeeperConnectionState": "ResourceManager HA is not enabled.",
        }
    }))
    .into_response()
}

fn mb(c: Option<&r::ResourceProto>) -> i64 {
    c.and_then(|c| c.memory).unwrap_or(0)
}

fn vcores(c: Option<&r::ResourceProto>) -> i64 {
    i64::from(c.and_then(|c| c.virtual_cores).unwrap_or(0))
}

/// `/metrics`: the shim's Prometheus metrics (see `metrics.rs`).
async fn prometheus_metrics(State(rest): State<Arc<Rest>>) -> Response {
    match crate::metrics::scrape(&rest.core).await {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => unavailable(),
    }
}

async fn cluster_metrics(State(rest): State<Arc<Rest>>) -> Response {
    let found = rest
        .core
        .call(|core, _| {
            let rm = core.rm();
            let apps: Vec<AppState> = rm.applications(&AppFilter::default()).iter().map(|a| a.state).collect();
            let nodes: Vec<r::NodeReportProto> = rm.nodes(&[]).into_iter().map(convert::node_to_proto).collect();
            (apps, nodes, rm.cluster_metrics(), core.scheduler().pending())
        })
        .await;
    let Ok((apps, nodes, m, (pending, pending_mb, pending_vc))) = found else { return unavailable() };
    let count = |f: fn(&AppState) -> bool| apps.iter().filter(|s| f(s)).count();
    let total_mb: i64 = nodes.iter().map(|n| mb(n.capability.as_ref())).sum();
    let used_mb: i64 = nodes.iter().map(|n| mb(n.used.as_ref())).sum();
    let total_vc: i64 = nodes.iter().map(|n| vcores(n.capability.as_ref())).sum();
    let used_vc: i64 = nodes.iter().map(|n| vcores(n.used.as_ref())).sum();
    let containers: i64 = nodes.iter().map(|n| i64::from(n.num_containers.unwrap_or(0))).sum();
    axum::Json(json!({
        "clusterMetrics": {
            "appsSubmitted": apps.len(),
            "appsCompleted": count(|s| matches!(s, AppState::Finished | AppState::Failed | AppState::Killed)),
            "appsPending": count(|s| matches!(s, AppState::New | AppState::Submitted | AppState::Accepted)),
            "appsRunning": count(|s| matches!(s, AppState::Running)),
            "appsFailed": count(|s| matches!(s, AppState::Failed)),
            "appsKilled": count(|s| matches!(s, AppState::Killed)),
            "reservedMB": 0,
            "pendingMB": pending_mb,
            "availableMB": (total_mb - used_mb).max(0),
            "allocatedMB": used_mb,
            "totalMB": total_mb,
            "reservedVirtualCores": 0,
            "pendingVirtualCores": pending_vc,
            "availableVirtualCores": (total_vc - used_vc).max(0),
            "allocatedVirtualCores": used_vc,
            "totalVirtualCores": total_vc,
            "containersAllocated": containers,
            "containersReserved": 0,
            "containersPending": pending,
            "totalNodes": m.node_managers,
            "activeNodes": m.active,
            "lostNodes": m.lost,
            "unhealthyNodes": m.unhealthy,
            "decommissioningNodes": 0,
            "decommissionedNodes": 0,
            "rebootedNodes": 0,
            "shutdownNodes": 0,
        }
    }))
    .into_response()
}

/// The JSON YARN's `AppInfo` has, from the client protocol's report.
fn app_json(report: &r::ApplicationReportProto, cluster_id: i64, am: Option<&r::ContainerReportProto>) -> Value {
    let id = app_id_text(report);
    let state = state_name(report);
    let final_status = r::FinalApplicationStatusProto::try_from(report.final_application_status.unwrap_or(0))
        .map(|s| s.as_str_name().trim_start_matches("APP_").to_owned())
        .unwrap_or_default();
    let usage = report.app_resource_usage.clone().unwrap_or_default();
    let start = report.start_time.unwrap_or(0);
    let finish = report.finish_time.unwrap_or(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let elapsed = if start <= 0 { 0 } else if finish > 0 { finish - start } else { now - start };
    let tracking = report.tracking_url.clone().filter(|u| u != "N/A");
    let (am_host_http, am_logs) = match am {
        Some(c) => {
            let http = c.node_http_address.clone().unwrap_or_default();
            (http.trim_start_matches("http://").to_owned(), c.log_url.clone().unwrap_or_default())
        }
        None => (String::new(), String::new()),
    };
    let am_rpc = match (report.host.as_deref(), report.rpc_port) {
        (Some(h), Some(p)) if h != "N/A" && p >= 0 => format!("{h}:{p}"),
        _ => "N/A".to_owned(),
    };
    json!({
        "id": id,
        "user": report.user.clone().unwrap_or_default(),
        "name": report.name.clone().unwrap_or_default(),
        "queue": report.queue.clone().unwrap_or_default(),
        "state": state,
        "finalStatus": final_status,
        "progress": f64::from(report.progress.unwrap_or(0.0)) * 100.0,
        "trackingUI": if tracking.is_some() { if finish > 0 { "History" } else { "ApplicationMaster" } } else { "UNASSIGNED" },
        "trackingUrl": tracking.unwrap_or_default(),
        "diagnostics": report.diagnostics.clone().unwrap_or_default(),
        "clusterId": cluster_id,
        "applicationType": report.application_type.clone().unwrap_or_default(),
        "applicationTags": report.application_tags.join(","),
        "priority": report.priority.as_ref().and_then(|p| p.priority).unwrap_or(0),
        // YARN's documented name for the same value (ResourceManagerRest,
        // "Cluster Application API"); the RM's JSON carries both.
        "applicationPriority": report.priority.as_ref().and_then(|p| p.priority).unwrap_or(0),
        "startedTime": start,
        "launchTime": report.launch_time.unwrap_or(start),
        "finishedTime": finish,
        "elapsedTime": elapsed,
        "amContainerLogs": am_logs,
        "amHostHttpAddress": am_host_http,
        "amRPCAddress": am_rpc,
        "allocatedMB": mb(usage.used_resources.as_ref()),
        "allocatedVCores": vcores(usage.used_resources.as_ref()),
        "reservedMB": mb(usage.reserved_resources.as_ref()),
        "reservedVCores": vcores(usage.reserved_resources.as_ref()),
        "runningContainers": usage.num_used_containers.unwrap_or(0),
        "memorySeconds": usage.memory_seconds.unwrap_or(0),
        "vcoreSeconds": usage.vcore_seconds.unwrap_or(0),
        "queueUsagePercentage": usage.queue_usage_percentage.unwrap_or(0.0),
        "clusterUsagePercentage": usage.cluster_usage_percentage.unwrap_or(0.0),
        "preemptedResourceMB": 0,
        "preemptedResourceVCores": 0,
        "numNonAMContainerPreempted": 0,
        "numAMContainerPreempted": 0,
        "preemptedMemorySeconds": 0,
        "preemptedVcoreSeconds": 0,
        "logAggregationStatus": "DISABLED",
        "unmanagedApplication": report.unmanaged_application.unwrap_or(false),
        "appNodeLabelExpression": "",
        "amNodeLabelExpression": "",
    })
}

/// Reports of the applications `filter` picks, with their usage and the
/// AM container's report (for its log link), and the cluster id.
/// `only`: that one application (none if it is unknown), not `filter`.
async fn reports(
    rest: &Rest,
    filter: AppFilter,
    only: Option<ApplicationId>,
    viewer: Caller,
) -> Result<(Vec<(r::ApplicationReportProto, Option<r::ContainerReportProto>)>, i64), Response> {
    let proxy = rest.info.proxy.clone();
    let found = rest
        .core
        .call(move |core, now| {
            let apps = match only {
                Some(id) => core.rm().application(id).ok().into_iter().collect(),
                None => core.rm().applications(&filter),
            };
            let out = apps
                .into_iter()
                .map(|app| {
                    let mut report = convert::report_to_proto(app);
                    convert::through_proxy(&mut report, proxy.as_deref());
                    convert::add_usage(&mut report, &core.app_usage(app.id(), now.unix_ms));
                    convert::add_remaining_lifetime(&mut report, app, now.unix_ms);
                    let am = core
                        .attempt_reports(app.id())
                        .ok()
                        .and_then(|attempts| attempts.into_iter().last())
                        .and_then(|a| a.am_container.map(|c| (c, a.start_ms)))
                        // An ended AM container is no longer in the ledger;
                        // its attempt still names it, and its logs stay on
                        // the node (YARN reports the link then too).
                        .map(|(c, started)| core.container_report(c.id).unwrap_or(crate::core::ContainerReport { container: c, is_am: true, created_ms: started }))
                        .map(|c| convert::container_report_to_proto(&c, Some(&c.container.node_http_address())));
                    if core.rm().may_view(&viewer, app) {
                        (report, am)
                    } else {
                        acl::redact(&mut report);
                        (report, None)
                    }
                })
                .collect::<Vec<_>>();
            (out, core.rm().cluster_timestamp())
        })
        .await;
    found.map_err(|_| unavailable())
}

fn query_value<'a>(q: &'a HashMap<String, String>, key: &str) -> Result<Option<&'a str>, Response> {
    match q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(v) if v.len() > MAX_QUERY_VALUE => Err(bad_request(format!("{key}: a value of {} bytes is longer than {MAX_QUERY_VALUE}", v.len()))),
        v => Ok(v),
    }
}

/// Who a request without `?user.name=` is (Hadoop's static web user).
const ANONYMOUS: &str = "dr.who";

/// Whether the shim enforces ACLs.
async fn acls_on(rest: &Rest) -> Result<bool, Response> {
    rest.core.call(|core, _| core.rm().acls().enabled).await.map_err(|_| unavailable())
}

/// The user a request names with `?user.name=` (Hadoop's pseudo
/// authentication), with their groups when ACLs are on; `None` when it
/// names nobody.
async fn named_caller(rest: &Rest, q: &HashMap<String, String>) -> Result<Option<Caller>, Response> {
    let Some(user) = query_value(q, "user.name")? else { return Ok(None) };
    if rest.info.kerberos {
        return Err(kerberos_required());
    }
    let groups = if acls_on(rest).await? {
        crate::admin_protocol::groups_for(acl::short_name(user)).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Some(Caller::new(user, groups)))
}

/// Who reads: the named user, else the anonymous web user (who, with
/// ACLs on, sees applications only as someone without VIEW_APP does).
async fn viewer(rest: &Rest, q: &HashMap<String, String>) -> Result<Caller, Response> {
    Ok(named_caller(rest, q).await?.unwrap_or_else(|| Caller::new(ANONYMOUS, Vec::new())))
}

/// Who changes something: with ACLs on the request must name a user
/// (YARN's 403 otherwise); with them off anyone may, as the anonymous user.
async fn changer(rest: &Rest, q: &HashMap<String, String>) -> Result<Caller, Response> {
    if rest.info.kerberos {
        return Err(kerberos_required());
    }
    match named_caller(rest, q).await? {
        Some(c) => Ok(c),
        None if acls_on(rest).await? => Err(forbidden("Unable to obtain user name, user not authenticated")),
        None => Ok(Caller::new(ANONYMOUS, Vec::new())),
    }
}

/// What a Kerberized Hadoop web API answers a request without SPNEGO
/// (the shim speaks none, so with Kerberos on nobody is authenticated here).
fn kerberos_required() -> Response {
    remote_exception(
        StatusCode::UNAUTHORIZED,
        "AuthenticationException",
        "org.apache.hadoop.security.authentication.client.AuthenticationException",
        "Authentication required: Kerberos is on and this REST API does not speak SPNEGO; use the yarn CLI (Kerberos over IPC) to change applications",
    )
}

fn forbidden(message: &str) -> Response {
    remote_exception(StatusCode::FORBIDDEN, "AuthorizationException", "org.apache.hadoop.security.authorize.AuthorizationException", message)
}

/// An application change refused by an ACL is YARN's 403; other refusals
/// its 400 (and an unknown application its 404).
fn change_refused(raw: &str, e: crate::rm_core::RmError) -> Response {
    match e {
        crate::rm_core::RmError::ApplicationNotFound(_) => not_found(format!("app with id: {raw} not found")),
        crate::rm_core::RmError::AccessDenied(_) => forbidden(&e.to_string()),
        e => bad_request(e.to_string()),
    }
}

fn list(q: &HashMap<String, String>, key: &str) -> Result<Vec<String>, Response> {
    Ok(query_value(q, key)?.map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()).unwrap_or_default())
}

fn time(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, Response> {
    match query_value(q, key)? {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(t) if t >= 0 => Ok(Some(t)),
            _ => Err(bad_request(format!("{key} must be greater than 0"))),
        },
    }
}

/// YARN's `/apps` query parameters as an [`AppFilter`].
fn filter_from_query(q: &HashMap<String, String>) -> Result<AppFilter, Response> {
    let mut states = Vec::new();
    for s in list(q, "states")?.into_iter().chain(query_value(q, "state")?.map(str::to_owned)) {
        let state = match s.to_ascii_uppercase().as_str() {
            "NEW" => AppState::New,
            "NEW_SAVING" => AppState::New,
            "SUBMITTED" => AppState::Submitted,
            "ACCEPTED" => AppState::Accepted,
            "RUNNING" => AppState::Running,
            "FINISHED" => AppState::Finished,
            "FAILED" => AppState::Failed,
            "KILLED" => AppState::Killed,
            _ => {
                return Err(bad_request(format!(
                    "Invalid application-state {s} specified. It should be one of NEW, NEW_SAVING, SUBMITTED, ACCEPTED, RUNNING, FINISHED, FAILED, KILLED"
                )))
            }
        };
        states.push(state);
    }
    let range = |b: Option<i64>, e: Option<i64>| -> Result<Option<(i64, i64)>, Response> {
        match (b, e) {
            (None, None) => Ok(None),
            (b, e) => {
                let (b, e) = (b.unwrap_or(0), e.unwrap_or(i64::MAX));
                if b > e {
                    return Err(bad_request("the begin time must not be after the end time".into()));
                }
                Ok(Some((b, e)))
            }
        }
    };
    let limit = match query_value(q, "limit")? {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(l) if l > 0 => Some(usize::try_from(l).unwrap_or(usize::MAX)),
            _ => return Err(bad_request("limit value must be greater then 0".into())),
        },
    };
    Ok(AppFilter {
        states,
        types: list(q, "applicationTypes")?,
        queues: list(q, "queue")?.into_iter().map(|q| q.strip_prefix("root.").map(str::to_owned).unwrap_or(q)).collect(),
        users: list(q, "user")?,
        tags: list(q, "applicationTags")?,
        name: query_value(q, "name")?.map(str::to_owned),
        start_range: range(time(q, "startedTimeBegin")?, time(q, "startedTimeEnd")?)?,
        finish_range: range(time(q, "finishedTimeBegin")?, time(q, "finishedTimeEnd")?)?,
        limit,
    })
}

async fn apps(State(rest): State<Arc<Rest>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let filter = match filter_from_query(&q) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let final_status = match query_value(&q, "finalStatus") {
        Ok(v) => v.map(str::to_ascii_uppercase),
        Err(e) => return e,
    };
    let viewer = match viewer(&rest, &q).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let (found, cluster) = match reports(&rest, filter, None, viewer).await {
        Ok(f) => f,
        Err(e) => return e,
    };
    let apps: Vec<Value> = found
        .iter()
        .map(|(report, am)| app_json(report, cluster, am.as_ref()))
        .filter(|app| final_status.as_deref().is_none_or(|f| app["finalStatus"] == f))
        .collect();
    // YARN answers `"apps": null` when none match.
    let body = if apps.is_empty() { json!({ "apps": null }) } else { json!({ "apps": { "app": apps } }) };
    axum::Json(body).into_response()
}

/// One application's report as `viewer` may see it, or YARN's 404.
async fn one(rest: &Rest, raw: &str, viewer: Caller) -> Result<(r::ApplicationReportProto, Option<r::ContainerReportProto>, i64), Response> {
    let id = app_id(raw)?;
    let (found, cluster) = reports(rest, AppFilter::default(), Some(id), viewer).await?;
    let (report, am) = found.into_iter().next().ok_or_else(|| not_found(format!("app with id: {raw} not found")))?;
    Ok((report, am, cluster))
}

async fn app(State(rest): State<Arc<Rest>>, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let viewer = match viewer(&rest, &q).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    match one(&rest, &id, viewer).await {
        Ok((report, am, cluster)) => axum::Json(json!({ "app": app_json(&report, cluster, am.as_ref()) })).into_response(),
        Err(e) => e,
    }
}

fn state_name(report: &r::ApplicationReportProto) -> String {
    r::YarnApplicationStateProto::try_from(report.yarn_application_state.unwrap_or(0))
        .map(|s| s.as_str_name().trim_start_matches("APP_").to_owned())
        .unwrap_or_default()
}

async fn app_state(State(rest): State<Arc<Rest>>, Path(id): Path<String>) -> Response {
    match one(&rest, &id, Caller::new(ANONYMOUS, Vec::new())).await {
        Ok((report, _, _)) => axum::Json(json!({ "state": state_name(&report) })).into_response(),
        Err(e) => e,
    }
}

/// PUT `{"state":"KILLED"}`: kills the application (202 while it was
/// live, 200 when it had already ended, as YARN answers).
async fn put_app_state(
    State(rest): State<Arc<Rest>>,
    Path(raw): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let id = match app_id(&raw) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let caller = match changer(&rest, &q).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let wanted: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("the body is not a JSON application state: {e}")),
    };
    match wanted.get("state").and_then(Value::as_str) {
        Some("KILLED") => {}
        Some(other) => return bad_request(format!("Only 'KILLED' is allowed as a target state, not {other}")),
        None => return bad_request("the body names no \"state\"".into()),
    }
    let user = caller.user.clone();
    let outcome = rest
        .core
        .call(move |core, now| {
            core.rm().checked(&caller, id, AppAccess::Modify)?;
            core.rm_mut().kill(id, Some("Application killed by a REST call"), now.unix_ms)
        })
        .await;
    match outcome {
        Err(_) => unavailable(),
        Ok(Err(e)) => change_refused(&raw, e),
        Ok(Ok(KillOutcome::Killed)) => {
            info!(application_id = %id, %user, "application killed over REST");
            (StatusCode::ACCEPTED, axum::Json(json!({ "state": "KILLED" }))).into_response()
        }
        Ok(Ok(KillOutcome::AlreadyFinal(state))) => {
            let name = format!("{state:?}").to_ascii_uppercase();
            axum::Json(json!({ "state": name })).into_response()
        }
    }
}

async fn app_attempts(State(rest): State<Arc<Rest>>, Path(raw): Path<String>) -> Response {
    let id = match app_id(&raw) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let found = rest
        .core
        .call(move |core, _| {
            core.attempt_reports(id).map(|attempts| {
                attempts
                    .into_iter()
                    .map(|a| {
                        let proto = convert::attempt_report_to_proto(&a);
                        let am = a.am_container.and_then(|c| core.container_report(c.id).ok());
                        (proto, am.map(|c| convert::container_report_to_proto(&c, Some(&c.container.node_http_address()))))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await;
    let attempts = match found {
        Err(_) => return unavailable(),
        Ok(Err(_)) => return not_found(format!("app with id: {raw} not found")),
        Ok(Ok(a)) => a,
    };
    let json_attempts: Vec<Value> = attempts
        .iter()
        .map(|(a, am)| {
            let attempt_id = a.application_attempt_id.as_ref().and_then(|p| convert::attempt_from_proto(Some(p)));
            let state = r::YarnApplicationAttemptStateProto::try_from(a.yarn_application_attempt_state.unwrap_or(0))
                .map(|s| s.as_str_name().trim_start_matches("APP_ATTEMPT_").to_owned())
                .unwrap_or_default();
            let (node_http, node_id, logs) = match am {
                Some(c) => (
                    c.node_http_address.clone().unwrap_or_default().trim_start_matches("http://").to_owned(),
                    c.node_id.as_ref().map(|n| format!("{}:{}", n.host.clone().unwrap_or_default(), n.port.unwrap_or(0))).unwrap_or_default(),
                    c.log_url.clone().unwrap_or_default(),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            json!({
                "id": attempt_id.map_or(0, |a| a.attempt),
                "startTime": a.start_time.unwrap_or(0),
                "finishedTime": a.finish_time.unwrap_or(0),
                "containerId": am.as_ref().and_then(|c| c.container_id.as_ref()).and_then(convert::container_from_proto).map(|c| c.to_string()).unwrap_or_default(),
                "nodeHttpAddress": node_http,
                "nodeId": node_id,
                "logsLink": logs,
                "blacklistedNodes": "",
                "nodesBlacklistedBySystem": "",
                "appAttemptId": attempt_id.map(|a| a.to_string()).unwrap_or_default(),
                "appAttemptState": state,
            })
        })
        .collect();
    axum::Json(json!({ "appAttempts": { "appAttempt": json_attempts } })).into_response()
}

async fn attempt_containers(State(rest): State<Arc<Rest>>, Path((raw, attempt)): Path<(String, String)>) -> Response {
    let id = match app_id(&raw) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let Some(attempt) = attempt_id(&attempt) else {
        return bad_request(format!("Invalid AppAttemptId: {attempt}"));
    };
    if attempt.app != id {
        return bad_request(format!("{attempt} is not an attempt of {raw}"));
    }
    let found = rest.core.call(move |core, _| core.container_reports(attempt)).await;
    let containers = match found {
        Err(_) => return unavailable(),
        Ok(Err(_)) => return not_found(format!("Application attempt {attempt} not found")),
        Ok(Ok(c)) => c,
    };
    let json_containers: Vec<Value> = containers
        .iter()
        .map(|c| {
            let p = convert::container_report_to_proto(c, Some(&c.container.node_http_address()));
            let state = r::ContainerStateProto::try_from(p.container_state.unwrap_or(0))
                .map(|s| s.as_str_name().trim_start_matches("C_").to_owned())
                .unwrap_or_default();
            json!({
                "containerId": c.container.id.to_string(),
                "allocatedMB": c.container.capacity.memory_mb,
                "allocatedVCores": c.container.capacity.vcores,
                "assignedNodeId": c.container.node.to_string(),
                "priority": c.container.priority,
                "startedTime": p.creation_time.unwrap_or(0),
                "finishedTime": p.finish_time.unwrap_or(0),
                "elapsedTime": p.finish_time.unwrap_or(0).saturating_sub(p.creation_time.unwrap_or(0)).max(0),
                "logUrl": p.log_url.clone().unwrap_or_default(),
                "containerExitStatus": p.container_exit_status.unwrap_or(0),
                "containerState": state,
                "nodeHttpAddress": p.node_http_address.clone().unwrap_or_default(),
                "nodeId": c.container.node.to_string(),
                "diagnosticsInfo": p.diagnostics_info.clone().unwrap_or_default(),
            })
        })
        .collect();
    axum::Json(json!({ "containers": { "container": json_containers } })).into_response()
}

/// YARN's JSON map shapes: `{"entry": [{"key":…,"value":…}]}`, a single
/// entry object, or nothing.
fn entries(v: Option<&Value>) -> Vec<&serde_json::Map<String, Value>> {
    match v.and_then(|m| m.get("entry")) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        Some(Value::Object(one)) => vec![one],
        _ => Vec::new(),
    }
}

/// `scheme://[user@]host[:port]/file` as YARN's URL record.
fn url_proto(raw: &str) -> Result<r::UrlProto, String> {
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| format!("resource {raw:?} is not a URL (scheme://…)"))?;
    let (authority, file) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (user_info, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<i32>().map_err(|_| format!("resource {raw:?} has a bad port"))?)),
        None => (hostport, None),
    };
    Ok(r::UrlProto {
        scheme: Some(scheme.to_owned()),
        host: (!host.is_empty()).then(|| host.to_owned()),
        port,
        file: Some(file.to_owned()),
        user_info,
    })
}

/// YARN's JSON `application-submission-context` as the protocol's record.
pub fn submission_context_from_json(v: &Value) -> Result<r::ApplicationSubmissionContextProto, String> {
    let obj = v.as_object().ok_or("the body is not a JSON object")?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let raw_id = text("application-id").ok_or("application-id is missing")?;
    let id: ApplicationId = raw_id.parse().map_err(|_| format!("Invalid ApplicationId: {raw_id}"))?;
    let spec = obj.get("am-container-spec");
    let mut launch = r::ContainerLaunchContextProto::default();
    for e in entries(spec.and_then(|s| s.get("local-resources"))) {
        let key = e.get("key").and_then(Value::as_str).ok_or("a local resource has no key")?;
        let value = e.get("value").and_then(Value::as_object).ok_or_else(|| format!("local resource {key} has no value"))?;
        let resource = value.get("resource").and_then(Value::as_str).ok_or_else(|| format!("local resource {key} names no resource"))?;
        let kind = match value.get("type").and_then(Value::as_str).unwrap_or("FILE") {
            "ARCHIVE" => r::LocalResourceTypeProto::Archive,
            "PATTERN" => r::LocalResourceTypeProto::Pattern,
            "FILE" => r::LocalResourceTypeProto::File,
            other => return Err(format!("local resource {key}: unknown type {other}")),
        };
        let visibility = match value.get("visibility").and_then(Value::as_str).unwrap_or("APPLICATION") {
            "PUBLIC" => r::LocalResourceVisibilityProto::Public,
            "PRIVATE" => r::LocalResourceVisibilityProto::Private,
            "APPLICATION" => r::LocalResourceVisibilityProto::Application,
            other => return Err(format!("local resource {key}: unknown visibility {other}")),
        };
        launch.local_resources.push(r::StringLocalResourceMapProto {
            key: Some(key.to_owned()),
            value: Some(r::LocalResourceProto {
                resource: Some(url_proto(resource)?),
                size: value.get("size").and_then(Value::as_i64),
                timestamp: value.get("timestamp").and_then(Value::as_i64),
                r#type: Some(kind as i32),
                visibility: Some(visibility as i32),
                pattern: value.get("pattern").and_then(Value::as_str).map(str::to_owned),
            }),
        });
    }
    for e in entries(spec.and_then(|s| s.get("environment"))) {
        let key = e.get("key").and_then(Value::as_str).ok_or("an environment entry has no key")?;
        let value = e.get("value").and_then(Value::as_str).unwrap_or_default();
        launch.environment.push(r::StringStringMapProto { key: Some(key.to_owned()), value: Some(value.to_owned()) });
    }
    match spec.and_then(|s| s.get("commands")).and_then(|c| c.get("command")) {
        Some(Value::String(c)) => launch.command.push(c.clone()),
        Some(Value::Array(cs)) => launch.command.extend(cs.iter().filter_map(Value::as_str).map(str::to_owned)),
        _ => return Err("am-container-spec.commands.command is missing".into()),
    }
    let resource = obj.get("resource").map(|res| r::ResourceProto {
        memory: res.get("memory").and_then(Value::as_i64),
        virtual_cores: res.get("vCores").and_then(Value::as_i64).and_then(|v| i32::try_from(v).ok()),
        ..Default::default()
    });
    let tags = match obj.get("application-tags").and_then(|t| t.get("tag")) {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    Ok(r::ApplicationSubmissionContextProto {
        application_id: Some(convert::app_id_to_proto(id)),
        application_name: text("application-name"),
        queue: text("queue"),
        priority: obj.get("priority").and_then(Value::as_i64).map(|p| r::PriorityProto { priority: i32::try_from(p).ok() }),
        am_container_spec: Some(launch),
        unmanaged_am: obj.get("unmanaged-AM").and_then(Value::as_bool),
        max_app_attempts: obj.get("max-app-attempts").and_then(Value::as_i64).and_then(|v| i32::try_from(v).ok()),
        resource,
        application_type: text("application-type"),
        keep_containers_across_application_attempts: obj.get("keep-containers-across-application-attempts").and_then(Value::as_bool),
        application_tags: tags,
        ..Default::default()
    })
}

/// POST `/ws/v1/cluster/apps`: submitApplication from YARN's JSON; 202
/// with the application's location, as YARN answers.
async fn submit(State(rest): State<Arc<Rest>>, Query(q): Query<HashMap<String, String>>, body: axum::body::Bytes) -> Response {
    if rest.info.kerberos {
        return kerberos_required();
    }
    let user = match query_value(&q, "user.name") {
        Ok(Some(u)) => u.to_owned(),
        // With ACLs on, nobody submits without saying who they are.
        Ok(None) => match acls_on(&rest).await {
            Ok(true) => return forbidden("Unable to obtain user name, user not authenticated"),
            Ok(false) => std::env::var("USER").unwrap_or_else(|_| ANONYMOUS.into()),
            Err(e) => return e,
        },
        Err(e) => return e,
    };
    let value = match body_json(&body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let context = match submission_context_from_json(&value) {
        Ok(c) => c,
        Err(e) => return bad_request(e),
    };
    let mut submission = match convert::submission_from_proto(&context, &user) {
        Ok(s) => s,
        Err(e) => return bad_request(e.to_string()),
    };
    let id = submission.id;
    // The queue mappings apply as on the client protocol (g: rules need
    // the user's groups, read only when there are mappings).
    let mapped = rest.core.call(|core, _| core.rm().queue_conf().is_some_and(|c| c.needs_groups())).await.unwrap_or(false);
    let acls = match acls_on(&rest).await {
        Ok(on) => on,
        Err(e) => return e,
    };
    let groups = if mapped || acls { crate::admin_protocol::groups_for(acl::short_name(&user)).await.unwrap_or_default() } else { Vec::new() };
    let caller = Caller::new(&user, groups.clone());
    match rest
        .core
        .call(move |core, now| {
            submission.queue = match core.place(&submission.user, &groups, &submission.queue) {
                Ok(queue) => queue,
                Err(why) => return core.rm_mut().submit_rejected(submission, why, now.unix_ms),
            };
            if !core.rm().may_submit(&caller, &submission.queue) {
                return Err(crate::rm_core::RmError::AccessDenied(format!(
                    "User {} does not have permission to submit {} to queue {}",
                    caller.user, submission.id, submission.queue
                )));
            }
            core.rm_mut().submit(submission, now.unix_ms)
        })
        .await
    {
        Err(_) => unavailable(),
        Ok(Err(e @ crate::rm_core::RmError::AccessDenied(_))) => forbidden(&e.to_string()),
        Ok(Err(e)) => bad_request(e.to_string()),
        Ok(Ok(state)) => {
            info!(application_id = %id, %user, ?state, "application submitted over REST");
            (StatusCode::ACCEPTED, [(axum::http::header::LOCATION, format!("/ws/v1/cluster/apps/{id}"))]).into_response()
        }
    }
}

/// The JSON body of a PUT, or YARN's 400.
fn body_json(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the body is not JSON: {e}")))
}

async fn app_queue(State(rest): State<Arc<Rest>>, Path(id): Path<String>) -> Response {
    match one(&rest, &id, Caller::new(ANONYMOUS, Vec::new())).await {
        Ok((report, _, _)) => axum::Json(json!({ "queue": report.queue.clone().unwrap_or_default() })).into_response(),
        Err(e) => e,
    }
}

/// PUT `{"queue": "batch"}`: moveApplicationAcrossQueues.
async fn put_app_queue(
    State(rest): State<Arc<Rest>>,
    Path(raw): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let id = match app_id(&raw) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let caller = match changer(&rest, &q).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let target = match body_json(&body).map(|v| v.get("queue").and_then(Value::as_str).map(str::to_owned)) {
        Ok(Some(q)) => q,
        Ok(None) => return bad_request("the body names no \"queue\"".into()),
        Err(e) => return e,
    };
    let moved = rest
        .core
        .call(move |core, _| {
            core.rm().checked(&caller, id, AppAccess::Modify)?;
            if !core.rm().may_submit(&caller, &target) {
                return Err(crate::rm_core::RmError::AccessDenied(format!(
                    "User {} does not have permission to submit {id} to queue {target}",
                    caller.user
                )));
            }
            core.move_to_queue(id, &target).map(|_| core.rm().application(id).map(|a| a.submission.queue.clone()))
        })
        .await;
    match moved {
        Err(_) => unavailable(),
        Ok(Err(e)) => change_refused(&raw, e),
        Ok(Ok(Ok(queue))) => axum::Json(json!({ "queue": queue })).into_response(),
        Ok(Ok(Err(_))) => not_found(format!("app with id: {raw} not found")),
    }
}

async fn app_priority(State(rest): State<Arc<Rest>>, Path(id): Path<String>) -> Response {
    match one(&rest, &id, Caller::new(ANONYMOUS, Vec::new())).await {
        Ok((report, _, _)) => axum::Json(json!({ "priority": report.priority.as_ref().and_then(|p| p.priority).unwrap_or(0) })).into_response(),
        Err(e) => e,
    }
}

/// PUT `{"priority": N}`: updateApplicationPriority (capped as YARN caps it).
async fn put_app_priority(
    State(rest): State<Arc<Rest>>,
    Path(raw): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let id = match app_id(&raw) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let caller = match changer(&rest, &q).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let wanted = match body_json(&body).map(|v| v.get("priority").and_then(Value::as_i64)) {
        Ok(Some(p)) => i32::try_from(p).unwrap_or(if p < 0 { i32::MIN } else { i32::MAX }),
        Ok(None) => return bad_request("the body names no numeric \"priority\"".into()),
        Err(e) => return e,
    };
    let changed = rest
        .core
        .call(move |core, _| {
            core.rm().checked(&caller, id, AppAccess::Modify)?;
            core.rm_mut().update_priority(id, wanted)
        })
        .await;
    match changed {
        Err(_) => unavailable(),
        Ok(Err(e)) => change_refused(&raw, e),
        Ok(Ok(now)) => axum::Json(json!({ "priority": now })).into_response(),
    }
}

/// POST: a new application id and the largest container, as
/// getNewApplication answers.
async fn new_application(State(rest): State<Arc<Rest>>) -> Response {
    // The first step of a submission: no more open than the submission.
    if rest.info.kerberos {
        return kerberos_required();
    }
    match rest.core.call(|core, _| core.rm_mut().new_application()).await {
        Err(_) => unavailable(),
        Ok(Err(e)) => remote_exception(StatusCode::SERVICE_UNAVAILABLE, "YarnException", "org.apache.hadoop.yarn.exceptions.YarnException", &e.to_string()),
        Ok(Ok((id, max))) => axum::Json(json!({
            "application-id": id.to_string(),
            "maximum-resource-capability": { "memory": max.memory_mb, "vCores": max.vcores },
        }))
        .into_response(),
    }
}

/// The queues as the capacity scheduler's REST view lays them out (the
/// fields tools read: name, capacities, used, applications).
async fn scheduler(State(rest): State<Arc<Rest>>) -> Response {
    let found = rest
        .core
        .call(|core, _| {
            core.rm()
                .queues()
                .to_vec()
                .into_iter()
                .filter_map(|q| core.rm().queue_info(&q, false, false, false).ok().map(|info| convert::queue_to_proto(&info)))
                .collect::<Vec<_>>()
        })
        .await;
    let Ok(queues) = found else { return unavailable() };
    let queue: Vec<Value> = queues
        .iter()
        .map(|q| {
            let name = q.queue_name.clone().unwrap_or_default();
            json!({
                "type": "capacitySchedulerLeafQueueInfo",
                "queueName": name,
                "queuePath": format!("root.{name}"),
                "capacity": q.capacity.unwrap_or(0.0) * 100.0,
                "maxCapacity": q.maximum_capacity.unwrap_or(0.0) * 100.0,
                "usedCapacity": q.current_capacity.unwrap_or(0.0) * 100.0,
                "absoluteCapacity": q.capacity.unwrap_or(0.0) * 100.0,
                "absoluteMaxCapacity": q.maximum_capacity.unwrap_or(0.0) * 100.0,
                "numApplications": q.applications.len(),
                "state": "RUNNING",
            })
        })
        .collect();
    axum::Json(json!({
        "scheduler": {
            "schedulerInfo": {
                "type": "capacityScheduler",
                "queueName": "root",
                "capacity": 100.0,
                "maxCapacity": 100.0,
                "usedCapacity": 0.0,
                "queues": { "queue": queue },
            }
        }
    }))
    .into_response()
}

/// Largest AM page the proxy passes on.
const MAX_PROXIED_BYTES: usize = 16 << 20;

fn proxy_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .connect_timeout(std::time::Duration::from_secs(5))
        // Redirects go back to the browser, rewritten to the proxy.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain HTTP client builds")
}

async fn proxy_root(Path(id): Path<String>) -> Response {
    (StatusCode::FOUND, [(axum::http::header::LOCATION, format!("/proxy/{id}/"))]).into_response()
}

/// The page an application master serves at `rest` of its tracking URL,
/// fetched on the browser's behalf (the AM may be on a host the browser
/// cannot reach, as with YARN's proxy). Only a running application's
/// registered http(s) tracking URL is followed.
async fn proxy(
    State(rest): State<Arc<Rest>>,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let raw = params.get("id").cloned().unwrap_or_default();
    let path = params.get("rest").cloned().unwrap_or_default();
    let id = match app_id(&raw) {
        Ok(id) => id,
        Err(e) => return e,
    };
    // The AM's UI shows what its report hides from those without VIEW_APP.
    let viewer = match viewer(&rest, &q).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let user = viewer.user.clone();
    let found = rest
        .core
        .call(move |core, _| {
            core.rm()
                .application(id)
                .map(|a| (core.rm().may_view(&viewer, a), a.state, a.am.as_ref().map(|am| am.tracking_url.clone())))
        })
        .await;
    let (allowed, state, tracking) = match found {
        Err(_) => return unavailable(),
        Ok(Err(_)) => return not_found(format!("app with id: {raw} not found")),
        Ok(Ok(found)) => found,
    };
    if !allowed {
        info!(application_id = %id, %user, "web proxy refused by the application's ACLs");
        return forbidden(&format!("User {user} is not authorized to view application {raw}"));
    }
    if state.is_final() {
        return not_found(format!("Application {raw} has ended: its ApplicationMaster's UI is gone (no history server)"));
    }
    let base = match tracking.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty() && u != "N/A") {
        // An AM may register `host:port`: YARN reads it as http.
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => u.trim_end_matches('/').to_owned(),
        Some(u) if !u.contains("://") => format!("http://{}", u.trim_end_matches('/')),
        _ => return not_found(format!("Application {raw} has not registered an http tracking URL")),
    };
    if path.split('/').any(|c| c == "..") {
        return bad_request("a proxied path may not contain ..".into());
    }
    let target = match query {
        Some(q) => format!("{base}/{path}?{q}"),
        None => format!("{base}/{path}"),
    };
    let response = match rest.http.get(&target).send().await {
        Ok(r) => r,
        Err(e) => {
            return remote_exception(StatusCode::BAD_GATEWAY, "IOException", "java.io.IOException", &format!("cannot reach the ApplicationMaster of {raw} at {base}: {e}"))
        }
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = axum::http::HeaderMap::new();
    for name in [axum::http::header::CONTENT_TYPE, axum::http::header::CACHE_CONTROL, axum::http::header::LAST_MODIFIED] {
        if let Some(v) = response.headers().get(name.as_str()).and_then(|v| axum::http::HeaderValue::from_bytes(v.as_bytes()).ok()) {
            headers.insert(name, v);
        }
    }
    // A redirect inside the AM's UI stays inside the proxy.
    if let Some(location) = response.headers().get("location").and_then(|v| v.to_str().ok()) {
        let rewritten = match location.strip_prefix(&base) {
            Some(rest_of) => format!("/proxy/{raw}{rest_of}"),
            None if location.starts_with('/') => format!("/proxy/{raw}{location}"),
            None => location.to_owned(),
        };
        if let Ok(v) = axum::http::HeaderValue::from_str(&rewritten) {
            headers.insert(axum::http::header::LOCATION, v);
        }
    }
    if response.content_length().is_some_and(|l| l > MAX_PROXIED_BYTES as u64) {
        return remote_exception(StatusCode::BAD_GATEWAY, "IOException", "java.io.IOException", "the ApplicationMaster's answer is larger than the proxy passes on");
    }
    let body = match response.bytes().await {
        Ok(b) if b.len() <= MAX_PROXIED_BYTES => b,
        Ok(_) => return remote_exception(StatusCode::BAD_GATEWAY, "IOException", "java.io.IOException", "the ApplicationMaster's answer is larger than the proxy passes on"),
        Err(e) => return remote_exception(StatusCode::BAD_GATEWAY, "IOException", "java.io.IOException", &format!("reading the ApplicationMaster's answer: {e}")),
    };
    (status, headers, body).into_response()
}

fn node_json(n: &r::NodeReportProto) -> Value {
    let id = n.node_id.as_ref().map(|i| format!("{}:{}", i.host.clone().unwrap_or_default(), i.port.unwrap_or(0))).unwrap_or_default();
    let host = n.node_id.as_ref().and_then(|i| i.host.clone()).unwrap_or_default();
    let state = r::NodeStateProto::try_from(n.node_state.unwrap_or(0)).map(|s| s.as_str_name().trim_start_matches("NS_").to_owned()).unwrap_or_default();
    let (total_mb, used_mb) = (mb(n.capability.as_ref()), mb(n.used.as_ref()));
    let (total_vc, used_vc) = (vcores(n.capability.as_ref()), vcores(n.used.as_ref()));
    json!({
        "rack": n.rack_name.clone().unwrap_or_default(),
        "state": state,
        "id": id,
        "nodeHostName": host,
        "nodeHTTPAddress": n.http_address.clone().unwrap_or_default(),
        "lastHealthUpdate": n.last_health_report_time.unwrap_or(0),
        "version": RESOURCE_MANAGER_VERSION,
        "healthReport": n.health_report.clone().unwrap_or_default(),
        "numContainers": n.num_containers.unwrap_or(0),
        "usedMemoryMB": used_mb,
        "availMemoryMB": (total_mb - used_mb).max(0),
        "usedVirtualCores": used_vc,
        "availableVirtualCores": (total_vc - used_vc).max(0),
    })
}

async fn all_nodes(rest: &Rest) -> Result<Vec<r::NodeReportProto>, Response> {
    rest.core.call(|core, _| core.rm().nodes(&[]).into_iter().map(convert::node_to_proto).collect()).await.map_err(|_| unavailable())
}

async fn nodes(State(rest): State<Arc<Rest>>) -> Response {
    match all_nodes(&rest).await {
        Ok(nodes) if nodes.is_empty() => axum::Json(json!({ "nodes": null })).into_response(),
        Ok(nodes) => axum::Json(json!({ "nodes": { "node": nodes.iter().map(node_json).collect::<Vec<_>>() } })).into_response(),
        Err(e) => e,
    }
}

async fn node(State(rest): State<Arc<Rest>>, Path(raw): Path<String>) -> Response {
    let wanted = match raw.rsplit_once(':').and_then(|(h, p)| Some(NodeId { host: h.to_owned(), port: p.parse().ok()? })) {
        Some(n) => n,
        None => return bad_request(format!("Invalid NodeId [{raw}]. Expected host:port")),
    };
    match all_nodes(&rest).await {
        Ok(nodes) => {
            let found = nodes.iter().find(|n| {
                n.node_id.as_ref().is_some_and(|i| i.host.as_deref() == Some(wanted.host.as_str()) && i.port == Some(wanted.port))
            });
            match found {
                Some(n) => axum::Json(json!({ "node": node_json(n) })).into_response(),
                None => not_found(format!("nodeId, {raw}, is not found")),
            }
        }
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rm_core::RmCore;
    use crate::scheduler::{Scheduler, SchedulerConfig};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// A YARN core with `queues`, run by its task, and the effects it
    /// sends (kept so the core can send them).
    fn running_core(queues: &[&str]) -> (CoreHandle, tokio::sync::mpsc::UnboundedReceiver<crate::scheduler::Effect>) {
        let queues: Vec<String> = queues.iter().map(|q| (*q).to_owned()).collect();
        let books = RmCore::new(1_700_000_000_000, &queues, 10).unwrap();
        let (effects, effects_rx) = tokio::sync::mpsc::unbounded_channel();
        let clock: Arc<dyn weir_model::Clock> = Arc::new(weir_model::SystemClock::new());
        let (core, _task) = crate::core::spawn(crate::core::YarnCore::new(books, Scheduler::new(SchedulerConfig::default())), clock, effects);
        (core, effects_rx)
    }

    /// Kerberos on: no SPNEGO here, so no change and no `?user.name=` is
    /// believed; anonymous reads still answer.
    #[tokio::test]
    async fn with_kerberos_on_changes_and_named_users_are_refused() {
        let (core, _effects, id, _) = core_with_one_app().await;
        let app = router(core.clone(), RestInfo { started_on_ms: 1_700_000_000_000, proxy: None, kerberos: true });
        let class = |v: &Value| v["RemoteException"]["javaClassName"].as_str().unwrap_or_default().to_owned();
        for (method, uri, body) in [
            ("PUT", format!("/ws/v1/cluster/apps/{id}/state?user.name=alice"), r#"{"state":"KILLED"}"#),
            ("PUT", format!("/ws/v1/cluster/apps/{id}/state"), r#"{"state":"KILLED"}"#),
            ("POST", "/ws/v1/cluster/apps/new-application".to_owned(), ""),
            ("POST", "/ws/v1/cluster/apps?user.name=alice".to_owned(), "{}"),
            ("GET", "/ws/v1/cluster/apps?user.name=alice".to_owned(), ""),
        ] {
            let (status, reply) = ask(&app, method, &uri, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {reply}");
            assert_eq!(class(&reply), "org.apache.hadoop.security.authentication.client.AuthenticationException", "{reply}");
        }
        let (status, reply) = ask(&app, "GET", &format!("/ws/v1/cluster/apps/{id}"), "").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["app"]["state"], "ACCEPTED", "not killed: {reply}");
    }

    /// A core with one application submitted to `default`, and its REST router.
    async fn core_with_one_app() -> (CoreHandle, tokio::sync::mpsc::UnboundedReceiver<crate::scheduler::Effect>, ApplicationId, axum::Router) {
        let (core, effects) = running_core(&["default"]);
        let id = core
            .call(|c, now| {
                let (id, _) = c.rm_mut().new_application().unwrap();
                c.rm_mut().submit(crate::rm_core::Submission::for_test(id), now.unix_ms).unwrap();
                id
            })
            .await
            .unwrap();
        let app = router(core.clone(), RestInfo { started_on_ms: 1_700_000_000_000, proxy: None, kerberos: false });
        (core, effects, id, app)
    }

    async fn ask(app: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder().method(method).uri(uri).body(Body::from(body.to_owned())).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn bad_requests_get_yarns_remote_exceptions_and_nothing_else_happens() {
        let (core, _effects, id, app) = core_with_one_app().await;

        let class = |v: &Value| v["RemoteException"]["javaClassName"].as_str().unwrap_or_default().to_owned();
        let (status, body) = ask(&app, "GET", "/ws/v1/cluster/apps/application_1700000000000_0042", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(class(&body), "org.apache.hadoop.yarn.webapp.NotFoundException");
        assert_eq!(body["RemoteException"]["message"], "app with id: application_1700000000000_0042 not found");
        let (status, body) = ask(&app, "GET", "/ws/v1/cluster/apps/not-an-id", "").await;
        assert_eq!((status, class(&body).as_str()), (StatusCode::BAD_REQUEST, "org.apache.hadoop.yarn.webapp.BadRequestException"));
        let (status, body) = ask(&app, "GET", "/ws/v1/cluster/apps?states=SLEEPING", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["RemoteException"]["message"].as_str().unwrap().starts_with("Invalid application-state SLEEPING"));
        let request = Request::builder().uri("/ws/v1/cluster/apps/nope").header("Accept", "application/xml").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let xml = String::from_utf8(axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(xml.starts_with("<?xml") && xml.contains("<RemoteException><exception>BadRequestException</exception>"), "{xml}");
        assert!(xml.contains("<message>Invalid ApplicationId: nope</message>") && xml.ends_with("</RemoteException>"), "{xml}");
        let request = Request::builder().uri(format!("/ws/v1/cluster/apps/{id}")).header("Accept", "application/xml").body(Body::empty()).unwrap();
        let xml = app.clone().oneshot(request).await.unwrap().into_body();
        let xml = String::from_utf8(axum::body::to_bytes(xml, 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(xml.contains(&format!("<app><id>{id}</id>")) || xml.contains(&format!("<id>{id}</id>")), "{xml}");
        let (status, _) = ask(&app, "OPTIONS", "/ws/v1/cluster/info?user.name=u", "").await;
        assert_eq!(status, StatusCode::OK, "Hadoop's AuthenticatedURL probes with OPTIONS");
        let huge = "x".repeat(MAX_QUERY_VALUE + 1);
        assert_eq!(ask(&app, "GET", &format!("/ws/v1/cluster/apps?user={huge}"), "").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(ask(&app, "GET", "/ws/v1/cluster/apps?limit=-3", "").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(ask(&app, "GET", "/ws/v1/cluster/apps?startedTimeBegin=9&startedTimeEnd=3", "").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(ask(&app, "GET", "/ws/v1/cluster/../../etc/passwd", "").await.0, StatusCode::NOT_FOUND);
        assert_eq!(ask(&app, "GET", "/ws/v1/cluster/nodes/nohost", "").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(ask(&app, "GET", "/ws/v1/cluster/apps/application_1700000000000_0001/appattempts/appattempt_x/containers", "").await.0, StatusCode::BAD_REQUEST);

        // Bad kill bodies change nothing.
        let state_uri = format!("/ws/v1/cluster/apps/{id}/state");
        for body in ["", "{", "{\"state\": \"RUNNING\"}", "{\"nostate\": 1}", "[1,2]"] {
            let (status, reply) = ask(&app, "PUT", &state_uri, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        }
        let state = core.call(move |c, _| c.rm().application(id).map(|a| a.state)).await.unwrap().unwrap();
        assert!(!state.is_final(), "{state:?}");
        let (status, reply) = ask(&app, "PUT", &state_uri, "{\"state\": \"KILLED\"}").await;
        assert_eq!((status, reply["state"].as_str()), (StatusCode::ACCEPTED, Some("KILLED")));
        let (status, reply) = ask(&app, "PUT", &state_uri, "{\"state\": \"KILLED\"}").await;
        assert_eq!((status, reply["state"].as_str()), (StatusCode::OK, Some("KILLED")), "killing twice says it is already KILLED");
        assert_eq!(ask(&app, "GET", "/ws/v1/cluster/apps?states=KILLED", "").await.1["apps"]["app"][0]["id"], id.to_string());
    }

    /// Hostile requests of every kind: each gets a 4xx with YARN's
    /// RemoteException body (on the REST API) and none changes the books.
    #[tokio::test]
    async fn hostile_requests_get_a_clear_4xx_and_change_nothing() {
        let (core, _effects, id, app) = core_with_one_app().await;
        let long_id = format!("application_{}_1", "9".repeat(5000));
        let cases: Vec<(&str, String, &str)> = vec![
            ("GET", "/ws/v1/cluster/apps?limit=99999999999999999999999999".into(), ""),
            ("GET", "/ws/v1/cluster/apps?startedTimeBegin=-99999999999999999999".into(), ""),
            ("GET", "/ws/v1/cluster/apps?states=RUNNING,%00,../../".into(), ""),
            ("GET", format!("/ws/v1/cluster/apps?queue={}", "q".repeat(10_000)), ""),
            ("GET", format!("/ws/v1/cluster/apps/{long_id}"), ""),
            ("GET", "/ws/v1/cluster/apps/application_1700000000000_99999999999999999999".into(), ""),
            ("GET", "/ws/v1/cluster/apps/application_1700000000000_0001%2F..%2F..%2Fetc%2Fpasswd".into(), ""),
            ("GET", "/ws/v1/cluster/apps/application_1700000000000_0777/appattempts".into(), ""),
            ("GET", "/ws/v1/cluster/apps/application_1700000000000_0001/appattempts/appattempt_1700000000000_0001_000009/containers".into(), ""),
            ("GET", "/ws/v1/cluster/nodes/..%2F..%2Fetc:1".into(), ""),
            ("PUT", format!("/ws/v1/cluster/apps/{id}/queue"), "{\"queue\": "),
            ("PUT", format!("/ws/v1/cluster/apps/{id}/queue"), "{\"queue\": 7}"),
            ("PUT", format!("/ws/v1/cluster/apps/{id}/priority"), "{\"priority\": \"high\"}"),
            ("PUT", format!("/ws/v1/cluster/apps/{id}/priority"), "{\"priority\": 99999999999999999999}"),
            ("PUT", format!("/ws/v1/cluster/apps/{id}/state"), "\u{0}\u{1}binary"),
            ("PUT", "/ws/v1/cluster/apps/application_1700000000000_0777/state".into(), "{\"state\": \"KILLED\"}"),
            ("POST", "/ws/v1/cluster/apps".into(), "{\"application-id\": \"application_1700000000000_0777\", \"am-container-spec\": 5}"),
            ("POST", "/ws/v1/cluster/apps".into(), "not json at all"),
        ];
        for (method, uri, body) in &cases {
            let (status, reply) = ask(&app, method, uri, body).await;
            assert!(status.is_client_error(), "{method} {}: {status} {reply}", &uri[..uri.len().min(120)]);
            let exception = &reply["RemoteException"];
            assert!(exception["exception"].is_string() && exception["message"].is_string() && exception["javaClassName"].is_string(), "{method} {}: {reply}", &uri[..uri.len().min(120)]);
        }
        // The proxy takes no path out of an application's AM: an unknown or
        // malformed id is refused before anything is fetched.
        for uri in ["/proxy/application_1700000000000_0777/", "/proxy/..%2F..%2Fetc%2Fpasswd/", "/proxy/application_1/../../ws/v1/cluster/info"] {
            let (status, _) = ask(&app, "GET", uri, "").await;
            assert!(status.is_client_error(), "{uri}: {status}");
        }
        let (apps, state, queue) = core
            .call(move |c, _| {
                let a = c.rm().application(id).unwrap();
                (c.rm().applications(&Default::default()).len(), a.state, a.submission.queue.clone())
            })
            .await
            .unwrap();
        assert_eq!((apps, state.is_final(), queue.as_str()), (1, false, "default"));
    }

    /// The proxy fetches the AM's page from its tracking URL, keeps its
    /// redirects inside the proxy, and refuses what is not a running AM.
    #[tokio::test]
    async fn the_proxy_passes_on_the_application_masters_ui() {
        let am_ui = axum::Router::new()
            .route("/jobs/", get(|axum::extract::RawQuery(q): axum::extract::RawQuery| async move { format!("jobs page {}", q.unwrap_or_default()) }))
            .route("/", get(|| async { (StatusCode::FOUND, [(axum::http::header::LOCATION, "/jobs/")]) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let am_address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, am_ui).await.unwrap() });

        let (core, _effects) = running_core(&["default"]);
        let id = core
            .call(move |c, now| {
                let (id, _) = c.rm_mut().new_application().unwrap();
                c.rm_mut().submit(crate::rm_core::Submission::for_test(id), now.unix_ms).unwrap();
                let am = crate::rm_core::AmEndpoint { host: "127.0.0.1".into(), rpc_port: 1, tracking_url: format!("http://{am_address}/") };
                c.rm_mut().set_am_endpoint(id, Some(am)).unwrap();
                id
            })
            .await
            .unwrap();
        let app = router(core.clone(), RestInfo { started_on_ms: 1_700_000_000_000, proxy: None, kerberos: false });
        let get_raw = |uri: String| {
            let app = app.clone();
            async move {
                let response = app.oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap()).await.unwrap();
                let status = response.status();
                let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
                let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
                (status, location, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let (status, _, body) = get_raw(format!("/proxy/{id}/jobs/?id=3")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "jobs page id=3"));
        let (status, location, _) = get_raw(format!("/proxy/{id}/")).await;
        assert_eq!((status, location), (StatusCode::FOUND, Some(format!("/proxy/{id}/jobs/"))));
        assert_eq!(get_raw(format!("/proxy/{id}")).await.1, Some(format!("/proxy/{id}/")));
        assert_eq!(get_raw("/proxy/application_1700000000000_0077/".into()).await.0, StatusCode::NOT_FOUND);
        assert_eq!(get_raw(format!("/proxy/{id}/a/%2e%2e/b")).await.0, StatusCode::BAD_REQUEST);
        core.call(move |c, now| c.rm_mut().kill(id, None, now.unix_ms)).await.unwrap().unwrap();
        let (status, _, body) = get_raw(format!("/proxy/{id}/jobs/")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }

    /// YARN's documented REST submission (its example, shortened).
    #[tokio::test]
    async fn submission_over_rest_takes_yarns_json_and_refuses_bad_bodies() {
        let (core, _effects) = running_core(&["default", "batch"]);
        // capacity-scheduler.xml's mappings apply over REST as over IPC:
        // alice's application for default lands in batch.
        let props = crate::capacity_scheduler::tests::props(&[
            ("root.queues", "default,batch"),
            ("root.default.capacity", "50"),
            ("root.batch.capacity", "50"),
            ("queue-mappings", "u:alice:batch"),
        ]);
        let tree = crate::capacity_scheduler::CapacityScheduler::from_properties(&props).unwrap();
        core.call(move |c, _| c.set_queue_conf(tree)).await.unwrap().unwrap();
        let node = crate::rm_core::ObservedNode {
            agent_id: "a1".into(),
            node_id: NodeId { host: "h".into(), port: 1 },
            http_address: "h:2".into(),
            capability: weir_yarn_api::resource::Capacity { memory_mb: 4096, vcores: 4 },
            used: Default::default(),
            containers: 0,
            state: crate::rm_core::NodeState::Running,
            health_report: String::new(),
            decommission_deadline_ms: None,
        };
        core.call(move |c, now| c.observe_nodes(vec![node], now)).await.unwrap();
        let app = router(core.clone(), RestInfo { started_on_ms: 1_700_000_000_000, proxy: None, kerberos: false });
        let (_, fresh) = ask(&app, "POST", "/ws/v1/cluster/apps/new-application", "").await;
        let id = fresh["application-id"].as_str().unwrap().to_owned();
        let body = json!({
            "application-id": id,
            "application-name": "test",
            "am-container-spec": {
                "local-resources": { "entry": [{ "key": "AppMaster.jar", "value": {
                    "resource": "hdfs://hdfs-namenode:9000/user/testuser/DistributedShell/demo-app/AppMaster.jar",
                    "type": "FILE", "visibility": "APPLICATION", "size": 43004, "timestamp": 1405452071209_i64 } }] },
                "commands": { "command": "{{JAVA_HOME}}/bin/java -Xmx10m org.apache.hadoop.yarn.applications.distributedshell.ApplicationMaster 1><LOG_DIR>/AppMaster.stdout 2><LOG_DIR>/AppMaster.stderr" },
                "environment": { "entry": [{ "key": "DISTRIBUTEDSHELLSCRIPTTIMESTAMP", "value": "1405459400754" }] },
            },
            "unmanaged-AM": false,
            "max-app-attempts": 2,
            "resource": { "memory": 1024, "vCores": 1 },
            "application-type": "YARN",
            "keep-containers-across-application-attempts": false,
            "application-tags": { "tag": ["weir", "rest"] },
        });
        let (status, reply) = ask(&app, "POST", "/ws/v1/cluster/apps?user.name=alice", &body.to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        let (_, got) = ask(&app, "GET", &format!("/ws/v1/cluster/apps/{id}"), "").await;
        let a = &got["app"];
        assert_eq!((a["name"].as_str(), a["user"].as_str(), a["applicationTags"].as_str()), (Some("test"), Some("alice"), Some("weir,rest")), "{got}");
        assert_eq!(a["queue"], "batch", "the mapping u:alice:batch: {got}");
        let id_typed: ApplicationId = id.parse().unwrap();
        let launch = core.call(move |c, _| c.rm().application(id_typed).unwrap().submission.clone()).await.unwrap();
        let am = launch.am_launch.unwrap();
        assert_eq!(am.local_resources[0].value.as_ref().unwrap().resource.as_ref().unwrap().host.as_deref(), Some("hdfs-namenode"));
        assert_eq!(am.local_resources[0].value.as_ref().unwrap().resource.as_ref().unwrap().port, Some(9000));
        assert!(am.command[0].starts_with("{{JAVA_HOME}}/bin/java"));
        assert_eq!(launch.am_resource.map(|c| c.memory_mb), Some(1024));

        for bad in [
            "".to_owned(),
            "[]".to_owned(),
            json!({ "application-id": "nope" }).to_string(),
            json!({ "application-id": "application_1700000000000_0009", "am-container-spec": {} }).to_string(),
            json!({ "application-id": "application_1700000000000_0009", "am-container-spec": { "commands": { "command": "x" },
                "local-resources": { "entry": { "key": "a", "value": { "resource": "not a url" } } } } }).to_string(),
        ] {
            let (status, reply) = ask(&app, "POST", "/ws/v1/cluster/apps", &bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {reply}");
        }
    }

    #[tokio::test]
    async fn queue_priority_new_application_and_scheduler_answer_as_yarn() {
        let (core, _effects) = running_core(&["default", "batch"]);
        let app = router(core.clone(), RestInfo { started_on_ms: 1_700_000_000_000, proxy: None, kerberos: false });

        let (status, fresh) = ask(&app, "POST", "/ws/v1/cluster/apps/new-application", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fresh["application-id"], "application_1700000000000_0001");
        assert!(fresh["maximum-resource-capability"]["memory"].is_i64());
        let id: ApplicationId = "application_1700000000000_0001".parse().unwrap();
        core.call(move |c, now| {
            c.rm_mut().submit(crate::rm_core::Submission::for_test(id), now.unix_ms).unwrap();
            c.tick(now);
        })
        .await
        .unwrap();
        let queue_uri = format!("/ws/v1/cluster/apps/{id}/queue");
        assert_eq!(ask(&app, "GET", &queue_uri, "").await.1["queue"], "default");
        assert_eq!(ask(&app, "PUT", &queue_uri, "{\"queue\": \"root.batch\"}").await, (StatusCode::OK, json!({ "queue": "batch" })));
        let (status, body) = ask(&app, "PUT", &queue_uri, "{\"queue\": \"nope\"}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["RemoteException"]["message"], "Target queue nope not found or is not a leaf queue.");
        assert_eq!(ask(&app, "PUT", &queue_uri, "{}").await.0, StatusCode::BAD_REQUEST);
        let priority_uri = format!("/ws/v1/cluster/apps/{id}/priority");
        assert_eq!(ask(&app, "GET", &priority_uri, "").await.1["priority"], 0);
        // yarn.cluster.max-application-priority is 0: YARN caps at it.
        assert_eq!(ask(&app, "PUT", &priority_uri, "{\"priority\": 5}").await, (StatusCode::OK, json!({ "priority": 0 })));
        assert_eq!(ask(&app, "PUT", &priority_uri, "{\"priority\": \"high\"}").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(ask(&app, "GET", "/ws/v1/cluster/apps/application_1700000000000_0009/queue", "").await.0, StatusCode::NOT_FOUND);
        let (status, scheduler) = ask(&app, "GET", "/ws/v1/cluster/scheduler", "").await;
        assert_eq!(status, StatusCode::OK);
        let names: Vec<&str> = scheduler["scheduler"]["schedulerInfo"]["queues"]["queue"].as_array().unwrap().iter().map(|q| q["queueName"].as_str().unwrap()).collect();
        assert_eq!(names, ["default", "batch"]);
    }
}
