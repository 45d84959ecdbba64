//! Wire records ⇄ the core's types. Decoding validates what the core relies
//! on (ids present, enums known) and says which field was wrong; encoding
//! fills every field the Java CLI prints, so it never shows `null`.

pub use weir_yarn_api::convert::*;
use weir_yarn_api::records as r;
use weir_yarn_api::resource::Capacity;

use crate::rm_core::{AppState, Application, FinalStatus, Node, NodeState, QueueReport, Submission};

pub fn state_to_proto(s: AppState) -> r::YarnApplicationStateProto {
    use r::YarnApplicationStateProto as P;
    match s {
        AppState::New => P::New,
        AppState::Submitted => P::Submitted,
        AppState::Accepted => P::Accepted,
        AppState::Running => P::Running,
        AppState::Finished => P::Finished,
        AppState::Failed => P::Failed,
        AppState::Killed => P::Killed,
    }
}

/// NEW_SAVING is NEW here (nothing is saved); unknown numbers are an error.
pub fn state_from_proto(raw: i32) -> Result<AppState, ConvertError> {
    use r::YarnApplicationStateProto as P;
    Ok(match P::try_from(raw).map_err(|_| bad("application_states", format!("{raw} is not an application state")))? {
        P::New | P::NewSaving => AppState::New,
        P::Submitted => AppState::Submitted,
        P::Accepted => AppState::Accepted,
        P::Running => AppState::Running,
        P::Finished => AppState::Finished,
        P::Failed => AppState::Failed,
        P::Killed => AppState::Killed,
    })
}

fn final_status_to_proto(s: FinalStatus) -> r::FinalApplicationStatusProto {
    use r::FinalApplicationStatusProto as P;
    match s {
        FinalStatus::Undefined => P::AppUndefined,
        FinalStatus::Succeeded => P::AppSucceeded,
        FinalStatus::Failed => P::AppFailed,
        FinalStatus::Killed => P::AppKilled,
    }
}

pub fn final_status_from_proto(raw: Option<i32>) -> FinalStatus {
    use r::FinalApplicationStatusProto as P;
    match raw.and_then(|v| P::try_from(v).ok()) {
        Some(P::AppSucceeded) => FinalStatus::Succeeded,
        Some(P::AppFailed) => FinalStatus::Failed,
        Some(P::AppKilled) => FinalStatus::Killed,
        _ => FinalStatus::Undefined,
    }
}

/// Node states the core has; the others YARN knows (NEW, REBOOTED,
/// SHUTDOWN) never occur here, so a filter on them matches nothing.
pub fn node_states_from_proto(raw: &[i32]) -> Vec<Option<NodeState>> {
    use r::NodeStateProto as P;
    raw.iter()
        .map(|v| match P::try_from(*v) {
            Ok(P::NsRunning) => Some(NodeState::Running),
            Ok(P::NsUnhealthy) => Some(NodeState::Unhealthy),
            Ok(P::NsLost) => Some(NodeState::Lost),
            Ok(P::NsDecommissioning) => Some(NodeState::Decommissioning),
            Ok(P::NsDecommissioned) => Some(NodeState::Decommissioned),
            _ => None,
        })
        .collect()
}

fn node_state_to_proto(s: NodeState) -> r::NodeStateProto {
    match s {
        NodeState::Running => r::NodeStateProto::NsRunning,
        NodeState::Unhealthy => r::NodeStateProto::NsUnhealthy,
        NodeState::Lost => r::NodeStateProto::NsLost,
        NodeState::Decommissioning => r::NodeStateProto::NsDecommissioning,
        NodeState::Decommissioned => r::NodeStateProto::NsDecommissioned,
    }
}

/// How an AM should read a node that changed (`updated_nodes`).
fn node_update_type(s: NodeState) -> r::NodeUpdateTypeProto {
    match s {
        NodeState::Running => r::NodeUpdateTypeProto::NodeUsable,
        NodeState::Decommissioning => r::NodeUpdateTypeProto::NodeDecommissioning,
        NodeState::Unhealthy | NodeState::Lost | NodeState::Decommissioned => r::NodeUpdateTypeProto::NodeUnusable,
    }
}

