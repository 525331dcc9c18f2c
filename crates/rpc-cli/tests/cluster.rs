//! Three `rpc node` processes on loopback started from TOML files: plans
//! run through any of them, and after one is killed the survivors serve.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rpc_core::Rpc;
use rpc_discovery::plan::Plan;
use rpc_transport_tcp::TcpTransport;

/// Far above what startup and failure detection take.
const DEADLINE: Duration = Duration::from_secs(60);

/// Kills the node processes when the test ends, however it ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rpc-cli-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `rpc node` with `config` and waits for its ready line.
fn start(dir: &Path, name: &str, config: &str) -> Child {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc"))
        .args(["node", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(DEADLINE)
        .expect("the node printed no ready line");
    assert!(line.starts_with("node ready: "), "{line}");
    child
}

fn config(name: &str, port: u16, seed: Option<u16>, resources: &[&str]) -> String {
    let seeds = seed
        .map(|p| format!("\"tcp://127.0.0.1:{p}\""))
        .unwrap_or_default();
    let res: Vec<String> = resources.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "name = \"{name}\"\nlisten = [\"tcp://127.0.0.1:{port}\"]\nseeds = [{seeds}]\n\
         resources = [{}]\nfunctions = [\"echo\", \"echos\", \"sum\"]\n\n\
         [membership]\nprobe_period_ms = 200\nprobe_rtt_ms = 100\nsuspect_to_down_after_ms = 600\n",
        res.join(", ")
    )
}

/// Starts node-1 (the seed) and node-2 with the given resources, and the
/// balancer node-3, from TOML files in `dir`; returns them and their ports.
fn three_nodes(dir: &Path, first: &[&str], second: &[&str]) -> (Nodes, [u16; 3]) {
    let ports = [free_port(), free_port(), free_port()];
    let [p1, p2, p3] = ports;
    let nodes = Nodes(vec![
        start(dir, "node-1", &config("node-1", p1, None, first)),
        start(dir, "node-2", &config("node-2", p2, Some(p1), second)),
        start(dir, "node-3", &config("node-3", p3, Some(p1), &[])),
    ]);
    (nodes, ports)
}

/// A plain TCP client connected to the node at `port`; returns it and the
/// node's name.
async fn client_of(port: u16) -> (Rpc, String) {
    let client = Rpc::new();
    client.add_transport(TcpTransport::new());
    let name = client
        .connect(&format!("tcp://127.0.0.1:{port}"))
        .unwrap()
        .established(DEADLINE)
        .await
        .unwrap();
    (client, name)
}

/// Runs `plan` through the node at `port` until `ok` accepts the outcome.
async fn until(
    client: &Rpc,
    node: &str,
    plan: &str,
    mut ok: impl FnMut(&Result<String, String>) -> bool,
) -> Result<String, String> {
    let plan = Plan::from_json_str(plan).unwrap();
    let started = Instant::now();
    loop {
        let r = rpc_discovery::request(client, node, &plan, Duration::from_secs(10))
            .await
            .map(|r| r.to_string())
            .map_err(|e| {
                format!(
                    "{e}: {:?}",
                    std::error::Error::source(&e).map(ToString::to_string)
                )
            });
        if ok(&r) {
            return r;
        }
        assert!(started.elapsed() < DEADLINE, "gave up; last outcome {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the node `node` lists every one of `names` as alive and
/// directly linked (`rpc members`' function).
async fn until_direct(client: &Rpc, node: &str, names: &[&str]) {
    let started = Instant::now();
    loop {
        let text: String = client
            .call(node, "__cli.members", &())
            .await
            .unwrap_or_default();
        let ok = names.iter().all(|n| {
            text.lines()
                .any(|l| l.trim_start().starts_with(n) && l.contains("Alive direct"))
        });
        if ok {
            return;
        }
        assert!(started.elapsed() < DEADLINE, "never converged:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_of_one_replica_every_plan_is_served_by_the_other() {
    let dir = scratch_dir().join("replicas");
    std::fs::create_dir_all(&dir).unwrap();
    let (mut nodes, [_, p2, p3]) = three_nodes(&dir, &["model-a"], &["model-a"]);
    let (client, node3) = client_of(p3).await;
    // A second client, linked to node-2 itself.
    let (direct, node2) = client_of(p2).await;
    until_direct(&client, &node3, &["node-1", "node-2"]).await;
    let plan = Plan::from_json_str(r#"[["a", "echo", ["x"], ["model-a"]]]"#).unwrap();

    // SIGKILL: no goodbye; the membership still lists node-2 as alive for
    // a while after this.
    nodes.0[1].kill().unwrap();
    nodes.0[1].wait().unwrap();
    let killed = Instant::now();
    for i in 0..100 {
        let r = rpc_discovery::request(&client, &node3, &plan, Duration::from_secs(30)).await;
        assert_eq!(
            r.map(|r| r.to_string()).map_err(|e| e.to_string()),
            Ok(r#"{"a": "x"}"#.to_owned()),
            "plan {i} after the kill"
        );
    }
    eprintln!(
        "100 plans through the balancer after kill -9: {:?}",
        killed.elapsed()
    );

    // A call straight to the killed peer fails fast, naming it and the
    // refused reconnect, far inside its 30 s deadline.
    let started = Instant::now();
    let r: Result<String, _> = direct
        .call_with(
            &node2,
            "__cli.members",
            &(),
            rpc_core::CallOptions::default().timeout(Duration::from_secs(30)),
        )
        .await;
    let took = started.elapsed();
    eprintln!("a call to the killed peer failed after {took:?}: {r:?}");
    assert!(
        matches!(&r, Err(rpc_core::Error::Unreachable { peer, .. }) if *peer == node2),
        "{r:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_from_toml_run_plans_and_survive_a_kill() {
    let dir = scratch_dir();
    let (mut nodes, [_, _, p3]) = three_nodes(&dir, &["model-a"], &["model-b"]);
    let (client, node3) = client_of(p3).await;
    // Once node-3 knows both servers, a plan needing each runs.
    let both =
        r#"[["a", "echo", ["from a"], ["model-a"]], ["b", "echo", ["from b"], ["model-b"]]]"#;
    let r = until(&client, &node3, both, Result::is_ok).await;
    assert_eq!(r.unwrap(), r#"{"a": "from a", "b": "from b"}"#);

    // The seed's example, through the CLI.
    let plan_file = dir.join("plan.json");
    std::fs::write(
        &plan_file,
        r#"[["|first", "echo", ["hi there!"], []], ["|second", "echo", ["|first"], []], ["|third", "echos", ["|first", "AND ME TOO"], []]]"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rpc"))
        .args(["plan", "--node", &format!("tcp://127.0.0.1:{p3}")])
        .arg(&plan_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"|second\": \"hi there!\", \"|third\": [\"hi there!\", \"AND ME TOO\"]}\n"
    );

    // Kill node-1 (SIGKILL: no goodbye). Once the membership knows, plans
    // needing model-a have no route, and the rest go to the survivors.
    nodes.0[0].kill().unwrap();
    nodes.0[0].wait().unwrap();
    let only_a = r#"[["a", "echo", ["x"], ["model-a"]]]"#;
    let r = until(
        &client,
        &node3,
        only_a,
        |r| matches!(r, Err(e) if e.contains("model-a")),
    )
    .await;
    assert!(
        r.unwrap_err()
            .contains("no live node has function \"echo\"")
    );
    let any = r#"[["x", "echos", ["served"], []]]"#;
    for _ in 0..10 {
        let r = until(&client, &node3, any, Result::is_ok).await;
        assert_eq!(r.unwrap(), r#"{"x": ["served"]}"#);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
