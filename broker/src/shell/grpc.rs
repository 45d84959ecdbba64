//! The gRPC services: each only converts a stream into core calls.

use std::time::Duration;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use weir_model::{AgentId, Role};
use weir_proto::{convert, v1};
use weir_proto::v1::agent_server::{Agent, AgentServer};
use weir_proto::v1::operator_server::{Operator, OperatorServer};
use weir_proto::v1::scheduler_server::{Scheduler, SchedulerServer};

use super::auth::Caller;
use super::stream::{OutStream, StreamSender};
use crate::acl::{authorize, Action};
use crate::core::MAX_DRAIN_GRACE;
use super::{Sender, Shared, ToFramework};

type EventStream = OutStream<v1::Event>;
type BrokerStream = OutStream<v1::BrokerMessage>;

pub(super) fn router(shared: Shared, max_message_size: usize) -> axum::Router {
    tonic::service::Routes::new(
        SchedulerServer::new(SchedulerService(shared.clone(), max_message_size))
            .max_decoding_message_size(max_message_size)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(AgentServer::new(AgentService(shared.clone(), max_message_size)).max_decoding_message_size(max_message_size))
    .add_service(OperatorServer::new(OperatorService(shared)).max_decoding_message_size(max_message_size))
    .into_axum_router()
}

/// What ends a stream whose inbound half broke: tonic reports a message
/// over the decoding limit as OUT_OF_RANGE inside the inbound stream, and
/// dropping the stream then would end it with OK; the client is told
/// RESOURCE_EXHAUSTED with the limit instead.
fn inbound_error(status: &Status, max_message_size: usize) -> Option<Status> {
    let too_large = status.code() == tonic::Code::OutOfRange && status.message().contains("too large");
    too_large.then(|| {
        Status::resource_exhausted(format!(
            "message larger than the broker's limit of {max_message_size} bytes (broker.max.message.size): {}",
            status.message()
        ))
    })
}

/// Who sent a request (set by the authentication middleware).
fn caller<T>(request: &Request<T>) -> Caller {
    request.extensions().get::<Caller>().cloned().unwrap_or_else(Caller::anonymous)
}

/// The ACL check, as a gRPC answer: PERMISSION_DENIED naming the rule,
/// logged with the principal.
pub(super) fn permit(shared: &Shared, principal: &str, action: Action, object: &str) -> Result<(), Status> {
    authorize(&shared.acls, principal, action, object).map_err(|refusal| {
        tracing::warn!(%principal, action = action.name(), object, %refusal, "refused by ACL");
        Status::permission_denied(refusal.to_string())
    })
}

/// Checks a stream's SUBSCRIBE before the core sees it: with
/// authentication on, the framework's principal is the token's (a
/// different one named is refused); the principal must be allowed to
/// register in every role it names.
fn admit_subscription(shared: &Shared, caller: &Caller, call: &mut v1::Call) -> Result<(), Status> {
    let Some(v1::call::Kind::Subscribe(sub)) = call.kind.as_mut() else { return Ok(()) };
    let Some(info) = sub.framework.as_mut() else { return Ok(()) };
    if caller.authenticated {
        if !info.principal.is_empty() && info.principal != caller.principal {
            tracing::warn!(principal = %caller.principal, named = %info.principal, "subscription refused: principal named is not the token's");
            return Err(Status::permission_denied(format!(
                "subscribe.framework.principal {:?} is not the principal of the token sent ({:?})",
                info.principal, caller.principal
            )));
        }
        info.principal = caller.principal.clone();
    }
    let default_role = [Role::default_role().to_string()];
    let roles = if info.roles.is_empty() { &default_role[..] } else { &info.roles[..] };
    for role in roles {
        permit(shared, &info.principal, Action::RegisterFramework, role)?;
    }
    Ok(())
}

struct SchedulerService(Shared, usize);

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, request: Request<Streaming<v1::Call>>) -> Result<Response<Self::SubscribeStream>, Status> {
        let peer = request.remote_addr();
        let caller = caller(&request);
        let mut calls = request.into_inner();
        let shared = self.0.clone();
        let max_message_size = self.1;
        let (tx, rx) = StreamSender::new(shared.lock().stream_queue_max);
        // Offers are built into protobuf here, as the stream sends them.
        let rx: EventStream = Box::pin(rx.map(|item| item.map(ToFramework::into_event)));
        let conn = shared.register(Sender::Framework(tx));
        tracing::debug!(conn, ?peer, "framework stream opened");
        tokio::spawn(async move {
            let mut first = true;
            while let Some(call) = calls.next().await {
                match call {
                    Ok(mut call) => {
                        if std::mem::take(&mut first) {
                            if let Err(status) = admit_subscription(&shared, &caller, &mut call) {
                                if let Some(Sender::Framework(tx)) = shared.lock().conns.remove(&conn) {
                                    tx.close_with(status);
                                }
                                break;
                            }
                        }
                        shared.apply("framework_call", |core, now| core.framework_call(conn, &call, now))
                    }
                    Err(status) => {
                        tracing::info!(conn, error = %status, "framework stream broke");
                        if let Some(answer) = inbound_error(&status, max_message_size) {
                            if let Some(Sender::Framework(tx)) = shared.lock().conns.get(&conn) {
                                tx.close_with(answer);
                            }
                        }
                        break;
                    }
                }
                // The core closed this stream (teardown, failover, error).
                if !shared.lock().conns.contains_key(&conn) {
                    break;
                }
            }
            shared.apply("framework_detached", |core, now| core.framework_detached(conn, now));
            shared.lock().conns.remove(&conn);
        });
        Ok(Response::new(rx))
    }
}

