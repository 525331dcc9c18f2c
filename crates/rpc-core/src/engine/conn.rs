//! One connection's life: handshake, the reader loop (which also writes the
//! answers of handlers that finish inline, see `outbox.rs`), and
//! the clean-up that fails its pending calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::Inner;
use super::control::{Control, ENGINE_PROTOCOL, Hello, Reject, SHUTDOWN_METHOD};
use super::handler::{
    CallContext, CallToken, IncomingCall, IncomingTable, RawResponder, ReplyTo, lock,
};
use super::inbox::{Inbox, Received};
use super::outbox::Outbox;
use super::ratelimit::warn_limited;
use super::signal::Signal;
use crate::body;
use crate::error::{Error, TransportError};
use crate::pending::ConnId;
use crate::transport::{
    Address, ConnInfo, Connection, FrameSink, FrameStream, Locality, Spinner, host_key,
};
use crate::wire::{Frame, FrameKind};

/// The engine's handle on a live connection: how to send on it.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub id: ConnId,
    pub peer: Arc<str>,
    pub incarnation: u128,
    pub info: ConnInfo,
    pub remote_max_frame_len: u64,
    pub opened: Instant,
    /// Whether the transport is host-local (preferred over network ones).
    pub local: bool,
    /// Frames queued on this connection, for `debug_info`.
    pub frames_sent: AtomicU64,
    /// Our calls waiting for an answer on this connection.
    pub calls_waiting: AtomicUsize,
    outbox: Arc<Outbox>,
    /// The receiving side, shared with callers that wait in place.
    pub(crate) inbox: Inbox,
    /// Fires when the connection closes (or the engine shuts down): the
    /// reader loop ends on it.
    closed: Arc<Signal>,
}

impl ConnHandle {
    /// Sends a frame: writes it at once if nobody else is writing on this
    /// connection, else queues it for the current writer. A frame sent after
    /// the connection closed is dropped: whoever waits for its answer learns
    /// of the loss from the pending table.
    pub(crate) fn send(&self, frame: Frame) {
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.outbox.push(frame);
    }

    /// Sends a request of ours. With no other call waiting it is written at
    /// once (latency); with others waiting, a task writes it together with
    /// whatever else is queued by then (throughput).
    pub(crate) fn send_request(&self, frame: Frame) {
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
        if self.calls_waiting.load(Ordering::Relaxed) > 1 {
            self.outbox.push_deferred(frame);
        } else {
            self.outbox.push(frame);
        }
    }

    /// Whether nothing waits to be written: every frame sent so far has
    /// been handed to the transport.
    pub(crate) fn all_written(&self) -> bool {
        self.outbox.is_idle()
    }

    /// Whether the connection has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_fired()
    }

    /// Ends the connection: its reader loop stops and cleans up.
    pub(crate) fn stop(&self) {
        self.closed.fire();
    }
}

/// Which side opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Outbound,
    Inbound,
}

