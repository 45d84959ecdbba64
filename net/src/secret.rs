//! Reading files that hold secrets (token files, the agent registration
//! secret, private keys): bounded in size, and refused when group or
//! others may read or write them, as ssh refuses a key file anyone can
//! read. The error names the file and what is wrong with it, never its
//! content.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The largest secret file read (a token file of some thousand lines).
pub const MAX_SECRET_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read secret file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("secret file {path} may be read or written by group or others (mode {mode:04o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("secret file {path} is {size} bytes; at most {MAX_SECRET_FILE} are read")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("secret file {path} is not UTF-8 text")]
    NotText { path: PathBuf },
}

/// The file's text, once its mode and size are checked.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let read = |source| SecretFileError::Read { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen { path: path.to_owned(), mode });
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(SecretFileError::TooLarge { path: path.to_owned(), size: meta.len() });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    String::from_utf8(bytes).map_err(|_| SecretFileError::NotText { path: path.to_owned() })
}

/// A secret file's one value: its text without surrounding whitespace
/// (so a trailing newline from `echo` does not count), refused if empty.
pub fn read_secret_value(path: &Path) -> Result<String, SecretFileError> {
    let text = read_secret_file(path)?;
    let value = text.trim();
    if value.is_empty() {
        return Err(SecretFileError::Read {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
        });
    }
    Ok(value.to_owned())
}

/// A secret held in memory: `Debug` and `Display` never show it, so a
/// settings struct printed in a log keeps it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_others_may_read_is_refused_and_a_private_one_read() {
        let dir = std::env::temp_dir().join(format!("weir-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "s3cret-value\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret_value(&path).unwrap_err().to_string();
        assert!(err.contains("mode 0644") && err.contains("chmod 600"), "{err}");
        assert!(!err.contains("s3cret"), "the error must not show the secret: {err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_value(&path).unwrap(), "s3cret-value");
        std::fs::write(&path, "  \n").unwrap();
        assert!(read_secret_value(&path).unwrap_err().to_string().contains("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
