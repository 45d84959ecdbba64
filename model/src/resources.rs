//! Resources: the scalars `cpus`, `mem` (MiB), `disk` (MiB), `gpus` and the
//! range resource `ports`, optionally reserved for a role.
//!
//! Scalars are [`Milli`] (thousandths), so arithmetic is exact: an offer that
//! is split into tasks and given back adds up to what it was, bit for bit.
//! The text form is the one Mesos agents take on the command line:
//! `cpus:4;mem:8192;disk:20000;ports:[31000-32000]`, with `name(role):value`
//! for a static reservation.

use crate::ids::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Why a resource value or spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource spec {spec:?}: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("{name} value {value} is not a finite number between 0 and {max}")]
    BadScalar { name: String, value: String, max: u64 },
    #[error("cannot take {wanted} from {available}: not enough resources")]
    NotContained { wanted: String, available: String },
}

/// A non-negative quantity in thousandths: `Milli(1500)` is 1.5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Milli(pub u64);

impl Milli {
    pub const ZERO: Milli = Milli(0);
    /// The largest value accepted from outside: 2^50 thousandths, far beyond
    /// any machine, small enough that sums of 100,000 agents cannot overflow.
    pub const MAX: Milli = Milli(1 << 50);

    /// Converts a user-supplied number, rounding to the nearest thousandth.
    /// Negative, non-finite and absurdly large values are refused.
    pub fn from_f64(value: f64) -> Option<Milli> {
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        let scaled = (value * 1000.0).round();
        if scaled > Milli::MAX.0 as f64 {
            return None;
        }
        Some(Milli(scaled as u64))
    }

    pub fn from_units(units: u64) -> Milli {
        Milli(units.saturating_mul(1000))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1000;
        let frac = self.0 % 1000;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// A set of inclusive integer ranges, always sorted, disjoint and coalesced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// The highest port (and range bound) accepted.
    pub const MAX_VALUE: u64 = 65535;

    pub fn new(ranges: impl IntoIterator<Item = (u64, u64)>) -> Ranges {
        let mut list: Vec<(u64, u64)> = ranges.into_iter().filter(|(b, e)| b <= e).collect();
        list.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for (b, e) in list {
            match out.last_mut() {
                Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => out.push((b, e)),
            }
        }
        Ranges(out)
    }

    pub fn single(begin: u64, end: u64) -> Ranges {
        Ranges::new([(begin, end)])
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many values the set holds.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(b, e)| e - b + 1).sum()
    }

    pub fn contains(&self, other: &Ranges) -> bool {
        other.0.iter().all(|&(b, e)| self.0.iter().any(|&(sb, se)| sb <= b && e <= se))
    }

    pub fn add(&self, other: &Ranges) -> Ranges {
        Ranges::new(self.0.iter().chain(other.0.iter()).copied())
    }

    /// Removes `other`; values of `other` not in `self` are ignored (callers
    /// check [`Ranges::contains`] first when that matters).
    pub fn subtract(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for &(b, e) in &self.0 {
            let mut pieces = vec![(b, e)];
            for &(ob, oe) in &other.0 {
                let mut next = Vec::new();
                for (pb, pe) in pieces {
                    if oe < pb || ob > pe {
                        next.push((pb, pe));
                        continue;
                    }
                    if ob > pb {
                        next.push((pb, ob - 1));
                    }
                    if oe < pe {
                        next.push((oe + 1, pe));
                    }
                }
                pieces = next;
            }
            out.extend(pieces);
        }
        Ranges::new(out)
    }

    /// The first `n` values of the set, as ranges (used to hand a task ports).
    pub fn take_first(&self, n: u64) -> Option<Ranges> {
        let mut left = n;
        let mut out = Vec::new();
        for &(b, e) in &self.0 {
            if left == 0 {
                break;
            }
            let len = e - b + 1;
            let used = len.min(left);
            out.push((b, b + used - 1));
            left -= used;
        }
        (left == 0).then(|| Ranges::new(out))
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (b, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if b == e {
                write!(f, "{b}")?;
            } else {
                write!(f, "{b}-{e}")?;
            }
        }
        f.write_str("]")
    }
}

/// One bundle of resources, all with the same reservation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpus: Milli,
    pub mem: Milli,
    pub disk: Milli,
    pub gpus: Milli,
    pub ports: Ranges,
}

