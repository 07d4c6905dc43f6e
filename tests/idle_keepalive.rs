//! Idle HTTP/1.1 keep-alive connections park between requests (issue 8): after a quiet moment
//! the gateway drops hyper's state for the connection, and the client sees nothing of it. Each
//! test sends a request with a body (bodiless ones take the fast path, which holds no state
//! between requests and never parks), pauses past the park delay (the `tollgate::http::park`
//! trace line says it happened) and checks that the connection goes on exactly as before:
//! HTTPS keep-alive, pipelining, a body that arrives in two parts, a WebSocket tunnel, a
//! graceful drain.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::*;

const HOST: &str = "web.example.com";

/// Past the park delay (a connection parks within twice 250 ms of its last request).
const PAUSE: Duration = Duration::from_millis(800);

const PARKED: &str = "idle keep-alive connection parked";

fn http_world() -> World {
    let w = World::one_echo("web", HOST, "web.svc.test", &[]);
    trace_parking(&w.gw);
    w
}

/// Turns on the park trace line, to see parking happen in the gateway's log.
fn trace_parking(gw: &Gateway) {
    let (status, body) = gw.admin_post("/logging?tollgate::http::park=trace");
    assert_eq!(status, 200, "{body}");
}

/// Waits (up to 5 s) until the gateway has logged `n` parks.
fn wait_parked(gw: &Gateway, n: usize) {
    gw.wait_until(
        &format!("{n} parked connection(s)"),
        Duration::from_secs(5),
        || gw.stderr().matches(PARKED).count() >= n,
    );
}

fn connect(addr: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect(addr).expect("connect to the gateway");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

/// One response (head, then a Content-Length body): status and body.
fn response(conn: &mut impl Read) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("a response");
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(!head.contains("connection: close"), "{head:?}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("a content-length"));
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).expect("the response body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n")
}

/// A request with a body: served by hyper, whose connection then parks.
fn post(path: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\n\r\nhi")
}

/// An echo answer for `path`.
fn echoed(conn: &mut impl Read, path: &str) -> serde_json::Value {
    let (status, body) = response(conn);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(json["path"], path, "{json}");
    json
}

#[test]
fn an_https_keep_alive_connection_parks_and_keeps_serving() {
    let w = TlsEchoWorld::start("web", HOST, "web.svc.test", &[]);
    trace_parking(&w.gw);
    let pem = std::fs::read(&w.ca).expect("the test certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("a PEM certificate")).unwrap();
    }
    let client = tls_client(roots, HOST);
    let mut tls = rustls::StreamOwned::new(client, connect(w.addr));

    tls.write_all(post("/first").as_bytes()).unwrap();
    echoed(&mut tls, "/first");
    std::thread::sleep(PAUSE);
    wait_parked(&w.gw, 1);
    tls.write_all(post("/second").as_bytes()).unwrap();
    echoed(&mut tls, "/second");
    std::thread::sleep(PAUSE);
    wait_parked(&w.gw, 2);
    // Pipelined, in one TLS record: a bodiless request (the fast path), one with a body (hyper
    // again), a bodiless one.
    tls.write_all((get("/third") + &post("/fourth") + &get("/fifth")).as_bytes())
        .unwrap();
    echoed(&mut tls, "/third");
    echoed(&mut tls, "/fourth");
    echoed(&mut tls, "/fifth");
    std::thread::sleep(PAUSE);
    wait_parked(&w.gw, 3);
    // Bodiless requests only: the fast path serves them, and has nothing to park.
    for path in ["/sixth", "/seventh"] {
        tls.write_all(get(path).as_bytes()).unwrap();
        echoed(&mut tls, path);
        std::thread::sleep(PAUSE);
    }
    assert_eq!(w.gw.stderr().matches(PARKED).count(), 3);
}

#[test]
fn a_body_sent_in_two_parts_across_the_pause_is_forwarded_whole() {
    let w = http_world();
    let mut conn = connect(w.addr);
    conn.write_all(post("/warm-up").as_bytes()).unwrap();
    echoed(&mut conn, "/warm-up");
    std::thread::sleep(PAUSE);
    wait_parked(&w.gw, 1);
    conn.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\n0123")
            .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(PAUSE);
    conn.write_all(b"456789").unwrap();
    let json = echoed(&mut conn, "/upload");
    assert_eq!(json["body_bytes"], 10, "{json}");
    // No park while the body was on its way: only the one before it.
    assert_eq!(w.gw.stderr().matches(PARKED).count(), 1);
    conn.write_all(get("/after").as_bytes()).unwrap();
    echoed(&mut conn, "/after");
}

#[test]
fn a_websocket_tunnel_opened_after_a_pause_outlives_the_park_delay() {
    let w = http_world();
    let mut conn = connect(w.addr);
    conn.write_all(post("/before").as_bytes()).unwrap();
    echoed(&mut conn, "/before");
    std::thread::sleep(PAUSE);
    wait_parked(&w.gw, 1);
    conn.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, _) = response(&mut conn);
    assert_eq!(status, 101);
    for round in ["ping one", "ping two"] {
        conn.write_all(round.as_bytes()).unwrap();
        let mut echoed = vec![0u8; round.len()];
        conn.read_exact(&mut echoed)
            .unwrap_or_else(|e| w.gw.fail(format!("tunnel echo of {round:?}: {e}")));
        assert_eq!(echoed, round.as_bytes());
        std::thread::sleep(PAUSE);
    }
    assert_eq!(
        w.gw.stderr().matches(PARKED).count(),
        1,
        "a tunnel never parks"
    );
}

#[test]
fn a_graceful_drain_closes_a_parked_connection() {
    let w = http_world();
    let mut conn = connect(w.addr);
    conn.write_all(post("/").as_bytes()).unwrap();
    echoed(&mut conn, "/");
    std::thread::sleep(PAUSE);
    wait_parked(&w.gw, 1);
    w.gw.signal("TERM");
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => {}
        other => {
            w.gw.fail(format!("expected the end of the stream, got {other:?}"))
        }
    }
}
