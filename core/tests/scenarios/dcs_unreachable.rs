//! Behaviour 4, safety rules 5 and 6: the DCS is unreachable (or its view is
//! stale). Nobody promotes; the leader keeps serving while its lease lasts,
//! demotes gently when it runs short, and at once at the deadline; in
//! failsafe mode it may stay primary while every member confirms it.

use crate::harness::*;
use keel_core::*;

/// `n` as if the last config it read from the DCS had been edited by `f`.
fn configured(n: Node, f: impl FnOnce(&mut DynamicConfig)) -> Node {
    let mut s = n.state().clone();
    f(&mut s.config);
    Node::from_state(s)
}

/// The leader pg1, its lease ending at `deadline_ms`, failsafe mode on.
fn failsafe_leader(deadline_ms: u64) -> Node {
    configured(leader("pg1", deadline_ms), |c| c.failsafe_mode = true)
}

fn check_failsafe(members: &[&str]) -> Action {
    Action::CheckFailsafe { members: set(members) }
}

#[test]
fn replica_takes_no_action_while_dcs_unreachable() {
    let mut n = replica("pg2");
    let d = n.step(&Obs::unreachable(20_000, 5_000, replica_pg(1000)).0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::DcsUnreachableReplica { unreachable_ms: 15_000 });
    assert_eq!(reason(&d), "no action: etcd has not answered for 15.0 s; nobody promotes without it");
    assert_eq!(d.wake_after_ms, LOOP_MS);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn stopped_replica_does_not_race_without_dcs() {
    let d = replica("pg2").step(&Obs::unreachable(20_000, 5_000, stopped_pg(1000)).0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::DcsUnreachableReplica { unreachable_ms: 15_000 });
}

#[test]
fn lease_holder_not_yet_promoted_does_not_promote_without_dcs() {
    let mut n = replica("pg2");
    let d = n.step(&Obs::new(1_000, no_leader(cluster()), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    let o = Obs::unreachable(1_500, 1_200, replica_pg(1000)).outcome(
        Action::AcquireLease,
        ActionResult::Done,
        1_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::DcsUnreachableReplica { unreachable_ms: 300 });
}

#[test]
fn leader_keeps_serving_while_dcs_unreachable_with_lease_left() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::DcsUnreachableLeader { unreachable_ms: 1_000, remaining_ms: 17_700 });
    assert_eq!(
        reason(&d),
        "no action: etcd has not answered for 1.0 s; I stay primary while the lease lasts (17.7 s left)"
    );
    assert_eq!(n.state().role, Role::Leader);
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
}

#[test]
fn leader_wakes_no_later_than_its_gentle_demote_point_while_dcs_unreachable() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    assert_eq!(d.wake_after_ms, VALIDITY_MS - 10_000 - 12_000);
    let d = leader("pg1", VALIDITY_MS).step(&Obs::unreachable(19_000, 11_000, primary_pg(1000)).0);
    assert_eq!(d.wake_after_ms, 700);
}

#[test]
fn renewal_timeout_keeps_lease_while_dcs_unreachable() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::unreachable(12_000, 10_500, primary_pg(1000)).outcome(
        renew(1000),
        ActionResult::Unknown,
        10_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert!(matches!(d.reason, Reason::DcsUnreachableLeader { .. }));
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn definite_renewal_failure_demotes_immediately_even_without_dcs() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o =
        Obs::unreachable(12_000, 11_000, primary_pg(1000)).outcome(renew(1000), ActionResult::Failed, 10_000);
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LockLost { holder: None });
    assert_eq!(reason(&d), "demoting: the leader lock is gone");
    assert_eq!(n.state().lease_deadline_ms, None);
}

