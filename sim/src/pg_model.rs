//! A model of one PostgreSQL server, faithful enough to make failover bugs
//! visible: WAL as a chain of branches (each promotion starts one, with its
//! own timeline number and fork point), streaming replication that works
//! only along a linear history, synchronous commit, crash and clean stop,
//! promotion, pg_rewind and base backups.

use keel_core::{ControlData, ControlState, DataDir, PgFacts, PgProcess, Standby, SyncNames, TimelineSwitch};

/// A stretch of WAL written on one branch of history. A branch is what a
/// promotion starts; two promotions never share one, even when Postgres
/// gives both the same timeline number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub branch: u64,
    pub timeline: u32,
    pub promoted_by: Option<String>,
    pub start_lsn: u64,
    pub end_lsn: u64,
}

/// The WAL a data directory holds, oldest segment first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wal {
    pub segments: Vec<Segment>,
}

impl Wal {
    pub fn genesis(branch: u64) -> Wal {
        Wal { segments: vec![Segment { branch, timeline: 1, promoted_by: None, start_lsn: 0, end_lsn: 0 }] }
    }

    fn last(&self) -> &Segment {
        self.segments.last().expect("a WAL has at least its first segment")
    }

    pub fn lsn(&self) -> u64 {
        self.last().end_lsn
    }

    pub fn timeline(&self) -> u32 {
        self.last().timeline
    }

    /// Whether the write at `lsn` on `branch` is in this WAL.
    pub fn contains(&self, branch: u64, lsn: u64) -> bool {
        self.segments.iter().any(|s| s.branch == branch && s.start_lsn < lsn && lsn <= s.end_lsn)
    }

    /// Whether this WAL is a prefix of `other`: replication can continue
    /// from it.
    pub fn is_prefix_of(&self, other: &Wal) -> bool {
        let n = self.segments.len();
        if n > other.segments.len() {
            return false;
        }
        for (i, (mine, theirs)) in self.segments.iter().zip(&other.segments).enumerate() {
            let same_branch = mine.branch == theirs.branch && mine.start_lsn == theirs.start_lsn;
            let fits =
                if i + 1 == n { mine.end_lsn <= theirs.end_lsn } else { mine.end_lsn == theirs.end_lsn };
            if !same_branch || !fits {
                return false;
            }
        }
        true
    }

    /// The last LSN this WAL shares with `other`: where their histories
    /// fork (the end of the shorter one when one is a prefix of the other).
    pub fn fork_lsn(&self, other: &Wal) -> u64 {
        let mut common = 0;
        for (mine, theirs) in self.segments.iter().zip(&other.segments) {
            if mine.branch != theirs.branch || mine.start_lsn != theirs.start_lsn {
                return common;
            }
            common = mine.end_lsn.min(theirs.end_lsn);
            if mine.end_lsn != theirs.end_lsn {
                return common;
            }
        }
        common
    }