/// Runs a connection to its end. Returns the peer's name once the connection
/// closes normally, or why it was refused.
pub(crate) async fn run_connection(
    inner: Arc<Inner>,
    conn: Box<dyn Connection>,
    direction: Direction,
    on_established: Option<&(dyn Fn(&str) + Send + Sync)>,
) -> Result<Arc<str>, Error> {
    let info = conn.info().clone();
    let (mut sink, mut stream) = conn.split();
    // Until the peer has said who it is, it may send only small frames: a
    // connection that never finishes its handshake holds no large buffer.
    stream.set_max_frame_len(inner.config.handshake_max_frame_len);
    // Shutdown interrupts the handshake; once registered, the connection
    // ends at shutdown through its `closed` signal instead, so that the
    // reader loop polls nothing but its stream and that signal per frame.
    // The whole exchange, our hello's write included, is bounded by the
    // handshake timeout.
    let shaken = tokio::select! {
        h = tokio::time::timeout(
            inner.config.handshake_timeout,
            handshake(&inner, &mut *sink, &mut *stream, direction),
        ) => h.unwrap_or_else(|_| Err(Error::Transport(TransportError::io(
            "handshake",
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no hello within {:?}", inner.config.handshake_timeout),
            ),
        )))),
        () = inner.shutdown.cancelled() => Err(Error::ShutDown),
    };
    let hello = match shaken {
        Ok(hello) => hello,
        Err(e) => {
            // Bounded: after an interrupted handshake the sink may never
            // finish closing.
            let _ = tokio::time::timeout(inner.config.handshake_timeout, sink.close()).await;
            return Err(e);
        }
    };
    let peer: Arc<str> = Arc::from(hello.name.as_str());
    stream.set_max_frame_len(inner.config.max_frame_len);

    let closed = Arc::new(Signal::default());
    let outbox = Outbox::new(
        sink,
        closed.clone(),
        inner.runtime.clone(),
        inner.tracker.clone(),
    );
    let handle = Arc::new(ConnHandle {
        id: inner.next_conn_id(),
        peer: peer.clone(),
        incarnation: hello.incarnation,
        info: info.clone(),
        remote_max_frame_len: hello.max_frame_len,
        opened: Instant::now(),
        local: inner.locality_of(info.transport) == Locality::SameHost,
        frames_sent: AtomicU64::new(0),
        calls_waiting: AtomicUsize::new(0),
        outbox,
        inbox: Inbox::new(stream, inner.config.caller_spin),
        closed,
    });
    let welcome = (direction == Direction::Inbound).then(|| control_frame(&Control::Welcome));
    if let Err(reject) = inner.peers.register(handle.clone(), welcome) {
        handle
            .outbox
            .close_after(control_frame(&Control::Reject(reject.clone())));
        return Err(reject_error(reject));
    }
    if inner.is_shut() {
        // Shutdown began after the handshake's check: end at once.
        handle.stop();
    }
    inner.bump_peers();
    if direction == Direction::Outbound && !handle.local {
        upgrade_to_host_local(&inner, &hello);
    }
    if let Some(f) = on_established {
        f(&peer);
    }
    tracing::debug!(peer = %peer, conn = handle.id, ?direction, transport = handle.info.transport, "connection up");

    let incoming: IncomingTable = Arc::default();
    let end = read_loop(&inner, &handle, &incoming).await;
    handle.inbox.close();

    // Clean-up: the connection is gone for everyone. Answers already queued
    // still go out, then a goodbye, then the sink closes.
    handle.outbox.close_after(control_frame(&Control::Goodbye));
    handle.stop();
    let cause = end.cause();
    if inner.peers.unregister(&handle, &cause) {
        forget_later(&inner, &peer);
    }
    for waiter in inner.pending_remove_conn(handle.id) {
        let _ = waiter.send(Err(Error::Disconnected {
            peer: peer.to_string(),
            reason: cause.clone(),
        }));
    }
    for token in incoming.drain() {
        token.cancel();
    }
    inner.bump_peers();
    tracing::debug!(peer = %peer, conn = handle.id, "connection down: {end:?}");
    match end {
        ReadEnd::Rejected(reject) => Err(reject_error(reject)),
        _ => Ok(peer),
    }
}

/// Forgets a lost peer after [`Config::forget_after`] unless it came back
/// or something keeps reconnecting to it meanwhile.
///
/// [`Config::forget_after`]: crate::Config::forget_after
fn forget_later(inner: &Arc<Inner>, peer: &Arc<str>) {
    let Some(since) = inner.peers.lost_since(peer) else {
        return;
    };
    let (inner2, peer) = (inner.clone(), peer.clone());
    let after = inner.config.forget_after;
    inner.spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(after) => {}
            () = inner2.shutdown.cancelled() => return,
        }
        if inner2.peers.forget_if_lost(&peer, since) {
            tracing::debug!(%peer, "forgot a lost peer");
            inner2.bump_peers();
        }
    });
}

/// When a network connection turns out to reach a peer on this very host,
/// opens a second connection over a host-local transport (shared memory)
/// that both sides have; calls then prefer it. One attempt: if it fails, the
/// network connection keeps serving, and the next reconnect tries again.
fn upgrade_to_host_local(inner: &Arc<Inner>, hello: &Hello) {
    let mine = host_key();
    if mine.is_empty() || hello.host_key != mine || inner.peers.has_local(&hello.name) {
        return;
    }
    let target = hello.listen.iter().find_map(|a| {
        let addr = Address::parse(a).ok()?;
        let transport = inner.transport_for(&addr).ok()?;
        (transport.locality() == Locality::SameHost && inner.allows(addr.scheme()))
            .then_some((addr, transport))
    });
    let Some((addr, transport)) = target else {
        return;
    };
    let (inner2, peer) = (inner.clone(), hello.name.clone());
    inner.spawn(async move {
        let opts = inner2.conn_options();
        let conn = tokio::select! {
            c = transport.connect(&addr, &opts) => c,
            () = inner2.shutdown.cancelled() => return,
        };
        match conn {
            Ok(conn) => {
                tracing::debug!(%peer, %addr, "same host: adding a host-local connection");
                if let Err(e) = run_connection(inner2, conn, Direction::Outbound, None).await {
                    tracing::debug!(%peer, %addr, "host-local connection ended: {e}");
                }
            }
            Err(e) => tracing::debug!(%peer, %addr, "same host, but no host-local connection: {e}"),
        }
    });
}

