//! DestinationRule `trafficPolicy.loadBalancer` end to end on loopback (reference §3.1–3.4):
//! ROUND_ROBIN, RANDOM, LEAST_REQUEST (also as `LEAST_CONN` and as the default when unset),
//! consistent hashing on a header, a query parameter, a cookie and the source IP, the composition
//! of top-level, port-level and subset policies (§3.2), which rules apply to a host (§3.1), and
//! the validation of these fields in `tollgate check` and on a running gateway.
//!
//! Endpoints: STATIC ServiceEntries whose three endpoints are echo backends on 127.0.0.1 with
//! versions v1, v2, v3 (the echo's JSON `version` tells which endpoint answered); the
//! LEAST_REQUEST test replaces v3 with a slow server written here.
//!
//! Fixtures (`../shared/fixtures/istio-in-action/ch6`), adapted: in `simple-backend-dr-rr.yaml`,
//! `simple-backend-dr-random.yaml` and `simple-backend-dr-least-conn.yaml` only
//! `host: simple-backend.istioinaction.svc.cluster.local` becomes this file's ServiceEntry host
//! (and, where two of them share one gateway, `name: simple-backend-dr` becomes a distinct name).
//!
//! Every loop is bounded in count, every request has a client timeout, and the only timing
//! assumption is that a 300 ms upstream is slower than an immediate one.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::*;

// ------------------------------------------------------------------------------------------
// Helpers

/// One of the book's ch6 load-balancer DestinationRules with its host (and optionally its name)
/// replaced.
fn book_dr(file: &str, host: &str, name: Option<&str>) -> String {
    let rel = format!("istio-in-action/ch6/{file}");
    let host_line = format!("host: {host}");
    let name_line = name.map(|n| format!("name: {n}\n"));
    let mut edits = vec![(
        "host: simple-backend.istioinaction.svc.cluster.local",
        host_line.as_str(),
    )];
    if let Some(line) = &name_line {
        edits.push(("name: simple-backend-dr\n", line.as_str()));
    }
    // The book's files do not end with a newline.
    let mut out = adapt(&rel, &fixture(&rel), &edits);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Three echo backends of `service`, versions v1, v2, v3.
fn three(service: &str) -> Vec<EchoBackend> {
    ["v1", "v2", "v3"]
        .iter()
        .map(|v| EchoBackend::start(service, v))
        .collect()
}

/// An endpoint: address, `version` label, extra labels.
type Ep<'a> = (SocketAddr, &'a str, &'a [(&'a str, &'a str)]);

/// A STATIC ServiceEntry `name` for `host` (port 80) with one endpoint per address, each
/// labelled `version: <version>` plus `extra` labels.
fn se(name: &str, host: &str, endpoints: &[Ep<'_>]) -> String {
    let endpoints: Vec<Endpoint<'_>> = endpoints
        .iter()
        .map(|(addr, version, extra)| {
            let mut l = vec![("version", *version)];
            l.extend_from_slice(extra);
            (*addr, l)
        })
        .collect();
    service_entry_80(name, host, &endpoints)
}

/// [`se`] for echo backends, labelled with their version only.
fn se_echo(name: &str, host: &str, backends: &[EchoBackend]) -> String {
    let endpoints: Vec<Endpoint<'_>> = backends.iter().map(echo_endpoint).collect();
    service_entry_80(name, host, &endpoints)
}

/// A DestinationRule `name` for `host` with the given `spec:` body after `host:` (lines indented
/// by two spaces).
fn dr(name: &str, host: &str, body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n\
         spec:\n  host: {host}\n{body}"
    )
}

/// The `version` of the backend that answered, or `status <code>: <body>`.
fn version_of(r: &Response) -> String {
    let v: Option<Value> = serde_json::from_str(&r.body).ok();
    match (r.status, v.as_ref().and_then(|v| v["version"].as_str())) {
        (200, Some(version)) => version.to_string(),
        (status, _) => format!("status {status}: {}", short(&r.body)),
    }
}

/// How often each value occurs.
fn tally(seq: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for s in seq {
        *counts.entry(s.clone()).or_insert(0) += 1;
    }
    counts
}

/// `None` when `seq` is a strict rotation over exactly `members` (the first `members.len()`
/// answers are all different members, then the cycle repeats), else what breaks it.
fn rotation_problem(seq: &[String], members: &[&str]) -> Option<String> {
    let k = members.len();
    let window = |i: usize| seq[i.saturating_sub(k)..(i + k).min(seq.len())].join(" ");
    if let Some(i) = seq.iter().position(|s| !members.contains(&s.as_str())) {
        return Some(format!(
            "answer #{i} is {:?}, not one of {members:?} (around it: {})",
            seq[i],
            window(i)
        ));
    }
    let first: BTreeSet<&String> = seq.iter().take(k).collect();
    if first.len() < k.min(seq.len()) {
        return Some(format!(
            "the first {k} answers repeat an endpoint: {}",
            window(0)
        ));
    }
    (k..seq.len()).find(|&i| seq[i] != seq[i - k]).map(|i| {
        format!(
            "answer #{i} is {} but #{} was {} (not a strict rotation; around it: {})",
            seq[i],
            i - k,
            seq[i - k],
            window(i)
        )
    })
}

impl World {
    /// GET through the gateway on the keep-alive client; returns the answering version (or
    /// `status <code>: <body>`); a transport error fails the test with the gateway's stderr.
    fn who(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        self.who_with(&self.client, host, path, headers)
    }

    fn who_with(
        &self,
        client: &HttpClient,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> String {
        version_of(&self.get_with(client, host, path, headers))
    }

    /// `n` sequential requests; the answering versions in order.
    fn sequence(&self, host: &str, headers: &[(&str, &str)], n: usize) -> Vec<String> {
        (0..n).map(|_| self.who(host, "/", headers)).collect()
    }
}

/// The names of a world with one service: the ServiceEntry `se` for `host` and the
/// VirtualService `vs` sending `vs_host` to it.
struct Service<'a> {
    se: &'a str,
    host: &'a str,
    vs: &'a str,
    vs_host: &'a str,
}

impl Service<'_> {
    /// Gateway `edge` (`10-gateway.yaml`), the ServiceEntry over `backends` (`20-backends.yaml`),
    /// the DestinationRule `dr_yaml` when given (`30-dr.yaml`) and the VirtualService
    /// (`40-vs.yaml`).
    fn files(
        &self,
        backends: &[EchoBackend],
        dr_yaml: Option<String>,
    ) -> Vec<(&'static str, String)> {
        let mut files = vec![
            ("10-gateway.yaml", EDGE_GATEWAY.to_string()),
            ("20-backends.yaml", se_echo(self.se, self.host, backends)),
        ];
        if let Some(dr_yaml) = dr_yaml {
            files.push(("30-dr.yaml", dr_yaml));
        }
        files.push(("40-vs.yaml", vs_to(self.vs, self.vs_host, self.host)));
        files
    }

    /// A gateway started on [`Service::files`].
    fn world(&self, backends: Vec<EchoBackend>, dr_yaml: Option<String>) -> World {
        let files = self.files(&backends, dr_yaml);
        World::start(&[], backends, &files)
    }
}

