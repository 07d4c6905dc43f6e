//! The admin API end to end (reference §6.2): the real binary on loopback, real traffic through
//! it, then each endpoint read as an operator would: `/stats`, `/listeners`, `/clusters`,
//! `/certs`, `/logging`, `/drain_listeners`, `/quitquitquit`, and Envoy's POST-only rule.
//!
//! Every wait is bounded; nothing sleeps in place of an assertion.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::*;

const HOST: &str = "admin.example.com";
const SE_HOST: &str = "backend.admin.internal";

/// A gateway routing [`HOST`] on port 80 to one echo backend.
fn echo_world() -> World {
    World::one_echo("admin", HOST, SE_HOST, &[])
}

fn admin_json(gw: &Gateway, path: &str) -> Value {
    let (status, body) = gw.admin_get(path);
    if status != 200 {
        gw.fail(format!("GET {path} answered {status}: {body}"));
    }
    serde_json::from_str(&body)
        .unwrap_or_else(|e| gw.fail(format!("{path}: not JSON ({e}): {body}")))
}

#[test]
fn stats_count_requests_and_filter_them() {
    let w = echo_world();
    for _ in 0..3 {
        assert_eq!(w.get(HOST, "/", &[]).status, 200);
    }
    let (status, body) =
        w.gw.admin_get("/stats?filter=%5Etollgate_http_requests_total");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.lines()
            .any(|l| l == "tollgate_http_requests_total{code_class=\"2xx\"}: 3"),
        "three 2xx answers counted:\n{body}"
    );
    assert!(
        body.lines()
            .all(|l| l.starts_with("tollgate_http_requests_total{")),
        "the filter keeps only matching stats:\n{body}"
    );
    assert!(body.contains("{code_class=\"5xx\"}: 0"), "{body}");

    let (_, used) =
        w.gw.admin_get("/stats?usedonly&filter=tollgate_http_requests_total");
    assert!(
        !used.contains(": 0\n"),
        "usedonly drops zero stats:\n{used}"
    );
    assert!(used.contains("{code_class=\"2xx\"}: 3"), "{used}");

    let json = admin_json(
        &w.gw,
        "/stats?format=json&filter=tollgate_http_requests_total",
    );
    let two_xx = json["stats"].as_array().and_then(|a| {
        a.iter()
            .find(|s| s["name"] == "tollgate_http_requests_total{code_class=\"2xx\"}")
    });
    assert_eq!(
        two_xx.map(|s| s["value"].clone()),
        Some(Value::from(3.0)),
        "{json}"
    );

    let (status, body) = w.gw.admin_get("/stats?filter=(");
    assert_eq!(status, 400, "a bad regex is the caller's error: {body}");
}

#[test]
fn listeners_show_bound_addresses_and_active_connections() {
    let w = echo_world();
    let json = admin_json(&w.gw, "/listeners?format=json");
    let listener = json["listeners"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["gateway_port"] == 80))
        .cloned()
        .unwrap_or_else(|| w.gw.fail(format!("no port-80 listener in {json}")));
    let bound: SocketAddr = listener["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap();
    assert_eq!(
        bound.port(),
        w.addr.port(),
        "the bound port is the one the harness reaches"
    );
    assert_eq!(listener["class"], "Http", "{listener}");
    assert_eq!(
        listener["gateways"],
        serde_json::json!(["default/edge"]),
        "{listener}"
    );
    let name = format!("{}_80", listener["bind"].as_str().unwrap());
    let (_, text) = w.gw.admin_get("/listeners");
    assert_eq!(text, format!("{name}::{bound}\n"));

    let active = |gw: &Gateway| {
        admin_json(gw, "/listeners?format=json")["listeners"][0]["active_connections"].as_u64()
    };
    assert_eq!(active(&w.gw), Some(0));
    let held = TcpStream::connect(w.addr).unwrap();
    w.gw.wait_until("one active connection", Duration::from_secs(5), || {
        active(&w.gw) == Some(1)
    });
    let gauge = format!("tollgate_downstream_connections_active{{listener=\"{name}\"}} 1");
    let (_, metrics) = w.gw.metrics_get("/stats/prometheus");
    assert!(
        metrics.lines().any(|l| l == gauge),
        "expected `{gauge}` in:\n{metrics}"
    );
    drop(held);
    w.gw.wait_until("no active connection", Duration::from_secs(5), || {
        active(&w.gw) == Some(0)
    });
}

