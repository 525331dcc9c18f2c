//! [`DistNeighborLoader`]: mini-batches over an epoch, sampled in process,
//! by worker tasks, or by remote sampling servers; and the [`Producer`]
//! that worker mode and the servers share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::remote::RemoteProducers;
use super::{DistDataset, DistNeighborSampler, EpochPlan, SampledBatch};
use crate::{GraphError, SamplerConfig};

/// The receiving end of a producer's epoch: batches in completion order,
/// closed after the last one or after the first error.
pub(crate) type BatchReceiver = mpsc::Receiver<Result<SampledBatch, GraphError>>;

/// How a loader cuts and serves an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderOptions {
    /// Seeds per batch.
    pub batch_size: usize,
    /// Shuffle the seeds at every epoch (seeded by `seed` and the epoch).
    pub shuffle: bool,
    /// Drop the last batch of an epoch when it is short.
    pub drop_last: bool,
    /// Fetch the features of every sampled node.
    pub collect_features: bool,
    /// The shuffle seed.
    pub seed: u64,
    /// How many sampled batches may wait for the consumer (worker and
    /// remote modes): producers stop when this many are ready.
    pub prefetch: usize,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        Self {
            batch_size: 1,
            shuffle: false,
            drop_last: false,
            collect_features: false,
            seed: 0,
            prefetch: 4,
        }
    }
}

/// Where a loader built from a [`DistDataset`] samples. (Remote sampling
/// servers are the third mode: see [`RemoteClient::loader`].)
///
/// [`RemoteClient::loader`]: super::RemoteClient::loader
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerMode {
    /// In the loader's own task, one batch per [`DistNeighborLoader::next`]
    /// (GLT's collocated mode): no prefetching.
    Collocated,
    /// `num_workers` sampling tasks on the runtime, each with its own
    /// sampler, feeding a channel of `prefetch` batches (GLT's
    /// multiprocessing mode, with tasks instead of processes). Batches
    /// arrive in completion order.
    Workers {
        /// Sampling tasks.
        num_workers: usize,
    },
}

/// An iterator over mini-batches: each epoch yields every batch of its
/// [`EpochPlan`] once (in plan order when collocated, in completion order
/// otherwise), then `None`; the next call starts the next epoch. GLT's
/// `DistNeighborLoader`.
///
/// An error (a lost server names its partition) ends the epoch; the
/// loader can start another.
#[derive(Debug)]
pub struct DistNeighborLoader {
    inner: Inner,
    epoch: u64,
    rx: Option<BatchReceiver>,
}

#[derive(Debug)]
enum Inner {
    Collocated {
        sampler: Box<DistNeighborSampler>,
        seeds: Vec<u64>,
        options: LoaderOptions,
        plan: Option<EpochPlan>,
        next: usize,
    },
    Workers(Producer),
    Remote(RemoteProducers),
}

impl DistNeighborLoader {
    /// A loader over `seeds` sampling `ds` in `mode`.
    pub fn new(
        ds: &DistDataset,
        seeds: Vec<u64>,
        config: SamplerConfig,
        options: LoaderOptions,
        mode: WorkerMode,
    ) -> Result<Self, GraphError> {
        if options.batch_size == 0 {
            return Err(GraphError::InvalidArgument("batch size 0".into()));
        }
        let inner = match mode {
            WorkerMode::Collocated => Inner::Collocated {
                sampler: Box::new(DistNeighborSampler::new(
                    ds,
                    config,
                    options.collect_features,
                )?),
                seeds,
                options,
                plan: None,
                next: 0,
            },
            WorkerMode::Workers { num_workers } => Inner::Workers(Producer::new(
                ds.clone(),
                config,
                seeds,
                options,
                num_workers,
                0,
            )?),
        };
        Ok(Self {
            inner,
            epoch: 0,
            rx: None,
        })
    }

    pub(crate) fn remote(producers: RemoteProducers) -> Self {
        Self {
            inner: Inner::Remote(producers),
            epoch: 0,
            rx: None,
        }
    }

    /// The epoch the next batch belongs to.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches sampled by this process's producers so far, including those
    /// waiting in the prefetch channel (worker mode; 0 otherwise).
    #[must_use]
    pub fn sampled(&self) -> u64 {
        match &self.inner {
            Inner::Workers(p) => p.sampled(),
            _ => 0,
        }
    }