fn reject_error(reject: Reject) -> Error {
    match reject {
        Reject::DuplicateName(name) => Error::DuplicateName { name },
        Reject::Protocol(v) => Error::InvalidArgument(format!(
            "peer speaks engine protocol {v}, we speak {ENGINE_PROTOCOL}"
        )),
        Reject::ShuttingDown => Error::ShutDown,
    }
}

pub(crate) fn control_frame(c: &Control) -> Frame {
    let mut frame = Frame::new(FrameKind::Control, 0);
    // Control messages are plain data; encoding them cannot fail.
    frame.body = body::encode(c).map(|(b, _)| b).unwrap_or_default();
    frame
}

/// Exchanges hellos and checks the peer's.
/// Exchanges hellos and checks the peer's; the connecting side then waits
/// for the accepting side's verdict on its name (welcome or reject).
async fn handshake(
    inner: &Inner,
    sink: &mut dyn FrameSink,
    stream: &mut dyn FrameStream,
    direction: Direction,
) -> Result<Hello, Error> {
    let hello = exchange_hellos(inner, sink, stream).await?;
    if direction == Direction::Outbound {
        match next_control(stream).await? {
            Control::Welcome => {}
            Control::Reject(r) => return Err(reject_error(r)),
            Control::Goodbye => return Err(Error::Transport(TransportError::Closed)),
            Control::Hello(_) => {
                return Err(Error::Transport(TransportError::Backend(
                    "expected a welcome, got a second hello".into(),
                )));
            }
        }
    }
    Ok(hello)
}

/// The next frame, which must be a control frame.
async fn next_control(stream: &mut dyn FrameStream) -> Result<Control, Error> {
    let frame = stream
        .recv()
        .await?
        .ok_or(Error::Transport(TransportError::Closed))?;
    if frame.kind != FrameKind::Control {
        return Err(Error::Transport(TransportError::Backend(
            format!(
                "expected a control frame, got a {} frame",
                frame.kind.name()
            )
            .into(),
        )));
    }
    Ok(body::decode::<Control>(&frame.body, &frame.attachments)?)
}

async fn exchange_hellos(
    inner: &Inner,
    sink: &mut dyn FrameSink,
    stream: &mut dyn FrameStream,
) -> Result<Hello, Error> {
    let mine = inner.hello();
    sink.send(control_frame(&Control::Hello(mine.clone())))
        .await?;
    let hello = match next_control(stream).await? {
        Control::Hello(h) => h,
        Control::Reject(r) => return Err(reject_error(r)),
        Control::Goodbye => return Err(Error::Transport(TransportError::Closed)),
        Control::Welcome => {
            return Err(Error::Transport(TransportError::Backend(
                "expected a hello, got a welcome".into(),
            )));
        }
    };
    let reject = if hello.protocol != ENGINE_PROTOCOL {
        Some(Reject::Protocol(ENGINE_PROTOCOL))
    } else if hello.name == mine.name && hello.incarnation != mine.incarnation {
        Some(Reject::DuplicateName(hello.name.clone()))
    } else if inner.is_shut() {
        Some(Reject::ShuttingDown)
    } else {
        None
    };
    if let Some(reject) = reject {
        let _ = sink
            .send(control_frame(&Control::Reject(reject.clone())))
            .await;
        return Err(reject_error(reject));
    }
    Ok(hello)
}

/// The most frames a reader handles in a row before it lets other tasks
/// run: a peer that never lets the stream run dry must not starve the
/// thread.
const MAX_BATCH: usize = 1024;

/// Why a reader loop ended.
#[derive(Debug)]
enum ReadEnd {
    Closed,
    Goodbye,
    Rejected(Reject),
    Shutdown,
    Error(String),
}