fn outlier_world(good: &ScriptedHttp, bad: &ScriptedHttp) -> World {
    let endpoints: Vec<Endpoint<'_>> = vec![(good.addr(), vec![]), (bad.addr(), vec![])];
    let dr = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: outlier}}\n\
         spec:\n  host: {SE_HOST}\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    \
         connectionPool: {{tcp: {{maxConnections: 7}}}}\n    outlierDetection:\n      \
         consecutive5xxErrors: 1\n      interval: 1s\n      baseEjectionTime: 30s\n      \
         maxEjectionPercent: 100\n"
    );
    let files = [
        ("gateway.yaml", EDGE_GATEWAY.to_string()),
        ("se.yaml", service_entry_80("backend", SE_HOST, &endpoints)),
        (
            "vs.yaml",
            vs(
                "outlier",
                HOST,
                &rule(SE_HOST, "    retries: {attempts: 0}\n"),
            ),
        ),
        ("dr.yaml", dr),
    ];
    World::start(&[], Vec::new(), &files)
}

#[test]
fn clusters_count_requests_and_show_an_ejected_endpoint() {
    let (good, bad) = (ScriptedHttp::start(200), ScriptedHttp::start(500));
    let w = outlier_world(&good, &bad);
    let sent = 10;
    for _ in 0..sent {
        w.get(HOST, "/", &[]);
    }
    assert_eq!(
        bad.served(),
        1,
        "one 500 ejects the failing endpoint for 30 s"
    );
    let cluster = format!("outbound|80||{SE_HOST}");
    let (status, text) = w.gw.admin_get("/clusters");
    assert_eq!(status, 200, "{text}");
    let (g, b) = (good.addr(), bad.addr());
    for line in [
        format!("{cluster}::default_priority::max_connections::7"),
        format!("{cluster}::default_priority::max_requests::4294967295"),
        format!("{cluster}::{g}::health_flags::healthy"),
        format!("{cluster}::{g}::rq_total::{}", good.served()),
        format!("{cluster}::{g}::rq_error::0"),
        format!("{cluster}::{b}::health_flags::/failed_outlier_check"),
        format!("{cluster}::{b}::rq_total::1"),
        format!("{cluster}::{b}::rq_error::1"),
        format!("{cluster}::{b}::outlier_ejections::1"),
        format!("{cluster}::{b}::weight::1"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "expected `{line}` in:\n{text}"
        );
    }
    assert_eq!(good.served(), sent - 1);

    let json = admin_json(&w.gw, "/clusters?format=json");
    let hosts = &json["cluster_statuses"][0]["host_statuses"];
    let ejected = hosts
        .as_array()
        .and_then(|a| a.iter().find(|h| h["address"] == b.to_string()))
        .unwrap_or_else(|| w.gw.fail(format!("{b} not in {json}")));
    assert_eq!(ejected["outlier"]["ejected"], true, "{ejected}");
    assert_eq!(ejected["outlier"]["ejections"], 1, "{ejected}");
    let remaining = ejected["outlier"]["remaining_ms"].as_u64().unwrap_or(0);
    assert!(
        (1..=30_000).contains(&remaining),
        "ejected for 30 s: {ejected}"
    );
    assert_eq!(ejected["stats"]["rq_total"], 1, "{ejected}");
}

/// A CA-signed leaf for `host` with a known serial that expires 400 days and 12 hours from now,
/// in `dir/<name>/tls.{crt,key}`; returns (notAfter as Unix seconds, key PEM).
fn credential(dir: &std::path::Path, name: &str, host: &str) -> (i64, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "admin test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let not_after = now + 400 * 86_400 + 12 * 3600;
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "admin leaf");
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x23, 0x45, 0x67]));
    let base = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = base + Duration::from_secs((not_after - base.unix_timestamp()) as u64);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("tls.crt"), leaf.pem()).unwrap();
    std::fs::write(folder.join("tls.key"), key.serialize_pem()).unwrap();
    (not_after, key.serialize_pem())
}

