//! [`TensorError`]: what goes wrong with tensors and batches.

use crate::DType;

/// A tensor that could not be built, viewed, received, stacked or split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// The product of the shape's dimensions, in bytes, does not fit in
    /// memory (a `usize`).
    #[error("shape {shape:?} of {dtype} overflows")]
    ShapeOverflow {
        /// The shape.
        shape: Vec<u64>,
        /// The dtype.
        dtype: DType,
    },
    /// The data's length disagrees with the shape and the dtype.
    #[error("shape {shape:?} of {dtype} needs {expected} bytes, got {got}")]
    LengthMismatch {
        /// The shape.
        shape: Vec<usize>,
        /// The dtype.
        dtype: DType,
        /// The length the shape needs.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// More dimensions than [`MAX_DIMS`](crate::MAX_DIMS).
    #[error("{0} dimensions exceed the limit of {max}", max = crate::MAX_DIMS)]
    TooManyDims(usize),
    /// An unknown dtype tag on the wire.
    #[error("unknown dtype tag {0}")]
    UnknownDType(u8),
    /// An unknown device tag on the wire.
    #[error("unknown device tag {0}")]
    UnknownDevice(u8),
    /// The tensor was viewed as another element type.
    #[error("tensor of {actual} viewed as {requested}")]
    DTypeMismatch {
        /// The tensor's dtype.
        actual: DType,
        /// The dtype asked for.
        requested: DType,
    },
    /// The data is not aligned for the element type asked for. Tensors of
    /// this crate are always aligned for their dtype, so this is a guard,
    /// not an expected outcome.
    #[error("tensor data at {addr:#x} is not aligned to {align} bytes")]
    Misaligned {
        /// The data's address.
        addr: usize,
        /// The alignment needed.
        align: usize,
    },
    /// The bytes are not valid values of the dtype (a `bool` other than 0
    /// or 1).
    #[error("tensor bytes are not valid {0} values")]
    InvalidValues(DType),
    /// Tensors to be stacked or split along dimension 0 do not fit: a
    /// rank-0 tensor, another dtype or other trailing dimensions, other
    /// vector lengths, row counts that disagree.
    #[error("cannot stack or split: {0}")]
    Stack(String),
}
