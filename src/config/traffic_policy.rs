//! Validation of a DestinationRule `trafficPolicy` (reference §3.2–3.7): load balancer,
//! connection pool, outlier detection and upstream TLS, with Istio's admission rules; settings
//! tollgate accepts without applying are warned.

use super::duration;
use super::model::{
    ClientTls, ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};
use super::policy::{duration_at_least, int_percent};
use super::validate::Findings;

/// A DestinationRule `trafficPolicy` (top level or a subset's), with its port-level settings.
pub(super) fn traffic_policy(tp: &TrafficPolicy, field: &str, f: &mut Findings) {
    let top = Components {
        lb: &tp.load_balancer,
        pool: &tp.connection_pool,
        outlier: &tp.outlier_detection,
        tls: &tp.tls,
    };
    top.validate(field, f);
    for (i, p) in tp.port_level_settings.iter().enumerate() {
        let at = format!("{field}.portLevelSettings[{i}]");
        match &p.port {
            Some(port) if (1..=65535).contains(&port.number) => {}
            _ => f.error(
                format!("{at}.port.number"),
                "a port number 1-65535 is required",
            ),
        }
        let level = Components {
            lb: &p.load_balancer,
            pool: &p.connection_pool,
            outlier: &p.outlier_detection,
            tls: &p.tls,
        };
        level.validate(&at, f);
    }
    for (name, present) in [
        ("tunnel", tp.tunnel.is_some()),
        ("proxyProtocol", tp.proxy_protocol.is_some()),
        ("retryBudget", tp.retry_budget.is_some()),
    ] {
        if present {
            f.warn(
                format!("{field}.{name}"),
                format!("{name} is accepted but not applied yet by tollgate"),
            );
        }
    }
}

/// The four components a port-level setting replaces wholesale.
struct Components<'a> {
    lb: &'a Option<LoadBalancerSettings>,
    pool: &'a Option<ConnectionPoolSettings>,
    outlier: &'a Option<OutlierDetection>,
    tls: &'a Option<ClientTls>,
}

impl Components<'_> {
    fn validate(&self, field: &str, f: &mut Findings) {
        if let Some(lb) = self.lb {
            load_balancer(lb, &format!("{field}.loadBalancer"), f);
        }
        if let Some(pool) = self.pool {
            connection_pool(pool, &format!("{field}.connectionPool"), f);
        }
        if let Some(od) = self.outlier {
            outlier_detection(od, &format!("{field}.outlierDetection"), f);
        }
        if let Some(tls) = self.tls {
            client_tls(tls, &format!("{field}.tls"), f);
        }
    }
}

fn load_balancer(lb: &LoadBalancerSettings, field: &str, f: &mut Findings) {
    const SIMPLE: &[&str] = &[
        "UNSPECIFIED",
        "LEAST_CONN",
        "RANDOM",
        "PASSTHROUGH",
        "ROUND_ROBIN",
        "LEAST_REQUEST",
    ];
    if let Some(simple) = &lb.simple {
        if !SIMPLE.contains(&simple.as_str()) {
            f.error(
                format!("{field}.simple"),
                format!("{simple:?} is not one of {}", SIMPLE.join(", ")),
            );
        }
        if lb.consistent_hash.is_some() {
            f.error(field, "simple and consistentHash are mutually exclusive");
        }
    }
    if let Some(ch) = &lb.consistent_hash {
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip == Some(true),
            ch.http_query_parameter_name.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            f.error(
                format!("{field}.consistentHash"),
                "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required",
            );
        }
        if let Some(cookie) = &ch.http_cookie {
            if cookie.name.is_empty() {
                f.error(
                    format!("{field}.consistentHash.httpCookie.name"),
                    "is required",
                );
            }
            if let Some(ttl) = &cookie.ttl {
                if let Err(e) = duration::parse(ttl) {
                    f.error(format!("{field}.consistentHash.httpCookie.ttl"), e);
                }
            }
        }
    }
    if lb.locality_lb_setting.is_some() {
        f.warn(
            format!("{field}.localityLbSetting"),
            "one gateway has one locality; localityLbSetting is ignored",
        );
    }
}

