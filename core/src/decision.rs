//! What `step` returns: the ordered actions, when to wake, and why.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dcs::{MemberRole, MemberState, Tags};
use crate::pg::{DataDir, PgFacts, PgProcess, SyncNames, TimelineSwitch};
use crate::role::Role;
use crate::time::secs;

/// One step's output. The runtime carries out `actions` in order, stops at
/// the first that fails, and reports every outcome in the next observation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub reason: Reason,
    /// Step again after this long at the latest (0: as soon as the actions
    /// are done).
    pub wake_after_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Create `initialize` if absent (create-only transaction).
    TakeInitializeKey,
    /// Delete `initialize` if it is still the key seen: the empty string at
    /// `revision` (its `mod_revision` in the view). After a failed bootstrap
    /// (Patroni's `cancel_initialization`; the runtime also moves a
    /// half-made data directory aside), or when it was orphaned. Comparing
    /// the value alone would let two members clearing one stale key at once
    /// delete the winner's fresh one (found by keel-sim, seed 1836).
    CancelInitialize {
        revision: u64,
    },
    /// Run initdb with the configured options.
    Bootstrap,
    /// Write the system identifier into `initialize`.
    WriteInitializeKey {
        system_id: u64,
    },
    /// Seed `config` from the local `bootstrap.dcs`.
    WriteClusterConfig,
    /// Base backup from `source` into the empty data directory.
    CloneFrom {
        source: String,
    },
    /// Create `leader` with this node's lease, only if absent.
    AcquireLease,
    /// Keep the lease alive, only while `leader` names this node; then write
    /// `status` with the optime.
    RenewLease {
        optime_lsn: u64,
    },
    /// Delete `leader`, only if it names this node; `status` gets the optime.
    ReleaseLease {
        optime_lsn: u64,
    },
    /// `pg_ctl promote`.
    Promote,
    /// Stop accepting writes.
    Demote {
        mode: DemoteMode,
    },
    StartPostgres {
        role: StartAs,
    },
    StopPostgres {
        mode: StopMode,
    },
    /// Restart on an operator's request, in the same role.
    RestartPostgres,
    /// Point `primary_conninfo` at `upstream` (the leader when `None` is not
    /// meant: `None` means no upstream at all) and reload.
    Follow {
        upstream: Option<String>,
    },
    /// Start Postgres alone until it reaches a clean shutdown, as pg_rewind
    /// requires of its target.
    RecoverCrash,
    Rewind {
        source: String,
    },
    /// Remove the data directory and clone again from `source`.
    Reinitialize {
        source: String,
    },
    PublishMember(MemberStatus),
    /// Write `sync` (compare-and-swap on `expected_revision`; `None` means
    /// create only if absent).
    WriteSyncKey {
        members: BTreeSet<String>,
        quorum: Option<u32>,
        expected_revision: Option<u64>,
    },
    /// Set `synchronous_standby_names` and reload.
    SetSyncStandbyNames(SyncNames),
    /// Delete `failover` (compare-and-swap on its revision).
    ClearFailoverRequest {
        revision: u64,
    },
    /// Replace `history` with these switches.
    WriteHistory {
        switches: Vec<TimelineSwitch>,
    },
    /// Write `failsafe`: the members allowed to take the lock while failsafe
    /// mode is on (Patroni's `/failsafe` key).
    WriteFailsafeKey {
        members: BTreeSet<String>,
    },
    /// Ask each member over its REST API to confirm this node as primary
    /// while etcd is unreachable (Patroni's failsafe mode).
    CheckFailsafe {
        members: BTreeSet<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DemoteMode {
    /// CHECKPOINT, fast shutdown, start again as a read-only standby.
    Graceful,
    /// Immediate shutdown (no more writes now), start again as a standby.
    Immediate,
    /// Fast shutdown and stay down (agent shutdown).
    Offline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopMode {
    Fast,
    Immediate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartAs {
    Primary,
    /// A standby streaming from `upstream`, or from nobody yet.
    Replica {
        upstream: Option<String>,
    },
}

/// What the node publishes in `members/<name>` (the runtime adds its URLs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub role: MemberRole,
    pub state: MemberState,
    pub timeline: u32,
    pub lsn: u64,
    pub tags: Tags,
}

impl MemberStatus {
    /// A node's member-key status from its role and Postgres facts: a
    /// leader whose Postgres is down is still the primary member, and the
    /// role's work in progress (bootstrap, clone, rewind) shows as its state.
    pub fn of(role: Role, pg: &PgFacts, tags: &Tags) -> MemberStatus {
        let member_role = match (&pg.data, pg.process) {
            (DataDir::Empty, _) => MemberRole::Uninitialized,
            (_, PgProcess::RunningPrimary) => MemberRole::Primary,
            _ if role == Role::Leader && !pg.is_running_replica() => MemberRole::Primary,
            _ => MemberRole::Replica,
        };
        let state = match (role, pg.process) {
            (Role::Bootstrapping, _) => MemberState::InitializingNewCluster,
            (Role::Cloning, _) => MemberState::CreatingReplica,
            (Role::Rewinding, _) => MemberState::Rewinding,
            (_, PgProcess::RunningPrimary | PgProcess::RunningReplica) => MemberState::Running,
            (_, PgProcess::Starting) => MemberState::Starting,
            (Role::Leader, PgProcess::Stopped) => MemberState::Crashed,
            (_, PgProcess::Stopped) => MemberState::Stopped,
        };
        MemberStatus {
            role: member_role,
            state,
            timeline: pg.timeline,
            lsn: pg.wal_position(),
            tags: tags.clone(),
        }
    }
}

impl Action {
    /// Actions that build or repair the data directory, which can take
    /// minutes: the member key announces them before they start.
    pub fn is_long_work(&self) -> bool {
        matches!(
            self,
            Action::Bootstrap
                | Action::CloneFrom { .. }
                | Action::Reinitialize { .. }
                | Action::Rewind { .. }
        )
    }

    /// Actions that leave no state to follow up on: the next step may wait
    /// for the loop timer after them.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            Action::RenewLease { .. }
                | Action::PublishMember(_)
                | Action::CheckFailsafe { .. }
                | Action::WriteFailsafeKey { .. }
        )
    }
}

