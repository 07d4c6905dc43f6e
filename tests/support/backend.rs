//! Loopback backends: HTTP and TCP echo servers, and a port with nothing on it.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::task::JoinHandle;
use tollgate::demo::echo::{spawn_http_echo, spawn_tcp_echo, EchoIdentity};

use super::block_on;

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
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
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

/// A 127.0.0.1 port with nothing listening on it (bound, then released; another
/// process could in principle grab it later, which is very unlikely in a test run).
pub fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for dead_port");
    listener
        .local_addr()
        .expect("local_addr of dead_port listener")
        .port()
}
