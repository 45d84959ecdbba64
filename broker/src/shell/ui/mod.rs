//! The broker's web UI under `/ui/`: server-rendered HTML (maud), usable
//! without JavaScript, read from the same books as `/state`.
//!
//! - Every page is a GET of a stable address (ids in the path, filters and
//!   paging in the query), so a link can be pasted into a ticket.
//! - Every string that came from outside (ids, names, messages, file
//!   names) goes through maud's escaping; links to other servers are made
//!   only from `http(s)://` URLs.
//! - Sandboxes are read from the task's agent (`/files/browse`,
//!   `/files/read`), which resolves paths itself and refuses any that leads
//!   out of the sandbox; the UI adds no file access of its own.
//! - YARN applications are read from the shim's REST API at the web UI
//!   address the shim announced when it subscribed (`webui_url`).
//! - Actions (kill a task, tear a framework down) are POST forms, refused
//!   unless `broker.ui.actions.enabled`: there is no operator
//!   authentication yet, so anyone who reaches the port could use them.

mod history;
mod pages;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use weir_model::{FrameworkId, TaskId};

use super::auth::Caller;
use super::Shared;
use crate::acl::{authorize, Action};
pub use history::History;

/// How the UI behaves (`broker.ui.*`).
#[derive(Debug, Clone)]
pub struct UiSettings {
    /// Offer the kill and teardown forms (`broker.ui.actions.enabled`).
    pub actions_enabled: bool,
    /// Time between share-history samples (`broker.ui.history.interval`).
    pub history_interval: Duration,
    /// Samples kept (`broker.ui.history.samples`).
    pub history_samples: usize,
    /// PEM of the CA that signed the agents' certificates
    /// (`broker.tls.agents.ca.file`): set, sandboxes are read from agents
    /// over https, trusting only it.
    pub agents_ca: Option<Vec<u8>>,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings { actions_enabled: false, history_interval: Duration::from_secs(10), history_samples: 360, agents_ca: None }
    }
}

/// Longest time the UI waits for an agent or the YARN shim.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from an agent or the YARN shim.
const UPSTREAM_MAX: usize = 8 << 20;
/// Bytes of a file one page shows.
const FILE_PAGE: u64 = 64 * 1024;
/// Longest search string or sandbox path accepted.
const MAX_PARAM: usize = 4096;
pub(super) const PER_PAGE_DEFAULT: usize = 50;
pub(super) const PER_PAGE_MAX: usize = 500;

/// What the UI keeps between requests.
pub(crate) struct Ui {
    settings: UiSettings,
    history: Mutex<History>,
    http: reqwest::Client,
    /// How agents' HTTP ports are reached: "https" with an agents' CA.
    agent_scheme: &'static str,
}

impl Ui {
    pub(crate) fn new(settings: UiSettings) -> Ui {
        let mut builder = reqwest::Client::builder().timeout(UPSTREAM_TIMEOUT).no_proxy();
        if let Some(ca) = &settings.agents_ca {
            match reqwest::Certificate::from_pem(ca) {
                Ok(cert) => builder = builder.tls_built_in_root_certs(false).add_root_certificate(cert),
                Err(e) => tracing::error!(error = %e, "broker.tls.agents.ca.file holds no usable certificate; agents' sandboxes will not be readable"),
            }
        }
        let agent_scheme = if settings.agents_ca.is_some() { "https" } else { "http" };
        let http = builder.build().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot build the UI's HTTP client with timeouts; using the default one");
            reqwest::Client::new()
        });
        Ui {
            agent_scheme,
            history: Mutex::new(History::new(settings.history_samples, settings.history_interval)),
            settings,
            http,
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Samples the shares if one is due (called by the tick loop).
    pub(crate) fn sample(&self, now: Duration, at: Duration, shares: impl FnOnce() -> (Vec<(String, f64)>, Vec<(String, f64)>)) {
        let mut history = self.history();
        if history.due(now) {
            let (roles, frameworks) = shares();
            history.record(now, at, roles, frameworks);
        }
    }
}

