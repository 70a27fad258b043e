//! The dynamic configuration: etcd's `config` key, seeded from
//! `bootstrap.dcs` (reference section 3.2, Patroni
//! `docs/dynamic_configuration.rst`).
//!
//! [`DynamicSettings`] keeps Patroni's field names and units (seconds, bytes)
//! so that it serializes back to JSON that Patroni and `patronictl` read;
//! [`DynamicSettings::to_core`] converts it to the core's milliseconds. Keys
//! keel does not know are kept in `extra` and written back untouched, as
//! Patroni keeps keys it does not know.

use std::collections::BTreeMap;
use std::fmt;

use keel_core::limits::PPM;
use keel_core::{DynamicConfig, SyncMode};
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::{de as lenient, ConfigError};

/// Largest `config` value read from etcd. etcd refuses requests above 1.5 MiB
/// by default, so anything etcd can hold fits.
pub const DYNAMIC_CONFIG_BYTES_MAX: usize = 2 << 20;

/// Largest value of a timeout in seconds. Far beyond any sensible setting,
/// it keeps milliseconds (and the core's sums of them) far from overflow.
pub const SECONDS_MAX: i64 = i32::MAX as i64;

/// Patroni's dynamic configuration, in Patroni's JSON form.
///
/// Missing keys take Patroni's defaults (section 3.2's table), and those
/// defaults are written out when the settings are serialized, as Patroni
/// writes its effective dynamic configuration to `/config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicSettings {
    /// Leader lease, seconds.
    #[serde(deserialize_with = "lenient::int")]
    pub ttl: i64,
    /// HA loop period, seconds.
    #[serde(deserialize_with = "lenient::int")]
    pub loop_wait: i64,
    /// Deadline of DCS and Postgres retries, seconds.
    #[serde(deserialize_with = "lenient::int")]
    pub retry_timeout: i64,
    /// Bytes a replica may lag and still race for the leader lock.
    #[serde(deserialize_with = "lenient::int")]
    pub maximum_lag_on_failover: i64,
    /// Bytes a sync standby may lag before it is swapped out; 0 or less (the
    /// default -1) turns the check off.
    #[serde(deserialize_with = "lenient::int")]
    pub maximum_lag_on_syncnode: i64,
    /// Entries of `/history` to keep; 0 keeps all.
    #[serde(deserialize_with = "lenient::int")]
    pub max_timelines_history: i64,
    /// Seconds a crashed primary holding the lock may try to recover. Patroni
    /// reads `master_start_timeout` when this key is absent, so both are kept
    /// apart; use [`DynamicSettings::primary_start_timeout_s`].
    #[serde(default, deserialize_with = "lenient::opt_int", skip_serializing_if = "Option::is_none")]
    pub primary_start_timeout: Option<i64>,
    /// The name `primary_start_timeout` had before Patroni 3.
    #[serde(default, deserialize_with = "lenient::opt_int", skip_serializing_if = "Option::is_none")]
    pub master_start_timeout: Option<i64>,
    /// Seconds a stop may take before SIGKILL, with synchronous mode only.
    /// Same aliasing as `primary_start_timeout`.
    #[serde(default, deserialize_with = "lenient::opt_int", skip_serializing_if = "Option::is_none")]
    pub primary_stop_timeout: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int", skip_serializing_if = "Option::is_none")]
    pub master_stop_timeout: Option<i64>,
    /// Seconds replicas postpone the race while WAL keeps arriving.
    #[serde(deserialize_with = "lenient::int")]
    pub primary_race_backoff: i64,
    pub synchronous_mode: SynchronousMode,
    #[serde(deserialize_with = "lenient::flag")]
    pub synchronous_mode_strict: bool,
    #[serde(deserialize_with = "lenient::int")]
    pub synchronous_node_count: i64,
    #[serde(deserialize_with = "lenient::flag")]
    pub failsafe_mode: bool,
    #[serde(deserialize_with = "lenient::flag")]
    pub check_timeline: bool,
    /// Maintenance mode (`patronictl pause`).
    #[serde(deserialize_with = "lenient::flag")]
    pub pause: bool,
    /// Retention of vanished members' slots: seconds, or a string with a unit
    /// (`30min`). Kept as written; keel does not manage slots yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_slots_ttl: Option<Value>,
    /// Permanent slots, under any of Patroni's three names. Kept as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permanent_slots: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permanent_replication_slots: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_slots: Option<Value>,
    /// Standby cluster settings. keel does not run standby clusters, and
    /// [`DynamicSettings::validate`] refuses one that is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_cluster: Option<Value>,
    pub postgresql: DynamicPostgresql,
    /// keel's own: the largest rate difference between this node's clock and
    /// etcd's, as a fraction (0.01 = 1%). Absent means the core's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clock_drift: Option<f64>,
    /// Keys keel does not know, written back as they were read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `synchronous_mode`: Patroni accepts a boolean, any `parse_bool` spelling,