// ------------------------------------------------------------------------------------------
// 1. ROUND_ROBIN: strict rotation (the book's simple-backend-dr-rr.yaml)

const SIMPLE_SE_HOST: &str = "simple-backend.svc.internal";

/// `simple.example.com` → `simple-backend.svc.internal` (echo v1, v2, v3).
const SIMPLE: Service = Service {
    se: "simple-backend",
    host: SIMPLE_SE_HOST,
    vs: "simple",
    vs_host: "simple.example.com",
};

/// [`SIMPLE`] with the book's DestinationRule `book_file`, its host adapted.
fn simple_files(backends: &[EchoBackend], book_file: &str) -> Vec<(&'static str, String)> {
    SIMPLE.files(backends, Some(book_dr(book_file, SIMPLE_SE_HOST, None)))
}

/// A gateway on [`simple_files`].
fn simple_world(book_file: &str) -> World {
    let backends = three("simple-backend");
    let files = simple_files(&backends, book_file);
    World::start(&[], backends, &files)
}

#[test]
fn round_robin_rotates_strictly_over_three_endpoints() {
    let w = simple_world("simple-backend-dr-rr.yaml");
    let before: Vec<u64> = w.backends.iter().map(|b| b.received()).collect();
    let seq = w.sequence("simple.example.com", &[], 300);
    let counts = tally(&seq);
    let after: Vec<u64> = w.backends.iter().map(|b| b.received()).collect();
    let mut problems = Vec::new();
    for v in ["v1", "v2", "v3"] {
        if counts.get(v) != Some(&100) {
            problems.push(format!(
                "expected exactly 100 of 300 answers from {v}, got {counts:?}"
            ));
            break;
        }
    }
    let seen: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
    if seen != [100, 100, 100] {
        problems.push(format!(
            "the backends themselves should each have received 100 requests, got v1/v2/v3 = {seen:?}"
        ));
    }
    if let Some(p) = rotation_problem(&seq, &["v1", "v2", "v3"]) {
        problems.push(p);
    }
    if !problems.is_empty() {
        w.gw.fail(problems.join("\n"));
    }
}

