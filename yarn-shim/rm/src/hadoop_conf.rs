//! A Hadoop client configuration directory that points unchanged YARN
//! clients (`spark-submit --master yarn`, the `yarn` CLI, MapReduce,
//! Skein) at the shim: `yarn-site.xml` with the ResourceManager addresses,
//! `core-site.xml` with the default file system (a configured HDFS, or the
//! local file system when there is none).
//!
//! An administrator's existing Hadoop configuration can be merged in: its
//! site files' properties are written first and Weir's own keys replace
//! theirs, so HDFS name services, MapReduce settings and the like carry
//! over while YARN clients still find the shim.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The site files the directory holds.
pub const SITE_FILES: [&str; 4] = ["core-site.xml", "hdfs-site.xml", "yarn-site.xml", "mapred-site.xml"];

/// What goes into the client configuration.
#[derive(Debug, Clone, Default)]
pub struct ClientConf {
    /// Where the shim serves ApplicationClientProtocol (`host:port`).
    pub client: String,
    /// Where ApplicationMasters find ApplicationMasterProtocol.
    pub scheduler: String,
    /// Where the REST API is (`yarn.resourcemanager.webapp.address`).
    pub web: Option<String>,
    /// Where `yarn rmadmin` finds the admin protocols
    /// (`yarn.resourcemanager.admin.address`).
    pub admin: Option<String>,
    /// `fs.defaultFS`; `None`: the merged configuration's, else `file:///`.
    pub default_fs: Option<String>,
    /// Properties of an existing Hadoop configuration, by site file name
    /// (one of [`SITE_FILES`]), in their order.
    pub merged: BTreeMap<String, Vec<(String, String)>>,
    /// Kerberos on the shim's ports: clients must use it too.
    pub kerberos: Option<ClientKerberos>,
}

