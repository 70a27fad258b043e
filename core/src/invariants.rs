//! Properties every step must keep, checked after each `decide`. A
//! violation is a bug in keel: it panics with the rule it broke.
//!
//! Each rule of ARCHITECTURE.md ("Safety rules the engine must keep") is
//! checked here as far as one step shows it, from the state before, the
//! observation, the state after and the decision. What only time shows
//! (a replica that keeps the leader key for a TTL, a silent standby kept
//! named for a TTL, a lease that outlives the agent) is the simulator's to
//! check; README's simulator section lists which check covers which rule.

use std::collections::BTreeSet;

use crate::dcs::{ClusterView, DcsView, SyncMode};
use crate::decide::fitness::Judge;
use crate::decide::rewind;
use crate::decide::sync::quorum_safe;
use crate::decision::{Action, Decision, Reason, StartAs};
use crate::input::{ActionResult, Observation};
use crate::limits::ACTIONS_MAX;
use crate::pg::{PgProcess, StandbySyncState};
use crate::role::{self, Role};
use crate::state::State;

pub fn check(prev: &State, obs: &Observation, next: &State, decision: &Decision) {
    let now = obs.now_ms;
    let actions = &decision.actions;
    let lease_ahead = next.lease_deadline_ms.is_some_and(|d| d > now);
    assert!(actions.len() <= ACTIONS_MAX, "more than {ACTIONS_MAX} actions: {actions:?}");
    assert!(
        role::is_allowed(prev.role, next.role),
        "role {} -> {} is not in the transition table",
        prev.role,
        next.role
    );
    // Rule 1: a writable primary without a lease ahead demotes in this step.
    if obs.pg.is_running_primary() && !lease_ahead {
        assert!(
            matches!(actions.first(), Some(Action::Demote { .. })),
            "rule 1: primary without a lease ahead at {now} ms must demote first, decided {actions:?}"
        );
    }
    // Rule 2: promote only with a lease whose deadline lies ahead.
    if actions.contains(&Action::Promote) {
        assert!(lease_ahead, "rule 2: promote without a lease ahead at {now} ms");
        // Paused, only the operator's named candidate promotes.
        let requested = match &obs.dcs {
            DcsView::Reachable(v) => v.failover.as_ref().and_then(|f| f.candidate.as_deref()),
            DcsView::Unreachable { .. } => None,
        };
        assert!(
            !next.config.pause || requested == Some(next.name.as_str()),
            "promote while paused without a switchover to this node"
        );
    }
    // Rule 5: nobody takes the lock or promotes without a DCS view.
    if !matches!(obs.dcs, DcsView::Reachable(_)) {
        assert!(
            !actions.iter().any(|a| matches!(a, Action::AcquireLease | Action::Promote)),
            "rule 5: took the lock or promoted without etcd: {actions:?}"
        );
    }
    let demotes = actions.iter().any(|a| matches!(a, Action::Demote { .. }));
    assert!(!(demotes && actions.contains(&Action::Promote)), "promote and demote at once");
    renewal_honoured(obs, next, decision);
    no_replica_keeps_the_key(obs, next, decision);
    // The view the engine went by: a stale one is ignored, as `decide` does.
    let Some(view) = (match &obs.dcs {
        DcsView::Reachable(v) if v.revision >= prev.seen_revision => Some(v),
        _ => None,
    }) else {
        return;
    };
    sync_key_order(obs, next, view, actions);
    silent_sync_standby_replaced(obs, next, view, decision);
    linear_history(obs, view, actions);
    one_judgement_of_fitness(prev, obs, next, view, decision);
}

/// Rule 6: never demote in a step in which etcd confirmed the renewal,
/// unless the demote is chosen (a switchover, a shutdown), the lock is seen
/// gone, or the lease that renewal confirmed is itself running out (an
/// answer that came back late counts from when the request was sent).
fn renewal_honoured(obs: &Observation, next: &State, decision: &Decision) {
    let confirmed = obs
        .outcomes
        .iter()
        .any(|o| matches!(o.action, Action::RenewLease { .. }) && o.result == ActionResult::Done);
    if !confirmed || !decision.actions.iter().any(|a| matches!(a, Action::Demote { .. })) {
        return;
    }
    let view = match &obs.dcs {
        DcsView::Reachable(v) => Some(v),
        DcsView::Unreachable { .. } => None,
    };
    let lock_gone = view.is_some_and(|v| v.leader_name() != Some(next.name.as_str()));
    let chosen = next.shutdown || view.is_some_and(|v| v.failover.is_some());
    let gentle_ms = next.config.gentle_demote_ms();
    let running_out = next.lease_deadline_ms.is_none_or(|d| d.saturating_sub(obs.now_ms) <= gentle_ms);
    assert!(
        lock_gone || chosen || running_out,
        "rule 6: demoted in a step in which etcd confirmed the renewal (lease until {:?} at {} ms): {}",
        next.lease_deadline_ms,
        obs.now_ms,
        decision.reason
    );
}

