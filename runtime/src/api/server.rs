//! The HTTP server: one handler that maps the path to an endpoint, reads
//! the shared status under a read lock, and answers. GET gets the status
//! JSON; HEAD and OPTIONS only the status line (what HAProxy asks for).
//! The unsafe methods pass the authentication check first, then go to the
//! operations (`ops`, `config_edit`).

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{header, Extensions, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use hyper::service::{service_fn, Service};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::access::{url_host, Peer};
use super::body::BODY_BYTES_MAX;
use super::cluster::{cluster_json, config_json, history_json};
use super::health::{status_code, Endpoint, HealthQuery};
use super::json::status_json;
use super::metrics::{self, metrics_text};
use super::ops::{Api, Manual};
use super::status::SharedStatus;
use super::{auth, config_edit, ops};

/// Binds `restapi.listen` (`host:port`). The config accepts `*` as the
/// host, as for Postgres' `listen_addresses`: every IPv4 address.
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    match listen.strip_prefix("*:") {
        Some(port) => TcpListener::bind(format!("0.0.0.0:{port}")).await,
        None => TcpListener::bind(listen).await,
    }
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, api: Api) -> std::io::Result<()> {
    axum::serve(listener, router(api).into_make_service_with_connect_info::<SocketAddr>()).await
}

/// Serves the API over HTTPS (`restapi.certfile`): each connection's TLS
/// handshake runs in its own task, bounded, so that a slow or silent
/// client never holds up the others (HAProxy checks every few seconds).
pub async fn serve_tls(listener: TcpListener, api: Api, tls: Arc<ServerConfig>) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let service = Arc::new(TowerToHyperService::new(router(api)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait, then go on.
            Err(e) => {
                warn!("REST API: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_MAX, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return debug!(%peer, "REST API: TLS handshake failed: {e}"),
                Err(_) => return debug!(%peer, "REST API: TLS handshake timed out"),
            };
            // Who is calling, for the access check.
            let client_cert = stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            let conn = Peer { addr: peer, client_cert };
            let service = service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(conn);
                service.call(request)
            });
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                debug!(%peer, "REST API connection: {e}");
            }
        });
    }
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_MAX: Duration = Duration::from_secs(10);

pub fn router(api: Api) -> Router {
    Router::new().fallback(handle).layer(DefaultBodyLimit::max(BODY_BYTES_MAX)).with_state(api)
}

async fn handle(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
) -> Response {
    if auth::is_unsafe(&method) {
        let peer = extensions.get::<Peer>().copied().or_else(|| {
            extensions.get::<ConnectInfo<SocketAddr>>().map(|c| Peer { addr: c.0, client_cert: false })
        });
        if let Some(refused) = api.access().check(peer, &headers, member_hosts(&api.status)).await {
            return refused;
        }
        if let Some(response) = operation(&api, &method, uri.path(), &headers, &body).await {
            return response;
        }
    }
    if uri.path() == "/failsafe" && matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let response = ops::failsafe_members(&api).await;
        if method == Method::GET {
            return response;
        }
        let mut empty = Response::new(Body::empty());
        *empty.status_mut() = response.status();
        return empty;
    }
    let status = &api.status;
    if let Some(page) = Page::from_path(uri.path()) {
        return page_response(page, status, &method, &uri);
    }
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

/// The hosts of the members' API and Postgres addresses, from the last
/// DCS view (`allowlist_include_members`).
fn member_hosts(status: &SharedStatus) -> Vec<String> {
    let status = status.read().unwrap_or_else(PoisonError::into_inner);
    let Some(snap) = &status.snapshot else { return Vec::new() };
    let urls = snap.view.members.values().flat_map(|m| [m.api_url.as_str(), m.conn_url.as_str()]);
    let mut hosts: Vec<String> = urls.filter_map(url_host).collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The mutating endpoints (reference section 1.3); `None` for a path and
/// method that is not one of them.
async fn operation(
    api: &Api,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    Some(match (method.as_str(), path) {
        ("POST", "/switchover") => ops::manual(api, headers, body, Manual::Switchover).await,
        ("POST", "/failover") => ops::manual(api, headers, body, Manual::Failover).await,
        ("DELETE", "/switchover") => ops::cancel_switchover(api).await,
        ("POST", "/restart") => ops::restart(api, headers, body).await,
        ("DELETE", "/restart") => ops::cancel_restart(api),
        ("POST", "/reinitialize") => ops::reinitialize(api, headers, body).await,
        ("POST", "/reload") => ops::reload(api).await,
        ("POST", "/failsafe") => ops::failsafe(api, headers, body).await,
        ("PATCH", "/config") => config_edit::patch(api, headers, body).await,
        ("PUT", "/config") => config_edit::put(api, headers, body).await,
        _ => return None,
    })
}

/// The endpoints that show the cluster or the node rather than check
/// health (reference section 1.2). They take no query parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Cluster,
    History,
    Config,
    Metrics,
}

impl Page {
    fn from_path(path: &str) -> Option<Page> {
        Some(match path {
            "/cluster" => Page::Cluster,
            "/history" => Page::History,
            "/config" => Page::Config,
            "/metrics" => Page::Metrics,
            _ => return None,
        })
    }
}

