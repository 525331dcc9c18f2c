//! The sending half: frames into records, records into the ring, large
//! attachments into the arena.
//!
//! `feed` writes a record into the ring without publishing it, so that a
//! batch of frames becomes visible to the peer at once, on `flush`, with one
//! store and at most one wake. A record that does not fit streams through:
//! what is written is published, and the sink waits for room (spinning,
//! then sleeping on its eventfd) and goes on.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rpc_core::TransportError;
use rpc_core::transport::FrameSink;
use rpc_core::wire::Frame;

use crate::arena::{self, ArenaAlloc};
use crate::error::{ShmError, peer_died};
use crate::record::{BODY, DESC_LEN, Desc, Encoder, PREFIX_LEN};
use crate::ring::Producer;
use crate::segment::{Dir, Segment, ShmRing};
use crate::wait::{BACKSTOP, EventFd, Peer, Stats, notify, spin};

/// Records up to this long are put together whole before they go into the
/// ring: one copy into shared memory rather than one per part.
const SMALL_RECORD: usize = 128;

/// Where the sink is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// A record was partly written when a write failed or its future was
    /// dropped: the byte stream is broken.
    Broken,
    Closed,
}

/// The sending half of a shared-memory connection.
pub(crate) struct ShmSink {
    writer: Writer,
    enc: Encoder,
    alloc: ArenaAlloc,
    segment: Arc<Segment>,
    dir: Dir,
    /// Attachments at least this long go to the arena when it has room.
    threshold: usize,
    state: State,
    descs: Vec<Desc>,
}

/// The ring side of the sink, apart from the encoder so that a record head
/// borrowed from the encoder can be written.
struct Writer {
    tx: Producer<ShmRing>,
    /// Woken by the consumer when it freed room.
    space: EventFd,
    /// Wakes the consumer when it sleeps waiting for data.
    data_peer: OwnedFd,
    peer: Arc<Peer>,
    spin: Duration,
    stats: Arc<Stats>,
}

/// What [`ShmSink::new`] needs.
pub(crate) struct SinkParts {
    pub segment: Arc<Segment>,
    pub dir: Dir,
    pub space: EventFd,
    pub data_peer: OwnedFd,
    pub peer: Arc<Peer>,
    pub spin: Duration,
    pub stats: Arc<Stats>,
    pub max_frame_len: u64,
    pub threshold: usize,
}

impl ShmSink {
    /// The sending half of direction `dir`.
    pub(crate) fn new(p: SinkParts) -> Self {
        Self {
            writer: Writer {
                tx: Producer::new(ShmRing::new(&p.segment, p.dir)),
                space: p.space,
                data_peer: p.data_peer,
                peer: p.peer,
                spin: p.spin,
                stats: p.stats,
            },
            enc: Encoder::new(p.max_frame_len),
            alloc: ArenaAlloc::new(p.segment.layout().blocks),
            segment: p.segment,
            dir: p.dir,
            threshold: p.threshold.max(1),
            state: State::Open,
            descs: Vec::new(),
        }
    }

    /// Reserves arena room for the large body and attachments of `frame`,
    /// filling `self.descs`. Those that find no room stay inline.
    fn place(&mut self, frame: &Frame) {
        self.descs.clear();
        if self.alloc_is_empty() {
            return;
        }
        let flags = self.segment.arena_flags(self.dir);
        let payloads = std::iter::once((BODY, &frame.body)).chain(
            // At most MAX_ATTACHMENTS (encode_head checks), so i fits u32.
            frame
                .attachments
                .iter()
                .enumerate()
                .map(|(i, a)| (i as u32, a)),
        );
        for (index, a) in payloads {
            if a.len() < self.threshold {
                continue;
            }
            match self.alloc.alloc(a.len(), flags) {
                Some(first_block) => self.descs.push(Desc {
                    // Blocks fit u32: arenas are at most 16 GiB of 4 KiB.
                    index,
                    first_block: first_block as u32,
                    len: a.len() as u64,
                }),
                None => Stats::bump(&self.writer.stats.arena_fallbacks),
            }
        }
    }

