//! `rpc-tensor`: tensors that travel through `rpc-core` calls without being
//! copied, and batched handlers.
//!
//! - [`Tensor`]: a dtype ([`DType`]: f16, bf16, f32, f64, i8–i64, u8,
//!   bool), a shape, a [`Device`] (CPU for now) and shared, immutable,
//!   row-major bytes aligned to [`ALIGN`] bytes. Viewed in place with
//!   [`Tensor::as_slice`] (checked), converted to and from `ndarray` with
//!   the `ndarray` feature.
//! - A tensor anywhere inside a serde argument or result travels as an
//!   out-of-band attachment ([`rpc_core::Blob`]): sending never copies its
//!   bytes into the body, and the caller keeps using its tensor. Received
//!   tensors are checked (dtype, shape overflow, length) and are aligned:
//!   the TCP and shared-memory transports deliver large attachments
//!   aligned, so nothing is copied; anything else is copied once into an
//!   aligned buffer ([`realigned_bytes`] counts it).
//! - Batched handlers ([`define_batched`]): concurrent calls are collected
//!   up to a batch size or a maximum wait, or dynamically (whatever is
//!   waiting); their arguments are stacked along dimension 0 ([`Stack`]),
//!   non-tensor arguments reach the handler per caller ([`PerCaller`]), the
//!   handler runs once, and each caller gets its own rows of the result
//!   ([`Unstack`]). [`BatchQueue`] is the same for a queue its owner
//!   drains. The pure collecting logic is [`Batcher`].
//!
//! Bulk transfers (expose a buffer, pull and push at an offset) are in
//! `rpc-core` ([`rpc_core::Rpc::expose`]), since every transport takes
//! part in them.
//!
//! What it deliberately does **not** do: math on tensors, strided or
//! non-contiguous views, GPU memory (the [`Device`] field is there for it),
//! batching along a dimension other than 0, or reordering calls.
//!
//! # Layout
//!
//! - `dtype`: [`DType`] and [`Element`].
//! - `tensor`: [`Tensor`], [`Device`], aligned buffers.
//! - `wire`: how a tensor serializes, and the checks on receipt.
//! - `ndarray` (feature `ndarray`): conversions.
//! - `batch`: [`define_batched`], [`BatchQueue`], [`Batch`],
//!   [`BatchConfig`]; `batch/batcher.rs` the pure [`Batcher`];
//!   `batch/stack.rs` [`Stack`], [`Unstack`], [`PerCaller`].
//! - `error`: [`TensorError`].

#![forbid(unsafe_code)]

mod batch;
mod dtype;
mod error;
#[cfg(feature = "ndarray")]
mod ndarray;
mod tensor;
mod wire;

pub use batch::{
    Batch, BatchConfig, BatchQueue, BatchResponder, Batcher, PerCaller, Stack, Unstack,
    batch_queue, define_batched,
};
pub use dtype::{DType, Element};
pub use error::TensorError;
pub use half::{bf16, f16};
pub use tensor::{ALIGN, Device, MAX_DIMS, Tensor, realigned_bytes};
