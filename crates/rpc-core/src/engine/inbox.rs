//! A connection's receiving side, shared by its reader task and by the
//! callers that wait for an answer outside any task.
//!
//! Normally the reader task receives every frame. A caller in a `block_on`
//! (or any other caller outside a task) can do better on a fast host-local
//! transport: a current-thread runtime polls such a caller only after it
//! has polled its I/O driver, a system call that costs as much as a whole
//! round trip over shared memory. So while it is the connection's only
//! waiting call, such a caller receives by itself, in place, for a short
//! bounded spin ([`Config::caller_spin`](crate::Config::caller_spin)): it
//! takes the stream from the reader (stopping the reader's receive, which the
//! transport contract makes lossless), looks at it with
//! [`FrameStream::try_recv`] until its answer comes, and hands the stream
//! back. A ping-pong from `block_on` then never leaves the caller's poll.
//!
//! A caller spins only if the connection's previous lone caller was polled
//! with the same waker, that is, when calls follow one another in a loop.
//! Siblings with wakers of their own (the futures of a `FuturesUnordered`)
//! never spin: a spin in one's first poll would hold the others' requests
//! back until its answer came. Siblings that share one waker (the branches
//! of a `join!`) are not told apart: the first of them may spin, so that
//! they take a round trip each instead of one in all.
//!
//! Invariants:
//!
//! - Frames are handled in the order they arrived. A caller handles answers
//!   (responses and errors) only; anything else it receives, and every
//!   frame after it, waits in the stash for the reader, which empties the
//!   stash before it receives again.
//! - The lock is held only within a poll, a look or a bookkeeping step,
//!   never across an await; a caller's look never waits for it (it looks
//!   again later).
//! - While a caller spins, the reader leaves the stream alone: it waits
//!   until the caller is done or stashes a frame for it.
//! - Only streams whose `try_recv` sees what the peer sent
//!   ([`FrameStream::try_recv_is_live`]) are ever driven by a caller.
//! - After a caller drove the stream it wakes the reader, so that receiving
//!   goes on once the caller is done.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::handler::lock;
use crate::error::TransportError;
use crate::transport::{FrameStream, Spinner};
use crate::wire::{Frame, FrameKind};

/// What one receive gives.
pub(crate) type Received = Result<Option<Frame>, TransportError>;

/// A receive under way: it owns the stream and hands it back when it ends,
/// with what it received, or with `None` when it was stopped.
type Recv = Pin<Box<dyn Future<Output = (Box<dyn FrameStream>, Option<Received>)> + Send>>;

/// Looks at the stream between two looks at the clock, while a caller spins.
const LOOKS_PER_CLOCK: u32 = 16;

/// The receiving side of one connection.
pub(crate) struct Inbox {
    state: Mutex<State>,
    /// Whether callers may receive in place (see the module docs).
    drivable: bool,
    /// Whether the stream's `try_recv` sees the peer's frames by itself
    /// ([`FrameStream::try_recv_is_live`]): a memory transport.
    live: bool,
    /// How long the reader may spin on `try_recv` before it receives
    /// ([`FrameStream::reader_spin`]; zero unless `live`).
    reader_spin: Duration,
    /// Spins in place that got the caller its answer.
    hits: AtomicU64,
}

struct State {
    /// The stream, when no receive is under way (and the inbox is open).
    stream: Option<Box<dyn FrameStream>>,
    /// The reader's receive under way.
    recv: Option<Recv>,
    /// Stops the receive under way at its next poll. One flag serves every
    /// receive: it is set and reset only under the lock, where the receive
    /// is polled too, and only one receive is ever under way.
    stop: Arc<AtomicBool>,
    /// The reader's last receive, finished: freed at the reader's next look
    /// rather than while the frame it gave waits to be handled.
    spent: Option<Recv>,
    /// The reader task's waker: every receive is polled with it, whoever
    /// polls, so that the transport wakes the reader.
    reader: Waker,
    /// Received by a caller, for the reader to handle, in order.
    stash: VecDeque<Received>,
    /// When callers should spin in place.
    spinner: Spinner,
    /// The waker the last lone caller was polled with.
    last_caller: Option<Waker>,
    /// Whether a caller spins in place now (between `begin_spin` and
    /// `end_spin`): the reader then leaves the stream alone.
    caller_spinning: bool,
}

