//! The owner's side: the table of registered regions, and the bulk server
//! that hands their sealed snapshots to readers on the same host.
//!
//! The server starts with the first registration: an abstract Unix socket
//! `\0rpc-shm-bulk/NAME` (NAME = pid and 64 random bits), an accept thread,
//! and a thread per reader connection. Threads rather than tokio tasks,
//! because `register` is synchronous and may run outside any runtime; a
//! host has few reader processes, and each keeps its connections open.
//! Dropping the [`Owner`] shuts the sockets down, which ends the threads.
//!
//! A region is copied into a memfd only when a reader first asks for it
//! (so exposing costs nothing for regions nobody on this host reads), and
//! again when the owner has written to it since: the entry holds the
//! snapshot it copied, so a write to the `BulkRegion` cannot happen in
//! place and shows up as a new buffer.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rpc_core::BulkRegion;

use super::wire::{Descriptor, REPLY_LEN, REQUEST_LEN, Reply, Request, Token};
use super::{lock, sealed};
use crate::error::ShmError;
use crate::unix;
use crate::wait::Stats;

/// The abstract-namespace prefix of bulk sockets.
pub(crate) const SOCKET_PREFIX: &str = "rpc-shm-bulk/";

/// Registered regions and, once started, the server for them.
#[derive(Debug)]
pub(crate) struct Owner {
    table: Arc<Table>,
    server: OnceLock<Option<Server>>,
}

#[derive(Debug)]
struct Table {
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
    stats: Arc<Stats>,
}

#[derive(Debug)]
struct Entry {
    token: Token,
    region: BulkRegion,
    snapshot: Mutex<Option<Snapshot>>,
}

/// A region's contents copied into a sealed memfd.
#[derive(Debug)]
struct Snapshot {
    fd: OwnedFd,
    /// The region's buffer the memfd copies. Holding it keeps the region
    /// from being written in place, so a write shows as another buffer.
    held: Bytes,
    generation: u64,
}

impl Owner {
    /// An owner with no regions and no server yet.
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self {
            table: Arc::new(Table {
                entries: Mutex::default(),
                stats,
            }),
            server: OnceLock::new(),
        }
    }

    /// Registers a region under `id` and describes it, or `None` if the
    /// server cannot run here (the framed copy then serves the region).
    pub(crate) fn register(&self, id: u64, region: &BulkRegion) -> Option<Descriptor> {
        let server = self
            .server
            .get_or_init(|| {
                Server::start(self.table.clone())
                    .inspect_err(|e| tracing::warn!("no shm bulk server, bulk data is framed: {e}"))
                    .ok()
            })
            .as_ref()?;
        let token = random::<16>()
            .inspect_err(|e| tracing::warn!("no token for a bulk region: {e}"))
            .ok()?;
        let entry = Entry {
            token,
            region: region.clone(),
            snapshot: Mutex::new(None),
        };
        lock(&self.table.entries).insert(id, Arc::new(entry));
        Some(Descriptor {
            name: server.name.clone(),
            id,
            token,
            len: region.len() as u64,
        })
    }

    /// Forgets region `id`: later requests are refused. Its memfd closes
    /// here; readers that mapped it keep their (immutable) pages.
    pub(crate) fn deregister(&self, id: u64) {
        lock(&self.table.entries).remove(&id);
    }
}

impl Table {
    /// The answer to `req`, with the memfd to pass if there is one.
    fn answer(&self, req: &Request) -> (Reply, Option<OwnedFd>) {
        let entry = lock(&self.entries)
            .get(&req.id)
            .filter(|e| same_token(&e.token, &req.token))
            .cloned();
        let Some(entry) = entry else {
            return (Reply::Refused, None);
        };
        match self.snapshot(&entry, req.generation) {
            Ok(answer) => answer,
            Err(e) => {
                // The reader falls back to the framed copy.
                tracing::warn!(id = req.id, "bulk snapshot failed: {e}");
                (Reply::Refused, None)
            }
        }
    }

