//! The error type of `rpc-discovery`.

use std::collections::BTreeSet;

/// A failed discovery operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The engine failed (a call, a connection).
    #[error(transparent)]
    Rpc(#[from] rpc_core::Error),
    /// Another live peer already holds this name.
    #[error("the name {name:?} is already held by a live peer")]
    DuplicateName {
        /// The contested name.
        name: String,
    },
    /// No seed could be reached to join the cluster.
    #[error("could not join through any seed: {reason}")]
    JoinFailed {
        /// The last seed's error.
        reason: String,
    },
    /// No live node has the function and every requested resource. Nodes
    /// without resources are balancers and never serve cluster calls.
    #[error(
        "no live node has function {function:?} with resources {resources:?} \
         (nodes without resources are balancers and serve no cluster calls)"
    )]
    NoRoute {
        /// The function asked for.
        function: String,
        /// The resources asked for.
        resources: BTreeSet<String>,
    },
    /// A plan was invalid or one of its commands failed.
    #[error(transparent)]
    Plan(Box<crate::plan::PlanError<Self>>),
    /// A collective failed: a member was lost, or it timed out.
    #[error("collective {op} in group {group:?} failed: {reason}")]
    Collective {
        /// barrier, all_gather or broadcast.
        op: &'static str,
        /// The group (and role).
        group: String,
        /// Why: names the lost member when there is one.
        reason: String,
    },
    /// Arguments were invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A peer record could not be encoded, or bytes received as one could
    /// not be decoded.
    #[error("bad peer record: {0}")]
    BadRecord(#[source] rpc_core::CodecError),
    /// A value could not be encoded or decoded as JSON.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}
