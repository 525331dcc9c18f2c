//! The client side of server–client mode: [`RemoteClient`] (GLT's
//! `init_client`) creates sampling producers on the servers, starts their
//! epochs and fetches their batches with prefetching.

use std::time::Duration;

use rpc_core::Rpc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::loader::BatchReceiver;
use super::wire::{FetchAnswer, ProducerRequest, ids_tensor};
use super::{
    DEFAULT_TIMEOUT, DistNeighborLoader, LoaderOptions, Router, ServerInfo, connect_servers,
};
use crate::{GraphError, SamplerConfig};

const CREATE: &str = "graph.producer.create";
const START: &str = "graph.producer.start";
const FETCH: &str = "graph.producer.fetch";
const DESTROY: &str = "graph.producer.destroy";

/// How remote producers run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Sampling tasks per server.
    pub num_workers: usize,
    /// The deadline of every request, fetches included: a server that does
    /// not answer within it is reported lost.
    pub timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            num_workers: 1,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A client of sampling servers: knows which partition each serves.
#[derive(Clone, Debug)]
pub struct RemoteClient {
    rpc: Rpc,
    servers: Vec<(String, ServerInfo)>,
}

impl RemoteClient {
    /// Connects to the servers at `addrs` and asks what each holds.
    pub async fn connect(
        rpc: &Rpc,
        addrs: &[String],
        timeout: Duration,
    ) -> Result<Self, GraphError> {
        let mut servers = connect_servers(rpc, addrs, timeout).await?;
        servers.sort_by_key(|(_, i)| i.partition);
        if servers
            .windows(2)
            .any(|w| w[0].1.partition == w[1].1.partition)
        {
            return Err(GraphError::InvalidArgument(
                "two servers hold the same partition".into(),
            ));
        }
        Ok(Self {
            rpc: rpc.clone(),
            servers,
        })
    }

    /// The servers (peer name, what it holds), by partition.
    #[must_use]
    pub fn servers(&self) -> &[(String, ServerInfo)] {
        &self.servers
    }

    /// A loader whose batches the servers sample: `seeds` are cut into one
    /// contiguous run per server, and each server's producer cuts its run
    /// into batches (shuffled per epoch and server when asked). Every seed
    /// is in exactly one batch per epoch (without `drop_last`); batches
    /// arrive as the servers finish them, at most `options.prefetch`
    /// waiting on this side.
    pub async fn loader(
        &self,
        seeds: &[u64],
        config: SamplerConfig,
        options: LoaderOptions,
        remote: RemoteOptions,
    ) -> Result<DistNeighborLoader, GraphError> {
        config.validate()?;
        let k = self.servers.first().map_or(0, |(_, i)| i.num_partitions);
        let mut peers = vec![None; k as usize];
        for (peer, info) in &self.servers {
            if let Some(slot) = peers.get_mut(info.partition as usize) {
                *slot = Some(peer.clone());
            }
        }
        let router = Router::new(self.rpc.clone(), peers, remote.timeout);
        let per = seeds.len().div_ceil(self.servers.len().max(1)).max(1);
        let mut producers = RemoteProducers {
            router,
            producers: Vec::new(),
            prefetch: options.prefetch.max(1),
            fetchers: Vec::new(),
        };
        for (j, (_, info)) in self.servers.iter().enumerate() {
            let run = seeds
                .get(j * per..((j + 1) * per).min(seeds.len()))
                .unwrap_or(&[]);
            let req = ProducerRequest {
                seeds: ids_tensor(run)?,
                config: config.clone(),
                options: options.clone(),
                num_workers: remote.num_workers,
                stream: u64::from(info.partition) + 1,
            };
            match producers
                .router
                .call::<u64>(info.partition, CREATE, &req)
                .await
            {
                Ok(id) => producers.producers.push((info.partition, id)),
                Err(e) => {
                    let _ = producers.shutdown().await;
                    return Err(e);
                }
            }
        }
        Ok(DistNeighborLoader::remote(producers))
    }
}

/// The producers of one remote loader, one per server.
#[derive(Debug)]
pub(crate) struct RemoteProducers {
    router: Router,
    /// (partition of the server, producer id there).
    producers: Vec<(u32, u64)>,
    prefetch: usize,
    fetchers: Vec<JoinHandle<()>>,
}

impl RemoteProducers {
    /// Starts epoch `epoch` on every server, and a fetching task per
    /// server feeding the returned channel.
    pub(crate) async fn start(&mut self, epoch: u64) -> Result<BatchReceiver, GraphError> {
        self.fetchers.retain(|t| !t.is_finished());
        for &(p, id) in &self.producers {
            self.router.call::<()>(p, START, &(id, epoch)).await?;
        }
        let (tx, rx) = mpsc::channel(self.prefetch);
        for &(p, id) in &self.producers {
            let (router, tx) = (self.router.clone(), tx.clone());
            self.fetchers.push(tokio::spawn(async move {
                let args = (id, epoch);
                loop {
                    let answer = tokio::select! {
                        biased;
                        () = tx.closed() => break,
                        a = router.call::<FetchAnswer>(p, FETCH, &args) => a,
                    };
                    let item = match answer {
                        Ok(FetchAnswer::Batch(w)) => {
                            w.into_batch().map_err(|d| router.bad_answer(p, FETCH, d))
                        }
                        Ok(FetchAnswer::End) => break,
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            }));
        }
        Ok(rx)
    }

    /// Waits for the fetching tasks (which stop once the loader has
    /// dropped their channel) and destroys the producers on the servers;
    /// reports the first server that could not be told.
    pub(crate) async fn shutdown(&mut self) -> Result<(), GraphError> {
        for t in self.fetchers.drain(..) {
            let _ = t.await;
        }
        let mut first = Ok(());
        for (p, id) in self.producers.drain(..) {
            let r = self.router.call::<()>(p, DESTROY, &id).await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}
