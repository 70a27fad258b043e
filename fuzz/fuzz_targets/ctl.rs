//! Arbitrary operator input into `keelctl edit-config`'s readers
//! (`keel_runtime::ctl::edit`): `--set KEY=VALUE`, `--pg NAME=VALUE` and
//! the YAML of `--apply`/`--replace`/the editor. Each answers a change or
//! one error line, never a panic; a change applied sets (or deletes)
//! exactly its path, and keelctl's merge of a YAML patch is the REST API's
//! `PATCH /config` merge (both are Patroni's `patch_config`).

#![no_main]

use arbitrary::Arbitrary;
use keel_runtime::api::config_edit::merge_patch;
use keel_runtime::ctl::edit::{self, Change};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

#[derive(Arbitrary, Debug)]
struct Input {
    set: String,
    pg: String,
    patch: String,
    /// The configuration edited: JSON, as keelctl reads it from etcd.
    config: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let config = match serde_json::from_slice::<Value>(&input.config) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if let Ok(change) = edit::parse_set(&input.set) {
        assert!(!change.path.is_empty() && change.path.iter().all(|p| !p.is_empty()), "{change:?}");
        applies(&config, &change);
    }
    if let Ok(change) = edit::parse_pg(&input.pg) {
        assert_eq!(change.path[..2], ["postgresql", "parameters"]);
        assert_eq!(change.path.len(), 3);
        applies(&config, &change);
    }
    if let Ok(patch) = edit::parse_patch(&input.patch, "fuzz") {
        let mut merged = config.clone();
        edit::merge(&mut merged, &patch);
        let mut rest = Value::Object(config.clone());
        merge_patch(&mut rest, &Value::Object(patch.clone()));
        assert_eq!(Value::Object(merged.clone()), rest, "keelctl and the REST API merge differently");
        let once = merged.clone();
        edit::merge(&mut merged, &patch);
        assert_eq!(merged, once, "a patch applied twice differs from once");
    }
    let before = String::from_utf8_lossy(&input.config);
    assert_eq!(edit::diff(&before, &input.patch).is_empty(), before == input.patch);
});

/// After the change, its path holds its value (or is gone), and applying
/// it again changes nothing.
fn applies(config: &Map<String, Value>, change: &Change) {
    let mut after = config.clone();
    edit::apply(&mut after, change);
    let mut at = Some(&after);
    let (last, parents) = change.path.split_last().expect("a path is never empty");
    for key in parents {
        at = at.and_then(|m| m.get(key)).and_then(Value::as_object);
    }
    assert_eq!(at.and_then(|m| m.get(last)), change.value.as_ref(), "{change:?} on {config:?}");
    let once = after.clone();
    edit::apply(&mut after, change);
    assert_eq!(after, once, "{change:?} applied twice differs from once");
}
