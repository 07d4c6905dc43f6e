//! Istio's gateway semantics, table by table: YAML in, compiled snapshot out.

use std::sync::Arc;

use http::{HeaderMap, Method};

use super::{compile, ListenKey, ListenerKind, Options, Snapshot};
use crate::config::{ConfigStore, Severity};
use crate::route::{Action, RequestView, Target};

pub(super) fn snapshot(yaml: &str) -> Snapshot {
    snapshot_with(yaml, Options::default())
}

fn snapshot_with(yaml: &str, opts: Options) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    compile(
        ConfigStore::new(dir.path(), "default").load(),
        &opts,
        &Snapshot::empty(),
        1,
    )
}

pub(super) fn port(s: &Snapshot, number: u16) -> Option<&Arc<super::Listener>> {
    s.listeners
        .iter()
        .find(|(k, _)| k.port == number)
        .map(|(_, l)| l)
}

/// The cluster a request for `host` + `path` reaches on `port`, or `None` for 404.
fn route(s: &Snapshot, number: u16, host: &str, path: &str) -> Option<String> {
    let ListenerKind::Http(table) = &port(s, number)?.kind else {
        return None;
    };
    let headers = HeaderMap::new();
    let view = RequestView {
        path,
        query: None,
        method: &Method::GET,
        scheme: "http",
        authority: host,
        headers: &headers,
    };
    let route = table.find_vhost(host)?.find_route(&view)?;
    match &route.action {
        Action::Forward(w) => w.targets().next().map(|t| match t {
            Target::Cluster(c) => c.name().to_string(),
            Target::Missing(n) => format!("missing:{n}"),
        }),
        _ => Some("local".into()),
    }
}

pub(super) fn warnings(s: &Snapshot) -> Vec<String> {
    s.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.to_string())
        .collect()
}

pub(super) const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: be, namespace: apps}\nspec:\n  hosts: [be.apps.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1, labels: {v: one}}, {address: 127.0.0.2, labels: {v: two}}]\n";

pub(super) fn gateway(name: &str, selector: &str, servers: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  selector: {{{selector}}}\n  servers:\n{servers}")
}

fn http_server(port: u16, hosts: &str) -> String {
    format!(
        "  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}\n    hosts: [{hosts}]\n"
    )
}

fn vs(name: &str, ns: &str, hosts: &str, gateways: &str, http: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{hosts}]\n  gateways: [{gateways}]\n  http:\n{http}")
}

const TO_BE: &str = "  - route: [{destination: {host: be.apps.svc.cluster.local}}]\n";

#[test]
fn only_gateways_selecting_our_labels_are_served() {
    let yaml = [
        gateway("ours", "istio: ingressgateway", &http_server(80, "\"*\"")),
        gateway(
            "theirs",
            "istio: my-user-gateway",
            &http_server(81, "\"*\""),
        ),
    ]
    .join("---\n");
    let s = snapshot(&yaml);
    assert!(port(&s, 80).is_some() && port(&s, 81).is_none());
    let opts = Options {
        labels: [("istio".to_string(), "my-user-gateway".to_string())].into(),
        ..Options::default()
    };
    let s = snapshot_with(&yaml, opts);
    assert!(port(&s, 80).is_none() && port(&s, 81).is_some());
}

#[test]
fn server_and_virtualservice_hosts_intersect_to_the_more_specific() {
    let yaml = [
        SE.to_string(),
        gateway(
            "gw",
            "istio: ingressgateway",
            &http_server(80, "\"*.ex.com\""),
        ),
        vs("a", "apps", "a.ex.com", "gw", TO_BE),
        vs("wild", "apps", "\"*\"", "gw", TO_BE),
        vs("other", "apps", "ex.com", "gw", TO_BE),
    ]
    .join("---\n");
    let s = snapshot(&yaml);
    let ListenerKind::Http(table) = &port(&s, 80).unwrap().kind else {
        panic!()
    };
    let mut domains: Vec<_> = table.domains().collect();
    domains.sort();
    assert_eq!(
        domains,
        ["*.ex.com", "a.ex.com"],
        "`*` narrows to the server's *.ex.com; ex.com is outside it"
    );
    assert!(
        warnings(&s)
            .iter()
            .any(|w| w.contains("\"ex.com\" is not exposed")),
        "{:?}",
        warnings(&s)
    );
}

#[test]
fn namespace_restricted_server_hosts_only_admit_their_namespace() {
    let yaml = [
        SE.to_string(),
        gateway(
            "gw",
            "istio: ingressgateway",
            &http_server(80, "\"team/*\""),
        ),
        vs(
            "in-team",
            "team",
            "a.ex.com",
            "apps/gw",
            "  - route: [{destination: {host: be.apps.svc.cluster.local}}]\n",
        ),
        vs("elsewhere", "apps", "b.ex.com", "gw", TO_BE),
    ]
    .join("---\n");
    let s = snapshot(&yaml);
    assert!(route(&s, 80, "a.ex.com", "/").is_some());
    assert!(route(&s, 80, "b.ex.com", "/").is_none());
}

