//! Fault schedules drawn from the seed: which fault, on which node, when,
//! for how long. Overlapping faults make the "two at once" cases.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rng::SimRng;

/// Fault targets named by role, resolved to a member when the fault starts
/// (madsim simulator; fault files spell them `"node": "primary"`). They sit
/// at the top of `usize`, where no member index reaches.
///
/// The node whose Postgres accepts writes (else the leader key's holder,
/// else the first member).
pub const PRIMARY: usize = usize::MAX;
/// A member the sync key names (else any replica).
pub const SYNC_STANDBY: usize = usize::MAX - 1;
/// Any member but the primary, chosen from the seed.
pub const REPLICA: usize = usize::MAX - 2;
/// The member holding the leader key (else the first member).
pub const LEADER_KEY_HOLDER: usize = usize::MAX - 3;

/// Each role target with its name in fault files.
pub const ROLES: [(usize, &str); 4] = [
    (PRIMARY, "primary"),
    (SYNC_STANDBY, "sync_standby"),
    (REPLICA, "replica"),
    (LEADER_KEY_HOLDER, "leader_key_holder"),
];

/// The name of role target `node`, if it is one.
pub fn role_name(node: usize) -> Option<&'static str> {
    ROLES.iter().find(|(n, _)| *n == node).map(|(_, name)| *name)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum FaultKind {
    /// The node cannot reach etcd (both ways).
    EtcdPartition { node: usize },
    /// The node cannot reach the other nodes (replication, failsafe pings).
    NodeIsolation { node: usize },
    /// etcd is down for everyone (outage, lost quorum).
    EtcdOutage,
    /// kill -9 of the postmaster only.
    PostgresCrash { node: usize },
    /// The machine dies: agent and Postgres; it comes back at the end.
    NodeCrash { node: usize },
    /// An operator asks for a switchover (to a random member or the best):
    /// the `failover` key with the leader's name, and the candidate's.
    Switchover { candidate: Option<usize> },
    /// An operator asks for a failover to `candidate`, fit or not: the
    /// `failover` key with the candidate's name only (as `keelctl failover
    /// --candidate` and `POST /failover` write it). madsim simulator.
    Failover { candidate: usize },
    /// A switchover scheduled `in_ms` ahead by the leader's wall clock
    /// (`scheduled_at`). madsim simulator.
    ScheduledSwitchover { candidate: Option<usize>, in_ms: u64 },
    /// Maintenance mode (`keelctl pause`: `pause: true` in the `config`
    /// key) until the fault ends (`resume`). madsim simulator.
    Pause,
    /// The agent process freezes (a long GC, a VM stall); Postgres runs on.
    /// Only in the madsim simulator, and shorter than the slack of the
    /// timing rule (ttl - loop_wait - 2 * retry_timeout): a longer pause
    /// of the leader outlives its lease with Postgres still writable,
    /// which only a watchdog prevents (keel does not drive one yet).
    ProcessPause { node: usize },
    /// The node's monotonic clock leaps ahead by `ms` and its wall clock
    /// steps by `wall_ms` (madsim simulator only).
    ClockJump { node: usize, ms: u64, wall_ms: i64 },
    /// The node's clock runs at `rate_ppm` until the fault ends (madsim
    /// simulator only; within the engine's drift bound).
    ClockRate { node: usize, rate_ppm: i64 },
    /// etcd answers up to `delay_ms` late (madsim simulator only).
    EtcdSlow { delay_ms: u64 },
    /// A clean shutdown of the agent (SIGTERM: `Request::Shutdown`); it is
    /// started again at the end (madsim simulator, named scenarios only).
    AgentShutdown { node: usize },
    /// The node's disk is full: Postgres cannot write WAL (a primary
    /// PANICs on its next commit) and cannot start until space is freed
    /// at the end (madsim simulator).
    DiskFull { node: usize },
    /// Traffic from `node` to `to` is lost, the other way gets through:
    /// WAL streamed that way, or a standby's replies (its flush position,
    /// its synchronous acknowledgements). madsim simulator.
    OneWayCut { node: usize, to: usize },
}

