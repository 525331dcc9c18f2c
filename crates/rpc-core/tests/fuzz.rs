//! Fuzz targets of rpc-core's untrusted input (`rpc_core::testing::fuzz`):
//!
//! - `frame_decoder`: bytes to [`FrameCodec`], through `decode` and
//!   `decode_head`, split at random points: arbitrary bytes, random headers
//!   behind a valid prefix, and valid encodings mutated (bytes flipped,
//!   inserted, deleted, cut; length and count fields overwritten). Only
//!   typed errors, no allocation beyond the frame limit, decoded frames
//!   within the limit, and valid encodings decode to what was encoded.
//! - `handshake`: arbitrary first frames (any kind; control frames with
//!   arbitrary and mutated hello bodies), and frames after a valid hello,
//!   sent to a live engine over the in-memory transport. The engine never
//!   panics, ends every connection it does not accept, and keeps serving a
//!   normal client.
//!
//! `codec_props.rs` keeps the plain properties (round trips however split)
//! and `codec_limits.rs` the exact size checks; this file adds budgets,
//! structured mutations, allocation bounds and the engine.
//!
//! `RPC_FUZZ_SECS=N` runs each target for `N` seconds.

use std::cell::Cell;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rpc_core::testing::fuzz::{self, frames, mutate};
use rpc_core::transport::{ConnOptions, FrameSink, FrameStream, Transport};
use rpc_core::wire::{Frame, FrameCodec, FrameKind, HEADER_LEN};
use rpc_core::{Address, CallOptions, CodecError, HandlerError, MemNetwork, Rpc, TransportError};
use tokio_util::codec::Decoder;

rpc_core::counting_allocator!();

/// The frame limit of the decoder target: small, so that a header lying
/// about its size is caught by the allocation bound.
const LIMIT: u64 = 64 << 10;

/// What one `decode` call may allocate: room for one frame within the
/// limit (a buffer may double while it grows) plus bookkeeping.
const DECODE_ALLOC_MAX: usize = 2 * LIMIT as usize + (16 << 10);

/// How a stream of bytes decoded.
#[derive(Debug, PartialEq)]
struct Decoded {
    frames: Vec<Frame>,
    error: Option<String>,
    /// Whether bytes were left that did not make a whole frame.
    leftover: bool,
    /// Whether the error is that the stream ended inside a frame.
    truncated: bool,
}

/// Feeds `bytes` to a decoder in chunks of the given sizes (cycled),
/// checking each call's allocation and error type, until the first error.
fn decode_chunked(bytes: &[u8], chunks: &[usize]) -> Result<Decoded, TestCaseError> {
    let mut codec = FrameCodec::new(LIMIT);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().copied().cycle();
    loop {
        let take = sizes.next().unwrap_or(usize::MAX).max(1).min(rest.len());
        buf.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        let eof = rest.is_empty();
        loop {
            let (got, allocated) = fuzz::allocated_by(|| {
                if eof {
                    codec.decode_eof(&mut buf)
                } else {
                    codec.decode(&mut buf)
                }
            });
            prop_assert!(
                allocated <= DECODE_ALLOC_MAX,
                "one decode allocated {allocated} bytes"
            );
            match got {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    check_typed(&e)?;
                    return Ok(Decoded {
                        frames,
                        truncated: matches!(e, TransportError::Codec(CodecError::Truncated(_))),
                        error: Some(e.to_string()),
                        leftover: true,
                    });
                }
            }
        }
        if eof {
            return Ok(Decoded {
                frames,
                error: None,
                leftover: !buf.is_empty(),
                truncated: false,
            });
        }
    }
}

