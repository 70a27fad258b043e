//! What a running Postgres says about itself over SQL, read in one round
//! trip: one simple-protocol message holding two statements (the server's
//! own state, then `pg_stat_replication`), answered as text and parsed here.
//!
//! A connection that fails is a fact (the server is not up, or not yet),
//! reported as [`ProbeError`], never a panic. The agent keeps one
//! connection across loops ([`Session`]), as Patroni does: opening one per
//! probe (a backend forked, the startup and authentication exchange) was
//! most of an idle agent's CPU at `loop_wait: 1`. Any error closes it, so
//! a broken connection never lingers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use keel_core::{Standby, StandbySyncState, SyncNames, TimelineSwitch};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use super::history::parse_history;
use super::lsn::parse_lsn;
use super::sync_names::parse_sync_names;

/// How to reach the local server. The probe reads `primary_conninfo` and
/// the history file with `pg_read_file`: it needs a superuser (Patroni's
/// `superuser` connection), or `pg_monitor`, `pg_read_all_settings` and
/// `pg_read_server_files` plus EXECUTE on `pg_control_checkpoint()` and
/// `pg_control_recovery()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnTarget {
    /// A socket directory (starts with `/`) or a host name or address.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    /// Bounds connecting and each query.
    pub timeout: Duration,
}

impl ConnTarget {
    /// The unix socket in `dir`, as the superuser `user`, on `postgres`.
    pub fn socket(dir: &Path, port: u16, user: &str) -> ConnTarget {
        ConnTarget {
            host: dir.to_string_lossy().into_owned(),
            port,
            user: user.to_owned(),
            password: None,
            dbname: "postgres".to_owned(),
            timeout: Duration::from_secs(3),
        }
    }
}

/// The server's state as one query saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlFacts {
    pub in_recovery: bool,
    /// On a primary, the timeline of the WAL being written; on a standby,
    /// the newest of the last restartpoint's, the minimum recovery
    /// point's and the WAL receiver's: each a timeline the server has
    /// replayed or is about to, none of them necessarily the one it
    /// replays now (see [`super::Observer`]).
    pub timeline: u32,
    /// `pg_current_wal_lsn()` on a primary, 0 on a standby.
    pub write_lsn: u64,
    /// `pg_last_wal_receive_lsn()`, 0 when nothing was streamed.
    pub receive_lsn: u64,
    /// `pg_last_wal_replay_lsn()`, 0 on a primary.
    pub replay_lsn: u64,
    /// `pg_stat_wal_receiver`, when a WAL receiver runs.
    pub receiver: Option<WalReceiver>,
    /// `primary_conninfo` as the server runs with it.
    pub primary_conninfo: String,
    /// The member `primary_conninfo` points at, as keel wrote it
    /// (`keel.upstream`); `None` when keel did not write one.
    pub upstream: Option<String>,
    pub replication: Vec<Standby>,
    pub sync_standby_names: SyncNames,
    /// The history file of `timeline` (empty on timeline 1).
    pub history: Vec<TimelineSwitch>,
}

impl SqlFacts {
    /// Streaming, and from the host and port `primary_conninfo` names now:
    /// right after a change of upstream and a reload, the old WAL receiver
    /// may still be streaming from the previous one.
    pub fn streaming_from_conninfo(&self) -> bool {
        let Some(receiver) = self.receiver.as_ref().filter(|r| r.status == "streaming") else {
            return false;
        };
        let Some(wanted) = parse_conninfo(&self.primary_conninfo) else {
            return true;
        };
        let host_matches = match (wanted.get("host"), &receiver.sender_host) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        let port_matches =
            match (wanted.get("port").and_then(|p| p.parse::<u16>().ok()), receiver.sender_port) {
                (Some(want), Some(have)) => want == have,
                (None, Some(have)) => have == 5432,
                _ => true,
            };
        host_matches && port_matches
    }
}

