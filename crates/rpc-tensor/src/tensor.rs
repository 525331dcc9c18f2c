//! [`Tensor`]: dtype, shape, device and shared, immutable, aligned bytes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::{DType, Element, TensorError};

/// The alignment of the data of every tensor this crate builds or
/// receives: a cache line, enough for any element type and SIMD loads.
pub const ALIGN: usize = 64;
/// The most dimensions a tensor may have.
pub const MAX_DIMS: usize = 64;

/// Bytes copied so far by this process to realign received data.
static REALIGNED: AtomicU64 = AtomicU64::new(0);

/// Where a tensor's data lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Device {
    /// Host memory.
    #[default]
    Cpu,
}

impl Device {
    /// The tag that identifies the device on the wire.
    pub fn tag(self) -> u8 {
        match self {
            Self::Cpu => 0,
        }
    }

    /// The device of a wire tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        (tag == 0).then_some(Self::Cpu)
    }
}

/// A dense, contiguous, row-major tensor whose data is shared and
/// immutable.
///
/// Cloning is cheap (the data is reference-counted), and sending a tensor
/// in a call never requires the caller to stop using it: the call shares
/// the bytes. Inside any argument or result, the data travels as an
/// out-of-band attachment ([`rpc_core::Blob`]) and is never copied into
/// the body.
///
/// The data of every tensor built here or received is aligned to
/// [`ALIGN`] bytes; rows split off along dimension 0 start at a row
/// boundary, so they stay aligned for their element type.
///
/// ```
/// use rpc_tensor::{DType, Tensor};
///
/// let t = Tensor::from_slice(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// assert_eq!((t.dtype(), t.shape()), (DType::F32, &[2, 3][..]));
/// assert_eq!(t.as_slice::<f32>()?[4], 5.0);
/// assert!(t.as_slice::<i32>().is_err());
/// # Ok::<_, rpc_tensor::TensorError>(())
/// ```
#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Bytes,
    device: Device,
}

