//! End to end on loopback: real HTTP backends behind the built gateway, driven by curl and an
//! in-process client, for host routing, every match type, weights, subsets and failures.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::*;

/// Backends named after the route that should reach them.
const MATCH_BACKENDS: &[&str] = &[
    "exact",
    "prefix",
    "regex",
    "method",
    "authority",
    "header-exact",
    "header-prefix",
    "header-regex",
    "query",
    "without",
    "ignorecase",
    "port",
    "order-first",
    "order-second",
    "fallback",
    "web",
    "wild",
    "deep",
    "star",
];

struct World {
    gw: Gateway,
    port80: SocketAddr,
    port81: SocketAddr,
    client: HttpClient,
    _backends: Vec<EchoBackend>,
    _config: ConfigDir,
}

fn se(name: &str, backend: &EchoBackend, labels: &[(&str, &str)]) -> String {
    service_entry(
        name,
        &format!("{name}.svc.internal"),
        80,
        &[(backend.addr, labels)],
    )
}

fn route(host: &str, dest: &str) -> String {
    format!("  - route:\n    - destination: {{host: {dest}.svc.internal}}\n    # {host}\n")
}

fn vs(name: &str, hosts: &[&str], http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{}]\n  gateways: [edge]\n  http:\n{http}",
        hosts.iter().map(|h| yaml_str(h)).collect::<Vec<_>>().join(", ")
    )
}

const MATCH_RULES: &str = r#"  - match: [{uri: {exact: /exact}}]
    route: [{destination: {host: exact.svc.internal}}]
  - match: [{uri: {prefix: /prefix}}]
    route: [{destination: {host: prefix.svc.internal}}]
  - match: [{uri: {regex: "/re/[0-9]+"}}]
    route: [{destination: {host: regex.svc.internal}}]
  - match: [{method: {exact: DELETE}}]
    route: [{destination: {host: method.svc.internal}}]
  - match: [{uri: {prefix: /auth}, authority: {exact: match.example.com}}]
    route: [{destination: {host: authority.svc.internal}}]
  - match: [{headers: {x-exact: {exact: "yes"}}}]
    route: [{destination: {host: header-exact.svc.internal}}]
  - match: [{headers: {x-prefix: {prefix: pre}}}]
    route: [{destination: {host: header-prefix.svc.internal}}]
  - match: [{headers: {x-regex: {regex: "v[0-9]"}}}]
    route: [{destination: {host: header-regex.svc.internal}}]
  - match: [{queryParams: {q: {exact: "1"}}}]
    route: [{destination: {host: query.svc.internal}}]
  - match: [{uri: {prefix: /without}, withoutHeaders: {x-block: {}}}]
    route: [{destination: {host: without.svc.internal}}]
  - match: [{uri: {prefix: /CaSe}, ignoreUriCase: true}]
    route: [{destination: {host: ignorecase.svc.internal}}]
  - match: [{uri: {prefix: /port}, port: 81}]
    route: [{destination: {host: port.svc.internal}}]
  - match: [{uri: {prefix: /order}}]
    route: [{destination: {host: order-first.svc.internal}}]
  - match: [{uri: {exact: /order/x}}]
    route: [{destination: {host: order-second.svc.internal}}]
  - route: [{destination: {host: fallback.svc.internal}}]
"#;

const GATEWAY: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
  - port: {number: 81, name: http-alt, protocol: HTTP}
    hosts: ["*"]
"#;

const CATALOG: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog}
spec:
  host: catalog.svc.internal
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

