//! The immutable compiled world that the data path reads: listeners by gateway port, their route
//! tables, and clusters. Built only by [`compile::compile`]; published whole with arc-swap, so a
//! request or connection sees one consistent generation from start to end.

mod clusters;
pub mod compile;
pub mod credentials;
mod gateway;
mod http_routes;
pub mod l4;
pub mod tls;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Diagnostic, FileReport, Resource};
use crate::route::RouteTable;
use crate::upstream::Cluster;

pub use compile::compile;

/// Settings that shape compilation, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace of resources that have none.
    pub namespace: String,
    /// Namespace the gateway workload runs in (credential lookups, exportTo).
    pub gateway_namespace: String,
    /// The gateway workload's labels; Gateways select it with `spec.selector`.
    pub labels: BTreeMap<String, String>,
    pub cluster_domain: String,
    /// Credential folders in Kubernetes secret layout (`<name>/tls.crt`, ...).
    pub certs_dir: std::path::PathBuf,
    /// Session resumption state shared by every TLS configuration across reloads.
    pub resumption: crate::tls::server_config::Resumption,
    /// `--access-log` was given: logging is on unless a Telemetry resource says otherwise.
    pub access_log: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: "default".into(),
            gateway_namespace: "istio-system".into(),
            labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
            cluster_domain: "cluster.local".into(),
            certs_dir: "certs".into(),
            resumption: crate::tls::server_config::Resumption::disabled(),
            access_log: false,
        }
    }
}

/// Where a listener binds: the Gateway server's `bind` address (default all) and port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ListenKey {
    pub bind: IpAddr,
    /// The Gateway's port number (routing always uses it, whatever port is actually bound).
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ServerClass {
    /// HTTP, HTTP2, GRPC, GRPC-WEB: plaintext, one route table shared by the port.
    Http,
    /// HTTPS or TLS: SNI-selected servers.
    Tls,
    /// TCP and other opaque protocols.
    Tcp,
}

#[derive(Debug)]
pub struct Listener {
    pub key: ListenKey,
    pub class: ServerClass,
    pub kind: ListenerKind,
    /// The Gateways that contributed servers, as `ns/name`, for error attribution.
    pub gateways: Vec<String>,
}

#[derive(Debug)]
pub enum ListenerKind {
    Http(Arc<RouteTable>),
    Tls(tls::TlsListener),
    /// An opaque TCP port and the `tcp` route its streams follow; without one (no VirtualService
    /// applies) the port is not opened, as in Istio.
    Tcp(Option<Arc<l4::L4Route>>),
}

pub struct Snapshot {
    pub generation: u64,
    /// Whether access logs are written, as Telemetry resources and `--access-log` decide.
    pub access_logging: crate::telemetry::AccessLogging,
    pub listeners: BTreeMap<ListenKey, Arc<Listener>>,
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    /// Where each cluster is first referenced (file, line, field), for diagnostics about it.
    pub cluster_refs: BTreeMap<String, Diagnostic>,
    /// Credentials of terminating servers, kept for the next compile's last-good fallback.
    pub credentials: credentials::Resolved,
    /// Regexes in use, reused by the next compile.
    pub regexes: crate::route::RegexCache,
    pub resources: Vec<Arc<Resource>>,
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<FileReport>,
}

/// Frees a replaced snapshot on another thread: a large one takes milliseconds to drop, and the
/// new configuration is already in force.
pub fn retire(snapshot: Arc<Snapshot>) {
    if Arc::strong_count(&snapshot) == 1 {
        let _ = std::thread::Builder::new()
            .name("tollgate-retire".into())
            .spawn(move || drop(snapshot));
    }
}

impl Snapshot {
    /// The snapshot before any configuration is loaded.
    pub fn empty() -> Self {
        Snapshot {
            generation: 0,
            access_logging: crate::telemetry::AccessLogging {
                enabled: false,
                decided_by: "--access-log".into(),
            },
            listeners: BTreeMap::new(),
            clusters: BTreeMap::new(),
            cluster_refs: BTreeMap::new(),
            regexes: Default::default(),
            credentials: Default::default(),
            resources: Vec::new(),
            diagnostics: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dr;
#[cfg(test)]
mod tests_l4;
