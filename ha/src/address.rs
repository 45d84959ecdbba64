//! `zk://host1:2181,host2:2181/path` addresses.

use crate::HaError;

/// A parsed `zk://` address: the ensemble and the path Weir works under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkAddress {
    /// `host:port,host:port` as the client takes it.
    pub hosts: String,
    /// Absolute, without a trailing slash, never just `/`.
    pub path: String,
    /// Digest credentials (`user:password`) the session authenticates
    /// with; the nodes it creates are then writable by that identity only
    /// and readable by all. Never part of the address's text.
    pub digest: Option<ZkDigest>,
}

/// `user:password` for ZooKeeper's digest scheme. Its `Debug` hides it,
/// so no log line or error shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkDigest(String);

impl std::fmt::Debug for ZkDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.0.split(':').next().unwrap_or_default();
        write!(f, "ZkDigest({user}:***)")
    }
}

impl ZkDigest {
    /// Reads `user:password` from `path`: a file of at most 4 KiB that only
    /// its owner may read (refused otherwise, as a key file should be).
    pub fn read(path: &std::path::Path) -> Result<ZkDigest, HaError> {
        use std::os::unix::fs::PermissionsExt;
        let bad = |reason: String| HaError::BadAddress { address: path.display().to_string(), reason };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read the ZooKeeper credentials: {e}")))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(bad(format!(
                "the ZooKeeper credentials file is readable or writable by others (mode {:o}); chmod 600 it",
                meta.permissions().mode() & 0o777
            )));
        }
        if meta.len() > 4096 {
            return Err(bad(format!("{} bytes is too long for user:password", meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read the ZooKeeper credentials: {e}")))?;
        ZkDigest::new(text.trim()).map_err(bad)
    }

    /// `user:password`, both non-empty.
    pub fn new(text: &str) -> Result<ZkDigest, String> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() && !text.contains('\n') => Ok(ZkDigest(text.to_owned())),
            _ => Err("the ZooKeeper credentials must be one line user:password".to_owned()),
        }
    }

    /// The secret itself, for the session's auth packet only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl ZkAddress {
    pub fn is_zk(address: &str) -> bool {
        address.starts_with("zk://")
    }

    pub fn parse(address: &str) -> Result<ZkAddress, HaError> {
        let bad = |reason: &str| HaError::BadAddress { address: address.to_owned(), reason: reason.to_owned() };
        if address.len() > 4096 {
            return Err(bad("longer than 4096 bytes"));
        }
        let rest = address.strip_prefix("zk://").ok_or_else(|| bad("must start with zk://"))?;
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(bad("needs a path after the hosts, e.g. zk://127.0.0.1:2181/weir")),
        };
        if hosts.is_empty() {
            return Err(bad("names no ZooKeeper host"));
        }
        for host in hosts.split(',') {
            let (name, port) = host.rsplit_once(':').ok_or_else(|| bad(&format!("host {host:?} has no :port")))?;
            if name.is_empty() {
                return Err(bad(&format!("host {host:?} has no name")));
            }
            port.parse::<u16>().map_err(|_| bad(&format!("port {port:?} of {host:?} is not a port number")))?;
        }
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            return Err(bad("the path must not be / (use e.g. /weir)"));
        }
        for part in path[1..].split('/') {
            crate::validate_name("path component", part).map_err(|r| bad(&r))?;
        }
        Ok(ZkAddress { hosts: hosts.to_owned(), path: path.to_owned(), digest: None })
    }
}

impl std::fmt::Display for ZkAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "zk://{}{}", self.hosts, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_path() {
        let a = ZkAddress::parse("zk://h1:2181,h2:2182/weir/prod/").unwrap();
        assert_eq!(a.hosts, "h1:2181,h2:2182");
        assert_eq!(a.path, "/weir/prod");
        assert_eq!(a.to_string(), "zk://h1:2181,h2:2182/weir/prod");
    }

    #[test]
    fn says_what_is_wrong() {
        for (input, needle) in [
            ("127.0.0.1:2181/weir", "must start with zk://"),
            ("zk://127.0.0.1:2181", "needs a path"),
            ("zk://127.0.0.1:2181/", "must not be /"),
            ("zk:///weir", "names no ZooKeeper host"),
            ("zk://h1/weir", "has no :port"),
            ("zk://h1:99999/weir", "is not a port number"),
            ("zk://h1:1/we ir", "may hold only"),
            ("zk://h1:1/a//b", "must be 1 to 255"),
        ] {
            let err = ZkAddress::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(err.contains(input), "{input}: {err}");
        }
    }
}
