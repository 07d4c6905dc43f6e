//! Opaque streams (reference §2.9): VirtualService `tcp` routes for TCP servers and for `TLS`
//! servers that terminate, `tls` routes (chosen by SNI) for PASSTHROUGH servers.

use std::sync::Arc;

use super::gateway::ServerRef;
use super::http_routes::{attached_hosts, resolve_gateway_ref, BoundVs, TableBuilder, Traffic};
use crate::config::model::{RouteDestination, TcpMatch, TlsMatch};
use crate::config::{Finding, Severity};
use crate::route::{Target, WeightedClusters};

/// Where an opaque stream goes.
#[derive(Debug)]
pub struct L4Route {
    /// The rule that produced it, `ns/vs.tcp[i]` or `ns/vs.tls[i]`, for logs and metrics.
    pub name: Arc<str>,
    pub clusters: WeightedClusters,
}

impl L4Route {
    /// A destination by weight; `None` only for a route whose weights are all zero.
    pub fn pick(&self) -> Option<&Target> {
        self.clusters.pick(fastrand::u64(..))
    }
}

/// A PASSTHROUGH chain: the SNI names of one `tls` match and where their streams go.
pub(crate) struct SniChain<'a> {
    pub sni_hosts: &'a [String],
    pub route: Arc<L4Route>,
    pub vs: &'a BoundVs<'a>,
    /// `spec.tls[i].match[j]`, for diagnostics about the chain.
    pub field: String,
}

/// What Istio's `l4SingleMatch` checks of a `tcp` or `tls` match at a gateway: its port and
/// gateways, decided at build time. (The VirtualService is already bound to the gateway, so a
/// match without `gateways` applies.)
struct L4Conditions<'m> {
    port: Option<i64>,
    gateways: &'m [String],
}

/// The first `tcp` rule that applies to `server` (reference §2.2 step 5): VirtualServices in
/// order, each relevant when one of its hosts matches a server host; one rule per server.
pub(crate) fn tcp_route(
    server: &ServerRef<'_>,
    port: u16,
    vss: &[BoundVs<'_>],
    builder: &mut TableBuilder<'_, '_>,
) -> Option<Arc<L4Route>> {
    let gateway = server.gateway.key.as_str();
    for vs in vss.iter().filter(|vs| relevant(server, vs)) {
        for (i, rule) in vs.spec.tcp.iter().enumerate() {
            for (j, m) in rule.matches.iter().enumerate() {
                let field = format!("spec.tcp[{i}].match[{j}]");
                warn_gateway_ignored(vs, builder, &field, &tcp_ignored(m));
            }
            let applies = rule.matches.is_empty()
                || rule.matches.iter().any(|m| {
                    let conditions = L4Conditions {
                        port: m.port,
                        gateways: &m.gateways,
                    };
                    applies(vs, &conditions, gateway, port)
                });
            if applies {
                return Some(route(vs, builder, ("tcp", i), &rule.route, port));
            }
        }
    }
    None
}

/// Every `tls` match that applies to a PASSTHROUGH `server`, in order: each becomes an SNI chain.
pub(crate) fn sni_chains<'a>(
    server: &ServerRef<'_>,
    port: u16,
    vss: &'a [BoundVs<'a>],
    builder: &mut TableBuilder<'_, '_>,
) -> Vec<SniChain<'a>> {
    let gateway = server.gateway.key.as_str();
    let mut chains = Vec::new();
    for vs in vss.iter().filter(|vs| relevant(server, vs)) {
        for (i, rule) in vs.spec.tls.iter().enumerate() {
            let mut route_for_rule: Option<Arc<L4Route>> = None;
            for (j, m) in rule.matches.iter().enumerate() {
                let match_field = format!("spec.tls[{i}].match[{j}]");
                warn_gateway_ignored(vs, builder, &match_field, &tls_ignored(m));
                let conditions = L4Conditions {
                    port: m.port,
                    gateways: &m.gateways,
                };
                if !applies(vs, &conditions, gateway, port) {
                    continue;
                }
                let route = route_for_rule
                    .get_or_insert_with(|| route(vs, builder, ("tls", i), &rule.route, port))
                    .clone();
                chains.push(SniChain {
                    sni_hosts: &m.sni_hosts,
                    route,
                    vs,
                    field: match_field,
                });
            }
        }
    }
    chains
}

/// Whether `vs` binds to the server's Gateway with a host matching one of its hosts.
fn relevant(server: &ServerRef<'_>, vs: &BoundVs<'_>) -> bool {
    vs.binds_to(&server.gateway.key) && !attached_hosts(server, vs).is_empty()
}

fn applies(vs: &BoundVs<'_>, m: &L4Conditions<'_>, gateway: &str, port: u16) -> bool {
    let gateways_ok = m.gateways.is_empty()
        || m.gateways
            .iter()
            .any(|g| resolve_gateway_ref(g, vs.namespace()) == gateway);
    gateways_ok && m.port.is_none_or(|p| p == i64::from(port))
}

/// Match fields that mean nothing at a gateway: accepted, ignored, and said so (as Istio does).
/// `present` pairs each such field's name with whether the match sets it.
fn warn_gateway_ignored(
    vs: &BoundVs<'_>,
    builder: &mut TableBuilder<'_, '_>,
    field: &str,
    present: &[(&str, bool)],
) {
    for (name, _) in present.iter().filter(|(_, set)| *set) {
        let finding = Finding::new(
            Severity::Warning,
            &format!("{field}.{name}"),
            format!("{name} does not apply at a gateway and is ignored"),
            None,
        );
        builder.diags.push(finding.at(vs.resource));
    }
}

fn tcp_ignored(m: &TcpMatch) -> [(&'static str, bool); 4] {
    [
        ("destinationSubnets", !m.destination_subnets.is_empty()),
        ("sourceLabels", !m.source_labels.is_empty()),
        ("sourceNamespace", m.source_namespace.is_some()),
        ("sourceSubnet", m.source_subnet.is_some()),
    ]
}

fn tls_ignored(m: &TlsMatch) -> [(&'static str, bool); 3] {
    [
        ("destinationSubnets", !m.destination_subnets.is_empty()),
        ("sourceLabels", !m.source_labels.is_empty()),
        ("sourceNamespace", m.source_namespace.is_some()),
    ]
}

fn route(
    vs: &BoundVs<'_>,
    builder: &mut TableBuilder<'_, '_>,
    (section, index): (&str, usize),
    destinations: &[RouteDestination],
    port: u16,
) -> Arc<L4Route> {
    let field = format!("spec.{section}[{index}]");
    let destinations = destinations
        .iter()
        .map(|d| (&d.destination, d.weight, None));
    let clusters = builder.weighted_clusters(
        vs.resource,
        &field,
        destinations,
        port,
        Traffic::Connections,
    );
    let name = format!(
        "{}/{}.{section}[{index}]",
        vs.namespace(),
        vs.resource.key.name
    );
    Arc::new(L4Route {
        name: name.into(),
        clusters,
    })
}
