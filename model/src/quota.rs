//! Quotas as operators state them: per role, a guarantee and a limit for
//! each scalar resource kind (cpus, mem, disk, gpus), both for the role's
//! whole subtree (`eng` counts `eng/analytics`). The allocator enforces
//! them; the broker records and shows them.

use std::fmt;

use crate::resources::{Milli, Resources, SCALAR_NAMES};

/// Per-kind limits; `None` is unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub cpus: Option<Milli>,
    pub mem: Option<Milli>,
    pub disk: Option<Milli>,
    pub gpus: Option<Milli>,
}

/// A role's guarantee and limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Scalars only (ports are ignored).
    pub guarantee: Resources,
    pub limit: Limits,
}

impl Limits {
    /// Per kind in `SCALAR_NAMES` order.
    pub fn by_kind(&self) -> [Option<Milli>; 4] {
        [self.cpus, self.mem, self.disk, self.gpus]
    }

    /// The limit of kind `name` (one of `SCALAR_NAMES`).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Option<Milli>> {
        match name {
            "cpus" => Some(&mut self.cpus),
            "mem" => Some(&mut self.mem),
            "disk" => Some(&mut self.disk),
            "gpus" => Some(&mut self.gpus),
            _ => None,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

/// `cpus:2.5;mem:4096`, or `none`.
impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = SCALAR_NAMES
            .iter()
            .zip(self.by_kind())
            .filter_map(|(k, v)| v.map(|v| format!("{k}:{v}")))
            .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(";"))
        }
    }
}

impl Quota {
    pub fn is_none(&self) -> bool {
        self.guarantee.is_empty() && self.limit.is_unlimited()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_print_only_the_limited_kinds() {
        let l = Limits { cpus: Some(Milli(2500)), gpus: Some(Milli(0)), ..Limits::default() };
        assert_eq!(l.to_string(), "cpus:2.5;gpus:0");
        assert_eq!(Limits::default().to_string(), "none");
        assert!(Quota::default().is_none());
    }
}

