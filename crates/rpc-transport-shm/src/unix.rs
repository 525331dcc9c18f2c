//! The Unix socket side: `shm://` addresses, listening and connecting
//! without following symlinks, the peer's credentials, and descriptors
//! passed with `SCM_RIGHTS`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rpc_core::TransportError;
use rpc_core::transport::Address;
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};

use crate::error::ShmError;

/// The abstract-namespace prefix of named listeners.
const ABSTRACT_PREFIX: &str = "rpc-shm/";
/// The longest listener name (the abstract address holds 107 bytes).
const MAX_NAME_LEN: usize = 96;

/// Where a listener is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `shm://NAME`: the abstract socket `\0rpc-shm/NAME`, which leaves no
    /// file behind, whatever happens to the process.
    Name(String),
    /// `shm:///abs/path`: a socket file.
    Path(PathBuf),
}

impl Endpoint {
    /// Parses `shm://NAME` or `shm:///abs/path`.
    pub(crate) fn parse(addr: &Address) -> Result<Self, TransportError> {
        let invalid = |reason: &str| TransportError::InvalidAddress {
            addr: addr.to_string(),
            reason: reason.to_owned(),
        };
        if addr.scheme() != "shm" {
            return Err(invalid("the shm transport serves shm:// addresses"));
        }
        let rest = addr.rest();
        if rest.starts_with('/') {
            if rest.len() > 100 || rest.contains('\0') {
                return Err(invalid("a socket path must be at most 100 bytes"));
            }
            return Ok(Self::Path(PathBuf::from(rest)));
        }
        let valid = rest.len() <= MAX_NAME_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return Err(invalid(
                "a name is at most 96 letters, digits, '-', '.' or '_', or an absolute path",
            ));
        }
        Ok(Self::Name(rest.to_owned()))
    }

    /// The address as a URI.
    pub(crate) fn uri(&self) -> String {
        match self {
            Self::Name(name) => format!("shm://{name}"),
            Self::Path(path) => format!("shm://{}", path.display()),
        }
    }

    /// The path tokio binds or connects to; abstract names start with NUL.
    fn socket_path(&self) -> PathBuf {
        match self {
            Self::Name(name) => {
                let mut bytes = vec![0u8];
                bytes.extend_from_slice(ABSTRACT_PREFIX.as_bytes());
                bytes.extend_from_slice(name.as_bytes());
                PathBuf::from(OsStr::from_bytes(&bytes))
            }
            Self::Path(path) => path.clone(),
        }
    }
}

/// A name for `shm://0`: unique on the host for the life of this process.
pub(crate) fn fresh_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("auto-{}-{n}-{:08x}", std::process::id(), rand_u32())
}

/// A little randomness, so that a recycled pid does not pick the name of a
/// listener that a previous process left (abstract sockets vanish with
/// their process, but another live process may use the same scheme).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now()) as u32
}

/// A bound socket file, unlinked when the listener goes, if it is still
/// ours.
#[derive(Debug)]
pub(crate) struct BoundPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for BoundPath {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a listener. A socket file is never created through a symlink, and
/// an old one is removed only if it is a socket of ours that nobody listens
/// on any more.
pub(crate) fn bind(endpoint: &Endpoint) -> io::Result<(UnixListener, Option<BoundPath>)> {
    let Endpoint::Path(path) = endpoint else {
        return Ok((UnixListener::bind(endpoint.socket_path())?, None));
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is a symlink; refusing to follow it", path.display()),
            ));
        }
        Ok(meta) if meta.file_type().is_socket() && meta.uid() == euid() => {
            if is_listening(path) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} has a live listener", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} exists and is not a stale socket of ours",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // bind() creates the file itself and fails if anything (a symlink
    // included) appeared there meanwhile; it never follows one.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((
        listener,
        Some(BoundPath {
            path: path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
        }),
    ))
}

fn is_listening(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Connects to a listener; a socket path must not be a symlink.
pub(crate) async fn connect(endpoint: &Endpoint) -> io::Result<UnixStream> {
    if let Endpoint::Path(path) = endpoint {
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not a socket (symlinks are not followed)",
                    path.display()
                ),
            ));
        }
    }
    UnixStream::connect(endpoint.socket_path()).await
}

