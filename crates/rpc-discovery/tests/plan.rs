//! Plans: the mpreg README examples byte for byte, validation before
//! anything runs, level parallelism, failures, field paths and JSON.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use rpc_discovery::plan::{Arg, Command, PathSegment, Plan, PlanError, execute, render_json};
use serde_json::{Value, json};

/// mpreg's demo functions: `echo` returns its single argument, `echos` its
/// arguments as a list; `fail` fails; anything else returns its arguments.
async fn builtin(command: &Command, mut args: Vec<Value>) -> Result<Value, String> {
    match command.function.as_str() {
        "echo" if args.len() == 1 => Ok(args.pop().unwrap_or_default()),
        "echo" => Err(format!("echo takes one argument, got {}", args.len())),
        "fail" => Err("boom".to_owned()),
        _ => Ok(Value::Array(args)),
    }
}

/// Parses `plan`, runs it with [`builtin`], and compares the rendered output.
#[track_caller]
fn check(plan: Value, expect: &str) {
    let plan = Plan::from_json(&plan).expect("valid plan");
    let output = block_on(execute(&plan, builtin)).expect("plan runs");
    assert_eq!(output.to_string(), expect);
}

/// Runs a future to completion on a current-thread runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

// The five examples of the mpreg README, in its tuple form.

#[test]
fn mpreg_single_command() {
    check(
        json!([["first", "echo", ["hi there!"], []]]),
        r#"{"first": "hi there!"}"#,
    );
}

#[test]
fn mpreg_name_as_argument() {
    check(
        json!([
            ["first", "echo", ["hi there!"], []],
            ["second", "echo", ["first"], []],
        ]),
        r#"{"second": "hi there!"}"#,
    );
}

#[test]
fn mpreg_two_outputs() {
    check(
        json!([
            ["|first", "echo", ["hi there!"], []],
            ["|second", "echo", ["|first"], []],
            ["|third", "echos", ["|first", "AND ME TOO"], []],
        ]),
        r#"{"|second": "hi there!", "|third": ["hi there!", "AND ME TOO"]}"#,
    );
}

#[test]
fn mpreg_diamond() {
    check(
        json!([
            ["|first", "echo", ["hi there!"], []],
            ["|second", "echo", ["|first"], []],
            ["|third", "echos", ["|first", "|second", "AND ME TOO"], []],
        ]),
        r#"{"|third": ["hi there!", "hi there!", "AND ME TOO"]}"#,
    );
}

#[test]
fn mpreg_four_levels() {
    check(
        json!([
            ["|first", "echo", ["hi there!"], []],
            ["|second", "echo", ["|first"], []],
            ["|third", "echos", ["|first", "|second", "AND ME TOO"], []],
            ["|4th", "echo", ["|third"], []],
        ]),
        r#"{"|4th": ["hi there!", "hi there!", "AND ME TOO"]}"#,
    );
}

#[test]
fn mpreg_levels_and_outputs() {
    let plan = Plan::from_json(&json!([
        ["|first", "echo", ["hi there!"], []],
        ["|second", "echo", ["|first"], []],
        ["|third", "echos", ["|first", "|second", "AND ME TOO"], []],
        ["|4th", "echo", ["|third"], []],
    ]))
    .expect("valid plan");
    assert_eq!(
        plan.level_names(),
        [
            vec!["|first"],
            vec!["|second"],
            vec!["|third"],
            vec!["|4th"]
        ]
    );
    assert_eq!(plan.max_parallelism(), 1);
    let outputs: Vec<_> = plan.outputs().map(|c| c.name.as_str()).collect();
    assert_eq!(outputs, ["|4th"]);
}

#[test]
fn typed_form_gives_the_same_output() {
    let plan = Plan::new(vec![
        Command::new("|first", "echo", vec![Arg::value("hi there!")]),
        Command::new("|second", "echo", vec![Arg::reference("|first")]),
        Command::new(
            "|third",
            "echos",
            vec![Arg::reference("|first"), Arg::value("AND ME TOO")],
        ),
    ])
    .expect("valid plan");
    let output = block_on(execute(&plan, builtin)).expect("plan runs");
    assert_eq!(
        output.to_string(),
        r#"{"|second": "hi there!", "|third": ["hi there!", "AND ME TOO"]}"#
    );
    assert_eq!(output.get("|second"), Some(&json!("hi there!")));
    assert_eq!(output.len(), 2);
}

