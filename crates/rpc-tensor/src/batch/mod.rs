//! Batched handlers: many concurrent calls, one handler run.
//!
//! [`define_batched`] registers a function whose concurrent calls are
//! collected ([`BatchConfig`]), their arguments stacked ([`Stack`]:
//! tensors along dimension 0, [`PerCaller`] values per caller), the
//! handler run once on the [`Batch`], and its result split back
//! ([`Unstack`]) so that each caller gets its own rows. A caller whose
//! arguments do not have the structure of the batch's first caller gets
//! an error; the others proceed.
//!
//! [`BatchQueue`] is the same, driven by its owner instead of a handler:
//! take whatever is waiting, up to N, and answer the batch.

mod batcher;
mod stack;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rpc_core::{Error, HandlerError, Queue, Responder, Rpc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

pub use batcher::Batcher;
pub use stack::{PerCaller, Stack, Unstack};

/// When a batched function runs its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    max_batch: usize,
    max_wait: Duration,
    dynamic: bool,
}

impl BatchConfig {
    /// Batches of up to `max_batch` calls (at least 1): a full batch runs
    /// at once, a partial one `max_wait` after its first call arrived.
    /// Each batch runs as its own task, so batches may overlap.
    pub fn new(max_batch: usize, max_wait: Duration) -> Self {
        Self {
            max_batch: max_batch.max(1),
            max_wait,
            dynamic: false,
        }
    }

    /// Dynamic batching: one batch at a time, each taking whatever calls
    /// are waiting, up to `max_batch`, without waiting for more. Calls
    /// that arrive while a batch runs form the next one.
    pub fn dynamic(max_batch: usize) -> Self {
        Self {
            max_batch: max_batch.max(1),
            max_wait: Duration::ZERO,
            dynamic: true,
        }
    }

    /// The most calls in one batch.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// How long a partial batch waits for more calls (zero when dynamic).
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Whether this is dynamic batching.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }
}

/// The arguments of one batch of calls of `A`, stacked, as the handler
/// gets them.
pub struct Batch<A: Stack> {
    args: A::Stacked,
    rows: Vec<usize>,
}

impl<A: Stack> Batch<A> {
    /// The stacked arguments.
    pub fn args(&self) -> &A::Stacked {
        &self.args
    }

    /// Takes the stacked arguments.
    pub fn into_args(self) -> A::Stacked {
        self.args
    }

    /// The number of callers in the batch.
    pub fn callers(&self) -> usize {
        self.rows.len()
    }

    /// How many rows each caller sent, in caller order (1 for a caller
    /// that sent no tensor). The result's tensors must have their sum as
    /// dimension 0.
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }
}

impl<A: Stack> std::fmt::Debug for Batch<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Defines `name` on `rpc` as a batched function: concurrent calls are
/// collected as `config` says, and `f` runs once per batch.
///
/// Callers call it as a plain function of `A` returning `R::Part` (with
/// `PerCaller<T>` travelling as plain `T`). Must be called inside a tokio
/// runtime, which runs the collecting task; the task ends when the engine
/// shuts down or the function is undefined.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::Rpc;
/// use rpc_tensor::{Batch, BatchConfig, PerCaller, Tensor, define_batched};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let rpc = Rpc::new();
/// rpc.set_name("model")?;
/// define_batched(
///     &rpc,
///     "double",
///     BatchConfig::new(8, Duration::from_millis(2)),
///     |batch: Batch<(Tensor, PerCaller<u32>)>| async move {
///         let (x, tags) = batch.into_args();
///         let doubled: Vec<f32> = x.as_slice::<f32>()?.iter().map(|v| v * 2.0).collect();
///         Ok((Tensor::from_slice(x.shape(), &doubled)?, PerCaller(tags)))
///     },
/// )?;
/// // Callers send `(Tensor, u32)`; the handler gets `(Tensor, Vec<u32>)`.
/// let x = Tensor::from_slice(&[1, 2], &[1.0f32, 2.0])?;
/// let (y, tag): (Tensor, u32) = rpc.call("model", "double", &(x, 7u32)).await?;
/// assert_eq!((y.as_slice::<f32>()?, tag), (&[2.0, 4.0][..], 7));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub fn define_batched<A, R, F, Fut>(
    rpc: &Rpc,
    name: &str,
    config: BatchConfig,
    f: F,
) -> Result<(), Error>
where
    A: Stack + DeserializeOwned,
    R: Unstack,
    R::Part: Serialize,
    F: Fn(Batch<A>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Err(Error::InvalidArgument(
            "define_batched must be called inside a tokio runtime".into(),
        ));
    };
    let queue = rpc.define_queue::<A, R::Part>(name)?;
    let f = Arc::new(f);
    if config.dynamic {
        runtime.spawn(collect_dynamic(queue, config.max_batch, f));
    } else {
        runtime.spawn(collect_timed(queue, config, f));
    }
    Ok(())
}

type Item<A, R> = (Responder<<R as Unstack>::Part>, A);

/// Collects calls into batches by size and time; runs each as a task.
async fn collect_timed<A, R, F, Fut>(mut queue: Queue<A, R::Part>, config: BatchConfig, f: Arc<F>)
where
    A: Stack,
    R: Unstack,
    R::Part: Serialize,
    F: Fn(Batch<A>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    let mut batcher: Batcher<Item<A, R>> = Batcher::new(config.max_batch, config.max_wait);
    loop {
        let deadline = batcher.next_deadline();
        let due = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let batch = tokio::select! {
            item = queue.recv() => match item {
                Some(item) => batcher.push(item, Instant::now()),
                None => {
                    if let Some(items) = batcher.flush() {
                        run(items, f.clone()).await;
                    }
                    return;
                }
            },
            () = due => batcher.flush_due(Instant::now()),
        };
        if let Some(items) = batch {
            tokio::spawn(run(items, f.clone()));
        }
    }
}

