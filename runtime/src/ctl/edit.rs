//! `edit-config`'s edits, as patronictl makes them (`apply_config_changes`,
//! `patch_config`): `--set a.b=v` sets a dotted path, `--pg p=v` a
//! PostgreSQL parameter, `--apply` merges a YAML document; an empty or
//! null value deletes. Values are YAML (`40` a number, `on` a boolean).

use serde_json::{Map, Value};

use super::{fail, CtlError};

/// One `KEY=VALUE` edit: the path and the value (`None` deletes).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub path: Vec<String>,
    pub value: Option<Value>,
}

/// `--set ttl=40`: a dotted path. PostgreSQL parameters may hold dots
/// (`auto_explain.log_min_duration`): under `postgresql.parameters` the
/// rest of the path is one name, as patronictl reads it.
pub fn parse_set(text: &str) -> Result<Change, CtlError> {
    let (key, value) = split_pair(text, "--set")?;
    let mut path: Vec<String> = key.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        fail!("--set {text:?}: empty part in the key {key:?}");
    }
    if path.len() > 2 && path[0] == "postgresql" && path[1] == "parameters" {
        let name = path[2..].join(".");
        path.truncate(2);
        path.push(name);
    }
    Ok(Change { path, value: parse_value(value, text)? })
}

/// `--pg max_connections=200`: `postgresql.parameters.max_connections`.
pub fn parse_pg(text: &str) -> Result<Change, CtlError> {
    let (name, value) = split_pair(text, "--pg")?;
    let path = vec!["postgresql".to_owned(), "parameters".to_owned(), name.to_owned()];
    Ok(Change { path, value: parse_value(value, text)? })
}

fn split_pair<'a>(text: &'a str, flag: &str) -> Result<(&'a str, &'a str), CtlError> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value)),
        _ => fail!("{flag} {text:?}: expected KEY=VALUE"),
    }
}

fn parse_value(value: &str, text: &str) -> Result<Option<Value>, CtlError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    match serde_saphyr::from_str::<Value>(value) {
        Ok(Value::Null) => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            fail!("{text:?}: the value is not YAML: {}", e.to_string().lines().next().unwrap_or_default())
        }
    }
}

/// Applies one change; intermediate mappings are created, and mappings left
/// empty by a deletion go too (patronictl's `set_path_value`).
pub fn apply(config: &mut Map<String, Value>, change: &Change) {
    set_path(config, &change.path, change.value.as_ref());
}

fn set_path(map: &mut Map<String, Value>, path: &[String], value: Option<&Value>) {
    let Some((key, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        match value {
            Some(v) => {
                map.insert(key.clone(), v.clone());
            }
            None => {
                map.remove(key);
            }
        }
        return;
    }
    if value.is_none() && !map.get(key).is_some_and(Value::is_object) {
        return;
    }
    let child = map.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    if let Value::Object(inner) = child {
        set_path(inner, rest, value);
        if inner.is_empty() {
            map.remove(key);
        }
    }
}

/// `--apply`: merges `patch` into `config` recursively; null deletes
/// (patronictl's `patch_config`, a JSON merge patch).
pub fn merge(config: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                config.remove(key);
            }
            Value::Object(inner) => {
                let slot = config.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(target) = slot {
                    merge(target, inner);
                }
            }
            other => {
                config.insert(key.clone(), other.clone());
            }
        }
    }
}

/// Reads `--apply`'s YAML document: a mapping.
pub fn parse_patch(yaml: &str, source: &str) -> Result<Map<String, Value>, CtlError> {
    match serde_saphyr::from_str::<Value>(yaml) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => fail!("{source}: expected a YAML mapping"),
        Err(e) => fail!("{source}: invalid YAML: {}", e.to_string().lines().next().unwrap_or_default()),
    }
}

