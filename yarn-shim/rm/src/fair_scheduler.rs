//! Queues from a Hadoop administrator's `fair-scheduler.xml` (the Fair
//! Scheduler's allocation file), read into the same queue tree as a
//! `capacity-scheduler.xml` ([`CapacityScheduler`]), so that the shim
//! serves both alike.
//!
//! Read per `<queue>` (or the old `<pool>`), nested to any depth:
//! `weight` (the share among its siblings: the broker role's weight),
//! `minResources` (a guarantee, with `yarn-shim.preemption.enabled`, as
//! the Fair Scheduler's min share is enforced by preemption),
//! `maxResources` (a limit), `maxRunningApps`, `maxAMShare`,
//! `schedulingPolicy` (between a parent's children the broker's weighted
//! DRF, whatever it names; in a leaf, how its applications are served:
//! `fair` and `drf` least use first, the default, `fifo` in submission
//! order), `aclSubmitApps`, `aclAdministerApps`; at the top
//! `queueMaxAppsDefault`, `queueMaxAMShareDefault`,
//! `queueMaxResourcesDefault` and `defaultQueueSchedulingPolicy`. Resources
//! are written as Hadoop does: `1024 mb, 2 vcores`, `memory-mb=1024,
//! vcores=2`, or shares of the cluster (`50%`, `50% memory, 25% cpu`,
//! `memory-mb=50%, vcores=25%`). `root.default` exists whether declared or
//! not, as in the Fair Scheduler. The `queuePlacementPolicy` places
//! submissions (Hadoop 3.2's rules: `specified`, `user`, `primaryGroup`,
//! `secondaryGroupExistingQueue`, `nestedUserQueue`, `default`, `reject`,
//! with `create`: a queue a rule creates becomes a new leaf weighted 1, and
//! a new broker role); without one an application goes to the queue it
//! names, `default` if none. Everything else (users' limits, preemption
//! timeouts and thresholds, reservations) is reported by name with its
//! file and line, never silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use weir_model::Milli;

use crate::capacity_scheduler::{Amounts, Bound, CapacityError, CapacityScheduler, PlacementRule, QueueConf, QueueState, Source, MAX_QUEUES, ROOT};

/// The largest allocation file read.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// Elements nest at most this deep.
const MAX_DEPTH: usize = 32;
/// The Fair Scheduler's defaults.
const DEFAULT_MAX_AM_SHARE: f64 = 0.5;

/// One element of the file: name, attributes, text, children, line.
#[derive(Debug)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
    line: u64,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Whether `bytes` are a Fair Scheduler allocation file (its first element
/// is `<allocations>`), not a Hadoop `<configuration>`.
pub fn is_allocation_file(bytes: &[u8]) -> bool {
    let mut reader = Reader::from_reader(bytes);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => return e.name().as_ref() == b"allocations",
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// Reads an allocation file from disk (at most [`MAX_FILE_BYTES`]).
pub fn load(path: &Path) -> Result<CapacityScheduler, CapacityError> {
    let bytes = read_bounded(path)?;
    parse(&bytes, path)
}

pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, CapacityError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| CapacityError::Conf(format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CapacityError::Conf(format!("{}: {e}", path.display())))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(CapacityError::Conf(format!("{}: larger than {MAX_FILE_BYTES} bytes", path.display())));
    }
    Ok(bytes)
}

/// Parses an allocation file's bytes; `file` names it in messages.
pub fn parse(bytes: &[u8], file: &Path) -> Result<CapacityScheduler, CapacityError> {
    let root = document(bytes, file)?;
    Reading { file, unsupported: Vec::new(), queues: Vec::new(), weights: BTreeMap::new(), placement: Vec::new() }.allocations(&root)
}

