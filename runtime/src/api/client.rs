//! keel's one HTTP/1.1 client for the members' REST APIs, used by the
//! agent (failsafe pings) and keelctl: one request per connection, plain
//! or TLS (with a client certificate when `api::tls` configures one), JSON
//! bodies, HTTP Basic auth, deadlines, and whether a request left at all.
//! hyper's client connection, as tonic and axum already use it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::config::Auth;

/// Largest answer read: Patroni's answers are a line or a small JSON.
const BODY_BYTES_MAX: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Why there is no answer. `NotSent`: the request never left (bad URL, no
/// connection, TLS refused), so nothing happened; `Lost`: it may have been
/// acted on.
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

/// `http[s]://host:port/<path>` on the member whose `api_url` (Patroni's
/// `http://host:port/patroni`) is given.
pub fn endpoint(api_url: &str, path: &str) -> Result<Uri, HttpError> {
    let bad = |why: &str| HttpError::NotSent(format!("api_url {api_url:?}: {why}"));
    let uri: Uri = api_url.parse().map_err(|_| bad("not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme,
        _ => return Err(bad("not an http:// or https:// URL")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    format!("{scheme}://{authority}/{}", path.trim_start_matches('/')).parse().map_err(|_| bad("not a URL"))
}

/// How keelctl talks to members: credentials for the unsafe endpoints and
/// the roots that `https` members are verified with.
#[derive(Clone, Default)]
pub struct Rest {
    pub auth: Option<Auth>,
    pub tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Rest {
    /// Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("user", &self.auth.as_ref().map(|a| a.username.as_str()))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Rest {
    /// One request; `timeout` bounds connecting (and the TLS handshake),
    /// then again sending and reading the answer.
    pub async fn request(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Answer, HttpError> {
        self.send(method, uri, body.map(|json| Bytes::from(json.to_string())), timeout).await
    }

    /// [`Self::request`] with a body of JSON already encoded (or, in
    /// tests, deliberately not JSON).
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, HttpError> {
        let not_sent = |why: String| HttpError::NotSent(format!("{uri}: {why}"));
        let host = uri.host().ok_or_else(|| not_sent("no host".into()))?.to_owned();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare_host = host.trim_matches(['[', ']']).to_owned();
        let connect = tokio::net::TcpStream::connect((bare_host.as_str(), port));
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(not_sent(format!("cannot connect: {e}"))),
            Err(_) => return Err(not_sent(format!("no connection within {timeout:?}"))),
        };
        let request = self.build(method.clone(), uri, &host, port, body).map_err(not_sent)?;
        let exchange = async {
            if !https {
                return exchange(TokioIo::new(stream), request, uri, &method).await;
            }
            let Some(tls) = self.tls.clone() else {
                return Err(not_sent(
                    "an https member, but no CA to verify it (ctl.cacert or restapi.cafile)".into(),
                ));
            };
            let name = ServerName::try_from(bare_host.clone()).map_err(|e| not_sent(e.to_string()))?;
            let stream = TlsConnector::from(tls)
                .connect(name, stream)
                .await
                .map_err(|e| not_sent(format!("TLS: {e}")))?;
            exchange(TokioIo::new(stream), request, uri, &method).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Lost(format!("{method} {uri}: no answer within {timeout:?}")))?
    }

    fn build(
        &self,
        method: Method,
        uri: &Uri,
        host: &str,
        port: u16,
        body: Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut builder =
            Request::builder().method(method).uri(uri.path()).header(HOST, format!("{host}:{port}"));
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, super::auth::header_value(auth));
        }
        let payload = match body {
            Some(json) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                json
            }
            None => Bytes::new(),
        };
        builder.body(Full::new(payload)).map_err(|e| e.to_string())
    }
}

async fn exchange<IO>(
    io: IO,
    request: Request<Full<Bytes>>,
    uri: &Uri,
    method: &Method,
) -> Result<Answer, HttpError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError::NotSent(format!("{uri}: {e}")))?;
    // The connection task ends with the exchange (one request, then closed).
    tokio::spawn(connection);
    let response =
        sender.send_request(request).await.map_err(|e| HttpError::Lost(format!("{method} {uri}: {e}")))?;
    let status = response.status().as_u16();
    let bytes = Limited::new(response.into_body(), BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| HttpError::Lost(format!("{method} {uri}: reading the answer: {e}")))?
        .to_bytes();
    Ok(Answer { status, body: String::from_utf8_lossy(&bytes).trim_end().to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_replaces_the_path_of_a_members_api_url() {
        let uri = endpoint("http://10.0.0.1:8008/patroni", "/switchover").unwrap();
        assert_eq!(uri.to_string(), "http://10.0.0.1:8008/switchover");
        assert_eq!(endpoint("https://a:1/patroni", "x").unwrap().to_string(), "https://a:1/x");
        assert!(matches!(endpoint("ftp://a:1/patroni", "x"), Err(HttpError::NotSent(_))));
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
        let rest =
            Rest { auth: Some(Auth { username: "admin".into(), password: "secret".into() }), tls: None };
        let body = serde_json::json!({"leader": "pg1", "candidate": "pg2"});
        let answer = rest.request(Method::POST, &uri, Some(&body), Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer, Answer { status: 200, body: "Successfully switched over to \"pg2\"".into() });
        let seen = server.await.unwrap();
        assert!(seen.starts_with("POST /switchover HTTP/1.1\r\n"), "{seen}");
        // base64("admin:secret")
        assert!(seen.contains("authorization: Basic YWRtaW46c2VjcmV0\r\n"), "{seen}");
        assert!(seen.ends_with(r#"{"candidate":"pg2","leader":"pg1"}"#), "{seen}");
    }

    #[tokio::test]
    async fn refused_connection_is_not_sent() {
        // Bound but not listening: connections are refused, and the port
        // stays ours while the test runs (a dropped listener's port may be
        // taken by a concurrent test's server meanwhile).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        let uri = endpoint(&format!("http://127.0.0.1:{port}/patroni"), "restart").unwrap();
        let err =
            Rest::default().request(Method::POST, &uri, None, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, HttpError::NotSent(_)), "{err:?}");
        drop(socket);
    }

    #[tokio::test]
    async fn https_members_are_verified_with_the_ca() {
        use crate::config::RestApi;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = std::env::temp_dir().join(format!("keelctl-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        crate::api::tests::make_certs(&dir);
        let restapi = RestApi {
            certfile: Some(dir.join("server.pem")),
            keyfile: Some(dir.join("server.key")),
            cafile: Some(dir.join("ca.pem")),
            ..RestApi::default()
        };
        let server = crate::api::tls::server_config(&restapi).unwrap().unwrap();
        let rest = Rest { auth: None, tls: crate::api::tls::client_config(&restapi).unwrap() };
        std::fs::remove_dir_all(&dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(server);
            // The unverified client below gives up before TLS; the next one talks.
            for _ in 0..2 {
                let (socket, _) = listener.accept().await.unwrap();
                let Ok(mut tls) = acceptor.accept(socket).await else { continue };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await.unwrap();
                let body = r#"{"state":"running","pause":true}"#;
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                tls.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
                tls.shutdown().await.unwrap();
            }
        });
        let uri = endpoint(&format!("https://127.0.0.1:{port}/patroni"), "patroni").unwrap();
        let err = Rest::default().request(Method::GET, &uri, None, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(&err, HttpError::NotSent(why) if why.contains("no CA to verify it")), "{err:?}");
        let answer = rest.request(Method::GET, &uri, None, Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer, Answer { status: 200, body: r#"{"state":"running","pause":true}"#.into() });
    }
}
