//! A keep-alive HTTP/1.1 server whose every answer is one status, switchable while it runs,
//! counting requests, connections and the connections its peer closed: the endpoint the
//! outlier-detection and connection-pool tests need (one that fails on demand, and one whose
//! connection reuse is visible).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::TcpServer;

/// How long a connection may sit without a request before the server gives up on it.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Counters {
    status: AtomicU16,
    served: AtomicUsize,
    closed_by_peer: AtomicUsize,
}

pub struct ScriptedHttp {
    server: TcpServer,
    counters: Arc<Counters>,
}

impl ScriptedHttp {
    /// Answers every request with `status` and the body `scripted <port>`.
    pub fn start(status: u16) -> ScriptedHttp {
        let counters = Arc::new(Counters::default());
        counters.status.store(status, Ordering::SeqCst);
        let shared = counters.clone();
        let server = TcpServer::start(move |stream| serve(stream, &shared));
        ScriptedHttp { server, counters }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The status of answers from now on.
    pub fn set_status(&self, status: u16) {
        self.counters.status.store(status, Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn served(&self) -> usize {
        self.counters.served.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.server.accepted()
    }

    /// Connections the client closed (EOF while waiting for a request).
    pub fn closed_by_peer(&self) -> usize {
        self.counters.closed_by_peer.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, counters: &Counters) {
    let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let port = stream.local_addr().map_or(0, |a| a.port());
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Requests without bodies: a head ends at the blank line.
        while let Some(end) = find(&pending, b"\r\n\r\n") {
            pending.drain(..end + 4);
            let status = counters.status.load(Ordering::SeqCst);
            let body = format!("scripted {port}");
            let response = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            counters.served.fetch_add(1, Ordering::SeqCst);
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                counters.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(_) => return,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
