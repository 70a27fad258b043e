//! Golden traces: a failing simulator seed becomes a trace file under
//! `core/tests/traces/` (written by `keel-sim run --seed S --trace-node N
//! --trace FILE --trace-from-s T`), and this test replays every one of them
//! forever: the engine must make the recorded decisions again. A change of
//! behaviour that is meant shows up here and the trace is recorded again.

use std::path::Path;

use keel_core::trace::{replay, TraceLine};
use keel_core::Action;

fn load(path: &Path) -> Vec<TraceLine> {
    let text = std::fs::read_to_string(path).expect("trace file reads");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

fn traces() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("traces directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_recorded_trace_replays_to_the_same_decisions() {
    let files = traces();
    assert!(!files.is_empty(), "no traces recorded");
    for path in files {
        let lines = load(&path);
        assert!(matches!(lines.first(), Some(TraceLine::Start(_))), "{} has no start", path.display());
        if let Err(m) = replay(&lines) {
            panic!(
                "{}: line {} decided differently\nrecorded: {:?}\nreplayed: {:?}",
                path.display(),
                m.index + 1,
                m.recorded,
                m.replayed
            );
        }
    }
}

/// Seed 1485: the new leader pg1 promoted into a timeline number pg2 had
/// already used, and must rewrite the cluster history.
#[test]
fn seed_1485_leader_rewrites_the_history_after_its_promotion() {
    let lines = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/seed-1485-pg1.jsonl"));
    let rewrote = lines.iter().any(|l| match l {
        TraceLine::Step(e) => e.decision.actions.iter().any(|a| matches!(a, Action::WriteHistory { .. })),
        TraceLine::Start(_) => false,
    });
    assert!(rewrote, "pg1 never rewrote the history");
}

#[test]
fn a_tampered_trace_is_reported_at_its_line() {
    let mut lines = load(&traces()[0]);
    let step = lines.iter().position(|l| matches!(l, TraceLine::Step(_))).expect("a step");
    if let TraceLine::Step(e) = &mut lines[step] {
        e.decision.wake_after_ms += 1;
    }
    let mismatch = replay(&lines).expect_err("a changed decision is caught");
    assert_eq!(mismatch.index, step);
}