/// Takes whatever is waiting, up to `max`, one batch at a time.
async fn collect_dynamic<A, R, F, Fut>(mut queue: Queue<A, R::Part>, max: usize, f: Arc<F>)
where
    A: Stack,
    R: Unstack,
    R::Part: Serialize,
    F: Fn(Batch<A>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    loop {
        let items = queue.recv_batch(max).await;
        if items.is_empty() {
            return;
        }
        // A task of its own, so that a panicking handler ends only its
        // batch (whose callers get errors from the dropped responders).
        let _ = tokio::spawn(run(items, f.clone())).await;
    }
}

/// Stacks, runs the handler once, and answers every caller.
async fn run<A, R, F, Fut>(items: Vec<Item<A, R>>, f: Arc<F>)
where
    A: Stack,
    R: Unstack,
    R::Part: Serialize,
    F: Fn(Batch<A>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    let Some((batch, responder)) = prepare::<A, R>(items) else {
        return;
    };
    let outcome = f(batch).await;
    responder.respond(outcome);
}

/// Checks each caller's arguments against the first accepted caller's,
/// answers those that do not fit with an error, and stacks the rest.
fn prepare<A: Stack, R: Unstack>(items: Vec<Item<A, R>>) -> Option<(Batch<A>, BatchResponder<R>)>
where
    R::Part: Serialize,
{
    let mut responders = Vec::with_capacity(items.len());
    let mut args: Vec<A> = Vec::with_capacity(items.len());
    let mut rows = Vec::with_capacity(items.len());
    for (responder, a) in items {
        let fits = a.rows().and_then(|n| {
            args.first()
                .map_or(Ok(()), |first| a.check_like(first))
                .map(|()| n)
        });
        match fits {
            Ok(n) => {
                responders.push(responder);
                args.push(a);
                rows.push(n.unwrap_or(1));
            }
            Err(e) => responder.err(e),
        }
    }
    if args.is_empty() {
        return None;
    }
    match A::stack(args) {
        Ok(stacked) => Some((
            Batch {
                args: stacked,
                rows: rows.clone(),
            },
            BatchResponder { responders, rows },
        )),
        Err(e) => {
            for r in responders {
                r.err(e.clone());
            }
            None
        }
    }
}

/// Answers every caller of one batch, each with its own part.
#[must_use = "dropping a BatchResponder answers every caller with an error"]
pub struct BatchResponder<R: Unstack> {
    responders: Vec<Responder<R::Part>>,
    rows: Vec<usize>,
}

impl<R: Unstack> BatchResponder<R>
where
    R::Part: Serialize,
{
    /// Splits the batched result and answers each caller with its part;
    /// an error (or a result that does not split into the callers' rows)
    /// answers every caller with the error.
    pub fn respond(self, outcome: Result<R, HandlerError>) {
        let parts = outcome.and_then(|r| r.unstack(&self.rows).map_err(HandlerError::from));
        match parts {
            Ok(parts) => {
                for (responder, part) in self.responders.into_iter().zip(parts) {
                    responder.ok(part);
                }
            }
            Err(e) => {
                for responder in self.responders {
                    responder.err(HandlerError::new(e.message()));
                }
            }
        }
    }

    /// The number of callers.
    pub fn callers(&self) -> usize {
        self.responders.len()
    }
}

impl<R: Unstack> std::fmt::Debug for BatchResponder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchResponder")
            .field("rows", &self.rows)
            .finish()
    }
}

/// Calls of a function defined with [`batch_queue`], for their owner to
/// take in batches (moolib's `define_queue(dynamic_batching=True)`).
pub struct BatchQueue<A: Stack, R: Unstack> {
    queue: Queue<A, R::Part>,
}

/// Defines `name` on `rpc` as a queue that its owner drains in batches
/// with [`BatchQueue::next`].
pub fn batch_queue<A, R>(rpc: &Rpc, name: &str) -> Result<BatchQueue<A, R>, Error>
where
    A: Stack + DeserializeOwned,
    R: Unstack,
    R::Part: Serialize,
{
    Ok(BatchQueue {
        queue: rpc.define_queue(name)?,
    })
}

impl<A: Stack, R: Unstack> BatchQueue<A, R>
where
    R::Part: Serialize,
{
    /// Waits for at least one call, then takes every call already waiting,
    /// up to `max`, and returns their stacked arguments and the responder
    /// of the batch. Callers whose arguments do not stack with the first
    /// are answered with an error and left out (if that leaves nobody, the
    /// next calls are waited for). `None` once the engine has shut down.
    pub async fn next(&mut self, max: usize) -> Option<(Batch<A>, BatchResponder<R>)> {
        loop {
            let items = self.queue.recv_batch(max).await;
            if items.is_empty() {
                return None;
            }
            if let Some(batch) = prepare::<A, R>(items) {
                return Some(batch);
            }
        }
    }

    /// The number of calls waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no call is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl<A: Stack, R: Unstack> std::fmt::Debug for BatchQueue<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchQueue")
            .field("queue", &self.queue)
            .finish()
    }
}
