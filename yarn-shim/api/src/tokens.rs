//! The tokens of a YARN cluster, issued by the shim and checked by the
//! shim (AMRM tokens on the scheduler port) and by node managers (NM
//! tokens on their port, container tokens in `startContainers`).
//!
//! Identifiers are the raw protobuf encodings Hadoop uses; passwords are
//! HMAC-SHA1 under a master key ([`SecretManager`]). The AMRM key never
//! leaves the shim; the NM key is handed to each node manager the shim
//! starts as one of its task's secrets ([`NM_KEY_SECRET`]: a file in its
//! sandbox, never its environment), see `NmKey`.

use std::sync::Mutex;

use prost::Message;

use weir_yarn_ipc::proto::TokenProto;
use weir_yarn_ipc::security::secret_manager::{compute_password, SecretManager};
use crate::ids::{AttemptId, ContainerId, NodeId};
use crate::records as r;
use crate::convert::{attempt_from_proto, attempt_to_proto, capacity_from_proto, capacity_to_proto, container_from_proto, container_to_proto, node_id_to_proto};
use crate::resource::Capacity;

/// What a container token says of its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub id: ContainerId,
    /// The node manager's address: where `startContainers` goes.
    pub node: NodeId,
    pub user: String,
    pub capacity: Capacity,
    pub priority: i32,
    pub allocation_request_id: i64,
}

pub const AMRM_TOKEN_KIND: &str = "YARN_AM_RM_TOKEN";
pub const NM_TOKEN_KIND: &str = "NMToken";
pub const CONTAINER_TOKEN_KIND: &str = "ContainerToken";
/// The name of the task secret (`TaskInfo.secrets`, the file
/// `$WEIR_SECRETS_DIR/yarn-nm-key`) a node manager reads its key from:
/// `<key id>:<hex secret>`.
pub const NM_KEY_SECRET: &str = "yarn-nm-key";

/// Keys live a day; nothing rolls them yet, so this only bounds a key's use.
const KEY_LIFETIME_MS: u64 = 24 * 3600 * 1000;
/// A container token is good for this long after allocation
/// (yarn.resourcemanager.rm.container-allocation.expiry-interval-ms).
pub const CONTAINER_TOKEN_LIFETIME_MS: i64 = 600_000;

/// The shim's side: issues every kind of token.
pub struct Issuer {
    amrm: Mutex<SecretManager>,
    nm: Mutex<SecretManager>,
    /// `host:port` of the scheduler port (the AMRM token's service).
    scheduler_service: String,
    cluster_timestamp: i64,
}

impl Issuer {
    pub fn new(scheduler_service: String, cluster_timestamp: i64, now_ms: u64) -> Issuer {
        Issuer {
            amrm: Mutex::new(SecretManager::new(SecretManager::random_secret(), KEY_LIFETIME_MS, now_ms)),
            nm: Mutex::new(SecretManager::new(SecretManager::random_secret(), KEY_LIFETIME_MS, now_ms)),
            scheduler_service,
            cluster_timestamp,
        }
    }

    pub fn amrm_token(&self, attempt: AttemptId) -> TokenProto {
        let keys = self.amrm.lock().unwrap_or_else(|p| p.into_inner());
        let identifier =
            r::AmrmTokenIdentifierProto { app_attempt_id: Some(attempt_to_proto(attempt)), key_id: Some(keys.current_key_id()) }.encode_to_vec();
        TokenProto {
            password: keys.sign(&identifier),
            identifier,
            kind: AMRM_TOKEN_KIND.into(),
            service: self.scheduler_service.clone(),
        }
    }

    /// The password an AMRM token identifier must carry (the scheduler
    /// port's SASL lookup); None for anything that is not one of ours.
    pub fn amrm_password(&self, identifier: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        let id = r::AmrmTokenIdentifierProto::decode(identifier).ok()?;
        attempt_from_proto(id.app_attempt_id.as_ref())?;
        self.amrm.lock().unwrap_or_else(|p| p.into_inner()).password_for(id.key_id?, identifier, now_ms).ok()
    }

