//! Patroni's DCS protocol on etcd v3, over [`Kv`]: reading the cluster
//! into keel-core's [`ClusterView`], and the writes keel-core's actions
//! ask for, each with the compare-and-swap Patroni uses.
//!
//! Two leases, unlike Patroni's one: the leader key has its own lease,
//! renewed only when keel-core decides `RenewLease`; the member key has
//! another, kept alive every loop. With one shared lease, keeping the
//! member key alive would also keep a leader key alive that the engine had
//! stopped renewing (safety rule 1).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use keel_core::dcs::LeaderKey;
use keel_core::limits::MEMBERS_MAX;
use keel_core::{ClusterView, MemberStatus, TimelineSwitch};
use tracing::warn;

use super::codec::{self, HistoryEntry, MemberDetails, MemberExtras};
use super::{Compare, Keys, Kv, KvError, Op};
use crate::config::DynamicSettings;

/// A read of the cluster: what keel-core needs, plus what the DCS layer
/// keeps to write values back faithfully.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub view: ClusterView,
    /// `config` as keel reads it (Patroni's defaults filled in); `None`
    /// when absent or invalid, as `view.config`.
    pub config: Option<DynamicSettings>,
    /// `config` as stored, for `GET /config`: Patroni returns the key's
    /// JSON, without defaults and without keys of keel's. Set with
    /// `config`.
    pub config_stored: Option<serde_json::Value>,
    /// `history` with the reasons and times Patroni recorded.
    pub history: Vec<HistoryEntry>,
    /// Keys that could not be read, with why; they count as absent.
    pub warnings: Vec<String>,
    /// What each member key says beyond `view.members` (Patroni's state
    /// word, replication state, pending and scheduled restart, pause, every
    /// tag), for the REST API and keelctl.
    pub member_details: BTreeMap<String, MemberDetails>,
}

/// What a lease acquisition found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The key is ours, on a lease etcd granted for this long.
    Yes { ttl_ms: u64 },
    /// Someone holds it.
    Taken,
}

pub struct Dcs<K: Kv> {
    kv: K,
    keys: Keys,
    name: String,
    conn_url: String,
    api_url: String,
    leader_lease: Option<i64>,
    member_lease: Option<i64>,
    /// When [`Self::keep_member_alive`] last renewed the member lease.
    member_renewed_ms: Option<u64>,
    /// The optime this node last wrote to `status` under its current
    /// lease: only the leader writes the key, so while it holds the lock an
    /// unchanged optime need not be written again (an idle leader would
    /// otherwise write it every loop).
    status_written: Option<u64>,
    /// The last read of the cluster, reused while the store's revision is
    /// the same (the same revision is the same content): an idle agent's
    /// reads then parse nothing, and a garbled key is logged once.
    last_read: Mutex<Option<Snapshot>>,
}

const VERSION: &str = concat!("keel ", env!("CARGO_PKG_VERSION"));

