//! Bulk transfers over TCP: pull and push at offsets, and the typed errors
//! of read-only, out-of-range and unknown handles.

use std::time::Duration;

use bytes::Bytes;
use rpc_core::{BulkError, BulkMode, BulkRegion, Error, Rpc};
use rpc_transport_tcp::TcpTransport;

const LONG: Duration = Duration::from_secs(60);

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

#[tokio::test]
async fn bulk_pull_and_push_over_tcp() {
    let owner = Rpc::new();
    owner.set_name("owner").unwrap();
    owner.add_transport(TcpTransport::new());
    let addr = owner.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Rpc::new();
    client.set_name("client").unwrap();
    client.add_transport(TcpTransport::new());
    client
        .connect(addr.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();

    // Pull 8 MiB at an offset: it arrives in one aligned buffer.
    let data = pattern(16 << 20, 0);
    let ro = owner.expose(Bytes::from(data.clone()), BulkMode::ReadOnly);
    let got = client.bulk_pull(&ro, 12_345, 8 << 20).await.unwrap();
    assert_eq!(&got[..], &data[12_345..12_345 + (8 << 20)]);
    assert_eq!(got.as_ptr() as usize % 64, 0);

    // Push 1 MiB at an offset, then pull it back with its surroundings.
    let region = BulkRegion::zeroed(4 << 20);
    let rw = owner.expose(region.clone(), BulkMode::ReadWrite);
    let pushed = pattern(1 << 20, 7);
    client
        .bulk_push(&rw, 1_000_001, Bytes::from(pushed.clone()))
        .await
        .unwrap();
    let back = client
        .bulk_pull(&rw, 1_000_000, (1 << 20) + 2)
        .await
        .unwrap();
    assert_eq!(back[0], 0);
    assert_eq!(&back[1..=1 << 20], &pushed[..]);
    assert_eq!(back[(1 << 20) + 1], 0);
    assert_eq!(
        &region.snapshot()[1_000_001..1_000_001 + (1 << 20)],
        &pushed[..]
    );

    assert_bulk(
        client.bulk_push(&ro, 0, Bytes::from_static(b"no")).await,
        BulkError::ReadOnly { id: ro.id() },
    );
    assert_bulk(
        client.bulk_pull(&rw, 4 << 20, 1).await,
        BulkError::OutOfRange {
            id: rw.id(),
            offset: 4 << 20,
            len: 1,
            size: 4 << 20,
        },
    );
    assert_bulk(
        client
            .bulk_push(&rw, (4 << 20) - 10, Bytes::from(vec![1; 11]))
            .await,
        BulkError::OutOfRange {
            id: rw.id(),
            offset: (4 << 20) - 10,
            len: 11,
            size: 4 << 20,
        },
    );
    assert!(owner.unexpose(&ro));
    assert_bulk(
        client.bulk_pull(&ro, 0, 1).await,
        BulkError::UnknownHandle { id: ro.id() },
    );
}
