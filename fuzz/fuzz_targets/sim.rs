//! Arbitrary text into the readers of keel-sim's files: `--faults FILE`
//! (`shrink::parse_faults`) and `replay --trace FILE` (`trace::parse`).
//! Both answer a value or an error naming the problem, never a panic; a
//! fault list accepted names only nodes the cluster has, and both files
//! read back the same after the simulator writes them.

#![no_main]

use arbitrary::Arbitrary;
use keel_sim::faults::{Fault, FaultKind};
use keel_sim::shrink::{faults_json, parse_faults};
use keel_sim::trace::{self, Recorder};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    nodes: u8,
    text: String,
}

fuzz_target!(|input: Input| {
    let nodes = usize::from(input.nodes % 10);
    if let Ok(faults) = parse_faults(&input.text, nodes) {
        for fault in &faults {
            assert!(fault.start_ms <= fault.end_ms, "{fault:?}");
            for node in named_nodes(fault) {
                assert!(node < nodes, "{fault:?} accepted in a {nodes}-node cluster");
            }
        }
        assert_eq!(parse_faults(&faults_json(&faults), nodes).as_ref(), Ok(&faults));
    }
    if let Ok(events) = trace::parse(&input.text) {
        let mut recorder = Recorder::new(0);
        recorder.events = events;
        let written = trace::file_text(&recorder.lines());
        assert_eq!(trace::parse(&written).as_ref(), Ok(&recorder.events), "{written}");
    }
});

/// Every member a fault names.
fn named_nodes(fault: &Fault) -> Vec<usize> {
    match fault.kind {
        FaultKind::EtcdPartition { node }
        | FaultKind::NodeIsolation { node }
        | FaultKind::PostgresCrash { node }
        | FaultKind::NodeCrash { node }
        | FaultKind::ProcessPause { node }
        | FaultKind::ClockJump { node, .. }
        | FaultKind::ClockRate { node, .. }
        | FaultKind::AgentShutdown { node }
        | FaultKind::DiskFull { node } => vec![node],
        FaultKind::OneWayCut { node, to } => vec![node, to],
        FaultKind::Switchover { candidate } => candidate.into_iter().collect(),
        FaultKind::EtcdOutage | FaultKind::EtcdSlow { .. } => Vec::new(),
    }
}
