//! `list`, `topology` and `history`: what patronictl shows, computed from
//! one [`Snapshot`], as a table, JSON or YAML.

use std::collections::{BTreeMap, BTreeSet};

use keel_core::{MemberRole, SyncMode};
use serde_json::{json, Map, Value};

use super::table::{Align, Table};
use super::{CtlError, Format};
use crate::dcs::codec;
use crate::dcs::patroni::Snapshot;

/// One member as patronictl shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRow {
    pub name: String,
    /// `host:port` of its `conn_url`.
    pub host: String,
    /// `Leader`, `Sync Standby`, `Quorum Standby` or `Replica`.
    pub role: &'static str,
    /// As `GET /cluster` shows it: a replica's replication state
    /// (`streaming`, `in archive recovery`), else the state it wrote.
    pub state: String,
    pub timeline: u32,
    pub lag: Lag,
    /// Every tag the member published (custom ones included), in Patroni's
    /// JSON form.
    pub tags: Map<String, Value>,
    pub pending_restart: bool,
    /// `param: old->new`, one per line (patronictl's format).
    pub pending_restart_reason: Vec<String>,
    /// `<schedule>[ if version < <v>]`, as patronictl shows it.
    pub scheduled_restart: Option<String>,
    /// `replicatefrom`: whom it streams from, for `topology`.
    pub upstream: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lag {
    /// The leader: no lag to show.
    None,
    Bytes(u64),
    /// No WAL position published.
    Unknown,
}

impl Lag {
    /// patronictl's "Lag in MB": rounded megabytes.
    fn mb(self) -> Option<Value> {
        match self {
            Lag::None => None,
            Lag::Bytes(bytes) => Some(json!(bytes.saturating_add(1 << 19) >> 20)),
            Lag::Unknown => Some(json!("unknown")),
        }
    }
}

/// The members, by name, with the roles patronictl gives them
/// (`cluster_as_json`): the leader key's holder is the Leader; in
/// synchronous mode the `sync` key's members are Sync (or Quorum) Standby.
pub fn member_rows(snap: &Snapshot) -> Vec<MemberRow> {
    let view = &snap.view;
    let leader = view.leader_name();
    let sync_mode = view.config.as_ref().map_or(SyncMode::Off, |c| c.synchronous_mode);
    let sync: BTreeSet<&str> = match (sync_mode, &view.sync) {
        (SyncMode::Off, _) | (_, None) => BTreeSet::new(),
        (_, Some(key)) => key.members.iter().map(String::as_str).collect(),
    };
    let leader_lsn = leader.and_then(|l| view.members.get(l)).map_or(0, |m| m.lsn);
    let reference_lsn = view.optime_lsn.unwrap_or(0).max(leader_lsn);
    view.members
        .iter()
        .map(|(name, m)| {
            let role = if Some(name.as_str()) == leader {
                "Leader"
            } else if sync.contains(name.as_str()) {
                if sync_mode == SyncMode::Quorum {
                    "Quorum Standby"
                } else {
                    "Sync Standby"
                }
            } else {
                "Replica"
            };
            let lag = if role == "Leader" {
                Lag::None
            } else if m.role == MemberRole::Uninitialized || m.lsn == 0 {
                Lag::Unknown
            } else {
                Lag::Bytes(reference_lsn.saturating_sub(m.lsn))
            };
            let details = snap.member_details.get(name);
            let tags = match details {
                Some(d) => d.extras.tags.clone(),
                None => match codec::encode_tags(&m.tags) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                },
            };
            let replication_state =
                details.and_then(|d| d.extras.replication_state.clone()).filter(|_| role != "Leader");
            let state = replication_state
                .or_else(|| details.map(|d| d.state.clone()).filter(|s| !s.is_empty()))
                .unwrap_or_else(|| codec::state_name(m.state).to_owned());
            let extras = details.map(|d| &d.extras);
            let pending_restart = extras.is_some_and(|e| e.pending_restart);
            let pending_restart_reason = extras
                .filter(|_| pending_restart)
                .map(|e| {
                    e.pending_restart_reason.iter().map(|(param, diff)| param_diff(param, diff)).collect()
                })
                .unwrap_or_default();
            let scheduled_restart = extras.and_then(|e| e.scheduled_restart.as_ref()).map(scheduled_text);
            MemberRow {
                name: name.clone(),
                host: host_of(&m.conn_url),
                role,
                state,
                timeline: m.timeline,
                lag,
                tags,
                pending_restart,
                pending_restart_reason,
                scheduled_restart,
                upstream: m.tags.replicatefrom.clone(),
            }
        })
        .collect()
}