    pub fn nm_token(&self, attempt: AttemptId, node: &NodeId, user: &str) -> TokenProto {
        let keys = self.nm.lock().unwrap_or_else(|p| p.into_inner());
        let identifier = r::NmTokenIdentifierProto {
            app_attempt_id: Some(attempt_to_proto(attempt)),
            node_id: Some(node_id_to_proto(node)),
            app_submitter: Some(user.to_owned()),
            key_id: Some(keys.current_key_id()),
        }
        .encode_to_vec();
        TokenProto { password: keys.sign(&identifier), identifier, kind: NM_TOKEN_KIND.into(), service: node.to_string() }
    }

    pub fn container_token(&self, c: &ContainerSpec, is_am: bool, now_ms: i64) -> TokenProto {
        let keys = self.nm.lock().unwrap_or_else(|p| p.into_inner());
        let identifier = r::ContainerTokenIdentifierProto {
            container_id: Some(container_to_proto(c.id)),
            nm_host_addr: Some(c.node.to_string()),
            app_submitter: Some(c.user.clone()),
            resource: Some(capacity_to_proto(c.capacity)),
            expiry_time_stamp: Some(now_ms + CONTAINER_TOKEN_LIFETIME_MS),
            master_key_id: Some(keys.current_key_id()),
            rm_identifier: Some(self.cluster_timestamp),
            priority: Some(r::PriorityProto { priority: Some(c.priority) }),
            creation_time: Some(now_ms),
            node_label_expression: None,
            container_type: Some(if is_am { r::ContainerTypeProto::ApplicationMaster } else { r::ContainerTypeProto::Task } as i32),
            execution_type: Some(r::ExecutionTypeProto::Guaranteed as i32),
            version: Some(0),
            allocation_request_id: Some(c.allocation_request_id),
        }
        .encode_to_vec();
        TokenProto { password: keys.sign(&identifier), identifier, kind: CONTAINER_TOKEN_KIND.into(), service: c.node.to_string() }
    }

    /// The NM key as a node manager reads it from [`NM_KEY_SECRET`].
    pub fn nm_key_text(&self) -> String {
        let keys = self.nm.lock().unwrap_or_else(|p| p.into_inner());
        let k = keys.current_key();
        format!("{}:{}", k.id, hex(&k.secret))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The node manager's side: one key, from the shim.
#[derive(Clone)]
pub struct NmKey {
    id: i32,
    secret: Vec<u8>,
}

impl std::fmt::Debug for NmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NmKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// What an NM token says about its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct NmTokenHolder {
    pub attempt: AttemptId,
    pub node: String,
    pub user: String,
}

/// A verified container token.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerGrant {
    pub container: ContainerId,
    pub node: String,
    pub user: String,
    pub capacity: Capacity,
    pub is_am: bool,
    pub expires_ms: i64,
}

