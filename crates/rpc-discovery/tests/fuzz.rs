//! Fuzz targets of membership input (`rpc_core::testing::fuzz`):
//!
//! - `peer_record`: bytes decoded as a [`PeerRecord`] the way record
//!   broadcasts are: arbitrary bytes and valid records mutated (string and
//!   collection lengths overwritten, bytes flipped, inserted, cut). Typed
//!   errors, allocation proportional to the input, and
//!   `from_wire(to_wire(r)) == r`.
//! - `swim_packets`: arbitrary bytes, and valid SWIM packets (from a foca
//!   instance of the test's own, carrying arbitrary and mutated records)
//!   mutated, sent to a node's `__disc.swim` in a simulated three-node
//!   cluster. The node never panics, keeps answering calls, and keeps every
//!   real member alive in its view.
//!
//! `RPC_FUZZ_SECS=N` runs each target for `N` seconds.

mod common;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

use foca::{AccumulatingRuntime, BroadcastHandler, Foca, Invalidates, Member, PostcardCodec};
use proptest::prelude::*;
use rand_foca::SeedableRng;
use rpc_core::testing::fuzz::{self, mutate};
use rpc_core::{Blob, CallOptions, Rpc};
use rpc_discovery::{DiscoveryError, GroupTag, NodeId, PeerRecord};

rpc_core::counting_allocator!();

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["n0", "n1", "n2", "ghost", ""]).prop_map(String::from),
        1 => "\\PC{0,24}",
    ]
}

fn record() -> impl Strategy<Value = PeerRecord> {
    (
        (name(), any::<u64>(), any::<u16>()),
        any::<u64>(),
        prop::collection::vec("mem://[a-z0-9]{0,12}", 0..3),
        "[a-f0-9/]{0,20}",
        prop::collection::vec((name(), any::<u16>()), 0..4),
        prop::collection::btree_set(name(), 0..3),
        prop::collection::btree_set(name(), 0..3),
        prop::collection::btree_set(
            (name(), name(), any::<u32>(), any::<u32>()).prop_map(
                |(group, role, rank, world_size)| GroupTag {
                    group,
                    role,
                    rank,
                    world_size,
                },
            ),
            0..2,
        ),
    )
        .prop_map(
            |(
                (name, incarnation, bump),
                version,
                addresses,
                host_key,
                functions,
                resources,
                links,
                groups,
            )| {
                PeerRecord {
                    id: NodeId {
                        name,
                        incarnation,
                        bump,
                    },
                    version,
                    addresses,
                    host_key,
                    functions,
                    resources,
                    links,
                    groups,
                }
            },
        )
}

fn wire(r: &PeerRecord) -> Vec<u8> {
    r.to_wire().unwrap()
}

#[derive(Debug)]
enum RecordInput {
    Bytes(Vec<u8>),
    Valid(PeerRecord),
}

#[test]
fn fuzz_peer_record() {
    assert!(fuzz::counting(), "the counting allocator is installed");
    let input = prop_oneof![
        1 => mutate::bytes(256).prop_map(RecordInput::Bytes),
        4 => mutate::mutations_of(record().prop_map(|r| wire(&r))).prop_map(RecordInput::Bytes),
        1 => record().prop_map(RecordInput::Valid),
    ];
    fuzz::run("peer_record", 1000, input, |input| {
        match input {
            RecordInput::Bytes(bytes) => {
                let (got, allocated) = fuzz::allocated_by(|| PeerRecord::from_wire(&bytes));
                // Strings and collections: at most a few times the bytes.
                let limit = 64 * bytes.len() + (16 << 10);
                prop_assert!(
                    allocated <= limit,
                    "{} bytes allocated {allocated}",
                    bytes.len()
                );
                match got {
                    Ok(r) => prop_assert_eq!(PeerRecord::from_wire(&wire(&r)).ok(), Some(r)),
                    Err(DiscoveryError::BadRecord(_)) => {}
                    Err(other) => prop_assert!(false, "untyped error {other:?}"),
                }
            }
            RecordInput::Valid(r) => {
                prop_assert_eq!(PeerRecord::from_wire(&wire(&r)).ok(), Some(r));
            }
        }
        Ok(())
    });
}

