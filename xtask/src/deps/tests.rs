//! Tests for the dependency rules, on small hand-written graphs.

use super::*;

/// Builds a workspace from `(package, normal dependencies)` lines.
/// Packages named `rpc-*` are members, libraries unless they end in
/// `-cli`; every other package is external. Each member's tree is
/// everything reachable from it through the lines.
fn workspace(lines: &[(&str, &[&str])]) -> Workspace {
    let deps_of = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|(package, _)| *package == name)
            .map(|(_, deps)| deps.to_vec())
            .unwrap_or_default()
    };
    let mut workspace = Workspace::default();
    for (name, _) in lines
        .iter()
        .filter(|(name, _)| name.starts_with(RPC_PREFIX))
    {
        let mut tree = Tree::default();
        let mut index_of = HashMap::from([(name.to_string(), 0)]);
        tree.nodes.push(Node {
            name: name.to_string(),
            deps: Vec::new(),
        });
        let mut queue = VecDeque::from([0]);
        while let Some(current) = queue.pop_front() {
            for dep in deps_of(&tree.nodes[current].name.clone()) {
                let index = *index_of.entry(dep.to_owned()).or_insert_with(|| {
                    tree.nodes.push(Node {
                        name: dep.to_owned(),
                        deps: Vec::new(),
                    });
                    queue.push_back(tree.nodes.len() - 1);
                    tree.nodes.len() - 1
                });
                tree.nodes[current].deps.push(index);
            }
        }
        let has_bin = name.ends_with("-cli");
        workspace.members.push(Member {
            name: name.to_string(),
            has_lib: !has_bin,
            has_bin,
            path_deps: Vec::new(),
            tree,
        });
    }
    workspace
}

#[track_caller]
fn check_rules(lines: &[(&str, &[&str])], expect: &[&str]) {
    assert_eq!(check(&workspace(lines)), expect);
}

#[test]
fn the_intended_layout_passes() {
    check_rules(
        &[
            ("rpc-core", &["tokio", "bytes"]),
            ("rpc-transport-tcp", &["rpc-core", "socket2"]),
            ("rpc-transport-shm", &["rpc-core", "memmap2"]),
            ("rpc-transport-ib", &["rpc-core", "rdma-sys"]),
            ("rpc-tensor", &["rpc-core"]),
            ("rpc-discovery", &["rpc-core"]),
            ("rpc-graph", &["rpc-core", "rpc-tensor", "rpc-discovery"]),
            (
                "rpc-cli",
                &["rpc-graph", "rpc-transport-tcp", "rpc-transport-ib"],
            ),
            ("rpc-bench", &["rpc-core", "rpc-transport-shm"]),
        ],
        &[],
    );
}

#[test]
fn core_must_not_reach_backends_even_indirectly() {
    check_rules(
        &[("rpc-core", &["tokio"]), ("tokio", &["mio", "socket2"])],
        &[
            "rpc-core has no transitive dependency on socket2, memmap2 or rdma-sys: \
           rpc-core depends on socket2 (normal dependencies: rpc-core -> tokio -> socket2)",
        ],
    );
}

#[test]
fn transports_must_not_depend_on_each_other() {
    check_rules(
        &[
            ("rpc-transport-tcp", &["rpc-core"]),
            ("rpc-transport-shm", &["rpc-core", "rpc-transport-tcp"]),
        ],
        &["a transport depends on no workspace crate but rpc-core: \
           rpc-transport-shm depends on rpc-transport-tcp \
           (normal dependencies: rpc-transport-shm -> rpc-transport-tcp)"],
    );
}

#[test]
fn libraries_must_not_use_concrete_transports() {
    check_rules(
        &[
            ("rpc-discovery", &["rpc-transport-tcp"]),
            ("rpc-graph", &["rpc-discovery"]),
        ],
        &[
            "library crates depend on no concrete transport: rpc-discovery depends on \
             rpc-transport-tcp (normal dependencies: rpc-discovery -> rpc-transport-tcp)",
            "library crates depend on no concrete transport: rpc-graph depends on \
             rpc-transport-tcp (normal dependencies: rpc-graph -> rpc-discovery -> \
             rpc-transport-tcp)",
        ],
    );
}

#[test]
fn only_the_ib_transport_may_use_rdma_sys() {
    check_rules(
        &[("rpc-transport-shm", &["rdma-sys"])],
        &[
            "only rpc-transport-ib depends on rdma-sys: rpc-transport-shm depends on \
           rdma-sys (normal dependencies: rpc-transport-shm -> rdma-sys)",
        ],
    );
}

#[track_caller]
fn check_path_dep(req: &str, kind: &str, is_self: bool, expect: &[&str]) {
    let mut workspace = workspace(&[("rpc-transport-tcp", &[])]);
    workspace.members[0].path_deps.push(PathDep {
        name: "rpc-core".to_owned(),
        req: req.to_owned(),
        kind: kind.to_owned(),
        is_self,
    });
    assert_eq!(check_path_versions(&workspace), expect);
}

#[test]
fn path_dependencies_carry_a_version() {
    check_path_dep("^0.1.0", "normal", false, &[]);
    check_path_dep("*", "dev", true, &[]);
    check_path_dep(
        "*",
        "dev",
        false,
        &[
            "every path dependency carries a version: rpc-transport-tcp has dev dependency \
           rpc-core with a path but no version (use `rpc-core.workspace = true`)",
        ],
    );
}

#[track_caller]
fn check_tree(output: &str, expect: &[(&str, &[&str])]) {
    let tree = Tree::parse(output).unwrap();
    let actual: Vec<(&str, Vec<&str>)> = tree
        .nodes
        .iter()
        .map(|node| {
            let deps = node.deps.iter().map(|&i| tree.nodes[i].name.as_str());
            (node.name.as_str(), deps.collect())
        })
        .collect();
    let expect: Vec<(&str, Vec<&str>)> = expect
        .iter()
        .map(|(name, deps)| (*name, deps.to_vec()))
        .collect();
    assert_eq!(actual, expect);
}

#[test]
fn parses_cargo_tree_output() {
    check_tree(
        "0rpc-core v0.1.0 (/w/crates/rpc-core)\n",
        &[("rpc-core", &[])],
    );
    check_tree(
        "0rpc-transport-tcp v0.1.0 (/w/crates/rpc-transport-tcp)\n\
         1rpc-core v0.1.0 (/w/crates/rpc-core)\n\
         2tokio v1.47.1\n\
         3pin-project-lite v0.2.16\n\
         1socket2 v0.6.0\n\
         1tokio v1.47.1 (*)\n\
         1async-trait v0.1.89 (proc-macro)\n",
        &[
            (
                "rpc-transport-tcp",
                &["rpc-core", "socket2", "tokio", "async-trait"],
            ),
            ("rpc-core", &["tokio"]),
            ("tokio", &["pin-project-lite"]),
            ("pin-project-lite", &[]),
            ("socket2", &[]),
            ("async-trait", &[]),
        ],
    );
    assert!(Tree::parse("").is_err());
    assert!(Tree::parse("0a v1\n2b v1\n").is_err());
}
