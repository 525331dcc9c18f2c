//! The transport conformance suite on the in-memory transport.

rpc_core::conformance_tests!(rpc_core::testing::MemHarness::new());