#[test]
fn leader_demotes_gently_when_lease_runs_short_without_dcs() {
    let mut n = leader("pg1", VALIDITY_MS);
    let d = n.step(&Obs::unreachable(VALIDITY_MS - 10_000, 11_000, primary_pg(1000)).0);
    // No DCS: nothing to release; the key runs out on its own.
    assert_eq!(d.actions, vec![demote(DemoteMode::Graceful)]);
    assert_eq!(d.reason, Reason::LeaseRunningOut { remaining_ms: 10_000 });
    assert_eq!(d.wake_after_ms, 0);
    // The lease is given up once Postgres has stopped being writable.
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    let o = Obs::unreachable(VALIDITY_MS - 9_990, 11_000, replica_pg(1000)).outcome(
        demote(DemoteMode::Graceful),
        ActionResult::Done,
        VALIDITY_MS - 10_000,
    );
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, None);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn leader_serves_then_demotes_gently_then_waits_as_replica_during_outage() {
    let mut n = leader("pg1", VALIDITY_MS);
    let o = Obs::unreachable(10_000, 9_000, primary_pg(1000));
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    let d = n.step(&Obs::unreachable(10_000 + d.wake_after_ms, 9_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Graceful)]);
    let o = Obs::unreachable(21_000, 9_000, replica_pg(1000)).outcome(
        demote(DemoteMode::Graceful),
        ActionResult::Done,
        19_700,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::DcsUnreachableReplica { unreachable_ms: 12_000 });
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn gentle_point_is_half_the_lease_when_retry_timeout_is_longer() {
    // TTL 10 s: validity 9.9 s, half of it 4.95 s, shorter than retry_timeout.
    let n = configured(leader("pg1", 9_900), |c| c.ttl_ms = 10_000);
    let d = n.clone().step(&Obs::unreachable(4_949, 4_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.wake_after_ms, 1);
    let d = n.clone().step(&Obs::unreachable(4_950, 4_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Graceful)]);
    assert_eq!(d.reason, Reason::LeaseRunningOut { remaining_ms: 4_950 });
}

#[test]
fn gentle_point_is_retry_timeout_when_shorter_than_half_the_lease() {
    // The config is learnt from the DCS while it answers.
    let mut n = leader("pg1", VALIDITY_MS);
    let v = with_config(cluster(), |c| c.retry_timeout_ms = 3_000);
    let d = n.step(&Obs::new(1_000, v, primary_pg(1000)).0);
    assert_eq!(acts(&d), vec![renew(1000)]);
    let o = Obs::unreachable(VALIDITY_MS - 3_001, 2_000, primary_pg(1000)).outcome(
        renew(1000),
        ActionResult::Unknown,
        1_000,
    );
    let mut m = n.clone();
    let d = m.step(&o.0);
    assert_eq!(d.actions, vec![]);
    let o = Obs::unreachable(VALIDITY_MS - 3_000, 2_000, primary_pg(1000)).outcome(
        renew(1000),
        ActionResult::Unknown,
        1_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Graceful)]);
}

#[test]
fn leader_at_deadline_without_dcs_demotes_immediately_not_gently() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::unreachable(VALIDITY_MS, 1_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 0 });
}

#[test]
fn failsafe_leader_asks_every_member_to_confirm_it() {
    let mut n = failsafe_leader(VALIDITY_MS);
    let d = n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![check_failsafe(&["pg2", "pg3"])]);
    assert_eq!(d.reason, Reason::FailsafeHolding { members: 2 });
    assert_eq!(
        reason(&d),
        "failsafe: etcd is unreachable, asking all 2 other members to confirm me as primary"
    );
    assert_eq!(d.wake_after_ms, VALIDITY_MS - 10_000 - 12_000);
}

#[test]
fn failsafe_members_are_learnt_from_the_last_view() {
    let mut n = configured(leader("pg1", VALIDITY_MS), |c| c.failsafe_mode = true);
    let mut v = with_config(cluster(), |c| c.failsafe_mode = true);
    v.members.insert("pg4".into(), member(MemberRole::Replica, 1000));
    n.step(&Obs::new(1_000, v, primary_pg(1000)).0);
    let d = n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![check_failsafe(&["pg2", "pg3", "pg4"])]);
    assert_eq!(d.reason, Reason::FailsafeHolding { members: 3 });
}

