//! `pg_controldata` output (run with `LC_ALL=C`, so the labels are
//! English) parsed into what keel needs from `pg_control`.
//!
//! Each line is `label: value`; the label never holds a colon, the value may
//! (`Latest checkpoint's NextXID: 0:724`). Lines keel does not need are
//! ignored, so a newer Postgres that adds lines still parses; a missing
//! essential line is an error naming it.

use std::fmt;

use keel_core::{ControlData, ControlState};

use super::lsn::parse_lsn;

/// What keel reads from `pg_control`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgControl {
    pub system_id: u64,
    pub state: ControlState,
    /// `Latest checkpoint's TimeLineID`.
    pub checkpoint_timeline: u32,
    /// `Latest checkpoint location`.
    pub checkpoint_lsn: u64,
    /// `Latest checkpoint's REDO location`.
    pub redo_lsn: u64,
    /// `Minimum recovery ending location`: how far a standby must replay to
    /// be consistent (0/0 on a primary).
    pub min_recovery_end_lsn: u64,
    /// `Min recovery ending loc's timeline` (0 on a primary).
    pub min_recovery_end_timeline: u32,
    pub wal_log_hints: bool,
    /// `Data page checksum version`: 0 means checksums are off.
    pub data_checksum_version: u32,
    /// pg_controldata warned that the file's CRC does not match: the values
    /// may be garbage (or a torn read of a file being rewritten).
    pub crc_mismatch: bool,
}

impl PgControl {
    /// The part keel-core decides on.
    pub fn to_core(&self) -> ControlData {
        ControlData {
            system_id: self.system_id,
            state: self.state,
            wal_log_hints: self.wal_log_hints,
            data_checksums: self.data_checksum_version != 0,
        }
    }

    /// The timeline and end of WAL of a stopped server, as Patroni reads
    /// them (`_get_local_timeline_lsn_from_controldata`): a standby's
    /// minimum recovery point when it has one, else the last checkpoint.
    pub fn local_timeline_lsn(&self) -> (u32, u64) {
        let in_recovery =
            matches!(self.state, ControlState::ShutDownInRecovery | ControlState::InArchiveRecovery);
        if in_recovery && self.min_recovery_end_lsn != 0 && self.min_recovery_end_timeline != 0 {
            (self.min_recovery_end_timeline, self.min_recovery_end_lsn)
        } else {
            (self.checkpoint_timeline, self.checkpoint_lsn)
        }
    }
}

/// Parses the whole output of `LC_ALL=C pg_controldata`.
pub fn parse_controldata(output: &str) -> Result<PgControl, ControldataError> {
    let mut f = Fields::default();
    let mut crc_mismatch = false;
    for line in output.lines() {
        if line.starts_with("WARNING: Calculated CRC checksum does not match") {
            crc_mismatch = true;
        }
        let Some((label, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        let slot = match label.trim() {
            "Database system identifier" => &mut f.system_id,
            "Database cluster state" => &mut f.state,
            "Latest checkpoint's TimeLineID" => &mut f.checkpoint_timeline,
            "Latest checkpoint location" => &mut f.checkpoint_lsn,
            "Latest checkpoint's REDO location" => &mut f.redo_lsn,
            "Minimum recovery ending location" => &mut f.min_recovery_end_lsn,
            "Min recovery ending loc's timeline" => &mut f.min_recovery_end_timeline,
            "wal_log_hints setting" => &mut f.wal_log_hints,
            "Data page checksum version" => &mut f.data_checksum_version,
            _ => continue,
        };
        *slot = Some(value);
    }
    Ok(PgControl {
        system_id: number(SYSTEM_ID, f.system_id)?,
        state: state(f.state)?,
        checkpoint_timeline: number(CHECKPOINT_TIMELINE, f.checkpoint_timeline)?,
        checkpoint_lsn: lsn(CHECKPOINT_LSN, f.checkpoint_lsn)?,
        redo_lsn: lsn(REDO_LSN, f.redo_lsn)?,
        min_recovery_end_lsn: lsn(MIN_RECOVERY_LSN, f.min_recovery_end_lsn)?,
        min_recovery_end_timeline: number(MIN_RECOVERY_TIMELINE, f.min_recovery_end_timeline)?,
        wal_log_hints: on_off(WAL_LOG_HINTS, f.wal_log_hints)?,
        data_checksum_version: number(CHECKSUM_VERSION, f.data_checksum_version)?,
        crc_mismatch,
    })
}

/// An essential line is missing or its value does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControldataError {
    Missing { label: &'static str },
    BadValue { label: &'static str, value: String },
}

impl fmt::Display for ControldataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControldataError::Missing { label } => {
                write!(
                    f,
                    "pg_controldata output has no \"{label}\" line (not a data directory, or not LC_ALL=C?)"
                )
            }
            ControldataError::BadValue { label, value } => {
                write!(f, "pg_controldata's \"{label}\" is not understood: {value:?}")
            }
        }
    }
}

