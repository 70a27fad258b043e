//! `PATRONI_*` environment overrides (reference section 3.7, Patroni
//! `docs/ENVIRONMENT.rst` and `config.py`).
//!
//! Overrides edit the parsed YAML tree before it is typed, so a value from
//! the environment goes through the same checks as one from the file. As in
//! Patroni, an empty variable counts as unset, and an override replaces one
//! leaf: `PATRONI_RESTAPI_USERNAME` leaves the file's password in place.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{de as lenient, ConfigError};

/// How a variable's text becomes a value.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    /// Patroni's `_parse_list`: a YAML list, or comma-separated items.
    List,
    Int,
    Bool,
    /// A YAML flow mapping, such as `{X-Frame-Options: DENY}`.
    Mapping,
}

/// Variables that set one key each. Postgres users are added by
/// [`overrides`], one variable per user and connection option.
const FIXED: &[(&str, &[&str], Kind)] = &[
    ("PATRONI_NAME", &["name"], Kind::Text),
    ("PATRONI_SCOPE", &["scope"], Kind::Text),
    ("PATRONI_NAMESPACE", &["namespace"], Kind::Text),
    ("PATRONI_LOG_TYPE", &["log", "type"], Kind::Text),
    ("PATRONI_LOG_LEVEL", &["log", "level"], Kind::Text),
    ("PATRONI_LOG_TRACEBACK_LEVEL", &["log", "traceback_level"], Kind::Text),
    ("PATRONI_LOG_FORMAT", &["log", "format"], Kind::Text),
    ("PATRONI_LOG_DATEFORMAT", &["log", "dateformat"], Kind::Text),
    ("PATRONI_LOG_MAX_QUEUE_SIZE", &["log", "max_queue_size"], Kind::Int),
    ("PATRONI_LOG_DIR", &["log", "dir"], Kind::Text),
    ("PATRONI_LOG_FILE_NUM", &["log", "file_num"], Kind::Int),
    ("PATRONI_LOG_FILE_SIZE", &["log", "file_size"], Kind::Int),
    ("PATRONI_LOG_LOGGERS", &["log", "loggers"], Kind::Mapping),
    ("PATRONI_ETCD3_HOST", &["etcd3", "host"], Kind::Text),
    ("PATRONI_ETCD3_HOSTS", &["etcd3", "hosts"], Kind::List),
    ("PATRONI_ETCD3_URL", &["etcd3", "url"], Kind::Text),
    ("PATRONI_ETCD3_PROXY", &["etcd3", "proxy"], Kind::Text),
    ("PATRONI_ETCD3_SRV", &["etcd3", "srv"], Kind::Text),
    ("PATRONI_ETCD3_SRV_SUFFIX", &["etcd3", "srv_suffix"], Kind::Text),
    ("PATRONI_ETCD3_USE_PROXIES", &["etcd3", "use_proxies"], Kind::Bool),
    ("PATRONI_ETCD3_PROTOCOL", &["etcd3", "protocol"], Kind::Text),
    ("PATRONI_ETCD3_USERNAME", &["etcd3", "username"], Kind::Text),
    ("PATRONI_ETCD3_PASSWORD", &["etcd3", "password"], Kind::Text),
    ("PATRONI_ETCD3_CACERT", &["etcd3", "cacert"], Kind::Text),
    ("PATRONI_ETCD3_CERT", &["etcd3", "cert"], Kind::Text),
    ("PATRONI_ETCD3_KEY", &["etcd3", "key"], Kind::Text),
    ("PATRONI_RESTAPI_LISTEN", &["restapi", "listen"], Kind::Text),
    ("PATRONI_RESTAPI_CONNECT_ADDRESS", &["restapi", "connect_address"], Kind::Text),
    ("PATRONI_RESTAPI_USERNAME", &["restapi", "authentication", "username"], Kind::Text),
    ("PATRONI_RESTAPI_PASSWORD", &["restapi", "authentication", "password"], Kind::Text),
    ("PATRONI_RESTAPI_CERTFILE", &["restapi", "certfile"], Kind::Text),
    ("PATRONI_RESTAPI_KEYFILE", &["restapi", "keyfile"], Kind::Text),
    ("PATRONI_RESTAPI_KEYFILE_PASSWORD", &["restapi", "keyfile_password"], Kind::Text),
    ("PATRONI_RESTAPI_CAFILE", &["restapi", "cafile"], Kind::Text),
    ("PATRONI_RESTAPI_CIPHERS", &["restapi", "ciphers"], Kind::Text),
    ("PATRONI_RESTAPI_VERIFY_CLIENT", &["restapi", "verify_client"], Kind::Text),
    ("PATRONI_RESTAPI_ALLOWLIST", &["restapi", "allowlist"], Kind::List),
    ("PATRONI_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS", &["restapi", "allowlist_include_members"], Kind::Bool),
    ("PATRONI_RESTAPI_HTTP_EXTRA_HEADERS", &["restapi", "http_extra_headers"], Kind::Mapping),
    ("PATRONI_RESTAPI_HTTPS_EXTRA_HEADERS", &["restapi", "https_extra_headers"], Kind::Mapping),
    ("PATRONI_RESTAPI_REQUEST_QUEUE_SIZE", &["restapi", "request_queue_size"], Kind::Int),
    ("PATRONI_RESTAPI_SERVER_TOKENS", &["restapi", "server_tokens"], Kind::Text),
    ("PATRONI_CTL_USERNAME", &["ctl", "authentication", "username"], Kind::Text),
    ("PATRONI_CTL_PASSWORD", &["ctl", "authentication", "password"], Kind::Text),
    ("PATRONI_CTL_INSECURE", &["ctl", "insecure"], Kind::Bool),
    ("PATRONI_CTL_CACERT", &["ctl", "cacert"], Kind::Text),
    ("PATRONI_CTL_CERTFILE", &["ctl", "certfile"], Kind::Text),
    ("PATRONI_CTL_KEYFILE", &["ctl", "keyfile"], Kind::Text),
    ("PATRONI_CTL_KEYFILE_PASSWORD", &["ctl", "keyfile_password"], Kind::Text),
    ("PATRONI_POSTGRESQL_LISTEN", &["postgresql", "listen"], Kind::Text),
    ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", &["postgresql", "connect_address"], Kind::Text),
    ("PATRONI_POSTGRESQL_PROXY_ADDRESS", &["postgresql", "proxy_address"], Kind::Text),
    ("PATRONI_POSTGRESQL_DATA_DIR", &["postgresql", "data_dir"], Kind::Text),
    ("PATRONI_POSTGRESQL_CONFIG_DIR", &["postgresql", "config_dir"], Kind::Text),
    ("PATRONI_POSTGRESQL_BIN_DIR", &["postgresql", "bin_dir"], Kind::Text),
    ("PATRONI_POSTGRESQL_PGPASS", &["postgresql", "pgpass"], Kind::Text),
    ("PATRONI_CITUS_GROUP", &["citus", "group"], Kind::Int),
    ("PATRONI_CITUS_DATABASE", &["citus", "database"], Kind::Text),
];

