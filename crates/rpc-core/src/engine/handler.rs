//! Handlers: what runs when a call arrives, and how it answers.
//!
//! Every registration becomes an object-safe [`Handler`] that receives an
//! [`IncomingCall`]. The call carries a [`RawResponder`], which sends exactly
//! one answer (or none, when the call was cancelled or was one-way). The
//! typed wrappers — async, blocking, deferred and queue handlers — decode the
//! arguments, run user code, and answer through it.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::conn::ConnHandle;
use super::control::WireError;
use crate::body;
use crate::error::Error;
use crate::wire::{Frame, FrameKind};

/// The error a handler returns. Its message reaches the caller as
/// [`Error::Remote`].
///
/// Any `std::error::Error` converts into it, so `?` works inside handlers.
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self::new(e)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerError({:?})", self.message)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a handler knows about the call it serves.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub(crate) peer: Arc<str>,
    pub(crate) function: Arc<str>,
    pub(crate) provider: u16,
    pub(crate) request_id: u64,
    pub(crate) deadline: Option<Instant>,
    pub(crate) token: CallToken,
}

impl CallContext {
    /// The caller's peer name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The function called.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The provider id the call named.
    pub fn provider(&self) -> u16 {
        self.provider
    }

    /// The caller's request id.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// When the caller stops waiting; `None` for one-way calls.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the caller cancelled the call (dropped its future), the
    /// deadline passed, or the engine is shutting down.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the call is cancelled. Handlers that run long select on
    /// it to stop early.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.get().clone().cancelled_owned()
    }
}

/// A call's cancellation token, shared by its context, its responder and
/// the connection's table of calls in progress, and made only when one of
/// them needs it: most calls finish inline without anyone asking, and a
/// `CancellationToken` costs an allocation and a lock for every clone and
/// drop.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallToken(Arc<OnceLock<CancellationToken>>);

impl CallToken {
    /// A call token that is `token` from the start.
    pub(crate) fn with(token: CancellationToken) -> Self {
        Self(Arc::new(OnceLock::from(token)))
    }

    /// The token, made now if nobody needed it yet.
    pub(crate) fn get(&self) -> &CancellationToken {
        self.0.get_or_init(CancellationToken::new)
    }

    /// Whether the call was cancelled; makes no token.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.get().is_some_and(CancellationToken::is_cancelled)
    }
}

/// Per-function counters, shown by `debug_info`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub in_flight: AtomicU64,
}

/// Where an answer goes.
pub(crate) enum ReplyTo {
    /// Nowhere: a one-way call.
    Nobody,
    /// Back over a connection.
    Conn(Arc<ConnHandle>),
    /// To a caller in this process (a call to our own name).
    Local(oneshot::Sender<Result<Frame, Error>>),
}

/// Requests in progress on one connection, so that a cancel frame can reach
/// them, and so that the reader stops reading while too many are (see
/// [`Config::max_in_flight`](crate::Config::max_in_flight)).
pub(crate) type IncomingTable = Arc<Incoming>;

/// The table behind [`IncomingTable`]. Keyed by the caller's request ids: a
/// caller choosing colliding ids slows only its own connection's table.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    calls: Mutex<rustc_hash::FxHashMap<u64, CancellationToken>>,
    /// The table's length, read by the reader per frame without the lock.
    len: std::sync::atomic::AtomicUsize,
    /// Wakes a reader waiting for room.
    freed: tokio::sync::Notify,
}

impl Incoming {
    pub(crate) fn insert(&self, id: u64, token: CancellationToken) {
        let mut calls = lock(&self.calls);
        calls.insert(id, token);
        self.len.store(calls.len(), Ordering::Release);
    }

    /// Removes a request that ended (or was cancelled).
    pub(crate) fn remove(&self, id: u64) -> Option<CancellationToken> {
        let removed = {
            let mut calls = lock(&self.calls);
            let removed = calls.remove(&id);
            self.len.store(calls.len(), Ordering::Release);
            removed
        };
        self.freed.notify_one();
        removed
    }

