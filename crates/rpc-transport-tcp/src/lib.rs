//! The TCP transport for `rpc-core` (being implemented).
