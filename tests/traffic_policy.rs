//! VirtualService HTTP route policy end to end on loopback: retries (explicit, Istio's default and
//! `attempts: 0`), `x-envoy-attempt-count`, route and per-try timeouts, header-based routing,
//! fault injection, weighted shifts, rewrites and redirects, header operations (route level and
//! per destination), request mirroring, CORS, and the validation of these fields on a running
//! gateway and in `tollgate check`.
//!
//! Fixtures (`../shared/fixtures`), used unmodified unless said otherwise:
//! - istio-in-action ch5 `catalog-gateway.yaml`, `catalog-dest-rule.yaml`,
//!   `catalog-vs-v2-request.yaml` (run with `--namespace istioinaction` so `catalog` expands to
//!   the DestinationRule's FQDN);
//! - adapted (hosts, `gateways: [edge]`, names): ch2 `catalog-virtualservice-dark-v2.yaml`,
//!   ch5 `catalog-vs-v2-10-90-mesh.yaml`, bookinfo `virtual-service-reviews-test-v2.yaml`,
//!   `virtual-service-ratings-test-delay.yaml`, `virtual-service-ratings-test-abort.yaml`,
//!   ch5 `catalog-vs-v2-mirror.yaml`;
//!   bookinfo `destination-rule-reviews.yaml` unmodified;
//! - written after the ch6 files (`simple-backend-vs-retry-500.yaml`,
//!   `simple-backend-vs-retry-on.yaml`, `simple-backend-vs-timeout.yaml`,
//!   `simple-service-disable-retry.yaml`), which are mesh-only, as gateway routes inline.
//!
//! Every loop is bounded in count, every request has a client timeout, and timing assertions are
//! only "no sooner than" a configured delay plus generous upper bounds.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

// ------------------------------------------------------------------------------------------
// Helpers

/// A STATIC ServiceEntry `name` for `host`, port 80, one endpoint per backend labelled
/// `version: <backend version>`, plus `extra` endpoints without labels (e.g. dead ports).
fn se(name: &str, host: &str, backends: &[&EchoBackend], extra: &[SocketAddr]) -> String {
    let mut endpoints: Vec<Endpoint<'_>> = backends.iter().map(|b| echo_endpoint(b)).collect();
    endpoints.extend(extra.iter().map(|a| (*a, vec![])));
    service_entry_80(name, host, &endpoints)
}

/// A gateway (with `args` and `--port-map 80=0`) on Gateway `edge` (`gateway.yaml`), the
/// ServiceEntries `entries` (`backends.yaml`) and the `more` files, with its echo `backends`.
fn edge_world_with(
    args: &[&str],
    backends: Vec<EchoBackend>,
    entries: String,
    more: Vec<(&str, String)>,
) -> World {
    let mut files = vec![
        ("gateway.yaml", EDGE_GATEWAY.to_string()),
        ("backends.yaml", entries),
    ];
    files.extend(more);
    World::start(args, backends, &files)
}

/// [`edge_world_with`] without extra arguments, with the VirtualServices `routes` (`routes.yaml`).
fn edge_world(backends: Vec<EchoBackend>, entries: String, routes: String) -> World {
    edge_world_with(&[], backends, entries, vec![("routes.yaml", routes)])
}

/// A 127.0.0.1 address with nothing listening.
fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], dead_port()))
}

/// The `x-envoy-attempt-count` the echo backend saw, from its JSON answer.
fn attempt_count(r: &Response) -> Option<u64> {
    let v: Value = serde_json::from_str(&r.body).ok()?;
    v["headers"]["x-envoy-attempt-count"].as_str()?.parse().ok()
}

/// The JSON body when the echo backend answered, `None` for a local reply of the gateway.
fn echo_json(r: &Response) -> Option<Value> {
    serde_json::from_str::<Value>(&r.body)
        .ok()
        .filter(|v| v["service"].is_string())
}

