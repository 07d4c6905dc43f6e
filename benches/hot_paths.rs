//! Per-connection and per-request costs outside routing: the ClientHello peek, SNI server
//! selection among 10,000 hosts, request header hygiene with route header operations, Istio
//! metrics recording, access log line formatting, and the HTTP/1 framing gate's scan.
//!
//! Inputs are built once, outside the timed closures, from real captures and from configuration
//! compiled by the real compiler; each setup checks that it measures what it says it does.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method, Version};
use tollgate::config::ConfigStore;
use tollgate::http::headers::{self, Downstream as EdgeDownstream};
use tollgate::metrics::ClusterStats;
use tollgate::route::{Action, RequestView, Route, Target};
use tollgate::snapshot::tls::{TlsAction, TlsListener};
use tollgate::snapshot::{compile, ListenerKind, Options, Snapshot};
use tollgate::telemetry::access_log::{
    Downstream, Entry, Format, HttpEntry, LineFormatter, RequestId, RequestStrings, Upstream,
};
use tollgate::telemetry::istio::{HttpKey, HttpSample, Protocol};
use tollgate::telemetry::{identity, Flags};
use tollgate::tls::client_hello::{peek, Peek};
use tollgate::tls::terminate::select;

#[path = "../src/allocator.rs"]
mod allocator;

/// The same allocator as the binary, so the numbers match what it does.
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

/// curl 7.88.1 / OpenSSL 3.0: SNI `a.example.com`, ALPN h2 + http/1.1, 12 extensions, 517 bytes.
const CURL_HELLO: &[u8] = include_bytes!("../tests/fixtures/client_hello/curl.bin");
/// rustls 0.23 / aws-lc-rs: an X25519MLKEM768 key share (1,258 bytes), SNI, ALPN h2 + http/1.1,
/// 11 extensions, 1,515 bytes.
const PQ_HELLO: &[u8] = include_bytes!("../tests/fixtures/client_hello/rustls-pq.bin");

fn snapshot_of(yaml: &str) -> Snapshot {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), yaml).expect("write bench config");
    let snapshot = compile(
        ConfigStore::new(dir.path(), "default").load(),
        &Options::default(),
        &Snapshot::empty(),
        1,
    );
    let errors: Vec<String> = snapshot
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "bench config has errors: {errors:?}");
    snapshot
}

// ---- 1. ClientHello peek ----

/// The same hello with its handshake message split over two records at `at` payload bytes, as
/// a client (or a middlebox) may send it: the peeker gathers the pieces into one copy.
fn split_into_two_records(hello: &[u8], at: usize) -> Vec<u8> {
    let (header, payload) = hello.split_at(5);
    let (first, second) = payload.split_at(at);
    let mut out = Vec::with_capacity(hello.len() + 5);
    for part in [first, second] {
        out.extend_from_slice(&header[..3]);
        out.extend_from_slice(&u16::try_from(part.len()).expect("u16").to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn client_hello(c: &mut Criterion) {
    let split = split_into_two_records(PQ_HELLO, 1000);
    let cases: [(&str, &[u8], &str); 3] = [
        ("curl_typical_517_bytes", CURL_HELLO, "a.example.com"),
        (
            "rustls_pq_large_1515_bytes",
            PQ_HELLO,
            "pq-checkout.eu-west-1.shop.c.example.com",
        ),
        (
            "rustls_pq_split_over_two_records",
            &split,
            "pq-checkout.eu-west-1.shop.c.example.com",
        ),
    ];
    let mut group = c.benchmark_group("client_hello_peek");
    for (name, bytes, sni) in cases {
        match peek(bytes) {
            Peek::Hello(info) => {
                assert_eq!(info.sni.as_deref(), Some(sni), "{name}");
                assert_eq!(info.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()], "{name}");
            }
            other => panic!("{name}: expected a hello, got {other:?}"),
        }
        // The SNI string and ALPN list are allocated and freed inside the loop, as per connection.
        group.bench_function(name, |b| b.iter(|| black_box(peek(black_box(bytes)))));
    }
    group.finish();
}

// ---- 2. SNI server selection among 10,000 hosts ----

/// A PASSTHROUGH server for `*.example.com` on port 443 and 10,000 VirtualServices, each with a
/// `tls` route for its own SNI host (`host-<i>.example.com`, every tenth `*.w<i>.example.com`):
/// 10,000 SNI entries, each its own server (chain), as the compiler builds them.
fn sni_config(count: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: tls-passthrough, protocol: TLS}\n    tls: {mode: PASSTHROUGH}\n    hosts: [\"*.example.com\"]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: backend}\nspec:\n  hosts: [backend.internal]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n",
    );
    for i in 0..count {
        let host = if i % 10 == 9 {
            format!("\"*.w{i}.example.com\"")
        } else {
            format!("host-{i}.example.com")
        };
        let _ = write!(
            yaml,
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{i}}}\nspec:\n  hosts: [{host}]\n  gateways: [edge]\n  tls:\n  - match: [{{port: 443, sniHosts: [{host}]}}]\n    route: [{{destination: {{host: backend.internal, port: {{number: 443}}}}}}]\n"
        );
    }
    yaml
}

