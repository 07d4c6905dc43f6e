//! The stock Istio Grafana dashboards on tollgate's metrics: a real Prometheus (Debian's
//! `prometheus`, a hard requirement) scrapes the gateway's `--metrics-addr` every second while
//! HTTP (200, 500, 404 `NR`, 503 `UH`) and TCP traffic flows; then every panel query of the Mesh
//! and Service dashboards (`../shared/fixtures/grafana/`) is run through Prometheus's HTTP API
//! with the dashboard variables filled in.
//!
//! A gateway reports as the client side (`reporter="source"`, `connection_security_policy`
//! `unknown`), so the panels it feeds ([`FED`]) must show data — with the values the traffic
//! implies where they can be computed — and the panels that only a server-side sidecar feeds
//! (`reporter="destination"`) or that select mTLS traffic ([`EMPTY`]) must stay empty. The two
//! lists are derived from the expressions and checked against these constants, so the
//! classification itself is tested.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::istio_world::*;
use support::*;

/// Panel targets a gateway feeds: `(dashboard, row, panel title, refIds)`; each must return data.
/// (`-`: a target without refId.)
pub const FED: &[(&str, &str, &str, &[&str])] = &[
    ("mesh", "Global Traffic", "Traffic Volume", &["-"]),
    ("mesh", "Global Traffic", "Success Rate", &["-"]),
    ("mesh", "Global Traffic", "4xxs", &["-"]),
    ("mesh", "Global Traffic", "5xxs", &["-"]),
    (
        "mesh",
        "Global Traffic",
        "HTTP/gRPC Workloads",
        &["requests", "p50", "p90", "p99", "success"],
    ),
    ("mesh", "Global Traffic", "TCP Workloads", &["recv", "sent"]),
    (
        "mesh",
        "Istio Component Versions",
        "Istio Component Versions",
        &["-"],
    ),
    ("service", "General", "Client Request Volume", &["A"]),
    (
        "service",
        "General",
        "Client Success Rate (non-5xx responses)",
        &["A"],
    ),
    (
        "service",
        "General",
        "Client Request Duration",
        &["A", "B", "C"],
    ),
    ("service", "General", "TCP Received Bytes", &["A"]),
    ("service", "General", "TCP Sent Bytes", &["A"]),
    (
        "service",
        "Client Workloads",
        "Incoming Requests By Source And Response Code",
        &["B"],
    ),
    (
        "service",
        "Client Workloads",
        "Incoming Success Rate (non-5xx responses) By Source",
        &["B"],
    ),
    (
        "service",
        "Client Workloads",
        "Incoming Request Duration By Source",
        &["E", "F", "G", "H"],
    ),
    (
        "service",
        "Client Workloads",
        "Incoming Request Size By Source",
        &["E", "F", "G", "H"],
    ),
    (
        "service",
        "Client Workloads",
        "Response Size By Source",
        &["E", "F", "G", "H"],
    ),
    (
        "service",
        "Client Workloads",
        "Bytes Received from Incoming TCP Connection",
        &["B"],
    ),
    (
        "service",
        "Client Workloads",
        "Bytes Sent to Incoming TCP Connection",
        &["B"],
    ),
];

/// Panel targets a gateway cannot feed (`reporter="destination"`, or
/// `connection_security_policy="mutual_tls"`): each must return nothing.
pub const EMPTY: &[(&str, &str, &str, &[&str])] = &[
    ("service", "General", "Server Request Volume", &["A"]),
    (
        "service",
        "General",
        "Server Success Rate (non-5xx responses)",
        &["A"],
    ),
    (
        "service",
        "General",
        "Server Request Duration",
        &["A", "B", "C"],
    ),
    (
        "service",
        "Client Workloads",
        "Incoming Requests By Source And Response Code",
        &["A"],
    ),
    (
        "service",
        "Client Workloads",
        "Incoming Success Rate (non-5xx responses) By Source",
        &["A"],
    ),
    (
        "service",
        "Client Workloads",
        "Incoming Request Duration By Source",
        &["A", "B", "C", "D"],
    ),
    (
        "service",
        "Client Workloads",
        "Incoming Request Size By Source",
        &["A", "B", "C", "D"],
    ),
    (
        "service",
        "Client Workloads",
        "Response Size By Source",
        &["A", "B", "C", "D"],
    ),
    (
        "service",
        "Client Workloads",
        "Bytes Received from Incoming TCP Connection",
        &["A"],
    ),
    (
        "service",
        "Client Workloads",
        "Bytes Sent to Incoming TCP Connection",
        &["A"],
    ),
    (
        "service",
        "Service Workloads",
        "Incoming Requests By Destination Workload And Response Code",
        &["A", "B"],
    ),
    (
        "service",
        "Service Workloads",
        "Incoming Success Rate (non-5xx responses) By Destination Workload",
        &["A", "B"],
    ),
    (
        "service",
        "Service Workloads",
        "Incoming Request Duration By Service Workload",
        &["A", "B", "C", "D", "E", "F", "G", "H"],
    ),
    (
        "service",
        "Service Workloads",
        "Incoming Request Size By Service Workload",
        &["A", "B", "C", "D", "E", "F", "G", "H"],
    ),
    (
        "service",
        "Service Workloads",
        "Response Size By Service Workload",
        &["A", "B", "C", "D", "E", "F", "G", "H"],
    ),
    (
        "service",
        "Service Workloads",
        "Bytes Received from Incoming TCP Connection",
        &["A", "B"],
    ),
    (
        "service",
        "Service Workloads",
        "Bytes Sent to Incoming TCP Connection",
        &["A", "B"],
    ),
];

