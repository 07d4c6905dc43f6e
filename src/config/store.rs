//! The loaded configuration and its last good state, file by file.
//!
//! Granularity follows Istio's admission: a resource that fails validation is rejected alone and
//! its last good version (from the same file) stays in force while the rest of its file applies;
//! a file that cannot be read or parsed keeps all of its last good resources.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::resource::{claimed_key, classify, describe, Classified, Origin, Resource, ResourceKey};
use super::source::discover;
use super::yaml::parse_documents;
use super::{diag, validate, Diagnostic, Finding, Severity};

/// What happened to one file in the last load, as `/config_dump` and `tollgate check` show it.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub ok: bool,
    pub resources: usize,
    pub errors: usize,
    pub last_error: Option<String>,
}

pub struct LoadResult {
    /// Effective resources in config order (see [`config_order`]), unique by key.
    pub resources: Vec<Resource>,
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<FileReport>,
}

pub struct ConfigStore {
    dir: PathBuf,
    default_namespace: String,
    /// Last accepted resources of each file.
    files: BTreeMap<PathBuf, Vec<Resource>>,
}

impl ConfigStore {
    pub fn new(dir: impl Into<PathBuf>, default_namespace: impl Into<String>) -> Self {
        ConfigStore {
            dir: dir.into(),
            default_namespace: default_namespace.into(),
            files: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads every file; failures keep their last good resources.
    pub fn load(&mut self) -> LoadResult {
        let (paths, source_errors) = discover(&self.dir);
        let mut diagnostics: Vec<Diagnostic> = source_errors
            .into_iter()
            .map(|e| plain_diag(Severity::Error, &e.path, 1, e.message))
            .collect();
        let mut next = BTreeMap::new();
        for path in paths {
            let previous = self.files.remove(&path).unwrap_or_default();
            let loaded = load_file(&path, previous, &self.default_namespace);
            diagnostics.extend(loaded.diagnostics);
            next.insert(path, loaded.accepted);
        }
        self.files = next;
        let all = self.files.values().flatten().cloned().collect();
        let resources = dedupe(config_order(all), &mut diagnostics);
        diag::sort(&mut diagnostics);
        let files = self
            .files
            .iter()
            .map(|(path, accepted)| report(path, accepted, &diagnostics))
            .collect();
        LoadResult {
            resources,
            diagnostics,
            files,
        }
    }
}

struct LoadedFile {
    accepted: Vec<Resource>,
    diagnostics: Vec<Diagnostic>,
}

/// A file's status from every diagnostic that names it (including cross-file duplicates).
fn report(path: &Path, accepted: &[Resource], diagnostics: &[Diagnostic]) -> FileReport {
    let errors: Vec<_> = diagnostics
        .iter()
        .filter(|d| d.is_error() && d.file == path)
        .collect();
    FileReport {
        path: path.to_path_buf(),
        ok: errors.is_empty(),
        resources: accepted.len(),
        errors: errors.len(),
        last_error: errors.last().map(|d| d.to_string()),
    }
}

fn plain_diag(severity: Severity, path: &Path, line: u32, message: String) -> Diagnostic {
    Diagnostic {
        severity,
        file: path.to_path_buf(),
        line,
        object: String::new(),
        field: String::new(),
        message,
        hint: None,
    }
}

fn load_file(path: &Path, previous: Vec<Resource>, default_ns: &str) -> LoadedFile {
    let kept = |message: String, line: u32| {
        let mut d = plain_diag(Severity::Error, path, line, message);
        if !previous.is_empty() {
            d.hint = Some(format!(
                "the file's {} previously loaded resource(s) stay in force",
                previous.len()
            ));
        }
        d
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            let d = kept(format!("cannot read file: {e}"), 1);
            return LoadedFile {
                accepted: previous,
                diagnostics: vec![d],
            };
        }
    };
    let docs = match parse_documents(&text) {
        Ok(docs) => docs,
        Err(e) => {
            let d = kept(format!("YAML syntax error: {}", e.message), e.line);
            return LoadedFile {
                accepted: previous,
                diagnostics: vec![d],
            };
        }
    };
    let file: Arc<Path> = Arc::from(path);
    let mut previous: HashMap<ResourceKey, Resource> =
        previous.into_iter().map(|r| (r.key.clone(), r)).collect();
    let mut out = LoadedFile {
        accepted: Vec::new(),
        diagnostics: Vec::new(),
    };
    for doc in &docs {
        let origin = Origin {
            file: file.clone(),
            doc_index: doc.index,
            lines: Arc::new(doc.lines.clone()),
        };
        match classify(doc, &file, default_ns) {
            Classified::Resource(resource, notes) => out.admit(*resource, notes, &mut previous),
            Classified::Skipped(finding) => out
                .diagnostics
                .push(finding.locate(&origin, describe(doc, default_ns))),
            Classified::Invalid(finding) => {
                out.diagnostics
                    .push(finding.locate(&origin, describe(doc, default_ns)));
                let key = claimed_key(doc, default_ns);
                out.keep_previous(key.as_ref(), &mut previous, &origin);
            }
        }
    }
    out
}

impl LoadedFile {
    /// Validates a decoded resource; on error, rejects it and keeps its previous version, if any.
    fn admit(
        &mut self,
        resource: Resource,
        notes: Vec<Finding>,
        previous: &mut HashMap<ResourceKey, Resource>,
    ) {
        let mut findings = notes;
        findings.extend(validate::validate(&resource));
        let rejected = findings.iter().any(|f| f.severity == Severity::Error);
        let object = resource.key.to_string();
        self.diagnostics.extend(
            findings
                .into_iter()
                .map(|f| f.locate(&resource.origin, object.clone())),
        );
        if rejected {
            self.keep_previous(Some(&resource.key), previous, &resource.origin);
        } else {
            previous.remove(&resource.key);
            self.accepted.push(resource);
        }
    }

