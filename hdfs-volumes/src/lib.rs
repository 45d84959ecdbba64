//! Where a persistent volume keeps its durable copy.
//!
//! [`VolumeStore`] is the one interface to that place: put, get, list,
//! delete and rename of files under one root, streamed, with every put and
//! get returning the size and SHA-256 of the bytes that passed. Two stores
//! implement it: [`LocalStore`] (a directory; tests and single machines)
//! and [`HdfsStore`] (`hdfs://` through `hdfs-native`, with HA name
//! services and a Hadoop configuration directory). [`open`] picks one from
//! a backing URI. [`backing`] builds the volume's copy on top of any store:
//! incremental syncs that switch generations atomically, restores, and the
//! generation fence that keeps a stale copy from overwriting a newer one.
//!
//! Invariants every store keeps: paths are relative to the store's root and
//! checked ([`check_path`]) so nothing outside it can be named; a get never
//! reads more than the caller's bound; a put with [`PutMode::CreateNew`]
//! fails, leaving the existing file, when the path exists.

pub mod backing;
mod hdfs;
mod local;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

pub use hdfs::HdfsStore;
pub use local::LocalStore;

/// Bytes moved per read or write of a stream.
pub const CHUNK: usize = 1 << 20;

/// Entries one `list` returns at most: a directory past it is refused
/// rather than read into memory without bound.
pub const MAX_LIST_ENTRIES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("backing URI {uri:?} is not valid: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("path {path:?} in {uri} is not valid: {reason}")]
    InvalidPath { uri: String, path: String, reason: String },
    #[error("{uri}/{path} does not exist")]
    NotFound { uri: String, path: String },
    #[error("{uri}/{path} already exists")]
    AlreadyExists { uri: String, path: String },
    #[error("{uri}/{path} is {size} bytes; at most {max} are read")]
    TooLarge { uri: String, path: String, size: u64, max: u64 },
    #[error("{uri} is unreachable: {reason}")]
    Unreachable { uri: String, reason: String },
    #[error("cannot {op} {uri}/{path}: {reason}")]
    Io { uri: String, path: String, op: &'static str, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a put or get saw: the bytes that passed and their SHA-256.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub sha256: [u8; 32],
}

impl ObjectMeta {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

impl fmt::Debug for ObjectMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectMeta({} bytes, sha256 {})", self.size, self.sha256_hex())
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The last component of its path.
    pub name: String,
    pub size: u64,
    pub is_dir: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Replace a file that is there.
    Overwrite,
    /// Fail with [`StoreError::AlreadyExists`] if the path exists: an
    /// atomic create-if-absent (the NameNode's `create` without overwrite,
    /// `O_EXCL` locally), which the backing uses to claim generations.
    CreateNew,
}

/// A place that holds files under one root. Writes are not atomic by
/// themselves (a reader may see a file being written); `rename` is, and the
/// backing builds its atomic switch on it.
#[async_trait::async_trait]
pub trait VolumeStore: Send + Sync + fmt::Debug {
    /// The store's root as a URI, for messages.
    fn uri(&self) -> &str;
    /// Writes everything `data` yields to `path` (parents are created).
    async fn put(
        &self,
        path: &str,
        data: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<ObjectMeta>;
    /// Streams `path` into `out`; a file longer than `max` bytes is
    /// refused before anything is written.
    async fn get(
        &self,
        path: &str,
        out: &mut (dyn AsyncWrite + Send + Unpin),
        max: u64,
    ) -> Result<ObjectMeta>;
    /// The entry at `path`, or `None` if nothing is there.
    async fn stat(&self, path: &str) -> Result<Option<Entry>>;
    /// The direct children of `dir` ("" is the root), sorted by name; a
    /// missing directory lists empty.
    async fn list(&self, dir: &str) -> Result<Vec<Entry>>;
    /// Deletes a file or a whole directory; `false` if nothing was there.
    async fn delete(&self, path: &str) -> Result<bool>;
    /// Renames atomically (parents of `to` are created). Without
    /// `overwrite`, an existing `to` is an [`StoreError::AlreadyExists`].
    async fn rename(&self, from: &str, to: &str, overwrite: bool) -> Result<()>;
}

/// How to reach stores: the Hadoop configuration directory for `hdfs://`
/// URIs (its `core-site.xml` and `hdfs-site.xml` name the NameNodes of HA
/// name services and `fs.defaultFS`) and the time one store call may take.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub hadoop_conf_dir: Option<String>,
    pub op_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings { hadoop_conf_dir: None, op_timeout: Duration::from_secs(60) }
    }
}

