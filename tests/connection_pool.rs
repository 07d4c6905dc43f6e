//! DestinationRule `connectionPool` settings about the connections themselves, end to end on
//! loopback (reference §3.5): `http.maxRequestsPerConnection`, `http.idleTimeout`,
//! `tcp.connectTimeout`, `tcp.tcpKeepalive` and `tcp.idleTimeout` (for TCP streams). The limits
//! that overflow (circuit breaking) are tested in `destination_rule.rs`.
//!
//! The upstream is a [`ScriptedHttp`] server, which counts the connections it accepts and those
//! its peer closes, so connection reuse is visible. Keep-alive is read from the kernel's socket
//! table (`/proc/net/tcp`). Every wait is bounded; the idle-timeout checks only bound how long
//! a connection may stay open, with seconds of slack.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

const HOST: &str = "pool.example.com";
const SE_HOST: &str = "backend.pool.internal";

fn world(server: &ScriptedHttp, pool: Option<&str>) -> World {
    world_at(server.addr(), pool)
}

/// A gateway routing [`HOST`] without retries to `addr`, with `connectionPool: <pool>`.
fn world_at(addr: SocketAddr, pool: Option<&str>) -> World {
    let mut files = vec![
        ("gateway.yaml", EDGE_GATEWAY.to_string()),
        (
            "se.yaml",
            service_entry_80("backend", SE_HOST, &[(addr, vec![])]),
        ),
        (
            "vs.yaml",
            vs("pool", HOST, &rule(SE_HOST, "    retries: {attempts: 0}\n")),
        ),
    ];
    if let Some(pool) = pool {
        let dr = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: pool}}\n\
             spec:\n  host: {SE_HOST}\n  trafficPolicy:\n    connectionPool: {pool}\n"
        );
        files.push(("dr.yaml", dr));
    }
    World::start(&[], Vec::new(), &files)
}

fn get_ok(w: &World) {
    let r = w.get(HOST, "/", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn max_requests_per_connection_bounds_connection_reuse() {
    let server = ScriptedHttp::start(200);
    let w = world(&server, None);
    for _ in 0..5 {
        get_ok(&w);
    }
    assert_eq!(
        server.connections(),
        1,
        "five requests one after another reuse one kept-alive connection"
    );

    let server = ScriptedHttp::start(200);
    let w = world(&server, Some("{http: {maxRequestsPerConnection: 1}}"));
    for _ in 0..5 {
        get_ok(&w);
    }
    assert_eq!(
        server.connections(),
        5,
        "maxRequestsPerConnection: 1 disables keep-alive"
    );
    let closed = poll(Duration::from_secs(10), || {
        (server.closed_by_peer() >= 4).then_some(())
    });
    assert!(
        closed.is_some(),
        "spent connections are closed by the gateway: {} of 5 closed",
        server.closed_by_peer()
    );

    let server = ScriptedHttp::start(200);
    let w = world(&server, Some("{http: {maxRequestsPerConnection: 2}}"));
    for _ in 0..6 {
        get_ok(&w);
    }
    assert_eq!(server.connections(), 3, "two requests per connection");
}

#[test]
fn idle_upstream_connections_close_after_idle_timeout() {
    let server = ScriptedHttp::start(200);
    let w = world(&server, Some("{http: {idleTimeout: 1s}}"));
    get_ok(&w);
    let start = Instant::now();
    let closed = poll(Duration::from_secs(10), || {
        (server.closed_by_peer() == 1).then(Instant::now)
    });
    let Some(closed_at) = closed else {
        w.gw.fail("the idle upstream connection was still open 10 s after its 1 s idleTimeout");
    };
    assert!(
        closed_at - start >= Duration::from_millis(900),
        "closed after {:?}, before it was idle for 1 s",
        closed_at - start
    );
    // The next request opens a new connection.
    get_ok(&w);
    assert_eq!(server.connections(), 2);

    // Without the setting (Istio's default is 1 h) the connection stays.
    let server = ScriptedHttp::start(200);
    let w = world(&server, None);
    get_ok(&w);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(server.closed_by_peer(), 0, "default idle timeout is 1 h");
    get_ok(&w);
    assert_eq!(server.connections(), 1);
}

/// A listener whose accept queue is full and never drained: Linux drops further SYNs, so a
/// connection attempt hangs until the client gives up. Keep the returned streams alive.
fn black_hole() -> (socket2::Socket, SocketAddr, Vec<TcpStream>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (backlog 0 admits one, sometimes two); stop once a connect hangs.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (socket, addr, fillers)
}

#[test]
fn connect_timeout_bounds_the_upstream_connect() {
    let (_listener, addr, _fillers) = black_hole();
    let w = world_at(addr, Some("{tcp: {connectTimeout: 500ms}}"));
    let (r, took) = w.timed_get(HOST, "/", &[], Duration::from_secs(9));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.body,
        "upstream connect error or disconnect/reset before headers. reset reason: connection timeout"
    );
    assert!(
        took >= Duration::from_millis(450),
        "a 500 ms connect timeout fired after {took:?}"
    );
}

/// Whether the socket from local port `local` to `remote` in `/proc/net/tcp` has its
/// keep-alive timer running (`tr` = 2).
fn keepalive_timer(local: u16, remote: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let port = |c: &str| u16::from_str_radix(c.rsplit(':').next()?, 16).ok();
        if port(cols.get(1)?)? != local || port(cols.get(2)?)? != remote {
            return None;
        }
        let timer = cols.get(5)?.split(':').next()?;
        Some(timer == "02")
    })
}