/// Rule 9, as far as one step shows it: a lease holder whose Postgres is a
/// replica, or stopped, renews the key only while it promotes, starts its
/// primary again, or releases the key in the same step. A renewal without
/// a lease held only confirms a key that outlived its lease (the next step
/// acts on it); a start under way is judged over time by the simulator.
fn no_replica_keeps_the_key(obs: &Observation, next: &State, decision: &Decision) {
    let actions = &decision.actions;
    let renews = actions.iter().any(|a| matches!(a, Action::RenewLease { .. }));
    let not_primary = matches!(obs.pg.process, PgProcess::RunningReplica | PgProcess::Stopped);
    if !renews || !not_primary || next.lease_deadline_ms.is_none() {
        return;
    }
    let under_it = actions.iter().any(|a| {
        matches!(
            a,
            Action::Promote | Action::ReleaseLease { .. } | Action::StartPostgres { role: StartAs::Primary }
        )
    });
    assert!(
        under_it,
        "rule 9: renewed the leader key with Postgres {:?}, neither promoting nor releasing it ({}): {actions:?}",
        obs.pg.process,
        decision.reason
    );
}

/// Rule 3: the sync key names only standbys Postgres already waits for.
/// A standby enters the key only once Postgres reports it synchronous and
/// its flush position reached the primary's when it was listed; Postgres
/// stops waiting for a standby only once the key no longer names it; in
/// strict mode a standby Postgres waits for leaves the key only while
/// another one streams; a node promotes only under a key that names it and
/// no standby of an earlier term. In quorum mode the same guarantee is the
/// counting rule of [`quorum_safe`], kept by both kinds of change.
fn sync_key_order(obs: &Observation, next: &State, view: &ClusterView, actions: &[Action]) {
    let cfg = &next.config;
    if !cfg.sync_enabled() {
        return;
    }
    let me = next.name.as_str();
    let pg = &obs.pg;
    let quorum_mode = cfg.synchronous_mode == SyncMode::Quorum;
    let mine = view.sync.as_ref().filter(|k| k.leader.as_deref() == Some(me));
    // The key as this step leaves it, action by action.
    let mut named: BTreeSet<String> = mine.map(|k| k.members.clone()).unwrap_or_default();
    let mut quorum = mine.and_then(|k| k.quorum).unwrap_or(0);
    for action in actions {
        match action {
            Action::WriteSyncKey { members, quorum: q, .. } if quorum_mode => {
                let q = q.unwrap_or(0);
                assert!(
                    quorum_safe(members, q, &pg.sync_standby_names),
                    "rule 3: sync key {members:?} with quorum {q} promises more than Postgres waits for ({:?})",
                    pg.sync_standby_names
                );
                (named, quorum) = (members.clone(), q);
            }
            Action::WriteSyncKey { members, .. } => {
                for added in members.difference(&named) {
                    assert!(
                        confirmed(obs, next, added),
                        "rule 3: {added} entered the sync key before Postgres reported it synchronous and \
                         caught up to {} (names {:?}, replication {:?})",
                        next.sync_names_since_lsn,
                        pg.sync_standby_names,
                        pg.replication
                    );
                }
                let dropped: BTreeSet<&String> =
                    named.intersection(&pg.sync_standby_names.members).filter(|m| !members.contains(*m)).collect();
                // A primary's sync step; a claim at promotion drops nothing
                // a replica's Postgres waits for.
                if cfg.synchronous_mode_strict && pg.is_running_primary() && !dropped.is_empty() {
                    let replacement =
                        pg.replication.iter().any(|r| r.streaming && r.name != me && !dropped.contains(&r.name));
                    assert!(
                        replacement,
                        "rule 3: strict mode dropped {dropped:?}, which Postgres waits for, with no standby to \
                         replace it"
                    );
                }
                named = members.clone();
            }
            Action::SetSyncStandbyNames(target) if quorum_mode => assert!(
                quorum_safe(&named, quorum, target),
                "rule 3: synchronous_standby_names {target:?} breaks the sync key's promise ({named:?}, quorum \
                 {quorum})"
            ),
            Action::SetSyncStandbyNames(target) => assert!(
                named.is_subset(&target.members),
                "rule 3: synchronous_standby_names {target:?} drops standbys the sync key still names: {named:?}"
            ),
            Action::Promote => assert!(
                mine.is_some() && named.is_empty(),
                "rule 3: promoted in synchronous mode under a sync key that is not claimed for this node \
                 naming nobody: {:?}",
                view.sync
            ),
            _ => {}
        }
    }
}

/// Postgres waits for `name` and reports it synchronous, and its flush
/// position reached this primary's when the names were last changed.
fn confirmed(obs: &Observation, next: &State, name: &str) -> bool {
    obs.pg.sync_standby_names.members.contains(name)
        && obs.pg.replication.iter().any(|r| {
            r.name == name
                && r.streaming
                && r.flush_lsn >= next.sync_names_since_lsn
                && matches!(r.sync_state, StandbySyncState::Sync | StandbySyncState::Quorum)
        })
}

