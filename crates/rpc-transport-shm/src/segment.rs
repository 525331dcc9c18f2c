//! The shared segment: one sealed memfd holding both directions' rings and
//! arenas, its layout, and its validation on the receiving side.
//!
//! ```text
//! offset                      contents
//! 0                           header (magic, version, sizes), one page
//! 4096                        ring control blocks, client→server then server→client
//! 8192                        arena block flags c→s, then s→c (u32 each, page-rounded)
//! ...                         ring data c→s, then s→c (ring_bytes each, page-rounded)
//! ...                         arena c→s, then s→c (arena_bytes each)
//! ```
//!
//! The client creates the memfd (`MFD_CLOEXEC | MFD_ALLOW_SEALING`), sizes
//! it, seals it against shrinking and growing (so neither side can make the
//! other's mapping fault with `SIGBUS`) and passes it over the Unix socket.
//! It has no name in any file system: when both processes have unmapped it
//! (or died), the kernel frees it, and nothing is ever left in `/dev/shm`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use memmap2::{MmapOptions, MmapRaw};

use crate::config::{ARENA_BLOCK, check_geometry};
use crate::error::ShmError;
use crate::ring::{RING_CTL_LEN, RingCtl, RingMem};

/// The first 8 bytes of a segment.
const MAGIC: u64 = u64::from_le_bytes(*b"RPCSHMs\x01");
/// The segment layout version.
const VERSION: u32 = 1;
/// Pages, for rounding.
const PAGE: usize = 4096;
/// The seals a segment must carry.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// One direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Client to server.
    ToServer = 0,
    /// Server to client.
    ToClient = 1,
}

/// The sizes both sides agree on in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Bytes of each ring.
    pub ring_bytes: u64,
    /// Bytes of each arena.
    pub arena_bytes: u64,
}

/// Where everything is, computed from a [`Geometry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub geometry: Geometry,
    ctl: [usize; 2],
    flags: [usize; 2],
    ring: [usize; 2],
    arena: [usize; 2],
    /// Arena blocks per direction.
    pub blocks: usize,
    /// The whole segment.
    pub len: usize,
}

/// The header at offset 0, as written by the creator.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    magic: u64,
    version: u32,
    block: u32,
    ring_bytes: u64,
    arena_bytes: u64,
    len: u64,
}

impl Layout {
    /// The layout for checked sizes.
    pub(crate) fn new(geometry: Geometry) -> Result<Self, ShmError> {
        check_geometry(geometry.ring_bytes, geometry.arena_bytes)?;
        // Checked above: both fit in usize on 64-bit targets.
        let ring = geometry.ring_bytes as usize;
        let arena = geometry.arena_bytes as usize;
        let blocks = arena / ARENA_BLOCK;
        let flags_len = round_up(blocks * 4);
        let mut at = PAGE;
        let ctl = [at, at + RING_CTL_LEN];
        at += PAGE;
        let flags = [at, at + flags_len];
        at += 2 * flags_len;
        let ring_at = [at, at + round_up(ring)];
        at += 2 * round_up(ring);
        let arena_at = [at, at + arena];
        at += 2 * arena;
        Ok(Self {
            geometry,
            ctl,
            flags,
            ring: ring_at,
            arena: arena_at,
            blocks,
            len: at,
        })
    }

    fn header(&self) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            block: ARENA_BLOCK as u32,
            ring_bytes: self.geometry.ring_bytes,
            arena_bytes: self.geometry.arena_bytes,
            len: self.len as u64,
        }
    }
}

