//! Traces: the observations a node saw and the decisions it made, one JSON
//! object per line. A trace is what a bug report carries; replaying it
//! through `step` must give the same decisions.

use serde::{Deserialize, Serialize};

use crate::decision::Decision;
use crate::input::Observation;
use crate::state::State;
use crate::step::Node;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEntry {
    pub observation: Observation,
    pub decision: Decision,
}

/// Where a replay first disagreed with the recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub index: usize,
    pub recorded: Decision,
    pub replayed: Decision,
}

/// Replays `entries` from `start`; `Ok` with the final state when every
/// decision matches.
pub fn replay(start: State, entries: &[TraceEntry]) -> Result<State, Box<Mismatch>> {
    let mut node = Node::from_state(start);
    for (index, entry) in entries.iter().enumerate() {
        let replayed = node.step(&entry.observation);
        if replayed != entry.decision {
            return Err(Box::new(Mismatch { index, recorded: entry.decision.clone(), replayed }));
        }
    }
    Ok(node.state().clone())
}
