//! The HTTP server: one handler that maps the path to an endpoint, reads
//! the shared status under a read lock, and answers. GET gets the status
//! JSON; HEAD and OPTIONS only the status line (what HAProxy asks for).

use std::sync::PoisonError;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::health::{status_code, Endpoint, HealthQuery};
use super::json::status_json;
use super::status::SharedStatus;

/// Binds `restapi.listen` (`host:port`). The config accepts `*` as the
/// host, as for Postgres' `listen_addresses`: every IPv4 address.
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    match listen.strip_prefix("*:") {
        Some(port) => TcpListener::bind(format!("0.0.0.0:{port}")).await,
        None => TcpListener::bind(listen).await,
    }
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, status: SharedStatus) -> std::io::Result<()> {
    axum::serve(listener, router(status)).await
}

pub fn router(status: SharedStatus) -> Router {
    Router::new().fallback(handle).with_state(status)
}

async fn handle(State(status): State<SharedStatus>, method: Method, uri: Uri) -> Response {
    let Some(endpoint) = Endpoint::from_path(uri.path()) else {
        return text(StatusCode::NOT_FOUND, format!("no such endpoint: {}\n", uri.path()));
    };
    if method != Method::GET && method != Method::HEAD && method != Method::OPTIONS {
        return text(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not served on {}\n", uri.path()));
    }
    let pairs = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(pairs)) => pairs,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let query = match HealthQuery::parse(&pairs) {
        Ok(query) => query,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let now = Instant::now();
    // A writer that panicked left plain data behind: still worth reading.
    let status = status.read().unwrap_or_else(PoisonError::into_inner);
    let code = status_code(endpoint, &status, &query, now);
    let body = (method == Method::GET && !endpoint.status_only()).then(|| status_json(&status, now));
    drop(status);
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::builder().status(code);
    let body = match body {
        Some(json) => {
            response = response.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    response.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn text(code: StatusCode, message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::Duration;

    use keel_core::{MemberRole, MemberState, Standby, StandbySyncState};
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::super::status::{NodeStatus, ReplicationState};
    use super::*;

    /// One request over a fresh connection: the status code and the body.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!("{method} {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("receive");
        let raw = String::from_utf8(raw).expect("utf-8");
        let code = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{raw:?}"));
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (code, body)
    }

    async fn serve_status(status: NodeStatus) -> (SocketAddr, SharedStatus) {
        let listener = bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shared = status.shared();
        tokio::spawn(serve(listener, shared.clone()));
        (addr, shared)
    }

    fn primary(lease_left: Duration) -> NodeStatus {
        let now = Instant::now();
        let mut s = NodeStatus::new("pg1", "demo", BTreeMap::from([("zone".into(), Value::from("a"))]));
        s.role = MemberRole::Primary;
        s.state = MemberState::Running;
        s.running_primary = true;
        s.timeline = 2;
        s.write_lsn = 67_108_960;
        s.lease_deadline = Some(now + lease_left);
        s.view_valid_until = Some(now + Duration::from_secs(30));
        s.liveness_deadline = Some(now + Duration::from_secs(30));
        s.leader = Some("pg1".into());
        s.dcs_last_seen_s = 1_700_000_000;
        s.server_version = 150_018;
        s.system_id = Some(7_300_000_000_000_000_001);
        s.last_reason = "holds the lease".into();
        s.replication = vec![Standby {
            name: "pg2".into(),
            streaming: true,
            sync_state: StandbySyncState::Sync,
            flush_lsn: 67_108_960,
            reply_age_ms: 10,
        }];
        s
    }

    #[tokio::test]
    async fn get_head_and_options_answer_with_patroni_codes_and_fields() {
        let (addr, _shared) = serve_status(primary(Duration::from_secs(20))).await;
        for method in ["GET", "HEAD", "OPTIONS"] {
            for (path, code) in [
                ("/", 200),
                ("/primary", 200),
                ("/master", 200),
                ("/read-write", 200),
                ("/leader", 200),
                ("/replica", 503),
                ("/read-only", 200),
                ("/standby-leader", 503),
                ("/synchronous", 503),
                ("/sync", 503),
                ("/asynchronous", 503),
                ("/async", 503),
                ("/health", 200),
                ("/health?tag_zone=a", 200),
                ("/health?tag_zone=b", 503),
                ("/liveness", 200),
                ("/readiness", 200),
                ("/patroni", 200),
                ("/replica?lag=64MB&replication_state=streaming", 503),
                ("/replica?replication_state=in%20archive%20recovery", 503),
                ("/replica?lag=abc", 400),
                ("/nope", 404),
            ] {
                let (got, body) = request(addr, method, path).await;
                assert_eq!(got, code, "{method} {path}: {body}");
                if method != "GET" && code != 400 && code != 404 {
                    assert_eq!(body, "", "{method} {path}: the status line only");
                }
            }
        }
        let (code, body) = request(addr, "GET", "/replica?lag=abc").await;
        assert_eq!(code, 400);
        assert!(body.contains("lag=\"abc\""), "{body}");
        let (code, _) = request(addr, "POST", "/primary").await;
        assert_eq!(code, 405);

        let (code, body) = request(addr, "GET", "/patroni").await;
        assert_eq!(code, 200);
        let json: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["state"], "running");
        assert_eq!(json["role"], "primary");
        assert_eq!(json["server_version"], 150_018);
        assert_eq!(json["xlog"]["location"], 67_108_960);
        assert_eq!(json["timeline"], 2);
        assert_eq!(json["dcs_last_seen"], 1_700_000_000);
        assert_eq!(json["tags"]["zone"], "a");
        assert_eq!(json["database_system_identifier"], "7300000000000000001");
        assert_eq!(json["patroni"]["scope"], "demo");
        assert_eq!(json["patroni"]["name"], "pg1");
        assert_eq!(json["patroni"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(json["replication"][0]["application_name"], "pg2");
        assert_eq!(json["replication"][0]["state"], "streaming");
        assert_eq!(json["replication"][0]["sync_state"], "sync");
        for absent in ["replication_state", "sync_standby", "pause", "cluster_unlocked"] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }
        let (_, primary_body) = request(addr, "GET", "/primary").await;
        assert_eq!(serde_json::from_str::<Value>(&primary_body).expect("JSON")["role"], "primary");
        let (_, liveness_body) = request(addr, "GET", "/liveness").await;
        assert_eq!(liveness_body, "", "liveness answers with the status line only");
    }

    #[tokio::test]
    async fn replica_json_has_received_and_replayed_locations() {
        let mut s = primary(Duration::ZERO);
        s.role = MemberRole::Replica;
        s.running_primary = false;
        s.in_recovery = true;
        s.lease_deadline = None;
        s.receive_lsn = 300;
        s.replay_lsn = 200;
        s.replication_state = Some(ReplicationState::Streaming);
        s.replication.clear();
        s.sync_standby = true;
        s.paused = true;
        s.leader = None;
        let (addr, _shared) = serve_status(s).await;
        let (code, body) = request(addr, "GET", "/replica").await;
        assert_eq!(code, 200, "{body}");
        let json: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["role"], "replica");
        assert_eq!(json["xlog"]["received_location"], 300);
        assert_eq!(json["xlog"]["replayed_location"], 200);
        assert!(json["xlog"].get("location").is_none(), "{json}");
        assert_eq!(json["replication_state"], "streaming");
        assert_eq!(json["sync_standby"], true);
        assert_eq!(json["pause"], true);
        assert_eq!(json["cluster_unlocked"], true);
        assert!(json.get("replication").is_none(), "{json}");
        for (path, code) in [
            ("/sync", 200),
            ("/async", 503),
            ("/primary", 503),
            ("/replica?lag=100", 200),
            ("/replica?lag=99", 503),
        ] {
            assert_eq!(request(addr, "OPTIONS", path).await.0, code, "{path}");
        }
    }

    #[tokio::test]
    async fn primary_answers_503_once_its_lease_deadline_passes_with_nothing_else_changed() {
        let (addr, shared) = serve_status(primary(Duration::from_millis(300))).await;
        assert_eq!(request(addr, "OPTIONS", "/primary").await.0, 200);
        assert_eq!(request(addr, "HEAD", "/leader").await.0, 200);
        let before = shared.read().expect("lock").clone();
        tokio::time::sleep(Duration::from_millis(400)).await;
        for method in ["GET", "HEAD", "OPTIONS"] {
            for path in ["/", "/primary", "/read-write", "/leader"] {
                assert_eq!(request(addr, method, path).await.0, 503, "{method} {path}");
            }
        }
        assert_eq!(*shared.read().expect("lock"), before, "the status itself did not change");
        assert_eq!(request(addr, "GET", "/health").await.0, 200, "Postgres still runs");
        assert_eq!(request(addr, "GET", "/patroni").await.0, 200);
    }
}
