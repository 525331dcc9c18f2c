//! The JSON forms of a plan; see the module docs of [`plan`](super).

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::{Arg, Command, PathSegment, Plan, PlanError};

/// Key of a typed reference object.
const REF: &str = "$ref";
/// Key of the field path of a typed reference object.
const PATH: &str = "path";
/// Key of a literal wrapper object.
const VALUE: &str = "$value";

/// A command read from JSON whose arguments are not yet interpreted, since
/// that needs every name of the plan.
struct RawCommand<'a> {
    name: String,
    function: String,
    args: &'a [Value],
    resources: BTreeSet<String>,
}

impl Plan {
    /// Parses and validates a plan from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, PlanError> {
        let value: Value = serde_json::from_str(text).map_err(PlanError::Parse)?;
        Self::from_json(&value)
    }

    /// Parses and validates a plan from a JSON array of commands, each an
    /// mpreg tuple or an object (see the module docs).
    pub fn from_json(value: &Value) -> Result<Self, PlanError> {
        let Value::Array(items) = value else {
            return Err(invalid("", "a plan must be an array of commands"));
        };
        let raw = items
            .iter()
            .enumerate()
            .map(|(i, item)| raw_command(i, item))
            .collect::<Result<Vec<_>, _>>()?;
        let names: HashSet<&str> = raw.iter().map(|c| c.name.as_str()).collect();
        let mut commands = Vec::with_capacity(raw.len());
        for (i, command) in raw.iter().enumerate() {
            let args = command
                .args
                .iter()
                .enumerate()
                .map(|(a, arg)| parse_arg(arg, &names, &format!("[{i}].args[{a}]")))
                .collect::<Result<Vec<_>, _>>()?;
            commands.push(Command {
                name: command.name.clone(),
                function: command.function.clone(),
                args,
                resources: command.resources.clone(),
            });
        }
        Self::new(commands)
    }

    /// The plan as JSON in the typed object form; reading it back with
    /// [`Plan::from_json`] gives an equal plan.
    pub fn to_json(&self) -> Value {
        let names: HashSet<&str> = self.commands.iter().map(|c| c.name.as_str()).collect();
        Value::Array(
            self.commands
                .iter()
                .map(|command| {
                    let mut object = Map::new();
                    object.insert("name".into(), command.name.clone().into());
                    object.insert("function".into(), command.function.clone().into());
                    object.insert(
                        "args".into(),
                        command
                            .args
                            .iter()
                            .map(|a| arg_to_json(a, &names))
                            .collect(),
                    );
                    object.insert(
                        "resources".into(),
                        command.resources.iter().cloned().collect(),
                    );
                    Value::Object(object)
                })
                .collect(),
        )
    }

    /// [`Plan::to_json`] as compact JSON text, the form plans travel in.
    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }
}

fn invalid(at: &str, reason: impl Into<String>) -> PlanError {
    PlanError::InvalidJson {
        at: if at.is_empty() {
            "top level".into()
        } else {
            at.into()
        },
        reason: reason.into(),
    }
}

fn raw_command(i: usize, item: &Value) -> Result<RawCommand<'_>, PlanError> {
    let at = format!("[{i}]");
    match item {
        Value::Array(fields) => {
            if !(3..=4).contains(&fields.len()) {
                return Err(invalid(
                    &at,
                    "a command tuple is [name, function, args] or [name, function, args, resources]",
                ));
            }
            Ok(RawCommand {
                name: string(&fields[0], &format!("{at}[0]"), "name")?,
                function: string(&fields[1], &format!("{at}[1]"), "function")?,
                args: array(&fields[2], &format!("{at}[2]"), "args")?,
                resources: match fields.get(3) {
                    Some(r) => resources(r, &format!("{at}[3]"))?,
                    None => BTreeSet::new(),
                },
            })
        }
        Value::Object(object) => {
            if let Some(key) = object
                .keys()
                .find(|k| !matches!(k.as_str(), "name" | "function" | "args" | "resources"))
            {
                return Err(invalid(&at, format!("unknown command field {key:?}")));
            }
            let field = |key: &str| {
                object
                    .get(key)
                    .ok_or_else(|| invalid(&at, format!("missing field {key:?}")))
            };
            Ok(RawCommand {
                name: string(field("name")?, &format!("{at}.name"), "name")?,
                function: string(field("function")?, &format!("{at}.function"), "function")?,
                args: match object.get("args") {
                    Some(a) => array(a, &format!("{at}.args"), "args")?,
                    None => &[],
                },
                resources: match object.get("resources") {
                    Some(r) => resources(r, &format!("{at}.resources"))?,
                    None => BTreeSet::new(),
                },
            })
        }
        _ => Err(invalid(&at, "a command must be an array or an object")),
    }
}

