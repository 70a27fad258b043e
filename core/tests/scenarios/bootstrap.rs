//! Behaviour 1: the bootstrap race.

use crate::harness::*;
use keel_core::*;

fn empty_cluster() -> ClusterView {
    ClusterView { revision: 100, ..ClusterView::default() }
}

#[test]
fn empty_node_in_empty_cluster_races_for_initialize_key() {
    let d = fresh("pg1").step(&Obs::new(0, empty_cluster(), PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![Action::TakeInitializeKey]);
    assert_eq!(d.wake_after_ms, 0);
}

/// pg1's step right after it took the initialize key.
fn winner_of_initialize_key() -> (Node, Decision) {
    let mut n = fresh("pg1");
    n.step(&Obs::new(0, empty_cluster(), PgFacts::empty()).0);
    let mut v = empty_cluster();
    v.initialize = Some(String::new());
    let o = Obs::new(10, v, PgFacts::empty()).outcome(Action::TakeInitializeKey, ActionResult::Done, 1);
    let d = n.step(&o.0);
    (n, d)
}

#[test]
fn winner_of_initialize_key_runs_initdb() {
    let (n, d) = winner_of_initialize_key();
    assert_eq!(acts(&d), vec![Action::Bootstrap]);
    assert_eq!(n.state().role, Role::Bootstrapping);
}

#[test]
fn winner_of_initialize_key_shows_initializing_in_its_member_key_before_initdb_runs() {
    let (_, d) = winner_of_initialize_key();
    // initdb can outlast a TTL; the others must see the bid meanwhile, or
    // they clear the initialize key and run initdb too.
    match d.actions.as_slice() {
        [Action::PublishMember(status), Action::Bootstrap] => {
            assert_eq!(status.state, MemberState::InitializingNewCluster)
        }
        other => panic!("expected the member key, then initdb: {other:?}"),
    }
}

#[test]
fn loser_of_initialize_key_waits_without_action() {
    let mut n = fresh("pg2");
    n.step(&Obs::new(0, empty_cluster(), PgFacts::empty()).0);
    let mut v = empty_cluster();
    v.initialize = Some(String::new());
    let o = Obs::new(10, v, PgFacts::empty()).outcome(Action::TakeInitializeKey, ActionResult::Failed, 1);
    let d = n.step(&o.0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::LostBootstrapRace);
    assert_eq!(n.state().role, Role::Uninitialized);
}

#[test]
fn after_initdb_the_winner_takes_the_lease_before_starting_postgres() {
    let mut n = fresh("pg1");
    let mut v = empty_cluster();
    n.step(&Obs::new(0, v.clone(), PgFacts::empty()).0);
    v.initialize = Some(String::new());
    n.step(
        &Obs::new(1, v.clone(), PgFacts::empty()).outcome(Action::TakeInitializeKey, ActionResult::Done, 0).0,
    );
    let d = n.step(&Obs::new(2, v, stopped_pg(100)).outcome(Action::Bootstrap, ActionResult::Done, 1).0);
    assert_eq!(acts(&d), vec![Action::AcquireLease]);
}

#[test]
fn bootstrap_winner_with_lease_starts_postgres_as_primary() {
    let mut n = fresh("pg1");
    let mut v = empty_cluster();
    n.step(&Obs::new(0, v.clone(), PgFacts::empty()).0);
    v.initialize = Some(String::new());
    n.step(
        &Obs::new(1, v.clone(), PgFacts::empty()).outcome(Action::TakeInitializeKey, ActionResult::Done, 0).0,
    );
    n.step(&Obs::new(2, v.clone(), stopped_pg(100)).outcome(Action::Bootstrap, ActionResult::Done, 1).0);
    let v = with_leader(v, "pg1");
    let d = n.step(&Obs::new(3, v, stopped_pg(100)).outcome(Action::AcquireLease, ActionResult::Done, 2).0);
    assert_eq!(acts(&d), vec![renew(100), Action::StartPostgres { role: StartAs::Primary }]);
    assert_eq!(n.state().role, Role::Leader);
}

#[test]
fn new_primary_records_system_id_in_initialize_key() {
    let mut v = with_leader(empty_cluster(), "pg1");
    v.initialize = Some(String::new());
    let d = leader("pg1", 20_000).step(&Obs::new(1000, v, primary_pg(100)).0);
    assert_eq!(acts(&d), vec![renew(100), Action::WriteInitializeKey { system_id: SYSID }]);
}

#[test]
fn failed_initdb_releases_initialize_key() {
    let mut n = fresh("pg1");
    let mut v = empty_cluster();
    n.step(&Obs::new(0, v.clone(), PgFacts::empty()).0);
    v.initialize = Some(String::new());
    n.step(
        &Obs::new(1, v.clone(), PgFacts::empty()).outcome(Action::TakeInitializeKey, ActionResult::Done, 0).0,
    );
    let d = n.step(&Obs::new(2, v, PgFacts::empty()).outcome(Action::Bootstrap, ActionResult::Failed, 1).0);
    assert_eq!(acts(&d), vec![Action::CancelInitialize { revision: 0 }]);
    assert_eq!(n.state().role, Role::Uninitialized);
}

#[test]
fn empty_node_clones_from_leader_once_there_is_one() {
    let mut v = cluster();
    v.members.remove("pg3");
    let d = fresh("pg3").step(&Obs::new(0, v, PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![Action::CloneFrom { source: "pg1".into() }]);
}

#[test]
fn empty_node_prefers_a_running_clonefrom_member() {
    let mut v = cluster();
    v.members.get_mut("pg2").unwrap().tags.clonefrom = true;
    let d = fresh("pg3").step(&Obs::new(0, v, PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![Action::CloneFrom { source: "pg2".into() }]);
}

#[test]
fn empty_node_waits_while_initialize_is_set_but_no_leader_yet() {
    let mut v = empty_cluster();
    v.initialize = Some(String::new());
    let d = fresh("pg2").step(&Obs::new(0, v, PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![]);
}

#[test]
fn data_directory_of_another_cluster_refuses_to_run() {
    let mut p = replica_pg(100);
    p.data = DataDir::Initialised(ControlData { system_id: 42, ..control(ControlState::ShutDown) });
    let d = replica("pg2").step(&Obs::new(0, cluster(), p).0);
    assert_eq!(acts(&d), vec![]);
    assert!(matches!(d.reason, Reason::SystemIdMismatch { local: 42, .. }));
}

#[test]
fn failed_clone_is_retried_after_a_loop() {
    let mut n = fresh("pg3");
    let mut v = cluster();
    v.members.remove("pg3");
    n.step(&Obs::new(0, v.clone(), PgFacts::empty()).0);
    let src = Action::CloneFrom { source: "pg1".into() };
    let d = n.step(&Obs::new(5, v.clone(), PgFacts::empty()).outcome(src.clone(), ActionResult::Failed, 1).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.wake_after_ms, LOOP_MS);
    let d = n.step(&Obs::new(LOOP_MS, v, PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![src]);
}

#[test]
fn finished_clone_starts_as_replica_of_leader() {
    let mut n = fresh("pg3");
    let v = cluster();
    n.step(&Obs::new(0, v.clone(), PgFacts::empty()).0);
    let src = Action::CloneFrom { source: "pg1".into() };
    let d = n.step(&Obs::new(5, v, stopped_pg(900)).outcome(src, ActionResult::Done, 1).0);
    assert_eq!(
        acts(&d),
        vec![Action::StartPostgres { role: StartAs::Replica { upstream: Some("pg1".into()) } }]
    );
    assert_eq!(n.state().role, Role::Replica);
}

// Defect 6 of issue 12: a wrong scope or a wiped etcd must not make a
// second primary out of an existing data directory.

fn empty_scope() -> ClusterView {
    ClusterView { revision: 100, ..ClusterView::default() }
}

#[test]
fn agent_over_existing_data_against_an_empty_scope_refuses_to_race() {
    for p in [replica_pg(1000), stopped_pg(1000)] {
        let d = fresh("pg2").step(&Obs::new(1000, empty_scope(), p).0);
        assert!(acts(&d).iter().all(|a| matches!(a, Action::PublishMember(_))), "{:?}", acts(&d));
        assert_eq!(d.reason, Reason::NoClusterForExistingData { system_id: SYSID });
    }
}

#[test]
fn primary_over_existing_data_against_an_empty_scope_stops_writing_and_refuses_to_race() {
    let d = fresh("pg1").step(&Obs::new(1000, empty_scope(), primary_pg(1000)).0);
    assert_eq!(acts(&d)[0], Action::Demote { mode: DemoteMode::Immediate });
}

#[test]
fn operator_reseeding_the_scope_with_the_data_system_id_lets_the_members_race() {
    let v = ClusterView { initialize: Some(SYSID.to_string()), ..empty_scope() };
    let d = fresh("pg2").step(&Obs::new(1000, v, replica_pg(1000)).0);
    assert!(acts(&d).contains(&Action::AcquireLease), "{:?}", acts(&d));
}

/// Patroni: "released leader key voluntarily as data dir empty".
#[test]
fn leader_whose_data_directory_became_empty_releases_the_lock_at_once() {
    let d = leader("pg1", 40_000).step(&Obs::new(1000, cluster(), PgFacts::empty()).0);
    assert_eq!(acts(&d), vec![release(1000)]);
    assert_eq!(d.reason, Reason::DataDirectoryEmptyReleasing);
}

/// Patroni's `bootstrap`: a member that may never be promoted leaves the
/// initialize key to the others.
#[test]
fn nofailover_member_does_not_race_for_the_initialize_key() {
    let d =
        fresh("pg1").step(&Obs::new(1000, empty_scope(), PgFacts::empty()).tags(|t| t.nofailover = true).0);
    assert_eq!(acts(&d), vec![]);
    assert_eq!(d.reason, Reason::WaitingForLeaderToClone);
}
