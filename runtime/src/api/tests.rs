//! Socket tests of the operations: a real server on loopback, the
//! in-memory etcd behind it, and a scripted agent that answers commands.
//! Each test names the situation and the answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use keel_core::{Action, ActionResult, MemberRole, Outcome, Reason, ReinitializeRefusal, Request};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::client::{self, Rest};
use super::ops::{Api, Ops};
use super::status::{NodeStatus, SharedStatus};
use super::store::{BoxFuture, KvStore, Store};
use super::{bind, serve};
use crate::agent::command::{Command, Order, Reply};
use crate::config::Auth;
use crate::dcs::mem::MemKv;
use crate::dcs::patroni::Snapshot;
use crate::dcs::{Compare, KeyValue, Keys, Kv, KvError, Op};

struct Answer {
    code: u16,
    head: String,
    body: String,
}

/// One request over a fresh connection; `body` sent with its length.
async fn call(addr: SocketAddr, method: &str, path: &str, extra: &str, body: Option<&str>) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let length = body.map(|b| format!("Content-Length: {}\r\n", b.len())).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n{extra}{length}\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    stream.write_all(body.unwrap_or("").as_bytes()).await.expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("receive");
    let raw = String::from_utf8(raw).expect("utf-8");
    let code = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{raw:?}"));
    let (head, body) =
        raw.split_once("\r\n\r\n").map(|(h, b)| (h.to_owned(), b.to_owned())).unwrap_or_default();
    Answer { code, head, body }
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> Answer {
    call(addr, "POST", path, "", Some(body)).await
}

fn keys() -> Keys {
    Keys::new("/service/", "demo")
}

async fn put(kv: &MemKv, rel: &str, value: Value) {
    let value = match value {
        Value::String(s) => s.into_bytes(),
        other => other.to_string().into_bytes(),
    };
    let key = format!("{}{rel}", keys().prefix());
    kv.txn(vec![], vec![Op::Put { key, value, lease: 0 }], vec![]).await.expect("put");
}

async fn get(kv: &MemKv, rel: &str) -> Option<Value> {
    let key = format!("{}{rel}", keys().prefix());
    let range = kv.range_prefix(&key).await.expect("read");
    range
        .kvs
        .into_iter()
        .find(|k| k.key == key)
        .map(|k| serde_json::from_slice(&k.value).unwrap_or(Value::Null))
}

fn member(role: &str, state: &str, tags: Value) -> Value {
    json!({"role": role, "state": state, "api_url": "http://127.0.0.1:1/patroni",
           "conn_url": "postgres://127.0.0.1:5432/postgres", "xlog_location": 100, "tags": tags})
}

/// pg1 leads pg2 and pg3, all running; `config` as given.
async fn cluster(config: Value) -> MemKv {
    let kv = MemKv::new();
    put(&kv, "leader", json!("pg1")).await;
    put(&kv, "config", config).await;
    put(&kv, "members/pg1", member("primary", "running", json!({}))).await;
    put(&kv, "members/pg2", member("replica", "running", json!({}))).await;
    put(&kv, "members/pg3", member("replica", "running", json!({}))).await;
    kv
}

fn replica_status() -> NodeStatus {
    let mut s = NodeStatus::new("pg2", "demo", BTreeMap::new());
    s.role = MemberRole::Replica;
    s.in_recovery = true;
    s.receive_lsn = 300;
    s.replay_lsn = 200;
    s
}

struct Node {
    addr: SocketAddr,
    status: SharedStatus,
    agent: mpsc::Receiver<Command>,
}

async fn serve_with(store: Box<dyn Store>, status: NodeStatus, auth: Option<Auth>) -> Node {
    let (tx, rx) = mpsc::channel(8);
    let status = status.shared();
    let ops = Ops::new(store, tx).poll_every(Duration::from_millis(20));
    let api = Api::new(status.clone()).with_auth(auth).with_operations(ops);
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, api));
    Node { addr, status, agent: rx }
}

async fn serve_kv(kv: &MemKv) -> Node {
    serve_with(Box::new(KvStore::new(kv.clone(), keys())), replica_status(), None).await
}

/// The cluster's answer to a `failover` key: `to` takes the leader key
/// and the request is cleared (`None`: the leader refuses and clears it).
fn cluster_acts(kv: &MemKv, to: Option<&'static str>) {
    let kv = kv.clone();
    tokio::spawn(async move {
        while get(&kv, "failover").await.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(to) = to {
            put(&kv, "leader", json!(to)).await;
        }
        let key = format!("{}failover", keys().prefix());
        kv.txn(vec![], vec![Op::Delete { key }], vec![]).await.expect("clear");
    });
}

/// Answers the next command with `reply`, and hands the command back.
fn agent_answers(mut node_agent: mpsc::Receiver<Command>, reply: Reply) -> tokio::task::JoinHandle<Order> {
    tokio::spawn(async move {
        let command = node_agent.recv().await.expect("a command");
        if let Some(tx) = command.reply {
            let _ = tx.send(reply);
        }
        command.order
    })
}

fn stepped(reason: Reason, action: Action, result: ActionResult) -> Reply {
    Reply::Stepped { reason, outcomes: vec![Outcome { action, sent_at_ms: 0, result, lease_ttl_ms: None }] }
}

// ---- POST /switchover, POST /failover, DELETE /switchover ----

#[tokio::test]
async fn switchover_to_a_healthy_candidate_answers_200_once_it_holds_the_leader_key() {
    let kv = cluster(json!({"ttl": 30})).await;
    let node = serve_kv(&kv).await;
    cluster_acts(&kv, Some("pg2"));
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1", "candidate": "pg2"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (200, "Successfully switched over to \"pg2\""));
}

