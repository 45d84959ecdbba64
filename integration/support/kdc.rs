//! A real MIT Kerberos KDC for tests: a realm of its own in a temporary
//! directory (krb5.conf, kdc.conf, a database made by `kdb5_util create
//! -s`), `krb5kdc` on a free loopback port, principals and keytabs made
//! with `kadmin.local`, and `kinit`/`kdestroy` into a ticket cache of the
//! test's own. Nothing is installed here: without the tools (Debian's
//! krb5-kdc, krb5-admin-server, krb5-user; scripts/test.sh installs them)
//! [`Kdc::start`] says which one is missing and the caller skips. The KDC
//! is killed when the value drops.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The test realm (never a real one).
pub const REALM: &str = "WEIR.TEST";

/// The tools the harness runs, and the Debian package of each.
const TOOLS: [(&str, &str); 5] =
    [("krb5kdc", "krb5-kdc"), ("kdb5_util", "krb5-kdc"), ("kadmin.local", "krb5-admin-server"), ("kinit", "krb5-user"), ("kdestroy", "krb5-user")];

pub struct Kdc {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

/// Where a tool is: PATH, then the sbin directories Debian puts them in
/// (not on a non-root PATH).
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Kdc {
    /// Why a KDC cannot run here (a missing tool), if it cannot.
    pub fn unavailable() -> Option<String> {
        TOOLS.iter().find(|(t, _)| tool(t).is_none()).map(|(t, pkg)| format!("{t} is not installed (Debian package {pkg})"))
    }

    /// Makes the realm and starts its KDC; Err names what failed.
    pub fn start() -> Result<Kdc, String> {
        if let Some(why) = Kdc::unavailable() {
            return Err(why);
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = super::free_port();
        let d = dir.path();
        std::fs::write(
            d.join("krb5.conf"),
            format!(
                "[libdefaults]\n  default_realm = {REALM}\n  dns_lookup_realm = false\n  dns_lookup_kdc = false\n  rdns = false\n  \
                 dns_canonicalize_hostname = false\n  udp_preference_limit = 1\n  ticket_lifetime = 1h\n  renew_lifetime = 2h\n  \
                 default_ccache_name = FILE:{ccache}\n\n[realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n\n\
                 [domain_realm]\n  localhost = {REALM}\n  .localhost = {REALM}\n",
                ccache = d.join("ccache").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            d.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n  kdc_listen = 127.0.0.1:{port}\n  kdc_tcp_listen = 127.0.0.1:{port}\n\n[realms]\n  {REALM} = {{\n    \
                 database_name = {db}\n    key_stash_file = {stash}\n    acl_file = {acl}\n    max_life = 1h\n    max_renewable_life = 2h\n    \
                 supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n  }}\n\n[logging]\n  kdc = FILE:{log}\n",
                db = d.join("principal").display(),
                stash = d.join("stash").display(),
                acl = d.join("kadm5.acl").display(),
                log = d.join("kdc.log").display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(d.join("kadm5.acl"), "").map_err(|e| e.to_string())?;
        let env = [("KRB5_CONFIG", d.join("krb5.conf")), ("KRB5_KDC_PROFILE", d.join("kdc.conf"))];
        let run = |name: &str, args: &[&str]| run_tool(name, args, env.iter().map(|(k, v)| (*k, v.as_os_str())));
        run("kdb5_util", &["-r", REALM, "create", "-s", "-P", "weir-test-master-key"])?;
        let child = Command::new(tool("krb5kdc").ok_or("krb5kdc is not installed")?)
            .args(["-n", "-r", REALM, "-P"])
            .arg(d.join("krb5kdc.pid"))
            .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start krb5kdc: {e}"))?;
        let mut kdc = Kdc { dir, child, port };
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = kdc.child.try_wait() {
                return Err(format!("krb5kdc exited ({status}); its log: {}", kdc.log()));
            }
            if Instant::now() > until {
                return Err(format!("krb5kdc did not listen on 127.0.0.1:{port} within 20 s; its log: {}", kdc.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(kdc)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The krb5.conf clients use (KRB5_CONFIG; Java's java.security.krb5.conf).
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir().join("krb5.conf")
    }

    /// The ticket cache `kinit` fills (KRB5CCNAME).
    pub fn ccache(&self) -> PathBuf {
        self.dir().join("ccache")
    }

    /// The environment every Kerberos client and server of the test needs.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KRB5_CONFIG".into(), self.krb5_conf().display().to_string()),
            ("KRB5_KDC_PROFILE".into(), self.dir().join("kdc.conf").display().to_string()),
            ("KRB5CCNAME".into(), format!("FILE:{}", self.ccache().display())),
            // The acceptor's replay cache, kept out of /var/tmp.
            ("KRB5RCACHEDIR".into(), self.dir().display().to_string()),
        ]
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("kdc.log")).unwrap_or_default()
    }

    fn tool(&self, name: &str, args: &[&str]) -> Result<Output, String> {
        run_tool(name, args, self.env())
    }

    /// Adds `name@REALM` with a random key and writes its keytab (mode
    /// 0600): `dir/<name with / as _>.keytab`. Returns the full principal
    /// and the keytab's path.
    pub fn add_principal(&self, name: &str) -> Result<(String, PathBuf), String> {
        let principal = format!("{name}@{REALM}");
        let keytab = self.dir().join(format!("{}.keytab", name.replace('/', "_")));
        self.tool("kadmin.local", &["-r", REALM, "-q", &format!("addprinc -randkey {principal}")])?;
        self.tool("kadmin.local", &["-r", REALM, "-q", &format!("ktadd -k {} {principal}", keytab.display())])?;
        if !keytab.is_file() {
            return Err(format!("kadmin.local wrote no keytab at {}", keytab.display()));
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
        Ok((principal, keytab))
    }

    /// `kinit -kt keytab principal` into the test's ticket cache.
    pub fn kinit(&self, principal: &str, keytab: &Path) -> Result<(), String> {
        self.tool("kinit", &["-kt", &keytab.display().to_string(), principal]).map(|_| ())
    }

    /// `kdestroy`: the ticket cache is gone.
    pub fn kdestroy(&self) -> Result<(), String> {
        self.tool("kdestroy", &[]).map(|_| ())
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the Kerberos tool `name` with `args` in `env`; Err names the tool,
/// its arguments and what it printed when it is missing or fails.
fn run_tool<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(name: &str, args: &[&str], env: impl IntoIterator<Item = (K, V)>) -> Result<Output, String> {
    let out = Command::new(tool(name).ok_or(format!("{name} is not installed"))?)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{name} {} failed: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out)
}
