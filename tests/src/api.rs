//! Calls to a node's REST API with a method, headers and a JSON body, for
//! the operations tests (`api_code` asks for the status line only).

use std::time::Duration;

use crate::cluster::KeelCluster;

/// What a node answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiAnswer {
    pub code: u16,
    pub body: String,
}

impl KeelCluster {
    /// One request to `node`'s REST API over a fresh HTTP/1.1 connection:
    /// `headers` as `("Name", "value")`, `body` sent with its length.
    /// Answers within `timeout` (a switchover waits for its outcome).
    pub async fn api_call(
        &self,
        node: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<ApiAnswer, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = self.node(node).api_port;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream.write_all(head.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("{node}: {method} {path}: no answer within {timeout:?}"))?
            .map_err(|e| format!("{node}: {method} {path}: {e}"))?;
        let raw = String::from_utf8_lossy(&raw);
        let code = raw
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("{node}: {method} {path}: not an HTTP response: {raw:?}"))?;
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Ok(ApiAnswer { code, body })
    }
}
