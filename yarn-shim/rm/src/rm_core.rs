//! The ResourceManager's books as a synchronous, deterministic state
//! machine: applications with YARN's state machine, queues, and the nodes
//! the broker reports. No clock and no I/O: every call that needs the time
//! takes `now_ms` (milliseconds since the epoch, as YARN reports times).
//!
//! Invariants (checked by `check_invariants`, which the tests call after
//! every step):
//! - an application's `finish_ms` is set exactly when its state is final,
//!   and its final status is UNDEFINED exactly while it is not;
//! - every unfinished application's queue is a configured queue (a FAILED
//!   one may have been rejected for naming an unknown queue, an ended one
//!   may be in a queue removed since);
//! - no application id is above the last id handed out;
//! - at most `max_completed` applications in a final state are kept.
//!
//! A call that fails changes nothing.

use std::collections::{BTreeMap, VecDeque};

pub use weir_yarn_api::resource::Capacity;
use weir_yarn_api::ids::{ApplicationId, NodeId};

use crate::acl::{AclPolicy, AppAccess, Caller, QueueAccess};
use crate::capacity_scheduler::{CapacityScheduler, QueueState};


/// YARN's application states (YarnApplicationState; NEW_SAVING is not
/// used: nothing is persisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppState {
    New,
    Submitted,
    Accepted,
    Running,
    Finished,
    Failed,
    Killed,
}

impl AppState {
    pub const ALL: [AppState; 7] = [
        AppState::New,
        AppState::Submitted,
        AppState::Accepted,
        AppState::Running,
        AppState::Finished,
        AppState::Failed,
        AppState::Killed,
    ];

    /// RMAppState's name, as YARN's messages print it.
    pub fn java_name(self) -> &'static str {
        match self {
            AppState::New => "NEW",
            AppState::Submitted => "SUBMITTED",
            AppState::Accepted => "ACCEPTED",
            AppState::Running => "RUNNING",
            AppState::Finished => "FINISHED",
            AppState::Failed => "FAILED",
            AppState::Killed => "KILLED",
        }
    }

    /// Whether the scheduler tracks the application (ClientRMService's
    /// ACTIVE_APP_STATES): only then may it move or change priority.
    pub fn is_active(self) -> bool {
        matches!(self, AppState::Accepted | AppState::Running)
    }

    pub fn is_final(self) -> bool {
        matches!(self, AppState::Finished | AppState::Failed | AppState::Killed)
    }

    /// YARN's transitions, reduced to the ones this RM makes. Any other
    /// move is a bug in the caller and is refused.
    fn may_become(self, next: AppState) -> bool {
        use AppState::*;
        matches!(
            (self, next),
            (New, Submitted)
                | (Submitted, Accepted)
                | (Submitted, Failed)
                | (Accepted, Running)
                | (Accepted, Failed)
                | (Running, Finished)
                | (Running, Failed)
        ) || (!self.is_final() && next == Killed)
    }
}

/// What the application master (or a kill) said the outcome was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    Undefined,
    Succeeded,
    Failed,
    Killed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    Running,
    Unhealthy,
    Lost,
    /// Its agent is draining: no new containers; those there are killed at
    /// the drain's deadline.
    Decommissioning,
    /// Its agent is drained (no container left).
    Decommissioned,
}

/// What a client asked for in submitApplication.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub id: ApplicationId,
    pub name: String,
    pub queue: String,
    pub user: String,
    pub application_type: String,
    pub tags: Vec<String>,
    pub priority: i32,
    /// The ApplicationMaster's container size, if the client said.
    pub am_resource: Option<Capacity>,
    pub max_attempts: i32,
    pub unmanaged_am: bool,
    /// How to start the ApplicationMaster: the client's launch context
    /// (commands, environment, local resources, tokens).
    pub am_launch: Option<weir_yarn_api::records::ContainerLaunchContextProto>,
}

impl Submission {
    /// A submission for tests: application `x` of user `u` in the default
    /// queue, one attempt, with an (empty) AM launch context.
    #[cfg(test)]
    pub(crate) fn for_test(id: ApplicationId) -> Submission {
        Submission {
            id,
            name: "x".into(),
            queue: "default".into(),
            user: "u".into(),
            application_type: "YARN".into(),
            tags: Vec::new(),
            priority: 0,
            am_resource: None,
            max_attempts: 1,
            unmanaged_am: false,
            am_launch: Some(Default::default()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    pub submission: Submission,
    pub state: AppState,
    pub final_status: FinalStatus,
    pub diagnostics: String,
    pub submit_ms: i64,
    pub finish_ms: Option<i64>,
    /// The LIFETIME timeout's expiry (wall-clock ms), set through
    /// updateApplicationTimeouts; the application is killed when it passes.
    pub lifetime_expiry_ms: Option<i64>,
    /// Where the current attempt's AM said it listens (registration), as
    /// the application report shows it: MapReduce's client asks its AM
    /// for progress there.
    pub am: Option<AmEndpoint>,
}

/// What an ApplicationMaster registered: its host, RPC port and tracking
/// URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmEndpoint {
    pub host: String,
    pub rpc_port: i32,
    pub tracking_url: String,
}

impl Application {
    pub fn id(&self) -> ApplicationId {
        self.submission.id
    }
}

/// One node as the broker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedNode {
    /// The broker's agent id: stable across address changes.
    pub agent_id: String,
    pub node_id: NodeId,
    pub http_address: String,
    pub capability: Capacity,
    pub used: Capacity,
    pub containers: i32,
    pub state: NodeState,
    pub health_report: String,
    /// While decommissioning: when its containers are killed (Unix ms).
    pub decommission_deadline_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub observed: ObservedNode,
    pub last_report_ms: i64,
}

/// getApplications' filters; empty lists match everything.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    pub states: Vec<AppState>,
    /// Compared case-insensitively, as Hadoop does.
    pub types: Vec<String>,
    pub queues: Vec<String>,
    pub users: Vec<String>,
    /// Compared case-insensitively, as Hadoop does.
    pub tags: Vec<String>,
    pub name: Option<String>,
    pub start_range: Option<(i64, i64)>,
    pub finish_range: Option<(i64, i64)>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    pub submitted: i64,
    pub pending: i64,
    pub running: i64,
    pub completed: i64,
    pub killed: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueReport {
    pub name: String,
    pub path: String,
    /// Fraction of the parent (0..=1), as YARN reports it.
    pub capacity: f32,
    pub maximum_capacity: f32,
    pub current_capacity: f32,
    pub children: Vec<QueueReport>,
    pub applications: Vec<Application>,
    pub stats: QueueStats,
    /// STOPPED: takes no new applications.
    pub stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterMetrics {
    pub node_managers: i32,
    pub active: i32,
    pub lost: i32,
    pub unhealthy: i32,
    pub decommissioning: i32,
    pub decommissioned: i32,
}

/// Errors carry the Java exception class YARN clients expect, and YARN's
/// own messages where clients or users rely on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RmError {
    #[error("Application with id '{0}' doesn't exist in RM. Please check that the job submission was successful.")]
    ApplicationNotFound(ApplicationId),
    #[error("Trying to kill an absent application {0}")]
    KillAbsent(ApplicationId),
    #[error("Application id {id} was not issued by this ResourceManager (cluster timestamp {ours}, last id {last})")]
    NotIssued { id: ApplicationId, ours: i64, last: i32 },
    #[error("Invalid resource request: the ApplicationMaster asks for {asked}, more than the largest node offers, {max}")]
    ResourceTooLarge { asked: Capacity, max: Capacity },
    #[error("Invalid resource request: the ApplicationMaster asks for {0}, which has a negative value")]
    ResourceNegative(Capacity),
    #[error("java.io.IOException: Unknown queue: {0}")]
    UnknownQueue(String),
    #[error("application {id} cannot go from {from:?} to {to:?}")]
    BadTransition { id: ApplicationId, from: AppState, to: AppState },
    #[error("application {0}: an ApplicationMaster must finish with SUCCEEDED, FAILED or KILLED, not UNDEFINED")]
    UndefinedFinalStatus(ApplicationId),
    #[error("this ResourceManager has handed out every application id it can ({0})")]
    IdsExhausted(i32),
    #[error("no queues configured: at least one is needed")]
    NoQueues,
    /// A refusal YARN words itself (thrown as a plain YarnException).
    #[error("{0}")]
    Refused(String),
    #[error("queue name {0:?} is not valid: use letters, digits, '-' and '_' (and not \"root\")")]
    BadQueueName(String),
    /// An ACL refused the caller (YARN wraps an AccessControlException in
    /// a YarnException, and clients print both).
    #[error("org.apache.hadoop.security.AccessControlException: {0}")]
    AccessDenied(String),
}

impl RmError {
    /// The Java exception class the client will rebuild.
    pub fn java_class(&self) -> &'static str {
        match self {
            RmError::ApplicationNotFound(_) | RmError::KillAbsent(_) => {
                "org.apache.hadoop.yarn.exceptions.ApplicationNotFoundException"
            }
            RmError::ResourceTooLarge { .. } | RmError::ResourceNegative(_) => {
                "org.apache.hadoop.yarn.exceptions.InvalidResourceRequestException"
            }
            _ => "org.apache.hadoop.yarn.exceptions.YarnException",
        }
    }
}