#[test]
fn short_names_expand_relative_to_the_virtualservice_namespace() {
    let yaml = [
        SE.to_string(),
        gateway("gw", "istio: ingressgateway", &http_server(80, "\"*\"")),
        vs(
            "short",
            "apps",
            "a.ex.com",
            "gw",
            "  - route: [{destination: {host: be}}]\n",
        ),
        vs(
            "foreign",
            "other",
            "b.ex.com",
            "apps/gw",
            "  - route: [{destination: {host: be}}]\n",
        ),
    ]
    .join("---\n");
    let s = snapshot(&yaml);
    assert_eq!(
        route(&s, 80, "a.ex.com", "/").as_deref(),
        Some("outbound|80||be.apps.svc.cluster.local")
    );
    // `be` in namespace `other` is another service, resolved by DNS (no ServiceEntry).
    assert_eq!(
        route(&s, 80, "b.ex.com", "/").as_deref(),
        Some("outbound|80||be.other.svc.cluster.local")
    );
    assert!(s.clusters["outbound|80||be.other.svc.cluster.local"].is_dns());
}

#[test]
fn catch_all_routes_of_an_earlier_virtualservice_do_not_shadow_a_later_one() {
    let first = "  - route: [{destination: {host: be.apps.svc.cluster.local, subset: one}}]\n";
    let later = "  - match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: be.apps.svc.cluster.local, subset: two}}]\n";
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: be, namespace: apps}\nspec:\n  host: be.apps.svc.cluster.local\n  subsets: [{name: one, labels: {v: one}}, {name: two, labels: {v: two}}]\n";
    let yaml = [
        SE.to_string(),
        dr.to_string(),
        gateway("gw", "istio: ingressgateway", &http_server(80, "\"*\"")),
        vs("first", "apps", "a.ex.com", "gw", first),
        vs("later", "apps", "a.ex.com", "gw", later),
    ]
    .join("---\n");
    let s = snapshot(&yaml);
    assert_eq!(
        route(&s, 80, "a.ex.com", "/api/x").as_deref(),
        Some("outbound|80|two|be.apps.svc.cluster.local")
    );
    assert_eq!(
        route(&s, 80, "a.ex.com", "/other").as_deref(),
        Some("outbound|80|one|be.apps.svc.cluster.local")
    );
}

#[test]
fn match_level_port_and_gateways_apply_at_build_time() {
    let http = "  - match: [{port: 81, uri: {prefix: /p}}]\n    route: [{destination: {host: be.apps.svc.cluster.local, subset: two}}]\n  - match: [{gateways: [gw2], uri: {prefix: /g}}]\n    route: [{destination: {host: be.apps.svc.cluster.local, subset: two}}]\n  - route: [{destination: {host: be.apps.svc.cluster.local}}]\n";
    let yaml = [
        SE.to_string(),
        gateway(
            "gw",
            "istio: ingressgateway",
            &format!("{}{}", http_server(80, "\"*\""), http_server(81, "\"*\"")),
        ),
        gateway("gw2", "istio: ingressgateway", &http_server(82, "\"*\"")),
        vs("v", "apps", "a.ex.com", "gw, gw2", http),
    ]
    .join("---\n");
    let s = snapshot(&yaml);
    let two = "missing:outbound|80|two|be.apps.svc.cluster.local";
    assert_eq!(
        route(&s, 80, "a.ex.com", "/p").as_deref(),
        Some("outbound|80||be.apps.svc.cluster.local")
    );
    assert_eq!(
        route(&s, 81, "a.ex.com", "/p").as_deref(),
        Some(two),
        "port-81 match, subset not defined: 503 NC"
    );
    assert_eq!(
        route(&s, 80, "a.ex.com", "/g").as_deref(),
        Some("outbound|80||be.apps.svc.cluster.local")
    );
    // No destination port and a single ServiceEntry port: that port, whatever the gateway port.
    assert_eq!(route(&s, 82, "a.ex.com", "/g").as_deref(), Some(two));
}

#[test]
fn conflicting_servers_lose_to_the_earlier_one_with_a_warning() {
    let tcp = "  - port: {number: 80, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n";
    let yaml = [
        gateway("a", "istio: ingressgateway", &http_server(80, "\"*\"")),
        gateway("b", "istio: ingressgateway", tcp),
    ]
    .join("---\n");
    let s = snapshot(&yaml);
    assert!(matches!(port(&s, 80).unwrap().kind, ListenerKind::Http(_)));
    assert!(
        warnings(&s)
            .iter()
            .any(|w| w.contains("Gateway apps/b") && w.contains("ignored")),
        "{:?}",
        warnings(&s)
    );
}

