//! Making calls: async, callback, blocking and one-way.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::conn::{Arrival, ConnHandle};
use super::control::WireError;
use super::handler::{CallToken, ReplyTo, lock};
use super::route::{Path, resolve};
use super::{Inner, Rpc, Waiter};
use crate::body;
use crate::error::Error;
use crate::pending::remaining;
use crate::wire::{Frame, FrameKind};

/// Options of one call.
///
/// ```
/// use std::time::Duration;
/// let opts = rpc_core::CallOptions::default().provider(2).timeout(Duration::from_millis(500));
/// # drop(opts);
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct CallOptions {
    provider: u16,
    timeout: Option<Duration>,
    canceller: Option<Canceller>,
}

impl CallOptions {
    /// Calls the function registered under this provider id (default 0).
    pub fn provider(mut self, id: u16) -> Self {
        self.provider = id;
        self
    }

    /// Fails the call with [`Error::Timeout`] after this long, instead of the
    /// engine's default timeout. The time counts from the call future's
    /// first poll.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Lets `canceller` cancel the call: once it fires, the call fails with
    /// [`Error::Cancelled`] and the callee is told to stop. One canceller can
    /// serve many calls.
    pub fn cancel_with(mut self, canceller: &Canceller) -> Self {
        self.canceller = Some(canceller.clone());
        self
    }
}

/// Cancels the calls it was given to with [`CallOptions::cancel_with`].
///
/// Dropping a call's future also cancels it; a `Canceller` is for cancelling
/// from elsewhere (another task, a user's "stop" button), or many calls at
/// once.
#[derive(Clone, Debug, Default)]
pub struct Canceller {
    token: tokio_util::sync::CancellationToken,
}

impl Canceller {
    /// A canceller that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every call given this canceller, now and later.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// The result of a call, as a future.
///
/// Dropping it before it resolves cancels the call: the callee is sent a
/// cancel frame, and its handler observes it through
/// [`CallContext::cancelled`](crate::CallContext::cancelled) (an async
/// handler is also dropped).
#[must_use = "a call does nothing unless awaited, and dropping it cancels it"]
pub struct CallFuture<R> {
    state: State,
    peer: Arc<str>,
    function: Arc<str>,
    provider: u16,
    _result: PhantomData<fn() -> R>,
}

/// Where a call is.
///
/// The common call (to a peer already connected, with no canceller and no
/// tracing span) is made at its first poll without any future of its own,
/// and waits as [`InFlight`]: no allocation, and little to move. Every other
/// call runs [`call_raw`] as a boxed future.
enum State {
    /// Not polled yet: the request is made at the first poll, from which
    /// the timeout counts.
    Start(Start),
    /// The request is out.
    InFlight(InFlight),
    /// Any other call.
    Slow(Pin<Box<dyn Future<Output = Result<Frame, Error>> + Send>>),
    /// Resolved (or between two states).
    Done,
}

/// What a call needs to start.
struct Start {
    inner: Arc<Inner>,
    encoded: Result<Encoded, crate::error::CodecError>,
    timeout: Duration,
    cancelled: Option<tokio_util::sync::CancellationToken>,
    span: tracing::Span,
}

/// The arguments, encoded: the body and its attachments.
type Encoded = (Bytes, Vec<Bytes>);

/// A request sent on a connection, its answer awaited; dropping it before
/// the answer cancels the call, as [`CancelOnDrop`] does for `call_raw`.
struct InFlight {
    inner: Arc<Inner>,
    conn: Arc<ConnHandle>,
    id: u64,
    rx: oneshot::Receiver<Result<Frame, Error>>,
    outside_task: bool,
    timeout: Duration,
    /// When the request went out and how large it was, if the transport
    /// policy hears this call's round trip.
    sent: Option<(Instant, u64)>,
    /// Whether the first poll looked for the answer in place already.
    looked: bool,
    /// Whether the call still waits: dropping it then cancels it.
    armed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.calls_waiting.fetch_sub(1, Ordering::Relaxed);
        if self.armed {
            cancel_pending(&self.inner, &self.conn, self.id);
        }
    }
}

