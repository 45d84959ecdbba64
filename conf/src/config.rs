//! The layered configuration a daemon reads its settings from.
//!
//! Layers, later wins: the embedded defaults (`weir-default.xml`, then each
//! daemon's `<daemon>-default.xml`), then `weir-site.xml` and each daemon's
//! `<daemon>-site.xml` from the configuration directory, then `-D
//! KEY=VALUE` overrides and [`Config::set`]. A key marked final by one layer
//! keeps its value: a later layer's different value is ignored with a
//! warning, as in Hadoop.
//!
//! Invariants:
//! - values are stored raw; `${...}` is expanded when read, so the stored
//!   configuration can never be half-expanded and overriding a key moves
//!   every value that refers to it;
//! - the set of *declared* keys is the keys of all four embedded default
//!   files, whatever daemons are loaded. Getters refuse undeclared keys
//!   ([`ConfError::Undeclared`], a bug in the caller); site files and `-D`
//!   may set undeclared keys (they can serve as `${...}` variables) but get
//!   a warning with the closest declared key;
//! - every warning is both logged (`tracing::warn!`) and kept for
//!   [`Config::warnings`], because daemons load configuration before they
//!   set up logging and replay the warnings afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::expand::{expand, Environment, SystemEnvironment};
use crate::hadoop_xml::{parse_hadoop_bytes, read_bounded, FsIncludes, NoIncludes, Property};
use crate::{suggest, values, ConfError, MAX_VALUE_BYTES};

/// A Weir daemon, which decides which `<daemon>-default.xml` and
/// `<daemon>-site.xml` files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Daemon {
    Broker,
    Agent,
    YarnShim,
}

impl Daemon {
    pub const ALL: [Daemon; 3] = [Daemon::Broker, Daemon::Agent, Daemon::YarnShim];

    /// The file-name stem: `broker`, `agent`, `yarn-shim`.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Broker => "broker",
            Daemon::Agent => "agent",
            Daemon::YarnShim => "yarn-shim",
        }
    }

    fn default_file(self) -> DefaultFile {
        match self {
            Daemon::Broker => BROKER_DEFAULT,
            Daemon::Agent => AGENT_DEFAULT,
            Daemon::YarnShim => YARN_SHIM_DEFAULT,
        }
    }
}

/// What [`Config::load`] reads.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--conf-dir`; `None` means `$WEIR_CONF_DIR` if set and non-empty,
    /// else no configuration directory (embedded defaults only).
    pub conf_dir: Option<PathBuf>,
    /// The daemons whose files are read, in this order (a later daemon's
    /// site file wins over an earlier one's).
    pub daemons: Vec<Daemon>,
    /// Raw `KEY=VALUE` strings from `-D`, applied in order.
    pub overrides: Vec<String>,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An embedded `*-default.xml`.
    Default { file: &'static str, line: u64 },
    /// A site file (or a file it includes).
    File { path: PathBuf, line: u64 },
    /// `-D KEY=VALUE`, a dedicated flag, or [`Config::set`].
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default { .. } => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::CommandLine => f.write_str("-D"),
        }
    }
}

/// One key as [`Config::entries`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// The expanded value, or why it cannot be expanded.
    pub value: Result<String, String>,
    /// The value as written.
    pub raw: String,
    pub source: Source,
    pub is_final: bool,
}

#[derive(Debug, Clone)]
struct Setting {
    raw: String,
    source: Source,
    is_final: bool,
}

/// The effective configuration of one process.
#[derive(Clone)]
pub struct Config {
    settings: BTreeMap<String, Setting>,
    warnings: Vec<String>,
    env: Arc<dyn Environment>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config").field("settings", &self.settings).field("warnings", &self.warnings).finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
struct DefaultFile {
    name: &'static str,
    text: &'static str,
}

const WEIR_DEFAULT: DefaultFile = DefaultFile { name: "weir-default.xml", text: include_str!("../defaults/weir-default.xml") };
const BROKER_DEFAULT: DefaultFile =
    DefaultFile { name: "broker-default.xml", text: include_str!("../defaults/broker-default.xml") };
const AGENT_DEFAULT: DefaultFile = DefaultFile { name: "agent-default.xml", text: include_str!("../defaults/agent-default.xml") };
const YARN_SHIM_DEFAULT: DefaultFile =
    DefaultFile { name: "yarn-shim-default.xml", text: include_str!("../defaults/yarn-shim-default.xml") };
const ALL_DEFAULTS: [DefaultFile; 4] = [WEIR_DEFAULT, BROKER_DEFAULT, AGENT_DEFAULT, YARN_SHIM_DEFAULT];

impl DefaultFile {
    fn properties(self) -> Vec<Property> {
        // The embedded files are part of the binary, not user input, and
        // `embedded_defaults_parse_and_describe_every_key` checks them.
        parse_hadoop_bytes(self.text.as_bytes(), Path::new(self.name), &NoIncludes)
            .unwrap_or_else(|e| panic!("embedded default file is broken: {e}"))
    }
}

/// Keys declared by the embedded default files, all daemons together.
fn declared() -> &'static BTreeSet<String> {
    static DECLARED: OnceLock<BTreeSet<String>> = OnceLock::new();
    DECLARED.get_or_init(|| ALL_DEFAULTS.iter().flat_map(|f| f.properties()).map(|p| p.name).collect())
}

