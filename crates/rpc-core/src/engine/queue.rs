//! [`Queue`]: calls waiting for their owner, from `define_queue`.

use std::fmt;

use tokio::sync::mpsc;

use super::handler::Responder;

/// Calls to a function defined with [`Rpc::define_queue`](crate::Rpc::define_queue),
/// waiting to be taken. Each item is the call's [`Responder`] and its
/// arguments; answer through the responder.
///
/// Dropping the queue answers the calls still in it with an error, and
/// later calls too.
pub struct Queue<A, R> {
    rx: mpsc::Receiver<(Responder<R>, A)>,
    name: String,
}

impl<A, R> Queue<A, R> {
    pub(crate) fn new(rx: mpsc::Receiver<(Responder<R>, A)>, name: &str) -> Self {
        Self {
            rx,
            name: name.to_owned(),
        }
    }

    /// Waits for the next call. `None` once the engine has shut down and the
    /// queue is empty.
    pub async fn recv(&mut self) -> Option<(Responder<R>, A)> {
        self.rx.recv().await
    }

    /// Waits for at least one call, then takes every call already waiting,
    /// up to `max` (at least 1). Empty once the engine has shut down.
    pub async fn recv_batch(&mut self, max: usize) -> Vec<(Responder<R>, A)> {
        let mut batch = Vec::new();
        self.rx.recv_many(&mut batch, max.max(1)).await;
        batch
    }

    /// Takes a call if one is waiting.
    pub fn try_recv(&mut self) -> Option<(Responder<R>, A)> {
        self.rx.try_recv().ok()
    }

    /// Blocks the thread until the next call. For plain threads only: never
    /// call it from async code.
    pub fn recv_blocking(&mut self) -> Option<(Responder<R>, A)> {
        self.rx.blocking_recv()
    }

    /// The number of calls waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no call is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<A, R> fmt::Debug for Queue<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("waiting", &self.rx.len())
            .finish()
    }
}
