//! A small language for scenario tests: a three-member cluster `pg1`
//! (leader), `pg2`, `pg3` on timeline 1, and builders to bend it into the
//! situation a test names.

#![allow(dead_code)]

use std::collections::BTreeSet;

use keel_core::dcs::{FailoverKey, LeaderKey, SyncKey};
use keel_core::*;

pub const SYSID: u64 = 7_000_000_000_000_000_001;
pub const TTL_MS: u64 = 30_000;
pub const LOOP_MS: u64 = 10_000;
/// The lease a renewal confirms: TTL less 1 % drift margin.
pub const VALIDITY_MS: u64 = 29_700;

pub fn cfg() -> DynamicConfig {
    DynamicConfig::default()
}

pub fn member(role: MemberRole, lsn: u64) -> Member {
    Member {
        role,
        state: MemberState::Running,
        timeline: 1,
        lsn,
        tags: Tags::new(),
        api_url: String::new(),
        conn_url: String::new(),
    }
}

/// pg1 leads at LSN 1000; pg2 and pg3 replicate at 1000.
pub fn cluster() -> ClusterView {
    let mut v = ClusterView {
        revision: 100,
        initialize: Some(SYSID.to_string()),
        config: Some(cfg()),
        leader: Some(LeaderKey { name: "pg1".into(), revision: 90 }),
        optime_lsn: Some(1000),
        ..ClusterView::default()
    };
    v.members.insert("pg1".into(), member(MemberRole::Primary, 1000));
    v.members.insert("pg2".into(), member(MemberRole::Replica, 1000));
    v.members.insert("pg3".into(), member(MemberRole::Replica, 1000));
    v
}

pub fn no_leader(mut v: ClusterView) -> ClusterView {
    v.leader = None;
    v.members.remove("pg1");
    v
}

pub fn with_leader(mut v: ClusterView, name: &str) -> ClusterView {
    v.leader = Some(LeaderKey { name: name.into(), revision: v.revision });
    v
}

pub fn with_config(mut v: ClusterView, f: impl FnOnce(&mut DynamicConfig)) -> ClusterView {
    let mut c = v.config.clone().unwrap_or_default();
    f(&mut c);
    v.config = Some(c);
    v
}

/// `synchronous_mode: true`.
pub fn sync_on(v: ClusterView) -> ClusterView {
    with_config(v, |c| c.synchronous_mode = SyncMode::On)
}

/// `synchronous_mode_strict: true` (and `synchronous_mode`).
pub fn strict(v: ClusterView) -> ClusterView {
    with_config(v, |c| {
        c.synchronous_mode = SyncMode::On;
        c.synchronous_mode_strict = true;
    })
}

pub fn with_sync(mut v: ClusterView, leader: &str, members: &[&str]) -> ClusterView {
    v.sync = Some(SyncKey {
        leader: Some(leader.into()),
        members: members.iter().map(|m| m.to_string()).collect(),
        quorum: None,
        revision: 95,
    });
    v
}

pub fn with_failover(mut v: ClusterView, leader: Option<&str>, candidate: Option<&str>) -> ClusterView {
    v.failover = Some(FailoverKey {
        leader: leader.map(Into::into),
        candidate: candidate.map(Into::into),
        scheduled_at_wall_ms: None,
        revision: 97,
    });
    v
}

pub fn control(state: ControlState) -> ControlData {
    ControlData { system_id: SYSID, state, wal_log_hints: true, data_checksums: false }
}

pub fn pg(process: PgProcess, lsn: u64) -> PgFacts {
    let mut p = PgFacts::empty();
    p.data = DataDir::Initialised(control(ControlState::InProduction));
    p.process = process;
    p.timeline = 1;
    match process {
        PgProcess::RunningReplica => {
            p.receive_lsn = lsn;
            p.replay_lsn = lsn;
            p.upstream = Some("pg1".into());
            p.streaming = true;
        }
        _ => p.write_lsn = lsn,
    }
    if process == PgProcess::Stopped {
        p.data = DataDir::Initialised(control(ControlState::ShutDown));
    }
    p
}

