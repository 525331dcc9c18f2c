//! mpreg-style multi-call plans: named commands whose arguments may be the
//! results of other commands.
//!
//! A plan is a list of [`Command`]s `(name, function, args, resources)`. An
//! argument is either a literal JSON value or a typed reference
//! ([`Arg::Ref`]) to another command's result, or to a field of it
//! ([`PathSegment`]). [`Plan::new`] validates the whole plan before anything
//! runs: it rejects an empty plan, empty or duplicate names, references to
//! unknown commands, and reference cycles (a command referencing itself
//! included), each error naming the offending command(s).
//!
//! A valid plan is ordered into dependency levels (Kahn's algorithm): level 0
//! holds the commands without references, level `n + 1` the commands whose
//! references all point to levels `<= n`, at least one to level `n`.
//! [`execute`] runs one level at a time, every command of a level
//! concurrently, substituting results into the next levels' arguments. The
//! plan's outputs are the commands no other command consumes, in plan order;
//! that is what mpreg returns ("all FINAL level RPCs").
//!
//! # JSON
//!
//! Plans travel between nodes as JSON text ([`Plan::from_json_str`],
//! [`Plan::to_json_string`]). Two command forms are accepted:
//!
//! - mpreg's tuple: `["name", "function", [args...], [resources...]]`
//!   (resources may be left out);
//! - an object: `{"name": .., "function": .., "args": [..], "resources": [..]}`
//!   (`args` and `resources` may be left out).
//!
//! An argument is read as follows, only at the top level of `args`:
//!
//! - `{"$ref": "name"}` or `{"$ref": "name", "path": ["field", 0]}` is a
//!   typed reference; the path may also be a dotted string `"field.0"`, in
//!   which all-digit segments are indices;
//! - `{"$value": v}` is the literal `v`, whatever it looks like;
//! - a string exactly equal to the name of a command of the plan is a
//!   reference to that command's result, as in mpreg (a command's own name
//!   included, which makes it a self-reference and is rejected as a cycle);
//! - anything else is a literal.
//!
//! [`Plan::to_json`] writes the typed object form and wraps literals that
//! would read back as references in `{"$value": ..}`, so
//! `Plan::from_json(&plan.to_json())` gives back an equal plan.
//!
//! # Rendering
//!
//! [`render_json`] and [`PlanOutput`]'s `Display` print JSON exactly as
//! Python's `json.dumps` does by default, so outputs compare byte for byte
//! with mpreg's, e.g. `{"|second": "hi there!", "|third": ["hi there!", "AND ME TOO"]}`.
//!
//! # What this module does not do
//!
//! No I/O, no routing, no clock: how a command runs is the `run` callback
//! given to [`execute`]; a cluster passes one that calls a node having the
//! command's function and resources.

mod error;
mod exec;
mod json;
mod render;

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

pub use error::PlanError;
pub use exec::{PlanOutput, execute};
pub use render::render_json;

/// One step of a field path inside a command's result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSegment {
    /// A key of a JSON object.
    Key(String),
    /// An index into a JSON array. On an object it looks up the key spelled
    /// as the decimal number, so a dotted path `"a.0"` works on both.
    Index(usize),
}

impl From<&str> for PathSegment {
    fn from(key: &str) -> Self {
        Self::Key(key.to_owned())
    }
}

impl From<String> for PathSegment {
    fn from(key: String) -> Self {
        Self::Key(key)
    }
}

impl From<usize> for PathSegment {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

/// One argument of a [`Command`].
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A literal JSON value.
    Value(Value),
    /// The result of another command, or a field of it when `path` is not
    /// empty.
    Ref {
        /// The referenced command's name.
        command: String,
        /// The field path inside its result; empty for the whole result.
        path: Vec<PathSegment>,
    },
}

impl Arg {
    /// A literal argument.
    pub fn value(value: impl Into<Value>) -> Self {
        Self::Value(value.into())
    }

    /// A reference to the whole result of `command`.
    pub fn reference(command: impl Into<String>) -> Self {
        Self::Ref {
            command: command.into(),
            path: Vec::new(),
        }
    }

    /// A reference to a field of `command`'s result, e.g.
    /// `Arg::field("stats", ["rows".into(), 0.into()])`.
    pub fn field(command: impl Into<String>, path: impl IntoIterator<Item = PathSegment>) -> Self {
        Self::Ref {
            command: command.into(),
            path: path.into_iter().collect(),
        }
    }

    /// The referenced command, if this argument is a reference.
    pub fn referenced(&self) -> Option<&str> {
        match self {
            Self::Value(_) => None,
            Self::Ref { command, .. } => Some(command),
        }
    }
}

/// One named call of a plan: mpreg's `Command(name, function, args, resources)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Unique name within the plan; the key of its result in the output.
    pub name: String,
    /// The function to call.
    pub function: String,
    /// The arguments, literal or references.
    pub args: Vec<Arg>,
    /// Resources (datasets, models) the serving node must have.
    pub resources: BTreeSet<String>,
}

impl Command {
    /// A command without resources.
    pub fn new(name: impl Into<String>, function: impl Into<String>, args: Vec<Arg>) -> Self {
        Self {
            name: name.into(),
            function: function.into(),
            args,
            resources: BTreeSet::new(),
        }
    }

    /// Adds required resources.
    pub fn with_resources<S: Into<String>>(
        mut self,
        resources: impl IntoIterator<Item = S>,
    ) -> Self {
        self.resources.extend(resources.into_iter().map(Into::into));
        self
    }

    /// The names this command references, in argument order, repeats included.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.args.iter().filter_map(Arg::referenced)
    }
}

