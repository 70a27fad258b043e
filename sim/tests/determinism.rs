//! Same seed, same run: the trace hash of a seed does not depend on what
//! ran before it in the process, madsim's own determinism check (it runs
//! the seed twice and compares every random draw) passes, and the event
//! trace files of two runs of a seed are the same bytes.
#![cfg(madsim)]

use keel_sim::agents::{drive, run, run_with, AgentSimConfig, RunOptions};
use keel_sim::trace;

fn config(seed: u64) -> AgentSimConfig {
    AgentSimConfig {
        seed,
        nodes: 3,
        duration_ms: 300_000,
        faults: true,
        verbose: false,
        scenario: None,
        ..Default::default()
    }
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

#[test]
fn two_runs_of_a_seed_write_the_same_trace_file() {
    let record = RunOptions { record: true, ..RunOptions::default() };
    let dir = std::env::temp_dir().join(format!("keel-sim-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (k, seed) in [(0, 7), (1, 8), (2, 7)] {
        let outcome = run_with(&config(seed), &record);
        let path = dir.join(format!("run{k}.jsonl"));
        std::fs::write(&path, trace::file_text(&outcome.trace)).unwrap();
        files.push((std::fs::read(&path).unwrap(), outcome));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let (first, again) = (&files[0], &files[2]);
    println!("seed 7: trace of {} bytes, hash {:016x}", first.0.len(), trace::hash(&first.0));
    assert!(first.0 == again.0, "the trace files of two runs of seed 7 differ");
    assert_ne!(first.0, files[1].0, "seeds 7 and 8 wrote the same trace");
    // The trace holds what it promises, and reads back.
    let events = trace::parse(std::str::from_utf8(&first.0).unwrap()).unwrap();
    let has = |what: fn(&trace::What) -> bool| events.iter().any(|e| what(&e.what));
    assert!(has(|w| matches!(w, trace::What::Start { .. })));
    assert!(has(|w| matches!(w, trace::What::FaultStart { .. })));
    assert!(has(|w| matches!(w, trace::What::Role { .. })));
    assert!(has(|w| matches!(w, trace::What::LeaderKey { .. })));
    assert!(has(|w| matches!(w, trace::What::Decision { .. })));
    assert!(has(|w| matches!(w, trace::What::Write { ok: true, .. })));
    assert!(matches!(events.last().map(|e| &e.what), Some(trace::What::Verdict { .. })));
    // Recording only reads: the traced run is the untraced one.
    let plain = run(&config(7));
    assert_eq!(plain.trace_hash, first.1.trace_hash);
    assert_eq!(plain.writes_acked, first.1.writes_acked);
    assert!(plain.trace.is_empty(), "nothing is recorded unless asked");
}

#[test]
fn madsim_determinism_check_passes_while_recording() {
    let outcome = madsim::runtime::Runtime::check_determinism(12, madsim::Config::default(), || {
        keel_sim::agents::drive_with(config(12), RunOptions { record: true, ..RunOptions::default() })
    });
    assert!(!outcome.trace.is_empty());
}