/// The scalar resource names, in display order.
pub const SCALAR_NAMES: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.cpus.is_zero() && self.mem.is_zero() && self.disk.is_zero() && self.gpus.is_zero() && self.ports.is_empty()
    }

    pub fn scalar(&self, name: &str) -> Option<Milli> {
        match name {
            "cpus" => Some(self.cpus),
            "mem" => Some(self.mem),
            "disk" => Some(self.disk),
            "gpus" => Some(self.gpus),
            _ => None,
        }
    }

    fn scalar_mut(&mut self, name: &str) -> Option<&mut Milli> {
        match name {
            "cpus" => Some(&mut self.cpus),
            "mem" => Some(&mut self.mem),
            "disk" => Some(&mut self.disk),
            "gpus" => Some(&mut self.gpus),
            _ => None,
        }
    }

    pub fn contains(&self, other: &Resources) -> bool {
        self.cpus >= other.cpus
            && self.mem >= other.mem
            && self.disk >= other.disk
            && self.gpus >= other.gpus
            && self.ports.contains(&other.ports)
    }

    pub fn add(&self, other: &Resources) -> Resources {
        Resources {
            cpus: Milli(self.cpus.0.saturating_add(other.cpus.0)),
            mem: Milli(self.mem.0.saturating_add(other.mem.0)),
            disk: Milli(self.disk.0.saturating_add(other.disk.0)),
            gpus: Milli(self.gpus.0.saturating_add(other.gpus.0)),
            ports: self.ports.add(&other.ports),
        }
    }

    pub fn add_assign(&mut self, other: &Resources) {
        *self = self.add(other);
    }

    /// `self - other`, or an error if `other` is not wholly contained.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources, ResourceError> {
        if !self.contains(other) {
            return Err(ResourceError::NotContained { wanted: other.to_string(), available: self.to_string() });
        }
        Ok(Resources {
            cpus: Milli(self.cpus.0 - other.cpus.0),
            mem: Milli(self.mem.0 - other.mem.0),
            disk: Milli(self.disk.0 - other.disk.0),
            gpus: Milli(self.gpus.0 - other.gpus.0),
            ports: self.ports.subtract(&other.ports),
        })
    }

    /// Parses `cpus:4;mem:8192;ports:[31000-32000]` (no reservations).
    pub fn parse(spec: &str) -> Result<Resources, ResourceError> {
        let set = ResourceSet::parse(spec)?;
        if !set.reserved.is_empty() {
            return Err(ResourceError::BadSpec {
                spec: spec.to_owned(),
                reason: "reservations (name(role):value) are not allowed here".to_owned(),
            });
        }
        Ok(set.unreserved)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_bundle(f, self, None)
    }
}

fn write_bundle(f: &mut fmt::Formatter<'_>, r: &Resources, role: Option<&Role>) -> fmt::Result {
    let suffix = role.map(|r| format!("({r})")).unwrap_or_default();
    let mut first = true;
    let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
        if !first {
            f.write_str(";")?;
        }
        first = false;
        Ok(())
    };
    for name in SCALAR_NAMES {
        let value = r.scalar(name).unwrap_or_default();
        if !value.is_zero() {
            sep(f)?;
            write!(f, "{name}{suffix}:{value}")?;
        }
    }
    if !r.ports.is_empty() {
        sep(f)?;
        write!(f, "ports{suffix}:{}", r.ports)?;
    }
    Ok(())
}

/// Resources on one agent (or in one offer or task): an unreserved bundle
/// plus bundles reserved for particular roles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceSet {
    pub unreserved: Resources,
    /// Never holds an empty bundle.
    pub reserved: BTreeMap<Role, Resources>,
}

/// The longest resource spec accepted.
pub const MAX_SPEC_LEN: usize = 64 * 1024;