/// or `"quorum"` (`global_config.py`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SynchronousMode {
    #[default]
    Off,
    On,
    Quorum,
}

/// The dynamic `postgresql` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicPostgresql {
    #[serde(deserialize_with = "lenient::flag")]
    pub use_pg_rewind: bool,
    #[serde(deserialize_with = "lenient::flag")]
    pub use_slots: bool,
    /// GUCs, any value.
    pub parameters: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_primary: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_replica: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_standby_leader: Option<BTreeMap<String, Value>>,
    /// Absent and empty differ: absent leaves the local `pg_hba` in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hba: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hba_primary: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hba_replica: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hba_standby_leader: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_ident: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_ident_primary: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_ident_replica: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_ident_standby_leader: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hosts_primary: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hosts_replica: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_hosts_standby_leader: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_conf: Option<BTreeMap<String, Value>>,
    /// Other keys. Patroni lets most local `postgresql` options be set here
    /// too (`bin_dir`, which Patroni itself writes, `use_unix_socket`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for DynamicSettings {
    fn default() -> Self {
        DynamicSettings {
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            maximum_lag_on_failover: 1_048_576,
            maximum_lag_on_syncnode: -1,
            max_timelines_history: 0,
            primary_start_timeout: None,
            master_start_timeout: None,
            primary_stop_timeout: None,
            master_stop_timeout: None,
            primary_race_backoff: 0,
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            failsafe_mode: false,
            check_timeline: false,
            pause: false,
            member_slots_ttl: None,
            slots: None,
            permanent_slots: None,
            permanent_replication_slots: None,
            ignore_slots: None,
            standby_cluster: None,
            postgresql: DynamicPostgresql::default(),
            max_clock_drift: None,
            extra: BTreeMap::new(),
        }
    }
}

impl Default for DynamicPostgresql {
    fn default() -> Self {
        DynamicPostgresql {
            use_pg_rewind: false,
            // Patroni's default since PostgreSQL 9.4.
            use_slots: true,
            parameters: BTreeMap::new(),
            parameters_primary: None,
            parameters_replica: None,
            parameters_standby_leader: None,
            pg_hba: None,
            pg_hba_primary: None,
            pg_hba_replica: None,
            pg_hba_standby_leader: None,
            pg_ident: None,
            pg_ident_primary: None,
            pg_ident_replica: None,
            pg_ident_standby_leader: None,
            pg_hosts: None,
            pg_hosts_primary: None,
            pg_hosts_replica: None,
            pg_hosts_standby_leader: None,
            recovery_conf: None,
            extra: BTreeMap::new(),
        }
    }
}

/// Parses etcd's `config` key: JSON, checked as [`DynamicSettings::validate`]
/// checks it. Never panics; anything but a valid object is an error, which
/// the caller reports and treats as an unusable `config` (the core's
/// `ClusterView.config` is `None` when absent or invalid).
pub fn dynamic_from_json(bytes: &[u8]) -> Result<DynamicSettings, ConfigError> {
    if bytes.len() > DYNAMIC_CONFIG_BYTES_MAX {
        let reason = format!("{} bytes is more than {DYNAMIC_CONFIG_BYTES_MAX}", bytes.len());
        return Err(ConfigError::new("", reason));
    }
    let mut value: Value =
        serde_json::from_slice(bytes).map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        let reason = format!("must be a JSON object, not {}", super::kind_of(&value));
        return Err(ConfigError::new("", reason));
    }
    super::drop_nulls(&mut value);
    // Unknown keys land in `extra`, so nothing is ignored and there is no
    // warning to collect.
    let mut ignored = Vec::new();
    let settings: DynamicSettings = super::from_value(value, &mut ignored)?;
    settings.validate()?;
    Ok(settings)
}

