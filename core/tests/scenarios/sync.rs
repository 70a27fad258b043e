//! Behaviour 11 and safety rules 3 and 8: synchronous replication. The sync
//! key names only standbys Postgres already waits for: to add one,
//! `synchronous_standby_names` changes first and the key follows once
//! Postgres reports it synchronous; to remove one, the key changes first.
//! The leader's sync change comes after its lease renewal, one per step.

use std::collections::BTreeSet;

use crate::harness::*;
use keel_core::dcs::SyncKey;
use keel_core::*;

/// The leader's lease: far enough ahead that no step here demotes.
const DEADLINE_MS: u64 = 60_000;

fn quorum(v: ClusterView) -> ClusterView {
    with_config(v, |c| c.synchronous_mode = SyncMode::Quorum)
}

/// The sync key with a quorum, as a quorum-mode leader writes it.
fn with_quorum_key(v: ClusterView, members: &[&str], quorum: u32) -> ClusterView {
    let mut v = with_sync(v, "pg1", members);
    v.sync.as_mut().unwrap().quorum = Some(quorum);
    v
}

/// pg1, the leader, at 1000 with these standbys and this
/// `synchronous_standby_names`.
fn leader_pg(standbys: Vec<Standby>, names: SyncNames) -> PgFacts {
    let mut p = primary_pg(1000);
    p.replication = standbys;
    p.sync_standby_names = names;
    p
}

fn both_async() -> Vec<Standby> {
    vec![standby("pg2", 1000, StandbySyncState::Async), standby("pg3", 1000, StandbySyncState::Async)]
}

fn quorum_names(members: &[&str], num: u32) -> SyncNames {
    SyncNames { quorum: true, ..names(members, num) }
}

fn write_key(members: &[&str], quorum: Option<u32>) -> Action {
    Action::WriteSyncKey { members: set(members), quorum, expected_revision: Some(95) }
}

fn set_names(n: SyncNames) -> Action {
    Action::SetSyncStandbyNames(n)
}

fn change(d: &Decision) -> String {
    match &d.reason {
        Reason::SyncChange { change } => change.to_string(),
        other => panic!("expected a sync change, got {other:?}"),
    }
}

/// A `synchronous_standby_names` that names nobody of the cluster, so that
/// commits wait (strict mode's placeholder).
fn is_placeholder(n: &SyncNames) -> bool {
    let cluster = cluster();
    n.num == 1 && n.members.len() == 1 && n.members.iter().all(|m| !cluster.members.contains_key(m))
}

fn step(n: &mut Node, now_ms: u64, v: &ClusterView, p: PgFacts) -> Decision {
    n.step(&Obs::new(now_ms, v.clone(), p).0)
}

// The key exists from the start, naming nobody (rule 3).

#[test]
fn leader_without_sync_key_claims_it_naming_nobody() {
    let v = sync_on(cluster());
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(both_async(), SyncNames::default()));
    assert_eq!(
        acts(&d),
        vec![
            renew(1000),
            Action::WriteSyncKey { members: BTreeSet::new(), quorum: None, expected_revision: None }
        ]
    );
    assert_eq!(reason(&d), "sync: claiming the sync key for this leader, naming nobody yet");
}

