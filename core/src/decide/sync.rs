//! Synchronous replication (behaviour 11, safety rules 3 and 8).
//!
//! The sync key must name only members that Postgres already waits for, so
//! that whoever the key allows to be promoted has every acknowledged commit.
//! In `on` mode: to add a standby, change `synchronous_standby_names` first,
//! wait until Postgres reports it synchronous, then write the key; to remove
//! one, write the key first, then change Postgres. One change per step; the
//! next step sees its effect. In `quorum` mode the same guarantee is kept by
//! a counting rule (see [`quorum_safe`]).

use std::collections::BTreeSet;

use super::{Ctx, Verdict};
use crate::dcs::{ClusterView, SyncKey, SyncMode};
use crate::decision::{Action, Reason, SyncUpdate};
use crate::pg::{Standby, StandbySyncState, SyncNames};

/// A standby name nobody has: with it, strict mode blocks commits rather
/// than let them go asynchronous.
pub(crate) const PLACEHOLDER: &str = "__keel_strict_sync_placeholder__";

pub(crate) fn placeholder(cfg: &crate::dcs::DynamicConfig) -> SyncNames {
    SyncNames {
        members: [PLACEHOLDER.to_owned()].into(),
        num: 1,
        quorum: cfg.synchronous_mode == SyncMode::Quorum,
    }
}

/// `synchronous_standby_names` for a node about to promote in synchronous
/// mode: what the leader's sync step decides while no standby streams to
/// it yet. Not strict: none, as Patroni does (the sync key, claimed naming
/// nobody, lets no replica win until one is confirmed). Strict: every other
/// running member that may be synchronous, of which
/// `synchronous_node_count` must confirm each commit (`FIRST`, or `ANY` in
/// quorum mode), or the placeholder when there is none: commits wait from
/// the first one on, and go on as soon as a standby of this cluster
/// streams. Never the names kept from an earlier term.
pub(super) fn at_promotion(cx: &Ctx, view: &ClusterView) -> SyncNames {
    if !cx.cfg.synchronous_mode_strict {
        return SyncNames::default();
    }
    let members: BTreeSet<String> = view
        .members
        .iter()
        .filter(|(name, m)| name.as_str() != cx.me() && m.is_running() && !m.tags.nosync)
        .map(|(name, _)| name.clone())
        .collect();
    if members.is_empty() {
        return placeholder(&cx.cfg);
    }
    let num = (cx.cfg.synchronous_node_count as usize).clamp(1, members.len()) as u32;
    SyncNames { members, num, quorum: cx.cfg.synchronous_mode == SyncMode::Quorum }
}

pub(super) fn decide(cx: &Ctx, view: &ClusterView) -> Option<Verdict> {
    let pg_names = &cx.obs.pg.sync_standby_names;
    if !cx.cfg.sync_enabled() {
        if !pg_names.members.is_empty() {
            let action = Action::SetSyncStandbyNames(SyncNames::default());
            return Some((vec![action], Reason::SyncChange { change: SyncUpdate::OffStopWaiting }));
        }
        // Forget the old standbys, so that turning synchronous mode on
        // again never trusts a standby for commits made meanwhile.
        let key =
            view.sync.as_ref().filter(|k| k.leader.as_deref() == Some(cx.me()) && !k.members.is_empty())?;
        let change = SyncUpdate::OffEmptyingKey;
        return Some((write_key(key, BTreeSet::new(), key.quorum), Reason::SyncChange { change }));
    }
    let quorum = cx.cfg.synchronous_mode == SyncMode::Quorum;
    let Some(key) = view.sync.as_ref().filter(|s| s.leader.as_deref() == Some(cx.me())) else {
        // The key exists from the start, naming nobody, so that no
        // asynchronous replica can win an election (rule 3).
        let action = Action::WriteSyncKey {
            members: BTreeSet::new(),
            quorum: quorum.then_some(0),
            expected_revision: view.sync.as_ref().map(|s| s.revision),
        };
        return Some((vec![action], Reason::SyncChange { change: SyncUpdate::ClaimingKey }));
    };
    let desired = desired_standbys(cx, view, key);
    if quorum {
        quorum_step(cx, key, &desired)
    } else {
        on_step(cx, key, desired)
    }
}

