//! Patroni's JSON values, read into keel-core's typed facts and written
//! back in the form Patroni and its tools read.
//!
//! Reading is strict about meaning and lenient about form: a value that
//! cannot mean what the key needs is an error (the caller logs it and
//! treats the key as absent); a field Patroni may leave out gets its
//! default; unknown fields are ignored. Nothing here panics on input.

use std::collections::{BTreeMap, BTreeSet};

use keel_core::dcs::{FailoverKey, SyncKey};
use keel_core::{Member, MemberRole, MemberState, MemberStatus, Tags, TimelineSwitch};
use serde_json::{json, Map, Value};

/// One line of Patroni's `history`: the switch keel-core sees, plus the
/// reason and time Patroni records, kept for writing it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub switch: TimelineSwitch,
    pub reason: String,
    pub timestamp: Option<String>,
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected a JSON object, found {}", kind(&other))),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// What a JSON value is, for error messages ("found a string").
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A non-negative integer, also when written as a string (Patroni's LSNs
/// are integers, but other tools write strings).
fn uint(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Some(true),
            "false" | "off" | "no" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

fn field_str(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_owned)
}

pub fn parse_role(role: &str) -> Option<MemberRole> {
    match role {
        "primary" | "master" => Some(MemberRole::Primary),
        "replica" | "standby_leader" | "sync_standby" | "quorum_standby" => Some(MemberRole::Replica),
        "uninitialized" => Some(MemberRole::Uninitialized),
        _ => None,
    }
}

pub fn role_name(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Primary => "primary",
        MemberRole::Replica => "replica",
        MemberRole::Uninitialized => "uninitialized",
    }
}

/// Patroni's states. One keel does not know counts as not running: such a
/// member is never taken for a healthy candidate.
pub fn parse_state(state: &str) -> MemberState {
    match state {
        // A replica's replication state, as `/cluster` shows it, may be
        // written by other tools in place of `running`.
        "running" | "streaming" | "in archive recovery" => MemberState::Running,
        "starting" | "restarting after failure" | "restarting" => MemberState::Starting,
        "stopping" => MemberState::Stopping,
        "crashed" | "start failed" => MemberState::Crashed,
        "creating replica" => MemberState::CreatingReplica,
        "initializing new cluster" | "running custom bootstrap script" => MemberState::InitializingNewCluster,
        "rewinding" | "running pg_rewind" => MemberState::Rewinding,
        _ => MemberState::Stopped,
    }
}

pub fn state_name(state: MemberState) -> &'static str {
    match state {
        MemberState::Running => "running",
        MemberState::Starting => "starting",
        MemberState::Stopping => "stopping",
        MemberState::Stopped => "stopped",
        MemberState::Crashed => "crashed",
        MemberState::CreatingReplica => "creating replica",
        MemberState::InitializingNewCluster => "initializing new cluster",
        MemberState::Rewinding => "rewinding",
    }
}

pub fn parse_tags(v: Option<&Value>) -> Tags {
    let mut tags = Tags::new();
    let Some(Value::Object(map)) = v else {
        return tags;
    };
    tags.nofailover = map.get("nofailover").and_then(boolean).unwrap_or(false);
    tags.failover_priority = map
        .get("failover_priority")
        .and_then(|v| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .unwrap_or(1);
    tags.nosync = map.get("nosync").and_then(boolean).unwrap_or(false);
    tags.noloadbalance = map.get("noloadbalance").and_then(boolean).unwrap_or(false);
    tags.clonefrom = map.get("clonefrom").and_then(boolean).unwrap_or(false);
    tags.replicatefrom = field_str(map, "replicatefrom").filter(|s| !s.is_empty());
    tags
}

pub fn encode_tags(tags: &Tags) -> Value {
    let mut map = Map::new();
    if tags.nofailover {
        map.insert("nofailover".into(), json!(true));
    }
    if tags.failover_priority != 1 {
        map.insert("failover_priority".into(), json!(tags.failover_priority));
    }
    if tags.nosync {
        map.insert("nosync".into(), json!(true));
    }
    if tags.noloadbalance {
        map.insert("noloadbalance".into(), json!(true));
    }
    if tags.clonefrom {
        map.insert("clonefrom".into(), json!(true));
    }
    if let Some(r) = &tags.replicatefrom {
        map.insert("replicatefrom".into(), json!(r));
    }
    Value::Object(map)
}

/// What a member key says beyond keel-core's facts: Patroni's fields that
/// operators and their tools read (`patronictl list`, `GET /cluster`).
/// keel-core decides without them; the runtime publishes and shows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberExtras {
    /// On a running replica: `streaming` or `in archive recovery`.
    pub replication_state: Option<String>,
    /// Some setting waits for a Postgres restart.
    pub pending_restart: bool,
    /// Which settings, as Patroni's `{param: {old_value, new_value}}`.
    pub pending_restart_reason: Map<String, Value>,
    /// The restart scheduled through `POST /restart`:
    /// `{"schedule": <ISO time>, "role"?, "postgres_version"?, ...}`.
    pub scheduled_restart: Option<Map<String, Value>>,
    /// The member sees the cluster paused (what `pause --wait` waits for).
    pub pause: bool,
    /// Every tag as published, custom ones included.
    pub tags: Map<String, Value>,
}

