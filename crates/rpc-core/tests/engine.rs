//! Engine behaviour over the in-memory transport: naming, handler kinds,
//! call forms, deadlines, shutdown and introspection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{CallOptions, Config, Error, HandlerError, MemNetwork, Responder, Rpc};
use tokio::sync::mpsc;

const LONG: Duration = Duration::from_secs(60);

/// A named peer on `net`, listening on `mem://NAME`.
async fn peer(net: &MemNetwork, name: &str) -> Rpc {
    peer_with(net, name, Config::default()).await
}

async fn peer_with(net: &MemNetwork, name: &str, config: Config) -> Rpc {
    let rpc = Rpc::with_config(config);
    rpc.set_name(name).unwrap();
    rpc.add_transport(net.transport());
    rpc.listen(&format!("mem://{name}")).await.unwrap();
    rpc
}

/// A client on `net` connected to `mem://server`.
async fn client(net: &MemNetwork, name: &str, server: &str) -> Rpc {
    let rpc = Rpc::new();
    rpc.set_name(name).unwrap();
    rpc.add_transport(net.transport());
    let up = rpc
        .connect(&format!("mem://{server}"))
        .unwrap()
        .established(LONG)
        .await;
    assert_eq!(up.unwrap(), server);
    rpc
}

#[tokio::test]
async fn seed_example_host_bar() {
    let net = MemNetwork::new();
    let host = peer(&net, "host").await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    host.define("bar", move |s: String| {
        let _ = seen_tx.send(s);
        async { Ok(42) }
    })
    .unwrap();
    let client = client(&net, "c", "host").await;
    let answer: i32 = client.call("host", "bar", "hello world").await.unwrap();
    assert_eq!(answer, 42);
    assert_eq!(seen.recv().await.unwrap(), "hello world");
}

#[tokio::test]
async fn names_default_to_unique_random_and_are_fixed_once_started() {
    let a = Rpc::new();
    let b = Rpc::new();
    assert_eq!(a.get_name().len(), 32);
    assert!(a.get_name().chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.get_name(), b.get_name());

    a.set_name("alpha").unwrap();
    assert_eq!(a.get_name(), "alpha");
    assert!(matches!(a.set_name(""), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        a.set_name(&"x".repeat(256)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(a.set_name("a\nb"), Err(Error::InvalidArgument(_))));

    a.add_transport(MemNetwork::new().transport());
    a.listen("mem://alpha").await.unwrap();
    assert!(matches!(a.set_name("beta"), Err(Error::InvalidArgument(_))));
    assert_eq!(a.get_name(), "alpha");
}

#[tokio::test]
async fn duplicate_names_are_refused_not_merged() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    server
        .define("who", |(): ()| async { Ok("server") })
        .unwrap();

    // A second live process named "x" is refused, and the first keeps working.
    let x1 = client(&net, "x", "server").await;
    let x2 = Rpc::new();
    x2.set_name("x").unwrap();
    x2.add_transport(net.transport());
    let refused = x2.connect("mem://server").unwrap().established(LONG).await;
    assert!(
        matches!(refused, Err(Error::DuplicateName { ref name }) if name == "x"),
        "{refused:?}"
    );
    let who: String = x1.call("server", "who", &()).await.unwrap();
    assert_eq!(who, "server");
    let peers = server.debug_info().peers;
    assert_eq!(peers.iter().filter(|p| p.name == "x").count(), 1);

    // A peer with the server's own name is refused too.
    let twin = Rpc::new();
    twin.set_name("server").unwrap();
    twin.add_transport(net.transport());
    let refused = twin
        .connect("mem://server")
        .unwrap()
        .established(LONG)
        .await;
    assert!(
        matches!(refused, Err(Error::DuplicateName { ref name }) if name == "server"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let net = MemNetwork::new();
    let mut config = Config::default();
    config.reconnect_max = Duration::from_millis(200);
    let server = peer(&net, "server").await;
    server.define("v", |(): ()| async { Ok(1u32) }).unwrap();
    let client = Rpc::with_config(config);
    client.set_name("client").unwrap();
    client.add_transport(net.transport());
    client
        .connect("mem://server")
        .unwrap()
        .established(LONG)
        .await
        .unwrap();
    assert_eq!(client.call::<u32>("server", "v", &()).await.unwrap(), 1);

    server.shutdown();
    server.wait_for_shutdown().await;
    drop(server);

    let restarted = peer(&net, "server").await;
    restarted.define("v", |(): ()| async { Ok(2u32) }).unwrap();
    // The call waits for the reconnect, well within its deadline.
    let v: u32 = client
        .call_with("server", "v", &(), CallOptions::default().timeout(LONG))
        .await
        .unwrap();
    assert_eq!(v, 2);
}

#[tokio::test]
async fn deferred_handlers_answer_later_from_any_thread() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    server
        .define_deferred("later", |responder: Responder<String>, x: u32| {
            std::thread::spawn(move || responder.ok(format!("done {x}")));
        })
        .unwrap();
    server
        .define_deferred("forgot", |responder: Responder<()>, (): ()| drop(responder))
        .unwrap();
    let client = client(&net, "client", "server").await;
    assert_eq!(
        client
            .call::<String>("server", "later", &5u32)
            .await
            .unwrap(),
        "done 5"
    );
    match client.call::<()>("server", "forgot", &()).await {
        Err(Error::Remote { message, .. }) => {
            assert!(message.contains("without answering"), "{message}")
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test]
async fn queues_hand_out_calls_one_at_a_time_or_in_batches() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    let mut queue = server.define_queue::<(u32, u32), u32>("sum").unwrap();
    let client = client(&net, "client", "server").await;

    let one = tokio::spawn({
        let c = client.clone();
        async move { c.call::<u32>("server", "sum", &(1u32, 2u32)).await }
    });
    let (responder, (a, b)) = queue.recv().await.unwrap();
    assert_eq!(responder.context().peer(), "client");
    responder.ok(a + b);
    assert_eq!(one.await.unwrap().unwrap(), 3);

    let calls: Vec<_> = (0..5u32)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.call::<u32>("server", "sum", &(i, 100u32)).await })
        })
        .collect();
    let mut answered = 0;
    while answered < 5 {
        let batch = queue.recv_batch(3).await;
        assert!((1..=3).contains(&batch.len()), "batch of {}", batch.len());
        for (responder, (a, b)) in batch {
            responder.ok(a + b);
            answered += 1;
        }
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u32 + 100);
    }
}

