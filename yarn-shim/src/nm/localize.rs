//! Resource localization, as a Hadoop NodeManager does it: each
//! `LocalResource` of a launch context is fetched once per node manager
//! (keyed by URL, timestamp and type), checked against the timestamp the
//! client recorded, unpacked if it is an archive, and symlinked into the
//! container's working directory under its key.
//!
//! Sources: `file:` URLs (the client and the node share a file system, as
//! with `fs.defaultFS=file:///`). `hdfs:` is refused with a clear error:
//! the `hdfs-native` client is not built in yet.
//!
//! Archives (`.zip`, `.jar`, `.tar`, `.tgz`, `.tar.gz`) are unpacked into a
//! directory named like the archive; entries that would land outside it
//! are refused, and the bytes unpacked are bounded. An ARCHIVE with another
//! extension is copied as a file (Hadoop does the same, with a warning).
//! PATTERN resources are treated as archives.
//!
//! The cache lives as long as the node manager (its task's sandbox); there
//! is no eviction.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::yarn::records as r;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalizeError {
    pub key: String,
    pub url: String,
    pub reason: String,
}

impl std::fmt::Display for LocalizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot localize resource '{}' from {}: {}", self.key, self.url, self.reason)
    }
}

impl std::error::Error for LocalizeError {}

type Key = (String, i64, i32);
type Cell = Arc<tokio::sync::OnceCell<PathBuf>>;

pub struct Localizer {
    root: PathBuf,
    max_archive_bytes: u64,
    cached: Mutex<HashMap<Key, Cell>>,
    next: Mutex<u64>,
}

/// The URL as Hadoop prints it.
pub fn url_text(u: &r::UrlProto) -> String {
    let mut s = format!("{}:", u.scheme());
    if !u.host().is_empty() {
        s.push_str("//");
        if !u.user_info().is_empty() {
            s.push_str(u.user_info());
            s.push('@');
        }
        s.push_str(u.host());
        if u.port.is_some_and(|p| p >= 0) {
            s.push_str(&format!(":{}", u.port()));
        }
    }
    s.push_str(u.file());
    s
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A map key as a relative path inside the work dir.
fn link_path(work_dir: &Path, key: &str) -> Result<PathBuf, String> {
    let p = Path::new(key);
    if key.is_empty() || p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("the resource name {key:?} is not a plain relative path"));
    }
    Ok(work_dir.join(p))
}

impl Localizer {
    pub fn new(cache_root: PathBuf, max_archive_bytes: u64) -> Localizer {
        Localizer { root: cache_root, max_archive_bytes, cached: Mutex::new(HashMap::new()), next: Mutex::new(0) }
    }

    pub async fn localize(&self, resources: &[r::StringLocalResourceMapProto], work_dir: &Path) -> Result<(), LocalizeError> {
        for entry in resources {
            let key = entry.key().to_owned();
            let resource = entry.value.clone().unwrap_or_default();
            let url = resource.resource.as_ref().map(url_text).unwrap_or_else(|| "(no URL)".into());
            let err = |reason: String| LocalizeError { key: key.clone(), url: url.clone(), reason };
            let link = link_path(work_dir, &key).map_err(err)?;
            let local = self.fetch(&resource, &url).await.map_err(err)?;
            let (link2, local2) = (link.clone(), local.clone());
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                if let Some(parent) = link2.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                if link2.symlink_metadata().is_ok() {
                    return Err(format!("{} already exists in the container's directory", link2.display()));
                }
                std::os::unix::fs::symlink(&local2, &link2).map_err(|e| format!("cannot link {}: {e}", link2.display()))
            })
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(err)?;
        }
        Ok(())
    }

    /// The cached copy of a resource, fetching it the first time.
    async fn fetch(&self, resource: &r::LocalResourceProto, url: &str) -> Result<PathBuf, String> {
        let ty = resource.r#type.unwrap_or(r::LocalResourceTypeProto::File as i32);
        let key = (url.to_owned(), resource.timestamp(), ty);
        let cell = self.cached.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default().clone();
        let dir = {
            let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            self.root.join(n.to_string())
        };
        let resource = resource.clone();
        let max = self.max_archive_bytes;
        cell.get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || fetch_blocking(&resource, &dir, max)).await.map_err(|e| e.to_string())?
        })
        .await
        .cloned()
    }
}

