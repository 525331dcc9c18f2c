//! Callers outside any task receive their answers in place
//! (`Config::caller_spin`): counted, switched off by a zero spin, and never
//! at the cost of a frame meant for the reader (requests, the end of the
//! connection).
//!
//! The server runs on a runtime of its own on another thread, as a peer in
//! another process would; the client calls from `block_on` on a
//! current-thread runtime. Spins are far longer than any answer takes, so
//! that a call answered in place is a certainty, not luck. A caller that
//! kept spinning where it must stop would hold its thread for the whole
//! spin (20 s): the tests bound each such call's time far below that.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rpc_core::{Config, Error, MemNetwork, Rpc};

const LONG: Duration = Duration::from_secs(60);
/// Far above any answer's time, and above the calls' timeout.
const SPIN: Duration = Duration::from_secs(20);
/// The calls' timeout: a caller stuck in its spin would hit it.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Far above any call's time here, far below `SPIN`.
const QUICK: Duration = Duration::from_secs(5);

/// A server engine on a thread of its own, serving `mem://server`; `setup`
/// defines its functions. Dropping the returned sender stops it.
fn server(net: &MemNetwork, setup: impl FnOnce(&Rpc) + Send + 'static) -> std_mpsc::Sender<()> {
    let net = net.clone();
    let (ready_tx, ready) = std_mpsc::channel();
    let (stop, stopped) = std_mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = runtime();
        rt.block_on(async {
            let rpc = Rpc::new();
            rpc.set_name("server").unwrap();
            rpc.add_transport(net.transport());
            setup(&rpc);
            rpc.listen("mem://server").await.unwrap();
            ready_tx.send(()).unwrap();
            // Serve until the test drops its sender.
            let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
        });
    });
    ready.recv().unwrap();
    stop
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client engine with `caller_spin`, connected to the server.
async fn client(net: &MemNetwork, caller_spin: Duration) -> Rpc {
    let mut config = Config::default();
    config.caller_spin = caller_spin;
    config.timeout = TIMEOUT;
    let rpc = Rpc::with_config(config);
    rpc.set_name("client").unwrap();
    rpc.add_transport(net.transport());
    let up = rpc.connect("mem://server").unwrap().established(LONG).await;
    assert_eq!(up.unwrap(), "server");
    rpc
}

/// The answers received in place on the client's connections.
fn in_place(rpc: &Rpc) -> u64 {
    rpc.debug_info()
        .peers
        .iter()
        .flat_map(|p| &p.connections)
        .map(|c| c.answered_in_place)
        .sum()
}

/// Three lone `echo` calls, of which the last two are received in place:
/// afterwards the connection has a previous lone caller, polled with this
/// `block_on`'s waker, so the next lone call spins.
async fn warm_up(rpc: &Rpc) {
    for i in 0..3u64 {
        assert_eq!(rpc.call::<u64>("server", "echo", &i).await.unwrap(), i);
    }
    assert_eq!(in_place(rpc), 2);
}

fn echo_server(net: &MemNetwork) -> std_mpsc::Sender<()> {
    server(net, |rpc| {
        rpc.define("echo", |x: u64| async move { Ok(x) }).unwrap();
    })
}

