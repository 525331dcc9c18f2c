//! The distributed half: partitions served over `rpc-core`, sampling and
//! feature lookup across them, loaders and sampling servers.
//!
//! Every process holds at most one [`Partition`] and reaches the others
//! through a [`Router`] (partition → server peer name). A [`DistDataset`]
//! bundles the local partition, the node book and the router; from it come
//! a [`DistGraph`] (one-hop sampling across partitions), a
//! [`DistFeature`] (feature rows across partitions) and
//! [`DistNeighborSampler`]s. A [`PartitionServer`] answers for one
//! partition, and runs sampling producers for remote clients.
//!
//! Every request to a server carries the router's deadline, and every
//! failure names the partition and the server
//! ([`GraphError::Remote`]).
//!
//! # Functions a server defines
//!
//! | function | arguments | answer |
//! |---|---|---|
//! | `graph.info` | `()` | [`ServerInfo`] |
//! | `graph.book` | `()` | the node book, an `i32` tensor |
//! | `graph.sample_one_hop` | ids, fanout, [`HopKey`], [`SampleOptions`] | counts, neighbours, edge ids (tensors) |
//! | `graph.features` | ids | an `f32` tensor of rows, in request order |
//! | `graph.producer.create` | seeds, [`SamplerConfig`], [`LoaderOptions`], workers, stream | producer id |
//! | `graph.producer.start` | producer id, epoch | `()` |
//! | `graph.producer.fetch` | producer id, epoch | a sampled batch or end of epoch |
//! | `graph.producer.destroy` | producer id | `()` |
//!
//! [`HopKey`]: crate::HopKey
//! [`SampleOptions`]: crate::SampleOptions
//! [`SamplerConfig`]: crate::SamplerConfig

mod feature;
mod graph;
mod loader;
mod plan;
mod remote;
mod sampler;
mod server;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{CallOptions, Rpc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use feature::DistFeature;
pub use graph::DistGraph;
pub use loader::{DistNeighborLoader, LoaderOptions, WorkerMode};
pub use plan::EpochPlan;
pub use remote::{RemoteClient, RemoteOptions};
pub use sampler::{DistNeighborSampler, SampledBatch};
pub use server::{PartitionServer, serve_partition};

use crate::{GraphError, Partition, PartitionBook};

/// The deadline of every request to a server, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a partition server tells about itself (`graph.info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The partition it holds.
    pub partition: u32,
    /// Partitions in the whole graph.
    pub num_partitions: u32,
    /// Nodes in the whole graph.
    pub num_nodes: u64,
    /// Node feature dimension (0 = none).
    pub node_feature_dim: usize,
}

impl ServerInfo {
    /// The info of `part`.
    #[must_use]
    pub fn of(part: &Partition) -> Self {
        Self {
            partition: part.index,
            num_partitions: part.meta.num_partitions,
            num_nodes: part.meta.num_nodes,
            node_feature_dim: part.node_features.as_ref().map_or(0, |f| f.dim()),
        }
    }
}

/// Partition → server: who answers for each partition, the engine that
/// calls them and the deadline of each call. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    rpc: Rpc,
    peers: Arc<[Option<String>]>,
    timeout: Duration,
}

impl Router {
    /// A router calling `peers[p]` for partition `p` (`None`: the partition
    /// is local or unserved) through `rpc`, with `timeout` per call.
    #[must_use]
    pub fn new(rpc: Rpc, peers: Vec<Option<String>>, timeout: Duration) -> Self {
        Self {
            rpc,
            peers: peers.into(),
            timeout,
        }
    }

    /// The engine.
    #[must_use]
    pub fn rpc(&self) -> &Rpc {
        &self.rpc
    }

    /// The deadline of each call.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The peer serving partition `p`.
    pub fn peer(&self, p: u32) -> Result<&str, GraphError> {
        self.peers
            .get(p as usize)
            .and_then(Option::as_deref)
            .ok_or(GraphError::NoServer { partition: p })
    }

    /// Calls `op` on the server of partition `p`, with the router's
    /// deadline; a failure names the partition and the server.
    pub(crate) async fn call<R: DeserializeOwned>(
        &self,
        p: u32,
        op: &'static str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<R, GraphError> {
        let peer = self.peer(p)?;
        let opts = CallOptions::default().timeout(self.timeout);
        self.rpc
            .call_with(peer, op, args, opts)
            .await
            .map_err(|source| GraphError::Remote {
                op,
                partition: p,
                peer: peer.to_owned(),
                source,
            })
    }

