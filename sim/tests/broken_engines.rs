//! Proof that the checkers bite (issue 4): the madsim simulator runs the
//! real agent loop with a deliberately broken engine, keel-core's `Node`
//! wrapped so that it sees a doctored observation or carries out a
//! doctored decision, and must catch each within a fixed number of seeds,
//! with the violation that names the bug; the failing seed must replay to
//! the same violation. These engines live here only, never in keel.
#![cfg(madsim)]

use std::collections::BTreeSet;
use std::sync::Arc;

use keel_core::{
    Action, DcsView, Decision, DynamicConfig, Node, Observation, PgProcess, Reason, Role, StartAs, State,
};
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
/// itself a synchronous standby; so it does once it holds the lock and is
/// about to promote, where keel-core judges the holder again.
fn mirror_positions(node: &Node, obs: &mut Observation) {
    let mine = obs.pg.wal_position();
    let me = node.state().name.clone();
    let replica = obs.pg.is_running_replica();
    let DcsView::Reachable(view) = &mut obs.dcs else { return };
    let racing = view.leader.is_none() && node.state().role != Role::Leader;
    let promoting = view.leader_name() == Some(me.as_str()) && replica;
    if !racing && !promoting {
        return;
    }
    if racing {
        for (name, m) in &mut view.members {
            if *name != me {
                m.lsn = (2 * mine).saturating_sub(m.lsn);
            }
        }
        view.optime_lsn = Some(mine);
    }
    // Until it claims the key for itself (then it counts as its leader).
    if let Some(sync) = view.sync.as_mut().filter(|k| k.leader.as_deref() != Some(me.as_str())) {
        sync.members.insert(me);
    }
}

/// Skips rewind: where keel-core would rewind (or stop to, or recover
/// first, or reinitialize because it cannot), it follows the new leader
/// with whatever history it has.
fn never_rewind(_: &mut Option<Action>, obs: &Observation, d: &mut Decision) {
    let repairing = matches!(
        d.reason,
        Reason::StoppingToRewind { .. }
            | Reason::Rewinding { .. }
            | Reason::RewindImpossible { .. }
            | Reason::RecoveringBeforeRewind
    );
    let DcsView::Reachable(view) = &obs.dcs else { return };
    let Some(leader) = view.leader_name().filter(|_| repairing) else { return };
    let upstream = Some(leader.to_owned());
    d.actions = match obs.pg.process {
        PgProcess::Stopped => vec![Action::StartPostgres { role: StartAs::Replica { upstream } }],
        _ if obs.pg.upstream != upstream => vec![Action::Follow { upstream }],
        _ => Vec::new(),
    };
}

/// Widens `synchronous_standby_names` in the wrong order: names the new
/// standbys in the sync key first, and configures Postgres to wait for
/// them one step later (so the key names standbys that Postgres does not
/// wait for, and that never confirmed they are synchronous).
fn key_before_postgres(held: &mut Option<Action>, obs: &Observation, d: &mut Decision) {
    let set = d.actions.iter().position(|a| matches!(a, Action::SetSyncStandbyNames(_)));
    if let Some(late) = held.take() {
        // The Postgres change held back, in place of this step's own.
        match set {
            Some(at) => d.actions[at] = late,
            None => d.actions.push(late),
        }
        return;
    }
    let DcsView::Reachable(view) = &obs.dcs else { return };
    let Some(key) = view.sync.as_ref() else { return };
    let Some(at) = set else { return };
    let Action::SetSyncStandbyNames(target) = &d.actions[at] else { return };
    let wider: BTreeSet<String> =
        target.members.iter().filter(|m| !m.starts_with("__keel")).cloned().collect();
    if wider.is_subset(&key.members) || target.quorum {
        return;
    }
    let members = key.members.union(&wider).cloned().collect();
    let write = Action::WriteSyncKey { members, quorum: None, expected_revision: Some(key.revision) };
    *held = Some(std::mem::replace(&mut d.actions[at], write));
}

/// Never promotes under the lock it took: where keel-core promotes, it
/// renews the key instead, so a replica holds the leader key (rule 9).
fn renew_instead_of_promote(_: &mut Option<Action>, obs: &Observation, d: &mut Decision) {
    let optime_lsn = obs.pg.wal_position();
    for a in &mut d.actions {
        if *a == Action::Promote {
            *a = Action::RenewLease { optime_lsn };
        }
    }
}

/// Never lets a standby go from the sync key: a write that removes
/// members is dropped, so a standby that stopped confirming stays named
/// (rule 8).
fn keep_silent_sync_standbys(_: &mut Option<Action>, obs: &Observation, d: &mut Decision) {
    let DcsView::Reachable(view) = &obs.dcs else { return };
    let Some(key) = view.sync.as_ref() else { return };
    d.actions.retain(|a| match a {
        Action::WriteSyncKey { members, .. } => {
            key.members.is_subset(members) || !obs.pg.is_running_primary()
        }
        _ => true,
    });
}

fn config(seed: u64) -> AgentSimConfig {
    AgentSimConfig {
        seed,
        nodes: 3,
        duration_ms: 600_000,
        faults: true,
        verbose: false,
        scenario: None,
        ..Default::default()
    }
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
    // Seeds keel-core passes at this commit: most others trip the
    // progress checkers on defects of issue 12 (2, 4, 5) still in the
    // engine.
    for seed in [1, 2, 7, 8, 11] {
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

#[test]
fn an_engine_that_skips_rewind_is_caught_with_a_diverged_replica() {
    let engine = factory(as_is, never_rewind);
    caught("skips rewind", &engine, "is not a prefix of the leader's", REWIND_LIMIT);
}

#[test]
fn an_engine_that_names_sync_standbys_before_postgres_waits_for_them_is_caught() {
    let engine = factory(as_is, key_before_postgres);
    caught("sync key first", &engine, "acknowledged a write that its sync key's", SYNC_LIMIT);
}

#[test]
fn an_engine_that_renews_instead_of_promoting_is_caught_holding_the_key_as_a_replica() {
    let engine = factory(as_is, renew_instead_of_promote);
    caught("renews, never promotes", &engine, "holds the leader key as a replica", KEY_HOLDER_LIMIT);
}

#[test]
fn an_engine_that_keeps_silent_sync_standbys_named_is_caught() {
    let engine = factory(as_is, keep_silent_sync_standbys);
    caught("keeps silent sync standbys", &engine, "which stopped confirming", SILENT_SYNC_LIMIT);
}

// The seeds at which each was first caught (madsim build of this commit,
// `cargo test -- --nocapture` prints them); the limits leave margin, and
// seeds replay only on the same build.
/// First caught at seed 1.
const LEASE_LIMIT: u64 = 20;
/// First caught at seed 26.
const LAGGING_LIMIT: u64 = 100;
/// First caught at seed 36 (then 75, 79, 81: some 6 % of seeds diverge).
const REWIND_LIMIT: u64 = 150;
/// First caught at seed 1 (then 6, 10, 14).
const SYNC_LIMIT: u64 = 20;
/// First caught at seed 1.
const KEY_HOLDER_LIMIT: u64 = 20;
/// First caught at seed 2.
const SILENT_SYNC_LIMIT: u64 = 20;
