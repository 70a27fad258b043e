//! Behaviours 5 and 12: the leader race. With no leader, a replica takes the
//! lease only if it is the healthiest member it can see (safety rule 2), and
//! promotes once the lease is its own.

use crate::harness::*;
use keel_core::*;

/// The leader key and pg1 are gone; pg2 and pg3 replicate at 1000, and the
/// last `status` optime is 1000.
fn leaderless() -> ClusterView {
    no_leader(cluster())
}

fn edit(mut v: ClusterView, name: &str, f: impl FnOnce(&mut Member)) -> ClusterView {
    f(v.members.get_mut(name).unwrap());
    v
}

fn at(v: ClusterView, name: &str, lsn: u64) -> ClusterView {
    edit(v, name, |m| m.lsn = lsn)
}

fn alone(mut v: ClusterView, name: &str) -> ClusterView {
    v.members.retain(|m, _| m == name);
    v
}

fn sync_mode(v: ClusterView, mode: SyncMode) -> ClusterView {
    with_config(v, |c| c.synchronous_mode = mode)
}

fn quorum(mut v: ClusterView, leader: &str, members: &[&str], q: u32) -> ClusterView {
    v = sync_mode(with_sync(v, leader, members), SyncMode::Quorum);
    v.sync.as_mut().unwrap().quorum = Some(q);
    v
}

fn switch(timeline: u32, fork_lsn: u64, new_leader: Option<&str>) -> TimelineSwitch {
    TimelineSwitch { timeline, fork_lsn, new_leader: new_leader.map(Into::into) }
}

/// A replica on timeline 2 whose local history forked from timeline 1 at
/// `fork_lsn`.
fn replica_on_tl2(lsn: u64, fork_lsn: u64) -> PgFacts {
    let mut p = replica_pg(lsn);
    p.timeline = 2;
    p.history = vec![switch(1, fork_lsn, None)];
    p
}

/// `name` (a replica that knew pg1 as leader at 1000) steps once at 1000 ms.
fn race(name: &str, v: ClusterView, pg: PgFacts) -> Decision {
    replica(name).step(&Obs::new(1000, v, pg).0)
}

fn unfit(why: Unfit) -> Reason {
    Reason::NotHealthiest { why }
}

fn behind(member: &str) -> Reason {
    unfit(Unfit::BehindMember { member: member.into() })
}

#[test]
fn healthiest_replica_takes_lease_when_leader_is_gone() {
    let d = race("pg2", leaderless(), replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    assert_eq!(d.reason, Reason::TakingLease);
    assert_eq!(reason(&d), "no leader: I am the healthiest member, taking the leader lock");
    assert_eq!(d.wake_after_ms, 0);
}

#[test]
fn equal_wal_and_priority_alphabetically_first_wins_race() {
    let d = race("pg3", leaderless(), replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, behind("pg2"));
    assert_eq!(reason(&d), "no leader, but I do not race: pg2 is ahead");
}

#[test]
fn replica_behind_another_by_wal_does_not_take_lease() {
    let v = at(leaderless(), "pg3", 1500);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, behind("pg3"));
}

#[test]
fn furthest_replica_takes_lease_despite_later_name() {
    let v = at(leaderless(), "pg3", 1500);
    let d = race("pg3", v, replica_pg(1500));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    assert_eq!(d.reason, Reason::TakingLease);
}

#[test]
fn equal_wal_higher_failover_priority_wins_race() {
    let v = edit(leaderless(), "pg3", |m| m.tags.failover_priority = 2);
    let winner =
        replica("pg3").step(&Obs::new(1000, v.clone(), replica_pg(1000)).tags(|t| t.failover_priority = 2).0);
    assert_eq!(acts(&winner), vec![Action::AcquireLease]);
    assert_eq!(winner.reason, Reason::TakingLease);
    let loser = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&loser), vec![]);
    assert_eq!(loser.reason, behind("pg3"));
}

