//! YARN's access control: who may submit to a queue, administer it, see
//! or change an application, and call the admin protocol.
//!
//! The rules are Hadoop's, so an administrator's `yarn-site.xml` and
//! `capacity-scheduler.xml` mean the same here:
//!
//! - An ACL is Hadoop's `AccessControlList` text: `*` is everyone;
//!   otherwise users, a space, groups, each a comma-separated list
//!   (`alice,bob admins`; ` admins` is the group alone; ` ` is nobody).
//! - With `yarn.acl.enable` off (Weir's `yarn-shim.acl.enable`, off by
//!   default, as YARN's) every application and queue check passes; the
//!   admin ACL (`yarn.admin.acl`, `*` by default) guards the admin
//!   protocol either way, as YARN's AdminService does.
//! - A queue ACL holds on the queue and every queue below it: a user may
//!   submit to a queue when the queue or any parent lets them submit or
//!   administer (root's ACLs are `*` unless set, others nobody).
//! - An application may be changed (killed, moved, reprioritised, its
//!   attempts failed, containers signalled) by its owner, a YARN admin,
//!   an administrator of its queue, or whoever its MODIFY_APP ACL names
//!   (set by the client in the AM's launch context); seen likewise with
//!   VIEW_APP. Someone who may not see it gets a report without its
//!   host, tracking URL, diagnostics and usage, as YARN answers.
//!
//! Everything here is pure: the caller's groups are read by the shell.

use std::collections::BTreeSet;

use crate::capacity_scheduler::CapacityScheduler;
use crate::rm_core::Application;
use weir_yarn_api::records as r;

/// One `AccessControlList`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    everyone: bool,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
}

impl Acl {
    /// Reads Hadoop's ACL text. Nothing in it can be wrong: unknown names
    /// simply match nobody, as in Hadoop.
    pub fn parse(text: &str) -> Acl {
        if text.trim() == "*" {
            return Acl { everyone: true, ..Acl::default() };
        }
        let names = |list: &str| list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
        // Hadoop splits the untrimmed text at its first space: what is
        // before are users, what is after groups.
        let (users, groups) = text.split_once(' ').unwrap_or((text, ""));
        Acl { everyone: false, users: names(users), groups: names(groups) }
    }

    pub fn everyone() -> Acl {
        Acl::parse("*")
    }

    pub fn allows(&self, caller: &Caller) -> bool {
        self.everyone || self.users.contains(&caller.user) || caller.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// Who calls: the short user name (`alice` of `alice/host@REALM`) and
/// their groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub groups: Vec<String>,
}

impl Caller {
    pub fn new(user: &str, groups: Vec<String>) -> Caller {
        Caller { user: short_name(user).to_owned(), groups }
    }
}

/// Hadoop's short name of a user (`HadoopKerberosName` with the default
/// rules: the first component).
pub fn short_name(user: &str) -> &str {
    user.split(['/', '@']).next().unwrap_or(user)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAccess {
    SubmitApplications,
    AdministerQueue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppAccess {
    View,
    Modify,
}

impl AppAccess {
    /// YARN's name of the operation, as its refusals say.
    pub fn java_name(self) -> &'static str {
        match self {
            AppAccess::View => "VIEW_APP",
            AppAccess::Modify => "MODIFY_APP",
        }
    }
}

/// The switch and the admin ACL (`yarn-shim.acl.enable`,
/// `yarn-shim.admin.acl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclPolicy {
    pub enabled: bool,
    pub admin: Acl,
}

impl Default for AclPolicy {
    /// YARN's defaults: ACLs off, everyone an admin.
    fn default() -> AclPolicy {
        AclPolicy { enabled: false, admin: Acl::everyone() }
    }
}

impl AclPolicy {
    /// The admin protocol: the admin ACL, whether or not ACLs are enabled.
    pub fn is_admin(&self, caller: &Caller) -> bool {
        self.admin.allows(caller)
    }

