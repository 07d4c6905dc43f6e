//! Who the gateway is, as Istio's `source_*` metric labels name it (reference §6.1): an ingress
//! gateway reports as the client side of every request it forwards.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The gateway workload's identity; fixed for the life of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub workload: String,
    pub namespace: String,
    pub cluster: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
}

impl Identity {
    /// Istio's derivation from the workload's labels: canonical service from
    /// `service.istio.io/canonical-name`, else `app.kubernetes.io/name`, else `app`, else the
    /// workload name; revision likewise from `…/canonical-revision`, `app.kubernetes.io/version`,
    /// `version`, else `latest`. Missing `app`/`version` read `unknown`.
    pub fn new(
        workload: &str,
        namespace: &str,
        cluster: &str,
        labels: &BTreeMap<String, String>,
    ) -> Self {
        let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k)).cloned();
        Identity {
            workload: workload.to_string(),
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            app: first(&["app"]).unwrap_or_else(|| "unknown".into()),
            version: first(&["version"]).unwrap_or_else(|| "unknown".into()),
            canonical_service: first(&[
                "service.istio.io/canonical-name",
                "app.kubernetes.io/name",
                "app",
            ])
            .unwrap_or_else(|| workload.to_string()),
            canonical_revision: first(&[
                "service.istio.io/canonical-revision",
                "app.kubernetes.io/version",
                "version",
            ])
            .unwrap_or_else(|| "latest".into()),
        }
    }
}

impl Default for Identity {
    fn default() -> Self {
        Identity::new(
            DEFAULT_WORKLOAD,
            "istio-system",
            DEFAULT_CLUSTER,
            &BTreeMap::new(),
        )
    }
}

pub const DEFAULT_WORKLOAD: &str = "istio-ingressgateway";
/// Istio's cluster id when none is configured.
pub const DEFAULT_CLUSTER: &str = "Kubernetes";

static IDENTITY: OnceLock<Identity> = OnceLock::new();

/// Sets the identity once, before traffic; later calls are ignored.
pub fn set(identity: Identity) {
    let _ = IDENTITY.set(identity);
}

pub fn get() -> &'static Identity {
    IDENTITY.get_or_init(Identity::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_follow_istio_label_precedence() {
        let labels = BTreeMap::from([
            ("app".to_string(), "istio-ingressgateway".to_string()),
            ("istio".to_string(), "ingressgateway".to_string()),
        ]);
        let id = Identity::new("edge", "istio-system", "c1", &labels);
        assert_eq!(id.app, "istio-ingressgateway");
        assert_eq!(id.canonical_service, "istio-ingressgateway");
        assert_eq!(id.canonical_revision, "latest");
        assert_eq!(id.version, "unknown");
        let bare = Identity::new("edge", "ns", "c1", &BTreeMap::new());
        assert_eq!(bare.canonical_service, "edge");
        assert_eq!(bare.app, "unknown");
    }
}
