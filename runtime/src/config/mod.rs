//! Patroni-compatible configuration: the local YAML file (`patroni.yml`),
//! its `PATRONI_*` environment overrides, and the dynamic configuration in
//! etcd's `config` key (reference section 3).
//!
//! Loading goes YAML text -> JSON value -> environment overrides -> typed
//! structs -> checks. Going through a JSON value gives the file and etcd's
//! JSON one typed path, and lets overrides edit one tree instead of every
//! struct. Typing is wrapped twice: `serde_ignored` collects unknown keys as
//! warnings (`postgresql.paramters: unknown key, ignored`) and
//! `serde_path_to_error` puts the key's path on type errors
//! (`bootstrap.dcs.ttl: invalid value: string "abc", expected an integer`).
//!
//! - [`parse`] and [`load`] read the local file into a [`Config`].
//! - [`dynamic_from_json`] reads etcd's `config` key into [`DynamicSettings`],
//!   which serializes back to Patroni's JSON with `serde_json`.

mod de;
mod dynamic;
mod env;
mod local;
#[cfg(feature = "io")]
pub mod machine;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

pub use dynamic::{
    dynamic_from_json, DynamicPostgresql, DynamicSettings, SynchronousMode, DYNAMIC_CONFIG_BYTES_MAX,
    SECONDS_MAX,
};
pub use local::{
    Auth, BinName, Bootstrap, Callbacks, Citus, Ctl, Etcd3, EtcdProtocol, InitdbOption, Log,
    PgAuthentication, PgUser, Postgresql, RestApi, TagsConfig, VerifyClient, Watchdog, WatchdogMode,
};
pub use validate::STRICT_SYNC_PLACEHOLDERS;

/// Largest configuration file read. Real ones are a few kilobytes.
pub const CONFIG_BYTES_MAX: usize = 1 << 20;

/// Patroni's default `namespace`.
pub const NAMESPACE_DEFAULT: &str = "/service/";

/// The local configuration of one node.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The cluster's name: `/<namespace>/<scope>/` in etcd.
    pub scope: String,
    pub namespace: String,
    /// This member's name, unique in the cluster.
    pub name: String,
    pub log: Log,
    pub restapi: RestApi,
    pub ctl: Ctl,
    pub etcd3: Etcd3,
    pub bootstrap: Bootstrap,
    pub postgresql: Postgresql,
    pub tags: TagsConfig,
    pub watchdog: Watchdog,
    /// Refused by the checks: keel does not run Citus clusters.
    pub citus: Option<Citus>,
    /// Patroni's other DCS sections. keel talks to etcd v3 only; these are
    /// recognised so that a warning can say so.
    pub etcd: Option<Value>,
    pub consul: Option<Value>,
    pub zookeeper: Option<Value>,
    pub exhibitor: Option<Value>,
    pub kubernetes: Option<Value>,
    pub raft: Option<Value>,
    /// Patroni's thread settings; meaningless for keel, accepted as written.
    pub thread_pool_size: Option<Value>,
    pub thread_stack_size: Option<Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scope: String::new(),
            namespace: NAMESPACE_DEFAULT.to_string(),
            name: String::new(),
            log: Log::default(),
            restapi: RestApi::default(),
            ctl: Ctl::default(),
            etcd3: Etcd3::default(),
            bootstrap: Bootstrap::default(),
            postgresql: Postgresql::default(),
            tags: TagsConfig::default(),
            watchdog: Watchdog::default(),
            citus: None,
            etcd: None,
            consul: None,
            zookeeper: None,
            exhibitor: None,
            kubernetes: None,
            raft: None,
            thread_pool_size: None,
            thread_stack_size: None,
        }
    }
}

impl Config {
    /// The settings of this node's own file that the engine goes by over
    /// the cluster's `config` key: Patroni merges the local `postgresql`
    /// section over the dynamic one, and `remove_data_directory_on_*` are
    /// local only.
    pub fn local_over(&self, core: &mut keel_core::DynamicConfig) {
        let pg = &self.postgresql;
        if let Some(rewind) = pg.use_pg_rewind {
            core.use_pg_rewind = rewind;
        }
        core.remove_data_directory_on_rewind_failure = pg.remove_data_directory_on_rewind_failure;
        core.remove_data_directory_on_diverged_timelines = pg.remove_data_directory_on_diverged_timelines;
    }
}

/// A checked configuration and what the operator should hear about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// `<path>: <what>` lines: unknown keys, ignored sections, conflicts.
    pub warnings: Vec<String>,
}

