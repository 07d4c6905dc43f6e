//! Envoy's circuit breakers for one cluster, from DestinationRule `connectionPool` (reference
//! §3.5): requests beyond `maxConnections` wait (at most `http1MaxPendingRequests` of them),
//! active requests stop at `http2MaxRequests`, concurrent retries at `maxRetries`. Overflow is
//! answered 503 `UO` at once. Unset limits are unlimited, as Istio sets them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits a DestinationRule sets; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Limits {
    pub max_connections: Option<u32>,
    pub max_pending: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

#[derive(Debug)]
pub struct Breaker {
    limits: Limits,
    /// One permit per upstream connection in use (HTTP/1.1 and TCP: one exchange each).
    connections: Option<Arc<Semaphore>>,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// The limit that overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A request or stream admitted by the breaker; releases its share when dropped.
#[derive(Debug)]
pub struct Admission {
    /// The breaker whose request count this admission holds; `None` when nothing limits them.
    breaker: Option<Arc<Breaker>>,
    _connection: Option<OwnedSemaphorePermit>,
}

/// A retry in flight, counted against `maxRetries` until dropped.
#[derive(Debug)]
pub struct RetryAdmission(Arc<Breaker>);

impl Breaker {
    /// `connection_limited`: whether requests hold a connection each (HTTP/1.1, TCP), so that
    /// `maxConnections` bounds them; HTTP/2 multiplexes and is bounded by `maxRequests` only.
    pub fn new(limits: Limits, connection_limited: bool) -> Self {
        let connections = limits
            .max_connections
            .filter(|_| connection_limited)
            .map(|n| Arc::new(Semaphore::new(n as usize)));
        Breaker {
            limits,
            connections,
            pending: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            retries: AtomicU32::new(0),
        }
    }

    /// Admits a request or stream, waiting for a connection if the pending queue has room.
    pub async fn admit(self: &Arc<Self>) -> Result<Admission, Overflow> {
        if self.limits.max_requests.is_none() && self.connections.is_none() {
            // Istio's default: nothing to count, no shared counter touched per request.
            return Ok(Admission {
                breaker: None,
                _connection: None,
            });
        }
        let requests = Counted::take(&self.requests, self.limits.max_requests).ok_or(Overflow)?;
        let connection = match &self.connections {
            None => None,
            Some(semaphore) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let waiting =
                        Counted::take(&self.pending, self.limits.max_pending).ok_or(Overflow)?;
                    let permit = semaphore
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| Overflow)?;
                    drop(waiting);
                    Some(permit)
                }
            },
        };
        requests.keep();
        Ok(Admission {
            breaker: Some(self.clone()),
            _connection: connection,
        })
    }

    /// Admits one more retry, unless `maxRetries` are already in flight.
    pub fn admit_retry(self: &Arc<Self>) -> Option<RetryAdmission> {
        Counted::take(&self.retries, self.limits.max_retries)?.keep();
        Some(RetryAdmission(self.clone()))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(breaker) = &self.breaker {
            breaker.requests.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for RetryAdmission {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One unit of a counter under a limit, given back on drop unless kept.
struct Counted<'a>(Option<&'a AtomicU32>);

impl<'a> Counted<'a> {
    fn take(counter: &'a AtomicU32, limit: Option<u32>) -> Option<Self> {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        if limit.is_some_and(|max| before >= max) {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Counted(Some(counter)))
    }

    /// The unit stays taken; its owner gives it back.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Some(counter) = self.0 {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(limits: Limits) -> Arc<Breaker> {
        Arc::new(Breaker::new(limits, true))
    }

    #[tokio::test]
    async fn one_connection_one_pending_then_overflow() {
        let b = breaker(Limits {
            max_connections: Some(1),
            max_pending: Some(1),
            ..Default::default()
        });
        let first = b.admit().await.expect("a connection");
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.admit().await.map(|_| ()) }
        });
        // Let the second request start waiting, then a third finds the queue full.
        for _ in 0..100 {
            if b.pending.load(Ordering::Acquire) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(b.admit().await.err(), Some(Overflow));
        drop(first);
        assert!(
            waiting.await.unwrap().is_ok(),
            "the waiting request gets the connection"
        );
        assert_eq!(b.requests.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn max_requests_and_retries_bound_what_is_in_flight() {
        let b = breaker(Limits {
            max_requests: Some(2),
            max_retries: Some(1),
            ..Default::default()
        });
        let (a, c) = (b.admit().await.unwrap(), b.admit().await.unwrap());
        assert!(b.admit().await.is_err());
        drop((a, c));
        assert!(b.admit().await.is_ok());
        let retry = b.admit_retry().expect("one retry");
        assert!(b.admit_retry().is_none());
        drop(retry);
        assert!(b.admit_retry().is_some());
    }
}