/// Every key declared in the embedded default files, sorted.
pub fn declared_keys() -> Vec<&'static str> {
    declared().iter().map(String::as_str).collect()
}

/// Whether `key` is declared in an embedded default file.
pub fn is_declared(key: &str) -> bool {
    declared().contains(key)
}

fn suggestion(key: &str) -> Option<String> {
    suggest::closest(key, declared().iter().map(String::as_str))
}

/// `items` in order without repeats.
fn unique(daemons: &[Daemon]) -> Vec<Daemon> {
    let mut seen = Vec::new();
    for d in daemons {
        if !seen.contains(d) {
            seen.push(*d);
        }
    }
    seen
}

impl Config {
    /// Loads the defaults of `opts.daemons`, the site files of the
    /// configuration directory and the `-D` overrides. Reads `$WEIR_CONF_DIR`
    /// and expands values with the real environment.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfError> {
        Config::load_with_environment(opts, Arc::new(SystemEnvironment))
    }

    /// [`Config::load`] with `env` in place of the process environment (for
    /// `$WEIR_CONF_DIR` and expansion).
    pub fn load_with_environment(opts: &LoadOptions, env: Arc<dyn Environment>) -> Result<Config, ConfError> {
        let mut config = Config::defaults(&opts.daemons).with_environment(env);
        let dir = match &opts.conf_dir {
            Some(dir) => Some((dir.clone(), "--conf-dir")),
            None => config.env.var("WEIR_CONF_DIR").filter(|d| !d.is_empty()).map(|d| (PathBuf::from(d), "$WEIR_CONF_DIR")),
        };
        if let Some((dir, origin)) = dir {
            let problem = match std::fs::metadata(&dir) {
                Ok(meta) if meta.is_dir() => None,
                Ok(_) => Some("not a directory".to_owned()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(problem) = problem {
                return Err(ConfError::ConfDir { dir, origin: origin.into(), problem });
            }
            let mut names = vec!["weir-site.xml".to_owned()];
            names.extend(unique(&opts.daemons).iter().map(|d| format!("{}-site.xml", d.name())));
            for name in names {
                config.load_site_file(&dir.join(name))?;
            }
        }
        for arg in &opts.overrides {
            let (key, value) = arg.split_once('=').ok_or_else(|| ConfError::BadOverride { arg: arg.clone() })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfError::BadOverride { arg: arg.clone() });
            }
            check_length(key, value, &Source::CommandLine)?;
            config.apply(key, value, false, Source::CommandLine);
        }
        Ok(config)
    }

    /// The embedded defaults of `weir-default.xml` and of `daemons`, and
    /// nothing else; expansion uses the real environment.
    pub fn defaults(daemons: &[Daemon]) -> Config {
        let mut config = Config { settings: BTreeMap::new(), warnings: Vec::new(), env: Arc::new(SystemEnvironment) };
        let files = std::iter::once(WEIR_DEFAULT).chain(unique(daemons).into_iter().map(Daemon::default_file));
        for file in files {
            for p in file.properties() {
                let source = Source::Default { file: file.name, line: p.line };
                config.apply(&p.name, &p.value, p.is_final, source);
            }
        }
        config
    }

    /// Uses `env` for `${env.*}`, `${user.name}` and `${user.home}` from now
    /// on.
    pub fn with_environment(mut self, env: Arc<dyn Environment>) -> Config {
        self.env = env;
        self
    }

    /// Reads one site file if it exists. Includes are followed.
    fn load_site_file(&mut self, path: &Path) -> Result<(), ConfError> {
        let bytes = match read_bounded(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(file = %path.display(), "no such site file; skipped");
                return Ok(());
            }
            Err(source) => return Err(ConfError::Io { file: path.to_owned(), source }),
        };
        let properties = parse_hadoop_bytes(&bytes, path, &FsIncludes)?;
        // Hadoop keeps the last of two properties with one name in a file;
        // so does Weir, but says so, since it is usually a mistake.
        let mut seen: HashMap<(&Path, &str), u64> = HashMap::new();
        for p in &properties {
            if let Some(first) = seen.insert((p.file.as_path(), p.name.as_str()), p.line) {
                self.warn(format!(
                    "{}:{}: {} is also set on line {first} of this file; the later value wins",
                    p.file.display(),
                    p.line,
                    p.name
                ));
            }
            let source = Source::File { path: p.file.clone(), line: p.line };
            self.apply(&p.name, &p.value, p.is_final, source);
        }
        Ok(())
    }

    /// Sets `key` from a later layer, unless an earlier layer made it final.
    fn apply(&mut self, key: &str, value: &str, is_final: bool, source: Source) {
        if !matches!(source, Source::Default { .. }) && !is_declared(key) {
            let hint = suggestion(key).map(|s| format!("; did you mean {s}?")).unwrap_or_default();
            self.warn(format!("{source}: unknown key {key} (no default file declares it){hint}"));
        }
        if let Some(existing) = self.settings.get(key) {
            if existing.is_final {
                if existing.raw != value {
                    let message = format!(
                        "{source}: attempt to override final parameter {key} (final at {}); ignoring {value:?}",
                        existing.source
                    );
                    self.warn(message);
                }
                return;
            }
        }
        self.settings.insert(key.to_owned(), Setting { raw: value.to_owned(), source, is_final });
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    /// Overrides `key` as `-D key=value` would (the source shows as `-D`).
    /// A final key keeps its value and a warning is recorded. `key` must be
    /// declared.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfError> {
        check_declared(key)?;
        check_length(key, value, &Source::CommandLine)?;
        self.apply(key, value, false, Source::CommandLine);
        Ok(())
    }

    /// The warnings of loading and `set`, also logged when they happened.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The expanded value of `key`, without the declared check.
    fn expanded(&self, key: &str) -> Result<Option<(String, &Setting)>, ConfError> {
        let Some(setting) = self.settings.get(key) else { return Ok(None) };
        let lookup = |k: &str| self.settings.get(k).map(|s| s.raw.clone());
        let value = expand(key, &setting.raw, &lookup, self.env.as_ref()).map_err(|e| ConfError::Expansion {
            key: key.to_owned(),
            origin: setting.source.to_string(),
            problem: e.0,
        })?;
        Ok(Some((value, setting)))
    }

    /// The expanded value of any key, declared or not; `None` when unset or
    /// blank. For `weir conf get`.
    pub(crate) fn get_unchecked(&self, key: &str) -> Result<Option<String>, ConfError> {
        Ok(self.expanded(key)?.map(|(v, _)| v).filter(|v| !v.trim().is_empty()))
    }

    /// The expanded value of `key` as written (not trimmed); `None` if it is
    /// unset or blank.
    pub fn get(&self, key: &str) -> Result<Option<String>, ConfError> {
        check_declared(key)?;
        self.get_unchecked(key)
    }

    /// The trimmed value; unset or blank is an error.
    pub fn get_str(&self, key: &str) -> Result<String, ConfError> {
        self.typed(key, |s| Ok(s.to_owned()))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, ConfError> {
        self.typed(key, values::parse_bool)
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, ConfError> {
        self.typed(key, |s| values::parse_int(s, u64::MIN, u64::MAX))
    }

    pub fn get_u32(&self, key: &str) -> Result<u32, ConfError> {
        self.typed(key, |s| values::parse_int(s, u32::MIN, u32::MAX))
    }

    pub fn get_u16(&self, key: &str) -> Result<u16, ConfError> {
        self.typed(key, |s| values::parse_int(s, u16::MIN, u16::MAX))
    }

    pub fn get_i64(&self, key: &str) -> Result<i64, ConfError> {
        self.typed(key, |s| values::parse_int(s, i64::MIN, i64::MAX))
    }

    /// A finite floating-point number.
    pub fn get_f64(&self, key: &str) -> Result<f64, ConfError> {
        self.typed(key, values::parse_f64)
    }

    /// `500ms`, `10s`, `5m`, `1h`, `2d` (also `us`, `ns`); a bare number is
    /// milliseconds.
    pub fn get_duration(&self, key: &str) -> Result<Duration, ConfError> {
        self.typed(key, values::parse_duration)
    }

    /// Bytes: `1k`, `512m`, `4g`, `1t`, `1p` are binary multiples; a bare
    /// number is bytes.
    pub fn get_size(&self, key: &str) -> Result<u64, ConfError> {
        self.typed(key, values::parse_size)
    }

    /// Comma-separated items, trimmed, empty items dropped. Unlike the other
    /// getters, an empty value is an empty list, not an error; only a key
    /// with no value at all (its daemon's defaults not loaded) is.
    pub fn get_list(&self, key: &str) -> Result<Vec<String>, ConfError> {
        check_declared(key)?;
        let (value, _) = self.expanded(key)?.ok_or_else(|| ConfError::Unset { key: key.to_owned() })?;
        Ok(values::parse_list(&value))
    }

    /// `host:port` or `[v6addr]:port`; the host is returned without
    /// brackets and is not resolved.
    pub fn get_host_port(&self, key: &str) -> Result<(String, u16), ConfError> {
        self.typed(key, values::parse_host_port)
    }

    /// A path, as written (not made absolute, `~` not expanded).
    pub fn get_path(&self, key: &str) -> Result<PathBuf, ConfError> {
        self.typed(key, values::parse_path)
    }

    fn typed<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfError> {
        check_declared(key)?;
        let unset = || ConfError::Unset { key: key.to_owned() };
        let (value, setting) = self.expanded(key)?.ok_or_else(unset)?;
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(unset());
        }
        parse(trimmed).map_err(|expected| ConfError::BadValue {
            key: key.to_owned(),
            value: trimmed.to_owned(),
            origin: setting.source.to_string(),
            expected,
        })
    }

    /// Every key that has a value, sorted by key.
    pub fn entries(&self) -> Vec<Entry> {
        self.settings
            .iter()
            .map(|(key, setting)| Entry {
                key: key.clone(),
                value: match self.expanded(key) {
                    Ok(Some((value, _))) => Ok(value),
                    Ok(None) => Ok(String::new()),
                    Err(ConfError::Expansion { problem, .. }) => Err(problem),
                    Err(other) => Err(other.to_string()),
                },
                raw: setting.raw.clone(),
                source: setting.source.clone(),
                is_final: setting.is_final,
            })
            .collect()
    }

    /// A table with the columns KEY, VALUE and SOURCE, sorted by key. Line
    /// breaks in values are shown as `\n`; a value that cannot be expanded
    /// shows why.
    pub fn dump_table(&self) -> String {
        let rows: Vec<[String; 3]> = self
            .entries()
            .into_iter()
            .map(|e| {
                let value = match e.value {
                    Ok(v) => v.replace('\r', "\\r").replace('\n', "\\n"),
                    Err(problem) => format!("<cannot expand: {problem}>"),
                };
                let source = if e.is_final { format!("{} (final)", e.source) } else { e.source.to_string() };
                [e.key, value, source]
            })
            .collect();
        let header = ["KEY".to_owned(), "VALUE".to_owned(), "SOURCE".to_owned()];
        let width = |col: usize| {
            std::iter::once(&header).chain(&rows).map(|r| r[col].chars().count()).max().unwrap_or(0)
        };
        let (key_width, value_width) = (width(0), width(1));
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let line = format!("{:<key_width$}  {:<value_width$}  {}", row[0], row[1], row[2]);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// A Hadoop configuration file holding every key with its expanded
    /// value, and a `<source>` element per property as Hadoop's own dump
    /// writes. Loading it as a site file gives the same values (a value
    /// that cannot be expanded is written raw, with the reason in a
    /// comment).
    pub fn dump_xml(&self) -> String {
        let mut out = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Effective Weir configuration, written by weir conf dump; values are expanded. -->\n<configuration>\n",
        );
        for e in self.entries() {
            out.push_str("  <property>\n");
            out.push_str(&format!("    <name>{}</name>\n", xml_escape(&e.key)));
            match &e.value {
                Ok(value) => out.push_str(&format!("    <value>{}</value>\n", xml_escape(value))),
                Err(problem) => {
                    out.push_str(&format!("    <!-- cannot expand: {} -->\n", comment_safe(problem)));
                    out.push_str(&format!("    <value>{}</value>\n", xml_escape(&e.raw)));
                }
            }
            if e.is_final {
                out.push_str("    <final>true</final>\n");
            }
            out.push_str(&format!("    <source>{}</source>\n", xml_escape(&e.source.to_string())));
            out.push_str("  </property>\n");
        }
        out.push_str("</configuration>\n");
        out
    }
}

fn check_declared(key: &str) -> Result<(), ConfError> {
    if is_declared(key) {
        Ok(())
    } else {
        Err(ConfError::Undeclared { key: key.to_owned(), suggestion: suggestion(key) })
    }
}

fn check_length(key: &str, value: &str, source: &Source) -> Result<(), ConfError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ConfError::ValueTooLong {
            key: key.to_owned(),
            origin: source.to_string(),
            len: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Escapes text for element content. Control characters become character
/// references (`\r` too, which XML would otherwise turn into `\n`).
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `--` may not appear in an XML comment.
fn comment_safe(s: &str) -> String {
    let mut out = s.replace("--", "- -");
    if out.ends_with('-') {
        out.push(' ');
    }
    out
}
