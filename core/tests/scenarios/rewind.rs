//! Behaviour 10 and safety rule 4: a node whose history diverged from the
//! leader's never streams from it. It stops Postgres, recovers from a crash
//! if it must, rewinds, and re-initialises when a rewind cannot or did not
//! help. Divergence is judged switch by switch from the timeline history.

use crate::harness::*;
use keel_core::*;

fn switch(timeline: u32, fork_lsn: u64, new_leader: Option<&str>) -> TimelineSwitch {
    TimelineSwitch { timeline, fork_lsn, new_leader: new_leader.map(Into::into) }
}

/// pg1 led on timeline 1 until 1000; pg2 was promoted to timeline 2 and
/// leads at 1200, with `use_pg_rewind` on.
fn after_failover() -> ClusterView {
    let mut v = with_leader(cluster(), "pg2");
    v.revision = 110;
    v.members.get_mut("pg1").unwrap().state = MemberState::Stopped;
    let pg2 = v.members.get_mut("pg2").unwrap();
    pg2.role = MemberRole::Primary;
    pg2.timeline = 2;
    pg2.lsn = 1200;
    v.history = vec![switch(1, 1000, Some("pg2"))];
    v.optime_lsn = Some(1200);
    with_config(v, |c| c.use_pg_rewind = true)
}

/// A Postgres on timeline 2 whose history file records the switch at 1000.
fn on_timeline_2(process: PgProcess, lsn: u64) -> PgFacts {
    let mut p = pg(process, lsn);
    p.timeline = 2;
    p.history = vec![switch(1, 1000, None)];
    p
}

/// The former primary pg1, stopped cleanly after writing up to 1500 on
/// timeline 1: 500 bytes the new leader never had.
fn former_primary_stopped() -> PgFacts {
    stopped_pg(1500)
}

/// The operator allows removing the data directory when a rewind fails.
fn on_failure(v: ClusterView) -> ClusterView {
    with_config(v, |c| c.remove_data_directory_on_rewind_failure = true)
}

/// The operator allows removing the data directory when no rewind is
/// possible.
fn on_diverged(v: ClusterView) -> ClusterView {
    with_config(v, |c| c.remove_data_directory_on_diverged_timelines = true)
}

fn rewind_from(source: &str) -> Action {
    Action::Rewind { source: source.into() }
}

fn reinit_from(source: &str) -> Action {
    Action::Reinitialize { source: source.into() }
}

fn stop_fast() -> Action {
    Action::StopPostgres { mode: StopMode::Fast }
}

fn start_replica_of(upstream: &str) -> Action {
    Action::StartPostgres { role: StartAs::Replica { upstream: Some(upstream.into()) } }
}

fn with_control(mut p: PgFacts, f: impl FnOnce(&mut ControlData)) -> PgFacts {
    if let DataDir::Initialised(c) = &mut p.data {
        f(c);
    }
    p
}

// `divergence` itself.

#[test]
fn same_history_has_not_diverged() {
    let p = on_timeline_2(PgProcess::RunningReplica, 1200);
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&p, &cluster, Some(2)), None);
}

#[test]
fn empty_histories_on_timeline_one_have_not_diverged() {
    assert_eq!(divergence(&replica_pg(1000), &[], Some(1)), None);
    assert_eq!(divergence(&replica_pg(1000), &[], None), None);
    assert_eq!(divergence(&stopped_pg(5000), &[], Some(1)), None);
}

#[test]
fn lagging_replica_behind_the_fork_has_not_diverged() {
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&replica_pg(900), &cluster, Some(2)), None);
    assert_eq!(divergence(&stopped_pg(900), &cluster, Some(2)), None);
}

#[test]
fn replica_exactly_at_the_fork_has_not_diverged() {
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&replica_pg(1000), &cluster, Some(2)), None);
}

#[test]
fn former_primary_past_the_fork_has_diverged_at_the_fork() {
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&stopped_pg(1500), &cluster, Some(2)), Some(1000));
    assert_eq!(divergence(&primary_pg(1001), &cluster, Some(2)), Some(1000));
}

#[test]
fn replica_that_received_wal_past_the_fork_has_diverged() {
    let cluster = [switch(1, 1000, Some("pg2"))];
    let mut p = replica_pg(1000);
    p.receive_lsn = 1100;
    assert_eq!(divergence(&p, &cluster, Some(2)), Some(1000));
}

