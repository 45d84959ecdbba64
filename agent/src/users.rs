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
}

impl Default for UserPolicy {
    /// Off, with YARN's LinuxContainerExecutor limits for when it is on.
    fn default() -> UserPolicy {
        UserPolicy { switch: false, min_uid: 1000, banned: ["hdfs", "yarn", "mapred", "bin"].map(str::to_owned).to_vec() }
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

/// The user a task with `requested` (its command's user) runs as: `None`
/// for the agent's own user (the switch is off), or why it may not run.
pub fn resolve(policy: &UserPolicy, requested: &str) -> Result<Option<TaskUser>, String> {
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
    if uid < policy.min_uid {
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
        assert_eq!(resolve(&UserPolicy::default(), "root"), Ok(None));
        assert_eq!(resolve(&UserPolicy::default(), ""), Ok(None));
    }

    #[test]
    fn system_banned_unknown_and_unnamed_users_are_refused_with_the_reason() {
        let root = resolve(&on(), "root").unwrap_err();
        assert!(root.contains("user root has uid 0, below agent.tasks.min-uid 1000"), "{root}");
        let banned = resolve(&on(), "yarn").unwrap_err();
        assert!(banned.contains("banned"), "{banned}");
        let unknown = resolve(&on(), "no-such-user-weir").unwrap_err();
        assert!(unknown.contains("does not exist"), "{unknown}");
        assert!(resolve(&on(), " ").unwrap_err().contains("names no user"));
    }

    #[test]
    fn a_known_user_above_the_minimum_resolves_with_their_groups() {
        // `nobody` (65534) exists on Debian; skip quietly elsewhere.
        let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else { return };
        match resolve(&on(), "nobody") {
            Ok(Some(u)) => {
                assert_eq!((u.uid, u.gid), (nobody.uid.as_raw(), nobody.gid.as_raw()));
                assert!(u.groups.contains(&u.gid), "{u:?}");
            }
            // An agent test run without root cannot switch: said so.
            Err(e) => assert!(e.contains("not root") && nix::unistd::geteuid().as_raw() != 0, "{e}"),
            Ok(None) => panic!("the switch is on"),
        }
    }
}