/// What forceKillApplication reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// The application was live and is KILLED now.
    Killed,
    /// It had already ended (in any final state); nothing changed.
    AlreadyFinal(AppState),
}

pub const ROOT_QUEUE: &str = "root";

/// `yarn.cluster.max-application-priority`'s default: YARN caps every
/// application priority at it, so with the default all priorities are 0.
pub const MAX_APPLICATION_PRIORITY: i32 = 0;

pub struct RmCore {
    cluster_timestamp: i64,
    last_issued: i32,
    queues: Vec<String>,
    apps: BTreeMap<ApplicationId, Application>,
    /// Final applications, oldest first, for the retention bound.
    completed: VecDeque<ApplicationId>,
    max_completed: usize,
    nodes: BTreeMap<String, Node>,
    /// Grows whenever a node appears or changes state, so an AM's
    /// allocate looks for `updated_nodes` only when there can be some.
    node_generation: u64,
    /// The queue tree of a capacity-scheduler.xml, when the queues come
    /// from one: states, application limits, capacities, mappings.
    queue_conf: Option<CapacityScheduler>,
    /// `yarn-shim.acl.enable` and the admin ACL (see `acl`).
    acls: AclPolicy,
}

impl RmCore {
    /// `cluster_timestamp` is this RM's start time in ms; it is part of
    /// every application id.
    pub fn new(cluster_timestamp: i64, queues: &[String], max_completed: usize) -> Result<RmCore, RmError> {
        if queues.is_empty() {
            return Err(RmError::NoQueues);
        }
        let mut names = Vec::new();
        for q in queues {
            let ok = !q.is_empty()
                && q != ROOT_QUEUE
                && q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(RmError::BadQueueName(q.clone()));
            }
            if !names.contains(q) {
                names.push(q.clone());
            }
        }
        Ok(RmCore {
            cluster_timestamp,
            last_issued: 0,
            queues: names,
            apps: BTreeMap::new(),
            completed: VecDeque::new(),
            max_completed,
            nodes: BTreeMap::new(),
            node_generation: 0,
            queue_conf: None,
            acls: AclPolicy::default(),
        })
    }

    /// Takes the queue tree of a capacity-scheduler.xml or fair-scheduler.xml
    /// (at start and on `refreshQueues`); its leaves become this RM's
    /// queues. A queue may be added at any time; one may be removed only
    /// when no application in it is unfinished (the refusal names them), as
    /// YARN removes only queues without running applications. Returns
    /// whether the queues changed (the shim then changes its roles).
    pub fn set_queue_conf(&mut self, conf: CapacityScheduler) -> Result<bool, RmError> {
        let leaves: Vec<String> = conf.leaves().map(|q| q.name.clone()).collect();
        let removed: Vec<&String> = self.queues.iter().filter(|q| !leaves.contains(q)).collect();
        for queue in removed {
            let busy: Vec<String> =
                self.apps.values().filter(|a| a.submission.queue == *queue && !a.state.is_final()).map(|a| a.submission.id.to_string()).collect();
            if !busy.is_empty() {
                return Err(RmError::Refused(format!(
                    "queue {queue} cannot be removed while it has unfinished applications ({}); stop it (state STOPPED) and let them end first",
                    busy.join(", ")
                )));
            }
        }
        let changed = leaves != self.queues;
        self.queues = leaves;
        self.queue_conf = Some(conf);
        Ok(changed)
    }

    pub fn queue_conf(&self) -> Option<&CapacityScheduler> {
        self.queue_conf.as_ref()
    }

    pub fn set_acls(&mut self, acls: AclPolicy) {
        self.acls = acls;
    }

    pub fn acls(&self) -> &AclPolicy {
        &self.acls
    }

    /// The application, if `caller` may have `access` to it; else YARN's
    /// refusal.
    pub fn checked(&self, caller: &Caller, id: ApplicationId, access: AppAccess) -> Result<&Application, RmError> {
        let app = self.application(id)?;
        if self.acls.app_access(self.queue_conf.as_ref(), caller, app, access) {
            Ok(app)
        } else {
            tracing::warn!(application_id = %id, user = %caller.user, access = access.java_name(), "refused by the application's ACLs");
            Err(RmError::AccessDenied(crate::acl::app_refusal(caller, access, app)))
        }
    }

    /// Whether `caller` may see all of `app`'s report.
    pub fn may_view(&self, caller: &Caller, app: &Application) -> bool {
        self.acls.app_access(self.queue_conf.as_ref(), caller, app, AppAccess::View)
    }

    /// Whether `caller` may submit to (or move an application into) `queue`.
    pub fn may_submit(&self, caller: &Caller, queue: &str) -> bool {
        self.acls.queue_access(self.queue_conf.as_ref(), caller, queue, QueueAccess::SubmitApplications)
    }

    /// getQueueUserAcls: what `caller` may do in each queue (root first).
    pub fn queue_acls(&self, caller: &Caller) -> Vec<(String, Vec<QueueAccess>)> {
        let names: Vec<String> = match &self.queue_conf {
            Some(tree) => tree.queues.iter().map(|q| q.path.clone()).collect(),
            None => std::iter::once(ROOT_QUEUE.to_owned()).chain(self.queues.iter().cloned()).collect(),
        };
        names
            .into_iter()
            .map(|q| {
                let granted = [QueueAccess::SubmitApplications, QueueAccess::AdministerQueue]
                    .into_iter()
                    .filter(|a| self.acls.queue_access(self.queue_conf.as_ref(), caller, &q, *a))
                    .collect();
                (q.rsplit('.').next().unwrap_or(&q).to_owned(), granted)
            })
            .collect()
    }

    /// Why a queue turns a new application away (STOPPED, or full), in
    /// YARN's words.
    fn refusal(&self, queue: &str, id: ApplicationId) -> Option<String> {
        let q = self.queue_conf.as_ref()?.queue(queue)?;
        if q.state == QueueState::Stopped {
            return Some(format!("Queue {} is STOPPED. Cannot accept submission of application: {id}", q.path));
        }
        let held = self.apps.values().filter(|a| a.submission.queue == queue && !a.state.is_final()).count();
        if held >= q.maximum_applications as usize {
            return Some(format!("Queue {} already has {held} applications, cannot accept submission of application: {id}", q.path));
        }
        None
    }

    pub fn cluster_timestamp(&self) -> i64 {
        self.cluster_timestamp
    }

    /// Whether an application not yet ended is in `queue`.
    pub fn has_unfinished_applications(&self, queue: &str) -> bool {
        self.apps.values().any(|a| a.submission.queue == queue && !a.state.is_final())
    }

    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// The largest container that could ever be placed: the largest
    /// memory and the most cores of any RUNNING node (zero without nodes).
    pub fn maximum_capability(&self) -> Capacity {
        self.nodes.values().filter(|n| n.observed.state == NodeState::Running).fold(Capacity::default(), |m, n| Capacity {
            memory_mb: m.memory_mb.max(n.observed.capability.memory_mb),
            vcores: m.vcores.max(n.observed.capability.vcores),
        })
    }

    /// getNewApplication: a fresh id (the application itself exists only
    /// once submitted, as in YARN).
    pub fn new_application(&mut self) -> Result<(ApplicationId, Capacity), RmError> {
        let next = self.last_issued.checked_add(1).ok_or(RmError::IdsExhausted(self.last_issued))?;
        self.last_issued = next;
        Ok((ApplicationId { cluster_timestamp: self.cluster_timestamp, id: next }, self.maximum_capability()))
    }

    /// submitApplication. A repeated submission of the same id succeeds
    /// and changes nothing (clients retry). An unknown queue is not an
    /// error of the call: the application is FAILED with YARN's
    /// diagnostics, which the client then reports.
    pub fn submit(&mut self, submission: Submission, now_ms: i64) -> Result<AppState, RmError> {
        self.admit(submission, None, now_ms)
    }

    /// Takes a submission the queue placement policy rejected: the
    /// application is recorded FAILED with `why` as its diagnostics, as
    /// YARN rejects it after the call.
    pub fn submit_rejected(&mut self, submission: Submission, why: String, now_ms: i64) -> Result<AppState, RmError> {
        self.admit(submission, Some(why), now_ms)
    }

    fn admit(&mut self, submission: Submission, rejected: Option<String>, now_ms: i64) -> Result<AppState, RmError> {
        let id = submission.id;
        if let Some(app) = self.apps.get(&id) {
            return Ok(app.state);
        }
        if id.cluster_timestamp != self.cluster_timestamp || id.id < 1 || id.id > self.last_issued {
            return Err(RmError::NotIssued { id, ours: self.cluster_timestamp, last: self.last_issued });
        }
        if let Some(asked) = submission.am_resource {
            if asked.memory_mb < 0 || asked.vcores < 0 {
                return Err(RmError::ResourceNegative(asked));
            }
            let max = self.maximum_capability();
            if !submission.unmanaged_am && !asked.fits_in(&max) {
                return Err(RmError::ResourceTooLarge { asked, max });
            }
        }
        let refusal = if rejected.is_some() {
            rejected
        } else if self.queues.contains(&submission.queue) {
            self.refusal(&submission.queue, id)
        } else {
            Some(format!("Application {id} submitted by user {} to unknown queue: {}", submission.user, submission.queue))
        };
        let known_queue = refusal.is_none();
        let diagnostics = refusal.unwrap_or_default();
        self.apps.insert(
            id,
            Application {
                submission,
                state: AppState::New,
                final_status: FinalStatus::Undefined,
                diagnostics,
                submit_ms: now_ms,
                finish_ms: None,
                am: None,
                lifetime_expiry_ms: None,
            },
        );
        self.transition(id, AppState::Submitted, now_ms)?;
        if known_queue {
            self.transition(id, AppState::Accepted, now_ms)?;
            if let Some(app) = self.apps.get_mut(&id) {
                app.diagnostics = "Waiting for an ApplicationMaster container from the pool.".into();
            }
        } else {
            self.transition(id, AppState::Failed, now_ms)?;
        }
        Ok(self.apps.get(&id).map_or(AppState::Failed, |a| a.state))
    }

    pub fn application(&self, id: ApplicationId) -> Result<&Application, RmError> {
        self.apps.get(&id).ok_or(RmError::ApplicationNotFound(id))
    }

    /// getApplications, oldest first.
    pub fn applications(&self, filter: &AppFilter) -> Vec<&Application> {
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        let (types, tags) = (lower(&filter.types), lower(&filter.tags));
        let in_range = |v: Option<i64>, r: Option<(i64, i64)>| match r {
            None => true,
            Some((lo, hi)) => v.is_some_and(|v| v >= lo && v <= hi),
        };
        self.apps
            .values()
            .filter(|a| filter.states.is_empty() || filter.states.contains(&a.state))
            .filter(|a| types.is_empty() || types.contains(&a.submission.application_type.to_lowercase()))
            .filter(|a| filter.queues.is_empty() || filter.queues.contains(&a.submission.queue))
            .filter(|a| filter.users.is_empty() || filter.users.contains(&a.submission.user))
            .filter(|a| tags.is_empty() || a.submission.tags.iter().any(|t| tags.contains(&t.to_lowercase())))
            .filter(|a| filter.name.as_ref().is_none_or(|n| *n == a.submission.name))
            .filter(|a| in_range(Some(a.submit_ms), filter.start_range))
            .filter(|a| in_range(a.finish_ms, filter.finish_range))
            .take(filter.limit.unwrap_or(usize::MAX))
            .collect()
    }

    /// Why an unfinished application waits although the pool offered (a
    /// queue's AM or user limit, in YARN's words), or None once it no
    /// longer does: then an application whose AM was held says its AM is
    /// starting, a running one says nothing, as YARN's reports do.
    pub fn set_waiting_diagnostics(&mut self, id: ApplicationId, why: Option<String>) {
        let Some(app) = self.apps.get_mut(&id).filter(|a| !a.state.is_final()) else { return };
        app.diagnostics = match why {
            Some(why) => why,
            None if app.state == AppState::Accepted => "AM container is launched, waiting for AM container to Register with RM".into(),
            None => String::new(),
        };
    }

    /// forceKillApplication; `diagnostics` is the client's reason, if any.
    pub fn kill(&mut self, id: ApplicationId, diagnostics: Option<&str>, now_ms: i64) -> Result<KillOutcome, RmError> {
        let app = self.apps.get(&id).ok_or(RmError::KillAbsent(id))?;
        if app.state.is_final() {
            return Ok(KillOutcome::AlreadyFinal(app.state));
        }
        self.transition(id, AppState::Killed, now_ms)?;
        if let Some(app) = self.apps.get_mut(&id) {
            app.diagnostics = match diagnostics.filter(|d| !d.is_empty()) {
                Some(d) => format!("Application killed by user. Diagnostics: {d}"),
                None => "Application killed by user.".into(),
            };
        }
        Ok(KillOutcome::Killed)
    }

    /// moveApplicationAcrossQueues, with YARN's refusals: only ACCEPTED or
    /// RUNNING applications move, and only to a configured queue (`root.`
    /// prefix allowed). Returns the queue it left. The books change; the
    /// scheduler keeps serving the application from the queue it adopted
    /// it in until its next attempt.
    pub fn move_to_queue(&mut self, id: ApplicationId, target: &str) -> Result<String, RmError> {
        let app = self.application(id)?;
        if !app.state.is_active() {
            return Err(RmError::Refused(format!("App in {} state cannot be moved.", app.state.java_name())));
        }
        let name = target.strip_prefix("root.").unwrap_or(target);
        if !self.queues.iter().any(|q| q == name) {
            return Err(RmError::Refused(format!("Target queue {target} not found or is not a leaf queue.")));
        }
        let app = self.apps.get_mut(&id).ok_or(RmError::ApplicationNotFound(id))?;
        Ok(std::mem::replace(&mut app.submission.queue, name.to_owned()))
    }

    /// updateApplicationPriority as YARN answers it: an ended application
    /// keeps (and reports) its priority; one the scheduler does not track
    /// yet is refused; otherwise the priority becomes the asked one capped
    /// at [`MAX_APPLICATION_PRIORITY`]. Returns the priority now in force.
    pub fn update_priority(&mut self, id: ApplicationId, wanted: i32) -> Result<i32, RmError> {
        let app = self.application(id)?;
        if app.state.is_final() {
            return Ok(app.submission.priority);
        }
        if !app.state.is_active() {
            return Err(RmError::Refused(format!("Application in {} state cannot update priority.", app.state.java_name())));
        }
        let app = self.apps.get_mut(&id).ok_or(RmError::ApplicationNotFound(id))?;
        app.submission.priority = wanted.min(MAX_APPLICATION_PRIORITY);
        Ok(app.submission.priority)
    }

    /// updateApplicationTimeouts (LIFETIME): YARN's rules after the
    /// protocol checked the state: an expiry in the past is refused. An
    /// ended application keeps what it had.
    pub fn update_lifetime(&mut self, id: ApplicationId, expiry_ms: i64, now_ms: i64) -> Result<(), RmError> {
        let app = self.apps.get_mut(&id).ok_or(RmError::ApplicationNotFound(id))?;
        if app.state.is_final() {
            return Ok(());
        }
        if expiry_ms < now_ms {
            return Err(RmError::Refused(format!(
                "Expire time is less than current time, current-time={} expire-time={}",
                format_iso8601(now_ms),
                format_iso8601(expiry_ms)
            )));
        }
        app.lifetime_expiry_ms = Some(expiry_ms);
        Ok(())
    }

    /// Kills the live applications whose lifetime has passed (YARN's
    /// RMAppLifetimeMonitor); returns them.
    pub fn expire_lifetimes(&mut self, now_ms: i64) -> Vec<ApplicationId> {
        let due: Vec<ApplicationId> = self
            .apps
            .values()
            .filter(|a| !a.state.is_final() && a.lifetime_expiry_ms.is_some_and(|e| e <= now_ms))
            .map(Application::id)
            .collect();
        for id in &due {
            if self.transition(*id, AppState::Killed, now_ms).is_ok() {
                if let Some(app) = self.apps.get_mut(id) {
                    app.diagnostics = "Application is killed by ResourceManager as it has exceeded the lifetime period.".into();
                }
                tracing::info!(application_id = %id, "application killed: its lifetime passed");
            }
        }
        due
    }

    /// The ApplicationMaster registered (ApplicationMasterProtocol).
    pub fn am_registered(&mut self, id: ApplicationId, now_ms: i64) -> Result<(), RmError> {
        self.application(id)?;
        self.transition(id, AppState::Running, now_ms)?;
        if let Some(app) = self.apps.get_mut(&id) {
            app.diagnostics.clear();
        }
        Ok(())
    }

    /// The AM of the current attempt registered at `endpoint`; a new
    /// attempt's AM replaces it, a failed attempt's leaves the report.
    pub fn set_am_endpoint(&mut self, id: ApplicationId, endpoint: Option<AmEndpoint>) -> Result<(), RmError> {
        let app = self.apps.get_mut(&id).ok_or(RmError::ApplicationNotFound(id))?;
        app.am = endpoint;
        Ok(())
    }

    /// The ApplicationMaster unregistered with its outcome.
    pub fn am_finished(&mut self, id: ApplicationId, status: FinalStatus, diagnostics: &str, now_ms: i64) -> Result<(), RmError> {
        // An AM that unregisters ends its application FINISHED, whatever
        // the final status it reports, as YARN's RMAppImpl does (FAILED and
        // KILLED states are for applications whose attempts failed or that
        // were killed); clients read the outcome from the final status.
        // A final state always has a final status (see the invariants).
        if status == FinalStatus::Undefined {
            return Err(RmError::UndefinedFinalStatus(id));
        }
        let state = AppState::Finished;
        self.application(id)?;
        self.transition(id, state, now_ms)?;
        if let Some(app) = self.apps.get_mut(&id) {
            app.final_status = status;
            app.diagnostics = diagnostics.to_owned();
        }
        Ok(())
    }

    /// The application failed outside its AM's control (AM lost, …).
    pub fn fail(&mut self, id: ApplicationId, diagnostics: &str, now_ms: i64) -> Result<(), RmError> {
        self.application(id)?;
        self.transition(id, AppState::Failed, now_ms)?;
        if let Some(app) = self.apps.get_mut(&id) {
            app.diagnostics = diagnostics.to_owned();
        }
        Ok(())
    }

    fn transition(&mut self, id: ApplicationId, to: AppState, now_ms: i64) -> Result<(), RmError> {
        let app = self.apps.get_mut(&id).ok_or(RmError::ApplicationNotFound(id))?;
        if !app.state.may_become(to) {
            return Err(RmError::BadTransition { id, from: app.state, to });
        }
        tracing::info!(application_id = %id, from = ?app.state, to = ?to, "application state");
        app.state = to;
        if to.is_final() {
            app.finish_ms = Some(now_ms);
            app.final_status = match to {
                AppState::Killed => FinalStatus::Killed,
                AppState::Failed => FinalStatus::Failed,
                _ => FinalStatus::Succeeded,
            };
            self.completed.push_back(id);
            while self.completed.len() > self.max_completed {
                if let Some(old) = self.completed.pop_front() {
                    self.apps.remove(&old);
                }
            }
        }
        Ok(())
    }

    /// Replaces the node view with what the broker reports now. Nodes the
    /// broker no longer lists stay, as LOST, so clients see where they went.
    pub fn observe_nodes(&mut self, observed: Vec<ObservedNode>, now_ms: i64) {
        let mut seen = std::collections::BTreeSet::new();
        for o in observed {
            seen.insert(o.agent_id.clone());
            let changed = self.nodes.get(&o.agent_id).is_none_or(|n| n.observed.state != o.state);
            self.node_generation += u64::from(changed);
            self.nodes.insert(o.agent_id.clone(), Node { observed: o, last_report_ms: now_ms });
        }
        for (id, node) in self.nodes.iter_mut() {
            if !seen.contains(id) && node.observed.state != NodeState::Lost {
                self.node_generation += 1;
                node.observed.state = NodeState::Lost;
                node.observed.health_report = "no longer known to the broker".into();
                node.observed.containers = 0;
                node.observed.used = Capacity::default();
                node.last_report_ms = now_ms;
            }
        }
    }

    /// Changes with every node that appears or changes state.
    pub fn node_generation(&self) -> u64 {
        self.node_generation
    }

    /// getClusterNodes; an empty filter means every state, as in YARN.
    pub fn nodes(&self, states: &[NodeState]) -> Vec<&Node> {
        self.nodes.values().filter(|n| states.is_empty() || states.contains(&n.observed.state)).collect()
    }

    pub fn cluster_metrics(&self) -> ClusterMetrics {
        let count = |s: NodeState| self.nodes.values().filter(|n| n.observed.state == s).count() as i32;
        let (lost, decommissioned) = (count(NodeState::Lost), count(NodeState::Decommissioned));
        ClusterMetrics {
            // As YARN counts them: lost and decommissioned nodes are not
            // node managers any more.
            node_managers: self.nodes.len() as i32 - lost - decommissioned,
            active: count(NodeState::Running),
            lost,
            unhealthy: count(NodeState::Unhealthy),
            decommissioning: count(NodeState::Decommissioning),
            decommissioned,
        }
    }

    /// getQueueInfo. `root` is the parent of every configured queue, which
    /// share it equally (each maps to a broker role; the broker's weights,
    /// not this book, decide real shares).
    pub fn queue_info(&self, name: &str, with_apps: bool, with_children: bool, recursive: bool) -> Result<QueueReport, RmError> {
        if let Some(conf) = &self.queue_conf {
            return self.conf_queue_info(conf, name, with_apps, with_children, recursive);
        }
        if name == ROOT_QUEUE {
            let children = if with_children || recursive {
                self.queues.iter().map(|q| self.leaf(q, with_apps)).collect()
            } else {
                Vec::new()
            };
            let all: Vec<&Application> = self.apps.values().collect();
            return Ok(QueueReport {
                name: ROOT_QUEUE.into(),
                path: ROOT_QUEUE.into(),
                capacity: 1.0,
                maximum_capacity: 1.0,
                current_capacity: 0.0,
                children,
                applications: if with_apps { all.iter().map(|a| (*a).clone()).collect() } else { Vec::new() },
                stats: stats(&all),
                stopped: false,
            });
        }
        let name = name.strip_prefix("root.").unwrap_or(name);
        if !self.queues.iter().any(|q| q == name) {
            return Err(RmError::UnknownQueue(name.to_owned()));
        }
        Ok(self.leaf(name, with_apps))
    }

    /// getQueueInfo from a capacity-scheduler.xml's tree: any queue by
    /// path or leaf name, its figures as the file says, applications and
    /// counts over the leaves below it.
    fn conf_queue_info(&self, conf: &CapacityScheduler, name: &str, with_apps: bool, with_children: bool, recursive: bool) -> Result<QueueReport, RmError> {
        let q = conf.queue(name).or_else(|| conf.queue(&format!("{ROOT_QUEUE}.{name}"))).ok_or_else(|| RmError::UnknownQueue(name.to_owned()))?;
        let leaves: Vec<&str> = conf.leaves().filter(|l| l.path == q.path || l.path.starts_with(&format!("{}.", q.path))).map(|l| l.name.as_str()).collect();
        let apps: Vec<&Application> = self.apps.values().filter(|a| leaves.contains(&a.submission.queue.as_str())).collect();
        let children = if with_children || recursive {
            q.children
                .iter()
                .map(|c| self.conf_queue_info(conf, c, with_apps && recursive, recursive, recursive))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        Ok(QueueReport {
            name: q.name.clone(),
            path: q.path.clone(),
            capacity: q.capacity as f32,
            maximum_capacity: q.maximum_capacity as f32,
            current_capacity: 0.0,
            children,
            applications: if with_apps { apps.iter().map(|a| (*a).clone()).collect() } else { Vec::new() },
            stats: stats(&apps),
            stopped: q.state == QueueState::Stopped,
        })
    }

    fn leaf(&self, queue: &str, with_apps: bool) -> QueueReport {
        let apps: Vec<&Application> = self.apps.values().filter(|a| a.submission.queue == queue).collect();
        QueueReport {
            name: queue.to_owned(),
            path: format!("{ROOT_QUEUE}.{queue}"),
            capacity: 1.0 / self.queues.len() as f32,
            maximum_capacity: 1.0,
            // Nothing runs in a YARN container yet, so nothing is used.
            current_capacity: 0.0,
            children: Vec::new(),
            applications: if with_apps { apps.iter().map(|a| (*a).clone()).collect() } else { Vec::new() },
            stats: stats(&apps),
            stopped: false,
        }
    }

    /// Checks the invariants in the module comment.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut finals = 0;
        for (id, app) in &self.apps {
            if *id != app.id() {
                return Err(format!("{id} is filed under another id"));
            }
            if app.state.is_final() != app.finish_ms.is_some() {
                return Err(format!("{id}: state {:?} but finish time {:?}", app.state, app.finish_ms));
            }
            if app.state.is_final() == (app.final_status == FinalStatus::Undefined) {
                return Err(format!("{id}: state {:?} with final status {:?}", app.state, app.final_status));
            }
            if !self.queues.contains(&app.submission.queue) && !app.state.is_final() {
                return Err(format!("{id} is {:?} in unknown queue {}", app.state, app.submission.queue));
            }
            if id.cluster_timestamp != self.cluster_timestamp || id.id > self.last_issued {
                return Err(format!("{id} was never issued"));
            }
            finals += usize::from(app.state.is_final());
        }
        if finals > self.max_completed {
            return Err(format!("{finals} final applications kept, more than {}", self.max_completed));
        }
        Ok(())
    }
}

