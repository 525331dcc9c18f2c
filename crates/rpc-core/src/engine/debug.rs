//! [`DebugInfo`]: what `Rpc::debug_info` reports.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Inner;
use super::handler::lock;

/// A snapshot of an engine's state. `Display` prints a readable report.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DebugInfo {
    /// The engine's name.
    pub name: String,
    /// The schemes of the transports added.
    pub transports: Vec<String>,
    /// The addresses listened on.
    pub listening: Vec<String>,
    /// The addresses `connect` keeps connections to.
    pub connecting: Vec<String>,
    /// Known peers and their live connections.
    pub peers: Vec<PeerDebug>,
    /// Outgoing calls waiting for an answer.
    pub calls_in_flight: usize,
    /// Registered functions and their counters.
    pub functions: Vec<FunctionDebug>,
    /// Frames relayed for other peers (see [`Router`](crate::Router)).
    pub relayed: u64,
    /// Whether shutdown has begun.
    pub shut_down: bool,
}

/// One peer in [`DebugInfo`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PeerDebug {
    /// The peer's name.
    pub name: String,
    /// The random id of the peer's process.
    pub incarnation: u128,
    /// Its live connections.
    pub connections: Vec<ConnectionDebug>,
    /// How the transport policy chooses among its transports, if it does.
    pub transport_choice: Option<String>,
}

/// One connection in [`DebugInfo`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionDebug {
    /// The transport's scheme.
    pub transport: String,
    /// This side's address.
    pub local: String,
    /// The other side's address.
    pub remote: String,
    /// How long it has been up.
    pub age: Duration,
    /// Whether the transport is host-local; calls prefer such connections.
    pub host_local: bool,
    /// Frames sent on it.
    pub frames_sent: u64,
    /// Our calls on it whose answer their caller received in place, while
    /// spinning outside any task (see
    /// [`Config::caller_spin`](crate::Config::caller_spin)).
    pub answered_in_place: u64,
}

/// One function in [`DebugInfo`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FunctionDebug {
    /// The function's name.
    pub name: String,
    /// Its provider id.
    pub provider: u16,
    /// Calls received.
    pub calls: u64,
    /// Calls answered with an error.
    pub errors: u64,
    /// Calls running now.
    pub in_flight: u64,
}

pub(crate) fn collect(inner: &Inner) -> DebugInfo {
    let transports = inner.transport_schemes();
    let policy = inner.policy();
    let peers = inner
        .peers
        .snapshot()
        .into_iter()
        .map(|(name, incarnation, conns)| PeerDebug {
            transport_choice: policy.as_ref().and_then(|p| p.describe(&name)),
            name: name.to_string(),
            incarnation,
            connections: conns
                .iter()
                .map(|c| ConnectionDebug {
                    transport: c.info.transport.to_owned(),
                    local: c.info.local.clone(),
                    remote: c.info.remote.clone(),
                    age: c.opened.elapsed(),
                    host_local: c.local,
                    frames_sent: c.frames_sent.load(Ordering::Relaxed),
                    answered_in_place: c.inbox.answered_in_place(),
                })
                .collect(),
        })
        .collect();
    let mut functions: Vec<FunctionDebug> = inner
        .registry
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .flat_map(|(name, providers)| {
            providers.iter().map(move |(provider, reg)| FunctionDebug {
                name: name.to_string(),
                provider: *provider,
                calls: reg.counters.calls.load(Ordering::Relaxed),
                errors: reg.counters.errors.load(Ordering::Relaxed),
                in_flight: reg.counters.in_flight.load(Ordering::Relaxed),
            })
        })
        .collect();
    functions.sort_by(|a, b| (&a.name, a.provider).cmp(&(&b.name, b.provider)));
    DebugInfo {
        name: inner.name().to_string(),
        transports,
        listening: inner.listening(),
        connecting: lock(&inner.connecting)
            .iter()
            .map(|d| d.addr.to_string())
            .collect(),
        peers,
        calls_in_flight: lock(&inner.pending).len(),
        functions,
        relayed: inner.relayed.load(Ordering::Relaxed),
        shut_down: inner.is_shut(),
    }
}

impl fmt::Display for DebugInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "peer {:?}{}",
            self.name,
            if self.shut_down { " (shut down)" } else { "" }
        )?;
        writeln!(f, "  transports: {}", self.transports.join(", "))?;
        writeln!(f, "  listening:  {}", self.listening.join(", "))?;
        writeln!(f, "  connecting: {}", self.connecting.join(", "))?;
        writeln!(f, "  calls in flight: {}", self.calls_in_flight)?;
        if self.relayed > 0 {
            writeln!(f, "  frames relayed: {}", self.relayed)?;
        }
        writeln!(f, "  peers ({}):", self.peers.len())?;
        for p in &self.peers {
            writeln!(
                f,
                "    {} (incarnation {:032x}), {} connection(s)",
                p.name,
                p.incarnation,
                p.connections.len()
            )?;
            for c in &p.connections {
                writeln!(
                    f,
                    "      {} {} -> {} up {:.1?}, {} frames sent, {} answers received in place{}",
                    c.transport,
                    c.local,
                    c.remote,
                    c.age,
                    c.frames_sent,
                    c.answered_in_place,
                    if c.host_local { ", host-local" } else { "" }
                )?;
            }
            if let Some(choice) = &p.transport_choice {
                writeln!(f, "      transport choice: {choice}")?;
            }
        }
        writeln!(f, "  functions ({}):", self.functions.len())?;
        for func in &self.functions {
            writeln!(
                f,
                "    {}[{}]: {} calls, {} errors, {} in flight",
                func.name, func.provider, func.calls, func.errors, func.in_flight
            )?;
        }
        Ok(())
    }
}
