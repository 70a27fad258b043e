//! Behaviour 8: pause (maintenance) mode. No automatic action except keeping
//! the lock and publishing state. Unlike Patroni, fencing still applies: a
//! stale `pause` flag must not keep a primary writable past its lease.

use crate::harness::*;
use keel_core::*;

fn paused(v: ClusterView) -> ClusterView {
    with_config(v, |c| c.pause = true)
}

/// `n` as if the last config it read from the DCS said `pause`.
fn remembers_pause(n: Node) -> Node {
    let mut s = n.state().clone();
    s.config.pause = true;
    Node::from_state(s)
}

#[test]
fn paused_leader_renews_lease_and_does_nothing_else() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(5_000, paused(cluster()), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::Paused { leader: true });
    assert_eq!(reason(&d), "paused: no automatic action; I keep the leader lock");
    assert_eq!(d.wake_after_ms, LOOP_MS);
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn paused_leader_skips_housekeeping() {
    // Unpaused, the missing config key would be seeded.
    let mut v = paused(cluster());
    v.config = None;
    let mut n = remembers_pause(leader("pg1", VALIDITY_MS));
    let d = n.step(&Obs::new(5_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::Paused { leader: true });
}

#[test]
fn paused_leader_renewal_extends_lease_from_send_time() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(12_000, paused(cluster()), primary_pg(1000)).outcome(
        renew(1000),
        ActionResult::Done,
        10_000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(n.state().lease_deadline_ms, Some(10_000 + VALIDITY_MS));
}

#[test]
fn paused_leader_wakes_no_later_than_its_gentle_demote_point() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(15_000, paused(cluster()), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.wake_after_ms, VALIDITY_MS - 10_000 - 15_000);
}

#[test]
fn paused_replica_takes_no_action() {
    let mut n = replica("pg2");
    let d = n.step(&Obs::new(5_000, paused(cluster()), replica_pg(1000)).0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::Paused { leader: false });
    assert_eq!(reason(&d), "paused: no automatic action");
}

#[test]
fn paused_replica_does_not_race_when_there_is_no_leader() {
    let mut n = replica("pg2");
    let d = n.step(&Obs::new(5_000, paused(no_leader(cluster())), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::Paused { leader: false });
    assert_eq!(n.state().lease_deadline_ms, None);
}

#[test]
fn paused_stopped_replica_is_not_started() {
    let d = replica("pg2").step(&Obs::new(5_000, paused(cluster()), stopped_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::Paused { leader: false });
}

/// Patroni's `follow` repoints a running replica while paused.
#[test]
fn paused_replica_following_another_upstream_is_repointed_to_the_leader() {
    let mut p = replica_pg(1000);
    p.upstream = Some("pg3".into());
    let d = replica("pg2").step(&Obs::new(5_000, paused(cluster()), p).0);
    assert_eq!(acts(&d), vec![Action::Follow { upstream: Some("pg1".into()) }]);
}

#[test]
fn paused_replica_whose_history_diverged_is_not_stopped_for_a_rewind() {
    let mut v = paused(cluster());
    v.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg1".into()) }];
    v.members.get_mut("pg1").unwrap().timeline = 2;
    let d = replica("pg2").step(&Obs::new(5_000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::Paused { leader: false });
}

/// Patroni: "removed leader lock because postgres is not running".
#[test]
fn paused_lock_holder_whose_postgres_is_stopped_releases_the_lock() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, paused(cluster()), stopped_pg(1000)).0);
    assert_eq!(acts(&d), vec![release(1000)]);
}

/// Patroni: "running with empty data directory".
#[test]
fn paused_member_with_an_empty_data_directory_does_not_clone() {
    let d = fresh("pg4").step(&Obs::new(5_000, paused(cluster()), PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![]);
}

#[test]
fn paused_leader_with_postgres_down_does_not_start_it() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, paused(cluster()), stopped_pg(1000)).0);
    assert!(!d.actions.iter().any(|a| matches!(a, Action::StartPostgres { .. } | Action::Promote)));
}

#[test]
fn paused_member_still_publishes_its_state() {
    let mut v = paused(cluster());
    v.members.get_mut("pg2").unwrap().lsn = 900;
    let d = replica("pg2").step(&Obs::new(5_000, v, replica_pg(1000)).0);
    assert_eq!(
        d.actions,
        vec![Action::PublishMember(MemberStatus {
            role: MemberRole::Replica,
            state: MemberState::Running,
            timeline: 1,
            lsn: 1000,
            tags: Tags::new(),
        })]
    );
    assert_eq!(d.reason, Reason::Paused { leader: false });
}

#[test]
/// Patroni: "Switchover is possible only to a specific candidate in a
/// paused state", and the key is cleaned up rather than left to fire on
/// resume, when nobody expects it any more.
fn paused_leader_clears_a_failover_key_without_candidate() {
    let v = paused(with_failover(cluster(), Some("pg1"), None));
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000), Action::ClearFailoverRequest { revision: 97 }]);
    assert_eq!(d.reason, Reason::SwitchoverRefused { why: SwitchoverRefusal::PausedWithoutCandidate });
    assert_eq!(reason(&d), "switchover refused: a switchover in maintenance mode needs a candidate");
}

#[test]
fn paused_primary_past_lease_deadline_still_demotes_immediately() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(30_000, paused(cluster()), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 300 });
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn paused_primary_whose_lock_was_taken_demotes_immediately() {
    let v = paused(with_leader(cluster(), "pg2"));
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LockLost { holder: Some("pg2".into()) });
}

