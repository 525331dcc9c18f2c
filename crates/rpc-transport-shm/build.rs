//! Declares the `loom` cfg, under which the ring runs in loom's model checker
//! (`RUSTFLAGS="--cfg loom"`, see `cargo xtask ci --loom`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
