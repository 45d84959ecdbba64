//! A container's environment and launch script, built as a Hadoop
//! NodeManager builds them, so applications' own quoting (Spark escapes
//! its arguments for exactly this script) works unchanged:
//!
//! ```text
//! #!/bin/bash
//! set -o pipefail -e
//! export NAME="VALUE"          # one per variable, expanded by bash at run time
//! exec /bin/bash -c "<commands joined by spaces>"
//! ```
//!
//! In commands and values `<LOG_DIR>` becomes the container's log
//! directory, `<CPS>` the class path separator `:`, and `{{X}}` becomes
//! `$X` (YARN's cross-platform forms).

use std::path::{Path, PathBuf};

use crate::yarn::records as r;

/// Variables a container inherits from the node manager unless it sets
/// them (YARN's `yarn.nodemanager.env-whitelist`).
pub const DEFAULT_ENV_WHITELIST: &[&str] = &[
    "JAVA_HOME",
    "HADOOP_COMMON_HOME",
    "HADOOP_HDFS_HOME",
    "HADOOP_CONF_DIR",
    "CLASSPATH_PREPEND_DISTCACHE",
    "HADOOP_YARN_HOME",
    "HADOOP_HOME",
    "PATH",
    "LANG",
    "TZ",
];

/// Most environment entries a launch context may carry.
pub const MAX_ENV: usize = 10_000;
/// Most bytes of commands and environment values together.
pub const MAX_TEXT: usize = 1 << 20;

pub struct LaunchSpec<'a> {
    pub container_id: &'a str,
    pub user: &'a str,
    pub nm_host: &'a str,
    pub nm_port: u16,
    pub nm_http_port: u16,
    pub work_dir: &'a Path,
    pub log_dir: &'a Path,
    pub local_dirs: &'a [PathBuf],
    pub hadoop_conf_dir: Option<&'a Path>,
    pub token_file: &'a Path,
    pub java_home: Option<&'a Path>,
    pub extra_env: &'a [(String, String)],
    pub inherited: &'a [(String, String)],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError(pub String);

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LaunchError {}