/// Why a page cannot be shown; rendered as an HTML page with its status.
#[derive(Debug)]
pub(super) enum UiError {
    BadRequest(String),
    NotFound(String),
    Forbidden(String),
    /// An agent or the YARN shim did not answer as it should.
    Upstream(String),
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UiError::BadRequest(m) | UiError::NotFound(m) | UiError::Forbidden(m) | UiError::Upstream(m) => f.write_str(m),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            UiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            UiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            UiError::Upstream(m) => (StatusCode::BAD_GATEWAY, m),
        };
        (status, Html(pages::error(status, &message).into_string())).into_response()
    }
}

type Page = Result<Html<String>, UiError>;

/// Search and paging of a table, from the query string.
#[derive(Debug, Clone)]
pub(super) struct ListParams {
    /// Case-insensitive substring; empty matches everything.
    pub q: String,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
    /// Every other query parameter, kept in paging links.
    pub filters: Vec<(String, String)>,
}

impl ListParams {
    pub(super) fn parse(query: &HashMap<String, String>) -> Result<ListParams, UiError> {
        let number = |name: &str, default: usize| -> Result<usize, UiError> {
            match query.get(name).map(|v| v.trim()) {
                None | Some("") => Ok(default),
                Some(v) => v
                    .parse::<usize>()
                    .map_err(|_| UiError::BadRequest(format!("{name} must be a whole number, not {:?}", clip(v)))),
            }
        };
        let q = query.get("q").cloned().unwrap_or_default();
        for (name, value) in query {
            if value.len() > MAX_PARAM {
                return Err(UiError::BadRequest(format!("{name} is {} bytes long; at most {MAX_PARAM} are accepted", value.len())));
            }
        }
        let page = number("page", 1)?.max(1);
        let per_page = number("per_page", PER_PAGE_DEFAULT)?.clamp(1, PER_PAGE_MAX);
        let mut filters: Vec<(String, String)> = query
            .iter()
            .filter(|(k, v)| !matches!(k.as_str(), "q" | "page" | "per_page") && !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        filters.sort();
        Ok(ListParams { q: q.trim().to_lowercase(), page, per_page, filters })
    }

    pub(super) fn filter(&self, name: &str) -> Option<&str> {
        self.filters.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// True if `q` is empty or some field holds it.
    pub(super) fn matches(&self, fields: &[&str]) -> bool {
        self.q.is_empty() || fields.iter().any(|f| f.to_lowercase().contains(&self.q))
    }

    /// The query string of this listing at another page.
    pub(super) fn at_page(&self, page: usize) -> String {
        let mut pairs: Vec<(&str, &str)> = self.filters.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if !self.q.is_empty() {
            pairs.push(("q", &self.q));
        }
        let page = page.to_string();
        let per_page = self.per_page.to_string();
        pairs.push(("page", &page));
        if self.per_page != PER_PAGE_DEFAULT {
            pairs.push(("per_page", &per_page));
        }
        query_string(&pairs)
    }
}

/// One page of a filtered table.
pub(super) struct Paged<T> {
    pub items: Vec<T>,
    pub page: usize,
    pub pages: usize,
    pub total: usize,
}

pub(super) fn paginate<T>(all: Vec<T>, params: &ListParams) -> Paged<T> {
    let total = all.len();
    let pages = total.div_ceil(params.per_page).max(1);
    let start = params.page.saturating_sub(1).saturating_mul(params.per_page);
    let items = all.into_iter().skip(start).take(params.per_page).collect();
    Paged { items, page: params.page, pages, total }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so
/// that any id is one path segment or one query value.
pub(super) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// The UI address of a task.
pub(super) fn task_href(framework: &str, task: &str) -> String {
    format!("/ui/tasks/{}/{}", enc(framework), enc(task))
}

/// A string quoted in an error message: at most 100 characters.
fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

/// `url` if it is an absolute http(s) URL (never `javascript:` and the like).
pub(super) fn web_link(url: &str) -> Option<&str> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then_some(url)
}

pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/agents", get(agents))
        .route("/ui/agents/{id}", get(agent))
        .route("/ui/frameworks", get(frameworks))
        .route("/ui/frameworks/{id}", get(framework))
        .route("/ui/frameworks/{id}/teardown", post(teardown))
        .route("/ui/frameworks/{id}/apps/{app}", get(application))
        .route("/ui/tasks", get(tasks))
        .route("/ui/tasks/{framework}/{task}", get(task))
        .route("/ui/tasks/{framework}/{task}/file", get(file))
        .route("/ui/tasks/{framework}/{task}/raw", get(raw))
        .route("/ui/tasks/{framework}/{task}/kill", post(kill))
        .route("/ui/reservations", get(reservations))
        .route("/ui/offers", get(offers))
        .route("/ui/policy", get(policy))
}

/// The books as this caller may see them (the `view-framework` and
/// `view-role` ACLs).
fn state(shared: &Shared, caller: &Caller) -> super::super::core::state::StateDoc {
    let now = shared.now();
    let mut doc = shared.lock().core.state(now);
    doc.retain_viewable_by(&shared.acls, &caller.principal);
    doc
}

fn ctx(shared: &Shared) -> pages::Ctx {
    pages::Ctx { actions_enabled: shared.ui.settings.actions_enabled }
}

async fn overview(State(shared): State<Shared>, Extension(caller): Extension<Caller>) -> Page {
    let doc = state(&shared, &caller);
    let history = shared.ui.history();
    Ok(Html(pages::overview(&ctx(&shared), &doc, &history).into_string()))
}

async fn agents(State(shared): State<Shared>, Extension(caller): Extension<Caller>, Query(query): Query<HashMap<String, String>>) -> Page {
    let params = ListParams::parse(&query)?;
    Ok(Html(pages::agents(&ctx(&shared), &state(&shared, &caller), &params).into_string()))
}

async fn agent(State(shared): State<Shared>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Page {
    let doc = state(&shared, &caller);
    let Some(agent) = doc.agents.iter().find(|a| a.id == id) else {
        return Err(UiError::NotFound(format!("no agent {:?}", clip(&id))));
    };
    Ok(Html(pages::agent(&ctx(&shared), &doc, agent).into_string()))
}

async fn frameworks(State(shared): State<Shared>, Extension(caller): Extension<Caller>, Query(query): Query<HashMap<String, String>>) -> Page {
    let params = ListParams::parse(&query)?;
    Ok(Html(pages::frameworks(&ctx(&shared), &state(&shared, &caller), &params).into_string()))
}

async fn framework(State(shared): State<Shared>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Page {
    let doc = state(&shared, &caller);
    let Some(framework) = doc.frameworks.iter().find(|f| f.id == id) else {
        return Err(UiError::NotFound(format!("no framework {:?}", clip(&id))));
    };
    // A framework with a web UI that answers YARN's REST API is the shim:
    // its applications are listed too.
    let apps = match web_link(&framework.webui_url) {
        Some(url) => Some(
            fetch_json(&shared.ui.http, &format!("{}/ws/v1/cluster/apps", url.trim_end_matches('/')))
                .await
                .map(|v| v.pointer("/apps/app").and_then(|a| a.as_array()).cloned().unwrap_or_default()),
        ),
        None => None,
    };
    Ok(Html(pages::framework(&ctx(&shared), &doc, framework, apps).into_string()))
}

/// YARN application ids as YARN writes them: `application_<ts>_<seq>`.
fn application_parts(app: &str) -> Option<(&str, &str)> {
    let rest = app.strip_prefix("application_")?;
    let (ts, seq) = rest.split_once('_')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(ts) && digits(seq)).then_some((ts, seq))
}

/// True if `task` is a container of the application `(ts, seq)`:
/// `container_[e<epoch>_]<ts>_<seq>_<attempt>_<n>`.
pub(super) fn container_of(task: &str, ts: &str, seq: &str) -> bool {
    let Some(rest) = task.strip_prefix("container_") else { return false };
    let rest = match rest.strip_prefix('e') {
        Some(after) => after.split_once('_').map_or(rest, |(_, r)| r),
        None => rest,
    };
    rest.strip_prefix(ts).and_then(|r| r.strip_prefix('_')).and_then(|r| r.strip_prefix(seq)).is_some_and(|r| r.starts_with('_'))
}

async fn application(State(shared): State<Shared>, Extension(caller): Extension<Caller>, Path((id, app)): Path<(String, String)>) -> Page {
    let doc = state(&shared, &caller);
    let Some(framework) = doc.frameworks.iter().find(|f| f.id == id) else {
        return Err(UiError::NotFound(format!("no framework {:?}", clip(&id))));
    };
    let Some((ts, seq)) = application_parts(&app) else {
        return Err(UiError::NotFound(format!("{:?} is not a YARN application id", clip(&app))));
    };
    let Some(url) = web_link(&framework.webui_url) else {
        return Err(UiError::NotFound(format!("framework {id} announced no web UI, so it has no YARN applications")));
    };
    let report = fetch_json(&shared.ui.http, &format!("{}/ws/v1/cluster/apps/{app}", url.trim_end_matches('/'))).await?;
    let Some(report) = report.get("app").cloned() else {
        return Err(UiError::NotFound(format!("the YARN shim has no application {app}")));
    };
    let mut containers: Vec<(&super::super::core::state::TaskDoc, bool)> = doc
        .tasks
        .iter()
        .map(|t| (t, true))
        .chain(doc.completed_tasks.iter().map(|t| (t, false)))
        .filter(|(t, _)| t.framework_id == framework.id && container_of(&t.id, ts, seq))
        .collect();
    containers.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    containers.dedup_by(|a, b| a.0.id == b.0.id);
    Ok(Html(pages::application(&ctx(&shared), framework, &app, &report, &containers).into_string()))
}

async fn tasks(State(shared): State<Shared>, Extension(caller): Extension<Caller>, Query(query): Query<HashMap<String, String>>) -> Page {
    let params = ListParams::parse(&query)?;
    Ok(Html(pages::tasks(&ctx(&shared), &state(&shared, &caller), &params).into_string()))
}

/// A task's sandbox path from the query (empty: the sandbox).
fn sandbox_path(query: &HashMap<String, String>) -> Result<String, UiError> {
    let path = query.get("path").cloned().unwrap_or_default();
    if path.len() > MAX_PARAM {
        return Err(UiError::BadRequest(format!("path is {} bytes long; at most {MAX_PARAM} are accepted", path.len())));
    }
    Ok(path)
}

async fn task(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((framework, task)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Page {
    let path = sandbox_path(&query)?;
    let doc = state(&shared, &caller);
    let (found, live) = find_task(&doc, &framework, &task)?;
    let listing = match agent_address(&doc, &found.agent_id) {
        Some(agent) => {
            let q = query_string(&[("framework_id", &framework), ("task_id", &task), ("path", &path)]);
            agent_get(&shared.ui, &headers, agent, &format!("/files/browse?{q}"))
                .await
                .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| UiError::Upstream(format!("the agent's listing is not JSON: {e}"))))
        }
        None => Err(UiError::NotFound(format!("the agent {} is not in the books", found.agent_id))),
    };
    let yarn_logs = yarn_log_dir(&doc, found);
    Ok(Html(pages::task(&ctx(&shared), found, live, &path, listing, yarn_logs).into_string()))
}

/// The application a YARN container id belongs to:
/// `container_[e<epoch>_]<ts>_<seq>_<attempt>_<n>` → `application_<ts>_<seq>`.
fn container_application(container: &str) -> Option<String> {
    let rest = container.strip_prefix("container_")?;
    let rest = if rest.starts_with('e') { rest.split_once('_')?.1 } else { rest };
    let mut parts = rest.split('_');
    let (ts, seq) = (parts.next()?, parts.next()?);
    application_parts(&format!("application_{ts}_{seq}")).map(|_| format!("application_{ts}_{seq}"))
}

/// Where a YARN container's logs are: YARN's layout under the sandbox of
/// the node manager task on the container's agent (`logs/<app>/<container>`,
/// see `yarn-shim/nm/src/layout.rs`); the container's own task only holds
/// its place. (node manager task id, directory in its sandbox).
pub(super) fn yarn_log_dir(doc: &super::super::core::state::StateDoc, task: &super::super::core::state::TaskDoc) -> Option<(String, String)> {
    let app = container_application(&task.id)?;
    let node_manager = |t: &&super::super::core::state::TaskDoc| {
        t.framework_id == task.framework_id && t.agent_id == task.agent_id && t.id.starts_with("nodemanager-")
    };
    // A live node manager, else the latest one that ended (its sandbox
    // stays until the agent's sandbox GC).
    let nm = doc.tasks.iter().rev().find(node_manager).or_else(|| doc.completed_tasks.iter().find(node_manager))?;
    Some((nm.id.clone(), format!("logs/{app}/{}", task.id)))
}

fn find_task<'a>(doc: &'a super::super::core::state::StateDoc, framework: &str, task: &str) -> Result<(&'a super::super::core::state::TaskDoc, bool), UiError> {
    let live = doc.tasks.iter().find(|t| t.framework_id == framework && t.id == task);
    match live {
        Some(t) => Ok((t, true)),
        None => doc
            .completed_tasks
            .iter()
            .find(|t| t.framework_id == framework && t.id == task)
            .map(|t| (t, false))
            .ok_or_else(|| UiError::NotFound(format!("no task {:?} of framework {:?} (live or recently completed)", clip(task), clip(framework)))),
    }
}

fn agent_address<'a>(doc: &'a super::super::core::state::StateDoc, agent: &str) -> Option<&'a str> {
    doc.agents.iter().find(|a| a.id == agent).map(|a| a.http_address.as_str()).filter(|a| !a.is_empty())
}

