//! Edge limits (issue 9): connection limits, the request-head timeout (slowloris), idle
//! timeouts, HTTP/2 rapid reset and CONTINUATION floods, oversized ClientHellos. Raw sockets,
//! as the clients that test these limits send them.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

const HOST: &str = "limits.example.com";
const SE_HOST: &str = "backend.limits.internal";

fn world(args: &[&str]) -> World {
    World::one_echo("limits", HOST, SE_HOST, args)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

/// One keep-alive GET on `conn`; the response's status, or the error that ended it.
fn get_on(conn: &mut TcpStream) -> Result<u16, String> {
    let head = format!("GET /limits HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    conn.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    read_response(conn)
}

/// Reads one HTTP/1.1 response with a Content-Length body.
fn read_response(conn: &mut TcpStream) -> Result<u16, String> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(0) => return Err(format!("closed after {} bytes", seen.len())),
            Ok(_) => seen.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a response: {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(status)
}

/// True when the gateway closes `conn` (EOF or reset) within 10 s without sending a byte.
fn closed_without_answer(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ),
    }
}

fn metric_sum(w: &World, name: &str, label: &str) -> f64 {
    let (_, text) = w.gw.metrics_get("/stats/prometheus");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn connections_past_the_limit_are_refused_while_existing_ones_are_served() {
    let w = world(&["--max-connections", "20"]);
    let mut held: Vec<TcpStream> = (0..20).map(|_| connect(w.addr)).collect();
    for (i, conn) in held.iter_mut().enumerate() {
        assert_eq!(get_on(conn), Ok(200), "held connection {i}");
    }
    let mut refused = 0;
    for i in 0..200 {
        let mut extra = connect(w.addr);
        let head = format!("GET /limits HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        let _ = extra.write_all(head.as_bytes());
        assert!(
            closed_without_answer(&mut extra),
            "connection {i} past the limit was served"
        );
        refused += 1;
    }
    assert_eq!(refused, 200);
    for (i, conn) in held.iter_mut().enumerate() {
        assert_eq!(
            get_on(conn),
            Ok(200),
            "held connection {i} after the overflow"
        );
    }
    let overflow = metric_sum(
        &w,
        "tollgate_downstream_connections_overflow_total",
        "limit=\"global\"",
    );
    assert!(overflow >= 200.0, "overflow counter {overflow}");

    // Load drops: new connections are served again once old ones have closed.
    held.truncate(10);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut fresh = connect(w.addr);
        match get_on(&mut fresh) {
            Ok(200) => break,
            other if Instant::now() > deadline => {
                w.gw.fail(format!("no recovery after load dropped: {other:?}"))
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert_eq!(w.received("limits"), 40 + 1);
}

#[test]
fn the_per_listener_limit_closes_the_listeners_extra_connections() {
    let w = world(&["--max-connections-per-listener", "3"]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(w.addr)).collect();
    for conn in &mut held {
        assert_eq!(get_on(conn), Ok(200));
    }
    let mut extra = connect(w.addr);
    let _ = extra.write_all(b"GET / HTTP/1.1\r\n\r\n");
    assert!(closed_without_answer(&mut extra));
    let overflow = metric_sum(
        &w,
        "tollgate_downstream_connections_overflow_total",
        "limit=\"listener\"",
    );
    assert_eq!(overflow, 1.0);
}

#[test]
fn a_slowloris_head_is_cut_at_the_headers_timeout_but_idle_keep_alive_is_not() {
    let w = world(&["--request-headers-timeout", "1s"]);

    // A keep-alive connection idle for longer than the head timeout is still served: the
    // timer starts at a head's first byte.
    let mut idle = connect(w.addr);
    assert_eq!(get_on(&mut idle), Ok(200));

    // A client dribbling a head, a byte every 200 ms.
    let mut slow = connect(w.addr);
    let started = Instant::now();
    slow.write_all(b"GET /limits HTTP/1.1\r\nHost: ").unwrap();
    let mut cut = false;
    for byte in b"limits.example.com\r\nX-Slow: ".iter().cycle().take(100) {
        std::thread::sleep(Duration::from_millis(200));
        if slow.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
    }
    let cut_after = started.elapsed();
    assert!(
        cut || closed_without_answer(&mut slow),
        "a head dribbled for 20 s was never cut"
    );
    assert!(
        cut_after >= Duration::from_secs(1),
        "cut after {cut_after:?}"
    );

    assert!(started.elapsed() > Duration::from_millis(1500));
    assert_eq!(get_on(&mut idle), Ok(200), "idle keep-alive connection cut");
    assert_eq!(w.received("limits"), 2);
    let timeouts = metric_sum(
        &w,
        "tollgate_downstream_timeouts_total",
        "kind=\"request_headers\"",
    );
    assert_eq!(timeouts, 1.0);
}

#[test]
fn a_slow_request_body_is_not_a_slow_head() {
    let w = world(&["--request-headers-timeout", "1s"]);
    let mut conn = connect(w.addr);
    let head = format!("POST /limits HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    for byte in b"0123456789" {
        std::thread::sleep(Duration::from_millis(250));
        conn.write_all(&[*byte]).expect("body byte");
    }
    assert_eq!(read_response(&mut conn), Ok(200));
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let w = world(&["--http-idle-timeout", "1s"]);
    let mut conn = connect(w.addr);
    assert_eq!(get_on(&mut conn), Ok(200));
    assert!(
        closed_without_answer(&mut conn),
        "idle connection still open after 10 s"
    );
    let timeouts = metric_sum(&w, "tollgate_downstream_timeouts_total", "kind=\"idle\"");
    assert_eq!(timeouts, 1.0);
}

/// HTTP/2 frames, as a hostile client writes them.
mod h2 {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// GET / on `authority`: static-table :method GET, :scheme http, :path /, and :authority
    /// as a literal without indexing.
    pub fn get_block(authority: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86, 0x84, 0x01, authority.len() as u8];
        block.extend_from_slice(authority.as_bytes());
        block
    }

    /// Reads frames until GOAWAY (its error code) or the end of the connection (None).
    pub fn read_until_goaway(conn: &mut std::net::TcpStream) -> Option<u32> {
        use std::io::Read;
        let mut header = [0u8; 9];
        loop {
            conn.read_exact(&mut header).ok()?;
            let len = (usize::from(header[0]) << 16)
                | (usize::from(header[1]) << 8)
                | usize::from(header[2]);
            let mut payload = vec![0u8; len];
            conn.read_exact(&mut payload).ok()?;
            if header[3] == GOAWAY && payload.len() >= 8 {
                return Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
        }
    }
}

const ENHANCE_YOUR_CALM: u32 = 0xb;

#[test]
fn http2_rapid_reset_is_cut_off_and_the_gateway_keeps_serving() {
    let w = world(&[]);
    let mut conn = connect(w.addr);
    let mut attack = h2::PREFACE.to_vec();
    attack.extend(h2::frame(h2::SETTINGS, 0, 0, &[]));
    let block = h2::get_block(HOST);
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        attack.extend(h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            stream,
            &block,
        ));
        attack.extend(h2::frame(h2::RST_STREAM, 0, stream, &8u32.to_be_bytes()));
    }
    // The gateway may close before it has read everything.
    let _ = conn.write_all(&attack);
    let goaway = h2::read_until_goaway(&mut conn);
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "GOAWAY's error code");
    let reached = w.received("limits");
    assert!(
        reached < 1000,
        "{reached} of 1000 reset streams reached the backend"
    );
    // Everyone else is still served.
    assert_eq!(w.get(HOST, "/after", &[]).status, 200);
}

#[test]
fn an_http2_continuation_flood_is_cut_off() {
    let w = world(&[]);
    let mut conn = connect(w.addr);
    conn.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut start = h2::PREFACE.to_vec();
    start.extend(h2::frame(h2::SETTINGS, 0, 0, &[]));
    // A header block that never ends: HEADERS without END_HEADERS, then CONTINUATIONs of
    // literal headers, 16 KiB each, 100 MiB in all if the gateway kept reading.
    start.extend(h2::frame(
        h2::HEADERS,
        h2::END_STREAM,
        1,
        &h2::get_block(HOST),
    ));
    conn.write_all(&start).unwrap();
    let mut junk = Vec::with_capacity(16 * 1024);
    while junk.len() + 40 < 16 * 1024 {
        junk.extend_from_slice(&[0x00, 0x05]);
        junk.extend_from_slice(b"x-pad");
        junk.push(30);
        junk.extend_from_slice(&[b'v'; 30]);
    }
    let continuation = h2::frame(h2::CONTINUATION, 0, 1, &junk);
    let mut sent = 0usize;
    for _ in 0..6400 {
        if conn.write_all(&continuation).is_err() {
            break;
        }
        sent += continuation.len();
    }
    assert!(
        sent < 100 * 1024 * 1024,
        "the gateway read a 100 MiB header block"
    );
    assert_eq!(w.received("limits"), 0);
    assert_eq!(w.get(HOST, "/after", &[]).status, 200);
}

#[test]
fn an_oversized_client_hello_is_closed() {
    let tls_host = "hello.limits.test";
    let w = TlsEchoWorld::start(
        "limits",
        tls_host,
        SE_HOST,
        &["--max-client-hello-bytes", "1024"],
    );
    let addr = w.addr;

    // A ClientHello claiming 30,000 bytes: refused from its header, before it is read.
    let mut conn = connect(addr);
    let mut hello = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x75, 0x30];
    hello.resize(2048, 0);
    let _ = conn.write_all(&hello);
    assert!(
        closed_without_answer(&mut conn),
        "a 30 kB ClientHello was not closed"
    );

    // An ordinary hello grown past the configured 1 KiB by a long ALPN list: closed, while the
    // same client with a short list gets the certificate.
    let s_client = |alpn: &str| {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                tls_host,
            ])
            .args(["-alpn", alpn])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client");
        String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE")
    };
    assert!(s_client("h2,http/1.1"), "a small hello got no certificate");
    let long = vec!["a".repeat(200); 6].join(",");
    assert!(
        !s_client(&long),
        "a 1.3 kB ClientHello was served past the 1 KiB limit"
    );
    // A small hello is served.
    let ok = curl_https(tls_host, addr.port(), "/", &["--cacert", &w.ca]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(w.backend.received(), 1);
}