    /// A [`GraphError::BadAnswer`] from the server of `p`.
    pub(crate) fn bad_answer(&self, p: u32, op: &'static str, detail: String) -> GraphError {
        GraphError::BadAnswer {
            op,
            partition: p,
            peer: self.peer(p).unwrap_or("?").to_owned(),
            detail,
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("peers", &self.peers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One process's view of a partitioned graph: its own partition (if any),
/// the node book, and a [`Router`] to the servers of the others. GLT's
/// `DistDataset`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DistDataset {
    local: Option<Arc<Partition>>,
    book: Arc<PartitionBook>,
    router: Router,
    node_feature_dim: usize,
}

impl DistDataset {
    /// A dataset whose every partition but `local` is served by
    /// `peers[p]` (entry `local.index` is ignored).
    pub fn new(
        rpc: Rpc,
        local: Arc<Partition>,
        mut peers: Vec<Option<String>>,
        timeout: Duration,
    ) -> Result<Self, GraphError> {
        let k = local.meta.num_partitions as usize;
        if peers.len() != k {
            return Err(GraphError::InvalidArgument(format!(
                "{} peers for {k} partitions",
                peers.len()
            )));
        }
        peers[local.index as usize] = None;
        Ok(Self {
            book: local.node_book.clone(),
            node_feature_dim: local.node_features.as_ref().map_or(0, |f| f.dim()),
            router: Router::new(rpc, peers, timeout),
            local: Some(local),
        })
    }

    /// A single process holding the whole graph: `part` must be the only
    /// partition (see [`Partition::whole`]). Needs no engine.
    pub fn local_only(part: Partition) -> Result<Self, GraphError> {
        if part.meta.num_partitions != 1 {
            return Err(GraphError::InvalidArgument(format!(
                "partition {} of {} is not the whole graph",
                part.index, part.meta.num_partitions
            )));
        }
        Self::new(Rpc::new(), Arc::new(part), vec![None], DEFAULT_TIMEOUT)
    }

    /// Connects to the servers at `addrs` (any order; each tells which
    /// partition it holds) and builds the dataset around `local`, or, with
    /// no local partition, around the node book fetched from the first
    /// server. Every partition must end up local or served.
    pub async fn connect(
        rpc: &Rpc,
        local: Option<Arc<Partition>>,
        addrs: &[String],
        timeout: Duration,
    ) -> Result<Self, GraphError> {
        let servers = connect_servers(rpc, addrs, timeout).await?;
        let (k, n) = match (&local, servers.first()) {
            (Some(l), _) => (l.meta.num_partitions, l.meta.num_nodes),
            (None, Some((_, info))) => (info.num_partitions, info.num_nodes),
            (None, None) => {
                return Err(GraphError::InvalidArgument(
                    "no local partition and no server".into(),
                ));
            }
        };
        let mut peers: Vec<Option<String>> = vec![None; k as usize];
        let mut dim = local
            .as_ref()
            .and_then(|l| l.node_features.as_ref())
            .map(|f| f.dim());
        for (peer, info) in &servers {
            if info.num_partitions != k || info.num_nodes != n {
                return Err(GraphError::InvalidArgument(format!(
                    "server {peer} holds partition {} of {} over {} nodes, expected {k} partitions over {n} nodes",
                    info.partition, info.num_partitions, info.num_nodes
                )));
            }
            if local.as_ref().is_some_and(|l| l.index == info.partition) {
                continue;
            }
            peers[info.partition as usize] = Some(peer.clone());
            dim.get_or_insert(info.node_feature_dim);
        }
        let local_index = local.as_ref().map(|l| l.index);
        if let Some(p) = (0..k).find(|&p| peers[p as usize].is_none() && Some(p) != local_index) {
            return Err(GraphError::NoServer { partition: p });
        }
        let router = Router::new(rpc.clone(), peers, timeout);
        let book = match &local {
            Some(l) => l.node_book.clone(),
            None => {
                let first = servers.first().map_or(0, |(_, i)| i.partition);
                let t: rpc_tensor::Tensor = router.call(first, "graph.book", &()).await?;
                let parts =
                    wire::tensor_u32(&t).map_err(|d| router.bad_answer(first, "graph.book", d))?;
                Arc::new(PartitionBook::new(parts, k)?)
            }
        };
        if book.num_nodes() != n {
            return Err(GraphError::Invalid(format!(
                "node book of {} nodes for {n}",
                book.num_nodes()
            )));
        }
        Ok(Self {
            local,
            book,
            router,
            node_feature_dim: dim.unwrap_or(0),
        })
    }

    /// The local partition, if any.
    #[must_use]
    pub fn local(&self) -> Option<&Arc<Partition>> {
        self.local.as_ref()
    }

    /// The node book.
    #[must_use]
    pub fn book(&self) -> &Arc<PartitionBook> {
        &self.book
    }

    /// The router to the other partitions.
    #[must_use]
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The node feature dimension (0: none).
    #[must_use]
    pub fn node_feature_dim(&self) -> usize {
        self.node_feature_dim
    }

    /// Graph operations across partitions.
    #[must_use]
    pub fn graph(&self) -> DistGraph {
        DistGraph::new(self.local.clone(), self.book.clone(), self.router.clone())
    }

    /// Node feature lookup across partitions (`None` without features).
    #[must_use]
    pub fn node_features(&self) -> Option<DistFeature> {
        (self.node_feature_dim > 0).then(|| {
            DistFeature::new(
                self.local.clone(),
                self.book.clone(),
                self.router.clone(),
                self.node_feature_dim,
            )
        })
    }
}

/// Connects to every address and asks each server what it holds.
pub(crate) async fn connect_servers(
    rpc: &Rpc,
    addrs: &[String],
    timeout: Duration,
) -> Result<Vec<(String, ServerInfo)>, GraphError> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let err = |source| GraphError::Connect {
            addr: addr.clone(),
            source,
        };
        let peer = rpc
            .connect(addr)
            .map_err(err)?
            .established(timeout)
            .await
            .map_err(err)?;
        let info: ServerInfo = rpc
            .call_with(
                &peer,
                "graph.info",
                &(),
                CallOptions::default().timeout(timeout),
            )
            .await
            .map_err(err)?;
        if info.partition >= info.num_partitions {
            return Err(GraphError::Invalid(format!(
                "server {peer} claims partition {} of {}",
                info.partition, info.num_partitions
            )));
        }
        out.push((peer, info));
    }
    Ok(out)
}