/// patronictl's `param: old->new` (a value that is not text shows as
/// JSON).
fn param_diff(param: &str, diff: &Value) -> String {
    let text = |key: &str| match diff.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    format!("{param}: {}->{}", text("old_value"), text("new_value"))
}

/// patronictl's `Scheduled restart`: the schedule, and the version
/// condition if any.
fn scheduled_text(scheduled: &Map<String, Value>) -> String {
    let mut text = scheduled.get("schedule").and_then(Value::as_str).unwrap_or_default().to_owned();
    match scheduled.get("postgres_version") {
        Some(Value::String(v)) => text.push_str(&format!(" if version < {v}")),
        Some(v @ Value::Number(_)) => text.push_str(&format!(" if version < {v}")),
        _ => {}
    }
    text
}

/// `postgres://10.0.0.1:5432/postgres` → `10.0.0.1:5432`.
fn host_of(conn_url: &str) -> String {
    let rest = conn_url.split_once("://").map_or(conn_url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_owned()
}

/// patronictl's title: ` Cluster: <scope> (<system identifier>) `.
pub fn title(scope: &str, snap: &Snapshot) -> String {
    let id = match snap.view.initialize.as_deref() {
        None => "uninitialized",
        Some("") => "initializing",
        Some(id) => id,
    };
    format!(" Cluster: {scope} ({id}) ")
}

/// `list`.
pub fn list(scope: &str, snap: &Snapshot, format: Format) -> Result<String, CtlError> {
    let rows = member_rows(snap);
    match format {
        Format::Pretty => Ok(pretty(scope, snap, &rows, |row| row.name.clone())),
        Format::Json | Format::Yaml => {
            let items: Vec<Value> = rows.iter().map(|row| Value::Object(row_json(scope, row))).collect();
            structured(&Value::Array(items), format)
        }
    }
}

/// `topology`: the same table, members in replication order, indented
/// under whom they stream from (patronictl's `topology_sort`).
pub fn topology(scope: &str, snap: &Snapshot) -> String {
    let rows = member_rows(snap);
    let names: BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let leader = rows.iter().find(|r| r.role == "Leader").map(|r| r.name.clone());
    // Parent of each non-leader: its replicatefrom if that is another
    // member, else the leader.
    let mut children: BTreeMap<Option<String>, Vec<&MemberRow>> = BTreeMap::new();
    for row in rows.iter().filter(|r| Some(&r.name) != leader.as_ref()) {
        let parent = row
            .upstream
            .as_ref()
            .filter(|p| **p != row.name && names.contains(p.as_str()) && Some(*p) != leader.as_ref())
            .cloned()
            .or_else(|| leader.clone());
        children.entry(parent).or_default().push(row);
    }
    let mut ordered: Vec<(usize, &MemberRow)> = Vec::new();
    let mut stack: Vec<(usize, &MemberRow)> = Vec::new();
    match rows.iter().find(|r| Some(&r.name) == leader.as_ref()) {
        Some(root) => stack.push((0, root)),
        None => stack.extend(children.get(&None).into_iter().flatten().rev().map(|r| (0, *r))),
    }
    while let Some((level, row)) = stack.pop() {
        if ordered.iter().any(|(_, seen)| seen.name == row.name) {
            continue;
        }
        ordered.push((level, row));
        let below = children.get(&Some(row.name.clone())).into_iter().flatten();
        stack.extend(below.rev().map(|r| (level + 1, *r)));
    }
    // Members only reachable through a loop of replicatefrom tags.
    for row in &rows {
        if !ordered.iter().any(|(_, seen)| seen.name == row.name) {
            ordered.push((1, row));
        }
    }
    let levels: BTreeMap<&str, usize> =
        ordered.iter().map(|(level, row)| (row.name.as_str(), *level)).collect();
    let sorted: Vec<MemberRow> = ordered.iter().map(|(_, row)| (*row).clone()).collect();
    pretty(scope, snap, &sorted, |row| match levels.get(row.name.as_str()).copied().unwrap_or(0) {
        0 => row.name.clone(),
        level => format!("{}+ {}", "  ".repeat(level - 1), row.name),
    })
}

fn pretty(scope: &str, snap: &Snapshot, rows: &[MemberRow], name: impl Fn(&MemberRow) -> String) -> String {
    let mut columns = vec![
        ("Member", Align::Left),
        ("Host", Align::Left),
        ("Role", Align::Left),
        ("State", Align::Left),
        ("TL", Align::Right),
        ("Lag in MB", Align::Right),
    ];
    // patronictl adds each of these columns when some member has a value.
    let optional = OptionalColumns::of(rows);
    for (shown, column) in [
        (optional.pending_restart, "Pending restart"),
        (optional.pending_restart_reason, "Pending restart reason"),
        (optional.scheduled_restart, "Scheduled restart"),
        (optional.tags, "Tags"),
    ] {
        if shown {
            columns.push((column, Align::Left));
        }
    }
    let mut table = Table::new(&columns);
    for row in rows {
        let lag = match row.lag.mb() {
            Some(Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let mut cells = vec![
            name(row),
            row.host.clone(),
            row.role.to_owned(),
            row.state.clone(),
            row.timeline.to_string(),
            lag,
        ];
        if optional.pending_restart {
            cells.push(if row.pending_restart { "*".into() } else { String::new() });
        }
        if optional.pending_restart_reason {
            // patronictl hides a long diff in the table.
            let lines: Vec<String> = row
                .pending_restart_reason
                .iter()
                .map(|diff| match diff.split_once(": ") {
                    Some((param, _)) if diff.len() > 50 => format!("{param}: [hidden - too long]"),
                    _ => diff.clone(),
                })
                .collect();
            cells.push(lines.join("\n"));
        }
        if optional.scheduled_restart {
            cells.push(row.scheduled_restart.clone().unwrap_or_default());
        }
        if optional.tags {
            let tags =
                if row.tags.is_empty() { String::new() } else { yaml(&Value::Object(row.tags.clone())) };
            cells.push(tags.trim_end().to_owned());
        }
        table.row(cells);
    }
    let mut out = table.render(Some(&title(scope, snap)));
    if snap.config.as_ref().is_some_and(|c| c.pause) {
        out.push_str(" Maintenance mode: on\n");
    }
    if let Some(request) = &snap.view.failover {
        if let Some(at) = request.scheduled_at_wall_ms {
            out.push_str(&format!(" Switchover scheduled at: {}\n", codec::format_timestamp(at)));
            if let Some(leader) = &request.leader {
                out.push_str(&format!("                    from: {leader}\n"));
            }
            if let Some(candidate) = &request.candidate {
                out.push_str(&format!("                      to: {candidate}\n"));
            }
        }
    }
    out
}

/// Which of patronictl's optional columns some member fills.
#[derive(Clone, Copy)]
struct OptionalColumns {
    pending_restart: bool,
    pending_restart_reason: bool,
    scheduled_restart: bool,
    tags: bool,
}

impl OptionalColumns {
    fn of(rows: &[MemberRow]) -> OptionalColumns {
        OptionalColumns {
            pending_restart: rows.iter().any(|r| r.pending_restart),
            pending_restart_reason: rows.iter().any(|r| !r.pending_restart_reason.is_empty()),
            scheduled_restart: rows.iter().any(|r| r.scheduled_restart.is_some()),
            tags: rows.iter().any(|r| !r.tags.is_empty()),
        }
    }
}

fn row_json(scope: &str, row: &MemberRow) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("Cluster".into(), json!(scope));
    map.insert("Member".into(), json!(row.name));
    map.insert("Host".into(), json!(row.host));
    map.insert("Role".into(), json!(row.role));
    map.insert("State".into(), json!(row.state));
    map.insert("TL".into(), json!(row.timeline));
    if let Some(lag) = row.lag.mb() {
        map.insert("Lag in MB".into(), lag);
    }
    if row.pending_restart {
        map.insert("Pending restart".into(), json!("*"));
        if !row.pending_restart_reason.is_empty() {
            map.insert("Pending restart reason".into(), json!(row.pending_restart_reason.join("\n")));
        }
    }
    if let Some(scheduled) = &row.scheduled_restart {
        map.insert("Scheduled restart".into(), json!(scheduled));
    }
    if !row.tags.is_empty() {
        map.insert("Tags".into(), Value::Object(row.tags.clone()));
    }
    map
}

/// `history`: patronictl's TL, LSN, Reason, Timestamp, New Leader.
pub fn history(snap: &Snapshot, format: Format) -> Result<String, CtlError> {
    let columns = [
        ("TL", Align::Right),
        ("LSN", Align::Right),
        ("Reason", Align::Left),
        ("Timestamp", Align::Left),
        ("New Leader", Align::Left),
    ];
    let cells = |e: &codec::HistoryEntry| {
        [
            json!(e.switch.timeline),
            json!(e.switch.fork_lsn),
            json!(e.reason),
            e.timestamp.as_ref().map_or(Value::Null, |t| json!(t)),
            e.switch.new_leader.as_ref().map_or(Value::Null, |l| json!(l)),
        ]
    };
    match format {
        Format::Pretty => {
            let mut table = Table::new(&columns);
            for entry in &snap.history {
                table.row(
                    cells(entry)
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        })
                        .collect(),
                );
            }
            Ok(table.render(None))
        }
        Format::Json | Format::Yaml => {
            let items = snap
                .history
                .iter()
                .map(|entry| {
                    let pairs = columns.iter().map(|(name, _)| name.to_string()).zip(cells(entry));
                    Value::Object(pairs.filter(|(_, v)| !v.is_null()).collect())
                })
                .collect();
            structured(&Value::Array(items), format)
        }
    }
}