fn string(value: &Value, at: &str, what: &str) -> Result<String, PlanError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(at, format!("{what} must be a string")))
}

fn array<'a>(value: &'a Value, at: &str, what: &str) -> Result<&'a [Value], PlanError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| invalid(at, format!("{what} must be an array")))
}

fn resources(value: &Value, at: &str) -> Result<BTreeSet<String>, PlanError> {
    array(value, at, "resources")?
        .iter()
        .enumerate()
        .map(|(i, r)| string(r, &format!("{at}[{i}]"), "a resource"))
        .collect()
}

fn parse_arg(value: &Value, names: &HashSet<&str>, at: &str) -> Result<Arg, PlanError> {
    match value {
        Value::String(s) if names.contains(s.as_str()) => Ok(Arg::reference(s.clone())),
        Value::Object(object) if object.contains_key(VALUE) => {
            if object.len() != 1 {
                return Err(invalid(at, "a {\"$value\": ..} object has no other keys"));
            }
            Ok(Arg::Value(object[VALUE].clone()))
        }
        Value::Object(object) if object.contains_key(REF) => {
            if let Some(key) = object.keys().find(|k| *k != REF && *k != PATH) {
                return Err(invalid(at, format!("unknown reference field {key:?}")));
            }
            let command = string(&object[REF], &format!("{at}.{REF}"), "\"$ref\"")?;
            let path = match object.get(PATH) {
                None => Vec::new(),
                Some(path) => parse_path(path, &format!("{at}.{PATH}"))?,
            };
            Ok(Arg::Ref { command, path })
        }
        other => Ok(Arg::Value(other.clone())),
    }
}

fn parse_path(value: &Value, at: &str) -> Result<Vec<PathSegment>, PlanError> {
    match value {
        Value::String(dotted) if dotted.is_empty() => Ok(Vec::new()),
        Value::String(dotted) => dotted
            .split('.')
            .map(|segment| {
                if segment.is_empty() {
                    Err(invalid(at, "a dotted path has no empty segments"))
                } else if segment.bytes().all(|b| b.is_ascii_digit()) {
                    segment
                        .parse()
                        .map(PathSegment::Index)
                        .map_err(|_| invalid(at, format!("index {segment} is too large")))
                } else {
                    Ok(PathSegment::Key(segment.to_owned()))
                }
            })
            .collect(),
        Value::Array(segments) => segments
            .iter()
            .map(|segment| match segment {
                Value::String(key) => Ok(PathSegment::Key(key.clone())),
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(PathSegment::Index)
                    .ok_or_else(|| invalid(at, "an index must be a non-negative integer")),
                _ => Err(invalid(at, "a path segment is a string or an integer")),
            })
            .collect(),
        _ => Err(invalid(at, "a path is an array or a dotted string")),
    }
}

fn arg_to_json(arg: &Arg, names: &HashSet<&str>) -> Value {
    match arg {
        Arg::Ref { command, path } => {
            let mut object = Map::new();
            object.insert(REF.into(), command.clone().into());
            if !path.is_empty() {
                let path = path
                    .iter()
                    .map(|segment| match segment {
                        PathSegment::Key(key) => Value::from(key.clone()),
                        PathSegment::Index(index) => Value::from(*index),
                    })
                    .collect();
                object.insert(PATH.into(), path);
            }
            Value::Object(object)
        }
        Arg::Value(value) => {
            // Literals that would read back as references or wrappers are
            // wrapped, so that the round trip is lossless.
            let ambiguous = match value {
                Value::String(s) => names.contains(s.as_str()),
                Value::Object(o) => o.contains_key(REF) || o.contains_key(VALUE),
                _ => false,
            };
            if ambiguous {
                let mut object = Map::new();
                object.insert(VALUE.into(), value.clone());
                Value::Object(object)
            } else {
                value.clone()
            }
        }
    }
}
