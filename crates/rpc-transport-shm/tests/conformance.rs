//! The rpc-core transport conformance suite, on shared memory between two
//! engines in one process.

use std::sync::Arc;

use rpc_core::Transport;
use rpc_core::testing::Harness;
use rpc_transport_shm::ShmTransport;

struct Shm;

impl Harness for Shm {
    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(ShmTransport::default())
    }

    fn listen_addr(&self) -> String {
        "shm://0".to_owned()
    }
}

rpc_core::conformance_tests!(Shm);
