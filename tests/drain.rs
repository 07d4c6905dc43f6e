//! Graceful shutdown on SIGTERM: readiness turns 503, new connections are refused, requests in
//! flight finish, idle keep-alive connections are closed, and the process exits within
//! `--drain-timeout`, cutting what is still open at its end.
//!
//! Every wait is bounded; the only time bounds asserted are the drain timeouts themselves.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const HOST: &str = "drain.example.com";
const SE_HOST: &str = "backend.drain.internal";

fn slow_world(drain_timeout: &str) -> World {
    slow_world_with(&["--drain-timeout", drain_timeout])
}

fn slow_world_with(args: &[&str]) -> World {
    World::one_echo("drain", HOST, SE_HOST, args)
}

/// Starts `n` requests of `/delay/<ms>`, each on its own connection, and waits until the
/// backend holds them all.
fn in_flight(w: &World, n: u64, ms: u64) -> Vec<std::thread::JoinHandle<Result<Response, String>>> {
    let before = w.backends[0].received();
    let handles = (0..n)
        .map(|_| {
            let client = HttpClient::fresh_connections().with_timeout(Duration::from_secs(30));
            let addr = w.addr;
            let path = format!("/delay/{ms}");
            std::thread::spawn(move || client.get(addr, HOST, &path, &[]))
        })
        .collect();
    w.gw.wait_until(
        "the slow requests reach the backend",
        Duration::from_secs(10),
        || w.backends[0].received() >= before + n,
    );
    handles
}

/// A keep-alive connection that has carried one request and now sits idle.
fn idle_keep_alive(w: &World) -> TcpStream {
    let mut conn = TcpStream::connect(w.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let n = conn
            .read(&mut buf)
            .expect("a response on the keep-alive connection");
        assert!(n > 0, "the gateway closed the keep-alive connection early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    conn
}

#[test]
fn sigterm_finishes_requests_in_flight_and_refuses_new_connections() {
    let w = slow_world("20s");
    let mut idle = idle_keep_alive(&w);
    let slow = in_flight(&w, 3, 2000);
    let began = Instant::now();
    w.gw.signal("TERM");

    w.gw.wait_until("readiness answers 503", Duration::from_secs(5), || {
        w.gw.health_get("/healthz/ready").0 == 503
    });
    assert_eq!(
        w.gw.health_get("/healthz/live").0,
        200,
        "liveness stays 200 while draining"
    );
    w.gw.wait_until(
        "the gateway port refuses connections",
        Duration::from_secs(5),
        || TcpStream::connect(w.addr).is_err(),
    );
    // The idle keep-alive connection is closed by the gateway, not left to the timeout.
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)) || closed.is_err(),
        "the idle connection is closed: {closed:?} {rest:?}"
    );

    for handle in slow {
        let answer = handle.join().unwrap();
        match answer {
            Ok(r) => assert_eq!(r.status, 200, "{}", r.body),
            Err(e) => {
                w.gw.fail(format!("a request in flight at SIGTERM failed: {e}"))
            }
        }
    }
    let Some(exit) = w.gw.wait_exit(Duration::from_secs(25)) else {
        w.gw.fail("still running after the drain timeout");
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "the process exits once its connections have closed, before the 20 s drain timeout"
    );
}

#[test]
fn the_drain_timeout_cuts_what_is_still_running() {
    let w = slow_world("1s");
    let slow = in_flight(&w, 1, 25_000);
    w.gw.signal("TERM");
    let Some(exit) = w.gw.wait_exit(Duration::from_secs(15)) else {
        w.gw.fail("still running 15 s after SIGTERM with a 1 s drain timeout");
    };
    assert!(exit.success(), "exit status {exit}");
    let cut = slow.into_iter().next().unwrap().join().unwrap();
    assert!(
        cut.is_err(),
        "a request slower than the drain timeout is cut: {cut:?}"
    );
}

#[test]
fn access_log_lines_of_the_last_requests_are_written_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let w = slow_world_with(&["--access-log", log.to_str().unwrap()]);
    let answer = w.client.get(w.addr, HOST, "/last-words", &[]);
    assert_eq!(answer.map(|r| r.status), Ok(200));
    // At once: the writer's 100 ms timer has not come round yet.
    w.gw.signal("TERM");
    let Some(exit) = w.gw.wait_exit(Duration::from_secs(10)) else {
        w.gw.fail("still running 10 s after SIGTERM");
    };
    assert!(exit.success(), "exit status {exit}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("\"GET /last-words HTTP/1.1\" 200"),
        "the last request's line is in the log: {text:?}"
    );
}