/// Found by the fuzz target: records were decoded with plain bincode, whose
/// collections preallocate from the length they claim (up to 1 MiB each);
/// a 9-byte broadcast allocated a megabyte.
#[test]
fn a_record_claiming_huge_lengths_is_refused_without_allocating() {
    // A record whose name claims u64::MAX bytes (varint marker 253), and
    // one whose address list claims u64::MAX entries.
    let mut name = vec![253];
    name.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut addresses = vec![0, 1, 2, 3, 253];
    addresses.extend_from_slice(&u64::MAX.to_le_bytes());
    for bytes in [name, addresses] {
        let (got, allocated) = fuzz::allocated_by(|| PeerRecord::from_wire(&bytes));
        assert!(matches!(got, Err(DiscoveryError::BadRecord(_))), "{got:?}");
        assert!(allocated < 4096, "allocated {allocated} bytes");
    }
}

// ---------------------------------------------------------------------------
// SWIM packets.

thread_local! {
    // Panics on this thread, where the simulated cluster's tasks run.
    static PANICS: Cell<u64> = const { Cell::new(0) };
}

fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = PANICS.try_with(|p| p.set(p.get() + 1));
            report(info);
        }));
    });
}

/// The test's broadcast handler: carries any bytes.
struct AnyBroadcast;

/// Each broadcast replaces none other.
struct Key;

impl Invalidates for Key {
    fn invalidates(&self, _other: &Self) -> bool {
        false
    }
}

impl BroadcastHandler<NodeId> for AnyBroadcast {
    type Key = Key;
    type Error = std::io::Error;

    fn receive_item(
        &mut self,
        _data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<Key>, std::io::Error> {
        Ok(Some(Key))
    }
}

/// A valid SWIM packet from `ghost` to `to`, announcing itself and carrying
/// `broadcasts`.
fn swim_packet(to: &NodeId, seed: u64, broadcasts: &[Vec<u8>]) -> Vec<u8> {
    let me = NodeId {
        name: "ghost".into(),
        incarnation: seed,
        bump: 0,
    };
    let config = foca::Config::new_lan(NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN));
    let rng = rand_foca::rngs::StdRng::seed_from_u64(seed);
    let mut foca = Foca::with_custom_broadcast(me, config, rng, PostcardCodec, AnyBroadcast);
    for b in broadcasts.iter().filter(|b| !b.is_empty()) {
        let _ = foca.add_broadcast(b);
    }
    let mut rt = AccumulatingRuntime::new();
    // An announce carries no broadcasts; gossip to a known member does.
    foca.apply_many(std::iter::once(Member::alive(to.clone())), false, &mut rt)
        .unwrap();
    while rt.to_send().is_some() {}
    if broadcasts.is_empty() {
        foca.announce(to.clone(), &mut rt).unwrap();
    } else {
        foca.gossip(&mut rt).unwrap();
    }
    rt.to_send().map(|(_, b)| b.to_vec()).unwrap_or_default()
}

fn swim_input(target: NodeId) -> impl Strategy<Value = Vec<u8>> {
    let broadcast = prop_oneof![
        3 => record().prop_map(|r| wire(&r)),
        2 => mutate::mutations_of(record().prop_map(|r| wire(&r))),
        1 => mutate::bytes(64),
    ];
    let packet = (any::<u64>(), prop::collection::vec(broadcast, 0..4))
        .prop_map(move |(seed, b)| swim_packet(&target, seed, &b));
    prop_oneof![
        1 => mutate::bytes(512),
        2 => packet.clone(),
        4 => mutate::mutations_of(packet),
    ]
}

/// How often the full membership is checked (after letting SWIM settle).
const CHECK_EVERY: u64 = 32;