impl MemberExtras {
    /// Nothing beyond keel-core's tags.
    pub fn of_tags(tags: &Tags) -> MemberExtras {
        MemberExtras { tags: published_tags(tags, &Map::new()), ..MemberExtras::default() }
    }
}

/// A member key as read: keel-core's facts plus what the runtime shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberKey {
    pub member: Member,
    pub details: MemberDetails,
}

/// The parts of a member key keel-core does not read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberDetails {
    /// `state` as written: Patroni's own word (`restarting`, `starting
    /// after custom bootstrap`...), which keel-core reads as a `MemberState`.
    pub state: String,
    /// `version`: the agent's (Patroni's, or keel's `keel x.y.z`).
    pub version: Option<String>,
    pub extras: MemberExtras,
    /// Fields that could not be read, each with why; they count as absent.
    pub warnings: Vec<String>,
    /// `xlog_location`, `receive_lsn` and `replay_lsn` as written (Patroni's
    /// `Member.lsn`, `receive_lsn`, `replay_lsn`), for `GET /cluster`.
    pub positions: Positions,
}

/// A member's WAL positions as its key states them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Positions {
    pub lsn: Option<u64>,
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
}

/// The tags a member publishes: the configured ones as written (custom
/// tags included), with keel-core's known tags as keel-core reads them, so
/// that the key reads back as the same `Tags` (else keel-core would find
/// its key outdated and publish it again every loop).
pub fn published_tags(core: &Tags, configured: &Map<String, Value>) -> Map<String, Value> {
    const KNOWN: [&str; 6] =
        ["nofailover", "failover_priority", "nosync", "noloadbalance", "clonefrom", "replicatefrom"];
    let mut tags: Map<String, Value> = configured
        .iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Value::Object(known) = encode_tags(core) {
        tags.extend(known);
    }
    tags
}

/// `members/<name>`: keel-core's facts only.
pub fn parse_member(bytes: &[u8]) -> Result<Member, String> {
    parse_member_key(bytes).map(|key| key.member)
}