/// One row of `pg_stat_wal_receiver`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalReceiver {
    /// `streaming`, `starting`, `waiting`, `stopping`, …
    pub status: String,
    pub received_tli: u32,
    pub sender_host: Option<String>,
    pub sender_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// No connection: refused, no socket, starting up, authentication.
    Connect(String),
    /// Connected, but the query failed.
    Query(String),
    /// No answer within the target's timeout.
    Timeout,
    /// An answer keel does not understand (a bug or another Postgres).
    Unexpected(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(why) => write!(f, "cannot connect to Postgres: {why}"),
            ProbeError::Query(why) => write!(f, "probe query failed: {why}"),
            ProbeError::Timeout => f.write_str("Postgres did not answer in time"),
            ProbeError::Unexpected(why) => write!(f, "unexpected answer from Postgres: {why}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Connects, with the target's timeout as connect timeout and as
/// `statement_timeout`. The connection is driven by a spawned task that
/// ends when the client is dropped.
pub async fn connect(target: &ConnTarget) -> Result<Client, ProbeError> {
    let mut config = tokio_postgres::Config::new();
    config.host(&target.host).port(target.port).user(&target.user).dbname(&target.dbname);
    if let Some(password) = &target.password {
        config.password(password);
    }
    connect_with(config, target.timeout).await
}

/// `CHECKPOINT`. After a promotion the new primary's `pg_control` still
/// names the old timeline until a checkpoint, and pg_rewind, which reads
/// the source's timeline from there, would find nothing to rewind. Patroni
/// checkpoints right after promoting (`ensure_checkpoint_after_promote`);
/// the agent should too.
pub async fn checkpoint(target: &ConnTarget) -> Result<(), ProbeError> {
    let client = connect(target).await?;
    match tokio::time::timeout(target.timeout, client.batch_execute("CHECKPOINT")).await {
        Err(_) => Err(ProbeError::Timeout),
        Ok(result) => result.map_err(|e| ProbeError::Query(error_text(&e))),
    }
}

/// Whether the server at `conninfo` (a pg_rewind source) has checkpointed
/// on the timeline it writes, so that pg_rewind sees its new timeline
/// (Patroni's `check_leader_has_run_checkpoint`). A standby source counts
/// as ready.
pub async fn checkpointed_on_current_timeline(conninfo: &str, timeout: Duration) -> Result<bool, ProbeError> {
    let config: tokio_postgres::Config =
        conninfo.parse().map_err(|e| ProbeError::Connect(format!("unusable conninfo: {e}")))?;
    let client = connect_with(config, timeout).await?;
    let sql = "SELECT CASE WHEN pg_is_in_recovery() THEN true ELSE \
        ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int = timeline_id END AS ready \
        FROM pg_control_checkpoint()";
    let messages = match tokio::time::timeout(timeout, client.simple_query(sql)).await {
        Err(_) => return Err(ProbeError::Timeout),
        Ok(Err(e)) => return Err(ProbeError::Query(error_text(&e))),
        Ok(Ok(messages)) => messages,
    };
    let ready = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(field(row, "ready").and_then(parse_bool)),
        _ => None,
    });
    ready.unwrap_or_else(|| Err(ProbeError::Unexpected("no row from pg_control_checkpoint()".into())))
}

