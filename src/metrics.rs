//! Metric names and recording. One module owns every name, so dashboards and code agree.

use std::sync::OnceLock;

use http::StatusCode;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
pub const TCP_OPENED: &str = "tollgate_tcp_connections_opened_total";
pub const TCP_CLOSED: &str = "tollgate_tcp_connections_closed_total";
pub const TCP_RECEIVED_BYTES: &str = "tollgate_tcp_received_bytes_total";
pub const TCP_SENT_BYTES: &str = "tollgate_tcp_sent_bytes_total";
pub const TCP_DURATION: &str = "tollgate_tcp_connection_duration_seconds";
pub const TCP_REJECTED: &str = "tollgate_tcp_connections_rejected_total";
pub const OUTLIER_EJECTIONS: &str = "tollgate_outlier_ejections_total";
pub const DOWNSTREAM_CONNECTIONS_ACTIVE: &str = "tollgate_downstream_connections_active";
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
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(TCP_DURATION.into()), TCP_DURATION_BUCKETS)
                .map(|builder| builder.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; tollgate's metrics go there"
                );
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by status class");
    describe_counter!(
        DOWNSTREAM_CONNECTIONS,
        "Downstream connections accepted, by gateway port"
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
    describe_counter!(
        TCP_OPENED,
        "Opaque TCP streams (TCP ports, TLS passthrough, TLS-terminated tcp routes) connected upstream, by destination cluster"
    );
    describe_counter!(
        TCP_CLOSED,
        "Opaque TCP streams ended, by destination cluster"
    );
    describe_counter!(
        TCP_RECEIVED_BYTES,
        "Bytes received from downstream on opaque TCP streams, flushed every 5 s and at close"
    );
    describe_counter!(
        TCP_SENT_BYTES,
        "Bytes sent to downstream on opaque TCP streams, flushed every 5 s and at close"
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
    describe_gauge!(
        DOWNSTREAM_CONNECTIONS_ACTIVE,
        "Downstream connections open, by listener (<bind address>_<gateway port>)"
    );
    describe_gauge!(
        CERTIFICATE_EXPIRY,
        "notAfter of each loaded server credential's leaf certificate, Unix seconds (a credential no longer loaded keeps its last value until restart)"
    );
}

/// One destination cluster's TCP stream metrics, registered once and kept with the cluster.
#[derive(Debug)]
pub struct TcpStats {
    pub opened: Counter,
    pub closed: Counter,
    pub received: Counter,
    pub sent: Counter,
    pub duration: Histogram,
}

impl TcpStats {
    pub fn new(destination: &str) -> Self {
        let label = || ("destination", destination.to_string());
        TcpStats {
            opened: counter!(TCP_OPENED, &[label()]),
            closed: counter!(TCP_CLOSED, &[label()]),
            received: counter!(TCP_RECEIVED_BYTES, &[label()]),
            sent: counter!(TCP_SENT_BYTES, &[label()]),
            duration: histogram!(TCP_DURATION, &[label()]),
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
pub fn record_http_response(status: StatusCode) {
    static CLASSES: OnceLock<[Counter; 6]> = OnceLock::new();
    let classes = CLASSES.get_or_init(|| {
        ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
            .map(|class| counter!(HTTP_REQUESTS, "code_class" => class))
    });
    let index = match status.as_u16() / 100 {
        c @ 1..=5 => usize::from(c) - 1,
        _ => 5,
    };
    classes[index].increment(1);
}

/// Registered once per listener; the accept loop increments the handle.
pub fn connections_counter(gateway_port: u16) -> Counter {
    counter!(DOWNSTREAM_CONNECTIONS, "gateway_port" => gateway_port.to_string())
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

pub fn record_tls_handshake(result: &'static str) {
    static SLUGS: Slugs = Slugs::new(
        TLS_HANDSHAKES,
        "result",
        &["ok", "no_matching_server", "handshake_error", "timeout"],
    );
    SLUGS.increment(result);
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
