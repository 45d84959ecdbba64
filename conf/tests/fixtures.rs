//! Files shaped like real Hadoop configuration parse; malformed files of
//! every kind give an error naming the file and a line, never a panic.

use std::path::{Path, PathBuf};

use weir_conf::{parse_hadoop_file, ConfError, Property};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn by_name<'a>(props: &'a [Property], name: &str) -> &'a Property {
    props.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} not parsed"))
}

#[test]
fn hadoop_core_site_with_stylesheet_license_cdata_entities_and_include() {
    let props = parse_hadoop_file(&fixture("hadoop/core-site.xml")).unwrap();
    let names: Vec<_> = props.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "fs.defaultFS",
            "hadoop.tmp.dir",
            "hadoop.security.authentication",
            "hadoop.proxyuser.hive.hosts",
            "hadoop.http.filter.initializers",
            "io.file.buffer.size",
        ]
    );
    let tmp = by_name(&props, "hadoop.tmp.dir");
    assert_eq!((tmp.value.as_str(), tmp.is_final, tmp.line), ("/data/tmp/hadoop-${user.name}", true, 28));
    assert_eq!(by_name(&props, "hadoop.proxyuser.hive.hosts").value, "gw1.example.com,gw2.example.com");
    assert!(!by_name(&props, "hadoop.http.filter.initializers").is_final);
    let included = by_name(&props, "io.file.buffer.size");
    assert_eq!(included.file, fixture("hadoop/core-site-extra.xml"));
    assert_eq!((included.value.as_str(), included.line), ("131072", 3));
}

#[test]
fn hadoop_yarn_and_hdfs_site() {
    let props = parse_hadoop_file(&fixture("hadoop/yarn-site.xml")).unwrap();
    assert_eq!(props.len(), 8);
    assert_eq!(by_name(&props, "yarn.resourcemanager.address").value, "${yarn.resourcemanager.hostname}:8032");
    assert!(by_name(&props, "yarn.scheduler.capacity.root.queues").is_final);
    assert_eq!(by_name(&props, "yarn.admin.acl").value, "*");
    assert_eq!(by_name(&props, "yarn.nodemanager.admin-env").value, "MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX");
    assert_eq!(by_name(&props, "yarn.webapp.ui2.banner").value, "<b>Test</b> \"cluster\" 'A'");

    let props = parse_hadoop_file(&fixture("hadoop/hdfs-site.xml")).unwrap();
    assert_eq!(by_name(&props, "dfs.replication").value, "3");
    assert_eq!(by_name(&props, "dfs.hosts.exclude").value, "");
    assert_eq!(by_name(&props, "dfs.datanode.data.dir.perm").value, "");
}

#[test]
fn weir_site_fixture_loads_as_a_site_file() {
    let options = weir_conf::LoadOptions {
        conf_dir: Some(fixture("")),
        daemons: weir_conf::Daemon::ALL.to_vec(),
        overrides: vec!["weir.work.dir=/elsewhere".into()],
    };
    let env = std::sync::Arc::new(weir_conf::MapEnvironment::new("bob", "/home/bob").with_var("ZONE", "b"));
    let config = weir_conf::Config::load_with_environment(&options, env).unwrap();
    assert_eq!(config.get_path("agent.work.dir").unwrap(), PathBuf::from("/var/lib/weir/agent"));
    assert_eq!(config.get_list("broker.roles.weights").unwrap(), ["analytics=2", "batch=1"]);
    assert_eq!(config.get_str("agent.attributes").unwrap(), "rack:r1;zone:b");
    assert_eq!(config.warnings().len(), 1, "the -D of a final key: {:?}", config.warnings());
}

