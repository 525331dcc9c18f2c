//! mpreg's README examples, run inside a simulated cluster, with the exact
//! output mpreg prints.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{LONG, Sim, config};
use rpc_discovery::plan::Plan;
use rpc_discovery::{BUILTINS, DiscoveryError, register_builtins};
use serde_json::json;

/// n0 is a balancer (no resources); n1 has model-a, n2 has model-b.
async fn cluster() -> Sim {
    let sets: [&[&str]; 3] = [&[], &["model-a"], &["model-b"]];
    let sim = Sim::start_opts(3, false, |i| {
        let mut c = config(0);
        c.resources = sets[i]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>();
        c
    })
    .await;
    for n in &sim.nodes {
        register_builtins(n, BUILTINS).unwrap();
        let name = n.name().to_owned();
        n.define_json("whoami", move |_| {
            let name = name.clone();
            async move { Ok(json!(name)) }
        })
        .unwrap();
    }
    for n in &sim.nodes {
        n.wait_until(LONG, |n| {
            let servers = n.servers_for("echos", &BTreeSet::new());
            servers == ["n1", "n2"] && !n.servers_for("whoami", &BTreeSet::new()).is_empty()
        })
        .await
        .unwrap();
    }
    sim
}

/// A plain engine, not a member, connected to `node`; returns it and the
/// node's name.
async fn client_of(sim: &Sim, node: &str) -> (rpc_core::Rpc, String) {
    let client = rpc_core::Rpc::new();
    client.add_transport(sim.net.transport_on("client"));
    let name = client
        .connect(&format!("mem://{node}"))
        .unwrap()
        .established(Duration::from_secs(5))
        .await
        .unwrap();
    (client, name)
}

fn echo_calls(node: &rpc_discovery::Node) -> Option<u64> {
    node.rpc()
        .debug_info()
        .functions
        .iter()
        .find(|f| f.name == "echo")
        .map(|f| f.calls)
}

/// The seed's examples: (plan, mpreg's printed result).
fn examples() -> Vec<(serde_json::Value, &'static str)> {
    vec![
        (
            json!([["first", "echo", ["hi there!"], []]]),
            r#"{"first": "hi there!"}"#,
        ),
        (
            json!([
                ["first", "echo", ["hi there!"], []],
                ["second", "echo", ["first"], []]
            ]),
            r#"{"second": "hi there!"}"#,
        ),
        (
            json!([
                ["|first", "echo", ["hi there!"], []],
                ["|second", "echo", ["|first"], []],
                ["|third", "echos", ["|first", "AND ME TOO"], []]
            ]),
            r#"{"|second": "hi there!", "|third": ["hi there!", "AND ME TOO"]}"#,
        ),
        (
            json!([
                ["|first", "echo", ["hi there!"], []],
                ["|second", "echo", ["|first"], []],
                ["|third", "echos", ["|first", "|second", "AND ME TOO"], []]
            ]),
            r#"{"|third": ["hi there!", "hi there!", "AND ME TOO"]}"#,
        ),
        (
            json!([
                ["|first", "echo", ["hi there!"], []],
                ["|second", "echo", ["|first"], []],
                ["|third", "echos", ["|first", "|second", "AND ME TOO"], []],
                ["|4th", "echo", ["|third"], []]
            ]),
            r#"{"|4th": ["hi there!", "hi there!", "AND ME TOO"]}"#,
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn every_readme_example_gives_mpregs_exact_output() {
    let sim = cluster().await;
    for (plan, expected) in examples() {
        let plan = Plan::from_json(&plan).unwrap();
        // Run from the balancer, and from a server.
        for from in [&sim.nodes[0], &sim.nodes[2]] {
            let result = from.run_plan(&plan).await.unwrap();
            assert_eq!(result.to_string(), expected);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_hands_a_plan_to_any_node() {
    let sim = cluster().await;
    let (client, node) = client_of(&sim, "n0").await;
    for (plan, expected) in examples() {
        let plan = Plan::from_json(&plan).unwrap();
        let result = rpc_discovery::request(&client, &node, &plan, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(result.to_string(), expected);
    }
}

#[tokio::test(start_paused = true)]
async fn commands_run_where_their_resources_are() {
    let sim = cluster().await;
    let plan = Plan::from_json(&json!([
        ["a", "whoami", [], ["model-a"]],
        ["b", "whoami", [], ["model-b"]],
        ["both", "echos", ["a", "b"], []]
    ]))
    .unwrap();
    let result = sim.nodes[0].run_plan(&plan).await.unwrap();
    assert_eq!(result.to_string(), r#"{"both": ["n1", "n2"]}"#);
}

#[tokio::test(start_paused = true)]
async fn a_failing_command_fails_the_plan_naming_it() {
    let sim = cluster().await;
    let plan = Plan::from_json(&json!([
        ["x", "echo", ["text"], []],
        ["total", "sum", [1, "x"], []]
    ]))
    .unwrap();
    let e = sim.nodes[0].run_plan(&plan).await.unwrap_err();
    assert!(matches!(e, DiscoveryError::Plan(_)));
    let text = e.to_string();
    assert!(
        text.contains("\"total\"") && text.contains("\"sum\""),
        "{text}"
    );
    // A command nobody can run: NoRoute, naming function and resources.
    let plan = Plan::from_json(&json!([["y", "echo", [1], ["model-z"]]])).unwrap();
    let e = sim.nodes[0].run_plan(&plan).await.unwrap_err();
    let chain = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(chain.contains("model-z"), "{chain}");
}

#[tokio::test(start_paused = true)]
async fn invalid_plans_are_rejected_before_anything_runs() {
    let cycle = json!([["a", "echo", ["b"], []], ["b", "echo", ["a"], []]]);
    assert!(Plan::from_json(&cycle).is_err());
    let dup = json!([["a", "echo", [1], []], ["a", "echo", [2], []]]);
    assert!(Plan::from_json(&dup).is_err());
    let dangling = json!([["a", "echo", [{"$ref": "nope"}], []]]);
    assert!(Plan::from_json(&dangling).is_err());
    // Sent to a node, the rejection comes back as an error too.
    let sim = cluster().await;
    let (client, node) = client_of(&sim, "n1").await;
    let calls_before = echo_calls(&sim.nodes[1]);
    let r: Result<Vec<(String, String)>, _> =
        client.call(&node, "__disc.plan", &cycle.to_string()).await;
    assert!(matches!(r, Err(rpc_core::Error::Remote { .. })), "{r:?}");
    let calls_after = echo_calls(&sim.nodes[1]);
    assert_eq!(calls_before, calls_after);
}

#[tokio::test(start_paused = true)]
async fn builtins_sum_numbers() {
    let sim = cluster().await;
    let plan = Plan::from_json(&json!([
        ["a", "sum", [1, 2, 3], []],
        ["b", "sum", ["a", 0.5], []]
    ]))
    .unwrap();
    let result = sim.nodes[0].run_plan(&plan).await.unwrap();
    assert_eq!(result.to_string(), r#"{"b": 6.5}"#);
}