#[test]
fn upstreams_that_hang_reset_or_answer_garbage_never_stall_other_routes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let release = Arc::new(AtomicBool::new(false));
    let hang = {
        let release = release.clone();
        TcpServer::start(move |stream| {
            // Reads nothing, answers nothing, until the test is done (at most 30 s).
            let deadline = Instant::now() + Duration::from_secs(30);
            while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(stream);
        })
    };
    // Closes at once with the request unread: the kernel answers it with a reset.
    let reset = TcpServer::start(|stream| {
        std::thread::sleep(Duration::from_millis(50));
        drop(stream);
    });
    let garbage = TcpServer::banner(b"SSH-2.0-OpenSSH_9.2\r\nthis is not HTTP\r\n\r\n");
    let healthy = EchoBackend::start("healthy", "v1");
    let mut files = vec![
        ("gateway.yaml", EDGE_GATEWAY.to_string()),
        (
            "se-healthy.yaml",
            service_entry_80("healthy", "healthy.internal", &[echo_endpoint(&healthy)]),
        ),
        (
            "vs-healthy.yaml",
            vs_to("healthy", "ok.example.com", "healthy.internal"),
        ),
    ];
    for (name, server) in [("hang", &hang), ("reset", &reset), ("garbage", &garbage)] {
        let se_host = format!("{name}.internal");
        files.push((
            Box::leak(format!("se-{name}.yaml").into_boxed_str()),
            service_entry(name, &se_host, 80, &[(server.addr, &[])]),
        ));
        files.push((
            Box::leak(format!("vs-{name}.yaml").into_boxed_str()),
            vs_to(name, &format!("{name}.example.com"), &se_host),
        ));
    }
    let w = World::start(&[], vec![healthy], &files);

    let stuck: Vec<_> = (0..20)
        .map(|_| {
            let addr = w.addr;
            std::thread::spawn(move || {
                HttpClient::fresh_connections()
                    .with_timeout(Duration::from_secs(60))
                    .get(addr, "hang.example.com", "/", &[])
            })
        })
        .collect();
    for name in ["reset", "garbage"] {
        for _ in 0..5 {
            let answer = w.get(&format!("{name}.example.com"), "/", &[]);
            assert!(
                (502..=503).contains(&answer.status),
                "{name}: {} {}",
                answer.status,
                short(&answer.body)
            );
        }
    }
    for i in 0..50 {
        let answer = w.get("ok.example.com", "/", &[]);
        assert_eq!(answer.status, 200, "healthy route, request {i}");
    }
    assert!(
        stuck.iter().all(|t| !t.is_finished()),
        "the hanging upstream's requests ended before it was released"
    );
    release.store(true, Ordering::SeqCst);
    for t in stuck {
        let answer = t.join().expect("hang client thread").expect("hang request");
        assert_eq!(answer.status, 503, "{}", short(&answer.body));
    }
}

#[test]
fn request_heads_past_the_size_or_count_limits_get_431() {
    let w = world(&[
        "--max-request-headers-count",
        "10",
        "--max-request-headers-kb",
        "8",
    ]);
    let send = |extra: &str| {
        let mut conn = connect(w.addr);
        let head = format!("GET /limits HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n");
        conn.write_all(head.as_bytes()).unwrap();
        read_response(&mut conn)
    };
    let lines = |n: usize| (0..n).map(|i| format!("x-h{i}: v\r\n")).collect::<String>();
    assert_eq!(send(&lines(9)), Ok(200), "10 header lines with Host");
    assert_eq!(send(&lines(10)), Ok(431), "11 header lines");
    let big = format!("x-big: {}\r\n", "b".repeat(9 * 1024));
    assert_eq!(send(&big), Ok(431), "a 9 KiB head");
    let fits = format!("x-big: {}\r\n", "b".repeat(6 * 1024));
    assert_eq!(send(&fits), Ok(200), "a 6 KiB head");
    assert_eq!(w.received("limits"), 2);
}
