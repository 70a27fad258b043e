//! The DCS layer: Patroni's key layout and values in etcd v3, written
//! against a small etcd-shaped trait ([`Kv`]) so that the same code runs on
//! real etcd ([`etcd::EtcdKv`]) and, in the simulator, on a simulated etcd.
//!
//! Values written by other tools or garbled are logged and treated as
//! absent (never a crash, never a reason to promote): see `codec`.

pub mod codec;
#[cfg(feature = "io")]
pub mod etcd;
pub mod keys;
pub mod mem;
pub mod patroni;

use std::fmt;

pub use keys::Keys;
pub use patroni::Dcs;

/// One key as etcd returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease the key is attached to (0: none).
    pub lease: i64,
}

/// A consistent read: the keys and the store's revision at that moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

/// A condition of a transaction (all must hold for the success branch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's value equals this.
    ValueEquals { key: String, value: Vec<u8> },
    /// The key's create revision equals this (0: the key is absent).
    CreateRevision { key: String, revision: i64 },
    /// The key's mod revision equals this.
    ModRevision { key: String, revision: i64 },
    /// The key is attached to this lease.
    Lease { key: String, lease: i64 },
}

impl Compare {
    /// The key the condition is about.
    pub fn key(&self) -> &str {
        match self {
            Compare::ValueEquals { key, .. }
            | Compare::CreateRevision { key, .. }
            | Compare::ModRevision { key, .. }
            | Compare::Lease { key, .. } => key,
        }
    }

    /// Whether the condition holds for the key as it is now (`None`:
    /// absent, whose revisions read 0), as etcd judges it.
    pub fn holds_for(&self, current: Option<&KeyValue>) -> bool {
        match self {
            Compare::ValueEquals { value, .. } => current.is_some_and(|kv| kv.value == *value),
            Compare::CreateRevision { revision, .. } => {
                current.map_or(0, |kv| kv.create_revision) == *revision
            }
            Compare::ModRevision { revision, .. } => current.map_or(0, |kv| kv.mod_revision) == *revision,
            Compare::Lease { lease, .. } => current.is_some_and(|kv| kv.lease == *lease),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8>, lease: i64 },
    Delete { key: String },
}

/// Why a request did not go through. Only [`KvError::Unavailable`] leaves
/// the outcome unknown (safety rule 6); the others are definite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    /// No answer in time, or the connection failed: it may have happened.
    Unavailable(String),
    /// The lease no longer exists.
    LeaseNotFound,
    /// etcd refused the request (permission, bad request).
    Rejected(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Unavailable(why) => write!(f, "etcd unavailable: {why}"),
            KvError::LeaseNotFound => write!(f, "etcd lease not found"),
            KvError::Rejected(why) => write!(f, "etcd refused the request: {why}"),
        }
    }
}

impl std::error::Error for KvError {}

/// The etcd operations keel needs. Every method answers within the
/// implementation's deadline or returns [`KvError::Unavailable`].
#[allow(async_fn_in_trait)]
pub trait Kv {
    /// Every key under `prefix`, in one consistent read.
    async fn range_prefix(&self, prefix: &str) -> Result<Range, KvError>;
    /// Runs `success` if every compare holds, else `failure`; true when
    /// the compares held.
    async fn txn(&self, compares: Vec<Compare>, success: Vec<Op>, failure: Vec<Op>) -> Result<bool, KvError>;
    /// A new lease; returns its id and the TTL etcd granted (seconds).
    async fn grant(&self, ttl_s: i64) -> Result<(i64, i64), KvError>;
    /// One keep-alive; returns the TTL left after it (0: the lease expired).
    async fn keep_alive(&self, lease: i64) -> Result<i64, KvError>;
    async fn revoke(&self, lease: i64) -> Result<(), KvError>;
}