#[tokio::test]
async fn switchover_won_by_another_member_answers_200_instead_of() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    cluster_acts(&kv, Some("pg3"));
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1", "candidate": "pg2"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (200, "Switched over to \"pg3\" instead of \"pg2\""));
}

#[tokio::test]
async fn switchover_refused_by_the_leader_answers_503_failed() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    cluster_acts(&kv, None);
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (503, "Switchover failed"));
}

/// Nobody carried the request out: the API withdraws what it wrote, so
/// that it does not fire later, when nobody expects it (rule 10).
#[tokio::test]
async fn switchover_nobody_acts_on_answers_503_status_unknown_and_withdraws_the_request() {
    let kv = cluster(json!({"loop_wait": 1})).await;
    let node = serve_kv(&kv).await;
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1", "candidate": "pg3"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (503, "Switchover status unknown"));
    assert_eq!(get(&kv, "failover").await, None);
}

/// A newer request written meanwhile (by another operator) is not the API's
/// to withdraw.
#[tokio::test]
async fn switchover_nobody_acts_on_leaves_a_newer_request_alone() {
    let kv = cluster(json!({"loop_wait": 1})).await;
    let node = serve_kv(&kv).await;
    let writer = kv.clone();
    tokio::spawn(async move {
        while get(&writer, "failover").await.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        put(&writer, "failover", json!({"leader": "pg1", "member": "pg2"})).await;
    });
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1", "candidate": "pg3"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (503, "Switchover status unknown"));
    assert_eq!(get(&kv, "failover").await, Some(json!({"leader": "pg1", "member": "pg2"})));
}

#[tokio::test]
async fn switchover_prechecks_answer_412_and_write_nothing() {
    let kv = cluster(json!({})).await;
    put(&kv, "members/pg4", member("replica", "stopped", json!({}))).await;
    put(&kv, "members/pg5", member("replica", "running", json!({"nofailover": true}))).await;
    let node = serve_kv(&kv).await;
    for (body, message) in [
        (r#"{"leader": "pg2"}"#, "leader name does not match"),
        (r#"{"leader": "pg1", "candidate": "pg9"}"#, "candidate does not exists"),
        (
            r#"{"leader": "pg1", "candidate": "pg4"}"#,
            "switchover is not possible: no good candidates have been found",
        ),
        (
            r#"{"leader": "pg1", "member": "pg5"}"#,
            "switchover is not possible: no good candidates have been found",
        ),
    ] {
        let a = post(node.addr, "/switchover", body).await;
        assert_eq!((a.code, a.body.as_str()), (412, message), "{body}");
    }
    assert_eq!(get(&kv, "failover").await, None, "nothing written");
}

#[tokio::test]
async fn switchover_from_a_lone_leader_answers_412_no_members_except_leader() {
    let kv = MemKv::new();
    put(&kv, "leader", json!("pg1")).await;
    put(&kv, "members/pg1", member("primary", "running", json!({}))).await;
    let node = serve_kv(&kv).await;
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1"}"#).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (412, "switchover is not possible: cluster does not have members except leader")
    );
}

#[tokio::test]
async fn switchover_in_synchronous_mode_to_an_async_replica_answers_412() {
    let kv = cluster(json!({"synchronous_mode": true})).await;
    put(&kv, "sync", json!({"leader": "pg1", "sync_standby": "pg3"})).await;
    let node = serve_kv(&kv).await;
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1", "candidate": "pg2"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (412, "candidate name does not match with sync_standby"));
    put(&kv, "sync", json!({"leader": "pg1", "sync_standby": null})).await;
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (412, "switchover is not possible: can not find sync_standby"));
}

