//! The named drills do what they say: a dead primary is replaced, and
//! nobody is promoted while etcd is down.
#![cfg(madsim)]

use keel_sim::agents::{run, AgentSimConfig};

fn drill(name: &str, seed: u64, nodes: usize) -> keel_sim::Outcome {
    run(&AgentSimConfig {
        seed,
        nodes,
        duration_ms: 300_000,
        faults: true,
        verbose: false,
        scenario: Some(name.to_owned()),
        ..Default::default()
    })
}

#[test]
fn a_crashed_primary_is_replaced_and_nothing_unsafe_happens() {
    for seed in 1..=5 {
        let out = drill("primary-crash", seed, 3);
        assert!(out.violations.is_empty(), "seed {seed}: {:?}", out.violations);
        assert!(out.failovers >= 1, "seed {seed}: no failover after the primary died");
        assert_eq!(out.faults.get("node-crash"), Some(&1));
    }
}

#[test]
fn every_scenario_runs_clean_on_a_few_seeds() {
    for (name, _, nodes) in keel_sim::scenarios::SCENARIOS {
        for seed in 1..=3 {
            let out = drill(name, seed, nodes.unwrap_or(3));
            assert!(out.violations.is_empty(), "{name} seed {seed}: {:?}", out.violations);
            assert!(!out.faults.is_empty(), "{name} seed {seed}: no fault ran");
        }
    }
}

#[test]
fn a_primary_whose_agent_shuts_down_cleanly_hands_over_and_rejoins() {
    for seed in 1..=5 {
        let out = drill("agent-shutdown", seed, 3);
        assert!(out.violations.is_empty(), "seed {seed}: {:?}", out.violations);
        assert_eq!(out.faults.get("agent-shutdown"), Some(&1));
        // It released the key: a replica took over while its agent was
        // down, and nobody failed back once it returned as a replica.
        assert_eq!(out.failovers, 1, "seed {seed}");
    }
}

#[test]
fn a_full_disk_on_the_primary_loses_no_write_and_the_cluster_recovers() {
    for seed in 1..=5 {
        let out = drill("disk-full", seed, 3);
        // The checkers: no split brain, no acknowledged write lost (strict),
        // a writable primary again once the disk has space.
        assert!(out.violations.is_empty(), "seed {seed}: {:?}", out.violations);
        assert_eq!(out.faults.get("disk-full"), Some(&1));
        assert!(out.writes_failed > 0, "seed {seed}: the full disk refused no write");
    }
}

#[test]
fn one_way_cuts_between_nodes_are_no_reason_to_fail_over() {
    for seed in 1..=5 {
        let out = drill("one-way-cut", seed, 3);
        assert!(out.violations.is_empty(), "seed {seed}: {:?}", out.violations);
        assert_eq!(out.faults.get("one-way-cut"), Some(&2));
        // The primary still holds its lease with etcd: nobody takes over.
        assert_eq!(out.failovers, 0, "seed {seed}");
    }
}

#[test]
fn a_rewind_that_finds_its_wal_recycled_falls_back_to_a_base_backup() {
    for seed in 1..=5 {
        let out = drill(keel_sim::scenarios::REWIND_WAL_GONE, seed, 3);
        assert!(out.violations.is_empty(), "seed {seed}: {:?}", out.violations);
        println!(
            "seed {seed}: {} rewinds failed, {} of those nodes reinitialized",
            out.rewinds_failed, out.reinitialized_after_failed_rewind
        );
        assert!(out.rewinds_failed >= 1, "seed {seed}: no rewind failed");
        assert_eq!(out.reinitialized_after_failed_rewind, out.rewinds_failed, "seed {seed}");
    }
}