impl Start {
    /// Makes the call. Without a wait on the way (a connection is up, no
    /// canceller, no span to enter), as an [`InFlight`]; otherwise as
    /// `call_raw` in a box.
    fn begin(self, peer: &Arc<str>, function: &Arc<str>, provider: u16) -> Result<State, Error> {
        let (body, attachments) = self.encoded?;
        let inner = &self.inner;
        let fast = self.cancelled.is_none()
            && self.span.is_disabled()
            && !inner.is_shut()
            && !inner.is_named(peer);
        let picked = if fast { inner.pick(peer) } else { None };
        let Some((conn, measure)) = picked else {
            let slow = Self {
                encoded: Ok((body, attachments)),
                ..self
            };
            return Ok(State::Slow(slow.slow(peer, function, provider)));
        };
        let deadline = Instant::now() + self.timeout;
        let mut frame = request(provider, function, body, attachments);
        let registered = register(inner, &conn, &frame, measure, deadline)?;
        frame.request_id = registered.id;
        frame.deadline = Some(self.timeout);
        conn.calls_waiting.fetch_add(1, Ordering::Relaxed);
        let call = InFlight {
            inner: self.inner.clone(),
            conn,
            id: registered.id,
            rx: registered.rx,
            outside_task: registered.outside_task,
            timeout: self.timeout,
            sent: registered.sent,
            looked: false,
            armed: true,
        };
        call.conn.send_request(frame);
        Ok(State::InFlight(call))
    }

    /// The call as `call_raw`, boxed: for calls that may wait before their
    /// request goes out, or that carry a canceller or a span.
    fn slow(
        self,
        peer: &Arc<str>,
        function: &Arc<str>,
        provider: u16,
    ) -> Pin<Box<dyn Future<Output = Result<Frame, Error>> + Send>> {
        let Self {
            inner,
            encoded,
            timeout,
            cancelled,
            span,
        } = self;
        let (p, f) = (peer.clone(), function.clone());
        let fut = async move {
            let (body, attachments) = encoded?;
            let deadline = Instant::now() + timeout;
            let frame = request(provider, &f, body, attachments);
            let call = call_raw(&inner, &p, &f, frame, deadline, timeout);
            match cancelled {
                None => call.await,
                // Dropping the call sends the cancel to the callee.
                Some(token) => tokio::select! {
                    biased;
                    () = token.cancelled() => Err(Error::Cancelled),
                    answer = call => answer,
                },
            }
        };
        // A disabled span (no subscriber at debug level) costs every poll
        // an enter and an exit for nothing.
        if span.is_disabled() {
            Box::pin(fut)
        } else {
            Box::pin(fut.instrument(span))
        }
    }
}

impl InFlight {
    /// The answer frame, once it is in: received in place at the first poll
    /// if the call may (see [`wait_in_place`]), else from the reader.
    fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
        peer: &str,
        function: &str,
    ) -> Poll<Result<Frame, Error>> {
        if !self.looked {
            self.looked = true;
            // A clone, as `begin_spin` keeps one to compare: a runtime may
            // lend its own waker under another vtable (tokio's `block_on`
            // does), which `will_wake` would never match.
            if may_wait_in_place(&self.conn, self.outside_task)
                && let Some(outcome) = wait_in_place(
                    &self.inner,
                    &self.conn,
                    self.id,
                    &mut self.rx,
                    &cx.waker().clone(),
                )
            {
                return Poll::Ready(self.finish(outcome, peer, function));
            }
        }
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => Poll::Ready(self.finish(outcome, peer, function)),
        }
    }

    /// What the call returns for what its waiter got, as `call_raw` does.
    fn finish(
        &mut self,
        outcome: Result<Result<Frame, Error>, oneshot::error::RecvError>,
        peer: &str,
        function: &str,
    ) -> Result<Frame, Error> {
        // The waiter is gone from the pending table, whatever it got.
        self.armed = false;
        outcome_of(
            &self.inner,
            &self.conn,
            self.id,
            self.sent,
            outcome,
            || Error::Timeout {
                peer: peer.to_owned(),
                function: function.to_owned(),
                after: self.timeout,
            },
            peer,
        )
    }
}

