//! The ResourceManager's admin port (`yarn.resourcemanager.admin.address`,
//! `yarn rmadmin`): ResourceManagerAdministrationProtocolPB,
//! GetUserMappingsProtocolPB and HAServiceProtocolPB's status calls.
//!
//! - `refreshNodes` reads the exclude file (`yarn-shim.nodes.exclude.path`,
//!   YARN's `yarn.resourcemanager.nodes.exclude-path`): the broker drains
//!   the agents of every listed host (GRACEFUL: for the timeout given,
//!   -1 or none: as long as the broker allows; NORMAL and FORCEFUL: at
//!   once) and reactivates those no longer listed. Their nodes turn
//!   DECOMMISSIONING, then DECOMMISSIONED (see `shim::nodes_from_agents`),
//!   which is what the CLI's client-side tracking polls for.
//! - `getGroupsForUser`: the user's primary group, then the others, from
//!   `/etc/passwd` and `/etc/group` (Hadoop's default shell mapping asks
//!   `id`, which reads the same files on a plain host).
//! - The refreshes of things the shim does not keep (superuser groups,
//!   group mappings, admin and service ACLs) have nothing to reload and
//!   succeed; `refreshQueues` fails, saying that the queues are read at
//!   start (`yarn-shim.queues`).
//! - HA: the shim is always the one ACTIVE ResourceManager.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use tokio::sync::Mutex;
use tracing::{info, warn};
use weir_model::DrainState;
use weir_proto::v1;
use weir_yarn_api::records as r;
use weir_yarn_ipc::proto as common;
use weir_yarn_ipc::server::{decode_request as decode, CallContext, RpcError, Service};

use crate::capacity_scheduler::CapacityScheduler;
use crate::core::CoreHandle;
use crate::rm_core::NodeState;
use crate::shim::{BrokerLink, QueuePolicies};
use weir_yarn_ipc::Error;

const YARN_EXCEPTION: &str = "org.apache.hadoop.yarn.exceptions.YarnException";
/// Exclude and account files larger than this are refused, not read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// System account files are read up to this size.
const MAX_ACCOUNT_FILE_BYTES: u64 = 16 << 20;
/// A GRACEFUL decommission without a timeout lasts this long (the
/// broker cuts longer grace periods to the same).
const UNBOUNDED_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

pub struct AdminProtocol {
    core: CoreHandle,
    broker: Mutex<BrokerLink>,
    exclude_path: Option<PathBuf>,
    capacity_scheduler: Option<PathBuf>,
    policies: QueuePolicies,
}

impl AdminProtocol {
    pub(crate) fn new(
        core: CoreHandle,
        broker: BrokerLink,
        exclude_path: Option<PathBuf>,
        capacity_scheduler: Option<PathBuf>,
        policies: QueuePolicies,
    ) -> AdminProtocol {
        AdminProtocol { core, broker: Mutex::new(broker), exclude_path, capacity_scheduler, policies }
    }

    /// Re-reads the queue file: queues added or removed, states, limits,
    /// capacities and mappings take effect at once, the capacities as the
    /// broker's role weights and quotas.
    async fn refresh_queues(&self) -> Result<(), RpcError> {
        let Some(path) = self.capacity_scheduler.clone() else {
            return Err(RpcError::application(
                YARN_EXCEPTION,
                "no capacity-scheduler.xml is configured (yarn-shim.capacity-scheduler.path): the queues are yarn-shim.queues, read at start, and their weights the broker's (broker.roles.weights, UpdateWeights)",
            ));
        };
        let conf = tokio::task::spawn_blocking(move || CapacityScheduler::load(&path))
            .await
            .map_err(|e| RpcError::application(YARN_EXCEPTION, e.to_string()))?
            .map_err(|e| RpcError::application(YARN_EXCEPTION, e.to_string()))?;
        for unsupported in &conf.unsupported {
            warn!(%unsupported, "a queue-file key Weir does not act on");
        }
        let applied = conf.clone();
        self.core
            .call(move |core, _| core.set_queue_conf(applied))
            .await
            .map_err(|_| RpcError::application(YARN_EXCEPTION, "the ResourceManager is shutting down"))?
            .map_err(|e| RpcError::application(YARN_EXCEPTION, e.to_string()))?;
        let mut link = self.broker.lock().await;
        let failed = |e: Error| RpcError::application(YARN_EXCEPTION, e.to_string());
        let cluster = crate::shim::refresh_nodes(&mut link, &self.core).await.map_err(failed)?;
        self.policies.push(&mut link, &self.core, cluster, true).await.map_err(failed)
    }