#[tokio::test]
async fn a_full_queue_answers_overloaded_and_loses_nothing() {
    let net = MemNetwork::new();
    let mut config = Config::default();
    config.queue_capacity = 2;
    let server = peer_with(&net, "server", config).await;
    let mut queue = server.define_queue::<u32, u32>("q").unwrap();
    let client = client(&net, "client", "server").await;
    let first: Vec<_> = (0..2u32)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.call::<u32>("server", "q", &i).await })
        })
        .collect();
    while queue.len() < 2 {
        tokio::task::yield_now().await;
    }
    match client.call::<u32>("server", "q", &9u32).await {
        Err(Error::Overloaded { peer, .. }) => assert_eq!(peer, "server"),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    for _ in 0..2 {
        let (r, x) = queue.recv().await.unwrap();
        r.ok(x * 10);
    }
    let mut got: Vec<u32> = Vec::new();
    for call in first {
        got.push(call.await.unwrap().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, vec![0, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handlers_run_on_a_bounded_pool() {
    let net = MemNetwork::new();
    let mut config = Config::default();
    config.max_blocking_threads = 2;
    let server = peer_with(&net, "server", config).await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    {
        let (running, most) = (running.clone(), most.clone());
        server
            .define_blocking("work", move |x: u32| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _ = started_tx.send(x);
                release_rx
                    .lock()
                    .unwrap()
                    .recv()
                    .map_err(HandlerError::from)?;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(x * 2)
            })
            .unwrap();
    }
    let client = client(&net, "client", "server").await;
    let calls: Vec<_> = (0..6u32)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.call::<u32>("server", "work", &i).await })
        })
        .collect();
    // Two handlers start; only then is any released, so the pool was full.
    started.recv().await.unwrap();
    started.recv().await.unwrap();
    for _ in 0..6 {
        release_tx.send(()).unwrap();
    }
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap().unwrap());
    }
    results.sort_unstable();
    assert_eq!(results, vec![0, 2, 4, 6, 8, 10]);
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than max_blocking_threads at once"
    );
}

