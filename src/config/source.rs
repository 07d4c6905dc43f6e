//! Finding config files: every `*.yaml`/`*.yml` under a directory, recursively, skipping hidden
//! entries. Kubernetes ConfigMap mounts keep the real files in hidden `..<timestamp>` folders
//! reached through `..data`; the visible top-level symlinks point there, so skipping hidden names
//! reads each file exactly once, through its visible link.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Deepest folder nesting followed; guards against symlink loops.
const MAX_DEPTH: usize = 16;

/// A folder or file that could not be read.
#[derive(Debug, Clone)]
pub struct SourceError {
    pub path: PathBuf,
    pub message: String,
}

/// Lists the YAML files under `dir` in sorted path order, each real file once.
pub fn discover(dir: &Path) -> (Vec<PathBuf>, Vec<SourceError>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    walk(dir, 0, &mut found, &mut errors);
    found.sort();
    let mut seen = HashSet::new();
    found.retain(|p| seen.insert(fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    (found, errors)
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>, errors: &mut Vec<SourceError>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(SourceError {
                path: dir.to_path_buf(),
                message: format!("cannot read directory: {e}"),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follow symlinks: ConfigMap files are links into `..data`.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() && depth < MAX_DEPTH {
            walk(&path, depth + 1, found, errors);
        } else if meta.is_file() && is_yaml(&path) {
            found.push(path);
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_configmap_layout_once_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2026_01_01_00_00_00.1");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("gw.yaml"), "a: 1").unwrap();
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/gw.yaml", dir.path().join("gw.yaml")).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/vs.yml"), "b: 1").unwrap();
        fs::write(dir.path().join("sub/.hidden.yaml"), "c: 1").unwrap();
        fs::write(dir.path().join("notes.txt"), "d").unwrap();
        let (files, errors) = discover(dir.path());
        assert!(errors.is_empty());
        let names: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            vec![PathBuf::from("gw.yaml"), PathBuf::from("sub/vs.yml")]
        );
    }
}
