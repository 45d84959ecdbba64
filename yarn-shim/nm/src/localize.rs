//! Resource localization, as a Hadoop NodeManager does it: each
//! `LocalResource` of a launch context is fetched once per [`Localizer`]
//! (keyed by URL, timestamp and type), checked against the modification
//! time the client recorded, unpacked if it is an archive, and symlinked
//! into the container's working directory under its map key.
//!
//! Invariants:
//! - A cache entry is published only once it is complete: each fetch works
//!   in a fresh numbered directory `cache_root/<n>/`, and only a successful
//!   fetch is remembered. A failed fetch removes its directory and the next
//!   caller tries again.
//! - Concurrent callers of the same resource wait for one fetch.
//! - Nothing is written outside `cache_root` and the work directory: map
//!   keys and archive entries that would escape are refused, and links are
//!   never created through an existing symlink (which would write into the
//!   shared cache).
//! - Cached resources stay for the Localizer's lifetime: there is no
//!   eviction; the cache lives in the node manager's sandbox and goes with
//!   it.
//!
//! Sources: `file:` (the client and this node share a file system) and
//! `hdfs:` (read with the `hdfs-native` client, which takes its
//! configuration from `HADOOP_CONF_DIR` and its user from
//! `HADOOP_USER_NAME` or the process's user; no delegation tokens are used).

use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use weir_yarn_api::records as r;

/// A resource that could not be made available to a container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot localize resource '{key}' from {url}: {reason}")]
pub struct LocalizeError {
    /// The resource's name in the launch context (its link in the work dir).
    pub key: String,
    /// The source URL, as Hadoop prints it.
    pub url: String,
    pub reason: String,
}

/// What a cached copy is: a `(url, timestamp, type)` names one copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    url: String,
    timestamp: i64,
    kind: Kind,
}

/// How a resource is laid down in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    File,
    /// ARCHIVE, and PATTERN too: Hadoop unpacks a PATTERN jar's matching
    /// entries next to the jar itself; we unpack the whole archive, which
    /// is a superset of what a PATTERN user can rely on.
    Archive,
}

/// Where a resource comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Local(PathBuf),
    /// `namenode` is `hdfs://host[:port]`, or `None` for the configured
    /// default file system (`hdfs:///path`).
    Hdfs {
        namenode: Option<String>,
        path: String,
    },
}

/// A source ready to read.
enum Fetch {
    Local(PathBuf),
    Hdfs(hdfs_native::Client, String),
}

/// An archive format we can unpack, chosen by the file name as Hadoop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Zip,
    Tar,
    TarGz,
}

/// Fetches, unpacks and links a node manager's resources. Shared by the
/// node manager's calls (`Send + Sync`); all file work runs on blocking
/// threads.
pub struct Localizer {
    /// Absolute, so the links into work dirs resolve from anywhere.
    cache_root: PathBuf,
    max_archive_bytes: u64,
    cache: Mutex<HashMap<CacheKey, Arc<OnceCell<PathBuf>>>>,
    next_dir: AtomicU64,
    /// Fetches started, for tests to check each resource is fetched once.
    fetches: AtomicU64,
    /// HDFS client settings over those in `HADOOP_CONF_DIR` (tests shorten
    /// the client's retries with it).
    hdfs_overrides: Vec<(String, String)>,
}

impl Localizer {
    /// `cache_root`: where fetched and unpacked resources live (one per
    /// node manager). `max_archive_bytes`: the most bytes one archive may
    /// unpack to.
    pub fn new(cache_root: PathBuf, max_archive_bytes: u64) -> Localizer {
        let cache_root = std::path::absolute(&cache_root).unwrap_or(cache_root);
        Localizer {
            cache_root,
            max_archive_bytes,
            cache: Mutex::new(HashMap::new()),
            next_dir: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            hdfs_overrides: Vec::new(),
        }
    }

    /// Fetches each resource once per (url, timestamp, type) per Localizer
    /// (concurrent callers of the same resource wait for one fetch; a failed
    /// fetch is not cached), unpacks archives, and symlinks each into
    /// `work_dir/<key>`. Keys are checked before anything is fetched.
    pub async fn localize(
        &self,
        resources: &[r::StringLocalResourceMapProto],
        work_dir: &Path,
    ) -> Result<(), LocalizeError> {
        self.localize_as(resources, work_dir, None).await
    }

    /// [`Localizer::localize`], with the links made as `owner` (a work
    /// dir the container's user owns; see [`crate::identity`]) where
    /// there is one. Fetching into the cache stays the node manager's.
    pub async fn localize_as(
        &self,
        resources: &[r::StringLocalResourceMapProto],
        work_dir: &Path,
        owner: Option<&crate::identity::Identity>,
    ) -> Result<(), LocalizeError> {
        let mut checked = Vec::with_capacity(resources.len());
        for entry in resources {
            let key = entry.key().to_owned();
            let url = entry
                .value
                .as_ref()
                .and_then(|v| v.resource.as_ref())
                .map_or_else(|| "(no URL)".to_owned(), url_text);
            let fail = |reason: String| LocalizeError {
                key: key.clone(),
                url: url.clone(),
                reason,
            };
            let link = link_path(&key).map_err(fail)?;
            let Some(resource) = entry.value.as_ref() else {
                return Err(fail(
                    "the launch context gives no resource for this name".into(),
                ));
            };
            checked.push((key, url, link, resource));
        }
        for (key, url, link, resource) in checked {
            let fail = |reason: String| LocalizeError {
                key: key.clone(),
                url: url.clone(),
                reason,
            };
            let cached = self.cached(resource, &url).await.map_err(fail)?;
            let work_dir = work_dir.to_path_buf();
            let owner = owner.cloned();
            let linked = tokio::task::spawn_blocking(move || crate::identity::as_owner(owner.as_ref(), || link_into(&work_dir, &link, &cached))).await;
            linked
                .map_err(|e| fail(format!("the linking task failed: {e}")))?
                .map_err(fail)?;
        }
        Ok(())
    }

