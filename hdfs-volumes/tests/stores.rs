//! One suite for every `VolumeStore`, and the volume backing on top of
//! each: run against a local directory always, and against a real HDFS
//! when `WEIR_TEST_HDFS` names one (`hdfs://127.0.0.1:9000`; the Hadoop
//! configuration directory is `HADOOP_CONF_DIR` when set). Without it the
//! HDFS tests say so and pass.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use weir_hdfs_volumes::backing::{Backing, BackingError, LocalState};
use weir_hdfs_volumes::{open, Entry, ObjectMeta, PutMode, StoreError, StoreSettings, VolumeStore};

fn settings() -> StoreSettings {
    StoreSettings {
        hadoop_conf_dir: std::env::var("HADOOP_CONF_DIR").ok(),
        op_timeout: Duration::from_secs(30),
    }
}

/// A fresh, empty store of each kind under test: (name, store, its URI).
fn stores(tmp: &Path) -> Vec<(&'static str, Arc<dyn VolumeStore>)> {
    let mut out: Vec<(&'static str, Arc<dyn VolumeStore>)> = Vec::new();
    let local = format!("file://{}/store-{}", tmp.display(), uuid::Uuid::new_v4());
    out.push(("local", open(&local, &settings()).unwrap()));
    match std::env::var("WEIR_TEST_HDFS") {
        Ok(base) => {
            let uri = format!("{}/weir-test/store-{}", base.trim_end_matches('/'), uuid::Uuid::new_v4());
            out.push(("hdfs", open(&uri, &settings()).unwrap()));
        }
        Err(_) => eprintln!("WEIR_TEST_HDFS is not set: the HDFS store is not tested"),
    }
    out
}

async fn cleanup(store: &Arc<dyn VolumeStore>) {
    // Everything under the root, so an HDFS run leaves nothing behind.
    for entry in store.list("").await.unwrap_or_default() {
        let _ = store.delete(&entry.name).await;
    }
}

async fn put(store: &dyn VolumeStore, path: &str, bytes: &[u8], mode: PutMode) -> Result<ObjectMeta, StoreError> {
    store.put(path, &mut &bytes[..], mode).await
}

async fn get(store: &dyn VolumeStore, path: &str, max: u64) -> Result<(Vec<u8>, ObjectMeta), StoreError> {
    let mut out = Vec::new();
    let meta = store.get(path, &mut out, max).await?;
    Ok((out, meta))
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[tokio::test]
async fn store_suite() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, store) in stores(tmp.path()) {
        eprintln!("store suite on {name}: {}", store.uri());
        store_round_trip(store.as_ref()).await;
        store_bounds_and_conflicts(store.as_ref()).await;
        store_list_rename_delete(store.as_ref()).await;
        cleanup(&store).await;
    }
}