/// Why a member may not take the lease. `Display` completes "candidate
/// pg2 is …", "I am …" and "I do not race: …".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unfit {
    NoFailoverTag,
    Lagging { lag_bytes: u64, max_bytes: u64 },
    OlderTimeline { timeline: u32, cluster_timeline: u32 },
    Diverged { fork_lsn: u64 },
    NotSyncStandby,
    QuorumNotVisible { votes: u32, needed: u32 },
    BehindMember { member: String },
    NotRunning,
    UnknownMember,
    NotInFailsafeSet,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NoFailoverTag => write!(f, "tagged nofailover"),
            Unfit::Lagging { lag_bytes, max_bytes } => {
                write!(f, "{lag_bytes} bytes behind the leader's last position (maximum_lag_on_failover is {max_bytes})")
            }
            Unfit::OlderTimeline { timeline, cluster_timeline } => {
                write!(f, "on timeline {timeline}, behind the cluster's timeline {cluster_timeline}")
            }
            Unfit::Diverged { fork_lsn } => {
                write!(f, "on a history that diverged from the cluster's at {}", Lsn(*fork_lsn))
            }
            Unfit::NotSyncStandby => write!(f, "not a synchronous standby"),
            Unfit::QuorumNotVisible { votes, needed } => {
                write!(f, "short of quorum votes ({votes} other members of the sync key not ahead of it, {needed} needed)")
            }
            Unfit::BehindMember { member } => write!(f, "{member} is ahead"),
            Unfit::NotRunning => write!(f, "not running"),
            Unfit::UnknownMember => write!(f, "not a member of the cluster"),
            Unfit::NotInFailsafeSet => write!(f, "not listed in the failsafe key"),
        }
    }
}

/// An LSN rendered the way Postgres does: `0/3000060`.
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The local setting that would let a diverged node delete its data
/// directory and clone afresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataRemoval {
    OnRewindFailure,
    OnDivergedTimelines,
}

