//! Layer 4 end to end: raw TCP Gateway ports forwarded by VirtualService `tcp` routes (the book's
//! tcp-echo), TLS PASSTHROUGH chosen by SNI (the book's simple-sni backends, played by
//! `openssl s_server`), TLS terminated onto `tcp` routes, and the stream semantics in between:
//! half-close, resets, the idle timeout, weights, rejections and metrics.
//!
//! Clients are the real `nc`, `curl` and `openssl s_client`, or std `TcpStream`s with timeouts on
//! every read and write. All traffic stays on 127.0.0.1.

mod support;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

// ------------------------------------------------------------------------------------------
// Helpers

/// `../shared/fixtures/istio-in-action/ch4`; fails with a clear message when it is missing.
fn ch4() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/istio-in-action/ch4");
    assert!(
        dir.is_dir(),
        "the shared Istio fixtures are missing: expected {} (../shared/fixtures relative to \
         CARGO_MANIFEST_DIR)",
        dir.display()
    );
    dir
}

/// The book's simple-sni backend `n` (1 or 2): `(tls.crt, tls.key, ca-chain.pem)`.
fn sni_backend(n: u8) -> (PathBuf, PathBuf, String) {
    let dir = ch4().join(format!("credentials/sni-backends/simple-sni-{n}"));
    (
        dir.join("tls.crt"),
        dir.join("tls.key"),
        dir.join("ca-chain.pem").display().to_string(),
    )
}

/// Copies the book's files, unmodified, into `dir` (under their base names).
fn copy_book(dir: &ConfigDir, files: &[&str]) {
    for f in files {
        let text = std::fs::read_to_string(ch4().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let name = Path::new(f).file_name().unwrap().to_string_lossy();
        dir.write(&name, &text);
    }
}

const ECHO_HOST: &str = "tcp-echo-service.default.svc.cluster.local";
const ECHO_DESTINATION: &str = "outbound|2701||tcp-echo-service.default.svc.cluster.local";
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A client connection to the gateway with read/write timeouts and no Nagle delay.
fn connect(gw: &Gateway, addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| gw.fail(format!("connect to {addr}: {e}")));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads until EOF; any error (including a timeout) is returned with what was read so far.
fn read_to_eof(stream: &mut TcpStream) -> Result<Vec<u8>, (std::io::Error, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err((e, out)),
        }
    }
}

/// `result`'s value, or a failure (with the gateway's output) saying what was being done.
fn ok<T, E: std::fmt::Display>(gw: &Gateway, what: &str, result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| gw.fail(format!("{what}: {e}")))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Sets SO_LINGER to 0 and drops the socket: the kernel sends a RST instead of a FIN.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(stream);
}

/// `openssl s_client -connect 127.0.0.1:<port> -servername <name>` with stdin closed; returns
/// (exit success, certificate subject line, stdout + stderr).
fn s_client(gw: &Gateway, port: u16, servername: &str) -> (bool, String, String) {
    let out = openssl_s_client(port, &["-servername", servername])
        .unwrap_or_else(|| gw.fail(format!("openssl s_client -servername {servername} hung")));
    (out.success, out.subject(), out.text())
}

/// Sum of the samples of `name` whose label set contains `label` (e.g. `reason="no_route"`).
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            if n == name && labels.contains(label) {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

fn metrics(gw: &Gateway) -> String {
    let (status, body) = gw.metrics_get("/stats/prometheus");
    if status != 200 {
        gw.fail(format!("/stats/prometheus answered {status}: {body}"));
    }
    body
}

/// Scrapes the metrics until `cond` holds for them (for at most `within`); returns whether it did,
/// and the last scrape.
fn metrics_when(gw: &Gateway, within: Duration, cond: impl Fn(&str) -> bool) -> (bool, String) {
    let mut last = String::new();
    let held = poll(within, || {
        last = metrics(gw);
        cond(&last).then_some(())
    })
    .is_some();
    (held, last)
}

/// Gateway `edge` with the `servers:` entries `servers` (YAML lines from `  - port:` on).
fn edge_gateway(servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: edge}}\nspec:\n  \
         selector: {{istio: ingressgateway}}\n  servers:\n{servers}"
    )
}

/// VirtualService `name` for `hosts` (a YAML flow list) on Gateway `edge`, with the route rules
/// `rules` (YAML lines from `  tcp:`, `  tls:` or `  http:` on).
fn edge_vs(name: &str, hosts: &str, rules: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n\
         spec:\n  hosts: {hosts}\n  gateways: [edge]\n{rules}"
    )
}

/// A config dir holding `config` (`gateway.yaml`) and the ServiceEntries `entries`
/// (`backends.yaml`).
fn l4_config(config: &str, entries: &[String]) -> ConfigDir {
    let dir = ConfigDir::new();
    dir.write("gateway.yaml", config);
    dir.write("backends.yaml", &entries.join("---\n"));
    dir
}

/// A gateway on `dir` with `--certs-dir <certs>` when given and Gateway port `port` mapped to an
/// ephemeral port.
fn start_l4(dir: &ConfigDir, certs: Option<&Path>, port: u16) -> Gateway {
    let certs_dir = certs.map(|c| c.display().to_string());
    let port_map = format!("{port}=0");
    let mut args = Vec::new();
    if let Some(certs_dir) = &certs_dir {
        args.extend(["--certs-dir", certs_dir]);
    }
    args.extend(["--port-map", &port_map]);
    Gateway::start(dir.path(), &args)
}

