//! The YARN side's map, checked: `rm` and `nm` build on `api` and `ipc`
//! and never on each other, and `api` and `ipc` on neither (so the
//! security boundary and the shared records stay free of either side's
//! logic); `ipc`'s one Weir dependency is `weir-net` (listener caps), a
//! leaf that builds on no Weir crate. Read from the manifests, so a new
//! dependency that breaks the map fails here, not in review.

use std::path::Path;

fn dependencies(krate: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Only [dependencies] and [build-dependencies]: tests may use anything.
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]" || line == "[build-dependencies]";
            continue;
        }
        if in_deps {
            if let Some(name) = line.split(['=', '.', ' ']).next().filter(|n| n.starts_with("weir-")) {
                out.push(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn rm_and_nm_never_import_each_other() {
    let rm = dependencies("rm");
    let nm = dependencies("nm");
    assert!(!rm.contains(&"weir-yarn-nm".to_owned()), "rm depends on nm: {rm:?}");
    assert!(!nm.contains(&"weir-yarn-rm".to_owned()), "nm depends on rm: {nm:?}");
    for side in [&rm, &nm] {
        assert!(side.contains(&"weir-yarn-api".to_owned()) && side.contains(&"weir-yarn-ipc".to_owned()), "{side:?}");
    }
}

#[test]
fn api_and_ipc_depend_on_neither_side() {
    let api = dependencies("api");
    let ipc = dependencies("ipc");
    assert_eq!(api, vec!["weir-yarn-ipc".to_owned()]);
    assert_eq!(ipc, vec!["weir-net".to_owned()], "ipc depends on {ipc:?}");
    let net = dependencies("../net");
    assert!(net.is_empty(), "weir-net must stay a leaf; it depends on {net:?}");
}
