//! Structured mutations of valid inputs: take an encoding that decodes,
//! then flip, overwrite, insert, delete, duplicate or cut bytes, and write
//! boundary integers where length fields may be.
//!
//! Arbitrary bytes rarely get past a decoder's first check (a magic, a
//! version); a valid encoding with a few [`Edit`]s reaches the deeper ones.
//! Positions are proptest [`Index`]es, so one edit fits inputs of any
//! length, and edits shrink like any proptest value.

use proptest::prelude::*;
use proptest::sample::Index;

/// Where an edit applies.
#[derive(Clone, Debug)]
pub enum Pos {
    /// Anywhere in the input, scaled to its length.
    Anywhere(Index),
    /// At this byte offset (an edit past the end does nothing).
    At(usize),
}

impl Pos {
    /// The offset in an input of `len` bytes, for an edit that needs a byte
    /// there; `None` if there is none.
    fn inside(&self, len: usize) -> Option<usize> {
        match self {
            _ if len == 0 => None,
            Self::Anywhere(i) => Some(i.index(len)),
            Self::At(at) => (*at < len).then_some(*at),
        }
    }

    /// The offset for an insertion: anywhere from the start to the end.
    fn between(&self, len: usize) -> usize {
        match self {
            Self::Anywhere(i) => i.index(len + 1),
            Self::At(at) => (*at).min(len),
        }
    }
}

/// One change to an input.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Flips one bit of a byte.
    FlipBit {
        /// The byte.
        at: Pos,
        /// The bit, 0 to 7.
        bit: u8,
    },
    /// Overwrites one byte.
    SetByte {
        /// The byte.
        at: Pos,
        /// Its new value.
        value: u8,
    },
    /// Inserts bytes.
    Insert {
        /// Where.
        at: Pos,
        /// What.
        bytes: Vec<u8>,
    },
    /// Inserts one byte many times (a long name, a deep nesting).
    Repeat {
        /// Where.
        at: Pos,
        /// The byte.
        byte: u8,
        /// How many times.
        count: usize,
    },
    /// Removes up to `len` bytes.
    Delete {
        /// The first byte removed.
        at: Pos,
        /// How many.
        len: usize,
    },
    /// Copies up to `len` bytes from one place and inserts them at another.
    Duplicate {
        /// The first byte copied.
        from: Pos,
        /// How many.
        len: usize,
        /// Where the copy goes.
        to: Pos,
    },
    /// Overwrites `width` bytes with an integer: how a length or count
    /// field changes. Bytes past the end are not written.
    Integer {
        /// The first byte.
        at: Pos,
        /// 1, 2, 4 or 8 bytes.
        width: u8,
        /// The value, truncated to `width` bytes.
        value: u64,
        /// Big-endian instead of little-endian.
        big_endian: bool,
    },
    /// Cuts the input short.
    Truncate {
        /// The new length (the input's own when it is shorter).
        at: Pos,
    },
}

impl Edit {
    /// Applies the edit to `bytes`.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            Self::FlipBit { at, bit } => {
                if let Some(i) = at.inside(len) {
                    bytes[i] ^= 1 << (bit % 8);
                }
            }
            Self::SetByte { at, value } => {
                if let Some(i) = at.inside(len) {
                    bytes[i] = *value;
                }
            }
            Self::Insert { at, bytes: new } => {
                let i = at.between(len);
                bytes.splice(i..i, new.iter().copied());
            }
            Self::Repeat { at, byte, count } => {
                let i = at.between(len);
                bytes.splice(i..i, std::iter::repeat_n(*byte, *count));
            }
            Self::Delete { at, len: n } => {
                if let Some(i) = at.inside(len) {
                    bytes.drain(i..i + (*n).min(len - i));
                }
            }
            Self::Duplicate { from, len: n, to } => {
                if let Some(i) = from.inside(len) {
                    let copy = bytes[i..i + (*n).min(len - i)].to_vec();
                    let j = to.between(len);
                    bytes.splice(j..j, copy);
                }
            }
            Self::Integer {
                at,
                width,
                value,
                big_endian,
            } => {
                if let Some(i) = at.inside(len) {
                    let w = usize::from(*width).clamp(1, 8);
                    let le = value.to_le_bytes();
                    let mut field = le[..w].to_vec();
                    if *big_endian {
                        field.reverse();
                    }
                    let end = (i + w).min(len);
                    bytes[i..end].copy_from_slice(&field[..end - i]);
                }
            }
            Self::Truncate { at } => {
                let i = at.between(len);
                bytes.truncate(i);
            }
        }
    }
}

/// Applies `edits` in order.
pub fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        e.apply(bytes);
    }
}

/// Integers at the boundaries where length arithmetic breaks, and
/// sometimes any integer.
pub fn interesting_u64() -> BoxedStrategy<u64> {
    prop_oneof![
        4 => prop::sample::select(vec![
            0u64,
            1,
            2,
            7,
            8,
            0x7f,
            0x80,
            0xff,
            0x100,
            0x7fff,
            0x8000,
            0xffff,
            0x1_0000,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            1 << 32,
            1 << 40,
            i64::MAX as u64,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ]),
        2 => 0u64..1024,
        1 => any::<u64>(),
    ]
    .boxed()
}

/// A width for [`Edit::Integer`].
fn width() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![1u8, 2, 4, 8])
}

/// A position anywhere.
fn anywhere() -> impl Strategy<Value = Pos> {
    any::<Index>().prop_map(Pos::Anywhere)
}