    /// The cached copy of a resource, fetching it if no copy is cached.
    async fn cached(&self, resource: &r::LocalResourceProto, url: &str) -> Result<PathBuf, String> {
        let kind = kind_of(resource)?;
        let key = CacheKey {
            url: url.to_owned(),
            timestamp: resource.timestamp(),
            kind,
        };
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.entry(key).or_default().clone()
        };
        cell.get_or_try_init(|| self.fetch(resource, url, kind))
            .await
            .cloned()
    }

    /// Fetches a resource into a fresh cache directory; removes the
    /// directory again if the fetch fails.
    async fn fetch(
        &self,
        resource: &r::LocalResourceProto,
        url: &str,
        kind: Kind,
    ) -> Result<PathBuf, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let u = resource
            .resource
            .as_ref()
            .ok_or("the resource has no URL")?;
        let expected = resource.timestamp();
        let max = self.max_archive_bytes;
        let source = match source_of(u)? {
            Source::Local(path) => Fetch::Local(path),
            Source::Hdfs { namenode, path } => {
                Fetch::Hdfs(hdfs_client(namenode, &self.hdfs_overrides)?, path)
            }
        };
        let dir = self.fresh_dir().await?;
        let result = match source {
            Fetch::Local(path) => {
                let (url, dir) = (url.to_owned(), dir.clone());
                tokio::task::spawn_blocking(move || {
                    fetch_local(&path, expected, &url, kind, &dir, max)
                })
                .await
                .unwrap_or_else(|e| Err(format!("the fetching task failed: {e}")))
            }
            Fetch::Hdfs(client, path) => {
                fetch_hdfs(&client, &path, expected, url, kind, &dir, max).await
            }
        };
        if result.is_err() {
            let partial = dir.clone();
            let _ = tokio::task::spawn_blocking(move || fs::remove_dir_all(partial)).await;
        }
        if let Ok(path) = &result {
            tracing::info!(url, cached = %path.display(), "resource localized");
        }
        result
    }

    /// A new, empty `cache_root/<n>`; numbers left by an earlier node
    /// manager on the same root are skipped, never reused.
    async fn fresh_dir(&self) -> Result<PathBuf, String> {
        let root = self.cache_root.clone();
        let first = self.next_dir.fetch_add(1, Ordering::Relaxed);
        let made = tokio::task::spawn_blocking(move || -> Result<(PathBuf, u64), String> {
            fs::create_dir_all(&root)
                .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
            let mut n = first;
            loop {
                let dir = root.join(n.to_string());
                match fs::create_dir(&dir) {
                    Ok(()) => return Ok((dir, n)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                    Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
                }
            }
        })
        .await
        .map_err(|e| format!("the cache task failed: {e}"))??;
        let (dir, used) = made;
        // Move past numbers found taken so later fetches do not probe them again.
        self.next_dir.fetch_max(used + 1, Ordering::Relaxed);
        Ok(dir)
    }
}

/// The URL as Hadoop prints it (`new URI(scheme, userInfo, host, port,
/// file, null, null)`): `scheme://[userInfo@]host[:port]file`, or
/// `scheme:file` without a host, as `file:` URLs usually are.
pub fn url_text(u: &r::UrlProto) -> String {
    let mut s = String::new();
    if !u.scheme().is_empty() {
        s.push_str(u.scheme());
        s.push(':');
    }
    if !u.host().is_empty() {
        s.push_str("//");
        if !u.user_info().is_empty() {
            s.push_str(u.user_info());
            s.push('@');
        }
        s.push_str(u.host());
        if u.port() > 0 {
            s.push_str(&format!(":{}", u.port()));
        }
    }
    s.push_str(u.file());
    s
}

/// Where to read a URL from. Hadoop keeps the path decoded in `file`, but
/// its `URL.toPath` passes `%XX` through to `URI`, which decodes them; so
/// do we.
fn source_of(u: &r::UrlProto) -> Result<Source, String> {
    let path = percent_decode(u.file());
    if path.is_empty() {
        return Err("the URL has no path".into());
    }
    match u.scheme().to_ascii_lowercase().as_str() {
        // A host in a file: URL names this machine; Hadoop's local file
        // system ignores it too.
        "file" => Ok(Source::Local(PathBuf::from(path))),
        "hdfs" => {
            let namenode = match (u.host(), u.port()) {
                ("", _) => None,
                (host, port) if port > 0 => Some(format!("hdfs://{host}:{port}")),
                (host, _) => Some(format!("hdfs://{host}")),
            };
            Ok(Source::Hdfs { namenode, path })
        }
        "" => Err("the URL has no scheme".into()),
        other => Err(format!(
            "the URL scheme '{other}' is not supported (only file and hdfs are)"
        )),
    }
}

