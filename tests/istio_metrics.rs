//! Istio's standard metrics end to end (reference §6.1): one gateway, a known number of HTTP
//! requests of every outcome (200, 404 `NR`, 503 `UF,URX`, 503 `UH`, 503 `NC`), HTTPS, TCP and
//! TLS-passthrough streams and TLS failures, then `/stats/prometheus` (metrics and admin
//! addresses) parsed into series and checked by name, labels, label order and value — plus the
//! tollgate_* series the same traffic triggers.

mod support;

use std::time::Duration;

use support::istio_world::*;
use support::*;

/// Istio's HTTP label list, in emission order (reference §6.1).
const HTTP_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// Envoy's default buckets as exported (`le`), `+Inf` last.
const BUCKETS: [&str; 20] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf",
];

// What the test sends.
const N_OK: usize = 6;
const OK_BODY: usize = 1000;
const N_HTTPS: usize = 2;
const N_NR: usize = 3;
const N_DEAD: usize = 2;
const N_EMPTY: usize = 2;
const N_NC: usize = 2;
const N_TCP: usize = 3;
const TCP_BYTES: usize = 5000;
const N_PASS: usize = 2;
const N_SNI_MISS: usize = 2;
const N_NOT_TLS: usize = 1;

/// Istio's TCP label list: the HTTP one without `response_code` and `grpc_response_status`.
fn tcp_labels() -> Vec<&'static str> {
    HTTP_LABELS
        .iter()
        .copied()
        .filter(|l| *l != "response_code" && *l != "grpc_response_status")
        .collect()
}

/// The labels every series of this gateway carries (reporter and `source_*`), and the
/// `destination_*` ones Istio reports for a non-mesh upstream.
fn common_labels() -> Vec<(&'static str, &'static str)> {
    vec![
        ("reporter", "source"),
        ("source_workload", WORKLOAD),
        ("source_canonical_service", APP),
        ("source_canonical_revision", APP_VERSION),
        ("source_workload_namespace", WORKLOAD_NAMESPACE),
        ("source_principal", "unknown"),
        ("source_app", APP),
        ("source_version", APP_VERSION),
        ("source_cluster", CLUSTER_ID),
        ("destination_workload", "unknown"),
        ("destination_workload_namespace", "unknown"),
        ("destination_principal", "unknown"),
        ("destination_app", "unknown"),
        ("destination_version", "unknown"),
        ("destination_canonical_service", "unknown"),
        ("destination_canonical_revision", "latest"),
        ("destination_cluster", "unknown"),
        ("connection_security_policy", "unknown"),
    ]
}

/// The full HTTP label set of one series, in §6.1 order.
fn http_series(
    service: &str,
    name: &str,
    namespace: &str,
    code: &str,
    flags: &str,
) -> Vec<(String, String)> {
    let mut want: Vec<(&str, String)> = common_labels()
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    want.extend([
        ("destination_service", service.to_string()),
        ("destination_service_name", name.to_string()),
        ("destination_service_namespace", namespace.to_string()),
        ("request_protocol", "http".to_string()),
        ("response_code", code.to_string()),
        ("grpc_response_status", String::new()),
        ("response_flags", flags.to_string()),
    ]);
    ordered(&HTTP_LABELS, want)
}

/// The full TCP label set of one series, in §6.1 order.
fn tcp_series(service: &str, name: &str, namespace: &str, flags: &str) -> Vec<(String, String)> {
    let mut want: Vec<(&str, String)> = common_labels()
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    want.extend([
        ("destination_service", service.to_string()),
        ("destination_service_name", name.to_string()),
        ("destination_service_namespace", namespace.to_string()),
        ("request_protocol", "tcp".to_string()),
        ("response_flags", flags.to_string()),
    ]);
    ordered(&tcp_labels(), want)
}

fn ordered(order: &[&str], want: Vec<(&str, String)>) -> Vec<(String, String)> {
    order
        .iter()
        .map(|k| {
            let v = want
                .iter()
                .find(|(n, _)| n == k)
                .unwrap_or_else(|| panic!("test bug: no value for label {k}"));
            (k.to_string(), v.1.clone())
        })
        .collect()
}