impl<R: DeserializeOwned> Future for CallFuture<R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let answer = loop {
            match &mut this.state {
                State::Start(_) => {
                    let State::Start(start) = std::mem::replace(&mut this.state, State::Done)
                    else {
                        unreachable!("matched just above")
                    };
                    match start.begin(&this.peer, &this.function, this.provider) {
                        Ok(next) => this.state = next,
                        Err(e) => break Err(e),
                    }
                }
                State::InFlight(call) => {
                    break match call.poll_answer(cx, &this.peer, &this.function) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(answer) => answer,
                    };
                }
                State::Slow(fut) => {
                    break match fut.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(answer) => answer,
                    };
                }
                State::Done => panic!("CallFuture polled after it resolved"),
            }
        };
        // Dropping the call's state now lets its connection go.
        this.state = State::Done;
        let frame = match answer {
            Err(e) => return Poll::Ready(Err(e)),
            Ok(frame) => frame,
        };
        Poll::Ready(match frame.kind {
            FrameKind::Response => {
                body::decode(&frame.body, &frame.attachments).map_err(Error::from)
            }
            _ => Err(
                match body::decode::<WireError>(&frame.body, &frame.attachments) {
                    Ok(e) => e.into_error(&this.peer, &this.function, this.provider),
                    Err(e) => Error::Codec(e),
                },
            ),
        })
    }
}