/// Rule 8: a leader does not settle, with nothing to do, while its sync key
/// names a standby that stopped confirming (no fresh reply within half a
/// TTL, or its member key gone or not running), when the key could change:
/// outside strict mode always, in strict mode while a standby that may
/// replace it streams with a fresh reply.
fn silent_sync_standby_replaced(obs: &Observation, next: &State, view: &ClusterView, decision: &Decision) {
    let cfg = &next.config;
    let settled = matches!(
        decision.reason,
        Reason::LeaderHealthy { .. } | Reason::SwitchoverScheduled { .. } | Reason::Paused { leader: true }
    );
    // Nothing but the renewal: the leader's housekeeping reached the sync
    // step and found nothing to change.
    let idle =
        decision.actions.iter().all(|a| matches!(a, Action::RenewLease { .. } | Action::PublishMember(_)));
    let me = next.name.as_str();
    let key = view.sync.as_ref().filter(|k| k.leader.as_deref() == Some(me));
    let (true, true, Some(key)) = (settled && idle && cfg.sync_enabled(), obs.pg.is_running_primary(), key)
    else {
        return;
    };
    let reply_timeout_ms = cfg.ttl_ms / 2;
    let fresh = |name: &str| {
        view.members.get(name).is_some_and(|m| m.is_running())
            && obs
                .pg
                .replication
                .iter()
                .any(|r| r.name == name && r.streaming && r.reply_age_ms <= reply_timeout_ms)
    };
    let Some(silent) = key.members.iter().find(|m| !fresh(m)) else {
        return;
    };
    let leader_lsn = obs.pg.wal_position();
    let replacement = obs.pg.replication.iter().find(|r| {
        r.name != me
            && !key.members.contains(&r.name)
            && fresh(&r.name)
            && view.members.get(&r.name).is_some_and(|m| !m.tags.nosync)
            && cfg
                .maximum_lag_on_syncnode_bytes
                .is_none_or(|max| leader_lsn.saturating_sub(r.flush_lsn) <= max)
    });
    let can_replace = cfg.synchronous_node_count > 0 || cfg.synchronous_mode == SyncMode::Quorum;
    assert!(
        cfg.synchronous_mode_strict && !(can_replace && replacement.is_some()),
        "rule 8: the sync key still names {silent}, which stopped confirming, and the leader settled ({}) \
         while {} could replace it",
        decision.reason,
        replacement.map_or("nobody", |r| r.name.as_str())
    );
}

/// Rule 4: never stream from a history that diverged from this node's
/// (the one divergence judgement of `decide/rewind.rs`, without the
/// leader's timeline, which the follower may know to be stale).
fn linear_history(obs: &Observation, view: &ClusterView, actions: &[Action]) {
    for action in actions {
        let upstream = match action {
            Action::StartPostgres { role: StartAs::Replica { upstream: Some(u) } } => u,
            Action::Follow { upstream: Some(u) } => u,
            _ => continue,
        };
        if let Some(fork_lsn) = rewind::divergence(&obs.pg, &view.history, None) {
            panic!(
                "rule 4: streams from {upstream} though its history left the cluster's at {fork_lsn}: \
                 {actions:?}"
            );
        }
    }
}

/// Rule 10: whoever takes the lock, whoever the leader hands over to and
/// whoever the others wait for is fit to lead by the one predicate
/// (`decide/fitness.rs`). The lag limit is left to the callers that apply
/// it; a bootstrap's lock (no cluster yet) is not a failover. The
/// promotion that follows the lock is not judged again, as in Patroni: a
/// tag reloaded in between does not take back a lock already won.
fn one_judgement_of_fitness(
    prev: &State,
    obs: &Observation,
    next: &State,
    view: &ClusterView,
    decision: &Decision,
) {
    let judge = Judge::new(prev, obs, next, view);
    let initialised = view.initialize.as_deref().is_some_and(|i| !i.is_empty());
    let bootstrap = !initialised || next.role == Role::Bootstrapping;
    let actions = &decision.actions;
    if !bootstrap && actions.contains(&Action::AcquireLease) {
        if let Err(why) = judge.me(None) {
            panic!("rule 10: {} takes the lock, though it is {why}: {actions:?}", next.name);
        }
    }
    let hands_over = actions.iter().any(|a| matches!(a, Action::Demote { .. }));
    match &decision.reason {
        Reason::Switchover { candidate: Some(c) } if hands_over => {
            if let Err(why) = judge.member(c, Some(obs.pg.wal_position())) {
                panic!("rule 10: hands over to {c}, though it is {why}");
            }
        }
        Reason::Switchover { candidate: None } if hands_over => {
            assert!(judge.anyone_else(), "rule 10: steps down though no other member is fit to lead");
        }
        Reason::WaitingForCandidate { candidate } => {
            if let Err(why) = judge.member(candidate, None) {
                panic!("rule 10: waits for {candidate} to lead, though it is {why}");
            }
        }
        _ => {}
    }
}
