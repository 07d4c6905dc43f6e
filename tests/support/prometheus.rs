//! Prometheus on both sides of a scrape: a parser for the text exposition format tollgate serves
//! (series name, labels in order, value), and a real `prometheus` server on loopback that scrapes
//! the gateway and answers PromQL through its HTTP API.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{poll, self_signed, HttpClient};

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Labels in the order they were written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The label names, in order.
    pub fn label_names(&self) -> Vec<&str> {
        self.labels.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Whether every `(key, value)` of `want` is one of the sample's labels.
    pub fn matches(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{", self.name)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        write!(f, "}} {}", self.value)
    }
}

/// A whole scrape, parsed.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// `# TYPE` lines: metric family name → type.
    pub types: Vec<(String, String)>,
}

impl Exposition {
    /// Parses the text format; a malformed line is an error naming it.
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut out = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let mut words = rest.split_whitespace();
                if words.next() == Some("TYPE") {
                    if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                        out.types.push((name.to_string(), kind.to_string()));
                    }
                }
                continue;
            }
            let sample =
                parse_sample(line).map_err(|e| format!("line {}: {e}: {line:?}", n + 1))?;
            out.samples.push(sample);
        }
        Ok(out)
    }

    /// Samples named `name` carrying every label of `want`.
    pub fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.matches(want))
            .collect()
    }

    /// Sum of the values of [`Exposition::find`].
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.find(name, want).iter().map(|s| s.value).sum()
    }

    /// The `# TYPE` of family `name`.
    pub fn type_of(&self, name: &str) -> Option<&str> {
        self.types
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }

    /// Every sample whose name starts with `prefix`, one per line (for failure messages).
    pub fn dump(&self, prefix: &str) -> String {
        let mut s = String::new();
        for sample in self.samples.iter().filter(|s| s.name.starts_with(prefix)) {
            let _ = writeln!(s, "{sample}");
        }
        s
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // Skip separators.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated label set".into());
            };
            if c == '}' {
                rest = &after[start + 1..];
                break;
            }
            let mut key_end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    key_end = i;
                    break;
                }
                chars.next();
            }
            let key = after[start..key_end].trim().to_string();
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key:?}: value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("dangling escape".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key:?}: unterminated value")),
                }
            }
            if key.is_empty() {
                return Err("empty label name".into());
            }
            labels.push((key, value));
        }
    }
    let mut words = rest.split_whitespace();
    let raw = words.next().ok_or("no value")?;
    let value = match raw {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    // An optional timestamp may follow; nothing else.
    if let Some(ts) = words.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("timestamp {ts:?}: {e}"))?;
    }
    if words.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The `prometheus` binary: `/usr/bin/prometheus` (Debian's package), else the one on PATH.
pub fn prometheus_binary() -> Option<std::path::PathBuf> {
    let debian = Path::new("/usr/bin/prometheus");
    if debian.is_file() {
        return Some(debian.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// A free 127.0.0.1 port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 for a free port")
        .port()
}

/// Percent-encodes `s` for a URL query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// One element of a query's vector result: its labels and value.
pub type QueryRow = (serde_json::Map<String, serde_json::Value>, f64);

/// A real Prometheus on 127.0.0.1 scraping `targets` every second as job `tollgate`
/// (path `/stats/prometheus`), with its TSDB in a temp dir. Killed and reaped on drop.
pub struct PrometheusServer {
    pub addr: SocketAddr,
    child: Child,
    client: HttpClient,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus and waits (up to 30 s) until it is ready. Panics, saying how to get it,
    /// when the binary is missing.
    pub fn start(targets: &[SocketAddr]) -> PrometheusServer {
        let Some(binary) = prometheus_binary() else {
            panic!(
                "/usr/bin/prometheus not found: install Debian's prometheus package (.ci/run does)"
            );
        };
        let dir = tempfile::Builder::new()
            .prefix("tollgate-prometheus-")
            .tempdir()
            .expect("create Prometheus temp dir");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n- job_name: tollgate\n  metrics_path: /stats/prometheus\n  \
             static_configs:\n  - targets: [{list}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("create prometheus.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let mut server = PrometheusServer {
            addr,
            child,
            client: HttpClient::fresh_connections(),
            log,
            _dir: dir,
        };
        let ready = poll(Duration::from_secs(30), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) before it was ready:\n{}",
                    server.log()
                );
            }
            let resp = server.client.get(addr, "127.0.0.1", "/-/ready", &[]).ok()?;
            (resp.status == 200).then_some(())
        });
        if ready.is_none() {
            panic!(
                "prometheus on {addr} not ready within 30 s:\n{}",
                server.log()
            );
        }
        server
    }

    /// Prometheus's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query; returns `data.result` (a vector's elements, or `[t, v]` for a scalar)
    /// or Prometheus's error.
    pub fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        self.query_path(expr, format!("/api/v1/query?query={}", url_encode(expr)))
    }

    /// [`PrometheusServer::query`] evaluated at `time` (Unix seconds).
    pub fn query_at(&self, expr: &str, time: f64) -> Result<serde_json::Value, String> {
        let path = format!("/api/v1/query?query={}&time={time:.3}", url_encode(expr));
        self.query_path(expr, path)
    }

    fn query_path(&self, expr: &str, path: String) -> Result<serde_json::Value, String> {
        let resp = self
            .client
            .get(self.addr, "127.0.0.1", &path, &[])
            .map_err(|e| format!("query {expr}: {e}"))?;
        let body: serde_json::Value = serde_json::from_str(&resp.body)
            .map_err(|e| format!("query {expr}: answer is not JSON ({e}): {}", resp.body))?;
        if resp.status != 200 || body["status"] != "success" {
            return Err(format!(
                "query {expr}: HTTP {} {}: {}",
                resp.status, body["errorType"], body["error"]
            ));
        }
        Ok(body["data"]["result"].clone())
    }

    /// The vector elements of `expr` as `(labels, value)`; a scalar is one element, no labels.
    pub fn query_vector(&self, expr: &str, time: Option<f64>) -> Result<Vec<QueryRow>, String> {
        let result = match time {
            Some(t) => self.query_at(expr, t)?,
            None => self.query(expr)?,
        };
        let parse = |v: &serde_json::Value| -> Result<f64, String> {
            let s = v[1]
                .as_str()
                .ok_or_else(|| format!("query {expr}: no value in {v}"))?;
            match s {
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                s => s
                    .parse()
                    .map_err(|e| format!("query {expr}: value {s:?}: {e}")),
            }
        };
        match result.as_array() {
            Some(items) if items.first().is_some_and(|i| i.is_object()) || items.is_empty() => {
                items
                    .iter()
                    .map(|item| {
                        let labels = item["metric"].as_object().cloned().unwrap_or_default();
                        Ok((labels, parse(&item["value"])?))
                    })
                    .collect()
            }
            // A scalar: [time, "value"].
            Some(_) => Ok(vec![(serde_json::Map::new(), parse(&result)?)]),
            None => Err(format!("query {expr}: unexpected result {result}")),
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log:\n{}", self.log());
        }
    }
}

