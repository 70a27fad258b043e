//! `restapi.authentication`: HTTP Basic on every unsafe method (Patroni's
//! `check_access`, step 3). GETs, HEADs and OPTIONS stay open, as HAProxy
//! checks them without credentials.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;

use super::body::text;
use crate::config::Auth;

/// Whether the method may change something (Patroni calls `check_access`
/// from its POST, PUT, PATCH and DELETE handlers).
pub fn is_unsafe(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// `None` when the request may go on; else the 401 to answer.
pub fn check(auth: Option<&Auth>, headers: &HeaderMap) -> Option<Response> {
    let auth = auth?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let matches = given.as_deref().and_then(|g| g.split_once(':')).is_some_and(|(user, password)| {
        // Both compared in full either way: no early exit on the user name.
        let user_ok = constant_time_eq(user.as_bytes(), auth.username.as_bytes());
        let password_ok = constant_time_eq(password.as_bytes(), auth.password.as_bytes());
        user_ok & password_ok
    });
    if matches {
        return None;
    }
    let mut response = text(StatusCode::UNAUTHORIZED, "no or wrong credentials (restapi.authentication)\n");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"keel\""));
    Some(response)
}

/// The `Authorization` value for `auth`, for keel's own calls to its peers
/// (Patroni's members authenticate to each other with their restapi
/// credentials).
pub fn header_value(auth: &Auth) -> String {
    let raw = format!("{}:{}", auth.username, auth.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}
