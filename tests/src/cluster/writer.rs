//! A client workload that writes one row at a time and records which
//! writes were acknowledged, and when, so that lost writes and split brain
//! show in data rather than being inferred from roles.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// One write every this often, per writing task.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(50);
/// A write not answered within this is a failure whose outcome is unknown
/// (it may have committed): the writer drops the connection and does not
/// count it as acknowledged. Postgres' own `statement_timeout` is not
/// used: cancelling a commit that waits for a synchronous standby makes
/// Postgres *acknowledge* it with only a warning.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connecting and `pg_is_in_recovery()`; a dead node refuses at once.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS keel_writes(id bigint primary key, at timestamptz default now())";

/// Ids are unique in the test process, across writers, so that two writers
/// on one cluster (the primary-following one and the every-node prober)
/// never collide.
static NEXT_ID: AtomicI64 = AtomicI64::new(1);

/// A node the writer may write through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub port: u16,
}

/// A write the server acknowledged: it committed somewhen between
/// `sent_at` and `acked_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub id: i64,
    pub node: String,
    pub sent_at: Instant,
    pub acked_at: Instant,
}

/// A write that failed, or a tick with no node to write to (`id` and
/// `node` are then `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub id: Option<i64>,
    pub node: Option<String>,
    pub at: Instant,
    pub error: String,
}

/// What a writer saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteLog {
    /// In the order they were acknowledged, per writing task.
    pub acks: Vec<Ack>,
    pub failures: Vec<Failure>,
}

/// A run of acknowledged writes on one node, with no write acknowledged by
/// another node in between (acks ordered by `sent_at`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Era {
    pub node: String,
    pub first_sent: Instant,
    pub last_sent: Instant,
    /// The latest acknowledgement of the era: every write of the era
    /// committed by then.
    pub last_acked: Instant,
    pub writes: usize,
}

/// The longest time between two consecutive acknowledgements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from: Instant,
    pub to: Instant,
}

impl Gap {
    pub fn duration(&self) -> Duration {
        self.to - self.from
    }
}

impl WriteLog {
    pub fn acked_ids(&self) -> BTreeSet<i64> {
        self.acks.iter().map(|a| a.id).collect()
    }

    /// Acknowledged ids that `present` (the ids a node holds) lacks: lost
    /// writes, or writes a replica has not replayed yet.
    pub fn missing_from(&self, present: &BTreeSet<i64>) -> Vec<i64> {
        self.acked_ids().difference(present).copied().collect()
    }

    /// The longest time between consecutive acknowledgements (`None` with
    /// fewer than two).
    pub fn longest_gap(&self) -> Option<Gap> {
        self.gaps().into_iter().max_by_key(Gap::duration)
    }

    /// The longest time between consecutive acknowledgements among those
    /// that end between `from` and `to` (the gap an event at `from`
    /// caused, when the next event comes at `to`).
    pub fn longest_gap_in(&self, from: Instant, to: Instant) -> Option<Gap> {
        self.gaps().into_iter().filter(|g| g.to >= from && g.to <= to).max_by_key(Gap::duration)
    }

    fn gaps(&self) -> Vec<Gap> {
        let mut times: Vec<Instant> = self.acks.iter().map(|a| a.acked_at).collect();
        times.sort();
        times.windows(2).map(|w| Gap { from: w[0], to: w[1] }).collect()
    }

    /// The first write sent at or after `t` that `node` acknowledged (any
    /// node when `None`).
    pub fn first_ack_after(&self, t: Instant, node: Option<&str>) -> Option<&Ack> {
        self.acks
            .iter()
            .filter(|a| a.sent_at >= t && node.is_none_or(|n| a.node == n))
            .min_by_key(|a| a.sent_at)
    }

    /// The first write acknowledged by a node other than `old`, sent at or
    /// after `t`: the first write on a new primary after a fault at `t`.
    pub fn first_ack_elsewhere(&self, t: Instant, old: &str) -> Option<&Ack> {
        self.acks.iter().filter(|a| a.sent_at >= t && a.node != old).min_by_key(|a| a.sent_at)
    }

    /// The last write `node` acknowledged (by acknowledgement time).
    pub fn last_ack_on(&self, node: &str) -> Option<&Ack> {
        self.acks.iter().filter(|a| a.node == node).max_by_key(|a| a.acked_at)
    }