#[test]
fn a_caller_outside_any_task_receives_its_answers_in_place() {
    let net = MemNetwork::new();
    let _server = echo_server(&net);
    let rt = runtime();
    rt.block_on(async {
        let rpc = client(&net, SPIN).await;
        for i in 0..200u64 {
            let back: u64 = rpc.call("server", "echo", &i).await.unwrap();
            assert_eq!(back, i);
        }
        // All but the first: a caller spins once the connection's previous
        // lone caller was polled with the same waker (this `block_on`'s).
        assert_eq!(in_place(&rpc), 199);
        // A caller in a task waits as usual: the reader answers it.
        let rpc2 = rpc.clone();
        let back: u64 = tokio::spawn(async move { rpc2.call("server", "echo", &7u64).await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, 7);
        assert_eq!(in_place(&rpc), 199);
    });
}

#[test]
fn concurrent_calls_from_one_block_on_stay_concurrent() {
    use futures_util::StreamExt as _;
    let net = MemNetwork::new();
    // Each call waits at the server until all of them have arrived: if
    // the first one spun in place, holding back the others' requests, the
    // server would never see the rest and the calls would time out.
    const N: usize = 32;
    let arrived = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let _server = server(&net, move |rpc| {
        rpc.define("gather", move |x: u64| {
            let arrived = arrived.clone();
            async move {
                arrived.wait().await;
                Ok(x)
            }
        })
        .unwrap();
        rpc.define("echo", |x: u64| async move { Ok(x) }).unwrap();
    });
    let rt = runtime();
    rt.block_on(async {
        let rpc = client(&net, SPIN).await;
        // Lone calls first, received in place: the connection has a
        // previous caller, polled with this `block_on`'s waker.
        warm_up(&rpc).await;
        let mut calls: futures_util::stream::FuturesUnordered<_> = (0..N as u64)
            .map(|i| {
                let rpc = &rpc;
                async move { rpc.call::<u64>("server", "gather", &i).await }
            })
            .collect();
        let mut sum = 0;
        while let Some(back) = calls.next().await {
            sum += back.unwrap();
        }
        assert_eq!(sum, (0..N as u64).sum::<u64>());
        assert_eq!(in_place(&rpc), 2, "none of the concurrent calls spun");
    });
}

#[test]
fn a_zero_caller_spin_leaves_every_answer_to_the_reader() {
    let net = MemNetwork::new();
    let _server = echo_server(&net);
    let rt = runtime();
    rt.block_on(async {
        let rpc = client(&net, Duration::ZERO).await;
        for i in 0..50u64 {
            let back: u64 = rpc.call("server", "echo", &i).await.unwrap();
            assert_eq!(back, i);
        }
        assert_eq!(in_place(&rpc), 0);
    });
}

#[test]
fn a_request_that_arrives_during_the_spin_goes_to_the_reader() {
    let net = MemNetwork::new();
    // The server's handler calls the client back on the same connection
    // before it answers: the client's caller, spinning in place, receives
    // that request first and must leave it to the reader.
    let _server = server(&net, |rpc| {
        rpc.define("echo", |x: u64| async move { Ok(x) }).unwrap();
        let me = rpc.clone();
        rpc.define("ask_back", move |x: u64| {
            let me = me.clone();
            async move {
                let doubled: u64 = me
                    .call("client", "double", &x)
                    .await
                    .map_err(rpc_core::HandlerError::new)?;
                Ok(doubled + 1)
            }
        })
        .unwrap();
    });
    let rt = runtime();
    rt.block_on(async {
        let rpc = client(&net, SPIN).await;
        rpc.define("double", |x: u64| async move { Ok(2 * x) })
            .unwrap();
        // Lone calls first: the connection's callers spin in place.
        warm_up(&rpc).await;
        for i in 0..20u64 {
            let started = std::time::Instant::now();
            let back: u64 = rpc.call("server", "ask_back", &i).await.unwrap();
            assert_eq!(back, 2 * i + 1);
            assert!(started.elapsed() < QUICK, "a spin held the reader back");
        }
        // Each answer came after a request the caller had to hand over.
        assert_eq!(in_place(&rpc), 2);
        let served = rpc.debug_info().functions;
        assert_eq!(served[0].calls, 20);
    });
}

#[test]
fn the_end_of_the_connection_during_the_spin_fails_the_call() {
    let net = MemNetwork::new();
    // The handler shuts its own engine down instead of answering.
    let _server = server(&net, |rpc| {
        rpc.define("echo", |x: u64| async move { Ok(x) }).unwrap();
        let me = rpc.clone();
        rpc.define("quit", move |()| {
            me.shutdown();
            std::future::pending::<Result<(), rpc_core::HandlerError>>()
        })
        .unwrap();
    });
    let rt = runtime();
    rt.block_on(async {
        let rpc = client(&net, SPIN).await;
        // Lone calls first, so that `quit`'s caller spins in place.
        warm_up(&rpc).await;
        let started = std::time::Instant::now();
        let got = rpc.call::<()>("server", "quit", &()).await;
        assert!(started.elapsed() < QUICK, "the spin missed the end");
        assert!(
            matches!(got, Err(Error::Disconnected { ref peer, .. }) if peer == "server"),
            "{got:?}"
        );
    });
}

#[test]
fn blocking_calls_from_a_plain_thread_receive_in_place() {
    let net = MemNetwork::new();
    let _server = echo_server(&net);
    let rt = runtime();
    let rpc = rt.block_on(client(&net, SPIN));
    // The engine's runtime runs on a thread of its own, as an
    // application's would; this thread only calls.
    let driver = std::thread::spawn({
        let (stop, rpc) = (rpc.clone(), rpc.clone());
        move || {
            rt.block_on(async move {
                stop.wait_for_shutdown().await;
                drop(rpc)
            })
        }
    });
    for i in 0..50u64 {
        assert_eq!(rpc.call_blocking::<u64>("server", "echo", &i).unwrap(), i);
    }
    // From the second call on (the thread's waker is the same for each),
    // except where the reader, running on the engine's thread meanwhile,
    // still held the connection's writer role as a request went out: the
    // caller then leaves that answer to the reader. How often that happens
    // depends on how the threads are scheduled, so only the path itself
    // is checked here; the counts are exact in the `block_on` tests.
    let got = in_place(&rpc);
    assert!(
        (1..=49).contains(&got),
        "{got} of 50 answers received in place"
    );
    rpc.shutdown();
    driver.join().unwrap();
}

#[test]
fn a_blocking_call_gives_up_once_its_runtime_is_gone() {
    let net = MemNetwork::new();
    let _server = server(&net, |rpc| {
        rpc.define("never", |()| {
            std::future::pending::<Result<(), rpc_core::HandlerError>>()
        })
        .unwrap();
    });
    let rt = runtime();
    let rpc = rt.block_on(async {
        let mut config = Config::default();
        config.timeout = Duration::from_millis(300);
        let rpc = Rpc::with_config(config);
        rpc.add_transport(net.transport());
        let up = rpc.connect("mem://server").unwrap().established(LONG).await;
        assert_eq!(up.unwrap(), "server");
        rpc
    });
    // Nobody runs the engine's tasks any more (its deadline task among
    // them): the caller must not wait forever.
    drop(rt);
    let got = rpc.call_blocking::<()>("server", "never", &());
    assert!(matches!(got, Err(Error::Timeout { .. })), "{got:?}");
}

/// A waker lent under one vtable whose clones carry another, as tokio's
/// `block_on` lends its own (`will_wake` tells them apart). Waking does
/// nothing: the test polls in a loop.
fn lent_waker() -> std::task::Waker {
    use std::task::{RawWaker, RawWakerVTable, Waker};
    static LENT: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    static OWNED: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    const fn clone(data: *const ()) -> RawWaker {
        RawWaker::new(data, &OWNED)
    }
    const fn noop(_: *const ()) {}
    static DATA: u8 = 0;
    // SAFETY: the functions ignore the data pointer, which points to a
    // static; every function of both vtables is safe to call from anywhere.
    unsafe { Waker::from_raw(RawWaker::new((&raw const DATA).cast(), &LENT)) }
}

#[test]
fn a_caller_polled_with_a_lent_waker_still_receives_in_place() {
    let net = MemNetwork::new();
    let _server = echo_server(&net);
    let rt = runtime();
    rt.block_on(async {
        let rpc = client(&net, SPIN).await;
        let waker = lent_waker();
        for i in 0..20u64 {
            let mut call = std::pin::pin!(rpc.call::<u64>("server", "echo", &i));
            let back = loop {
                let mut cx = std::task::Context::from_waker(&waker);
                if let std::task::Poll::Ready(back) = call.as_mut().poll(&mut cx) {
                    break back;
                }
                tokio::task::yield_now().await;
            };
            assert_eq!(back.unwrap(), i);
        }
        // All but the first, as with `block_on`'s own waker: the waker a
        // caller is compared by is a clone, never the one it was lent.
        assert_eq!(in_place(&rpc), 19);
    });
}
