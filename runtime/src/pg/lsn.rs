//! Postgres log sequence numbers as text (`16/B374D848`) and as the `u64`
//! keel-core counts in: the high 32 bits before the slash, the low 32 after,
//! both in hexadecimal, as `pg_lsn`'s output function and pg_controldata
//! print them.

use std::fmt;

/// Parses `HI/LO` (1 to 8 hex digits each, either case, surrounding
/// whitespace allowed). Anything else is an error, never a panic.
pub fn parse_lsn(text: &str) -> Result<u64, LsnError> {
    let bad = || LsnError(text.chars().take(40).collect());
    let (hi, lo) = text.trim().split_once('/').ok_or_else(bad)?;
    let half = |s: &str| {
        // from_str_radix alone would accept a leading '+'.
        if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    };
    match (half(hi), half(lo)) {
        (Some(hi), Some(lo)) => Ok(u64::from(hi) << 32 | u64::from(lo)),
        _ => Err(bad()),
    }
}

/// Formats as Postgres does: upper-case hex, no padding (`0/3000060`);
/// keel-core's [`keel_core::Lsn`] is the one definition.
pub fn format_lsn(lsn: u64) -> String {
    keel_core::Lsn(lsn).to_string()
}

/// Text that is not an LSN (the first 40 characters of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsnError(pub String);

impl fmt::Display for LsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a WAL location (expected like 16/B374D848): {:?}", self.0)
    }
}

impl std::error::Error for LsnError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_parses_to_high_and_low_words() {
        assert_eq!(parse_lsn("16/B374D848"), Ok(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Ok(0));
        assert_eq!(parse_lsn("0/3000060"), Ok(0x300_0060));
        assert_eq!(parse_lsn(" ffffffff/ffffffff\n"), Ok(u64::MAX));
    }

    #[test]
    fn lsn_formats_like_postgres_and_round_trips() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        for lsn in [0, 1, 0xFFFF_FFFF, 0x1_0000_0000, u64::MAX, 0x16_B374_D848] {
            assert_eq!(parse_lsn(&format_lsn(lsn)), Ok(lsn));
        }
    }

    #[test]
    fn malformed_lsn_text_is_an_error_not_a_panic() {
        for bad in
            ["", "/", "0/", "/0", "16", "1/2/3", "123456789/0", "0/123456789", "+1/0", "-1/0", "g/0", "0x1/0"]
        {
            assert!(parse_lsn(bad).is_err(), "{bad:?} parsed");
        }
        let long = "9".repeat(1000);
        assert_eq!(parse_lsn(&long).unwrap_err().0.len(), 40);
        assert!(parse_lsn("é/0").is_err());
    }
}
