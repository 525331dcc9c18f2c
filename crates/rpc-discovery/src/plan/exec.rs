//! Running a plan level by level, and its output.

use std::fmt;

use futures_util::future::try_join_all;
use serde_json::Value;

use super::render::{render_json_into, render_string_into};
use super::{Arg, Command, PathSegment, Plan, PlanError};

/// Runs `plan` and returns the results of its outputs (the commands no other
/// command consumes), in plan order.
///
/// `run(command, args)` performs one command with its arguments resolved:
/// references are replaced by the referenced results, or by the field their
/// path selects. The commands of one dependency level are all started
/// before any is awaited and run concurrently; the next level starts when
/// the whole level has succeeded.
///
/// The first command to fail fails the plan with
/// [`PlanError::CommandFailed`] naming it; the other commands of its level
/// are dropped (cancelled) and later levels never start. A field path that
/// does not exist in a result gives [`PlanError::MissingField`] before the
/// command that needs it is run.
///
/// ```
/// use rpc_discovery::plan::{Plan, execute};
/// use serde_json::{Value, json};
///
/// let plan = Plan::from_json(&json!([
///     ["|first", "echo", ["hi there!"], []],
///     ["|second", "echo", ["|first"], []],
/// ]))?;
/// let run = |_cmd: &_, mut args: Vec<Value>| async move {
///     Ok::<_, std::convert::Infallible>(args.pop().unwrap_or(Value::Null))
/// };
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let output = execute(&plan, run).await?;
/// assert_eq!(output.to_string(), r#"{"|second": "hi there!"}"#);
/// # Ok::<_, Box<dyn std::error::Error>>(()) })?;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub async fn execute<'p, F, Fut, E>(plan: &'p Plan, mut run: F) -> Result<PlanOutput, PlanError<E>>
where
    F: FnMut(&'p Command, Vec<Value>) -> Fut,
    Fut: Future<Output = Result<Value, E>>,
{
    let mut results = Results::new(plan);
    for level in &plan.levels {
        // Resolve the whole level first, so that a missing field fails the
        // plan before any command of the level has been started.
        let args = level
            .iter()
            .map(|&i| results.resolve(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(PlanError::cast)?;
        let calls = level.iter().zip(args).map(|(&i, args)| {
            let command = &plan.commands[i];
            let call = run(command, args);
            async move {
                match call.await {
                    Ok(value) => Ok((i, value)),
                    Err(source) => Err(PlanError::CommandFailed {
                        command: command.name.clone(),
                        function: command.function.clone(),
                        source,
                    }),
                }
            }
        });
        for (i, value) in try_join_all(calls).await? {
            results.values[i] = Some(value);
        }
    }
    Ok(results.finish())
}

/// The results of the commands run so far.
struct Results<'p> {
    plan: &'p Plan,
    values: Vec<Option<Value>>,
    /// References not yet resolved per command; a result is moved out, not
    /// cloned, on its last use.
    uses_left: Vec<usize>,
}

impl<'p> Results<'p> {
    fn new(plan: &'p Plan) -> Self {
        Self {
            plan,
            values: vec![None; plan.commands.len()],
            uses_left: plan.uses.clone(),
        }
    }

    /// The arguments of command `i`, references replaced by results.
    fn resolve(&mut self, i: usize) -> Result<Vec<Value>, PlanError> {
        let command = &self.plan.commands[i];
        let mut args = Vec::with_capacity(command.args.len());
        for arg in &command.args {
            match arg {
                Arg::Value(value) => args.push(value.clone()),
                Arg::Ref {
                    command: target,
                    path,
                } => {
                    args.push(self.take_ref(command, target, path)?);
                }
            }
        }
        Ok(args)
    }

    fn take_ref(
        &mut self,
        command: &Command,
        target: &str,
        path: &[PathSegment],
    ) -> Result<Value, PlanError> {
        let missing = || PlanError::MissingField {
            command: command.name.clone(),
            target: target.to_owned(),
            path: path.to_vec(),
        };
        // Validation guarantees the target exists and sits in an earlier
        // level, so both lookups succeed; fail typed rather than panic.
        let j = *self.plan.index.get(target).ok_or_else(missing)?;
        self.uses_left[j] = self.uses_left[j].saturating_sub(1);
        let last_use = self.uses_left[j] == 0;
        let slot = &mut self.values[j];
        if last_use && path.is_empty() {
            return slot.take().ok_or_else(missing);
        }
        let field = slot
            .as_ref()
            .and_then(|value| select(value, path))
            .cloned()
            .ok_or_else(missing);
        if last_use {
            *slot = None;
        }
        field
    }

    fn finish(mut self) -> PlanOutput {
        let entries = self
            .plan
            .outputs
            .iter()
            .map(|&i| {
                let value = self.values[i].take().unwrap_or(Value::Null);
                (self.plan.commands[i].name.clone(), value)
            })
            .collect();
        PlanOutput { entries }
    }
}

/// Follows `path` inside `value`.
fn select<'v>(value: &'v Value, path: &[PathSegment]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |value, segment| match (value, segment) {
            (Value::Object(object), PathSegment::Key(key)) => object.get(key),
            (Value::Object(object), PathSegment::Index(index)) => object.get(&index.to_string()),
            (Value::Array(items), PathSegment::Index(index)) => items.get(*index),
            _ => None,
        })
}

/// The results of a plan's outputs, by command name in plan order.
///
/// `Display` renders it as a JSON object exactly as Python's `json.dumps`
/// would print mpreg's result dict, keys in plan order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanOutput {
    entries: Vec<(String, Value)>,
}

impl PlanOutput {
    /// The result of the output command `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The `(name, result)` pairs in plan order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The number of outputs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no outputs (never true for an executed plan).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `(name, result)` pairs in plan order.
    pub fn into_vec(self) -> Vec<(String, Value)> {
        self.entries
    }

    /// The outputs as a JSON object. `serde_json`'s map sorts its keys
    /// (unless its `preserve_order` feature is on); use `Display` to keep
    /// plan order.
    pub fn to_json(&self) -> Value {
        Value::Object(self.entries.iter().cloned().collect())
    }
}

impl fmt::Display for PlanOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::from("{");
        for (k, (name, value)) in self.entries.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            render_string_into(name, &mut out);
            out.push_str(": ");
            render_json_into(value, &mut out);
        }
        out.push('}');
        f.write_str(&out)
    }
}

impl IntoIterator for PlanOutput {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<(String, Value)> for PlanOutput {
    fn from_iter<T: IntoIterator<Item = (String, Value)>>(iter: T) -> Self {
        Self {
            entries: iter.into_iter().collect(),
        }
    }
}
