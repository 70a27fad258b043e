//! Which status code each health-check endpoint answers (reference
//! section 1.1, Patroni's generic `do_GET`). Pure: the node status, the
//! query and the time of the request in, 200 or 503 out.

use serde_json::Value;
use tokio::time::Instant;

use super::lag::parse_lag_bytes;
use super::status::{NodeStatus, ReplicationState};

pub const OK: u16 = 200;
pub const UNAVAILABLE: u16 = 503;

/// The endpoints served, by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`, `/primary`, `/master`, `/read-write`.
    Primary,
    Leader,
    StandbyLeader,
    Replica,
    ReadOnly,
    Sync,
    ReadOnlySync,
    Quorum,
    ReadOnlyQuorum,
    Async,
    Health,
    Liveness,
    Readiness,
    /// `/patroni`: always 200 with the status.
    Patroni,
}

impl Endpoint {
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/" | "/primary" | "/master" | "/read-write" => Endpoint::Primary,
            "/leader" => Endpoint::Leader,
            "/standby-leader" | "/standby_leader" => Endpoint::StandbyLeader,
            "/replica" => Endpoint::Replica,
            "/read-only" => Endpoint::ReadOnly,
            "/synchronous" | "/sync" => Endpoint::Sync,
            "/read-only-sync" | "/read-only-synchronous" => Endpoint::ReadOnlySync,
            "/quorum" => Endpoint::Quorum,
            "/read-only-quorum" => Endpoint::ReadOnlyQuorum,
            "/asynchronous" | "/async" => Endpoint::Async,
            "/health" => Endpoint::Health,
            "/liveness" => Endpoint::Liveness,
            "/readiness" => Endpoint::Readiness,
            "/patroni" => Endpoint::Patroni,
            _ => return None,
        })
    }

    /// Patroni answers these with the status line only, even to GET.
    pub fn status_only(self) -> bool {
        matches!(self, Endpoint::Liveness | Endpoint::Readiness)
    }
}

/// The query parameters the health checks read; others are ignored, as in
/// Patroni.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthQuery {
    pub lag_bytes: Option<u64>,
    pub replication_state: Option<ReplicationState>,
    /// `tag_<key>=<value>`, as (key, value).
    pub tags: Vec<(String, String)>,
    /// `/readiness?mode=write`: lag counted from received WAL, not replayed.
    pub readiness_write: bool,
}

impl HealthQuery {
    /// Parses decoded query pairs. A value keel cannot read is an error
    /// (a 400), never a guess.
    pub fn parse(pairs: &[(String, String)]) -> Result<HealthQuery, String> {
        let mut query = HealthQuery::default();
        for (key, value) in pairs {
            match key.as_str() {
                "lag" => query.lag_bytes = Some(parse_lag_bytes(value).map_err(|e| e.to_string())?),
                "replication_state" => {
                    let state = ReplicationState::parse(value).ok_or_else(|| {
                        format!("replication_state={value:?}: expected streaming or in archive recovery")
                    })?;
                    query.replication_state = Some(state);
                }
                "mode" => {
                    query.readiness_write = match value.as_str() {
                        "apply" => false,
                        "write" => true,
                        _ => return Err(format!("mode={value:?}: expected apply or write")),
                    }
                }
                _ => {
                    if let Some(tag) = key.strip_prefix("tag_") {
                        query.tags.push((tag.to_owned(), value.clone()));
                    }
                }
            }
        }
        Ok(query)
    }
}

/// The status code of `endpoint` for a request at `now`.
pub fn status_code(endpoint: Endpoint, s: &NodeStatus, q: &HealthQuery, now: Instant) -> u16 {
    let leader = is_leader(s, now);
    let view = s.view_valid_until.is_some_and(|until| now < until);
    let replica = replica_ok(s, q);
    let (ok, check_tags) = match endpoint {
        Endpoint::Primary | Endpoint::Leader => (leader, false),
        // keel runs no standby clusters: no node is a standby leader.
        Endpoint::StandbyLeader => (false, false),
        Endpoint::Replica => (replica, true),
        Endpoint::ReadOnly => (leader || replica, true),
        Endpoint::Sync => (view && s.sync_standby && replica, true),
        Endpoint::ReadOnlySync => (leader || (view && s.sync_standby && replica), true),
        Endpoint::Quorum => (view && s.quorum_standby && replica, true),
        Endpoint::ReadOnlyQuorum => (leader || (view && s.quorum_standby && replica), true),
        Endpoint::Async => (view && !s.sync_standby && !s.quorum_standby && replica, true),
        Endpoint::Health => (s.state == keel_core::MemberState::Running, true),
        Endpoint::Liveness => (s.paused || s.liveness_deadline.is_some_and(|d| now < d), false),
        Endpoint::Readiness => (leader || ready_replica(s, q, view), false),
        Endpoint::Patroni => (true, false),
    };
    // Tags are checked only where the answer would be 200 (Patroni).
    if ok && (!check_tags || tags_match(s, &q.tags)) {
        OK
    } else {
        UNAVAILABLE
    }
}

