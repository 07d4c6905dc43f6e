//! HTTP/2 upstreams (ServiceEntry ports of protocol HTTP2 or GRPC): one multiplexed connection
//! per endpoint. hyper-util's pooled client would address requests to the endpoint's `ip:port`,
//! so `:authority` would disagree with the client's Host; here requests keep their authority
//! and the connection is chosen by endpoint address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::client::UpstreamError;
use super::RequestBody;

#[derive(Default)]
pub struct H2Pool {
    connections: Mutex<HashMap<SocketAddr, SendRequest<RequestBody>>>,
}

impl H2Pool {
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = match self.live(addr) {
            Some(sender) => sender,
            None => self.connect(addr).await?,
        };
        sender.ready().await.map_err(|_| UpstreamError::Reset)?;
        sender
            .send_request(req)
            .await
            .map_err(|_| UpstreamError::Reset)
    }

    fn live(&self, addr: SocketAddr) -> Option<SendRequest<RequestBody>> {
        let connections = self.connections.lock().ok()?;
        connections.get(&addr).filter(|s| !s.is_closed()).cloned()
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let stream = super::client::connect(addr).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| UpstreamError::Reset)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection ended");
            }
        });
        if let Ok(mut connections) = self.connections.lock() {
            connections.insert(addr, sender.clone());
        }
        Ok(sender)
    }
}