/// A validated plan: non-empty, unique non-empty names, every reference
/// resolvable, no cycles.
///
/// Build it with [`Plan::new`] or parse it with [`Plan::from_json`]; it
/// cannot be changed afterwards, so its levels and outputs stay valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    commands: Vec<Command>,
    /// Command indices per dependency level, each level in plan order.
    levels: Vec<Vec<usize>>,
    /// Indices of the commands no other command references, in plan order.
    outputs: Vec<usize>,
    /// How many argument references point at each command (repeats counted).
    uses: Vec<usize>,
    /// Command index by name.
    index: HashMap<String, usize>,
}

impl Plan {
    /// Validates `commands` and orders them into dependency levels.
    pub fn new(commands: Vec<Command>) -> Result<Self, PlanError> {
        if commands.is_empty() {
            return Err(PlanError::Empty);
        }
        let mut index = HashMap::with_capacity(commands.len());
        for (i, command) in commands.iter().enumerate() {
            if command.name.is_empty() {
                return Err(PlanError::EmptyName { index: i });
            }
            if index.insert(command.name.as_str(), i).is_some() {
                return Err(PlanError::DuplicateName {
                    name: command.name.clone(),
                });
            }
        }

        // deps[i]: the distinct commands i references; users[j]: the
        // distinct commands referencing j.
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); commands.len()];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); commands.len()];
        let mut uses = vec![0; commands.len()];
        for (i, command) in commands.iter().enumerate() {
            for target in command.references() {
                let Some(&j) = index.get(target) else {
                    return Err(PlanError::DanglingReference {
                        command: command.name.clone(),
                        target: target.to_owned(),
                    });
                };
                uses[j] += 1;
                deps[i].push(j);
            }
            deps[i].sort_unstable();
            deps[i].dedup();
            for &j in &deps[i] {
                users[j].push(i);
            }
        }

        // Kahn's algorithm, one level at a time, so that a command's level
        // is the length of its longest reference chain.
        let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut level: Vec<usize> = (0..commands.len()).filter(|&i| pending[i] == 0).collect();
        let mut levels = Vec::new();
        let mut placed = 0;
        while !level.is_empty() {
            placed += level.len();
            let mut next = Vec::new();
            for &j in &level {
                for &i in &users[j] {
                    pending[i] -= 1;
                    if pending[i] == 0 {
                        next.push(i);
                    }
                }
            }
            next.sort_unstable();
            levels.push(std::mem::replace(&mut level, next));
        }
        if placed < commands.len() {
            return Err(PlanError::Cycle {
                commands: find_cycle(&deps, &pending)
                    .into_iter()
                    .map(|i| commands[i].name.clone())
                    .collect(),
            });
        }

        let outputs = (0..commands.len())
            .filter(|&i| users[i].is_empty())
            .collect();
        let index = index
            .into_iter()
            .map(|(name, i)| (name.to_owned(), i))
            .collect();
        Ok(Self {
            commands,
            levels,
            outputs,
            uses,
            index,
        })
    }

    /// The commands, in plan order.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// Gives the commands back.
    pub fn into_commands(self) -> Vec<Command> {
        self.commands
    }

    /// The command called `name`.
    pub fn command(&self, name: &str) -> Option<&Command> {
        self.index.get(name).map(|&i| &self.commands[i])
    }

    /// The dependency levels, level 0 first, each in plan order. Commands of
    /// one level do not reference each other and run concurrently.
    pub fn levels(&self) -> impl ExactSizeIterator<Item = Vec<&Command>> {
        self.levels
            .iter()
            .map(|level| level.iter().map(|&i| &self.commands[i]).collect())
    }

    /// The names per dependency level, for docs and debugging.
    pub fn level_names(&self) -> Vec<Vec<&str>> {
        self.levels
            .iter()
            .map(|level| {
                level
                    .iter()
                    .map(|&i| self.commands[i].name.as_str())
                    .collect()
            })
            .collect()
    }

    /// The largest number of commands in one level: how many calls can be in
    /// flight together.
    pub fn max_parallelism(&self) -> usize {
        self.levels.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The commands no other command consumes, in plan order: the keys of
    /// the plan's output.
    pub fn outputs(&self) -> impl ExactSizeIterator<Item = &Command> {
        self.outputs.iter().map(|&i| &self.commands[i])
    }
}

impl std::str::FromStr for Plan {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_json_str(text)
    }
}

/// Finds one cycle among the commands Kahn's algorithm could not place
/// (`pending[i] > 0`) and returns it starting at its first command in plan
/// order.
///
/// Every unplaced command references at least one unplaced command, so
/// following such references from any unplaced command must revisit one.
fn find_cycle(deps: &[Vec<usize>], pending: &[usize]) -> Vec<usize> {
    let Some(start) = (0..pending.len()).find(|&i| pending[i] > 0) else {
        return Vec::new();
    };
    let mut seen_at = vec![None; pending.len()];
    let mut walk = Vec::new();
    let mut at = start;
    loop {
        if let Some(pos) = seen_at[at] {
            let mut cycle: Vec<usize> = walk.split_off(pos);
            let min = cycle
                .iter()
                .enumerate()
                .min_by_key(|&(_, &i)| i)
                .map_or(0, |(pos, _)| pos);
            cycle.rotate_left(min);
            return cycle;
        }
        seen_at[at] = Some(walk.len());
        walk.push(at);
        match deps[at].iter().find(|&&j| pending[j] > 0) {
            Some(&next) => at = next,
            // Unreachable by the argument above; report what was walked
            // rather than panic.
            None => return walk,
        }
    }
}
