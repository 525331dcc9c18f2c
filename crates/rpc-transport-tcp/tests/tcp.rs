//! The TCP transport over loopback, through the public API only.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rpc_core::transport::{Address, ConnOptions, FrameSink, FrameStream, Listener, Transport};
use rpc_core::wire::{Frame, FrameCodec, FrameKind};
use rpc_core::{CodecError, TransportError};
use rpc_transport_tcp::{TcpConfig, TcpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Encoder;

type Half = (Box<dyn FrameSink>, Box<dyn FrameStream>);

/// A safety net, not a synchronisation: a broken test fails instead of hanging.
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the test took over a minute")
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn limit(max: u64) -> ConnOptions {
    ConnOptions::with_max_frame_len(max)
}

async fn listen(at: &str, opts: &ConnOptions) -> Box<dyn Listener> {
    TcpTransport::new().listen(&addr(at), opts).await.unwrap()
}

/// Connects to `listener` and accepts; returns (client, server) halves.
async fn pair(listener: &mut Box<dyn Listener>, client_opts: &ConnOptions) -> (Half, Half) {
    let client = TcpTransport::new()
        .connect(listener.local_addr(), client_opts)
        .await
        .unwrap();
    let server = listener.accept().await.unwrap();
    assert_eq!(client.info().transport, "tcp");
    assert_eq!(client.info().remote, listener.local_addr().as_str());
    assert_eq!(server.info().remote, client.info().local);
    assert_eq!(server.info().local, client.info().remote);
    (client.split(), server.split())
}

fn small_frame(i: u64) -> Frame {
    let mut f = Frame::new(FrameKind::OneWay, i);
    f.method = Some(format!("method.{}", i % 7).into());
    f.provider = (i % 3) as u16;
    f.body = Bytes::from(i.to_le_bytes().to_vec());
    if i.is_multiple_of(10) {
        f.deadline = Some(Duration::from_millis(i));
        f.attachments = vec![Bytes::from(vec![i as u8; (i % 100) as usize])];
    }
    f
}

fn big_frame() -> Frame {
    let pattern =
        |len: usize, seed: u8| Bytes::from((0..len).map(|i| (i as u8) ^ seed).collect::<Vec<u8>>());
    let mut f = Frame::new(FrameKind::Response, 424242);
    f.body = Bytes::from_static(b"three attachments");
    f.attachments = vec![pattern(1 << 20, 1), pattern(8 << 20, 2), Bytes::new()];
    f
}

/// Sends 1000 small frames and one large one from `tx`, then closes, while
/// `rx` checks that they arrive whole and in order, then end cleanly.
async fn exchange(mut tx: Box<dyn FrameSink>, mut rx: Box<dyn FrameStream>) {
    let send = async move {
        for i in 0..1000 {
            tx.feed(small_frame(i)).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx.send(big_frame()).await.unwrap();
        tx.close().await.unwrap();
    };
    let receive = async move {
        for i in 0..1000 {
            assert_eq!(rx.recv().await.unwrap(), Some(small_frame(i)), "frame {i}");
        }
        assert_eq!(rx.recv().await.unwrap(), Some(big_frame()));
        assert_eq!(
            rx.recv().await.unwrap(),
            None,
            "a clean close ends the stream"
        );
        assert!(matches!(rx.recv().await, Err(TransportError::Closed)));
    };
    tokio::join!(send, receive);
}

#[tokio::test]
async fn frames_arrive_whole_and_in_order_over_ipv4() {
    within(async {
        let opts = ConnOptions::default();
        let mut listener = listen("tcp://127.0.0.1:0", &opts).await;
        let bound = listener.local_addr().as_str().to_owned();
        assert!(
            bound.starts_with("tcp://127.0.0.1:") && !bound.ends_with(":0"),
            "{bound}"
        );
        let ((client_tx, _), (_, server_rx)) = pair(&mut listener, &opts).await;
        exchange(client_tx, server_rx).await;
    })
    .await;
}

#[tokio::test]
async fn frames_flow_both_ways_over_ipv6() {
    within(async {
        let opts = ConnOptions::default();
        let mut listener = match TcpTransport::new()
            .listen(&addr("tcp://[::1]:0"), &opts)
            .await
        {
            Ok(l) => l,
            Err(TransportError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AddrNotAvailable =>
            {
                eprintln!("skipped: this machine has no IPv6 loopback ({source})");
                return;
            }
            Err(e) => panic!("binding [::1]: {e}"),
        };
        let bound = listener.local_addr().as_str().to_owned();
        assert!(
            bound.starts_with("tcp://[::1]:") && !bound.ends_with(":0"),
            "{bound}"
        );
        let ((client_tx, client_rx), (server_tx, server_rx)) = pair(&mut listener, &opts).await;
        // Each direction carries its own stream of frames at the same time.
        tokio::join!(
            exchange(client_tx, server_rx),
            exchange(server_tx, client_rx)
        );
    })
    .await;
}

#[tokio::test]
async fn host_names_are_resolved() {
    within(async {
        let opts = ConnOptions::default();
        let mut listener = listen("tcp://127.0.0.1:0", &opts).await;
        let port = listener
            .local_addr()
            .as_str()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        // `localhost` may resolve to ::1 first, where nobody listens; the
        // transport then tries the next address.
        let client = TcpTransport::new()
            .connect(&addr(&format!("tcp://localhost:{port}")), &opts)
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        exchange(client.split().0, server.split().1).await;

        let by_name = listen("tcp://localhost:0", &opts).await;
        let bound = by_name.local_addr().as_str();
        assert!(
            bound.starts_with("tcp://127.0.0.1:") || bound.starts_with("tcp://[::1]:"),
            "{bound}"
        );
    })
    .await;
}

#[tokio::test]
async fn dropping_the_sink_ends_the_peer_stream_cleanly() {
    within(async {
        let opts = ConnOptions::default();
        let mut listener = listen("tcp://127.0.0.1:0", &opts).await;
        let ((mut tx, _client_rx), (_server_tx, mut rx)) = pair(&mut listener, &opts).await;
        tx.send(small_frame(1)).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.unwrap(), Some(small_frame(1)));
        assert_eq!(rx.recv().await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_frame_over_the_receivers_limit_closes_only_its_connection() {
    within(async {
        let mut listener = listen("tcp://127.0.0.1:0", &limit(1 << 20)).await;
        let ((mut bad_tx, mut bad_rx), (_bad_server_tx, mut bad_server_rx)) =
            pair(&mut listener, &limit(64 << 20)).await;
        let ((mut good_tx, mut good_rx), (mut good_server_tx, mut good_server_rx)) =
            pair(&mut listener, &limit(64 << 20)).await;

        let mut huge = Frame::new(FrameKind::Response, 1);
        huge.body = Bytes::from(vec![0; 2 << 20]);
        let len = huge.wire_len();
        // The sender's limit allows it; whether its write completes depends on
        // how much the kernel buffers before the receiver hangs up.
        let sender = tokio::spawn(async move {
            let _ = bad_tx.send(huge).await;
            bad_tx
        });
        match bad_server_rx.recv().await {
            Err(TransportError::FrameTooLarge { len: got, max }) => {
                assert_eq!((got, max), (len, 1 << 20))
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(matches!(
            bad_server_rx.recv().await,
            Err(TransportError::Closed)
        ));
        // The client learns that the server hung up.
        assert!(!matches!(bad_rx.recv().await, Ok(Some(_))));
        drop(sender.await.unwrap());

        // The other connection to the same listener carries on both ways.
        good_tx.send(small_frame(5)).await.unwrap();
        assert_eq!(good_server_rx.recv().await.unwrap(), Some(small_frame(5)));
        good_server_tx.send(small_frame(6)).await.unwrap();
        assert_eq!(good_rx.recv().await.unwrap(), Some(small_frame(6)));
    })
    .await;
}

#[tokio::test]
async fn a_sink_refuses_frames_over_its_own_limit_and_carries_on() {
    within(async {
        let mut listener = listen("tcp://127.0.0.1:0", &limit(64 << 20)).await;
        let ((mut tx, _), (_, mut rx)) = pair(&mut listener, &limit(1 << 20)).await;
        let mut huge = Frame::new(FrameKind::Response, 1);
        huge.attachments = vec![Bytes::from(vec![0; 1 << 20])];
        match tx.send(huge).await {
            Err(TransportError::FrameTooLarge { max, .. }) => assert_eq!(max, 1 << 20),
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        // A frame without a method is refused by the codec, also harmlessly.
        assert!(matches!(
            tx.send(Frame::new(FrameKind::Request, 2)).await,
            Err(TransportError::Codec(CodecError::MissingMethod(_)))
        ));
        tx.send(small_frame(3)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), Some(small_frame(3)));
    })
    .await;
}

#[tokio::test]
async fn garbage_is_a_codec_error_on_its_connection_only() {
    within(async {
        let opts = ConnOptions::default();
        let mut listener = listen("tcp://127.0.0.1:0", &opts).await;
        let ((mut good_tx, _), (_, mut good_rx)) = pair(&mut listener, &opts).await;

        let target = listener.local_addr().rest().to_owned();
        let mut raw = tokio::net::TcpStream::connect(target).await.unwrap();
        let (_garbage_tx, mut garbage_rx) = listener.accept().await.unwrap().split();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
            .await
            .unwrap();
        match garbage_rx.recv().await {
            Err(TransportError::Codec(CodecError::BadMagic(_))) => {}
            other => panic!("expected a codec error, got {other:?}"),
        }
        assert!(matches!(
            garbage_rx.recv().await,
            Err(TransportError::Closed)
        ));
        // The server hung up on the raw socket.
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest).await;
        assert!(rest.is_empty());

        good_tx.send(small_frame(9)).await.unwrap();
        assert_eq!(good_rx.recv().await.unwrap(), Some(small_frame(9)));
    })
    .await;
}

#[tokio::test]
async fn a_stream_ending_inside_a_frame_is_an_error() {
    within(async {
        let opts = ConnOptions::default();
        let mut listener = listen("tcp://127.0.0.1:0", &opts).await;
        let mut raw = tokio::net::TcpStream::connect(listener.local_addr().rest())
            .await
            .unwrap();
        let (_, mut rx) = listener.accept().await.unwrap().split();

        let mut bytes = BytesMut::new();
        let mut codec = FrameCodec::new(u64::MAX);
        codec.encode(small_frame(1), &mut bytes).unwrap();
        codec.encode(small_frame(2), &mut bytes).unwrap();
        let cut = bytes.len() - 3;
        raw.write_all(&bytes[..cut]).await.unwrap();
        raw.shutdown().await.unwrap();

        assert_eq!(rx.recv().await.unwrap(), Some(small_frame(1)));
        let left = cut - small_frame(1).wire_len() as usize;
        match rx.recv().await {
            Err(TransportError::Codec(CodecError::Truncated(n))) => assert_eq!(n, left),
            other => panic!("expected Truncated, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn bad_addresses_are_rejected() {
    within(async {
        let tcp = TcpTransport::with_config(
            TcpConfig::default().with_connect_timeout(Duration::from_secs(5)),
        );
        let opts = ConnOptions::default();
        for bad in [
            "mem://x",
            "tcp://localhost",
            "tcp://::1:80",
            "tcp://host:99999",
            "tcp://a/b:1",
        ] {
            match tcp.connect(&addr(bad), &opts).await {
                Err(TransportError::InvalidAddress { .. }) => {}
                other => panic!("{bad}: expected InvalidAddress, got {other:?}"),
            }
            assert!(matches!(
                tcp.listen(&addr(bad), &opts).await,
                Err(TransportError::InvalidAddress { .. })
            ));
        }

        // Nobody listens on a port that was just released.
        let released = listen("tcp://127.0.0.1:0", &opts)
            .await
            .local_addr()
            .clone();
        match tcp.connect(&released, &opts).await {
            Err(TransportError::Io {
                op: "connect",
                source,
            }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
            }
            other => panic!("expected a connect error, got {other:?}"),
        }

        // A port in use cannot be bound twice.
        let taken = listen("tcp://127.0.0.1:0", &opts).await;
        assert!(matches!(
            tcp.listen(taken.local_addr(), &opts).await,
            Err(TransportError::Io { op: "bind", .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn custom_socket_options_apply() {
    within(async {
        let config = TcpConfig::default()
            .with_nodelay(false)
            .with_send_buffer_size(Some(256 << 10))
            .with_recv_buffer_size(Some(256 << 10))
            .with_keepalive(None);
        let tcp = TcpTransport::with_config(config.clone());
        assert_eq!(tcp.config(), &config);
        let opts = ConnOptions::default();
        let mut listener = tcp.listen(&addr("tcp://127.0.0.1:0"), &opts).await.unwrap();
        let client = tcp.connect(listener.local_addr(), &opts).await.unwrap();
        let server = listener.accept().await.unwrap();
        let ((client_tx, client_rx), (server_tx, server_rx)) = (client.split(), server.split());
        tokio::join!(
            exchange(client_tx, server_rx),
            exchange(server_tx, client_rx)
        );
    })
    .await;
}

#[tokio::test]
async fn large_attachments_arrive_whole_and_64_byte_aligned() {
    within(async {
        let opts = ConnOptions::default();
        let mut listener = listen("tcp://127.0.0.1:0", &opts).await;
        let mut raw = tokio::net::TcpStream::connect(listener.local_addr().rest())
            .await
            .unwrap();
        let (_, mut rx) = listener.accept().await.unwrap().split();

        // Large and small attachments mixed, with a small frame after, all
        // trickling in small writes so that reads split them anywhere.
        let pattern = |len: usize, seed: u8| -> Bytes {
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect()
        };
        let mut big = Frame::new(FrameKind::Response, 9);
        big.body = pattern(300, 1);
        big.attachments = vec![
            pattern(10, 2),
            pattern(200 << 10, 3),
            pattern(64 << 10, 4),
            Bytes::new(),
            pattern((64 << 10) - 1, 5),
            pattern(1 << 20, 6),
        ];
        let mut bytes = BytesMut::new();
        let mut codec = FrameCodec::new(u64::MAX);
        codec.encode(big.clone(), &mut bytes).unwrap();
        codec.encode(small_frame(10), &mut bytes).unwrap();
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(7919) {
                raw.write_all(chunk).await.unwrap();
            }
            raw.shutdown().await.unwrap();
        });

        let got = rx.recv().await.unwrap().unwrap();
        assert_eq!(got, big);
        for a in got.attachments.iter().filter(|a| a.len() >= 64 << 10) {
            assert_eq!(a.as_ptr() as usize % 64, 0, "a large attachment is aligned");
        }
        assert_eq!(rx.recv().await.unwrap(), Some(small_frame(10)));
        assert_eq!(rx.recv().await.unwrap(), None);
        writer.await.unwrap();
    })
    .await;
}

/// A transport that polls before it sleeps asks for bursts in larger first
/// writes than one that never polls, whose peers may be asleep.
#[tokio::test]
async fn a_polling_transport_writes_bursts_in_larger_chunks() {
    let opts = ConnOptions::default();
    let mut listener = listen("tcp://127.0.0.1:0", &opts).await;
    for (spin, first) in [(Duration::ZERO, 16), (Duration::from_micros(50), 32)] {
        let transport = TcpTransport::with_config(TcpConfig::default().with_spin(spin));
        let at = listener.local_addr().clone();
        let (client, _accepted) =
            within(async { tokio::join!(transport.connect(&at, &opts), listener.accept()) }).await;
        let (sink, _stream) = client.unwrap().split();
        assert_eq!(sink.first_write(), first, "spin {spin:?}");
    }
    assert_eq!(rpc_core::transport::FIRST_WRITE, 16);
}
