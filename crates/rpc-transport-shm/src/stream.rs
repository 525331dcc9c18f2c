//! The receiving half: bytes out of the ring into a reused buffer, records
//! out of the buffer, arena attachments read in place.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use rpc_core::TransportError;
use rpc_core::transport::{FrameStream, Spinner};
use rpc_core::wire::Frame;

use crate::arena;
use crate::error::{ShmError, peer_died};
use crate::record::Decoder;
use crate::ring::Consumer;
use crate::segment::{Dir, Segment, ShmRing};
use crate::wait::{BACKSTOP, EventFd, Peer, Stats, notify};

/// The initial capacity of the read buffer.
const READ_BUF_LEN: usize = 64 << 10;

/// The receiving half of a shared-memory connection.
pub(crate) struct ShmStream {
    rx: Consumer<ShmRing>,
    dec: Decoder,
    /// Bytes taken out of the ring, not yet decoded. Decoded frames are
    /// slices of it; its allocation is reused once they are all dropped.
    buf: BytesMut,
    segment: Arc<Segment>,
    dir: Dir,
    /// Woken by the producer when it published data.
    data: EventFd,
    /// Wakes the producer when it waits for room.
    space_peer: OwnedFd,
    peer: Arc<Peer>,
    /// Spins before each sleep while spinning pays off.
    spinner: Spinner,
    stats: Arc<Stats>,
    /// Set once the stream ended (cleanly or not).
    done: bool,
}

/// What [`ShmStream::new`] needs.
pub(crate) struct StreamParts {
    pub segment: Arc<Segment>,
    pub dir: Dir,
    pub data: EventFd,
    pub space_peer: OwnedFd,
    pub peer: Arc<Peer>,
    pub spin: Duration,
    pub stats: Arc<Stats>,
    pub max_frame_len: u64,
}

impl ShmStream {
    /// The receiving half of direction `dir`.
    pub(crate) fn new(p: StreamParts) -> Self {
        Self {
            rx: Consumer::new(ShmRing::new(&p.segment, p.dir)),
            dec: Decoder::new(p.max_frame_len),
            buf: BytesMut::with_capacity(READ_BUF_LEN),
            segment: p.segment,
            dir: p.dir,
            data: p.data,
            space_peer: p.space_peer,
            peer: p.peer,
            spinner: Spinner::new(p.spin),
            stats: p.stats,
            done: false,
        }
    }

    /// Decodes the record at the front of the buffer, if it is whole.
    fn decode(&mut self) -> Result<Option<Frame>, TransportError> {
        let (segment, dir) = (&self.segment, self.dir);
        self.dec.decode(&mut self.buf, |block, len| {
            arena::receive(segment, dir, block, len)
        })
    }

    /// Moves every available byte from the ring into the buffer and hands
    /// the room back to the producer.
    fn pull(&mut self) {
        // At most the ring's capacity: it fits in usize.
        let n = self.rx.available() as usize;
        self.buf.reserve(n);
        let spare = self.buf.spare_capacity_mut();
        // SAFETY: `spare` has room for `n` bytes after the reserve, and `n`
        // bytes are available in the ring; they are initialized by the copy
        // before `set_len` exposes them.
        unsafe {
            self.rx.read_raw(spare.as_mut_ptr().cast(), n);
            self.buf.set_len(self.buf.len() + n);
        }
        if self.rx.release() {
            Stats::bump(&self.stats.wakes);
            notify(&self.space_peer);
        }
    }

    /// How the stream ends, once the ring has nothing more: a clean close,
    /// a torn record, or a dead peer. `None` while the peer may still send.
    fn end(&mut self) -> Option<Result<Option<Frame>, TransportError>> {
        if self.rx.is_closed() {
            if self.buf.is_empty() && self.dec.missing(&self.buf).is_none() {
                self.finish();
                return Some(Ok(None));
            }
            let torn = ShmError::Record("the peer closed in the middle of a record");
            return Some(Err(self.fail(torn.into())));
        }
        if self.peer.is_dead() {
            let mid_record = !self.buf.is_empty() || self.dec.missing(&self.buf).is_some();
            return Some(Err(self.fail(peer_died("recv", mid_record))));
        }
        None
    }