/// What Hadoop clients need to speak Kerberos to the shim.
#[derive(Debug, Clone, Default)]
pub struct ClientKerberos {
    /// The shim's service principal (`yarn.resourcemanager.principal`):
    /// Hadoop's client checks the server's offer against it.
    pub principal: String,
    /// `hadoop.security.auth_to_local`, so clients name users as the shim does.
    pub auth_to_local: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn site(properties: &[(String, String)]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Written by Weir for Hadoop clients; rewritten on every start. -->\n<configuration>\n");
    for (name, value) in properties {
        let _ = writeln!(out, "  <property>\n    <name>{}</name>\n    <value>{}</value>\n  </property>", escape(name), escape(value));
    }
    out.push_str("</configuration>\n");
    out
}

/// `base` with each of `ours` replacing a property of the same name (or
/// appended), keeping the order of both.
fn overlay(base: &[(String, String)], ours: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = base.iter().filter(|(name, _)| !ours.iter().any(|(n, _)| n == name)).cloned().collect();
    out.extend(ours.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
    out
}

impl ClientConf {
    /// Names the shim's ports: where clients, ApplicationMasters and REST
    /// tools find it, as `host:port` they can reach (a shim listening on
    /// 0.0.0.0 is named by its host name, never by the wildcard).
    pub fn name_shim(&mut self, client: String, scheduler: String, web: Option<String>) {
        self.client = client;
        self.scheduler = scheduler;
        self.web = web;
    }

    /// Names the shim's admin port.
    pub fn name_admin(&mut self, admin: Option<String>) {
        self.admin = admin;
    }

    /// The default file system the clients will use.
    pub fn effective_default_fs(&self) -> String {
        if let Some(fs) = self.default_fs.as_deref().map(str::trim).filter(|fs| !fs.is_empty()) {
            return fs.to_owned();
        }
        self.merged
            .get("core-site.xml")
            .and_then(|props| props.iter().rev().find(|(n, _)| n == "fs.defaultFS"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "file:///".to_owned())
    }

    /// Every site file's contents, by name: the four of [`SITE_FILES`]
    /// that have properties (always `yarn-site.xml` and `core-site.xml`).
    pub fn render(&self) -> Vec<(&'static str, String)> {
        let host = self.client.rsplit_once(':').map_or(self.client.as_str(), |(h, _)| h);
        let default_fs = self.effective_default_fs();
        let empty = Vec::new();
        let mut files = Vec::new();
        for name in SITE_FILES {
            let base = self.merged.get(name).unwrap_or(&empty);
            let props = match name {
                "yarn-site.xml" => {
                    // The shim's addresses replace any ResourceManager the
                    // merged configuration names, HA ids included.
                    let base: Vec<_> = base
                        .iter()
                        .filter(|(n, _)| !(n.starts_with("yarn.resourcemanager.") && (n.contains("address") || n.contains("hostname") || n.contains(".ha."))))
                        .cloned()
                        .collect();
                    let mut ours = vec![
                        ("yarn.resourcemanager.hostname", host),
                        ("yarn.resourcemanager.address", self.client.as_str()),
                        ("yarn.resourcemanager.scheduler.address", self.scheduler.as_str()),
                        ("yarn.resourcemanager.ha.enabled", "false"),
                        // No timeline server: clients must not wait for one.
                        ("yarn.timeline-service.enabled", "false"),
                    ];
                    if let Some(web) = &self.web {
                        ours.push(("yarn.resourcemanager.webapp.address", web.as_str()));
                    }
                    if let Some(admin) = &self.admin {
                        ours.push(("yarn.resourcemanager.admin.address", admin.as_str()));
                    }
                    if let Some(k) = &self.kerberos {
                        ours.push(("yarn.resourcemanager.principal", k.principal.as_str()));
                    }
                    overlay(&base, &ours)
                }
                "core-site.xml" => {
                    let mut ours = vec![("fs.defaultFS", default_fs.as_str())];
                    if let Some(k) = &self.kerberos {
                        ours.push(("hadoop.security.authentication", "kerberos"));
                        ours.push(("hadoop.security.auth_to_local", k.auth_to_local.as_str()));
                    }
                    overlay(base, &ours)
                }
                _ if base.is_empty() => continue,
                _ => base.clone(),
            };
            files.push((name, site(&props)));
        }
        files
    }

    /// Writes the site files into `dir` (created if needed), each through a
    /// temporary file and a rename; site files of an earlier start that
    /// this one does not write are removed.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let files = self.render();
        for (name, text) in &files {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, dir.join(name))?;
        }
        for name in SITE_FILES {
            if !files.iter().any(|(n, _)| *n == name) {
                match std::fs::remove_file(dir.join(name)) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_files_name_the_shim_and_the_local_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = ClientConf::default();
        conf.name_shim("127.0.0.1:18032".into(), "127.0.0.1:18030".into(), None);
        conf.write(dir.path()).unwrap();
        let yarn = std::fs::read_to_string(dir.path().join("yarn-site.xml")).unwrap();
        assert!(yarn.contains("<name>yarn.resourcemanager.address</name>\n    <value>127.0.0.1:18032</value>"), "{yarn}");
        assert!(yarn.contains("<name>yarn.resourcemanager.scheduler.address</name>\n    <value>127.0.0.1:18030</value>"));
        assert!(yarn.contains("<name>yarn.resourcemanager.hostname</name>\n    <value>127.0.0.1</value>"));
        let core = std::fs::read_to_string(dir.path().join("core-site.xml")).unwrap();
        assert!(core.contains("<name>fs.defaultFS</name>\n    <value>file:///</value>"));
        assert!(!dir.path().join(".yarn-site.xml.tmp").exists());
        assert!(!dir.path().join("hdfs-site.xml").exists());
        assert!(site(&props(&[("a", "x<&>")])).contains("<value>x&lt;&amp;&gt;</value>"));
    }

    #[test]
    fn a_merged_configuration_keeps_its_keys_but_not_its_resource_manager() {
        let mut merged = BTreeMap::new();
        merged.insert("core-site.xml".to_owned(), props(&[("fs.defaultFS", "hdfs://nn:9000"), ("io.file.buffer.size", "131072")]));
        merged.insert("hdfs-site.xml".to_owned(), props(&[("dfs.replication", "1")]));
        merged.insert(
            "yarn-site.xml".to_owned(),
            props(&[
                ("yarn.resourcemanager.address", "old-rm:8032"),
                ("yarn.resourcemanager.ha.rm-ids", "rm1,rm2"),
                ("yarn.resourcemanager.address.rm1", "rm1:8032"),
                ("yarn.nodemanager.remote-app-log-dir", "/logs"),
            ]),
        );
        let conf = ClientConf { client: "h:1".into(), scheduler: "h:2".into(), web: Some("h:3".into()), admin: None, default_fs: None, merged, kerberos: None };
        assert_eq!(conf.effective_default_fs(), "hdfs://nn:9000");
        let files: BTreeMap<_, _> = conf.render().into_iter().collect();
        assert_eq!(files.keys().copied().collect::<Vec<_>>(), ["core-site.xml", "hdfs-site.xml", "yarn-site.xml"]);
        let yarn = &files["yarn-site.xml"];
        assert!(!yarn.contains("old-rm") && !yarn.contains("rm1"), "{yarn}");
        assert!(yarn.contains("<value>/logs</value>") && yarn.contains("<value>h:1</value>"));
        assert!(yarn.contains("<name>yarn.resourcemanager.webapp.address</name>\n    <value>h:3</value>"), "{yarn}");
        assert!(files["core-site.xml"].contains("<value>131072</value>"));
        assert!(files["hdfs-site.xml"].contains("dfs.replication"));

        // A configured default file system wins over the merged one.
        let conf = ClientConf { default_fs: Some("hdfs://other:8020".into()), ..conf };
        let core = &conf.render()[0].1;
        assert!(core.contains("<value>hdfs://other:8020</value>") && !core.contains("nn:9000"), "{core}");

        // Kerberos on the shim: clients are told to use it, and whom to expect.
        let kerberos = Some(ClientKerberos { principal: "rm/h@EXAMPLE.COM".into(), auth_to_local: "DEFAULT".into() });
        let files: BTreeMap<_, _> = ClientConf { kerberos, ..conf }.render().into_iter().collect();
        assert!(files["core-site.xml"].contains("<name>hadoop.security.authentication</name>\n    <value>kerberos</value>"), "{}", files["core-site.xml"]);
        assert!(files["core-site.xml"].contains("<name>hadoop.security.auth_to_local</name>\n    <value>DEFAULT</value>"));
        assert!(files["yarn-site.xml"].contains("<name>yarn.resourcemanager.principal</name>\n    <value>rm/h@EXAMPLE.COM</value>"));
    }

    #[test]
    fn site_files_no_longer_merged_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut merged = BTreeMap::new();
        merged.insert("hdfs-site.xml".to_owned(), props(&[("dfs.replication", "1")]));
        let conf = ClientConf { client: "h:1".into(), scheduler: "h:2".into(), web: None, admin: None, default_fs: None, merged, kerberos: None };
        conf.write(dir.path()).unwrap();
        assert!(dir.path().join("hdfs-site.xml").exists());
        ClientConf { merged: BTreeMap::new(), ..conf }.write(dir.path()).unwrap();
        assert!(!dir.path().join("hdfs-site.xml").exists());
    }
}