#[test]
fn book_load_balancer_rules_pass_check() {
    let backends = three("simple-backend");
    let mut failures = Vec::new();
    for file in [
        "simple-backend-dr-rr.yaml",
        "simple-backend-dr-random.yaml",
        "simple-backend-dr-least-conn.yaml",
    ] {
        let dir = ConfigDir::new();
        for (name, text) in simple_files(&backends, file) {
            dir.write(name, &text);
        }
        let out = check(dir.path(), &[]);
        let dr_path = dir.path().join("30-dr.yaml").display().to_string();
        let dr_diags: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with(&dr_path))
            .collect();
        if out.code != Some(0) || out.stdout.contains(" error: ") || !dr_diags.is_empty() {
            failures.push(format!(
                "{file} (host adapted): expected exit 0 and no diagnostic for the DR; got exit \
                 {:?}\n--- stdout:\n{}--- stderr:\n{}",
                out.code, out.stdout, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ------------------------------------------------------------------------------------------
// 2. RANDOM (the book's simple-backend-dr-random.yaml)

#[test]
fn random_spreads_over_all_endpoints_without_rotating() {
    let w = simple_world("simple-backend-dr-random.yaml");
    const N: usize = 600;
    let seq = w.sequence("simple.example.com", &[], N);
    let counts = tally(&seq);
    let mut problems = Vec::new();
    let (lo, hi) = (N * 20 / 100, N * 47 / 100);
    let total: usize = ["v1", "v2", "v3"]
        .iter()
        .map(|v| counts.get(*v).copied().unwrap_or(0))
        .sum();
    if total != N {
        problems.push(format!(
            "every request should be answered by v1-v3: {counts:?}"
        ));
    }
    for v in ["v1", "v2", "v3"] {
        let c = counts.get(v).copied().unwrap_or(0);
        if !(lo..=hi).contains(&c) {
            problems.push(format!(
                "{v} answered {c} of {N}, expected 20%-47% ({lo}-{hi}); all: {counts:?}"
            ));
        }
    }
    // A strict rotation over 600 random picks has probability (2/9)^598: RANDOM must not be
    // round robin in disguise.
    if rotation_problem(&seq, &["v1", "v2", "v3"]).is_none() {
        problems.push(format!(
            "RANDOM answered in a strict rotation: {}",
            seq[..12].join(" ")
        ));
    }
    if !problems.is_empty() {
        w.gw.fail(problems.join("\n"));
    }
}

// ------------------------------------------------------------------------------------------
// 3. LEAST_REQUEST avoids a slow endpoint (the book's simple-backend-dr-least-conn.yaml)

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with 200
/// `{"service":"slow","version":"slow"}` after `delay`. Stopped on drop.
struct SlowBackend {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SlowBackend {
    fn start(delay: Duration) -> SlowBackend {
        use bytes::Bytes;
        use http_body_util::Full;
        use hyper_util::rt::TokioIo;

        let listener = block_on(|| tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("bind the slow backend: {e}"));
        let addr = listener.local_addr().expect("slow backend local_addr");
        let served = Arc::new(AtomicU64::new(0));
        let task = {
            let served = served.clone();
            runtime().spawn(async move {
                // Connection tasks are owned here: aborting the server drops them too.
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let served = served.clone();
                    conns.spawn(async move {
                        let service = hyper::service::service_fn(
                            move |_req: hyper::Request<hyper::body::Incoming>| {
                                let served = served.clone();
                                async move {
                                    tokio::time::sleep(delay).await;
                                    served.fetch_add(1, Ordering::SeqCst);
                                    let resp = http::Response::builder()
                                        .status(200)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from_static(
                                            br#"{"service":"slow","version":"slow"}"#,
                                        )))
                                        .expect("build slow response");
                                    Ok::<_, Infallible>(resp)
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    while conns.try_join_next().is_some() {}
                }
            })
        };
        SlowBackend {
            addr,
            served,
            task: Some(task),
        }
    }
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            block_on(move || async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            });
        }
    }
}

const THREADS: usize = 8;
const PER_THREAD: usize = 25;
const SLOW: Duration = Duration::from_millis(300);

/// `THREADS` keep-alive clients sending `PER_THREAD` sequential requests each, all at once;
/// the answering versions, or the transport errors.
fn concurrent_load(w: &World, host: &str) -> Result<Vec<String>, Vec<String>> {
    let results: Vec<Result<Vec<String>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let client = HttpClient::new().with_timeout(Duration::from_secs(10));
                    let mut got = Vec::with_capacity(PER_THREAD);
                    for _ in 0..PER_THREAD {
                        let r = client.get(w.addr, host, "/", &[])?;
                        got.push(version_of(&r));
                    }
                    Ok(got)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect()
    });
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(results.into_iter().flat_map(Result::unwrap).collect())
}

#[test]
fn least_request_sends_fewer_requests_to_a_slow_endpoint_than_round_robin() {
    let slow = SlowBackend::start(SLOW);
    let backends = vec![
        EchoBackend::start("simple-backend", "v1"),
        EchoBackend::start("simple-backend", "v2"),
    ];
    let endpoints: Vec<Ep<'_>> = vec![
        (backends[0].addr, "v1", &[]),
        (backends[1].addr, "v2", &[]),
        (slow.addr, "slow", &[]),
    ];
    let hosts = [
        ("rr", "ROUND_ROBIN", Some("simple-backend-dr-rr.yaml")),
        (
            "lc",
            "LEAST_CONN",
            Some("simple-backend-dr-least-conn.yaml"),
        ),
        ("default", "unset (default LEAST_REQUEST)", None),
    ];
    let mut files = vec![("10-gateway.yaml".to_string(), EDGE_GATEWAY.to_string())];
    for (name, _, book) in &hosts {
        let host = format!("{name}.svc.internal");
        files.push((
            format!("20-se-{name}.yaml"),
            se(&format!("se-{name}"), &host, &endpoints),
        ));
        if let Some(book) = book {
            files.push((
                format!("30-dr-{name}.yaml"),
                book_dr(book, &host, Some(&format!("dr-{name}"))),
            ));
        }
        files.push((
            format!("40-vs-{name}.yaml"),
            vs_to(&format!("vs-{name}"), &format!("{name}.example.com"), &host),
        ));
    }
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let w = World::start(&[], backends, &files);

    let total = THREADS * PER_THREAD;
    let mut shares = Vec::new();
    let mut problems = Vec::new();
    for (name, policy, _) in &hosts {
        let served_before = slow.served.load(Ordering::SeqCst);
        let seq = match concurrent_load(&w, &format!("{name}.example.com")) {
            Ok(seq) => seq,
            Err(errors) => w.gw.fail(format!(
                "{policy}: transport errors under load:\n{}",
                errors.join("\n")
            )),
        };
        let counts = tally(&seq);
        let slow_n = counts.get("slow").copied().unwrap_or(0);
        let ok = ["v1", "v2", "slow"]
            .iter()
            .map(|v| counts.get(*v).copied().unwrap_or(0))
            .sum::<usize>();
        if ok != total {
            problems.push(format!(
                "{policy}: every request should be answered by v1, v2 or slow: {counts:?}"
            ));
        }
        let served = slow.served.load(Ordering::SeqCst) - served_before;
        if served != slow_n as u64 {
            problems.push(format!(
                "{policy}: the slow server answered {served} requests but clients saw {slow_n}"
            ));
        }
        let share = slow_n as f64 / total as f64;
        eprintln!("{policy}: {counts:?} (slow share {:.1}%)", share * 100.0);
        shares.push((*policy, share, counts));
    }
    let (_, rr, rr_counts) = &shares[0];
    // Round robin ignores load: one pick in three goes to the slow endpoint.
    if !(0.28..=0.39).contains(rr) {
        problems.push(format!(
            "ROUND_ROBIN should send a third of {total} requests to the slow endpoint, got {rr_counts:?}"
        ));
    }
    for (policy, share, counts) in &shares[1..] {
        if !(*share < *rr && *share < 0.20) {
            problems.push(format!(
                "{policy}: the slow endpoint's share should be below 20% and below ROUND_ROBIN's \
                 ({:.1}%), got {:.1}%: {counts:?}",
                rr * 100.0,
                share * 100.0
            ));
        }
    }
    if !problems.is_empty() {
        w.gw.fail(problems.join("\n"));
    }
}

// ------------------------------------------------------------------------------------------
// 4. consistentHash: the same key always reaches the same endpoint

const USERS: usize = 20;
const PER_USER: usize = 10;

/// A gateway for `<name>.example.com` → `<name>.svc.internal` (echo v1, v2, v3) with a
/// DestinationRule whose `trafficPolicy.loadBalancer` is `lb` (lines indented by six spaces).
fn hash_world(name: &str, lb: &str) -> World {
    let host = format!("{name}.svc.internal");
    let service = Service {
        se: name,
        host: &host,
        vs: name,
        vs_host: &format!("{name}.example.com"),
    };
    let lb = dr(
        name,
        &host,
        &format!("  trafficPolicy:\n    loadBalancer:\n{lb}"),
    );
    service.world(three("hash"), Some(lb))
}

/// A request: path and headers.
type Req = (String, Vec<(&'static str, String)>);

/// Sends `PER_USER` requests for each of `USERS` users, the `i`th one built by `req(user, i)`
/// (so forms of the same key can alternate); every user must always land on one endpoint, and
/// the users must spread over at least two endpoints.
fn check_sticky(w: &World, host: &str, req: impl Fn(&str, usize) -> Req) -> Vec<String> {
    let mut problems = Vec::new();
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    for u in 0..USERS {
        let user = format!("user-{u}");
        let mut seen = Vec::new();
        for i in 0..PER_USER {
            let (path, headers) = req(&user, i);
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            seen.push(w.who(host, &path, &headers));
        }
        let distinct: BTreeSet<&String> = seen.iter().collect();
        if distinct.len() != 1 || !["v1", "v2", "v3"].contains(&seen[0].as_str()) {
            problems.push(format!(
                "{user}: expected one endpoint for all {PER_USER} requests, got {seen:?} (last \
                 request {:?})",
                req(&user, PER_USER - 1)
            ));
        }
        placed.insert(user, seen[0].clone());
    }
    let used: BTreeSet<&String> = placed.values().collect();
    if used.len() < 2 {
        problems.push(format!(
            "{USERS} users should spread over at least 2 endpoints, got {placed:?}"
        ));
    }
    eprintln!("{host}: placement {placed:?}");
    problems
}

/// 30 requests without the hash key: all served (200), spread at random over at least two
/// endpoints.
fn check_keyless(w: &World, host: &str, path: &str, headers: &[(&str, &str)]) -> Vec<String> {
    let seq: Vec<String> = (0..30).map(|_| w.who(host, path, headers)).collect();
    let counts = tally(&seq);
    let mut problems = Vec::new();
    let served: usize = ["v1", "v2", "v3"]
        .iter()
        .map(|v| counts.get(*v).copied().unwrap_or(0))
        .sum();
    if served != seq.len() {
        problems.push(format!(
            "requests without the key ({path} {headers:?}) should all be served: {counts:?}"
        ));
    } else if counts.len() < 2 {
        problems.push(format!(
            "requests without the key ({path} {headers:?}) should be balanced at random, all \
             went to one endpoint: {counts:?}"
        ));
    }
    problems
}

/// A request without the hash key: path and headers.
type Keyless<'a> = (&'a str, &'a [(&'a str, &'a str)]);

/// On [`hash_world`] `name` with `lb`: [`check_sticky`] with `req` on `<name>.example.com`, then
/// [`check_keyless`] for each of `keyless`; fails the test with every problem found.
fn check_hash_policy(
    name: &str,
    lb: &str,
    req: impl Fn(&str, usize) -> Req,
    keyless: &[Keyless<'_>],
) {
    let w = hash_world(name, lb);
    let host = format!("{name}.example.com");
    let mut problems = check_sticky(&w, &host, req);
    for (path, headers) in keyless {
        problems.extend(check_keyless(&w, &host, path, headers));
    }
    if !problems.is_empty() {
        w.gw.fail(problems.join("\n"));
    }
}

#[test]
fn consistent_hash_on_a_header_keeps_each_user_on_one_endpoint() {
    check_hash_policy(
        "by-header",
        "      consistentHash:\n        httpHeaderName: x-user\n",
        |user, i| {
            // Other headers vary; only x-user counts.
            (
                format!("/items/{i}"),
                vec![("x-user", user.to_string()), ("x-request-n", i.to_string())],
            )
        },
        &[("/", &[]), ("/", &[("x-other", "user-1")])],
    );
}

#[test]
fn consistent_hash_on_a_query_parameter_keeps_each_user_on_one_endpoint() {
    check_hash_policy(
        "by-query",
        "      consistentHash:\n        httpQueryParameterName: user\n",
        |user, i| {
            // The parameter's position and the other parameters do not matter.
            let path = if i % 2 == 0 {
                format!("/items?user={user}")
            } else {
                format!("/items?page={i}&user={user}&sort=asc")
            };
            (path, vec![])
        },
        &[("/items", &[]), ("/items?page=1&username=x", &[])],
    );
}

#[test]
fn consistent_hash_on_a_cookie_keeps_each_user_on_one_endpoint() {
    check_hash_policy(
        "by-cookie",
        "      consistentHash:\n        httpCookie:\n          name: user\n",
        |user, i| {
            // The cookie's position among other cookies does not matter.
            let cookie = if i % 2 == 0 {
                format!("user={user}")
            } else {
                format!("theme=dark; user={user}; lang=en-{i}")
            };
            ("/".to_string(), vec![("cookie", cookie)])
        },
        &[
            ("/", &[]),
            ("/", &[("cookie", "theme=dark; username=user-1")]),
        ],
    );
}

#[test]
fn a_hash_cookie_with_a_ttl_is_generated_and_keeps_the_client_on_one_endpoint() {
    let w = hash_world(
        "gen-cookie",
        "      consistentHash:\n        httpCookie:\n          name: user\n          path: /\n          ttl: 60s\n",
    );
    let host = "gen-cookie.example.com";
    let mut problems = Vec::new();
    for attempt in 0..5 {
        // A fresh connection: Envoy's generated value hashes the client's address and port.
        let client = HttpClient::fresh_connections();
        let first = w.get_with(&client, host, "/", &[]);
        let set_cookie = first.header("set-cookie").unwrap_or_default().to_string();
        let value = set_cookie
            .strip_prefix("user=\"")
            .and_then(|rest| rest.split_once('"'))
            .map(|(v, attrs)| (v.to_string(), attrs.to_string()));
        let Some((value, attrs)) = value else {
            problems.push(format!(
                "request {attempt} without the cookie: Set-Cookie {set_cookie:?}"
            ));
            continue;
        };
        if value.len() != 16 || attrs != "; Max-Age=60; Path=/; HttpOnly" {
            problems.push(format!("Set-Cookie {set_cookie:?}: expected user=\"<16 hex>\"; Max-Age=60; Path=/; HttpOnly"));
        }
        let chosen = version_of(&first);
        for (i, cookie) in [format!("user=\"{value}\""), format!("a=b; user={value}")]
            .iter()
            .cycle()
            .take(8)
            .enumerate()
        {
            let r = w.get(host, "/", &[("cookie", cookie)]);
            if version_of(&r) != chosen || r.header("set-cookie").is_some() {
                problems.push(format!(
                    "cookie {cookie:?} (request {i}) went to {} (set-cookie {:?}), the generating request to {chosen}",
                    version_of(&r),
                    r.header("set-cookie")
                ));
            }
        }
    }
    if !problems.is_empty() {
        w.gw.fail(problems.join("\n"));
    }
}

#[test]
fn consistent_hash_on_the_source_ip_keeps_one_client_on_one_endpoint() {
    let w = hash_world(
        "by-source",
        "      consistentHash:\n        useSourceIp: true\n",
    );
    let host = "by-source.example.com";
    let fresh = HttpClient::fresh_connections();
    let mut seq = Vec::new();
    for i in 0..50 {
        // Half on new connections (new source ports); X-Forwarded-For and other headers vary:
        // only the peer address counts.
        let xff = format!("10.0.{}.{}", i % 7, i);
        let user = format!("user-{i}");
        let headers = [("x-forwarded-for", xff.as_str()), ("x-user", user.as_str())];
        let client = if i % 2 == 0 { &w.client } else { &fresh };
        seq.push(w.who_with(client, host, "/", &headers));
    }
    let counts = tally(&seq);
    if counts.len() != 1 || !["v1", "v2", "v3"].contains(&seq[0].as_str()) {
        w.gw.fail(format!(
            "all 50 requests from 127.0.0.1 should reach one endpoint, got {counts:?}"
        ));
    }
}

// ------------------------------------------------------------------------------------------
// 5. Composition (reference §3.2): top level, portLevelSettings, subset, subset portLevelSettings

/// For `comp.svc.internal` (v1 and v2 carry `pair: v12`):
/// - top level RANDOM, replaced on port 80 by ROUND_ROBIN ⇒ the plain route round-robins;
/// - subset `v12`: its own consistentHash on `x-user` wins over the port-level ROUND_ROBIN;
/// - subset `v12-rr`: no policy of its own ⇒ the port-level ROUND_ROBIN over v1, v2;
/// - subset `any-rr` (no labels: all endpoints): its own consistentHash, replaced by its own
///   portLevelSettings for port 80 (ROUND_ROBIN).
const COMP_DR: &str = "  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v12
    labels: {pair: v12}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
  - name: v12-rr
    labels: {pair: v12}
  - name: any-rr
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
      portLevelSettings:
      - port: {number: 80}
        loadBalancer: {simple: ROUND_ROBIN}
";

const COMP_VS: &str = "  - match: [{headers: {x-route: {exact: v12}}}]
    route: [{destination: {host: comp.svc.internal, subset: v12}}]
  - match: [{headers: {x-route: {exact: v12-rr}}}]
    route: [{destination: {host: comp.svc.internal, subset: v12-rr}}]
  - match: [{headers: {x-route: {exact: any-rr}}}]
    route: [{destination: {host: comp.svc.internal, subset: any-rr}}]
  - route: [{destination: {host: comp.svc.internal}}]
";

/// Top-level consistentHash; `portLevelSettings` for `port` sets only a connectionPool, which
/// replaces all four components wholesale: on that port the load balancer is the default.
fn hash_but_port_level(port: u16) -> String {
    format!(
        "  trafficPolicy:
    loadBalancer:
      consistentHash: {{httpHeaderName: x-user}}
    portLevelSettings:
    - port: {{number: {port}}}
      connectionPool:
        tcp: {{maxConnections: 100}}
"
    )
}

#[test]
fn subset_and_port_level_policies_compose_as_istio_does() {
    let backends = three("comp");
    let pair: &[(&str, &str)] = &[("pair", "v12")];
    let comp_eps: Vec<Ep<'_>> = vec![
        (backends[0].addr, "v1", pair),
        (backends[1].addr, "v2", pair),
        (backends[2].addr, "v3", &[]),
    ];
    let files = [
        ("10-gateway.yaml", EDGE_GATEWAY.to_string()),
        (
            "20-backends.yaml",
            [
                se("comp", "comp.svc.internal", &comp_eps),
                se_echo("defaults", "defaults.svc.internal", &backends),
                se_echo("control", "control.svc.internal", &backends),
            ]
            .join("---\n"),
        ),
        (
            "30-drs.yaml",
            [
                dr("comp", "comp.svc.internal", COMP_DR),
                dr(
                    "defaults",
                    "defaults.svc.internal",
                    &hash_but_port_level(80),
                ),
                dr(
                    "control",
                    "control.svc.internal",
                    &hash_but_port_level(8080),
                ),
            ]
            .join("---\n"),
        ),
        (
            "40-vs.yaml",
            [
                vs("comp", "comp.example.com", COMP_VS),
                vs_to("defaults", "defaults.example.com", "defaults.svc.internal"),
                vs_to("control", "control.example.com", "control.svc.internal"),
            ]
            .join("---\n"),
        ),
    ];
    let w = World::start(&[], backends, &files);
    let mut problems = Vec::new();
    let comp = "comp.example.com";

    // The plain route: port-level ROUND_ROBIN replaces the top-level RANDOM (x-user is ignored).
    let seq = w.sequence(comp, &[("x-user", "alice")], 30);
    if let Some(p) = rotation_problem(&seq, &["v1", "v2", "v3"]) {
        problems.push(format!(
            "plain route (top RANDOM, port 80 ROUND_ROBIN) should round-robin: {p}"
        ));
    }

    // Subset v12: its consistentHash beats the port-level ROUND_ROBIN; only v1 and v2.
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    for u in 0..USERS {
        let user = format!("user-{u}");
        let seq = w.sequence(comp, &[("x-route", "v12"), ("x-user", &user)], 5);
        let distinct: BTreeSet<&String> = seq.iter().collect();
        if distinct.len() != 1 || !["v1", "v2"].contains(&seq[0].as_str()) {
            problems.push(format!(
                "subset v12 (consistentHash x-user): {user} should stay on one of v1/v2, got {seq:?}"
            ));
        }
        placed.insert(user, seq[0].clone());
    }
    if placed.values().collect::<BTreeSet<_>>().len() < 2 {
        problems.push(format!(
            "subset v12: {USERS} users should use both v1 and v2, got {placed:?}"
        ));
    }

    // Subset v12-rr: no policy of its own ⇒ the port-level ROUND_ROBIN, over its two endpoints.
    let seq = w.sequence(comp, &[("x-route", "v12-rr"), ("x-user", "alice")], 20);
    if let Some(p) = rotation_problem(&seq, &["v1", "v2"]) {
        problems.push(format!(
            "subset v12-rr (inherits port-level ROUND_ROBIN) should alternate v1/v2: {p}"
        ));
    }

    // Subset any-rr: its own portLevelSettings (ROUND_ROBIN) replace its own consistentHash.
    let seq = w.sequence(comp, &[("x-route", "any-rr"), ("x-user", "alice")], 30);
    if let Some(p) = rotation_problem(&seq, &["v1", "v2", "v3"]) {
        problems.push(format!(
            "subset any-rr (consistentHash, port 80 ROUND_ROBIN) should round-robin: {p}"
        ));
    }

    // portLevelSettings[80] with only a connectionPool: the load balancer reverts to the default
    // (not sticky); the same rule with the settings on another port keeps the consistentHash.
    let seq = w.sequence("control.example.com", &[("x-user", "alice")], 30);
    let counts = tally(&seq);
    if counts.len() != 1 || !["v1", "v2", "v3"].contains(&seq[0].as_str()) {
        problems.push(format!(
            "control (consistentHash, portLevelSettings for port 8080 only): one user should stay \
             on one endpoint, got {counts:?}"
        ));
    }
    let seq = w.sequence("defaults.example.com", &[("x-user", "alice")], 30);
    let counts = tally(&seq);
    let served: usize = ["v1", "v2", "v3"]
        .iter()
        .map(|v| counts.get(*v).copied().unwrap_or(0))
        .sum();
    if served != seq.len() || counts.len() < 2 {
        problems.push(format!(
            "defaults (consistentHash replaced wholesale by portLevelSettings[80] with only a \
             connectionPool): the default balancer should spread one user over several \
             endpoints, got {counts:?}"
        ));
    }
    if !problems.is_empty() {
        w.gw.fail(problems.join("\n"));
    }
}

// ------------------------------------------------------------------------------------------
// 6. Validation: rejected with file, line and field; unapplied components only warn

const DR_FILE: &str = "30-dr.yaml";

/// DestinationRule `lb` for `lb.svc.internal` (lines 1-6), then the given lines of its `spec`.
macro_rules! lb_dr {
    ($spec:literal) => {
        concat!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: lb
spec:
  host: lb.svc.internal
",
            $spec
        )
    };
}

/// Line 9 is the load balancer that the variants below replace.
const DR_GOOD: &str = lb_dr!(
    "  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
"
);

/// Line 9: an unknown `simple` policy.
const DR_FASTEST: &str = lb_dr!(
    "  trafficPolicy:
    loadBalancer:
      simple: FASTEST
"
);

/// Line 9: `consistentHash` with two keys.
const DR_TWO_KEYS: &str = lb_dr!(
    "  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        useSourceIp: true
"
);

/// Line 8: `simple` and `consistentHash` together.
const DR_SIMPLE_AND_HASH: &str = lb_dr!(
    "  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      consistentHash:
        httpHeaderName: x-user
"
);

/// Line 14: an unknown `simple` policy deep in a subset's portLevelSettings.
const DR_SUBSET_PORT_FASTEST: &str = lb_dr!(
    "  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 80}
        loadBalancer:
          simple: FASTEST
"
);

/// Line 12: `h2UpgradePolicy` (not applied yet: accepted with a warning); the load balancer
/// changes to a consistentHash on `x-user`, so traffic shows that the rule was applied.
const DR_CONNECTION_POOL: &str = lb_dr!(
    "  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
    connectionPool:
      http: {h2UpgradePolicy: UPGRADE}
"
);

struct Case {
    name: &'static str,
    contents: &'static str,
    severity: &'static str,
    line: usize,
    marker: &'static str,
    field: &'static str,
    needle: &'static str,
}

const INVALID: &[Case] = &[
    Case {
        name: "simple: FASTEST",
        contents: DR_FASTEST,
        severity: "error",
        line: 9,
        marker: "simple: FASTEST",
        field: "spec.trafficPolicy.loadBalancer.simple",
        needle: "FASTEST",
    },
    Case {
        name: "consistentHash with two keys",
        contents: DR_TWO_KEYS,
        severity: "error",
        line: 9,
        marker: "consistentHash:",
        field: "spec.trafficPolicy.loadBalancer.consistentHash",
        needle: "",
    },
    Case {
        name: "simple and consistentHash",
        contents: DR_SIMPLE_AND_HASH,
        severity: "error",
        line: 8,
        marker: "loadBalancer:",
        field: "spec.trafficPolicy.loadBalancer",
        needle: "",
    },
    Case {
        name: "subset portLevelSettings simple: FASTEST",
        contents: DR_SUBSET_PORT_FASTEST,
        severity: "error",
        line: 14,
        marker: "simple: FASTEST",
        field: "spec.subsets[0].trafficPolicy.portLevelSettings[0].loadBalancer.simple",
        needle: "FASTEST",
    },
];

const CONNECTION_POOL: Case = Case {
    name: "connectionPool.http.h2UpgradePolicy",
    contents: DR_CONNECTION_POOL,
    severity: "warning",
    line: 12,
    marker: "h2UpgradePolicy: UPGRADE",
    field: "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy",
    needle: "not applied yet",
};

/// The diagnostics for `file` at the case's line and severity, naming its field of
/// DestinationRule default/lb and containing its needle.
fn matching<'a>(diags: &'a [String], file: &Path, case: &Case) -> Vec<&'a String> {
    let at = format!("{}:{} {}: ", file.display(), case.line, case.severity);
    let what = format!("DestinationRule default/lb: {}: ", case.field);
    diags
        .iter()
        .filter(|d| d.starts_with(&at) && d.contains(&what) && d.contains(case.needle))
        .collect()
}

