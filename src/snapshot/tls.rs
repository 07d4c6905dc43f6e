//! HTTPS and TLS ports: servers chosen by SNI (reference §1.7, §1.9). Each terminating HTTPS
//! server gets its own rustls configuration and its own route table
//! (`https.<port>.<portName>.<gateway>.<namespace>`), so a request can only reach the
//! VirtualServices bound to the hosts of the server its SNI selected.

use std::sync::Arc;

use rustls::ServerConfig;

use super::credentials::Resolved;
use super::gateway::{PortPlan, ServerRef};
use super::http_routes::{BoundVs, TableBuilder};
use super::Options;
use crate::config::{Diagnostic, Severity};
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
    /// Matched by SNI but cannot be served (its credential failed to load, or a mode tollgate
    /// does not serve yet): handshakes for its hosts are refused with an alert.
    Unavailable(String),
}

impl TlsListener {
    /// Whether any server on the port can serve traffic (otherwise the port is not opened).
    pub fn serves_anything(&self) -> bool {
        self.servers
            .iter()
            .any(|s| matches!(s.action, TlsAction::Https { .. }))
    }
}

pub(crate) fn listener(
    plan: &PortPlan<'_>,
    vss: &[BoundVs<'_>],
    builder: &mut TableBuilder<'_, '_>,
    credentials: &Resolved,
    opts: &Options,
) -> TlsListener {
    let mut sni = HostMap::new();
    let mut servers = Vec::with_capacity(plan.servers.len());
    for (i, server) in plan.servers.iter().enumerate() {
        let name = route_table_name(plan.key.port, server);
        let action = action(
            server,
            &name,
            plan.key.port,
            vss,
            builder,
            credentials,
            opts,
        );
        for host in &server.hosts {
            sni.insert(&host.name, i);
        }
        servers.push(TlsServer {
            name: name.into(),
            action,
        });
    }
    TlsListener { servers, sni }
}

fn route_table_name(port: u16, server: &ServerRef<'_>) -> String {
    let port_name = server.port_name();
    let key = &server.gateway.resource.key;
    format!("https.{port}.{port_name}.{}.{}", key.name, key.namespace)
}

fn action(
    server: &ServerRef<'_>,
    name: &str,
    port: u16,
    vss: &[BoundVs<'_>],
    builder: &mut TableBuilder<'_, '_>,
    credentials: &Resolved,
    opts: &Options,
) -> TlsAction {
    let Some(tls) = &server.server.tls else {
        return TlsAction::Unavailable("no tls settings".into());
    };
    let protocol = server.protocol().to_ascii_uppercase();
    let mode = tls.mode.as_deref().unwrap_or("PASSTHROUGH");
    let client_auth = match mode {
        "SIMPLE" => ClientAuth::None,
        "MUTUAL" => ClientAuth::Required,
        "OPTIONAL_MUTUAL" => ClientAuth::Optional,
        _ => {
            let why =
                format!("tls.mode {mode} is not served yet; handshakes for its hosts are refused");
            return unavailable(server, builder.diags, why);
        }
    };
    if protocol != "HTTPS" {
        let why = "a TLS server that terminates and forwards to tcp routes is not served yet; handshakes are refused";
        return unavailable(server, builder.diags, why.into());
    }
    let key = (server.gateway.key.clone(), server.port_name().to_string());
    let Some(credentials) = credentials.get(&key) else {
        // Already reported where the credential failed.
        return TlsAction::Unavailable("the server's credential did not load".into());
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
    };
    match server_config::build(&settings, &opts.resumption) {
        Ok((config, warnings)) => {
            for w in warnings {
                builder.diags.push(server.diag(Severity::Warning, "tls", w));
            }
            let routes =
                builder.http_table(name.to_string(), port, std::slice::from_ref(server), vss);
            TlsAction::Https {
                config,
                routes: Arc::new(routes),
                fingerprint,
            }
        }
        Err(e) => {
            builder.diags.push(server.diag(
                Severity::Error,
                "tls",
                format!("{e}; handshakes for this server's hosts fail"),
            ));
            TlsAction::Unavailable(e)
        }
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
    diags.push(server.diag(Severity::Warning, "tls.mode", why.clone()));
    TlsAction::Unavailable(why)
}