async fn store_round_trip(store: &dyn VolumeStore) {
    let meta = put(store, "a/abc", b"abc", PutMode::Overwrite).await.unwrap();
    assert_eq!(meta.size, 3);
    assert_eq!(meta.sha256_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let (bytes, read) = get(store, "a/abc", 3).await.unwrap();
    assert_eq!((bytes.as_slice(), read), (&b"abc"[..], meta));

    // Several chunks, not a multiple of the chunk size, streamed both ways.
    let big: Vec<u8> = (0..(3 << 20) + 7).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let meta = put(store, "big", &big, PutMode::Overwrite).await.unwrap();
    assert_eq!((meta.size, meta.sha256), (big.len() as u64, sha(&big)));
    let (bytes, read) = get(store, "big", big.len() as u64).await.unwrap();
    assert!(bytes == big, "the big file came back different");
    assert_eq!(read, meta);

    // An empty file is a file.
    assert_eq!(put(store, "empty", b"", PutMode::CreateNew).await.unwrap().size, 0);
    assert_eq!(get(store, "empty", 0).await.unwrap().0, b"");
    assert_eq!(
        store.stat("empty").await.unwrap(),
        Some(Entry { name: "empty".into(), size: 0, is_dir: false })
    );
    assert!(store.stat("a").await.unwrap().unwrap().is_dir);
    assert_eq!(store.stat("nothing/here").await.unwrap(), None);
}

async fn store_bounds_and_conflicts(store: &dyn VolumeStore) {
    put(store, "bounded", &[7u8; 100], PutMode::Overwrite).await.unwrap();
    let mut out = Vec::new();
    match store.get("bounded", &mut out, 99).await {
        Err(StoreError::TooLarge { size: 100, max: 99, path, .. }) => assert_eq!(path, "bounded"),
        other => panic!("a 100-byte file read with a 99-byte bound gave {other:?}"),
    }
    assert!(out.is_empty(), "a refused read wrote {} bytes", out.len());

    match put(store, "bounded", b"other", PutMode::CreateNew).await {
        Err(StoreError::AlreadyExists { path, .. }) => assert_eq!(path, "bounded"),
        other => panic!("create-new over an existing file gave {other:?}"),
    }
    assert_eq!(get(store, "bounded", 100).await.unwrap().0, vec![7u8; 100], "create-new changed the file");
    put(store, "bounded", b"other", PutMode::Overwrite).await.unwrap();
    assert_eq!(get(store, "bounded", 100).await.unwrap().0, b"other");

    match get(store, "missing", 10).await {
        Err(e @ StoreError::NotFound { .. }) => assert!(e.to_string().contains(store.uri()), "{e}"),
        other => panic!("reading a missing file gave {other:?}"),
    }
    for bad in ["../escape", "/abs", "a/./b", "a//b"] {
        match put(store, bad, b"x", PutMode::Overwrite).await {
            Err(StoreError::InvalidPath { path, .. }) => assert_eq!(path, bad),
            other => panic!("put to {bad:?} gave {other:?}"),
        }
        assert!(matches!(store.rename("bounded", bad, true).await, Err(StoreError::InvalidPath { .. })));
        assert!(matches!(store.delete(bad).await, Err(StoreError::InvalidPath { .. })));
    }
}

async fn store_list_rename_delete(store: &dyn VolumeStore) {
    put(store, "dir/b", b"bb", PutMode::Overwrite).await.unwrap();
    put(store, "dir/a", b"a", PutMode::Overwrite).await.unwrap();
    put(store, "dir/sub/c", b"ccc", PutMode::Overwrite).await.unwrap();
    assert_eq!(
        store.list("dir").await.unwrap(),
        vec![
            Entry { name: "a".into(), size: 1, is_dir: false },
            Entry { name: "b".into(), size: 2, is_dir: false },
            Entry { name: "sub".into(), size: 0, is_dir: true },
        ]
    );
    assert_eq!(store.list("no/such/dir").await.unwrap(), vec![]);

    match store.rename("dir/a", "dir/b", false).await {
        Err(StoreError::AlreadyExists { path, .. }) => assert_eq!(path, "dir/b"),
        other => panic!("rename onto an existing file without overwrite gave {other:?}"),
    }
    assert_eq!(get(store, "dir/b", 10).await.unwrap().0, b"bb");
    store.rename("dir/a", "dir/b", true).await.unwrap();
    assert_eq!(get(store, "dir/b", 10).await.unwrap().0, b"a");
    assert_eq!(store.stat("dir/a").await.unwrap(), None);
    store.rename("dir/b", "elsewhere/new/b", false).await.unwrap();
    assert_eq!(get(store, "elsewhere/new/b", 10).await.unwrap().0, b"a");
    assert!(matches!(store.rename("dir/a", "dir/z", true).await, Err(StoreError::NotFound { .. })));

    assert!(store.delete("dir").await.unwrap(), "deleting a directory with files");
    assert_eq!(store.stat("dir/sub/c").await.unwrap(), None);
    assert!(!store.delete("dir").await.unwrap(), "deleting it again found something");
    assert!(store.delete("elsewhere/new/b").await.unwrap());
}

#[tokio::test]
async fn an_unreachable_namenode_fails_in_bounded_time_naming_it() {
    // Nothing listens on port 1 of loopback.
    let settings = StoreSettings { hadoop_conf_dir: None, op_timeout: Duration::from_secs(10) };
    let store = open("hdfs://127.0.0.1:1/weir/volumes/v1", &settings).unwrap();
    let started = std::time::Instant::now();
    let err = Backing::attach(store, "v1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let text = err.to_string();
    assert!(text.contains("hdfs://127.0.0.1:1/weir/volumes/v1") && text.contains("unreachable"), "{text}");
}

// ------------------------------------------------------------- backing suite

fn write(dir: &Path, path: &str, bytes: &[u8]) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, bytes).unwrap();
}