/// `members/<name>`. A key without a known role is an error; a garbled
/// optional field is left out and named in `details.warnings`.
pub fn parse_member_key(bytes: &[u8]) -> Result<MemberKey, String> {
    let map = object(bytes)?;
    let role_text = field_str(&map, "role").ok_or("no role")?;
    let role = parse_role(&role_text).ok_or_else(|| format!("unknown role {role_text:?}"))?;
    let state_text = field_str(&map, "state").unwrap_or_default();
    let lsn = ["xlog_location", "receive_lsn", "replay_lsn"]
        .iter()
        .filter_map(|k| map.get(*k).and_then(uint))
        .max();
    let timeline = map.get("timeline").and_then(uint).unwrap_or(0);
    let member = Member {
        role,
        state: parse_state(&state_text),
        timeline: u32::try_from(timeline).map_err(|_| format!("timeline {timeline} out of range"))?,
        lsn: lsn.unwrap_or(0),
        tags: parse_tags(map.get("tags")),
        api_url: field_str(&map, "api_url").unwrap_or_default(),
        conn_url: field_str(&map, "conn_url").unwrap_or_default(),
    };
    let mut warnings = Vec::new();
    let mut garbled = |field: &str, v: &Value| warnings.push(format!("{field}: {}; ignored", kind(v)));
    let mut extras = MemberExtras::default();
    match map.get("replication_state") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => extras.replication_state = Some(s.clone()),
        Some(other) => garbled("replication_state", other),
    }
    match map.get("pending_restart") {
        None | Some(Value::Null) => {}
        Some(v) => match boolean(v) {
            Some(b) => extras.pending_restart = b,
            None => garbled("pending_restart", v),
        },
    }
    match map.get("pending_restart_reason") {
        None | Some(Value::Null) => {}
        Some(Value::Object(reasons)) => extras.pending_restart_reason = reasons.clone(),
        Some(other) => garbled("pending_restart_reason", other),
    }
    match map.get("scheduled_restart") {
        None | Some(Value::Null) => {}
        Some(Value::Object(s)) if s.get("schedule").is_some_and(Value::is_string) => {
            extras.scheduled_restart = Some(s.clone());
        }
        Some(other) => garbled("scheduled_restart without a schedule", other),
    }
    match map.get("pause") {
        None | Some(Value::Null) => {}
        Some(v) => match boolean(v) {
            Some(b) => extras.pause = b,
            None => garbled("pause", v),
        },
    }
    match map.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(tags)) => extras.tags = tags.clone(),
        Some(other) => garbled("tags", other),
    }
    let version = match map.get("version") {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(other) => {
            garbled("version", other);
            None
        }
    };
    let position = |k: &str| map.get(k).and_then(uint);
    let positions = Positions {
        lsn: position("xlog_location"),
        receive_lsn: position("receive_lsn"),
        replay_lsn: position("replay_lsn"),
    };
    let details = MemberDetails { state: state_text, version, extras, warnings, positions };
    Ok(MemberKey { member, details })
}

/// `members/<name>` as Patroni's `touch_member` writes it: the optional
/// fields only when they say something.
pub fn encode_member(
    status: &MemberStatus,
    conn_url: &str,
    api_url: &str,
    version: &str,
    extras: &MemberExtras,
) -> Vec<u8> {
    let mut v = json!({
        "conn_url": conn_url,
        "api_url": api_url,
        "state": state_name(status.state),
        "role": role_name(status.role),
        "version": version,
        "timeline": status.timeline,
        "xlog_location": status.lsn,
        "tags": extras.tags,
    });
    if status.role == MemberRole::Replica {
        v["replay_lsn"] = json!(status.lsn);
        v["receive_lsn"] = json!(status.lsn);
    }
    if let Some(state) = &extras.replication_state {
        v["replication_state"] = json!(state);
    }
    if extras.pending_restart {
        v["pending_restart"] = json!(true);
        if !extras.pending_restart_reason.is_empty() {
            v["pending_restart_reason"] = Value::Object(extras.pending_restart_reason.clone());
        }
    }
    if let Some(scheduled) = &extras.scheduled_restart {
        v["scheduled_restart"] = Value::Object(scheduled.clone());
    }
    if extras.pause {
        v["pause"] = json!(true);
    }
    v.to_string().into_bytes()
}