fn document(bytes: &[u8], file: &Path) -> Result<Element, CapacityError> {
    let line_at = |pos: u64| bytes[..(pos as usize).min(bytes.len())].iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let bad = |pos: u64, why: String| CapacityError::Conf(format!("{}:{}: {why}", file.display(), line_at(pos)));
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<Element> = Vec::new();
    let mut elements = 0usize;
    let mut done: Option<Element> = None;
    loop {
        let pos = reader.buffer_position();
        let event = reader.read_event().map_err(|e| bad(reader.error_position(), format!("not well-formed XML: {e}")))?;
        let open = |e: &quick_xml::events::BytesStart| -> Result<Element, CapacityError> {
            let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
            let mut attrs = Vec::new();
            for a in e.attributes() {
                let a = a.map_err(|err| bad(pos, format!("<{name}>: a bad attribute: {err}")))?;
                let value = a.unescape_value().map_err(|err| bad(pos, format!("<{name}>: a bad attribute value: {err}")))?;
                attrs.push((String::from_utf8_lossy(a.key.as_ref()).into_owned(), value.into_owned()));
            }
            Ok(Element { name, attrs, text: String::new(), children: Vec::new(), line: line_at(pos) })
        };
        match event {
            Event::Start(e) | Event::Empty(e) if done.is_some() => {
                return Err(bad(pos, format!("<{}> after the document's end", String::from_utf8_lossy(e.name().as_ref()))));
            }
            Event::Start(e) => {
                elements += 1;
                if stack.len() >= MAX_DEPTH || elements > MAX_QUEUES * 32 {
                    return Err(bad(pos, format!("more than {MAX_DEPTH} levels or too many elements")));
                }
                stack.push(open(&e)?);
            }
            Event::Empty(e) => {
                elements += 1;
                let element = open(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => done = Some(finish(element, file)?),
                }
            }
            Event::End(_) => {
                let Some(element) = stack.pop() else { return Err(bad(pos, "a closing tag without its opening".into())) };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => done = Some(finish(element, file)?),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let text = t.decode().map_err(|e| bad(pos, format!("text that is not UTF-8: {e}")))?;
                    top.text.push_str(&text);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = String::from_utf8_lossy(&r).into_owned();
                    let c = match name.as_str() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => return Err(bad(pos, format!("unknown entity &{name};"))),
                    };
                    top.text.push(c);
                }
            }
            Event::Eof => {
                return match done {
                    Some(root) if stack.is_empty() => Ok(root),
                    _ if stack.is_empty() => Err(bad(pos, "no <allocations> element".into())),
                    _ => Err(bad(pos, "the file ends inside an element".into())),
                };
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

fn finish(root: Element, file: &Path) -> Result<Element, CapacityError> {
    if root.name != "allocations" {
        return Err(CapacityError::Conf(format!("{}:{}: the root element is <{}>, not <allocations>", file.display(), root.line, root.name)));
    }
    Ok(root)
}

/// Queue settings that default from the top of the file.
#[derive(Clone, Copy)]
struct Defaults {
    max_apps: u32,
    max_am_share: f64,
    max_resources: Option<Bound>,
    /// `defaultQueueSchedulingPolicy` is not fifo.
    fair_ordering: bool,
}

struct Reading<'a> {
    file: &'a Path,
    unsupported: Vec<String>,
    queues: Vec<QueueConf>,
    weights: BTreeMap<String, f64>,
    placement: Vec<PlacementRule>,
}

/// A queue as written, before its share of its parent is known.
struct Parsed {
    conf: QueueConf,
    weight: f64,
    children: Vec<Parsed>,
}

impl Reading<'_> {
    fn at(&self, e: &Element) -> String {
        format!("{}:{}", self.file.display(), e.line)
    }

    fn value_error(&self, e: &Element, message: String) -> CapacityError {
        CapacityError::Value { at: self.at(e), key: e.name.clone(), message }
    }

    fn report(&mut self, e: &Element, why: &str) {
        self.unsupported.push(format!("{}: {} ({why})", self.at(e), e.name));
    }

    fn number(&self, e: &Element, lo: f64, hi: f64) -> Result<f64, CapacityError> {
        let v: f64 = e.text.trim().parse().map_err(|_| self.value_error(e, format!("{:?} is not a number", e.text.trim())))?;
        if !v.is_finite() || v < lo || v > hi {
            return Err(self.value_error(e, format!("{v} is not within {lo}..={hi}")));
        }
        Ok(v)
    }

    fn allocations(mut self, root: &Element) -> Result<CapacityScheduler, CapacityError> {
        let mut defaults = Defaults { max_apps: u32::MAX, max_am_share: DEFAULT_MAX_AM_SHARE, max_resources: None, fair_ordering: true };
        let mut top: Vec<&Element> = Vec::new();
        for e in &root.children {
            match e.name.as_str() {
                "queue" | "pool" => top.push(e),
                "queueMaxAppsDefault" => defaults.max_apps = self.number(e, 0.0, f64::from(u32::MAX))? as u32,
                "queueMaxAMShareDefault" => defaults.max_am_share = self.am_share(e)?,
                "queueMaxResourcesDefault" => defaults.max_resources = Some(self.bound(e)?),
                "defaultQueueSchedulingPolicy" => defaults.fair_ordering = self.policy(e)? != "fifo",
                "queuePlacementPolicy" => self.placement = self.placement_policy(e)?,
                _ => self.report(e, "not supported by Weir; ignored"),
            }
        }
        // The file may name root itself, or list root's children.
        let declared_root = top.iter().find(|e| e.attr("name") == Some(ROOT)).copied();
        let root_queue = match declared_root {
            Some(r) => {
                if top.len() > 1 {
                    return Err(CapacityError::Tree(format!("{}: queues beside root: declare them inside <queue name=\"root\">", self.at(r))));
                }
                self.queue(r, ROOT.to_owned(), defaults, true)?
            }
            None => {
                let mut children = Vec::new();
                for e in top {
                    let name = self.name_of(e)?;
                    children.push(self.queue(e, format!("{ROOT}.{name}"), defaults, false)?);
                }
                Parsed { conf: blank(ROOT.to_owned(), defaults), weight: 1.0, children }
            }
        };
        let mut root_queue = root_queue;
        // The Fair Scheduler's root.default, whether declared or not.
        if !root_queue.children.iter().any(|c| c.conf.name == "default") {
            root_queue.children.push(Parsed { conf: blank(format!("{ROOT}.default"), defaults), weight: 1.0, children: Vec::new() });
        }
        self.flatten(root_queue, 1.0, 1.0)?;

        let mut leaves: BTreeMap<&str, &str> = BTreeMap::new();
        for leaf in self.queues.iter().filter(|q| q.is_leaf()) {
            if let Some(other) = leaves.insert(&leaf.name, &leaf.path) {
                return Err(CapacityError::Tree(format!("leaf queue name {} is used twice ({other} and {})", leaf.name, leaf.path)));
            }
        }
        Ok(CapacityScheduler {
            queues: self.queues,
            mappings: Vec::new(),
            placement: self.placement,
            weights: self.weights,
            unsupported: self.unsupported,
            source: Source::Fair,
            memory_only: false,
        })
    }

    /// A `queuePlacementPolicy`: its rules in order; the last must place
    /// every application, and none may come after one that does (Hadoop's
    /// checks).
    fn placement_policy(&mut self, e: &Element) -> Result<Vec<PlacementRule>, CapacityError> {
        let mut rules = Vec::new();
        for c in &e.children {
            if c.name != "rule" {
                self.report(c, "not a placement rule; ignored");
                continue;
            }
            if let Some(last) = rules.last().filter(|r: &&PlacementRule| r.is_terminal()) {
                return Err(self.value_error(c, format!("rules after rule {} in the queue placement policy can never be reached", last.name())));
            }
            rules.push(self.rule(c, false)?);
        }
        match rules.last() {
            None => Err(self.value_error(e, "a queue placement policy without rules".into())),
            Some(last) if !last.is_terminal() => {
                Err(self.value_error(e, format!("an application could get past the last rule ({}) without a queue: end with one that always places (default, reject, or user/primaryGroup with create)", last.name())))
            }
            Some(_) => Ok(rules),
        }
    }

    fn rule(&mut self, e: &Element, nested: bool) -> Result<PlacementRule, CapacityError> {
        let create = match e.attr("create") {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => return Err(self.value_error(e, format!("create={other:?} is neither true nor false"))),
        };
        let name = e.attr("name").unwrap_or_default();
        let rule = match name {
            "specified" => PlacementRule::Specified { create },
            "user" => PlacementRule::User { create },
            "primaryGroup" => PlacementRule::PrimaryGroup { create },
            "secondaryGroupExistingQueue" => PlacementRule::SecondaryGroupExistingQueue,
            "nestedUserQueue" if !nested => {
                let inner: Vec<&Element> = e.children.iter().filter(|c| c.name == "rule").collect();
                let [inner] = inner[..] else { return Err(self.value_error(e, "nestedUserQueue holds exactly one rule, the parent's".into())) };
                PlacementRule::NestedUserQueue { parent: Box::new(self.rule(inner, true)?), create }
            }
            "default" => {
                let queue = e.attr("queue").unwrap_or("root.default").trim();
                let ok = !queue.is_empty()
                    && queue.len() <= 256
                    && queue.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                if !ok {
                    return Err(self.value_error(e, format!("{queue:?} is not a queue name")));
                }
                PlacementRule::Default { queue: queue.to_owned(), create }
            }
            "reject" if !nested => PlacementRule::Reject,
            other => return Err(self.value_error(e, format!("{other:?} is not a placement rule Weir knows (specified, user, primaryGroup, secondaryGroupExistingQueue, nestedUserQueue, default, reject)"))),
        };
        Ok(rule)
    }

    fn name_of(&self, e: &Element) -> Result<String, CapacityError> {
        let Some(name) = e.attr("name") else { return Err(self.value_error(e, "a queue without a name attribute".into())) };
        let ok = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok || name == ROOT {
            return Err(self.value_error(e, format!("{name:?} is not a queue name")));
        }
        Ok(name.to_owned())
    }

    fn queue(&mut self, e: &Element, path: String, defaults: Defaults, is_root: bool) -> Result<Parsed, CapacityError> {
        if self.queues.len() + 1 > MAX_QUEUES {
            return Err(CapacityError::Tree(format!("more than {MAX_QUEUES} queues")));
        }
        let mut conf = blank(path.clone(), defaults);
        let mut weight = 1.0;
        let mut children = Vec::new();
        let mut leaf_policy = None;
        for c in &e.children {
            match c.name.as_str() {
                "queue" | "pool" => {
                    let name = self.name_of(c)?;
                    if children.iter().any(|p: &Parsed| p.conf.name == name) {
                        return Err(self.value_error(c, format!("queue {name:?} is declared twice in {path}")));
                    }
                    children.push(self.queue(c, format!("{path}.{name}"), defaults, false)?);
                }
                "weight" => weight = self.number(c, 0.0, 1e6)?,
                "minResources" => conf.min_resources = Some(self.bound(c)?),
                "maxResources" => conf.max_resources = Some(self.bound(c)?),
                "maxRunningApps" => conf.maximum_applications = self.number(c, 0.0, f64::from(u32::MAX))? as u32,
                "maxAMShare" => conf.maximum_am_resource_percent = self.am_share(c)?,
                "schedulingPolicy" => leaf_policy = Some(self.policy(c)?),
                "aclSubmitApps" => conf.acl_submit_applications = c.text.trim().to_owned(),
                "aclAdministerApps" => conf.acl_administer_queue = c.text.trim().to_owned(),
                _ => self.report(c, "not supported by Weir; ignored"),
            }
        }
        if is_root && weight != 1.0 {
            self.report(e, "root's weight means nothing; ignored");
        }
        if let (Some(min), Some(max)) = (conf.min_resources, conf.max_resources) {
            if let (Bound::Absolute(min), Bound::Absolute(max)) = (min, max) {
                if min.cpus > max.cpus || min.mem > max.mem {
                    return Err(CapacityError::Tree(format!("{}: queue {path}: minResources are above maxResources", self.at(e))));
                }
            }
        }
        // A leaf's policy orders its applications: fifo in submission
        // order, fair and drf least use first. A parent's is DRF between
        // its children, whatever it names.
        if let Some(policy) = leaf_policy {
            conf.fair_ordering = policy != "fifo";
        }
        Ok(Parsed { conf, weight, children })
    }

    /// Pushes `p` and its subtree into `queues`, parents first, with its
    /// share of its parent (its weight over its siblings').
    fn flatten(&mut self, p: Parsed, parent_abs: f64, share: f64) -> Result<(), CapacityError> {
        let Parsed { mut conf, children, weight } = p;
        self.weights.insert(conf.path.clone(), weight);
        let is_root = conf.path == ROOT;
        conf.capacity = if is_root { 1.0 } else { share };
        conf.absolute_capacity = if is_root { 1.0 } else { parent_abs * share };
        conf.children = children.iter().map(|c| c.conf.path.clone()).collect();
        let sum: f64 = children.iter().map(|c| c.weight).sum();
        let abs = conf.absolute_capacity;
        self.queues.push(conf);
        for c in children {
            let share = if sum > 0.0 { c.weight / sum } else { 0.0 };
            self.flatten(c, abs, share)?;
        }
        Ok(())
    }

    fn am_share(&self, e: &Element) -> Result<f64, CapacityError> {
        // -1: no check, as in Hadoop.
        if e.text.trim() == "-1" || e.text.trim() == "-1.0" {
            return Ok(1.0);
        }
        self.number(e, 0.0, 1.0)
    }

    fn policy(&self, e: &Element) -> Result<&'static str, CapacityError> {
        let v = e.text.trim();
        let short = v.rsplit('.').next().unwrap_or(v).to_ascii_lowercase();
        match short.as_str() {
            "fair" | "fairsharepolicy" => Ok("fair"),
            "drf" | "dominantresourcefairnesspolicy" => Ok("drf"),
            "fifo" | "fifopolicy" => Ok("fifo"),
            _ => Err(self.value_error(e, format!("{v:?} is not fair, drf or fifo"))),
        }
    }

    fn bound(&self, e: &Element) -> Result<Bound, CapacityError> {
        parse_resources(e.text.trim()).map_err(|why| self.value_error(e, format!("{:?}: {why}", e.text.trim())))
    }
}