impl ReadEnd {
    /// Why the connection ended, for errors and the peer table.
    fn cause(&self) -> String {
        match self {
            Self::Closed => "the connection closed".to_owned(),
            Self::Goodbye => "the peer closed the connection".to_owned(),
            Self::Rejected(r) => format!("the peer refused the connection: {r:?}"),
            Self::Shutdown => "this engine shut down".to_owned(),
            Self::Error(e) => e.clone(),
        }
    }
}

/// Where a reader receives from: the stream itself when no caller may
/// receive in place on it (no lock, no shared receive), else the inbox.
enum Source<'a> {
    Own(Box<dyn FrameStream>),
    Inbox(&'a Inbox),
}

impl Source<'_> {
    async fn next(&mut self) -> Received {
        match self {
            Source::Own(stream) => stream.recv().await,
            Source::Inbox(inbox) => std::future::poll_fn(|cx| inbox.poll_next(cx)).await,
        }
    }

    fn try_next(&mut self) -> Option<Received> {
        match self {
            Source::Own(stream) => stream.try_recv(),
            Source::Inbox(inbox) => inbox.try_next(),
        }
    }
}

async fn read_loop(
    inner: &Arc<Inner>,
    conn: &Arc<ConnHandle>,
    incoming: &IncomingTable,
) -> ReadEnd {
    let eager = conn.inbox.is_live();
    let mut source = match conn.inbox.take_unless_drivable() {
        Some(stream) => Source::Own(stream),
        None => Source::Inbox(&conn.inbox),
    };
    let mut spinner = Spinner::new(conn.inbox.reader_spin().min(READER_SPIN));
    let max_in_flight = inner.config.max_in_flight.max(1);
    loop {
        // Back-pressure: while the peer has too many requests in progress
        // here, read nothing more from it (its sends then wait on the
        // transport), rather than queue without bound.
        if incoming.len() >= max_in_flight {
            tokio::select! {
                () = incoming.room(max_in_flight) => {}
                () = conn.closed.wait() => {
                    return if inner.is_shut() { ReadEnd::Shutdown } else { ReadEnd::Closed };
                }
            }
        }
        // Over a stream whose `recv` would spin anyway (shared memory), the
        // next frame usually comes within a round trip: look for it here
        // first with `try_recv`, which builds no receive and goes through
        // no layer of futures, and settle into a receive (which spins a
        // while longer before it sleeps) only if it does not come soon.
        let spun = spinner.spin(READER_LOOKS, || source.try_next()).await;
        let next = match spun {
            Some(next) => next,
            None => {
                let next = tokio::select! {
                    biased;
                    next = source.next() => next,
                    () = conn.closed.wait() => {
                        return if inner.is_shut() { ReadEnd::Shutdown } else { ReadEnd::Closed };
                    }
                };
                spinner.woke();
                next
            }
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => return ReadEnd::Closed,
            Err(e) => {
                tracing::warn!(peer = %conn.peer, "closing connection: {e}");
                return ReadEnd::Error(e.to_string());
            }
        };
        // Every frame that has already arrived is handled before anything
        // is written: answers given inline go out together, in one write
        // when the batch holds several requests. Over memory (a stream whose
        // `try_recv` sees the peer's frames by itself), where a write is a
        // copy and a store rather than a system call, the first answer goes
        // out at once instead: a lone request's answer then waits for
        // nothing, and the rest of a batch still goes out together.
        let mut writer = !eager && conn.outbox.try_become_writer();
        let mut answered = Answered::default();
        let mut arrival = Arrival::default();
        let mut end = on_frame(inner, conn, frame, incoming, &mut answered, &mut arrival);
        let mut handled = 1;
        while end.is_none() && handled < MAX_BATCH && incoming.len() < max_in_flight {
            if writer && conn.outbox.flush_point(handled) {
                // A long burst: the answers so far go out now, so that the
                // peer can start on them while we handle the rest.
                conn.outbox.finish_owned();
                writer = conn.outbox.try_become_writer();
            }
            handled += 1;
            end = match source.try_next() {
                None => break,
                Some(Ok(Some(more))) => {
                    if eager && handled == 2 {
                        writer = conn.outbox.try_become_writer();
                    }
                    on_frame(inner, conn, more, incoming, &mut answered, &mut arrival)
                }
                Some(Ok(None)) => Some(ReadEnd::Closed),
                Some(Err(e)) => {
                    tracing::warn!(peer = %conn.peer, "closing connection: {e}");
                    Some(ReadEnd::Error(e.to_string()))
                }
            };
        }
        if writer {
            conn.outbox.finish_owned();
        }
        if let Some(end) = end {
            return end;
        }
        if conn.closed.is_fired() {
            // A stream that never runs dry would hide the signal from the
            // `select!` above, which looks at the stream first.
            return if inner.is_shut() {
                ReadEnd::Shutdown
            } else {
                ReadEnd::Closed
            };
        }
        if answered.outside_task || handled >= MAX_BATCH {
            // Let the callers just answered from outside any task run before
            // this task looks for more: a current-thread runtime polls its
            // `block_on` future only once no task is ready, which a
            // transport that spins would put off (see
            // `rpc_core::transport::spin_until`). After a long batch, the
            // other tasks of this thread get their turn.
            tokio::task::yield_now().await;
        } else if answered.task {
            // Callers in tasks are in the run queue: go behind them, without
            // the driver poll `yield_now` waits for, rather than make them
            // wait for a round of the transport's spin.
            crate::transport::requeue().await;
        }
    }
}

