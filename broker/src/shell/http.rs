//! HTTP on the broker's port: `/state` (JSON), `/metrics` (Prometheus text
//! exposition format), `/health`.

use std::fmt::Write;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::Shared;
use crate::core::state::ResourcesDoc;

pub(super) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/state", get(state))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn state(axum::extract::State(shared): axum::extract::State<Shared>) -> impl IntoResponse {
    let now = shared.now();
    let doc = shared.lock().core.state(now);
    match serde_json::to_string_pretty(&doc) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e.to_string()),
    }
}

async fn metrics(axum::extract::State(shared): axum::extract::State<Shared>) -> impl IntoResponse {
    let now = shared.now();
    let (doc, counters, last_allocation) = {
        let inner = shared.lock();
        (inner.core.state(now), inner.core.counters().clone(), inner.last_allocation_seconds)
    };
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP weir_broker_{name} {help}");
        let _ = writeln!(out, "# TYPE weir_broker_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "weir_broker_{name}{labels} {value}");
        }
    };
    let reachable = doc.agents.iter().filter(|a| a.reachable).count() as f64;
    let unreachable = doc.agents.len() as f64 - reachable;
    metric("agents", "gauge", "Agents known to the broker.", &[("{state=\"reachable\"}", reachable), ("{state=\"unreachable\"}", unreachable)]);
    let active = doc.frameworks.iter().filter(|f| f.active).count() as f64;
    metric("frameworks", "gauge", "Frameworks known to the broker.", &[("{state=\"active\"}", active), ("{state=\"inactive\"}", doc.frameworks.len() as f64 - active)]);
    metric("tasks", "gauge", "Tasks not yet in a terminal state.", &[("", doc.tasks.len() as f64)]);
    metric("offers", "gauge", "Outstanding offers.", &[("", doc.totals.offers as f64)]);
    let resource_samples = |r: &ResourcesDoc| [r.cpus, r.mem, r.disk, r.gpus];
    for (name, help, r) in [
        ("resources_total", "Resources of reachable agents.", &doc.totals.total),
        ("resources_used", "Resources used by tasks.", &doc.totals.used),
        ("resources_offered", "Resources in outstanding offers.", &doc.totals.offered),
        ("resources_free", "Resources neither used nor offered.", &doc.totals.free),
    ] {
        let v = resource_samples(r);
        metric(
            name,
            "gauge",
            help,
            &[("{resource=\"cpus\"}", v[0]), ("{resource=\"mem\"}", v[1]), ("{resource=\"disk\"}", v[2]), ("{resource=\"gpus\"}", v[3])],
        );
    }
    for role in &doc.roles {
        let labels = format!("{{role=\"{}\"}}", role.role.replace('\\', "\\\\").replace('"', "\\\""));
        metric("role_dominant_share", "gauge", "Dominant share of each role.", &[(&labels, role.dominant_share)]);
    }
    let c = &counters;
    for (name, help, value) in [
        ("offers_made_total", "Offers sent to frameworks.", c.offers_made),
        ("offers_declined_total", "Offers declined.", c.offers_declined),
        ("offers_rescinded_total", "Offers rescinded (timed out, agent lost).", c.offers_rescinded),
        ("offers_accepted_total", "Offers accepted.", c.offers_accepted),
        ("tasks_launched_total", "Tasks sent to agents.", c.tasks_launched),
        ("tasks_finished_total", "Tasks that finished.", c.tasks_finished),
        ("tasks_failed_total", "Tasks that failed, were lost or gone.", c.tasks_failed),
        ("tasks_killed_total", "Tasks killed.", c.tasks_killed),
        ("tasks_errored_total", "Tasks refused at launch (TASK_ERROR).", c.tasks_errored),
        ("status_updates_total", "Status updates received from agents.", c.status_updates),
        ("allocation_cycles_total", "Allocation cycles run.", c.allocation_cycles),
        ("agents_registered_total", "Agent registrations.", c.agents_registered),
        ("agents_reregistered_total", "Agent re-registrations.", c.agents_reregistered),
        ("agents_unreachable_total", "Times an agent was marked unreachable.", c.agents_unreachable),
        ("bad_calls_total", "Calls and messages refused as invalid.", c.bad_calls),
    ] {
        metric(name, "counter", help, &[("", value as f64)]);
    }
    metric("leader_epoch", "gauge", "Leadership term this broker serves (0: no election).", &[("", doc.broker.leader_epoch as f64)]);
    metric(
        "recovering",
        "gauge",
        "1 while a new leader waits for agents to re-register (no offers).",
        &[("", if doc.broker.recovering { 1.0 } else { 0.0 })],
    );
    metric("last_allocation_seconds", "gauge", "Wall time of the last tick that ran an allocation cycle.", &[("", last_allocation)]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
