//! Destination → cluster: ServiceEntry endpoints (STATIC or DNS), DestinationRule subsets, else
//! DNS of the fully qualified name and then of the name as written (reference §4.5).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::Options;
use crate::config::model::{
    ConnectionPoolSettings, Destination, DestinationRuleSpec, LoadBalancerSettings,
    PortTrafficPolicy, ServiceEntrySpec, ServicePort, Subset, TrafficPolicy, WorkloadEntrySpec,
};
use crate::config::{Diagnostic, Finding, Resource, Severity, Spec};
use crate::hosts;
use crate::route::Target;
use crate::upstream::{
    Cluster, ClusterSpec, DnsTarget, EndpointSource, HashOn, LbPolicy, Limits, StaticEndpoint,
    UpstreamProtocol,
};

/// Builds clusters on demand while routes compile; reuses the live cluster of the previous
/// snapshot when its definition is unchanged (keeps DNS caches and balancer state).
pub(crate) struct ClusterBuilder<'a> {
    registry: Registry<'a>,
    opts: &'a Options,
    previous: &'a BTreeMap<String, Arc<Cluster>>,
    pub built: BTreeMap<String, Arc<Cluster>>,
    /// Where each cluster was first referenced, for diagnostics about it.
    pub refs: BTreeMap<String, Diagnostic>,
}

/// Why a destination has no cluster, or a note about one that exists.
pub(crate) enum Note {
    MissingSubset { subset: String, host: String },
    MissingPort { port: u16, host: String },
    NoEndpoints { cluster: String },
}

impl<'a> ClusterBuilder<'a> {
    pub fn new(
        resources: &'a [Arc<Resource>],
        opts: &'a Options,
        previous: &'a BTreeMap<String, Arc<Cluster>>,
    ) -> Self {
        ClusterBuilder {
            registry: Registry::new(resources, opts),
            opts,
            previous,
            built: BTreeMap::new(),
            refs: BTreeMap::new(),
        }
    }

    /// The cluster for `dest`, written at `field` of `resource`, routed from `server_port`.
    pub fn target(
        &mut self,
        dest: &Destination,
        resource: &Resource,
        field: &str,
        server_port: u16,
        notes: &mut Vec<Note>,
    ) -> Target {
        let ns = resource.key.namespace.as_str();
        let fqdn = hosts::resolve_short_name(&dest.host, ns, &self.opts.cluster_domain);
        let entry = self.service_entry(&fqdn);
        let port = dest
            .port
            .as_ref()
            .and_then(|p| u16::try_from(p.number).ok())
            .or_else(|| entry.and_then(|(_, se)| single_port(se)))
            .unwrap_or(server_port);
        let subset = dest.subset.as_deref().unwrap_or("");
        let name = format!("outbound|{port}|{subset}|{fqdn}");
        self.refs.entry(name.clone()).or_insert_with(|| {
            Finding::new(Severity::Info, field, String::new(), None).at(resource)
        });
        if let Some(cluster) = self.built.get(&name) {
            return Target::Cluster(cluster.clone());
        }
        let spec = match entry {
            Some((se_ns, se)) => {
                self.cluster_from_service_entry(&name, &fqdn, port, subset, se_ns, se, notes)
            }
            None => self.dns_cluster(&name, &fqdn, &dest.host, port, subset, notes),
        };
        let Some(spec) = spec else {
            return Target::Missing(name.into());
        };
        if matches!(&spec.source, EndpointSource::Static(list) if list.is_empty()) {
            notes.push(Note::NoEndpoints {
                cluster: name.clone(),
            });
        }
        let cluster = match self.previous.get(&name) {
            Some(old) if old.spec == spec => old.clone(),
            _ => Arc::new(Cluster::new(spec)),
        };
        self.built.insert(name, cluster.clone());
        Target::Cluster(cluster)
    }

