//! The HTTP steps (virtual host, routes, action) and the destinations of a route, with the
//! data path's own `find_vhost`, `find_route` and weights.

use std::sync::Arc;

use super::{
    list_or_none, split_query, DestinationInfo, EndpointInfo, Explanation, Outcome, OutcomeKind,
    Query, RouteCheck, RouteTableInfo, VhostInfo,
};
use crate::http::local::LocalReply;
use crate::http::proxy::{https_redirect_location, redirect_location};
use crate::route::{Action, RequestView, Route, RouteTable, Target, VirtualHost, WeightedClusters};
use crate::snapshot::l4::L4Route;
use crate::upstream::cluster::EndpointSource;
use crate::upstream::Cluster;

/// Virtual host by Host, `httpsRedirect`, then the first matching route and its action.
pub(super) fn route(ex: &mut Explanation, table: &RouteTable, query: &Query) -> Outcome {
    let authority = query.authority.as_str();
    let domains: Vec<String> = table.domains().map(str::to_string).collect();
    ex.route_table = Some(RouteTableInfo {
        name: table.name.clone(),
        domains: domains.clone(),
    });
    let Some(vhost) = table.find_vhost(authority) else {
        let message = format!(
            "404 NR: Host {authority} not in [{}] of {}",
            domains.join(", "),
            table.name
        );
        return Outcome::reply(OutcomeKind::NoRoute, LocalReply::NoRoute, message);
    };
    ex.virtual_host = Some(VhostInfo {
        domain: vhost.domain.clone(),
        matched_by: vhost_reason(&vhost.domain),
        https_redirect: vhost.https_redirect,
    });
    let (raw_path, query_string) = split_query(&query.path);
    let normalized = ex.request.normalized_path.clone();
    let path = normalized.as_deref().unwrap_or(raw_path);
    let scheme = ex.request.scheme.clone();
    let path_and_query = match query_string {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    if vhost.https_redirect {
        let location =
            https_redirect_location(authority, &path_and_query, query.https_redirect_port);
        return redirect(301, location, "httpsRedirect of the server");
    }
    let view = RequestView {
        path,
        query: query_string,
        method: &query.method,
        scheme: &scheme,
        authority,
        headers: &query.headers,
    };
    let Some(route) = check_routes(ex, vhost, &view) else {
        return no_route(ex, vhost);
    };
    let port = ex.listener.as_ref().map_or(0, |l| l.port);
    match &route.action {
        Action::Forward(clusters) => forward(ex, clusters, false),
        Action::Redirect(r) => {
            let location =
                redirect_location(r, &ex.request.scheme, authority, &path_and_query, port);
            redirect(r.code, location, &format!("redirect of {}", route.name))
        }
        Action::Direct(d) => {
            let body = String::from_utf8_lossy(&d.body);
            let mut outcome = Outcome::new(
                OutcomeKind::DirectResponse,
                format!("direct response {} {body:?} from {}", d.status, route.name),
            );
            outcome.status = Some(d.status);
            outcome
        }
    }
}

/// `exact`, `wildcard *.x` or `catch-all *`: why the virtual host took the Host.
fn vhost_reason(domain: &str) -> String {
    match domain {
        "*" => "catch-all *".into(),
        d if d.starts_with('*') => format!("wildcard {d}"),
        d => format!("exact {d}"),
    }
}

fn redirect(code: u16, location: String, why: &str) -> Outcome {
    let mut outcome = Outcome::new(
        OutcomeKind::Redirect,
        format!("{code} redirect to {location} ({why})"),
    );
    outcome.status = Some(code);
    outcome.location = Some(location);
    outcome
}

/// Records every route tried; the winner is the data path's own `find_route`.
fn check_routes<'v>(
    ex: &mut Explanation,
    vhost: &'v VirtualHost,
    view: &RequestView<'_>,
) -> Option<&'v Arc<Route>> {
    let winner = vhost.find_route(view);
    for (index, route) in vhost.routes.iter().enumerate() {
        let matched = winner.is_some_and(|w| Arc::ptr_eq(w, route));
        let failed = if matched {
            Vec::new()
        } else {
            route.matcher.mismatches(view)
        };
        ex.routes.push(RouteCheck {
            index,
            name: route.name.clone(),
            matched,
            failed,
        });
        if matched {
            ex.matched_route = Some(route.name.clone());
            break;
        }
    }
    winner
}

/// 404 naming the closest route: the fewest failing conditions, ties to the first.
fn no_route(ex: &mut Explanation, vhost: &VirtualHost) -> Outcome {
    let closest = ex
        .routes
        .iter()
        .filter(|r| !r.failed.is_empty())
        .min_by_key(|r| r.failed.len())
        .cloned();
    let message = match &closest {
        Some(c) => format!(
            "404 NR: no route of virtual host {} matched; closest is {} (failed: {})",
            vhost.domain,
            c.name,
            c.failed.join("; ")
        ),
        None => format!("404 NR: virtual host {} has no routes", vhost.domain),
    };
    ex.closest_route = closest;
    Outcome::reply(OutcomeKind::NoRoute, LocalReply::NoRoute, message)
}