#[tokio::test]
async fn handler_errors_and_panics_reach_the_caller_and_the_server_goes_on() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    server
        .define("fail", |(): ()| async {
            Err::<(), _>(HandlerError::new("no luck"))
        })
        .unwrap();
    server
        .define("parse", |s: String| async move { Ok(s.parse::<u32>()?) })
        .unwrap();
    server
        .define("boom", |(): ()| async {
            if true {
                panic!("kaboom");
            }
            Ok(())
        })
        .unwrap();
    server
        .define_blocking("boom_blocking", |(): ()| -> Result<(), HandlerError> {
            panic!("blocking kaboom")
        })
        .unwrap();
    server.define("ok", |(): ()| async { Ok(1u8) }).unwrap();
    let client = client(&net, "client", "server").await;

    let remote = |r: Result<(), Error>| match r {
        Err(Error::Remote { message, .. }) => message,
        other => panic!("expected a remote error, got {other:?}"),
    };
    assert_eq!(remote(client.call("server", "fail", &()).await), "no luck");
    let parse = client.call::<u32>("server", "parse", "x1").await;
    assert!(
        matches!(parse, Err(Error::Remote { ref message, .. }) if message.contains("invalid digit")),
        "{parse:?}"
    );
    assert!(remote(client.call("server", "boom", &()).await).contains("kaboom"));
    assert!(remote(client.call("server", "boom_blocking", &()).await).contains("blocking kaboom"));
    // Arguments of the wrong type are an error too.
    assert!(
        remote(client.call("server", "fail", &("not", "unit", 3u64)).await)
            .contains("bad arguments")
    );
    assert_eq!(client.call::<u8>("server", "ok", &()).await.unwrap(), 1);
    let info = server.debug_info();
    let boom = info.functions.iter().find(|f| f.name == "boom").unwrap();
    assert_eq!((boom.calls, boom.errors, boom.in_flight), (1, 1, 0));
}

