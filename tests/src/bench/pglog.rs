//! What PostgreSQL's own log says of a restart after a crash: when the new
//! postmaster started (keel's part ends there), how long it synced the data
//! directory before redo (`recovery_init_sync_method`), and when it was
//! ready. The harness has the server log with `log_line_prefix = '%m [%p] '`
//! and `log_timezone = 'UTC'`, in the agent's log.

use serde::Serialize;

/// Seconds from the kill, by the wall clock; `None` for a phase the log
/// does not show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CrashPhases {
    /// The kill → `starting PostgreSQL` of the new postmaster.
    pub started_s: Option<f64>,
    /// `database system was interrupted` → `automatic recovery in
    /// progress`: the fsync of the data directory before redo.
    pub sync_s: Option<f64>,
    /// The kill → `database system is ready to accept connections`.
    pub ready_s: Option<f64>,
}

/// The phases in `log` (the server log written after the kill), timed
/// from `kill_unix_s`.
pub fn crash_phases(log: &str, kill_unix_s: f64) -> CrashPhases {
    let first = |needle: &str| log.lines().filter(|l| l.contains(needle)).find_map(line_time);
    let started = first("starting PostgreSQL");
    let interrupted = first("database system was interrupted");
    let recovering = first("automatic recovery in progress");
    let ready = first("database system is ready to accept connections");
    let since_kill = |t: Option<f64>| t.map(|t| round_ms(t - kill_unix_s));
    CrashPhases {
        started_s: since_kill(started),
        sync_s: interrupted.zip(recovering).map(|(a, b)| round_ms(b - a)),
        ready_s: since_kill(ready),
    }
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// The Unix time of a line that starts `YYYY-MM-DD HH:MM:SS.mmm UTC`.
fn line_time(line: &str) -> Option<f64> {
    let (date, rest) = line.split_once(' ')?;
    let (time, rest) = rest.split_once(' ')?;
    if !rest.starts_with("UTC ") {
        return None;
    }
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (hms, millis) = time.split_once('.')?;
    let mut parts = hms.splitn(3, ':').map(str::parse::<i64>);
    let (h, m, s) = (parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
    let millis: i64 = millis.parse().ok().filter(|_| millis.len() == 3)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(seconds as f64 + millis as f64 / 1000.0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_times_are_unix_seconds() {
        assert_eq!(line_time("1970-01-01 00:00:01.500 UTC [1] LOG:  x"), Some(1.5));
        assert_eq!(line_time("2026-11-26 04:01:02.345 UTC [9] LOG:  x"), Some(1_795_665_662.345));
        assert_eq!(line_time("2024-02-29 00:00:00.000 UTC [9] LOG:  x"), Some(1_709_164_800.0));
        for other in [
            "",
            "keel INFO starting",
            "2026-11-26 04:01:02.345 CET [9] LOG:",
            "2026-13-01 00:00:00.000 UTC x",
        ] {
            assert_eq!(line_time(other), None, "{other:?}");
        }
    }

    #[test]
    fn phases_of_a_crash_restart() {
        let log = "\
2026-11-26T04:01:02.300Z  INFO keel: starting Postgres as primary
2026-11-26 04:01:02.345 UTC [10] LOG:  starting PostgreSQL 15.18 on x86_64-pc-linux-gnu
2026-11-26 04:01:02.350 UTC [12] LOG:  database system was interrupted; last known up at 2026-11-26 04:00:50 UTC
2026-11-26 04:01:04.150 UTC [12] LOG:  database system was not properly shut down; automatic recovery in progress
2026-11-26 04:01:04.160 UTC [12] LOG:  redo starts at 0/3000028
2026-11-26 04:01:04.250 UTC [10] LOG:  database system is ready to accept connections
";
        let kill = line_time("2026-11-26 04:01:02.000 UTC x").unwrap();
        let phases = crash_phases(log, kill);
        assert_eq!(phases, CrashPhases { started_s: Some(0.345), sync_s: Some(1.8), ready_s: Some(2.25) });
        assert_eq!(crash_phases("nothing", kill), CrashPhases::default());
    }
}
