//! Sealed snapshots: a memfd holding a copy of a region, sealed so that
//! nobody, its creator included, can ever change, shrink or grow it; and
//! its read-only mapping on the reader, after checking those seals.
//!
//! The seals are what make handing the mapping out as immutable `Bytes`
//! sound: the bytes cannot change under the reader, and the pages cannot
//! vanish (no `SIGBUS`), whatever the owner does afterwards.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use memmap2::{Mmap, MmapOptions};

use crate::error::ShmError;
use crate::segment;

/// The seals a snapshot must carry before a reader maps it.
const REQUIRED: libc::c_int = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// A new memfd holding `data`, sealed for good.
pub(crate) fn create(data: &[u8]) -> Result<OwnedFd, ShmError> {
    let file = std::fs::File::from(segment::memfd(c"rpc-bulk")?);
    // `write` rather than a writable mapping: F_SEAL_WRITE cannot be added
    // while a writable shared mapping exists.
    file.write_all_at(data, 0).map_err(|source| ShmError::Sys {
        op: "pwrite(memfd)",
        source,
    })?;
    let fd = OwnedFd::from(file);
    // SAFETY: plain call on a descriptor we own.
    if unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_ADD_SEALS,
            REQUIRED | libc::F_SEAL_SEAL,
        )
    } != 0
    {
        return Err(ShmError::last_os("fcntl(F_ADD_SEALS)"));
    }
    Ok(fd)
}

/// Maps a snapshot an owner sent, read-only, after checking that it is a
/// memfd sealed against writing and resizing and that it holds exactly
/// `len` bytes.
pub(crate) fn map(fd: &OwnedFd, len: u64) -> Result<Mmap, ShmError> {
    let bad = ShmError::BulkSnapshot;
    // SAFETY: plain call on a descriptor we own; anything but a memfd
    // fails with EINVAL.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 || seals & REQUIRED != REQUIRED {
        return Err(bad("the memfd is not sealed against writing and resizing"));
    }
    // SAFETY: `stat` is plain data, filled by the kernel on success.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(ShmError::last_os("fstat"));
    }
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG || stat.st_size as u64 != len || len == 0 {
        return Err(bad("the memfd's size does not match the region's"));
    }
    let len = usize::try_from(len).map_err(|_| bad("the region does not fit in memory"))?;
    // MAP_POPULATE: one system call maps every page, rather than a fault
    // per page on first touch (64 MiB: ~3× faster to read once in a VM).
    // The owner copied the whole region for this snapshot anyway.
    // SAFETY: the file is sealed against writes, shrinking and growing
    // (checked above, and seals can only be added), so the mapped bytes
    // never change and never go away while the mapping lives: reading them
    // as an immutable slice is sound.
    unsafe { MmapOptions::new().len(len).populate().map(fd.as_raw_fd()) }
        .map_err(|source| ShmError::Sys { op: "mmap", source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_maps_and_cannot_be_changed() {
        let fd = create(b"hello").unwrap();
        assert_eq!(&map(&fd, 5).unwrap()[..], b"hello");
        assert!(matches!(map(&fd, 4), Err(ShmError::BulkSnapshot(_))));
        let file = std::fs::File::from(fd);
        assert!(file.write_at(b"j", 0).is_err(), "sealed against writes");
        assert!(file.set_len(1).is_err(), "sealed against shrinking");
    }

    #[test]
    fn unsealed_or_foreign_descriptors_are_refused() {
        let plain = segment::memfd(c"test").unwrap();
        std::fs::File::from(plain.try_clone().unwrap())
            .set_len(4096)
            .unwrap();
        assert!(matches!(map(&plain, 4096), Err(ShmError::BulkSnapshot(_))));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(matches!(map(&a.into(), 1), Err(ShmError::BulkSnapshot(_))));
    }
}
