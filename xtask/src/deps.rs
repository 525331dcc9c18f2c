//! `cargo xtask deps`: who may depend on whom.
//!
//! The rules are data ([`RULES`]) checked generically against every
//! workspace member, so a new crate is covered the moment it joins the
//! workspace. Each member's dependencies come from its own
//! `cargo tree -p NAME -e normal --all-features --target all`:
//!
//! - only *normal* edges count: tests, examples and benches may use concrete
//!   transports through dev-dependencies;
//! - features are resolved for that member alone, as a user of the crate
//!   would get them, not unified across the workspace (where
//!   `rpc-transport-tcp` turning on `tokio/net` would pull socket2 into
//!   everyone's graph);
//! - `--all-features` and `--target all` put optional and platform-specific
//!   dependencies in the graph too, so a forbidden edge cannot hide behind a
//!   feature or a `cfg`.
//!
//! Besides the table, every path dependency must carry a `version`
//! ([`check_path_versions`]), so the crates stay publishable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{cargo, project_root};

/// Name prefix of the workspace's own crates.
const RPC_PREFIX: &str = "rpc-";
/// Name prefix of the transport crates.
const TRANSPORT_PREFIX: &str = "rpc-transport-";
/// Name suffixes of application crates (a CLI, a benchmark harness): like
/// binaries, they may link concrete transports, so they are not "libraries".
const APPLICATION_SUFFIXES: &[&str] = &["-cli", "-bench", "-benches"];

/// Every dependency rule, checked in order.
const RULES: &[Rule] = &[
    Rule {
        name: "rpc-core has no transitive dependency on socket2, memmap2 or rdma-sys",
        subject: Pkgs::Named("rpc-core"),
        forbidden: Pkgs::AnyOf(&[
            Pkgs::Named("socket2"),
            Pkgs::Named("memmap2"),
            Pkgs::Named("rdma-sys"),
        ]),
        reach: Reach::Transitive,
    },
    Rule {
        name: "a transport depends on no workspace crate but rpc-core",
        subject: Pkgs::Prefixed(TRANSPORT_PREFIX),
        forbidden: Pkgs::Except(&Pkgs::Workspace, &Pkgs::Named("rpc-core")),
        reach: Reach::Direct,
    },
    Rule {
        name: "library crates depend on no concrete transport",
        subject: Pkgs::Libraries,
        forbidden: Pkgs::Prefixed(TRANSPORT_PREFIX),
        reach: Reach::Transitive,
    },
    Rule {
        name: "only rpc-transport-ib depends on rdma-sys",
        subject: Pkgs::Except(&Pkgs::Workspace, &Pkgs::Named("rpc-transport-ib")),
        forbidden: Pkgs::Named("rdma-sys"),
        reach: Reach::Direct,
    },
];

/// One rule: no package in `subject` reaches a package in `forbidden`.
struct Rule {
    /// What the rule says, printed with each violation.
    name: &'static str,
    /// The workspace packages the rule constrains.
    subject: Pkgs,
    /// The packages they must not depend on.
    forbidden: Pkgs,
    /// Whether only direct dependencies count, or the whole closure.
    reach: Reach,
}