    fn service_entry(&self, fqdn: &str) -> Option<(&'a str, &'a ServiceEntrySpec)> {
        let registry = &self.registry;
        registry.exact_entries.get(fqdn).copied().or_else(|| {
            registry
                .wildcard_entries
                .iter()
                .find(|(host, _, _)| hosts::subset_of(fqdn, host))
                .map(|(_, ns, se)| (*ns, *se))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn cluster_from_service_entry(
        &self,
        name: &str,
        fqdn: &str,
        port: u16,
        subset: &str,
        se_ns: &str,
        se: &ServiceEntrySpec,
        notes: &mut Vec<Note>,
    ) -> Option<ClusterSpec> {
        let Some(se_port) = se.ports.iter().find(|p| p.number == i64::from(port)) else {
            notes.push(Note::MissingPort {
                port,
                host: fqdn.to_string(),
            });
            return None;
        };
        let labels = if subset.is_empty() {
            None
        } else {
            match self.subset_labels(fqdn, subset) {
                Some(labels) => Some(labels),
                None => {
                    notes.push(Note::MissingSubset {
                        subset: subset.to_string(),
                        host: fqdn.to_string(),
                    });
                    return None;
                }
            }
        };
        let endpoints: Vec<&WorkloadEntrySpec> = self
            .endpoints_of(se_ns, se)
            .into_iter()
            .filter(|ep| labels.is_none_or(|l| l.iter().all(|(k, v)| ep.labels.get(k) == Some(v))))
            .collect();
        let source = endpoint_source(se, se_port, &endpoints);
        Some(ClusterSpec {
            name: name.to_string(),
            service: fqdn.to_string(),
            port,
            protocol: protocol_of(se_port.protocol.as_deref()),
            source,
            lb: self.lb_policy(fqdn, port, subset),
            limits: self.limits(fqdn, port, subset),
        })
    }

    /// Inline endpoints, or the WorkloadEntries a `workloadSelector` picks in the SE's namespace.
    fn endpoints_of<'s>(
        &'s self,
        se_ns: &str,
        se: &'s ServiceEntrySpec,
    ) -> Vec<&'s WorkloadEntrySpec> {
        let Some(selector) = &se.workload_selector else {
            return se.endpoints.iter().collect();
        };
        self.registry
            .workload_entries
            .iter()
            .filter(|(ns, we)| {
                *ns == se_ns
                    && selector
                        .labels
                        .iter()
                        .all(|(k, v)| we.labels.get(k) == Some(v))
            })
            .map(|(_, we)| we)
            .collect()
    }

    /// Labels of `subset` from the DestinationRules for `fqdn`: exact host first, then the most
    /// specific wildcard; several rules for one host merge their subsets (first wins).
    fn subset_labels(&self, fqdn: &str, subset: &str) -> Option<&'a BTreeMap<String, String>> {
        self.subset(fqdn, subset).map(|s| &s.labels)
    }

