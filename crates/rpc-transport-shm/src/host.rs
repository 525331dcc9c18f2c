//! [`host_key`]: whether two processes share a host and a network namespace.

use std::io;
use std::os::unix::fs::MetadataExt;

/// A key that two processes compare to learn whether they can reach each
/// other through this transport: equal keys mean the same boot of the same
/// kernel (`/proc/sys/kernel/random/boot_id`) and the same network namespace
/// (the inode of `/proc/self/ns/net`, which scopes the abstract Unix sockets
/// the listeners use).
///
/// The key looks like `6f1c…-9a2e/4026531840`, the same as
/// `rpc_core::transport::host_key()` computes for the engine's handshake. It says nothing about
/// mount or IPC namespaces, which the transport does not depend on (the
/// segment is an anonymous memfd passed over the socket), nor about users:
/// a peer of another uid is refused at connect time.
///
/// ```
/// let key = rpc_transport_shm::host_key()?;
/// assert_eq!(key, rpc_transport_shm::host_key()?);
/// # Ok::<_, std::io::Error>(())
/// ```
pub fn host_key() -> io::Result<String> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let net = std::fs::metadata("/proc/self/ns/net")?;
    Ok(format!("{}/{}", boot_id.trim(), net.ino()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_key_is_stable_and_has_both_parts() {
        let key = super::host_key().unwrap();
        assert_eq!(key, super::host_key().unwrap());
        let (boot, net) = key.split_once('/').unwrap();
        assert_eq!(boot.len(), 36, "a UUID: {boot}");
        assert!(net.parse::<u64>().is_ok(), "an inode: {net}");
        // The engine's own key, which peers exchange, is the same.
        assert_eq!(key, rpc_core::transport::host_key());
    }
}
