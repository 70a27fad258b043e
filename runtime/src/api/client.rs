//! keel's calls to its peers' REST APIs (the failsafe ping): one POST over
//! a fresh HTTP/1.1 connection, plain or TLS, within a deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

/// What a peer answered.
#[derive(Debug)]
pub struct Answered {
    pub code: u16,
    pub headers: HeaderMap,
}

/// POSTs `body` (JSON) to `path` on the host of `api_url` (a member's
/// published `http[s]://host:port/patroni`). `tls` verifies `https` peers;
/// without it an `https` URL is an error.
pub async fn post_json(
    api_url: &str,
    path: &str,
    body: Vec<u8>,
    authorization: Option<&str>,
    tls: Option<Arc<ClientConfig>>,
    deadline: Duration,
) -> Result<Answered, String> {
    tokio::time::timeout(deadline, post(api_url, path, body, authorization, tls))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", deadline.as_millis())))
}

async fn post(
    api_url: &str,
    path: &str,
    body: Vec<u8>,
    authorization: Option<&str>,
    tls: Option<Arc<ClientConfig>>,
) -> Result<Answered, String> {
    let uri: Uri = api_url.parse().map_err(|e| format!("api_url {api_url:?}: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("api_url {api_url:?}: neither http nor https")),
    };
    let authority = uri.authority().ok_or_else(|| format!("api_url {api_url:?}: no host"))?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("{authority}: {e}"))?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let request = request.body(Body::from(body)).map_err(|e| format!("request: {e}"))?;
    if https {
        let config =
            tls.ok_or_else(|| format!("{api_url}: https peer but no CA to verify it (restapi.cafile)"))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
        let stream = TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| format!("{authority}: TLS: {e}"))?;
        exchange(TokioIo::new(stream), request).await
    } else {
        exchange(TokioIo::new(stream), request).await
    }
}

async fn exchange<IO>(io: IO, request: Request<Body>) -> Result<Answered, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"));
    driver.abort();
    let response = response?;
    Ok(Answered { code: response.status().as_u16(), headers: response.headers().clone() })
}
