//! Proof that the checkers bite (issue 4): the madsim simulator runs the
//! real agent loop with a deliberately broken engine, keel-core's `Node`
//! wrapped so that it sees a doctored observation or carries out a
//! doctored decision, and must catch each within a fixed number of seeds,
//! with the violation that names the bug; the failing seed must replay to
//! the same violation. These engines live here only, never in keel.
#![cfg(madsim)]

use std::sync::Arc;

use keel_core::{Action, DcsView, Decision, DynamicConfig, Node, Observation, Role, State};
use keel_runtime::agent::Engine;
use keel_sim::agents::{run_engine, AgentSimConfig, EngineFactory};

/// keel-core's node, with a doctored view in and a doctored decision out.
struct Broken {
    node: Node,
    /// Changes what the node observes.
    see: fn(&Node, &mut Observation),
    /// Changes what it decided, given what it observed; may hold an action
    /// back for a later step.
    act: fn(&mut Option<Action>, &Observation, &mut Decision),
    held: Option<Action>,
}

impl Engine for Broken {
    fn step(&mut self, obs: &Observation) -> Decision {
        let mut obs = obs.clone();
        (self.see)(&self.node, &mut obs);
        let mut decision = self.node.step(&obs);
        (self.act)(&mut self.held, &obs, &mut decision);
        decision
    }

    fn state(&self) -> &State {
        self.node.state()
    }
}

type Act = fn(&mut Option<Action>, &Observation, &mut Decision);

fn factory(see: fn(&Node, &mut Observation), act: Act) -> EngineFactory {
    Arc::new(move |name: &str, cfg: DynamicConfig| {
        Box::new(Broken { node: Node::with_config(name, cfg), see, act, held: None })
            as Box<dyn Engine + Send>
    })
}

fn as_is(_: &Node, _: &mut Observation) {}
fn carry_out(_: &mut Option<Action>, _: &Observation, _: &mut Decision) {}

/// Ignores its lease deadline: never demotes a running primary, so it
/// keeps accepting writes after its lease ran out.
fn never_demote(_: &mut Option<Action>, obs: &Observation, d: &mut Decision) {
    if obs.pg.is_running_primary() {
        if let Some(at) = d.actions.iter().position(|a| matches!(a, Action::Demote { .. })) {
            d.actions.truncate(at);
        }
    }
}

/// Promotes the most-lagging replica: in a leader race each member's
/// position is mirrored around its own (ahead looks behind, behind looks
/// ahead), the leader's last optime looks like its own, and it counts
/// itself a synchronous standby.
fn mirror_positions(node: &Node, obs: &mut Observation) {
    let mine = obs.pg.wal_position();
    let me = node.state().name.clone();
    let DcsView::Reachable(view) = &mut obs.dcs else { return };
    if view.leader.is_some() || node.state().role == Role::Leader {
        return;
    }
    for (name, m) in &mut view.members {
        if *name != me {
            m.lsn = (2 * mine).saturating_sub(m.lsn);
        }
    }
    view.optime_lsn = Some(mine);
    if let Some(sync) = &mut view.sync {
        sync.members.insert(me);
    }
}

fn config(seed: u64) -> AgentSimConfig {
    AgentSimConfig { seed, nodes: 3, duration_ms: 600_000, faults: true, verbose: false, scenario: None }
}

/// The first seed from 1 at which `engine` breaks a rule the violation
/// `kind` names, within `limit` seeds; then checks that the seed replays to
/// the same violations.
fn caught(name: &str, engine: &EngineFactory, kind: &str, limit: u64) -> u64 {
    for seed in 1..=limit {
        let out = run_engine(&config(seed), Some(engine.clone()));
        if out.violations.iter().any(|v| v.contains(kind)) {
            println!("{name}: caught at seed {seed} (limit {limit}): {:?}", out.violations);
            let again = run_engine(&config(seed), Some(engine.clone()));
            assert_eq!(again.violations, out.violations, "{name}: seed {seed} replays differently");
            assert_eq!(again.trace_hash, out.trace_hash, "{name}: seed {seed} replays differently");
            return seed;
        }
    }
    panic!("{name}: no `{kind}` violation within {limit} seeds: the checkers missed it");
}

#[test]
fn the_unbroken_engine_passes_through_the_seam() {
    // The wrapper with nothing doctored is keel-core itself.
    let engine = factory(as_is, carry_out);
    for seed in 1..=5 {
        let out = run_engine(&config(seed), Some(engine.clone()));
        let plain = keel_sim::agents::run(&config(seed));
        assert!(out.violations.is_empty(), "seed {seed}: {:?}", out.violations);
        assert_eq!(out.trace_hash, plain.trace_hash, "seed {seed}");
    }
}

#[test]
fn an_engine_that_ignores_its_lease_deadline_is_caught_as_split_brain() {
    caught("ignores lease", &factory(as_is, never_demote), "split brain", LEASE_LIMIT);
}

#[test]
fn an_engine_that_promotes_the_most_lagging_replica_is_caught_losing_writes() {
    let engine = factory(mirror_positions, carry_out);
    caught("promotes most-lagging", &engine, "acknowledged writes lost", LAGGING_LIMIT);
}

/// Caught at seed 1 (madsim build of this commit); the limits leave margin.
const LEASE_LIMIT: u64 = 20;
/// Caught at seed 26.
const LAGGING_LIMIT: u64 = 100;
