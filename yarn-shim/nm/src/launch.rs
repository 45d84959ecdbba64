//! A container's environment and launch script, built as a Hadoop 3
//! NodeManager builds them (`ContainerLaunch`, `UnixShellScriptBuilder`),
//! so applications' own quoting works unchanged: Spark escapes its
//! arguments (`YarnSparkHadoopUtil.escapeForShell`) for exactly this script.
//!
//! ```text
//! #!/bin/bash
//!
//! set -o pipefail -e
//! export NAME="VALUE"     one per variable; values are not escaped, so
//!                         `$PWD` and the like expand when the script runs
//! exec /bin/bash -c "<commands, expanded, joined by single spaces>"
//! ```
//!
//! Variables are written in Hadoop's order, so a value can refer to any
//! variable written before it: the inherited ones (the node manager's own
//! whitelisted environment, where the container does not set them), then
//! the node manager's (which always win), then the container's own,
//! ordered so that each comes after the variables it refers to.
//!
//! In commands and values `<LOG_DIR>` becomes the container's log
//! directory, `<CPS>` the class path separator `:`, `{{` becomes `$` and
//! `}}` disappears (YARN's cross-platform forms).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use weir_yarn_api::records as r;

/// Variables a container inherits from the node manager unless it sets
/// them (YARN's `yarn.nodemanager.env-whitelist`).
pub const DEFAULT_ENV_WHITELIST: &[&str] = &[
    "JAVA_HOME",
    "HADOOP_COMMON_HOME",
    "HADOOP_HDFS_HOME",
    "HADOOP_CONF_DIR",
    "CLASSPATH_PREPEND_DISTCACHE",
    "HADOOP_YARN_HOME",
    // Not in Hadoop 3.2's list, but MapReduce's default class path needs it
    // and Hadoop's own setup guide tells administrators to add it.
    "HADOOP_MAPRED_HOME",
    "HADOOP_HOME",
    "PATH",
    "LANG",
    "TZ",
];

/// yarn.nodemanager.admin-env's default in Hadoop.
pub const DEFAULT_ADMIN_ENV: &str = "MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX";

/// Most environment entries a launch context may carry.
pub const MAX_ENV_ENTRIES: usize = 10_000;
/// Most bytes the commands of a launch context may take together.
pub const MAX_COMMAND_BYTES: usize = 1 << 20;

/// The script's name in the work dir, as Hadoop names it.
pub const LAUNCH_SCRIPT: &str = "launch_container.sh";

/// What the node manager knows about a container besides its launch
/// context.
pub struct LaunchSpec<'a> {
    pub container_id: &'a str,
    pub user: &'a str,
    pub nm_host: &'a str,
    pub nm_port: u16,
    pub nm_http_port: u16,
    /// The container's PWD; the script is written here.
    pub work_dir: &'a Path,
    pub log_dir: &'a Path,
    /// The application's dirs (`…/usercache/<user>/appcache/<app>`).
    pub local_dirs: &'a [PathBuf],
    /// The user's dirs (`…/usercache/<user>`), YARN's LOCAL_USER_DIRS.
    pub user_local_dirs: &'a [PathBuf],
    /// HOME in the container: yarn.nodemanager.user-home-dir (Hadoop's
    /// default is `/home/`), not the node manager's own home.
    pub home: &'a str,
    pub hadoop_conf_dir: Option<&'a Path>,
    /// The caller writes the credentials there.
    pub token_file: &'a Path,
    pub java_home: Option<&'a Path>,
    /// Set after the node manager's own variables, e.g. the AM's
    /// `APP_SUBMIT_TIME_ENV` and `MAX_APP_ATTEMPTS`.
    pub extra_env: &'a [(String, String)],
    /// Variables the container inherits from the NM's own environment
    /// unless it sets them (YARN's yarn.nodemanager.env-whitelist).
    pub inherited: &'a [(String, String)],
    /// yarn.nodemanager.admin-env, parsed by [`parse_admin_env`]: forced
    /// in, appended (with `:`) to a value the container or the node
    /// manager already set, as Hadoop's `Apps.setEnvFromInputString` does.
    pub admin_env: &'a [(String, String)],
}