/// The submission context as the core needs it. `user` is the caller's
/// effective user from the connection context.
pub fn submission_from_proto(ctx: &r::ApplicationSubmissionContextProto, user: &str) -> Result<Submission, ConvertError> {
    let id = app_id_from_proto("application_submission_context.application_id", ctx.application_id.as_ref())?;
    // The AM size: `resource`, else the first AM resource request (newer
    // clients send both).
    let am_resource = ctx
        .resource
        .as_ref()
        .or_else(|| ctx.am_container_resource_request.first().and_then(|rr| rr.capability.as_ref()))
        .map(capacity_from_proto);
    let queue = ctx.queue();
    Ok(Submission {
        id,
        name: ctx.application_name().to_owned(),
        queue: queue.strip_prefix("root.").unwrap_or(queue).to_owned(),
        user: user.to_owned(),
        application_type: ctx.application_type().to_owned(),
        tags: ctx.application_tags.clone(),
        priority: ctx.priority.as_ref().and_then(|p| p.priority).unwrap_or(0),
        am_resource,
        max_attempts: ctx.max_app_attempts(),
        unmanaged_am: ctx.unmanaged_am(),
        am_launch: ctx.am_container_spec.clone(),
    })
}

pub fn report_to_proto(app: &Application) -> r::ApplicationReportProto {
    let s = &app.submission;
    // Until an AM registers YARN reports "N/A" and -1; the tracking URL is
    // the AM's own (no web proxy).
    let (host, rpc_port, tracking_url) = match &app.am {
        Some(am) => (
            am.host.clone(),
            am.rpc_port,
            if am.tracking_url.is_empty() { "N/A".to_owned() } else { am.tracking_url.clone() },
        ),
        None => ("N/A".to_owned(), -1, "N/A".to_owned()),
    };
    r::ApplicationReportProto {
        application_id: Some(app_id_to_proto(s.id)),
        user: Some(s.user.clone()),
        queue: Some(s.queue.clone()),
        name: Some(s.name.clone()),
        host: Some(host),
        rpc_port: Some(rpc_port),
        yarn_application_state: Some(state_to_proto(app.state) as i32),
        tracking_url: Some(tracking_url.clone()),
        diagnostics: Some(app.diagnostics.clone()),
        start_time: Some(app.submit_ms),
        submit_time: Some(app.submit_ms),
        finish_time: Some(app.finish_ms.unwrap_or(0)),
        final_application_status: Some(final_status_to_proto(app.final_status) as i32),
        app_resource_usage: Some(r::ApplicationResourceUsageReportProto {
            num_used_containers: Some(0),
            num_reserved_containers: Some(0),
            used_resources: Some(capacity_to_proto(Capacity::default())),
            reserved_resources: Some(capacity_to_proto(Capacity::default())),
            needed_resources: Some(capacity_to_proto(Capacity::default())),
            memory_seconds: Some(0),
            vcore_seconds: Some(0),
            queue_usage_percentage: Some(0.0),
            cluster_usage_percentage: Some(0.0),
        }),
        original_tracking_url: Some(tracking_url),
        progress: Some(if app.state.is_final() { 1.0 } else { 0.0 }),
        application_type: Some(s.application_type.clone()),
        application_tags: s.tags.clone(),
        unmanaged_application: Some(s.unmanaged_am),
        priority: Some(r::PriorityProto { priority: Some(s.priority) }),
        app_timeouts: vec![lifetime_to_proto(app.lifetime_expiry_ms, app.finish_ms)],
        ..Default::default()
    }
}

/// YARN's proxy rewrite: while an application runs with a registered
/// tracking URL, clients are given the web proxy's address for it
/// (`http://<proxy>/proxy/<id>/`) and the AM's own stays in
/// `original_tracking_url`. `proxy` is the REST address (`host:port`).
pub fn through_proxy(report: &mut r::ApplicationReportProto, proxy: Option<&str>) {
    let Some(proxy) = proxy else { return };
    let live = report.yarn_application_state.is_some_and(|s| {
        !matches!(
            r::YarnApplicationStateProto::try_from(s),
            Ok(r::YarnApplicationStateProto::Finished | r::YarnApplicationStateProto::Failed | r::YarnApplicationStateProto::Killed)
        )
    });
    // AMs may register `host:port` without a scheme (YARN adds http://).
    let registered = report.original_tracking_url.as_deref().is_some_and(|u| !u.trim().is_empty() && u != "N/A");
    if let (true, true, Ok(id)) = (live, registered, app_id_from_proto("application_id", report.application_id.as_ref())) {
        report.tracking_url = Some(format!("http://{proxy}/proxy/{id}/"));
    }
}

