//! Istio's standard metrics (reference §6.1) with Istio's names, types, buckets and labels, as an
//! ingress gateway reports them (`reporter="source"`), so the stock Grafana dashboards and Kiali
//! read tollgate as they read Envoy.
//!
//! Recording is lock-free and allocation-free once a label set has been seen: each destination
//! keeps the metric handles of the label sets it has used in a small copy-on-write list.

use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics::{counter, histogram, Counter, Histogram, Label};

use super::flags::Flags;
use super::identity;

pub const REQUESTS: &str = "istio_requests_total";
pub const REQUEST_DURATION: &str = "istio_request_duration_milliseconds";
pub const REQUEST_BYTES: &str = "istio_request_bytes";
pub const RESPONSE_BYTES: &str = "istio_response_bytes";
pub const TCP_OPENED: &str = "istio_tcp_connections_opened_total";
pub const TCP_CLOSED: &str = "istio_tcp_connections_closed_total";
pub const TCP_SENT: &str = "istio_tcp_sent_bytes_total";
pub const TCP_RECEIVED: &str = "istio_tcp_received_bytes_total";
pub const BUILD: &str = "istio_build";

/// Envoy's default histogram buckets, used by all three Istio histograms.
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Label sets a destination caches; past this, recording goes through the registry (correct,
/// just slower), so a flood of odd status codes cannot grow memory without bound.
const MAX_CACHED: usize = 64;

/// The destination half of the labels: the cluster's service, as Istio names it.
#[derive(Debug, Clone)]
pub struct Destination {
    service: String,
    name: String,
    namespace: String,
}

impl Destination {
    /// `reviews.default.svc.cluster.local` is service `reviews` in `default`; any other host
    /// (a ServiceEntry's) is its own name, namespace unknown.
    pub fn of_host(host: &str) -> Self {
        let parts: Vec<&str> = host.splitn(4, '.').collect();
        let (name, namespace) = match parts.as_slice() {
            [name, ns, "svc", ..] => (*name, *ns),
            _ => (host, "unknown"),
        };
        Destination {
            service: host.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
        }
    }

    /// No cluster was chosen (404 `NR`, 503 `NC`): Istio reports `unknown`.
    pub fn unknown() -> Self {
        Destination {
            service: "unknown".into(),
            name: "unknown".into(),
            namespace: "unknown".into(),
        }
    }
}

/// `request_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }
}

/// What distinguishes one HTTP series from another for a given destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpKey {
    pub protocol: Protocol,
    /// The status sent, 0 if none was.
    pub code: u16,
    pub grpc_status: Option<u8>,
    pub flags: Flags,
}

/// One finished request's measurements.
#[derive(Debug, Clone, Copy)]
pub struct HttpSample {
    pub duration_ms: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

struct HttpSeries {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// One destination's Istio series.
pub struct DestinationStats {
    destination: Destination,
    http: ArcSwap<Vec<(HttpKey, Arc<HttpSeries>)>>,
    tcp: ArcSwap<Vec<(Flags, Arc<TcpSeries>)>>,
}

impl std::fmt::Debug for DestinationStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationStats")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

/// One destination's TCP counters for one flag set (usually none).
#[derive(Debug)]
pub struct TcpSeries {
    pub opened: Counter,
    pub closed: Counter,
    pub sent: Counter,
    pub received: Counter,
}

impl DestinationStats {
    pub fn new(destination: Destination) -> Self {
        DestinationStats {
            destination,
            http: ArcSwap::from_pointee(Vec::new()),
            tcp: ArcSwap::from_pointee(Vec::new()),
        }
    }

    pub fn record_http(&self, key: HttpKey, sample: HttpSample) {
        let cached = self.http.load();
        match cached.iter().find(|(k, _)| *k == key) {
            Some((_, series)) => series.record(sample),
            None => {
                drop(cached);
                self.http_series(key).record(sample);
            }
        }
    }

    /// The series of a label set seen for the first time: registered, then cached.
    fn http_series(&self, key: HttpKey) -> Arc<HttpSeries> {
        let labels = labels(&self.destination, key.protocol, Some(key), key.flags);
        let series = Arc::new(HttpSeries {
            requests: counter!(REQUESTS, labels.iter()),
            duration: histogram!(REQUEST_DURATION, labels.iter()),
            request_bytes: histogram!(REQUEST_BYTES, labels.iter()),
            response_bytes: histogram!(RESPONSE_BYTES, labels.iter()),
        });
        self.http.rcu(|list| {
            let mut list = Vec::clone(list);
            if list.len() < MAX_CACHED && !list.iter().any(|(k, _)| *k == key) {
                list.push((key, series.clone()));
            }
            list
        });
        series
    }

