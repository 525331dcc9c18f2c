//! Registering functions: [`Provider`] and the `define*` methods of [`Rpc`].

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::control::RESERVED_PREFIX;
use super::handler::{
    AsyncHandler, BlockingHandler, CallContext, Counters, DeferredHandler, Handler, HandlerError,
    QueueHandler, Responder,
};
use super::queue::Queue;
use super::{Registration, Rpc};
use crate::error::Error;
use crate::wire::MAX_NAME_LEN;

/// Defines functions under one provider id.
///
/// Provider ids (Margo's) let several registrations share one function name:
/// a call names the provider, and an unknown provider is an error naming it.
/// [`Rpc::define`] and friends use provider 0.
///
/// ```
/// # let rpc = rpc_core::Rpc::new();
/// rpc.provider(1).define("get", |(): ()| async { Ok("from provider 1") })?;
/// rpc.provider(2).define("get", |(): ()| async { Ok("from provider 2") })?;
/// # Ok::<_, rpc_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Provider<'a> {
    rpc: &'a Rpc,
    id: u16,
}

impl Rpc {
    /// Defines functions under provider `id`.
    pub fn provider(&self, id: u16) -> Provider<'_> {
        Provider { rpc: self, id }
    }

    /// Defines an async function under provider 0. See [`Provider::define`].
    pub fn define<A, R, F, Fut>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(A) -> Fut + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.provider(0).define(name, f)
    }

    /// Defines an async function that also gets the [`CallContext`], under
    /// provider 0. See [`Provider::define_with_context`].
    pub fn define_with_context<A, R, F, Fut>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(CallContext, A) -> Fut + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.provider(0).define_with_context(name, f)
    }

    /// Defines a blocking function under provider 0. See
    /// [`Provider::define_blocking`].
    pub fn define_blocking<A, R, F>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(A) -> Result<R, HandlerError> + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.provider(0).define_blocking(name, f)
    }

    /// Defines a deferred function under provider 0. See
    /// [`Provider::define_deferred`].
    pub fn define_deferred<A, R, F>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(Responder<R>, A) + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.provider(0).define_deferred(name, f)
    }

    /// Defines a queue under provider 0. See [`Provider::define_queue`].
    pub fn define_queue<A, R>(&self, name: &str) -> Result<Queue<A, R>, Error>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.provider(0).define_queue(name)
    }

    /// Removes a function. Returns whether it was defined.
    pub fn undefine(&self, name: &str, provider: u16) -> bool {
        let mut registry = self
            .inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(providers) = registry.get_mut(name) else {
            return false;
        };
        let removed = providers.remove(&provider).is_some();
        if providers.is_empty() {
            registry.remove(name);
        }
        removed
    }
}

impl Provider<'_> {
    /// The provider id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Defines an async function: `f` gets the decoded arguments and returns
    /// a future of the result.
    ///
    /// Handlers run on the engine's runtime and must not block; use
    /// [`define_blocking`](Self::define_blocking) for blocking code. A handler
    /// that returns an error or panics answers the caller with
    /// [`Error::Remote`]; the process goes on. A handler whose caller
    /// cancels, or whose deadline passes, is dropped.
    pub fn define<A, R, F, Fut>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(A) -> Fut + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.define_with_context(name, move |_ctx, args| f(args))
    }

    /// Like [`define`](Self::define), with the [`CallContext`] (caller,
    /// deadline, cancellation) as first argument.
    pub fn define_with_context<A, R, F, Fut>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(CallContext, A) -> Fut + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.register(
            name,
            Arc::new(AsyncHandler {
                f,
                _args: PhantomData,
            }),
        )
    }

    /// Defines a blocking function. Calls run on tokio's blocking threads,
    /// at most [`Config::max_blocking_threads`](crate::Config::max_blocking_threads)
    /// at a time across the engine; further calls wait for a thread.
    pub fn define_blocking<A, R, F>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(A) -> Result<R, HandlerError> + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let handler = BlockingHandler {
            f: Arc::new(move |_ctx: CallContext, args: A| f(args)),
            limit: self.rpc.inner.blocking.clone(),
            _args: PhantomData,
        };
        self.register(name, Arc::new(handler))
    }

    /// Defines a deferred function: `f` gets a [`Responder`] and the
    /// arguments, and answers through the responder later, from any thread.
    /// `f` itself must return quickly.
    pub fn define_deferred<A, R, F>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(Responder<R>, A) + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.register(
            name,
            Arc::new(DeferredHandler {
                f,
                _types: PhantomData,
            }),
        )
    }

    /// Defines a queue: each call lands in the returned [`Queue`] as a
    /// ([`Responder`], arguments) pair, for its owner to take one at a time or
    /// in batches. Calls beyond
    /// [`Config::queue_capacity`](crate::Config::queue_capacity) waiting
    /// calls are answered with [`Error::Overloaded`].
    pub fn define_queue<A, R>(&self, name: &str) -> Result<Queue<A, R>, Error>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(self.rpc.inner.config.queue_capacity.max(1));
        self.register(name, Arc::new(QueueHandler { tx }))?;
        Ok(Queue::new(rx, name))
    }

    fn register(&self, name: &str, handler: Arc<dyn Handler>) -> Result<(), Error> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "a function name is 1 to {MAX_NAME_LEN} bytes, got {} bytes",
                name.len()
            )));
        }
        if name.starts_with(RESERVED_PREFIX) {
            return Err(Error::InvalidArgument(format!(
                "function names starting with {RESERVED_PREFIX:?} are reserved"
            )));
        }
        let mut registry = self
            .rpc
            .inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let providers = registry.entry(Arc::from(name)).or_default();
        if providers.contains_key(&self.id) {
            return Err(Error::InvalidArgument(format!(
                "function {name:?} is already defined under provider {}",
                self.id
            )));
        }
        providers.insert(
            self.id,
            Registration {
                handler,
                counters: Arc::new(Counters::default()),
            },
        );
        Ok(())
    }
}