    /// Whether `caller` has `access` to `queue` (a leaf name or a path)
    /// or any queue above it. Without a queue tree every queue is root's
    /// child and root's ACLs are `*`.
    pub fn queue_access(&self, queues: Option<&CapacityScheduler>, caller: &Caller, queue: &str, access: QueueAccess) -> bool {
        if !self.enabled {
            return true;
        }
        let Some(tree) = queues else { return true };
        let Some(mut path) = tree.queue(queue).map(|q| q.path.clone()) else {
            // An unknown queue is refused for being unknown, elsewhere.
            return true;
        };
        loop {
            if let Some(q) = tree.queue(&path) {
                let administer = Acl::parse(&q.acl_administer_queue).allows(caller);
                let submit = Acl::parse(&q.acl_submit_applications).allows(caller);
                let granted = match access {
                    QueueAccess::AdministerQueue => administer,
                    QueueAccess::SubmitApplications => submit || administer,
                };
                if granted {
                    return true;
                }
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent.to_owned(),
                None => return false,
            }
        }
    }

    /// Whether `caller` may see or change `app`.
    pub fn app_access(&self, queues: Option<&CapacityScheduler>, caller: &Caller, app: &Application, access: AppAccess) -> bool {
        if !self.enabled || self.is_admin(caller) || short_name(&app.submission.user) == caller.user {
            return true;
        }
        let wanted = match access {
            AppAccess::View => r::ApplicationAccessTypeProto::AppaccessViewApp,
            AppAccess::Modify => r::ApplicationAccessTypeProto::AppaccessModifyApp,
        };
        let named = app
            .submission
            .am_launch
            .as_ref()
            .map(|l| l.application_ac_ls.iter())
            .into_iter()
            .flatten()
            .filter(|m| m.access_type == Some(wanted as i32))
            .any(|m| Acl::parse(m.acl.as_deref().unwrap_or(" ")).allows(caller));
        named || self.queue_access(queues, caller, &app.submission.queue, QueueAccess::AdministerQueue)
    }
}

/// YARN's refusal of an application operation.
pub fn app_refusal(caller: &Caller, access: AppAccess, app: &Application) -> String {
    format!("User {} cannot perform operation {} on {}", caller.user, access.java_name(), app.submission.id)
}

/// YARN's refusal of a submission.
pub fn submit_refusal(caller: &Caller, app: &Application) -> String {
    format!("User {} does not have permission to submit {} to queue {}", caller.user, app.submission.id, app.submission.queue)
}

/// What a report keeps for someone who may not see the application
/// (YARN's `ClientRMService` with `allowAccess` false): who, what, where
/// and its state, nothing that leads to the AM or tells what it did.
pub fn redact(report: &mut r::ApplicationReportProto) {
    const NA: &str = "N/A";
    report.host = Some(NA.into());
    report.rpc_port = Some(-1);
    report.client_to_am_token = None;
    report.tracking_url = Some(NA.into());
    report.original_tracking_url = Some(NA.into());
    report.diagnostics = Some(NA.into());
    report.app_resource_usage = None;
    report.current_application_attempt_id = None;
    report.am_rm_token = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rm_core::Submission;
    use weir_yarn_api::ids::ApplicationId;

    fn caller(user: &str, groups: &[&str]) -> Caller {
        Caller::new(user, groups.iter().map(|g| g.to_string()).collect())
    }

    #[test]
    fn acl_text_reads_as_hadoop_reads_it() {
        let alice = caller("alice", &["staff"]);
        let bob = caller("bob@EXAMPLE.COM", &["admins"]);
        assert!(Acl::parse("*").allows(&alice) && Acl::parse(" * ").allows(&bob));
        assert!(!Acl::parse(" ").allows(&alice) && !Acl::parse("").allows(&alice));
        assert!(Acl::parse("alice,carol").allows(&alice) && !Acl::parse("alice,carol").allows(&bob));
        // Groups after the first space; a leading space means groups only.
        assert!(Acl::parse(" admins").allows(&bob) && !Acl::parse(" admins").allows(&alice));
        assert!(!Acl::parse("admins").allows(&bob), "a name before the space is a user");
        assert!(Acl::parse("carol staff,ops").allows(&alice));
        assert_eq!(bob.user, "bob", "callers are known by their short name");
    }

    fn tree(extra: &[(&str, &str)]) -> CapacityScheduler {
        let mut props = vec![
            ("root.queues", "prod,eng"),
            ("root.prod.capacity", "50"),
            ("root.eng.capacity", "50"),
            ("root.eng.queues", "adhoc"),
            ("root.eng.adhoc.capacity", "100"),
        ];
        props.extend_from_slice(extra);
        CapacityScheduler::from_properties(&crate::capacity_scheduler::tests::props(&props)).expect("a valid tree")
    }

    fn app(user: &str, queue: &str, acls: &[(r::ApplicationAccessTypeProto, &str)]) -> Application {
        let mut s = Submission::for_test(ApplicationId { cluster_timestamp: 1, id: 1 });
        s.user = user.into();
        s.queue = queue.into();
        s.am_launch = Some(r::ContainerLaunchContextProto {
            application_ac_ls: acls
                .iter()
                .map(|(t, a)| r::ApplicationAclMapProto { access_type: Some(*t as i32), acl: Some(a.to_string()) })
                .collect(),
            ..Default::default()
        });
        Application {
            submission: s,
            state: crate::rm_core::AppState::Running,
            final_status: crate::rm_core::FinalStatus::Undefined,
            diagnostics: String::new(),
            submit_ms: 0,
            finish_ms: None,
            lifetime_expiry_ms: None,
            am: None,
        }
    }

    #[test]
    fn queue_acls_hold_down_the_tree_and_default_to_roots_everyone() {
        let on = AclPolicy { enabled: true, admin: Acl::parse("yarn") };
        let (alice, bob, ops) = (caller("alice", &[]), caller("bob", &[]), caller("olga", &["ops"]));
        // Nothing set: root's ACLs are `*`, so everyone may submit everywhere.
        let open = tree(&[]);
        assert!(on.queue_access(Some(&open), &bob, "adhoc", QueueAccess::SubmitApplications));
        let locked = tree(&[
            ("root.acl_submit_applications", " "),
            ("root.acl_administer_queue", " ops"),
            ("root.eng.acl_submit_applications", "alice"),
        ]);
        let s = |c: &Caller, q: &str| on.queue_access(Some(&locked), c, q, QueueAccess::SubmitApplications);
        assert!(s(&alice, "adhoc") && s(&alice, "root.eng") && !s(&alice, "prod"));
        assert!(!s(&bob, "adhoc") && !s(&bob, "prod"));
        assert!(s(&ops, "prod"), "administering root means submitting anywhere");
        assert!(on.queue_access(Some(&locked), &ops, "adhoc", QueueAccess::AdministerQueue));
        assert!(!on.queue_access(Some(&locked), &alice, "adhoc", QueueAccess::AdministerQueue));
        // ACLs off: everything passes.
        assert!(AclPolicy::default().queue_access(Some(&locked), &bob, "prod", QueueAccess::SubmitApplications));
    }

    #[test]
    fn an_application_is_changed_by_its_owner_admins_queue_admins_and_its_acl_only() {
        let on = AclPolicy { enabled: true, admin: Acl::parse("yarn") };
        let q = tree(&[("root.acl_administer_queue", " "), ("root.eng.acl_administer_queue", " eng-leads")]);
        let a = app(
            "alice",
            "adhoc",
            &[(r::ApplicationAccessTypeProto::AppaccessViewApp, "bob"), (r::ApplicationAccessTypeProto::AppaccessModifyApp, "carol")],
        );
        let m = |c: &Caller| on.app_access(Some(&q), c, &a, AppAccess::Modify);
        let v = |c: &Caller| on.app_access(Some(&q), c, &a, AppAccess::View);
        assert!(m(&caller("alice", &[])) && m(&caller("alice/host@R", &[])));
        assert!(m(&caller("yarn", &[])), "a YARN admin");
        assert!(m(&caller("lee", &["eng-leads"])), "an administrator of a queue above");
        assert!(m(&caller("carol", &[])) && !m(&caller("bob", &[])));
        assert!(v(&caller("bob", &[])) && !v(&caller("carol", &[])) && !v(&caller("mallory", &[])));
        assert!(!m(&caller("mallory", &[])));
        assert_eq!(
            app_refusal(&caller("mallory", &[]), AppAccess::Modify, &a),
            "User mallory cannot perform operation MODIFY_APP on application_1_0001"
        );
        assert!(AclPolicy::default().app_access(Some(&q), &caller("mallory", &[]), &a, AppAccess::Modify));
    }
}
