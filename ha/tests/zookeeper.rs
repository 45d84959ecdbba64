//! The ZooKeeper election, detection and registry against a real server.

use std::time::Duration;

use weir_ha::testing::ZkServer;
use weir_ha::zk::{ZkElection, ZkRegistry, ZkSession};
use weir_ha::{LeaderElection, LeaderInfo, Record, Registry, Write, ZkAddress};

fn info(id: &str) -> LeaderInfo {
    LeaderInfo { id: id.to_owned(), address: format!("127.0.0.1:{}", id.len()), epoch: 0 }
}

async fn wait_leader(rx: &mut tokio::sync::watch::Receiver<Option<LeaderInfo>>, id: &str) -> LeaderInfo {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(l) = rx.borrow_and_update().clone().filter(|l| l.id == id) {
                return l;
            }
            rx.changed().await.expect("detector alive");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} was not detected as leader; saw {:?}", rx.borrow()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_detection_and_failover_on_a_real_server() {
    let zk = ZkServer::start();
    let address = ZkAddress::parse(&zk.url("/weir/test")).unwrap();
    let timeout = Duration::from_secs(2);
    let s1 = ZkSession::connect(&address, timeout).await.unwrap();
    let s2 = ZkSession::connect(&address, timeout).await.unwrap();
    let mut detected = weir_ha::detect(&address);

    let first = ZkElection::new(s1.clone(), info("first"));
    let lead1 = first.campaign().await.unwrap();
    let seen = wait_leader(&mut detected, "first").await;
    assert_eq!(seen.epoch, lead1.epoch());

    let second = ZkElection::new(s2.clone(), info("second"));
    let campaign = tokio::spawn(async move {
        let lead = second.campaign().await;
        (second, lead)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!campaign.is_finished(), "a second broker must stand by while the first leads");
    let contenders = first.contenders().await.unwrap();
    assert_eq!(contenders.iter().map(|c| (c.info.id.as_str(), c.leading)).collect::<Vec<_>>(), [("first", true), ("second", false)]);

    // The leader resigns: the stand-by takes over with a larger epoch.
    let epoch1 = lead1.epoch();
    lead1.resign();
    let (_second, lead2) = tokio::time::timeout(Duration::from_secs(10), campaign).await.expect("elected").unwrap();
    let lead2 = lead2.unwrap();
    assert!(lead2.epoch() > epoch1);
    assert!(lead2.is_valid());
    let seen = wait_leader(&mut detected, "second").await;
    assert_eq!(seen.epoch, lead2.epoch());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_session_expires_knows_at_once_and_its_lease_lapses() {
    let zk = ZkServer::start();
    let address = ZkAddress::parse(&zk.url("weir")).unwrap();
    let session = ZkSession::connect(&address, Duration::from_secs(2)).await.unwrap();
    let lead = ZkElection::new(session.clone(), info("doomed")).campaign().await.unwrap();
    let guard = lead.guard();
    assert!(guard.is_valid());
    // Kill the server: the session cannot be confirmed, so the lease runs
    // out within two thirds of the session timeout.
    drop(zk);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(!guard.is_valid(), "a leader that cannot reach ZooKeeper must stop acting before its session expires");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_round_trips_and_batches() {
    let zk = ZkServer::start();
    let address = ZkAddress::parse(&zk.url("weir")).unwrap();
    let registry = ZkRegistry::new(ZkSession::connect(&address, Duration::from_secs(4)).await.unwrap());
    assert!(registry.load().await.unwrap().is_empty());
    let put = |c: &str, k: String, v: Vec<u8>| Write::Put(Record { collection: c.into(), key: k, value: v });
    let many: Vec<Write> = (0..600).map(|i| put("agents", format!("a{i:04}"), vec![i as u8])).collect();
    registry.apply(many).await.unwrap();
    registry
        .apply(vec![
            put("agents", "a0001".into(), b"changed".to_vec()),
            Write::Delete { collection: "agents".into(), key: "a0002".into() },
            Write::Delete { collection: "agents".into(), key: "never-there".into() },
            put("weights", "analytics".into(), b"2.5".to_vec()),
        ])
        .await
        .unwrap();
    // A second broker's view, read fresh from the server.
    let other = ZkRegistry::new(ZkSession::connect(&address, Duration::from_secs(4)).await.unwrap());
    let records = other.load().await.unwrap();
    assert_eq!(records.len(), 600);
    assert_eq!(records[1], Record { collection: "agents".into(), key: "a0001".into(), value: b"changed".to_vec() });
    assert!(records.iter().all(|r| r.key != "a0002"));
    assert_eq!(records.last().unwrap().value, b"2.5");
    let err = other.apply(vec![put("bad/collection", "k".into(), vec![])]).await.unwrap_err().to_string();
    assert!(err.contains("may hold only"), "{err}");
    // Any id is a key: `*`, `..`, a slash, non-ASCII.
    let odd = ["*", "..", "a/b", "né"];
    other.apply(odd.iter().map(|k| put("weights", k.to_string(), k.as_bytes().to_vec())).collect()).await.unwrap();
    let again = registry.load().await.unwrap();
    for k in odd {
        assert!(again.iter().any(|r| r.collection == "weights" && r.key == k && r.value == k.as_bytes()), "{k} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_only_the_brokers_identity_writes_and_everyone_reads() {
    let zk = ZkServer::start();
    let plain = ZkAddress::parse(&zk.url("/weir/secured")).unwrap();
    let secured = ZkAddress { digest: Some(weir_ha::ZkDigest::new("weir:s3cret").unwrap()), ..plain.clone() };
    assert!(!format!("{secured:?}").contains("s3cret"), "the password must not show in logs: {secured:?}");
    let session = ZkSession::connect(&secured, Duration::from_secs(4)).await.unwrap();
    let registry = ZkRegistry::new(session.clone());
    let record = Record { collection: "weights".into(), key: "analytics".into(), value: b"2".to_vec() };
    registry.apply(vec![Write::Put(record.clone())]).await.unwrap();
    let lead = ZkElection::new(session.clone(), info("broker")).campaign().await.unwrap();
    // Agents and frameworks find the leader without credentials.
    let mut detected = weir_ha::detect(&plain);
    assert_eq!(wait_leader(&mut detected, "broker").await.epoch, lead.epoch());

    // Anyone else, without credentials or with wrong ones, reads but cannot change a thing.
    let node = "/weir/secured/registry/weights/analytics";
    for (who, auth) in [("anonymous", None), ("wrong password", Some("weir:guess"))] {
        let mut connector = zookeeper_client::Client::connector();
        if let Some(auth) = auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let other = connector.connect(&zk.hosts()).await.unwrap();
        let (data, _) = other.get_data(node).await.unwrap_or_else(|e| panic!("{who} reads: {e}"));
        assert_eq!(data, b"2");
        let no_auth = |r: Result<(), zookeeper_client::Error>| matches!(r, Err(zookeeper_client::Error::NoAuth));
        assert!(no_auth(other.set_data(node, b"100", None).await.map(|_| ())), "{who} overwrote a record");
        assert!(no_auth(other.delete(node, None).await), "{who} deleted a record");
        let create = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
        assert!(
            no_auth(other.create("/weir/secured/leader/member-", b"{}", &create).await.map(|_| ())),
            "{who} entered the election"
        );
    }
    let again = ZkRegistry::new(ZkSession::connect(&secured, Duration::from_secs(4)).await.unwrap()).load().await.unwrap();
    assert_eq!(again, vec![record], "nothing changed");
}