/// The single sample `name` whose labels are exactly `labels` (same order), and its value;
/// failing with the family's samples otherwise.
fn exact(e: &Exposition, name: &str, labels: &[(String, String)]) -> f64 {
    let want: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let found = e.find(name, &want);
    match found.as_slice() {
        [one] if one.labels == labels => one.value,
        [one] => panic!(
            "{name}: labels differ from Istio's (name, order or extra):\n got  {:?}\n want {labels:?}",
            one.labels
        ),
        [] => panic!(
            "{name}: no series with labels {want:?}; the family has:\n{}",
            e.dump(name)
        ),
        many => panic!("{name}: {} series match {want:?}", many.len()),
    }
}

/// `labels` plus `le` (histogram buckets).
fn with_le(labels: &[(String, String)], le: &str) -> Vec<(String, String)> {
    let mut l = labels.to_vec();
    l.push(("le".into(), le.into()));
    l
}

/// Checks a histogram family for one label set: the buckets are exactly Envoy's, in order,
/// cumulative, `+Inf` = `_count` = `count`; returns `_sum`.
fn histogram(e: &Exposition, family: &str, labels: &[(String, String)], count: usize) -> f64 {
    assert_eq!(e.type_of(family), Some("histogram"), "# TYPE of {family}");
    let want: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let bucket_name = format!("{family}_bucket");
    let buckets = e.find(&bucket_name, &want);
    let les: Vec<&str> = buckets.iter().filter_map(|s| s.label("le")).collect();
    assert_eq!(
        les, BUCKETS,
        "{bucket_name} for {want:?}: le values differ from Envoy's default buckets"
    );
    let mut previous = 0.0;
    for b in &buckets {
        assert_eq!(
            b.labels,
            with_le(labels, b.label("le").unwrap()),
            "{bucket_name}: label names/order"
        );
        assert!(
            b.value >= previous,
            "{bucket_name} not cumulative at le={:?}: {} < {previous}",
            b.label("le"),
            b.value
        );
        previous = b.value;
    }
    assert_eq!(previous, count as f64, "{bucket_name}{{le=\"+Inf\"}}");
    let total = exact(e, &format!("{family}_count"), labels);
    assert_eq!(total, count as f64, "{family}_count for {want:?}");
    exact(e, &format!("{family}_sum"), labels)
}

/// Scrapes until `done` holds (≤ 15 s); the last scrape either way.
fn scrape_when(w: &IstioWorld, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let mut last = Exposition::default();
    let _ = poll(Duration::from_secs(15), || {
        last = w.scrape();
        done(&last).then_some(())
    });
    last
}

#[test]
fn exposition_parser_reads_names_labels_in_order_and_values() {
    let text = "# TYPE x_total counter\nx_total{b=\"1\",a=\"q\\\"u\\\\o\\nte\"} 3\n\
                y 4.5 1700000000\nz{le=\"+Inf\"} +Inf\n";
    let e = Exposition::parse(text).unwrap();
    assert_eq!(e.samples.len(), 3);
    assert_eq!(e.samples[0].label_names(), vec!["b", "a"]);
    assert_eq!(e.samples[0].label("a"), Some("q\"u\\o\nte"));
    assert_eq!(e.samples[0].value, 3.0);
    assert_eq!(e.samples[1].value, 4.5);
    assert!(e.samples[2].value.is_infinite());
    assert_eq!(e.type_of("x_total"), Some("counter"));
    assert_eq!(e.sum("x_total", &[("b", "1")]), 3.0);
    assert_eq!(e.sum("x_total", &[("b", "2")]), 0.0);
    assert!(Exposition::parse("x{a=1} 2").is_err());
    assert!(Exposition::parse("x 2 3 4").is_err());
    assert!(Exposition::parse("x{a=\"1\" 2").is_err());
}

