//! mpreg-style cluster functions: JSON in, JSON out, run by plans.
//!
//! A JSON function takes its arguments as a JSON array and returns one JSON
//! value; on the wire both travel as JSON text, since bincode cannot carry
//! `serde_json::Value`. [`Node::run_plan`] executes a [`Plan`] inside the
//! cluster, each command on a node that has its function and resources
//! ([`Node::call_any`]'s choice); [`Node::request`] hands a plan to another
//! node to execute there, which is what a client does.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;

use rpc_core::{CallOptions, HandlerError};
use serde_json::Value;

use crate::error::DiscoveryError;
use crate::node::{Node, Served};
use crate::plan::{Plan, execute, render_json};

/// The function that executes a plan sent by a client.
const PLAN_FN: &str = "__disc.plan";

/// A plan's result: the outputs (commands no other command consumes) in
/// plan order. `Display` prints it as mpreg does, e.g.
/// `{"|second": "hi there!"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanResult(pub Vec<(String, Value)>);

impl PlanResult {
    /// The output of command `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl fmt::Display for PlanResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{}: {}",
                render_json(&Value::String(name.clone())),
                render_json(value)
            )?;
        }
        f.write_str("}")
    }
}

impl Node {
    /// Defines an mpreg-style function: it takes its arguments as a JSON
    /// array and returns a JSON value or an error message. It is advertised
    /// like any function, so plans and [`call_any_json`](Self::call_any_json)
    /// find it.
    pub fn define_json<F, Fut>(&self, name: &str, f: F) -> Result<(), DiscoveryError>
    where
        F: Fn(Vec<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        self.rpc().define(name, move |args: String| {
            let call = serde_json::from_str::<Vec<Value>>(&args).map(&f);
            async move {
                match call {
                    Ok(fut) => match fut.await {
                        Ok(v) => Ok(v.to_string()),
                        Err(message) => Err(HandlerError::new(message)),
                    },
                    Err(e) => Err(HandlerError::new(format!(
                        "the arguments are not a JSON array: {e}"
                    ))),
                }
            }
        })?;
        self.refresh();
        Ok(())
    }

    /// Calls a JSON function on a node having it and every one of
    /// `resources`.
    pub async fn call_any_json(
        &self,
        function: &str,
        resources: &BTreeSet<String>,
        args: &[Value],
    ) -> Result<Served<Value>, DiscoveryError> {
        let text = serde_json::to_string(args)?;
        let served: Served<String> = self.call_any_in(function, resources, &text).await?;
        Ok(Served {
            node: served.node,
            value: serde_json::from_str(&served.value)?,
        })
    }

    /// Executes `plan` from this node: level by level, the commands of a
    /// level in parallel, each on a node with its function and resources.
    pub async fn run_plan(&self, plan: &Plan) -> Result<PlanResult, DiscoveryError> {
        let output = execute(plan, |command, args| async move {
            self.call_any_json(&command.function, &command.resources, &args)
                .await
                .map(|served| served.value)
        })
        .await
        .map_err(|e| DiscoveryError::Plan(Box::new(e)))?;
        Ok(PlanResult(output.into_vec()))
    }

    /// Sends `plan` to the node `node` (by name), which executes it inside
    /// the cluster and returns the outputs.
    pub async fn request(&self, node: &str, plan: &Plan) -> Result<PlanResult, DiscoveryError> {
        request(self.rpc(), node, plan, self.rpc().timeout()).await
    }

    /// Lets clients hand plans to this node ([`request`]).
    pub(crate) fn serve_plans(&self) -> Result<(), DiscoveryError> {
        let node = self.downgrade();
        self.rpc().define(PLAN_FN, move |text: String| {
            let node = node.upgrade();
            async move {
                let node = node.ok_or_else(|| HandlerError::new("the node is shutting down"))?;
                let plan = Plan::from_json_str(&text).map_err(HandlerError::new)?;
                let result = node
                    .run_plan(&plan)
                    .await
                    .map_err(|e| HandlerError::new(error_chain(&e)))?;
                Ok::<_, HandlerError>(
                    result
                        .0
                        .into_iter()
                        .map(|(n, v)| (n, v.to_string()))
                        .collect::<Vec<(String, String)>>(),
                )
            }
        })?;
        Ok(())
    }
}

/// Sends `plan` to the node `node` through any engine (a client need not be
/// a cluster node) and returns its outputs.
pub async fn request(
    rpc: &rpc_core::Rpc,
    node: &str,
    plan: &Plan,
    timeout: std::time::Duration,
) -> Result<PlanResult, DiscoveryError> {
    let pairs: Vec<(String, String)> = rpc
        .call_with(
            node,
            PLAN_FN,
            &plan.to_json_string(),
            CallOptions::default().timeout(timeout),
        )
        .await?;
    let values = pairs
        .into_iter()
        .map(|(n, v)| Ok((n, serde_json::from_str(&v)?)))
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    Ok(PlanResult(values))
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The built-in JSON functions a node can register (see
/// [`register_builtins`]).
pub const BUILTINS: &[&str] = &["echo", "echos", "sum"];

/// Registers built-in JSON functions by name:
/// - `echo`: returns its one argument (all of them as a list if several);
/// - `echos`: returns its arguments as a list;
/// - `sum`: returns the sum of its numeric arguments.
///
/// All three are pure, so they are declared idempotent on this node
/// ([`Node::set_idempotent`]): its cluster calls to them fail over even
/// after losing a node mid-call.
pub fn register_builtins(node: &Node, names: &[&str]) -> Result<(), DiscoveryError> {
    for name in BUILTINS {
        node.set_idempotent(name);
    }
    for name in names {
        match *name {
            "echo" => node.define_json("echo", |mut args| async move {
                Ok(if args.len() == 1 {
                    args.pop().unwrap_or(Value::Null)
                } else {
                    Value::Array(args)
                })
            })?,
            "echos" => node.define_json("echos", |args| async move { Ok(Value::Array(args)) })?,
            "sum" => node.define_json("sum", |args| async move {
                let mut ints: i64 = 0;
                let mut floats: f64 = 0.0;
                let mut any_float = false;
                for a in &args {
                    if let Some(i) = a.as_i64() {
                        ints = ints.checked_add(i).ok_or("integer overflow")?;
                    } else if let Some(f) = a.as_f64() {
                        floats += f;
                        any_float = true;
                    } else {
                        return Err(format!("sum takes numbers, got {a}"));
                    }
                }
                Ok(if any_float {
                    serde_json::json!(ints as f64 + floats)
                } else {
                    serde_json::json!(ints)
                })
            })?,
            other => {
                return Err(DiscoveryError::InvalidArgument(format!(
                    "no built-in function {other:?}; built-ins are {BUILTINS:?}"
                )));
            }
        }
    }
    Ok(())
}