/// Decodes all of `bytes` at once with `decode_head`, reading each payload
/// by the lengths the head announced, as a transport that places payloads
/// itself does.
fn decode_by_heads(bytes: &[u8]) -> Result<Decoded, TestCaseError> {
    let mut codec = FrameCodec::new(LIMIT);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    loop {
        let (got, allocated) = fuzz::allocated_by(|| codec.decode_head(&mut buf));
        prop_assert!(
            allocated <= DECODE_ALLOC_MAX,
            "one decode_head allocated {allocated} bytes"
        );
        let head = match got {
            Ok(Some(head)) => head,
            Ok(None) => {
                return Ok(Decoded {
                    frames,
                    error: None,
                    leftover: !buf.is_empty(),
                    truncated: false,
                });
            }
            Err(e) => {
                check_typed(&e)?;
                return Ok(Decoded {
                    frames,
                    error: Some(e.to_string()),
                    leftover: true,
                    truncated: false,
                });
            }
        };
        prop_assert!(head.payload_len() as u64 + head.head_len() as u64 <= LIMIT);
        if buf.len() < head.payload_len() {
            // The head is checked; its payload has not all arrived.
            return Ok(Decoded {
                frames,
                error: None,
                leftover: true,
                truncated: false,
            });
        }
        let body = buf.split_to(head.body_len()).freeze();
        let attachments = head
            .attachment_lens()
            .iter()
            .map(|&len| buf.split_to(len).freeze())
            .collect();
        frames.push(head.into_frame(body, attachments));
    }
}

/// Decode errors are the codec's own: a frame over the limit or a malformed
/// frame, never an I/O or backend error.
fn check_typed(e: &TransportError) -> Result<(), TestCaseError> {
    match e {
        TransportError::FrameTooLarge { len, max } => {
            prop_assert_eq!(*max, LIMIT);
            prop_assert!(len > max, "{e}");
        }
        TransportError::Codec(_) => {}
        other => prop_assert!(false, "untyped decode error: {other:?}"),
    }
    Ok(())
}

/// Bytes for the decoder, and whether they are a valid encoding of these
/// frames.
#[derive(Debug)]
struct DecoderInput {
    bytes: Vec<u8>,
    valid: Option<Vec<Frame>>,
}

fn decoder_input() -> impl Strategy<Value = DecoderInput> {
    let invalid = |bytes| DecoderInput { bytes, valid: None };
    let encoded = || {
        prop::collection::vec(frames::frame(), 1..6)
            .prop_map(|f| frames::encode_all(&f, LIMIT).to_vec())
    };
    // The first frame's fixed header: body length, attachment count and
    // the three name lengths; then its first attachment length.
    let fields = prop_oneof![
        mutate::field(20, 4),
        mutate::field(32, 2),
        mutate::field(34, 1),
        mutate::field(35, 1),
        mutate::field(36, 1),
        mutate::field(HEADER_LEN, 8),
        mutate::edit(),
    ];
    prop_oneof![
        1 => mutate::bytes(2048).prop_map(invalid),
        1 => (0u8..8, mutate::bytes(512)).prop_map(move |(kind, tail)| {
            // A valid magic and version reach the deeper checks.
            let mut bytes = vec![b'R', b'P', 1, kind];
            bytes.extend_from_slice(&tail);
            invalid(bytes)
        }),
        4 => mutate::mutations_of(encoded()).prop_map(invalid),
        2 => mutate::mutations_with(encoded(), fields).prop_map(invalid),
        2 => prop::collection::vec(frames::frame(), 0..6).prop_map(|f| DecoderInput {
            bytes: frames::encode_all(&f, LIMIT).to_vec(),
            valid: Some(f),
        }),
    ]
}