    /// The TCP counters for streams ending with `flags` (registered on first use).
    pub fn tcp(&self, flags: Flags) -> Arc<TcpSeries> {
        if let Some((_, series)) = self.tcp.load().iter().find(|(f, _)| *f == flags) {
            return series.clone();
        }
        let labels = labels(&self.destination, Protocol::Tcp, None, flags);
        let series = Arc::new(TcpSeries {
            opened: counter!(TCP_OPENED, labels.iter()),
            closed: counter!(TCP_CLOSED, labels.iter()),
            sent: counter!(TCP_SENT, labels.iter()),
            received: counter!(TCP_RECEIVED, labels.iter()),
        });
        self.tcp.rcu(|list| {
            let mut list = Vec::clone(list);
            if list.len() < MAX_CACHED && !list.iter().any(|(f, _)| *f == flags) {
                list.push((flags, series.clone()));
            }
            list
        });
        series
    }
}

impl HttpSeries {
    fn record(&self, sample: HttpSample) {
        self.requests.increment(1);
        self.duration.record(sample.duration_ms);
        self.request_bytes.record(sample.request_bytes as f64);
        self.response_bytes.record(sample.response_bytes as f64);
    }
}

/// Istio's label list in its emission order; TCP series have no response or gRPC code.
fn labels(
    dest: &Destination,
    protocol: Protocol,
    http: Option<HttpKey>,
    flags: Flags,
) -> Vec<Label> {
    let me = identity::get();
    let s = |v: &str| v.to_string();
    let mut labels = vec![
        Label::new("reporter", "source"),
        Label::new("source_workload", s(&me.workload)),
        Label::new("source_canonical_service", s(&me.canonical_service)),
        Label::new("source_canonical_revision", s(&me.canonical_revision)),
        Label::new("source_workload_namespace", s(&me.namespace)),
        Label::new("source_principal", "unknown"),
        Label::new("source_app", s(&me.app)),
        Label::new("source_version", s(&me.version)),
        Label::new("source_cluster", s(&me.cluster)),
        // A non-mesh upstream sends no peer metadata: Istio reports these as unknown.
        Label::new("destination_workload", "unknown"),
        Label::new("destination_workload_namespace", "unknown"),
        Label::new("destination_principal", "unknown"),
        Label::new("destination_app", "unknown"),
        Label::new("destination_version", "unknown"),
        Label::new("destination_service", s(&dest.service)),
        Label::new("destination_canonical_service", "unknown"),
        Label::new("destination_canonical_revision", "latest"),
        Label::new("destination_service_name", s(&dest.name)),
        Label::new("destination_service_namespace", s(&dest.namespace)),
        Label::new("destination_cluster", "unknown"),
        Label::new("request_protocol", protocol.label()),
    ];
    if let Some(key) = http {
        labels.push(Label::new("response_code", key.code.to_string()));
        let grpc = key.grpc_status.map(|g| g.to_string()).unwrap_or_default();
        labels.push(Label::new("grpc_response_status", grpc));
    }
    labels.push(Label::new("response_flags", flags.to_string()));
    labels.push(Label::new("connection_security_policy", "unknown"));
    labels
}

/// Series for requests that reached no cluster.
pub fn unknown_destination() -> &'static DestinationStats {
    static UNKNOWN: std::sync::OnceLock<DestinationStats> = std::sync::OnceLock::new();
    UNKNOWN.get_or_init(|| DestinationStats::new(Destination::unknown()))
}

/// `istio_build{component="proxy",tag=...}`: the dashboards' version panel.
pub fn record_build() {
    metrics::gauge!(BUILD, "component" => "proxy", "tag" => concat!("tollgate-", env!("CARGO_PKG_VERSION"))).set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_labels_from_the_host() {
        let d = Destination::of_host("reviews.default.svc.cluster.local");
        assert_eq!(
            (d.name.as_str(), d.namespace.as_str()),
            ("reviews", "default")
        );
        let d = Destination::of_host("api.example.com");
        assert_eq!(
            (d.name.as_str(), d.namespace.as_str()),
            ("api.example.com", "unknown")
        );
    }

    #[test]
    fn labels_follow_istio_order() {
        let key = HttpKey {
            protocol: Protocol::Http,
            code: 503,
            grpc_status: None,
            flags: Flags::NO_HEALTHY_UPSTREAM,
        };
        let labels = labels(
            &Destination::unknown(),
            Protocol::Http,
            Some(key),
            key.flags,
        );
        let names: Vec<&str> = labels.iter().map(|l| l.key()).collect();
        assert_eq!(names.first(), Some(&"reporter"));
        assert_eq!(names.last(), Some(&"connection_security_policy"));
        assert_eq!(names.len(), 25);
        let value = |k: &str| {
            labels
                .iter()
                .find(|l| l.key() == k)
                .map(|l| l.value().to_string())
        };
        assert_eq!(value("response_code").as_deref(), Some("503"));
        assert_eq!(value("response_flags").as_deref(), Some("UH"));
        assert_eq!(value("grpc_response_status").as_deref(), Some(""));
    }
}
