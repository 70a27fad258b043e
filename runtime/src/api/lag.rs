//! `lag=` of the health checks: bytes, or a number with a Postgres memory
//! unit (`16kB`, `64MB`, `1GB`), as Patroni's `parse_int(value, 'B')`.
//!
//! Patroni treats a value it cannot parse as no limit; keel answers 400
//! instead, so that a typo in an HAProxy check does not silently turn the
//! lag check off.

use std::fmt;

/// Postgres' memory units, case-sensitive as in `postgresql.conf`.
const UNITS: &[(&str, u64)] = &[("B", 1), ("kB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("TB", 1 << 40)];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LagError {
    NotANumber(String),
    UnknownUnit(String),
    TooLarge(String),
}

impl fmt::Display for LagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LagError::NotANumber(v) => {
                write!(f, "lag={v:?}: expected bytes, e.g. 1048576, 16kB, 64MB or 1GB")
            }
            LagError::UnknownUnit(v) => write!(f, "lag={v:?}: the unit must be one of B, kB, MB, GB, TB"),
            LagError::TooLarge(v) => write!(f, "lag={v:?}: too large"),
        }
    }
}

impl std::error::Error for LagError {}

/// Parses `lag=` into bytes.
pub fn parse_lag_bytes(text: &str) -> Result<u64, LagError> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(LagError::NotANumber(text.to_owned()));
    }
    let unit = unit.trim_start();
    let multiplier = match unit {
        "" => 1,
        _ => match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, m)) => *m,
            None => return Err(LagError::UnknownUnit(text.to_owned())),
        },
    };
    // Only ASCII digits here: the one failure left is overflow.
    let number: u64 = digits.parse().map_err(|_| LagError::TooLarge(text.to_owned()))?;
    number.checked_mul(multiplier).ok_or_else(|| LagError::TooLarge(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_in_bytes_and_with_postgres_units() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("1048576", 1_048_576),
            ("16kB", 16 * 1024),
            ("64MB", 64 << 20),
            ("1GB", 1 << 30),
            ("2TB", 2 << 40),
            ("100B", 100),
            (" 8 MB ", 8 << 20),
            ("007", 7),
            ("18446744073709551615", u64::MAX),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_lag_bytes(text), Ok(*bytes), "{text:?}");
        }
    }

    #[test]
    fn bad_lag_values_are_errors_not_panics() {
        type Expected = fn(String) -> LagError;
        let cases: &[(&str, Expected)] = &[
            ("", LagError::NotANumber),
            ("abc", LagError::NotANumber),
            ("-1", LagError::NotANumber),
            ("+1", LagError::NotANumber),
            ("1.5MB", LagError::UnknownUnit),
            ("MB", LagError::NotANumber),
            ("16kb", LagError::UnknownUnit),
            ("16KB", LagError::UnknownUnit),
            ("16 k B", LagError::UnknownUnit),
            ("1MBB", LagError::UnknownUnit),
            ("١٢", LagError::NotANumber),
            ("99999999999999999999", LagError::TooLarge),
            ("18446744073709551616", LagError::TooLarge),
            ("20000000TB", LagError::TooLarge),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_lag_bytes(text), Err(expected(text.to_string())), "{text:?}");
        }
    }

    #[test]
    fn lag_errors_read_as_messages() {
        assert_eq!(
            parse_lag_bytes("abc").unwrap_err().to_string(),
            "lag=\"abc\": expected bytes, e.g. 1048576, 16kB, 64MB or 1GB"
        );
    }
}