struct AgentService(Shared, usize);

#[tonic::async_trait]
impl Agent for AgentService {
    type AttachStream = BrokerStream;

    async fn attach(&self, request: Request<Streaming<v1::AgentMessage>>) -> Result<Response<Self::AttachStream>, Status> {
        let peer = request.remote_addr();
        let mut messages = request.into_inner();
        let shared = self.0.clone();
        let max_message_size = self.1;
        let (tx, rx) = StreamSender::new(shared.lock().stream_queue_max);
        let conn = shared.register(Sender::Agent(tx));
        tracing::debug!(conn, ?peer, "agent stream opened");
        tokio::spawn(async move {
            let mut first = true;
            while let Some(msg) = messages.next().await {
                match msg {
                    Ok(msg) => match (&msg.kind, first) {
                        (Some(v1::agent_message::Kind::Register(reg)), true) => {
                            shared.apply("agent_register", |core, now| core.agent_register(conn, reg, now))
                        }
                        _ => shared.apply("agent_message", |core, now| core.agent_message(conn, &msg, now)),
                    },
                    Err(status) => {
                        tracing::info!(conn, error = %status, "agent stream broke");
                        if let Some(answer) = inbound_error(&status, max_message_size) {
                            if let Some(Sender::Agent(tx)) = shared.lock().conns.get(&conn) {
                                tx.close_with(answer);
                            }
                        }
                        break;
                    }
                }
                first = false;
                if !shared.lock().conns.contains_key(&conn) {
                    break;
                }
            }
            shared.apply("agent_detached", |core, now| core.agent_detached(conn, now));
            shared.lock().conns.remove(&conn);
        });
        Ok(Response::new(rx))
    }
}

