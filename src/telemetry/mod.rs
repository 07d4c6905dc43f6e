//! Observability: Istio's standard metrics, Envoy's access log, and the gateway identity both
//! report under.

pub mod access_log;
pub mod flags;
pub mod identity;
pub mod istio;

pub use flags::Flags;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Resource, Spec};

/// The access log provider Istio's mesh config defines by default (`envoy`: a file, stdout).
pub const ENVOY_PROVIDER: &str = "envoy";
/// Istio's root namespace: its selector-less Telemetry applies mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// Whether this gateway writes access logs, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogging {
    pub enabled: bool,
    /// `Telemetry ns/name`, or `--access-log` when no Telemetry applies.
    pub decided_by: String,
}

/// Istio's precedence for this gateway's Telemetry: one in the gateway's namespace whose selector
/// matches its labels, then one in that namespace without a selector, then one in the root
/// namespace without a selector. The most specific that configures access logging decides;
/// without any, `--access-log` does.
pub fn access_logging(
    resources: &[Arc<Resource>],
    gateway_namespace: &str,
    labels: &BTreeMap<String, String>,
    flag: bool,
) -> AccessLogging {
    let rank = |r: &Resource| -> Option<u8> {
        let Spec::Telemetry(t) = &r.spec else {
            return None;
        };
        if t.access_logging.is_empty() {
            return None;
        }
        let ns = r.key.namespace.as_str();
        match &t.selector {
            Some(sel) if !sel.match_labels.is_empty() => (ns == gateway_namespace
                && sel
                    .match_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v)))
            .then_some(3),
            _ if ns == gateway_namespace => Some(2),
            _ if ns == ROOT_NAMESPACE => Some(1),
            _ => None,
        }
    };
    // Ties go to the first by namespace/name, as resources are ordered.
    let chosen = resources
        .iter()
        .filter_map(|r| rank(r).map(|k| (k, r)))
        .fold(None::<(u8, &Arc<Resource>)>, |best, (k, r)| match best {
            Some((b, _)) if b >= k => best,
            _ => Some((k, r)),
        });
    match chosen {
        Some((_, r)) => AccessLogging {
            enabled: telemetry_enables(&r.spec),
            decided_by: format!("Telemetry {}/{}", r.key.namespace, r.key.name),
        },
        None => AccessLogging {
            enabled: flag,
            decided_by: "--access-log".into(),
        },
    }
}

/// On when an entry names the `envoy` provider (or no provider: the default one) and is not
/// `disabled`.
fn telemetry_enables(spec: &Spec) -> bool {
    let Spec::Telemetry(t) = spec else {
        return false;
    };
    t.access_logging.iter().any(|l| {
        l.disabled != Some(true)
            && (l.providers.is_empty() || l.providers.iter().any(|p| p.name == ENVOY_PROVIDER))
    })
}
