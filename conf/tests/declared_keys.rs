//! Every key the code base reads with a literal name is declared in a
//! default file, and every declared key is documented. A getter called with
//! an undeclared key fails at run time (`ConfError::Undeclared`); this scan
//! finds such calls before anything runs them.

use std::path::{Path, PathBuf};

/// `Config`'s typed getters. Matching these names only (not any
/// `get_*("...")`) keeps unrelated calls such as `headers.get_all("x")`
/// out of the scan.
const GETTERS: &[&str] = &[
    "get_str",
    "get_bool",
    "get_u64",
    "get_u32",
    "get_u16",
    "get_i64",
    "get_f64",
    "get_duration",
    "get_size",
    "get_list",
    "get_host_port",
    "get_path",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && name != "fuzz" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// (line, key) of each `get_xxx("key")` call in `text`, where `get_xxx` is
/// one of [`GETTERS`] not preceded by an identifier character (so both
/// method calls and a closure named like a getter are found).
fn getter_calls(text: &str) -> Vec<(usize, String)> {
    let mut calls = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for getter in GETTERS {
            let pattern = format!("{getter}(");
            let mut from = 0;
            while let Some(pos) = line[from..].find(&pattern) {
                let start = from + pos;
                from = start + pattern.len();
                let before = line[..start].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let rest = line[from..].trim_start();
                if let Some(literal) = rest.strip_prefix('"') {
                    if let Some(end) = literal.find('"') {
                        calls.push((index + 1, literal[..end].to_owned()));
                    }
                }
            }
        }
    }
    calls
}

#[test]
fn the_scanner_finds_getter_calls() {
    let text = "let a = cfg.get_duration(\"broker.offer.timeout\")?;\nlet g = |k| get_str( \"agent.hostname\");\nmap.get_all(\"x\"); forget_str(\"y\"); cfg.get_str(key);";
    assert_eq!(
        getter_calls(text),
        [(1, "broker.offer.timeout".to_owned()), (2, "agent.hostname".to_owned())]
    );
}

#[test]
fn every_literal_key_read_in_the_workspace_is_declared() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap_or(root);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 5, "found only {} .rs files under {}", files.len(), root.display());
    let mut undeclared = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (line, key) in getter_calls(&text) {
            if !weir_conf::is_declared(&key) {
                undeclared.push(format!("{}:{line}: {key}", file.display()));
            }
        }
    }
    assert!(
        undeclared.is_empty(),
        "keys read in code but declared in no conf/defaults/*-default.xml:\n{}",
        undeclared.join("\n")
    );
}

#[test]
fn every_declared_key_has_a_description_and_its_defaults_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("defaults");
    for name in ["weir-default.xml", "broker-default.xml", "agent-default.xml", "yarn-shim-default.xml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let properties = text.split("<property>").skip(1).count();
        let descriptions = text.matches("<description>").count();
        assert_eq!(properties, descriptions, "{name}: every property needs a <description>");
        for p in weir_conf::parse_hadoop_file(&dir.join(name)).unwrap() {
            assert!(
                p.name.starts_with(name.trim_end_matches("-default.xml")),
                "{name}: {} is outside the file's namespace",
                p.name
            );
        }
    }
    assert_eq!(weir_conf::declared_keys().len(), 136);
}
