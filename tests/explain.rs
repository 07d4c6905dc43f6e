//! `tollgate explain` and admin `/debug/route` end to end: the real binary on Istio YAML written
//! here, asked about a matched route, a Host not on the gateway, a request no route matches, an
//! SNI no server takes, a destination without endpoints, httpsRedirect and a passthrough SNI.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The repository's demo credentials (`webapp-credential` among them).
fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

const GATEWAY: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.test]
  - port: {number: 80, name: http-secure, protocol: HTTP}
    hosts: [secure.test]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.test]
    tls: {mode: SIMPLE, credentialName: webapp-credential}
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [pass.test]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.test, a.test, secure.test]
  gateways: [istio-system/edge]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
      headers: {x-user: {exact: jason}}
    route:
    - destination: {host: api.test}
  - name: web
    match:
    - uri: {prefix: /web}
      method: {exact: POST}
    route:
    - destination: {host: api.test}
  - name: empty
    match:
    - uri: {prefix: /empty}
    route:
    - destination: {host: empty.test}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass}
spec:
  hosts: [pass.test]
  gateways: [istio-system/edge]
  tls:
  - match: [{sniHosts: [pass.test]}]
    route:
    - destination: {host: api.test}
"#;

/// The gateway above, `api.test` on a static endpoint and `empty.test` with none.
fn config() -> ConfigDir {
    let dir = ConfigDir::new();
    dir.write("gateway.yaml", GATEWAY);
    let api: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let entries = [
        service_entry("api", "api.test", 80, &[(api, &[])]),
        service_entry("empty", "empty.test", 80, &[]),
    ];
    dir.write("services.yaml", &entries.join("---\n"));
    dir
}