#[test]
fn istio_standard_metrics_match_the_traffic_sent() {
    let w = IstioWorld::start();

    // --- Traffic: a known number of each outcome.
    let mut ok_response_body = 0usize;
    for i in 0..N_OK {
        let resp = w.expect(200, HTTP_HOST, &format!("/ok/{i}"), &[b'b'; OK_BODY]);
        ok_response_body += resp.body.len();
    }
    for _ in 0..N_HTTPS {
        ok_response_body += w.https_get("/secure").len();
    }
    for i in 0..N_NR {
        w.expect(404, &format!("nobody-{i}.example.com"), "/", b"");
    }
    for _ in 0..N_DEAD {
        w.expect(503, HTTP_HOST, "/dead", b"");
    }
    for _ in 0..N_EMPTY {
        w.expect(503, HTTP_HOST, "/empty", b"");
    }
    for _ in 0..N_NC {
        w.expect(503, HTTP_HOST, "/nosubset", b"");
    }
    for _ in 0..N_TCP {
        w.tcp_echo(TCP_BYTES);
    }
    let mut pass_body = 0usize;
    for _ in 0..N_PASS {
        pass_body += w.passthrough_get().len();
    }
    for _ in 0..N_SNI_MISS {
        let out = openssl_s_client(w.https.port(), &["-servername", "nobody.test"])
            .unwrap_or_else(|| w.gw.fail("openssl s_client -servername nobody.test hung"));
        if out.success || !out.subject().is_empty() {
            w.gw.fail(format!(
                "SNI nobody.test matches no server: the handshake must fail:\n{}",
                out.text()
            ));
        }
    }
    for _ in 0..N_NOT_TLS {
        // Plain HTTP on the TLS port: no ClientHello.
        let _ = nc(
            w.pass.port(),
            b"GET / HTTP/1.1\r\nHost: pass.example.com\r\n\r\n",
        )
        .unwrap_or_else(|| w.gw.fail("nc to the TLS port hung"));
    }

    // --- Scrape once everything has been recorded (HTTP at stream end, TCP at close).
    let web_ok = http_series(WEB_SERVICE, "web", "shop", "200", "-");
    let tcp = tcp_series(TCP_SERVICE, "tcp-echo", "shop", "-");
    let pass = tcp_series(PASS_SERVICE, PASS_SERVICE, "unknown", "-");
    let all_http = (N_OK + N_HTTPS + N_NR + N_DEAD + N_EMPTY + N_NC) as f64;
    let e = scrape_when(&w, |e| {
        e.sum("istio_requests_total", &[]) >= all_http
            && e.sum(
                "istio_tcp_connections_closed_total",
                &[("destination_service", TCP_SERVICE)],
            ) >= N_TCP as f64
            && e.sum(
                "istio_tcp_connections_closed_total",
                &[("destination_service", PASS_SERVICE)],
            ) >= N_PASS as f64
    });

    // --- istio_requests_total: one series per (destination, code, flags), counts as sent.
    assert_eq!(e.type_of("istio_requests_total"), Some("counter"));
    let expected_requests = [
        (web_ok.clone(), N_OK + N_HTTPS),
        (
            http_series("unknown", "unknown", "unknown", "404", "NR"),
            N_NR,
        ),
        (
            // Istio's default retry policy retries connect failures twice: Envoy says UF,URX.
            http_series(DEAD_SERVICE, DEAD_SERVICE, "unknown", "503", "UF,URX"),
            N_DEAD,
        ),
        (
            http_series(EMPTY_SERVICE, EMPTY_SERVICE, "unknown", "503", "UH"),
            N_EMPTY,
        ),
        (
            // The route's cluster (a subset no DestinationRule defines) does not exist: no
            // cluster, so no destination service.
            http_series("unknown", "unknown", "unknown", "503", "NC"),
            N_NC,
        ),
    ];
    for (labels, count) in &expected_requests {
        let got = exact(&e, "istio_requests_total", labels);
        assert_eq!(
            got,
            *count as f64,
            "istio_requests_total{labels:?}\nall series:\n{}",
            e.dump("istio_requests_total")
        );
    }
    assert_eq!(
        e.find("istio_requests_total", &[]).len(),
        expected_requests.len(),
        "istio_requests_total has series for traffic not sent:\n{}",
        e.dump("istio_requests_total")
    );

    // --- The three histograms: Envoy's buckets, one observation per request.
    for (labels, count) in &expected_requests {
        let duration = histogram(&e, "istio_request_duration_milliseconds", labels, *count);
        assert!(
            duration >= 0.0 && duration.is_finite(),
            "duration sum {duration}"
        );
        let req = histogram(&e, "istio_request_bytes", labels, *count);
        assert!(req > 0.0, "istio_request_bytes_sum for {labels:?} is {req}");
        let resp = histogram(&e, "istio_response_bytes", labels, *count);
        assert!(
            resp > 0.0,
            "istio_response_bytes_sum for {labels:?} is {resp}"
        );
    }
    let req_sum = exact(&e, "istio_request_bytes_sum", &web_ok);
    assert!(
        req_sum >= (N_OK * OK_BODY) as f64,
        "istio_request_bytes_sum for the 200s is {req_sum}, less than the {} body bytes sent",
        N_OK * OK_BODY
    );
    let resp_sum = exact(&e, "istio_response_bytes_sum", &web_ok);
    assert!(
        resp_sum >= ok_response_body as f64,
        "istio_response_bytes_sum for the 200s is {resp_sum}, less than the {ok_response_body} body bytes received"
    );
    // The upstream answered the 200s: they took some time.
    let duration_sum = exact(&e, "istio_request_duration_milliseconds_sum", &web_ok);
    assert!(
        duration_sum > 0.0,
        "duration sum of the 200s: {duration_sum}"
    );

    // --- TCP: streams opened and closed, bytes flushed at close.
    for name in [
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
    ] {
        assert_eq!(e.type_of(name), Some("counter"), "# TYPE of {name}");
    }
    let tcp_total = (N_TCP * TCP_BYTES) as f64;
    assert_eq!(
        exact(&e, "istio_tcp_connections_opened_total", &tcp),
        N_TCP as f64
    );
    assert_eq!(
        exact(&e, "istio_tcp_connections_closed_total", &tcp),
        N_TCP as f64
    );
    assert_eq!(
        exact(&e, "istio_tcp_received_bytes_total", &tcp),
        tcp_total,
        "bytes received from the TCP clients"
    );
    assert_eq!(
        exact(&e, "istio_tcp_sent_bytes_total", &tcp),
        tcp_total,
        "bytes sent to the TCP clients"
    );
    assert_eq!(
        exact(&e, "istio_tcp_connections_opened_total", &pass),
        N_PASS as f64
    );
    assert_eq!(
        exact(&e, "istio_tcp_connections_closed_total", &pass),
        N_PASS as f64
    );
    let pass_sent = exact(&e, "istio_tcp_sent_bytes_total", &pass);
    assert!(
        pass_sent >= pass_body as f64,
        "passthrough bytes sent {pass_sent} < the {pass_body} page bytes curl received"
    );
    let pass_received = exact(&e, "istio_tcp_received_bytes_total", &pass);
    assert!(
        pass_received > 0.0,
        "passthrough bytes received: {pass_received}"
    );
    // HTTP streams are not TCP streams.
    assert_eq!(
        e.sum(
            "istio_tcp_connections_opened_total",
            &[("destination_service", WEB_SERVICE)]
        ),
        0.0
    );

    // --- istio_build.
    assert_eq!(e.type_of("istio_build"), Some("gauge"));
    let build = e.find("istio_build", &[("component", "proxy")]);
    assert_eq!(build.len(), 1, "istio_build:\n{}", e.dump("istio_build"));
    assert_eq!(build[0].value, 1.0);
    assert!(
        build[0].label("tag").is_some_and(|t| !t.is_empty()),
        "istio_build tag: {}",
        build[0]
    );

    // --- tollgate's own series for the same traffic.
    let dead_cluster = format!("outbound|80||{DEAD_SERVICE}");
    let web_cluster = format!("outbound|80||{WEB_SERVICE}");
    // Each dead request: one try and two retries, all refused.
    assert_eq!(
        e.sum(
            "tollgate_upstream_connect_failures_total",
            &[("destination", &dead_cluster)]
        ),
        (3 * N_DEAD) as f64,
        "connect failures:\n{}",
        e.dump("tollgate_upstream")
    );
    assert_eq!(
        e.sum(
            "tollgate_upstream_retries_total",
            &[("destination", &dead_cluster)]
        ),
        (2 * N_DEAD) as f64,
        "retries:\n{}",
        e.dump("tollgate_upstream")
    );
    assert_eq!(
        e.sum(
            "tollgate_upstream_connect_failures_total",
            &[("destination", &web_cluster)]
        ),
        0.0
    );
    assert_eq!(
        e.sum(
            "tollgate_upstream_retries_total",
            &[("destination", &web_cluster)]
        ),
        0.0
    );
    let handshakes = |result: &str| e.sum("tollgate_tls_handshakes_total", &[("result", result)]);
    assert_eq!(
        handshakes("ok"),
        N_HTTPS as f64,
        "terminated handshakes:\n{}",
        e.dump("tollgate_tls")
    );
    assert_eq!(
        handshakes("no_matching_server"),
        N_SNI_MISS as f64,
        "SNI misses:\n{}",
        e.dump("tollgate_tls")
    );
    assert_eq!(
        e.sum(
            "tollgate_tls_client_hello_failures_total",
            &[("reason", "not_tls")]
        ),
        N_NOT_TLS as f64,
        "ClientHello failures:\n{}",
        e.dump("tollgate_tls")
    );
    let class = |c: &str| e.sum("tollgate_http_requests_total", &[("code_class", c)]);
    assert_eq!(class("2xx"), (N_OK + N_HTTPS) as f64);
    assert_eq!(class("4xx"), N_NR as f64);
    assert_eq!(class("5xx"), (N_DEAD + N_EMPTY + N_NC) as f64);

    // --- The admin address serves the same Istio series.
    let admin = w.scrape_at("admin");
    for (labels, count) in &expected_requests {
        assert_eq!(
            exact(&admin, "istio_requests_total", labels),
            *count as f64,
            "admin /stats/prometheus istio_requests_total{labels:?}"
        );
    }
    assert_eq!(exact(&admin, "istio_tcp_sent_bytes_total", &tcp), tcp_total);
}