impl fmt::Display for DataRemoval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataRemoval::OnRewindFailure => "remove_data_directory_on_rewind_failure",
            DataRemoval::OnDivergedTimelines => "remove_data_directory_on_diverged_timelines",
        })
    }
}

/// Why a diverged node cannot rewind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoRewind {
    /// `use_pg_rewind` is off.
    Disabled,
    /// Neither `wal_log_hints` nor data checksums are on: pg_rewind refuses.
    NotRewindable,
    /// A rewind ran and the history still diverges.
    StillDiverged,
    /// The rewind failed.
    Failed,
}

impl fmt::Display for NoRewind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoRewind::Disabled => "use_pg_rewind is off",
            NoRewind::NotRewindable => "neither wal_log_hints nor data checksums are on",
            NoRewind::StillDiverged => "a rewind already ran and the history still diverges",
            NoRewind::Failed => "the rewind failed",
        })
    }
}

/// Why the leader refused a switchover or failover request (and cleared
/// it), as Patroni's 412 answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwitchoverRefusal {
    /// The request names another member as the leader to step down.
    OtherLeader {
        leader: String,
    },
    /// Due so long ago that carrying it out now would surprise whoever
    /// scheduled it.
    ScheduledLongAgo {
        late_ms: u64,
    },
    /// The request names the leader itself as candidate.
    CandidateIsLeader {
        candidate: String,
    },
    CandidateUnfit {
        candidate: String,
        unfit: Unfit,
    },
    /// Paused, a switchover needs a named candidate: nobody else would race.
    PausedWithoutCandidate,
    /// No member but the leader may lead.
    NoFitCandidate,
}

impl fmt::Display for SwitchoverRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchoverRefusal::OtherLeader { leader } => {
                write!(f, "it names {leader} as leader, but I am the leader")
            }
            SwitchoverRefusal::ScheduledLongAgo { late_ms } => {
                write!(f, "it was scheduled {} s ago, too long past to carry out", late_ms / 1000)
            }
            SwitchoverRefusal::CandidateIsLeader { candidate } => {
                write!(f, "{candidate} is already the leader")
            }
            SwitchoverRefusal::CandidateUnfit { candidate, unfit } => {
                write!(f, "candidate {candidate} is {unfit}")
            }
            SwitchoverRefusal::PausedWithoutCandidate => {
                write!(f, "a switchover in maintenance mode needs a candidate")
            }
            SwitchoverRefusal::NoFitCandidate => write!(f, "no good candidates have been found"),
        }
    }
}

/// Why a reinitialize request was refused (Patroni's words, which the REST
/// API answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReinitializeRefusal {
    /// The leader holds the only complete copy.
    Leader,
    /// Nobody to clone from.
    NoLeader,
}

impl fmt::Display for ReinitializeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReinitializeRefusal::Leader => "I am the leader, can not reinitialize",
            ReinitializeRefusal::NoLeader => "cluster has no leader, can not reinitialize",
        })
    }
}

/// One step of the leader's synchronous replication management (rule 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncUpdate {
    /// Synchronous mode is off: `synchronous_standby_names` is emptied.
    OffStopWaiting,
    /// Synchronous mode is off: the sync key forgets its standbys.
    OffEmptyingKey,
    /// The key is claimed for this leader, naming nobody yet.
    ClaimingKey,
    /// Members leave the key before Postgres stops waiting for them.
    Removing { members: BTreeSet<String> },
    /// `synchronous_standby_names` changes.
    StandbyNames { names: SyncNames },
    /// Members Postgres confirmed synchronous enter the key.
    Adding { members: BTreeSet<String> },
    /// Quorum mode: the key's voters and quorum change.
    QuorumKey { members: BTreeSet<String>, quorum: u32 },
}