/// Every value of header `name`, joined with ", ".
fn all_values(r: &Response, name: &str) -> String {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl World {
    /// `service/version` of the echo backend that answered, or `status <code>: <body>`.
    fn who(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let r = self.get(host, path, headers);
        match (r.status, echo_json(&r)) {
            (200, Some(v)) => format!(
                "{}/{}",
                v["service"].as_str().unwrap_or("?"),
                v["version"].as_str().unwrap_or("?")
            ),
            (status, _) => format!("status {status}: {}", short(&r.body)),
        }
    }
}

// ------------------------------------------------------------------------------------------
// 1. Retries turn a flaky backend into a reliable one

/// After ch6 `simple-backend-vs-retry-500.yaml` (`retryOn: 5xx`), with 3 attempts and a per-try
/// timeout, on the gateway.
const RETRY_5XX: &str = "    retries: {attempts: 3, retryOn: 5xx, perTryTimeout: 2s}\n";

#[test]
fn retries_hide_a_flaky_backend_and_an_alternating_one() {
    let flaky = EchoBackend::start("flaky", "v1");
    let alternate = EchoBackend::start("alternate", "v1");
    let backends = [
        se("flaky", "flaky.svc.internal", &[&flaky], &[]),
        se("alternate", "alternate.svc.internal", &[&alternate], &[]),
    ]
    .join("---\n");
    let routes = [
        vs(
            "retry",
            "retry.example.com",
            &rule("flaky.svc.internal", RETRY_5XX),
        ),
        vs(
            "plain",
            "plain.example.com",
            &rule("flaky.svc.internal", ""),
        ),
        vs(
            "alt-retry",
            "alt-retry.example.com",
            &rule("alternate.svc.internal", RETRY_5XX),
        ),
    ]
    .join("---\n");
    let w = edge_world(vec![flaky, alternate], backends, routes);
    const N: usize = 500;

    // Control: without `retries` (Istio's default retries no status), /flaky/20 really fails.
    let before = w.received("flaky");
    let mut failures = 0;
    for i in 0..N {
        let r = w.get("plain.example.com", "/flaky/20", &[]);
        let Some(json) = echo_json(&r) else {
            w.gw.fail(format!(
                "no-retry request {i}: not answered by the backend: {} {}",
                r.status,
                short(&r.body)
            ));
        };
        assert_eq!(json["service"], "flaky");
        assert_eq!(
            attempt_count(&r),
            Some(1),
            "no-retry request {i}: a 503 was retried without a retry policy"
        );
        match r.status {
            200 => {}
            503 => failures += 1,
            other => panic!("no-retry request {i}: unexpected status {other}"),
        }
    }
    let seen = w.received("flaky") - before;
    assert!(
        failures >= 1,
        "the control never failed: /flaky/20 answered 200 to all {N} requests without retries"
    );
    assert_eq!(
        seen, N as u64,
        "without retries the backend sees exactly one request per client request \
         ({failures} of them failed)"
    );

    // With `attempts: 3, retryOn: 5xx`: at least 99% succeed.
    let before = w.received("flaky");
    let (mut ok, mut attempts_total, mut retried) = (0, 0, 0);
    let mut failed = Vec::new();
    for i in 0..N {
        let r = w.get("retry.example.com", "/flaky/20", &[]);
        let attempts = attempt_count(&r).unwrap_or_else(|| {
            w.gw.fail(format!(
                "retry request {i}: no x-envoy-attempt-count seen upstream: {} {}",
                r.status,
                short(&r.body)
            ))
        });
        assert!(
            (1..=4).contains(&attempts),
            "retry request {i}: attempt {attempts} with attempts: 3"
        );
        attempts_total += attempts;
        if attempts > 1 {
            retried += 1;
        }
        if r.status == 200 {
            ok += 1;
        } else {
            failed.push(format!("#{i}: {} after {attempts} attempts", r.status));
        }
    }
    let seen = w.received("flaky") - before;
    assert!(
        ok * 100 >= N * 99,
        "with retries only {ok}/{N} succeeded; failures: {failed:?}"
    );
    assert!(
        retried > 0 && seen > N as u64,
        "no retry happened: backend saw {seen} requests for {N} client requests"
    );
    assert_eq!(
        seen, attempts_total,
        "the backend's request count should equal the sum of the final attempt counts"
    );

    // /alternate: every other request fails, so every client request takes exactly two tries.
    let before = w.received("alternate");
    let mut counts = Vec::new();
    for i in 0..50 {
        let r = w.get("alt-retry.example.com", "/alternate", &[]);
        assert_eq!(
            r.status,
            200,
            "/alternate request {i} with retries: {}",
            short(&r.body)
        );
        assert_eq!(attempt_count(&r), Some(2), "/alternate request {i}");
        let count: u64 = r
            .header("x-echo-request-count")
            .and_then(|c| c.parse().ok())
            .expect("x-echo-request-count");
        counts.push(count);
    }
    assert!(
        counts.windows(2).all(|p| p[1] == p[0] + 2),
        "each client request should cost the backend two requests: x-echo-request-count {counts:?}"
    );
    assert_eq!(w.received("alternate") - before, 100);
}

// ------------------------------------------------------------------------------------------
// 2. x-envoy-attempt-count upstream

#[test]
fn attempt_count_reaches_the_upstream() {
    let b = EchoBackend::start("attempts", "v1");
    let backends = se("attempts", "attempts.svc.internal", &[&b], &[]);
    let routes = [
        vs(
            "retry",
            "retry.example.com",
            &rule(
                "attempts.svc.internal",
                "    retries: {attempts: 2, retryOn: 5xx}\n",
            ),
        ),
        vs(
            "default",
            "default.example.com",
            &rule("attempts.svc.internal", ""),
        ),
    ]
    .join("---\n");
    let w = edge_world(vec![b], backends, routes);
    for host in ["retry.example.com", "default.example.com"] {
        let r = w.get(host, "/headers", &[]);
        assert_eq!(r.status, 200, "{host}: {}", short(&r.body));
        assert_eq!(
            r.json()["headers"]["x-envoy-attempt-count"],
            "1",
            "{host}: first try"
        );
    }
    // The first /alternate request to this backend fails (500), the retry succeeds.
    for round in 0..3 {
        let before = w.received("attempts");
        let r = w.get("retry.example.com", "/alternate", &[]);
        assert_eq!(r.status, 200, "round {round}: {}", short(&r.body));
        assert_eq!(
            r.json()["headers"]["x-envoy-attempt-count"],
            "2",
            "round {round}: the retried request"
        );
        assert_eq!(w.received("attempts") - before, 2, "round {round}");
    }
    // A client cannot set it: the gateway's value wins.
    let r = w.get(
        "retry.example.com",
        "/headers",
        &[("x-envoy-attempt-count", "7")],
    );
    assert_eq!(r.json()["headers"]["x-envoy-attempt-count"], "1");
}

// ------------------------------------------------------------------------------------------
// 3. Istio's default retry policy, and `attempts: 0`

#[test]
fn default_policy_retries_connect_failures_only() {
    let plain = EchoBackend::start("plain", "v1");
    let half = EchoBackend::start("half", "v1");
    let backends = [
        se("plain", "plain.svc.internal", &[&plain], &[]),
        // Two endpoints, one of them a port with nothing listening.
        se("half", "half.svc.internal", &[&half], &[dead_addr()]),
    ]
    .join("---\n");
    let routes = [
        vs(
            "plain",
            "plain.example.com",
            &rule("plain.svc.internal", ""),
        ),
        vs("half", "half.example.com", &rule("half.svc.internal", "")),
        // After ch6 simple-service-disable-retry.yaml.
        vs(
            "half-noretry",
            "half-noretry.example.com",
            &rule("half.svc.internal", "    retries:\n      attempts: 0\n"),
        ),
    ]
    .join("---\n");
    let w = edge_world(vec![plain, half], backends, routes);

    // No status is retried by default: one upstream request per client request.
    let mut cases = Vec::new();
    for (path, status) in [
        ("/status/500", 500),
        ("/status/503", 503),
        ("/status/502", 502),
    ] {
        cases.extend(std::iter::repeat_n((path, status), 5));
    }
    // The first /alternate request to this backend fails and is not retried.
    cases.extend([("/alternate", 500), ("/alternate", 200)]);
    for (path, want) in cases {
        let before = w.received("plain");
        let r = w.get("plain.example.com", path, &[]);
        assert_eq!(r.status, want, "{path}: {}", short(&r.body));
        assert_eq!(attempt_count(&r), Some(1), "{path}: attempt count");
        assert_eq!(
            w.received("plain") - before,
            1,
            "{path} was retried without a retry policy (Istio retries no status by default)"
        );
    }

    // Connect failures are retried (on another endpoint): every request succeeds.
    let before = w.received("half");
    for i in 0..50 {
        let r = w.get("half.example.com", "/", &[]);
        assert_eq!(
            r.status,
            200,
            "request {i} to a cluster with one dead endpoint, default retry policy: {}",
            short(&r.body)
        );
        assert_eq!(r.json()["service"], "half");
    }
    assert_eq!(w.received("half") - before, 50);

    // `attempts: 0`: no retry at all, so some requests hit the dead endpoint and fail.
    let before = w.received("half");
    let (mut ok, mut failed) = (0u64, Vec::new());
    for i in 0..50 {
        let r = w.get("half-noretry.example.com", "/", &[]);
        match r.status {
            200 => ok += 1,
            503 => {
                assert!(
                    r.body
                        .starts_with("upstream connect error or disconnect/reset before headers.")
                        && !r.body.contains("retried"),
                    "request {i}: 503 body {:?}",
                    r.body
                );
                failed.push(i);
            }
            other => panic!("request {i}: status {other}: {}", short(&r.body)),
        }
    }
    assert!(
        !failed.is_empty(),
        "with attempts: 0, none of 50 requests hit the dead endpoint (all succeeded)"
    );
    assert_eq!(w.received("half") - before, ok);
}

/// Envoy's body for a connect failure after retries says `retried and the latest reset reason`
/// (reference §5.1: "the usual case, because Istio's default policy retries connect-failure").
#[test]
fn default_policy_on_a_dead_cluster_reports_the_retries() {
    let backends = se(
        "dead",
        "dead.svc.internal",
        &[],
        &[dead_addr(), dead_addr()],
    );
    let routes = [
        vs("dead", "dead.example.com", &rule("dead.svc.internal", "")),
        vs(
            "dead-noretry",
            "dead-noretry.example.com",
            &rule("dead.svc.internal", "    retries: {attempts: 0}\n"),
        ),
    ]
    .join("---\n");
    let w = edge_world(vec![], backends, routes);
    let r = w.get("dead.example.com", "/", &[]);
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            503,
            "upstream connect error or disconnect/reset before headers. retried and the latest \
             reset reason: remote connection failure, transport failure reason: delayed connect \
             error: Connection refused"
        )
    );
    let r = w.get("dead-noretry.example.com", "/", &[]);
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: remote \
             connection failure, transport failure reason: delayed connect error: Connection refused"
        )
    );
}

// ------------------------------------------------------------------------------------------
// retryOn conditions, retried bodies

