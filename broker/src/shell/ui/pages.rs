//! The UI's pages as maud templates: pure functions of the `/state`
//! document (and what the agents and the YARN shim answered), so they can
//! be tested without a server. maud escapes every `(value)` it inserts.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::history::{percent, History};
use super::{enc, paginate, query_string, task_href, web_link, ListParams, Paged, UiError};
use crate::core::state::{AgentDoc, FrameworkDoc, ResourcesDoc, StateDoc, TaskDoc};
use crate::core::BrokerSettings;

/// What every page needs besides its data.
pub(super) struct Ctx {
    pub actions_enabled: bool,
}

const CSS: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}
header{background:#234;color:#fff;padding:6px 16px;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
header a{color:#cde;text-decoration:none}header a.active,header a:hover{color:#fff;text-decoration:underline}
header .brand{font-weight:bold;color:#fff;font-size:16px}
main{padding:8px 16px}h1{font-size:20px}h2{font-size:16px;margin-top:22px}
table{border-collapse:collapse;margin:6px 0}th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.num,th.num{text-align:right}
.muted{color:#777}.warn{color:#a40}.pager{margin:6px 0}.pager a,.pager span{margin-right:10px}
form.inline{display:inline}pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:70vh;white-space:pre-wrap}
svg.chart{border:1px solid #ddd;background:#fff}svg .grid{stroke:#eee}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
dl.fields{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dl.fields dt{color:#555}dl.fields dd{margin:0}
footer{padding:10px 16px;color:#777;border-top:1px solid #ddd;margin-top:20px}
";

const NAV: [(&str, &str); 7] = [
    ("/ui/", "Overview"),
    ("/ui/agents", "Agents"),
    ("/ui/frameworks", "Frameworks"),
    ("/ui/tasks", "Tasks"),
    ("/ui/reservations", "Reservations & volumes"),
    ("/ui/offers", "Offers"),
    ("/ui/policy", "Allocation policy"),
];

fn layout(ctx: &Ctx, section: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // No favicon request (and no 404 for it in the console).
                link rel="icon" href="data:,";
                title { "Weir: " (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a.brand href="/ui/" { "Weir" }
                    @for (href, label) in NAV {
                        a href=(href) class=[(label == section).then_some("active")] { (label) }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
                footer {
                    @if ctx.actions_enabled {
                        span.warn { "Actions are on (broker.ui.actions.enabled) and there is no operator authentication yet: anyone who can reach this port can kill tasks and tear frameworks down." }
                    } @else {
                        "Read-only (actions are off: broker.ui.actions.enabled). There is no operator authentication yet."
                    }
                    " Data: " a href="/state" { "/state" } ", " a href="/metrics" { "/metrics" } "."
                }
            }
        }
    }
}

pub(super) fn error(status: axum::http::StatusCode, message: &str) -> Markup {
    let ctx = Ctx { actions_enabled: false };
    layout(&ctx, "", &format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("error")), html! {
        p.warn { (message) }
        p { a href="/ui/" { "Back to the overview" } }
    })
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn ago(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0}s ago"),
        s if s < 7200.0 => format!("{:.0}m ago", s / 60.0),
        s => format!("{:.1}h ago", s / 3600.0),
    }
}

fn resources(r: &ResourcesDoc) -> String {
    let mut parts = vec![format!("cpus {}", num(r.cpus)), format!("mem {} MiB", num(r.mem))];
    if r.disk > 0.0 {
        parts.push(format!("disk {} MiB", num(r.disk)));
    }
    if r.gpus > 0.0 {
        parts.push(format!("gpus {}", num(r.gpus)));
    }
    if !r.ports.is_empty() {
        parts.push(format!("ports {}", r.ports));
    }
    parts.join(", ")
}

/// The search box of a table; other filters ride along as hidden fields.
fn search(action: &str, params: &ListParams, placeholder: &str) -> Markup {
    html! {
        form method="get" action=(action) {
            input type="search" name="q" value=(params.q) placeholder=(placeholder) aria-label="search";
            @for (k, v) in &params.filters {
                input type="hidden" name=(k) value=(v);
            }
            " " button type="submit" { "Search" }
            @if !params.q.is_empty() || !params.filters.is_empty() {
                " " a href=(action) { "clear" }
            }
        }
    }
}

fn pager<T>(action: &str, params: &ListParams, paged: &Paged<T>) -> Markup {
    html! {
        div.pager {
            span { (paged.total) " matching · page " (paged.page) " of " (paged.pages) }
            @if paged.page > 1 {
                a href={ (action) "?" (params.at_page(1)) } { "« first" }
                a href={ (action) "?" (params.at_page(paged.page.min(paged.pages + 1) - 1)) } rel="prev" { "‹ previous" }
            }
            @if paged.page < paged.pages {
                a href={ (action) "?" (params.at_page(paged.page + 1)) } rel="next" { "next ›" }
                a href={ (action) "?" (params.at_page(paged.pages)) } { "last »" }
            }
        }
    }
}

fn agent_link(id: &str) -> Markup {
    html! { a href={ "/ui/agents/" (enc(id)) } { (id) } }
}

fn framework_link(id: &str) -> Markup {
    html! { a href={ "/ui/frameworks/" (enc(id)) } { (id) } }
}

/// An agent's maintenance: its drain state, and its window if one is
/// set (Unix seconds, as `/state` has it).
fn maintenance(a: &AgentDoc) -> String {
    let drain = if a.drain.is_empty() { "active" } else { a.drain.as_str() };
    match a.maintenance {
        Some(w) => format!("{drain}; window {:.0}–{:.0} (Unix s)", w.start, w.end),
        None => drain.to_owned(),
    }
}

fn agent_state(a: &AgentDoc) -> &'static str {
    match (a.reachable, a.connected) {
        (true, true) => "reachable",
        (true, false) => "disconnected",
        (false, _) => "unreachable",
    }
}

pub(super) fn overview(ctx: &Ctx, doc: &StateDoc, history: &History) -> Markup {
    let mut reserved = ResourcesDoc::default();
    for r in &doc.roles {
        reserved.cpus += r.reserved.cpus;
        reserved.mem += r.reserved.mem;
        reserved.disk += r.reserved.disk;
        reserved.gpus += r.reserved.gpus;
    }
    let t = &doc.totals;
    let rows = [("total", &t.total), ("used", &t.used), ("offered", &t.offered), ("reserved", &reserved), ("free", &t.free)];
    let reachable = doc.agents.iter().filter(|a| a.reachable).count();
    let mut frameworks: Vec<&FrameworkDoc> = doc.frameworks.iter().collect();
    frameworks.sort_by(|a, b| b.dominant_share.total_cmp(&a.dominant_share));
    layout(ctx, "Overview", "Cluster overview", html! {
        p {
            "Broker " strong { (doc.broker.id) } " (version " (doc.broker.version) "), up " (num(doc.broker.uptime_seconds.floor())) " s"
            @if doc.broker.leader_epoch > 0 { ", leading epoch " (doc.broker.leader_epoch) }
            @if doc.broker.recovering { " — " span.warn { "recovering: waiting for agents to re-register, no offers yet" } }
            "."
        }
        p {
            a href="/ui/agents" { (reachable) "/" (doc.agents.len()) " agents reachable" } " · "
            a href="/ui/frameworks" { (doc.frameworks.len()) " frameworks" } " · "
            a href="/ui/tasks" { (doc.tasks.len()) " tasks" } " · "
            a href="/ui/offers" { (doc.totals.offers) " offers outstanding" }
        }
        h2 { "Resources" }
        table {
            tr { th {} th.num { "cpus" } th.num { "mem (MiB)" } th.num { "disk (MiB)" } th.num { "gpus" } }
            @for (label, r) in rows {
                tr { th { (label) } td.num { (num(r.cpus)) } td.num { (num(r.mem)) } td.num { (num(r.disk)) } td.num { (num(r.gpus)) } }
            }
        }
        h2 { "Roles" }
        table {
            tr { th { "role" } th.num { "weight" } th.num { "dominant share" } th.num { "weighted" } th { "allocated" } th { "reserved" } th.num { "frameworks" } }
            @for r in &doc.roles {
                tr {
                    td { a href={ "/ui/tasks?" (query_string(&[("role", &r.role)])) } { (r.role) } }
                    td.num { (num(r.weight)) } td.num { (percent(r.dominant_share)) } td.num { (percent(r.weighted_share)) }
                    td { (resources(&r.allocated)) } td { (resources(&r.reserved)) } td.num { (r.frameworks) }
                }
            }
        }
        h2 { "Frameworks by dominant share" }
        table {
            tr { th { "framework" } th { "name" } th.num { "dominant share" } th.num { "tasks" } }
            @for f in frameworks.iter().take(20) {
                tr { td { (framework_link(&f.id)) } td { (f.name) } td.num { (percent(f.dominant_share)) } td.num { (f.tasks) } }
            }
        }
        h2 { "Dominant shares over time" }
        p.muted { (history.len()) " samples over " (history.span().as_secs()) " s." }
        h3 { "Roles" }
        (history.chart(false, |role| doc.roles.iter().any(|r| r.role == role)))
        h3 { "Frameworks" }
        // Series are "name (id)"; the frameworks the caller may see.
        (history.chart(true, |series| {
            let id = series.strip_suffix(')').and_then(|s| s.rsplit_once(" (")).map(|(_, id)| id);
            id.is_some_and(|id| doc.frameworks.iter().any(|f| f.id == id))
        }))
    })
}

pub(super) fn agents(ctx: &Ctx, doc: &StateDoc, params: &ListParams) -> Markup {
    let state_filter = params.filter("state");
    let all: Vec<&AgentDoc> = doc
        .agents
        .iter()
        .filter(|a| state_filter.is_none_or(|s| s == agent_state(a)))
        .filter(|a| params.matches(&[&a.id, &a.hostname, agent_state(a), &a.http_address]))
        .collect();
    let paged = paginate(all, params);
    layout(ctx, "Agents", "Agents", html! {
        (search("/ui/agents", params, "id, hostname or state"))
        (pager("/ui/agents", params, &paged))
        table {
            tr { th { "agent" } th { "hostname" } th { "state" } th { "maintenance" } th.num { "cpus used/total" } th.num { "mem used/total (MiB)" } th.num { "disk total (MiB)" } th { "free" } th.num { "tasks" } th { "last heartbeat" } }
            @for a in &paged.items {
                tr {
                    td { (agent_link(&a.id)) } td { (a.hostname) } td { (agent_state(a)) } td { (maintenance(a)) }
                    td.num { (num(a.used.cpus)) "/" (num(a.total.cpus)) } td.num { (num(a.used.mem)) "/" (num(a.total.mem)) }
                    td.num { (num(a.total.disk)) } td { (resources(&a.free)) }
                    td.num { a href={ "/ui/tasks?" (query_string(&[("agent", &a.id)])) } { (a.tasks) } }
                    td { (ago(a.last_seen_seconds_ago)) }
                }
            }
        }
    })
}

fn task_rows(tasks: &[(&TaskDoc, bool)]) -> Markup {
    html! {
        table {
            tr { th { "task" } th { "name" } th { "framework" } th { "agent" } th { "state" } th { "role" } th.num { "cpus" } th.num { "mem (MiB)" } th { "message" } }
            @for (t, live) in tasks {
                tr {
                    td { a href=(task_href(&t.framework_id, &t.id)) { (t.id) } }
                    td { (t.name) } td { (framework_link(&t.framework_id)) } td { (agent_link(&t.agent_id)) }
                    td { (t.state) @if !live { " " span.muted { "(completed)" } } }
                    td { (t.role) }
                    td.num { @if *live { (num(t.resources.cpus)) } } td.num { @if *live { (num(t.resources.mem)) } }
                    td { (t.message) @if let Some(code) = t.exit_code { " (exit " (code) ")" } }
                }
            }
        }
    }
}

pub(super) fn agent(ctx: &Ctx, doc: &StateDoc, a: &AgentDoc) -> Markup {
    let tasks: Vec<(&TaskDoc, bool)> = doc.tasks.iter().filter(|t| t.agent_id == a.id).map(|t| (t, true)).collect();
    layout(ctx, "Agents", &format!("Agent {}", a.id), html! {
        dl.fields {
            dt { "hostname" } dd { (a.hostname) }
            dt { "state" } dd { (agent_state(a)) }
            dt { "maintenance" } dd { (maintenance(a)) }
            dt { "HTTP" } dd { a href={ "http://" (a.http_address) "/state" } { (a.http_address) } }
            dt { "resources" } dd { (a.resources) }
            dt { "used" } dd { (resources(&a.used)) }
            dt { "offered" } dd { (resources(&a.offered)) }
            dt { "free" } dd { (resources(&a.free)) }
            dt { "registered" } dd { (ago(a.registered_seconds_ago)) }
            dt { "last heartbeat" } dd { (ago(a.last_seen_seconds_ago)) }
            dt { "attributes" } dd { @for (k, v) in &a.attributes { (k) "=" (v) " " } }
        }
        h2 { "Tasks (" (tasks.len()) ")" }
        (task_rows(&tasks))
        h2 { "Reservations" }
        table {
            tr { th { "id" } th { "role" } th { "resources" } th { "principal" } th { "framework" } }
            @for r in &a.reservations { tr { td { (r.id) } td { (r.role) } td { (r.resources) } td { (r.principal) } td { (r.framework_id) } } }
        }
        h2 { "Volumes" }
        table {
            tr { th { "id" } th { "role" } th { "reservation" } th.num { "size (MiB)" } th { "path" } th { "used by" } }
            @for v in &a.volumes { tr { td { (v.id) } td { (v.role) } td { (v.reservation_id) } td.num { (num(v.size_mib)) } td { (v.container_path) } td { (v.used_by.join(", ")) } } }
        }
    })
}

pub(super) fn frameworks(ctx: &Ctx, doc: &StateDoc, params: &ListParams) -> Markup {
    let all: Vec<&FrameworkDoc> =
        doc.frameworks.iter().filter(|f| params.matches(&[&f.id, &f.name, &f.user, &f.roles.join(",")])).collect();
    let paged = paginate(all, params);
    layout(ctx, "Frameworks", "Frameworks", html! {
        (search("/ui/frameworks", params, "id, name, user or role"))
        (pager("/ui/frameworks", params, &paged))
        table {
            tr { th { "framework" } th { "name" } th { "principal" } th { "roles" } th { "user" } th { "active" } th.num { "dominant share" } th.num { "tasks" } th.num { "offers" } th { "used" } th { "web UI" } }
            @for f in &paged.items {
                tr {
                    td { (framework_link(&f.id)) } td { (f.name) } td { (f.principal) } td { (f.roles.join(", ")) } td { (f.user) }
                    td { @if f.active { "yes" } @else { "no" } }
                    td.num { (percent(f.dominant_share)) } td.num { (f.tasks) } td.num { (f.offers) } td { (resources(&f.used)) }
                    td { @if let Some(url) = web_link(&f.webui_url) { a href=(url) { (url) } } }
                }
            }
        }
    })
}

fn json_str<'a>(v: &'a serde_json::Value, key: &str) -> std::borrow::Cow<'a, str> {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
        Some(serde_json::Value::Null) | None => std::borrow::Cow::Borrowed(""),
        Some(other) => std::borrow::Cow::Owned(other.to_string()),
    }
}

fn tracking(app: &serde_json::Value) -> Markup {
    let url = json_str(app, "trackingUrl");
    html! {
        @if let Some(url) = web_link(&url) { a href=(url) { (json_str(app, "trackingUI")) @if json_str(app, "trackingUI").is_empty() { "tracking" } } }
    }
}

pub(super) fn framework(ctx: &Ctx, doc: &StateDoc, f: &FrameworkDoc, apps: Option<Result<Vec<serde_json::Value>, UiError>>) -> Markup {
    let tasks: Vec<(&TaskDoc, bool)> = doc.tasks.iter().filter(|t| t.framework_id == f.id).map(|t| (t, true)).collect();
    let shown = &tasks[..tasks.len().min(super::PER_PAGE_MAX)];
    layout(ctx, "Frameworks", &format!("Framework {}", f.id), html! {
        dl.fields {
            dt { "name" } dd { (f.name) }
            dt { "roles" } dd { (f.roles.join(", ")) }
            dt { "user" } dd { (f.user) }
            dt { "hostname" } dd { (f.hostname) }
            dt { "active" } dd { @if f.active { "yes" } @else { "no (waiting to fail over)" } }
            dt { "failover timeout" } dd { @if f.failover_timeout_seconds < 0.0 { "none" } @else { (num(f.failover_timeout_seconds)) " s" } }
            dt { "dominant share" } dd { (percent(f.dominant_share)) }
            dt { "used" } dd { (resources(&f.used)) }
            dt { "offered" } dd { (resources(&f.offered)) " in " a href={ "/ui/offers?" (query_string(&[("framework", &f.id)])) } { (f.offers) " offers" } }
            dt { "registered" } dd { (ago(f.registered_seconds_ago)) }
            @if let Some(url) = web_link(&f.webui_url) { dt { "web UI" } dd { a href=(url) { (url) } } }
        }
        @if ctx.actions_enabled {
            form.inline method="post" action={ "/ui/frameworks/" (enc(&f.id)) "/teardown" } {
                button type="submit" { "Tear down this framework (kills its tasks)" }
            }
        }
        @if let Some(apps) = apps {
            h2 { "YARN applications" }
            @match apps {
                Ok(apps) => {
                    table {
                        tr { th { "application" } th { "name" } th { "user" } th { "queue" } th { "state" } th { "final status" } th.num { "containers" } th { "tracking" } }
                        @for app in &apps {
                            tr {
                                td { a href={ "/ui/frameworks/" (enc(&f.id)) "/apps/" (enc(&json_str(app, "id"))) } { (json_str(app, "id")) } }
                                td { (json_str(app, "name")) } td { (json_str(app, "user")) } td { (json_str(app, "queue")) }
                                td { (json_str(app, "state")) } td { (json_str(app, "finalStatus")) } td.num { (json_str(app, "runningContainers")) }
                                td { (tracking(app)) }
                            }
                        }
                    }
                }
                Err(e) => { p.warn { "The framework's web UI did not list YARN applications: " (e) } }
            }
        }
        h2 { "Tasks (" (tasks.len()) ")" }
        @if shown.len() < tasks.len() { p { "The first " (shown.len()) "; " a href={ "/ui/tasks?" (query_string(&[("framework", &f.id)])) } { "all of them" } "." } }
        (task_rows(shown))
    })
}

pub(super) fn application(ctx: &Ctx, f: &FrameworkDoc, app_id: &str, app: &serde_json::Value, containers: &[(&TaskDoc, bool)]) -> Markup {
    let fields = ["name", "user", "queue", "applicationType", "state", "finalStatus", "progress", "startedTime", "finishedTime", "elapsedTime", "allocatedMB", "allocatedVCores", "runningContainers", "diagnostics"];
    layout(ctx, "Frameworks", &format!("YARN application {app_id}"), html! {
        p { "Run by framework " (framework_link(&f.id)) " (" (f.name) ")." }
        dl.fields {
            @for key in fields { dt { (key) } dd { (json_str(app, key)) } }
            dt { "tracking URL" } dd { (tracking(app)) }
            @if let Some(url) = web_link(&json_str(app, "amContainerLogs")) { dt { "AM container logs" } dd { a href=(url) { (url) } } }
        }
        h2 { "Containers (" (containers.len()) ")" }
        p.muted { "Each YARN container is a task of the shim; its page has the sandbox and the container's logs." }
        (task_rows(containers))
    })
}

pub(super) fn tasks(ctx: &Ctx, doc: &StateDoc, params: &ListParams) -> Markup {
    let (state, framework, agent, role) = (params.filter("state"), params.filter("framework"), params.filter("agent"), params.filter("role"));
    let all: Vec<(&TaskDoc, bool)> = doc
        .tasks
        .iter()
        .map(|t| (t, true))
        .chain(doc.completed_tasks.iter().map(|t| (t, false)))
        .filter(|(t, _)| state.is_none_or(|s| s == t.state))
        .filter(|(t, _)| framework.is_none_or(|f| f == t.framework_id))
        .filter(|(t, _)| agent.is_none_or(|a| a == t.agent_id))
        .filter(|(t, _)| role.is_none_or(|r| r == t.role))
        .filter(|(t, _)| params.matches(&[&t.id, &t.name, &t.framework_id, &t.agent_id, &t.state, &t.message]))
        .collect();
    let paged = paginate(all, params);
    layout(ctx, "Tasks", "Tasks", html! {
        p.muted { "Live tasks first, then the most recently completed." }
        (search("/ui/tasks", params, "id, name, framework, agent or state"))
        (pager("/ui/tasks", params, &paged))
        (task_rows(&paged.items))
    })
}

pub(super) fn task(ctx: &Ctx, t: &TaskDoc, live: bool, path: &str, listing: Result<serde_json::Value, UiError>, yarn_logs: Option<(String, String)>) -> Markup {
    let href = task_href(&t.framework_id, &t.id);
    let file_href = |p: &str| format!("{href}/file?{}", query_string(&[("path", p)]));
    // A YARN container's logs are in its node manager's sandbox.
    let (log_href, log_dir) = match &yarn_logs {
        Some((nm, dir)) => (task_href(&t.framework_id, nm), format!("{dir}/")),
        None => (href.clone(), String::new()),
    };
    let log_file = |name: &str| format!("{log_href}/file?{}", query_string(&[("path", &format!("{log_dir}{name}"))]));
    let parent = path.trim_end_matches('/').rsplit_once('/').map_or("", |(p, _)| p);
    layout(ctx, "Tasks", &format!("Task {}", t.id), html! {
        dl.fields {
            dt { "name" } dd { (t.name) }
            dt { "framework" } dd { (framework_link(&t.framework_id)) }
            dt { "agent" } dd { (agent_link(&t.agent_id)) }
            dt { "state" } dd { (t.state) @if !live { " (completed)" } }
            @if !t.role.is_empty() { dt { "role" } dd { (t.role) } }
            @if live { dt { "resources" } dd { (resources(&t.resources)) } }
            @if !t.message.is_empty() { dt { "message" } dd { (t.message) } }
            @if let Some(code) = t.exit_code { dt { "exit code" } dd { (code) } }
            @if let Some(cpu) = t.cpu_seconds { dt { "CPU time" } dd { (format!("{cpu:.1}")) " s" } }
            @if let Some(mem) = t.mem_used_mib { dt { "memory in use" } dd { (format!("{mem:.1}")) " MiB" } }
        }
        @if ctx.actions_enabled && live {
            form.inline method="post" action={ (href) "/kill" } {
                button type="submit" id="kill" { "Kill this task" }
            }
        }
        h2 { "Logs" }
        p {
            a href=(log_file("stdout")) { "stdout" } " · " a href=(log_file("stderr")) { "stderr" }
            @if let Some((nm, dir)) = &yarn_logs {
                " · " a href={ (log_href) "?" (query_string(&[("path", dir)])) } { "all container logs" }
                " " span.muted { "(YARN container logs, in node manager " (nm) "'s sandbox)" }
            }
        }
        h2 { "Sandbox" @if !path.is_empty() { ": " (path) } }
        @match listing {
            Ok(listing) => {
                table {
                    tr { th { "name" } th.num { "size" } th { "modified (unix time)" } }
                    @if !path.is_empty() {
                        tr { td { a href={ (href) "?" (query_string(&[("path", parent)])) } { ".." } } td {} td {} }
                    }
                    @for e in listing.get("entries").and_then(|e| e.as_array()).into_iter().flatten() {
                        @let p = json_str(e, "path");
                        tr {
                            td {
                                @if e.get("is_dir").and_then(|d| d.as_bool()).unwrap_or(false) {
                                    a href={ (href) "?" (query_string(&[("path", &p)])) } { (json_str(e, "name")) "/" }
                                } @else {
                                    a href=(file_href(&p)) { (json_str(e, "name")) }
                                }
                            }
                            td.num { (json_str(e, "size")) } td { (json_str(e, "mtime")) }
                        }
                    }
                }
                @if listing.get("truncated").and_then(|t| t.as_bool()).unwrap_or(false) { p.warn { "Only the first entries are listed." } }
            }
            Err(e) => { p.warn { "The sandbox cannot be listed: " (e) } }
        }
    })
}

pub(super) fn file(ctx: &Ctx, framework: &str, task: &str, path: &str, offset: u64, page: u64, bytes: &[u8]) -> Markup {
    let href = task_href(framework, task);
    let at = |offset: u64| format!("{href}/file?{}", query_string(&[("path", path), ("offset", &offset.to_string())]));
    layout(ctx, "Tasks", &format!("{path} of task {task}"), html! {
        p {
            a href=(href) { "task " (task) } " · "
            a href={ (href) "/raw?" (query_string(&[("path", path), ("offset", &offset.to_string())])) } { "raw" }
            " · bytes " (offset) "–" (offset + bytes.len() as u64)
            @if offset > 0 { " · " a href=(at(offset.saturating_sub(page))) rel="prev" { "‹ previous" } }
            @if bytes.len() as u64 == page { " · " a href=(at(offset + page)) rel="next" { "next ›" } }
        }
        pre id="content" { (String::from_utf8_lossy(bytes)) }
    })
}

pub(super) fn reservations(ctx: &Ctx, doc: &StateDoc) -> Markup {
    layout(ctx, "Reservations & volumes", "Reservations and volumes", html! {
        h2 { "Reservations" }
        table {
            tr { th { "agent" } th { "id" } th { "role" } th { "resources" } th { "principal" } th { "framework" } }
            @for a in &doc.agents { @for r in &a.reservations {
                tr { td { (agent_link(&a.id)) } td { (r.id) } td { (r.role) } td { (r.resources) } td { (r.principal) } td { @if !r.framework_id.is_empty() { (framework_link(&r.framework_id)) } } }
            } }
        }
        h2 { "Volumes" }
        table {
            tr { th { "agent" } th { "id" } th { "role" } th { "reservation" } th.num { "size (MiB)" } th { "path" } th { "shared" } th { "used by" } }
            @for a in &doc.agents { @for v in &a.volumes {
                tr { td { (agent_link(&a.id)) } td { (v.id) } td { (v.role) } td { (v.reservation_id) } td.num { (num(v.size_mib)) } td { (v.container_path) } td { @if v.shared { "yes" } @else { "no" } } td { (v.used_by.join(", ")) } }
            } }
        }
        @if !doc.missing_agents.is_empty() {
            h2 { "On agents not in the books" }
            table {
                tr { th { "agent" } th { "hostname" } th { "status" } th { "reservations" } th { "volumes" } }
                @for m in &doc.missing_agents {
                    tr { td { (m.id) } td { (m.hostname) } td { (m.status) }
                         td { @for r in &m.reservations { (r.id) " (" (r.role) ": " (r.resources) ") " } }
                         td { @for v in &m.volumes { (v.id) " (" (v.role) ") " } } }
                }
            }
        }
        h2 { "Latest operations" }
        table {
            tr { th { "operation" } th { "kind" } th { "state" } th { "agent" } th { "framework" } th { "message" } }
            @for o in doc.operations.iter().take(100) {
                tr { td { (o.id) } td { (o.kind) } td { (o.state) } td { (o.agent_id) } td { (o.framework_id) } td { (o.message) } }
            }
        }
    })
}

pub(super) fn offers(ctx: &Ctx, doc: &StateDoc, params: &ListParams) -> Markup {
    let framework = params.filter("framework");
    let all: Vec<_> = doc
        .offers
        .iter()
        .filter(|o| framework.is_none_or(|f| f == o.framework_id))
        .filter(|o| params.matches(&[&o.id, &o.framework_id, &o.agent_id, &o.role]))
        .collect();
    let paged = paginate(all, params);
    layout(ctx, "Offers", "Offers outstanding", html! {
        (search("/ui/offers", params, "id, framework, agent or role"))
        (pager("/ui/offers", params, &paged))
        table {
            tr { th { "offer" } th { "framework" } th { "agent" } th { "role" } th { "resources" } th.num { "rescinded in" } }
            @for o in &paged.items {
                tr { td { (o.id) } td { (framework_link(&o.framework_id)) } td { (agent_link(&o.agent_id)) } td { (o.role) } td { (o.resources) } td.num { (format!("{:.0}", o.expires_in_seconds)) " s" } }
            }
        }
    })
}

pub(super) fn policy(ctx: &Ctx, doc: &StateDoc, s: &BrokerSettings) -> Markup {
    let secs = |d: std::time::Duration| format!("{} s", num(d.as_secs_f64()));
    layout(ctx, "Allocation policy", "Allocation policy", html! {
        p {
            "Each allocation cycle offers every agent's free resources down the tree of roles (eng, then eng/analytics…): among siblings, a role below its guarantee first, then by the policy ("
            (doc.allocation.policy) ", broker.allocator.policy: drf orders by weighted dominant share, strict-priority by band and then share, fifo by arrival), then within the role to its frameworks. "
            "Limits cut offers to fit; guarantees keep free resources nobody else may take, and past that are reclaimed by revocation. "
            "Reserved resources go only to their role."
        }
        dl.fields {
            dt { "allocation interval" } dd { (secs(s.allocation_interval)) " (broker.allocation.interval)" }
            dt { "offer timeout" } dd { (secs(s.offer_timeout)) " (broker.offer.timeout)" }
            dt { "revocation grace" } dd { (secs(s.revocation_grace)) " (broker.revocation.grace)" }
            dt { "revocable resources' grace" } dd { (secs(s.revocable_grace)) " (broker.revocation.revocable-grace)" }
            dt { "default decline filter" } dd { (secs(s.refuse_default)) " (broker.filter.refuse.default)" }
            dt { "agent unreachable after" } dd { (secs(s.agent_unreachable_timeout)) }
            dt { "agent removed after" } dd { (secs(s.agent_reregister_timeout)) }
            dt { "recovery wait after a failover" } dd { (secs(s.recovery_timeout)) }
            dt { "limits" } dd { (s.max_frameworks) " frameworks, " (s.max_roles) " roles" }
        }
        h2 { "Roles: weights, bands, quotas and shares" }
        p { "Policy: " (doc.allocation.policy) "; guarantees add up to " (resources(&doc.allocation.guaranteed))
            @if !doc.allocation.guarantees_fit { strong { " — more than the reachable agents hold" } }
            "; guaranteed roles lack " (resources(&doc.allocation.guarantee_shortfall)) "." }
        table {
            tr { th { "role" } th.num { "weight" } th.num { "band" } th { "guarantee" } th { "limit" } th { "consumed" } th.num { "dominant share" } th.num { "weighted share" } th { "reserved" } th.num { "volumes" } }
            @for r in &doc.roles {
                tr {
                    td { (r.role) } td.num { (num(r.weight)) } td.num { (r.priority) } td { (resources(&r.guarantee)) }
                    td { (limits(&r.limit)) } td { (resources(&r.consumed)) }
                    td.num { (percent(r.dominant_share)) } td.num { (percent(r.weighted_share)) } td { (resources(&r.reserved)) } td.num { (r.volumes) }
                }
            }
        }
        @if !doc.allocation.revocations.is_empty() {
            h2 { "Revocations under way" }
            table {
                tr { th { "framework" } th { "task" } th { "for role" } th.num { "killed in" } }
                @for v in &doc.allocation.revocations {
                    tr { td { (framework_link(&v.framework_id)) } td { (v.task_id) } td { (v.for_role) }
                         td.num { @if v.killed { "killed" } @else { (num(v.seconds_left)) " s" } } }
                }
            }
        }
        p.muted { "Weights, bands and quotas come from broker.roles.weights and the operator API (weir role set); roles without one weigh 1, sit in band 0 and have no quota." }
    })
}

/// A role's limits, `cpus:3;mem:1024`, or `none`.
fn limits(l: &std::collections::BTreeMap<String, f64>) -> String {
    if l.is_empty() {
        return "none".to_owned();
    }
    l.iter().map(|(k, v)| format!("{k}:{}", num(*v))).collect::<Vec<_>>().join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile_task() -> TaskDoc {
        TaskDoc {
            id: "t\"><script>alert(1)</script>".into(),
            name: "<img src=x onerror=alert(2)>".into(),
            framework_id: "F</td>".into(),
            principal: "<i>p</i>".into(),
            agent_id: "A&1".into(),
            state: "TASK_RUNNING".into(),
            role: "*".into(),
            resources: ResourcesDoc::default(),
            message: "<b>bold</b>".into(),
            exit_code: None,
            cpu_seconds: None,
            mem_used_mib: None,
            revocable: false,
        }
    }

    #[test]
    fn the_policy_page_shows_bands_quotas_and_the_policy_with_role_names_escaped() {
        use crate::core::roles::RolePolicy;
        let settings = BrokerSettings { allocator_policy: "strict-priority".into(), ..Default::default() };
        let mut core = crate::core::BrokerCore::new(settings.clone(), "b", std::time::Duration::ZERO, std::time::Duration::ZERO);
        let quota = weir_model::Quota {
            guarantee: weir_model::Resources::parse("cpus:4").unwrap(),
            limit: weir_model::Limits { cpus: Some(weir_model::Milli::from_units(6)), ..Default::default() },
        };
        let role = weir_model::Role::new("<i>x");
        core.set_role_policies(vec![RolePolicy { role, weight: 2.0, priority: 3, quota }], true).unwrap();
        let doc = core.state(std::time::Duration::ZERO);
        let page = policy(&Ctx { actions_enabled: false }, &doc, &settings).into_string();
        assert!(!page.contains("<i>x"), "role names are escaped");
        assert!(page.contains("&lt;i&gt;x"));
        assert!(page.contains("strict-priority"));
        assert!(page.contains("<td>cpus:6</td>"), "{page}");
        assert!(page.contains("<td>cpus 4, mem 0 MiB</td>"), "{page}");
        assert!(page.contains("more than the reachable agents hold"), "no agents: the guarantee does not fit");
    }

    #[test]
    fn hostile_names_are_escaped_everywhere_they_show() {
        let t = hostile_task();
        let ctx = Ctx { actions_enabled: true };
        let listing = Ok(serde_json::json!({"path": "", "entries": [{"name": "<svg onload=alert(3)>", "path": "<svg onload=alert(3)>", "is_dir": false, "size": 1, "mtime": 0}]}));
        let pages = [
            task_rows(&[(&t, true)]).into_string(),
            task(&ctx, &t, true, "", listing, None).into_string(),
            file(&ctx, &t.framework_id, &t.id, "<p>", 0, 10, b"</pre><script>alert(4)</script>").into_string(),
        ];
        for page in pages {
            for raw in ["<script>", "<img", "<b>", "<svg onload", "</td>\"", "</pre><script>"] {
                assert!(!page.contains(raw), "{raw} appears unescaped in {page}");
            }
        }
        let row = task_rows(&[(&t, true)]).into_string();
        assert!(row.contains("&lt;img src=x onerror=alert(2)&gt;"), "{row}");
        // The link itself is percent-encoded: one path segment per id.
        assert!(row.contains("href=\"/ui/tasks/F%3C%2Ftd%3E/t%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""), "{row}");
    }

    #[test]
    fn a_yarn_containers_logs_link_into_its_node_managers_sandbox() {
        let mut t = hostile_task();
        t.id = "container_1_0001_01_000001".into();
        t.framework_id = "F1".into();
        let logs = Some(("nodemanager-A1-1".to_owned(), "logs/application_1_0001/container_1_0001_01_000001".to_owned()));
        let page = task(&Ctx { actions_enabled: false }, &t, true, "", Ok(serde_json::json!({})), logs).into_string();
        let stderr = "href=\"/ui/tasks/F1/nodemanager-A1-1/file?path=logs%2Fapplication_1_0001%2Fcontainer_1_0001_01_000001%2Fstderr\"";
        assert!(page.contains(stderr), "{page}");
    }

    #[test]
    fn tracking_links_are_web_urls_only() {
        let app = serde_json::json!({"trackingUrl": "javascript:alert(1)", "trackingUI": "History"});
        assert!(!tracking(&app).into_string().contains("href"));
        let app = serde_json::json!({"trackingUrl": "http://rm:8088/proxy/application_1_1/", "trackingUI": "ApplicationMaster"});
        assert_eq!(tracking(&app).into_string(), "<a href=\"http://rm:8088/proxy/application_1_1/\">ApplicationMaster</a>");
    }

    #[test]
    fn actions_show_only_when_enabled() {
        let t = hostile_task();
        let off = task(&Ctx { actions_enabled: false }, &t, true, "", Ok(serde_json::json!({})), None).into_string();
        assert!(!off.contains("/kill"), "{off}");
        assert!(off.contains("Read-only"));
        let on = task(&Ctx { actions_enabled: true }, &t, true, "", Ok(serde_json::json!({})), None).into_string();
        assert!(on.contains("method=\"post\""), "{on}");
        assert!(on.contains("no operator authentication"));
    }
}