impl fmt::Display for SyncUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncUpdate::OffStopWaiting => {
                write!(f, "synchronous mode is off: commits no longer wait for standbys")
            }
            SyncUpdate::OffEmptyingKey => write!(f, "synchronous mode is off: emptying the sync key"),
            SyncUpdate::ClaimingKey => write!(f, "claiming the sync key for this leader, naming nobody yet"),
            SyncUpdate::Removing { members } => {
                write!(f, "removing {} from the sync key first", Names(members))
            }
            SyncUpdate::StandbyNames { names } => {
                write!(f, "synchronous_standby_names becomes {}", StandbyNames(names))
            }
            SyncUpdate::Adding { members } => {
                write!(f, "{} confirmed synchronous: adding to the sync key", Names(members))
            }
            SyncUpdate::QuorumKey { members, quorum } => {
                write!(f, "sync key becomes {} with quorum {quorum}", Names(members))
            }
        }
    }
}

/// Member names as a reason lists them: `pg2, pg3`.
struct Names<'a>(&'a BTreeSet<String>);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// `synchronous_standby_names` as a reason shows it: `FIRST 1 (pg2)`,
/// `ANY 1 (pg2, pg3)`, or `'' (asynchronous)`.
struct StandbyNames<'a>(&'a SyncNames);

impl fmt::Display for StandbyNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.0;
        if names.members.is_empty() {
            return f.write_str("'' (asynchronous)");
        }
        let kind = if names.quorum { "ANY" } else { "FIRST" };
        write!(f, "{kind} {} ({})", names.num, Names(&names.members))
    }
}

