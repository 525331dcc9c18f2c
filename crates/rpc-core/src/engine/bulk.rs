//! Bulk transfers (Margo's bulk push and pull): a peer exposes memory as a
//! [`BulkHandle`], sends the handle in a call, and the other side reads
//! from it or writes into it at an offset.
//!
//! The owner keeps its exposed regions in a table. Transfers run through
//! the [`Transport`](crate::Transport)'s bulk level when it has one (shared
//! memory can map, InfiniBand can RDMA); otherwise they are two built-in
//! methods, `__rpc.bulk.pull` and `__rpc.bulk.push`, whose data travels as
//! an attachment: the owner hands out a slice of the region, never copied
//! into a body, and a byte-stream transport writes it from the region's own
//! buffer.
//!
//! A [`BulkRegion`] is copy-on-write shared memory: pulls take zero-copy
//! snapshots, and a push writes in place unless a snapshot is still held,
//! in which case the region is copied first so that the snapshot stays as
//! it was.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::control::{BULK_PULL_METHOD, BULK_PUSH_METHOD, WireError};
use super::handler::{Counters, DeferredHandler, Handler, Responder, lock};
use super::{CallOptions, Inner, Registration, Rpc};
use crate::body::Blob;
use crate::error::{BulkError, Error};

/// What the peers holding a [`BulkHandle`] may do with the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BulkMode {
    /// Peers may pull (read) only.
    ReadOnly,
    /// Peers may pull and push (write).
    ReadWrite,
}

/// Memory that can be exposed for bulk transfers: shared, fixed-length,
/// copy-on-write bytes.
///
/// Clones share the region: keep one to see what peers pushed into it.
///
/// ```
/// use rpc_core::BulkRegion;
///
/// let region = BulkRegion::zeroed(8);
/// region.write(2, b"hi")?;
/// assert_eq!(&region.read(0, 4)?[..], b"\0\0hi");
/// # Ok::<_, rpc_core::BulkError>(())
/// ```
#[derive(Clone, Default)]
pub struct BulkRegion {
    bytes: Arc<RwLock<Bytes>>,
}

impl BulkRegion {
    /// A region holding `bytes` (not copied).
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self {
            bytes: Arc::new(RwLock::new(bytes.into())),
        }
    }

    /// A region of `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        Self::new(vec![0u8; len])
    }

    /// The length in bytes; it never changes.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current contents, without copying. Later writes do not change
    /// the snapshot.
    pub fn snapshot(&self) -> Bytes {
        self.current()
    }

    /// `len` bytes at `offset`, without copying.
    pub fn read(&self, offset: u64, len: u64) -> Result<Bytes, BulkError> {
        let bytes = self.current();
        let range = check_range(0, offset, len, bytes.len())?;
        Ok(bytes.slice(range))
    }

    /// Writes `data` at `offset`. In place, unless a snapshot (or a pulled
    /// slice) still shares the memory; then the region is copied first.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), BulkError> {
        let mut guard = self
            .bytes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let range = check_range(0, offset, data.len() as u64, guard.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let mut owned = std::mem::take(&mut *guard)
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        owned[range].copy_from_slice(data);
        *guard = owned.freeze();
        Ok(())
    }

    fn current(&self) -> Bytes {
        self.bytes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for BulkRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BulkRegion({} bytes)", self.len())
    }
}

impl From<Bytes> for BulkRegion {
    fn from(b: Bytes) -> Self {
        Self::new(b)
    }
}

impl From<Vec<u8>> for BulkRegion {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

/// A region exposed by a peer, as other peers see it: send it inside any
/// argument or result, then [`Rpc::bulk_pull`] or [`Rpc::bulk_push`].
///
/// A handle is only a claim: the owner checks every access against the
/// region itself, so a forged or stale handle gets a [`BulkError`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkHandle {
    owner: String,
    incarnation: u128,
    id: u64,
    len: u64,
    writable: bool,
    descriptors: Vec<BulkDescriptor>,
}

/// How one transport's bulk level reaches a region, opaque to the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BulkDescriptor {
    scheme: String,
    data: Blob,
}

impl BulkHandle {
    /// The name of the peer that exposed the region.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The region's id, unique within the owner's run.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The region's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether peers may push into the region.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The bulk descriptor a transport registered for this region, if any.
    pub fn descriptor(&self, scheme: &str) -> Option<&Bytes> {
        self.descriptors
            .iter()
            .find(|d| d.scheme == scheme)
            .map(|d| d.data.bytes())
    }
}