/// Durations and counts as Istio admits them; settings tollgate does not apply say so.
fn connection_pool(pool: &ConnectionPoolSettings, field: &str, f: &mut Findings) {
    if let Some(tcp) = &pool.tcp {
        let at = format!("{field}.tcp");
        if tcp.max_connections.is_some_and(|n| n < 0) {
            f.error(format!("{at}.maxConnections"), "must not be negative");
        }
        for (name, value) in [
            ("connectTimeout", &tcp.connect_timeout),
            ("maxConnectionDuration", &tcp.max_connection_duration),
            ("idleTimeout", &tcp.idle_timeout),
        ] {
            if let Some(text) = value {
                duration_at_least(text, 1, &format!("{at}.{name}"), f);
            }
        }
        if let Some(ka) = &tcp.tcp_keepalive {
            let ka_at = format!("{at}.tcpKeepalive");
            if ka
                .probes
                .is_some_and(|n| !(0..=i64::from(u32::MAX)).contains(&n))
            {
                f.error(format!("{ka_at}.probes"), "must be 0 or more");
            }
            for (name, value) in [("time", &ka.time), ("interval", &ka.interval)] {
                if let Some(text) = value {
                    duration_at_least(text, 1, &format!("{ka_at}.{name}"), f);
                }
            }
        }
        let unapplied = [(
            "maxConnectionDuration",
            tcp.max_connection_duration.is_some(),
        )];
        warn_unapplied(&at, &unapplied, f);
    }
    if let Some(http) = &pool.http {
        let at = format!("{field}.http");
        for (name, value) in [
            ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries),
            ("maxConcurrentStreams", http.max_concurrent_streams),
        ] {
            if value.is_some_and(|n| n < 0) {
                f.error(format!("{at}.{name}"), "must not be negative");
            }
        }
        if let Some(text) = &http.idle_timeout {
            if let Err(e) = duration::parse(text) {
                f.error(format!("{at}.idleTimeout"), e);
            }
        }
        let unapplied = [
            ("h2UpgradePolicy", http.h2_upgrade_policy.is_some()),
            ("useClientProtocol", http.use_client_protocol.is_some()),
            (
                "maxConcurrentStreams",
                http.max_concurrent_streams.is_some(),
            ),
            ("http2KeepAlive", http.http2_keep_alive.is_some()),
        ];
        warn_unapplied(&at, &unapplied, f);
    }
}

/// Istio's `validateOutlierDetection`, plus warnings for what tollgate does not apply.
fn outlier_detection(od: &OutlierDetection, field: &str, f: &mut Findings) {
    for (name, value) in [
        ("consecutive5xxErrors", od.consecutive_5xx_errors),
        ("consecutiveGatewayErrors", od.consecutive_gateway_errors),
        ("consecutiveErrors", od.consecutive_errors),
        (
            "consecutiveLocalOriginFailures",
            od.consecutive_local_origin_failures,
        ),
    ] {
        if value.is_some_and(|n| !(0..=i64::from(u32::MAX)).contains(&n)) {
            f.error(format!("{field}.{name}"), "must not be negative");
        }
    }
    for (name, value) in [
        ("interval", &od.interval),
        ("baseEjectionTime", &od.base_ejection_time),
    ] {
        if let Some(text) = value {
            duration_at_least(text, 1, &format!("{field}.{name}"), f);
        }
    }
    if let Some(p) = od.max_ejection_percent {
        int_percent(p, &format!("{field}.maxEjectionPercent"), f);
    }
    if let Some(p) = od.min_health_percent {
        int_percent(p, &format!("{field}.minHealthPercent"), f);
    }
    if od.consecutive_local_origin_failures.is_some()
        && od.split_external_local_origin_errors != Some(true)
    {
        f.error(
            format!("{field}.consecutiveLocalOriginFailures"),
            "is only supported with splitExternalLocalOriginErrors: true",
        );
    }
    if od.consecutive_errors.is_some() {
        f.warn(
            format!("{field}.consecutiveErrors"),
            "consecutiveErrors is deprecated and ignored; use consecutive5xxErrors or consecutiveGatewayErrors",
        );
    }
    if od.split_external_local_origin_errors == Some(true) {
        f.warn(
            format!("{field}.splitExternalLocalOriginErrors"),
            "splitExternalLocalOriginErrors is accepted but not applied yet by tollgate: connect failures and timeouts count as 503 and 504",
        );
    }
}

/// Istio's `validateTLSSettings` for a DestinationRule's `tls`.
fn client_tls(tls: &ClientTls, field: &str, f: &mut Findings) {
    const MODES: &[&str] = &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];
    let mode = tls.mode.as_deref().unwrap_or("DISABLE");
    if !MODES.contains(&mode) {
        f.error(
            format!("{field}.mode"),
            format!("{mode:?} is not one of {}", MODES.join(", ")),
        );
        return;
    }
    let files = [
        ("clientCertificate", &tls.client_certificate),
        ("privateKey", &tls.private_key),
        ("caCertificates", &tls.ca_certificates),
        ("caCrl", &tls.ca_crl),
    ];
    match mode {
        "SIMPLE" | "MUTUAL" if tls.credential_name.is_some() => {
            for (name, value) in files {
                if value.is_some() {
                    f.error(
                        format!("{field}.{name}"),
                        "cannot be set together with credentialName",
                    );
                }
            }
        }
        "MUTUAL" => {
            for (name, value) in &files[..2] {
                if value.as_deref().unwrap_or("").is_empty() {
                    f.error(
                        format!("{field}.{name}"),
                        "is required for MUTUAL (or set credentialName)",
                    );
                }
            }
        }
        "ISTIO_MUTUAL" => f.warn(
            format!("{field}.mode"),
            "ISTIO_MUTUAL originates TLS with the mesh's workload certificates, which a standalone gateway does not have: connections to this destination fail (503 UF); use MUTUAL with a credential",
        ),
        _ => {}
    }
    if tls.insecure_skip_verify == Some(true) && tls.ca_certificates.is_some() {
        f.warn(
            format!("{field}.caCertificates"),
            "insecureSkipVerify: true skips certificate verification; caCertificates is not used",
        );
    }
}

fn warn_unapplied(field: &str, fields: &[(&str, bool)], f: &mut Findings) {
    for (name, _) in fields.iter().filter(|(_, present)| *present) {
        f.warn(
            format!("{field}.{name}"),
            format!("{name} is accepted but not applied yet by tollgate"),
        );
    }
}
