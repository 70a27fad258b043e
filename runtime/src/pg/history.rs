//! Timeline history files (`pg_wal/0000000N.history`): one line per switch
//! that led to timeline N, `<parent timeline>\t<switch LSN>\t<reason>`,
//! oldest first. Postgres writes them at promotion and copies them to every
//! standby that follows; keel-core compares them switch by switch to keep
//! history linear (safety rule 4).

use std::fmt;

use keel_core::TimelineSwitch;

use super::lsn::parse_lsn;

/// The file name of timeline `timeline`'s history, relative to `pg_wal`.
pub fn history_file_name(timeline: u32) -> String {
    format!("{timeline:08X}.history")
}

/// Parses a history file as Postgres' `readTimeLineHistory` does: blank
/// lines and `#` comments are skipped, every other line needs a timeline
/// and an LSN, and timelines must increase. `new_leader` stays `None`:
/// the file does not say who was promoted.
pub fn parse_history(text: &str) -> Result<Vec<TimelineSwitch>, HistoryError> {
    let mut switches: Vec<TimelineSwitch> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let timeline = fields
            .next()
            .and_then(|t| t.parse::<u32>().ok().filter(|_| t.bytes().all(|b| b.is_ascii_digit())));
        let fork_lsn = fields.next().and_then(|l| parse_lsn(l).ok());
        let (Some(timeline), Some(fork_lsn)) = (timeline, fork_lsn) else {
            return Err(HistoryError { line: line_no, why: "expected <timeline> <LSN> <reason>" });
        };
        if switches.last().is_some_and(|last| last.timeline >= timeline) {
            return Err(HistoryError { line: line_no, why: "timelines must increase" });
        }
        switches.push(TimelineSwitch { timeline, fork_lsn, new_leader: None });
    }
    Ok(switches)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryError {
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timeline history file, line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for HistoryError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(timeline: u32, fork_lsn: u64) -> TimelineSwitch {
        TimelineSwitch { timeline, fork_lsn, new_leader: None }
    }

    #[test]
    fn history_of_timeline_3_lists_both_switches_oldest_first() {
        // As PostgreSQL 15 writes 00000003.history.
        let text =
            "1\t0/3000148\tno recovery target specified\n\n2\t0/5000060\tno recovery target specified\n";
        assert_eq!(parse_history(text), Ok(vec![switch(1, 0x300_0148), switch(2, 0x500_0060)]));
    }

    #[test]
    fn comments_blank_lines_and_missing_reasons_are_accepted() {
        let text = "# written by hand\n   \n  1\t16/B374D848\n";
        assert_eq!(parse_history(text), Ok(vec![switch(1, 0x16_B374_D848)]));
        assert_eq!(parse_history(""), Ok(vec![]));
    }

    #[test]
    fn malformed_or_unordered_history_is_an_error_with_its_line() {
        assert_eq!(parse_history("1\t0/1\n1\t0/2\n").unwrap_err().line, 2);
        assert_eq!(parse_history("2\t0/1\n1\t0/2\n").unwrap_err().why, "timelines must increase");
        for bad in ["1", "x\t0/1", "1\tzz", "-1\t0/1", "+1\t0/1", "99999999999\t0/1", "1 0/1 ok\nfoo"] {
            assert!(parse_history(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn history_file_name_is_eight_upper_hex_digits() {
        assert_eq!(history_file_name(2), "00000002.history");
        assert_eq!(history_file_name(0x1A), "0000001A.history");
    }
}