impl<K: Kv> Dcs<K> {
    pub fn new(kv: K, keys: Keys, name: &str, conn_url: &str, api_url: &str) -> Dcs<K> {
        Dcs {
            kv,
            keys,
            name: name.to_owned(),
            conn_url: conn_url.to_owned(),
            api_url: api_url.to_owned(),
            leader_lease: None,
            member_lease: None,
            member_renewed_ms: None,
            status_written: None,
            last_read: Mutex::default(),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Reads the whole cluster prefix in one consistent read.
    pub async fn read(&self) -> Result<Snapshot, KvError> {
        let range = self.kv.range_prefix(self.keys.prefix()).await?;
        let revision = u64::try_from(range.revision).unwrap_or(0);
        let mut last = self.last_read.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(snap) = last.as_ref().filter(|s| revision > 0 && s.view.revision == revision) {
            return Ok(snap.clone());
        }
        let mut snap = Snapshot::default();
        snap.view.revision = revision;
        for kv in &range.kvs {
            let Some(rel) = self.keys.relative(&kv.key) else { continue };
            let revision = u64::try_from(kv.mod_revision).unwrap_or(0);
            if let Err(why) = self.absorb(&mut snap, rel, &kv.value, revision) {
                let line = format!("{}: {why}; treated as absent", kv.key);
                warn!(key = %kv.key, "{why}; treated as absent");
                snap.warnings.push(line);
            }
        }
        snap.view.history = snap.history.iter().map(|e| e.switch.clone()).collect();
        *last = Some(snap.clone());
        Ok(snap)
    }

    fn absorb(&self, snap: &mut Snapshot, rel: &str, value: &[u8], revision: u64) -> Result<(), String> {
        let view = &mut snap.view;
        match rel {
            "leader" => {
                let name = std::str::from_utf8(value).map_err(|_| "not UTF-8")?.trim();
                // An empty value counts as no leader (etcd3's portable
                // create-if-absent relies on leader values never being empty).
                if !name.is_empty() {
                    view.leader = Some(LeaderKey { name: name.to_owned(), revision });
                }
            }
            "initialize" => {
                let text = std::str::from_utf8(value).map_err(|_| "not UTF-8")?;
                view.initialize = Some(text.trim().to_owned());
                view.initialize_revision = revision;
            }
            "config" => {
                let settings = crate::config::dynamic_from_json(value).map_err(|e| e.to_string())?;
                view.config = Some(settings.to_core());
                snap.config = Some(settings);
                snap.config_stored = serde_json::from_slice(value).ok();
            }
            "sync" => view.sync = Some(codec::parse_sync(value, revision)?),
            "failover" => view.failover = Some(codec::parse_failover(value, revision)?),
            "history" => snap.history = codec::parse_history(value)?,
            "status" => view.optime_lsn = Some(codec::parse_status(value)?),
            "failsafe" => view.failsafe = Some(codec::parse_failsafe(value)?),
            _ => {
                if let Some(name) = rel.strip_prefix("members/") {
                    if view.members.len() >= MEMBERS_MAX {
                        return Err(format!("more than {MEMBERS_MAX} members"));
                    }
                    let key = codec::parse_member_key(value)?;
                    for why in &key.details.warnings {
                        warn!(member = name, "member key: {why}");
                        snap.warnings.push(format!("members/{name}: {why}"));
                    }
                    view.members.insert(name.to_owned(), key.member);
                    snap.member_details.insert(name.to_owned(), key.details);
                }
            }
        }
        Ok(())
    }

    /// Creates `initialize` (empty: a bootstrap is running) if absent.
    pub async fn take_initialize(&self) -> Result<bool, KvError> {
        let key = self.keys.initialize();
        let put = Op::Put { key: key.clone(), value: Vec::new(), lease: 0 };
        self.kv.txn(vec![Compare::CreateRevision { key, revision: 0 }], vec![put], vec![]).await
    }

    /// Deletes `initialize` if it still says a bootstrap is running and is
    /// the key seen at `revision` (its `mod_revision`), not one taken since.
    pub async fn cancel_initialize(&self, revision: u64) -> Result<bool, KvError> {
        let key = self.keys.initialize();
        let revision = i64::try_from(revision).unwrap_or(i64::MAX);
        let compares = vec![
            Compare::ValueEquals { key: key.clone(), value: Vec::new() },
            Compare::ModRevision { key: key.clone(), revision },
        ];
        self.kv.txn(compares, vec![Op::Delete { key }], vec![]).await
    }

    /// Records the system identifier, over an empty or absent key only.
    pub async fn write_initialize(&self, system_id: u64) -> Result<bool, KvError> {
        let key = self.keys.initialize();
        let put = Op::Put { key: key.clone(), value: system_id.to_string().into_bytes(), lease: 0 };
        let empty = Compare::ValueEquals { key: key.clone(), value: Vec::new() };
        if self.kv.txn(vec![empty], vec![put.clone()], vec![]).await? {
            return Ok(true);
        }
        self.kv.txn(vec![Compare::CreateRevision { key, revision: 0 }], vec![put], vec![]).await
    }

    /// Seeds `config` with the bootstrap settings, if absent.
    pub async fn write_config_if_absent(&self, json: Vec<u8>) -> Result<bool, KvError> {
        let key = self.keys.config();
        let put = Op::Put { key: key.clone(), value: json, lease: 0 };
        self.kv.txn(vec![Compare::CreateRevision { key, revision: 0 }], vec![put], vec![]).await
    }

    /// Takes the leader key on a fresh lease of `ttl_ms` (rounded up to
    /// whole seconds), only if nobody holds it.
    pub async fn acquire(&mut self, ttl_ms: u64) -> Result<Acquired, KvError> {
        let ttl_s = i64::try_from(ttl_ms.div_ceil(1000)).unwrap_or(i64::MAX);
        let (lease, granted_s) = self.kv.grant(ttl_s).await?;
        let key = self.keys.leader();
        let put = Op::Put { key: key.clone(), value: self.name.clone().into_bytes(), lease };
        match self.kv.txn(vec![Compare::CreateRevision { key, revision: 0 }], vec![put], vec![]).await {
            Ok(true) => {
                self.leader_lease = Some(lease);
                self.status_written = None;
                Ok(Acquired::Yes { ttl_ms: u64::try_from(granted_s).unwrap_or(0) * 1000 })
            }
            other => {
                // Best effort: an unused lease expires on its own anyway.
                let _ = self.kv.revoke(lease).await;
                other.map(|_| Acquired::Taken)
            }
        }
    }

    /// Keeps the leader lease alive, then confirms that the key still names
    /// this node on that lease. `Ok(None)`: the lock is gone (definite).
    /// `Ok(Some(ttl_ms))`: renewed for the lease's TTL.
    pub async fn renew(&mut self, optime: u64) -> Result<Option<u64>, KvError> {
        let Some(lease) = self.leader_lease else {
            return self.adopt_leader_key(optime).await;
        };
        let left_s = match self.kv.keep_alive(lease).await {
            Ok(left) => left,
            Err(KvError::LeaseNotFound) => 0,
            Err(e) => return Err(e),
        };
        if left_s <= 0 {
            self.leader_lease = None;
            return Ok(None);
        }
        // A read, not a compare: the agent's etcd client answers it from
        // its copy of the scope, once that copy is as recent as the
        // keep-alive's answer (dcs::etcd).
        let key = self.keys.leader();
        let read = self.kv.range_prefix(&key).await?;
        let current = read.kvs.iter().find(|kv| kv.key == key);
        if !current.is_some_and(|kv| kv.value == self.name.as_bytes() && kv.lease == lease) {
            return Ok(None);
        }
        if self.status_written != Some(optime) {
            self.write_status(optime).await;
        }
        Ok(Some(u64::try_from(left_s).unwrap_or(0) * 1000))
    }

    /// After an agent restart the key may still name this node on a lease
    /// the new process does not know: take it over onto a fresh lease of
    /// the same TTL, only while it still names this node.
    async fn adopt_leader_key(&mut self, optime: u64) -> Result<Option<u64>, KvError> {
        let snap = self.kv.range_prefix(&self.keys.leader()).await?;
        let Some(current) = snap.kvs.first().filter(|kv| kv.value == self.name.as_bytes()) else {
            return Ok(None);
        };
        let ttl_s = match self.kv.keep_alive(current.lease).await {
            Ok(left) if left > 0 => left,
            _ => return Ok(None),
        };
        let (lease, granted_s) = self.kv.grant(ttl_s).await?;
        let key = self.keys.leader();
        let put = Op::Put { key: key.clone(), value: self.name.clone().into_bytes(), lease };
        let still_mine = Compare::ValueEquals { key, value: self.name.clone().into_bytes() };
        if !self.kv.txn(vec![still_mine], vec![put], vec![]).await? {
            let _ = self.kv.revoke(lease).await;
            return Ok(None);
        }
        self.leader_lease = Some(lease);
        self.status_written = None;
        self.write_status(optime).await;
        Ok(Some(u64::try_from(granted_s.min(ttl_s)).unwrap_or(0) * 1000))
    }

    /// Deletes the leader key if it names this node, and drops its lease.
    pub async fn release(&mut self, optime: u64) -> Result<bool, KvError> {
        let key = self.keys.leader();
        let mine = Compare::ValueEquals { key: key.clone(), value: self.name.clone().into_bytes() };
        let deleted = self.kv.txn(vec![mine], vec![Op::Delete { key }], vec![]).await?;
        if let Some(lease) = self.leader_lease.take() {
            let _ = self.kv.revoke(lease).await;
        }
        self.write_status(optime).await;
        self.status_written = None;
        Ok(deleted)
    }

    /// `status` is advisory (the failover lag reference): a failed write is
    /// logged and the next renewal writes it again.
    async fn write_status(&mut self, optime: u64) {
        let put = Op::Put { key: self.keys.status(), value: codec::encode_status(optime), lease: 0 };
        match self.kv.txn(vec![], vec![put], vec![]).await {
            Ok(_) => self.status_written = Some(optime),
            Err(e) => {
                self.status_written = None;
                warn!("could not write status: {e}");
            }
        }
    }

    /// Writes this node's member key on its own lease (granted on first use
    /// and again if it expired), and keeps that lease alive.
    pub async fn publish_member(&mut self, status: &MemberStatus, ttl_ms: u64) -> Result<(), KvError> {
        self.publish_member_with(status, &MemberExtras::of_tags(&status.tags), ttl_ms).await
    }

    /// [`Self::publish_member`] with Patroni's fields beyond keel-core's
    /// facts (custom tags, replication state, restarts, pause).
    pub async fn publish_member_with(
        &mut self,
        status: &MemberStatus,
        extras: &MemberExtras,
        ttl_ms: u64,
    ) -> Result<(), KvError> {
        let lease = self.member_lease(ttl_ms).await?;
        let value = codec::encode_member(status, &self.conn_url, &self.api_url, VERSION, extras);
        let put = Op::Put { key: self.keys.member(&self.name), value, lease };
        self.kv.txn(vec![], vec![put], vec![]).await.map(|_| ())
    }

    /// Keeps the member key's lease of `ttl_ms` alive, published or not:
    /// called every loop, it renews every third of the TTL (`now_ms` on the
    /// agent's clock), so that a renewal may fail twice before the key
    /// expires.
    pub async fn keep_member_alive(&mut self, now_ms: u64, ttl_ms: u64) -> Result<(), KvError> {
        let Some(lease) = self.member_lease else { return Ok(()) };
        if self.member_renewed_ms.is_some_and(|at| now_ms.saturating_sub(at) < ttl_ms / 3) {
            return Ok(());
        }
        match self.kv.keep_alive(lease).await {
            Ok(left) if left > 0 => {
                self.member_renewed_ms = Some(now_ms);
                Ok(())
            }
            Ok(_) | Err(KvError::LeaseNotFound) => {
                // Expired: the member key went with it; the next publish
                // grants a new lease.
                self.member_lease = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn member_lease(&mut self, ttl_ms: u64) -> Result<i64, KvError> {
        if let Some(lease) = self.member_lease {
            match self.kv.keep_alive(lease).await {
                Ok(left) if left > 0 => return Ok(lease),
                Ok(_) | Err(KvError::LeaseNotFound) => self.member_lease = None,
                Err(e) => return Err(e),
            }
        }
        let ttl_s = i64::try_from(ttl_ms.div_ceil(1000)).unwrap_or(i64::MAX);
        let (lease, _) = self.kv.grant(ttl_s).await?;
        self.member_lease = Some(lease);
        Ok(lease)
    }

    /// Writes `sync` for this leader: compare-and-swap on the revision read,
    /// or create-only when it was absent.
    pub async fn write_sync(
        &self,
        members: &BTreeSet<String>,
        quorum: Option<u32>,
        expected_revision: Option<u64>,
    ) -> Result<bool, KvError> {
        let key = self.keys.sync();
        let compare = match expected_revision {
            Some(r) => {
                Compare::ModRevision { key: key.clone(), revision: i64::try_from(r).unwrap_or(i64::MAX) }
            }
            None => Compare::CreateRevision { key: key.clone(), revision: 0 },
        };
        let put = Op::Put { key, value: codec::encode_sync(&self.name, members, quorum), lease: 0 };
        self.kv.txn(vec![compare], vec![put], vec![]).await
    }

    /// Deletes `failover` if it is still the request that was read.
    pub async fn clear_failover(&self, revision: u64) -> Result<bool, KvError> {
        let key = self.keys.failover();
        let compare =
            Compare::ModRevision { key: key.clone(), revision: i64::try_from(revision).unwrap_or(i64::MAX) };
        self.kv.txn(vec![compare], vec![Op::Delete { key }], vec![]).await
    }

    /// Replaces `history`, keeping the reason and time of switches already
    /// recorded; new ones get Patroni's usual reason and `wall_ms`.
    pub async fn write_history(
        &self,
        switches: &[TimelineSwitch],
        known: &[HistoryEntry],
        wall_ms: i64,
    ) -> Result<bool, KvError> {
        let entries: Vec<HistoryEntry> = switches
            .iter()
            .map(|s| {
                let old =
                    known.iter().find(|e| e.switch.timeline == s.timeline && e.switch.fork_lsn == s.fork_lsn);
                HistoryEntry {
                    switch: s.clone(),
                    reason: old
                        .map_or_else(|| "no recovery target specified".to_owned(), |e| e.reason.clone()),
                    timestamp: old
                        .and_then(|e| e.timestamp.clone())
                        .or_else(|| Some(codec::format_timestamp(wall_ms))),
                }
            })
            .collect();
        let put = Op::Put { key: self.keys.history(), value: codec::encode_history(&entries), lease: 0 };
        self.kv.txn(vec![], vec![put], vec![]).await
    }

    /// Writes `failsafe`: the members allowed to take the lock while
    /// failsafe mode is on, with their API URLs from the view.
    pub async fn write_failsafe(
        &self,
        members: &BTreeSet<String>,
        view: &ClusterView,
    ) -> Result<bool, KvError> {
        let urls: BTreeMap<String, String> = members
            .iter()
            .map(|m| {
                let url = if *m == self.name {
                    self.api_url.clone()
                } else {
                    view.members.get(m).map(|x| x.api_url.clone()).unwrap_or_default()
                };
                (m.clone(), url)
            })
            .collect();
        let put = Op::Put { key: self.keys.failsafe(), value: codec::encode_failsafe(&urls), lease: 0 };
        self.kv.txn(vec![], vec![put], vec![]).await
    }
}
