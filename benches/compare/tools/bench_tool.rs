//! Helper for `benches/compare/run.sh` (built as the `bench-tool` example:
//! `cargo build --release --example bench-tool`). Two subcommands:
//!
//! `hsload --addr IP:PORT (--sni NAME | --sni-file FILE) [--conns 50] [--duration 10]`
//!   Handshake load generator for scenarios C, Crsa and I. N concurrent loops,
//!   each: connect, full TLS 1.3 handshake (no resumption), one `GET /` with
//!   `Connection: close` (Host = the SNI name), read the whole response, close,
//!   repeat until the duration is over. With `--sni-file` every new connection
//!   takes the next name of the file (one per line), round robin. The server
//!   certificate is not verified (run.sh checks certificates with curl first), so
//!   the client stays cheap: OpenSSL 3.0's client side (wrk) costs twice the
//!   server side per handshake and cannot load a proxy's core. Prints one line:
//!   `connections=N errors=E seconds=S rate=R p50_ms=X p99_ms=Y`.
//!   Adapted from the workplace bench harness's `tools/hsload`.
//!
//! `sni-certs --dir DIR --count N --domain DOMAIN`
//!   Scenario I's certificates: a CA (`DIR/ca.crt`), one ECDSA P-256 key shared
//!   by N leaf certificates for `h<i>.DOMAIN` (i = 0..N), written as
//!   `DIR/creds/h<i>/{tls.crt,tls.key}` (tollgate's credential folders) and
//!   `DIR/pem/h<i>.pem` (certificate + key, for HAProxy and nginx), plus
//!   `DIR/names.txt` (one host name per line).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn main() {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("hsload") => hsload(args.collect()),
        Some("sni-certs") => sni_certs(args.collect()),
        _ => Err("usage: bench-tool hsload|sni-certs ...".to_string()),
    };
    if let Err(e) = result {
        eprintln!("bench-tool: {e}");
        std::process::exit(2);
    }
}

/// Flag/value pairs; every flag takes a value.
fn flags(args: Vec<String>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        out.push((flag, value));
    }
    Ok(out)
}

// ---- hsload --------------------------------------------------------------------

struct Load {
    addr: SocketAddr,
    names: Vec<ServerName<'static>>,
    requests: Vec<Vec<u8>>,
    next: AtomicUsize,
}

/// Accepts any server certificate and signature: the load generator only
/// needs the server to do its half of the handshake.
#[derive(Debug)]
struct NoVerify(Vec<SignatureScheme>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// One connection: handshake, request, full response. Returns the HTTP status.
async fn one(connector: &TlsConnector, load: &Load) -> std::io::Result<u16> {
    let i = load.next.fetch_add(1, Ordering::Relaxed) % load.names.len();
    let tcp = TcpStream::connect(load.addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(load.names[i].clone(), tcp).await?;
    tls.write_all(&load.requests[i]).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Ok(status);
            }
        }
    }
}

fn hsload(args: Vec<String>) -> Result<(), String> {
    let (mut addr, mut hosts, mut conns, mut duration) = (None, Vec::new(), 50usize, 10.0f64);
    for (flag, value) in flags(args)? {
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().map_err(|e| format!("--addr: {e}"))?),
            "--sni" => hosts.push(value),
            "--sni-file" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                hosts.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| l.trim().to_string()),
                );
            }
            "--conns" => conns = value.parse().map_err(|e| format!("--conns: {e}"))?,
            "--duration" => duration = value.parse().map_err(|e| format!("--duration: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if hosts.is_empty() {
        return Err("--sni or --sni-file is required".into());
    }
    let names = hosts
        .iter()
        .map(|h| ServerName::try_from(h.clone()).map_err(|e| format!("SNI {h}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let requests = hosts
        .iter()
        .map(|h| format!("GET / HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n").into_bytes())
        .collect();
    let load = Arc::new(Load {
        addr: addr.ok_or("--addr is required")?,
        names,
        requests,
        next: AtomicUsize::new(0),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run_load(load, conns, Duration::from_secs_f64(duration)));
    Ok(())
}

async fn run_load(load: Arc<Load>, conns: usize, duration: Duration) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(schemes)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled(); // every handshake is a full one
    let connector = TlsConnector::from(Arc::new(config));

    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (connector, load) = (connector.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let (mut times, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(5), one(&connector, &load)).await {
                    Ok(Ok(200)) => times.push(t.elapsed().as_micros() as u32),
                    _ => errors += 1,
                }
            }
            (times, errors)
        }));
    }
    let mut times = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (v, e) = t.await.expect("task panicked");
        times.extend(v);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    times.sort_unstable();
    let pct = |p: f64| {
        if times.is_empty() {
            0.0
        } else {
            let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
            times[i] as f64 / 1000.0
        }
    };
    println!(
        "connections={} errors={} seconds={:.3} rate={:.0} p50_ms={:.3} p99_ms={:.3}",
        times.len(),
        errors,
        secs,
        times.len() as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
}

// ---- sni-certs -----------------------------------------------------------------

fn sni_certs(args: Vec<String>) -> Result<(), String> {
    let (mut dir, mut count, mut domain) = (None, 10_000usize, "i.bench.test".to_string());
    for (flag, value) in flags(args)? {
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--count" => count = value.parse().map_err(|e| format!("--count: {e}"))?,
            "--domain" => domain = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let dir = dir.ok_or("--dir is required")?;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };

    let ca_key = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&e))?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench scenario I CA");
    let ca = ca_params.self_signed(&ca_key).map_err(|e| err(&e))?;

    let key = rcgen::KeyPair::generate().map_err(|e| err(&e))?; // shared by every leaf
    let key_pem = key.serialize_pem();
    for sub in ["creds", "pem"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| err(&e))?;
    }
    write(dir.join("ca.crt"), &ca.pem())?;
    let mut names = String::new();
    for i in 0..count {
        let host = format!("h{i}.{domain}");
        let mut params = rcgen::CertificateParams::new(vec![host.clone()]).map_err(|e| err(&e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host.as_str());
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(|e| err(&e))?;
        let cred = dir.join("creds").join(format!("h{i}"));
        std::fs::create_dir_all(&cred).map_err(|e| err(&e))?;
        write(cred.join("tls.crt"), &cert.pem())?;
        write(cred.join("tls.key"), &key_pem)?;
        write(
            dir.join("pem").join(format!("h{i}.pem")),
            &format!("{}{key_pem}", cert.pem()),
        )?;
        names.push_str(&host);
        names.push('\n');
    }
    write(dir.join("names.txt"), &names)
}
