//! Behaviour 6: the leader's Postgres is down. While it holds the lease it
//! restarts Postgres in place within `primary_start_timeout`; past that it
//! releases the lease so that a replica takes over, but only if some other
//! running member could.

use crate::harness::*;
use keel_core::*;

/// A primary that crashed: stopped, pg_control still "in production".
fn crashed(lsn: u64) -> PgFacts {
    let mut p = pg(PgProcess::Stopped, lsn);
    p.data = DataDir::Initialised(control(ControlState::InProduction));
    p
}

fn starting(lsn: u64) -> PgFacts {
    pg(PgProcess::Starting, lsn)
}

fn edit(mut v: ClusterView, name: &str, f: impl FnOnce(&mut Member)) -> ClusterView {
    f(v.members.get_mut(name).unwrap());
    v
}

/// The healthy cluster as pg1 publishes its crash, with this start timeout.
fn down(timeout_ms: u64) -> ClusterView {
    let v = edit(cluster(), "pg1", |m| m.state = MemberState::Crashed);
    with_config(v, |c| c.primary_start_timeout_ms = timeout_ms)
}

fn start_primary() -> Action {
    Action::StartPostgres { role: StartAs::Primary }
}

fn restart_in_place(lsn: u64) -> Vec<Action> {
    vec![renew(lsn), start_primary()]
}

/// pg1, leading with a lease until 40 s, finds its Postgres crashed at 1 s.
fn crash(v: ClusterView) -> Decision {
    leader("pg1", 40_000).step(&Obs::new(1000, v, crashed(1000)).0)
}

/// pg1 crashed at 1 s with a 20 s start timeout, renewing and restarting
/// every 10 s, each start too slow to finish (timed out: unknown, not
/// failed); returns the node after its step at 11 s.
fn down_for_10s(v: &ClusterView) -> (Node, Decision) {
    let mut n = leader("pg1", 40_000);
    let d = n.step(&Obs::new(1000, v.clone(), crashed(1000)).0);
    assert_eq!(acts(&d), restart_in_place(1000));
    let o = Obs::new(11_000, v.clone(), crashed(1000))
        .outcome(renew(1000), ActionResult::Done, 1000)
        .outcome(start_primary(), ActionResult::Unknown, 1000);
    let d = n.step(&o.0);
    (n, d)
}

fn after_10s(at_ms: u64, v: ClusterView, pg: PgFacts) -> Obs {
    Obs::new(at_ms, v, pg).outcome(renew(1000), ActionResult::Done, at_ms - 10_000)
}

#[test]
fn crashed_primary_within_start_timeout_restarts_in_place() {
    let mut n = leader("pg1", 40_000);
    let d = n.step(&Obs::new(1000, down(300_000), crashed(1000)).0);
    assert_eq!(acts(&d), restart_in_place(1000));
    assert_eq!(d.reason, Reason::PrimaryDown { down_ms: 0, timeout_ms: 300_000 });
    assert_eq!(
        reason(&d),
        "starting Postgres as primary: it has been down 0.0 s (primary_start_timeout 300.0 s)"
    );
    assert_eq!(n.state().role, Role::Leader);
    assert_eq!(n.state().primary_down_since_ms, Some(1000));
}

#[test]
fn crashed_primary_keeps_restarting_until_start_timeout() {
    let (n, d) = down_for_10s(&down(20_000));
    assert_eq!(acts(&d), restart_in_place(1000));
    assert_eq!(d.reason, Reason::PrimaryDown { down_ms: 10_000, timeout_ms: 20_000 });
    assert_eq!(n.state().primary_down_since_ms, Some(1000));
}

#[test]
fn crashed_primary_past_start_timeout_releases_lease() {
    let v = down(20_000);
    let (mut n, _) = down_for_10s(&v);
    let d = n.step(&after_10s(21_000, v, crashed(1000)).0);
    assert_eq!(acts(&d), vec![release(1000)]);
    assert_eq!(d.reason, Reason::PrimaryStartTimedOut { down_ms: 20_000 });
    assert_eq!(
        reason(&d),
        "releasing the leader lock: Postgres has been down 20.0 s, past primary_start_timeout"
    );
    let o = Obs::new(21_010, no_leader(cluster()), crashed(1000)).outcome(
        release(1000),
        ActionResult::Done,
        21_000,
    );
    n.step(&o.0);
    assert_eq!(n.state().role, Role::Replica);
    assert_eq!(n.state().lease_deadline_ms, None);
}

