//! Behaviour of the shared-memory transport beyond the conformance suite:
//! socket paths and symlinks, frames larger than the ring, the arena (in
//! place, full, reused), and the ends of a connection.

use std::os::unix::fs::symlink;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::TransportError;
use rpc_core::transport::{Address, ConnOptions, FrameSink, FrameStream, Transport};
use rpc_core::wire::{Frame, FrameKind};
use rpc_transport_shm::{ShmConfig, ShmTransport};

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

/// A connected pair: (client sink, client stream, server sink, server
/// stream).
async fn pair(
    shm: &ShmTransport,
) -> (
    Box<dyn FrameSink>,
    Box<dyn FrameStream>,
    Box<dyn FrameSink>,
    Box<dyn FrameStream>,
) {
    let opts = ConnOptions::default();
    let mut listener = shm.listen(&addr("shm://0"), &opts).await.unwrap();
    let client = shm.connect(listener.local_addr(), &opts).await.unwrap();
    let server = listener.accept().await.unwrap();
    let (ctx, crx) = client.split();
    let (stx, srx) = server.split();
    (ctx, crx, stx, srx)
}

fn blob(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn frame(id: u64, body: Bytes, attachments: Vec<Bytes>) -> Frame {
    let mut f = Frame::new(FrameKind::Response, id);
    f.body = body;
    f.attachments = attachments;
    f
}

fn is_io(e: &TransportError, kind: std::io::ErrorKind) -> bool {
    matches!(e, TransportError::Io { source, .. } if source.kind() == kind)
}

#[tokio::test]
async fn socket_paths_never_go_through_symlinks_and_are_cleaned_up() {
    let dir = std::env::temp_dir().join(format!("rpc-shm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let uri = format!("shm://{}", path.display());
    let shm = ShmTransport::new();
    let opts = ConnOptions::default();

    // A socket file; connecting works; dropping the listener removes it.
    let mut listener = shm.listen(&addr(&uri), &opts).await.unwrap();
    assert_eq!(listener.local_addr().as_str(), uri);
    let _client = shm.connect(&addr(&uri), &opts).await.unwrap();
    let _server = listener.accept().await.unwrap();
    let e = shm.listen(&addr(&uri), &opts).await.unwrap_err();
    assert!(is_io(&e, std::io::ErrorKind::AddrInUse), "{e}");
    drop(listener);
    assert!(!path.exists(), "the socket file is gone");

    // A stale socket of ours (its listener died without unlinking it) is
    // replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = shm.listen(&addr(&uri), &opts).await.unwrap();
    drop(listener);

    // A symlink is neither listened on nor connected through.
    let target = dir.join("target");
    let _real = shm
        .listen(&addr(&format!("shm://{}", target.display())), &opts)
        .await
        .unwrap();
    symlink(&target, &path).unwrap();
    let e = shm.listen(&addr(&uri), &opts).await.unwrap_err();
    assert!(is_io(&e, std::io::ErrorKind::PermissionDenied), "{e}");
    let e = shm.connect(&addr(&uri), &opts).await.unwrap_err();
    assert!(is_io(&e, std::io::ErrorKind::PermissionDenied), "{e}");
    std::fs::remove_file(&path).unwrap();

    // Neither is a plain file replaced.
    std::fs::write(&path, b"data").unwrap();
    let e = shm.listen(&addr(&uri), &opts).await.unwrap_err();
    assert!(is_io(&e, std::io::ErrorKind::AddrInUse), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
    drop(_real);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn names_are_unique_and_released_with_their_listener() {
    let shm = ShmTransport::new();
    let opts = ConnOptions::default();
    let a = shm.listen(&addr("shm://0"), &opts).await.unwrap();
    let b = shm.listen(&addr("shm://0"), &opts).await.unwrap();
    assert_ne!(a.local_addr(), b.local_addr());
    let name = format!("fixed-{}", std::process::id());
    let fixed = shm
        .listen(&addr(&format!("shm://{name}")), &opts)
        .await
        .unwrap();
    let e = shm.listen(fixed.local_addr(), &opts).await.unwrap_err();
    assert!(is_io(&e, std::io::ErrorKind::AddrInUse), "{e}");
    let bound = fixed.local_addr().clone();
    drop(fixed);
    // Once the acceptor task has closed the socket, the name is free.
    let mut again = None;
    for _ in 0..100 {
        if let Ok(l) = shm.listen(&bound, &opts).await {
            again = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(again.is_some(), "the name is released");
    drop(again);
    // Once the listener is gone, connecting is refused.
    let mut last = None;
    for _ in 0..100 {
        match shm.connect(&bound, &opts).await {
            Err(e) if is_io(&e, std::io::ErrorKind::ConnectionRefused) => return,
            other => last = Some(other.map(|_| ())),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("connecting to a dropped listener: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_larger_than_the_ring_stream_through_it() {
    // No arena: everything goes through a 4 KiB ring.
    let config = ShmConfig::default()
        .with_ring_bytes(4096)
        .with_arena_bytes(0);
    let shm = ShmTransport::with_config(config);
    let (mut tx, _crx, _stx, mut rx) = pair(&shm).await;
    let frames: Vec<Frame> = (0..20)
        .map(|i| {
            frame(
                i,
                blob(i as usize * 1000, 1),
                vec![blob(100_000 + i as usize, 2), Bytes::new(), blob(3, 3)],
            )
        })
        .collect();
    let sent = frames.clone();
    let sender = tokio::spawn(async move {
        for f in sent {
            tx.feed(f).await.unwrap();
        }
        tx.close().await.unwrap();
    });
    for f in frames {
        assert_eq!(rx.recv().await.unwrap(), Some(f));
    }
    assert_eq!(rx.recv().await.unwrap(), None);
    sender.await.unwrap();
    assert_eq!(shm.stats().arena_attachments, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arena_attachments_are_read_in_place_and_a_full_arena_falls_back() {
    // An arena of 8 pages: two 12 KiB attachments fill it.
    let config = ShmConfig::default()
        .with_arena_bytes(8 * 4096)
        .with_arena_threshold(1024);
    let shm = ShmTransport::with_config(config);
    let (mut tx, _crx, _stx, mut rx) = pair(&shm).await;
    let big = |seed| blob(12 << 10, seed);
    let mut held = Vec::new();
    for i in 0..4 {
        tx.send(frame(i, Bytes::new(), vec![big(i as u8)]))
            .await
            .unwrap();
        let f = rx.recv().await.unwrap().unwrap();
        assert_eq!(f.attachments[0], big(i as u8));
        if i < 2 {
            // In the arena, attachments start on a page.
            assert_eq!(f.attachments[0].as_ptr() as usize % 4096, 0, "frame {i}");
        }
        held.push(f);
    }
    let stats = shm.stats();
    assert_eq!((stats.arena_attachments, stats.arena_fallbacks), (2, 2));
    // Released blocks are used again.
    held.clear();
    tx.send(frame(9, big(9), vec![big(10)])).await.unwrap();
    let f = rx.recv().await.unwrap().unwrap();
    assert_eq!(
        (f.body.clone(), f.attachments[0].clone()),
        (big(9), big(10))
    );
    assert_eq!(
        f.body.as_ptr() as usize % 4096,
        0,
        "a large body is in place too"
    );
    assert_eq!(shm.stats().arena_attachments, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ends_of_a_connection() {
    let shm = ShmTransport::new();
    // A dropped sink ends the peer's stream cleanly.
    let (tx, _crx, _stx, mut rx) = pair(&shm).await;
    drop(tx);
    assert_eq!(rx.recv().await.unwrap(), None);
    assert!(matches!(rx.recv().await, Err(TransportError::Closed)));

    // A dropped stream makes the peer's writes fail once the ring is full.
    let (mut tx, _crx, _stx, rx) = pair(&shm).await;
    drop(rx);
    let mut failed = None;
    for i in 0..10_000 {
        if let Err(e) = tx.send(frame(i, blob(1000, 0), vec![])).await {
            failed = Some(e);
            break;
        }
    }
    assert!(matches!(failed, Some(TransportError::Closed)), "{failed:?}");

    // A frame over the sender's own limit is refused and the connection
    // stays usable.
    let opts = ConnOptions::with_max_frame_len(1000);
    let mut listener = shm.listen(&addr("shm://0"), &opts).await.unwrap();
    let client = shm.connect(listener.local_addr(), &opts).await.unwrap();
    let server = listener.accept().await.unwrap();
    assert_eq!(client.info().transport, "shm");
    assert!(server.info().remote.starts_with("shm://pid-"));
    let (mut tx, _) = client.split();
    let (_, mut rx) = server.split();
    let e = tx.send(frame(1, blob(2000, 0), vec![])).await.unwrap_err();
    assert!(
        matches!(e, TransportError::FrameTooLarge { max: 1000, .. }),
        "{e}"
    );
    let ok = frame(2, blob(100, 0), vec![]);
    tx.send(ok.clone()).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), Some(ok));
}

#[tokio::test]
async fn bad_configurations_and_addresses_are_refused() {
    let opts = ConnOptions::default();
    let bad = ShmTransport::with_config(ShmConfig::default().with_ring_bytes(1000));
    assert!(bad.listen(&addr("shm://0"), &opts).await.is_err());
    let shm = ShmTransport::new();
    for a in ["shm://a/b", "tcp://127.0.0.1:1", "shm://a b"] {
        if let Ok(a) = Address::parse(a) {
            let e = shm.connect(&a, &opts).await.unwrap_err();
            assert!(matches!(e, TransportError::InvalidAddress { .. }), "{e}");
        }
    }
}
