//! The admin API (`--admin-addr`, Envoy's port 15000), readiness (`--health-addr`, Istio's
//! 15021) and Prometheus scraping (`--metrics-addr`, Istio's 15090).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Spec;
use crate::listener::Listeners;
use crate::route::{Action, Target};
use crate::snapshot::{ListenerKind, Snapshot};
use crate::state::Shared;

/// Which endpoints an address serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Health,
    Metrics,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Health => "health",
            Role::Metrics => "metrics",
        }
    }
}

#[derive(Clone)]
pub struct AdminContext {
    pub shared: Arc<Shared>,
    pub listeners: Arc<Listeners>,
    pub prometheus: PrometheusHandle,
}

/// Binds `addr`, prints its `LISTEN` line, and serves `role` in the background.
pub async fn start(role: Role, addr: SocketAddr, ctx: AdminContext) -> std::io::Result<SocketAddr> {
    let tcp = TcpListener::bind(addr).await?;
    let bound = tcp.local_addr()?;
    println!("LISTEN {} address={bound}", role.name());
    tokio::spawn(async move {
        loop {
            let stream = match tcp.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(role = role.name(), error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(route(role, &req, &ctx)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

type AdminResponse = Response<Full<Bytes>>;

fn route(role: Role, req: &Request<Incoming>, ctx: &AdminContext) -> AdminResponse {
    let path = req.uri().path();
    match (role, req.method(), path) {
        (Role::Health, &Method::GET, "/healthz/ready") | (Role::Admin, &Method::GET, "/ready") => {
            ready(ctx)
        }
        (Role::Admin | Role::Metrics, &Method::GET, "/stats/prometheus") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            ctx.prometheus.render(),
        ),
        (Role::Admin, &Method::GET, "/config_dump") => {
            let dump = config_dump(&ctx.shared.snapshot.load(), &ctx.listeners);
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&dump).unwrap_or_default(),
            )
        }
        (Role::Admin, &Method::GET, "/debug/route") => {
            let (status, content_type, body) =
                crate::explain::debug_route(&ctx.shared, req.uri().query());
            reply(status, content_type, body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no such endpoint: {path}\n"),
        ),
    }
}

fn ready(ctx: &AdminContext) -> AdminResponse {
    if ctx.shared.is_ready() {
        reply(StatusCode::OK, "text/plain", "LIVE\n".into())
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "NOT READY\n".into(),
        )
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// The effective configuration: generation, files and their status, diagnostics, listeners with
/// their route tables, clusters with endpoints, and the resources in force (never key material).
pub fn config_dump(snapshot: &Snapshot, listeners: &Listeners) -> serde_json::Value {
    let addresses = listeners.addresses();
    json!({
        "generation": snapshot.generation,
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
        // Key material never leaves the process: only the secret's type and key names.
        Spec::Secret(s) => {
            Ok(json!({"type": s.secret_type, "keys": s.entries.keys().collect::<Vec<_>>()}))
        }
    };
    value.unwrap_or(serde_json::Value::Null)
}