/// Writable and within the lease at the moment of the request. Patroni
/// checks only its lease timestamp (field bug #2972: 200 before promotion
/// finished); keel wants both, so that HAProxy never sends writes to a
/// node that is not, or no longer, allowed to take them (rule 1).
fn is_leader(s: &NodeStatus, now: Instant) -> bool {
    s.running_primary && s.lease_deadline.is_some_and(|deadline| now < deadline)
}

/// Patroni's `replica_status_code`: a running replica, load-balanced, not
/// lagging beyond `lag=`, in the asked replication state.
fn replica_ok(s: &NodeStatus, q: &HealthQuery) -> bool {
    !s.tags.noloadbalance
        && s.in_recovery
        && s.state == keel_core::MemberState::Running
        && q.lag_bytes.is_none_or(|max| s.replay_lag_bytes() <= max)
        && q.replication_state.is_none_or(|want| s.replication_state == Some(want))
}

/// `/readiness` of a non-leader: streaming, with a known position to
/// count from, no further behind than `lag=` (default
/// `maximum_lag_on_failover`).
fn ready_replica(s: &NodeStatus, q: &HealthQuery, view: bool) -> bool {
    let position = if q.readiness_write { s.receive_lsn } else { s.replay_lsn };
    let latest = s.leader_optime_lsn.unwrap_or(0).max(s.receive_lsn);
    let max = q.lag_bytes.unwrap_or(s.maximum_lag_on_failover_bytes);
    s.state == keel_core::MemberState::Running
        && s.replication_state == Some(ReplicationState::Streaming)
        && (view || s.receive_lsn > 0)
        && latest.saturating_sub(position) <= max
}