    /// Every request's token, leaving the table empty.
    pub(crate) fn drain(&self) -> Vec<CancellationToken> {
        let mut calls = lock(&self.calls);
        self.len.store(0, Ordering::Release);
        calls.drain().map(|(_, t)| t).collect()
    }

    /// How many requests are in progress.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Waits until fewer than `max` requests are in progress.
    pub(crate) async fn room(&self, max: usize) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.len() < max {
                return;
            }
            freed.await;
        }
    }
}

/// Sends the one answer to a call.
pub(crate) struct RawResponder {
    reply: Option<ReplyTo>,
    request_id: u64,
    counters: Arc<Counters>,
    token: CallToken,
    incoming: Option<IncomingTable>,
    /// Whether the token is in `incoming`.
    tracked: bool,
}

impl RawResponder {
    pub(crate) fn new(
        reply: ReplyTo,
        request_id: u64,
        counters: Arc<Counters>,
        token: CallToken,
        incoming: Option<IncomingTable>,
    ) -> Self {
        counters.calls.fetch_add(1, Ordering::Relaxed);
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            reply: Some(reply),
            request_id,
            counters,
            token,
            incoming,
            tracked: false,
        }
    }

    /// Makes the call cancellable by a cancel frame and by the end of its
    /// connection. Handlers call it when they do not answer inline.
    pub(crate) fn track(&mut self) {
        if let Some(table) = &self.incoming {
            table.insert(self.request_id, self.token.get().clone());
            self.tracked = true;
        }
    }

    /// Answers with a value.
    pub(crate) fn ok<R: Serialize + ?Sized>(mut self, value: &R) {
        match body::encode(value) {
            Ok((body, attachments)) => {
                let mut frame = Frame::new(FrameKind::Response, self.request_id);
                frame.body = body;
                frame.attachments = attachments;
                self.send(frame, false);
            }
            Err(e) => self.err(WireError::Handler(format!(
                "the result could not be encoded: {e}"
            ))),
        }
    }

    /// Answers with an error.
    pub(crate) fn err(mut self, e: WireError) {
        let frame = error_frame(self.request_id, &e);
        self.send(frame, true);
    }

    /// Answers with the outcome of a handler.
    pub(crate) fn finish<R: Serialize>(
        self,
        outcome: Result<Result<R, HandlerError>, Box<dyn Any + Send>>,
    ) {
        match outcome {
            Ok(Ok(value)) => self.ok(&value),
            Ok(Err(e)) => self.err(WireError::Handler(e.message)),
            Err(panic) => self.err(WireError::Panicked(panic_message(&*panic))),
        }
    }

    /// Finishes without answering: the call was cancelled or timed out, and
    /// the caller no longer waits.
    pub(crate) fn abandon(mut self) {
        self.reply = None;
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        self.token.get()
    }

    fn send(&mut self, mut frame: Frame, is_error: bool) {
        if is_error {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        // An answer to a call the caller gave up on is still sent: the caller
        // drops it (no pending entry matches), and checking here would cost
        // every call a lock.
        match self.reply.take() {
            None | Some(ReplyTo::Nobody) => {}
            Some(ReplyTo::Local(tx)) => {
                let _ = tx.send(Ok(frame));
            }
            Some(ReplyTo::Conn(conn)) => {
                let len = frame.wire_len();
                if len > conn.remote_max_frame_len {
                    frame = error_frame(
                        self.request_id,
                        &WireError::TooLarge {
                            len,
                            max: conn.remote_max_frame_len,
                        },
                    );
                }
                conn.send(frame);
            }
        }
    }
}

impl Drop for RawResponder {
    fn drop(&mut self) {
        if self.reply.is_some() && !self.token.is_cancelled() {
            let frame = error_frame(
                self.request_id,
                &WireError::Handler("the handler dropped its responder without answering".into()),
            );
            self.send(frame, true);
        }
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(table) = self.incoming.as_ref().filter(|_| self.tracked) {
            table.remove(self.request_id);
        }
    }
}

