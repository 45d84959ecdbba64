//! Bearer tokens from a token file, as the broker and the agents read it:
//! one `PRINCIPAL TOKEN [EXPIRES]` per line (EXPIRES: RFC 3339 or Unix
//! seconds; after it the token is refused as expired), `#` comments. The
//! file is re-read when it changes, so removing a line revokes that token.
//!
//! Tokens are kept only as SHA-256 digests and compared as such: neither
//! a log line nor an error ever holds one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::secret::{read_secret_file, SecretFileError};

/// The shortest token accepted in a token file.
pub const MIN_TOKEN_LEN: usize = 16;
const MAX_PRINCIPAL: usize = 256;

/// One line of the token file: whose token, and until when (Unix
/// seconds) it is good, if it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub principal: String,
    pub expires: Option<i64>,
}

/// The tokens' digests and what each stands for.
pub type Digests = HashMap<[u8; 32], TokenEntry>;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("token file {path}: {reason}")]
    Tokens { path: PathBuf, reason: String },
}

/// An expiry as the token file writes it: RFC 3339 or Unix seconds.
fn parse_expiry(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return (secs > 0).then_some(secs);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The digest a secret is kept and compared as.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// True when the principal is a name a token file or a certificate may
/// give: letters, digits, `.`, `_`, `@`, `-`, at most 256 bytes.
pub fn valid_principal(principal: &str) -> bool {
    !principal.is_empty()
        && principal.len() <= MAX_PRINCIPAL
        && principal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

/// Reads a token file: `PRINCIPAL TOKEN [EXPIRES]` per line, `#` comments
/// and blank lines ignored. Errors name the line, never the token.
pub fn parse_tokens(text: &str) -> Result<Digests, String> {
    let mut out = Digests::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(principal), Some(token), expiry, None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(format!(
                "line {}: expected PRINCIPAL TOKEN [EXPIRES] (two or three words)",
                i + 1
            ));
        };
        let expires = match expiry {
            None => None,
            Some(text) => Some(parse_expiry(text).ok_or_else(|| {
                format!("line {}: the expiry of {principal}'s token, {:?}, is neither RFC 3339 (2027-01-31T00:00:00Z) nor Unix seconds", i + 1, text.chars().take(40).collect::<String>())
            })?),
        };
        if !valid_principal(principal) {
            return Err(format!(
                "line {}: principal {:?} may hold only letters, digits, '.', '_', '@' and '-' (at most {MAX_PRINCIPAL})",
                i + 1,
                principal.chars().take(80).collect::<String>()
            ));
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "line {}: the token of {principal} is shorter than {MIN_TOKEN_LEN} characters",
                i + 1
            ));
        }
        if out
            .insert(
                digest(token),
                TokenEntry {
                    principal: principal.to_owned(),
                    expires,
                },
            )
            .is_some()
        {
            return Err(format!(
                "line {}: the token of {principal} is also given to another line",
                i + 1
            ));
        }
    }
    Ok(out)
}

/// A token file and the digests last read from it.
pub struct TokenFile {
    path: PathBuf,
    digests: RwLock<Arc<Digests>>,
    /// (modification time, length) when last read.
    seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
}

