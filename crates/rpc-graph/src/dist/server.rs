//! [`PartitionServer`]: one partition served on an engine, with sampling
//! producers for remote clients (GLT's `DistServer`).

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rpc_core::{HandlerError, Rpc};
use rpc_tensor::Tensor;
use tokio::sync::OnceCell;

use super::loader::{BatchReceiver, Producer};
use super::wire::{
    FetchAnswer, ProducerRequest, SampleAnswer, SampleRequest, WireBatch, book_tensor,
    gather_tensor, tensor_u64,
};
use super::{DEFAULT_TIMEOUT, DistDataset, ServerInfo};
use crate::{GraphError, NeighborBatch, Partition, sample_neighbors_into};

/// Every function a server defines.
const FUNCTIONS: [&str; 8] = [
    "graph.info",
    "graph.book",
    "graph.sample_one_hop",
    "graph.features",
    "graph.producer.create",
    "graph.producer.start",
    "graph.producer.fetch",
    "graph.producer.destroy",
];

/// Serves `part` on `rpc` with no peers: enough for one-hop sampling and
/// feature requests, and for producers when `part` is the whole graph.
/// See [`PartitionServer::start`].
pub fn serve_partition(rpc: &Rpc, part: Arc<Partition>) -> Result<PartitionServer, GraphError> {
    PartitionServer::start(rpc, part, Vec::new(), DEFAULT_TIMEOUT)
}

/// A partition served on an engine: the functions listed in the
/// [module docs](super) answer for it until [`shutdown`](Self::shutdown).
///
/// Producers sample across every partition, so a server that runs them
/// connects (on the first producer) to the other partitions' servers at
/// `peers`. The handlers hold the engine (to reach those peers): call
/// [`shutdown`](Self::shutdown), which removes them, or `Rpc::shutdown`.
#[derive(Clone, Debug)]
pub struct PartitionServer {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    rpc: Rpc,
    part: Arc<Partition>,
    peers: Vec<String>,
    timeout: Duration,
    dataset: OnceCell<DistDataset>,
    producers: Mutex<HashMap<u64, Arc<ServerProducer>>>,
    next_id: AtomicU64,
}

/// One client's producer and its running epoch.
#[derive(Debug)]
struct ServerProducer {
    producer: tokio::sync::Mutex<Producer>,
    current: tokio::sync::Mutex<Option<(u64, BatchReceiver)>>,
}