async fn connect_with(mut config: tokio_postgres::Config, timeout: Duration) -> Result<Client, ProbeError> {
    config
        .application_name("keel")
        .connect_timeout(timeout)
        .options(format!("-c statement_timeout={}", timeout.as_millis()));
    let connecting = tokio::time::timeout(timeout, config.connect(NoTls));
    let (client, connection) = match connecting.await {
        Err(_) => return Err(ProbeError::Timeout),
        Ok(Err(e)) => return Err(ProbeError::Connect(error_text(&e))),
        Ok(Ok(pair)) => pair,
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The agent's connection to its local server, kept from one loop to the
/// next and tied to one postmaster: a query on a connection to an earlier
/// postmaster (restarted, crashed) is never attempted. Any error or
/// timeout closes it; the next use connects again.
pub struct Session {
    target: ConnTarget,
    /// The open connection and the postmaster PID it was opened to.
    open: Option<(i64, Client)>,
}

impl Session {
    pub fn new(target: ConnTarget) -> Session {
        Session { target, open: None }
    }

    pub fn target(&self) -> &ConnTarget {
        &self.target
    }

    /// Runs `work` on the connection to `postmaster` (its PID), opened if
    /// need be, within the target's timeout. An error closes the
    /// connection: after a failed or abandoned query its state is unknown.
    pub async fn with<T>(
        &mut self,
        postmaster: i64,
        work: impl AsyncFnOnce(&Client) -> Result<T, ProbeError>,
    ) -> Result<T, ProbeError> {
        if self.open.as_ref().is_some_and(|(pid, client)| *pid != postmaster || client.is_closed()) {
            self.open = None;
        }
        if self.open.is_none() {
            self.open = Some((postmaster, connect(&self.target).await?));
        }
        let (_, client) = self.open.as_ref().expect("opened above");
        let result = match tokio::time::timeout(self.target.timeout, work(client)).await {
            Err(_) => Err(ProbeError::Timeout),
            Ok(result) => result,
        };
        if result.is_err() {
            self.close();
        }
        result
    }

    /// Drops the connection (the postmaster is gone, or about to be).
    pub fn close(&mut self) {
        self.open = None;
    }

    /// [`probe`] on this connection.
    pub async fn probe(&mut self, postmaster: i64) -> Result<SqlFacts, ProbeError> {
        self.with(postmaster, async |client: &Client| probe_on(client).await).await
    }
}

/// Reads the server's facts in one round trip, on a connection of its own.
pub async fn probe(target: &ConnTarget) -> Result<SqlFacts, ProbeError> {
    let client = connect(target).await?;
    match tokio::time::timeout(target.timeout, probe_on(&client)).await {
        Err(_) => Err(ProbeError::Timeout),
        Ok(result) => result,
    }
}

async fn probe_on(client: &Client) -> Result<SqlFacts, ProbeError> {
    let messages = client.simple_query(PROBE_SQL).await.map_err(|e| ProbeError::Query(error_text(&e)))?;
    // Rows of the first statement, then of the second, split by their
    // CommandComplete messages.
    let mut statements: Vec<Vec<SimpleQueryRow>> = vec![Vec::new()];
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => statements.last_mut().expect("never empty").push(row),
            SimpleQueryMessage::CommandComplete(_) => statements.push(Vec::new()),
            _ => {}
        }
    }
    let [server, standbys, ..] = statements.as_slice() else {
        return Err(ProbeError::Unexpected("fewer result sets than statements".into()));
    };
    let [server] = server.as_slice() else {
        return Err(ProbeError::Unexpected(format!("{} rows of server state", server.len())));
    };
    let mut facts = parse_server_row(server)?;
    facts.replication = standbys.iter().map(parse_standby_row).collect::<Result<_, _>>()?;
    Ok(facts)
}

/// Parses a libpq `key=value` conninfo (values bare or single-quoted with
/// backslash escapes). `None` for a URI or anything malformed.
pub fn parse_conninfo(conninfo: &str) -> Option<BTreeMap<String, String>> {
    let mut pairs = BTreeMap::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.insert(key, value);
    }
}