/// A set of packages, described by name.
enum Pkgs {
    /// The package with exactly this name.
    Named(&'static str),
    /// Every package whose name starts with this prefix.
    Prefixed(&'static str),
    /// Every workspace member.
    Workspace,
    /// Workspace library crates: `rpc-*` members with a library target that
    /// are neither transports nor applications (no binary target, no
    /// [`APPLICATION_SUFFIXES`]).
    Libraries,
    /// Packages in any of these sets.
    AnyOf(&'static [Self]),
    /// Packages in the first set but not the second.
    Except(&'static Self, &'static Self),
}

/// How far along normal dependencies a rule looks.
#[derive(Clone, Copy)]
enum Reach {
    /// Only the subject's own dependencies.
    Direct,
    /// Dependencies of dependencies too, however deep.
    Transitive,
}

/// The workspace members, each with its own normal dependency tree.
#[derive(Debug, Default)]
struct Workspace {
    /// Every workspace member, in `cargo metadata` order.
    members: Vec<Member>,
}

/// One workspace member.
#[derive(Debug, Default)]
struct Member {
    /// The package name.
    name: String,
    /// Whether it has a library target.
    has_lib: bool,
    /// Whether it has a binary target.
    has_bin: bool,
    /// Its path dependencies, as declared in its manifest.
    path_deps: Vec<PathDep>,
    /// Its normal dependencies, with features resolved for it alone.
    tree: Tree,
}

/// A declared dependency with a `path`.
#[derive(Debug)]
struct PathDep {
    /// The dependency's package name.
    name: String,
    /// Its version requirement; `*` when the manifest gives none.
    req: String,
    /// `normal`, `dev` or `build`.
    kind: String,
    /// Whether it points at the depending package itself (the usual way to
    /// turn on a test-only feature in the crate's own tests).
    is_self: bool,
}

/// A dependency graph as `cargo tree` prints it; node 0 is the root.
#[derive(Debug, Default)]
struct Tree {
    /// Every package reached, each once.
    nodes: Vec<Node>,
}

/// One package of a [`Tree`].
#[derive(Debug)]
struct Node {
    /// The package name, without its version.
    name: String,
    /// Indices of the packages it depends on directly.
    deps: Vec<usize>,
}

/// Runs the dependency-rule check on this workspace.
pub(crate) fn run() -> Result<()> {
    let workspace = Workspace::load()?;
    let violations = check(&workspace);
    for violation in &violations {
        eprintln!("error: {violation}");
    }
    let count = workspace.members.len();
    if !violations.is_empty() {
        bail!(
            "dependency rules: {} violation(s) among {count} workspace packages",
            violations.len()
        );
    }
    println!(
        "dependency rules: {} rules and path versions hold for {count} workspace packages",
        RULES.len()
    );
    Ok(())
}

/// Every violation of [`RULES`] and of the path-version rule, one message
/// each, naming the package and the offending dependency path.
fn check(workspace: &Workspace) -> Vec<String> {
    let mut violations = Vec::new();
    for rule in RULES {
        for member in &workspace.members {
            if !rule.subject.contains(&member.name, workspace) {
                continue;
            }
            let is_forbidden = |name: &str| rule.forbidden.contains(name, workspace);
            for path in member.tree.paths_to(is_forbidden, rule.reach) {
                violations.push(format!(
                    "{}: {} depends on {} (normal dependencies: {})",
                    rule.name,
                    member.name,
                    path.last().map_or("?", String::as_str),
                    path.join(" -> ")
                ));
            }
        }
    }
    violations.extend(check_path_versions(workspace));
    violations
}

/// Every path dependency carries a `version`, so the crate can be published.
///
/// A crate's dev-dependency on itself is exempt: it only turns on features
/// for its own tests, and `cargo publish` drops it.
fn check_path_versions(workspace: &Workspace) -> Vec<String> {
    let mut violations = Vec::new();
    for member in &workspace.members {
        for dep in &member.path_deps {
            if dep.req == "*" && !dep.is_self {
                violations.push(format!(
                    "every path dependency carries a version: {} has {} dependency {} \
                     with a path but no version (use `{}.workspace = true`)",
                    member.name, dep.kind, dep.name, dep.name
                ));
            }
        }
    }
    violations
}

impl Pkgs {
    /// Whether the package called `name` is in this set.
    fn contains(&self, name: &str, workspace: &Workspace) -> bool {
        match self {
            Self::Named(wanted) => name == *wanted,
            Self::Prefixed(prefix) => name.starts_with(prefix),
            Self::Workspace => workspace.member(name).is_some(),
            Self::Libraries => workspace.member(name).is_some_and(|member| {
                name.starts_with(RPC_PREFIX)
                    && !name.starts_with(TRANSPORT_PREFIX)
                    && member.has_lib
                    && !member.has_bin
                    && !APPLICATION_SUFFIXES
                        .iter()
                        .any(|suffix| name.ends_with(suffix))
            }),
            Self::AnyOf(sets) => sets.iter().any(|set| set.contains(name, workspace)),
            Self::Except(included, excluded) => {
                included.contains(name, workspace) && !excluded.contains(name, workspace)
            }
        }
    }
}

impl Workspace {
    /// Reads the members from `cargo metadata`, then each member's tree from
    /// `cargo tree`.
    fn load() -> Result<Self> {
        let metadata: Value = serde_json::from_str(&cargo_stdout(&[
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--locked",
        ])?)
        .context("`cargo metadata` printed invalid JSON")?;
        let packages = metadata["packages"]
            .as_array()
            .context("`cargo metadata`: `packages` is missing")?;
        let mut members = Vec::with_capacity(packages.len());
        for package in packages {
            let mut member = Member::from_metadata(package)?;
            member.tree = Tree::parse(&cargo_stdout(&[
                "tree",
                "--package",
                &member.name,
                "--edges",
                "normal",
                "--all-features",
                "--target",
                "all",
                "--locked",
                "--prefix",
                "depth",
                "--format",
                "{p}",
            ])?)
            .with_context(|| format!("could not read `cargo tree` for {}", member.name))?;
            members.push(member);
        }
        Ok(Self { members })
    }

    /// The workspace member called `name`, if there is one.
    fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.name == name)
    }
}

impl Member {
    /// Reads one entry of `cargo metadata --no-deps`'s `packages`; its tree
    /// is filled in later.
    fn from_metadata(raw: &Value) -> Result<Self> {
        let name = str_field(raw, "name")?.to_owned();
        let target_kinds: Vec<&str> = raw["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|target| target["kind"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let has_lib = target_kinds
            .iter()
            .any(|kind| matches!(*kind, "lib" | "rlib" | "dylib" | "proc-macro"));
        let has_bin = target_kinds.contains(&"bin");
        let manifest_dir = Path::new(str_field(raw, "manifest_path")?).parent();
        let mut path_deps = Vec::new();
        for dep in raw["dependencies"].as_array().into_iter().flatten() {
            let Some(path) = dep["path"].as_str() else {
                continue;
            };
            path_deps.push(PathDep {
                name: str_field(dep, "name")?.to_owned(),
                req: str_field(dep, "req")?.to_owned(),
                kind: dep["kind"].as_str().unwrap_or("normal").to_owned(),
                is_self: manifest_dir == Some(Path::new(path)),
            });
        }
        Ok(Self {
            name,
            has_lib,
            has_bin,
            path_deps,
            tree: Tree::default(),
        })
    }
}

impl Tree {
    /// Parses `cargo tree --prefix depth --format {p}`: one package a line,
    /// after its depth, as `name vVERSION`, then maybe `(path)`,
    /// `(proc-macro)` or `(*)` for a subtree already shown.
    fn parse(output: &str) -> Result<Self> {
        let mut tree = Self::default();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        // The chain of ancestors of the current line, one per depth.
        let mut ancestors: Vec<usize> = Vec::new();
        for line in output.lines().filter(|line| !line.trim().is_empty()) {
            let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let depth: usize = line[..digits]
                .parse()
                .with_context(|| format!("no depth prefix on {line:?}"))?;
            let mut words = line[digits..].split_whitespace();
            let name = words.next().context("empty line")?;
            let version = words.next().unwrap_or_default();
            let key = format!("{name} {version}");
            let index = *index_of.entry(key).or_insert_with(|| {
                tree.nodes.push(Node {
                    name: name.to_owned(),
                    deps: Vec::new(),
                });
                tree.nodes.len() - 1
            });
            if depth > ancestors.len() {
                bail!("depth jumps to {depth} on {line:?}");
            }
            ancestors.truncate(depth);
            if let Some(&parent) = ancestors.last()
                && !tree.nodes[parent].deps.contains(&index)
            {
                tree.nodes[parent].deps.push(index);
            }
            ancestors.push(index);
        }
        if tree.nodes.is_empty() {
            bail!("`cargo tree` printed no packages");
        }
        Ok(tree)
    }