impl PartitionServer {
    /// Defines the server's functions on `rpc` for `part`; `peers` are the
    /// addresses of the other partitions' servers (for producers), and
    /// `timeout` the deadline of the calls this server makes to them.
    pub fn start(
        rpc: &Rpc,
        part: Arc<Partition>,
        peers: Vec<String>,
        timeout: Duration,
    ) -> Result<Self, GraphError> {
        let state = Arc::new(State {
            rpc: rpc.clone(),
            part,
            peers,
            timeout,
            dataset: OnceCell::new(),
            producers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        let server = Self { state };
        server.define().map_err(|e| {
            server.undefine();
            GraphError::InvalidArgument(format!("defining the server's functions: {e}"))
        })?;
        Ok(server)
    }

    /// The partition served.
    #[must_use]
    pub fn partition(&self) -> &Arc<Partition> {
        &self.state.part
    }

    /// What the server tells clients.
    #[must_use]
    pub fn info(&self) -> ServerInfo {
        ServerInfo::of(&self.state.part)
    }

    /// Removes the functions and stops every producer (waiting for their
    /// tasks). The engine itself keeps running.
    pub async fn shutdown(&self) {
        self.undefine();
        let producers: Vec<_> = lock(&self.state.producers)
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in producers {
            p.stop().await;
        }
    }

    fn undefine(&self) {
        for f in FUNCTIONS {
            self.state.rpc.undefine(f, 0);
        }
    }

    fn define(&self) -> Result<(), rpc_core::Error> {
        let rpc = &self.state.rpc;
        let s = self.state.clone();
        rpc.define("graph.info", move |(): ()| {
            ready(Ok(ServerInfo::of(&s.part)))
        })?;
        let s = self.state.clone();
        rpc.define("graph.book", move |(): ()| {
            answer(book_tensor(s.part.node_book.as_slice()))
        })?;
        let s = self.state.clone();
        rpc.define("graph.sample_one_hop", move |req: SampleRequest| {
            answer(sample_one_hop(&s.part, &req))
        })?;
        let s = self.state.clone();
        rpc.define("graph.features", move |ids: Tensor| {
            answer(features(&s.part, &ids))
        })?;
        let s = self.state.clone();
        rpc.define("graph.producer.create", move |req: ProducerRequest| {
            let s = s.clone();
            async move { s.create(req).await.map_err(HandlerError::new) }
        })?;
        let s = self.state.clone();
        rpc.define("graph.producer.start", move |(id, epoch): (u64, u64)| {
            let p = s.producer(id);
            async move { p?.start(epoch).await.map_err(HandlerError::new) }
        })?;
        let s = self.state.clone();
        rpc.define("graph.producer.fetch", move |(id, epoch): (u64, u64)| {
            let p = s.producer(id);
            async move { p?.fetch(epoch).await.map_err(HandlerError::new) }
        })?;
        let s = self.state.clone();
        rpc.define("graph.producer.destroy", move |id: u64| {
            let p = lock(&s.producers).remove(&id);
            async move {
                if let Some(p) = p {
                    p.stop().await;
                }
                Ok(())
            }
        })?;
        Ok(())
    }
}

impl State {
    /// The dataset producers sample: this partition plus the peers,
    /// connected on first use.
    async fn dataset(&self) -> Result<&DistDataset, GraphError> {
        self.dataset
            .get_or_try_init(|| {
                DistDataset::connect(
                    &self.rpc,
                    Some(self.part.clone()),
                    &self.peers,
                    self.timeout,
                )
            })
            .await
    }

    async fn create(&self, req: ProducerRequest) -> Result<u64, GraphError> {
        let seeds = tensor_u64(&req.seeds)
            .map_err(GraphError::Invalid)?
            .to_vec();
        let ds = self.dataset().await?.clone();
        let producer = Producer::new(
            ds,
            req.config,
            seeds,
            req.options,
            req.num_workers,
            req.stream,
        )?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(ServerProducer {
            producer: tokio::sync::Mutex::new(producer),
            current: tokio::sync::Mutex::new(None),
        });
        lock(&self.producers).insert(id, p);
        Ok(id)
    }

    fn producer(&self, id: u64) -> Result<Arc<ServerProducer>, HandlerError> {
        lock(&self.producers)
            .get(&id)
            .cloned()
            .ok_or_else(|| HandlerError::new(format!("no producer {id}")))
    }
}

impl ServerProducer {
    /// Starts `epoch`, dropping whatever the previous one had left.
    async fn start(&self, epoch: u64) -> Result<(), GraphError> {
        let mut current = self.current.lock().await;
        *current = None;
        let rx = self.producer.lock().await.start(epoch)?;
        *current = Some((epoch, rx));
        Ok(())
    }

    /// The next batch of `epoch`, waiting for it, or the end.
    async fn fetch(&self, epoch: u64) -> Result<FetchAnswer, GraphError> {
        let mut current = self.current.lock().await;
        let Some((_, rx)) = current.as_mut().filter(|(e, _)| *e == epoch) else {
            return Err(GraphError::Producer(format!(
                "epoch {epoch} is not running"
            )));
        };
        match rx.recv().await {
            Some(Ok(b)) => Ok(FetchAnswer::Batch(Box::new(WireBatch::from_batch(&b)?))),
            Some(Err(e)) => Err(e),
            None => Ok(FetchAnswer::End),
        }
    }

    /// Drops the running epoch and waits for the sampling tasks.
    async fn stop(&self) {
        *self.current.lock().await = None;
        self.producer.lock().await.stop().await;
    }
}

/// `graph.sample_one_hop`: the local partition's answer.
fn sample_one_hop(part: &Partition, req: &SampleRequest) -> Result<SampleAnswer, GraphError> {
    let ids = tensor_u64(&req.ids).map_err(GraphError::Invalid)?;
    let mut b = NeighborBatch::default();
    sample_neighbors_into(&part.graph, ids, req.fanout, req.key, req.options, &mut b)?;
    SampleAnswer::from_batch(&b)
}

/// `graph.features`: the local rows of `ids`, in order.
fn features(part: &Partition, ids: &Tensor) -> Result<Tensor, GraphError> {
    let ids = tensor_u64(ids).map_err(GraphError::Invalid)?;
    match &part.node_features {
        Some(f) => gather_tensor(f, ids),
        None => Err(GraphError::InvalidArgument(format!(
            "partition {} has no node features",
            part.index
        ))),
    }
}

/// A handler's answer, ready at once.
fn answer<R>(r: Result<R, GraphError>) -> Ready<Result<R, HandlerError>> {
    ready(r.map_err(HandlerError::new))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
