//! Routing explained: what the gateway would do with one request, step by step, and why
//! (`tollgate explain`, admin `/debug/route`). Pure: it reads a snapshot and calls the data
//! path's own selection code (listener by port, server by SNI, virtual host by Host, first
//! matching route, weighted destinations), so an explanation cannot disagree with the proxy.

mod command;
mod debug;
mod http_steps;
mod text;

use http::{HeaderMap, Method};
use serde::Serialize;

use crate::snapshot::tls::{TlsAction, TlsListener, TlsServer};
use crate::snapshot::{Listener, ListenerKind, ServerClass, Snapshot};

pub use command::run;
pub use debug::debug_route;

/// One request to explain.
#[derive(Debug, Clone)]
pub struct Query {
    /// Gateway port; `None`: 443 for https, 80 otherwise, or the only listener of that class.
    pub port: Option<u16>,
    /// `http` or `https`; `None`: https when an SNI is given, else http (a given port's class wins).
    pub scheme: Option<String>,
    /// SNI sent; `None`: the Host's name on https (none for an IP literal), `Some("")`: no SNI.
    pub sni: Option<String>,
    /// Host / `:authority` as sent, port included.
    pub authority: String,
    /// Path with query string, before normalization.
    pub path: String,
    pub method: Method,
    pub headers: HeaderMap,
    /// `--https-redirect-port` of the gateway, for the Location of `httpsRedirect`.
    pub https_redirect_port: Option<u16>,
    /// `--path-normalization` of the gateway.
    pub path_normalization: crate::http::path::PathNormalization,
}

impl Query {
    /// A GET of `path` for `authority`, everything else defaulted.
    pub fn get(authority: &str, path: &str) -> Self {
        Query {
            port: None,
            scheme: None,
            sni: None,
            authority: authority.to_string(),
            path: path.to_string(),
            method: Method::GET,
            headers: HeaderMap::new(),
            https_redirect_port: None,
            path_normalization: Default::default(),
        }
    }
}

