//! etcd's key-value store as keel's `Kv` trait sees it: revisions, create
//! and mod revisions, compare-and-swap transactions, and leases that take
//! their keys with them when they expire, to the millisecond of etcd's own
//! clock (the caller passes `now_ms`). The simulated etcd node of the
//! madsim simulator serves this over the simulated network.
//!
//! Unlike madsim's own etcd simulator: revision compares exist, and leases
//! expire exactly at their deadline, not on a one-second tick.

use std::collections::BTreeMap;

use keel_runtime::dcs::{Compare, KeyValue, KvError, Op, Range};

#[derive(Clone, Debug, Default)]
pub struct KvModel {
    revision: i64,
    keys: BTreeMap<String, KeyValue>,
    /// Lease id -> (granted TTL in seconds, expiry in etcd ms).
    leases: BTreeMap<i64, (i64, u64)>,
    next_lease: i64,
}

impl KvModel {
    pub fn new() -> KvModel {
        KvModel { revision: 1, ..KvModel::default() }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Drops the leases whose deadline is at or before `now_ms`, and their
    /// keys. Returns the keys removed.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let dead: Vec<i64> =
            self.leases.iter().filter(|(_, (_, at))| *at <= now_ms).map(|(id, _)| *id).collect();
        dead.into_iter().flat_map(|id| self.drop_lease(id)).collect()
    }

    /// Every lease's deadline moves to `now_ms + ttl`: what a new etcd
    /// leader does after an election (etcd renews leases on leader change).
    pub fn refresh_leases(&mut self, now_ms: u64) {
        for (ttl, at) in self.leases.values_mut() {
            *at = now_ms + *ttl as u64 * 1000;
        }
    }

    fn drop_lease(&mut self, id: i64) -> Vec<String> {
        self.leases.remove(&id);
        let gone: Vec<String> =
            self.keys.values().filter(|kv| kv.lease == id).map(|kv| kv.key.clone()).collect();
        if !gone.is_empty() {
            self.revision += 1;
            for key in &gone {
                self.keys.remove(key);
            }
        }
        gone
    }

    pub fn get(&self, key: &str) -> Option<&KeyValue> {
        self.keys.get(key)
    }

    pub fn range_prefix(&self, prefix: &str) -> Range {
        let kvs = self.keys.range(prefix.to_owned()..).take_while(|(k, _)| k.starts_with(prefix));
        Range { revision: self.revision, kvs: kvs.map(|(_, v)| v.clone()).collect() }
    }

    fn holds(&self, c: &Compare) -> bool {
        c.holds_for(self.keys.get(c.key()))
    }

    /// A transaction; returns whether the compares held and the keys the
    /// applied branch wrote or deleted.
    pub fn txn(
        &mut self,
        compares: &[Compare],
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<(bool, Vec<String>), KvError> {
        let ok = compares.iter().all(|c| self.holds(c));
        let ops = if ok { success } else { failure };
        for op in &ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && !self.leases.contains_key(lease) {
                    return Err(KvError::LeaseNotFound);
                }
            }
        }
        if ops.is_empty() {
            return Ok((ok, Vec::new()));
        }
        self.revision += 1;
        let rev = self.revision;
        let mut touched = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let create_revision = self.keys.get(&key).map_or(rev, |kv| kv.create_revision);
                    touched.push(key.clone());
                    self.keys.insert(
                        key.clone(),
                        KeyValue { key, value, create_revision, mod_revision: rev, lease },
                    );
                }
                Op::Delete { key } => {
                    if self.keys.remove(&key).is_some() {
                        touched.push(key);
                    }
                }
            }
        }
        Ok((ok, touched))
    }

    pub fn grant(&mut self, ttl_s: i64, now_ms: u64) -> (i64, i64) {
        self.next_lease += 1;
        let ttl = ttl_s.max(1);
        self.leases.insert(self.next_lease, (ttl, now_ms + ttl as u64 * 1000));
        (self.next_lease, ttl)
    }

    /// The TTL left after the keep-alive; 0 when the lease is gone.
    pub fn keep_alive(&mut self, lease: i64, now_ms: u64) -> i64 {
        match self.leases.get_mut(&lease) {
            Some((ttl, at)) => {
                *at = now_ms + *ttl as u64 * 1000;
                *ttl
            }
            None => 0,
        }
    }

    pub fn revoke(&mut self, lease: i64) -> Result<Vec<String>, KvError> {
        if !self.leases.contains_key(&lease) {
            return Err(KvError::LeaseNotFound);
        }
        Ok(self.drop_lease(lease))
    }

    /// Who the leader key at `key` names, and when its lease runs out.
    pub fn holder(&self, key: &str) -> Option<(String, Option<u64>)> {
        let kv = self.keys.get(key)?;
        let name = String::from_utf8_lossy(&kv.value).trim().to_owned();
        let expiry = self.leases.get(&kv.lease).map(|(_, at)| *at);
        (!name.is_empty()).then_some((name, expiry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str, lease: i64) -> Op {
        Op::Put { key: key.into(), value: value.into(), lease }
    }

    #[test]
    fn lease_expires_to_the_millisecond_and_takes_its_key() {
        let mut kv = KvModel::new();
        let (lease, ttl) = kv.grant(10, 1_000);
        assert_eq!(ttl, 10);
        let absent = Compare::CreateRevision { key: "/l".into(), revision: 0 };
        assert_eq!(
            kv.txn(std::slice::from_ref(&absent), vec![put("/l", "a", lease)], vec![]),
            Ok((true, vec!["/l".into()]))
        );
        assert!(kv.expire(10_999).is_empty());
        assert_eq!(kv.holder("/l"), Some(("a".into(), Some(11_000))));
        assert_eq!(kv.expire(11_000), vec!["/l".to_owned()]);
        assert_eq!(kv.holder("/l"), None);
        assert_eq!(kv.keep_alive(lease, 11_000), 0);
        assert_eq!(kv.txn(&[absent], vec![put("/l", "b", lease)], vec![]), Err(KvError::LeaseNotFound));
    }

    #[test]
    fn mod_revision_compare_fails_after_another_write() {
        let mut kv = KvModel::new();
        kv.txn(&[], vec![put("/s", "1", 0)], vec![]).unwrap();
        let rev = kv.get("/s").unwrap().mod_revision;
        kv.txn(&[], vec![put("/s", "2", 0)], vec![]).unwrap();
        let stale = Compare::ModRevision { key: "/s".into(), revision: rev };
        assert_eq!(kv.txn(&[stale], vec![put("/s", "3", 0)], vec![]), Ok((false, vec![])));
        assert_eq!(kv.get("/s").unwrap().value, b"2");
        assert_eq!(kv.get("/s").unwrap().create_revision, rev);
    }
}