/// Why a configuration was refused: the dotted path of the key (empty for
/// the whole document) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError { path: path.into(), reason: reason.into() }
    }

    /// The same error, one level down: `ttl` under `bootstrap.dcs` becomes
    /// `bootstrap.dcs.ttl`.
    pub fn under(self, prefix: &str) -> ConfigError {
        let path = if self.path.is_empty() { prefix.to_string() } else { format!("{prefix}.{}", self.path) };
        ConfigError { path, reason: self.reason }
    }
}

impl fmt::Display for ConfigError {
    /// `<path>: <reason>`, or the reason alone for the whole document.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks the configuration file at `path`, with `env` (the
/// process environment, passed in) overriding it.
///
/// As in Patroni, `PATRONI_CONFIGURATION` in `env` replaces the file
/// entirely, and every other `PATRONI_*` variable is then ignored.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Loaded, ConfigError> {
    load_as(path, env, Purpose::Node)
}

/// [`load`] for keelctl: like patronictl, it accepts a file holding only
/// what a client needs (`scope`, `namespace`, the `etcd3` section, `ctl`,
/// `restapi`). A node's own keys (`name`, `postgresql`, `restapi.listen`)
/// are neither required nor checked; what is there is still typed, and
/// the etcd3 hosts, when given, checked. Whether etcd is named at all is
/// the caller's question (keelctl's `--dcs-url` can name it).
pub fn load_for_ctl(path: &Path, env: &BTreeMap<String, String>) -> Result<Loaded, ConfigError> {
    load_as(path, env, Purpose::Ctl)
}

/// Who reads the file, and so which checks apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Node,
    Ctl,
}

fn load_as(path: &Path, env: &BTreeMap<String, String>, purpose: Purpose) -> Result<Loaded, ConfigError> {
    let source = Source::read(path, env)?;
    let mut loaded = parse_as(&source.text, source.env(env), purpose)?;
    loaded.warnings.splice(0..0, source.note);
    Ok(loaded)
}

/// The configuration text [`load`] reads, and where it came from.
struct Source {
    text: String,
    /// `PATRONI_CONFIGURATION` replaced the file (and the other
    /// `PATRONI_*` variables): the note that says so.
    note: Option<String>,
}

impl Source {
    fn read(path: &Path, env: &BTreeMap<String, String>) -> Result<Source, ConfigError> {
        // An empty variable counts as unset, as for every other override.
        if let Some(text) = env.get("PATRONI_CONFIGURATION").filter(|text| !text.is_empty()) {
            let note = format!(
                "PATRONI_CONFIGURATION: configuration taken from the environment; {} and other PATRONI_* \
                 variables are ignored",
                path.display()
            );
            return Ok(Source { text: text.clone(), note: Some(note) });
        }
        let unreadable =
            |e: std::io::Error| ConfigError::new("", format!("cannot read {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut bytes = Vec::new();
        // One byte more than allowed tells a file at the limit from a longer one.
        file.take(CONFIG_BYTES_MAX as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() > CONFIG_BYTES_MAX {
            let reason = format!("{} is larger than {CONFIG_BYTES_MAX} bytes", path.display());
            return Err(ConfigError::new("", reason));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| ConfigError::new("", format!("{} is not UTF-8: {e}", path.display())))?;
        Ok(Source { text, note: None })
    }

    /// The overrides that apply to the text: none when it came from the
    /// environment.
    fn env<'a>(&self, env: &'a BTreeMap<String, String>) -> &'a BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        if self.note.is_some() {
            &NONE
        } else {
            env
        }
    }
}

/// Parses and checks configuration text, with `env` overriding it.
pub fn parse(yaml: &str, env: &BTreeMap<String, String>) -> Result<Loaded, ConfigError> {
    parse_as(yaml, env, Purpose::Node)
}

fn parse_as(yaml: &str, env: &BTreeMap<String, String>, purpose: Purpose) -> Result<Loaded, ConfigError> {
    let doc = document(yaml, env)?;
    let mut warnings = Vec::new();
    let dcs_as_written = dcs_as_written(&doc);
    let mut config: Config = from_value(doc, &mut warnings)?;
    config.bootstrap.dcs_as_written = dcs_as_written;
    match purpose {
        Purpose::Node => config.validate()?,
        Purpose::Ctl => config.validate_for_ctl()?,
    }
    warnings.extend(config.warnings());
    if purpose == Purpose::Node {
        warnings.extend(config.log_warnings());
    }
    Ok(Loaded { config, warnings })
}

/// What `keel --validate-config` reports: every problem the node's [`load`]
/// would refuse the file for, not only the first, and the warnings it
/// would give.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Review {
    /// The configuration with every key that did not type left out;
    /// `None` when the document itself is unusable (YAML syntax, not a
    /// mapping, an unreadable file).
    pub config: Option<Config>,
    pub problems: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

