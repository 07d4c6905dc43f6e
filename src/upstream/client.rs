//! Pooled upstream connections, shared by every snapshot so a reload keeps warm connections.

use std::net::SocketAddr;
use std::time::Duration;

use super::h1::H1Pool;
use super::h2::H2Pool;
use super::UpstreamProtocol;
use hyper::body::Incoming;
use hyper::{Request, Response};

/// Istio's default upstream connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to an upstream endpoint within the connect timeout, with TCP_NODELAY.
pub async fn connect(addr: SocketAddr) -> Result<tokio::net::TcpStream, UpstreamError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(UpstreamError::Connect(e.kind())),
        Err(_) => Err(UpstreamError::Connect(std::io::ErrorKind::TimedOut)),
    }
}

/// Why an upstream exchange failed before a response, in Envoy's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The TCP connection could not be made (refused, timed out, ...).
    Connect(std::io::ErrorKind),
    /// The connection closed or reset before response headers.
    Reset,
}

/// HTTP/1.1 keep-alive pools and multiplexed HTTP/2 connections, by endpoint address.
#[derive(Default)]
pub struct Upstreams {
    http1: H1Pool,
    http2: H2Pool,
}

impl Upstreams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `req` (origin-form URI, Host header for HTTP/1.1; authority in the URI for HTTP/2)
    /// to `endpoint`.
    pub async fn send(
        &self,
        protocol: UpstreamProtocol,
        endpoint: SocketAddr,
        req: Request<super::RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match protocol {
            UpstreamProtocol::Http2 => self.http2.send(endpoint, req).await,
            UpstreamProtocol::Http1 | UpstreamProtocol::Opaque => {
                self.http1.send(endpoint, req).await
            }
        }
    }
}