/// `%XX` escapes in a URL's path, as Hadoop's `URL` → `Path` conversion
/// undoes them; bytes that are not UTF-8 are replaced, never fatal.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn kind_of(resource: &r::LocalResourceProto) -> Result<Kind, String> {
    // An unset type is a file, as with the Hadoop client's defaults.
    let Some(ty) = resource.r#type else {
        return Ok(Kind::File);
    };
    match r::LocalResourceTypeProto::try_from(ty) {
        Ok(r::LocalResourceTypeProto::File) => Ok(Kind::File),
        Ok(r::LocalResourceTypeProto::Archive | r::LocalResourceTypeProto::Pattern) => {
            Ok(Kind::Archive)
        }
        Err(_) => Err(format!(
            "the resource type {ty} is not one of ARCHIVE, FILE, PATTERN"
        )),
    }
}

/// A map key as a path relative to the work dir: non-empty, not absolute,
/// no `..`.
fn link_path(key: &str) -> Result<PathBuf, String> {
    let path = Path::new(key);
    let mut relative = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "the resource name {key:?} must be a relative path without '..'"
                ));
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(format!("the resource name {key:?} names no file"));
    }
    Ok(relative)
}

/// Links `work_dir/<link>` to `cached`, creating the link's parent
/// directories; refuses to go through an existing symlink, which could be
/// another resource's cached directory.
fn link_into(work_dir: &Path, link: &Path, cached: &Path) -> Result<(), String> {
    let mut at = work_dir.to_path_buf();
    let parts: Vec<_> = link.components().collect();
    let Some((last, parents)) = parts.split_last() else {
        return Err("the resource name names no file".into());
    };
    for part in parents {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a link to another resource, not a directory",
                    at.display()
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} exists and is not a directory", at.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|e| format!("cannot create {}: {e}", at.display()))?;
            }
            Err(e) => return Err(format!("cannot read {}: {e}", at.display())),
        }
    }
    at.push(last);
    match std::os::unix::fs::symlink(cached, &at) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(format!(
            "{} already exists in the container's work directory",
            at.display()
        )),
        Err(e) => Err(format!(
            "cannot link {} to {}: {e}",
            at.display(),
            cached.display()
        )),
    }
}

fn check_timestamp(url: &str, expected: i64, actual: i64) -> Result<(), String> {
    if expected != actual {
        return Err(format!(
            "Resource {url} changed on src filesystem - expected: \"{expected}\", was: \"{actual}\""
        ));
    }
    Ok(())
}

/// Modification time in milliseconds, truncated as Java's
/// `File.lastModified` does.
fn mtime_millis(meta: &fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000
}

fn file_name(path: &Path) -> Result<String, String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} has no file name", path.display()))
}

fn format_of(kind: Kind, name: &str) -> Option<Format> {
    if kind != Kind::Archive {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".zip") || lower.ends_with(".jar") {
        Some(Format::Zip)
    } else if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        Some(Format::TarGz)
    } else if lower.ends_with(".tar") {
        Some(Format::Tar)
    } else {
        None
    }
}

fn fetch_local(
    source: &Path,
    expected: i64,
    url: &str,
    kind: Kind,
    dir: &Path,
    max: u64,
) -> Result<PathBuf, String> {
    let meta =
        fs::metadata(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    check_timestamp(url, expected, mtime_millis(&meta))?;
    let name = file_name(source)?;
    place(source, meta.is_dir(), false, &name, kind, dir, max)
}

/// Lays `source` down as `dir/<name>`: unpacked if it is an archive we
/// know, else copied (or moved, if `owned`, i.e. a private download).
fn place(
    source: &Path,
    is_dir: bool,
    owned: bool,
    name: &str,
    kind: Kind,
    dir: &Path,
    max: u64,
) -> Result<PathBuf, String> {
    let target = dir.join(name);
    match format_of(kind, name) {
        Some(format) if !is_dir => {
            match format {
                Format::Zip => unzip(source, &target, max)?,
                Format::Tar => untar(source, &target, false, max)?,
                Format::TarGz => untar(source, &target, true, max)?,
            }
            if owned {
                let _ = fs::remove_file(source);
            }
        }
        _ => {
            if kind == Kind::Archive && !is_dir {
                // Hadoop does the same: warn and keep the file as it is.
                tracing::warn!(source = %source.display(), "an ARCHIVE resource without a .zip, .jar, .tar, .tgz or .tar.gz name is copied, not unpacked");
            }
            if owned {
                fs::rename(source, &target).map_err(|e| {
                    format!(
                        "cannot move {} to {}: {e}",
                        source.display(),
                        target.display()
                    )
                })?;
            } else {
                copy_tree(source, &target)?;
            }
        }
    }
    Ok(target)
}

/// Copies a file, or a directory recursively (symlinks inside it are
/// copied as symlinks, so a link cycle cannot make the copy endless).
fn copy_tree(source: &Path, target: &Path) -> Result<(), String> {
    let meta =
        fs::metadata(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    if !meta.is_dir() {
        fs::copy(source, target).map_err(|e| {
            format!(
                "cannot copy {} to {}: {e}",
                source.display(),
                target.display()
            )
        })?;
        return Ok(());
    }
    fs::create_dir(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let entries =
        fs::read_dir(source).map_err(|e| format!("cannot list {}: {e}", source.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", source.display()))?;
        let (from, to) = (entry.path(), target.join(entry.file_name()));
        let ty = entry
            .file_type()
            .map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        if ty.is_symlink() {
            let points_to =
                fs::read_link(&from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
            std::os::unix::fs::symlink(&points_to, &to)
                .map_err(|e| format!("cannot link {}: {e}", to.display()))?;
        } else {
            copy_tree(&from, &to)?;
        }
    }
    Ok(())
}

/// An archive entry's path, if it stays inside the unpack directory.
fn entry_path(name: &Path) -> Result<PathBuf, String> {
    let mut relative = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "the archive entry {} would land outside the unpack directory",
                    name.display()
                ));
            }
        }
    }
    Ok(relative)
}

