//! Whose name YARN containers run under, as Hadoop's
//! `yarn.nodemanager.container-executor.class` decides:
//!
//! - `DefaultContainerExecutor` (the default): every container, and its
//!   node manager, runs as the shim's framework user (the agent's user
//!   where the agent does not switch users). What Weir always did.
//! - `LinuxContainerExecutor`: each container runs as its application's
//!   user, or, where users are not authenticated (SIMPLE) and
//!   `…nonsecure-mode.limit-users` is true (Hadoop's default), as
//!   `…nonsecure-mode.local-user` (`nobody`): Hadoop's
//!   `LinuxContainerExecutor.getRunAsUser`. The agent then starts the
//!   container's task as that user (`agent.tasks.switch-user`), refusing
//!   system, banned and unknown users with the reason, and the node
//!   manager runs as root (it asks with the `weir.run-as-root` label;
//!   agents grant it to the principals of `agent.tasks.root-principals`)
//!   to give each container's directories to its user, the part YARN's
//!   setuid `container-executor` plays.

use std::fmt;

pub const DEFAULT_CLASS: &str = "org.apache.hadoop.yarn.server.nodemanager.DefaultContainerExecutor";
pub const LINUX_CLASS: &str = "org.apache.hadoop.yarn.server.nodemanager.LinuxContainerExecutor";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ContainerExecutor {
    #[default]
    Default,
    /// `local_user`: everyone's containers run as this user (SIMPLE
    /// authentication with limit-users); None: as their submitters.
    Linux { local_user: Option<String> },
}

/// A `yarn.nodemanager.container-executor.class` the shim does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownExecutor(pub String);

impl fmt::Display for UnknownExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown container executor {:?}: the shim has {DEFAULT_CLASS} and {LINUX_CLASS}", self.0)
    }
}

impl ContainerExecutor {
    /// From Hadoop's keys: the class (its full or simple name), whether
    /// users are authenticated (Kerberos), `nonsecure-mode.limit-users`
    /// and `nonsecure-mode.local-user`.
    pub fn from_conf(class: &str, secure: bool, limit_users: bool, local_user: &str) -> Result<ContainerExecutor, UnknownExecutor> {
        let class = class.trim();
        if class.is_empty() || class == DEFAULT_CLASS || class == "DefaultContainerExecutor" {
            Ok(ContainerExecutor::Default)
        } else if class == LINUX_CLASS || class == "LinuxContainerExecutor" {
            let local_user = (!secure && limit_users).then(|| local_user.trim().to_owned());
            Ok(ContainerExecutor::Linux { local_user })
        } else {
            Err(UnknownExecutor(class.to_owned()))
        }
    }

    /// The user a container of `submitter`'s application runs as; None:
    /// the framework's user (DefaultContainerExecutor).
    pub fn run_as<'a>(&'a self, submitter: &'a str) -> Option<&'a str> {
        match self {
            ContainerExecutor::Default => None,
            ContainerExecutor::Linux { local_user: Some(local) } => Some(local),
            ContainerExecutor::Linux { local_user: None } => Some(submitter),
        }
    }

    pub fn is_linux(&self) -> bool {
        matches!(self, ContainerExecutor::Linux { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hadoops_run_as_user_rules() {
        let default = ContainerExecutor::from_conf(DEFAULT_CLASS, false, true, "nobody").unwrap();
        assert_eq!(default.run_as("alice"), None);
        assert_eq!(ContainerExecutor::from_conf("", false, true, "nobody").unwrap(), ContainerExecutor::Default);
        // SIMPLE with limit-users (Hadoop's defaults): everyone is the local user.
        let limited = ContainerExecutor::from_conf(LINUX_CLASS, false, true, "nobody").unwrap();
        assert_eq!(limited.run_as("alice"), Some("nobody"));
        // Unlimited, or with Kerberos: the submitter.
        let unlimited = ContainerExecutor::from_conf("LinuxContainerExecutor", false, false, "nobody").unwrap();
        assert_eq!(unlimited.run_as("alice"), Some("alice"));
        let secure = ContainerExecutor::from_conf(LINUX_CLASS, true, true, "nobody").unwrap();
        assert_eq!(secure.run_as("alice"), Some("alice"));
        assert!(secure.is_linux() && !default.is_linux());
        let e = ContainerExecutor::from_conf("org.example.DockerContainerExecutor", false, true, "nobody").unwrap_err();
        assert!(e.to_string().contains("DockerContainerExecutor"), "{e}");
        assert!(ContainerExecutor::from_conf("org.example.LinuxContainerExecutor", false, true, "nobody").is_err());
    }
}
