//! HTTPS and TLS ports: servers chosen by SNI (reference §1.7, §1.9). Each terminating HTTPS
//! server gets its own rustls configuration and its own route table
//! (`https.<port>.<portName>.<gateway>.<namespace>`), so a request can only reach the
//! VirtualServices bound to the hosts of the server its SNI selected. PASSTHROUGH servers add
//! one entry per VirtualService `tls` match, keyed by its `sniHosts`.

use std::sync::Arc;

use rustls::ServerConfig;

use super::credentials::Resolved;
use super::gateway::{PortPlan, ServerRef};
use super::http_routes::{BoundVs, TableBuilder};
use super::l4::{self, L4Route};
use super::Options;
use crate::config::{Diagnostic, Finding, Severity};
use crate::hostmap::HostMap;
use crate::route::RouteTable;
use crate::tls::server_config::{self, ClientAuth, TlsSettings};
use crate::tls::Credential;

#[derive(Debug)]
pub struct TlsListener {
    pub servers: Vec<TlsServer>,
    /// Server index by SNI: exact, longest wildcard, then `*` (which also takes hellos without SNI).
    pub sni: HostMap<usize>,
}

#[derive(Debug)]
pub struct TlsServer {
    /// Envoy's route-table name for the server; stable across reloads.
    pub name: Arc<str>,
    pub action: TlsAction,
    /// Its handshake counters (`tollgate_tls_handshakes_total{server=name}`).
    pub handshakes: Arc<crate::metrics::HandshakeStats>,
}

#[derive(Debug)]
pub enum TlsAction {
    /// Terminate TLS, then serve HTTP with this server's own route table.
    Https {
        config: Arc<ServerConfig>,
        routes: Arc<RouteTable>,
        /// The server's security policy, hashed: a connection made under another policy (before
        /// a reload made the server MUTUAL, say) must not be served by this one.
        fingerprint: u64,
    },
    /// A `TLS` server with SIMPLE or MUTUAL: terminate, then forward the decrypted stream by the
    /// server's `tcp` route (reference §1.2).
    TerminateTcp {
        config: Arc<ServerConfig>,
        route: Arc<L4Route>,
    },
    /// PASSTHROUGH: forward the untouched TLS stream by a `tls` route's `sniHosts`.
    Passthrough(Arc<L4Route>),
    /// A PASSTHROUGH server's host that no `tls` route covers: closed after the ClientHello, as
    /// Envoy does (no filter chain).
    NoRoute,
    /// Matched by SNI but cannot be served (its credential failed to load, or a mode tollgate
    /// does not serve): handshakes for its hosts are refused with an alert.
    Unavailable,
}

impl TlsListener {
    /// Whether any server on the port can serve traffic (otherwise the port is not opened).
    pub fn serves_anything(&self) -> bool {
        self.servers.iter().any(|s| {
            matches!(
                s.action,
                TlsAction::Https { .. }
                    | TlsAction::TerminateTcp { .. }
                    | TlsAction::Passthrough(_)
            )
        })
    }

    /// The server that owns a request's Host (port ignored), as SNI selection would pick it: a
    /// request on another server's connection gets 421.
    pub fn host_owner(&self, authority: &str) -> Option<&TlsServer> {
        let host = crate::route::strip_port(authority);
        crate::tls::terminate::select(self, Some(host)).map(|&i| &self.servers[i])
    }

    /// Adds a server for `hosts`; a host an earlier server or chain already claimed stays theirs,
    /// and `on_duplicate(position, host, owner)` is told.
    fn add<'h>(
        &mut self,
        name: Arc<str>,
        action: TlsAction,
        hosts: impl Iterator<Item = &'h str>,
        mut on_duplicate: impl FnMut(usize, &str, &str),
    ) {
        let index = self.servers.len();
        let handshakes = Arc::new(crate::metrics::HandshakeStats::new(name.clone()));
        self.servers.push(TlsServer {
            name,
            action,
            handshakes,
        });
        for (k, host) in hosts.enumerate() {
            let host = host.to_ascii_lowercase();
            match self.sni.insert(&host, index) {
                Ok(()) => {}
                // Listed twice by the same server or match: nothing to say.
                Err(&owner) if owner == index => {}
                Err(&owner) => on_duplicate(k, &host, &self.servers[owner].name),
            }
        }
    }
}

