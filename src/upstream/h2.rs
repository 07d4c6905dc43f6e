//! HTTP/2 upstreams (ServiceEntry ports of protocol HTTP2 or GRPC): one multiplexed connection
//! per pool key. hyper-util's pooled client would address requests to the endpoint's `ip:port`,
//! so `:authority` would disagree with the client's Host; here requests keep their authority
//! and the connection is chosen by endpoint address.
//!
//! A connection that has carried `maxRequestsPerConnection` streams, or has started none for
//! `idleTimeout`, leaves the map: new requests open another, and the old one closes once its
//! streams have ended.

// foldhash: a per-process seeded hash, several times cheaper than SipHash per lookup.
use foldhash::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::client::{spawn_reaper, Connect, PoolKey, UpstreamError};
use super::RequestBody;

#[derive(Default)]
pub struct H2Pool {
    connections: Arc<Mutex<HashMap<PoolKey, Shared>>>,
    reaper: OnceLock<()>,
}

struct Shared {
    sender: SendRequest<RequestBody>,
    streams: u32,
    last_used: Instant,
    idle_timeout: Duration,
}

impl H2Pool {
    pub async fn send(
        &self,
        key: PoolKey,
        connect: Connect<'_>,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = match self.live(key, &connect) {
            Some(sender) => sender,
            // Boxed: the connect states are large and rare (see `H1Pool::send`).
            None => Box::pin(self.connect(key, &connect)).await?,
        };
        sender.ready().await.map_err(|_| UpstreamError::Reset)?;
        sender
            .send_request(req)
            .await
            .map_err(|_| UpstreamError::Reset)
    }

    /// The key's open connection, counting the stream about to start on it.
    fn live(&self, key: PoolKey, connect: &Connect<'_>) -> Option<SendRequest<RequestBody>> {
        let mut connections = self.connections.lock().ok()?;
        let shared = connections.get_mut(&key)?;
        let spec = &connect.transport.spec;
        let now = Instant::now();
        let spent = spec.max_requests_per_connection > 0
            && shared.streams >= spec.max_requests_per_connection;
        if shared.sender.is_closed() || spent || now - shared.last_used >= spec.idle_timeout {
            connections.remove(&key);
            return None;
        }
        shared.streams += 1;
        shared.last_used = now;
        Some(shared.sender.clone())
    }

    async fn connect(
        &self,
        key: PoolKey,
        connect: &Connect<'_>,
    ) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let io = connect.open(key.addr).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|_| UpstreamError::Reset)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(addr = %key.addr, error = %e, "upstream HTTP/2 connection ended");
            }
        });
        if let Ok(mut connections) = self.connections.lock() {
            let shared = Shared {
                sender: sender.clone(),
                streams: 1,
                last_used: Instant::now(),
                idle_timeout: connect.transport.spec.idle_timeout,
            };
            connections.insert(key, shared);
        }
        self.reaper.get_or_init(|| {
            spawn_reaper(Arc::downgrade(&self.connections), |map, now| {
                map.retain(|_, c| !c.sender.is_closed() && now - c.last_used < c.idle_timeout);
            });
        });
        Ok(sender)
    }
}