fn fetch_blocking(resource: &r::LocalResourceProto, dir: &Path, max: u64) -> Result<PathBuf, String> {
    let u = resource.resource.as_ref().ok_or("the resource has no URL")?;
    let source = match u.scheme() {
        "file" => PathBuf::from(percent_decode(u.file())),
        "hdfs" => return Err("hdfs:// resources are not supported by this node manager yet (no HDFS client built in)".into()),
        other => return Err(format!("the URL scheme {other:?} is not supported (file: only)")),
    };
    let meta = std::fs::metadata(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    if mtime != resource.timestamp() {
        return Err(format!(
            "Resource {} changed on src filesystem - expected: \"{}\", was: \"{}\"",
            url_text(u),
            resource.timestamp(),
            mtime
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "resource".into());
    let target = dir.join(&name);
    let ty = resource.r#type.unwrap_or(r::LocalResourceTypeProto::File as i32);
    let archive = ty != r::LocalResourceTypeProto::File as i32;
    let lower = name.to_ascii_lowercase();
    if archive && !meta.is_dir() {
        if lower.ends_with(".zip") || lower.ends_with(".jar") {
            unzip(&source, &target, max)?;
            return Ok(target);
        }
        if lower.ends_with(".tar") || lower.ends_with(".tgz") || lower.ends_with(".tar.gz") {
            untar(&source, &target, lower.ends_with(".tar"), max)?;
            return Ok(target);
        }
        tracing::warn!(source = %source.display(), "an ARCHIVE resource with an unknown extension is copied, not unpacked");
    }
    copy(&source, &target)?;
    Ok(target)
}

fn copy(source: &Path, target: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    if meta.is_dir() {
        std::fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        for entry in std::fs::read_dir(source).map_err(|e| format!("{}: {e}", source.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            copy(&entry.path(), &target.join(entry.file_name()))?;
        }
        return Ok(());
    }
    std::fs::copy(source, target).map_err(|e| format!("cannot copy {} to {}: {e}", source.display(), target.display()))?;
    Ok(())
}

/// A safe destination for an archive entry, or an error.
fn inside(root: &Path, entry: &Path) -> Result<PathBuf, String> {
    if entry.is_absolute() || entry.components().any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_))) {
        return Err(format!("the archive entry {} would land outside the unpack directory", entry.display()));
    }
    Ok(root.join(entry))
}

fn unzip(source: &Path, target: &Path, max: u64) -> Result<(), String> {
    let file = std::fs::File::open(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{} is not a zip archive: {e}", source.display()))?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("{}: entry {i}: {e}", source.display()))?;
        let dest = inside(target, Path::new(entry.name()))?;
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let mut out = std::fs::File::create(&dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        let copied = std::io::copy(&mut (&mut entry).take(max.saturating_sub(total) + 1), &mut out)
            .map_err(|e| format!("{}: {}: {e}", source.display(), dest.display()))?;
        total += copied;
        if total > max {
            return Err(format!("{} unpacks to more than {max} bytes", source.display()));
        }
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode & 0o7777));
        }
    }
    Ok(())
}