/// `lb.example.com` → `lb.svc.internal` (echo v1, v2, v3); its DestinationRule is in [`DR_FILE`].
const LB: Service = Service {
    se: "lb",
    host: "lb.svc.internal",
    vs: "lb",
    vs_host: "lb.example.com",
};

/// DR_GOOD is in force: 12 requests with one `x-user` rotate over v1, v2, v3.
fn round_robin_in_force(w: &World) -> Result<(), String> {
    let seq = w.sequence("lb.example.com", &[("x-user", "alice")], 12);
    match rotation_problem(&seq, &["v1", "v2", "v3"]) {
        None => Ok(()),
        Some(p) => Err(format!("ROUND_ROBIN should be in force: {p}")),
    }
}

/// DR_CONNECTION_POOL is in force: 12 requests with one `x-user` stay on one endpoint.
fn hash_in_force(w: &World) -> Result<(), String> {
    let seq = w.sequence("lb.example.com", &[("x-user", "alice")], 12);
    let counts = tally(&seq);
    if counts.len() == 1 && ["v1", "v2", "v3"].contains(&seq[0].as_str()) {
        Ok(())
    } else {
        Err(format!(
            "consistentHash on x-user should be in force (one endpoint), got {counts:?}"
        ))
    }
}

#[test]
fn invalid_load_balancers_are_rejected_and_connection_pool_only_warns() {
    for case in INVALID.iter().chain([&CONNECTION_POOL]) {
        assert_marker_line(case.name, case.contents, case.line, case.marker);
    }
    let backends = three("lb");
    let mut failures = Vec::new();

    // `tollgate check`.
    for case in INVALID.iter().chain([&CONNECTION_POOL]) {
        let dir = ConfigDir::new();
        for (name, text) in LB.files(&backends, Some(case.contents.to_string())) {
            dir.write(name, &text);
        }
        let out = check(dir.path(), &[]);
        let lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        let want_code = if case.severity == "error" { 1 } else { 0 };
        let errors = out.stdout.contains(" error: ");
        if out.code != Some(want_code)
            || matching(&lines, &dir.path().join(DR_FILE), case).is_empty()
            || (case.severity != "error" && errors)
        {
            failures.push(format!(
                "[check, {}] expected exit {want_code} and `{}:{} {}: DestinationRule default/lb: \
                 {}: ...{}...`{}; got exit {:?}\n--- stdout:\n{}--- stderr:\n{}",
                case.name,
                dir.path().join(DR_FILE).display(),
                case.line,
                case.severity,
                case.field,
                case.needle,
                if case.severity == "error" {
                    ""
                } else {
                    " and no error"
                },
                out.code,
                out.stdout,
                out.stderr
            ));
        }
    }

    // A running gateway: reports the broken rule, keeps the last good one.
    let w = LB.world(backends, Some(DR_GOOD.to_string()));
    let under_test = UnderTest {
        file: DR_FILE,
        good: DR_GOOD,
        what: "rule",
        in_force: round_robin_in_force,
    };
    w.assert_in_force(&under_test);
    let path = w.config.path().join(DR_FILE);
    for case in INVALID {
        failures.extend(w.check_rejected(
            &under_test,
            case.name,
            case.contents,
            |diags| !matching(diags, &path, case).is_empty(),
            &format!(
                "`{}:{} error: DestinationRule default/lb: {}: ...`",
                path.display(),
                case.line,
                case.field
            ),
        ));
    }

    // h2UpgradePolicy (not applied yet): a warning, and the rule (its new load balancer) is applied.
    let case = &CONNECTION_POOL;
    w.rewrite(DR_FILE, case.contents);
    let dump = w.dump_when(|diags| !matching(diags, &path, case).is_empty());
    let diags = diagnostics(&dump);
    if matching(&diags, &path, case).is_empty() {
        failures.push(format!(
            "[gateway, h2UpgradePolicy] no `{}:{} warning: DestinationRule default/lb: {}: \
             ...not applied yet...`; diagnostics:\n  {}",
            path.display(),
            case.line,
            case.field,
            diags.join("\n  ")
        ));
    }
    let ok = file_ok(&dump, &path);
    if ok != Some(Value::Bool(true)) {
        failures.push(format!(
            "[gateway, h2UpgradePolicy] files[] should show {} with ok: true, got {ok:?}",
            path.display()
        ));
    }
    let errors: Vec<&String> = diags.iter().filter(|d| d.contains(" error: ")).collect();
    if !errors.is_empty() {
        failures.push(format!(
            "[gateway, h2UpgradePolicy] unexpected errors: {errors:#?}"
        ));
    }
    if let Err(e) = hash_in_force(&w) {
        failures.push(format!(
            "[gateway, h2UpgradePolicy] the rule should be applied: {e}"
        ));
    }
    if !failures.is_empty() {
        w.gw.fail(failures.join("\n\n"));
    }
}

