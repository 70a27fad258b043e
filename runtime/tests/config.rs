//! The configuration module against whole files: the guide's `patroni.yml`,
//! typos, bad values, environment overrides, and etcd's `config` JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_core::SyncMode;
use keel_runtime::config::{
    dynamic_from_json, load, parse, review, review_text, ConfigError, DynamicSettings, EtcdProtocol,
    InitdbOption, Loaded, SynchronousMode, WatchdogMode,
};
use serde_json::{json, Value};

/// The `patroni.yml` of `reference/patroni-guide.txt`, section 3, with the
/// indentation the export lost restored, addresses moved to 127.0.0.1 (the
/// three etcd members on etcd's usual local ports) and the data directory
/// under /tmp/keel-test.
const GUIDE_YAML: &str = r#"# /etc/patroni/patroni.yml
scope: pgcluster
name: pg-node-1
namespace: /service/
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
etcd3:
  hosts:
    - 127.0.0.1:2379
    - 127.0.0.1:22379
    - 127.0.0.1:32379
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 200
        shared_buffers: 16GB
        effective_cache_size: 48GB
        wal_level: replica
        max_wal_senders: 10
        max_replication_slots: 10
        hot_standby: 'on'
        wal_log_hints: 'on'
        archive_mode: 'on'
        archive_command: 'wal-g wal-push %p'
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /tmp/keel-test/17/main
  bin_dir: /usr/lib/postgresql/17/bin
  authentication:
    replication:
      username: replicator
      password: REDACTED
    superuser:
      username: postgres
      password: REDACTED
"#;

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn guide() -> Loaded {
    match parse(GUIDE_YAML, &no_env()) {
        Ok(loaded) => loaded,
        Err(err) => panic!("the guide's patroni.yml must load: {err}"),
    }
}

/// The guide with one line replaced (matched whole, indentation included).
fn guide_with(line: &str, replacement: &str) -> String {
    let mut found = false;
    let lines: Vec<&str> = GUIDE_YAML
        .lines()
        .map(|l| {
            if l == line {
                found = true;
                replacement
            } else {
                l
            }
        })
        .collect();
    assert!(found, "no line {line:?} in the guide");
    lines.join("\n") + "\n"
}

fn refused(yaml: &str) -> ConfigError {
    match parse(yaml, &no_env()) {
        Ok(loaded) => panic!("expected an error, got {:#?}", loaded.config),
        Err(err) => err,
    }
}

#[test]
fn guide_patroni_yml_loads_without_error_or_warning() {
    assert_eq!(guide().warnings, Vec::<String>::new());
}

#[test]
fn guide_values_land_in_their_fields() {
    let config = guide().config;
    assert_eq!(config.scope, "pgcluster");
    assert_eq!(config.name, "pg-node-1");
    assert_eq!(config.namespace, "/service/");
    assert_eq!(config.restapi.listen, "127.0.0.1:8008");
    assert_eq!(config.restapi.connect_address.as_deref(), Some("127.0.0.1:8008"));
    assert_eq!(config.etcd3.hosts, ["127.0.0.1:2379", "127.0.0.1:22379", "127.0.0.1:32379"]);
    assert_eq!(config.etcd3.protocol, EtcdProtocol::Http);
    assert_eq!(config.postgresql.listen, "127.0.0.1:5432");
    assert_eq!(config.postgresql.data_dir, PathBuf::from("/tmp/keel-test/17/main"));
    assert_eq!(config.postgresql.bin_dir, Some(PathBuf::from("/usr/lib/postgresql/17/bin")));
    let auth = &config.postgresql.authentication;
    assert_eq!(auth.replication.username, "replicator");
    assert_eq!(auth.superuser.username, "postgres");
    assert_eq!(auth.superuser.password.as_deref(), Some("REDACTED"));
    assert_eq!(auth.rewind, None);
    assert_eq!(config.watchdog.mode, WatchdogMode::Automatic, "Patroni's default");
}

#[test]
fn guide_bootstrap_section_keeps_initdb_pg_hba_and_parameters() {
    let bootstrap = guide().config.bootstrap;
    assert_eq!(
        bootstrap.initdb,
        [
            InitdbOption::Value { name: "encoding".into(), value: "UTF8".into() },
            InitdbOption::Flag("data-checksums".into()),
        ]
    );
    assert_eq!(
        bootstrap.pg_hba,
        ["host replication replicator 127.0.0.1/32 scram-sha-256", "host all all 127.0.0.1/32 scram-sha-256"]
    );
    let parameters = &bootstrap.dcs.postgresql.parameters;
    assert_eq!(parameters.len(), 10);
    assert_eq!(parameters["max_connections"], json!(200));
    assert_eq!(parameters["shared_buffers"], json!("16GB"));
    assert_eq!(parameters["hot_standby"], json!("on"));
    assert_eq!(parameters["archive_command"], json!("wal-g wal-push %p"));
}