/// `PATRONI_<USER>_<OPTION>` sets `postgresql.authentication.<user>.<option>`.
const PG_USERS: [&str; 3] = ["superuser", "replication", "rewind"];
const PG_USER_OPTIONS: [&str; 11] = [
    "username",
    "password",
    "sslmode",
    "sslkey",
    "sslpassword",
    "sslcert",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
];

/// Applies every override present in `env` to `doc`, a YAML mapping.
pub(super) fn apply(doc: &mut Value, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (var, path, kind) in overrides() {
        let Some(text) = env.get(&var).filter(|text| !text.is_empty()) else {
            continue;
        };
        let value = convert(&var, &path, text, kind)?;
        set(doc, &path, value);
    }
    Ok(())
}

fn overrides() -> Vec<(String, Vec<&'static str>, Kind)> {
    let mut all: Vec<_> =
        FIXED.iter().map(|(var, path, kind)| (var.to_string(), path.to_vec(), *kind)).collect();
    for user in PG_USERS {
        for option in PG_USER_OPTIONS {
            let var = format!("PATRONI_{}_{}", user.to_ascii_uppercase(), option.to_ascii_uppercase());
            all.push((var, vec!["postgresql", "authentication", user, option], Kind::Text));
        }
    }
    all
}

fn convert(var: &str, path: &[&str], text: &str, kind: Kind) -> Result<Value, ConfigError> {
    let refuse = |what: &str| ConfigError::new(path.join("."), format!("{var}={text:?} is not {what}"));
    match kind {
        Kind::Text => Ok(Value::String(text.to_string())),
        Kind::Int => text.trim().parse::<i64>().map(Value::from).map_err(|_| refuse("an integer")),
        Kind::Bool => lenient::parse_bool(text).map(Value::Bool).ok_or_else(|| refuse("a boolean")),
        Kind::List => parse_list(text).ok_or_else(|| refuse("a list")),
        Kind::Mapping => match super::yaml_to_value(text) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(refuse("a YAML mapping")),
        },
    }
}