/// A Gateway `edge` with one `protocol: TCP` server per entry of `ports`, and a VirtualService
/// whose `tcp` rules send each port (`match.port`) to its weighted destinations
/// `(host, weight)`; every destination uses port 7000 of its ServiceEntry.
fn tcp_gateway(ports: &[(u16, &[(&str, u32)])]) -> String {
    let mut servers = String::new();
    for (port, _) in ports {
        servers.push_str(&format!(
            "  - port: {{number: {port}, name: tcp-{port}, protocol: TCP}}\n    hosts: [\"*\"]\n"
        ));
    }
    let mut tcp = String::from("  tcp:\n");
    for (port, dests) in ports {
        tcp.push_str(&format!("  - match: [{{port: {port}}}]\n    route:\n"));
        for (host, weight) in *dests {
            tcp.push_str(&format!(
                "    - destination: {{host: {host}, port: {{number: 7000}}}}\n      weight: {weight}\n"
            ));
        }
    }
    format!(
        "{}---\n{}",
        edge_gateway(&servers),
        edge_vs("edge-tcp", "[\"*\"]", &tcp)
    )
}

/// ServiceEntry `<name>` for host `<name>.l4.internal` port 7000 (protocol TCP) → `addrs`.
fn tcp_backend(name: &str, addrs: &[SocketAddr]) -> String {
    l4_service_entry(name, &format!("{name}.l4.internal"), 7000, "TCP", addrs)
}

/// A gateway serving `tcp_gateway(ports)` plus the given ServiceEntries, every listed Gateway
/// port mapped to an ephemeral port.
fn start_tcp(
    ports: &[(u16, &[(&str, u32)])],
    entries: &[String],
    args: &[&str],
) -> (Gateway, ConfigDir) {
    let dir = l4_config(&tcp_gateway(ports), entries);
    let maps: Vec<String> = ports.iter().map(|(p, _)| format!("{p}=0")).collect();
    let mut all: Vec<&str> = Vec::new();
    for m in &maps {
        all.extend(["--port-map", m]);
    }
    all.extend_from_slice(args);
    let gw = Gateway::start(dir.path(), &all);
    (gw, dir)
}

/// The book's TCP scenario: gateway-tcp.yaml + echo-vs.yaml, `tcp-echo-service` → a TCP echo.
struct BookTcp {
    gw: Gateway,
    addr: SocketAddr,
    _echo: TcpEcho,
    _dir: ConfigDir,
}

fn book_tcp(args: &[&str]) -> BookTcp {
    let echo = TcpEcho::start();
    let dir = ConfigDir::new();
    copy_book(&dir, &["gateway-tcp.yaml", "echo-vs.yaml"]);
    dir.write(
        "backends.yaml",
        &l4_service_entry("tcp-echo", ECHO_HOST, 2701, "TCP", &[echo.addr]),
    );
    let mut all = vec!["--port-map", "31400=0"];
    all.extend_from_slice(args);
    let gw = Gateway::start(dir.path(), &all);
    let addr = gw.listener(31400);
    BookTcp {
        gw,
        addr,
        _echo: echo,
        _dir: dir,
    }
}

/// A CA and a server certificate for `host` (CN = host), in Kubernetes secret layout under
/// `certs/<name>/`, with the CA at `certs/<name>-ca.pem`.
struct Credential {
    folder: PathBuf,
    ca_path: PathBuf,
    ca_der: Vec<u8>,
}

impl Credential {
    fn new(certs: &Path, name: &str, host: &str) -> Credential {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host);
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let folder = certs.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("tls.crt"), leaf.pem()).unwrap();
        std::fs::write(folder.join("tls.key"), leaf_key.serialize_pem()).unwrap();
        let ca_path = certs.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Credential {
            folder,
            ca_path,
            ca_der: ca.der().to_vec(),
        }
    }

    fn cert(&self) -> PathBuf {
        self.folder.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.folder.join("tls.key")
    }

    fn ca(&self) -> String {
        self.ca_path.display().to_string()
    }
}

/// Asserts `out` is s_server's `-www` status page, served by the s_server started with `cert`.
fn assert_s_server_page(gw: &Gateway, out: &CurlOutput, cert: &Path, what: &str) {
    let ok = out.status == 200
        && out.body.contains("s_server")
        && out.body.contains(&cert.display().to_string());
    if !ok {
        gw.fail(format!(
            "{what}: expected s_server's 200 page mentioning {}; got exit {} status {} stderr {}\nbody:\n{}",
            cert.display(),
            out.exit_code,
            out.status,
            out.stderr,
            out.body.chars().take(1500).collect::<String>()
        ));
    }
}

// ------------------------------------------------------------------------------------------
// 1. The book's TCP gateway with nc