/// The server's own state; then its standbys. `pg_current_wal_lsn()` and
/// `pg_walfile_name()` fail during recovery, hence the CASEs (as Patroni's
/// cluster-info query). The timeline of a primary comes from the name of
/// the WAL file being written (right after a promotion the checkpoint still
/// names the old one); a standby's from the newest of the restartpoint,
/// the minimum recovery point and the WAL receiver. A standby accepts
/// connections only once it has replayed up to its minimum recovery point,
/// so that point's timeline is one it reached; it moves with every buffer
/// written during recovery, the restartpoint only every
/// `checkpoint_timeout`. Standby reply ages are computed by the primary, in
/// milliseconds, from the standbys' reply timestamps.
const PROBE_SQL: &str = "\
WITH s AS (
  SELECT pg_is_in_recovery() AS in_recovery, (pg_control_checkpoint()).timeline_id AS checkpoint_tli,
    (pg_control_recovery()).min_recovery_end_timeline AS min_recovery_tli
), f AS (
  SELECT s.in_recovery,
    CASE WHEN s.in_recovery THEN NULL ELSE pg_current_wal_lsn() END AS write_lsn,
    pg_last_wal_receive_lsn() AS receive_lsn,
    pg_last_wal_replay_lsn() AS replay_lsn,
    GREATEST(s.checkpoint_tli, CASE WHEN s.in_recovery THEN GREATEST(s.min_recovery_tli, w.received_tli)
      ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END) AS timeline,
    w.status AS receiver_status, w.received_tli, w.sender_host, w.sender_port,
    current_setting('primary_conninfo') AS primary_conninfo,
    current_setting('keel.upstream', true) AS upstream,
    current_setting('synchronous_standby_names') AS sync_names
  FROM s LEFT JOIN pg_stat_wal_receiver w ON true
)
SELECT f.*, CASE WHEN f.timeline > 1 THEN pg_read_file(
    'pg_wal/' || lpad(upper(to_hex(f.timeline)), 8, '0') || '.history', 0, 1048576, true) END AS history
FROM f;
SELECT application_name, state, sync_state, flush_lsn,
  GREATEST(0, (extract(epoch FROM clock_timestamp() - reply_time) * 1000)::bigint) AS reply_age_ms
FROM pg_stat_replication ORDER BY application_name, pid;";

fn parse_server_row(row: &SimpleQueryRow) -> Result<SqlFacts, ProbeError> {
    let in_recovery = parse_bool(field(row, "in_recovery")?)?;
    let receiver = match field(row, "receiver_status")? {
        None => None,
        Some(status) => Some(WalReceiver {
            status: status.to_owned(),
            received_tli: number(field(row, "received_tli")?)?.unwrap_or(0),
            sender_host: field(row, "sender_host")?.map(str::to_owned),
            sender_port: number(field(row, "sender_port")?)?,
        }),
    };
    let sync_text = field(row, "sync_names")?.unwrap_or("");
    let sync_standby_names = parse_sync_names(sync_text).unwrap_or_else(|e| {
        // Postgres validated it before taking it, so this is keel's parser.
        tracing::warn!(value = sync_text, error = %e, "cannot parse synchronous_standby_names");
        SyncNames::default()
    });
    let history = match field(row, "history")? {
        None => Vec::new(),
        Some(text) => parse_history(text).map_err(|e| ProbeError::Unexpected(e.to_string()))?,
    };
    Ok(SqlFacts {
        in_recovery,
        timeline: number(field(row, "timeline")?)?.unwrap_or(0),
        write_lsn: lsn(field(row, "write_lsn")?)?,
        receive_lsn: lsn(field(row, "receive_lsn")?)?,
        replay_lsn: lsn(field(row, "replay_lsn")?)?,
        receiver,
        primary_conninfo: field(row, "primary_conninfo")?.unwrap_or("").to_owned(),
        upstream: field(row, "upstream")?.filter(|u| !u.is_empty()).map(str::to_owned),
        replication: Vec::new(),
        sync_standby_names,
        history,
    })
}

