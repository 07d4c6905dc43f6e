//! Loopback harness shared by tollgate's end-to-end tests.
//!
//! Every test file does `mod support;` and drives the real `tollgate` binary
//! the way a user does: write Istio YAML into a [`ConfigDir`], start a
//! [`Gateway`] on it, start [`EchoBackend`]s, then send traffic with [`curl`]
//! or [`HttpClient`]. All traffic stays on 127.0.0.0/8, every wait is bounded,
//! and failures carry the gateway's captured stderr.
//!
//! Tests are plain `#[test]` functions: the helpers are blocking and run their
//! async parts on one harness-owned tokio runtime ([`runtime`]).
#![allow(dead_code, unused_imports)]

mod backend;
mod client;
mod config;
mod gateway;
mod policy;
mod process;
mod prometheus;
mod scripted;

pub use backend::{
    dead_port, EchoBackend, OpensslServer, Recorded, RecordingBackend, TcpEcho, TcpServer,
};
pub use client::{curl, curl_https, tls_client, CurlOutput, HttpClient, Response};
pub use config::{
    https_gateway, l4_service_entry, self_signed, service_entry, yaml_str, ConfigDir,
};
pub use gateway::{check, CheckOutput, Gateway};
pub use policy::{
    adapt, assert_marker_line, diagnostics, echo_endpoint, file_ok, fixture, not_ok_files, rule,
    service_entry_80, short, vs, vs_to, Endpoint, TlsEchoWorld, UnderTest, World, EDGE_GATEWAY,
};
pub use process::{nc, openssl_s_client, run_bounded, SClientOutput};
pub use prometheus::{
    prometheus_binary, url_encode, Exposition, IstioWorld, PrometheusServer, QueryRow, Sample,
};
/// The scenario's names (identity flags, services, hosts).
pub mod istio_world {
    pub use super::prometheus::{
        APP, APP_VERSION, CLUSTER_ID, DEAD_SERVICE, EMPTY_SERVICE, HTTPS_HOST, HTTP_HOST,
        PASS_HOST, PASS_SERVICE, TCP_SERVICE, WEB_SERVICE, WORKLOAD, WORKLOAD_NAMESPACE,
    };
}
pub use scripted::ScriptedHttp;

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Interval between polls in every bounded wait of the harness.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The multi-thread tokio runtime shared by all harness helpers of this test process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("harness-rt")
            .build()
            .expect("build the harness tokio runtime")
    })
}

/// Runs the future made by `make` to completion on [`runtime`] and returns its output.
///
/// Works from plain tests and, via a helper thread, from inside another tokio runtime.
pub fn block_on<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send,
    F: Future,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| runtime().block_on(make()))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        runtime().block_on(make())
    }
}

/// Calls `f` every [`POLL_INTERVAL`] until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
