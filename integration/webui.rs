//! The broker's web UI against a real `weir standalone` (issue 20).
//!
//! - `hostile_requests_to_the_ui_get_a_clear_4xx_and_no_file_outside_the_sandbox`:
//!   plain HTTP, always runs.
//! - `the_ui_works_in_headless_chromium`: Debian's `chromium` and
//!   `chromium-driver` driven by Selenium (PyPI) through
//!   `integration/webui_browser.py`, with a native task and, when pyspark
//!   and Java are there, a running Spark job. It skips, saying why, when the
//!   browser, the driver or Selenium is missing (scripts/test.sh installs
//!   them). With `WEIR_SCREENSHOTS=DIR` it saves the main pages there (the
//!   ones in docs/screenshots/ were made so).

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Room for a native task, and for a Spark AM and an executor beside the
/// node manager.
const SPEC: &str = "cpus:4;mem:6144;disk:1000;{ports}";

/// A marker a native task prints, and a name no page may interpret.
const MARKER: &str = "hello-from-the-webui-test";
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

struct Standalone {
    proc: support::Proc,
    broker: String,
    conf_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Standalone {
    /// SIGTERM: standalone stops its agent, which kills its tasks.
    fn drop(&mut self) {
        self.proc.terminate();
    }
}

fn standalone(defines: &[&str]) -> Standalone {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::spec_with_free_port(SPEC);
    let (proc, broker) = support::spawn_loopback_standalone(dir.path().to_str().unwrap(), &spec, defines);
    let conf_dir = dir.path().join("hadoop-conf");
    Standalone { proc, broker, conf_dir, dir }
}

impl Standalone {
    fn state(&self) -> Value {
        support::state_of(&self.broker)
    }