/// What a caller's look at the stream found.
enum Look {
    /// An answer, for the pending table.
    Answer(Frame),
    /// Nothing yet.
    Nothing,
    /// Something the reader must handle arrived (or the inbox is closed):
    /// stop receiving in place.
    Stop,
}

impl Inbox {
    /// The inbox of `stream`; callers spin in place up to `caller_spin`.
    pub(crate) fn new(stream: Box<dyn FrameStream>, caller_spin: Duration) -> Self {
        let live = stream.try_recv_is_live();
        let reader_spin = if live {
            stream.reader_spin()
        } else {
            Duration::ZERO
        };
        let drivable = live && !caller_spin.is_zero();
        Self {
            state: Mutex::new(State {
                stream: Some(stream),
                recv: None,
                stop: Arc::new(AtomicBool::new(false)),
                spent: None,
                reader: Waker::noop().clone(),
                stash: VecDeque::new(),
                spinner: Spinner::new(caller_spin),
                last_caller: None,
                caller_spinning: false,
            }),
            drivable,
            live,
            reader_spin,
            hits: AtomicU64::new(0),
        }
    }

    /// The stream, for the reader to own, if no caller may ever receive in
    /// place on it (the transport does not allow it, or `caller_spin` is
    /// zero): its receives then go through no lock. `None` otherwise, and
    /// on every later call.
    pub(crate) fn take_unless_drivable(&self) -> Option<Box<dyn FrameStream>> {
        if self.drivable {
            return None;
        }
        lock(&self.state).stream.take()
    }

    /// Whether the stream's `try_recv` sees the peer's frames by itself
    /// (shared memory, the in-process transport), whether or not callers
    /// may receive in place.
    pub(crate) fn is_live(&self) -> bool {
        self.live
    }

    /// How long the reader may spin on `try_recv` before it receives (see
    /// [`FrameStream::reader_spin`]).
    pub(crate) fn reader_spin(&self) -> Duration {
        self.reader_spin
    }

    /// How many callers got their answer while spinning in place.
    pub(crate) fn answered_in_place(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The reader's next frame: a stashed one, or one from a receive.
    /// `Err(Closed)` once the inbox is closed. While a caller spins in
    /// place, the reader waits (the caller wakes it when done, or when it
    /// stashes a frame), instead of fighting it for the stream.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Received> {
        let mut s = lock(&self.state);
        if !s.reader.will_wake(cx.waker()) {
            s.reader = cx.waker().clone();
        }
        if let Some(r) = s.stash.pop_front() {
            return Poll::Ready(r);
        }
        if s.caller_spinning {
            return Poll::Pending;
        }
        loop {
            let mut recv = match s.recv.take() {
                Some(r) => r,
                None => {
                    let Some(stream) = s.stream.take() else {
                        return Poll::Ready(Err(TransportError::Closed));
                    };
                    s.stop.store(false, Ordering::Relaxed);
                    start_recv(stream, s.stop.clone())
                }
            };
            match recv.as_mut().poll(cx) {
                Poll::Ready((stream, got)) => {
                    s.stream = Some(stream);
                    s.spent = Some(recv);
                    match got {
                        Some(got) => return Poll::Ready(got),
                        // A stopped receive (which only a caller does, after
                        // taking it out): start a new one.
                        None => continue,
                    }
                }
                Poll::Pending => {
                    s.recv = Some(recv);
                    return Poll::Pending;
                }
            }
        }
    }

    /// The reader's next frame if it is there already (a stashed one, or
    /// [`FrameStream::try_recv`]); `None` while a caller spins in place,
    /// whose stream the reader leaves alone.
    pub(crate) fn try_next(&self) -> Option<Received> {
        let mut s = lock(&self.state);
        s.spent = None;
        if let Some(r) = s.stash.pop_front() {
            return Some(r);
        }
        if s.caller_spinning {
            return None;
        }
        s.stream.as_mut()?.try_recv()
    }

