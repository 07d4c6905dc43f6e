//! Pooled upstream connections, shared by every snapshot so a reload keeps warm connections.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::h2::H2Pool;
use super::UpstreamProtocol;

/// Istio's default upstream connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upstream exchange failed before a response, in Envoy's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The TCP connection could not be made (refused, timed out, ...).
    Connect(std::io::ErrorKind),
    /// The connection closed or reset before response headers.
    Reset,
}

/// HTTP/1.1 keep-alive pools keyed by endpoint address, and multiplexed HTTP/2 connections.
pub struct Upstreams {
    http1: Client<HttpConnector, Incoming>,
    http2: H2Pool,
}

impl Upstreams {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http1 = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .set_host(false)
            .build(connector);
        Upstreams { http1, http2: H2Pool::default() }
    }

    /// Sends `req` to `endpoint`. HTTP/1.1 requests carry the endpoint as their URI authority
    /// (the pool key) and the client's Host header; HTTP/2 requests keep the client's authority.
    pub async fn send(
        &self,
        protocol: UpstreamProtocol,
        endpoint: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match protocol {
            UpstreamProtocol::Http2 => self.http2.send(endpoint, req).await,
            UpstreamProtocol::Http1 | UpstreamProtocol::Opaque => {
                self.http1.request(req).await.map_err(|e| classify(&e))
            }
        }
    }
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

/// Classifies a pooled-client error into Envoy's reset reasons.
fn classify(err: &hyper_util::client::legacy::Error) -> UpstreamError {
    if !err.is_connect() {
        return UpstreamError::Reset;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return UpstreamError::Connect(io.kind());
        }
        if e.to_string().contains("timed out") {
            return UpstreamError::Connect(std::io::ErrorKind::TimedOut);
        }
        source = e.source();
    }
    UpstreamError::Connect(std::io::ErrorKind::Other)
}
