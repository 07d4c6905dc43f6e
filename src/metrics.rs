//! Metric names and recording. One module owns every name, so dashboards and code agree.

use std::sync::OnceLock;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::telemetry::istio::{self, Destination, DestinationStats};

pub const HTTP_REQUESTS: &str = "tollgate_http_requests_total";
pub const DOWNSTREAM_CONNECTIONS: &str = "tollgate_downstream_connections_total";
pub const CONFIG_GENERATION: &str = "tollgate_config_generation";
pub const CONFIG_RELOADS: &str = "tollgate_config_reloads_total";
pub const CONFIG_ERRORS: &str = "tollgate_config_errors_total";
pub const CONFIG_LAST_RELOAD_SUCCESS: &str =
    "tollgate_config_last_reload_success_timestamp_seconds";
pub const LISTENER_BIND_ERRORS: &str = "tollgate_listener_bind_errors_total";
pub const TLS_HANDSHAKES: &str = "tollgate_tls_handshakes_total";
pub const TLS_CLIENT_HELLO_FAILURES: &str = "tollgate_tls_client_hello_failures_total";
pub const TCP_DURATION: &str = "tollgate_tcp_connection_duration_seconds";
pub const TCP_REJECTED: &str = "tollgate_tcp_connections_rejected_total";
pub const OUTLIER_EJECTIONS: &str = "tollgate_outlier_ejections_total";
pub const UPSTREAM_RETRIES: &str = "tollgate_upstream_retries_total";
pub const UPSTREAM_OVERFLOWS: &str = "tollgate_upstream_overflows_total";
pub const UPSTREAM_CONNECT_FAILURES: &str = "tollgate_upstream_connect_failures_total";
pub const DOWNSTREAM_CONNECTIONS_ACTIVE: &str = "tollgate_downstream_connections_active";
pub const DOWNSTREAM_OVERFLOW: &str = "tollgate_downstream_connections_overflow_total";
pub const DOWNSTREAM_TIMEOUTS: &str = "tollgate_downstream_timeouts_total";
pub const PROXY_PROTOCOL_ERRORS: &str = "tollgate_proxy_protocol_errors_total";
pub const CERTIFICATE_EXPIRY: &str = "tollgate_certificate_expiry_timestamp_seconds";

/// Buckets of [`TCP_DURATION`], seconds: a request-sized exchange up to Envoy's one-hour idle timeout.
const TCP_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Installs the Prometheus recorder once per process and returns its renderer.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let istio = [
                istio::REQUEST_DURATION,
                istio::REQUEST_BYTES,
                istio::RESPONSE_BYTES,
            ];
            let recorder = istio
                .iter()
                .try_fold(PrometheusBuilder::new(), |builder, name| {
                    builder.set_buckets_for_metric(Matcher::Full((*name).into()), &istio::BUCKETS)
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(TCP_DURATION.into()),
                        TCP_DURATION_BUCKETS,
                    )
                })
                .map(|builder| builder.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; tollgate's metrics go there"
                );
            }
            describe();
            istio::record_build();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        istio::REQUESTS,
        "Requests, as Istio counts them (reporter=source)"
    );
    describe_histogram!(
        istio::REQUEST_DURATION,
        "Request duration, ms: request start to response complete"
    );
    describe_histogram!(istio::REQUEST_BYTES, "Request size: head and body, bytes");
    describe_histogram!(istio::RESPONSE_BYTES, "Response size: head and body, bytes");
    describe_counter!(istio::TCP_OPENED, "TCP streams opened");
    describe_counter!(istio::TCP_CLOSED, "TCP streams closed");
    describe_counter!(
        istio::TCP_RECEIVED,
        "Bytes received from downstream on TCP streams, flushed every 5 s and at close"
    );
    describe_counter!(
        istio::TCP_SENT,
        "Bytes sent to downstream on TCP streams, flushed every 5 s and at close"
    );
    describe_gauge!(istio::BUILD, "The proxy's build");
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by status class");
    describe_counter!(
        DOWNSTREAM_CONNECTIONS,
        "Downstream connections accepted, by gateway port"
    );
    describe_counter!(
        DOWNSTREAM_OVERFLOW,
        "Downstream connections closed on arrival because a connection limit was reached, by \
         gateway port and limit (global, listener)"
    );
    describe_counter!(
        PROXY_PROTOCOL_ERRORS,
        "Connections closed on a --proxy-protocol port for a missing or bad header, by reason"
    );
    describe_counter!(
        DOWNSTREAM_TIMEOUTS,
        "Downstream HTTP connections closed by a timeout (request_headers, stream_idle, idle)"
    );
    describe_gauge!(
        CONFIG_GENERATION,
        "Generation of the configuration snapshot in force"
    );
    describe_counter!(
        CONFIG_RELOADS,
        "Configuration reloads, by result (ok: no errors; error: some resource or file rejected)"
    );
    describe_counter!(
        CONFIG_ERRORS,
        "Configuration errors found, each counted once when first seen"
    );
    describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESS,
        "Unix time of the last reload without errors"
    );
    describe_counter!(
        LISTENER_BIND_ERRORS,
        "Gateway ports that could not be bound"
    );
    describe_counter!(
        TLS_HANDSHAKES,
        "TLS handshakes on terminating ports, by result (ok, no_matching_server, handshake_error, timeout)"
    );
    describe_counter!(
        TLS_CLIENT_HELLO_FAILURES,
        "Connections closed before a usable ClientHello, by reason"
    );
    describe_histogram!(TCP_DURATION, "Opaque TCP stream lifetime, seconds");
    describe_counter!(
        TCP_REJECTED,
        "Opaque TCP streams closed before reaching an upstream, by reason (no_route, no_cluster, no_healthy_upstream, overflow, connect_failed, connect_timeout, tls_failed)"
    );
    describe_counter!(
        OUTLIER_EJECTIONS,
        "Endpoints ejected by outlier detection, by destination cluster"
    );
    describe_counter!(UPSTREAM_RETRIES, "Retries sent, by destination cluster");
    describe_counter!(
        UPSTREAM_OVERFLOWS,
        "Requests, retries and streams refused by the circuit breaker, by destination cluster"
    );
    describe_counter!(
        UPSTREAM_CONNECT_FAILURES,
        "Upstream connections that failed (refused, timed out, TLS), by destination cluster"
    );
    describe_counter!(
        crate::telemetry::access_log::DROPPED,
        "Access log entries dropped because the writer fell behind"
    );
    describe_gauge!(
        DOWNSTREAM_CONNECTIONS_ACTIVE,
        "Downstream connections open, by listener (<bind address>_<gateway port>)"
    );
    describe_gauge!(
        CERTIFICATE_EXPIRY,
        "notAfter of each loaded server credential's leaf certificate, Unix seconds (a credential no longer loaded keeps its last value until restart)"
    );
}

