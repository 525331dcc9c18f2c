//! A small, strict `.npy` reader and writer (format versions 1.0–3.0).
//!
//! Only C-order little-endian `int64`, `int32`, `uint64` and `float32`
//! arrays are read; everything else is a typed [`GraphError::Npy`]. The
//! data size is checked against the file size before anything is
//! allocated, so a header claiming a huge shape fails cheaply.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::GraphError;

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy's own limit on header length; longer ones are not npy files.
const MAX_HEADER: usize = 1 << 20;

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    descr: String,
    shape: Vec<usize>,
}

fn bad(path: &Path, detail: impl Into<String>) -> GraphError {
    GraphError::Npy {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// Reads an integer array of ids: `<i8` (negative values rejected), `<u8`
/// or `<i4`. Returns the data and the shape.
pub fn read_u64(path: &Path) -> Result<(Vec<u64>, Vec<usize>), GraphError> {
    let (mut file, header, len) = open(path)?;
    let data: Vec<u64> = match header.descr.as_str() {
        "<i8" | "<u8" => {
            let mut v = vec![0u64; len];
            read_exact(&mut file, path, bytemuck::cast_slice_mut(&mut v))?;
            if header.descr == "<i8" && v.iter().any(|&x| x > i64::MAX as u64) {
                return Err(bad(path, "negative id"));
            }
            v
        }
        "<i4" => {
            let mut v = vec![0i32; len];
            read_exact(&mut file, path, bytemuck::cast_slice_mut(&mut v))?;
            v.into_iter()
                .map(|x| u64::try_from(x).map_err(|_| bad(path, "negative id")))
                .collect::<Result<_, _>>()?
        }
        d => return Err(bad(path, format!("dtype {d}, expected <i8, <u8 or <i4"))),
    };
    Ok((data.into_iter().map(u64::from_le).collect(), header.shape))
}

/// Reads a signed integer array (`<i8` or `<i4`), for labels.
pub fn read_i64(path: &Path) -> Result<(Vec<i64>, Vec<usize>), GraphError> {
    let (mut file, header, len) = open(path)?;
    let data = match header.descr.as_str() {
        "<i8" => {
            let mut v = vec![0i64; len];
            read_exact(&mut file, path, bytemuck::cast_slice_mut(&mut v))?;
            v.into_iter().map(i64::from_le).collect()
        }
        "<i4" => {
            let mut v = vec![0i32; len];
            read_exact(&mut file, path, bytemuck::cast_slice_mut(&mut v))?;
            v.into_iter().map(|x| i64::from(i32::from_le(x))).collect()
        }
        d => return Err(bad(path, format!("dtype {d}, expected <i8 or <i4"))),
    };
    Ok((data, header.shape))
}

/// Reads a `<f4` array.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>), GraphError> {
    let (mut file, header, len) = open(path)?;
    if header.descr != "<f4" {
        return Err(bad(path, format!("dtype {}, expected <f4", header.descr)));
    }
    let mut v = vec![0f32; len];
    read_exact(&mut file, path, bytemuck::cast_slice_mut(&mut v))?;
    if cfg!(target_endian = "big") {
        for x in &mut v {
            *x = f32::from_bits(u32::from_le(x.to_bits()));
        }
    }
    Ok((v, header.shape))
}

/// Writes ids as `<i8` (ids are below 2^63).
pub fn write_u64(path: &Path, data: &[u64], shape: &[usize]) -> Result<(), GraphError> {
    let mut w = NpyWriter::create(path, "<i8", shape)?;
    w.write_u64(data)?;
    w.finish()
}

/// Writes a `<i8` array.
pub fn write_i64(path: &Path, data: &[i64], shape: &[usize]) -> Result<(), GraphError> {
    let mut w = NpyWriter::create(path, "<i8", shape)?;
    w.write_bytes(bytemuck::cast_slice(data), data.len())?;
    w.finish()
}

/// Writes a `<f4` array.
pub fn write_f32(path: &Path, data: &[f32], shape: &[usize]) -> Result<(), GraphError> {
    let mut w = NpyWriter::create(path, "<f4", shape)?;
    w.write_f32(data)?;
    w.finish()
}

/// Writes an array in pieces (rows generated on the fly), checking at
/// [`finish`](Self::finish) that exactly the announced count was written.
#[derive(Debug)]
pub struct NpyWriter {
    path: PathBuf,
    out: BufWriter<File>,
    expected: usize,
    written: usize,
}

impl NpyWriter {
    /// Creates `path` and writes the header for `descr` (`<i8` or `<f4`)
    /// and `shape`.
    pub fn create(path: &Path, descr: &str, shape: &[usize]) -> Result<Self, GraphError> {
        let file = File::create(path).map_err(|e| GraphError::io("create", path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
        let tuple = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut dict =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
        // Pad so that magic + version + length + dict ends on 64 bytes.
        let (version, len_bytes) = if dict.len() + 11 < 65536 {
            (1u8, 2)
        } else {
            (2u8, 4)
        };
        let prefix = MAGIC.len() + 2 + len_bytes;
        let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
        dict.push_str(&" ".repeat(total - prefix - dict.len() - 1));
        dict.push('\n');
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&[version, 0]);
        if version == 1 {
            head.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            head.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        head.extend_from_slice(dict.as_bytes());
        out.write_all(&head)
            .map_err(|e| GraphError::io("write", path, e))?;
        Ok(Self {
            path: path.to_owned(),
            out,
            expected: shape.iter().product(),
            written: 0,
        })
    }

    /// Appends `<f4` elements.
    pub fn write_f32(&mut self, data: &[f32]) -> Result<(), GraphError> {
        self.write_bytes(bytemuck::cast_slice(data), data.len())
    }

    /// Appends ids as `<i8` elements.
    pub fn write_u64(&mut self, data: &[u64]) -> Result<(), GraphError> {
        self.write_bytes(bytemuck::cast_slice(data), data.len())
    }

    fn write_bytes(&mut self, bytes: &[u8], count: usize) -> Result<(), GraphError> {
        self.written += count;
        self.out
            .write_all(bytes)
            .map_err(|e| GraphError::io("write", &self.path, e))
    }

    /// Flushes, checking the element count.
    pub fn finish(mut self) -> Result<(), GraphError> {
        if self.written != self.expected {
            return Err(GraphError::Invalid(format!(
                "{}: wrote {} elements, header says {}",
                self.path.display(),
                self.written,
                self.expected
            )));
        }
        self.out
            .flush()
            .map_err(|e| GraphError::io("write", &self.path, e))
    }
}

/// Opens `path`, parses the header and checks the data size against the
/// file size. Returns the file positioned at the data and the element count.
fn open(path: &Path) -> Result<(File, Header, usize), GraphError> {
    let mut file = File::open(path).map_err(|e| GraphError::io("open", path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| GraphError::io("stat", path, e))?
        .len();
    let mut pre = [0u8; 10];
    read_exact(&mut file, path, &mut pre).map_err(|_| bad(path, "shorter than a header"))?;
    if &pre[..6] != MAGIC {
        return Err(bad(path, "not an npy file (bad magic)"));
    }
    let (header_len, prefix) = match pre[6] {
        1 => (usize::from(u16::from_le_bytes([pre[8], pre[9]])), 10),
        2 | 3 => {
            let mut more = [0u8; 2];
            read_exact(&mut file, path, &mut more).map_err(|_| bad(path, "truncated header"))?;
            let len = u32::from_le_bytes([pre[8], pre[9], more[0], more[1]]) as usize;
            (len, 12)
        }
        v => return Err(bad(path, format!("unsupported format version {v}"))),
    };
    if header_len > MAX_HEADER || (prefix + header_len) as u64 > file_len {
        return Err(bad(path, "header longer than the file"));
    }
    let mut text = vec![0u8; header_len];
    read_exact(&mut file, path, &mut text).map_err(|_| bad(path, "truncated header"))?;
    let text = String::from_utf8(text).map_err(|_| bad(path, "header is not text"))?;
    let header = parse_header(&text).map_err(|d| bad(path, d))?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(path, "shape overflows"))?;
    let item = match header.descr.as_str() {
        "<i8" | "<u8" | "<f8" => 8,
        "<i4" | "<u4" | "<f4" => 4,
        _ => 1,
    };
    let data_len = file_len - (prefix + header_len) as u64;
    if count.checked_mul(item).map(|b| b as u64) != Some(data_len) {
        return Err(bad(
            path,
            format!(
                "shape {:?} needs {count} elements of {item} bytes, file has {data_len} data bytes",
                header.shape
            ),
        ));
    }
    Ok((file, header, count))
}

fn read_exact(file: &mut File, path: &Path, buf: &mut [u8]) -> Result<(), GraphError> {
    file.read_exact(buf)
        .map_err(|e| GraphError::io("read", path, e))
}

/// Parses `{'descr': '<i8', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(text: &str) -> Result<Header, String> {
    let value = |key: &str| -> Result<&str, String> {
        let at = text
            .find(&format!("'{key}'"))
            .ok_or_else(|| format!("header has no '{key}'"))?;
        let rest = &text[at + key.len() + 2..];
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("no ':' after '{key}'"))?;
        Ok(rest.trim_start())
    };
    let descr = value("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("descr is not a quoted string")?
        .to_string();
    let fortran = value("fortran_order")?;
    if fortran.starts_with("True") {
        return Err("Fortran-order arrays are not supported".into());
    }
    if !fortran.starts_with("False") {
        return Err("fortran_order is neither True nor False".into());
    }
    let shape = value("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("shape is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension {s:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header { descr, shape })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expect: Result<(&str, &[usize]), &str>) {
        let got = parse_header(text);
        match expect {
            Ok((d, s)) => assert_eq!(
                got,
                Ok(Header {
                    descr: d.into(),
                    shape: s.to_vec()
                })
            ),
            Err(e) => assert!(got.unwrap_err().contains(e), "{text}"),
        }
    }

    #[test]
    fn headers() {
        check(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
            Ok(("<i8", &[3])),
        );
        check(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
            Ok(("<f4", &[3, 4])),
        );
        check(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
            Ok(("<f4", &[])),
        );
        check(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }",
            Err("Fortran"),
        );
        check("{'descr': '<f4', 'shape': (2,), }", Err("fortran_order"));
        check(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (x,), }",
            Err("bad dimension"),
        );
        check(
            "{'descr': 7, 'fortran_order': False, 'shape': (1,), }",
            Err("quoted"),
        );
    }
}
