//! VirtualService HTTP routes → one route table per plaintext port (reference §2.2–2.6).

use std::collections::HashMap;
use std::sync::Arc;

use super::clusters::{ClusterBuilder, Note};
use super::gateway::ServerRef;
use super::Options;
use crate::config::model::{
    Destination, Headers, HttpMatch, HttpRoute, StringMatch, VirtualServiceSpec,
};
use crate::config::{Diagnostic, Finding, Resource, Severity};
use crate::hosts;
use crate::policy::{DestinationHeaders, Mirror, RoutePolicy};
use crate::route::{
    Action, DirectReply, Redirect, RegexCache, Route, RouteMatch, RouteTable, StrMatch, UriMatch,
    VirtualHost, WeightedClusters,
};

/// A VirtualService bound to at least one selected Gateway.
pub(crate) struct BoundVs<'a> {
    pub resource: &'a Resource,
    pub spec: &'a VirtualServiceSpec,
    /// Top-level gateways, resolved to `ns/name`.
    pub gateways: Vec<String>,
    /// Hosts with short names expanded, lower-cased.
    pub hosts: Vec<String>,
}

impl BoundVs<'_> {
    pub fn namespace(&self) -> &str {
        &self.resource.key.namespace
    }

    /// Whether this VS, or one of its matches, binds to `gateway`.
    pub fn binds_to(&self, gateway: &str) -> bool {
        self.gateways.iter().any(|g| g == gateway)
            || self
                .match_gateways()
                .any(|g| resolve_gateway_ref(g, self.namespace()) == gateway)
    }

    /// Gateways named by match-level `gateways` of every rule.
    fn match_gateways(&self) -> impl Iterator<Item = &String> {
        let spec = self.spec;
        let http = spec
            .http
            .iter()
            .flat_map(|r| &r.matches)
            .flat_map(|m| &m.gateways);
        let tcp = spec
            .tcp
            .iter()
            .flat_map(|r| &r.matches)
            .flat_map(|m| &m.gateways);
        let tls = spec
            .tls
            .iter()
            .flat_map(|r| &r.matches)
            .flat_map(|m| &m.gateways);
        http.chain(tcp).chain(tls)
    }
}

/// `gw` → `<vs-ns>/gw`; `./gw` → `<vs-ns>/gw`; `ns/gw`; legacy `gw.ns.svc.cluster.local` → `ns/gw`.
pub(crate) fn resolve_gateway_ref(reference: &str, vs_ns: &str) -> String {
    match reference.split_once('/') {
        Some((".", name)) => format!("{vs_ns}/{name}"),
        Some((ns, name)) => format!("{ns}/{name}"),
        None => match reference.split('.').collect::<Vec<_>>().as_slice() {
            [name, ns, "svc", ..] => format!("{ns}/{name}"),
            [name, ns] => format!("{ns}/{name}"),
            _ => format!("{vs_ns}/{reference}"),
        },
    }
}