/// Opens the store a backing URI names: `hdfs://[nameservice-or-host:port]/path`
/// (no authority: the configuration's `fs.defaultFS`) or `file:///path`.
pub fn open(uri: &str, settings: &StoreSettings) -> Result<Arc<dyn VolumeStore>> {
    let bad = |reason: &str| StoreError::InvalidUri { uri: uri.to_owned(), reason: reason.to_owned() };
    if uri.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    if let Some(bad_char) = uri.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(&format!("contains {bad_char:?}")));
    }
    if let Some(rest) = uri.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad("a file: URI needs an absolute path (file:///dir)"));
        }
        let root = check_root(uri, rest)?;
        return Ok(Arc::new(LocalStore::new(root.into())));
    }
    if let Some(rest) = uri.strip_prefix("hdfs://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(bad("an hdfs: URI needs a path (hdfs://namenode:port/dir)")),
        };
        let root = check_root(uri, path)?;
        if root == "/" {
            return Err(bad("the root of a file system cannot back a volume"));
        }
        let namenode = (!authority.is_empty()).then(|| format!("hdfs://{authority}"));
        return Ok(Arc::new(HdfsStore::connect(namenode, root, settings)?));
    }
    Err(bad("only hdfs:// and file:// backings are known"))
}

/// A root path: absolute, no `.`/`..` components; trailing `/` dropped.
fn check_root(uri: &str, path: &str) -> Result<String> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_owned());
    }
    for part in trimmed[1..].split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(StoreError::InvalidUri {
                uri: uri.to_owned(),
                reason: "its path may not hold empty, '.' or '..' components".to_owned(),
            });
        }
    }
    Ok(trimmed.to_owned())
}

/// Checks a path relative to a store's root: not empty (unless
/// `allow_root`), no leading `/`, no empty, `.` or `..` components, no
/// control characters. Refused, never normalised.
pub fn check_path(uri: &str, path: &str, allow_root: bool) -> Result<()> {
    let bad = |reason: &str| StoreError::InvalidPath {
        uri: uri.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() {
        return if allow_root { Ok(()) } else { Err(bad("empty")) };
    }
    if path.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    if path.starts_with('/') {
        return Err(bad("must be relative to the store's root"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(bad("contains a control character"));
    }
    if path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(bad("may not hold empty, '.' or '..' components"));
    }
    Ok(())
}

/// Running size and SHA-256 of a stream.
#[derive(Default)]
pub(crate) struct Hashing {
    size: u64,
    hasher: Sha256,
}

impl Hashing {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.hasher.update(bytes);
    }

    pub(crate) fn finish(self) -> ObjectMeta {
        ObjectMeta { size: self.size, sha256: self.hasher.finalize().into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_checked_and_name_what_is_wrong() {
        let settings = StoreSettings::default();
        let err = |uri: &str| open(uri, &settings).unwrap_err().to_string();
        assert!(err("s3://bucket/x").contains("only hdfs:// and file://"));
        assert!(err("file://relative/x").contains("absolute path"));
        assert!(err("hdfs://nn:9000").contains("needs a path"));
        assert!(err("hdfs://nn:9000/").contains("root of a file system"));
        assert!(err("hdfs://nn:9000/a/../b").contains("'..'"));
        assert!(err("file:///a b").contains("' '"));
        assert_eq!(open("file:///tmp/v/", &settings).unwrap().uri(), "file:///tmp/v");
        assert_eq!(open("hdfs://127.0.0.1:1/w/v", &settings).unwrap().uri(), "hdfs://127.0.0.1:1/w/v");
    }

    #[test]
    fn relative_paths_cannot_leave_the_root() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\nb"] {
            assert!(check_path("u", bad, false).is_err(), "{bad:?} was accepted");
        }
        assert!(check_path("u", "", false).is_err());
        assert!(check_path("u", "", true).is_ok());
        assert!(check_path("u", "blobs/ab12", false).is_ok());
    }
}