#[test]
fn failsafe_confirmation_extends_lease_from_check_send_time() {
    let mut n = failsafe_leader(VALIDITY_MS);
    n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    let o = Obs::unreachable(22_000, 11_000, primary_pg(1000)).outcome(
        check_failsafe(&["pg2", "pg3"]),
        ActionResult::Done,
        12_000,
    );
    // Past the old gentle point (19.7 s), still primary.
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![check_failsafe(&["pg2", "pg3"])]);
    assert_eq!(n.state().lease_deadline_ms, Some(12_000 + VALIDITY_MS));
    // Past the original deadline (29.7 s), still primary.
    let o = Obs::unreachable(31_000, 11_000, primary_pg(1000)).outcome(
        check_failsafe(&["pg2", "pg3"]),
        ActionResult::Done,
        22_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![check_failsafe(&["pg2", "pg3"])]);
    assert_eq!(d.reason, Reason::FailsafeHolding { members: 2 });
    assert_eq!(n.state().lease_deadline_ms, Some(22_000 + VALIDITY_MS));
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn failsafe_check_failing_demotes_gently_at_the_gentle_point() {
    let mut n = failsafe_leader(VALIDITY_MS);
    n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    let o = Obs::unreachable(VALIDITY_MS - 10_000, 11_000, primary_pg(1000)).outcome(
        check_failsafe(&["pg2", "pg3"]),
        ActionResult::Failed,
        12_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Graceful)]);
    assert_eq!(d.reason, Reason::LeaseRunningOut { remaining_ms: 10_000 });
}

#[test]
fn failsafe_check_unknown_does_not_extend_the_lease() {
    let mut n = failsafe_leader(VALIDITY_MS);
    n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    let o = Obs::unreachable(15_000, 11_000, primary_pg(1000)).outcome(
        check_failsafe(&["pg2", "pg3"]),
        ActionResult::Unknown,
        12_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![check_failsafe(&["pg2", "pg3"])]);
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    assert_eq!(d.wake_after_ms, VALIDITY_MS - 10_000 - 15_000);
}

#[test]
fn failsafe_leader_without_confirmation_demotes_immediately_at_deadline() {
    let mut n = failsafe_leader(VALIDITY_MS);
    n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    let o = Obs::unreachable(VALIDITY_MS, 11_000, primary_pg(1000)).outcome(
        check_failsafe(&["pg2", "pg3"]),
        ActionResult::Unknown,
        12_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
    assert_eq!(d.reason, Reason::LeaseExpired { overdue_ms: 0 });
}

#[test]
fn failsafe_with_zero_other_members_asks_nobody_and_holds() {
    // A single-member cluster: as in Patroni, there is nobody to split with.
    let mut n = configured(leader("pg1", VALIDITY_MS), |c| c.failsafe_mode = true);
    let mut v = with_config(cluster(), |c| c.failsafe_mode = true);
    v.members.retain(|m, _| m == "pg1");
    n.step(&Obs::new(1_000, v, primary_pg(1000)).0);
    assert!(n.state().known_members.is_empty());
    let d = n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![check_failsafe(&[])]);
    assert_eq!(d.reason, Reason::FailsafeHolding { members: 0 });
    let o = Obs::unreachable(20_000, 11_000, primary_pg(1000)).outcome(
        check_failsafe(&[]),
        ActionResult::Done,
        12_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![check_failsafe(&[])]);
    assert_eq!(n.state().lease_deadline_ms, Some(12_000 + VALIDITY_MS));
}

#[test]
fn failsafe_done_while_not_primary_neither_starts_nor_promotes() {
    let mut n = failsafe_leader(VALIDITY_MS);
    n.step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    // Postgres crashed while the check was out.
    let o = Obs::unreachable(15_000, 11_000, stopped_pg(1000)).outcome(
        check_failsafe(&["pg2", "pg3"]),
        ActionResult::Done,
        12_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::DcsUnreachableReplica { unreachable_ms: 4_000 });
}

#[test]
fn failsafe_done_without_a_lease_grants_none() {
    let mut n = configured(replica("pg2"), |c| c.failsafe_mode = true);
    let o = Obs::unreachable(15_000, 11_000, replica_pg(1000)).outcome(
        check_failsafe(&["pg1", "pg3"]),
        ActionResult::Done,
        12_000,
    );
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(n.state().lease_deadline_ms, None);
    assert_eq!(n.state().role, Role::Replica);
}

