//! What a user relies on when configuring a daemon: which source wins,
//! `final`, expansion, typed values and the exact error messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weir_conf::cli::{conf_dump, conf_get, DumpFormat};
use weir_conf::{Config, ConfError, Daemon, LoadOptions, MapEnvironment, Source};

fn env() -> Arc<MapEnvironment> {
    Arc::new(MapEnvironment::new("alice", "/home/alice").with_var("ZONE", "eu"))
}

fn site(props: &[(&str, &str)]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<configuration>\n");
    for (name, value) in props {
        out.push_str(&format!("  <property>\n    <name>{name}</name>\n    <value>{value}</value>\n  </property>\n"));
    }
    out.push_str("</configuration>\n");
    out
}

fn final_site(name: &str, value: &str) -> String {
    format!(
        "<configuration>\n  <property>\n    <name>{name}</name>\n    <value>{value}</value>\n    <final>true</final>\n  </property>\n</configuration>\n"
    )
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn load(&self, daemons: &[Daemon], overrides: &[&str]) -> Result<Config, ConfError> {
        Config::load_with_environment(
            &LoadOptions {
                conf_dir: Some(self.0.path().to_owned()),
                daemons: daemons.to_vec(),
                overrides: overrides.iter().map(|s| s.to_string()).collect(),
            },
            env(),
        )
    }
}

fn source_of(config: &Config, key: &str) -> Source {
    config.entries().into_iter().find(|e| e.key == key).unwrap().source
}

#[test]
fn a_fresh_machine_runs_on_embedded_defaults() {
    let options = LoadOptions { conf_dir: None, daemons: Daemon::ALL.to_vec(), overrides: vec![] };
    let config = Config::load_with_environment(&options, env()).unwrap();
    assert_eq!(config.get_host_port("broker.listen").unwrap(), ("127.0.0.1".to_owned(), 5050));
    assert_eq!(config.get_path("agent.work.dir").unwrap(), PathBuf::from("/tmp/weir-alice/agent"));
    assert_eq!(config.get_duration("broker.allocation.interval").unwrap(), Duration::from_millis(100));
    assert_eq!(config.get_size("broker.max.message.size").unwrap(), 16 << 20);
    assert_eq!(config.get_list("broker.roles.weights").unwrap(), Vec::<String>::new());
    assert_eq!(config.get_list("yarn-shim.queues").unwrap(), ["default"]);
    assert_eq!(config.get("agent.hostname").unwrap(), None);
    assert!(config.warnings().is_empty());
    assert_eq!(source_of(&config, "broker.listen").to_string(), "default");

    // And with the real environment, as `weir` runs it: user.name comes
    // from $USER or the password database.
    let real = Config::load(&LoadOptions { conf_dir: None, daemons: Daemon::ALL.to_vec(), overrides: vec![] }).unwrap();
    let work_dir = real.get_path("weir.work.dir").unwrap();
    assert!(work_dir.to_str().unwrap().starts_with("/tmp/weir-"), "{work_dir:?}");
}