/// One destination cluster's metrics, registered on first use and kept with the cluster, so
/// recording is an atomic add.
#[derive(Debug)]
pub struct ClusterStats {
    /// Istio's standard series for the cluster's service.
    pub istio: DestinationStats,
    pub tcp_duration: Histogram,
    pub retries: Counter,
    pub overflows: Counter,
    pub connect_failures: Counter,
}

impl ClusterStats {
    pub fn new(cluster: &str, service: &str) -> Self {
        let label = || ("destination", cluster.to_string());
        ClusterStats {
            istio: DestinationStats::new(Destination::of_host(service)),
            tcp_duration: histogram!(TCP_DURATION, &[label()]),
            retries: counter!(UPSTREAM_RETRIES, &[label()]),
            overflows: counter!(UPSTREAM_OVERFLOWS, &[label()]),
            connect_failures: counter!(UPSTREAM_CONNECT_FAILURES, &[label()]),
        }
    }
}

/// Counters for a fixed set of label values, registered on first use: recording one is a short
/// scan of the slugs and an atomic add, with no label allocation or registry lookup.
struct Slugs {
    name: &'static str,
    label: &'static str,
    values: &'static [&'static str],
    counters: OnceLock<Vec<Counter>>,
}

impl Slugs {
    const fn new(name: &'static str, label: &'static str, values: &'static [&'static str]) -> Self {
        Slugs {
            name,
            label,
            values,
            counters: OnceLock::new(),
        }
    }

    fn increment(&self, value: &'static str) {
        let counters = self.counters.get_or_init(|| {
            self.values
                .iter()
                .map(|v| counter!(self.name, self.label => *v))
                .collect()
        });
        match self.values.iter().position(|v| *v == value) {
            Some(i) => counters[i].increment(1),
            // A slug missing from the list still counts, through the registry.
            None => counter!(self.name, self.label => value).increment(1),
        }
    }
}

pub fn record_tcp_rejected(reason: &'static str) {
    static SLUGS: Slugs = Slugs::new(
        TCP_REJECTED,
        "reason",
        &[
            "no_route",
            "no_cluster",
            "no_healthy_upstream",
            "overflow",
            "connect_failed",
            "connect_timeout",
        ],
    );
    SLUGS.increment(reason);
}

/// Pre-registered per status class: recording is an atomic add, no allocation, no lock.
pub fn record_http_response(status: u16) {
    static CLASSES: OnceLock<[Counter; 6]> = OnceLock::new();
    let classes = CLASSES.get_or_init(|| {
        ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
            .map(|class| counter!(HTTP_REQUESTS, "code_class" => class))
    });
    let index = match status / 100 {
        c @ 1..=5 => usize::from(c) - 1,
        _ => 5,
    };
    classes[index].increment(1);
}

/// Registered once per listener; the accept loop increments the handle.
pub fn connections_counter(gateway_port: u16) -> Counter {
    counter!(DOWNSTREAM_CONNECTIONS, "gateway_port" => gateway_port.to_string())
}

