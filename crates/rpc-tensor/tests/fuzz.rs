//! Fuzz target of tensor metadata on the wire (`rpc_core::testing::fuzz`):
//! bodies and attachments as a caller or a callee receives them, decoded as
//! tensors, vectors and pairs of tensors.
//!
//! Inputs: arbitrary bytes; valid encodings mutated (the dtype and device
//! tags, the dimension count and the dimensions are varints of the body,
//! the data an inline blob or an attachment index); wire tuples with
//! arbitrary tags, up to 70 dimensions of boundary values and data of any
//! length, whose outcome is predicted exactly. Checks: no panic, at most a
//! few times the input allocated, a typed error for bad input, and every
//! tensor received is consistent and usable (views, ndarray, reshape,
//! stacking, splitting, sending it on). Tensors have no strides on the
//! wire: they are always contiguous, row-major.
//!
//! `RPC_FUZZ_SECS=N` runs the target for `N` seconds.

use bytes::Bytes;
use proptest::prelude::*;
use rpc_core::testing::fuzz::{self, mutate};
use rpc_core::{Blob, CodecError, body};
use rpc_tensor::{DType, Element, MAX_DIMS, Stack, Tensor, TensorError, Unstack, bf16, f16};

rpc_core::counting_allocator!();

/// What decoding may allocate beyond the input: bookkeeping, and a copy of
/// the data when it must be realigned.
const SLACK: usize = 64 << 10;

fn dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::ALL.to_vec())
}

/// A valid tensor of up to 4 small dimensions.
fn tensor() -> impl Strategy<Value = Tensor> {
    (dtype(), prop::collection::vec(0usize..6, 0..4), any::<u8>()).prop_map(
        |(dtype, shape, fill)| {
            let len = dtype.size() * shape.iter().product::<usize>();
            // Bools must be 0 or 1 to be viewed; other bytes are any value.
            let fill = if dtype == DType::Bool { fill & 1 } else { fill };
            Tensor::from_bytes(dtype, &shape, Bytes::from(vec![fill; len])).unwrap()
        },
    )
}

/// A body and its attachments, as a frame carries them.
#[derive(Debug)]
struct Wire {
    body: Vec<u8>,
    attachments: Vec<Bytes>,
}

impl Wire {
    fn len(&self) -> usize {
        self.body.len() + self.attachments.iter().map(Bytes::len).sum::<usize>()
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Wire {
    let (body, attachments) = body::encode(value).unwrap();
    Wire {
        body: body.to_vec(),
        attachments,
    }
}

/// The parts of a tensor on the wire, before any check.
#[derive(Clone, Debug, serde::Serialize)]
struct RawTensor(u8, u8, Vec<u64>, Blob);

fn dim() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0u64..8, 1 => mutate::interesting_u64()]
}

fn raw_tensor() -> impl Strategy<Value = RawTensor> {
    (
        prop_oneof![3 => 1u8..=10, 1 => any::<u8>()],
        prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
        prop_oneof![
            4 => prop::collection::vec(dim(), 0..5),
            1 => prop::collection::vec(0u64..3, 60..70),
        ],
        prop_oneof![
            3 => (0usize..64).prop_map(|n| Blob::from(vec![1u8; n])),
            1 => (0usize..4096).prop_map(|n| Blob::from(vec![1u8; n])),
        ],
    )
        .prop_map(|(dtype, device, shape, data)| RawTensor(dtype, device, shape, data))
}

/// What decoding `raw` must give: the shape, or the error's message.
fn expected(raw: &RawTensor) -> Result<Vec<usize>, String> {
    let RawTensor(tag, device, shape, data) = raw;
    if shape.len() > MAX_DIMS {
        return Err(TensorError::TooManyDims(shape.len()).to_string());
    }
    let dtype = DType::from_tag(*tag).ok_or_else(|| TensorError::UnknownDType(*tag).to_string())?;
    if *device != 0 {
        return Err(TensorError::UnknownDevice(*device).to_string());
    }
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let Some(expected) = shape
        .iter()
        .try_fold(dtype.size(), |a, &d| a.checked_mul(d))
    else {
        return Err("overflows".into());
    };
    if expected != data.len() {
        return Err(format!("needs {expected} bytes, got {}", data.len()));
    }
    Ok(shape)
}