/// What the gateway would do, and why. Sections stay empty past the step that decided.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub request: RequestInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_table: Option<RouteTableInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_host: Option<VhostInfo>,
    /// Routes tried in order, up to and including the one that matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_route: Option<String>,
    /// When no route matched: the one with the fewest failing conditions (ties: the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closest_route: Option<RouteCheck>,
    /// A TCP or TLS stream's route (`ns/vs.tcp[i]`, `ns/vs.tls[i]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_route: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestinationInfo>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestInfo {
    pub scheme: String,
    pub sni: Option<String>,
    pub authority: String,
    pub method: String,
    pub path: String,
    /// The path routing sees after dot-segment removal, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized_path: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerInfo {
    pub port: u16,
    pub bind: String,
    pub class: ServerClass,
    pub gateways: Vec<String>,
    /// Why this port: given, the scheme's default, or the only listener of the class.
    pub chosen: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    pub sni: Option<String>,
    /// The server's route-table name (or the tls route of a PASSTHROUGH match).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// `exact a.com`, `wildcard *.b.com`, `catch-all *`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<String>,
    /// `terminate` (HTTPS), `terminate-tcp`, `passthrough`, `no-route`, `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// Every SNI host of the port with the server that takes it: `a.com → https.443...`.
    pub servers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteTableInfo {
    pub name: String,
    pub domains: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VhostInfo {
    pub domain: String,
    pub matched_by: String,
    pub https_redirect: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteCheck {
    /// Position in the virtual host (0-based).
    pub index: usize,
    pub name: String,
    pub matched: bool,
    /// Every failing condition, in words; the first is the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationInfo {
    pub cluster: String,
    pub weight: u64,
    /// Share of requests, percent.
    pub percent: f64,
    pub exists: bool,
    /// `static`, `dns` (resolved at first use) or `missing`.
    pub source: &'static str,
    pub endpoints: Vec<EndpointInfo>,
    /// Why requests sent here fail, if they do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointInfo {
    pub address: String,
    pub weight: u32,
    /// Not ejected by outlier detection.
    pub healthy: bool,
    /// In the list load balancing picks from now.
    pub serving: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Forward,
    Redirect,
    DirectResponse,
    /// A TCP, terminated-TLS or passthrough stream forwarded by its route.
    StreamForward,
    NoListener,
    TlsHandshakeFailure,
    ConnectionClosed,
    MisdirectedRequest,
    NoRoute,
    ClusterNotFound,
    NoHealthyUpstream,
}

impl OutcomeKind {
    /// Whether the gateway answers as configured (forward, redirect, direct response).
    pub fn routed(self) -> bool {
        matches!(
            self,
            OutcomeKind::Forward
                | OutcomeKind::Redirect
                | OutcomeKind::DirectResponse
                | OutcomeKind::StreamForward
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub routed: bool,
    /// HTTP status of the answer, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Envoy response flag (`NR`, `NC`, `UH`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub message: String,
}

impl Outcome {
    fn new(kind: OutcomeKind, message: String) -> Self {
        Outcome {
            kind,
            routed: kind.routed(),
            status: None,
            flag: None,
            location: None,
            message,
        }
    }

    /// A local reply of the data path, with its own status and flag.
    fn reply(kind: OutcomeKind, reply: crate::http::local::LocalReply, message: String) -> Self {
        let flag = Some(reply.flag())
            .filter(|f| !f.is_empty())
            .map(|f| f.to_string());
        Outcome {
            status: Some(reply.response().status().as_u16()),
            flag,
            ..Outcome::new(kind, message)
        }
    }
}

/// Explains `query` against `snapshot`.
pub fn explain(snapshot: &Snapshot, query: &Query) -> Explanation {
    let mut ex = Explanation::new(query);
    let listener = match pick_listener(snapshot, query) {
        Ok((listener, chosen)) => listener_step(&mut ex, listener, chosen),
        Err(outcome) => return ex.done(outcome),
    };
    let outcome = match (&listener.kind, ex.request.scheme.as_str()) {
        (ListenerKind::Http(_), "https") => Outcome::new(
            OutcomeKind::TlsHandshakeFailure,
            format!(
                "TLS handshake fails: port {} serves plain HTTP",
                listener.key.port
            ),
        ),
        (ListenerKind::Http(table), _) => http_steps::route(&mut ex, table, query),
        (ListenerKind::Tls(_), "http") => Outcome::new(
            OutcomeKind::ConnectionClosed,
            format!(
                "connection closed: port {} expects TLS and plain HTTP is no ClientHello",
                listener.key.port
            ),
        ),
        (ListenerKind::Tls(tls), _) => tls_step(&mut ex, tls, query),
        (ListenerKind::Tcp(route), _) => match route {
            Some(route) => http_steps::stream(&mut ex, route),
            None => refused(listener.key.port, "no VirtualService tcp route applies"),
        },
    };
    ex.done(outcome)
}

impl Explanation {
    fn new(query: &Query) -> Self {
        let (path, _) = split_query(&query.path);
        let normalized_path = query.path_normalization.apply(path);
        Explanation {
            request: RequestInfo {
                scheme: query.scheme.clone().unwrap_or_default(),
                sni: None,
                authority: query.authority.clone(),
                method: query.method.to_string(),
                path: query.path.clone(),
                normalized_path,
                headers: query
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
            },
            listener: None,
            tls: None,
            route_table: None,
            virtual_host: None,
            routes: Vec::new(),
            matched_route: None,
            closest_route: None,
            stream_route: None,
            destinations: Vec::new(),
            outcome: Outcome::new(OutcomeKind::NoListener, String::new()),
        }
    }

    fn done(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// `path?query` → (`path`, `query`).
fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

fn refused(port: u16, why: &str) -> Outcome {
    Outcome::new(
        OutcomeKind::NoListener,
        format!("connection refused: port {port} is not opened ({why})"),
    )
}

/// The listener the request reaches, and why that one; the outcome when there is none.
fn pick_listener<'s>(
    snapshot: &'s Snapshot,
    query: &Query,
) -> Result<(&'s Listener, String), Outcome> {
    let wants_tls = query.scheme.as_deref() == Some("https")
        || (query.scheme.is_none() && query.sni.as_deref().is_some_and(|s| !s.is_empty()));
    let (found, port, chosen) = match query.port {
        Some(port) => (
            on_port(snapshot, port),
            port,
            format!("port {port} as given"),
        ),
        None => default_listener(snapshot, wants_tls),
    };
    let Some(listener) = found else {
        let ports: Vec<String> = snapshot
            .listeners
            .values()
            .map(|l| l.key.port.to_string())
            .collect();
        return Err(Outcome::new(
            OutcomeKind::NoListener,
            format!(
                "connection refused: no Gateway server on port {port} (ports: {})",
                list_or_none(&ports)
            ),
        ));
    };
    if !crate::listener::servable(listener) {
        return Err(refused(listener.key.port, "nothing on it can serve"));
    }
    Ok((listener, chosen))
}

fn on_port(snapshot: &Snapshot, port: u16) -> Option<&Listener> {
    let mut all = snapshot.listeners.values().map(|l| &**l);
    all.find(|l| l.key.port == port)
}

/// Without a port: the scheme's default port, else the only listener of the scheme's class.
fn default_listener(snapshot: &Snapshot, wants_tls: bool) -> (Option<&Listener>, u16, String) {
    let (default, class) = if wants_tls {
        (443, ServerClass::Tls)
    } else {
        (80, ServerClass::Http)
    };
    let of_class: Vec<&Listener> = snapshot
        .listeners
        .values()
        .map(|l| &**l)
        .filter(|l| l.class == class)
        .collect();
    match (on_port(snapshot, default), of_class.as_slice()) {
        (Some(l), _) => (Some(l), default, format!("default port {default}")),
        (None, [only]) => (
            Some(*only),
            only.key.port,
            format!("the only {class:?} listener (no port {default})").to_lowercase(),
        ),
        _ => (None, default, format!("default port {default}")),
    }
}

fn listener_step<'s>(ex: &mut Explanation, listener: &'s Listener, chosen: String) -> &'s Listener {
    if ex.request.scheme.is_empty() {
        let tls = matches!(listener.kind, ListenerKind::Tls(_));
        ex.request.scheme = if tls { "https" } else { "http" }.into();
    }
    ex.listener = Some(ListenerInfo {
        port: listener.key.port,
        bind: listener.key.bind.to_string(),
        class: listener.class,
        gateways: listener.gateways.clone(),
        chosen,
    });
    listener
}

/// `a, b` or `none`.
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The SNI the client sends: given, else the Host's name unless it is an IP literal.
fn effective_sni(query: &Query) -> Option<String> {
    match &query.sni {
        Some(s) if s.is_empty() => None,
        Some(s) => Some(s.clone()),
        None => {
            let host = crate::route::strip_port(&query.authority);
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let ip = bare.parse::<std::net::IpAddr>().is_ok();
            (!ip && !host.is_empty()).then(|| host.to_ascii_lowercase())
        }
    }
}

/// The server the SNI selects (with the data path's own selection) and what it does.
fn tls_step(ex: &mut Explanation, tls: &TlsListener, query: &Query) -> Outcome {
    let sni = effective_sni(query);
    ex.request.sni = sni.clone();
    let servers = sni_entries(tls);
    let chosen = crate::tls::terminate::select(tls, sni.as_deref()).copied();
    let mut info = TlsInfo {
        sni: sni.clone(),
        server: None,
        matched_by: None,
        mode: None,
        servers: servers
            .iter()
            .map(|(host, i)| format!("{host} → {}", tls.servers[*i].name))
            .collect(),
    };
    let Some(index) = chosen else {
        ex.tls = Some(info);
        return no_server(ex, &servers, sni.as_deref());
    };
    let server = &tls.servers[index];
    info.server = Some(server.name.to_string());
    info.matched_by = Some(matched_by(&servers, index, sni.as_deref()));
    info.mode = Some(mode(&server.action));
    ex.tls = Some(info);
    server_action(ex, tls, server, query)
}

/// No server takes the SNI: Envoy has no filter chain, tollgate sends `unrecognized_name`.
fn no_server(ex: &Explanation, servers: &[(String, usize)], sni: Option<&str>) -> Outcome {
    let hosts: Vec<String> = servers.iter().map(|(h, _)| h.clone()).collect();
    let port = ex.listener.as_ref().map_or(0, |l| l.port);
    let what = match sni {
        Some(sni) => format!("SNI {sni} matches no server"),
        // Only a `*` server takes a hello without SNI (IP-literal URLs send none).
        None => "no SNI sent and no * server".to_string(),
    };
    Outcome::new(
        OutcomeKind::TlsHandshakeFailure,
        format!(
            "TLS handshake fails: {what} on port {port} (servers: {})",
            list_or_none(&hosts)
        ),
    )
}

/// What the selected server does with the connection (and, on HTTPS, the request).
fn server_action(
    ex: &mut Explanation,
    tls: &TlsListener,
    server: &TlsServer,
    query: &Query,
) -> Outcome {
    match &server.action {
        TlsAction::Https { routes, .. } => {
            let owner = tls.host_owner(&query.authority);
            match owner.filter(|o| o.name != server.name) {
                Some(other) => misdirected(&query.authority, other),
                None => http_steps::route(ex, routes, query),
            }
        }
        TlsAction::TerminateTcp { route, .. } | TlsAction::Passthrough(route) => {
            http_steps::stream(ex, route)
        }
        TlsAction::NoRoute => Outcome::new(
            OutcomeKind::ConnectionClosed,
            format!(
                "connection reset after the ClientHello: {} is PASSTHROUGH and no VirtualService tls route covers this SNI",
                server.name
            ),
        ),
        TlsAction::Unavailable => Outcome::new(
            OutcomeKind::TlsHandshakeFailure,
            format!(
                "TLS handshake fails: server {} cannot serve (credential not loaded or mode not served; see tollgate check)",
                server.name
            ),
        ),
    }
}

fn misdirected(authority: &str, owner: &TlsServer) -> Outcome {
    Outcome::reply(
        OutcomeKind::MisdirectedRequest,
        crate::http::local::LocalReply::MisdirectedRequest,
        format!(
            "421 Misdirected Request: Host {authority} belongs to server {} of this port; connect with that SNI",
            owner.name
        ),
    )
}

fn mode(action: &TlsAction) -> &'static str {
    match action {
        TlsAction::Https { .. } => "terminate",
        TlsAction::TerminateTcp { .. } => "terminate-tcp",
        TlsAction::Passthrough(_) => "passthrough",
        TlsAction::NoRoute => "no-route",
        TlsAction::Unavailable => "unavailable",
    }
}

/// Every SNI host of the port with its server index, sorted by host.
fn sni_entries(tls: &TlsListener) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = tls.sni.entries().map(|(h, &i)| (h, i)).collect();
    out.sort();
    out
}

/// Why server `index` took the SNI: the most specific of its names that covers it (the
/// selection itself is the data path's; this only names the reason).
fn matched_by(entries: &[(String, usize)], index: usize, sni: Option<&str>) -> String {
    let Some(sni) = sni.map(str::to_ascii_lowercase) else {
        return "catch-all * (no SNI sent)".into();
    };
    let covering: Vec<&str> = entries
        .iter()
        .filter(|(_, i)| *i == index)
        .map(|(h, _)| h.as_str())
        .filter(|h| covers(h, &sni))
        .collect();
    if covering.contains(&sni.as_str()) {
        return format!("exact {sni}");
    }
    let wildcard = covering
        .iter()
        .filter(|h| h.len() > 1 && h.starts_with('*'))
        .max_by_key(|h| h.len());
    match wildcard {
        Some(w) => format!("wildcard {w}"),
        None => "catch-all *".into(),
    }
}

/// Whether host pattern `pattern` (`a.com`, `*.a.com`, `*`) covers the name `name`.
fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => suffix.is_empty() || name.ends_with(suffix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests;
