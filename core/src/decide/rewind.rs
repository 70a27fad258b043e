//! Linear history (safety rule 4, behaviour 10): has this node's WAL
//! diverged from the cluster's?
//!
//! Divergence is judged from the timeline history, switch by switch, not
//! from the timeline number alone: two separate promotions can pick the
//! same timeline number (a model-checking result found this making
//! pg_rewind skip a needed rewind). A switch is identified by its timeline,
//! its fork LSN and, where keel recorded it, the member that was promoted.

use crate::pg::{PgFacts, TimelineSwitch};

/// The LSN at which this node's history leaves the cluster's, if it does.
/// `leader_timeline` is the leader's current timeline when known.
pub fn divergence(pg: &PgFacts, cluster: &[TimelineSwitch], leader_timeline: Option<u32>) -> Option<u64> {
    let local = LocalHistory {
        switches: &pg.history,
        origin: pg.timeline_origin.as_deref(),
        timeline: pg.timeline,
        position: pg.wal_position(),
    };
    divergence_of(&local, cluster, leader_timeline)
}

/// What is known of one member's history: all of it for this node; only
/// the timeline and position another member publishes in its key (no
/// switches, no origin), which still shows WAL written past the point
/// where the cluster left its timeline.
pub struct LocalHistory<'a> {
    pub switches: &'a [TimelineSwitch],
    pub origin: Option<&'a str>,
    pub timeline: u32,
    pub position: u64,
}

/// [`divergence`] for any member's history.
pub fn divergence_of(
    pg: &LocalHistory,
    cluster: &[TimelineSwitch],
    leader_timeline: Option<u32>,
) -> Option<u64> {
    // Every switch this node went through must be the cluster's switch.
    for local in pg.switches {
        let Some(known) = cluster.iter().find(|c| c.timeline == local.timeline) else {
            continue;
        };
        let other_leader = matches!(
            (&local.new_leader, &known.new_leader),
            (Some(a), Some(b)) if a != b
        );
        if known.fork_lsn != local.fork_lsn || other_leader {
            return Some(known.fork_lsn.min(local.fork_lsn));
        }
    }
    let timeline = pg.timeline;
    // The same timeline number, started by someone else's promotion.
    if let Some(into) = cluster.iter().find(|c| c.timeline + 1 == timeline) {
        if let (Some(ours), Some(theirs)) = (pg.origin, &into.new_leader) {
            if ours != theirs {
                return Some(into.fork_lsn);
            }
        }
    }
    // The cluster left this timeline: WAL written past the fork is not the
    // cluster's.
    if let Some(ended) = cluster.iter().find(|c| c.timeline == timeline) {
        if pg.position > ended.fork_lsn {
            return Some(ended.fork_lsn);
        }
    }
    // Ahead of the leader's timeline: a promotion the cluster never had.
    if let Some(leader_timeline) = leader_timeline {
        if timeline > leader_timeline {
            let fork = pg.switches.iter().find(|s| s.timeline == leader_timeline);
            return Some(fork.map_or(0, |s| s.fork_lsn));
        }
    }
    None
}
