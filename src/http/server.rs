//! Serving one downstream connection: HTTP/1.1, or HTTP/2 (over TLS with ALPN `h2`, or h2c with
//! prior knowledge) when its first bytes are the HTTP/2 connection preface, as hyper-util's auto
//! builder tells them apart. HTTP/1.1 requests without a body take the fast path
//! ([`super::h1_fast`]); hyper serves the others, and once such a connection has been quiet
//! between two requests it parks: hyper's connection, buffers and all, is dropped, and the fast
//! path waits for the client's next request (see [`super::park`]).

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::h1_fast;
use super::park::{Parking, ReadReady};
use super::proxy::{self, ConnContext};
use super::{watchdog, H2_PREFACE};
use crate::limits::Limits;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Serves one downstream connection until it closes, fails, times out, or drains.
///
/// Not an `async fn`: the future is built here so that it holds the IO once (an `async fn`
/// keeps its arguments' slots, and a moved-from local's, for its whole life; with a TLS stream
/// that is kilobytes per idle connection).
pub fn serve<I>(io: I, conn: ConnContext) -> impl Future<Output = ()> + Send
where
    I: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
{
    let shared = conn.shared.clone();
    let activity = conn.activity.clone();
    let conn = Arc::new(conn);
    let fast_conn = conn.clone();
    let mut service = service_fn(move |req: http::Request<Incoming>| {
        // Open from the moment hyper hands the request over (before its future first runs),
        // so that the connection cannot park under it.
        let open = conn.activity.request_started();
        let conn = conn.clone();
        async move {
            let response = proxy::handle(req.map(Some), &conn).await;
            drop(open);
            Ok::<_, Infallible>(response)
        }
    });
    let mut io = Parking::new(io, activity.clone());
    let timers = {
        let shared = shared.clone();
        async move { watchdog::expired(&activity, &shared.settings.limits).await }
    };
    let serving = async move {
        let limits = &shared.settings.limits;
        let mut drained = pin!(shared.drain.drained());
        let h2 = tokio::select! {
            biased;
            h2 = sniff(&mut io) => h2?,
            // As hyper-util's auto connection: a drain before the first bytes closes.
            () = drained.as_mut() => return Ok(()),
        };
        if h2 {
            let io = TokioIo::new(io);
            let mut serving = Box::pin(http2_builder(limits).serve_connection(io, service));
            let result = tokio::select! {
                biased;
                result = serving.as_mut() => result,
                () = drained.as_mut() => {
                    // GOAWAY, then finish the open streams.
                    serving.as_mut().graceful_shutdown();
                    serving.await
                }
            };
            return result.map_err(BoxError::from);
        }
        let builder = http1_builder(limits);
        loop {
            // Bodiless requests first; hyper takes the connection from the first other one
            // until it parks.
            match h1_fast::serve(&mut io, &fast_conn, drained.as_mut()).await? {
                h1_fast::Ended::Closed => return Ok(()),
                h1_fast::Ended::HandOver => io.arm(),
            }
            let mut serving = Box::pin(
                builder
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
            tokio::select! {
                biased;
                result = serving.as_mut() => result?,
                () = drained.as_mut() => {
                    // Close after the request in flight (or now, if idle).
                    serving.as_mut().graceful_shutdown();
                    return serving.await.map_err(BoxError::from);
                }
            }
            // hyper's connection is over: closed, upgraded (the IO went with the upgrade), or
            // parked between two requests. (`parts` ends in its arm: a binding that lived on
            // past the next await would hold a second copy of the IO in this future.)
            let read_buf = match Pin::into_inner(serving).into_parts() {
                Some(parts) => {
                    io = parts.io.into_inner();
                    service = parts.service;
                    parts.read_buf
                }
                None => return Ok(()),
            };
            if !io.take_parked() {
                return Ok(());
            }
            io.unread(read_buf);
            io.disarm();
        }
    };
    Served { serving, timers }
}

pin_project_lite::pin_project! {
    /// The connection, and its timers: whichever ends first ends both.
    struct Served<S, T> {
        #[pin]
        serving: S,
        #[pin]
        timers: T,
    }
}

impl<S, T> Future for Served<S, T>
where
    S: Future<Output = Result<(), BoxError>>,
    T: Future<Output = watchdog::Expired>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Poll::Ready(result) = this.serving.poll(cx) {
            if let Err(e) = result {
                tracing::debug!(error = %e, "downstream connection ended with an error");
            }
            return Poll::Ready(());
        }
        if let Poll::Ready(expired) = this.timers.poll(cx) {
            crate::metrics::record_downstream_timeout(expired.slug());
            tracing::debug!(
                timeout = expired.slug(),
                "downstream connection timed out; closed"
            );
            // The connection is dropped: a slow head or a stalled request gets no answer, an
            // idle connection has nothing in flight.
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Reads until the first bytes are known to be, or not to be, the HTTP/2 preface (hyper-util's
/// auto builder's test); they are put back for hyper. True for HTTP/2.
async fn sniff<I: AsyncRead + ReadReady + Unpin>(io: &mut Parking<I>) -> std::io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let mut h2 = true;
    while filled < buf.len() {
        let n = io.read(&mut buf[filled..]).await?;
        let read = &buf[filled..filled + n];
        let expected = &H2_PREFACE[filled..filled + n];
        filled += n;
        if n == 0 || read != expected {
            h2 = false;
            break;
        }
    }
    io.unread(Bytes::copy_from_slice(&buf[..filled]));
    Ok(h2)
}

/// HTTP/1.1 settings from the edge limits. The head timeout is the watchdog's (from a head's
/// first byte), not hyper's (which would also cut idle keep-alive connections).
fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_request_headers_bytes.max(8192))
        .max_headers(limits.max_request_headers)
        .keep_alive(true);
    builder
}

