//! Regressions for bugs the cluster simulator (`keel-sim`) found, one test
//! per bug, named by the situation; the seed that found it is in the doc.

use std::collections::BTreeSet;

use crate::harness::*;
use keel_core::*;

fn fast() -> DynamicConfig {
    DynamicConfig { ttl_ms: 10_000, loop_wait_ms: 2_000, retry_timeout_ms: 3_000, ..DynamicConfig::default() }
}

/// Seed 101: the bootstrap leader counted its first lease with Patroni's
/// default TTL (30 s) because the `config` key was not written yet, while
/// etcd had granted 10 s; another node promoted 20 s before it demoted.
#[test]
fn bootstrap_leader_counts_its_lease_with_the_local_bootstrap_ttl() {
    let mut n = Node::with_config("pg1", fast());
    let mut v = with_leader(ClusterView { revision: 100, ..ClusterView::default() }, "pg1");
    v.initialize = Some(String::new());
    let o = Obs::new(5_000, v, stopped_pg(0)).outcome(Action::AcquireLease, ActionResult::Done, 4_000);
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, Some(4_000 + 9_900));
}

/// The same bug from the other side: the lease never counts longer than
/// the TTL etcd reports it was granted with.
#[test]
fn lease_counts_no_longer_than_the_ttl_etcd_granted() {
    let mut n = replica("pg2");
    let v = with_leader(no_leader(cluster()), "pg2");
    let mut o =
        Obs::new(40_000, v, replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 39_000);
    o.0.outcomes[0].lease_ttl_ms = Some(5_000);
    n.step(&o.0);
    assert_eq!(n.state().lease_deadline_ms, Some(39_000 + 4_950));
}