/// Every `tag_<key>=<value>` names a tag the node has with that value.
/// A non-string tag compares as Python's `str(value).lower()` (Patroni).
fn tags_match(s: &NodeStatus, wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|(key, value)| match s.member_tags.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::String(text)) => text == value,
        Some(other) => other.to_string().to_lowercase() == *value,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use keel_core::{MemberRole, MemberState};

    use super::*;

    const ALL: &[Endpoint] = &[
        Endpoint::Primary,
        Endpoint::Leader,
        Endpoint::StandbyLeader,
        Endpoint::Replica,
        Endpoint::ReadOnly,
        Endpoint::Sync,
        Endpoint::ReadOnlySync,
        Endpoint::Quorum,
        Endpoint::ReadOnlyQuorum,
        Endpoint::Async,
        Endpoint::Health,
        Endpoint::Liveness,
        Endpoint::Readiness,
        Endpoint::Patroni,
    ];

    fn primary(now: Instant) -> NodeStatus {
        let mut s = NodeStatus::new("pg1", "demo", BTreeMap::new());
        s.role = MemberRole::Primary;
        s.state = MemberState::Running;
        s.running_primary = true;
        s.timeline = 1;
        s.write_lsn = 5000;
        s.lease_deadline = Some(now + Duration::from_secs(20));
        s.view_valid_until = Some(now + Duration::from_secs(30));
        s.liveness_deadline = Some(now + Duration::from_secs(40));
        s.leader = Some("pg1".into());
        s.leader_optime_lsn = Some(5000);
        s.maximum_lag_on_failover_bytes = 1 << 20;
        s
    }

    fn replica(now: Instant) -> NodeStatus {
        let mut s = primary(now);
        s.name = "pg2".into();
        s.role = MemberRole::Replica;
        s.running_primary = false;
        s.in_recovery = true;
        s.lease_deadline = None;
        s.write_lsn = 0;
        s.receive_lsn = 5000;
        s.replay_lsn = 5000;
        s.replication_state = Some(ReplicationState::Streaming);
        s
    }

    fn query(pairs: &[(&str, &str)]) -> HealthQuery {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HealthQuery::parse(&pairs).expect("a valid query")
    }

    /// The endpoints that answer 200, in `ALL`'s order.
    fn answering(s: &NodeStatus, q: &HealthQuery, now: Instant) -> Vec<Endpoint> {
        ALL.iter().copied().filter(|e| status_code(*e, s, q, now) == OK).collect()
    }

    #[test]
    fn every_endpoint_answers_as_patroni_in_each_situation() {
        use Endpoint::*;
        let now = Instant::now();
        let none = query(&[]);
        type Case = (&'static str, NodeStatus, HealthQuery, Vec<Endpoint>);
        let cases: Vec<Case> = vec![
            (
                "primary with its lease ahead",
                primary(now),
                none.clone(),
                vec![
                    Primary,
                    Leader,
                    ReadOnly,
                    ReadOnlySync,
                    ReadOnlyQuorum,
                    Health,
                    Liveness,
                    Readiness,
                    Patroni,
                ],
            ),
            (
                "primary whose lease has passed, still writable",
                NodeStatus { lease_deadline: Some(now - Duration::from_millis(1)), ..primary(now) },
                none.clone(),
                vec![Health, Liveness, Patroni],
            ),
            (
                "primary whose lease deadline is exactly now",
                NodeStatus { lease_deadline: Some(now), ..primary(now) },
                none.clone(),
                vec![Health, Liveness, Patroni],
            ),
            (
                "leader whose Postgres has not finished promoting",
                NodeStatus { running_primary: false, in_recovery: true, ..primary(now) },
                none.clone(),
                vec![Replica, ReadOnly, Async, Health, Liveness, Patroni],
            ),
            (
                "replica streaming",
                replica(now),
                none.clone(),
                vec![Replica, ReadOnly, Async, Health, Liveness, Readiness, Patroni],
            ),
            (
                "replica within lag=",
                NodeStatus { replay_lsn: 5000 - 1024, ..replica(now) },
                query(&[("lag", "1kB")]),
                vec![Replica, ReadOnly, Async, Health, Liveness, Readiness, Patroni],
            ),
            (
                "replica lagging beyond lag=",
                NodeStatus { replay_lsn: 5000 - 1025, ..replica(now) },
                query(&[("lag", "1kB")]),
                vec![Health, Liveness, Patroni],
            ),
            (
                "replica behind the leader's optime though it received all it has",
                NodeStatus { leader_optime_lsn: Some(1 << 30), ..replica(now) },
                query(&[("lag", "1MB")]),
                vec![Health, Liveness, Patroni],
            ),
            (
                "replica with noloadbalance",
                NodeStatus {
                    tags: keel_core::Tags { noloadbalance: true, ..keel_core::Tags::new() },
                    ..replica(now)
                },
                none.clone(),
                vec![Health, Liveness, Readiness, Patroni],
            ),
            (
                "replica asked for archive recovery while streaming",
                replica(now),
                query(&[("replication_state", "in archive recovery")]),
                vec![Health, Liveness, Readiness, Patroni],
            ),
            (
                "replica in archive recovery asked for it",
                NodeStatus { replication_state: Some(ReplicationState::InArchiveRecovery), ..replica(now) },
                query(&[("replication_state", "in archive recovery")]),
                vec![Replica, ReadOnly, Async, Health, Liveness, Patroni],
            ),
            (
                "sync standby",
                NodeStatus { sync_standby: true, ..replica(now) },
                none.clone(),
                vec![Replica, ReadOnly, Sync, ReadOnlySync, Health, Liveness, Readiness, Patroni],
            ),
            (
                "quorum standby",
                NodeStatus { quorum_standby: true, ..replica(now) },
                none.clone(),
                vec![Replica, ReadOnly, Quorum, ReadOnlyQuorum, Health, Liveness, Readiness, Patroni],
            ),
            (
                "sync standby without a valid DCS view",
                NodeStatus { sync_standby: true, view_valid_until: Some(now), ..replica(now) },
                none.clone(),
                vec![Replica, ReadOnly, Health, Liveness, Readiness, Patroni],
            ),
            (
                "async standby without a valid DCS view",
                NodeStatus { view_valid_until: None, ..replica(now) },
                none.clone(),
                // Ready all the same: its WAL receiver knows a position.
                vec![Replica, ReadOnly, Health, Liveness, Readiness, Patroni],
            ),
            (
                "stopped Postgres",
                NodeStatus {
                    state: MemberState::Stopped,
                    in_recovery: false,
                    replication_state: None,
                    ..replica(now)
                },
                none.clone(),
                vec![Liveness, Patroni],
            ),
            (
                "stopped Postgres of a leader with its lease",
                NodeStatus { state: MemberState::Crashed, running_primary: false, ..primary(now) },
                none.clone(),
                vec![Liveness, Patroni],
            ),
            (
                "hung agent, not paused",
                NodeStatus { liveness_deadline: Some(now - Duration::from_secs(1)), ..replica(now) },
                none.clone(),
                vec![Replica, ReadOnly, Async, Health, Readiness, Patroni],
            ),
            (
                "hung agent, paused",
                NodeStatus { liveness_deadline: None, paused: true, ..replica(now) },
                none.clone(),
                vec![Replica, ReadOnly, Async, Health, Liveness, Readiness, Patroni],
            ),
            (
                "replica lagging beyond maximum_lag_on_failover is not ready",
                NodeStatus { replay_lsn: 0, receive_lsn: 2 << 20, ..replica(now) },
                none.clone(),
                vec![Replica, ReadOnly, Async, Health, Liveness, Patroni],
            ),
            (
                "readiness with mode=write counts received WAL",
                NodeStatus {
                    replay_lsn: 0,
                    receive_lsn: 2 << 20,
                    leader_optime_lsn: Some(2 << 20),
                    ..replica(now)
                },
                query(&[("mode", "write")]),
                vec![Replica, ReadOnly, Async, Health, Liveness, Readiness, Patroni],
            ),
            (
                "fresh node before its first step",
                NodeStatus::new("pg3", "demo", BTreeMap::new()),
                none.clone(),
                vec![Patroni],
            ),
        ];
        for (situation, status, q, expected) in cases {
            assert_eq!(answering(&status, &q, now), expected, "{situation}");
        }
    }

    #[test]
    fn tag_parameters_must_all_match_and_are_ignored_by_the_primary_checks() {
        use Endpoint::*;
        let now = Instant::now();
        let tags = BTreeMap::from([
            ("zone".to_string(), Value::from("a")),
            ("nofailover".to_string(), Value::Bool(true)),
            ("weight".to_string(), Value::from(3)),
        ]);
        let s = NodeStatus { member_tags: tags, ..replica(now) };
        // Whether the tag parameters match this node's tags.
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("tag_zone", "a")], true),
            (&[("tag_zone", "a"), ("tag_nofailover", "true"), ("tag_weight", "3")], true),
            (&[("tag_zone", "b")], false),
            (&[("tag_zone", "A")], false),
            (&[("tag_nofailover", "True")], false),
            (&[("tag_rack", "1")], false),
            (&[("tag_zone", "a"), ("tag_rack", "1")], false),
        ];
        for (pairs, matches) in cases {
            let q = query(pairs);
            let expected = if *matches { OK } else { UNAVAILABLE };
            for endpoint in [Replica, ReadOnly, Async, Health] {
                assert_eq!(status_code(endpoint, &s, &q, now), expected, "{endpoint:?} {pairs:?}");
            }
        }
        let p = NodeStatus { member_tags: BTreeMap::new(), ..primary(now) };
        let q = query(&[("tag_zone", "a")]);
        assert_eq!(status_code(Primary, &p, &q, now), OK, "tag_* is ignored by /primary");
        assert_eq!(status_code(Leader, &p, &q, now), OK, "tag_* is ignored by /leader");
        assert_eq!(status_code(ReadOnly, &p, &q, now), UNAVAILABLE, "tag_* counts for /read-only");
    }

    #[test]
    fn paths_map_to_endpoints_and_unknown_paths_to_none() {
        for (path, endpoint) in [
            ("/", Endpoint::Primary),
            ("/primary", Endpoint::Primary),
            ("/master", Endpoint::Primary),
            ("/read-write", Endpoint::Primary),
            ("/leader", Endpoint::Leader),
            ("/standby-leader", Endpoint::StandbyLeader),
            ("/replica", Endpoint::Replica),
            ("/read-only", Endpoint::ReadOnly),
            ("/synchronous", Endpoint::Sync),
            ("/sync", Endpoint::Sync),
            ("/asynchronous", Endpoint::Async),
            ("/async", Endpoint::Async),
            ("/health", Endpoint::Health),
            ("/liveness", Endpoint::Liveness),
            ("/readiness", Endpoint::Readiness),
            ("/patroni", Endpoint::Patroni),
        ] {
            assert_eq!(Endpoint::from_path(path), Some(endpoint), "{path}");
        }
        for path in ["/nope", "/primary/x", "", "/PRIMARY", "/cluster"] {
            assert_eq!(Endpoint::from_path(path), None, "{path}");
        }
    }

    #[test]
    fn bad_query_values_are_errors() {
        for (key, value) in
            [("lag", "abc"), ("lag", "1 parsec"), ("replication_state", "lagging"), ("mode", "x")]
        {
            let pairs = vec![(key.to_string(), value.to_string())];
            let err = HealthQuery::parse(&pairs).expect_err(value);
            assert!(err.contains(key), "{err}");
        }
        assert_eq!(query(&[("unknown", "x"), ("lag", "1")]).lag_bytes, Some(1));
    }
}
