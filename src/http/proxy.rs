//! One request's journey: virtual host, redirect, route, cluster, endpoint, upstream, response.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderValue, HOST};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};

use super::exchange::{Exchange, ObservedBody};
use super::headers::X_REQUEST_ID;
use super::local::{self, Generated, LocalReply};
use super::{Body, RequestIn};
use crate::policy::DestinationHeaders;
use crate::route::{Action, Redirect, RequestView, Route, RouteTable, Target};
use crate::snapshot::tls::{TlsAction, TlsListener};
use crate::snapshot::{ListenKey, ListenerKind};
use crate::state::Shared;

/// The Gateway server a TLS connection was established with, and the security policy it was
/// verified under.
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// The server's route-table name, stable across reloads.
    pub server: Arc<str>,
    pub fingerprint: u64,
    /// Where the server was in its listener at the handshake: found there at once while no
    /// reload has reordered the servers (a listener may have thousands).
    pub index: usize,
}

/// What a request needs to know about its connection.
pub struct ConnContext {
    pub shared: Arc<Shared>,
    pub key: ListenKey,
    pub peer: SocketAddr,
    /// `peer`'s address as a header value, for x-forwarded-for on every request.
    pub peer_header: HeaderValue,
    pub scheme: &'static str,
    /// On a TLS port: the server the SNI selected at handshake.
    pub tls_server: Option<TlsSession>,
    /// `x-forwarded-client-cert` for a connection that presented a client certificate.
    pub client_cert: Option<HeaderValue>,
    /// Addresses and SNI, for the access log.
    pub downstream: crate::telemetry::access_log::Downstream,
    /// Reads, writes and open requests, for the connection's timeouts.
    pub activity: Arc<super::watchdog::Activity>,
}

/// Serves one request: the connection manager's header edits, routing and forwarding, and the
/// exchange's record, which ends with the response body.
#[allow(clippy::manual_async_fn)] // arguments held once, not twice: see the body
pub fn handle(
    mut req: Request<RequestIn>,
    conn: &ConnContext,
) -> impl Future<Output = Response<ObservedBody>> + '_ {
    // A block rather than an `async fn`: see `forward::forward`.
    async move {
        let trusted = conn.shared.settings.num_trusted_proxies;
        let id = super::headers::on_arrival(req.headers_mut(), &conn.peer_header, trusted);
        normalize_path(&mut req, conn.shared.settings.path_normalization);
        let grpc = is_grpc(&req);
        let mut exchange = Exchange::start(&req, id, conn, grpc);
        let mut response = route_and_forward(req, conn, &mut exchange).await;
        if response.extensions().get::<Generated>().is_some() {
            if grpc && response.status().as_u16() >= 400 {
                response = grpc_local_reply(response).await;
            }
            // The request id on the gateway's own answers lets a user find the access log line.
            if let Some(id) = exchange.request_id() {
                response.headers_mut().insert(X_REQUEST_ID, id);
            }
        }
        exchange.respond(response)
    }
}

fn is_grpc(req: &Request<RequestIn>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

async fn grpc_local_reply(response: Response<Body>) -> Response<Body> {
    use http_body_util::BodyExt;
    let status = response.status();
    let generated = response
        .extensions()
        .get::<Generated>()
        .cloned()
        .unwrap_or(Generated::DIRECT);
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    local::grpc_error(status, &body, generated)
}

#[allow(clippy::manual_async_fn)] // arguments held once, not twice: see the body
fn route_and_forward<'a>(
    req: Request<RequestIn>,
    conn: &'a ConnContext,
    exchange: &'a mut Exchange,
) -> impl Future<Output = Response<Body>> + 'a {
    // A block: see `forward::forward`.
    async move {
        if matches!(req.version(), Version::HTTP_10 | Version::HTTP_09) {
            return LocalReply::UpgradeRequired.response();
        }
        // Each request routes with the snapshot current when it arrives; the decision owns what it
        // needs (the cluster), so the snapshot guard ends before any await.
        let selected = {
            let snapshot = conn.shared.snapshot.load();
            // A port that a reload removed serves no routes to its remaining connections.
            match (
                snapshot.listeners.get(&conn.key).map(|l| &l.kind),
                &conn.tls_server,
            ) {
                (Some(ListenerKind::Http(table)), None) => select(table, &req, conn, exchange),
                (Some(ListenerKind::Tls(tls)), Some(server)) => {
                    select_tls(tls, server, &req, conn, exchange)
                }
                _ => Selected::Reply(LocalReply::NoRoute),
            }
        };
        match selected {
            Selected::Forward(target, route, headers) => {
                if let Target::Cluster(cluster) = &target {
                    exchange.cluster = Some(cluster.clone());
                }
                super::forward::forward(req, target, route, headers, conn, exchange).await
            }
            Selected::Reply(reply) => reply.response(),
            Selected::Response(response) => response,
        }
    }
}

/// Routes and forwards the normalized path (`--path-normalization`; Istio's default: BASE).
fn normalize_path(req: &mut Request<RequestIn>, mode: super::path::PathNormalization) {
    if let Some(path) = mode.apply(req.uri().path()) {
        super::path::set_path(req.uri_mut(), &path);
    }
}

enum Selected {
    /// The target, the route, and the target's own header operations.
    Forward(Target, Arc<Route>, Option<Arc<DestinationHeaders>>),
    Reply(LocalReply),
    Response(Response<Body>),
}