#[test]
fn same_timeline_number_with_another_fork_lsn_is_diverged() {
    // pg3 promoted itself at 1200 in a partition; the cluster's timeline 2
    // started at 1000 with pg2.
    let mut p = on_timeline_2(PgProcess::Stopped, 1300);
    p.history = vec![switch(1, 1200, None)];
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&p, &cluster, Some(2)), Some(1000));
}

#[test]
fn same_timeline_number_with_an_earlier_fork_lsn_is_diverged_at_the_earlier_fork() {
    let mut p = on_timeline_2(PgProcess::Stopped, 1300);
    p.history = vec![switch(1, 800, None)];
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&p, &cluster, Some(2)), Some(800));
}

#[test]
fn same_timeline_number_and_fork_lsn_from_another_promoted_member_is_diverged() {
    let mut p = on_timeline_2(PgProcess::Stopped, 1000);
    p.history = vec![switch(1, 1000, Some("pg3"))];
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&p, &cluster, Some(2)), Some(1000));
}

#[test]
fn same_timeline_number_from_another_promotion_is_diverged() {
    // The history file has no names (Postgres wrote it), but keel recorded
    // that pg3's own promotion started its timeline 2.
    let mut p = on_timeline_2(PgProcess::Stopped, 1100);
    p.timeline_origin = Some("pg3".into());
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&p, &cluster, Some(2)), Some(1000));
}

#[test]
fn timeline_started_by_the_recorded_promotion_is_not_diverged() {
    let mut p = on_timeline_2(PgProcess::RunningReplica, 1200);
    p.timeline_origin = Some("pg2".into());
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&p, &cluster, Some(2)), None);
}

#[test]
fn unannotated_histories_with_the_same_fork_have_not_diverged() {
    let p = on_timeline_2(PgProcess::RunningReplica, 1200);
    let cluster = [switch(1, 1000, None)];
    assert_eq!(divergence(&p, &cluster, Some(2)), None);
}

#[test]
fn node_past_the_end_of_a_later_timeline_has_diverged_there() {
    // The cluster went 1 -> 2 at 1000 and 2 -> 3 at 2000.
    let p = on_timeline_2(PgProcess::Stopped, 2500);
    let cluster = [switch(1, 1000, Some("pg2")), switch(2, 2000, Some("pg3"))];
    assert_eq!(divergence(&p, &cluster, Some(3)), Some(2000));
    let p = on_timeline_2(PgProcess::Stopped, 1800);
    assert_eq!(divergence(&p, &cluster, Some(3)), None);
}

#[test]
fn node_on_a_timeline_newer_than_the_leaders_has_diverged() {
    // pg3 went to timeline 3 at 2000 by a promotion the cluster never had;
    // the leader is still on timeline 2.
    let mut p = on_timeline_2(PgProcess::Stopped, 2100);
    p.timeline = 3;
    p.history.push(switch(2, 2000, None));
    let cluster = [switch(1, 1000, Some("pg2"))];
    assert_eq!(divergence(&p, &cluster, Some(2)), Some(2000));
}

#[test]
fn node_on_timeline_two_with_a_leader_still_on_one_has_diverged_at_its_fork() {
    let p = on_timeline_2(PgProcess::Stopped, 1100);
    assert_eq!(divergence(&p, &[], Some(1)), Some(1000));
}

// Repairing a diverged node.

#[test]
fn former_primary_past_fork_point_rewinds_from_new_leader() {
    let mut n = replica("pg1");
    let d = n.step(&Obs::new(1000, after_failover(), former_primary_stopped()).0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
    assert_eq!(d.reason, Reason::Rewinding { source: "pg2".into(), fork_lsn: 1000 });
    assert_eq!(reason(&d), "rewinding from pg2: history diverged at 0/3E8");
    assert_eq!(n.state().role, Role::Rewinding);
    assert_eq!(d.wake_after_ms, 0);
}

#[test]
fn running_diverged_replica_stops_postgres_before_rewinding() {
    // The former primary came back as a read-only standby (after a demote).
    let mut p = replica_pg(1500);
    p.upstream = None;
    let mut n = replica("pg1");
    let d = n.step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![stop_fast()]);
    assert_eq!(d.reason, Reason::StoppingToRewind { fork_lsn: 1000 });
    assert_eq!(reason(&d), "stopping Postgres: its history diverged from the leader's at 0/3E8");
    assert_eq!(n.state().role, Role::Replica);
    // Stopped cleanly, it rewinds.
    let mut p = stopped_pg(1500);
    p.data = DataDir::Initialised(control(ControlState::ShutDownInRecovery));
    let o = Obs::new(2000, after_failover(), p).outcome(stop_fast(), ActionResult::Done, 1000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
}

#[test]
fn diverged_postgres_still_starting_is_stopped_first() {
    let mut p = replica_pg(1500);
    p.process = PgProcess::Starting;
    let d = replica("pg1").step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![stop_fast()]);
}