/// Reads `offset`/`length`-bounded bytes of a sandbox file from the agent.
async fn read_sandbox_file(
    shared: &Shared,
    caller: &Caller,
    headers: &HeaderMap,
    framework: &str,
    task: &str,
    query: &HashMap<String, String>,
    length: u64,
) -> Result<(String, u64, Vec<u8>), UiError> {
    let path = sandbox_path(query)?;
    if path.is_empty() {
        return Err(UiError::BadRequest("path names no file".to_owned()));
    }
    let offset = match query.get("offset").map(|v| v.trim()) {
        None | Some("") => 0,
        Some(v) => v.parse::<u64>().map_err(|_| UiError::BadRequest(format!("offset must be a whole number, not {:?}", clip(v))))?,
    };
    let doc = state(shared, caller);
    let (found, _) = find_task(&doc, framework, task)?;
    let Some(agent) = agent_address(&doc, &found.agent_id) else {
        return Err(UiError::NotFound(format!("the agent {} is not in the books", found.agent_id)));
    };
    let offset_s = offset.to_string();
    let length_s = length.to_string();
    let q = query_string(&[("framework_id", framework), ("task_id", task), ("path", &path), ("offset", &offset_s), ("length", &length_s)]);
    let bytes = agent_get(&shared.ui, headers, agent, &format!("/files/read?{q}")).await?;
    Ok((path, offset, bytes))
}