/// The LIFETIME timeout as YARN reports it: "UNLIMITED" and -1 without
/// one; otherwise the expiry in ISO 8601 and the seconds left (measured
/// from the finish for an ended application, 0 once passed).
fn lifetime_to_proto(expiry_ms: Option<i64>, finish_ms: Option<i64>) -> r::AppTimeoutsMapProto {
    let lifetime = r::ApplicationTimeoutTypeProto::AppTimeoutLifetime as i32;
    let (expire_time, remaining_time) = match expiry_ms {
        None => ("UNLIMITED".to_owned(), -1),
        Some(e) => (crate::rm_core::format_iso8601(e), finish_ms.map_or(-1, |f| ((e - f) / 1000).max(0))),
    };
    r::AppTimeoutsMapProto {
        application_timeout_type: Some(lifetime),
        application_timeout: Some(r::ApplicationTimeoutProto {
            application_timeout_type: lifetime,
            expire_time: Some(expire_time),
            remaining_time: Some(remaining_time),
        }),
    }
}

pub fn node_to_proto(n: &Node) -> r::NodeReportProto {
    let o = &n.observed;
    r::NodeReportProto {
        node_id: Some(node_id_to_proto(&o.node_id)),
        http_address: Some(o.http_address.clone()),
        rack_name: Some("/default-rack".into()),
        used: Some(capacity_to_proto(o.used)),
        capability: Some(capacity_to_proto(o.capability)),
        num_containers: Some(o.containers),
        node_state: Some(node_state_to_proto(o.state) as i32),
        health_report: Some(o.health_report.clone()),
        last_health_report_time: Some(n.last_report_ms),
        node_labels: Vec::new(),
        // Seconds left at the last report, as YARN's RM gives them.
        decommissioning_timeout: o
            .decommission_deadline_ms
            .map(|d| u32::try_from(d.saturating_sub(n.last_report_ms).max(0) / 1000).unwrap_or(u32::MAX)),
        node_update_type: Some(node_update_type(o.state) as i32),
    }
}

pub fn queue_to_proto(q: &QueueReport) -> r::QueueInfoProto {
    r::QueueInfoProto {
        queue_name: Some(q.name.clone()),
        queue_path: Some(q.path.clone()),
        capacity: Some(q.capacity),
        maximum_capacity: Some(q.maximum_capacity),
        current_capacity: Some(q.current_capacity),
        state: Some(if q.stopped { r::QueueStateProto::QStopped } else { r::QueueStateProto::QRunning } as i32),
        child_queues: q.children.iter().map(queue_to_proto).collect(),
        applications: q.applications.iter().map(report_to_proto).collect(),
        accessible_node_labels: vec!["*".into()],
        default_node_label_expression: None,
        queue_statistics: Some(r::QueueStatisticsProto {
            num_apps_submitted: Some(q.stats.submitted),
            num_apps_running: Some(q.stats.running),
            num_apps_pending: Some(q.stats.pending),
            num_apps_completed: Some(q.stats.completed),
            num_apps_killed: Some(q.stats.killed),
            num_apps_failed: Some(q.stats.failed),
            ..Default::default()
        }),
        preemption_disabled: Some(true),
        intra_queue_preemption_disabled: Some(true),
        weight: None,
        scheduler_type: Some("weir".into()),
    }
}

/// YARN's attempt state on the wire.
pub fn attempt_state_to_proto(s: crate::core::AttemptState) -> r::YarnApplicationAttemptStateProto {
    use crate::core::AttemptState as A;
    use r::YarnApplicationAttemptStateProto as P;
    match s {
        A::Scheduled => P::AppAttemptScheduled,
        A::Launched => P::AppAttemptLaunched,
        A::Running => P::AppAttemptRunning,
        A::Finished => P::AppAttemptFinished,
        A::Failed => P::AppAttemptFailed,
        A::Killed => P::AppAttemptKilled,
    }
}

/// An attempt as RMAppAttemptImpl.createApplicationAttemptReport gives it
/// (no AM host or RPC port is known: "N/A" and -1, as YARN before
/// registration).
pub fn attempt_report_to_proto(a: &crate::core::AttemptReport) -> r::ApplicationAttemptReportProto {
    r::ApplicationAttemptReportProto {
        application_attempt_id: Some(weir_yarn_api::convert::attempt_to_proto(a.id)),
        host: Some("N/A".into()),
        rpc_port: Some(-1),
        tracking_url: Some("N/A".into()),
        diagnostics: Some(a.diagnostics.clone()),
        yarn_application_attempt_state: Some(attempt_state_to_proto(a.state) as i32),
        am_container_id: a.am_container.as_ref().map(|c| weir_yarn_api::convert::container_to_proto(c.id)),
        original_tracking_url: Some("N/A".into()),
        start_time: Some(a.start_ms),
        finish_time: Some(a.finish_ms),
    }
}

