//! Behaviour 3, safety rules 1 and 6: self-fencing. The lease counts from
//! when its renewal was sent, by the node's own monotonic clock, less the
//! drift margin; past that deadline without a confirmed renewal the primary
//! demotes in that very step, whatever else is going on.

use crate::harness::*;
use keel_core::*;

/// Feeds every action of `d` back as done, sent at `sent_at_ms`.
fn all_done(mut o: Obs, d: &Decision, sent_at_ms: u64) -> Obs {
    for a in &d.actions {
        o = o.outcome(a.clone(), ActionResult::Done, sent_at_ms);
    }
    o
}

#[test]
fn primary_past_lease_deadline_demotes_immediately() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(30_000, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.actions[0], demote(DemoteMode::Immediate));
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 300 });
    assert_eq!(reason(&d), "demoting: the lease deadline passed 0.3 s ago without a confirmed renewal");
    assert_eq!(d.wake_after_ms, 0);
    assert_eq!(n.state().lease_deadline_ms, None);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn primary_exactly_at_lease_deadline_demotes_immediately() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(VALIDITY_MS, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 0 });
}

#[test]
fn primary_one_ms_before_deadline_demotes_gently_and_releases() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(VALIDITY_MS - 1, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Graceful), release(1000)]);
    assert_eq!(d.reason, Reason::LeaseRunningOut { remaining_ms: 1 });
}

#[test]
fn expired_primary_demotes_immediately_while_dcs_unreachable() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::unreachable(30_000, 12_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 300 });
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn expired_primary_demotes_before_serving_a_restart_request() {
    let o = Obs::new(30_000, cluster(), primary_pg(1000)).request(Request::Restart);
    let d = leader("pg1", VALIDITY_MS).step(&o.0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 300 });
}

#[test]
fn expired_primary_demotes_before_a_switchover() {
    let v = with_failover(cluster(), Some("pg1"), Some("pg2"));
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(30_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 300 });
}

#[test]
fn lease_counts_from_renewal_send_time_not_answer_time() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(10_000, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    // The runtime sent the renewal at 10.05 s; etcd answered at 12 s.
    let o = Obs::new(20_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 10_050);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(n.state().lease_deadline_ms, Some(10_050 + VALIDITY_MS));
    // The process then stalls; counted from the answer the lease would last
    // until 41.7 s, counted from the send only until 39.75 s.
    let o = Obs::unreachable(39_800, 20_100, primary_pg(1000)).outcome(
        renew(1000),
        ActionResult::Unknown,
        20_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 50 });
}

#[test]
fn renewal_sent_in_the_future_is_clamped_to_now() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(10_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 15_000);
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, Some(10_000 + VALIDITY_MS));
    let d = n.step(&Obs::unreachable(10_000 + VALIDITY_MS, 11_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
}

#[test]
fn lease_validity_is_ttl_less_one_percent_drift_margin_by_default() {
    let mut n = leader("pg1", 15_000);
    let o = Obs::new(10_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 1_000);
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, Some(1_000 + 29_700));
}

#[test]
fn larger_clock_drift_allowance_shortens_the_lease() {
    let v = with_config(cluster(), |c| c.max_clock_drift_ppm = 50_000);
    let mut n = leader("pg1", 15_000);
    let o = Obs::new(10_000, v.clone(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 1_000);
    n.step(&o.0);
    // 5 % of 30 s is 1.5 s.
    assert_eq!(n.state().lease_deadline_ms, Some(1_000 + 28_500));
    let d = n.step(&Obs::new(29_500, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 0 });
}

#[test]
fn zero_drift_allowance_gives_the_full_ttl() {
    let v = with_config(cluster(), |c| c.max_clock_drift_ppm = 0);
    let mut n = leader("pg1", 15_000);
    let o = Obs::new(10_000, v, primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 1_000);
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, Some(1_000 + TTL_MS));
}

#[test]
fn lock_taken_by_another_member_while_lease_runs_demotes_immediately() {
    let mut n = leader("pg1", VALIDITY_MS);
    let v = with_leader(cluster(), "pg2");
    let d = n.step(&Obs::new(5_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LockLost { holder: Some("pg2".into()) });
    assert_eq!(reason(&d), "demoting: the leader lock is gone, pg2 holds it now");
    assert_eq!(n.state().lease_deadline_ms, None);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn leader_key_gone_while_lease_runs_demotes_immediately() {
    let v = no_leader(cluster());
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(5_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LockLost { holder: None });
}

#[test]
fn failed_renewal_demotes_immediately_though_lease_time_remains() {
    let v = with_leader(cluster(), "pg3");
    let o = Obs::new(10_500, v, primary_pg(1000)).outcome(renew(1000), ActionResult::Failed, 10_000);
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LockLost { holder: Some("pg3".into()) });
    assert_eq!(n.state().lease_deadline_ms, None);
}

#[test]
fn renewal_timeout_keeps_lease_until_deadline() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(15_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Unknown, 10_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::LeaderHealthy { name: "pg1".into() });
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    assert_eq!(n.state().role, Role::Leader);
    // Wake by the gentle-demote point: 10 s before the deadline.
    assert_eq!(d.wake_after_ms, VALIDITY_MS - 10_000 - 15_000);
}