/// Most problems one review lists: each mistyped key costs one more
/// typing of the document.
pub const REVIEW_PROBLEMS_MAX: usize = 100;

/// Reviews the file at `path` as [`load`] reads it (the environment's
/// overrides included). Only the checks of the text: `keel` adds those
/// that look at the machine.
pub fn review(path: &Path, env: &BTreeMap<String, String>) -> Review {
    match Source::read(path, env) {
        Ok(source) => {
            let mut review = review_text(&source.text, source.env(env));
            review.warnings.splice(0..0, source.note);
            review
        }
        Err(e) => Review { problems: vec![e], ..Review::default() },
    }
}

/// Reviews configuration text, with `env` overriding it. serde stops at the
/// first value that does not type, so each such key is reported, taken out
/// of the document, and the rest typed again; the checks then run on what
/// typed, and those about a key taken out are not repeated.
pub fn review_text(yaml: &str, env: &BTreeMap<String, String>) -> Review {
    let mut doc = match document(yaml, env) {
        Ok(doc) => doc,
        Err(e) => return Review { problems: vec![e], ..Review::default() },
    };
    let mut problems = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    while problems.len() < REVIEW_PROBLEMS_MAX {
        let mut warnings = Vec::new();
        match type_value::<Config>(doc.clone(), &mut warnings) {
            Ok(mut config) => {
                config.bootstrap.dcs_as_written = dcs_as_written(&doc);
                let under_left_out = |path: &str| {
                    left_out.iter().any(|out| {
                        path.strip_prefix(out.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
                    })
                };
                problems.extend(config.problems().into_iter().filter(|p| !under_left_out(&p.path)));
                warnings.extend(config.warnings());
                warnings.extend(config.log_warnings());
                return Review { config: Some(config), problems, warnings };
            }
            Err((error, steps)) => {
                let taken = take_out(&mut doc, &steps);
                problems.push(error);
                let Some(path) = taken else { break };
                left_out.push(path);
            }
        }
    }
    if problems.len() >= REVIEW_PROBLEMS_MAX {
        problems.push(ConfigError::new("", format!("stopped after {REVIEW_PROBLEMS_MAX} problems")));
    }
    Review { config: None, problems, warnings: Vec::new() }
}

/// Removes the mapping key that `steps` lead to (the list holding an item,
/// for a path that ends in list indexes) and returns its path; `None` when
/// there is no such key, so that nothing was removed.
fn take_out(doc: &mut Value, steps: &[Step]) -> Option<String> {
    let last_key = steps.iter().rposition(|step| matches!(step, Step::Key(_)))?;
    let Step::Key(key) = &steps[last_key] else { return None };
    let mut at = doc;
    for step in &steps[..last_key] {
        at = match step {
            Step::Key(key) => at.get_mut(key.as_str())?,
            Step::Index(index) => at.get_mut(*index)?,
        };
    }
    at.as_object_mut()?.remove(key)?;
    Some(render_path(steps[..=last_key].iter().cloned()))
}

/// `bootstrap.dcs` as the document has it (an empty mapping without
/// one): what goes to etcd's `config` key at bootstrap.
fn dcs_as_written(doc: &Value) -> Value {
    doc.pointer("/bootstrap/dcs").cloned().unwrap_or_else(|| Value::Object(Default::default()))
}

/// YAML text to the JSON document that is typed: a mapping (an empty file
/// is an empty one), the environment's overrides applied, nulls dropped.
fn document(yaml: &str, env: &BTreeMap<String, String>) -> Result<Value, ConfigError> {
    if yaml.len() > CONFIG_BYTES_MAX {
        let reason = format!("the configuration is {} bytes, more than {CONFIG_BYTES_MAX}", yaml.len());
        return Err(ConfigError::new("", reason));
    }
    let mut doc = match yaml_to_value(yaml)? {
        // An empty file (or one holding only comments) is an empty mapping;
        // the checks then name the first missing key.
        Value::Null => Value::Object(serde_json::Map::new()),
        doc @ Value::Object(_) => doc,
        other => {
            let reason = format!("the configuration must be a YAML mapping, not {}", kind_of(&other));
            return Err(ConfigError::new("", reason));
        }
    };
    env::apply(&mut doc, env)?;
    drop_nulls(&mut doc);
    Ok(doc)
}

/// YAML text to a JSON value. YAML 1.1 booleans (`on`, `yes`) read as
/// booleans, as PyYAML reads them for Patroni. serde-saphyr's default budget
/// bounds depth, aliases and size, so hostile input fails instead of
/// exhausting memory or the stack.
fn yaml_to_value(yaml: &str) -> Result<Value, ConfigError> {
    let mut options = serde_saphyr::Options::default();
    // The location is reported in the reason; a rendered snippet would
    // spread one error over several lines.
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Value>(yaml, options).map_err(|e| {
        let text = e.to_string();
        let Some(at) = e.location() else {
            return ConfigError::new("", format!("invalid YAML: {text}"));
        };
        // The message ends with the location, which goes first instead; and
        // some messages end with advice to the programmer using serde-saphyr
        // ("set DuplicateKeyPolicy in Options"), which an operator cannot use.
        let location = format!("line {}, column {}", at.line(), at.column());
        let mut message = text.strip_suffix(&format!(" at {location}")).unwrap_or(&text);
        for advice in [", set DuplicateKeyPolicy", "; use from_str_multiple"] {
            message = message.split(advice).next().unwrap_or(message);
        }
        ConfigError::new("", format!("invalid YAML at {location}: {message}"))
    })
}

/// Types `value`, pushing a warning for every unknown key and giving type
/// errors the path of their key.
fn from_value<T: DeserializeOwned>(value: Value, warnings: &mut Vec<String>) -> Result<T, ConfigError> {
    type_value(value, warnings).map_err(|(error, _)| error)
}

/// [`from_value`], with the error's path also as steps ([`review_text`]).
fn type_value<T: DeserializeOwned>(
    value: Value,
    warnings: &mut Vec<String>,
) -> Result<T, (ConfigError, Vec<Step>)> {
    let mut track = serde_path_to_error::Track::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| {
        warnings.push(format!("{}: unknown key, ignored", ignored_path(&path)));
    };
    let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
    let typed = T::deserialize(serde_ignored::Deserializer::new(tracked, &mut on_ignored));
    typed.map_err(|e| {
        let steps = error_steps(&track.path());
        (ConfigError::new(render_path(steps.iter().cloned()), e.to_string()), steps)
    })
}

/// A key whose value is null (`ttl:` with nothing after it) counts as absent,
/// as Patroni treats `None`: it takes the default, and a required key is
/// reported as missing rather than as the wrong type.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// One step of a key's path.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// `postgresql.parameters`, `bootstrap.initdb[1]`.
fn render_path(steps: impl IntoIterator<Item = Step>) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) if path.is_empty() => path.push_str(&key),
            Step::Key(key) => {
                path.push('.');
                path.push_str(&key);
            }
            Step::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    let mut steps = Vec::new();
    let mut at = path;
    loop {
        match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                steps.push(Step::Index(*index));
                at = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                steps.push(Step::Key(key.clone()));
                at = parent;
            }
            // `Some` and newtypes are wrappers, not keys a user wrote.
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => at = parent,
        }
    }
    steps.reverse();
    render_path(steps)
}