#[test]
fn leader_claims_sync_key_left_by_previous_leader() {
    let v = with_sync(sync_on(cluster()), "pg3", &["pg1"]);
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(both_async(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
}

#[test]
fn quorum_leader_without_sync_key_claims_it_with_quorum_zero() {
    let v = quorum(cluster());
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(both_async(), SyncNames::default()));
    assert_eq!(
        acts(&d),
        vec![
            renew(1000),
            Action::WriteSyncKey { members: BTreeSet::new(), quorum: Some(0), expected_revision: None }
        ]
    );
}

#[test]
fn new_leader_writes_sync_key_naming_nobody_before_promoting() {
    // pg1 failed; pg2, its sync standby, took the lock.
    let mut v = with_sync(sync_on(with_leader(cluster(), "pg2")), "pg1", &["pg2"]);
    v.members.remove("pg1");
    let mut n = leader("pg2", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, replica_pg(1000));
    assert_eq!(acts(&d), vec![write_key(&[], None)]);
    assert_eq!(d.reason, Reason::ClaimingSyncKey);
    assert_eq!(reason(&d), "sync: writing the sync key for myself before promoting");
    // The key names pg2 as leader and nobody else: now it promotes.
    v.revision = 101;
    v.sync =
        Some(SyncKey { leader: Some("pg2".into()), members: BTreeSet::new(), quorum: None, revision: 101 });
    let o = Obs::new(2000, v, replica_pg(1000)).outcome(write_key(&[], None), ActionResult::Done, 1000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![Action::Promote]);
    assert_eq!(d.reason, Reason::Promoting);
}

#[test]
fn strict_new_leader_blocks_commits_before_its_first_write() {
    let mut v = with_sync(strict(with_leader(cluster(), "pg2")), "pg2", &[]);
    v.members.remove("pg1");
    // pg3 is there: commits wait for it.
    let d = step(&mut leader("pg2", DEADLINE_MS), 1000, &v, replica_pg(1000));
    assert_eq!(acts(&d), vec![set_names(names(&["pg3"], 1)), Action::Promote]);
    // Nobody else: commits wait for nobody's confirmation, i.e. they wait.
    v.members.remove("pg3");
    let d = step(&mut leader("pg2", DEADLINE_MS), 1000, &v, replica_pg(1000));
    match acts(&d).as_slice() {
        [Action::SetSyncStandbyNames(n), Action::Promote] => {
            assert!(is_placeholder(n), "not a placeholder: {n:?}")
        }
        other => panic!("expected the placeholder, then promote: {other:?}"),
    }
}

/// Found by keel-bench: a node that had been primary kept its old
/// `synchronous_standby_names` as a replica; promoted, its first commits
/// waited for a standby that was gone, then for the new standby's next
/// reply once the leader changed the names (1 s). Before Postgres
/// promotes, the names are what the leader's sync step decides with no
/// standby streaming yet: none when not strict (Patroni's way; the key,
/// naming nobody, lets no replica win meanwhile), this cluster's standbys
/// in strict mode, never fewer than one.
#[test]
fn promotion_replaces_names_kept_from_an_earlier_term() {
    // pg1, the old primary, is dead; pg2 was primary once and kept pg1.
    let mut v = with_sync(sync_on(with_leader(cluster(), "pg2")), "pg2", &[]);
    v.members.remove("pg1");
    let mut pg = replica_pg(1000);
    pg.sync_standby_names = names(&["pg1"], 1);
    let d = step(&mut leader("pg2", DEADLINE_MS), 1000, &v, pg.clone());
    assert_eq!(acts(&d), vec![set_names(SyncNames::default()), Action::Promote]);
    // Strict: commits wait for pg3, the standby there is.
    let mut v = strict(v);
    let d = step(&mut leader("pg2", DEADLINE_MS), 1000, &v, pg.clone());
    assert_eq!(acts(&d), vec![set_names(names(&["pg3"], 1)), Action::Promote]);
    // Names that are already right stay.
    pg.sync_standby_names = names(&["pg3"], 1);
    let d = step(&mut leader("pg2", DEADLINE_MS), 1000, &v, pg.clone());
    assert_eq!(acts(&d), vec![Action::Promote]);
    // A nosync member is never waited for: with nobody left, the
    // placeholder, never ''.
    v.members.get_mut("pg3").unwrap().tags.nosync = true;
    let d = step(&mut leader("pg2", DEADLINE_MS), 1000, &v, pg);
    match acts(&d).as_slice() {
        [Action::SetSyncStandbyNames(n), Action::Promote] => {
            assert!(is_placeholder(n), "not a placeholder: {n:?}")
        }
        other => panic!("expected the placeholder, then promote: {other:?}"),
    }
}

#[test]
fn strict_quorum_promotion_waits_for_any_of_the_others() {
    let v = with_config(quorum(with_leader(cluster(), "pg2")), |c| c.synchronous_mode_strict = true);
    let mut v = with_quorum_key(v, &[], 0);
    v.sync.as_mut().unwrap().leader = Some("pg2".into());
    let mut pg = replica_pg(1000);
    pg.sync_standby_names = quorum_names(&["pg2", "pg3"], 1);
    let d = step(&mut leader("pg2", DEADLINE_MS), 1000, &v, pg);
    assert_eq!(acts(&d), vec![set_names(quorum_names(&["pg1", "pg3"], 1)), Action::Promote]);
}

#[test]
fn replica_not_in_sync_key_never_wins_election() {
    // pg3 is the furthest ahead, but only pg2 is in the key.
    let mut v = with_sync(sync_on(no_leader(cluster())), "pg1", &["pg2"]);
    v.members.get_mut("pg3").unwrap().lsn = 1100;
    let d = replica("pg3").step(&Obs::new(1000, v, replica_pg(1100)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::NotHealthiest { why: Unfit::NotSyncStandby });
}

#[test]
fn sync_key_naming_nobody_lets_no_replica_win_election() {
    let v = with_sync(sync_on(no_leader(cluster())), "pg1", &[]);
    for name in ["pg2", "pg3"] {
        let d = replica(name).step(&Obs::new(1000, v.clone(), replica_pg(1000)).0);
        assert_eq!(acts(&d), vec![], "{name}");
        assert_eq!(d.reason, Reason::NotHealthiest { why: Unfit::NotSyncStandby }, "{name}");
    }
}

#[test]
fn sync_standby_in_the_key_wins_election() {
    let v = with_sync(sync_on(no_leader(cluster())), "pg1", &["pg2"]);
    let d = replica("pg2").step(&Obs::new(1000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

// Adding a standby: Postgres first, then the key (rule 3).

#[test]
fn new_sync_standby_goes_into_postgres_before_the_key() {
    let v = with_sync(sync_on(cluster()), "pg1", &[]);
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(both_async(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg2"], 1))]);
    assert_eq!(change(&d), "synchronous_standby_names becomes FIRST 1 (pg2)");
    assert_eq!(d.wake_after_ms, 0);
    // Postgres runs with the new names, but pg2 is still catching up.
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Async), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut n, 2000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::LeaderHealthy { name: "pg1".into() });
    // Postgres reports pg2 synchronous: now the key names it.
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut n, 3000, &v, leader_pg(standbys.clone(), names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&["pg2"], None)]);
    assert_eq!(change(&d), "pg2 confirmed synchronous: adding to the sync key");
    // The key is written: nothing more to do.
    let v = with_sync(v, "pg1", &["pg2"]);
    let d = step(&mut n, 4000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(reason(&d), "no action: I am pg1, the leader with the lock");
}

#[test]
fn standby_listed_in_postgres_but_not_reported_sync_stays_out_of_the_key() {
    let v = with_sync(sync_on(cluster()), "pg1", &[]);
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(both_async(), names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
}

#[test]
fn synchronous_node_count_two_names_two_standbys() {
    let v = with_config(with_sync(sync_on(cluster()), "pg1", &[]), |c| c.synchronous_node_count = 2);
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(both_async(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg2", "pg3"], 2))]);
    // Only pg3 reports synchronous so far: only pg3 goes into the key.
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Potential), standby("pg3", 1000, StandbySyncState::Sync)];
    let d = step(&mut n, 2000, &v, leader_pg(standbys, names(&["pg2", "pg3"], 2)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&["pg3"], None)]);
    let v = with_sync(v, "pg1", &["pg3"]);
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Sync)];
    let d = step(&mut n, 3000, &v, leader_pg(standbys, names(&["pg2", "pg3"], 2)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&["pg2", "pg3"], None)]);
}

#[test]
fn synchronous_node_count_one_names_the_furthest_standby() {
    let v = with_sync(sync_on(cluster()), "pg1", &[]);
    let standbys =
        vec![standby("pg2", 900, StandbySyncState::Async), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg3"], 1))]);
}

#[test]
fn current_sync_standby_is_kept_when_another_is_further_ahead() {
    let v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let standbys =
        vec![standby("pg2", 900, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::LeaderHealthy { name: "pg1".into() });
}

#[test]
fn raising_synchronous_node_count_adds_the_second_standby_to_postgres_first() {
    let v = with_config(with_sync(sync_on(cluster()), "pg1", &["pg2"]), |c| c.synchronous_node_count = 2);
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg2", "pg3"], 2))]);
}

#[test]
fn lowering_synchronous_node_count_removes_from_the_key_first() {
    let v = with_sync(sync_on(cluster()), "pg1", &["pg2", "pg3"]);
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 990, StandbySyncState::Sync)];
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(standbys.clone(), names(&["pg2", "pg3"], 2)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&["pg2"], None)]);
    assert_eq!(change(&d), "removing pg3 from the sync key first");
    let v = with_sync(v, "pg1", &["pg2"]);
    let d = step(&mut n, 2000, &v, leader_pg(standbys, names(&["pg2", "pg3"], 2)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg2"], 1))]);
}

#[test]
fn nosync_member_is_never_chosen() {
    let mut v = with_sync(sync_on(cluster()), "pg1", &[]);
    v.members.get_mut("pg2").unwrap().tags.nosync = true;
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Async), standby("pg3", 900, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg3"], 1))]);
}

#[test]
fn nosync_member_reported_sync_is_not_added_to_the_key() {
    // Postgres lists pg2 (set by hand, or before the tag): keel neither keeps
    // it in Postgres nor ever writes it into the key.
    let mut v = with_sync(sync_on(cluster()), "pg1", &[]);
    v.members.get_mut("pg2").unwrap().tags.nosync = true;
    v.members.get_mut("pg3").unwrap().tags.nosync = true;
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(SyncNames::default())]);
}

