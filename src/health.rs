//! `tollgate health`: probes a running gateway's readiness endpoint, for container health checks
//! in an image that has no curl. Exit status 0 when it answers 200, 1 otherwise.

use std::process::ExitCode;

use anyhow::{bail, Context};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::cli::HealthArgs;

pub fn run(args: &HealthArgs) -> ExitCode {
    let probe = async {
        tokio::time::timeout(args.timeout, probe(&args.url))
            .await
            .unwrap_or_else(|_| bail!("no answer within {:?}", args.timeout))
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(probe));
    match result {
        Ok(()) => {
            println!("ready");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("not ready: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One GET; Ok when the answer is 200.
async fn probe(url: &http::Uri) -> anyhow::Result<()> {
    let host = url.host().context("the URL has no host")?;
    let port = url.port_u16().unwrap_or(80);
    if url.scheme_str().is_some_and(|s| s != "http") {
        bail!("only http:// URLs can be probed");
    }
    let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .body(Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    match response.status() {
        http::StatusCode::OK => Ok(()),
        status => bail!("{url} answered {status}"),
    }
}
