//! Named scenarios: the guide's failure drills as fixed fault schedules
//! (`keel-sim run --scenario NAME`, madsim simulator). Faults aimed at
//! [`PRIMARY`] hit whichever node holds the leader key when they start.

use crate::faults::{Fault, FaultKind};

/// Stands for "the node holding the leader key" in a scenario's faults
/// (the role target `faults::LEADER_KEY_HOLDER`, resolved when the fault
/// starts).
pub const PRIMARY: usize = crate::faults::LEADER_KEY_HOLDER;

/// Name, what it drills, and how many nodes it needs (`None`: any).
pub const SCENARIOS: &[(&str, &str, Option<usize>)] = &[
    ("postgres-kill", "SIGKILL of Postgres on the primary", None),
    ("primary-crash", "the primary's machine dies, and is back 60 s later", None),
    ("partition-primary", "the primary loses etcd and its peers for 60 s", None),
    ("etcd-failure", "etcd is down for 60 s: nobody promotes, the leader demotes at its lease", None),
    (
        "primary-and-etcd",
        "the primary dies while etcd is down: the cluster waits, no promotion without etcd",
        None,
    ),
    ("two-node", "a two-node cluster whose primary dies", Some(2)),
    ("etcd-quorum-and-node", "etcd loses quorum (two of its three hosts) while a database node dies", None),
    ("switchover", "an operator switchover, then a failover back", None),
    (
        "agent-shutdown",
        "a clean shutdown of the primary's agent (SIGTERM): it stops Postgres and hands over; back 60 s later",
        None,
    ),
    (
        "disk-full",
        "the primary's disk fills for 60 s: Postgres PANICs and cannot start; no write is acknowledged meanwhile",
        None,
    ),
    (
        "one-way-cut",
        "for 60 s the primary's WAL no longer reaches pg2, and pg3's replies no longer reach the primary",
        Some(3),
    ),
    (
        REWIND_WAL_GONE,
        "the primary is cut off for 60 s in an async cluster keeping little WAL: its pg_rewind fails, a base backup repairs it",
        None,
    ),
];

/// The drill whose cluster runs asynchronous, with pg_rewind on and
/// `wal_keep_size` small: the returning primary's rewind finds its fork
/// point's WAL recycled on the new primary.
pub const REWIND_WAL_GONE: &str = "rewind-wal-gone";

/// The schedule of scenario `name`, its faults starting at `at_ms`; `None`
/// for an unknown name.
pub fn schedule(name: &str, at_ms: u64) -> Option<Vec<Fault>> {
    let fault = |start: u64, secs: u64, kind: FaultKind| Fault {
        start_ms: at_ms + start,
        end_ms: at_ms + start + secs * 1000,
        kind,
    };
    let faults = match name {
        "postgres-kill" => vec![fault(0, 1, FaultKind::PostgresCrash { node: PRIMARY })],
        "primary-crash" | "two-node" => vec![fault(0, 60, FaultKind::NodeCrash { node: PRIMARY })],
        "partition-primary" | REWIND_WAL_GONE => vec![
            fault(0, 60, FaultKind::EtcdPartition { node: PRIMARY }),
            fault(0, 60, FaultKind::NodeIsolation { node: PRIMARY }),
        ],
        "etcd-failure" => vec![fault(0, 60, FaultKind::EtcdOutage)],
        "primary-and-etcd" => {
            vec![
                fault(0, 60, FaultKind::EtcdOutage),
                fault(5_000, 90, FaultKind::NodeCrash { node: PRIMARY }),
            ]
        }
        "etcd-quorum-and-node" => {
            vec![fault(0, 60, FaultKind::EtcdOutage), fault(0, 90, FaultKind::NodeCrash { node: 1 })]
        }
        "switchover" => vec![
            fault(0, 10, FaultKind::Switchover { candidate: None }),
            fault(60_000, 60, FaultKind::NodeCrash { node: PRIMARY }),
        ],
        "agent-shutdown" => vec![fault(0, 60, FaultKind::AgentShutdown { node: PRIMARY })],
        "disk-full" => vec![fault(0, 60, FaultKind::DiskFull { node: PRIMARY })],
        "one-way-cut" => vec![
            fault(0, 60, FaultKind::OneWayCut { node: PRIMARY, to: 1 }),
            fault(0, 60, FaultKind::OneWayCut { node: 2, to: PRIMARY }),
        ],
        _ => return None,
    };
    Some(faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_scenario_has_a_schedule_and_unknown_names_none() {
        for (name, _, _) in SCENARIOS {
            assert!(schedule(name, 30_000).is_some_and(|f| !f.is_empty()), "{name}");
        }
        assert!(schedule("no-such-drill", 0).is_none());
    }
}
