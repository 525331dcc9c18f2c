//! Bulk transfers over shared memory: a pull of a read-only region maps the
//! owner's sealed snapshot (no frame, no copy), and everything else (push,
//! writable regions, refusals, forged descriptors) ends as the framed copy
//! or a typed error, never a panic. The same between two processes.

mod common;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::{BulkError, BulkHandle, BulkMode, BulkRegion, Error, HandlerError, Rpc, Transport};
use rpc_transport_shm::{ShmStats, ShmTransport};

const LONG: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

/// An owner named "owner" and a client connected to it over shm, with the
/// transports (clones share their counters).
async fn pair() -> (Rpc, ShmTransport, Rpc, ShmTransport) {
    let (owner_shm, client_shm) = (ShmTransport::new(), ShmTransport::new());
    let owner = Rpc::new();
    owner.set_name("owner").unwrap();
    owner.add_transport(owner_shm.clone());
    let addr = owner.listen("shm://0").await.unwrap();
    let client = Rpc::new();
    client.set_name("client").unwrap();
    client.add_transport(client_shm.clone());
    common::connect(&client, addr.as_str(), LONG).await;
    (owner, owner_shm, client, client_shm)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[track_caller]
fn assert_bulk<T: std::fmt::Debug>(got: Result<T, Error>, expect: BulkError) {
    match got {
        Err(Error::Bulk { peer, error }) => {
            assert_eq!(peer, "owner");
            assert_eq!(error, expect);
        }
        other => panic!("expected {expect:?}, got {other:?}"),
    }
}

/// The bulk counters, as (registered, snapshots, maps, gets, declined).
fn bulk(stats: ShmStats) -> (u64, u64, u64, u64, u64) {
    (
        stats.bulk_registered,
        stats.bulk_snapshots,
        stats.bulk_maps,
        stats.bulk_gets,
        stats.bulk_declined,
    )
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
async fn a_pull_maps_the_owners_snapshot_without_frames_or_copies() {
    let (owner, owner_shm, client, client_shm) = pair().await;
    let data = pattern(64 * MIB, 0);
    let region = BulkRegion::new(data.clone());
    let ro = owner.expose(region.clone(), BulkMode::ReadOnly);
    assert!(ro.descriptor("shm").is_some_and(|d| d.len() < 64));
    assert_eq!(
        bulk(owner_shm.stats()),
        (1, 0, 0, 0, 0),
        "nothing copied yet"
    );

    let got = client
        .bulk_pull(&ro, 12_345, 32 * MIB as u64)
        .await
        .unwrap();
    assert!(got[..] == data[12_345..12_345 + 32 * MIB]);
    // One snapshot, mapped once, served without a frame: the arena (where
    // a framed attachment of this size would go) stayed empty.
    assert_eq!(bulk(owner_shm.stats()), (1, 1, 0, 0, 0));
    assert_eq!(bulk(client_shm.stats()), (0, 0, 1, 1, 0));
    assert_eq!(owner_shm.stats().arena_attachments, 0);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps.contains("memfd:rpc-bulk"));

    // A second pull is another slice of the same mapping.
    let head = client.bulk_pull(&ro, 0, 10).await.unwrap();
    assert_eq!(head.as_ptr() as usize + 12_345, got.as_ptr() as usize);
    assert_eq!(bulk(client_shm.stats()), (0, 0, 1, 2, 0));

    // The owner writes to its region: the next pull sees it (a new
    // snapshot); what was pulled before does not change.
    region.write(12_345, b"new").unwrap();
    let now = client.bulk_pull(&ro, 12_345, 3).await.unwrap();
    assert_eq!(&now[..], b"new");
    assert_eq!(&got[..3], &data[12_345..12_348]);
    assert_eq!(bulk(owner_shm.stats()), (1, 2, 0, 0, 0));
    assert_eq!(bulk(client_shm.stats()), (0, 0, 2, 3, 0));
}

#[tokio::test]
async fn out_of_range_read_only_and_unexposed_are_typed_errors() {
    let (owner, _owner_shm, client, client_shm) = pair().await;
    let data = pattern(MIB, 1);
    let ro = owner.expose(Bytes::from(data.clone()), BulkMode::ReadOnly);
    let kept = client.bulk_pull(&ro, 0, 100).await.unwrap();
    assert_eq!(bulk(client_shm.stats()), (0, 0, 1, 1, 0));

    let out = |offset, len| BulkError::OutOfRange {
        id: ro.id(),
        offset,
        len,
        size: MIB as u64,
    };
    assert_bulk(
        client.bulk_pull(&ro, MIB as u64 - 10, 11).await,
        out(MIB as u64 - 10, 11),
    );
    assert_bulk(client.bulk_pull(&ro, u64::MAX, 2).await, out(u64::MAX, 2));
    // A handle claiming a longer region gets past the client's own check;
    // the mapping refuses, and the owner answers the framed fallback.
    let longer = forge(&ro, |h| h.3 = 2 * MIB as u64);
    assert_bulk(
        client.bulk_pull(&longer, MIB as u64, 10).await,
        out(MIB as u64, 10),
    );
    assert_bulk(
        client.bulk_push(&ro, 0, Bytes::from_static(b"no")).await,
        BulkError::ReadOnly { id: ro.id() },
    );
    let writable = forge(&ro, |h| h.4 = true);
    assert_bulk(
        client
            .bulk_push(&writable, 0, Bytes::from_static(b"no"))
            .await,
        BulkError::ReadOnly { id: ro.id() },
    );
    assert_eq!(bulk(client_shm.stats()).3, 1, "no other get was mapped");

    // Unexposed: the client holds a mapping, but the owner refuses, so the
    // pull fails; the slice pulled before stays as it was.
    assert!(owner.unexpose(&ro));
    assert_bulk(
        client.bulk_pull(&ro, 0, 1).await,
        BulkError::UnknownHandle { id: ro.id() },
    );
    assert_eq!(bulk(client_shm.stats()), (0, 0, 1, 1, 1));
    assert_eq!(&kept[..], &data[..100]);
}

#[tokio::test]
async fn writable_regions_and_pushes_use_frames() {
    let (owner, owner_shm, client, client_shm) = pair().await;
    let region = BulkRegion::zeroed(4 * MIB);
    let rw = owner.expose(region.clone(), BulkMode::ReadWrite);
    assert!(
        rw.descriptor("shm").is_none(),
        "writable regions are framed"
    );
    let empty = owner.expose(Bytes::new(), BulkMode::ReadOnly);
    assert!(empty.descriptor("shm").is_none());

    let pushed = pattern(MIB, 7);
    client
        .bulk_push(&rw, 1_000_001, Bytes::from(pushed.clone()))
        .await
        .unwrap();
    assert_eq!(&region.snapshot()[1_000_001..1_000_001 + MIB], &pushed[..]);
    let back = client
        .bulk_pull(&rw, 1_000_000, MIB as u64 + 2)
        .await
        .unwrap();
    assert_eq!(back[0], 0);
    assert_eq!(&back[1..=MIB], &pushed[..]);
    assert_eq!(back[MIB + 1], 0);
    assert!(client.bulk_pull(&empty, 0, 0).await.unwrap().is_empty());
    assert_eq!(bulk(client_shm.stats()), (0, 0, 0, 0, 0));
    assert_eq!(bulk(owner_shm.stats()), (0, 0, 0, 0, 0));
}

#[tokio::test]
async fn forged_descriptors_are_errors_and_pulls_fall_back_to_frames() {
    let (owner, _owner_shm, client, client_shm) = pair().await;
    let data = pattern(100_000, 3);
    let ro = owner.expose(Bytes::from(data.clone()), BulkMode::ReadOnly);
    let good = ro.descriptor("shm").unwrap().clone();
    let reader = ShmTransport::new();
    let level = reader.bulk().unwrap();

    // Malformed: errors, whatever the bytes.
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![0xff; 40],
        good[..good.len() - 1].to_vec(),
    ];
    bad.push([&good[..], &[0]].concat());
    let mut slash = good.to_vec();
    slash[3] = b'/';
    bad.push(slash);
    for b in &bad {
        assert!(level.get("owner", b, 0, 1).await.is_err(), "{b:?}");
    }
    // Out of the described range: an error before asking anyone.
    assert!(level.get("owner", &good, 99_999, 2).await.is_err());
    // Well-formed but wrong: a bad token is refused, an unknown socket is
    // not reachable; both leave the read to the framed copy.
    let mut token = good.to_vec();
    let at = good.len() - 9;
    token[at] ^= 1;
    assert!(level.get("owner", &token, 0, 1).await.unwrap().is_none());
    let mut name = good.to_vec();
    name[2] = if name[2] == b'x' { b'y' } else { b'x' };
    assert!(level.get("owner", &name, 0, 1).await.unwrap().is_none());
    assert_eq!(bulk(reader.stats()), (0, 0, 0, 0, 2));
    // The right one works from any transport of this host.
    let got = level.get("owner", &good, 10, 5).await.unwrap().unwrap();
    assert_eq!(&got[..], &data[10..15]);

    // A handle with a garbage descriptor still pulls: the owner serves the
    // framed copy and checks it.
    let garbage = forge(&ro, |h| {
        h.5[0].1 = rpc_core::Blob(Bytes::from_static(b"\x01\x05junk"));
    });
    let got = client.bulk_pull(&garbage, 99_000, 1000).await.unwrap();
    assert_eq!(&got[..], &data[99_000..]);
    assert_eq!(bulk(client_shm.stats()), (0, 0, 0, 0, 0));
}