#[test]
fn book_tcp_gateway_echoes_through_nc() {
    let book = book_tcp(&[]);
    let input = b"hello tollgate\nsecond line over tcp\n";
    // -N: shut down the socket's write side at EOF on stdin, then read until the server closes.
    let out = nc(book.addr.port(), input)
        .unwrap_or_else(|| book.gw.fail("nc -N did not exit within 20 s"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || out.stdout != input {
        book.gw.fail(format!(
            "nc: status {}, stdout {stdout:?}, stderr {:?}; expected the input echoed",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

// ------------------------------------------------------------------------------------------
// 2. 100 MB through the TCP port

const BLOCK: usize = 64 * 1024;
const TOTAL: usize = 100 * 1024 * 1024;

/// Deterministic pseudo-random block `i` (xorshift64*).
fn fill_block(i: u64, buf: &mut [u8]) {
    let mut x = (0x9E37_79B9_7F4A_7C15u64 ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03)) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Both ways of copying (`--tcp-copy`) must behave the same on the wire.
const COPY_MODES: [&str; 3] = ["auto", "userspace", "splice"];

#[test]
fn hundred_megabytes_round_trip_intact() {
    for mode in COPY_MODES {
        hundred_megabytes_round_trip(mode);
    }
}

fn hundred_megabytes_round_trip(mode: &str) {
    let book = book_tcp(&["--tcp-copy", mode]);
    let gw = &book.gw;
    let mut stream = connect(gw, book.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let sender = std::thread::spawn(move || -> Result<(usize, u64), String> {
        let mut hasher = DefaultHasher::new();
        let mut buf = vec![0u8; BLOCK];
        for i in 0..(TOTAL / BLOCK) as u64 {
            fill_block(i, &mut buf);
            hasher.write(&buf);
            writer
                .write_all(&buf)
                .map_err(|e| format!("write block {i}: {e}"))?;
        }
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown(Write): {e}"))?;
        Ok((TOTAL, hasher.finish()))
    });
    // Hash the echo in the same 64 KiB blocks, whatever the read sizes.
    let mut hasher = DefaultHasher::new();
    let (mut received, mut pending) = (0usize, Vec::with_capacity(BLOCK));
    let mut buf = vec![0u8; BLOCK];
    let read_error = loop {
        match stream.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                received += n;
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    let take = (BLOCK - pending.len()).min(rest.len());
                    pending.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if pending.len() == BLOCK {
                        hasher.write(&pending);
                        pending.clear();
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    if !pending.is_empty() {
        hasher.write(&pending);
    }
    let sent = sender.join().expect("sender thread");
    let elapsed = started.elapsed();
    if let Some(e) = read_error {
        gw.fail(format!(
            "reading the echo failed after {received} of {TOTAL} bytes ({elapsed:?}): {e}; sender: {sent:?}"
        ));
    }
    let (sent_len, sent_hash) = sent.unwrap_or_else(|e| gw.fail(format!("sender: {e}")));
    assert_eq!(
        (received, hasher.finish()),
        (sent_len, sent_hash),
        "received (length, hash) differs from sent"
    );
    eprintln!(
        "100 MiB echoed through the gateway ({mode}) in {elapsed:?} ({:.0} MiB/s each way)",
        100.0 / elapsed.as_secs_f64()
    );
}

// ------------------------------------------------------------------------------------------
// 3. Half-close

#[test]
fn half_close_is_propagated_both_ways() {
    for mode in COPY_MODES {
        half_close(mode);
    }
}

fn half_close(mode: &str) {
    let echo = TcpEcho::start();
    // Replies only after the client's FIN: a gateway that closes both ways at the client's
    // EOF loses the reply.
    let after_eof = TcpServer::start(|mut s| {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut n = 0usize;
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    let _ = writeln!(s, "error after {n} bytes: {e}");
                    return;
                }
            }
        }
        let _ = writeln!(s, "got {n} bytes");
        let _ = s.shutdown(Shutdown::Write);
    });
    // Says goodbye and half-closes first, then keeps reading: reports what it got after its FIN.
    let (got_tx, got_rx) = mpsc::channel::<Result<Vec<u8>, String>>();
    let got_tx = std::sync::Mutex::new(got_tx);
    let server_first = TcpServer::start(move |mut s| {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = s.write_all(b"bye\n");
        let _ = s.shutdown(Shutdown::Write);
        let result = read_to_eof(&mut s).map_err(|(e, got)| format!("{e} after {got:?}"));
        let _ = got_tx.lock().unwrap().send(result);
    });
    let entries = [
        tcp_backend("echo", &[echo.addr]),
        tcp_backend("after-eof", &[after_eof.addr]),
        tcp_backend("server-first", &[server_first.addr]),
    ];
    let (gw, _dir) = start_tcp(
        &[
            (9001, &[("echo.l4.internal", 100)]),
            (9002, &[("after-eof.l4.internal", 100)]),
            (9003, &[("server-first.l4.internal", 100)]),
        ],
        &entries,
        &["--tcp-copy", mode],
    );

    // (a) Client FIN after its data: the whole echo still arrives, then EOF.
    let mut s = connect(&gw, gw.listener(9001));
    let data: Vec<u8> = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
    ok(&gw, "(a) write", s.write_all(&data));
    ok(&gw, "(a) shutdown(Write)", s.shutdown(Shutdown::Write));
    match read_to_eof(&mut s) {
        Ok(back) if back == data => {}
        Ok(back) => gw.fail(format!(
            "echo after client FIN: got {} bytes, expected the {} sent",
            back.len(),
            data.len()
        )),
        Err((e, back)) => gw.fail(format!(
            "echo after client FIN: error {e} after {} bytes",
            back.len()
        )),
    }

    // (b) The upstream answers only after it sees the client's FIN.
    let mut s = connect(&gw, gw.listener(9002));
    ok(&gw, "(b) write", s.write_all(&[b'x'; 1000]));
    ok(&gw, "(b) shutdown(Write)", s.shutdown(Shutdown::Write));
    match read_to_eof(&mut s) {
        Ok(reply) if reply == b"got 1000 bytes\n" => {}
        Ok(reply) => gw.fail(format!(
            "reply after client FIN: got {:?}, expected \"got 1000 bytes\\n\"",
            String::from_utf8_lossy(&reply)
        )),
        Err((e, reply)) => gw.fail(format!(
            "reply after client FIN: error {e} after {:?}",
            String::from_utf8_lossy(&reply)
        )),
    }

    // (c) The upstream's FIN reaches the client, and the client's bytes still flow upstream.
    let mut s = connect(&gw, gw.listener(9003));
    match read_to_eof(&mut s) {
        Ok(b) if b == b"bye\n" => {}
        Ok(b) => gw.fail(format!(
            "server half-close: got {b:?}, expected \"bye\\n\" then EOF"
        )),
        Err((e, b)) => gw.fail(format!(
            "server half-close: expected \"bye\\n\" then EOF, got error {e} after {b:?}"
        )),
    }
    if let Err(e) = s.write_all(b"still flowing\n") {
        gw.fail(format!("writing after the upstream's FIN: {e}"));
    }
    ok(
        &gw,
        "(c) shutdown(Write) after the upstream's FIN",
        s.shutdown(Shutdown::Write),
    );
    match got_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(got)) if got == b"still flowing\n" => {}
        other => gw.fail(format!(
            "after its own FIN the upstream should still receive the client's bytes then EOF; got {other:?}"
        )),
    }
}

// ------------------------------------------------------------------------------------------
// 4. Resets

#[test]
fn resets_are_propagated_as_resets() {
    for mode in COPY_MODES {
        resets(mode);
    }
}

fn resets(mode: &str) {
    // Upstream reads a line, then resets.
    let resetter = TcpServer::start(|s| {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&s).read_line(&mut line);
        reset(s);
    });
    // Upstream reads a line, says so, then reports how its next read ends.
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let (end_tx, end_rx) = mpsc::channel::<std::io::Result<usize>>();
    let (line_tx, end_tx) = (
        std::sync::Mutex::new(line_tx),
        std::sync::Mutex::new(end_tx),
    );
    let watcher = TcpServer::start(move |mut s| {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            match s.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                _ => break,
            }
        }
        let _ = line_tx
            .lock()
            .unwrap()
            .send(String::from_utf8_lossy(&line).into_owned());
        let mut buf = [0u8; 64];
        let _ = end_tx.lock().unwrap().send(s.read(&mut buf));
    });
    let entries = [
        tcp_backend("resetter", &[resetter.addr]),
        tcp_backend("watcher", &[watcher.addr]),
    ];
    let (gw, _dir) = start_tcp(
        &[
            (9004, &[("resetter.l4.internal", 100)]),
            (9005, &[("watcher.l4.internal", 100)]),
        ],
        &entries,
        &["--tcp-copy", mode],
    );

    // Upstream RST → client RST (a read error), not a FIN (Ok(0)).
    let mut s = connect(&gw, gw.listener(9004));
    ok(
        &gw,
        "write to the resetting upstream",
        s.write_all(b"boom\n"),
    );
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(0) => gw.fail("upstream reset: the client got a FIN (read Ok(0)), expected a reset"),
        other => gw.fail(format!(
            "upstream reset: expected ConnectionReset on the client's read, got {other:?}"
        )),
    }

    // Client RST → upstream RST.
    let s = connect(&gw, gw.listener(9005));
    ok(
        &gw,
        "write to the watching upstream",
        (&s).write_all(b"hello\n"),
    );
    match line_rx.recv_timeout(Duration::from_secs(15)) {
        Ok(line) if line == "hello\n" => {}
        other => gw.fail(format!(
            "the upstream should get \"hello\\n\", got {other:?}"
        )),
    }
    reset(s);
    match end_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(Ok(0)) => gw.fail("client reset: the upstream got a FIN (read Ok(0)), expected a reset"),
        other => gw.fail(format!(
            "client reset: expected ConnectionReset on the upstream's read, got {other:?}"
        )),
    }
}

