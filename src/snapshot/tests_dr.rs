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
