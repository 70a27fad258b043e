//! Arbitrary bytes into the readers of Patroni's values in etcd
//! (`keel_runtime::dcs::codec`): member keys, `sync`, `failover`,
//! `history`, `status`, `failsafe`, and the times in them. Any of them may
//! have been written by another tool or by hand, so none may panic; and
//! what keel reads, keel writes back as the same value: a member key it
//! publishes again, the `sync` key it rewrites, the history it extends.

#![no_main]

use std::collections::BTreeMap;

use keel_core::MemberStatus;
use keel_runtime::dcs::codec::{self, MemberExtras};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

mod common;
use common::{same, same_map};

fuzz_target!(|data: &[u8]| {
    member(data);
    if let Ok(sync) = codec::parse_sync(data, 7) {
        let written = codec::encode_sync(sync.leader.as_deref().unwrap_or(""), &sync.members, sync.quorum);
        assert_eq!(codec::parse_sync(&written, 7), Ok(sync), "{}", String::from_utf8_lossy(&written));
    }
    if let Ok(failover) = codec::parse_failover(data, 7) {
        // As the REST API and keelctl write it (`leader`, `member`,
        // `scheduled_at`, each only when set).
        let mut value = Map::new();
        if let Some(leader) = &failover.leader {
            value.insert("leader".into(), json!(leader));
        }
        if let Some(candidate) = &failover.candidate {
            value.insert("member".into(), json!(candidate));
        }
        if let Some(ms) = failover.scheduled_at_wall_ms {
            value.insert("scheduled_at".into(), json!(codec::format_timestamp(ms)));
        }
        let written = Value::Object(value).to_string();
        assert_eq!(codec::parse_failover(written.as_bytes(), 7), Ok(failover), "{written}");
    }
    if let Ok(history) = codec::parse_history(data) {
        assert!(history.len() <= keel_core::limits::HISTORY_MAX);
        let written = codec::encode_history(&history);
        assert_eq!(codec::parse_history(&written), Ok(history), "{}", String::from_utf8_lossy(&written));
    }
    if let Ok(optime) = codec::parse_status(data) {
        assert_eq!(codec::parse_status(&codec::encode_status(optime)), Ok(optime));
    }
    if let Ok(members) = codec::parse_failsafe(data) {
        let urls: BTreeMap<String, String> =
            members.iter().map(|m| (m.clone(), format!("http://{m}"))).collect();
        assert_eq!(codec::parse_failsafe(&codec::encode_failsafe(&urls)), Ok(members));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ms) = codec::parse_timestamp_ms(text) {
            let written = codec::format_timestamp(ms);
            assert_eq!(codec::parse_timestamp_ms(&written), Ok(ms), "{text:?} written as {written:?}");
        }
    }
});

/// A member key read, published again as keel publishes its own, and read
/// back: the same facts, tags and extras, and nothing garbled.
fn member(data: &[u8]) {
    let Ok(key) = codec::parse_member_key(data) else {
        assert!(codec::parse_member(data).is_err());
        return;
    };
    assert_eq!(codec::parse_member(data).as_ref(), Ok(&key.member));
    let m = &key.member;
    let status =
        MemberStatus { role: m.role, state: m.state, timeline: m.timeline, lsn: m.lsn, tags: m.tags.clone() };
    let mut extras = key.details.extras.clone();
    extras.tags = codec::published_tags(&m.tags, &extras.tags);
    let version = key.details.version.clone().unwrap_or_default();
    let written = codec::encode_member(&status, &m.conn_url, &m.api_url, &version, &extras);
    let shown = String::from_utf8_lossy(&written);
    let again = codec::parse_member_key(&written).unwrap_or_else(|e| panic!("{e}: {shown}"));
    assert_eq!(again.member, key.member, "{shown}");
    assert!(again.details.warnings.is_empty(), "{:?}: {shown}", again.details.warnings);
    assert_eq!(again.details.version.as_deref(), Some(version.as_str()));
    assert_eq!(again.details.state, codec::state_name(m.state));
    // The reasons for a pending restart are only written with one.
    if !extras.pending_restart {
        extras.pending_restart_reason.clear();
    }
    same_extras(&again.details.extras, &extras, &shown);
}

fn same_extras(a: &MemberExtras, b: &MemberExtras, shown: &str) {
    assert_eq!(a.replication_state, b.replication_state, "{shown}");
    assert_eq!((a.pending_restart, a.pause), (b.pending_restart, b.pause), "{shown}");
    assert!(same_map(&a.pending_restart_reason, &b.pending_restart_reason), "{shown}");
    assert!(same_map(&a.tags, &b.tags), "{shown}");
    match (&a.scheduled_restart, &b.scheduled_restart) {
        (Some(x), Some(y)) => assert!(same(&Value::Object(x.clone()), &Value::Object(y.clone())), "{shown}"),
        (x, y) => assert_eq!(x, y, "{shown}"),
    }
}
