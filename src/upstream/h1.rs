//! HTTP/1.1 upstream connections, kept alive per endpoint. The endpoint is already chosen by the
//! load balancer, so the pool is keyed by its address alone, and a request's URI stays in the
//! origin form it is sent in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::client::UpstreamError;
use super::RequestBody;

/// Idle connections kept per endpoint; more are closed when their response ends.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

#[derive(Default)]
pub struct H1Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<RequestBody>>>>,
}

impl H1Pool {
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // The upstream may have closed a pooled connection while it sat idle; such a request
        // comes back unsent and goes out on the next connection (as hyper-util's client does).
        while let Some(mut sender) = self.checkout(addr) {
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(self.checkin(addr, sender, response)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Reset),
                },
            }
        }
        let mut sender = connect(addr).await?;
        match sender.try_send_request(req).await {
            Ok(response) => Ok(self.checkin(addr, sender, response)),
            Err(_) => Err(UpstreamError::Reset),
        }
    }

    /// A connection ready for a request (LIFO, to keep few connections warm); closed ones go.
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&addr)?;
        list.retain(|s| !s.is_closed());
        let i = list.iter().rposition(SendRequest::is_ready)?;
        Some(list.swap_remove(i))
    }

    /// Back to the pool at response headers; it is ready again once the body has ended.
    fn checkin(
        &self,
        addr: SocketAddr,
        sender: SendRequest<RequestBody>,
        response: Response<Incoming>,
    ) -> Response<Incoming> {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(addr).or_default();
            if list.len() < MAX_IDLE_PER_ENDPOINT {
                list.push(sender);
            }
        }
        response
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<RequestBody>, UpstreamError> {
    let stream = super::client::connect(addr).await?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| UpstreamError::Reset)?;
    tokio::spawn(async move {
        // Upgrades (WebSocket) hand the connection over after a 101.
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream HTTP/1.1 connection ended");
        }
    });
    Ok(sender)
}
