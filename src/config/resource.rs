//! Typed resources and the classification of YAML documents into them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::lines::DocLines;
use super::model::*;
use super::yaml::{Decoded, FieldError, RawDoc};
use super::Finding;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Gateway,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    Telemetry,
    Secret,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gateway => "Gateway",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Telemetry => "Telemetry",
            Kind::Secret => "Secret",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Gateway(GatewaySpec),
    VirtualService(VirtualServiceSpec),
    DestinationRule(DestinationRuleSpec),
    ServiceEntry(ServiceEntrySpec),
    WorkloadEntry(WorkloadEntrySpec),
    Telemetry(TelemetrySpec),
    Secret(SecretData),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Gateway(_) => Kind::Gateway,
            Spec::VirtualService(_) => Kind::VirtualService,
            Spec::DestinationRule(_) => Kind::DestinationRule,
            Spec::ServiceEntry(_) => Kind::ServiceEntry,
            Spec::WorkloadEntry(_) => Kind::WorkloadEntry,
            Spec::Telemetry(_) => Kind::Telemetry,
            Spec::Secret(_) => Kind::Secret,
        }
    }
}

/// Where a resource came from: its file, document index and line index.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<Path>,
    pub doc_index: usize,
    pub lines: Arc<DocLines>,
}

impl Origin {
    pub fn line_of(&self, field: &str) -> u32 {
        self.lines.line_of(field)
    }
}

/// Identity of a resource, as Kubernetes sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub key: ResourceKey,
    pub meta: Metadata,
    pub spec: Spec,
    pub origin: Origin,
}

impl PartialEq for Resource {
    /// Content equality (origin excluded), used to tell whether a reload changed anything.
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.meta == other.meta && self.spec == other.spec
    }
}

/// What a YAML document turned out to be.
pub enum Classified {
    /// A decoded resource plus decode-time warnings (unknown fields).
    Resource(Box<Resource>, Vec<Finding>),
    /// Not something tollgate serves; the finding says why (info or warning).
    Skipped(Finding),
    /// Meant to be a resource but cannot be decoded.
    Invalid(Finding),
}

const ISTIO_VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];
const TELEMETRY_VERSIONS: &[&str] = &["v1alpha1", "v1"];
const ENFORCED_SECURITY_KINDS: &[&str] = &[
    "AuthorizationPolicy",
    "RequestAuthentication",
    "PeerAuthentication",
];

/// Turns one document into a typed resource, or says why not.
pub fn classify(doc: &RawDoc, origin: Origin, default_namespace: &str) -> Classified {
    let finding =
        |severity, field: &str, message: String| Finding::new(severity, field, message, None);
    if !doc.is_mapping() {
        return Classified::Invalid(finding(
            super::Severity::Error,
            "",
            "document is not a mapping (expected a Kubernetes object)".into(),
        ));
    }
    let (Some(api_version), Some(kind)) = (doc.str_field("apiVersion"), doc.str_field("kind"))
    else {
        return Classified::Invalid(finding(
            super::Severity::Error,
            "",
            "document has no apiVersion or kind".into(),
        ));
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let decoded = match (group, kind) {
        (
            "networking.istio.io",
            "Gateway" | "VirtualService" | "DestinationRule" | "ServiceEntry" | "WorkloadEntry",
        ) if ISTIO_VERSIONS.contains(&version) => decode_istio(doc, kind),
        ("telemetry.istio.io", "Telemetry") if TELEMETRY_VERSIONS.contains(&version) => doc
            .decode("spec")
            .map(|d: Decoded<TelemetrySpec>| (Spec::Telemetry(d.value), d.unknown_fields)),
        ("", "Secret") if version == "v1" && is_tls_secret_type(doc.str_field("type")) => {
            decode_secret(doc)
        }
        _ => return Classified::Skipped(skip_reason(group, kind, &doc_name(doc))),
    };
    match decoded {
        Ok((spec, unknown)) => into_resource(doc, spec, unknown, origin, default_namespace),
        Err(err) => Classified::Invalid(finding(super::Severity::Error, &err.path, err.message)),
    }
}

fn doc_name(doc: &RawDoc) -> String {
    doc.decode::<Metadata>("metadata")
        .map(|m| m.value.name)
        .unwrap_or_default()
}

fn skip_reason(group: &str, kind: &str, name: &str) -> Finding {
    use super::Severity::{Info, Warning};
    let what = if name.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} {name}")
    };
    let (severity, message) = match group {
        "security.istio.io" if ENFORCED_SECURITY_KINDS.contains(&kind) => (
            Warning,
            format!("{what} is NOT enforced: tollgate does not implement {group} policies; this resource is skipped"),
        ),
        "gateway.networking.k8s.io" => (
            Warning,
            format!("{what} is a Kubernetes Gateway API resource ({group}), not an Istio one; skipped"),
        ),
        "" if kind == "Secret" => (Info, format!("{what}: only v1 Secrets of type kubernetes.io/tls or Opaque are read; skipped")),
        _ => (Info, format!("{what} ({}) is not used by tollgate; skipped", if group.is_empty() { "core" } else { group })),
    };
    Finding::new(severity, "kind", message, None)
}

