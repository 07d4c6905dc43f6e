//! HTTP clients: the real `curl`, and a fast in-process keep-alive client.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{block_on, runtime};

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn parse_json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}"))
}

/// Result of one `curl` run. `status` is 0 when no response was received.
#[derive(Debug, Clone)]
pub struct CurlOutput {
    pub exit_code: i32,
    pub status: u16,
    /// Headers of the final response, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// curl's own error messages (`-sS`).
    pub stderr: String,
}

impl CurlOutput {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Value {
        parse_json(&self.body)
    }
}

/// Runs `curl -sS --noproxy '*' --max-time 15 -D <tmp> <args...>` and parses the
/// final response (after redirects / `100 Continue`). The body is curl's stdout,
/// so do not pass `-o`, `-i` or `-w`. A later `--max-time` in `args` overrides 15 s.
pub fn curl(args: &[&str]) -> CurlOutput {
    let dump = tempfile::NamedTempFile::new().expect("temp file for curl -D");
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "15", "-D"])
        .arg(dump.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run curl {args:?}: {e}"));
    let dumped = std::fs::read(dump.path()).expect("read curl header dump");
    let (status, headers) = parse_header_dump(&String::from_utf8_lossy(&dumped));
    CurlOutput {
        exit_code: out.status.code().unwrap_or(-1),
        status,
        headers,
        body: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Status and headers of the last `HTTP/...` block of a `curl -D` dump.
fn parse_header_dump(dump: &str) -> (u16, Vec<(String, String)>) {
    let mut status = 0;
    let mut headers = Vec::new();
    for line in dump.lines().map(str::trim_end) {
        if line.starts_with("HTTP/") {
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            headers.clear();
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    (status, headers)
}

/// A response from [`HttpClient`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Value {
        parse_json(&self.body)
    }
}

/// In-process HTTP/1.1 client for bounded load loops: keeps connections alive and
/// reuses them (one pool per client; clone shares it), gives each request a 5 s
/// timeout (connect + response + body), and never retries: every failure is returned.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// Keep-alive client: idle connections are pooled and reused.
    pub fn new() -> HttpClient {
        Self::with_max_idle(usize::MAX)
    }

    /// Opens a new connection for every request (nothing is pooled).
    pub fn fresh_connections() -> HttpClient {
        Self::with_max_idle(0)
    }

    fn with_max_idle(max_idle_per_host: usize) -> HttpClient {
        let _guard = runtime().enter();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(max_idle_per_host)
            .retry_canceled_requests(false)
            .build(connector);
        HttpClient {
            client,
            timeout: Duration::from_secs(5),
        }
    }

    /// The same client (sharing its pool) with a per-request timeout of `timeout` instead of 5 s,
    /// for requests that are expected to take long (delays, timeouts).
    pub fn with_timeout(&self, timeout: Duration) -> HttpClient {
        HttpClient {
            client: self.client.clone(),
            timeout,
        }
    }

    /// `GET http://<addr><path>` with `Host: <host>` and extra `headers`.
    pub fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        self.request("GET", addr, host, path, headers, b"")
    }

    /// Any method, with a body. Errors are `"<METHOD> <host><path> via <addr>: <cause>"`.
    pub fn request(
        &self,
        method: &str,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let what = format!("{method} {host}{path} via {addr}");
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header(http::header::HOST, host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| format!("{what}: bad request: {e}"))?;
        let (client, timeout) = (self.client.clone(), self.timeout);
        let result = block_on(move || async move {
            let exchange = async {
                let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                        (k.as_str().to_string(), v)
                    })
                    .collect();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("reading body: {e:?}"))?
                    .to_bytes();
                Ok(Response {
                    status,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                })
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {timeout:?}")),
            }
        });
        result.map_err(|e| format!("{what}: {e}"))
    }
}

/// `curl --resolve <host>:<port>:127.0.0.1 <extra...> https://<host>:<port><path>`, the way users
/// reach a gateway by name on loopback.
pub fn curl_https(host: &str, port: u16, path: &str, extra: &[&str]) -> CurlOutput {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let mut args: Vec<&str> = vec!["--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// An in-process TLS client session for `host` that trusts `roots` (ring, TLS 1.2 and 1.3), for
/// tests that drive TLS records by hand (`rustls::StreamOwned` over a `TcpStream`).
pub fn tls_client(roots: rustls::RootCertStore, host: &str) -> rustls::ClientConnection {
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("a server name");
    rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("a TLS client")
}
