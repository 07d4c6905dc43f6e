//! Resources → [`Snapshot`]. Pure apart from reusing live clusters of the previous snapshot.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::clusters::ClusterBuilder;
use super::gateway::{self, PortPlan, SelectedGateway};
use super::http_routes::{attached_hosts, resolve_gateway_ref, BoundVs, Regexes, TableBuilder};
use super::{Listener, ListenerKind, Options, ServerClass, Snapshot};
use crate::config::{diag, Diagnostic, Finding, LoadResult, Resource, Severity, Spec};
use crate::hosts;
use crate::route::RegexCache;

/// Compiles a loaded configuration into generation `generation`.
pub fn compile(load: LoadResult, opts: &Options, previous: &Snapshot, generation: u64) -> Snapshot {
    let LoadResult {
        resources,
        mut diagnostics,
        files,
    } = load;
    let mut regexes = Regexes {
        previous: &previous.regexes,
        next: RegexCache::default(),
    };
    let (listeners, clusters, credentials) = {
        let gateways = gateway::selected(&resources, opts);
        let vss = bound_virtual_services(&resources, opts, &mut diagnostics);
        let ports = gateway::merge(&gateways, &mut diagnostics);
        warn_unexposed_hosts(&vss, &gateways, &ports, &mut diagnostics);
        let credentials = super::credentials::resolve(
            &gateways,
            &resources,
            opts,
            &previous.credentials,
            &mut diagnostics,
        );
        let mut clusters = ClusterBuilder::new(&resources, opts, &previous.clusters);
        let mut builder = TableBuilder {
            opts,
            regexes: &mut regexes,
            clusters: &mut clusters,
            diags: &mut diagnostics,
        };
        let listeners = ports
            .iter()
            .map(|(key, plan)| {
                let l = listener(plan, &vss, &mut builder, &credentials, opts);
                (*key, Arc::new(l))
            })
            .collect();
        (listeners, clusters, credentials)
    };
    let mut clusters = clusters;
    diagnostics.append(&mut clusters.diags);
    diag::sort(&mut diagnostics);
    // A VirtualService attached to several servers compiles once per server; report once.
    diagnostics.dedup();
    let access_logging = crate::telemetry::access_logging(
        &resources,
        &opts.gateway_namespace,
        &opts.labels,
        opts.access_log,
    );
    Snapshot {
        generation,
        access_logging,
        listeners,
        clusters: clusters.built,
        cluster_refs: clusters.refs,
        regexes: regexes.next,
        credentials,
        resources,
        diagnostics,
        files,
    }
}

fn listener(
    plan: &PortPlan<'_>,
    vss: &[BoundVs<'_>],
    builder: &mut TableBuilder<'_, '_>,
    credentials: &super::credentials::Resolved,
    opts: &Options,
) -> Listener {
    let kind = match plan.class {
        ServerClass::Http => {
            let name = format!("http.{}", plan.key.port);
            ListenerKind::Http(Arc::new(builder.http_table(
                name,
                plan.key.port,
                &plan.servers,
                vss,
            )))
        }
        ServerClass::Tls => {
            ListenerKind::Tls(super::tls::listener(plan, vss, builder, credentials, opts))
        }
        ServerClass::Tcp => {
            // Two TCP servers never share a port (the merge keeps the first).
            let route = plan.servers.first().and_then(|server| {
                let route = super::l4::tcp_route(server, plan.key.port, vss, builder);
                if route.is_none() {
                    let message = "no VirtualService tcp route applies to this server; its port is not opened".into();
                    builder.diags.push(server.diag(Severity::Warning, "", message));
                }
                route
            });
            ListenerKind::Tcp(route)
        }
    };
    let mut gateways: Vec<String> = plan.servers.iter().map(|s| s.gateway.key.clone()).collect();
    gateways.dedup();
    Listener {
        key: plan.key,
        class: plan.class,
        kind,
        gateways,
    }
}

/// VirtualServices bound to some Gateway and visible to the gateway's namespace, in Istio's
/// order: private to the gateway namespace, then exported to it, then public; config order within.
fn bound_virtual_services<'a>(
    resources: &'a [Arc<Resource>],
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) -> Vec<BoundVs<'a>> {
    let known: HashSet<String> = resources
        .iter()
        .filter(|r| matches!(r.spec, Spec::Gateway(_)))
        .map(|r| format!("{}/{}", r.key.namespace, r.key.name))
        .collect();
    let mut tiers: [Vec<BoundVs<'a>>; 3] = Default::default();
    for r in resources {
        let Spec::VirtualService(spec) = &r.spec else {
            continue;
        };
        let ns = r.key.namespace.as_str();
        let gateways: Vec<String> = spec
            .gateways
            .iter()
            .filter(|g| *g != "mesh")
            .map(|g| resolve_gateway_ref(g, ns))
            .collect();
        for (i, g) in spec
            .gateways
            .iter()
            .enumerate()
            .filter(|(_, g)| *g != "mesh")
        {
            let resolved = resolve_gateway_ref(g, ns);
            if !known.contains(&resolved) {
                let hint = closest_gateway(&resolved, &known);
                let message = format!(
                    "Gateway {resolved:?} does not exist; this VirtualService does not bind to it"
                );
                diags.push(
                    Finding::new(
                        Severity::Warning,
                        &format!("spec.gateways[{i}]"),
                        message,
                        hint,
                    )
                    .at(r),
                );
            }
        }
        let Some(tier) = export_tier(&spec.export_to, ns, &opts.gateway_namespace) else {
            continue;
        };
        let hosts = spec
            .hosts
            .iter()
            .map(|h| hosts::resolve_short_name(h, ns, &opts.cluster_domain))
            .collect();
        tiers[tier].push(BoundVs {
            resource: r,
            spec,
            gateways,
            hosts,
        });
    }
    tiers.into_iter().flatten().collect()
}