/// Hosts this VS gets on `server`: Istio's intersection, namespace-restricted hosts included only
/// for VirtualServices in that namespace.
pub(crate) fn attached_hosts(server: &ServerRef<'_>, vs: &BoundVs<'_>) -> Vec<String> {
    let mut names = Vec::new();
    for sh in server
        .hosts
        .iter()
        .filter(|h| h.namespace.as_deref().is_none_or(|ns| ns == vs.namespace()))
    {
        for vh in &vs.hosts {
            if let Some(name) = hosts::more_specific(&sh.name, vh) {
                if !names.iter().any(|n: &String| n == name) {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// What a destination that cannot be reached costs, for the notes about it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Traffic {
    /// HTTP requests, answered 503.
    Requests,
    /// Opaque streams, closed.
    Connections,
}

pub(crate) struct TableBuilder<'b, 'a> {
    pub opts: &'b Options,
    pub regexes: &'b mut Regexes<'a>,
    pub clusters: &'b mut ClusterBuilder<'a>,
    pub diags: &'b mut Vec<Diagnostic>,
}

impl TableBuilder<'_, '_> {
    /// The shared `http.<port>` table of a plaintext port.
    /// The route table of `servers` on `port`: every plaintext server of a port share one
    /// (`http.<port>`); each terminating HTTPS server has its own.
    pub fn http_table(
        &mut self,
        name: String,
        port: u16,
        servers: &[ServerRef<'_>],
        vss: &[BoundVs<'_>],
    ) -> RouteTable {
        let mut vhosts: Vec<VirtualHost> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut vhost = |name: &str, vhosts: &mut Vec<VirtualHost>| -> usize {
            *by_name.entry(name.to_string()).or_insert_with(|| {
                vhosts.push(VirtualHost {
                    domain: name.to_string(),
                    routes: Vec::new(),
                    https_redirect: false,
                });
                vhosts.len() - 1
            })
        };
        for server in servers {
            let mut attached = false;
            for vs in vss.iter().filter(|vs| vs.binds_to(&server.gateway.key)) {
                let names = attached_hosts(server, vs);
                if names.is_empty() {
                    continue;
                }
                attached = true;
                let routes = self.routes(vs, &server.gateway.key, port);
                for name in names {
                    let i = vhost(&name, &mut vhosts);
                    vhosts[i].routes.extend(routes.iter().cloned());
                    vhosts[i].https_redirect |= server.https_redirect;
                }
            }
            if !attached {
                // No VirtualService: every request 404s, but redirects still apply (reference §1.11).
                for host in &server.hosts {
                    let i = vhost(&host.name, &mut vhosts);
                    vhosts[i].https_redirect |= server.https_redirect;
                }
            }
        }
        for vh in &mut vhosts {
            // Catch-alls last, so a later VirtualService's specific routes are not shadowed.
            // A stable sort: false (specific) before true (catch-all), order otherwise kept.
            vh.routes.sort_by_key(|r| r.matcher.is_catch_all());
        }
        RouteTable::new(name, vhosts)
    }

    /// The routes of one VS as seen from `gateway` on `port`, in rule then match order.
    fn routes(&mut self, vs: &BoundVs<'_>, gateway: &str, port: u16) -> Vec<Arc<Route>> {
        let mut out = Vec::new();
        for (i, rule) in vs.spec.http.iter().enumerate() {
            self.warn_unapplied(vs.resource, rule, i);
            if rule.delegate.is_some() {
                // As Istio does when a delegate cannot be resolved: this rule is dropped.
                continue;
            }
            let action = self.action(vs, rule, i, port);
            let policy = Arc::new(self.policy(vs, rule, i, port));
            let matches: Vec<Option<&HttpMatch>> = if rule.matches.is_empty() {
                vec![None]
            } else {
                rule.matches.iter().map(Some).collect()
            };
            for m in matches {
                if !self.match_applies(vs, m, gateway, port) {
                    continue;
                }
                let Some(matcher) = m.map_or(Some(RouteMatch::default()), |m| {
                    compile_match(m, self.regexes)
                }) else {
                    continue;
                };
                let catch_all = matcher.is_catch_all();
                let name = format!(
                    "{}/{}.http[{i}]{}",
                    vs.namespace(),
                    vs.resource.key.name,
                    rule.name
                        .as_deref()
                        .map(|n| format!(".{n}"))
                        .unwrap_or_default()
                );
                let log_name = match (&rule.name, m.and_then(|m| m.name.as_ref())) {
                    (Some(rule), Some(m)) => Some(format!("{rule}.{m}").into()),
                    (rule, _) => rule.as_deref().map(Into::into),
                };
                out.push(Arc::new(Route {
                    name,
                    log_name,
                    matcher,
                    action: action.clone(),
                    policy: policy.clone(),
                }));
                if catch_all {
                    // Everything after a catch-all in the same VirtualService is unreachable.
                    return out;
                }
            }
        }
        out
    }

    /// Match-level `port`, `gateways`, `sourceLabels` and `sourceNamespace` are decided here, at
    /// build time, against this gateway (reference §2.4).
    fn match_applies(
        &self,
        vs: &BoundVs<'_>,
        m: Option<&HttpMatch>,
        gateway: &str,
        port: u16,
    ) -> bool {
        let Some(m) = m else {
            return vs.gateways.iter().any(|g| g == gateway);
        };
        let gateways_ok = if m.gateways.is_empty() {
            vs.gateways.iter().any(|g| g == gateway)
        } else {
            m.gateways
                .iter()
                .any(|g| resolve_gateway_ref(g, vs.namespace()) == gateway)
        };
        gateways_ok
            && m.port.is_none_or(|p| p == i64::from(port))
            && m.source_labels
                .iter()
                .all(|(k, v)| self.opts.labels.get(k) == Some(v))
            && m.source_namespace
                .as_deref()
                .is_none_or(|ns| ns == self.opts.gateway_namespace)
    }

    fn action(&mut self, vs: &BoundVs<'_>, rule: &HttpRoute, index: usize, port: u16) -> Action {
        if let Some(r) = &rule.redirect {
            return Action::Redirect(Redirect {
                code: r
                    .redirect_code
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(301),
                scheme: r.scheme.clone(),
                authority: r.authority.clone(),
                port: r.port.and_then(|p| u16::try_from(p).ok()),
                uri: r.uri.clone(),
                port_from_request: r.derive_port.as_deref() == Some("FROM_REQUEST_PORT"),
            });
        }
        if let Some(d) = &rule.direct_response {
            let body = d.body.as_ref().and_then(|b| {
                b.string
                    .clone()
                    .map(bytes::Bytes::from)
                    .or_else(|| b.bytes.as_deref().and_then(decode_base64))
            });
            return Action::Direct(DirectReply {
                status: u16::try_from(d.status).unwrap_or(500),
                body: body.unwrap_or_default(),
            });
        }
        let field = format!("spec.http[{index}]");
        let destinations = rule
            .route
            .iter()
            .map(|d| (&d.destination, d.weight, d.headers.as_ref()));
        let clusters =
            self.weighted_clusters(vs.resource, &field, destinations, port, Traffic::Requests);
        Action::Forward(clusters)
    }

    /// The clusters of a rule's `route` destinations (rule at `field`), noting any that cannot
    /// receive traffic.
    pub fn weighted_clusters<'d>(
        &mut self,
        resource: &Resource,
        field: &str,
        destinations: impl Iterator<Item = (&'d Destination, Option<i64>, Option<&'d Headers>)>,
        port: u16,
        traffic: Traffic,
    ) -> WeightedClusters {
        let mut notes = Vec::new();
        let targets = destinations
            .enumerate()
            .map(|(j, (destination, weight, headers))| {
                let at = format!("{field}.route[{j}].destination");
                let target = self
                    .clusters
                    .target(destination, resource, &at, port, &mut notes);
                let ops = headers.map(|h| Arc::new(DestinationHeaders::from_model(h)));
                (weight, target, ops)
            })
            .collect();
        for note in notes {
            self.note(resource, &format!("{field}.route"), note, traffic);
        }
        WeightedClusters::with_headers(targets)
    }

    /// The rule's traffic policy, with the clusters of its mirrors and per-destination headers.
    fn policy(
        &mut self,
        vs: &BoundVs<'_>,
        rule: &HttpRoute,
        index: usize,
        port: u16,
    ) -> RoutePolicy {
        let mut policy = RoutePolicy::from_model(rule);
        let field = format!("spec.http[{index}]");
        let mut notes = Vec::new();
        if let Some(dest) = &rule.mirror {
            let at = format!("{field}.mirror");
            let target = self
                .clusters
                .target(dest, vs.resource, &at, port, &mut notes);
            let value = rule.mirror_percentage.as_ref().map(|p| p.value);
            let percent = crate::policy::mirror_percent(value, rule.mirror_percent);
            policy.mirrors.push(Mirror { target, percent });
        }
        for (j, m) in rule.mirrors.iter().enumerate() {
            let at = format!("{field}.mirrors[{j}].destination");
            let target = self
                .clusters
                .target(&m.destination, vs.resource, &at, port, &mut notes);
            let percent =
                crate::policy::mirror_percent(m.percentage.as_ref().map(|p| p.value), None);
            policy.mirrors.push(Mirror { target, percent });
        }
        for note in notes {
            self.note(
                vs.resource,
                &format!("{field}.mirror"),
                note,
                Traffic::Requests,
            );
        }
        if let Some(c) = &rule.cors_policy {
            let mut origins: Vec<StrMatch> = c
                .allow_origin
                .iter()
                .map(|o| StrMatch::Exact(o.as_str().into()))
                .collect();
            origins.extend(
                c.allow_origins
                    .iter()
                    .filter_map(|sm| compile_string_match(sm, self.regexes)),
            );
            policy.cors = Some(crate::policy::cors_from_model(c, origins));
        }
        policy
    }

    /// Fields that are valid Istio but not applied by this version: say so rather than
    /// silently serving something else than the YAML asks for.
    fn warn_unapplied(&mut self, resource: &Resource, rule: &HttpRoute, index: usize) {
        let fields = [("delegate", rule.delegate.is_some())];
        for (name, present) in fields {
            if present {
                let message = if name == "delegate" {
                    "delegate is not supported yet; this rule is skipped".to_string()
                } else {
                    format!("{name} is accepted but not applied yet by tollgate")
                };
                let finding = Finding::new(
                    Severity::Warning,
                    &format!("spec.http[{index}].{name}"),
                    message,
                    None,
                );
                self.diags.push(finding.at(resource));
            }
        }
    }

    fn note(&mut self, resource: &Resource, field: &str, note: Note, traffic: Traffic) {
        let (fails, no_upstream) = match traffic {
            Traffic::Requests => (
                "requests to it get 503",
                "requests to it get 503 no healthy upstream",
            ),
            Traffic::Connections => (
                "connections to it are closed",
                "connections to it are closed",
            ),
        };
        let message = match note {
            Note::MissingSubset { subset, host } => format!(
                "subset {subset:?} of {host} is not defined by a DestinationRule with ServiceEntry endpoints; {fails}"
            ),
            Note::MissingPort { port, host } => format!("ServiceEntry for {host} has no port {port}; {fails}"),
            Note::NoEndpoints { cluster } => format!("destination {cluster} has no endpoints; {no_upstream}"),
        };
        self.diags
            .push(Finding::new(Severity::Warning, field, message, None).at(resource));
    }
}

fn decode_base64(text: &str) -> Option<bytes::Bytes> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .map(bytes::Bytes::from)
}

/// Compiles a validated match; `None` only if validation let something uncompilable through.
pub(crate) fn compile_match(m: &HttpMatch, regexes: &mut Regexes<'_>) -> Option<RouteMatch> {
    let mut out = RouteMatch {
        uri: match &m.uri {
            Some(sm) => Some(UriMatch {
                matcher: compile_string_match(sm, regexes)?,
                ignore_case: m.ignore_uri_case,
            }),
            None => None,
        },
        method: m
            .method
            .as_ref()
            .map(|sm| compile_string_match(sm, regexes))
            .transpose_none()?,
        scheme: m
            .scheme
            .as_ref()
            .map(|sm| compile_string_match(sm, regexes))
            .transpose_none()?,
        authority: m
            .authority
            .as_ref()
            .map(|sm| compile_string_match(sm, regexes))
            .transpose_none()?,
        ..RouteMatch::default()
    };
    for (name, sm) in &m.headers {
        // Istio ignores these pseudo-header keys in `headers` (they have their own fields).
        if matches!(name.as_str(), "uri" | "scheme" | "method" | "authority")
            || name.starts_with('@')
        {
            continue;
        }
        out.headers.push((
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?,
            compile_string_match(sm, regexes)?,
        ));
    }
    for (name, sm) in &m.without_headers {
        out.without_headers.push((
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?,
            compile_string_match(sm, regexes)?,
        ));
    }
    for (name, sm) in &m.query_params {
        out.query
            .push((name.clone(), compile_string_match(sm, regexes)?));
    }
    Some(out)
}

/// The regexes of the snapshot being built, and those of the previous one to reuse.
pub(crate) struct Regexes<'p> {
    pub previous: &'p RegexCache,
    pub next: RegexCache,
}

fn compile_string_match(sm: &StringMatch, regexes: &mut Regexes<'_>) -> Option<StrMatch> {
    Some(match (&sm.exact, &sm.prefix, &sm.regex) {
        (Some(e), _, _) => StrMatch::Exact(e.as_str().into()),
        (_, Some(p), _) => StrMatch::Prefix(p.as_str().into()),
        (_, _, Some(r)) if r == "*" => StrMatch::Present,
        (_, _, Some(r)) => StrMatch::Regex(regexes.next.get(regexes.previous, r)?),
        _ => StrMatch::Present,
    })
}

/// `Option<Option<T>>` → `Option<Option<T>>` where an inner `None` (compile failure) fails the whole match.
trait TransposeNone<T> {
    fn transpose_none(self) -> Option<Option<T>>;
}

impl<T> TransposeNone<T> for Option<Option<T>> {
    fn transpose_none(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(None) => None,
            Some(Some(v)) => Some(Some(v)),
        }
    }
}
