//! The local Postgres: [`Observer`] observes it as keel-core's [`PgFacts`];
//! [`PgCtl`] runs the server binaries that carry out keel-core's actions.
//!
//! - `control`: initdb, start (with a parent-death signal, rule 7), stop,
//!   promote, reload, base backup, pg_rewind, crash recovery, config files.
//! - `probe`: SQL facts of a running server in one round trip, on a
//!   connection kept across loops.
//! - `controldata`, `history`, `sync_names`, `lsn`: parsers of what
//!   Postgres prints, each total (errors, never panics) and fuzzed.

pub mod control;
pub mod controldata;
pub mod history;
pub mod lsn;
pub mod probe;
pub mod sync_names;

use std::path::Path;

use keel_core::{ControlState, DataDir, PgFacts, PgProcess, TimelineSwitch};

pub use control::{DataDirState, PgCtl, PgCtlError, ServerConfig, Upstream};
pub use controldata::PgControl;
pub use probe::{ConnTarget, ProbeError, SqlFacts};

/// keel's note in the data directory of which member's promotion started
/// the local timeline: one line, `<timeline> <member>`. Postgres' history
/// files do not say who was promoted; keel-core needs it to tell two
/// promotions to the same timeline number apart (rule 4). pg_basebackup
/// and pg_rewind copy it with the rest, which is right: the copy is on the
/// source's timeline.
pub const TIMELINE_ORIGIN_FILE: &str = "keel.timeline_origin";

/// Observes the local Postgres from one loop to the next. Never fails:
/// what cannot be read is reported as absent (and logged), as keel-core
/// expects of facts.
///
/// A stopped server is described by pg_controldata and the history file on
/// disk; a running one by SQL ([`probe`]), on a connection kept across
/// loops. A postmaster that runs but does not answer yet (starting, crash
/// recovery, or a single-user backend) is `Starting`, with the stopped
/// server's timeline and WAL end.
///
/// What a running server's SQL does not say (system identifier, checksums,
/// `wal_log_hints` as pg_control records them) cannot change while that
/// postmaster runs: pg_controldata is read once per postmaster then, not
/// every loop (a fork and exec each time); the control state follows from
/// `pg_is_in_recovery()`, as pg_control's own would (`in production`, `in
/// archive recovery`).
///
/// A standby's timeline as SQL shows it can go back: the WAL receiver's
/// row disappears when its upstream stops or changes, and what is left
/// (the last restartpoint's timeline, the minimum recovery point's) may be
/// older than the timeline the server already replays. A replica that had
/// followed a switchover would then seem to have written past the end of
/// the previous timeline, and to have diverged from the cluster (rule 4):
/// it would refuse to take over, or stop to rewind for nothing. Within one
/// postmaster's life the replay timeline never goes back, so the observer
/// keeps the highest timeline it saw that postmaster on ([`ReplayTimeline`]).
/// Patroni asks the server instead (`IDENTIFY_SYSTEM` on a replication
/// connection to itself); tokio-postgres cannot open one.
pub struct Observer {
    session: probe::Session,
    /// pg_control as read while the postmaster with this PID answered.
    control: Option<(i64, PgControl)>,
    replay_timeline: ReplayTimeline,
}

impl Observer {
    pub fn new(conn: ConnTarget) -> Observer {
        Observer {
            session: probe::Session::new(conn),
            control: None,
            replay_timeline: ReplayTimeline::default(),
        }
    }

    /// The connection the facts are read on, for the agent's other
    /// queries (slots, server info).
    pub fn session(&mut self) -> &mut probe::Session {
        &mut self.session
    }

