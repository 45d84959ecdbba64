//! The testbed's hands on Docker: docker-compose for the project, `docker`
//! for single containers. Everything goes through the CLIs (as an operator
//! would type it), and every container is found by its compose labels,
//! never by a guessed name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// The compose project: containers, networks and volumes it makes are
/// named `weirtb_*` and labelled `com.docker.compose.project=weirtb`.
pub const PROJECT: &str = "weirtb";

/// The published ports on 127.0.0.1 (compose.yml's defaults).
pub const BROKER_PORTS: [u16; 3] = [25050, 25051, 25052];
pub const YARN_WEB_PORT: u16 = 28088;
/// The zk:// address every node uses for the brokers' election.
pub const ZK: &str = "zk://zk1:2181,zk2:2181,zk3:2181/weir";

/// Where docker/ is: `$WEIR_TESTBED_DIR`, else a `docker/compose.yml` in
/// the current directory or one above it, else the source tree this
/// binary was built from.
pub fn docker_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_TESTBED_DIR") {
        let dir = PathBuf::from(dir);
        if dir.join("compose.yml").is_file() {
            return Ok(dir);
        }
        bail!("WEIR_TESTBED_DIR={} has no compose.yml", dir.display());
    }
    let mut here = std::env::current_dir().ok();
    while let Some(dir) = here {
        if dir.join("docker/compose.yml").is_file() {
            return Ok(dir.join("docker"));
        }
        here = dir.parent().map(Path::to_path_buf);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker");
    if built.join("compose.yml").is_file() {
        return Ok(built);
    }
    bail!("cannot find the testbed's docker/compose.yml: run from the Weir source tree or set WEIR_TESTBED_DIR")
}

/// Whether a Docker daemon answers; the reason if not.
pub fn daemon_available() -> Result<(), String> {
    let out = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).stdin(Stdio::null()).output();
    match out {
        Err(e) => Err(format!("docker is not installed ({e})")),
        Ok(o) if !o.status.success() => {
            Err(format!("the Docker daemon does not answer: {}", String::from_utf8_lossy(&o.stderr).trim()))
        }
        Ok(_) => match Command::new("docker-compose").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(s) if s.success() => Ok(()),
            _ => Err("docker-compose is not installed (Debian: apt-get install docker-compose)".into()),
        },
    }
}

/// Runs a command, failing with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The cluster's compose files: compose.yml, and the generated override
/// with agents beyond the fourth when there is one.
pub struct Compose {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

impl Compose {
    pub fn new(dir: PathBuf) -> Compose {
        let mut files = vec![dir.join("compose.yml")];
        let extra = extra_agents_file();
        if extra.is_file() {
            files.push(extra);
        }
        Compose { dir, files }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p").arg(PROJECT).arg("--project-directory").arg(&self.dir);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        cmd
    }
}

/// The override file for agents 5 and up (written by `up --agents N`).
pub fn extra_agents_file() -> PathBuf {
    cache_dir().join("compose.agents.yml")
}

/// ~/.cache/weir/testbed (or $WEIR_TESTBED_CACHE), as docker/build.sh.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_TESTBED_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/weir/testbed")
}

/// Compose services for agents 5..=n, like agent1-4 in compose.yml.
pub fn extra_agents_yaml(compose_yml: &Path, n: usize) -> String {
    let mut y = String::from("# Written by `weir testbed up --agents N`: agents beyond compose.yml's four.\nversion: \"2.4\"\nservices:\n");
    for i in 5..=n {
        y.push_str(&format!(
            "  agent{i}:\n    extends: {{ file: {}, service: agent1 }}\n    hostname: agent{i}\n    environment:\n      WEIR_RESOURCES: \"cpus:2;mem:2048;disk:200;ports:[31000-31999]\"\n",
            compose_yml.display()
        ));
    }
    y
}

/// The id of a service's container (running or not), if it exists.
pub fn container(service: &str) -> Result<Option<String>> {
    let out = run(Command::new("docker").args([
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ]))?;
    Ok(stdout(&out).lines().next().map(str::to_owned))
}

pub fn require(service: &str) -> Result<String> {
    container(service)?.with_context(|| format!("the testbed has no node {service} (is it up? `weir testbed up`)"))
}

/// Every service of the project that has a container, sorted.
pub fn services() -> Result<Vec<String>> {
    let out = run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
        "--format",
        "{{.Label \"com.docker.compose.service\"}}",
    ]))?;
    let mut s: Vec<String> = stdout(&out).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect();
    s.sort_by_key(|name| sort_key(name));
    s.dedup();
    Ok(s)
}

/// zk1 < zk2 < broker1 < agent2 < agent10: by kind, then number.
fn sort_key(name: &str) -> (usize, String, u32) {
    let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
    let kind = &name[..name.len() - digits.len()];
    let rank = ["zk", "broker", "agent", "yarn", "client"].iter().position(|k| *k == kind).unwrap_or(9);
    (rank, kind.to_owned(), digits.parse().unwrap_or(0))
}

/// `running`, `paused`, `exited`…
pub fn state(service: &str) -> Result<String> {
    let id = require(service)?;
    Ok(stdout(&run(Command::new("docker").args(["inspect", "-f", "{{.State.Status}}", &id]))?))
}

/// The node's address on the testbed network.
pub fn ip(service: &str) -> Result<String> {
    let id = require(service)?;
    let out = run(Command::new("docker").args(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", &id]))?;
    stdout(&out).split_whitespace().next().map(str::to_owned).with_context(|| format!("{service} has no address (is it running?)"))
}

/// Runs `args` inside the node as root; fails with its output.
pub fn exec(service: &str, args: &[&str]) -> Result<String> {
    let id = require(service)?;
    let out = run(Command::new("docker").arg("exec").arg(&id).args(args))?;
    Ok(stdout(&out))
}

/// `docker <verb> <container>` for a node (kill, start, pause…).
pub fn container_verb(verb: &[&str], service: &str) -> Result<()> {
    let id = require(service)?;
    run(Command::new("docker").args(verb).arg(&id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nodes_sort_by_kind_then_number() {
        let mut s = vec!["client", "agent10", "broker1", "agent2", "zk3", "yarn", "agent1", "zk1"];
        s.sort_by_key(|n| super::sort_key(n));
        assert_eq!(s, ["zk1", "zk3", "broker1", "agent1", "agent2", "agent10", "yarn", "client"]);
    }

    #[test]
    fn extra_agents_extend_the_first() {
        let y = super::extra_agents_yaml(std::path::Path::new("/src/docker/compose.yml"), 6);
        assert!(y.contains("agent5:\n    extends: { file: /src/docker/compose.yml, service: agent1 }\n    hostname: agent5"), "{y}");
        assert!(y.contains("hostname: agent6"));
        assert!(!y.contains("agent7"));
    }
}