/// A TCP, terminated-TLS or passthrough stream and its route.
pub(super) fn stream(ex: &mut Explanation, route: &L4Route) -> Outcome {
    ex.stream_route = Some(route.name.to_string());
    forward(ex, &route.clusters, true)
}

/// The destinations by weight with their endpoints, and what a request (or stream) gets: the
/// healthy share is forwarded; only when no destination can serve is the answer an error.
fn forward(ex: &mut Explanation, clusters: &WeightedClusters, stream: bool) -> Outcome {
    let (targets, total) = clusters.weighted_targets();
    ex.destinations = targets
        .iter()
        .map(|(weight, target)| destination(*weight, total, target))
        .collect();
    let (good, bad): (Vec<&DestinationInfo>, Vec<&DestinationInfo>) =
        ex.destinations.iter().partition(|d| d.problem.is_none());
    if good.is_empty() {
        return failure(bad.first().copied(), stream);
    }
    success(&good, &bad, stream)
}

fn success(good: &[&DestinationInfo], bad: &[&DestinationInfo], stream: bool) -> Outcome {
    let targets: Vec<String> = good.iter().map(|d| describe(d)).collect();
    let what = if stream { "the stream" } else { "the request" };
    let mut message = format!("would forward {what} to {}", targets.join(", "));
    for d in bad {
        let problem = d.problem.as_deref().unwrap_or_default();
        message.push_str(&format!("; {:.0}% fail: {problem}", d.percent));
    }
    let kind = if stream {
        OutcomeKind::StreamForward
    } else {
        OutcomeKind::Forward
    };
    Outcome::new(kind, message)
}

/// `cluster (endpoints a, b)`, with its share when it has one.
fn describe(d: &DestinationInfo) -> String {
    let share = if d.percent < 100.0 {
        format!(" {:.0}%", d.percent)
    } else {
        String::new()
    };
    let endpoints: Vec<String> = d.endpoints.iter().map(|e| e.address.clone()).collect();
    if d.source == "dns" && endpoints.is_empty() {
        return format!(
            "{}{share} (endpoints resolved by DNS at the first request)",
            d.cluster
        );
    }
    format!(
        "{}{share} (endpoints {})",
        d.cluster,
        list_or_none(&endpoints)
    )
}

/// Every destination fails: 503 NC for a missing cluster, else 503 UH (or a closed stream).
fn failure(first: Option<&DestinationInfo>, stream: bool) -> Outcome {
    let problem = first.and_then(|d| d.problem.clone());
    let problem = problem.unwrap_or_else(|| "no destination has a weight above 0".into());
    let missing = first.is_none_or(|d| !d.exists);
    let (kind, reply) = if missing {
        (OutcomeKind::ClusterNotFound, LocalReply::ClusterNotFound)
    } else {
        (
            OutcomeKind::NoHealthyUpstream,
            LocalReply::NoHealthyUpstream,
        )
    };
    if stream {
        return Outcome::new(kind, format!("connection closed: {problem}"));
    }
    let status = reply.response().status().as_u16();
    let body = if missing {
        ""
    } else {
        " \"no healthy upstream\""
    };
    let message = format!("{status} {}{body}: {problem}", reply.flag());
    Outcome::reply(kind, reply, message)
}

fn destination(weight: u64, total: u64, target: &Target) -> DestinationInfo {
    let percent = if total == 0 {
        0.0
    } else {
        (weight as f64) * 100.0 / (total as f64)
    };
    match target {
        Target::Missing(name) => DestinationInfo {
            cluster: name.to_string(),
            weight,
            percent,
            exists: false,
            source: "missing",
            endpoints: Vec::new(),
            problem: Some(format!(
                "cluster {name} does not exist (unknown subset or port of the destination; see tollgate check)"
            )),
        },
        Target::Cluster(cluster) => cluster_destination(weight, percent, cluster),
    }
}

fn cluster_destination(weight: u64, percent: f64, cluster: &Cluster) -> DestinationInfo {
    let all = cluster.current_endpoints();
    let serving = cluster.serving_endpoints();
    let endpoints: Vec<EndpointInfo> = all
        .iter()
        .map(|e| EndpointInfo {
            address: e.addr.to_string(),
            weight: e.weight,
            healthy: !e.health.is_ejected(),
            serving: serving.iter().any(|s| Arc::ptr_eq(s, e)),
        })
        .collect();
    let dns = matches!(cluster.spec.source, EndpointSource::Dns(_));
    // An unresolved DNS cluster resolves at its first request: not a failure yet.
    let pending = dns && all.is_empty() && !cluster.dns_resolved();
    let problem = (serving.is_empty() && !pending).then(|| {
        let why = if all.is_empty() {
            "has no endpoints"
        } else {
            "has every endpoint ejected"
        };
        format!("cluster {} {why}", cluster.name())
    });
    DestinationInfo {
        cluster: cluster.name().to_string(),
        weight,
        percent,
        exists: true,
        source: if dns { "dns" } else { "static" },
        endpoints,
        problem,
    }
}
