//! Explanations of small configs compiled from YAML: each outcome and each reason.

use http::{HeaderValue, Method};

use super::{explain, OutcomeKind, Query};
use crate::config::ConfigStore;
use crate::snapshot::{compile, Options, Snapshot};

fn snapshot(yaml: &str) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    let opts = Options {
        certs_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/certs").into(),
        ..Options::default()
    };
    compile(
        ConfigStore::new(dir.path(), "default").load(),
        &opts,
        &Snapshot::empty(),
        1,
    )
}

const HTTP: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.test, "*.apps.test"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.test]
  gateways: [istio-system/gw]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
      headers: {x-user: {exact: jason}}
    route:
    - destination: {host: api.default.svc.cluster.local}
  - name: post-only
    match:
    - uri: {prefix: /web}
      method: {exact: POST}
      queryParams: {v: {exact: "2"}}
    route:
    - destination: {host: web, subset: v9}
  - name: empty
    match:
    - uri: {prefix: /empty}
    route:
    - destination: {host: empty.test}
  - name: old
    match:
    - uri: {exact: /old}
    redirect: {uri: /new}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: empty}
spec:
  hosts: [empty.test]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: []
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.default.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.7}]
"#;

fn get(host: &str, path: &str) -> Query {
    Query::get(host, path)
}

#[test]
fn matched_route_names_the_earlier_misses_and_the_endpoints() {
    let s = snapshot(HTTP);
    let mut q = get("shop.test", "/api/items");
    q.headers
        .insert("x-user", HeaderValue::from_static("jason"));
    let ex = explain(&s, &q);
    assert_eq!(ex.outcome.kind, OutcomeKind::Forward, "{ex}");
    assert!(ex.outcome.routed);
    assert_eq!(
        ex.matched_route.as_deref(),
        Some("default/shop.http[0].api")
    );
    let d = &ex.destinations[0];
    assert_eq!(d.cluster, "outbound|80||api.default.svc.cluster.local");
    assert_eq!(d.endpoints[0].address, "10.0.0.7:80");
    assert_eq!(ex.listener.as_ref().unwrap().chosen, "default port 80");
}

#[test]
fn host_not_on_the_gateway_lists_the_domains() {
    let ex = explain(&snapshot(HTTP), &get("other.test:31380", "/"));
    assert_eq!(ex.outcome.kind, OutcomeKind::NoRoute);
    assert_eq!(ex.outcome.status, Some(404));
    assert_eq!(ex.outcome.flag.as_deref(), Some("NR"));
    assert_eq!(
        ex.outcome.message,
        "404 NR: Host other.test:31380 not in [shop.test] of http.80"
    );
}

#[test]
fn no_route_names_the_closest_and_each_reason() {
    let s = snapshot(HTTP);
    let mut q = get("shop.test", "/web/x?v=2");
    q.method = Method::GET;
    let ex = explain(&s, &q);
    assert_eq!(ex.outcome.kind, OutcomeKind::NoRoute, "{ex}");
    assert_eq!(
        ex.routes[0].failed,
        [
            "uri prefix /api does not match /web/x",
            "header x-user exact \"jason\" missing"
        ]
    );
    let closest = ex.closest_route.as_ref().unwrap();
    assert_eq!(closest.name, "default/shop.http[1].post-only");
    // One failing condition, as /empty and /old have: ties go to the first.
    assert_eq!(
        closest.failed,
        ["method exact \"POST\" does not match \"GET\""]
    );
    assert_eq!(
        ex.routes[2].failed,
        ["uri prefix /empty does not match /web/x"]
    );
    q.path = "/web?v=1".into();
    q.method = Method::POST;
    let ex = explain(&s, &q);
    let post_only = &ex.routes[1];
    assert_eq!(
        post_only.failed,
        ["query param v exact \"2\" does not match \"1\""]
    );
    q.path = "/web".into();
    let ex = explain(&s, &q);
    assert_eq!(ex.routes[1].failed, ["query param v exact \"2\" missing"]);
    // /api with the header wrong fails one condition, the first route to do so.
    q.path = "/api".into();
    q.headers.insert("x-user", HeaderValue::from_static("bob"));
    let ex = explain(&s, &q);
    let closest = ex.closest_route.unwrap();
    assert_eq!(closest.name, "default/shop.http[0].api");
    assert_eq!(
        closest.failed,
        ["header x-user exact \"jason\" does not match \"bob\""]
    );
}

#[test]
fn destinations_without_endpoints_or_cluster_are_503() {
    let s = snapshot(HTTP);
    let ex = explain(&s, &get("shop.test", "/empty"));
    assert_eq!(ex.outcome.kind, OutcomeKind::NoHealthyUpstream, "{ex}");
    assert_eq!(
        (ex.outcome.status, ex.outcome.flag.as_deref()),
        (Some(503), Some("UH"))
    );
    let mut q = get("shop.test", "/web?v=2");
    q.method = Method::POST;
    let ex = explain(&s, &q);
    assert_eq!(ex.outcome.kind, OutcomeKind::ClusterNotFound, "{ex}");
    assert_eq!(ex.outcome.flag.as_deref(), Some("NC"));
    assert!(!ex.destinations[0].exists);
}

