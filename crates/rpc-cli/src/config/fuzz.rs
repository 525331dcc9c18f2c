//! Fuzz target of the node configuration (`rpc_core::testing::fuzz`):
//! arbitrary text, and the README's cluster files mutated byte-wise and
//! with TOML tokens (brackets, quotes, tables, huge and negative numbers,
//! deep nesting). [`NodeConfig::parse`] never panics: a configuration or an
//! error naming the TOML problem or the failed check. Every configuration
//! it accepts passes the checks, and generated configurations written as
//! TOML read back equal.
//!
//! `RPC_FUZZ_SECS=N` runs the target for `N` seconds.

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;
use rpc_core::testing::fuzz::{self, mutate};
use serde::Serialize;

use super::NodeConfig;

/// The README's cluster files.
const CLUSTER: &[&str] = &[
    include_str!("../../cluster/node-1.toml"),
    include_str!("../../cluster/node-2.toml"),
    include_str!("../../cluster/node-3.toml"),
];

/// Tokens that TOML gives meaning to, and the file's keys.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "=",
    ",",
    ".",
    "#",
    "\n",
    "\\u0000",
    "\\",
    "name",
    "listen",
    "seeds",
    "resources",
    "functions",
    "advertise",
    "[membership]",
    "probe_period_ms",
    "show_down_for_ms",
    "= -1",
    "= 18446744073709551615",
    "= 18446744073709551616",
    "= 1e999",
    "= nan",
    "= inf",
    "= 1979-05-27T07:32:00Z",
    "= true",
    "= []",
    "= [[[[[[[[[[",
    "a.b.c.d.e.f",
    "\u{FEFF}",
    "\r",
];

/// The checks `NodeConfig::parse` makes, as the messages name them.
const CHECKS: &[&str] = &["needs listen addresses or seeds", "no built-in function"];

/// A configuration as the TOML file spells it, for the round trip.
#[derive(Clone, Debug, Serialize)]
struct Written {
    name: String,
    listen: Vec<String>,
    seeds: Vec<String>,
    resources: BTreeSet<String>,
    functions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise: Option<Vec<String>>,
    membership: WrittenMembership,
}

#[derive(Clone, Debug, Serialize)]
struct WrittenMembership {
    #[serde(skip_serializing_if = "Option::is_none")]
    probe_period_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suspect_to_down_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    show_down_for_ms: Option<u64>,
}

fn written() -> impl Strategy<Value = Written> {
    let s = || "\\PC{0,16}";
    let addrs = || prop::collection::vec("(tcp|shm|mem)://[a-z0-9.:]{0,16}", 0..3);
    (
        s(),
        addrs(),
        addrs(),
        prop::collection::btree_set(s(), 0..3),
        prop::sample::subsequence(rpc_discovery::BUILTINS.to_vec(), 0..=3),
        prop::option::of(addrs()),
        (
            prop::option::of(0u64..=i64::MAX as u64),
            prop::option::of(0u64..=i64::MAX as u64),
            prop::option::of(0u64..=i64::MAX as u64),
        ),
    )
        .prop_map(
            |(name, listen, seeds, resources, functions, advertise, (p, s, d))| Written {
                name,
                listen,
                seeds,
                resources,
                functions: functions.into_iter().map(String::from).collect(),
                advertise,
                membership: WrittenMembership {
                    probe_period_ms: p,
                    suspect_to_down_after_ms: s,
                    show_down_for_ms: d,
                },
            },
        )
}

#[derive(Debug)]
enum Input {
    Text(String),
    Valid(Written),
}

fn input() -> impl Strategy<Value = Input> {
    let cluster = prop::sample::select(CLUSTER).prop_map(|t| t.as_bytes().to_vec());
    prop_oneof![
        1 => mutate::bytes(128).prop_map(|b| Input::Text(String::from_utf8_lossy(&b).into_owned())),
        5 => mutate::mutations_with(cluster, mutate::edit_with(TOKENS))
            .prop_map(|b| Input::Text(String::from_utf8_lossy(&b).into_owned())),
        2 => written().prop_map(Input::Valid),
    ]
}

/// An accepted configuration passes the checks, and its discovery settings
/// can be built.
fn check_config(c: &NodeConfig) -> Result<(), TestCaseError> {
    prop_assert!(!c.listen.is_empty() || !c.seeds.is_empty());
    for f in &c.functions {
        prop_assert!(rpc_discovery::BUILTINS.contains(&f.as_str()), "{f}");
    }
    let d = c.discovery();
    prop_assert_eq!(&d.resources, &c.resources);
    Ok(())
}

#[test]
fn fuzz_node_config() {
    let path = Path::new("fuzz.toml");
    fuzz::run("node_config", 1000, input(), |input| {
        match input {
            Input::Text(text) => match NodeConfig::parse(&text, path) {
                Ok(c) => check_config(&c)?,
                Err(e) => {
                    let message = format!("{e:#}");
                    prop_assert!(
                        e.downcast_ref::<toml::de::Error>().is_some()
                            || CHECKS.iter().any(|c| message.contains(c)),
                        "unexpected error {message}"
                    );
                    prop_assert!(message.contains("fuzz.toml"), "{message}");
                }
            },
            Input::Valid(w) => {
                let text = toml::to_string(&w).map_err(|e| TestCaseError::fail(e.to_string()))?;
                match NodeConfig::parse(&text, path) {
                    Ok(c) => {
                        check_config(&c)?;
                        prop_assert_eq!(&c.name, &w.name);
                        prop_assert_eq!(&c.listen, &w.listen);
                        prop_assert_eq!(&c.seeds, &w.seeds);
                        prop_assert_eq!(&c.resources, &w.resources);
                        prop_assert_eq!(&c.functions, &w.functions);
                        prop_assert_eq!(&c.advertise, &w.advertise);
                        let m = &c.membership;
                        prop_assert_eq!(m.probe_period_ms, w.membership.probe_period_ms);
                        prop_assert_eq!(
                            m.suspect_to_down_after_ms,
                            w.membership.suspect_to_down_after_ms
                        );
                        prop_assert_eq!(m.show_down_for_ms, w.membership.show_down_for_ms);
                    }
                    // The one check a generated configuration may fail.
                    Err(e) => prop_assert!(
                        w.listen.is_empty() && w.seeds.is_empty(),
                        "refused {text:?}: {e:#}"
                    ),
                }
            }
        }
        Ok(())
    });
}

/// Nesting far deeper than any configuration is an error, not a stack
/// overflow.
#[test]
fn deeply_nested_values_are_errors() {
    for depth in [100, 10_000] {
        let text = format!(
            "name = \"x\"\nlisten = {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let e = NodeConfig::parse(&text, Path::new("deep.toml")).unwrap_err();
        assert!(
            e.downcast_ref::<toml::de::Error>().is_some(),
            "depth {depth}: {e:#}"
        );
    }
}
