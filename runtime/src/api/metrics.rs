//! `GET /metrics` (reference section 1.2): the node status as Prometheus
//! metrics, with Patroni's names and its `scope` and `name` labels, plus
//! keel's own (`keel_*`).
//!
//! A fresh registry per request, filled from the status: the status is
//! the one source, and nothing is counted twice. prometheus-client writes
//! the OpenMetrics text format (it ends in `# EOF` and has an `info`
//! type), so the response says so in its content type; Prometheus reads
//! it as such.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::status::{NodeStatus, ReplicationState};
use keel_core::MemberState;

/// The content type of [`metrics_text`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition of `s` for a request at `now`.
pub fn metrics_text(s: &NodeStatus, now: Instant) -> String {
    let labels = [("scope", s.scope.clone()), ("name", s.name.clone())];
    let mut registry =
        Registry::with_labels(labels.into_iter().map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v))));
    let running = s.state == MemberState::Running;
    let view = s.view_valid_until.is_some_and(|until| now < until);
    let primary = running && s.running_primary;
    let replica = running && s.in_recovery;
    for (name, help, value) in [
        ("patroni_version", "Patroni semver without periods.", version_number(env!("CARGO_PKG_VERSION"))),
        ("patroni_postgres_running", "Value is 1 if Postgres is running, 0 otherwise.", u64::from(running)),
        ("patroni_primary", "Value is 1 if this node is the leader, 0 otherwise.", u64::from(primary)),
        (
            "patroni_xlog_location",
            "Current location of the Postgres transaction log, 0 if this node is not the leader.",
            if primary { s.write_lsn } else { 0 },
        ),
        ("patroni_standby_leader", "Value is 1 if this node is the standby_leader, 0 otherwise.", 0),
        ("patroni_replica", "Value is 1 if this node is a replica, 0 otherwise.", u64::from(replica)),
        (
            "patroni_sync_standby",
            "Value is 1 if this node is a sync standby, 0 otherwise.",
            u64::from(s.sync_standby),
        ),
        (
            "patroni_quorum_standby",
            "Value is 1 if this node is a quorum standby, 0 otherwise.",
            u64::from(s.quorum_standby),
        ),
        (
            "patroni_xlog_received_location",
            "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
            if replica { s.receive_lsn } else { 0 },
        ),
        (
            "patroni_xlog_replayed_location",
            "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
            if replica { s.replay_lsn } else { 0 },
        ),
        (
            "patroni_postgres_server_version",
            "Version of Postgres (if running), 0 otherwise.",
            u64::from(s.server_version),
        ),
        (
            "patroni_cluster_unlocked",
            "Value is 1 if the cluster is unlocked, 0 if locked.",
            u64::from(view && s.leader.is_none()),
        ),
        (
            "patroni_postgres_timeline",
            "Postgres timeline of this node (if running), 0 otherwise.",
            if running { u64::from(s.timeline) } else { 0 },
        ),
        (
            "patroni_dcs_last_seen",
            "Epoch timestamp when DCS was last contacted successfully by Patroni.",
            s.dcs_last_seen_s,
        ),
        ("patroni_is_paused", "Value is 1 if auto failover is disabled, 0 otherwise.", u64::from(s.paused)),
        (
            "patroni_pending_restart",
            "Value is 1 if the node needs a restart, 0 otherwise.",
            u64::from(s.pending_restart),
        ),
        (
            "patroni_postgres_streaming",
            "Value is 1 if Postgres is streaming, 0 otherwise.",
            u64::from(s.replication_state == Some(ReplicationState::Streaming)),
        ),
        (
            "patroni_postgres_in_archive_recovery",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
            u64::from(s.replication_state == Some(ReplicationState::InArchiveRecovery)),
        ),
    ] {
        let gauge = Gauge::<u64, AtomicU64>::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    }

    // keel's own. The lease is what `/primary` checks, counted at the time
    // of the request, so a scrape sees it run out between steps.
    let lease_left_s = s.lease_deadline.map_or(0.0, |d| d.saturating_duration_since(now).as_secs_f64());
    let lease = Gauge::<f64, AtomicU64>::default();
    lease.set(lease_left_s);
    registry.register(
        "keel_lease_remaining_seconds",
        "Seconds left on this node's leader lease, 0 when it holds none.",
        lease,
    );
    let changes = Counter::<u64>::default();
    changes.inc_by(s.leader_changes);
    // The encoder adds `_total`.
    registry.register("keel_leader_changes", "Leader changes this node has seen.", changes);
    // The encoder adds `_info`.
    registry.register(
        "keel_last_decision",
        "The reason of the last decision, as logged.",
        Info::new(vec![("reason".to_owned(), s.last_reason.clone())]),
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Patroni's `patroni_version`: each part padded to two digits and the
/// periods dropped (2.0.2 is 020002, so 20002).
fn version_number(version: &str) -> u64 {
    let digits: String = version.split('.').map(|part| format!("{:0>2}", part)).collect();
    digits.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use keel_core::MemberRole;

    use super::*;

    /// The value of `name` in `text`, checking that its labels are
    /// exactly `labels` (in any order).
    fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        let line = text
            .lines()
            .find(|l| l.split(['{', ' ']).next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let inside =
            head.strip_prefix(name).and_then(|l| l.strip_prefix('{')).and_then(|l| l.strip_suffix('}'));
        let mut got: Vec<(String, String)> = inside
            .unwrap_or_else(|| panic!("no labels: {line}"))
            .split(',')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{pair}"));
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, String)> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        want.sort();
        assert_eq!(got, want, "{line}");
        value.parse().unwrap_or_else(|_| panic!("{line}"))
    }

    #[test]
    fn primary_metrics_carry_patroni_names_scope_and_name_labels() {
        let now = Instant::now();
        let mut s = NodeStatus::new("pg1", "demo", BTreeMap::new());
        s.role = MemberRole::Primary;
        s.state = MemberState::Running;
        s.running_primary = true;
        s.timeline = 4;
        s.write_lsn = 67_108_960;
        s.server_version = 150_018;
        s.lease_deadline = Some(now + Duration::from_millis(12_500));
        s.view_valid_until = Some(now + Duration::from_secs(30));
        s.leader = Some("pg1".into());
        s.dcs_last_seen_s = 1_700_000_000;
        s.leader_changes = 3;
        s.last_reason = "holds the lease".into();
        let text = metrics_text(&s, now);
        assert!(text.ends_with("# EOF\n"), "{text}");
        let node = [("scope", "demo"), ("name", "pg1")];
        for (name, value) in [
            ("patroni_version", version_number(env!("CARGO_PKG_VERSION")) as f64),
            ("patroni_postgres_running", 1.0),
            ("patroni_primary", 1.0),
            ("patroni_replica", 0.0),
            ("patroni_xlog_location", 67_108_960.0),
            ("patroni_xlog_received_location", 0.0),
            ("patroni_xlog_replayed_location", 0.0),
            ("patroni_postgres_timeline", 4.0),
            ("patroni_postgres_server_version", 150_018.0),
            ("patroni_cluster_unlocked", 0.0),
            ("patroni_is_paused", 0.0),
            ("patroni_pending_restart", 0.0),
            ("patroni_dcs_last_seen", 1_700_000_000.0),
            ("patroni_sync_standby", 0.0),
            ("keel_lease_remaining_seconds", 12.5),
            ("keel_leader_changes_total", 3.0),
        ] {
            assert_eq!(sample(&text, name, &node), value, "{name}");
        }
        let reason = [("scope", "demo"), ("name", "pg1"), ("reason", "holds the lease")];
        assert_eq!(sample(&text, "keel_last_decision_info", &reason), 1.0);
        assert!(text.contains("# TYPE keel_leader_changes counter"), "{text}");
    }

    #[test]
    fn replica_metrics_show_received_and_replayed_and_no_lease() {
        let now = Instant::now();
        let mut s = NodeStatus::new("pg2", "demo", BTreeMap::new());
        s.state = MemberState::Running;
        s.in_recovery = true;
        s.receive_lsn = 300;
        s.replay_lsn = 200;
        s.sync_standby = true;
        s.paused = true;
        s.pending_restart = true;
        s.view_valid_until = Some(now + Duration::from_secs(30));
        s.replication_state = Some(ReplicationState::Streaming);
        let text = metrics_text(&s, now);
        let node = [("scope", "demo"), ("name", "pg2")];
        for (name, value) in [
            ("patroni_primary", 0.0),
            ("patroni_replica", 1.0),
            ("patroni_xlog_location", 0.0),
            ("patroni_xlog_received_location", 300.0),
            ("patroni_xlog_replayed_location", 200.0),
            ("patroni_sync_standby", 1.0),
            ("patroni_is_paused", 1.0),
            ("patroni_pending_restart", 1.0),
            ("patroni_cluster_unlocked", 1.0),
            ("patroni_postgres_streaming", 1.0),
            ("keel_lease_remaining_seconds", 0.0),
            ("keel_leader_changes_total", 0.0),
        ] {
            assert_eq!(sample(&text, name, &node), value, "{name}");
        }
    }

    #[test]
    fn version_number_pads_each_part_as_patroni() {
        assert_eq!(version_number("2.0.2"), 20_002);
        assert_eq!(version_number("4.0.12"), 40_012);
        assert_eq!(version_number("0.1.0"), 100);
    }
}