struct OperatorService(Shared);

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn apply_operations(
        &self,
        request: Request<v1::ApplyOperationsRequest>,
    ) -> Result<Response<v1::ApplyOperationsResponse>, Status> {
        let principal = caller(&request).principal;
        let request = request.into_inner();
        let agent: AgentId = convert::id("agent_id", &request.agent_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(i) = request.operations.iter().position(|op| matches!(op.kind, Some(v1::operation::Kind::Launch(_)))) {
            return Err(Status::invalid_argument(format!("operations[{i}]: LAUNCH is for frameworks, not operators")));
        }
        // Refused as a whole, before anything is applied: the core checks
        // again per operation (frameworks' ACCEPTs go only through it).
        for op in &request.operations {
            if let Some(action) = crate::core::operation_action(op) {
                permit(&self.0, &principal, action, crate::core::operator_operation_role(op))?;
            }
        }
        let mut statuses = Vec::new();
        self.0
            .apply_durably(|core, now| {
                let (answered, outputs) = core.operator_operations(&principal, &agent, &request.operations, now);
                statuses = answered;
                Ok(outputs)
            })
            .await
            .map_err(Status::unavailable)?;
        Ok(Response::new(v1::ApplyOperationsResponse { statuses }))
    }

    async fn drain_agent(&self, request: Request<v1::DrainAgentRequest>) -> Result<Response<v1::DrainAgentResponse>, Status> {
        let principal = caller(&request).principal;
        let request = request.into_inner();
        let agent: AgentId = convert::id("agent_id", &request.agent_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        permit(&self.0, &principal, Action::DrainAgent, agent.as_str())?;
        let grace = match request.grace_seconds {
            None => None,
            Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s.min(MAX_DRAIN_GRACE.as_secs_f64()))),
            Some(s) => return Err(Status::invalid_argument(format!("grace_seconds {s} must be a finite number >= 0"))),
        };
        let (state, message) = maintenance(&self.0, |core, now| {
            let (state, message, outputs) = core.drain_agent(&agent, grace, request.mark_gone, now)?;
            Ok(((state, message), outputs))
        })
        .await?;
        let (state, deadline) = convert::drain_state_to_proto(state);
        tracing::info!(agent_id = %agent, %message, "drain requested");
        Ok(Response::new(v1::DrainAgentResponse { state: state as i32, deadline, message }))
    }

    async fn schedule_maintenance(
        &self,
        request: Request<v1::ScheduleMaintenanceRequest>,
    ) -> Result<Response<v1::ScheduleMaintenanceResponse>, Status> {
        let principal = caller(&request).principal;
        let request = request.into_inner();
        let agent: AgentId = convert::id("agent_id", &request.agent_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        permit(&self.0, &principal, Action::DrainAgent, agent.as_str())?;
        let window = request.window.as_ref().ok_or_else(|| Status::invalid_argument("window is missing"))?;
        let window = convert::unavailability_from_proto("window", window).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let message = maintenance(&self.0, |core, now| core.schedule_maintenance(&agent, window, now)).await?;
        tracing::info!(agent_id = %agent, %message, "maintenance window requested");
        Ok(Response::new(v1::ScheduleMaintenanceResponse { message }))
    }

    async fn reactivate_agent(&self, request: Request<v1::ReactivateAgentRequest>) -> Result<Response<v1::ReactivateAgentResponse>, Status> {
        let principal = caller(&request).principal;
        let agent: AgentId = convert::id("agent_id", &request.into_inner().agent_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        permit(&self.0, &principal, Action::DrainAgent, agent.as_str())?;
        let message = maintenance(&self.0, |core, _| core.reactivate_agent(&agent)).await?;
        tracing::info!(agent_id = %agent, %message, "reactivation requested");
        Ok(Response::new(v1::ReactivateAgentResponse { message }))
    }

    async fn mark_agent_gone(&self, request: Request<v1::MarkAgentGoneRequest>) -> Result<Response<v1::MarkAgentGoneResponse>, Status> {
        let principal = caller(&request).principal;
        let agent: AgentId = convert::id("agent_id", &request.into_inner().agent_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        permit(&self.0, &principal, Action::DrainAgent, agent.as_str())?;
        let message = maintenance(&self.0, |core, _| core.mark_agent_gone(&agent)).await?;
        tracing::info!(agent_id = %agent, %message, "mark-gone requested");
        Ok(Response::new(v1::MarkAgentGoneResponse { message }))
    }

    async fn get_state(&self, request: Request<v1::GetStateRequest>) -> Result<Response<v1::GetStateResponse>, Status> {
        let principal = caller(&request).principal;
        let now = self.0.now();
        let (state, agents) = {
            let inner = self.0.lock();
            let agents: Vec<v1::AgentSummary> = inner
                .core
                .agent_summaries()
                .iter()
                .map(|a| {
                    let mut wire = convert::agent_summary_to_proto(a);
                    (wire.reservations, wire.volumes) = inner.core.reservations_of(&a.id);
                    wire
                })
                .collect();
            (inner.core.state(now), agents)
        };
        let mut state = state;
        state.retain_viewable_by(&self.0.acls, &principal);
        let state_json = serde_json::to_string(&state).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::GetStateResponse {
            agents,
            broker_id: state.broker.id.clone(),
            leader_epoch: state.broker.leader_epoch,
            recovering: state.broker.recovering,
            state_json,
        }))
    }

    async fn get_weights(&self, request: Request<v1::GetWeightsRequest>) -> Result<Response<v1::GetWeightsResponse>, Status> {
        let principal = caller(&request).principal;
        let weights = self
            .0
            .lock()
            .core
            .weights()
            .into_iter()
            .filter(|(role, _)| authorize(&self.0.acls, &principal, Action::ViewRole, role.as_str()).is_ok())
            .map(|(role, weight)| v1::RoleWeight { role: role.to_string(), weight })
            .collect();
        Ok(Response::new(v1::GetWeightsResponse { weights }))
    }

    async fn update_weights(&self, request: Request<v1::UpdateWeightsRequest>) -> Result<Response<v1::UpdateWeightsResponse>, Status> {
        let principal = caller(&request).principal;
        let weights = request.into_inner().weights;
        // All or nothing: check every entry before changing any.
        for (i, w) in weights.iter().enumerate() {
            weir_model::ids::validate_role(&w.role)
                .map_err(|e| Status::invalid_argument(format!("weights[{i}]: {e}")))?;
            permit(&self.0, &principal, Action::UpdateWeight, &w.role)?;
            if !w.weight.is_finite() || w.weight <= 0.0 {
                return Err(Status::invalid_argument(format!(
                    "weights[{i}]: weight {} for role {} must be a finite number > 0",
                    w.weight, w.role
                )));
            }
        }
        // The default weight adds no role (it removes one nothing else keeps).
        let roles: Vec<Role> =
            weights.iter().filter(|w| w.weight != weir_allocator::DEFAULT_WEIGHT).map(|w| Role::new(w.role.clone())).collect();
        self.0.lock().core.room_for_roles(&roles).map_err(Status::invalid_argument)?;
        self.0
            .apply_durably(|core, _| {
                let mut outputs = Vec::new();
                for w in weights {
                    tracing::info!(role = %w.role, weight = w.weight, "role weight updated");
                    outputs.extend(core.set_weight(Role::new(w.role), w.weight)?);
                }
                Ok(outputs)
            })
            .await
            .map_err(Status::unavailable)?;
        Ok(Response::new(v1::UpdateWeightsResponse {}))
    }

    async fn get_role_policies(&self, request: Request<v1::GetRolePoliciesRequest>) -> Result<Response<v1::GetRolePoliciesResponse>, Status> {
        let principal = caller(&request).principal;
        let inner = self.0.lock();
        let core = &inner.core;
        let shares: std::collections::BTreeMap<Role, weir_allocator::RoleShare> =
            core.role_shares().into_iter().map(|s| (s.role.clone(), s)).collect();
        let roles = core
            .role_policies()
            .iter()
            .filter(|p| authorize(&self.0.acls, &principal, Action::ViewRole, p.role.as_str()).is_ok())
            .map(|p| {
                let share = shares.get(&p.role);
                v1::RolePolicy {
                    consumed: share.map(|s| convert::resources_to_proto(&weir_model::ResourceSet::unreserved(s.subtree.clone()))).unwrap_or_default(),
                    dominant_share: share.map_or(0.0, |s| s.dominant_share),
                    revocable: share
                        .map(|s| convert::resources_to_proto(&weir_model::ResourceSet::unreserved(s.revocable.clone())))
                        .unwrap_or_default(),
                    parent: share.and_then(|s| s.parent.as_ref()).map(|p| p.to_string()).unwrap_or_default(),
                    ..crate::core::roles::role_policy_to_proto(p)
                }
            })
            .collect();
        Ok(Response::new(v1::GetRolePoliciesResponse {
            policy: core.allocation_policy().to_owned(),
            roles,
            guarantee_shortfall: convert::resources_to_proto(&weir_model::ResourceSet::unreserved(core.guarantee_shortfall())),
        }))
    }

    async fn set_role_policies(&self, request: Request<v1::SetRolePoliciesRequest>) -> Result<Response<v1::SetRolePoliciesResponse>, Status> {
        let principal = caller(&request).principal;
        let request = request.into_inner();
        for p in &request.roles {
            permit(&self.0, &principal, Action::UpdateQuota, &p.role)?;
        }
        // Everything on the wire is checked before anything changes.
        let policies = request
            .roles
            .iter()
            .enumerate()
            .map(|(i, p)| crate::core::roles::role_policy_from_proto(&format!("roles[{i}]"), p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;
        let mut refused = None;
        self.0
            .apply_durably(|core, _| match core.set_role_policies(policies, request.force) {
                Ok(outputs) => Ok(outputs),
                Err(reason) => {
                    refused = Some(reason);
                    Ok(Vec::new())
                }
            })
            .await
            .map_err(Status::unavailable)?;
        match refused {
            Some(reason) => Err(Status::failed_precondition(reason)),
            None => Ok(Response::new(v1::SetRolePoliciesResponse {})),
        }
    }
}

/// Runs an operator's maintenance call and waits for its registry writes:
/// a refusal is NOT_FOUND (unknown agent) or FAILED_PRECONDITION with the
/// core's reason; a broker that cannot record the change is UNAVAILABLE.
async fn maintenance<T>(
    shared: &Shared,
    f: impl FnOnce(&mut crate::core::BrokerCore, Duration) -> Result<(T, Vec<crate::core::Output>), String>,
) -> Result<T, Status> {
    let mut answer = None;
    shared
        .apply_durably(|core, now| match f(core, now) {
            Ok((value, outputs)) => {
                answer = Some(Ok(value));
                Ok(outputs)
            }
            Err(reason) => {
                answer = Some(Err(reason));
                Ok(Vec::new())
            }
        })
        .await
        .map_err(Status::unavailable)?;
    match answer {
        Some(Ok(value)) => Ok(value),
        Some(Err(reason)) if reason.contains("is not known to the broker") => Err(Status::not_found(reason)),
        Some(Err(reason)) => Err(Status::failed_precondition(reason)),
        None => Err(Status::unavailable("this broker no longer leads")),
    }
}