impl<R> fmt::Debug for CallFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallFuture")
            .field("peer", &self.peer)
            .field("function", &self.function)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Rpc {
    /// Calls `function` on `peer` with `args` and the default timeout.
    ///
    /// The arguments are encoded at once, so they need not outlive the call.
    /// Calling this peer's own name runs the function locally.
    pub fn call<R: DeserializeOwned>(
        &self,
        peer: &str,
        function: &str,
        args: &(impl Serialize + ?Sized),
    ) -> CallFuture<R> {
        self.call_with(peer, function, args, CallOptions::default())
    }

    /// Calls with [`CallOptions`] (provider id, timeout).
    pub fn call_with<R: DeserializeOwned>(
        &self,
        peer: &str,
        function: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> CallFuture<R> {
        let encoded = body::encode(args);
        let inner = self.inner.clone();
        let (peer, function) = (
            shared_name(&LAST_PEER, peer),
            shared_name(&LAST_FUNCTION, function),
        );
        let timeout = opts.timeout.unwrap_or_else(|| inner.timeout());
        let span = tracing::debug_span!("rpc.call", peer = %peer, function = %function, request_id = tracing::field::Empty);
        let cancelled = opts.canceller.map(|c| c.token);
        CallFuture {
            state: State::Start(Start {
                inner,
                encoded,
                timeout,
                cancelled,
                span,
            }),
            peer,
            function,
            provider: opts.provider,
            _result: PhantomData,
        }
    }

    /// Calls and hands the result to `callback`, which runs on the engine's
    /// runtime. Returns at once.
    pub fn call_callback<R, F>(
        &self,
        peer: &str,
        function: &str,
        args: &(impl Serialize + ?Sized),
        callback: F,
    ) where
        R: DeserializeOwned + Send + 'static,
        F: FnOnce(Result<R, Error>) + Send + 'static,
    {
        let call = self.call::<R>(peer, function, args);
        self.inner.spawn(async move { callback(call.await) });
    }

    /// Calls and blocks the thread until the result arrives.
    ///
    /// For plain threads (and blocking handlers): never call it from async
    /// code, where it would block the runtime; use [`call`](Self::call).
    ///
    /// To a peer already connected, the call runs on the calling thread
    /// (in the engine's runtime context): the request is written from
    /// here, and on a host-local transport the answer is received in place
    /// (see [`Config::caller_spin`](crate::Config::caller_spin)), so a
    /// quick answer wakes no thread at all. Other calls (waiting for a
    /// connection, calls to our own name) run as a task of the engine,
    /// whose timers then never run on this thread.
    pub fn call_blocking<R>(
        &self,
        peer: &str,
        function: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<R, Error>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let in_place = tokio::task::try_id().is_none()
            && !self.inner.is_named(peer)
            && !self.inner.is_shut()
            && self.inner.can_pick(peer);
        if !in_place {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.call_callback(peer, function, args, move |answer| {
                let _ = tx.send(answer);
            });
            return rx.recv().unwrap_or(Err(Error::ShutDown));
        }
        let _runtime = self.inner.runtime.enter();
        let timeout = self.inner.timeout();
        let call = self.call::<R>(peer, function, args);
        let (peer, function) = (call.peer.clone(), call.function.clone());
        // Past the deadline (and a grace for the engine's own deadline task
        // to answer first) the runtime is gone: nobody will answer.
        let gave_up = std::time::Instant::now() + timeout + DEADLINE_GRACE;
        block_on_this_thread(call, gave_up).unwrap_or_else(|| {
            Err(Error::Timeout {
                peer: peer.to_string(),
                function: function.to_string(),
                after: timeout,
            })
        })
    }

    /// Sends a one-way call: no response, no error from the callee. Returns
    /// once the frame is queued on a connection to `peer`, waiting for one
    /// up to the default timeout.
    pub async fn notify(
        &self,
        peer: &str,
        function: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<(), Error> {
        self.notify_with(peer, function, args, CallOptions::default())
            .await
    }

    /// Sends a one-way call with options.
    pub async fn notify_with(
        &self,
        peer: &str,
        function: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> Result<(), Error> {
        let (body, attachments) = body::encode(args)?;
        let inner = &self.inner;
        let mut frame = Frame::new(FrameKind::OneWay, 0);
        frame.provider = opts.provider;
        frame.method = Some(Arc::from(function));
        frame.body = body;
        frame.attachments = attachments;
        if inner.is_named(peer) {
            let token = CallToken::with(inner.shutdown.child_token());
            let mut now = Arrival::default();
            inner.dispatch(inner.name(), frame, ReplyTo::Nobody, token, None, &mut now);
            return Ok(());
        }
        let deadline = Instant::now() + opts.timeout.unwrap_or_else(|| inner.timeout());
        let Path { conn, route, .. } = resolve(inner, peer, deadline).await?;
        frame.route = route;
        check_size(&conn, &frame)?;
        conn.send(frame);
        Ok(())
    }
}

/// How long after its deadline a blocking caller gives up by itself.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// Runs `fut` to completion on this thread, parking it while the future
/// waits; `None` if it is not done by `gave_up`. The waker is the same for
/// every call from one thread, so that calls made one after another are
/// told apart from concurrent ones (`inbox.rs`).
fn block_on_this_thread<F: Future>(fut: F, gave_up: std::time::Instant) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    thread_local! {
        static WAKER: std::task::Waker =
            std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    }
    let waker = WAKER.with(Clone::clone);
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let left = gave_up.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        // A wake between the poll and here leaves the token set: the park
        // then returns at once.
        std::thread::park_timeout(left);
    }
}

thread_local! {
    /// The peer and function of this thread's last call: a loop calling the
    /// same function reuses their shared strings instead of allocating.
    static LAST_PEER: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
    static LAST_FUNCTION: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
}

/// `name` as a shared string, reusing the one in `last` when equal.
fn shared_name(
    last: &'static std::thread::LocalKey<std::cell::RefCell<Option<Arc<str>>>>,
    name: &str,
) -> Arc<str> {
    last.with(|slot| {
        let mut slot = slot.borrow_mut();
        match slot.as_ref() {
            Some(s) if **s == *name => s.clone(),
            _ => {
                let s: Arc<str> = Arc::from(name);
                *slot = Some(s.clone());
                s
            }
        }
    })
}

/// Sends a request and waits for its answer frame (a response or an error).
async fn call_raw(
    inner: &Arc<Inner>,
    peer: &str,
    function: &str,
    mut frame: Frame,
    deadline: Instant,
    timeout: Duration,
) -> Result<Frame, Error> {
    let timed_out = || Error::Timeout {
        peer: peer.to_owned(),
        function: function.to_owned(),
        after: timeout,
    };
    if inner.is_shut() {
        return Err(Error::ShutDown);
    }
    if inner.is_named(peer) {
        // Boxed: its timer would make every call's future larger.
        return Box::pin(call_local(inner, frame, deadline))
            .await
            .ok_or_else(timed_out)?;
    }
    let Path {
        conn,
        route,
        measure,
        waited,
    } = resolve(inner, peer, deadline).await?;
    frame.route = route;
    let Registered {
        id,
        rx,
        outside_task,
        sent,
    } = register(inner, &conn, &frame, measure, deadline)?;
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record("request_id", id);
    }
    frame.request_id = id;
    // The deadline was set a moment ago, unless the call had to wait for a
    // connection: then the budget is what is left of it.
    frame.deadline = Some(if waited {
        remaining(deadline, Instant::now())
    } else {
        timeout
    });
    conn.calls_waiting.fetch_add(1, Ordering::Relaxed);
    let guard = CancelOnDrop {
        inner,
        conn: &conn,
        id,
    };
    let _waiting = Waiting(&conn);
    conn.send_request(frame);
    // No timer of its own: the engine's deadline task fails the call at its
    // deadline (`deadline.rs`).
    let outcome = answer(inner, &conn, id, rx, outside_task).await;
    std::mem::forget(guard);
    outcome_of(inner, &conn, id, sent, outcome, timed_out, peer)
}

