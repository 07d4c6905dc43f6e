//! Command-line interface. `tollgate` with no subcommand behaves as `tollgate run`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::snapshot::Options;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A TLS/SNI ingress gateway that speaks Istio's configuration language"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the configuration in --config-dir (the default when no subcommand is given).
    Run(RunArgs),
    /// Load and validate the configuration; print every error and warning; exit non-zero on errors.
    Check(CheckArgs),
    /// Run the gateway on the bundled gateway-configs/ and certs/ with built-in demo backends.
    Demo(DemoArgs),
    /// Explain how the gateway would route one request (listener, TLS server, route, endpoints).
    Explain(ExplainArgs),
    /// Probe a running gateway's readiness (for container health checks): exit 0 when ready.
    Health(HealthArgs),
}

/// Where configuration comes from and how it is interpreted.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Directory of Istio YAML, read recursively and watched for changes.
    #[arg(long, default_value = "gateway-configs", env = "TOLLGATE_CONFIG_DIR")]
    pub config_dir: PathBuf,
    /// Directory of credentials in Kubernetes secret layout (`<name>/tls.crt`, `tls.key`, `ca.crt`).
    #[arg(long, default_value = "certs", env = "TOLLGATE_CERTS_DIR")]
    pub certs_dir: PathBuf,
    /// Namespace of resources that have none (like `kubectl apply -n`).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// This gateway's labels; only Gateways whose spec.selector matches them are served.
    #[arg(long, default_value = "istio=ingressgateway", value_parser = parse_labels)]
    pub labels: BTreeMap<String, String>,
    /// Namespace the gateway runs in (where credential Secrets are looked up).
    #[arg(long, default_value = "istio-system", env = "POD_NAMESPACE")]
    pub gateway_namespace: String,
    /// Kubernetes cluster domain for short-name expansion.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

