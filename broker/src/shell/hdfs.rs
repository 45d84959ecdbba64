//! Where the blocks of HDFS files are: `ClientProtocol.getBlockLocations`
//! asked of the file's NameNode through Weir's own Hadoop IPC client
//! (`hdfs-native` keeps that call private), summed into bytes per
//! DataNode host for the allocator's delay scheduling. Answers are cached
//! (bounded, with an age limit) so frameworks reviving often cost the
//! NameNode little.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weir_model::FrameworkId;
use weir_yarn_ipc::client::{Client, ClientConfig};

use super::Shared;

const CLIENT_PROTOCOL: &str = "org.apache.hadoop.hdfs.protocol.ClientProtocol";
/// Files whose block locations are kept.
const CACHE_ENTRIES: usize = 10_000;
/// How long a file's block locations are trusted.
const CACHE_AGE: Duration = Duration::from_secs(60);
/// A NameNode that does not answer within this is skipped for this ask.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Asks waiting for the locator; more are dropped (logged) until it catches up.
pub(super) const QUEUE: usize = 256;

/// Bytes of a file on each DataNode host (hostname, and IP address when
/// it differs, so an agent registered under either finds them).
pub type HostBytes = BTreeMap<String, u64>;

// ClientNamenodeProtocol.proto and hdfs.proto, only the fields read here.
#[derive(Clone, PartialEq, prost::Message)]
struct GetBlockLocationsRequestProto {
    #[prost(string, required, tag = "1")]
    src: String,
    #[prost(uint64, required, tag = "2")]
    offset: u64,
    #[prost(uint64, required, tag = "3")]
    length: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetBlockLocationsResponseProto {
    #[prost(message, optional, tag = "1")]
    locations: Option<LocatedBlocksProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LocatedBlocksProto {
    #[prost(uint64, required, tag = "1")]
    file_length: u64,
    #[prost(message, repeated, tag = "2")]
    blocks: Vec<LocatedBlockProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LocatedBlockProto {
    #[prost(message, required, tag = "1")]
    b: ExtendedBlockProto,
    #[prost(uint64, required, tag = "2")]
    offset: u64,
    #[prost(message, repeated, tag = "3")]
    locs: Vec<DatanodeInfoProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExtendedBlockProto {
    #[prost(string, required, tag = "1")]
    pool_id: String,
    #[prost(uint64, required, tag = "2")]
    block_id: u64,
    #[prost(uint64, required, tag = "3")]
    generation_stamp: u64,
    #[prost(uint64, optional, tag = "4")]
    num_bytes: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DatanodeInfoProto {
    #[prost(message, required, tag = "1")]
    id: DatanodeIdProto,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DatanodeIdProto {
    #[prost(string, required, tag = "1")]
    ip_addr: String,
    #[prost(string, required, tag = "2")]
    host_name: String,
}

/// An `hdfs://host:port/path` URI split into the NameNode's address and
/// the path. A logical name service (HA, no port) needs the Hadoop
/// configuration that maps it to NameNodes, which the broker does not
/// read: refused with that reason.
pub fn split_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri.strip_prefix("hdfs://").ok_or_else(|| format!("{uri}: not an hdfs:// URI"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Err(format!("{uri}: no path after the NameNode")),
    };
    if authority.is_empty() {
        return Err(format!("{uri}: no NameNode named"));
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(format!("{uri}: no port: name services (HA) are not resolved by the broker, name the active NameNode host:port"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{uri}: {authority:?} is not host:port"));
    }
    Ok((authority.to_owned(), path.to_owned()))
}

/// Bytes of one file on each DataNode host, from its NameNode.
pub async fn locate(uri: &str) -> Result<HostBytes, String> {
    let (namenode, path) = split_uri(uri)?;
    let ask = async {
        let addr = tokio::net::lookup_host(&namenode)
            .await
            .map_err(|e| format!("{uri}: cannot resolve NameNode {namenode}: {e}"))?
            .next()
            .ok_or_else(|| format!("{uri}: NameNode {namenode} has no address"))?;
        let client = Client::connect(addr, ClientConfig::simple("weir", CLIENT_PROTOCOL))
            .await
            .map_err(|e| format!("{uri}: cannot reach NameNode {namenode}: {e}"))?;
        let request = GetBlockLocationsRequestProto { src: path.clone(), offset: 0, length: i64::MAX as u64 };
        client
            .call_message::<_, GetBlockLocationsResponseProto>(CLIENT_PROTOCOL, "getBlockLocations", &request)
            .await
            .map_err(|e| format!("{uri}: getBlockLocations failed: {e}"))
    };
    let response = tokio::time::timeout(CALL_TIMEOUT, ask)
        .await
        .map_err(|_| format!("{uri}: NameNode {namenode} did not answer within {CALL_TIMEOUT:?}"))??;
    let located = response.locations.ok_or_else(|| format!("{uri}: no such file"))?;
    Ok(host_bytes(&located))
}

fn host_bytes(located: &LocatedBlocksProto) -> HostBytes {
    let mut hosts = HostBytes::new();
    for block in &located.blocks {
        let bytes = block.b.num_bytes.unwrap_or(0);
        for dn in &block.locs {
            let id = &dn.id;
            let names: &[&String] = if id.ip_addr == id.host_name { &[&id.host_name] } else { &[&id.host_name, &id.ip_addr] };
            for host in names.iter().filter(|h| !h.is_empty()) {
                *hosts.entry((*host).clone()).or_insert(0) += bytes;
            }
        }
    }
    hosts
}

/// Answers the core's `LocateHdfs` asks, one at a time, from the cache or
/// the NameNodes, and hands the sums back to the core. A file that cannot
/// be located is logged and counts as nowhere (no preference).
pub(super) async fn locator(shared: Shared, mut asks: mpsc::Receiver<(FrameworkId, Vec<String>)>) {
    let mut cache: HashMap<String, (Instant, HostBytes)> = HashMap::new();
    let mut order: VecDeque<String> = VecDeque::new();
    while let Some((framework, paths)) = asks.recv().await {
        let mut sum = HostBytes::new();
        for path in &paths {
            let fresh = cache.get(path).filter(|(at, _)| at.elapsed() < CACHE_AGE).map(|(_, hosts)| hosts.clone());
            let hosts = match fresh {
                Some(hosts) => hosts,
                None => match locate(path).await {
                    Ok(hosts) => {
                        if cache.insert(path.clone(), (Instant::now(), hosts.clone())).is_none() {
                            order.push_back(path.clone());
                        }
                        while cache.len() > CACHE_ENTRIES {
                            if let Some(old) = order.pop_front() {
                                cache.remove(&old);
                            }
                        }
                        hosts
                    }
                    Err(err) => {
                        tracing::warn!(framework_id = %framework, error = %err, "cannot locate a file the framework reads");
                        continue;
                    }
                },
            };
            for (host, bytes) in hosts {
                *sum.entry(host).or_insert(0) += bytes;
            }
        }
        tracing::debug!(framework_id = %framework, files = paths.len(), hosts = sum.len(), "located the framework's HDFS files");
        shared.apply("hdfs located", |core, _| {
            core.hdfs_located(&framework, &paths, sum);
            Vec::new()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_the_namenode_and_the_path_or_say_what_is_wrong() {
        assert_eq!(split_uri("hdfs://127.0.0.1:9000/data/a").unwrap(), ("127.0.0.1:9000".into(), "/data/a".into()));
        for (bad, says) in [
            ("file:///x", "not an hdfs:// URI"),
            ("hdfs://nn:9000", "no path"),
            ("hdfs:///x", "no NameNode"),
            ("hdfs://cluster1/x", "name services (HA)"),
            ("hdfs://nn:port/x", "is not host:port"),
        ] {
            let err = split_uri(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    /// Against a real NameNode (WEIR_TEST_HDFS=hdfs://host:port and the
    /// `hdfs` CLI of WEIR_HADOOP_HOME): a file put there is located on
    /// the DataNode with all its bytes; a missing file and a closed port
    /// say so.
    #[tokio::test]
    async fn a_real_namenode_says_where_a_file_is() {
        let (Ok(fs), Ok(home)) = (std::env::var("WEIR_TEST_HDFS"), std::env::var("WEIR_HADOOP_HOME")) else {
            eprintln!("skipped: set WEIR_TEST_HDFS and WEIR_HADOOP_HOME to run against a real NameNode");
            return;
        };
        let local = std::env::temp_dir().join(format!("weir-locate-{}", std::process::id()));
        std::fs::write(&local, vec![7u8; 3 << 20]).unwrap();
        let remote = format!("/weir-test/locate-{}", std::process::id());
        // Hadoop's own scripts, with an empty configuration directory (the
        // distribution's hadoop-env.sh may name another machine's Java).
        let conf = std::env::temp_dir().join(format!("weir-locate-conf-{}", std::process::id()));
        std::fs::create_dir_all(&conf).unwrap();
        let site = format!("<configuration><property><name>fs.defaultFS</name><value>{fs}</value></property></configuration>");
        std::fs::write(conf.join("core-site.xml"), site).unwrap();
        let java = std::process::Command::new("sh").args(["-c", "readlink -f \"$(command -v java)\""]).output().unwrap();
        let java = std::path::PathBuf::from(String::from_utf8_lossy(&java.stdout).trim());
        let java_home = std::env::var_os("JAVA_HOME")
            .map(std::path::PathBuf::from)
            .filter(|h| h.join("bin/java").exists())
            .unwrap_or_else(|| java.parent().and_then(|bin| bin.parent()).expect("java on PATH").to_path_buf());
        let put = std::process::Command::new(format!("{home}/bin/hdfs"))
            .env("JAVA_HOME", java_home)
            .env("HADOOP_CONF_DIR", &conf)
            .args(["dfs", "-fs", &fs, "-put", "-f", "-d"])
            .arg(&local)
            .arg(&remote)
            .status()
            .unwrap();
        let _ = std::fs::remove_file(&local);
        let _ = std::fs::remove_dir_all(&conf);
        assert!(put.success());
        let hosts = locate(&format!("{fs}{remote}")).await.unwrap();
        eprintln!("{fs}{remote}: {hosts:?}");
        assert!(!hosts.is_empty() && hosts.values().all(|&b| b == 3 << 20), "{hosts:?}");

        let missing = locate(&format!("{fs}/weir-test/no-such-file")).await.unwrap_err();
        assert!(missing.contains("no such file") || missing.contains("FileNotFound"), "{missing}");
        let closed = locate("hdfs://127.0.0.1:1/x").await.unwrap_err();
        assert!(closed.contains("cannot reach NameNode 127.0.0.1:1"), "{closed}");
    }

    #[test]
    fn block_bytes_add_up_per_datanode_host() {
        let dn = |host: &str, ip: &str| DatanodeInfoProto { id: DatanodeIdProto { ip_addr: ip.into(), host_name: host.into() } };
        let block = |bytes: u64, locs: Vec<DatanodeInfoProto>| LocatedBlockProto {
            b: ExtendedBlockProto { pool_id: "p".into(), block_id: 1, generation_stamp: 1, num_bytes: Some(bytes) },
            offset: 0,
            locs,
        };
        let located = LocatedBlocksProto {
            file_length: 300,
            blocks: vec![block(128, vec![dn("a", "10.0.0.1"), dn("b", "b")]), block(72, vec![dn("a", "10.0.0.1")])],
        };
        let hosts = host_bytes(&located);
        assert_eq!(hosts, HostBytes::from([("a".into(), 200), ("10.0.0.1".into(), 200), ("b".into(), 128)]));
        // The wire form decodes to the same (tags as in hdfs.proto).
        let wire = prost::Message::encode_to_vec(&GetBlockLocationsResponseProto { locations: Some(located.clone()) });
        let back: GetBlockLocationsResponseProto = prost::Message::decode(wire.as_slice()).unwrap();
        assert_eq!(back.locations, Some(located));
    }
}
