//! The admin API (`--admin-addr`, Envoy's port 15000), readiness (`--health-addr`, Istio's
//! 15021) and Prometheus scraping (`--metrics-addr`, Istio's 15090).
//!
//! This file serves and routes; each endpoint group has its own module. As in Envoy, endpoints
//! that change something need POST: a GET on them is answered 400.

mod certs;
mod clusters;
mod config_dump;
mod lifecycle;
mod listeners;
mod logging;
mod stats;

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
use tokio::net::TcpListener;

pub use certs::certificates;
pub use config_dump::config_dump;

use crate::listener::Listeners;
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
    /// Notified by `/quitquitquit`; `app::serve` then shuts down as on SIGTERM.
    pub shutdown: Arc<tokio::sync::Notify>,
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
                    async move { Ok::<_, Infallible>(route(role, &req, &ctx).await) }
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

/// The admin endpoints: path, whether it changes something (POST only), help text.
const ENDPOINTS: &[(&str, bool, &str)] = &[
    (
        "/certs",
        false,
        "loaded TLS credentials: subject, SANs, serial, expiry (never keys)",
    ),
    (
        "/clusters",
        false,
        "clusters, breaker thresholds, endpoints with health and counters; ?format=json",
    ),
    (
        "/config_dump",
        false,
        "effective resources, listeners, clusters, per-file status",
    ),
    (
        "/debug/route",
        false,
        "how a request would be routed: ?host=&path=&method=&port=&sni=&header=k:v",
    ),
    (
        "/drain_listeners",
        true,
        "close every gateway listener; open connections stay served (?graceful: they close after their request)",
    ),
    (
        "/listeners",
        false,
        "gateway listeners and bound addresses; ?format=json",
    ),
    (
        "/logging",
        false,
        "GET: log levels; POST ?level=<l>, ?<logger>=<l>, ?paths=a:l,b:l",
    ),
    ("/quitquitquit", true, "shut down gracefully, as on SIGTERM"),
    (
        "/ready",
        false,
        "200 LIVE when serving, else 503 with the server state",
    ),
    (
        "/stats",
        false,
        "stats as text; ?filter=<regex>, ?usedonly, ?format=json",
    ),
    (
        "/stats/prometheus",
        false,
        "stats in Prometheus text format",
    ),
];

async fn route(role: Role, req: &Request<Incoming>, ctx: &AdminContext) -> AdminResponse {
    let path = req.uri().path();
    let query = Query::parse(req.uri().query().unwrap_or(""));
    match (role, path) {
        (Role::Health, "/healthz/ready") if req.method() == Method::GET => lifecycle::ready(ctx),
        (Role::Health, "/healthz/live") if req.method() == Method::GET => lifecycle::live(),
        (Role::Metrics, "/stats/prometheus") if req.method() == Method::GET => prometheus(ctx),
        (Role::Admin, "/debug/route") if req.method() == Method::GET => {
            let (status, content_type, body) =
                crate::explain::debug_route(&ctx.shared, req.uri().query());
            reply(status, content_type, body)
        }
        (Role::Admin, _) => admin(req.method(), path, &query, ctx).await,
        _ => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n")),
    }
}

async fn admin(method: &Method, path: &str, query: &Query, ctx: &AdminContext) -> AdminResponse {
    let mutates = match path {
        "/logging" => !query.is_empty(),
        _ => ENDPOINTS.iter().any(|(p, post, _)| *p == path && *post),
    };
    if mutates && method != Method::POST {
        let message = format!("Method {method} not allowed, POST required (use POST {path}).\n");
        return text(StatusCode::BAD_REQUEST, message);
    }
    if method != Method::GET && method != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} not allowed.\n"),
        );
    }
    match path {
        "/ready" => lifecycle::ready(ctx),
        "/stats" => stats::stats(ctx, query),
        "/stats/prometheus" => prometheus(ctx),
        "/config_dump" => {
            let dump = config_dump(&ctx.shared.snapshot.load(), &ctx.listeners);
            json(StatusCode::OK, &dump)
        }
        "/listeners" => listeners::listeners(ctx, query),
        "/clusters" => clusters::clusters(ctx, query),
        "/certs" => json(StatusCode::OK, &certificates(&ctx.shared.snapshot.load())),
        "/logging" => logging::logging(query),
        "/drain_listeners" => lifecycle::drain_listeners(ctx, query.has("graceful")).await,
        "/quitquitquit" => lifecycle::quit(ctx),
        _ => not_found(path),
    }
}

fn prometheus(ctx: &AdminContext) -> AdminResponse {
    let body = ctx.prometheus.render();
    reply(StatusCode::OK, "text/plain; version=0.0.4", body)
}

/// Like Envoy's admin home: what is there.
fn not_found(path: &str) -> AdminResponse {
    let mut body = format!("no such endpoint: {path}\nadmin commands are:\n");
    for (p, post, help) in ENDPOINTS {
        let method = if *post { "POST" } else { "GET" };
        body.push_str(&format!("  {method:4} {p}: {help}\n"));
    }
    text(StatusCode::NOT_FOUND, body)
}

fn text(status: StatusCode, body: String) -> AdminResponse {
    reply(status, "text/plain", body)
}

fn json(status: StatusCode, value: &serde_json::Value) -> AdminResponse {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_default();
    body.push('\n');
    reply(status, "application/json", body)
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

/// A query string's parameters, percent-decoded, in order (`?usedonly` has an empty value).
#[derive(Debug, Default, PartialEq, Eq)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Self {
        let params = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query(params)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn wants_json(&self) -> bool {
        self.get("format") == Some("json")
    }
}

/// Percent-decoding (`+` is a space, as in forms); a malformed escape stays as written.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let q = Query::parse("filter=tollgate_http%7Bcode&usedonly&format=json&a=b+c&bad=%zz%4");
        assert_eq!(q.get("filter"), Some("tollgate_http{code"));
        assert!(q.has("usedonly") && q.wants_json());
        assert_eq!(q.get("a"), Some("b c"));
        assert_eq!(q.get("bad"), Some("%zz%4"));
        assert!(Query::parse("").is_empty());
    }
}
