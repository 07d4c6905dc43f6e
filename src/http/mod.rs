//! The HTTP data path: serving downstream connections, routing each request through the
//! snapshot, and forwarding it through the proxy core.

pub mod headers;
pub mod local;
pub mod proxy;
pub mod server;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// Response bodies: streamed from upstream, or generated locally.
pub type Body = Either<Incoming, Full<Bytes>>;
