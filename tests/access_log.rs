//! Envoy's access log end to end (reference §5.4): lines for HTTP requests (200, 404 `NR`, 503
//! `UF,URX`), TCP streams and TLS passthrough streams parsed field by field in Istio's default TEXT
//! format, the JSON encoding, the `Telemetry` resource turning logging on and off live, a stuck
//! sink that must not hold requests up, and the request id and trace headers carried through.
//!
//! Every wait is bounded (seconds); traffic only goes to 127.0.0.1.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use support::*;

/// Istio's default TEXT format, one capture per operator, in order.
const TEXT_FORMAT: &str = r#"^\[(?P<start>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" (?P<code>\d+) (?P<flags>\S+) (?P<details>\S+) (?P<termination>\S+) "(?P<failure>[^"]*)" (?P<received>\d+) (?P<sent>\d+) (?P<duration>\d+) (?P<service_time>\S+) "(?P<xff>[^"]*)" "(?P<user_agent>[^"]*)" "(?P<request_id>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)" (?P<cluster>\S+) (?P<upstream_local>\S+) (?P<downstream_local>\S+) (?P<downstream_remote>\S+) (?P<sni>\S+) (?P<route>\S+)$"#;

/// One parsed line: operator name → value.
type Line = HashMap<String, String>;

fn parse(line: &str) -> Option<Line> {
    let re = Regex::new(TEXT_FORMAT).unwrap();
    let caps = re.captures(line)?;
    Some(
        re.capture_names()
            .flatten()
            .map(|n| (n.to_string(), caps[n].to_string()))
            .collect(),
    )
}

/// The log file's lines, once at least `n` are there (at most 10 s).
fn lines_when(gw: &Gateway, path: &Path, n: usize) -> Vec<String> {
    let read = || {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    poll(Duration::from_secs(10), || {
        let lines = read();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| {
        gw.fail(format!(
            "expected {n} access log lines in {}, got:\n{}",
            path.display(),
            read().join("\n")
        ))
    })
}

/// The parsed line whose `field` is `value`; fails with every line otherwise.
fn find<'a>(gw: &Gateway, lines: &'a [Line], field: &str, value: &str) -> &'a Line {
    lines
        .iter()
        .find(|l| l.get(field).map(String::as_str) == Some(value))
        .unwrap_or_else(|| {
            gw.fail(format!(
                "no access log line with {field}={value}: {lines:#?}"
            ))
        })
}

fn parse_all(gw: &Gateway, lines: &[String]) -> Vec<Line> {
    lines
        .iter()
        .map(|l| parse(l).unwrap_or_else(|| gw.fail(format!("not Envoy's default format: {l:?}"))))
        .collect()
}

/// `edge` on port 80, `a.example.com` → an echo backend (rule named `to-a`), `dead.example.com`
/// → a closed port; the gateway runs with `args`.
fn http_world(args: &[&str]) -> World {
    let echo = EchoBackend::start("a", "v1");
    let dead: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
    let entries = [
        service_entry_80("a", "a.internal", &[echo_endpoint(&echo)]),
        service_entry_80("dead", "dead.internal", &[(dead, vec![])]),
    ]
    .join("---\n");
    let routes = [
        vs(
            "a",
            "a.example.com",
            "  - name: to-a\n    route: [{destination: {host: a.internal}}]\n",
        ),
        vs_to("dead", "dead.example.com", "dead.internal"),
    ]
    .join("---\n");
    World::start(
        args,
        vec![echo],
        &[
            ("gateway.yaml", EDGE_GATEWAY.to_string()),
            ("backends.yaml", entries),
            ("routes.yaml", routes),
        ],
    )
}

