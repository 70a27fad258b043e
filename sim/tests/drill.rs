//! The simulator's own checks: runs are clean, replay bit for bit, and a
//! healthy cluster never changes leader.

use keel_sim::{run, SimConfig};

fn config(seed: u64, faults: bool) -> SimConfig {
    SimConfig { seed, nodes: 3, duration_ms: 300_000, faults, verbose: false, trace: None }
}

#[test]
fn seeded_runs_with_faults_find_no_violation() {
    for seed in 1..=40 {
        let out = run(&config(seed, true));
        assert!(out.violations.is_empty(), "seed {seed}: {:#?}", out.violations);
        assert!(out.writes_acked > 0, "seed {seed} acknowledged no write");
    }
}

#[test]
fn same_seed_replays_to_the_same_trace_hash() {
    for seed in [7, 42, 1485] {
        let a = run(&config(seed, true));
        let b = run(&config(seed, true));
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.writes_acked, b.writes_acked);
    }
    assert_ne!(run(&config(1, true)).trace_hash, run(&config(2, true)).trace_hash);
}

#[test]
fn healthy_cluster_elects_once_and_never_changes_leader() {
    for seed in 1..=10 {
        let out = run(&config(seed, false));
        assert!(out.violations.is_empty(), "seed {seed}: {:#?}", out.violations);
        assert_eq!(out.failovers, 0, "seed {seed}: a healthy cluster failed over");
        assert!(out.writes_acked > 5_000, "seed {seed}: {} writes", out.writes_acked);
    }
}

#[test]
fn faults_are_drawn_from_every_kind() {
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 1..=20 {
        kinds.extend(run(&config(seed, true)).faults.into_keys());
    }
    let expected =
        ["etcd-outage", "etcd-partition", "node-crash", "node-isolation", "postgres-crash", "switchover"];
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), expected);
}