// ------------------------------------------------------------------------------------------
// 7. Selection (reference §3.1): the most specific host's rules alone; the first policy wins

/// `exact.svc.internal` has an exact rule without a trafficPolicy, `other.svc.internal` none;
/// the wildcard rule for `*.svc.internal` says ROUND_ROBIN. `merged.svc.internal` has three
/// exact rules in config order: subsets only, ROUND_ROBIN, consistentHash.
fn selection_drs() -> String {
    let round_robin = "  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n";
    let subset_v1 = "  subsets:\n  - name: v1\n    labels: {version: v1}\n";
    let hash =
        "  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x-user}\n";
    [
        dr("wildcard", "\"*.svc.internal\"", round_robin),
        dr("exact", "exact.svc.internal", subset_v1),
        dr("merged-a", "merged.svc.internal", subset_v1),
        dr("merged-b", "merged.svc.internal", round_robin),
        dr("merged-c", "merged.svc.internal", hash),
    ]
    .join("---\n")
}

#[test]
fn the_most_specific_rules_decide_and_the_first_policy_wins() {
    let backends = three("sel");
    let names = ["exact", "other", "merged"];
    let files = [
        ("10-gateway.yaml", EDGE_GATEWAY.to_string()),
        (
            "20-backends.yaml",
            names
                .iter()
                .map(|n| se_echo(n, &format!("{n}.svc.internal"), &backends))
                .collect::<Vec<_>>()
                .join("---\n"),
        ),
        ("30-drs.yaml", selection_drs()),
        (
            "40-vs.yaml",
            names
                .iter()
                .map(|n| vs_to(n, &format!("{n}.example.com"), &format!("{n}.svc.internal")))
                .collect::<Vec<_>>()
                .join("---\n"),
        ),
    ];
    let w = World::start(&[], backends, &files);
    let all = ["v1", "v2", "v3"];
    let mut problems = Vec::new();

    // No exact rule: the wildcard rule applies.
    let seq = w.sequence("other.example.com", &[("x-user", "alice")], 30);
    if let Some(p) = rotation_problem(&seq, &all) {
        problems.push(format!(
            "other.svc.internal (only the wildcard rule, ROUND_ROBIN) should round-robin: {p}"
        ));
    }
    // An exact rule hides the wildcard one entirely: no trafficPolicy ⇒ the default balancer
    // (LEAST_REQUEST; with sequential requests a random choice, not a rotation).
    let seq = w.sequence("exact.example.com", &[("x-user", "alice")], 30);
    if rotation_problem(&seq, &all).is_none() {
        problems.push(format!(
            "exact.svc.internal has an exact rule without trafficPolicy, so the wildcard rule's \
             ROUND_ROBIN must not apply; got a strict rotation: {}",
            seq[..9].join(" ")
        ));
    }
    // Several exact rules: the first one with a trafficPolicy (merged-b, ROUND_ROBIN) wins.
    let seq = w.sequence("merged.example.com", &[("x-user", "alice")], 30);
    if let Some(p) = rotation_problem(&seq, &all) {
        problems.push(format!(
            "merged.svc.internal: the first rule with a trafficPolicy (ROUND_ROBIN, not the later \
             consistentHash) should apply: {p}"
        ));
    }
    if !problems.is_empty() {
        w.gw.fail(problems.join("\n"));
    }
}