/// The gateway's side of its connection to `server`: (local port, server port).
fn gateway_side(server: SocketAddr) -> Option<(u16, u16)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let port = |c: &str| u16::from_str_radix(c.rsplit(':').next()?, 16).ok();
        let (local, remote) = (port(cols.get(1)?)?, port(cols.get(2)?)?);
        // State 01 = ESTABLISHED.
        (remote == server.port() && cols.get(3) == Some(&"01")).then_some((local, remote))
    })
}

#[test]
fn tcp_keepalive_is_set_on_upstream_connections() {
    let server = ScriptedHttp::start(200);
    let w = world(
        &server,
        Some("{tcp: {tcpKeepalive: {time: 30s, interval: 5s, probes: 3}}}"),
    );
    get_ok(&w);
    let (local, remote) = gateway_side(server.addr()).expect("the gateway's upstream connection");
    assert_eq!(
        keepalive_timer(local, remote),
        Some(true),
        "SO_KEEPALIVE arms the keep-alive timer on the gateway's idle upstream socket"
    );

    let server = ScriptedHttp::start(200);
    let w = world(&server, None);
    get_ok(&w);
    let (local, remote) = gateway_side(server.addr()).expect("the gateway's upstream connection");
    assert_eq!(
        keepalive_timer(local, remote),
        Some(false),
        "no keep-alive unless tcpKeepalive is set"
    );
}

#[test]
fn tcp_idle_timeout_closes_idle_tcp_streams_of_that_destination() {
    let echo = TcpEcho::start();
    let dir = ConfigDir::new();
    dir.write(
        "l4.yaml",
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: tcp}\nspec:\n  \
             selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 31400, name: tcp, protocol: TCP}\n    \
             hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp}\n\
             spec:\n  hosts: [\"*\"]\n  gateways: [tcp]\n  tcp:\n  - route: [{destination: {host: echo.tcp.internal}}]\n\
             ---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo}\n\
             spec:\n  host: echo.tcp.internal\n  trafficPolicy:\n    connectionPool: {tcp: {idleTimeout: 1s}}\n",
    );
    dir.write(
        "se.yaml",
        &l4_service_entry("echo", "echo.tcp.internal", 31400, "TCP", &[echo.addr]),
    );
    let gw = Gateway::start(dir.path(), &["--port-map", "31400=0"]);
    let addr = gw.listener(31400);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    let start = Instant::now();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        other => gw.fail(format!(
            "the idle stream should be closed after the DestinationRule's 1 s (the gateway's default is 1 h): {other:?} after {:?}",
            start.elapsed()
        )),
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        start.elapsed()
    );
}