/// Registered once per listener and limit; the accept loop increments the handle.
pub fn overflow_counter(gateway_port: u16, limit: &'static str) -> Counter {
    counter!(DOWNSTREAM_OVERFLOW, "gateway_port" => gateway_port.to_string(), "limit" => limit)
}

/// A connection on a `--proxy-protocol` port closed without a usable header.
pub fn record_proxy_protocol_error(reason: &'static str) {
    counter!(PROXY_PROTOCOL_ERRORS, "reason" => reason).increment(1);
}

/// A downstream HTTP connection closed by `--request-headers-timeout` and friends (rare).
pub fn record_downstream_timeout(kind: &'static str) {
    counter!(DOWNSTREAM_TIMEOUTS, "kind" => kind).increment(1);
}

/// Registered once per listener; each connection's guard moves the handle up and down.
pub fn active_connections_gauge(listener: &str) -> Gauge {
    gauge!(DOWNSTREAM_CONNECTIONS_ACTIVE, "listener" => listener.to_string())
}

/// After a reload, for each loaded credential (rare: registered on use).
pub fn record_certificate_expiry(credential: &str, not_after: i64) {
    gauge!(CERTIFICATE_EXPIRY, "credential" => credential.to_string()).set(not_after as f64);
}

pub fn record_reload(generation: u64, new_errors: usize, total_errors: usize) {
    gauge!(CONFIG_GENERATION).set(generation as f64);
    counter!(CONFIG_ERRORS).increment(new_errors as u64);
    let result = if total_errors == 0 { "ok" } else { "error" };
    counter!(CONFIG_RELOADS, "result" => result).increment(1);
    if total_errors == 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        gauge!(CONFIG_LAST_RELOAD_SUCCESS).set(now);
    }
}

/// How a ClientHello's SNI chose the server (label `sni`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SniOutcome {
    Exact,
    Wildcard,
    /// The `*` server.
    CatchAll,
    /// No SNI sent; a `*` server took it.
    NoSni,
    /// No server takes this SNI (or its absence).
    NoMatch,
}

impl SniOutcome {
    const ALL: usize = 5;

    fn label(self) -> &'static str {
        match self {
            SniOutcome::Exact => "exact",
            SniOutcome::Wildcard => "wildcard",
            SniOutcome::CatchAll => "catch_all",
            SniOutcome::NoSni => "none",
            SniOutcome::NoMatch => "no_match",
        }
    }
}

/// How a handshake ended (label `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeResult {
    Ok,
    NoMatchingServer,
    /// MUTUAL: no client certificate, or one that does not verify.
    ClientCertRejected,
    ProtocolError,
    Timeout,
}

impl HandshakeResult {
    const ALL: usize = 5;

    fn label(self) -> &'static str {
        match self {
            HandshakeResult::Ok => "ok",
            HandshakeResult::NoMatchingServer => "no_matching_server",
            HandshakeResult::ClientCertRejected => "client_cert_rejected",
            HandshakeResult::ProtocolError => "protocol_error",
            HandshakeResult::Timeout => "timeout",
        }
    }
}

/// One TLS server's handshake counters by SNI outcome and result, each registered on first use:
/// counting a handshake is an index and an atomic add.
#[derive(Debug)]
pub struct HandshakeStats {
    server: std::sync::Arc<str>,
    counters: [OnceLock<Counter>; SniOutcome::ALL * HandshakeResult::ALL],
}

impl HandshakeStats {
    pub fn new(server: std::sync::Arc<str>) -> Self {
        HandshakeStats {
            server,
            counters: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Handshakes that found no server (`server="none"`).
    pub fn unmatched() -> std::sync::Arc<HandshakeStats> {
        static NONE: OnceLock<std::sync::Arc<HandshakeStats>> = OnceLock::new();
        NONE.get_or_init(|| std::sync::Arc::new(HandshakeStats::new("none".into())))
            .clone()
    }

    pub fn server_name(&self) -> &std::sync::Arc<str> {
        &self.server
    }

    pub fn record(&self, sni: SniOutcome, result: HandshakeResult) {
        let slot = &self.counters[sni as usize * HandshakeResult::ALL + result as usize];
        slot.get_or_init(|| {
            counter!(TLS_HANDSHAKES, "server" => self.server.to_string(), "sni" => sni.label(), "result" => result.label())
        })
        .increment(1);
    }
}

pub fn record_client_hello_failure(reason: &'static str) {
    static SLUGS: Slugs = Slugs::new(
        TLS_CLIENT_HELLO_FAILURES,
        "reason",
        &[
            "not_tls",
            "sslv2",
            "malformed",
            "too_large",
            "not_client_hello",
            "timeout",
            "eof",
            "io",
        ],
    );
    SLUGS.increment(reason);
}

/// An outlier ejection (rare: registered on use).
pub fn record_outlier_ejection(cluster: &str) {
    counter!(OUTLIER_EJECTIONS, "destination" => cluster.to_string()).increment(1);
}

pub fn record_bind_error() {
    counter!(LISTENER_BIND_ERRORS).increment(1);
}