/// Seed 16: the winner of the initialize key never heard its answer (the
/// reply was lost after etcd applied it); everyone waited for a bootstrap
/// that nobody ran.
#[test]
fn initialize_key_taken_by_nobody_bootstrapping_is_cleared_after_a_ttl() {
    let mut v = ClusterView {
        revision: 100,
        initialize: Some(String::new()),
        initialize_revision: 90,
        ..ClusterView::default()
    };
    v.members
        .insert("pg1".into(), Member { state: MemberState::Stopped, ..member(MemberRole::Uninitialized, 0) });
    let mut n = fresh("pg2");
    let d = n.step(&Obs::new(1_000, v.clone(), PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![]);
    let d = n.step(&Obs::new(1_000 + TTL_MS - 1, v.clone(), PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![]);
    let d = n.step(&Obs::new(1_000 + TTL_MS, v, PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![Action::CancelInitialize { revision: 90 }]);
    assert!(matches!(d.reason, Reason::OrphanedInitialize { .. }));
}

/// Seed 1836 (the madsim simulator): pg1 and pg3 both found the same stale
/// `initialize` key orphaned. pg1 cleared it and took it again at once;
/// pg3, still counting from the stale key, cleared pg1's fresh key (the
/// clear compared only the empty value) and took it too: both ran initdb,
/// and the loser kept a foreign system identifier forever. A key taken
/// again is a fresh bid: its orphan count starts over, and a clear names
/// the revision it saw.
#[test]
fn initialize_key_taken_again_by_a_racer_is_not_cleared_as_the_stale_one() {
    let stale = ClusterView {
        revision: 100,
        initialize: Some(String::new()),
        initialize_revision: 90,
        ..ClusterView::default()
    };
    let mut n = fresh("pg3");
    n.step(&Obs::new(1_000, stale.clone(), PgFacts::empty()).0);
    // Another racer cleared the stale key and took it again, its member key
    // not yet saying it initializes.
    let fresh_bid = ClusterView { revision: 120, initialize_revision: 118, ..stale.clone() };
    let d = n.step(&Obs::new(1_000 + TTL_MS, fresh_bid.clone(), PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::LostBootstrapRace);
    // Orphaned for a whole TTL of its own, it is cleared: at its revision.
    let d = n.step(&Obs::new(1_000 + 2 * TTL_MS, fresh_bid, PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![Action::CancelInitialize { revision: 118 }]);
}

/// The same race seen by the slower racer with the stale key still in its
/// view: its clear names the stale revision, which no longer matches.
#[test]
fn clearing_an_orphaned_initialize_key_names_the_revision_seen() {
    let stale = ClusterView {
        revision: 100,
        initialize: Some(String::new()),
        initialize_revision: 90,
        ..ClusterView::default()
    };
    let mut n = fresh("pg3");
    n.step(&Obs::new(1_000, stale.clone(), PgFacts::empty()).0);
    let d = n.step(&Obs::new(1_000 + TTL_MS, stale, PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![Action::CancelInitialize { revision: 90 }]);
}

#[test]
fn initialize_key_is_left_alone_while_a_member_is_initializing() {
    let mut v = ClusterView { revision: 100, initialize: Some(String::new()), ..ClusterView::default() };
    let bootstrapping =
        Member { state: MemberState::InitializingNewCluster, ..member(MemberRole::Uninitialized, 0) };
    v.members.insert("pg1".into(), bootstrapping);
    let mut n = fresh("pg2");
    n.step(&Obs::new(1_000, v.clone(), PgFacts::empty()).0);
    let d = n.step(&Obs::new(1_000 + 5 * TTL_MS, v, PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::LostBootstrapRace);
}

/// Seed 155: a leader cut off from etcd held on in failsafe mode with the
/// confirmation of the one member it knew, while a member whose key had
/// expired (so the leader never asked it) reached etcd and promoted.
#[test]
fn failsafe_leader_lists_the_members_it_knows_in_the_failsafe_key() {
    let v = with_config(cluster(), |c| c.failsafe_mode = true);
    let d = leader("pg1", 25_000).step(&Obs::new(1_000, v, primary_pg(1000)).0);
    let members: BTreeSet<String> = set(&["pg1", "pg2", "pg3"]);
    assert_eq!(acts(&d), vec![renew(1000), Action::WriteFailsafeKey { members }]);
}

#[test]
fn member_missing_from_the_failsafe_key_is_no_rival_in_the_race() {
    // Seed 92: pg1, not listed, looked best; pg2 deferred to it and the
    // cluster stayed without a leader.
    let mut v = with_config(no_leader(cluster()), |c| c.failsafe_mode = true);
    v.members.insert("pg1".into(), member(MemberRole::Replica, 2000));
    v.failsafe = Some(set(&["pg2", "pg3"]));
    let d = replica("pg2").step(&Obs::new(40_000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

/// Seed 1485: after a switchover to a lagging candidate, both the old and
/// the new leader had promoted into timeline 8 at the same LSN. The new
/// leader saw the cluster timeline already at 8 and never rewrote the
/// history, so the replicas on the old leader's timeline 8 looked healthy
/// and streamed nothing for good.
#[test]
fn leader_rewrites_a_history_that_names_another_promotion_at_its_timeline() {
    let mut v = cluster();
    v.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg2".into()) }];
    let mut p = primary_pg(1000);
    p.timeline = 2;
    p.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg1".into()) }];
    p.timeline_origin = Some("pg1".into());
    let d = leader("pg1", 25_000).step(&Obs::new(1_000, v, p).0);
    let mine = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg1".into()) }];
    assert_eq!(acts(&d), vec![renew(1000), Action::WriteHistory { switches: mine }]);
}

#[test]
fn replica_on_the_same_timeline_number_from_another_promotion_rewinds() {
    let mut v = with_config(with_leader(cluster(), "pg1"), |c| c.use_pg_rewind = true);
    v.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg1".into()) }];
    v.members.get_mut("pg1").unwrap().timeline = 2;
    let mut p = stopped_pg(950);
    p.timeline = 2;
    p.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg2".into()) }];
    p.timeline_origin = Some("pg2".into());
    let d = replica("pg3").step(&Obs::new(1_000, v, p).0);
    assert_eq!(acts(&d), vec![Action::Rewind { source: "pg1".into() }]);
}

/// Seed 802: a replica that had already streamed onto the new leader's
/// timeline, before the leader published its member key and history, was
/// judged "ahead of the leader" and rewound and reinitialized in a loop.
#[test]
fn replica_already_on_the_new_leaders_timeline_is_not_diverged() {
    let mut v = with_leader(cluster(), "pg2");
    v.members.get_mut("pg2").unwrap().timeline = 1;
    let mut p = replica_pg(1000);
    p.upstream = Some("pg2".into());
    p.timeline = 2;
    p.history = vec![TimelineSwitch { timeline: 1, fork_lsn: 900, new_leader: Some("pg2".into()) }];
    p.timeline_origin = Some("pg2".into());
    let d = replica("pg3").step(&Obs::new(1_000, v, p).0);
    assert_eq!(acts(&d), vec![]);
    assert!(matches!(d.reason, Reason::Following { .. }));
}

/// Seed 2814 (the madsim simulator, synchronous mode): the bootstrap
/// leader lost its lease before it claimed the sync key; with no key,
/// nobody would race, itself included, and the cluster stayed leaderless.
/// No key naming a leader means no commit ever waited for a standby: the
/// usual rules pick, as in Patroni.
#[test]
fn sync_mode_cluster_whose_leader_never_claimed_the_sync_key_elects_by_the_usual_rules() {
    let v = with_config(no_leader(cluster()), |c| c.synchronous_mode = SyncMode::On);
    assert!(v.sync.is_none());
    let d = replica("pg2").step(&Obs::new(1000, v, replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

/// Seed 78 (madsim simulator, strict mode): a leader that had demoted took
/// the lock again while the sync key still named it with pg3 as standby;
/// it promoted with every running member in `synchronous_standby_names`,
/// so pg2 alone acknowledged commits that pg3, the one the key made
/// eligible, lacked. It must first claim the key naming nobody.
#[test]
fn former_leader_retaking_the_lock_claims_the_sync_key_naming_nobody_before_promoting() {
    let mut n = replica("pg1");
    let mut v = with_config(with_sync(no_leader(cluster()), "pg1", &["pg3"]), |c| {
        c.synchronous_mode = SyncMode::On;
        c.synchronous_mode_strict = true;
    });
    let d = n.step(&Obs::new(1000, v.clone(), replica_pg(1000)).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
    v = with_leader(v, "pg1");
    let o = Obs::new(1100, v, replica_pg(1000)).outcome(Action::AcquireLease, ActionResult::Done, 1000);
    let d = n.step(&o.0);
    let claim = Action::WriteSyncKey { members: set(&[]), quorum: None, expected_revision: Some(95) };
    assert_eq!(acts(&d), vec![claim]);
    assert_eq!(d.reason, Reason::ClaimingSyncKey);
}
