//! Time as the core sees it: plain integers of milliseconds.
//!
//! `now_ms` is the node's own monotonic clock, passed in by the caller; the
//! core never reads a clock (ARCHITECTURE.md, data flow). Wall-clock time
//! (`wall_ms`, milliseconds since the Unix epoch) arrives as data and is used
//! only for scheduled switchovers and display.

use crate::limits::PPM;

/// How much of `duration_ms` a clock that runs `drift_ppm` slower than its
/// peer may lose; the lease deadline gives this back (safety rule 1).
/// Rounds up, so the margin is never smaller than the drift it covers.
pub fn drift_margin_ms(duration_ms: u64, drift_ppm: u64) -> u64 {
    (duration_ms.saturating_mul(drift_ppm)).div_ceil(PPM)
}

/// Renders milliseconds as seconds with one decimal, for reasons: `2.1 s`.
pub fn secs(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_margin_rounds_up() {
        assert_eq!(drift_margin_ms(30_000, 10_000), 300);
        assert_eq!(drift_margin_ms(1, 1), 1);
        assert_eq!(drift_margin_ms(0, 50_000), 0);
        assert_eq!(drift_margin_ms(u64::MAX, PPM), u64::MAX / PPM + 1);
    }

    #[test]
    fn seconds_render_with_one_decimal() {
        assert_eq!(secs(2_150), "2.1 s");
    }
}
