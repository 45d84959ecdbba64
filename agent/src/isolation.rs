//! Resource isolation with cgroups (v1 or v2, through `cgroups-rs`).
//!
//! Each task gets its own cgroup `weir/<agent>/<framework>/<task>` with a
//! hard memory limit from its `mem` and CPU shares plus a CFS quota from
//! its `cpus`. The task's supervisor joins the cgroup (writes itself into
//! `cgroup.procs`) before it starts the task, so the task never runs
//! outside it. After the task ends the agent reads the OOM-kill counter and
//! the peak usage, then deletes the cgroup.
//!
//! `agent.isolation = none` (or a machine without writable cgroups) runs
//! plain processes; the agent says so loudly at start.

use std::path::PathBuf;

use cgroups_rs::fs::cgroup_builder::CgroupBuilder;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{hierarchies, Cgroup};
use weir_model::Resources;

/// CFS period; the quota is `cpus × period`.
const CFS_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Cgroups,
}

impl Mode {
    pub fn parse(value: &str) -> Result<Mode, String> {
        match value.trim() {
            "none" => Ok(Mode::None),
            "cgroups" => Ok(Mode::Cgroups),
            other => Err(format!("agent.isolation {other:?} is not one of: cgroups, none")),
        }
    }
}

/// What a task used, for `/state` and the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub mem_bytes: u64,
    pub mem_peak_bytes: u64,
    pub mem_limit_bytes: u64,
}

/// Whether this machine lets the agent create cgroups; the reason if not.
pub fn available() -> Result<(), String> {
    let probe = format!("weir/probe-{}", std::process::id());
    let cg = CgroupBuilder::new(&probe)
        .memory()
        .done()
        .build(hierarchies::auto())
        .map_err(|e| format!("cannot create a cgroup: {e}"))?;
    let has_memory = cg.controller_of::<MemController>().is_some();
    let _ = cg.delete();
    if !has_memory {
        return Err("the memory controller is not available".to_owned());
    }
    Ok(())
}

/// This agent's corner of the cgroup tree: stable across restarts and
/// upgrades (it comes from the work directory, hashed with FNV-1a, whose
/// value never changes) and distinct for agents sharing a host.
pub fn scope_of(work_dir: &std::path::Path) -> String {
    let path = std::fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_owned());
    format!("agent-{:016x}", crate::fnv::fnv1a(path.to_string_lossy().as_bytes()))
}

/// The cgroup name of a task; `scope` keeps agents on one host apart.
pub fn name(scope: &str, framework: &str, task: &str) -> String {
    format!("weir/{scope}/{framework}/{task}")
}

