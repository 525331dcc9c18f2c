//! The rpc-core transport conformance suite, on TCP over loopback.

use std::sync::Arc;

use rpc_core::Transport;
use rpc_core::testing::Harness;
use rpc_transport_tcp::TcpTransport;

struct Tcp;

impl Harness for Tcp {
    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(TcpTransport::default())
    }

    fn listen_addr(&self) -> String {
        "tcp://127.0.0.1:0".to_owned()
    }
}

rpc_core::conformance_tests!(Tcp);