    pub fn acks_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Ack> + 'a {
        self.acks.iter().filter(move |a| a.node == node)
    }

    /// The nodes that acknowledged writes, era by era (see [`Era`]).
    pub fn eras(&self) -> Vec<Era> {
        let mut acks: Vec<&Ack> = self.acks.iter().collect();
        acks.sort_by_key(|a| (a.sent_at, a.id));
        let mut eras: Vec<Era> = Vec::new();
        for ack in acks {
            match eras.last_mut() {
                Some(era) if era.node == ack.node => {
                    era.last_sent = ack.sent_at;
                    era.last_acked = era.last_acked.max(ack.acked_at);
                    era.writes += 1;
                }
                _ => eras.push(Era {
                    node: ack.node.clone(),
                    first_sent: ack.sent_at,
                    last_sent: ack.sent_at,
                    last_acked: ack.acked_at,
                    writes: 1,
                }),
            }
        }
        eras
    }

    /// Where two nodes may have accepted writes at the same time: each pair
    /// of consecutive eras where the earlier one's last acknowledgement
    /// came after the later one's first write was sent, so the two commit
    /// windows overlap. Empty means the acknowledged writes prove one
    /// writable node at a time. (Consecutive eras suffice: eras are
    /// ordered by their first write.)
    pub fn overlaps(&self) -> Vec<String> {
        self.eras()
            .windows(2)
            .filter(|w| w[0].last_acked >= w[1].first_sent)
            .map(|w| {
                format!(
                    "{} acknowledged a write {:?} after {} had been sent one ({} then {} writes)",
                    w[0].node,
                    w[0].last_acked - w[1].first_sent,
                    w[1].node,
                    w[0].writes,
                    w[1].writes
                )
            })
            .collect()
    }

    /// Nodes with more than one era: a node that acknowledged writes, then
    /// another did, then it did again. Legitimate after a switchback, but
    /// no scenario's writer window holds one: the era check
    /// ([`WriteLog::overlaps`]) cannot tell a quick switchback from two
    /// writable nodes whose samples happened to interleave.
    pub fn returning_nodes(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut returning = BTreeSet::new();
        for era in self.eras() {
            if !seen.insert(era.node.clone()) {
                returning.insert(era.node);
            }
        }
        returning.into_iter().collect()
    }

    /// Counts, eras, the longest gap and the last failures, relative to
    /// `origin` (the start of the test, say).
    pub fn summary(&self, origin: Instant) -> String {
        let at = |t: Instant| format!("{:.2}s", t.saturating_duration_since(origin).as_secs_f64());
        let mut out = format!("{} acknowledged, {} failed", self.acks.len(), self.failures.len());
        for era in self.eras() {
            let _ = write!(
                out,
                "\n  era {}: {} writes sent {}..{}, last acked {}",
                era.node,
                era.writes,
                at(era.first_sent),
                at(era.last_sent),
                at(era.last_acked)
            );
        }
        if let Some(gap) = self.longest_gap() {
            let _ =
                write!(out, "\n  longest gap {:?} from {} to {}", gap.duration(), at(gap.from), at(gap.to));
        }
        let skip = self.failures.len().saturating_sub(8);
        for f in self.failures.iter().skip(skip) {
            let node = f.node.as_deref().unwrap_or("-");
            let _ = write!(out, "\n  failed at {} on {node}: {}", at(f.at), f.error);
        }
        out
    }
}

