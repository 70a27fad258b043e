//! Arbitrary requests into the readers of what a REST client sends
//! (`keel_runtime::api`): the path, the health checks' query, the JSON
//! bodies of `POST /switchover`, `/failover`, `/restart`,
//! `/reinitialize` and `PATCH /config` and the fields read from them, the
//! `Authorization` header, schedules, and `restapi.allowlist` entries.
//! Each answers a value or a refusal, never a panic; and each value means
//! what was sent (a network holds its own address, a schedule is the time
//! given, a body read is the body sent, a merge patch applies once).

#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use keel_runtime::api::access::{url_host, Net};
use keel_runtime::api::body::{self, opt_bool, opt_string};
use keel_runtime::api::config_edit::merge_patch;
use keel_runtime::api::health::{Endpoint, HealthQuery};
use keel_runtime::api::lag::parse_lag_bytes;
use keel_runtime::api::ops::parse_schedule;
use keel_runtime::api::{auth, ReplicationState};
use keel_runtime::config::Auth;
use keel_runtime::dcs::codec;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

mod common;
use common::same;

#[derive(Arbitrary, Debug)]
struct Request {
    path: String,
    query: Vec<(String, String)>,
    body: Vec<u8>,
    content_length: bool,
    /// A second JSON document: the config a patch applies to.
    target: Vec<u8>,
    /// A query value, an allowlist entry, a time, a header value.
    text: String,
    user: String,
    password: String,
    now_ms: i64,
}

/// The fields the mutating endpoints read from their bodies.
const STRING_FIELDS: [&str; 6] = ["leader", "candidate", "member", "scheduled_at", "schedule", "role"];
const BOOL_FIELDS: [&str; 2] = ["force", "from_leader"];

fuzz_target!(|r: Request| {
    if let Some(endpoint) = Endpoint::from_path(&r.path) {
        assert!(r.path.starts_with('/'), "{endpoint:?} from {:?}", r.path);
    }
    health_query(&r.query);
    lag(&r.text);
    if let Some(state) = ReplicationState::parse(&r.text) {
        assert_eq!(state.as_str(), r.text);
    }
    net(&r.text);
    if let Some(host) = url_host(&r.text) {
        assert!(!host.is_empty() && r.text.contains(&host));
    }
    schedule(&r.text, r.now_ms);
    bodies(&r);
    authorization(&r);
});

/// The query's pairs as read: the last `lag`, `replication_state` and
/// `mode` win, every `tag_` pair is kept in order.
fn health_query(pairs: &[(String, String)]) {
    let Ok(q) = HealthQuery::parse(pairs) else { return };
    let last = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(q.lag_bytes, last("lag").map(|v| parse_lag_bytes(v).expect("accepted lag")));
    assert_eq!(q.replication_state, last("replication_state").and_then(ReplicationState::parse));
    assert_eq!(q.readiness_write, last("mode") == Some("write"));
    let tags: Vec<(String, String)> =
        pairs.iter().filter_map(|(k, v)| Some((k.strip_prefix("tag_")?.to_owned(), v.clone()))).collect();
    assert_eq!(q.tags, tags);
}

/// A lag read back from its figure in bytes and in its largest exact unit.
fn lag(text: &str) {
    let Ok(bytes) = parse_lag_bytes(text) else { return };
    assert_eq!(parse_lag_bytes(&bytes.to_string()), Ok(bytes));
    let units = [("TB", 1u64 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10), ("B", 1)];
    let (unit, size) = units.into_iter().find(|(_, size)| bytes % size == 0).expect("B divides all");
    assert_eq!(parse_lag_bytes(&format!("{} {unit}", bytes / size)), Ok(bytes), "{text:?}");
}

/// An allowlist entry holds the address it names.
fn net(text: &str) {
    let Some(net) = Net::parse(text) else { return };
    let addr = text.trim().split_once('/').map_or(text.trim(), |(a, _)| a);
    let addr: IpAddr = addr.parse().expect("Net::parse accepted the address");
    assert!(net.contains(addr), "{text:?} does not hold its own address");
}

/// A schedule accepted is the time given, not in the past; a refusal is
/// a 400 or a 422, as Patroni's.
fn schedule(at: &str, now_ms: i64) {
    match parse_schedule(at, "switchover", now_ms) {
        Ok(ms) => {
            assert!(ms >= now_ms);
            assert_eq!(codec::parse_timestamp_ms(at), Ok(ms));
        }
        Err(refusal) => {
            let code = refusal.into_response().status();
            assert!(matches!(code, StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY), "{code}");
        }
    }
}

fn bodies(r: &Request) {
    let mut headers = HeaderMap::new();
    if r.content_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.body.len()));
    }
    for optional in [false, true] {
        let Ok(request) = body::object(&headers, &r.body, optional) else { continue };
        assert!(optional || !request.is_empty());
        // What keel read is what was sent.
        if !r.body.is_empty() {
            let sent: Value = serde_json::from_slice(&r.body).expect("an accepted body is JSON");
            assert!(same(&sent, &Value::Object(request.clone())));
        }
        for key in STRING_FIELDS {
            if let Ok(Some(s)) = opt_string(&request, key) {
                assert!(!s.is_empty() && request[key] == s);
            }
        }
        for key in BOOL_FIELDS {
            if let Ok(true) = opt_bool(&request, key) {
                assert_eq!(request[key], Value::Bool(true));
            }
        }
        // PATCH /config: RFC 7396, whose patches apply once.
        let mut config: Value = serde_json::from_slice(&r.target).unwrap_or(Value::Null);
        let patch = Value::Object(request);
        merge_patch(&mut config, &patch);
        let once = config.clone();
        merge_patch(&mut config, &patch);
        assert_eq!(config, once, "a merge patch applied twice differs from once");
        for (key, value) in patch.as_object().into_iter().flatten() {
            match value {
                Value::Null => assert!(once.get(key).is_none()),
                Value::Object(_) => assert!(once[key].is_object()),
                _ => assert_eq!(&once[key], value),
            }
        }
    }
}

/// The credentials keel sends its peers are the ones it accepts; an
/// arbitrary `Authorization` header is read without a panic.
fn authorization(r: &Request) {
    let credentials = Auth { username: r.user.clone(), password: r.password.clone() };
    if let Ok(value) = HeaderValue::from_str(&r.text) {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        if auth::check(Some(&credentials), &headers).is_none() {
            assert!(!r.text.is_empty(), "an empty header was accepted");
        }
    }
    let mut headers = HeaderMap::new();
    let ours = HeaderValue::from_str(&auth::header_value(&credentials)).expect("base64 is a header value");
    headers.insert(header::AUTHORIZATION, ours);
    let accepted = auth::check(Some(&credentials), &headers).is_none();
    // A user name with a colon cannot be told from its password (RFC 7617).
    assert_eq!(accepted, !r.user.contains(':'), "{credentials:?}");
    assert!(auth::check(None, &HeaderMap::new()).is_none());
}
