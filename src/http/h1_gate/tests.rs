use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::AsyncReadExt;

use super::*;

/// Feeds `stream` to a fresh scanner in the pieces that `cuts` (ascending offsets) make. Returns
/// the stream offset of the line feed the scanner rejected, if any, and its final state.
fn scan_cut(stream: &[u8], cuts: &[usize]) -> (Option<usize>, State) {
    let mut scanner = Scanner::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        if let Some(i) = scanner.scan(&stream[start..end]) {
            return (Some(start + i), scanner.state());
        }
        start = end;
    }
    (None, scanner.state())
}

/// The same verdict however the stream is split: in one piece, at every byte boundary, at every
/// pair of boundaries, and one byte at a time.
fn assert_every_split(what: &str, stream: &[u8], want: (Option<usize>, State)) {
    assert_eq!(scan_cut(stream, &[]), want, "{what}: in one piece");
    for a in 0..=stream.len() {
        assert_eq!(scan_cut(stream, &[a]), want, "{what}: split at {a}");
        // Pairs of cuts: quadratic, so only on short streams.
        if stream.len() <= 400 {
            for b in a..=stream.len() {
                assert_eq!(scan_cut(stream, &[a, b]), want, "{what}: split at {a}, {b}");
            }
        }
    }
    let every: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(scan_cut(stream, &every), want, "{what}: byte by byte");
}

/// Offset of the line feed that ends the `nth` (0-based) head-ending blank line "\r\n\r\n".
fn end_of_head(stream: &[u8], nth: usize) -> usize {
    let mut found = stream
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"\r\n\r\n")
        .map(|(i, _)| i + 3);
    found.nth(nth).expect("test bug: no such head end")
}

const GET12: &[u8] = b"GET /api/catalog/items?page=2 HTTP/1.1\r\n\
Host: catalog.istioinaction.io\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=5f1c2a9e8b7d4c3a; theme=dark\r\n\
Cache-Control: no-cache\r\n\
X-Request-Id: 6a0c5c3e-8d0e-4a57-9a0b-7d0f3b1f2e11\r\n\
X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\n\
X-B3-SpanId: e457b5a2e4d86bd1\r\n\
X-B3-Sampled: 1\r\n\
\r\n";

#[test]
fn plain_requests_pass_untouched() {
    assert_every_split("12-header GET", GET12, (None, State::RequestLine));
    let post = b"POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    assert_every_split("POST with a body", post, (None, State::RequestLine));
    // httparse skips empty lines before a request line, and allows bare LF line ends.
    let lf = b"\r\n\nGET / HTTP/1.1\nHost: a\ncontent-length: 2\n\nhi";
    assert_every_split("bare LF", lf, (None, State::RequestLine));
    let half = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello";
    assert_every_split("half a body", half, (None, State::Body(5)));
}

#[test]
fn content_length_with_transfer_encoding_is_cut_at_the_blank_line() {
    let cases: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-ENCODING: gzip, chunked\r\nCONTENT-length: 0\r\n\r\n",
        // Even when the length is unusable or the coding is not chunked: Envoy answers 400.
        b"POST / HTTP/1.1\r\nContent-Length: 1,2\r\nTransfer-Encoding: identity\r\n\r\n",
    ];
    for stream in cases {
        let what = String::from_utf8_lossy(stream);
        let at = end_of_head(stream, 0);
        assert_every_split(&what, stream, (Some(at), State::Rejected));
    }
    let lf = b"POST / HTTP/1.1\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\n\n";
    let at = lf.windows(2).position(|w| w == b"\n\n").unwrap() + 1;
    assert_every_split("bare LF", lf, (Some(at), State::Rejected));
}

