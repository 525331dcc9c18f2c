//! The suite: which cases run, grouped so that the cases compared with each
//! other are measured side by side, and the servers they talk to.
//!
//! 1. `tcp 8 B`: the std and tokio floors, ours (default and never polling), tarpc
//!    and tonic, one 8 B round trip at a time.
//! 2. `tcp large`: the std floor and ours at 64 KiB and 1 MiB.
//! 3. `shm 8 B`: the raw spin and futex floors and ours on shared memory.
//! 4. `shm large`: ours on shared memory at 64 KiB, 1 MiB and 64 MiB, and
//!    memcpy of 64 MiB.
//! 5. `in flight`: 8 B calls with 64 in flight: ours on TCP and shared
//!    memory, tarpc and tonic.
//!
//! A case whose server or connection cannot be set up is reported as
//! skipped, with the reason, and the rest of the suite runs.

use std::time::Instant;

use anyhow::{Result, anyhow};
use rpc_core::Rpc;

use crate::child::{ServerKind, ServerProcess};
use crate::floors::{Memcpy, StdEcho, TokioEcho};
use crate::harness::Settings;
use crate::harness::{self, Chunk, Ctx, Latency, Pipelined, Rate, RoundTrip, Skipped};
use crate::machine::IdleMode;
use crate::ours::{self, Via};
use crate::report::Record;
use crate::shm_floor::{self, PingPong};
use crate::{tarpc_case, tonic_case};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The long-lived server processes of one idle mode, and our client
/// engines connected to them. A failure is kept as its message, reported
/// by every case that needed it.
struct Servers {
    tcp_std: Result<ServerProcess, String>,
    tcp_tokio: Result<ServerProcess, String>,
    tarpc: Result<ServerProcess, String>,
    tonic: Result<ServerProcess, String>,
    ours_tcp: Result<Rpc, String>,
    ours_tcp_nospin: Result<Rpc, String>,
    ours_shm: Result<Rpc, String>,
    /// Kept alive while `ours_*` are connected to them.
    _ours: Vec<ServerProcess>,
}

impl Servers {
    fn start(ctx: &Ctx<'_>) -> Self {
        let spawn = |kind| ServerProcess::spawn(kind).map_err(|e| format!("{e:#}"));
        let mut ours = Vec::new();
        let (ours_tcp, ours_tcp_nospin) = match spawn(ServerKind::OursTcp) {
            Ok(server) => {
                let words: Vec<String> = server.words().iter().map(|w| w.to_string()).collect();
                ours.push(server);
                let connect = |via, i: usize| {
                    let addr = words.get(i).ok_or("the ours-tcp server gave no address")?;
                    ours::connect(ctx.rt, via, addr).map_err(|e| format!("{e:#}"))
                };
                (connect(Via::Tcp, 0), connect(Via::TcpNoSpin, 1))
            }
            Err(e) => (Err(e.clone()), Err(e)),
        };
        let ours_shm = spawn(ServerKind::OursShm).and_then(|server| {
            let rpc = ours::connect(ctx.rt, Via::Shm, server.addr());
            ours.push(server);
            rpc.map_err(|e| format!("rpc-transport-shm unavailable: {e:#}"))
        });
        Self {
            tcp_std: spawn(ServerKind::TcpStd),
            tcp_tokio: spawn(ServerKind::TcpTokio),
            tarpc: spawn(ServerKind::Tarpc),
            tonic: spawn(ServerKind::Tonic),
            ours_tcp,
            ours_tcp_nospin,
            ours_shm,
            _ours: ours,
        }
    }
}

/// A group's cases as they are set up.
#[derive(Default)]
struct Group {
    latency: Vec<Latency>,
    rate: Vec<Rate>,
    skipped: Vec<Skipped>,
}

impl Group {
    /// Adds a latency case, or a skipped one if `make` fails.
    fn latency(
        &mut self,
        name: &str,
        chunk: Chunk,
        bytes: Option<usize>,
        make: impl FnOnce() -> Result<Box<dyn RoundTrip>>,
    ) {
        match make() {
            Ok(case) => self.latency.push(Latency {
                name: name.to_owned(),
                case,
                bytes: bytes.map(|b| b as u64),
                chunk,
            }),
            Err(e) => self.skip(name, &e),
        }
    }

    /// Adds a throughput case, or a skipped one if `make` fails.
    fn rate(&mut self, name: &str, make: impl FnOnce() -> Result<Box<dyn Pipelined>>) {
        match make() {
            Ok(case) => self.rate.push(Rate {
                name: name.to_owned(),
                case,
            }),
            Err(e) => self.skip(name, &e),
        }
    }

    fn skip(&mut self, name: &str, e: &anyhow::Error) {
        self.skipped.push(Skipped {
            name: name.to_owned(),
            why: format!("skipped: {e:#}"),
        });
    }

    fn run_latency(self, ctx: &Ctx<'_>, title: &str) -> Vec<Record> {
        harness::latency_group(ctx, title, self.latency, self.skipped)
    }

    fn run_rate(self, ctx: &Ctx<'_>, title: &str) -> Vec<Record> {
        harness::rate_group(ctx, title, self.rate, self.skipped)
    }
}

/// Turns a setup failure kept as a message back into an error.
fn up<T>(r: &Result<T, String>) -> Result<&T> {
    r.as_ref().map_err(|e| anyhow!("{e}"))
}