    /// The next batch of the current epoch (starting one if none is
    /// running), or `None` at its end.
    pub async fn next(&mut self) -> Option<Result<SampledBatch, GraphError>> {
        let epoch = self.epoch;
        let got = match &mut self.inner {
            Inner::Collocated {
                sampler,
                seeds,
                options,
                plan,
                next,
            } => {
                if plan.is_none() {
                    *next = 0;
                    match EpochPlan::new(seeds, options, 0, epoch) {
                        Ok(p) => *plan = Some(p),
                        Err(e) => return Some(Err(e)),
                    }
                }
                let p = plan.as_ref()?;
                let i = *next;
                *next += 1;
                match p.batch(i) {
                    Some(seeds) => {
                        Some(sampler.sample_batch(seeds, p.key(i), epoch, i as u64).await)
                    }
                    None => None,
                }
            }
            Inner::Workers(producer) => {
                if self.rx.is_none() {
                    match producer.start(epoch) {
                        Ok(rx) => self.rx = Some(rx),
                        Err(e) => return Some(Err(e)),
                    }
                }
                recv(&mut self.rx).await
            }
            Inner::Remote(remote) => {
                if self.rx.is_none() {
                    match remote.start(epoch).await {
                        Ok(rx) => self.rx = Some(rx),
                        Err(e) => return Some(Err(e)),
                    }
                }
                recv(&mut self.rx).await
            }
        };
        if !matches!(got, Some(Ok(_))) {
            self.end_epoch();
        }
        got
    }

    /// Ends the current epoch: producers stop after their current batch
    /// and prefetched batches are dropped.
    fn end_epoch(&mut self) {
        self.rx = None;
        self.epoch += 1;
        if let Inner::Collocated { plan, .. } = &mut self.inner {
            *plan = None;
        }
    }

    /// Stops every producer and waits for them; in remote mode, destroys
    /// the producers on the servers.
    pub async fn shutdown(mut self) -> Result<(), GraphError> {
        self.rx = None;
        match &mut self.inner {
            Inner::Collocated { .. } => Ok(()),
            Inner::Workers(p) => {
                p.stop().await;
                Ok(())
            }
            Inner::Remote(r) => r.shutdown().await,
        }
    }
}

async fn recv(rx: &mut Option<BatchReceiver>) -> Option<Result<SampledBatch, GraphError>> {
    rx.as_mut()?.recv().await
}

/// Sampling tasks over one seed list: at each epoch, `num_workers` tasks
/// take batches of the [`EpochPlan`] in turn and send them to a channel of
/// `prefetch` slots. Used by worker mode and by the servers' producers.
#[derive(Debug)]
pub(crate) struct Producer {
    ds: DistDataset,
    config: SamplerConfig,
    seeds: Arc<Vec<u64>>,
    options: LoaderOptions,
    num_workers: usize,
    stream: u64,
    sampled: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Producer {
    pub(crate) fn new(
        ds: DistDataset,
        config: SamplerConfig,
        seeds: Vec<u64>,
        options: LoaderOptions,
        num_workers: usize,
        stream: u64,
    ) -> Result<Self, GraphError> {
        config.validate()?;
        if num_workers == 0 || options.batch_size == 0 {
            return Err(GraphError::InvalidArgument(
                "a producer needs a worker and a batch size".into(),
            ));
        }
        Ok(Self {
            ds,
            config,
            seeds: Arc::new(seeds),
            options,
            num_workers,
            stream,
            sampled: Arc::new(AtomicU64::new(0)),
            tasks: Vec::new(),
        })
    }

    /// Batches sampled so far.
    pub(crate) fn sampled(&self) -> u64 {
        self.sampled.load(Ordering::Relaxed)
    }

    /// Starts epoch `epoch`: returns the channel its batches arrive on, in
    /// completion order, closed after the last one or after the first
    /// error. Tasks of an earlier epoch stop once its channel is dropped.
    pub(crate) fn start(&mut self, epoch: u64) -> Result<BatchReceiver, GraphError> {
        self.tasks.retain(|t| !t.is_finished());
        let plan = Arc::new(EpochPlan::new(
            &self.seeds,
            &self.options,
            self.stream,
            epoch,
        )?);
        let (tx, rx) = mpsc::channel(self.options.prefetch.max(1));
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..self.num_workers {
            let mut sampler = DistNeighborSampler::new(
                &self.ds,
                self.config.clone(),
                self.options.collect_features,
            )?;
            let (plan, next, tx, sampled) =
                (plan.clone(), next.clone(), tx.clone(), self.sampled.clone());
            self.tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(seeds) = plan.batch(i) else { break };
                    let key = plan.key(i);
                    let result = tokio::select! {
                        biased;
                        () = tx.closed() => break,
                        r = sampler.sample_batch(seeds, key, plan.epoch(), i as u64) => r,
                    };
                    sampled.fetch_add(1, Ordering::Relaxed);
                    let failed = result.is_err();
                    if tx.send(result).await.is_err() || failed {
                        break;
                    }
                }
            }));
        }
        Ok(rx)
    }

    /// Waits for every task, once their channels are dropped.
    pub(crate) async fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            // A task ends when its channel is closed; a panic in one is
            // not ours to re-raise here.
            let _ = t.await;
        }
    }
}
