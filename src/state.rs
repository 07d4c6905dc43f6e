//! Process-wide state shared by the data path, the reloader and the admin API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::drain::DrainSignal;
use crate::snapshot::Snapshot;
use crate::upstream::Upstreams;

/// Data-path settings from the command line (not from YAML, so they never change on reload).
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// `--num-trusted-proxies`: hops in front of the gateway whose forwarding headers are believed.
    pub num_trusted_proxies: u32,
    /// `--https-redirect-port`: the port `httpsRedirect` puts in Location (none by default).
    pub https_redirect_port: Option<u16>,
    /// `--tcp-idle-timeout`: an opaque stream with no byte either way for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// `--tcp-copy`: how TCP and passthrough streams cross the gateway.
    pub tcp_copy: crate::l4::relay::Copy,
    /// `--mirror-shadow-host`: mirrored requests go to `<host>-shadow` (Istio before 1.28).
    pub mirror_shadow_host: bool,
    /// Connection, timeout and size limits (`--max-connections` and friends).
    pub limits: crate::limits::Limits,
    /// `--proxy-protocol`: Gateway ports whose connections start with a PROXY protocol header.
    pub proxy_protocol: Vec<u16>,
    /// `--path-normalization`: Istio's mesh `pathNormalization` (default BASE).
    pub path_normalization: crate::http::path::PathNormalization,
}

/// Envoy's TCP proxy default.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            num_trusted_proxies: 0,
            https_redirect_port: None,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            tcp_copy: Default::default(),
            mirror_shadow_host: false,
            limits: crate::limits::Limits::default(),
            proxy_protocol: Vec::new(),
            path_normalization: Default::default(),
        }
    }
}

pub struct Shared {
    /// The live configuration; only the reloader stores into it.
    pub snapshot: ArcSwap<Snapshot>,
    pub upstreams: Upstreams,
    pub settings: ProxySettings,
    ready: AtomicBool,
    /// Readiness fails from here on (shutdown, `/drain_listeners`).
    draining: AtomicBool,
    /// Tells open connections to finish their requests and close (shutdown,
    /// `/drain_listeners?graceful`).
    pub drain: DrainSignal,
}

impl Shared {
    pub fn new(settings: ProxySettings) -> Arc<Self> {
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            upstreams: Upstreams::new(),
            settings,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drain: DrainSignal::default(),
        })
    }

    /// Ready once the first configuration is loaded and its listeners are up, until draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Envoy's server state as `/ready` names it.
    pub fn state_name(&self) -> &'static str {
        if self.draining.load(Ordering::Acquire) {
            "DRAINING"
        } else if self.ready.load(Ordering::Acquire) {
            "LIVE"
        } else {
            "PRE_INITIALIZING"
        }
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}
