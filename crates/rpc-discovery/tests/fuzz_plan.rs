//! Fuzz target of plan JSON (`rpc_core::testing::fuzz`): arbitrary text,
//! and valid plans (the README's, and generated ones with references)
//! mutated byte-wise and with JSON tokens (brackets, quotes, `$ref`,
//! `$value`, huge numbers, deep nesting).
//!
//! `Plan::from_json_str` never panics; it returns a plan or a typed
//! [`PlanError`]. Every plan it returns is well-formed (each command in
//! exactly one level, references only to earlier levels) and round-trips
//! through `to_json_string`.
//!
//! `RPC_FUZZ_SECS=N` runs the target for `N` seconds.

use std::collections::HashMap;

use proptest::prelude::*;
use rpc_core::testing::fuzz::{self, mutate};
use rpc_discovery::plan::{Arg, Command, PathSegment, Plan, PlanError};
use serde_json::json;

/// The plans of the README's cluster example (`crates/rpc-cli/cluster`).
const README_PLANS: &[&str] = &[
    r#"[["first", "echo", ["hi there!"], []]]"#,
    r#"[["first", "echo", ["hi there!"], []], ["second", "echo", ["first"], []]]"#,
    r#"[["|first", "echo", ["hi there!"], []], ["|second", "echo", ["|first"], []], ["|third", "echos", ["|first", "|second", "AND ME TOO"], []], ["|4th", "echo", ["|third"], []]]"#,
    r#"[["a", "sum", [1, 2, 3], ["model-a"]], ["b", "sum", ["a", 10], ["model-b"]]]"#,
    r#"[{"name": "a", "function": "f", "args": [{"$ref": "b", "path": "x.0"}, {"$value": "b"}]}, {"name": "b", "function": "g", "resources": ["r"]}]"#,
];

/// Tokens that JSON and plans give meaning to.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "\"",
    ",",
    ":",
    "\\",
    "\\u0000",
    "\\ud800",
    "null",
    "true",
    "-0",
    "1e999",
    "-1",
    "18446744073709551616",
    "0.1",
    "\"$ref\"",
    "\"$value\"",
    "\"path\"",
    "\"name\"",
    "\"function\"",
    "\"args\"",
    "\"resources\"",
    "\"a\"",
    "\"first\"",
    "[[[[[[[[",
    "{\"a\":{\"a\":",
    "\u{1F600}",
    "\u{0}",
];

/// A valid plan: commands `c0..`, each referencing some earlier ones.
fn plan() -> impl Strategy<Value = Plan> {
    let arg = |i: usize| {
        prop_oneof![
            2 => any::<i64>().prop_map(Arg::value),
            1 => "\\PC{0,8}".prop_map(Arg::value),
            1 => Just(Arg::Value(json!({"$ref": "c0"}))),
            2 => (0..i.max(1), prop::collection::vec(
                    prop_oneof![
                        "[a-z0-9]{1,4}".prop_map(PathSegment::Key),
                        (0usize..4).prop_map(PathSegment::Index),
                    ],
                    0..3,
                ))
                .prop_map(move |(j, path)| if i == 0 {
                    Arg::value(j as u64)
                } else {
                    Arg::field(format!("c{j}"), path)
                }),
        ]
    };
    (1usize..8)
        .prop_flat_map(move |n| {
            (0..n)
                .map(|i| {
                    (
                        prop::collection::vec(arg(i), 0..4),
                        prop::collection::btree_set("[a-z]{1,3}", 0..2),
                    )
                        .prop_map(move |(args, resources)| {
                            Command::new(format!("c{i}"), "f", args).with_resources(resources)
                        })
                })
                .collect::<Vec<_>>()
        })
        .prop_map(|commands| Plan::new(commands).unwrap())
}

