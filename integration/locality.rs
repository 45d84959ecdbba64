//! Data-local placement end to end: a real broker and agents, frameworks
//! through the SDK stating where their data is (hosts' bytes; HDFS files
//! located through the real NameNode when WEIR_TEST_HDFS names one), and
//! offers that bring them to it first and say how much of it is there.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::Cluster;
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};

const SPEC: &str = "cpus:2;mem:1024";

/// Offers a framework receives within `within`, as (hostname, data_bytes,
/// seconds since `since`); each is declined at once with no filter.
async fn offers_for(fw: &mut Framework, within: Duration, since: Instant) -> Vec<(String, u64, f64)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = tokio::time::timeout(left, fw.next_event()).await else { break };
        let Some(v1::event::Kind::Offers(offers)) = event.expect("stream").expect("open").kind else { continue };
        for o in offers.offers {
            seen.push((o.hostname.clone(), o.data_bytes, since.elapsed().as_secs_f64()));
            fw.decline(&[weir_model::OfferId::new(o.id.clone())], Some(Duration::ZERO)).await.expect("decline");
        }
    }
    seen
}

async fn subscribe(cluster: &Cluster, name: &str, data: Option<v1::DataLocality>) -> Framework {
    let mut config = FrameworkConfig::new(cluster.broker_addr.clone(), name);
    config.data = data;
    Framework::subscribe(config).await.expect("subscribe")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_is_offered_the_agent_with_its_data_first_and_others_after_the_delay() {
    let cluster = Cluster::start(2, SPEC, &[]);
    // Its data: 300 MiB on agent1.test (and some on a host not in the pool).
    let data = v1::DataLocality {
        host_bytes: BTreeMap::from([("agent1.test".to_owned(), 300 << 20), ("elsewhere".to_owned(), 1)]).into_iter().collect(),
        ..Default::default()
    };
    let began = Instant::now();
    let mut reader = subscribe(&cluster, "reader", Some(data)).await;
    let seen = offers_for(&mut reader, Duration::from_secs(6), began).await;
    let first = seen.first().expect("offers");
    assert_eq!((first.0.as_str(), first.1), ("agent1.test", 300 << 20), "{seen:?}");
    // agent0.test holds none of it: offered only once the framework has
    // waited broker.locality.delay (3 s), and saying 0 bytes.
    let other = seen.iter().find(|o| o.0 == "agent0.test").unwrap_or_else(|| panic!("agent0 offered after the delay: {seen:?}"));
    assert_eq!(other.1, 0);
    assert!(other.2 >= 2.5, "agent0 offered after {:.1}s, before the locality delay: {seen:?}", other.2);

    // A framework with no preference is not held back by the reader's wait.
    let mut plain = subscribe(&cluster, "plain", None).await;
    let theirs = offers_for(&mut plain, Duration::from_secs(2), Instant::now()).await;
    assert!(theirs.iter().any(|o| o.0 == "agent0.test" && o.1 == 0), "{theirs:?}");
}

/// With a real HDFS: a file's blocks are on the DataNode (127.0.0.1 here),
/// the framework names the file, the broker asks the NameNode, and the
/// agent registered under the DataNode's name is offered first with the
/// file's size. Skips unless WEIR_TEST_HDFS is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdfs_files_are_located_through_the_namenode() {
    let Ok(fs) = std::env::var("WEIR_TEST_HDFS") else {
        eprintln!("skipped: set WEIR_TEST_HDFS=hdfs://127.0.0.1:9000 to run against a real NameNode");
        return;
    };
    let root = format!("{fs}/weir-test/locality-{}", std::process::id());
    let store = weir_hdfs_volumes::open(&root, &weir_hdfs_volumes::StoreSettings::default()).expect("store");
    let bytes = vec![5u8; 5 << 20];
    store.put("input/part-0", &mut bytes.as_slice(), weir_hdfs_volumes::PutMode::Overwrite).await.expect("put into HDFS");

    let mut cluster = Cluster::start(1, SPEC, &[]);
    cluster.add_agent_on(1, SPEC, "127.0.0.1", &[]);
    cluster.wait_for(Duration::from_secs(30), |s| s["agents"].as_array().map_or(0, |a| a.len()) == 2);
    let data = v1::DataLocality { hdfs_paths: vec![format!("{root}/input/part-0")], ..Default::default() };
    let began = Instant::now();
    let mut reader = subscribe(&cluster, "hdfs-reader", Some(data)).await;
    let seen = offers_for(&mut reader, Duration::from_secs(6), began).await;
    let _ = store.delete("").await;
    let local = seen.iter().find(|o| o.0 == "127.0.0.1").unwrap_or_else(|| panic!("the DataNode's agent is offered: {seen:?}"));
    assert_eq!(local.1, 5 << 20, "{seen:?}");
    assert!(seen.iter().filter(|o| o.0 == "agent0.test").all(|o| o.1 == 0), "{seen:?}");
}