#[test]
fn primary_start_timeout_zero_releases_lease_at_once() {
    let d = crash(down(0));
    assert_eq!(acts(&d), vec![release(1000)]);
    assert_eq!(d.reason, Reason::PrimaryStartTimedOut { down_ms: 0 });
}

#[test]
fn crashed_primary_past_timeout_keeps_restarting_when_only_member_left() {
    let mut v = down(0);
    v.members.retain(|m, _| m == "pg1");
    let d = crash(v);
    assert_eq!(acts(&d), restart_in_place(1000));
    assert_eq!(d.reason, Reason::PrimaryDown { down_ms: 0, timeout_ms: 0 });
}

#[test]
fn crashed_primary_past_timeout_keeps_restarting_when_others_are_not_running() {
    let v = edit(down(0), "pg2", |m| m.state = MemberState::Stopped);
    let v = edit(v, "pg3", |m| m.state = MemberState::Starting);
    let d = crash(v);
    assert_eq!(acts(&d), restart_in_place(1000));
}

#[test]
fn crashed_primary_past_timeout_keeps_restarting_when_all_others_nofailover() {
    let v = edit(down(0), "pg2", |m| m.tags.nofailover = true);
    let v = edit(v, "pg3", |m| m.tags.failover_priority = 0);
    let d = crash(v);
    assert_eq!(acts(&d), restart_in_place(1000));
}

#[test]
fn crashed_primary_releases_lease_when_one_other_member_could_take_over() {
    let v = edit(down(0), "pg2", |m| m.state = MemberState::Stopped);
    let d = crash(v);
    assert_eq!(acts(&d), vec![release(1000)]);
}

#[test]
fn crashed_primary_past_timeout_keeps_restarting_when_others_lag_beyond_max_lag() {
    let mut v = down(0);
    v.optime_lsn = Some(3_000_000);
    let d = leader("pg1", 40_000).step(&Obs::new(1000, v, crashed(3_000_000)).0);
    assert_eq!(acts(&d), restart_in_place(3_000_000));
    assert!(matches!(d.reason, Reason::PrimaryDown { .. }));
}

#[test]
fn crashed_primary_in_sync_mode_keeps_restarting_when_only_async_replicas_run() {
    let v = with_config(with_sync(down(0), "pg1", &["pg2"]), |c| c.synchronous_mode = SyncMode::On);
    let v = edit(v, "pg2", |m| m.state = MemberState::Stopped);
    let d = crash(v);
    assert_eq!(acts(&d), restart_in_place(1000));
    assert!(matches!(d.reason, Reason::PrimaryDown { .. }));
}

#[test]
fn crashed_primary_in_sync_mode_releases_lease_to_running_sync_standby() {
    let v = with_config(with_sync(down(0), "pg1", &["pg2"]), |c| c.synchronous_mode = SyncMode::On);
    let d = crash(v);
    assert_eq!(acts(&d), vec![release(1000)]);
}

