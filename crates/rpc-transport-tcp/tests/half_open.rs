//! Connections that never say hello cost a server little, and give it all
//! back when they close: live heap bytes are counted by a global allocator
//! while hundreds of half-open connections are held, then dropped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{HandlerError, Rpc};
use rpc_transport_tcp::TcpTransport;

/// Counts the bytes allocated and not yet freed, process-wide.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's
// own arguments, and only adds bookkeeping on an atomic counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded as is; `ptr` and `layout` come from this
        // allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const HALF_OPEN: usize = 400;
/// What one connection that never says hello may hold on the server (about
/// 5 KiB measured): 1 KiB read and write buffers, the socket's registration
/// and the connection's task. It held 144 KiB before (64 KiB read, 16 KiB
/// scratch and 64 KiB write buffers, all made at once).
const PER_CONNECTION: isize = 12 << 10;

/// Waits until `ok(live())` or panics after a deadline far above need.
fn until(what: &str, ok: impl Fn(isize) -> bool) -> isize {
    let started = Instant::now();
    loop {
        let now = live();
        if ok(now) {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: {now} bytes live"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn half_open_connections_hold_little_and_give_it_back() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(async {
        let server = Rpc::new();
        server.set_name("server").unwrap();
        server.add_transport(TcpTransport::new());
        server
            .define("echo", |s: String| async move { Ok::<_, HandlerError>(s) })
            .unwrap();
        server
    });
    let addr = rt.block_on(server.listen("tcp://127.0.0.1:0")).unwrap();
    let port: u16 = addr
        .to_string()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // One real client first, so that whatever is made once (the runtime's
    // structures, lazy statics) is in the baseline.
    let client = rt.block_on(async {
        let client = Rpc::new();
        client.add_transport(TcpTransport::new());
        client
            .connect(&addr.to_string())
            .unwrap()
            .established(Duration::from_secs(30))
            .await
            .unwrap();
        client
    });
    let call = || {
        let r: String = rt.block_on(client.call("server", "echo", "x")).unwrap();
        assert_eq!(r, "x");
    };
    call();
    std::thread::sleep(Duration::from_millis(200));
    let base = live();

    let held: Vec<TcpStream> = (0..HALF_OPEN)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // The server has taken them all in once the growth stops.
    let mut last = live();
    let open = loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = live();
        if now - base > (HALF_OPEN as isize) * 1024 && (now - last).abs() < 4096 {
            break now;
        }
        last = now;
    };
    let per = (open - base) / HALF_OPEN as isize;
    eprintln!("{HALF_OPEN} half-open connections: {per} bytes each on the server");
    assert!(per < PER_CONNECTION, "{per} bytes per half-open connection");

    drop(held);
    // Once they are closed, the server gives back what they held (within
    // a small slack for buffers that grow once and stay).
    let after = until("after closing the half-open connections", |now| {
        now - base < 64 << 10
    });
    eprintln!(
        "after closing them: {} bytes above the baseline",
        after - base
    );
    call();
}
