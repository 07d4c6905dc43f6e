//! `/listeners`: Envoy's `name::address` lines, or JSON with the gateway port, bound address,
//! class, Gateways and open connections.

use http::StatusCode;
use serde_json::json;

use super::{json, text, AdminContext, AdminResponse, Query};
use crate::listener::listener_name;

pub(super) fn listeners(ctx: &AdminContext, query: &Query) -> AdminResponse {
    let running = ctx.listeners.describe();
    if !query.wants_json() {
        let body: String = running
            .iter()
            .map(|l| format!("{}::{}\n", listener_name(l.key), l.address))
            .collect();
        return text(StatusCode::OK, body);
    }
    let snapshot = ctx.shared.snapshot.load();
    let list: Vec<_> = running
        .iter()
        .map(|l| {
            let config = snapshot.listeners.get(&l.key);
            json!({
                "name": listener_name(l.key),
                "gateway_port": l.key.port,
                "bind": l.key.bind,
                "address": l.address,
                "class": config.map(|c| c.class),
                "gateways": config.map(|c| c.gateways.clone()).unwrap_or_default(),
                "active_connections": l.active_connections,
            })
        })
        .collect();
    json(StatusCode::OK, &json!({ "listeners": list }))
}