    /// Whether a lone caller polled with `waker` should spin in place for
    /// its answer now.
    ///
    /// Only if the previous lone caller on this connection was polled with
    /// the same waker: then calls follow one another (a loop awaiting each
    /// call), and a spin holds nothing back. A new waker may mean siblings
    /// (the futures of a `FuturesUnordered`, each with its own waker) that
    /// are about to send their calls, which a spin in this poll would hold
    /// back until this answer came. Then the adaptive policy of [`Spinner`]:
    /// spins that ended in vain make the next callers wait without one.
    pub(crate) fn begin_spin(&self, waker: &Waker) -> bool {
        if !self.drivable {
            return false;
        }
        let mut s = lock(&self.state);
        // The stored clone keeps the waker's task alive, so a new task
        // cannot reuse its address and pass for it.
        if !s.last_caller.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.last_caller = Some(waker.clone());
            return false;
        }
        let spin = s.spinner.begin();
        s.caller_spinning = spin;
        spin
    }

    /// Records how a caller's spin ended: `hit` when its answer came,
    /// `received` when the caller received that answer itself. The reader
    /// receives again.
    pub(crate) fn end_spin(&self, hit: bool, received: bool) {
        if received {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = lock(&self.state);
        s.spinner.spun(hit);
        s.caller_spinning = false;
        s.reader.wake_by_ref();
    }

    /// A caller's look at the stream. Never waits (a busy lock is
    /// `Nothing`).
    fn look(&self) -> Look {
        let mut s = match self.state.try_lock() {
            Ok(s) => s,
            Err(TryLockError::WouldBlock) => return Look::Nothing,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if !s.stash.is_empty() {
            return Look::Stop;
        }
        if let Some(mut recv) = s.recv.take() {
            // Stop the reader's receive and take the stream back: the
            // receive sees the flag before it looks at the stream.
            s.stop.store(true, Ordering::Relaxed);
            let reader = s.reader.clone();
            match recv.as_mut().poll(&mut Context::from_waker(&reader)) {
                Poll::Ready((stream, got)) => {
                    s.stream = Some(stream);
                    if let Some(got) = got {
                        return s.sort(got);
                    }
                }
                Poll::Pending => {
                    s.recv = Some(recv);
                    return Look::Nothing;
                }
            }
        }
        let Some(stream) = s.stream.as_mut() else {
            return Look::Stop;
        };
        match stream.try_recv() {
            None => Look::Nothing,
            Some(got) => s.sort(got),
        }
    }

    /// Spins in place until `done` says the caller's answer is in, handing
    /// every answer that arrives to `answer`, for at most `budget`. `true`
    /// when `done`.
    pub(crate) fn spin_for(
        &self,
        budget: Duration,
        mut answer: impl FnMut(Frame),
        mut done: impl FnMut() -> bool,
    ) -> bool {
        let start = Instant::now();
        let mut looks = 0u32;
        loop {
            if done() {
                return true;
            }
            match self.look() {
                // Others' answers count against the budget too: a caller
                // whose own answer never comes stops in time even while
                // the connection is busy.
                Look::Answer(frame) => answer(frame),
                Look::Stop => return done(),
                Look::Nothing => std::hint::spin_loop(),
            }
            looks = looks.wrapping_add(1);
            if looks.is_multiple_of(LOOKS_PER_CLOCK) && start.elapsed() >= budget {
                return done();
            }
        }
    }

    /// Ends receiving: drops the stream (and any receive under way) and
    /// whatever the reader had not handled.
    pub(crate) fn close(&self) {
        let (stream, recv, spent, stash) = {
            let mut s = lock(&self.state);
            (
                s.stream.take(),
                s.recv.take(),
                s.spent.take(),
                std::mem::take(&mut s.stash),
            )
        };
        // Dropped outside the lock: a transport's drop may do I/O.
        drop((recv, spent, stream, stash));
    }
}

impl State {
    /// Sorts what a caller received: an answer it handles; anything else
    /// goes to the reader, and the caller stops.
    fn sort(&mut self, got: Received) -> Look {
        match got {
            Ok(Some(frame)) if matches!(frame.kind, FrameKind::Response | FrameKind::Error) => {
                Look::Answer(frame)
            }
            other => {
                self.stash.push_back(other);
                self.reader.wake_by_ref();
                Look::Stop
            }
        }
    }
}

/// A receive that owns `stream`; setting `flag` ends it at its next poll
/// with the stream and `None`, losing nothing (receives are cancel safe).
fn start_recv(mut stream: Box<dyn FrameStream>, flag: Arc<AtomicBool>) -> Recv {
    Box::pin(async move {
        let got = {
            let mut inner = stream.recv();
            std::future::poll_fn(|cx| {
                if flag.load(Ordering::Relaxed) {
                    return Poll::Ready(None);
                }
                inner.as_mut().poll(cx).map(Some)
            })
            .await
        };
        (stream, got)
    })
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("drivable", &self.drivable)
            .finish_non_exhaustive()
    }
}