#[test]
fn object_form_and_resources() {
    let plan = Plan::from_json_str(
        r#"[{"name": "a", "function": "echo", "args": ["x"], "resources": ["model-7", "ds-1"]},
            {"name": "b", "function": "echo", "args": [{"$ref": "a"}]}]"#,
    )
    .expect("valid plan");
    let a = plan.command("a").expect("a");
    assert_eq!(
        a.resources,
        BTreeSet::from(["ds-1".into(), "model-7".into()])
    );
    assert!(plan.command("b").expect("b").resources.is_empty());
    let output = block_on(execute(&plan, builtin)).expect("plan runs");
    assert_eq!(output.to_string(), r#"{"b": "x"}"#);
}

// Validation: every bad plan is rejected before `run` is called.

/// Parses `plan` and, if it parses, executes it with a counting `run`;
/// returns the error and how many times `run` was called.
fn reject(plan: Value) -> (PlanError, usize) {
    let calls = AtomicUsize::new(0);
    let parsed = Plan::from_json(&plan);
    if let Ok(plan) = &parsed {
        let _ = block_on(execute(plan, |_, _| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Value::Null) }
        }));
    }
    (
        parsed.expect_err("plan must be rejected"),
        calls.load(Ordering::SeqCst),
    )
}

#[test]
fn empty_plan_rejected() {
    let (error, calls) = reject(json!([]));
    assert!(matches!(error, PlanError::Empty), "{error}");
    assert_eq!(calls, 0);
}

#[test]
fn duplicate_names_rejected() {
    let (error, calls) = reject(json!([
        ["a", "echo", ["x"], []],
        ["b", "echo", ["x"], []],
        ["a", "echo", ["y"], []],
    ]));
    assert!(
        matches!(&error, PlanError::DuplicateName { name } if name == "a"),
        "{error}"
    );
    assert_eq!(calls, 0);
}

#[test]
fn dangling_reference_rejected() {
    let (error, calls) = reject(json!([
        ["a", "echo", ["x"], []],
        ["b", "echo", [{"$ref": "nope"}], []],
    ]));
    assert!(
        matches!(&error, PlanError::DanglingReference { command, target } if command == "b" && target == "nope"),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        r#"command "b" references unknown command "nope""#
    );
    assert_eq!(calls, 0);
}

#[test]
fn cycle_rejected() {
    let (error, calls) = reject(json!([
        ["start", "echo", ["x"], []],
        ["a", "echos", ["start", "c"], []],
        ["b", "echo", ["a"], []],
        ["c", "echo", ["b"], []],
        ["after", "echo", ["c"], []],
    ]));
    let PlanError::Cycle { commands } = &error else {
        panic!("expected a cycle, got {error}");
    };
    assert_eq!(commands, &["a", "c", "b"]);
    assert_eq!(
        error.to_string(),
        r#"reference cycle "a" -> "c" -> "b" -> "a""#
    );
    assert_eq!(calls, 0);
}

#[test]
fn self_reference_rejected() {
    for plan in [
        json!([["a", "echo", [{"$ref": "a"}], []]]),
        json!([["a", "echo", ["a"], []]]),
    ] {
        let (error, calls) = reject(plan);
        assert!(
            matches!(&error, PlanError::Cycle { commands } if commands == &["a"]),
            "{error}"
        );
        assert_eq!(calls, 0);
    }
}

#[test]
fn malformed_json_rejected() {
    for (plan, at) in [
        (json!({"name": "a"}), "top level"),
        (json!([["a", "echo"]]), "[0]"),
        (json!([["a", 3, []]]), "[0][1]"),
        (json!([["a", "echo", "x"]]), "[0][2]"),
        (json!([["a", "echo", [], ["ok", 1]]]), "[0][3][1]"),
        (json!([{"name": "a", "function": "f", "extra": 1}]), "[0]"),
        (json!([{"function": "f"}]), "[0]"),
        (json!([["a", "f", [{"$ref": "a", "x": 1}]]]), "[0].args[0]"),
        (json!([["a", "f", [{"$ref": 1}]]]), "[0].args[0].$ref"),
        (json!([["a", "f", [{"$value": 1, "x": 1}]]]), "[0].args[0]"),
        (
            json!([["a", "f", []], ["b", "f", [{"$ref": "a", "path": "x..y"}]]]),
            "[1].args[0].path",
        ),
        (
            json!([["a", "f", []], ["b", "f", [{"$ref": "a", "path": [-1]}]]]),
            "[1].args[0].path",
        ),
    ] {
        let (error, calls) = reject(plan.clone());
        assert!(
            matches!(&error, PlanError::InvalidJson { at: got, .. } if got == at),
            "{plan}: {error}"
        );
        assert_eq!(calls, 0);
    }
    assert!(matches!(
        Plan::from_json_str("[["),
        Err(PlanError::Parse(_))
    ));
    assert!(matches!(
        Plan::new(vec![Command::new("", "f", vec![])]),
        Err(PlanError::EmptyName { index: 0 })
    ));
}

