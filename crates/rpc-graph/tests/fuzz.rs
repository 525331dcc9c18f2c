//! Fuzz target of the `.npy` loader (`rpc_core::testing::fuzz`): files of
//! arbitrary bytes, and files written by the writer then mutated (the
//! magic, the version, the header length field, the header text with
//! tokens such as huge dimensions, other dtypes, Fortran order).
//!
//! Every reader returns the array or a typed [`GraphError::Npy`]; none
//! panics, and none allocates more than a few times the file's size,
//! whatever shape the header claims. Arrays written round-trip.
//!
//! `RPC_FUZZ_SECS=N` runs the target for `N` seconds.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rpc_core::testing::fuzz::{self, mutate};
use rpc_graph::GraphError;
use rpc_graph::io::npy;

rpc_core::counting_allocator!();

/// Tokens of npy headers.
const TOKENS: &[&str] = &[
    "'descr'",
    "'shape'",
    "'fortran_order'",
    "'<i8'",
    "'<u8'",
    "'<i4'",
    "'<f4'",
    "'<f8'",
    "'|b1'",
    "'>i8'",
    "True",
    "False",
    "(",
    ")",
    ",",
    ":",
    "'",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "1099511627776",
    "-1",
    "0",
    " ",
    "\n",
    "{",
    "}",
];

/// A scratch directory for one test of this process.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rpc-graph-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An array to write: its dtype, its shape and values.
#[derive(Clone, Debug)]
enum Array {
    U64(Vec<usize>, Vec<u64>),
    I64(Vec<usize>, Vec<i64>),
    F32(Vec<usize>, Vec<f32>),
}

fn array() -> impl Strategy<Value = Array> {
    let shape = prop::collection::vec(0usize..5, 0..4);
    shape.prop_flat_map(|shape| {
        let n: usize = shape.iter().product();
        prop_oneof![
            prop::collection::vec(0..=i64::MAX as u64, n).prop_map({
                let shape = shape.clone();
                move |v| Array::U64(shape.clone(), v)
            }),
            prop::collection::vec(any::<i64>(), n).prop_map({
                let shape = shape.clone();
                move |v| Array::I64(shape.clone(), v)
            }),
            prop::collection::vec(any::<f32>(), n).prop_map(move |v| Array::F32(shape.clone(), v)),
        ]
    })
}

fn write(path: &Path, a: &Array) -> Result<(), GraphError> {
    match a {
        Array::U64(s, v) => npy::write_u64(path, v, s),
        Array::I64(s, v) => npy::write_i64(path, v, s),
        Array::F32(s, v) => npy::write_f32(path, v, s),
    }
}

/// Runs every reader on `path` (a file of `len` bytes), checking errors and
/// allocations.
fn read_all(path: &Path, len: usize) -> Result<(), TestCaseError> {
    // Data as read (up to 8-byte elements), converted once, and the header.
    let limit = 4 * len + (64 << 10);
    let check = |what: &str, r: Result<usize, GraphError>, allocated: usize| {
        prop_assert!(
            allocated <= limit,
            "{what} of a {len}-byte file allocated {allocated} bytes"
        );
        match r {
            Ok(_) | Err(GraphError::Npy { .. }) => Ok(()),
            Err(e) => Err(TestCaseError::fail(format!("{what}: untyped error {e:?}"))),
        }
    };
    let (r, n) = fuzz::allocated_by(|| npy::read_u64(path).map(|(v, _)| v.len()));
    check("read_u64", r, n)?;
    let (r, n) = fuzz::allocated_by(|| npy::read_i64(path).map(|(v, _)| v.len()));
    check("read_i64", r, n)?;
    let (r, n) = fuzz::allocated_by(|| npy::read_f32(path).map(|(v, _)| v.len()));
    check("read_f32", r, n)?;
    Ok(())
}

#[derive(Debug)]
enum Input {
    Bytes(Vec<u8>),
    Mutated(Array, Vec<mutate::Edit>),
    Valid(Array),
}

#[test]
fn fuzz_npy() {
    assert!(fuzz::counting(), "the counting allocator is installed");
    let scratch = Scratch::new("fuzz-npy");
    let path = scratch.path("a.npy");
    let header_fields = prop_oneof![
        3 => mutate::edit_with(TOKENS),
        // Format version, then the header length (u16 in 1.0, u32 after).
        1 => mutate::field(6, 1),
        1 => mutate::field(8, 2),
        1 => mutate::field(8, 4),
    ];
    let input = prop_oneof![
        1 => mutate::bytes(256).prop_map(Input::Bytes),
        5 => (array(), prop::collection::vec(header_fields, 1..6))
            .prop_map(|(a, edits)| Input::Mutated(a, edits)),
        1 => array().prop_map(Input::Valid),
    ];
    fuzz::run("npy", 500, input, |input| {
        match input {
            Input::Bytes(bytes) => {
                std::fs::write(&path, &bytes).unwrap();
                read_all(&path, bytes.len())?;
            }
            Input::Mutated(a, edits) => {
                write(&path, &a).unwrap();
                let mut bytes = std::fs::read(&path).unwrap();
                mutate::apply(&mut bytes, &edits);
                std::fs::write(&path, &bytes).unwrap();
                read_all(&path, bytes.len())?;
            }
            Input::Valid(a) => {
                write(&path, &a).unwrap();
                match &a {
                    Array::U64(s, v) => {
                        prop_assert_eq!(npy::read_u64(&path).ok(), Some((v.clone(), s.clone())))
                    }
                    Array::I64(s, v) => {
                        prop_assert_eq!(npy::read_i64(&path).ok(), Some((v.clone(), s.clone())))
                    }
                    Array::F32(s, v) => {
                        let (got, shape) =
                            npy::read_f32(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(&shape, s);
                        // Bit for bit: NaNs included.
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        prop_assert_eq!(bits(&got), bits(v));
                    }
                }
            }
        }
        Ok(())
    });
}

/// A header claiming a huge shape for a small file fails from the sizes,
/// without allocating the shape.
#[test]
fn a_lying_header_is_refused_without_allocating() {
    let scratch = Scratch::new("lying-header");
    let path = scratch.path("lie.npy");
    // A well-formed version 1.0 file of three ids whose header claims 2^40.
    std::fs::write(&path, three_ids_claiming("1099511627776")).unwrap();
    let (got, allocated) = fuzz::allocated_by(|| npy::read_u64(&path));
    assert!(matches!(got, Err(GraphError::Npy { .. })), "{got:?}");
    assert!(allocated < 64 << 10, "allocated {allocated} bytes");
    // The same file telling the truth reads.
    std::fs::write(&path, three_ids_claiming("3")).unwrap();
    assert_eq!(npy::read_u64(&path).unwrap(), (vec![1, 2, 3], vec![3]));
}

/// A version 1.0 `<i8` file holding the ids 1, 2, 3, whose header claims
/// the shape `(dim,)`.
fn three_ids_claiming(dim: &str) -> Vec<u8> {
    let mut header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({dim},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut file = b"\x93NUMPY\x01\x00".to_vec();
    file.extend_from_slice(&(header.len() as u16).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    for id in [1u64, 2, 3] {
        file.extend_from_slice(&id.to_le_bytes());
    }
    file
}
