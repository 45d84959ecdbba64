//! `${...}` expansion of values, done when a value is read (so a `-D`
//! override of `weir.work.dir` also moves `broker.work.dir`).
//!
//! Forms: `${other.key}`, `${env.NAME}`, `${env.NAME:-default}` (default
//! when NAME is unset or empty), `${env.NAME-default}` (default only when
//! unset), `${user.name}`, `${user.home}`. A default is literal text: it is
//! not expanded and may not contain `}`. There is no escape for a literal
//! `${`; a `$` not followed by `{` is literal.
//!
//! Invariants: expansion terminates and is bounded whatever the values are.
//! A key that (indirectly) refers to itself is an error showing the chain,
//! references nest at most [`MAX_DEPTH`] deep, and an expanded value may not
//! grow past [`crate::MAX_VALUE_BYTES`] (which stops `a=${b}${b}...`
//! doubling games). The environment is behind the [`Environment`] trait so
//! tests never depend on the real one.

use std::collections::HashMap;

use crate::MAX_VALUE_BYTES;

/// How deep `${a}` -> `${b}` -> ... may go.
pub const MAX_DEPTH: usize = 32;

/// Where `${env.*}`, `${user.name}` and `${user.home}` come from.
pub trait Environment: Send + Sync {
    /// An environment variable, `None` if unset.
    fn var(&self, name: &str) -> Option<String>;
    /// The name of the user running the process.
    fn user_name(&self) -> Option<String>;
    /// The home directory of the user running the process.
    fn user_home(&self) -> Option<String>;
}

/// The process's real environment. `user.name` is `$USER`, else the name
/// in the password database for the real user id (containers often run
/// without `$USER`); `user.home` likewise from `$HOME`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn user_name(&self) -> Option<String> {
        non_empty(self.var("USER")).or_else(|| non_empty(self.var("LOGNAME"))).or_else(|| passwd_entry().map(|(name, _)| name))
    }

    fn user_home(&self) -> Option<String> {
        non_empty(self.var("HOME")).or_else(|| passwd_entry().map(|(_, home)| home))
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// (user name, home directory) of the real user id, from the password
/// database (getpwuid_r through `nix`).
#[cfg(unix)]
fn passwd_entry() -> Option<(String, String)> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::current()).ok()??;
    Some((user.name, user.dir.to_string_lossy().into_owned()))
}

#[cfg(not(unix))]
fn passwd_entry() -> Option<(String, String)> {
    None
}

/// A fixed environment for tests.
#[derive(Debug, Clone, Default)]
pub struct MapEnvironment {
    pub vars: HashMap<String, String>,
    pub user_name: Option<String>,
    pub user_home: Option<String>,
}

impl MapEnvironment {
    /// An environment with the given user name and home and no variables.
    pub fn new(user_name: &str, user_home: &str) -> MapEnvironment {
        MapEnvironment { vars: HashMap::new(), user_name: Some(user_name.into()), user_home: Some(user_home.into()) }
    }

    pub fn with_var(mut self, name: &str, value: &str) -> MapEnvironment {
        self.vars.insert(name.into(), value.into());
        self
    }
}

impl Environment for MapEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
    fn user_name(&self) -> Option<String> {
        self.user_name.clone()
    }
    fn user_home(&self) -> Option<String> {
        self.user_home.clone()
    }
}

/// Why a value could not be expanded; the caller adds the key and its
/// source.
#[derive(Debug, PartialEq, Eq)]
pub struct ExpandError(pub String);

/// Expands `raw`, the value of `key`. `lookup` gives the raw value of
/// another key, or `None` if it is not set.
pub fn expand(
    key: &str,
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    env: &dyn Environment,
) -> Result<String, ExpandError> {
    let mut chain = vec![key.to_owned()];
    let mut out = String::new();
    expand_into(raw, lookup, env, &mut chain, &mut out)?;
    Ok(out)
}