impl TokenFile {
    /// Reads the file: one others may read, an unreadable one or a bad
    /// line is an error (the daemon stops at start).
    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        let file = TokenFile {
            path: path.to_owned(),
            digests: RwLock::new(Arc::new(Digests::new())),
            seen: Default::default(),
        };
        file.reload()?;
        Ok(file)
    }

    /// A token file held in memory only (tests).
    pub fn from_digests(digests: Digests) -> TokenFile {
        TokenFile {
            path: PathBuf::from("(in memory)"),
            digests: RwLock::new(Arc::new(digests)),
            seen: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    fn reload(&self) -> Result<usize, TokenFileError> {
        let stamp = self.stamp();
        let text = read_secret_file(&self.path)?;
        let digests = parse_tokens(&text).map_err(|reason| TokenFileError::Tokens {
            path: self.path.clone(),
            reason,
        })?;
        let count = digests.len();
        *self.digests.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(digests);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        Ok(count)
    }

    /// Re-reads the file if it changed. A file that became unreadable or
    /// wrong keeps the tokens read before (logged at each look until
    /// fixed): a typo must not lock every operator out.
    pub fn reload_if_changed(&self) {
        let stamp = self.stamp();
        if stamp.is_some() && stamp == *self.seen.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        match self.reload() {
            Ok(count) => {
                tracing::info!(path = %self.path.display(), principals = count, "token file re-read")
            }
            Err(err) => {
                tracing::error!(error = %err, "token file not re-read; the tokens read before stay in force")
            }
        }
    }

    /// Re-reads the file whenever it changes, looking every `interval`
    /// (at least 100 ms), forever.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut every = tokio::time::interval(interval.max(Duration::from_millis(100)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.reload_if_changed();
        }
    }

    fn entry(&self, token: &str) -> Option<TokenEntry> {
        let digests = self
            .digests
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        digests.get(&digest(token)).cloned()
    }

    /// The principal an `authorization` header value names: `Bearer
    /// TOKEN`, or HTTP Basic with the principal as user and the token as
    /// password (browsers). The refusal says why, never with the token.
    pub fn principal_of(&self, authorization: Option<&[u8]>) -> Result<String, &'static str> {
        let Some(value) = authorization else {
            return Err("no token was sent: send `authorization: Bearer TOKEN` (weir --token-file FILE, or WEIR_TOKEN)");
        };
        let value =
            std::str::from_utf8(value).map_err(|_| "the authorization header is not text")?;
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or("the authorization header is neither `Bearer TOKEN` nor HTTP Basic")?;
        let (claimed, token) = if scheme.eq_ignore_ascii_case("bearer") {
            (None, rest.trim().to_owned())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| "the Basic credentials are not base64")?;
            let text =
                String::from_utf8(decoded).map_err(|_| "the Basic credentials are not UTF-8")?;
            let (user, password) = text
                .split_once(':')
                .ok_or("the Basic credentials are not USER:PASSWORD")?;
            (Some(user.to_owned()), password.to_owned())
        } else {
            return Err("the authorization header is neither `Bearer TOKEN` nor HTTP Basic");
        };
        match self.entry(&token) {
            Some(entry) if claimed.as_ref().is_none_or(|c| c == &entry.principal) => {
                if entry.expires.is_some_and(|at| at <= unix_now()) {
                    return Err("the token has expired (its line in the token file gives an expiry that has passed)");
                }
                Ok(entry.principal)
            }
            _ => Err("the token is not valid (unknown, revoked, or not that principal's)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_read_and_bad_lines_named_without_the_token() {
        let tokens =
            parse_tokens("# who\nalice  aaaaaaaaaaaaaaaa1\n\nbob bbbbbbbbbbbbbbbb2\n").unwrap();
        assert_eq!(
            tokens
                .get(&digest("aaaaaaaaaaaaaaaa1"))
                .map(|e| e.principal.as_str()),
            Some("alice")
        );
        assert_eq!(tokens.len(), 2);
        let dated = parse_tokens(
            "carol cccccccccccccccc3 2027-01-31T00:00:00Z\ndave dddddddddddddddd4 1700000000",
        )
        .unwrap();
        assert_eq!(
            dated[&digest("cccccccccccccccc3")].expires,
            Some(1_801_353_600)
        );
        assert_eq!(
            dated[&digest("dddddddddddddddd4")].expires,
            Some(1_700_000_000)
        );
        let err = parse_tokens("carol cccccccccccccccc3 tomorrow").unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("neither RFC 3339") && !err.contains("cccc"),
            "{err}"
        );
        let err = parse_tokens("alice short-token").unwrap_err();
        assert!(
            err.contains("line 1")
                && err.contains("shorter than 16")
                && !err.contains("short-token"),
            "{err}"
        );
        let err = parse_tokens("alice aaaaaaaaaaaaaaaa1\nbob aaaaaaaaaaaaaaaa1").unwrap_err();
        assert!(err.contains("line 2") && !err.contains("aaaa"), "{err}");
        assert!(parse_tokens("al ice xxxxxxxxxxxxxxxxxx 1 2")
            .unwrap_err()
            .contains("two or three words"));
        assert!(parse_tokens("al/ice xxxxxxxxxxxxxxxxxx")
            .unwrap_err()
            .contains("may hold only"));
    }

    #[test]
    fn bearer_and_basic_credentials_name_the_principal_and_wrong_ones_are_refused() {
        let file = TokenFile::from_digests(parse_tokens("alice aaaaaaaaaaaaaaaa1\nold oooooooooooooooo1 1700000000\nnew nnnnnnnnnnnnnnnn1 4102444800").unwrap());
        let of = |v: &str| file.principal_of(Some(v.as_bytes()));
        assert_eq!(of("Bearer aaaaaaaaaaaaaaaa1").as_deref(), Ok("alice"));
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:aaaaaaaaaaaaaaaa1");
        assert_eq!(of(&format!("Basic {basic}")).as_deref(), Ok("alice"));
        let as_bob = base64::engine::general_purpose::STANDARD.encode("bob:aaaaaaaaaaaaaaaa1");
        assert!(of(&format!("Basic {as_bob}")).is_err());
        assert!(of("Bearer wrongwrongwrongwrong").is_err());
        // A token past its expiry is refused as such; one before it works.
        assert_eq!(
            of("Bearer oooooooooooooooo1").unwrap_err(),
            "the token has expired (its line in the token file gives an expiry that has passed)"
        );
        assert_eq!(of("Bearer nnnnnnnnnnnnnnnn1").as_deref(), Ok("new"));
        assert!(file
            .principal_of(None)
            .unwrap_err()
            .contains("no token was sent"));
    }
}
