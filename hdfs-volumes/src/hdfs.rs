//! [`HdfsStore`]: a directory of an HDFS as a [`VolumeStore`], through the
//! `hdfs-native` client. A URI's authority is a NameNode (`host:port`) or
//! an HA name service that the Hadoop configuration directory's
//! `hdfs-site.xml` describes (`dfs.ha.namenodes.<ns>`,
//! `dfs.namenode.rpc-address.<ns>.<nn>`); with no authority, its
//! `fs.defaultFS`. Every call is bounded by `op_timeout`: the client's own
//! failover retries could otherwise keep a caller waiting for minutes on a
//! NameNode that is down. Renames are the NameNode's `rename2`, atomic.

use bytes::Bytes;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    check_path, Entry, Hashing, ObjectMeta, PutMode, Result, StoreError, StoreSettings, VolumeStore, CHUNK,
    MAX_LIST_ENTRIES,
};

#[derive(Debug)]
pub struct HdfsStore {
    client: Client,
    /// Absolute path of the root inside the file system.
    root: String,
    uri: String,
    op_timeout: Duration,
}

impl HdfsStore {
    /// Builds the client (no connection is made until the first call).
    /// `namenode` is `hdfs://authority`, or `None` for `fs.defaultFS`.
    pub fn connect(namenode: Option<String>, root: String, settings: &StoreSettings) -> Result<Self> {
        let uri = format!("{}{root}", namenode.as_deref().unwrap_or("hdfs://"));
        let mut builder = ClientBuilder::new();
        if let Some(namenode) = &namenode {
            builder = builder.with_url(namenode.clone());
        }
        if let Some(dir) = &settings.hadoop_conf_dir {
            builder = builder.with_config_dir(dir.clone());
        }
        let client = builder.build().map_err(|e| StoreError::InvalidUri {
            uri: uri.clone(),
            reason: match &settings.hadoop_conf_dir {
                Some(dir) => format!("cannot make an HDFS client with the configuration in {dir}: {e}"),
                None => format!("cannot make an HDFS client: {e}"),
            },
        })?;
        Ok(HdfsStore { client, root, uri, op_timeout: settings.op_timeout })
    }

    fn path(&self, path: &str, allow_root: bool) -> Result<String> {
        check_path(&self.uri, path, allow_root)?;
        Ok(if path.is_empty() { self.root.clone() } else { format!("{}/{path}", self.root) })
    }

    fn error(&self, path: &str, op: &'static str, e: HdfsError) -> StoreError {
        let (uri, path) = (self.uri.clone(), path.to_owned());
        match e {
            HdfsError::FileNotFound(_) => StoreError::NotFound { uri, path },
            HdfsError::AlreadyExists(_) => StoreError::AlreadyExists { uri, path },
            HdfsError::RPCError(class, _) if class.ends_with("FileNotFoundException") => {
                StoreError::NotFound { uri, path }
            }
            HdfsError::RPCError(class, _) if class.ends_with("FileAlreadyExistsException") => {
                StoreError::AlreadyExists { uri, path }
            }
            HdfsError::IOError(io) => StoreError::Unreachable {
                uri,
                reason: format!("cannot {op} {path}: the NameNode or a DataNode did not answer: {io}"),
            },
            other => StoreError::Io { uri, path, op, reason: other.to_string() },
        }
    }