type DecodedSpec = (Spec, Vec<String>);

fn decode_istio(doc: &RawDoc, kind: &str) -> Result<DecodedSpec, FieldError> {
    fn wrap<T>(d: Decoded<T>, f: fn(T) -> Spec) -> DecodedSpec {
        (f(d.value), d.unknown_fields)
    }
    Ok(match kind {
        "Gateway" => wrap(doc.decode("spec")?, Spec::Gateway),
        "VirtualService" => wrap(doc.decode("spec")?, Spec::VirtualService),
        "DestinationRule" => wrap(doc.decode("spec")?, Spec::DestinationRule),
        "ServiceEntry" => wrap(doc.decode("spec")?, Spec::ServiceEntry),
        _ => wrap(doc.decode("spec")?, Spec::WorkloadEntry),
    })
}

/// Istio reads any Secret type except Helm releases and service-account tokens; tollgate takes the two
/// that carry certificates.
fn is_tls_secret_type(secret_type: Option<&str>) -> bool {
    matches!(secret_type, None | Some("kubernetes.io/tls" | "Opaque"))
}

fn decode_secret(doc: &RawDoc) -> Result<DecodedSpec, FieldError> {
    Ok((Spec::Secret(doc.decode_secret()?), Vec::new()))
}

fn into_resource(
    doc: &RawDoc,
    spec: Spec,
    mut unknown: Vec<String>,
    origin: Origin,
    default_ns: &str,
) -> Classified {
    let meta = match doc.decode::<Metadata>("metadata") {
        Ok(m) => {
            unknown.extend(m.unknown_fields);
            m.value
        }
        Err(err) => {
            return Classified::Invalid(Finding::new(
                super::Severity::Error,
                &err.path,
                err.message,
                None,
            ))
        }
    };
    if meta.name.is_empty() {
        return Classified::Invalid(Finding::new(
            super::Severity::Error,
            "metadata.name",
            "is required".into(),
            None,
        ));
    }
    let namespace = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_ns.to_string());
    let key = ResourceKey {
        kind: spec.kind(),
        namespace,
        name: meta.name.clone(),
    };
    let mut resource = Resource {
        key,
        meta,
        spec,
        origin,
    };
    resource.meta.namespace = Some(resource.key.namespace.clone());
    let notes = unknown.into_iter().map(unknown_field_finding).collect();
    Classified::Resource(Box::new(resource), notes)
}

/// Unknown fields are warnings with the closest known field name as a hint.
fn unknown_field_finding(path: String) -> Finding {
    let field = path.rsplit(['.', ']']).next().unwrap_or(&path).to_string();
    let hint = super::model::KNOWN_FIELDS
        .iter()
        .map(|known| (strsim::jaro_winkler(known, &field), known))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| format!("did you mean `{known}`?"));
    Finding::new(
        super::Severity::Warning,
        &path,
        format!("unknown field `{field}` is ignored"),
        hint,
    )
}

/// The identity a document claims, even when it cannot be decoded (to keep its last good version).
pub fn claimed_key(doc: &RawDoc, default_namespace: &str) -> Option<ResourceKey> {
    let group = doc
        .str_field("apiVersion")?
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    if !matches!(group, "networking.istio.io" | "telemetry.istio.io" | "") {
        return None;
    }
    let kind = match doc.str_field("kind")? {
        "Gateway" => Kind::Gateway,
        "VirtualService" => Kind::VirtualService,
        "DestinationRule" => Kind::DestinationRule,
        "ServiceEntry" => Kind::ServiceEntry,
        "WorkloadEntry" => Kind::WorkloadEntry,
        "Telemetry" => Kind::Telemetry,
        "Secret" => Kind::Secret,
        _ => return None,
    };
    let meta = doc.decode::<Metadata>("metadata").ok()?.value;
    let namespace = meta
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_namespace.to_string());
    (!meta.name.is_empty()).then_some(ResourceKey {
        kind,
        namespace,
        name: meta.name,
    })
}

/// `Kind ns/name` for diagnostics, from whatever the document says.
pub fn describe(doc: &RawDoc, default_namespace: &str) -> String {
    match claimed_key(doc, default_namespace) {
        Some(key) => key.to_string(),
        None => {
            let kind = doc.str_field("kind").unwrap_or_default();
            let api = doc.str_field("apiVersion").unwrap_or_default();
            match doc.decode::<Metadata>("metadata").map(|m| m.value) {
                Ok(m) if !m.name.is_empty() => {
                    format!(
                        "{kind} ({api}) {}/{}",
                        m.namespace.unwrap_or_else(|| default_namespace.to_string()),
                        m.name
                    )
                }
                _ => format!("{kind} ({api})"),
            }
        }
    }
}