// One traffic round: web 200s and a web 500, a 404 (no route) and a 503 UH, one TCP stream.
const ROUND_OK: usize = 5;
const ROUND_500: usize = 1;
const ROUND_NR: usize = 1;
const ROUND_UH: usize = 1;
const ROUND_TCP_BYTES: usize = 2000;
/// Traffic runs this long (bounded further by [`MAX_ROUNDS`]).
const TRAFFIC: Duration = Duration::from_secs(7);
const MAX_ROUNDS: usize = 400;
const PAUSE: Duration = Duration::from_millis(40);

/// Success rates read over short windows: a window can cut a round in two.
const TOLERANCE: f64 = 0.12;

/// One panel target: where it is and its query.
#[derive(Debug, Clone)]
struct Target {
    dashboard: &'static str,
    row: String,
    title: String,
    ref_id: String,
    expr: String,
}

impl Target {
    fn key(&self) -> (String, String, String, String) {
        (
            self.dashboard.to_string(),
            self.row.clone(),
            self.title.clone(),
            self.ref_id.clone(),
        )
    }
}

/// Every `targets[].expr` of a dashboard, with its row (rows are either markers followed by
/// their panels, or collapsed with nested `panels`).
fn targets(dashboard: &'static str, file: &str) -> Vec<Target> {
    let text = fixture(&format!("grafana/{file}"));
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    let mut out = Vec::new();
    let mut row = String::from("-");
    fn visit(dashboard: &'static str, p: &Value, row: &mut String, out: &mut Vec<Target>) {
        if p["type"] == "row" {
            *row = p["title"].as_str().unwrap_or("-").to_string();
            for q in p["panels"].as_array().into_iter().flatten() {
                visit(dashboard, q, row, out);
            }
            return;
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                continue;
            };
            out.push(Target {
                dashboard,
                row: row.clone(),
                title: p["title"].as_str().unwrap_or("-").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("-").to_string(),
                expr: expr.to_string(),
            });
        }
    }
    for p in json["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no panels"))
    {
        visit(dashboard, p, &mut row, &mut out);
    }
    out
}

/// Whether a gateway (reporter=source, no mTLS) can feed `expr`.
fn gateway_feeds(expr: &str) -> bool {
    !expr.contains("reporter=\"destination\"")
        && !expr.contains("connection_security_policy=\"mutual_tls\"")
}

/// `expr` with the dashboard variables filled in: the service is the TCP one for TCP panels.
fn substitute(expr: &str) -> String {
    let service = if expr.contains("istio_tcp_") {
        TCP_SERVICE
    } else {
        WEB_SERVICE
    };
    let mut e = expr.replace("$__rate_interval", "1m");
    for (var, value) in [
        ("$service", service),
        ("$qrep", "source"),
        ("$srccluster", ".*"),
        ("$dstcluster", ".*"),
        ("$srcns", ".*"),
        ("$srcwl", ".*"),
        ("$dstns", ".*"),
        ("$dstwl", ".*"),
    ] {
        e = e.replace(var, value);
    }
    assert!(
        !e.contains('$'),
        "test bug: a dashboard variable is left in {e}"
    );
    e
}

