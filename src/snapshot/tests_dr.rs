//! DestinationRule traffic policy composition per cluster (reference §3.2).

use super::tests::{gateway, snapshot};
use crate::upstream::{HashOn, LbPolicy};

const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: be, namespace: apps}\nspec:\n  hosts: [be.apps.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: http2, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1, labels: {v: one}}, {address: 127.0.0.2, labels: {v: two}}]\n";

/// Routes on port 80 to `be` port `port`, optionally a subset.
fn routes(targets: &[(u16, &str)]) -> String {
    let mut http = String::new();
    for (i, (port, subset)) in targets.iter().enumerate() {
        let subset = if subset.is_empty() {
            String::new()
        } else {
            format!(", subset: {subset}")
        };
        http.push_str(&format!(
            "  - match: [{{uri: {{prefix: /r{i}}}}}]\n    route: [{{destination: {{host: be, port: {{number: {port}}}{subset}}}}}]\n"
        ));
    }
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: apps}}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n{http}")
}

fn lb_of(dr: &str, cluster: &str) -> LbPolicy {
    let gw = gateway(
        "gw",
        "istio: ingressgateway",
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n",
    );
    let vs = routes(&[(80, ""), (81, ""), (80, "one"), (81, "one")]);
    let s = snapshot(&[SE, &gw, &vs, dr].join("---\n"));
    let errors: Vec<_> = s.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    s.clusters
        .get(cluster)
        .unwrap_or_else(|| panic!("no cluster {cluster}: {:?}", s.clusters.keys()))
        .spec
        .lb
        .clone()
}

const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: be, namespace: apps}\nspec:\n  host: be\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    portLevelSettings:\n    - port: {number: 81}\n      connectionPool: {tcp: {maxConnections: 1}}\n  subsets:\n  - name: one\n    labels: {v: one}\n    trafficPolicy:\n      loadBalancer: {consistentHash: {httpHeaderName: X-User}}\n      portLevelSettings:\n      - port: {number: 81}\n        loadBalancer: {simple: RANDOM}\n";

#[test]
fn top_level_policy_applies_to_the_host() {
    assert_eq!(
        lb_of(DR, "outbound|80||be.apps.svc.cluster.local"),
        LbPolicy::RoundRobin
    );
}

#[test]
fn port_level_settings_replace_the_components_wholesale() {
    // Port 81's entry sets only connectionPool: the load balancer falls back to the default.
    assert_eq!(
        lb_of(DR, "outbound|81||be.apps.svc.cluster.local"),
        LbPolicy::LeastRequest
    );
}

#[test]
fn a_subset_policy_overrides_component_wise_then_its_port_level_settings() {
    assert_eq!(
        lb_of(DR, "outbound|80|one|be.apps.svc.cluster.local"),
        LbPolicy::ConsistentHash(HashOn::Header("x-user".into()))
    );
    assert_eq!(
        lb_of(DR, "outbound|81|one|be.apps.svc.cluster.local"),
        LbPolicy::Random
    );
}

#[test]
fn without_a_destination_rule_the_default_is_least_request() {
    assert_eq!(
        lb_of("", "outbound|80||be.apps.svc.cluster.local"),
        LbPolicy::LeastRequest
    );
}

fn snapshot_with(dr: &str) -> super::Snapshot {
    let gw = gateway(
        "gw",
        "istio: ingressgateway",
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n",
    );
    let vs = routes(&[(80, ""), (81, ""), (80, "one")]);
    snapshot(&[SE, &gw, &vs, dr].join("---\n"))
}

const OUTLIER_DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: be, namespace: apps}\nspec:\n  host: be\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 2, baseEjectionTime: 5s}\n    portLevelSettings:\n    - port: {number: 81}\n      loadBalancer: {simple: RANDOM}\n  subsets:\n  - name: one\n    labels: {v: one}\n    trafficPolicy:\n      outlierDetection: {consecutiveGatewayErrors: 1, maxEjectionPercent: 100}\n";

#[test]
fn outlier_detection_composes_with_istio_s_defaults() {
    use std::time::Duration;
    let s = snapshot_with(OUTLIER_DR);
    let spec = |name: &str| s.clusters[name].spec.outlier;
    let top = spec("outbound|80||be.apps.svc.cluster.local").expect("top-level rule");
    assert_eq!(
        (top.consecutive_5xx, top.consecutive_gateway),
        (2, 0),
        "gateway errors are off unless set"
    );
    assert_eq!(top.base_ejection_time, Duration::from_secs(5));
    assert_eq!(top.interval, Duration::from_secs(10));
    assert_eq!(top.max_ejection_percent, 10);
    assert_eq!(
        spec("outbound|81||be.apps.svc.cluster.local"),
        None,
        "a port-level entry replaces all four components"
    );
    // The subset's block replaces the top-level one whole: its unset fields take the defaults.
    let subset = spec("outbound|80|one|be.apps.svc.cluster.local").expect("subset rule");
    assert_eq!((subset.consecutive_5xx, subset.consecutive_gateway), (5, 1));
    assert_eq!(subset.max_ejection_percent, 100);
    assert_eq!(subset.base_ejection_time, Duration::from_secs(30));
}

#[test]
fn upstream_tls_material_that_does_not_load_is_an_error_of_the_rule() {
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: be, namespace: apps}\nspec:\n  host: be\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 81}\n      tls: {mode: SIMPLE, caCertificates: /nonexistent/ca.pem}\n";
    let s = snapshot_with(dr);
    let errors: Vec<_> = s.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].field,
        "spec.trafficPolicy.portLevelSettings[0].tls"
    );
    assert!(
        errors[0].message.contains("/nonexistent/ca.pem"),
        "{}",
        errors[0].message
    );
    let tls = |name: &str| s.clusters[name].spec.transport.tls.clone();
    assert!(tls("outbound|81||be.apps.svc.cluster.local").is_some_and(|t| t.material.is_err()));
    assert!(tls("outbound|80||be.apps.svc.cluster.local").is_none());
}

#[test]
fn a_dns_subset_selects_declared_endpoints_and_never_falls_back_to_the_host() {
    let se = SE.replace("resolution: STATIC", "resolution: DNS");
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: be, namespace: apps}\nspec:\n  host: be\n  subsets:\n  - {name: one, labels: {v: one}}\n  - {name: nine, labels: {v: nine}}\n";
    let gw = gateway(
        "gw",
        "istio: ingressgateway",
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n",
    );
    let vs = routes(&[(80, ""), (80, "one"), (80, "nine")]);
    let s = snapshot(&[se.as_str(), &gw, &vs, dr].join("---\n"));
    let targets = |cluster: &str| -> Vec<String> {
        match &s.clusters[cluster].spec.source {
            crate::upstream::EndpointSource::Dns(targets) => {
                targets.iter().flat_map(|t| t.candidates.clone()).collect()
            }
            other => panic!("{cluster}: not DNS: {other:?}"),
        }
    };
    assert_eq!(
        targets("outbound|80||be.apps.svc.cluster.local"),
        ["127.0.0.1", "127.0.0.2"]
    );
    assert_eq!(
        targets("outbound|80|one|be.apps.svc.cluster.local"),
        ["127.0.0.1"]
    );
    // Istio gives a subset that selects nothing no endpoints (503), not the whole service.
    assert!(targets("outbound|80|nine|be.apps.svc.cluster.local").is_empty());
}