struct Explained {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Explained {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "explain output is not JSON ({e}):\n{}\n--- stderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// `tollgate explain --config-dir <dir> --certs-dir certs/ <args...>`, bounded at 30 s.
fn explain(dir: &Path, args: &[&str]) -> Explained {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("explain")
        .arg("--config-dir")
        .arg(dir)
        .arg("--certs-dir")
        .arg(certs())
        .args(args);
    let out = run_bounded(&mut cmd, b"", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("tollgate explain {args:?} did not exit within 30 s"));
    Explained {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `explain --json`, asserting the exit code; returns the JSON.
fn explain_json(dir: &Path, args: &[&str], code: i32) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = explain(dir, &all);
    assert_eq!(
        out.code,
        Some(code),
        "exit code of explain {args:?}\n{}\n--- stderr:\n{}",
        out.stdout,
        out.stderr
    );
    out.json()
}

#[test]
fn matched_route_names_the_route_the_cluster_and_its_endpoints() {
    let dir = config();
    let v = explain_json(
        dir.path(),
        &["http://shop.test/api/items", "-H", "x-user: jason"],
        0,
    );
    assert_eq!(v["outcome"]["kind"], "forward", "{v:#}");
    assert_eq!(v["listener"]["port"], 80);
    assert_eq!(v["route_table"]["name"], "http.80");
    assert_eq!(v["virtual_host"]["domain"], "shop.test");
    assert_eq!(v["matched_route"], "default/shop.http[0].api");
    assert_eq!(v["routes"].as_array().map(Vec::len), Some(1));
    let d = &v["destinations"][0];
    assert_eq!(d["cluster"], "outbound|80||api.test");
    assert_eq!(d["percent"], 100.0);
    assert_eq!(d["endpoints"][0]["address"], "127.0.0.1:9");
    assert_eq!(d["endpoints"][0]["healthy"], true);
}

#[test]
fn host_not_on_the_gateway_is_404_listing_the_domains() {
    let dir = config();
    // A NodePort in the Host, the classic §7 case: the gateway port is 80.
    let v = explain_json(dir.path(), &["http://other.test:31380/", "--port", "80"], 2);
    assert_eq!(v["outcome"]["kind"], "no_route", "{v:#}");
    assert_eq!(v["outcome"]["status"], 404);
    assert_eq!(v["outcome"]["flag"], "NR");
    assert_eq!(
        v["outcome"]["message"],
        "404 NR: Host other.test:31380 not in [shop.test, secure.test] of http.80"
    );
    assert_eq!(
        v["route_table"]["domains"],
        serde_json::json!(["shop.test", "secure.test"])
    );
}

#[test]
fn no_route_matched_names_the_closest_route_and_why_each_failed() {
    let dir = config();
    let v = explain_json(dir.path(), &["http://shop.test/web/cart"], 2);
    assert_eq!(v["outcome"]["kind"], "no_route", "{v:#}");
    assert_eq!(v["outcome"]["status"], 404);
    assert_eq!(v["routes"][0]["name"], "default/shop.http[0].api");
    assert_eq!(
        v["routes"][0]["failed"][0],
        "uri prefix /api does not match /web/cart"
    );
    assert_eq!(v["closest_route"]["name"], "default/shop.http[1].web");
    assert_eq!(
        v["closest_route"]["failed"],
        serde_json::json!(["method exact \"POST\" does not match \"GET\""])
    );
    assert!(v.get("matched_route").is_none(), "{v:#}");
}

#[test]
fn text_output_numbers_the_steps_and_ends_with_the_outcome() {
    let dir = config();
    let out = explain(dir.path(), &["http://shop.test/web/cart"]);
    assert_eq!(out.code, Some(2), "{}\n{}", out.stdout, out.stderr);
    let want = "GET http://shop.test/web/cart\n\
        1. listener: gateway port 80 (bind 0.0.0.0, Http) of istio-system/edge (default port 80)\n\
        2. route table http.80: virtual host shop.test (exact shop.test)\n\
        3. route #0 default/shop.http[0].api: no match: uri prefix /api does not match /web/cart\n\
        4. route #1 default/shop.http[1].web: no match: method exact \"POST\" does not match \"GET\"\n\
        5. route #2 default/shop.http[2].empty: no match: uri prefix /empty does not match /web/cart\n\
        \x20  closest route: default/shop.http[1].web (method exact \"POST\" does not match \"GET\")\n\
        => 404 NR: no route of virtual host shop.test matched; closest is default/shop.http[1].web (failed: method exact \"POST\" does not match \"GET\")\n";
    assert_eq!(out.stdout, want);
}

#[test]
fn sni_matching_no_server_fails_the_handshake() {
    let dir = config();
    let v = explain_json(dir.path(), &["https://nope.test/"], 2);
    assert_eq!(v["outcome"]["kind"], "tls_handshake_failure", "{v:#}");
    assert_eq!(
        v["outcome"]["message"],
        "TLS handshake fails: SNI nope.test matches no server on port 443 (servers: a.test, pass.test)"
    );
    // The same Host with the server's SNI is served by that server's own route table.
    let v = explain_json(
        dir.path(),
        &["https://a.test/api", "-H", "x-user: jason"],
        0,
    );
    assert_eq!(
        v["tls"]["server"], "https.443.https.edge.istio-system",
        "{v:#}"
    );
    assert_eq!(v["tls"]["matched_by"], "exact a.test");
    assert_eq!(
        v["route_table"]["name"],
        "https.443.https.edge.istio-system"
    );
}

#[test]
fn destination_without_endpoints_is_503_no_healthy_upstream() {
    let dir = config();
    let v = explain_json(dir.path(), &["http://shop.test/empty"], 2);
    assert_eq!(v["outcome"]["kind"], "no_healthy_upstream", "{v:#}");
    assert_eq!(v["outcome"]["status"], 503);
    assert_eq!(v["outcome"]["flag"], "UH");
    let d = &v["destinations"][0];
    assert_eq!(d["cluster"], "outbound|80||empty.test");
    assert_eq!(d["endpoints"], serde_json::json!([]));
    assert_eq!(
        d["problem"],
        "cluster outbound|80||empty.test has no endpoints"
    );
}

#[test]
fn https_redirect_and_passthrough_sni() {
    let dir = config();
    let v = explain_json(dir.path(), &["http://secure.test/p?q=1"], 0);
    assert_eq!(v["outcome"]["kind"], "redirect", "{v:#}");
    assert_eq!(v["outcome"]["status"], 301);
    assert_eq!(v["outcome"]["location"], "https://secure.test/p?q=1");
    let v = explain_json(dir.path(), &["https://pass.test/"], 0);
    assert_eq!(v["outcome"]["kind"], "stream_forward", "{v:#}");
    assert_eq!(v["tls"]["mode"], "passthrough");
    assert_eq!(v["stream_route"], "default/pass.tls[0]");
    assert_eq!(v["destinations"][0]["cluster"], "outbound|80||api.test");
}

#[test]
fn missing_listener_and_missing_config_dir() {
    let dir = config();
    let v = explain_json(dir.path(), &["http://shop.test:8080/"], 2);
    assert_eq!(
        v["outcome"]["message"],
        "connection refused: no Gateway server on port 8080 (ports: 80, 443)"
    );
    let out = explain(&dir.path().join("absent"), &["http://shop.test/"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
}

#[test]
fn debug_route_on_a_running_gateway_gives_the_cli_answer() {
    let dir = config();
    let certs = certs().display().to_string();
    let gw = Gateway::start(
        dir.path(),
        &[
            "--certs-dir",
            &certs,
            "--port-map",
            "80=0",
            "--port-map",
            "443=0",
        ],
    );
    let cases: [(&str, &[&str], i32); 3] = [
        (
            "/debug/route?host=shop.test&path=/web/cart",
            &["http://shop.test/web/cart"],
            2,
        ),
        (
            "/debug/route?host=shop.test&path=%2Fapi%2Fx&header=x-user:%20jason",
            &["http://shop.test/api/x", "-H", "x-user: jason"],
            0,
        ),
        (
            "/debug/route?host=nope.test&sni=nope.test",
            &["https://nope.test/"],
            2,
        ),
    ];
    for (path, args, code) in cases {
        let (status, body) = gw.admin_get(path);
        assert_eq!(status, 200, "{path}: {body}");
        let live: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| gw.fail(format!("{path} is not JSON ({e}): {body}")));
        let offline = explain_json(dir.path(), args, code);
        assert_eq!(live, offline, "{path}");
    }
    let (status, text) = gw.admin_get("/debug/route?host=shop.test&path=/empty&format=text");
    assert_eq!(status, 200);
    assert!(
        text.ends_with(
            "=> 503 UH \"no healthy upstream\": cluster outbound|80||empty.test has no endpoints\n"
        ),
        "{text}"
    );
    let (status, body) = gw.admin_get("/debug/route?path=/");
    assert_eq!(
        (status, body.lines().next()),
        (400, Some("host is required"))
    );
}
