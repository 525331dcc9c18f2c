//! The outbox of one connection: frames waiting to be written, and who
//! writes them.
//!
//! There is no writer task. Whoever queues a frame while nobody is writing
//! becomes the writer: it feeds every queued frame to the sink and flushes,
//! right there, in its own task or thread. That saves a task switch per frame
//! on the latency path (a caller writes its own request; the reader writes
//! the answers of handlers that finished inline).
//!
//! The writing itself is a `'static` future that owns the sink. It is polled
//! once in place; if the socket is full and it has to wait, it moves to a
//! task of its own and finishes there. So a writer that is cancelled or that
//! runs on a plain thread never leaves a frame half written.
//!
//! Who writes is decided by one atomic flag, `writing`: set it from `false`
//! to `true` and you are the writer until you set it back. A writer, before
//! it lets go, looks at the queue once more after clearing the flag, so that
//! a frame queued by someone who saw the flag still set is never stranded.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use tokio_util::task::TaskTracker;

use super::handler::lock;
use super::signal::Signal;
use crate::transport::FrameSink;
use crate::wire::Frame;

/// Whether the `n`th frame of a burst (counting from 1) ends a chunk to
/// write at once, the first chunk being `first` frames: `first`,
/// `2 × first`, `4 × first`, … — the first chunk early, so that the peer
/// starts working, and the later ones doubling, so that a long burst costs
/// few writes.
pub(crate) fn flush_point(n: usize, first: usize) -> bool {
    n >= first && n.is_multiple_of(first) && (n / first).is_power_of_two()
}

/// Frames waiting for a connection's sink.
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Frame>>,
    /// Whether someone is the writer (owns the sink).
    writing: AtomicBool,
    /// Frames queued by `push_deferred` since its task last ran.
    burst: AtomicUsize,
    /// The sink's [`FrameSink::first_write`]: bursts are written in chunks
    /// of this many frames, then twice as many, and so on.
    first_write: usize,
    /// Set once the connection is closing: after the queue drains, the writer
    /// closes the sink.
    closing: AtomicBool,
    /// The sink, when no writer holds it; `None` once closed or failed.
    sink: Mutex<Option<Box<dyn FrameSink>>>,
    /// Fired when the sink is closed or failed.
    closed: Arc<Signal>,
    runtime: tokio::runtime::Handle,
    tracker: TaskTracker,
}

impl Outbox {
    pub(crate) fn new(
        sink: Box<dyn FrameSink>,
        closed: Arc<Signal>,
        runtime: tokio::runtime::Handle,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        let first_write = sink.first_write().max(1);
        Arc::new(Self {
            queue: Mutex::new(VecDeque::new()),
            writing: AtomicBool::new(false),
            burst: AtomicUsize::new(0),
            first_write,
            closing: AtomicBool::new(false),
            sink: Mutex::new(Some(sink)),
            closed,
            runtime,
            tracker,
        })
    }

    /// Writes a frame out now if nobody is writing, else queues it for the
    /// writer.
    pub(crate) fn push(self: &Arc<Self>, frame: Frame) {
        if !self.writing.load(Ordering::Relaxed) && self.try_become_writer() {
            // The writer now: the frame goes straight to the sink unless
            // others queued frames before it (they lost the role to us).
            let mut queue = lock(&self.queue);
            if queue.is_empty() {
                drop(queue);
                self.write_owned_with(Some(frame));
            } else {
                queue.push_back(frame);
                drop(queue);
                self.write_owned();
            }
            return;
        }
        // Queued before the second try, so that a writer letting go
        // meanwhile finds it (see the module docs).
        lock(&self.queue).push_back(frame);
        if self.try_become_writer() {
            self.write_owned();
        }
    }

    /// Queues a frame to be written soon by a task rather than now: under
    /// load, the frames queued until that task runs go out together. A long
    /// burst is written in growing chunks (see [`flush_point`]), so that
    /// the peer starts on its first frames while the rest are being made.
    pub(crate) fn push_deferred(self: &Arc<Self>, frame: Frame) {
        lock(&self.queue).push_back(frame);
        let burst = self.burst.fetch_add(1, Ordering::SeqCst) + 1;
        if burst == 1 {
            // The first frame of a burst: a task writes the burst once the
            // caller is done making it. (A writer that is busy meanwhile
            // writes what is queued before it lets go.)
            let outbox = self.clone();
            self.tracker.spawn_on(
                async move {
                    outbox.burst.store(0, Ordering::SeqCst);
                    if outbox.try_become_writer() {
                        outbox.write_owned();
                    }
                },
                &self.runtime,
            );
        } else if self.flush_point(burst) && self.try_become_writer() {
            self.write_owned();
        }
    }

    /// Whether the `n`th frame of a burst ends a chunk to write at once
    /// (see [`flush_point`]).
    pub(crate) fn flush_point(&self, n: usize) -> bool {
        flush_point(n, self.first_write)
    }

    /// Whether every frame queued so far has been handed to the sink:
    /// nobody is writing, and nothing waits for a writer (such as a burst
    /// whose task has not run yet).
    pub(crate) fn is_idle(&self) -> bool {
        !self.writing.load(Ordering::SeqCst) && lock(&self.queue).is_empty()
    }

    /// Becomes the writer if nobody is. The reader takes the role before it
    /// dispatches a batch of requests, so that answers given inline are
    /// written once, together, after it.
    pub(crate) fn try_become_writer(&self) -> bool {
        !self.writing.swap(true, Ordering::SeqCst)
    }

