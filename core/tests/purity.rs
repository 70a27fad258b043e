//! keel-core stays pure: its normal dependency tree holds nothing that does
//! I/O, reads clocks or draws randomness (ARCHITECTURE.md, the workspace).

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "etcd-client",
    "tonic",
    "hyper",
    "postgres",
    "tokio-postgres",
    "rand",
    "rand_core",
    "rand_chacha",
    "getrandom",
    "madsim",
    "libc",
    "reqwest",
];

#[test]
fn core_dependency_tree_has_no_io_clock_or_randomness() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "-p", "keel-core", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).expect("utf-8");
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains(&"keel-core"), "unexpected cargo tree output: {tree}");
    assert!(crates.contains(&"serde"), "the tree should list serde: {tree}");
    let bad: Vec<&&str> = crates.iter().filter(|c| FORBIDDEN.contains(c)).collect();
    assert!(bad.is_empty(), "keel-core depends on {bad:?}");
}
