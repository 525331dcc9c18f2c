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
    /// Connecting to a partition server failed.
    #[error("connecting to partition server {addr}: {source}")]
    Connect {
        /// The server's address.
        addr: String,
        /// The cause.
        #[source]
        source: rpc_core::Error,
    },
    /// A call to the server of a partition failed: the server is gone
    /// (`Disconnected`, `ShutDown`), did not answer within the deadline
    /// (`Timeout`), or its handler failed (`Remote`).
    #[error("{op} on partition {partition} (server {peer}) failed: {source}")]
    Remote {
        /// The function called.
        op: &'static str,
        /// The partition the server holds.
        partition: u32,
        /// The server's peer name.
        peer: String,
        /// The cause.
        #[source]
        source: rpc_core::Error,
    },
    /// A server answered with data that does not fit the request.
    #[error("bad answer to {op} from partition {partition} (server {peer}): {detail}")]
    BadAnswer {
        /// The function called.
        op: &'static str,
        /// The partition the server holds.
        partition: u32,
        /// The server's peer name.
        peer: String,
        /// What is wrong.
        detail: String,
    },
    /// No local data and no server for this partition.
    #[error("no server holds partition {partition}")]
    NoServer {
        /// The partition.
        partition: u32,
    },
    /// A sampling producer or loader was used after shutdown, or a server
    /// does not know the producer named.
    #[error("sampling producer: {0}")]
    Producer(String),
}

impl GraphError {
    /// Whether this is a failed call to a partition server that is lost:
    /// its connection is gone, its deadline passed, or it no longer defines
    /// the function (its partition server or engine was shut down), as
    /// opposed to a server that answered with an error.
    #[must_use]
    pub fn is_server_lost(&self) -> bool {
        matches!(
            self,
            Self::Remote {
                source: rpc_core::Error::Disconnected { .. }
                    | rpc_core::Error::Timeout { .. }
                    | rpc_core::Error::ShutDown
                    | rpc_core::Error::NoSuchPeer { .. }
                    | rpc_core::Error::NoSuchFunction { .. }
                    | rpc_core::Error::Unreachable { .. },
                ..
            }
        )
    }

    /// An [`GraphError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
