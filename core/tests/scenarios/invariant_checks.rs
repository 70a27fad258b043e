//! The invariants bite: each rule's check, fed a deliberately bad decision
//! in a situation where keel-core decides well, panics naming the rule.
//! The situation is stepped for real first (its own decision passes the
//! checks), then the decision is doctored and checked again.

use crate::harness::*;
use keel_core::*;

/// Steps `node` on `o` for real, then checks `actions` (and `reason`, when
/// given) in place of what it decided, against the same next state.
fn doctored(node: &Node, o: &Obs, actions: Vec<Action>, reason: Option<Reason>) {
    let prev = node.state().clone();
    let mut stepped = node.clone();
    // A panic here is keel-core's own decision breaking a rule: the test
    // then fails, as its message does not name the rule expected.
    let real = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stepped.step(&o.0)))
        .unwrap_or_else(|_| panic!("keel-core's own decision broke a rule here"));
    let decision =
        Decision { actions, reason: reason.unwrap_or(real.reason), wake_after_ms: real.wake_after_ms };
    keel_core::invariants::check(&prev, &o.0, stepped.state(), &decision);
}

fn write_key(members: &[&str], quorum: Option<u32>) -> Action {
    Action::WriteSyncKey { members: set(members), quorum, expected_revision: Some(95) }
}

/// pg1 leads with a lease, its Postgres a primary at 1000 waiting for
/// `waits_for`, with these standbys streaming.
fn sync_leader(view: ClusterView, waits_for: &[&str], standbys: Vec<Standby>) -> (Node, Obs) {
    let mut p = primary_pg(1000);
    p.sync_standby_names = names(waits_for, waits_for.len() as u32);
    p.replication = standbys;
    (leader("pg1", 20_000), Obs::new(5_000, view, p))
}

#[test]
#[should_panic(expected = "rule 3")]
fn rule_3_a_standby_named_before_postgres_reports_it_synchronous() {
    let view = with_sync(sync_on(cluster()), "pg1", &[]);
    let (n, o) = sync_leader(view, &["pg2"], vec![standby("pg3", 1000, StandbySyncState::Async)]);
    doctored(&n, &o, vec![renew(1000), write_key(&["pg3"], None)], None);
}

#[test]
#[should_panic(expected = "rule 3")]
fn rule_3_a_standby_named_before_it_caught_up() {
    let view = with_sync(sync_on(cluster()), "pg1", &[]);
    // Listed when the primary stood at 1000; it flushed only 900.
    let (n, o) = sync_leader(view, &["pg2"], vec![standby("pg2", 900, StandbySyncState::Sync)]);
    doctored(&n, &o, vec![renew(1000), write_key(&["pg2"], None)], None);
}

#[test]
#[should_panic(expected = "rule 3")]
fn rule_3_postgres_stops_waiting_before_the_key_lets_go() {
    let view = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let (n, o) = sync_leader(view, &["pg2"], vec![standby("pg2", 1000, StandbySyncState::Sync)]);
    doctored(&n, &o, vec![renew(1000), Action::SetSyncStandbyNames(names(&["pg3"], 1))], None);
}

#[test]
#[should_panic(expected = "rule 3")]
fn rule_3_strict_key_emptied_with_nobody_to_replace_its_standby() {
    let view = with_sync(strict(cluster()), "pg1", &["pg2"]);
    let (n, o) = sync_leader(view, &["pg2"], Vec::new());
    doctored(&n, &o, vec![renew(1000), write_key(&[], None)], None);
}

#[test]
#[should_panic(expected = "rule 3")]
fn rule_3_quorum_key_promising_more_than_postgres_waits_for() {
    let view = with_sync(with_config(cluster(), |c| c.synchronous_mode = SyncMode::Quorum), "pg1", &["pg2"]);
    let (n, mut o) = sync_leader(view, &["pg2"], vec![standby("pg2", 1000, StandbySyncState::Quorum)]);
    o.0.pg.sync_standby_names.quorum = true;
    doctored(&n, &o, vec![renew(1000), write_key(&["pg3"], Some(1))], None);
}

#[test]
#[should_panic(expected = "rule 3")]
fn rule_3_promotion_under_a_sync_key_not_claimed() {
    // pg2 holds the lock; the key still names pg1 as leader with pg2.
    let view = with_sync(sync_on(with_leader(cluster(), "pg2")), "pg1", &["pg2"]);
    let o = Obs::new(5_000, view, replica_pg(1000));
    doctored(&leader("pg2", 20_000), &o, vec![Action::Promote], None);
}