#[test]
fn further_wal_wins_over_higher_failover_priority() {
    let v = at(edit(leaderless(), "pg2", |m| m.tags.failover_priority = 5), "pg3", 1100);
    let d = replica("pg2").step(&Obs::new(1000, v, replica_pg(1000)).tags(|t| t.failover_priority = 5).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, behind("pg3"));
}

#[test]
fn replica_behind_max_lag_does_not_take_lease() {
    let mut v = leaderless();
    v.optime_lsn = Some(1000 + 2_000_000);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::Lagging { lag_bytes: 2_000_000, max_bytes: 1_048_576 }));
    assert_eq!(
        reason(&d),
        "no leader, but I do not race: 2000000 bytes behind the leader's last position (maximum_lag_on_failover is 1048576)"
    );
}

#[test]
fn replica_exactly_at_max_lag_takes_lease() {
    let mut v = leaderless();
    v.optime_lsn = Some(1000 + 1_048_576);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn lag_is_measured_from_remembered_leader_position_when_status_is_missing() {
    let mut n = replica("pg2");
    let mut v = at(cluster(), "pg1", 5_000_000);
    v.optime_lsn = None;
    let d = n.step(&Obs::new(1000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(n.state().last_leader_lsn, 5_000_000);
    let mut v = leaderless();
    v.optime_lsn = None;
    let d = n.step(&Obs::new(11_000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::Lagging { lag_bytes: 4_999_000, max_bytes: 1_048_576 }));
}

#[test]
fn lagging_replica_does_not_take_lease_even_as_only_member() {
    let mut v = alone(leaderless(), "pg2");
    v.optime_lsn = Some(3_000_000);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert!(matches!(d.reason, Reason::NotHealthiest { why: Unfit::Lagging { .. } }));
}

#[test]
fn nofailover_replica_does_not_take_lease_even_as_only_member() {
    let v = alone(leaderless(), "pg2");
    let d = replica("pg2").step(&Obs::new(1000, v, replica_pg(1000)).tags(|t| t.nofailover = true).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::NoFailoverTag));
    assert_eq!(reason(&d), "no leader, but I do not race: tagged nofailover");
}

#[test]
fn zero_failover_priority_acts_as_nofailover() {
    let d = replica("pg2")
        .step(&Obs::new(1000, leaderless(), replica_pg(1000)).tags(|t| t.failover_priority = 0).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::NoFailoverTag));
}

#[test]
fn nofailover_member_ahead_is_not_a_rival() {
    let v = edit(at(leaderless(), "pg2", 1500), "pg2", |m| m.tags.nofailover = true);
    let d = race("pg3", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn all_others_nofailover_replica_takes_lease() {
    let mut v = at(leaderless(), "pg3", 1500);
    v.members.insert("pg4".into(), member(MemberRole::Replica, 1500));
    let v = edit(v, "pg3", |m| m.tags.nofailover = true);
    let v = edit(v, "pg4", |m| m.tags.failover_priority = 0);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    assert_eq!(d.reason, Reason::TakingLease);
}

#[test]
fn stopped_member_ahead_is_not_a_rival() {
    let v = edit(at(leaderless(), "pg2", 1500), "pg2", |m| m.state = MemberState::Stopped);
    let d = race("pg3", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn only_member_left_takes_lease() {
    let d = race("pg2", alone(leaderless(), "pg2"), replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    assert_eq!(d.reason, Reason::TakingLease);
}

#[test]
fn member_on_newer_timeline_wins_race_despite_less_wal() {
    let v = edit(at(leaderless(), "pg3", 900), "pg3", |m| m.timeline = 2);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, behind("pg3"));
}

#[test]
fn member_on_older_timeline_is_not_a_rival() {
    let mut v = leaderless();
    v.history = vec![switch(1, 900, Some("pg2"))];
    let v = at(v, "pg3", 1200);
    let d = race("pg2", v, replica_on_tl2(1000, 900));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn diverged_replica_does_not_race_even_as_only_member() {
    let mut v = alone(leaderless(), "pg2");
    v.history = vec![switch(1, 800, Some("pg3"))];
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::Diverged { fork_lsn: 800 }));
    assert_eq!(
        reason(&d),
        "no leader, but I do not race: on a history that diverged from the cluster's at 0/320"
    );
}

#[test]
fn check_timeline_replica_behind_cluster_timeline_does_not_take_lease() {
    let mut v = with_config(alone(leaderless(), "pg2"), |c| c.check_timeline = true);
    v.history = vec![switch(1, 1500, Some("pg3"))];
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::OlderTimeline { timeline: 1, cluster_timeline: 2 }));
    assert_eq!(reason(&d), "no leader, but I do not race: on timeline 1, behind the cluster's timeline 2");
}

#[test]
fn check_timeline_replica_on_cluster_timeline_takes_lease() {
    let mut v = with_config(alone(leaderless(), "pg2"), |c| c.check_timeline = true);
    v.history = vec![switch(1, 900, Some("pg1"))];
    let v = edit(v, "pg2", |m| m.timeline = 2);
    let d = race("pg2", v, replica_on_tl2(1000, 900));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn sync_mode_standby_in_sync_key_takes_lease() {
    let v = sync_mode(with_sync(leaderless(), "pg1", &["pg2"]), SyncMode::On);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn sync_mode_async_replica_does_not_take_lease_even_when_ahead() {
    let v = at(sync_mode(with_sync(leaderless(), "pg1", &["pg2"]), SyncMode::On), "pg3", 1100);
    let d = race("pg3", v, replica_pg(1100));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::NotSyncStandby));
    assert_eq!(reason(&d), "no leader, but I do not race: not a synchronous standby");
}

#[test]
fn sync_mode_async_member_ahead_is_not_a_rival() {
    let v = at(sync_mode(with_sync(leaderless(), "pg1", &["pg3"]), SyncMode::On), "pg2", 1100);
    let d = race("pg3", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

/// No leader ever claimed the sync key, so no commit waited for a
/// standby: the usual rules pick (Patroni's `is_healthiest_node`), the
/// furthest member first.
#[test]
fn sync_mode_without_sync_key_races_by_the_usual_rules() {
    let v = sync_mode(leaderless(), SyncMode::On);
    let d = race("pg2", v.clone(), replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    let v = at(v, "pg3", 1100);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, behind("pg3"));
}

#[test]
fn quorum_mode_member_seeing_enough_of_the_key_takes_lease() {
    let v = quorum(leaderless(), "pg1", &["pg2", "pg3"], 1);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn quorum_mode_member_seeing_too_few_of_the_key_does_not_take_lease() {
    let v = quorum(alone(leaderless(), "pg2"), "pg1", &["pg2", "pg3"], 1);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::QuorumNotVisible { votes: 0, needed: 1 }));
    assert_eq!(
        reason(&d),
        "no leader, but I do not race: short of quorum votes (0 other members of the sync key not ahead of it, 1 needed)"
    );
}

#[test]
fn quorum_mode_quorum_of_whole_key_needs_only_itself() {
    let v = quorum(alone(leaderless(), "pg2"), "pg1", &["pg2", "pg3"], 2);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn quorum_mode_stopped_key_member_does_not_count_as_seen() {
    let mut v = leaderless();
    let mut stopped = member(MemberRole::Replica, 1000);
    stopped.state = MemberState::Stopped;
    v.members.insert("pg4".into(), stopped);
    let v = quorum(v, "pg1", &["pg2", "pg3", "pg4"], 1);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::QuorumNotVisible { votes: 1, needed: 2 }));
}

#[test]
fn quorum_mode_key_member_ahead_wins_race() {
    let v = at(quorum(leaderless(), "pg1", &["pg2", "pg3"], 1), "pg3", 1100);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, behind("pg3"));
}

#[test]
fn race_winner_promotes_after_acquiring_lease() {
    let mut n = replica("pg2");
    let d = n.step(&Obs::new(1000, leaderless(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    let v = with_leader(leaderless(), "pg2");
    let o = Obs::new(1100, v, replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 1000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![Action::Promote]);
    assert_eq!(d.reason, Reason::Promoting);
    assert_eq!(n.state().role, Role::Leader);
    assert_eq!(n.state().lease_deadline_ms, Some(1000 + VALIDITY_MS));
}

#[test]
fn race_winner_in_sync_mode_writes_sync_key_for_itself_before_promoting() {
    let mut n = replica("pg2");
    let v = sync_mode(with_sync(leaderless(), "pg1", &["pg2"]), SyncMode::On);
    let d = n.step(&Obs::new(1000, v.clone(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    let v = with_leader(v, "pg2");
    let o =
        Obs::new(1100, v.clone(), replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 1000);
    let d = n.step(&o.0);
    let claim = Action::WriteSyncKey { members: set(&[]), quorum: None, expected_revision: Some(95) };
    assert_eq!(acts(&d), vec![claim.clone()]);
    assert_eq!(d.reason, Reason::ClaimingSyncKey);
    assert_eq!(d.wake_after_ms, 0);
    let mut v = with_sync(v, "pg2", &[]);
    v.sync.as_mut().unwrap().revision = 101;
    v.revision = 101;
    let d = n.step(&Obs::new(1200, v, replica_pg(1000)).outcome(claim, ActionResult::Done, 1100).0);
    assert_eq!(acts(&d), vec![Action::Promote]);
    assert_eq!(d.reason, Reason::Promoting);
}

#[test]
fn lost_lease_race_waits_without_action() {
    let mut n = replica("pg2");
    n.step(&Obs::new(1000, leaderless(), replica_pg(1000)).0);
    let o = Obs::new(1100, leaderless(), replica_pg(1000)).outcome(
        Action::AcquireLease,
        ActionResult::Failed,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::LeaseTakenElsewhere);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn race_loser_follows_the_new_leader() {
    let mut n = replica("pg3");
    let d = n.step(&Obs::new(1000, leaderless(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    let d = n.step(&Obs::new(2000, with_leader(leaderless(), "pg2"), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::Follow { upstream: Some("pg2".into()) }]);
    assert_eq!(d.reason, Reason::ChangingUpstream { upstream: "pg2".into() });
}

#[test]
fn lease_acquired_too_long_ago_is_confirmed_before_promoting() {
    let mut n = replica("pg2");
    n.step(&Obs::new(0, leaderless(), replica_pg(1000)).0);
    let v = with_leader(leaderless(), "pg2");
    let o = Obs::new(40_000, v, replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 0);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::ReclaimingLease);
    assert_ne!(n.state().role, Role::Leader);
}

#[test]
fn replica_with_stopped_postgres_starts_read_only_before_racing() {
    let d = race("pg2", leaderless(), stopped_pg(1000));
    assert_eq!(acts(&d), vec![Action::StartPostgres { role: StartAs::Replica { upstream: None } }]);
    assert_eq!(d.reason, Reason::NoLeaderStartingReadOnly);
}

#[test]
fn replica_with_starting_postgres_waits_before_racing() {
    let d = race("pg2", leaderless(), pg(PgProcess::Starting, 1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::WaitingForPostgres);
}

#[test]
fn former_leader_named_in_sync_key_races_in_sync_mode() {
    // pg1 lost its lease while no standby was synchronous (the key names
    // nobody); its Postgres was demoted. It alone has every acknowledged
    // commit, and nobody else may race: without it the cluster stays
    // leaderless forever.
    let mut v = sync_mode(with_sync(leaderless(), "pg1", &[]), SyncMode::On);
    v.members.insert("pg1".into(), member(MemberRole::Replica, 1000));
    let d = race("pg1", v.clone(), replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    assert_eq!(d.reason, Reason::TakingLease);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::NotSyncStandby));
}

// Differences with Patroni settled by aligning: the former leader in the
// race (`_is_healthiest_node`).

/// pg1, the leader before, still published as a running replica (its key
/// outlives it by up to a TTL).
fn former_leader_lingering(v: ClusterView, lsn: u64, priority: i64) -> ClusterView {
    let mut v = v;
    let mut m = member(MemberRole::Replica, lsn);
    m.tags.failover_priority = priority;
    v.members.insert("pg1".into(), m);
    v
}

#[test]
fn former_leader_with_higher_priority_at_an_equal_position_does_not_hold_the_race_up() {
    let v = former_leader_lingering(leaderless(), 1000, 5);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn former_leader_ahead_in_asynchronous_mode_is_deferred_to() {
    let v = former_leader_lingering(leaderless(), 1100, 1);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(d.reason, behind("pg1"));
}

#[test]
fn former_leader_ahead_in_synchronous_mode_does_not_hold_the_sync_standby_up() {
    let v = former_leader_lingering(leaderless(), 1100, 1);
    let v = sync_mode(with_sync(v, "pg1", &["pg2"]), SyncMode::On);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn other_member_with_higher_priority_at_an_equal_position_wins_the_race() {
    let v = edit(leaderless(), "pg3", |m| m.tags.failover_priority = 5);
    let d = race("pg2", v, replica_pg(1000));
    assert_eq!(d.reason, behind("pg3"));
}

/// pg3 knew pg1 as leader at 2 001 000; pg2, 2 MB behind, then took over by
/// a manual failover and vanished before its first renewal rewrote
/// `status`, which still holds pg1's position on the branch pg2's
/// promotion cut off.
fn after_a_failover_to_a_lagging_member() -> (Node, ClusterView) {
    let mut n = replica("pg3");
    let mut v = with_leader(at(cluster(), "pg1", 2_001_000), "pg1");
    v.optime_lsn = Some(2_001_000);
    n.step(&Obs::new(1000, v.clone(), replica_pg(1000)).0);
    v = with_leader(at(v, "pg2", 1000), "pg2");
    v.members.remove("pg1");
    v.revision += 1;
    n.step(&Obs::new(2000, v.clone(), replica_pg(1000)).0);
    v.leader = None;
    v.members.remove("pg2");
    v.revision += 1;
    (n, v)
}

#[test]
fn status_from_before_a_failover_to_a_lagging_member_does_not_hold_up_the_next_race() {
    let (mut n, v) = after_a_failover_to_a_lagging_member();
    let d = n.step(&Obs::new(3000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease], "{}", reason(&d));
}

#[test]
fn status_rewritten_by_the_new_leader_is_the_lag_reference() {
    let (mut n, mut v) = after_a_failover_to_a_lagging_member();
    v.optime_lsn = Some(1000 + 3_000_000);
    let d = n.step(&Obs::new(3000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, unfit(Unfit::Lagging { lag_bytes: 3_000_000, max_bytes: 1_048_576 }));
}

#[test]
fn lock_taken_by_an_acquire_sent_after_a_freeze_over_a_newer_timeline_is_released_not_promoted() {
    let mut n = replica("pg2");
    let d = n.step(&Obs::new(1_000, leaderless(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    // The agent froze before sending the acquire. Meanwhile pg3 led on
    // timeline 2 from 900 and died; the acquire, sent at last, found the
    // key free. pg2 wrote up to 1000 on timeline 1: promoting it would
    // fork the history and drop pg3's writes (rule 6).
    let mut v = with_leader(leaderless(), "pg2");
    v.history = vec![switch(1, 900, Some("pg3"))];
    v.members.remove("pg3");
    let o = Obs::new(60_000, v, replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 59_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![release(1000)]);
    assert_eq!(d.reason, Reason::HolderUnfit { why: Unfit::Diverged { fork_lsn: 900 } });
    assert_eq!(
        reason(&d),
        "releasing the leader lock without promoting: I am on a history that diverged from the cluster's at 0/384"
    );
}