#[test]
fn renewal_unknown_then_done_extends_from_the_done_send_time() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(15_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Unknown, 10_000);
    n.step(&o.0);
    let o = Obs::new(16_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 15_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(n.state().lease_deadline_ms, Some(15_000 + VALIDITY_MS));
    assert_eq!(d.wake_after_ms, LOOP_MS);
}

#[test]
fn primary_with_retry_timeout_left_demotes_gently_and_releases() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::new(VALIDITY_MS - 10_000, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Graceful), release(1000)]);
    assert_eq!(d.reason, Reason::LeaseRunningOut { remaining_ms: 10_000 });
    assert_eq!(reason(&d), "demoting gently: the lease expires in 10.0 s and no renewal was confirmed");
    // Kept until the outcomes say Postgres stopped being writable.
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    let o = Obs::new(VALIDITY_MS - 9_990, no_leader(cluster()), replica_pg(1000))
        .outcome(demote(DemoteMode::Graceful), ActionResult::Done, VALIDITY_MS - 10_000)
        .outcome(release(1000), ActionResult::Done, VALIDITY_MS - 10_000);
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, None);
    assert_ne!(n.state().role, Role::Leader);
}

#[test]
fn primary_just_outside_gentle_window_keeps_renewing() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(VALIDITY_MS - 10_001, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.wake_after_ms, 1);
}

#[test]
fn primary_with_no_lease_at_all_demotes_immediately() {
    // The agent restarted with its Postgres running as primary: it knows no
    // lease deadline, so it may not stay writable.
    let mut n = replica("pg1");
    let d = n.step(&Obs::new(1_000, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::NoLease);
}

#[test]
fn confirmed_renewals_keep_a_primary_writable_across_many_loops() {
    let mut n = leader("pg1", VALIDITY_MS);
    let mut now = 0;
    let mut d = n.step(&Obs::new(now, cluster(), primary_pg(1000)).0);
    for _ in 0..10 {
        let sent = now;
        now += d.wake_after_ms.max(1);
        d = n.step(&all_done(Obs::new(now, cluster(), primary_pg(1000)), &d, sent).0);
        assert_eq!(acts(&d), vec![renew(1000)], "at {now} ms");
    }
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn failed_gentle_demote_keeps_the_lease_retries_and_demotes_immediately_at_deadline() {
    let mut n = leader("pg1", VALIDITY_MS);
    let gentle = vec![demote(DemoteMode::Graceful), release(1000)];
    let d = n.step(&Obs::new(VALIDITY_MS - 10_000, cluster(), primary_pg(1000)).0);
    assert_eq!(acts(&d), gentle);
    // The checkpoint failed: Postgres is still primary, the lock still ours.
    let o = Obs::new(VALIDITY_MS - 9_000, cluster(), primary_pg(1000))
        .outcome(demote(DemoteMode::Graceful), ActionResult::Failed, VALIDITY_MS - 10_000)
        .outcome(release(1000), ActionResult::Skipped, VALIDITY_MS - 10_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), gentle);
    assert_eq!(d.reason, Reason::LeaseRunningOut { remaining_ms: 9_000 });
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    let o = Obs::new(VALIDITY_MS, cluster(), primary_pg(1000))
        .outcome(demote(DemoteMode::Graceful), ActionResult::Failed, VALIDITY_MS - 9_000)
        .outcome(release(1000), ActionResult::Skipped, VALIDITY_MS - 9_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 0 });
}

#[test]
fn renewal_confirmed_late_inside_the_gentle_window_renews_instead_of_demoting() {
    // The renewal sent at 5 s was confirmed only now, at 25 s: its lease
    // runs to 34.7 s, 9.7 s away, inside the 10 s gentle window. etcd has
    // just answered, so the leader renews again rather than demote (rule 6).
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::new(25_000, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 5_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    assert_eq!(d.reason, Reason::LeaderHealthy { name: "pg1".into() });
    assert_eq!(n.state().lease_deadline_ms, Some(5_000 + VALIDITY_MS));
    // Past the gentle point: step again soon to see whether this renewal
    // is confirmed.
    assert_eq!(d.wake_after_ms, 100);
    // It is not: the lease is really running out, so the leader demotes
    // gently now.
    let o = Obs::new(25_100, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Unknown, 25_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![demote(DemoteMode::Graceful), release(1000)]);
    assert_eq!(d.reason, Reason::LeaseRunningOut { remaining_ms: 9_600 });
}

#[test]
fn renewal_confirmed_inside_the_gentle_window_while_etcd_reads_fail_keeps_the_primary() {
    // The confirmation arrived but the next read did not: unknown is not
    // lost, and no demotion in the step that confirmed the renewal.
    let mut n = leader("pg1", VALIDITY_MS);
    let o =
        Obs::unreachable(25_000, 24_000, primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 5_000);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::DcsUnreachableLeader { unreachable_ms: 1_000, remaining_ms: 9_700 });
    assert_eq!(d.wake_after_ms, 100);
}
