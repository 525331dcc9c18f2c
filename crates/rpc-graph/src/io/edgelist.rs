//! Edge lists: one `src dst` pair per line.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::{Csr, GraphError};

/// How to read an edge list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeListOptions {
    /// The node count; by default one more than the largest id seen. When
    /// given, larger ids are errors.
    pub num_nodes: Option<u64>,
    /// Also add the reverse of every edge (an undirected graph).
    pub undirected: bool,
}

/// Reads an edge list: each line is `src` and `dst` (non-negative
/// integers) separated by a tab, a comma or spaces; further columns (a
/// weight) are ignored. Blank lines and lines starting with `#` or `%` are
/// skipped. The CSR keeps the file's order within each source.
pub fn load_edge_list(path: &Path, opts: EdgeListOptions) -> Result<Csr, GraphError> {
    let file = File::open(path).map_err(|e| GraphError::io("open", path, e))?;
    let mut edges = Vec::new();
    let mut max_id = None::<u64>;
    let err = |line: usize, detail: String| GraphError::EdgeList {
        path: path.to_owned(),
        line,
        detail,
    };
    let mut buf = String::new();
    let mut reader = BufReader::new(file);
    let mut line_no = 0;
    loop {
        buf.clear();
        line_no += 1;
        match reader.read_line(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(err(line_no, "not UTF-8".into()));
            }
            Err(e) => return Err(GraphError::io("read", path, e)),
        }
        let line = buf.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('%') {
            continue;
        }
        let mut fields = line.split([',', '\t', ' ']).filter(|f| !f.is_empty());
        let mut id = |what: &str| -> Result<u64, GraphError> {
            let f = fields
                .next()
                .ok_or_else(|| err(line_no, format!("missing {what}")))?;
            let v: u64 = f
                .parse()
                .map_err(|_| err(line_no, format!("{what} {f:?} is not a node id")))?;
            if v > i64::MAX as u64 {
                return Err(err(line_no, format!("{what} {v} exceeds int64")));
            }
            if let Some(n) = opts.num_nodes
                && v >= n
            {
                return Err(err(
                    line_no,
                    format!("{what} {v} out of range for {n} nodes"),
                ));
            }
            Ok(v)
        };
        let (s, d) = (id("source")?, id("destination")?);
        max_id = max_id.max(Some(s.max(d)));
        edges.push((s, d));
        if opts.undirected && s != d {
            edges.push((d, s));
        }
    }
    let n = opts
        .num_nodes
        .unwrap_or_else(|| max_id.map_or(0, |m| m + 1));
    Csr::from_edges(n, &edges)
}