impl std::error::Error for ControldataError {}

const SYSTEM_ID: &str = "Database system identifier";
const STATE: &str = "Database cluster state";
const CHECKPOINT_TIMELINE: &str = "Latest checkpoint's TimeLineID";
const CHECKPOINT_LSN: &str = "Latest checkpoint location";
const REDO_LSN: &str = "Latest checkpoint's REDO location";
const MIN_RECOVERY_LSN: &str = "Minimum recovery ending location";
const MIN_RECOVERY_TIMELINE: &str = "Min recovery ending loc's timeline";
const WAL_LOG_HINTS: &str = "wal_log_hints setting";
const CHECKSUM_VERSION: &str = "Data page checksum version";

#[derive(Default)]
struct Fields<'a> {
    system_id: Option<&'a str>,
    state: Option<&'a str>,
    checkpoint_timeline: Option<&'a str>,
    checkpoint_lsn: Option<&'a str>,
    redo_lsn: Option<&'a str>,
    min_recovery_end_lsn: Option<&'a str>,
    min_recovery_end_timeline: Option<&'a str>,
    wal_log_hints: Option<&'a str>,
    data_checksum_version: Option<&'a str>,
}

fn bad(label: &'static str, value: &str) -> ControldataError {
    ControldataError::BadValue { label, value: value.chars().take(80).collect() }
}

fn present<'a>(label: &'static str, value: Option<&'a str>) -> Result<&'a str, ControldataError> {
    value.ok_or(ControldataError::Missing { label })
}

fn number<T: std::str::FromStr>(label: &'static str, value: Option<&str>) -> Result<T, ControldataError> {
    let value = present(label, value)?;
    // FromStr for integers accepts a leading '+'; pg_controldata never
    // prints one, so digits only.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(label, value));
    }
    value.parse().map_err(|_| bad(label, value))
}

fn lsn(label: &'static str, value: Option<&str>) -> Result<u64, ControldataError> {
    let value = present(label, value)?;
    parse_lsn(value).map_err(|_| bad(label, value))
}

fn on_off(label: &'static str, value: Option<&str>) -> Result<bool, ControldataError> {
    match present(label, value)? {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(bad(label, other)),
    }
}

