//! ApplicationMasterProtocol (`ApplicationMasterProtocolPB`, version 1) as
//! an IPC [`Service`] on the scheduler port. Every connection has
//! authenticated with an AMRM token (the port requires it), and the token
//! names the attempt: requests carry no attempt id of their own.
//!
//! Decisions are the YARN core's; this layer decodes, sends the call to
//! the core's task, then (outside it) issues tokens for what was
//! allocated and encodes. A repeated `allocate` gets the core's kept
//! answer encoded anew: the same bytes, since tokens are signed from the
//! same fields and time.

use std::sync::Arc;

use prost::Message;
use tracing::{info, warn};

use weir_yarn_ipc::server::{decode_request as decode, CallContext, RpcError, Service};
use crate::client_protocol::stopped;
use crate::convert;
use crate::core::CoreHandle;
use weir_yarn_api::ids::AttemptId;
use weir_yarn_api::records as r;
use crate::rm_core::AmEndpoint;
use crate::scheduler::{AllocateCall, AllocateOutcome, AllocateResult, AmError, Ask};
use weir_yarn_api::tokens::Issuer;
use weir_yarn_api::APPLICATION_MASTER_PROTOCOL;

/// What the RM's protocols and the shell share: the way to the core and
/// the token issuer (signing happens here, never in the core).
pub struct Rm {
    pub core: CoreHandle,
    pub tokens: Issuer,
}

pub struct AmProtocol {
    rm: Arc<Rm>,
}

impl AmProtocol {
    pub fn new(rm: Arc<Rm>) -> AmProtocol {
        AmProtocol { rm }
    }
}

fn am(e: AmError) -> RpcError {
    RpcError::application(e.java_class(), e.to_string())
}

fn attempt_of(ctx: &CallContext) -> Result<AttemptId, RpcError> {
    let identifier = ctx.token_identifier.as_deref().ok_or_else(|| {
        RpcError::application("org.apache.hadoop.security.AccessControlException", "the scheduler port needs an AMRM token")
    })?;
    let id = r::AmrmTokenIdentifierProto::decode(identifier)
        .map_err(|e| RpcError::application("org.apache.hadoop.security.AccessControlException", format!("not an AMRM token: {e}")))?;
    convert::attempt_from_proto(id.app_attempt_id.as_ref()).ok_or_else(|| {
        RpcError::application("org.apache.hadoop.security.AccessControlException", "the AMRM token names no application attempt")
    })
}

/// The wire asks as the scheduler takes them; bad ones are refused whole.
pub fn asks_from_proto(asks: &[r::ResourceRequestProto]) -> Result<Vec<Ask>, AmError> {
    asks.iter()
        .map(|a| {
            let capability = a.capability.as_ref().map(convert::capacity_from_proto).ok_or_else(|| {
                AmError::InvalidRequest(format!("the ask for {} has no capability", a.resource_name()))
            })?;
            Ok(Ask {
                priority: a.priority.as_ref().and_then(|p| p.priority).unwrap_or(0),
                resource_name: a.resource_name().to_owned(),
                capability,
                num_containers: a.num_containers(),
                relax_locality: a.relax_locality(),
                allocation_request_id: a.allocation_request_id(),
            })
        })
        .collect()
}