fn world() -> World {
    let config = ConfigDir::new();
    let mut backends: Vec<EchoBackend> = MATCH_BACKENDS
        .iter()
        .map(|n| EchoBackend::start(n, "v1"))
        .collect();
    let mut entries: Vec<String> = backends.iter().map(|b| se(&b.service, b, &[])).collect();
    let (cat1, cat2) = (
        EchoBackend::start("catalog", "v1"),
        EchoBackend::start("catalog", "v2"),
    );
    entries.push(service_entry(
        "catalog",
        "catalog.svc.internal",
        80,
        &[
            (cat1.addr, &[("version", "v1")]),
            (cat2.addr, &[("version", "v2")]),
        ],
    ));
    entries.push(service_entry(
        "dead",
        "dead.svc.internal",
        80,
        &[(format!("127.0.0.1:{}", dead_port()).parse().unwrap(), &[])],
    ));
    entries.push(service_entry("empty", "empty.svc.internal", 80, &[]));
    let h2 = EchoBackend::start("h2", "v1");
    entries.push(format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: h2}}\nspec:\n  hosts: [h2.svc.internal]\n  ports: [{{number: 80, name: grpc, protocol: GRPC}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {}}}}}]\n",
        h2.port()
    ));
    let localhost_port = backends
        .iter()
        .find(|b| b.service == "web")
        .map(|b| b.port())
        .unwrap();
    let virtual_services = [
        vs("web", &["web.example.com"], &route("web", "web")),
        vs("wild", &["*.example.com"], &route("wild", "wild")),
        vs("deep", &["*.deep.example.com"], &route("deep", "deep")),
        vs("star", &["*"], &route("star", "star")),
        vs("match", &["match.example.com"], MATCH_RULES),
        vs("split", &["split.example.com"], "  - route:\n    - {destination: {host: catalog.svc.internal, subset: v1}, weight: 20}\n    - {destination: {host: catalog.svc.internal, subset: v2}, weight: 80}\n"),
        vs("ratio", &["ratio.example.com"], "  - route:\n    - {destination: {host: catalog.svc.internal, subset: v1}, weight: 1}\n    - {destination: {host: catalog.svc.internal, subset: v2}, weight: 3}\n"),
        vs("subset", &["subset.example.com"], "  - route: [{destination: {host: catalog.svc.internal, subset: v2}}]\n"),
        vs("missing-subset", &["nc.example.com"], "  - route: [{destination: {host: catalog.svc.internal, subset: v9}}]\n"),
        vs("dead", &["dead.example.com"], &route("dead", "dead")),
        vs("empty", &["empty.example.com"], &route("empty", "empty")),
        vs("h2", &["h2.example.com"], &route("h2", "h2")),
        vs("dns", &["dns.example.com"], &format!("  - route: [{{destination: {{host: localhost, port: {{number: {localhost_port}}}}}}}]\n")),
    ];
    config.write("backends.yaml", &entries.join("---\n"));
    config.write("gateway.yaml", GATEWAY);
    config.write("catalog.yaml", CATALOG);
    config.write("routes.yaml", &virtual_services.join("---\n"));
    let gw = Gateway::start(config.path(), &["--port-map", "80=0", "--port-map", "81=0"]);
    let (port80, port81) = (gw.listener(80), gw.listener(81));
    backends.extend([cat1, cat2, h2]);
    World {
        gw,
        port80,
        port81,
        client: HttpClient::new(),
        _backends: backends,
        _config: config,
    }
}

impl World {
    fn get(&self, addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.client
            .get(addr, host, path, headers)
            .unwrap_or_else(|e| self.gw.fail(e))
    }

