//! [`LocalStore`]: a directory on this machine as a [`VolumeStore`] (tests,
//! single machines, or a shared mount). Renames are the kernel's
//! (`renameat2` with `RENAME_NOREPLACE` when not overwriting), files are
//! fsynced before a put returns, and paths are checked so nothing outside
//! the root is reached.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{check_path, Entry, Hashing, ObjectMeta, PutMode, Result, StoreError, VolumeStore, CHUNK, MAX_LIST_ENTRIES};

#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    uri: String,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> Self {
        let uri = format!("file://{}", root.display());
        LocalStore { root, uri }
    }

    fn path(&self, path: &str, allow_root: bool) -> Result<PathBuf> {
        check_path(&self.uri, path, allow_root)?;
        Ok(if path.is_empty() { self.root.clone() } else { self.root.join(path) })
    }

    fn io(&self, path: &str, op: &'static str, e: std::io::Error) -> StoreError {
        match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound { uri: self.uri.clone(), path: path.to_owned() },
            std::io::ErrorKind::AlreadyExists => {
                StoreError::AlreadyExists { uri: self.uri.clone(), path: path.to_owned() }
            }
            _ => StoreError::Io { uri: self.uri.clone(), path: path.to_owned(), op, reason: e.to_string() },
        }
    }

    async fn make_parent(&self, path: &str, full: &Path) -> Result<()> {
        if let Some(parent) = full.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| self.io(path, "create the parent of", e))?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl VolumeStore for LocalStore {
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
        self.make_parent(path, &full).await?;
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true);
        match mode {
            PutMode::Overwrite => options.create(true).truncate(true),
            PutMode::CreateNew => options.create_new(true),
        };
        let mut file = options.open(&full).await.map_err(|e| self.io(path, "create", e))?;
        let mut hashing = Hashing::default();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = data.read(&mut buf).await.map_err(|e| self.io(path, "read the data for", e))?;
            if n == 0 {
                break;
            }
            hashing.update(&buf[..n]);
            file.write_all(&buf[..n]).await.map_err(|e| self.io(path, "write", e))?;
        }
        file.sync_all().await.map_err(|e| self.io(path, "fsync", e))?;
        Ok(hashing.finish())
    }

    async fn get(
        &self,
        path: &str,
        out: &mut (dyn AsyncWrite + Send + Unpin),
        max: u64,
    ) -> Result<ObjectMeta> {
        let full = self.path(path, false)?;
        let file = tokio::fs::File::open(&full).await.map_err(|e| self.io(path, "open", e))?;
        let size = file.metadata().await.map_err(|e| self.io(path, "stat", e))?.len();
        if size > max {
            return Err(StoreError::TooLarge { uri: self.uri.clone(), path: path.to_owned(), size, max });
        }
        // The file may grow while it is read: never take more than `max`.
        let mut limited = file.take(max.saturating_add(1));
        let mut hashing = Hashing::default();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = limited.read(&mut buf).await.map_err(|e| self.io(path, "read", e))?;
            if n == 0 {
                break;
            }
            hashing.update(&buf[..n]);
            if hashing.size > max {
                return Err(StoreError::TooLarge { uri: self.uri.clone(), path: path.to_owned(), size: hashing.size, max });
            }
            out.write_all(&buf[..n]).await.map_err(|e| self.io(path, "copy out", e))?;
        }
        out.flush().await.map_err(|e| self.io(path, "copy out", e))?;
        Ok(hashing.finish())
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        let full = self.path(path, true)?;
        match tokio::fs::symlink_metadata(&full).await {
            Ok(meta) => Ok(Some(Entry {
                name: path.rsplit('/').next().unwrap_or_default().to_owned(),
                size: if meta.is_dir() { 0 } else { meta.len() },
                is_dir: meta.is_dir(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(path, "stat", e)),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        let full = self.path(dir, true)?;
        let mut read = match tokio::fs::read_dir(&full).await {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(dir, "list", e)),
        };
        let mut entries = Vec::new();
        while let Some(e) = read.next_entry().await.map_err(|e| self.io(dir, "list", e))? {
            if entries.len() >= MAX_LIST_ENTRIES {
                return Err(StoreError::Io {
                    uri: self.uri.clone(),
                    path: dir.to_owned(),
                    op: "list",
                    reason: format!("more than {MAX_LIST_ENTRIES} entries"),
                });
            }
            let meta = e.metadata().await.map_err(|e| self.io(dir, "list", e))?;
            entries.push(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                size: if meta.is_dir() { 0 } else { meta.len() },
                is_dir: meta.is_dir(),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn delete(&self, path: &str) -> Result<bool> {
        let full = self.path(path, false)?;
        let meta = match tokio::fs::symlink_metadata(&full).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.io(path, "delete", e)),
        };
        let removed = if meta.is_dir() {
            tokio::fs::remove_dir_all(&full).await
        } else {
            tokio::fs::remove_file(&full).await
        };
        match removed {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(path, "delete", e)),
        }
    }

    async fn rename(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        let src = self.path(from, false)?;
        let dst = self.path(to, false)?;
        self.make_parent(to, &dst).await?;
        let flags = if overwrite {
            nix::fcntl::RenameFlags::empty()
        } else {
            nix::fcntl::RenameFlags::RENAME_NOREPLACE
        };
        let renamed = tokio::task::spawn_blocking(move || {
            nix::fcntl::renameat2(nix::fcntl::AT_FDCWD, &src, nix::fcntl::AT_FDCWD, &dst, flags)
        })
        .await
        .map_err(|e| StoreError::Io { uri: self.uri.clone(), path: from.to_owned(), op: "rename", reason: e.to_string() })?;
        match renamed {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EEXIST) | Err(nix::errno::Errno::ENOTEMPTY) => {
                Err(StoreError::AlreadyExists { uri: self.uri.clone(), path: to.to_owned() })
            }
            Err(nix::errno::Errno::ENOENT) => Err(StoreError::NotFound { uri: self.uri.clone(), path: from.to_owned() }),
            Err(e) => Err(StoreError::Io {
                uri: self.uri.clone(),
                path: from.to_owned(),
                op: "rename",
                reason: format!("to {to}: {e}"),
            }),
        }
    }
}
