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

/// One line of a trace file (JSON lines): where a node started from, or one
/// step. A node that restarts (its memory lost) starts a new `Start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceLine {
    Start(Box<State>),
    Step(Box<TraceEntry>),
}

/// Where a replay first disagreed with the recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub index: usize,
    pub recorded: Decision,
    pub replayed: Decision,
}

/// Replays trace lines: every `Step` must decide what was recorded, from the
/// state the last `Start` set. Lines before the first `Start` begin from a
/// fresh node named `unknown`, which is rarely what was meant.
pub fn replay(lines: &[TraceLine]) -> Result<(), Box<Mismatch>> {
    let mut node = Node::new("unknown");
    for (index, line) in lines.iter().enumerate() {
        match line {
            TraceLine::Start(state) => node = Node::from_state(state.as_ref().clone()),
            TraceLine::Step(entry) => {
                let replayed = node.step(&entry.observation);
                if replayed != entry.decision {
                    return Err(Box::new(Mismatch { index, recorded: entry.decision.clone(), replayed }));
                }
            }
        }
    }
    Ok(())
}