#[test]
fn http_lines_follow_envoys_default_format_field_by_field() {
    let log = tempfile::tempdir().unwrap();
    let path = log.path().join("access.log");
    let w = http_world(&["--access-log", path.to_str().unwrap()]);
    let trace = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "vendor=opaque"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
        ("user-agent", "access-log-test/1.0"),
    ];
    let ok = w.get("a.example.com", "/hello?x=1", &trace);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = ok.json();
    for (name, value) in trace {
        assert_eq!(
            seen["headers"][name], value,
            "{name} reaches the upstream unchanged: {seen}"
        );
    }
    let upstream_id = seen["headers"]["x-request-id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(upstream_id.len(), 36, "a UUID request id upstream: {seen}");
    let missing = w.get("nope.example.com", "/x", &[]);
    assert_eq!(missing.status, 404);
    let refused = w.get("dead.example.com", "/", &[]);
    assert_eq!(refused.status, 503, "{}", refused.body);

    let lines = parse_all(&w.gw, &lines_when(&w.gw, &path, 3));
    let gateway = w.addr.to_string();
    let echo = w.backend("a", "v1").addr.to_string();

    let l = find(&w.gw, &lines, "code", "200");
    let expect = [
        ("method", "GET"),
        ("path", "/hello?x=1"),
        ("protocol", "HTTP/1.1"),
        ("flags", "-"),
        ("details", "via_upstream"),
        ("termination", "-"),
        ("failure", "-"),
        ("received", "0"),
        ("xff", "127.0.0.1"),
        ("user_agent", "access-log-test/1.0"),
        ("request_id", &upstream_id),
        ("authority", "a.example.com"),
        ("upstream_host", &echo),
        ("cluster", "outbound|80||a.internal"),
        ("downstream_local", &gateway),
        ("sni", "-"),
        ("route", "to-a"),
    ];
    for (field, want) in expect {
        assert_eq!(l[field], want, "field {field} of {l:#?}");
    }
    assert_eq!(l["sent"], ok.body.len().to_string(), "bytes sent = body");
    assert!(l["service_time"].parse::<u64>().is_ok(), "{l:#?}");
    assert!(l["downstream_remote"].starts_with("127.0.0.1:"), "{l:#?}");
    assert!(
        l["start"].ends_with('Z') && l["start"].len() == "2026-01-02T03:04:05.678Z".len(),
        "start time in UTC with ms: {l:#?}"
    );

    let l = find(&w.gw, &lines, "code", "404");
    for (field, want) in [
        ("flags", "NR"),
        ("details", "route_not_found"),
        ("upstream_host", "-"),
        ("cluster", "-"),
        ("service_time", "-"),
        ("authority", "nope.example.com"),
        ("route", "-"),
    ] {
        assert_eq!(l[field], want, "field {field} of {l:#?}");
    }
    assert_eq!(
        Some(l["request_id"].as_str()),
        missing.header("x-request-id"),
        "the 404's x-request-id is the logged one"
    );

    let l = find(&w.gw, &lines, "code", "503");
    // Istio's default retry policy retries connect failures twice: then the limit is hit.
    assert_eq!(l["flags"], "UF,URX", "{l:#?}");
    assert_eq!(
        l["details"],
        "upstream_reset_before_response_started{remote_connection_failure,delayed_connect_error:_Connection_refused}"
    );
    assert_eq!(l["failure"], "delayed_connect_error:_Connection_refused");
    assert_eq!(l["cluster"], "outbound|80||dead.internal");
    assert!(l["upstream_host"].starts_with("127.0.0.1:"), "{l:#?}");
}

#[test]
fn json_encoding_uses_envoys_keys() {
    let log = tempfile::tempdir().unwrap();
    let path = log.path().join("access.json");
    let w = http_world(&[
        "--access-log",
        path.to_str().unwrap(),
        "--access-log-format",
        "json",
    ]);
    assert_eq!(w.get("a.example.com", "/j", &[]).status, 200);
    assert_eq!(w.get("nope.example.com", "/", &[]).status, 404);
    let lines = lines_when(&w.gw, &path, 2);
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| w.gw.fail(format!("{e}: {l}"))))
        .collect();
    let ok = entries
        .iter()
        .find(|e| e["response_code"] == 200)
        .unwrap_or_else(|| w.gw.fail(format!("no 200 entry: {entries:#?}")));
    for key in [
        "start_time",
        "route_name",
        "method",
        "path",
        "protocol",
        "response_code",
        "response_flags",
        "response_code_details",
        "connection_termination_details",
        "bytes_received",
        "bytes_sent",
        "duration",
        "upstream_service_time",
        "x_forwarded_for",
        "user_agent",
        "request_id",
        "authority",
        "upstream_host",
        "upstream_cluster",
        "upstream_local_address",
        "downstream_local_address",
        "downstream_remote_address",
        "requested_server_name",
        "upstream_transport_failure_reason",
    ] {
        assert!(ok.get(key).is_some(), "key {key} missing: {ok}");
    }
    assert_eq!(ok["path"], "/j");
    assert_eq!(ok["upstream_cluster"], "outbound|80||a.internal");
    assert_eq!(ok["route_name"], "to-a");
    assert!(ok["duration"].is_u64(), "numbers are JSON numbers: {ok}");
    assert!(ok["requested_server_name"].is_null(), "unset is null: {ok}");
    let nr = entries.iter().find(|e| e["response_code"] == 404).unwrap();
    assert_eq!(nr["response_flags"], "NR");
    assert!(nr["upstream_host"].is_null());
}