impl ResourceSet {
    pub fn unreserved(resources: Resources) -> ResourceSet {
        ResourceSet { unreserved: resources, reserved: BTreeMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.unreserved.is_empty() && self.reserved.is_empty()
    }

    /// Everything, reservations folded in: what the agent physically has.
    pub fn total(&self) -> Resources {
        self.reserved.values().fold(self.unreserved.clone(), |acc, r| acc.add(r))
    }

    /// The part a framework in `role` may use: unreserved plus that role's reservation.
    pub fn usable_by(&self, role: &Role) -> ResourceSet {
        let mut out = ResourceSet::unreserved(self.unreserved.clone());
        if let Some(r) = self.reserved.get(role) {
            out.reserved.insert(role.clone(), r.clone());
        }
        out
    }

    pub fn contains(&self, other: &ResourceSet) -> bool {
        self.unreserved.contains(&other.unreserved)
            && other
                .reserved
                .iter()
                .all(|(role, r)| self.reserved.get(role).is_some_and(|mine| mine.contains(r)))
    }

    pub fn add(&self, other: &ResourceSet) -> ResourceSet {
        let mut out = self.clone();
        out.add_assign(other);
        out
    }

    pub fn add_assign(&mut self, other: &ResourceSet) {
        self.unreserved.add_assign(&other.unreserved);
        for (role, r) in &other.reserved {
            if r.is_empty() {
                continue;
            }
            self.reserved.entry(role.clone()).or_default().add_assign(r);
        }
    }

    pub fn checked_sub(&self, other: &ResourceSet) -> Result<ResourceSet, ResourceError> {
        if !self.contains(other) {
            return Err(ResourceError::NotContained { wanted: other.to_string(), available: self.to_string() });
        }
        let mut out = ResourceSet::unreserved(self.unreserved.checked_sub(&other.unreserved)?);
        for (role, mine) in &self.reserved {
            let left = match other.reserved.get(role) {
                Some(r) => mine.checked_sub(r)?,
                None => mine.clone(),
            };
            if !left.is_empty() {
                out.reserved.insert(role.clone(), left);
            }
        }
        Ok(out)
    }

    /// Parses `cpus:4;mem(analytics):1024;ports:[31000-31009,32000]`.
    /// Scalars may be fractional (`cpus:0.5`); a name may appear more than
    /// once (the values add up).
    pub fn parse(spec: &str) -> Result<ResourceSet, ResourceError> {
        let bad = |reason: String| ResourceError::BadSpec { spec: truncate(spec), reason };
        if spec.len() > MAX_SPEC_LEN {
            return Err(bad(format!("spec is {} bytes long; at most {MAX_SPEC_LEN} are allowed", spec.len())));
        }
        let mut out = ResourceSet::default();
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name_part, value) = item
                .split_once(':')
                .ok_or_else(|| bad(format!("{item:?} is not of the form name:value")))?;
            let name_part = name_part.trim();
            let value = value.trim();
            let (name, role) = match name_part.split_once('(') {
                Some((n, rest)) => {
                    let role = rest
                        .strip_suffix(')')
                        .ok_or_else(|| bad(format!("{name_part:?}: a role must be written name(role)")))?;
                    crate::ids::validate_id("role", role).map_err(bad)?;
                    (n.trim(), if role == "*" { None } else { Some(Role::new(role)) })
                }
                None => (name_part, None),
            };
            let bundle = match &role {
                Some(role) => out.reserved.entry(role.clone()).or_default(),
                None => &mut out.unreserved,
            };
            if name == "ports" {
                let ranges = parse_ranges(value).map_err(bad)?;
                bundle.ports = bundle.ports.add(&ranges);
            } else if let Some(slot) = bundle.scalar_mut(name) {
                let parsed: f64 = value
                    .parse()
                    .map_err(|_| bad(format!("{name} value {value:?} is not a number")))?;
                let milli = Milli::from_f64(parsed).ok_or_else(|| {
                    bad(format!("{name} value {value:?} must be a finite number between 0 and {}", Milli::MAX.0 / 1000))
                })?;
                *slot = Milli(slot.0.saturating_add(milli.0).min(Milli::MAX.0));
            } else {
                return Err(bad(format!(
                    "unknown resource {name:?}; known resources are cpus, mem, disk, gpus and ports"
                )));
            }
        }
        out.reserved.retain(|_, r| !r.is_empty());
        Ok(out)
    }
}

fn truncate(spec: &str) -> String {
    if spec.len() <= 200 {
        return spec.to_owned();
    }
    let mut end = 200;
    while !spec.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &spec[..end])
}

fn parse_ranges(value: &str) -> Result<Ranges, String> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| format!("ports value {value:?} must be a list of ranges like [31000-32000]"))?;
    let mut list = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (b, e) = match part.split_once('-') {
            Some((b, e)) => (b.trim(), e.trim()),
            None => (part, part),
        };
        let parse = |s: &str| -> Result<u64, String> {
            let v: u64 = s.parse().map_err(|_| format!("port range {part:?}: {s:?} is not a whole number"))?;
            if v > Ranges::MAX_VALUE {
                return Err(format!("port range {part:?}: {v} is above {}", Ranges::MAX_VALUE));
            }
            Ok(v)
        };
        let (b, e) = (parse(b)?, parse(e)?);
        if b > e {
            return Err(format!("port range {part:?} ends before it begins"));
        }
        list.push((b, e));
    }
    Ok(Ranges::new(list))
}