// ------------------------------------------------------------------------------------------
// A gateway whose every kind of traffic feeds Istio's metrics, shared by `istio_metrics.rs`
// and `prometheus_dashboards.rs`.

/// `--workload-name`: Istio's `source_workload`.
pub const WORKLOAD: &str = "edge-gateway";
/// `--gateway-namespace`: `source_workload_namespace`.
pub const WORKLOAD_NAMESPACE: &str = "edge-system";
/// `--cluster-id`: `source_cluster`.
pub const CLUSTER_ID: &str = "test-cluster-1";
/// `app` of `--labels`: `source_app` and `source_canonical_service`.
pub const APP: &str = "edge-app";
/// `version` of `--labels`: `source_version` and `source_canonical_revision`.
pub const APP_VERSION: &str = "v7";

/// The HTTP echo backend's service (a Kubernetes-style FQDN: name `web`, namespace `shop`).
pub const WEB_SERVICE: &str = "web.shop.svc.cluster.local";
/// A ServiceEntry whose only endpoint is a closed port (503 `UF,URX`).
pub const DEAD_SERVICE: &str = "dead.example.internal";
/// A ServiceEntry without endpoints (503 `UH`).
pub const EMPTY_SERVICE: &str = "empty.example.internal";
/// The TCP echo backend's service.
pub const TCP_SERVICE: &str = "tcp-echo.shop.svc.cluster.local";
/// The TLS passthrough backend's service (`openssl s_server`).
pub const PASS_SERVICE: &str = "pass.tls.internal";

