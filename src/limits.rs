//! Edge limits: how much any one client, and all of them together, may hold of the gateway.
//! The defaults are Envoy's edge-proxy recommendations (its "Configuring Envoy as an edge proxy"
//! page); every one is a `tollgate run` flag (see [`crate::cli::LimitArgs`]).

use std::time::Duration;

/// Limits in force for the life of the process (flags, not YAML: a reload never changes them).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Downstream connections open at once, all listeners together; more are closed on accept.
    pub max_connections: u64,
    /// Downstream connections open at once on any one listener (none: only the global limit).
    pub max_connections_per_listener: Option<u64>,
    /// HTTP/1: a request head must arrive whole within this time of its first byte (slowloris).
    pub request_headers_timeout: Duration,
    /// An open request or stream with no byte moving either way for this long is ended.
    pub stream_idle_timeout: Duration,
    /// An HTTP connection with no open request for this long is closed.
    pub idle_timeout: Duration,
    /// A request head larger than this gets 431.
    pub max_request_headers_bytes: usize,
    /// A request with more header lines than this gets 431.
    pub max_request_headers: usize,
    /// Request bodies up to this size are buffered so that a retry can resend them.
    pub max_request_body_buffer: u64,
    /// HTTP/2 settings the gateway announces.
    pub h2_max_concurrent_streams: u32,
    pub h2_initial_stream_window: u32,
    pub h2_initial_connection_window: u32,
    /// Streams an HTTP/2 client may open and reset before the gateway has taken them up, at any
    /// one time, before the connection is closed with ENHANCE_YOUR_CALM (rapid reset,
    /// CVE-2023-44487).
    pub h2_max_pending_reset_streams: usize,
    /// A TLS port's ClientHello must arrive within this time, in at most this many bytes.
    pub tls_inspector_timeout: Duration,
    pub max_client_hello_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 50_000,
            max_connections_per_listener: None,
            request_headers_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(3600),
            max_request_headers_bytes: 60 * 1024,
            max_request_headers: 100,
            max_request_body_buffer: 1024 * 1024,
            h2_max_concurrent_streams: 100,
            h2_initial_stream_window: 64 * 1024,
            h2_initial_connection_window: 1024 * 1024,
            h2_max_pending_reset_streams: 20,
            tls_inspector_timeout: Duration::from_secs(15),
            max_client_hello_bytes: crate::tls::client_hello::MAX_HELLO_BYTES,
        }
    }
}

/// Raises the soft open-file limit to the hard one, so the connection limit, not the default
/// soft limit (often 1,024), is what bounds connections; warns when even the hard limit is
/// lower than the connections the flags allow (each proxied connection needs two descriptors).
pub fn raise_open_file_limit(max_connections: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let usable = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let wanted = max_connections.saturating_mul(2).saturating_add(256);
    if usable < wanted {
        tracing::warn!(
            open_file_limit = usable,
            max_connections,
            "the open-file limit is below what --max-connections needs (two descriptors per \
             proxied connection); accepts will fail before the connection limit is reached"
        );
    }
}