/// The wire answer to `allocate`: containers with their container tokens,
/// NM tokens for nodes new to the attempt, completed statuses. Signing is
/// deterministic in the result's fields and `issued_ms`, so a replay
/// encodes to the same bytes.
fn encode_allocate(rm: &Rm, attempt: AttemptId, result: &AllocateResult) -> Vec<u8> {
    let allocated_containers = result
        .allocated
        .iter()
        .map(|c| r::ContainerProto {
            id: Some(convert::container_to_proto(c.id)),
            node_id: Some(convert::node_id_to_proto(&c.node)),
            node_http_address: Some(c.node_http_address()),
            resource: Some(convert::capacity_to_proto(c.capacity)),
            priority: Some(r::PriorityProto { priority: Some(c.priority) }),
            container_token: Some(rm.tokens.container_token(&c.token_spec(), false, result.issued_ms)),
            execution_type: Some(r::ExecutionTypeProto::Guaranteed as i32),
            allocation_request_id: Some(c.allocation_request_id),
            version: Some(0),
        })
        .collect();
    let user = result.allocated.first().map(|c| c.user.clone()).unwrap_or_default();
    let nm_tokens = result
        .nm_token_nodes
        .iter()
        .map(|n| r::NmTokenProto {
            node_id: Some(convert::node_id_to_proto(n)),
            token: Some(rm.tokens.nm_token(attempt, n, &user)),
        })
        .collect();
    let completed_container_statuses = result
        .completed
        .iter()
        .map(|c| r::ContainerStatusProto {
            container_id: Some(convert::container_to_proto(c.id)),
            state: Some(r::ContainerStateProto::CComplete as i32),
            diagnostics: Some(c.diagnostics.clone()),
            exit_status: Some(c.exit_status),
            capability: Some(convert::capacity_to_proto(c.capacity)),
            execution_type: Some(r::ExecutionTypeProto::Guaranteed as i32),
        })
        .collect();
    r::AllocateResponseProto {
        a_m_command: result.shutdown.then_some(r::AmCommandProto::AmShutdown as i32),
        response_id: Some(result.response_id),
        allocated_containers,
        completed_container_statuses,
        limit: Some(convert::capacity_to_proto(result.headroom)),
        num_cluster_nodes: Some(result.cluster_nodes),
        updated_nodes: result.updated_nodes.iter().map(convert::node_to_proto).collect(),
        preempt: preemption_message(&result.preempt),
        nm_tokens,
        // MapReduce's LocalContainerAllocator (uber jobs) reads it on every
        // heartbeat and fails without it.
        application_priority: Some(r::PriorityProto { priority: Some(result.priority) }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// YARN's PreemptionMessage for containers taken back: the strict
/// contract names them (they will be killed), the negotiable one names
/// them too, with the resources they hold as requests, as YARN's capacity
/// scheduler sends both. None when nothing is preempted.
fn preemption_message(preempt: &[crate::scheduler::Allocated]) -> Option<r::PreemptionMessageProto> {
    if preempt.is_empty() {
        return None;
    }
    let containers: Vec<r::PreemptionContainerProto> =
        preempt.iter().map(|c| r::PreemptionContainerProto { id: Some(convert::container_to_proto(c.id)) }).collect();
    let resource = preempt
        .iter()
        .map(|c| r::PreemptionResourceRequestProto {
            resource: Some(r::ResourceRequestProto {
                priority: Some(r::PriorityProto { priority: Some(c.priority) }),
                resource_name: Some("*".to_owned()),
                capability: Some(convert::capacity_to_proto(c.capacity)),
                num_containers: Some(1),
                ..Default::default()
            }),
        })
        .collect();
    Some(r::PreemptionMessageProto {
        strict_contract: Some(r::StrictPreemptionContractProto { container: containers.clone() }),
        contract: Some(r::PreemptionContractProto { resource, container: containers }),
    })
}

#[async_trait::async_trait]
impl Service for AmProtocol {
    async fn call(&self, ctx: &CallContext, method: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        let attempt = attempt_of(ctx)?;
        match method {
            "registerApplicationMaster" => {
                let req: r::RegisterApplicationMasterRequestProto = decode("RegisterApplicationMasterRequestProto", request)?;
                let endpoint = AmEndpoint { host: req.host().to_owned(), rpc_port: req.rpc_port(), tracking_url: req.tracking_url().to_owned() };
                let registered =
                    self.rm.core.call(move |core, now| core.register(attempt, endpoint, now)).await.map_err(stopped)?.map_err(am)?;
                info!(attempt_id = %attempt, host = req.host(), rpc_port = req.rpc_port(), tracking_url = req.tracking_url(), "AM registered");
                Ok(r::RegisterApplicationMasterResponseProto {
                    maximum_capability: Some(convert::capacity_to_proto(registered.maximum_capability)),
                    queue: Some(registered.queue),
                    scheduler_resource_types: vec![r::SchedulerResourceTypes::Memory as i32, r::SchedulerResourceTypes::Cpu as i32],
                    // The AM rebuilds its resource types from these
                    // (DistributedShell's ResourceUtils fails on none).
                    resource_types: convert::resource_types_to_proto(),
                    ..Default::default()
                }
                .encode_to_vec())
            }
            "allocate" => {
                let req: r::AllocateRequestProto = decode("AllocateRequestProto", request)?;
                let asks = asks_from_proto(&req.ask).map_err(am)?;
                let mut releases = Vec::with_capacity(req.release.len());
                for c in &req.release {
                    match convert::container_from_proto(c) {
                        Some(id) => releases.push(id),
                        None => return Err(am(AmError::InvalidRequest("a released container id is incomplete".into()))),
                    }
                }
                let blacklist = req.blacklist_request.clone().unwrap_or_default();
                let call = AllocateCall {
                    response_id: req.response_id(),
                    asks,
                    releases,
                    blacklist_additions: blacklist.blacklist_additions,
                    blacklist_removals: blacklist.blacklist_removals,
                };
                let result = match self.rm.core.call(move |core, now| core.allocate(attempt, call, now)).await.map_err(stopped)?.map_err(am)? {
                    AllocateOutcome::Replay(last) => return Ok(encode_allocate(&self.rm, attempt, &last)),
                    AllocateOutcome::Fresh(result) => result,
                };
                let response = encode_allocate(&self.rm, attempt, &result);
                if !result.allocated.is_empty() || !result.completed.is_empty() {
                    info!(
                        attempt_id = %attempt,
                        response_id = result.response_id,
                        allocated = result.allocated.len(),
                        completed = result.completed.len(),
                        "allocate"
                    );
                }
                Ok(response)
            }
            "finishApplicationMaster" => {
                let req: r::FinishApplicationMasterRequestProto = decode("FinishApplicationMasterRequestProto", request)?;
                let status = convert::final_status_from_proto(req.final_application_status);
                let diagnostics = req.diagnostics().to_owned();
                let unregistered =
                    self.rm.core.call(move |core, now| core.finish(attempt, status, &diagnostics, now)).await.map_err(stopped)?.map_err(am)?;
                info!(attempt_id = %attempt, ?status, diagnostics = req.diagnostics(), "AM finished");
                Ok(r::FinishApplicationMasterResponseProto { is_unregistered: Some(unregistered) }.encode_to_vec())
            }
            other => {
                warn!(method = other, attempt_id = %attempt, peer = %ctx.peer, "ApplicationMasterProtocol method not implemented");
                Err(RpcError::no_such_method(APPLICATION_MASTER_PROTOCOL, other))
            }
        }
    }
}