    /// The echo service that answered, or the status when the gateway answered itself.
    fn service(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> String {
        let r = self.get(addr, host, path, headers);
        match r.status {
            200 => r.json()["service"].as_str().unwrap_or("?").to_string(),
            code => code.to_string(),
        }
    }
}

#[test]
fn routes_by_host_match_weight_and_subset() {
    let w = world();
    request_hygiene(&w);
    grpc_local_replies(&w);
    host_routing(&w);
    match_types(&w);
    weights_and_subsets(&w);
    failures(&w);
    edge_headers(&w);
    protocols(&w);
}

fn host_routing(w: &World) {
    let cases = [
        ("web.example.com", "web"),
        ("WEB.Example.COM:8080", "web"),
        ("a.example.com", "wild"),
        ("a.b.example.com", "wild"),
        ("x.deep.example.com", "deep"),
        ("y.x.deep.example.com", "deep"),
        ("dns.example.com", "web"),
    ];
    for (host, want) in cases {
        assert_eq!(
            w.service(w.port80, host, "/", &[]),
            want,
            "Host {host} on port 80"
        );
    }
    // Port 80's server only exposes *.example.com: anything else is not served there.
    assert_eq!(w.service(w.port80, "example.org", "/", &[]), "404");
    assert_eq!(
        w.service(w.port80, "example.com", "/", &[]),
        "404",
        "*.example.com does not cover example.com"
    );
    // Port 81 exposes `*`, so the `*` VirtualService catches other hosts.
    assert_eq!(w.service(w.port81, "example.org", "/", &[]), "star");
    assert_eq!(w.service(w.port81, "10.1.2.3", "/", &[]), "star");
}

/// (path, method, headers, expected backend)
type MatchCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

fn match_types(w: &World) {
    let h = "match.example.com";
    let cases: &[MatchCase] = &[
        ("/exact", "GET", &[], "exact"),
        ("/exact/more", "GET", &[], "fallback"),
        ("/prefix/a/b", "GET", &[], "prefix"),
        ("/prefixed", "GET", &[], "prefix"),
        ("/re/123", "GET", &[], "regex"),
        ("/re/123/x", "GET", &[], "fallback"),
        ("/anything", "DELETE", &[], "method"),
        ("/auth", "GET", &[], "authority"),
        ("/x", "GET", &[("x-exact", "yes")], "header-exact"),
        ("/x", "GET", &[("x-exact", "yess")], "fallback"),
        ("/x", "GET", &[("x-prefix", "prefab")], "header-prefix"),
        ("/x", "GET", &[("x-regex", "v7")], "header-regex"),
        ("/x", "GET", &[("x-regex", "v77")], "fallback"),
        ("/x?a=2&q=1", "GET", &[], "query"),
        ("/x?q=12", "GET", &[], "fallback"),
        ("/without", "GET", &[], "without"),
        ("/without", "GET", &[("x-block", "1")], "fallback"),
        ("/case/X", "GET", &[], "ignorecase"),
        ("/port", "GET", &[], "fallback"),
        ("/order/x", "GET", &[], "order-first"),
        // Dot-segments are removed before routing (Istio's default path normalization).
        ("/prefix/../exact", "GET", &[], "exact"),
        ("/re/%2e%2E/exact", "GET", &[], "exact"),
        ("/", "GET", &[], "fallback"),
    ];
    for (path, method, headers, want) in cases {
        let r = w
            .client
            .request(method, w.port80, h, path, headers, b"")
            .unwrap_or_else(|e| w.gw.fail(e));
        let got = if r.status == 200 {
            r.json()["service"].as_str().unwrap_or("?").to_string()
        } else {
            r.status.to_string()
        };
        assert_eq!(&got, want, "{method} {path} {headers:?}");
    }
    // Authority is matched raw, port included.
    assert_eq!(
        w.service(w.port80, "match.example.com:9999", "/auth", &[]),
        "fallback"
    );
    // A `port: 81` match only exists on the port-81 listener.
    assert_eq!(w.service(w.port81, h, "/port", &[]), "port");
}

fn versions(w: &World, host: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = w.get(w.port80, host, "/", &[]);
        assert_eq!(r.status, 200, "{host}: {}", r.body);
        *counts
            .entry(r.json()["version"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    counts
}

fn weights_and_subsets(w: &World) {
    let split = versions(w, "split.example.com", 1000);
    let v2 = split.get("v2").copied().unwrap_or(0);
    assert!((750..=850).contains(&v2), "20/80 split gave {split:?}");
    let ratio = versions(w, "ratio.example.com", 1000);
    let v2 = ratio.get("v2").copied().unwrap_or(0);
    assert!((700..=800).contains(&v2), "1:3 weights gave {ratio:?}");
    let subset = versions(w, "subset.example.com", 50);
    assert_eq!(
        subset.get("v2"),
        Some(&50),
        "subset v2 selects only v2 endpoints: {subset:?}"
    );
}

fn failures(w: &World) {
    let dead = w.get(w.port80, "dead.example.com", "/", &[]);
    assert_eq!(dead.status, 503);
    // Istio's default retry policy retried the connect failure twice, and Envoy says so.
    assert_eq!(
        dead.body,
        "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"
    );
    assert_eq!(dead.header("server"), Some("istio-envoy"));
    let empty = w.get(w.port80, "empty.example.com", "/", &[]);
    assert_eq!(
        (empty.status, empty.body.as_str()),
        (503, "no healthy upstream")
    );
    let nc = w.get(w.port80, "nc.example.com", "/", &[]);
    assert_eq!(
        (nc.status, nc.body.as_str()),
        (503, ""),
        "unknown subset: cluster not found"
    );
    let nr = w.get(w.port80, "example.org", "/", &[]);
    assert_eq!(
        (nr.status, nr.body.as_str(), nr.header("content-length")),
        (404, "", Some("0"))
    );
}

fn edge_headers(w: &World) {
    let out = curl(&[
        "-H",
        "Host: web.example.com",
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Request-Id: client-chosen",
        "-H",
        "x-envoy-retry-on: 5xx",
        "-H",
        "Keep-Alive: timeout=5",
        &format!("http://{}/headers", w.port80),
    ]);
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert_eq!(out.header("server"), Some("istio-envoy"));
    assert!(out
        .header("x-envoy-upstream-service-time")
        .is_some_and(|v| v.parse::<u64>().is_ok()));
    let seen = out.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9,127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    let id = seen["x-request-id"].as_str().unwrap_or_default();
    assert!(
        id != "client-chosen" && id.len() == 36,
        "x-request-id regenerated: {id}"
    );
    assert!(
        seen.get("x-envoy-retry-on").is_none(),
        "client x-envoy-* stripped: {seen}"
    );
    assert!(
        seen.get("keep-alive").is_none(),
        "hop-by-hop removed: {seen}"
    );
    assert_eq!(seen["x-envoy-external-address"], "127.0.0.1");
    assert_eq!(seen["x-envoy-attempt-count"], "1");
    assert_eq!(
        out.json()["host"],
        "web.example.com",
        "Host passes through unchanged"
    );
}

fn protocols(w: &World) {
    // A GRPC ServiceEntry port means HTTP/2 upstream: the client's host travels as :authority,
    // with no Host header (RFC 9113), even when the client spoke HTTP/1.1.
    let h2 = w.get(w.port80, "h2.example.com", "/pkg.Service/Method", &[]);
    assert_eq!(h2.status, 200, "{}", h2.body);
    let seen = h2.json();
    assert_eq!(
        (seen["service"].as_str(), seen["host"].as_str()),
        (Some("h2"), Some("h2.example.com"))
    );
    assert!(
        seen["headers"].get("host").is_none(),
        "no Host header over HTTP/2: {seen}"
    );
    let old = curl(&[
        "--http1.0",
        "-H",
        "Host: web.example.com",
        &format!("http://{}/", w.port80),
    ]);
    assert_eq!(old.status, 426, "HTTP/1.0 is refused as Istio does");
    let h2 = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: web.example.com",
        &format!("http://{}/h2", w.port80),
    ]);
    assert_eq!(h2.status, 200, "{}", h2.stderr);
    assert_eq!(h2.json()["service"], "web");
    websocket_passes_through(w.port80);
}

fn request_hygiene(w: &World) {
    // The upstream sees the normalized path too.
    let r = w.get(w.port80, "web.example.com", "/a/./b/../c?q=1", &[]);
    assert_eq!(r.json()["path"], "/a/c?q=1");
    // An absolute-form request routes by its authority, and the upstream sees that host.
    let raw = raw_request(
        w.port80,
        "GET http://web.example.com/abs HTTP/1.1\r\nHost: match.example.com\r\nConnection: close\r\n\r\n",
    );
    assert!(
        raw.contains("\"service\":\"web\"") && raw.contains("\"host\":\"web.example.com\""),
        "{raw}"
    );
    // Only WebSocket upgrades pass: an h2c upgrade is dropped and the request proxied as HTTP/1.1.
    let h2c = curl(&[
        "--http2",
        "-H",
        "Host: web.example.com",
        &format!("http://{}/h2c", w.port80),
    ]);
    assert_eq!(h2c.status, 200, "{}", h2c.stderr);
    assert!(
        h2c.json()["headers"].get("upgrade").is_none(),
        "{}",
        h2c.body
    );
}

fn grpc_local_replies(w: &World) {
    let grpc = [("content-type", "application/grpc")];
    let post = |host: &str| {
        w.client
            .request("POST", w.port80, host, "/pkg.S/M", &grpc, b"")
            .unwrap_or_else(|e| w.gw.fail(e))
    };
    let nc = post("nc.example.com");
    assert_eq!(
        (nc.status, nc.header("grpc-status")),
        (200, Some("14")),
        "503 becomes UNAVAILABLE"
    );
    let dead = post("dead.example.com");
    assert_eq!(dead.header("grpc-status"), Some("14"));
    assert!(
        dead.header("grpc-message")
            .is_some_and(|m| m.contains("Connection refused")),
        "{:?}",
        dead.headers
    );
    let nr = post("example.org");
    assert_eq!(
        (nr.status, nr.header("grpc-status")),
        (200, Some("12")),
        "404 becomes UNIMPLEMENTED"
    );
}

fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn websocket_passes_through(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: web.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    s.write_all(b"ping through the tunnel").unwrap();
    let mut echoed = [0u8; 23];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
}
