//! `Node::step`: decide, check invariants, apply. Orchestration only.

use serde::{Deserialize, Serialize};

use crate::decide::decide;
use crate::decision::Decision;
use crate::input::Observation;
use crate::invariants;
use crate::state::State;

/// One keel node's decision engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    state: State,
}

impl Node {
    pub fn new(name: impl Into<String>) -> Node {
        Node { state: State::new(name) }
    }

    /// A node that goes by `bootstrap` (the local `bootstrap.dcs`) until it
    /// reads the cluster's config from the DCS: the lease it takes during
    /// bootstrap must count with the TTL it was granted with.
    pub fn with_config(name: impl Into<String>, bootstrap: crate::dcs::DynamicConfig) -> Node {
        let mut state = State::new(name);
        state.config = bootstrap;
        Node { state }
    }

    /// Resumes from a saved state (a trace's starting point).
    pub fn from_state(state: State) -> Node {
        Node { state }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Decides what to do next from what was observed. Pure and
    /// deterministic: the same state and observation give the same decision
    /// and the same next state.
    pub fn step(&mut self, obs: &Observation) -> Decision {
        let plan = decide(&self.state, obs);
        invariants::check(&self.state, obs, &plan.next, &plan.decision);
        self.state = plan.next;
        plan.decision
    }
}
