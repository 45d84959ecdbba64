//! `hadoop.security.auth_to_local`: Hadoop's rules that turn a Kerberos
//! principal (`alice@REALM`, `nm/host@REALM`) into the short user name
//! YARN's ACLs and applications see, as Hadoop's `KerberosName` applies
//! them (the default "hadoop" mechanism):
//!
//! - `DEFAULT`: a principal of the default realm becomes its first component.
//! - `RULE:[n:fmt](regex)s/pattern/replacement/g/L`: applies to principals
//!   of `n` components; `fmt` builds a string from `$0` (the realm), `$1`,
//!   `$2` (the components); the optional `(regex)` must match all of it;
//!   the optional sed substitution rewrites it (first match, or every one
//!   with `g`); `/L` lowercases the result.
//!
//! Rules are tried in order and the first that applies wins; a result that
//! still holds `@` or `/` is an error, as is a principal no rule applies to.

use regex::Regex;

/// The rules when `hadoop.security.auth_to_local` is unset.
pub const DEFAULT_RULES: &str = "DEFAULT";

/// The most rules read (a configuration has a handful).
const MAX_RULES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthToLocalError {
    #[error("bad hadoop.security.auth_to_local rule at {0:?}: expected DEFAULT or RULE:[n:format](regex)s/pattern/replacement/g/L")]
    Syntax(String),
    #[error("bad regular expression {regex:?} in hadoop.security.auth_to_local rule: {reason}")]
    Regex { regex: String, reason: String },
    #[error("hadoop.security.auth_to_local has more than {MAX_RULES} rules")]
    TooMany,
    /// Hadoop's `KerberosName$NoMatchingRule`, in its words.
    #[error("No rules applied to {0}")]
    NoMatchingRule(String),
    #[error("Non-simple name {name} after auth_to_local rule {rule}")]
    NonSimple { name: String, rule: String },
    #[error("Invalid name {0:?}: not a Kerberos principal (name[/host]@REALM)")]
    BadPrincipal(String),
}

#[derive(Debug, Clone)]
enum Rule {
    Default { text: String },
    Rule { text: String, components: usize, format: String, matcher: Option<Regex>, from: Option<Regex>, to: String, global: bool, lower: bool },
}

/// Parsed rules and the default realm `DEFAULT` compares against.
#[derive(Debug, Clone)]
pub struct AuthToLocal {
    rules: Vec<Rule>,
    default_realm: String,
}

/// A principal's parts: its components and realm.
#[derive(Debug, PartialEq, Eq)]
struct Principal<'a> {
    components: Vec<&'a str>,
    realm: &'a str,
}

fn split(principal: &str) -> Result<Principal<'_>, AuthToLocalError> {
    let bad = || AuthToLocalError::BadPrincipal(principal.to_owned());
    let (name, realm) = match principal.rsplit_once('@') {
        Some((n, r)) if !r.is_empty() && !r.contains('/') => (n, r),
        Some(_) => return Err(bad()),
        None => (principal, ""),
    };
    let components: Vec<&str> = name.split('/').collect();
    if components.iter().any(|c| c.is_empty() || c.contains('@')) || components.len() > 2 {
        return Err(bad());
    }
    Ok(Principal { components, realm })
}

/// Java's replacement string (`$1`, `\$`) as the regex crate writes it.
fn replacement(java: &str) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

fn regex(text: &str) -> Result<Regex, AuthToLocalError> {
    Regex::new(text).map_err(|e| AuthToLocalError::Regex { regex: text.to_owned(), reason: e.to_string() })
}

/// Takes `prefix` off `s`, and what follows up to (not including) `end`.
fn between(s: &str, prefix: char, end: char) -> Option<(&str, &str)> {
    let rest = s.strip_prefix(prefix)?;
    let at = rest.find(end)?;
    Some((&rest[..at], &rest[at + end.len_utf8()..]))
}

