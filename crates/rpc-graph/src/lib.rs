//! `rpc-graph`: graphs for GNN training on one machine, built so that a
//! distributed sampler can reproduce them exactly across partitions.
//!
//! - Storage: [`Csr`] adjacency with edge ids (and its reverse, for
//!   sampling by in-edges), [`HeteroGraph`] with [`EdgeType`]s
//!   `(src, relation, dst)`, [`Features`] (f32 rows addressed by global id)
//!   and labels, in a [`Dataset`].
//! - IO: directories of `.npy` arrays (`indptr.npy`, `indices.npy`,
//!   `node_feat.npy`, `labels.npy`; [`io::npy`] is a strict reader and
//!   writer), and edge lists ([`load_edge_list`]). Bad files are typed
//!   [`GraphError`]s, never panics.
//! - [`RmatConfig`]: a deterministic, multi-threaded R-MAT generator
//!   (Graph500 parameters).
//! - Partitioning: [`partition`] with [`Partitioner::Hash`] or
//!   [`Partitioner::Ldg`], [`PartitionStats`] (edge cut, balance),
//!   [`PartitionBook`] and [`EdgeBook`], [`write_partitions`] and
//!   [`Partition::load`]. A partition keeps each owned node's neighbour
//!   list exactly as in the global graph, with global ids.
//! - Sampling: the one-hop primitive [`sample_neighbors`] over any
//!   [`NeighborSource`], relabelling with an [`Inducer`], multi-hop
//!   [`NeighborSampler`], [`sample_from_edges`] with [`NegativeSampling`],
//!   [`induced_subgraph`] and [`HeteroSampler`]. Every draw is keyed by
//!   `(seed, batch, hop, global node id)` ([`HopKey`]), so sampling a
//!   frontier split over partitions and merged back
//!   ([`NeighborBatch::merge`]) gives the same batch as sampling it whole.
//! - Feature lookup: [`Features::gather_into`] into a reused buffer.
//! - [`Progress`]: optional progress bars for generate, load and partition.
//! - Distributed ([`dist`], over `rpc-core`): [`DistDataset`] (a local
//!   partition, the node book and a router to the servers of the others),
//!   [`DistGraph`] and [`DistFeature`] (one batched request per remote
//!   partition, all at once, answers as tensor attachments),
//!   [`DistNeighborSampler`] (equal to [`NeighborSampler`] for the same
//!   seed), [`DistNeighborLoader`] (batch size, seeded shuffle, drop-last,
//!   features, bounded prefetch; collocated, worker tasks, or remote
//!   sampling servers through [`RemoteClient`]) and [`PartitionServer`].
//!   A lost server is a [`GraphError::Remote`] naming the partition, within
//!   the call deadline.
//!
//! What it deliberately does **not** do: pick a transport (it knows only
//! `rpc_core::Rpc`; binaries add TCP or shared memory); METIS; weighted or
//! temporal sampling; distributed heterogeneous or link sampling; feature
//! caching of remote rows; GPU memory.
//!
//! # Layout
//!
//! - `csr`: [`Csr`], [`NeighborSource`], [`Neighbors`], [`EdgeIds`],
//!   [`IdMap`], [`LocalGraph`].
//! - `hetero`: [`EdgeType`], [`HeteroGraph`], [`HeteroSource`].
//! - `feature`: [`Features`].
//! - `io`: [`Dataset`], [`io::files`], `io/npy.rs` ([`io::npy`]),
//!   `io/edgelist.rs` ([`load_edge_list`]).
//! - `rmat`: [`RmatConfig`].
//! - `partition`: books, partitioners, [`PartitionStats`];
//!   `partition/store.rs` the on-disk layout, [`Partition`].
//! - `sample`: [`sample_neighbors`], [`NeighborBatch`], [`HopKey`];
//!   `induce.rs` [`Inducer`]; `multi.rs` [`NeighborSampler`];
//!   `link.rs`, `subgraph.rs`, `hetero.rs`.
//! - `dist`: `mod.rs` [`DistDataset`], [`dist::Router`],
//!   [`dist::ServerInfo`]; `graph.rs` [`DistGraph`]; `feature.rs`
//!   [`DistFeature`]; `sampler.rs` [`DistNeighborSampler`],
//!   [`SampledBatch`]; `plan.rs` [`dist::EpochPlan`] (pure); `loader.rs`
//!   [`DistNeighborLoader`], [`LoaderOptions`], [`WorkerMode`] and the
//!   producer shared with servers; `remote.rs` [`RemoteClient`];
//!   `server.rs` [`PartitionServer`]; `wire.rs` requests and answers as
//!   tensors, and their checks.
//! - `rng`: [`WyRand`] and [`mix64`], the keyed randomness.
//! - `progress`: [`Progress`], [`Stage`].
//! - `error`: [`GraphError`].

#![forbid(unsafe_code)]

mod csr;
pub mod dist;
mod error;
mod feature;
mod hetero;
pub mod io;
mod partition;
mod progress;
mod rmat;
mod rng;
mod sample;

pub use csr::{Csr, EdgeIds, IdMap, LocalGraph, NeighborSource, Neighbors};
pub use dist::{
    DistDataset, DistFeature, DistGraph, DistNeighborLoader, DistNeighborSampler, LoaderOptions,
    PartitionServer, RemoteClient, RemoteOptions, SampledBatch, WorkerMode, serve_partition,
};
pub use error::GraphError;
pub use feature::{Features, PARALLEL_MIN_BYTES};
pub use hetero::{EdgeType, HeteroGraph, HeteroSource};
pub use io::{Dataset, EdgeListOptions, load_edge_list};
pub use partition::{
    EdgeBook, Partition, PartitionBook, PartitionMeta, PartitionStats, Partitioner, partition,
    write_partitions,
};
pub use progress::{Progress, Stage};
pub use rmat::RmatConfig;
pub use rng::{WyRand, hash_str, mix64};
pub use sample::{
    HeteroSampler, HeteroSamplerOutput, HopKey, Inducer, LinkSamplerOutput, NegativeSampling,
    NeighborBatch, NeighborSampler, SampleOptions, SamplerConfig, SamplerOutput, Subgraph,
    TypedEdges, induced_subgraph, sample_from_edges, sample_neighbors, sample_neighbors_into,
};