async fn file(State(shared): State<Shared>, Extension(caller): Extension<Caller>, headers: HeaderMap, Path((framework, task)): Path<(String, String)>, Query(query): Query<HashMap<String, String>>) -> Page {
    let (path, offset, bytes) = read_sandbox_file(&shared, &caller, &headers, &framework, &task, &query, FILE_PAGE).await?;
    Ok(Html(pages::file(&ctx(&shared), &framework, &task, &path, offset, FILE_PAGE, &bytes).into_string()))
}

/// The bytes themselves, as text the browser must not interpret.
async fn raw(State(shared): State<Shared>, Extension(caller): Extension<Caller>, headers: HeaderMap, Path((framework, task)): Path<(String, String)>, Query(query): Query<HashMap<String, String>>) -> Result<Response, UiError> {
    let (_, _, bytes) = read_sandbox_file(&shared, &caller, &headers, &framework, &task, &query, 1 << 20).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        bytes,
    )
        .into_response())
}

async fn reservations(State(shared): State<Shared>, Extension(caller): Extension<Caller>) -> Page {
    Ok(Html(pages::reservations(&ctx(&shared), &state(&shared, &caller)).into_string()))
}

async fn offers(State(shared): State<Shared>, Extension(caller): Extension<Caller>, Query(query): Query<HashMap<String, String>>) -> Page {
    let params = ListParams::parse(&query)?;
    Ok(Html(pages::offers(&ctx(&shared), &state(&shared, &caller), &params).into_string()))
}

