//! Batched handlers over the in-memory transport, on paused time: batch
//! sizes 1, B − 1, B and 3B; the partial-batch flush after the maximum
//! wait; per-caller arguments; structure mismatches; dynamic batching.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use rpc_core::{Error, HandlerError, MemNetwork, Rpc};
use rpc_tensor::{Batch, BatchConfig, PerCaller, Tensor, batch_queue, define_batched};
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(600);
const B: usize = 8;
const WAIT: Duration = Duration::from_millis(50);

async fn pair() -> (Rpc, Rpc) {
    let net = MemNetwork::new();
    let server = Rpc::new();
    server.set_name("server").unwrap();
    server.add_transport(net.transport());
    server.listen("mem://server").await.unwrap();
    let client = Rpc::new();
    client.set_name("client").unwrap();
    client.add_transport(net.transport());
    client.set_timeout(LONG);
    client
        .connect("mem://server")
        .unwrap()
        .established(LONG)
        .await
        .unwrap();
    (server, client)
}

/// Caller `i`'s input: `1 + i % 3` rows of 2 values, all `i`.
fn input(i: usize) -> Tensor {
    let rows = 1 + i % 3;
    Tensor::from_slice(&[rows, 2], &vec![i as f32; rows * 2]).unwrap()
}

/// Defines "double" (every value times 2, with its caller's tag echoed in
/// upper case) and returns the log of batches: the callers of each.
fn define_double(server: &Rpc, config: BatchConfig) -> Arc<Mutex<Vec<usize>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    define_batched(
        server,
        "double",
        config,
        move |batch: Batch<(Tensor, PerCaller<String>)>| {
            seen.lock().unwrap().push(batch.callers());
            let rows = batch.rows().to_vec();
            async move {
                let (x, tags) = batch.into_args();
                assert_eq!(x.shape()[0], rows.iter().sum::<usize>());
                let doubled: Vec<f32> = x.as_slice::<f32>()?.iter().map(|v| v * 2.0).collect();
                let tags: Vec<String> = tags.iter().map(|t| t.to_uppercase()).collect();
                Ok((Tensor::from_slice(x.shape(), &doubled)?, PerCaller(tags)))
            }
        },
    )
    .unwrap();
    log
}