impl NmKey {
    /// Parses `<key id>:<hex secret>`.
    pub fn parse(text: &str) -> Result<NmKey, String> {
        let (id, secret) = text.split_once(':').ok_or("expected <key id>:<hex secret>")?;
        let id: i32 = id.trim().parse().map_err(|_| format!("key id {id:?} is not a number"))?;
        let secret = secret.trim();
        if secret.len() % 2 != 0 || secret.is_empty() || secret.len() > 1024 {
            return Err("the secret must be an even number of hex digits (at most 1024)".into());
        }
        let secret = (0..secret.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&secret[i..i + 2], 16).map_err(|_| "the secret is not hex".to_owned()))
            .collect::<Result<Vec<u8>, String>>()?;
        Ok(NmKey { id, secret })
    }

    /// The password an NM token identifier must carry (the node manager
    /// port's SASL lookup).
    pub fn nm_password(&self, identifier: &[u8]) -> Option<Vec<u8>> {
        let id = r::NmTokenIdentifierProto::decode(identifier).ok()?;
        (id.key_id? == self.id).then(|| compute_password(&self.secret, identifier))
    }

    pub fn holder(identifier: &[u8]) -> Option<NmTokenHolder> {
        let id = r::NmTokenIdentifierProto::decode(identifier).ok()?;
        let node = id.node_id.as_ref().map(|n| format!("{}:{}", n.host(), n.port())).unwrap_or_default();
        Some(NmTokenHolder { attempt: attempt_from_proto(id.app_attempt_id.as_ref())?, node, user: id.app_submitter.unwrap_or_default() })
    }

    /// Checks a container token's password and expiry.
    pub fn verify_container_token(&self, token: &TokenProto, now_ms: i64) -> Result<ContainerGrant, String> {
        let id = r::ContainerTokenIdentifierProto::decode(&token.identifier[..])
            .map_err(|e| format!("the container token's identifier does not decode: {e}"))?;
        if id.master_key_id() != self.id {
            return Err(format!("the container token is signed with master key {}, this node manager has {}", id.master_key_id(), self.id));
        }
        let want = compute_password(&self.secret, &token.identifier);
        let same = want.len() == token.password.len() && want.iter().zip(&token.password).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
        if !same {
            return Err("the container token's password is wrong".into());
        }
        let container = id
            .container_id
            .as_ref()
            .and_then(container_from_proto)
            .ok_or("the container token names no container")?;
        let expires_ms = id.expiry_time_stamp();
        if expires_ms < now_ms {
            return Err(format!("the container token for {container} expired at {expires_ms} (now {now_ms})"));
        }
        Ok(ContainerGrant {
            container,
            node: id.nm_host_addr().to_owned(),
            user: id.app_submitter().to_owned(),
            capacity: id.resource.as_ref().map(capacity_from_proto).unwrap_or_default(),
            is_am: id.container_type() == r::ContainerTypeProto::ApplicationMaster,
            expires_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ApplicationId;

    fn allocated() -> ContainerSpec {
        let app = ApplicationId { cluster_timestamp: 5, id: 3 };
        ContainerSpec {
            id: ContainerId { attempt: AttemptId { app, attempt: 1 }, id: 2 },
            node: NodeId { host: "box".into(), port: 31000 },
            capacity: Capacity { memory_mb: 1408, vcores: 1 },
            priority: 1,
            allocation_request_id: 0,
            user: "alice".into(),
        }
    }

    #[test]
    fn tokens_issued_by_the_shim_verify_at_the_node_manager_and_nowhere_else() {
        let issuer = Issuer::new("127.0.0.1:8030".into(), 5, 0);
        let key = NmKey::parse(&issuer.nm_key_text()).unwrap();
        let c = allocated();
        let nm = issuer.nm_token(c.id.attempt, &c.node, "alice");
        assert_eq!(key.nm_password(&nm.identifier), Some(nm.password.clone()));
        let holder = NmKey::holder(&nm.identifier).unwrap();
        assert_eq!((holder.attempt, holder.node.as_str(), holder.user.as_str()), (c.id.attempt, "box:31000", "alice"));
        let token = issuer.container_token(&c, false, 1000);
        let grant = key.verify_container_token(&token, 2000).unwrap();
        assert_eq!((grant.container, grant.capacity, grant.is_am), (c.id, c.capacity, false));
        assert!(key.verify_container_token(&token, 1000 + CONTAINER_TOKEN_LIFETIME_MS + 1).unwrap_err().contains("expired"));
        let mut forged = token.clone();
        forged.password[0] ^= 1;
        assert!(key.verify_container_token(&forged, 2000).unwrap_err().contains("password"));
        // Another shim's key verifies nothing of ours.
        let other = NmKey::parse(&Issuer::new("x:1".into(), 5, 0).nm_key_text()).unwrap();
        assert_ne!(other.nm_password(&nm.identifier), Some(nm.password));
        assert!(other.verify_container_token(&token, 2000).is_err());
        // AMRM tokens check on the shim only.
        let amrm = issuer.amrm_token(c.id.attempt);
        assert_eq!(issuer.amrm_password(&amrm.identifier, 0), Some(amrm.password.clone()));
        assert_eq!(issuer.amrm_password(b"\xff\xff", 0), None);
        assert_eq!((amrm.kind.as_str(), amrm.service.as_str()), (AMRM_TOKEN_KIND, "127.0.0.1:8030"));
    }

    #[test]
    fn bad_nm_keys_are_refused_with_a_reason() {
        for bad in ["", "1", "x:00", "1:0", "1:zz", "1:"] {
            assert!(NmKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
