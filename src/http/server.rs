//! Serving one downstream connection: HTTP/1.1 and h2c (prior knowledge or upgrade-free) through
//! hyper-util's auto builder.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use super::h1_gate::H1Gate;
use super::proxy::{self, ConnContext};

/// Slowloris guard: the whole request head must arrive within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Envoy's default request header limit: larger heads get 431.
const MAX_HEADER_BYTES: usize = 60 * 1024;

pub async fn serve<I>(io: I, conn: ConnContext)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = conn.shared.clone();
    let conn = Arc::new(conn);
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(proxy::handle(req, &conn).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(H1Gate::new(io)), service);
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
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "downstream connection ended with an error");
    }
}
