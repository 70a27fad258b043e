//! Operator requests: shutdown (SIGTERM), restart and reinitialize.

use crate::harness::*;
use keel_core::*;

fn starting_pg(lsn: u64) -> PgFacts {
    pg(PgProcess::Starting, lsn)
}

fn stop_fast() -> Action {
    Action::StopPostgres { mode: StopMode::Fast }
}

/// Feeds every action of `d` back as done, sent at `sent_at_ms`.
fn all_done(mut o: Obs, d: &Decision, sent_at_ms: u64) -> Obs {
    for a in &d.actions {
        o = o.outcome(a.clone(), ActionResult::Done, sent_at_ms);
    }
    o
}

#[test]
fn leader_shutdown_demotes_offline_then_releases_lease() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), primary_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Offline), release(1000)]);
    assert_eq!(d.reason, Reason::ShuttingDown { leader: true });
    assert_eq!(reason(&d), "shutting down: stopping Postgres, then releasing the leader lock");
    assert_eq!(d.wake_after_ms, 0);
    assert_eq!(n.state().role, Role::Stopped);
    // Held until the outcomes confirm the stop and the release.
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    let o = Obs::new(5_010, no_leader(cluster()), stopped_pg(1000))
        .outcome(demote(DemoteMode::Offline), ActionResult::Done, 5_000)
        .outcome(release(1000), ActionResult::Done, 5_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(n.state().lease_deadline_ms, None);
}

#[test]
fn leader_shutdown_whose_stop_failed_tries_again_before_releasing() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), primary_pg(1000)).request(Request::Shutdown);
    n.step(&o.0);
    let o = Obs::new(5_010, cluster(), primary_pg(1000))
        .outcome(demote(DemoteMode::Offline), ActionResult::Failed, 5_000)
        .outcome(release(1000), ActionResult::Skipped, 5_000);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Offline), release(1000)]);
    assert_eq!(d.reason, Reason::ShuttingDown { leader: true });
}

#[test]
fn replica_shutdown_stops_postgres_fast() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, cluster(), replica_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![stop_fast()]);
    assert_eq!(d.reason, Reason::ShuttingDown { leader: false });
    assert_eq!(reason(&d), "shutting down: stopping Postgres");
    assert_eq!(n.state().role, Role::Stopped);
}

#[test]
fn after_shutdown_node_does_nothing_more() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, cluster(), replica_pg(1000)).request(Request::Shutdown);
    n.step(&o.0);
    // Even with no leader, pg2 being the healthiest: no race, no publish.
    let o = Obs::new(6_000, no_leader(cluster()), stopped_pg(1000)).outcome(
        stop_fast(),
        ActionResult::Done,
        5_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::ShutDown);
    assert_eq!(reason(&d), "no action: shut down");
    assert_eq!(d.wake_after_ms, LOOP_MS);
    for r in [Request::Restart, Request::Reinitialize] {
        let o = Obs::new(7_000, cluster(), stopped_pg(1000)).request(r);
        let d = n.step(&o.0);
        assert_eq!(d.actions, vec![]);
        assert_eq!(d.reason, Reason::ShutDown);
    }
    assert_eq!(n.state().role, Role::Stopped);
}

#[test]
fn shut_down_leader_releases_the_lock_only_once() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), primary_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    let o = all_done(Obs::new(6_000, no_leader(cluster()), stopped_pg(1000)), &d, 5_000);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::ShutDown);
}

#[test]
fn leader_shutdown_while_dcs_unreachable_stops_postgres_and_leaves_the_key_to_expire() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::unreachable(5_000, 4_000, primary_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Offline)]);
    assert_eq!(d.reason, Reason::ShuttingDownWithoutEtcd);
    assert_eq!(
        reason(&d),
        "shutting down: stopping Postgres; etcd is unreachable, so the leader lock will expire on its own"
    );
    assert_eq!(n.state().role, Role::Stopped);
}

#[test]
fn replica_shutdown_while_dcs_unreachable_stops_postgres() {
    let mut n = replica("pg2");
    let o = Obs::unreachable(5_000, 4_000, replica_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![stop_fast()]);
    assert_eq!(d.reason, Reason::ShuttingDown { leader: false });
    assert_eq!(n.state().role, Role::Stopped);
}