fn stats(apps: &[&Application]) -> QueueStats {
    let count = |f: &dyn Fn(AppState) -> bool| apps.iter().filter(|a| f(a.state)).count() as i64;
    QueueStats {
        submitted: apps.len() as i64,
        pending: count(&|s| matches!(s, AppState::New | AppState::Submitted | AppState::Accepted)),
        running: count(&|s| s == AppState::Running),
        completed: count(&|s| s == AppState::Finished),
        killed: count(&|s| s == AppState::Killed),
        failed: count(&|s| s == AppState::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TS: i64 = 1_700_000_000_000;

    fn core() -> RmCore {
        let mut c = RmCore::new(TS, &["default".to_string(), "batch".to_string()], 3).unwrap();
        c.observe_nodes(vec![node("a1", "host1", 4096, 4, NodeState::Running)], 0);
        c
    }

    fn node(agent: &str, host: &str, mem: i64, cores: i32, state: NodeState) -> ObservedNode {
        ObservedNode {
            agent_id: agent.into(),
            node_id: NodeId { host: host.into(), port: 5051 },
            http_address: format!("{host}:5051"),
            capability: Capacity { memory_mb: mem, vcores: cores },
            used: Capacity::default(),
            containers: 0,
            state,
            health_report: String::new(),
            decommission_deadline_ms: None,
        }
    }

    fn submission(id: ApplicationId, queue: &str) -> Submission {
        Submission {
            id,
            name: "pi".into(),
            queue: queue.into(),
            user: "alice".into(),
            application_type: "SPARK".into(),
            tags: vec!["Nightly".into()],
            priority: 0,
            am_resource: Some(Capacity { memory_mb: 1408, vcores: 1 }),
            max_attempts: 1,
            am_launch: None,
            unmanaged_am: false,
        }
    }

    fn submitted(c: &mut RmCore, queue: &str, now: i64) -> ApplicationId {
        let (id, _) = c.new_application().unwrap();
        c.submit(submission(id, queue), now).unwrap();
        id
    }

    #[test]
    fn ids_count_up_from_one_under_the_cluster_timestamp() {
        let mut c = core();
        let (a, max) = c.new_application().unwrap();
        let (b, _) = c.new_application().unwrap();
        assert_eq!(a.to_string(), format!("application_{TS}_0001"));
        assert_eq!(b.id, 2);
        assert_eq!(max, Capacity { memory_mb: 4096, vcores: 4 });
        // An id alone is not an application.
        assert_eq!(c.application(a), Err(RmError::ApplicationNotFound(a)));
    }

    /// A flat capacity-scheduler.xml of these leaves, equal capacities.
    fn flat_tree(leaves: &[&str]) -> CapacityScheduler {
        let share = format!("{}", 100.0 / leaves.len() as f64);
        let capacities: Vec<String> = leaves.iter().map(|l| format!("root.{l}.capacity")).collect();
        let joined = leaves.join(",");
        let mut pairs = vec![("root.queues", joined.as_str())];
        pairs.extend(capacities.iter().map(|k| (k.as_str(), share.as_str())));
        CapacityScheduler::from_properties(&crate::capacity_scheduler::tests::props(&pairs)).unwrap()
    }

    #[test]
    fn a_reloaded_tree_adds_queues_and_removes_only_those_without_unfinished_applications() {
        let mut c = core();
        assert_eq!(c.set_queue_conf(flat_tree(&["default", "batch"])), Ok(false), "the same queues");
        assert_eq!(c.set_queue_conf(flat_tree(&["default", "batch", "more"])), Ok(true));
        assert_eq!(c.queues(), ["default", "batch", "more"]);
        let waiting = submitted(&mut c, "more", 10);
        let err = c.set_queue_conf(flat_tree(&["default", "batch"])).unwrap_err().to_string();
        assert!(err.contains(&format!("queue more cannot be removed while it has unfinished applications ({waiting})")), "{err}");
        assert_eq!(c.queues(), ["default", "batch", "more"], "a refused reload changes nothing");
        c.kill(waiting, None, 20).unwrap();
        assert_eq!(c.set_queue_conf(flat_tree(&["default", "batch"])), Ok(true));
        // The ended application stays listed, in the queue it ran in.
        assert_eq!(c.application(waiting).unwrap().submission.queue, "more");
        c.check_invariants().unwrap();
        // A submission to the removed queue is refused as unknown.
        let late = submitted(&mut c, "more", 30);
        assert_eq!(c.application(late).unwrap().state, AppState::Failed);
        c.check_invariants().unwrap();
    }

    #[test]
    fn a_submission_to_a_known_queue_is_accepted_and_waits() {
        let mut c = core();
        let id = submitted(&mut c, "default", 10);
        let app = c.application(id).unwrap();
        assert_eq!(app.state, AppState::Accepted);
        assert_eq!(app.final_status, FinalStatus::Undefined);
        assert_eq!(app.submit_ms, 10);
        assert_eq!(app.finish_ms, None);
        // Resubmitting (a client retry) changes nothing.
        let before = app.clone();
        assert_eq!(c.submit(submission(id, "batch"), 99), Ok(AppState::Accepted));
        assert_eq!(c.application(id).unwrap(), &before);
        c.check_invariants().unwrap();
    }

    #[test]
    fn a_submission_to_an_unknown_queue_fails_with_yarns_diagnostics() {
        let mut c = core();
        let id = submitted(&mut c, "nope", 5);
        let app = c.application(id).unwrap();
        assert_eq!(app.state, AppState::Failed);
        assert_eq!(app.final_status, FinalStatus::Failed);
        assert_eq!(app.diagnostics, format!("Application {id} submitted by user alice to unknown queue: nope"));
        assert_eq!(app.finish_ms, Some(5));
        c.check_invariants().unwrap();
    }

    #[test]
    fn submissions_that_cannot_be_valid_are_refused_and_change_nothing() {
        let mut c = core();
        let (id, _) = c.new_application().unwrap();
        let foreign = ApplicationId { cluster_timestamp: TS + 1, id: 1 };
        assert!(matches!(c.submit(submission(foreign, "default"), 0), Err(RmError::NotIssued { .. })));
        let future = ApplicationId { cluster_timestamp: TS, id: 2 };
        assert!(matches!(c.submit(submission(future, "default"), 0), Err(RmError::NotIssued { .. })));
        let mut big = submission(id, "default");
        big.am_resource = Some(Capacity { memory_mb: 8192, vcores: 1 });
        let err = c.submit(big, 0).unwrap_err();
        assert_eq!(err.java_class(), "org.apache.hadoop.yarn.exceptions.InvalidResourceRequestException");
        let mut negative = submission(id, "default");
        negative.am_resource = Some(Capacity { memory_mb: -1, vcores: 1 });
        assert!(matches!(c.submit(negative, 0), Err(RmError::ResourceNegative(_))));
        assert!(c.applications(&AppFilter::default()).is_empty());
        // The id is still usable.
        assert_eq!(c.submit(submission(id, "default"), 0), Ok(AppState::Accepted));
    }

    #[test]
    fn without_running_nodes_nothing_fits() {
        let mut c = RmCore::new(TS, &["default".to_string()], 10).unwrap();
        let (id, max) = c.new_application().unwrap();
        assert_eq!(max, Capacity::default());
        assert!(matches!(c.submit(submission(id, "default"), 0), Err(RmError::ResourceTooLarge { .. })));
        c.observe_nodes(vec![node("a", "h", 2048, 2, NodeState::Lost)], 0);
        assert_eq!(c.maximum_capability(), Capacity::default());
    }

    #[test]
    fn kill_ends_a_live_application_and_is_a_no_op_on_an_ended_one() {
        let mut c = core();
        let id = submitted(&mut c, "default", 1);
        assert_eq!(c.kill(id, None, 7), Ok(KillOutcome::Killed));
        let app = c.application(id).unwrap();
        assert_eq!((app.state, app.final_status, app.finish_ms), (AppState::Killed, FinalStatus::Killed, Some(7)));
        assert_eq!(app.diagnostics, "Application killed by user.");
        assert_eq!(c.kill(id, None, 8), Ok(KillOutcome::AlreadyFinal(AppState::Killed)));
        assert_eq!(c.application(id).unwrap().finish_ms, Some(7));
        let absent = ApplicationId { cluster_timestamp: TS, id: 99 };
        let err = c.kill(absent, None, 9).unwrap_err();
        assert_eq!(err.to_string(), format!("Trying to kill an absent application {absent}"));
        assert_eq!(err.java_class(), "org.apache.hadoop.yarn.exceptions.ApplicationNotFoundException");
        let id2 = submitted(&mut c, "default", 1);
        c.kill(id2, Some("by the operator"), 2).unwrap();
        assert_eq!(c.application(id2).unwrap().diagnostics, "Application killed by user. Diagnostics: by the operator");
    }

    #[test]
    fn unknown_applications_get_the_rms_own_message() {
        let c = core();
        let id = ApplicationId { cluster_timestamp: TS, id: 3 };
        let err = c.application(id).unwrap_err();
        assert_eq!(err.java_class(), "org.apache.hadoop.yarn.exceptions.ApplicationNotFoundException");
        assert_eq!(
            err.to_string(),
            format!("Application with id '{id}' doesn't exist in RM. Please check that the job submission was successful.")
        );
    }

    #[test]
    fn the_am_moves_an_application_through_running_to_its_outcome() {
        let mut c = core();
        let ok = submitted(&mut c, "default", 0);
        c.am_registered(ok, 1).unwrap();
        assert_eq!(c.application(ok).unwrap().state, AppState::Running);
        c.am_finished(ok, FinalStatus::Succeeded, "", 2).unwrap();
        assert_eq!(c.application(ok).unwrap().state, AppState::Finished);
        assert_eq!(c.application(ok).unwrap().final_status, FinalStatus::Succeeded);
        let bad = submitted(&mut c, "default", 0);
        c.am_registered(bad, 1).unwrap();
        c.am_finished(bad, FinalStatus::Failed, "boom", 2).unwrap();
        assert!(matches!(c.am_finished(bad, FinalStatus::Undefined, "", 2), Err(RmError::UndefinedFinalStatus(_))));
        // FINISHED with final status FAILED, as YARN reports an AM that
        // unregistered with FAILED (DistributedShell's client checks both).
        assert_eq!((c.application(bad).unwrap().state, c.application(bad).unwrap().diagnostics.as_str()), (AppState::Finished, "boom"));
        assert_eq!(c.application(bad).unwrap().final_status, FinalStatus::Failed);
        // No way back from a final state, and no registering twice.
        assert!(matches!(c.am_registered(ok, 3), Err(RmError::BadTransition { .. })));
        let accepted = submitted(&mut c, "default", 0);
        assert!(matches!(c.am_finished(accepted, FinalStatus::Succeeded, "", 3), Err(RmError::BadTransition { .. })));
        assert_eq!(c.application(accepted).unwrap().state, AppState::Accepted);
        c.fail(accepted, "AM container lost", 4).unwrap();
        assert_eq!(c.application(accepted).unwrap().state, AppState::Failed);
    }

    #[test]
    fn filters_select_by_state_type_queue_user_tag_name_time_and_limit() {
        let mut c = RmCore::new(TS, &["default".to_string(), "batch".to_string()], 100).unwrap();
        c.observe_nodes(vec![node("a1", "host1", 4096, 4, NodeState::Running)], 0);
        let a = submitted(&mut c, "default", 10);
        let b = submitted(&mut c, "batch", 20);
        let k = submitted(&mut c, "default", 30);
        c.kill(k, None, 40).unwrap();
        let ids = |f: AppFilter| c.applications(&f).iter().map(|a| a.id()).collect::<Vec<_>>();
        assert_eq!(ids(AppFilter::default()), [a, b, k]);
        assert_eq!(ids(AppFilter { states: vec![AppState::Accepted], ..Default::default() }), [a, b]);
        assert_eq!(ids(AppFilter { states: vec![AppState::Killed], ..Default::default() }), [k]);
        assert_eq!(ids(AppFilter { types: vec!["spark".into()], ..Default::default() }), [a, b, k]);
        assert!(ids(AppFilter { types: vec!["MAPREDUCE".into()], ..Default::default() }).is_empty());
        assert_eq!(ids(AppFilter { queues: vec!["batch".into()], ..Default::default() }), [b]);
        assert!(ids(AppFilter { users: vec!["bob".into()], ..Default::default() }).is_empty());
        assert_eq!(ids(AppFilter { tags: vec!["nightly".into()], ..Default::default() }).len(), 3);
        assert_eq!(ids(AppFilter { name: Some("pi".into()), ..Default::default() }).len(), 3);
        assert_eq!(ids(AppFilter { start_range: Some((15, 35)), ..Default::default() }), [b, k]);
        assert_eq!(ids(AppFilter { finish_range: Some((0, 100)), ..Default::default() }), [k]);
        assert_eq!(ids(AppFilter { limit: Some(2), ..Default::default() }), [a, b]);
    }

    #[test]
    fn nodes_follow_the_broker_and_vanished_ones_are_lost() {
        let mut c = core();
        c.observe_nodes(vec![node("a1", "host1", 4096, 4, NodeState::Running), node("a2", "host2", 8192, 2, NodeState::Running)], 5);
        assert_eq!(c.maximum_capability(), Capacity { memory_mb: 8192, vcores: 4 });
        assert_eq!(c.cluster_metrics(), ClusterMetrics { node_managers: 2, active: 2, lost: 0, unhealthy: 0, decommissioning: 0, decommissioned: 0 });
        c.observe_nodes(vec![node("a1", "host1", 4096, 4, NodeState::Running)], 6);
        assert_eq!(c.nodes(&[NodeState::Running]).len(), 1);
        let lost = c.nodes(&[NodeState::Lost]);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].observed.node_id.host, "host2");
        assert_eq!(lost[0].last_report_ms, 6);
        assert_eq!(c.nodes(&[]).len(), 2);
        assert_eq!(c.cluster_metrics(), ClusterMetrics { node_managers: 1, active: 1, lost: 1, unhealthy: 0, decommissioning: 0, decommissioned: 0 });
        assert_eq!(c.maximum_capability(), Capacity { memory_mb: 4096, vcores: 4 });
    }

    #[test]
    fn queues_are_children_of_root_with_equal_shares_and_their_own_counts() {
        let mut c = core();
        submitted(&mut c, "default", 0);
        let k = submitted(&mut c, "batch", 0);
        c.kill(k, None, 1).unwrap();
        let root = c.queue_info("root", false, true, true).unwrap();
        assert_eq!(root.children.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(), ["default", "batch"]);
        assert_eq!(root.children[0].capacity, 0.5);
        assert_eq!(root.children[0].path, "root.default");
        assert_eq!(root.stats.submitted, 2);
        let batch = c.queue_info("root.batch", true, false, false).unwrap();
        assert_eq!((batch.stats.killed, batch.stats.pending, batch.applications.len()), (1, 0, 1));
        let err = c.queue_info("nope", false, false, false).unwrap_err();
        assert_eq!(err.to_string(), "java.io.IOException: Unknown queue: nope");
        assert!(RmCore::new(TS, &[], 1).is_err());
        assert!(RmCore::new(TS, &["root".to_string()], 1).is_err());
        assert!(RmCore::new(TS, &["a.b".to_string()], 1).is_err());
    }

    #[test]
    fn only_the_newest_completed_applications_are_kept() {
        let mut c = core(); // keeps 3
        let ids: Vec<_> = (0..5).map(|i| submitted(&mut c, "default", i)).collect();
        for (i, id) in ids.iter().enumerate() {
            c.kill(*id, None, 10 + i as i64).unwrap();
        }
        let kept: Vec<_> = c.applications(&AppFilter::default()).iter().map(|a| a.id()).collect();
        assert_eq!(kept, ids[2..]);
        c.check_invariants().unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        New,
        Submit(usize, bool),
        Kill(usize),
        Register(usize),
        Finish(usize, u8),
        Fail(usize),
        Nodes(Vec<(u8, i64, i32, bool)>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::New),
            (0..8usize, any::<bool>()).prop_map(|(i, q)| Op::Submit(i, q)),
            (0..8usize).prop_map(Op::Kill),
            (0..8usize).prop_map(Op::Register),
            (0..8usize, 0..4u8).prop_map(|(i, s)| Op::Finish(i, s)),
            (0..8usize).prop_map(Op::Fail),
            proptest::collection::vec((0..3u8, 0..10_000i64, 0..8i32, any::<bool>()), 0..3).prop_map(Op::Nodes),
        ]
    }

    proptest! {
        /// Any sequence of calls keeps the invariants, failed calls change
        /// nothing, and final states never change.
        #[test]
        fn any_call_sequence_keeps_the_books_consistent(ops in proptest::collection::vec(op(), 1..60)) {
            let mut c = RmCore::new(TS, &["default".to_string()], 4).unwrap();
            let mut ids: Vec<ApplicationId> = Vec::new();
            let pick = |ids: &[ApplicationId], i: usize| ids.get(i).copied().unwrap_or(ApplicationId { cluster_timestamp: TS, id: 1000 + i as i32 });
            for (now, op) in ops.into_iter().enumerate() {
                let now = now as i64;
                let before: Vec<Application> = c.applications(&AppFilter::default()).into_iter().cloned().collect();
                let failed = match op {
                    Op::New => { ids.push(c.new_application().unwrap().0); false }
                    Op::Submit(i, known) => {
                        let mut s = submission(pick(&ids, i), if known { "default" } else { "other" });
                        s.am_resource = Some(Capacity { memory_mb: 512, vcores: 1 });
                        c.submit(s, now).is_err()
                    }
                    Op::Kill(i) => c.kill(pick(&ids, i), None, now).is_err(),
                    Op::Register(i) => c.am_registered(pick(&ids, i), now).is_err(),
                    Op::Finish(i, s) => {
                        let s = [FinalStatus::Undefined, FinalStatus::Succeeded, FinalStatus::Failed, FinalStatus::Killed][s as usize];
                        c.am_finished(pick(&ids, i), s, "done", now).is_err()
                    }
                    Op::Fail(i) => c.fail(pick(&ids, i), "lost", now).is_err(),
                    Op::Nodes(ns) => {
                        let observed = ns.into_iter().map(|(a, mem, cores, up)| node(&format!("a{a}"), &format!("h{a}"), mem, cores, if up { NodeState::Running } else { NodeState::Lost })).collect();
                        c.observe_nodes(observed, now);
                        false
                    }
                };
                prop_assert!(c.check_invariants().is_ok(), "{:?}", c.check_invariants());
                let after: Vec<Application> = c.applications(&AppFilter::default()).into_iter().cloned().collect();
                if failed {
                    prop_assert_eq!(&before, &after);
                }
                for old in before.iter().filter(|a| a.state.is_final()) {
                    if let Some(new) = after.iter().find(|a| a.id() == old.id()) {
                        prop_assert_eq!(old, new);
                    }
                }
            }
        }
    }
}

