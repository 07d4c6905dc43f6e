//! The pool and the exchange against scripted upstreams on loopback.

use super::*;
use crate::upstream::transport::{Transport, TransportSpec};
use http::Request;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bounds every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(10);

/// An upstream that runs `script` on each connection it accepts, counting them.
async fn upstream<F, Fut>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(stream));
        }
    });
    (addr, accepted)
}

/// Reads one request head (and a Content-Length body) off `stream`; `None` at its end.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            while buf.len() < end + 4 + length {
                let mut more = [0u8; 4096];
                let n = stream.read(&mut more).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&more[..n]);
            }
            let request = String::from_utf8_lossy(&buf[..end + 4 + length]).to_string();
            buf.drain(..end + 4 + length);
            return Some(request);
        }
        let mut more = [0u8; 4096];
        match stream.read(&mut more).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&more[..n]),
        }
    }
}

/// Answers every request on a connection with `response`.
fn answering(response: &'static str) -> impl Fn(TcpStream) -> futures_like::Boxed + Send + 'static {
    move |mut stream| {
        Box::pin(async move {
            let mut buf = Vec::new();
            while read_request(&mut stream, &mut buf).await.is_some() {
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        })
    }
}

mod futures_like {
    pub type Boxed = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

struct Client {
    pool: H1Pool,
    transport: Transport,
    addr: SocketAddr,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        Client {
            pool: H1Pool::default(),
            transport: Transport::new(TransportSpec::default(), false),
            addr,
        }
    }

    async fn send(
        &self,
        method: &str,
        body: &'static str,
    ) -> Result<Response<Body>, UpstreamError> {
        let req = Request::builder()
            .method(method)
            .uri("/path")
            .header("host", "upstream.test")
            .body(Either::Right(Full::new(Bytes::from_static(
                body.as_bytes(),
            ))))
            .unwrap();
        let key = PoolKey {
            addr: self.addr,
            transport: self.transport.pool_id(None),
        };
        let connect = Connect {
            transport: &self.transport,
            sni: None,
        };
        let (head, body) = req.into_parts();
        tokio::time::timeout(PATIENCE, self.pool.send(key, connect, &head, body))
            .await
            .expect("exchange within the test's patience")
    }

    async fn text(&self, method: &str, body: &'static str) -> (StatusCode, String) {
        let response = self.send(method, body).await.expect("a response");
        let status = response.status();
        let bytes = tokio::time::timeout(PATIENCE, response.into_body().collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).to_string())
    }

    fn idle(&self) -> usize {
        self.pool.idle.lock().unwrap().values().map(Vec::len).sum()
    }
}

#[tokio::test]
async fn keep_alive_responses_share_one_connection() {
    let (addr, accepted) = upstream(answering(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ))
    .await;
    let client = Client::new(addr);
    for _ in 0..3 {
        assert_eq!(
            client.text("GET", "").await,
            (StatusCode::OK, "hello".into())
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(client.idle(), 1);
}

#[tokio::test]
async fn chunked_responses_stream_and_return_the_connection_at_their_end() {
    let (addr, accepted) = upstream(answering(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    ))
    .await;
    let client = Client::new(addr);
    assert_eq!(
        client.text("POST", "up").await,
        (StatusCode::OK, "abcdefg".into())
    );
    assert_eq!(client.text("GET", "").await.1, "abcdefg");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closes_is_not_reused() {
    let (addr, accepted) = upstream(answering(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ))
    .await;
    let client = Client::new(addr);
    for _ in 0..2 {
        assert_eq!(client.text("GET", "").await.1, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(client.idle(), 0);
}

#[tokio::test]
async fn a_pooled_connection_closed_while_idle_gives_way_to_a_new_one() {
    // One response per connection, then a close without saying so in advance.
    let (addr, accepted) = upstream(|mut stream: TcpStream| async move {
        let mut buf = Vec::new();
        if read_request(&mut stream, &mut buf).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let client = Client::new(addr);
    assert_eq!(client.text("GET", "").await.1, "ok");
    // Wait (bounded) until the upstream's FIN has reached the pooled socket.
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut idle = client.pool.idle.lock().unwrap();
        if !idle.values_mut().flatten().all(|conn| conn.is_open()) {
            break;
        }
    }
    assert_eq!(client.text("GET", "").await.1, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn interim_responses_are_skipped_and_the_request_body_follows_its_head() {
    let (addr, _) = upstream(|mut stream: TcpStream| async move {
        let mut buf = Vec::new();
        let request = read_request(&mut stream, &mut buf).await.unwrap();
        let body = request.split("\r\n\r\n").nth(1).unwrap().to_string();
        let response = format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
             HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
    })
    .await;
    let client = Client::new(addr);
    assert_eq!(
        client.text("POST", "payload").await,
        (StatusCode::CREATED, "payload".into())
    );
}

#[tokio::test]
async fn a_head_response_has_no_body_whatever_its_length_says() {
    let (addr, accepted) =
        upstream(answering("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")).await;
    let client = Client::new(addr);
    for _ in 0..2 {
        let response = client.send("HEAD", "").await.unwrap();
        assert_eq!(response.headers()["content-length"], "1000");
        assert!(response.body().is_end_stream());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_response_cut_short_is_an_error_and_its_connection_is_dropped() {
    let (addr, _) = upstream(|mut stream: TcpStream| async move {
        let mut buf = Vec::new();
        read_request(&mut stream, &mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
            .await;
    })
    .await;
    let client = Client::new(addr);
    let response = client.send("GET", "").await.unwrap();
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect()).await;
    assert!(body.unwrap().is_err());
    assert_eq!(client.idle(), 0);
    // A connection closed before any response is a reset.
    let (addr, _) = upstream(|stream: TcpStream| async move { drop(stream) }).await;
    let reset = Client::new(addr).send("GET", "").await;
    assert!(matches!(reset, Err(UpstreamError::Reset)));
}

#[tokio::test]
async fn a_101_hands_over_the_connection_with_the_bytes_already_read() {
    let (addr, _) = upstream(|mut stream: TcpStream| async move {
        let mut buf = Vec::new();
        read_request(&mut stream, &mut buf).await;
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nfirst")
            .await
            .unwrap();
        let mut echo = [0u8; 4];
        stream.read_exact(&mut echo).await.unwrap();
        stream.write_all(&echo).await.unwrap();
    })
    .await;
    let transport = Transport::new(TransportSpec::default(), false);
    let pool = H1Pool::default();
    let req = Request::builder()
        .uri("/ws")
        .header("host", "h")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Either::Right(Full::new(Bytes::new())))
        .unwrap();
    let key = PoolKey {
        addr,
        transport: transport.pool_id(None),
    };
    let connect = Connect {
        transport: &transport,
        sni: None,
    };
    let (head, body) = req.into_parts();
    let response = pool.send(key, connect, &head, body).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut io = response
        .extensions()
        .get::<UpgradeSlot>()
        .unwrap()
        .take()
        .unwrap();
    let mut first = [0u8; 5];
    tokio::time::timeout(PATIENCE, io.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first, b"first");
    io.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(PATIENCE, io.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
}

#[tokio::test]
async fn an_empty_length_body_has_ended_with_its_head() {
    let (addr, accepted) =
        upstream(answering("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")).await;
    let client = Client::new(addr);
    for _ in 0..2 {
        let response = client.send("GET", "").await.unwrap();
        assert!(response.body().is_end_stream());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_spent_connection_is_closed_after_max_requests() {
    let (addr, accepted) =
        upstream(answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    let spec = TransportSpec {
        max_requests_per_connection: 2,
        ..TransportSpec::default()
    };
    let client = Client {
        pool: H1Pool::default(),
        transport: Transport::new(spec, false),
        addr,
    };
    for _ in 0..4 {
        assert_eq!(client.text("GET", "").await.1, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