/// A new empty memfd that can be sealed, named `name` in
/// `/proc/PID/maps` (and nowhere in any file system).
pub(crate) fn memfd(name: &std::ffi::CStr) -> Result<OwnedFd, ShmError> {
    // SAFETY: a valid NUL-terminated name and flags; the result is checked.
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(ShmError::last_os("memfd_create"));
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn round_up(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// A mapped segment. Shared by both halves of a connection and by every
/// attachment handed out from its arenas, so it stays mapped while any of
/// them lives.
#[derive(Debug)]
pub(crate) struct Segment {
    map: MmapRaw,
    layout: Layout,
}

impl Segment {
    /// Creates, sizes, maps and seals a fresh segment. Returns it with the
    /// memfd to pass to the peer.
    pub(crate) fn create(geometry: Geometry) -> Result<(Self, OwnedFd), ShmError> {
        let layout = Layout::new(geometry)?;
        let fd = memfd(c"rpc-shm")?;
        let len = libc::off_t::try_from(layout.len)
            .map_err(|_| ShmError::Config("the segment is too large".into()))?;
        // SAFETY: plain call on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
            return Err(ShmError::last_os("ftruncate"));
        }
        // SAFETY: plain call on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
            return Err(ShmError::last_os("fcntl(F_ADD_SEALS)"));
        }
        let segment = Self::map(&fd, layout)?;
        // SAFETY: the header lies at the start of a mapping of at least one
        // page, and nobody else has the segment yet.
        unsafe {
            segment
                .map
                .as_mut_ptr()
                .cast::<Header>()
                .write(layout.header())
        };
        Ok((segment, fd))
    }

    /// Maps a segment a peer sent, after checking that it is sealed, has the
    /// size `geometry` implies, and carries the matching header.
    pub(crate) fn open(fd: &OwnedFd, geometry: Geometry) -> Result<Self, ShmError> {
        let layout = Layout::new(geometry)?;
        // SAFETY: plain call on a descriptor we own.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals < 0 || seals & needed != needed {
            return Err(ShmError::Segment(
                "the memfd is not sealed against resizing",
            ));
        }
        // SAFETY: `stat` is plain data, filled by the kernel on success.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a valid out pointer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(ShmError::last_os("fstat"));
        }
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG || stat.st_size as u64 != layout.len as u64
        {
            return Err(ShmError::Segment("the memfd's size does not match"));
        }
        let segment = Self::map(fd, layout)?;
        // SAFETY: the mapping is at least one page; the header is read once,
        // by value, and then only compared.
        let header = unsafe { segment.map.as_ptr().cast::<Header>().read_volatile() };
        if header != layout.header() {
            return Err(ShmError::Segment("the header does not match the handshake"));
        }
        Ok(segment)
    }

    fn map(fd: &OwnedFd, layout: Layout) -> Result<Self, ShmError> {
        let map = MmapOptions::new()
            .len(layout.len)
            .map_raw(fd.as_raw_fd())
            .map_err(|source| ShmError::Sys { op: "mmap", source })?;
        Ok(Self { map, layout })
    }

    /// The layout.
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    fn at(&self, offset: usize) -> NonNull<u8> {
        debug_assert!(offset < self.layout.len);
        // SAFETY: every offset the layout hands out is inside the mapping,
        // whose base is not null.
        unsafe { NonNull::new_unchecked(self.map.as_mut_ptr().add(offset)) }
    }

    /// The block flags of one direction's arena.
    pub(crate) fn arena_flags(&self, dir: Dir) -> &[AtomicU32] {
        let ptr = self.at(self.layout.flags[dir as usize]).cast::<AtomicU32>();
        // SAFETY: the flags region holds `blocks` aligned u32s inside the
        // mapping, which lives as long as `self`; shared memory is only ever
        // accessed through atomics here.
        unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.layout.blocks) }
    }

    /// The start of one direction's arena.
    pub(crate) fn arena(&self, dir: Dir) -> NonNull<u8> {
        self.at(self.layout.arena[dir as usize])
    }
}

/// One direction's ring in a segment, as [`RingMem`].
#[derive(Debug)]
pub(crate) struct ShmRing {
    ctl: NonNull<RingCtl>,
    data: NonNull<u8>,
    capacity: u64,
    /// Keeps the mapping alive.
    _segment: Arc<Segment>,
}

// SAFETY: the pointers point into a mapping that `_segment` keeps alive, and
// the ring only touches it through atomics and through byte ranges the
// protocol gives to one side at a time.
unsafe impl Send for ShmRing {}
// SAFETY: as above.
unsafe impl Sync for ShmRing {}