/// A TLS connection routes only with the route table of the server its SNI selected, and only
/// while that server's security policy is the one the connection was verified under. A Host that
/// another server on the port owns gets 421, whatever this server's own table holds (a `*` or
/// wildcard server's table may list a more specific server's hosts): no domain fronting into a
/// MUTUAL server, and a browser that coalesced connections retries on a fresh one.
fn select_tls(
    tls: &TlsListener,
    session: &TlsSession,
    req: &Request<RequestIn>,
    conn: &ConnContext,
    exchange: &mut Exchange,
) -> Selected {
    let server = tls
        .servers
        .get(session.index)
        .filter(|s| *s.name == *session.server)
        .or_else(|| tls.servers.iter().find(|s| *s.name == *session.server))
        .map(|s| &s.action);
    let Some(TlsAction::Https {
        routes,
        fingerprint,
        ..
    }) = server
    else {
        return Selected::Reply(LocalReply::MisdirectedRequest);
    };
    if *fingerprint != session.fingerprint {
        return Selected::Reply(LocalReply::MisdirectedRequest);
    }
    let owner = tls.host_owner(authority(req)).map(|s| &*s.name);
    if owner.is_some_and(|o| *o != *session.server) {
        return Selected::Reply(LocalReply::MisdirectedRequest);
    }
    select(routes, req, conn, exchange)
}

/// Pure routing: virtual host, redirect, route, then the weighted target or a direct answer.
fn select(
    table: &RouteTable,
    req: &Request<RequestIn>,
    conn: &ConnContext,
    exchange: &mut Exchange,
) -> Selected {
    let authority = authority(req);
    let Some(vhost) = table.find_vhost(authority) else {
        return Selected::Reply(LocalReply::NoRoute);
    };
    if vhost.https_redirect {
        return Selected::Response(https_redirect(
            req,
            authority,
            conn.shared.settings.https_redirect_port,
        ));
    }
    let path_and_query = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    let view = RequestView {
        path: req.uri().path(),
        query: req.uri().query(),
        method: req.method(),
        scheme: conn.scheme,
        authority,
        headers: req.headers(),
    };
    let Some(route) = vhost.find_route(&view) else {
        return Selected::Reply(LocalReply::NoRoute);
    };
    exchange.matched(route);
    match &route.action {
        Action::Forward(clusters) => match clusters.pick_with_headers(fastrand::u64(..)) {
            Some((target, headers)) => {
                Selected::Forward(target.clone(), route.clone(), headers.cloned())
            }
            None => Selected::Reply(LocalReply::ClusterNotFound),
        },
        Action::Redirect(r) => Selected::Response(route_redirect(
            r,
            conn.scheme,
            authority,
            path_and_query,
            conn.key.port,
        )),
        Action::Direct(d) => Selected::Response(local::text(
            StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK),
            d.body.clone(),
        )),
    }
}

/// The Host header, or `:authority` for HTTP/2.
fn authority(req: &Request<RequestIn>) -> &str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("")
}

/// `httpsRedirect`: 301 to https, before any route matching. Deliberately unlike Envoy, the port
/// of the Host header is dropped (it is the plain-HTTP port, often a NodePort) unless
/// `--https-redirect-port` names one.
fn https_redirect(req: &Request<RequestIn>, authority: &str, port: Option<u16>) -> Response<Body> {
    let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    let location = https_redirect_location(authority, path, port);
    local::redirect(StatusCode::MOVED_PERMANENTLY, &location)
}

/// The Location of an `httpsRedirect` (shared with `tollgate explain`).
pub(crate) fn https_redirect_location(authority: &str, path: &str, port: Option<u16>) -> String {
    let host = crate::route::strip_port(authority);
    match port {
        Some(p) if p != 443 => format!("https://{host}:{p}{path}"),
        _ => format!("https://{host}{path}"),
    }
}

/// VirtualService `redirect` (reference §2.6).
fn route_redirect(
    r: &Redirect,
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    gateway_port: u16,
) -> Response<Body> {
    let location = redirect_location(r, scheme, authority, path_and_query, gateway_port);
    local::redirect(
        StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY),
        &location,
    )
}

/// The Location of a VirtualService `redirect` (shared with `tollgate explain`).
pub(crate) fn redirect_location(
    r: &Redirect,
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    gateway_port: u16,
) -> String {
    let new_scheme = r.scheme.as_deref().unwrap_or(scheme);
    let host = crate::route::strip_port(authority);
    let old_port = authority[host.len()..]
        .strip_prefix(':')
        .and_then(|p| p.parse::<u16>().ok());
    let host = r.authority.as_deref().unwrap_or(host);
    // A new authority drops the request's port; an explicit port always wins.
    let port = if r.authority.is_some() || r.port.is_some() {
        r.port
    } else if r.port_from_request {
        Some(gateway_port)
    } else if new_scheme != scheme && old_port == Some(if scheme == "https" { 443 } else { 80 }) {
        None
    } else {
        old_port
    };
    let port =
        port.filter(|p| !(*p == 80 && new_scheme == "http" || *p == 443 && new_scheme == "https"));
    let path = match &r.uri {
        Some(uri) if uri.contains('?') => uri.clone(),
        Some(uri) => match path_and_query.split_once('?') {
            Some((_, q)) => format!("{uri}?{q}"),
            None => uri.clone(),
        },
        None => path_and_query.to_string(),
    };
    match port {
        Some(p) => format!("{new_scheme}://{host}:{p}{path}"),
        None => format!("{new_scheme}://{host}{path}"),
    }
}