    pub async fn facts(&mut self, ctl: &PgCtl) -> PgFacts {
        let mut facts = PgFacts::empty();
        // A running postmaster holds an initialised data directory.
        let running = ctl.postmaster_pid();
        match running.map_or_else(|| ctl.data_dir_state(), |_| Ok(DataDirState::Initialised)) {
            Ok(DataDirState::Initialised) => {}
            Ok(_) => {
                self.forget();
                return facts;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the data directory");
                self.forget();
                return facts;
            }
        }
        let Some(pid) = running else {
            self.forget();
            return stopped_facts(ctl, facts).await;
        };
        let sql = match self.session.probe(pid).await {
            Ok(sql) => sql,
            Err(e) => {
                tracing::debug!(error = %e, "postmaster runs but the probe failed");
                self.control = None;
                let mut facts = stopped_facts(ctl, facts).await;
                if matches!(facts.data, DataDir::Initialised(_)) {
                    facts.process = PgProcess::Starting;
                }
                return facts;
            }
        };
        let control = match &self.control {
            Some((at, control)) if *at == pid => control.clone(),
            _ => match read_control(ctl).await {
                Some(control) => {
                    self.control = Some((pid, control.clone()));
                    control
                }
                None => return facts,
            },
        };
        let mut core = control.to_core();
        core.state =
            if sql.in_recovery { ControlState::InArchiveRecovery } else { ControlState::InProduction };
        facts.data = DataDir::Initialised(core);
        let in_recovery = sql.in_recovery;
        fill_from_sql(&mut facts, sql);
        let timeline = self.replay_timeline.observe(pid, in_recovery, facts.timeline);
        if timeline != facts.timeline {
            tracing::debug!(
                sql = facts.timeline,
                timeline,
                "the standby's timeline as SQL shows it went back"
            );
            facts.timeline = timeline;
            facts.history = history_on_disk(&ctl.data_dir, timeline);
        }
        facts.timeline_origin = read_timeline_origin(&ctl.data_dir, facts.timeline);
        facts.backup_label = ctl.data_dir.join("backup_label").exists();
        facts
    }

    /// No postmaster, or no data directory: nothing kept is valid.
    fn forget(&mut self) {
        self.session.close();
        self.control = None;
        self.replay_timeline = ReplayTimeline::default();
    }
}

/// The highest timeline one postmaster was seen on while in recovery. A
/// standby's startup process moves to a newer timeline only after checking
/// that it forks off at or after the point already replayed, and never
/// back; so a timeline this postmaster showed (through its WAL receiver,
/// its restartpoint or its minimum recovery point) is one it is on or
/// past, for as long as it runs. A new postmaster starts from what pg_control
/// says (the data directory may have been rewound or replaced in between),
/// and a primary's timeline is read from the WAL it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ReplayTimeline {
    /// The postmaster's PID and the highest timeline seen on it.
    seen: Option<(i64, u32)>,
}

impl ReplayTimeline {
    /// The timeline to report for `postmaster`, which SQL shows on
    /// `timeline`.
    fn observe(&mut self, postmaster: i64, in_recovery: bool, timeline: u32) -> u32 {
        if !in_recovery {
            self.seen = None;
            return timeline;
        }
        let highest = match self.seen {
            Some((pid, seen)) if pid == postmaster => seen.max(timeline),
            _ => timeline,
        };
        self.seen = Some((postmaster, highest));
        highest
    }
}

/// One observation on a connection of its own: what [`Observer::facts`]
/// sees the first time.
pub async fn facts(ctl: &PgCtl, conn: &ConnTarget) -> PgFacts {
    Observer::new(conn.clone()).facts(ctl).await
}

/// pg_controldata, logged when it fails. `None` is reported as an empty
/// data directory: initdb and pg_basebackup both refuse a non-empty one,
/// so nothing is overwritten.
async fn read_control(ctl: &PgCtl) -> Option<PgControl> {
    match ctl.controldata().await {
        Ok(control) => {
            if control.crc_mismatch {
                tracing::warn!("pg_controldata reports a CRC mismatch in pg_control");
            }
            Some(control)
        }
        Err(e) => {
            tracing::warn!(error = %e, "pg_controldata failed on an initialised data directory");
            None
        }
    }
}

/// The facts of a server that does not answer: pg_control and the history
/// file on disk.
async fn stopped_facts(ctl: &PgCtl, mut facts: PgFacts) -> PgFacts {
    let Some(control) = read_control(ctl).await else { return facts };
    facts.data = DataDir::Initialised(control.to_core());
    let (timeline, end_lsn) = control.local_timeline_lsn();
    facts.timeline = timeline;
    facts.write_lsn = end_lsn;
    facts.history = history_on_disk(&ctl.data_dir, timeline);
    facts.timeline_origin = read_timeline_origin(&ctl.data_dir, facts.timeline);
    facts.backup_label = ctl.data_dir.join("backup_label").exists();
    facts
}

