//! ApplicationClientProtocol (`ApplicationClientProtocolPB`, version 1), the
//! whole protocol of Hadoop 3.x, as an IPC [`Service`]: decode the request,
//! ask the YARN core (through its task: [`CoreHandle`]), encode the answer
//! outside it. Features YARN ships switched off (reservations, resource
//! profiles) answer as YARN's ResourceManager does then, with the same
//! exception class and message; node labels and attributes are empty, as on
//! a YARN cluster that has none.
//!
//! RM delegation tokens live here ([`DelegationTokens`]): issued, renewed
//! and cancelled with the rules of Hadoop's
//! `AbstractDelegationTokenSecretManager`, signed with HMAC-SHA1 under a
//! master key; the client port's SASL checks them through
//! [`ClientProtocol::delegation_token_passwords`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prost::Message;
use tracing::{info, warn};

use weir_model::Clock;
use weir_yarn_ipc::connection::{Authentication, PasswordLookup};
use weir_yarn_ipc::proto as common;
use weir_yarn_ipc::security::secret_manager::{compute_password, SecretManager};
use weir_yarn_ipc::server::{decode_request as decode, CallContext, RpcError, Service};
use crate::convert::{self, ConvertError};
use weir_yarn_api::records as r;
use crate::core::{CoreHandle, CoreStopped, Now, ReportError, YarnCore};
use crate::acl::{self, short_name, AppAccess, Caller, QueueAccess};
use crate::rm_core::{AppFilter, KillOutcome, RmCore, RmError, ROOT_QUEUE};
use weir_yarn_api::APPLICATION_CLIENT_PROTOCOL;

const YARN_EXCEPTION: &str = "org.apache.hadoop.yarn.exceptions.YarnException";
const FEATURE_NOT_ENABLED: &str = "org.apache.hadoop.yarn.exceptions.YARNFeatureNotEnabledException";
const ACCESS_CONTROL: &str = "org.apache.hadoop.security.AccessControlException";
const INVALID_TOKEN: &str = "org.apache.hadoop.security.token.SecretManager$InvalidToken";

/// ResourceProfilesManagerImpl's words while
/// `yarn.resourcemanager.resource-profiles.enabled` is false (the default).
pub const PROFILES_DISABLED: &str = "Resource profile is not enabled, please enable resource profile feature before \
     using its functions. (by setting yarn.resourcemanager.resource-profiles.enabled to true)";
/// ClientRMService's words while the reservation system is off (the default).
pub const RESERVATIONS_DISABLED: &str = "Reservation is not enabled. Please enable & try again";

/// The token kind of RM delegation tokens.
pub const RM_DELEGATION_TOKEN_KIND: &str = "RM_DELEGATION_TOKEN";
/// `yarn.resourcemanager.delegation.token.renew-interval` default (1 day).
pub const TOKEN_RENEW_INTERVAL_MS: i64 = 24 * 3600 * 1000;
/// `yarn.resourcemanager.delegation.token.max-lifetime` default (7 days).
pub const TOKEN_MAX_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

/// RM delegation tokens: Hadoop's `AbstractDelegationTokenSecretManager`
/// with time passed in. The identifier is `YARNDelegationTokenIdentifierProto`
/// (fields written only when not empty, as Hadoop's builder does); the
/// password is HMAC-SHA1 of the identifier bytes under the master key.
pub struct DelegationTokens {
    secrets: SecretManager,
    last_sequence: i32,
    /// Live tokens by identifier bytes: their renew date (ms).
    live: BTreeMap<Vec<u8>, i64>,
}

/// A renew or cancel refusal: the exception Hadoop's secret manager throws
/// (class and message); ClientRMService wraps it in a YarnException.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefusal {
    pub class: &'static str,
    pub message: String,
}

impl TokenRefusal {
    fn access(message: String) -> Self {
        TokenRefusal { class: ACCESS_CONTROL, message }
    }
    fn invalid(message: String) -> Self {
        TokenRefusal { class: INVALID_TOKEN, message }
    }
    /// What the client sees: RPCUtil.getRemoteException(e), a YarnException
    /// whose message is the cause's `toString()`.
    pub fn to_rpc(&self) -> RpcError {
        RpcError::application(YARN_EXCEPTION, format!("{}: {}", self.class, self.message))
    }
}

/// The identifier as AbstractDelegationTokenIdentifier.toString prints it.
fn describe(id: &r::YarnDelegationTokenIdentifierProto) -> String {
    format!(
        "({RM_DELEGATION_TOKEN_KIND} owner={}, renewer={}, realUser={}, issueDate={}, maxDate={}, sequenceNumber={}, masterKeyId={})",
        id.owner(),
        id.renewer(),
        id.real_user(),
        id.issue_date(),
        id.max_date(),
        id.sequence_number(),
        id.master_key_id()
    )
}


impl DelegationTokens {
    pub fn new(secret: Vec<u8>, now_ms: i64) -> DelegationTokens {
        // The key never rolls (a known gap), so it never expires.
        DelegationTokens { secrets: SecretManager::new(secret, u64::MAX / 2, now_ms.max(0) as u64), last_sequence: 0, live: BTreeMap::new() }
    }

    /// getDelegationToken for `owner` (the caller), naming `renewer`.
    pub fn issue(&mut self, owner: &str, real_user: Option<&str>, renewer: &str, now_ms: i64) -> common::TokenProto {
        self.last_sequence = self.last_sequence.wrapping_add(1);
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let id = r::YarnDelegationTokenIdentifierProto {
            owner: non_empty(owner),
            renewer: non_empty(short_name(renewer)),
            real_user: real_user.and_then(non_empty),
            issue_date: Some(now_ms),
            max_date: Some(now_ms.saturating_add(TOKEN_MAX_LIFETIME_MS)),
            sequence_number: Some(self.last_sequence),
            master_key_id: Some(self.secrets.current_key_id()),
        };
        let identifier = id.encode_to_vec();
        let password = self.secrets.sign(&identifier);
        self.live.insert(identifier.clone(), now_ms.saturating_add(TOKEN_RENEW_INTERVAL_MS).min(id.max_date()));
        common::TokenProto { identifier, password, kind: RM_DELEGATION_TOKEN_KIND.into(), service: String::new() }
    }

    fn decode(identifier: &[u8]) -> Result<r::YarnDelegationTokenIdentifierProto, TokenRefusal> {
        r::YarnDelegationTokenIdentifierProto::decode(identifier)
            .map_err(|e| TokenRefusal::invalid(format!("cannot decode the RM delegation token identifier: {e}")))
    }

    fn key_password(&self, id: &r::YarnDelegationTokenIdentifierProto, identifier: &[u8]) -> Option<Vec<u8>> {
        let key = self.secrets.current_key();
        (key.id == id.master_key_id()).then(|| compute_password(&key.secret, identifier))
    }

    /// renewDelegationToken by `renewer`: the new expiry (ms).
    pub fn renew(&mut self, token: &common::TokenProto, renewer: &str, now_ms: i64) -> Result<i64, TokenRefusal> {
        let id = Self::decode(&token.identifier)?;
        let what = describe(&id);
        if id.max_date() < now_ms {
            return Err(TokenRefusal::invalid(format!(
                "{renewer} tried to renew an expired token {what} max expiration date: {} currentTime: {}",
                format_time(id.max_date()),
                format_time(now_ms)
            )));
        }
        if id.renewer().is_empty() {
            return Err(TokenRefusal::access(format!("{renewer} tried to renew a token {what} without a renewer")));
        }
        if id.renewer() != renewer {
            return Err(TokenRefusal::access(format!(
                "{renewer} tries to renew a token {what} with non-matching renewer {}",
                id.renewer()
            )));
        }
        let Some(password) = self.key_password(&id, &token.identifier) else {
            return Err(TokenRefusal::invalid(format!(
                "Unable to find master key for keyId={} from cache. Failed to renew an unexpired token {what} with sequenceNumber={}",
                id.master_key_id(),
                id.sequence_number()
            )));
        };
        if !constant_time_eq(&password, &token.password) {
            return Err(TokenRefusal::access(format!("{renewer} is trying to renew a token {what} with wrong password")));
        }
        let renew_date = now_ms.saturating_add(TOKEN_RENEW_INTERVAL_MS).min(id.max_date());
        match self.live.get_mut(&token.identifier) {
            Some(date) => *date = renew_date,
            None => return Err(TokenRefusal::invalid(format!("Renewal request for unknown token {what}"))),
        }
        Ok(renew_date)
    }

