//! `keel-sim replay --timeline`: the page of a seed's run is one
//! self-contained HTML file with a lane per node and the seed's faults.
#![cfg(madsim)]

use keel_sim::agents::{run_with, AgentSimConfig, RunOptions};
use keel_sim::{timeline, trace};

#[test]
fn the_timeline_of_a_seed_is_self_contained_with_every_lane_and_fault() {
    let sim = AgentSimConfig {
        seed: 42,
        nodes: 3,
        duration_ms: 600_000,
        faults: true,
        verbose: false,
        scenario: None,
        ..Default::default()
    };
    let outcome = run_with(&sim, &RunOptions { record: true, ..RunOptions::default() });
    let events = trace::parse(&trace::file_text(&outcome.trace)).unwrap();
    let html = timeline::render(&events);
    println!("seed 42, 10 simulated minutes: {} trace events, page of {} bytes", events.len(), html.len());
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(!html.contains("http://") && !html.contains("https://"), "the page references something outside");
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
    for node in ["pg1", "pg2", "pg3"] {
        assert!(html.contains(&format!(">{node}</text>")), "no lane for {node}");
    }
    assert!(html.contains(">leader key</text>"));
    assert!(!outcome.schedule.is_empty(), "seed 42 has faults");
    for f in &outcome.schedule {
        let detail = format!("{:?}", f.kind).replace('"', "&quot;");
        let from = format!("{:.1} s", f.start_ms as f64 / 1000.0);
        assert!(html.contains(&detail), "fault {f} is not on the page");
        assert!(
            html.contains(&format!("fault {} {from}", f.kind.label())),
            "fault {f} has no span starting at {from}"
        );
    }
}
