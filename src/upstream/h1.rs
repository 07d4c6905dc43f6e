//! HTTP/1.1 upstream connections, kept alive per pool key. The endpoint is already chosen by the
//! load balancer, so the pool is keyed by its address (and connection settings) alone, and a
//! request's URI stays in the origin form it is sent in.

// foldhash: a per-process seeded hash, several times cheaper than SipHash per lookup.
use foldhash::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::client::{spawn_reaper, Connect, PoolKey, UpstreamError};
use super::RequestBody;

/// Idle connections kept per key; more are closed when their response ends.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

type Idle = Arc<Mutex<HashMap<PoolKey, Vec<Pooled>>>>;

#[derive(Default)]
pub struct H1Pool {
    idle: Idle,
    reaper: OnceLock<()>,
}

/// A kept-alive connection with what its limits need.
struct Pooled {
    sender: SendRequest<RequestBody>,
    /// Requests it has carried (`maxRequestsPerConnection`).
    served: u32,
    /// Since when it has been seen with no request in flight (`idleTimeout`).
    idle_since: Instant,
    idle_timeout: Duration,
    /// 0 = unlimited.
    max_requests: u32,
}

impl H1Pool {
    pub async fn send(
        &self,
        key: PoolKey,
        connect: Connect<'_>,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // The upstream may have closed a pooled connection while it sat idle; such a request
        // comes back unsent and goes out on the next connection (as hyper-util's client does).
        while let Some(mut pooled) = self.checkout(key) {
            match pooled.sender.try_send_request(req).await {
                Ok(response) => return Ok(self.checkin(key, pooled, response)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Reset),
                },
            }
        }
        let spec = &connect.transport.spec;
        // Boxed: the connect and handshake states (TCP, TLS) are large, and inline they would
        // make every pooled request's future that much larger to create and move.
        let sender = Box::pin(async { handshake(connect.open(key.addr).await?, key).await });
        let mut pooled = Pooled {
            sender: sender.await?,
            served: 0,
            idle_since: Instant::now(),
            idle_timeout: spec.idle_timeout,
            max_requests: spec.max_requests_per_connection,
        };
        match pooled.sender.try_send_request(req).await {
            Ok(response) => {
                self.start_reaper();
                Ok(self.checkin(key, pooled, response))
            }
            Err(_) => Err(UpstreamError::Reset),
        }
    }

    /// A connection ready for a request (LIFO, to keep few connections warm); closed ones go.
    /// Expiry is the reaper's job: no clock read per request here.
    fn checkout(&self, key: PoolKey) -> Option<Pooled> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&key)?;
        list.retain(|p| !p.sender.is_closed());
        let i = list.iter().rposition(|p| p.sender.is_ready())?;
        Some(list.swap_remove(i))
    }

    /// Back to the pool at response headers (it is ready again once the body has ended),
    /// unless it has carried its `maxRequestsPerConnection`: dropped, it closes after this one.
    fn checkin(
        &self,
        key: PoolKey,
        mut pooled: Pooled,
        response: Response<Incoming>,
    ) -> Response<Incoming> {
        pooled.served += 1;
        let spent = pooled.max_requests > 0 && pooled.served >= pooled.max_requests;
        if !spent {
            if let Ok(mut idle) = self.idle.lock() {
                let list = idle.entry(key).or_default();
                if list.len() < MAX_IDLE_PER_ENDPOINT {
                    pooled.idle_since = Instant::now();
                    list.push(pooled);
                }
            }
        }
        response
    }

    /// One task per pool closes connections idle longer than their `idleTimeout`.
    fn start_reaper(&self) {
        self.reaper.get_or_init(|| {
            spawn_reaper(Arc::downgrade(&self.idle), |idle, now| {
                for list in idle.values_mut() {
                    list.retain_mut(|p| p.keep(now));
                }
                idle.retain(|_, list| !list.is_empty());
            });
        });
    }
}

impl Pooled {
    /// A busy connection's idle time starts again; a closed or expired one goes.
    fn keep(&mut self, now: Instant) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        if !self.sender.is_ready() {
            self.idle_since = now;
            return true;
        }
        now.duration_since(self.idle_since) < self.idle_timeout
    }
}

async fn handshake(
    io: super::Conn,
    key: PoolKey,
) -> Result<SendRequest<RequestBody>, UpstreamError> {
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|_| UpstreamError::Reset)?;
    tokio::spawn(async move {
        // Upgrades (WebSocket) hand the connection over after a 101.
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(addr = %key.addr, error = %e, "upstream HTTP/1.1 connection ended");
        }
    });
    Ok(sender)
}