/// A `Request` frame for `function` (its request id and deadline are set
/// once the call is registered).
fn request(provider: u16, function: &Arc<str>, body: Bytes, attachments: Vec<Bytes>) -> Frame {
    let mut frame = Frame::new(FrameKind::Request, 0);
    frame.provider = provider;
    frame.method = Some(function.clone());
    frame.body = body;
    frame.attachments = attachments;
    frame
}

/// A call registered in the pending table.
struct Registered {
    /// Its request id.
    id: u64,
    /// Where its answer arrives.
    rx: oneshot::Receiver<Result<Frame, Error>>,
    /// Whether it was made outside any task (see [`Waiter`]).
    outside_task: bool,
    /// When its request went out and how large it was, if the transport
    /// policy chose `conn` and hears the round trip.
    sent: Option<(Instant, u64)>,
}

/// Checks that `frame` fits the peer's limit on `conn`, and registers its
/// waiter until `deadline` (waking the deadline task if it is the earliest).
fn register(
    inner: &Arc<Inner>,
    conn: &ConnHandle,
    frame: &Frame,
    measure: bool,
    deadline: Instant,
) -> Result<Registered, Error> {
    check_size(conn, frame)?;
    let sent = measure.then(|| (Instant::now(), frame.wire_len()));
    let (tx, rx) = oneshot::channel();
    let waiter = Waiter::new(tx);
    let outside_task = waiter.outside_task;
    let (id, earliest) = lock(&inner.pending).insert_until(conn.id, deadline, waiter);
    if earliest {
        inner.deadlines_changed();
    }
    Ok(Registered {
        id,
        rx,
        outside_task,
        sent,
    })
}

/// What a call returns for what its waiter got: the answer (reported to
/// the transport policy if it hears this call, `sent`), a timeout (the
/// callee is told to stop), or the end of the engine.
fn outcome_of(
    inner: &Inner,
    conn: &ConnHandle,
    id: u64,
    sent: Option<(Instant, u64)>,
    outcome: Result<Result<Frame, Error>, oneshot::error::RecvError>,
    timed_out: impl FnOnce() -> Error,
    peer: &str,
) -> Result<Frame, Error> {
    match outcome {
        Ok(Err(Error::Timeout { .. })) => {
            // The deadline task removed the call; tell the callee to stop.
            conn.send(Frame::new(FrameKind::Cancel, id));
            Err(timed_out())
        }
        Ok(answer) => {
            if let (Some((at, len)), Ok(frame)) = (sent, &answer)
                && let Some(policy) = inner.policy()
            {
                let bytes = len + frame.wire_len();
                policy.observe(peer, conn.info.transport, bytes, at.elapsed());
            }
            answer
        }
        // The waiter was dropped without an answer: only shutdown does that
        // without sending one first.
        Err(_) => Err(Error::ShutDown),
    }
}

/// The answer to request `id`: received in place if the call may (see
/// [`wait_in_place`]), else from the reader through `rx`. Apart from
/// `call_raw` so that little is kept across its awaits: every call's future
/// is that much smaller to move and to keep.
async fn answer(
    inner: &Inner,
    conn: &ConnHandle,
    id: u64,
    mut rx: oneshot::Receiver<Result<Frame, Error>>,
    outside_task: bool,
) -> Result<Result<Frame, Error>, oneshot::error::RecvError> {
    if may_wait_in_place(conn, outside_task) {
        let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        if let Some(outcome) = wait_in_place(inner, conn, id, &mut rx, &waker) {
            return outcome;
        }
    }
    rx.await
}

