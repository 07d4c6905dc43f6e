//! `/clusters`: Envoy's text lines (`<cluster>::default_priority::max_connections::N`,
//! `<cluster>::<ip:port>::<stat>::<value>`) or the same data as JSON.

use std::fmt::Write;

use http::StatusCode;
use serde_json::json;

use super::{json, text, AdminContext, AdminResponse, Query};
use crate::upstream::breaker::Limits;
use crate::upstream::cluster::{Cluster, Endpoint};

/// Istio sets unset thresholds to the largest value Envoy takes; shown as such.
const UNLIMITED: u32 = u32::MAX;

pub(super) fn clusters(ctx: &AdminContext, query: &Query) -> AdminResponse {
    let snapshot = ctx.shared.snapshot.load();
    let clusters = snapshot.clusters.values();
    if query.wants_json() {
        let list: Vec<_> = clusters.map(|c| cluster_json(c)).collect();
        return json(StatusCode::OK, &json!({ "cluster_statuses": list }));
    }
    let mut body = String::new();
    for cluster in clusters {
        cluster_text(&mut body, cluster);
    }
    text(StatusCode::OK, body)
}

fn thresholds(limits: &Limits) -> [(&'static str, u32); 4] {
    let or_max = |v: Option<u32>| v.unwrap_or(UNLIMITED);
    [
        ("max_connections", or_max(limits.max_connections)),
        ("max_pending_requests", or_max(limits.max_pending)),
        ("max_requests", or_max(limits.max_requests)),
        ("max_retries", or_max(limits.max_retries)),
    ]
}

/// Envoy's `health_flags` value.
fn health_flags(ejected: bool) -> &'static str {
    if ejected {
        "/failed_outlier_check"
    } else {
        "healthy"
    }
}

fn cluster_text(out: &mut String, cluster: &Cluster) {
    let name = cluster.name();
    let _ = writeln!(out, "{name}::observability_name::{name}");
    for (threshold, value) in thresholds(&cluster.spec.limits) {
        let _ = writeln!(out, "{name}::default_priority::{threshold}::{value}");
    }
    for endpoint in cluster.current_endpoints().iter() {
        endpoint_text(out, cluster, endpoint);
    }
}

fn endpoint_text(out: &mut String, cluster: &Cluster, endpoint: &Endpoint) {
    let prefix = format!("{}::{}", cluster.name(), endpoint.addr);
    let c = endpoint.counters();
    let outlier = endpoint.health.status(cluster.outlier());
    let lines = [
        ("rq_active", u64::from(c.rq_active)),
        ("rq_total", c.rq_total),
        ("rq_error", c.rq_error),
        ("cx_connect_fail", c.cx_connect_fail),
        ("weight", u64::from(endpoint.weight)),
        ("outlier_ejections", outlier.ejections),
    ];
    for (stat, value) in lines {
        let _ = writeln!(out, "{prefix}::{stat}::{value}");
    }
    let _ = writeln!(
        out,
        "{prefix}::health_flags::{}",
        health_flags(outlier.ejected)
    );
    if let Some(ms) = outlier.remaining_ms.filter(|_| outlier.ejected) {
        let _ = writeln!(out, "{prefix}::ejection_remaining_ms::{ms}");
    }
}

fn cluster_json(cluster: &Cluster) -> serde_json::Value {
    let thresholds: serde_json::Map<_, _> = thresholds(&cluster.spec.limits)
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let hosts: Vec<_> = cluster
        .current_endpoints()
        .iter()
        .map(|e| {
            let outlier = e.health.status(cluster.outlier());
            json!({
                "address": e.addr,
                "weight": e.weight,
                "health_flags": health_flags(outlier.ejected),
                "stats": e.counters(),
                "outlier": outlier,
            })
        })
        .collect();
    json!({
        "name": cluster.name(),
        "protocol": cluster.spec.protocol,
        "outlier_detection": cluster.outlier().is_some(),
        "circuit_breakers": { "default_priority": thresholds },
        "host_statuses": hosts,
    })
}
