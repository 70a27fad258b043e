//! Behaviour 9: a replica's primary_conninfo points to the leader, or to its
//! running `replicatefrom` member, and follows a new leader after a failover.

use crate::harness::*;
use keel_core::*;

/// pg1 failed at 1000; pg2 was promoted to timeline 2 and leads at 1200.
fn after_failover() -> ClusterView {
    let mut v = with_leader(cluster(), "pg2");
    v.revision = 110;
    v.members.remove("pg1");
    let pg2 = v.members.get_mut("pg2").unwrap();
    pg2.role = MemberRole::Primary;
    pg2.timeline = 2;
    pg2.lsn = 1200;
    v.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 1000, new_leader: Some("pg2".into()) }];
    v.optime_lsn = Some(1200);
    v
}

/// pg3 streaming from pg2 on timeline 2, as after following the new leader.
fn on_timeline_2(lsn: u64) -> PgFacts {
    let mut p = replica_pg(lsn);
    p.timeline = 2;
    p.upstream = Some("pg2".into());
    p.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 1000, new_leader: None }];
    p
}

fn follow(upstream: &str) -> Action {
    Action::Follow { upstream: Some(upstream.into()) }
}

fn start_replica_of(upstream: &str) -> Action {
    Action::StartPostgres { role: StartAs::Replica { upstream: Some(upstream.into()) } }
}

