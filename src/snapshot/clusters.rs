//! Destination → cluster: ServiceEntry endpoints (STATIC or DNS), DestinationRule subsets, else
//! DNS of the fully qualified name and then of the name as written (reference §4.5).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::Options;
use crate::config::model::{
    ClientTls, ConnectionPoolSettings, Destination, DestinationRuleSpec, LoadBalancerSettings,
    OutlierDetection, PortTrafficPolicy, ServiceEntrySpec, ServicePort, Subset, TrafficPolicy,
    WorkloadEntrySpec,
};
use crate::config::{Diagnostic, Finding, Resource, Severity, Spec};
use crate::hosts;
use crate::route::Target;
use crate::tls::Credentials;
use crate::upstream::{
    Cluster, ClusterSpec, CookieHash, DnsTarget, EndpointSource, HashOn, Keepalive, LbPolicy,
    Limits, OutlierSpec, StaticEndpoint, TlsMaterial, TlsSpec, TransportSpec, UpstreamProtocol,
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
    /// Problems found while building clusters (upstream TLS material).
    pub diags: Vec<Diagnostic>,
    resources: &'a [Arc<Resource>],
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
            diags: Vec::new(),
            resources,
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
        &mut self,
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
        let declared = self.endpoints_of(se_ns, se);
        // Without declared endpoints a DNS entry resolves its hosts; with some, a subset that
        // selects none has no endpoints (503), as in Istio, not the whole service.
        let resolve_hosts = declared.is_empty();
        let endpoints: Vec<&WorkloadEntrySpec> = declared
            .into_iter()
            .filter(|ep| labels.is_none_or(|l| l.iter().all(|(k, v)| ep.labels.get(k) == Some(v))))
            .collect();
        let source = endpoint_source(se, se_port, &endpoints, resolve_hosts);
        let at = ClusterAt { fqdn, port, subset };
        Some(ClusterSpec {
            name: name.to_string(),
            service: fqdn.to_string(),
            port,
            protocol: protocol_of(se_port.protocol.as_deref()),
            source,
            lb: self.lb_policy(&at),
            limits: self.limits(&at),
            outlier: self.outlier(&at),
            transport: self.transport(&at, &se.subject_alt_names),
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
        self.subset_at(fqdn, subset).map(|(_, _, s)| s)
    }

    /// The subset with the rule that defines it and its index there.
    fn subset_at(&self, fqdn: &str, subset: &str) -> Option<(&'a Resource, usize, &'a Subset)> {
        self.rules_for(fqdn).find_map(|(r, dr)| {
            let i = dr.subsets.iter().position(|s| s.name == subset)?;
            Some((r, i, &dr.subsets[i]))
        })
    }

    /// The DestinationRules that apply to `fqdn` (reference §3.1): those for the exact host if
    /// any, else those for the most specific wildcard covering it; config order within.
    fn rules_for(
        &self,
        fqdn: &str,
    ) -> impl Iterator<Item = (&'a Resource, &'a DestinationRuleSpec)> {
        let rules = &self.registry.destination_rules;
        let host = rules
            .iter()
            .map(|(h, _, _)| h.as_str())
            .filter(|h| {
                h.eq_ignore_ascii_case(fqdn) || h.starts_with('*') && hosts::subset_of(fqdn, h)
            })
            .max_by_key(|h| (!h.starts_with('*'), h.len()));
        let applying: Vec<_> = rules
            .iter()
            .filter(|(h, _, _)| Some(h.as_str()) == host)
            .map(|(_, r, dr)| (*r, *dr))
            .collect();
        applying.into_iter()
    }

    /// The load balancer of cluster (`fqdn`, `port`, `subset`), composed as Istio does
    /// (reference §3.2): the first rule's top-level policy, replaced wholesale by its
    /// `portLevelSettings` for the port, then the subset's own policy component-wise, then the
    /// subset's `portLevelSettings`.
    fn lb_policy(&self, at: &ClusterAt<'_>) -> LbPolicy {
        self.component(
            at,
            "loadBalancer",
            |tp| tp.load_balancer.as_ref(),
            |p| p.load_balancer.as_ref(),
        )
        .map_or_else(LbPolicy::default, |c| lb_from_model(c.value))
    }

    /// The connection-pool limits of the cluster, composed like the load balancer.
    fn limits(&self, at: &ClusterAt<'_>) -> Limits {
        self.pool(at)
            .map_or_else(Limits::default, |c| limits_from_model(c.value))
    }

    fn pool(&self, at: &ClusterAt<'_>) -> Option<Component<'a, ConnectionPoolSettings>> {
        self.component(
            at,
            "connectionPool",
            |tp| tp.connection_pool.as_ref(),
            |p| p.connection_pool.as_ref(),
        )
    }

    fn outlier(&self, at: &ClusterAt<'_>) -> Option<OutlierSpec> {
        self.component(
            at,
            "outlierDetection",
            |tp| tp.outlier_detection.as_ref(),
            |p| p.outlier_detection.as_ref(),
        )
        .map(|c| outlier_from_model(c.value))
    }

    /// Connection settings and TLS origination; material that cannot be loaded is an error on
    /// the rule's `tls` field, and the cluster's connections then fail (503 UF), as Envoy's do
    /// while a secret is missing.
    fn transport(&mut self, at: &ClusterAt<'_>, se_sans: &[String]) -> TransportSpec {
        let mut spec = self
            .pool(at)
            .map_or_else(TransportSpec::default, |c| transport_from_model(c.value));
        let tls = self.component(at, "tls", |tp| tp.tls.as_ref(), |p| p.tls.as_ref());
        if let Some(tls) = tls {
            spec.tls = self.tls_spec(&tls, se_sans);
        }
        spec
    }

    fn tls_spec(&mut self, tls: &Component<'a, ClientTls>, se_sans: &[String]) -> Option<TlsSpec> {
        let mode = tls.value.mode.as_deref().unwrap_or("DISABLE");
        let loaded = match mode {
            "SIMPLE" | "MUTUAL" => self.tls_material(tls.value, tls.resource, mode == "MUTUAL"),
            "ISTIO_MUTUAL" => Err((
                "mesh workload certificates".to_string(),
                "ISTIO_MUTUAL needs the mesh's workload certificates, which a standalone gateway does not have".to_string(),
            )),
            _ => return None,
        };
        let sans = if tls.value.subject_alt_names.is_empty() {
            se_sans.to_vec()
        } else {
            tls.value.subject_alt_names.clone()
        };
        let (source, material) = match loaded {
            Ok((source, material)) => (source, Ok(material)),
            Err((source, problem)) => (source, Err(problem)),
        };
        let mut spec = TlsSpec {
            sni: tls.value.sni.clone().filter(|s| !s.is_empty()),
            subject_alt_names: sans,
            insecure_skip_verify: tls.value.insecure_skip_verify == Some(true),
            source,
            material,
        };
        // Loaded material must also make a client configuration (a usable CA, a valid `sni`).
        if let Err(problem) = spec.check() {
            // ISTIO_MUTUAL is already warned by validation.
            if mode != "ISTIO_MUTUAL" {
                let message = format!("{problem}; connections to this destination fail (503 UF)");
                self.diags.push(
                    Finding::new(Severity::Error, &tls.field, message, None).at(tls.resource),
                );
            }
            spec.material = Err(problem);
        }
        Some(spec)
    }

    /// The certificates of a SIMPLE or MUTUAL origination: from `credentialName`, else from the
    /// file paths. Errors carry (source, problem).
    fn tls_material(
        &self,
        tls: &ClientTls,
        rule: &Resource,
        mutual: bool,
    ) -> Result<(String, TlsMaterial), (String, String)> {
        if let Some(name) = &tls.credential_name {
            let source = format!("credentialName {name}");
            let credentials = Credentials::new(
                &self.opts.certs_dir,
                &self.opts.gateway_namespace,
                self.resources,
            );
            let found = credentials
                .resolve_upstream(name, &rule.key.namespace, mutual)
                .map_err(|e| (source.clone(), e.to_string()))?;
            let material = TlsMaterial {
                roots: found.ca,
                crls: found.crls,
                client: found.client.map(|c| (c.chain, c.key)),
            };
            return Ok((source, material));
        }
        let source = [&tls.client_certificate, &tls.ca_certificates]
            .iter()
            .filter_map(|p| p.as_deref())
            .collect::<Vec<_>>()
            .join(", ");
        let source = if source.is_empty() {
            "system CA certificates".to_string()
        } else {
            source
        };
        let read = |path: &str| {
            std::fs::read(path).map_err(|e| (source.clone(), format!("cannot read {path}: {e}")))
        };
        let invalid = |path: &str, e: String| (source.clone(), format!("{path}: {e}"));
        let roots = match tls.ca_certificates.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => {
                Some(crate::tls::pem::certificates(&read(path)?).map_err(|e| invalid(path, e))?)
            }
            None => None,
        };
        let crls = match tls.ca_crl.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => crate::tls::pem::crls(&read(path)?).map_err(|e| invalid(path, e))?,
            None => Vec::new(),
        };
        let client = match (mutual, &tls.client_certificate, &tls.private_key) {
            (true, Some(cert), Some(key)) => {
                let credential = crate::tls::credential::from_files(
                    std::path::Path::new(cert),
                    std::path::Path::new(key),
                    None,
                    None,
                )
                .map_err(|e| (source.clone(), e))?;
                Some((credential.chain, credential.key))
            }
            _ => None,
        };
        Ok((
            source,
            TlsMaterial {
                roots,
                crls,
                client,
            },
        ))
    }

    /// One `trafficPolicy` component for the cluster at `at`, composed as Istio does
    /// (reference §3.2), with where it was written.
    fn component<T>(
        &self,
        at: &ClusterAt<'_>,
        name: &str,
        of: impl Fn(&'a TrafficPolicy) -> Option<&'a T>,
        of_port: impl Fn(&'a PortTrafficPolicy) -> Option<&'a T>,
    ) -> Option<Component<'a, T>> {
        let mut found = None;
        let top = self
            .rules_for(at.fqdn)
            .find_map(|(r, dr)| Some((r, dr.traffic_policy.as_deref()?)));
        if let Some((rule, tp)) = top {
            let base = "spec.trafficPolicy";
            found = of(tp).map(|v| Component::new(v, rule, format!("{base}.{name}")));
            if let Some((i, level)) = port_level(tp, at.port) {
                let field = format!("{base}.portLevelSettings[{i}].{name}");
                found = of_port(level).map(|v| Component::new(v, rule, field));
            }
        }
        let own = (!at.subset.is_empty())
            .then(|| self.subset_at(at.fqdn, at.subset))
            .flatten()
            .and_then(|(r, i, s)| Some((r, i, s.traffic_policy.as_deref()?)));
        if let Some((rule, si, tp)) = own {
            let base = format!("spec.subsets[{si}].trafficPolicy");
            if let Some(v) = of(tp) {
                found = Some(Component::new(v, rule, format!("{base}.{name}")));
            }
            if let Some((i, level)) = port_level(tp, at.port) {
                let field = format!("{base}.portLevelSettings[{i}].{name}");
                found = of_port(level).map(|v| Component::new(v, rule, field));
            }
        }
        found
    }

    fn dns_cluster(
        &mut self,
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
        let at = ClusterAt {
            fqdn,
            port,
            subset: "",
        };
        Some(ClusterSpec {
            name: name.to_string(),
            service: fqdn.to_string(),
            port,
            protocol: UpstreamProtocol::Http1,
            source,
            lb: self.lb_policy(&at),
            limits: self.limits(&at),
            outlier: self.outlier(&at),
            transport: self.transport(&at, &[]),
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
    resolve_hosts: bool,
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
        "DNS" | "DNS_ROUND_ROBIN" if resolve_hosts => EndpointSource::Dns(
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
    destination_rules: Vec<(String, &'a Resource, &'a DestinationRuleSpec)>,
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
                    registry.destination_rules.push((host, r, dr));
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

fn port_level(tp: &TrafficPolicy, port: u16) -> Option<(usize, &PortTrafficPolicy)> {
    tp.port_level_settings
        .iter()
        .enumerate()
        .find(|(_, p)| p.port.as_ref().is_some_and(|p| p.number == i64::from(port)))
}

/// The cluster a policy component is looked up for.
struct ClusterAt<'s> {
    fqdn: &'s str,
    port: u16,
    subset: &'s str,
}

/// A composed `trafficPolicy` component and where it was written, for diagnostics.
struct Component<'a, T> {
    value: &'a T,
    resource: &'a Resource,
    field: String,
}

impl<'a, T> Component<'a, T> {
    fn new(value: &'a T, resource: &'a Resource, field: String) -> Self {
        Component {
            value,
            resource,
            field,
        }
    }
}

fn outlier_from_model(od: &OutlierDetection) -> OutlierSpec {
    let defaults = OutlierSpec::default();
    let count = |n: Option<i64>, default: u32| n.map_or(default, |n| u32::try_from(n).unwrap_or(0));
    let duration = |text: &Option<String>, default| {
        text.as_deref()
            .and_then(|t| crate::config::duration::parse(t).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    };
    let percent = |n: Option<i64>, default: u32| n.map_or(default, |n| n.clamp(0, 100) as u32);
    OutlierSpec {
        consecutive_5xx: count(od.consecutive_5xx_errors, defaults.consecutive_5xx),
        consecutive_gateway: count(od.consecutive_gateway_errors, defaults.consecutive_gateway),
        interval: duration(&od.interval, defaults.interval),
        base_ejection_time: duration(&od.base_ejection_time, defaults.base_ejection_time),
        max_ejection_percent: percent(od.max_ejection_percent, defaults.max_ejection_percent),
        min_health_percent: percent(od.min_health_percent, defaults.min_health_percent),
    }
}

/// `connectionPool` settings about connections themselves; unset ones keep Istio's defaults.
fn transport_from_model(pool: &ConnectionPoolSettings) -> TransportSpec {
    let mut spec = TransportSpec::default();
    let duration = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| crate::config::duration::parse(t).ok())
            .filter(|d| !d.is_zero())
    };
    if let Some(tcp) = &pool.tcp {
        if let Some(t) = duration(&tcp.connect_timeout) {
            spec.connect_timeout = t;
        }
        spec.keepalive = tcp.tcp_keepalive.as_ref().map(|ka| Keepalive {
            time: duration(&ka.time),
            interval: duration(&ka.interval),
            probes: ka
                .probes
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0),
        });
        spec.tcp_idle_timeout = duration(&tcp.idle_timeout);
        // Istio uses the TCP idle timeout for HTTP too when the HTTP one is unset.
        if let Some(t) = spec.tcp_idle_timeout {
            spec.idle_timeout = t;
        }
    }
    if let Some(http) = &pool.http {
        spec.max_requests_per_connection = http
            .max_requests_per_connection
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        if let Some(t) = duration(&http.idle_timeout) {
            spec.idle_timeout = t;
        }
    }
    spec
}

fn lb_from_model(lb: &LoadBalancerSettings) -> LbPolicy {
    if let Some(ch) = &lb.consistent_hash {
        let on = if let Some(h) = &ch.http_header_name {
            HashOn::Header(h.to_ascii_lowercase())
        } else if let Some(c) = &ch.http_cookie {
            HashOn::Cookie(CookieHash {
                name: c.name.clone(),
                path: c.path.clone().filter(|p| !p.is_empty()),
                ttl: c
                    .ttl
                    .as_deref()
                    .and_then(|t| crate::config::duration::parse(t).ok()),
            })
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
