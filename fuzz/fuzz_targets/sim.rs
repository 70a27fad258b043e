//! Arbitrary text into the readers of keel-sim's files: `--faults FILE`
//! (`shrink::parse_faults`) and `replay --trace FILE` (`trace::parse`).
//! Both answer a value or an error naming the problem, never a panic; a
//! fault list accepted names only nodes the cluster has (or roles,
//! resolved when a fault starts), and both files read back the same after
//! the simulator writes them.

#![no_main]

use arbitrary::Arbitrary;
use keel_sim::faults;
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
    let names: Vec<String> = (1..=nodes).map(|i| format!("pg{i}")).collect();
    if let Ok(faults) = parse_faults(&input.text, &names) {
        for fault in &faults {
            assert!(fault.start_ms <= fault.end_ms, "{fault:?}");
            for node in fault.kind.clone().members_mut() {
                let ok = *node < nodes || faults::role_name(*node).is_some();
                assert!(ok, "{fault:?} accepted in a {nodes}-node cluster");
            }
        }
        assert_eq!(parse_faults(&faults_json(&faults), &names).as_ref(), Ok(&faults));
    }
    if let Ok(events) = trace::parse(&input.text) {
        let mut recorder = Recorder::new(0);
        recorder.events = events;
        let written = trace::file_text(&recorder.lines());
        assert_eq!(trace::parse(&written).as_ref(), Ok(&recorder.events), "{written}");
    }
});
