//! The README demo reproduces the moolib seed example: a host named `host`
//! defines `bar`, a client calls it over TCP, and the two processes print
//! `hello world` and `42`.

use std::path::PathBuf;
use std::process::Command;

/// The demo example, which `cargo test` builds next to the test binaries.
fn demo_binary() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn demo_prints_hello_world_then_42() {
    let bin = demo_binary();
    assert!(
        bin.exists(),
        "{} is missing: cargo test builds examples",
        bin.display()
    );
    let out = Command::new(&bin).output().expect("run the demo");
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\n42\n");
}
