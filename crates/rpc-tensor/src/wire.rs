//! How a [`Tensor`] travels: `(dtype tag, device tag, shape, data)`, the
//! data as an [`rpc_core::Blob`], so that inside `rpc_core::body` it is an
//! out-of-band attachment (inline when it is small).
//!
//! Everything received is checked before a tensor exists: the tags, the
//! number of dimensions, that the shape's size does not overflow, and that
//! it matches the data's length. A failed check is a deserialization error
//! carrying the [`TensorError`](crate::TensorError)'s message; through the
//! engine, a handler's caller sees it as a bad-arguments error and a
//! caller as a codec error, never a panic.

use std::fmt;

use rpc_core::Blob;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::tensor::MAX_DIMS;
use crate::{DType, Device, Tensor, TensorError};

impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.dtype().tag())?;
        t.serialize_element(&self.device().tag())?;
        t.serialize_element(&Shape(self.shape()))?;
        // Cloning `Bytes` shares the buffer; nothing is copied.
        t.serialize_element(&Blob(self.data().clone()))?;
        t.end()
    }
}

/// A shape, written as `u64`s so that it reads the same everywhere.
struct Shape<'a>(&'a [usize]);

impl Serialize for Shape<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for &d in self.0 {
            seq.serialize_element(&(d as u64))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Tensor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_tuple(4, TensorVisitor)
    }
}

struct TensorVisitor;

impl<'de> Visitor<'de> for TensorVisitor {
    type Value = Tensor;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor (dtype, device, shape, data)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tensor, A::Error> {
        let missing = |i| de::Error::invalid_length(i, &self);
        let dtype: u8 = seq.next_element()?.ok_or_else(|| missing(0))?;
        let device: u8 = seq.next_element()?.ok_or_else(|| missing(1))?;
        let shape: BoundedShape = seq.next_element()?.ok_or_else(|| missing(2))?;
        let data: Blob = seq.next_element()?.ok_or_else(|| missing(3))?;
        from_wire(dtype, device, &shape.0, data).map_err(de::Error::custom)
    }
}

/// Checks received parts and builds the tensor.
fn from_wire(dtype: u8, device: u8, shape: &[u64], data: Blob) -> Result<Tensor, TensorError> {
    let dtype = DType::from_tag(dtype).ok_or(TensorError::UnknownDType(dtype))?;
    Device::from_tag(device).ok_or(TensorError::UnknownDevice(device))?;
    let overflow = || TensorError::ShapeOverflow {
        shape: shape.to_vec(),
        dtype,
    };
    let shape = shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| overflow()))
        .collect::<Result<Vec<usize>, _>>()?;
    Tensor::from_bytes(dtype, &shape, data.into_bytes())
}

/// A shape of at most [`MAX_DIMS`] dimensions, refused as soon as the
/// count is known.
struct BoundedShape(Vec<u64>);

impl<'de> Deserialize<'de> for BoundedShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BoundedShape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX_DIMS} dimensions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BoundedShape, A::Error> {
                if let Some(n) = seq.size_hint().filter(|&n| n > MAX_DIMS) {
                    return Err(de::Error::custom(TensorError::TooManyDims(n)));
                }
                let mut dims = Vec::new();
                while let Some(d) = seq.next_element::<u64>()? {
                    if dims.len() == MAX_DIMS {
                        return Err(de::Error::custom(TensorError::TooManyDims(MAX_DIMS + 1)));
                    }
                    dims.push(d);
                }
                Ok(BoundedShape(dims))
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use rpc_core::body;

    use super::*;

    #[test]
    fn large_data_travels_as_an_attachment_small_data_inline() {
        let big = Tensor::zeros(DType::F32, &[64, 64]).unwrap();
        let (b, atts) = body::encode(&big).unwrap();
        assert!(b.len() < 32, "body of {} bytes", b.len());
        assert_eq!(atts.len(), 1);
        assert_eq!(atts[0].as_ptr(), big.data().as_ptr());
        let back: Tensor = body::decode(&b, &atts).unwrap();
        assert_eq!(back, big);
        assert_eq!(back.data().as_ptr(), big.data().as_ptr());

        let small = Tensor::from_slice(&[2], &[1i16, -1]).unwrap();
        let (b, atts) = body::encode(&small).unwrap();
        assert!(atts.is_empty());
        let back: Tensor = body::decode(&b, &atts).unwrap();
        assert_eq!(back, small);
        assert!(back.is_aligned());
    }
}