fn http2_builder(limits: &Limits) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .initial_stream_window_size(limits.h2_initial_stream_window)
        .initial_connection_window_size(limits.h2_initial_connection_window)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
        .max_header_list_size(u32::try_from(limits.max_request_headers_bytes).unwrap_or(u32::MAX));
    builder
}

#[cfg(test)]
mod tests {
    //! `serve` on loopback sockets, with the gateway's empty configuration (every request gets
    //! the 404 local reply, keep-alive). Parking is seen through its trace event.

    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use http_body_util::Empty;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::http::park::PARK_AFTER;
    use crate::snapshot::ListenKey;
    use crate::state::{ProxySettings, Shared};

    /// Counts the "parked" trace events of the test's thread.
    struct Parks(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Parks {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() == "tollgate::http::park" {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    struct Served {
        client: TcpStream,
        shared: Arc<Shared>,
        parks: Arc<AtomicUsize>,
        _trace: tracing::subscriber::DefaultGuard,
    }

    impl Served {
        fn parks(&self) -> usize {
            self.parks.load(Ordering::SeqCst)
        }
    }

    /// A loopback connection served by `serve`, and its client end.
    async fn served() -> Served {
        let parks = Arc::new(AtomicUsize::new(0));
        let trace = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(Parks(parks.clone())),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let shared = Shared::new(ProxySettings::default());
        let conn = ConnContext {
            shared: shared.clone(),
            key: ListenKey {
                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 80,
            },
            peer,
            peer_header: crate::http::headers::peer_header(peer.ip()),
            scheme: "http",
            tls_server: None,
            client_cert: None,
            downstream: crate::telemetry::access_log::Downstream {
                local: None,
                remote: peer,
                sni: None,
            },
            activity: Default::default(),
        };
        tokio::spawn(serve(server, conn));
        Served {
            client,
            shared,
            parks,
            _trace: trace,
        }
    }

    /// One response's head and body (by Content-Length), within 5 s.
    async fn response(client: &mut TcpStream) -> String {
        let read = async {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if client.read(&mut byte).await.unwrap() == 0 {
                    panic!("closed after {:?}", String::from_utf8_lossy(&head));
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            client.read_exact(&mut body).await.unwrap();
            head + &String::from_utf8_lossy(&body)
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("a response within 5 s")
    }

    /// A bodiless request: served by the fast path.
    async fn get(client: &mut TcpStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: nowhere.test\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        response(client).await
    }

    /// A request with a (empty) body: served by hyper, which parks.
    async fn post(client: &mut TcpStream, path: &str) -> String {
        client.write_all(post_bytes(path).as_bytes()).await.unwrap();
        response(client).await
    }

    fn post_bytes(path: &str) -> String {
        format!("POST {path} HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 0\r\n\r\n")
    }

    fn assert_keep_alive_404(response: &str) {
        assert!(response.starts_with("HTTP/1.1 404 "), "{response:?}");
        assert!(
            !response.to_ascii_lowercase().contains("connection: close"),
            "{response:?}"
        );
    }

    /// Long enough for a quiet connection to park (within twice the delay of its last request).
    async fn quiet() {
        tokio::time::sleep(PARK_AFTER * 2 + Duration::from_millis(500)).await;
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_parks_and_serves_its_next_request() {
        let mut s = served().await;
        assert_keep_alive_404(&post(&mut s.client, "/one").await);
        quiet().await;
        assert_eq!(s.parks(), 1, "parked once idle");
        // The same connection, served by a new hyper connection.
        assert_keep_alive_404(&post(&mut s.client, "/two").await);
        assert_keep_alive_404(&post(&mut s.client, "/three").await);
        quiet().await;
        assert_eq!(s.parks(), 2);
    }

    #[tokio::test]
    async fn a_busy_keep_alive_connection_does_not_park() {
        let mut s = served().await;
        let started = tokio::time::Instant::now();
        while started.elapsed() < PARK_AFTER * 3 {
            assert_keep_alive_404(&post(&mut s.client, "/busy").await);
            tokio::time::sleep(PARK_AFTER / 10).await;
        }
        assert_eq!(s.parks(), 0, "requests came sooner than the park delay");
    }

    #[tokio::test]
    async fn a_partial_head_holds_the_connection() {
        let mut s = served().await;
        s.client
            .write_all(b"GET /slow HTTP/1.1\r\nHo")
            .await
            .unwrap();
        quiet().await;
        assert_eq!(s.parks(), 0, "the head is not complete");
        s.client
            .write_all(b"st: nowhere.test\r\n\r\n")
            .await
            .unwrap();
        assert_keep_alive_404(&response(&mut s.client).await);
    }

    #[tokio::test]
    async fn pipelined_requests_are_all_answered_before_it_parks() {
        let mut s = served().await;
        let two = post_bytes("/a") + &post_bytes("/b");
        s.client.write_all(two.as_bytes()).await.unwrap();
        assert_keep_alive_404(&response(&mut s.client).await);
        assert_keep_alive_404(&response(&mut s.client).await);
        quiet().await;
        assert_eq!(s.parks(), 1);
        let two = post_bytes("/c") + &post_bytes("/d");
        s.client.write_all(two.as_bytes()).await.unwrap();
        assert_keep_alive_404(&response(&mut s.client).await);
        assert_keep_alive_404(&response(&mut s.client).await);
    }

    #[tokio::test]
    async fn a_drain_closes_a_parked_connection() {
        let mut s = served().await;
        assert_keep_alive_404(&post(&mut s.client, "/").await);
        quiet().await;
        assert_eq!(s.parks(), 1);
        s.shared.drain.start();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), s.client.read(&mut byte)).await;
        assert_eq!(
            read.expect("closed within 5 s").unwrap(),
            0,
            "end of stream"
        );
    }

    async fn assert_closed(client: &mut TcpStream) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut byte)).await;
        assert_eq!(
            read.expect("closed within 5 s").unwrap(),
            0,
            "end of stream"
        );
    }

    #[tokio::test]
    async fn bodiless_requests_are_served_without_hyper_so_nothing_parks() {
        let mut s = served().await;
        for path in ["/one", "/two"] {
            let response = get(&mut s.client, path).await;
            assert_keep_alive_404(&response);
            assert!(response.contains("\r\ndate: "), "{response:?}");
            quiet().await;
        }
        assert_eq!(s.parks(), 0, "no hyper connection was made");
    }

    #[tokio::test]
    async fn a_request_with_a_body_goes_to_hyper_and_the_next_bodiless_one_comes_back() {
        let mut s = served().await;
        // Pipelined: fast, hyper (a 3-byte body), fast.
        let three = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
            GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        s.client.write_all(three.as_bytes()).await.unwrap();
        for _ in 0..3 {
            assert_keep_alive_404(&response(&mut s.client).await);
        }
        quiet().await;
        assert_eq!(
            s.parks(),
            1,
            "hyper served the rest of the bytes, then parked"
        );
        assert_keep_alive_404(&get(&mut s.client, "/d").await);
        quiet().await;
        assert_eq!(s.parks(), 1, "the fast path took the connection back");
    }

    #[tokio::test]
    async fn connection_close_is_answered_with_close_and_the_connection_ends() {
        let mut s = served().await;
        let request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n";
        s.client.write_all(request.as_bytes()).await.unwrap();
        let response = response(&mut s.client).await;
        assert!(response.starts_with("HTTP/1.1 404 "), "{response:?}");
        assert!(
            response.contains("\r\nconnection: close\r\n"),
            "{response:?}"
        );
        assert_closed(&mut s.client).await;
    }

    #[tokio::test]
    async fn a_head_answer_has_the_get_answers_length_and_no_body() {
        let mut s = served().await;
        let get_answer = get(&mut s.client, "/").await;
        let length = |r: &str| {
            r.lines()
                .find(|l| l.starts_with("content-length:"))
                .map(str::to_owned)
        };
        assert_ne!(length(&get_answer), None, "{get_answer:?}");
        s.client
            .write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let read = async {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(s.client.read(&mut byte).await.unwrap(), 1);
                head.push(byte[0]);
            }
            String::from_utf8(head).unwrap()
        };
        let head = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 404 "), "{head:?}");
        assert_eq!(length(&head), length(&get_answer));
        // No body came: the next answer starts right after the head.
        let next = get(&mut s.client, "/next").await;
        assert!(next.starts_with("HTTP/1.1 404 "), "{next:?}");
    }

