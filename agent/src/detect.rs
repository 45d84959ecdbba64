//! What this machine has: online cores, memory and the work directory's
//! free disk, less a share kept for the system (as Mesos does), plus the
//! default port range.

use std::path::Path;

use weir_model::{Milli, Ranges, ResourceSet, Resources};

use crate::error::AgentError;

const MIB: u64 = 1024 * 1024;

pub fn detect_resources(work_dir: &Path) -> Result<ResourceSet, AgentError> {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| AgentError::Detect(format!("cannot read /proc/meminfo: {e}")))?;
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| AgentError::Detect("no MemTotal line in /proc/meminfo".to_owned()))?;
    let mem_mib = mem_kib / 1024;
    // Keep min(1 GiB, half) for the system.
    let mem = mem_mib - (1024).min(mem_mib / 2);
    std::fs::create_dir_all(work_dir)
        .map_err(|e| AgentError::Detect(format!("cannot create {}: {e}", work_dir.display())))?;
    let stat = nix::sys::statvfs::statvfs(work_dir)
        .map_err(|e| AgentError::Detect(format!("cannot stat the filesystem of {}: {e}", work_dir.display())))?;
    let disk_mib = stat.blocks_available() as u64 * stat.fragment_size() as u64 / MIB;
    let disk = disk_mib - (5 * 1024).min(disk_mib / 2);
    Ok(ResourceSet::unreserved(Resources {
        cpus: Milli::from_units(cpus),
        mem: Milli::from_units(mem),
        disk: Milli::from_units(disk),
        gpus: Milli::ZERO,
        ports: Ranges::single(31000, 32000),
    }))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn detects_something_on_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let r = super::detect_resources(dir.path()).unwrap();
        assert!(r.unreserved.cpus.0 >= 1000);
        assert!(r.unreserved.mem.0 > 0);
        assert_eq!(r.unreserved.ports.count(), 1001);
    }
}