pub(crate) fn listener(
    plan: &PortPlan<'_>,
    vss: &[BoundVs<'_>],
    builder: &mut TableBuilder<'_, '_>,
    credentials: &Resolved,
    opts: &Options,
) -> TlsListener {
    let port = plan.key.port;
    let mut listener = TlsListener {
        servers: Vec::with_capacity(plan.servers.len()),
        sni: HostMap::new(),
    };
    for server in &plan.servers {
        let name: Arc<str> = route_table_name(port, server).into();
        if passes_through(server, builder.diags) {
            add_passthrough(&mut listener, server, name, port, vss, builder);
            continue;
        }
        let action = terminating(server, &name, port, vss, builder, credentials, opts);
        let diags = &mut *builder.diags;
        let hosts = server.hosts.iter().map(|h| h.name.as_str());
        listener.add(name, action, hosts, |_, host, owner| {
            let message = format!(
                "host {host:?} on port {port} is already served by {owner}; this server does not get it"
            );
            diags.push(server.diag(Severity::Error, "hosts", message));
        });
    }
    listener
}

/// PASSTHROUGH (or `tls` without a mode, which Istio treats the same): said loudly on an HTTPS
/// server, where it is a classic misconfiguration (reference §8.12).
fn passes_through(server: &ServerRef<'_>, diags: &mut Vec<Diagnostic>) -> bool {
    let Some(tls) = &server.server.tls else {
        return false;
    };
    if tls.mode.as_deref().unwrap_or("PASSTHROUGH") != "PASSTHROUGH" {
        return false;
    }
    if server.protocol().eq_ignore_ascii_case("HTTPS") {
        let why = if tls.mode.is_none() {
            "tls.mode is not set, so this HTTPS server is PASSTHROUGH"
        } else {
            "this HTTPS server is PASSTHROUGH"
        };
        let message = format!("{why}: TLS is not terminated, streams follow VirtualService tls routes (as with protocol TLS) and http routes do not apply");
        diags.push(server.diag(Severity::Warning, "tls.mode", message));
    }
    true
}

/// One entry per `tls` match that applies (its `sniHosts`), then the server's own hosts for
/// whatever SNI no match covers (closed, as in Envoy).
fn add_passthrough(
    listener: &mut TlsListener,
    server: &ServerRef<'_>,
    name: Arc<str>,
    port: u16,
    vss: &[BoundVs<'_>],
    builder: &mut TableBuilder<'_, '_>,
) {
    let chains = l4::sni_chains(server, port, vss, builder);
    if chains.is_empty() {
        let message = "no VirtualService tls route applies to this PASSTHROUGH server; connections for its hosts are closed";
        builder
            .diags
            .push(server.diag(Severity::Warning, "", message.into()));
    }
    for chain in chains {
        let diags = &mut *builder.diags;
        let resource = chain.vs.resource;
        let hosts = chain.sni_hosts.iter().map(|h| h.as_str());
        let name = chain.route.name.clone();
        let field = chain.field;
        listener.add(name, TlsAction::Passthrough(chain.route), hosts, |k, host, owner| {
            let message = format!(
                "SNI host {host:?} on port {port} is already served by {owner}; this match does not get it"
            );
            let finding = Finding::new(Severity::Error, &format!("{field}.sniHosts[{k}]"), message, None);
            diags.push(finding.at(resource));
        });
    }
    let hosts = server.hosts.iter().map(|h| h.name.as_str());
    listener.add(name, TlsAction::NoRoute, hosts, |_, _, _| {});
}

fn route_table_name(port: u16, server: &ServerRef<'_>) -> String {
    let port_name = server.port_name();
    let key = &server.gateway.resource.key;
    format!("https.{port}.{port_name}.{}.{}", key.name, key.namespace)
}

/// A server that terminates TLS: HTTP with its own route table on HTTPS, the `tcp` route on TLS.
fn terminating(
    server: &ServerRef<'_>,
    name: &str,
    port: u16,
    vss: &[BoundVs<'_>],
    builder: &mut TableBuilder<'_, '_>,
    credentials: &Resolved,
    opts: &Options,
) -> TlsAction {
    let Some(tls) = &server.server.tls else {
        return TlsAction::Unavailable;
    };
    let http = server.protocol().eq_ignore_ascii_case("HTTPS");
    let mode = tls.mode.as_deref().unwrap_or("PASSTHROUGH");
    let client_auth = match mode {
        "SIMPLE" => ClientAuth::None,
        "MUTUAL" => ClientAuth::Required,
        "OPTIONAL_MUTUAL" => ClientAuth::Optional,
        _ => {
            let why = format!(
                "tls.mode {mode} is not served by tollgate; handshakes for its hosts are refused"
            );
            return unavailable(server, builder.diags, why);
        }
    };
    let tcp_route = if http {
        None
    } else if let Some(route) = l4::tcp_route(server, port, vss, builder) {
        Some(route)
    } else {
        let why = "no VirtualService tcp route applies to this TLS server; handshakes for its hosts are refused";
        return unavailable(server, builder.diags, why.into());
    };
    let key = (server.gateway.key.clone(), server.port_name().to_string());
    let Some(credentials) = credentials.get(&key) else {
        // Already reported where the credential failed.
        return TlsAction::Unavailable;
    };
    let pins = crate::tls::client_verify::Pins::new(
        &tls.subject_alt_names,
        &tls.verify_certificate_spki,
        &tls.verify_certificate_hash,
    );
    let fingerprint = policy_fingerprint(name, server, client_auth, credentials, &pins);
    let settings = TlsSettings {
        credentials,
        client_auth,
        min_version: tls.min_protocol_version.as_deref(),
        max_version: tls.max_protocol_version.as_deref(),
        cipher_suites: &tls.cipher_suites,
        pins,
        fingerprint,
        http,
    };
    let config = match server_config::build(&settings, &opts.resumption) {
        Ok((config, warnings)) => {
            for w in warnings {
                builder.diags.push(server.diag(Severity::Warning, "tls", w));
            }
            config
        }
        Err(e) => {
            builder.diags.push(server.diag(
                Severity::Error,
                "tls",
                format!("{e}; handshakes for this server's hosts fail"),
            ));
            return TlsAction::Unavailable;
        }
    };
    if let Some(route) = tcp_route {
        return TlsAction::TerminateTcp { config, route };
    }
    let routes = builder.http_table(name.to_string(), port, std::slice::from_ref(server), vss);
    TlsAction::Https {
        config,
        routes: Arc::new(routes),
        fingerprint,
    }
}

/// What decides who may use a server: its name and hosts, client-auth mode, client CA, CRLs and
/// pins. Certificates the server presents do not count (rotating them changes no client's rights).
fn policy_fingerprint(
    name: &str,
    server: &ServerRef<'_>,
    client_auth: ClientAuth,
    credentials: &[Credential],
    pins: &crate::tls::client_verify::Pins,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    for host in &server.hosts {
        (&host.namespace, &host.name).hash(&mut h);
    }
    client_auth.hash(&mut h);
    if let Some(first) = credentials.first() {
        for cert in first.client_ca.iter().flatten() {
            cert.as_ref().hash(&mut h);
        }
        for crl in &first.crls {
            crl.as_ref().hash(&mut h);
        }
    }
    pins.hash(&mut h);
    h.finish()
}

fn unavailable(server: &ServerRef<'_>, diags: &mut Vec<Diagnostic>, why: String) -> TlsAction {
    diags.push(server.diag(Severity::Warning, "tls.mode", why));
    TlsAction::Unavailable
}
