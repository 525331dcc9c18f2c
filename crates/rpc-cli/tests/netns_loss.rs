//! Loss on real sockets: three `rpc node` processes in a network namespace
//! of the test's own, whose loopback drops 5 % of packets at random
//! (iptables' `statistic` match). Plans still succeed, and the membership
//! stays stable: no node declares another down.
//!
//! Needs root, `ip netns` and iptables (`.ci/run` installs iptables). Where
//! any of them is missing, the test says so and passes without running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Far above what convergence and a plan take under 5 % loss.
const DEADLINE: Duration = Duration::from_secs(120);
const PLANS: usize = 60;

/// The namespace and the node processes in it, removed however the test
/// ends.
struct Netns {
    name: String,
    nodes: Vec<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Netns {
    /// A command run inside the namespace.
    fn exec(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The namespace with a lossy loopback, or why it cannot be made here.
fn lossy_netns() -> Result<Netns, String> {
    let name = format!("rpc-loss-{}", std::process::id());
    run(Command::new("ip").args(["netns", "add", &name]))
        .map_err(|e| format!("`ip netns add` failed (not root, or no iproute2?): {e}"))?;
    let ns = Netns {
        name,
        nodes: Vec::new(),
    };
    run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
    run(Command::new("ip").args([
        "netns",
        "exec",
        &ns.name,
        "iptables",
        "-A",
        "INPUT",
        "-i",
        "lo",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.05",
        "-j",
        "DROP",
    ]))
    .map_err(|e| format!("iptables' random drop is not available: {e}"))?;
    Ok(ns)
}

fn start(ns: &Netns, dir: &Path, name: &str, port: u16, seed: Option<u16>) -> Child {
    let seeds = seed
        .map(|p| format!("\"tcp://127.0.0.1:{p}\""))
        .unwrap_or_default();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "name = \"{name}\"\nlisten = [\"tcp://127.0.0.1:{port}\"]\nseeds = [{seeds}]\n\
             resources = [\"model-a\"]\nfunctions = [\"echo\", \"echos\", \"sum\"]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut child = ns
        .exec(Path::new(env!("CARGO_BIN_EXE_rpc")))
        .args(["node", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn,rpc_discovery::membership=debug")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("node ready"), "{name}: {line:?}");
    child
}

/// `rpc members` of the node at `port`, run inside the namespace.
fn members(ns: &Netns, port: u16) -> Result<String, String> {
    run(ns.exec(Path::new(env!("CARGO_BIN_EXE_rpc"))).args([
        "members",
        "--node",
        &format!("tcp://127.0.0.1:{port}"),
    ]))
}

fn all_alive(text: &str) -> bool {
    text.lines().filter(|l| l.contains("Alive")).count() == 2
}

#[test]
fn three_nodes_at_five_percent_loss_serve_plans_and_keep_their_membership() {
    let mut ns = match lossy_netns() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("SKIPPED: loss on real sockets needs root, ip netns and iptables: {why}");
            return;
        }
    };
    let dir: PathBuf = std::env::temp_dir().join(format!("rpc-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Ports inside the namespace are all free.
    let ports = [7801, 7802, 7803];
    ns.nodes.push(start(&ns, &dir, "node-1", ports[0], None));
    ns.nodes
        .push(start(&ns, &dir, "node-2", ports[1], Some(ports[0])));
    ns.nodes
        .push(start(&ns, &dir, "node-3", ports[2], Some(ports[0])));

    let started = Instant::now();
    for port in ports {
        loop {
            if members(&ns, port).is_ok_and(|t| all_alive(&t)) {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "never converged");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!("converged under loss in {:?}", started.elapsed());

    let plan = dir.join("plan.json");
    std::fs::write(
        &plan,
        r#"[["a", "echo", ["x"], ["model-a"]], ["b", "sum", [1, 2], ["model-a"]]]"#,
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..PLANS {
        let port = ports[i % 3];
        let out = run(ns
            .exec(Path::new(env!("CARGO_BIN_EXE_rpc")))
            .args(["plan", "--node", &format!("tcp://127.0.0.1:{port}")])
            .arg(&plan));
        assert_eq!(
            out,
            Ok("{\"a\": \"x\", \"b\": 3}\n".to_owned()),
            "plan {i} through node on port {port}"
        );
    }
    eprintln!("{PLANS} plans under 5 % loss in {:?}", t.elapsed());

    // Still all alive, and nobody was ever declared down.
    for port in ports {
        let text = members(&ns, port).unwrap();
        assert!(all_alive(&text), "{text}");
    }
    for name in ["node-1", "node-2", "node-3"] {
        let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap();
        // The log does carry the membership's changes...
        assert!(
            log.contains("member up"),
            "{name}: no membership log:\n{log}"
        );
        // ...and none of them is a member going down.
        assert!(
            !log.contains("member down"),
            "{name} declared a member down under 5 % loss:\n{log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
