//! The one serializable memory a node keeps between steps.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::dcs::DynamicConfig;
use crate::pg::SyncNames;
use crate::role::Role;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// This member's name.
    pub name: String,
    pub role: Role,
    /// While this node holds the leader lease: the instant (own monotonic
    /// clock) at which it must no longer be writable. The last confirmed
    /// renewal's send time plus the TTL, less the drift margin (rule 1).
    pub lease_deadline_ms: Option<u64>,
    /// The highest DCS revision seen; older views are ignored.
    pub seen_revision: u64,
    /// The last dynamic config read from the DCS: what the node goes by while
    /// etcd is unreachable.
    pub config: DynamicConfig,
    /// The other members in the last view: whom failsafe mode must hear from.
    pub known_members: BTreeSet<String>,
    /// The highest WAL position known for the current leader's era (its
    /// member key, and `status` once that leader wrote it): the failover
    /// lag check's reference. It starts afresh when another leader is seen,
    /// so that a position on a branch the new leader's promotion cut off
    /// never holds up the next race.
    pub last_leader_lsn: u64,
    /// The `status` optime seen when the current leader was first seen: a
    /// value from the era before it, ignored until that leader rewrites
    /// `status`.
    #[serde(default)]
    pub optime_before_leader: Option<u64>,
    /// The last leader seen, to count leader changes.
    pub last_leader: Option<String>,
    pub leader_changes: u64,
    /// When this node, holding the lease, first saw its Postgres down.
    pub primary_down_since_ms: Option<u64>,
    /// Until when this node promised a failsafe leader not to race.
    pub failsafe_promise: Option<FailsafePromise>,
    /// A rewind ran since the last clone, and yet the history diverges.
    pub rewind_attempted: bool,
    /// The last rewind failed (its source unreachable, a wrong password,
    /// WAL recycled past the fork): tried again, unless the operator allows
    /// removing the data directory on rewind failure.
    #[serde(default)]
    pub rewind_failed: bool,
    /// Since when `initialize` has been taken with nobody bootstrapping.
    pub orphan_initialize_since_ms: Option<u64>,
    /// The `mod_revision` of the `initialize` key that count is for: a key
    /// taken again (a new revision) starts the count afresh.
    #[serde(default)]
    pub orphan_initialize_revision: u64,
    pub shutdown: bool,
    /// Since when this node, with no leader, has left the lock to the
    /// candidate of a switchover or failover request (rule 10: a request
    /// nobody carries out is cleared after a TTL).
    #[serde(default)]
    pub candidate_wait: Option<CandidateWait>,
    /// `synchronous_standby_names` as this primary last saw it, and its own
    /// WAL position when it first saw that value: a standby newly listed
    /// enters the sync key only once its flush position reaches it (rule 3,
    /// Patroni's `_primary_flush_lsn`).
    #[serde(default)]
    pub sync_names_seen: Option<SyncNames>,
    #[serde(default)]
    pub sync_names_since_lsn: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateWait {
    /// The `mod_revision` of the `failover` key waited on: a new request
    /// starts the count afresh.
    pub revision: u64,
    pub since_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafePromise {
    pub leader: String,
    pub until_ms: u64,
}

/// The lease arithmetic (`lease_remaining_ms`, `gentle_demote_in_ms`) lives
/// with the lease rules, in `decide/lease.rs`.
impl State {
    pub fn new(name: impl Into<String>) -> State {
        State {
            name: name.into(),
            role: Role::Uninitialized,
            lease_deadline_ms: None,
            seen_revision: 0,
            config: DynamicConfig::default(),
            known_members: BTreeSet::new(),
            last_leader_lsn: 0,
            optime_before_leader: None,
            last_leader: None,
            leader_changes: 0,
            primary_down_since_ms: None,
            failsafe_promise: None,
            rewind_attempted: false,
            rewind_failed: false,
            orphan_initialize_since_ms: None,
            orphan_initialize_revision: 0,
            shutdown: false,
            candidate_wait: None,
            sync_names_seen: None,
            sync_names_since_lsn: 0,
        }
    }
}
