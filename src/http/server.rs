//! Serving one downstream connection: HTTP/1.1 and h2c (prior knowledge or upgrade-free) through
//! hyper-util's auto builder.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use super::h1_gate::H1Gate;
use super::proxy::{self, ConnContext};
use super::watchdog::{self, Watched};
use crate::limits::Limits;

pub async fn serve<I>(io: I, conn: ConnContext)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = conn.shared.clone();
    let activity = conn.activity.clone();
    let conn = Arc::new(conn);
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(proxy::handle(req, &conn).await) }
    });
    let limits = &shared.settings.limits;
    let builder = builder(limits);
    let io = TokioIo::new(H1Gate::new(Watched::new(io, activity.clone())));
    let serving = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(serving);
    let result = tokio::select! {
        biased;
        result = serving.as_mut() => result,
        () = shared.drain.drained() => {
            // HTTP/1.1: close after the request in flight (or now, if idle); HTTP/2: GOAWAY,
            // then finish the open streams.
            serving.as_mut().graceful_shutdown();
            serving.await
        }
        expired = watchdog::expired(&activity, limits) => {
            crate::metrics::record_downstream_timeout(expired.slug());
            tracing::debug!(timeout = expired.slug(), "downstream connection timed out; closed");
            // The connection is dropped: a slow head or a stalled request gets no answer, an
            // idle connection has nothing in flight.
            return;
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "downstream connection ended with an error");
    }
}

/// HTTP/1.1 and HTTP/2 settings from the edge limits. The head timeout is the watchdog's (from
/// a head's first byte), not hyper's (which would also cut idle keep-alive connections).
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_request_headers_bytes.max(8192))
        .max_headers(limits.max_request_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .initial_stream_window_size(limits.h2_initial_stream_window)
        .initial_connection_window_size(limits.h2_initial_connection_window)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
        .max_header_list_size(u32::try_from(limits.max_request_headers_bytes).unwrap_or(u32::MAX));
    builder
}