#[derive(Debug)]
enum Input {
    /// Arbitrary or mutated bytes.
    Bytes(Wire),
    /// Wire parts, with a predicted outcome.
    Raw(RawTensor),
    /// A valid tensor.
    Valid(Tensor),
}

fn input() -> impl Strategy<Value = Input> {
    let attachments =
        || prop::collection::vec((0usize..2048).prop_map(|n| Bytes::from(vec![0u8; n])), 0..3);
    let valid = || {
        prop_oneof![
            tensor().prop_map(|t| encode(&t)),
            prop::collection::vec(tensor(), 0..4).prop_map(|t| encode(&t)),
            (tensor(), tensor()).prop_map(|t| encode(&t)),
            raw_tensor().prop_map(|t| encode(&t)),
        ]
    };
    let mutated = valid().prop_flat_map(|w| {
        (
            mutate::mutations_of(Just(w.body)),
            Just(w.attachments),
            prop::collection::vec(mutate::edit(), 0..3),
        )
            .prop_map(|(body, mut attachments, edits)| {
                // An attachment of another size than the body implies.
                if let Some(a) = attachments.first_mut() {
                    let mut bytes = a.to_vec();
                    mutate::apply(&mut bytes, &edits);
                    *a = bytes.into();
                }
                Wire { body, attachments }
            })
    });
    prop_oneof![
        1 => (mutate::bytes(256), attachments())
            .prop_map(|(body, attachments)| Input::Bytes(Wire { body, attachments })),
        4 => mutated.prop_map(Input::Bytes),
        2 => raw_tensor().prop_map(Input::Raw),
        1 => tensor().prop_map(Input::Valid),
    ]
}

/// Decodes `wire` as a `T`, checking the allocation and the error type.
fn decode<T: serde::de::DeserializeOwned>(wire: &Wire) -> Result<Option<T>, TestCaseError> {
    let (got, allocated) = fuzz::allocated_by(|| body::decode::<T>(&wire.body, &wire.attachments));
    // A collection preallocates at most one element per byte of the body
    // (`rpc_core::body` caps claimed lengths there), and data may be copied
    // once to be realigned.
    let limit = (std::mem::size_of::<Tensor>() + 2) * wire.len() + SLACK;
    prop_assert!(
        allocated <= limit,
        "decoding {} bytes allocated {allocated}",
        wire.len()
    );
    match got {
        Ok(v) => Ok(Some(v)),
        Err(CodecError::Body(_) | CodecError::AttachmentIndex { .. }) => Ok(None),
        Err(other) => Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
    }
}

/// Everything a receiver may do with a tensor it got works or fails with a
/// typed error.
fn use_tensor(t: &Tensor, reshape: &[usize], rows: &[usize]) -> Result<(), TestCaseError> {
    let byte_len = t
        .shape()
        .iter()
        .try_fold(t.dtype().size(), |a, &d| a.checked_mul(d));
    prop_assert_eq!(byte_len, Some(t.nbytes()));
    prop_assert!(t.ndim() <= MAX_DIMS);
    prop_assert_eq!(t.numel() * t.dtype().size(), t.nbytes());
    prop_assert!(t.is_aligned());
    match t.dtype() {
        DType::F16 => view::<f16>(t)?,
        DType::BF16 => view::<bf16>(t)?,
        DType::F32 => view::<f32>(t)?,
        DType::F64 => view::<f64>(t)?,
        DType::I8 => view::<i8>(t)?,
        DType::I16 => view::<i16>(t)?,
        DType::I32 => view::<i32>(t)?,
        DType::I64 => view::<i64>(t)?,
        DType::U8 => view::<u8>(t)?,
        DType::Bool => view::<bool>(t)?,
    }
    if let Ok(r) = t.reshape(reshape) {
        prop_assert_eq!(r.nbytes(), t.nbytes());
    }
    if let Ok(stacked) = Tensor::stack(vec![t.clone(), t.clone()]) {
        prop_assert_eq!(stacked.nbytes(), 2 * t.nbytes());
        let _ = stacked.unstack(&[t.shape()[0], t.shape()[0]]);
    }
    let _ = t.clone().unstack(rows);
    // Sent on, it arrives the same.
    let back: Tensor = body::decode(&encode(t).body, &encode(t).attachments)
        .map_err(|e| TestCaseError::fail(format!("re-encoded tensor refused: {e}")))?;
    prop_assert_eq!(&back, t);
    Ok(())
}