impl ConfigArgs {
    pub fn options(&self) -> Options {
        Options {
            namespace: self.namespace.clone(),
            gateway_namespace: self.gateway_namespace.clone(),
            labels: self.labels.clone(),
            cluster_domain: self.cluster_domain.clone(),
            certs_dir: self.certs_dir.clone(),
            resumption: crate::tls::server_config::Resumption::disabled(),
            access_log: false,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Listen for Gateway port GW on LISTEN instead (like a Service's port→targetPort); repeatable.
    #[arg(long = "port-map", value_name = "GW_PORT=LISTEN_PORT", value_parser = parse_port_mapping)]
    pub port_map: Vec<(u16, u16)>,
    /// Admin API address (config dump, stats). Loopback only unless --admin-allow-remote.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin_addr: SocketAddr,
    /// Allow --admin-addr on a non-loopback address. The admin API can stop the gateway, drain it
    /// and change its logging: expose it only to a trusted network.
    #[arg(long)]
    pub admin_allow_remote: bool,
    /// Readiness endpoint address (/healthz/ready).
    #[arg(long, default_value = "0.0.0.0:15021")]
    pub health_addr: SocketAddr,
    /// Prometheus scrape address (/stats/prometheus).
    #[arg(long, default_value = "0.0.0.0:15090")]
    pub metrics_addr: SocketAddr,
    /// Threads serving traffic (default: number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Proxies in front of the gateway whose X-Forwarded-For, X-Request-Id and x-envoy-* headers are trusted.
    #[arg(long, default_value_t = 0)]
    pub num_trusted_proxies: u32,
    /// Expect a PROXY protocol (v1 or v2) header on Gateway port GW_PORT, from an L4 load
    /// balancer in front, and take the client's address from it; repeatable. Connections
    /// without a valid header are closed.
    #[arg(long = "proxy-protocol", value_name = "GW_PORT")]
    pub proxy_protocol: Vec<u16>,
    /// Port to put in httpsRedirect's Location (default: none, i.e. 443).
    #[arg(long)]
    pub https_redirect_port: Option<u16>,
    /// Turn off TLS session resumption (tickets and session IDs): every handshake is a full one.
    #[arg(long)]
    pub no_session_resumption: bool,
    /// Close a TCP or TLS-passthrough stream after this long without a byte either way (Envoy's default: 1h).
    #[arg(long, default_value = "1h", value_parser = parse_idle_timeout)]
    pub tcp_idle_timeout: std::time::Duration,
    /// How TCP and passthrough streams are copied: `auto` (a pooled buffer, then splice(2) once a direction moves bulk data), `userspace` or `splice`.
    #[arg(long, default_value = "auto", env = "TOLLGATE_TCP_COPY", value_parser = parse_tcp_copy)]
    pub tcp_copy: crate::l4::relay::Copy,
    /// Send mirrored requests with Host `<host>-shadow`, as Istio before 1.28 did (default: Host unchanged).
    #[arg(long)]
    pub mirror_shadow_host: bool,
    /// Request path normalization before routing, as Istio's meshConfig `pathNormalization`:
    /// `none`, `base` (dot-segments removed), `merge-slashes` (and `//` merged) or
    /// `decode-and-merge-slashes` (and `%2F`, `%5C` decoded first).
    #[arg(long, default_value = "base", value_name = "MODE", value_parser = parse_path_normalization)]
    pub path_normalization: crate::http::path::PathNormalization,
    /// On SIGTERM: readiness fails, listeners close, and open connections get this long to finish
    /// their requests before the process exits.
    #[arg(long, default_value = "5s", env = "TOLLGATE_DRAIN_TIMEOUT", value_parser = parse_duration)]
    pub drain_timeout: std::time::Duration,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Edge limits; the defaults are Envoy's edge-proxy recommendations.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Downstream connections open at once, all ports together; more are closed as they arrive.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Downstream connections open at once on any one port (default: only --max-connections).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_listener: Option<u64>,
    /// HTTP/1.1: a request head must arrive whole within this long of its first byte (slowloris).
    #[arg(long, default_value = "10s", value_parser = parse_idle_timeout)]
    pub request_headers_timeout: std::time::Duration,
    /// An open request with no byte moving either way for this long is ended.
    #[arg(long, default_value = "5m", value_parser = parse_idle_timeout)]
    pub stream_idle_timeout: std::time::Duration,
    /// An HTTP connection with no open request for this long is closed.
    #[arg(long, default_value = "1h", value_parser = parse_idle_timeout)]
    pub http_idle_timeout: std::time::Duration,
    /// Request heads larger than this many KiB get 431 (8 to 1024).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(8..=1024))]
    pub max_request_headers_kb: u32,
    /// Requests with more header lines than this get 431.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_request_headers_count: u32,
    /// Request bodies up to this many bytes are buffered so that retries can resend them;
    /// larger ones stream to the upstream without retries.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_request_body_buffer: u64,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 initial stream flow-control window, bytes.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(65_535..=2_147_483_647))]
    pub h2_initial_stream_window: u32,
    /// HTTP/2 initial connection flow-control window, bytes.
    #[arg(long, default_value_t = 1_048_576, value_parser = clap::value_parser!(u32).range(65_535..=2_147_483_647))]
    pub h2_initial_connection_window: u32,
    /// HTTP/2 streams a client may open and reset before the gateway takes them up (rapid
    /// reset, CVE-2023-44487); past it the connection is closed with ENHANCE_YOUR_CALM.
    #[arg(long, default_value_t = 20)]
    pub h2_max_pending_reset_streams: usize,
    /// A TLS port's ClientHello must arrive within this long.
    #[arg(long, default_value = "15s", value_parser = parse_idle_timeout)]
    pub tls_inspector_timeout: std::time::Duration,
    /// A TLS port's ClientHello may take at most this many bytes (the maximum is 16384).
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(512..=16_384))]
    pub max_client_hello_bytes: u32,
}

impl LimitArgs {
    pub fn limits(&self) -> crate::limits::Limits {
        crate::limits::Limits {
            max_connections: self.max_connections,
            max_connections_per_listener: self.max_connections_per_listener,
            request_headers_timeout: self.request_headers_timeout,
            stream_idle_timeout: self.stream_idle_timeout,
            idle_timeout: self.http_idle_timeout,
            max_request_headers_bytes: self.max_request_headers_kb as usize * 1024,
            max_request_headers: self.max_request_headers_count as usize,
            max_request_body_buffer: self.max_request_body_buffer,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            h2_initial_stream_window: self.h2_initial_stream_window,
            h2_initial_connection_window: self.h2_initial_connection_window,
            h2_max_pending_reset_streams: self.h2_max_pending_reset_streams,
            tls_inspector_timeout: self.tls_inspector_timeout,
            max_client_hello_bytes: self.max_client_hello_bytes as usize,
        }
    }
}

/// Who the gateway is in metrics, and where its access log goes.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Workload name in Istio's `source_workload` label (Kubernetes: the Deployment's name).
    #[arg(long, default_value = crate::telemetry::identity::DEFAULT_WORKLOAD, env = "ISTIO_META_WORKLOAD_NAME")]
    pub workload_name: String,
    /// Cluster id in Istio's `source_cluster` label.
    #[arg(long, default_value = crate::telemetry::identity::DEFAULT_CLUSTER, env = "ISTIO_META_CLUSTER_ID")]
    pub cluster_id: String,
    /// Write an access log line per request and TCP stream to PATH (`-`: standard output). Off by
    /// default, as in Istio's default profile; a Telemetry resource can also turn it on or off.
    #[arg(long, value_name = "PATH|-", env = "TOLLGATE_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Access log encoding: Envoy's default `text` line, or `json`.
    #[arg(long, default_value = "text", value_parser = parse_log_format, env = "TOLLGATE_ACCESS_LOG_FORMAT")]
    pub access_log_format: crate::telemetry::access_log::Format,
}

