//! Request bodies and answers of the mutating endpoints. Patroni reads
//! every body as a JSON object (`_read_json_content`): no `Content-Length`
//! is 411 unless the body is optional, anything but an object is 400, and
//! so is an empty object where a body is required. keel says why in the
//! answer; nothing is changed.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

pub(crate) use crate::dcs::codec::kind;

/// Largest body read; Patroni's requests are a few hundred bytes, a full
/// dynamic config a few kilobytes.
pub const BODY_BYTES_MAX: usize = 1 << 20;

pub type Object = Map<String, Value>;

/// The body as a JSON object. `optional`: a missing or empty body is `{}`.
pub fn object(headers: &HeaderMap, body: &[u8], optional: bool) -> Result<Object, Refusal> {
    if !headers.contains_key(header::CONTENT_LENGTH) && body.is_empty() {
        if optional {
            return Ok(Object::new());
        }
        return Err(refusal(StatusCode::LENGTH_REQUIRED, "a JSON body with a Content-Length is required"));
    }
    if body.is_empty() && optional {
        return Ok(Object::new());
    }
    if body.len() > BODY_BYTES_MAX {
        return Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {BODY_BYTES_MAX} bytes"),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if !map.is_empty() || optional => Ok(map),
        Ok(Value::Object(_)) => Err(refusal(StatusCode::BAD_REQUEST, "the JSON object is empty")),
        Ok(other) => {
            Err(refusal(StatusCode::BAD_REQUEST, format!("expected a JSON object, found {}", kind(&other))))
        }
        Err(e) => Err(refusal(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"))),
    }
}

/// A string field; absent, null and `""` are `None` (Patroni tests
/// truthiness). Any other type is a 400.
pub fn opt_string(map: &Object, key: &str) -> Result<Option<String>, Refusal> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => {
            Err(refusal(StatusCode::BAD_REQUEST, format!("{key} must be a string, not {}", kind(other))))
        }
    }
}

/// A boolean field (`force`, `from_leader`); absent is false.
pub fn opt_bool(map: &Object, key: &str) -> Result<bool, Refusal> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => {
            Err(refusal(StatusCode::BAD_REQUEST, format!("{key} must be a boolean, not {}", kind(other))))
        }
    }
}

/// An answer that ends a request early (a bad body, a failed check).
/// Boxed: a `Response` is large to carry in every `Result`.
#[derive(Debug)]
pub struct Refusal(Box<Response>);

impl Refusal {
    pub fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Refusal {
    fn from(response: Response) -> Refusal {
        Refusal(Box::new(response))
    }
}

/// A plain-text refusal.
pub fn refusal(code: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal::from(text(code, message))
}

/// A plain-text answer.
pub fn text(code: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

pub fn json(code: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
