//! The bulk level of the shared-memory transport
//! ([`BulkTransport`]): a peer on the same host pulls an exposed read-only
//! region by mapping the owner's snapshot of it, without a frame and
//! without a copy.
//!
//! - **Register** (owner): read-only, non-empty regions only. The
//!   descriptor names the owner's bulk socket, the region's id, a random
//!   128-bit token and the length (`wire`). Nothing is copied yet.
//! - **Get** (reader): one round trip on the owner's bulk socket per get,
//!   over a kept-open connection, asks for `(id, token)`. The owner answers
//!   "refused", "your mapping is current", or passes the memfd of a fresh
//!   sealed snapshot (`owner`, `sealed`), which the reader checks and maps
//!   read-only, once per snapshot. The result is a `Bytes` slice of the
//!   mapping: zero copy.
//! - **Deregister** (owner): the entry goes, so every later get is refused
//!   and the engine's framed fallback answers `UnknownHandle`. Slices
//!   pulled before stay valid: they are an immutable snapshot.
//! - **Put**: always the framed copy. A writable region is the owner's
//!   ordinary memory (`BulkRegion`, copy-on-write `Bytes`), which the
//!   transport cannot alias from another process, and writing into memory
//!   that readers hold as immutable `Bytes` would be unsound; so writable
//!   regions are not registered at all.
//!
//! A get that cannot be served here (no bulk socket of that name in this
//! network namespace: another host; a refused or unknown region) returns
//! `Ok(None)` and the engine copies through frames, as it does after an
//! error (a forged descriptor, a range outside the snapshot, an owner of
//! another user).
//!
//! The reader caches its mappings by (socket, id); a refused region is
//! dropped from the cache, and past [`MAX_CACHED`] entries the ones no
//! pulled slice uses any more are unmapped.

mod owner;
mod sealed;
mod wire;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use memmap2::Mmap;
use rpc_core::{BulkMode, BulkRegion, BulkTransport, TransportError};
use tokio::net::UnixStream;

use self::owner::{Owner, SOCKET_PREFIX};
use self::wire::{Descriptor, REPLY_LEN, Reply, Request, Token};
use crate::error::ShmError;
use crate::unix;
use crate::wait::Stats;

/// Mappings a reader keeps before it unmaps those no slice uses.
const MAX_CACHED: usize = 64;
/// Idle connections a reader keeps per owner.
const MAX_IDLE: usize = 4;

/// The bulk level of one `ShmTransport` and its clones: the regions it
/// registered as an owner, and the snapshots it mapped as a reader.
#[derive(Debug)]
pub(crate) struct ShmBulk {
    owner: Owner,
    cache: Mutex<HashMap<(String, u64), Cached>>,
    idle: Mutex<HashMap<String, Vec<UnixStream>>>,
    stats: Arc<Stats>,
}

/// A snapshot this side mapped.
#[derive(Debug)]
struct Cached {
    token: Token,
    generation: u64,
    map: Arc<Mmap>,
}

/// A mapping as the owner of `Bytes` slices.
struct MapRef(Arc<Mmap>);

impl AsRef<[u8]> for MapRef {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl ShmBulk {
    /// A bulk level counting into `stats`.
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self {
            owner: Owner::new(stats.clone()),
            cache: Mutex::default(),
            idle: Mutex::default(),
            stats,
        }
    }

    async fn get_inner(
        &self,
        descriptor: &[u8],
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, ShmError> {
        let desc = Descriptor::decode(descriptor)?;
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= desc.len)
            .ok_or(ShmError::BulkRange {
                offset,
                len,
                size: desc.len,
            })?;
        let key = (desc.name.clone(), desc.id);
        let held = lock(&self.cache)
            .get(&key)
            .filter(|c| c.token == desc.token)
            .map(|c| (c.generation, c.map.clone()));
        let req = Request {
            id: desc.id,
            token: desc.token,
            generation: held.as_ref().map_or(0, |h| h.0),
        };
        let Some((reply, fd)) = self.ask(&desc.name, &req).await? else {
            Stats::bump(&self.stats.bulk_declined);
            return Ok(None);
        };
        let map = match (reply, held, fd) {
            (Reply::Refused, ..) => {
                lock(&self.cache).remove(&key);
                Stats::bump(&self.stats.bulk_declined);
                return Ok(None);
            }
            (Reply::Current { generation }, Some((have, map)), None) if have == generation => map,
            (Reply::Fd { generation, len }, _, Some(fd)) if len == desc.len => {
                let map = Arc::new(sealed::map(&fd, desc.len)?);
                Stats::bump(&self.stats.bulk_maps);
                self.remember(key, desc.token, generation, map.clone());
                map
            }
            _ => return Err(ShmError::BulkProtocol("the owner's reply does not fit")),
        };
        // `end <= desc.len`, the mapping's length, which is a usize.
        let bytes = Bytes::from_owner(MapRef(map)).slice(offset as usize..end as usize);
        Stats::bump(&self.stats.bulk_gets);
        Ok(Some(bytes))
    }