/// The most a reader looks for the next frame itself before it receives
/// (see `read_loop` and `FrameStream::reader_spin`): long enough for an
/// answer's round trip, short beside a transport's own spin.
const READER_SPIN: Duration = Duration::from_micros(20);
/// Looks per round of that spin: each takes the inbox's lock.
const READER_LOOKS: u32 = 16;

/// When a batch of frames arrived: the clock is read once per batch, by the
/// first request that needs it (for its deadline), not once per frame. The
/// frames of a batch are handled without a pause, so the later ones get
/// deadlines a little early, never late.
#[derive(Default)]
pub(crate) struct Arrival(Option<Instant>);

impl Arrival {
    /// The batch's arrival time, read now if nobody needed it yet.
    pub(crate) fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// Which callers a batch of frames answered.
#[derive(Default)]
struct Answered {
    /// A call made outside any task (in `block_on`, or a plain thread's).
    outside_task: bool,
    /// A call made in a task.
    task: bool,
}

/// Handles one frame; `Some` if the connection ends. Notes in `answered`
/// whom the frame answered; `arrival` is when its batch arrived.
fn on_frame(
    inner: &Arc<Inner>,
    conn: &Arc<ConnHandle>,
    frame: Frame,
    incoming: &IncomingTable,
    answered: &mut Answered,
    arrival: &mut Arrival,
) -> Option<ReadEnd> {
    match frame.kind {
        FrameKind::Request | FrameKind::OneWay => {
            on_request(inner, conn, frame, incoming, arrival);
            None
        }
        FrameKind::Response | FrameKind::Error => {
            if let Some(waiter) = inner.pending_complete(conn.id, frame.request_id) {
                if waiter.outside_task {
                    answered.outside_task = true;
                } else {
                    answered.task = true;
                }
                let _ = waiter.send(Ok(frame));
            }
            None
        }
        FrameKind::Cancel => {
            if let Some(token) = incoming.remove(frame.request_id) {
                token.cancel();
            }
            None
        }
        FrameKind::Control => match body::decode::<Control>(&frame.body, &frame.attachments) {
            Ok(Control::Goodbye) => Some(ReadEnd::Goodbye),
            Ok(Control::Reject(r)) => Some(ReadEnd::Rejected(r)),
            Ok(Control::Hello(_) | Control::Welcome) => {
                tracing::warn!(peer = %conn.peer, "ignoring a handshake message after the handshake");
                None
            }
            Err(e) => {
                tracing::warn!(peer = %conn.peer, "closing connection: bad control frame: {e}");
                Some(ReadEnd::Error(format!("bad control frame: {e}")))
            }
        },
    }
}

fn on_request(
    inner: &Arc<Inner>,
    conn: &Arc<ConnHandle>,
    frame: Frame,
    incoming: &IncomingTable,
    arrival: &mut Arrival,
) {
    let reply = if frame.kind == FrameKind::Request {
        ReplyTo::Conn(conn.clone())
    } else {
        ReplyTo::Nobody
    };
    if frame
        .route
        .as_ref()
        .is_some_and(|r| !inner.is_named(&r.dst))
    {
        super::route::relay(inner, conn, frame, incoming);
        return;
    }
    // A routed request comes from the envelope's source, not from the relay
    // that handed it over.
    let peer = frame
        .route
        .as_ref()
        .map_or_else(|| conn.peer.clone(), |r| r.src.clone());
    // A request's token joins the connection's table (where cancel frames and
    // the connection's end reach it) only if its handler does not finish
    // inline; one-way calls follow the engine's shutdown.
    let (token, tracked) = if frame.kind == FrameKind::Request {
        (CallToken::default(), Some(incoming.clone()))
    } else {
        (CallToken::with(inner.shutdown.child_token()), None)
    };
    inner.dispatch(peer, frame, reply, token, tracked, arrival);
}

/// Keeps an outbound connection up: connects, runs it, and reconnects with
/// exponential backoff and jitter until the engine shuts down or the peer
/// refuses us for good.
///
/// Once the peer is known by name, a failed reconnect is recorded in the
/// peer table (calls to it then fail at once, `route.rs`), and a call that
/// finds that evidence stale wakes this loop for an attempt now instead of
/// after the backoff.
pub(crate) async fn keep_connected(
    inner: Arc<Inner>,
    addr: crate::transport::Address,
    stop: tokio_util::sync::CancellationToken,
    report: Arc<dyn Fn(Result<Arc<str>, Error>) + Send + Sync>,
) {
    let cfg = inner.config.clone();
    let mut backoff = cfg.reconnect_min;
    // Handshakes that broke in a row since the last connection was up.
    let mut broken_handshakes = 0u32;
    // Knows the peer's name once a connection told it, and tells the peer
    // table how to wake this loop.
    let redial = RedialGuard {
        inner: &inner,
        wake: Arc::new(tokio::sync::Notify::new()),
        name: std::sync::Mutex::new(None),
    };
    loop {
        if inner.is_shut() {
            return;
        }
        // Only connecting waits on shutdown here: `run_connection` ends on
        // its own when the engine shuts down.
        let connect = async {
            let transport = inner.transport_for(&addr)?;
            match tokio::time::timeout(
                cfg.connect_timeout,
                transport.connect(&addr, &inner.conn_options()),
            )
            .await
            {
                Ok(conn) => Ok::<_, Error>(conn?),
                Err(_) => Err(Error::Transport(TransportError::io(
                    "connect",
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {:?}", cfg.connect_timeout),
                    ),
                ))),
            }
        };
        let connected = tokio::select! {
            c = connect => c,
            () = stop.cancelled() => return,
        };
        let outcome = match connected {
            Ok(conn) => {
                let started = Instant::now();
                let ok_report = report.clone();
                let redial = &redial;
                let on_up = move |peer: &str| {
                    redial.up(peer);
                    ok_report(Ok(Arc::from(peer)));
                };
                let r =
                    run_connection(inner.clone(), conn, Direction::Outbound, Some(&on_up)).await;
                Ok((r, started.elapsed()))
            }
            Err(e) => Err(e),
        };
        if stop.is_cancelled() {
            return;
        }
        // Whether the connect succeeded and the handshake then failed (as
        // opposed to a connect that failed, or a connection that was up).
        let handshake_broke = matches!(outcome, Ok((Err(_), _)));
        match outcome {
            Ok((Ok(_), lasted)) => {
                broken_handshakes = 0;
                if lasted > cfg.reconnect_max {
                    backoff = cfg.reconnect_min;
                }
                // The first attempt after a loss goes at once: its outcome
                // decides whether calls to the peer wait or fail. A
                // connection that ended at once backs off as usual.
                if lasted >= cfg.reconnect_min {
                    continue;
                }
            }
            Ok((Err(e), _)) | Err(e) => {
                let fatal = fatal_connect_error(&e);
                tracing::debug!(%addr, "connection attempt failed: {e}");
                // Evidence that the peer is gone is a connect that failed
                // (refused, unreachable, no answer), or its refusal: not a
                // fresh connection whose handshake broke (a lost or garbled
                // hello), which is tried again soon instead.
                let evidence = fatal || !handshake_broke;
                if let Some(peer) = redial.peer().filter(|_| evidence) {
                    inner.peers.redial_failed(&peer, format!("{addr}: {e}"));
                    inner.bump_peers();
                }
                report(Err(e));
                if fatal {
                    // A later `connect` to the address starts afresh.
                    stop.cancel();
                    return;
                }
                if handshake_broke {
                    broken_handshakes += 1;
                }
            }
        }
        if handshake_broke && broken_handshakes <= QUICK_RETRIES {
            tokio::select! {
                () = tokio::time::sleep(cfg.reconnect_min) => {}
                () = redial.wake.notified() => {}
                () = stop.cancelled() => return,
            }
            continue;
        }
        let jitter = 0.5 + rand::random::<f64>();
        let wait = backoff.mul_f64(jitter).min(cfg.reconnect_max);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = redial.wake.notified() => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(cfg.reconnect_max);
    }
}