#[test]
fn paused_primary_with_failed_renewal_demotes_immediately() {
    let o = Obs::new(12_000, paused(cluster()), primary_pg(1000)).outcome(
        renew(1000),
        ActionResult::Failed,
        10_000,
    );
    let d = leader("pg1", VALIDITY_MS).step(&o.0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert!(matches!(d.reason, Reason::LockLost { .. }));
}

#[test]
fn paused_leader_demotes_gently_when_renewals_go_unconfirmed() {
    let o = Obs::new(VALIDITY_MS - 10_000, paused(cluster()), primary_pg(1000)).outcome(
        renew(1000),
        ActionResult::Unknown,
        9_000,
    );
    let d = leader("pg1", VALIDITY_MS).step(&o.0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Graceful), release(1000)]);
    assert_eq!(d.reason, Reason::LeaseRunningOut { remaining_ms: 10_000 });
}

#[test]
fn paused_leader_without_dcs_serves_until_its_lease_runs_short() {
    let mut n = leader("pg1", VALIDITY_MS);
    n.step(&Obs::new(1_000, paused(cluster()), primary_pg(1000)).0);
    assert!(n.state().config.pause);
    let mut m = n.clone();
    let d = m.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![]);
    assert!(matches!(d.reason, Reason::DcsUnreachableLeader { .. }));
    let d = n.step(&Obs::unreachable(VALIDITY_MS, 11_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 0 });
}

#[test]
fn paused_replica_still_shuts_down_on_request() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, paused(cluster()), replica_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![Action::StopPostgres { mode: StopMode::Fast }]);
    assert_eq!(n.state().role, Role::Stopped);
}

#[test]
fn paused_leader_still_shuts_down_and_releases_on_request() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, paused(cluster()), primary_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Offline), release(1000)]);
}

#[test]
fn resume_lets_a_replica_race_again() {
    let mut n = replica("pg2");
    let d = n.step(&Obs::new(5_000, paused(no_leader(cluster())), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    let d = n.step(&Obs::new(6_000, no_leader(cluster()), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn paused_replica_restarts_postgres_on_request() {
    let o = Obs::new(5_000, paused(cluster()), replica_pg(1000)).request(Request::Restart);
    let d = replica("pg2").step(&o.0);
    assert_eq!(acts(&d), vec![Action::RestartPostgres]);
    assert_eq!(d.reason, Reason::Restarting);
}

#[test]
fn paused_replica_reinitializes_on_request() {
    let o = Obs::new(5_000, paused(cluster()), replica_pg(1000)).request(Request::Reinitialize);
    let d = replica("pg2").step(&o.0);
    assert_eq!(
        acts(&d),
        vec![Action::StopPostgres { mode: StopMode::Fast }, Action::Reinitialize { source: "pg1".into() }]
    );
}

#[test]
fn paused_leader_demoted_by_hand_releases_the_lock() {
    // Patroni (pause docs): "If the node with the leader lock stops being the
    // primary (i.e. is demoted manually), Patroni will release the lock
    // instead of promoting the node back."
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(5_000, paused(cluster()), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![release(1000)]);
    assert_eq!(d.reason, Reason::Paused { leader: true });
}

#[test]
fn paused_leader_switches_over_to_a_named_candidate() {
    let v = paused(with_failover(cluster(), Some("pg1"), Some("pg2")));
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Graceful), release(1000)]);
    assert_eq!(d.reason, Reason::Switchover { candidate: Some("pg2".into()) });
}

/// Defect 2 of issue 12: the candidate of a switchover made while paused
/// took the lock, then released it because the cluster was paused and its
/// Postgres a replica, forever. Pause stops automatic actions, not the ones
/// an operator asks for: Patroni promotes it.
#[test]
fn paused_switchover_candidate_holding_the_lock_promotes() {
    let mut v = paused(with_failover(no_leader(cluster()), None, Some("pg2")));
    v = with_leader(v, "pg2");
    let d = leader("pg2", VALIDITY_MS).step(&Obs::new(5_000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::Promote, Action::ClearFailoverRequest { revision: 97 }]);
    assert_eq!(d.reason, Reason::Promoting);
}

#[test]
fn paused_switchover_runs_from_request_to_promotion() {
    let v = paused(with_failover(cluster(), Some("pg1"), Some("pg2")));
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, v.clone(), primary_pg(1000)).0);
    assert_eq!(acts(&d)[0], Action::Demote { mode: DemoteMode::Graceful });
    let mut pg2 = replica("pg2");
    let released = no_leader(v);
    let d = pg2.step(&Obs::new(6_000, released.clone(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    let o = Obs::new(6_010, with_leader(released, "pg2"), replica_pg(1000)).outcome(
        Action::AcquireLease,
        ActionResult::Done,
        6_000,
    );
    let d = pg2.step(&o.0);
    assert!(acts(&d).contains(&Action::Promote), "{:?}", acts(&d));
}

/// Patroni's `enforce_primary_role` runs `process_sync_replication` while
/// paused: a lost sync standby is replaced during maintenance too.
#[test]
fn paused_leader_still_replaces_a_sync_standby_that_went_silent() {
    let mut v = with_sync(paused(cluster()), "pg1", &["pg2"]);
    v = with_config(v, |c| c.synchronous_mode = SyncMode::On);
    let mut p = primary_pg(1000);
    let mut silent = standby("pg2", 1000, StandbySyncState::Sync);
    silent.reply_age_ms = TTL_MS;
    p.replication = vec![silent, standby("pg3", 1000, StandbySyncState::Potential)];
    p.sync_standby_names = names(&["pg2"], 1);
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, v, p).0);
    let removed = Action::WriteSyncKey { members: set(&[]), quorum: None, expected_revision: Some(95) };
    assert_eq!(acts(&d), vec![renew(1000), removed]);
}