async fn policy(State(shared): State<Shared>, Extension(caller): Extension<Caller>) -> Page {
    let doc = state(&shared, &caller);
    let settings = shared.lock().core.settings().clone();
    Ok(Html(pages::policy(&ctx(&shared), &doc, &settings).into_string()))
}

/// Refuses an action unless actions are on and the form was posted from
/// this UI (a page elsewhere cannot make a visitor's browser post it).
fn may_act(shared: &Shared, headers: &HeaderMap) -> Result<(), UiError> {
    if !shared.ui.settings.actions_enabled {
        return Err(UiError::Forbidden("actions are off: set broker.ui.actions.enabled to true to allow them (with broker.auth.tokens.file set, only callers with a token reach them, and broker.acl.teardown-framework decides)".to_owned()));
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host {
            return Err(UiError::Forbidden(format!("a form from {:?} may not act on this broker", clip(origin))));
        }
    }
    Ok(())
}

/// Killing a framework's task or tearing it down from the UI needs the
/// `teardown-framework` ACL on the principal the framework belongs to.
fn may_teardown(shared: &Shared, caller: &Caller, framework: &FrameworkId) -> Result<(), UiError> {
    let owner = shared.lock().core.framework_principal(framework).map(str::to_owned);
    let Some(owner) = owner else { return Ok(()) };
    authorize(&shared.acls, &caller.principal, Action::TeardownFramework, &owner).map_err(|refusal| {
        tracing::warn!(principal = %caller.principal, framework_id = %framework, %refusal, "UI action refused by ACL");
        UiError::Forbidden(refusal.to_string())
    })
}

