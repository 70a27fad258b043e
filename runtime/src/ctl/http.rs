//! A small HTTP/1.1 client for the members' REST API: one request per
//! connection, JSON bodies, HTTP Basic auth, a deadline on the whole
//! exchange. hyper's client connection, as tonic and axum already use it.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::config::Auth;

/// Largest answer read: Patroni's answers are a line or a small JSON.
const BODY_BYTES_MAX: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Why there is no answer. `NotSent`: the request never left (bad URL, no
/// connection), so nothing happened; `Lost`: it may have been acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    NotSent(String),
    Lost(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::NotSent(why) | HttpError::Lost(why) => f.write_str(why),
        }
    }
}

/// `http://host:port/<path>` on the member whose `api_url` (Patroni's
/// `http://host:port/patroni`) is given.
pub fn endpoint(api_url: &str, path: &str) -> Result<Uri, HttpError> {
    let bad = |why: &str| HttpError::NotSent(format!("api_url {api_url:?}: {why}"));
    let uri: Uri = api_url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("HTTPS to the REST API is not supported by keelctl yet")),
        _ => return Err(bad("not an http:// URL")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    format!("http://{authority}/{}", path.trim_start_matches('/')).parse().map_err(|_| bad("not a URL"))
}

/// One request; `timeout` bounds connecting, sending and reading the answer.
pub async fn request(
    method: Method,
    uri: &Uri,
    body: Option<&Value>,
    auth: Option<&Auth>,
    timeout: Duration,
) -> Result<Answer, HttpError> {
    let host = uri.host().ok_or_else(|| HttpError::NotSent(format!("{uri}: no host")))?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port));
    let stream = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(HttpError::NotSent(format!("{uri}: cannot connect: {e}"))),
        Err(_) => return Err(HttpError::NotSent(format!("{uri}: no connection within {timeout:?}"))),
    };
    let mut builder =
        Request::builder().method(method.clone()).uri(uri.path()).header(HOST, format!("{host}:{port}"));
    if let Some(auth) = auth {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", auth.username, auth.password));
        builder = builder.header(AUTHORIZATION, format!("Basic {token}"));
    }
    let payload = match body {
        Some(json) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    let request = builder.body(Full::new(payload)).map_err(|e| HttpError::NotSent(format!("{uri}: {e}")))?;
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::NotSent(format!("{uri}: {e}")))?;
        // The connection task ends with the exchange (one request, then closed).
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| HttpError::Lost(format!("{method} {uri}: {e}")))?;
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| HttpError::Lost(format!("{method} {uri}: reading the answer: {e}")))?
            .to_bytes();
        Ok(Answer { status, body: String::from_utf8_lossy(&bytes).trim_end().to_owned() })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Lost(format!("{method} {uri}: no answer within {timeout:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_replaces_the_path_of_a_members_api_url() {
        let uri = endpoint("http://10.0.0.1:8008/patroni", "/switchover").unwrap();
        assert_eq!(uri.to_string(), "http://10.0.0.1:8008/switchover");
        assert!(matches!(endpoint("https://a:1/patroni", "x"), Err(HttpError::NotSent(_))));
        assert!(matches!(endpoint("", "x"), Err(HttpError::NotSent(_))));
        assert!(matches!(endpoint("not a url", "x"), Err(HttpError::NotSent(_))));
    }

    #[tokio::test]
    async fn request_sends_json_and_basic_auth_and_reads_the_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.ends_with(b"}") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "request ended early: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
            let answer = "Successfully switched over to \"pg2\"";
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", answer.len());
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        let uri = endpoint(&format!("http://127.0.0.1:{port}/patroni"), "switchover").unwrap();
        let auth = Auth { username: "admin".into(), password: "secret".into() };
        let body = serde_json::json!({"leader": "pg1", "candidate": "pg2"});
        let answer =
            request(Method::POST, &uri, Some(&body), Some(&auth), Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer, Answer { status: 200, body: "Successfully switched over to \"pg2\"".into() });
        let seen = server.await.unwrap();
        assert!(seen.starts_with("POST /switchover HTTP/1.1\r\n"), "{seen}");
        // base64("admin:secret")
        assert!(seen.contains("authorization: Basic YWRtaW46c2VjcmV0\r\n"), "{seen}");
        assert!(seen.ends_with(r#"{"candidate":"pg2","leader":"pg1"}"#), "{seen}");
    }

    #[tokio::test]
    async fn refused_connection_is_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let uri = endpoint(&format!("http://127.0.0.1:{port}/patroni"), "restart").unwrap();
        let err = request(Method::POST, &uri, None, None, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, HttpError::NotSent(_)), "{err:?}");
    }
}