#[test]
fn virtualservices_not_exported_to_the_gateway_namespace_do_not_bind() {
    let hidden = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hidden, namespace: apps}\nspec:\n  hosts: [a.ex.com]\n  gateways: [gw]\n  exportTo: [\".\"]\n  http:\n  - route: [{destination: {host: be.apps.svc.cluster.local}}]\n";
    let yaml = [
        SE.to_string(),
        gateway("gw", "istio: ingressgateway", &http_server(80, "\"*\"")),
        hidden.to_string(),
    ]
    .join("---\n");
    assert!(
        route(&snapshot(&yaml), 80, "a.ex.com", "/").is_none(),
        "exported only to apps, not istio-system"
    );
    let opts = Options {
        gateway_namespace: "apps".into(),
        ..Options::default()
    };
    assert!(route(&snapshot_with(&yaml, opts), 80, "a.ex.com", "/").is_some());
}

#[test]
fn workload_entry_metadata_labels_select_endpoints() {
    let entries = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se, namespace: apps}\nspec:\n  hosts: [svc.internal]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: svc}}\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: we, namespace: apps, labels: {app: svc, version: v2}}\nspec: {address: 127.0.0.9}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: apps}\nspec:\n  host: svc.internal\n  subsets: [{name: v2, labels: {version: v2}}]\n";
    let route = "  - route: [{destination: {host: svc.internal, subset: v2}}]\n";
    let yaml = [
        entries.to_string(),
        gateway("gw", "istio: ingressgateway", &http_server(80, "\"*\"")),
        vs("v", "apps", "a.ex.com", "gw", route),
    ]
    .join("---\n");
    let s = snapshot(&yaml);
    let endpoints = s.clusters["outbound|80|v2|svc.internal"].current_endpoints();
    assert_eq!(
        endpoints
            .iter()
            .map(|e| e.addr.to_string())
            .collect::<Vec<_>>(),
        ["127.0.0.9:80"]
    );
}

#[test]
fn absurd_weights_are_rejected_not_overflowed() {
    let http = "  - route:\n    - {destination: {host: a.internal}, weight: 4611686018427387904}\n    - {destination: {host: b.internal}, weight: 4611686018427387904}\n";
    let s = snapshot(&vs("v", "apps", "a.ex.com", "gw", http));
    assert!(
        s.diagnostics
            .iter()
            .any(|d| d.is_error() && d.field.ends_with("weight")),
        "{:?}",
        s.diagnostics
    );
    assert!(s.resources.is_empty());
}

#[test]
fn bind_address_and_port_key_the_listener() {
    let servers = "  - port: {number: 80, name: a, protocol: HTTP}\n    hosts: [\"*\"]\n    bind: 127.0.0.2\n";
    let s = snapshot(&gateway("gw", "istio: ingressgateway", servers));
    assert!(s.listeners.contains_key(&ListenKey {
        bind: "127.0.0.2".parse().unwrap(),
        port: 80
    }));
}

#[test]
fn a_bad_credential_update_keeps_the_last_good_one() {
    let pem = |host: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    };
    let certs = tempfile::tempdir().unwrap();
    let folder = certs.path().join("web-cert");
    std::fs::create_dir(&folder).unwrap();
    let (cert1, key1, der1) = pem("web.test");
    std::fs::write(folder.join("tls.crt"), &cert1).unwrap();
    std::fs::write(folder.join("tls.key"), &key1).unwrap();
    let servers = "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [web.test]\n    tls: {mode: SIMPLE, credentialName: web-cert}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        gateway("gw", "istio: ingressgateway", servers),
    )
    .unwrap();
    let opts = Options {
        certs_dir: certs.path().to_path_buf(),
        ..Options::default()
    };
    let mut store = ConfigStore::new(dir.path(), "default");
    let first = compile(store.load(), &opts, &Snapshot::empty(), 1);
    let served = |s: &Snapshot| {
        s.credentials
            .values()
            .next()
            .map(|c| c[0].chain[0].to_vec())
    };
    assert_eq!(served(&first), Some(der1.clone()));
    // The new certificate lands before its key: they do not match.
    let (cert2, key2, der2) = pem("web.test");
    std::fs::write(folder.join("tls.crt"), &cert2).unwrap();
    let second = compile(store.load(), &opts, &first, 2);
    assert_eq!(
        served(&second),
        Some(der1),
        "the last good credential stays in force"
    );
    assert!(
        second
            .diagnostics
            .iter()
            .any(|d| d.is_error() && d.message.contains("does not match")),
        "{:?}",
        second.diagnostics
    );
    assert!(
        matches!(&second.listeners.values().next().unwrap().kind, ListenerKind::Tls(t) if t.serves_anything())
    );
    std::fs::write(folder.join("tls.key"), &key2).unwrap();
    let third = compile(store.load(), &opts, &second, 3);
    assert_eq!(served(&third), Some(der2));
    assert!(
        third.diagnostics.iter().all(|d| !d.is_error()),
        "{:?}",
        third.diagnostics
    );
}