impl Tensor {
    /// A tensor of `shape` holding a copy of `data`, in one aligned
    /// allocation.
    pub fn from_slice<T: Element>(shape: &[usize], data: &[T]) -> Result<Self, TensorError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        check_len(T::DTYPE, shape, bytes.len())?;
        Ok(Self {
            dtype: T::DTYPE,
            shape: shape.to_vec(),
            data: aligned_concat(&[bytes]),
            device: Device::Cpu,
        })
    }

    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Self, TensorError> {
        let len = byte_len(dtype, shape)?;
        let vec = vec![0u8; len + ALIGN - 1];
        let start = vec.as_ptr().align_offset(ALIGN).min(ALIGN - 1);
        Ok(Self {
            dtype,
            shape: shape.to_vec(),
            data: Bytes::from(vec).slice(start..start + len),
            device: Device::Cpu,
        })
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Self {
        Self {
            dtype: T::DTYPE,
            shape: Vec::new(),
            data: aligned_concat(&[bytemuck::bytes_of(&value)]),
            device: Device::Cpu,
        }
    }

    /// A tensor over `data`, checked against `dtype` and `shape`.
    ///
    /// Shares `data` when it starts at an [`ALIGN`]-byte boundary (as
    /// large attachments received over TCP or shared memory do), and
    /// copies it into an aligned buffer only when it does not.
    pub fn from_bytes(dtype: DType, shape: &[usize], data: Bytes) -> Result<Self, TensorError> {
        check_len(dtype, shape, data.len())?;
        Ok(Self {
            dtype,
            shape: shape.to_vec(),
            data: realign(data),
            device: Device::Cpu,
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.data.len()
    }

    /// Where the data lives.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The data, row-major.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Unwraps the data.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// The elements, viewed in place.
    ///
    /// Fails if `T` is not the tensor's dtype, or (for `bool`) a byte is
    /// neither 0 nor 1.
    pub fn as_slice<T: Element>(&self) -> Result<&[T], TensorError> {
        if T::DTYPE != self.dtype {
            return Err(TensorError::DTypeMismatch {
                actual: self.dtype,
                requested: T::DTYPE,
            });
        }
        if self.data.is_empty() {
            return Ok(&[]);
        }
        bytemuck::checked::try_cast_slice(&self.data).map_err(|e| match e {
            bytemuck::checked::CheckedCastError::InvalidBitPattern => {
                TensorError::InvalidValues(self.dtype)
            }
            _ => TensorError::Misaligned {
                addr: self.data.as_ptr() as usize,
                align: std::mem::align_of::<T>(),
            },
        })
    }

    /// A copy of the elements.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, TensorError> {
        self.as_slice().map(<[T]>::to_vec)
    }

    /// The same data with another shape of the same number of elements;
    /// nothing is copied.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self, TensorError> {
        check_len(self.dtype, shape, self.data.len())?;
        Ok(Self {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Whether the data starts at an [`ALIGN`]-byte boundary.
    pub fn is_aligned(&self) -> bool {
        self.data.is_empty() || (self.data.as_ptr() as usize).is_multiple_of(ALIGN)
    }

    /// The size of one row along dimension 0, in bytes (for rank 0, the
    /// whole tensor).
    pub(crate) fn row_bytes(&self) -> usize {
        let rest = self.shape.get(1..).unwrap_or_default();
        if rest.contains(&0) {
            return 0;
        }
        // Without a zero among them, the trailing dimensions overflow only
        // when dimension 0 is zero: then no row is ever taken, and any size
        // will do.
        rest.iter()
            .try_fold(self.dtype.size(), |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Builds a tensor from parts already checked by the caller.
    pub(crate) fn from_checked(dtype: DType, shape: Vec<usize>, data: Bytes) -> Self {
        Self {
            dtype,
            shape,
            data,
            device: Device::Cpu,
        }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype
            && self.shape == other.shape
            && self.device == other.device
            && self.data == other.data
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("device", &self.device)
            .field("nbytes", &self.data.len())
            .finish()
    }
}

/// The number of bytes this process has copied so far to realign
/// received tensor data that did not start at an [`ALIGN`]-byte boundary
/// (small tensors inlined in a body; anything a transport delivered
/// unaligned). Large attachments from the TCP and shared-memory transports
/// arrive aligned and add nothing.
pub fn realigned_bytes() -> u64 {
    REALIGNED.load(Ordering::Relaxed)
}

/// The data length of `shape` of `dtype`, or why there is none.
pub(crate) fn byte_len(dtype: DType, shape: &[usize]) -> Result<usize, TensorError> {
    if shape.len() > MAX_DIMS {
        return Err(TensorError::TooManyDims(shape.len()));
    }
    shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| TensorError::ShapeOverflow {
            shape: shape.iter().map(|&d| d as u64).collect(),
            dtype,
        })
}

fn check_len(dtype: DType, shape: &[usize], got: usize) -> Result<(), TensorError> {
    let expected = byte_len(dtype, shape)?;
    if expected != got {
        return Err(TensorError::LengthMismatch {
            shape: shape.to_vec(),
            dtype,
            expected,
            got,
        });
    }
    Ok(())
}

/// `data` itself if it is aligned, else an aligned copy.
fn realign(data: Bytes) -> Bytes {
    if data.is_empty() || (data.as_ptr() as usize).is_multiple_of(ALIGN) {
        return data;
    }
    REALIGNED.fetch_add(data.len() as u64, Ordering::Relaxed);
    aligned_concat(&[&data])
}

/// The concatenation of `parts` in one new [`ALIGN`]-byte aligned buffer,
/// built without `unsafe`: a `Vec` with `ALIGN - 1` spare bytes in front.
pub(crate) fn aligned_concat(parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len == 0 {
        return Bytes::new();
    }
    let mut vec: Vec<u8> = Vec::with_capacity(len + ALIGN - 1);
    let start = vec.as_ptr().align_offset(ALIGN).min(ALIGN - 1);
    vec.resize(start, 0);
    for p in parts {
        vec.extend_from_slice(p);
    }
    Bytes::from(vec).slice(start..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_len_of(dtype: DType, shape: &[usize], expect: Result<usize, &str>) {
        match (byte_len(dtype, shape), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn byte_lengths() {
        check_len_of(DType::F32, &[], Ok(4));
        check_len_of(DType::F32, &[2, 3], Ok(24));
        check_len_of(DType::F64, &[0, usize::MAX], Ok(0));
        check_len_of(DType::Bool, &[7], Ok(7));
        check_len_of(DType::F32, &[usize::MAX], Err("overflows"));
        check_len_of(DType::U8, &[1 << 32, 1 << 32], Err("overflows"));
        check_len_of(DType::U8, &[1; 65], Err("65 dimensions"));
    }

    #[test]
    fn buffers_are_aligned() {
        for len in [1, 3, 63, 64, 65, 4096, 100_000] {
            let data = vec![7u8; len];
            let b = aligned_concat(&[&data[..len / 2], &data[len / 2..]]);
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            assert_eq!(&b[..], &data[..]);
            let t = Tensor::zeros(DType::U8, &[len]).unwrap();
            assert!(t.is_aligned());
            assert_eq!(t.nbytes(), len);
        }
    }

    #[test]
    fn aligned_data_is_shared_and_unaligned_data_copied() {
        let aligned = aligned_concat(&[&[1u8; 256]]);
        let t = Tensor::from_bytes(DType::U8, &[256], aligned.clone()).unwrap();
        assert_eq!(t.data().as_ptr(), aligned.as_ptr());
        let unaligned = aligned.slice(1..);
        let t = Tensor::from_bytes(DType::U8, &[255], unaligned.clone()).unwrap();
        assert_ne!(t.data().as_ptr(), unaligned.as_ptr());
        assert!(t.is_aligned());
    }

    #[test]
    fn views_check_dtype_and_values() {
        let t = Tensor::from_slice(&[3], &[true, false, true]).unwrap();
        assert_eq!(t.as_slice::<bool>().unwrap(), &[true, false, true]);
        let bad = Tensor::from_bytes(DType::Bool, &[2], Bytes::from_static(&[1, 2])).unwrap();
        assert_eq!(
            bad.as_slice::<bool>(),
            Err(TensorError::InvalidValues(DType::Bool))
        );
        assert_eq!(
            t.as_slice::<u8>(),
            Err(TensorError::DTypeMismatch {
                actual: DType::Bool,
                requested: DType::U8
            })
        );
        let empty = Tensor::from_slice::<f64>(&[0, 3], &[]).unwrap();
        assert_eq!(empty.as_slice::<f64>().unwrap(), &[] as &[f64]);
        assert_eq!(Tensor::scalar(2.5f64).to_vec::<f64>().unwrap(), vec![2.5]);
        let r = t.reshape(&[1, 3]).unwrap();
        assert_eq!(r.data().as_ptr(), t.data().as_ptr());
        assert!(t.reshape(&[2]).is_err());
    }
}