#[test]
fn sync_standby_tagged_nosync_is_removed_from_the_key_first() {
    let mut v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    v.members.get_mut("pg2").unwrap().tags.nosync = true;
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
}

#[test]
fn standby_lagging_beyond_maximum_lag_on_syncnode_is_not_chosen() {
    let v = with_config(with_sync(sync_on(cluster()), "pg1", &[]), |c| {
        c.maximum_lag_on_syncnode_bytes = Some(100)
    });
    let standbys =
        vec![standby("pg2", 850, StandbySyncState::Async), standby("pg3", 900, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, SyncNames::default()));
    // pg2 is 150 bytes behind; pg3, exactly 100, is within the limit.
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg3"], 1))]);
}

#[test]
fn sync_standby_falling_behind_maximum_lag_on_syncnode_is_replaced() {
    let v = with_config(with_sync(sync_on(cluster()), "pg1", &["pg2"]), |c| {
        c.maximum_lag_on_syncnode_bytes = Some(100)
    });
    let standbys =
        vec![standby("pg2", 500, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
}

// A silent sync standby is replaced (rule 8), in rule 3's order.

#[test]
fn silent_sync_standby_is_removed_from_the_key_before_postgres() {
    let v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let mut silent = standby("pg2", 1000, StandbySyncState::Sync);
    silent.reply_age_ms = TTL_MS / 2 + 1;
    let standbys = vec![silent, standby("pg3", 1000, StandbySyncState::Async)];
    let mut n = leader("pg1", DEADLINE_MS);
    // 1. The key stops naming pg2.
    let d = step(&mut n, 1000, &v, leader_pg(standbys.clone(), names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
    assert_eq!(change(&d), "removing pg2 from the sync key first");
    // 2. Postgres waits for pg3 instead.
    let v = with_sync(v, "pg1", &[]);
    let d = step(&mut n, 2000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg3"], 1))]);
    // 3. Once Postgres reports pg3 synchronous, the key names it.
    let mut silent = standby("pg2", 1000, StandbySyncState::Async);
    silent.reply_age_ms = TTL_MS;
    let standbys = vec![silent, standby("pg3", 1000, StandbySyncState::Sync)];
    let d = step(&mut n, 3000, &v, leader_pg(standbys, names(&["pg3"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&["pg3"], None)]);
}

#[test]
fn sync_standby_replying_within_half_the_ttl_is_kept() {
    let v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let mut slow = standby("pg2", 1000, StandbySyncState::Sync);
    slow.reply_age_ms = TTL_MS / 2;
    let standbys = vec![slow, standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
}

#[test]
fn sync_standby_whose_member_key_expired_is_replaced() {
    let mut v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    v.members.remove("pg2");
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(standbys.clone(), names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
    let v = with_sync(v, "pg1", &[]);
    let d = step(&mut n, 2000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg3"], 1))]);
}

#[test]
fn sync_standby_no_longer_streaming_is_replaced() {
    let v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let mut gone = standby("pg2", 1000, StandbySyncState::Sync);
    gone.streaming = false;
    let standbys = vec![gone, standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
}

// No healthy standby: strict mode blocks, the default goes asynchronous.

#[test]
fn non_strict_leader_goes_asynchronous_when_no_standby_is_healthy() {
    let v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(Vec::new(), names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
    let v = with_sync(v, "pg1", &[]);
    let d = step(&mut n, 2000, &v, leader_pg(Vec::new(), names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(SyncNames::default())]);
    assert_eq!(change(&d), "synchronous_standby_names becomes '' (asynchronous)");
    let d = step(&mut n, 3000, &v, leader_pg(Vec::new(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000)]);
}

#[test]
fn strict_mode_without_standbys_blocks_writes_with_a_placeholder() {
    let v = with_sync(strict(cluster()), "pg1", &[]);
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(Vec::new(), SyncNames::default()));
    let placeholder = match acts(&d).as_slice() {
        [r, Action::SetSyncStandbyNames(p)] if *r == renew(1000) && is_placeholder(p) => p.clone(),
        other => panic!("expected renew, then the placeholder: {other:?}"),
    };
    // With the placeholder in place, commits wait: nothing more to change.
    let d = step(&mut n, 2000, &v, leader_pg(Vec::new(), placeholder));
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::SyncStrictWithoutStandby);
    assert_eq!(d.reason.to_string(), "sync: strict mode and no healthy standby: commits wait");
}

/// Defect 5 of issue 12: the key was emptied, so nobody could take over
/// if the primary then died, though pg2 has every acknowledged commit.
#[test]
fn strict_mode_keeps_the_last_sync_standby_named_when_it_goes_silent_with_no_replacement() {
    let v = with_sync(strict(cluster()), "pg1", &["pg2"]);
    let mut silent = standby("pg2", 1000, StandbySyncState::Sync);
    silent.reply_age_ms = TTL_MS;
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(vec![silent.clone()], names(&["pg2"], 1)));
    // Postgres still waits for pg2 and the key still names it: writes block.
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(reason(&d), "sync: strict mode and no healthy standby: commits wait");
    let d = step(&mut n, 2000, &v, leader_pg(Vec::new(), names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
}

#[test]
fn strict_mode_last_sync_standby_may_take_over_when_the_primary_dies_after_it_went_silent() {
    let v = with_sync(strict(no_leader(cluster())), "pg1", &["pg2"]);
    let d = replica("pg2").step(&Obs::new(1000, v.clone(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    let d = replica("pg3").step(&Obs::new(1000, v, replica_pg(1000)).0);
    assert_eq!(d.reason, Reason::NotHealthiest { why: Unfit::NotSyncStandby });
}

#[test]
fn strict_mode_replaces_a_silent_sync_standby_when_a_healthy_one_streams() {
    let v = with_sync(strict(cluster()), "pg1", &["pg2"]);
    let mut silent = standby("pg2", 1000, StandbySyncState::Sync);
    silent.reply_age_ms = TTL_MS;
    let standbys = vec![silent, standby("pg3", 1000, StandbySyncState::Potential)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    // Rule 3: out of the key first, then out of Postgres.
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
}

#[test]
fn strict_mode_unblocks_when_a_healthy_standby_appears() {
    let v = with_sync(strict(cluster()), "pg1", &[]);
    let mut silent = standby("pg2", 1000, StandbySyncState::Sync);
    silent.reply_age_ms = TTL_MS;
    let standbys = vec![silent, standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg3"], 1))]);
}

#[test]
fn turning_sync_mode_off_clears_synchronous_standby_names() {
    let v = with_sync(cluster(), "pg1", &["pg2"]);
    let standbys = vec![standby("pg2", 1000, StandbySyncState::Sync)];
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(standbys.clone(), names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(SyncNames::default())]);
    assert_eq!(change(&d), "synchronous mode is off: commits no longer wait for standbys");
    // Then the key forgets its standbys, so that turning synchronous mode
    // on again never trusts one for commits made meanwhile.
    let d = step(&mut n, 2000, &v, leader_pg(standbys, SyncNames::default()));
    assert_eq!(
        acts(&d),
        vec![
            renew(1000),
            Action::WriteSyncKey { members: set(&[]), quorum: None, expected_revision: Some(95) }
        ]
    );
}

#[test]
fn sync_key_naming_a_standby_postgres_does_not_wait_for_is_corrected_first() {
    // Synchronous mode was turned off (Postgres went asynchronous, the key
    // stayed) and on again: the key names pg2, which Postgres does not wait
    // for. Before anything else the key must stop naming it (rule 3).
    let v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(both_async(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
}

#[test]
fn sync_change_is_renewal_first_and_one_change_per_step() {
    // Everything to do at once: pg2 silent in the key, pg3 healthy.
    let v = with_config(with_sync(sync_on(cluster()), "pg1", &["pg2"]), |c| c.synchronous_node_count = 2);
    let mut silent = standby("pg2", 1000, StandbySyncState::Sync);
    silent.reply_age_ms = TTL_MS;
    let standbys = vec![silent, standby("pg3", 1000, StandbySyncState::Sync)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2", "pg3"], 2)));
    let a = acts(&d);
    assert_eq!(a, vec![renew(1000), write_key(&[], None)]);
}

// Quorum mode: `ANY n (...)` and the key's quorum.

/// The promise of the key `(members, quorum)`: every acknowledged commit is
/// on at least `quorum` of `members`. Postgres running `ANY num (names)`
/// keeps it while `quorum + |names \ members| <= num` (keel's `quorum_safe`).
fn promise_kept(members: &BTreeSet<String>, quorum: u32, names: &SyncNames) -> bool {
    let outside = names.members.difference(members).count() as u32;
    quorum == 0 || quorum + outside <= names.num
}

#[test]
fn quorum_mode_adds_standbys_with_any_n_then_the_key_with_its_quorum() {
    let v = with_quorum_key(quorum(cluster()), &[], 0);
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(both_async(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(quorum_names(&["pg2", "pg3"], 1))]);
    assert_eq!(change(&d), "synchronous_standby_names becomes ANY 1 (pg2, pg3)");
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Quorum), standby("pg3", 1000, StandbySyncState::Quorum)];
    let d = step(&mut n, 2000, &v, leader_pg(standbys.clone(), quorum_names(&["pg2", "pg3"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&["pg2", "pg3"], Some(1))]);
    assert_eq!(change(&d), "sync key becomes pg2, pg3 with quorum 1");
    let v = with_quorum_key(v, &["pg2", "pg3"], 1);
    let d = step(&mut n, 3000, &v, leader_pg(standbys, quorum_names(&["pg2", "pg3"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
}

#[test]
fn quorum_mode_adding_a_member_widens_the_key_before_postgres() {
    // The key promises one of {pg2}; Postgres runs ANY 1 (pg2). Adding pg3
    // to Postgres first would break the promise: the key widens first.
    let v = with_quorum_key(quorum(cluster()), &["pg2"], 1);
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Quorum), standby("pg3", 1000, StandbySyncState::Async)];
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(standbys.clone(), quorum_names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&["pg2", "pg3"], Some(1))]);
    let v = with_quorum_key(v, &["pg2", "pg3"], 1);
    let d = step(&mut n, 2000, &v, leader_pg(standbys, quorum_names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(quorum_names(&["pg2", "pg3"], 1))]);
}

#[test]
fn quorum_mode_silent_member_leaves_postgres_then_the_key() {
    let v = with_quorum_key(quorum(cluster()), &["pg2", "pg3"], 1);
    let mut silent = standby("pg3", 1000, StandbySyncState::Quorum);
    silent.reply_age_ms = TTL_MS;
    let standbys = vec![standby("pg2", 1000, StandbySyncState::Quorum), silent];
    let mut n = leader("pg1", DEADLINE_MS);
    let d = step(&mut n, 1000, &v, leader_pg(standbys.clone(), quorum_names(&["pg2", "pg3"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), set_names(quorum_names(&["pg2"], 1))]);
    let d = step(&mut n, 2000, &v, leader_pg(standbys, quorum_names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&["pg2"], Some(1))]);
}

#[test]
fn quorum_mode_honours_synchronous_node_count() {
    let mut v = with_config(with_quorum_key(quorum(cluster()), &[], 0), |c| c.synchronous_node_count = 2);
    v.members.insert("pg4".into(), member(MemberRole::Replica, 1000));
    let mut standbys = both_async();
    standbys.push(standby("pg4", 1000, StandbySyncState::Async));
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(quorum_names(&["pg2", "pg3", "pg4"], 2))]);
}

#[test]
fn quorum_mode_never_names_a_nosync_member() {
    let mut v = with_quorum_key(quorum(cluster()), &[], 0);
    v.members.get_mut("pg3").unwrap().tags.nosync = true;
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(both_async(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(quorum_names(&["pg2"], 1))]);
}

#[test]
fn quorum_mode_without_standbys_settles_on_asynchronous_names() {
    // The last standby left: the key names nobody with quorum 0, Postgres
    // runs asynchronously (''). Nothing is left to change.
    let v = with_quorum_key(quorum(cluster()), &[], 0);
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(Vec::new(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000)]);
}

#[test]
fn strict_quorum_mode_without_standbys_blocks_with_a_placeholder() {
    let v =
        with_config(with_quorum_key(quorum(cluster()), &["pg2"], 1), |c| c.synchronous_mode_strict = true);
    let mut n = leader("pg1", DEADLINE_MS);
    // Postgres still waits for pg2, which is gone: the key shrinks first.
    let d = step(&mut n, 1000, &v, leader_pg(Vec::new(), quorum_names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], Some(0))]);
    let v = with_quorum_key(v, &[], 0);
    let d = step(&mut n, 2000, &v, leader_pg(Vec::new(), quorum_names(&["pg2"], 1)));
    match acts(&d).as_slice() {
        [r, Action::SetSyncStandbyNames(p)] if *r == renew(1000) => {
            assert!(p.quorum && p.members.len() == 1 && p.num == 1, "{p:?}");
            assert!(is_placeholder(p), "not a placeholder: {p:?}");
        }
        other => panic!("expected renew, then an ANY placeholder: {other:?}"),
    }
}

/// Drives a quorum-mode leader from `(key, names)` towards the healthy
/// standbys `healthy`, applying each action as the DCS and Postgres would,
/// and checks every step against the key's promise.
fn drive_quorum(node_count: u32, key: (&[&str], u32), names_now: SyncNames, healthy: &[&str]) {
    let all = ["pg2", "pg3", "pg4", "pg5"];
    let mut v = with_config(quorum(cluster()), |c| c.synchronous_node_count = node_count);
    for m in ["pg4", "pg5"] {
        v.members.insert(m.into(), member(MemberRole::Replica, 1000));
    }
    let mut v = with_quorum_key(v, key.0, key.1);
    let mut pg_names = names_now;
    let standbys: Vec<Standby> = all
        .iter()
        .map(|m| {
            let mut s = standby(m, 1000, StandbySyncState::Quorum);
            if !healthy.contains(m) {
                s.reply_age_ms = TTL_MS;
            }
            s
        })
        .collect();
    let mut n = leader("pg1", DEADLINE_MS);
    let case = format!("node_count {node_count}, key {key:?}, healthy {healthy:?}");
    for i in 0..8u64 {
        let d = step(&mut n, 1000 + i, &v, leader_pg(standbys.clone(), pg_names.clone()));
        let a = acts(&d);
        assert_eq!(a.first(), Some(&renew(1000)), "{case}: {a:?}");
        assert!(a.len() <= 2, "{case}: more than one sync change in a step: {a:?}");
        let key_now = v.sync.clone().unwrap();
        match a.get(1) {
            None => {
                let want: BTreeSet<String> = healthy.iter().map(|m| m.to_string()).collect();
                let num = node_count.min(want.len() as u32);
                assert_eq!(key_now.members, want, "{case}: key did not converge");
                assert_eq!(key_now.quorum.unwrap_or(0), num, "{case}: key quorum");
                assert_eq!(pg_names.members, want, "{case}: names did not converge");
                assert_eq!(pg_names.num, num, "{case}: names num");
                return;
            }
            Some(Action::SetSyncStandbyNames(new)) => {
                assert!(new.quorum || new.members.is_empty(), "{case}: {new:?} is not ANY");
                assert!(
                    promise_kept(&key_now.members, key_now.quorum.unwrap_or(0), new),
                    "{case}: {new:?} breaks the key {key_now:?}"
                );
                pg_names = new.clone();
            }
            Some(Action::WriteSyncKey { members, quorum, expected_revision }) => {
                assert_eq!(*expected_revision, Some(key_now.revision), "{case}");
                assert!(
                    promise_kept(members, quorum.unwrap_or(0), &pg_names),
                    "{case}: key {members:?}/{quorum:?} broken by {pg_names:?}"
                );
                v.revision += 1;
                v.sync = Some(SyncKey {
                    leader: Some("pg1".into()),
                    members: members.clone(),
                    quorum: *quorum,
                    revision: v.revision,
                });
            }
            Some(other) => panic!("{case}: unexpected {other:?}"),
        }
    }
    panic!("{case}: no convergence in 8 steps");
}

#[test]
fn quorum_steps_never_write_a_key_broken_by_current_names() {
    let sets: [&[&str]; 5] =
        [&["pg2"], &["pg2", "pg3"], &["pg3", "pg4"], &["pg2", "pg3", "pg4"], &["pg2", "pg3", "pg4", "pg5"]];
    for node_count in 1..=3u32 {
        for from in sets {
            let from_num = node_count.min(from.len() as u32);
            for to in sets {
                drive_quorum(node_count, (from, from_num), quorum_names(from, from_num), to);
            }
        }
        // From a fresh key naming nobody.
        for to in sets {
            drive_quorum(node_count, (&[], 0), SyncNames::default(), to);
        }
    }
}

#[test]
fn quorum_change_of_synchronous_node_count_keeps_the_promise() {
    // Up from one to two, and down from two to one.
    let s: &[&str] = &["pg2", "pg3", "pg4"];
    drive_quorum(2, (s, 1), quorum_names(s, 1), s);
    drive_quorum(1, (s, 2), quorum_names(s, 2), s);
}

/// Found in the end-to-end tests: a base backup's WAL stream shows in
/// pg_stat_replication while the member still clones; it must not be
/// chosen as the synchronous standby.
#[test]
fn member_still_creating_its_replica_is_not_chosen_as_sync_standby() {
    let mut v = with_sync(with_config(cluster(), |c| c.synchronous_mode = SyncMode::On), "pg1", &[]);
    v.members.get_mut("pg2").unwrap().state = MemberState::CreatingReplica;
    let mut n = leader("pg1", 25_000);
    let d = n.step(&Obs::new(1_000, v, leader_pg(both_async(), SyncNames::default())).0);
    assert_eq!(acts(&d), vec![renew(1000), Action::SetSyncStandbyNames(names(&["pg3"], 1))]);
}

// Defect 3 of issue 12: a standby enters the key only once it caught up
// with the primary's position at the time it was listed (rule 3).

/// pg1 at `lsn` with pg2 reported `sync` at `flush_lsn`, Postgres waiting
/// for pg2.
fn listed_pg2(lsn: u64, flush_lsn: u64) -> PgFacts {
    let mut p = leader_pg(vec![standby("pg2", flush_lsn, StandbySyncState::Sync)], names(&["pg2"], 1));
    p.write_lsn = lsn;
    p
}

#[test]
fn standby_reported_sync_but_behind_the_listing_point_is_not_named_in_the_key() {
    let v = with_sync(sync_on(cluster()), "pg1", &[]);
    let mut n = leader("pg1", DEADLINE_MS);
    // First seen with pg2 listed at 5000: pg2 must flush 5000 first.
    let d = step(&mut n, 1000, &v, listed_pg2(5000, 1200));
    assert_eq!(acts(&d), vec![Action::RenewLease { optime_lsn: 5000 }]);
    let d = step(&mut n, 2000, &v, listed_pg2(6000, 4999));
    assert_eq!(acts(&d), vec![Action::RenewLease { optime_lsn: 6000 }]);
    // Caught up with the listing point, though not with the primary now.
    let d = step(&mut n, 3000, &v, listed_pg2(7000, 5000));
    assert_eq!(acts(&d), vec![Action::RenewLease { optime_lsn: 7000 }, write_key(&["pg2"], None)]);
}

#[test]
fn a_change_of_the_listed_names_moves_the_catch_up_point() {
    let v = with_sync(sync_on(cluster()), "pg1", &[]);
    let mut n = leader("pg1", DEADLINE_MS);
    let mut p = listed_pg2(5000, 1000);
    p.sync_standby_names = names(&["pg3"], 1);
    step(&mut n, 1000, &v, p);
    assert_eq!(n.state().sync_names_since_lsn, 5000);
    step(&mut n, 2000, &v, listed_pg2(8000, 1000));
    assert_eq!(n.state().sync_names_since_lsn, 8000);
}

// Defect 4 of issue 12: `nofailover` standbys are chosen last.

#[test]
fn nofailover_standby_is_not_the_only_sync_standby_while_a_failover_capable_one_streams() {
    let mut v = with_sync(sync_on(cluster()), "pg1", &[]);
    v.members.get_mut("pg2").unwrap().tags.nofailover = true;
    // pg2 is further ahead, but could never take over.
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Async), standby("pg3", 900, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg3"], 1))]);
}

#[test]
fn nofailover_sync_standby_is_replaced_when_a_failover_capable_one_streams() {
    let mut v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    v.members.get_mut("pg2").unwrap().tags.nofailover = true;
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
}

#[test]
fn nofailover_standby_serves_as_sync_standby_when_it_is_the_only_one() {
    let mut v = with_sync(sync_on(cluster()), "pg1", &[]);
    v.members.get_mut("pg2").unwrap().tags.nofailover = true;
    let standbys = vec![standby("pg2", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000), set_names(names(&["pg2"], 1))]);
}

// Defect 9 of issue 12: after a promotion the key names nobody; the leader
// looks again as soon as a standby could be named, not a loop later.

#[test]
fn leader_whose_sync_key_names_nobody_looks_again_within_a_quarter_second_while_a_replica_runs() {
    let v = with_sync(strict(cluster()), "pg1", &[]);
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(Vec::new(), names(&["pg2", "pg3"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.wake_after_ms, 250);
}

#[test]
fn leader_whose_sync_key_is_full_sleeps_a_loop() {
    let v = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let standbys =
        vec![standby("pg2", 1000, StandbySyncState::Sync), standby("pg3", 1000, StandbySyncState::Async)];
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(standbys, names(&["pg2"], 1)));
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.wake_after_ms, LOOP_MS);
}

#[test]
fn leader_whose_sync_key_names_nobody_sleeps_a_loop_when_no_replica_could_serve() {
    let mut v = with_sync(sync_on(cluster()), "pg1", &[]);
    v.members.get_mut("pg2").unwrap().tags.nosync = true;
    v.members.get_mut("pg3").unwrap().state = MemberState::Stopped;
    let d = step(&mut leader("pg1", DEADLINE_MS), 1000, &v, leader_pg(Vec::new(), SyncNames::default()));
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.wake_after_ms, LOOP_MS);
}

/// Patroni sorts by `sync_state` before the position: no churn.
#[test]
fn standby_postgres_already_waits_for_is_not_swapped_for_one_slightly_ahead() {
    let v = with_sync(sync_on(cluster()), "pg1", &[]);
    let standbys = |pg2_lsn, pg3_lsn| {
        vec![
            standby("pg2", pg2_lsn, StandbySyncState::Sync),
            standby("pg3", pg3_lsn, StandbySyncState::Potential),
        ]
    };
    let mut n = leader("pg1", DEADLINE_MS);
    // pg2 listed when the primary was at 1000 and has flushed that far.
    let d = step(&mut n, 1000, &v, leader_pg(standbys(1000, 1000), names(&["pg2"], 1)));
    assert_eq!(acts(&d)[1..], [write_key(&["pg2"], None)]);
    // Before the key shows pg2, pg3 gets a little ahead: pg2 stays.
    let mut p = leader_pg(standbys(1000, 1100), names(&["pg2"], 1));
    p.write_lsn = 1100;
    let d = step(&mut leader("pg1", DEADLINE_MS), 2000, &v, p);
    assert!(!acts(&d).iter().any(|a| matches!(a, Action::SetSyncStandbyNames(_))), "{:?}", acts(&d));
}
