//! The node status JSON, with Patroni's field names (reference section
//! 1.2: `get_postgresql_status` and `_write_status_response`). Flags that
//! Patroni writes only when true (`pause`, `sync_standby`,
//! `quorum_standby`, `cluster_unlocked`) are left out when false, as there.

use keel_core::{MemberState, StandbySyncState};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::status::NodeStatus;
use crate::dcs::codec::{role_name, state_name};

/// keel's version in Patroni's `patroni.version`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn status_json(s: &NodeStatus, now: Instant) -> Value {
    let mut out = Map::new();
    out.insert("state".into(), json!(state_name(s.state)));
    out.insert("role".into(), json!(role_name(s.role)));
    out.insert("server_version".into(), json!(s.server_version));
    if s.state == MemberState::Running {
        let xlog = if s.in_recovery {
            json!({
                "received_location": s.receive_lsn,
                "replayed_location": s.replay_lsn,
                "replayed_timestamp": null,
                "paused": false,
            })
        } else {
            json!({ "location": s.write_lsn })
        };
        out.insert("xlog".into(), xlog);
        out.insert("timeline".into(), json!(s.timeline));
    }
    if let Some(state) = s.replication_state {
        out.insert("replication_state".into(), json!(state.as_str()));
    }
    if !s.replication.is_empty() {
        let rows: Vec<Value> = s
            .replication
            .iter()
            .map(|r| {
                json!({
                    "application_name": r.name,
                    // keel reads only whether the walsender streams.
                    "state": if r.streaming { Value::from("streaming") } else { Value::Null },
                    "sync_state": sync_state_name(r.sync_state),
                })
            })
            .collect();
        out.insert("replication".into(), Value::Array(rows));
    }
    if s.sync_standby {
        out.insert("sync_standby".into(), json!(true));
    }
    if s.quorum_standby {
        out.insert("quorum_standby".into(), json!(true));
    }
    if s.pending_restart {
        out.insert("pending_restart".into(), json!(true));
        if !s.pending_restart_reason.is_empty() {
            out.insert("pending_restart_reason".into(), Value::Object(s.pending_restart_reason.clone()));
        }
    }
    if let Some(scheduled) = &s.scheduled_restart {
        out.insert("scheduled_restart".into(), scheduled.clone());
    }
    if s.paused {
        out.insert("pause".into(), json!(true));
    }
    let view = s.view_valid_until.is_some_and(|until| now < until);
    if view && s.leader.is_none() {
        out.insert("cluster_unlocked".into(), json!(true));
    }
    out.insert("dcs_last_seen".into(), json!(s.dcs_last_seen_s));
    out.insert("tags".into(), Value::Object(s.member_tags.clone().into_iter().collect()));
    if let Some(id) = s.system_id {
        out.insert("database_system_identifier".into(), json!(id.to_string()));
    }
    out.insert("patroni".into(), json!({ "version": VERSION, "scope": s.scope, "name": s.name }));
    // keel's own: why the node does what it does, as logged.
    out.insert("keel".into(), json!({ "last_reason": s.last_reason }));
    Value::Object(out)
}

fn sync_state_name(state: StandbySyncState) -> &'static str {
    match state {
        StandbySyncState::Async => "async",
        StandbySyncState::Potential => "potential",
        StandbySyncState::Sync => "sync",
        StandbySyncState::Quorum => "quorum",
    }
}
