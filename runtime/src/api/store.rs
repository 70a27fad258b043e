//! The API's own handle on etcd, for the endpoints that read the cluster
//! afresh and write `failover` and `config` (as Patroni's handlers call
//! `dcs.get_cluster()` and `dcs.manual_failover()`).
//!
//! [`Kv`]'s futures carry no `Send` bound (the simulator's are not), but an
//! axum handler's must: [`Store`] is the object-safe, `Send` face of the
//! two real implementations, etcd and the in-memory one of the tests.

use std::future::Future;
use std::pin::Pin;

use crate::dcs::etcd::EtcdKv;
use crate::dcs::mem::MemKv;
use crate::dcs::patroni::Snapshot;
use crate::dcs::{Compare, Dcs, KeyValue, Keys, Kv, KvError, Op};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Store: Send + Sync + 'static {
    fn keys(&self) -> &Keys;
    /// The whole cluster, parsed as the agent parses it.
    fn read(&self) -> BoxFuture<'_, Result<Snapshot, KvError>>;
    /// One key, exactly.
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<KeyValue>, KvError>>;
    /// A transaction; true when the compares held.
    fn txn(&self, compares: Vec<Compare>, success: Vec<Op>) -> BoxFuture<'_, Result<bool, KvError>>;
}

/// A [`Kv`] with the cluster's key layout.
pub struct KvStore<K> {
    kv: K,
    keys: Keys,
}

impl<K: Kv + Clone> KvStore<K> {
    pub fn new(kv: K, keys: Keys) -> KvStore<K> {
        KvStore { kv, keys }
    }

    async fn read_snapshot(&self) -> Result<Snapshot, KvError> {
        // Reading only: no member name, no addresses, no leases.
        Dcs::new(self.kv.clone(), self.keys.clone(), "", "", "").read().await
    }

    async fn get_key(&self, key: String) -> Result<Option<KeyValue>, KvError> {
        let range = self.kv.range_prefix(&key).await?;
        Ok(range.kvs.into_iter().find(|kv| kv.key == key))
    }
}

/// The impls differ only in the type: the futures of each concrete `Kv`
/// are `Send`, which a generic impl could not state.
macro_rules! store_for {
    ($kv:ty) => {
        impl Store for KvStore<$kv> {
            fn keys(&self) -> &Keys {
                &self.keys
            }

            fn read(&self) -> BoxFuture<'_, Result<Snapshot, KvError>> {
                Box::pin(self.read_snapshot())
            }

            fn get(&self, key: String) -> BoxFuture<'_, Result<Option<KeyValue>, KvError>> {
                Box::pin(self.get_key(key))
            }

            fn txn(&self, compares: Vec<Compare>, success: Vec<Op>) -> BoxFuture<'_, Result<bool, KvError>> {
                Box::pin(self.kv.txn(compares, success, Vec::new()))
            }
        }
    };
}

store_for!(EtcdKv);
store_for!(MemKv);