/// Every file under `dir` with its content, sorted.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn backing_suite() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, store) in stores(tmp.path()) {
        eprintln!("backing suite on {name}: {}", store.uri());
        backing_moves_and_fences(store.clone(), tmp.path()).await;
        cleanup(&store).await;
        backing_refuses_foreign_paths(store.clone()).await;
        cleanup(&store).await;
        backing_survives_an_interrupted_sync(store.clone(), tmp.path()).await;
        cleanup(&store).await;
    }
}

async fn backing_moves_and_fences(store: Arc<dyn VolumeStore>, tmp: &Path) {
    let a = tmp.join(format!("agent-a-{}", uuid::Uuid::new_v4()));
    write(&a, "data/note", b"written on A");
    write(&a, "data/big", &vec![1u8; 300_000]);
    write(&a, "top", b"t");
    std::fs::create_dir_all(a.join("empty-dir")).unwrap();
    let backing = Backing::attach(store.clone(), "pgdata").await.unwrap();
    let (first, state) = backing.sync(&a, &LocalState::default(), "A").await.unwrap();
    assert_eq!((first.generation, first.files_total, first.files_copied), (1, 3, 3));
    assert_eq!((first.bytes_total, first.bytes_copied), (300_000 + 12 + 1, 300_000 + 12 + 1));

    // Incremental: one changed file is the only one copied.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(&a, "data/note", b"changed on A");
    let (second, state) = backing.sync(&a, &state, "A").await.unwrap();
    assert_eq!((second.generation, second.files_total, second.files_copied, second.bytes_copied), (2, 3, 1, 12));
    let (third, state_a) = backing.sync(&a, &state, "A").await.unwrap();
    assert_eq!((third.generation, third.files_copied, third.bytes_copied), (3, 0, 0));

    // The volume moves: B restores, and holds exactly A's last sync.
    let b = tmp.join(format!("agent-b-{}", uuid::Uuid::new_v4()));
    let again = Backing::attach(store.clone(), "pgdata").await.unwrap();
    let (restored, state_b) = again.restore(&b, "B").await.unwrap();
    assert_eq!((restored.generation, restored.files_total, restored.bytes_total), (4, 3, 300_013));
    assert_eq!(contents(&b), contents(&a));
    assert!(b.join("empty-dir").is_dir(), "an empty directory was not restored");

    // A comes back with its stale copy: refused, and says so.
    write(&a, "data/note", b"stale write on A");
    match backing.sync(&a, &state_a, "A").await {
        Err(e @ BackingError::Stale { have: 3, current: 4, .. }) => {
            let text = e.to_string();
            assert!(text.contains("pgdata") && text.contains("agent B") && text.contains(store.uri()), "{text}");
        }
        other => panic!("the stale copy's sync gave {other:?}"),
    }
    // B's copy goes on; a fresh restore elsewhere reads B's data.
    write(&b, "data/note", b"written on B");
    let (b_sync, _) = again.sync(&b, &state_b, "B").await.unwrap();
    assert_eq!((b_sync.generation, b_sync.files_copied), (5, 1));
    let c = tmp.join(format!("agent-c-{}", uuid::Uuid::new_v4()));
    again.restore(&c, "C").await.unwrap();
    assert_eq!(std::fs::read(c.join("data/note")).unwrap(), b"written on B");

    // Old generations' blobs are collected: only what generations 5 and 6
    // need stays (they share every file).
    let blobs = store.list("blobs").await.unwrap();
    assert_eq!(blobs.len(), 3, "blobs left: {blobs:?}");
}

