//! Frame bodies: serde values encoded with bincode, plus out-of-band
//! attachments.
//!
//! [`encode`] turns any `Serialize` value into a body and a list of
//! attachments; [`decode`] does the reverse, with the decoder limited to the
//! body's own length, and every collection's claimed length capped at it
//! (`bounded`), so that a length field claiming `u64::MAX` fails before
//! anything is allocated for it.
//!
//! A [`Blob`] anywhere inside the value travels as an attachment: its bytes
//! are not copied into the body, and byte-stream transports write them with
//! vectored I/O. This is the hook that tensors, shared memory and RDMA use.
//! Small blobs (up to [`INLINE_BLOB_MAX`] bytes) are written inline, which is
//! cheaper than an extra buffer.
//!
//! bincode is an implementation detail behind this module: nothing outside
//! it names bincode, so the body format can change without touching callers.

use std::cell::RefCell;
use std::fmt;

use bincode::Options;
use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::error::CodecError;

mod bounded;

/// Blobs up to this many bytes are copied into the body instead of travelling
/// as attachments.
pub const INLINE_BLOB_MAX: usize = 512;

/// Bodies up to this size are copied out of the scratch buffer, which is
/// kept for the next encode; larger ones take the buffer with them.
const SCRATCH_KEEP: usize = 16 << 10;

thread_local! {
    // The buffer bodies are serialized into.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    // Attachments collected by `encode` on this thread, while it runs.
    static ENCODING: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
    // Attachments available to `decode` on this thread, while it runs.
    static DECODING: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
}

/// Encodes `value` into a body and its attachments.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<(Bytes, Vec<Bytes>), CodecError> {
    let outer = ENCODING.with(|e| e.borrow_mut().replace(Vec::new()));
    // Serialize into this thread's scratch buffer, then copy a small body
    // out (one allocation of the exact size), or hand a large one over.
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    scratch.clear();
    let result = encode_options().serialize_into(&mut scratch, value);
    let attachments = ENCODING.with(|e| std::mem::replace(&mut *e.borrow_mut(), outer));
    let body = if scratch.len() <= SCRATCH_KEEP {
        let body = Bytes::copy_from_slice(&scratch);
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        body
    } else {
        Bytes::from(scratch)
    };
    result.map_err(|e| CodecError::Body(e.to_string()))?;
    Ok((body, attachments.unwrap_or_default()))
}

/// Decodes a value from a body and its attachments.
///
/// The body must be consumed exactly: trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(body: &[u8], attachments: &[Bytes]) -> Result<T, CodecError> {
    let outer = DECODING.with(|d| d.borrow_mut().replace(attachments.to_vec()));
    // No collection in the body has more elements than the body has bytes:
    // capped there, no claimed length preallocates more than the body's
    // worth of elements.
    let result =
        options(body.len() as u64).deserialize_seed(bounded::Bounded::<T>::new(body.len()), body);
    DECODING.with(|d| *d.borrow_mut() = outer);
    result.map_err(|e| match *e {
        bincode::ErrorKind::Custom(msg) if msg.starts_with(ATTACHMENT_ERROR) => {
            parse_attachment_error(&msg, attachments.len())
        }
        other => CodecError::Body(other.to_string()),
    })
}

/// The options for decoding: the limit stops a length field from claiming
/// more bytes than the body holds before anything is allocated.
fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(limit)
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

/// The options for encoding: the same format without a limit. (With a limit
/// bincode measures the value first, which would serialize it twice and
/// collect every attachment twice.)
fn encode_options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_no_limit()
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

const ATTACHMENT_ERROR: &str = "rpc-core attachment index ";

fn parse_attachment_error(msg: &str, count: usize) -> CodecError {
    let index = msg[ATTACHMENT_ERROR.len()..].parse().unwrap_or(u32::MAX);
    CodecError::AttachmentIndex { index, count }
}

/// Binary data that travels out of band when it is large.
///
/// Put a `Blob` anywhere inside an argument or a result. Encoded by
/// [`encode`], a blob larger than [`INLINE_BLOB_MAX`] becomes an attachment
/// and its bytes are never copied into the body; the receiver gets a `Blob`
/// that shares the received buffer.
///
/// Outside [`encode`]/[`decode`] (say, with `serde_json`), a `Blob`
/// serializes as plain bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blob(pub Bytes);

impl Blob {
    /// Wraps bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Self(v.into())
    }
}

