//! Generated configurations shared by the benches.

use std::fmt::Write as _;
use std::path::Path;

/// A Gateway exposing `*` on port 80 and `count` VirtualServices, one host each
/// (`host-<i>.example.com`, every tenth a wildcard `*.w<i>.example.com`), each with a few
/// match rules, all routing to one STATIC ServiceEntry.
pub fn write_config(dir: &Path, count: usize) {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: backend}\nspec:\n  hosts: [backend.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: backend}\nspec:\n  host: backend.internal\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n",
    );
    for i in 0..count {
        let host = if i % 10 == 9 {
            format!("\"*.w{i}.example.com\"")
        } else {
            format!("host-{i}.example.com")
        };
        let _ = write!(
            yaml,
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{i}}}\nspec:\n  hosts: [{host}]\n  gateways: [edge]\n  http:\n  - match: [{{uri: {{prefix: /api}}, headers: {{x-canary: {{exact: \"yes\"}}}}}}]\n    route: [{{destination: {{host: backend.internal, subset: v2}}}}]\n  - match: [{{uri: {{regex: \"/items/[0-9]+\"}}}}]\n    route: [{{destination: {{host: backend.internal, subset: v1}}}}]\n  - route:\n    - {{destination: {{host: backend.internal, subset: v1}}, weight: 90}}\n    - {{destination: {{host: backend.internal, subset: v2}}, weight: 10}}\n"
        );
    }
    std::fs::write(dir.join("config.yaml"), yaml).expect("write bench config");
}
