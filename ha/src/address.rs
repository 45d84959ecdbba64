//! `zk://host1:2181,host2:2181/path` addresses.

use crate::HaError;

/// A parsed `zk://` address: the ensemble and the path Weir works under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkAddress {
    /// `host:port,host:port` as the client takes it.
    pub hosts: String,
    /// Absolute, without a trailing slash, never just `/`.
    pub path: String,
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
        Ok(ZkAddress { hosts: hosts.to_owned(), path: path.to_owned() })
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
