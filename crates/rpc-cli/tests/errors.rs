//! The CLI's errors as a user meets them: bad and refused addresses fail at
//! once with one clear cause, bad numbers are refused by the parser (never
//! a panic), and logs written to a file carry no colour codes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Far above what a fast failure takes, far below the 30 s default
/// timeout that a slow failure used to wait out.
const FAST: Duration = Duration::from_secs(10);

fn rpc(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rpc"))
        .args(args)
        .output()
        .unwrap();
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn plan_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("rpc-cli-errors-{}.json", std::process::id()));
    std::fs::write(&path, r#"[["a", "echo", ["x"], []]]"#).unwrap();
    path
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_bad_or_refused_address_fails_at_once_with_one_cause() {
    let plan = plan_file();
    let refused = format!("tcp://127.0.0.1:{}", closed_port());
    let cases: [(&[&str], &str); 4] = [
        (&["plan", "--node", "garbage"], "invalid address"),
        (&["plan", "--node", &refused], "Connection refused"),
        (&["members", "--node", &refused], "Connection refused"),
        (
            &["members", "--node", "udp://127.0.0.1:1"],
            "no transport for scheme",
        ),
    ];
    for (args, cause) in cases {
        let mut args = args.to_vec();
        if args[0] == "plan" {
            args.push(plan.to_str().unwrap());
        }
        let (out, took) = rpc(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(took < FAST, "{args:?} took {took:?}");
        assert!(err.contains(cause), "{args:?}: {err}");
        assert!(err.contains("cannot reach a node at"), "{args:?}: {err}");
        assert!(
            err.matches("connect failed").count() <= 1,
            "one cause, once: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let _ = std::fs::remove_file(plan);
}

#[test]
fn bad_numbers_are_usage_errors_not_panics() {
    let plan = plan_file();
    for bad in ["-1", "nan", "inf", "1e30", "0", "soon"] {
        let flag = format!("--timeout={bad}");
        let (out, _) = rpc(&[
            "plan",
            "--node",
            "tcp://127.0.0.1:1",
            &flag,
            plan.to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "--timeout {bad}: {err}");
        assert!(err.contains("--timeout"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (out, _) = rpc(&[
        "graph",
        "partition",
        "--slack",
        "nan",
        "--data",
        "x",
        "--out",
        "y",
        "-k",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let _ = std::fs::remove_file(plan);
}

#[test]
fn a_node_with_functions_and_no_resources_says_it_is_a_balancer_in_plain_text() {
    let dir = std::env::temp_dir().join(format!("rpc-cli-balancer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        "name = \"lonely\"\nlisten = [\"tcp://127.0.0.1:0\"]\nfunctions = [\"echo\"]\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc"))
        .args(["node", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = lines
        .next()
        .expect("a warning line")
        .expect("readable stderr");
    let _ = child.kill();
    let _ = child.wait();
    assert!(warning.contains("balancer"), "{warning}");
    assert!(warning.contains("resources"), "{warning}");
    // stderr is a pipe here, as a log file is: no colour codes.
    assert!(!warning.contains('\u{1b}'), "{warning:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
