//! [`Signal`]: a one-shot flag with one waiter, cheap to check and to wait
//! on (an atomic load and a waker registration, no lock).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Fires once; one task at a time may wait for it.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Fires the signal and wakes the waiter, if any. Idempotent.
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Whether the signal has fired.
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Resolves once the signal has fired. Only one task may wait at a time:
    /// a second waiter replaces the first one's waker.
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            // Register before checking, so a `fire` in between is not missed.
            self.waker.register(cx.waker());
            if self.is_fired() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_a_waiter_once_fired() {
        let signal = std::sync::Arc::new(Signal::default());
        assert!(!signal.is_fired());
        let s2 = signal.clone();
        let waiter = tokio::spawn(async move { s2.wait().await });
        tokio::task::yield_now().await;
        signal.fire();
        waiter.await.unwrap();
        assert!(signal.is_fired());
        // Waiting on a fired signal returns at once.
        signal.wait().await;
    }
}