fn parse_standby_row(row: &SimpleQueryRow) -> Result<Standby, ProbeError> {
    let sync_state = match field(row, "sync_state")? {
        Some("sync") => StandbySyncState::Sync,
        Some("quorum") => StandbySyncState::Quorum,
        Some("potential") => StandbySyncState::Potential,
        _ => StandbySyncState::Async,
    };
    Ok(Standby {
        name: field(row, "application_name")?.unwrap_or("").to_owned(),
        streaming: field(row, "state")? == Some("streaming"),
        sync_state,
        flush_lsn: lsn(field(row, "flush_lsn")?)?,
        // A standby that never replied is as silent as can be.
        reply_age_ms: number(field(row, "reply_age_ms")?)?.unwrap_or(u64::MAX),
    })
}

fn field<'a>(row: &'a SimpleQueryRow, name: &str) -> Result<Option<&'a str>, ProbeError> {
    row.try_get(name).map_err(|e| ProbeError::Unexpected(format!("column {name}: {e}")))
}

fn parse_bool(value: Option<&str>) -> Result<bool, ProbeError> {
    match value {
        Some("t") => Ok(true),
        Some("f") => Ok(false),
        other => Err(ProbeError::Unexpected(format!("not a boolean: {other:?}"))),
    }
}

fn number<T: std::str::FromStr>(value: Option<&str>) -> Result<Option<T>, ProbeError> {
    value.map(|v| v.parse().map_err(|_| ProbeError::Unexpected(format!("not a number: {v:?}")))).transpose()
}

fn lsn(value: Option<&str>) -> Result<u64, ProbeError> {
    value.map_or(Ok(0), |v| parse_lsn(v).map_err(|e| ProbeError::Unexpected(e.to_string())))
}

/// The server's message when there is one (tokio-postgres' `Display` says
/// only "db error"), else the client's.
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => {
            let source = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
            format!("{e}{source}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_keys_and_quoted_values_parse() {
        let parsed =
            parse_conninfo("host=10.0.0.1 port = 5432 password='it\\'s a \\\\x' application_name=pg-2")
                .unwrap();
        assert_eq!(parsed["host"], "10.0.0.1");
        assert_eq!(parsed["port"], "5432");
        assert_eq!(parsed["password"], "it's a \\x");
        assert_eq!(parsed["application_name"], "pg-2");
        assert_eq!(parse_conninfo(""), Some(BTreeMap::new()));
    }

    #[test]
    fn malformed_conninfo_is_none_not_a_panic() {
        for bad in ["postgresql://h:5/db", "host", "host='open", "=x", "host=a\\", "a b=c"] {
            assert_eq!(parse_conninfo(bad), None, "{bad:?}");
        }
    }

    fn facts(status: &str, host: &str, port: u16, conninfo: &str) -> SqlFacts {
        SqlFacts {
            in_recovery: true,
            timeline: 1,
            write_lsn: 0,
            receive_lsn: 0,
            replay_lsn: 0,
            receiver: Some(WalReceiver {
                status: status.into(),
                received_tli: 1,
                sender_host: Some(host.into()),
                sender_port: Some(port),
            }),
            primary_conninfo: conninfo.into(),
            upstream: None,
            replication: Vec::new(),
            sync_standby_names: SyncNames::default(),
            history: Vec::new(),
        }
    }

    #[test]
    fn streaming_counts_only_from_the_configured_host_and_port() {
        let conninfo = "host=127.0.0.1 port=5433 user=postgres";
        assert!(facts("streaming", "127.0.0.1", 5433, conninfo).streaming_from_conninfo());
        assert!(!facts("streaming", "127.0.0.1", 5434, conninfo).streaming_from_conninfo());
        assert!(!facts("streaming", "10.0.0.9", 5433, conninfo).streaming_from_conninfo());
        assert!(!facts("waiting", "127.0.0.1", 5433, conninfo).streaming_from_conninfo());
        assert!(facts("streaming", "h", 5432, "host=h").streaming_from_conninfo());
        let mut none = facts("streaming", "h", 1, "");
        none.receiver = None;
        assert!(!none.streaming_from_conninfo());
    }
}
