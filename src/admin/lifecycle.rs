//! `/ready` (and the health role's `/healthz/ready` and `/healthz/live`), `/drain_listeners`,
//! `/quitquitquit`.

use std::time::Duration;

use http::StatusCode;

use super::{text, AdminContext, AdminResponse};

/// How long `/quitquitquit` leaves its `OK` to reach the client before the process ends.
const QUIT_GRACE: Duration = Duration::from_millis(100);

/// 200 `LIVE` while serving; else 503 with Envoy's state name (`PRE_INITIALIZING`, `DRAINING`).
pub(super) fn ready(ctx: &AdminContext) -> AdminResponse {
    let state = ctx.shared.state_name();
    let status = if ctx.shared.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, format!("{state}\n"))
}

/// Liveness: 200 while the process serves its admin addresses, draining included (a liveness
/// probe must not restart a pod that is finishing its requests).
pub(super) fn live() -> AdminResponse {
    text(StatusCode::OK, "OK\n".into())
}

/// Closes every gateway listening socket (answering once they are closed) and reports
/// `DRAINING`, so a load balancer takes the pod out while open connections finish. As in Envoy,
/// open connections keep being served unless `?graceful` asks them to close after their request
/// in flight.
pub(super) async fn drain_listeners(ctx: &AdminContext, graceful: bool) -> AdminResponse {
    ctx.shared.start_draining();
    if graceful {
        ctx.shared.drain.start();
    }
    ctx.listeners.drain().await;
    tracing::info!("listeners drained on admin request");
    text(StatusCode::OK, "OK\n".into())
}

/// Answers `OK`, then shuts down as on SIGTERM.
pub(super) fn quit(ctx: &AdminContext) -> AdminResponse {
    tracing::info!("shutdown requested on the admin API");
    let shutdown = ctx.shutdown.clone();
    // Ending the process at once could cut the answer off before it is written.
    tokio::spawn(async move {
        tokio::time::sleep(QUIT_GRACE).await;
        shutdown.notify_one();
    });
    text(StatusCode::OK, "OK\n".into())
}