    #[tokio::test]
    async fn heads_the_fast_path_cannot_take_get_hypers_answers() {
        let cases: [(&[u8], &str); 4] = [
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                "HTTP/1.1 400 ",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
                  Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "HTTP/1.1 400 ",
            ),
            // Envoy refuses HTTP/1.0 by default; hyper answers in its version.
            (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", "HTTP/1.0 426 "),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: x-hop\r\n\r\n",
                "HTTP/1.1 404 ",
            ),
        ];
        for (request, status) in cases {
            let mut s = served().await;
            s.client.write_all(request).await.unwrap();
            let response = response(&mut s.client).await;
            assert!(response.starts_with(status), "{request:?}: {response:?}");
        }
    }

    #[tokio::test]
    async fn a_drain_closes_an_idle_connection_of_the_fast_path() {
        let mut s = served().await;
        assert_keep_alive_404(&get(&mut s.client, "/").await);
        s.shared.drain.start();
        assert_closed(&mut s.client).await;
    }

    #[tokio::test]
    async fn http2_prior_knowledge_is_served_and_never_parks() {
        let s = served().await;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s.client))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        for _ in 0..2 {
            let request = http::Request::get("http://nowhere.test/h2")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response =
                tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
                    .await
                    .expect("an answer within 5 s")
                    .expect("an HTTP/2 response");
            assert_eq!(response.status(), 404);
            assert_eq!(response.version(), http::Version::HTTP_2);
            quiet().await;
        }
        assert_eq!(s.parks.load(Ordering::SeqCst), 0);
    }

    /// The connection's future holds the IO once (see [`serve`]): a regression here costs every
    /// idle connection another copy of its TLS stream.
    #[test]
    fn the_connection_future_holds_its_io_once() {
        fn future_size<I, F: Future>(_: impl FnOnce(I, ConnContext) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        type Tls = tokio_rustls::server::TlsStream<crate::tls::prefixed::Prefixed<TcpStream>>;
        let io = std::mem::size_of::<Parking<Tls>>();
        let future = future_size(serve::<Tls>);
        assert!(
            future < io + 1024,
            "serve's future is {future} bytes for a {io}-byte IO"
        );
    }
}
