//! [`GraphError`], the one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `rpc-graph`.
///
/// Bad input (a malformed file, an id out of range, an impossible
/// configuration) is always reported here, never by a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "read", "write", "create dir").
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A `.npy` file is malformed or has an unsupported dtype or layout.
    #[error("reading npy {path}: {detail}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// An edge list has a line that does not parse.
    #[error("parsing edge list {path}, line {line}: {detail}")]
    EdgeList {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        detail: String,
    },
    /// Arrays that must agree do not (an `indptr` that decreases, an id
    /// out of range, a feature matrix with the wrong number of rows).
    #[error("invalid graph data: {0}")]
    Invalid(String),
    /// A node id is not held by the graph or partition asked.
    #[error("node {node} is not in this graph or partition")]
    NodeNotFound {
        /// The global node id.
        node: u64,
    },
    /// A parameter is out of its domain (zero partitions, a fanout below
    /// -1, an R-MAT scale too large).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The partition metadata file does not parse or does not match.
    #[error("partition metadata {path}: {detail}")]
    Meta {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl GraphError {
    /// An [`GraphError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