    /// Runs one client call under the store's time bound.
    async fn bounded<T>(
        &self,
        path: &str,
        op: &'static str,
        call: impl Future<Output = std::result::Result<T, HdfsError>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.op_timeout, call).await {
            Ok(result) => result.map_err(|e| self.error(path, op, e)),
            Err(_) => Err(StoreError::Unreachable {
                uri: self.uri.clone(),
                reason: format!("cannot {op} {path}: no answer within {:?}", self.op_timeout),
            }),
        }
    }

    async fn make_parent(&self, path: &str) -> Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            let full = self.path(parent, false)?;
            self.bounded(parent, "create", self.client.mkdirs(&full, 0o755, true)).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl VolumeStore for HdfsStore {
    fn uri(&self) -> &str {
        &self.uri
    }

    async fn put(
        &self,
        path: &str,
        data: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<ObjectMeta> {
        let full = self.path(path, false)?;
        let options = WriteOptions::default().overwrite(mode == PutMode::Overwrite).create_parent(true);
        let mut writer = self.bounded(path, "create", self.client.create(&full, options)).await?;
        let mut hashing = Hashing::default();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = data.read(&mut buf).await.map_err(|e| StoreError::Io {
                uri: self.uri.clone(),
                path: path.to_owned(),
                op: "read the data for",
                reason: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            hashing.update(&buf[..n]);
            self.bounded(path, "write", writer.write_bytes(Bytes::copy_from_slice(&buf[..n]))).await?;
        }
        self.bounded(path, "close", writer.close()).await?;
        Ok(hashing.finish())
    }

    async fn get(
        &self,
        path: &str,
        out: &mut (dyn AsyncWrite + Send + Unpin),
        max: u64,
    ) -> Result<ObjectMeta> {
        let full = self.path(path, false)?;
        let mut reader = self.bounded(path, "open", self.client.read(&full)).await?;
        let size = reader.file_length() as u64;
        if size > max {
            return Err(StoreError::TooLarge { uri: self.uri.clone(), path: path.to_owned(), size, max });
        }
        let mut hashing = Hashing::default();
        while reader.remaining() > 0 {
            let want = reader.remaining().min(CHUNK);
            let chunk = self.bounded(path, "read", reader.read_bytes(want)).await?;
            if chunk.is_empty() {
                return Err(StoreError::Io {
                    uri: self.uri.clone(),
                    path: path.to_owned(),
                    op: "read",
                    reason: format!("it ended after {} of {size} bytes", hashing.size),
                });
            }
            hashing.update(&chunk);
            out.write_all(&chunk).await.map_err(|e| StoreError::Io {
                uri: self.uri.clone(),
                path: path.to_owned(),
                op: "copy out",
                reason: e.to_string(),
            })?;
        }
        out.flush().await.map_err(|e| StoreError::Io {
            uri: self.uri.clone(),
            path: path.to_owned(),
            op: "copy out",
            reason: e.to_string(),
        })?;
        Ok(hashing.finish())
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        let full = self.path(path, true)?;
        match self.bounded(path, "stat", self.client.get_file_info(&full)).await {
            Ok(status) => Ok(Some(Entry {
                name: path.rsplit('/').next().unwrap_or_default().to_owned(),
                size: status.length as u64,
                is_dir: status.isdir,
            })),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        let full = self.path(dir, true)?;
        let iter = self.client.list_status_iter(&full, false);
        let mut entries = Vec::new();
        loop {
            let next = match tokio::time::timeout(self.op_timeout, iter.next()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err(StoreError::Unreachable {
                        uri: self.uri.clone(),
                        reason: format!("cannot list {dir}: no answer within {:?}", self.op_timeout),
                    })
                }
            };
            let status = match next {
                None => break,
                Some(Ok(status)) => status,
                Some(Err(HdfsError::FileNotFound(_))) => return Ok(Vec::new()),
                Some(Err(e)) => match self.error(dir, "list", e) {
                    StoreError::NotFound { .. } => return Ok(Vec::new()),
                    other => return Err(other),
                },
            };
            if entries.len() >= MAX_LIST_ENTRIES {
                return Err(StoreError::Io {
                    uri: self.uri.clone(),
                    path: dir.to_owned(),
                    op: "list",
                    reason: format!("more than {MAX_LIST_ENTRIES} entries"),
                });
            }
            entries.push(Entry {
                name: status.path.rsplit('/').next().unwrap_or_default().to_owned(),
                size: status.length as u64,
                is_dir: status.isdir,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn delete(&self, path: &str) -> Result<bool> {
        let full = self.path(path, false)?;
        match self.bounded(path, "delete", self.client.delete(&full, true)).await {
            Err(StoreError::NotFound { .. }) => Ok(false),
            other => other,
        }
    }

    async fn rename(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        let src = self.path(from, false)?;
        let dst = self.path(to, false)?;
        self.make_parent(to).await?;
        match self.bounded(from, "rename", self.client.rename(&src, &dst, overwrite)).await {
            // The NameNode names neither side in its exception class: tell
            // a missing source from an existing destination here.
            Err(StoreError::AlreadyExists { .. }) => {
                Err(StoreError::AlreadyExists { uri: self.uri.clone(), path: to.to_owned() })
            }
            other => other,
        }
    }
}