#[test]
fn shutdown_of_leader_whose_postgres_is_already_down_releases_the_lease() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), stopped_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![release(1000)]);
    assert_eq!(d.reason, Reason::ShuttingDown { leader: true });
    assert_eq!(n.state().role, Role::Stopped);
}

#[test]
fn shutdown_with_postgres_already_stopped_does_nothing() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, cluster(), stopped_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::ShutDown);
    assert_eq!(n.state().role, Role::Stopped);
}

#[test]
fn replica_shutdown_while_postgres_is_starting_stops_it() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, cluster(), starting_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![stop_fast()]);
    assert_eq!(d.reason, Reason::ShuttingDown { leader: false });
}

#[test]
fn leader_shutdown_while_postgres_is_starting_stops_it_before_releasing() {
    // Postgres was restarted as primary and has not finished starting: the
    // lock may be released only once it can no longer come up writable.
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), starting_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![stop_fast(), release(1000)]);
    assert_eq!(d.reason, Reason::ShuttingDown { leader: true });
}

#[test]
fn shutdown_of_lease_holder_not_yet_promoted_stops_then_releases() {
    let mut n = leader("pg2", VALIDITY_MS);
    let v = with_leader(no_leader(cluster()), "pg2");
    let o = Obs::new(5_000, v, replica_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![stop_fast(), release(1000)]);
    assert_eq!(d.reason, Reason::ShuttingDown { leader: true });
}

#[test]
fn expired_primary_on_shutdown_demotes_immediately_then_stops() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(30_000, cluster(), primary_pg(1000)).request(Request::Shutdown);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 300 });
    assert_eq!(n.state().role, Role::Stopped);
    let o = Obs::new(31_000, cluster(), replica_pg(1000)).outcome(
        demote(DemoteMode::Immediate),
        ActionResult::Done,
        30_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![stop_fast()]);
    let o = Obs::new(32_000, cluster(), stopped_pg(1000)).outcome(stop_fast(), ActionResult::Done, 31_000);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::ShutDown);
}

#[test]
fn replica_restarts_postgres_on_request() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, cluster(), replica_pg(1000)).request(Request::Restart);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![Action::RestartPostgres]);
    assert_eq!(d.reason, Reason::Restarting);
    assert_eq!(reason(&d), "restarting Postgres on request");
    assert_eq!(d.wake_after_ms, 0);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn restart_request_with_postgres_stopped_starts_it_as_replica() {
    let o = Obs::new(5_000, cluster(), stopped_pg(1000)).request(Request::Restart);
    let d = replica("pg2").step(&o.0);
    assert_eq!(
        acts(&d),
        vec![Action::StartPostgres { role: StartAs::Replica { upstream: Some("pg1".into()) } }]
    );
}

#[test]
fn leader_restart_keeps_leadership_while_postgres_starts() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), primary_pg(1000)).request(Request::Restart);
    let d = n.step(&o.0);
    assert!(d.actions.contains(&Action::RestartPostgres));
    assert_eq!(d.reason, Reason::Restarting);
    assert_eq!(n.state().role, Role::Leader);
    let o = all_done(Obs::new(6_000, cluster(), starting_pg(1000)), &d, 5_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::WaitingForPostgres);
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn leader_restart_renews_lease_before_restarting() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(0, cluster(), primary_pg(1000)).0);
    let o = all_done(Obs::new(10_000, cluster(), primary_pg(1000)), &d, 0).request(Request::Restart);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000), Action::RestartPostgres]);
    // The restart (shutdown checkpoint, start) takes 12 s: the primary is
    // back at 22 s and goes on as leader, rather than demoting for want of
    // the renewal it skipped.
    let o = all_done(Obs::new(22_000, cluster(), primary_pg(1000)), &d, 10_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
}

#[test]
fn replica_reinitializes_from_leader_on_request() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, cluster(), replica_pg(1000)).request(Request::Reinitialize);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![stop_fast(), Action::Reinitialize { source: "pg1".into() }]);
    assert_eq!(d.reason, Reason::Reinitializing { source: "pg1".into() });
    assert_eq!(reason(&d), "reinitializing: removing the data directory and cloning from pg1");
    assert_eq!(d.wake_after_ms, 0);
    assert_eq!(n.state().role, Role::Cloning);
}