/// What can be said without asking Postgres anything: whether a postmaster
/// runs. A running one counts as primary (the conservative reading: a
/// leader without a lease then demotes), when facts timed out.
pub fn running_only(ctl: &PgCtl) -> PgFacts {
    let mut facts = PgFacts::empty();
    if ctl.is_running() {
        facts.process = PgProcess::RunningPrimary;
        facts.data = DataDir::Initialised(keel_core::ControlData {
            system_id: 0,
            state: keel_core::ControlState::Other,
            wal_log_hints: false,
            data_checksums: false,
        });
    }
    facts
}

/// Records that `member`'s promotion started `timeline`; the agent calls it
/// right after a promotion.
pub fn write_timeline_origin(ctl: &PgCtl, timeline: u32, member: &str) -> Result<(), PgCtlError> {
    if member.is_empty() || member.contains(['\n', '\r']) {
        return Err(PgCtlError::Refused(format!("not a member name for {TIMELINE_ORIGIN_FILE}: {member:?}")));
    }
    ctl.write_owned_file(&ctl.data_dir.join(TIMELINE_ORIGIN_FILE), &format!("{timeline} {member}\n"))
}

/// The member recorded for `timeline`, if the note is for that timeline.
pub fn read_timeline_origin(data_dir: &Path, timeline: u32) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(TIMELINE_ORIGIN_FILE)).ok()?;
    parse_timeline_origin(&text).filter(|(t, _)| *t == timeline).map(|(_, member)| member)
}

fn parse_timeline_origin(text: &str) -> Option<(u32, String)> {
    let (timeline, member) = text.lines().next()?.split_once(' ')?;
    let timeline = timeline.parse().ok().filter(|_| timeline.bytes().all(|b| b.is_ascii_digit()))?;
    (!member.is_empty()).then(|| (timeline, member.to_owned()))
}

fn fill_from_sql(facts: &mut PgFacts, sql: SqlFacts) {
    facts.process = if sql.in_recovery { PgProcess::RunningReplica } else { PgProcess::RunningPrimary };
    facts.streaming = sql.streaming_from_conninfo();
    facts.timeline = sql.timeline;
    facts.write_lsn = sql.write_lsn;
    facts.receive_lsn = sql.receive_lsn;
    facts.replay_lsn = sql.replay_lsn;
    facts.upstream = if sql.in_recovery { sql.upstream } else { None };
    facts.replication = sql.replication;
    facts.sync_standby_names = sql.sync_standby_names;
    facts.history = sql.history;
}

fn history_on_disk(data_dir: &Path, timeline: u32) -> Vec<TimelineSwitch> {
    if timeline <= 1 {
        return Vec::new();
    }
    let path = data_dir.join("pg_wal").join(history::history_file_name(timeline));
    let parsed = std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| history::parse_history(&text).map_err(|e| e.to_string()));
    parsed.unwrap_or_else(|e| {
        tracing::warn!(path = %path.display(), error = %e, "cannot read the timeline history");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standbys_timeline_never_goes_back_while_its_postmaster_runs() {
        let mut replay = ReplayTimeline::default();
        assert_eq!(replay.observe(100, true, 2), 2);
        // The WAL receiver stopped: SQL falls back to the restartpoint's.
        assert_eq!(replay.observe(100, true, 1), 2);
        assert_eq!(replay.observe(100, true, 3), 3);
        assert_eq!(replay.observe(100, true, 2), 3);
    }

    #[test]
    fn a_new_postmaster_or_a_promotion_starts_the_timeline_afresh() {
        let mut replay = ReplayTimeline::default();
        assert_eq!(replay.observe(100, true, 3), 3);
        // Restarted (maybe after a rewind onto an older timeline).
        assert_eq!(replay.observe(200, true, 2), 2);
        // Promoted: the primary's own timeline; later restarted as a standby.
        assert_eq!(replay.observe(200, false, 4), 4);
        assert_eq!(replay.observe(300, true, 3), 3);
    }

    #[test]
    fn timeline_origin_line_parses_and_garbage_is_ignored() {
        assert_eq!(parse_timeline_origin("2 pg-1\n"), Some((2, "pg-1".to_owned())));
        assert_eq!(parse_timeline_origin("12 node with spaces"), Some((12, "node with spaces".to_owned())));
        for bad in ["", "2", "2 ", "x pg1", "+2 pg1", " 2 pg1", "99999999999 pg1"] {
            assert_eq!(parse_timeline_origin(bad), None, "{bad:?}");
        }
    }
}