#[test]
fn later_sources_win_site_over_default_daemon_site_over_weir_site_and_d_over_all() {
    let dir = Dir::new(&[
        ("weir-site.xml", &site(&[("broker.offer.timeout", "30s"), ("broker.listen", "0.0.0.0:6000"), ("weir.work.dir", "/srv/weir")])),
        ("broker-site.xml", &site(&[("broker.listen", "0.0.0.0:7000"), ("broker.allocation.interval", "1s")])),
    ]);
    let config = dir.load(&[Daemon::Broker], &["broker.allocation.interval=2s"]).unwrap();
    assert_eq!(config.get_duration("broker.offer.timeout").unwrap(), Duration::from_secs(30));
    assert_eq!(config.get_str("broker.listen").unwrap(), "0.0.0.0:7000");
    assert_eq!(config.get_duration("broker.allocation.interval").unwrap(), Duration::from_secs(2));
    // Expansion happens at read time, so the default of broker.work.dir
    // follows weir.work.dir from the site file.
    assert_eq!(config.get_path("broker.work.dir").unwrap(), PathBuf::from("/srv/weir/broker"));
    assert_eq!(source_of(&config, "broker.listen").to_string(), format!("{}:5", dir.path("broker-site.xml").display()));
    assert_eq!(source_of(&config, "broker.allocation.interval"), Source::CommandLine);
    assert_eq!(source_of(&config, "broker.work.dir").to_string(), "default");
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn conf_dir_comes_from_the_flag_else_weir_conf_dir() {
    let dir = Dir::new(&[("agent-site.xml", &site(&[("agent.hostname", "node7")]))]);
    let from_env = Arc::new(MapEnvironment::new("alice", "/home/alice").with_var("WEIR_CONF_DIR", dir.0.path().to_str().unwrap()));
    let options = LoadOptions { conf_dir: None, daemons: vec![Daemon::Agent], overrides: vec![] };
    let config = Config::load_with_environment(&options, from_env.clone()).unwrap();
    assert_eq!(config.get_str("agent.hostname").unwrap(), "node7");

    let other = Dir::new(&[]);
    let options = LoadOptions { conf_dir: Some(other.0.path().to_owned()), ..options };
    let config = Config::load_with_environment(&options, from_env).unwrap();
    assert_eq!(config.get("agent.hostname").unwrap(), None);

    let missing = other.path("nope");
    let options = LoadOptions { conf_dir: Some(missing.clone()), daemons: vec![], overrides: vec![] };
    assert_eq!(
        Config::load_with_environment(&options, env()).unwrap_err().to_string(),
        format!("configuration directory {} (from --conf-dir): No such file or directory (os error 2)", missing.display())
    );
}

#[test]
fn only_the_requested_daemons_files_are_read() {
    let dir = Dir::new(&[
        ("agent-site.xml", &site(&[("agent.hostname", "node7")])),
        ("broker-site.xml", "this is not XML"),
    ]);
    let config = dir.load(&[Daemon::Agent], &[]).unwrap();
    assert_eq!(config.get_str("agent.hostname").unwrap(), "node7");
    // The broker's defaults were not loaded: declared, but unset.
    assert_eq!(config.get_str("broker.listen").unwrap_err().to_string(), "broker.listen is not set");
}

#[test]
fn a_final_key_cannot_be_overridden_by_a_later_file_or_by_d() {
    let dir = Dir::new(&[
        ("weir-site.xml", &final_site("broker.listen", "10.0.0.1:5050")),
        ("broker-site.xml", &site(&[("broker.listen", "0.0.0.0:1")])),
    ]);
    let weir_site = dir.path("weir-site.xml").display().to_string();
    let broker_site = dir.path("broker-site.xml").display().to_string();
    let mut config = dir.load(&[Daemon::Broker], &["broker.listen=0.0.0.0:2", "broker.listen=10.0.0.1:5050"]).unwrap();
    assert_eq!(config.get_str("broker.listen").unwrap(), "10.0.0.1:5050");
    assert_eq!(
        config.warnings(),
        [
            format!("{broker_site}:5: attempt to override final parameter broker.listen (final at {weir_site}:4); ignoring \"0.0.0.0:1\""),
            format!("-D: attempt to override final parameter broker.listen (final at {weir_site}:4); ignoring \"0.0.0.0:2\""),
        ]
    );
    // Config::set is -D from code (dedicated flags such as --listen).
    config.set("broker.listen", "0.0.0.0:3").unwrap();
    assert_eq!(config.get_str("broker.listen").unwrap(), "10.0.0.1:5050");
    assert_eq!(config.warnings().len(), 3);
    let entry = config.entries().into_iter().find(|e| e.key == "broker.listen").unwrap();
    assert!(entry.is_final);
}

#[test]
fn a_duplicate_in_one_file_keeps_the_last_and_warns() {
    let dir = Dir::new(&[("weir-site.xml", &site(&[("weir.log.filter", "debug"), ("weir.log.filter", "trace")]))]);
    let config = dir.load(&[], &[]).unwrap();
    assert_eq!(config.get_str("weir.log.filter").unwrap(), "trace");
    assert_eq!(
        config.warnings(),
        [format!("{}:9: weir.log.filter is also set on line 5 of this file; the later value wins", dir.path("weir-site.xml").display())]
    );
}

#[test]
fn unknown_keys_warn_with_the_closest_known_key() {
    let dir = Dir::new(&[("broker-site.xml", &site(&[("broker.ofer.timeout", "1s"), ("my.base", "/data"), ("broker.work.dir", "${my.base}/b")]))]);
    let config = dir.load(&[Daemon::Broker], &["agent.hostnme=x"]).unwrap();
    let file = dir.path("broker-site.xml").display().to_string();
    assert_eq!(
        config.warnings(),
        [
            format!("{file}:5: unknown key broker.ofer.timeout (no default file declares it); did you mean broker.offer.timeout?"),
            format!("{file}:9: unknown key my.base (no default file declares it)"),
            "-D: unknown key agent.hostnme (no default file declares it); did you mean agent.hostname?".to_owned(),
        ]
    );
    // Undeclared keys still work as variables.
    assert_eq!(config.get_path("broker.work.dir").unwrap(), PathBuf::from("/data/b"));
}

#[test]
fn getters_refuse_undeclared_keys() {
    let config = Config::defaults(&Daemon::ALL);
    // Keys built at run time so the workspace scan (declared_keys.rs) does
    // not see these deliberate mistakes.
    let typo = ["broker", "listn"].join(".");
    assert_eq!(
        config.get_str(&typo).unwrap_err().to_string(),
        "broker.listn is not declared in any default file (conf/defaults/*-default.xml); did you mean broker.listen?"
    );
    let nothing_close = ["zzz", "qqq"].join(".");
    assert!(matches!(config.get_duration(&nothing_close), Err(ConfError::Undeclared { suggestion: None, .. })));
    assert!(matches!(config.get(&nothing_close), Err(ConfError::Undeclared { .. })));
    let mut config = config;
    assert!(matches!(config.set(&nothing_close, "1"), Err(ConfError::Undeclared { .. })));
}

#[test]
fn expansion_errors_name_the_key_the_chain_and_the_missing_variable() {
    let dir = Dir::new(&[("weir-site.xml", &site(&[("weir.work.dir", "${broker.work.dir}/x"), ("weir.log.filter", "${env.NO_SUCH_VAR}")]))]);
    let config = dir.load(&[Daemon::Broker], &["agent.work.dir=${nope.key}"]).unwrap();
    let file = dir.path("weir-site.xml").display().to_string();
    assert_eq!(
        config.get_path("broker.work.dir").unwrap_err().to_string(),
        "cannot expand broker.work.dir (from default): reference cycle broker.work.dir -> weir.work.dir -> broker.work.dir"
    );
    assert_eq!(
        config.get_str("weir.log.filter").unwrap_err().to_string(),
        format!("cannot expand weir.log.filter (from {file}:9): ${{env.NO_SUCH_VAR}}: environment variable NO_SUCH_VAR is not set")
    );
    assert_eq!(
        config.get("agent.work.dir").unwrap_err().to_string(),
        "cannot expand agent.work.dir (from -D): ${nope.key} refers to nope.key, which is not set"
    );
    let entry = config.entries().into_iter().find(|e| e.key == "weir.log.filter").unwrap();
    assert_eq!(entry.value, Err("${env.NO_SUCH_VAR}: environment variable NO_SUCH_VAR is not set".to_owned()));
    assert_eq!(entry.raw, "${env.NO_SUCH_VAR}");
}

#[test]
fn env_and_user_references_use_the_injected_environment() {
    let mut config = Config::defaults(&[Daemon::Agent]).with_environment(env());
    config.set("agent.hostname", "${env.ZONE}-${user.name}-${env.RACK:-r0}").unwrap();
    config.set("agent.attributes", "home:${user.home}").unwrap();
    assert_eq!(config.get_str("agent.hostname").unwrap(), "eu-alice-r0");
    assert_eq!(config.get_str("agent.attributes").unwrap(), "home:/home/alice");
}

/// Sets `key` to `value` and returns what `get` does with it.
fn with<T>(key: &str, value: &str, get: impl Fn(&Config, &str) -> Result<T, ConfError>) -> Result<T, String> {
    let mut config = Config::defaults(&Daemon::ALL).with_environment(env());
    config.set(key, value).unwrap();
    get(&config, key).map_err(|e| e.to_string())
}

#[test]
fn typed_getters_accept_good_values() {
    assert_eq!(with("broker.offer.timeout", " 2d ", Config::get_duration), Ok(Duration::from_secs(172_800)));
    assert_eq!(with("broker.offer.timeout", "500ms", Config::get_duration), Ok(Duration::from_millis(500)));
    assert_eq!(with("broker.offer.timeout", "5m", Config::get_duration), Ok(Duration::from_secs(300)));
    assert_eq!(with("broker.offer.timeout", "1h", Config::get_duration), Ok(Duration::from_secs(3600)));
    assert_eq!(with("broker.offer.timeout", "750", Config::get_duration), Ok(Duration::from_millis(750)));
    assert_eq!(with("broker.max.message.size", "4G", Config::get_size), Ok(4 << 30));
    assert_eq!(with("broker.max.message.size", "1k", Config::get_size), Ok(1024));
    assert_eq!(with("broker.max.message.size", "1t", Config::get_size), Ok(1 << 40));
    assert_eq!(with("broker.max.message.size", "100", Config::get_size), Ok(100));
    assert_eq!(with("broker.max.message.size", "100", Config::get_u64), Ok(100));
    assert_eq!(with("broker.max.message.size", "100", Config::get_u32), Ok(100));
    assert_eq!(with("broker.max.message.size", "-100", Config::get_i64), Ok(-100));
    assert_eq!(with("broker.max.message.size", "8080", Config::get_u16), Ok(8080));
    assert_eq!(with("broker.max.message.size", "0.25", Config::get_f64), Ok(0.25));
    assert_eq!(with("weir.log.filter", "True", Config::get_bool), Ok(true));
    assert_eq!(with("weir.log.filter", "false", Config::get_bool), Ok(false));
    assert_eq!(with("yarn-shim.queues", " a, b,,c ", Config::get_list), Ok(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(with("yarn-shim.queues", "", Config::get_list), Ok(vec![]));
    assert_eq!(with("broker.listen", "[::1]:80", Config::get_host_port), Ok(("::1".into(), 80)));
    assert_eq!(with("broker.listen", "broker.example.com:5050", Config::get_host_port), Ok(("broker.example.com".into(), 5050)));
    assert_eq!(with("agent.work.dir", "${user.home}/w", Config::get_path), Ok(PathBuf::from("/home/alice/w")));
    assert_eq!(with("agent.hostname", "  node1 ", Config::get_str), Ok("node1".into()));
    assert_eq!(with("agent.hostname", "  node1 ", Config::get), Ok(Some("  node1 ".into())));
}

#[test]
fn typed_getters_name_key_value_source_and_expectation() {
    let cases: Vec<(Result<(), String>, &str)> = vec![
        (
            with("broker.offer.timeout", "ten", Config::get_duration).map(drop),
            "broker.offer.timeout = \"ten\" (from -D): expected a duration: a whole number with a unit ns, us, ms, s, m, h or d (500ms, 10s, 5m, 1h, 2d); a bare number is milliseconds",
        ),
        (
            with("broker.max.message.size", "16mb", Config::get_size).map(drop),
            "broker.max.message.size = \"16mb\" (from -D): expected a size: a whole number of bytes, or with a binary unit k, m, g, t or p (1k = 1024; 512m, 4g)",
        ),
        (with("weir.log.filter", "yes", Config::get_bool).map(drop), "weir.log.filter = \"yes\" (from -D): expected true or false"),
        (
            with("broker.max.message.size", "70000", Config::get_u16).map(drop),
            "broker.max.message.size = \"70000\" (from -D): expected an integer from 0 to 65535",
        ),
        (
            with("broker.max.message.size", "-1", Config::get_u64).map(drop),
            "broker.max.message.size = \"-1\" (from -D): expected an integer from 0 to 18446744073709551615",
        ),
        (
            with("broker.max.message.size", "5000000000", Config::get_u32).map(drop),
            "broker.max.message.size = \"5000000000\" (from -D): expected an integer from 0 to 4294967295",
        ),
        (
            with("broker.max.message.size", "1.5", Config::get_i64).map(drop),
            "broker.max.message.size = \"1.5\" (from -D): expected an integer from -9223372036854775808 to 9223372036854775807",
        ),
        (with("broker.max.message.size", "NaN", Config::get_f64).map(drop), "broker.max.message.size = \"NaN\" (from -D): expected a finite number"),
        (
            with("broker.listen", "localhost", Config::get_host_port).map(drop),
            "broker.listen = \"localhost\" (from -D): expected host:port with a port from 0 to 65535 (an IPv6 address in brackets: [::1]:80)",
        ),
        (with("agent.work.dir", "a\u{0}b", Config::get_path).map(drop), "agent.work.dir = \"a\\0b\" (from -D): expected a path without NUL characters"),
        (with("agent.hostname", "   ", Config::get_str).map(drop), "agent.hostname is not set"),
        (with("agent.hostname", "", Config::get_duration).map(drop), "agent.hostname is not set"),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want.to_owned()));
    }
}

#[test]
fn a_bad_value_in_a_file_names_the_file_and_line() {
    let dir = Dir::new(&[("broker-site.xml", &site(&[("broker.listen", "127.0.0.1:5050"), ("broker.offer.timeout", "1 minute")]))]);
    let config = dir.load(&[Daemon::Broker], &[]).unwrap();
    assert_eq!(
        config.get_duration("broker.offer.timeout").unwrap_err().to_string(),
        format!(
            "broker.offer.timeout = \"1 minute\" (from {}:9): expected a duration: a whole number with a unit ns, us, ms, s, m, h or d (500ms, 10s, 5m, 1h, 2d); a bare number is milliseconds",
            dir.path("broker-site.xml").display()
        )
    );
    let config = Config::defaults(&[Daemon::Broker]).with_environment(env());
    let mut config = config;
    config.set("weir.log.filter", "${broker.listen}").unwrap();
    assert_eq!(config.get_bool("weir.log.filter").unwrap_err().to_string(), "weir.log.filter = \"127.0.0.1:5050\" (from -D): expected true or false");
}

#[test]
fn bad_d_arguments_are_errors() {
    let dir = Dir::new(&[]);
    assert_eq!(dir.load(&[], &["novalue"]).unwrap_err().to_string(), "-D \"novalue\": expected KEY=VALUE with a non-empty KEY");
    assert_eq!(dir.load(&[], &[" =x"]).unwrap_err().to_string(), "-D \" =x\": expected KEY=VALUE with a non-empty KEY");
    // The value may contain '=' and may be empty.
    let config = dir.load(&[Daemon::Agent], &["agent.attributes=a=b", "agent.hostname="]).unwrap();
    assert_eq!(config.get_str("agent.attributes").unwrap(), "a=b");
    assert_eq!(config.get("agent.hostname").unwrap(), None);
    let long = format!("agent.hostname={}", "x".repeat(weir_conf::MAX_VALUE_BYTES + 1));
    assert_eq!(
        dir.load(&[Daemon::Agent], &[&long]).unwrap_err().to_string(),
        "agent.hostname from -D: value is 1048577 bytes long, more than the limit of 1048576"
    );
}

#[test]
fn a_broken_site_file_stops_loading_with_file_and_line() {
    let dir = Dir::new(&[("weir-site.xml", "<configuration>\n<property>\n<name>a</name>\n</configuration>\n")]);
    assert_eq!(
        dir.load(&[], &[]).unwrap_err().to_string(),
        format!(
            "{}:4: malformed XML: ill-formed document: expected `</property>`, but `</configuration>` was found",
            dir.path("weir-site.xml").display()
        )
    );
}

#[test]
fn site_files_include_relative_to_themselves() {
    let dir = Dir::new(&[
        ("weir-site.xml", "<configuration xmlns:xi=\"http://www.w3.org/2001/XInclude\">\n<xi:include href=\"shared/common.xml\"/>\n<xi:include href=\"optional.xml\"><xi:fallback/></xi:include>\n</configuration>"),
    ]);
    std::fs::create_dir(dir.path("shared")).unwrap();
    std::fs::write(dir.path("shared/common.xml"), site(&[("weir.log.filter", "debug")])).unwrap();
    let config = dir.load(&[], &[]).unwrap();
    assert_eq!(config.get_str("weir.log.filter").unwrap(), "debug");
    assert_eq!(source_of(&config, "weir.log.filter").to_string(), format!("{}:5", dir.path("shared/common.xml").display()));

    let dir = Dir::new(&[(
        "weir-site.xml",
        "<configuration xmlns:xi=\"http://www.w3.org/2001/XInclude\">\n<xi:include href=\"missing.xml\"/>\n</configuration>",
    )]);
    assert_eq!(
        dir.load(&[], &[]).unwrap_err().to_string(),
        format!(
            "{}:2: cannot include \"missing.xml\" ({}): No such file or directory (os error 2); add an <xi:fallback/> if the file is optional",
            dir.path("weir-site.xml").display(),
            dir.path("missing.xml").display()
        )
    );
}

#[test]
fn dump_table_is_aligned_and_sorted() {
    let dir = Dir::new(&[("weir-site.xml", &final_site("weir.log.filter", "debug"))]);
    let config = dir.load(&[], &["weir.work.dir=/w"]).unwrap();
    let file = dir.path("weir-site.xml").display().to_string();
    assert_eq!(
        config.dump_table(),
        format!(
            "KEY              VALUE  SOURCE\nweir.log.filter  debug  {file}:4 (final)\nweir.work.dir    /w     -D\n"
        )
    );
    assert_eq!(conf_dump(&config, DumpFormat::Table), config.dump_table());
}

#[test]
fn dump_xml_is_a_hadoop_file_that_loads_back_to_the_same_values() {
    let mut config = Config::defaults(&Daemon::ALL).with_environment(env());
    config.set("agent.attributes", "a<b & c>\"d\" 'e'\ttab\nnewline\r\u{1}").unwrap();
    config.set("agent.hostname", "  spaced  ").unwrap();
    let xml = config.dump_xml();
    assert!(xml.contains(
        "  <property>\n    <name>broker.listen</name>\n    <value>127.0.0.1:5050</value>\n    <source>default</source>\n  </property>\n"
    ));
    assert!(xml.contains("<value>a&lt;b &amp; c&gt;&quot;d&quot; &apos;e&apos;\ttab\nnewline&#13;&#1;</value>"));

    let dir = Dir::new(&[("weir-site.xml", &xml)]);
    let reloaded = dir.load(&Daemon::ALL, &[]).unwrap();
    assert!(reloaded.warnings().is_empty(), "{:?}", reloaded.warnings());
    let values = |c: &Config| c.entries().into_iter().map(|e| (e.key, e.value)).collect::<Vec<_>>();
    assert_eq!(values(&reloaded), values(&config));
    assert_eq!(conf_dump(&config, DumpFormat::Xml), xml);
}

#[test]
fn conf_get_prints_values_and_names_unset_keys() {
    let dir = Dir::new(&[("weir-site.xml", &site(&[("my.var", "v")]))]);
    let config = dir.load(&Daemon::ALL, &[]).unwrap();
    assert_eq!(conf_get(&config, "agent.work.dir").unwrap(), "/tmp/weir-alice/agent");
    assert_eq!(conf_get(&config, "my.var").unwrap(), "v");
    assert_eq!(conf_get(&config, "agent.hostname").unwrap_err().to_string(), "agent.hostname is not set");
    assert_eq!(
        conf_get(&config, "agent.hostnam").unwrap_err().to_string(),
        "agent.hostnam is not set (no default file declares it; did you mean agent.hostname?)"
    );
}

#[test]
fn hadoop_parse_function_reads_any_file_without_unknown_key_checks() {
    let dir = Dir::new(&[("yarn-site.xml", &site(&[("yarn.resourcemanager.address", "rm:8032")]))]);
    let props = weir_conf::parse_hadoop_file(&dir.path("yarn-site.xml")).unwrap();
    assert_eq!(props.len(), 1);
    assert_eq!((props[0].name.as_str(), props[0].value.as_str(), props[0].is_final, props[0].line), ("yarn.resourcemanager.address", "rm:8032", false, 5));
    let e = weir_conf::parse_hadoop_file(Path::new("/nonexistent/yarn-site.xml")).unwrap_err();
    assert_eq!(e.to_string(), "cannot read /nonexistent/yarn-site.xml: No such file or directory (os error 2)");
}

/// The example of docs/configuration.md (copied into the fixture) does what
/// the document says.
#[test]
fn the_documented_example_behaves_as_documented() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doc-example");
    let load = |overrides: &[&str], env: MapEnvironment| {
        let options = LoadOptions {
            conf_dir: Some(dir.clone()),
            daemons: Daemon::ALL.to_vec(),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
        };
        Config::load_with_environment(&options, Arc::new(env)).unwrap()
    };
    let plain = || MapEnvironment::new("alice", "/home/alice");
    let config = load(&[], plain());
    assert_eq!(conf_get(&config, "broker.work.dir").unwrap(), "/var/lib/weir/broker");
    assert_eq!(conf_get(&config, "broker.offer.timeout").unwrap(), "30s");
    assert_eq!(conf_get(&config, "agent.attributes").unwrap(), "rack:r1;zone:a");
    assert_eq!(conf_get(&config, "agent.hostname").unwrap_err().to_string(), "agent.hostname is not set");
    assert_eq!(config.get_list("broker.roles.weights").unwrap(), ["analytics=2", "batch=1"]);
    let config = load(&[], plain().with_var("RACK", "r7"));
    assert_eq!(conf_get(&config, "agent.attributes").unwrap(), "rack:r7;zone:a");
    let config = load(&["broker.offer.timeout=2m"], plain());
    assert_eq!(conf_get(&config, "broker.offer.timeout").unwrap(), "2m");
    let config = load(&["weir.work.dir=/tmp/x"], plain());
    assert_eq!(conf_get(&config, "agent.work.dir").unwrap(), "/var/lib/weir/agent");
    let file = dir.join("weir-site.xml").display().to_string();
    assert_eq!(
        config.warnings(),
        [format!("-D: attempt to override final parameter weir.work.dir (final at {file}:7); ignoring \"/tmp/x\"")]
    );
    let config = load(&["broker.offer.timeout=soon"], plain());
    assert_eq!(
        config.get_duration("broker.offer.timeout").unwrap_err().to_string(),
        "broker.offer.timeout = \"soon\" (from -D): expected a duration: a whole number with a unit ns, us, ms, s, m, h or d (500ms, 10s, 5m, 1h, 2d); a bare number is milliseconds"
    );
    let table = load(&[], plain()).dump_table().replace(&dir.display().to_string(), "/etc/weir");
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md")).unwrap();
    assert!(doc.contains(&table), "docs/configuration.md should show this dump:\n{table}");
    let fixture = std::fs::read_to_string(dir.join("weir-site.xml")).unwrap();
    assert!(doc.contains(&format!("```xml\n{fixture}```")), "the fixture differs from the example in docs/configuration.md");
}