/// The owner's table of exposed regions.
#[derive(Default)]
pub(crate) struct BulkTable {
    next_id: AtomicU64,
    regions: Mutex<HashMap<u64, Exposed>>,
}

struct Exposed {
    region: BulkRegion,
    writable: bool,
    /// The transports whose bulk level registered the region.
    schemes: Vec<&'static str>,
}

impl BulkTable {
    fn region(&self, id: u64) -> Result<(BulkRegion, bool), BulkError> {
        lock(&self.regions)
            .get(&id)
            .map(|e| (e.region.clone(), e.writable))
            .ok_or(BulkError::UnknownHandle { id })
    }

    fn pull(&self, id: u64, offset: u64, len: u64) -> Result<Bytes, BulkError> {
        let (region, _) = self.region(id)?;
        region.read(offset, len).map_err(|e| with_id(e, id))
    }

    fn push(&self, id: u64, offset: u64, data: &[u8]) -> Result<(), BulkError> {
        let (region, writable) = self.region(id)?;
        if !writable {
            return Err(BulkError::ReadOnly { id });
        }
        region.write(offset, data).map_err(|e| with_id(e, id))
    }
}

impl Rpc {
    /// Exposes `region` for bulk transfers and returns the handle to send
    /// to peers. With [`BulkMode::ReadWrite`], keep a clone of the region
    /// to see what they push. Call it after [`set_name`](Self::set_name):
    /// the handle names its owner.
    pub fn expose(&self, region: impl Into<BulkRegion>, mode: BulkMode) -> BulkHandle {
        let region = region.into();
        let table = &self.inner.bulk;
        let id = table.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut descriptors = Vec::new();
        let mut schemes = Vec::new();
        let transports: Vec<_> = self
            .inner
            .transports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for t in transports {
            if let Some(data) = t.bulk().and_then(|b| b.register(id, &region, mode)) {
                schemes.push(t.scheme());
                descriptors.push(BulkDescriptor {
                    scheme: t.scheme().to_owned(),
                    data: Blob(data),
                });
            }
        }
        let writable = mode == BulkMode::ReadWrite;
        let len = region.len() as u64;
        lock(&table.regions).insert(
            id,
            Exposed {
                region,
                writable,
                schemes,
            },
        );
        BulkHandle {
            owner: self.get_name(),
            incarnation: self.inner.incarnation,
            id,
            len,
            writable,
            descriptors,
        }
    }

    /// Stops exposing the region of `handle`; later accesses fail with
    /// [`BulkError::UnknownHandle`]. Returns whether it was exposed.
    pub fn unexpose(&self, handle: &BulkHandle) -> bool {
        if handle.incarnation != self.inner.incarnation {
            return false;
        }
        let Some(exposed) = lock(&self.inner.bulk.regions).remove(&handle.id) else {
            return false;
        };
        for scheme in exposed.schemes {
            let transport = self
                .inner
                .transports
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(scheme)
                .cloned();
            if let Some(b) = transport.as_ref().and_then(|t| t.bulk()) {
                b.deregister(handle.id);
            }
        }
        true
    }

    /// Reads `len` bytes at `offset` of a peer's region.
    ///
    /// Fails with [`Error::Bulk`] when the range is outside the region or
    /// the handle is unknown to its owner (never exposed, or unexposed).
    pub async fn bulk_pull(
        &self,
        handle: &BulkHandle,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, Error> {
        check_range(handle.id, offset, len, handle.len as usize)
            .map_err(|e| bulk_error(handle, e))?;
        for d in &handle.descriptors {
            let Ok(t) = self.inner.transport_for_scheme(&d.scheme) else {
                continue;
            };
            if let Some(b) = t.bulk() {
                match b.get(&handle.owner, d.data.bytes(), offset, len).await {
                    Ok(Some(bytes)) => return Ok(bytes),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(scheme = %d.scheme, "bulk get failed, copying through frames: {e}")
                    }
                }
            }
        }
        let args = (handle.incarnation, handle.id, offset, len);
        let blob: Blob = self
            .call_with(
                &handle.owner,
                BULK_PULL_METHOD,
                &args,
                CallOptions::default(),
            )
            .await?;
        Ok(blob.into_bytes())
    }