#[test]
fn fuzz_frame_decoder() {
    assert!(fuzz::counting(), "the counting allocator is installed");
    let strategy = (decoder_input(), prop::collection::vec(1usize..300, 1..8));
    fuzz::run("frame_decoder", 1000, strategy, |(input, chunks)| {
        let chunked = decode_chunked(&input.bytes, &chunks)?;
        for f in &chunked.frames {
            prop_assert!(f.wire_len() <= LIMIT, "{f:?}");
        }
        let whole = decode_chunked(&input.bytes, &[usize::MAX])?;
        // However the bytes arrive, the same frames and the same error.
        prop_assert_eq!(&chunked, &whole);
        let heads = decode_by_heads(&input.bytes)?;
        prop_assert_eq!(&heads.frames, &whole.frames);
        if whole.truncated {
            // Only `decode_eof` knows the stream ended.
            prop_assert!(heads.leftover, "{heads:?} vs {whole:?}");
        } else if whole.error.is_some() {
            prop_assert_eq!(&heads.error, &whole.error);
        } else if heads.error.is_some() {
            // `decode` checks a head only once its payload is there.
            prop_assert!(whole.leftover, "{heads:?} vs {whole:?}");
        }
        if let Some(frames) = input.valid {
            prop_assert_eq!(&whole.error, &None);
            prop_assert!(!whole.leftover);
            prop_assert_eq!(&whole.frames, &frames);
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// The handshake.

thread_local! {
    // Panics on this thread: the engine's tasks run here, on the test's
    // current-thread runtime, and a panic inside a task would otherwise
    // only end that task.
    static PANICS: Cell<u64> = const { Cell::new(0) };
}

/// Counts panics per thread, then reports them as usual.
fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = PANICS.try_with(|p| p.set(p.get() + 1));
            report(info);
        }));
    });
}

/// Far above the engine's handshake timeout (10 s), in paused time.
const SETTLE: Duration = Duration::from_secs(60);

/// A server engine, a client connected to it, and valid handshake bodies
/// captured from real engines.
struct Engines {
    net: MemNetwork,
    server: Rpc,
    client: Rpc,
    /// A hello from an engine named `prober`.
    hello: Bytes,
    /// The server's own hello.
    server_hello: Bytes,
    /// The server's welcome.
    welcome: Bytes,
}

async fn engine(net: &MemNetwork, name: &str) -> Rpc {
    let rpc = Rpc::new();
    rpc.set_name(name).unwrap();
    rpc.add_transport(net.transport_on(name));
    rpc
}

async fn engines() -> Engines {
    let net = MemNetwork::new();
    let server = engine(&net, "server").await;
    server.listen("mem://server").await.unwrap();
    server
        .define("echo", |s: String| async move { Ok::<_, HandlerError>(s) })
        .unwrap();
    let client = engine(&net, "client").await;
    client
        .connect("mem://server")
        .unwrap()
        .established(SETTLE)
        .await
        .unwrap();

    // A real engine's hello, received by a raw listener.
    let probe = net.transport_on("probe");
    let opts = ConnOptions::default();
    let mut listener = probe
        .listen(&Address::parse("mem://probe").unwrap(), &opts)
        .await
        .unwrap();
    let prober = engine(&net, "prober").await;
    let _connecting = prober.connect("mem://probe").unwrap();
    let (_tx, mut rx) = listener.accept().await.unwrap().split();
    let hello = rx.recv().await.unwrap().unwrap();
    assert_eq!(hello.kind, FrameKind::Control);
    prober.shutdown();

    // The server answers it with its own hello, then a welcome.
    let (mut tx, mut rx) = raw_connection(&net).await;
    tx.send(hello.clone()).await.unwrap();
    let server_hello = rx.recv().await.unwrap().unwrap();
    let welcome = rx.recv().await.unwrap().unwrap();
    assert_eq!(
        (server_hello.kind, welcome.kind),
        (FrameKind::Control, FrameKind::Control)
    );
    assert_ne!(server_hello.body, welcome.body);
    tx.close().await.unwrap();
    while let Ok(Some(_)) = rx.recv().await {}
    Engines {
        net,
        server,
        client,
        hello: hello.body,
        server_hello: server_hello.body,
        welcome: welcome.body,
    }
}

async fn raw_connection(net: &MemNetwork) -> (Box<dyn FrameSink>, Box<dyn FrameStream>) {
    net.transport_on("fuzzer")
        .connect(
            &Address::parse("mem://server").unwrap(),
            &ConnOptions::default(),
        )
        .await
        .unwrap()
        .split()
}

fn control(body: Vec<u8>) -> Frame {
    let mut f = Frame::new(FrameKind::Control, 0);
    f.body = body.into();
    f
}