/// A unified diff of two YAML renderings; empty when they are equal.
pub fn diff(before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header("before", "after")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn set_values_are_yaml_and_dotted_paths_nest() {
        assert_eq!(parse_set("ttl=40").unwrap(), Change { path: vec!["ttl".into()], value: Some(json!(40)) });
        assert_eq!(parse_set("postgresql.use_pg_rewind=on").unwrap().value, Some(json!(true)));
        assert_eq!(parse_set("synchronous_mode=quorum").unwrap().value, Some(json!("quorum")));
        assert_eq!(parse_set("ttl=").unwrap().value, None);
        assert_eq!(parse_set("ttl=null").unwrap().value, None);
        assert_eq!(parse_set("a=x=y").unwrap().value, Some(json!("x=y")));
    }

    #[test]
    fn pg_parameters_keep_their_dots() {
        let c = parse_set("postgresql.parameters.auto_explain.log_min_duration=100").unwrap();
        assert_eq!(c.path, ["postgresql", "parameters", "auto_explain.log_min_duration"]);
        let c = parse_pg("auto_explain.log_analyze=on").unwrap();
        assert_eq!(c.path, ["postgresql", "parameters", "auto_explain.log_analyze"]);
        assert_eq!(parse_pg("work_mem='16MB'").unwrap().value, Some(json!("16MB")));
    }

    #[test]
    fn malformed_pairs_are_refused() {
        for bad in ["ttl", "=40", "a..b=1", ".a=1"] {
            assert!(parse_set(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_pg("x").unwrap_err().0, "--pg \"x\": expected KEY=VALUE");
        assert!(parse_set("ttl=[1, 2").unwrap_err().0.contains("not YAML"));
    }

    #[test]
    fn apply_creates_paths_and_deletion_prunes_empty_mappings() {
        let mut config = object(json!({"ttl": 30, "postgresql": {"parameters": {"max_connections": 100}}}));
        apply(&mut config, &parse_pg("work_mem=16MB").unwrap());
        apply(&mut config, &parse_set("postgresql.use_slots=false").unwrap());
        assert_eq!(
            Value::Object(config.clone()),
            json!({"ttl": 30, "postgresql": {"use_slots": false, "parameters": {"max_connections": 100, "work_mem": "16MB"}}})
        );
        for pg in ["max_connections=", "work_mem="] {
            apply(&mut config, &parse_pg(pg).unwrap());
        }
        apply(&mut config, &parse_set("postgresql.use_slots=").unwrap());
        apply(&mut config, &parse_set("not.there=").unwrap());
        assert_eq!(Value::Object(config.clone()), json!({"ttl": 30}));
        apply(&mut config, &parse_set("ttl.inner=1").unwrap());
        assert_eq!(Value::Object(config), json!({"ttl": {"inner": 1}}));
    }

    #[test]
    fn merge_is_a_json_merge_patch() {
        let mut config =
            object(json!({"ttl": 30, "pause": true, "postgresql": {"parameters": {"a": 1, "b": 2}}}));
        let patch = parse_patch(
            "pause: null\nloop_wait: 5\npostgresql:\n  parameters:\n    b: null\n    c: 3\n",
            "-",
        )
        .unwrap();
        merge(&mut config, &patch);
        assert_eq!(
            Value::Object(config),
            json!({"ttl": 30, "loop_wait": 5, "postgresql": {"parameters": {"a": 1, "c": 3}}})
        );
        assert!(parse_patch("- a\n- b\n", "f.yml").unwrap_err().0.contains("expected a YAML mapping"));
        assert!(parse_patch("a: [", "f.yml").unwrap_err().0.starts_with("f.yml: invalid YAML"));
    }

    #[test]
    fn diff_is_unified_and_empty_without_changes() {
        assert_eq!(diff("ttl: 30\n", "ttl: 30\n"), "");
        insta::assert_snapshot!(diff("loop_wait: 10\nttl: 30\nretry_timeout: 10\n", "loop_wait: 10\nttl: 40\nretry_timeout: 10\n"), @r"
        --- before
        +++ after
        @@ -1,3 +1,3 @@
         loop_wait: 10
        -ttl: 30
        +ttl: 40
         retry_timeout: 10
        ");
    }
}
