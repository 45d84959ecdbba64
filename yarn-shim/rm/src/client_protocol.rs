//! ApplicationClientProtocol (`ApplicationClientProtocolPB`, version 1) as
//! an IPC [`Service`]: decode the request, ask the YARN core (through its
//! task: [`CoreHandle`]), encode the answer outside it. No decisions are
//! made here.

use prost::Message;
use tracing::{info, warn};

use weir_yarn_ipc::server::{decode_request as decode, CallContext, RpcError, Service};
use crate::convert::{self, ConvertError};
use weir_yarn_api::records as r;
use crate::core::{CoreHandle, CoreStopped, Now};
use crate::rm_core::{AppFilter, KillOutcome, RmCore, RmError, ROOT_QUEUE};
use weir_yarn_api::APPLICATION_CLIENT_PROTOCOL;

pub struct ClientProtocol {
    core: CoreHandle,
}

impl ClientProtocol {
    pub fn new(core: CoreHandle) -> ClientProtocol {
        ClientProtocol { core }
    }

    /// Runs `f` on the RM's books and returns its answer.
    async fn books<R: Send + 'static>(&self, f: impl FnOnce(&mut RmCore, Now) -> R + Send + 'static) -> Result<R, RpcError> {
        self.core.call(move |core, now| f(core.rm_mut(), now)).await.map_err(stopped)
    }
}

pub(crate) fn stopped(e: CoreStopped) -> RpcError {
    RpcError::application("org.apache.hadoop.yarn.exceptions.YarnException", format!("{e}; the ResourceManager is shutting down"))
}

fn rm(e: RmError) -> RpcError {
    RpcError::application(e.java_class(), e.to_string())
}

fn invalid(e: ConvertError) -> RpcError {
    RpcError::application("org.apache.hadoop.yarn.exceptions.YarnException", e.to_string())
}