/// Makes `n` concurrent calls of "double"; checks every answer is the
/// caller's own; returns how long they took.
async fn call_double(client: &Rpc, n: usize) -> Duration {
    let start = Instant::now();
    let calls = (0..n).map(|i| {
        let args = (input(i), format!("caller-{i}"));
        client.call::<(Tensor, String)>("server", "double", &args)
    });
    for (i, answer) in join_all(calls).await.into_iter().enumerate() {
        let (y, tag) = answer.unwrap();
        let x = input(i);
        assert_eq!(y.shape(), x.shape(), "caller {i} gets its own rows");
        assert!(
            y.as_slice::<f32>()
                .unwrap()
                .iter()
                .all(|&v| v == 2.0 * i as f32)
        );
        assert_eq!(tag, format!("CALLER-{i}"));
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn batches_of_1_b_minus_1_b_and_3b_callers() {
    let (server, client) = pair().await;
    let log = define_double(&server, BatchConfig::new(B, WAIT));
    for (n, batches, waited) in [
        (1, vec![1], true),
        (B - 1, vec![B - 1], true),
        (B, vec![B], false),
        (3 * B, vec![B, B, B], false),
    ] {
        log.lock().unwrap().clear();
        let took = call_double(&client, n).await;
        assert_eq!(*log.lock().unwrap(), batches, "{n} callers");
        // A partial batch waits exactly the maximum wait; full ones none.
        if waited {
            assert_eq!(took, WAIT, "{n} callers");
        } else {
            assert!(took < WAIT, "{n} callers took {took:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_flushed_after_the_maximum_wait() {
    let (server, client) = pair().await;
    let log = define_double(&server, BatchConfig::new(B, WAIT));
    let start = Instant::now();
    let first = tokio::spawn({
        let client = client.clone();
        async move { call_double(&client, 2).await }
    });
    // Two more calls 30 ms later join the same batch: its clock started
    // with the first call.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = call_double(&client, 3).await;
    assert_eq!(first.await.unwrap(), WAIT);
    assert_eq!(second, WAIT - Duration::from_millis(30));
    assert_eq!(start.elapsed(), WAIT);
    // call_double numbers its callers from 0, so the two groups overlap
    // in inputs but not in answers; one batch served all five.
    assert_eq!(*log.lock().unwrap(), vec![5]);
}

#[tokio::test(start_paused = true)]
async fn a_caller_whose_structure_differs_gets_an_error_alone() {
    let (server, client) = pair().await;
    define_batched(
        &server,
        "sum_rows",
        // All seven callers in one batch; the first defines its structure.
        BatchConfig::new(8, WAIT),
        |batch: Batch<(Tensor, Vec<Tensor>)>| async move {
            let (x, _extra) = batch.into_args();
            let sums: Vec<i32> = x
                .as_slice::<i32>()?
                .chunks(x.shape()[1])
                .map(|r| r.iter().sum())
                .collect();
            Ok(Tensor::from_slice(&[sums.len()], &sums)?)
        },
    )
    .unwrap();
    let ok = |v: i32| {
        (
            Tensor::from_slice(&[1, 3], &[v; 3]).unwrap(),
            vec![input(0)],
        )
    };
    let wide = (
        Tensor::from_slice(&[1, 4], &[1i32; 4]).unwrap(),
        vec![input(0)],
    );
    let float = (
        Tensor::from_slice(&[1, 3], &[1f32; 3]).unwrap(),
        vec![input(0)],
    );
    let longer = (
        Tensor::from_slice(&[1, 3], &[1i32; 3]).unwrap(),
        vec![input(0), input(0)],
    );
    let scalar = (Tensor::scalar(1i32), vec![input(0)]);
    let calls = [ok(1), wide, ok(2), float, longer, scalar, ok(3)]
        .map(|args| client.call::<Tensor>("server", "sum_rows", &args));
    let answers = join_all(calls).await;
    for (i, want) in [(0, 3), (2, 6), (6, 9)] {
        let got = answers[i].as_ref().unwrap();
        assert_eq!(got.as_slice::<i32>().unwrap(), &[want], "caller {i}");
    }
    for i in [1, 3, 4, 5] {
        match &answers[i] {
            Err(Error::Remote { message, .. }) => {
                assert!(message.contains("cannot stack"), "caller {i}: {message}")
            }
            other => panic!("caller {i}: expected a stacking error, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn handler_errors_and_wrong_row_counts_reach_every_caller() {
    let (server, client) = pair().await;
    define_batched(
        &server,
        "fails",
        BatchConfig::new(2, WAIT),
        |_: Batch<Tensor>| async { Err::<Tensor, _>(HandlerError::new("model on fire")) },
    )
    .unwrap();
    define_batched(
        &server,
        "one_row",
        BatchConfig::new(2, WAIT),
        |_: Batch<Tensor>| async { Ok(Tensor::zeros(rpc_tensor::DType::F32, &[1])?) },
    )
    .unwrap();
    for (function, expect) in [("fails", "model on fire"), ("one_row", "returned 1 rows")] {
        let calls = (0..2).map(|i| client.call::<Tensor>("server", function, &input(i)));
        for answer in join_all(calls).await {
            match answer {
                Err(Error::Remote { message, .. }) => {
                    assert!(message.contains(expect), "{message}")
                }
                other => panic!("expected {expect:?}, got {other:?}"),
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn dynamic_batching_takes_whatever_is_waiting() {
    let (server, client) = pair().await;
    let log = define_double(&server, BatchConfig::dynamic(4));
    let took = call_double(&client, 10).await;
    assert_eq!(took, Duration::ZERO, "dynamic batches never wait");
    let log = log.lock().unwrap().clone();
    assert_eq!(log.iter().sum::<usize>(), 10);
    assert!(log.iter().all(|&n| (1..=4).contains(&n)), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn a_batch_queue_is_drained_by_its_owner() {
    let (server, client) = pair().await;
    let mut queue =
        batch_queue::<(Tensor, PerCaller<u32>), (Tensor, PerCaller<Vec<u32>>)>(&server, "q")
            .unwrap();
    let owner = tokio::spawn(async move {
        let mut sizes = Vec::new();
        let mut served = 0;
        while served < 6 {
            let Some((batch, responder)) = queue.next(4).await else {
                break;
            };
            sizes.push(batch.callers());
            served += batch.callers();
            let (x, ids) = batch.into_args();
            responder.respond(Ok((x, PerCaller(ids.iter().map(|i| i * 10).collect()))));
        }
        sizes
    });
    let calls =
        (0..6u32).map(|i| client.call::<(Tensor, u32)>("server", "q", &(input(i as usize), i)));
    for (i, answer) in join_all(calls).await.into_iter().enumerate() {
        let (x, id) = answer.unwrap();
        assert_eq!(x, input(i));
        assert_eq!(id, 10 * i as u32);
    }
    let sizes = owner.await.unwrap();
    assert_eq!(sizes.iter().sum::<usize>(), 6);
    assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
}
