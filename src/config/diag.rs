//! Configuration diagnostics: every problem found while loading, with file, line and field path.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How bad a diagnostic is. Errors reject the resource (or the file); warnings and infos only inform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// One finding, printed as `<file>:<line> <Kind> <ns>/<name>: <field.path>: <problem>; <hint>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: u32,
    /// `Kind ns/name`, or empty when the problem is not tied to one resource (a YAML syntax error).
    pub object: String,
    /// Field path in serde_path_to_error's format (`spec.servers[0].port.number`), or empty.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// The same location with another message.
    pub fn with_message(&self, severity: Severity, message: String) -> Diagnostic {
        Diagnostic {
            severity,
            message,
            hint: None,
            ..self.clone()
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        write!(f, "{}:{} {sev}:", self.file.display(), self.line)?;
        if !self.object.is_empty() {
            write!(f, " {}:", self.object)?;
        }
        if !self.field.is_empty() {
            write!(f, " {}:", self.field)?;
        }
        write!(f, " {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Sorts diagnostics for stable output: by file, line, then severity.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.file, a.line, a.severity, &a.field, &a.message)
            .cmp(&(&b.file, b.line, b.severity, &b.field, &b.message))
    });
}
