//! One task ends every outgoing call whose deadline passes, instead of a
//! timer per call: a call registers its deadline in the pending table, and
//! the task sleeps until the earliest one. Calls that are answered in time
//! (nearly all) never touch a timer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Inner;
use super::handler::lock;
use crate::error::Error;

/// What the deadline task sends a call whose deadline passed; the call turns
/// it into its own `Timeout` error, with its peer and function.
pub(crate) fn expired_marker() -> Error {
    Error::Timeout {
        peer: String::new(),
        function: String::new(),
        after: Duration::ZERO,
    }
}

impl Inner {
    /// Tells the deadline task that an earlier deadline was registered,
    /// starting the task on first use.
    pub(crate) fn deadlines_changed(self: &Arc<Self>) {
        if !self.deadline_task.swap(true, Ordering::SeqCst) {
            self.spawn(expire_calls(self.clone()));
        }
        self.deadline_wake.notify_one();
    }
}

/// Sleeps until the earliest deadline of a pending call, fails the calls
/// that are due, and goes on until shutdown.
async fn expire_calls(inner: Arc<Inner>) {
    loop {
        let next = lock(&inner.pending).next_deadline();
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            // A call with an earlier deadline: look again.
            () = inner.deadline_wake.notified() => continue,
            () = due => {}
        }
        let expired = lock(&inner.pending).expire(tokio::time::Instant::now());
        for (_, waiter) in expired {
            let _ = waiter.send(Err(expired_marker()));
        }
    }
}
