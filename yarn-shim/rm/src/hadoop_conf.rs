//! A Hadoop client configuration directory that points unchanged YARN
//! clients (`spark-submit --master yarn`, the `yarn` CLI) at the shim:
//! `yarn-site.xml` with the ResourceManager addresses, `core-site.xml` with
//! the local file system as the default (there is no HDFS).

use std::fmt::Write as _;
use std::path::Path;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn site(properties: &[(&str, &str)]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Written by Weir for Hadoop clients; rewritten on every start. -->\n<configuration>\n");
    for (name, value) in properties {
        let _ = writeln!(out, "  <property>\n    <name>{}</name>\n    <value>{}</value>\n  </property>", escape(name), escape(value));
    }
    out.push_str("</configuration>\n");
    out
}

/// The two files' contents: `(yarn-site.xml, core-site.xml)`.
/// `client` is where the shim serves ApplicationClientProtocol, `scheduler`
/// where ApplicationMasters will find it.
pub fn render(client: &str, scheduler: &str) -> (String, String) {
    let host = client.rsplit_once(':').map_or(client, |(h, _)| h);
    let yarn = site(&[
        ("yarn.resourcemanager.hostname", host),
        ("yarn.resourcemanager.address", client),
        ("yarn.resourcemanager.scheduler.address", scheduler),
        // No timeline server: clients must not wait for one.
        ("yarn.timeline-service.enabled", "false"),
    ]);
    let core = site(&[("fs.defaultFS", "file:///")]);
    (yarn, core)
}

/// Writes `yarn-site.xml` and `core-site.xml` into `dir` (created if
/// needed), each through a temporary file and a rename.
pub fn write(dir: &Path, client: &str, scheduler: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (yarn, core) = render(client, scheduler);
    for (name, text) in [("yarn-site.xml", yarn), ("core-site.xml", core)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_name_the_shim_and_the_local_file_system() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "127.0.0.1:18032", "127.0.0.1:18030").unwrap();
        let yarn = std::fs::read_to_string(dir.path().join("yarn-site.xml")).unwrap();
        assert!(yarn.contains("<name>yarn.resourcemanager.address</name>\n    <value>127.0.0.1:18032</value>"), "{yarn}");
        assert!(yarn.contains("<name>yarn.resourcemanager.scheduler.address</name>\n    <value>127.0.0.1:18030</value>"));
        assert!(yarn.contains("<name>yarn.resourcemanager.hostname</name>\n    <value>127.0.0.1</value>"));
        let core = std::fs::read_to_string(dir.path().join("core-site.xml")).unwrap();
        assert!(core.contains("<name>fs.defaultFS</name>\n    <value>file:///</value>"));
        assert!(!dir.path().join(".yarn-site.xml.tmp").exists());
        assert!(site(&[("a", "x<&>")]).contains("<value>x&lt;&amp;&gt;</value>"));
    }
}