impl AuthToLocal {
    /// Parses `rules` (whitespace between rules, as Hadoop's XML values
    /// spread them over lines); `default_realm` is the realm `DEFAULT`
    /// accepts.
    pub fn parse(rules: &str, default_realm: &str) -> Result<AuthToLocal, AuthToLocalError> {
        let mut out = Vec::new();
        let mut rest = rules.trim_start();
        while !rest.is_empty() {
            if out.len() == MAX_RULES {
                return Err(AuthToLocalError::TooMany);
            }
            let start = rest;
            let syntax = || AuthToLocalError::Syntax(start.chars().take(60).collect());
            let rule = if let Some(after) = rest.strip_prefix("DEFAULT") {
                rest = after;
                Rule::Default { text: "DEFAULT".into() }
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (spec, after) = between(after, '[', ']').ok_or_else(syntax)?;
                let (n, format) = spec.split_once(':').ok_or_else(syntax)?;
                let components: usize = n.parse().map_err(|_| syntax())?;
                if !(1..=2).contains(&components) {
                    return Err(syntax());
                }
                let mut after = after;
                let mut matcher = None;
                if after.starts_with('(') {
                    let (re, a) = between(after, '(', ')').ok_or_else(syntax)?;
                    matcher = Some(regex(&format!("^(?:{re})$"))?);
                    after = a;
                }
                let (mut from, mut to, mut global) = (None, String::new(), false);
                if let Some(sed) = after.strip_prefix("s/") {
                    let (pattern, a) = sed.split_once('/').ok_or_else(syntax)?;
                    let (replace, a) = a.split_once('/').ok_or_else(syntax)?;
                    from = Some(regex(pattern)?);
                    to = replacement(replace);
                    after = a;
                    if let Some(a) = after.strip_prefix('g') {
                        global = true;
                        after = a;
                    }
                }
                let mut lower = false;
                if let Some(a) = after.strip_prefix("/L") {
                    lower = true;
                    after = a;
                }
                let text = start[..start.len() - after.len()].to_owned();
                rest = after;
                Rule::Rule { text, components, format: format.to_owned(), matcher, from, to, global, lower }
            } else {
                return Err(syntax());
            };
            if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
                return Err(AuthToLocalError::Syntax(rest.chars().take(60).collect()));
            }
            out.push(rule);
            rest = rest.trim_start();
        }
        Ok(AuthToLocal { rules: out, default_realm: default_realm.to_owned() })
    }

    /// The short name of `principal`, from the first rule that applies.
    pub fn short_name(&self, principal: &str) -> Result<String, AuthToLocalError> {
        let p = split(principal)?;
        // A name without a realm is already short (Hadoop returns it as is).
        if p.realm.is_empty() && p.components.len() == 1 {
            return Ok(p.components[0].to_owned());
        }
        for rule in &self.rules {
            if let Some(name) = apply(rule, &p, &self.default_realm)? {
                return Ok(name);
            }
        }
        Err(AuthToLocalError::NoMatchingRule(principal.to_owned()))
    }
}

fn apply(rule: &Rule, p: &Principal<'_>, default_realm: &str) -> Result<Option<String>, AuthToLocalError> {
    let (text, result, lower) = match rule {
        Rule::Default { text } => {
            if p.realm != default_realm {
                return Ok(None);
            }
            (text, p.components[0].to_owned(), false)
        }
        Rule::Rule { text, components, format, matcher, from, to, global, lower } => {
            if *components != p.components.len() {
                return Ok(None);
            }
            let Some(base) = expand(format, p) else { return Ok(None) };
            if matcher.as_ref().is_some_and(|m| !m.is_match(&base)) {
                return Ok(None);
            }
            let result = match from {
                Some(re) if *global => re.replace_all(&base, to.as_str()).into_owned(),
                Some(re) => re.replace(&base, to.as_str()).into_owned(),
                None => base,
            };
            (text, result, *lower)
        }
    };
    if result.contains(['@', '/']) {
        return Err(AuthToLocalError::NonSimple { name: result, rule: text.clone() });
    }
    Ok(Some(if lower { result.to_lowercase() } else { result }))
}