    /// The timeline history file Postgres would hold, annotated as keel does.
    pub fn history(&self) -> Vec<TimelineSwitch> {
        self.segments
            .windows(2)
            .map(|w| TimelineSwitch {
                timeline: w[0].timeline,
                fork_lsn: w[0].end_lsn,
                new_leader: w[1].promoted_by.clone(),
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct PgModel {
    pub system_id: Option<u64>,
    pub clean: bool,
    pub process: PgProcess,
    pub wal: Wal,
    pub upstream: Option<String>,
    pub streaming: bool,
    pub sync_names: SyncNames,
    /// No space left on the data directory's disk: no WAL can be written,
    /// so the server neither commits nor starts.
    pub disk_full: bool,
    /// `wal_log_hints` in this node's postgresql.conf.
    pub wal_log_hints: bool,
    /// The data directory was initialised with `--data-checksums` (a base
    /// backup or rewind copies the source's control file, and this with it).
    pub data_checksums: bool,
    /// How much WAL (in the model's LSN units) a primary keeps behind its
    /// current position (`wal_keep_size`); older WAL is recycled.
    pub wal_keep: u64,
}

/// Why pg_rewind refused to run or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewindError {
    /// Neither `wal_log_hints` nor data checksums: pg_rewind refuses.
    NotRewindable,
    /// The source recycled the WAL back to the fork point.
    WalGone { fork_lsn: u64, oldest_kept: u64 },
}

impl PgModel {
    pub fn empty() -> PgModel {
        PgModel {
            system_id: None,
            clean: true,
            process: PgProcess::Stopped,
            wal: Wal::genesis(0),
            upstream: None,
            streaming: false,
            sync_names: SyncNames::default(),
            disk_full: false,
            wal_log_hints: true,
            data_checksums: false,
            wal_keep: u64::MAX,
        }
    }

    pub fn initdb(&mut self, system_id: u64, branch: u64) {
        self.system_id = Some(system_id);
        self.wal = Wal::genesis(branch);
        self.clean = true;
        self.process = PgProcess::Stopped;
    }

    pub fn is_running(&self) -> bool {
        matches!(self.process, PgProcess::RunningPrimary | PgProcess::RunningReplica)
    }

    pub fn has_data(&self) -> bool {
        self.system_id.is_some()
    }

    pub fn start(&mut self, primary: bool, upstream: Option<String>) -> bool {
        if !self.has_data() || self.disk_full {
            return false;
        }
        self.process = if primary { PgProcess::RunningPrimary } else { PgProcess::RunningReplica };
        self.upstream = if primary { None } else { upstream };
        self.streaming = false;
        self.clean = false;
        true
    }

    pub fn stop(&mut self, clean: bool) {
        if self.process != PgProcess::Stopped {
            self.clean = clean;
        }
        self.process = PgProcess::Stopped;
        self.streaming = false;
    }

    pub fn crash(&mut self) {
        self.stop(false);
    }

    /// `pg_ctl promote`: a new branch on the next timeline number this
    /// server knows of.
    pub fn promote(&mut self, me: &str, branch: u64) -> bool {
        if self.process != PgProcess::RunningReplica {
            return false;
        }
        let lsn = self.wal.lsn();
        let timeline = self.wal.timeline() + 1;
        self.wal.segments.push(Segment {
            branch,
            timeline,
            promoted_by: Some(me.to_owned()),
            start_lsn: lsn,
            end_lsn: lsn,
        });
        self.process = PgProcess::RunningPrimary;
        self.upstream = None;
        self.streaming = false;
        true
    }

    /// Appends one commit's WAL and returns where it landed.
    pub fn write(&mut self) -> (u64, u64) {
        let last = self.wal.segments.last_mut().expect("a WAL has a segment");
        last.end_lsn += 1;
        (last.branch, last.end_lsn)
    }

    /// pg_rewind (or a base backup): the data directory becomes a copy of
    /// the source's, stopped and clean.
    pub fn copy_from(&mut self, source: &PgModel) {
        self.system_id = source.system_id;
        self.wal = source.wal.clone();
        self.data_checksums = source.data_checksums;
        self.clean = true;
        self.process = PgProcess::Stopped;
        self.upstream = None;
        self.streaming = false;
    }

    /// The oldest WAL position this server still holds.
    pub fn oldest_kept(&self) -> u64 {
        self.wal.lsn().saturating_sub(self.wal_keep)
    }

    /// pg_rewind from `source`: needs `wal_log_hints` or data checksums on
    /// this (the target) server, and the source's WAL back to the fork
    /// point; then the data directory is the source's, stopped and clean.
    pub fn rewind_from(&mut self, source: &PgModel) -> Result<(), RewindError> {
        if !self.wal_log_hints && !self.data_checksums {
            return Err(RewindError::NotRewindable);
        }
        let fork_lsn = self.wal.fork_lsn(&source.wal);
        let oldest_kept = source.oldest_kept();
        if fork_lsn < oldest_kept {
            return Err(RewindError::WalGone { fork_lsn, oldest_kept });
        }
        self.copy_from(source);
        Ok(())
    }

    pub fn facts(&self, replication: Vec<Standby>) -> PgFacts {
        let mut p = PgFacts::empty();
        let Some(system_id) = self.system_id else {
            return p;
        };
        let state = match (self.process, self.clean) {
            (PgProcess::RunningPrimary, _) => ControlState::InProduction,
            (PgProcess::RunningReplica | PgProcess::Starting, _) => ControlState::InArchiveRecovery,
            (PgProcess::Stopped, true) => ControlState::ShutDown,
            (PgProcess::Stopped, false) => ControlState::InProduction,
        };
        p.data = DataDir::Initialised(ControlData {
            system_id,
            state,
            wal_log_hints: self.wal_log_hints,
            data_checksums: self.data_checksums,
        });
        p.process = self.process;
        p.timeline = self.wal.timeline();
        let lsn = self.wal.lsn();
        p.write_lsn = lsn;
        if self.process == PgProcess::RunningReplica {
            p.receive_lsn = lsn;
            p.replay_lsn = lsn;
        }
        p.upstream = self.upstream.clone();
        p.streaming = self.streaming;
        p.replication = replication;
        p.sync_standby_names = self.sync_names.clone();
        p.history = self.wal.history();
        p.timeline_origin = self.wal.last().promoted_by.clone();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_behind_the_fork_is_a_prefix_of_the_new_timeline() {
        let mut primary = PgModel::empty();
        primary.initdb(1, 1);
        primary.start(true, None);
        for _ in 0..10 {
            primary.write();
        }
        let mut replica = PgModel::empty();
        replica.copy_from(&primary);
        primary.process = PgProcess::RunningReplica;
        primary.promote("pg1", 2);
        primary.write();
        assert!(replica.wal.is_prefix_of(&primary.wal));
        assert_eq!(primary.wal.history().len(), 1);
    }

    #[test]
    fn rewind_needs_hints_or_checksums_and_the_wal_back_to_the_fork() {
        let mut old = PgModel::empty();
        old.initdb(1, 1);
        old.start(false, None);
        for _ in 0..10 {
            old.write();
        }
        let mut new = old.clone();
        new.promote("b", 2);
        old.process = PgProcess::RunningPrimary;
        old.write();
        for _ in 0..100 {
            new.write();
        }
        assert_eq!(old.wal.fork_lsn(&new.wal), 10);
        let mut target = old.clone();
        target.wal_log_hints = false;
        assert_eq!(target.rewind_from(&new), Err(RewindError::NotRewindable));
        target.data_checksums = true;
        new.wal_keep = 50;
        assert_eq!(target.rewind_from(&new), Err(RewindError::WalGone { fork_lsn: 10, oldest_kept: 60 }));
        new.wal_keep = 100;
        assert_eq!(target.rewind_from(&new), Ok(()));
        assert!(target.wal.is_prefix_of(&new.wal));
    }

    #[test]
    fn two_promotions_with_the_same_timeline_number_diverge() {
        let mut a = PgModel::empty();
        a.initdb(1, 1);
        a.start(false, None);
        let mut b = a.clone();
        a.promote("a", 2);
        b.promote("b", 3);
        assert_eq!(a.wal.timeline(), b.wal.timeline());
        assert!(!a.wal.is_prefix_of(&b.wal));
        let (branch, lsn) = a.write();
        assert!(a.wal.contains(branch, lsn));
        assert!(!b.wal.contains(branch, lsn));
    }
}
