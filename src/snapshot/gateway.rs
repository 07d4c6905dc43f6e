//! Gateway selection and the merge of servers into ports (reference §1.7): the first server on a
//! port decides its class, conflicting later servers are ignored with a warning.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::{ListenKey, Options, ServerClass};
use crate::config::model::{GatewaySpec, Server};
use crate::config::{Diagnostic, Finding, Resource, Severity, Spec};

/// A Gateway resource selected by this gateway's labels.
pub(crate) struct SelectedGateway<'a> {
    pub resource: &'a Resource,
    pub spec: &'a GatewaySpec,
    /// `ns/name`, the form VirtualServices bind to.
    pub key: String,
}

/// One server with its hosts normalised (namespace part split off, `./` resolved, lower-cased).
pub(crate) struct ServerRef<'a> {
    pub gateway: &'a SelectedGateway<'a>,
    pub index: usize,
    pub server: &'a Server,
    pub hosts: Vec<ServerHost>,
    pub https_redirect: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerHost {
    /// Only VirtualServices in this namespace may bind; `None` = any.
    pub namespace: Option<String>,
    pub name: String,
}

pub(crate) struct PortPlan<'a> {
    pub key: ListenKey,
    pub class: ServerClass,
    pub servers: Vec<ServerRef<'a>>,
}

impl ServerRef<'_> {
    pub fn field(&self) -> String {
        format!("spec.servers[{}]", self.index)
    }

    /// The server's `port.name` (unique within its Gateway), or "".
    pub fn port_name(&self) -> &str {
        self.server.port.as_ref().map_or("", |p| p.name.as_str())
    }

    /// The server's `port.protocol`, as written (Istio compares it case-insensitively).
    pub fn protocol(&self) -> &str {
        self.server
            .port
            .as_ref()
            .map_or("", |p| p.protocol.as_str())
    }

    pub fn diag(&self, severity: Severity, field: &str, message: String) -> Diagnostic {
        let field = if field.is_empty() {
            self.field()
        } else {
            format!("{}.{field}", self.field())
        };
        Finding::new(severity, &field, message, None).at(self.gateway.resource)
    }
}

/// Gateways whose selector is a subset of our labels (an empty selector selects every gateway).
pub(crate) fn selected<'a>(
    resources: &'a [Arc<Resource>],
    opts: &Options,
) -> Vec<SelectedGateway<'a>> {
    resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Gateway(spec)
                if spec
                    .selector
                    .iter()
                    .all(|(k, v)| opts.labels.get(k) == Some(v)) =>
            {
                Some(SelectedGateway {
                    resource: r,
                    spec,
                    key: format!("{}/{}", r.key.namespace, r.key.name),
                })
            }
            _ => None,
        })
        .collect()
}

pub(crate) fn class_of(protocol: &str) -> ServerClass {
    match protocol.to_ascii_uppercase().as_str() {
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" => ServerClass::Http,
        "HTTPS" | "TLS" => ServerClass::Tls,
        _ => ServerClass::Tcp,
    }
}

/// Merges every selected server into its port, in config order.
pub(crate) fn merge<'a>(
    gateways: &'a [SelectedGateway<'a>],
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<ListenKey, PortPlan<'a>> {
    let mut ports: BTreeMap<ListenKey, PortPlan<'a>> = BTreeMap::new();
    for gateway in gateways {
        for (index, server) in gateway.spec.servers.iter().enumerate() {
            let Some(port) = &server.port else { continue };
            let Ok(number) = u16::try_from(port.number) else {
                continue;
            };
            let bind = match server.bind.as_deref() {
                None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some(b) => {
                    match b.parse::<IpAddr>() {
                        Ok(ip) => ip,
                        Err(_) => {
                            let message = format!("bind {b:?} (a unix socket) is not supported; this server is ignored");
                            let field = format!("spec.servers[{index}].bind");
                            let finding = Finding::new(Severity::Warning, &field, message, None);
                            diags.push(finding.at(gateway.resource));
                            continue;
                        }
                    }
                }
            };
            let key = ListenKey { bind, port: number };
            let class = class_of(&port.protocol);
            let server_ref = ServerRef {
                gateway,
                index,
                server,
                hosts: normalise_hosts(&server.hosts, &gateway.resource.key.namespace),
                https_redirect: server.tls.as_ref().is_some_and(|t| t.https_redirect),
            };
            let plan = ports.entry(key).or_insert_with(|| PortPlan {
                key,
                class,
                servers: Vec::new(),
            });
            if let Some(problem) = conflict(plan, &server_ref, class) {
                diags.push(server_ref.diag(
                    Severity::Warning,
                    "",
                    format!("{problem}; this server is ignored"),
                ));
                continue;
            }
            plan.servers.push(server_ref);
        }
    }
    ports
}

/// Why `server` cannot join `plan`, if it cannot.
fn conflict(plan: &PortPlan<'_>, server: &ServerRef<'_>, class: ServerClass) -> Option<String> {
    let port = plan.key.port;
    let first = plan.servers.first()?;
    let owner = format!("{} {}", first.gateway.key, first.field());
    if class != plan.class {
        return Some(format!(
            "port {port} is already served as {:?} by {owner}; a {:?} server cannot share it",
            plan.class, class
        ));
    }
    match class {
        ServerClass::Http => None,
        ServerClass::Tcp => Some(format!("port {port} already has a TCP server ({owner}); only one opaque TCP server can use a port")),
        ServerClass::Tls => {
            let claimed = plan.servers.iter().flat_map(|s| s.hosts.iter()).find(|h| server.hosts.iter().any(|n| n.name == h.name));
            claimed.map(|h| format!("host {:?} on port {port} is already claimed by an earlier TLS server", h.name))
        }
    }
}

/// `*/*` replaces the whole list with `*` (an Istio quirk); `./h` means the Gateway's namespace.
fn normalise_hosts(hosts: &[String], gateway_ns: &str) -> Vec<ServerHost> {
    if hosts.iter().any(|h| h == "*/*") {
        return vec![ServerHost {
            namespace: None,
            name: "*".into(),
        }];
    }
    let mut out: Vec<ServerHost> = Vec::with_capacity(hosts.len());
    for host in hosts {
        let (ns, name) = crate::hosts::split_namespace(host);
        let namespace = match ns {
            None | Some("*") => None,
            Some(".") => Some(gateway_ns.to_string()),
            Some(ns) => Some(ns.to_string()),
        };
        let host = ServerHost {
            namespace,
            name: name.to_ascii_lowercase(),
        };
        if !out.contains(&host) {
            out.push(host);
        }
    }
    out
}
