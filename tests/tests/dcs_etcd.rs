//! keel's DCS layer against a real etcd on loopback: Patroni's key layout,
//! the leader lease and its compare-and-swap, garbage in keys, and etcd
//! going away.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use keel_core::{MemberRole, MemberState, MemberStatus, Tags};
use keel_runtime::dcs::etcd::{EtcdKv, EtcdOptions, EtcdTls};
use keel_runtime::dcs::patroni::Acquired;
use keel_runtime::dcs::{Compare, Dcs, Keys, Kv, KvError, Op};
use keel_tests::etcd::{wait_for_scope, EtcdServer};

async fn kv(server: &EtcdServer) -> EtcdKv {
    let opts = EtcdOptions {
        endpoints: vec![server.endpoint.clone()],
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    EtcdKv::connect(&opts).await.expect("connects to the test etcd")
}

async fn node(server: &EtcdServer, name: &str) -> Dcs<EtcdKv> {
    let keys = Keys::new("/service/", "pgcluster");
    Dcs::new(
        kv(server).await,
        keys,
        name,
        &format!("postgres://{name}:5432/postgres"),
        &format!("http://{name}:8008/patroni"),
    )
}

fn status(role: MemberRole, lsn: u64) -> MemberStatus {
    MemberStatus { role, state: MemberState::Running, timeline: 1, lsn, tags: Tags::new() }
}

#[tokio::test]
async fn only_one_of_two_nodes_acquires_the_leader_key() {
    let etcd = EtcdServer::start();
    let (mut a, mut b) = (node(&etcd, "pg1").await, node(&etcd, "pg2").await);
    assert_eq!(a.acquire(5_000).await.unwrap(), Acquired::Yes { ttl_ms: 5_000 });
    assert_eq!(b.acquire(5_000).await.unwrap(), Acquired::Taken);
    let snap = b.read().await.unwrap();
    assert_eq!(snap.view.leader.as_ref().map(|l| l.name.as_str()), Some("pg1"));
}

#[tokio::test]
async fn renewal_keeps_the_key_and_its_absence_expires_it_after_the_ttl() {
    let etcd = EtcdServer::start();
    let mut a = node(&etcd, "pg1").await;
    let b = node(&etcd, "pg2").await;
    a.acquire(2_000).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(a.renew(100).await.unwrap(), Some(2_000));
    }
    assert!(b.read().await.unwrap().view.leader.is_some(), "renewed for 3 s on a 2 s lease");
    assert_eq!(b.read().await.unwrap().view.optime_lsn, Some(100));
    let stopped = Instant::now();
    let gone = loop {
        if b.read().await.unwrap().view.leader.is_none() {
            break stopped.elapsed();
        }
        assert!(stopped.elapsed() < Duration::from_secs(10), "the key outlived its lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // etcd counts the TTL from its own receipt of the last keep-alive.
    assert!(gone >= Duration::from_millis(1_500), "expired after only {gone:?}");
    assert_eq!(a.renew(100).await.unwrap(), None, "renewing a lost lock is a definite failure");
}

#[tokio::test]
async fn release_deletes_only_this_nodes_key() {
    let etcd = EtcdServer::start();
    let (mut a, mut b) = (node(&etcd, "pg1").await, node(&etcd, "pg2").await);
    a.acquire(10_000).await.unwrap();
    assert!(!b.release(0).await.unwrap(), "pg2 must not delete pg1's key");
    assert!(a.release(7).await.unwrap());
    let snap = b.read().await.unwrap();
    assert!(snap.view.leader.is_none());
    assert_eq!(snap.view.optime_lsn, Some(7));
    assert_eq!(b.acquire(10_000).await.unwrap(), Acquired::Yes { ttl_ms: 10_000 });
}

#[tokio::test]
async fn restarted_agent_adopts_the_key_that_still_names_it() {
    let etcd = EtcdServer::start();
    let mut before = node(&etcd, "pg1").await;
    before.acquire(10_000).await.unwrap();
    let mut after = node(&etcd, "pg1").await;
    assert_eq!(after.renew(5).await.unwrap(), Some(10_000));
    let mut other = node(&etcd, "pg2").await;
    assert_eq!(other.renew(5).await.unwrap(), None, "pg2 cannot adopt pg1's key");
}

/// keel-sim seed 1836 on real etcd: two members clear the same stale
/// `initialize` key; the first clears it and takes it again; the second's
/// clear names the revision it saw, so it leaves the fresh key alone.
#[tokio::test]
async fn clearing_initialize_deletes_only_the_revision_seen() {
    let etcd = EtcdServer::start();
    let a = node(&etcd, "pg1").await;
    let b = node(&etcd, "pg2").await;
    assert!(a.take_initialize().await.unwrap());
    let stale = b.read().await.unwrap().view;
    assert_eq!(stale.initialize.as_deref(), Some(""));
    assert!(stale.initialize_revision > 0);
    assert!(a.cancel_initialize(stale.initialize_revision).await.unwrap());
    assert!(a.read().await.unwrap().view.initialize.is_none());
    assert!(a.take_initialize().await.unwrap());
    assert!(!b.cancel_initialize(stale.initialize_revision).await.unwrap(), "a stale revision");
    let fresh = b.read().await.unwrap().view;
    assert_eq!(fresh.initialize.as_deref(), Some(""), "the winner's key stays");
    assert!(fresh.initialize_revision > stale.initialize_revision);
    // Nor does a clear delete a key that records a system identifier.
    assert!(a.write_initialize(7_000_000_001).await.unwrap());
    let done = b.read().await.unwrap().view;
    assert!(!b.cancel_initialize(done.initialize_revision).await.unwrap());
}

#[tokio::test]
async fn members_sync_history_and_initialize_read_back_as_written() {
    let etcd = EtcdServer::start();
    let mut a = node(&etcd, "pg1").await;
    let mut b = node(&etcd, "pg2").await;
    assert!(a.take_initialize().await.unwrap());
    assert!(!b.take_initialize().await.unwrap(), "initialize is create-only");
    assert!(a.write_initialize(7_000_000_001).await.unwrap());
    a.publish_member(&status(MemberRole::Primary, 50), 10_000).await.unwrap();
    b.publish_member(&status(MemberRole::Replica, 40), 10_000).await.unwrap();
    let members: BTreeSet<String> = ["pg2".to_owned()].into();
    assert!(a.write_sync(&BTreeSet::new(), None, None).await.unwrap());
    assert!(!a.write_sync(&members, None, None).await.unwrap(), "create-only once it exists");
    let rev = a.read().await.unwrap().view.sync.unwrap().revision;
    assert!(a.write_sync(&members, None, Some(rev)).await.unwrap());
    assert!(!a.write_sync(&BTreeSet::new(), None, Some(rev)).await.unwrap(), "stale revision");
    let switch = keel_core::TimelineSwitch { timeline: 1, fork_lsn: 45, new_leader: Some("pg1".into()) };
    assert!(a.write_history(std::slice::from_ref(&switch), &[], 1_767_225_600_000).await.unwrap());
    let snap = b.read().await.unwrap();
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    let v = &snap.view;
    assert_eq!(v.initialize.as_deref(), Some("7000000001"));
    assert_eq!(v.members["pg1"].role, MemberRole::Primary);
    assert_eq!(v.members["pg2"].lsn, 40);
    assert_eq!(v.members["pg1"].api_url, "http://pg1:8008/patroni");
    assert_eq!(v.sync.as_ref().unwrap().members, members);
    assert_eq!(v.history, vec![switch]);
    assert_eq!(snap.history[0].reason, "no recovery target specified");
}

#[tokio::test]
async fn garbage_in_keys_is_reported_and_treated_as_absent() {
    let etcd = EtcdServer::start();
    let raw = kv(&etcd).await;
    let keys = Keys::new("/service/", "pgcluster");
    let put = |key: String, value: &str| Op::Put { key, value: value.as_bytes().to_vec(), lease: 0 };
    let ops = vec![
        put(keys.member("pg9"), "{not json"),
        put(keys.sync(), "[1,2,3]"),
        put(keys.failover(), r#"{"leader": 5}"#),
        put(keys.history(), r#"{"no": "list"}"#),
        put(keys.config(), r#"{"ttl": "soon"}"#),
        put(keys.status(), "42"),
    ];
    assert!(raw.txn(vec![], ops, vec![]).await.unwrap());
    let reader = node(&etcd, "pg1").await;
    let snap = reader.read().await.unwrap();
    assert_eq!(snap.warnings.len(), 6, "{:#?}", snap.warnings);
    let v = &snap.view;
    assert!(v.members.is_empty() && v.sync.is_none() && v.failover.is_none());
    assert!(v.history.is_empty() && v.config.is_none() && v.optime_lsn.is_none());
}

#[tokio::test]
async fn etcd_down_is_unavailable_within_the_deadline_and_back_after_restart() {
    let mut etcd = EtcdServer::start();
    let mut a = node(&etcd, "pg1").await;
    a.acquire(10_000).await.unwrap();
    etcd.stop();
    let asked = Instant::now();
    match a.renew(1).await {
        Err(KvError::Unavailable(_)) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_secs(5), "took {:?}", asked.elapsed());
    etcd.restart();
    wait_for_leader(&a, &etcd).await;

    // A renewal keeps its keep-alive stream for the next one; etcd's
    // restart breaks it, and the next renewal opens a fresh one rather
    // than failing.
    assert!(matches!(a.renew(2).await, Ok(Some(_))), "renewed after the restart");
    etcd.stop();
    etcd.restart();
    wait_for_leader(&a, &etcd).await;
    match a.renew(3).await {
        Ok(Some(_)) => {}
        other => panic!("renewal after a broken keep-alive stream: {other:?}"),
    }
}

async fn wait_for_leader(a: &Dcs<EtcdKv>, etcd: &EtcdServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match a.read().await {
            Ok(snap) => {
                assert_eq!(snap.view.leader.map(|l| l.name), Some("pg1".into()));
                return;
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("etcd did not come back: {e}\n{}", etcd.log()),
        }
    }
}

#[tokio::test]
async fn keep_alive_streams_are_kept_for_two_leases_and_a_third_evicts_the_oldest() {
    let etcd = EtcdServer::start();
    let raw = kv(&etcd).await;
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(raw.grant(30).await.unwrap().0);
    }
    for round in 0..2 {
        for &lease in &leases {
            assert_eq!(raw.keep_alive(lease).await.unwrap(), 30, "round {round}, lease {lease}");
            assert!(raw.kept_streams() <= 2);
        }
    }
    assert_eq!(raw.kept_streams(), 2);
    raw.revoke(leases[2]).await.unwrap();
    assert_eq!(raw.kept_streams(), 1, "a revoked lease's stream goes with it");
    assert_eq!(raw.keep_alive(leases[2]).await.unwrap(), 0);
}

#[tokio::test]
async fn compare_on_a_missing_key_fails_as_etcd_says() {
    // The portable create-if-absent pitfall (madsim recipe, 5): a value
    // compare on a missing key is false, never true.
    let etcd = EtcdServer::start();
    let raw = kv(&etcd).await;
    let cmp = Compare::ValueEquals { key: "/service/x/none".into(), value: Vec::new() };
    assert!(!raw.txn(vec![cmp], vec![], vec![]).await.unwrap());
}

#[tokio::test]
async fn etcd_over_tls_with_a_client_certificate_serves_the_leader_lease() {
    let etcd = EtcdServer::start_tls();
    let files = etcd.tls().expect("a TLS server").clone();
    let tls = EtcdTls { ca: Some(files.ca), cert: Some(files.client_cert), key: Some(files.client_key) };
    let opts = EtcdOptions {
        endpoints: vec![etcd.endpoint.clone()],
        timeout: Duration::from_secs(3),
        tls: Some(tls),
        ..Default::default()
    };
    let kv = EtcdKv::connect(&opts).await.expect("connects over TLS");
    let mut dcs =
        Dcs::new(kv, Keys::new("/service/", "tls"), "pg1", "postgres://a:1/postgres", "http://a:2/patroni");
    assert_eq!(dcs.acquire(5_000).await.unwrap(), Acquired::Yes { ttl_ms: 5_000 });
    assert_eq!(dcs.read().await.unwrap().view.leader.map(|l| l.name), Some("pg1".into()));
}

#[tokio::test]
async fn etcd_over_tls_refuses_a_client_without_a_certificate() {
    let etcd = EtcdServer::start_tls();
    let files = etcd.tls().expect("a TLS server").clone();
    let opts = EtcdOptions {
        endpoints: vec![etcd.endpoint.clone()],
        timeout: Duration::from_secs(3),
        tls: Some(EtcdTls { ca: Some(files.ca), cert: None, key: None }),
        ..Default::default()
    };
    let refused = match EtcdKv::connect(&opts).await {
        Err(_) => true,
        Ok(kv) => kv.range_prefix("/").await.is_err(),
    };
    assert!(refused, "etcd with --client-cert-auth served a client without a certificate");
}

#[tokio::test]
async fn etcd_with_authentication_serves_only_the_right_password() {
    let etcd = EtcdServer::start();
    let mut admin = etcd_client::Client::connect([etcd.endpoint.as_str()], None).await.unwrap();
    admin.user_add("root", "rootpw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let with = |user: Option<&str>, password: Option<&str>| EtcdOptions {
        endpoints: vec![etcd.endpoint.clone()],
        timeout: Duration::from_secs(3),
        username: user.map(Into::into),
        password: password.map(Into::into),
        ..Default::default()
    };
    let good = EtcdKv::connect(&with(Some("root"), Some("rootpw"))).await.expect("right password connects");
    assert!(good.range_prefix("/service/").await.is_ok());
    let bad = match EtcdKv::connect(&with(Some("root"), Some("wrong"))).await {
        Err(_) => true,
        Ok(kv) => kv.range_prefix("/service/").await.is_err(),
    };
    assert!(bad, "a wrong password was served");
    let anonymous = match EtcdKv::connect(&with(None, None)).await {
        Err(_) => true,
        Ok(kv) => kv.range_prefix("/service/").await.is_err(),
    };
    assert!(anonymous, "an anonymous client was served with auth enabled");
}

/// A node whose etcd client keeps a copy of the scope (as the agent's
/// does), with the channel its leader and failover key changes wake.
async fn kept_node(
    server: &EtcdServer,
    name: &str,
) -> (Dcs<EtcdKv>, EtcdKv, tokio::sync::mpsc::Receiver<()>) {
    let keys = Keys::new("/service/", "pgcluster");
    let mut raw = kv(server).await;
    let (wake_tx, wake_rx) = tokio::sync::mpsc::channel(1);
    raw.keep_scope(keys.prefix(), vec![keys.leader(), keys.failover()], wake_tx);
    let conn = format!("postgres://{name}:5432/postgres");
    let dcs = Dcs::new(raw.clone(), keys, name, &conn, &format!("http://{name}:8008/patroni"));
    (dcs, raw, wake_rx)
}

/// Range requests etcd answered: reads that reached it.
fn ranges(etcd: &EtcdServer) -> f64 {
    etcd.metric("grpc_server_handled_total", &[r#"grpc_method="Range""#])
}

fn keep_alives(etcd: &EtcdServer) -> f64 {
    etcd.metric("grpc_server_msg_received_total", &[r#"grpc_method="LeaseKeepAlive""#])
}

#[tokio::test]
async fn an_idle_leader_with_a_kept_scope_reads_and_renews_without_asking_etcd_for_a_read() {
    let etcd = EtcdServer::start();
    let (mut a, raw, _wake) = kept_node(&etcd, "pg1").await;
    wait_for_scope(&raw, 0).await;
    assert_eq!(a.acquire(5_000).await.unwrap(), Acquired::Yes { ttl_ms: 5_000 });
    a.publish_member(&status(MemberRole::Primary, 10), 5_000).await.unwrap();
    assert_eq!(a.renew(10).await.unwrap(), Some(5_000), "the first renewal writes status");
    let latest = a.read().await.unwrap().view.revision;
    wait_for_scope(&raw, i64::try_from(latest).unwrap()).await;
    let before = (ranges(&etcd), keep_alives(&etcd));
    for _ in 0..10 {
        let snap = a.read().await.unwrap();
        assert_eq!(snap.view.leader.map(|l| l.name), Some("pg1".into()));
        assert!(snap.view.members.contains_key("pg1"), "its own write, read back from the copy");
        assert_eq!(a.renew(10).await.unwrap(), Some(5_000));
    }
    assert_eq!(ranges(&etcd), before.0, "reads and renewals reached etcd as reads");
    assert_eq!(keep_alives(&etcd), before.1 + 10.0, "one keep-alive per renewal");
}

#[tokio::test]
async fn a_kept_scope_shows_other_nodes_writes_and_wakes_on_the_leader_key_only() {
    let etcd = EtcdServer::start();
    let (mut a, raw, mut wake) = kept_node(&etcd, "pg1").await;
    let mut b = node(&etcd, "pg2").await;
    wait_for_scope(&raw, 0).await;
    a.publish_member(&status(MemberRole::Replica, 1), 5_000).await.unwrap();
    b.publish_member(&status(MemberRole::Replica, 2), 5_000).await.unwrap();
    // pg1's next answer from etcd is at least as recent as pg2's write.
    a.keep_member_alive(0, 5_000).await.unwrap();
    assert!(a.read().await.unwrap().view.members.contains_key("pg2"));
    assert!(wake.try_recv().is_err(), "member keys do not wake the loop");
    assert_eq!(b.acquire(5_000).await.unwrap(), Acquired::Yes { ttl_ms: 5_000 });
    let woken = tokio::time::timeout(Duration::from_secs(5), wake.recv()).await;
    assert_eq!(woken, Ok(Some(())), "the leader key's change wakes the loop");
    a.keep_member_alive(10_000, 5_000).await.unwrap();
    assert_eq!(a.read().await.unwrap().view.leader.map(|l| l.name), Some("pg2".into()));
    assert!(b.release(2).await.unwrap());
    assert_eq!(a.renew(1).await.unwrap(), None, "pg1 never held the key");
    assert!(a.read().await.unwrap().view.leader.is_none());
}

#[tokio::test]
async fn after_an_etcd_restart_a_kept_scope_follows_again_and_misses_no_write() {
    let mut etcd = EtcdServer::start();
    let (mut a, raw, _wake) = kept_node(&etcd, "pg1").await;
    wait_for_scope(&raw, 0).await;
    a.acquire(30_000).await.unwrap();
    etcd.restart();
    wait_for_leader(&a, &etcd).await;
    let mut b = node(&etcd, "pg2").await;
    b.publish_member(&status(MemberRole::Replica, 2), 30_000).await.unwrap();
    a.renew(3).await.unwrap();
    assert!(a.read().await.unwrap().view.members.contains_key("pg2"), "a write after the restart");
    let latest = a.read().await.unwrap().view.revision;
    wait_for_scope(&raw, i64::try_from(latest).unwrap()).await;
    let before = ranges(&etcd);
    assert!(a.read().await.unwrap().view.members.contains_key("pg2"));
    assert_eq!(ranges(&etcd), before, "the copy answers again once the watch follows");
}

#[tokio::test]
async fn the_member_lease_is_renewed_every_third_of_the_ttl_not_every_loop() {
    let etcd = EtcdServer::start();
    let mut a = node(&etcd, "pg1").await;
    a.publish_member(&status(MemberRole::Replica, 1), 3_000).await.unwrap();
    // The first renewal opens the lease's keep-alive stream, on which
    // etcd-client renews once more by itself: not counted.
    a.keep_member_alive(0, 3_000).await.unwrap();
    let before = keep_alives(&etcd);
    for loop_ms in (1_000..=6_000).step_by(1_000) {
        a.keep_member_alive(loop_ms, 3_000).await.unwrap();
    }
    // One loop a second with a 3 s TTL: every loop (a third of the TTL
    // apart); with 6 s, every other loop.
    assert_eq!(keep_alives(&etcd) - before, 6.0);
    let before = keep_alives(&etcd);
    for loop_ms in (10_000..=16_000).step_by(1_000) {
        a.keep_member_alive(loop_ms, 6_000).await.unwrap();
    }
    assert_eq!(keep_alives(&etcd) - before, 4.0, "at 10, 12, 14 and 16 s");
}