/// Runs the whole suite in the current idle mode.
pub(crate) fn run(settings: &Settings, mode: IdleMode, deadline: Instant) -> Result<Vec<Record>> {
    let rt = crate::child::runtime()?;
    let ctx = Ctx {
        rt: &rt,
        settings,
        mode,
        deadline,
    };
    let servers = Servers::start(&ctx);
    let mut records = Vec::new();
    records.extend(tcp_small(&ctx, &servers));
    records.extend(tcp_large(&ctx, &servers));
    records.extend(shm_small(&ctx, &servers));
    records.extend(shm_large(&ctx, &servers));
    records.extend(in_flight(&ctx, &servers));
    // Our client engines go before their servers, and the runtime last.
    drop(servers);
    drop(rt);
    Ok(records)
}

fn tcp_small(ctx: &Ctx<'_>, s: &Servers) -> Vec<Record> {
    let (rt, chunk) = (ctx.rt, ctx.settings.tcp_small);
    let mut g = Group::default();
    g.latency("floor/tcp-std/8B", chunk, None, || {
        Ok(Box::new(StdEcho::connect(up(&s.tcp_std)?.addr(), 8)?))
    });
    g.latency("floor/tcp-tokio/8B", chunk, None, || {
        Ok(Box::new(TokioEcho::connect(
            rt,
            up(&s.tcp_tokio)?.addr(),
            8,
        )?))
    });
    g.latency("ours/tcp/echo/8B", chunk, None, || {
        Ok(Box::new(ours::Echo::new(up(&s.ours_tcp)?, 8)))
    });
    g.latency("ours/tcp-nospin/echo/8B", chunk, None, || {
        Ok(Box::new(ours::Echo::new(up(&s.ours_tcp_nospin)?, 8)))
    });
    g.latency("tarpc/tcp/echo/8B", chunk, None, || {
        Ok(Box::new(tarpc_case::Client::connect(
            rt,
            up(&s.tarpc)?.addr(),
            8,
        )?))
    });
    g.latency("tonic/tcp/echo/8B", chunk, None, || {
        Ok(Box::new(tonic_case::Client::connect(
            rt,
            up(&s.tonic)?.addr(),
            8,
        )?))
    });
    g.run_latency(ctx, "tcp 8 B")
}

fn tcp_large(ctx: &Ctx<'_>, s: &Servers) -> Vec<Record> {
    let st = ctx.settings;
    let mut g = Group::default();
    for (label, size, chunk) in [("64KiB", 64 * KIB, st.medium), ("1MiB", MIB, st.big)] {
        g.latency(
            &format!("floor/tcp-std/{label}"),
            chunk,
            Some(2 * size),
            || Ok(Box::new(StdEcho::connect(up(&s.tcp_std)?.addr(), size)?)),
        );
        g.latency(
            &format!("ours/tcp/echo/{label}"),
            chunk,
            Some(2 * size),
            || Ok(Box::new(ours::Echo::new(up(&s.ours_tcp)?, size))),
        );
    }
    g.run_latency(ctx, "tcp large")
}

fn shm_small(ctx: &Ctx<'_>, s: &Servers) -> Vec<Record> {
    let chunk = ctx.settings.shm_small;
    let floor = shm_floor::Floor::start().map_err(|e| format!("{e:#}"));
    let mut g = Group::default();
    g.latency("floor/shm-spin/8B", chunk, None, || {
        let floor = up(&floor)?.clone();
        Ok(Box::new(PingPong::new(floor, shm_floor::SPIN_FOREVER)))
    });
    g.latency("floor/shm-futex/8B", chunk, None, || {
        Ok(Box::new(PingPong::new(up(&floor)?.clone(), 0)))
    });
    g.latency("ours/shm/echo/8B", chunk, None, || {
        Ok(Box::new(ours::Echo::new(up(&s.ours_shm)?, 8)))
    });
    g.run_latency(ctx, "shm 8 B")
}

fn shm_large(ctx: &Ctx<'_>, s: &Servers) -> Vec<Record> {
    let st = ctx.settings;
    let mut g = Group::default();
    for (label, size, chunk) in [
        ("64KiB", 64 * KIB, st.medium),
        ("1MiB", MIB, st.big),
        ("64MiB", 64 * MIB, st.huge),
    ] {
        g.latency(
            &format!("ours/shm/echo/{label}"),
            chunk,
            Some(2 * size),
            || Ok(Box::new(ours::Echo::new(up(&s.ours_shm)?, size))),
        );
    }
    g.latency("floor/memcpy/64MiB", st.huge, Some(64 * MIB), || {
        Ok(Box::new(Memcpy::new(64 * MIB)))
    });
    g.run_latency(ctx, "shm large")
}

fn in_flight(ctx: &Ctx<'_>, s: &Servers) -> Vec<Record> {
    let rt = ctx.rt;
    let mut g = Group::default();
    g.rate("ours/tcp/inflight64/8B", || {
        Ok(Box::new(ours::Echo::new(up(&s.ours_tcp)?, 8)))
    });
    g.rate("ours/shm/inflight64/8B", || {
        Ok(Box::new(ours::Echo::new(up(&s.ours_shm)?, 8)))
    });
    g.rate("tarpc/tcp/inflight64/8B", || {
        Ok(Box::new(tarpc_case::Client::connect(
            rt,
            up(&s.tarpc)?.addr(),
            8,
        )?))
    });
    g.rate("tonic/tcp/inflight64/8B", || {
        Ok(Box::new(tonic_case::Client::connect(
            rt,
            up(&s.tonic)?.addr(),
            8,
        )?))
    });
    g.run_rate(ctx, "in flight 64")
}