#[test]
fn leader_postgres_starting_renews_lease_and_waits() {
    let d = leader("pg1", 40_000).step(&Obs::new(1000, down(300_000), starting(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::WaitingForPostgres);
}

#[test]
fn leader_postgres_starting_past_start_timeout_releases_lease() {
    let v = down(20_000);
    let mut n = leader("pg1", 40_000);
    let d = n.step(&Obs::new(1000, v.clone(), crashed(1000)).0);
    assert_eq!(acts(&d), restart_in_place(1000));
    let o = after_10s(11_000, v.clone(), starting(1000)).outcome(start_primary(), ActionResult::Done, 1000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    let d = n.step(&after_10s(21_000, v, starting(1000)).0);
    // Whether the half-started postmaster is also stopped is left open; the
    // lease must be given up and not renewed.
    let a = acts(&d);
    assert_eq!(a.last(), Some(&release(1000)), "{a:?}");
    assert!(
        !a.iter().any(|x| matches!(x, Action::RenewLease { .. } | Action::StartPostgres { .. })),
        "{a:?}"
    );
    assert!(matches!(d.reason, Reason::PrimaryStartTimedOut { .. }), "{}", reason(&d));
}

#[test]
fn primary_back_up_resets_start_timeout() {
    let v = down(15_000);
    let mut n = leader("pg1", 40_000);
    n.step(&Obs::new(1000, v.clone(), crashed(1000)).0);
    let d = n.step(&after_10s(11_000, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(n.state().primary_down_since_ms, None);
    let d = n.step(&after_10s(21_000, v, crashed(1000)).0);
    assert_eq!(acts(&d), restart_in_place(1000));
    assert_eq!(d.reason, Reason::PrimaryDown { down_ms: 0, timeout_ms: 15_000 });
}

#[test]
fn failed_restart_wakes_no_later_than_start_timeout() {
    let v = down(15_000);
    let mut n = leader("pg1", 40_000);
    let d = n.step(&Obs::new(1000, v.clone(), crashed(1000)).0);
    assert_eq!(d.wake_after_ms, 0);
    let o = after_10s(11_000, v, crashed(1000)).outcome(start_primary(), ActionResult::Unknown, 1000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), restart_in_place(1000));
    assert_eq!(d.wake_after_ms, 5_000);
}

/// Patroni's `post_recover`: a start that failed (the server exited, not
/// merely slow) releases the lock at once when another member can take
/// over, rather than retrying until `primary_start_timeout`.
#[test]
fn primary_that_failed_to_start_releases_the_lease_when_another_member_can_take_over() {
    let v = down(300_000);
    let mut n = leader("pg1", 40_000);
    n.step(&Obs::new(1000, v.clone(), crashed(1000)).0);
    let o = after_10s(11_000, v, crashed(1000)).outcome(start_primary(), ActionResult::Failed, 1000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![release(1000)]);
    assert_eq!(d.reason, Reason::PrimaryStartFailed);
}

#[test]
fn primary_that_failed_to_start_keeps_the_lease_when_nobody_else_can_take_over() {
    let v = edit(edit(down(300_000), "pg2", |m| m.tags.nofailover = true), "pg3", |m| {
        m.state = MemberState::Stopped
    });
    let mut n = leader("pg1", 40_000);
    n.step(&Obs::new(1000, v.clone(), crashed(1000)).0);
    let o = after_10s(11_000, v, crashed(1000)).outcome(start_primary(), ActionResult::Failed, 1000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), restart_in_place(1000));
}

#[test]
fn released_primary_starts_read_only_without_racing() {
    let v = down(0);
    let mut n = leader("pg1", 40_000);
    let d = n.step(&Obs::new(1000, v.clone(), crashed(1000)).0);
    assert_eq!(acts(&d), vec![release(1000)]);
    let mut v = v;
    v.leader = None;
    let o = Obs::new(1100, v, crashed(1000)).outcome(release(1000), ActionResult::Done, 1000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![Action::StartPostgres { role: StartAs::Replica { upstream: None } }]);
    assert_eq!(d.reason, Reason::NoLeaderStartingReadOnly);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn replica_takes_over_after_crashed_primary_released_lease() {
    let mut v = down(0);
    v.leader = None;
    let mut n = replica("pg2");
    let d = n.step(&Obs::new(1200, v.clone(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    assert_eq!(d.reason, Reason::TakingLease);
    let d = replica("pg3").step(&Obs::new(1200, v.clone(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    let v = with_leader(v, "pg2");
    let d = n
        .step(&Obs::new(1300, v, replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 1200).0);
    assert_eq!(acts(&d), vec![Action::Promote]);
}

#[test]
fn replica_does_not_race_while_crashed_primary_holds_lease() {
    let d = replica("pg2").step(&Obs::new(1000, down(300_000), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::Following { leader: "pg1".into(), upstream: "pg1".into() });
}
