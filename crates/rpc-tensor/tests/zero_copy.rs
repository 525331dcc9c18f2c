//! Zero-copy: a 64 MiB tensor is never copied into a body. Over TCP the
//! only allocation of its size is the receiver's aligned buffer, which the
//! kernel reads into and the received tensor shares; over shared memory it
//! is copied once, into the arena, and read in place. Allocations are
//! counted by a global allocator; the tests take a lock so that they do
//! not count each other's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::Rpc;
use rpc_core::body;
use rpc_core::transport::{Address, ConnOptions, Transport};
use rpc_core::wire::{Frame, FrameKind};
use rpc_tensor::{Tensor, realigned_bytes};
use rpc_transport_shm::ShmTransport;
use rpc_transport_tcp::TcpTransport;

struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator unchanged; the
// counter is only a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: u64 = 1 << 20;
const LONG: Duration = Duration::from_secs(60);

fn allocated() -> u64 {
    ALLOCATED.load(Ordering::SeqCst)
}

fn tensor_64mib() -> Tensor {
    let n = 16 << 20;
    let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
    Tensor::from_slice(&[n / 1024, 1024], &values).unwrap()
}

/// Sends `t` in one frame from a client to a server connection of
/// `transport`; returns the received frame and the bytes allocated while
/// it travelled.
async fn send_frame(transport: &dyn Transport, at: &str, t: &Tensor) -> (Frame, u64) {
    let opts = ConnOptions::default();
    let mut listener = transport
        .listen(&Address::parse(at).unwrap(), &opts)
        .await
        .unwrap();
    let client = transport
        .connect(listener.local_addr(), &opts)
        .await
        .unwrap();
    let server = listener.accept().await.unwrap();
    let (mut tx, _rx) = client.split();
    let (_tx, mut rx) = server.split();

    let before = allocated();
    let (b, atts) = body::encode(t).unwrap();
    assert!(
        b.len() < 64,
        "the body holds only metadata: {} bytes",
        b.len()
    );
    assert_eq!(atts.len(), 1);
    assert_eq!(
        atts[0].as_ptr(),
        t.data().as_ptr(),
        "sending shares the tensor"
    );
    let mut frame = Frame::new(FrameKind::Response, 1);
    frame.body = b;
    frame.attachments = atts;
    let send = tokio::spawn(async move {
        tx.send(frame).await.unwrap();
        tx
    });
    let got = rx.recv().await.unwrap().unwrap();
    let allocated = allocated() - before;
    let _tx = send.await.unwrap();
    (got, allocated)
}

/// Decodes the received tensor and checks that it shares the received
/// attachment, aligned, without a realigning copy.
fn check_received(frame: &Frame, sent: &Tensor) {
    let realigned = realigned_bytes();
    let got: Tensor = body::decode(&frame.body, &frame.attachments).unwrap();
    assert_eq!(
        got.data().as_ptr(),
        frame.attachments[0].as_ptr(),
        "no copy on receipt"
    );
    assert!(got.is_aligned());
    assert_eq!(realigned_bytes(), realigned);
    assert_eq!(&got, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64mib_tensor_over_tcp_is_read_straight_into_its_buffer() {
    let _serial = SERIAL.lock().await;
    let t = tensor_64mib();
    let (frame, allocated) = send_frame(&TcpTransport::new(), "tcp://127.0.0.1:0", &t).await;
    // The receiver's buffer (64 MiB + 63) and little else: a copy into a
    // body, or through a read buffer, would allocate another 64 MiB.
    assert!(
        (64 * MIB..66 * MIB).contains(&allocated),
        "allocated {allocated} bytes"
    );
    check_received(&frame, &t);

    // Through the engine: an echo, and still no realigning copy.
    let server = Rpc::new();
    server.set_name("server").unwrap();
    server.add_transport(TcpTransport::new());
    server
        .define("echo", |t: Tensor| async move { Ok(t) })
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Rpc::new();
    client.add_transport(TcpTransport::new());
    client
        .connect(addr.as_str())
        .unwrap()
        .established(LONG)
        .await
        .unwrap();
    let realigned = realigned_bytes();
    let back: Tensor = client.call("server", "echo", &t).await.unwrap();
    assert_eq!(back, t);
    assert!(back.is_aligned());
    assert_eq!(realigned_bytes(), realigned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64mib_tensor_over_shm_is_copied_once_into_the_arena() {
    let _serial = SERIAL.lock().await;
    let t = tensor_64mib();
    let (frame, allocated) = send_frame(&ShmTransport::new(), "shm://0", &t).await;
    // The one copy goes into the shared arena, not the heap; the receiver
    // reads it in place.
    assert!(allocated < MIB, "allocated {allocated} bytes");
    check_received(&frame, &t);
}