    fn remember(&self, key: (String, u64), token: Token, generation: u64, map: Arc<Mmap>) {
        let mut cache = lock(&self.cache);
        cache.insert(
            key,
            Cached {
                token,
                generation,
                map,
            },
        );
        if cache.len() > MAX_CACHED {
            cache.retain(|_, c| Arc::strong_count(&c.map) > 1);
        }
    }

    /// One round trip with the owner's bulk server; `None` if there is no
    /// such server here.
    async fn ask(
        &self,
        name: &str,
        req: &Request,
    ) -> Result<Option<(Reply, Option<OwnedFd>)>, ShmError> {
        let pooled = lock(&self.idle).get_mut(name).and_then(Vec::pop);
        if let Some(sock) = pooled {
            // A kept connection may have been closed by its owner since;
            // then try a fresh one.
            if let Ok(answer) = round_trip(&sock, req).await {
                self.park(name, sock);
                return Ok(Some(answer));
            }
        }
        let mut path = b"\0".to_vec();
        path.extend_from_slice(SOCKET_PREFIX.as_bytes());
        path.extend_from_slice(name.as_bytes());
        let Ok(sock) = UnixStream::connect(PathBuf::from(OsStr::from_bytes(&path))).await else {
            lock(&self.idle).remove(name);
            return Ok(None);
        };
        unix::check_peer(&sock)?;
        let answer = round_trip(&sock, req).await?;
        self.park(name, sock);
        Ok(Some(answer))
    }

    fn park(&self, name: &str, sock: UnixStream) {
        let mut idle = lock(&self.idle);
        let socks = idle.entry(name.to_owned()).or_default();
        if socks.len() < MAX_IDLE {
            socks.push(sock);
        }
    }
}

/// Sends a request and receives the reply with its memfd, if any. Dropping
/// the future midway leaves `sock` unusable, so callers own it meanwhile
/// and drop it on failure.
async fn round_trip(
    sock: &UnixStream,
    req: &Request,
) -> Result<(Reply, Option<OwnedFd>), ShmError> {
    let sys = |op| move |source| ShmError::Sys { op, source };
    unix::send_with_fds(sock, &req.encode(), &[])
        .await
        .map_err(sys("send(bulk request)"))?;
    let mut buf = [0u8; REPLY_LEN];
    let mut fds = unix::recv_with_fds(sock, &mut buf, 1)
        .await
        .map_err(sys("recv(bulk reply)"))?;
    let reply = Reply::decode(&buf).ok_or(ShmError::BulkProtocol("unknown reply"))?;
    if reply.carries_fd() != (fds.len() == 1) {
        return Err(ShmError::BulkProtocol("a memfd missing or unexpected"));
    }
    Ok((reply, fds.pop()))
}

#[async_trait]
impl BulkTransport for ShmBulk {
    /// Registers read-only, non-empty regions; writable ones are left to
    /// the framed copy (see the [module docs](self)).
    fn register(&self, id: u64, region: &BulkRegion, mode: BulkMode) -> Option<Bytes> {
        if mode != BulkMode::ReadOnly || region.is_empty() {
            return None;
        }
        let desc = self.owner.register(id, region)?;
        Stats::bump(&self.stats.bulk_registered);
        Some(Bytes::from(desc.encode()))
    }

    fn deregister(&self, id: u64) {
        self.owner.deregister(id);
    }

    async fn get(
        &self,
        _owner: &str,
        descriptor: &[u8],
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, TransportError> {
        Ok(self.get_inner(descriptor, offset, len).await?)
    }

    async fn put(
        &self,
        _owner: &str,
        _descriptor: &[u8],
        _offset: u64,
        _data: Bytes,
    ) -> Result<bool, TransportError> {
        Ok(false)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The tables and caches stay consistent whatever panicked while
    // holding them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