fn text() -> impl Strategy<Value = String> {
    let valid = prop_oneof![
        prop::sample::select(README_PLANS).prop_map(|s| s.as_bytes().to_vec()),
        plan().prop_map(|p| p.to_json_string().into_bytes()),
    ];
    prop_oneof![
        1 => mutate::bytes(128).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => "\\PC{0,64}",
        5 => mutate::mutations_with(valid, mutate::edit_with(TOKENS))
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// A plan is well-formed: every command in exactly one level, each
/// referencing only commands of earlier levels.
fn check_plan(plan: &Plan) -> Result<(), TestCaseError> {
    let mut level_of = HashMap::new();
    for (l, level) in plan.levels().enumerate() {
        for c in level {
            prop_assert!(
                level_of.insert(c.name.clone(), l).is_none(),
                "{} twice",
                c.name
            );
        }
    }
    prop_assert_eq!(level_of.len(), plan.commands().len());
    for c in plan.commands() {
        for r in c.references() {
            prop_assert!(level_of[r] < level_of[&c.name], "{} -> {r}", c.name);
        }
    }
    prop_assert!(plan.max_parallelism() >= 1);
    prop_assert!(plan.outputs().len() >= 1);
    let back = Plan::from_json_str(&plan.to_json_string());
    prop_assert_eq!(back.as_ref().ok(), Some(plan), "{:?}", back);
    Ok(())
}

#[derive(Debug)]
enum Input {
    Text(String),
    Valid(Plan),
}

#[test]
fn fuzz_plan_json() {
    let input = prop_oneof![
        5 => text().prop_map(Input::Text),
        1 => plan().prop_map(Input::Valid),
    ];
    fuzz::run("plan_json", 1000, input, |input| {
        match input {
            Input::Text(text) => match Plan::from_json_str(&text) {
                Ok(plan) => check_plan(&plan)?,
                Err(
                    PlanError::Parse(_)
                    | PlanError::InvalidJson { .. }
                    | PlanError::Empty
                    | PlanError::EmptyName { .. }
                    | PlanError::DuplicateName { .. }
                    | PlanError::DanglingReference { .. }
                    | PlanError::Cycle { .. },
                ) => {}
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            },
            Input::Valid(plan) => check_plan(&plan)?,
        }
        Ok(())
    });
}

/// Nesting far deeper than the JSON parser's recursion limit is a parse
/// error, not a stack overflow.
#[test]
fn deeply_nested_plans_are_parse_errors() {
    for depth in [200, 100_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(
            matches!(Plan::from_json_str(&text), Err(PlanError::Parse(_))),
            "depth {depth}"
        );
        let arg = format!(
            r#"[["a", "f", [{}1{}]]]"#,
            "{\"k\":".repeat(depth),
            "}".repeat(depth)
        );
        assert!(matches!(
            Plan::from_json_str(&arg),
            Err(PlanError::Parse(_))
        ));
    }
}

/// Found by the fuzz target: plans travel between nodes as JSON text, and
/// serde_json's default float parsing is only nearly exact, so this literal
/// came back one unit in the last place off after `to_json_string` and
/// `from_json_str` (the crate now parses floats exactly).
#[test]
fn float_literals_survive_the_text_round_trip() {
    let text = r#"[["a", "sum", [1, 2, 3], ["model-a"]], ["b", "sum", ["a", 18446744073709551616184467440737095516161844674407370955161610], ["model-b"]]]"#;
    let plan = Plan::from_json_str(text).unwrap();
    assert_eq!(Plan::from_json_str(&plan.to_json_string()).unwrap(), plan);
    for x in [
        0.1f64,
        1.0 / 3.0,
        1e-300,
        5e-324,
        f64::MAX,
        2.2250738585072014e-308,
    ] {
        let plan = Plan::new(vec![Command::new("c", "f", vec![Arg::value(x)])]).unwrap();
        assert_eq!(
            Plan::from_json_str(&plan.to_json_string()).unwrap(),
            plan,
            "{x}"
        );
    }
}
