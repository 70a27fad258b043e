//! Snapshot tests: decisions with their reasons, as an operator reads them
//! in the log. A change of wording or of action order shows up here.

#[path = "scenarios/harness.rs"]
mod harness;

use harness::*;
use insta::assert_snapshot;
use keel_core::*;

#[test]
fn healthy_leader_renews() {
    let d = leader("pg1", 25_000).step(&Obs::new(1_000, cluster(), primary_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn leader_past_deadline_fences() {
    let d = leader("pg1", 25_000).step(&Obs::new(26_200, cluster(), primary_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn leader_with_etcd_down_keeps_serving() {
    let d = leader("pg1", 25_000).step(&Obs::unreachable(8_000, 1_000, primary_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn leader_with_etcd_down_and_lease_running_out_demotes_gently() {
    let d = leader("pg1", 25_000).step(&Obs::unreachable(17_000, 1_000, primary_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn replica_with_etcd_down_waits() {
    let d = replica("pg2").step(&Obs::unreachable(8_000, 1_000, replica_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn replica_races_when_leader_key_expired() {
    let d = replica("pg2").step(&Obs::new(40_000, no_leader(cluster()), replica_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn lagging_replica_stays_out_of_the_race() {
    let mut v = no_leader(cluster());
    v.optime_lsn = Some(5_000_000);
    let d = replica("pg3").step(&Obs::new(40_000, v, replica_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn replica_that_won_the_lock_promotes() {
    let v = with_leader(no_leader(cluster()), "pg2");
    let o = Obs::new(40_000, v, replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 39_990);
    let d = replica("pg2").step(&o.0);
    assert_snapshot!(render(&d));
}

#[test]
fn former_primary_past_fork_point_rewinds() {
    let mut v = with_leader(cluster(), "pg2");
    v.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg2".into()) }];
    v.members.get_mut("pg2").unwrap().timeline = 2;
    let mut cfg = cfg();
    cfg.use_pg_rewind = true;
    v.config = Some(cfg);
    let d = replica("pg1").step(&Obs::new(50_000, v, stopped_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn switchover_demotes_then_releases() {
    let v = with_failover(cluster(), Some("pg1"), Some("pg2"));
    let d = leader("pg1", 25_000).step(&Obs::new(1_000, v, primary_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn switchover_to_nofailover_member_is_refused() {
    let mut v = with_failover(cluster(), Some("pg1"), Some("pg3"));
    v.members.get_mut("pg3").unwrap().tags.nofailover = true;
    let d = leader("pg1", 25_000).step(&Obs::new(1_000, v, primary_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn sync_leader_adds_a_standby_to_postgres_first() {
    let v = with_sync(with_config(cluster(), |c| c.synchronous_mode = SyncMode::On), "pg1", &[]);
    let mut p = primary_pg(1000);
    p.replication =
        vec![standby("pg2", 1000, StandbySyncState::Async), standby("pg3", 900, StandbySyncState::Async)];
    let d = leader("pg1", 25_000).step(&Obs::new(1_000, v, p).0);
    assert_snapshot!(render(&d));
}

#[test]
fn paused_leader_only_renews() {
    let v = with_config(cluster(), |c| c.pause = true);
    let d = leader("pg1", 25_000).step(&Obs::new(1_000, v, primary_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn leader_shutdown_stops_postgres_then_releases() {
    let o = Obs::new(1_000, cluster(), primary_pg(1000)).request(Request::Shutdown);
    let d = leader("pg1", 25_000).step(&o.0);
    assert_snapshot!(render(&d));
}

#[test]
fn crashed_primary_restarts_in_place() {
    let d = leader("pg1", 25_000).step(&Obs::new(1_000, cluster(), stopped_pg(1000)).0);
    assert_snapshot!(render(&d));
}

#[test]
fn role_transition_diagram() {
    assert_snapshot!(keel_core::role::diagram());
}