/// Hadoop's `Times.formatISO8601` (`yyyy-MM-dd'T'HH:mm:ss.SSSZ`), in UTC.
pub fn format_iso8601(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+0000", rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000)
}

/// Hadoop's `Times.parseISO8601ToLocalTimeInMillis`: `yyyy-MM-dd'T'HH:mm:ss.SSSZ`
/// with a `+HHMM`/`-HHMM` zone; None if the text is not in that form.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 28 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok()).flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let sign = match b[23] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (zh, zm) = (num(24..26)?, num(26..28)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 || zm > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let local = (((days * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms;
    Some(local - sign * (zh * 60 + zm) * 60_000)
}

/// Howard Hinnant's civil_from_days / days_from_civil.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod iso8601_tests {
    use super::*;

    #[test]
    fn iso8601_round_trips_and_honours_the_zone() {
        assert_eq!(format_iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123+0000");
        assert_eq!(parse_iso8601("2023-11-14T22:13:20.123+0000"), Some(1_700_000_000_123));
        assert_eq!(parse_iso8601("2023-11-15T00:13:20.123+0200"), Some(1_700_000_000_123));
        assert_eq!(parse_iso8601("2000-02-29T00:00:00.000-0100"), Some(951_786_000_000));
        for bad in ["", "2023-11-14 22:13:20.123+0000", "2023-13-14T22:13:20.123+0000", "2023-11-14T22:13:20+0000", "x023-11-14T22:13:20.123+0000"] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