#[test]
fn certs_show_the_loaded_credential_and_never_its_key() {
    let certs = tempfile::tempdir().unwrap();
    let (not_after, key_pem) = credential(certs.path(), "admin-cert", "certs.example.test");
    let backend = EchoBackend::start("certs", "v1");
    let dir = ConfigDir::new();
    dir.write(
        "se.yaml",
        &service_entry("certs", "certs.internal", 80, &[(backend.addr, &[])]),
    );
    let tls = "{mode: SIMPLE, credentialName: admin-cert}";
    let hosts = "[certs.example.test]";
    dir.write(
        "gw.yaml",
        &https_gateway("certs", hosts, tls, hosts, "certs.internal"),
    );
    let certs_dir = certs.path().display().to_string();
    let gw = Gateway::start(
        dir.path(),
        &["--certs-dir", &certs_dir, "--port-map", "443=0"],
    );
    gw.listener(443);

    let (status, body) = gw.admin_get("/certs");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("PRIVATE KEY"), "{body}");
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!body.contains(&key_body[..40]), "no key material: {body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    let entry = &json["certificates"][0];
    assert_eq!(entry["name"], "admin-cert", "{json}");
    assert_eq!(
        json["certificates"].as_array().map(Vec::len),
        Some(1),
        "{json}"
    );
    let leaf = &entry["cert_chain"][0];
    assert_eq!(leaf["subject"], "CN=admin leaf", "{leaf}");
    assert_eq!(leaf["issuer"], "CN=admin test CA", "{leaf}");
    assert_eq!(leaf["serial_number"], "01234567", "{leaf}");
    assert_eq!(
        leaf["subject_alt_names"],
        serde_json::json!([{"dns": "certs.example.test"}])
    );
    assert_eq!(leaf["expiration_unix_seconds"], not_after, "{leaf}");
    assert_eq!(leaf["days_until_expiration"], 400, "{leaf}");

    let (_, metrics) = gw.metrics_get("/stats/prometheus");
    let prefix = "tollgate_certificate_expiry_timestamp_seconds{credential=\"admin-cert\"} ";
    let value = metrics.lines().find_map(|l| l.strip_prefix(prefix));
    assert_eq!(
        value.and_then(|v| v.parse::<f64>().ok()),
        Some(not_after as f64),
        "{metrics}"
    );
}

