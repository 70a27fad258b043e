//! The bodies of `GET /cluster`, `/history` and `/config` (reference
//! section 1.2), from the last DCS view the agent read. Patroni reads etcd
//! afresh for each request; keel answers from the agent's last read, so
//! that a request never opens a connection (see `mod.rs`).

use keel_core::{ClusterView, SyncMode};
use serde_json::{json, Map, Value};

use super::status::NodeStatus;
use crate::dcs::codec::{self, encode_tags, format_timestamp, state_name};
use crate::dcs::patroni::Snapshot;

/// `GET /cluster` (Patroni's `cluster_as_json`): the members by name, with
/// their role, state (a replica's replication state), addresses,
/// timeline, positions and lags, pending and scheduled restart, and every
/// tag.
/// `None` before the agent's first DCS read.
pub fn cluster_json(s: &NodeStatus) -> Option<Value> {
    let snap = s.snapshot.as_ref()?;
    Some(cluster_as_json(&s.scope, snap, s.synchronous_mode, s.paused))
}

/// Patroni's `cluster_as_json` over one read of the scope, with the
/// synchronous mode and pause the reader goes by: `GET /cluster`, and
/// what keelctl's `list` and `topology` show (as patronictl builds its
/// tables from it).
pub fn cluster_as_json(scope: &str, snap: &Snapshot, synchronous_mode: SyncMode, paused: bool) -> Value {
    let view = &snap.view;
    let leader = view.leader_name();
    // The leader's position: what it published in `status`, else what its
    // member key says.
    let leader_lsn = view.optime_lsn.or_else(|| leader.and_then(|l| view.members.get(l)).map(|m| m.lsn));
    let mut members: Vec<(&String, Value)> = view
        .members
        .iter()
        .map(|(name, m)| {
            let is_leader = leader == Some(name.as_str());
            let mut out = Map::new();
            out.insert("name".into(), json!(name));
            out.insert("role".into(), json!(cluster_role(view, synchronous_mode, name, is_leader)));
            let details = snap.member_details.get(name);
            // Patroni: a replica's replication state (`streaming`, `in
            // archive recovery`) stands for its state; else the state word
            // the member wrote.
            let replication_state =
                details.and_then(|d| d.extras.replication_state.as_deref()).filter(|_| !is_leader);
            let state = replication_state
                .or(details.map(|d| d.state.as_str()).filter(|s| !s.is_empty()))
                .unwrap_or(state_name(m.state));
            out.insert("state".into(), json!(state));
            out.insert("api_url".into(), json!(m.api_url));
            if let Some((host, port)) = host_port(&m.conn_url) {
                out.insert("host".into(), json!(host));
                if let Some(port) = port {
                    out.insert("port".into(), json!(port));
                }
            }
            if m.timeline > 0 {
                out.insert("timeline".into(), json!(m.timeline));
            }
            if !is_leader {
                // Patroni (`cluster_as_json`): for the position, and the
                // received and replayed ones, the LSN and its lag behind
                // the leader's (never negative); "unknown" for both
                // without a position. A key without the field-by-field
                // positions (built in code) has only `m.lsn`.
                let positions = details.map(|d| d.positions).unwrap_or_default();
                let known = |lsn: Option<u64>| lsn.filter(|l| *l > 0);
                let fallback = known(Some(m.lsn));
                for (prefix, lsn) in [
                    ("receive_", known(positions.receive_lsn)),
                    ("replay_", known(positions.replay_lsn)),
                    ("", known(positions.lsn).or(fallback)),
                ] {
                    let (lsn_value, lag_value) = match lsn {
                        Some(lsn) => {
                            let lag = leader_lsn.unwrap_or(0).saturating_sub(lsn);
                            (json!(keel_core::Lsn(lsn).to_string()), json!(lag))
                        }
                        None => (json!("unknown"), json!("unknown")),
                    };
                    out.insert(format!("{prefix}lsn"), lsn_value);
                    out.insert(format!("{prefix}lag"), lag_value);
                }
            }
            match details {
                Some(d) => {
                    let extras = &d.extras;
                    if extras.pending_restart {
                        out.insert("pending_restart".into(), json!(true));
                        if !extras.pending_restart_reason.is_empty() {
                            let reason = Value::Object(extras.pending_restart_reason.clone());
                            out.insert("pending_restart_reason".into(), reason);
                        }
                    }
                    if let Some(scheduled) = &extras.scheduled_restart {
                        out.insert("scheduled_restart".into(), Value::Object(scheduled.clone()));
                    }
                    out.insert("tags".into(), Value::Object(extras.tags.clone()));
                }
                None => {
                    out.insert("tags".into(), encode_tags(&m.tags));
                }
            }
            (name, Value::Object(out))
        })
        .collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Map::new();
    out.insert("members".into(), Value::Array(members.into_iter().map(|(_, m)| m).collect()));
    out.insert("scope".into(), json!(scope));
    if paused {
        out.insert("pause".into(), json!(true));
    }
    if let Some(failover) = &view.failover {
        if let Some(at_ms) = failover.scheduled_at_wall_ms {
            let mut scheduled = Map::new();
            scheduled.insert("at".into(), json!(format_timestamp(at_ms)));
            if let Some(from) = &failover.leader {
                scheduled.insert("from".into(), json!(from));
            }
            if let Some(to) = &failover.candidate {
                scheduled.insert("to".into(), json!(to));
            }
            out.insert("scheduled_switchover".into(), Value::Object(scheduled));
        }
    }
    Value::Object(out)
}