/// `fmt` with `$0` the realm and `$n` the n-th component; None when it
/// names a component the principal lacks (Hadoop: the rule does not apply).
fn expand(format: &str, p: &Principal<'_>) -> Option<String> {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(d as usize);
                chars.next();
            }
            match n {
                0 => out.push_str(p.realm),
                n => out.push_str(p.components.get(n - 1)?),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hadoop's TestKerberosName rules and cases.
    const HADOOP_RULES: &str = "RULE:[1:$1@$0](.*@YAHOO\\.COM)s/@.*//
        RULE:[2:$1](johndoe)s/^.*$/guest/
        RULE:[2:$1;$2](^.*;admin$)s/;admin$//
        RULE:[2:$2](root)
        DEFAULT";

    #[test]
    fn hadoops_test_kerberos_name_cases() {
        let r = AuthToLocal::parse(HADOOP_RULES, "APACHE.ORG").unwrap();
        for (principal, short) in [
            ("omalley@APACHE.ORG", "omalley"),
            ("hdfs/10.0.0.1@APACHE.ORG", "hdfs"),
            ("oom@YAHOO.COM", "oom"),
            ("johndoe/zoo@FOO.COM", "guest"),
            ("joe/admin@FOO.COM", "joe"),
            ("joe/root@FOO.COM", "root"),
        ] {
            assert_eq!(r.short_name(principal).as_deref(), Ok(short), "{principal}");
        }
        for bad in ["foo@ACME.COM", "root/joe@FOO.COM"] {
            assert_eq!(r.short_name(bad), Err(AuthToLocalError::NoMatchingRule(bad.into())));
            assert_eq!(r.short_name(bad).unwrap_err().to_string(), format!("No rules applied to {bad}"));
        }
    }

    /// Hadoop's TestKerberosName.testToLowerCase.
    #[test]
    fn lower_case_rules() {
        let rules = "RULE:[1:$1]/L
            RULE:[2:$1]/L
            RULE:[2:$1;$2](^.*;admin$)s/;admin$///L
            RULE:[2:$1;$2](^.*;guest$)s/;guest$//g/L
            DEFAULT";
        let r = AuthToLocal::parse(rules, "APACHE.ORG").unwrap();
        for (p, s) in [("Joe@FOO.COM", "joe"), ("Joe/root@FOO.COM", "joe"), ("Joe/admin@FOO.COM", "joe"), ("Joe/guestguest@FOO.COM", "joe")] {
            assert_eq!(r.short_name(p).as_deref(), Ok(s), "{p}");
        }
    }

    /// The example in Hadoop's SecureMode documentation: principals of
    /// another realm map to their first component, the service principals
    /// of the cluster to the users the daemons run as.
    #[test]
    fn secure_mode_documentation_example() {
        let rules = "RULE:[2:$1/$2@$0]([ndj]n/.*@REALM.TLD)s/.*/hdfs/
            RULE:[2:$1/$2@$0]([rn]m/.*@REALM.TLD)s/.*/yarn/
            RULE:[2:$1/$2@$0](jhs/.*@REALM.TLD)s/.*/mapred/
            DEFAULT";
        let r = AuthToLocal::parse(rules, "REALM.TLD").unwrap();
        assert_eq!(r.short_name("nn/host1.example.com@REALM.TLD").as_deref(), Ok("hdfs"));
        assert_eq!(r.short_name("rm/localhost@REALM.TLD").as_deref(), Ok("yarn"));
        assert_eq!(r.short_name("nm/node7@REALM.TLD").as_deref(), Ok("yarn"));
        assert_eq!(r.short_name("jhs/h@REALM.TLD").as_deref(), Ok("mapred"));
        assert_eq!(r.short_name("alice@REALM.TLD").as_deref(), Ok("alice"));
        assert_eq!(r.short_name("alice@OTHER.TLD"), Err(AuthToLocalError::NoMatchingRule("alice@OTHER.TLD".into())));
    }

    #[test]
    fn default_alone_takes_the_first_component_of_the_default_realm() {
        let r = AuthToLocal::parse(DEFAULT_RULES, "EXAMPLE.COM").unwrap();
        assert_eq!(r.short_name("alice@EXAMPLE.COM").as_deref(), Ok("alice"));
        assert_eq!(r.short_name("nm/localhost@EXAMPLE.COM").as_deref(), Ok("nm"));
        assert_eq!(r.short_name("alice").as_deref(), Ok("alice"));
        assert!(r.short_name("alice@EVIL.COM").is_err());
    }

    #[test]
    fn a_rule_leaving_a_realm_or_host_is_refused() {
        let r = AuthToLocal::parse("RULE:[1:$1@$0]", "X").unwrap();
        assert_eq!(
            r.short_name("alice@X").unwrap_err().to_string(),
            "Non-simple name alice@X after auth_to_local rule RULE:[1:$1@$0]"
        );
    }

    #[test]
    fn java_replacement_groups_and_dollars() {
        let r = AuthToLocal::parse("RULE:[2:$1-$2](.*-.*)s/([a-z]+)-(.*)/$2_$1/", "X").unwrap();
        assert_eq!(r.short_name("svc/h1@Y").as_deref(), Ok("h1_svc"));
        assert_eq!(replacement("a\\$b$1c$"), "a$$b${1}c$$");
    }

    #[test]
    fn malformed_rules_and_principals_are_errors_not_panics() {
        for bad in [
            "RULE",
            "RULE:",
            "RULE:[",
            "RULE:[x:$1]",
            "RULE:[3:$1]",
            "RULE:[1:$1](",
            "RULE:[1:$1](a)s/x",
            "RULE:[1:$1](a)s/x/y",
            "RULE:[1:$1]([)",
            "DEFAULTX",
            "FOO",
            "DEFAULT RULE:[1:$1]junk",
        ] {
            assert!(AuthToLocal::parse(bad, "X").is_err(), "{bad:?} should not parse");
        }
        let too_many = "DEFAULT ".repeat(MAX_RULES + 1);
        assert_eq!(AuthToLocal::parse(&too_many, "X").unwrap_err(), AuthToLocalError::TooMany);
        let r = AuthToLocal::parse("RULE:[1:$9] DEFAULT", "X").unwrap();
        assert_eq!(r.short_name("a@X").as_deref(), Ok("a"));
        for p in ["", "@X", "a/b/c@X", "a//b@X", "a@", "/@X", "a@b@c/d"] {
            assert!(r.short_name(p).is_err(), "{p:?}");
        }
        // Whitespace-only configuration: no rules, nothing maps.
        assert!(AuthToLocal::parse("  \n ", "X").unwrap().short_name("a@X").is_err());
    }
}
