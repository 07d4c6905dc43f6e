//! Request smuggling shapes at the edge (issue 9): every ambiguous or malformed HTTP/1.1 head is
//! answered 400 by the gateway and never reaches the backend; the connection is closed after it.
//! And path normalization (`--path-normalization`, Istio's `pathNormalization`) before routing.
//! Raw bytes on a TCP socket, as an attacker would send them.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

const HOST: &str = "hygiene.example.com";
const SE_HOST: &str = "backend.hygiene.internal";

fn world() -> World {
    World::one_echo("hygiene", HOST, SE_HOST, &[])
}

/// Sends `head` (and body) on a fresh connection; returns everything the gateway sent until it
/// closed the connection (bounded: 10 s).
fn exchange(w: &World, raw: &str) -> String {
    let mut conn = TcpStream::connect(w.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(raw.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let _ = conn.read_to_end(&mut seen);
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn malformed_heads_get_400_and_never_reach_the_backend() {
    let w = world();
    let h = format!("Host: {HOST}\r\n");
    let cases = [
        (
            "Content-Length with Transfer-Encoding",
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "Transfer-Encoding with Content-Length",
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
        ),
        (
            "both framing fields, lowercase, with a valid chunked body",
            format!("POST / HTTP/1.1\r\n{h}transfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"),
        ),
        (
            "two different Content-Length fields",
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ),
        (
            "a Content-Length list",
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 1,2\r\n\r\nab"),
        ),
        (
            "a signed Content-Length",
            format!("POST / HTTP/1.1\r\n{h}Content-Length: +4\r\n\r\nabcd"),
        ),
        (
            "Transfer-Encoding not ending in chunked",
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ),
        (
            "obs-fold",
            format!("GET / HTTP/1.1\r\n{h}X-Folded: a\r\n b\r\n\r\n"),
        ),
        (
            "a control character in a value",
            format!("GET / HTTP/1.1\r\n{h}X-Bad: a\x01b\r\n\r\n"),
        ),
        (
            "NUL in a value",
            format!("GET / HTTP/1.1\r\n{h}X-Bad: a\0b\r\n\r\n"),
        ),
        (
            "whitespace before the colon",
            format!("GET / HTTP/1.1\r\n{h}X-Space : b\r\n\r\n"),
        ),
        (
            "a space in a header name",
            format!("GET / HTTP/1.1\r\n{h}X Bad: b\r\n\r\n"),
        ),
        (
            "a control character in a header name",
            format!("GET / HTTP/1.1\r\n{h}X\x01Bad: b\r\n\r\n"),
        ),
    ];
    let before = w.backends[0].received();
    for (shape, raw) in &cases {
        // A second request after the malformed head: it must not be read as one.
        let answer = exchange(&w, &format!("{raw}GET /smuggled HTTP/1.1\r\n{h}\r\n"));
        assert!(
            answer.starts_with("HTTP/1.1 400 "),
            "{shape}: answered {answer:?}"
        );
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{shape}: one answer, then the connection closes: {answer:?}"
        );
        assert!(!answer.contains("/smuggled"), "{shape}: {answer:?}");
    }
    assert_eq!(
        w.backends[0].received(),
        before,
        "no malformed head reached the backend"
    );
}

/// On a keep-alive connection, requests before a head with both framing fields are served; that
/// one gets 400 and the connection closes. A body that looks like such a head is only a body.
#[test]
fn keep_alive_requests_around_the_framing_check() {
    let w = world();
    let h = format!("Host: {HOST}\r\n");
    let fake = "GET /smuggled HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let before = w.backends[0].received();
    let served = exchange(
        &w,
        &format!(
            "GET /one HTTP/1.1\r\n{h}\r\n\
             POST /two HTTP/1.1\r\n{h}Content-Length: {}\r\n\r\n{fake}\
             POST /three HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{fake}\r\n0\r\n\r\n\
             GET /four HTTP/1.1\r\n{h}Connection: close\r\n\r\n",
            fake.len(),
            fake.len()
        ),
    );
    assert_eq!(
        served.matches("HTTP/1.1 200 ").count(),
        4,
        "four answers: {served:?}"
    );
    for path in ["/one", "/two", "/three", "/four"] {
        assert!(
            served.contains(&format!("\"path\":\"{path}\"")),
            "{path}: {served:?}"
        );
    }
    assert!(!served.contains("/smuggled"), "{served:?}");
    assert_eq!(
        served
            .matches(&format!("\"body_bytes\":{}", fake.len()))
            .count(),
        2
    );
    assert_eq!(w.backends[0].received() - before, 4);

    let cut = exchange(
        &w,
        &format!(
            "GET /first HTTP/1.1\r\n{h}\r\n\
             POST /second HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
             GET /third HTTP/1.1\r\n{h}\r\n"
        ),
    );
    assert!(cut.starts_with("HTTP/1.1 200 "), "{cut:?}");
    assert!(cut.contains("\"path\":\"/first\""), "{cut:?}");
    assert_eq!(cut.matches("HTTP/1.1 ").count(), 2, "{cut:?}");
    assert!(cut.contains("HTTP/1.1 400 Bad Request\r\n"), "{cut:?}");
    assert!(
        !cut.contains("/second") && !cut.contains("/third"),
        "{cut:?}"
    );
    assert_eq!(w.backends[0].received() - before, 5);
}

/// h2c (prior knowledge) passes the framing check untouched, a body that looks like an HTTP/1
/// head with both framing fields included.
#[test]
fn http2_passes_the_framing_check() {
    let w = world();
    let url = format!("http://{HOST}:{}/h2", w.addr.port());
    let resolve = format!("{HOST}:{}:127.0.0.1", w.addr.port());
    let body = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let out = curl(&[
        "--http2-prior-knowledge",
        "--resolve",
        &resolve,
        "--data-binary",
        body,
        &url,
    ]);
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.json()["path"], "/h2", "{out:?}");
    assert_eq!(out.json()["body_bytes"], body.len(), "{out:?}");
}

/// After a WebSocket upgrade the bytes are not HTTP: a head-like payload with both framing fields
/// is echoed back untouched.
#[test]
fn upgraded_streams_pass_the_framing_check() {
    let w = world();
    let mut conn = TcpStream::connect(w.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("the upgrade answer");
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head:?}");
    let payload = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    conn.write_all(payload).unwrap();
    let mut echoed = vec![0u8; payload.len()];
    conn.read_exact(&mut echoed).expect("the echo");
    assert_eq!(echoed, payload);
}

/// Equal duplicate Content-Length fields are one length (as in Envoy).
#[test]
fn equal_content_lengths_are_one() {
    let w = world();
    let h = format!("Host: {HOST}\r\n");
    let equal = exchange(
        &w,
        &format!("POST / HTTP/1.1\r\n{h}Content-Length: 4\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd"),
    );
    assert!(equal.starts_with("HTTP/1.1 200 "), "{equal:?}");
    assert!(equal.contains("\"body_bytes\":4"), "{equal:?}");
}

/// Where a request goes: the path the backend saw, or the guarded `/admin` route's 403.
#[derive(Debug, PartialEq)]
enum Seen {
    Backend(String),
    Guarded,
}

fn b(path: &str) -> Seen {
    Seen::Backend(path.to_string())
}

const G: Seen = Seen::Guarded;

/// A gateway whose VirtualService guards `/admin` (403 from the gateway) and sends everything
/// else to the echo backend, started with `--path-normalization mode`.
fn guarded_world(mode: &str) -> World {
    let backend = EchoBackend::start("hygiene", "v1");
    let http = format!(
        "  - match: [{{uri: {{prefix: /admin}}}}]\n    directResponse: {{status: 403}}\n{}",
        rule(SE_HOST, "")
    );
    let files = [
        ("gateway.yaml", EDGE_GATEWAY.to_string()),
        (
            "se.yaml",
            service_entry_80("backend", SE_HOST, &[echo_endpoint(&backend)]),
        ),
        ("vs.yaml", vs("hygiene", HOST, &http)),
    ];
    World::start(&["--path-normalization", mode], vec![backend], &files)
}

fn seen(w: &World, path: &str) -> Seen {
    let answer = exchange(
        w,
        &format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
    );
    if answer.starts_with("HTTP/1.1 403 ") {
        return Seen::Guarded;
    }
    assert!(answer.starts_with("HTTP/1.1 200 "), "{path}: {answer:?}");
    let body = &answer[answer.find("\r\n\r\n").expect("a head") + 4..];
    let echo: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    b(echo["path"].as_str().unwrap_or_default())
}

#[test]
fn path_normalization_modes_before_routing() {
    type Row = (&'static str, [Seen; 4]);
    let rows: [Row; 9] = [
        (
            "/a/b?q=/../x",
            [
                b("/a/b?q=/../x"),
                b("/a/b?q=/../x"),
                b("/a/b?q=/../x"),
                b("/a/b?q=/../x"),
            ],
        ),
        (
            "/a/./b/../c",
            [b("/a/./b/../c"), b("/a/c"), b("/a/c"), b("/a/c")],
        ),
        (
            "//admin/../x",
            [b("//admin/../x"), b("//x"), b("/x"), b("/x")],
        ),
        ("/public/../admin", [b("/public/../admin"), G, G, G]),
        ("/public/%2e%2e/admin", [b("/public/%2e%2e/admin"), G, G, G]),
        ("//admin", [b("//admin"), b("//admin"), G, G]),
        (
            "/public//..//admin/",
            [
                b("/public//..//admin/"),
                b("/public//admin/"),
                b("/public/admin/"),
                b("/public/admin/"),
            ],
        ),
        (
            "/public%2F..%2Fadmin",
            [
                b("/public%2F..%2Fadmin"),
                b("/public%2F..%2Fadmin"),
                b("/public%2F..%2Fadmin"),
                G,
            ],
        ),
        (
            "/a%2fb%5Cc",
            [
                b("/a%2fb%5Cc"),
                b("/a%2fb%5Cc"),
                b("/a%2fb%5Cc"),
                b("/a/b\\c"),
            ],
        ),
    ];
    for (m, mode) in ["none", "base", "merge-slashes", "decode-and-merge-slashes"]
        .iter()
        .enumerate()
    {
        let w = guarded_world(mode);
        for (path, wants) in &rows {
            assert_eq!(seen(&w, path), wants[m], "{path} under {mode}");
        }
    }
}