pub(crate) fn error_frame(request_id: u64, e: &WireError) -> Frame {
    let mut frame = Frame::new(FrameKind::Error, request_id);
    // Encoding a `WireError` cannot fail: it is strings and integers.
    frame.body = body::encode(e).map(|(b, _)| b).unwrap_or_default();
    frame
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section in the engine is a single map operation, so a
    // panic elsewhere cannot leave the data behind a poisoned lock broken.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// A call delivered to a handler.
pub(crate) struct IncomingCall {
    pub ctx: CallContext,
    pub body: Bytes,
    pub attachments: Vec<Bytes>,
    pub responder: RawResponder,
}

impl IncomingCall {
    /// Decodes the arguments, or answers with `BadRequest` and returns `None`.
    fn decode<A: DeserializeOwned>(self) -> Option<(CallContext, A, RawResponder)> {
        match body::decode(&self.body, &self.attachments) {
            Ok(args) => Some((self.ctx, args, self.responder)),
            Err(e) => {
                self.responder.err(WireError::BadRequest(e.to_string()));
                None
            }
        }
    }
}

/// A registered function, type-erased.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Starts serving one call. Must not block.
    fn call(
        &self,
        call: IncomingCall,
        rt: &tokio::runtime::Handle,
        tracker: &tokio_util::task::TaskTracker,
    );
}

/// Runs an async handler: once inline (most handlers finish at once, and
/// spawning would cost a task switch), then as a task if it is not done.
pub(crate) struct AsyncHandler<F, A> {
    pub f: F,
    pub _args: PhantomData<fn(A)>,
}

impl<F, A, R, Fut> Handler for AsyncHandler<F, A>
where
    F: Fn(CallContext, A) -> Fut + Send + Sync + 'static,
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    fn call(
        &self,
        call: IncomingCall,
        rt: &tokio::runtime::Handle,
        tracker: &tokio_util::task::TaskTracker,
    ) {
        let Some((ctx, args, responder)) = call.decode::<A>() else {
            return;
        };
        let deadline = ctx.deadline;
        let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| (self.f)(ctx, args))) {
            Ok(fut) => fut,
            Err(panic) => return responder.finish::<R>(Err(panic)),
        };
        let mut fut = Box::pin(AssertUnwindSafe(fut).catch_unwind());
        // Poll once here. A future that is not ready re-registers the real
        // waker when the spawned task polls it again.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(outcome) = fut.as_mut().poll(&mut cx) {
            return responder.finish(outcome);
        }
        let mut responder = responder;
        responder.track();
        let span = tracing::Span::current();
        tracker.spawn_on(
            async move {
                let token = responder.token().clone();
                let expired = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    outcome = fut => responder.finish(outcome),
                    () = token.cancelled() => responder.abandon(),
                    () = expired => {
                        token.cancel();
                        responder.abandon();
                    }
                }
            }
            .instrument(span),
            rt,
        );
    }
}

/// Runs a blocking handler on the blocking pool, at most `limit` at a time.
pub(crate) struct BlockingHandler<F, A> {
    pub f: Arc<F>,
    pub limit: Arc<Semaphore>,
    pub _args: PhantomData<fn(A)>,
}

impl<F, A, R> Handler for BlockingHandler<F, A>
where
    F: Fn(CallContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn call(
        &self,
        call: IncomingCall,
        rt: &tokio::runtime::Handle,
        tracker: &tokio_util::task::TaskTracker,
    ) {
        let Some((ctx, args, mut responder)) = call.decode::<A>() else {
            return;
        };
        responder.track();
        let (f, limit, rt2) = (self.f.clone(), self.limit.clone(), rt.clone());
        tracker.spawn_on(
            async move {
                let token = responder.token().clone();
                let permit = tokio::select! {
                    p = limit.acquire_owned() => p,
                    () = token.cancelled() => return responder.abandon(),
                };
                let Ok(permit) = permit else {
                    return responder.err(WireError::ShuttingDown);
                };
                let job = rt2.spawn_blocking(move || {
                    let _permit = permit;
                    std::panic::catch_unwind(AssertUnwindSafe(|| f(ctx, args)))
                });
                match job.await {
                    Ok(outcome) => responder.finish(outcome),
                    Err(e) => responder.err(WireError::Panicked(e.to_string())),
                }
            },
            rt,
        );
    }
}