    /// The dependency paths from the root to packages for which
    /// `is_forbidden` holds: for [`Reach::Direct`] the direct ones, for
    /// [`Reach::Transitive`] the shortest path to each one reached.
    fn paths_to(&self, is_forbidden: impl Fn(&str) -> bool, reach: Reach) -> Vec<Vec<String>> {
        let mut paths = Vec::new();
        // Breadth-first, remembering each package's parent to rebuild paths.
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([0]);
        let mut seen = HashSet::from([0]);
        while let Some(current) = queue.pop_front() {
            for &next in &self.nodes[current].deps {
                if !seen.insert(next) {
                    continue;
                }
                parent.insert(next, current);
                if is_forbidden(&self.nodes[next].name) {
                    paths.push(self.path(next, &parent));
                }
                if let Reach::Transitive = reach {
                    queue.push_back(next);
                }
            }
        }
        paths
    }

    /// The package names from the root to `to`, following `parent` links.
    fn path(&self, to: usize, parent: &HashMap<usize, usize>) -> Vec<String> {
        let mut path = vec![self.nodes[to].name.clone()];
        let mut current = to;
        while let Some(&up) = parent.get(&current) {
            current = up;
            path.push(self.nodes[current].name.clone());
        }
        path.reverse();
        path
    }
}

/// Runs `cargo` with `args` in the workspace root and returns what it
/// printed, failing with its stderr unless it succeeds.
fn cargo_stdout(args: &[&str]) -> Result<String> {
    let shown = format!("cargo {}", args.join(" "));
    println!("$ {shown}");
    let output = Command::new(cargo())
        .args(args)
        .current_dir(project_root())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !output.status.success() {
        bail!(
            "`{shown}` exited with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed invalid UTF-8"))
}

/// The string field `key` of a JSON object.
fn str_field<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value[key]
        .as_str()
        .with_context(|| format!("`cargo metadata`: field `{key}` is missing or not a string"))
}

#[cfg(test)]
mod tests;