#[async_trait::async_trait]
impl Service for ClientProtocol {
    async fn call(&self, ctx: &CallContext, method: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        let user = ctx.user.clone().unwrap_or_else(|| "unknown".into());
        let response = match method {
            "getNewApplication" => {
                let _: r::GetNewApplicationRequestProto = decode("GetNewApplicationRequestProto", request)?;
                let (id, max) = self.books(|rm, _| rm.new_application()).await?.map_err(rm)?;
                info!(application_id = %id, %user, "new application id");
                r::GetNewApplicationResponseProto {
                    application_id: Some(convert::app_id_to_proto(id)),
                    maximum_capability: Some(convert::capacity_to_proto(max)),
                }
                .encode_to_vec()
            }
            "submitApplication" => {
                let req: r::SubmitApplicationRequestProto = decode("SubmitApplicationRequestProto", request)?;
                let context = req.application_submission_context.ok_or_else(|| {
                    invalid(ConvertError { field: "application_submission_context", reason: "missing".into() })
                })?;
                let submission = convert::submission_from_proto(&context, &user).map_err(invalid)?;
                let (id, queue, name) = (submission.id, submission.queue.clone(), submission.name.clone());
                let state = self.books(move |rm, now| rm.submit(submission, now.unix_ms)).await?.map_err(rm)?;
                info!(application_id = %id, %user, %queue, %name, ?state, "application submitted");
                r::SubmitApplicationResponseProto {}.encode_to_vec()
            }
            "getApplicationReport" => {
                let req: r::GetApplicationReportRequestProto = decode("GetApplicationReportRequestProto", request)?;
                let id = convert::app_id_from_proto("application_id", req.application_id.as_ref()).map_err(invalid)?;
                let app = self.books(move |rm, _| rm.application(id).cloned()).await?.map_err(rm)?;
                r::GetApplicationReportResponseProto { application_report: Some(convert::report_to_proto(&app)) }.encode_to_vec()
            }
            "getApplications" => {
                let req: r::GetApplicationsRequestProto = decode("GetApplicationsRequestProto", request)?;
                let states = req.application_states.iter().map(|s| convert::state_from_proto(*s)).collect::<Result<_, _>>().map_err(invalid)?;
                let range = |b: Option<i64>, e: Option<i64>| match (b, e) {
                    (None, None) => None,
                    (b, e) => Some((b.unwrap_or(0), e.unwrap_or(i64::MAX))),
                };
                let filter = AppFilter {
                    states,
                    types: req.application_types.clone(),
                    queues: req.queues.iter().map(|q| q.strip_prefix("root.").unwrap_or(q).to_owned()).collect(),
                    users: req.users.clone(),
                    tags: req.application_tags.clone(),
                    name: req.name.clone(),
                    start_range: range(req.start_begin, req.start_end),
                    finish_range: range(req.finish_begin, req.finish_end),
                    limit: req.limit.filter(|l| *l > 0).map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
                };
                let found = self.books(move |rm, _| rm.applications(&filter).into_iter().cloned().collect::<Vec<_>>()).await?;
                let applications = found.iter().map(convert::report_to_proto).collect();
                r::GetApplicationsResponseProto { applications }.encode_to_vec()
            }
            "forceKillApplication" => {
                let req: r::KillApplicationRequestProto = decode("KillApplicationRequestProto", request)?;
                let id = convert::app_id_from_proto("application_id", req.application_id.as_ref()).map_err(invalid)?;
                let diagnostics = req.diagnostics.clone();
                let outcome = self.books(move |rm, now| rm.kill(id, diagnostics.as_deref(), now.unix_ms)).await?.map_err(rm)?;
                match outcome {
                    KillOutcome::Killed => info!(application_id = %id, %user, "application killed"),
                    KillOutcome::AlreadyFinal(state) => info!(application_id = %id, %user, ?state, "kill of an application that had already ended"),
                }
                r::KillApplicationResponseProto { is_kill_completed: Some(true) }.encode_to_vec()
            }
            "getClusterMetrics" => {
                let _: r::GetClusterMetricsRequestProto = decode("GetClusterMetricsRequestProto", request)?;
                let m = self.books(|rm, _| rm.cluster_metrics()).await?;
                r::GetClusterMetricsResponseProto {
                    cluster_metrics: Some(r::YarnClusterMetricsProto {
                        num_node_managers: Some(m.node_managers),
                        num_decommissioned_nms: Some(0),
                        num_active_nms: Some(m.active),
                        num_lost_nms: Some(m.lost),
                        num_unhealthy_nms: Some(m.unhealthy),
                        num_rebooted_nms: Some(0),
                    }),
                }
                .encode_to_vec()
            }
            "getClusterNodes" => {
                let req: r::GetClusterNodesRequestProto = decode("GetClusterNodesRequestProto", request)?;
                let wanted = convert::node_states_from_proto(&req.node_states);
                // States we never have (NEW, DECOMMISSIONED…) match nothing,
                // but must not turn the filter into "everything".
                let nodes = self
                    .books(move |rm, _| {
                        let found = if wanted.is_empty() {
                            rm.nodes(&[])
                        } else {
                            let states: Vec<_> = wanted.into_iter().flatten().collect();
                            if states.is_empty() { Vec::new() } else { rm.nodes(&states) }
                        };
                        found.into_iter().cloned().collect::<Vec<_>>()
                    })
                    .await?;
                r::GetClusterNodesResponseProto { node_reports: nodes.iter().map(convert::node_to_proto).collect() }.encode_to_vec()
            }
            "getQueueInfo" => {
                let req: r::GetQueueInfoRequestProto = decode("GetQueueInfoRequestProto", request)?;
                let name = req.queue_name.clone().filter(|q| !q.is_empty()).unwrap_or_else(|| ROOT_QUEUE.into());
                let (apps, children, recursive) = (req.include_applications(), req.include_child_queues(), req.recursive());
                let report = self.books(move |rm, _| rm.queue_info(&name, apps, children, recursive)).await?.map_err(rm)?;
                r::GetQueueInfoResponseProto { queue_info: Some(convert::queue_to_proto(&report)) }.encode_to_vec()
            }
            "getQueueUserAcls" => {
                let _: r::GetQueueUserAclsInfoRequestProto = decode("GetQueueUserAclsInfoRequestProto", request)?;
                // No ACLs: everyone may submit to and administer every queue.
                let acls = vec![r::QueueAclProto::QaclSubmitApplications as i32, r::QueueAclProto::QaclAdministerQueue as i32];
                let queues = self.books(|rm, _| rm.queues().to_vec()).await?;
                let queue_user_acls = std::iter::once(ROOT_QUEUE.to_owned())
                    .chain(queues)
                    .map(|q| r::QueueUserAclInfoProto { queue_name: Some(q), user_acls: acls.clone() })
                    .collect();
                r::GetQueueUserAclsInfoResponseProto { queue_user_acls }.encode_to_vec()
            }
            other => {
                warn!(method = other, %user, peer = %ctx.peer, "ApplicationClientProtocol method not implemented");
                return Err(RpcError::no_such_method(APPLICATION_CLIENT_PROTOCOL, other));
            }
        };
        Ok(response)
    }
}