    fn wait_for(&self, within: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let s = self.state();
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what} not reached within {within:?}: {s:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `weir run --name NAME -- CMD` in the background.
    fn run(&self, name: &str, command: &str) -> support::Proc {
        let child = Command::new(support::WEIR)
            .args(["run", "--broker", &self.broker, "--cpus", "0.5", "--mem", "64", "--name", name, "--", command])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        support::Proc { child, name: name.to_owned() }
    }

    /// The running task named `name`: (framework id, task id).
    fn running_task(&self, name: &str) -> (String, String) {
        let s = self.wait_for(Duration::from_secs(30), "the task running", |s| {
            s["tasks"].as_array().into_iter().flatten().any(|t| t["name"] == name && t["state"] == "TASK_RUNNING")
        });
        let t = s["tasks"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap();
        (t["framework_id"].as_str().unwrap().to_owned(), t["id"].as_str().unwrap().to_owned())
    }
}

/// (status code, body) of one request; `body` makes it a form POST.
fn request(addr: &str, method: &str, path: &str, body: Option<&str>, extra_headers: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn hostile_requests_to_the_ui_get_a_clear_4xx_and_no_file_outside_the_sandbox() {
    let sa = standalone(&[]);
    let b = sa.broker.clone();
    // A task that leaves links out of its sandbox behind: to a file and to
    // a directory the agent can read.
    let _run = sa.run(HOSTILE, &format!("echo {MARKER}; ln -s /etc/passwd leak; ln -s /etc etc; mkdir sub; echo inner > sub/f; sleep 600"));
    let (fw, task) = sa.running_task(HOSTILE);
    let page = |path: &str| request(&b, "GET", path, None, "");
    let task_path = format!("/ui/tasks/{fw}/{task}");

    // What a user relies on: the task's files, its output, escaped names.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !page(&format!("{task_path}/raw?path=stdout")).1.contains(MARKER) {
        assert!(Instant::now() < deadline, "the task's stdout never showed its output");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The task makes its links and directory just after its output: wait
    // for them too.
    let (status, listing) = loop {
        let (status, listing) = page(&task_path);
        if status != 200 || (listing.contains(">sub/</a>") && listing.contains(">leak</a>")) || Instant::now() > deadline {
            break (status, listing);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200, "{listing}");
    assert!(listing.contains("&lt;img src=x onerror=alert(1)&gt;") && !listing.contains(HOSTILE), "{listing}");
    assert!(listing.contains(">sub/</a>") && listing.contains(">leak</a>"), "{listing}");
    let (status, inner) = page(&format!("{task_path}/file?path=sub%2Ff"));
    assert!(status == 200 && inner.contains("inner"), "{inner}");

    // Paths out of the sandbox: refused, and no byte of what is outside.
    for path in ["..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "leak", "etc%2Fpasswd", "sub%2F..%2F..%2Fstdout", "a%00b"] {
        for view in ["raw", "file"] {
            let (status, body) = page(&format!("{task_path}/{view}?path={path}"));
            assert_eq!(status, 400, "{view} {path}: {body}");
            assert!(!body.contains("root:"), "{view} {path} leaked /etc/passwd: {body}");
        }
        let (status, body) = page(&format!("{task_path}?path={path}"));
        assert_eq!(status, 200, "the task page shows, with the listing refused: {body}");
        assert!(body.contains("cannot be listed") && !body.contains("root:"), "{path}: {body}");
    }
    let (status, body) = page(&format!("{task_path}/raw?path={}", "a%2F".repeat(3000)));
    assert_eq!(status, 400, "a 9 KB path: {body}");

    // Unknown ids: 404 pages that say what was not found.
    for path in [
        "/ui/agents/no-such-agent".to_owned(),
        "/ui/frameworks/no-such-framework".to_owned(),
        "/ui/tasks/x/y".to_owned(),
        format!("/ui/tasks/{fw}/no-such-task/raw?path=stdout"),
        format!("/ui/frameworks/{fw}/apps/..%2F..%2Fws"),
        format!("/ui/frameworks/{fw}/apps/application_1_1"),
        "/ui/tasks/%2e%2e/%2e%2e".to_owned(),
    ] {
        let (status, body) = page(&path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("<!DOCTYPE html>"), "{path}: an HTML page: {body}");
    }
    // Bad paging and search values: 400 with the reason.
    for query in ["page=abc", "page=99999999999999999999999999", "per_page=-1", &format!("q={}", "x".repeat(5000))] {
        let (status, body) = page(&format!("/ui/tasks?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (status, body) = page("/ui/tasks?page=1000000&per_page=0");
    assert!(status == 200 && body.contains("page 1000000 of 1"), "a page past the end is empty, not an error: {body}");
    let (status, body) = page(&format!("/ui/tasks?q={}", &task[..task.len() - 2]));
    assert!(status == 200 && body.contains(&format!(">{task}</a>")), "search finds the task: {body}");

    // Actions are off by default: the form is not shown and a POST is refused.
    assert!(!listing.contains("/kill"), "{listing}");
    let (status, body) = request(&b, "POST", &format!("{task_path}/kill"), Some(""), "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("broker.ui.actions.enabled"), "{body}");
    let s = sa.state();
    assert!(s["tasks"].as_array().unwrap().iter().any(|t| t["id"] == task.as_str() && t["state"] == "TASK_RUNNING"), "{s:#}");
}

/// `cmd` on PATH, or None.
fn on_path(cmds: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    cmds.iter().flat_map(|c| std::env::split_paths(&path).map(move |d| d.join(c))).find(|p| p.is_file())
}

fn python_has(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A PySpark job that runs for minutes (killed at the end of the test).
const SLOW_PY: &str = r#"
import time
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("webui-slow").getOrCreate()
spark.sparkContext.parallelize(range(1), 1).map(lambda _: time.sleep(600)).count()
"#;

/// Submits SLOW_PY in cluster mode without waiting; its application id.
fn submit_spark(sa: &Standalone, spark_home: &Path) -> String {
    let app_py = sa.dir.path().join("slow.py");
    std::fs::write(&app_py, SLOW_PY).unwrap();
    let python = String::from_utf8_lossy(&Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap().stdout)
        .trim()
        .to_owned();
    let out = Command::new(spark_home.join("bin/spark-submit"))
        .args(["--master", "yarn", "--deploy-mode", "cluster"])
        .args(["--conf", "spark.yarn.submit.waitAppCompletion=false"])
        .args(["--conf", &format!("spark.yarn.jars=local:{}/jars/*", spark_home.display())])
        .args(["--conf", &format!("spark.yarn.stagingDir=file://{}", sa.dir.path().join("staging").display())])
        .args(["--conf", "spark.executor.instances=1", "--conf", "spark.executor.cores=1"])
        .args(["--conf", "spark.executor.memory=512m", "--conf", "spark.driver.memory=512m"])
        .args(["--conf", "spark.yarn.maxAppAttempts=1"])
        .args(["--conf", &format!("spark.pyspark.python={python}")])
        .args(["--conf", "spark.yarn.appMasterEnv.SPARK_LOCAL_IP=127.0.0.1", "--conf", "spark.executorEnv.SPARK_LOCAL_IP=127.0.0.1"])
        .arg(&app_py)
        .env("SPARK_HOME", spark_home)
        .env("HADOOP_CONF_DIR", &sa.conf_dir)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("PYSPARK_PYTHON", &python)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "spark-submit failed:\n{text}");
    text.split_whitespace()
        .skip_while(|w| *w != "assigned:")
        .nth(1)
        .unwrap_or_else(|| panic!("spark-submit printed no application id:\n{text}"))
        .to_owned()
}

#[test]
fn the_ui_works_in_headless_chromium() {
    let (Some(chromium), Some(driver)) = (on_path(&["chromium", "chromium-browser"]), on_path(&["chromedriver"])) else {
        eprintln!("SKIPPED the_ui_works_in_headless_chromium: chromium and chromedriver are not on PATH (apt install chromium chromium-driver)");
        return;
    };
    if !python_has("selenium") {
        eprintln!("SKIPPED the_ui_works_in_headless_chromium: python3 has no selenium (pip install selenium)");
        return;
    }
    let sa = standalone(&["broker.ui.actions.enabled=true", "broker.ui.history.interval=1s"]);
    let _run = sa.run(HOSTILE, &format!("echo {MARKER}; sleep 600"));
    let (framework, task) = sa.running_task(HOSTILE);

    // A running Spark job, when Spark and Java are there.
    let spark_home = Command::new("python3")
        .args(["-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|_| Command::new("java").arg("-version").stderr(Stdio::null()).status().is_ok_and(|s| s.success()));
    let (app, shim) = match &spark_home {
        None => {
            eprintln!("no pyspark or Java: the browser test runs without a Spark job");
            (String::new(), String::new())
        }
        Some(home) => {
            let app = submit_spark(&sa, home);
            let suffix = app.trim_start_matches("application_").to_owned();
            // The AM and an executor run (two containers as tasks).
            let s = sa.wait_for(Duration::from_secs(120), "the Spark job's executor running", |s| {
                s["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| t["id"].as_str().is_some_and(|id| id.contains(&suffix)) && t["state"] == "TASK_RUNNING")
                    .count()
                    >= 2
            });
            let shim = s["frameworks"].as_array().unwrap().iter().find(|f| f["name"] == "yarn-shim").unwrap()["id"].as_str().unwrap().to_owned();
            (app, shim)
        }
    };
    // A few share samples for the overview's charts.
    std::thread::sleep(Duration::from_secs(3));

    let screenshots = std::env::var("WEIR_SCREENSHOTS").unwrap_or_default();
    let args = serde_json::json!({
        "broker": sa.broker,
        "chromium": chromium,
        "chromedriver": driver,
        "framework": framework,
        "task": task,
        "hostile_name": HOSTILE,
        "stdout_marker": MARKER,
        "app": app,
        "shim_framework": shim,
        "screenshots": screenshots,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/webui_browser.py");
    let started = Instant::now();
    let out = Command::new("python3").arg(&script).arg(args.to_string()).stdin(Stdio::null()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("[browser, {:.1}s]\n{text}", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "the browser checks failed:\n{text}");

    // The kill went through the broker: the task ended KILLED.
    sa.wait_for(Duration::from_secs(10), "the task killed", |s| {
        s["completed_tasks"].as_array().into_iter().flatten().any(|t| t["id"] == task.as_str() && t["framework_id"] == framework.as_str() && t["state"] == "TASK_KILLED")
    });
}
