//! `PATCH /config` and `PUT /config`: change the dynamic configuration in
//! etcd. Patroni writes whatever it is sent; keel first checks the result
//! as the agent will read it (`config::dynamic_from_json`), so an invalid
//! config is a 400 with the reason and nothing is written.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::body::{self, json, refusal, Refusal};
use super::ops::Api;
use crate::config::dynamic_from_json;
use crate::dcs::{Compare, Op};

/// `PATCH /config`: an RFC 7396 merge patch (`null` deletes) over the
/// stored value, written with a compare-and-swap on the key's revision
/// (409 when someone wrote it meanwhile; 503 when it is missing).
pub async fn patch(api: &Api, headers: &HeaderMap, raw: &[u8]) -> Response {
    let run = async {
        let ops = api.ops_or_503()?;
        let request = body::object(headers, raw, false)?;
        let key = ops.store.keys().config();
        let stored = ops.store.get(key.clone()).await.map_err(|e| {
            refusal(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the config key: {e}"))
        })?;
        let Some(stored) = stored else {
            return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, "the config key does not exist yet"));
        };
        // A stored value that is not an object (garbled by hand) is
        // patched as if empty, as Patroni's `ClusterConfig` reads it.
        let mut data = match serde_json::from_slice::<Value>(&stored.value) {
            Ok(v @ Value::Object(_)) => v,
            _ => Value::Object(Default::default()),
        };
        let before = data.clone();
        merge_patch(&mut data, &Value::Object(request));
        let bytes = valid_bytes(&data)?;
        if data != before {
            let compare = Compare::ModRevision { key: key.clone(), revision: stored.mod_revision };
            let put = Op::Put { key, value: bytes, lease: 0 };
            match ops.store.txn(vec![compare], vec![put]).await {
                Ok(true) => {}
                Ok(false) => {
                    let message = "the config key changed since it was read; nothing written, try again";
                    return Err(refusal(StatusCode::CONFLICT, message));
                }
                Err(e) => {
                    return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, format!("cannot write config: {e}")))
                }
            }
        }
        Ok(json(StatusCode::OK, &data))
    };
    run.await.unwrap_or_else(Refusal::into_response)
}

/// `PUT /config`: the whole dynamic configuration, written as sent (no
/// compare-and-swap, as Patroni); 502 when the write fails.
pub async fn put(api: &Api, headers: &HeaderMap, raw: &[u8]) -> Response {
    let run = async {
        let ops = api.ops_or_503()?;
        let request = Value::Object(body::object(headers, raw, false)?);
        let bytes = valid_bytes(&request)?;
        let key = ops.store.keys().config();
        let stored = ops.store.get(key.clone()).await.ok().flatten();
        let same = stored
            .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .is_some_and(|v| v == request);
        if !same {
            let put = Op::Put { key, value: bytes, lease: 0 };
            if let Err(e) = ops.store.txn(Vec::new(), vec![put]).await {
                return Err(refusal(StatusCode::BAD_GATEWAY, format!("cannot write config: {e}")));
            }
        }
        Ok(json(StatusCode::OK, &request))
    };
    run.await.unwrap_or_else(Refusal::into_response)
}

/// The compact JSON of `data`, if the agent would accept it.
fn valid_bytes(data: &Value) -> Result<Vec<u8>, Refusal> {
    let bytes = data.to_string().into_bytes();
    match dynamic_from_json(&bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => Err(refusal(StatusCode::BAD_REQUEST, format!("invalid config, nothing written: {e}"))),
    }
}

/// RFC 7396: objects merge key by key, `null` deletes, anything else
/// replaces (Patroni's `patch_config` does the same).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}