fn sni_lookup(c: &mut Criterion) {
    let snapshot = snapshot_of(&sni_config(10_000));
    let Some(ListenerKind::Tls(listener)) = snapshot.listeners.values().next().map(|l| &l.kind)
    else {
        panic!("bench config has no TLS listener")
    };
    assert_eq!(
        listener.servers.len(),
        10_001,
        "one chain per host, and the server"
    );
    let route_of = |listener: &TlsListener, sni: &str| {
        let &i = select(listener, Some(sni))?;
        match &listener.servers[i].action {
            TlsAction::Passthrough(route) => Some(route.name.to_string()),
            _ => None,
        }
    };
    assert_eq!(
        route_of(listener, "host-4242.example.com").as_deref(),
        Some("default/vs-4242.tls[0]")
    );
    assert_eq!(
        route_of(listener, "a.b.w4249.example.com").as_deref(),
        Some("default/vs-4249.tls[0]")
    );
    assert!(select(listener, Some("nothing.example.org")).is_none());
    let mut group = c.benchmark_group("sni_lookup_10k_hosts");
    for (name, sni) in [
        ("exact", "host-4242.example.com"),
        ("wildcard", "a.b.w4249.example.com"),
        ("miss", "nothing.example.org"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(select(black_box(listener), black_box(Some(sni)))))
        });
    }
    group.finish();
}

// ---- 3. Request headers: edge hygiene and route header operations ----

/// Port 80 for `*`, one VirtualService whose named rule sets, adds and removes request headers
/// and forwards to a STATIC ServiceEntry.
const HTTP_CONFIG: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: webapp}\nspec:\n  hosts: [webapp.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: webapp}\nspec:\n  hosts: [webapp.example.com]\n  gateways: [edge]\n  http:\n  - name: api\n    match: [{uri: {prefix: /api}}]\n    headers:\n      request:\n        set: {x-gateway: tollgate}\n        add: {x-tenant: acme}\n        remove: [x-internal-debug]\n    route: [{destination: {host: webapp.internal, port: {number: 80}}}]\n";

/// The compiled route for `GET webapp.example.com/api/items`.
fn api_route(snapshot: &Snapshot) -> Arc<Route> {
    let Some(ListenerKind::Http(table)) = snapshot.listeners.values().next().map(|l| &l.kind)
    else {
        panic!("bench config has no HTTP listener")
    };
    let headers = HeaderMap::new();
    let view = RequestView {
        path: "/api/items",
        query: None,
        method: &Method::GET,
        scheme: "http",
        authority: "webapp.example.com",
        headers: &headers,
    };
    table
        .find_vhost("webapp.example.com")
        .and_then(|vhost| vhost.find_route(&view))
        .expect("the api route")
        .clone()
}

/// A browser's request as it reaches the gateway behind a load balancer: 12 headers.
fn typical_request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "webapp.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://webapp.example.com/dashboard"),
        ("cookie", "session=7f3c9a1e2b4d; theme=dark"),
        (
            "authorization",
            "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
        ),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-internal-debug", "1"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
    ] {
        h.append(name, HeaderValue::from_static(value));
    }
    assert_eq!(h.len(), 12);
    h
}