/// `sync`: `{"leader": "pg1", "sync_standby": "pg2,pg3", "quorum": 1}`.
///
/// Patroni's `quorum` is how many other members of `sync_standby` a
/// candidate must see (`patroni/quorum.py`: `quorum = len(voters) -
/// numsync`); keel's [`SyncKey::quorum`] is the other side of the same
/// promise, how many of them have each acknowledged commit. The two convert
/// here, so that a key Patroni wrote during a migration, or one keel writes
/// for a Patroni reader, means the same to both. A `quorum` larger than the
/// list reads as a key promising nothing (every member must be seen).
pub fn parse_sync(bytes: &[u8], revision: u64) -> Result<SyncKey, String> {
    let map = object(bytes)?;
    let leader = field_str(&map, "leader").filter(|l| !l.is_empty());
    // Patroni's comma list; a list some other tool wrote reads the same
    // way item by item, so that it names the same members once keel has
    // rewritten it as a comma list.
    let names = |s: &str| {
        s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>()
    };
    let members = match map.get("sync_standby") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::String(s)) => names(s).into_iter().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).flat_map(names).collect(),
        Some(other) => return Err(format!("sync_standby is {}", kind(other))),
    };
    let quorum = match map.get("quorum") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let seen = uint(v).and_then(|q| u32::try_from(q).ok()).ok_or("quorum is not a small integer")?;
            Some((members.len() as u32).saturating_sub(seen))
        }
    };
    Ok(SyncKey { leader, members, quorum, revision })
}

pub fn encode_sync(leader: &str, members: &BTreeSet<String>, quorum: Option<u32>) -> Vec<u8> {
    let standbys = if members.is_empty() {
        Value::Null
    } else {
        json!(members.iter().cloned().collect::<Vec<_>>().join(","))
    };
    let mut v = json!({"leader": leader, "sync_standby": standbys});
    if let Some(acknowledging) = quorum {
        v["quorum"] = json!((members.len() as u32).saturating_sub(acknowledging));
    }
    v.to_string().into_bytes()
}

/// `failover`: `{"leader": "pg1", "member": "pg2", "scheduled_at": "2026-…+00:00"}`.
pub fn parse_failover(bytes: &[u8], revision: u64) -> Result<FailoverKey, String> {
    let map = object(bytes)?;
    let leader = field_str(&map, "leader").filter(|s| !s.is_empty());
    let candidate =
        field_str(&map, "member").or_else(|| field_str(&map, "candidate")).filter(|s| !s.is_empty());
    if leader.is_none() && candidate.is_none() {
        return Err("names neither a leader nor a candidate".into());
    }
    let scheduled_at_wall_ms = match map.get("scheduled_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_timestamp_ms(s)?),
        Some(other) => return Err(format!("scheduled_at is {}", kind(other))),
    };
    Ok(FailoverKey { leader, candidate, scheduled_at_wall_ms, revision })
}

/// The `failover` value Patroni's `manual_failover` writes: `leader`,
/// `member` and `scheduled_at`, each only when set.
pub fn format_failover(leader: Option<&str>, candidate: Option<&str>, scheduled_ms: Option<i64>) -> Vec<u8> {
    let mut value = Map::new();
    if let Some(l) = leader {
        value.insert("leader".into(), json!(l));
    }
    if let Some(c) = candidate {
        value.insert("member".into(), json!(c));
    }
    if let Some(ms) = scheduled_ms {
        value.insert("scheduled_at".into(), json!(format_timestamp(ms)));
    }
    Value::Object(value).to_string().into_bytes()
}

/// An ISO 8601 time with its offset (Patroni refuses schedules without one).
pub fn parse_timestamp_ms(text: &str) -> Result<i64, String> {
    let ts: jiff::Timestamp = text.trim().parse().map_err(|e| format!("bad time {text:?}: {e}"))?;
    Ok(ts.as_millisecond())
}

pub fn format_timestamp(wall_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(wall_ms).map_or_else(|_| String::new(), |t| t.to_string())
}

/// `history`: `[[timeline, lsn, reason, timestamp, new_leader], ...]`.
pub fn parse_history(bytes: &[u8]) -> Result<Vec<HistoryEntry>, String> {
    let items: Vec<Value> = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => items,
        Ok(other) => return Err(format!("expected a JSON array, found {}", kind(&other))),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    let mut out = Vec::with_capacity(items.len().min(keel_core::limits::HISTORY_MAX));
    for (i, item) in items.iter().take(keel_core::limits::HISTORY_MAX).enumerate() {
        let Value::Array(line) = item else {
            return Err(format!("line {i} is {}", kind(item)));
        };
        let timeline = line.first().and_then(uint).and_then(|t| u32::try_from(t).ok());
        let fork_lsn = line.get(1).and_then(uint);
        let (Some(timeline), Some(fork_lsn)) = (timeline, fork_lsn) else {
            return Err(format!("line {i} has no timeline and LSN"));
        };
        let text = |j: usize| line.get(j).and_then(Value::as_str).map(str::to_owned);
        out.push(HistoryEntry {
            switch: TimelineSwitch { timeline, fork_lsn, new_leader: text(4).filter(|s| !s.is_empty()) },
            reason: text(2).unwrap_or_default(),
            timestamp: text(3),
        });
    }
    Ok(out)
}