#[test]
fn tcp_and_passthrough_streams_get_a_line_each() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("access.log");
    let echo = TcpEcho::start();
    let (cert, key) = self_signed(tmp.path(), "pass", "pass.example.com");
    let tls_backend = OpensslServer::start(&cert, &key);
    let config = ConfigDir::new();
    config.write(
        "gateway.yaml",
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: l4}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: [\"*\"]
  - port: {number: 8443, name: tls, protocol: TLS}
    hosts: [pass.example.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: l4}
spec:
  hosts: [\"*\"]
  gateways: [l4]
  tcp:
  - match: [{port: 31400}]
    route: [{destination: {host: echo.l4.internal, port: {number: 2701}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass}
spec:
  hosts: [pass.example.com]
  gateways: [l4]
  tls:
  - match: [{port: 8443, sniHosts: [pass.example.com]}]
    route: [{destination: {host: pass.l4.internal, port: {number: 443}}}]
",
    );
    config.write(
        "backends.yaml",
        &[
            l4_service_entry("echo", "echo.l4.internal", 2701, "TCP", &[echo.addr]),
            l4_service_entry("pass", "pass.l4.internal", 443, "TLS", &[tls_backend.addr]),
        ]
        .join("---\n"),
    );
    let gw = Gateway::start(
        config.path(),
        &[
            "--port-map",
            "31400=0",
            "--port-map",
            "8443=0",
            "--access-log",
            path.to_str().unwrap(),
        ],
    );
    let tcp = gw.listener(31400);
    let tls = gw.listener(8443);
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"twelve bytes").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        let _ = s.read_to_end(&mut back);
        assert_eq!(back, b"twelve bytes");
    }
    let resolve = format!("pass.example.com:{}:127.0.0.1", tls.port());
    let url = format!("https://pass.example.com:{}/", tls.port());
    let passed = curl(&["-k", "--resolve", &resolve, &url]);
    assert_eq!(
        passed.status, 200,
        "s_server answers through the passthrough: {passed:?}"
    );
    let unknown = format!("other.example.com:{}:127.0.0.1", tls.port());
    let other = format!("https://other.example.com:{}/", tls.port());
    let refused = curl(&["-k", "--resolve", &unknown, &other]);
    assert_ne!(refused.exit_code, 0, "no server for other.example.com");

    let lines = parse_all(&gw, &lines_when(&gw, &path, 3));
    let l = find(&gw, &lines, "cluster", "outbound|2701||echo.l4.internal");
    for (field, want) in [
        ("method", "-"),
        ("path", "-"),
        ("protocol", "-"),
        ("code", "0"),
        ("flags", "-"),
        ("received", "12"),
        ("sent", "12"),
        ("upstream_host", &echo.addr.to_string()),
        ("downstream_local", &tcp.to_string()),
        ("sni", "-"),
    ] {
        assert_eq!(l[field], want, "TCP field {field} of {l:#?}");
    }
    assert!(l["upstream_local"].starts_with("127.0.0.1:"), "{l:#?}");
    let l = find(&gw, &lines, "sni", "pass.example.com");
    assert_eq!(l["cluster"], "outbound|443||pass.l4.internal", "{l:#?}");
    assert_eq!(l["upstream_host"], tls_backend.addr.to_string());
    assert!(
        l["received"].parse::<u64>().unwrap() > 200 && l["sent"].parse::<u64>().unwrap() > 200,
        "a whole TLS exchange passed through: {l:#?}"
    );
    // Envoy logs a listener-level line for a connection no filter chain takes, flagged NR.
    let l = find(&gw, &lines, "sni", "other.example.com");
    assert_eq!(l["flags"], "NR", "{l:#?}");
    assert_eq!(l["cluster"], "-", "{l:#?}");
}

/// Access log lines on the gateway's standard output (where the envoy provider writes).
fn stdout_log_lines(gw: &Gateway) -> Vec<String> {
    gw.stdout_lines()
        .into_iter()
        .filter(|l| l.starts_with('['))
        .collect()
}