/// Sends a request line hyper cannot parse and waits for the gateway to close the connection.
fn bad_request(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

fn http_debug_lines(gw: &Gateway) -> usize {
    gw.stderr()
        .lines()
        .filter(|l| l.contains(" DEBUG ") && l.contains("tollgate::http"))
        .count()
}

#[test]
fn logging_lists_levels_and_changes_them_live() {
    let w = echo_world();
    let (status, body) = w.gw.admin_get("/logging");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("active loggers:\n"), "{body}");
    assert!(
        body.contains("\n  http: info\n") && body.contains("\n  upstream: info\n"),
        "{body}"
    );

    let (status, body) = w.gw.admin_get("/logging?http=debug");
    assert_eq!(status, 400, "a GET must not change levels: {body}");
    assert!(body.contains("POST"), "{body}");
    bad_request(w.addr);
    assert_eq!(http_debug_lines(&w.gw), 0, "at info, no debug line yet");

    let (status, body) = w.gw.admin_post("/logging?http=loud");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown level \"loud\""), "{body}");
    let (status, body) = w.gw.admin_post("/logging?nosuchlogger=debug");
    assert_eq!(status, 400, "{body}");
    assert!(
        w.gw.admin_get("/logging").1.contains("\n  http: info\n"),
        "errors change nothing"
    );

    let (status, body) = w.gw.admin_post("/logging?http=debug");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\n  http: debug\n") && body.contains("\n  tls: info\n"),
        "{body}"
    );
    bad_request(w.addr);
    w.gw.wait_until(
        "a debug line from tollgate::http",
        Duration::from_secs(5),
        || http_debug_lines(&w.gw) > 0,
    );

    let (status, body) =
        w.gw.admin_post("/logging?paths=tls:trace,tollgate::route::matcher:error");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\n  tls: trace\n"), "{body}");
    assert!(
        body.contains("\n  tollgate::route::matcher: error\n"),
        "{body}"
    );
    let (_, body) = w.gw.admin_post("/logging?level=warning");
    assert!(
        body.lines().skip(1).all(|l| l.ends_with(": warning")),
        "{body}"
    );
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
fn read_response(reader: &mut BufReader<TcpStream>) -> u16 {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn drain_listeners_closes_gateway_ports_and_keeps_open_connections() {
    let w = echo_world();
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let held = TcpStream::connect(w.addr).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(held.try_clone().unwrap());
    (&held).write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response(&mut reader), 200);

    let (status, body) = w.gw.admin_get("/drain_listeners");
    assert_eq!(status, 400, "{body}");
    assert_eq!(w.gw.admin_get("/ready"), (200, "LIVE\n".into()));
    assert_eq!(w.gw.admin_post("/drain_listeners"), (200, "OK\n".into()));

    let refused = TcpStream::connect_timeout(&w.addr, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "new connections are refused after a drain"
    );
    assert_eq!(w.gw.admin_get("/ready"), (503, "DRAINING\n".into()));
    assert_eq!(w.gw.health_get("/healthz/ready").0, 503);
    assert_eq!(w.gw.admin_get("/listeners").1, "", "no listener left");
    w.gw.wait_closed(80);

    (&held).write_all(request.as_bytes()).unwrap();
    assert_eq!(
        read_response(&mut reader),
        200,
        "an open connection keeps being served"
    );

    // `?graceful` also asks open connections to close: the idle one is closed by the gateway.
    assert_eq!(
        w.gw.admin_post("/drain_listeners?graceful"),
        (200, "OK\n".into())
    );
    let mut rest = Vec::new();
    let closed = reader.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)),
        "the idle connection is closed after a graceful drain: {closed:?} {rest:?}"
    );
}

#[test]
fn quitquitquit_exits_cleanly_and_unknown_paths_list_the_endpoints() {
    let w = echo_world();
    let (status, body) = w.gw.admin_get("/nope");
    assert_eq!(status, 404);
    assert!(
        body.contains("/clusters") && body.contains("POST /quitquitquit"),
        "{body}"
    );

    assert_eq!(w.gw.admin_get("/quitquitquit").0, 400, "GET does not quit");
    assert_eq!(w.gw.admin_post("/quitquitquit"), (200, "OK\n".into()));
    let Some(exit) = w.gw.wait_exit(Duration::from_secs(5)) else {
        w.gw.fail("still running 5 s after /quitquitquit");
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(w.gw.stderr().contains("shutting down"), "as on SIGTERM");
}

#[test]
fn the_admin_api_stays_on_loopback_unless_explicitly_allowed() {
    let config = ConfigDir::new();
    config.write("gateway.yaml", EDGE_GATEWAY);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["run", "--config-dir"])
        .arg(config.path())
        .args([
            "--admin-addr",
            "0.0.0.0:0",
            "--health-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = poll(Duration::from_secs(20), || child.try_wait().ok().flatten());
    let Some(status) = exited else {
        let _ = child.kill();
        panic!("tollgate served a non-loopback admin address without --admin-allow-remote");
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("--admin-addr 0.0.0.0:0 is not a loopback address")
            && stderr.contains("--admin-allow-remote"),
        "{stderr}"
    );

    let gw = Gateway::start(
        config.path(),
        &["--admin-allow-remote", "--admin-addr", "0.0.0.0:0"],
    );
    assert!(
        gw.stdout_lines()
            .iter()
            .any(|l| l.starts_with("LISTEN admin address=0.0.0.0:")),
        "bound as asked: {:?}",
        gw.stdout_lines()
    );
    assert_eq!(gw.admin_get("/ready"), (200, "LIVE\n".into()));
}
