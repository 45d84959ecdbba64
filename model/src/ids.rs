//! Typed identifiers. Each is a string on the wire; the type keeps an agent
//! id from ever being passed where a task id is expected.
//!
//! The text is shared (`Arc<str>`), so a clone is a reference-count
//! increment rather than a heap allocation and a copy: the allocator and
//! the broker's books copy agent, framework, role and offer ids into every
//! offer they make (50,000 per cycle at scale), and with owned strings
//! those copies were over a third of an allocation cycle.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(value: impl AsRef<str>) -> Self {
                Self(Arc::from(value.as_ref()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // As the String it used to hold: `AgentId("a")`.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(Arc::from(value))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(Arc::from(value))
            }
        }

        impl From<&String> for $name {
            fn from(value: &String) -> Self {
                Self(Arc::from(value.as_str()))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0.to_string()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self::from)
            }
        }
    };
}

string_id!(
    /// An agent admitted by the broker; stable across agent restarts.
    AgentId
);
string_id!(
    /// A framework subscribed to the broker; stable across scheduler failover.
    FrameworkId
);
string_id!(
    /// One offer of one agent's resources to one framework.
    OfferId
);
string_id!(
    /// A task, named by its framework; unique within that framework.
    TaskId
);
string_id!(
    /// An executor on an agent, named by its framework.
    ExecutorId
);
string_id!(
    /// An accounting bucket for fairness, weights and reservations.
    Role
);

string_id!(
    /// A dynamic reservation on one agent, chosen by whoever made it (or by
    /// the broker): the same id twice is one reservation.
    ReservationId
);
string_id!(
    /// A persistent volume, unique per (agent, role); chosen by its creator.
    VolumeId
);

impl Role {
    /// The role every framework falls back to when it names none.
    pub fn default_role() -> Self {
        Role::from("*")
    }
}

/// The longest identifier accepted from outside the process.
pub const MAX_ID_LEN: usize = 256;

/// Checks an identifier that came from a framework or an agent: non-empty,
/// bounded, printable, and free of path separators (ids become sandbox
/// directory names on agents).
pub fn validate_id(kind: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{kind} must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(format!("{kind} is {} bytes long; at most {MAX_ID_LEN} are allowed", value.len()));
    }
    if value == "." || value == ".." {
        return Err(format!("{kind} {value:?} is not allowed"));
    }
    if let Some(bad) = value.chars().find(|c| c.is_control() || *c == '/' || *c == '\\' || c.is_whitespace()) {
        return Err(format!("{kind} {value:?} contains {bad:?}; ids may not hold whitespace, control characters or path separators"));
    }
    Ok(())
}

/// The deepest a role may nest (`a/b/c/d/e`).
pub const MAX_ROLE_DEPTH: usize = 8;

/// Checks a role name from outside the process. Roles nest with `/`
/// (`eng/analytics/adhoc`: `eng/analytics` and `eng` are the roles above
/// it); each part is checked as an id (no `.` or `..`, whitespace,
/// control characters or backslash), so no part is empty and the name
/// neither starts nor ends with `/`.
pub fn validate_role(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("role must not be empty".to_owned());
    }
    if value.len() > MAX_ID_LEN {
        return Err(format!("role is {} bytes long; at most {MAX_ID_LEN} are allowed", value.len()));
    }
    let parts: Vec<&str> = value.split('/').collect();
    if parts.len() > MAX_ROLE_DEPTH {
        return Err(format!("role {value:?} nests {} deep; at most {MAX_ROLE_DEPTH} levels are allowed", parts.len()));
    }
    for part in parts {
        if part.is_empty() {
            return Err(format!("role {value:?} has an empty part; parts are separated by single '/' and the name may not start or end with one"));
        }
        validate_id("role part", part).map_err(|e| format!("role {value:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_with_slashes_and_each_part_is_an_id() {
        assert!(validate_role("eng/analytics/adhoc").is_ok());
        assert!(validate_role("*").is_ok());
        assert!(validate_role("eng//a").unwrap_err().contains("empty part"));
        assert!(validate_role("/eng").unwrap_err().contains("empty part"));
        assert!(validate_role("eng/").unwrap_err().contains("empty part"));
        assert!(validate_role("eng/..").unwrap_err().contains("not allowed"));
        assert!(validate_role("eng/a b").unwrap_err().contains("whitespace"));
        assert!(validate_role(&format!("{}z", "a/".repeat(8))).unwrap_err().contains("at most 8 levels"));
        assert_eq!(validate_role("").unwrap_err(), "role must not be empty");
    }

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("task id", "web-1.2_x").is_ok());
        assert_eq!(validate_id("task id", "").unwrap_err(), "task id must not be empty");
        assert!(validate_id("task id", "../etc").unwrap_err().contains("'/'"));
        assert!(validate_id("task id", "..").is_err());
        assert!(validate_id("task id", "a b").is_err());
        assert!(validate_id("task id", &"x".repeat(257)).unwrap_err().contains("257 bytes"));
    }
}