pub fn primary_pg(lsn: u64) -> PgFacts {
    pg(PgProcess::RunningPrimary, lsn)
}

pub fn replica_pg(lsn: u64) -> PgFacts {
    pg(PgProcess::RunningReplica, lsn)
}

pub fn stopped_pg(lsn: u64) -> PgFacts {
    pg(PgProcess::Stopped, lsn)
}

pub fn standby(name: &str, flush_lsn: u64, sync_state: StandbySyncState) -> Standby {
    Standby { name: name.into(), streaming: true, sync_state, flush_lsn, reply_age_ms: 100 }
}

pub fn names(members: &[&str], num: u32) -> SyncNames {
    SyncNames { members: members.iter().map(|m| m.to_string()).collect(), num, quorum: false }
}

pub fn set(members: &[&str]) -> BTreeSet<String> {
    members.iter().map(|m| m.to_string()).collect()
}

/// An observation at `now_ms`.
#[derive(Clone)]
pub struct Obs(pub Observation);

impl Obs {
    pub fn new(now_ms: u64, view: ClusterView, pg: PgFacts) -> Obs {
        Obs(Observation {
            now_ms,
            wall_ms: 1_700_000_000_000 + now_ms as i64,
            dcs: DcsView::Reachable(view),
            pg,
            tags: Tags::new(),
            outcomes: Vec::new(),
            request: None,
        })
    }

    pub fn unreachable(now_ms: u64, since_ms: u64, pg: PgFacts) -> Obs {
        let mut o = Obs::new(now_ms, ClusterView::default(), pg);
        o.0.dcs = DcsView::Unreachable { since_ms };
        o
    }

    pub fn outcome(mut self, action: Action, result: ActionResult, sent_at_ms: u64) -> Obs {
        self.0.outcomes.push(Outcome { action, sent_at_ms, result, lease_ttl_ms: None });
        self
    }

    pub fn request(mut self, r: Request) -> Obs {
        self.0.request = Some(r);
        self
    }

    pub fn tags(mut self, f: impl FnOnce(&mut Tags)) -> Obs {
        f(&mut self.0.tags);
        self
    }
}

/// A node named `name` with empty memory.
pub fn fresh(name: &str) -> Node {
    Node::new(name)
}

/// A node that knows the cluster (revision 100 seen) as a replica.
pub fn replica(name: &str) -> Node {
    let mut s = State::new(name);
    s.role = Role::Replica;
    s.seen_revision = 100;
    s.last_leader = Some("pg1".into());
    s.last_leader_lsn = 1000;
    s.known_members = ["pg1", "pg2", "pg3"].iter().filter(|m| **m != name).map(|m| m.to_string()).collect();
    Node::from_state(s)
}

/// A leader whose last renewal was confirmed so that its lease ends at
/// `deadline_ms`.
pub fn leader(name: &str, deadline_ms: u64) -> Node {
    let mut s = replica(name).state().clone();
    s.role = Role::Leader;
    s.lease_deadline_ms = Some(deadline_ms);
    s.last_leader = Some(name.into());
    Node::from_state(s)
}

pub fn renew(lsn: u64) -> Action {
    Action::RenewLease { optime_lsn: lsn }
}

pub fn release(lsn: u64) -> Action {
    Action::ReleaseLease { optime_lsn: lsn }
}

pub fn demote(mode: DemoteMode) -> Action {
    Action::Demote { mode }
}

/// Actions other than publishing the member key, which nearly every step
/// appends.
pub fn acts(d: &Decision) -> Vec<Action> {
    d.actions.iter().filter(|a| !matches!(a, Action::PublishMember(_))).cloned().collect()
}

pub fn reason(d: &Decision) -> String {
    d.reason.to_string()
}

/// A decision as a snapshot shows it: actions, reason, wake.
pub fn render(d: &Decision) -> String {
    let mut out = String::new();
    for a in &d.actions {
        out.push_str(&format!("action: {a:?}\n"));
    }
    out.push_str(&format!("reason: {}\nwake_after_ms: {}\n", d.reason, d.wake_after_ms));
    out
}
