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


/// An application attempt: `appattempt_<ts>_<%04d app>_<%06d attempt>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId {
    pub app: ApplicationId,
    pub attempt: i32,
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "appattempt_{}_{:04}_{:06}", self.app.cluster_timestamp, self.app.id, self.attempt)
    }
}

/// A container: `container_<ts>_<%04d app>_<%02d attempt>_<%06d id>`.
/// The AM container of an attempt is number 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId {
    pub attempt: AttemptId,
    pub id: i64,
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.attempt;
        write!(f, "container_{}_{:04}_{:02}_{:06}", a.app.cluster_timestamp, a.app.id, a.attempt, self.id)
    }
}

impl FromStr for ContainerId {
    type Err = BadApplicationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadApplicationId(s.to_owned());
        let rest = s.strip_prefix("container_").ok_or_else(bad)?;
        // Hadoop 2.6+ may add an epoch: container_e<epoch>_<ts>_…; skip it.
        let rest = match rest.strip_prefix('e') {
            Some(r) => r.split_once('_').map(|(_, r)| r).ok_or_else(bad)?,
            None => rest,
        };
        let parts: Vec<&str> = rest.split('_').collect();
        let [ts, app, attempt, id] = parts[..] else { return Err(bad()) };
        let num = |t: &str| -> Result<i64, BadApplicationId> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        let (ts, app, attempt, id) = (num(ts)?, num(app)?, num(attempt)?, num(id)?);
        let small = |v: i64| i32::try_from(v).map_err(|_| bad());
        Ok(ContainerId { attempt: AttemptId { app: ApplicationId { cluster_timestamp: ts, id: small(app)? }, attempt: small(attempt)? }, id })
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

    #[test]
    fn attempt_and_container_ids_print_and_parse_like_hadoop() {
        let app = ApplicationId { cluster_timestamp: 1_700_000_000_123, id: 7 };
        let attempt = AttemptId { app, attempt: 1 };
        assert_eq!(attempt.to_string(), "appattempt_1700000000123_0007_000001");
        let c = ContainerId { attempt, id: 2 };
        assert_eq!(c.to_string(), "container_1700000000123_0007_01_000002");
        assert_eq!(c.to_string().parse::<ContainerId>(), Ok(c));
        assert_eq!("container_e17_1700000000123_0007_01_000002".parse::<ContainerId>(), Ok(c));
        for bad in ["", "container_1_2_3", "container_1_x_1_1", "application_1_1", "container_1_1_1_1_1"] {
            assert!(bad.parse::<ContainerId>().is_err(), "{bad:?} parsed");
        }
    }
}