/// Any [`Edit`], anywhere.
pub fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        3 => (anywhere(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit { at, bit }),
        3 => (anywhere(), any::<u8>()).prop_map(|(at, value)| Edit::SetByte { at, value }),
        2 => (anywhere(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        1 => (anywhere(), any::<u8>(), 1usize..600)
            .prop_map(|(at, byte, count)| Edit::Repeat { at, byte, count }),
        2 => (anywhere(), 1usize..32).prop_map(|(at, len)| Edit::Delete { at, len }),
        1 => (anywhere(), 1usize..64, anywhere())
            .prop_map(|(from, len, to)| Edit::Duplicate { from, len, to }),
        4 => (anywhere(), width(), interesting_u64(), prop::bool::weighted(0.2)).prop_map(
            |(at, width, value, big_endian)| Edit::Integer {
                at,
                width,
                value,
                big_endian
            }
        ),
        1 => anywhere().prop_map(|at| Edit::Truncate { at }),
    ]
    .boxed()
}

/// Any [`Edit`], and also insertions and overwrites of the tokens of
/// `dictionary` (for text formats: brackets, quotes, keys, huge numbers).
pub fn edit_with(dictionary: &'static [&'static str]) -> BoxedStrategy<Edit> {
    let token = || prop::sample::select(dictionary).prop_map(|t| t.as_bytes().to_vec());
    prop_oneof![
        2 => edit(),
        2 => (anywhere(), token()).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        1 => (anywhere(), token(), 1usize..8).prop_map(|(at, bytes, n)| Edit::Insert {
            at,
            bytes: bytes.repeat(n),
        }),
    ]
    .boxed()
}

/// An interesting integer written over the `width`-byte little-endian field
/// at `offset`: a targeted change of a known length or count field.
pub fn field(offset: usize, width: u8) -> BoxedStrategy<Edit> {
    interesting_u64()
        .prop_map(move |value| Edit::Integer {
            at: Pos::At(offset),
            width,
            value,
            big_endian: false,
        })
        .boxed()
}

/// Inputs made from `valid` ones by one to eight [`edit`]s.
pub fn mutations_of<S>(valid: S) -> impl Strategy<Value = Vec<u8>>
where
    S: Strategy<Value = Vec<u8>>,
{
    mutations_with(valid, edit())
}

/// Inputs made from `valid` ones by one to eight edits from `edits`.
pub fn mutations_with<S, E>(valid: S, edits: E) -> impl Strategy<Value = Vec<u8>>
where
    S: Strategy<Value = Vec<u8>>,
    E: Strategy<Value = Edit>,
{
    (valid, prop::collection::vec(edits, 1..8)).prop_map(|(mut bytes, edits)| {
        apply(&mut bytes, &edits);
        bytes
    })
}

/// Arbitrary bytes, up to `max` of them.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &[u8], edit: Edit, expect: &[u8]) {
        let mut bytes = input.to_vec();
        edit.apply(&mut bytes);
        assert_eq!(bytes, expect, "{edit:?}");
    }

    #[test]
    fn edits_change_what_they_say() {
        let at = Pos::At;
        check(b"abc", Edit::FlipBit { at: at(1), bit: 0 }, b"acc");
        check(
            b"abc",
            Edit::SetByte {
                at: at(2),
                value: b'x',
            },
            b"abx",
        );
        check(
            b"abc",
            Edit::SetByte {
                at: at(3),
                value: b'x',
            },
            b"abc",
        );
        check(
            b"",
            Edit::SetByte {
                at: at(0),
                value: b'x',
            },
            b"",
        );
        let bytes = b"XY".to_vec();
        check(b"abc", Edit::Insert { at: at(1), bytes }, b"aXYbc");
        let bytes = b"Z".to_vec();
        check(b"abc", Edit::Insert { at: at(9), bytes }, b"abcZ");
        check(
            b"ab",
            Edit::Repeat {
                at: at(1),
                byte: b'[',
                count: 3,
            },
            b"a[[[b",
        );
        check(b"abcd", Edit::Delete { at: at(1), len: 2 }, b"ad");
        check(b"abcd", Edit::Delete { at: at(2), len: 99 }, b"ab");
        check(
            b"abcd",
            Edit::Duplicate {
                from: at(0),
                len: 2,
                to: at(4),
            },
            b"abcdab",
        );
        check(b"abcd", Edit::Truncate { at: at(1) }, b"a");
    }

    #[test]
    fn integers_overwrite_fields_in_either_order_and_stop_at_the_end() {
        let int = |at, width, value, big_endian| Edit::Integer {
            at: Pos::At(at),
            width,
            value,
            big_endian,
        };
        check(&[0; 4], int(0, 2, 0x0102, false), &[2, 1, 0, 0]);
        check(&[0; 4], int(1, 2, 0x0102, true), &[0, 1, 2, 0]);
        check(&[0; 4], int(2, 8, u64::MAX, false), &[0, 0, 0xff, 0xff]);
        check(&[0; 4], int(0, 1, 0x1234, false), &[0x34, 0, 0, 0]);
    }

    #[test]
    fn anywhere_scales_to_the_input() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for _ in 0..200 {
            let edits = prop::collection::vec(edit(), 1..8)
                .new_tree(&mut runner)
                .map(|t| proptest::strategy::ValueTree::current(&t))
                .unwrap_or_default();
            for len in [0, 1, 5, 100] {
                let mut bytes = vec![0; len];
                // Never panics, whatever the length.
                apply(&mut bytes, &edits);
            }
        }
    }
}