    /// Ends the stream after an error; the producer learns of it from the
    /// ring and fails its next write. Only this connection is affected.
    fn fail(&mut self, error: TransportError) -> TransportError {
        self.finish();
        self.buf = BytesMut::new();
        error
    }

    /// Tells the producer that nobody reads any more.
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            if self.rx.close() {
                notify(&self.space_peer);
            }
        }
    }

    /// Waits until the ring has news (data or a close), or the peer died:
    /// spins first (while spinning pays off), then sleeps on the eventfd.
    async fn wait(&mut self) {
        let rx = &self.rx;
        let looks = crate::wait::LOOKS_PER_YIELD;
        if self
            .spinner
            .spin(looks, || rx.has_news().then_some(()))
            .await
            .is_some()
        {
            return;
        }
        // Withdrawn however the wait ends, also when its future is dropped
        // (the engine stops a receive to let a caller take over): a stale
        // announcement would make the producer wake us on every frame.
        let announced = DataWait::announce(rx);
        if rx.has_news() || self.peer.is_dead() {
            drop(announced);
            // A wait that skipped its spin and found news at once: the
            // shortest of sleeps, which brings spinning back.
            self.spinner.woke();
            return;
        }
        Stats::bump(&self.stats.data_sleeps);
        let backstop = tokio::select! {
            // An error from a registered eventfd cannot happen; if it did,
            // looking at the ring again is the right reaction anyway.
            _ = self.data.wait() => false,
            () = self.peer.gone() => false,
            () = tokio::time::sleep(BACKSTOP) => true,
        };
        drop(announced);
        self.spinner.woke();
        if backstop && rx.has_news() {
            Stats::bump(&self.stats.backstop_rescues);
        }
    }
}

/// A consumer's announced wait for data, withdrawn on drop.
struct DataWait<'a>(&'a Consumer<ShmRing>);

impl<'a> DataWait<'a> {
    fn announce(rx: &'a Consumer<ShmRing>) -> Self {
        rx.announce_data_wait();
        Self(rx)
    }
}

impl Drop for DataWait<'_> {
    fn drop(&mut self) {
        self.0.cancel_data_wait();
    }
}

#[async_trait]
impl FrameStream for ShmStream {
    fn set_max_frame_len(&mut self, max: u64) {
        self.dec.set_max_frame_len(max);
    }

    /// A frame already in the buffer or the ring; never waits.
    fn try_recv(&mut self) -> Option<Result<Option<Frame>, TransportError>> {
        if self.done {
            return Some(Err(TransportError::Closed));
        }
        loop {
            match self.decode() {
                Ok(Some(frame)) => return Some(Ok(Some(frame))),
                Ok(None) => {}
                Err(e) => return Some(Err(self.fail(e))),
            }
            match self.rx.refresh() {
                Ok(0) => break,
                Ok(_) => self.pull(),
                Err(e) => return Some(Err(self.fail(ShmError::from(e).into()))),
            }
        }
        self.end()
    }

    /// `try_recv` looks at the ring itself; callers spin on it unless the
    /// connection was configured never to spin (`ShmConfig::spin` zero).
    fn try_recv_is_live(&self) -> bool {
        !self.spinner.budget().is_zero()
    }

    /// `recv` spins for this long before it sleeps: the engine's reader may
    /// as well spin on `try_recv`, which builds no receive per frame.
    fn reader_spin(&self) -> Duration {
        self.spinner.budget()
    }

    // Cancel safe: bytes move from the ring to `buf` and frames out of it
    // without an await in between, so a dropped future loses nothing.
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        if self.done {
            return Err(TransportError::Closed);
        }
        loop {
            match self.decode() {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
            let available = match self.rx.refresh() {
                Ok(n) => n,
                Err(e) => return Err(self.fail(ShmError::from(e).into())),
            };
            if available > 0 {
                self.pull();
                continue;
            }
            if let Some(end) = self.end() {
                return end;
            }
            self.wait().await;
        }
    }
}

impl Drop for ShmStream {
    fn drop(&mut self) {
        self.finish();
    }
}