#[test]
fn guide_bootstrap_dcs_goes_to_the_config_key_as_written() {
    // Patroni writes `bootstrap.dcs` to the `config` key as it stands in
    // the file: no defaults filled in (no `pause: false`), no keel keys.
    let written: Value = serde_json::from_slice(&guide().config.bootstrap.config_key_json()).unwrap();
    assert_eq!(
        written,
        json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 1048576,
            "synchronous_mode": true, "synchronous_mode_strict": false,
            "postgresql": {"use_pg_rewind": true, "parameters": {
                "max_connections": 200, "shared_buffers": "16GB", "effective_cache_size": "48GB",
                "wal_level": "replica", "max_wal_senders": 10, "max_replication_slots": 10,
                "hot_standby": "on", "wal_log_hints": "on", "archive_mode": "on",
                "archive_command": "wal-g wal-push %p"}}
        })
    );
    let without = parse(&guide_with("    ttl: 30", ""), &no_env()).unwrap();
    assert!(serde_json::from_slice::<Value>(&without.config.bootstrap.config_key_json())
        .unwrap()
        .get("ttl")
        .is_none());
}

#[test]
fn guide_dynamic_settings_convert_to_core_milliseconds() {
    let dcs = guide().config.bootstrap.dcs;
    assert_eq!(dcs.synchronous_mode, SynchronousMode::On);
    let core = dcs.to_core();
    assert_eq!(core.ttl_ms, 30_000);
    assert_eq!(core.loop_wait_ms, 10_000);
    assert_eq!(core.retry_timeout_ms, 10_000);
    assert_eq!(core.maximum_lag_on_failover_bytes, 1_048_576);
    assert_eq!(core.maximum_lag_on_syncnode_bytes, None);
    assert_eq!(core.synchronous_mode, SyncMode::On);
    assert!(!core.synchronous_mode_strict);
    assert!(core.use_pg_rewind);
    assert_eq!(core.primary_start_timeout_ms, 300_000, "Patroni's default");
    assert_eq!(core.max_clock_drift_ppm, 10_000, "the core's default");
}

#[test]
fn guide_tags_default_to_patronis() {
    let tags = guide().config.tags.to_core();
    assert!(tags.can_fail_over());
    assert_eq!(tags.failover_priority, 1);
}