async fn backing_refuses_foreign_paths(store: Arc<dyn VolumeStore>) {
    Backing::attach(store.clone(), "v1").await.unwrap();
    match Backing::attach(store.clone(), "v2").await {
        Err(e @ BackingError::BelongsToOther { .. }) => {
            let text = e.to_string();
            assert!(text.contains("belongs to volume v1, not to v2") && text.contains(store.uri()), "{text}");
        }
        other => panic!("attaching v2 to v1's backing gave {other:?}"),
    }
    store.delete("VOLUME").await.unwrap();
    put(store.as_ref(), "someone-elses-data", b"x", PutMode::Overwrite).await.unwrap();
    match Backing::attach(store.clone(), "v2").await {
        Err(e @ BackingError::NotABacking { .. }) => assert!(e.to_string().contains("someone-elses-data"), "{e}"),
        other => panic!("attaching to a path with other data gave {other:?}"),
    }
}

/// A store that fails every call after `allowed` puts: a sync cut off
/// half-way, as a killed agent leaves it.
#[derive(Debug)]
struct CutOff {
    inner: Arc<dyn VolumeStore>,
    puts: AtomicUsize,
    allowed: usize,
}

impl CutOff {
    fn check(&self) -> Result<(), StoreError> {
        if self.puts.load(Ordering::SeqCst) >= self.allowed {
            return Err(StoreError::Unreachable { uri: self.inner.uri().to_owned(), reason: "cut off".into() });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl VolumeStore for CutOff {
    fn uri(&self) -> &str {
        self.inner.uri()
    }
    async fn put(&self, path: &str, data: &mut (dyn AsyncRead + Send + Unpin), mode: PutMode) -> Result<ObjectMeta, StoreError> {
        self.check()?;
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(path, data, mode).await
    }
    async fn get(&self, path: &str, out: &mut (dyn AsyncWrite + Send + Unpin), max: u64) -> Result<ObjectMeta, StoreError> {
        self.check()?;
        self.inner.get(path, out, max).await
    }
    async fn stat(&self, path: &str) -> Result<Option<Entry>, StoreError> {
        self.check()?;
        self.inner.stat(path).await
    }
    async fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
        self.check()?;
        self.inner.list(dir).await
    }
    async fn delete(&self, path: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(path).await
    }
    async fn rename(&self, from: &str, to: &str, overwrite: bool) -> Result<(), StoreError> {
        self.check()?;
        self.inner.rename(from, to, overwrite).await
    }
}

async fn backing_survives_an_interrupted_sync(store: Arc<dyn VolumeStore>, tmp: &Path) {
    let a = tmp.join(format!("agent-a-{}", uuid::Uuid::new_v4()));
    for i in 0..6 {
        write(&a, &format!("f{i}"), format!("generation one, file {i}").as_bytes());
    }
    let backing = Backing::attach(store.clone(), "vol").await.unwrap();
    let (_, state) = backing.sync(&a, &LocalState::default(), "A").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..6 {
        write(&a, &format!("f{i}"), format!("generation two, file {i}, longer").as_bytes());
    }
    // Cut off after the claim and three uploads: half of the new files are
    // in the backing, the manifest and the switch are not.
    let cut: Arc<dyn VolumeStore> = Arc::new(CutOff { inner: store.clone(), puts: AtomicUsize::new(0), allowed: 4 });
    let broken = Backing::attach(cut, "vol").await;
    let err = match broken {
        Ok(b) => b.sync(&a, &state, "A").await.unwrap_err(),
        Err(e) => e,
    };
    assert!(err.to_string().contains("cut off"), "{err}");

    // A reader sees the complete first generation.
    let reader = tmp.join(format!("reader-{}", uuid::Uuid::new_v4()));
    let fresh = Backing::attach(store.clone(), "vol").await.unwrap();
    assert_eq!(fresh.current().await.unwrap().unwrap().generation, 1);
    // Look without taking over: read the manifest the pointer names.
    let manifest = fresh.manifest(1).await.unwrap();
    assert_eq!(manifest.files.len(), 6);
    for f in &manifest.files {
        let (bytes, _) = get(store.as_ref(), &format!("blobs/{}", f.sha256), f.size).await.unwrap();
        assert!(bytes.starts_with(b"generation one"), "{} holds {:?}", f.path, String::from_utf8_lossy(&bytes));
    }

    // The same agent, restarted, finishes the sync over its own claim.
    let (report, _) = fresh.sync(&a, &state, "A").await.unwrap();
    assert_eq!((report.generation, report.files_copied), (2, 6));

    // Its new state was not kept (as if killed between the switch and
    // saving it): the same copy goes on from its own generation, another
    // agent with that old state is refused.
    write(&a, "f5", b"after a lost state");
    let (report, _) = fresh.sync(&a, &state, "A").await.unwrap();
    assert_eq!(report.generation, 3);
    assert!(matches!(fresh.sync(&a, &state, "Z").await, Err(BackingError::Stale { have: 1, current: 3, .. })));
    fresh.restore(&reader, "B").await.unwrap();
    assert_eq!(std::fs::read(reader.join("f3")).unwrap(), b"generation two, file 3, longer");
    assert_eq!(store.list("tmp").await.unwrap(), vec![], "uploads of the cut-off sync were left in tmp/");
}

/// An HA name service from a Hadoop configuration directory: two
/// NameNodes, the first of which nobody runs, so every call fails over to
/// the real one; and `hdfs:///path`, which takes the name service from
/// `fs.defaultFS`.
#[tokio::test]
async fn an_ha_name_service_from_a_configuration_directory() {
    let Ok(base) = std::env::var("WEIR_TEST_HDFS") else {
        eprintln!("WEIR_TEST_HDFS is not set: HA name services are not tested");
        return;
    };
    let namenode = base.trim_start_matches("hdfs://").trim_end_matches('/');
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(
        conf.path().join("core-site.xml"),
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://weirns</value></property></configuration>",
    )
    .unwrap();
    let property = |k: &str, v: &str| format!("<property><name>{k}</name><value>{v}</value></property>");
    std::fs::write(
        conf.path().join("hdfs-site.xml"),
        format!(
            "<configuration>{}{}{}{}{}</configuration>",
            property("dfs.nameservices", "weirns"),
            property("dfs.ha.namenodes.weirns", "dead,live"),
            property("dfs.namenode.rpc-address.weirns.dead", "127.0.0.1:1"),
            property("dfs.namenode.rpc-address.weirns.live", namenode),
            property(
                "dfs.client.failover.proxy.provider.weirns",
                "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider"
            ),
        ),
    )
    .unwrap();
    let settings = StoreSettings {
        hadoop_conf_dir: Some(conf.path().display().to_string()),
        op_timeout: Duration::from_secs(30),
    };
    let id = uuid::Uuid::new_v4();
    let store = open(&format!("hdfs://weirns/weir-test/ha-{id}"), &settings).unwrap();
    assert_eq!(store.uri(), format!("hdfs://weirns/weir-test/ha-{id}"));
    let meta = put(store.as_ref(), "through-ha", b"via the name service", PutMode::CreateNew).await.unwrap();
    // The same file through fs.defaultFS, and through the NameNode itself.
    let default_fs = open(&format!("hdfs:///weir-test/ha-{id}"), &settings).unwrap();
    assert_eq!(get(default_fs.as_ref(), "through-ha", 100).await.unwrap(), (b"via the name service".to_vec(), meta));
    let direct = open(&format!("{}/weir-test/ha-{id}", base.trim_end_matches('/')), &StoreSettings::default()).unwrap();
    assert_eq!(get(direct.as_ref(), "through-ha", 100).await.unwrap().1, meta);
    store_list_rename_delete(store.as_ref()).await;
    cleanup(&store).await;
}