    /// Checks `frame`, places its large parts in the arena and encodes its
    /// record head. With `now`: if the ring surely has room for the whole
    /// record, writes it and returns `None`; otherwise touches nothing and
    /// hands the frame back. Without `now`, returns the head's length (the
    /// head stays in the encoder) and the frame with its arena parts taken
    /// out, for `feed` to write.
    fn prepare(
        &mut self,
        mut frame: Frame,
        now: bool,
    ) -> Result<Option<(usize, Frame)>, TransportError> {
        if self.state != State::Open {
            return Err(TransportError::Closed);
        }
        if self.writer.tx.consumer_gone() {
            return Err(TransportError::Closed);
        }
        // Checked before anything is written, so a refused frame leaves the
        // connection usable.
        let max = self.enc.max_frame_len();
        let wire_len = frame.wire_len();
        if wire_len > max {
            return Err(TransportError::FrameTooLarge { len: wire_len, max });
        }
        if now {
            // An upper bound of the record (as if nothing went to the
            // arena), checked before the head is encoded: encoding interns
            // the method name, so it must happen exactly once per frame.
            let bound = (PREFIX_LEN + DESC_LEN * (1 + frame.attachments.len())) as u64 + wire_len;
            let mut free = self.writer.tx.free();
            if free < bound {
                free = self.writer.tx.refresh().map_err(ShmError::from)?;
            }
            if free < bound {
                return Ok(Some((0, frame)));
            }
        }
        self.place(&frame);
        let moved: Vec<Bytes> = if self.descs.is_empty() {
            Vec::new()
        } else {
            self.descs
                .iter()
                .map(|d| match d.index {
                    BODY => std::mem::take(&mut frame.body),
                    i => std::mem::take(&mut frame.attachments[i as usize]),
                })
                .collect()
        };
        let head_len = match self.enc.head(&frame, &self.descs) {
            Ok(head) => head.len(),
            Err(e) => {
                self.cancel_arena();
                return Err(e);
            }
        };
        let flags = self.segment.arena_flags(self.dir);
        for (d, data) in self.descs.iter().zip(&moved) {
            // SAFETY: the run was just allocated for `data.len()` bytes and
            // is not committed yet, so nobody else touches it.
            unsafe { arena::fill(&self.segment, self.dir, d.first_block as usize, data) };
            self.alloc.commit(d.first_block as usize, data.len(), flags);
            Stats::bump(&self.writer.stats.arena_attachments);
        }
        // The sources go now, before the record is published: an
        // attachment that came from the peer's arena (an echo) is released
        // before the peer can need the room again.
        drop(moved);
        if !now {
            return Ok(Some((head_len, frame)));
        }
        // The ring has room for the whole record: these writes complete.
        let record_len = head_len as u64 + frame.payload_len();
        if self.descs.is_empty() && record_len <= SMALL_RECORD as u64 {
            // A small record is put together in the scratch and goes into
            // the ring in one copy.
            let record = self.enc.whole_record(head_len, &frame);
            write_whole(&mut self.writer, &mut self.state, record)?;
            return Ok(None);
        }
        let head = self.enc.last_head(head_len);
        let parts = std::iter::once(head)
            .chain(std::iter::once(&frame.body[..]))
            .chain(frame.attachments.iter().map(|a| &a[..]));
        for part in parts {
            write_whole(&mut self.writer, &mut self.state, part)?;
        }
        Ok(None)
    }

    /// Gives back the arena runs reserved for the current frame.
    fn cancel_arena(&mut self) {
        for d in &self.descs {
            self.alloc.cancel(d.first_block as usize, d.len as usize);
        }
    }

    /// Publishes what was written and checks the peer is alive.
    fn publish_checked(&mut self) -> Result<(), TransportError> {
        if self.state != State::Open {
            return Err(TransportError::Closed);
        }
        self.writer.publish();
        if self.writer.peer.is_dead() {
            return Err(peer_died("send", false));
        }
        Ok(())
    }

