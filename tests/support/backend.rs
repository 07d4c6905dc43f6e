//! Loopback backends: HTTP and TCP echo servers, test-written TCP servers, `openssl s_server`,
//! and a port with nothing on it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tollgate::demo::echo::{spawn_http_echo, spawn_tcp_echo, EchoIdentity};

use super::{block_on, HttpClient};

/// Aborts an echo task and waits (bounded) until it has stopped.
fn stop_task(task: &mut Option<JoinHandle<()>>) {
    if let Some(task) = task.take() {
        task.abort();
        block_on(move || async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        });
    }
}

/// `tollgate::demo::echo` HTTP server on 127.0.0.1, stopped on drop (or [`EchoBackend::stop`]).
/// It answers 200 JSON `{service, version, method, path, host, headers, body_bytes}`,
/// `/status/<code>` and `/delay/<ms>`.
pub struct EchoBackend {
    pub addr: SocketAddr,
    pub service: String,
    pub version: String,
    task: Option<JoinHandle<()>>,
    /// Requests [`EchoBackend::received`] sent itself.
    probes: AtomicU64,
}

impl EchoBackend {
    pub fn start(service: &str, version: &str) -> EchoBackend {
        let id = EchoIdentity {
            service: service.to_string(),
            version: version.to_string(),
        };
        let (addr, task) = block_on(move || spawn_http_echo(id))
            .unwrap_or_else(|e| panic!("start HTTP echo {service}/{version}: {e}"));
        EchoBackend {
            addr,
            service: service.to_string(),
            version: version.to_string(),
            task: Some(task),
            probes: AtomicU64::new(0),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many requests this backend has received so far (all paths, retries included), not
    /// counting this method's own: one direct GET `/__received` (not through the gateway) reads
    /// its `x-echo-request-count`, and the probes sent so far are subtracted. Panics if the
    /// backend does not answer within 5 s.
    pub fn received(&self) -> u64 {
        let probes = self.probes.fetch_add(1, Ordering::SeqCst) + 1;
        let resp = HttpClient::fresh_connections()
            .get(self.addr, "echo-probe.internal", "/__received", &[])
            .unwrap_or_else(|e| panic!("probe {}/{}: {e}", self.service, self.version));
        let count: u64 = resp
            .header("x-echo-request-count")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "probe {}/{}: no numeric x-echo-request-count in {:?}",
                    self.service, self.version, resp.headers
                )
            });
        count.checked_sub(probes).unwrap_or_else(|| {
            panic!(
                "probe {}/{}: count {count} is below the {probes} probes sent",
                self.service, self.version
            )
        })
    }

    /// Stops accepting connections now (the struct stays, e.g. to keep `addr` around).
    pub fn stop(&mut self) {
        stop_task(&mut self.task);
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tollgate::demo::echo` raw TCP echo server on 127.0.0.1, stopped on drop.
pub struct TcpEcho {
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl TcpEcho {
    pub fn start() -> TcpEcho {
        let (addr, task) =
            block_on(spawn_tcp_echo).unwrap_or_else(|e| panic!("start TCP echo: {e}"));
        TcpEcho {
            addr,
            task: Some(task),
        }
    }

    pub fn stop(&mut self) {
        stop_task(&mut self.task);
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A 127.0.0.1 port where connections are refused: a socket bound to it, never listening, held
/// for the rest of the test process, so the kernel hands the port to no other socket (a port
/// merely released could be given to the next `bind(0)`, say another gateway's admin server).
pub fn dead_port() -> u16 {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a socket for dead_port");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind 127.0.0.1:0 for dead_port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("local_addr of dead_port socket")
        .port();
    std::mem::forget(socket);
    port
}

/// A plain-TCP server on 127.0.0.1 written by the test: every accepted connection runs
/// `handler` on its own thread (handlers should bound their own reads with timeouts). The
/// accept loop stops on drop; connections already handed out finish on their own.
pub struct TcpServer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpServer {
    pub fn start<F>(handler: F) -> TcpServer
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for TcpServer");
        let addr = listener.local_addr().expect("TcpServer local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    std::thread::spawn(move || handler(stream));
                }
            })
        };
        TcpServer {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Writes `banner` to every connection, then closes it (FIN) without reading.
    pub fn banner(banner: &'static [u8]) -> TcpServer {
        TcpServer::start(move |mut stream| {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
            let _ = stream.write_all(banner);
            let _ = stream.shutdown(Shutdown::Write);
            // Wait (bounded) for the peer's FIN so nothing unread turns the close into a reset.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut sink = [0u8; 256];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `openssl s_server -www` on an ephemeral 127.0.0.1 port with the given PEM certificate and key
/// (a TLS backend that terminates TLS itself and answers any GET with a status page that shows
/// its own command line). Killed and reaped on drop.
pub struct OpensslServer {
    pub addr: SocketAddr,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl OpensslServer {
    pub fn start(cert: &Path, key: &Path) -> OpensslServer {
        Self::start_with(cert, key, &[])
    }

    /// [`OpensslServer::start`] with `extra` arguments for `openssl s_server` (e.g.
    /// `-Verify 1 -CAfile ca.pem` to require a client certificate from that CA).
    pub fn start_with(cert: &Path, key: &Path, extra: &[&str]) -> OpensslServer {
        let mut child = Command::new("openssl")
            .arg("s_server")
            .args(["-accept", "127.0.0.1:0", "-www", "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn openssl s_server: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("s_server stdout");
        let stderr = child.stderr.take().expect("s_server stderr");
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.strip_prefix("ACCEPT ") {
                        let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                        let _ = tx.send(port);
                    }
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let port = rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "openssl s_server printed no ACCEPT line within 10 s; output:\n{}",
                output.lock().unwrap()
            );
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        OpensslServer {
            addr,
            child,
            output,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything s_server printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request seen by a [`RecordingBackend`].
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Host` header (or the request target's authority when there is none).
    pub host: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Length of the body, read to its end before the request is recorded.
    pub body_bytes: usize,
}

/// An HTTP/1.1 server on 127.0.0.1 that records every request it receives (method, path, Host,
/// headers, body length) and answers each one at once with 200 and the JSON
/// `{"service": <name>, "version": "recorder", "path": ..., "host": ..., "body_bytes": ...}`
/// (it gives no meaning to paths such as `/delay/<ms>`). Stopped on drop.
pub struct RecordingBackend {
    pub addr: SocketAddr,
    pub name: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: Option<JoinHandle<()>>,
}

impl RecordingBackend {
    pub fn start(name: &str) -> RecordingBackend {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        let listener = block_on(|| tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("bind RecordingBackend {name}: {e}"));
        let addr = listener.local_addr().expect("RecordingBackend local_addr");
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let task = {
            let (log, name) = (log.clone(), name.to_string());
            super::runtime().spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (log, name) = (log.clone(), name.clone());
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let (log, name) = (log.clone(), name.clone());
                                async move {
                                    let (parts, body) = req.into_parts();
                                    let body = body.collect().await?.to_bytes();
                                    let host = parts
                                        .headers
                                        .get(http::header::HOST)
                                        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                                        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
                                        .unwrap_or_default();
                                    let path = parts
                                        .uri
                                        .path_and_query()
                                        .map_or("/".to_string(), |pq| pq.to_string());
                                    let json = serde_json::json!({
                                        "service": name,
                                        "version": "recorder",
                                        "method": parts.method.as_str(),
                                        "path": path,
                                        "host": host,
                                        "body_bytes": body.len(),
                                    });
                                    log.lock().unwrap().push(Recorded {
                                        method: parts.method.to_string(),
                                        path,
                                        host,
                                        headers: parts
                                            .headers
                                            .iter()
                                            .map(|(k, v)| {
                                                let v = String::from_utf8_lossy(v.as_bytes());
                                                (k.as_str().to_string(), v.into_owned())
                                            })
                                            .collect(),
                                        body_bytes: body.len(),
                                    });
                                    let resp = http::Response::builder()
                                        .status(200)
                                        .header("content-type", "application/json")
                                        .header("x-recorder", name.as_str())
                                        .body(Full::new(bytes::Bytes::from(json.to_string())))
                                        .expect("build recorder response");
                                    Ok::<_, hyper::Error>(resp)
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        RecordingBackend {
            addr,
            name: name.to_string(),
            log,
            task: Some(task),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests were recorded so far.
    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    pub fn stop(&mut self) {
        stop_task(&mut self.task);
    }
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.stop();
    }
}