fn request_headers(c: &mut Criterion) {
    let snapshot = snapshot_of(HTTP_CONFIG);
    let route = api_route(&snapshot);
    let ops = &route.policy.request_headers;
    assert_eq!(
        (ops.set.len(), ops.add.len(), ops.remove.len()),
        (1, 1, 1),
        "the route's header operations"
    );
    let request = typical_request_headers();
    let peer = headers::peer_header("10.0.0.9".parse().expect("address"));
    let down = EdgeDownstream {
        peer: &peer,
        client_cert: None,
        scheme: "http",
        trusted_hops: 0,
    };
    // What the proxy does to every forwarded request's headers, in its order: on arrival
    // (x-forwarded-for, x-request-id), the route's operations, then towards the upstream
    // (hop-by-hop headers out, x-forwarded-proto and the gateway's markers in).
    let edge = |mut h: HeaderMap| {
        headers::on_arrival(&mut h, &peer, 0);
        ops.apply(&mut h);
        let upgrade = headers::is_upgrade(&h);
        headers::strip_hop_by_hop(&mut h, upgrade);
        headers::prepare_request(&mut h, &down);
        h
    };
    let out = edge(request.clone());
    assert_eq!(out["x-forwarded-for"], "203.0.113.7,10.0.0.9");
    assert_eq!(out["x-gateway"], "tollgate");
    assert_eq!(out["x-tenant"], "acme");
    assert_eq!(out["x-request-id"].len(), 36);
    for gone in ["x-internal-debug", "connection", "keep-alive"] {
        assert!(!out.contains_key(gone), "{gone} was not removed");
    }
    let mut group = c.benchmark_group("request_headers_12");
    // The copy of the request headers is made in setup and the result dropped outside the timing.
    group.bench_function("edge_hygiene_and_route_ops", |b| {
        b.iter_batched(
            || request.clone(),
            |h| edge(black_box(h)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("route_ops_only", |b| {
        b.iter_batched(
            || request.clone(),
            |mut h| {
                ops.apply(black_box(&mut h));
                h
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

// ---- 4. Istio metrics recording ----

fn metrics(c: &mut Criterion) {
    identity::set(identity::Identity::new(
        "istio-ingressgateway",
        "istio-system",
        "Kubernetes",
        &[("app".to_string(), "istio-ingressgateway".to_string())].into(),
    ));
    let prometheus = tollgate::metrics::install();
    let service = "webapp.istioinaction.svc.cluster.local";
    let stats = ClusterStats::new(&format!("outbound|80||{service}"), service);
    let key = HttpKey {
        protocol: Protocol::Http,
        code: 200,
        grpc_status: None,
        flags: Flags::NONE,
    };
    let sample = HttpSample {
        duration_ms: 3.2,
        request_bytes: 512,
        response_bytes: 4_096,
    };
    // What a finished request records (`Exchange::finish`).
    let http = || {
        stats.istio.record_http(black_box(key), black_box(sample));
        tollgate::metrics::record_http_response(black_box(200));
    };
    // What a finished TCP stream records: opened, its byte counts (one flush), closed, duration.
    let tcp = || {
        let series = stats.istio.tcp(black_box(Flags::NONE));
        series.opened.increment(1);
        series.received.increment(black_box(1_024));
        series.sent.increment(black_box(65_536));
        series.closed.increment(1);
        stats.tcp_duration.record(black_box(0.25));
    };
    // First use registers the series; the benches measure the cached handles after that.
    http();
    tcp();
    let text = prometheus.render();
    for series in [
        "istio_requests_total{",
        "istio_request_duration_milliseconds_bucket{",
        "istio_tcp_connections_closed_total{",
        "istio_tcp_sent_bytes_total{",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(series) && l.contains(service)),
            "{series} for {service} not recorded"
        );
    }
    let mut group = c.benchmark_group("istio_metrics");
    // Histogram samples wait in buffers until the recorder's upkeep drains them (every 5 s in the
    // gateway); here after each timed batch, outside the timing, so memory stays bounded.
    for (name, record) in [
        ("http_request", &http as &dyn Fn()),
        ("tcp_stream", &tcp as &dyn Fn()),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    record();
                }
                let elapsed = start.elapsed();
                prometheus.run_upkeep();
                elapsed
            })
        });
    }
    group.finish();
}

// ---- 5. Access log line formatting ----

fn access_log(c: &mut Criterion) {
    let snapshot = snapshot_of(HTTP_CONFIG);
    let route = api_route(&snapshot);
    let Action::Forward(clusters) = &route.action else {
        panic!("the api route forwards")
    };
    let Some(Target::Cluster(cluster)) = clusters.pick(0) else {
        panic!("the api route has a cluster")
    };
    let entry = Entry::Http(Box::new(HttpEntry {
        start: SystemTime::now(),
        method: Method::GET,
        request: RequestStrings::new(
            b"/api/items?page=2&sort=name",
            b"203.0.113.7,10.0.0.9",
            b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            b"webapp.example.com",
        ),
        protocol: Version::HTTP_11,
        code: 200,
        flags: Flags::NONE,
        details: Cow::Borrowed("via_upstream"),
        upstream_failure: None,
        bytes_received: 0,
        bytes_sent: 4_096,
        duration_ms: 3,
        upstream_service_time: Some(2),
        request_id: RequestId::of(Some(&HeaderValue::from_static(
            "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
        ))),
        upstream: Upstream {
            host: Some("127.0.0.1:9081".parse().expect("address")),
            cluster: Some(cluster.clone()),
            local: Some("127.0.0.1:41234".parse().expect("address")),
        },
        downstream: Downstream {
            local: Some("10.0.0.5:8080".parse().expect("address")),
            remote: "10.0.0.9:51514".parse().expect("address"),
            sni: None,
        },
        route: Some(route.clone()),
    }));
    let mut group = c.benchmark_group("access_log_http_line");
    for (name, format) in [("text", Format::Text), ("json", Format::Json)] {
        let mut formatter = LineFormatter::new(format);
        // The gateway reuses each thread's line buffer; so does the bench.
        let mut buf = Vec::with_capacity(1024);
        formatter.write(&mut buf, &entry);
        let line = String::from_utf8(buf.clone()).expect("utf-8 line");
        for field in [
            "/api/items?page=2&sort=name",
            "outbound|80||webapp.internal",
            "api",
        ] {
            assert!(line.contains(field), "{name} line lacks {field}: {line}");
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                formatter.write(&mut buf, black_box(&entry));
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

// ---- 6. HTTP/1 framing gate ----

/// Serves the same bytes on every read, as a keep-alive connection sending one request per read.
struct Repeat(Vec<u8>);

impl tokio::io::AsyncRead for Repeat {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        buf.put_slice(&self.0);
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Repeat {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// One hyper-sized read (8 KiB buffer) from `io`; returns the byte count.
fn read_once<R: tokio::io::AsyncRead + Unpin>(io: &mut R, space: &mut [u8]) -> usize {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut buf = tokio::io::ReadBuf::new(space);
    match std::pin::Pin::new(io).poll_read(&mut cx, &mut buf) {
        std::task::Poll::Ready(Ok(())) => buf.filled().len(),
        other => panic!("bench reader: {other:?}"),
    }
}

fn h1_gate(c: &mut Criterion) {
    use tollgate::http::h1_gate::{H1Gate, Scanner, State};
    let mut get = b"GET /api/v1/items?page=2 HTTP/1.1\r\n".to_vec();
    for (name, value) in &typical_request_headers() {
        get.extend_from_slice(name.as_str().as_bytes());
        get.extend_from_slice(b": ");
        get.extend_from_slice(value.as_bytes());
        get.extend_from_slice(b"\r\n");
    }
    get.extend_from_slice(b"\r\n");
    let mut post = b"POST /api/v1/items HTTP/1.1\r\nhost: webapp.example.com\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        post.extend_from_slice(b"100\r\n");
        post.extend_from_slice(&[b'x'; 256]);
        post.extend_from_slice(b"\r\n");
    }
    post.extend_from_slice(b"0\r\n\r\n");

    let mut scanner = Scanner::new();
    for wire in [&get, &post] {
        assert_eq!(scanner.scan(wire), None, "a plain request is not cut");
        assert_eq!(scanner.state(), State::RequestLine, "the gate follows it");
    }
    let mut group = c.benchmark_group("h1_gate");
    // A keep-alive connection's next request: the scanner is back at a request line each time.
    group.bench_function("scan_get_12_headers", |b| {
        b.iter(|| black_box(scanner.scan(black_box(&get))))
    });
    group.bench_function("scan_post_chunked_1k", |b| {
        b.iter(|| black_box(scanner.scan(black_box(&post))))
    });
    assert_eq!(scanner.state(), State::RequestLine);
    // The same through the AsyncRead wrapper, against the bare reader: the gate's whole cost.
    let mut space = vec![0u8; 8192];
    let mut plain = Repeat(get.clone());
    let mut gated = H1Gate::new(Repeat(get.clone()));
    assert_eq!(read_once(&mut gated, &mut space), get.len());
    group.bench_function("read_get_12_headers_plain", |b| {
        b.iter(|| black_box(read_once(&mut plain, &mut space)))
    });
    group.bench_function("read_get_12_headers_gated", |b| {
        b.iter(|| black_box(read_once(&mut gated, &mut space)))
    });
    group.finish();
}

criterion_group!(
    benches,
    client_hello,
    sni_lookup,
    request_headers,
    metrics,
    access_log,
    h1_gate
);
criterion_main!(benches);
