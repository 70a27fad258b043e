//! `keel-sim shrink`: a failing seed's fault schedule shrinks to fewer
//! faults that still fail with the same kind of violation, and replay with
//! that subset. The failure is made on purpose with a test-only checker:
//! more than one promotion in a run is a violation.
#![cfg(madsim)]

use keel_sim::agents::{run_with, AgentSimConfig, RunOptions};
use keel_sim::shrink::{fails_with, shrink, target_kind};

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
fn a_failing_schedule_shrinks_to_fewer_faults_that_still_fail_the_same_way() {
    let tight = |faults: Option<Vec<keel_sim::faults::Fault>>| RunOptions {
        max_failovers: Some(1),
        faults,
        ..RunOptions::default()
    };
    // The first seed of a few whose schedule fails the test checker with
    // several faults (seeds are deterministic: always the same one).
    let (seed, outcome) = (1..=30)
        .map(|seed| (seed, run_with(&config(seed), &tight(None))))
        .find(|(_, o)| {
            o.schedule.len() >= 4 && target_kind(o).is_some_and(|k| k.starts_with("too many failovers"))
        })
        .expect("a seed among 1..=30 fails the test checker with 4 or more faults");
    let kind = target_kind(&outcome).unwrap();
    let (min, runs) = shrink(&outcome.schedule, |faults| {
        fails_with(&run_with(&config(seed), &tight(Some(faults.to_vec()))), &kind)
    });
    println!("seed {seed}: {} faults -> {} in {runs} runs: {min:#?}", outcome.schedule.len(), min.len());
    assert!(min.len() < outcome.schedule.len(), "nothing was dropped");
    assert!(min.iter().all(|f| outcome.schedule.contains(f)), "the result is a subset");
    let again = run_with(&config(seed), &tight(Some(min.clone())));
    assert!(fails_with(&again, &kind), "the shrunk schedule passes: {:?}", again.violations);
    assert_eq!(again.schedule, min, "the run carried out exactly the shrunk schedule");
    // 1-minimal: without any one of its faults, it no longer fails that way.
    for i in 0..min.len() {
        let mut fewer = min.clone();
        fewer.remove(i);
        assert!(!fails_with(&run_with(&config(seed), &tight(Some(fewer))), &kind), "fault {i} could go too");
    }
    // Without the test checker, the same seed is clean.
    assert!(run_with(&config(seed), &RunOptions::default()).violations.is_empty());
}