    async fn refresh_nodes(&self, request: r::RefreshNodesRequestProto) -> Result<(), RpcError> {
        let Some(path) = &self.exclude_path else {
            return Err(RpcError::application(
                YARN_EXCEPTION,
                "no exclude file is configured (yarn-shim.nodes.exclude.path): refreshNodes has no hosts to decommission",
            ));
        };
        let excluded = read_hosts(path).await?;
        let kind = request.decommission_type();
        let grace = match kind {
            r::DecommissionTypeProto::Graceful => match request.decommission_timeout {
                Some(t) if t >= 0 => Duration::from_secs(t.unsigned_abs().into()),
                _ => UNBOUNDED_GRACE,
            },
            r::DecommissionTypeProto::Normal | r::DecommissionTypeProto::Forceful => Duration::ZERO,
        };
        let mut link = self.broker.lock().await;
        let client = link.client().await.map_err(|e| RpcError::application(YARN_EXCEPTION, e.to_string()))?;
        let state = client
            .get_state(v1::GetStateRequest {})
            .await
            .map_err(|s| RpcError::application(YARN_EXCEPTION, format!("the broker's GetState failed: {}", s.message())))?
            .into_inner();
        let agents = weir_proto::convert::agents_from_proto(&state)
            .map_err(|e| RpcError::application(YARN_EXCEPTION, format!("the broker's agents: {e}")))?;
        for agent in agents {
            let listed = excluded.contains(&agent.hostname);
            let result = match (listed, agent.drain) {
                // Already draining gracefully: a GRACEFUL refresh keeps
                // its deadline (YARN keeps the first timeout too).
                (true, DrainState::Draining { .. }) if kind == r::DecommissionTypeProto::Graceful => continue,
                (true, DrainState::Drained) => continue,
                (true, _) => {
                    info!(agent_id = %agent.id, host = %agent.hostname, ?kind, grace = ?grace, "refreshNodes: decommissioning");
                    let request = v1::DrainAgentRequest { agent_id: agent.id.to_string(), grace_seconds: Some(grace.as_secs_f64()), mark_gone: false };
                    client.drain_agent(request).await.map(|_| ())
                }
                (false, DrainState::Active) => continue,
                (false, _) => {
                    info!(agent_id = %agent.id, host = %agent.hostname, "refreshNodes: no longer excluded; recommissioning");
                    client.reactivate_agent(v1::ReactivateAgentRequest { agent_id: agent.id.to_string() }).await.map(|_| ())
                }
            };
            if let Err(status) = result {
                warn!(agent_id = %agent.id, error = %status.message(), "refreshNodes: the broker refused");
                return Err(RpcError::application(YARN_EXCEPTION, format!("agent {} on {}: {}", agent.id, agent.hostname, status.message())));
            }
        }
        // As in YARN, the answer comes once the nodes show the change: the
        // CLI's tracking asks for decommissioning nodes right after.
        crate::shim::refresh_nodes(&mut link, &self.core)
            .await
            .map(|_cluster| ())
            .map_err(|e| RpcError::application(YARN_EXCEPTION, format!("the nodes could not be re-read: {e}")))
    }
}

/// The hostnames of an exclude file: one per line, `#` starts a comment.
async fn read_hosts(path: &std::path::Path) -> Result<BTreeSet<String>, RpcError> {
    let text = read_bounded(path, MAX_FILE_BYTES).await.map_err(|e| RpcError::application(YARN_EXCEPTION, e))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect())
}

async fn read_bounded(path: &std::path::Path, max: u64) -> Result<String, String> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > max {
        return Err(format!("{} is {} bytes, more than the {max} read", path.display(), meta.len()));
    }
    tokio::fs::read_to_string(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A user's groups, primary first, from the account files; none for a
/// user the files do not know (as Hadoop answers).
pub fn groups_of(user: &str, passwd: &str, group: &str) -> Vec<String> {
    let mut groups = Vec::new();
    let primary_gid = passwd.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(':').collect();
        (fields.len() >= 4 && fields[0] == user).then(|| fields[3].to_owned())
    });
    let Some(primary_gid) = primary_gid else { return groups };
    for line in group.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 {
            continue;
        }
        let (name, gid, members) = (fields[0], fields[2], fields[3]);
        if gid == primary_gid {
            groups.insert(0, name.to_owned());
        } else if members.split(',').any(|m| m.trim() == user) && !groups.iter().any(|g| g == name) {
            groups.push(name.to_owned());
        }
    }
    groups
}

pub(crate) async fn groups_for(user: &str) -> Result<Vec<String>, RpcError> {
    let passwd = read_bounded(std::path::Path::new("/etc/passwd"), MAX_ACCOUNT_FILE_BYTES).await;
    let group = read_bounded(std::path::Path::new("/etc/group"), MAX_ACCOUNT_FILE_BYTES).await;
    match (passwd, group) {
        (Ok(p), Ok(g)) => Ok(groups_of(user, &p, &g)),
        (Err(e), _) | (_, Err(e)) => Err(RpcError::application(YARN_EXCEPTION, e)),
    }
}

