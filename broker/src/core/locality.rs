//! Where a framework's data is (DataLocality, sent with SUBSCRIBE or
//! REVIVE), turned into bytes per agent for the allocator's delay
//! scheduling. Hosts the framework names and volumes it wants resolve
//! here against the agents the broker knows; HDFS paths need the
//! NameNode, which only the shell can ask ([`Output::LocateHdfs`]), and
//! come back through [`BrokerCore::hdfs_located`].

use std::collections::{BTreeMap, BTreeSet};

use weir_model::{AgentId, FrameworkId, VolumeId};
use weir_proto::convert::{self, ProtoError, MAX_HOSTNAME};
use weir_proto::v1;

use super::{BrokerCore, ConnId, Output};

/// The most hosts, HDFS paths or volumes one DataLocality may name.
pub const MAX_DATA_HOSTS: usize = 10_000;
pub const MAX_DATA_PATHS: usize = 1_000;
pub const MAX_DATA_VOLUMES: usize = 1_000;
/// The longest HDFS path accepted.
pub const MAX_DATA_PATH: usize = 4096;

/// What a framework said its tasks read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct DataWanted {
    host_bytes: BTreeMap<String, u64>,
    hdfs_paths: Vec<String>,
    /// Bytes per host of `hdfs_paths`, once the NameNode answered.
    hdfs_hosts: BTreeMap<String, u64>,
    volumes: BTreeSet<VolumeId>,
}

impl DataWanted {
    fn is_empty(&self) -> bool {
        self.host_bytes.is_empty() && self.hdfs_paths.is_empty() && self.volumes.is_empty()
    }
}

/// A DataLocality, checked: bounded counts, hostnames of 1 to 255 bytes,
/// `hdfs://` paths, valid volume ids.
pub(super) fn data_from_proto(field: &str, data: &v1::DataLocality) -> Result<DataWanted, ProtoError> {
    let too_many = |what: &str, n: usize, max: usize| {
        ProtoError::invalid(format!("{field}.{what}"), format!("{n} entries; at most {max} are allowed"))
    };
    if data.host_bytes.len() > MAX_DATA_HOSTS {
        return Err(too_many("host_bytes", data.host_bytes.len(), MAX_DATA_HOSTS));
    }
    if data.hdfs_paths.len() > MAX_DATA_PATHS {
        return Err(too_many("hdfs_paths", data.hdfs_paths.len(), MAX_DATA_PATHS));
    }
    if data.volume_ids.len() > MAX_DATA_VOLUMES {
        return Err(too_many("volume_ids", data.volume_ids.len(), MAX_DATA_VOLUMES));
    }
    let mut wanted = DataWanted::default();
    for (host, &bytes) in &data.host_bytes {
        if host.is_empty() || host.len() > MAX_HOSTNAME || host.chars().any(char::is_control) {
            return Err(ProtoError::invalid(
                format!("{field}.host_bytes"),
                format!("host {:?} must be 1 to {MAX_HOSTNAME} printable bytes", truncate(host)),
            ));
        }
        if bytes > 0 {
            wanted.host_bytes.insert(host.clone(), bytes);
        }
    }
    for path in &data.hdfs_paths {
        if !path.starts_with("hdfs://") || path.len() > MAX_DATA_PATH || path.chars().any(char::is_control) {
            return Err(ProtoError::invalid(
                format!("{field}.hdfs_paths"),
                format!("{:?} must be an hdfs:// URI of at most {MAX_DATA_PATH} printable bytes", truncate(path)),
            ));
        }
        if !wanted.hdfs_paths.contains(path) {
            wanted.hdfs_paths.push(path.clone());
        }
    }
    for (i, id) in data.volume_ids.iter().enumerate() {
        wanted.volumes.insert(convert::id::<VolumeId>(&format!("{field}.volume_ids[{i}]"), id)?);
    }
    Ok(wanted)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl BrokerCore {
    /// Replaces what `framework` said its tasks read (an empty one clears
    /// it) and tells the allocator. HDFS paths go to the shell to locate.
    pub(super) fn set_data(&mut self, conn: ConnId, framework: &FrameworkId, data: &v1::DataLocality, out: &mut Vec<Output>) {
        let mut wanted = match data_from_proto("data", data) {
            Ok(w) => w,
            Err(err) => return self.call_error(conn, &format!("data locality refused: {err}"), out),
        };
        let Some(fw) = self.frameworks.get_mut(framework) else { return };
        if let Some(old) = &fw.data {
            if old.hdfs_paths == wanted.hdfs_paths {
                // Same files: keep what the NameNode said of them.
                wanted.hdfs_hosts = old.hdfs_hosts.clone();
            }
        }
        let locate = !wanted.hdfs_paths.is_empty() && wanted.hdfs_hosts.is_empty();
        if locate {
            out.push(Output::LocateHdfs { framework: framework.clone(), paths: wanted.hdfs_paths.clone() });
        }
        fw.data = (!wanted.is_empty()).then_some(wanted);
        self.refresh_wants(framework);
        self.dirty = true;
    }

    /// The shell's answer to [`Output::LocateHdfs`]: bytes of `paths` on
    /// each host. Ignored if the framework has since named other files.
    pub fn hdfs_located(&mut self, framework: &FrameworkId, paths: &[String], host_bytes: BTreeMap<String, u64>) {
        let Some(data) = self.frameworks.get_mut(framework).and_then(|f| f.data.as_mut()) else { return };
        if data.hdfs_paths != paths {
            return;
        }
        data.hdfs_hosts = host_bytes;
        self.refresh_wants(framework);
        self.dirty = true;
    }

    /// Bytes of `framework`'s wanted data on each agent the broker knows.
    pub(super) fn data_on_agents(&self, framework: &FrameworkId) -> Vec<(AgentId, u64)> {
        let Some(data) = self.frameworks.get(framework).and_then(|f| f.data.as_ref()) else { return Vec::new() };
        let mut by_agent = Vec::new();
        for (id, agent) in &self.agents {
            let mut bytes = 0u64;
            for hosts in [&data.host_bytes, &data.hdfs_hosts] {
                bytes = bytes.saturating_add(hosts.get(&agent.host.hostname).copied().unwrap_or(0));
            }
            if !data.volumes.is_empty() {
                for ((role, volume), v) in &agent.volumes {
                    // A stale copy does not hold the data: its backing has newer.
                    if data.volumes.contains(volume) && self.stale_copy(id, role, volume).is_none() {
                        bytes = bytes.saturating_add((v.size.0 / 1000).saturating_mul(1 << 20));
                    }
                }
            }
            if bytes > 0 {
                by_agent.push((id.clone(), bytes));
            }
        }
        by_agent
    }

    /// Hands the allocator `framework`'s data as it stands now.
    pub(super) fn refresh_wants(&mut self, framework: &FrameworkId) {
        let data = self.data_on_agents(framework);
        if let Err(err) = self.allocator.set_wants(framework, &data) {
            tracing::error!(framework_id = %framework, error = %err, "could not tell the allocator where the framework's data is");
        }
    }

    /// Agents or volumes came or went: every framework's data is placed
    /// again (once, before the next cycle).
    pub(super) fn refresh_all_wants(&mut self) {
        self.wants_stale = false;
        let with_data: Vec<FrameworkId> =
            self.frameworks.iter().filter(|(_, f)| f.data.is_some()).map(|(id, _)| id.clone()).collect();
        for framework in with_data {
            self.refresh_wants(&framework);
        }
    }
}