impl DynamicSettings {
    /// `primary_start_timeout`, else `master_start_timeout`, else 300
    /// (Patroni `global_config.primary_start_timeout`).
    pub fn primary_start_timeout_s(&self) -> i64 {
        self.primary_start_timeout.or(self.master_start_timeout).unwrap_or(300)
    }

    /// `primary_stop_timeout`, else `master_stop_timeout`, else 0 (off).
    pub fn primary_stop_timeout_s(&self) -> i64 {
        self.primary_stop_timeout.or(self.master_stop_timeout).unwrap_or(0)
    }

    /// The core's view, in milliseconds and bytes. Meant for validated
    /// settings; out-of-range values saturate instead of panicking.
    pub fn to_core(&self) -> DynamicConfig {
        let defaults = DynamicConfig::default();
        DynamicConfig {
            ttl_ms: seconds_to_ms(self.ttl),
            loop_wait_ms: seconds_to_ms(self.loop_wait),
            retry_timeout_ms: seconds_to_ms(self.retry_timeout),
            maximum_lag_on_failover_bytes: u64::try_from(self.maximum_lag_on_failover).unwrap_or(0),
            // Patroni: "will not take action ... when the value is set to 0 or below".
            maximum_lag_on_syncnode_bytes: u64::try_from(self.maximum_lag_on_syncnode)
                .ok()
                .filter(|&bytes| bytes > 0),
            synchronous_mode: match self.synchronous_mode {
                SynchronousMode::Off => SyncMode::Off,
                SynchronousMode::On => SyncMode::On,
                SynchronousMode::Quorum => SyncMode::Quorum,
            },
            synchronous_mode_strict: self.synchronous_mode_strict,
            synchronous_node_count: u32::try_from(self.synchronous_node_count.max(1)).unwrap_or(u32::MAX),
            failsafe_mode: self.failsafe_mode,
            check_timeline: self.check_timeline,
            use_pg_rewind: self.postgresql.use_pg_rewind,
            primary_start_timeout_ms: seconds_to_ms(self.primary_start_timeout_s()),
            primary_stop_timeout_ms: seconds_to_ms(self.primary_stop_timeout_s()),
            pause: self.pause,
            max_clock_drift_ppm: match self.max_clock_drift {
                Some(fraction) => fraction_to_ppm(fraction).unwrap_or(defaults.max_clock_drift_ppm),
                None => defaults.max_clock_drift_ppm,
            },
            // Local settings: the agent sets them from its own file
            // (`Config::local_over`).
            remove_data_directory_on_rewind_failure: false,
            remove_data_directory_on_diverged_timelines: false,
        }
    }

