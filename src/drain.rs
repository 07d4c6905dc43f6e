//! Graceful drain: the process-wide "stop taking new work" signal, and a future each downstream
//! connection watches to learn of it.
//!
//! A connection's task polls its watch on every wake-up, so the watch must cost almost nothing
//! while no drain is under way: after registering its waker once (one lock per connection), it
//! only loads an atomic flag. `start` sets the flag, then wakes every registered connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

#[derive(Default)]
pub struct DrainSignal {
    draining: AtomicBool,
    notify: Notify,
}

impl DrainSignal {
    /// Starts the drain (idempotent): every connection's [`Drained`] completes.
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Completes once the drain has started (at once if it already has).
    pub fn drained(&self) -> Drained<'_> {
        Drained {
            signal: self,
            notified: self.notify.notified(),
            registered: false,
        }
    }
}

pin_project_lite::pin_project! {
    /// See [`DrainSignal::drained`].
    pub struct Drained<'a> {
        signal: &'a DrainSignal,
        #[pin]
        notified: Notified<'a>,
        registered: bool,
    }
}

impl Future for Drained<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.signal.is_draining() {
            return Poll::Ready(());
        }
        if !*this.registered {
            // Registers this task's waker with the Notify; later polls need not touch it (and
            // its lock), because `start` sets the flag before waking.
            *this.registered = true;
            if this.notified.poll(cx).is_ready() || this.signal.is_draining() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn wakes_every_waiting_connection_and_completes_at_once_afterwards() {
        let signal = Arc::new(DrainSignal::default());
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let signal = signal.clone();
                tokio::spawn(async move { signal.drained().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(waiting.iter().all(|t| !t.is_finished()));
        signal.start();
        for task in waiting {
            tokio::time::timeout(std::time::Duration::from_secs(5), task)
                .await
                .expect("a waiting connection learns of the drain")
                .unwrap();
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.drained())
            .await
            .expect("a connection that starts during the drain sees it at once");
    }
}
