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

/// The same suite with receivers that never poll before they sleep
/// (`TcpConfig::spin` zero; the default polls): polling must not change any
/// behaviour.
mod not_polling {
    use std::sync::Arc;
    use std::time::Duration;

    use rpc_core::Transport;
    use rpc_core::testing::Harness;
    use rpc_transport_tcp::{TcpConfig, TcpTransport};

    struct SleepingTcp;

    impl Harness for SleepingTcp {
        fn transport(&self) -> Arc<dyn Transport> {
            let config = TcpConfig::default().with_spin(Duration::ZERO);
            Arc::new(TcpTransport::with_config(config))
        }

        fn listen_addr(&self) -> String {
            "tcp://127.0.0.1:0".to_owned()
        }
    }

    rpc_core::conformance_tests!(SleepingTcp);
}
