//! `tollgate demo`: the gateway on the bundled `gateway-configs/` with built-in backends on the
//! loopback addresses the bundled ServiceEntries point at.

pub mod echo;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::DemoArgs;
use echo::EchoIdentity;

/// HTTP echo backends: (service, version, 127.0.0.1 port), as `gateway-configs/00-backends.yaml` lists them.
pub const HTTP_BACKENDS: &[(&str, &str, u16)] = &[
    ("webapp", "v1", 9081),
    ("catalog", "v1", 9082),
    ("catalog", "v2", 9083),
];
/// The TCP echo backend behind Gateway port 31400.
pub const TCP_ECHO_PORT: u16 = 9090;
/// The HTTPS echoes behind the PASSTHROUGH hosts `simple-sni-1/-2.istioinaction.io`: each
/// terminates TLS itself, with its own `certs/<service>/` credential.
pub const TLS_BACKENDS: &[(&str, u16)] = &[
    ("simple-tls-service-1", 9443),
    ("simple-tls-service-2", 9444),
];
/// One port plan everywhere: Gateway 80 on 8080, 443 on 8443, 31400 on 31400.
pub const PORT_PLAN: &[(u16, u16)] = &[(80, 8080), (443, 8443), (31400, 31400)];

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut run = args.run;
    // As Istio's demo profile: access logs on standard output.
    run.telemetry.access_log.get_or_insert_with(|| "-".into());
    for (gw, listen) in PORT_PLAN {
        if !run.port_map.iter().any(|(g, _)| g == gw) {
            run.port_map.push((*gw, *listen));
        }
    }
    let runtime = crate::app::runtime(run.workers)?;
    runtime.block_on(async move {
        start_backends(&run.config.certs_dir).await?;
        print_tour(&run);
        crate::app::serve(run).await
    })
}

async fn start_backends(certs_dir: &std::path::Path) -> anyhow::Result<()> {
    for (service, version, port) in HTTP_BACKENDS {
        let listener = bind(*port, &format!("{service} {version}")).await?;
        let id = EchoIdentity {
            service: (*service).to_string(),
            version: (*version).to_string(),
        };
        tokio::spawn(echo::serve_http_echo(listener, id));
    }
    let listener = bind(TCP_ECHO_PORT, "tcp-echo").await?;
    tokio::spawn(echo::serve_tcp_echo(listener));
    for (service, port) in TLS_BACKENDS {
        let config = tls_backend_config(&certs_dir.join(service))?;
        let listener = bind(*port, service).await?;
        let id = EchoIdentity {
            service: (*service).to_string(),
            version: "v1".into(),
        };
        tokio::spawn(echo::serve_https_echo(listener, id, config));
    }
    Ok(())
}

/// A passthrough backend's own TLS configuration (tollgate's listeners never see this key).
fn tls_backend_config(
    dir: &std::path::Path,
) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| format!("demo backend credential {}", path.display()))
    };
    let certs = crate::tls::pem::certificates(&read("tls.crt")?).map_err(anyhow::Error::msg)?;
    let key = crate::tls::pem::private_key(&read("tls.key")?).map_err(anyhow::Error::msg)?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}

async fn bind(port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("demo backend {what} needs 127.0.0.1:{port}"))
}

fn print_tour(run: &crate::cli::RunArgs) {
    let port = |gw: u16| {
        run.port_map
            .iter()
            .find(|(g, _)| *g == gw)
            .map_or(gw, |(_, l)| *l)
    };
    let (http, https, tcp) = (port(80), port(443), port(31400));
    let admin = match run.admin_addr.port() {
        0 => "<admin address>".to_string(),
        _ => run.admin_addr.to_string(),
    };
    println!(
        "\ntollgate demo: backends webapp v1, catalog v1 and v2 (HTTP echo), tcp-echo, simple-tls-service-1 and -2 (HTTPS echo). Try:\n\
         \x20 curl --resolve webapp.istioinaction.io:{http}:127.0.0.1 http://webapp.istioinaction.io:{http}/hello\n\
         \x20 curl -H 'x-dark-launch: v2' --resolve catalog.istioinaction.io:{http}:127.0.0.1 http://catalog.istioinaction.io:{http}/items\n\
         \x20 curl --cacert certs/ca/ca.crt --resolve webapp.istioinaction.io:{https}:127.0.0.1 https://webapp.istioinaction.io:{https}/\n\
         \x20 curl --cacert certs/ca/ca.crt --cert certs/clients/webapp/tls.crt --key certs/clients/webapp/tls.key \\\n\
         \x20      --resolve mtls.istioinaction.io:{https}:127.0.0.1 https://mtls.istioinaction.io:{https}/\n\
         \x20 curl -i --resolve secure.istioinaction.io:{http}:127.0.0.1 http://secure.istioinaction.io:{http}/login\n\
         \x20 curl --cacert certs/ca/ca.crt --resolve simple-sni-1.istioinaction.io:{https}:127.0.0.1 https://simple-sni-1.istioinaction.io:{https}/\n\
         \x20 openssl s_client -connect 127.0.0.1:{https} -servername simple-sni-2.istioinaction.io </dev/null | grep subject\n\
         \x20 telnet localhost {tcp}   (or: nc 127.0.0.1 {tcp}; type a line, it comes back)\n\
         \x20 curl -s http://{admin}/config_dump\n"
    );
}
