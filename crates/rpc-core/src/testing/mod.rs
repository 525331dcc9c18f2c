//! The transport conformance suite (feature `test-util`).
//!
//! Every [`Transport`] runs the same cases, so that transports cannot differ
//! in semantics. A transport crate adds one file, `tests/conformance.rs`:
//!
//! ```no_run
//! // In a transport crate, `MyHarness` instead of the in-memory one.
//! rpc_core::conformance_tests!(rpc_core::testing::MemHarness::new());
//! # fn main() {}
//! ```
//!
//! which expands to one `#[test]` per case in [`cases`]. The harness says how
//! to make the transport and where to listen.
//!
//! The cases run the whole engine over the transport (calls, errors,
//! deadlines, cancellation, limits, disconnects) and also check the frame
//! contract directly (order, attachments, clean close, limits).
//!
//! [`chaos`] runs many calls through injected faults and checks that each
//! ended once and in time.
//!
//! [`fuzz`] runs the fuzz targets of the workspace's decoders of untrusted
//! input: proptest strategies with a case count or a time budget.
//!
//! [`kill9`] is the `kill -9` scenario of every transport that reaches
//! another process: real server processes killed while calls are in flight,
//! then restarted, with nothing leaked.

pub mod cases;
pub mod chaos;
pub mod fuzz;
pub mod kill9;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::{MemNetwork, Transport};

/// How long any one case may take before the suite calls it hung. Far above
/// what a case needs, so that a slow machine never fails a case by luck.
pub const CASE_WATCHDOG: Duration = Duration::from_secs(120);

/// What the suite needs to know about a transport.
pub trait Harness: Send + Sync + 'static {
    /// A transport instance. All instances from one harness must reach each
    /// other's listeners.
    fn transport(&self) -> Arc<dyn Transport>;

    /// An address that listens on a fresh endpoint, such as
    /// `tcp://127.0.0.1:0`.
    fn listen_addr(&self) -> String;
}

/// The harness of the in-memory transport.
#[derive(Debug, Default)]
pub struct MemHarness {
    net: MemNetwork,
}

impl MemHarness {
    /// A harness with a fresh network.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Harness for MemHarness {
    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.net.transport())
    }

    fn listen_addr(&self) -> String {
        "mem://0".to_owned()
    }
}

/// Runs one case on a fresh two-thread runtime, failing it if it takes
/// longer than [`CASE_WATCHDOG`].
pub fn run<H, F, Fut>(harness: H, case: F)
where
    H: Harness,
    F: FnOnce(Arc<dyn Harness>) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime starts");
    let harness: Arc<dyn Harness> = Arc::new(harness);
    rt.block_on(async {
        if tokio::time::timeout(CASE_WATCHDOG, case(harness))
            .await
            .is_err()
        {
            panic!("conformance case hung for {CASE_WATCHDOG:?}");
        }
    });
}

/// Expands to one `#[test]` per conformance case, each running on a harness
/// made by the given expression.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            empty_call,
            large_call_8mib,
            unknown_function,
            unknown_provider,
            timeout,
            cancel_reaches_handler,
            one_way,
            concurrent_calls_do_not_cross,
            oversized_call_rejected_before_sending,
            oversized_frame_closes_only_that_connection,
            a_lowered_frame_limit_holds_from_the_next_frame,
            server_drop_fails_pending_calls_fast,
            frames_in_order_then_clean_close,
            receive_hints_keep_their_contract,
            attachments_intact,
            listener_reports_bound_address,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run($harness, $crate::testing::cases::$case);
            }
        )*
    };
}

/// Echoes every frame back, on every connection `listener` accepts, until
/// accepting fails: the transport alone, without an engine, for benchmarks
/// and profiling examples.
pub async fn echo_frames(mut listener: Box<dyn crate::transport::Listener>) {
    while let Ok(conn) = listener.accept().await {
        tokio::spawn(async move {
            let (mut tx, mut rx) = conn.split();
            while let Ok(Some(frame)) = rx.recv().await {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Times `n` calls of `function` on `peer` that echo an 8 B [`Blob`]
/// (checking each answer's length), keeping `window` in flight, after a
/// warm-up of a tenth as many: the profiling examples' loop.
///
/// [`Blob`]: crate::Blob
pub async fn time_echo_calls(
    client: &crate::Rpc,
    peer: &str,
    function: &str,
    n: usize,
    window: usize,
) -> Duration {
    let payload = crate::Blob::from(vec![1u8; 8]);
    let run = |n| {
        windowed(
            n,
            window,
            || client.call::<crate::Blob>(peer, function, &payload),
            |answer| assert_eq!(answer.expect("echo answers").len(), 8),
        )
    };
    run(n / 10 + 1).await;
    let start = std::time::Instant::now();
    run(n).await;
    start.elapsed()
}

/// Runs `n` futures made by `start`, keeping at most `window` of them in
/// flight, and hands each output to `check` as it completes.
pub async fn windowed<Fut: Future>(
    n: usize,
    window: usize,
    mut start: impl FnMut() -> Fut,
    mut check: impl FnMut(Fut::Output),
) {
    use futures_util::StreamExt as _;
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    let mut started = 0;
    while started < n.min(window) {
        in_flight.push(start());
        started += 1;
    }
    while let Some(out) = in_flight.next().await {
        check(out);
        if started < n {
            in_flight.push(start());
            started += 1;
        }
    }
}