/// Parses yarn.nodemanager.admin-env (`NAME=value,NAME2=value2`); entries
/// without `=` or with a bad name are skipped, as Hadoop skips them.
pub fn parse_admin_env(spec: &str) -> Vec<(String, String)> {
    spec.split(',')
        .filter_map(|entry| entry.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| valid_name(k))
        .collect()
}

/// Replaces `$NAME` in an admin-env value by the value `lookup` gives (an
/// unset variable becomes empty), as Hadoop does at the node manager, before
/// the script is written.
fn substitute(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let b = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                end += 1;
            }
            out.push_str(&lookup(&value[start..end]).unwrap_or_default());
            i = end;
        } else {
            let c = value[i..].chars().next().unwrap_or('\0');
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

/// A launch context the node manager cannot turn into a script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LaunchError(pub String);

/// YARN's expansion of a command or value (`ContainerLaunch.expandEnvironment`
/// on Unix): `<LOG_DIR>` → `log_dir`, `<CPS>` → `:`, `{{` → `$`, `}}` → ``.
pub fn expand(value: &str, log_dir: &Path) -> String {
    value
        .replace("<LOG_DIR>", &log_dir.display().to_string())
        .replace("<CPS>", ":")
        .replace("{{", "$")
        .replace("}}", "")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_name(name: &str, whose: &str) -> Result<(), LaunchError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(LaunchError(format!(
            "the {whose} environment variable name {name:?} is not valid (it must match [A-Za-z_][A-Za-z0-9_]*)"
        )))
    }
}

/// Sets `name` in an ordered list: a name already there keeps its place
/// and takes the new value.
fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = value,
        None => env.push((name.to_owned(), value)),
    }
}

fn has(env: &[(String, String)], name: &str) -> bool {
    env.iter().any(|(n, _)| n == name)
}

