//! Tasks as their users: with `agent.tasks.switch-user` an agent running
//! as root starts each task as the user its command names (or, filled in
//! by the broker, its framework's user), with that user's groups, in a
//! sandbox that user owns, as YARN's LinuxContainerExecutor runs
//! containers as their submitter. Users below `agent.tasks.min-uid` (root
//! and the system accounts) and those on `agent.tasks.banned-users` never
//! run tasks; nor does anyone the machine does not know.
//!
//! Without the switch, tasks run as the agent's own user (the default, as
//! YARN's DefaultContainerExecutor). An agent not running as root cannot
//! switch: it refuses tasks of other users instead of running them under
//! the wrong name.
//!
//! `resolve` decides (reading the account database); the launcher and the
//! supervisor apply what it decided in the child, before `exec`.

use std::ffi::CString;

/// The rules (`agent.tasks.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPolicy {
    pub switch: bool,
    pub min_uid: u32,
    pub banned: Vec<String>,
    /// Principals whose tasks may run as root when they ask
    /// (`agent.tasks.root-principals`); none by default.
    pub root_principals: Vec<String>,
}

impl Default for UserPolicy {
    /// Off, with YARN's LinuxContainerExecutor limits for when it is on.
    fn default() -> UserPolicy {
        UserPolicy {
            switch: false,
            min_uid: 1000,
            banned: ["hdfs", "yarn", "mapred", "bin"].map(str::to_owned).to_vec(),
            root_principals: Vec::new(),
        }
    }
}

/// Who a task runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary one included.
    pub groups: Vec<u32>,
    pub home: std::path::PathBuf,
}

/// What a task asks for: its command's user, the principal the broker
/// stamped on it (`TaskInfo.principal`) and whether it asks for root
/// ([`weir_model::task::RUN_AS_ROOT_LABEL`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub user: &'a str,
    pub principal: &'a str,
    pub asks_for_root: bool,
}

impl<'a> Request<'a> {
    pub fn user(user: &'a str) -> Request<'a> {
        Request { user, ..Request::default() }
    }
}

/// The user a task runs as: `None` for the agent's own user (the switch is
/// off), or why it may not run.
pub fn resolve(policy: &UserPolicy, request: Request) -> Result<Option<TaskUser>, String> {
    let requested = request.user;
    if !policy.switch {
        return Ok(None);
    }
    let name = requested.trim();
    if name.is_empty() {
        return Err("the task names no user (CommandInfo.user, or its framework's user) and agent.tasks.switch-user is on".into());
    }
    if policy.banned.iter().any(|b| b == name) {
        return Err(format!("user {name} is banned from running tasks (agent.tasks.banned-users)"));
    }
    let user = match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => u,
        Ok(None) => return Err(format!("user {name} does not exist on this agent")),
        Err(e) => return Err(format!("cannot look up user {name}: {e}")),
    };
    let uid = user.uid.as_raw();
    // Root for a trusted framework's task that asks for it; an empty
    // principal (anonymous, or a broker without authentication that was
    // told none) is never trusted.
    let trusted_root = uid == 0
        && request.asks_for_root
        && !request.principal.is_empty()
        && policy.root_principals.iter().any(|p| p == request.principal);
    if uid < policy.min_uid && !trusted_root {
        return Err(format!("user {name} has uid {uid}, below agent.tasks.min-uid {}: system users do not run tasks", policy.min_uid));
    }
    let me = nix::unistd::geteuid().as_raw();
    if me != 0 && me != uid {
        return Err(format!(
            "the agent runs as uid {me}, not root, and cannot start a task as user {name}; run the agent as root, or set agent.tasks.switch-user=false to run every task as the agent's own user"
        ));
    }
    let c_name = CString::new(name).map_err(|_| format!("user name {name:?} has a NUL byte"))?;
    let groups = nix::unistd::getgrouplist(&c_name, user.gid)
        .map_err(|e| format!("cannot read the groups of user {name}: {e}"))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Ok(Some(TaskUser { name: name.to_owned(), uid, gid: user.gid.as_raw(), groups, home: user.dir }))
}