fn untar(source: &Path, target: &Path, plain: bool, max: u64) -> Result<(), String> {
    let file = std::fs::File::open(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let reader: Box<dyn Read> = if plain { Box::new(file) } else { Box::new(flate2::read::GzDecoder::new(file)) };
    let mut archive = tar::Archive::new(reader);
    std::fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let mut total = 0u64;
    for entry in archive.entries().map_err(|e| format!("{} is not a tar archive: {e}", source.display()))? {
        let mut entry = entry.map_err(|e| format!("{}: {e}", source.display()))?;
        let path = entry.path().map_err(|e| format!("{}: {e}", source.display()))?.into_owned();
        inside(target, &path)?;
        total += entry.size();
        if total > max {
            return Err(format!("{} unpacks to more than {max} bytes", source.display()));
        }
        // unpack_in refuses paths outside `target` as well, and keeps modes.
        entry.unpack_in(target).map_err(|e| format!("{}: {}: {e}", source.display(), path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn mtime_ms(p: &Path) -> i64 {
        std::fs::metadata(p).unwrap().modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    }

    fn entry(key: &str, path: &Path, ty: r::LocalResourceTypeProto, timestamp: i64) -> r::StringLocalResourceMapProto {
        r::StringLocalResourceMapProto {
            key: Some(key.into()),
            value: Some(r::LocalResourceProto {
                resource: Some(r::UrlProto { scheme: Some("file".into()), file: Some(path.display().to_string()), ..Default::default() }),
                size: Some(0),
                timestamp: Some(timestamp),
                r#type: Some(ty as i32),
                visibility: Some(r::LocalResourceVisibilityProto::Application as i32),
                pattern: None,
            }),
        }
    }

    #[tokio::test]
    async fn files_and_archives_are_fetched_once_unpacked_and_linked() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let conf = src.join("app.conf");
        std::fs::write(&conf, "x=1").unwrap();
        // A zip with an executable script in a subdirectory.
        let zip_path = src.join("libs.zip");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
            z.start_file("bin/run.sh", opts).unwrap();
            z.write_all(b"#!/bin/sh\necho hi\n").unwrap();
            z.finish().unwrap();
        }
        // A tgz.
        let tgz = src.join("py.tgz");
        {
            let gz = flate2::write::GzEncoder::new(std::fs::File::create(&tgz).unwrap(), flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "pkg/mod.py", &b"x=1"[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let l = Localizer::new(t.path().join("cache"), 1 << 20);
        let resources = vec![
            entry("__app__.conf", &conf, r::LocalResourceTypeProto::File, mtime_ms(&conf)),
            entry("__libs__", &zip_path, r::LocalResourceTypeProto::Archive, mtime_ms(&zip_path)),
            entry("deps/py", &tgz, r::LocalResourceTypeProto::Archive, mtime_ms(&tgz)),
        ];
        let (w1, w2) = (t.path().join("c1"), t.path().join("c2"));
        std::fs::create_dir_all(&w1).unwrap();
        std::fs::create_dir_all(&w2).unwrap();
        let (a, b) = tokio::join!(l.localize(&resources, &w1), l.localize(&resources, &w2));
        a.unwrap();
        b.unwrap();
        for w in [&w1, &w2] {
            assert_eq!(std::fs::read_to_string(w.join("__app__.conf")).unwrap(), "x=1");
            let run = w.join("__libs__/bin/run.sh");
            assert_eq!(std::fs::metadata(&run).unwrap().permissions().mode() & 0o777, 0o755);
            assert_eq!(std::fs::read_to_string(w.join("deps/py/pkg/mod.py")).unwrap(), "x=1");
        }
        // Fetched once: both containers link the same cached copies.
        assert_eq!(std::fs::read_link(w1.join("__libs__")).unwrap(), std::fs::read_link(w2.join("__libs__")).unwrap());
        assert_eq!(std::fs::read_dir(t.path().join("cache")).unwrap().count(), 3);
    }

    #[tokio::test]
    async fn a_changed_missing_or_escaping_resource_is_refused_with_its_name() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a.txt");
        std::fs::write(&f, "a").unwrap();
        let l = Localizer::new(t.path().join("cache"), 1 << 20);
        let w = t.path().join("w");
        std::fs::create_dir_all(&w).unwrap();
        let e = l.localize(&[entry("a", &f, r::LocalResourceTypeProto::File, 42)], &w).await.unwrap_err();
        assert!(e.to_string().contains("changed on src filesystem - expected: \"42\""), "{e}");
        assert_eq!(e.key, "a");
        let missing = t.path().join("nope");
        let e = l.localize(&[entry("m", &missing, r::LocalResourceTypeProto::File, 0)], &w).await.unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        for bad in ["", "/abs", "../up", "a/../../b"] {
            let e = l.localize(&[entry(bad, &f, r::LocalResourceTypeProto::File, mtime_ms(&f))], &w).await.unwrap_err();
            assert!(e.reason.contains("not a plain relative path"), "{bad:?}: {e}");
        }
        let mut hdfs = entry("h", &f, r::LocalResourceTypeProto::File, 0);
        hdfs.value.as_mut().unwrap().resource.as_mut().unwrap().scheme = Some("hdfs".into());
        assert!(l.localize(&[hdfs], &w).await.unwrap_err().reason.contains("hdfs"));
        // A zip entry pointing outside is refused.
        let evil = t.path().join("evil.zip");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&evil).unwrap());
            z.start_file("../../escaped", zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(b"x").unwrap();
            z.finish().unwrap();
        }
        let e = l.localize(&[entry("evil", &evil, r::LocalResourceTypeProto::Archive, mtime_ms(&evil))], &w).await.unwrap_err();
        assert!(e.reason.contains("outside"), "{e}");
        assert!(!t.path().join("escaped").exists());
        // The same key twice in one container is an error, not a clobber.
        let ok = entry("dup", &f, r::LocalResourceTypeProto::File, mtime_ms(&f));
        let e = l.localize(&[ok.clone(), ok], &w).await.unwrap_err();
        assert!(e.reason.contains("already exists"), "{e}");
    }
}