impl From<Bytes> for Blob {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

// Inside `encode`, a blob is the enum `{ Inline(bytes), Attached(u32) }`;
// outside, plain bytes.
const BLOB_NAME: &str = "rpc_core::Blob";
const BLOB_VARIANTS: &[&str] = &["Inline", "Attached"];

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = if self.0.len() > INLINE_BLOB_MAX {
            ENCODING.with(|e| {
                e.borrow_mut().as_mut().map(|atts| {
                    atts.push(self.0.clone());
                    atts.len() - 1
                })
            })
        } else {
            None
        };
        let in_context = index.is_some() || ENCODING.with(|e| e.borrow().is_some());
        if !in_context {
            return serializer.serialize_bytes(&self.0);
        }
        match index {
            Some(i) => {
                let i = u32::try_from(i).map_err(serde::ser::Error::custom)?;
                serializer.serialize_newtype_variant(BLOB_NAME, 1, BLOB_VARIANTS[1], &i)
            }
            None => serializer.serialize_newtype_variant(
                BLOB_NAME,
                0,
                BLOB_VARIANTS[0],
                &BytesRef(&self.0),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if DECODING.with(|d| d.borrow().is_some()) {
            deserializer.deserialize_enum(BLOB_NAME, BLOB_VARIANTS, BlobVisitor)
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor).map(Blob)
        }
    }
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an inline or attached blob")
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Blob, A::Error> {
        use de::VariantAccess;
        let (tag, variant): (u32, _) = data.variant()?;
        match tag {
            0 => Ok(Blob(variant.newtype_variant::<OwnedBytes>()?.0)),
            1 => {
                let index: u32 = variant.newtype_variant()?;
                DECODING.with(|d| {
                    let d = d.borrow();
                    let atts = d.as_deref().unwrap_or_default();
                    atts.get(index as usize)
                        .cloned()
                        .map(Blob)
                        .ok_or_else(|| de::Error::custom(format_args!("{ATTACHMENT_ERROR}{index}")))
                })
            }
            other => Err(de::Error::invalid_value(
                de::Unexpected::Unsigned(other.into()),
                &"blob tag 0 or 1",
            )),
        }
    }
}

/// Bytes deserialized with `deserialize_byte_buf`.
struct OwnedBytes(Bytes);

impl<'de> Deserialize<'de> for OwnedBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor).map(OwnedBytes)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out.into())
    }
}

/// Serializes a byte slice with `serialize_bytes` (not as a sequence of u8,
/// which bincode would encode element by element).
struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Nested {
        name: String,
        small: Blob,
        big: Vec<Blob>,
        map: BTreeMap<u32, Blob>,
    }

    fn blob(n: usize, fill: u8) -> Blob {
        Blob::from(vec![fill; n])
    }

    #[test]
    fn round_trips_plain_values() {
        let (body, atts) = encode(&("hello world", 42u64, vec![1.5f64])).unwrap();
        assert!(atts.is_empty());
        let back: (String, u64, Vec<f64>) = decode(&body, &atts).unwrap();
        assert_eq!(back, ("hello world".to_owned(), 42, vec![1.5]));
    }

    #[test]
    fn large_blobs_travel_as_attachments_without_copy() {
        let big = blob(1 << 20, 7);
        let value = Nested {
            name: "n".into(),
            small: blob(10, 1),
            big: vec![big.clone(), blob(INLINE_BLOB_MAX + 1, 2)],
            map: BTreeMap::from([(3, blob(4096, 3))]),
        };
        let (body, atts) = encode(&value).unwrap();
        assert_eq!(atts.len(), 3);
        assert!(
            body.len() < 100,
            "body holds only indices, got {} bytes",
            body.len()
        );
        // The attachment shares the caller's buffer: same pointer, no copy.
        assert_eq!(atts[0].as_ptr(), big.bytes().as_ptr());
        let back: Nested = decode(&body, &atts).unwrap();
        assert_eq!(back, value);
        assert_eq!(back.big[0].bytes().as_ptr(), atts[0].as_ptr());
    }

    #[test]
    fn blob_outside_the_codec_is_plain_bytes() {
        let b = blob(1000, 9);
        let plain = bincode::serialize(&b).unwrap();
        assert_eq!(plain.len(), 8 + 1000);
        let back: Blob = bincode::deserialize(&plain).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn missing_attachment_is_a_typed_error() {
        let (body, _atts) = encode(&blob(4096, 1)).unwrap();
        let err = decode::<Blob>(&body, &[]).unwrap_err();
        assert_eq!(err, CodecError::AttachmentIndex { index: 0, count: 0 });
    }

    #[test]
    fn huge_length_is_rejected() {
        // A varint length prefix of u64::MAX (marker 253, then 8 bytes), and
        // the reserved marker 255. `tests/codec_limits.rs` checks that
        // nothing is allocated for the claim.
        for marker in [253u8, 0xff] {
            let mut body = vec![marker];
            body.extend_from_slice(&u64::MAX.to_le_bytes());
            assert!(matches!(
                decode::<Vec<u8>>(&body, &[]),
                Err(CodecError::Body(_))
            ));
            assert!(matches!(
                decode::<String>(&body, &[]),
                Err(CodecError::Body(_))
            ));
            assert!(matches!(
                decode::<Vec<Vec<u64>>>(&body, &[]),
                Err(CodecError::Body(_))
            ));
        }
    }

    #[test]
    fn collections_decode_through_the_cap() {
        let value = (
            vec![vec![1u64, 2], vec![]],
            BTreeMap::from([(1u8, "a".to_owned()), (2, "b".to_owned())]),
            Some(vec![Some(3u16), None]),
            Err::<(), _>(vec![blob(3, 4)]),
        );
        let (body, atts) = encode(&value).unwrap();
        assert_eq!(decode::<_>(&body, &atts), Ok(value));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let (body, atts) = encode(&1u8).unwrap();
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(decode::<u8>(&longer, &atts).is_err());
    }

    #[test]
    fn nested_encode_keeps_outer_attachments() {
        struct Inner;
        impl Serialize for Inner {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let (b, a) = encode(&blob(4096, 5)).map_err(serde::ser::Error::custom)?;
                assert_eq!(a.len(), 1);
                s.serialize_u64(b.len() as u64)
            }
        }
        let (_, atts) = encode(&(blob(4096, 1), Inner, blob(4096, 2))).unwrap();
        assert_eq!(atts.len(), 2);
        assert_eq!(atts[1][0], 2);
    }
}
