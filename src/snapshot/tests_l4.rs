//! `tcp` and `tls` routes at the gateway (reference §2.2 step 5, §2.9): YAML in, compiled
//! listeners out.

use super::tests::{gateway, port, snapshot, warnings, SE};
use super::tls::{TlsAction, TlsListener};
use super::{ListenerKind, Snapshot};
use crate::route::Target;

const TCP_SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: tcp, namespace: apps}\nspec:\n  hosts: [tcp.apps.svc.cluster.local]\n  ports: [{number: 2701, name: tcp, protocol: TCP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n";

fn tcp_vs(name: &str, gateways: &str, tcp: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  hosts: ['*']\n  gateways: [{gateways}]\n  tcp:\n{tcp}")
}

fn tls_vs(name: &str, hosts: &str, tls: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  hosts: [{hosts}]\n  gateways: [gw]\n  tls:\n{tls}")
}

fn tcp_gateway() -> String {
    gateway(
        "gw",
        "istio: ingressgateway",
        "  - port: {number: 31400, name: tcp, protocol: TCP}\n    hosts: ['*']\n",
    )
}

fn passthrough_gateway(protocol: &str, tls: &str, hosts: &str) -> String {
    gateway(
        "gw",
        "istio: ingressgateway",
        &format!("  - port: {{number: 443, name: pass, protocol: {protocol}}}\n    hosts: [{hosts}]\n    tls: {tls}\n"),
    )
}

/// The Gateway `gw` with one PASSTHROUGH server (protocol TLS) on port 443 for `hosts`.
fn passthrough(hosts: &str) -> String {
    passthrough_gateway("TLS", "{mode: PASSTHROUGH}", hosts)
}

/// The snapshot of [`TCP_SE`] and `docs`.
fn snapshot_of(docs: &[&str]) -> Snapshot {
    let mut all = vec![TCP_SE];
    all.extend_from_slice(docs);
    snapshot(&all.join("---\n"))
}

/// The error diagnostics of `s`, as text.
fn errors(s: &Snapshot) -> Vec<String> {
    s.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect()
}

fn tcp_route(s: &Snapshot) -> Option<String> {
    match &port(s, 31400)?.kind {
        ListenerKind::Tcp(route) => route.as_ref().map(|r| r.name.to_string()),
        _ => None,
    }
}

fn tls_listener(s: &Snapshot) -> &TlsListener {
    match &port(s, 443).expect("port 443").kind {
        ListenerKind::Tls(l) => l,
        _ => panic!("443 is not a TLS listener"),
    }
}

/// What an SNI selects: the route's name, "no-route", "unavailable", or `None`.
fn by_sni(s: &Snapshot, sni: &str) -> Option<String> {
    let listener = tls_listener(s);
    let server = &listener.servers[*listener.sni.get(sni)?];
    Some(match &server.action {
        TlsAction::Passthrough(route) => route.name.to_string(),
        TlsAction::NoRoute => "no-route".into(),
        TlsAction::Unavailable => "unavailable".into(),
        TlsAction::Https { .. } | TlsAction::TerminateTcp { .. } => "terminate".into(),
    })
}

const TO_TCP: &str = "    route: [{destination: {host: tcp, port: {number: 2701}}}]\n";

/// A `tcp` or `tls` rule with the match `{<matcher>}`, routing to `tcp:2701`.
fn to_tcp(matcher: &str) -> String {
    format!("  - match: [{{{matcher}}}]\n{TO_TCP}")
}

#[test]
fn the_first_tcp_rule_that_applies_wins() {
    let first = tcp_vs(
        "first",
        "gw",
        &(to_tcp("port: 31401") + &to_tcp("port: 31400")),
    );
    let later = tcp_vs("later", "gw", &format!("  - {}", &TO_TCP[4..]));
    let s = snapshot_of(&[&tcp_gateway(), &first, &later]);
    assert_eq!(tcp_route(&s).as_deref(), Some("apps/first.tcp[1]"));
}

#[test]
fn a_tcp_port_without_an_applicable_route_has_none_and_says_so() {
    let other_gateway = tcp_vs("elsewhere", "gw", &to_tcp("gateways: [apps/other]"));
    let s = snapshot_of(&[&tcp_gateway(), &other_gateway]);
    assert!(matches!(
        port(&s, 31400).unwrap().kind,
        ListenerKind::Tcp(None)
    ));
    assert!(
        warnings(&s)
            .iter()
            .any(|w| w.contains("no VirtualService tcp route")),
        "{:?}",
        warnings(&s)
    );
}

#[test]
fn destination_subnets_are_ignored_at_a_gateway_with_a_warning() {
    let vs = tcp_vs(
        "subnets",
        "gw",
        &to_tcp("port: 31400, destinationSubnets: [10.0.0.0/8]"),
    );
    let s = snapshot_of(&[&tcp_gateway(), &vs]);
    assert_eq!(tcp_route(&s).as_deref(), Some("apps/subnets.tcp[0]"));
    let warned = warnings(&s);
    assert!(
        warned
            .iter()
            .any(|w| w.contains("spec.tcp[0].match[0].destinationSubnets")),
        "{warned:?}"
    );
}

#[test]
fn weighted_tcp_destinations_keep_their_weights() {
    let vs = tcp_vs(
        "split",
        "gw",
        "  - route:\n    - {destination: {host: tcp, port: {number: 2701}}, weight: 80}\n    - {destination: {host: be, port: {number: 80}}, weight: 20}\n",
    );
    let s = snapshot_of(&[SE, &tcp_gateway(), &vs]);
    let ListenerKind::Tcp(Some(route)) = &port(&s, 31400).unwrap().kind else {
        panic!("no tcp route");
    };
    let names: Vec<_> = route
        .clusters
        .targets()
        .map(|t| match t {
            Target::Cluster(c) => c.name().to_string(),
            Target::Missing(n) => n.to_string(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "outbound|2701||tcp.apps.svc.cluster.local",
            "outbound|80||be.apps.svc.cluster.local"
        ]
    );
    // Rolls below 80 of 100 land on the first destination.
    let first = |roll| match route.clusters.pick(roll) {
        Some(Target::Cluster(c)) => c.name().starts_with("outbound|2701"),
        _ => false,
    };
    assert!(first(79) && !first(80));
}

#[test]
fn passthrough_sni_selects_tls_routes_and_uncovered_server_hosts_close() {
    let vs = tls_vs(
        "pass",
        "'*.example.com'",
        &to_tcp("port: 443, sniHosts: [a.example.com]"),
    );
    let gw = passthrough("'*.example.com'");
    let s = snapshot_of(&[&gw, &vs]);
    assert_eq!(
        by_sni(&s, "a.example.com").as_deref(),
        Some("apps/pass.tls[0]")
    );
    assert_eq!(by_sni(&s, "b.example.com").as_deref(), Some("no-route"));
    assert_eq!(by_sni(&s, "other.org"), None);
    assert!(tls_listener(&s).serves_anything());
}

#[test]
fn a_passthrough_server_without_tls_routes_is_not_opened() {
    let gw = passthrough("a.example.com");
    let s = snapshot_of(&[&gw]);
    assert!(!tls_listener(&s).serves_anything());
    assert!(warnings(&s)
        .iter()
        .any(|w| w.contains("no VirtualService tls route applies")));
}

#[test]
fn a_duplicate_sni_host_keeps_the_first_match_with_an_error() {
    let first = tls_vs(
        "first",
        "'*.example.com'",
        &to_tcp("sniHosts: [a.example.com]"),
    );
    let second = tls_vs(
        "second",
        "a.example.com",
        &to_tcp("sniHosts: [a.example.com]"),
    );
    let gw = passthrough("'*.example.com'");
    let s = snapshot_of(&[&gw, &first, &second]);
    assert_eq!(
        by_sni(&s, "a.example.com").as_deref(),
        Some("apps/first.tls[0]")
    );
    let errors = errors(&s);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.tls[0].match[0].sniHosts[0]")
                && e.contains("already served by apps/first.tls[0]")),
        "{errors:?}"
    );
}

#[test]
fn an_https_server_without_a_mode_passes_through_with_a_warning() {
    let vs = tls_vs(
        "pass",
        "a.example.com",
        &to_tcp("sniHosts: [a.example.com]"),
    );
    let gw = passthrough_gateway("HTTPS", "{}", "a.example.com");
    let s = snapshot_of(&[&gw, &vs]);
    assert_eq!(
        by_sni(&s, "a.example.com").as_deref(),
        Some("apps/pass.tls[0]")
    );
    assert!(warnings(&s)
        .iter()
        .any(|w| w.contains("tls.mode is not set, so this HTTPS server is PASSTHROUGH")));
}

#[test]
fn a_tls_match_for_another_port_does_not_apply() {
    let vs = tls_vs(
        "pass",
        "a.example.com",
        &to_tcp("port: 8443, sniHosts: [a.example.com]"),
    );
    let gw = passthrough("a.example.com");
    let s = snapshot_of(&[&gw, &vs]);
    assert_eq!(by_sni(&s, "a.example.com").as_deref(), Some("no-route"));
}

#[test]
fn sni_hosts_outside_the_virtualservice_hosts_are_rejected() {
    let vs = tls_vs(
        "stray",
        "a.example.com",
        &to_tcp("sniHosts: [b.example.com]"),
    );
    let gw = passthrough("'*.example.com'");
    let s = snapshot_of(&[&gw, &vs]);
    let errors = errors(&s);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.tls[0].match[0].sniHosts[0]") && e.contains("not a subset")),
        "{errors:?}"
    );
    // The rejected VirtualService contributes nothing.
    assert_eq!(by_sni(&s, "b.example.com").as_deref(), Some("no-route"));
}