// ------------------------------------------------------------------------------------------
// 5. Idle timeout

#[test]
fn idle_streams_are_closed_after_the_idle_timeout() {
    let book = book_tcp(&["--tcp-idle-timeout", "1s"]);
    let gw = &book.gw;

    // A stream with a byte every 300 ms for 3 s stays open well past the 1 s timeout.
    let addr = book.addr;
    let mut busy = connect(gw, addr);
    let active = std::thread::spawn(move || -> Result<(), String> {
        let mut byte = [0u8; 1];
        for i in 0..10u8 {
            busy.write_all(&[b'a' + i])
                .map_err(|e| format!("write #{i}: {e}"))?;
            match busy.read(&mut byte) {
                Ok(1) if byte[0] == b'a' + i => {}
                other => return Err(format!("echo of byte #{i}: {other:?} {byte:?}")),
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        busy.write_all(b"!")
            .map_err(|e| format!("final write: {e}"))?;
        match busy.read(&mut byte) {
            Ok(1) if &byte == b"!" => Ok(()),
            other => Err(format!("final echo after 3 s of trickle: {other:?}")),
        }
    });

    // An idle one is closed by the gateway after about 1 s.
    let mut idle = connect(gw, addr);
    ok(gw, "first write on the idle stream", idle.write_all(b"x"));
    let mut byte = [0u8; 1];
    match idle.read(&mut byte) {
        Ok(1) => {}
        other => gw.fail(format!("first echo on the idle stream: {other:?}")),
    }
    let quiet_since = Instant::now();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let end = idle.read(&mut byte);
    let waited = quiet_since.elapsed();
    match end {
        Ok(0) => {}
        Err(e) if !is_timeout(&e) => {}
        Err(e) => gw.fail(format!(
            "the idle stream was still open after {waited:?} with --tcp-idle-timeout 1s ({e})"
        )),
        Ok(n) => gw.fail(format!("unexpected {n} bytes on the idle stream")),
    }
    if waited < Duration::from_millis(800) {
        gw.fail(format!(
            "the idle stream was closed after only {waited:?} (timeout 1s)"
        ));
    }
    if let Err(e) = active.join().expect("active thread") {
        gw.fail(format!(
            "a stream with a byte every 300 ms was disturbed: {e}"
        ));
    }
}

// ------------------------------------------------------------------------------------------
// 6. Weighted tcp routes

#[test]
fn weighted_tcp_routes_split_connections() {
    let a = TcpServer::banner(b"A");
    let b = TcpServer::banner(b"B");
    let entries = [
        tcp_backend("banner-a", &[a.addr]),
        tcp_backend("banner-b", &[b.addr]),
    ];
    let (gw, _dir) = start_tcp(
        &[(
            9000,
            &[("banner-a.l4.internal", 80), ("banner-b.l4.internal", 20)],
        )],
        &entries,
        &[],
    );
    let addr = gw.listener(9000);
    let (mut count_a, mut count_b) = (0u32, 0u32);
    for i in 0..1000 {
        let mut s = connect(&gw, addr);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        match read_to_eof(&mut s) {
            Ok(b) if b == b"A" => count_a += 1,
            Ok(b) if b == b"B" => count_b += 1,
            Ok(b) => gw.fail(format!("connection #{i}: unexpected banner {b:?}")),
            Err((e, b)) => gw.fail(format!("connection #{i}: error {e} after {b:?}")),
        }
    }
    let share = f64::from(count_a) / 10.0;
    assert!(
        (75.0..=85.0).contains(&share),
        "weights 80/20: got A={count_a} B={count_b} ({share}% A)"
    );
    assert_eq!(
        (a.accepted(), b.accepted()),
        (count_a as usize, count_b as usize),
        "every connection reached exactly one backend"
    );
}

// ------------------------------------------------------------------------------------------
// 7. The book's SNI passthrough

struct BookSni {
    gw: Gateway,
    port: u16,
    backends: [OpensslServer; 2],
    _dir: ConfigDir,
}

fn book_sni() -> BookSni {
    let (c1, k1, _) = sni_backend(1);
    let (c2, k2, _) = sni_backend(2);
    let backends = [
        OpensslServer::start(&c1, &k1),
        OpensslServer::start(&c2, &k2),
    ];
    let dir = ConfigDir::new();
    copy_book(
        &dir,
        &[
            "sni/passthrough-sni-gateway-both.yaml",
            "sni/passthrough-sni-vs-1.yaml",
            "sni/passthrough-sni-vs-2.yaml",
        ],
    );
    let entries = [
        l4_service_entry(
            "simple-tls-service-1",
            "simple-tls-service-1.default.svc.cluster.local",
            80,
            "TLS",
            &[backends[0].addr],
        ),
        l4_service_entry(
            "simple-tls-service-2",
            "simple-tls-service-2.default.svc.cluster.local",
            80,
            "TLS",
            &[backends[1].addr],
        ),
    ];
    dir.write("backends.yaml", &entries.join("---\n"));
    let gw = Gateway::start(dir.path(), &["--port-map", "31400=0"]);
    let port = gw.listener(31400).port();
    BookSni {
        gw,
        port,
        backends,
        _dir: dir,
    }
}

#[test]
fn book_sni_passthrough_reaches_each_backend_with_its_own_certificate() {
    let book = book_sni();
    let (gw, port) = (&book.gw, book.port);
    let (cert1, _, ca1) = sni_backend(1);
    let (cert2, _, ca2) = sni_backend(2);
    let one = curl_https(
        "simple-sni-1.istioinaction.io",
        port,
        "/",
        &["--cacert", &ca1],
    );
    assert_s_server_page(gw, &one, &cert1, "simple-sni-1 with its CA");
    let two = curl_https(
        "simple-sni-2.istioinaction.io",
        port,
        "/",
        &["--cacert", &ca2],
    );
    assert_s_server_page(gw, &two, &cert2, "simple-sni-2 with its CA");
    // The certificate the client verified is the backend's own: sni-1's CA does not verify it.
    let crossed = curl_https(
        "simple-sni-2.istioinaction.io",
        port,
        "/",
        &["--cacert", &ca1],
    );
    if crossed.exit_code == 0 || crossed.status != 0 {
        gw.fail(format!(
            "simple-sni-2 must not verify against simple-sni-1's CA: exit {} status {} {}",
            crossed.exit_code, crossed.status, crossed.stderr
        ));
    }
    let (_, subject, text) = s_client(gw, port, "simple-sni-2.istioinaction.io");
    if !subject.contains("CN = simple-sni-2.istioinaction.io") {
        gw.fail(format!(
            "s_client -servername simple-sni-2: expected the backend's subject, got {subject:?}\n{text}\n\
             --- s_server 2 output:\n{}",
            book.backends[1].output()
        ));
    }
    let (_, subject, text) = s_client(gw, port, "simple-sni-1.istioinaction.io");
    if !subject.contains("CN = simple-sni-1.istioinaction.io") {
        gw.fail(format!(
            "s_client -servername simple-sni-1: expected the backend's subject, got {subject:?}\n{text}"
        ));
    }
}

// ------------------------------------------------------------------------------------------
// 8. Terminating and passthrough servers on one port

#[test]
fn simple_and_passthrough_servers_share_a_port_by_sni() {
    let certs = tempfile::tempdir().unwrap();
    let term = Credential::new(certs.path(), "term-cert", "term.example.com");
    let pass = Credential::new(certs.path(), "pass-cert", "pass.example.com");
    let http = EchoBackend::start("term", "v1");
    let tls_backend = OpensslServer::start(&pass.cert(), &pass.key());
    let config = [
        edge_gateway(
            "  - port: {number: 443, name: https-term, protocol: HTTPS}
    hosts: [term.example.com]
    tls: {mode: SIMPLE, credentialName: term-cert}
  - port: {number: 443, name: tls-pass, protocol: TLS}
    hosts: [pass.example.com]
    tls: {mode: PASSTHROUGH}
",
        ),
        edge_vs(
            "term",
            "[term.example.com]",
            "  http:
  - route: [{destination: {host: term.l4.internal, port: {number: 80}}}]
",
        ),
        edge_vs(
            "pass",
            "[pass.example.com]",
            "  tls:
  - match: [{port: 443, sniHosts: [pass.example.com]}]
    route: [{destination: {host: pass.l4.internal, port: {number: 443}}}]
",
        ),
    ]
    .join("---\n");
    let entries = [
        service_entry("term", "term.l4.internal", 80, &[(http.addr, &[])]),
        l4_service_entry("pass", "pass.l4.internal", 443, "TLS", &[tls_backend.addr]),
    ];
    let dir = l4_config(&config, &entries);
    let gw = start_l4(&dir, Some(certs.path()), 443);
    let port = gw.listener(443).port();

    let terminated = curl_https(
        "term.example.com",
        port,
        "/hello",
        &["--cacert", &term.ca()],
    );
    if terminated.status != 200 || terminated.json()["service"] != "term" {
        gw.fail(format!(
            "term.example.com: expected the HTTP echo behind tollgate's TLS; exit {} status {} {}\n{}",
            terminated.exit_code, terminated.status, terminated.stderr, terminated.body
        ));
    }
    assert_eq!(terminated.json()["path"], "/hello");
    let passed = curl_https("pass.example.com", port, "/", &["--cacert", &pass.ca()]);
    assert_s_server_page(&gw, &passed, &pass.cert(), "pass.example.com");
    // Each host got the certificate of whoever terminated it.
    let (_, subject, text) = s_client(&gw, port, "pass.example.com");
    assert!(subject.contains("CN = pass.example.com"), "{text}");
    assert!(
        text.contains("pass-cert test CA"),
        "issuer is pass's CA: {text}"
    );
    let (_, subject, text) = s_client(&gw, port, "term.example.com");
    assert!(subject.contains("CN = term.example.com"), "{text}");
    assert!(
        text.contains("term-cert test CA"),
        "issuer is term's CA: {text}"
    );
    let crossed = curl_https("pass.example.com", port, "/", &["--cacert", &term.ca()]);
    assert_ne!(
        crossed.exit_code, 0,
        "pass.example.com must be served with s_server's certificate, not tollgate's"
    );
}

// ------------------------------------------------------------------------------------------
// 9. Unknown SNI, and a passthrough host without a route

#[test]
fn unknown_sni_gets_an_alert_and_unrouted_sni_is_closed_silently() {
    let certs = tempfile::tempdir().unwrap();
    let a = Credential::new(certs.path(), "a-cert", "a.example.com");
    let backend = OpensslServer::start(&a.cert(), &a.key());
    let config = [
        edge_gateway(
            "  - port: {number: 8443, name: tls-wild, protocol: TLS}
    hosts: [\"*.example.com\"]
    tls: {mode: PASSTHROUGH}
",
        ),
        edge_vs(
            "only-a",
            "[\"*.example.com\"]",
            "  tls:
  - match: [{port: 8443, sniHosts: [a.example.com]}]
    route: [{destination: {host: a.l4.internal, port: {number: 443}}}]
",
        ),
    ]
    .join("---\n");
    let entries = [l4_service_entry(
        "a",
        "a.l4.internal",
        443,
        "TLS",
        &[backend.addr],
    )];
    let dir = l4_config(&config, &entries);
    let gw = start_l4(&dir, None, 8443);
    let port = gw.listener(8443).port();

    // The routed name passes through to the backend.
    let (_, subject, text) = s_client(&gw, port, "a.example.com");
    if !subject.contains("CN = a.example.com") {
        gw.fail(format!("a.example.com should reach s_server: {text}"));
    }
    // A name no server on the port has: unrecognized_name alert.
    let (ok, _, text) = s_client(&gw, port, "unknown.example.org");
    if ok || !text.contains("unrecognized name") {
        gw.fail(format!(
            "SNI unknown.example.org: expected a failed handshake with an unrecognized_name alert:\n{text}"
        ));
    }
    // A name of the passthrough server that no tls route covers: closed, no alert.
    let no_route = |text: &str| {
        metric(
            text,
            "tollgate_tcp_connections_rejected_total",
            "reason=\"no_route\"",
        )
    };
    let before = no_route(&metrics(&gw));
    let (ok, subject, text) = s_client(&gw, port, "b.example.com");
    if ok || !subject.is_empty() || text.contains("alert") {
        gw.fail(format!(
            "SNI b.example.com (server host, no tls route): expected the connection closed without an alert:\n{text}"
        ));
    }
    let (counted, last) = metrics_when(&gw, Duration::from_secs(10), |text| {
        no_route(text) >= before + 1.0
    });
    if !counted {
        gw.fail(format!(
            "tollgate_tcp_connections_rejected_total{{reason=\"no_route\"}} did not increase from {before}:\n{last}"
        ));
    }
    let unknown = metric(
        &last,
        "tollgate_tls_handshakes_total",
        "result=\"no_matching_server\"",
    );
    assert!(
        unknown >= 1.0,
        "no_matching_server handshakes counted:\n{last}"
    );
}

// ------------------------------------------------------------------------------------------
// 10. TLS terminated onto a tcp route

#[test]
fn tls_simple_server_forwards_decrypted_bytes_by_tcp_route() {
    let echo = TcpEcho::start();
    let certs = tempfile::tempdir().unwrap();
    let cred = Credential::new(certs.path(), "echo-cert", "echo.example.com");
    let config = [
        edge_gateway(
            "  - port: {number: 9443, name: tls-echo, protocol: TLS}
    hosts: [echo.example.com]
    tls: {mode: SIMPLE, credentialName: echo-cert}
",
        ),
        edge_vs(
            "tls-echo",
            "[echo.example.com]",
            "  tcp:
  - match: [{port: 9443}]
    route: [{destination: {host: echo.l4.internal, port: {number: 7000}}}]
",
        ),
    ]
    .join("---\n");
    let dir = l4_config(&config, &[tcp_backend("echo", &[echo.addr])]);
    let gw = start_l4(&dir, Some(certs.path()), 9443);
    let addr = gw.listener(9443);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cred.ca_der.clone()))
        .unwrap();
    let conn = tls_client(roots, "echo.example.com");
    let mut tls = rustls::StreamOwned::new(conn, connect(&gw, addr));
    for line in ["hello over tls\n", "a second line\n"] {
        if let Err(e) = tls.write_all(line.as_bytes()).and_then(|_| tls.flush()) {
            gw.fail(format!("TLS write of {line:?}: {e}"));
        }
        let mut got = vec![0u8; line.len()];
        if let Err(e) = tls.read_exact(&mut got) {
            gw.fail(format!(
                "TLS read of the echo of {line:?}: {e} (got {got:?})"
            ));
        }
        assert_eq!(String::from_utf8_lossy(&got), line);
    }
    // The certificate is tollgate's credential.
    let (_, subject, text) = s_client(&gw, addr.port(), "echo.example.com");
    assert!(subject.contains("CN = echo.example.com"), "{text}");
    assert!(text.contains("echo-cert test CA"), "{text}");
}

// ------------------------------------------------------------------------------------------
// 11. Metrics

#[test]
fn tcp_metrics_count_streams_and_bytes() {
    let book = book_tcp(&[]);
    let gw = &book.gw;
    const N: usize = 10_000;
    let mut s = connect(gw, book.addr);
    ok(gw, "write", s.write_all(&[b'm'; N]));
    ok(gw, "shutdown(Write)", s.shutdown(Shutdown::Write));
    match read_to_eof(&mut s) {
        Ok(back) if back.len() == N => {}
        Ok(back) => gw.fail(format!("echoed {} of {N} bytes", back.len())),
        Err((e, back)) => gw.fail(format!("echo: {e} after {} bytes", back.len())),
    }
    drop(s);
    let dest = format!("destination=\"{ECHO_DESTINATION}\"");
    // Istio's series: the service, reported by the gateway as the client side, no flags.
    let service = "destination_service=\"tcp-echo-service.default.svc.cluster.local\"";
    let (recorded, last) = metrics_when(gw, Duration::from_secs(15), |text| {
        let istio = |name: &str| {
            text.lines()
                .filter(|l| l.contains(service) && l.contains("request_protocol=\"tcp\""))
                .filter(|l| l.contains("reporter=\"source\"") && l.contains("response_flags=\"-\""))
                .map(|l| metric(l, name, service))
                .sum::<f64>()
        };
        istio("istio_tcp_connections_opened_total") >= 1.0
            && istio("istio_tcp_connections_closed_total") >= 1.0
            && istio("istio_tcp_received_bytes_total") >= N as f64
            && istio("istio_tcp_sent_bytes_total") >= N as f64
            && metric(
                text,
                "tollgate_tcp_connection_duration_seconds_count",
                &dest,
            ) >= 1.0
    });
    if !recorded {
        let tcp: Vec<&str> = last.lines().filter(|l| l.contains("_tcp_")).collect();
        gw.fail(format!(
            "after one {N}-byte echo stream to {ECHO_DESTINATION}, expected opened/closed >= 1, \
             received/sent >= {N} and a duration sample; TCP metrics:\n{}",
            tcp.join("\n")
        ));
    }
}

// ------------------------------------------------------------------------------------------
// 12. HTTPS without tls.mode passes through, with a warning

#[test]
fn https_server_without_tls_mode_passes_through_with_a_warning() {
    let certs = tempfile::tempdir().unwrap();
    let cred = Credential::new(certs.path(), "nomode-cert", "nomode.example.com");
    let backend = OpensslServer::start(&cred.cert(), &cred.key());
    let config = [
        edge_gateway(
            "  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [nomode.example.com]
    tls: {}
",
        ),
        edge_vs(
            "nomode",
            "[nomode.example.com]",
            "  tls:
  - match: [{port: 443, sniHosts: [nomode.example.com]}]
    route: [{destination: {host: nomode.l4.internal, port: {number: 443}}}]
",
        ),
    ]
    .join("---\n");
    let entries = [l4_service_entry(
        "nomode",
        "nomode.l4.internal",
        443,
        "TLS",
        &[backend.addr],
    )];
    let dir = l4_config(&config, &entries);
    let is_warning = |d: &str| d.contains(" warning: ") && d.contains("PASSTHROUGH");

    let out = check(dir.path(), &[]);
    let lines: Vec<&str> = out.stdout.lines().filter(|l| is_warning(l)).collect();
    assert!(
        out.success() && !lines.is_empty(),
        "tollgate check: expected exit 0 and a PASSTHROUGH warning; exit {:?}\n--- stdout:\n{}--- stderr:\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains("gateway.yaml")),
        "the warning points at the Gateway file: {lines:?}"
    );

    let gw = start_l4(&dir, None, 443);
    let port = gw.listener(443).port();
    let diags = diagnostics(&gw.config_dump());
    if !diags.iter().any(|d| is_warning(d)) {
        gw.fail(format!(
            "/config_dump diagnostics lack the PASSTHROUGH warning: {diags:#?}"
        ));
    }
    let out = curl_https("nomode.example.com", port, "/", &["--cacert", &cred.ca()]);
    assert_s_server_page(&gw, &out, &cred.cert(), "HTTPS server without tls.mode");
}

// ------------------------------------------------------------------------------------------
// 13. Streams that cannot reach an upstream

#[test]
fn streams_without_a_reachable_upstream_are_closed_and_counted() {
    let dead = SocketAddr::from(([127, 0, 0, 1], dead_port()));
    let entries = [tcp_backend("dead", &[dead]), tcp_backend("empty", &[])];
    let (gw, _dir) = start_tcp(
        &[
            (9101, &[("dead.l4.internal", 100)]),
            (9102, &[("empty.l4.internal", 100)]),
            (9103, &[("nowhere.l4.internal", 100)]),
        ],
        &entries,
        &[],
    );
    for port in [9101, 9102, 9103] {
        let mut s = connect(&gw, gw.listener(port));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"anyone?\n");
        match read_to_eof(&mut s) {
            Ok(b) if b.is_empty() => {}
            Err((e, b)) if b.is_empty() && !is_timeout(&e) => {}
            other => gw.fail(format!(
                "Gateway port {port}: expected the stream closed without data, got {other:?}"
            )),
        }
    }
    let (counted, last) = metrics_when(&gw, Duration::from_secs(10), |text| {
        let r = |reason: &str| {
            metric(
                text,
                "tollgate_tcp_connections_rejected_total",
                &format!("reason=\"{reason}\""),
            )
        };
        r("connect_failed") >= 1.0 && r("no_cluster") + r("no_healthy_upstream") >= 2.0
    });
    if !counted {
        let lines: Vec<&str> = last
            .lines()
            .filter(|l| l.contains("tollgate_tcp_connections_rejected_total"))
            .collect();
        gw.fail(format!(
            "expected rejections connect_failed >= 1 and no_cluster + no_healthy_upstream >= 2:\n{}",
            lines.join("\n")
        ));
    }
}