#[test]
fn replica_ahead_of_new_leaders_fork_point_rewinds() {
    // pg3 (nofailover) had received 1500 from pg1; pg2 was promoted at 1000.
    let mut n = replica("pg3");
    let d = n.step(&Obs::new(1000, after_failover(), replica_pg(1500)).0);
    assert_eq!(acts(&d), vec![stop_fast()]);
    assert_eq!(d.reason, Reason::StoppingToRewind { fork_lsn: 1000 });
    let mut p = stopped_pg(1500);
    p.data = DataDir::Initialised(control(ControlState::ShutDownInRecovery));
    let d = n.step(&Obs::new(2000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
}

#[test]
fn crashed_former_primary_recovers_before_rewinding() {
    let mut n = replica("pg1");
    let mut p = stopped_pg(1500);
    p.data = DataDir::Initialised(control(ControlState::InProduction));
    let d = n.step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![Action::RecoverCrash]);
    assert_eq!(d.reason, Reason::RecoveringBeforeRewind);
    assert_eq!(reason(&d), "crash recovery: pg_rewind needs a cleanly shut down data directory");
    assert_eq!(d.wake_after_ms, 0);
    // Crash recovery left a clean shutdown: now the rewind.
    let o = Obs::new(2000, after_failover(), former_primary_stopped()).outcome(
        Action::RecoverCrash,
        ActionResult::Done,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
}

#[test]
fn interrupted_crash_recovery_is_run_again_before_rewinding() {
    let mut p = stopped_pg(1500);
    p.data = DataDir::Initialised(control(ControlState::Other));
    let d = replica("pg1").step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![Action::RecoverCrash]);
}

#[test]
fn successful_rewind_starts_replica_of_new_leader() {
    let mut n = replica("pg1");
    n.step(&Obs::new(1000, after_failover(), former_primary_stopped()).0);
    let o = Obs::new(2000, after_failover(), on_timeline_2(PgProcess::Stopped, 1000)).outcome(
        rewind_from("pg2"),
        ActionResult::Done,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![start_replica_of("pg2")]);
    assert_eq!(n.state().role, Role::Replica);
    assert!(!n.state().rewind_attempted);
}

#[test]
fn rewind_that_left_history_diverged_is_followed_by_reinitialize_where_allowed() {
    let mut n = replica("pg1");
    n.step(&Obs::new(1000, on_failure(after_failover()), former_primary_stopped()).0);
    let o = Obs::new(2000, on_failure(after_failover()), former_primary_stopped()).outcome(
        rewind_from("pg2"),
        ActionResult::Done,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![reinit_from("pg2")]);
    assert_eq!(d.reason, Reason::RewindImpossible { why: NoRewind::StillDiverged });
    assert_eq!(
        d.reason.to_string(),
        "cannot rewind (a rewind already ran and the history still diverges); reinitializing"
    );
    assert_eq!(n.state().role, Role::Cloning);
}

#[test]
fn failed_rewind_is_followed_by_reinitialize_where_allowed() {
    let mut n = replica("pg1");
    n.step(&Obs::new(1000, on_failure(after_failover()), former_primary_stopped()).0);
    let o = Obs::new(2000, on_failure(after_failover()), former_primary_stopped()).outcome(
        rewind_from("pg2"),
        ActionResult::Failed,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![reinit_from("pg2")]);
    assert_eq!(reason(&d), "cannot rewind (the rewind failed); reinitializing");
}

/// Patroni's default: the diverged WAL can hold acknowledged writes in
/// asynchronous mode; deleting it is the operator's choice. A rewind that
/// failed for a passing reason (its source going away, a wrong password)
/// is tried again rather than counted as a rewind that ran.
#[test]
fn failed_rewind_is_tried_again_and_never_followed_by_reinitialize_by_default() {
    let mut n = replica("pg1");
    n.step(&Obs::new(1000, after_failover(), former_primary_stopped()).0);
    let o = Obs::new(2000, after_failover(), former_primary_stopped()).outcome(
        rewind_from("pg2"),
        ActionResult::Failed,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
    assert!(!n.state().rewind_attempted);
}

#[test]
fn rewind_that_left_history_diverged_waits_for_the_operator_by_default() {
    let mut n = replica("pg1");
    n.step(&Obs::new(1000, after_failover(), former_primary_stopped()).0);
    let o = Obs::new(2000, after_failover(), former_primary_stopped()).outcome(
        rewind_from("pg2"),
        ActionResult::Done,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(
        reason(&d),
        "history diverged and cannot be rewound (a rewind already ran and the history still diverges); \
         waiting for the operator: keelctl reinit, or set postgresql.remove_data_directory_on_rewind_failure"
    );
}

#[test]
fn reinitialized_node_starts_as_replica_of_leader() {
    let mut n = replica("pg1");
    n.step(&Obs::new(1000, after_failover(), former_primary_stopped()).0);
    let o = Obs::new(2000, after_failover(), former_primary_stopped()).outcome(
        rewind_from("pg2"),
        ActionResult::Failed,
        1000,
    );
    n.step(&o.0);
    let o = Obs::new(3000, after_failover(), on_timeline_2(PgProcess::Stopped, 1200)).outcome(
        reinit_from("pg2"),
        ActionResult::Done,
        2000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![start_replica_of("pg2")]);
    assert_eq!(n.state().role, Role::Replica);
    assert!(!n.state().rewind_attempted);
}

#[test]
fn second_divergence_after_a_successful_rewind_rewinds_again() {
    let mut n = replica("pg1");
    n.step(&Obs::new(1000, after_failover(), former_primary_stopped()).0);
    let o = Obs::new(2000, after_failover(), on_timeline_2(PgProcess::Stopped, 1000)).outcome(
        rewind_from("pg2"),
        ActionResult::Done,
        1000,
    );
    n.step(&o.0);
    n.step(&Obs::new(3000, after_failover(), on_timeline_2(PgProcess::RunningReplica, 1200)).0);
    // Later pg3 is promoted at 2000 while pg1 had received up to 2100.
    let mut v = with_leader(after_failover(), "pg3");
    v.revision = 130;
    v.members.get_mut("pg2").unwrap().state = MemberState::Stopped;
    v.members.get_mut("pg3").unwrap().timeline = 3;
    v.history.push(switch(2, 2000, Some("pg3")));
    let d = n.step(&Obs::new(4000, v, on_timeline_2(PgProcess::Stopped, 2100)).0);
    assert_eq!(acts(&d), vec![rewind_from("pg3")]);
}

#[test]
fn without_use_pg_rewind_diverged_node_reinitializes_from_leader_where_allowed() {
    let v = on_diverged(with_config(after_failover(), |c| c.use_pg_rewind = false));
    let mut n = replica("pg1");
    let d = n.step(&Obs::new(1000, v, former_primary_stopped()).0);
    assert_eq!(acts(&d), vec![reinit_from("pg2")]);
    assert_eq!(d.reason, Reason::RewindImpossible { why: NoRewind::Disabled });
    assert_eq!(n.state().role, Role::Cloning);
}

#[test]
fn crashed_diverged_node_without_use_pg_rewind_reinitializes_without_crash_recovery_where_allowed() {
    let v = on_diverged(with_config(after_failover(), |c| c.use_pg_rewind = false));
    let mut p = stopped_pg(1500);
    p.data = DataDir::Initialised(control(ControlState::InProduction));
    let d = replica("pg1").step(&Obs::new(1000, v, p).0);
    assert_eq!(acts(&d), vec![reinit_from("pg2")]);
}

#[test]
fn without_wal_log_hints_or_checksums_diverged_node_reinitializes_where_allowed() {
    let p = with_control(former_primary_stopped(), |c| {
        c.wal_log_hints = false;
        c.data_checksums = false;
    });
    let d = replica("pg1").step(&Obs::new(1000, on_diverged(after_failover()), p).0);
    assert_eq!(acts(&d), vec![reinit_from("pg2")]);
    assert_eq!(reason(&d), "cannot rewind (neither wal_log_hints nor data checksums are on); reinitializing");
}

#[test]
fn data_checksums_without_wal_log_hints_allow_rewind() {
    let p = with_control(former_primary_stopped(), |c| {
        c.wal_log_hints = false;
        c.data_checksums = true;
    });
    let d = replica("pg1").step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
}

#[test]
fn same_timeline_number_from_another_promotion_stops_to_rewind() {
    // pg3 was promoted to its own timeline 2 in a partition, at the same LSN
    // as pg2, and came back as a standby at 1100. A timeline-number check
    // would see it on the leader's timeline, behind the leader.
    let mut p = on_timeline_2(PgProcess::RunningReplica, 1100);
    p.timeline_origin = Some("pg3".into());
    p.upstream = None;
    let d = replica("pg3").step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![stop_fast()]);
    assert_eq!(d.reason, Reason::StoppingToRewind { fork_lsn: 1000 });
}

#[test]
fn same_timeline_number_with_another_fork_lsn_rewinds_from_leader() {
    let mut p = on_timeline_2(PgProcess::Stopped, 1100);
    p.history = vec![switch(1, 1050, None)];
    let d = replica("pg3").step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
    assert_eq!(d.reason, Reason::Rewinding { source: "pg2".into(), fork_lsn: 1000 });
}

#[test]
fn node_on_a_newer_timeline_than_the_leader_rewinds() {
    let mut p = on_timeline_2(PgProcess::Stopped, 2100);
    p.timeline = 3;
    p.history.push(switch(2, 2000, None));
    let d = replica("pg3").step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
    assert_eq!(d.reason, Reason::Rewinding { source: "pg2".into(), fork_lsn: 2000 });
}

#[test]
fn replica_streaming_the_leaders_new_timeline_before_the_leader_published_it_follows() {
    // pg2 was promoted to timeline 3 at 2000 and pg3 already streams it;
    // pg2's member key and the history key still say timeline 2. The
    // leader's walsender serves only its own timelines: no divergence.
    let mut p = on_timeline_2(PgProcess::RunningReplica, 2100);
    p.timeline = 3;
    p.history.push(switch(2, 2000, None));
    p.upstream = Some("pg2".into());
    let d = replica("pg3").step(&Obs::new(1000, after_failover(), p.clone()).0);
    assert_eq!(d.reason, Reason::Following { leader: "pg2".into(), upstream: "pg2".into() });
    // Not streaming from the leader, the same facts are a promotion the
    // cluster never had.
    p.streaming = false;
    let d = replica("pg3").step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![stop_fast()]);
    assert_eq!(d.reason, Reason::StoppingToRewind { fork_lsn: 2000 });
}

#[test]
fn rewind_source_is_the_leader_even_with_replicatefrom() {
    let o = Obs::new(1000, after_failover(), former_primary_stopped())
        .tags(|t| t.replicatefrom = Some("pg3".into()));
    let d = replica("pg1").step(&o.0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
}

#[test]
fn diverged_node_does_not_race_for_the_lock() {
    // No leader: pg1, the former primary at 1500, is past the fork at 1000.
    let mut v = no_leader(after_failover());
    v.members.remove("pg2");
    let mut pg1 = member(MemberRole::Replica, 1500);
    pg1.state = MemberState::Running;
    v.members.insert("pg1".into(), pg1);
    let mut p = replica_pg(1500);
    p.upstream = None;
    let d = replica("pg1").step(&Obs::new(1000, v, p).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::NotHealthiest { why: Unfit::Diverged { fork_lsn: 1000 } });
}

#[test]
fn new_leader_records_itself_as_the_promoted_member_in_the_history() {
    let mut v = after_failover();
    v.history = Vec::new();
    let p = on_timeline_2(PgProcess::RunningPrimary, 1200);
    let d = leader("pg2", 60_000).step(&Obs::new(1000, v, p).0);
    assert_eq!(
        acts(&d),
        vec![renew(1200), Action::WriteHistory { switches: vec![switch(1, 1000, Some("pg2"))] }]
    );
    assert_eq!(d.reason, Reason::PublishingHistory { timeline: 2 });
}

#[test]
fn restarted_agent_with_running_diverged_postgres_stops_it_then_rewinds() {
    let mut n = fresh("pg1");
    let mut p = replica_pg(1500);
    p.upstream = None;
    let d = n.step(&Obs::new(1000, after_failover(), p).0);
    assert_eq!(acts(&d), vec![stop_fast()]);
    assert_eq!(n.state().role, Role::Replica);
    let o = Obs::new(2000, after_failover(), former_primary_stopped()).outcome(
        stop_fast(),
        ActionResult::Done,
        1000,
    );
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
    assert_eq!(n.state().role, Role::Rewinding);
}

#[test]
fn restarted_agent_with_diverged_data_directory_rewinds() {
    // The agent restarts with empty memory over the former primary's data
    // directory, shut down cleanly past the fork.
    let mut n = fresh("pg1");
    let d = n.step(&Obs::new(1000, after_failover(), former_primary_stopped()).0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
    assert_eq!(n.state().role, Role::Rewinding);
}

#[test]
fn former_leader_whose_lease_lapsed_while_postgres_was_down_rewinds() {
    // pg1 held the lease, its Postgres was stopped, then the agent froze past
    // the lease; pg2 was promoted meanwhile.
    let mut n = leader("pg1", 20_000);
    let d = n.step(&Obs::new(30_000, after_failover(), former_primary_stopped()).0);
    assert_eq!(acts(&d), vec![rewind_from("pg2")]);
    assert_eq!(n.state().role, Role::Rewinding);
    assert_eq!(n.state().lease_deadline_ms, None);
}

#[test]
fn former_leader_whose_lease_lapsed_reinitializes_without_use_pg_rewind_where_allowed() {
    let v = on_diverged(with_config(after_failover(), |c| c.use_pg_rewind = false));
    let mut n = leader("pg1", 20_000);
    let d = n.step(&Obs::new(30_000, v, former_primary_stopped()).0);
    assert_eq!(acts(&d), vec![reinit_from("pg2")]);
    assert_eq!(n.state().role, Role::Cloning);
}

/// Found on real PostgreSQL 15: a primary killed in production reports
/// its last checkpoint (here before the fork), not the end of its WAL,
/// so it must recover before keel can tell whether it diverged.
#[test]
fn crashed_former_primary_that_looks_behind_the_fork_recovers_before_following() {
    let mut v = with_leader(cluster(), "pg2");
    v.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg2".into()) }];
    v.members.get_mut("pg2").unwrap().timeline = 2;
    let mut p = stopped_pg(500);
    p.data = DataDir::Initialised(control(ControlState::InProduction));
    let d = replica("pg1").step(&Obs::new(1_000, v.clone(), p).0);
    assert_eq!(acts(&d), vec![Action::RecoverCrash]);
    assert_eq!(d.reason, Reason::RecoveringCrashedPrimary);
    // Recovered, its WAL is seen to end past the fork: now it rewinds.
    let v = with_config(v, |c| c.use_pg_rewind = true);
    let o = Obs::new(2_000, v, stopped_pg(1_000)).outcome(Action::RecoverCrash, ActionResult::Done, 1_000);
    let d = replica("pg1").step(&o.0);
    assert_eq!(acts(&d), vec![Action::Rewind { source: "pg2".into() }]);
}

/// Found running keel: a fresh base backup's control file says "in
/// production" (the source's state); it is not a crashed primary and must
/// start as a replica, not go through crash recovery.
#[test]
fn fresh_base_backup_starts_as_replica_without_crash_recovery() {
    let mut p = stopped_pg(900);
    p.data = DataDir::Initialised(control(ControlState::InProduction));
    p.backup_label = true;
    let d = replica("pg3").step(&Obs::new(1_000, cluster(), p).0);
    assert_eq!(
        acts(&d),
        vec![Action::StartPostgres { role: StartAs::Replica { upstream: Some("pg1".into()) } }]
    );
}

#[test]
fn without_use_pg_rewind_diverged_node_stays_stopped_and_waits_for_the_operator_by_default() {
    let v = with_config(after_failover(), |c| c.use_pg_rewind = false);
    let d = replica("pg1").step(&Obs::new(1000, v, former_primary_stopped()).0);
    assert_eq!(acts(&d), vec![]);
    let why = NoRewind::Disabled;
    assert_eq!(
        d.reason,
        Reason::DivergedWaitingForOperator { why, setting: DataRemoval::OnDivergedTimelines }
    );
}

/// A failure is forgotten once the history no longer diverges, so that a
/// later divergence gets its rewind before any removal of data.
#[test]
fn a_failed_rewind_is_forgotten_once_the_node_follows_the_leader() {
    let mut n = replica("pg1");
    n.step(&Obs::new(1000, on_failure(after_failover()), former_primary_stopped()).0);
    let o = Obs::new(2000, after_failover(), former_primary_stopped()).outcome(
        rewind_from("pg2"),
        ActionResult::Failed,
        1000,
    );
    n.step(&o.0);
    assert!(n.state().rewind_failed);
    n.step(&Obs::new(3000, after_failover(), on_timeline_2(PgProcess::RunningReplica, 1300)).0);
    assert!(!n.state().rewind_failed);
}