/// Senders on several threads share one connection's outbox: whoever finds
/// nobody writing writes its frame at once, the others queue theirs. Each
/// sender's frames must still arrive in the order it sent them, and none may
/// be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_keep_their_order_and_lose_nothing() {
    const SENDERS: u32 = 4;
    const EACH: u32 = 2_000;
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let log2 = log.clone();
    server
        .define("seq", move |(sender, n): (u32, u32)| {
            let (log, done_tx) = (log2.clone(), done_tx.clone());
            async move {
                let mut log = log.lock().unwrap();
                log.push((sender, n));
                if log.len() == (SENDERS * EACH) as usize {
                    let _ = done_tx.send(());
                }
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let client = client(&net, "client", "server").await;
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let client = client.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    // Every fourth one a call, so that requests written by
                    // callers mix with one-way frames.
                    if n % 4 == 0 {
                        let () = client.call("server", "seq", &(sender, n)).await.unwrap();
                    } else {
                        client.notify("server", "seq", &(sender, n)).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    tokio::time::timeout(LONG, done_rx.recv())
        .await
        .expect("every frame arrives")
        .unwrap();
    let log = log.lock().unwrap();
    for sender in 0..SENDERS {
        let got: Vec<u32> = log
            .iter()
            .filter(|(s, _)| *s == sender)
            .map(|&(_, n)| n)
            .collect();
        assert_eq!(got, (0..EACH).collect::<Vec<_>>(), "sender {sender}");
    }
}

#[tokio::test]
async fn callback_and_blocking_call_forms() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    server
        .define("double", |x: u64| async move { Ok(x * 2) })
        .unwrap();
    let client = client(&net, "client", "server").await;

    let (tx, mut rx) = mpsc::unbounded_channel();
    client.call_callback("server", "double", &21u64, move |r: Result<u64, Error>| {
        let _ = tx.send(r);
    });
    assert_eq!(rx.recv().await.unwrap().unwrap(), 42);

    let c = client.clone();
    let blocking =
        tokio::task::spawn_blocking(move || c.call_blocking::<u64>("server", "double", &50u64));
    assert_eq!(blocking.await.unwrap().unwrap(), 100);
}

/// A server `server` listening on `mem://server` with `inc` (i64 + 1), a
/// client on the same network (not connected yet), and a runtime of their
/// own that the caller's thread is not in.
fn inc_server_and_client() -> (Rpc, Rpc, tokio::runtime::Runtime) {
    let net = MemNetwork::new();
    let server = Rpc::new();
    server.set_name("server").unwrap();
    server.add_transport(net.transport());
    server
        .define("inc", |x: i64| async move { Ok(x + 1) })
        .unwrap();
    let client = Rpc::new();
    client.add_transport(net.transport());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(server.listen("mem://server")).unwrap();
    (server, client, rt)
}

#[test]
fn works_from_plain_threads_without_a_runtime() {
    let (_server, client, _rt) = inc_server_and_client();
    client.connect("mem://server").unwrap();
    assert_eq!(
        client
            .call_blocking::<i64>("server", "inc", &41i64)
            .unwrap(),
        42
    );
}

/// Blocking calls take turns over a peer's connections as other calls do:
/// choosing where a blocking call runs takes no turn of the rotation.
#[test]
fn blocking_calls_rotate_over_connections() {
    let (_server, client, rt) = inc_server_and_client();
    rt.block_on(async {
        for _ in 0..2 {
            let up = client
                .connect("mem://server")
                .unwrap()
                .established(LONG)
                .await;
            assert_eq!(up.unwrap(), "server");
        }
    });
    let sent = |client: &Rpc| -> Vec<u64> {
        let info = client.debug_info();
        let peer = info.peers.iter().find(|p| p.name == "server").unwrap();
        peer.connections.iter().map(|c| c.frames_sent).collect()
    };
    let before = sent(&client);
    assert_eq!(before.len(), 2, "two connections to the server");
    for i in 0..20i64 {
        assert_eq!(
            client.call_blocking::<i64>("server", "inc", &i).unwrap(),
            i + 1
        );
    }
    let after = sent(&client);
    let carried: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        carried,
        [10, 10],
        "each connection carries every other call"
    );
}

#[tokio::test]
async fn calling_your_own_name_runs_locally() {
    let rpc = Rpc::new();
    rpc.set_name("me").unwrap();
    rpc.define("sq", |x: u32| async move { Ok(x * x) }).unwrap();
    assert_eq!(rpc.call::<u32>("me", "sq", &7u32).await.unwrap(), 49);
    assert!(matches!(
        rpc.call::<u32>("me", "nope", &7u32).await,
        Err(Error::NoSuchFunction { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_budget_travels_with_the_call() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    server
        .define_with_context("budget", |ctx, (): ()| async move {
            let left =
                ctx.deadline().expect("requests carry a deadline") - tokio::time::Instant::now();
            Ok(left.as_millis() as u64)
        })
        .unwrap();
    let client = client(&net, "client", "server").await;
    let opts = CallOptions::default().timeout(Duration::from_secs(5));
    let left: u64 = client
        .call_with("server", "budget", &(), opts)
        .await
        .unwrap();
    assert!(
        (4900..=5000).contains(&left),
        "the handler saw {left} ms left"
    );

    // The default timeout applies when the call sets none.
    client.set_timeout(Duration::from_secs(2));
    let left: u64 = client.call("server", "budget", &()).await.unwrap();
    assert!(
        (1900..=2000).contains(&left),
        "the handler saw {left} ms left"
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_peers_fail_with_no_such_peer_at_the_deadline() {
    let rpc = Rpc::new();
    rpc.add_transport(MemNetwork::new().transport());
    let opts = CallOptions::default().timeout(Duration::from_secs(3));
    match rpc.call_with::<()>("ghost", "f", &(), opts.clone()).await {
        Err(Error::NoSuchPeer { peer }) => assert_eq!(peer, "ghost"),
        other => panic!("expected NoSuchPeer, got {other:?}"),
    }
    assert!(matches!(
        rpc.notify_with("ghost", "f", &(), opts).await,
        Err(Error::NoSuchPeer { .. })
    ));
    // Waiting for the connection gives up at its timeout with the last
    // attempt's error; waiting for the first attempt does not wait.
    let mut connecting = rpc.connect("mem://nobody").unwrap();
    let started = tokio::time::Instant::now();
    let err = connecting
        .established(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(
        err.to_string().contains("nobody listens on mem://nobody"),
        "{err}"
    );
    let started = tokio::time::Instant::now();
    let err = rpc
        .connect("mem://nobody")
        .unwrap()
        .first_attempt(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        err.to_string().contains("nobody listens on mem://nobody"),
        "{err}"
    );
    assert!(matches!(rpc.connect("warp://x"), Err(Error::Transport(_))));
}

#[tokio::test]
async fn remote_shutdown_is_refused_unless_enabled() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    let client = client(&net, "client", "server").await;
    match client.shutdown_peer("server").await {
        Err(Error::Refused { peer, .. }) => assert_eq!(peer, "server"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(!server.is_shut_down());

    server.enable_remote_shutdown(true);
    client.shutdown_peer("server").await.unwrap();
    server.wait_for_shutdown().await;
    assert!(server.is_shut_down());
    assert!(matches!(
        server.call::<()>("server", "x", &()).await,
        Err(Error::ShutDown)
    ));
    assert!(matches!(
        server.listen("mem://again").await,
        Err(Error::ShutDown)
    ));
}

#[tokio::test]
async fn queues_end_when_the_engine_shuts_down() {
    let rpc = Rpc::new();
    let mut queue = rpc.define_queue::<u32, u32>("q").unwrap();
    rpc.shutdown();
    assert!(queue.recv().await.is_none());
    rpc.wait_for_shutdown().await;
}

#[tokio::test]
async fn definitions_are_checked() {
    let rpc = Rpc::new();
    rpc.define("f", |(): ()| async { Ok(()) }).unwrap();
    assert!(matches!(
        rpc.define("f", |(): ()| async { Ok(()) }),
        Err(Error::InvalidArgument(_))
    ));
    rpc.provider(3)
        .define("f", |(): ()| async { Ok(()) })
        .unwrap();
    assert!(matches!(
        rpc.define("__rpc.mine", |(): ()| async { Ok(()) }),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        rpc.define("", |(): ()| async { Ok(()) }),
        Err(Error::InvalidArgument(_))
    ));
    assert!(rpc.undefine("f", 0));
    assert!(!rpc.undefine("f", 0));
    assert!(matches!(
        rpc.call::<()>(&rpc.get_name(), "f", &()).await,
        Err(Error::NoSuchProvider { provider: 0, .. })
    ));
}

#[tokio::test]
async fn debug_info_reports_peers_connections_and_counters() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    server.define("f", |(): ()| async { Ok(()) }).unwrap();
    let client = client(&net, "client", "server").await;
    for _ in 0..3 {
        client.call::<()>("server", "f", &()).await.unwrap();
    }
    let info = server.debug_info();
    assert_eq!(info.name, "server");
    assert_eq!(info.transports, vec!["mem"]);
    assert_eq!(info.listening, vec!["mem://server"]);
    assert_eq!(info.peers.len(), 1);
    assert_eq!(info.peers[0].name, "client");
    assert_eq!(info.peers[0].connections.len(), 1);
    assert_eq!(info.peers[0].connections[0].transport, "mem");
    let f = info.functions.iter().find(|f| f.name == "f").unwrap();
    assert_eq!((f.calls, f.errors, f.in_flight), (3, 0, 0));
    let text = info.to_string();
    for needle in [
        "peer \"server\"",
        "client",
        "f[0]: 3 calls, 0 errors, 0 in flight",
        "mem://server",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert_eq!(client.debug_info().connecting, vec!["mem://server"]);
}

#[tokio::test]
async fn a_canceller_fails_its_calls_with_cancelled_and_stops_the_handlers() {
    let net = MemNetwork::new();
    let server = peer(&net, "server").await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
    server
        .define_with_context("wait", move |ctx, id: u32| {
            let _ = started_tx.send(id);
            // Reports when the handler ends, whether it returns or is dropped.
            let guard = OnDrop(Some(stopped_tx.clone()), id);
            async move {
                let _guard = guard;
                ctx.cancelled().await;
                Ok(())
            }
        })
        .unwrap();
    let client = client(&net, "client", "server").await;
    let canceller = rpc_core::Canceller::new();
    let calls: Vec<_> = (0..3u32)
        .map(|i| {
            let opts = CallOptions::default().timeout(LONG).cancel_with(&canceller);
            tokio::spawn(client.call_with::<()>("server", "wait", &i, opts))
        })
        .collect();
    for _ in 0..3 {
        started.recv().await.unwrap();
    }
    canceller.cancel();
    for call in calls {
        assert!(matches!(call.await.unwrap(), Err(Error::Cancelled)));
    }
    let mut ended: Vec<u32> = Vec::new();
    for _ in 0..3 {
        ended.push(stopped.recv().await.unwrap());
    }
    ended.sort_unstable();
    assert_eq!(ended, vec![0, 1, 2], "every handler was told to stop");
    assert!(canceller.is_cancelled());
    assert_eq!(client.debug_info().calls_in_flight, 0);
    // A call given a canceller that already fired fails at once.
    let opts = CallOptions::default().cancel_with(&canceller);
    assert!(matches!(
        client.call_with::<()>("server", "wait", &9u32, opts).await,
        Err(Error::Cancelled)
    ));
}

struct OnDrop(Option<mpsc::UnboundedSender<u32>>, u32);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(self.1);
        }
    }
}