/// Writes in the background (tokio tasks on the current runtime) until
/// stopped; the record can be read at any time.
pub struct Writer {
    log: Arc<Mutex<WriteLog>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Writer {
    /// One row every [`WRITE_INTERVAL`] through whichever node answers as
    /// primary: the last node that acknowledged, else the first of
    /// `endpoints` (scanned from the last good one) where
    /// `pg_is_in_recovery()` is false. It creates `keel_writes` on each
    /// primary it finds, if absent.
    pub fn follow_primary(endpoints: Vec<Endpoint>) -> Writer {
        assert!(!endpoints.is_empty(), "a writer needs at least one node");
        let (stop, stop_rx) = watch::channel(false);
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let task = tokio::spawn(follow(endpoints, Arc::clone(&log), stop_rx));
        Writer { log, stop, tasks: vec![task], started: Instant::now() }
    }

    /// One row every [`WRITE_INTERVAL`] through `127.0.0.1:port` (a proxy
    /// such as HAProxy's primary port), as an application with one pooled
    /// connection writes: it keeps the connection while writes succeed and
    /// opens a new one after any failure, without asking whether the
    /// server is a primary. Each acknowledgement is labelled with the node
    /// behind the proxy, found by `inet_server_port()` among `nodes`.
    pub fn through_proxy(port: u16, nodes: Vec<Endpoint>) -> Writer {
        let (stop, stop_rx) = watch::channel(false);
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let task = tokio::spawn(proxied(port, nodes, Arc::clone(&log), stop_rx));
        Writer { log, stop, tasks: vec![task], started: Instant::now() }
    }

    /// One task per node, each writing a row every [`WRITE_INTERVAL`] to
    /// its own node only, primary or not: the split-brain detector. A
    /// replica refuses (recorded as a failure); two nodes acknowledging in
    /// overlapping windows show in [`WriteLog::overlaps`].
    pub fn every_node(endpoints: Vec<Endpoint>) -> Writer {
        let (stop, stop_rx) = watch::channel(false);
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let tasks = endpoints
            .into_iter()
            .map(|endpoint| tokio::spawn(pinned(endpoint, Arc::clone(&log), stop_rx.clone())))
            .collect();
        Writer { log, stop, tasks, started: Instant::now() }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// A copy of the record so far.
    pub fn log(&self) -> WriteLog {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until an acknowledged write satisfies `check`, for at most
    /// `timeout`, and returns the first such write (by send time); panics
    /// with the record's summary otherwise.
    pub async fn wait_for_ack(&self, timeout: Duration, what: &str, check: impl Fn(&Ack) -> bool) -> Ack {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(ack) = log.acks.iter().filter(|a| check(a)).min_by_key(|a| a.sent_at) {
                return ack.clone();
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for an acknowledged write: {what}\nwriter: {}",
                log.summary(self.started)
            );
            tokio::time::sleep(WRITE_INTERVAL).await;
        }
    }

    /// Stops writing (after the writes in flight, [`WRITE_TIMEOUT`] at most)
    /// and returns the record.
    pub async fn stop(self) -> WriteLog {
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.clone()
    }
}

/// Connects to `127.0.0.1:port` as `postgres`/`postgres` on `postgres`.
pub async fn connect(port: u16, application_name: &str, timeout: Duration) -> Result<Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password("postgres")
        .dbname("postgres")
        .application_name(application_name)
        .connect_timeout(timeout);
    let (client, connection) = match tokio::time::timeout(timeout, config.connect(NoTls)).await {
        Err(_) => return Err(format!("no connection within {timeout:?}")),
        Ok(Err(e)) => return Err(error_text(&e)),
        Ok(Ok(pair)) => pair,
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The server's message and SQLSTATE when there is one (tokio-postgres'
/// `Display` of a server error says only "db error").
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        // "error connecting to server" needs its cause: "Connection refused".
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn record(log: &Mutex<WriteLog>, entry: Result<Ack, Failure>) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    match entry {
        Ok(ack) => log.acks.push(ack),
        Err(failure) => log.failures.push(failure),
    }
}

fn failure(id: Option<i64>, node: Option<&str>, error: String) -> Failure {
    Failure { id, node: node.map(str::to_owned), at: Instant::now(), error }
}

/// Why one insert failed, and whether the connection is still good.
struct WriteError {
    text: String,
    keep_connection: bool,
}

async fn insert(client: &Client, id: i64) -> Result<(), WriteError> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
    let insert = client.execute("INSERT INTO keel_writes (id) VALUES ($1)", &params);
    match tokio::time::timeout(WRITE_TIMEOUT, insert).await {
        Err(_) => Err(WriteError {
            text: format!("no answer within {WRITE_TIMEOUT:?} (outcome unknown)"),
            keep_connection: false,
        }),
        Ok(Err(e)) => Err(WriteError {
            text: error_text(&e),
            keep_connection: e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        }),
        Ok(Ok(_)) => Ok(()),
    }
}

/// A connection to `endpoint`; with `require_primary`, only if the server
/// is not in recovery. On a primary, creates the table if absent.
async fn open(endpoint: &Endpoint, require_primary: bool) -> Result<Client, String> {
    let client = connect(endpoint.port, "keel-tests-writer", CONNECT_TIMEOUT).await?;
    let in_recovery = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.query_one("SELECT pg_is_in_recovery()", &[]),
    )
    .await
    {
        Err(_) => return Err("pg_is_in_recovery() did not answer".into()),
        Ok(Err(e)) => return Err(error_text(&e)),
        Ok(Ok(row)) => row.try_get::<_, bool>(0).map_err(|e| error_text(&e))?,
    };
    if in_recovery {
        return if require_primary { Err("in recovery".into()) } else { Ok(client) };
    }
    match tokio::time::timeout(WRITE_TIMEOUT, client.batch_execute(CREATE_TABLE)).await {
        Err(_) => Err(format!("creating keel_writes: no answer within {WRITE_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("creating keel_writes: {}", error_text(&e))),
        Ok(Ok(())) => Ok(client),
    }
}

/// The first of `endpoints`, starting at `first`, that answers as primary.
async fn find_primary(endpoints: &[Endpoint], first: usize) -> Result<(usize, Client), String> {
    let mut why = Vec::new();
    for k in 0..endpoints.len() {
        let index = (first + k) % endpoints.len();
        match open(&endpoints[index], true).await {
            Ok(client) => return Ok((index, client)),
            Err(e) => why.push(format!("{}: {e}", endpoints[index].name)),
        }
    }
    Err(format!("no node answers as primary ({})", why.join("; ")))
}

/// Waits for the next tick; false when the writer is stopped (or dropped).
async fn tick(interval: &mut tokio::time::Interval, stop: &mut watch::Receiver<bool>) -> bool {
    let ticked = tokio::select! {
        _ = interval.tick() => true,
        _ = stop.wait_for(|stop| *stop) => false,
    };
    ticked && !*stop.borrow()
}

fn ticker() -> tokio::time::Interval {
    let mut interval = tokio::time::interval(WRITE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

async fn follow(endpoints: Vec<Endpoint>, log: Arc<Mutex<WriteLog>>, mut stop: watch::Receiver<bool>) {
    let mut interval = ticker();
    let mut current: Option<(usize, Client)> = None;
    let mut last_good = 0;
    while tick(&mut interval, &mut stop).await {
        let (index, client) = match current.take() {
            Some(found) => found,
            None => match find_primary(&endpoints, last_good).await {
                Ok(found) => found,
                Err(why) => {
                    record(&log, Err(failure(None, None, why)));
                    continue;
                }
            },
        };
        let node = &endpoints[index].name;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        match insert(&client, id).await {
            Ok(()) => {
                let ack = Ack { id, node: node.clone(), sent_at, acked_at: Instant::now() };
                record(&log, Ok(ack));
                last_good = index;
                current = Some((index, client));
            }
            // Whatever failed, find the primary again: a demoted node
            // answers "read-only", a dead one not at all.
            Err(e) => record(&log, Err(failure(Some(id), Some(node), e.text))),
        }
    }
}

async fn pinned(endpoint: Endpoint, log: Arc<Mutex<WriteLog>>, mut stop: watch::Receiver<bool>) {
    let mut interval = ticker();
    let mut current: Option<Client> = None;
    while tick(&mut interval, &mut stop).await {
        let client = match current.take() {
            Some(client) => client,
            None => match open(&endpoint, false).await {
                Ok(client) => client,
                Err(why) => {
                    record(&log, Err(failure(None, Some(&endpoint.name), why)));
                    continue;
                }
            },
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        match insert(&client, id).await {
            Ok(()) => {
                let ack = Ack { id, node: endpoint.name.clone(), sent_at, acked_at: Instant::now() };
                record(&log, Ok(ack));
                current = Some(client);
            }
            Err(e) => {
                record(&log, Err(failure(Some(id), Some(&endpoint.name), e.text)));
                // A replica stays connected (and keeps refusing) until it is
                // promoted; `open` creates the table then, if need be.
                if e.keep_connection {
                    current = Some(client);
                }
            }
        }
    }
}

/// A connection through the proxy on `port`, and the name of the node
/// behind it. Creates the table if the node is a primary.
async fn open_proxied(port: u16, nodes: &[Endpoint]) -> Result<(String, Client), String> {
    let client = connect(port, "keel-tests-proxy-writer", CONNECT_TIMEOUT).await?;
    let query = client.query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[]);
    let row = match tokio::time::timeout(CONNECT_TIMEOUT, query).await {
        Err(_) => return Err("inet_server_port() did not answer".into()),
        Ok(Err(e)) => return Err(error_text(&e)),
        Ok(Ok(row)) => row,
    };
    let server_port: i32 = row.try_get(0).map_err(|e| error_text(&e))?;
    let in_recovery: bool = row.try_get(1).map_err(|e| error_text(&e))?;
    let node = nodes
        .iter()
        .find(|n| i32::from(n.port) == server_port)
        .map(|n| n.name.clone())
        .ok_or_else(|| format!("the proxy led to port {server_port}, which is no node's"))?;
    if !in_recovery {
        match tokio::time::timeout(WRITE_TIMEOUT, client.batch_execute(CREATE_TABLE)).await {
            Err(_) => return Err(format!("creating keel_writes: no answer within {WRITE_TIMEOUT:?}")),
            Ok(Err(e)) => return Err(format!("creating keel_writes: {}", error_text(&e))),
            Ok(Ok(())) => {}
        }
    }
    Ok((node, client))
}

async fn proxied(
    port: u16,
    nodes: Vec<Endpoint>,
    log: Arc<Mutex<WriteLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = ticker();
    let mut current: Option<(String, Client)> = None;
    while tick(&mut interval, &mut stop).await {
        let (node, client) = match current.take() {
            Some(found) => found,
            None => match open_proxied(port, &nodes).await {
                Ok(found) => found,
                Err(why) => {
                    record(&log, Err(failure(None, None, format!("through the proxy: {why}"))));
                    continue;
                }
            },
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        match insert(&client, id).await {
            Ok(()) => {
                let ack = Ack { id, node: node.clone(), sent_at, acked_at: Instant::now() };
                record(&log, Ok(ack));
                current = Some((node, client));
            }
            Err(e) => record(&log, Err(failure(Some(id), Some(&node), e.text))),
        }
    }
}