    /// The first of [`DynamicSettings::problems`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Checks the ranges of section 3.8, every failed one. Paths are
    /// relative to the settings (`ttl`); the local file prefixes them with
    /// `bootstrap.dcs`.
    ///
    /// keel departs from Patroni in two ways, both on purpose: it allows a
    /// faster lease (ttl >= 2, retry_timeout >= 1, where Patroni wants 20 and
    /// 3), and it refuses a broken timing rule instead of silently shrinking
    /// loop_wait and retry_timeout as Patroni does.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut found: Vec<ConfigError> = [
            at_least("ttl", self.ttl, 2),
            at_least("loop_wait", self.loop_wait, 1),
            at_least("retry_timeout", self.retry_timeout, 1),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect();
        // Within one loop a leader may spend retry_timeout reading the cluster
        // and retry_timeout renewing the lock (Patroni issue #1579). Only
        // meaningful once the three are in range.
        let needed = i128::from(self.loop_wait) + 2 * i128::from(self.retry_timeout);
        if found.is_empty() && needed > i128::from(self.ttl) {
            let reason = format!(
                "loop_wait + 2*retry_timeout must be <= ttl ({} + 2*{} > {})",
                self.loop_wait, self.retry_timeout, self.ttl
            );
            found.push(ConfigError::new("ttl", reason));
        }
        found.extend(at_least("maximum_lag_on_failover", self.maximum_lag_on_failover, 0).err());
        found.extend(at_least("maximum_lag_on_syncnode", self.maximum_lag_on_syncnode, -1).err());
        found.extend(at_least("max_timelines_history", self.max_timelines_history, 0).err());
        found.extend(at_least("synchronous_node_count", self.synchronous_node_count, 1).err());
        let timeouts = [
            ("primary_start_timeout", self.primary_start_timeout),
            ("master_start_timeout", self.master_start_timeout),
            ("primary_stop_timeout", self.primary_stop_timeout),
            ("master_stop_timeout", self.master_stop_timeout),
            ("primary_race_backoff", Some(self.primary_race_backoff)),
        ];
        for (key, seconds) in timeouts {
            if let Some(seconds) = seconds {
                found.extend(at_least(key, seconds, 0).and_then(|()| seconds_in_range(key, seconds)).err());
            }
        }
        self.check_bounds_and_sections(&mut found);
        found
    }

    fn check_bounds_and_sections(&self, found: &mut Vec<ConfigError>) {
        for (key, seconds) in
            [("ttl", self.ttl), ("loop_wait", self.loop_wait), ("retry_timeout", self.retry_timeout)]
        {
            found.extend(seconds_in_range(key, seconds).err());
        }
        if let Some(fraction) = self.max_clock_drift {
            if fraction_to_ppm(fraction).is_none() {
                let reason = format!("must be a fraction in [0, 0.5), got {fraction}");
                found.push(ConfigError::new("max_clock_drift", reason));
            }
        }
        if let Some(ttl) = &self.member_slots_ttl {
            if !(ttl.is_string() || ttl.as_u64().is_some()) {
                let reason = "must be seconds (an integer >= 0) or a string with a unit, such as 30min";
                found.push(ConfigError::new("member_slots_ttl", reason));
            }
        }
        if let Some(standby) = &self.standby_cluster {
            found.extend(check_standby_cluster(standby).err());
        }
    }
}

/// Patroni runs a standby cluster when `standby_cluster` names a host, a port
/// or a restore_command. keel does not (yet), and following a remote primary
/// while believing to be a normal cluster would be worse than refusing.
fn check_standby_cluster(standby: &Value) -> Result<(), ConfigError> {
    let Some(section) = standby.as_object() else {
        return Err(ConfigError::new("standby_cluster", "must be a mapping"));
    };
    let enabled = ["host", "port", "restore_command"].iter().any(|key| match section.get(*key) {
        None | Some(Value::Null) => false,
        Some(Value::String(text)) => !text.is_empty(),
        Some(_) => true,
    });
    if enabled {
        return Err(ConfigError::new("standby_cluster", "standby clusters are not supported by keel"));
    }
    Ok(())
}

fn at_least(key: &str, value: i64, min: i64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::new(key, format!("must be >= {min}, got {value}")));
    }
    Ok(())
}

fn seconds_in_range(key: &str, seconds: i64) -> Result<(), ConfigError> {
    if seconds > SECONDS_MAX {
        return Err(ConfigError::new(key, format!("must be <= {SECONDS_MAX} seconds, got {seconds}")));
    }
    Ok(())
}

fn seconds_to_ms(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0).saturating_mul(1000)
}

/// 0.01 -> 10_000 ppm. `None` outside [0, 0.5): a clock drifting by half or
/// more cannot bound a lease at all, and NaN is not a fraction.
fn fraction_to_ppm(fraction: f64) -> Option<u64> {
    if !(0.0..0.5).contains(&fraction) {
        return None;
    }
    // In range, the product is below PPM/2, so the cast neither truncates
    // nor saturates.
    Some((fraction * PPM as f64).round() as u64)
}

