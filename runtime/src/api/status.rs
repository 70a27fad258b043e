//! The node status the agent publishes after every step and the API reads.
//!
//! Plain data: no HTTP types, no connections. A health check reads this
//! under a read lock and compares instants; it never asks Postgres or etcd
//! (HAProxy polls every few seconds per backend).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keel_core::pg::Standby;
use keel_core::{DcsView, Decision, MemberRole, MemberState, Observation, Role, State, SyncMode, Tags};
use serde_json::Value;
use tokio::time::Instant;

use crate::dcs::patroni::Snapshot;

/// Written by the agent, read by the HTTP handlers. A std lock: it is
/// never held across an await.
pub type SharedStatus = Arc<RwLock<NodeStatus>>;

/// What one node says about itself (Patroni's `get_postgresql_status`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatus {
    pub name: String,
    pub scope: String,
    /// The member role as Patroni names it: primary, replica, uninitialized.
    pub role: MemberRole,
    /// Postgres' state as Patroni names it (running, starting, stopped...).
    pub state: MemberState,
    /// Postgres runs and accepts writes.
    pub running_primary: bool,
    /// Postgres runs in recovery (`pg_is_in_recovery()`).
    pub in_recovery: bool,
    pub timeline: u32,
    /// On a primary: `pg_current_wal_lsn()`.
    pub write_lsn: u64,
    /// On a replica: received and replayed WAL.
    pub receive_lsn: u64,
    pub replay_lsn: u64,
    /// On a replica: whether the WAL receiver streams.
    pub replication_state: Option<ReplicationState>,
    /// While this node holds the lease: when it must no longer be writable.
    /// `/primary` compares it with the time of the request, so a node whose
    /// lease has run out answers 503 before its next step demotes it.
    pub lease_deadline: Option<Instant>,
    /// The leader key's holder in the last DCS view.
    pub leader: Option<String>,
    /// Until when the last DCS view counts (read time plus `ttl`), as
    /// Patroni's cached cluster: the sync/async checks need one.
    pub view_valid_until: Option<Instant>,
    /// Listed in the `sync` key while `synchronous_mode` is on.
    pub sync_standby: bool,
    /// Listed in the `sync` key while `synchronous_mode` is `quorum`.
    pub quorum_standby: bool,
    pub paused: bool,
    pub tags: Tags,
    /// The tags as published in the member key (custom ones included): the
    /// JSON `tags` and the `tag_<key>=` checks.
    pub member_tags: BTreeMap<String, Value>,
    /// The leader's last published WAL position (`status`), for lag.
    pub leader_optime_lsn: Option<u64>,
    /// The last successful DCS read, in seconds since the epoch; 0 before.
    pub dcs_last_seen_s: u64,
    /// The last decision's reason, as logged.
    pub last_reason: String,
    /// `server_version_num`; 0 when unknown.
    pub server_version: u32,
    /// Some setting changed needs a Postgres restart (`pg_settings`).
    pub pending_restart: bool,
    /// Which settings, as Patroni's `{param: {old_value, new_value}}`.
    pub pending_restart_reason: serde_json::Map<String, Value>,
    /// The restart scheduled through `POST /restart`, as requested (the
    /// API sets it, not the agent).
    pub scheduled_restart: Option<Value>,
    pub system_id: Option<u64>,
    /// `pg_stat_replication` on a primary.
    pub replication: Vec<Standby>,
    /// The default `lag=` of `/readiness`.
    pub maximum_lag_on_failover_bytes: u64,
    /// Patroni's liveness: the next loop is due plus `ttl` (twice on a
    /// replica); past that, the agent is taken for hung.
    pub liveness_deadline: Option<Instant>,
    /// The last successful DCS read, for `/cluster`, `/history` and
    /// `/config`; `None` before the first.
    pub snapshot: Option<Snapshot>,
    /// `synchronous_mode` of the node's config: which members `/cluster`
    /// names sync or quorum standbys.
    pub synchronous_mode: SyncMode,
    /// Leader changes this node has seen (keel-core's `State`).
    pub leader_changes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    Streaming,
    InArchiveRecovery,
}

impl ReplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationState::Streaming => "streaming",
            ReplicationState::InArchiveRecovery => "in archive recovery",
        }
    }

    pub fn parse(text: &str) -> Option<ReplicationState> {
        match text {
            "streaming" => Some(ReplicationState::Streaming),
            "in archive recovery" => Some(ReplicationState::InArchiveRecovery),
            _ => None,
        }
    }
}

/// One step as the agent saw it, for `NodeStatus::record`.
pub struct StepReport<'a> {
    pub obs: &'a Observation,
    pub decision: &'a Decision,
    /// The node's state after the step.
    pub state: &'a State,
    /// The agent's last successful DCS read.
    pub snapshot: Option<&'a Snapshot>,
    /// The agent's clock: `now_ms` and deadlines in its milliseconds map
    /// to `clock_start + ms`.
    pub clock_start: Instant,
}