    /// Ends a stretch as the writer: lets go if nothing was queued meanwhile,
    /// else writes it out.
    pub(crate) fn finish_owned(self: &Arc<Self>) {
        if lock(&self.queue).is_empty() {
            self.writing.store(false, Ordering::SeqCst);
            if lock(&self.queue).is_empty() || !self.try_become_writer() {
                return;
            }
        }
        self.write_owned();
    }

    /// Writes out the queue; the caller must be the writer. Returns at once
    /// if the writing completes without waiting, else hands it to a task.
    pub(crate) fn write_owned(self: &Arc<Self>) {
        self.write_owned_with(None);
    }

    /// [`write_owned`](Self::write_owned), with `first` to write before
    /// the queue.
    fn write_owned_with(self: &Arc<Self>, first: Option<Frame>) {
        if self.try_write_now(first) {
            return;
        }
        let mut writing: Pin<Box<dyn Future<Output = ()> + Send>> =
            Box::pin(self.clone().write_queue());
        let mut cx = Context::from_waker(Waker::noop());
        if writing.as_mut().poll(&mut cx).is_pending() {
            // The sink is waiting for the socket. The next poll, in the task,
            // registers the task's waker in place of the no-op one.
            self.tracker.spawn_on(writing, &self.runtime);
        }
    }

    /// Writes `first`, then the queue, through the sink's non-waiting
    /// methods, as `write_queue` would; the caller must be the writer.
    /// `true` when done (the role is let go or handed on as `write_queue`
    /// does), `false` when the sink would have to wait: the caller still
    /// holds the role, and what is left stays queued (in the outbox or the
    /// sink) for `write_queue`. Saves building a future per write.
    fn try_write_now(&self, mut first: Option<Frame>) -> bool {
        let requeue = |first: Option<Frame>| {
            if let Some(frame) = first {
                lock(&self.queue).push_front(frame);
            }
            false
        };
        if self.closing.load(Ordering::SeqCst) {
            return requeue(first);
        }
        loop {
            let mut slot = lock(&self.sink);
            let Some(sink) = slot.as_mut() else {
                return requeue(first);
            };
            let outcome = loop {
                let next = first.take().or_else(|| lock(&self.queue).pop_front());
                match next {
                    Some(frame) => match sink.try_feed(frame) {
                        Ok(None) => {}
                        Ok(Some(frame)) => {
                            lock(&self.queue).push_front(frame);
                            return false;
                        }
                        Err(e) => break Err(e),
                    },
                    None => break sink.try_flush(),
                }
            };
            drop(slot);
            match outcome {
                // Closing began meanwhile: `write_queue` (which the caller
                // starts, still the writer) writes the rest and closes.
                Ok(true) if self.closing.load(Ordering::SeqCst) => return false,
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    tracing::debug!("writing failed: {e}");
                    lock(&self.queue).clear();
                    self.closed.fire();
                    self.writing.store(false, Ordering::SeqCst);
                    return true;
                }
            }
            self.writing.store(false, Ordering::SeqCst);
            if lock(&self.queue).is_empty() || !self.try_become_writer() {
                return true;
            }
        }
    }

    /// Closes the connection's sending side once everything queued, then
    /// `last`, is written.
    pub(crate) fn close_after(self: &Arc<Self>, last: Frame) {
        self.closing.store(true, Ordering::SeqCst);
        self.push(last);
    }

    /// The writer's loop: feed, flush, let go, and look again.
    async fn write_queue(self: Arc<Self>) {
        loop {
            let Some(mut sink) = lock(&self.sink).take() else {
                // Closed or failed: what is queued can never be sent.
                lock(&self.queue).clear();
                self.writing.store(false, Ordering::SeqCst);
                return;
            };
            if let Err(e) = self.feed_all(&mut *sink).await {
                tracing::debug!("writing failed: {e}");
                lock(&self.queue).clear();
                self.closed.fire();
                self.writing.store(false, Ordering::SeqCst);
                return;
            }
            if self.closing.load(Ordering::SeqCst) && lock(&self.queue).is_empty() {
                if let Err(e) = sink.close().await {
                    tracing::debug!("closing failed: {e}");
                }
                self.closed.fire();
                self.writing.store(false, Ordering::SeqCst);
                return;
            }
            *lock(&self.sink) = Some(sink);
            self.writing.store(false, Ordering::SeqCst);
            // A frame queued while we still held the role is ours to write,
            // unless someone else has taken the role since.
            if lock(&self.queue).is_empty() || !self.try_become_writer() {
                return;
            }
        }
    }

    async fn feed_all(&self, sink: &mut dyn FrameSink) -> Result<(), crate::TransportError> {
        loop {
            let next = lock(&self.queue).pop_front();
            match next {
                Some(frame) => sink.feed(frame).await?,
                None => return sink.flush().await,
            }
        }
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &lock(&self.queue).len())
            .field("writing", &self.writing.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::flush_point;

    #[test]
    fn bursts_are_written_in_doubling_chunks() {
        let points = |first| {
            (1..=600)
                .filter(|&n| flush_point(n, first))
                .collect::<Vec<_>>()
        };
        assert_eq!(points(16), [16, 32, 64, 128, 256, 512]);
        assert_eq!(points(32), [32, 64, 128, 256, 512]);
        assert_eq!(points(24), [24, 48, 96, 192, 384]);
        assert_eq!(points(1)[..4], [1, 2, 4, 8]);
    }
}
