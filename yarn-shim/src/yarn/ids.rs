//! YARN's ids in the shim's own types, with the string forms clients print
//! and parse (`application_<cluster ts>_<%04d id>`).

use std::fmt;
use std::str::FromStr;

/// An application id: the ResourceManager's start time (ms since the
/// epoch) and a sequence number starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApplicationId {
    pub cluster_timestamp: i64,
    pub id: i32,
}

impl fmt::Display for ApplicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "application_{}_{:04}", self.cluster_timestamp, self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an application id (expected application_<cluster timestamp>_<number>)")]
pub struct BadApplicationId(pub String);

impl FromStr for ApplicationId {
    type Err = BadApplicationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadApplicationId(s.to_owned());
        let rest = s.strip_prefix("application_").ok_or_else(bad)?;
        let (ts, id) = rest.split_once('_').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ts) || !digits(id) {
            return Err(bad());
        }
        Ok(ApplicationId { cluster_timestamp: ts.parse().map_err(|_| bad())?, id: id.parse().map_err(|_| bad())? })
    }
}

/// A node as YARN names it: host and port (the agent's HTTP port here).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub host: String,
    pub port: i32,
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_ids_print_and_parse_like_hadoop() {
        let id = ApplicationId { cluster_timestamp: 1_700_000_000_123, id: 7 };
        assert_eq!(id.to_string(), "application_1700000000123_0007");
        assert_eq!("application_1700000000123_0007".parse::<ApplicationId>(), Ok(id));
        // More than four digits are printed in full and still parse.
        let big = ApplicationId { cluster_timestamp: 1, id: 123_456 };
        assert_eq!(big.to_string(), "application_1_123456");
        assert_eq!(big.to_string().parse::<ApplicationId>(), Ok(big));
        for bad in ["", "application_", "application_1", "application_x_1", "job_1_1", "application_1_-1", "application_1_99999999999"] {
            assert!(bad.parse::<ApplicationId>().is_err(), "{bad:?} parsed");
        }
    }
}