fn structured(value: &Value, format: Format) -> Result<String, CtlError> {
    match format {
        Format::Json => Ok(format!("{value}\n")),
        _ => Ok(yaml(value)),
    }
}

/// Block-style YAML, as patronictl's `yaml.safe_dump(default_flow_style=False)`.
pub fn yaml(value: &Value) -> String {
    // Serializing a JSON value cannot fail: every key is a string.
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::dcs::{FailoverKey, LeaderKey, SyncKey};
    use keel_core::{Member, MemberState, Tags, TimelineSwitch};

    use crate::dcs::codec::{MemberDetails, MemberExtras};

    const MB: u64 = 1 << 20;

    fn member(role: MemberRole, port: u16, lsn: u64, tags: Tags) -> Member {
        Member {
            role,
            state: MemberState::Running,
            timeline: 3,
            lsn,
            tags,
            api_url: format!("http://10.0.0.1:{}/patroni", port + 3000),
            conn_url: format!("postgres://10.0.0.1:{port}/postgres"),
        }
    }

    /// A leader, a sync standby 2 MB behind, a replica cascading from it
    /// with tags, and a member still being cloned.
    fn snapshot() -> Snapshot {
        let mut snap = Snapshot::default();
        let settings = crate::config::DynamicSettings {
            synchronous_mode: crate::config::SynchronousMode::On,
            ..Default::default()
        };
        snap.view.config = Some(settings.to_core());
        snap.config = Some(settings);
        snap.view.initialize = Some("7214483235493449737".into());
        snap.view.leader = Some(LeaderKey { name: "pg1".into(), revision: 5 });
        snap.view.optime_lsn = Some(100 * MB);
        snap.view.sync = Some(SyncKey {
            leader: Some("pg1".into()),
            members: ["pg2".to_owned()].into(),
            quorum: None,
            revision: 6,
        });
        let members = &mut snap.view.members;
        members.insert("pg1".into(), member(MemberRole::Primary, 5432, 100 * MB, Tags::new()));
        members.insert("pg2".into(), member(MemberRole::Replica, 5433, 98 * MB, Tags::new()));
        let cascading = Tags { replicatefrom: Some("pg2".into()), nofailover: true, ..Tags::new() };
        members.insert("pg3".into(), member(MemberRole::Replica, 5434, 100 * MB, cascading));
        let mut cloning = member(MemberRole::Uninitialized, 5435, 0, Tags::new());
        cloning.state = MemberState::CreatingReplica;
        members.insert("pg4".into(), cloning);
        // What the agents publish beside keel-core's facts: pg2 streams and
        // waits for a restart; pg3 is in archive recovery, with a custom tag
        // and a restart scheduled; pg4's key has no details.
        let details = |state: &str, extras: MemberExtras| MemberDetails {
            state: state.into(),
            extras,
            ..MemberDetails::default()
        };
        let object = |v: Value| v.as_object().cloned().unwrap_or_default();
        let pg2 = MemberExtras {
            replication_state: Some("streaming".into()),
            pending_restart: true,
            pending_restart_reason: object(json!({
                "max_connections": {"old_value": "100", "new_value": "200"},
                "shared_preload_libraries": {"old_value": "", "new_value": "pg_stat_statements,auto_explain"},
            })),
            ..MemberExtras::default()
        };
        let pg3 = MemberExtras {
            replication_state: Some("in archive recovery".into()),
            scheduled_restart: Some(object(
                json!({"schedule": "2026-11-26T03:00:00+00:00", "postgres_version": "15.4"}),
            )),
            tags: object(json!({"nofailover": true, "replicatefrom": "pg2", "dc": "eu"})),
            ..MemberExtras::default()
        };
        snap.member_details.insert("pg1".into(), details("running", MemberExtras::default()));
        snap.member_details.insert("pg2".into(), details("running", pg2));
        snap.member_details.insert("pg3".into(), details("running", pg3));
        snap
    }

    #[test]
    fn list_pretty_matches_patronictl_layout() {
        let mut snap = snapshot();
        snap.config.as_mut().unwrap().pause = true;
        snap.view.failover = Some(FailoverKey {
            leader: Some("pg1".into()),
            candidate: Some("pg2".into()),
            scheduled_at_wall_ms: Some(codec::parse_timestamp_ms("2026-11-26T02:00:00Z").unwrap()),
            revision: 9,
        });
        insta::assert_snapshot!(list("batman", &snap, Format::Pretty).unwrap());
    }

    #[test]
    fn list_json_and_yaml_carry_the_same_rows() {
        let snap = snapshot();
        let json: Value = serde_json::from_str(&list("batman", &snap, Format::Json).unwrap()).unwrap();
        assert_eq!(
            json[0],
            json!({"Cluster": "batman", "Member": "pg1", "Host": "10.0.0.1:5432", "Role": "Leader", "State": "running", "TL": 3})
        );
        assert_eq!(json[1]["Role"], "Sync Standby");
        assert_eq!(json[1]["State"], "streaming");
        assert_eq!(json[1]["Lag in MB"], 2);
        assert_eq!(json[1]["Pending restart"], "*");
        assert_eq!(
            json[1]["Pending restart reason"],
            "max_connections: 100->200\nshared_preload_libraries: ->pg_stat_statements,auto_explain"
        );
        assert_eq!(json[2]["State"], "in archive recovery");
        assert_eq!(json[2]["Tags"], json!({"nofailover": true, "replicatefrom": "pg2", "dc": "eu"}));
        assert_eq!(json[2]["Scheduled restart"], "2026-11-26T03:00:00+00:00 if version < 15.4");
        assert_eq!(json[3]["State"], "creating replica");
        assert_eq!(json[3]["Lag in MB"], "unknown");
        let yaml_text = list("batman", &snap, Format::Yaml).unwrap();
        let from_yaml: Value = serde_saphyr::from_str(&yaml_text).unwrap();
        assert_eq!(from_yaml, json, "{yaml_text}");
    }

    #[test]
    fn roles_follow_the_leader_key_and_sync_only_in_synchronous_mode() {
        let mut snap = snapshot();
        snap.view.config = Some(crate::config::DynamicSettings::default().to_core());
        let roles: Vec<&str> = member_rows(&snap).iter().map(|r| r.role).collect();
        assert_eq!(roles, ["Leader", "Replica", "Replica", "Replica"]);
        snap.view.leader = None;
        assert!(member_rows(&snap).iter().all(|r| r.role == "Replica" && r.lag != Lag::None));
    }

    #[test]
    fn topology_indents_cascading_replicas_under_their_upstream() {
        insta::assert_snapshot!(topology("batman", &snapshot()));
    }

    #[test]
    fn topology_survives_a_replicatefrom_loop_and_no_leader() {
        let mut snap = snapshot();
        snap.view.leader = None;
        snap.view.members.get_mut("pg2").unwrap().tags.replicatefrom = Some("pg3".into());
        let text = topology("batman", &snap);
        let first_cells: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split('|').nth(1))
            .map(|c| c.trim().trim_start_matches("+ "))
            .collect();
        for name in ["pg1", "pg2", "pg3", "pg4"] {
            assert_eq!(first_cells.iter().filter(|c| **c == name).count(), 1, "{name} once in\n{text}");
        }
    }

    #[test]
    fn history_shows_patronis_columns() {
        let mut snap = snapshot();
        snap.history = vec![
            codec::HistoryEntry {
                switch: TimelineSwitch { timeline: 1, fork_lsn: 25165984, new_leader: Some("pg2".into()) },
                reason: "no recovery target specified".into(),
                timestamp: Some("2026-11-25T21:00:00+00:00".into()),
            },
            codec::HistoryEntry {
                switch: TimelineSwitch { timeline: 2, fork_lsn: 50331808, new_leader: None },
                reason: String::new(),
                timestamp: None,
            },
        ];
        insta::assert_snapshot!(history(&snap, Format::Pretty).unwrap());
        let json: Value = serde_json::from_str(&history(&snap, Format::Json).unwrap()).unwrap();
        assert_eq!(json[1], json!({"TL": 2, "LSN": 50331808, "Reason": ""}));
    }

    #[test]
    fn host_is_the_authority_of_the_conn_url() {
        assert_eq!(host_of("postgres://u:p@10.0.0.1:5432/postgres"), "10.0.0.1:5432");
        assert_eq!(host_of("postgresql://[::1]:5433/postgres"), "[::1]:5433");
        assert_eq!(host_of(""), "");
    }
}
