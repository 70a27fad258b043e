//! What the node sees in the DCS (etcd), as typed facts.
//!
//! These mirror Patroni's keys under `/<namespace>/<scope>/` (see
//! `reference/patroni-interfaces.md`, section 2). Parsing the JSON values is
//! the runtime's job; a value it cannot parse arrives here as absent, never as
//! a guess.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::pg::TimelineSwitch;

/// The DCS as seen in one step: a consistent read, or the fact that it could
/// not be read.
// One observation holds one view; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DcsView {
    Reachable(ClusterView),
    /// No answer (timeout or error) since `since_ms` on the node's monotonic
    /// clock. Unknown is not lost (safety rule 6).
    Unreachable {
        since_ms: u64,
    },
}

/// One consistent read of the cluster prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The etcd header revision of the read. A view older than one already
    /// seen is ignored.
    pub revision: u64,
    /// `initialize`: `None` when absent, `Some("")` while a bootstrap runs,
    /// else the system identifier of the cluster.
    pub initialize: Option<String>,
    /// `mod_revision` of `initialize` (0 when absent): clearing the key
    /// compares it, so that a clear never deletes a key taken since.
    #[serde(default)]
    pub initialize_revision: u64,
    /// `config`, parsed; `None` when absent or invalid.
    pub config: Option<DynamicConfig>,
    pub leader: Option<LeaderKey>,
    pub members: BTreeMap<String, Member>,
    pub sync: Option<SyncKey>,
    pub failover: Option<FailoverKey>,
    /// `history`: the timeline switches of the cluster, oldest first.
    pub history: Vec<TimelineSwitch>,
    /// `status`: the leader's last published WAL position.
    pub optime_lsn: Option<u64>,
    /// `failsafe`: the members the leader last saw, when failsafe mode is on.
    pub failsafe: Option<BTreeSet<String>>,
}

impl ClusterView {
    /// The timeline a new leader must be on at least: the last switch's
    /// timeline plus one, as in Patroni (`[]` means timeline 1).
    pub fn cluster_timeline(&self) -> u32 {
        self.history.last().map_or(1, |s| s.timeline.saturating_add(1))
    }

    /// The leader's name, when the key exists.
    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.name.as_str())
    }
}

/// The `leader` key: who holds the lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderKey {
    pub name: String,
    /// `mod_revision` of the key.
    pub revision: u64,
}

/// A member's published state (`members/<name>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub role: MemberRole,
    pub state: MemberState,
    pub timeline: u32,
    /// WAL position: written location on a primary, max(received, replayed)
    /// on a replica.
    pub lsn: u64,
    pub tags: Tags,
    pub api_url: String,
    pub conn_url: String,
}

impl Member {
    pub fn is_running(&self) -> bool {
        self.state == MemberState::Running
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberRole {
    Primary,
    Replica,
    #[default]
    Uninitialized,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberState {
    Running,
    Starting,
    Stopping,
    #[default]
    Stopped,
    Crashed,
    CreatingReplica,
    InitializingNewCluster,
    Rewinding,
}

/// A member's tags (Patroni's `tags` section).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    pub nofailover: bool,
    /// Higher wins at equal WAL position; 0 or less behaves like `nofailover`.
    pub failover_priority: i64,
    pub nosync: bool,
    pub noloadbalance: bool,
    pub replicatefrom: Option<String>,
    pub clonefrom: bool,
}

impl Tags {
    /// Patroni's default priority is 1.
    pub fn new() -> Tags {
        Tags { failover_priority: 1, ..Tags::default() }
    }

    /// Whether this member may ever be promoted (Patroni `tags.py`: a
    /// priority of zero or less means the same as `nofailover`).
    pub fn can_fail_over(&self) -> bool {
        !self.nofailover && self.failover_priority > 0
    }
}

/// The `sync` key: who the leader says Postgres waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncKey {
    pub leader: Option<String>,
    pub members: BTreeSet<String>,
    /// Quorum mode: how many of `members` have each acknowledged commit.
    /// Patroni's JSON field `quorum` is the other side of the same promise,
    /// the number of other members a candidate must see
    /// (`members - quorum`); the runtime's codec converts.
    pub quorum: Option<u32>,
    pub revision: u64,
}

impl SyncKey {
    /// How many other members of the key a candidate must see at or behind
    /// its position to be sure it has every acknowledged commit: any set of
    /// `quorum` members overlaps any `members - quorum + 1` (Patroni's
    /// `quorum` field). A key promising nothing (`quorum` 0) needs all.
    pub fn votes_needed(&self) -> u32 {
        let members = self.members.len() as u32;
        members.saturating_sub(self.quorum.unwrap_or(0))
    }
}

/// The `failover` key: a switchover (with `leader`) or a manual failover
/// (only `candidate`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverKey {
    pub leader: Option<String>,
    pub candidate: Option<String>,
    /// Wall-clock time, milliseconds since the epoch.
    pub scheduled_at_wall_ms: Option<i64>,
    pub revision: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMode {
    #[default]
    Off,
    On,
    Quorum,
}

/// Dynamic configuration (the `config` key, seeded from `bootstrap.dcs`), in
/// the core's units. Defaults are Patroni's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicConfig {
    pub ttl_ms: u64,
    pub loop_wait_ms: u64,
    pub retry_timeout_ms: u64,
    pub maximum_lag_on_failover_bytes: u64,
    /// `None` is Patroni's -1: no limit.
    pub maximum_lag_on_syncnode_bytes: Option<u64>,
    pub synchronous_mode: SyncMode,
    pub synchronous_mode_strict: bool,
    pub synchronous_node_count: u32,
    pub failsafe_mode: bool,
    pub check_timeline: bool,
    pub use_pg_rewind: bool,
    pub primary_start_timeout_ms: u64,
    pub primary_stop_timeout_ms: u64,
    pub pause: bool,
    /// keel's own: the largest rate difference between this node's clock and
    /// etcd's, in parts per million. The lease deadline gives it back.
    pub max_clock_drift_ppm: u64,
    /// Local settings (`postgresql.remove_data_directory_on_*` in the node's
    /// own file; the agent sets them over the cluster's config): whether a
    /// node whose history diverged may delete its data directory and clone
    /// afresh when a rewind failed, or when no rewind is possible. Patroni's
    /// defaults, off: in asynchronous mode the diverged part can hold
    /// acknowledged writes, and deleting them is the operator's choice.
    #[serde(default)]
    pub remove_data_directory_on_rewind_failure: bool,
    #[serde(default)]
    pub remove_data_directory_on_diverged_timelines: bool,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        DynamicConfig {
            ttl_ms: 30_000,
            loop_wait_ms: 10_000,
            retry_timeout_ms: 10_000,
            maximum_lag_on_failover_bytes: 1_048_576,
            maximum_lag_on_syncnode_bytes: None,
            synchronous_mode: SyncMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            failsafe_mode: false,
            check_timeline: false,
            use_pg_rewind: false,
            primary_start_timeout_ms: 300_000,
            primary_stop_timeout_ms: 0,
            pause: false,
            max_clock_drift_ppm: 10_000,
            remove_data_directory_on_rewind_failure: false,
            remove_data_directory_on_diverged_timelines: false,
        }
    }
}

/// The lease arithmetic (`lease_validity_ms`, `gentle_demote_ms`) lives with
/// the lease rules, in `decide/lease.rs`.
impl DynamicConfig {
    pub fn sync_enabled(&self) -> bool {
        self.synchronous_mode != SyncMode::Off
    }
}
