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
    pub resources: Vec<Arc<Resource>>,
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<FileReport>,
}

pub struct ConfigStore {
    dir: PathBuf,
    default_namespace: String,
    /// Last accepted resources of each file.
    files: BTreeMap<PathBuf, LoadedFile>,
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
            let previous = self.files.remove(&path);
            let loaded = load_file(&path, previous, &self.default_namespace);
            diagnostics.extend(loaded.diagnostics.iter().cloned());
            next.insert(path, loaded);
        }
        self.files = next;
        self.result(diagnostics)
    }

    /// [`Self::load`] with the directory holding exactly `files` (path, content), read from
    /// memory instead of the disk: the same parsing, validation, last-good and dedupe steps.
    /// For the fuzz targets and regression tests.
    #[doc(hidden)]
    pub fn load_texts(&mut self, files: &[(PathBuf, &str)]) -> LoadResult {
        let mut diagnostics = Vec::new();
        let mut next = BTreeMap::new();
        for (path, text) in files {
            let previous = self.files.remove(path).unwrap_or_default();
            let loaded = load_text(path, text, previous, &self.default_namespace);
            diagnostics.extend(loaded.diagnostics.iter().cloned());
            next.insert(path.clone(), loaded);
        }
        self.files = next;
        self.result(diagnostics)
    }

    fn result(&self, mut diagnostics: Vec<Diagnostic>) -> LoadResult {
        let all = self
            .files
            .values()
            .flat_map(|f| &f.accepted)
            .cloned()
            .collect();
        let resources = dedupe(config_order(all), &mut diagnostics);
        diag::sort(&mut diagnostics);
        let files = self
            .files
            .iter()
            .map(|(path, loaded)| report(path, &loaded.accepted, &diagnostics))
            .collect();
        LoadResult {
            resources,
            diagnostics,
            files,
        }
    }
}

/// One file's outcome, kept so that an unchanged file is not parsed again.
#[derive(Default)]
struct LoadedFile {
    /// Hash of the content this outcome came from; `None` when the file could not be read.
    content_hash: Option<u64>,
    accepted: Vec<Arc<Resource>>,
    diagnostics: Vec<Diagnostic>,
}

fn content_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// A file's status from every diagnostic that names it (including cross-file duplicates).
fn report(path: &Path, accepted: &[Arc<Resource>], diagnostics: &[Diagnostic]) -> FileReport {
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

fn load_file(path: &Path, previous: Option<LoadedFile>, default_ns: &str) -> LoadedFile {
    let previous = previous.unwrap_or_default();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return keep_previous_file(path, previous, None, format!("cannot read file: {e}"), 1)
        }
    };
    load_text(path, &text, previous, default_ns)
}

fn load_text(path: &Path, text: &str, previous: LoadedFile, default_ns: &str) -> LoadedFile {
    let hash = content_hash(text);
    if previous.content_hash == Some(hash) {
        return previous;
    }
    let docs = match parse_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            let message = format!("YAML syntax error: {}", e.message);
            return keep_previous_file(path, previous, Some(hash), message, e.line);
        }
    };
    let mut loaded = parse_file(path, &docs, previous.accepted, default_ns);
    loaded.content_hash = Some(hash);
    loaded
}

/// A file that cannot be read or parsed keeps every resource it had.
fn keep_previous_file(
    path: &Path,
    previous: LoadedFile,
    hash: Option<u64>,
    message: String,
    line: u32,
) -> LoadedFile {
    let mut d = plain_diag(Severity::Error, path, line, message);
    if !previous.accepted.is_empty() {
        let count = previous.accepted.len();
        d.hint = Some(format!(
            "the file's {count} previously loaded resource(s) stay in force"
        ));
    }
    LoadedFile {
        content_hash: hash,
        accepted: previous.accepted,
        diagnostics: vec![d],
    }
}

fn parse_file(
    path: &Path,
    docs: &[crate::config::yaml::RawDoc],
    previous: Vec<Arc<Resource>>,
    default_ns: &str,
) -> LoadedFile {
    let file: Arc<Path> = Arc::from(path);
    let mut previous: HashMap<ResourceKey, Arc<Resource>> =
        previous.into_iter().map(|r| (r.key.clone(), r)).collect();
    let mut out = LoadedFile::default();
    for doc in docs {
        let origin = Origin {
            file: file.clone(),
            doc_index: doc.index,
            lines: doc.lines.clone(),
        };
        match classify(doc, origin.clone(), default_ns) {
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
        previous: &mut HashMap<ResourceKey, Arc<Resource>>,
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
            self.accepted.push(Arc::new(resource));
        }
    }

    fn keep_previous(
        &mut self,
        key: Option<&ResourceKey>,
        previous: &mut HashMap<ResourceKey, Arc<Resource>>,
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
pub fn config_order(mut resources: Vec<Arc<Resource>>) -> Vec<Arc<Resource>> {
    resources.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    resources
}

fn order_key(r: &Arc<Resource>) -> (bool, &str, &Path, usize) {
    let ts = r.meta.creation_timestamp.as_deref();
    (
        ts.is_none(),
        ts.unwrap_or(""),
        &r.origin.file,
        r.origin.doc_index,
    )
}

/// Two resources of one kind with the same namespace and name: the later one is rejected.
fn dedupe(resources: Vec<Arc<Resource>>, diagnostics: &mut Vec<Diagnostic>) -> Vec<Arc<Resource>> {
    let mut first_seen: HashMap<&ResourceKey, &Arc<Resource>> =
        HashMap::with_capacity(resources.len());
    let mut keep = vec![true; resources.len()];
    for (i, r) in resources.iter().enumerate() {
        let Some(first) = first_seen.get(&r.key) else {
            first_seen.insert(&r.key, r);
            continue;
        };
        keep[i] = false;
        let message = format!(
            "duplicate {}: already defined at {}:{}; this one is ignored",
            r.key,
            first.origin.file.display(),
            first.origin.line_of("metadata.name")
        );
        diagnostics.push(
            Finding::new(Severity::Error, "metadata.name", message, None)
                .locate(&r.origin, r.key.to_string()),
        );
    }
    drop(first_seen);
    resources
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}