fn too_big(source: &Path, max: u64) -> String {
    format!("{} unpacks to more than {max} bytes", source.display())
}

/// Unpacks a zip or jar. Like Hadoop's `FileUtil.unZip`, symlink entries
/// become plain files; permission bits are kept (`rwx` only, never
/// set-id bits).
fn unzip(source: &Path, target: &Path, max: u64) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let file =
        fs::File::open(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("{} is not a zip archive: {e}", source.display()))?;
    fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let mut left = max;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("{}: cannot read entry {i}: {e}", source.display()))?;
        let name = entry.name().to_owned();
        let relative = entry_path(Path::new(&name))?;
        let dest = target.join(&relative);
        if entry.is_dir() {
            fs::create_dir_all(&dest)
                .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
            continue;
        }
        if relative.as_os_str().is_empty() {
            return Err(format!("{}: a file entry has no name", source.display()));
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let mut out = fs::File::create(&dest)
            .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        // Count what is really inflated, not what the entry claims.
        let copied = std::io::copy(&mut (&mut entry).take(left.saturating_add(1)), &mut out)
            .map_err(|e| format!("{}: cannot unpack {name}: {e}", source.display()))?;
        left = left
            .checked_sub(copied)
            .ok_or_else(|| too_big(source, max))?;
        if let Some(mode) = entry.unix_mode() {
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o777))
                .map_err(|e| format!("cannot set the mode of {}: {e}", dest.display()))?;
        }
    }
    Ok(())
}

/// Unpacks a tar, gzipped or not. `tar`'s `unpack_in` keeps `rwx` bits
/// (never set-id bits), and refuses to write through a symlink that
/// leaves the directory; we refuse absolute and `..` names outright.
fn untar(source: &Path, target: &Path, gzipped: bool, max: u64) -> Result<(), String> {
    let file =
        fs::File::open(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let entries = archive
        .entries()
        .map_err(|e| format!("{} is not a tar archive: {e}", source.display()))?;
    let mut left = max;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| format!("{} is not a readable tar archive: {e}", source.display()))?;
        let path = entry
            .path()
            .map_err(|e| format!("{}: an entry has a bad name: {e}", source.display()))?
            .into_owned();
        entry_path(&path)?;
        left = left
            .checked_sub(entry.size())
            .ok_or_else(|| too_big(source, max))?;
        let unpacked = entry.unpack_in(target).map_err(|e| {
            format!(
                "{}: cannot unpack {}: {e}",
                source.display(),
                path.display()
            )
        })?;
        if !unpacked {
            return Err(format!(
                "the archive entry {} would land outside the unpack directory",
                path.display()
            ));
        }
    }
    Ok(())
}

fn hdfs_client(
    namenode: Option<String>,
    overrides: &[(String, String)],
) -> Result<hdfs_native::Client, String> {
    let mut builder = hdfs_native::ClientBuilder::new();
    if let Some(namenode) = namenode {
        builder = builder.with_url(namenode);
    }
    if !overrides.is_empty() {
        builder = builder.with_config(overrides.iter().cloned());
    }
    builder
        .build()
        .map_err(|e| format!("cannot make an HDFS client: {e}"))
}

