//! The fuzz targets' inputs as ordinary tests: every failing input kept under
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

#[path = "../fuzz/src/yaml_lines.rs"]
mod yaml_lines;
use yaml_lines::yaml_lines;

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
fn config_yaml_regression_inputs_pass() {
    let files = inputs("fuzz/regressions/config_yaml");
    assert!(!files.is_empty(), "fuzz/regressions/config_yaml is missing");
    for path in &files {
        let bytes = std::fs::read(path).expect("read regression input");
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let result = std::panic::catch_unwind(|| load_and_compile(text));
        assert!(result.is_ok(), "{} fails again", path.display());
    }
}

/// The one failure of the 10-minute runs, in the harness: YAML (libyaml) breaks lines at a lone
/// CR too, so a syntax error's line may lie past what `str::lines` counts. The diagnostic is
/// right; the line check counts lines as YAML does.
#[test]
fn diagnostics_count_lines_as_yaml_does() {
    let path = repo().join("fuzz/regressions/config_yaml/lone-cr-line-numbers.yaml");
    let text = std::fs::read_to_string(path).expect("read the lone-CR input");
    let snapshot = load_and_compile(&text);
    let syntax = snapshot
        .diagnostics
        .iter()
        .find(|d| d.message.starts_with("YAML syntax error"))
        .expect("the lone-CR input is a YAML syntax error");
    let lf_lines = text.lines().count() as u32;
    assert!(
        syntax.line > lf_lines && syntax.line <= yaml_lines(&text),
        "line {} should be past the {lf_lines} LF lines and within the {} YAML lines",
        syntax.line,
        yaml_lines(&text)
    );
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