#[test]
fn fuzz_swim_packets() {
    count_panics();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (sim, fuzzer, target) = rt.block_on(async {
        let sim = common::Sim::start(3).await;
        sim.converge(&[0, 1, 2], &[0, 1, 2]).await;
        let fuzzer = Rpc::new();
        fuzzer.set_name("fuzzer").unwrap();
        fuzzer.add_transport(sim.net.transport_on("fuzzer"));
        fuzzer
            .connect("mem://n0")
            .unwrap()
            .established(common::LONG)
            .await
            .unwrap();
        let target = sim.nodes[0].record("n0").unwrap().id;
        (sim, fuzzer, target)
    });
    let real: BTreeSet<String> = sim.names().into_iter().collect();
    let cases = Cell::new(0u64);
    fuzz::run("swim_packets", 256, swim_input(target), |packet| {
        rt.block_on(async {
            let opts = CallOptions::default().timeout(Duration::from_secs(5));
            let sent = fuzzer
                .notify_with("n0", "__disc.swim", &Blob::from(packet), opts.clone())
                .await;
            prop_assert!(sent.is_ok(), "{sent:?}");
            // Let the driver take the packet and act on it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let echoed: Result<String, _> = fuzzer
                .call_with("n0", "echo", "still here", opts.clone())
                .await;
            prop_assert_eq!(echoed.as_deref().ok(), Some("still here"), "{:?}", echoed);
            cases.set(cases.get() + 1);
            if cases.get().is_multiple_of(CHECK_EVERY) {
                // Forged suspicions are refuted and forged deaths rejoined
                // within a few probe periods.
                let want = real.clone();
                let kept = sim.nodes[0]
                    .wait_until(Duration::from_secs(120), move |n| {
                        want.is_subset(&n.alive())
                    })
                    .await;
                prop_assert!(kept.is_ok(), "n0 lost members: {:?}", sim.nodes[0].alive());
            }
            Ok(())
        })?;
        prop_assert_eq!(PANICS.with(Cell::get), 0, "a node panicked");
        Ok(())
    });
    // The other nodes still reach n0 through the membership's routes.
    rt.block_on(async {
        let r: Result<String, _> = sim.nodes[1]
            .rpc()
            .call_with(
                "n0",
                "echo",
                "hi",
                CallOptions::default().timeout(Duration::from_secs(30)),
            )
            .await;
        assert_eq!(r.map_err(|e| e.to_string()), Ok("hi".to_owned()));
    });
}

/// The valid packets of the target reach foca and the record handler: a
/// stranger announcing itself becomes a member, its record known.
#[tokio::test(start_paused = true)]
async fn a_valid_swim_packet_from_a_stranger_is_taken() {
    let sim = common::Sim::start(2).await;
    sim.converge(&[0, 1], &[0, 1]).await;
    let target = sim.nodes[0].record("n0").unwrap().id;
    let ghost = PeerRecord {
        id: NodeId {
            name: "ghost".into(),
            incarnation: 7,
            bump: 0,
        },
        version: 1,
        addresses: Vec::new(),
        host_key: String::new(),
        functions: Vec::new(),
        resources: BTreeSet::new(),
        links: BTreeSet::new(),
        groups: BTreeSet::new(),
    };
    let packet = swim_packet(&target, 7, &[wire(&ghost)]);
    sim.nodes[1]
        .rpc()
        .notify("n0", "__disc.swim", &Blob::from(packet))
        .await
        .unwrap();
    sim.nodes[0]
        .wait_until(common::LONG, |n| n.record("ghost").is_some())
        .await
        .unwrap();
    assert!(sim.nodes[0].members().iter().any(|m| m.name == "ghost"));
}

/// Found by the SWIM target: a forged record broadcast for a live member,
/// with a higher bump than the member's own identity, was never replaced by
/// the member's real record, which the node fetched directly and refused as
/// older. The fetch then repeated at once, forever: a hot loop of record
/// calls (under paused time, time never advanced again).
#[tokio::test(start_paused = true)]
async fn a_forged_record_does_not_make_a_node_refetch_forever() {
    let sim = common::Sim::start(2).await;
    sim.converge(&[0, 1], &[0, 1]).await;
    let target = sim.nodes[0].record("n0").unwrap().id;
    let real = sim.nodes[1].record("n1").unwrap();
    let mut forged = real.clone();
    forged.id.incarnation = real.id.incarnation.wrapping_add(1);
    forged.id.bump = real.id.bump + 5;
    forged.addresses = vec!["mem://nowhere".into()];
    let packet = swim_packet(&target, 7, &[wire(&forged)]);
    let record_calls = || {
        sim.nodes[1]
            .rpc()
            .debug_info()
            .functions
            .into_iter()
            .find(|f| f.name == "__disc.record")
            .map_or(0, |f| f.calls)
    };
    let before = record_calls();
    sim.nodes[1]
        .rpc()
        .notify("n0", "__disc.swim", &Blob::from(packet))
        .await
        .unwrap();
    // Let every task run many times over without moving the clock: a node
    // that refetches at once calls n1 on every round.
    for _ in 0..2000 {
        tokio::task::yield_now().await;
    }
    let fetches = record_calls() - before;
    assert!(fetches <= 2, "n0 fetched n1's record {fetches} times");
    // n0 ends up with n1's real record.
    sim.nodes[0]
        .wait_until(common::LONG, |n| {
            n.record("n1").is_some_and(|r| r.id == real.id)
        })
        .await
        .unwrap();
}