/// Becomes `uid`/`gid` with `groups`, in that order (groups and gid while
/// still privileged). For a child between fork and exec: only
/// async-signal-safe calls.
pub fn become_user(uid: u32, gid: u32, groups: &[u32]) -> std::io::Result<()> {
    let groups: Vec<nix::unistd::Gid> = groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(std::io::Error::from)?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(gid)).map_err(std::io::Error::from)?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> UserPolicy {
        UserPolicy { switch: true, ..UserPolicy::default() }
    }

    #[test]
    fn off_runs_everything_as_the_agent() {
        assert_eq!(resolve(&UserPolicy::default(), Request::user("root")), Ok(None));
        assert_eq!(resolve(&UserPolicy::default(), Request::user("")), Ok(None));
    }

    #[test]
    fn system_banned_unknown_and_unnamed_users_are_refused_with_the_reason() {
        let root = resolve(&on(), Request::user("root")).unwrap_err();
        assert!(root.contains("user root has uid 0, below agent.tasks.min-uid 1000"), "{root}");
        let banned = resolve(&on(), Request::user("yarn")).unwrap_err();
        assert!(banned.contains("banned"), "{banned}");
        let unknown = resolve(&on(), Request::user("no-such-user-weir")).unwrap_err();
        assert!(unknown.contains("does not exist"), "{unknown}");
        assert!(resolve(&on(), Request::user(" ")).unwrap_err().contains("names no user"));
    }

    #[test]
    fn a_known_user_above_the_minimum_resolves_with_their_groups() {
        // `nobody` (65534) exists on Debian; skip quietly elsewhere.
        let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else { return };
        match resolve(&on(), Request::user("nobody")) {
            Ok(Some(u)) => {
                assert_eq!((u.uid, u.gid), (nobody.uid.as_raw(), nobody.gid.as_raw()));
                assert!(u.groups.contains(&u.gid), "{u:?}");
            }
            // An agent test run without root cannot switch: said so.
            Err(e) => assert!(e.contains("not root") && nix::unistd::geteuid().as_raw() != 0, "{e}"),
            Ok(None) => panic!("the switch is on"),
        }
    }

    #[test]
    fn root_only_for_a_listed_principals_task_that_asks_for_it() {
        let policy = UserPolicy { root_principals: vec!["yarn-shim".into()], ..on() };
        let ask = |principal, asks_for_root| resolve(&policy, Request { user: "root", principal, asks_for_root });
        let below = |r: Result<Option<TaskUser>, String>| r.unwrap_err().contains("below agent.tasks.min-uid");
        // Not listed, not asked, or no principal at all: held to min-uid.
        assert!(below(ask("mallory", true)));
        assert!(below(ask("yarn-shim", false)));
        assert!(below(ask("", true)));
        assert!(below(resolve(&UserPolicy { root_principals: vec![String::new()], ..on() }, Request { user: "root", principal: "", asks_for_root: true })));
        // Listed and asked: root (where the agent is root; else it says it cannot switch).
        match ask("yarn-shim", true) {
            Ok(Some(u)) => assert_eq!(u.uid, 0),
            Err(e) => assert!(e.contains("not root") && nix::unistd::geteuid().as_raw() != 0, "{e}"),
            Ok(None) => panic!("the switch is on"),
        }
        // The exception is root's only: other system users and banned ones stay refused.
        let bin = resolve(&policy, Request { user: "daemon", principal: "yarn-shim", asks_for_root: true }).unwrap_err();
        assert!(bin.contains("below agent.tasks.min-uid"), "{bin}");
        let banned = UserPolicy { banned: vec!["root".into()], ..policy.clone() };
        assert!(resolve(&banned, Request { user: "root", principal: "yarn-shim", asks_for_root: true }).unwrap_err().contains("banned"));
    }
}