#[test]
fn replica_streaming_from_leader_takes_no_action() {
    let d = replica("pg2").step(&Obs::new(1000, cluster(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::Following { leader: "pg1".into(), upstream: "pg1".into() });
    assert_eq!(reason(&d), "no action: following leader pg1");
    assert_eq!(d.wake_after_ms, LOOP_MS);
}

#[test]
fn replica_without_upstream_is_pointed_at_the_leader() {
    let mut p = replica_pg(1000);
    p.upstream = None;
    p.streaming = false;
    let d = replica("pg2").step(&Obs::new(1000, cluster(), p).0);
    assert_eq!(acts(&d), vec![follow("pg1")]);
    assert_eq!(d.reason, Reason::ChangingUpstream { upstream: "pg1".into() });
    assert_eq!(reason(&d), "following pg1 now");
    assert_eq!(d.wake_after_ms, 0);
}

#[test]
fn stopped_replica_starts_streaming_from_the_leader() {
    let d = replica("pg2").step(&Obs::new(1000, cluster(), stopped_pg(1000)).0);
    assert_eq!(acts(&d), vec![start_replica_of("pg1")]);
    assert_eq!(d.reason, Reason::StartingReplica { upstream: "pg1".into() });
    assert_eq!(reason(&d), "starting Postgres as a replica of pg1");
}

#[test]
fn replica_waits_while_postgres_is_starting() {
    let mut p = replica_pg(1000);
    p.process = PgProcess::Starting;
    p.upstream = None;
    let d = replica("pg2").step(&Obs::new(1000, cluster(), p).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::WaitingForPostgres);
}

#[test]
fn replica_follows_new_leader_after_failover() {
    let mut n = replica("pg3");
    let d = n.step(&Obs::new(1000, after_failover(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![follow("pg2")]);
    assert_eq!(d.reason, Reason::ChangingUpstream { upstream: "pg2".into() });
    assert_eq!(n.state().last_leader.as_deref(), Some("pg2"));
    assert_eq!(n.state().leader_changes, 1);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn replica_streaming_from_the_new_leader_takes_no_further_action() {
    let mut n = replica("pg3");
    n.step(&Obs::new(1000, after_failover(), replica_pg(1000)).0);
    let o = Obs::new(2000, after_failover(), on_timeline_2(1200)).outcome(
        follow("pg2"),
        ActionResult::Done,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(reason(&d), "no action: following leader pg2");
}

#[test]
fn stopped_replica_starts_as_replica_of_new_leader_after_failover() {
    let d = replica("pg3").step(&Obs::new(1000, after_failover(), stopped_pg(1000)).0);
    assert_eq!(acts(&d), vec![start_replica_of("pg2")]);
    assert_eq!(d.reason, Reason::StartingReplica { upstream: "pg2".into() });
}

#[test]
fn replica_behind_the_fork_point_follows_new_leader_without_rewind() {
    let d = replica("pg3").step(&Obs::new(1000, after_failover(), replica_pg(900)).0);
    assert_eq!(acts(&d), vec![follow("pg2")]);
}

#[test]
fn replica_follows_a_leader_that_is_not_running_yet() {
    let mut v = after_failover();
    v.members.get_mut("pg2").unwrap().state = MemberState::Starting;
    let d = replica("pg3").step(&Obs::new(1000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![follow("pg2")]);
}

#[test]
fn replica_streams_from_running_replicatefrom_member() {
    let o = Obs::new(1000, cluster(), replica_pg(1000)).tags(|t| t.replicatefrom = Some("pg2".into()));
    let d = replica("pg3").step(&o.0);
    assert_eq!(acts(&d), vec![follow("pg2")]);
    assert_eq!(d.reason, Reason::ChangingUpstream { upstream: "pg2".into() });
}

#[test]
fn replica_already_streaming_from_replicatefrom_member_takes_no_action() {
    let mut p = replica_pg(1000);
    p.upstream = Some("pg2".into());
    let o = Obs::new(1000, cluster(), p).tags(|t| t.replicatefrom = Some("pg2".into()));
    let d = replica("pg3").step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::Following { leader: "pg1".into(), upstream: "pg2".into() });
    assert_eq!(reason(&d), "no action: following pg2 (leader pg1)");
}

#[test]
fn stopped_replica_starts_streaming_from_replicatefrom_member() {
    let o = Obs::new(1000, cluster(), stopped_pg(1000)).tags(|t| t.replicatefrom = Some("pg2".into()));
    let d = replica("pg3").step(&o.0);
    assert_eq!(acts(&d), vec![start_replica_of("pg2")]);
}

#[test]
fn replicatefrom_member_not_running_falls_back_to_leader() {
    let mut v = cluster();
    v.members.get_mut("pg2").unwrap().state = MemberState::Stopped;
    let mut p = replica_pg(1000);
    p.upstream = Some("pg2".into());
    let o = Obs::new(1000, v, p).tags(|t| t.replicatefrom = Some("pg2".into()));
    let d = replica("pg3").step(&o.0);
    assert_eq!(acts(&d), vec![follow("pg1")]);
    assert_eq!(d.reason, Reason::ChangingUpstream { upstream: "pg1".into() });
}

#[test]
fn replicatefrom_member_missing_from_dcs_falls_back_to_leader() {
    let mut v = cluster();
    v.members.remove("pg2");
    let mut p = replica_pg(1000);
    p.upstream = Some("pg2".into());
    let o = Obs::new(1000, v, p).tags(|t| t.replicatefrom = Some("pg2".into()));
    let d = replica("pg3").step(&o.0);
    assert_eq!(acts(&d), vec![follow("pg1")]);
}

#[test]
fn replicatefrom_naming_this_node_falls_back_to_leader() {
    let o = Obs::new(1000, cluster(), replica_pg(1000)).tags(|t| t.replicatefrom = Some("pg3".into()));
    let d = replica("pg3").step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(reason(&d), "no action: following leader pg1");
}

#[test]
fn replicatefrom_member_back_up_becomes_upstream_again() {
    let mut n = replica("pg3");
    let mut v = cluster();
    v.members.get_mut("pg2").unwrap().state = MemberState::Stopped;
    let o = Obs::new(1000, v.clone(), replica_pg(1000)).tags(|t| t.replicatefrom = Some("pg2".into()));
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    v.revision = 101;
    v.members.get_mut("pg2").unwrap().state = MemberState::Running;
    let o = Obs::new(2000, v, replica_pg(1000)).tags(|t| t.replicatefrom = Some("pg2".into()));
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![follow("pg2")]);
}

#[test]
fn replicatefrom_the_failed_leader_falls_back_to_new_leader() {
    let o = Obs::new(1000, after_failover(), replica_pg(1000)).tags(|t| t.replicatefrom = Some("pg1".into()));
    let d = replica("pg3").step(&o.0);
    assert_eq!(acts(&d), vec![follow("pg2")]);
}

#[test]
fn replica_follows_leader_again_after_a_second_failover() {
    let mut n = replica("pg3");
    n.step(&Obs::new(1000, after_failover(), replica_pg(1000)).0);
    n.step(&Obs::new(2000, after_failover(), on_timeline_2(1200)).0);
    // pg2 fails at 1300; pg1, back as a replica of pg2, is promoted to 3.
    let mut v = with_leader(after_failover(), "pg1");
    v.revision = 120;
    v.members.get_mut("pg2").unwrap().state = MemberState::Stopped;
    let mut pg1 = member(MemberRole::Primary, 1400);
    pg1.timeline = 3;
    v.members.insert("pg1".into(), pg1);
    v.history.push(TimelineSwitch { timeline: 2, fork_lsn: 1300, new_leader: Some("pg1".into()) });
    let d = n.step(&Obs::new(3000, v, on_timeline_2(1300)).0);
    assert_eq!(acts(&d), vec![follow("pg1")]);
    assert_eq!(n.state().leader_changes, 2);
}
