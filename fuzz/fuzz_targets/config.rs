//! Feeds arbitrary text to the YAML loader and arbitrary bytes to the reader
//! of etcd's `config` key. Neither may panic, whatever arrives; and dynamic
//! settings that were accepted must read back the same after keel writes
//! them, since keel writes what it read back to etcd.

#![no_main]

use std::collections::BTreeMap;

use keel_runtime::config::{dynamic_from_json, parse};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(settings) = dynamic_from_json(data) {
        let _ = settings.to_core();
        let written = serde_json::to_value(&settings).expect("dynamic settings always serialize");
        let reread = dynamic_from_json(written.to_string().as_bytes()).expect("what keel writes, keel reads");
        let rewritten = serde_json::to_value(&reread).expect("dynamic settings always serialize");
        assert!(same(&written, &rewritten), "a write and read changed the settings:\n{written}\n{rewritten}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(loaded) = parse(text, &BTreeMap::new()) {
            let _ = loaded.config.bootstrap.dcs.to_core();
            let _ = loaded.config.tags.to_core();
        }
    }
});

/// Equal, except that floats may differ in their last bits: without its
/// `float_roundtrip` feature, serde_json parses some long decimals one ulp
/// off, so a float can move slightly on each read. Integers must match.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|((kx, x), (ky, y))| kx == ky && same(x, y))
        }
        _ => a == b,
    }
}