fn expand_into(
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    env: &dyn Environment,
    chain: &mut Vec<String>,
    out: &mut String,
) -> Result<(), ExpandError> {
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        push_bounded(out, &rest[..start])?;
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ExpandError(format!("unterminated reference \"${{{after}\" (no closing '}}'){}", via(chain))));
        };
        let reference = &after[..end];
        rest = &after[end + 1..];
        if let Some(var) = reference.strip_prefix("env.") {
            let (name, default) = split_default(var);
            if name.is_empty() || name.contains('$') || name.contains('{') {
                return Err(bad_reference(reference, chain));
            }
            let value = env.var(name);
            let value = match default {
                Some((default, true)) => value.filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned()),
                Some((default, false)) => value.unwrap_or_else(|| default.to_owned()),
                None => value.ok_or_else(|| {
                    ExpandError(format!("${{{reference}}}: environment variable {name} is not set{}", via(chain)))
                })?,
            };
            push_bounded(out, &value)?;
            continue;
        }
        if reference.is_empty() || reference.contains(|c: char| c.is_whitespace() || c == '$' || c == '{') {
            return Err(bad_reference(reference, chain));
        }
        match reference {
            "user.name" => {
                let name = env
                    .user_name()
                    .ok_or_else(|| ExpandError(format!("${{user.name}}: the user name cannot be determined{}", via(chain))))?;
                push_bounded(out, &name)?;
            }
            "user.home" => {
                let home = env.user_home().ok_or_else(|| {
                    ExpandError(format!("${{user.home}}: the home directory cannot be determined{}", via(chain)))
                })?;
                push_bounded(out, &home)?;
            }
            other => {
                if chain.iter().any(|k| k == other) {
                    chain.push(other.to_owned());
                    return Err(ExpandError(format!("reference cycle {}", chain.join(" -> "))));
                }
                if chain.len() > MAX_DEPTH {
                    return Err(ExpandError(format!("references nest deeper than {MAX_DEPTH}{}", via(chain))));
                }
                let value = lookup(other)
                    .ok_or_else(|| ExpandError(format!("${{{other}}} refers to {other}, which is not set{}", via(chain))))?;
                chain.push(other.to_owned());
                expand_into(&value, lookup, env, chain, out)?;
                chain.pop();
            }
        }
    }
    push_bounded(out, rest)
}

/// `NAME:-default` -> (NAME, Some((default, true))), `NAME-default` ->
/// (NAME, Some((default, false))).
fn split_default(var: &str) -> (&str, Option<(&str, bool)>) {
    if let Some((name, default)) = var.split_once(":-") {
        if !name.contains('-') {
            return (name, Some((default, true)));
        }
    }
    match var.split_once('-') {
        Some((name, default)) => (name, Some((default, false))),
        None => (var, None),
    }
}

fn bad_reference(reference: &str, chain: &[String]) -> ExpandError {
    ExpandError(format!("\"${{{reference}}}\" is not a valid reference{}", via(chain)))
}

/// " (via a -> b)" when the problem is in a value reached through other
/// keys, so the user can find the value that needs fixing.
fn via(chain: &[String]) -> String {
    if chain.len() > 1 {
        format!(" (via {})", chain.join(" -> "))
    } else {
        String::new()
    }
}

