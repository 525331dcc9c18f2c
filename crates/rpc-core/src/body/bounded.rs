//! A deserializer wrapper that caps the length a sequence or a map claims
//! at the length of the body.
//!
//! bincode hands a sequence's length prefix to the visitor as its size
//! hint, unchecked, and serde's `Vec` (and every other collection)
//! preallocates from the hint, up to 1 MiB per collection. So a 9-byte body
//! claiming `u64::MAX` elements allocated 1 MiB before failing, and a body
//! of nested collections 1 MiB per level. Every element of a sized type
//! takes at least one byte of the body (zero-sized ones get no
//! preallocation), so no collection in a body of `n` bytes has more than
//! `n` elements: capped at `n`, a hint is still an upper bound of the
//! truth, and what a decode preallocates is proportional to the body.
//!
//! Everything else is forwarded unchanged; each nested value is wrapped in
//! turn, through the visitors, seeds and accesses serde passes down.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// Deserializes a `T` with every size hint capped at `max`.
pub(super) struct Bounded<T> {
    max: usize,
    value: PhantomData<fn() -> T>,
}

impl<T> Bounded<T> {
    /// A seed for a body of `max` bytes.
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            value: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Bounded<T> {
    type Value = T;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::deserialize(Capped {
            inner: d,
            max: self.max,
        })
    }
}

/// A deserializer whose collections claim at most `max` elements.
struct Capped<D> {
    inner: D,
    max: usize,
}

/// A visitor whose collections' accesses are capped in turn.
struct Wrap<V> {
    inner: V,
    max: usize,
}

/// A seed that deserializes through a capped deserializer.
struct Seed<S> {
    inner: S,
    max: usize,
}

/// Forwards `deserialize_*` methods that take only a visitor.
macro_rules! forward {
    ($($method:ident),* $(,)?) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Wrap { inner: visitor, max: self.max })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Capped<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let max = self.max;
        self.inner.deserialize_unit_struct(
            name,
            Wrap {
                inner: visitor,
                max,
            },
        )
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let max = self.max;
        self.inner.deserialize_newtype_struct(
            name,
            Wrap {
                inner: visitor,
                max,
            },
        )
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let max = self.max;
        self.inner.deserialize_tuple(
            len,
            Wrap {
                inner: visitor,
                max,
            },
        )
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let max = self.max;
        self.inner.deserialize_tuple_struct(
            name,
            len,
            Wrap {
                inner: visitor,
                max,
            },
        )
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let max = self.max;
        self.inner.deserialize_struct(
            name,
            fields,
            Wrap {
                inner: visitor,
                max,
            },
        )
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let max = self.max;
        self.inner.deserialize_enum(
            name,
            variants,
            Wrap {
                inner: visitor,
                max,
            },
        )
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards `visit_*` methods that take one plain value.
macro_rules! visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let max = self.max;
        self.inner.visit_some(Capped { inner: d, max })
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let max = self.max;
        self.inner.visit_newtype_struct(Capped { inner: d, max })
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let max = self.max;
        self.inner.visit_seq(Wrap { inner: seq, max })
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let max = self.max;
        self.inner.visit_map(Wrap { inner: map, max })
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let max = self.max;
        self.inner.visit_enum(Wrap { inner: data, max })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let max = self.max;
        self.inner.next_element_seed(Seed { inner: seed, max })
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint().map(|n| n.min(self.max))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let max = self.max;
        self.inner.next_key_seed(Seed { inner: seed, max })
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let max = self.max;
        self.inner.next_value_seed(Seed { inner: seed, max })
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint().map(|n| n.min(self.max))
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<A> {
    type Error = A::Error;
    type Variant = Wrap<A::Variant>;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let max = self.max;
        let (value, variant) = self.inner.variant_seed(Seed { inner: seed, max })?;
        Ok((
            value,
            Wrap {
                inner: variant,
                max,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let max = self.max;
        self.inner.newtype_variant_seed(Seed { inner: seed, max })
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let max = self.max;
        self.inner.tuple_variant(
            len,
            Wrap {
                inner: visitor,
                max,
            },
        )
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let max = self.max;
        self.inner.struct_variant(
            fields,
            Wrap {
                inner: visitor,
                max,
            },
        )
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Capped {
            inner: d,
            max: self.max,
        })
    }
}