/// The typed answer handle given to deferred handlers and queue owners.
///
/// Answer once with [`respond`](Self::respond), from any thread, at any
/// time before the caller's deadline. Dropping it without answering sends the
/// caller an error, so no caller waits for an answer that cannot come.
#[must_use = "dropping a Responder answers the caller with an error"]
pub struct Responder<R> {
    raw: RawResponder,
    ctx: CallContext,
    _result: PhantomData<fn(R)>,
}

impl<R: Serialize> Responder<R> {
    pub(crate) fn new(raw: RawResponder, ctx: CallContext) -> Self {
        Self {
            raw,
            ctx,
            _result: PhantomData,
        }
    }

    /// Answers the call.
    pub fn respond(self, result: Result<R, HandlerError>) {
        self.raw.finish(Ok(result));
    }

    /// Answers with a value.
    pub fn ok(self, value: R) {
        self.raw.ok(&value);
    }

    /// Answers with an error.
    pub fn err(self, e: impl Into<HandlerError>) {
        self.raw.err(WireError::Handler(e.into().message));
    }

    /// The call this responder answers.
    pub fn context(&self) -> &CallContext {
        &self.ctx
    }

    pub(crate) fn raw_err(self, e: WireError) {
        self.raw.err(e);
    }
}

impl<R> fmt::Debug for Responder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("peer", &self.ctx.peer)
            .field("function", &self.ctx.function)
            .field("request_id", &self.ctx.request_id)
            .finish()
    }
}

/// Hands each call to a user function together with a [`Responder`].
pub(crate) struct DeferredHandler<F, A, R> {
    pub f: F,
    pub _types: PhantomData<fn(A, R)>,
}

impl<F, A, R> Handler for DeferredHandler<F, A, R>
where
    F: Fn(Responder<R>, A) + Send + Sync + 'static,
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn call(
        &self,
        call: IncomingCall,
        _rt: &tokio::runtime::Handle,
        _tracker: &tokio_util::task::TaskTracker,
    ) {
        let Some((ctx, args, mut raw)) = call.decode::<A>() else {
            return;
        };
        raw.track();
        // A panic inside `f` drops the responder during unwinding, which
        // answers the caller with an error.
        let responder = Responder::new(raw, ctx);
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| (self.f)(responder, args)))
        {
            tracing::warn!("deferred handler panicked: {}", panic_message(&*panic));
        }
    }
}

/// Puts each call into a bounded queue.
pub(crate) struct QueueHandler<A, R> {
    pub tx: mpsc::Sender<(Responder<R>, A)>,
}

impl<A, R> Handler for QueueHandler<A, R>
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn call(
        &self,
        call: IncomingCall,
        _rt: &tokio::runtime::Handle,
        _tracker: &tokio_util::task::TaskTracker,
    ) {
        let Some((ctx, args, mut raw)) = call.decode::<A>() else {
            return;
        };
        raw.track();
        let item = (Responder::new(raw, ctx), args);
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full((responder, _))) => {
                responder.raw.err(WireError::Overloaded(format!(
                    "queue {:?} is full ({} calls)",
                    responder.ctx.function,
                    self.tx.max_capacity()
                )))
            }
            Err(mpsc::error::TrySendError::Closed((responder, _))) => {
                responder
                    .raw
                    .err(WireError::Handler("the queue was dropped".into()));
            }
        }
    }
}