/// The reader process of `a_reader_process_maps_the_owners_snapshot`.
#[test]
fn child_entry() {
    let Some(role) = common::role() else {
        return;
    };
    assert_eq!(role, "bulk-reader");
    let addr = std::env::var(common::ADDR).unwrap();
    common::runtime().block_on(async {
        let shm = ShmTransport::new();
        let client = Rpc::new();
        client.set_name("reader").unwrap();
        client.add_transport(shm.clone());
        common::connect(&client, &addr, LONG).await;
        let ro: BulkHandle = client.call("owner", "handle", &()).await.unwrap();
        let got = client.bulk_pull(&ro, 1000, 8 * MIB as u64).await.unwrap();
        assert!(got[..] == pattern(16 * MIB, 5)[1000..1000 + 8 * MIB]);
        assert_eq!(bulk(shm.stats()), (0, 0, 1, 1, 0));
        assert!(client.call::<bool>("owner", "unexpose", &()).await.unwrap());
        assert_bulk(
            client.bulk_pull(&ro, 0, 1).await,
            BulkError::UnknownHandle { id: ro.id() },
        );
        assert!(got[..] == pattern(16 * MIB, 5)[1000..1000 + 8 * MIB]);
    });
}

#[test]
fn a_reader_process_maps_the_owners_snapshot() {
    if common::role().is_some() {
        return;
    }
    common::runtime().block_on(async {
        let shm = ShmTransport::new();
        let owner = Rpc::new();
        owner.set_name("owner").unwrap();
        owner.add_transport(shm.clone());
        let addr = owner.listen("shm://0").await.unwrap();
        let ro = owner.expose(Bytes::from(pattern(16 * MIB, 5)), BulkMode::ReadOnly);
        let h = ro.clone();
        owner
            .define("handle", move |(): ()| {
                let h = h.clone();
                async move { Ok::<_, HandlerError>(h) }
            })
            .unwrap();
        let (o, h) = (owner.clone(), ro.clone());
        owner
            .define("unexpose", move |(): ()| {
                let unexposed = o.unexpose(&h);
                async move { Ok::<_, HandlerError>(unexposed) }
            })
            .unwrap();
        let mut child =
            common::spawn_child("child_entry", "bulk-reader", addr.as_str(), Stdio::null());
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "the reader failed: {status}");
        assert_eq!(bulk(shm.stats()), (1, 1, 0, 0, 0));
    });
}
