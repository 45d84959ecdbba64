//! Arbitrary bytes as a configuration file: the loader must return
//! properties or an error naming the file and a line, never panic, hang or
//! allocate without bound. The bytes after the first NUL (if any) are served
//! as the content of every included file, so includes, fallbacks, cycles
//! and depth limits get explored too; every parsed value is then expanded.

#![no_main]

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weir_conf::expand::{expand, MapEnvironment};
use weir_conf::{parse_hadoop_bytes, ConfError, IncludeReader};

struct Included<'a>(&'a [u8]);

impl IncludeReader for Included<'_> {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        if path.to_string_lossy().contains("missing") {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        Ok(self.0.to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    let (main, included) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    match parse_hadoop_bytes(main, Path::new("/fuzz/site.xml"), &Included(included)) {
        Ok(props) => {
            let values: HashMap<&str, &str> = props.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
            let lookup = |k: &str| values.get(k).map(|v| v.to_string());
            let env = MapEnvironment::new("fuzz", "/home/fuzz").with_var("HOME", "/home/fuzz");
            for p in &props {
                assert!(!p.name.trim().is_empty());
                assert!(p.line >= 1);
                let _ = expand(&p.name, &p.value, &lookup, &env);
            }
        }
        Err(ConfError::Xml { line, .. }) => assert!(line >= 1),
        Err(other) => panic!("unexpected error kind: {other}"),
    }
});