pub const HTTP_HOST: &str = "web.example.com";
pub const HTTPS_HOST: &str = "secure.example.com";
pub const PASS_HOST: &str = "pass.example.com";

const GATEWAY_YAML: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [secure.example.com]
    tls: {mode: SIMPLE, credentialName: secure-cert}
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 9443, name: tls-pass, protocol: TLS}
    hosts: [pass.example.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com, secure.example.com]
  gateways: [edge]
  http:
  - match: [{uri: {prefix: /dead}}]
    route: [{destination: {host: dead.example.internal}}]
  - match: [{uri: {prefix: /empty}}]
    route: [{destination: {host: empty.example.internal}}]
  - match: [{uri: {prefix: /nosubset}}]
    route: [{destination: {host: web.shop.svc.cluster.local, subset: v9}}]
  - route: [{destination: {host: web.shop.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: tcp-echo.shop.svc.cluster.local, port: {number: 7000}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass}
spec:
  hosts: [pass.example.com]
  gateways: [edge]
  tls:
  - match: [{port: 9443, sniHosts: [pass.example.com]}]
    route: [{destination: {host: pass.tls.internal, port: {number: 443}}}]
"#;

/// A running gateway (identity flags set) with: port 80 (HTTP, `web.example.com` → the echo
/// backend, `/dead` → a closed port, `/empty` → no endpoints, `/nosubset` → a subset no
/// DestinationRule defines, any other `*.example.com` host → no route), port 443 (HTTPS
/// `secure.example.com`, same routes), port 9000 (TCP → echo) and port 9443 (TLS PASSTHROUGH
/// `pass.example.com` → `openssl s_server -www`).
pub struct IstioWorld {
    pub gw: super::Gateway,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub tcp: SocketAddr,
    pub pass: SocketAddr,
    pub client: HttpClient,
    pub web: super::EchoBackend,
    _tcp_echo: super::TcpEcho,
    _s_server: super::OpensslServer,
    _certs: (TempDir, TempDir),
    _config: super::ConfigDir,
}

impl IstioWorld {
    pub fn start() -> IstioWorld {
        let web = super::EchoBackend::start("web", "v1");
        let tcp_echo = super::TcpEcho::start();
        let certs = tempfile::Builder::new()
            .prefix("tollgate-metrics-certs-")
            .tempdir()
            .expect("create certs dir");
        self_signed(certs.path(), "secure-cert", HTTPS_HOST);
        // The passthrough backend's own certificate lives outside the gateway's credentials.
        let backend_certs = tempfile::Builder::new()
            .prefix("tollgate-metrics-backend-")
            .tempdir()
            .expect("create backend certs dir");
        let (pass_crt, pass_key) = self_signed(backend_certs.path(), "pass", PASS_HOST);
        let s_server = super::OpensslServer::start(&pass_crt, &pass_key);
        let dead = SocketAddr::from(([127, 0, 0, 1], super::dead_port()));

        let config = super::ConfigDir::new();
        config.write("gateway.yaml", GATEWAY_YAML);
        let entries = [
            super::service_entry("web", WEB_SERVICE, 80, &[(web.addr, &[("version", "v1")])]),
            super::service_entry("dead", DEAD_SERVICE, 80, &[(dead, &[])]),
            super::service_entry("empty", EMPTY_SERVICE, 80, &[]),
            super::l4_service_entry("tcp-echo", TCP_SERVICE, 7000, "TCP", &[tcp_echo.addr]),
            super::l4_service_entry("pass", PASS_SERVICE, 443, "TLS", &[s_server.addr]),
        ];
        config.write("backends.yaml", &entries.join("---\n"));
        let certs_dir = certs.path().display().to_string();
        let labels = format!("istio=ingressgateway,app={APP},version={APP_VERSION}");
        let gw = super::Gateway::start(
            config.path(),
            &[
                "--certs-dir",
                &certs_dir,
                "--port-map",
                "80=0",
                "--port-map",
                "443=0",
                "--port-map",
                "9000=0",
                "--port-map",
                "9443=0",
                "--workload-name",
                WORKLOAD,
                "--gateway-namespace",
                WORKLOAD_NAMESPACE,
                "--cluster-id",
                CLUSTER_ID,
                "--labels",
                &labels,
            ],
        );
        let (http, https, tcp, pass) = (
            gw.listener(80),
            gw.listener(443),
            gw.listener(9000),
            gw.listener(9443),
        );
        let dump = gw.config_dump();
        let errors: Vec<String> = super::diagnostics(&dump)
            .into_iter()
            .filter(|l| l.contains(" error: "))
            .collect();
        let bad = super::not_ok_files(&dump);
        if !errors.is_empty() || !bad.is_empty() {
            gw.fail(format!(
                "test configuration did not load cleanly: files not ok {bad:#?}, errors {errors:#?}"
            ));
        }
        IstioWorld {
            gw,
            http,
            https,
            tcp,
            pass,
            client: HttpClient::new(),
            web,
            _tcp_echo: tcp_echo,
            _s_server: s_server,
            _certs: (certs, backend_certs),
            _config: config,
        }
    }

    /// `method` on port 80 with `Host: host`; the response, or a failure with the gateway's log.
    pub fn http(&self, method: &str, host: &str, path: &str, body: &[u8]) -> super::Response {
        self.client
            .request(method, self.http, host, path, &[], body)
            .unwrap_or_else(|e| self.gw.fail(e))
    }

    /// Like [`IstioWorld::http`], and checks the status.
    pub fn expect(&self, status: u16, host: &str, path: &str, body: &[u8]) -> super::Response {
        let method = if body.is_empty() { "GET" } else { "POST" };
        let resp = self.http(method, host, path, body);
        if resp.status != status {
            self.gw.fail(format!(
                "{method} {host}{path}: expected {status}, got {} {:?} body {:?}",
                resp.status, resp.headers, resp.body
            ));
        }
        resp
    }

    /// One HTTPS GET through port 443 (`curl -k`); returns the body.
    pub fn https_get(&self, path: &str) -> String {
        let out = super::curl_https(HTTPS_HOST, self.https.port(), path, &["-k"]);
        if out.status != 200 {
            self.gw.fail(format!(
                "HTTPS GET {HTTPS_HOST}{path}: expected 200, got exit {} status {} stderr {}",
                out.exit_code, out.status, out.stderr
            ));
        }
        out.body
    }

    /// One TCP stream through port 9000: sends `n` bytes, half-closes, reads the echo to EOF.
    pub fn tcp_echo(&self, n: usize) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&self.tcp, Duration::from_secs(5))
            .unwrap_or_else(|e| self.gw.fail(format!("connect to {}: {e}", self.tcp)));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let payload = vec![b'e'; n];
        if let Err(e) = s
            .write_all(&payload)
            .and_then(|_| s.shutdown(std::net::Shutdown::Write))
        {
            self.gw.fail(format!("TCP write of {n} bytes: {e}"));
        }
        let mut back = Vec::new();
        if let Err(e) = s.read_to_end(&mut back) {
            self.gw
                .fail(format!("TCP echo read: {e} after {} bytes", back.len()));
        }
        if back != payload {
            self.gw
                .fail(format!("TCP echo returned {} of {n} bytes", back.len()));
        }
    }

    /// One HTTPS GET passed through port 9443 to `openssl s_server -www`; returns the page.
    pub fn passthrough_get(&self) -> String {
        let out = super::curl_https(PASS_HOST, self.pass.port(), "/", &["-k"]);
        if out.status != 200 || !out.body.contains("s_server") {
            self.gw.fail(format!(
                "passthrough GET {PASS_HOST}: expected s_server's 200 page, got exit {} status {} stderr {} body {:?}",
                out.exit_code, out.status, out.stderr, out.body
            ));
        }
        out.body
    }

    /// The gateway's metrics address scrape, parsed.
    pub fn scrape(&self) -> Exposition {
        self.scrape_at("metrics")
    }

    /// `/stats/prometheus` on the named address (`metrics` or `admin`), parsed.
    pub fn scrape_at(&self, which: &str) -> Exposition {
        let (status, body) = match which {
            "admin" => self.gw.admin_get("/stats/prometheus"),
            _ => self.gw.metrics_get("/stats/prometheus"),
        };
        if status != 200 {
            self.gw.fail(format!(
                "{which} /stats/prometheus answered {status}: {body}"
            ));
        }
        Exposition::parse(&body).unwrap_or_else(|e| {
            self.gw.fail(format!(
                "{which} /stats/prometheus is not valid exposition: {e}"
            ))
        })
    }
}