/// Whether no later attempt can do better than this failed one: the peer
/// refused our name (or protocol), or the address is invalid or of a scheme
/// no transport serves.
pub(crate) fn fatal_connect_error(e: &Error) -> bool {
    matches!(
        e,
        Error::DuplicateName { .. }
            | Error::InvalidArgument(_)
            | Error::Transport(
                TransportError::InvalidAddress { .. } | TransportError::UnsupportedScheme { .. }
            )
    )
}

/// How many broken handshakes in a row are retried after
/// [`Config::reconnect_min`](crate::Config::reconnect_min) rather than the
/// growing backoff.
const QUICK_RETRIES: u32 = 3;

/// Tells the peer table that nothing redials the peer any more when a
/// [`keep_connected`] loop ends.
struct RedialGuard<'a> {
    inner: &'a Inner,
    /// Wakes the loop from its backoff when a call wants an attempt now.
    wake: Arc<tokio::sync::Notify>,
    /// The peer's name, once a connection told it.
    name: std::sync::Mutex<Option<Arc<str>>>,
}

impl RedialGuard<'_> {
    /// A connection to `peer` is up: remember its name, and let calls to
    /// it wake this loop.
    fn up(&self, peer: &str) {
        *lock(&self.name) = Some(Arc::from(peer));
        self.inner.peers.set_redial(peer, Some(self.wake.clone()));
    }

    /// The peer's name, once known.
    fn peer(&self) -> Option<Arc<str>> {
        lock(&self.name).clone()
    }
}