fn on_step(cx: &Ctx, key: &SyncKey, desired: Vec<String>) -> Option<Verdict> {
    let pg = &cx.obs.pg;
    let desired: BTreeSet<String> = desired.into_iter().collect();
    // Strict mode with nobody to replace them: the last synchronous
    // standbys stay named. Commits wait (that is what strict means), and a
    // standby named has every acknowledged commit, so it may still take
    // over if this primary dies (rule 3). Emptying the key left nobody
    // allowed to.
    let hold = cx.cfg.synchronous_mode_strict && desired.is_empty();
    // The key keeps only members still wanted that Postgres waits for now.
    let keep: BTreeSet<String> = key
        .members
        .iter()
        .filter(|m| (hold || desired.contains(*m)) && pg.sync_standby_names.members.contains(*m))
        .cloned()
        .collect();
    let removed: BTreeSet<String> = key.members.difference(&keep).cloned().collect();
    if !removed.is_empty() {
        let change = SyncUpdate::Removing { members: removed };
        return Some((write_key(key, keep, None), Reason::SyncChange { change }));
    }
    let target = if desired.is_empty() && cx.cfg.synchronous_mode_strict {
        if pg.sync_standby_names.members.is_empty() {
            placeholder(&cx.cfg)
        } else {
            pg.sync_standby_names.clone()
        }
    } else {
        let num = desired.len() as u32;
        SyncNames { members: desired.clone(), num, quorum: false }
    };
    if pg.sync_standby_names != target {
        let change = SyncUpdate::StandbyNames { names: target.clone() };
        return Some((vec![Action::SetSyncStandbyNames(target)], Reason::SyncChange { change }));
    }
    let confirmed = confirmed(cx);
    let added: BTreeSet<String> =
        desired.intersection(&confirmed).filter(|m| !key.members.contains(*m)).cloned().collect();
    if !added.is_empty() {
        let members = key.members.union(&added).cloned().collect();
        let change = SyncUpdate::Adding { members: added };
        return Some((write_key(key, members, None), Reason::SyncChange { change }));
    }
    if desired.is_empty() && cx.cfg.synchronous_mode_strict {
        return Some((Vec::new(), Reason::SyncStrictWithoutStandby));
    }
    None
}

/// Quorum mode. Postgres runs `ANY qp (P)`: every acknowledged commit is on
/// at least `qp` members of P. The key `(K, qk)` promises that it is on at
/// least `qk` members of K, so an election needs `|K| - qk + 1` of them and
/// picks the furthest. The promise holds while `qk <= qp - |P \ K|`.
fn quorum_step(cx: &Ctx, key: &SyncKey, desired: &[String]) -> Option<Verdict> {
    let pg_names = &cx.obs.pg.sync_standby_names;
    let members: BTreeSet<String> = desired.iter().cloned().collect();
    let num = (cx.cfg.synchronous_node_count as usize).min(members.len()) as u32;
    let target = match (members.is_empty(), cx.cfg.synchronous_mode_strict) {
        (true, true) => placeholder(&cx.cfg),
        (true, false) => SyncNames::default(),
        (false, _) => SyncNames { members: members.clone(), num, quorum: true },
    };
    let key_quorum = key.quorum.unwrap_or(0);
    if *pg_names != target && quorum_safe(&key.members, key_quorum, &target) {
        let change = SyncUpdate::StandbyNames { names: target.clone() };
        return Some((vec![Action::SetSyncStandbyNames(target)], Reason::SyncChange { change }));
    }
    let safe_now = pg_names.num.saturating_sub(pg_names.members.difference(&members).count() as u32);
    let key_target = num.min(safe_now);
    if key.members != members || key_quorum != key_target {
        let change = SyncUpdate::QuorumKey { members: members.clone(), quorum: key_target };
        return Some((write_key(key, members, Some(key_target)), Reason::SyncChange { change }));
    }
    None
}

