//! A real ZooKeeper server on a loopback port, for tests (Debian's
//! `zookeeper` package: `apt-get install zookeeper`).

use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const JAR: &str = "/usr/share/java/zookeeper.jar";

/// A standalone ZooKeeper; killed and its data removed on drop.
pub struct ZkServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl ZkServer {
    /// Starts a server with a 200 ms tick (sessions may last 0.4 to 4 s),
    /// and waits until it answers `ruok`. Panics with what to install if
    /// ZooKeeper or Java is missing.
    pub fn start() -> ZkServer {
        assert!(
            std::path::Path::new(JAR).exists(),
            "{JAR} is missing: these tests need a real ZooKeeper (apt-get install zookeeper)"
        );
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = std::env::temp_dir().join(format!("weir-zk-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("ZooKeeper data dir");
        let config = dir.join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n",
                dir.join("data").display()
            ),
        )
        .expect("zoo.cfg");
        let log = std::fs::File::create(dir.join("zookeeper.log")).expect("ZooKeeper log");
        let child = Command::new("java")
            .arg("-cp")
            .arg(format!("/etc/zookeeper/conf:{JAR}"))
            .arg("-Xmx256m")
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start java for ZooKeeper: {e}"));
        let mut server = ZkServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.is_ok() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server.dir.join("zookeeper.log")).unwrap_or_default();
                panic!("ZooKeeper exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "ZooKeeper did not answer ruok within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn is_ok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut answer).is_ok() && answer == "imok"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn hosts(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `zk://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("zk://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