#[test]
fn sni_hosts_are_case_insensitive_and_may_repeat() {
    let vs = tls_vs(
        "pass",
        "'*.example.com'",
        &to_tcp("sniHosts: [A.Example.com, a.example.com]"),
    );
    // The same host twice in one server (two namespaces) is legal and must not trip anything.
    let gw = passthrough("'apps/*.example.com', 'other/*.example.com'");
    let s = snapshot_of(&[&gw, &vs]);
    assert_eq!(
        by_sni(&s, "a.EXAMPLE.com").as_deref(),
        Some("apps/pass.tls[0]")
    );
    assert!(
        s.diagnostics.iter().all(|d| !d.is_error()),
        "{:?}",
        s.diagnostics
    );
}

#[test]
fn l4_matches_use_only_port_and_gateways_at_a_gateway() {
    let vs = tcp_vs(
        "labels",
        "gw",
        &to_tcp("port: 31400, sourceLabels: {app: other}"),
    );
    let s = snapshot_of(&[&tcp_gateway(), &vs]);
    assert_eq!(tcp_route(&s).as_deref(), Some("apps/labels.tcp[0]"));
    assert!(warnings(&s)
        .iter()
        .any(|w| w.contains("spec.tcp[0].match[0].sourceLabels") && w.contains("ignored")));
}