impl Serialize for SynchronousMode {
    /// Patroni's own spellings: `false`, `true`, `"quorum"`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SynchronousMode::Off => serializer.serialize_bool(false),
            SynchronousMode::On => serializer.serialize_bool(true),
            SynchronousMode::Quorum => serializer.serialize_str("quorum"),
        }
    }
}

impl<'de> Deserialize<'de> for SynchronousMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SynchronousModeVisitor)
    }
}

struct SynchronousModeVisitor;

impl<'de> Visitor<'de> for SynchronousModeVisitor {
    type Value = SynchronousMode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("off, on or quorum (or a boolean)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SynchronousMode, E> {
        Ok(if v { SynchronousMode::On } else { SynchronousMode::Off })
    }

    fn visit_unit<E: de::Error>(self) -> Result<SynchronousMode, E> {
        Ok(SynchronousMode::Off)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SynchronousMode, E> {
        match v {
            0 => Ok(SynchronousMode::Off),
            1 => Ok(SynchronousMode::On),
            _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SynchronousMode, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SynchronousMode, E> {
        if v.trim().eq_ignore_ascii_case("quorum") {
            return Ok(SynchronousMode::Quorum);
        }
        match lenient::parse_bool(v) {
            Some(on) => self.visit_bool(on),
            None => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: Value) -> Result<DynamicSettings, ConfigError> {
        dynamic_from_json(value.to_string().as_bytes())
    }

    #[test]
    fn empty_object_takes_patronis_defaults() {
        let parsed = settings(json!({})).unwrap();
        assert_eq!(parsed, DynamicSettings::default());
        assert_eq!(parsed.to_core(), DynamicConfig::default());
    }

    #[test]
    fn master_timeouts_apply_only_without_primary_ones() {
        let parsed = settings(json!({"master_start_timeout": 100, "master_stop_timeout": 7})).unwrap();
        assert_eq!(parsed.primary_start_timeout_s(), 100);
        assert_eq!(parsed.to_core().primary_stop_timeout_ms, 7_000);
        let both = settings(json!({"master_start_timeout": 100, "primary_start_timeout": 50})).unwrap();
        assert_eq!(both.primary_start_timeout_s(), 50);
    }

    #[test]
    fn clock_drift_fraction_maps_to_ppm_and_half_is_refused() {
        assert_eq!(fraction_to_ppm(0.01), Some(10_000));
        assert_eq!(fraction_to_ppm(0.0), Some(0));
        assert_eq!(fraction_to_ppm(0.499_999), Some(499_999));
        assert_eq!(fraction_to_ppm(0.5), None);
        assert_eq!(fraction_to_ppm(-0.1), None);
        assert_eq!(fraction_to_ppm(f64::NAN), None);
        let err = settings(json!({"max_clock_drift": 0.5})).unwrap_err();
        assert_eq!(err.path, "max_clock_drift");
    }

    #[test]
    fn enabled_standby_cluster_is_refused_but_patronis_empty_one_is_not() {
        let empty = json!({"standby_cluster": {"host": "", "port": "", "restore_command": ""}});
        assert!(settings(empty).is_ok());
        let err = settings(json!({"standby_cluster": {"host": "10.0.0.9"}})).unwrap_err();
        assert_eq!(err.path, "standby_cluster");
        assert!(err.reason.contains("not supported"), "{err}");
    }

    #[test]
    fn huge_timeouts_are_refused_before_milliseconds_overflow() {
        let err = settings(json!({"ttl": i64::MAX, "primary_start_timeout": 1})).unwrap_err();
        assert_eq!(err.path, "ttl");
        assert!(err.reason.contains("<= 2147483647"), "{err}");
        assert_eq!(seconds_to_ms(i64::MAX), u64::MAX);
        assert_eq!(seconds_to_ms(-5), 0);
    }

    #[test]
    fn rule_violation_with_extreme_values_does_not_overflow() {
        let err = settings(json!({"ttl": 30, "loop_wait": i64::MAX, "retry_timeout": i64::MAX})).unwrap_err();
        assert_eq!(err.path, "ttl");
    }
}
