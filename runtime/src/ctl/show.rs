//! `list`, `topology` and `history`: what patronictl shows, computed from
//! one [`Snapshot`], as a table, JSON or YAML.

use std::collections::{BTreeMap, BTreeSet};

use keel_core::SyncMode;
use serde_json::{json, Map, Value};

use super::table::{Align, Table};
use super::{CtlError, Format};
use crate::api::cluster::cluster_as_json;
use crate::dcs::codec;
use crate::dcs::patroni::Snapshot;

/// One member as patronictl 4 shows it (`output_members`), built from
/// the same `cluster_as_json` as `GET /cluster`.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRow {
    pub name: String,
    /// The host, with `:port` when some member is not on 5432 or two
    /// share a host (patronictl's rule).
    pub host: String,
    /// `Leader`, `Sync Standby`, `Quorum Standby` or `Replica`.
    pub role: String,
    /// As `GET /cluster` shows it: a replica's replication state
    /// (`streaming`, `in archive recovery`), else the state it wrote.
    pub state: String,
    pub timeline: Option<u64>,
    /// The received and replayed positions, each with its lag in MB;
    /// empty for the leader, `unknown` positions with empty lags for a
    /// member without them.
    pub receive: (Value, Value),
    pub replay: (Value, Value),
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

/// The members, by name, as patronictl lists them.
pub fn member_rows(scope: &str, snap: &Snapshot) -> Vec<MemberRow> {
    let mode = snap.view.config.as_ref().map_or(SyncMode::Off, |c| c.synchronous_mode);
    let paused = snap.config.as_ref().is_some_and(|c| c.pause);
    let cluster = cluster_as_json(scope, snap, mode, paused);
    let members: Vec<&Map<String, Value>> =
        cluster["members"].as_array().into_iter().flatten().filter_map(Value::as_object).collect();
    let with_host: Vec<&&Map<String, Value>> = members.iter().filter(|m| m.contains_key("host")).collect();
    let hosts: BTreeSet<&str> = with_host.iter().filter_map(|m| m["host"].as_str()).collect();
    let append_port = with_host.iter().any(|m| m.get("port").is_some_and(|p| p != &json!(5432)))
        || hosts.len() < with_host.len();
    members.into_iter().map(|m| member_row(m, append_port)).collect()
}

fn member_row(m: &Map<String, Value>, append_port: bool) -> MemberRow {
    let text = |key: &str| m.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let field = |key: &str| m.get(key).cloned().unwrap_or_else(|| json!(""));
    let mut receive = (field("receive_lsn"), field("receive_lag"));
    let mut replay = (field("replay_lsn"), field("replay_lag"));
    // patronictl's compatibility with a `/cluster` that has only `lsn`.
    let lsn = field("lsn");
    if receive.0 == "unknown" && replay.0 == "unknown" && lsn != "" && lsn != "unknown" {
        if text("state") == "streaming" {
            receive = (lsn, field("lag"));
        } else {
            replay = (lsn, field("lag"));
        }
    }
    let in_mb = |lag: Value| match lag.as_u64() {
        Some(bytes) => json!(round_half_even(bytes as f64 / 1024.0 / 1024.0)),
        None if lag == "unknown" => json!(""),
        None => lag,
    };
    let mut host = text("host");
    if append_port && !host.is_empty() {
        if let Some(port) = m.get("port").and_then(Value::as_u64) {
            host = format!("{host}:{port}");
        }
    }
    let tags = m.get("tags").and_then(Value::as_object).cloned().unwrap_or_default();
    let pending_restart_reason = m
        .get("pending_restart_reason")
        .and_then(Value::as_object)
        .map(|reasons| reasons.iter().map(|(param, diff)| param_diff(param, diff)).collect())
        .unwrap_or_default();
    MemberRow {
        name: text("name"),
        host,
        role: title_case(&text("role").replace('_', " ")),
        state: text("state"),
        timeline: m.get("timeline").and_then(Value::as_u64),
        receive: (receive.0, in_mb(receive.1)),
        replay: (replay.0, in_mb(replay.1)),
        upstream: tags.get("replicatefrom").and_then(Value::as_str).map(str::to_owned),
        tags,
        pending_restart: m.get("pending_restart").is_some_and(|p| p == &json!(true)),
        pending_restart_reason,
        scheduled_restart: m.get("scheduled_restart").and_then(Value::as_object).map(scheduled_text),
    }
}

/// Python's `round`: halves to the even neighbour.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    let r = if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - x.signum() } else { r };
    r as i64
}

/// Python's `str.title` for role words (`sync standby` → `Sync Standby`).
fn title_case(words: &str) -> String {
    words
        .split(' ')
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
        })
        .collect::<Vec<_>>()
        .join(" ")
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

/// patronictl's title: ` Cluster: <scope> (<system identifier>) `.
pub fn title(scope: &str, snap: &Snapshot) -> String {
    let id = match snap.view.initialize.as_deref() {
        None => "uninitialized",
        Some("") => "initializing",
        Some(id) => id,
    };
    format!(" Cluster: {scope} ({id}) ")
}