    /// Writes `data` at `offset` of a peer's writable region.
    ///
    /// Fails with [`Error::Bulk`] when the handle is read-only, the range
    /// is outside the region, or the handle is unknown to its owner.
    pub async fn bulk_push(
        &self,
        handle: &BulkHandle,
        offset: u64,
        data: Bytes,
    ) -> Result<(), Error> {
        if !handle.writable {
            return Err(bulk_error(handle, BulkError::ReadOnly { id: handle.id }));
        }
        check_range(handle.id, offset, data.len() as u64, handle.len as usize)
            .map_err(|e| bulk_error(handle, e))?;
        for d in &handle.descriptors {
            let Ok(t) = self.inner.transport_for_scheme(&d.scheme) else {
                continue;
            };
            if let Some(b) = t.bulk() {
                match b
                    .put(&handle.owner, d.data.bytes(), offset, data.clone())
                    .await
                {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(scheme = %d.scheme, "bulk put failed, copying through frames: {e}")
                    }
                }
            }
        }
        let args = (handle.incarnation, handle.id, offset, Blob(data));
        self.call_with(
            &handle.owner,
            BULK_PUSH_METHOD,
            &args,
            CallOptions::default(),
        )
        .await
    }
}

impl Inner {
    fn transport_for_scheme(&self, scheme: &str) -> Result<Arc<dyn crate::Transport>, ()> {
        self.transports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(scheme)
            .cloned()
            .ok_or(())
    }
}

/// The built-in handler of a bulk method, if `method` is one.
pub(super) fn registration(inner: &Arc<Inner>, method: &str) -> Option<Registration> {
    let handler: Arc<dyn Handler> = match method {
        BULK_PULL_METHOD => {
            let weak = Arc::downgrade(inner);
            Arc::new(DeferredHandler {
                f: move |r: Responder<Blob>,
                         (incarnation, id, offset, len): (u128, u64, u64, u64)| {
                    // A dropped responder answers with an error.
                    let Some(inner) = weak.upgrade() else { return };
                    match owned(&inner, incarnation, id)
                        .and_then(|()| inner.bulk.pull(id, offset, len))
                    {
                        Ok(bytes) => r.ok(Blob(bytes)),
                        Err(e) => r.raw_err(WireError::Bulk(e)),
                    }
                },
                _types: PhantomData,
            })
        }
        BULK_PUSH_METHOD => {
            let weak = Arc::downgrade(inner);
            Arc::new(DeferredHandler {
                f: move |r: Responder<()>, (incarnation, id, offset, data): (u128, u64, u64, Blob)| {
                    let Some(inner) = weak.upgrade() else { return };
                    match owned(&inner, incarnation, id).and_then(|()| inner.bulk.push(id, offset, data.bytes())) {
                        Ok(()) => r.ok(()),
                        Err(e) => r.raw_err(WireError::Bulk(e)),
                    }
                },
                _types: PhantomData,
            })
        }
        _ => return None,
    };
    Some(Registration {
        handler,
        counters: Arc::new(Counters::default()),
    })
}

/// A handle from an earlier run of a peer with our name is unknown here.
fn owned(inner: &Inner, incarnation: u128, id: u64) -> Result<(), BulkError> {
    if incarnation == inner.incarnation {
        Ok(())
    } else {
        Err(BulkError::UnknownHandle { id })
    }
}

/// The byte range of `len` bytes at `offset` in a region of `size` bytes.
fn check_range(id: u64, offset: u64, len: u64, size: usize) -> Result<Range<usize>, BulkError> {
    let out = || BulkError::OutOfRange {
        id,
        offset,
        len,
        size: size as u64,
    };
    let end = offset.checked_add(len).ok_or_else(out)?;
    if end > size as u64 {
        return Err(out());
    }
    // Both are at most `size`, a usize.
    Ok(offset as usize..end as usize)
}

fn with_id(e: BulkError, id: u64) -> BulkError {
    match e {
        BulkError::OutOfRange {
            offset, len, size, ..
        } => BulkError::OutOfRange {
            id,
            offset,
            len,
            size,
        },
        other => other,
    }
}

fn bulk_error(handle: &BulkHandle, error: BulkError) -> Error {
    Error::Bulk {
        peer: handle.owner.clone(),
        error,
    }
}