#[test]
fn load_reads_the_file_and_applies_the_environment() {
    let dir = std::env::temp_dir().join(format!("keel-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("patroni.yml");
    std::fs::write(&path, GUIDE_YAML).unwrap();
    let loaded = load(&path, &env(&[("PATRONI_NAME", "pg-node-2")])).unwrap();
    assert_eq!(loaded.config.name, "pg-node-2");
    let missing = load(&dir.join("absent.yml"), &no_env()).unwrap_err();
    assert_eq!(missing.path, "");
    assert!(missing.reason.contains("cannot read"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn patroni_configuration_variable_replaces_file_and_other_variables() {
    let vars = env(&[("PATRONI_CONFIGURATION", GUIDE_YAML), ("PATRONI_NAME", "ignored")]);
    let loaded = load(&PathBuf::from("/nonexistent/patroni.yml"), &vars).unwrap();
    assert_eq!(loaded.config.name, "pg-node-1");
    assert!(loaded.warnings[0].starts_with("PATRONI_CONFIGURATION:"), "{:?}", loaded.warnings);
}

#[test]
fn unknown_keys_at_several_depths_warn_with_dotted_paths_and_still_load() {
    let yaml = GUIDE_YAML.to_string()
        + "loop_wiat: 10\n\
           watchdog:\n  mdoe: required\n\
           tags:\n  nofailover: false\n  rack: r1\n\
           ctl:\n  insecure: true\n  certfiel: /x\n";
    let yaml = yaml
        .replace(
            "  bin_dir: /usr/lib/postgresql/17/bin\n",
            "  bin_dir: /usr/lib/postgresql/17/bin\n  paramters: {}\n",
        )
        .replace(
            "      password: REDACTED\n    superuser:",
            "      pasword: REDACTED\n      password: x\n    superuser:",
        )
        .replace("    loop_wait: 10\n", "    loop_wait: 10\n    retry_timout: 3\n")
        .replace("      use_pg_rewind: true\n", "      use_pg_rewind: true\n      use_slot: true\n")
        .replace("  hosts:\n", "  hots: x\n  hosts:\n");
    let loaded = parse(&yaml, &no_env()).unwrap();
    let mut warnings = loaded.warnings.clone();
    warnings.sort();
    assert_eq!(
        warnings,
        [
            "bootstrap.dcs.postgresql.use_slot: unknown key, written to etcd as is",
            "bootstrap.dcs.retry_timout: unknown key, written to etcd as is",
            "ctl.certfiel: unknown key, ignored",
            "etcd3.hots: unknown key, ignored",
            "loop_wiat: unknown key, ignored",
            "postgresql.authentication.replication.pasword: unknown key, ignored",
            "postgresql.paramters: unknown key, ignored",
            "watchdog.mdoe: unknown key, ignored",
        ]
    );
    assert_eq!(loaded.config.tags.custom.get("rack"), Some(&json!("r1")), "custom tags are not typos");
    assert!(loaded.config.ctl.insecure);
}

#[test]
fn options_keel_ignores_are_known_and_do_not_warn() {
    let yaml = GUIDE_YAML.to_string()
        + "log:\n  level: INFO\n  type: plain\n\
           ctl:\n  insecure: false\n\
           watchdog:\n  mode: off\n  device: /dev/watchdog\n  safety_margin: 5\n\
           tags:\n  nofailover: false\n  noloadbalance: false\n  clonefrom: false\n  nosync: false\n";
    let yaml = yaml.replace(
        "  connect_address: 127.0.0.1:8008\n",
        "  connect_address: 127.0.0.1:8008\n  allowlist: [10.0.0.0/8]\n  verify_client: optional\n  \
         http_extra_headers: {X-Frame-Options: SAMEORIGIN}\n",
    );
    let yaml = yaml.replace(
        "  bin_dir: /usr/lib/postgresql/17/bin\n",
        "  bin_dir: /usr/lib/postgresql/17/bin\n  callbacks:\n    on_role_change: /bin/true\n  \
         create_replica_methods: [wal_g, basebackup]\n  wal_g:\n    command: /bin/true\n  \
         basebackup: {max-rate: 100M}\n  pg_ctl_timeout: 90\n  remove_data_directory_on_rewind_failure: true\n",
    );
    let loaded = parse(&yaml, &no_env()).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    assert_eq!(
        loaded.config.watchdog.mode,
        WatchdogMode::Off,
        "YAML's `off` is false, which Patroni reads as off"
    );
    assert_eq!(loaded.config.postgresql.pg_ctl_timeout, 90);
}

#[test]
fn log_keys_keel_does_not_honour_warn_once_each_with_their_path() {
    let yaml = GUIDE_YAML.to_string()
        + "log:\n  level: debug\n  type: json\n  format: '%(asctime)s %(message)s'\n  dateformat: '%H'\n  \
           traceback_level: ERROR\n  max_queue_size: 1000\n  dir: /var/log/patroni\n  mode: 0o640\n  \
           file_num: 4\n  file_size: 25000000\n  loggers: {urllib3: DEBUG}\n  \
           static_fields: {app: patroni}\n  deduplicate_heartbeat_logs: true\n";
    let loaded = parse(&yaml, &no_env()).unwrap();
    assert_eq!(
        loaded.warnings,
        [
            "log.traceback_level: not honoured, no equivalent in keel",
            "log.format: not honoured, keel's log lines have a fixed format",
            "log.dateformat: not honoured, keel's log lines have a fixed format",
            "log.static_fields: not honoured, keel's log lines have a fixed format",
            "log.max_queue_size: not honoured, no equivalent in keel",
            "log.dir: not honoured, keel logs to its standard error only, not to files",
            "log.mode: not honoured, keel logs to its standard error only, not to files",
            "log.file_num: not honoured, keel logs to its standard error only, not to files",
            "log.file_size: not honoured, keel logs to its standard error only, not to files",
            "log.loggers: not honoured, KEEL_LOG sets levels per module",
            "log.deduplicate_heartbeat_logs: not honoured, no equivalent in keel",
        ]
    );
    let log = &loaded.config.log;
    assert_eq!((log.tracing_level(), log.json()), (Some("debug"), true), "level and type are honoured");
    // keelctl does not log through `log`: it hears none of this.
    let dir = std::env::temp_dir().join(format!("keel-config-log-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("patroni.yml");
    std::fs::write(&path, &yaml).unwrap();
    let ctl = keel_runtime::config::load_for_ctl(&path, &no_env()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(ctl.warnings, Vec::<String>::new());
}

#[test]
fn log_levels_map_to_keels_and_unknown_levels_and_types_are_refused() {
    let with = |log: &str| GUIDE_YAML.to_string() + "log:\n" + log;
    for (level, expected) in [("DEBUG", "debug"), ("INFO", "info"), ("WARNING", "warn"), ("ERROR", "error")] {
        let loaded = parse(&with(&format!("  level: {level}\n")), &no_env()).unwrap();
        assert_eq!(loaded.config.log.tracing_level(), Some(expected), "{level}");
        assert_eq!(loaded.warnings, Vec::<String>::new(), "{level}");
    }
    let critical = parse(&with("  level: CRITICAL\n"), &no_env()).unwrap();
    assert_eq!(critical.config.log.tracing_level(), Some("error"));
    assert_eq!(critical.warnings, ["log.level: CRITICAL is logged as ERROR, keel's highest level"]);
    let e = refused(&with("  level: LOUD\n"));
    assert_eq!(e.to_string(), "log.level: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got \"LOUD\"");
    let e = refused(&with("  type: xml\n"));
    assert_eq!(e.to_string(), "log.type: expected plain or json, got \"xml\"");
}

#[test]
fn other_dcs_section_warns_that_it_is_ignored() {
    let yaml = GUIDE_YAML.to_string() + "etcd:\n  host: 127.0.0.1:2379\n";
    let loaded = parse(&yaml, &no_env()).unwrap();
    assert_eq!(loaded.warnings, ["etcd: ignored, keel talks to etcd v3 only (the etcd3 section)"]);
}

#[test]
fn ttl_of_wrong_type_is_refused_at_its_path() {
    let err = refused(&guide_with("    ttl: 30", "    ttl: \"abc\""));
    assert_eq!(err.path, "bootstrap.dcs.ttl");
    assert_eq!(err.reason, "invalid value: string \"abc\", expected an integer");
}

#[test]
fn ttl_as_numeric_string_is_accepted_like_patroni() {
    let loaded = parse(&guide_with("    ttl: 30", "    ttl: \"40\""), &no_env()).unwrap();
    assert_eq!(loaded.config.bootstrap.dcs.ttl, 40);
}

#[test]
fn negative_lag_is_refused() {
    let err = refused(&guide_with("    maximum_lag_on_failover: 1048576", "    maximum_lag_on_failover: -5"));
    assert_eq!(err.path, "bootstrap.dcs.maximum_lag_on_failover");
    assert_eq!(err.reason, "must be >= 0, got -5");
}

#[test]
fn loop_wait_rule_violation_is_refused_at_ttl() {
    let err = refused(&guide_with("    ttl: 30", "    ttl: 25"));
    assert_eq!(err.path, "bootstrap.dcs.ttl");
    assert_eq!(err.reason, "loop_wait + 2*retry_timeout must be <= ttl (10 + 2*10 > 25)");
    assert_eq!(
        err.to_string(),
        "bootstrap.dcs.ttl: loop_wait + 2*retry_timeout must be <= ttl (10 + 2*10 > 25)"
    );
}

#[test]
fn fast_timings_below_patronis_minimums_are_accepted() {
    let yaml = guide_with("    ttl: 30", "    ttl: 5");
    let yaml = yaml
        .replace("    loop_wait: 10\n", "    loop_wait: 1\n")
        .replace("    retry_timeout: 10\n", "    retry_timeout: 2\n");
    let core = parse(&yaml, &no_env()).unwrap().config.bootstrap.dcs.to_core();
    assert_eq!((core.ttl_ms, core.loop_wait_ms, core.retry_timeout_ms), (5_000, 1_000, 2_000));
}

#[test]
fn ttl_below_two_seconds_is_refused() {
    let err = refused(&guide_with("    ttl: 30", "    ttl: 1"));
    assert_eq!(err.path, "bootstrap.dcs.ttl");
    assert_eq!(err.reason, "must be >= 2, got 1");
}

#[test]
fn missing_scope_is_refused() {
    let err = refused(&guide_with("scope: pgcluster", ""));
    assert_eq!(err.path, "scope");
    assert_eq!(err.reason, "is required");
    assert_eq!(err.to_string(), "scope: is required");
}

#[test]
fn empty_file_is_refused_for_its_first_missing_key() {
    let err = refused("# nothing but a comment\n");
    assert_eq!(err.path, "scope");
}

#[test]
fn missing_data_dir_listen_and_etcd_hosts_are_refused() {
    let err = refused(&guide_with("  data_dir: /tmp/keel-test/17/main", ""));
    assert_eq!((err.path.as_str(), err.reason.as_str()), ("postgresql.data_dir", "is required"));
    let err = refused(&guide_with("  listen: 127.0.0.1:5432", ""));
    assert_eq!((err.path.as_str(), err.reason.as_str()), ("postgresql.listen", "is required"));
    let err = refused(&guide_with("  listen: 127.0.0.1:8008", ""));
    assert_eq!((err.path.as_str(), err.reason.as_str()), ("restapi.listen", "is required"));
    let yaml = GUIDE_YAML.replace(
        "etcd3:\n  hosts:\n    - 127.0.0.1:2379\n    - 127.0.0.1:22379\n    - 127.0.0.1:32379\n",
        "",
    );
    let err = refused(&yaml);
    assert_eq!(err.path, "etcd3.hosts");
    assert!(err.reason.starts_with("at least one etcd3 host is required"), "{err}");
}

#[test]
fn bad_listen_address_is_refused() {
    let err = refused(&guide_with("  listen: 127.0.0.1:8008", "  listen: 127.0.0.1:80080"));
    assert_eq!(err.path, "restapi.listen");
    assert_eq!(err.reason, "port must be 1..=65535, got \"80080\" in \"127.0.0.1:80080\"");
    let err = refused(&guide_with("  listen: 127.0.0.1:5432", "  listen: localhost"));
    assert_eq!(err.path, "postgresql.listen");
    assert_eq!(err.reason, "expected host:port, got \"localhost\"");
}

#[test]
fn wildcard_connect_address_is_refused() {
    let err = refused(&guide_with("  connect_address: 127.0.0.1:5432", "  connect_address: 0.0.0.0:5432"));
    assert_eq!(err.path, "postgresql.connect_address");
    assert!(err.reason.contains("wildcard"), "{err}");
}

#[test]
fn etcd3_hosts_without_a_port_get_2379_as_in_patroni() {
    let yaml = GUIDE_YAML.replace("    - 127.0.0.1:22379\n", "    - etcd2\n    - '[::1]'\n");
    let loaded = parse(&yaml, &no_env()).unwrap();
    assert_eq!(loaded.config.etcd3.hosts, ["127.0.0.1:2379", "etcd2:2379", "[::1]:2379", "127.0.0.1:32379"]);
    let yaml = GUIDE_YAML.replace("    - 127.0.0.1:22379\n", "    - '[::1]:2379'\n");
    assert!(parse(&yaml, &no_env()).is_ok());
    let yaml = GUIDE_YAML.replace("    - 127.0.0.1:22379\n", "    - 'etcd2:99999'\n");
    assert_eq!(
        refused(&yaml).to_string(),
        "etcd3.hosts[1]: port must be 1..=65535, got \"99999\" in \"etcd2:99999\""
    );
}

#[test]
fn bin_name_and_etcd_discovery_options_warn_that_keel_does_not_honour_them() {
    let yaml = guide_with("  bin_dir: /usr/lib/postgresql/17/bin", "  bin_name:\n    pg_ctl: pg_ctl15")
        .replace("etcd3:\n", "etcd3:\n  srv: example.org\n  url: http://127.0.0.1:2379\n");
    let loaded = parse(&yaml, &no_env()).unwrap();
    assert_eq!(
        loaded.warnings,
        [
            "etcd3.url: not honoured, keel reaches etcd through etcd3.hosts only",
            "etcd3.srv: not honoured, keel reaches etcd through etcd3.hosts only",
            "postgresql.bin_name: not honoured, keel runs the binaries of bin_dir by their usual names",
        ]
    );
}

/// The review's problems as `path: reason` lines.
fn problems_of(yaml: &str) -> Vec<String> {
    review_text(yaml, &no_env()).problems.iter().map(ToString::to_string).collect()
}

#[test]
fn review_of_the_guide_finds_no_problem_and_the_loaders_warnings() {
    let reviewed = review_text(GUIDE_YAML, &no_env());
    assert_eq!(reviewed.problems, []);
    assert_eq!(reviewed.config, Some(guide().config));
    let typo = guide_with("    ttl: 30", "    ttl: 30\n    tll: 30");
    let reviewed = review_text(&typo, &no_env());
    assert_eq!((reviewed.problems, reviewed.warnings), (vec![], parse(&typo, &no_env()).unwrap().warnings));
}

#[test]
fn review_lists_every_problem_where_load_stops_at_the_first() {
    let yaml = guide_with("name: pg-node-1", "name: pg/1")
        .replace("    ttl: 30\n", "    ttl: abc\n")
        .replace("  listen: 127.0.0.1:8008\n", "  listen: 127.0.0.1:80080\n")
        .replace("    - 127.0.0.1:22379\n", "    - etcd2:0\n")
        .replace(
            "    maximum_lag_on_failover: 1048576\n",
            "    maximum_lag_on_failover: -5\n    synchronous_node_count: 0\n",
        )
        + "log:\n  level: LOUD\nwatchdog:\n  mode: sometimes\n";
    assert_eq!(
        refused(&yaml).to_string(),
        "bootstrap.dcs.ttl: invalid value: string \"abc\", expected an integer"
    );
    assert_eq!(
        problems_of(&yaml),
        [
            "bootstrap.dcs.ttl: invalid value: string \"abc\", expected an integer",
            "watchdog.mode: invalid value: string \"sometimes\", expected off, automatic or required",
            "name: must not contain '/', got \"pg/1\"",
            "restapi.listen: port must be 1..=65535, got \"80080\" in \"127.0.0.1:80080\"",
            "etcd3.hosts[1]: port must be 1..=65535, got \"0\" in \"etcd2:0\"",
            "bootstrap.dcs.maximum_lag_on_failover: must be >= 0, got -5",
            "bootstrap.dcs.synchronous_node_count: must be >= 1, got 0",
            "log.level: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got \"LOUD\"",
        ]
    );
}

#[test]
fn review_reports_a_mistyped_required_key_once() {
    let yaml = guide_with("  listen: 127.0.0.1:8008", "  listen: [127.0.0.1, 8008]");
    let found = problems_of(&yaml);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("restapi.listen: invalid type: sequence"), "{found:?}");
}

#[test]
fn review_of_unusable_text_or_file_is_one_problem() {
    let found = problems_of(&guide_with("  hosts:", "  hosts: [127.0.0.1:2379"));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("invalid YAML at line "), "{found:?}");
    assert_eq!(problems_of("- a\n"), ["the configuration must be a YAML mapping, not a list"]);
    let missing = std::env::temp_dir().join(format!("keel-review-missing-{}.yml", std::process::id()));
    let reviewed = review(&missing, &no_env());
    assert_eq!(reviewed.config, None);
    assert_eq!(reviewed.problems.len(), 1);
    assert!(reviewed.problems[0].reason.starts_with("cannot read "), "{:?}", reviewed.problems);
}

#[test]
fn review_stops_at_its_limit_and_says_so() {
    let headers: String = (0..150).map(|i| format!("    h{i}: [not, a, string]\n")).collect();
    let yaml = guide_with(
        "  listen: 127.0.0.1:8008",
        &format!("  listen: 127.0.0.1:8008\n  http_extra_headers:\n{headers}"),
    );
    let found = problems_of(&yaml);
    assert_eq!(found.len(), 101);
    assert!(found[99].starts_with("restapi.http_extra_headers.h"), "{:?}", found[99]);
    assert_eq!(found[100], "stopped after 100 problems");
}

#[test]
fn review_reads_the_environment_as_load_does() {
    let vars = env(&[("PATRONI_RESTAPI_LISTEN", "127.0.0.1:0")]);
    let found: Vec<String> =
        review_text(GUIDE_YAML, &vars).problems.iter().map(ToString::to_string).collect();
    assert_eq!(found, ["restapi.listen: port must be 1..=65535, got \"0\" in \"127.0.0.1:0\""]);
}

#[test]
fn bad_yaml_syntax_is_refused_with_its_line() {
    let err = refused(&guide_with("  hosts:", "  hosts: [127.0.0.1:2379"));
    assert_eq!(err.path, "");
    assert!(err.reason.starts_with("invalid YAML at line "), "{err}");
}

#[test]
fn yaml_that_is_not_a_mapping_is_refused() {
    let err = refused("- a\n- b\n");
    assert_eq!(err.path, "");
    assert_eq!(err.reason, "the configuration must be a YAML mapping, not a list");
}

#[test]
fn duplicate_key_is_refused() {
    let err = refused(&(GUIDE_YAML.to_string() + "name: pg-node-2\n"));
    assert_eq!(err.path, "");
    assert!(err.reason.contains("uplicate"), "{err}");
}

#[test]
fn strict_sync_placeholder_names_are_refused() {
    for placeholder in ["__patroni_strict_sync_replica_placeholder__", "__keel_strict_sync_placeholder__"] {
        let err = refused(&guide_with("name: pg-node-1", &format!("name: {placeholder}")));
        assert_eq!(err.path, "name");
        assert!(err.reason.contains("reserved"), "{err}");
    }
}

#[test]
fn watchdog_mode_true_and_unknown_modes_are_refused() {
    let err = refused(&(GUIDE_YAML.to_string() + "watchdog:\n  mode: true\n"));
    assert_eq!(err.path, "watchdog.mode");
    assert_eq!(err.reason, "invalid value: boolean `true`, expected off, automatic or required");
    let err = refused(&(GUIDE_YAML.to_string() + "watchdog:\n  mode: sometimes\n"));
    assert_eq!(err.path, "watchdog.mode");
}

#[test]
fn failover_priority_must_be_an_integer() {
    let err = refused(&(GUIDE_YAML.to_string() + "tags:\n  failover_priority: high\n"));
    assert_eq!(err.path, "tags.failover_priority");
    assert!(err.reason.starts_with("invalid type: string \"high\""), "{err}");
}

#[test]
fn conflicting_nofailover_and_priority_warn() {
    let loaded =
        parse(&(GUIDE_YAML.to_string() + "tags:\n  nofailover: true\n  failover_priority: 3\n"), &no_env())
            .unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].starts_with("tags.failover_priority: 3 is ignored"));
    assert!(!loaded.config.tags.to_core().can_fail_over());
}

#[test]
fn reserved_initdb_option_is_refused() {
    let err = refused(&guide_with("    - data-checksums", "    - pgdata: /elsewhere"));
    assert_eq!(err.path, "bootstrap.initdb[1]");
    assert!(err.reason.contains("--pgdata=/elsewhere"), "{err}");
}

#[test]
fn wrong_type_inside_a_list_is_refused_at_its_index() {
    let err = refused(&guide_with("    - data-checksums", "    - [data-checksums]"));
    assert_eq!(err.path, "bootstrap.initdb[1]");
}

#[test]
fn environment_overrides_replace_file_values() {
    let vars = env(&[
        ("PATRONI_NAME", "pg-node-9"),
        ("PATRONI_SCOPE", "other"),
        ("PATRONI_NAMESPACE", "/keel/"),
        ("PATRONI_ETCD3_HOSTS", "10.1.0.1:2379,10.1.0.2:2379"),
        ("PATRONI_RESTAPI_LISTEN", "127.0.0.2:8009"),
        ("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.1.0.9:8009"),
        ("PATRONI_RESTAPI_USERNAME", "admin"),
        ("PATRONI_RESTAPI_PASSWORD", "secret"),
        ("PATRONI_POSTGRESQL_LISTEN", "127.0.0.2:5433"),
        ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.1.0.9:5433"),
        ("PATRONI_POSTGRESQL_DATA_DIR", "/tmp/keel-test/other"),
        ("PATRONI_POSTGRESQL_BIN_DIR", "/opt/pg/bin"),
        ("PATRONI_SUPERUSER_PASSWORD", "su-secret"),
        ("PATRONI_REPLICATION_USERNAME", "repl"),
        ("PATRONI_REWIND_USERNAME", "rewinder"),
        ("PATRONI_REWIND_PASSWORD", "rw-secret"),
        ("UNRELATED", "x"),
    ]);
    let loaded = parse(GUIDE_YAML, &vars).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let config = loaded.config;
    assert_eq!(
        (config.name.as_str(), config.scope.as_str(), config.namespace.as_str()),
        ("pg-node-9", "other", "/keel/")
    );
    assert_eq!(config.etcd3.hosts, ["10.1.0.1:2379", "10.1.0.2:2379"]);
    assert_eq!(config.restapi.listen, "127.0.0.2:8009");
    assert_eq!(config.restapi.connect_address.as_deref(), Some("10.1.0.9:8009"));
    let auth = config.restapi.authentication.unwrap();
    assert_eq!((auth.username.as_str(), auth.password.as_str()), ("admin", "secret"));
    assert_eq!(config.postgresql.listen, "127.0.0.2:5433");
    assert_eq!(config.postgresql.connect_address.as_deref(), Some("10.1.0.9:5433"));
    assert_eq!(config.postgresql.data_dir, PathBuf::from("/tmp/keel-test/other"));
    assert_eq!(config.postgresql.bin_dir, Some(PathBuf::from("/opt/pg/bin")));
    let pg_auth = config.postgresql.authentication;
    assert_eq!(pg_auth.superuser.username, "postgres", "the file's username stays");
    assert_eq!(pg_auth.superuser.password.as_deref(), Some("su-secret"));
    assert_eq!(pg_auth.replication.username, "repl");
    assert_eq!(pg_auth.replication.password.as_deref(), Some("REDACTED"));
    let rewind = pg_auth.rewind.unwrap();
    assert_eq!((rewind.username.as_str(), rewind.password.as_deref()), ("rewinder", Some("rw-secret")));
}

#[test]
fn environment_value_is_checked_like_a_file_value() {
    let err = parse(GUIDE_YAML, &env(&[("PATRONI_RESTAPI_LISTEN", "nowhere")])).unwrap_err();
    assert_eq!(err.path, "restapi.listen");
    let err = parse(GUIDE_YAML, &env(&[("PATRONI_CTL_INSECURE", "maybe")])).unwrap_err();
    assert_eq!(err.path, "ctl.insecure");
    assert_eq!(err.reason, "PATRONI_CTL_INSECURE=\"maybe\" is not a boolean");
}

#[test]
fn etcd3_single_host_and_comma_separated_hosts_are_accepted() {
    let yaml = GUIDE_YAML.replace(
        "etcd3:\n  hosts:\n    - 127.0.0.1:2379\n    - 127.0.0.1:22379\n    - 127.0.0.1:32379\n",
        "etcd3:\n  host: 127.0.0.1:2379\n  protocol: https\n",
    );
    let config = parse(&yaml, &no_env()).unwrap().config;
    assert_eq!(config.etcd3.hosts, ["127.0.0.1:2379"]);
    assert_eq!(config.etcd3.protocol, EtcdProtocol::Https);
    let yaml = GUIDE_YAML.replace(
        "etcd3:\n  hosts:\n    - 127.0.0.1:2379\n    - 127.0.0.1:22379\n    - 127.0.0.1:32379\n",
        "etcd3:\n  hosts: 127.0.0.1:2379, 127.0.0.1:22379\n",
    );
    let config = parse(&yaml, &no_env()).unwrap().config;
    assert_eq!(config.etcd3.hosts, ["127.0.0.1:2379", "127.0.0.1:22379"]);
}

// ---- etcd's `config` key -------------------------------------------------

fn dynamic(value: Value) -> Result<DynamicSettings, ConfigError> {
    dynamic_from_json(value.to_string().as_bytes())
}

#[test]
fn dynamic_round_trip_keeps_unknown_keys() {
    let written = json!({
        "ttl": 30,
        "loop_wait": 10,
        "retry_timeout": 10,
        "master_start_timeout": 120,
        "synchronous_mode": "quorum",
        "slots": {"app": {"type": "logical", "database": "db", "plugin": "pgoutput"}},
        "future_patroni_option": {"nested": [1, 2, {"x": true}]},
        "postgresql": {"bin_dir": "", "use_slots": true, "parameters": {"wal_level": "logical"}, "some_new_key": 7},
    });
    let settings = dynamic(written.clone()).unwrap();
    assert_eq!(settings.extra["future_patroni_option"], written["future_patroni_option"]);
    let back = serde_json::to_value(&settings).unwrap();
    assert_eq!(back["future_patroni_option"], written["future_patroni_option"]);
    assert_eq!(back["postgresql"]["some_new_key"], json!(7));
    assert_eq!(back["postgresql"]["bin_dir"], json!(""));
    assert_eq!(back["master_start_timeout"], json!(120));
    assert_eq!(back["synchronous_mode"], json!("quorum"));
    assert_eq!(back["slots"], written["slots"]);
    assert_eq!(dynamic(back).unwrap(), settings, "reading what keel writes gives the same settings");
}

#[test]
fn dynamic_settings_serialize_in_patronis_form() {
    let back = serde_json::to_value(DynamicSettings::default()).unwrap();
    assert_eq!(back["ttl"], json!(30));
    assert_eq!(back["maximum_lag_on_syncnode"], json!(-1));
    assert_eq!(back["synchronous_mode"], json!(false));
    assert_eq!(back["postgresql"]["use_slots"], json!(true));
    assert!(back.get("max_clock_drift").is_none(), "keel's own key only when set");
    assert!(back.get("primary_start_timeout").is_none(), "absent stays absent");
}

#[test]
fn dynamic_garbage_is_an_error_not_a_panic() {
    let inputs: [&[u8]; 9] = [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2, 3]",
        b"\"a string\"",
        b"null",
        b"{\"ttl\": ",
        &[b'['; 10_000],
        b"{\"postgresql\": 5}",
    ];
    for input in inputs {
        assert!(
            dynamic_from_json(input).is_err(),
            "{:?}",
            String::from_utf8_lossy(&input[..input.len().min(20)])
        );
    }
}

#[test]
fn dynamic_wrong_types_are_refused_with_their_path() {
    let cases = [
        (json!({"ttl": "abc"}), "ttl"),
        (json!({"ttl": 30.5}), "ttl"),
        (json!({"loop_wait": [10]}), "loop_wait"),
        (json!({"synchronous_mode": "sometimes"}), "synchronous_mode"),
        (json!({"failsafe_mode": "perhaps"}), "failsafe_mode"),
        (json!({"postgresql": {"use_pg_rewind": {}}}), "postgresql.use_pg_rewind"),
        (json!({"postgresql": {"pg_hba": "host all all 0/0 md5"}}), "postgresql.pg_hba"),
        (json!({"max_clock_drift": "1%"}), "max_clock_drift"),
        (json!({"maximum_lag_on_syncnode": -2}), "maximum_lag_on_syncnode"),
        (json!({"synchronous_node_count": 0}), "synchronous_node_count"),
        (json!({"primary_start_timeout": -1}), "primary_start_timeout"),
        (json!({"master_stop_timeout": -1}), "master_stop_timeout"),
    ];
    for (value, path) in cases {
        let err = dynamic(value.clone()).unwrap_err();
        assert_eq!(err.path, path, "{value}: {err}");
    }
}

#[test]
fn dynamic_null_values_take_defaults() {
    let settings = dynamic(json!({"ttl": null, "pause": null, "postgresql": null})).unwrap();
    assert_eq!(settings, DynamicSettings::default());
}

#[test]
fn dynamic_to_core_converts_seconds_to_milliseconds() {
    let core = dynamic(json!({
        "ttl": 20, "loop_wait": 5, "retry_timeout": 7,
        "primary_start_timeout": 0, "primary_stop_timeout": 15,
    }))
    .unwrap()
    .to_core();
    assert_eq!((core.ttl_ms, core.loop_wait_ms, core.retry_timeout_ms), (20_000, 5_000, 7_000));
    assert_eq!((core.primary_start_timeout_ms, core.primary_stop_timeout_ms), (0, 15_000));
}

#[test]
fn dynamic_to_core_maps_minus_one_lag_to_none() {
    let off = dynamic(json!({"maximum_lag_on_syncnode": -1})).unwrap().to_core();
    assert_eq!(off.maximum_lag_on_syncnode_bytes, None);
    let zero = dynamic(json!({"maximum_lag_on_syncnode": 0})).unwrap().to_core();
    assert_eq!(zero.maximum_lag_on_syncnode_bytes, None, "Patroni: 0 or below is off");
    let on =
        dynamic(json!({"maximum_lag_on_syncnode": 4096, "maximum_lag_on_failover": 0})).unwrap().to_core();
    assert_eq!(on.maximum_lag_on_syncnode_bytes, Some(4096));
    assert_eq!(on.maximum_lag_on_failover_bytes, 0);
}

#[test]
fn dynamic_to_core_reads_every_synchronous_mode_spelling() {
    let cases = [
        (json!(true), SyncMode::On),
        (json!(false), SyncMode::Off),
        (json!("on"), SyncMode::On),
        (json!("off"), SyncMode::Off),
        (json!("ON"), SyncMode::On),
        (json!("quorum"), SyncMode::Quorum),
        (json!("Quorum"), SyncMode::Quorum),
        (json!("yes"), SyncMode::On),
        (json!(1), SyncMode::On),
    ];
    for (mode, expected) in cases {
        let core = dynamic(json!({"synchronous_mode": mode})).unwrap().to_core();
        assert_eq!(core.synchronous_mode, expected, "{mode}");
    }
}

#[test]
fn dynamic_to_core_maps_clock_drift_fraction_to_ppm() {
    let core = dynamic(json!({"max_clock_drift": 0.01})).unwrap().to_core();
    assert_eq!(core.max_clock_drift_ppm, 10_000);
    let core = dynamic(json!({"max_clock_drift": 0.0025})).unwrap().to_core();
    assert_eq!(core.max_clock_drift_ppm, 2_500);
    let core = dynamic(json!({"max_clock_drift": 0})).unwrap().to_core();
    assert_eq!(core.max_clock_drift_ppm, 0);
    let err = dynamic(json!({"max_clock_drift": 0.5})).unwrap_err();
    assert_eq!(
        (err.path.as_str(), err.reason.as_str()),
        ("max_clock_drift", "must be a fraction in [0, 0.5), got 0.5")
    );
}

#[test]
fn dynamic_rule_violation_is_refused_from_etcd_too() {
    let err = dynamic(json!({"ttl": 20})).unwrap_err();
    assert_eq!(err.to_string(), "ttl: loop_wait + 2*retry_timeout must be <= ttl (10 + 2*10 > 20)");
}