impl Drop for RedialGuard<'_> {
    fn drop(&mut self) {
        if let Some(peer) = lock(&self.name).take() {
            self.inner.peers.set_redial(&peer, None);
            self.inner.bump_peers();
        }
    }
}

/// Serves connections accepted by a listener until shutdown.
pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    mut listener: Box<dyn crate::transport::Listener>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = inner.shutdown.cancelled() => return,
        };
        match accepted {
            Ok(conn) => {
                let max = inner.config.max_connections;
                if inner.inbound.load(Ordering::Acquire) >= max {
                    warn_limited!(
                        inner.warn_refused,
                        "{}: refusing an inbound connection from {}: {max} connections are open (Config::max_connections)",
                        listener.local_addr(),
                        conn.info().remote
                    );
                    drop(conn);
                    continue;
                }
                inner.inbound.fetch_add(1, Ordering::AcqRel);
                let inner2 = inner.clone();
                inner.tracker.spawn_on(
                    async move {
                        let remote = conn.info().remote.clone();
                        let r =
                            run_connection(inner2.clone(), conn, Direction::Inbound, None).await;
                        inner2.inbound.fetch_sub(1, Ordering::AcqRel);
                        if let Err(e) = r {
                            warn_limited!(
                                inner2.warn_refused,
                                "refused an inbound connection from {remote}: {e}"
                            );
                        }
                    },
                    &inner.runtime,
                );
            }
            Err(e) => {
                tracing::warn!(addr = %listener.local_addr(), "accept failed: {e}");
                // Avoid a hot loop when accept keeps failing (say, out of fds).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Builds the context and responder for a request, for dispatch; a
/// request (not a one-way call) has a `deadline`.
pub(crate) fn incoming_call(
    peer: Arc<str>,
    frame: Frame,
    reply: ReplyTo,
    token: CallToken,
    tracked: Option<IncomingTable>,
    counters: Arc<super::handler::Counters>,
    deadline: Option<Instant>,
) -> IncomingCall {
    let function = frame.method.clone().unwrap_or_else(|| Arc::from(""));
    let responder = RawResponder::new(reply, frame.request_id, counters, token.clone(), tracked);
    IncomingCall {
        ctx: CallContext {
            peer,
            function,
            provider: frame.provider,
            request_id: frame.request_id,
            deadline,
            token,
        },
        body: frame.body,
        attachments: frame.attachments,
        responder,
    }
}

/// Whether a method is the built-in remote shutdown.
pub(crate) fn is_shutdown_method(method: &str) -> bool {
    method == SHUTDOWN_METHOD
}