// ------------------------------------------------------------------------------------------
// Circuit breaking (connectionPool): the book's ch6 conn-limit exercise

/// 20 requests to `/delay/<ms>` at once; (status, x-envoy-overloaded, body) of each.
fn burst(w: &World, host: &str, path: &str) -> Vec<(u16, Option<String>, String)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    let client =
                        HttpClient::fresh_connections().with_timeout(Duration::from_secs(15));
                    match client.get(w.addr, host, path, &[]) {
                        Ok(r) => (
                            r.status,
                            r.header("x-envoy-overloaded").map(str::to_string),
                            r.body.clone(),
                        ),
                        Err(e) => (0, None, e),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("burst thread panicked"))
            .collect()
    })
}

#[test]
fn connection_pool_limits_overflow_with_503_uo() {
    const LIMITED: &str = "  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}\n";
    let w = SIMPLE.world(
        three("simple-backend"),
        Some(dr("limited", SIMPLE_SE_HOST, LIMITED)),
    );
    let results = burst(&w, "simple.example.com", "/delay/300");
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    let overflowed: Vec<_> = results.iter().filter(|(s, _, _)| *s == 503).collect();
    let odd: Vec<_> = results
        .iter()
        .filter(|(s, _, _)| *s != 200 && *s != 503)
        .collect();
    assert!(odd.is_empty(), "neither 200 nor 503: {odd:?}");
    assert!(
        ok >= 1,
        "the request holding the connection succeeds: {results:?}"
    );
    assert!(
        overflowed.len() >= 10,
        "one connection and one pending request cannot take 20 at once: {ok} ok"
    );
    for (_, overloaded, body) in overflowed {
        assert_eq!(overloaded.as_deref(), Some("true"));
        assert_eq!(
            body,
            "upstream connect error or disconnect/reset before headers. reset reason: overflow"
        );
    }
    // Without the limits, the same burst all succeeds.
    let w = SIMPLE.world(three("simple-backend"), None);
    let results = burst(&w, "simple.example.com", "/delay/300");
    assert!(
        results.iter().all(|(s, _, _)| *s == 200),
        "unlimited: {results:?}"
    );
}