/// Reads an `hdfs:` resource: checks its modification time, downloads it
/// into `dir`, then lays it down as a local one would be. An unreachable
/// NameNode fails after the client's failover retries (Hadoop's
/// `dfs.client.failover.*` settings, minutes by default).
async fn fetch_hdfs(
    client: &hdfs_native::Client,
    path: &str,
    expected: i64,
    url: &str,
    kind: Kind,
    dir: &Path,
    max: u64,
) -> Result<PathBuf, String> {
    use tokio::io::AsyncWriteExt;
    let status = client
        .get_file_info(path)
        .await
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let actual = i64::try_from(status.modification_time).unwrap_or(i64::MAX);
    check_timestamp(url, expected, actual)?;
    if status.isdir {
        return Err(format!(
            "{path} is an HDFS directory; only HDFS files can be localized"
        ));
    }
    let name = file_name(Path::new(path))?;
    let download = dir.join(format!(".download-{name}"));
    let mut reader = client
        .read(path)
        .await
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut out = tokio::fs::File::create(&download)
        .await
        .map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    while reader.remaining() > 0 {
        let chunk = reader
            .read_bytes(reader.remaining().min(4 << 20))
            .await
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        if chunk.is_empty() {
            return Err(format!("{path} ended before its length"));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot write {}: {e}", download.display()))?;
    }
    out.flush()
        .await
        .map_err(|e| format!("cannot write {}: {e}", download.display()))?;
    drop(out);
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || place(&download, false, true, &name, kind, &dir, max))
        .await
        .unwrap_or_else(|e| Err(format!("the unpacking task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    const MB: u64 = 1 << 20;

    fn mtime_ms(p: &Path) -> i64 {
        mtime_millis(&fs::metadata(p).unwrap())
    }

    fn file_url(path: &Path) -> r::UrlProto {
        r::UrlProto {
            scheme: Some("file".into()),
            file: Some(path.display().to_string()),
            port: Some(-1),
            ..Default::default()
        }
    }

    fn entry_for(
        key: &str,
        url: r::UrlProto,
        ty: r::LocalResourceTypeProto,
        timestamp: i64,
    ) -> r::StringLocalResourceMapProto {
        r::StringLocalResourceMapProto {
            key: Some(key.into()),
            value: Some(r::LocalResourceProto {
                resource: Some(url),
                size: Some(0),
                timestamp: Some(timestamp),
                r#type: Some(ty as i32),
                visibility: Some(r::LocalResourceVisibilityProto::Application as i32),
                pattern: None,
            }),
        }
    }

    /// A resource for a local file, with its current modification time.
    fn entry(
        key: &str,
        path: &Path,
        ty: r::LocalResourceTypeProto,
    ) -> r::StringLocalResourceMapProto {
        entry_for(key, file_url(path), ty, mtime_ms(path))
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        src: PathBuf,
        cache: PathBuf,
        work: PathBuf,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let (src, cache, work) = (
            tmp.path().join("src"),
            tmp.path().join("cache"),
            tmp.path().join("work"),
        );
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&work).unwrap();
        Setup {
            _tmp: tmp,
            src,
            cache,
            work,
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// A zip (or jar) holding `bin/run.sh` (0755) and `conf/app.conf` (0644).
    fn write_zip(path: &Path) {
        let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
        let exec = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        let plain = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        z.add_directory("bin/", exec).unwrap();
        z.start_file("bin/run.sh", exec).unwrap();
        z.write_all(b"#!/bin/sh\necho hi\n").unwrap();
        z.start_file("conf/app.conf", plain).unwrap();
        z.write_all(b"x=1").unwrap();
        z.finish().unwrap();
    }

    /// A tar, gzipped or not, with the same two files.
    fn write_tar(path: &Path, gzipped: bool) {
        let file = fs::File::create(path).unwrap();
        let sink: Box<dyn Write> = if gzipped {
            Box::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(file)
        };
        let mut b = tar::Builder::new(sink);
        for (name, data, mode) in [
            ("bin/run.sh", &b"#!/bin/sh\necho hi\n"[..], 0o755),
            ("conf/app.conf", &b"x=1"[..], 0o644),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap().flush().unwrap();
    }

    fn assert_unpacked(root: &Path) {
        assert_eq!(
            fs::read_to_string(root.join("conf/app.conf")).unwrap(),
            "x=1"
        );
        assert_eq!(mode(&root.join("bin/run.sh")), 0o755);
        assert_eq!(mode(&root.join("conf/app.conf")), 0o644);
        let out = std::process::Command::new(root.join("bin/run.sh"))
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    fn the_localizer_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Localizer>();
    }

    #[tokio::test]
    async fn a_file_is_copied_into_the_cache_and_linked_under_its_key() {
        let s = setup();
        let conf = s.src.join("app.conf");
        fs::write(&conf, "x=1").unwrap();
        let l = Localizer::new(s.cache.clone(), MB);
        l.localize(
            &[entry(
                "__app__.conf",
                &conf,
                r::LocalResourceTypeProto::File,
            )],
            &s.work,
        )
        .await
        .unwrap();
        let link = s.work.join("__app__.conf");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let cached = fs::read_link(&link).unwrap();
        assert!(
            cached.starts_with(&s.cache),
            "{} is not in the cache",
            cached.display()
        );
        assert_eq!(cached.file_name().unwrap(), "app.conf");
        assert_eq!(fs::read_to_string(&link).unwrap(), "x=1");
        // A copy, not the source: changing the source leaves the container's file alone.
        fs::write(&conf, "x=2").unwrap();
        assert_eq!(fs::read_to_string(&link).unwrap(), "x=1");
    }

    #[tokio::test]
    async fn a_key_with_slashes_gets_its_parent_directories() {
        let s = setup();
        let f = s.src.join("a.txt");
        fs::write(&f, "a").unwrap();
        let l = Localizer::new(s.cache.clone(), MB);
        l.localize(
            &[entry("deps/py/a.txt", &f, r::LocalResourceTypeProto::File)],
            &s.work,
        )
        .await
        .unwrap();
        assert_eq!(
            fs::read_to_string(s.work.join("deps/py/a.txt")).unwrap(),
            "a"
        );
    }

    #[tokio::test]
    async fn zip_jar_tar_and_tgz_archives_are_unpacked_keeping_the_executable_bit() {
        let s = setup();
        let names = ["libs.zip", "app.JAR", "env.tar", "py.tgz", "py2.tar.gz"];
        write_zip(&s.src.join(names[0]));
        write_zip(&s.src.join(names[1]));
        write_tar(&s.src.join(names[2]), false);
        write_tar(&s.src.join(names[3]), true);
        write_tar(&s.src.join(names[4]), true);
        let resources: Vec<_> = names
            .iter()
            .map(|n| {
                entry(
                    &format!("k_{n}"),
                    &s.src.join(n),
                    r::LocalResourceTypeProto::Archive,
                )
            })
            .collect();
        let l = Localizer::new(s.cache.clone(), MB);
        l.localize(&resources, &s.work).await.unwrap();
        for n in names {
            let link = s.work.join(format!("k_{n}"));
            // The link is a directory named like the archive.
            assert_eq!(fs::read_link(&link).unwrap().file_name().unwrap(), n);
            assert!(fs::metadata(&link).unwrap().is_dir(), "{n}");
            assert_unpacked(&link);
        }
    }

    #[tokio::test]
    async fn pattern_is_unpacked_like_an_archive_and_an_unknown_archive_is_copied() {
        let s = setup();
        let jar = s.src.join("job.jar");
        write_zip(&jar);
        let odd = s.src.join("data.rar");
        fs::write(&odd, "not unpacked").unwrap();
        let l = Localizer::new(s.cache.clone(), MB);
        let resources = [
            entry("job", &jar, r::LocalResourceTypeProto::Pattern),
            entry("data", &odd, r::LocalResourceTypeProto::Archive),
        ];
        l.localize(&resources, &s.work).await.unwrap();
        assert_unpacked(&s.work.join("job"));
        assert_eq!(
            fs::read_to_string(s.work.join("data")).unwrap(),
            "not unpacked"
        );
    }

    /// What `tar czf env.tgz -C dir .` makes (as conda-pack and venv-pack
    /// users do): `./` names, a directory entry for the root, a symlink.
    #[tokio::test]
    async fn a_tarball_made_by_the_tar_tool_unpacks_with_its_symlinks() {
        let s = setup();
        let tree = s.src.join("tree");
        fs::create_dir_all(tree.join("bin")).unwrap();
        fs::write(tree.join("bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(tree.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("run.sh", tree.join("bin/run")).unwrap();
        let tgz = s.src.join("env.tgz");
        let status = std::process::Command::new("tar")
            .arg("czf")
            .arg(&tgz)
            .arg("-C")
            .arg(&tree)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        let l = Localizer::new(s.cache.clone(), MB);
        l.localize(
            &[entry("env", &tgz, r::LocalResourceTypeProto::Archive)],
            &s.work,
        )
        .await
        .unwrap();
        let run = s.work.join("env/bin/run");
        assert_eq!(fs::read_link(&run).unwrap(), Path::new("run.sh"));
        let out = std::process::Command::new(&run).output().unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }

    /// A jar made by the JDK's `jar` tool carries no Unix modes.
    #[tokio::test]
    async fn a_jar_made_by_the_jar_tool_unpacks() {
        let s = setup();
        let tree = s.src.join("classes");
        fs::create_dir_all(tree.join("org/example")).unwrap();
        fs::write(tree.join("org/example/App.class"), "cafebabe").unwrap();
        let jar = s.src.join("app.jar");
        let made = std::process::Command::new("jar")
            .arg("cf")
            .arg(&jar)
            .arg("-C")
            .arg(&tree)
            .arg(".")
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("no jar tool here; skipped");
            return;
        }
        let l = Localizer::new(s.cache.clone(), MB);
        l.localize(
            &[entry("app", &jar, r::LocalResourceTypeProto::Archive)],
            &s.work,
        )
        .await
        .unwrap();
        let class = s.work.join("app/org/example/App.class");
        assert_eq!(fs::read_to_string(class).unwrap(), "cafebabe");
        assert!(s.work.join("app/META-INF/MANIFEST.MF").is_file());
    }

    #[tokio::test]
    async fn a_directory_source_is_copied_recursively() {
        let s = setup();
        let d = s.src.join("conf");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/x"), "x").unwrap();
        std::os::unix::fs::symlink("..", d.join("sub/up")).unwrap();
        let l = Localizer::new(s.cache.clone(), MB);
        l.localize(
            &[entry("conf", &d, r::LocalResourceTypeProto::File)],
            &s.work,
        )
        .await
        .unwrap();
        assert_eq!(fs::read_to_string(s.work.join("conf/sub/x")).unwrap(), "x");
        assert_eq!(
            fs::read_link(s.work.join("conf/sub/up")).unwrap(),
            Path::new("..")
        );
    }

    #[tokio::test]
    async fn a_changed_source_is_refused_with_hadoops_message() {
        let s = setup();
        let f = s.src.join("a.txt");
        fs::write(&f, "a").unwrap();
        let actual = mtime_ms(&f);
        let l = Localizer::new(s.cache.clone(), MB);
        let e = l
            .localize(
                &[entry_for(
                    "a",
                    file_url(&f),
                    r::LocalResourceTypeProto::File,
                    42,
                )],
                &s.work,
            )
            .await
            .unwrap_err();
        let url = format!("file:{}", f.display());
        assert_eq!(e.key, "a");
        assert_eq!(e.url, url);
        assert_eq!(
            e.to_string(),
            format!("cannot localize resource 'a' from {url}: Resource {url} changed on src filesystem - expected: \"42\", was: \"{actual}\"")
        );
        assert!(fs::symlink_metadata(s.work.join("a")).is_err());
    }

    #[tokio::test]
    async fn a_missing_source_is_an_error_naming_its_path_and_is_not_cached() {
        let s = setup();
        let f = s.src.join("later.txt");
        let l = Localizer::new(s.cache.clone(), MB);
        // The timestamp the client will have seen once the file exists.
        fs::write(&f, "v").unwrap();
        let ts = mtime_ms(&f);
        fs::rename(&f, s.src.join("elsewhere")).unwrap();
        let resources = [entry_for(
            "later",
            file_url(&f),
            r::LocalResourceTypeProto::File,
            ts,
        )];
        let e = l.localize(&resources, &s.work).await.unwrap_err();
        assert!(e.reason.contains(&f.display().to_string()), "{e}");
        assert_eq!(
            fs::read_dir(&s.cache).unwrap().count(),
            0,
            "the failed fetch left its directory"
        );
        // Once the file is there, the same resource localizes: the failure was not remembered.
        fs::rename(s.src.join("elsewhere"), &f).unwrap();
        l.localize(&resources, &s.work).await.unwrap();
        assert_eq!(fs::read_to_string(s.work.join("later")).unwrap(), "v");
        assert_eq!(l.fetches.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_containers_share_one_fetch_of_a_resource() {
        let s = setup();
        let tgz = s.src.join("py.tgz");
        write_tar(&tgz, true);
        let conf = s.src.join("app.conf");
        fs::write(&conf, "x=1").unwrap();
        let resources = Arc::new(vec![
            entry("py", &tgz, r::LocalResourceTypeProto::Archive),
            entry("app.conf", &conf, r::LocalResourceTypeProto::File),
        ]);
        let l = Arc::new(Localizer::new(s.cache.clone(), MB));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (l, resources, work) = (l.clone(), resources.clone(), s.work.join(format!("c{i}")));
            fs::create_dir_all(&work).unwrap();
            tasks.spawn(async move { l.localize(&resources, &work).await.map(|()| work) });
        }
        let mut targets = std::collections::HashSet::new();
        while let Some(done) = tasks.join_next().await {
            let work = done.unwrap().unwrap();
            assert_unpacked(&work.join("py"));
            targets.insert(fs::read_link(work.join("py")).unwrap());
        }
        assert_eq!(
            targets.len(),
            1,
            "containers link different copies: {targets:?}"
        );
        assert_eq!(l.fetches.load(Ordering::Relaxed), 2);
        assert_eq!(fs::read_dir(&s.cache).unwrap().count(), 2);
        // A new timestamp is a new resource.
        let touched = fs::File::options().write(true).open(&conf).unwrap();
        touched
            .set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
            )
            .unwrap();
        l.localize(
            &[entry("again", &conf, r::LocalResourceTypeProto::File)],
            &s.work,
        )
        .await
        .unwrap();
        assert_eq!(l.fetches.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_zip_slip_entry_is_refused_and_nothing_escapes() {
        let s = setup();
        let evil = s.src.join("evil.zip");
        {
            let mut z = zip::ZipWriter::new(fs::File::create(&evil).unwrap());
            z.start_file("ok.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(b"ok").unwrap();
            z.start_file("../../escaped", zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(b"x").unwrap();
            z.finish().unwrap();
        }
        let l = Localizer::new(s.cache.clone(), MB);
        let e = l
            .localize(
                &[entry("evil", &evil, r::LocalResourceTypeProto::Archive)],
                &s.work,
            )
            .await
            .unwrap_err();
        assert!(
            e.reason.contains("../../escaped") && e.reason.contains("outside"),
            "{e}"
        );
        assert!(
            !s.cache.join("escaped").exists()
                && !s.cache.parent().unwrap().join("escaped").exists()
        );
        assert_eq!(
            fs::read_dir(&s.cache).unwrap().count(),
            0,
            "the refused archive left files behind"
        );
    }

    #[tokio::test]
    async fn a_tar_entry_with_an_absolute_or_parent_path_is_refused() {
        let s = setup();
        for (i, bad) in ["../escaped", "/tmp/escaped"].iter().enumerate() {
            let path = s.src.join(format!("evil{i}.tar"));
            let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            // set_path refuses `..`, so write the name field directly, as an attacker would.
            h.as_old_mut().name[..bad.len()].copy_from_slice(bad.as_bytes());
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.into_inner().unwrap();
            let l = Localizer::new(s.cache.clone(), MB);
            let e = l
                .localize(
                    &[entry("evil", &path, r::LocalResourceTypeProto::Archive)],
                    &s.work,
                )
                .await
                .unwrap_err();
            assert!(e.reason.contains("outside"), "{bad}: {e}");
        }
        assert!(!s.src.join("escaped").exists());
    }

    #[tokio::test]
    async fn an_archive_unpacking_to_more_than_the_bound_is_refused() {
        let s = setup();
        let big = s.src.join("big.zip");
        {
            let mut z = zip::ZipWriter::new(fs::File::create(&big).unwrap());
            z.start_file("zeros", zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(&vec![0u8; 100_000]).unwrap();
            z.finish().unwrap();
        }
        let tgz = s.src.join("big.tgz");
        {
            let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
                fs::File::create(&tgz).unwrap(),
                flate2::Compression::fast(),
            ));
            let mut h = tar::Header::new_gnu();
            h.set_size(100_000);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "zeros", &vec![0u8; 100_000][..])
                .unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let l = Localizer::new(s.cache.clone(), 10_000);
        for p in [&big, &tgz] {
            let e = l
                .localize(
                    &[entry("big", p, r::LocalResourceTypeProto::Archive)],
                    &s.work,
                )
                .await
                .unwrap_err();
            assert!(e.reason.contains("more than 10000 bytes"), "{e}");
        }
    }

    #[tokio::test]
    async fn bad_keys_are_refused_before_anything_is_fetched() {
        let s = setup();
        let f = s.src.join("a.txt");
        fs::write(&f, "a").unwrap();
        let l = Localizer::new(s.cache.clone(), MB);
        for bad in ["", ".", "/abs", "../up", "a/../../b", "a/.."] {
            let resources = [
                entry("fine", &f, r::LocalResourceTypeProto::File),
                entry(bad, &f, r::LocalResourceTypeProto::File),
            ];
            let e = l.localize(&resources, &s.work).await.unwrap_err();
            assert_eq!(e.key, bad);
            assert!(e.reason.contains("resource name"), "{bad:?}: {e}");
        }
        assert_eq!(l.fetches.load(Ordering::Relaxed), 0);
        assert!(fs::read_dir(&s.work).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn a_key_that_exists_or_goes_through_another_resource_is_refused() {
        let s = setup();
        let f = s.src.join("a.txt");
        fs::write(&f, "a").unwrap();
        let zip = s.src.join("libs.zip");
        write_zip(&zip);
        let l = Localizer::new(s.cache.clone(), MB);
        let one = entry("dup", &f, r::LocalResourceTypeProto::File);
        let e = l.localize(&[one.clone(), one], &s.work).await.unwrap_err();
        assert!(e.reason.contains("already exists"), "{e}");
        // "libs/conf/x" would create a link inside the cached, shared copy of libs.zip.
        let resources = [
            entry("libs", &zip, r::LocalResourceTypeProto::Archive),
            entry("libs/conf/x", &f, r::LocalResourceTypeProto::File),
        ];
        let e = l.localize(&resources, &s.work).await.unwrap_err();
        assert!(e.reason.contains("link to another resource"), "{e}");
        assert!(!s.work.join("libs/conf/x").exists());
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_by_name() {
        let s = setup();
        let l = Localizer::new(s.cache.clone(), MB);
        let url = r::UrlProto {
            scheme: Some("s3a".into()),
            host: Some("bucket".into()),
            file: Some("/a.jar".into()),
            ..Default::default()
        };
        let e = l
            .localize(
                &[entry_for("a", url, r::LocalResourceTypeProto::File, 1)],
                &s.work,
            )
            .await
            .unwrap_err();
        assert_eq!(e.url, "s3a://bucket/a.jar");
        assert!(e.reason.contains("'s3a' is not supported"), "{e}");
    }

    #[test]
    fn urls_print_and_resolve_as_hadoop_does() {
        let hdfs = r::UrlProto {
            scheme: Some("hdfs".into()),
            host: Some("nn.example".into()),
            port: Some(8020),
            file: Some("/user/alice/.sparkStaging/app_1/my%20app.jar".into()),
            ..Default::default()
        };
        assert_eq!(
            url_text(&hdfs),
            "hdfs://nn.example:8020/user/alice/.sparkStaging/app_1/my%20app.jar"
        );
        assert_eq!(
            source_of(&hdfs).unwrap(),
            Source::Hdfs {
                namenode: Some("hdfs://nn.example:8020".into()),
                path: "/user/alice/.sparkStaging/app_1/my app.jar".into()
            }
        );
        let no_port = r::UrlProto {
            port: Some(-1),
            ..hdfs.clone()
        };
        assert_eq!(
            url_text(&no_port),
            "hdfs://nn.example/user/alice/.sparkStaging/app_1/my%20app.jar"
        );
        assert!(
            matches!(source_of(&no_port).unwrap(), Source::Hdfs { namenode: Some(n), .. } if n == "hdfs://nn.example")
        );
        let default_fs = r::UrlProto {
            host: None,
            port: None,
            ..hdfs.clone()
        };
        assert!(matches!(
            source_of(&default_fs).unwrap(),
            Source::Hdfs { namenode: None, .. }
        ));

        let local = r::UrlProto {
            scheme: Some("file".into()),
            port: Some(-1),
            file: Some("/tmp/a%2Bb.txt".into()),
            ..Default::default()
        };
        assert_eq!(url_text(&local), "file:/tmp/a%2Bb.txt");
        assert_eq!(
            source_of(&local).unwrap(),
            Source::Local("/tmp/a+b.txt".into())
        );
        let with_host = r::UrlProto {
            host: Some("localhost".into()),
            ..local.clone()
        };
        assert_eq!(url_text(&with_host), "file://localhost/tmp/a%2Bb.txt");
        assert_eq!(
            source_of(&with_host).unwrap(),
            Source::Local("/tmp/a+b.txt".into())
        );
        let user = r::UrlProto {
            user_info: Some("bob".into()),
            ..hdfs
        };
        assert!(url_text(&user).starts_with("hdfs://bob@nn.example:8020/"));
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        let no_scheme = r::UrlProto {
            file: Some("/x".into()),
            ..Default::default()
        };
        assert!(source_of(&no_scheme).unwrap_err().contains("no scheme"));
    }

    #[tokio::test]
    async fn an_unreachable_namenode_is_an_error_naming_the_url() {
        let s = setup();
        // Nothing listens on port 1; with no failover retries the client fails at once.
        let url = r::UrlProto {
            scheme: Some("hdfs".into()),
            host: Some("127.0.0.1".into()),
            port: Some(1),
            file: Some("/a.jar".into()),
            ..Default::default()
        };
        let mut l = Localizer::new(s.cache.clone(), MB);
        l.hdfs_overrides = vec![("dfs.client.failover.max.attempts".into(), "0".into())];
        let resources = [entry_for("a", url, r::LocalResourceTypeProto::File, 1)];
        let call = l.localize(&resources, &s.work);
        let e = tokio::time::timeout(std::time::Duration::from_secs(60), call)
            .await
            .expect("the HDFS client hung")
            .unwrap_err();
        assert_eq!(e.url, "hdfs://127.0.0.1:1/a.jar");
        assert!(e.reason.contains("/a.jar"), "{e}");
        assert_eq!(fs::read_dir(&s.cache).unwrap().count(), 0);
    }
}