impl NodeStatus {
    /// Before the first step: nothing known, every health check 503.
    pub fn new(name: &str, scope: &str, member_tags: BTreeMap<String, Value>) -> NodeStatus {
        NodeStatus {
            name: name.to_owned(),
            scope: scope.to_owned(),
            role: MemberRole::Uninitialized,
            state: MemberState::Stopped,
            running_primary: false,
            in_recovery: false,
            timeline: 0,
            write_lsn: 0,
            receive_lsn: 0,
            replay_lsn: 0,
            replication_state: None,
            lease_deadline: None,
            leader: None,
            view_valid_until: None,
            sync_standby: false,
            quorum_standby: false,
            paused: false,
            tags: Tags::new(),
            member_tags,
            leader_optime_lsn: None,
            dcs_last_seen_s: 0,
            last_reason: String::new(),
            server_version: 0,
            pending_restart: false,
            pending_restart_reason: serde_json::Map::new(),
            scheduled_restart: None,
            system_id: None,
            replication: Vec::new(),
            maximum_lag_on_failover_bytes: 0,
            liveness_deadline: None,
            snapshot: None,
            synchronous_mode: SyncMode::Off,
            leader_changes: 0,
        }
    }

    pub fn shared(self) -> SharedStatus {
        Arc::new(RwLock::new(self))
    }

    /// Takes in one step. What comes from the DCS is kept from the last
    /// successful read when etcd did not answer.
    pub fn record(&mut self, step: &StepReport<'_>) {
        let StepReport { obs, decision, state, snapshot, clock_start } = *step;
        let at = |ms: u64| clock_start + Duration::from_millis(ms);
        let pg = &obs.pg;
        let cfg = &state.config;
        let member = keel_core::MemberStatus::of(state.role, pg, &obs.tags);
        self.role = member.role;
        self.state = member.state;
        self.running_primary = pg.is_running_primary();
        self.in_recovery = pg.is_running_replica();
        self.timeline = pg.timeline;
        self.write_lsn = pg.write_lsn;
        self.receive_lsn = pg.receive_lsn;
        self.replay_lsn = pg.replay_lsn;
        self.replication_state = match (pg.is_running_replica(), pg.streaming) {
            (false, _) => None,
            (true, true) => Some(ReplicationState::Streaming),
            (true, false) => Some(ReplicationState::InArchiveRecovery),
        };
        self.lease_deadline = state.lease_deadline_ms.map(at);
        if let DcsView::Reachable(view) = &obs.dcs {
            self.leader = view.leader_name().map(str::to_owned);
            self.view_valid_until = Some(at(obs.now_ms.saturating_add(cfg.ttl_ms)));
            let listed = view.sync.as_ref().is_some_and(|s| s.members.contains(&self.name));
            self.sync_standby = listed && cfg.synchronous_mode == SyncMode::On;
            self.quorum_standby = listed && cfg.synchronous_mode == SyncMode::Quorum;
            self.leader_optime_lsn = view.optime_lsn;
            self.dcs_last_seen_s = u64::try_from(obs.wall_ms / 1000).unwrap_or(0);
            // The agent keeps its snapshot from the last successful read,
            // which is this one.
            self.snapshot = snapshot.cloned();
        }
        self.synchronous_mode = cfg.synchronous_mode;
        self.leader_changes = state.leader_changes;
        self.paused = cfg.pause;
        self.tags = obs.tags.clone();
        self.last_reason = decision.reason.to_string();
        self.system_id = pg.system_id();
        self.replication = pg.replication.clone();
        self.maximum_lag_on_failover_bytes = cfg.maximum_lag_on_failover_bytes;
        let ttls = if state.role == Role::Leader { 1 } else { 2 };
        let due_ms = obs.now_ms.saturating_add(decision.wake_after_ms);
        self.liveness_deadline = Some(at(due_ms.saturating_add(cfg.ttl_ms.saturating_mul(ttls))));
    }

    /// How far this replica's replay trails the newest WAL it knows of:
    /// max(leader's optime, received) − replayed (Patroni's `/replica?lag=`).
    pub fn replay_lag_bytes(&self) -> u64 {
        self.leader_optime_lsn.unwrap_or(0).max(self.receive_lsn).saturating_sub(self.replay_lsn)
    }
}

#[cfg(test)]
mod tests {
    use keel_core::{ClusterView, DynamicConfig, Node, PgFacts};

    use super::*;

    fn observation(now_ms: u64, dcs: DcsView) -> Observation {
        Observation {
            now_ms,
            wall_ms: 1_700_000_000_000,
            dcs,
            pg: PgFacts::empty(),
            tags: Tags::new(),
            outcomes: Vec::new(),
            request: None,
        }
    }

    #[test]
    fn record_keeps_the_last_read_snapshot_while_etcd_is_unreachable() {
        let config = DynamicConfig { synchronous_mode: SyncMode::On, ..DynamicConfig::default() };
        let mut node = Node::with_config("pg1", config);
        let mut status = NodeStatus::new("pg1", "demo", BTreeMap::new());
        let snap =
            Snapshot { view: ClusterView { revision: 9, ..ClusterView::default() }, ..Snapshot::default() };
        let clock_start = Instant::now();

        let obs = observation(0, DcsView::Reachable(snap.view.clone()));
        let decision = node.step(&obs);
        let step = StepReport {
            obs: &obs,
            decision: &decision,
            state: node.state(),
            snapshot: Some(&snap),
            clock_start,
        };
        status.record(&step);
        assert_eq!(status.snapshot.as_ref().map(|s| s.view.revision), Some(9));
        assert_eq!(status.synchronous_mode, SyncMode::On);
        assert_eq!(status.leader_changes, node.state().leader_changes);

        // etcd down: only a step with a fresh read replaces the snapshot.
        let obs = observation(1_000, DcsView::Unreachable { since_ms: 1_000 });
        let decision = node.step(&obs);
        let step =
            StepReport { obs: &obs, decision: &decision, state: node.state(), snapshot: None, clock_start };
        status.record(&step);
        assert_eq!(status.snapshot.as_ref().map(|s| s.view.revision), Some(9));
    }
}
