//! The HTTP data path: serving downstream connections, routing each request through the
//! snapshot, and forwarding it through the proxy core.

mod date;
pub mod exchange;
pub mod forward;
pub mod h1_fast;
pub mod h1_gate;
mod hash;
pub mod headers;
pub mod local;
pub mod park;
pub mod path;
pub mod proxy;
pub mod server;
mod spare;
pub mod watchdog;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The request line the HTTP/2 connection preface starts with.
const H2_PREFACE_LINE: &[u8] = H2_PREFACE.split_at(14).0;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{Either, Full};

use crate::upstream::{ActiveRequest, Admission, ResponseBody};

/// A downstream request's body as routing sees it: hyper's stream, or `None` for a request
/// without one, served by the [`h1_fast`] path.
pub type RequestIn = Option<hyper::body::Incoming>;

/// Response bodies: streamed from upstream, or generated locally.
pub type Body = Either<UpstreamBody, Full<Bytes>>;

/// An upstream response body that counts as an active request on its endpoint (for
/// least-request balancing) and in its cluster's circuit breaker until it has been sent or
/// dropped.
pub struct UpstreamBody {
    inner: ResponseBody,
    _held: (ActiveRequest, Admission),
}

impl UpstreamBody {
    pub fn new(inner: ResponseBody, held: (ActiveRequest, Admission)) -> Self {
        UpstreamBody { inner, _held: held }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