/// Our effective uid.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks that the process at the other end runs as our user. Returns its
/// pid.
pub(crate) fn check_peer(sock: &UnixStream) -> Result<u32, ShmError> {
    let cred = sock.peer_cred().map_err(|source| ShmError::Sys {
        op: "getsockopt(SO_PEERCRED)",
        source,
    })?;
    if cred.uid() != euid() {
        return Err(ShmError::PeerUser {
            peer: cred.uid(),
            ours: euid(),
        });
    }
    Ok(cred.pid().map_or(0, |p| p as u32))
}

/// Sends `data` with `fds` attached.
pub(crate) async fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let sent = sock
        .async_io(Interest::WRITABLE, || sendmsg(sock.as_raw_fd(), data, fds))
        .await?;
    if sent != data.len() {
        // A fresh socket's buffer takes a few dozen bytes whole.
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short sendmsg"));
    }
    Ok(())
}

/// Receives exactly `buf.len()` bytes, and up to `max_fds` descriptors sent
/// with the first of them.
pub(crate) async fn recv_with_fds(
    sock: &UnixStream,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<Vec<OwnedFd>> {
    let (mut got, fds) = sock
        .async_io(Interest::READABLE, || {
            recvmsg(sock.as_raw_fd(), buf, max_fds)
        })
        .await?;
    while got < buf.len() {
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        sock.readable().await?;
        match sock.try_read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(fds)
}

/// Receives exactly `buf.len()` bytes.
pub(crate) async fn recv_exact(sock: &UnixStream, buf: &mut [u8]) -> io::Result<()> {
    let fds = recv_with_fds(sock, buf, 0).await?;
    debug_assert!(fds.is_empty());
    Ok(())
}

/// One `sendmsg` of `data` with `fds` attached; returns the bytes sent.
pub(crate) fn sendmsg(fd: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one header with
        // `fd_bytes` of data (CMSG_SPACE), so CMSG_FIRSTHDR is not null and
        // CMSG_DATA has room for the descriptors.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                fd_bytes,
            );
        }
    }
    // SAFETY: `msg` points at live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn recvmsg(fd: RawFd, buf: &mut [u8], max_fds: usize) -> io::Result<(usize, Vec<OwnedFd>)> {
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE((max_fds.max(1) * 4) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg`'s control part; the CMSG macros walk
    // it within `msg_controllen`, and each SCM_RIGHTS header carries
    // `(cmsg_len - CMSG_LEN(0)) / 4` descriptors, now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg);
                for i in 0..bytes / 4 {
                    let raw = data.add(i * 4).cast::<RawFd>().read_unaligned();
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > max_fds {
        // The descriptors we did get close when `fds` drops.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many descriptors",
        ));
    }
    Ok((n as usize, fds))
}

/// Whether `fd` is an eventfd (and not, say, a pipe that could block us).
pub(crate) fn is_eventfd(fd: &OwnedFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventfd]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Option<Endpoint>) {
        let addr = Address::parse(input).unwrap();
        assert_eq!(Endpoint::parse(&addr).ok(), expect, "{input}");
    }

    #[test]
    fn parses_names_and_paths() {
        check("shm://server", Some(Endpoint::Name("server".into())));
        check("shm://a-b.c_9", Some(Endpoint::Name("a-b.c_9".into())));
        check(
            "shm:///tmp/x.sock",
            Some(Endpoint::Path("/tmp/x.sock".into())),
        );
        check("shm://a/b", None);
        check("shm://a:b", None);
        check(&format!("shm://{}", "x".repeat(97)), None);
        check(&format!("shm:///{}", "x".repeat(100)), None);
        check("tcp://a:1", None);
        assert_eq!(Endpoint::Name("n".into()).uri(), "shm://n");
        assert_eq!(Endpoint::Path("/p".into()).uri(), "shm:///p");
        assert_ne!(fresh_name(), fresh_name());
    }
}