// Execution.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn level_runs_concurrently() {
    // Three independent commands, then one that joins them. Each command of
    // level 0 waits on a barrier of 3: the plan only finishes if all three
    // are in flight together.
    let plan = Plan::from_json(&json!([
        ["a", "wait", ["a"], []],
        ["b", "wait", ["b"], []],
        ["c", "wait", ["c"], []],
        ["join", "echos", [{"$ref": "a"}, {"$ref": "b"}, {"$ref": "c"}], []],
    ]));
    // Strings equal to a command's own name are self-references, so the
    // literal must be wrapped.
    assert!(matches!(plan, Err(PlanError::Cycle { .. })));
    let plan = Plan::from_json(&json!([
        ["a", "wait", [{"$value": "a"}], []],
        ["b", "wait", [{"$value": "b"}], []],
        ["c", "wait", [{"$value": "c"}], []],
        ["join", "echos", ["a", "b", "c"], []],
    ]))
    .expect("valid plan");
    assert_eq!(plan.level_names(), [vec!["a", "b", "c"], vec!["join"]]);
    assert_eq!(plan.max_parallelism(), 3);

    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let run = |command: &Command, args: Vec<Value>| {
        let barrier = barrier.clone();
        let in_flight = in_flight.clone();
        let peak = peak.clone();
        let wait = command.function == "wait";
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            if wait {
                barrier.wait().await;
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(if wait {
                args[0].clone()
            } else {
                Value::Array(args)
            })
        }
    };
    let output = tokio::time::timeout(std::time::Duration::from_secs(10), execute(&plan, run))
        .await
        .expect("level 0 ran concurrently")
        .expect("plan runs");
    assert_eq!(output.to_string(), r#"{"join": ["a", "b", "c"]}"#);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn failing_command_fails_the_plan() {
    let plan = Plan::from_json(&json!([
        ["ok", "echo", ["x"], []],
        ["bad", "fail", ["ok"], []],
        ["later", "echo", ["bad"], []],
    ]))
    .expect("valid plan");
    let calls = AtomicUsize::new(0);
    let error = execute(&plan, |command, args| {
        calls.fetch_add(1, Ordering::SeqCst);
        builtin(command, args)
    })
    .await
    .expect_err("plan fails");
    let PlanError::CommandFailed {
        command,
        function,
        source,
    } = &error
    else {
        panic!("expected CommandFailed, got {error}");
    };
    assert_eq!(
        (command.as_str(), function.as_str(), source.as_str()),
        ("bad", "fail", "boom")
    );
    assert_eq!(
        error.to_string(),
        r#"command "bad" (function "fail") failed"#
    );
    // "later" never ran.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn field_references() {
    let plan = Plan::from_json(&json!([
        ["stats", "echo", [{"rows": [10, 20, {"n": 30}], "name": "t"}], []],
        ["row", "echo", [{"$ref": "stats", "path": ["rows", 1]}], []],
        ["deep", "echo", [{"$ref": "stats", "path": "rows.2.n"}], []],
        ["both", "echos", [{"$ref": "stats", "path": "name"}, "stats"], []],
    ]))
    .expect("valid plan");
    let output = execute(&plan, builtin).await.expect("plan runs");
    assert_eq!(
        output.to_string(),
        r#"{"row": 20, "deep": 30, "both": ["t", {"name": "t", "rows": [10, 20, {"n": 30}]}]}"#
    );

    // An index also looks up the decimal key of an object.
    let plan = Plan::new(vec![
        Command::new("m", "echo", vec![Arg::value(json!({"0": "zero"}))]),
        Command::new("z", "echo", vec![Arg::field("m", [0.into()])]),
    ])
    .expect("valid plan");
    let output = execute(&plan, builtin).await.expect("plan runs");
    assert_eq!(output.to_string(), r#"{"z": "zero"}"#);
}

#[tokio::test]
async fn missing_field_is_named() {
    let plan = Plan::from_json(&json!([
        ["stats", "echo", [{"rows": [10]}], []],
        ["row", "echo", [{"$ref": "stats", "path": ["rows", 5]}], []],
    ]))
    .expect("valid plan");
    let calls = AtomicUsize::new(0);
    let error = execute(&plan, |command, args| {
        calls.fetch_add(1, Ordering::SeqCst);
        builtin(command, args)
    })
    .await
    .expect_err("field is missing");
    assert!(
        matches!(&error, PlanError::MissingField { command, target, path }
            if command == "row" && target == "stats"
                && path == &[PathSegment::Key("rows".into()), PathSegment::Index(5)]),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        r#"command "row": result of "stats" has no field .rows[5]"#
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn render_matches_python() {
    assert_eq!(
        render_json(&json!({"k": ["é", 1.5, 2, null, true], "a": {}})),
        r#"{"a": {}, "k": ["\u00e9", 1.5, 2, null, true]}"#
    );
}

// JSON round trip.

#[test]
fn round_trip_wraps_ambiguous_literals() {
    let plan = Plan::new(vec![
        Command::new(
            "a",
            "f",
            vec![Arg::value("b"), Arg::value(json!({"$ref": "a"}))],
        ),
        Command::new("b", "f", vec![Arg::value(json!({"$value": 1}))]),
        Command::new(
            "c",
            "f",
            vec![Arg::field("a", ["x".into(), 3.into()]), Arg::reference("b")],
        )
        .with_resources(["gpu"]),
    ])
    .expect("valid plan");
    let text = plan.to_json_string();
    assert_eq!(
        text,
        r#"[{"args":[{"$value":"b"},{"$value":{"$ref":"a"}}],"function":"f","name":"a","resources":[]},{"args":[{"$value":{"$value":1}}],"function":"f","name":"b","resources":[]},{"args":[{"$ref":"a","path":["x",3]},{"$ref":"b"}],"function":"f","name":"c","resources":["gpu"]}]"#
    );
    assert_eq!(text.parse::<Plan>().expect("parses"), plan);
}

/// Small random plans: each command may reference earlier ones (so the plan
/// is acyclic), with literals that often collide with command names.
fn arb_plan() -> impl Strategy<Value = Plan> {
    let literal = prop_oneof![
        Just(json!(null)),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "[a-d]{0,2}|[^\"]{0,4}".prop_map(Value::from),
        Just(json!({"$ref": "c0"})),
        Just(json!({"$value": [1, 2]})),
        Just(json!([1.5, "x", {"k": "c1"}])),
    ];
    let segment = prop_oneof![
        "[a-z0-9]{1,3}".prop_map(PathSegment::Key),
        (0usize..4).prop_map(PathSegment::Index),
    ];
    let arg = prop_oneof![
        literal.prop_map(Arg::Value),
        (0usize..8, prop::collection::vec(segment, 0..3))
            .prop_map(|(target, path)| Arg::field(format!("c{target}"), path)),
    ];
    let command = (
        "[a-z]{1,5}",
        prop::collection::vec(arg, 0..4),
        prop::collection::btree_set("[a-z]{1,3}", 0..3),
    );
    prop::collection::vec(command, 1..8).prop_map(|commands| {
        let commands = commands
            .into_iter()
            .enumerate()
            .map(|(i, (function, args, resources))| {
                // Point references at earlier commands only.
                let args = args
                    .into_iter()
                    .map(|arg| match arg {
                        Arg::Ref { command, path } if i > 0 => {
                            let n: usize = command[1..].parse().unwrap_or(0);
                            Arg::Ref {
                                command: format!("c{}", n % i),
                                path,
                            }
                        }
                        Arg::Ref { .. } => Arg::value("c0"),
                        value => value,
                    })
                    .collect();
                Command {
                    name: format!("c{i}"),
                    function,
                    args,
                    resources,
                }
            })
            .collect();
        Plan::new(commands).expect("acyclic by construction")
    })
}

proptest! {
    #[test]
    fn json_round_trip(plan in arb_plan()) {
        let back = Plan::from_json_str(&plan.to_json_string()).expect("round trip parses");
        prop_assert_eq!(back, plan);
    }

    #[test]
    fn arbitrary_json_never_panics(text in "[\\[\\]{}\",:a-c$0-9 ]{0,40}") {
        let _ = Plan::from_json_str(&text);
    }
}