/// `list` (`-e`: the optional columns even when no member fills them).
pub fn list(scope: &str, snap: &Snapshot, format: Format, extended: bool) -> Result<String, CtlError> {
    let rows = member_rows(scope, snap);
    match format {
        Format::Pretty => Ok(pretty(scope, snap, &rows, extended, |row| row.name.clone())),
        Format::Json => Ok(format!("{}\n", ordered_json(&structured_rows(scope, &rows, extended)))),
        Format::Yaml => {
            let items = structured_rows(scope, &rows, extended);
            let items: Vec<Value> =
                items.into_iter().map(|pairs| Value::Object(pairs.into_iter().collect())).collect();
            structured(&Value::Array(items), format)
        }
    }
}

/// `topology`: the same table, members in replication order, indented
/// under whom they stream from (patronictl's `topology_sort`).
pub fn topology(scope: &str, snap: &Snapshot) -> String {
    let rows = member_rows(scope, snap);
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
    pretty(scope, snap, &sorted, false, |row| match levels.get(row.name.as_str()).copied().unwrap_or(0) {
        0 => row.name.clone(),
        level => format!("{}+ {}", "  ".repeat(level - 1), row.name),
    })
}

fn pretty(
    scope: &str,
    snap: &Snapshot,
    rows: &[MemberRow],
    extended: bool,
    name: impl Fn(&MemberRow) -> String,
) -> String {
    // The cluster's name is in the title; the lag columns are both `Lag`.
    let names = column_names(rows, extended);
    let shown: Vec<(&str, Align)> = names[1..]
        .iter()
        .map(|c| {
            let title = if c.ends_with(" Lag") { "Lag" } else { c };
            let right = ["TL", "Receive LSN", "Replay LSN", "Receive Lag", "Replay Lag"].contains(c);
            (title, if right { Align::Right } else { Align::Left })
        })
        .collect();
    let mut table = Table::new(&shown);
    for row in rows {
        let cells = row_cells(scope, row, &names, true);
        table.row(
            cells[1..]
                .iter()
                .map(|(column, value)| match (*column, value) {
                    ("Member", _) => name(row),
                    ("Tags", Value::Object(tags)) if !tags.is_empty() => yaml(value).trim_end().to_owned(),
                    // patronictl prints an empty tag mapping as Python does.
                    ("Tags", _) => "{}".to_owned(),
                    (_, Value::String(text)) => text.clone(),
                    (_, other) => other.to_string(),
                })
                .collect(),
        );
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

/// patronictl 4's columns: the fixed ones, then each optional one that
/// `-e` asks for or some member fills.
fn column_names(rows: &[MemberRow], extended: bool) -> Vec<&'static str> {
    let mut names = vec![
        "Cluster",
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag",
        "Replay LSN",
        "Replay Lag",
    ];
    let optional = [
        ("Pending restart", rows.iter().any(|r| r.pending_restart)),
        ("Pending restart reason", rows.iter().any(|r| !r.pending_restart_reason.is_empty())),
        ("Scheduled restart", rows.iter().any(|r| r.scheduled_restart.is_some())),
        ("Tags", rows.iter().any(|r| !r.tags.is_empty())),
    ];
    names.extend(optional.iter().filter(|(_, filled)| extended || *filled).map(|(name, _)| *name));
    names
}

/// One row's values under `names`; `table` hides a long restart reason
/// as patronictl does in its tables.
fn row_cells(
    scope: &str,
    row: &MemberRow,
    names: &[&'static str],
    table: bool,
) -> Vec<(&'static str, Value)> {
    names
        .iter()
        .map(|column| {
            let value = match *column {
                "Cluster" => json!(scope),
                "Member" => json!(row.name),
                "Host" => json!(row.host),
                "Role" => json!(row.role),
                "State" => json!(row.state),
                "TL" => row.timeline.map_or_else(|| json!(""), |t| json!(t)),
                "Receive LSN" => row.receive.0.clone(),
                "Receive Lag" => row.receive.1.clone(),
                "Replay LSN" => row.replay.0.clone(),
                "Replay Lag" => row.replay.1.clone(),
                "Pending restart" => json!(if row.pending_restart { "*" } else { "" }),
                "Pending restart reason" => {
                    let lines: Vec<String> = row
                        .pending_restart_reason
                        .iter()
                        .map(|diff| match diff.split_once(": ") {
                            Some((param, _)) if table && diff.len() > 50 => {
                                format!("{param}: [hidden - too long]")
                            }
                            _ => diff.clone(),
                        })
                        .collect();
                    json!(lines.join("\n"))
                }
                "Scheduled restart" => json!(row.scheduled_restart.clone().unwrap_or_default()),
                "Tags" => Value::Object(row.tags.clone()),
                _ => json!(""),
            };
            (*column, value)
        })
        .collect()
}

/// `-f json`/`yaml` rows: patronictl's columns in order, without the
/// values that print empty (`if str(v)`).
fn structured_rows(scope: &str, rows: &[MemberRow], extended: bool) -> Vec<Vec<(String, Value)>> {
    let names = column_names(rows, extended);
    rows.iter()
        .map(|row| {
            row_cells(scope, row, &names, false)
                .into_iter()
                .filter(|(_, v)| v != &json!(""))
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        })
        .collect()
}

/// Objects with their keys in the given order, as Python's `json.dumps`
/// writes them (`, ` and `: ` between items).
fn ordered_json(items: &[Vec<(String, Value)>]) -> String {
    let objects: Vec<String> = items
        .iter()
        .map(|pairs| {
            let fields: Vec<String> =
                pairs.iter().map(|(k, v)| format!("{}: {}", json!(k), python_json(v))).collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    format!("[{}]", objects.join(", "))
}

/// A JSON value with Python's default separators.
fn python_json(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("[{}]", items.iter().map(python_json).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let fields: Vec<String> =
                map.iter().map(|(k, v)| format!("{}: {}", json!(k), python_json(v))).collect();
            format!("{{{}}}", fields.join(", "))
        }
        other => other.to_string(),
    }
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
    use keel_core::{Member, MemberRole, MemberState, Tags, TimelineSwitch};

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
        insta::assert_snapshot!(list("batman", &snap, Format::Pretty, false).unwrap());
    }

    #[test]
    fn list_json_and_yaml_carry_the_same_rows() {
        let snap = snapshot();
        let text = list("batman", &snap, Format::Json, false).unwrap();
        // patronictl's key order and separators (Python's json.dumps).
        assert!(
            text.starts_with(
                r#"[{"Cluster": "batman", "Member": "pg1", "Host": "10.0.0.1:5432", "Role": "Leader", "State": "running", "TL": 3, "Tags": {}}, {"Cluster": "batman", "Member": "pg2""#
            ),
            "{text}"
        );
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json[1]["Role"], "Sync Standby");
        assert_eq!(json[1]["State"], "streaming");
        // Keys with only `xlog_location`: a streaming member's position is
        // shown as received, another's as replayed (patronictl's rule).
        assert_eq!((&json[1]["Receive LSN"], &json[1]["Receive Lag"]), (&json!("0/6200000"), &json!(2)));
        assert_eq!(json[1]["Replay LSN"], "unknown");
        assert_eq!((&json[2]["Replay LSN"], &json[2]["Replay Lag"]), (&json!("0/6400000"), &json!(0)));
        assert_eq!(json[1]["Pending restart"], "*");
        assert_eq!(
            json[1]["Pending restart reason"],
            "max_connections: 100->200\nshared_preload_libraries: ->pg_stat_statements,auto_explain"
        );
        assert_eq!(json[2]["State"], "in archive recovery");
        assert_eq!(json[2]["Tags"], json!({"nofailover": true, "replicatefrom": "pg2", "dc": "eu"}));
        assert_eq!(json[2]["Scheduled restart"], "2026-11-26T03:00:00+00:00 if version < 15.4");
        assert_eq!(json[3]["State"], "creating replica");
        // No position: "unknown", and no lag.
        assert_eq!(json[3]["Receive LSN"], "unknown");
        assert!(json[3].get("Receive Lag").is_none(), "{}", json[3]);
        let yaml_text = list("batman", &snap, Format::Yaml, false).unwrap();
        let from_yaml: Value = serde_saphyr::from_str(&yaml_text).unwrap();
        assert_eq!(from_yaml, json, "{yaml_text}");
    }

    #[test]
    fn list_extended_shows_every_optional_column_and_a_lone_port_5432_is_left_out() {
        let mut snap = snapshot();
        snap.view.members.retain(|name, _| name == "pg1");
        snap.member_details.clear();
        let json: Value = serde_json::from_str(&list("batman", &snap, Format::Json, true).unwrap()).unwrap();
        // `-e` adds the columns; empty values are left out of JSON, but
        // the empty tags are `{}`, as patronictl prints them.
        assert_eq!(json[0]["Tags"], json!({}));
        assert_eq!(json[0]["Host"], "10.0.0.1");
        let text = list("batman", &snap, Format::Pretty, true).unwrap();
        assert!(
            text.contains("| Pending restart | Pending restart reason | Scheduled restart | Tags |"),
            "{text}"
        );
    }

    #[test]
    fn lag_rounds_to_megabytes_as_python_rounds() {
        assert_eq!([0.5, 1.5, 2.5, 2.6, 0.4].map(round_half_even), [0, 2, 2, 3, 0]);
    }

    #[test]
    fn roles_follow_the_leader_key_and_sync_only_in_synchronous_mode() {
        let mut snap = snapshot();
        snap.view.config = Some(crate::config::DynamicSettings::default().to_core());
        let roles: Vec<String> = member_rows("batman", &snap).into_iter().map(|r| r.role).collect();
        assert_eq!(roles, ["Leader", "Replica", "Replica", "Replica"]);
        snap.view.leader = None;
        let rows = member_rows("batman", &snap);
        assert!(rows.iter().all(|r| r.role == "Replica" && r.replay.0 != ""), "{rows:?}");
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
}
