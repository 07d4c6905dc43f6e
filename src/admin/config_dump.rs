//! The effective configuration as JSON (admin `/config_dump`).

use serde_json::json;

use crate::config::Spec;
use crate::listener::Listeners;
use crate::route::{Action, Target};
use crate::snapshot::{ListenerKind, Snapshot};

/// The effective configuration: generation, files and their status, diagnostics, listeners with
/// their route tables, clusters with endpoints, and the resources in force (never key material).
pub fn config_dump(snapshot: &Snapshot, listeners: &Listeners) -> serde_json::Value {
    let addresses = listeners.addresses();
    json!({
        "generation": snapshot.generation,
        "access_logging": snapshot.access_logging,
        "files": snapshot.files,
        "diagnostics": snapshot.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "bind_errors": listeners.bind_errors(),
        "listeners": snapshot.listeners.values().map(|l| {
            let address = addresses.iter().find(|(k, _)| *k == l.key).map(|(_, a)| a.to_string());
            json!({
                "gateway_port": l.key.port,
                "bind": l.key.bind,
                "class": l.class,
                "address": address,
                "gateways": l.gateways,
                "route_table": route_table(&l.kind),
            })
        }).collect::<Vec<_>>(),
        "clusters": snapshot.clusters.values().map(|c| json!({
            "name": c.name(),
            "protocol": c.spec.protocol,
            "source": c.spec.source,
            "endpoints": c.current_endpoints().iter().map(|e| json!({
                "address": e.addr, "weight": e.weight, "active_requests": e.active_requests(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "resources": snapshot.resources.iter().map(|r| json!({
            "kind": r.key.kind,
            "namespace": r.key.namespace,
            "name": r.key.name,
            "file": r.origin.file.display().to_string(),
            "spec": spec_json(&r.spec),
        })).collect::<Vec<_>>(),
    })
}

fn route_table(kind: &ListenerKind) -> serde_json::Value {
    let ListenerKind::Http(table) = kind else {
        return serde_json::Value::Null;
    };
    json!({
        "name": table.name,
        "virtual_hosts": table.vhosts.iter().map(|vh| json!({
            "domain": vh.domain,
            "https_redirect": vh.https_redirect,
            "routes": vh.routes.iter().map(|r| json!({
                "name": r.name,
                "action": match &r.action {
                    Action::Forward(w) => json!({"clusters": w.targets().map(|t| match t {
                        Target::Cluster(c) => c.name().to_string(),
                        Target::Missing(name) => format!("{name} (missing)"),
                    }).collect::<Vec<_>>()}),
                    Action::Redirect(r) => json!({"redirect": r.code}),
                    Action::Direct(d) => json!({"direct_response": d.status}),
                },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn spec_json(spec: &Spec) -> serde_json::Value {
    let value = match spec {
        Spec::Gateway(s) => serde_json::to_value(s),
        Spec::VirtualService(s) => serde_json::to_value(s),
        Spec::DestinationRule(s) => serde_json::to_value(s),
        Spec::ServiceEntry(s) => serde_json::to_value(s),
        Spec::WorkloadEntry(s) => serde_json::to_value(s),
        Spec::Telemetry(s) => serde_json::to_value(s),
        // Key material never leaves the process: only the secret's type and key names.
        Spec::Secret(s) => {
            Ok(json!({"type": s.secret_type, "keys": s.entries.keys().collect::<Vec<_>>()}))
        }
    };
    value.unwrap_or(serde_json::Value::Null)
}