/// A TLS connection whose SNI matches no server never reaches a filter chain in Envoy (reference
/// §1.9: counted only in the listener stat `no_filter_chain_match`), so Istio's stats filter,
/// which lives in the chain, records nothing: no `istio_tcp_*` series. Tollgate must not invent
/// a `destination_service="unknown"`, `response_flags="NR"` TCP series for it (it would show up
/// as an "unknown" row in the Mesh dashboard's TCP Workloads and an "unknown" node in Kiali).
#[test]
fn sni_misses_feed_no_istio_series() {
    let w = IstioWorld::start();
    // One SNI miss on the terminating HTTPS port, one on the passthrough port.
    for port in [w.https.port(), w.pass.port()] {
        let out = openssl_s_client(port, &["-servername", "nobody.test"])
            .unwrap_or_else(|| w.gw.fail("openssl s_client -servername nobody.test hung"));
        if out.success || !out.subject().is_empty() {
            w.gw.fail(format!(
                "SNI nobody.test on port {port}: the handshake must fail:\n{}",
                out.text()
            ));
        }
    }
    // The misses are counted where tollgate counts them...
    let e = scrape_when(&w, |e| {
        e.sum(
            "tollgate_tls_handshakes_total",
            &[("result", "no_matching_server")],
        ) >= 2.0
    });
    assert_eq!(
        e.sum(
            "tollgate_tls_handshakes_total",
            &[("result", "no_matching_server")]
        ),
        2.0,
        "{}",
        e.dump("tollgate_tls")
    );
    // ...and in no Istio series.
    let istio: Vec<String> = e
        .samples
        .iter()
        .filter(|s| s.name.starts_with("istio_") && s.name != "istio_build")
        .map(|s| s.to_string())
        .collect();
    assert!(
        istio.is_empty(),
        "SNI misses (no filter chain in Envoy) must not produce Istio series; got:\n{}",
        istio.join("\n")
    );
}
