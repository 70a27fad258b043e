//! `cargo bench -p keel-core`: the time of one `step` for a 3-node and a
//! 9-node cluster (target: under 5 µs). Two situations each: the healthy
//! leader's routine step (the common case, with synchronous replication
//! bookkeeping) and a replica deciding the leader race.

use std::collections::BTreeSet;

use keel_core::dcs::{LeaderKey, SyncKey};
use keel_core::*;

fn main() {
    divan::main();
}

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("pg{i}")).collect()
}

fn view(n: usize, leader: Option<&str>) -> ClusterView {
    let mut cfg = DynamicConfig { synchronous_mode: SyncMode::On, ..DynamicConfig::default() };
    cfg.synchronous_node_count = 2;
    let mut v = ClusterView {
        revision: 100,
        initialize: Some("1".into()),
        config: Some(cfg),
        leader: leader.map(|l| LeaderKey { name: l.into(), revision: 90 }),
        optime_lsn: Some(10_000),
        sync: Some(SyncKey {
            leader: Some("pg1".into()),
            members: ["pg2".to_owned(), "pg3".to_owned()].into_iter().collect::<BTreeSet<_>>(),
            quorum: None,
            revision: 95,
        }),
        ..ClusterView::default()
    };
    for (i, name) in names(n).into_iter().enumerate() {
        let role = if i == 0 { MemberRole::Primary } else { MemberRole::Replica };
        let m = Member {
            role,
            state: MemberState::Running,
            timeline: 1,
            lsn: 10_000 - i as u64,
            tags: Tags::new(),
            api_url: format!("http://10.0.0.{i}:8008/patroni"),
            conn_url: format!("postgres://10.0.0.{i}:5432/postgres"),
        };
        v.members.insert(name, m);
    }
    v
}

fn pg(process: PgProcess, n: usize) -> PgFacts {
    let mut p = PgFacts::empty();
    p.data = DataDir::Initialised(ControlData {
        system_id: 1,
        state: ControlState::InProduction,
        wal_log_hints: true,
        data_checksums: true,
    });
    p.process = process;
    p.timeline = 1;
    p.write_lsn = 10_000;
    p.receive_lsn = 10_000;
    p.replay_lsn = 10_000;
    if process == PgProcess::RunningPrimary {
        p.sync_standby_names =
            SyncNames { members: ["pg2".to_owned(), "pg3".to_owned()].into(), num: 2, quorum: false };
        p.replication = names(n)
            .into_iter()
            .skip(1)
            .map(|name| Standby {
                sync_state: if name == "pg2" || name == "pg3" {
                    StandbySyncState::Sync
                } else {
                    StandbySyncState::Async
                },
                name,
                streaming: true,
                flush_lsn: 9_990,
                reply_age_ms: 200,
            })
            .collect();
    }
    p
}

fn observation(view: ClusterView, pg: PgFacts) -> Observation {
    Observation {
        now_ms: 50_000,
        wall_ms: 1_700_000_000_000,
        dcs: DcsView::Reachable(view),
        pg,
        tags: Tags::new(),
        outcomes: vec![Outcome {
            action: Action::RenewLease { optime_lsn: 10_000 },
            sent_at_ms: 49_990,
            result: ActionResult::Done,
            lease_ttl_ms: None,
        }],
        request: None,
    }
}

fn leader_node() -> Node {
    let mut s = State::new("pg1");
    s.role = Role::Leader;
    s.lease_deadline_ms = Some(70_000);
    s.seen_revision = 100;
    Node::from_state(s)
}

fn replica_node() -> Node {
    let mut s = State::new("pg2");
    s.role = Role::Replica;
    s.seen_revision = 100;
    Node::from_state(s)
}

#[divan::bench(args = [3, 9])]
fn leader_renews(bencher: divan::Bencher, n: usize) {
    let obs = observation(view(n, Some("pg1")), pg(PgProcess::RunningPrimary, n));
    let node = leader_node();
    bencher.with_inputs(|| node.clone()).bench_local_refs(|node| node.step(&obs));
}

#[divan::bench(args = [3, 9])]
fn replica_races(bencher: divan::Bencher, n: usize) {
    let mut obs = observation(view(n, None), pg(PgProcess::RunningReplica, n));
    obs.outcomes.clear();
    let node = replica_node();
    bencher.with_inputs(|| node.clone()).bench_local_refs(|node| node.step(&obs));
}