/// A queue with the Fair Scheduler's defaults.
fn blank(path: String, d: Defaults) -> QueueConf {
    let name = path.rsplit('.').next().unwrap_or(&path).to_owned();
    QueueConf {
        name,
        path,
        capacity: 1.0,
        maximum_capacity: 1.0,
        absolute_capacity: 1.0,
        absolute_maximum_capacity: 1.0,
        state: QueueState::Running,
        user_limit_factor: None,
        minimum_user_limit_percent: 100.0,
        fair_ordering: d.fair_ordering,
        maximum_applications: d.max_apps,
        maximum_am_resource_percent: d.max_am_share,
        // The Fair Scheduler's default: everyone may submit and administer.
        acl_submit_applications: "*".to_owned(),
        acl_administer_queue: "*".to_owned(),
        children: Vec::new(),
        min_resources: None,
        max_resources: d.max_resources,
    }
}

/// Hadoop's ways of writing resources: `1024 mb, 2 vcores`, `memory-mb=1024,
/// vcores=2` (either may be left out, as zero), `50%` (of every kind),
/// `50% memory, 25% cpu`, `memory-mb=50%, vcores=25%`.
pub fn parse_resources(text: &str) -> Result<Bound, String> {
    let lower = text.to_ascii_lowercase();
    if lower.is_empty() {
        return Err("empty".into());
    }
    let percent = |s: &str| -> Result<f64, String> {
        let v: f64 = s.trim().trim_end_matches('%').trim().parse().map_err(|_| format!("{s:?} is not a percentage"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("{v}% is not within 0..=100"));
        }
        Ok(v / 100.0)
    };
    let amount = |s: &str| -> Result<u64, String> {
        let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
        if !v.is_finite() || v < 0.0 || v > 1e15 {
            return Err(format!("{v} is not a non-negative amount"));
        }
        Ok((v * 1000.0).round() as u64)
    };
    let parts: Vec<&str> = lower.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.len() == 1 && !parts[0].contains('=') && parts[0].ends_with('%') {
        let f = percent(parts[0])?;
        return Ok(Bound::Share { cpus: f, mem: f });
    }
    let (mut cpus, mut mem) = (None, None);
    let mut shares = None;
    for part in parts {
        let (kind, value, share) = if let Some((k, v)) = part.split_once('=') {
            (k.trim(), v.trim(), v.trim().ends_with('%'))
        } else {
            // `1024 mb`, `0vcores`, `50% memory`: the amount, then the kind.
            let Some(at) = part.find(|c: char| c.is_ascii_alphabetic()) else { return Err(format!("{part:?} is not AMOUNT KIND")) };
            let (v, k) = part.split_at(at);
            (k.trim(), v.trim(), v.contains('%'))
        };
        match shares {
            None => shares = Some(share),
            Some(s) if s != share => return Err("shares and amounts are mixed".into()),
            Some(_) => {}
        }
        let slot = match kind {
            "mb" | "memory-mb" | "memory" => &mut mem,
            "vcores" | "cpu" | "vcore" => &mut cpus,
            other => return Err(format!("{other:?} is not a resource Weir knows (memory-mb, vcores)")),
        };
        if slot.is_some() {
            return Err(format!("{kind} is given twice"));
        }
        *slot = Some(value.to_owned());
    }
    if shares == Some(true) {
        return Ok(Bound::Share { cpus: cpus.map_or(Ok(0.0), |v| percent(&v))?, mem: mem.map_or(Ok(0.0), |v| percent(&v))? });
    }
    Ok(Bound::Absolute(Amounts { cpus: Milli(cpus.map_or(Ok(0), |v| amount(&v))?), mem: Milli(mem.map_or(Ok(0), |v| amount(&v))?) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity_scheduler::{Placed, QueuePolicy};

    fn parse_str(xml: &str) -> Result<CapacityScheduler, CapacityError> {
        parse(xml.as_bytes(), Path::new("fair-scheduler.xml"))
    }

    /// The example of Hadoop's Fair Scheduler documentation, in substance.
    const EXAMPLE: &str = r#"<?xml version="1.0"?>
<allocations>
  <queue name="sample_queue">
    <minResources>10000 mb,0vcores</minResources>
    <maxResources>90000 mb,0vcores</maxResources>
    <maxRunningApps>50</maxRunningApps>
    <maxAMShare>0.1</maxAMShare>
    <weight>2.0</weight>
    <schedulingPolicy>fair</schedulingPolicy>
    <queue name="sample_sub_queue">
      <aclSubmitApps>charlie</aclSubmitApps>
      <minResources>5000 mb,0vcores</minResources>
    </queue>
    <queue name="sample_reservable_queue">
      <reservation></reservation>
    </queue>
  </queue>
  <queueMaxAMShareDefault>0.5</queueMaxAMShareDefault>
  <queueMaxResourcesDefault>40000 mb,0vcores</queueMaxResourcesDefault>
  <user name="sample_user">
    <maxRunningApps>30</maxRunningApps>
  </user>
  <userMaxAppsDefault>5</userMaxAppsDefault>
  <queuePlacementPolicy>
    <rule name="specified" />
    <rule name="primaryGroup" create="false" />
    <rule name="nestedUserQueue">
        <rule name="secondaryGroupExistingQueue" create="false" />
    </rule>
    <rule name="default" queue="sample_queue"/>
  </queuePlacementPolicy>
</allocations>
"#;

    #[test]
    fn hadoops_example_gives_the_tree_weights_quotas_and_names_what_is_not_supported() {
        let fs = parse_str(EXAMPLE).unwrap();
        let paths: Vec<&str> = fs.queues.iter().map(|q| q.path.as_str()).collect();
        assert_eq!(paths, ["root", "root.sample_queue", "root.sample_queue.sample_sub_queue", "root.sample_queue.sample_reservable_queue", "root.default"]);
        assert_eq!(fs.roles(), ["sample_queue/sample_sub_queue", "sample_queue/sample_reservable_queue", "default"]);
        let sq = fs.queue("root.sample_queue").unwrap();
        assert!((sq.capacity - 2.0 / 3.0).abs() < 1e-9, "weight 2 beside default's 1");
        assert_eq!((sq.maximum_applications, sq.maximum_am_resource_percent), (50, 0.1));
        assert_eq!(fs.queue("sample_sub_queue").unwrap().acl_submit_applications, "charlie");
        assert_eq!(fs.queue("default").unwrap().maximum_am_resource_percent, 0.5);
        let mb = |m: u64| Amounts { cpus: Milli(0), mem: Milli(m * 1000) };
        assert_eq!(sq.min_resources, Some(Bound::Absolute(mb(10_000))));
        assert_eq!(sq.max_resources, Some(Bound::Absolute(mb(90_000))));
        // queueMaxResourcesDefault reaches the queues without their own.
        assert_eq!(fs.queue("default").unwrap().max_resources, Some(Bound::Absolute(mb(40_000))));

        let cluster = Amounts { cpus: Milli(64_000), mem: Milli(200_000_000) };
        let policies = fs.policies(cluster, true, &|_| true);
        let by_role: BTreeMap<&str, &QueuePolicy> = policies.iter().map(|p| (p.role.as_str(), p)).collect();
        assert_eq!(by_role["sample_queue"].guarantee, Some(mb(10_000)));
        assert_eq!(by_role["sample_queue/sample_sub_queue"].guarantee, Some(mb(5_000)));
        assert_eq!(by_role["sample_queue"].limit, Some(Amounts { cpus: cluster.cpus, mem: Milli(90_000_000) }));
        assert_eq!(by_role["default"].guarantee, None);
        assert!((by_role["sample_queue"].weight - by_role["default"].weight * 2.0).abs() < 1e-5);
        // Without preemption, minResources are not guarantees.
        assert!(fs.policies(cluster, false, &|_| true).iter().all(|p| p.guarantee.is_none()));

        let reported: Vec<&str> = fs.unsupported.iter().map(|u| u.split(": ").nth(1).unwrap_or("")).collect();
        // sample_queue's `fair` is between its children: what the broker does.
        for key in ["reservation (", "user (", "userMaxAppsDefault ("] {
            assert!(reported.iter().any(|r| r.starts_with(key)), "{key} not reported: {:?}", fs.unsupported);
        }
        // Its placement policy is read, and places as Hadoop's would.
        assert!(!reported.iter().any(|r| r.starts_with("queuePlacementPolicy")), "{:?}", fs.unsupported);
        assert_eq!(fs.placement.len(), 4);
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // specified: an existing leaf, or one to create.
        assert_eq!(fs.place("alice", &groups(&["staff"]), "sample_sub_queue"), Ok(Placed::Queue("sample_sub_queue".into())));
        assert_eq!(fs.place("alice", &groups(&["staff"]), "adhoc"), Ok(Placed::Create("root.adhoc".into())));
        assert_eq!(fs.place("alice", &groups(&["staff"]), "root.sample_queue.sample_sub_queue"), Ok(Placed::Queue("sample_sub_queue".into())));
        // Not named (default): primaryGroup without create needs an
        // existing queue, so sample_queue (a parent) does not take it;
        // nestedUserQueue needs a secondary group's existing queue; the
        // default rule sends it to sample_queue, a parent: rejected.
        assert!(fs.place("alice", &groups(&["staff"]), "default").is_err());
        // A secondary group whose queue exists (sample_queue, a parent):
        // the nested user queue below it, created.
        assert_eq!(fs.place("alice", &groups(&["staff", "sample_queue"]), ""), Ok(Placed::Create("root.sample_queue.alice".into())));
        assert_eq!(fs.place("bob", &groups(&["default"]), ""), Ok(Placed::Queue("default".into())));
    }

    #[test]
    fn placement_rules_place_create_and_reject_as_hadoops_do() {
        let file = |rules: &str| {
            format!("<allocations><queue name=\"eng\"><weight>3</weight><queue name=\"batch\"/></queue><queue name=\"ops\"/><queuePlacementPolicy>{rules}</queuePlacementPolicy></allocations>")
        };
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let fs = parse_str(&file(r#"<rule name="specified" create="false"/><rule name="primaryGroup" create="false"/><rule name="secondaryGroupExistingQueue"/><rule name="nestedUserQueue"><rule name="default" queue="eng"/></rule><rule name="reject"/>"#)).unwrap();
        assert_eq!(fs.place("ann", &groups(&["x"]), "batch"), Ok(Placed::Queue("batch".into())));
        assert_eq!(fs.place("ann", &groups(&["ops"]), ""), Ok(Placed::Queue("ops".into())));
        assert_eq!(fs.place("ann", &groups(&["x", "y", "ops"]), "default"), Ok(Placed::Queue("ops".into())));
        // Nothing else: a queue for ann below eng, created (dots in names
        // become _dot_).
        assert_eq!(fs.place("ann.lee", &groups(&["x"]), "nope"), Ok(Placed::Create("root.eng.ann_dot_lee".into())));
        // The new leaf is weighed 1 beside batch (1): half of eng's 3/5.
        let grown = fs.with_leaf("root.eng.ann_dot_lee").unwrap();
        assert!((grown.queue("ann_dot_lee").unwrap().absolute_capacity - 0.6 * 0.5).abs() < 1e-9);
        assert!((grown.queue("batch").unwrap().absolute_capacity - 0.6 * 0.5).abs() < 1e-9);
        assert_eq!(grown.roles(), ["eng/batch", "eng/ann_dot_lee", "ops", "default"]);
        // A user queue at the top, with its own new parent.
        let fs = parse_str(&file(r#"<rule name="nestedUserQueue"><rule name="primaryGroup"/></rule><rule name="reject"/>"#)).unwrap();
        assert_eq!(fs.place("ann", &groups(&["dev"]), ""), Ok(Placed::Create("root.dev.ann".into())));
        let grown = fs.with_leaf("root.dev.ann").unwrap();
        assert!(grown.queue("root.dev").is_some_and(|q| !q.is_leaf()));
        assert!((grown.queue("ann").unwrap().absolute_capacity - 1.0 / 6.0).abs() < 1e-9, "dev weighs 1 beside eng 3, ops 1, default 1");
        // A leaf cannot be a parent; nothing else places: rejected.
        assert!(fs.place("ann", &groups(&["ops"]), "").unwrap_err().contains("rejected by queue placement policy"));
        // Hadoop's checks on the policy itself.
        let err = |rules: &str| parse_str(&file(rules)).unwrap_err().to_string();
        assert!(err(r#"<rule name="specified"/>"#).contains("could get past the last rule (specified)"));
        assert!(err(r#"<rule name="default"/><rule name="user"/>"#).contains("rules after rule default"));
        assert!(err(r#"<rule name="lottery"/>"#).contains("is not a placement rule"));
        assert!(err(r#"<rule name="user" create="maybe"/>"#).contains("neither true nor false"));
        assert!(err(r#"<rule name="default" queue="a..b"/>"#).contains("is not a queue name"));
    }

    #[test]
    fn resources_are_read_as_hadoop_writes_them() {
        let abs = |c: u64, m: u64| Ok(Bound::Absolute(Amounts { cpus: Milli(c * 1000), mem: Milli(m * 1000) }));
        assert_eq!(parse_resources("1024 mb, 2 vcores"), abs(2, 1024));
        assert_eq!(parse_resources("2vcores,1024mb"), abs(2, 1024));
        assert_eq!(parse_resources("memory-mb=4096, vcores=4"), abs(4, 4096));
        assert_eq!(parse_resources("vcores=4"), abs(4, 0));
        assert_eq!(parse_resources("50%"), Ok(Bound::Share { cpus: 0.5, mem: 0.5 }));
        assert_eq!(parse_resources("50% memory, 25% cpu"), Ok(Bound::Share { cpus: 0.25, mem: 0.5 }));
        assert_eq!(parse_resources("memory-mb=50%, vcores=25%"), Ok(Bound::Share { cpus: 0.25, mem: 0.5 }));
        assert!(parse_resources("1024 mb, 2 gpus").unwrap_err().contains("\"gpus\" is not a resource"));
        assert!(parse_resources("50% memory, 2 vcores").unwrap_err().contains("mixed"));
        assert!(parse_resources("150%").unwrap_err().contains("not within"));
        assert!(parse_resources("lots").is_err());
        assert!(parse_resources("1 mb, 2 mb").unwrap_err().contains("twice"));
    }

    #[test]
    fn bad_files_say_where_and_why() {
        let err = |xml: &str| parse_str(xml).unwrap_err().to_string();
        assert_eq!(err("<configuration/>"), "fair-scheduler.xml:1: the root element is <configuration>, not <allocations>");
        assert!(err("<allocations>\n<queue name=\"a\">\n<weight>heavy</weight></queue></allocations>").starts_with("fair-scheduler.xml:3: weight: \"heavy\" is not a number"));
        assert!(err("<allocations><queue><weight>1</weight></queue></allocations>").contains("a queue without a name"));
        assert!(err("<allocations><queue name=\"a.b\"/></allocations>").contains("\"a.b\" is not a queue name"));
        assert!(err("<allocations><queue name=\"a\"><schedulingPolicy>lottery</schedulingPolicy></queue></allocations>").contains("is not fair, drf or fifo"));
        assert!(err("<allocations><queue name=\"a\"><minResources>9 mb,1vcores</minResources><maxResources>8 mb,1vcores</maxResources></queue></allocations>").contains("above maxResources"));
        assert!(err("<allocations><queue name=\"x\"><queue name=\"q\"/></queue><queue name=\"y\"><queue name=\"q\"/></queue></allocations>").contains("leaf queue name q is used twice"));
        assert!(err("<allocations><queue name=\"a\">").contains("ends inside an element"));
        assert!(err("<allocations></allocations><more/>").contains("after the document's end"));
        let deep = "<queue name=\"q\">".repeat(40) + &"</queue>".repeat(40);
        assert!(err(&format!("<allocations>{deep}</allocations>")).contains("levels"));
    }

    #[test]
    fn a_declared_root_holds_the_queues_and_default_is_always_there() {
        let fs = parse_str("<allocations><queue name=\"root\"><queue name=\"prod\"><weight>3</weight><schedulingPolicy>drf</schedulingPolicy></queue><queue name=\"default\"/></queue></allocations>").unwrap();
        // prod is a leaf: drf serves its applications least use first.
        assert!(fs.unsupported.is_empty(), "{:?}", fs.unsupported);
        assert!(fs.queue("prod").unwrap().fair_ordering);
        let paths: Vec<&str> = fs.queues.iter().map(|q| q.path.as_str()).collect();
        assert_eq!(paths, ["root", "root.prod", "root.default"]);
        assert!((fs.queue("prod").unwrap().capacity - 0.75).abs() < 1e-9);
        assert!(is_allocation_file(b"<?xml version=\"1.0\"?>\n<!-- x -->\n<allocations/>"));
        assert!(!is_allocation_file(b"<configuration/>"));
    }

    proptest::proptest! {
        /// Any bytes: an answer, never a panic.
        #[test]
        fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&bytes, Path::new("f.xml"));
        }

        /// Any mix of queue elements over a small tree: read or refused,
        /// and shares in a read tree add up under each parent.
        #[test]
        fn any_tree_is_read_or_refused_and_shares_add_up(
            entries in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["weight", "minResources", "maxResources", "maxRunningApps", "maxAMShare", "schedulingPolicy", "bogus"]),
                    proptest::sample::select(vec!["1", "0", "2.5", "-1", "50%", "1024 mb, 1 vcores", "fifo", "drf", "x", "NaN", "1e400"]),
                ),
                0..12,
            ),
            nested in proptest::prelude::any::<bool>(),
        ) {
            let body: String = entries.iter().map(|(k, v)| format!("<{k}>{v}</{k}>")).collect();
            let inner = if nested { format!("<queue name=\"b\">{body}</queue><queue name=\"c\"/>") } else { String::new() };
            let xml = format!("<allocations><queue name=\"a\">{body}{inner}</queue></allocations>");
            if let Ok(fs) = parse_str(&xml) {
                for parent in fs.queues.iter().filter(|q| !q.is_leaf()) {
                    let sum: f64 = fs.queues.iter().filter(|q| parent.children.contains(&q.path)).map(|q| q.capacity).sum();
                    proptest::prop_assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-9, "{} children sum {sum}", parent.path);
                }
                let cluster = Amounts { cpus: Milli(8_000), mem: Milli(8_192_000) };
                proptest::prop_assert!(fs.policies(cluster, true, &|_| true).iter().all(|p| p.weight.is_finite() && p.weight > 0.0));
            }
        }
    }
}