async fn kill(State(shared): State<Shared>, Extension(caller): Extension<Caller>, headers: HeaderMap, Path((framework, task)): Path<(String, String)>) -> Result<Redirect, UiError> {
    may_act(&shared, &headers)?;
    let (f, t) = (FrameworkId::new(framework.clone()), TaskId::new(task.clone()));
    may_teardown(&shared, &caller, &f)?;
    shared.apply_durably(|core, _| core.operator_kill(&f, &t)).await.map_err(UiError::NotFound)?;
    Ok(Redirect::to(&task_href(&framework, &task)))
}

async fn teardown(State(shared): State<Shared>, Extension(caller): Extension<Caller>, headers: HeaderMap, Path(id): Path<String>) -> Result<Redirect, UiError> {
    may_act(&shared, &headers)?;
    let f = FrameworkId::new(id.clone());
    may_teardown(&shared, &caller, &f)?;
    shared.apply_durably(|core, now| core.operator_teardown(&f, now)).await.map_err(UiError::NotFound)?;
    Ok(Redirect::to("/ui/frameworks"))
}

/// GET `url`, at most [`UPSTREAM_MAX`] bytes of a 200 answer.
async fn get_capped(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, UiError> {
    get_capped_as(http, url, None).await
}

/// [`get_capped`] with the `authorization` header given.
async fn get_capped_as(http: &reqwest::Client, url: &str, authorization: Option<&axum::http::HeaderValue>) -> Result<Vec<u8>, UiError> {
    let mut request = http.get(url);
    if let Some(value) = authorization {
        request = request.header(axum::http::header::AUTHORIZATION, value.as_bytes());
    }
    let mut response = request.send().await.map_err(|e| UiError::Upstream(format!("{url}: {e}")))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| UiError::Upstream(format!("{url}: {e}")))? {
        if body.len() + chunk.len() > UPSTREAM_MAX {
            return Err(UiError::Upstream(format!("{url}: the answer is larger than {UPSTREAM_MAX} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    if status.is_success() {
        return Ok(body);
    }
    let message = String::from_utf8_lossy(&body).trim().to_owned();
    Err(match status.as_u16() {
        400 => UiError::BadRequest(message),
        404 => UiError::NotFound(message),
        _ => UiError::Upstream(format!("{url}: {status}: {message}")),
    })
}

/// GET from an agent's HTTP port with the UI user's own credentials (the
/// request's `authorization` header): an agent that asks for a token
/// decides by its own ACL (`agent.acl.view-framework`), as a Mesos agent
/// does for a browser reading a sandbox.
async fn agent_get(ui: &Ui, headers: &HeaderMap, agent: &str, path_and_query: &str) -> Result<Vec<u8>, UiError> {
    let authorization = headers.get(axum::http::header::AUTHORIZATION);
    get_capped_as(&ui.http, &format!("{}://{agent}{path_and_query}", ui.agent_scheme), authorization).await
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, UiError> {
    let body = get_capped(http, url).await?;
    serde_json::from_slice(&body).map_err(|e| UiError::Upstream(format!("{url}: not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(enc("a/b ?<x>"), "a%2Fb%20%3F%3Cx%3E");
        assert_eq!(enc("weir-run-0"), "weir-run-0");
        assert_eq!(task_href("F/1", "../x"), "/ui/tasks/F%2F1/..%2Fx");
    }

    #[test]
    fn list_params_refuse_what_they_cannot_use() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        assert!(matches!(ListParams::parse(&q(&[("page", "x")])), Err(UiError::BadRequest(_))));
        assert!(matches!(ListParams::parse(&q(&[("page", "99999999999999999999999")])), Err(UiError::BadRequest(_))));
        assert!(matches!(ListParams::parse(&q(&[("q", &"x".repeat(5000))])), Err(UiError::BadRequest(_))));
        let p = ListParams::parse(&q(&[("page", "3"), ("per_page", "100000"), ("state", "TASK_RUNNING"), ("q", " Spark ")])).unwrap();
        assert_eq!((p.page, p.per_page, p.q.as_str(), p.filter("state")), (3, PER_PAGE_MAX, "spark", Some("TASK_RUNNING")));
        assert_eq!(p.at_page(4), "state=TASK_RUNNING&q=spark&page=4&per_page=500");
        let paged = paginate((0..1200).collect(), &p);
        assert_eq!((paged.items.first(), paged.items.len(), paged.pages, paged.total), (Some(&1000), 200, 3, 1200));
        let far = ListParams::parse(&q(&[("page", &usize::MAX.to_string())])).unwrap();
        assert!(paginate((0..10).collect::<Vec<_>>(), &far).items.is_empty());
    }

    #[test]
    fn containers_belong_to_their_application() {
        let (ts, seq) = application_parts("application_1700000000000_0001").unwrap();
        assert!(container_of("container_1700000000000_0001_01_000001", ts, seq));
        assert!(container_of("container_e07_1700000000000_0001_01_000002", ts, seq));
        assert!(!container_of("container_1700000000000_00010_01_000001", ts, seq));
        assert!(!container_of("nodemanager-A1-1", ts, seq));
        assert!(application_parts("application_1_x").is_none());
        assert!(application_parts("application_1_2/../../x").is_none());
        assert_eq!(container_application("container_e07_1700000000000_0001_01_000002").as_deref(), Some("application_1700000000000_0001"));
        assert_eq!(container_application("container_1700000000000_0001_01_000001").as_deref(), Some("application_1700000000000_0001"));
        assert_eq!(container_application("container_x_../_01"), None);
        assert_eq!(container_application("weir-run-0"), None);
    }

    #[test]
    fn only_web_urls_become_links() {
        assert_eq!(web_link("http://h:8088"), Some("http://h:8088"));
        assert_eq!(web_link("HTTPS://h"), Some("HTTPS://h"));
        assert_eq!(web_link("javascript:alert(1)"), None);
        assert_eq!(web_link(""), None);
    }
}