/// The controllers a task's cgroup is made in: the ones it is limited and
/// measured by. Without the list `cgroups-rs` makes (and later removes) a
/// directory in every v1 hierarchy (cpuset, devices, freezer, blkio, pids,
/// …), nine per task here, which halved the launch rate.
fn controllers(v2: bool) -> Vec<String> {
    let names: &[&str] = if v2 { &["memory", "cpu"] } else { &["memory", "cpu", "cpuacct"] };
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Creates a task's cgroup with its limits; returns the `cgroup.procs`
/// files its supervisor must join.
pub fn create(name: &str, resources: &Resources) -> Result<Vec<PathBuf>, String> {
    // Held while the tree is built, so `destroy` cannot remove the
    // framework's directory between its creation and the task's.
    let _tree = TREE.lock().unwrap_or_else(|p| p.into_inner());
    let mem_bytes = (resources.mem.0 / 1000).saturating_mul(1024 * 1024);
    let cpus = resources.cpus.as_f64();
    let hierarchy = hierarchies::auto();
    let mut builder = CgroupBuilder::new(name).set_specified_controllers(controllers(hierarchy.v2()));
    if mem_bytes > 0 {
        builder = builder.memory().memory_hard_limit(mem_bytes as i64).done();
    } else {
        builder = builder.memory().done();
    }
    if cpus > 0.0 {
        let shares = ((cpus * 1024.0) as u64).max(2);
        let quota = ((cpus * CFS_PERIOD_US as f64) as i64).max(1000);
        builder = builder.cpu().shares(shares).period(CFS_PERIOD_US).quota(quota).done();
    }
    let cg = builder.build(hierarchy).map_err(|e| format!("cannot create cgroup {name}: {e}"))?;
    let wanted = ["memory", "cpu", "cpuacct", "cpu,cpuacct"];
    let procs: Vec<PathBuf> = if cg.v2() {
        cg.subsystems().first().map(|s| vec![s.to_controller().path().join("cgroup.procs")]).unwrap_or_default()
    } else {
        cg.subsystems()
            .iter()
            .filter(|s| wanted.contains(&s.controller_name().as_str()))
            .map(|s| s.to_controller().path().join("cgroup.procs"))
            .collect()
    };
    if procs.is_empty() {
        let _ = cg.delete();
        return Err(format!("cgroup {name} has no memory or cpu controller to join"));
    }
    Ok(dedup(procs))
}

fn dedup(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.sort();
    paths.dedup();
    paths
}

/// A task's cgroup, in the controllers it was made in.
fn load(name: &str) -> Cgroup {
    let hierarchy = hierarchies::auto();
    let controllers = controllers(hierarchy.v2());
    Cgroup::load_with_specified_controllers(hierarchy, name, controllers)
}

/// What the task's cgroup says it uses now.
pub fn usage(name: &str) -> Usage {
    let cg = load(name);
    let mut usage = Usage::default();
    if let Some(mem) = cg.controller_of::<MemController>() {
        let stat = mem.memory_stat();
        usage.mem_bytes = stat.usage_in_bytes;
        usage.mem_peak_bytes = stat.max_usage_in_bytes;
        usage.mem_limit_bytes = u64::try_from(stat.limit_in_bytes).unwrap_or(0);
    }
    if let Some(acct) = cg.controller_of::<CpuAcctController>() {
        usage.cpu_seconds = acct.cpuacct().usage as f64 / 1e9;
    }
    usage
}

/// Whether the kernel's OOM killer struck inside the task's cgroup, and
/// if so the message to report (with the peak usage).
pub fn oom_message(name: &str) -> Option<String> {
    let cg = load(name);
    let mem = cg.controller_of::<MemController>()?;
    let stat = mem.memory_stat();
    if stat.oom_control.oom_kill == 0 {
        return None;
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Some(format!(
        "memory limit exceeded: peak {:.1} MiB of a {:.1} MiB limit; killed by the OOM killer",
        mib(stat.max_usage_in_bytes),
        mib(u64::try_from(stat.limit_in_bytes).unwrap_or(0))
    ))
}

/// Serialises changes to this agent's cgroup tree: `create` builds
/// `weir/<scope>/<framework>/<task>` and `destroy` removes the framework
/// level when it empties; without the lock one could remove the
/// framework's directory just as the other created it for a new task.
static TREE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Removes the task's cgroup (once its processes are gone), and the
/// framework's directory above it if that is now empty.
pub fn destroy(name: &str) {
    let _tree = TREE.lock().unwrap_or_else(|p| p.into_inner());
    // Every hierarchy, not only `controllers`: a task started by an agent
    // before the upgrade has a directory in each (deleting one that does
    // not exist is a stat).
    let cg = Cgroup::load(hierarchies::auto(), name);
    let parents: Vec<PathBuf> = cg
        .subsystems()
        .iter()
        .filter(|s| s.to_controller().path().exists())
        .filter_map(|s| s.to_controller().path().parent().map(PathBuf::from))
        .collect();
    if let Err(e) = cg.delete() {
        tracing::warn!(cgroup = name, error = %e, "cannot delete a task's cgroup");
        return;
    }
    // Empty framework directories used to pile up, one per framework ever
    // run. rmdir on a cgroup with children or processes fails (EBUSY),
    // which is the answer wanted: a sibling task still runs there.
    for parent in dedup(parents) {
        match std::fs::remove_dir(&parent) {
            Ok(()) => tracing::debug!(cgroup = %parent.display(), "removed an empty framework cgroup"),
            Err(e) => tracing::debug!(cgroup = %parent.display(), error = %e, "framework cgroup kept (a task still runs in it)"),
        }
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;

    #[test]
    fn the_framework_directory_goes_with_its_last_task() {
        if let Err(why) = available() {
            println!("SKIPPED: cgroups are not usable here: {why}");
            return;
        }
        let scope = format!("test-{}", std::process::id());
        let resources = Resources::parse("cpus:0.1;mem:16").unwrap();
        let (one, two) = (name(&scope, "fw", "t1"), name(&scope, "fw", "t2"));
        let procs = match create(&one, &resources) {
            Ok(p) => p,
            Err(why) => {
                println!("SKIPPED: cannot create a cgroup here: {why}");
                return;
            }
        };
        create(&two, &resources).unwrap();
        // .../weir/<scope>/fw/t1/cgroup.procs → .../weir/<scope>/fw
        let framework_dirs: Vec<PathBuf> = procs.iter().filter_map(|p| p.parent()?.parent().map(PathBuf::from)).collect();
        destroy(&one);
        assert!(framework_dirs.iter().all(|d| d.exists()), "t2 still lives there");
        destroy(&two);
        assert!(framework_dirs.iter().all(|d| !d.exists()), "empty framework cgroups are removed: {framework_dirs:?}");
        // The scope directory is this test's own: tidy it.
        for d in &framework_dirs {
            if let Some(scope_dir) = d.parent() {
                let _ = std::fs::remove_dir(scope_dir);
            }
        }
    }
}