#[test]
#[should_panic(expected = "rule 4")]
fn rule_4_following_a_leader_whose_history_left_ours() {
    // The cluster left timeline 1 at 500; pg2 wrote up to 1000 on it.
    let mut view = cluster();
    view.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 500, new_leader: Some("pg1".into()) }];
    view.members.get_mut("pg1").expect("a member").timeline = 2;
    let o = Obs::new(5_000, view, replica_pg(1000));
    doctored(&replica("pg2"), &o, vec![Action::Follow { upstream: Some("pg1".into()) }], None);
}

#[test]
#[should_panic(expected = "rule 6")]
fn rule_6_demoting_in_the_step_that_confirmed_the_renewal() {
    let o = Obs::new(10_500, cluster(), primary_pg(1000)).outcome(renew(1000), ActionResult::Done, 10_000);
    doctored(&leader("pg1", 20_000), &o, vec![Action::Demote { mode: DemoteMode::Graceful }], None);
}

#[test]
#[should_panic(expected = "rule 8")]
fn rule_8_leader_settles_while_its_sync_standby_is_silent() {
    let view = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let mut silent = standby("pg2", 1000, StandbySyncState::Sync);
    silent.reply_age_ms = 60_000;
    let standbys = vec![silent, standby("pg3", 1000, StandbySyncState::Async)];
    let (n, o) = sync_leader(view, &["pg2"], standbys);
    let healthy = Reason::LeaderHealthy { name: "pg1".into() };
    doctored(&n, &o, vec![renew(1000)], Some(healthy));
}

#[test]
#[should_panic(expected = "rule 9")]
fn rule_9_lock_holder_keeps_the_key_as_a_replica() {
    let o = Obs::new(5_000, cluster(), replica_pg(1000));
    doctored(&leader("pg1", 20_000), &o, vec![renew(1000)], None);
}

#[test]
#[should_panic(expected = "rule 10")]
fn rule_10_unfit_node_takes_the_lock() {
    let o = Obs::new(5_000, no_leader(cluster()), replica_pg(1000)).tags(|t| t.nofailover = true);
    doctored(&replica("pg2"), &o, vec![Action::AcquireLease], None);
}

#[test]
#[should_panic(expected = "rule 10")]
fn rule_10_leader_hands_over_to_an_unfit_candidate() {
    let mut view = with_failover(cluster(), Some("pg1"), Some("pg3"));
    view.members.get_mut("pg3").expect("a member").tags.nofailover = true;
    let o = Obs::new(5_000, view, primary_pg(1000));
    let hand_over = vec![Action::Demote { mode: DemoteMode::Graceful }, release(1000)];
    let reason = Reason::Switchover { candidate: Some("pg3".into()) };
    doctored(&leader("pg1", 20_000), &o, hand_over, Some(reason));
}

#[test]
#[should_panic(expected = "rule 10")]
fn rule_10_replica_waits_for_an_unfit_candidate() {
    let mut view = with_failover(no_leader(cluster()), None, Some("pg3"));
    view.members.get_mut("pg3").expect("a member").tags.nofailover = true;
    let o = Obs::new(5_000, view, replica_pg(1000));
    let reason = Reason::WaitingForCandidate { candidate: "pg3".into() };
    doctored(&replica("pg2"), &o, Vec::new(), Some(reason));
}

#[test]
fn the_decisions_doctored_above_pass_as_keel_core_makes_them() {
    // The controls: each situation's own decision keeps every rule.
    let view = with_sync(sync_on(cluster()), "pg1", &["pg2"]);
    let mut silent = standby("pg2", 1000, StandbySyncState::Sync);
    silent.reply_age_ms = 60_000;
    let (n, o) = sync_leader(view, &["pg2"], vec![silent, standby("pg3", 1000, StandbySyncState::Async)]);
    let d = n.clone().step(&o.0);
    assert_eq!(acts(&d), vec![renew(1000), write_key(&[], None)]);
}

#[test]
fn strict_lock_holder_claims_the_sync_key_naming_nobody_before_it_promotes() {
    // A former leader retakes the lock as a replica whose server still
    // lists the standby the key names: the claim drops it from the key
    // before promotion, which strict mode allows (found by keel-sim, seed
    // 493, when the invariant judged it as a primary's sync step).
    let view = with_sync(strict(cluster()), "pg1", &["pg2"]);
    let mut p = replica_pg(1000);
    p.sync_standby_names = names(&["pg2"], 1);
    let d = leader("pg1", 20_000).step(&Obs::new(5_000, view, p).0);
    assert_eq!(acts(&d), vec![write_key(&[], None)]);
    assert_eq!(d.reason, Reason::ClaimingSyncKey);
}
