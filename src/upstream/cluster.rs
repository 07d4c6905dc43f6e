//! A cluster (`outbound|<port>|<subset>|<host>`) and its endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::lb;
use super::outlier::{Detector, EndpointHealth, Observation, OutlierSpec};
use super::transport::{Transport, TransportSpec};

/// How often DNS endpoints are re-resolved (Envoy's default `dns_refresh_rate`).
const DNS_REFRESH: Duration = Duration::from_secs(5);
/// Bound on one resolution, so a dead resolver cannot hold requests forever.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
    Opaque,
}

/// Everything that defines a cluster; equal specs let a reload keep the live cluster (its DNS
/// cache and request counters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ClusterSpec {
    pub name: String,
    pub service: String,
    pub port: u16,
    pub protocol: UpstreamProtocol,
    pub source: EndpointSource,
    pub lb: lb::LbPolicy,
    pub limits: super::breaker::Limits,
    pub outlier: Option<OutlierSpec>,
    pub transport: TransportSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum EndpointSource {
    Static(Vec<StaticEndpoint>),
    /// Each target resolves to all its addresses (Envoy STRICT_DNS).
    Dns(Vec<DnsTarget>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct StaticEndpoint {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// A name to resolve; the first candidate that resolves is used (FQDN first, then the name as written).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct DnsTarget {
    pub candidates: Vec<String>,
    pub port: u16,
    pub weight: u32,
}

/// One upstream address with its load-balancing state.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    active: AtomicU32,
    /// Outlier detection's view of it.
    pub health: EndpointHealth,
    /// Admin `/clusters` counters, updated by [`Cluster::report`] (relaxed: statistics only).
    rq_total: AtomicU64,
    rq_error: AtomicU64,
    cx_connect_fail: AtomicU64,
}

/// An endpoint's request counters, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EndpointCounters {
    pub rq_active: u32,
    pub rq_total: u64,
    pub rq_error: u64,
    pub cx_connect_fail: u64,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Endpoint {
            addr,
            weight: weight.max(1),
            active: AtomicU32::new(0),
            health: EndpointHealth::default(),
            rq_total: AtomicU64::new(0),
            rq_error: AtomicU64::new(0),
            cx_connect_fail: AtomicU64::new(0),
        }
    }

    pub fn counters(&self) -> EndpointCounters {
        EndpointCounters {
            rq_active: self.active_requests(),
            rq_total: self.rq_total.load(Ordering::Relaxed),
            rq_error: self.rq_error.load(Ordering::Relaxed),
            cx_connect_fail: self.cx_connect_fail.load(Ordering::Relaxed),
        }
    }

    /// Counts one attempt: every one, those that failed (5xx, connect failure, timeout), and
    /// connect failures apart.
    fn count(&self, seen: Observation) {
        self.rq_total.fetch_add(1, Ordering::Relaxed);
        let failed = match seen {
            Observation::Status(code) => code >= 500,
            Observation::ConnectFailure => {
                self.cx_connect_fail.fetch_add(1, Ordering::Relaxed);
                true
            }
            Observation::Timeout => true,
        };
        if failed {
            self.rq_error.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn active_requests(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }
}

/// Counts a request against its endpoint for least-request balancing until dropped.
pub struct ActiveRequest(pub Arc<Endpoint>);

impl ActiveRequest {
    pub fn start(endpoint: Arc<Endpoint>) -> Self {
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(endpoint)
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub spec: ClusterSpec,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Milliseconds since `epoch` of the last DNS refresh start; 0 = never.
    refreshed_at: AtomicU64,
    refreshing: AtomicBool,
    resolved_once: tokio::sync::OnceCell<()>,
    epoch: Instant,
    stats: std::sync::OnceLock<crate::metrics::ClusterStats>,
    /// Round-robin position.
    cursor: std::sync::atomic::AtomicUsize,
    /// Consistent-hash ring over the serving endpoints (hash policies only).
    ring: ArcSwap<lb::Ring>,
    breaker: Arc<super::breaker::Breaker>,
    transport: Transport,
    /// Outlier detection, and the endpoints it has not ejected (with it only).
    detector: Option<Detector>,
    serving: ArcSwap<Vec<Arc<Endpoint>>>,
}

impl Cluster {
    pub fn new(spec: ClusterSpec) -> Self {
        let endpoints = match &spec.source {
            EndpointSource::Static(list) => list
                .iter()
                .map(|e| Endpoint::new(e.addr, e.weight))
                .map(Arc::new)
                .collect(),
            EndpointSource::Dns(_) => Vec::new(),
        };
        let http2 = spec.protocol == UpstreamProtocol::Http2;
        let breaker = super::breaker::Breaker::new(spec.limits, !http2);
        let transport = Transport::new(spec.transport.clone(), http2);
        let endpoints = Arc::new(endpoints);
        Cluster {
            serving: ArcSwap::new(endpoints.clone()),
            endpoints: ArcSwap::new(endpoints),
            refreshed_at: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            resolved_once: tokio::sync::OnceCell::new(),
            epoch: Instant::now(),
            stats: std::sync::OnceLock::new(),
            cursor: std::sync::atomic::AtomicUsize::new(0),
            ring: ArcSwap::from_pointee(lb::Ring::default()),
            breaker: Arc::new(breaker),
            transport,
            detector: spec.outlier.map(Detector::new),
            spec,
        }
        .with_ring()
    }

    /// Rebuilds the hash ring from the current endpoints (hash policies only).
    fn with_ring(self) -> Self {
        self.rebuild_ring();
        self
    }

    fn rebuild_ring(&self) {
        if matches!(self.spec.lb, lb::LbPolicy::ConsistentHash(_)) {
            self.ring
                .store(Arc::new(lb::Ring::new(&self.serving.load())));
        }
    }

    /// The endpoints balancing may pick: all of them, or with outlier detection those not
    /// ejected (all again below the panic threshold).
    fn serving(&self) -> arc_swap::Guard<Arc<Vec<Arc<Endpoint>>>> {
        let Some(detector) = &self.detector else {
            return self.endpoints.load();
        };
        let all = self.endpoints.load();
        detector.sweep_if_due(all.iter().map(|e| &e.health), || self.rebuild_serving());
        self.serving.load()
    }

    /// Call under the detector's lock (or without a detector).
    fn rebuild_serving(&self) {
        let all = self.endpoints.load_full();
        let list = match &self.detector {
            Some(detector) => {
                let healthy: Vec<_> = all
                    .iter()
                    .filter(|e| !e.health.is_ejected())
                    .cloned()
                    .collect();
                if detector.panics(healthy.len(), all.len()) {
                    all
                } else {
                    Arc::new(healthy)
                }
            }
            None => all,
        };
        self.serving.store(list);
        self.rebuild_ring();
    }

    /// Tells outlier detection how an exchange with `endpoint` went; ejects it when it crosses
    /// a threshold and the ejection budget allows.
    pub fn report(&self, endpoint: &Endpoint, seen: Observation) {
        endpoint.count(seen);
        let Some(detector) = &self.detector else {
            return;
        };
        if !endpoint.health.observe(seen, &detector.spec) {
            return;
        }
        detector.locked(|| {
            let all = self.endpoints.load();
            let ejected = all.iter().filter(|e| e.health.is_ejected()).count();
            if detector.try_eject(&endpoint.health, ejected, all.len()) {
                tracing::info!(cluster = %self.spec.name, endpoint = %endpoint.addr, "outlier detection ejected an endpoint");
                crate::metrics::record_outlier_ejection(&self.spec.name);
                self.rebuild_serving();
            }
        });
    }

    /// Outlier detection's settings, when the cluster has it.
    pub fn outlier(&self) -> Option<&OutlierSpec> {
        self.detector.as_ref().map(|d| &d.spec)
    }

    /// How connections to the endpoints are made.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The cluster's metrics, registered on first use.
    pub fn stats(&self) -> &crate::metrics::ClusterStats {
        self.stats
            .get_or_init(|| crate::metrics::ClusterStats::new(&self.spec.name, &self.spec.service))
    }

    /// Istio's standard series for this cluster's service.
    pub fn istio_stats(&self) -> &crate::telemetry::istio::DestinationStats {
        &self.stats().istio
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn is_dns(&self) -> bool {
        matches!(self.spec.source, EndpointSource::Dns(_))
    }

    /// Current endpoints without resolving (for admin output).
    pub fn current_endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// The endpoints balancing picks from now (outlier-ejected ones left out, unless in panic),
    /// read without sweeping; for explanations.
    pub fn serving_endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        match &self.detector {
            Some(_) => self.serving.load_full(),
            None => self.endpoints.load_full(),
        }
    }

    /// Whether a DNS cluster has been resolved at least once (its endpoints are known).
    pub fn dns_resolved(&self) -> bool {
        self.resolved_once.initialized()
    }

    /// Picks an endpoint with the cluster's balancer; resolves DNS first if never resolved.
    pub async fn pick(self: &Arc<Self>) -> Option<Arc<Endpoint>> {
        self.pick_for(None).await
    }

    /// As [`Self::pick`], with the request's consistent-hash key (a hash policy without a key
    /// picks at random, as Envoy does when the header or cookie is missing).
    pub async fn pick_for(self: &Arc<Self>, key: Option<u64>) -> Option<Arc<Endpoint>> {
        if self.is_dns() {
            self.refresh_dns().await;
        }
        let endpoints = self.serving();
        match &self.spec.lb {
            lb::LbPolicy::LeastRequest => lb::least_request(&endpoints),
            lb::LbPolicy::RoundRobin => lb::round_robin(&endpoints, &self.cursor),
            lb::LbPolicy::Random => lb::random(&endpoints),
            lb::LbPolicy::ConsistentHash(_) => match key {
                Some(key) => self.ring.load().get(key),
                None => lb::random(&endpoints),
            },
        }
    }

    /// The cluster's circuit breaker (DestinationRule `connectionPool`).
    pub fn breaker(&self) -> &Arc<super::breaker::Breaker> {
        &self.breaker
    }

    /// What a consistent-hash policy hashes on, if the cluster has one.
    pub fn hash_on(&self) -> Option<&lb::HashOn> {
        match &self.spec.lb {
            lb::LbPolicy::ConsistentHash(on) => Some(on),
            _ => None,
        }
    }

    /// First call waits for a resolution; later calls refresh in the background when stale.
    async fn refresh_dns(self: &Arc<Self>) {
        if self.resolved_once.initialized() {
            let now = self.epoch.elapsed().as_millis() as u64;
            let stale = now.saturating_sub(self.refreshed_at.load(Ordering::Relaxed))
                > DNS_REFRESH.as_millis() as u64;
            if stale && !self.refreshing.swap(true, Ordering::AcqRel) {
                let cluster = self.clone();
                tokio::spawn(async move { cluster.resolve().await });
            }
            return;
        }
        self.resolved_once
            .get_or_init(|| async { self.resolve().await })
            .await;
    }

    /// Resolves every target; keeps the previous endpoints if nothing resolves.
    pub async fn resolve(&self) {
        self.refreshed_at.store(
            self.epoch.elapsed().as_millis().max(1) as u64,
            Ordering::Relaxed,
        );
        let EndpointSource::Dns(targets) = &self.spec.source else {
            return;
        };
        let mut fresh = Vec::new();
        for target in targets {
            fresh.extend(resolve_target(target).await);
        }
        let previous = self.endpoints.load();
        if !fresh.is_empty() || previous.is_empty() {
            // Keep the load-balancing state of endpoints that are still there.
            let merged = fresh
                .into_iter()
                .map(|e| {
                    previous
                        .iter()
                        .find(|p| p.addr == e.addr && p.weight == e.weight)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(e))
                })
                .collect();
            self.endpoints.store(Arc::new(merged));
            match &self.detector {
                Some(detector) => detector.locked(|| self.rebuild_serving()),
                None => self.rebuild_serving(),
            }
        }
        self.refreshing.store(false, Ordering::Release);
    }
}

async fn resolve_target(target: &DnsTarget) -> Vec<Endpoint> {
    for name in &target.candidates {
        let lookup = tokio::time::timeout(
            DNS_TIMEOUT,
            tokio::net::lookup_host((name.as_str(), target.port)),
        )
        .await;
        match lookup {
            Ok(Ok(addrs)) => {
                let mut list: Vec<_> = addrs.map(|a| Endpoint::new(a, target.weight)).collect();
                list.sort_by_key(|e| e.addr);
                list.dedup_by_key(|e| e.addr);
                if !list.is_empty() {
                    return list;
                }
            }
            Ok(Err(e)) => tracing::debug!(name, error = %e, "DNS resolution failed"),
            Err(_) => tracing::debug!(name, "DNS resolution timed out"),
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: EndpointSource) -> ClusterSpec {
        ClusterSpec {
            name: "c".into(),
            service: "s".into(),
            port: 80,
            protocol: UpstreamProtocol::Http1,
            source,
            lb: Default::default(),
            limits: Default::default(),
            outlier: None,
            transport: Default::default(),
        }
    }

    #[tokio::test]
    async fn dns_cluster_falls_back_to_the_name_as_written() {
        let target = DnsTarget {
            candidates: vec!["no-such-host.invalid".into(), "localhost".into()],
            port: 8080,
            weight: 1,
        };
        let cluster = Arc::new(Cluster::new(spec(EndpointSource::Dns(vec![target]))));
        let picked = cluster.pick().await.expect("localhost resolves");
        assert!(picked.addr.ip().is_loopback());
        assert_eq!(picked.addr.port(), 8080);
    }

    #[test]
    fn report_counts_attempts_errors_and_connect_failures() {
        let cluster = Cluster::new(spec(EndpointSource::Static(vec![])));
        let endpoint = Endpoint::new("127.0.0.1:80".parse().unwrap(), 1);
        for seen in [
            Observation::Status(200),
            Observation::Status(404),
            Observation::Status(503),
            Observation::ConnectFailure,
            Observation::Timeout,
        ] {
            cluster.report(&endpoint, seen);
        }
        let c = endpoint.counters();
        assert_eq!((c.rq_total, c.rq_error, c.cx_connect_fail), (5, 3, 1));
    }

    #[tokio::test]
    async fn unresolvable_cluster_has_no_endpoint() {
        let target = DnsTarget {
            candidates: vec!["no-such-host.invalid".into()],
            port: 80,
            weight: 1,
        };
        let cluster = Arc::new(Cluster::new(spec(EndpointSource::Dns(vec![target]))));
        assert!(cluster.pick().await.is_none());
    }
}
