//! `--proxy-protocol GW_PORT` (issue 9): behind an L4 load balancer, the client's address comes
//! from the PROXY header (v1 or v2) and reaches the upstream in x-forwarded-for; a connection
//! without a header is closed before anything reaches a backend.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

const HOST: &str = "pp.example.com";
const SE_HOST: &str = "backend.pp.internal";

/// Sends `raw` on a fresh connection and returns all the gateway sent until it closed
/// (`Connection: close` requests; bounded: 10 s).
fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(raw).unwrap();
    let mut seen = Vec::new();
    let _ = conn.read_to_end(&mut seen);
    String::from_utf8_lossy(&seen).into_owned()
}

fn request() -> String {
    format!("GET /pp HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 192.0.2.66\r\nConnection: close\r\n\r\n")
}

/// The x-forwarded-for the echo backend saw, from its JSON answer.
fn forwarded_for(answer: &str) -> String {
    let body = &answer[answer.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let json: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not the echo's JSON ({e}): {answer}"));
    json["headers"]["x-forwarded-for"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_proxy_header_states_the_client_address() {
    let w = World::one_echo("pp", HOST, SE_HOST, &["--proxy-protocol", "80"]);

    let mut v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n".to_vec();
    v1.extend(request().as_bytes());
    let answer = exchange(w.addr, &v1);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // As in Envoy, the client's own value is kept and the (stated) peer appended.
    assert_eq!(forwarded_for(&answer), "192.0.2.66,203.0.113.7");

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([
        0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x0f, 0xa0, 0, 80,
    ]);
    v2.extend(request().as_bytes());
    let answer = exchange(w.addr, &v2);
    assert_eq!(forwarded_for(&answer), "192.0.2.66,198.51.100.9");

    // A load balancer's health check (v2 LOCAL) keeps the connection's own address.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend([0x20, 0x00, 0, 0]);
    local.extend(request().as_bytes());
    let answer = exchange(w.addr, &local);
    assert_eq!(forwarded_for(&answer), "192.0.2.66,127.0.0.1");
    assert_eq!(w.received("pp"), 3);
}

#[test]
fn a_connection_without_the_header_is_closed_unserved() {
    let w = World::one_echo("pp", HOST, SE_HOST, &["--proxy-protocol", "80"]);
    let answer = exchange(w.addr, request().as_bytes());
    assert_eq!(answer, "", "served without a PROXY header");
    let answer = exchange(w.addr, b"PROXY TCP4 not-an-address 10.0.0.1 1 80\r\n");
    assert_eq!(answer, "");
    assert_eq!(w.received("pp"), 0);
    let (_, metrics) = w.gw.metrics_get("/stats/prometheus");
    assert!(
        metrics.contains("tollgate_proxy_protocol_errors_total{reason=\"invalid\"} 2"),
        "{metrics}"
    );
}

#[test]
fn tls_after_the_proxy_header_is_terminated_by_sni() {
    let tls_host = "pp.tls.test";
    let w = TlsEchoWorld::start("pp", tls_host, SE_HOST, &["--proxy-protocol", "443"]);
    let (port, ca) = (w.addr.port(), w.ca.as_str());
    let with = curl_https(tls_host, port, "/", &["--cacert", ca, "--haproxy-protocol"]);
    assert_eq!(with.status, 200, "{with:?}");
    let without = curl_https(tls_host, port, "/", &["--cacert", ca]);
    assert_ne!(without.status, 200, "{without:?}");
    assert_eq!(w.backend.received(), 1);
}