fn listed(list: &[(&str, &str, &str, &[&str])]) -> Vec<(String, String, String, String)> {
    let mut keys: Vec<_> = list
        .iter()
        .flat_map(|(d, r, t, ids)| {
            ids.iter()
                .map(move |id| (d.to_string(), r.to_string(), t.to_string(), id.to_string()))
        })
        .collect();
    keys.sort();
    keys
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

type Row = QueryRow;

fn label<'a>(row: &'a Row, name: &str) -> &'a str {
    row.0.get(name).and_then(Value::as_str).unwrap_or("")
}

#[test]
fn istio_dashboards_show_gateway_traffic() {
    // Prometheus is required: fail (do not skip) when it is missing.
    assert!(
        prometheus_binary().is_some(),
        "/usr/bin/prometheus not found: install Debian's prometheus package (.ci/run does)"
    );
    let w = IstioWorld::start();
    // Every series exists before the first scrape, so rates see only the steady traffic.
    let round = |w: &IstioWorld| {
        for i in 0..ROUND_OK {
            w.expect(200, HTTP_HOST, &format!("/ok/{i}"), b"");
        }
        for _ in 0..ROUND_500 {
            w.expect(500, HTTP_HOST, "/status/500", b"");
        }
        for _ in 0..ROUND_NR {
            w.expect(404, "nobody.example.com", "/", b"");
        }
        for _ in 0..ROUND_UH {
            w.expect(503, HTTP_HOST, "/empty", b"");
        }
        w.tcp_echo(ROUND_TCP_BYTES);
    };
    round(&w);

    let prom = PrometheusServer::start(&[w.gw.addr("metrics")]);
    let up = poll(Duration::from_secs(20), || {
        let v = prom.query_vector("up{job=\"tollgate\"}", None).ok()?;
        (v.len() == 1 && v[0].1 == 1.0).then_some(())
    });
    if up.is_none() {
        panic!(
            "Prometheus never scraped tollgate's metrics address successfully; targets: {:?}\nlog:\n{}",
            prom.query("up"),
            prom.log()
        );
    }

    // Steady traffic for several scrape intervals.
    let started = Instant::now();
    let mut rounds = 1;
    while started.elapsed() < TRAFFIC && rounds < MAX_ROUNDS {
        round(&w);
        rounds += 1;
        std::thread::sleep(PAUSE);
    }
    let traffic_end = now();
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "only {rounds} rounds in {:?}: too few scrape intervals",
        started.elapsed()
    );
    // Evaluate inside the traffic: irate's last two samples must both see it.
    let at = traffic_end - 1.5;
    let scraped_after = poll(Duration::from_secs(10), || {
        let v = prom
            .query_vector("max(timestamp(up{job=\"tollgate\"}))", None)
            .ok()?;
        (v.first()?.1 > traffic_end).then_some(())
    });
    assert!(scraped_after.is_some(), "no scrape after the traffic ended");

    let mut all = targets("mesh", "istio-mesh-dashboard.gen.json");
    all.extend(targets("service", "istio-service-dashboard.json"));
    let mut fed: Vec<_> = all
        .iter()
        .filter(|t| gateway_feeds(&t.expr))
        .map(Target::key)
        .collect();
    let mut empty: Vec<_> = all
        .iter()
        .filter(|t| !gateway_feeds(&t.expr))
        .map(Target::key)
        .collect();
    fed.sort();
    empty.sort();
    assert_eq!(fed, listed(FED), "panel targets a gateway feeds");
    assert_eq!(empty, listed(EMPTY), "panel targets a gateway cannot feed");

    // Non-5xx: the 200s and the 404; 5xx: the 500 and the 503.
    let mesh_success =
        (ROUND_OK + ROUND_NR) as f64 / (ROUND_OK + ROUND_500 + ROUND_NR + ROUND_UH) as f64;
    let web_success = ROUND_OK as f64 / (ROUND_OK + ROUND_500) as f64;
    let near = |got: f64, want: f64| (got - want).abs() <= TOLERANCE;

    let mut failures = Vec::new();
    let mut results: BTreeMap<(String, String, String, String), Vec<Row>> = BTreeMap::new();
    for t in &all {
        let expr = substitute(&t.expr);
        let rows = prom
            .query_vector(&expr, Some(at))
            .unwrap_or_else(|e| panic!("{} / {} [{}]: {e}", t.dashboard, t.title, t.ref_id));
        let what = format!("{} › {} › {} [{}]", t.dashboard, t.row, t.title, t.ref_id);
        if !gateway_feeds(&t.expr) {
            if !rows.is_empty() {
                failures.push(format!("{what}: expected empty, got {rows:?}\n  {expr}"));
            }
            continue;
        }
        if rows.is_empty() {
            failures.push(format!("{what}: no data\n  {expr}"));
            continue;
        }
        if let Some(bad) = rows.iter().find(|r| !r.1.is_finite()) {
            failures.push(format!("{what}: non-finite value {bad:?}\n  {expr}"));
            continue;
        }
        // Values the traffic implies.
        let single = rows[0].1;
        let check = match (t.dashboard, t.title.as_str(), t.ref_id.as_str()) {
            ("mesh", "Traffic Volume", _) => (single > 0.0, "> 0".to_string()),
            ("mesh", "Success Rate", _) => (
                near(single, mesh_success),
                format!("≈ {mesh_success:.3} (non-5xx fraction sent)"),
            ),
            ("mesh", "4xxs" | "5xxs", _) => (single > 0.0, "> 0".into()),
            ("mesh", "HTTP/gRPC Workloads", "requests") => (
                rows.iter()
                    .any(|r| label(r, "destination_service") == WEB_SERVICE && r.1 > 0.0),
                format!("a row for destination_service={WEB_SERVICE} > 0"),
            ),
            ("mesh", "HTTP/gRPC Workloads", "success") => (
                rows.len() == 1 && near(single, mesh_success),
                format!("one row (destination_workload unknown) ≈ {mesh_success:.3}"),
            ),
            ("mesh", "HTTP/gRPC Workloads", _) => {
                (rows.iter().all(|r| r.1 > 0.0), "quantiles > 0 ms".into())
            }
            ("mesh", "TCP Workloads", _) => (
                rows.iter()
                    .any(|r| label(r, "destination_service") == TCP_SERVICE && r.1 > 0.0),
                format!("a row for destination_service={TCP_SERVICE} with bytes > 0"),
            ),
            ("mesh", "Istio Component Versions", _) => (
                rows.iter().any(|r| {
                    label(r, "component") == "proxy"
                        && label(r, "tag").starts_with("tollgate-")
                        && r.1 == 1.0
                }),
                "component=proxy, tag=tollgate-<version>, 1".into(),
            ),
            ("service", "Client Request Volume", _) => (single > 0.0, "> 0".into()),
            ("service", "Client Success Rate (non-5xx responses)", _) => (
                near(single, web_success),
                format!("≈ {web_success:.3} (non-5xx fraction sent to {WEB_SERVICE})"),
            ),
            ("service", "Client Request Duration" | "Incoming Request Duration By Source", _) => {
                (rows.iter().all(|r| r.1 > 0.0), "quantile > 0 s".into())
            }
            ("service", "TCP Received Bytes" | "TCP Sent Bytes", _) => {
                (single > 0.0, "bytes/s > 0".into())
            }
            ("service", "Incoming Requests By Source And Response Code", _) => {
                let mut codes: Vec<&str> = rows.iter().map(|r| label(r, "response_code")).collect();
                codes.sort();
                (
                    rows.iter().all(|r| {
                        label(r, "source_workload") == WORKLOAD
                            && label(r, "source_workload_namespace") == WORKLOAD_NAMESPACE
                            && r.1 > 0.0
                    }) && codes == ["200", "500"],
                    format!(
                        "rows source_workload={WORKLOAD}, source_workload_namespace={WORKLOAD_NAMESPACE}, response_code 200 and 500, > 0"
                    ),
                )
            }
            ("service", "Incoming Success Rate (non-5xx responses) By Source", _) => (
                rows.len() == 1
                    && label(&rows[0], "source_workload") == WORKLOAD
                    && near(single, web_success),
                format!("one row for {WORKLOAD} ≈ {web_success:.3}"),
            ),
            (
                "service",
                "Incoming Request Size By Source"
                | "Response Size By Source"
                | "Bytes Received from Incoming TCP Connection"
                | "Bytes Sent to Incoming TCP Connection",
                _,
            ) => (
                rows.iter()
                    .all(|r| label(r, "source_workload") == WORKLOAD && r.1 > 0.0),
                format!("rows for source_workload={WORKLOAD}, > 0"),
            ),
            _ => (false, "test bug: a fed panel without a value check".into()),
        };
        if !check.0 {
            failures.push(format!(
                "{what}: expected {}, got {rows:?}\n  {expr}",
                check.1
            ));
        }
        results.insert(t.key(), rows);
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard targets wrong (after {rounds} traffic rounds, evaluated at {at:.1}):\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    assert_eq!(results.len(), listed(FED).len());
}
