//! The fuzz targets' inputs as ordinary tests: every crash input kept under
//! `fuzz/regressions/<target>/` and the committed `config_yaml` corpus go through the same entry
//! point as the `config_yaml` fuzz target (one YAML file loaded from memory, validated, compiled,
//! then reloaded on top of its own snapshot), with the same invariants, in a debug build.

use std::path::{Path, PathBuf};

use tollgate::config::ConfigStore;
use tollgate::snapshot::{compile, Options, Snapshot};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of `dir`, sorted (none when it does not exist).
fn inputs(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Lines as libyaml counts them (CR, LF, CRLF, NEL, LS, PS), plus one for a last open line.
fn yaml_lines(text: &str) -> u32 {
    let mut count = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                count += 1;
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => count += 1,
            _ => {}
        }
    }
    count + 1
}

/// The `config_yaml` fuzz target's body: returns the compiled reload.
fn load_and_compile(text: &str) -> Snapshot {
    let opts = Options {
        certs_dir: repo().join("certs"),
        ..Options::default()
    };
    let file = PathBuf::from("/fuzz/config.yaml");
    let files = [(file.clone(), text)];
    let mut store = ConfigStore::new("/fuzz", "default");
    let load = store.load_texts(&files);
    let mut keys = std::collections::HashSet::new();
    for r in &load.resources {
        assert!(
            keys.insert(r.key.clone()),
            "duplicate resource {} in force",
            r.key
        );
    }
    for d in &load.diagnostics {
        assert_eq!(d.file, file, "{d}");
        assert!(
            d.line >= 1 && d.line <= yaml_lines(text) + 1,
            "line out of the file: {d}"
        );
    }
    let first = compile(load, &opts, &Snapshot::empty(), 1);
    let second = compile(store.load_texts(&files), &opts, &first, 2);
    assert_eq!(
        first.diagnostics, second.diagnostics,
        "reload changed the diagnostics"
    );
    second
}

#[test]
fn config_yaml_crash_inputs_stay_fixed() {
    let files = inputs("fuzz/regressions/config_yaml");
    for path in &files {
        let bytes = std::fs::read(path).expect("read regression input");
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let result = std::panic::catch_unwind(|| load_and_compile(text));
        assert!(result.is_ok(), "{} panics again", path.display());
    }
}

#[test]
fn config_yaml_corpus_loads_and_compiles() {
    let files = inputs("fuzz/corpus/config_yaml");
    assert!(
        files.len() >= 40,
        "the committed corpus is missing: {} files",
        files.len()
    );
    let mut listeners = 0;
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus input");
        if let Ok(text) = std::str::from_utf8(&bytes) {
            listeners += load_and_compile(text).listeners.len();
        }
    }
    // The seeds include the demo's Gateways: a pipeline that compiled nothing is broken.
    assert!(listeners > 0, "no corpus input compiled to a listener");
}