impl fmt::Display for ResourceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_bundle(f, &self.unreserved, None)?;
        for (role, r) in &self.reserved {
            if !self.unreserved.is_empty() {
                f.write_str(";")?;
            }
            write_bundle(f, r, Some(role))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_mesos_agent_form() {
        let r = ResourceSet::parse("cpus:4;mem:8192;disk:20000;ports:[31000-32000]").unwrap();
        assert_eq!(r.unreserved.cpus, Milli::from_units(4));
        assert_eq!(r.unreserved.mem, Milli::from_units(8192));
        assert_eq!(r.unreserved.ports.count(), 1001);
        assert_eq!(r.to_string(), "cpus:4;mem:8192;disk:20000;ports:[31000-32000]");
    }

    #[test]
    fn parses_reservations_and_fractions() {
        let r = ResourceSet::parse("cpus:0.5; cpus(analytics):2 ;mem(*):10;ports:[1,3-4]").unwrap();
        assert_eq!(r.unreserved.cpus, Milli(500));
        assert_eq!(r.unreserved.mem, Milli::from_units(10));
        assert_eq!(r.reserved[&Role::new("analytics")].cpus, Milli::from_units(2));
        assert_eq!(r.to_string(), "cpus:0.5;mem:10;ports:[1,3-4];cpus(analytics):2");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |s: &str| ResourceSet::parse(s).unwrap_err().to_string();
        assert_eq!(err("cpus"), "resource spec \"cpus\": \"cpus\" is not of the form name:value");
        assert!(err("cpus:x").contains("cpus value \"x\" is not a number"));
        assert!(err("cpus:-1").contains("must be a finite number"));
        assert!(err("cpus:NaN").contains("must be a finite number"));
        assert!(err("bogus:1").contains("unknown resource \"bogus\""));
        assert!(err("ports:31000").contains("must be a list of ranges"));
        assert!(err("ports:[5-1]").contains("ends before it begins"));
        assert!(err("ports:[70000]").contains("above 65535"));
        assert!(err("cpus(a/b):1").contains("'/'"));
        assert!(err("cpus(x:1").contains("name(role)"));
        assert!(Resources::parse("cpus(a):1").unwrap_err().to_string().contains("not allowed here"));
    }

    #[test]
    fn subtraction_refuses_what_is_not_there() {
        let a = Resources::parse("cpus:1;ports:[10-20]").unwrap();
        let b = Resources::parse("cpus:2").unwrap();
        assert!(matches!(a.checked_sub(&b), Err(ResourceError::NotContained { .. })));
        let c = Resources::parse("ports:[15]").unwrap();
        assert_eq!(a.checked_sub(&c).unwrap().ports, Ranges::new([(10, 14), (16, 20)]));
    }

    fn arb_resources() -> impl Strategy<Value = Resources> {
        (0u64..10_000, 0u64..100_000, 0u64..10, prop::collection::vec((0u64..1000, 0u64..20), 0..4)).prop_map(
            |(c, m, g, ports)| Resources {
                cpus: Milli(c),
                mem: Milli(m),
                disk: Milli::ZERO,
                gpus: Milli(g),
                ports: Ranges::new(ports.into_iter().map(|(b, l)| (b, b + l))),
            },
        )
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in arb_resources(), b in arb_resources()) {
            let sum = a.add(&b);
            prop_assert!(sum.contains(&a));
            prop_assert!(sum.contains(&b));
            let back = sum.checked_sub(&b).unwrap();
            // Ports overlapping between a and b collapse in the sum, so only
            // scalars are an exact identity.
            prop_assert_eq!(back.cpus, a.cpus);
            prop_assert_eq!(back.mem, a.mem);
            prop_assert_eq!(back.gpus, a.gpus);
        }

        #[test]
        fn display_round_trips(a in arb_resources()) {
            let text = a.to_string();
            prop_assert_eq!(Resources::parse(&text).unwrap(), a);
        }

        #[test]
        fn parse_never_panics(s in ".{0,64}") {
            let _ = ResourceSet::parse(&s);
        }
    }
}
