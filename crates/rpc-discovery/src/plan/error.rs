//! The one error type of plan validation, parsing and execution.

use std::convert::Infallible;
use std::fmt;

use super::PathSegment;

/// Why a plan was rejected or failed.
///
/// `E` is the error type of the `run` callback given to
/// [`execute`](super::execute). Validation and parsing cannot fail with it,
/// so they return `PlanError<Infallible>` (the default, written `PlanError`);
/// [`PlanError::cast`] turns such an error into any `PlanError<E>`.
///
/// Every variant names the command(s) it is about, so a caller can point at
/// the offending line of the plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError<E = Infallible> {
    /// The plan has no commands.
    #[error("plan has no commands")]
    Empty,
    /// A command has an empty name; an empty name would make every empty
    /// string argument a reference in the mpreg JSON form.
    #[error("command #{index} has an empty name")]
    EmptyName {
        /// Position of the command in the plan, from 0.
        index: usize,
    },
    /// Two commands share a name.
    #[error("duplicate command name {name:?}")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A typed reference names a command that is not in the plan.
    #[error("command {command:?} references unknown command {target:?}")]
    DanglingReference {
        /// The command holding the reference.
        command: String,
        /// The missing command it references.
        target: String,
    },
    /// The references form a cycle (a command referencing itself included).
    #[error("reference cycle {}", CycleDisplay(.commands))]
    Cycle {
        /// The commands of one cycle in reference order: each references
        /// the next, and the last references the first.
        commands: Vec<String>,
    },
    /// The plan's JSON text is not valid JSON.
    #[error("plan is not valid JSON")]
    Parse(#[source] serde_json::Error),
    /// The plan's JSON is valid JSON but not a plan.
    #[error("invalid plan JSON at {at}: {reason}")]
    InvalidJson {
        /// Where in the document, e.g. `[1].args[0]`.
        at: String,
        /// What was expected there.
        reason: String,
    },
    /// A field reference points at a field the referenced result lacks.
    #[error("command {command:?}: result of {target:?} has no field {}", PathDisplay(.path))]
    MissingField {
        /// The command whose argument could not be resolved.
        command: String,
        /// The command whose result was indexed.
        target: String,
        /// The full path of the reference.
        path: Vec<PathSegment>,
    },
    /// A command's `run` returned an error; the plan stops at that level.
    #[error("command {command:?} (function {function:?}) failed")]
    CommandFailed {
        /// The failing command.
        command: String,
        /// Its function.
        function: String,
        /// The error `run` returned.
        #[source]
        source: E,
    },
}

impl PlanError<Infallible> {
    /// Re-types a validation or parse error for a context with a `run`
    /// error type, such as a function that both parses and executes a plan.
    pub fn cast<E>(self) -> PlanError<E> {
        match self {
            Self::Empty => PlanError::Empty,
            Self::EmptyName { index } => PlanError::EmptyName { index },
            Self::DuplicateName { name } => PlanError::DuplicateName { name },
            Self::DanglingReference { command, target } => {
                PlanError::DanglingReference { command, target }
            }
            Self::Cycle { commands } => PlanError::Cycle { commands },
            Self::Parse(e) => PlanError::Parse(e),
            Self::InvalidJson { at, reason } => PlanError::InvalidJson { at, reason },
            Self::MissingField {
                command,
                target,
                path,
            } => PlanError::MissingField {
                command,
                target,
                path,
            },
            Self::CommandFailed { source, .. } => match source {},
        }
    }
}

/// Formats a cycle as `a -> b -> a`.
struct CycleDisplay<'a>(&'a [String]);

impl fmt::Display for CycleDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in self.0 {
            write!(f, "{name:?} -> ")?;
        }
        match self.0.first() {
            Some(first) => write!(f, "{first:?}"),
            None => Ok(()),
        }
    }
}

/// Formats a field path as `.field[0]`.
pub(super) struct PathDisplay<'a>(pub(super) &'a [PathSegment]);

impl fmt::Display for PathDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in self.0 {
            match segment {
                PathSegment::Key(key) => write!(f, ".{key}")?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}