#[test]
fn redirects_and_normalized_paths() {
    let ex = explain(&snapshot(HTTP), &get("shop.test", "/a/../old?k=1"));
    assert_eq!(ex.request.normalized_path.as_deref(), Some("/old"));
    assert_eq!(ex.outcome.kind, OutcomeKind::Redirect, "{ex}");
    assert_eq!(
        ex.outcome.location.as_deref(),
        Some("http://shop.test/new?k=1")
    );
}

#[test]
fn normalization_follows_the_gateways_mode() {
    use crate::http::path::PathNormalization;
    let mut q = get("shop.test", "//a//old");
    assert_eq!(explain(&snapshot(HTTP), &q).request.normalized_path, None);
    q.path_normalization = PathNormalization::MergeSlashes;
    let ex = explain(&snapshot(HTTP), &q);
    assert_eq!(ex.request.normalized_path.as_deref(), Some("/a/old"));
}

#[test]
fn missing_port_lists_the_ports() {
    let mut q = get("shop.test", "/");
    q.port = Some(8080);
    let ex = explain(&snapshot(HTTP), &q);
    assert_eq!(ex.outcome.kind, OutcomeKind::NoListener);
    assert_eq!(
        ex.outcome.message,
        "connection refused: no Gateway server on port 8080 (ports: 80)"
    );
}

const HTTPS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.test]
    tls: {mode: SIMPLE, credentialName: webapp-credential}
  - port: {number: 443, name: https-wild, protocol: HTTPS}
    hosts: ["*.b.test"]
    tls: {mode: SIMPLE, credentialName: webapp-credential}
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [pass.test]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [a.test, "*.b.test", pass.test]
  gateways: [istio-system/gw]
  http:
  - route:
    - destination: {host: web.test}
  tls:
  - match: [{sniHosts: [pass.test]}]
    route:
    - destination: {host: pass.backend.test, port: {number: 443}}
"#;

#[test]
fn sni_selects_the_server_and_says_why() {
    let s = snapshot(HTTPS);
    let mut q = get("x.b.test", "/");
    q.scheme = Some("https".into());
    let ex = explain(&s, &q);
    let tls = ex.tls.as_ref().unwrap();
    assert_eq!(tls.matched_by.as_deref(), Some("wildcard *.b.test"), "{ex}");
    assert_eq!(
        tls.server.as_deref(),
        Some("https.443.https-wild.gw.istio-system")
    );
    assert_eq!(ex.outcome.kind, OutcomeKind::Forward, "{ex}");
    // The DNS destination is not resolved offline: forwarded, endpoints found at first use.
    assert_eq!(ex.destinations[0].source, "dns");
}

#[test]
fn unknown_sni_fails_the_handshake() {
    let mut q = get("c.test", "/");
    q.scheme = Some("https".into());
    let ex = explain(&snapshot(HTTPS), &q);
    assert_eq!(ex.outcome.kind, OutcomeKind::TlsHandshakeFailure);
    assert_eq!(
        ex.outcome.message,
        "TLS handshake fails: SNI c.test matches no server on port 443 (servers: *.b.test, a.test, pass.test)"
    );
}

#[test]
fn host_of_another_server_is_421_and_passthrough_names_its_route() {
    let s = snapshot(HTTPS);
    let mut q = get("x.b.test", "/");
    q.sni = Some("a.test".into());
    let ex = explain(&s, &q);
    assert_eq!(ex.outcome.kind, OutcomeKind::MisdirectedRequest, "{ex}");
    assert_eq!(ex.outcome.status, Some(421));
    let mut q = get("pass.test", "/");
    q.scheme = Some("https".into());
    let ex = explain(&s, &q);
    assert_eq!(ex.outcome.kind, OutcomeKind::StreamForward, "{ex}");
    assert_eq!(ex.stream_route.as_deref(), Some("default/web.tls[0]"));
    assert_eq!(ex.tls.unwrap().mode, Some("passthrough"));
}

#[test]
fn text_form_numbers_the_steps() {
    let ex = explain(&snapshot(HTTP), &get("shop.test", "/web"));
    let text = ex.to_string();
    assert!(
        text.starts_with("GET http://shop.test/web\n1. listener: gateway port 80"),
        "{text}"
    );
    assert!(
        text.contains("\n2. route table http.80: virtual host shop.test (exact shop.test)\n"),
        "{text}"
    );
    assert!(text.contains("\n3. route #0 default/shop.http[0].api: no match: uri prefix /api does not match /web\n"), "{text}");
    assert!(
        text.ends_with(&format!("=> {}\n", ex.outcome.message)),
        "{text}"
    );
}

#[test]
fn no_sni_reaches_only_a_star_server() {
    let mut q = get("127.0.0.1", "/");
    q.scheme = Some("https".into());
    let ex = explain(&snapshot(HTTPS), &q);
    assert_eq!(ex.request.sni, None);
    assert_eq!(
        ex.outcome.message,
        "TLS handshake fails: no SNI sent and no * server on port 443 (servers: *.b.test, a.test, pass.test)"
    );
    let star = HTTPS.replacen("hosts: [a.test]", "hosts: [\"*\"]", 1);
    let ex = explain(&snapshot(&star), &q);
    let tls = ex.tls.as_ref().unwrap();
    assert_eq!(
        tls.matched_by.as_deref(),
        Some("catch-all * (no SNI sent)"),
        "{ex}"
    );
    assert_eq!(
        tls.server.as_deref(),
        Some("https.443.https.gw.istio-system")
    );
}
