//! Configuration: files → YAML documents → typed, validated Istio resources.
//!
//! `load` never fails as a whole: each file, document and resource succeeds or fails on its own,
//! and what fails keeps its last good version (see [`store::ConfigStore`]).

pub mod diag;
pub mod duration;
pub mod lines;
pub mod model;
mod policy;
pub mod resource;
pub mod source;
pub mod store;
mod traffic_policy;
pub mod validate;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use resource::{Kind, Origin, Resource, ResourceKey, Spec};
pub use store::{ConfigStore, FileReport, LoadResult};

/// A problem found inside one resource, before it is placed in a file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Finding {
    pub fn new(severity: Severity, field: &str, message: String, hint: Option<String>) -> Self {
        Finding {
            severity,
            field: field.to_string(),
            message,
            hint,
        }
    }

    /// Places the finding at its line in `origin`, naming `object` (`Kind ns/name`).
    /// Placed in `resource`: its file, the line of the field, its name.
    pub fn at(self, resource: &Resource) -> Diagnostic {
        self.locate(&resource.origin, resource.key.to_string())
    }

    pub fn locate(self, origin: &Origin, object: String) -> Diagnostic {
        Diagnostic {
            severity: self.severity,
            file: origin.file.to_path_buf(),
            line: origin.line_of(&self.field),
            object,
            field: self.field,
            message: self.message,
            hint: self.hint,
        }
    }
}
