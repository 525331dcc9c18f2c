//! Element types: [`DType`] names them at run time, [`Element`] ties a Rust
//! type to its `DType`.

use std::fmt;

use half::{bf16, f16};

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DType {
    /// IEEE 754 half precision.
    F16 = 1,
    /// bfloat16.
    BF16 = 2,
    /// IEEE 754 single precision.
    F32 = 3,
    /// IEEE 754 double precision.
    F64 = 4,
    /// Signed 8-bit integer.
    I8 = 5,
    /// Signed 16-bit integer.
    I16 = 6,
    /// Signed 32-bit integer.
    I32 = 7,
    /// Signed 64-bit integer.
    I64 = 8,
    /// Unsigned 8-bit integer.
    U8 = 9,
    /// Boolean, one byte each, 0 or 1.
    Bool = 10,
}

impl DType {
    /// Every dtype, in tag order.
    pub const ALL: [Self; 10] = [
        Self::F16,
        Self::BF16,
        Self::F32,
        Self::F64,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::U8,
        Self::Bool,
    ];

    /// The size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 | Self::Bool => 1,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }

    /// The tag that identifies the dtype on the wire.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The dtype of a wire tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.tag() == tag)
    }

    /// A short lowercase name, as in PyTorch (`"float32"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::I64 => "int64",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust type that can be a tensor element.
///
/// Implemented for `f16`, `bf16` (from the `half` crate), `f32`, `f64`,
/// `i8`–`i64`, `u8` and `bool`; sealed. The byte checks of
/// [`bytemuck::CheckedBitPattern`] make viewing received bytes as `bool`
/// safe: a byte other than 0 or 1 is an error, not undefined behaviour.
pub trait Element:
    bytemuck::CheckedBitPattern + bytemuck::NoUninit + Copy + Send + Sync + 'static + sealed::Sealed
{
    /// The dtype of this type.
    const DTYPE: DType;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! elements {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
        }
    )*};
}

elements! {
    f16 => F16,
    bf16 => BF16,
    f32 => F32,
    f64 => F64,
    i8 => I8,
    i16 => I16,
    i32 => I32,
    i64 => I64,
    u8 => U8,
    bool => Bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_sizes_match_the_rust_types() {
        for d in DType::ALL {
            assert_eq!(DType::from_tag(d.tag()), Some(d));
        }
        assert_eq!(DType::from_tag(0), None);
        assert_eq!(DType::from_tag(11), None);
        fn size<T: Element>() -> (usize, usize) {
            (T::DTYPE.size(), std::mem::size_of::<T>())
        }
        for (a, b) in [
            size::<f16>(),
            size::<bf16>(),
            size::<f32>(),
            size::<f64>(),
            size::<i8>(),
            size::<i16>(),
            size::<i32>(),
            size::<i64>(),
            size::<u8>(),
            size::<bool>(),
        ] {
            assert_eq!(a, b);
        }
    }
}