impl AdminProtocol {
    /// The admin ACL (`yarn-shim.admin.acl`), or YARN's refusal.
    async fn check_admin(&self, user: &str, method: &str) -> Result<(), RpcError> {
        let admin = self.core.call(|core, _| core.rm().acls().admin.clone()).await.map_err(crate::client_protocol::stopped)?;
        let everyone = admin == crate::acl::Acl::everyone();
        let groups = if everyone { Vec::new() } else { groups_for(crate::acl::short_name(user)).await? };
        let caller = crate::acl::Caller::new(user, groups);
        if everyone || admin.allows(&caller) {
            return Ok(());
        }
        warn!(user = %caller.user, method, "admin call refused by yarn-shim.admin.acl");
        Err(RpcError::application(
            YARN_EXCEPTION,
            format!("org.apache.hadoop.security.AccessControlException: User {} doesn't have permission to call '{method}'", caller.user),
        ))
    }
}

#[async_trait::async_trait]
impl Service for AdminProtocol {
    async fn call(&self, ctx: &CallContext, method: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        let caller = ctx.user.as_deref().unwrap_or("");
        // yarn.admin.acl guards every admin call but the read-only ones any
        // user may make (their groups, the HA state), as YARN's AdminService.
        if !matches!(method, "getGroupsForUser" | "getServiceStatus" | "monitorHealth") {
            self.check_admin(caller, method).await?;
        }
        match method {
            "refreshNodes" => {
                let req: r::RefreshNodesRequestProto = decode("RefreshNodesRequestProto", request)?;
                info!(user = caller, decommission_type = ?req.decommission_type(), timeout = ?req.decommission_timeout, "refreshNodes");
                self.refresh_nodes(req).await?;
                Ok(r::RefreshNodesResponseProto {}.encode_to_vec())
            }
            // The CLI's client-side tracking of `-refreshNodes -g … -client`
            // polls this until no node is left decommissioning.
            "checkForDecommissioningNodes" => {
                let _: r::CheckForDecommissioningNodesRequestProto = decode("CheckForDecommissioningNodesRequestProto", request)?;
                let nodes = self
                    .core
                    .call(|core, _| {
                        core.rm().nodes(&[NodeState::Decommissioning]).iter().map(|n| crate::convert::node_id_to_proto(&n.observed.node_id)).collect()
                    })
                    .await
                    .map_err(|_| RpcError::application(YARN_EXCEPTION, "the ResourceManager is shutting down"))?;
                Ok(r::CheckForDecommissioningNodesResponseProto { decommissioning_nodes: nodes }.encode_to_vec())
            }
            "refreshQueues" => {
                let _: r::RefreshQueuesRequestProto = decode("RefreshQueuesRequestProto", request)?;
                info!(user = caller, "refreshQueues");
                self.refresh_queues().await?;
                Ok(r::RefreshQueuesResponseProto {}.encode_to_vec())
            }
            "refreshSuperUserGroupsConfiguration" | "refreshUserToGroupsMappings" | "refreshAdminAcls" | "refreshServiceAcls" => {
                // Nothing of these is kept (no proxy users, no ACLs, group
                // lookups read the account files each time): nothing to reload.
                info!(user = caller, method, "nothing to refresh");
                Ok(Vec::new())
            }
            "getGroupsForUser" => {
                // The same message in both protocols (hadoop.yarn's and
                // hadoop.common's): field 1 user, field 1 groups.
                let req: r::GetGroupsForUserRequestProto = decode("GetGroupsForUserRequestProto", request)?;
                let groups = groups_for(&req.user).await?;
                Ok(r::GetGroupsForUserResponseProto { groups }.encode_to_vec())
            }
            other => Err(RpcError::no_such_method(weir_yarn_api::RESOURCE_MANAGER_ADMINISTRATION_PROTOCOL, other)),
        }
    }
}

/// HAServiceProtocol: the shim is the one active ResourceManager.
pub struct HaStatus;

#[async_trait::async_trait]
impl Service for HaStatus {
    async fn call(&self, _: &CallContext, method: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        match method {
            "getServiceStatus" => {
                let _: common::GetServiceStatusRequestProto = decode("GetServiceStatusRequestProto", request)?;
                Ok(common::GetServiceStatusResponseProto {
                    state: common::HaServiceStateProto::Active as i32,
                    ready_to_become_active: Some(true),
                    not_ready_reason: None,
                }
                .encode_to_vec())
            }
            "monitorHealth" => {
                let _: common::MonitorHealthRequestProto = decode("MonitorHealthRequestProto", request)?;
                Ok(common::MonitorHealthResponseProto {}.encode_to_vec())
            }
            other => Err(RpcError::no_such_method(weir_yarn_api::HA_SERVICE_PROTOCOL, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_primary_first_then_memberships() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        let group = "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\nhadoop:x:2000:bob, alice\nbroken\n";
        assert_eq!(groups_of("alice", passwd, group), vec!["alice", "wheel", "hadoop"]);
        assert_eq!(groups_of("root", passwd, group), vec!["root"]);
        assert!(groups_of("nobody-here", passwd, group).is_empty());
    }
}