/// The container's variables in the order they are exported.
pub fn environment(
    ctx: &r::ContainerLaunchContextProto,
    spec: &LaunchSpec,
) -> Result<Vec<(String, String)>, LaunchError> {
    if ctx.environment.len() > MAX_ENV_ENTRIES {
        return Err(LaunchError(format!(
            "the launch context has {} environment entries, more than {MAX_ENV_ENTRIES}",
            ctx.environment.len()
        )));
    }
    let command_bytes: usize = ctx.command.iter().map(String::len).sum();
    if command_bytes > MAX_COMMAND_BYTES {
        return Err(LaunchError(format!(
            "the launch context's commands take {command_bytes} bytes, more than {MAX_COMMAND_BYTES}"
        )));
    }

    // A name given twice keeps its first place and its last value.
    let mut own: Vec<(String, String)> = Vec::with_capacity(ctx.environment.len());
    let mut place: HashMap<&str, usize> = HashMap::with_capacity(ctx.environment.len());
    for e in &ctx.environment {
        check_name(e.key(), "container's")?;
        let value = expand(e.value(), spec.log_dir);
        match place.get(e.key()) {
            Some(&i) => own[i].1 = value,
            None => {
                place.insert(e.key(), own.len());
                own.push((e.key().to_owned(), value));
            }
        }
    }

    // The node manager's variables, in Hadoop's order.
    let join = |dirs: &[PathBuf]| {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut nm: Vec<(String, String)> = vec![
        ("CONTAINER_ID".into(), spec.container_id.into()),
        ("NM_PORT".into(), spec.nm_port.to_string()),
        ("NM_HOST".into(), spec.nm_host.into()),
        ("NM_HTTP_PORT".into(), spec.nm_http_port.to_string()),
        ("LOCAL_DIRS".into(), join(spec.local_dirs)),
        ("LOCAL_USER_DIRS".into(), join(spec.user_local_dirs)),
        ("LOG_DIRS".into(), spec.log_dir.display().to_string()),
        ("USER".into(), spec.user.into()),
        ("LOGNAME".into(), spec.user.into()),
        ("HOME".into(), spec.home.into()),
        ("PWD".into(), spec.work_dir.display().to_string()),
        (
            "HADOOP_TOKEN_FILE_LOCATION".into(),
            spec.token_file.display().to_string(),
        ),
        ("JVM_PID".into(), "$$".into()),
    ];
    // Hadoop sets these only where the container has not (`putEnvIfAbsent`).
    if let Some(conf) = spec
        .hadoop_conf_dir
        .filter(|_| !place.contains_key("HADOOP_CONF_DIR"))
    {
        nm.push(("HADOOP_CONF_DIR".into(), conf.display().to_string()));
    }
    if let Some(java) = spec.java_home.filter(|_| !place.contains_key("JAVA_HOME")) {
        nm.push(("JAVA_HOME".into(), java.display().to_string()));
    }
    for (k, v) in spec.extra_env {
        check_name(k, "node manager's")?;
        set(&mut nm, k, v.clone());
    }
    for (k, raw) in spec.admin_env {
        check_name(k, "admin")?;
        let value = substitute(raw, |name| {
            nm.iter()
                .chain(own.iter())
                .chain(spec.inherited.iter())
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
        });
        let before = nm
            .iter()
            .find(|(n, _)| n == k)
            .or_else(|| own.iter().find(|(n, _)| n == k))
            .map(|(_, v)| v.clone());
        let value = match before {
            Some(b) => format!("{b}:{value}"),
            None => value,
        };
        set(&mut nm, k, value);
    }

    let mut env = Vec::with_capacity(spec.inherited.len() + nm.len() + own.len());
    for (k, v) in spec.inherited {
        check_name(k, "inherited")?;
        if !place.contains_key(k.as_str()) && !has(&nm, k) && !has(&env, k) {
            env.push((k.clone(), v.clone()));
        }
    }
    own.retain(|(k, _)| !has(&nm, k));
    env.extend(nm);
    env.extend(order_by_dependencies(own));
    Ok(env)
}

/// The variables a value refers to when bash expands it inside double
/// quotes (`$NAME`, `${NAME}`, `${#NAME}`; not after a backslash), as
/// Hadoop's `UnixShellScriptBuilder.getEnvDependencies` reads them.
fn dependencies(value: &str) -> HashSet<&str> {
    let b = value.as_bytes();
    let mut deps = HashSet::new();
    let mut in_double_quotes = true;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => in_double_quotes = !in_double_quotes,
            b'\'' if !in_double_quotes => {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'\\' => i += 1,
            b'$' => {
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i += 1;
                    if b.get(i) == Some(&b'#') {
                        i += 1;
                    }
                }
                let start = i;
                while i < b.len()
                    && (b[i] == b'_'
                        || b[i].is_ascii_alphabetic()
                        || (i > start && b[i].is_ascii_digit()))
                {
                    i += 1;
                }
                if i > start {
                    deps.insert(&value[start..i]);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    deps
}

/// The container's variables, each after those it refers to, otherwise in
/// their given order; a cycle is broken where it is found, as Hadoop's
/// `orderEnvByDependencies` does.
fn order_by_dependencies(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let index: HashMap<&str, usize> = env
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = env
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            let mut on: Vec<usize> = dependencies(v)
                .into_iter()
                .filter_map(|name| index.get(name).copied())
                .filter(|&j| j != i)
                .collect();
            // In the given order, so the result does not depend on hashing.
            on.sort_unstable();
            on
        })
        .collect();
    // Depth first, with an explicit stack: a chain of 10,000 variables
    // must not overflow a thread's stack.
    let mut done = vec![false; env.len()];
    let mut order = Vec::with_capacity(env.len());
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..env.len() {
        if done[root] {
            continue;
        }
        done[root] = true;
        stack.push((root, 0));
        while let Some((i, next)) = stack.last_mut() {
            let i = *i;
            match deps[i].get(*next) {
                Some(&d) => {
                    *next += 1;
                    if !done[d] {
                        done[d] = true;
                        stack.push((d, 0));
                    }
                }
                None => {
                    order.push(i);
                    stack.pop();
                }
            }
        }
    }
    let mut slots: Vec<Option<(String, String)>> = env.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Writes `work_dir/launch_container.sh` (mode 0700) and returns its path.
/// The script carries the whole environment; it does not rely on the
/// environment of the process that runs it.
pub fn write_launch_script(
    ctx: &r::ContainerLaunchContextProto,
    spec: &LaunchSpec,
) -> Result<PathBuf, LaunchError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if ctx.command.is_empty() {
        return Err(LaunchError("the launch context has no command".into()));
    }
    let env = environment(ctx, spec)?;
    let mut script = String::from("#!/bin/bash\n\nset -o pipefail -e\n");
    for (k, v) in &env {
        script.push_str(&format!("export {k}=\"{v}\"\n"));
    }
    let command: Vec<String> = ctx
        .command
        .iter()
        .map(|c| expand(c, spec.log_dir))
        .collect();
    script.push_str(&format!("exec /bin/bash -c \"{}\"\n", command.join(" ")));

    let path = spec.work_dir.join(LAUNCH_SCRIPT);
    let failed = |what: &str, e: std::io::Error| {
        LaunchError(format!("cannot {what} {}: {e}", path.display()))
    };
    // A resource may have been linked under this name: replace the link,
    // never write through it into the shared cache.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("replace", e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .map_err(|e| failed("create", e))?;
    file.write_all(script.as_bytes())
        .map_err(|e| failed("write", e))?;
    // Exactly 0700, whatever the umask.
    file.set_permissions(std::fs::Permissions::from_mode(0o700))
        .map_err(|e| failed("set the mode of", e))?;
    Ok(path)
}

/// `$JAVA_HOME` if it has `bin/java`; else `java` on the PATH, through its
/// symlinks, minus `/bin/java`.
pub fn detect_java_home() -> Option<PathBuf> {
    java_home_from(std::env::var_os("JAVA_HOME"), std::env::var_os("PATH"))
}

fn java_home_from(java_home: Option<OsString>, path: Option<OsString>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(home) = java_home.filter(|h| !h.is_empty()).map(PathBuf::from) {
        if runnable(&home.join("bin/java")) {
            return Some(home);
        }
    }
    let java = std::env::split_paths(&path?)
        .map(|d| d.join("java"))
        .find(|j| runnable(j))?;
    let real = std::fs::canonicalize(java).ok()?;
    let bin = real.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    bin.parent().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ctx(env: &[(&str, &str)], command: &[&str]) -> r::ContainerLaunchContextProto {
        r::ContainerLaunchContextProto {
            environment: env
                .iter()
                .map(|(k, v)| r::StringStringMapProto {
                    key: Some((*k).into()),
                    value: Some((*v).into()),
                })
                .collect(),
            command: command.iter().map(|c| (*c).to_owned()).collect(),
            ..Default::default()
        }
    }

    struct Dirs {
        _tmp: tempfile::TempDir,
        work: PathBuf,
        logs: PathBuf,
        local: [PathBuf; 2],
        tokens: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        let logs = tmp.path().join("logs");
        let local = [tmp.path().join("local1"), tmp.path().join("local2")];
        for d in [&work, &logs, &local[0], &local[1]] {
            std::fs::create_dir_all(d).unwrap();
        }
        let tokens = work.join("container_tokens");
        Dirs {
            _tmp: tmp,
            work,
            logs,
            local,
            tokens,
        }
    }

    fn spec<'a>(d: &'a Dirs, inherited: &'a [(String, String)]) -> LaunchSpec<'a> {
        LaunchSpec {
            container_id: "container_1_0001_01_000002",
            user: "alice",
            nm_host: "node1.example",
            nm_port: 31000,
            nm_http_port: 31001,
            work_dir: &d.work,
            log_dir: &d.logs,
            local_dirs: &d.local,
            user_local_dirs: &d.local[..1],
            home: "/home/",
            hadoop_conf_dir: None,
            token_file: &d.tokens,
            java_home: None,
            extra_env: &[],
            inherited,
            admin_env: &[],
        }
    }

    fn get<'e>(env: &'e [(String, String)], k: &str) -> Option<&'e str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Runs the script as the node manager would, from `cwd`.
    fn run(script: &Path, cwd: &Path) {
        let out = std::process::Command::new("/bin/bash")
            .arg(script)
            .current_dir(cwd)
            .env_clear()
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn expansion_follows_yarns_forms() {
        let log = Path::new("/logs/c1");
        assert_eq!(expand("{{JAVA_HOME}}/bin/java", log), "$JAVA_HOME/bin/java");
        assert_eq!(expand("{{PWD}}<CPS>{{PWD}}/x", log), "$PWD:$PWD/x");
        assert_eq!(expand("1><LOG_DIR>/stdout", log), "1>/logs/c1/stdout");
        assert_eq!(
            expand("-Dlog=<LOG_DIR> <LOG_DIR>", log),
            "-Dlog=/logs/c1 /logs/c1"
        );
        // Hadoop replaces the markers independently, not as pairs.
        assert_eq!(expand("{{unclosed", log), "$unclosed");
        assert_eq!(expand("a}}b", log), "ab");
        assert_eq!(expand("plain 'text' $X", log), "plain 'text' $X");
    }

    #[test]
    fn the_node_managers_variables_override_the_containers() {
        let d = dirs();
        let c = ctx(
            &[
                ("CONTAINER_ID", "forged"),
                ("PWD", "/elsewhere"),
                ("LOCAL_DIRS", "/x"),
                ("SPARK_USER", "alice"),
            ],
            &["true"],
        );
        let extra = pairs(&[
            ("APP_SUBMIT_TIME_ENV", "1700000000000"),
            ("MAX_APP_ATTEMPTS", "2"),
        ]);
        let s = LaunchSpec {
            extra_env: &extra,
            ..spec(&d, &[])
        };
        let env = environment(&c, &s).unwrap();
        assert_eq!(
            get(&env, "CONTAINER_ID"),
            Some("container_1_0001_01_000002")
        );
        assert_eq!(get(&env, "PWD"), Some(d.work.to_str().unwrap()));
        let local = format!("{},{}", d.local[0].display(), d.local[1].display());
        assert_eq!(get(&env, "LOCAL_DIRS"), Some(local.as_str()));
        assert_eq!(get(&env, "LOG_DIRS"), Some(d.logs.to_str().unwrap()));
        assert_eq!(get(&env, "NM_HOST"), Some("node1.example"));
        assert_eq!(get(&env, "NM_PORT"), Some("31000"));
        assert_eq!(get(&env, "NM_HTTP_PORT"), Some("31001"));
        assert_eq!(get(&env, "USER"), Some("alice"));
        assert_eq!(get(&env, "LOGNAME"), Some("alice"));
        assert_eq!(
            get(&env, "HADOOP_TOKEN_FILE_LOCATION"),
            Some(d.tokens.to_str().unwrap())
        );
        assert_eq!(get(&env, "JVM_PID"), Some("$$"));
        assert!(get(&env, "HOME").is_some_and(|h| !h.is_empty()));
        assert_eq!(get(&env, "SPARK_USER"), Some("alice"));
        assert_eq!(get(&env, "MAX_APP_ATTEMPTS"), Some("2"));
        assert_eq!(get(&env, "APP_SUBMIT_TIME_ENV"), Some("1700000000000"));
        // Each variable once.
        let names: HashSet<_> = env.iter().map(|(k, _)| k).collect();
        assert_eq!(names.len(), env.len());
    }

    #[test]
    fn inherited_variables_fill_only_what_the_container_leaves_unset() {
        let d = dirs();
        let inherited = pairs(&[
            ("PATH", "/nm/bin"),
            ("LANG", "C"),
            ("JAVA_HOME", "/nm/jdk"),
            ("TZ", "UTC"),
        ]);
        let c = ctx(&[("LANG", "de_DE"), ("JAVA_HOME", "/app/jdk")], &["true"]);
        let env = environment(&c, &spec(&d, &inherited)).unwrap();
        assert_eq!(get(&env, "PATH"), Some("/nm/bin"));
        assert_eq!(get(&env, "TZ"), Some("UTC"));
        assert_eq!(get(&env, "LANG"), Some("de_DE"));
        assert_eq!(get(&env, "JAVA_HOME"), Some("/app/jdk"));
        assert_eq!(env.iter().filter(|(k, _)| k == "LANG").count(), 1);
    }

    #[test]
    fn java_home_and_hadoop_conf_dir_are_set_only_where_the_container_has_not() {
        let d = dirs();
        let (jdk, conf) = (Path::new("/nm/jdk"), Path::new("/nm/conf"));
        let inherited = pairs(&[("JAVA_HOME", "/inherited/jdk")]);
        let s = LaunchSpec {
            java_home: Some(jdk),
            hadoop_conf_dir: Some(conf),
            ..spec(&d, &inherited)
        };
        let env = environment(&ctx(&[], &["true"]), &s).unwrap();
        assert_eq!(get(&env, "JAVA_HOME"), Some("/nm/jdk"));
        assert_eq!(get(&env, "HADOOP_CONF_DIR"), Some("/nm/conf"));
        let own = ctx(
            &[("JAVA_HOME", "/app/jdk"), ("HADOOP_CONF_DIR", "/app/conf")],
            &["true"],
        );
        let env = environment(&own, &s).unwrap();
        assert_eq!(get(&env, "JAVA_HOME"), Some("/app/jdk"));
        assert_eq!(get(&env, "HADOOP_CONF_DIR"), Some("/app/conf"));
    }

    #[test]
    fn home_and_local_user_dirs_are_yarns() {
        let d = dirs();
        let c = ctx(&[("HOME", "/app/home")], &["true"]);
        let env = environment(&c, &spec(&d, &[])).unwrap();
        // yarn.nodemanager.user-home-dir wins over the container's HOME.
        assert_eq!(get(&env, "HOME"), Some("/home/"));
        assert_eq!(get(&env, "LOCAL_USER_DIRS"), Some(d.local[0].to_str().unwrap()));
    }

    #[test]
    fn admin_env_is_forced_in_and_appended_to_what_is_set() {
        assert_eq!(
            parse_admin_env("MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX,bad name=x,NOEQ,X=a=b"),
            pairs(&[("MALLOC_ARENA_MAX", "$MALLOC_ARENA_MAX"), ("X", "a=b")])
        );
        let d = dirs();
        let inherited = pairs(&[("PATH", "/nm/bin")]);
        let admin = pairs(&[
            ("MALLOC_ARENA_MAX", "$WEIR_TEST_SURELY_UNSET_VAR"),
            ("LD_LIBRARY_PATH", "/native"),
            ("OPTS", "$USER-x"),
            ("PATH", "$PATH:/admin/bin"),
        ]);
        let s = LaunchSpec {
            admin_env: &admin,
            ..spec(&d, &inherited)
        };
        let c = ctx(&[("LD_LIBRARY_PATH", "/app/lib")], &["true"]);
        let env = environment(&c, &s).unwrap();
        // Substituted at the node manager; unset becomes empty.
        assert_eq!(get(&env, "MALLOC_ARENA_MAX"), Some(""));
        assert_eq!(get(&env, "LD_LIBRARY_PATH"), Some("/app/lib:/native"));
        assert_eq!(get(&env, "OPTS"), Some("alice-x"));
        assert_eq!(get(&env, "PATH"), Some("/nm/bin:/admin/bin"));
        assert_eq!(env.iter().filter(|(k, _)| k == "LD_LIBRARY_PATH").count(), 1);
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
    }

    #[test]
    fn a_bad_variable_name_is_an_error_naming_it() {
        let d = dirs();
        for bad in ["1BAD", "A-B", "", "X Y", "A=B", "Ä"] {
            let e = environment(&ctx(&[(bad, "x")], &["true"]), &spec(&d, &[])).unwrap_err();
            assert!(e.0.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
        let extra = pairs(&[("BAD;rm", "x")]);
        let e = environment(
            &ctx(&[], &["true"]),
            &LaunchSpec {
                extra_env: &extra,
                ..spec(&d, &[])
            },
        )
        .unwrap_err();
        assert!(e.0.contains("BAD;rm"), "{e}");
    }

    #[test]
    fn oversized_launch_contexts_are_refused() {
        let d = dirs();
        let mut c = ctx(&[], &["true"]);
        c.environment = (0..=MAX_ENV_ENTRIES)
            .map(|i| r::StringStringMapProto {
                key: Some(format!("V{i}")),
                value: Some("x".into()),
            })
            .collect();
        let e = environment(&c, &spec(&d, &[])).unwrap_err();
        assert!(e.0.contains("10001 environment entries"), "{e}");
        let big = "x".repeat(MAX_COMMAND_BYTES / 2 + 1);
        let e = write_launch_script(&ctx(&[], &[&big, &big]), &spec(&d, &[])).unwrap_err();
        assert!(e.0.contains("more than 1048576"), "{e}");
        let e = write_launch_script(&ctx(&[], &[]), &spec(&d, &[])).unwrap_err();
        assert!(e.0.contains("no command"), "{e}");
    }

    #[test]
    fn the_script_has_hadoops_form_and_mode() {
        let d = dirs();
        let inherited = pairs(&[("LANG", "C")]);
        let c = ctx(
            &[
                ("B", "$A/b"),
                ("A", "a"),
                ("CLASSPATH", "{{PWD}}<CPS>{{PWD}}/x"),
            ],
            &["{{JAVA_HOME}}/bin/java", "-cp", "x"],
        );
        let path = write_launch_script(&c, &spec(&d, &inherited)).unwrap();
        assert_eq!(path, d.work.join("launch_container.sh"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let script = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[..3], ["#!/bin/bash", "", "set -o pipefail -e"]);
        assert_eq!(lines[3], "export LANG=\"C\"");
        assert_eq!(
            lines[4],
            "export CONTAINER_ID=\"container_1_0001_01_000002\""
        );
        assert!(lines.contains(&"export CLASSPATH=\"$PWD:$PWD/x\""));
        assert!(lines.contains(&"export JVM_PID=\"$$\""));
        let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix)).unwrap();
        // The container's variables come after the node manager's, each after those it uses.
        assert!(at("export PWD=") < at("export CLASSPATH="));
        assert!(at("export A=") < at("export B="));
        assert_eq!(
            *lines.last().unwrap(),
            "exec /bin/bash -c \"$JAVA_HOME/bin/java -cp x\""
        );
    }

    #[test]
    fn a_resource_linked_as_the_script_name_is_replaced_not_written_through() {
        let d = dirs();
        let cached = d.logs.join("cached-file");
        std::fs::write(&cached, "shared").unwrap();
        std::os::unix::fs::symlink(&cached, d.work.join(LAUNCH_SCRIPT)).unwrap();
        write_launch_script(&ctx(&[], &["true"]), &spec(&d, &[])).unwrap();
        assert_eq!(std::fs::read_to_string(&cached).unwrap(), "shared");
        assert!(!std::fs::symlink_metadata(d.work.join(LAUNCH_SCRIPT))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn variables_are_ordered_by_what_they_refer_to() {
        let e = |v: &[(&str, &str)]| {
            order_by_dependencies(pairs(v))
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            e(&[("C", "$B"), ("B", "${A}x"), ("A", "1")]),
            ["A", "B", "C"]
        );
        assert_eq!(e(&[("X", "1"), ("Y", "2")]), ["X", "Y"]);
        // Escaped and single-quoted (outside double quotes) references are not references.
        assert_eq!(e(&[("B", "\\$A"), ("A", "1")]), ["B", "A"]);
        assert_eq!(e(&[("B", "\"'$A'"), ("A", "1")]), ["B", "A"]);
        // A cycle keeps every variable once.
        assert_eq!(e(&[("A", "$B"), ("B", "$A")]), ["B", "A"]);
        assert_eq!(
            dependencies("${#ARR} $PATH:$x1/$"),
            HashSet::from(["ARR", "PATH", "x1"])
        );
    }

    #[test]
    fn the_largest_allowed_environment_is_ordered_in_full() {
        let d = dirs();
        // Each variable refers to the next one, so the order is fully reversed.
        let env: Vec<(String, String)> = (0..MAX_ENV_ENTRIES)
            .map(|i| (format!("V{i}"), format!("${{V{}}}x", i + 1)))
            .collect();
        let mut c = ctx(&[], &["true"]);
        c.environment = env
            .iter()
            .map(|(k, v)| r::StringStringMapProto {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect();
        let out = environment(&c, &spec(&d, &[])).unwrap();
        let own: Vec<&str> = out
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with('V'))
            .collect();
        assert_eq!(own.len(), MAX_ENV_ENTRIES);
        assert_eq!(own[0], format!("V{}", MAX_ENV_ENTRIES - 1));
        assert_eq!(own[MAX_ENV_ENTRIES - 1], "V0");
    }

    /// Spark's way of quoting an argument (`'` + `$`→`\$`, `"`→`\"`,
    /// `'`→`'\''` + `'`) survives the script: bash sees what Spark meant.
    #[test]
    fn the_script_runs_sparks_quoting_and_yarns_expansions() {
        let d = dirs();
        let c = ctx(
            &[],
            &[
                "echo",
                "'-Dx=a b'",
                "'\\$HOME'",
                "'say \\\"hi\\\"'",
                "\\$HOME",
                "{{PWD}}",
                "1><LOG_DIR>/stdout",
                "2><LOG_DIR>/stderr",
            ],
        );
        let script = write_launch_script(&c, &spec(&d, &[])).unwrap();
        run(&script, &d.work);
        let home = get(&environment(&c, &spec(&d, &[])).unwrap(), "HOME")
            .unwrap()
            .to_owned();
        let out = std::fs::read_to_string(d.logs.join("stdout")).unwrap();
        // A quoted `\$HOME` stays literal; an unquoted one is expanded by the
        // inner bash, as under Hadoop.
        assert_eq!(
            out,
            format!("-Dx=a b $HOME say \"hi\" {home} {}\n", d.work.display())
        );
        assert_eq!(std::fs::read_to_string(d.logs.join("stderr")).unwrap(), "");
    }

    #[test]
    fn an_environment_value_refers_to_the_containers_pwd() {
        let d = dirs();
        let c = ctx(
            &[
                ("CLASSPATH", "{{PWD}}<CPS>{{PWD}}/x"),
                ("SPARK_CONF", "{{CLASSPATH}}/conf"),
            ],
            &[
                "echo",
                "{{CLASSPATH}}",
                "\\$SPARK_CONF",
                "{{LOCAL_DIRS}}",
                "1><LOG_DIR>/out",
            ],
        );
        let script = write_launch_script(&c, &spec(&d, &[])).unwrap();
        // Run from another directory: PWD must come from the script, in time for CLASSPATH.
        run(&script, Path::new("/"));
        let w = d.work.display();
        let out = std::fs::read_to_string(d.logs.join("out")).unwrap();
        assert_eq!(
            out,
            format!(
                "{w}:{w}/x {w}:{w}/x/conf {},{}\n",
                d.local[0].display(),
                d.local[1].display()
            )
        );
    }

    #[test]
    fn java_home_is_found_from_java_home_or_through_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let jdk = tmp.path().join("jvm/jdk-21");
        std::fs::create_dir_all(jdk.join("bin")).unwrap();
        let java = jdk.join("bin/java");
        std::fs::write(&java, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&java, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_dir = tmp.path().join("usr-bin");
        std::fs::create_dir_all(&path_dir).unwrap();
        std::os::unix::fs::symlink(&java, path_dir.join("java")).unwrap();
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let path = std::env::join_paths([&empty, &path_dir]).unwrap();
        let real_jdk = std::fs::canonicalize(&jdk).unwrap();

        assert_eq!(
            java_home_from(Some(jdk.clone().into()), None),
            Some(jdk.clone())
        );
        // A JAVA_HOME without bin/java is ignored in favour of the PATH.
        assert_eq!(
            java_home_from(Some(empty.clone().into()), Some(path.clone())),
            Some(real_jdk.clone())
        );
        assert_eq!(java_home_from(None, Some(path)), Some(real_jdk));
        assert_eq!(java_home_from(None, Some(empty.into())), None);
        assert_eq!(java_home_from(None, None), None);
    }
}
