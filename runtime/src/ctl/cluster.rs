//! keelctl's side of etcd: reads through [`Dcs`], and the few writes an
//! operator makes (`config`, `failover`, removing the cluster), each a
//! compare-and-swap on what was read, as patronictl does (reference 2.1).

use serde_json::Value;

use super::{fail, CtlError, Target};
use crate::config::DynamicSettings;
use crate::dcs::patroni::Snapshot;
use crate::dcs::{codec, Compare, Dcs, Keys, Kv, KvError, Op};

/// etcd's default `--max-txn-ops`: the most operations one transaction may hold.
const TXN_OPS_MAX: usize = 128;

/// `value` as the agents will read it (`config::dynamic_from_json`).
pub fn check_config(value: &Value) -> Result<DynamicSettings, CtlError> {
    match crate::config::dynamic_from_json(value.to_string().as_bytes()) {
        Ok(settings) => Ok(settings),
        Err(e) => fail!("the configuration is invalid, nothing written: {e}"),
    }
}

pub struct Cluster<K: Kv> {
    dcs: Dcs<K>,
    kv: K,
    pub scope: String,
    /// etcd's endpoints, for error messages.
    etcd: String,
}

/// The `config` key as stored: its JSON and the revision to compare with
/// (0: the key is absent).
#[derive(Clone, Debug, PartialEq)]
pub struct RawConfig {
    pub value: Value,
    pub mod_revision: i64,
}

impl<K: Kv + Clone> Cluster<K> {
    pub fn new(kv: K, target: &Target) -> Cluster<K> {
        let mut cluster = Cluster::on(kv, target.keys.clone(), &target.scope);
        cluster.etcd = target.etcd.endpoints.join(",");
        cluster
    }

    pub fn on(kv: K, keys: Keys, scope: &str) -> Cluster<K> {
        // keelctl never writes a member key: the name and URLs are unused.
        let dcs = Dcs::new(kv.clone(), keys, "keelctl", "", "");
        Cluster { dcs, kv, scope: scope.to_owned(), etcd: "etcd".to_owned() }
    }
}

impl<K: Kv> Cluster<K> {
    /// An etcd failure, saying which etcd.
    fn etcd_error(&self, e: KvError) -> CtlError {
        CtlError(format!("{e} (at {})", self.etcd))
    }

    pub fn keys(&self) -> &Keys {
        self.dcs.keys()
    }

    pub async fn read(&self) -> Result<Snapshot, CtlError> {
        self.dcs.read().await.map_err(|e| self.etcd_error(e))
    }

    /// `config` as stored, for editing: edits keep keys keel does not know.
    pub async fn config(&self) -> Result<RawConfig, CtlError> {
        let key = self.keys().config();
        let range = self.kv.range_prefix(&key).await.map_err(|e| self.etcd_error(e))?;
        let Some(kv) = range.kvs.into_iter().find(|kv| kv.key == key) else {
            return Ok(RawConfig { value: Value::Object(Default::default()), mod_revision: 0 });
        };
        match serde_json::from_slice::<Value>(&kv.value) {
            Ok(value @ Value::Object(_)) => Ok(RawConfig { value, mod_revision: kv.mod_revision }),
            _ => fail!("{key} does not hold a JSON object; fix it with edit-config --apply"),
        }
    }

    /// Writes `config` if it is still at `revision`, after checking it as
    /// the agent will read it. Ok(false): someone changed it meanwhile.
    pub async fn write_config(&self, value: &Value, revision: i64) -> Result<bool, CtlError> {
        check_config(value)?;
        let bytes = value.to_string().into_bytes();
        let key = self.keys().config();
        let compare = if revision == 0 {
            Compare::CreateRevision { key: key.clone(), revision: 0 }
        } else {
            Compare::ModRevision { key: key.clone(), revision }
        };
        let put = Op::Put { key, value: bytes, lease: 0 };
        self.kv.txn(vec![compare], vec![put], vec![]).await.map_err(|e| self.etcd_error(e))
    }

    /// Writes a switchover or failover request over the one read
    /// (`revision`, 0: none), in Patroni's form. Ok(false): it changed.
    pub async fn write_failover(
        &self,
        leader: Option<&str>,
        candidate: Option<&str>,
        scheduled_at: Option<&str>,
        revision: u64,
    ) -> Result<bool, CtlError> {
        let mut request = serde_json::Map::new();
        if let Some(leader) = leader {
            request.insert("leader".into(), leader.into());
        }
        if let Some(candidate) = candidate {
            request.insert("member".into(), candidate.into());
        }
        if let Some(at) = scheduled_at {
            request.insert("scheduled_at".into(), at.into());
        }
        let bytes = Value::Object(request).to_string().into_bytes();
        // What keel's agents will read: refuse to write what they would not.
        if let Err(e) = codec::parse_failover(&bytes, 0) {
            fail!("the failover request is invalid: {e}");
        }
        let key = self.keys().failover();
        let compare = match i64::try_from(revision) {
            Ok(0) | Err(_) => Compare::CreateRevision { key: key.clone(), revision: 0 },
            Ok(revision) => Compare::ModRevision { key: key.clone(), revision },
        };
        let put = Op::Put { key, value: bytes, lease: 0 };
        self.kv.txn(vec![compare], vec![put], vec![]).await.map_err(|e| self.etcd_error(e))
    }

    /// Withdraws a failover request if it is still the one at `revision`.
    pub async fn clear_failover(&self, revision: u64) -> Result<bool, CtlError> {
        self.dcs.clear_failover(revision).await.map_err(|e| self.etcd_error(e))
    }

    /// Deletes every key of the scope; returns how many. Unconditional, as
    /// Patroni's `delete_cluster`: running agents rewrite their member keys
    /// all the time, and the operator has confirmed.
    pub async fn remove_all(&self) -> Result<usize, CtlError> {
        let range = self.kv.range_prefix(self.keys().prefix()).await.map_err(|e| self.etcd_error(e))?;
        for batch in range.kvs.chunks(TXN_OPS_MAX) {
            let deletes = batch.iter().map(|kv| Op::Delete { key: kv.key.clone() }).collect();
            self.kv.txn(vec![], deletes, vec![]).await.map_err(|e| self.etcd_error(e))?;
        }
        Ok(range.kvs.len())
    }
}