pub fn encode_history(entries: &[HistoryEntry]) -> Vec<u8> {
    let lines: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut line = vec![json!(e.switch.timeline), json!(e.switch.fork_lsn), json!(e.reason)];
            line.push(e.timestamp.as_ref().map_or(Value::Null, |t| json!(t)));
            if let Some(leader) = &e.switch.new_leader {
                line.push(json!(leader));
            }
            Value::Array(line)
        })
        .collect();
    Value::Array(lines).to_string().into_bytes()
}

/// `status`: `{"optime": 123, "slots": {...}}`; the optime is what keel reads.
pub fn parse_status(bytes: &[u8]) -> Result<u64, String> {
    let map = object(bytes)?;
    map.get("optime").and_then(uint).ok_or_else(|| "no optime".to_owned())
}

pub fn encode_status(optime: u64) -> Vec<u8> {
    json!({"optime": optime}).to_string().into_bytes()
}

/// `failsafe`: `{"pg1": "http://…/patroni", …}`.
pub fn parse_failsafe(bytes: &[u8]) -> Result<BTreeSet<String>, String> {
    Ok(object(bytes)?.keys().cloned().collect())
}

pub fn encode_failsafe(members: &BTreeMap<String, String>) -> Vec<u8> {
    json!(members).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patroni_primary_member_reads_as_primary_with_its_position() {
        let raw = br#"{"conn_url":"postgres://10.0.0.11:5432/postgres","api_url":"http://10.0.0.11:8008/patroni","state":"running","role":"master","version":"4.0.0","xlog_location":50331808,"timeline":3,"tags":{"nofailover":true,"failover_priority":"2"}}"#;
        let m = parse_member(raw).unwrap();
        assert_eq!(m.role, MemberRole::Primary);
        assert_eq!(m.state, MemberState::Running);
        assert_eq!((m.lsn, m.timeline), (50331808, 3));
        assert!(m.tags.nofailover);
        assert_eq!(m.tags.failover_priority, 2);
        assert_eq!(m.api_url, "http://10.0.0.11:8008/patroni");
    }

    #[test]
    fn replica_member_position_is_the_furthest_of_its_lsns() {
        let raw =
            br#"{"role":"replica","state":"running","xlog_location":100,"receive_lsn":300,"replay_lsn":200}"#;
        assert_eq!(parse_member(raw).unwrap().lsn, 300);
    }

    #[test]
    fn garbage_member_values_are_errors_not_guesses() {
        for raw in [
            &b"not json"[..],
            b"[1,2]",
            b"{}",
            br#"{"role":"king"}"#,
            br#"{"role":"replica","timeline":99999999999}"#,
        ] {
            assert!(parse_member(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn unknown_member_state_counts_as_not_running() {
        let m = parse_member(br#"{"role":"replica","state":"dancing"}"#).unwrap();
        assert_eq!(m.state, MemberState::Stopped);
    }

    #[test]
    fn member_round_trips_through_patroni_json() {
        let status = MemberStatus {
            role: MemberRole::Replica,
            state: MemberState::Running,
            timeline: 2,
            lsn: 4096,
            tags: Tags { nosync: true, replicatefrom: Some("pg1".into()), ..Tags::new() },
        };
        let extras = MemberExtras {
            replication_state: Some("streaming".into()),
            pending_restart: true,
            pending_restart_reason: json!({"max_connections": {"old_value": "100", "new_value": "200"}})
                .as_object()
                .cloned()
                .unwrap(),
            scheduled_restart: json!({"schedule": "2026-11-26T03:00:00+00:00", "role": "replica"})
                .as_object()
                .cloned(),
            pause: true,
            tags: published_tags(&status.tags, json!({"dc": "eu", "rack": 3}).as_object().unwrap()),
        };
        let raw = encode_member(
            &status,
            "postgres://a:5432/postgres",
            "http://a:8008/patroni",
            "keel 0.1.0",
            &extras,
        );
        let key = parse_member_key(&raw).unwrap();
        let m = &key.member;
        assert_eq!((m.role, m.state, m.timeline, m.lsn), (status.role, status.state, 2, 4096));
        assert_eq!(m.tags, status.tags);
        assert_eq!(key.details.extras, extras);
        assert_eq!(key.details.state, "running");
        assert_eq!(key.details.version.as_deref(), Some("keel 0.1.0"));
        assert_eq!(key.details.extras.tags["dc"], "eu");
        assert!(key.details.warnings.is_empty(), "{:?}", key.details.warnings);
    }

    #[test]
    fn quiet_member_key_leaves_the_optional_fields_out() {
        let status = MemberStatus {
            role: MemberRole::Primary,
            state: MemberState::Running,
            timeline: 1,
            lsn: 1,
            tags: Tags::new(),
        };
        let raw = encode_member(&status, "", "", "keel", &MemberExtras::of_tags(&status.tags));
        let json: Value = serde_json::from_slice(&raw).unwrap();
        for field in
            ["replication_state", "pending_restart", "pending_restart_reason", "scheduled_restart", "pause"]
        {
            assert!(json.get(field).is_none(), "{field} in {json}");
        }
        assert_eq!(json["tags"], json!({}));
    }

    #[test]
    fn published_tags_read_back_as_the_same_core_tags() {
        // nofailover: false wins over a priority of 0 in keel-core (config
        // `to_core`), so the priority as written must not be published.
        let core = Tags { failover_priority: 1, nosync: true, ..Tags::new() };
        let configured = json!({"nofailover": false, "failover_priority": 0, "sync_priority": 0, "dc": "eu"});
        let tags = published_tags(&core, configured.as_object().unwrap());
        assert_eq!(parse_tags(Some(&Value::Object(tags.clone()))), core);
        assert_eq!(Value::Object(tags), json!({"nosync": true, "sync_priority": 0, "dc": "eu"}));
    }

    #[test]
    fn garbled_optional_member_fields_are_ignored_with_a_warning() {
        let raw = br#"{"role":"replica","state":"running","replication_state":5,"pending_restart":"maybe",
            "pending_restart_reason":[1],"scheduled_restart":{"role":"replica"},"pause":{},"tags":"dc=eu",
            "version":4}"#;
        let key = parse_member_key(raw).unwrap();
        assert_eq!(key.details.extras, MemberExtras::default());
        assert_eq!(key.details.version, None);
        assert_eq!(key.details.warnings.len(), 7, "{:?}", key.details.warnings);
        assert!(
            key.details.warnings[0].starts_with("replication_state: a number"),
            "{:?}",
            key.details.warnings
        );
    }

    #[test]
    fn patroni_replica_states_read_as_running() {
        for state in ["running", "streaming", "in archive recovery"] {
            let raw = format!(r#"{{"role":"replica","state":"{state}"}}"#);
            assert_eq!(parse_member(raw.as_bytes()).unwrap().state, MemberState::Running, "{state}");
        }
    }

    /// Values Patroni's `QuorumStateResolver` writes for `active` standbys
    /// and `synchronous_node_count` (numsync): `quorum = len(active) -
    /// numsync`; keel reads how many standbys hold each commit (numsync).
    #[test]
    fn sync_key_quorum_converts_to_and_from_patronis_field() {
        let cases: [(&str, u32, u32); 5] = [
            ("pg2,pg3", 1, 1), // numsync 1 of 2
            ("pg2,pg3", 0, 2), // numsync 2 of 2
            ("pg2,pg3,pg4", 2, 1),
            ("pg2,pg3,pg4", 1, 2),
            ("pg2", 0, 1),
        ];
        for (voters, patroni, acknowledging) in cases {
            let raw = format!(r#"{{"leader":"pg1","sync_standby":"{voters}","quorum":{patroni}}}"#);
            let k = parse_sync(raw.as_bytes(), 3).unwrap();
            assert_eq!(k.quorum, Some(acknowledging), "{raw}");
            let written: Value = serde_json::from_slice(&encode_sync("pg1", &k.members, k.quorum)).unwrap();
            assert_eq!(written["quorum"], json!(patroni), "{raw}");
        }
        // A quorum above the voters' count promises nothing.
        let k = parse_sync(br#"{"leader":"pg1","sync_standby":"pg2","quorum":5}"#, 3).unwrap();
        assert_eq!(k.quorum, Some(0));
    }

    #[test]
    fn sync_key_reads_comma_list_null_and_quorum() {
        let k = parse_sync(br#"{"leader":"pg1","sync_standby":"pg2, pg3","quorum":1}"#, 7).unwrap();
        assert_eq!(k.members, ["pg2".to_owned(), "pg3".to_owned()].into());
        // Two voters, one of which must be seen: each commit is on one.
        assert_eq!((k.quorum, k.revision), (Some(1), 7));
        let empty = parse_sync(br#"{"leader":"pg1","sync_standby":null}"#, 1).unwrap();
        assert!(empty.members.is_empty());
        assert!(parse_sync(br#"{"leader":"pg1","sync_standby":5}"#, 1).is_err());
        let back = parse_sync(&encode_sync("pg1", &k.members, Some(1)), 9).unwrap();
        assert_eq!(back.members, k.members);
    }

    #[test]
    fn sync_key_list_items_read_as_the_comma_list_does() {
        // Found by fuzz/ (dcs): [" pg2"] read as " pg2", and as "pg2" once
        // keel had rewritten it as a comma list.
        let list = parse_sync(br#"{"leader":"pg1","sync_standby":[" pg2","","pg3,pg4"]}"#, 1).unwrap();
        let text = parse_sync(br#"{"leader":"pg1","sync_standby":" pg2,,pg3,pg4"}"#, 1).unwrap();
        assert_eq!(list.members, ["pg2".to_owned(), "pg3".to_owned(), "pg4".to_owned()].into());
        assert_eq!(list, text);
        let back = parse_sync(&encode_sync("pg1", &list.members, None), 1).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn failover_key_reads_patroni_schedule_with_offset() {
        let k = parse_failover(
            br#"{"leader":"pg1","member":"pg2","scheduled_at":"2026-11-25T22:00:00+01:00"}"#,
            3,
        )
        .unwrap();
        assert_eq!(k.candidate.as_deref(), Some("pg2"));
        assert_eq!(k.scheduled_at_wall_ms, Some(parse_timestamp_ms("2026-11-25T21:00:00Z").unwrap()));
        assert!(parse_failover(br#"{"leader":"pg1","scheduled_at":"tomorrow"}"#, 3).is_err());
        assert!(parse_failover(br#"{}"#, 3).is_err());
    }

    #[test]
    fn history_round_trips_and_rejects_malformed_lines() {
        let raw = br#"[[1,25165984,"no recovery target specified","2026-11-25T21:00:00+00:00","pg2"],[2,50331808,"x",null]]"#;
        let h = parse_history(raw).unwrap();
        assert_eq!(
            h[0].switch,
            TimelineSwitch { timeline: 1, fork_lsn: 25165984, new_leader: Some("pg2".into()) }
        );
        assert_eq!(h[1].switch.new_leader, None);
        assert_eq!(parse_history(&encode_history(&h)).unwrap(), h);
        assert!(parse_history(br#"[["a"]]"#).is_err());
        assert!(parse_history(br#"{"a":1}"#).is_err());
    }

    #[test]
    fn status_and_failsafe_read_what_patroni_writes() {
        assert_eq!(parse_status(br#"{"optime":67108960,"slots":{"pg2":1}}"#), Ok(67108960));
        assert!(parse_status(b"67108960").is_err());
        let fs = parse_failsafe(br#"{"pg1":"http://a/patroni","pg2":"http://b/patroni"}"#).unwrap();
        assert_eq!(fs.len(), 2);
    }
}