#[test]
fn retry_on_conditions_and_request_bodies() {
    let b = EchoBackend::start("cond", "v1");
    let upload = EchoBackend::start("upload", "v1");
    let backends = [
        se("cond", "cond.svc.internal", &[&b], &[]),
        se("upload", "upload.svc.internal", &[&upload], &[]),
    ]
    .join("---\n");
    let policies = [
        ("gateway-error", "gateway-error"),
        ("code503", "\"503\""),
        ("retriable-4xx", "retriable-4xx"),
        // ch6 simple-backend-vs-retry-on.yaml's comma list.
        ("book-retry-on", "5xx,retriable-status-codes"),
        ("reset", "reset"),
        ("connect-failure", "connect-failure"),
        ("fivexx", "5xx"),
    ];
    let mut routes: Vec<String> = policies
        .iter()
        .map(|(name, on)| {
            vs(
                name,
                &format!("{name}.example.com"),
                &rule(
                    "cond.svc.internal",
                    &format!("    retries: {{attempts: 1, retryOn: {on}}}\n"),
                ),
            )
        })
        .collect();
    routes.push(vs(
        "upload",
        "upload.example.com",
        &rule("upload.svc.internal", RETRY_5XX),
    ));
    let w = edge_world(vec![b, upload], backends, routes.join("---\n"));

    // (route, path, upstream requests expected for one client request)
    let cases: &[(&str, &str, u64)] = &[
        ("gateway-error", "/status/502", 2),
        ("gateway-error", "/status/503", 2),
        ("gateway-error", "/status/504", 2),
        ("gateway-error", "/status/500", 1),
        ("code503", "/status/503", 2),
        ("code503", "/status/500", 1),
        ("code503", "/status/502", 1),
        ("retriable-4xx", "/status/409", 2),
        ("retriable-4xx", "/status/404", 1),
        ("retriable-4xx", "/status/500", 1),
        ("book-retry-on", "/status/500", 2),
        ("book-retry-on", "/status/409", 1),
        ("reset", "/reset", 2),
        ("reset", "/status/503", 1),
        ("connect-failure", "/status/503", 1),
        ("connect-failure", "/reset", 1),
        ("fivexx", "/status/500", 2),
        ("fivexx", "/reset", 2),
        ("fivexx", "/status/404", 1),
    ];
    let mut wrong = Vec::new();
    for (route, path, want) in cases {
        let host = format!("{route}.example.com");
        let before = w.received("cond");
        let r = w.get(&host, path, &[]);
        let seen = w.received("cond") - before;
        if seen != *want {
            wrong.push(format!(
                "retryOn of {route}, GET {path}: backend saw {seen} request(s), expected {want} \
                 (client got {} {})",
                r.status,
                short(&r.body)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "retryOn mismatches:\n{}",
        wrong.join("\n")
    );

    // A body of known length up to 1 MiB is replayed on the retry.
    let before = w.received("upload");
    let small = vec![b'x'; 1000];
    let r = w.request("POST", "upload.example.com", "/alternate", &[], &small);
    assert_eq!(r.status, 200, "{}", short(&r.body));
    assert_eq!(r.json()["body_bytes"], 1000, "the retry carried the body");
    assert_eq!(attempt_count(&r), Some(2));
    assert_eq!(w.received("upload") - before, 2);
    // A larger body is streamed, not buffered, so it is not retried: the 500 comes back.
    let big = vec![b'y'; 2 * 1024 * 1024];
    let before = w.received("upload");
    let r = w.request_with(
        &w.client.with_timeout(Duration::from_secs(20)),
        "POST",
        "upload.example.com",
        "/alternate",
        &[],
        &big,
    );
    assert_eq!(
        r.status,
        500,
        "2 MiB body to /alternate (3rd request, fails): {}",
        short(&r.body)
    );
    assert_eq!(r.json()["body_bytes"], big.len());
    assert_eq!(
        w.received("upload") - before,
        1,
        "a 2 MiB body is not retried"
    );
}

// ------------------------------------------------------------------------------------------
// 4. and 5. Route timeout and per-try timeout

#[test]
fn route_timeout_answers_504_and_is_announced_upstream() {
    let b = EchoBackend::start("slow", "v1");
    let backends = se("slow", "slow.svc.internal", &[&b], &[]);
    let routes = [
        vs(
            "timeout",
            "timeout.example.com",
            &rule("slow.svc.internal", "    timeout: 1s\n"),
        ),
        // ch6 simple-backend-vs-timeout.yaml's fractional duration.
        vs(
            "book-timeout",
            "book-timeout.example.com",
            &rule("slow.svc.internal", "    timeout: 0.5s\n"),
        ),
        vs(
            "no-timeout",
            "no-timeout.example.com",
            &rule("slow.svc.internal", ""),
        ),
    ]
    .join("---\n");
    let w = edge_world(vec![b], backends, routes);
    let long = Duration::from_secs(15);
    for (host, at_least, header) in [
        ("timeout.example.com", Duration::from_secs(1), "1000"),
        (
            "book-timeout.example.com",
            Duration::from_millis(500),
            "500",
        ),
    ] {
        let before = w.received("slow");
        let (r, took) = w.timed_get(host, "/delay/2000", &[], long);
        assert_eq!(
            (r.status, r.body.as_str()),
            (504, "upstream request timeout"),
            "{host}"
        );
        assert!(
            took >= at_least,
            "{host}: 504 after {took:?}, sooner than the timeout"
        );
        assert!(took < Duration::from_secs(10), "{host}: 504 after {took:?}");
        assert_eq!(
            w.received("slow") - before,
            1,
            "{host}: a route timeout is not retried by default"
        );
        let r = w.get(host, "/fast", &[]);
        assert_eq!(r.status, 200, "{host}: {}", short(&r.body));
        assert_eq!(
            r.json()["headers"]["x-envoy-expected-rq-timeout-ms"],
            header,
            "{host}: {}",
            r.body
        );
    }
    // Without `timeout` there is none: a 2 s answer arrives, and no timeout is announced.
    let (r, took) = w.timed_get("no-timeout.example.com", "/delay/2000", &[], long);
    assert_eq!(r.status, 200, "{}", short(&r.body));
    assert!(took >= Duration::from_secs(2));
    assert!(
        r.json()["headers"]
            .get("x-envoy-expected-rq-timeout-ms")
            .is_none(),
        "{}",
        r.body
    );
    // A client cannot announce one either (x-envoy-* from an external client are stripped).
    let r = w.get(
        "no-timeout.example.com",
        "/fast",
        &[("x-envoy-expected-rq-timeout-ms", "42")],
    );
    assert!(
        r.json()["headers"]
            .get("x-envoy-expected-rq-timeout-ms")
            .is_none(),
        "{}",
        r.body
    );
}

#[test]
fn per_try_timeout_is_retried_until_attempts_run_out() {
    let b = EchoBackend::start("pertry", "v1");
    let backends = se("pertry", "pertry.svc.internal", &[&b], &[]);
    let routes = [
        vs(
            "pertry",
            "pertry.example.com",
            &rule(
                "pertry.svc.internal",
                "    retries: {attempts: 2, perTryTimeout: 500ms, retryOn: 5xx}\n",
            ),
        ),
        vs(
            "capped",
            "capped.example.com",
            &rule(
                "pertry.svc.internal",
                "    timeout: 1s\n    retries: {attempts: 5, perTryTimeout: 300ms, retryOn: 5xx}\n",
            ),
        ),
    ]
    .join("---\n");
    let w = edge_world(vec![b], backends, routes);
    let long = Duration::from_secs(15);

    let before = w.received("pertry");
    let (r, took) = w.timed_get("pertry.example.com", "/delay/2000", &[], long);
    assert_eq!(
        (r.status, r.body.as_str()),
        (504, "upstream request timeout")
    );
    assert!(
        took >= Duration::from_millis(1500),
        "504 after {took:?}: three tries of 500 ms take at least 1.5 s"
    );
    assert!(took < Duration::from_secs(10), "504 after {took:?}");
    assert_eq!(
        w.received("pertry") - before,
        3,
        "1 try + 2 retries reach the backend"
    );
    // The route timeout covers the retries: 1 s leaves room for at most 4 tries of 300 ms.
    let before = w.received("pertry");
    let (r, took) = w.timed_get("capped.example.com", "/delay/2000", &[], long);
    assert_eq!(
        (r.status, r.body.as_str()),
        (504, "upstream request timeout")
    );
    assert!(took >= Duration::from_secs(1), "504 after {took:?}");
    assert!(took < Duration::from_secs(10), "504 after {took:?}");
    let tries = w.received("pertry") - before;
    assert!(
        (2..=4).contains(&tries),
        "{tries} tries within a 1 s route timeout with 300 ms per try"
    );

    // The per-try timeout (the smaller one when both are set) is what the upstream is told to
    // expect (reference §5.2: "per-try timeout if set, else route timeout").
    let mut wrong = Vec::new();
    for (host, want) in [("pertry.example.com", "500"), ("capped.example.com", "300")] {
        let r = w.get(host, "/fast", &[]);
        let got = echo_json(&r).map(|j| j["headers"]["x-envoy-expected-rq-timeout-ms"].clone());
        if r.status != 200 || got != Some(Value::from(want)) {
            wrong.push(format!(
                "{host}: expected x-envoy-expected-rq-timeout-ms {want:?} upstream, got status {} \
                 and {got:?}: {}",
                r.status,
                short(&r.body)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ------------------------------------------------------------------------------------------
// 6. and 8. Header routing and weighted shifts (the book's catalog, bookinfo's reviews)

fn catalog_world() -> World {
    let backends = vec![
        EchoBackend::start("catalog", "v1"),
        EchoBackend::start("catalog", "v2"),
        EchoBackend::start("reviews", "v1"),
        EchoBackend::start("reviews", "v2"),
    ];
    let entries = [
        se(
            "catalog",
            "catalog.istioinaction.svc.cluster.local",
            &[&backends[0], &backends[1]],
            &[],
        ),
        se(
            "reviews",
            "reviews.istioinaction.svc.cluster.local",
            &[&backends[2], &backends[3]],
            &[],
        ),
    ]
    .join("---\n");
    let dark = adapt(
        "ch2/catalog-virtualservice-dark-v2.yaml",
        &fixture("istio-in-action/ch2/catalog-virtualservice-dark-v2.yaml"),
        &[
            ("name: catalog\n", "name: catalog-dark\n"),
            (
                "  hosts:\n  - catalog\n",
                "  hosts:\n  - dark.example.com\n  gateways:\n  - edge\n",
            ),
        ],
    );
    let shift_90_10 = adapt(
        "ch5/catalog-vs-v2-10-90-mesh.yaml",
        &fixture("istio-in-action/ch5/catalog-vs-v2-10-90-mesh.yaml"),
        &[
            ("name: catalog\n", "name: shift-90-10\n"),
            (
                "  - catalog\n  gateways:\n",
                "  - shift-90-10.example.com\n  gateways:\n",
            ),
            ("  - mesh\n", "  - edge\n"),
        ],
    );
    let shift = |v1: u32, v2: u32| {
        vs(
            &format!("shift-{v1}-{v2}"),
            &format!("shift-{v1}-{v2}.example.com"),
            &format!(
                "  - route:\n    - destination: {{host: catalog, subset: version-v1}}\n      weight: {v1}\n    - destination: {{host: catalog, subset: version-v2}}\n      weight: {v2}\n"
            ),
        )
    };
    let reviews = adapt(
        "bookinfo/networking/virtual-service-reviews-test-v2.yaml",
        &fixture("istio-samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml"),
        &[(
            "  hosts:\n    - reviews\n",
            "  hosts:\n    - reviews.example.com\n  gateways:\n    - edge\n",
        )],
    );
    let files = vec![
        (
            "catalog-gateway.yaml",
            fixture("istio-in-action/ch5/catalog-gateway.yaml"),
        ),
        (
            "catalog-dest-rule.yaml",
            fixture("istio-in-action/ch5/catalog-dest-rule.yaml"),
        ),
        (
            "catalog-vs-v2-request.yaml",
            fixture("istio-in-action/ch5/catalog-vs-v2-request.yaml"),
        ),
        ("catalog-dark.yaml", dark),
        ("shift-90-10.yaml", shift_90_10),
        ("shift-20-80.yaml", shift(20, 80)),
        ("shift-70-30.yaml", shift(70, 30)),
        (
            "destination-rule-reviews.yaml",
            fixture("istio-samples/bookinfo/networking/destination-rule-reviews.yaml"),
        ),
        ("reviews.yaml", reviews),
    ];
    edge_world_with(&["--namespace", "istioinaction"], backends, entries, files)
}

/// (Host, request headers, expected `service/version`)
type RouteCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn header_matches_route_to_another_version() {
    let w = catalog_world();
    // (host, headers, expected service/version)
    let cases: &[RouteCase] = &[
        // The book's catalog-vs-v2-request.yaml, unmodified.
        (
            "catalog.istioinaction.io",
            &[("x-istio-cohort", "internal")],
            "catalog/v2",
        ),
        ("catalog.istioinaction.io", &[], "catalog/v1"),
        (
            "catalog.istioinaction.io",
            &[("x-istio-cohort", "internal2")],
            "catalog/v1",
        ),
        (
            "catalog.istioinaction.io",
            &[("x-istio-cohort", "Internal")],
            "catalog/v1",
        ),
        // ch2's dark launch.
        ("dark.example.com", &[("x-dark-launch", "v2")], "catalog/v2"),
        ("dark.example.com", &[("X-Dark-Launch", "v2")], "catalog/v2"),
        ("dark.example.com", &[("x-dark-launch", "v3")], "catalog/v1"),
        ("dark.example.com", &[], "catalog/v1"),
        // Bookinfo's reviews for jason.
        (
            "reviews.example.com",
            &[("end-user", "jason")],
            "reviews/v2",
        ),
        ("reviews.example.com", &[("end-user", "bob")], "reviews/v1"),
        ("reviews.example.com", &[], "reviews/v1"),
    ];
    let mut wrong = Vec::new();
    for (host, headers, want) in cases {
        // Several times each: weights or load balancing must not blur a header match.
        for _ in 0..10 {
            let got = w.who(host, "/items", headers);
            if got != *want {
                wrong.push(format!("{host} {headers:?}: got {got}, expected {want}"));
                break;
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn weighted_shifts_follow_the_weights() {
    let w = catalog_world();
    const N: usize = 1000;
    let mut wrong = Vec::new();
    for (host, v1_percent) in [
        ("shift-20-80.example.com", 20),
        ("shift-70-30.example.com", 70),
        ("shift-90-10.example.com", 90),
    ] {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..N {
            *counts.entry(w.who(host, "/", &[])).or_insert(0) += 1;
        }
        let v1 = counts.get("catalog/v1").copied().unwrap_or(0);
        let v2 = counts.get("catalog/v2").copied().unwrap_or(0);
        let lo = (v1_percent - 5) * N / 100;
        let hi = (v1_percent + 5) * N / 100;
        if v1 + v2 != N || !(lo..=hi).contains(&v1) {
            wrong.push(format!(
                "{host}: expected {v1_percent}% ±5 to v1 over {N}, got {counts:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ------------------------------------------------------------------------------------------
// 7. Fault injection (bookinfo's ratings tests for jason)

#[test]
fn faults_apply_to_the_matched_user_only() {
    let ratings = EchoBackend::start("ratings", "v1");
    let entries = se(
        "ratings",
        "ratings.istioinaction.svc.cluster.local",
        &[&ratings],
        &[],
    );
    let dr =
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\n\
              spec:\n  host: ratings\n  subsets:\n  - name: v1\n    labels: {version: v1}\n"
            .to_string();
    // Bookinfo's `virtual-service-ratings-test-<kind>.yaml` as `ratings-<kind>` on
    // `ratings-<kind>.example.com`.
    let ratings_test = |kind: &str| {
        let file = format!("bookinfo/networking/virtual-service-ratings-test-{kind}.yaml");
        adapt(
            &file,
            &fixture(&format!("istio-samples/{file}")),
            &[
                ("name: ratings\n", &format!("name: ratings-{kind}\n")),
                (
                    "  hosts:\n  - ratings\n",
                    &format!("  hosts:\n  - ratings-{kind}.example.com\n  gateways:\n  - edge\n"),
                ),
            ],
        )
    };
    let delay = ratings_test("delay");
    let abort = ratings_test("abort");
    // No `percentage` anywhere: Istio applies such faults to 0% of requests.
    let never = vs(
        "never",
        "never.example.com",
        "  - fault:\n      delay: {fixedDelay: 7s}\n      abort: {httpStatus: 500}\n    \
         route: [{destination: {host: ratings, subset: v1}}]\n",
    );
    let half = vs(
        "half",
        "half.example.com",
        "  - fault:\n      abort: {httpStatus: 503, percentage: {value: 50}}\n    \
         route: [{destination: {host: ratings, subset: v1}}]\n",
    );
    let w = edge_world_with(
        &["--namespace", "istioinaction"],
        vec![ratings],
        entries,
        vec![
            ("ratings-dr.yaml", dr),
            ("ratings-delay.yaml", delay),
            ("ratings-abort.yaml", abort),
            ("never.yaml", never),
            ("half.yaml", half),
        ],
    );
    let long = Duration::from_secs(20);
    let jason: &[(&str, &str)] = &[("end-user", "jason")];
    let others: &[&[(&str, &str)]] = &[&[("end-user", "bob")], &[("end-user", "Jason")], &[]];

    // Delay 7 s at 100% for jason only.
    let (r, took) = w.timed_get("ratings-delay.example.com", "/ratings/0", jason, long);
    assert_eq!(r.status, 200, "{}", short(&r.body));
    assert_eq!(r.json()["service"], "ratings");
    assert!(
        took >= Duration::from_secs(7),
        "jason answered after {took:?}, sooner than the 7 s delay"
    );
    assert!(
        took < Duration::from_secs(17),
        "jason answered after {took:?}"
    );
    for headers in others {
        let (r, took) = w.timed_get("ratings-delay.example.com", "/ratings/0", headers, long);
        assert_eq!(r.status, 200, "{headers:?}: {}", short(&r.body));
        assert!(
            took < Duration::from_secs(5),
            "{headers:?} was delayed too: {took:?}"
        );
    }

    // Abort 500 at 100% for jason only; the backend never sees those requests.
    let before = w.received("ratings");
    for _ in 0..5 {
        let r = w.get("ratings-abort.example.com", "/ratings/0", jason);
        assert_eq!(
            (r.status, r.body.as_str()),
            (500, "fault filter abort"),
            "jason on the abort route"
        );
    }
    assert_eq!(
        w.received("ratings") - before,
        0,
        "aborted requests reached the backend"
    );
    for headers in others {
        let r = w.get("ratings-abort.example.com", "/ratings/0", headers);
        assert_eq!(r.status, 200, "{headers:?}: {}", short(&r.body));
        assert_eq!(r.json()["service"], "ratings");
    }

    // Without `percentage`, neither the delay nor the abort ever happens.
    for i in 0..20 {
        let headers = if i % 2 == 0 { jason } else { &[][..] };
        let (r, took) = w.timed_get("never.example.com", "/ratings/0", headers, long);
        assert_eq!(
            r.status,
            200,
            "request {i}: a fault without percentage was applied: {}",
            short(&r.body)
        );
        assert!(
            took < Duration::from_secs(5),
            "request {i}: a delay without percentage was applied ({took:?})"
        );
    }

    // 50%: about half are aborted.
    const N: usize = 400;
    let mut aborted = 0;
    for i in 0..N {
        let r = w.get("half.example.com", "/", &[]);
        match r.status {
            200 => {}
            503 => {
                assert_eq!(r.body, "fault filter abort", "request {i}");
                aborted += 1;
            }
            other => panic!("request {i}: status {other}: {}", short(&r.body)),
        }
    }
    assert!(
        (140..=260).contains(&aborted),
        "abort at 50% hit {aborted} of {N}"
    );
}

// ------------------------------------------------------------------------------------------
// 9. Rewrites and a redirect

#[test]
fn rewrites_change_what_the_upstream_sees() {
    let b = EchoBackend::start("web", "v1");
    let entries = se("web", "web.svc.internal", &[&b], &[]);
    let http = r#"  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2}
    route: [{destination: {host: web.svc.internal}}]
  - match: [{uri: {exact: /exact}}]
    rewrite: {uri: /replaced}
    route: [{destination: {host: web.svc.internal}}]
  - match: [{uri: {prefix: /re/}}]
    rewrite:
      uriRegexRewrite: {match: '^/re/([a-z]+)/([0-9]+)$', rewrite: '/items/\2/\1'}
    route: [{destination: {host: web.svc.internal}}]
  - match: [{uri: {prefix: /authority}}]
    rewrite: {authority: backend.internal}
    route: [{destination: {host: web.svc.internal}}]
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - route: [{destination: {host: web.svc.internal}}]
"#;
    let w = edge_world(vec![b], entries, vs("rewrite", "rewrite.example.com", http));
    let host = "rewrite.example.com";
    // (client path, path the backend sees, Host the backend sees)
    let cases = [
        ("/api/items?x=1", "/v2/items?x=1", host),
        ("/api", "/v2", host),
        ("/exact?x=1", "/replaced?x=1", host),
        ("/re/abc/42?q=1", "/items/42/abc?q=1", host),
        ("/re/abc/x", "/re/abc/x", host),
        ("/authority/x?y=2", "/authority/x?y=2", "backend.internal"),
        ("/other", "/other", host),
    ];
    let mut wrong = Vec::new();
    for (path, want_path, want_host) in cases {
        let r = w.get(host, path, &[]);
        let seen = echo_json(&r).map(|j| {
            (
                j["path"].as_str().unwrap_or("?").to_string(),
                j["host"].as_str().unwrap_or("?").to_string(),
            )
        });
        if r.status != 200 || seen != Some((want_path.to_string(), want_host.to_string())) {
            wrong.push(format!(
                "GET {path}: expected upstream path {want_path:?} and Host {want_host:?}, got \
                 status {} and {seen:?}",
                r.status
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let r = w.get(host, "/old?k=v", &[]);
    assert_eq!(r.status, 301, "{}", short(&r.body));
    assert_eq!(
        r.header("location"),
        Some("http://rewrite.example.com/new?k=v")
    );
}

// ------------------------------------------------------------------------------------------
// 10. Header operations

#[test]
fn header_operations_on_requests_and_responses() {
    let b = EchoBackend::start("web", "v1");
    let entries = se("web", "web.svc.internal", &[&b], &[]);
    let http = r#"  - headers:
      request:
        set: {x-set: set-value, x-overwrite: from-gateway}
        add: {x-add: added}
        remove: [x-remove]
      response:
        set: {x-echo-service: renamed, x-resp-set: resp-set-value}
        add: {x-echo-version: extra, x-resp-add: resp-added}
        remove: [x-echo-request-count]
    route: [{destination: {host: web.svc.internal}}]
"#;
    let w = edge_world(vec![b], entries, vs("headers", "headers.example.com", http));
    let r = w.get(
        "headers.example.com",
        "/headers",
        &[
            ("x-overwrite", "from-client"),
            ("x-add", "from-client"),
            ("x-remove", "secret"),
            ("x-keep", "kept"),
        ],
    );
    assert_eq!(r.status, 200, "{}", short(&r.body));
    let seen = r.json()["headers"].clone();
    let mut wrong = Vec::new();
    for (name, want) in [
        ("x-set", Some("set-value")),
        ("x-overwrite", Some("from-gateway")),
        ("x-add", Some("from-client, added")),
        ("x-remove", None),
        ("x-keep", Some("kept")),
    ] {
        if seen.get(name).and_then(Value::as_str) != want {
            wrong.push(format!(
                "upstream request header {name}: expected {want:?}, got {:?}",
                seen.get(name)
            ));
        }
    }
    for (name, want) in [
        ("x-echo-service", "renamed"),
        ("x-resp-set", "resp-set-value"),
        ("x-echo-version", "v1, extra"),
        ("x-resp-add", "resp-added"),
        ("x-echo-request-count", ""),
    ] {
        let got = all_values(&r, name);
        if got != want {
            wrong.push(format!(
                "response header {name}: expected {want:?}, got {got:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nupstream saw {seen}\nclient got {:?}",
        wrong.join("\n"),
        r.headers
    );
}

// ------------------------------------------------------------------------------------------
// 11. Validation: rejected with file, line and field; the last good config stays in force

const POLICY_FILE: &str = "30-policy.yaml";

/// VirtualService `policy` for `policy.example.com` on Gateway `edge`, routing to
/// `web.svc.internal` with `timeout` (line 14) and `retries` (lines 15-17, `retryOn` on line 17),
/// then the YAML lines `more`.
macro_rules! policy_vs {
    (timeout: $timeout:literal, retryOn: $retry_on:literal $(, more: $more:literal)?) => {
        concat!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: policy
spec:
  hosts:
  - policy.example.com
  gateways:
  - edge
  http:
  - route:
    - destination:
        host: web.svc.internal
    timeout: ",
            $timeout,
            "
    retries:
      attempts: 2
      retryOn: ",
            $retry_on,
            "\n",
            $($more)?
        )
    };
}

/// Lines 14-17 hold the policy that the broken variants replace.
const POLICY_GOOD: &str = policy_vs!(timeout: "2s", retryOn: "5xx,connect-failure");

/// Line 14: a number where a duration string belongs.
const POLICY_TIMEOUT_NUMBER: &str = policy_vs!(timeout: "10", retryOn: "5xx,connect-failure");

/// Line 17: an unknown retry condition.
const POLICY_BOGUS_RETRY_ON: &str = policy_vs!(timeout: "2s", retryOn: "5xx,bogus");

/// Line 20: `exponentialDelay` (Istio rejects it).
const POLICY_EXPONENTIAL_DELAY: &str = policy_vs!(
    timeout: "2s",
    retryOn: "5xx,connect-failure",
    more: "    fault:
      delay:
        exponentialDelay: 1s
        percentage: {value: 100}
"
);

struct Invalid {
    name: &'static str,
    contents: &'static str,
    line: usize,
    marker: &'static str,
    field: &'static str,
    needle: &'static str,
}

const INVALID: &[Invalid] = &[
    Invalid {
        name: "timeout: 10",
        contents: POLICY_TIMEOUT_NUMBER,
        line: 14,
        marker: "timeout: 10",
        field: "spec.http[0].timeout",
        needle: "10",
    },
    Invalid {
        name: "retryOn: bogus",
        contents: POLICY_BOGUS_RETRY_ON,
        line: 17,
        marker: "bogus",
        field: "spec.http[0].retries.retryOn",
        needle: "bogus",
    },
    Invalid {
        name: "fault.delay.exponentialDelay",
        contents: POLICY_EXPONENTIAL_DELAY,
        line: 20,
        marker: "exponentialDelay: 1s",
        field: "spec.http[0].fault.delay.exponentialDelay",
        needle: "",
    },
];

/// The diagnostic lines for `file` that are errors at `line` naming `field` of
/// VirtualService default/policy and containing `needle`.
fn matching<'a>(diags: &'a [String], file: &Path, case: &Invalid) -> Vec<&'a String> {
    let at = format!("{}:{} error: ", file.display(), case.line);
    let what = format!("VirtualService default/policy: {}: ", case.field);
    diags
        .iter()
        .filter(|d| d.starts_with(&at) && d.contains(&what) && d.contains(case.needle))
        .collect()
}

/// The route's policy is in force: `x-envoy-expected-rq-timeout-ms` shows its `timeout: 2s`.
fn policy_in_force(w: &World) -> Result<(), String> {
    let r = w
        .client
        .get(w.addr, "policy.example.com", "/headers", &[])?;
    let timeout = echo_json(&r).and_then(|j| {
        j["headers"]["x-envoy-expected-rq-timeout-ms"]
            .as_str()
            .map(str::to_string)
    });
    if r.status != 200 || timeout.as_deref() != Some("2000") {
        return Err(format!(
            "expected 200 with x-envoy-expected-rq-timeout-ms 2000 upstream, got {} with {timeout:?}: {}",
            r.status,
            short(&r.body)
        ));
    }
    Ok(())
}

#[test]
fn invalid_policy_fields_are_rejected_and_the_last_good_config_serves() {
    for case in INVALID {
        assert_marker_line(case.name, case.contents, case.line, case.marker);
    }
    let b = EchoBackend::start("web", "v1");
    let entries = se("web", "web.svc.internal", &[&b], &[]);
    let w = World::start(
        &[],
        vec![b],
        &[
            ("10-backends.yaml", entries.clone()),
            ("20-gateway.yaml", EDGE_GATEWAY.to_string()),
            (POLICY_FILE, POLICY_GOOD.to_string()),
        ],
    );
    let under_test = UnderTest {
        file: POLICY_FILE,
        good: POLICY_GOOD,
        what: "policy",
        in_force: policy_in_force,
    };
    w.assert_in_force(&under_test);
    let path = w.config.path().join(POLICY_FILE);
    let mut failures = Vec::new();
    for case in INVALID {
        // `tollgate check` on the same files.
        let dir = ConfigDir::new();
        dir.write("10-backends.yaml", &entries);
        dir.write("20-gateway.yaml", EDGE_GATEWAY);
        dir.write(POLICY_FILE, case.contents);
        let out = check(dir.path(), &[]);
        let lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        if out.code != Some(1) || matching(&lines, &dir.path().join(POLICY_FILE), case).is_empty() {
            failures.push(format!(
                "[check, {}] expected exit 1 and `{}:{} error: VirtualService default/policy: {}: \
                 ...{}...`; got exit {:?}\n--- stdout:\n{}--- stderr:\n{}",
                case.name,
                dir.path().join(POLICY_FILE).display(),
                case.line,
                case.field,
                case.needle,
                out.code,
                out.stdout,
                out.stderr
            ));
        }

        // The running gateway: reports it, keeps the last good policy (also once restored).
        failures.extend(w.check_rejected(
            &under_test,
            case.name,
            case.contents,
            |diags| !matching(diags, &path, case).is_empty(),
            &format!(
                "error `{}:{} error: VirtualService default/policy: {}: ...`",
                path.display(),
                case.line,
                case.field
            ),
        ));
    }
    if !failures.is_empty() {
        w.gw.fail(failures.join("\n\n"));
    }
}

// ------------------------------------------------------------------------------------------
// 12. Request mirroring (reference §2.6, §2.8)

/// Polls `count` until it reaches `want` (for at most `within`), then waits a little more so
/// that extra arrivals would show, and returns the final value.
fn count_reaches(want: u64, within: Duration, count: impl Fn() -> u64) -> u64 {
    let _ = poll(within, || (count() >= want).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    count()
}

/// `count` once it has stopped moving (two reads 300 ms apart agree), polled for at most `within`.
fn settled(within: Duration, count: impl Fn() -> u64) -> u64 {
    let mut last = count();
    let _ = poll(within, || {
        std::thread::sleep(Duration::from_millis(300));
        let now = count();
        let same = now == last;
        last = now;
        same.then_some(())
    });
    last
}

/// The book's catalog (v1 and v2 behind `catalog`, ch5's DestinationRule) with
/// `catalog-vs-v2-mirror.yaml` on `mirror.example.com`, more mirror routes written after it, and
/// an `audit` service as a second mirror.
fn mirror_world() -> World {
    let backends = vec![
        EchoBackend::start("catalog", "v1"),
        EchoBackend::start("catalog", "v2"),
        EchoBackend::start("audit", "v1"),
    ];
    let entries = [
        se(
            "catalog",
            "catalog.istioinaction.svc.cluster.local",
            &[&backends[0], &backends[1]],
            &[],
        ),
        se("audit", "audit.svc.internal", &[&backends[2]], &[]),
    ]
    .join("---\n");
    let book = adapt(
        "ch5/catalog-vs-v2-mirror.yaml",
        &fixture("istio-in-action/ch5/catalog-vs-v2-mirror.yaml"),
        &[
            ("name: catalog\n", "name: catalog-mirror\n"),
            (
                "  hosts:\n  - catalog\n",
                "  hosts:\n  - mirror.example.com\n",
            ),
            ("    - mesh\n", "    - edge\n"),
        ],
    );
    let to_v1 = "  - route: [{destination: {host: catalog, subset: version-v1}}]\n";
    // Each route sends to v1 and mirrors as its policy says.
    let mirrored = [
        (
            "mirror-zero",
            "    mirror: {host: catalog, subset: version-v2}\n    mirrorPercentage: {value: 0}\n",
        ),
        (
            "mirror-int-zero",
            "    mirror: {host: catalog, subset: version-v2}\n    mirrorPercent: 0\n",
        ),
        (
            "mirror-half",
            "    mirror: {host: catalog, subset: version-v2}\n    mirrorPercentage: {value: 50}\n",
        ),
        (
            "mirrors-two",
            "    mirrors:\n    - destination: {host: catalog, subset: version-v2}\n    \
             - destination: {host: audit.svc.internal, port: {number: 80}}\n",
        ),
        (
            "mirrors-pct",
            "    mirrors:\n    - destination: {host: catalog, subset: version-v2}\n      \
             percentage: {value: 100}\n    - destination: {host: audit.svc.internal}\n      \
             percentage: {value: 0}\n",
        ),
    ];
    let routes = mirrored
        .iter()
        .map(|(name, policy)| {
            vs(
                name,
                &format!("{name}.example.com"),
                &format!("{to_v1}{policy}"),
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    edge_world_with(
        &["--namespace", "istioinaction"],
        backends,
        entries,
        vec![
            (
                "catalog-dest-rule.yaml",
                fixture("istio-in-action/ch5/catalog-dest-rule.yaml"),
            ),
            ("catalog-vs-v2-mirror.yaml", book),
            ("mirror-routes.yaml", routes),
        ],
    )
}

#[test]
fn mirror_copies_requests_to_v2_while_clients_see_only_v1() {
    let w = mirror_world();
    let v1 = || w.backend("catalog", "v1").received();
    let v2 = || w.backend("catalog", "v2").received();
    let audit = || w.backend("audit", "v1").received();
    let within = Duration::from_secs(10);
    const N: u64 = 50;

    // The book's mirror (no mirrorPercentage ⇒ 100%): every request answered by v1, copied to v2.
    let (v1_before, v2_before) = (v1(), v2());
    for i in 0..N {
        let got = w.who("mirror.example.com", &format!("/items?i={i}"), &[]);
        assert_eq!(
            got, "catalog/v1",
            "request {i}: the client saw another answer"
        );
    }
    assert_eq!(v1() - v1_before, N, "v1 serves each request once");
    let mirrored = count_reaches(v2_before + N, within, v2) - v2_before;
    assert_eq!(
        mirrored, N,
        "v2 (the mirror, 100%) should receive a copy of each of the {N} requests"
    );

    // `mirrorPercentage: {value: 0}` and the deprecated `mirrorPercent: 0` mirror nothing.
    for host in ["mirror-zero.example.com", "mirror-int-zero.example.com"] {
        let v2_before = v2();
        for i in 0..N {
            let got = w.who(host, "/items", &[]);
            assert_eq!(got, "catalog/v1", "{host} request {i}");
        }
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(v2() - v2_before, 0, "{host}: a 0% mirror received copies");
    }

    // 50%: about half of 200 requests are copied.
    let v2_before = v2();
    for i in 0..200 {
        let got = w.who("mirror-half.example.com", "/items", &[]);
        assert_eq!(got, "catalog/v1", "mirror-half request {i}");
    }
    let half = settled(within, v2) - v2_before;
    assert!(
        (60..=140).contains(&half),
        "mirrorPercentage 50: {half} of 200 requests mirrored"
    );

    // `mirrors:` with two destinations: each receives every request.
    let (v1_before, v2_before, audit_before) = (v1(), v2(), audit());
    for i in 0..N {
        let got = w.who("mirrors-two.example.com", "/items", &[]);
        assert_eq!(got, "catalog/v1", "mirrors-two request {i}");
    }
    assert_eq!(v1() - v1_before, N);
    let to_v2 = count_reaches(v2_before + N, within, v2) - v2_before;
    let to_audit = count_reaches(audit_before + N, within, audit) - audit_before;
    assert_eq!(
        (to_v2, to_audit),
        (N, N),
        "mirrors: [v2, audit] (both 100%): copies received by (v2, audit)"
    );

    // Each entry's own `percentage`: 100 for v2, 0 for audit.
    let (v2_before, audit_before) = (v2(), audit());
    for i in 0..N {
        let got = w.who("mirrors-pct.example.com", "/items", &[]);
        assert_eq!(got, "catalog/v1", "mirrors-pct request {i}");
    }
    let to_v2 = count_reaches(v2_before + N, within, v2) - v2_before;
    let to_audit = settled(within, audit) - audit_before;
    assert_eq!(
        (to_v2, to_audit),
        (N, 0),
        "mirrors: [v2 at 100%, audit at 0%]: copies received by (v2, audit)"
    );
}

/// A gateway (with `args`) whose `copy.example.com` routes to the echo backend `web` and mirrors
/// to the recorder behind `shadow.svc.internal`; `/api` is rewritten to `/v2` first.
fn copy_world(args: &[&str], shadow: &RecordingBackend) -> World {
    let web = EchoBackend::start("web", "v1");
    let entries = [
        se("web", "web.svc.internal", &[&web], &[]),
        service_entry("shadow", "shadow.svc.internal", 80, &[(shadow.addr, &[])]),
    ]
    .join("---\n");
    let http = "  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2}
    route: [{destination: {host: web.svc.internal}}]
    mirror: {host: shadow.svc.internal, port: {number: 80}}
  - route: [{destination: {host: web.svc.internal}}]
    mirror: {host: shadow.svc.internal}
";
    edge_world_with(
        args,
        vec![web],
        entries,
        vec![("routes.yaml", vs("copy", "copy.example.com", http))],
    )
}

/// Sends a POST with a body (to the rewritten `/api` route) and a GET with a port in Host, and
/// checks what the primary and the mirror each saw; the mirror's Host has `host_suffix` appended
/// to the name (before any port).
fn check_mirror_copies(w: &World, shadow: &RecordingBackend, host_suffix: &str) {
    let within = Duration::from_secs(10);
    let mut wrong = Vec::new();
    let before = shadow.count();

    // A POST with a 1000-byte body of known length, rewritten /api → /v2.
    let body = vec![b'm'; 1000];
    let r = w.request(
        "POST",
        "copy.example.com",
        "/api/upload?k=v",
        &[("content-type", "text/plain"), ("x-trace-me", "42")],
        &body,
    );
    let primary = echo_json(&r);
    let want_primary = serde_json::json!({"path": "/v2/upload?k=v", "host": "copy.example.com",
        "body_bytes": 1000});
    let seen_primary = primary.as_ref().map(|j| {
        serde_json::json!({"path": j["path"], "host": j["host"], "body_bytes": j["body_bytes"]})
    });
    if r.status != 200 || seen_primary.as_ref() != Some(&want_primary) {
        wrong.push(format!(
            "POST: the client should get the primary's 200 with {want_primary}, got {} {}",
            r.status,
            short(&r.body)
        ));
    }
    let n = count_reaches(before as u64 + 1, within, || shadow.count() as u64);
    let copies = shadow.requests()[before..].to_vec();
    let want_host = format!("copy.example.com{host_suffix}");
    match copies.as_slice() {
        [c] => {
            let trace = c
                .headers
                .iter()
                .find(|(k, _)| k == "x-trace-me")
                .map(|(_, v)| v.as_str());
            if (
                c.method.as_str(),
                c.path.as_str(),
                c.host.as_str(),
                c.body_bytes,
                trace,
            ) != (
                "POST",
                "/v2/upload?k=v",
                want_host.as_str(),
                1000,
                Some("42"),
            ) {
                wrong.push(format!(
                    "POST: the mirror should see POST /v2/upload?k=v, Host {want_host:?}, 1000 \
                     body bytes and x-trace-me: 42; it saw {c:?}"
                ));
            }
        }
        other => wrong.push(format!(
            "POST: the mirror should get exactly one copy, got {} ({other:?}; count {n})",
            other.len()
        )),
    }

    // A GET whose Host carries a port: the suffix goes before the port.
    let before = shadow.count();
    let r = w.get("copy.example.com:8080", "/plain?x=1", &[]);
    let seen_host = echo_json(&r).map(|j| j["host"].clone());
    if r.status != 200 || seen_host != Some(Value::from("copy.example.com:8080")) {
        wrong.push(format!(
            "GET with Host copy.example.com:8080: the primary should see that Host, got {} \
             {seen_host:?}: {}",
            r.status,
            short(&r.body)
        ));
    }
    count_reaches(before as u64 + 1, within, || shadow.count() as u64);
    let copies = shadow.requests()[before..].to_vec();
    let want_host = format!("copy.example.com{host_suffix}:8080");
    match copies.as_slice() {
        [c] if (
            c.method.as_str(),
            c.path.as_str(),
            c.host.as_str(),
            c.body_bytes,
        ) == ("GET", "/plain?x=1", want_host.as_str(), 0) => {}
        other => wrong.push(format!(
            "GET: the mirror should get one copy GET /plain?x=1 with Host {want_host:?}, got \
             {other:?}"
        )),
    }

    // A 2 MiB body is too large to buffer for the copy; whatever happens to the copy, the client
    // still gets the primary's answer with the whole body.
    let big = vec![b'b'; 2 * 1024 * 1024];
    let r = w.request_with(
        &w.client.with_timeout(Duration::from_secs(20)),
        "POST",
        "copy.example.com",
        "/big",
        &[],
        &big,
    );
    let seen = echo_json(&r).map(|j| j["body_bytes"].clone());
    if r.status != 200 || seen != Some(Value::from(big.len())) {
        wrong.push(format!(
            "POST of 2 MiB on a mirrored route: expected the primary's 200 with body_bytes {}, \
             got {} {seen:?}: {}",
            big.len(),
            r.status,
            short(&r.body)
        ));
    }
    if !wrong.is_empty() {
        w.gw.fail(wrong.join("\n"));
    }
}

#[test]
fn mirror_copy_carries_the_rewritten_path_the_body_and_the_host() {
    let shadow = RecordingBackend::start("shadow");
    let w = copy_world(&[], &shadow);
    check_mirror_copies(&w, &shadow, "");
}

#[test]
fn mirror_shadow_host_flag_appends_shadow_to_the_mirrored_host() {
    let shadow = RecordingBackend::start("shadow");
    let w = copy_world(&["--mirror-shadow-host"], &shadow);
    check_mirror_copies(&w, &shadow, "-shadow");
}

#[test]
fn slow_or_dead_mirror_does_not_touch_the_main_request() {
    // The primary answers everything at once (it gives `/delay/<ms>` no meaning); the slow
    // mirror is an echo backend that does delay `/delay/5000`.
    let primary = RecordingBackend::start("primary");
    let slow = EchoBackend::start("slow", "v1");
    let entries = [
        service_entry(
            "primary",
            "primary.svc.internal",
            80,
            &[(primary.addr, &[])],
        ),
        se("slow", "slow.svc.internal", &[&slow], &[]),
        se("dead", "dead.svc.internal", &[], &[dead_addr()]),
    ]
    .join("---\n");
    let to_primary = "  - route: [{destination: {host: primary.svc.internal}}]\n";
    let routes = [
        vs(
            "slow-mirror",
            "slow-mirror.example.com",
            &format!("{to_primary}    mirror: {{host: slow.svc.internal}}\n"),
        ),
        vs(
            "dead-mirror",
            "dead-mirror.example.com",
            &format!("{to_primary}    mirror: {{host: dead.svc.internal}}\n"),
        ),
    ]
    .join("---\n");
    let w = edge_world(vec![slow], entries, routes);
    const N: u64 = 20;
    let long = Duration::from_secs(10);
    for (host, path) in [
        ("slow-mirror.example.com", "/delay/5000"),
        ("dead-mirror.example.com", "/items"),
    ] {
        let before = primary.count();
        let start = Instant::now();
        for i in 0..N {
            let (r, took) = w.timed_get(host, path, &[], long);
            let service = echo_json(&r).map(|j| j["service"].clone());
            if r.status != 200 || service != Some(Value::from("primary")) {
                w.gw.fail(format!(
                    "{host}{path} request {i}: expected the primary's 200, got {} after \
                     {took:?}: {}",
                    r.status,
                    short(&r.body)
                ));
            }
            assert!(
                took < Duration::from_secs(2),
                "{host}{path} request {i} took {took:?}: the mirror slowed it down"
            );
        }
        let total = start.elapsed();
        assert!(
            total < Duration::from_secs(5),
            "{N} requests to {host}{path} took {total:?} in all (the slow mirror answers after 5 s)"
        );
        assert_eq!(
            primary.count() - before,
            N as usize,
            "{host}: primary requests"
        );
    }
    // The slow mirror did get its copies (so the speed above is not for lack of mirroring).
    let copies = count_reaches(N, Duration::from_secs(10), || w.received("slow"));
    assert_eq!(copies, N, "the slow mirror should have received {N} copies");
}

// ------------------------------------------------------------------------------------------
// 13. CORS (reference §2.8)

/// The `access-control-*` headers of a response, sorted.
fn cors_headers(r: &Response) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .cloned()
        .collect();
    h.sort();
    h
}

/// Request headers, owned by a case table.
type Headers<'a> = Vec<(&'a str, &'a str)>;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn cors_preflights_are_answered_and_allowed_origins_get_the_headers() {
    let web = EchoBackend::start("web", "v1");
    let entries = se("web", "web.svc.internal", &[&web], &[]);
    let to_web = "    route: [{destination: {host: web.svc.internal}}]\n";
    let routes = [
        vs(
            "cors",
            "cors.example.com",
            &format!(
                r#"  - corsPolicy:
      allowOrigins:
      - exact: https://app.example.org
      - prefix: https://dev.
      - regex: 'https://[a-z]+\.partner\.net'
      allowMethods: [GET, POST, PUT]
      allowHeaders: [authorization, x-custom]
      exposeHeaders: [x-echo-service, x-request-id]
      maxAge: 24h
      allowCredentials: true
{to_web}"#
            ),
        ),
        vs(
            "cors-ignore",
            "cors-ignore.example.com",
            &format!(
                "  - corsPolicy:\n      allowOrigins: [{{exact: https://app.example.org}}]\n      \
                 allowMethods: [GET]\n      maxAge: 90s\n      unmatchedPreflights: IGNORE\n{to_web}"
            ),
        ),
        vs(
            "cors-legacy",
            "cors-legacy.example.com",
            &format!(
                "  - corsPolicy:\n      allowOrigin: [https://old.example.org]\n      \
                 allowMethods: [GET, DELETE]\n      allowHeaders: [x-legacy]\n      maxAge: 10m\n\
                 {to_web}"
            ),
        ),
    ]
    .join("---\n");
    let w = edge_world(vec![web], entries, routes);
    let mut wrong = Vec::new();

    // Preflights from allowed origins: answered by the gateway, not forwarded.
    let preflights: &[(&str, &str)] = &[
        ("cors.example.com", "https://app.example.org"),
        ("cors.example.com", "https://dev.anything.io"),
        ("cors.example.com", "https://shop.partner.net"),
        ("cors-ignore.example.com", "https://app.example.org"),
        ("cors-legacy.example.com", "https://old.example.org"),
    ];
    for (host, origin) in preflights {
        let want = match *host {
            "cors.example.com" => pairs(&[
                ("access-control-allow-origin", origin),
                ("access-control-allow-methods", "GET,POST,PUT"),
                ("access-control-allow-headers", "authorization,x-custom"),
                ("access-control-max-age", "86400"),
                ("access-control-allow-credentials", "true"),
            ]),
            "cors-ignore.example.com" => pairs(&[
                ("access-control-allow-origin", origin),
                ("access-control-allow-methods", "GET"),
                ("access-control-max-age", "90"),
            ]),
            _ => pairs(&[
                ("access-control-allow-origin", origin),
                ("access-control-allow-methods", "GET,DELETE"),
                ("access-control-allow-headers", "x-legacy"),
                ("access-control-max-age", "600"),
            ]),
        };
        let before = w.received("web");
        let r = w.request(
            "OPTIONS",
            host,
            "/items",
            &[
                ("origin", origin),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-custom"),
            ],
            b"",
        );
        let forwarded = w.received("web") - before;
        let got = cors_headers(&r);
        if r.status != 200 || got != want || forwarded != 0 {
            wrong.push(format!(
                "preflight to {host} from allowed {origin}: expected 200 answered by the gateway \
                 (not forwarded) with {want:?}; got {} with {got:?}, forwarded {forwarded} time(s), \
                 body {}",
                r.status,
                short(&r.body)
            ));
        }
    }

    // Simple (non-preflight) requests from allowed origins: forwarded, CORS headers added.
    let simple: &[(&str, &str, &str)] = &[
        ("GET", "cors.example.com", "https://app.example.org"),
        ("POST", "cors.example.com", "https://dev.x"),
        ("GET", "cors.example.com", "https://shop.partner.net"),
        // OPTIONS without Access-Control-Request-Method is not a preflight.
        ("OPTIONS", "cors.example.com", "https://app.example.org"),
        ("GET", "cors-legacy.example.com", "https://old.example.org"),
    ];
    for (method, host, origin) in simple {
        let want = if *host == "cors.example.com" {
            pairs(&[
                ("access-control-allow-origin", origin),
                (
                    "access-control-expose-headers",
                    "x-echo-service,x-request-id",
                ),
                ("access-control-allow-credentials", "true"),
            ])
        } else {
            pairs(&[("access-control-allow-origin", origin)])
        };
        let before = w.received("web");
        let r = w.request(method, host, "/items", &[("origin", origin)], b"");
        let forwarded = w.received("web") - before;
        let got: Vec<(String, String)> = cors_headers(&r)
            .into_iter()
            .filter(|(k, _)| {
                // Only these three are specified for non-preflight responses.
                [
                    "access-control-allow-origin",
                    "access-control-expose-headers",
                    "access-control-allow-credentials",
                ]
                .contains(&k.as_str())
            })
            .collect();
        if r.status != 200 || echo_json(&r).is_none() || forwarded != 1 || got != want {
            wrong.push(format!(
                "{method} to {host} from allowed {origin}: expected the backend's 200 (forwarded \
                 once) with {want:?}; got {} with {:?}, forwarded {forwarded} time(s), body {}",
                r.status,
                cors_headers(&r),
                short(&r.body)
            ));
        }
    }

    // Disallowed origins (and no Origin at all): never any CORS header. Simple requests are
    // forwarded; preflights too with FORWARD (the default), not with IGNORE.
    let preflight = |origin: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![("origin", origin), ("access-control-request-method", "GET")]
    };
    // (method, Host, request headers, times forwarded)
    let disallowed: Vec<(&str, &str, Headers, u64)> = vec![
        (
            "GET",
            "cors.example.com",
            vec![("origin", "https://evil.example.com")],
            1,
        ),
        ("GET", "cors.example.com", vec![], 1),
        (
            "OPTIONS",
            "cors.example.com",
            preflight("https://evil.example.com"),
            1,
        ),
        // Exact is exact: another scheme does not match.
        (
            "OPTIONS",
            "cors.example.com",
            preflight("http://app.example.org"),
            1,
        ),
        // The regex must match the whole origin.
        (
            "OPTIONS",
            "cors.example.com",
            preflight("https://shop.partner.net.evil.com"),
            1,
        ),
        (
            "OPTIONS",
            "cors.example.com",
            preflight("https://x.shop.partner.net"),
            1,
        ),
        (
            "OPTIONS",
            "cors-legacy.example.com",
            preflight("https://old.example.org.evil.com"),
            1,
        ),
        (
            "GET",
            "cors-ignore.example.com",
            vec![("origin", "https://evil.example.com")],
            1,
        ),
        (
            "OPTIONS",
            "cors-ignore.example.com",
            preflight("https://evil.example.com"),
            0,
        ),
    ];
    for (method, host, headers, want_forwarded) in &disallowed {
        let before = w.received("web");
        let r = w.request(method, host, "/items", headers, b"");
        let forwarded = w.received("web") - before;
        let got = cors_headers(&r);
        let from_backend = echo_json(&r).is_some();
        if r.status != 200
            || !got.is_empty()
            || forwarded != *want_forwarded
            || from_backend != (*want_forwarded == 1)
        {
            wrong.push(format!(
                "{method} to {host} with {headers:?} (origin not allowed): expected 200 without \
                 CORS headers, forwarded {want_forwarded} time(s); got {} with {got:?}, forwarded \
                 {forwarded} time(s), body {}",
                r.status,
                short(&r.body)
            ));
        }
    }
    if !wrong.is_empty() {
        w.gw.fail(wrong.join("\n"));
    }
}

// ------------------------------------------------------------------------------------------
// 14. Per-destination header operations (reference §2.6)

#[test]
fn destination_headers_win_alone_and_route_headers_win_when_weighted() {
    let v1 = EchoBackend::start("web", "v1");
    let v2 = EchoBackend::start("web", "v2");
    let entries = se("web", "web.svc.internal", &[&v1, &v2], &[]);
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\n\
              spec:\n  host: web.svc.internal\n  subsets:\n  - name: v1\n    labels: {version: v1}\n\
              \x20 - name: v2\n    labels: {version: v2}\n"
        .to_string();
    let route_ops = "  - headers:
      request: {set: {x-a: route}}
      response: {set: {x-r: route}}
";
    let single = format!(
        "{route_ops}    route:
    - destination: {{host: web.svc.internal, subset: v1}}
      headers:
        request: {{set: {{x-a: dest}}}}
        response: {{set: {{x-r: dest, x-dest: v1-only}}}}
"
    );
    let weighted = format!(
        "{route_ops}    route:
    - destination: {{host: web.svc.internal, subset: v1}}
      weight: 50
      headers:
        request: {{set: {{x-a: dest-v1, x-only-v1: one}}}}
        response: {{set: {{x-r: dest-v1, x-from: v1-dest}}}}
    - destination: {{host: web.svc.internal, subset: v2}}
      weight: 50
      headers:
        request: {{set: {{x-a: dest-v2}}, add: {{x-only-v2: two}}}}
        response: {{add: {{x-from: v2-dest}}, remove: [x-echo-version]}}
"
    );
    let routes = [
        vs("single", "single.example.com", &single),
        vs("weighted", "weighted.example.com", &weighted),
    ]
    .join("---\n");
    let w = edge_world_with(
        &[],
        vec![v1, v2],
        entries,
        vec![("dr.yaml", dr), ("routes.yaml", routes)],
    );
    let mut wrong = Vec::new();

    // One destination: its operations run after the route's, so it wins on x-a and x-r.
    for i in 0..5 {
        let r = w.get("single.example.com", "/headers", &[("x-a", "client")]);
        let json = echo_json(&r);
        let seen = json.as_ref().map(|j| {
            (
                j["version"].as_str().unwrap_or("?").to_string(),
                j["headers"]["x-a"].clone(),
            )
        });
        let got = (
            r.status,
            seen,
            all_values(&r, "x-r"),
            all_values(&r, "x-dest"),
        );
        let want = (
            200,
            Some(("v1".to_string(), Value::from("dest"))),
            "dest".to_string(),
            "v1-only".to_string(),
        );
        if got != want {
            wrong.push(format!(
                "single destination, request {i}: expected (status, (version, upstream x-a), \
                 response x-r, response x-dest) = {want:?}, got {got:?}"
            ));
            break;
        }
    }

    // Two weighted destinations: their operations run first, the route's win on x-a and x-r;
    // each destination's own headers appear only with it.
    const N: usize = 200;
    let mut per_version: HashMap<String, usize> = HashMap::new();
    for i in 0..N {
        let r = w.get("weighted.example.com", "/headers", &[("x-a", "client")]);
        let Some(json) = echo_json(&r) else {
            wrong.push(format!(
                "weighted request {i}: {} {}",
                r.status,
                short(&r.body)
            ));
            break;
        };
        let version = json["version"].as_str().unwrap_or("?").to_string();
        let up = |name: &str| json["headers"].get(name).and_then(Value::as_str);
        let got = (
            up("x-a").map(str::to_string),
            up("x-only-v1").map(str::to_string),
            up("x-only-v2").map(str::to_string),
            all_values(&r, "x-r"),
            all_values(&r, "x-from"),
            all_values(&r, "x-echo-version"),
        );
        let want = match version.as_str() {
            "v1" => (
                Some("route".to_string()),
                Some("one".to_string()),
                None,
                "route".to_string(),
                "v1-dest".to_string(),
                "v1".to_string(),
            ),
            _ => (
                Some("route".to_string()),
                None,
                Some("two".to_string()),
                "route".to_string(),
                "v2-dest".to_string(),
                String::new(),
            ),
        };
        if got != want {
            wrong.push(format!(
                "weighted request {i} answered by {version}: expected (upstream x-a, x-only-v1, \
                 x-only-v2; response x-r, x-from, x-echo-version) = {want:?}, got {got:?}"
            ));
            break;
        }
        *per_version.entry(version).or_insert(0) += 1;
    }
    if wrong.is_empty() {
        let (a, b) = (
            per_version.get("v1").copied().unwrap_or(0),
            per_version.get("v2").copied().unwrap_or(0),
        );
        if a + b != N || a < N / 4 || b < N / 4 {
            wrong.push(format!("50/50 over {N} requests gave {per_version:?}"));
        }
    }
    if !wrong.is_empty() {
        w.gw.fail(wrong.join("\n"));
    }
}