fn state(value: Option<&str>) -> Result<ControlState, ControldataError> {
    // The strings of dbState() in pg_controldata.c.
    Ok(match present(STATE, value)? {
        "shut down" => ControlState::ShutDown,
        "shut down in recovery" => ControlState::ShutDownInRecovery,
        "in production" => ControlState::InProduction,
        "in archive recovery" => ControlState::InArchiveRecovery,
        "" => return Err(bad(STATE, "")),
        // "starting up", "shutting down", "in crash recovery",
        // "unrecognized status code".
        _ => ControlState::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from PostgreSQL 15.18's pg_controldata (LC_ALL=C) on one data
    // directory: after initdb --data-checksums and a clean stop, killed while
    // primary, running as a standby, and stopped as a standby.
    const SHUT_DOWN: &str = include_str!("testdata/controldata_shut_down.txt");
    const IN_PRODUCTION: &str = include_str!("testdata/controldata_in_production.txt");
    const IN_ARCHIVE_RECOVERY: &str = include_str!("testdata/controldata_in_archive_recovery.txt");
    const SHUT_DOWN_IN_RECOVERY: &str = include_str!("testdata/controldata_shut_down_in_recovery.txt");

    #[test]
    fn cleanly_stopped_primary_parses_to_shut_down_with_checksums_on() {
        let control = parse_controldata(SHUT_DOWN).unwrap();
        assert_eq!(
            control,
            PgControl {
                system_id: 7_712_232_855_403_162_956,
                state: ControlState::ShutDown,
                checkpoint_timeline: 1,
                checkpoint_lsn: 0x200_0028,
                redo_lsn: 0x200_0028,
                min_recovery_end_lsn: 0,
                min_recovery_end_timeline: 0,
                wal_log_hints: false,
                data_checksum_version: 1,
                crc_mismatch: false,
            }
        );
        assert!(control.to_core().data_checksums && control.to_core().rewindable());
        assert!(control.state.is_clean());
        assert_eq!(control.local_timeline_lsn(), (1, 0x200_0028));
    }

    #[test]
    fn primary_killed_while_running_parses_to_in_production_unclean() {
        let control = parse_controldata(IN_PRODUCTION).unwrap();
        assert_eq!(control.state, ControlState::InProduction);
        assert!(!control.state.is_clean());
        assert_eq!((control.checkpoint_lsn, control.redo_lsn), (0x174_14F8, 0x174_14F8));
    }

    #[test]
    fn standby_states_use_the_minimum_recovery_point_as_local_end_of_wal() {
        let running = parse_controldata(IN_ARCHIVE_RECOVERY).unwrap();
        assert_eq!(running.state, ControlState::InArchiveRecovery);
        let stopped = parse_controldata(SHUT_DOWN_IN_RECOVERY).unwrap();
        assert_eq!(stopped.state, ControlState::ShutDownInRecovery);
        assert!(stopped.state.is_clean());
        assert_eq!(stopped.min_recovery_end_lsn, 0x174_1570);
        assert_eq!(stopped.local_timeline_lsn(), (1, 0x174_1570));
    }

    #[test]
    fn transitional_states_map_to_other() {
        for state in ["starting up", "shutting down", "in crash recovery", "unrecognized status code"] {
            let text = SHUT_DOWN.replace("shut down\n", &format!("{state}\n"));
            assert_eq!(parse_controldata(&text).unwrap().state, ControlState::Other, "{state}");
        }
    }

    #[test]
    fn wal_log_hints_on_and_checksums_off_are_read() {
        let text = SHUT_DOWN
            .replace("wal_log_hints setting:                off", "wal_log_hints setting:                on")
            .replace("Data page checksum version:           1", "Data page checksum version:           0");
        let control = parse_controldata(&text).unwrap();
        assert!(control.wal_log_hints && !control.to_core().data_checksums);
        assert!(control.to_core().rewindable());
    }

    #[test]
    fn crc_warning_is_reported_and_unknown_lines_are_ignored() {
        let text = format!(
            "WARNING: Calculated CRC checksum does not match value stored in file.\n\
             Either the file is corrupt, or it has a different layout than this program\n\
             is expecting.  The results below are untrustworthy.\n\n\
             A line from the future:   with: colons\n{SHUT_DOWN}"
        );
        let control = parse_controldata(&text).unwrap();
        assert!(control.crc_mismatch);
        assert_eq!(control.system_id, 7_712_232_855_403_162_956);
    }

    #[test]
    fn missing_essential_line_is_an_error_naming_it() {
        let text: String = SHUT_DOWN
            .lines()
            .filter(|l| !l.starts_with("Database cluster state"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = parse_controldata(&text).unwrap_err();
        assert_eq!(err, ControldataError::Missing { label: "Database cluster state" });
        assert!(err.to_string().contains("\"Database cluster state\""), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "\n\n\n",
            "pg_controldata: error: could not open file \"x/global/pg_control\" for reading: No such file or directory",
            ":::::",
            "Database system identifier: -1",
            "Database system identifier: +5",
            "Database system identifier: 99999999999999999999999",
        ] {
            assert!(parse_controldata(text).is_err(), "{text:?}");
        }
        let broken_lsn = SHUT_DOWN.replace("0/2000028", "0/zz");
        assert!(matches!(parse_controldata(&broken_lsn), Err(ControldataError::BadValue { .. })));
        let broken_hints =
            SHUT_DOWN.replace("wal_log_hints setting:                off", "wal_log_hints setting: maybe");
        assert!(matches!(parse_controldata(&broken_hints), Err(ControldataError::BadValue { .. })));
        let empty_state = SHUT_DOWN.replace("shut down\n", "\n");
        assert!(parse_controldata(&empty_state).is_err());
    }
}