    fn keep_previous(
        &mut self,
        key: Option<&ResourceKey>,
        previous: &mut HashMap<ResourceKey, Resource>,
        at: &Origin,
    ) {
        let Some(old) = key.and_then(|k| previous.remove(k)) else {
            return;
        };
        let message = format!(
            "{} was rejected; its previous version stays in force",
            old.key
        );
        self.diagnostics
            .push(Finding::new(Severity::Info, "", message, None).locate(at, String::new()));
        self.accepted.push(old);
    }
}

/// Istio orders resources by creation time; without a cluster, tollgate uses
/// `metadata.creationTimestamp` when present (those first, oldest first), then file path and
/// document index. Stable across reloads.
pub fn config_order(mut resources: Vec<Resource>) -> Vec<Resource> {
    resources.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    resources
}

fn order_key(r: &Resource) -> (bool, &str, &Path, usize) {
    let ts = r.meta.creation_timestamp.as_deref();
    (
        ts.is_none(),
        ts.unwrap_or(""),
        &r.origin.file,
        r.origin.doc_index,
    )
}

/// Two resources of one kind with the same namespace and name: the later one is rejected.
fn dedupe(resources: Vec<Resource>, diagnostics: &mut Vec<Diagnostic>) -> Vec<Resource> {
    let mut first_seen: HashMap<ResourceKey, (PathBuf, u32)> = HashMap::new();
    let mut out = Vec::with_capacity(resources.len());
    for r in resources {
        let line = r.origin.line_of("metadata.name");
        if let Some((file, first_line)) = first_seen.get(&r.key) {
            let message = format!(
                "duplicate {}: already defined at {}:{first_line}; this one is ignored",
                r.key,
                file.display()
            );
            diagnostics.push(
                Finding::new(Severity::Error, "metadata.name", message, None)
                    .locate(&r.origin, r.key.to_string()),
            );
            continue;
        }
        first_seen.insert(r.key.clone(), (r.origin.file.to_path_buf(), line));
        out.push(r);
    }
    out
}
