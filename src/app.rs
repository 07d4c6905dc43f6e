//! Process wiring for `tollgate run`: runtime, metrics, admin servers, first load, watcher, signals.

use std::sync::Arc;

use anyhow::{bail, Context};

use crate::admin::{self, AdminContext, Role};
use crate::cli::RunArgs;
use crate::config::ConfigStore;
use crate::listener::Listeners;
use crate::reload::Reloader;
use crate::state::{ProxySettings, Shared};

/// Logs to stderr; `RUST_LOG` sets the initial levels (default `info`), admin `/logging` changes
/// them live.
pub fn init_logging() {
    crate::logging::init();
}

/// Builds the runtime with `--workers` threads and serves until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    runtime(args.workers)?.block_on(serve(args))
}

pub fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // One worker: a current-thread runtime skips the work-stealing machinery (cross-thread
    // queues and wakeups) that a single thread cannot use.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .thread_name("tollgate-worker")
        .enable_all()
        .build()
        .context("starting the runtime")
}

pub async fn serve(args: RunArgs) -> anyhow::Result<()> {
    let config_dir = args.config.config_dir.clone();
    if !config_dir.is_dir() {
        bail!(
            "config dir {} does not exist or is not a directory",
            config_dir.display()
        );
    }
    let settings = ProxySettings {
        num_trusted_proxies: args.num_trusted_proxies,
        https_redirect_port: args.https_redirect_port,
        tcp_idle_timeout: args.tcp_idle_timeout,
        tcp_copy: args.tcp_copy,
        mirror_shadow_host: args.mirror_shadow_host,
        limits: args.limits.limits(),
        proxy_protocol: args.proxy_protocol.clone(),
        path_normalization: args.path_normalization,
    };
    crate::limits::raise_open_file_limit(settings.limits.max_connections);
    if !args.admin_addr.ip().is_loopback() && !args.admin_allow_remote {
        bail!(
            "--admin-addr {} is not a loopback address: the admin API can stop and drain the \
             gateway, so it stays on loopback unless --admin-allow-remote is given",
            args.admin_addr
        );
    }
    start_telemetry(&args)?;
    let shared = Shared::new(settings);
    let listeners = Listeners::new(shared.clone(), args.port_map());
    let ctx = AdminContext {
        shared: shared.clone(),
        listeners: listeners.clone(),
        prometheus: crate::metrics::install(),
        shutdown: Arc::new(tokio::sync::Notify::new()),
    };
    for (role, addr) in [
        (Role::Admin, args.admin_addr),
        (Role::Health, args.health_addr),
        (Role::Metrics, args.metrics_addr),
    ] {
        admin::start(role, addr, ctx.clone())
            .await
            .with_context(|| format!("binding the {role:?} address {addr}"))?;
    }
    let store = ConfigStore::new(&config_dir, &args.config.namespace);
    let mut options = args.config.options();
    options.access_log = args.telemetry.access_log.is_some();
    options.resumption = crate::tls::server_config::Resumption::new(!args.no_session_resumption);
    let mut reloader = Reloader::new(store, options, shared.clone(), listeners);
    reloader.reload();
    shared.set_ready();
    tokio::spawn(reloader.watch(vec![config_dir, args.config.certs_dir.clone()]));
    // Admin `/quitquitquit` ends the process the way SIGTERM does.
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = ctx.shutdown.notified() => {}
    }
    drain(&shared, &ctx.listeners, args.drain_timeout).await;
    Ok(())
}

/// Graceful shutdown: readiness fails and open HTTP connections are told to close after the
/// request in flight (`Connection: close`, HTTP/2 GOAWAY); then the listeners close, so new
/// connections are refused; then open connections get `timeout` to finish. Whatever is still
/// open after it (a long TCP stream, a slow request) is cut when the process exits.
async fn drain(shared: &Shared, listeners: &Listeners, timeout: std::time::Duration) {
    shared.start_draining();
    shared.drain.start();
    listeners.drain().await;
    let open = listeners.open_connections();
    tracing::info!(open_connections = open, timeout = ?timeout, "shutting down: draining");
    let left = listeners.wait_closed(timeout).await;
    if left > 0 {
        tracing::warn!(
            open_connections = left,
            "drain timeout: closing the connections still open"
        );
    }
    crate::telemetry::access_log::flush();
    tracing::info!("shut down");
}

/// The gateway's identity for Istio's labels, the metrics upkeep, and the access log writer.
fn start_telemetry(args: &RunArgs) -> anyhow::Result<()> {
    use crate::telemetry::{access_log, identity};
    identity::set(identity::Identity::new(
        &args.telemetry.workload_name,
        &args.config.gateway_namespace,
        &args.telemetry.cluster_id,
        &args.config.labels,
    ));
    let prometheus = crate::metrics::install();
    // Histogram samples wait in per-series buffers until drained; scrapes drain them too, but an
    // unscraped gateway must not grow without bound.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            prometheus.run_upkeep();
        }
    });
    let target = access_log::Target::parse(args.telemetry.access_log.as_deref().unwrap_or("-"));
    access_log::start(target, args.telemetry.access_log_format)
        .context("starting the access log writer")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Keeps `Arc<Shared>` reachable for embedders and tests.
pub type SharedState = Arc<Shared>;