impl RunArgs {
    pub fn port_map(&self) -> HashMap<u16, u16> {
        self.port_map.iter().copied().collect()
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Skip the DNS lookups that check whether destinations resolve.
    #[arg(long)]
    pub no_dns: bool,
}

/// `tollgate explain [config flags] URL [-H 'k: v']... [-X METHOD] [--sni NAME] [--port N] [--json]`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The request, e.g. `https://shop.example.com/cart?x=1`; its port is the Gateway port.
    pub url: String,
    /// A request header, as with curl (`-H 'x-user: jason'`; `Host:` overrides the URL's); repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Request method.
    #[arg(
        short = 'X',
        long = "request",
        value_name = "METHOD",
        default_value = "GET"
    )]
    pub method: String,
    /// SNI to send (default: the URL's host; `--sni ''` sends none).
    #[arg(long)]
    pub sni: Option<String>,
    /// Gateway port the request arrives on (default: the URL's port, else 80 or 443).
    #[arg(long)]
    pub port: Option<u16>,
    /// Print the explanation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tollgate health [--url URL] [--timeout D]`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The readiness endpoint to probe.
    #[arg(long, default_value = "http://127.0.0.1:15021/healthz/ready")]
    pub url: http::Uri,
    /// Give up (and report unhealthy) after this long.
    #[arg(long, default_value = "2s", value_parser = parse_idle_timeout)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("label {pair:?} is not key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn parse_port_mapping(s: &str) -> Result<(u16, u16), String> {
    let (gw, listen) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not GW_PORT=LISTEN_PORT"))?;
    let gw = gw
        .trim()
        .parse::<u16>()
        .map_err(|e| format!("gateway port {gw:?}: {e}"))?;
    let listen = listen
        .trim()
        .parse::<u16>()
        .map_err(|e| format!("listen port {listen:?}: {e}"))?;
    Ok((gw, listen))
}

fn parse_idle_timeout(value: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(value).map_err(|e| e.to_string())
}

fn parse_log_format(value: &str) -> Result<crate::telemetry::access_log::Format, String> {
    match value.to_ascii_lowercase().as_str() {
        "text" => Ok(crate::telemetry::access_log::Format::Text),
        "json" => Ok(crate::telemetry::access_log::Format::Json),
        other => Err(format!("{other:?} is not text or json")),
    }
}

fn parse_path_normalization(value: &str) -> Result<crate::http::path::PathNormalization, String> {
    crate::http::path::PathNormalization::parse(value).ok_or_else(|| {
        format!("{value:?} is not none, base, merge-slashes or decode-and-merge-slashes")
    })
}

fn parse_tcp_copy(value: &str) -> Result<crate::l4::relay::Copy, String> {
    match value {
        "auto" => Ok(crate::l4::relay::Copy::Auto),
        "userspace" => Ok(crate::l4::relay::Copy::Userspace),
        "splice" => Ok(crate::l4::relay::Copy::Splice),
        other => Err(format!("{other:?} is not auto, userspace or splice")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_port_maps() {
        let labels = parse_labels("istio=ingressgateway,app=edge").unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("edge"));
        assert!(parse_labels("novalue").is_err());
        assert_eq!(parse_port_mapping("80=8080").unwrap(), (80, 8080));
        assert!(parse_port_mapping("80:8080").is_err());
        assert!(parse_port_mapping("80=70000").is_err());
    }

    #[test]
    fn limit_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["tollgate"]).unwrap();
        let from_flags = format!("{:?}", cli.run.limits.limits());
        let defaults = format!("{:?}", crate::limits::Limits::default());
        assert_eq!(from_flags, defaults);
        let cli = Cli::try_parse_from(["tollgate", "--max-connections", "0"]);
        assert!(cli.is_err(), "a zero connection limit is refused");
    }

    #[test]
    fn no_subcommand_means_run() {
        let cli =
            Cli::try_parse_from(["tollgate", "--config-dir", "x", "--port-map", "80=0"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.port_map, vec![(80, 0)]);
        let cli = Cli::try_parse_from(["tollgate", "check", "--config-dir", "y"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Check(c)) if c.config.config_dir == std::path::Path::new("y"))
        );
    }
}
