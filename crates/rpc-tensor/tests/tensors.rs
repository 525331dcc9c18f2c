//! Tensors through calls: every dtype round trips over memory and TCP,
//! tensors nested in structs, vectors and maps arrive whole, and malformed
//! metadata is rejected with typed errors.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::{Error, MemNetwork, Rpc, Transport};
use rpc_tensor::{DType, Tensor, TensorError, bf16, f16};
use rpc_transport_tcp::TcpTransport;
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(60);

/// A server named "server" with an echo function, and a client connected
/// to it, over `transport` at `addr`.
async fn pair(transport: impl Fn() -> Box<dyn Transport>, addr: &str) -> (Rpc, Rpc) {
    let server = Rpc::new();
    server.set_name("server").unwrap();
    server.add_transport_arc(transport().into());
    server
        .define("echo", |t: Tensor| async move { Ok(t) })
        .unwrap();
    server
        .define("echo_nested", |n: Nested| async move { Ok(n) })
        .unwrap();
    let bound = server.listen(addr).await.unwrap();
    let client = Rpc::new();
    client.set_name("client").unwrap();
    client.add_transport_arc(transport().into());
    client
        .connect(bound.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();
    (server, client)
}

/// One tensor of every dtype, small (inline) and large (attached).
fn every_dtype(n: usize) -> Vec<Tensor> {
    let shape = [n, 3];
    let count = n * 3;
    vec![
        Tensor::from_slice(
            &shape,
            &(0..count)
                .map(|i| f16::from_f32(i as f32))
                .collect::<Vec<_>>(),
        ),
        Tensor::from_slice(
            &shape,
            &(0..count)
                .map(|i| bf16::from_f32(i as f32))
                .collect::<Vec<_>>(),
        ),
        Tensor::from_slice(
            &shape,
            &(0..count).map(|i| i as f32 * 0.5).collect::<Vec<_>>(),
        ),
        Tensor::from_slice(
            &shape,
            &(0..count).map(|i| i as f64 * 0.25).collect::<Vec<_>>(),
        ),
        Tensor::from_slice(&shape, &(0..count).map(|i| i as i8).collect::<Vec<_>>()),
        Tensor::from_slice(&shape, &(0..count).map(|i| -(i as i16)).collect::<Vec<_>>()),
        Tensor::from_slice(
            &shape,
            &(0..count).map(|i| i as i32 * 7).collect::<Vec<_>>(),
        ),
        Tensor::from_slice(
            &shape,
            &(0..count).map(|i| i as i64 - 5).collect::<Vec<_>>(),
        ),
        Tensor::from_slice(&shape, &(0..count).map(|i| i as u8).collect::<Vec<_>>()),
        Tensor::from_slice(&shape, &(0..count).map(|i| i % 3 == 0).collect::<Vec<_>>()),
    ]
    .into_iter()
    .map(Result::unwrap)
    .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nested {
    name: String,
    obs: Tensor,
    history: Vec<Tensor>,
    by_key: BTreeMap<String, (u32, Tensor)>,
    maybe: Option<Tensor>,
}

fn nested() -> Nested {
    let big = Tensor::from_slice(&[256, 256], &vec![1.5f32; 256 * 256]).unwrap();
    Nested {
        name: "n".into(),
        obs: big.clone(),
        history: every_dtype(100),
        by_key: BTreeMap::from([
            ("a".to_owned(), (1, Tensor::scalar(3i64))),
            ("b".to_owned(), (2, big)),
        ]),
        maybe: Some(Tensor::zeros(DType::U8, &[0]).unwrap()),
    }
}

async fn round_trips_over(client: &Rpc) {
    for n in [1, 50, 10_000] {
        for t in every_dtype(n) {
            let back: Tensor = client.call("server", "echo", &t).await.unwrap();
            assert_eq!(back, t, "{:?} of {n} rows", t.dtype());
            assert!(back.is_aligned());
        }
    }
    let scalar: Tensor = client
        .call("server", "echo", &Tensor::scalar(true))
        .await
        .unwrap();
    assert_eq!(scalar.as_slice::<bool>().unwrap(), &[true]);

    let value = nested();
    let back: Nested = client.call("server", "echo_nested", &value).await.unwrap();
    assert_eq!(back, value);
    assert!(back.history.iter().all(Tensor::is_aligned));
    assert_eq!(back.history[3].as_slice::<f64>().unwrap()[5], 1.25);
}

#[tokio::test]
async fn every_dtype_and_nested_tensors_round_trip_in_memory() {
    let net = MemNetwork::new();
    let (_server, client) = pair(|| Box::new(net.transport()), "mem://server").await;
    round_trips_over(&client).await;
}

#[tokio::test]
async fn every_dtype_and_nested_tensors_round_trip_over_tcp() {
    let (_server, client) = pair(|| Box::new(TcpTransport::new()), "tcp://127.0.0.1:0").await;
    round_trips_over(&client).await;
}

/// A tensor as a peer could send it: raw tags, shape and data.
#[derive(Serialize)]
struct RawTensor(u8, u8, Vec<u64>, rpc_core::Blob);

fn raw(dtype: u8, device: u8, shape: &[u64], len: usize) -> RawTensor {
    RawTensor(
        dtype,
        device,
        shape.to_vec(),
        rpc_core::Blob::from(vec![0u8; len]),
    )
}

#[track_caller]
fn check_decode(value: RawTensor, expect: &str) {
    let (body, atts) = rpc_core::body::encode(&value).unwrap();
    match rpc_core::body::decode::<Tensor>(&body, &atts) {
        Err(e) => assert!(e.to_string().contains(expect), "{e} lacks {expect:?}"),
        Ok(t) => panic!("accepted {t:?}, expected {expect:?}"),
    }
}

#[test]
fn malformed_metadata_is_rejected_on_receipt() {
    let ok = raw(3, 0, &[2, 2], 16);
    let (body, atts) = rpc_core::body::encode(&ok).unwrap();
    assert!(rpc_core::body::decode::<Tensor>(&body, &atts).is_ok());

    check_decode(raw(3, 0, &[2, 2], 15), "needs 16 bytes, got 15");
    check_decode(raw(3, 0, &[2, 2], 4096), "needs 16 bytes, got 4096");
    check_decode(raw(3, 0, &[u64::MAX, 2], 16), "overflows");
    check_decode(raw(9, 0, &[1 << 32, 1 << 32], 0), "overflows");
    check_decode(raw(4, 0, &[1 << 61], 0), "overflows");
    check_decode(raw(0, 0, &[1], 1), "unknown dtype tag 0");
    check_decode(raw(200, 0, &[1], 1), "unknown dtype tag 200");
    check_decode(raw(9, 7, &[1], 1), "unknown device tag 7");
    check_decode(raw(9, 0, &[1; 65], 1), "65 dimensions exceed");
}

#[test]
fn malformed_metadata_is_a_typed_error_when_building() {
    let t = Tensor::from_bytes(DType::Bool, &[3], Bytes::from_static(&[0, 1, 2])).unwrap();
    assert_eq!(
        t.as_slice::<bool>(),
        Err(TensorError::InvalidValues(DType::Bool))
    );
    assert_eq!(
        Tensor::from_bytes(DType::F32, &[3], Bytes::from_static(&[0; 8])),
        Err(TensorError::LengthMismatch {
            shape: vec![3],
            dtype: DType::F32,
            expected: 12,
            got: 8
        })
    );
    assert!(matches!(
        Tensor::zeros(DType::F64, &[usize::MAX / 2, 3]),
        Err(TensorError::ShapeOverflow { .. })
    ));
    assert!(matches!(
        Tensor::from_slice::<u8>(&[2, 2], &[1, 2, 3]),
        Err(TensorError::LengthMismatch { .. })
    ));
}

#[tokio::test]
async fn a_handler_never_sees_a_malformed_tensor() {
    let net = MemNetwork::new();
    let (_server, client) = pair(|| Box::new(net.transport()), "mem://server").await;
    let bad = raw(3, 0, &[1 << 40, 1 << 40], 64);
    match client.call::<Tensor>("server", "echo", &bad).await {
        Err(Error::Remote { message, .. }) => {
            assert!(message.contains("bad arguments"), "{message}");
            assert!(message.contains("overflows"), "{message}");
        }
        other => panic!("expected a bad-arguments error, got {other:?}"),
    }
}