#[test]
fn stopped_replica_reinitializes_without_stopping_first() {
    let o = Obs::new(5_000, cluster(), stopped_pg(1000)).request(Request::Reinitialize);
    let d = replica("pg2").step(&o.0);
    assert_eq!(acts(&d), vec![Action::Reinitialize { source: "pg1".into() }]);
}

#[test]
fn reinitialized_replica_starts_following_the_leader() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, cluster(), replica_pg(1000)).request(Request::Reinitialize);
    let d = n.step(&o.0);
    let o = all_done(Obs::new(60_000, cluster(), stopped_pg(1000)), &d, 5_000);
    let d = n.step(&o.0);
    assert_eq!(
        acts(&d),
        vec![Action::StartPostgres { role: StartAs::Replica { upstream: Some("pg1".into()) } }]
    );
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn reinitialize_refused_without_a_leader() {
    let mut n = replica("pg2");
    let o = Obs::new(5_000, no_leader(cluster()), replica_pg(1000)).request(Request::Reinitialize);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::ReinitializeRefused { why: ReinitializeRefusal::NoLeader });
    assert_eq!(reason(&d), "reinitialize refused: cluster has no leader, can not reinitialize");
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn leader_refuses_reinitialize_and_keeps_renewing_its_lease() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(0, cluster(), primary_pg(1000)).0);
    let o = all_done(Obs::new(10_000, cluster(), primary_pg(1000)), &d, 0).request(Request::Reinitialize);
    let d = n.step(&o.0);
    assert_eq!(d.reason, Reason::ReinitializeRefused { why: ReinitializeRefusal::Leader });
    assert_eq!(reason(&d), "reinitialize refused: I am the leader, can not reinitialize");
    assert_eq!(acts(&d), vec![renew(1000)]);
    // The next loop goes on as usual: no demotion for the skipped renewal.
    let now = 10_000 + d.wake_after_ms;
    let o = all_done(Obs::new(now, cluster(), primary_pg(1000)), &d, 10_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn leader_refuses_reinitialize_without_touching_its_data() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), primary_pg(1000)).request(Request::Reinitialize);
    let d = n.step(&o.0);
    assert!(matches!(d.reason, Reason::ReinitializeRefused { .. }));
    assert_eq!(reason(&d), "reinitialize refused: I am the leader, can not reinitialize");
    assert!(!d.actions.iter().any(|a| matches!(
        a,
        Action::Reinitialize { .. } | Action::StopPostgres { .. } | Action::Demote { .. }
    )));
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn leader_with_postgres_down_refuses_reinitialize_and_starts_its_primary() {
    // Rule 9: the refusal does not put off the restart of the primary
    // under the lock that the key's renewal stands for.
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), stopped_pg(1000)).request(Request::Reinitialize);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000), Action::StartPostgres { role: StartAs::Primary }]);
    assert_eq!(reason(&d), "reinitialize refused: I am the leader, can not reinitialize");
}

#[test]
fn lock_holder_still_a_replica_promotes_rather_than_restart_on_request() {
    // Rule 9: a lock holder whose Postgres is a replica promotes in this
    // step; the restart is not carried out (the API says why).
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(5_000, cluster(), replica_pg(1000)).request(Request::Restart);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![Action::Promote]);
    assert_eq!(d.reason, Reason::Promoting);
}

#[test]
fn paused_lock_holder_still_a_replica_refuses_reinitialize_and_releases_the_lock() {
    // Paused, the refusal comes with what pause decides (release the lock
    // of a Postgres demoted by hand), never with a promotion nobody asked
    // for (found by the property tests, 200 000 cases).
    let paused = with_config(cluster(), |c| c.pause = true);
    let o = Obs::new(5_000, paused, replica_pg(1000)).request(Request::Reinitialize);
    let d = leader("pg1", VALIDITY_MS).step(&o.0);
    assert_eq!(acts(&d), vec![release(1000)]);
    assert_eq!(reason(&d), "reinitialize refused: I am the leader, can not reinitialize");
}
