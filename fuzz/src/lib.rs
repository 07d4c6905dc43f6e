//! Shared by the fuzz targets: the config pipeline a watched config dir goes through (load from
//! memory, validate, compile, recompile as a reload) with the invariants checked after each
//! step, a small block-style YAML writer, and the structure-aware config generator.

pub mod gen;
pub mod yaml;
mod yaml_lines;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tollgate::config::{ConfigStore, LoadResult};
use tollgate::snapshot::{compile, ListenerKind, Options, Snapshot};

pub use yaml_lines::yaml_lines;

/// The repository's demo credentials (`certs/`): TLS servers naming them really load them.
pub fn certs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs")
}

pub fn options() -> Options {
    Options {
        certs_dir: certs_dir(),
        ..Options::default()
    }
}

/// A config dir's files as the loader sees them: `/fuzz/<name>`.
pub fn file(name: &str) -> PathBuf {
    Path::new("/fuzz").join(name)
}

/// Loads `files` as the whole content of a config dir, compiles them, then reloads (unchanged
/// files come from the store's cache) and compiles again reusing the first snapshot, as a live
/// reload does. Panics when an invariant does not hold.
pub fn load_and_compile(files: &[(PathBuf, &str)]) -> Snapshot {
    let opts = options();
    let mut store = ConfigStore::new("/fuzz", "default");
    let load = store.load_texts(files);
    check_load(&load, files);
    let first = compile(load, &opts, &Snapshot::empty(), 1);
    check_snapshot(&first, files);
    let again = store.load_texts(files);
    let second = compile(again, &opts, &first, 2);
    assert_eq!(
        first.listeners.keys().collect::<Vec<_>>(),
        second.listeners.keys().collect::<Vec<_>>(),
        "a reload of unchanged files changed the listeners"
    );
    assert_eq!(
        first.diagnostics, second.diagnostics,
        "a reload of unchanged files changed the diagnostics"
    );
    second
}

/// What the loader promises whatever the input.
pub fn check_load(load: &LoadResult, files: &[(PathBuf, &str)]) {
    let mut keys = HashSet::new();
    for r in &load.resources {
        assert!(keys.insert(&r.key), "duplicate resource {} in force", r.key);
    }
    assert_eq!(load.files.len(), files.len(), "one report per file");
    for d in &load.diagnostics {
        let text = files.iter().find(|(p, _)| *p == d.file).map(|(_, t)| *t);
        let Some(text) = text else {
            panic!("diagnostic names a file that was not loaded: {d}");
        };
        let lines = yaml_lines(text);
        assert!(
            d.line >= 1 && d.line <= lines + 1,
            "diagnostic line {} outside the file's {lines} lines: {d}",
            d.line
        );
        let _ = d.to_string();
    }
}

/// What a compiled snapshot promises: lower-cased domains, each exact domain reachable by its
/// own name, every listener's route tables consistent.
pub fn check_snapshot(snapshot: &Snapshot, files: &[(PathBuf, &str)]) {
    for d in &snapshot.diagnostics {
        let _ = d.to_string();
        assert!(
            files.iter().any(|(p, _)| *p == d.file) || d.file.as_os_str().is_empty(),
            "compile diagnostic names an unknown file: {d}"
        );
    }
    for listener in snapshot.listeners.values() {
        match &listener.kind {
            ListenerKind::Http(table) => check_table(table),
            ListenerKind::Tls(tls) => {
                for server in &tls.servers {
                    if let tollgate::snapshot::tls::TlsAction::Https { routes, .. } = &server.action
                    {
                        check_table(routes);
                    }
                }
            }
            ListenerKind::Tcp(_) => {}
        }
    }
}

fn check_table(table: &tollgate::route::RouteTable) {
    for vhost in &table.vhosts {
        let domain = vhost.domain.as_str();
        assert_eq!(
            domain,
            domain.to_ascii_lowercase(),
            "virtual host domain not lower-cased"
        );
        let plain_name = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && domain.parse::<std::net::IpAddr>().is_err();
        if plain_name {
            let found = table.find_vhost(domain).map(|v| v.domain.as_str());
            assert_eq!(
                found,
                Some(domain),
                "exact domain not found by its own name"
            );
        }
    }
}