/// Patroni's `_parse_list`: text that does not already look like a YAML list
/// is wrapped in `[...]`, so `a:2379,b:2379` and `'a:2379','b:2379'` both
/// work; scalar items become strings.
fn parse_list(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    let yaml = if trimmed.starts_with('-') || trimmed.contains('[') {
        trimmed.to_string()
    } else {
        format!("[{trimmed}]")
    };
    let Ok(Value::Array(items)) = super::yaml_to_value(&yaml) else {
        return None;
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => Some(Value::String(text)),
            Value::Number(number) => Some(Value::String(number.to_string())),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(Value::Array)
}

/// Sets `path` in `doc`, creating missing or empty sections. A section that
/// holds something other than a mapping is left alone: typing the document
/// then reports it at its path, which says more than a silent replacement.
fn set(doc: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = doc;
    for key in parents {
        let Value::Object(map) = node else {
            return;
        };
        let child = map.entry(key.to_string()).or_insert(Value::Null);
        if child.is_null() {
            *child = Value::Object(Map::new());
        }
        node = child;
    }
    if let Value::Object(map) = node {
        map.insert(last.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn list_variables_take_commas_quotes_and_yaml_lists() {
        assert_eq!(parse_list("a:2379,b:2379"), Some(json!(["a:2379", "b:2379"])));
        assert_eq!(parse_list("'a:2379', 'b:2379'"), Some(json!(["a:2379", "b:2379"])));
        assert_eq!(parse_list("[a:2379, b:2379]"), Some(json!(["a:2379", "b:2379"])));
        assert_eq!(parse_list("10.0.0.0/8"), Some(json!(["10.0.0.0/8"])));
        assert_eq!(parse_list("[a, [b]]"), None);
    }

    #[test]
    fn override_creates_missing_sections_and_keeps_siblings() {
        let mut doc = json!({"restapi": {"authentication": {"password": "file"}}, "postgresql": null});
        let vars = env(&[("PATRONI_RESTAPI_USERNAME", "admin"), ("PATRONI_REWIND_USERNAME", "rewinder")]);
        apply(&mut doc, &vars).unwrap();
        assert_eq!(doc["restapi"]["authentication"], json!({"username": "admin", "password": "file"}));
        assert_eq!(doc["postgresql"]["authentication"]["rewind"]["username"], "rewinder");
    }

    #[test]
    fn empty_variable_counts_as_unset() {
        let mut doc = json!({"name": "from-file"});
        apply(&mut doc, &env(&[("PATRONI_NAME", "")])).unwrap();
        assert_eq!(doc["name"], "from-file");
    }

    #[test]
    fn malformed_typed_variable_is_an_error_at_its_key() {
        let mut doc = json!({});
        let err = apply(&mut doc, &env(&[("PATRONI_RESTAPI_REQUEST_QUEUE_SIZE", "many")])).unwrap_err();
        assert_eq!(err.path, "restapi.request_queue_size");
        assert!(err.reason.contains("PATRONI_RESTAPI_REQUEST_QUEUE_SIZE"), "{err}");
    }

    #[test]
    fn section_that_is_not_a_mapping_is_left_for_typing_to_report() {
        let mut doc = json!({"restapi": "oops"});
        apply(&mut doc, &env(&[("PATRONI_RESTAPI_LISTEN", "127.0.0.1:8008")])).unwrap();
        assert_eq!(doc["restapi"], "oops");
    }
}
