//! DestinationRule `outlierDetection` end to end on loopback (reference §3.6): an endpoint that
//! answers 500 is ejected after `consecutive5xxErrors` and comes back after `baseEjectionTime`;
//! `consecutiveGatewayErrors` counts only 502/503/504; Envoy's `maxEjectionPercent` rule (the
//! default 10% ejects nobody among three endpoints); with every endpoint ejected the gateway
//! answers `no healthy upstream`, unless `minHealthPercent` puts balancing in panic mode; and
//! Istio's validation of the block.
//!
//! Endpoints are [`ScriptedHttp`] servers on 127.0.0.1 whose status the test sets. Routes have
//! `retries: {attempts: 0}`, so every answer reaches the client as it was. The book's
//! `ch6/simple-backend-dr-outlier.yaml` is used with only its host replaced.
//!
//! Every loop is bounded in count and time; the one timing assertion is a lower bound that is
//! the feature itself (an ejected endpoint gets nothing before its ejection time is over).

mod support;

use std::time::{Duration, Instant};

use support::*;

const HOST: &str = "outlier.example.com";
const SE_HOST: &str = "backend.outlier.internal";

fn dr(body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: outlier}}\n\
         spec:\n  host: {SE_HOST}\n  trafficPolicy:\n{body}"
    )
}

/// The book's outlier rule (consecutive5xxErrors 1, interval 5s, baseEjectionTime 30s,
/// maxEjectionPercent 100) for [`SE_HOST`].
fn book_dr() -> String {
    let rel = "istio-in-action/ch6/simple-backend-dr-outlier.yaml";
    let host = format!("host: {SE_HOST}");
    adapt(
        rel,
        &fixture(rel),
        &[(
            "host: simple-backend.istioinaction.svc.cluster.local",
            &host,
        )],
    )
}

/// A gateway routing [`HOST`] without retries to `endpoints`, with `dr` when given.
fn world(endpoints: &[&ScriptedHttp], dr: Option<String>) -> World {
    let endpoints: Vec<Endpoint<'_>> = endpoints.iter().map(|e| (e.addr(), vec![])).collect();
    let mut files = vec![
        ("gateway.yaml", EDGE_GATEWAY.to_string()),
        ("se.yaml", service_entry_80("backend", SE_HOST, &endpoints)),
        (
            "vs.yaml",
            vs(
                "outlier",
                HOST,
                &rule(SE_HOST, "    retries: {attempts: 0}\n"),
            ),
        ),
    ];
    if let Some(dr) = dr {
        files.push(("dr.yaml", dr));
    }
    World::start(&[], Vec::new(), &files)
}

