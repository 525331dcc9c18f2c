//! Bulk transfers over the in-memory transport: pull and push at offsets,
//! and the typed errors of read-only, out-of-range and unknown handles; and
//! a transport's bulk level taking over from the framed copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rpc_core::transport::{Address, ConnOptions, Connection, Listener};
use rpc_core::{
    BulkError, BulkHandle, BulkMode, BulkRegion, BulkTransport, Error, MemNetwork, Rpc, Transport,
    TransportError,
};

const LONG: Duration = Duration::from_secs(60);

/// An owner named "owner" and a client connected to it, on `net`, each
/// with `transport`.
async fn pair(transport: impl Fn() -> Arc<dyn Transport>) -> (Rpc, Rpc) {
    let owner = Rpc::new();
    owner.set_name("owner").unwrap();
    owner.add_transport_arc(transport());
    let addr = owner.listen("mem://owner").await.unwrap();
    let client = Rpc::new();
    client.set_name("client").unwrap();
    client.add_transport_arc(transport());
    client
        .connect(addr.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();
    (owner, client)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[track_caller]
fn assert_bulk(got: Result<impl std::fmt::Debug, Error>, expect: BulkError) {
    match got {
        Err(Error::Bulk { peer, error }) => {
            assert_eq!(peer, "owner");
            assert_eq!(error, expect);
        }
        other => panic!("expected {expect:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn pull_and_push_at_offsets_with_typed_errors() {
    let net = MemNetwork::new();
    let (owner, client) = pair(|| Arc::new(net.transport())).await;
    let data = pattern(100_000);

    // Pull at an offset, large (an attachment) and small (inline).
    let ro = owner.expose(Bytes::from(data.clone()), BulkMode::ReadOnly);
    assert_eq!(
        (ro.owner(), ro.len(), ro.is_writable()),
        ("owner", 100_000, false)
    );
    let got = client.bulk_pull(&ro, 1000, 50_000).await.unwrap();
    assert_eq!(&got[..], &data[1000..51_000]);
    let got = client.bulk_pull(&ro, 99_990, 10).await.unwrap();
    assert_eq!(&got[..], &data[99_990..]);
    assert!(client.bulk_pull(&ro, 100_000, 0).await.unwrap().is_empty());

    // Push into a writable region at an offset, then pull it back; the
    // owner sees it in its own clone of the region.
    let region = BulkRegion::zeroed(10_000);
    let rw = owner.expose(region.clone(), BulkMode::ReadWrite);
    let before = region.snapshot();
    client
        .bulk_push(&rw, 4000, Bytes::from(pattern(3000)))
        .await
        .unwrap();
    let back = client.bulk_pull(&rw, 3990, 3020).await.unwrap();
    assert_eq!(&back[..10], &[0; 10]);
    assert_eq!(&back[10..3010], &pattern(3000)[..]);
    assert_eq!(&back[3010..], &[0; 10]);
    assert_eq!(&region.snapshot()[4000..7000], &pattern(3000)[..]);
    assert!(before.iter().all(|&b| b == 0), "snapshots never change");

    // Read-only, out of range (both ends, and overflowing), unknown.
    assert_bulk(
        client.bulk_push(&ro, 0, Bytes::from_static(b"x")).await,
        BulkError::ReadOnly { id: ro.id() },
    );
    let out = |offset, len, size| BulkError::OutOfRange {
        id: rw.id(),
        offset,
        len,
        size,
    };
    assert_bulk(client.bulk_pull(&rw, 9_999, 2).await, out(9_999, 2, 10_000));
    assert_bulk(
        client.bulk_pull(&rw, u64::MAX, 2).await,
        out(u64::MAX, 2, 10_000),
    );
    assert_bulk(
        client
            .bulk_push(&rw, 9_000, Bytes::from(vec![1; 1001]))
            .await,
        out(9_000, 1001, 10_000),
    );
    assert!(owner.unexpose(&rw));
    assert!(!owner.unexpose(&rw));
    assert_bulk(
        client.bulk_pull(&rw, 0, 1).await,
        BulkError::UnknownHandle { id: rw.id() },
    );
    // The owner checks too: a forged handle claiming a longer region, and
    // one of an earlier run of the owner.
    let forged = forge(&ro, |h| h.3 = 200_000);
    assert_bulk(
        client.bulk_pull(&forged, 150_000, 10).await,
        BulkError::OutOfRange {
            id: ro.id(),
            offset: 150_000,
            len: 10,
            size: 100_000,
        },
    );
    let stale = forge(&ro, |h| h.1 ^= 1);
    assert_bulk(
        client.bulk_pull(&stale, 0, 10).await,
        BulkError::UnknownHandle { id: ro.id() },
    );
    let writable = forge(&ro, |h| h.4 = true);
    assert_bulk(
        client
            .bulk_push(&writable, 0, Bytes::from_static(b"x"))
            .await,
        BulkError::ReadOnly { id: ro.id() },
    );
}

/// The fields of a handle as they travel: owner, incarnation, id, length,
/// writable, descriptors.
type RawHandle = (String, u128, u64, u64, bool, Vec<(String, rpc_core::Blob)>);

/// A handle as a peer could forge it: decoded, edited, encoded again.
fn forge(h: &BulkHandle, edit: impl FnOnce(&mut RawHandle)) -> BulkHandle {
    let (body, atts) = rpc_core::body::encode(h).unwrap();
    let mut raw: RawHandle = rpc_core::body::decode(&body, &atts).unwrap();
    edit(&mut raw);
    let (body, atts) = rpc_core::body::encode(&raw).unwrap();
    rpc_core::body::decode(&body, &atts).unwrap()
}

#[tokio::test]
async fn handles_travel_in_calls_and_local_owners_work_too() {
    let net = MemNetwork::new();
    let (owner, client) = pair(|| Arc::new(net.transport())).await;
    let region = BulkRegion::zeroed(4096);
    let handle = owner.expose(region.clone(), BulkMode::ReadWrite);
    client
        .define("fill", {
            let client = client.clone();
            move |h: BulkHandle| {
                let client = client.clone();
                async move {
                    client.bulk_push(&h, 96, Bytes::from(vec![7; 1000])).await?;
                    Ok(())
                }
            }
        })
        .unwrap();
    owner.call::<()>("client", "fill", &handle).await.unwrap();
    assert_eq!(&region.snapshot()[96..1096], &[7; 1000][..]);
    // The owner may pull from itself.
    let own = owner.bulk_pull(&handle, 90, 10).await.unwrap();
    assert_eq!(&own[..], &[0, 0, 0, 0, 0, 0, 7, 7, 7, 7]);
}

/// A memory transport with a bulk level that serves pulls from the
/// region itself (as mapped memory would) and counts them.
#[derive(Debug, Clone)]
struct MappedMem {
    inner: rpc_core::MemTransport,
    bulk: Arc<Mapped>,
}

#[derive(Debug, Default)]
struct Mapped {
    regions: std::sync::Mutex<std::collections::HashMap<u64, BulkRegion>>,
    gets: AtomicUsize,
}

#[async_trait]
impl Transport for MappedMem {
    fn scheme(&self) -> &'static str {
        self.inner.scheme()
    }
    async fn listen(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Listener>, TransportError> {
        self.inner.listen(addr, opts).await
    }
    async fn connect(
        &self,
        addr: &Address,
        opts: &ConnOptions,
    ) -> Result<Box<dyn Connection>, TransportError> {
        self.inner.connect(addr, opts).await
    }
    fn bulk(&self) -> Option<&dyn BulkTransport> {
        Some(&*self.bulk)
    }
}

#[async_trait]
impl BulkTransport for Mapped {
    fn register(&self, id: u64, region: &BulkRegion, mode: BulkMode) -> Option<Bytes> {
        // Only read-only regions are "mapped"; the others use frames.
        (mode == BulkMode::ReadOnly).then(|| {
            self.regions.lock().unwrap().insert(id, region.clone());
            Bytes::copy_from_slice(&id.to_le_bytes())
        })
    }
    fn deregister(&self, id: u64) {
        self.regions.lock().unwrap().remove(&id);
    }
    async fn get(
        &self,
        _owner: &str,
        descriptor: &[u8],
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, TransportError> {
        let id = u64::from_le_bytes(descriptor.try_into().map_err(|_| TransportError::Closed)?);
        let region = self.regions.lock().unwrap().get(&id).cloned();
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(region.and_then(|r| r.read(offset, len).ok()))
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

#[tokio::test]
async fn a_transport_bulk_level_serves_what_it_registered() {
    let net = MemNetwork::new();
    let mapped = MappedMem {
        inner: net.transport(),
        bulk: Arc::default(),
    };
    let shared = mapped.clone();
    let (owner, client) = pair(move || Arc::new(shared.clone())).await;
    let ro = owner.expose(Bytes::from(pattern(5000)), BulkMode::ReadOnly);
    assert!(ro.descriptor("mem").is_some());
    let got = client.bulk_pull(&ro, 10, 20).await.unwrap();
    assert_eq!(&got[..], &pattern(5000)[10..30]);
    assert_eq!(mapped.bulk.gets.load(Ordering::SeqCst), 1);

    // Not registered: the framed copy, and nothing asked of the bulk level.
    let rw = owner.expose(BulkRegion::zeroed(100), BulkMode::ReadWrite);
    assert!(rw.descriptor("mem").is_none());
    client
        .bulk_push(&rw, 0, Bytes::from_static(b"abc"))
        .await
        .unwrap();
    assert_eq!(&client.bulk_pull(&rw, 0, 3).await.unwrap()[..], b"abc");
    assert_eq!(mapped.bulk.gets.load(Ordering::SeqCst), 1);

    // Unexposed: deregistered, so the bulk level declines and the owner
    // answers with the typed error.
    assert!(owner.unexpose(&ro));
    assert_bulk(
        client.bulk_pull(&ro, 0, 1).await,
        BulkError::UnknownHandle { id: ro.id() },
    );
}