/// Views in place and through ndarray: values or typed errors.
fn view<T: Element>(t: &Tensor) -> Result<(), TestCaseError> {
    match t.as_slice::<T>() {
        Ok(s) => prop_assert_eq!(s.len(), t.numel()),
        Err(TensorError::InvalidValues(_)) => prop_assert_eq!(t.dtype(), DType::Bool),
        Err(e) => prop_assert!(false, "viewing a received tensor: {e}"),
    }
    let _ = t.view::<T>();
    Ok(())
}

#[test]
fn fuzz_tensor_wire() {
    assert!(fuzz::counting(), "the counting allocator is installed");
    let strategy = (
        input(),
        prop::collection::vec(0usize..8, 0..4),
        prop::collection::vec(0usize..4, 0..4),
    );
    fuzz::run("tensor_wire", 1000, strategy, |(input, reshape, rows)| {
        match input {
            Input::Bytes(wire) => {
                for t in decode::<Tensor>(&wire)?.into_iter() {
                    use_tensor(&t, &reshape, &rows)?;
                }
                if let Some(ts) = decode::<Vec<Tensor>>(&wire)? {
                    for t in &ts {
                        use_tensor(t, &reshape, &rows)?;
                    }
                    let _ = Tensor::stack(ts);
                }
                if let Some((a, b)) = decode::<(Tensor, Tensor)>(&wire)? {
                    use_tensor(&a, &reshape, &rows)?;
                    use_tensor(&b, &reshape, &rows)?;
                }
            }
            Input::Raw(raw) => {
                let got = decode::<Tensor>(&encode(&raw))?;
                let direct = body::decode::<Tensor>(&encode(&raw).body, &encode(&raw).attachments);
                match (expected(&raw), got, direct) {
                    (Ok(shape), Some(t), _) => {
                        prop_assert_eq!(t.shape(), &shape[..]);
                        prop_assert_eq!(t.data(), &raw.3.0);
                        use_tensor(&t, &reshape, &rows)?;
                    }
                    (Err(want), None, Err(e)) => {
                        prop_assert!(e.to_string().contains(&want), "{e} vs {want}");
                    }
                    (want, got, _) => {
                        prop_assert!(false, "expected {want:?}, got {got:?}");
                    }
                }
            }
            Input::Valid(t) => {
                let wire = encode(&t);
                let back = decode::<Tensor>(&wire)?;
                prop_assert_eq!(back.as_ref(), Some(&t));
                use_tensor(&t, &reshape, &rows)?;
            }
        }
        Ok(())
    });
}

/// Found by the fuzz target: a tensor whose dimension 0 is zero but whose
/// other dimensions multiply past `usize` holds no bytes and is valid;
/// splitting it by rows overflowed computing the row size.
#[test]
fn an_empty_tensor_with_huge_trailing_dimensions_is_usable() {
    // (dtype f16, cpu, shape [0, 2^63], no data), as the body codec writes it.
    let body = [1, 0, 2, 0, 253, 0, 0, 0, 0, 0, 0, 0, 128, 0, 0];
    let t: Tensor = body::decode(&body, &[]).unwrap();
    assert_eq!(
        (t.shape(), t.nbytes(), t.numel()),
        (&[0, 1 << 63][..], 0, 0)
    );
    use_tensor(&t, &[0], &[0, 0]).unwrap();
    assert_eq!(t.clone().unstack(&[0, 0]).unwrap().len(), 2);
    // (dtype u8, cpu, shape [2^40, 2^40, 0], no data): the size is checked
    // in dimension order, so this one is refused as overflowing, which keeps
    // the element count of every tensor received within `usize`.
    let big = [253, 0, 0, 0, 0, 0, 1, 0, 0];
    let mut body = vec![9, 0, 3];
    body.extend_from_slice(&big);
    body.extend_from_slice(&big);
    body.extend_from_slice(&[0, 0, 0]);
    let e = body::decode::<Tensor>(&body, &[]).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
}