fn push_bounded(out: &mut String, s: &str) -> Result<(), ExpandError> {
    if out.len() + s.len() > MAX_VALUE_BYTES {
        return Err(ExpandError(format!("the expanded value is longer than {MAX_VALUE_BYTES} bytes")));
    }
    out.push_str(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback for containers without $USER/$HOME: the password
    /// database's entry for this process's real user id.
    #[cfg(unix)]
    #[test]
    fn the_password_database_names_this_user() {
        let (name, home) = passwd_entry().expect("this user has a passwd entry");
        assert!(!name.is_empty());
        assert!(home.starts_with('/'), "{home}");
        if nix::unistd::Uid::current().is_root() {
            assert_eq!(name, "root");
        }
    }

    fn run(values: &[(&str, &str)], key: &str, env: &MapEnvironment) -> Result<String, String> {
        let map: HashMap<String, String> = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = |k: &str| map.get(k).cloned();
        expand(key, &map[key], &lookup, env).map_err(|e| e.0)
    }

    fn env() -> MapEnvironment {
        MapEnvironment::new("alice", "/home/alice").with_var("EMPTY", "").with_var("ZONE", "eu")
    }

    #[test]
    fn expands_keys_env_and_user() {
        let values = [
            ("dir", "${base}/x-${user.name}@${user.home}"),
            ("base", "/data/${env.ZONE}"),
            ("d1", "${env.NOPE:-dflt}|${env.EMPTY:-dflt}|${env.EMPTY-dflt}|${env.NOPE-dflt}|${env.ZONE:-dflt}"),
            ("lit", "$HOME $ {x} 100$"),
        ];
        assert_eq!(run(&values, "dir", &env()).unwrap(), "/data/eu/x-alice@/home/alice");
        assert_eq!(run(&values, "d1", &env()).unwrap(), "dflt|dflt||dflt|eu");
        assert_eq!(run(&values, "lit", &env()).unwrap(), "$HOME $ {x} 100$");
    }

    #[test]
    fn cycles_show_the_chain() {
        let values = [("a", "${b}"), ("b", "x${a}"), ("c", "${a}"), ("self", "${self}")];
        assert_eq!(run(&values, "a", &env()).unwrap_err(), "reference cycle a -> b -> a");
        assert_eq!(run(&values, "c", &env()).unwrap_err(), "reference cycle c -> a -> b -> a");
        assert_eq!(run(&values, "self", &env()).unwrap_err(), "reference cycle self -> self");
    }

    #[test]
    fn unset_references_are_named() {
        let values = [("a", "${missing}"), ("b", "${a}"), ("e", "${env.NOPE}"), ("u", "${user.name}")];
        assert_eq!(run(&values, "a", &env()).unwrap_err(), "${missing} refers to missing, which is not set");
        assert_eq!(run(&values, "b", &env()).unwrap_err(), "${missing} refers to missing, which is not set (via b -> a)");
        assert_eq!(run(&values, "e", &env()).unwrap_err(), "${env.NOPE}: environment variable NOPE is not set");
        assert_eq!(
            run(&values, "u", &MapEnvironment::default()).unwrap_err(),
            "${user.name}: the user name cannot be determined"
        );
    }

    #[test]
    fn malformed_references() {
        let values = [("a", "x${oops"), ("b", "${}"), ("c", "${a b}"), ("d", "${env.}")];
        assert_eq!(run(&values, "a", &env()).unwrap_err(), "unterminated reference \"${oops\" (no closing '}')");
        assert_eq!(run(&values, "b", &env()).unwrap_err(), "\"${}\" is not a valid reference");
        assert_eq!(run(&values, "c", &env()).unwrap_err(), "\"${a b}\" is not a valid reference");
        assert_eq!(run(&values, "d", &env()).unwrap_err(), "\"${env.}\" is not a valid reference");
    }

    #[test]
    fn doubling_is_bounded() {
        let mut values = vec![("k0".to_string(), "0123456789".repeat(10))];
        for i in 1..30 {
            values.push((format!("k{i}"), format!("${{k{}}}${{k{}}}", i - 1, i - 1)));
        }
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(run(&values, "k29", &env()).unwrap_err(), "the expanded value is longer than 1048576 bytes");
    }

    #[test]
    fn deep_chains_are_bounded() {
        let values: Vec<(String, String)> = (0..100).map(|i| (format!("k{i}"), format!("${{k{}}}", i + 1))).collect();
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(run(&values, "k0", &env()).unwrap_err().starts_with("references nest deeper than 32 (via k0 -> k1"));
    }
}