/// `GET /history`: the `history` key's lines as Patroni wrote them,
/// `[[timeline, lsn, reason, timestamp, new_leader], ...]`. `None` before
/// the agent's first DCS read.
pub fn history_json(s: &NodeStatus) -> Option<Vec<u8>> {
    s.snapshot.as_ref().map(|snap| codec::encode_history(&snap.history))
}

/// `GET /config`: the `config` key as stored, as Patroni answers it
/// (`cluster.config.data`): no defaults filled in, so that after `resume`
/// `pause` is absent, not `false`. `None` (Patroni's 502) when the view
/// has no valid `config`.
pub fn config_json(s: &NodeStatus) -> Option<Value> {
    let snap = s.snapshot.as_ref()?;
    snap.config.as_ref()?;
    snap.config_stored.clone()
}

/// Patroni's role names in `/cluster`: the leader key's holder is the
/// leader; members listed in `sync` are sync (or quorum) standbys while
/// synchronous mode is on.
fn cluster_role(view: &ClusterView, mode: SyncMode, name: &str, is_leader: bool) -> &'static str {
    let listed = view.sync.as_ref().is_some_and(|s| s.members.contains(name));
    match (is_leader, mode, listed) {
        (true, _, _) => "leader",
        (false, SyncMode::On, true) => "sync_standby",
        (false, SyncMode::Quorum, true) => "quorum_standby",
        _ => "replica",
    }
}