#[test]
fn malformed_files_name_the_file_and_line() {
    let expected: &[(&str, u64, &str)] = &[
        ("bad-attribute.xml", 2, "malformed XML: "),
        ("bad-comment.xml", 2, "malformed XML: ill-formed document: forbidden string `--` was found in a comment"),
        ("bad-final.xml", 2, "<final> must be true or false, not \"maybe\""),
        (
            "billion-laughs.xml",
            7,
            "DOCTYPE declarations are not allowed in configuration files (Weir never expands entities they define)",
        ),
        ("empty.xml", 1, "no <configuration> element (the file is empty or holds only comments)"),
        ("latin1.xml", 2, "invalid UTF-8 at byte offset 52; configuration files must be UTF-8"),
        ("mismatched.xml", 3, "malformed XML: ill-formed document: expected `</name>`, but `</value>` was found"),
        ("no-name.xml", 2, "<property> without a <name>"),
        ("property-not-closed.xml", 3, "malformed XML: ill-formed document: expected `</property>`, but `</configuration>` was found"),
        ("surrogate-charref.xml", 2, "bad character reference in <value>: "),
        ("text-outside.xml", 3, "text directly inside <configuration>; values belong in <property><value>"),
        ("truncated.xml", 3, "malformed XML: "),
        ("two-roots.xml", 4, "element <configuration> after </configuration>; a file has one root element"),
        ("unclosed.xml", 5, "end of file inside <property> opened on line 2"),
        (
            "undefined-entity.xml",
            2,
            "undefined entity &lol3; in <value> (only &lt; &gt; &amp; &apos; &quot; and character references like &#38; exist)",
        ),
        ("unterminated-cdata.xml", 2, "malformed XML: "),
        ("utf16-bom.xml", 1, "file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"),
    ];
    for (name, want_line, want_message) in expected {
        let path = fixture(&format!("malformed/{name}"));
        match parse_hadoop_file(&path) {
            Err(ConfError::Xml { file, line, message }) => {
                assert_eq!(file, path, "{name}");
                assert_eq!(line, *want_line, "{name}: {message}");
                if want_message.ends_with(": ") {
                    assert!(message.starts_with(want_message), "{name}: {message}");
                } else {
                    assert_eq!(&message, want_message, "{name}");
                }
            }
            other => panic!("{name}: expected an XML error, got {other:?}"),
        }
    }
}

#[test]
fn include_errors_name_the_including_file() {
    let path = fixture("malformed/missing-include.xml");
    let e = parse_hadoop_file(&path).unwrap_err().to_string();
    let missing = fixture("malformed/does-not-exist.xml");
    assert_eq!(
        e,
        format!(
            "{}:2: cannot include \"does-not-exist.xml\" ({}): No such file or directory (os error 2); add an <xi:fallback/> if the file is optional",
            path.display(),
            missing.display()
        )
    );
    let path = fixture("malformed/include-cycle.xml");
    let e = parse_hadoop_file(&path).unwrap_err().to_string();
    assert_eq!(e, format!("{p}:2: include cycle: {p} -> {p}", p = path.display()));
}

#[test]
fn every_malformed_fixture_is_covered() {
    let mut files: Vec<String> = std::fs::read_dir(fixture("malformed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for name in files {
        let result = parse_hadoop_file(&fixture(&format!("malformed/{name}")));
        assert!(matches!(result, Err(ConfError::Xml { line, .. }) if line >= 1), "{name}: {result:?}");
    }
}

#[test]
fn a_huge_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge-site.xml");
    let mut text = String::from("<configuration>\n");
    let line = "  <property><name>k</name><value>0123456789012345678901234567890123456789</value></property>\n";
    while text.len() <= weir_conf::MAX_FILE_BYTES + 1000 {
        text.push_str(line);
    }
    text.push_str("</configuration>\n");
    std::fs::write(&path, &text).unwrap();
    let e = parse_hadoop_file(&path).unwrap_err();
    let expected_line = 1 + text.as_bytes()[..weir_conf::MAX_FILE_BYTES].iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(
        e.to_string(),
        format!("{}:{expected_line}: file is larger than 16 MiB (the limit was reached on this line)", path.display())
    );
}