    /// cancelDelegationToken by `canceller`: its owner or its renewer may.
    pub fn cancel(&mut self, token: &common::TokenProto, canceller: &str) -> Result<(), TokenRefusal> {
        let id = Self::decode(&token.identifier)?;
        let what = describe(&id);
        if id.owner().is_empty() {
            return Err(TokenRefusal::invalid(format!("Token with no owner {what}")));
        }
        if canceller != id.owner() && (id.renewer().is_empty() || short_name(canceller) != id.renewer()) {
            return Err(TokenRefusal::access(format!("{canceller} is not authorized to cancel the token {what}")));
        }
        if self.live.remove(&token.identifier).is_none() {
            return Err(TokenRefusal::invalid(format!("Token not found {what}")));
        }
        Ok(())
    }

    /// The password SASL must see for a live, unexpired token; None = refuse.
    pub fn password(&self, identifier: &[u8], now_ms: i64) -> Option<Vec<u8>> {
        let renew_date = *self.live.get(identifier)?;
        if renew_date < now_ms {
            return None;
        }
        let id = Self::decode(identifier).ok()?;
        self.key_password(&id, identifier)
    }

    /// Forgets tokens past their renew date (Hadoop's expired-token remover).
    pub fn remove_expired(&mut self, now_ms: i64) {
        self.live.retain(|_, renew_date| *renew_date >= now_ms);
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hadoop's `Time.formatTime` pattern (`yyyy-MM-dd HH:mm:ss,SSSZ`), in UTC.
pub fn format_time(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::rm_core::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{:03}+0000",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

pub struct ClientProtocol {
    core: CoreHandle,
    tokens: Arc<Mutex<DelegationTokens>>,
    /// The web proxy (`host:port`) that tracking URLs go through, if any.
    proxy: Option<Arc<str>>,
    /// Kerberos is on (Hadoop's security on): delegation tokens are only
    /// issued, renewed and cancelled over Kerberos-authenticated connections.
    kerberos: bool,
}

impl ClientProtocol {
    pub fn new(core: CoreHandle) -> ClientProtocol {
        ClientProtocol { core, tokens: Arc::new(Mutex::new(DelegationTokens::new(SecretManager::random_secret(), 0))), proxy: None, kerberos: false }
    }

    /// With Kerberos on, as Hadoop's `isAllowedDelegationTokenOp`.
    pub fn with_kerberos(mut self, on: bool) -> ClientProtocol {
        self.kerberos = on;
        self
    }

    /// Hadoop's refusal of a token operation over a connection that did not
    /// authenticate with Kerberos while security is on (`what`: "issued").
    fn token_op_allowed(&self, ctx: &CallContext, what: &str) -> Result<(), RpcError> {
        if self.kerberos && !matches!(ctx.authentication, Authentication::Kerberos { .. }) {
            return Err(RpcError::application("java.io.IOException", format!("Delegation Token can be {what} only with kerberos authentication")));
        }
        Ok(())
    }

    /// Reports name running applications' UIs through the web proxy at
    /// `proxy` (`host:port`), as YARN's RM does.
    pub fn with_proxy(mut self, proxy: Option<String>) -> ClientProtocol {
        self.proxy = proxy.map(Arc::from);
        self
    }

    /// The client port's secret manager lookup (RM delegation tokens), for
    /// `Server::set_token_passwords`: with it the port's SASL offers TOKEN
    /// then SIMPLE, as Hadoop's ResourceManager does.
    pub fn delegation_token_passwords(&self, clock: Arc<dyn Clock>) -> Arc<PasswordLookup> {
        let tokens = self.tokens.clone();
        Arc::new(move |identifier: &[u8]| {
            let tokens = tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.password(identifier, clock.unix_millis())
        })
    }

    /// Runs `f` on the whole core (attempt and container reports).
    async fn yarn<R: Send + 'static>(&self, f: impl FnOnce(&mut YarnCore, Now) -> R + Send + 'static) -> Result<R, RpcError> {
        self.core.call(f).await.map_err(stopped)
    }

    fn with_tokens<R>(&self, f: impl FnOnce(&mut DelegationTokens) -> R) -> R {
        f(&mut self.tokens.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the RM's books and returns its answer.
    async fn books<R: Send + 'static>(&self, f: impl FnOnce(&mut RmCore, Now) -> R + Send + 'static) -> Result<R, RpcError> {
        self.core.call(move |core, now| f(core.rm_mut(), now)).await.map_err(stopped)
    }

    /// The connection's user (SIMPLE: from its connection context), with
    /// their groups when ACLs are on (group ACLs need them).
    async fn caller(&self, user: &str) -> Result<Caller, RpcError> {
        let enabled = self.books(|rm, _| rm.acls().enabled).await?;
        let groups = if enabled { crate::admin_protocol::groups_for(short_name(user)).await? } else { Vec::new() };
        Ok(Caller::new(user, groups))
    }

    /// MODIFY_APP on `app`, or YARN's refusal.
    async fn may_modify(&self, user: &str, app: weir_yarn_api::ids::ApplicationId) -> Result<(), RpcError> {
        let caller = self.caller(user).await?;
        self.books(move |rm, _| rm.checked(&caller, app, AppAccess::Modify).map(|_| ())).await?.map_err(rm)
    }

    /// VIEW_APP on `app` for its attempts and containers, which YARN
    /// refuses outright (reports are redacted instead). `what` names the
    /// thing asked for, as YARN's refusal does.
    async fn may_see(&self, user: &str, app: weir_yarn_api::ids::ApplicationId, what: &str) -> Result<(), RpcError> {
        let caller = self.caller(user).await?;
        let what = what.to_owned();
        self.books(move |rm, _| match rm.application(app) {
            Ok(a) if !rm.may_view(&caller, a) => {
                warn!(application_id = %app, user = %caller.user, "report refused by the application's ACLs");
                Err(RmError::Refused(format!("User {} does not have privilege to see this {what}", caller.user)))
            }
            // Unknown ones are answered as such by the report itself.
            _ => Ok(()),
        })
        .await?
        .map_err(rm)
    }
}

pub(crate) fn stopped(e: CoreStopped) -> RpcError {
    RpcError::application("org.apache.hadoop.yarn.exceptions.YarnException", format!("{e}; the ResourceManager is shutting down"))
}

fn rm(e: RmError) -> RpcError {
    RpcError::application(e.java_class(), e.to_string())
}

fn invalid(e: ConvertError) -> RpcError {
    RpcError::application(YARN_EXCEPTION, e.to_string())
}

fn report(e: ReportError) -> RpcError {
    RpcError::application(e.java_class(), e.to_string())
}

fn missing(field: &'static str) -> RpcError {
    invalid(ConvertError { field, reason: "missing".into() })
}

fn attempt_id(field: &'static str, p: Option<&r::ApplicationAttemptIdProto>) -> Result<weir_yarn_api::ids::AttemptId, RpcError> {
    convert::attempt_from_proto(p).ok_or_else(|| missing(field))
}

fn container_id(field: &'static str, p: Option<&r::ContainerIdProto>) -> Result<weir_yarn_api::ids::ContainerId, RpcError> {
    p.and_then(convert::container_from_proto).ok_or_else(|| missing(field))
}

/// Fills a queue's (and its children's) resource statistics from the live
/// containers, as `yarn top` and `queue -status` read them: allocated is
/// what the queue's applications hold, available what the running nodes
/// have left; nothing is pending or reserved in YARN's sense here.
fn add_queue_usage(core: &YarnCore, q: &mut r::QueueInfoProto, now_ms: i64) {
    use crate::rm_core::{AppState, NodeState};
    let total = core.rm().nodes(&[NodeState::Running]).iter().fold((0i64, 0i64), |(m, v), n| {
        (m + n.observed.capability.memory_mb, v + i64::from(n.observed.capability.vcores))
    });
    let all = AppFilter { states: vec![AppState::Accepted, AppState::Running], ..AppFilter::default() };
    let used_all = core.rm().applications(&all).iter().map(|a| core.app_usage(a.id(), now_ms)).fold((0i64, 0i64), |(m, v), u| {
        (m + u.used.memory_mb, v + i64::from(u.used.vcores))
    });
    fn fill(core: &YarnCore, q: &mut r::QueueInfoProto, available: (i64, i64), now_ms: i64) {
        let name = q.queue_name.clone().unwrap_or_default();
        let queues = if name == ROOT_QUEUE { Vec::new() } else { vec![name] };
        let filter = AppFilter { states: vec![crate::rm_core::AppState::Running], queues, ..AppFilter::default() };
        let running = core.rm().applications(&filter);
        let mut users: Vec<&str> = running.iter().map(|a| a.submission.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let (mut memory, mut vcores, mut containers) = (0i64, 0i64, 0i64);
        for u in running.iter().map(|a| core.app_usage(a.id(), now_ms)) {
            memory += u.used.memory_mb;
            vcores += i64::from(u.used.vcores);
            containers += i64::from(u.containers);
        }
        if let Some(s) = q.queue_statistics.as_mut() {
            s.num_active_users = Some(users.len() as i64);
            s.available_memory_mb = Some(available.0);
            s.allocated_memory_mb = Some(memory);
            s.available_v_cores = Some(available.1);
            s.allocated_v_cores = Some(vcores);
            s.allocated_containers = Some(containers);
            for zero in [&mut s.pending_memory_mb, &mut s.reserved_memory_mb, &mut s.pending_v_cores, &mut s.reserved_v_cores] {
                *zero = Some(0);
            }
            s.pending_containers = Some(0);
            s.reserved_containers = Some(0);
        }
        for child in &mut q.child_queues {
            fill(core, child, available, now_ms);
        }
    }
    fill(core, q, ((total.0 - used_all.0).max(0), (total.1 - used_all.1).max(0)), now_ms);
}

/// Container reports with their node managers' web addresses, where
/// container logs are served.
fn container_protos(reports: &[crate::core::ContainerReport]) -> Vec<r::ContainerReportProto> {
    reports.iter().map(|c| convert::container_report_to_proto(c, Some(&c.container.node_http_address()))).collect()
}

#[async_trait::async_trait]
impl Service for ClientProtocol {
    async fn call(&self, ctx: &CallContext, method: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        // A token connection is its token's owner (Hadoop's client sends no
        // user in the context then); others are who the connection says.
        let user = match (&ctx.authentication, ctx.token_identifier.as_deref()) {
            (Authentication::Token, Some(identifier)) => match DelegationTokens::decode(identifier) {
                Ok(id) if !id.owner().is_empty() => id.owner().to_owned(),
                _ => return Err(RpcError::application(ACCESS_CONTROL, "the RM delegation token names no owner")),
            },
            _ => ctx.user.clone().unwrap_or_else(|| "unknown".into()),
        };
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
                let mut submission = convert::submission_from_proto(&context, &user).map_err(invalid)?;
                // capacity-scheduler.xml's queue mappings and
                // fair-scheduler.xml's placement rules need the user's
                // groups, read only when there are some.
                let (mapped, acls) = self.books(|rm, _| (rm.queue_conf().is_some_and(|c| c.needs_groups()), rm.acls().enabled)).await?;
                let groups = if mapped || acls { crate::admin_protocol::groups_for(&user).await? } else { Vec::new() };
                let (id, name) = (submission.id, submission.name.clone());
                let caller = Caller::new(&user, groups.clone());
                let (state, queue) = self
                    .core
                    .call(move |core, now| {
                        submission.queue = match core.place(&submission.user, &groups, &submission.queue) {
                            Ok(queue) => queue,
                            Err(why) => {
                                warn!(application_id = %submission.id, user = %caller.user, reason = %why, "submission rejected by the queue placement policy");
                                let queue = submission.queue.clone();
                                return core.rm_mut().submit_rejected(submission, why, now.unix_ms).map(|state| (state, queue));
                            }
                        };
                        let queue = submission.queue.clone();
                        let rm = core.rm_mut();
                        if !rm.may_submit(&caller, &queue) {
                            warn!(application_id = %submission.id, user = %caller.user, %queue, "submission refused by the queue's ACLs");
                            return Err(RmError::AccessDenied(format!(
                                "User {} does not have permission to submit {} to queue {queue}",
                                caller.user, submission.id
                            )));
                        }
                        rm.submit(submission, now.unix_ms).map(|state| (state, queue))
                    })
                    .await
                    .map_err(stopped)?
                    .map_err(rm)?;
                info!(application_id = %id, %user, %queue, %name, ?state, "application submitted");
                r::SubmitApplicationResponseProto {}.encode_to_vec()
            }
            "getApplicationReport" => {
                let req: r::GetApplicationReportRequestProto = decode("GetApplicationReportRequestProto", request)?;
                let id = convert::app_id_from_proto("application_id", req.application_id.as_ref()).map_err(invalid)?;
                let caller = self.caller(&user).await?;
                let report = self
                    .yarn(move |core, now| {
                        let app = core.rm().application(id)?;
                        let mut report = convert::report_to_proto(app);
                        convert::add_usage(&mut report, &core.app_usage(id, now.unix_ms));
                        convert::add_remaining_lifetime(&mut report, app, now.unix_ms);
                        if !core.rm().may_view(&caller, app) {
                            acl::redact(&mut report);
                        }
                        Ok::<_, RmError>(report)
                    })
                    .await?
                    .map_err(rm)?;
                let mut report = report;
                convert::through_proxy(&mut report, self.proxy.as_deref());
                r::GetApplicationReportResponseProto { application_report: Some(report) }.encode_to_vec()
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
                let caller = self.caller(&user).await?;
                let applications = self
                    .yarn(move |core, now| {
                        let found = core.rm().applications(&filter);
                        found
                            .into_iter()
                            .map(|app| {
                                let mut report = convert::report_to_proto(app);
                                convert::add_usage(&mut report, &core.app_usage(app.id(), now.unix_ms));
                                convert::add_remaining_lifetime(&mut report, app, now.unix_ms);
                                if !core.rm().may_view(&caller, app) {
                                    acl::redact(&mut report);
                                }
                                report
                            })
                            .collect::<Vec<_>>()
                    })
                    .await?;
                let mut applications = applications;
                applications.iter_mut().for_each(|report| convert::through_proxy(report, self.proxy.as_deref()));
                r::GetApplicationsResponseProto { applications }.encode_to_vec()
            }
            "forceKillApplication" => {
                let req: r::KillApplicationRequestProto = decode("KillApplicationRequestProto", request)?;
                let id = convert::app_id_from_proto("application_id", req.application_id.as_ref()).map_err(invalid)?;
                let diagnostics = req.diagnostics.clone();
                let caller = self.caller(&user).await?;
                let outcome = self
                    .books(move |rm, now| {
                        rm.checked(&caller, id, AppAccess::Modify)?;
                        rm.kill(id, diagnostics.as_deref(), now.unix_ms)
                    })
                    .await?
                    .map_err(rm)?;
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
                        num_decommissioned_nms: Some(m.decommissioned),
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
                let info = self
                    .yarn(move |core, now| {
                        let mut info = convert::queue_to_proto(&core.rm().queue_info(&name, apps, children, recursive)?);
                        add_queue_usage(core, &mut info, now.unix_ms);
                        Ok::<_, RmError>(info)
                    })
                    .await?
                    .map_err(rm)?;
                r::GetQueueInfoResponseProto { queue_info: Some(info) }.encode_to_vec()
            }
            "getQueueUserAcls" => {
                let _: r::GetQueueUserAclsInfoRequestProto = decode("GetQueueUserAclsInfoRequestProto", request)?;
                let caller = self.caller(&user).await?;
                let granted = self.books(move |rm, _| rm.queue_acls(&caller)).await?;
                let queue_user_acls = granted
                    .into_iter()
                    .map(|(q, acls)| r::QueueUserAclInfoProto {
                        queue_name: Some(q),
                        user_acls: acls
                            .into_iter()
                            .map(|a| match a {
                                QueueAccess::SubmitApplications => r::QueueAclProto::QaclSubmitApplications as i32,
                                QueueAccess::AdministerQueue => r::QueueAclProto::QaclAdministerQueue as i32,
                            })
                            .collect(),
                    })
                    .collect();
                r::GetQueueUserAclsInfoResponseProto { queue_user_acls }.encode_to_vec()
            }
            "getResourceTypeInfo" => {
                let _: r::GetAllResourceTypeInfoRequestProto = decode("GetAllResourceTypeInfoRequestProto", request)?;
                r::GetAllResourceTypeInfoResponseProto { resource_type_info: convert::resource_types_to_proto() }.encode_to_vec()
            }
            "getResourceProfiles" => {
                let _: r::GetAllResourceProfilesRequestProto = decode("GetAllResourceProfilesRequestProto", request)?;
                return Err(RpcError::application(FEATURE_NOT_ENABLED, PROFILES_DISABLED));
            }
            "getResourceProfile" => {
                let _: r::GetResourceProfileRequestProto = decode("GetResourceProfileRequestProto", request)?;
                return Err(RpcError::application(FEATURE_NOT_ENABLED, PROFILES_DISABLED));
            }
            "getApplicationAttemptReport" => {
                let req: r::GetApplicationAttemptReportRequestProto = decode("GetApplicationAttemptReportRequestProto", request)?;
                let id = attempt_id("application_attempt_id", req.application_attempt_id.as_ref())?;
                self.may_see(&user, id.app, &format!("attempt {id}")).await?;
                let a = self.yarn(move |core, _| core.attempt_report(id)).await?.map_err(report)?;
                r::GetApplicationAttemptReportResponseProto { application_attempt_report: Some(convert::attempt_report_to_proto(&a)) }
                    .encode_to_vec()
            }
            "getApplicationAttempts" => {
                let req: r::GetApplicationAttemptsRequestProto = decode("GetApplicationAttemptsRequestProto", request)?;
                let id = convert::app_id_from_proto("application_id", req.application_id.as_ref()).map_err(invalid)?;
                self.may_see(&user, id, &format!("application {id}")).await?;
                let attempts = self.yarn(move |core, _| core.attempt_reports(id)).await?.map_err(report)?;
                r::GetApplicationAttemptsResponseProto { application_attempts: attempts.iter().map(convert::attempt_report_to_proto).collect() }
                    .encode_to_vec()
            }
            "getContainerReport" => {
                let req: r::GetContainerReportRequestProto = decode("GetContainerReportRequestProto", request)?;
                let id = container_id("container_id", req.container_id.as_ref())?;
                self.may_see(&user, id.attempt.app, &format!("application {}", id.attempt.app)).await?;
                let found = self.yarn(move |core, _| core.container_report(id).map(|c| container_protos(&[c]))).await?.map_err(report)?;
                r::GetContainerReportResponseProto { container_report: found.into_iter().next() }.encode_to_vec()
            }
            "getContainers" => {
                let req: r::GetContainersRequestProto = decode("GetContainersRequestProto", request)?;
                let id = attempt_id("application_attempt_id", req.application_attempt_id.as_ref())?;
                self.may_see(&user, id.app, &format!("application {}", id.app)).await?;
                let containers = self.yarn(move |core, _| core.container_reports(id).map(|c| container_protos(&c))).await?.map_err(report)?;
                r::GetContainersResponseProto { containers }.encode_to_vec()
            }
            "failApplicationAttempt" => {
                let req: r::FailApplicationAttemptRequestProto = decode("FailApplicationAttemptRequestProto", request)?;
                let id = attempt_id("application_attempt_id", req.application_attempt_id.as_ref())?;
                self.may_modify(&user, id.app).await?;
                let failed = self.yarn(move |core, _| core.fail_attempt(id, "Attempt failed by user.")).await?.map_err(report)?;
                info!(attempt_id = %id, %user, failed, "failApplicationAttempt");
                r::FailApplicationAttemptResponseProto {}.encode_to_vec()
            }
            "signalToContainer" => {
                let req: r::SignalContainerRequestProto = decode("SignalContainerRequestProto", request)?;
                let id = container_id("container_id", Some(&req.container_id))?;
                let command = r::SignalContainerCommandProto::try_from(req.command)
                    .map_err(|_| invalid(ConvertError { field: "command", reason: format!("unknown signal command {}", req.command) }))?;
                // What the NodeManager's process ends with under SIGTERM / SIGKILL.
                let code = match command {
                    r::SignalContainerCommandProto::GracefulShutdown => 143,
                    r::SignalContainerCommandProto::ForcefulShutdown => 137,
                    r::SignalContainerCommandProto::OutputThreadDump => {
                        warn!(container_id = %id, %user, "OUTPUT_THREAD_DUMP cannot reach a Weir node manager");
                        return Err(RpcError::application(
                            YARN_EXCEPTION,
                            format!("Signal OUTPUT_THREAD_DUMP cannot be delivered to {id}: Weir's node manager has no signal channel"),
                        ));
                    }
                };
                self.may_modify(&user, id.attempt.app).await?;
                let why = format!("Container signalled with {} by user {user}", command.as_str_name());
                self.yarn(move |core, _| core.signal_shutdown(id, code, &why)).await?.map_err(report)?;
                info!(container_id = %id, %user, command = command.as_str_name(), "container signalled");
                r::SignalContainerResponseProto {}.encode_to_vec()
            }
            "moveApplicationAcrossQueues" => {
                let req: r::MoveApplicationAcrossQueuesRequestProto = decode("MoveApplicationAcrossQueuesRequestProto", request)?;
                let id = convert::app_id_from_proto("application_id", Some(&req.application_id)).map_err(invalid)?;
                let target = req.target_queue.clone();
                let caller = self.caller(&user).await?;
                let from = self
                    .yarn(move |core, _| {
                        core.rm().checked(&caller, id, AppAccess::Modify)?;
                        if !core.rm().may_submit(&caller, &target) {
                            return Err(RmError::AccessDenied(format!(
                                "User {} does not have permission to submit {id} to queue {target}",
                                caller.user
                            )));
                        }
                        core.move_to_queue(id, &target)
                    })
                    .await?
                    .map_err(rm)?;
                info!(application_id = %id, %user, from, to = req.target_queue, "application moved");
                r::MoveApplicationAcrossQueuesResponseProto {}.encode_to_vec()
            }
            "updateApplicationPriority" => {
                let req: r::UpdateApplicationPriorityRequestProto = decode("UpdateApplicationPriorityRequestProto", request)?;
                let id = convert::app_id_from_proto("applicationId", Some(&req.application_id)).map_err(invalid)?;
                let wanted = req.application_priority.priority.unwrap_or(0);
                self.may_modify(&user, id).await?;
                let now = self.books(move |rm, _| rm.update_priority(id, wanted)).await?.map_err(rm)?;
                info!(application_id = %id, %user, wanted, priority = now, "application priority updated");
                r::UpdateApplicationPriorityResponseProto { application_priority: Some(r::PriorityProto { priority: Some(now) }) }
                    .encode_to_vec()
            }
            "updateApplicationTimeouts" => {
                let req: r::UpdateApplicationTimeoutsRequestProto = decode("UpdateApplicationTimeoutsRequestProto", request)?;
                let id = convert::app_id_from_proto("applicationId", Some(&req.application_id)).map_err(invalid)?;
                if req.application_timeouts.is_empty() {
                    return Err(RpcError::application(
                        YARN_EXCEPTION,
                        "At least one ApplicationTimeoutType should be configured for updating timeouts.",
                    ));
                }
                let mut expiries = Vec::new();
                for t in &req.application_timeouts {
                    let text = t.expire_time.clone().unwrap_or_default();
                    let ms = crate::rm_core::parse_iso8601(&text).ok_or_else(|| {
                        RpcError::application(
                            YARN_EXCEPTION,
                            format!(
                                "Expire time is not in ISO8601 format. ISO8601 supported format is yyyy-MM-dd'T'HH:mm:ss.SSSZ. \
                                 Configured timeout value is {text}"
                            ),
                        )
                    })?;
                    expiries.push(ms);
                }
                self.may_modify(&user, id).await?;
                let outcome = self
                    .books(move |rm, now| {
                        let state = rm.application(id)?.state;
                        if state == crate::rm_core::AppState::New {
                            return Err(RmError::Refused(format!("Application is in {} state can not update timeout.", state.java_name())));
                        }
                        // LIFETIME is YARN's only timeout type: the earliest asked expiry wins.
                        match expiries.iter().min() {
                            Some(ms) => rm.update_lifetime(id, *ms, now.unix_ms),
                            None => Ok(()),
                        }
                    })
                    .await?;
                outcome.map_err(rm)?;
                info!(application_id = %id, %user, "application lifetime updated");
                r::UpdateApplicationTimeoutsResponseProto { application_timeouts: req.application_timeouts }.encode_to_vec()
            }
            "getDelegationToken" => {
                let req: common::GetDelegationTokenRequestProto = decode("GetDelegationTokenRequestProto", request)?;
                self.token_op_allowed(ctx, "issued")?;
                let now = self.yarn(|_, now| now).await?;
                let real = ctx.real_user.clone();
                let token = self.with_tokens(|t| t.issue(&user, real.as_deref(), &req.renewer, now.unix_ms));
                info!(%user, renewer = req.renewer, "RM delegation token issued");
                common::GetDelegationTokenResponseProto { token: Some(token) }.encode_to_vec()
            }
            "renewDelegationToken" => {
                let req: common::RenewDelegationTokenRequestProto = decode("RenewDelegationTokenRequestProto", request)?;
                self.token_op_allowed(ctx, "renewed")?;
                let now = self.yarn(|_, now| now).await?;
                let renewer = short_name(&user).to_owned();
                let expiry = self.with_tokens(|t| t.renew(&req.token, &renewer, now.unix_ms)).map_err(|e| {
                    warn!(%user, error = e.message, "RM delegation token renewal refused");
                    e.to_rpc()
                })?;
                common::RenewDelegationTokenResponseProto { new_expiry_time: u64::try_from(expiry).unwrap_or(0) }.encode_to_vec()
            }
            "cancelDelegationToken" => {
                let req: common::CancelDelegationTokenRequestProto = decode("CancelDelegationTokenRequestProto", request)?;
                self.token_op_allowed(ctx, "cancelled")?;
                self.with_tokens(|t| t.cancel(&req.token, &user)).map_err(|e| {
                    warn!(%user, error = e.message, "RM delegation token cancellation refused");
                    e.to_rpc()
                })?;
                info!(%user, "RM delegation token cancelled");
                common::CancelDelegationTokenResponseProto {}.encode_to_vec()
            }
            "getClusterNodeLabels" => {
                let _: r::GetClusterNodeLabelsRequestProto = decode("GetClusterNodeLabelsRequestProto", request)?;
                r::GetClusterNodeLabelsResponseProto::default().encode_to_vec()
            }
            "getNodeToLabels" => {
                let _: r::GetNodesToLabelsRequestProto = decode("GetNodesToLabelsRequestProto", request)?;
                r::GetNodesToLabelsResponseProto::default().encode_to_vec()
            }
            "getLabelsToNodes" => {
                let _: r::GetLabelsToNodesRequestProto = decode("GetLabelsToNodesRequestProto", request)?;
                r::GetLabelsToNodesResponseProto::default().encode_to_vec()
            }
            "getClusterNodeAttributes" => {
                let _: r::GetClusterNodeAttributesRequestProto = decode("GetClusterNodeAttributesRequestProto", request)?;
                r::GetClusterNodeAttributesResponseProto::default().encode_to_vec()
            }
            "getAttributesToNodes" => {
                let _: r::GetAttributesToNodesRequestProto = decode("GetAttributesToNodesRequestProto", request)?;
                r::GetAttributesToNodesResponseProto::default().encode_to_vec()
            }
            "getNodesToAttributes" => {
                let _: r::GetNodesToAttributesRequestProto = decode("GetNodesToAttributesRequestProto", request)?;
                r::GetNodesToAttributesResponseProto::default().encode_to_vec()
            }
            "getNewReservation" | "submitReservation" | "updateReservation" | "deleteReservation" | "listReservations" => {
                return Err(RpcError::application(YARN_EXCEPTION, RESERVATIONS_DISABLED));
            }
            other => {
                warn!(method = other, %user, peer = %ctx.peer, "ApplicationClientProtocol method not implemented");
                return Err(RpcError::no_such_method(APPLICATION_CLIENT_PROTOCOL, other));
            }
        };
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use weir_model::{ManualClock, Milli};
    use weir_yarn_api::ids::{ApplicationId, AttemptId, ContainerId, NodeId};
    use weir_yarn_api::resource::Capacity;

    use crate::core::{spawn, YarnCore};
    use crate::rm_core::{NodeState, ObservedNode, Submission};
    use crate::scheduler::{Effect, Offer, Scheduler, SchedulerConfig, TaskEvent};

    const TS_MS: u64 = 1_700_000_000_000;

    struct Rig {
        protocol: ClientProtocol,
        core: CoreHandle,
        effects: mpsc::UnboundedReceiver<Effect>,
        clock: ManualClock,
        app: ApplicationId,
        attempt: AttemptId,
        am: ContainerId,
    }

    fn ctx(user: &str) -> CallContext {
        CallContext {
            peer: "127.0.0.1:1".parse().unwrap(),
            user: Some(user.into()),
            authentication: Authentication::Simple,
            real_user: None,
            token_identifier: None,
            call_id: 0,
            client_id: vec![],
            retry_count: -1,
        }
    }

    async fn call<Q: Message, A: Message + Default>(p: &ClientProtocol, user: &str, method: &str, req: &Q) -> Result<A, RpcError> {
        let bytes = p.call(&ctx(user), method, &req.encode_to_vec()).await?;
        Ok(A::decode(bytes.as_slice()).unwrap())
    }

    fn err<T: std::fmt::Debug>(r: Result<T, RpcError>) -> (String, String) {
        let e = r.unwrap_err();
        (e.class, e.message)
    }

    fn submission(id: ApplicationId) -> Submission {
        Submission {
            id,
            name: "shell".into(),
            queue: "default".into(),
            user: "alice".into(),
            application_type: "YARN".into(),
            tags: vec![],
            priority: 0,
            am_resource: Some(Capacity { memory_mb: 512, vcores: 1 }),
            max_attempts: 2,
            unmanaged_am: false,
            am_launch: Some(r::ContainerLaunchContextProto::default()),
        }
    }

    /// A core with one node and one application whose AM runs and registered.
    async fn rig() -> Rig {
        let clock = ManualClock::new(Duration::from_millis(TS_MS));
        let (tx, mut effects) = mpsc::unbounded_channel();
        let books = RmCore::new(TS_MS as i64, &["default".to_string(), "batch".to_string()], 10).unwrap();
        let (core, _task) = spawn(YarnCore::new(books, Scheduler::new(SchedulerConfig::default())), Arc::new(clock.clone()), tx);
        let node = ObservedNode {
            agent_id: "a1".into(),
            node_id: NodeId { host: "host1".into(), port: 5051 },
            http_address: "host1:8042".into(),
            capability: Capacity { memory_mb: 8192, vcores: 8 },
            used: Capacity::default(),
            containers: 0,
            state: NodeState::Running,
            health_report: String::new(),
            decommission_deadline_ms: None,
        };
        core.call(move |c, now| c.observe_nodes(vec![node], now)).await.unwrap();
        let (app, _) = core.call(|c, _| c.rm_mut().new_application()).await.unwrap().unwrap();
        core.call(move |c, now| c.rm_mut().submit(submission(app), now.unix_ms)).await.unwrap().unwrap();
        core.call(|c, now| c.tick(now)).await.unwrap();
        let offer = Offer {
            id: "o1".into(),
            agent_id: "a1".into(),
            hostname: "host1".into(),
            role: "default".into(),
            cpus: Milli::from_units(4),
            mem_mb: Milli::from_units(4096),
            ports: vec![(31000, 31005)],
        };
        core.call(move |c, now| c.offers(vec![offer], now)).await.unwrap();
        let attempt = AttemptId { app, attempt: 1 };
        let am = ContainerId { attempt, id: 1 };
        let started = std::iter::from_fn(|| effects.try_recv().ok()).any(|e| matches!(e, Effect::StartAm { container, .. } if container.id == am));
        assert!(started, "the AM container was not started");
        let task = weir_model::TaskId::new(am.to_string());
        let agent = weir_model::AgentId::new("a1");
        core.call(move |c, now| c.task_update(&task, &agent, TaskEvent::Running, now)).await.unwrap();
        let endpoint = crate::rm_core::AmEndpoint { host: "box".into(), rpc_port: 4242, tracking_url: String::new() };
        core.call(move |c, now| c.register(attempt, endpoint, now)).await.unwrap().unwrap();
        Rig { protocol: ClientProtocol::new(core.clone()), core, effects, clock, app, attempt, am }
    }

    fn app_proto(id: ApplicationId) -> r::ApplicationIdProto {
        convert::app_id_to_proto(id)
    }

    fn kills(rx: &mut mpsc::UnboundedReceiver<Effect>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|e| match e {
                Effect::Kill { task_id, .. } => Some(task_id.to_string()),
                _ => None,
            })
            .collect()
    }

    /// DistributedShell 3.2.1 reads this before it submits.
    #[tokio::test]
    async fn resource_type_info_is_memory_mb_and_vcores_as_yarn_reports_them() {
        let rig = rig().await;
        let rsp: r::GetAllResourceTypeInfoResponseProto =
            call(&rig.protocol, "alice", "getResourceTypeInfo", &r::GetAllResourceTypeInfoRequestProto {}).await.unwrap();
        let types: Vec<(&str, &str, i32)> = rsp.resource_type_info.iter().map(|t| (t.name.as_str(), t.units(), t.r#type.unwrap_or(-1))).collect();
        assert_eq!(types, [("memory-mb", "Mi", 0), ("vcores", "", 0)]);
    }

    #[tokio::test]
    async fn switched_off_features_answer_as_yarn_does() {
        let rig = rig().await;
        let profiles = "Resource profile is not enabled, please enable resource profile feature before using its functions. \
                        (by setting yarn.resourcemanager.resource-profiles.enabled to true)";
        let e = err(call::<_, r::GetAllResourceProfilesResponseProto>(&rig.protocol, "alice", "getResourceProfiles", &r::GetAllResourceProfilesRequestProto {}).await);
        assert_eq!(e, ("org.apache.hadoop.yarn.exceptions.YARNFeatureNotEnabledException".into(), profiles.into()));
        let req = r::GetResourceProfileRequestProto { profile: "minimum".into() };
        let e = err(call::<_, r::GetResourceProfileResponseProto>(&rig.protocol, "alice", "getResourceProfile", &req).await);
        assert_eq!(e.1, profiles);
        for method in ["getNewReservation", "submitReservation", "updateReservation", "deleteReservation", "listReservations"] {
            let e = err(rig.protocol.call(&ctx("alice"), method, &[]).await);
            assert_eq!(e, (YARN_EXCEPTION.into(), "Reservation is not enabled. Please enable & try again".into()), "{method}");
        }
        // No node labels or attributes: empty answers, as on a YARN without any.
        let labels: r::GetClusterNodeLabelsResponseProto = call(&rig.protocol, "alice", "getClusterNodeLabels", &r::GetClusterNodeLabelsRequestProto {}).await.unwrap();
        assert!(labels.node_labels.is_empty() && labels.deprecated_node_labels.is_empty());
        for method in ["getNodeToLabels", "getLabelsToNodes", "getClusterNodeAttributes", "getAttributesToNodes", "getNodesToAttributes"] {
            assert_eq!(rig.protocol.call(&ctx("alice"), method, &[]).await.unwrap(), Vec::<u8>::new(), "{method}");
        }
    }

    #[tokio::test]
    async fn attempts_and_containers_are_reported_and_unknown_ones_are_yarns_exceptions() {
        let rig = rig().await;
        let req = r::GetApplicationAttemptsRequestProto { application_id: Some(app_proto(rig.app)) };
        let rsp: r::GetApplicationAttemptsResponseProto = call(&rig.protocol, "alice", "getApplicationAttempts", &req).await.unwrap();
        assert_eq!(rsp.application_attempts.len(), 1);
        let a = &rsp.application_attempts[0];
        assert_eq!(convert::attempt_from_proto(a.application_attempt_id.as_ref()), Some(rig.attempt));
        assert_eq!(a.yarn_application_attempt_state(), r::YarnApplicationAttemptStateProto::AppAttemptRunning);
        assert_eq!(a.am_container_id.as_ref().and_then(convert::container_from_proto), Some(rig.am));
        assert_eq!((a.start_time(), a.finish_time()), (TS_MS as i64, 0));

        let two = AttemptId { app: rig.app, attempt: 2 };
        let req = r::GetApplicationAttemptReportRequestProto { application_attempt_id: Some(convert::attempt_to_proto(two)) };
        let e = err(call::<_, r::GetApplicationAttemptReportResponseProto>(&rig.protocol, "alice", "getApplicationAttemptReport", &req).await);
        assert_eq!(e.0, "org.apache.hadoop.yarn.exceptions.ApplicationAttemptNotFoundException");
        assert_eq!(e.1, format!("ApplicationAttempt with id '{two}' doesn't exist in RM."));
        let absent = ApplicationId { cluster_timestamp: 1, id: 9 };
        let req = r::GetApplicationAttemptsRequestProto { application_id: Some(app_proto(absent)) };
        let e = err(call::<_, r::GetApplicationAttemptsResponseProto>(&rig.protocol, "alice", "getApplicationAttempts", &req).await);
        assert_eq!(e.0, "org.apache.hadoop.yarn.exceptions.ApplicationNotFoundException");
        assert_eq!(e.1, "Application with id 'application_1_0009' doesn't exist in RM. Please check that the job submission was successful.");

        // Queue statistics count what runs (yarn top's header).
        let req = r::GetQueueInfoRequestProto { queue_name: Some("root".into()), ..Default::default() };
        let rsp: r::GetQueueInfoResponseProto = call(&rig.protocol, "alice", "getQueueInfo", &req).await.unwrap();
        let stats = rsp.queue_info.and_then(|q| q.queue_statistics).unwrap();
        assert_eq!((stats.num_active_users(), stats.allocated_memory_mb(), stats.available_memory_mb()), (1, 512, 8192 - 512));
        assert_eq!((stats.allocated_v_cores(), stats.available_v_cores(), stats.allocated_containers()), (1, 7, 1));

        // The application report names the current attempt (yarn top needs it) and what runs.
        let req = r::GetApplicationReportRequestProto { application_id: Some(app_proto(rig.app)) };
        let rsp: r::GetApplicationReportResponseProto = call(&rig.protocol, "alice", "getApplicationReport", &req).await.unwrap();
        let report = rsp.application_report.unwrap();
        assert_eq!(convert::attempt_from_proto(report.current_application_attempt_id.as_ref()), Some(rig.attempt));
        let usage = report.app_resource_usage.unwrap();
        assert_eq!((usage.num_used_containers(), usage.used_resources.map(|r| r.memory())), (1, Some(512)));

        let req = r::GetContainersRequestProto { application_attempt_id: Some(convert::attempt_to_proto(rig.attempt)) };
        let rsp: r::GetContainersResponseProto = call(&rig.protocol, "alice", "getContainers", &req).await.unwrap();
        assert_eq!(rsp.containers.len(), 1);
        let c = &rsp.containers[0];
        assert_eq!(c.container_id.as_ref().and_then(convert::container_from_proto), Some(rig.am));
        assert_eq!(c.container_state(), r::ContainerStateProto::CRunning);
        // The node manager took the offer's first two ports: IPC, then web.
        assert_eq!(c.node_http_address(), "http://host1:31001");
        assert_eq!(c.log_url(), format!("http://host1:31001/node/containerlogs/{}/alice", rig.am));
        assert_eq!(c.resource.as_ref().map(|r| (r.memory(), r.virtual_cores())), Some((512, 1)));

        let other = ContainerId { attempt: rig.attempt, id: 99 };
        let req = r::GetContainerReportRequestProto { container_id: Some(convert::container_to_proto(other)) };
        let e = err(call::<_, r::GetContainerReportResponseProto>(&rig.protocol, "alice", "getContainerReport", &req).await);
        assert_eq!(e, ("org.apache.hadoop.yarn.exceptions.ContainerNotFoundException".into(), format!("Container with id '{other}' doesn't exist in RM.")));
        let req = r::GetContainerReportRequestProto { container_id: Some(convert::container_to_proto(rig.am)) };
        let rsp: r::GetContainerReportResponseProto = call(&rig.protocol, "alice", "getContainerReport", &req).await.unwrap();
        assert_eq!(rsp.container_report.as_ref().map(|c| c.container_exit_status()), Some(0));
    }

    #[tokio::test]
    async fn move_and_priority_follow_yarns_rules() {
        let rig = rig().await;
        let mv = |queue: &str, app| r::MoveApplicationAcrossQueuesRequestProto { application_id: app_proto(app), target_queue: queue.into() };
        let _: r::MoveApplicationAcrossQueuesResponseProto = call(&rig.protocol, "alice", "moveApplicationAcrossQueues", &mv("root.batch", rig.app)).await.unwrap();
        let app = rig.app;
        let queue = rig.core.call(move |c, _| c.rm().application(app).map(|a| a.submission.queue.clone())).await.unwrap().unwrap();
        assert_eq!(queue, "batch");
        let e = err(call::<_, r::MoveApplicationAcrossQueuesResponseProto>(&rig.protocol, "alice", "moveApplicationAcrossQueues", &mv("nope", rig.app)).await);
        assert_eq!(e, (YARN_EXCEPTION.into(), "Target queue nope not found or is not a leaf queue.".into()));

        let prio = |p: i32, app| r::UpdateApplicationPriorityRequestProto { application_id: app_proto(app), application_priority: r::PriorityProto { priority: Some(p) } };
        // yarn.cluster.max-application-priority is 0 by default: YARN caps at it.
        let rsp: r::UpdateApplicationPriorityResponseProto = call(&rig.protocol, "alice", "updateApplicationPriority", &prio(5, rig.app)).await.unwrap();
        assert_eq!(rsp.application_priority.and_then(|p| p.priority), Some(0));
        let rsp: r::UpdateApplicationPriorityResponseProto = call(&rig.protocol, "alice", "updateApplicationPriority", &prio(-2, rig.app)).await.unwrap();
        assert_eq!(rsp.application_priority.and_then(|p| p.priority), Some(-2));

        let timeouts = |app, n: usize| r::UpdateApplicationTimeoutsRequestProto {
            application_id: app_proto(app),
            application_timeouts: vec![
                r::ApplicationUpdateTimeoutMapProto {
                    application_timeout_type: Some(r::ApplicationTimeoutTypeProto::AppTimeoutLifetime as i32),
                    expire_time: Some("2030-01-01T00:00:00.000+0000".into()),
                };
                n
            ],
        };
        let e = err(call::<_, r::UpdateApplicationTimeoutsResponseProto>(&rig.protocol, "alice", "updateApplicationTimeouts", &timeouts(rig.app, 0)).await);
        assert_eq!(e, (YARN_EXCEPTION.into(), "At least one ApplicationTimeoutType should be configured for updating timeouts.".into()));

        // Once the application has ended: moves are refused, priority and
        // timeouts are echoed without change.
        rig.core.call(move |c, now| c.rm_mut().kill(app, None, now.unix_ms)).await.unwrap().unwrap();
        let e = err(call::<_, r::MoveApplicationAcrossQueuesResponseProto>(&rig.protocol, "alice", "moveApplicationAcrossQueues", &mv("default", rig.app)).await);
        assert_eq!(e, (YARN_EXCEPTION.into(), "App in KILLED state cannot be moved.".into()));
        let rsp: r::UpdateApplicationPriorityResponseProto = call(&rig.protocol, "alice", "updateApplicationPriority", &prio(3, rig.app)).await.unwrap();
        assert_eq!(rsp.application_priority.and_then(|p| p.priority), Some(-2));
        let rsp: r::UpdateApplicationTimeoutsResponseProto = call(&rig.protocol, "alice", "updateApplicationTimeouts", &timeouts(rig.app, 1)).await.unwrap();
        assert_eq!(rsp.application_timeouts.len(), 1);

        let absent = ApplicationId { cluster_timestamp: 1, id: 7 };
        let e = err(call::<_, r::UpdateApplicationPriorityResponseProto>(&rig.protocol, "alice", "updateApplicationPriority", &prio(1, absent)).await);
        assert_eq!(e.0, "org.apache.hadoop.yarn.exceptions.ApplicationNotFoundException");
    }

    /// `yarn application -updateLifetime`: the expiry is kept, reported,
    /// and the application is killed when it passes, with YARN's words.
    #[tokio::test]
    async fn lifetimes_are_set_reported_and_enforced() {
        let rig = rig().await;
        let at = |text: &str| r::UpdateApplicationTimeoutsRequestProto {
            application_id: app_proto(rig.app),
            application_timeouts: vec![r::ApplicationUpdateTimeoutMapProto {
                application_timeout_type: Some(r::ApplicationTimeoutTypeProto::AppTimeoutLifetime as i32),
                expire_time: Some(text.into()),
            }],
        };
        let e = err(call::<_, r::UpdateApplicationTimeoutsResponseProto>(&rig.protocol, "alice", "updateApplicationTimeouts", &at("tomorrow")).await);
        assert_eq!(e.1, "Expire time is not in ISO8601 format. ISO8601 supported format is yyyy-MM-dd'T'HH:mm:ss.SSSZ. Configured timeout value is tomorrow");
        let e = err(call::<_, r::UpdateApplicationTimeoutsResponseProto>(&rig.protocol, "alice", "updateApplicationTimeouts", &at("2000-01-01T00:00:00.000+0000")).await);
        assert_eq!(e.1, "Expire time is less than current time, current-time=2023-11-14T22:13:20.000+0000 expire-time=2000-01-01T00:00:00.000+0000");
        let rsp: r::UpdateApplicationTimeoutsResponseProto =
            call(&rig.protocol, "alice", "updateApplicationTimeouts", &at("2023-11-14T22:13:30.000+0000")).await.unwrap();
        assert_eq!(rsp.application_timeouts.len(), 1);
        async fn report(p: &ClientProtocol, app: ApplicationId) -> r::ApplicationReportProto {
            let req = r::GetApplicationReportRequestProto { application_id: Some(app_proto(app)) };
            let rsp: r::GetApplicationReportResponseProto = call(p, "alice", "getApplicationReport", &req).await.unwrap();
            rsp.application_report.unwrap()
        }
        let t = report(&rig.protocol, rig.app).await.app_timeouts[0].application_timeout.clone().unwrap();
        assert_eq!((t.expire_time(), t.remaining_time()), ("2023-11-14T22:13:30.000+0000", 10));
        rig.clock.advance(Duration::from_secs(11));
        rig.core.call(|c, now| c.tick(now)).await.unwrap();
        let r = report(&rig.protocol, rig.app).await;
        assert_eq!(r.yarn_application_state(), r::YarnApplicationStateProto::Killed);
        assert_eq!(r.diagnostics(), "Application is killed by ResourceManager as it has exceeded the lifetime period.");
    }

    #[tokio::test]
    async fn signal_and_fail_attempt_kill_the_right_containers() {
        let mut rig = rig().await;
        kills(&mut rig.effects);
        let absent = ContainerId { attempt: rig.attempt, id: 42 };
        let req = |c, command: r::SignalContainerCommandProto| r::SignalContainerRequestProto { container_id: convert::container_to_proto(c), command: command as i32 };
        let e = err(call::<_, r::SignalContainerResponseProto>(&rig.protocol, "alice", "signalToContainer", &req(absent, r::SignalContainerCommandProto::ForcefulShutdown)).await);
        assert_eq!(e, (YARN_EXCEPTION.into(), format!("Trying to signal an absent container {absent}")));

        let fail = |a| r::FailApplicationAttemptRequestProto { application_attempt_id: Some(convert::attempt_to_proto(a)) };
        let two = AttemptId { app: rig.app, attempt: 2 };
        let e = err(call::<_, r::FailApplicationAttemptResponseProto>(&rig.protocol, "alice", "failApplicationAttempt", &fail(two)).await);
        assert_eq!(e.0, "org.apache.hadoop.yarn.exceptions.ApplicationAttemptNotFoundException");
        let _: r::FailApplicationAttemptResponseProto = call(&rig.protocol, "alice", "failApplicationAttempt", &fail(rig.attempt)).await.unwrap();
        assert_eq!(kills(&mut rig.effects), [rig.am.to_string()]);

        let _: r::SignalContainerResponseProto =
            call(&rig.protocol, "alice", "signalToContainer", &req(rig.am, r::SignalContainerCommandProto::GracefulShutdown)).await.unwrap();
        // Already being killed: no second kill.
        assert!(kills(&mut rig.effects).is_empty());
    }

    /// With Kerberos on, tokens come only over Kerberos connections (as
    /// Hadoop's `isAllowedDelegationTokenOp`); a token connection is its
    /// token's owner, whatever name its context claims.
    #[tokio::test]
    async fn delegation_tokens_need_kerberos_when_it_is_on_and_token_callers_are_their_owners() {
        let rig = rig().await;
        let on = ClientProtocol::new(rig.core.clone()).with_kerberos(true);
        let as_ctx = |authentication: Authentication, user: Option<&str>, identifier: Option<Vec<u8>>| CallContext {
            authentication,
            user: user.map(Into::into),
            token_identifier: identifier,
            ..ctx("x")
        };
        let get = common::GetDelegationTokenRequestProto { renewer: "alice".into() }.encode_to_vec();
        let kerberos = as_ctx(Authentication::Kerberos { principal: "alice@EXAMPLE.COM".into() }, Some("alice"), None);
        let rsp = common::GetDelegationTokenResponseProto::decode(on.call(&kerberos, "getDelegationToken", &get).await.unwrap().as_slice()).unwrap();
        let token = rsp.token.unwrap();
        assert_eq!(r::YarnDelegationTokenIdentifierProto::decode(token.identifier.as_slice()).unwrap().owner(), "alice");
        let over_token = as_ctx(Authentication::Token, None, Some(token.identifier.clone()));
        let e = on.call(&over_token, "getDelegationToken", &get).await.unwrap_err();
        assert_eq!((e.class.as_str(), e.message.as_str()), ("java.io.IOException", "Delegation Token can be issued only with kerberos authentication"));
        let renew = common::RenewDelegationTokenRequestProto { token: token.clone() }.encode_to_vec();
        let e = on.call(&as_ctx(Authentication::Simple, Some("alice"), None), "renewDelegationToken", &renew).await.unwrap_err();
        assert_eq!(e.message, "Delegation Token can be renewed only with kerberos authentication");
        let cancel = common::CancelDelegationTokenRequestProto { token: token.clone() }.encode_to_vec();
        let e = on.call(&over_token, "cancelDelegationToken", &cancel).await.unwrap_err();
        assert_eq!(e.message, "Delegation Token can be cancelled only with kerberos authentication");
        on.call(&kerberos, "renewDelegationToken", &renew).await.unwrap();

        // Kerberos off: a token connection claiming mallory acts as alice,
        // the owner, who may cancel her token (mallory could not).
        let off = &rig.protocol;
        let get = common::GetDelegationTokenRequestProto { renewer: "bob".into() };
        let token: common::GetDelegationTokenResponseProto = call(off, "alice", "getDelegationToken", &get).await.unwrap();
        let token = token.token.unwrap();
        let cancel = common::CancelDelegationTokenRequestProto { token: token.clone() }.encode_to_vec();
        assert!(off.call(&ctx("mallory"), "cancelDelegationToken", &cancel).await.is_err(), "mallory is neither owner nor renewer");
        let claims_mallory = as_ctx(Authentication::Token, Some("mallory"), Some(token.identifier.clone()));
        off.call(&claims_mallory, "cancelDelegationToken", &cancel).await.unwrap();
        // A token connection whose identifier is not an RM token's.
        let junk = as_ctx(Authentication::Token, Some("mallory"), Some(b"\xff\xff".to_vec()));
        let e = off.call(&junk, "getNewApplication", &r::GetNewApplicationRequestProto {}.encode_to_vec()).await.unwrap_err();
        assert_eq!(e.class, ACCESS_CONTROL);
    }

    #[tokio::test]
    async fn delegation_tokens_issue_renew_and_cancel_as_hadoop_does() {
        let rig = rig().await;
        let get = common::GetDelegationTokenRequestProto { renewer: "bob".into() };
        let rsp: common::GetDelegationTokenResponseProto = call(&rig.protocol, "alice", "getDelegationToken", &get).await.unwrap();
        let token = rsp.token.unwrap();
        assert_eq!((token.kind.as_str(), token.service.as_str()), ("RM_DELEGATION_TOKEN", ""));
        let id = r::YarnDelegationTokenIdentifierProto::decode(token.identifier.as_slice()).unwrap();
        let now = TS_MS as i64;
        assert_eq!((id.owner(), id.renewer(), id.real_user.as_deref()), ("alice", "bob", None));
        assert_eq!((id.issue_date(), id.max_date(), id.sequence_number(), id.master_key_id()), (now, now + TOKEN_MAX_LIFETIME_MS, 1, 1));
        let what = format!("(RM_DELEGATION_TOKEN owner=alice, renewer=bob, realUser=, issueDate={now}, maxDate={}, sequenceNumber=1, masterKeyId=1)", now + TOKEN_MAX_LIFETIME_MS);
        // The client port's SASL knows it.
        let lookup = rig.protocol.delegation_token_passwords(Arc::new(rig.clock.clone()));
        assert_eq!(lookup(&token.identifier), Some(token.password.clone()));

        rig.clock.advance(Duration::from_secs(60));
        let renew = |t: &common::TokenProto| common::RenewDelegationTokenRequestProto { token: t.clone() };
        let rsp: common::RenewDelegationTokenResponseProto = call(&rig.protocol, "bob", "renewDelegationToken", &renew(&token)).await.unwrap();
        assert_eq!(rsp.new_expiry_time as i64, now + 60_000 + TOKEN_RENEW_INTERVAL_MS);
        let e = err(call::<_, common::RenewDelegationTokenResponseProto>(&rig.protocol, "carol", "renewDelegationToken", &renew(&token)).await);
        assert_eq!(e, (YARN_EXCEPTION.into(), format!("org.apache.hadoop.security.AccessControlException: carol tries to renew a token {what} with non-matching renewer bob")));
        let forged = common::TokenProto { password: vec![0; 20], ..token.clone() };
        let e = err(call::<_, common::RenewDelegationTokenResponseProto>(&rig.protocol, "bob", "renewDelegationToken", &renew(&forged)).await);
        assert_eq!(e.1, format!("org.apache.hadoop.security.AccessControlException: bob is trying to renew a token {what} with wrong password"));

        let cancel = |t: &common::TokenProto| common::CancelDelegationTokenRequestProto { token: t.clone() };
        let e = err(call::<_, common::CancelDelegationTokenResponseProto>(&rig.protocol, "carol", "cancelDelegationToken", &cancel(&token)).await);
        assert_eq!(e.1, format!("org.apache.hadoop.security.AccessControlException: carol is not authorized to cancel the token {what}"));
        let _: common::CancelDelegationTokenResponseProto = call(&rig.protocol, "alice", "cancelDelegationToken", &cancel(&token)).await.unwrap();
        assert_eq!(lookup(&token.identifier), None);
        let e = err(call::<_, common::RenewDelegationTokenResponseProto>(&rig.protocol, "bob", "renewDelegationToken", &renew(&token)).await);
        assert_eq!(e.1, format!("org.apache.hadoop.security.token.SecretManager$InvalidToken: Renewal request for unknown token {what}"));
        let e = err(call::<_, common::CancelDelegationTokenResponseProto>(&rig.protocol, "alice", "cancelDelegationToken", &cancel(&token)).await);
        assert_eq!(e.1, format!("org.apache.hadoop.security.token.SecretManager$InvalidToken: Token not found {what}"));
    }

    #[test]
    fn tokens_expire_at_their_renew_date_and_past_their_max_date_cannot_be_renewed() {
        let mut t = DelegationTokens::new(b"key".to_vec(), 0);
        let token = t.issue("alice", None, "alice", 0);
        assert!(t.password(&token.identifier, TOKEN_RENEW_INTERVAL_MS).is_some());
        assert!(t.password(&token.identifier, TOKEN_RENEW_INTERVAL_MS + 1).is_none());
        let e = t.renew(&token, "alice", TOKEN_MAX_LIFETIME_MS + 1).unwrap_err();
        assert!(e.message.starts_with("alice tried to renew an expired token (RM_DELEGATION_TOKEN owner=alice"), "{}", e.message);
        assert!(e.message.ends_with("max expiration date: 1970-01-08 00:00:00,000+0000 currentTime: 1970-01-08 00:00:00,001+0000"), "{}", e.message);
        t.remove_expired(TOKEN_RENEW_INTERVAL_MS + 1);
        assert!(matches!(t.renew(&token, "alice", 5), Err(TokenRefusal { class: INVALID_TOKEN, .. })));
    }

    #[test]
    fn format_time_matches_hadoops_pattern() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00,000+0000");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14 22:13:20,123+0000");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00,000+0000");
    }

    /// Skein's AM inside its container holds tokens for other services, so
    /// its client speaks SASL to the client port: it goes on as SIMPLE; a
    /// client holding an RM delegation token authenticates with it.
    #[tokio::test]
    async fn client_port_accepts_simple_fallback_and_rm_delegation_tokens_over_sasl() {
        use weir_yarn_ipc::client::{Client, ClientConfig};
        use weir_yarn_ipc::server::{Server, ServerConfig};
        let rig = rig().await;
        let protocol = Arc::new(ClientProtocol::new(rig.core.clone()));
        let mut server = Server::new(ServerConfig::default());
        server.set_token_passwords(protocol.delegation_token_passwords(Arc::new(rig.clock.clone())));
        server.register(APPLICATION_CLIENT_PROTOCOL, protocol.clone());
        let server = server.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
        let cfg = ClientConfig::simple("skein", APPLICATION_CLIENT_PROTOCOL);
        let c = Client::connect_holding_other_tokens(server.local_addr, cfg.clone()).await.unwrap();
        let rsp: r::GetAllResourceTypeInfoResponseProto =
            c.call_message(APPLICATION_CLIENT_PROTOCOL, "getResourceTypeInfo", &r::GetAllResourceTypeInfoRequestProto {}).await.unwrap();
        assert_eq!(rsp.resource_type_info.len(), 2);
        let token: common::GetDelegationTokenResponseProto = c
            .call_message(APPLICATION_CLIENT_PROTOCOL, "getDelegationToken", &common::GetDelegationTokenRequestProto { renewer: "skein".into() })
            .await
            .unwrap();
        let mut with_token = cfg;
        with_token.token = token.token;
        let c = Client::connect(server.local_addr, with_token.clone()).await.unwrap();
        let _: r::GetAllResourceTypeInfoResponseProto =
            c.call_message(APPLICATION_CLIENT_PROTOCOL, "getResourceTypeInfo", &r::GetAllResourceTypeInfoRequestProto {}).await.unwrap();
        // A forged token is refused at the handshake.
        if let Some(t) = with_token.token.as_mut() {
            t.password = vec![1; 20];
        }
        assert!(Client::connect(server.local_addr, with_token).await.is_err());
        server.shutdown();
    }
}