/// `n` requests one after another; their statuses.
fn statuses(w: &World, n: usize) -> Vec<u16> {
    (0..n).map(|_| w.get(HOST, "/", &[]).status).collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[test]
fn the_book_rule_ejects_an_endpoint_that_answers_500() {
    let good = [ScriptedHttp::start(200), ScriptedHttp::start(200)];
    let bad = ScriptedHttp::start(500);
    let w = world(&[&good[0], &good[1], &bad], Some(book_dr()));
    let seen = statuses(&w, 60);
    assert_eq!(
        bad.served(),
        1,
        "one 500 ejects the endpoint for 30 s: it must get exactly one request of 60; statuses {seen:?}"
    );
    assert_eq!(count(&seen, 500), 1, "{seen:?}");
    assert_eq!(count(&seen, 200), 59, "{seen:?}");
    let (_, metrics) = w.gw.metrics_get("/stats/prometheus");
    let line =
        format!("tollgate_outlier_ejections_total{{destination=\"outbound|80||{SE_HOST}\"}} 1");
    assert!(
        metrics.lines().any(|l| l == line),
        "expected `{line}` in the metrics:\n{metrics}"
    );

    // Without the rule, the same endpoint keeps getting its share.
    let bad = ScriptedHttp::start(500);
    let w = world(&[&good[0], &good[1], &bad], None);
    let seen = statuses(&w, 60);
    assert!(
        bad.served() >= 5 && count(&seen, 500) == bad.served(),
        "without outlier detection the failing endpoint gets about a third of 60 requests: got {}; {seen:?}",
        bad.served()
    );
}

#[test]
fn an_ejected_endpoint_comes_back_after_base_ejection_time() {
    let good = ScriptedHttp::start(200);
    let bad = ScriptedHttp::start(500);
    let rule = "    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection:\n      \
                consecutive5xxErrors: 1\n      interval: 1s\n      baseEjectionTime: 2s\n      \
                maxEjectionPercent: 100\n";
    let w = world(&[&good, &bad], Some(dr(rule)));
    let first_500 = (0..20).find_map(|_| (w.get(HOST, "/", &[]).status == 500).then(Instant::now));
    let Some(ejected_at) = first_500 else {
        w.gw.fail(
            "round robin over two endpoints: one of 20 requests must reach the one answering 500",
        );
    };
    // The endpoint has recovered; it is sent requests again once its ejection is over.
    bad.set_status(200);
    let served_before = bad.served();
    let back = poll(Duration::from_secs(15), || {
        let r = w.get(HOST, "/", &[]);
        assert_eq!(r.status, 200, "only healthy answers now: {}", r.body);
        std::thread::sleep(Duration::from_millis(50));
        (bad.served() > served_before).then(Instant::now)
    });
    let Some(back_at) = back else {
        w.gw.fail("the ejected endpoint got no request within 15 s of a 2 s ejection");
    };
    let away = back_at - ejected_at;
    assert!(
        away >= Duration::from_millis(1500),
        "an endpoint ejected for 2 s was sent a request after {away:?}"
    );
}

#[test]
fn gateway_errors_are_502_503_504_only() {
    let good = ScriptedHttp::start(200);
    let bad = ScriptedHttp::start(500);
    let rule = "    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection:\n      \
                consecutive5xxErrors: 0\n      consecutiveGatewayErrors: 2\n      \
                baseEjectionTime: 60s\n      maxEjectionPercent: 100\n";
    let w = world(&[&good, &bad], Some(dr(rule)));
    let seen = statuses(&w, 20);
    assert_eq!(
        count(&seen, 500),
        10,
        "500 is not a gateway error and consecutive5xxErrors: 0 disables that check: {seen:?}"
    );
    bad.set_status(503);
    let seen = statuses(&w, 20);
    assert_eq!(
        count(&seen, 503),
        2,
        "two 503s in a row eject the endpoint: {seen:?}"
    );
}

#[test]
fn istio_s_default_max_ejection_percent_ejects_none_of_three() {
    let good = [ScriptedHttp::start(200), ScriptedHttp::start(200)];
    let bad = ScriptedHttp::start(500);
    // maxEjectionPercent defaults to 10: ejecting one of three (33%) is over budget, as in Envoy.
    let rule = "    outlierDetection:\n      consecutive5xxErrors: 1\n";
    let w = world(&[&good[0], &good[1], &bad], Some(dr(rule)));
    let seen = statuses(&w, 60);
    assert!(
        bad.served() >= 5,
        "no ejection within the default 10% budget: the failing endpoint keeps its share, got {}; {seen:?}",
        bad.served()
    );
}

#[test]
fn with_every_endpoint_ejected_the_gateway_answers_no_healthy_upstream() {
    let only = ScriptedHttp::start(500);
    let rule = "    outlierDetection:\n      consecutive5xxErrors: 1\n      \
                baseEjectionTime: 60s\n      maxEjectionPercent: 100\n";
    let w = world(&[&only], Some(dr(rule)));
    assert_eq!(w.get(HOST, "/", &[]).status, 500);
    let r = w.get(HOST, "/", &[]);
    assert_eq!((r.status, r.body.as_str()), (503, "no healthy upstream"));
    assert_eq!(only.served(), 1);

    // minHealthPercent: below it, balancing ignores ejections (Envoy's panic mode).
    let only = ScriptedHttp::start(500);
    let rule = "    outlierDetection:\n      consecutive5xxErrors: 1\n      \
                baseEjectionTime: 60s\n      maxEjectionPercent: 100\n      minHealthPercent: 50\n";
    let w = world(&[&only], Some(dr(rule)));
    let seen = statuses(&w, 5);
    assert_eq!(
        seen,
        vec![500; 5],
        "panic mode keeps sending to the ejected endpoint"
    );
    assert_eq!(only.served(), 5);
}

#[test]
fn invalid_outlier_detection_is_reported_with_file_line_and_field() {
    let dir = ConfigDir::new();
    let text = dr(
        "    outlierDetection:\n      consecutive5xxErrors: 1\n      \
                   maxEjectionPercent: 120\n      interval: 5 seconds\n",
    );
    dir.write("dr.yaml", &text);
    let out = check(dir.path(), &[]);
    let path = dir.path().join("dr.yaml");
    for (line, field) in [
        (9, "spec.trafficPolicy.outlierDetection.maxEjectionPercent"),
        (10, "spec.trafficPolicy.outlierDetection.interval"),
    ] {
        let at = format!(
            "{}:{line} error: DestinationRule default/outlier: {field}: ",
            path.display()
        );
        assert!(
            out.stdout.contains(&at) || out.stderr.contains(&at),
            "expected `{at}...` from tollgate check; got:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    assert!(!out.success(), "tollgate check must fail on errors");
}