impl FaultKind {
    pub fn label(&self) -> &'static str {
        match self {
            FaultKind::EtcdPartition { .. } => "etcd-partition",
            FaultKind::NodeIsolation { .. } => "node-isolation",
            FaultKind::EtcdOutage => "etcd-outage",
            FaultKind::PostgresCrash { .. } => "postgres-crash",
            FaultKind::NodeCrash { .. } => "node-crash",
            FaultKind::Switchover { .. } => "switchover",
            FaultKind::ProcessPause { .. } => "process-pause",
            FaultKind::ClockJump { .. } => "clock-jump",
            FaultKind::ClockRate { .. } => "clock-rate",
            FaultKind::EtcdSlow { .. } => "etcd-slow",
            FaultKind::AgentShutdown { .. } => "agent-shutdown",
            FaultKind::DiskFull { .. } => "disk-full",
            FaultKind::OneWayCut { .. } => "one-way-cut",
            FaultKind::Failover { .. } => "failover",
            FaultKind::ScheduledSwitchover { .. } => "scheduled-switchover",
            FaultKind::Pause => "pause",
        }
    }
}

impl FaultKind {
    /// The node the fault hits, if it hits one.
    pub fn node_mut(&mut self) -> Option<&mut usize> {
        match self {
            FaultKind::EtcdPartition { node }
            | FaultKind::NodeIsolation { node }
            | FaultKind::PostgresCrash { node }
            | FaultKind::NodeCrash { node }
            | FaultKind::ProcessPause { node }
            | FaultKind::ClockJump { node, .. }
            | FaultKind::ClockRate { node, .. }
            | FaultKind::AgentShutdown { node }
            | FaultKind::DiskFull { node }
            | FaultKind::OneWayCut { node, .. } => Some(node),
            FaultKind::EtcdOutage
            | FaultKind::Switchover { .. }
            | FaultKind::Failover { .. }
            | FaultKind::ScheduledSwitchover { .. }
            | FaultKind::Pause
            | FaultKind::EtcdSlow { .. } => None,
        }
    }

    /// Every member the fault names: the node it hits, a one-way cut's far
    /// end, a request's candidate.
    pub fn members_mut(&mut self) -> Vec<&mut usize> {
        match self {
            FaultKind::OneWayCut { node, to } => vec![node, to],
            FaultKind::Switchover { candidate } | FaultKind::ScheduledSwitchover { candidate, .. } => {
                candidate.iter_mut().collect()
            }
            FaultKind::Failover { candidate } => vec![candidate],
            other => other.node_mut().into_iter().collect(),
        }
    }

    /// An operator's request rather than a failure.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            FaultKind::Switchover { .. }
                | FaultKind::Failover { .. }
                | FaultKind::ScheduledSwitchover { .. }
                | FaultKind::Pause
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub start_ms: u64,
    pub end_ms: u64,
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>8.1} s .. {:>8.1} s  {:?}",
            self.start_ms as f64 / 1000.0,
            self.end_ms as f64 / 1000.0,
            self.kind
        )
    }
}

/// A schedule over `[warmup_ms, heal_by_ms]`: one fault every 10 to 60 s,
/// each lasting 1 to 40 s, all healed by `heal_by_ms`.
pub fn schedule(rng: &mut SimRng, nodes: usize, warmup_ms: u64, heal_by_ms: u64) -> Vec<Fault> {
    let mut faults = Vec::new();
    let mut at = warmup_ms + rng.below(20_000);
    while at < heal_by_ms {
        let node = rng.below(nodes as u64) as usize;
        let kind = match rng.below(12) {
            0..=2 => FaultKind::EtcdPartition { node },
            3 => FaultKind::NodeIsolation { node },
            4 => FaultKind::EtcdOutage,
            5..=6 => FaultKind::PostgresCrash { node },
            7..=8 => FaultKind::NodeCrash { node },
            _ => FaultKind::Switchover {
                candidate: if rng.below(2) == 0 { None } else { Some(rng.below(nodes as u64) as usize) },
            },
        };
        let end = (at + 1_000 + rng.below(39_000)).min(heal_by_ms);
        // On the simulation's 10 ms grid.
        faults.push(Fault { start_ms: at / 10 * 10, end_ms: end / 10 * 10, kind });
        at += 10_000 + rng.below(50_000);
    }
    faults
}

