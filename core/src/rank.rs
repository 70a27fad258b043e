//! The total order of failover candidates: furthest WAL first, then the
//! higher `failover_priority`, then the name (alphabetically first wins), so
//! that two members never both believe they are the best.

use std::cmp::{Ordering, Reverse};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rank<'a> {
    pub lsn: u64,
    pub priority: i64,
    pub name: &'a str,
}

impl Rank<'_> {
    fn key(&self) -> (u64, i64, Reverse<&str>) {
        (self.lsn, self.priority, Reverse(self.name))
    }
}

impl Ord for Rank<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Rank<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lsn: u64, priority: i64, name: &str) -> Rank<'_> {
        Rank { lsn, priority, name }
    }

    #[test]
    fn further_wal_wins_over_priority() {
        assert!(r(200, 1, "b") > r(100, 9, "a"));
    }

    #[test]
    fn equal_wal_higher_priority_wins() {
        assert!(r(100, 2, "b") > r(100, 1, "a"));
    }

    #[test]
    fn equal_wal_and_priority_first_name_wins() {
        assert!(r(100, 1, "a") > r(100, 1, "b"));
    }
}