fn closest_gateway(name: &str, known: &HashSet<String>) -> Option<String> {
    let mut sorted: Vec<&String> = known.iter().collect();
    sorted.sort();
    let best = sorted
        .iter()
        .max_by(|a, b| strsim::jaro_winkler(name, a).total_cmp(&strsim::jaro_winkler(name, b)));
    let listed = sorted
        .iter()
        .take(5)
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match best {
        Some(b) if strsim::jaro_winkler(name, b) > 0.85 => Some(format!("did you mean {b:?}?")),
        Some(_) => Some(format!("known: {listed}")),
        None => None,
    }
}

/// `exportTo`: empty or `*` = public (tier 2); listing the gateway namespace = tier 1; `.` = own
/// namespace only (tier 0 when that is the gateway's); otherwise invisible to the gateway.
fn export_tier(export_to: &[String], ns: &str, gateway_ns: &str) -> Option<usize> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return Some(2);
    }
    if export_to.iter().any(|e| e == ".") && ns == gateway_ns {
        return Some(0);
    }
    export_to.iter().any(|e| e == gateway_ns).then_some(1)
}

/// Istio's most common silent failure: a VirtualService bound to a Gateway that exposes none of its hosts.
fn warn_unexposed_hosts(
    vss: &[BoundVs<'_>],
    gateways: &[SelectedGateway<'_>],
    ports: &BTreeMap<super::ListenKey, gateway::PortPlan<'_>>,
    diags: &mut Vec<Diagnostic>,
) {
    for vs in vss {
        let bound: Vec<&SelectedGateway<'_>> =
            gateways.iter().filter(|g| vs.binds_to(&g.key)).collect();
        if bound.is_empty() || vs.hosts.is_empty() {
            continue;
        }
        let servers: Vec<_> = ports
            .values()
            .flat_map(|p| &p.servers)
            .filter(|s| vs.binds_to(&s.gateway.key))
            .collect();
        for (i, host) in vs.hosts.iter().enumerate() {
            let exposed = servers.iter().any(|s| {
                let single = BoundVs {
                    resource: vs.resource,
                    spec: vs.spec,
                    gateways: vs.gateways.clone(),
                    hosts: vec![host.clone()],
                };
                !attached_hosts(s, &single).is_empty()
            });
            if !exposed {
                let names: Vec<_> = bound.iter().map(|g| g.key.as_str()).collect();
                let message = format!(
                    "host {host:?} is not exposed by any server of Gateway {}",
                    names.join(", ")
                );
                diags.push(
                    Finding::new(
                        Severity::Warning,
                        &format!("spec.hosts[{i}]"),
                        message,
                        None,
                    )
                    .at(vs.resource),
                );
            }
        }
    }
}