#[test]
fn bodies_are_skipped_so_the_next_head_is_found() {
    let fake = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    // A Content-Length body that looks like a smuggling head, then a real request.
    let mut stream =
        format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", fake.len()).into_bytes();
    stream.extend_from_slice(fake);
    stream.extend_from_slice(b"GET /b HTTP/1.1\r\n\r\n");
    assert_every_split(
        "CL body with a head in it",
        &stream,
        (None, State::RequestLine),
    );
    // A chunked body that does, with an extension, and trailers that name both framing fields.
    let mut chunked =
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=\"a\"\r\nhello\r\n".to_vec();
    chunked.extend_from_slice(format!("{:X}  \r\n", fake.len()).as_bytes());
    chunked.extend_from_slice(fake);
    chunked.extend_from_slice(
        b"\r\n0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nGET /d HTTP/1.1\r\n\r\n",
    );
    assert_every_split(
        "chunked with trailers",
        &chunked,
        (None, State::RequestLine),
    );
    // Pipelined: all of these, then a head with both fields, cut at its own blank line.
    let mut pipelined = [GET12, &stream, &chunked].concat();
    let last = b"POST /e HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    pipelined.extend_from_slice(last);
    let at = pipelined.len() - 1;
    assert_eq!(scan_cut(&pipelined, &[]), (Some(at), State::Rejected));
    for a in 0..=pipelined.len() {
        assert_eq!(
            scan_cut(&pipelined, &[a]),
            (Some(at), State::Rejected),
            "split at {a}"
        );
    }
    let every: Vec<usize> = (1..pipelined.len()).collect();
    assert_eq!(scan_cut(&pipelined, &every), (Some(at), State::Rejected));
}

