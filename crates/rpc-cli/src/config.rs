//! The TOML file of `rpc node`.
//!
//! ```toml
//! name = "node-1"
//! listen = ["tcp://127.0.0.1:7773"]      # also shm://NAME for same-host peers
//! seeds = ["tcp://127.0.0.1:7774"]       # any live node; empty for the first
//! resources = ["model-a"]                # none: a balancer
//! functions = ["echo", "echos", "sum"]   # built-ins to register
//! # advertise = []                       # behind NAT: others cannot dial us
//!
//! [membership]                           # optional, milliseconds
//! probe_period_ms = 1000
//! suspect_to_down_after_ms = 3000
//! show_down_for_ms = 300000              # how long `rpc members` lists a down member
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// A node's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeConfig {
    /// The node's name in the cluster.
    pub name: String,
    /// Addresses to listen on.
    pub listen: Vec<String>,
    /// Nodes to join through (the first that answers).
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Resources (datasets, models) to advertise.
    #[serde(default)]
    pub resources: BTreeSet<String>,
    /// Built-in functions to register.
    #[serde(default)]
    pub functions: Vec<String>,
    /// Addresses to advertise instead of the listen addresses.
    pub advertise: Option<Vec<String>>,
    /// Timings of the membership protocol.
    #[serde(default)]
    pub membership: MembershipToml,
}

/// Optional membership timings, in milliseconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembershipToml {
    pub probe_period_ms: Option<u64>,
    pub probe_rtt_ms: Option<u64>,
    pub suspect_to_down_after_ms: Option<u64>,
    pub gossip_period_ms: Option<u64>,
    pub show_down_for_ms: Option<u64>,
}

impl NodeConfig {
    /// Reads and checks a configuration file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses and checks the text of a configuration file; `path` names it
    /// in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: Self =
            toml::from_str(text).with_context(|| format!("invalid config {}", path.display()))?;
        if config.listen.is_empty() && config.seeds.is_empty() {
            bail!("{}: a node needs listen addresses or seeds", path.display());
        }
        for f in &config.functions {
            if !rpc_discovery::BUILTINS.contains(&f.as_str()) {
                bail!(
                    "{}: no built-in function {f:?}; built-ins are {:?}",
                    path.display(),
                    rpc_discovery::BUILTINS
                );
            }
        }
        Ok(config)
    }

    /// The discovery settings it describes.
    pub(crate) fn discovery(&self) -> rpc_discovery::DiscoveryConfig {
        let mut c = rpc_discovery::DiscoveryConfig::default();
        c.resources = self.resources.clone();
        c.advertise = self.advertise.clone();
        let m = &self.membership;
        let ms = Duration::from_millis;
        if let Some(v) = m.probe_period_ms {
            c.membership.probe_period = ms(v);
        }
        if let Some(v) = m.probe_rtt_ms {
            c.membership.probe_rtt = ms(v);
        }
        if let Some(v) = m.suspect_to_down_after_ms {
            c.membership.suspect_to_down_after = ms(v);
        }
        if let Some(v) = m.gossip_period_ms {
            c.membership.gossip_period = ms(v);
        }
        if let Some(v) = m.show_down_for_ms {
            c.membership.show_down_for = ms(v);
        }
        c
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's cluster files stay valid.
    #[test]
    fn the_readme_cluster_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster");
        let names: Vec<String> = (1..=3)
            .map(|i| {
                NodeConfig::load(&dir.join(format!("node-{i}.toml")))
                    .unwrap()
                    .name
            })
            .collect();
        assert_eq!(names, ["node-1", "node-2", "node-3"]);
        let balancer = NodeConfig::load(&dir.join("node-3.toml")).unwrap();
        assert!(balancer.discovery().resources.is_empty());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                rpc_discovery::plan::Plan::from_json_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }

    #[test]
    fn bad_configs_are_errors_naming_the_problem() {
        let dir = std::env::temp_dir().join(format!("rpc-cli-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let e = NodeConfig::load(&write(
            "a.toml",
            "name = \"x\"\nlisten = [\"tcp://127.0.0.1:1\"]\nfunctions = [\"nope\"]\n",
        ))
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("no built-in function \"nope\""),
            "{e:#}"
        );
        let e = NodeConfig::load(&write("b.toml", "name = \"x\"\nlisten = []\n")).unwrap_err();
        assert!(
            format!("{e:#}").contains("needs listen addresses or seeds"),
            "{e:#}"
        );
        let e = NodeConfig::load(&write(
            "c.toml",
            "name = \"x\"\nlisten = [\"a\"]\ncolour = 1\n",
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains("colour"), "{e:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