/// What a fuzzing peer sends: a first frame, then a few more.
fn handshake_input(e: &Engines) -> impl Strategy<Value = Vec<Frame>> {
    let hellos = || {
        prop_oneof![
            Just(e.hello.to_vec()),
            Just(e.server_hello.to_vec()),
            Just(e.welcome.to_vec()),
        ]
    };
    let valid_hello = control(e.hello.to_vec());
    let first = prop_oneof![
        2 => frames::frame(),
        2 => mutate::bytes(64).prop_map(control),
        4 => mutate::mutations_of(hellos()).prop_map(control),
        1 => Just(valid_hello),
    ];
    let later = prop_oneof![
        3 => frames::frame(),
        1 => mutate::bytes(16).prop_map(control),
        1 => mutate::mutations_of(hellos()).prop_map(control),
    ];
    (first, prop::collection::vec(later, 0..4)).prop_map(|(first, mut later)| {
        later.insert(0, first);
        later
    })
}

/// The peers of the server, but the client, with live connections.
fn strangers(server: &Rpc) -> Vec<String> {
    server
        .debug_info()
        .peers
        .into_iter()
        .filter(|p| p.name != "client" && !p.connections.is_empty())
        .map(|p| p.name)
        .collect()
}

/// Sends `frames` on a fresh raw connection and waits for the server to end
/// it, or to accept it (then ends it from this side). Returns whether the
/// server accepted it.
async fn send_and_settle(e: &Engines, frames: Vec<Frame>) -> Result<bool, TestCaseError> {
    let (mut tx, mut rx) = raw_connection(&e.net).await;
    for f in frames {
        // The server may have closed already.
        if tx.feed(f).await.is_err() {
            break;
        }
    }
    let _ = tx.flush().await;
    let welcome = e.welcome.clone();
    let mut accepted = false;
    let ended = tokio::time::timeout(SETTLE, async {
        loop {
            match rx.recv().await {
                Ok(Some(f)) => {
                    if f.kind == FrameKind::Control && f.body == welcome {
                        return true;
                    }
                }
                Ok(None) | Err(_) => return false,
            }
        }
    })
    .await;
    match ended {
        Ok(true) => accepted = true,
        Ok(false) => {}
        Err(_) => {
            // Neither closed nor welcomed: only a registered peer may stay.
            prop_assert!(
                !strangers(&e.server).is_empty(),
                "the server neither ended nor accepted the connection"
            );
            accepted = true;
        }
    }
    if accepted {
        let _ = tx.close().await;
        let end =
            tokio::time::timeout(SETTLE, async { while let Ok(Some(_)) = rx.recv().await {} })
                .await;
        prop_assert!(end.is_ok(), "the server kept a closed connection open");
    }
    drop((tx, rx));
    // Let the server's side of the connection finish its clean-up.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let left = strangers(&e.server);
    prop_assert!(left.is_empty(), "connections left on the server: {left:?}");
    Ok(accepted)
}

#[test]
fn fuzz_handshake() {
    count_panics();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let e = rt.block_on(engines());
    let strategy = handshake_input(&e);
    fuzz::run("handshake", 256, strategy, |frames| {
        rt.block_on(async {
            send_and_settle(&e, frames).await?;
            let echoed: Result<String, _> = e
                .client
                .call_with(
                    "server",
                    "echo",
                    "still here",
                    CallOptions::default().timeout(Duration::from_secs(5)),
                )
                .await;
            prop_assert_eq!(echoed.as_deref().ok(), Some("still here"), "{:?}", echoed);
            Ok(())
        })?;
        let panics = PANICS.with(Cell::get);
        prop_assert_eq!(panics, 0, "the engine panicked");
        Ok(())
    });
}

/// The captured hello is what a fresh engine accepts: the handshake target's
/// valid seed really reaches past the handshake.
#[test]
fn a_valid_hello_is_accepted_and_a_bad_one_ends_the_connection() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let e = engines().await;
        let ok = |r: Result<bool, TestCaseError>| r.unwrap_or_else(|err| panic!("{err}"));
        assert!(ok(
            send_and_settle(&e, vec![control(e.hello.to_vec())]).await
        ));
        assert!(!ok(send_and_settle(&e, vec![control(vec![0xff; 9])]).await));
        assert!(!ok(send_and_settle(
            &e,
            vec![Frame::new(FrameKind::Response, 1)]
        )
        .await));
    });
}