#[test]
fn upgrades_http2_and_the_unknown_pass_through() {
    let both = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases = [
        ("WebSocket", format!("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n{both}")),
        ("CONNECT", format!("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n{both}")),
        ("HTTP/2 preface", format!("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{both}")),
        ("differing lengths", format!("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{both}")),
        ("a list for a length", format!("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n{both}")),
        ("a signed length", format!("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx{both}")),
        ("a chunk size overflow", format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n{both}")),
        ("chunk data without CRLF", format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n{both}")),
        ("an LF in a chunk extension", format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\n\r\nx\r\n0\r\n\r\n{both}")),
    ];
    for (what, stream) in cases {
        assert_every_split(what, stream.as_bytes(), (None, State::Pass));
    }
    // Equal duplicate lengths are one length (hyper agrees).
    let equal = format!("POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx{both}");
    let at = equal.len() - 1;
    assert_every_split(
        "equal lengths",
        equal.as_bytes(),
        (Some(at), State::Rejected),
    );
}

#[test]
fn long_lines_are_read_the_same_however_they_arrive() {
    // A long field before both framing fields: its tail never looks like a field name.
    let cookie = "x".repeat(3 * CARRY);
    let stream = format!(
        "POST / HTTP/1.1\r\nCookie: {cookie}Transfer-Encoding: chunked\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let at = stream.len() - 1;
    assert_every_split(
        "long cookie",
        stream.as_bytes(),
        (Some(at), State::Rejected),
    );
    // A Content-Length line longer than the carry is not read (hyper judges it), in one piece or
    // split; the same line within the carry is.
    let pad = " ".repeat(CARRY);
    let long = format!("POST / HTTP/1.1\r\nContent-Length: {pad}1\r\n\r\nx");
    assert_every_split("long length line", long.as_bytes(), (None, State::Pass));
    let short = "POST / HTTP/1.1\r\nContent-Length:    1   \r\n\r\nx";
    assert_every_split(
        "padded length",
        short.as_bytes(),
        (None, State::RequestLine),
    );
}

/// A downstream connection whose reads return `reads` one by one (cut to the caller's buffer),
/// then wait until `want` responses have been written, then end.
struct Scripted {
    reads: VecDeque<Vec<u8>>,
    written: Arc<Mutex<Vec<u8>>>,
    want: usize,
    waker: Option<Waker>,
}

fn responses(written: &[u8]) -> usize {
    written.windows(9).filter(|w| w == b"HTTP/1.1 ").count()
}

impl AsyncRead for Scripted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(mut chunk) = this.reads.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                this.reads.push_front(chunk.split_off(n));
            }
            return Poll::Ready(Ok(()));
        }
        if responses(&this.written.lock().unwrap()) >= this.want {
            return Poll::Ready(Ok(()));
        }
        this.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut written = this.written.lock().unwrap();
        written.extend_from_slice(buf);
        if responses(&written) >= this.want {
            if let Some(waker) = this.waker.take() {
                waker.wake();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serves `reads` through the gate with hyper-util's auto builder, as `server::serve` does.
/// Returns what hyper wrote and the requests the service saw (`METHOD URI BODY_BYTES`).
async fn serve(reads: Vec<Vec<u8>>, want: usize) -> (String, Vec<String>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let io = Scripted {
        reads: reads.into(),
        written: written.clone(),
        want,
        waker: None,
    };
    let log = seen.clone();
    let service = service_fn(move |req: http::Request<Incoming>| {
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let len = body.collect().await.map(|b| b.to_bytes().len());
            let line = format!(
                "{} {} {}",
                parts.method,
                parts.uri,
                len.unwrap_or(usize::MAX)
            );
            log.lock().unwrap().push(line);
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(H1Gate::new(io)), service);
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the connection did not end within 5 s");
    let written = String::from_utf8_lossy(&written.lock().unwrap()).into_owned();
    let seen = seen.lock().unwrap().clone();
    (written, seen)
}

#[tokio::test]
async fn hyper_answers_400_however_the_head_is_split() {
    let head = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    for a in 0..=head.len() {
        let reads = vec![head[..a].to_vec(), head[a..].to_vec()];
        let (written, seen) = serve(reads, 1).await;
        assert!(
            written.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "split at {a}: {written:?}"
        );
        assert_eq!(
            responses(written.as_bytes()),
            1,
            "split at {a}: {written:?}"
        );
        assert!(seen.is_empty(), "split at {a}: the service saw {seen:?}");
    }
}

#[tokio::test]
async fn hyper_serves_pipelined_requests_through_the_gate() {
    let fake = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let stream = format!(
        "GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
         POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{fake}\
         POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x};e=1\r\n{fake}\r\n0\r\nX-T: 1\r\n\r\n\
         GET /d HTTP/1.1\r\nHost: a\r\n\r\n",
        fake.len(),
        fake.len()
    );
    let want = [
        "GET /a 0".to_string(),
        format!("POST /b {}", fake.len()),
        format!("POST /c {}", fake.len()),
        "GET /d 0".to_string(),
    ];
    let bytes = stream.as_bytes();
    for a in (0..=bytes.len()).step_by(3) {
        let (written, seen) = serve(vec![bytes[..a].to_vec(), bytes[a..].to_vec()], 4).await;
        assert_eq!(seen, want, "split at {a}: {written:?}");
        assert_eq!(
            responses(written.as_bytes()),
            4,
            "split at {a}: {written:?}"
        );
        assert!(!written.contains(" 400 "), "split at {a}: {written:?}");
    }
    // Then a head with both fields: the first four are served, the fifth gets 400.
    let bad = format!("{stream}POST /e HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    let (written, seen) = serve(vec![bad.into_bytes()], 5).await;
    assert_eq!(seen, want);
    assert_eq!(responses(written.as_bytes()), 5, "{written:?}");
    assert!(
        written.contains("HTTP/1.1 400 Bad Request\r\n"),
        "{written:?}"
    );
}

#[tokio::test]
async fn the_poison_fits_any_buffer_and_nothing_follows() {
    let stream = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let at = end_of_head(stream, 0);
    let io = Scripted {
        reads: VecDeque::from([stream.to_vec()]),
        written: Arc::default(),
        want: 0,
        waker: None,
    };
    let mut gate = H1Gate::new(io);
    let mut delivered = Vec::new();
    let mut one = [0u8; 1];
    for _ in 0..stream.len() + 10 {
        match gate.read(&mut one).await.unwrap() {
            0 => break,
            n => delivered.extend_from_slice(&one[..n]),
        }
    }
    let mut want = stream[..at].to_vec();
    want.extend_from_slice(&POISON);
    assert_eq!(delivered, want);
}