pub fn expand(value: &str, log_dir: &Path) -> String {
    let mut s = value.replace("<LOG_DIR>", &log_dir.display().to_string()).replace("<CPS>", ":");
    // {{X}} → $X
    let mut out = String::with_capacity(s.len());
    while let Some(start) = s.find("{{") {
        match s[start + 2..].find("}}") {
            Some(end) => {
                out.push_str(&s[..start]);
                out.push('$');
                out.push_str(&s[start + 2..start + 2 + end]);
                s = s[start + 2 + end + 2..].to_owned();
            }
            None => break,
        }
    }
    out.push_str(&s);
    out
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The container's variables in the order they are exported.
pub fn environment(ctx: &r::ContainerLaunchContextProto, spec: &LaunchSpec) -> Result<Vec<(String, String)>, LaunchError> {
    if ctx.environment.len() > MAX_ENV {
        return Err(LaunchError(format!("the launch context has {} environment entries, more than {MAX_ENV}", ctx.environment.len())));
    }
    let text: usize = ctx.command.iter().map(String::len).sum::<usize>() + ctx.environment.iter().map(|e| e.key().len() + e.value().len()).sum::<usize>();
    if text > MAX_TEXT {
        return Err(LaunchError(format!("the launch context's commands and environment take {text} bytes, more than {MAX_TEXT}")));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        env.retain(|(n, _)| n != k);
        env.push((k.to_owned(), v));
    };
    let own: Vec<&str> = ctx.environment.iter().map(|e| e.key()).collect();
    for (k, v) in spec.inherited {
        if !own.contains(&k.as_str()) && valid_name(k) {
            set(&mut env, k, v.clone());
        }
    }
    for e in &ctx.environment {
        if !valid_name(e.key()) {
            return Err(LaunchError(format!("the environment variable name {:?} is not valid", e.key())));
        }
        set(&mut env, e.key(), expand(e.value(), spec.log_dir));
    }
    if let Some(java) = spec.java_home {
        if !own.contains(&"JAVA_HOME") {
            set(&mut env, "JAVA_HOME", java.display().to_string());
        }
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| format!("/home/{}", spec.user));
    let forced = [
        ("CONTAINER_ID", spec.container_id.to_owned()),
        ("NM_HOST", spec.nm_host.to_owned()),
        ("NM_PORT", spec.nm_port.to_string()),
        ("NM_HTTP_PORT", spec.nm_http_port.to_string()),
        ("LOCAL_DIRS", spec.local_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(",")),
        ("LOG_DIRS", spec.log_dir.display().to_string()),
        ("USER", spec.user.to_owned()),
        ("LOGNAME", spec.user.to_owned()),
        ("HOME", home),
        ("PWD", spec.work_dir.display().to_string()),
        ("HADOOP_TOKEN_FILE_LOCATION", spec.token_file.display().to_string()),
        ("JVM_PID", "$$".to_owned()),
    ];
    for (k, v) in forced {
        set(&mut env, k, v);
    }
    if let Some(conf) = spec.hadoop_conf_dir {
        set(&mut env, "HADOOP_CONF_DIR", conf.display().to_string());
    }
    for (k, v) in spec.extra_env {
        if !valid_name(k) {
            return Err(LaunchError(format!("the environment variable name {k:?} is not valid")));
        }
        set(&mut env, k, v.clone());
    }
    Ok(env)
}

/// Writes `work_dir/launch_container.sh` (mode 0700) and returns its path.
pub fn write_launch_script(ctx: &r::ContainerLaunchContextProto, spec: &LaunchSpec) -> Result<PathBuf, LaunchError> {
    use std::os::unix::fs::PermissionsExt;
    if ctx.command.is_empty() {
        return Err(LaunchError("the launch context has no command".into()));
    }
    let env = environment(ctx, spec)?;
    let mut script = String::from("#!/bin/bash\n\nset -o pipefail -e\n");
    for (k, v) in &env {
        script.push_str(&format!("export {k}=\"{v}\"\n"));
    }
    let command: Vec<String> = ctx.command.iter().map(|c| expand(c, spec.log_dir)).collect();
    script.push_str(&format!("exec /bin/bash -c \"{}\"\n", command.join(" ")));
    let path = spec.work_dir.join("launch_container.sh");
    std::fs::write(&path, script).map_err(|e| LaunchError(format!("cannot write {}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| LaunchError(format!("cannot make {} executable: {e}", path.display())))?;
    Ok(path)
}

/// `$JAVA_HOME` if it has `bin/java`; else `java` on the PATH, through its
/// symlinks, minus `/bin/java`.
pub fn detect_java_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME").map(PathBuf::from) {
        if home.join("bin/java").exists() {
            return Some(home);
        }
    }
    let path = std::env::var_os("PATH")?;
    let java = std::env::split_paths(&path).map(|d| d.join("java")).find(|j| j.is_file())?;
    let real = std::fs::canonicalize(java).ok()?;
    real.parent()?.parent().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(env: &[(&str, &str)], command: &[&str]) -> r::ContainerLaunchContextProto {
        r::ContainerLaunchContextProto {
            environment: env.iter().map(|(k, v)| r::StringStringMapProto { key: Some((*k).into()), value: Some((*v).into()) }).collect(),
            command: command.iter().map(|c| (*c).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn spec<'a>(dir: &'a Path, local: &'a [PathBuf], inherited: &'a [(String, String)]) -> LaunchSpec<'a> {
        LaunchSpec {
            container_id: "container_1_0001_01_000002",
            user: "alice",
            nm_host: "127.0.0.1",
            nm_port: 31000,
            nm_http_port: 31000,
            work_dir: dir,
            log_dir: dir,
            local_dirs: local,
            hadoop_conf_dir: None,
            token_file: dir,
            java_home: None,
            extra_env: &[],
            inherited,
        }
    }

    #[test]
    fn expansion_follows_yarns_forms() {
        let log = Path::new("/logs/c1");
        assert_eq!(expand("{{JAVA_HOME}}/bin/java", log), "$JAVA_HOME/bin/java");
        assert_eq!(expand("{{PWD}}<CPS>{{PWD}}/x", log), "$PWD:$PWD/x");
        assert_eq!(expand("1><LOG_DIR>/stdout", log), "1>/logs/c1/stdout");
        assert_eq!(expand("{{unclosed", log), "{{unclosed");
    }

    #[test]
    fn forced_variables_win_and_the_whitelist_fills_gaps_only() {
        let dir = tempfile::tempdir().unwrap();
        let local = [dir.path().join("local")];
        let inherited = [("PATH".to_owned(), "/nm/bin".to_owned()), ("LANG".to_owned(), "C".to_owned())];
        let c = ctx(&[("CONTAINER_ID", "forged"), ("LANG", "de_DE"), ("SPARK_USER", "alice")], &["true"]);
        let env = environment(&c, &spec(dir.path(), &local, &inherited)).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CONTAINER_ID"), Some("container_1_0001_01_000002"));
        assert_eq!(get("LANG"), Some("de_DE"));
        assert_eq!(get("PATH"), Some("/nm/bin"));
        assert_eq!(get("SPARK_USER"), Some("alice"));
        assert_eq!(get("LOCAL_DIRS"), Some(local[0].to_str().unwrap()));
        let bad = ctx(&[("1BAD", "x")], &["true"]);
        assert!(environment(&bad, &spec(dir.path(), &local, &[])).unwrap_err().0.contains("1BAD"));
    }

    #[test]
    fn the_script_runs_sparks_quoting_and_expands_pwd_at_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let local = [dir.path().to_path_buf()];
        let inherited = [("PATH".to_owned(), std::env::var("PATH").unwrap())];
        let c = ctx(
            &[("CLASSPATH", "{{PWD}}<CPS>{{PWD}}/x")],
            &["echo", "'-Dx=a b'", "'\\$HOME'", "{{PWD}}", "$CLASSPATH", "1><LOG_DIR>/stdout", "2><LOG_DIR>/stderr"],
        );
        let script = write_launch_script(&c, &spec(dir.path(), &local, &inherited)).unwrap();
        let status = std::process::Command::new("/bin/bash").arg(&script).current_dir(dir.path()).status().unwrap();
        assert!(status.success());
        let out = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
        let d = dir.path().display();
        assert_eq!(out.trim_end(), format!("-Dx=a b $HOME {d} {d}:{d}/x"));
    }
}