#[test]
fn failsafe_mode_off_leader_asks_nobody() {
    let d = leader("pg1", VALIDITY_MS).step(&Obs::unreachable(12_000, 11_000, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![]);
}

#[test]
fn replica_pinged_by_failsafe_leader_does_not_race_for_ttl() {
    let mut n = replica("pg2");
    let o =
        Obs::new(1_000, cluster(), replica_pg(1000)).request(Request::FailsafePing { leader: "pg1".into() });
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    // TTL plus the drift margin in the leader's favour.
    let until = 1_000 + TTL_MS + 300;
    assert_eq!(n.state().failsafe_promise.as_ref().map(|p| p.until_ms), Some(until));
    // The leader key expires; pg2 would be the healthiest, but promised.
    let d = n.step(&Obs::new(25_000, no_leader(cluster()), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::FailsafePromise { leader: "pg1".into() });
    assert_eq!(d.wake_after_ms, until - 25_000);
    let d = n.step(&Obs::new(until, no_leader(cluster()), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn failsafe_ping_while_dcs_unreachable_is_remembered() {
    let mut n = replica("pg2");
    let o = Obs::unreachable(5_000, 1_000, replica_pg(1000))
        .request(Request::FailsafePing { leader: "pg1".into() });
    let d = n.step(&o.0);
    assert_eq!(d.actions, vec![]);
    let d = n.step(&Obs::new(6_000, no_leader(cluster()), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::FailsafePromise { leader: "pg1".into() });
}

#[test]
fn failsafe_mode_member_missing_from_failsafe_key_does_not_race() {
    // The leader pg1 (in failsafe mode, cut off from etcd) last saw pg1 and
    // pg3. pg2 was not among them: it cannot have confirmed pg1, so it must
    // not take the lock (Patroni's `is_healthiest_node`).
    let mut v = with_config(no_leader(cluster()), |c| c.failsafe_mode = true);
    v.failsafe = Some(set(&["pg1", "pg3"]));
    let d = replica("pg2").step(&Obs::new(1_000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::NotHealthiest { why: Unfit::NotInFailsafeSet });
}

#[test]
fn failsafe_mode_with_an_empty_failsafe_key_restricts_nobody() {
    // An empty `failsafe` key lists nobody; Patroni then lets everyone race
    // (`if failsafe_members and name not in failsafe_members`), and so does
    // keel: pg2, the healthiest, takes the lock.
    let mut v = with_config(no_leader(cluster()), |c| c.failsafe_mode = true);
    v.failsafe = Some(set(&[]));
    let d = replica("pg2").step(&Obs::new(1_000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn stale_view_is_treated_as_unreachable_by_a_replica() {
    let mut n = replica("pg2");
    let mut v = no_leader(cluster());
    v.revision = 90;
    let d = n.step(&Obs::new(1_000, v, replica_pg(1000)).0);
    // No race, and nothing published from a view older than one seen.
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::StaleView { revision: 90, seen_revision: 100 });
    assert_eq!(n.state().seen_revision, 100);
}

#[test]
fn stale_view_naming_another_leader_does_not_fence_the_leader() {
    let mut n = leader("pg1", VALIDITY_MS);
    let mut v = with_leader(cluster(), "pg2");
    v.revision = 90;
    let d = n.step(&Obs::new(5_000, v, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![]);
    assert_eq!(d.reason, Reason::StaleView { revision: 90, seen_revision: 100 });
    assert_eq!(n.state().lease_deadline_ms, Some(VALIDITY_MS));
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn stale_view_does_not_stop_fencing_at_the_deadline() {
    let mut v = cluster();
    v.revision = 90;
    let d = leader("pg1", VALIDITY_MS).step(&Obs::new(VALIDITY_MS, v, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![demote(DemoteMode::Immediate)]);
}

#[test]
fn stale_view_lets_a_failsafe_leader_check_its_members() {
    let mut v = cluster();
    v.revision = 90;
    let d = failsafe_leader(VALIDITY_MS).step(&Obs::new(12_000, v, primary_pg(1000)).0);
    assert_eq!(d.actions, vec![check_failsafe(&["pg2", "pg3"])]);
    assert!(matches!(d.reason, Reason::StaleView { .. }));
}

#[test]
fn view_at_the_seen_revision_is_not_stale() {
    let d = replica("pg2").step(&Obs::new(1_000, no_leader(cluster()), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}