    fn alloc_is_empty(&self) -> bool {
        self.segment.layout().blocks == 0
    }
}

/// Writes `part`, which the ring surely has room for, at once.
fn write_whole(writer: &mut Writer, state: &mut State, part: &[u8]) -> Result<(), TransportError> {
    let n = writer.tx.write(part).map_err(ShmError::from)?;
    if n != part.len() {
        *state = State::Broken;
        return Err(ShmError::Record("the ring lost room it had").into());
    }
    Ok(())
}

impl Writer {
    /// Writes all of `src`, publishing and waiting for room as needed.
    async fn write_all(&mut self, mut src: &[u8]) -> Result<(), TransportError> {
        loop {
            let n = self.tx.write(src).map_err(ShmError::from)?;
            src = &src[n..];
            if src.is_empty() {
                return Ok(());
            }
            self.publish();
            self.wait_for_room().await?;
        }
    }

    /// Makes every written byte visible, waking the consumer if it sleeps.
    fn publish(&mut self) {
        if self.tx.publish() {
            Stats::bump(&self.stats.wakes);
            notify(&self.data_peer);
        }
    }

    /// Waits until the ring has room: spins first, then sleeps on the
    /// eventfd. Fails if the consumer or its process went away.
    async fn wait_for_room(&mut self) -> Result<(), TransportError> {
        loop {
            if self.tx.refresh().map_err(ShmError::from)? > 0 {
                break;
            }
            if self.tx.consumer_gone() {
                return Err(TransportError::Closed);
            }
            if self.peer.is_dead() {
                return Err(peer_died("send", false));
            }
            let tx = &self.tx;
            if spin(self.spin, || tx.has_news()).await {
                continue;
            }
            tx.announce_space_wait();
            if tx.has_news() || self.peer.is_dead() {
                tx.cancel_space_wait();
                continue;
            }
            Stats::bump(&self.stats.space_sleeps);
            let backstop = tokio::select! {
                _ = self.space.wait() => false,
                () = self.peer.gone() => false,
                () = tokio::time::sleep(BACKSTOP) => true,
            };
            tx.cancel_space_wait();
            if backstop && tx.has_news() {
                Stats::bump(&self.stats.backstop_rescues);
            }
        }
        if self.tx.consumer_gone() {
            return Err(TransportError::Closed);
        }
        Ok(())
    }
}

#[async_trait]
impl FrameSink for ShmSink {
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        // At once if the ring has room for the whole record; streamed
        // otherwise.
        let Some((_, frame)) = self.prepare(frame, true)? else {
            return Ok(());
        };
        let Some((head_len, frame)) = self.prepare(frame, false)? else {
            return Ok(());
        };
        self.state = State::Broken;
        let head = self.enc.last_head(head_len);
        self.writer.write_all(head).await?;
        self.writer.write_all(&frame.body).await?;
        for a in &frame.attachments {
            self.writer.write_all(a).await?;
        }
        self.state = State::Open;
        Ok(())
    }

    /// Writes the record at once when the ring has room for all of it.
    fn try_feed(&mut self, frame: Frame) -> Result<Option<Frame>, TransportError> {
        match self.prepare(frame, true)? {
            None => Ok(None),
            Some((_, frame)) => Ok(Some(frame)),
        }
    }

    fn try_flush(&mut self) -> Result<bool, TransportError> {
        self.publish_checked().map(|()| true)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.publish_checked()
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.state = State::Closed;
        if self.writer.tx.close() {
            notify(&self.writer.data_peer);
        }
        Ok(())
    }
}

impl Drop for ShmSink {
    fn drop(&mut self) {
        // A dropped sink ends the peer's stream like a close; one dropped in
        // the middle of a record ends it with an error, as the record is
        // torn.
        if self.state != State::Closed && self.writer.tx.close() {
            notify(&self.writer.data_peer);
        }
    }
}