/// Whether a call may receive its answer in place (see `inbox.rs`): made
/// outside any task (`outside_task`, as its `Waiter` found), on a runtime,
/// the only call waiting on its connection, with its request written.
fn may_wait_in_place(conn: &ConnHandle, outside_task: bool) -> bool {
    outside_task
        && conn.calls_waiting.load(Ordering::Relaxed) == 1
        && conn.all_written()
        && tokio::runtime::Handle::try_current().is_ok()
}

/// Waits for the answer by receiving on the connection in place, if the
/// inbox agrees for a caller polled with `waker`. `None` when it did not or
/// the spin ran out: then the answer comes through `rx` as usual.
fn wait_in_place(
    inner: &Inner,
    conn: &ConnHandle,
    id: u64,
    rx: &mut oneshot::Receiver<Result<Frame, Error>>,
    waker: &Waker,
) -> Option<Result<Result<Frame, Error>, oneshot::error::RecvError>> {
    if !conn.inbox.begin_spin(waker) {
        return None;
    }
    let mut outcome = None;
    let mut received = false;
    // Our own answer, received here: it goes straight to us rather than
    // through the waiter's channel.
    let own = std::cell::Cell::new(None);
    let hit = conn.inbox.spin_for(
        inner.config.caller_spin,
        |frame| {
            if let Some(waiter) = inner.pending_complete(conn.id, frame.request_id) {
                if frame.request_id == id {
                    received = true;
                    own.set(Some(frame));
                } else {
                    let _ = waiter.send(Ok(frame));
                }
            }
        },
        || match own.take() {
            Some(frame) => {
                outcome = Some(Ok(Ok(frame)));
                true
            }
            None => match rx.try_recv() {
                Ok(answer) => {
                    outcome = Some(Ok(answer));
                    true
                }
                Err(oneshot::error::TryRecvError::Empty) => false,
                // Dropped unanswered: `rx.await` reports it.
                Err(oneshot::error::TryRecvError::Closed) => true,
            },
        },
    );
    let answered = matches!(outcome, Some(Ok(Ok(_))));
    conn.inbox
        .end_spin(hit && outcome.is_some(), received && answered);
    outcome
}

/// Counts a call as waiting on its connection while it lives.
struct Waiting<'a>(&'a ConnHandle);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.calls_waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells the callee to stop when the caller gives up (drop or timeout).
pub(crate) struct CancelOnDrop<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) conn: &'a Arc<ConnHandle>,
    pub(crate) id: u64,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        cancel_pending(self.inner, self.conn, self.id);
    }
}

/// Gives up on call `id` if it still waits: its pending entry goes, and
/// the callee is told to stop.
fn cancel_pending(inner: &Inner, conn: &ConnHandle, id: u64) {
    if lock(&inner.pending).remove(id).is_some() {
        conn.send(Frame::new(FrameKind::Cancel, id));
    }
}

/// Runs a call to our own name through the same dispatch as remote calls.
/// `None` when the deadline passes.
async fn call_local(
    inner: &Arc<Inner>,
    mut frame: Frame,
    deadline: Instant,
) -> Option<Result<Frame, Error>> {
    let (tx, rx) = oneshot::channel();
    let token = inner.shutdown.child_token();
    let _cancel = token.clone().drop_guard();
    frame.deadline = Some(remaining(deadline, Instant::now()));
    // Local calls also travel as bytes: the callee gets its own copy of the
    // arguments, exactly as a remote one would.
    let token = CallToken::with(token);
    let mut now = Arrival::default();
    inner.dispatch(
        inner.name(),
        frame,
        ReplyTo::Local(tx),
        token,
        None,
        &mut now,
    );
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(_)) => Some(Err(Error::ShutDown)),
        Err(_) => None,
    }
}

fn check_size(conn: &ConnHandle, frame: &Frame) -> Result<(), Error> {
    let len = frame.wire_len();
    if len > conn.remote_max_frame_len {
        return Err(Error::FrameTooLarge {
            len,
            max: conn.remote_max_frame_len,
        });
    }
    Ok(())
}
