//! Quotas: per role, a guarantee and a limit for each scalar resource kind,
//! both measured on the role's whole subtree (`eng` counts `eng/analytics`)
//! and on what it holds plus its reservations nobody holds, as Mesos
//! measures a role's consumed quota.
//!
//! - The limit is never exceeded: an offer to a client is cut to what the
//!   limits of its role and every role above it leave.
//! - Guarantees are kept by headroom (Mesos' rule): the unreserved free
//!   resources of active agents never fall below what the guaranteed roles
//!   still lack. Only a grant that brings a guaranteed role towards its
//!   guarantee may dip into them; every other grant is cut to the slack.
//! - Guarantees nest: a role's guarantee covers those of the roles below it
//!   (their sum may not exceed it), and the guarantees of the topmost
//!   guaranteed roles together may not exceed the cluster.

use std::collections::BTreeMap;

use weir_model::quota::Limits;
use weir_model::{Milli, Role};

use crate::scalars::{Scalars, KINDS};

pub(crate) fn limit_scalars(l: &Limits) -> Scalars {
    let v = |m: Option<Milli>| m.map_or(u64::MAX, |m| m.0);
    Scalars([v(l.cpus), v(l.mem), v(l.disk), v(l.gpus)])
}

pub(crate) fn limits_of(s: &Scalars) -> Limits {
    let v = |x: u64| (x != u64::MAX).then_some(Milli(x));
    Limits { cpus: v(s.0[0]), mem: v(s.0[1]), disk: v(s.0[2]), gpus: v(s.0[3]) }
}

/// The first kind where `a` exceeds `b`, as (kind, a, b).
pub(crate) fn first_excess(a: &Scalars, b: &Scalars) -> Option<(&'static str, Milli, Milli)> {
    KINDS.iter().zip(a.0.iter().zip(b.0)).find(|(_, (x, y))| **x > *y).map(|(k, (x, y))| (*k, Milli(*x), Milli(y)))
}

/// Whether `inner` lies below `outer` in the role tree (`eng/a` below `eng`).
pub(crate) fn is_below(inner: &str, outer: &str) -> bool {
    inner.len() > outer.len() && inner.starts_with(outer) && inner.as_bytes()[outer.len()] == b'/'
}

/// Checks a set of guarantees (role → guarantee, zero guarantees left
/// out): each role's guarantee holds the sum of the topmost guarantees
/// below it, and the topmost guarantees together fit in `cluster` (when
/// given). The error gives the figures.
pub(crate) fn check_guarantees(guarantees: &BTreeMap<Role, Scalars>, cluster: Option<&Scalars>) -> Result<(), String> {
    // Topmost guaranteed roles within `outer` (or overall for `None`).
    let topmost_below = |outer: Option<&Role>| -> Vec<(&Role, &Scalars)> {
        guarantees
            .iter()
            .filter(|(r, _)| outer.is_none_or(|o| is_below(r.as_str(), o.as_str())))
            .filter(|(r, _)| {
                !guarantees.keys().any(|other| {
                    is_below(r.as_str(), other.as_str()) && outer.is_none_or(|o| is_below(other.as_str(), o.as_str()))
                })
            })
            .collect()
    };
    let sum = |roles: &[(&Role, &Scalars)]| {
        roles.iter().fold(Scalars::default(), |mut acc, (_, g)| {
            acc.add(g);
            acc
        })
    };
    for (role, guarantee) in guarantees {
        let below = topmost_below(Some(role));
        if let Some((kind, want, have)) = first_excess(&sum(&below), guarantee) {
            let names: Vec<String> = below.iter().map(|(r, g)| format!("{r} {}", Milli(g.0[KINDS.iter().position(|k| *k == kind).unwrap_or(0)]))).collect();
            return Err(format!(
                "the guarantees of the roles below {role} add up to {kind} {want} ({}), more than its own guarantee of {kind} {have}",
                names.join(", ")
            ));
        }
    }
    if let Some(cluster) = cluster {
        let top = topmost_below(None);
        if let Some((kind, want, have)) = first_excess(&sum(&top), cluster) {
            let ix = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
            let names: Vec<String> = top.iter().map(|(r, g)| format!("{r} {}", Milli(g.0[ix]))).collect();
            return Err(format!(
                "guarantees would add up to {kind} {want} ({}), more than the cluster's {kind} {have}",
                names.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(cpus: u64) -> Scalars {
        Scalars([cpus * 1000, 0, 0, 0])
    }

    #[test]
    fn nesting_is_checked_with_the_figures() {
        let mut map = BTreeMap::from([(Role::new("eng"), g(10)), (Role::new("eng/a"), g(6)), (Role::new("eng/b"), g(4))]);
        assert_eq!(check_guarantees(&map, Some(&g(10))), Ok(()));
        map.insert(Role::new("eng/b"), g(5));
        let err = check_guarantees(&map, None).unwrap_err();
        assert_eq!(err, "the guarantees of the roles below eng add up to cpus 11 (eng/a 6, eng/b 5), more than its own guarantee of cpus 10");
        // A guarantee deeper down counts within its topmost guaranteed ancestor only.
        let map = BTreeMap::from([(Role::new("eng/a"), g(6)), (Role::new("eng/a/x"), g(6)), (Role::new("ops"), g(5))]);
        let err = check_guarantees(&map, Some(&g(10))).unwrap_err();
        assert_eq!(err, "guarantees would add up to cpus 11 (eng/a 6, ops 5), more than the cluster's cpus 10");
    }

    #[test]
    fn below_means_a_path_prefix() {
        assert!(is_below("eng/a", "eng"));
        assert!(!is_below("engine", "eng"));
        assert!(!is_below("eng", "eng"));
    }

    #[test]
    fn limits_round_trip() {
        let l = Limits { cpus: Some(Milli(2500)), gpus: Some(Milli(0)), ..Limits::default() };
        assert_eq!(limits_of(&limit_scalars(&l)), l);
    }
}