    fn subset(&self, fqdn: &str, subset: &str) -> Option<&'a Subset> {
        self.rules_for(fqdn)
            .flat_map(|dr| dr.subsets.iter())
            .find(|s| s.name == subset)
    }

    /// The DestinationRules that apply to `fqdn` (reference §3.1): those for the exact host if
    /// any, else those for the most specific wildcard covering it; config order within.
    fn rules_for(&self, fqdn: &str) -> impl Iterator<Item = &'a DestinationRuleSpec> {
        let rules = &self.registry.destination_rules;
        let host = rules
            .iter()
            .map(|(h, _)| h.as_str())
            .filter(|h| {
                h.eq_ignore_ascii_case(fqdn) || h.starts_with('*') && hosts::subset_of(fqdn, h)
            })
            .max_by_key(|h| (!h.starts_with('*'), h.len()));
        let applying: Vec<&'a DestinationRuleSpec> = rules
            .iter()
            .filter(|(h, _)| Some(h.as_str()) == host)
            .map(|(_, dr)| *dr)
            .collect();
        applying.into_iter()
    }

    /// The load balancer of cluster (`fqdn`, `port`, `subset`), composed as Istio does
    /// (reference §3.2): the first rule's top-level policy, replaced wholesale by its
    /// `portLevelSettings` for the port, then the subset's own policy component-wise, then the
    /// subset's `portLevelSettings`.
    fn lb_policy(&self, fqdn: &str, port: u16, subset: &str) -> LbPolicy {
        self.component(
            fqdn,
            port,
            subset,
            |tp| tp.load_balancer.as_ref(),
            |p| p.load_balancer.as_ref(),
        )
        .map_or_else(LbPolicy::default, lb_from_model)
    }

    /// The connection-pool limits of the cluster, composed like the load balancer.
    fn limits(&self, fqdn: &str, port: u16, subset: &str) -> Limits {
        self.component(
            fqdn,
            port,
            subset,
            |tp| tp.connection_pool.as_ref(),
            |p| p.connection_pool.as_ref(),
        )
        .map_or_else(Limits::default, limits_from_model)
    }

    /// One `trafficPolicy` component for (`fqdn`, `port`, `subset`), composed as Istio does
    /// (reference §3.2).
    fn component<T>(
        &self,
        fqdn: &str,
        port: u16,
        subset: &str,
        of: impl Fn(&'a TrafficPolicy) -> Option<&'a T>,
        of_port: impl Fn(&'a PortTrafficPolicy) -> Option<&'a T>,
    ) -> Option<&'a T> {
        let top = self
            .rules_for(fqdn)
            .find_map(|dr| dr.traffic_policy.as_deref());
        let mut value = top.and_then(&of);
        if let Some(level) = top.and_then(|tp| port_level(tp, port)) {
            value = of_port(level);
        }
        let own = (!subset.is_empty())
            .then(|| self.subset(fqdn, subset))
            .flatten()
            .and_then(|s| s.traffic_policy.as_deref());
        if let Some(tp) = own {
            value = of(tp).or(value);
            if let Some(level) = port_level(tp, port) {
                value = of_port(level);
            }
        }
        value
    }

    fn dns_cluster(
        &self,
        name: &str,
        fqdn: &str,
        written: &str,
        port: u16,
        subset: &str,
        notes: &mut Vec<Note>,
    ) -> Option<ClusterSpec> {
        if !subset.is_empty() {
            // Subsets select endpoints by label, which only ServiceEntry/WorkloadEntry endpoints carry.
            notes.push(Note::MissingSubset {
                subset: subset.to_string(),
                host: fqdn.to_string(),
            });
            return None;
        }
        let mut candidates = vec![fqdn.to_string()];
        let written = written.to_ascii_lowercase();
        if written != fqdn {
            candidates.push(written);
        }
        let source = EndpointSource::Dns(vec![DnsTarget {
            candidates,
            port,
            weight: 1,
        }]);
        Some(ClusterSpec {
            name: name.to_string(),
            service: fqdn.to_string(),
            port,
            protocol: UpstreamProtocol::Http1,
            source,
            lb: self.lb_policy(fqdn, port, ""),
            limits: self.limits(fqdn, port, ""),
        })
    }
}

fn single_port(se: &ServiceEntrySpec) -> Option<u16> {
    match se.ports.as_slice() {
        [only] => u16::try_from(only.number).ok(),
        _ => None,
    }
}

fn protocol_of(protocol: Option<&str>) -> UpstreamProtocol {
    match protocol.map(str::to_ascii_uppercase).as_deref() {
        Some("HTTP2" | "GRPC") => UpstreamProtocol::Http2,
        Some("TCP" | "TLS" | "HTTPS" | "MONGO" | "REDIS" | "MYSQL") => UpstreamProtocol::Opaque,
        _ => UpstreamProtocol::Http1,
    }
}

/// Endpoint port precedence: the endpoint's own port map > SE `targetPort` > SE port number.
fn endpoint_port(ep: &WorkloadEntrySpec, se_port: &ServicePort) -> u16 {
    ep.ports
        .get(&se_port.name)
        .copied()
        .or(se_port.target_port)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(se_port.number as u16)
}

fn endpoint_source(
    se: &ServiceEntrySpec,
    se_port: &ServicePort,
    endpoints: &[&WorkloadEntrySpec],
) -> EndpointSource {
    let weight = |ep: &WorkloadEntrySpec| {
        ep.weight
            .and_then(|w| u32::try_from(w).ok())
            .filter(|w| *w > 0)
            .unwrap_or(1)
    };
    match se.resolution.as_deref().unwrap_or("NONE") {
        "STATIC" => EndpointSource::Static(
            endpoints
                .iter()
                .filter_map(|ep| {
                    let ip: IpAddr = ep.address.parse().ok()?;
                    Some(StaticEndpoint {
                        addr: SocketAddr::new(ip, endpoint_port(ep, se_port)),
                        weight: weight(ep),
                    })
                })
                .collect(),
        ),
        "DNS" | "DNS_ROUND_ROBIN" if endpoints.is_empty() => EndpointSource::Dns(
            se.hosts
                .iter()
                .filter(|h| !h.starts_with('*'))
                .map(|h| DnsTarget {
                    candidates: vec![h.to_ascii_lowercase()],
                    port: endpoint_port(&WorkloadEntrySpec::default(), se_port),
                    weight: 1,
                })
                .collect(),
        ),
        "DNS" | "DNS_ROUND_ROBIN" => EndpointSource::Dns(
            endpoints
                .iter()
                .map(|ep| DnsTarget {
                    candidates: vec![ep.address.clone()],
                    port: endpoint_port(ep, se_port),
                    weight: weight(ep),
                })
                .collect(),
        ),
        // NONE (original destination) has no meaning at an ingress: unroutable.
        _ => EndpointSource::Static(Vec::new()),
    }
}

