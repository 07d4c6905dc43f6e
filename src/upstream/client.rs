//! Pooled upstream connections, shared by every snapshot so a reload keeps warm connections.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::UpstreamProtocol;

/// Istio's default upstream connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub type UpstreamClient = Client<HttpConnector, Incoming>;

/// One keep-alive pool per upstream protocol, keyed internally by endpoint address.
pub struct Upstreams {
    http1: UpstreamClient,
    http2: UpstreamClient,
}

impl Upstreams {
    pub fn new() -> Self {
        Upstreams {
            http1: build(false),
            http2: build(true),
        }
    }

    pub fn client(&self, protocol: UpstreamProtocol) -> &UpstreamClient {
        match protocol {
            UpstreamProtocol::Http2 => &self.http2,
            UpstreamProtocol::Http1 | UpstreamProtocol::Opaque => &self.http1,
        }
    }
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

fn build(http2: bool) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .set_host(false);
    if http2 {
        builder.http2_only(true);
    }
    builder.build(connector)
}