    fn snapshot(&self, entry: &Entry, have: u64) -> Result<(Reply, Option<OwnedFd>), ShmError> {
        let current = entry.region.snapshot();
        let mut slot = lock(&entry.snapshot);
        let snap = match slot.take() {
            Some(s) if s.held.as_ptr() == current.as_ptr() && s.held.len() == current.len() => s,
            old => {
                let generation = old.map_or(1, |s| s.generation + 1);
                let fd = sealed::create(&current)?;
                Stats::bump(&self.stats.bulk_snapshots);
                Snapshot {
                    fd,
                    held: current,
                    generation,
                }
            }
        };
        let generation = snap.generation;
        let answer = if have == generation {
            (Reply::Current { generation }, None)
        } else {
            let len = snap.held.len() as u64;
            let fd = snap.fd.try_clone().map_err(|source| ShmError::Sys {
                op: "dup(memfd)",
                source,
            })?;
            (Reply::Fd { generation, len }, Some(fd))
        };
        *slot = Some(snap);
        Ok(answer)
    }
}

/// The bulk socket and its threads.
#[derive(Debug)]
struct Server {
    name: String,
    listener: UnixListener,
    conns: Arc<Mutex<HashMap<u64, UnixStream>>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(table: Arc<Table>) -> Result<Self, ShmError> {
        let sys = |op| move |source| ShmError::Sys { op, source };
        let name = format!(
            "{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(random()?)
        );
        let addr = SocketAddr::from_abstract_name(format!("{SOCKET_PREFIX}{name}"))
            .map_err(sys("bind(bulk socket)"))?;
        let listener = UnixListener::bind_addr(&addr).map_err(sys("bind(bulk socket)"))?;
        let accepting = listener.try_clone().map_err(sys("dup(bulk socket)"))?;
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        let accept = std::thread::Builder::new()
            .name("rpc-shm-bulk".into())
            .spawn(move || accept_loop(&accepting, &table, &c, &s))
            .map_err(sys("spawn(bulk server)"))?;
        Ok(Self {
            name,
            listener,
            conns,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Shutting a listening socket down wakes the thread blocked in
        // accept (with EINVAL); shutting a connection down ends its
        // thread's blocking read.
        shutdown(self.listener.as_raw_fd());
        for conn in lock(&self.conns).values() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        // The accept thread only checks `stop` and returns: a short wait.
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn shutdown(fd: RawFd) {
    // SAFETY: plain call on a descriptor `self` owns; failure is harmless.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

fn accept_loop(
    listener: &UnixListener,
    table: &Arc<Table>,
    conns: &Arc<Mutex<HashMap<u64, UnixStream>>>,
    stop: &AtomicBool,
) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let sock = match accepted {
            Ok((sock, _)) => sock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors, say: back off rather than spin.
                tracing::warn!("bulk server accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let key = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(handle) = sock.try_clone() else {
            continue;
        };
        lock(conns).insert(key, handle);
        // A connection that arrived as we stopped is shut down here, as
        // `Drop` may have looked at the table before the insert.
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (table, all) = (table.clone(), conns.clone());
        let spawned = std::thread::Builder::new()
            .name("rpc-shm-bulk-c".into())
            .spawn(move || {
                if let Err(e) = serve(sock, &table) {
                    tracing::debug!("bulk reader connection ended: {e}");
                }
                lock(&all).remove(&key);
            });
        if spawned.is_err() {
            lock(conns).remove(&key);
        }
    }
}

/// Answers one reader's requests until it hangs up.
fn serve(mut sock: UnixStream, table: &Table) -> Result<(), ShmError> {
    let uid = peer_uid(sock.as_raw_fd()).map_err(|source| ShmError::Sys {
        op: "getsockopt(SO_PEERCRED)",
        source,
    })?;
    if uid != unix::euid() {
        return Err(ShmError::PeerUser {
            peer: uid,
            ours: unix::euid(),
        });
    }
    let mut buf = [0u8; REQUEST_LEN];
    loop {
        match sock.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(source) => return Err(ShmError::Sys { op: "recv", source }),
        }
        let req = Request::decode(&buf).ok_or(ShmError::BulkProtocol("unknown request"))?;
        let (reply, fd) = table.answer(&req);
        let fds: Vec<RawFd> = fd.iter().map(AsRawFd::as_raw_fd).collect();
        let sent = unix::sendmsg(sock.as_raw_fd(), &reply.encode(), &fds).map_err(|source| {
            ShmError::Sys {
                op: "sendmsg",
                source,
            }
        })?;
        if sent != REPLY_LEN {
            return Err(ShmError::BulkProtocol("short reply"));
        }
    }
}

/// The uid of the process at the other end of a Unix socket.
fn peer_uid(fd: RawFd) -> io::Result<u32> {
    // SAFETY: `ucred` is plain data; zero is a valid value.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid descriptor, and an out pointer with its true length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Compares tokens in constant time.
fn same_token(a: &Token, b: &Token) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `N` bytes from the kernel's random source.
fn random<const N: usize>() -> Result<[u8; N], ShmError> {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe `rest`, which we own.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(ShmError::Sys {
                    op: "getrandom",
                    source: e,
                });
            }
        } else {
            // At most `rest.len()`, a usize.
            filled += n as usize;
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn tokens_compare_and_random_bytes_differ() {
        assert!(same_token(&[1; 16], &[1; 16]));
        assert!(!same_token(
            &[1; 16],
            &[[1; 15].as_slice(), &[0]].concat().try_into().unwrap()
        ));
        assert_ne!(random::<16>().unwrap(), random::<16>().unwrap());
    }

    #[test]
    fn a_snapshot_is_made_once_and_again_after_a_write() {
        let stats = Arc::new(Stats::default());
        let owner = Owner::new(stats.clone());
        let region = BulkRegion::new(vec![1u8; 8192]);
        let desc = owner.register(5, &region).unwrap();
        let ask = |generation| {
            owner.table.answer(&Request {
                id: 5,
                token: desc.token,
                generation,
            })
        };
        let (reply, fd) = ask(0);
        assert_eq!(
            reply,
            Reply::Fd {
                generation: 1,
                len: 8192
            }
        );
        assert!(fd.is_some());
        let (reply, fd) = ask(1);
        assert_eq!(reply, Reply::Current { generation: 1 });
        assert!(fd.is_none());
        assert_eq!(stats.bulk_snapshots.load(Ordering::Relaxed), 1);
        region.write(0, b"x").unwrap();
        let (reply, fd) = ask(1);
        assert_eq!(
            reply,
            Reply::Fd {
                generation: 2,
                len: 8192
            }
        );
        assert_eq!(sealed::map(&fd.unwrap(), 8192).unwrap()[0], b'x');
        // A wrong token, an unknown id, a deregistered region.
        let wrong = Request {
            id: 5,
            token: [0; 16],
            generation: 0,
        };
        assert_eq!(owner.table.answer(&wrong).0, Reply::Refused);
        owner.deregister(5);
        assert_eq!(ask(0).0, Reply::Refused);
    }

    #[test]
    fn dropping_the_owner_stops_the_server_and_hangs_up() {
        let owner = Owner::new(Arc::default());
        let desc = owner.register(1, &BulkRegion::new(vec![1u8; 10])).unwrap();
        let addr = SocketAddr::from_abstract_name(format!("{SOCKET_PREFIX}{}", desc.name)).unwrap();
        let mut reader = UnixStream::connect_addr(&addr).unwrap();
        reader
            .write_all(
                &Request {
                    id: 1,
                    token: desc.token,
                    generation: 0,
                }
                .encode(),
            )
            .unwrap();
        let mut reply = [0u8; REPLY_LEN];
        reader.read_exact(&mut reply).unwrap();
        assert!(matches!(
            Reply::decode(&reply),
            Some(Reply::Fd {
                generation: 1,
                len: 10
            })
        ));
        // Returns once the accept thread has ended (`Drop` joins it).
        drop(owner);
        assert!(UnixStream::connect_addr(&addr).is_err(), "nobody listens");
        assert_eq!(reader.read(&mut reply).unwrap(), 0, "the server hung up");
    }
}