/// A page from the shared status. Before the agent's first DCS read there
/// is no view: `/cluster` and `/history` answer 503; `/config` answers
/// 502 without a valid `config` key, as Patroni.
fn page_response(page: Page, status: &SharedStatus, method: &Method, uri: &Uri) -> Response {
    if method != Method::GET && method != Method::HEAD && method != Method::OPTIONS {
        return text(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not served on {}\n", uri.path()));
    }
    let now = Instant::now();
    let status = status.read().unwrap_or_else(PoisonError::into_inner);
    let (code, content_type, body) = match page {
        Page::Cluster => match cluster_json(&status) {
            Some(json) => (StatusCode::OK, JSON, json.to_string().into_bytes()),
            None => (StatusCode::SERVICE_UNAVAILABLE, TEXT, b"no DCS view yet\n".to_vec()),
        },
        Page::History => match history_json(&status) {
            Some(body) => (StatusCode::OK, JSON, body),
            None => (StatusCode::SERVICE_UNAVAILABLE, TEXT, b"no DCS view yet\n".to_vec()),
        },
        Page::Config => match config_json(&status) {
            Some(json) => (StatusCode::OK, JSON, json.to_string().into_bytes()),
            None => (StatusCode::BAD_GATEWAY, TEXT, b"no valid config in the DCS view\n".to_vec()),
        },
        Page::Metrics => (StatusCode::OK, metrics::CONTENT_TYPE, metrics_text(&status, now).into_bytes()),
    };
    drop(status);
    let mut response = Response::builder().status(code);
    if *method != Method::GET {
        return response.body(Body::empty()).unwrap_or_else(|_| Response::new(Body::empty()));
    }
    response = response.header(header::CONTENT_TYPE, content_type);
    response.body(Body::from(body)).unwrap_or_else(|_| Response::new(Body::empty()))
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

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

    use keel_core::dcs::LeaderKey;
    use keel_core::{
        ClusterView, Member, MemberRole, MemberState, Standby, StandbySyncState, Tags, TimelineSwitch,
    };
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::super::status::{NodeStatus, ReplicationState};
    use super::*;
    use crate::config::dynamic_from_json;
    use crate::dcs::codec::HistoryEntry;
    use crate::dcs::patroni::Snapshot;

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
        tokio::spawn(serve(listener, Api::new(shared.clone())));
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
        s.leader_changes = 1;
        s.snapshot = Some(snapshot());
        s
    }

    /// pg1 leads; pg2 trails it by 96 bytes; one switch to timeline 2.
    fn snapshot() -> Snapshot {
        let member = |role, lsn, port: u16| Member {
            role,
            state: MemberState::Running,
            timeline: 2,
            lsn,
            tags: Tags::new(),
            api_url: format!("http://127.0.0.1:{port}/patroni"),
            conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
        };
        let mut view = ClusterView {
            leader: Some(LeaderKey { name: "pg1".into(), revision: 3 }),
            optime_lsn: Some(67_108_960),
            ..ClusterView::default()
        };
        view.members.insert("pg1".into(), member(MemberRole::Primary, 67_108_960, 5432));
        view.members.insert("pg2".into(), member(MemberRole::Replica, 67_108_864, 5433));
        let history = vec![HistoryEntry {
            switch: TimelineSwitch { timeline: 1, fork_lsn: 50_331_808, new_leader: Some("pg1".into()) },
            reason: "no recovery target specified".into(),
            timestamp: Some("2024-01-01T00:00:00+00:00".into()),
        }];
        let stored = br#"{"ttl": 30, "loop_wait": 10}"#;
        let config = dynamic_from_json(stored).expect("config");
        let config_stored = serde_json::from_slice(stored).ok();
        Snapshot { view, config: Some(config), config_stored, history, ..Snapshot::default() }
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
                ("/cluster", 200),
                ("/history", 200),
                ("/config", 200),
                ("/metrics", 200),
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

        let (_, body) = request(addr, "GET", "/cluster").await;
        let json: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["scope"], "demo");
        assert_eq!(json["members"][0]["name"], "pg1");
        assert_eq!(json["members"][0]["role"], "leader");
        assert_eq!(json["members"][0]["host"], "127.0.0.1");
        assert_eq!(json["members"][0]["port"], 5432);
        assert_eq!(json["members"][1]["name"], "pg2");
        assert_eq!(json["members"][1]["role"], "replica");
        assert_eq!(json["members"][1]["lag"], 96);
        let (_, body) = request(addr, "GET", "/history").await;
        let json: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!([[
                1,
                50_331_808,
                "no recovery target specified",
                "2024-01-01T00:00:00+00:00",
                "pg1"
            ]])
        );
        let (_, body) = request(addr, "GET", "/config").await;
        let json: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["ttl"], 30);
        assert_eq!(json["loop_wait"], 10);
        let (_, body) = request(addr, "GET", "/metrics").await;
        assert!(body.contains("patroni_primary{scope=\"demo\",name=\"pg1\"} 1\n"), "{body}");
        assert!(body.contains("keel_leader_changes_total{scope=\"demo\",name=\"pg1\"} 1\n"), "{body}");
        assert!(body.contains("keel_last_decision_info{"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn cluster_and_history_answer_503_and_config_502_without_a_dcs_view() {
        let mut s = primary(Duration::from_secs(20));
        s.snapshot = None;
        let (addr, shared) = serve_status(s).await;
        for method in ["GET", "HEAD", "OPTIONS"] {
            for (path, code) in [("/cluster", 503), ("/history", 503), ("/config", 502), ("/metrics", 200)] {
                assert_eq!(request(addr, method, path).await.0, code, "{method} {path}");
            }
        }
        assert_eq!(request(addr, "POST", "/config").await.0, 405);
        // A view whose config key is missing or invalid: still 502.
        let mut snap = snapshot();
        snap.config = None;
        shared.write().expect("lock").snapshot = Some(snap);
        assert_eq!(request(addr, "GET", "/config").await.0, 502);
        assert_eq!(request(addr, "GET", "/cluster").await.0, 200);
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