/// Whether the key `(members, quorum)` keeps its promise under `names`.
pub(crate) fn quorum_safe(members: &BTreeSet<String>, quorum: u32, names: &SyncNames) -> bool {
    let outside = names.members.difference(members).count() as u32;
    quorum == 0 || quorum + outside <= names.num
}

/// Healthy standbys, best first: streaming from this leader, with a live
/// member key and a recent reply (rule 8), not `nosync`, within
/// `maximum_lag_on_syncnode`. Standbys that may fail over come first
/// (Patroni sorts `nofailover` last), so that a `nofailover` standby is
/// never the only synchronous one while another could serve: if this
/// primary died, nobody would be allowed to take over. Then current sync
/// members and standbys Postgres already waits for, for stability; then
/// the furthest WAL; then the name.
fn desired_standbys(cx: &Ctx, view: &ClusterView, key: &SyncKey) -> Vec<String> {
    let reply_timeout_ms = cx.cfg.ttl_ms / 2;
    let leader_lsn = cx.optime();
    let mut rows: Vec<_> = cx
        .obs
        .pg
        .replication
        .iter()
        .filter(|r| r.streaming && r.name != cx.me() && r.reply_age_ms <= reply_timeout_ms)
        .filter(|r| view.members.get(&r.name).is_some_and(|m| m.is_running() && !m.tags.nosync))
        .filter(|r| {
            let lag = leader_lsn.saturating_sub(r.flush_lsn);
            cx.cfg.maximum_lag_on_syncnode_bytes.is_none_or(|max| lag <= max)
        })
        .collect();
    rows.sort_by(|a, b| {
        let key_of = |r: &Standby| {
            let capable = view.members.get(&r.name).is_some_and(|m| m.tags.can_fail_over());
            // Postgres' own order after that (Patroni sorts by sync_state
            // before the position): a standby already synchronous is not
            // swapped for one a little further ahead, which would only
            // widen the window in which the key names nobody.
            let waited_for = match r.sync_state {
                StandbySyncState::Sync => 0,
                StandbySyncState::Quorum => 1,
                StandbySyncState::Potential => 2,
                StandbySyncState::Async => 3,
            };
            let named = !key.members.contains(&r.name);
            (!capable, named, waited_for, std::cmp::Reverse(r.flush_lsn), r.name.clone())
        };
        let (ka, kb) = (key_of(a), key_of(b));
        ka.cmp(&kb)
    });
    rows.dedup_by(|a, b| a.name == b.name);
    let count = match cx.cfg.synchronous_mode {
        SyncMode::Quorum => rows.len(),
        _ => cx.cfg.synchronous_node_count as usize,
    };
    rows.into_iter().take(count).map(|r| r.name.clone()).collect()
}

/// Standbys Postgres reports as synchronous now, and whose flush position
/// reached this primary's when they were listed (rule 3, Patroni's
/// `_process_replica_readiness`): only then do they hold every commit
/// acknowledged before they were waited for.
fn confirmed(cx: &Ctx) -> BTreeSet<String> {
    let since_lsn = cx.next.sync_names_since_lsn;
    cx.obs
        .pg
        .replication
        .iter()
        .filter(|r| r.streaming && r.flush_lsn >= since_lsn)
        .filter(|r| matches!(r.sync_state, StandbySyncState::Sync | StandbySyncState::Quorum))
        .map(|r| r.name.clone())
        .collect()
}

fn write_key(key: &SyncKey, members: BTreeSet<String>, quorum: Option<u32>) -> Vec<Action> {
    vec![Action::WriteSyncKey { members, quorum, expected_revision: Some(key.revision) }]
}
