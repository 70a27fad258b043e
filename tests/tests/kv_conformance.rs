//! The in-memory etcd (`keel_runtime::dcs::mem::MemKv`, used by unit tests
//! and, later, the madsim simulator) must behave like real etcd for everything
//! keel relies on. Each check runs against both.

use std::time::Duration;

use keel_runtime::dcs::etcd::{EtcdKv, EtcdOptions};
use keel_runtime::dcs::mem::MemKv;
use keel_runtime::dcs::{Compare, Kv, KvError, Op};
use keel_tests::etcd::{wait_for_scope, EtcdServer};

fn put(key: &str, value: &str, lease: i64) -> Op {
    Op::Put { key: key.into(), value: value.as_bytes().to_vec(), lease }
}

async fn revisions_and_compares<K: Kv>(kv: &K) {
    let absent = Compare::CreateRevision { key: "/p/a".into(), revision: 0 };
    assert!(kv.txn(vec![absent.clone()], vec![put("/p/a", "1", 0)], vec![]).await.unwrap());
    assert!(!kv.txn(vec![absent], vec![put("/p/a", "2", 0)], vec![]).await.unwrap(), "create-only");
    let r = kv.range_prefix("/p/").await.unwrap();
    let a = &r.kvs[0];
    assert_eq!(
        (a.value.as_slice(), a.create_revision, a.mod_revision),
        (&b"1"[..], a.mod_revision, r.revision)
    );
    let same = Compare::ModRevision { key: "/p/a".into(), revision: a.mod_revision };
    assert!(kv.txn(vec![same.clone()], vec![put("/p/a", "3", 0)], vec![]).await.unwrap());
    assert!(!kv.txn(vec![same], vec![put("/p/a", "4", 0)], vec![]).await.unwrap(), "stale mod revision");
    let r2 = kv.range_prefix("/p/").await.unwrap();
    assert_eq!(r2.kvs[0].create_revision, a.create_revision, "an update keeps the create revision");
    assert!(r2.revision > r.revision);
    let missing = Compare::ValueEquals { key: "/p/none".into(), value: Vec::new() };
    assert!(!kv.txn(vec![missing], vec![], vec![]).await.unwrap(), "value compare on a missing key is false");
    assert!(kv.txn(vec![], vec![Op::Delete { key: "/p/a".into() }], vec![]).await.unwrap());
    assert!(kv.range_prefix("/p/").await.unwrap().kvs.is_empty());
    assert!(kv.range_prefix("/p").await.unwrap().kvs.is_empty());
}

async fn leases_take_their_keys<K: Kv>(kv: &K, advance: impl AsyncFn(Duration)) {
    let (lease, ttl) = kv.grant(2).await.unwrap();
    assert_eq!(ttl, 2);
    assert!(kv.txn(vec![], vec![put("/l/k", "v", lease)], vec![]).await.unwrap());
    let on_lease = Compare::Lease { key: "/l/k".into(), lease };
    assert!(kv.txn(vec![on_lease], vec![], vec![]).await.unwrap());
    assert_eq!(kv.keep_alive(lease).await.unwrap(), 2);
    assert_eq!(kv.keep_alive(lease).await.unwrap(), 2, "again (etcd: on the stream kept from the first)");
    advance(Duration::from_millis(3_500)).await;
    assert!(kv.range_prefix("/l/").await.unwrap().kvs.is_empty(), "an expired lease takes its key");
    assert_eq!(kv.keep_alive(lease).await.unwrap(), 0, "keep-alive of an expired lease says 0");
    match kv.txn(vec![], vec![put("/l/k", "v", lease)], vec![]).await {
        Err(KvError::LeaseNotFound) => {}
        other => panic!("put on an expired lease: {other:?}"),
    }
    let (other, _) = kv.grant(30).await.unwrap();
    kv.revoke(other).await.unwrap();
    assert_eq!(kv.revoke(other).await, Err(KvError::LeaseNotFound));
}

#[tokio::test(start_paused = true)]
async fn in_memory_etcd_keeps_revisions_and_compares() {
    revisions_and_compares(&MemKv::new()).await;
}

#[tokio::test(start_paused = true)]
async fn in_memory_etcd_leases_take_their_keys() {
    leases_take_their_keys(&MemKv::new(), async |d| tokio::time::sleep(d).await).await;
}

async fn real() -> (EtcdServer, EtcdKv) {
    let server = EtcdServer::start();
    let opts = EtcdOptions {
        endpoints: vec![server.endpoint.clone()],
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let kv = EtcdKv::connect(&opts).await.unwrap();
    (server, kv)
}

#[tokio::test]
async fn real_etcd_keeps_revisions_and_compares() {
    let (_server, kv) = real().await;
    revisions_and_compares(&kv).await;
}

#[tokio::test]
async fn real_etcd_leases_take_their_keys() {
    let (_server, kv) = real().await;
    leases_take_their_keys(&kv, async |d| tokio::time::sleep(d).await).await;
}

/// The agent's client: reads of its scope answered from a copy a watch
/// keeps (dcs::etcd), which must be indistinguishable from etcd's own.
async fn real_with_a_kept_scope() -> (EtcdServer, EtcdKv, tokio::sync::mpsc::Receiver<()>) {
    let (server, mut kv) = real().await;
    let (wake_tx, wake_rx) = tokio::sync::mpsc::channel(1);
    kv.keep_scope("/", vec![], wake_tx);
    wait_for_scope(&kv, 0).await;
    (server, kv, wake_rx)
}

#[tokio::test]
async fn real_etcd_through_a_kept_scope_keeps_revisions_and_compares() {
    let (_server, kv, _wake) = real_with_a_kept_scope().await;
    revisions_and_compares(&kv).await;
}

#[tokio::test]
async fn real_etcd_through_a_kept_scope_leases_take_their_keys() {
    let (_server, kv, _wake) = real_with_a_kept_scope().await;
    leases_take_their_keys(&kv, async |d| tokio::time::sleep(d).await).await;
}
