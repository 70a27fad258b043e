//! What the node sees of its local Postgres, as typed facts.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The local Postgres in one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgFacts {
    pub data: DataDir,
    pub process: PgProcess,
    /// The timeline of the last checkpoint or the running server.
    pub timeline: u32,
    /// On a primary: `pg_current_wal_lsn()`. On a stopped server: the end of
    /// local WAL (the checkpoint's redo or the last record).
    pub write_lsn: u64,
    /// On a replica: `pg_last_wal_receive_lsn()`.
    pub receive_lsn: u64,
    /// On a replica: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: u64,
    /// The member this replica streams from (resolved from
    /// `primary_conninfo`), and whether the WAL receiver is streaming.
    pub upstream: Option<String>,
    pub streaming: bool,
    /// The primary's view of its standbys (`pg_stat_replication`).
    pub replication: Vec<Standby>,
    /// `synchronous_standby_names` as the server runs with it now.
    pub sync_standby_names: SyncNames,
    /// The local timeline history file(s), oldest switch first.
    pub history: Vec<TimelineSwitch>,
    /// Which member's promotion started the local timeline, as keel recorded
    /// it in the data directory; `None` when unknown (timeline 1, or a data
    /// directory keel did not write).
    pub timeline_origin: Option<String>,
    /// A base backup's `backup_label` is in the data directory: the control
    /// file's "in production" is the source's, not a crash of this node.
    /// (Defaults to false in traces recorded before it existed.)
    #[serde(default)]
    pub backup_label: bool,
}

impl PgFacts {
    /// A data directory that was never initialised and no server.
    pub fn empty() -> PgFacts {
        PgFacts {
            data: DataDir::Empty,
            process: PgProcess::Stopped,
            timeline: 0,
            write_lsn: 0,
            receive_lsn: 0,
            replay_lsn: 0,
            upstream: None,
            streaming: false,
            replication: Vec::new(),
            sync_standby_names: SyncNames::default(),
            history: Vec::new(),
            timeline_origin: None,
            backup_label: false,
        }
    }

    /// Writable: running and not in recovery.
    pub fn is_running_primary(&self) -> bool {
        self.process == PgProcess::RunningPrimary
    }

    pub fn is_running_replica(&self) -> bool {
        self.process == PgProcess::RunningReplica
    }

    pub fn is_running(&self) -> bool {
        matches!(self.process, PgProcess::RunningPrimary | PgProcess::RunningReplica)
    }

    /// How far this node's WAL reaches: the written location on a primary,
    /// max(received, replayed) on a replica (Patroni's `_MemberStatus`).
    pub fn wal_position(&self) -> u64 {
        match self.process {
            PgProcess::RunningReplica => self.receive_lsn.max(self.replay_lsn),
            _ => self.write_lsn.max(self.receive_lsn).max(self.replay_lsn),
        }
    }

    pub fn system_id(&self) -> Option<u64> {
        match &self.data {
            DataDir::Initialised(c) => Some(c.system_id),
            DataDir::Empty => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataDir {
    /// Missing or empty: nothing to start.
    Empty,
    Initialised(ControlData),
}

/// What `pg_controldata` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlData {
    pub system_id: u64,
    pub state: ControlState,
    pub wal_log_hints: bool,
    pub data_checksums: bool,
}

impl ControlData {
    /// pg_rewind needs hint bits in WAL: `wal_log_hints` or checksums.
    pub fn rewindable(&self) -> bool {
        self.wal_log_hints || self.data_checksums
    }
}

/// `Database cluster state` from pg_control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlState {
    ShutDown,
    ShutDownInRecovery,
    /// "in production": running, or crashed while primary.
    InProduction,
    /// "in archive recovery": running, or crashed while a replica.
    InArchiveRecovery,
    /// Any other state (starting up, shutting down, in crash recovery).
    Other,
}

impl ControlState {
    /// pg_rewind refuses a target that was not shut down cleanly.
    pub fn is_clean(self) -> bool {
        matches!(self, ControlState::ShutDown | ControlState::ShutDownInRecovery)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PgProcess {
    Stopped,
    /// The postmaster runs but does not accept connections yet.
    Starting,
    RunningPrimary,
    RunningReplica,
}

/// One row of `pg_stat_replication`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standby {
    /// `application_name`: the member name.
    pub name: String,
    pub streaming: bool,
    pub sync_state: StandbySyncState,
    pub flush_lsn: u64,
    /// Time since the standby's last reply (`reply_time`), by the primary.
    pub reply_age_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StandbySyncState {
    Async,
    Potential,
    Sync,
    Quorum,
}

/// `synchronous_standby_names`, parsed: `FIRST n (a, b)` or `ANY n (a, b)`.
/// Empty members means asynchronous commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncNames {
    pub members: BTreeSet<String>,
    pub num: u32,
    pub quorum: bool,
}

/// One switch of timeline: `timeline` ended at `fork_lsn` when `new_leader`
/// was promoted to `timeline + 1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineSwitch {
    pub timeline: u32,
    pub fork_lsn: u64,
    /// Who was promoted; `None` in a local history file keel did not annotate.
    pub new_leader: Option<String>,
}
