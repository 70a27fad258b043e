//! Behaviour 2: the leader lease. Acquired when there is no leader and this
//! node is the healthiest, renewed every loop while healthy, released on a
//! graceful shutdown and on a switchover.

use crate::harness::*;
use keel_core::*;

/// pg1 is gone; pg2 and pg3 replicate at 1000.
fn leaderless() -> ClusterView {
    no_leader(cluster())
}

#[test]
fn healthiest_replica_takes_lease_when_there_is_no_leader() {
    let d = replica("pg2").step(&Obs::new(1_000, leaderless(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    assert_eq!(d.reason, Reason::TakingLease);
    assert_eq!(d.wake_after_ms, 0);
}

#[test]
fn replica_behind_another_member_does_not_take_lease() {
    let mut v = leaderless();
    v.members.get_mut("pg3").unwrap().lsn = 900;
    let d = replica("pg3").step(&Obs::new(1_000, v, replica_pg(900)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::NotHealthiest { why: Unfit::BehindMember { member: "pg2".into() } });
    assert_eq!(d.wake_after_ms, LOOP_MS);
}

#[test]
fn acquired_lease_promotes_in_the_next_step() {
    let mut n = replica("pg2");
    n.step(&Obs::new(1_000, leaderless(), replica_pg(1000)).0);
    let v = with_leader(leaderless(), "pg2");
    let o = Obs::new(1_500, v, replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 1_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![Action::Promote]);
    assert_eq!(d.reason, Reason::Promoting);
    assert_eq!(n.state().role, Role::Leader);
    // The lease counts from when the acquire was sent, not when it answered.
    assert_eq!(n.state().lease_deadline_ms, Some(1_000 + VALIDITY_MS));
}

#[test]
fn lost_acquire_race_waits_without_acting() {
    let mut n = replica("pg2");
    n.step(&Obs::new(1_000, leaderless(), replica_pg(1000)).0);
    let o = Obs::new(1_500, leaderless(), replica_pg(1000)).outcome(
        Action::AcquireLease,
        ActionResult::Failed,
        1_000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::LeaseTakenElsewhere);
    assert_eq!(n.state().lease_deadline_ms, None);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn acquire_with_unknown_outcome_confirms_by_renewing_before_promoting() {
    let mut n = replica("pg2");
    n.step(&Obs::new(1_000, leaderless(), replica_pg(1000)).0);
    // The create went through, but its answer was lost.
    let v = with_leader(leaderless(), "pg2");
    let o = Obs::new(3_000, v.clone(), replica_pg(1000)).outcome(
        Action::AcquireLease,
        ActionResult::Unknown,
        1_000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::ReclaimingLease);
    assert_eq!(n.state().lease_deadline_ms, None);
    let o = Obs::new(3_200, v, replica_pg(1000)).outcome(renew(1000), ActionResult::Done, 3_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![Action::Promote]);
    assert_eq!(n.state().lease_deadline_ms, Some(3_000 + VALIDITY_MS));
}

#[test]
fn healthy_leader_renews_lease_every_loop() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(0, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::LeaderHealthy { name: "pg1".into() });
    assert_eq!(d.wake_after_ms, LOOP_MS);
    assert_eq!(reason(&d), "no action: I am pg1, the leader with the lock");

    let o = Obs::new(10_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 0);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    // The new renewal is not confirmed yet: wake by the gentle-demote point
    // of the lease known so far.
    assert_eq!(d.wake_after_ms, VALIDITY_MS - 10_000 - 10_000);

    let o = Obs::new(19_700, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 10_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(n.state().lease_deadline_ms, Some(10_000 + VALIDITY_MS));
    assert_eq!(n.state().role, Role::Leader);
    assert_eq!(d.wake_after_ms, LOOP_MS);
}

#[test]
fn renewal_carries_the_current_wal_position() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, cluster(), primary_pg(4242)).0);
    assert_eq!(acts(&d), vec![renew(4242)]);
}

#[test]
fn older_renewal_confirmation_never_shortens_the_lease() {
    let mut n = leader("pg1", 40_000);
    let o = Obs::new(12_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 5_000);
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, Some(40_000));
}

#[test]
fn agent_restart_with_own_leader_key_reclaims_lease_before_starting_primary() {
    // pg1's agent restarted: it remembers no lease, its Postgres is down and
    // the leader key still names it.
    let mut n = replica("pg1");
    let d = n.step(&Obs::new(1_000, cluster(), stopped_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::ReclaimingLease);
    let o = Obs::new(1_200, cluster(), stopped_pg(1000)).outcome(renew(1000), ActionResult::Done, 1_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000), Action::StartPostgres { role: StartAs::Primary }]);
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn graceful_shutdown_stops_postgres_then_releases_the_lease() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), primary_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Offline), release(1000)]);
    // Held until the outcomes confirm the stop and the release.
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    // The lock is released once, not again on the next steps.
    let v = no_leader(cluster());
    let o = Obs::new(6_000, v, stopped_pg(1000))
        .outcome(demote(DemoteMode::Offline), ActionResult::Done, 5_000)
        .outcome(release(1000), ActionResult::Done, 5_500);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::ShutDown);
}

#[test]
fn switchover_demotes_then_releases_the_lease() {
    let mut n = leader("pg1", VALIDITY_MS);
    let v = with_failover(cluster(), Some("pg1"), Some("pg2"));
    let d = n.step(&Obs::new(5_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Graceful), release(1000)]);
    assert_eq!(d.reason, Reason::Switchover { candidate: Some("pg2".into()) });
    assert_eq!(d.wake_after_ms, 0);
    // The lease goes with the outcomes, not with the plan: a demote that
    // failed leaves the leader able to try again.
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    let v = with_failover(no_leader(cluster()), Some("pg1"), Some("pg2"));
    let o = Obs::new(5_010, v, replica_pg(1000))
        .outcome(demote(DemoteMode::Graceful), ActionResult::Done, 5_000)
        .outcome(release(1000), ActionResult::Done, 5_000);
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, None);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn after_switchover_former_leader_follows_without_touching_the_lock() {
    let mut n = leader("pg1", VALIDITY_MS);
    let v = with_failover(cluster(), Some("pg1"), Some("pg2"));
    n.step(&Obs::new(5_000, v, primary_pg(1000)).0);
    let v = with_leader(cluster(), "pg2");
    let o = Obs::new(6_000, v, replica_pg(1000))
        .outcome(demote(DemoteMode::Graceful), ActionResult::Done, 5_000)
        .outcome(release(1000), ActionResult::Done, 5_800);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![Action::Follow { upstream: Some("pg2".into()) }]);
    assert_eq!(n.state().lease_deadline_ms, None);
    assert_eq!(n.state().role, Role::Replica);
}