/// The madsim simulator's schedule: the faults of [`schedule`], plus
/// process pauses (shorter than `pause_max_ms`), clock jumps and rate
/// changes (within `drift_ppm`), a slow etcd, full disks and one-way cuts
/// between nodes.
pub fn schedule_agents(
    rng: &mut SimRng,
    nodes: usize,
    warmup_ms: u64,
    heal_by_ms: u64,
    pause_max_ms: u64,
    drift_ppm: u64,
) -> Vec<Fault> {
    let mut faults = Vec::new();
    let mut at = warmup_ms + rng.below(20_000);
    while at < heal_by_ms {
        let node = rng.below(nodes as u64) as usize;
        let mut end = at + 1_000 + rng.below(39_000);
        let candidate = rng.below(nodes as u64) as usize;
        let kind = match rng.below(24) {
            0..=2 => FaultKind::EtcdPartition { node },
            3 => FaultKind::NodeIsolation { node },
            4 => FaultKind::EtcdOutage,
            5..=6 => FaultKind::PostgresCrash { node },
            7..=8 => FaultKind::NodeCrash { node },
            9..=10 => FaultKind::Switchover {
                candidate: if rng.below(2) == 0 { None } else { Some(rng.below(nodes as u64) as usize) },
            },
            11 => {
                end = at + 100 + rng.below(pause_max_ms.max(200) - 100);
                FaultKind::ProcessPause { node }
            }
            12 => FaultKind::ClockJump {
                node,
                ms: rng.below(5_000),
                wall_ms: rng.below(600_001) as i64 - 300_000,
            },
            13 => FaultKind::ClockRate {
                node,
                rate_ppm: rng.below(2 * drift_ppm + 1) as i64 - drift_ppm as i64,
            },
            14..=15 => FaultKind::EtcdSlow { delay_ms: 50 + rng.below(2_000) },
            16 => FaultKind::DiskFull { node },
            17 if nodes > 1 => {
                FaultKind::OneWayCut { node, to: (node + 1 + rng.below(nodes as u64 - 1) as usize) % nodes }
            }
            17 => FaultKind::NodeIsolation { node },
            // Requests to any member, fit or not (behind, diverged,
            // nofailover, down, the leader itself): issue 12.
            18..=19 => FaultKind::Failover { candidate },
            20 => FaultKind::ScheduledSwitchover {
                candidate: rng.chance(50).then_some(candidate),
                in_ms: 1_000 + rng.below(60_000),
            },
            21 => {
                // Maintenance mode, and a request with a candidate inside
                // it (without one, Patroni refuses it while paused).
                let request = if rng.chance(50) {
                    FaultKind::Switchover { candidate: Some(candidate) }
                } else {
                    FaultKind::Failover { candidate }
                };
                let asked = at + 1_000 + rng.below(5_000);
                if asked < heal_by_ms {
                    faults.push(Fault {
                        start_ms: asked,
                        end_ms: (asked + 1_000).min(heal_by_ms),
                        kind: request,
                    });
                }
                end = at + 20_000 + rng.below(70_000);
                FaultKind::Pause
            }
            _ => {
                // The primary loses its synchronous standby (the standby's
                // link, or all of the primary's), and a while later the
                // primary itself: in strict mode the standby that has
                // every acknowledged commit must still take over.
                let cut = if rng.chance(50) { SYNC_STANDBY } else { PRIMARY };
                let lost = at + 5_000 + rng.below(20_000);
                let crash_end = lost + 30_000 + rng.below(60_000);
                if lost < heal_by_ms {
                    faults.push(Fault {
                        start_ms: lost,
                        end_ms: crash_end.min(heal_by_ms),
                        kind: FaultKind::NodeCrash { node: PRIMARY },
                    });
                }
                end = lost + 5_000;
                FaultKind::NodeIsolation { node: cut }
            }
        };
        faults.push(Fault { start_ms: at, end_ms: end.min(heal_by_ms), kind });
        at += 10_000 + rng.below(50_000);
    }
    // A pause within the slack is safe only for a lease renewed on time:
    // one that overlaps a fault keeping etcd from renewing may freeze a
    // leader past its lease with Postgres writable, which only a watchdog
    // prevents (seed 485 found it once HAProxy routing moved the timing).
    // Until a renewal after the fault, too: a ttl later at most (the
    // simulator draws ttl under a minute).
    let etcd_faults: Vec<(u64, u64)> = faults
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                FaultKind::EtcdPartition { .. } | FaultKind::EtcdOutage | FaultKind::EtcdSlow { .. }
            )
        })
        .map(|f| (f.start_ms, f.end_ms))
        .collect();
    faults.retain(|f| {
        !matches!(f.kind, FaultKind::ProcessPause { .. })
            || etcd_faults.iter().all(|(start, end)| f.end_ms < *start || f.start_ms > *end + 60_000)
    });
    // The schedule runs in time order (the compound draws push a later
    // fault before an earlier one).
    faults.sort_by_key(|f| f.start_ms);
    faults
}