fn error_steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    let steps = path.iter().filter_map(|segment| match segment {
        Segment::Seq { index } => Some(Step::Index(*index)),
        Segment::Map { key } => Some(Step::Key(key.clone())),
        Segment::Enum { variant } => Some(Step::Key(variant.clone())),
        Segment::Unknown => None,
    });
    steps.collect()
}

/// "a string", "a list", ... for error messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_display_is_path_colon_reason() {
        assert_eq!(
            ConfigError::new("ttl", "must be >= 2").under("bootstrap.dcs").to_string(),
            "bootstrap.dcs.ttl: must be >= 2"
        );
        assert_eq!(ConfigError::new("", "invalid YAML").to_string(), "invalid YAML");
    }

    #[test]
    fn nulls_in_mappings_are_dropped_but_list_items_stay() {
        let mut value = json!({"a": null, "b": {"c": null, "d": 1}, "e": [null, {"f": null}]});
        drop_nulls(&mut value);
        assert_eq!(value, json!({"b": {"d": 1}, "e": [null, {}]}));
    }

    #[test]
    fn yaml_syntax_error_reports_line_and_column() {
        let err = yaml_to_value("a: 1\nb: [1, 2\n").unwrap_err();
        assert_eq!(err.path, "");
        assert_eq!(err.reason, "invalid YAML at line 2, column 4: unclosed bracket '['");
        let err = yaml_to_value("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.reason, "invalid YAML at line 2, column 1: duplicate mapping key: a");
    }

    #[test]
    fn yaml_one_point_one_booleans_read_as_booleans() {
        assert_eq!(
            yaml_to_value("a: on\nb: 'on'\nc: 16GB\n").ok(),
            Some(json!({"a": true, "b": "on", "c": "16GB"}))
        );
    }
}
