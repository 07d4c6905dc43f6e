//! The one place that touches `serde_yaml` (archived upstream): splitting a file into documents,
//! decoding typed specs with field paths, and collecting unknown fields. Swapping the YAML
//! library means rewriting only this module.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::lines::{index_documents, DocLines};
use super::model::SecretData;

/// A YAML syntax error, with the 1-based line serde_yaml reported.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub line: u32,
    pub message: String,
}

/// A decoding problem at a field path (`spec.servers[0].port.number`).
#[derive(Debug, Clone)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// One parsed YAML document of a file.
pub struct RawDoc {
    pub index: usize,
    pub lines: Arc<DocLines>,
    value: serde_yaml::Value,
}

/// A decoded value plus the paths of fields the model does not know.
pub struct Decoded<T> {
    pub value: T,
    pub unknown_fields: Vec<String>,
}

/// Splits `text` into its documents. Empty documents (a lone `---`, comment-only tails) are dropped.
pub fn parse_documents(text: &str) -> Result<Vec<RawDoc>, SyntaxError> {
    let mut lines = index_documents(text).into_iter();
    let mut docs = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(de).map_err(syntax_error)?;
        let doc_lines = lines.next().unwrap_or_default();
        if !value.is_null() {
            docs.push(RawDoc {
                index,
                lines: Arc::new(doc_lines),
                value,
            });
        }
    }
    Ok(docs)
}

/// Every non-empty document of `text` as a JSON value: for tools and tests that read YAML which
/// is not Istio configuration (compose files, Kubernetes manifests) without naming serde_yaml.
pub fn json_documents(text: &str) -> Result<Vec<serde_json::Value>, SyntaxError> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(de).map_err(syntax_error)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn syntax_error(err: serde_yaml::Error) -> SyntaxError {
    let line = err.location().map_or(1, |l| l.line() as u32);
    SyntaxError {
        line,
        message: err.to_string(),
    }
}

impl RawDoc {
    /// Whether the document is a mapping (anything else cannot be a Kubernetes object).
    pub fn is_mapping(&self) -> bool {
        self.value.is_mapping()
    }

    /// A top-level string field such as `kind` or `apiVersion`.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.value.get(key).and_then(|v| v.as_str())
    }

    pub fn has_field(&self, key: &str) -> bool {
        self.value.get(key).is_some()
    }

    /// Decodes the top-level field `key` (absent = default) as `T`, with paths prefixed by `key`.
    pub fn decode<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<Decoded<T>, FieldError> {
        match self.value.get(key) {
            None | Some(serde_yaml::Value::Null) => Ok(Decoded {
                value: T::default(),
                unknown_fields: Vec::new(),
            }),
            Some(v) => decode_value(v, key),
        }
    }

    /// Decodes a Kubernetes Secret's `type`, `data` (base64) and `stringData` (plain; wins on conflicts).
    pub fn decode_secret(&self) -> Result<SecretData, FieldError> {
        let secret_type = self.str_field("type").unwrap_or("Opaque").to_string();
        let mut entries = BTreeMap::new();
        let data: BTreeMap<String, String> = self.decode("data")?.value;
        for (key, encoded) in data {
            let compact: String = encoded.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| FieldError {
                    path: format!("data.{key}"),
                    message: format!("value is not valid base64: {e}"),
                })?;
            entries.insert(key, bytes);
        }
        let string_data: BTreeMap<String, String> = self.decode("stringData")?.value;
        for (key, text) in string_data {
            entries.insert(key, text.into_bytes());
        }
        Ok(SecretData {
            secret_type,
            entries,
        })
    }
}

fn decode_value<T: DeserializeOwned>(
    value: &serde_yaml::Value,
    root: &str,
) -> Result<Decoded<T>, FieldError> {
    let mut unknown_fields = Vec::new();
    let mut on_unknown =
        |path: serde_ignored::Path<'_>| unknown_fields.push(join(root, &ignored_path(&path)));
    let ignoring = serde_ignored::Deserializer::new(value, &mut on_unknown);
    match serde_path_to_error::deserialize(ignoring) {
        Ok(value) => Ok(Decoded {
            value,
            unknown_fields,
        }),
        Err(err) => {
            let path = err.path().to_string();
            let path = if path == "." {
                root.to_string()
            } else {
                join(root, &path)
            };
            Err(FieldError {
                path,
                message: clean_message(&err.into_inner().to_string()),
            })
        }
    }
}

fn join(root: &str, rest: &str) -> String {
    match rest {
        "" | "." => root.to_string(),
        r if r.starts_with('[') => format!("{root}{r}"),
        r => format!("{root}.{r}"),
    }
}

/// Formats a serde_ignored path like serde_path_to_error does: `a.b[0].c`.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => join_key(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// serde_yaml appends its own (meaningless, value-relative) position to some messages.
fn clean_message(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::GatewaySpec;

    #[test]
    fn decodes_with_unknown_fields_and_paths() {
        let docs = parse_documents("kind: Gateway\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hostz: [a]\n").unwrap();
        let spec: Decoded<GatewaySpec> = docs[0].decode("spec").unwrap();
        assert_eq!(
            spec.unknown_fields,
            vec!["spec.servers[0].hostz".to_string()]
        );
        assert_eq!(spec.value.servers[0].port.as_ref().unwrap().number, 80);
    }

    #[test]
    fn type_errors_name_the_field() {
        let docs = parse_documents("spec:\n  servers:\n  - port: {number: eighty}\n").unwrap();
        let err = docs[0].decode::<GatewaySpec>("spec").err().unwrap();
        assert_eq!(err.path, "spec.servers[0].port.number");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n").err().unwrap();
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn empty_documents_are_dropped() {
        let docs = parse_documents("---\na: 1\n---\n# tail\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn secrets_decode_base64_and_string_data() {
        let docs = parse_documents(
            "type: kubernetes.io/tls\ndata:\n  tls.crt: aGVsbG8=\nstringData:\n  tls.key: world\n",
        )
        .unwrap();
        let secret = docs[0].decode_secret().unwrap();
        assert_eq!(secret.entries["tls.crt"], b"hello");
        assert_eq!(secret.entries["tls.key"], b"world");
        let bad = parse_documents("data:\n  tls.crt: '!!!'\n").unwrap();
        assert_eq!(bad[0].decode_secret().err().unwrap().path, "data.tls.crt");
    }
}