impl ShmRing {
    /// The ring of direction `dir`.
    pub(crate) fn new(segment: &Arc<Segment>, dir: Dir) -> Self {
        let layout = segment.layout();
        Self {
            ctl: segment.at(layout.ctl[dir as usize]).cast(),
            data: segment.at(layout.ring[dir as usize]),
            capacity: layout.geometry.ring_bytes,
            _segment: segment.clone(),
        }
    }
}

// SAFETY: `write` and `read` copy within the `capacity` data bytes, split in
// two where a range wraps.
unsafe impl RingMem for ShmRing {
    fn ctl(&self) -> &RingCtl {
        // SAFETY: the control block lies inside the mapping at a 512-byte
        // aligned offset, is made of atomics only (any bit pattern is valid),
        // and lives as long as `_segment`.
        unsafe { self.ctl.as_ref() }
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    unsafe fn write(&self, at: u64, src: &[u8]) {
        let start = (at & (self.capacity - 1)) as usize;
        let first = src.len().min(self.capacity as usize - start);
        // SAFETY: `start + first <= capacity` and the rest, at most
        // `capacity - first` bytes, goes to the start of the data; the
        // caller owns the range, and `src` cannot overlap shared memory we
        // are writing (it is ours, or the peer's read-only arena).
        unsafe {
            let data = self.data.as_ptr();
            std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(start), first);
            if first < src.len() {
                std::ptr::copy_nonoverlapping(src.as_ptr().add(first), data, src.len() - first);
            }
        }
    }

    fn touch(&self, at: u64) {
        let start = (at & (self.capacity - 1)) as usize;
        // SAFETY: `start < capacity`, so the address lies inside the
        // mapping. A prefetch is a hint, not a memory access: it neither
        // faults nor races with the producer's writes.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(self.data.as_ptr().add(start).cast::<i8>());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = start;
    }

    unsafe fn read(&self, at: u64, dst: *mut u8, len: usize) {
        let start = (at & (self.capacity - 1)) as usize;
        let first = len.min(self.capacity as usize - start);
        // SAFETY: as in `write`, and the caller gives `dst` valid for `len`.
        unsafe {
            let data = self.data.as_ptr();
            std::ptr::copy_nonoverlapping(data.add(start), dst, first);
            if first < len {
                std::ptr::copy_nonoverlapping(data, dst.add(first), len - first);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_page_aligned_and_sized() {
        let layout = Layout::new(Geometry {
            ring_bytes: 64,
            arena_bytes: 8 * 4096,
        })
        .unwrap();
        assert_eq!(layout.blocks, 8);
        assert_eq!(layout.ctl, [4096, 4096 + RING_CTL_LEN]);
        assert_eq!(layout.flags, [8192, 12288]);
        assert_eq!(layout.ring, [16384, 20480]);
        assert_eq!(layout.arena, [24576, 24576 + 32768]);
        assert_eq!(layout.len, 24576 + 65536);
        assert_eq!(RING_CTL_LEN, 512);
    }

    #[test]
    fn a_created_segment_opens_and_a_mismatch_does_not() {
        let geometry = Geometry {
            ring_bytes: 4096,
            arena_bytes: 4096,
        };
        let (_seg, fd) = Segment::create(geometry).unwrap();
        assert!(Segment::open(&fd, geometry).is_ok());
        let other = Geometry {
            ring_bytes: 8192,
            arena_bytes: 4096,
        };
        assert!(matches!(
            Segment::open(&fd, other),
            Err(ShmError::Segment(_))
        ));
        // An unsealed memfd is refused.
        // SAFETY: valid name and flags.
        let raw = unsafe { libc::memfd_create(c"test".as_ptr(), libc::MFD_CLOEXEC) };
        // SAFETY: a fresh descriptor.
        let plain = unsafe { OwnedFd::from_raw_fd(raw) };
        assert!(matches!(
            Segment::open(&plain, geometry),
            Err(ShmError::Segment(_))
        ));
    }
}
