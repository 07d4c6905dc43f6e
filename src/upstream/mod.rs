//! The proxy core's upstream side: clusters of endpoints, how they are found (static or DNS),
//! load balancing, and pooled connections.

pub mod breaker;
pub mod client;
pub mod cluster;
pub mod h1;
mod h2;
pub mod lb;
pub mod outlier;
pub mod transport;

pub use breaker::{Admission, Limits, Overflow};
pub use client::{TlsFailure, UpstreamError, Upstreams};
pub use cluster::{
    ActiveRequest, Cluster, ClusterSpec, DnsTarget, Endpoint, EndpointSource, StaticEndpoint,
    UpstreamProtocol,
};
pub use lb::{CookieHash, HashOn, LbPolicy};
pub use outlier::{Observation, OutlierSpec};
pub use transport::{Conn, Keepalive, TlsMaterial, TlsSpec, TransportSpec};

/// What goes upstream as a request body: the client's stream as it arrives, or bytes buffered
/// so that a retry (or a mirror) can send them again.
pub type RequestBody =
    http_body_util::Either<hyper::body::Incoming, http_body_util::Full<bytes::Bytes>>;

/// An upstream response body: read off an HTTP/1.1 connection, or an HTTP/2 stream.
pub type ResponseBody = http_body_util::Either<h1::Body, hyper::body::Incoming>;

pub use h1::UpgradeSlot;