#[tokio::test]
async fn switchover_and_failover_validation_answers_400() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    for (path, body, message) in [
        (
            "/switchover",
            r#"{"candidate": "pg2"}"#,
            "Switchover could be performed only from a specific leader",
        ),
        (
            "/switchover",
            r#"{"leader": "pg1", "candidate": "pg1"}"#,
            "Switchover target and source are the same",
        ),
        ("/failover", r#"{"leader": "pg1"}"#, "Failover could be performed only to a specific candidate"),
        (
            "/failover",
            r#"{"candidate": "pg2", "scheduled_at": "2999-01-01T00:00:00+00:00"}"#,
            "Failover can't be scheduled",
        ),
        ("/switchover", r#"{"leader": 1}"#, "leader must be a string, not a number"),
        ("/switchover", r#"{}"#, "the JSON object is empty"),
        ("/switchover", r#"["pg1"]"#, "expected a JSON object, found an array"),
    ] {
        let a = post(node.addr, path, body).await;
        assert_eq!((a.code, a.body.as_str()), (400, message), "{path} {body}");
    }
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1""#).await;
    assert_eq!(a.code, 400);
    assert!(a.body.starts_with("invalid JSON"), "{}", a.body);
    let a = call(node.addr, "POST", "/switchover", "", None).await;
    assert_eq!(a.code, 411, "no body, no Content-Length");
    assert_eq!(get(&kv, "failover").await, None, "nothing written");
}

#[tokio::test]
async fn paused_cluster_refuses_scheduling_and_candidate_less_switchover_with_400() {
    let kv = cluster(json!({"pause": true})).await;
    let node = serve_kv(&kv).await;
    let a =
        post(node.addr, "/switchover", r#"{"leader": "pg1", "scheduled_at": "2999-01-01T00:00:00Z"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (400, "Can't schedule switchover in the paused state"));
    let a = post(node.addr, "/switchover", r#"{"leader": "pg1"}"#).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (400, "Switchover is possible only to a specific candidate in a paused state")
    );
    assert_eq!(get(&kv, "failover").await, None);
}

#[tokio::test]
async fn scheduled_switchover_answers_202_and_bad_schedules_400_or_422() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    for (at, code, message) in [
        ("2999-01-01T00:00:00", 400, "Timezone information is mandatory for the scheduled switchover"),
        ("2001-01-01T00:00:00+00:00", 422, "Cannot schedule switchover in the past"),
        (
            "tomorrow",
            422,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
        ),
    ] {
        let body = json!({"leader": "pg1", "scheduled_at": at}).to_string();
        let a = post(node.addr, "/switchover", &body).await;
        assert_eq!((a.code, a.body.as_str()), (code, message), "{at}");
    }
    assert_eq!(get(&kv, "failover").await, None);
    let body = r#"{"leader": "pg1", "candidate": "pg2", "scheduled_at": "2999-01-01T02:00:00+02:00"}"#;
    let a = post(node.addr, "/switchover", body).await;
    assert_eq!((a.code, a.body.as_str()), (202, "Switchover scheduled"));
    assert_eq!(
        get(&kv, "failover").await,
        Some(json!({"leader": "pg1", "member": "pg2", "scheduled_at": "2999-01-01T00:00:00Z"}))
    );
}

#[tokio::test]
async fn delete_switchover_answers_404_without_a_schedule_and_200_removing_one() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    assert_eq!(call(node.addr, "DELETE", "/switchover", "", None).await.code, 404);
    put(&kv, "failover", json!({"leader": "pg1"})).await;
    let a = call(node.addr, "DELETE", "/switchover", "", None).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (404, "no switchover is scheduled"),
        "an immediate one is not cancelled"
    );
    put(&kv, "failover", json!({"leader": "pg1", "scheduled_at": "2999-01-01T00:00:00Z"})).await;
    let a = call(node.addr, "DELETE", "/switchover", "", None).await;
    assert_eq!((a.code, a.body.as_str()), (200, "scheduled switchover deleted"));
    assert_eq!(get(&kv, "failover").await, None);
}

#[tokio::test]
async fn failover_without_a_leader_answers_200_when_the_candidate_takes_over() {
    let kv = cluster(json!({})).await;
    let key = format!("{}leader", keys().prefix());
    kv.txn(vec![], vec![Op::Delete { key }], vec![]).await.expect("delete leader");
    let node = serve_kv(&kv).await;
    cluster_acts(&kv, Some("pg3"));
    let a = post(node.addr, "/failover", r#"{"candidate": "pg3"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (200, "Successfully failed over to \"pg3\""));
}

// ---- authentication ----

#[tokio::test]
async fn unsafe_methods_without_credentials_answer_401_and_change_nothing() {
    let kv = cluster(json!({})).await;
    let auth = Auth { username: "admin".into(), password: "s3cret".into() };
    let node = serve_with(Box::new(KvStore::new(kv.clone(), keys())), replica_status(), Some(auth)).await;
    let wrong = "Authorization: Basic YWRtaW46d3Jvbmc=\r\n"; // admin:wrong
    for extra in ["", wrong, "Authorization: Bearer x\r\n"] {
        for (method, path) in
            [("POST", "/switchover"), ("DELETE", "/switchover"), ("PATCH", "/config"), ("PUT", "/config")]
        {
            let a = call(node.addr, method, path, extra, Some(r#"{"leader": "pg1", "ttl": 99}"#)).await;
            assert_eq!(a.code, 401, "{method} {path} {extra}");
            assert!(a.head.contains("www-authenticate: Basic realm=\"keel\""), "{}", a.head);
        }
    }
    assert_eq!(get(&kv, "failover").await, None);
    assert_eq!(get(&kv, "config").await, Some(json!({})));
    assert_eq!(call(node.addr, "GET", "/patroni", "", None).await.code, 200, "GETs stay open");
    let right = "Authorization: Basic YWRtaW46czNjcmV0\r\n"; // admin:s3cret
    let a = call(node.addr, "PATCH", "/config", right, Some(r#"{"ttl": 40}"#)).await;
    assert_eq!(a.code, 200, "{}", a.body);
}

// ---- PATCH and PUT /config ----

#[tokio::test]
async fn patch_config_merges_deletes_with_null_and_answers_the_new_config() {
    let kv = cluster(
        json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB", "max_connections": 100}}}),
    )
    .await;
    let node = serve_kv(&kv).await;
    let patch =
        r#"{"loop_wait": 5, "postgresql": {"parameters": {"work_mem": null, "shared_buffers": "1GB"}}}"#;
    let a = call(node.addr, "PATCH", "/config", "", Some(patch)).await;
    assert_eq!(a.code, 200, "{}", a.body);
    let want = json!({"ttl": 30, "loop_wait": 5,
                      "postgresql": {"parameters": {"max_connections": 100, "shared_buffers": "1GB"}}});
    assert_eq!(serde_json::from_str::<Value>(&a.body).expect("JSON"), want);
    assert_eq!(get(&kv, "config").await, Some(want));
}

#[tokio::test]
async fn invalid_config_answers_400_and_writes_nothing() {
    let kv = cluster(json!({"ttl": 30})).await;
    let node = serve_kv(&kv).await;
    for (method, body) in
        [("PATCH", r#"{"ttl": "soon"}"#), ("PUT", r#"{"loop_wait": 0}"#), ("PATCH", "[1]"), ("PUT", "{")]
    {
        let a = call(node.addr, method, "/config", "", Some(body)).await;
        assert_eq!(a.code, 400, "{method} {body}: {}", a.body);
    }
    let a = call(node.addr, "PATCH", "/config", "", Some(r#"{"ttl": 5}"#)).await;
    assert!(a.body.starts_with("invalid config, nothing written: "), "{}", a.body);
    assert_eq!(get(&kv, "config").await, Some(json!({"ttl": 30})));
}

#[tokio::test]
async fn patch_config_without_a_config_key_answers_503() {
    let kv = MemKv::new();
    let node = serve_kv(&kv).await;
    let a = call(node.addr, "PATCH", "/config", "", Some(r#"{"ttl": 40}"#)).await;
    assert_eq!((a.code, a.body.as_str()), (503, "the config key does not exist yet"));
}

/// A store where someone writes `config` between the handler's read and
/// its write.
struct Racing(KvStore<MemKv>, MemKv);

impl Store for Racing {
    fn keys(&self) -> &Keys {
        self.0.keys()
    }
    fn read(&self) -> BoxFuture<'_, Result<Snapshot, KvError>> {
        self.0.read()
    }
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<KeyValue>, KvError>> {
        Box::pin(async move {
            let got = self.0.get(key).await;
            put(&self.1, "config", json!({"ttl": 50})).await;
            got
        })
    }
    fn txn(&self, compares: Vec<Compare>, success: Vec<Op>) -> BoxFuture<'_, Result<bool, KvError>> {
        self.0.txn(compares, success)
    }
}

#[tokio::test]
async fn patch_config_racing_another_writer_answers_409_and_keeps_theirs() {
    let kv = cluster(json!({"ttl": 30})).await;
    let store = Racing(KvStore::new(kv.clone(), keys()), kv.clone());
    let node = serve_with(Box::new(store), replica_status(), None).await;
    let a = call(node.addr, "PATCH", "/config", "", Some(r#"{"loop_wait": 5}"#)).await;
    assert_eq!(a.code, 409, "{}", a.body);
    assert_eq!(get(&kv, "config").await, Some(json!({"ttl": 50})));
}

#[tokio::test]
async fn put_config_replaces_the_whole_config() {
    let kv = cluster(json!({"ttl": 30, "loop_wait": 5})).await;
    let node = serve_kv(&kv).await;
    let a = call(node.addr, "PUT", "/config", "", Some(r#"{"ttl": 40}"#)).await;
    assert_eq!((a.code, a.body.as_str()), (200, r#"{"ttl":40}"#));
    assert_eq!(get(&kv, "config").await, Some(json!({"ttl": 40})));
}

// ---- POST /restart, /reinitialize ----

#[tokio::test]
async fn restart_carried_out_answers_200_and_a_failed_one_503() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    let done = stepped(Reason::Restarting, Action::RestartPostgres, ActionResult::Done);
    let agent = agent_answers(node.agent, done);
    let a = call(node.addr, "POST", "/restart", "", None).await;
    assert_eq!((a.code, a.body.as_str()), (200, "restarted successfully"));
    assert!(matches!(agent.await.expect("agent"), Order::Request(Request::Restart)));

    let node = serve_kv(&kv).await;
    let failed = stepped(Reason::Restarting, Action::RestartPostgres, ActionResult::Failed);
    let agent = agent_answers(node.agent, failed);
    let a = post(node.addr, "/restart", r#"{"role": "replica", "timeout": "30s"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (503, "restart failed"));
    agent.await.expect("agent");
}

#[tokio::test]
async fn restart_filters_answer_400_or_503_and_never_reach_the_agent() {
    let kv = cluster(json!({})).await;
    let mut node = serve_kv(&kv).await;
    node.status.write().expect("lock").server_version = 150_004;
    for (body, code, message) in [
        (
            r#"{"role": "leader"}"#,
            400,
            "PostgreSQL role should be either primary, standby_leader, or replica",
        ),
        (r#"{"timeout": 0}"#, 400, "Timeout should be a positive number of seconds"),
        (
            r#"{"postgres_version": "fifteen"}"#,
            400,
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: fifteen",
        ),
        (r#"{"now": true}"#, 400, "Unknown filter for the scheduled restart: now"),
        (r#"{"role": "primary"}"#, 503, "restart conditions are not satisfied"),
        (r#"{"postgres_version": "15.4"}"#, 503, "restart conditions are not satisfied"),
        (r#"{"restart_pending": true}"#, 503, "restart conditions are not satisfied"),
        (r#"{"schedule": "2001-01-01T00:00:00Z"}"#, 422, "Cannot schedule restart in the past"),
    ] {
        let a = post(node.addr, "/restart", body).await;
        assert_eq!((a.code, a.body.as_str()), (code, message), "{body}");
    }
    node.status.write().expect("lock").paused = true;
    let a = post(node.addr, "/restart", r#"{"schedule": "2999-01-01T00:00:00Z"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (500, "Can't schedule restart in the paused state"));
    assert!(node.agent.try_recv().is_err(), "the agent was never asked");
}

#[tokio::test]
async fn reinitialize_on_the_leader_answers_503_with_patronis_message() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    let why = ReinitializeRefusal::Leader;
    let refused = Reply::Stepped { reason: Reason::ReinitializeRefused { why }, outcomes: Vec::new() };
    let agent = agent_answers(node.agent, refused);
    let a = post(node.addr, "/reinitialize", r#"{"force": true}"#).await;
    assert_eq!((a.code, a.body.as_str()), (503, "I am the leader, can not reinitialize"));
    assert!(matches!(agent.await.expect("agent"), Order::Request(Request::Reinitialize)));
}

#[tokio::test]
async fn reinitialize_without_a_leader_answers_503_capitalized() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    let why = ReinitializeRefusal::NoLeader;
    let refused = Reply::Stepped { reason: Reason::ReinitializeRefused { why }, outcomes: Vec::new() };
    let _agent = agent_answers(node.agent, refused);
    let a = call(node.addr, "POST", "/reinitialize", "", None).await;
    assert_eq!((a.code, a.body.as_str()), (503, "Cluster has no leader, can not reinitialize"));
}

#[tokio::test]
async fn reinitialize_carried_out_answers_200_and_a_bad_force_400() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    let a = post(node.addr, "/reinitialize", r#"{"force": "yes"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (400, "force must be a boolean, not a string"));
    let source = "pg1".to_owned();
    let done = stepped(
        Reason::Reinitializing { source: source.clone() },
        Action::Reinitialize { source },
        ActionResult::Done,
    );
    let _agent = agent_answers(node.agent, done);
    let a = post(node.addr, "/reinitialize", "{}").await;
    assert_eq!((a.code, a.body.as_str()), (200, "reinitialized successfully"));
}

// ---- POST /failsafe ----

fn with_failsafe(mut s: NodeStatus, on: bool) -> NodeStatus {
    let config = crate::config::dynamic_from_json(json!({"failsafe_mode": on}).to_string().as_bytes())
        .expect("config");
    s.snapshot = Some(Snapshot { config: Some(config), ..Snapshot::default() });
    s
}

#[tokio::test]
async fn failsafe_ping_on_a_replica_answers_accepted_with_its_lsn_after_the_agent_took_it() {
    let kv = cluster(json!({})).await;
    let node =
        serve_with(Box::new(KvStore::new(kv, keys())), with_failsafe(replica_status(), true), None).await;
    let reply =
        Reply::Stepped { reason: Reason::FailsafePromise { leader: "pg1".into() }, outcomes: Vec::new() };
    let agent = agent_answers(node.agent, reply);
    let a = post(node.addr, "/failsafe", r#"{"name": "pg1", "conn_url": "x", "api_url": "y", "slots": {}}"#)
        .await;
    assert_eq!((a.code, a.body.as_str()), (200, "Accepted"));
    assert!(a.head.contains("lsn: 300"), "{}", a.head);
    let order = agent.await.expect("agent");
    assert!(
        matches!(order, Order::Request(Request::FailsafePing { ref leader }) if leader == "pg1"),
        "{order:?}"
    );
}

#[tokio::test]
async fn failsafe_ping_on_a_primary_answers_500_and_with_failsafe_off_502() {
    let kv = cluster(json!({})).await;
    let mut primary = with_failsafe(replica_status(), true);
    primary.running_primary = true;
    let node = serve_with(Box::new(KvStore::new(kv.clone(), keys())), primary, None).await;
    let a = post(node.addr, "/failsafe", r#"{"name": "pg1"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (500, "Running as a leader"));
    let node =
        serve_with(Box::new(KvStore::new(kv, keys())), with_failsafe(replica_status(), false), None).await;
    let a = post(node.addr, "/failsafe", r#"{"name": "pg1"}"#).await;
    assert_eq!(a.code, 502);
}

// ---- POST /reload ----

#[tokio::test]
async fn reload_applies_tags_and_authentication_and_a_bad_file_answers_400_keeping_them() {
    let dir = std::env::temp_dir().join(format!("keel-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("keel.yml");
    let yaml = |extra: &str| {
        format!(
            "scope: demo\nname: pg2\nrestapi:\n  listen: 127.0.0.1:8008\n{extra}\netcd3:\n  hosts: 127.0.0.1:2379\n\
             postgresql:\n  data_dir: /tmp/x\n  listen: 127.0.0.1:5432\n"
        )
    };
    std::fs::write(&path, yaml("")).expect("write");
    let current = crate::config::load(&path, &BTreeMap::new()).expect("valid config").config;
    let kv = cluster(json!({})).await;
    let (tx, mut rx) = mpsc::channel(8);
    let status = replica_status().shared();
    let ops =
        Ops::new(Box::new(KvStore::new(kv, keys())), tx).reload_from(path.clone(), BTreeMap::new(), current);
    let api = Api::new(status.clone()).with_operations(ops);
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, api));
    let agent = tokio::spawn(async move {
        let command = rx.recv().await.expect("reload");
        let Order::Reload(reload) = command.order else { panic!("{:?}", command.order) };
        let tags = reload.tags.to_core();
        let _ = command.reply.expect("waits").send(Reply::Reloaded { tags });
        reload
    });
    let auth =
        "  authentication:\n    username: admin\n    password: pw\ntags:\n  zone: b\n  nofailover: true";
    std::fs::write(&path, yaml(auth)).expect("write");
    let a = call(addr, "POST", "/reload", "", None).await;
    assert_eq!(a.code, 202, "{}", a.body);
    let reload = agent.await.expect("agent");
    assert_eq!(reload.tags.nofailover, Some(true));
    let pw = Auth { username: "admin".into(), password: "pw".into() };
    assert_eq!(reload.restapi_auth, Some(pw), "the agent's failsafe pings send the new credentials");
    assert_eq!(status.read().expect("lock").member_tags.get("zone"), Some(&json!("b")));
    assert_eq!(call(addr, "POST", "/reload", "", None).await.code, 401, "the new credentials apply");

    std::fs::write(&path, "scope: [unclosed").expect("write");
    let with_auth = "Authorization: Basic YWRtaW46cHc=\r\n"; // admin:pw
    let a = call(addr, "POST", "/reload", with_auth, None).await;
    assert_eq!(a.code, 400, "{}", a.body);
    assert!(a.body.starts_with("reload failed, old config kept: "), "{}", a.body);
    assert_eq!(call(addr, "POST", "/reload", "", None).await.code, 401, "old credentials kept");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn operations_before_etcd_is_connected_answer_503() {
    let api = Api::new(replica_status().shared());
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, api));
    let a = post(addr, "/switchover", r#"{"leader": "pg1"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (503, "operations are not available: not connected to etcd yet"));
    assert_eq!(post(addr, "/nothing", "{}").await.code, 404);
}

// ---- the leader's side of failsafe: CheckFailsafe's pings ----

/// A replica whose agent confirms every ping it gets.
async fn confirming_replica(auth: Option<Auth>) -> SocketAddr {
    let kv = cluster(json!({})).await;
    let mut node =
        serve_with(Box::new(KvStore::new(kv, keys())), with_failsafe(replica_status(), true), auth).await;
    tokio::spawn(async move {
        while let Some(command) = node.agent.recv().await {
            if let Some(tx) = command.reply {
                let _ = tx.send(Reply::Stepped { reason: Reason::ShutDown, outcomes: Vec::new() });
            }
        }
    });
    node.addr
}

fn url(addr: SocketAddr) -> Option<String> {
    Some(format!("http://{addr}/patroni"))
}

#[tokio::test]
async fn check_failsafe_is_done_when_every_member_accepts() {
    use crate::agent::failsafe::confirm_all;
    let auth = Auth { username: "admin".into(), password: "pw".into() };
    let (a, b) = (confirming_replica(Some(auth.clone())).await, confirming_replica(None).await);
    let peers = vec![("pg2".to_owned(), url(a)), ("pg3".to_owned(), url(b))];
    let body = json!({"name": "pg1"});
    let rest = Rest { auth: Some(auth), tls: None };
    let result = confirm_all(peers.clone(), &body, &rest, Duration::from_secs(5)).await;
    assert_eq!(result, ActionResult::Done);
    let no_credentials = confirm_all(peers, &body, &Rest::default(), Duration::from_secs(5)).await;
    assert_eq!(no_credentials, ActionResult::Failed, "pg2 wants credentials: 401");
}

#[tokio::test]
async fn check_failsafe_fails_on_a_primary_an_unknown_address_or_a_dead_member() {
    use crate::agent::failsafe::confirm_all;
    let ok = confirming_replica(None).await;
    let kv = cluster(json!({})).await;
    let mut primary = with_failsafe(replica_status(), true);
    primary.running_primary = true;
    let primary = serve_with(Box::new(KvStore::new(kv, keys())), primary, None).await;
    let dead = {
        let listener = bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address")
    };
    let body = json!({"name": "pg1"});
    for (peer, why) in [
        (url(primary.addr), "a running primary answers 500"),
        (None, "no address known"),
        (url(dead), "nobody listens"),
    ] {
        let peers = vec![("pg2".to_owned(), url(ok)), ("pg3".to_owned(), peer)];
        let result = confirm_all(peers, &body, &Rest::default(), Duration::from_secs(5)).await;
        assert_eq!(result, ActionResult::Failed, "{why}");
    }
    let nobody = confirm_all(Vec::new(), &body, &Rest::default(), Duration::from_secs(1)).await;
    assert_eq!(nobody, ActionResult::Done);
}

// ---- HTTPS ----

/// POSTs `body` as it is (JSON or deliberately not) to `path` of the member
/// at `api_url`.
async fn post_raw(
    api_url: &str,
    path: &str,
    body: &'static [u8],
    rest: &Rest,
) -> Result<client::Answer, client::HttpError> {
    let uri = client::endpoint(api_url, path)?;
    rest.send(axum::http::Method::POST, &uri, Some(bytes::Bytes::from_static(body)), Duration::from_secs(5))
        .await
}

/// A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI),
/// also usable as a client certificate.
pub(super) fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out =
            std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca"],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth",
    )
    .expect("ext");
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=keel"]].concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

#[tokio::test]
async fn https_api_serves_operations_and_failsafe_pings_verified_by_the_cafile() {
    use crate::agent::failsafe::confirm_all;
    use crate::api::tls;
    use crate::config::RestApi;
    let dir = std::env::temp_dir().join(format!("keel-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    make_certs(&dir);
    let restapi = RestApi {
        certfile: Some(dir.join("server.pem")),
        keyfile: Some(dir.join("server.key")),
        cafile: Some(dir.join("ca.pem")),
        ..RestApi::default()
    };
    let server = tls::server_config(&restapi).expect("server TLS").expect("certfile set");
    let client = tls::client_config(&restapi).expect("client TLS");
    let kv = cluster(json!({})).await;
    let (tx, mut rx) = mpsc::channel(8);
    let ops = Ops::new(Box::new(KvStore::new(kv, keys())), tx);
    let api = Api::new(with_failsafe(replica_status(), true).shared()).with_operations(ops);
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(super::serve_tls(listener, api, server));
    tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            if let Some(tx) = command.reply {
                let _ = tx.send(Reply::Stepped { reason: Reason::ShutDown, outcomes: Vec::new() });
            }
        }
    });
    let https = format!("https://{addr}/patroni");
    let verified = Rest { auth: None, tls: client };
    let a = post_raw(&https, "switchover", b"[", &verified).await.expect("an answer over TLS");
    assert_eq!(a.status, 400, "malformed body over HTTPS");
    let peers = vec![("pg2".to_owned(), Some(https.clone()))];
    let body = json!({"name": "pg1"});
    let pinged = confirm_all(peers.clone(), &body, &verified, Duration::from_secs(5)).await;
    assert_eq!(pinged, ActionResult::Done);
    let unverified = confirm_all(peers, &body, &Rest::default(), Duration::from_secs(5)).await;
    assert_eq!(unverified, ActionResult::Failed, "no CA: an https peer is not trusted");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = format!("http://{addr}/patroni");
    let a = post_raw(&plain, "failsafe", b"{}", &Rest::default()).await;
    assert!(a.is_err(), "{a:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_certificate_paths_are_one_clear_error_naming_the_file() {
    use crate::api::tls;
    use crate::config::RestApi;
    let missing = RestApi { certfile: Some("/nonexistent/cert.pem".into()), ..RestApi::default() };
    let e = tls::server_config(&missing).expect_err("no such file");
    assert!(e.starts_with("restapi.certfile /nonexistent/cert.pem: "), "{e}");
    let dir = std::env::temp_dir().join(format!("keel-badtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").expect("write");
    let empty = RestApi { certfile: Some(dir.join("empty.pem")), ..RestApi::default() };
    let e = tls::server_config(&empty).expect_err("no certificate");
    assert!(e.contains("no certificate in it"), "{e}");
    let encrypted = RestApi { keyfile_password: Some("pw".into()), ..empty };
    assert!(tls::server_config(&encrypted).expect_err("refused").starts_with("restapi.keyfile_password"));
    assert!(matches!(tls::server_config(&RestApi::default()), Ok(None)), "no certfile: plain HTTP");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn restart_pending_filter_restarts_a_server_that_waits_for_one() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    node.status.write().expect("lock").pending_restart = true;
    let done = stepped(Reason::Restarting, Action::RestartPostgres, ActionResult::Done);
    let agent = agent_answers(node.agent, done);
    let a = post(node.addr, "/restart", r#"{"restart_pending": true, "role": "replica"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (200, "restarted successfully"));
    agent.await.expect("agent");
    let status = call(node.addr, "GET", "/patroni", "", None).await;
    assert!(status.body.contains("\"pending_restart\":true"), "{}", status.body);
}

#[tokio::test]
async fn scheduled_restart_answers_202_then_409_shows_in_patroni_and_delete_removes_it() {
    let kv = cluster(json!({})).await;
    let mut node = serve_kv(&kv).await;
    let far = r#"{"schedule": "2999-01-01T00:00:00+00:00", "role": "replica"}"#;
    let a = post(node.addr, "/restart", far).await;
    assert_eq!((a.code, a.body.as_str()), (202, "Restart scheduled"));
    let a = post(node.addr, "/restart", r#"{"schedule": "2999-06-01T00:00:00Z"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (409, "Another restart is already scheduled"));
    let status = call(node.addr, "GET", "/patroni", "", None).await;
    let json: Value = serde_json::from_str(&status.body).expect("JSON");
    assert_eq!(json["scheduled_restart"], json!({"schedule": "2999-01-01T00:00:00Z", "role": "replica"}));
    let a = call(node.addr, "DELETE", "/restart", "", None).await;
    assert_eq!((a.code, a.body.as_str()), (200, "scheduled restart deleted"));
    let a = call(node.addr, "DELETE", "/restart", "", None).await;
    assert_eq!((a.code, a.body.as_str()), (404, "no restarts are scheduled"));
    let status = call(node.addr, "GET", "/patroni", "", None).await;
    assert!(!status.body.contains("scheduled_restart"), "{}", status.body);
    assert!(node.agent.try_recv().is_err(), "a cancelled restart never reaches the agent");

    // One due in a moment reaches the agent when due.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(300);
    let a = post(node.addr, "/restart", &json!({"schedule": soon.to_string()}).to_string()).await;
    assert_eq!(a.code, 202, "{}", a.body);
    let done = stepped(Reason::Restarting, Action::RestartPostgres, ActionResult::Done);
    let order = agent_answers(node.agent, done).await.expect("agent");
    assert!(matches!(order, Order::Request(Request::Restart)), "{order:?}");
}

// ---- allowlist and client certificates (Patroni's check_access) ----

#[tokio::test]
async fn allowlist_refuses_other_addresses_with_403_and_include_members_admits_members() {
    use super::access::{Access, Net};
    let kv = cluster(json!({})).await;
    let outside = Access { allowlist: vec![Net::parse("10.0.0.0/8").expect("net")], ..Access::default() };
    let (tx, _rx) = mpsc::channel(8);
    let api = Api::new(replica_status().shared())
        .with_access(outside.clone())
        .with_operations(Ops::new(Box::new(KvStore::new(kv.clone(), keys())), tx));
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, api));
    let a = post(addr, "/switchover", r#"{"leader": "pg1"}"#).await;
    assert_eq!((a.code, a.body.as_str()), (403, "Access is denied"));
    assert_eq!(call(addr, "GET", "/patroni", "", None).await.code, 200, "GETs stay open");
    assert_eq!(get(&kv, "failover").await, None);

    // A member's address (its api_url in the last DCS view) is admitted.
    let mut status = replica_status();
    let mut snap = Snapshot::default();
    let member =
        crate::dcs::codec::parse_member(member("replica", "running", json!({})).to_string().as_bytes());
    snap.view.members.insert("pg3".into(), member.expect("member"));
    status.snapshot = Some(snap);
    let members = Access { include_members: true, ..outside };
    let (tx, _rx2) = mpsc::channel(8);
    let api = Api::new(status.shared())
        .with_access(members)
        .with_operations(Ops::new(Box::new(KvStore::new(kv, keys())), tx));
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, api));
    let a = post(addr, "/switchover", "[").await;
    assert_eq!(a.code, 400, "past the access check: {}", a.body);
}

#[tokio::test]
async fn verify_client_required_and_optional_want_a_client_certificate_for_unsafe_methods() {
    use super::access::Access;
    use crate::api::tls;
    use crate::config::{RestApi, VerifyClient};
    let dir = std::env::temp_dir().join(format!("keel-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    make_certs(&dir);
    let with_cert = RestApi {
        certfile: Some(dir.join("server.pem")),
        keyfile: Some(dir.join("server.key")),
        cafile: Some(dir.join("ca.pem")),
        ..RestApi::default()
    };
    let without_cert = RestApi { cafile: Some(dir.join("ca.pem")), ..RestApi::default() };
    let identified = tls::client_config(&with_cert).expect("client TLS");
    let anonymous = tls::client_config(&without_cert).expect("client TLS");
    for mode in [VerifyClient::Required, VerifyClient::Optional] {
        let restapi = RestApi { verify_client: Some(mode), ..with_cert.clone() };
        let server = tls::server_config(&restapi).expect("server TLS").expect("certfile set");
        let kv = cluster(json!({})).await;
        let (tx, _rx) = mpsc::channel(8);
        let api = Api::new(replica_status().shared())
            .with_access(Access::from_config(&restapi).await)
            .with_operations(Ops::new(Box::new(KvStore::new(kv, keys())), tx));
        let listener = bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(super::serve_tls(listener, api, server));
        let url = format!("https://{addr}/patroni");
        let identified = Rest { auth: None, tls: identified.clone() };
        let a = post_raw(&url, "switchover", b"[", &identified).await.expect("answer");
        assert_eq!(a.status, 400, "{mode:?}: a client with a certificate passes the check");
        let a = post_raw(&url, "switchover", b"[", &Rest { auth: None, tls: anonymous.clone() }).await;
        match mode {
            VerifyClient::Required => {
                assert!(a.is_err(), "required: no handshake without a certificate: {a:?}")
            }
            _ => assert_eq!(a.map(|a| a.status), Ok(403), "optional: unsafe methods need a certificate"),
        }
    }
    let no_ca = RestApi { verify_client: Some(VerifyClient::Required), cafile: None, ..with_cert };
    let e = tls::server_config(&no_ca).expect_err("no CA for client certificates");
    assert!(e.starts_with("restapi.verify_client needs restapi.cafile"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn get_failsafe_answers_the_failsafe_key_or_502() {
    let kv = cluster(json!({})).await;
    let node = serve_kv(&kv).await;
    let a = call(node.addr, "GET", "/failsafe", "", None).await;
    assert_eq!((a.code, a.body.as_str()), (502, "failsafe topology unknown"));
    let topology = json!({"pg1": "http://10.0.0.1:8008/patroni", "pg2": "http://10.0.0.2:8008/patroni"});
    put(&kv, "failsafe", topology.clone()).await;
    let a = call(node.addr, "GET", "/failsafe", "", None).await;
    assert_eq!(a.code, 200);
    assert_eq!(serde_json::from_str::<Value>(&a.body).expect("JSON"), topology);
    let a = call(node.addr, "HEAD", "/failsafe", "", None).await;
    assert_eq!((a.code, a.body.as_str()), (200, ""));
}

#[tokio::test]
async fn garbage_bodies_on_every_unsafe_endpoint_answer_4xx_and_change_nothing() {
    let kv = cluster(json!({"ttl": 30})).await;
    let node = serve_kv(&kv).await;
    // No agent: a request that gets that far is answered 503.
    drop(node.agent);
    let bodies = [
        "",
        "null",
        "true",
        "42",
        "\"pg1\"",
        "[]",
        "{",
        "{\"leader\": \"pg1\"",
        "\u{feff}{}",
        "{\"leader\": [\"pg1\"]}",
        "{\"leader\": {\"name\": \"pg1\"}}",
        "{\"candidate\": 1e999}",
        "{\"scheduled_at\": 12}",
        "{\"leader\": \"pg1\", \"scheduled_at\": \"\u{0}\"}",
        "{\"timeout\": -1}",
        "{\"role\": null, \"postgres_version\": \"99999999999999999999.1\"}",
        "{\"ttl\": null, \"loop_wait\": \"x\"}",
        "{\"postgresql\": 7}",
        "{\"force\": 1}",
    ];
    // The dynamic config keeps keys it does not know (as Patroni): for
    // /config only bodies that are not objects or carry bad values.
    let config_bodies = &bodies[..9];
    let config_bodies =
        [config_bodies, &["{\"ttl\": null, \"loop_wait\": \"x\"}", "{\"postgresql\": 7}"]].concat();
    let endpoints = [
        ("POST", "/switchover", &bodies[..]),
        ("POST", "/failover", &bodies[..]),
        ("POST", "/restart", &bodies[..]),
        ("POST", "/reinitialize", &bodies[..]),
        ("PATCH", "/config", &config_bodies[..]),
        ("PUT", "/config", &config_bodies[..]),
    ];
    for (method, path, bodies) in endpoints {
        for &body in bodies {
            let a = call(node.addr, method, path, "", Some(body)).await;
            // Restart and reinitialize take an empty body, and
            // reinitialize ignores unknown keys (as Patroni): those reach
            // the (absent) agent, 503.
            assert!((400..600).contains(&a.code), "{method} {path} {body:?}: {} {}", a.code, a.body);
            assert!(!a.body.is_empty(), "{method} {path} {body:?}: a message");
        }
    }
    let invalid_utf8 = b"{\"leader\": \"\xff\xfe\"}";
    let mut stream = TcpStream::connect(node.addr).await.expect("connect");
    let head = format!(
        "POST /switchover HTTP/1.1\r\nHost: keel\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        invalid_utf8.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream.write_all(invalid_utf8).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("receive");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&raw));
    assert_eq!(get(&kv, "failover").await, None);
    assert_eq!(get(&kv, "config").await, Some(json!({"ttl": 30})));
    assert_eq!(call(node.addr, "GET", "/patroni", "", None).await.code, 200, "still serving");
}