/// Why a decision was made. `Display` reads as an operator's log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    // Safety.
    LeaseExpired { overdue_ms: u64 },
    NoLease,
    LockLost { holder: Option<String> },
    LeaseRunningOut { remaining_ms: u64 },
    FailsafeHolding { members: usize },
    DcsUnreachableLeader { unreachable_ms: u64, remaining_ms: u64 },
    DcsUnreachableReplica { unreachable_ms: u64 },
    StaleView { revision: u64, seen_revision: u64 },
    // Shutdown and operator requests.
    ShuttingDown { leader: bool },
    ShuttingDownWithoutEtcd,
    ShutDown,
    Restarting,
    Reinitializing { source: String },
    ReinitializeRefused { why: ReinitializeRefusal },
    FailsafePromise { leader: String },
    Paused { leader: bool },
    // Bootstrap and clone.
    SystemIdMismatch { local: u64, cluster: String },
    NoClusterForExistingData { system_id: u64 },
    DataDirectoryEmptyReleasing,
    BootstrapRace,
    WonBootstrapRace,
    LostBootstrapRace,
    BootstrapFailed,
    BootstrapInProgress,
    OrphanedInitialize { idle_ms: u64 },
    BootstrapDoneTakingLease,
    WaitingForLeaderToClone,
    Cloning { source: String },
    CloneFailed { source: String },
    // Leader.
    LeaderHealthy { name: String },
    Promoting,
    ClaimingSyncKey,
    PublishingHistory { timeline: u32 },
    WritingInitializeKey,
    SeedingConfig,
    SyncChange { change: SyncUpdate },
    SyncStrictWithoutStandby,
    PrimaryDown { down_ms: u64, timeout_ms: u64 },
    PrimaryStartTimedOut { down_ms: u64 },
    PrimaryStartFailed,
    StartingAsPrimary,
    HolderUnfit { why: Unfit },
    // Switchover.
    Switchover { candidate: Option<String> },
    SwitchoverScheduled { in_ms: u64 },
    SwitchoverRefused { why: SwitchoverRefusal },
    // Election.
    TakingLease,
    ReclaimingLease,
    NotHealthiest { why: Unfit },
    LeaseTakenElsewhere,
    WaitingForCandidate { candidate: String },
    CandidateUnfit { why: Unfit },
    FailoverRequestExpired { candidate: String, waited_ms: u64 },
    NoLeaderStartingReadOnly,
    // Following.
    Following { leader: String, upstream: String },
    StartingReplica { upstream: String },
    ChangingUpstream { upstream: String },
    StoppingToRewind { fork_lsn: u64 },
    RecoveringBeforeRewind,
    RecoveringCrashedPrimary,
    Rewinding { source: String, fork_lsn: u64 },
    RewindImpossible { why: NoRewind },
    DivergedWaitingForOperator { why: NoRewind, setting: DataRemoval },
    WaitingForPostgres,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            LeaseExpired { overdue_ms } => write!(
                f,
                "demoting: the lease deadline passed {} ago without a confirmed renewal",
                secs(*overdue_ms)
            ),
            NoLease => write!(f, "demoting: Postgres runs as primary but I hold no lease"),
            LockLost { holder: Some(h) } => {
                write!(f, "demoting: the leader lock is gone, {h} holds it now")
            }
            LockLost { holder: None } => write!(f, "demoting: the leader lock is gone"),
            LeaseRunningOut { remaining_ms } => write!(
                f,
                "demoting gently: the lease expires in {} and no renewal was confirmed",
                secs(*remaining_ms)
            ),
            FailsafeHolding { members } => write!(
                f,
                "failsafe: etcd is unreachable, asking all {members} other members to confirm me as primary"
            ),
            DcsUnreachableLeader { unreachable_ms, remaining_ms } => write!(
                f,
                "no action: etcd has not answered for {}; I stay primary while the lease lasts ({} left)",
                secs(*unreachable_ms),
                secs(*remaining_ms)
            ),
            DcsUnreachableReplica { unreachable_ms } => write!(
                f,
                "no action: etcd has not answered for {}; nobody promotes without it",
                secs(*unreachable_ms)
            ),
            StaleView { revision, seen_revision } => write!(
                f,
                "ignored: the DCS view at revision {revision} is older than revision {seen_revision}; acting as if etcd were unreachable"
            ),
            ShuttingDown { leader: true } => {
                write!(f, "shutting down: stopping Postgres, then releasing the leader lock")
            }
            ShuttingDown { leader: false } => write!(f, "shutting down: stopping Postgres"),
            ShuttingDownWithoutEtcd => write!(
                f,
                "shutting down: stopping Postgres; etcd is unreachable, so the leader lock will expire on its own"
            ),
            ShutDown => write!(f, "no action: shut down"),
            Restarting => write!(f, "restarting Postgres on request"),
            Reinitializing { source } => {
                write!(f, "reinitializing: removing the data directory and cloning from {source}")
            }
            ReinitializeRefused { why } => write!(f, "reinitialize refused: {why}"),
            FailsafePromise { leader } => write!(
                f,
                "no action: I confirmed {leader} as primary in failsafe mode and will not race for the lock"
            ),
            Paused { leader: true } => {
                write!(f, "paused: no automatic action; I keep the leader lock")
            }
            Paused { leader: false } => write!(f, "paused: no automatic action"),
            SystemIdMismatch { local, cluster } => write!(
                f,
                "refusing to run: the data directory's system identifier {local} is not the cluster's {cluster}"
            ),
            NoClusterForExistingData { system_id } => write!(
                f,
                "refusing to run: this scope holds no cluster, but the data directory holds one (system identifier {system_id}); \
                 check scope and namespace, or, to re-seed the cluster from this data on purpose, write {system_id} to the scope's initialize key"
            ),
            DataDirectoryEmptyReleasing => {
                write!(f, "releasing the leader lock: the data directory is empty")
            }
            BootstrapRace => write!(f, "bootstrap: no cluster yet, racing for the initialize key"),
            WonBootstrapRace => write!(f, "bootstrap: won the initialize key, running initdb"),
            LostBootstrapRace => {
                write!(f, "bootstrap: another member is initializing the cluster; waiting for a leader to clone")
            }
            BootstrapFailed => write!(f, "bootstrap failed: releasing the initialize key"),
            BootstrapInProgress => write!(f, "bootstrap: initdb is running"),
            OrphanedInitialize { idle_ms } => write!(
                f,
                "bootstrap: the initialize key was taken {} ago but nobody is initializing; clearing it to race again",
                secs(*idle_ms)
            ),
            BootstrapDoneTakingLease => write!(f, "bootstrap: initdb done, taking the leader lock"),
            WaitingForLeaderToClone => write!(f, "no action: waiting for a leader to clone from"),
            Cloning { source } => write!(f, "cloning from {source} (base backup)"),
            CloneFailed { source } => write!(f, "clone from {source} failed; will try again"),
            LeaderHealthy { name } => write!(f, "no action: I am {name}, the leader with the lock"),
            Promoting => write!(f, "promoting: I hold the lock"),
            ClaimingSyncKey => write!(f, "sync: writing the sync key for myself before promoting"),
            PublishingHistory { timeline } => {
                write!(f, "leader: recording the switch to timeline {timeline} in the history")
            }
            WritingInitializeKey => write!(f, "leader: recording the system identifier in the initialize key"),
            SeedingConfig => write!(f, "leader: the config key is missing, writing bootstrap.dcs"),
            SyncChange { change } => write!(f, "sync: {change}"),
            SyncStrictWithoutStandby => write!(f, "sync: strict mode and no healthy standby: commits wait"),
            PrimaryDown { down_ms, timeout_ms } => write!(
                f,
                "starting Postgres as primary: it has been down {} (primary_start_timeout {})",
                secs(*down_ms),
                secs(*timeout_ms)
            ),
            PrimaryStartFailed => {
                write!(f, "releasing the leader lock: Postgres failed to start as primary and another member can take over")
            }
            PrimaryStartTimedOut { down_ms } => write!(
                f,
                "releasing the leader lock: Postgres has been down {}, past primary_start_timeout",
                secs(*down_ms)
            ),
            StartingAsPrimary => write!(f, "starting Postgres as primary: I hold the lock"),
            HolderUnfit { why } => {
                write!(f, "releasing the leader lock without promoting: I am {why}")
            }
            Switchover { candidate: Some(c) } => {
                write!(f, "switchover to {c}: demoting, then releasing the leader lock")
            }
            Switchover { candidate: None } => {
                write!(f, "switchover: demoting, then releasing the leader lock")
            }
            SwitchoverScheduled { in_ms } => {
                write!(f, "no action: switchover scheduled in {}", secs(*in_ms))
            }
            SwitchoverRefused { why } => write!(f, "switchover refused: {why}"),
            TakingLease => {
                write!(f, "no leader: I am the healthiest member, taking the leader lock")
            }
            ReclaimingLease => write!(f, "the leader key names me: confirming the lease"),
            NotHealthiest { why } => write!(f, "no leader, but I do not race: {why}"),
            LeaseTakenElsewhere => write!(f, "no action: another member took the leader lock"),
            WaitingForCandidate { candidate } => {
                write!(f, "no leader: leaving the lock to the requested candidate {candidate}")
            }
            CandidateUnfit { why } => write!(
                f,
                "switchover to me refused: I am {why}; clearing the request so that the usual race runs"
            ),
            FailoverRequestExpired { candidate, waited_ms } => write!(
                f,
                "the request to hand over to {candidate} was not carried out in {}; clearing it so that the usual race runs",
                secs(*waited_ms)
            ),
            NoLeaderStartingReadOnly => {
                write!(f, "no leader: starting Postgres read-only before racing")
            }
            Following { leader, upstream } if leader == upstream => {
                write!(f, "no action: following leader {leader}")
            }
            Following { leader, upstream } => {
                write!(f, "no action: following {upstream} (leader {leader})")
            }
            StartingReplica { upstream } => write!(f, "starting Postgres as a replica of {upstream}"),
            ChangingUpstream { upstream } => write!(f, "following {upstream} now"),
            StoppingToRewind { fork_lsn } => write!(
                f,
                "stopping Postgres: its history diverged from the leader's at {}",
                Lsn(*fork_lsn)
            ),
            RecoveringCrashedPrimary => write!(
                f,
                "crash recovery: this former primary crashed; its WAL end is known only once recovered"
            ),
            RecoveringBeforeRewind => {
                write!(f, "crash recovery: pg_rewind needs a cleanly shut down data directory")
            }
            Rewinding { source, fork_lsn } => write!(
                f,
                "rewinding from {source}: history diverged at {}",
                Lsn(*fork_lsn)
            ),
            RewindImpossible { why } => write!(f, "cannot rewind ({why}); reinitializing"),
            DivergedWaitingForOperator { why, setting } => write!(
                f,
                "history diverged and cannot be rewound ({why}); waiting for the operator: \
                 keelctl reinit, or set postgresql.{setting}"
            ),
            WaitingForPostgres => write!(f, "no action: waiting for Postgres to finish starting"),
        }
    }
}