/// Host and port of a libpq URL (`postgres://user@host:port/db?...`), as
/// Patroni's `conn_kwargs`. `None` when there is no host.
fn host_port(conn_url: &str) -> Option<(String, Option<u16>)> {
    let rest = conn_url.strip_prefix("postgresql://").or_else(|| conn_url.strip_prefix("postgres://"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.strip_prefix('[') {
        // IPv6: `[::1]:5432`.
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        },
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.and_then(|p| p.parse().ok())))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use keel_core::dcs::{FailoverKey, LeaderKey, SyncKey};
    use keel_core::{Member, MemberRole, MemberState, Tags, TimelineSwitch};

    use super::*;
    use crate::config::dynamic_from_json;
    use crate::dcs::codec::Positions;
    use crate::dcs::codec::{HistoryEntry, MemberDetails, MemberExtras};
    use crate::dcs::patroni::Snapshot;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn member(role: MemberRole, lsn: u64, port: u16) -> Member {
        Member {
            role,
            state: MemberState::Running,
            timeline: 3,
            lsn,
            tags: Tags::new(),
            api_url: format!("http://10.0.0.{port}:8008/patroni"),
            conn_url: format!("postgres://10.0.0.{port}:{port}/postgres"),
        }
    }

    /// pg1 leads at 1000; pg2 is a sync standby at 900; pg3 has reported
    /// no position yet.
    fn status_with_view() -> NodeStatus {
        let mut s = NodeStatus::new("pg2", "demo", BTreeMap::new());
        let mut view = ClusterView {
            leader: Some(LeaderKey { name: "pg1".into(), revision: 5 }),
            optime_lsn: Some(1000),
            sync: Some(SyncKey {
                leader: Some("pg1".into()),
                members: BTreeSet::from(["pg2".into()]),
                quorum: None,
                revision: 6,
            }),
            ..ClusterView::default()
        };
        let mut pg3 = member(MemberRole::Replica, 0, 5434);
        pg3.tags.nofailover = true;
        pg3.state = MemberState::Stopped;
        view.members.insert("pg3".into(), pg3);
        view.members.insert("pg2".into(), member(MemberRole::Replica, 900, 5433));
        view.members.insert("pg1".into(), member(MemberRole::Primary, 1000, 5432));
        let history = vec![
            HistoryEntry {
                switch: TimelineSwitch { timeline: 1, fork_lsn: 500, new_leader: None },
                reason: "no recovery target specified".into(),
                timestamp: Some("2024-01-01T00:00:00Z".into()),
            },
            HistoryEntry {
                switch: TimelineSwitch { timeline: 2, fork_lsn: 800, new_leader: Some("pg1".into()) },
                reason: "no recovery target specified".into(),
                timestamp: None,
            },
        ];
        let stored = br#"{"ttl": 40, "synchronous_mode": true}"#;
        let config = dynamic_from_json(stored).expect("config");
        let config_stored = serde_json::from_slice(stored).ok();
        // pg2 reports what Patroni's touch_member adds: it streams, waits
        // for a restart, has one scheduled, and carries a custom tag. pg3's
        // key has no details (as if only keel-core's facts were read).
        let mut pg2 = MemberDetails { state: "running".into(), ..MemberDetails::default() };
        pg2.extras = MemberExtras {
            replication_state: Some("streaming".into()),
            pending_restart: true,
            pending_restart_reason: object(
                json!({"max_connections": {"old_value": "100", "new_value": "200"}}),
            ),
            scheduled_restart: Some(object(json!({"schedule": "2026-11-26T03:00:00+00:00"}))),
            pause: false,
            tags: object(json!({"dc": "eu"})),
        };
        pg2.positions = Positions { lsn: Some(900), receive_lsn: Some(950), replay_lsn: Some(900) };
        let pg1 = MemberDetails { state: "running".into(), ..MemberDetails::default() };
        let member_details = BTreeMap::from([("pg1".to_owned(), pg1), ("pg2".to_owned(), pg2)]);
        s.snapshot = Some(Snapshot {
            view,
            config: Some(config),
            config_stored,
            history,
            warnings: Vec::new(),
            member_details,
        });
        s.synchronous_mode = SyncMode::On;
        s
    }

    #[test]
    fn cluster_lists_members_by_name_with_patroni_roles_addresses_positions_and_lags() {
        let json = cluster_json(&status_with_view()).expect("a view");
        assert_eq!(json["scope"], "demo");
        assert!(json.get("pause").is_none(), "{json}");
        let members = json["members"].as_array().expect("members");
        let names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap_or("")).collect();
        assert_eq!(names, ["pg1", "pg2", "pg3"]);
        assert_eq!(
            members[0],
            json!({
                "name": "pg1", "role": "leader", "state": "running",
                "api_url": "http://10.0.0.5432:8008/patroni", "host": "10.0.0.5432", "port": 5432,
                "timeline": 3, "tags": {},
            })
        );
        assert_eq!(
            members[1],
            json!({
                "name": "pg2", "role": "sync_standby", "state": "streaming",
                "api_url": "http://10.0.0.5433:8008/patroni", "host": "10.0.0.5433", "port": 5433,
                "timeline": 3, "lag": 100, "tags": {"dc": "eu"}, "pending_restart": true,
                "lsn": "0/384", "receive_lsn": "0/3B6", "receive_lag": 50, "replay_lsn": "0/384", "replay_lag": 100,
                "pending_restart_reason": {"max_connections": {"old_value": "100", "new_value": "200"}},
                "scheduled_restart": {"schedule": "2026-11-26T03:00:00+00:00"},
            })
        );
        assert_eq!(members[2]["role"], "replica");
        assert_eq!(members[2]["state"], "stopped");
        for field in ["lag", "lsn", "receive_lag", "receive_lsn", "replay_lag", "replay_lsn"] {
            assert_eq!(members[2][field], "unknown", "{field}");
        }
        assert_eq!(members[2]["tags"], json!({"nofailover": true}));
    }

    #[test]
    fn cluster_shows_pause_and_scheduled_switchover_and_nothing_before_a_read() {
        assert_eq!(cluster_json(&NodeStatus::new("pg1", "demo", BTreeMap::new())), None);
        let mut s = status_with_view();
        s.paused = true;
        s.synchronous_mode = SyncMode::Off;
        if let Some(snap) = s.snapshot.as_mut() {
            snap.view.failover = Some(FailoverKey {
                leader: Some("pg1".into()),
                candidate: Some("pg3".into()),
                scheduled_at_wall_ms: Some(1_700_000_000_000),
                revision: 7,
            });
        }
        let json = cluster_json(&s).expect("a view");
        assert_eq!(json["pause"], true);
        assert_eq!(json["members"][1]["role"], "replica", "synchronous mode is off");
        assert_eq!(
            json["scheduled_switchover"],
            json!({"at": "2023-11-14T22:13:20Z", "from": "pg1", "to": "pg3"})
        );
    }

    #[test]
    fn history_lists_patroni_lines() {
        let body = history_json(&status_with_view()).expect("a view");
        let json: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            json,
            json!([
                [1, 500, "no recovery target specified", "2024-01-01T00:00:00Z"],
                [2, 800, "no recovery target specified", null, "pg1"],
            ])
        );
        assert_eq!(history_json(&NodeStatus::new("pg1", "demo", BTreeMap::new())), None);
    }

    #[test]
    fn config_is_the_stored_key_without_defaults_or_none_without_one() {
        let json = config_json(&status_with_view()).expect("a config");
        assert_eq!(json, json!({"ttl": 40, "synchronous_mode": true}));
        let mut s = status_with_view();
        if let Some(snap) = s.snapshot.as_mut() {
            snap.config = None;
        }
        assert_eq!(config_json(&s), None);
    }

    #[test]
    fn host_port_reads_libpq_urls() {
        assert_eq!(host_port("postgres://u:p@db1:5433/x?sslmode=require"), Some(("db1".into(), Some(5433))));
        assert_eq!(host_port("postgresql://[::1]:5432/postgres"), Some(("::1".into(), Some(5432))));
        assert_eq!(host_port("postgres://db2/postgres"), Some(("db2".into(), None)));
        assert_eq!(host_port("host=db1 port=5432"), None);
        assert_eq!(host_port(""), None);
    }
}
