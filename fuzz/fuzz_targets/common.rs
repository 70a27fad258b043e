//! What several targets share (each uses part of it).

#![allow(dead_code)]

use serde_json::Value;

/// Equal, except that floats may differ in their last bits: without its
/// `float_roundtrip` feature, serde_json parses some long decimals one ulp
/// off, so a float can move slightly on each read. Integers must match.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => same_map(xs, ys),
        _ => a == b,
    }
}

/// [`same`] for two JSON objects (serde_json's maps are sorted by key).
pub fn same_map(a: &serde_json::Map<String, Value>, b: &serde_json::Map<String, Value>) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((ka, x), (kb, y))| ka == kb && same(x, y))
}