/// The registry a compile consults for every destination, indexed once (a compile resolves
/// thousands of destinations; scanning all resources for each would be quadratic).
struct Registry<'a> {
    /// Exact ServiceEntry hosts, lower-cased; the first in config order wins.
    exact_entries: HashMap<String, (&'a str, &'a ServiceEntrySpec)>,
    wildcard_entries: Vec<(&'a str, &'a str, &'a ServiceEntrySpec)>,
    /// DestinationRules with their host expanded relative to their namespace.
    destination_rules: Vec<(String, &'a DestinationRuleSpec)>,
    /// WorkloadEntries with `metadata.labels` merged over `spec.labels` (reference §4.4).
    workload_entries: Vec<(&'a str, WorkloadEntrySpec)>,
}

impl<'a> Registry<'a> {
    fn new(resources: &'a [Arc<Resource>], opts: &Options) -> Self {
        let mut registry = Registry {
            exact_entries: HashMap::new(),
            wildcard_entries: Vec::new(),
            destination_rules: Vec::new(),
            workload_entries: Vec::new(),
        };
        for r in resources {
            let ns = r.key.namespace.as_str();
            match &r.spec {
                Spec::ServiceEntry(se) => {
                    for host in &se.hosts {
                        if host.starts_with('*') {
                            registry.wildcard_entries.push((host, ns, se));
                        } else {
                            registry
                                .exact_entries
                                .entry(host.to_ascii_lowercase())
                                .or_insert((ns, se));
                        }
                    }
                }
                Spec::DestinationRule(dr) => {
                    let host = hosts::resolve_short_name(&dr.host, ns, &opts.cluster_domain);
                    registry.destination_rules.push((host, dr));
                }
                Spec::WorkloadEntry(we) => {
                    let mut we = we.clone();
                    we.labels
                        .extend(r.meta.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                    registry.workload_entries.push((ns, we));
                }
                _ => {}
            }
        }
        registry
    }
}

/// Istio's defaults are "unlimited": only what the YAML sets is a limit.
fn limits_from_model(pool: &ConnectionPoolSettings) -> Limits {
    let positive = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
    let http = pool.http.as_ref();
    Limits {
        max_connections: positive(pool.tcp.as_ref().and_then(|t| t.max_connections)),
        max_pending: positive(http.and_then(|h| h.http1_max_pending_requests)),
        max_requests: positive(http.and_then(|h| h.http2_max_requests)),
        max_retries: positive(http.and_then(|h| h.max_retries)),
    }
}

fn port_level(tp: &TrafficPolicy, port: u16) -> Option<&PortTrafficPolicy> {
    tp.port_level_settings
        .iter()
        .find(|p| p.port.as_ref().is_some_and(|p| p.number == i64::from(port)))
}

fn lb_from_model(lb: &LoadBalancerSettings) -> LbPolicy {
    if let Some(ch) = &lb.consistent_hash {
        let on = if let Some(h) = &ch.http_header_name {
            HashOn::Header(h.to_ascii_lowercase())
        } else if let Some(c) = &ch.http_cookie {
            HashOn::Cookie(c.name.clone())
        } else if let Some(q) = &ch.http_query_parameter_name {
            HashOn::QueryParameter(q.clone())
        } else {
            HashOn::SourceIp
        };
        return LbPolicy::ConsistentHash(on);
    }
    match lb.simple.as_deref() {
        Some("ROUND_ROBIN") => LbPolicy::RoundRobin,
        Some("RANDOM") => LbPolicy::Random,
        _ => LbPolicy::LeastRequest,
    }
}