/// Sends one request to `path` and says whether a log line for it appears within `wait`.
fn logged(w: &World, path: &str, wait: Duration) -> bool {
    assert_eq!(w.get("a.example.com", path, &[]).status, 200);
    let needle = format!("\"GET {path} HTTP/1.1\"");
    poll(wait, || {
        stdout_log_lines(&w.gw)
            .iter()
            .any(|l| l.contains(&needle))
            .then_some(())
    })
    .is_some()
}

fn telemetry(namespace: &str, name: &str, selector: &str, disabled: bool) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{selector}  accessLogging:
  - providers: [{{name: envoy}}]
    disabled: {disabled}
"
    )
}

#[test]
fn telemetry_resources_turn_logging_on_and_off_live() {
    let w = http_world(&[
        "--gateway-namespace",
        "edge-system",
        "--labels",
        "istio=ingressgateway,app=edge",
    ]);
    assert!(
        !logged(&w, "/before", Duration::from_millis(500)),
        "access logging is off by default, as in Istio's default profile"
    );
    // Mesh-wide: the root namespace, no selector.
    w.rewrite(
        "telemetry-root.yaml",
        &telemetry("istio-system", "mesh-default", "", false),
    );
    assert!(
        logged(&w, "/root-on", Duration::from_secs(5)),
        "root Telemetry turns it on"
    );
    // The gateway's own namespace, selecting it by label, wins over the root one.
    let selector = "  selector:\n    matchLabels: {app: edge}\n";
    w.rewrite(
        "telemetry-gw.yaml",
        &telemetry("edge-system", "gw-off", selector, true),
    );
    assert!(
        !logged(&w, "/gw-off", Duration::from_millis(500)),
        "a selecting Telemetry in the gateway's namespace with disabled: true turns it off"
    );
    // A selector that does not match this gateway does not apply.
    let other = "  selector:\n    matchLabels: {app: other}\n";
    w.rewrite(
        "telemetry-gw.yaml",
        &telemetry("edge-system", "gw-off", other, true),
    );
    assert!(
        logged(&w, "/not-selected", Duration::from_secs(5)),
        "root applies again"
    );
    let dump = w.gw.config_dump();
    let decided = dump.to_string();
    assert!(
        decided.contains("Telemetry istio-system/mesh-default"),
        "the config dump says which Telemetry decided: {decided:.2000}"
    );
    let before = w.gw.generation();
    w.config.remove("telemetry-root.yaml");
    w.config.remove("telemetry-gw.yaml");
    w.gw.wait_generation(before + 1);
    poll(Duration::from_secs(5), || {
        (w.gw.config_dump()["access_logging"]["decided_by"] == "--access-log").then_some(())
    })
    .unwrap_or_else(|| w.gw.fail("the Telemetry files' removal was not applied"));
    assert!(
        !logged(&w, "/removed", Duration::from_millis(500)),
        "without Telemetry (and without --access-log) logging is off again"
    );
}

#[test]
fn a_stuck_log_sink_never_holds_requests_up() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("stuck.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    // Nobody ever reads the FIFO: the writer blocks opening it, the line buffer fills, and lines
    // beyond it must be dropped (and counted), never waited for.
    let w = http_world(&["--access-log", fifo.to_str().unwrap(), "--workers", "1"]);
    // More lines than the one worker's buffer holds (2 MiB: about 6,000 lines of ~330 bytes),
    // from 4 keep-alive clients at once.
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 5_000;
    const REQUESTS: usize = CLIENTS * PER_CLIENT;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| {
                    let client = HttpClient::new();
                    (0..PER_CLIENT)
                        .map(|_| client.get(w.addr, "a.example.com", "/stuck", &[]))
                        .filter_map(|r| match r {
                            Ok(r) if r.status == 200 => None,
                            Ok(r) => Some(format!("{} {}", r.status, r.body)),
                            Err(e) => Some(e),
                        })
                        .take(3)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    if !failures.is_empty() {
        w.gw.fail(format!(
            "requests failed with a stuck access log: {failures:?}"
        ));
    }
    let dropped = poll(Duration::from_secs(10), || {
        let text = w.gw.metrics_get("/stats/prometheus").1;
        let n = text
            .lines()
            .find(|l| l.starts_with("tollgate_access_log_dropped_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        (n >= 1.0).then_some(n)
    })
    .unwrap_or_else(|| {
        w.gw.fail("no dropped access log entries counted with a stuck sink")
    });
    assert!(
        dropped <= REQUESTS as f64,
        "at most one entry per request is dropped: {dropped}"
    );
}