/// A live container as RMContainerImpl.createContainerReport gives it;
/// `node_http` is the node's web address (`host:port`), when known.
pub fn container_report_to_proto(c: &crate::core::ContainerReport, node_http: Option<&str>) -> r::ContainerReportProto {
    let a = &c.container;
    let http = node_http.map(|h| format!("http://{h}"));
    r::ContainerReportProto {
        container_id: Some(weir_yarn_api::convert::container_to_proto(a.id)),
        resource: Some(capacity_to_proto(a.capacity)),
        node_id: Some(node_id_to_proto(&a.node)),
        priority: Some(r::PriorityProto { priority: Some(a.priority) }),
        creation_time: Some(c.created_ms),
        finish_time: Some(0),
        diagnostics_info: Some(String::new()),
        log_url: http.as_ref().map(|h| format!("{h}/node/containerlogs/{}/{}", a.id, a.user)),
        container_exit_status: Some(0),
        container_state: Some(r::ContainerStateProto::CRunning as i32),
        node_http_address: http,
        execution_type: Some(r::ExecutionTypeProto::Guaranteed as i32),
        exposed_ports: None,
    }
}

/// getResourceTypeInfo: the two resource types YARN always has, as
/// ResourceUtils reports them without a resource-types.xml.
pub fn resource_types_to_proto() -> Vec<r::ResourceTypeInfoProto> {
    [("memory-mb", "Mi"), ("vcores", "")]
        .into_iter()
        .map(|(name, units)| r::ResourceTypeInfoProto {
            name: name.into(),
            units: Some(units.into()),
            r#type: Some(r::ResourceTypesProto::Countable as i32),
        })
        .collect()
}

/// Adds what only the scheduler knows to an application report: the
/// current attempt (`yarn top` needs it) and the live containers' usage.
pub fn add_usage(report: &mut r::ApplicationReportProto, usage: &crate::core::AppUsage) {
    report.current_application_attempt_id = usage.current_attempt.map(weir_yarn_api::convert::attempt_to_proto);
    if let Some(u) = report.app_resource_usage.as_mut() {
        u.num_used_containers = Some(usage.containers);
        u.used_resources = Some(capacity_to_proto(usage.used));
        u.needed_resources = Some(capacity_to_proto(usage.used));
        u.memory_seconds = Some(usage.memory_seconds);
        u.vcore_seconds = Some(usage.vcore_seconds);
    }
}

/// A live application's seconds left before its lifetime expires, as of
/// `now_ms` (the report itself has no clock).
pub fn add_remaining_lifetime(report: &mut r::ApplicationReportProto, app: &Application, now_ms: i64) {
    if let (Some(expiry), None) = (app.lifetime_expiry_ms, app.finish_ms) {
        for t in report.app_timeouts.iter_mut().filter_map(|t| t.application_timeout.as_mut()) {
            t.remaining_time = Some(((expiry - now_ms) / 1000).max(0));
        }
    }
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    #[test]
    fn a_running_applications_tracking_url_goes_through_the_proxy_and_an_ended_ones_does_not() {
        let id = weir_yarn_api::ids::ApplicationId { cluster_timestamp: 17, id: 3 };
        let report = |state: r::YarnApplicationStateProto, url: &str| r::ApplicationReportProto {
            application_id: Some(app_id_to_proto(id)),
            yarn_application_state: Some(state as i32),
            tracking_url: Some(url.into()),
            original_tracking_url: Some(url.into()),
            ..Default::default()
        };
        let mut running = report(r::YarnApplicationStateProto::Running, "http://am:4040/");
        through_proxy(&mut running, Some("rm:8088"));
        assert_eq!(running.tracking_url(), "http://rm:8088/proxy/application_17_0003/");
        assert_eq!(running.original_tracking_url(), "http://am:4040/");
        let mut bare = report(r::YarnApplicationStateProto::Running, "am:4040");
        through_proxy(&mut bare, Some("rm:8088"));
        assert_eq!(bare.tracking_url(), "http://rm:8088/proxy/application_17_0003/");
        for (state, url) in [(r::YarnApplicationStateProto::Finished, "http://am:4040/"), (r::YarnApplicationStateProto::Running, "N/A")] {
            let mut r = report(state, url);
            through_proxy(&mut r, Some("rm:8088"));
            assert_eq!(r.tracking_url(), url);
        }
        let mut no_proxy = report(r::YarnApplicationStateProto::Running, "http://am:4040/");
        through_proxy(&mut no_proxy, None);
        assert_eq!(no_proxy.tracking_url(), "http://am:4040/");
    }
}
