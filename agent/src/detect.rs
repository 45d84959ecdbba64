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

/// The address others should use to reach a socket bound to `bound`: an
/// unspecified IP (0.0.0.0, ::) is replaced by `hostname`, the name the
/// machine is known by; a concrete IP is kept.
pub fn advertised(bound: std::net::SocketAddr, hostname: &str) -> String {
    if bound.ip().is_unspecified() {
        format!("{hostname}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unspecified_address_is_advertised_by_host_name() {
        assert_eq!(super::advertised("0.0.0.0:5051".parse().unwrap(), "agent3"), "agent3:5051");
        assert_eq!(super::advertised("[::]:8032".parse().unwrap(), "yarn"), "yarn:8032");
        assert_eq!(super::advertised("10.1.2.3:5051".parse().unwrap(), "agent3"), "10.1.2.3:5051");
        assert_eq!(super::advertised("127.0.0.1:5051".parse().unwrap(), "agent3"), "127.0.0.1:5051");
    }

    #[test]
    fn detects_something_on_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let r = super::detect_resources(dir.path()).unwrap();
        assert!(r.unreserved.cpus.0 >= 1000);
        assert!(r.unreserved.mem.0 > 0);
        assert_eq!(r.unreserved.ports.count(), 1001);
    }
}
