//! An in-memory etcd with etcd's semantics for the operations keel uses
//! (revisions, create/mod revisions, compare-and-swap, leases that take
//! their keys with them when they expire), on tokio's clock so that tests
//! can pause and advance time. A test double for the Patroni layer; the
//! real thing is tested against etcd itself (`tests/etcd.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::time::{Duration, Instant};

use super::{Compare, KeyValue, Kv, KvError, Op, Range};

#[derive(Default)]
struct Store {
    revision: i64,
    keys: BTreeMap<String, KeyValue>,
    /// Lease id -> (granted TTL in seconds, expiry).
    leases: BTreeMap<i64, (i64, Instant)>,
    next_lease: i64,
    /// While set, every request fails as unavailable.
    down: bool,
}

/// Cheap to clone: clones share one store (several "nodes" on one etcd).
#[derive(Clone, Default)]
pub struct MemKv {
    store: Arc<Mutex<Store>>,
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }

    /// Makes every request fail as unavailable (an etcd outage).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock can only come from a bug in this
        // file; the store is still consistent enough for a test to report.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store after expiring leases, or fails if down.
    fn with<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, KvError>) -> Result<T, KvError> {
        let mut s = self.lock();
        if s.down {
            return Err(KvError::Unavailable("etcd is down".into()));
        }
        s.expire(Instant::now());
        f(&mut s)
    }
}

impl Store {
    fn expire(&mut self, now: Instant) {
        let dead: Vec<i64> =
            self.leases.iter().filter(|(_, (_, at))| *at <= now).map(|(id, _)| *id).collect();
        for id in dead {
            self.drop_lease(id);
        }
    }

    fn drop_lease(&mut self, id: i64) {
        self.leases.remove(&id);
        let before = self.keys.len();
        self.keys.retain(|_, kv| kv.lease != id);
        if self.keys.len() != before {
            self.revision += 1;
        }
    }

    fn holds(&self, c: &Compare) -> bool {
        c.holds_for(self.keys.get(c.key()))
    }

    fn apply(&mut self, ops: Vec<Op>) -> Result<(), KvError> {
        for op in &ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && !self.leases.contains_key(lease) {
                    return Err(KvError::LeaseNotFound);
                }
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.revision += 1;
        let rev = self.revision;
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let create_revision = self.keys.get(&key).map_or(rev, |kv| kv.create_revision);
                    let kv = KeyValue { key: key.clone(), value, create_revision, mod_revision: rev, lease };
                    self.keys.insert(key, kv);
                }
                Op::Delete { key } => {
                    self.keys.remove(&key);
                }
            }
        }
        Ok(())
    }
}

impl Kv for MemKv {
    async fn range_prefix(&self, prefix: &str) -> Result<Range, KvError> {
        self.with(|s| {
            let kvs = s
                .keys
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v.clone());
            Ok(Range { revision: s.revision, kvs: kvs.collect() })
        })
    }

    async fn txn(&self, compares: Vec<Compare>, success: Vec<Op>, failure: Vec<Op>) -> Result<bool, KvError> {
        self.with(|s| {
            let ok = compares.iter().all(|c| s.holds(c));
            s.apply(if ok { success } else { failure })?;
            Ok(ok)
        })
    }

    async fn grant(&self, ttl_s: i64) -> Result<(i64, i64), KvError> {
        self.with(|s| {
            s.next_lease += 1;
            let id = s.next_lease;
            let ttl = ttl_s.max(1);
            s.leases.insert(id, (ttl, Instant::now() + Duration::from_secs(ttl as u64)));
            Ok((id, ttl))
        })
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, KvError> {
        self.with(|s| match s.leases.get_mut(&lease) {
            Some((ttl, at)) => {
                *at = Instant::now() + Duration::from_secs(*ttl as u64);
                Ok(*ttl)
            }
            None => Ok(0),
        })
    }

    async fn revoke(&self, lease: i64) -> Result<(), KvError> {
        self.with(|s| {
            if !s.leases.contains_key(&lease) {
                return Err(KvError::LeaseNotFound);
            }
            s.drop_lease(lease);
            Ok(())
        })
    }
}
