//! Same seed, same run: the trace hash of a seed does not depend on what
//! ran before it in the process, and madsim's own determinism check (it
//! runs the seed twice and compares every random draw) passes.
#![cfg(madsim)]

use keel_sim::agents::{drive, run, AgentSimConfig};

fn config(seed: u64) -> AgentSimConfig {
    AgentSimConfig { seed, nodes: 3, duration_ms: 300_000, faults: true, verbose: false, scenario: None }
}

#[test]
fn a_seed_replays_to_the_same_trace_alone_or_after_others() {
    let alone = run(&config(7));
    for seed in [5, 6] {
        run(&config(seed));
    }
    let after = run(&config(7));
    assert_eq!(alone.trace_hash, after.trace_hash);
    assert_eq!(alone.violations, after.violations);
    assert_ne!(alone.trace_hash, run(&config(8)).trace_hash, "different seeds take different paths");
}

#[test]
fn madsim_determinism_check_passes() {
    let outcome =
        madsim::runtime::Runtime::check_determinism(11, madsim::Config::default(), || drive(config(11)));
    assert!(outcome.simulated_ms > 0);
}
