//! What the simulated nodes share outside the network: every node's
//! Postgres model, the etcd store, which node-to-node links are cut, the
//! client's acknowledged writes, and the checkers, which run after every
//! event that can change what they check.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use keel_core::{DynamicConfig, PgProcess, StandbySyncState, Tags};
use keel_runtime::agent::command::Command;
use keel_runtime::api::SharedStatus;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cluster::Outcome;
use crate::kv_model::KvModel;
use crate::pg_model::PgModel;

pub type Shared = Arc<Mutex<World>>;

pub fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct World {
    pub names: Vec<String>,
    pub pg: Vec<PgModel>,
    /// The node's agent process runs (not crashed).
    pub agent_up: Vec<bool>,
    /// Each agent's published status (what HAProxy asks over REST).
    pub status: Vec<Option<SharedStatus>>,
    /// Nodes cut off from the other nodes (replication, failsafe).
    pub isolated: BTreeSet<usize>,
    /// Each running agent's command channel (what SIGTERM uses).
    pub commands: Vec<Option<mpsc::Sender<Command>>>,
    /// One-way cuts between nodes: traffic from `.0` to `.1` is lost.
    pub cut: BTreeSet<(usize, usize)>,
    pub kv: KvModel,
    /// etcd answers nobody (outage, lost quorum).
    pub etcd_down: bool,
    /// etcd answers this late (ms).
    pub etcd_delay_ms: u64,
    /// etcd loses an answer now and then (runs with faults).
    pub lossy: bool,
    /// The leader key's path.
    pub leader_key: String,
    pub cfg: DynamicConfig,
    /// Per primary: when each standby streaming from it last replied, and
    /// the flush position that reply carried (`pg_stat_replication`).
    pub replies: Vec<BTreeMap<String, (u64, u64)>>,
    /// Per node: its last pg_rewind failed and no base backup followed yet.
    pub rewind_failed: Vec<bool>,
    next_branch: u64,
    /// Acknowledged client writes: (WAL branch, lsn).
    pub acked: Vec<(u64, u64)>,
    pub out: Outcome,
    hash: u64,
    start: Instant,
    pub verbose: bool,
    /// Who held the leader key at the last check (failover counting).
    last_leader: Option<String>,
    /// The event trace, when recording (`record.rs`).
    pub trace: Option<crate::trace::Recorder>,
    /// HAProxy's view of each node as a server of its primary backend.
    pub haproxy: Vec<HaServer>,
    /// The server the client's connection through HAProxy is open to.
    pub session: Option<usize>,
    /// Each member's tags, as its agent reads them.
    pub tags: Vec<Tags>,
    /// Members whose agent is frozen (a process pause).
    pub frozen: BTreeSet<usize>,
    /// Members cut off from etcd (either way).
    pub etcd_cut: BTreeSet<usize>,
    /// Maintenance mode: `pause` set in the `config` key.
    pub paused: bool,
    /// Failures active now (operator requests and pause left out).
    pub failures_active: usize,
    /// The progress checkers start here (after the cluster formed).
    pub checks_from_ms: u64,
    /// Each node's clock (the schedule of a switchover is the leader's).
    pub clocks: Vec<keel_runtime::agent::Clock>,
    /// The member that last accepted writes alone: the history a
    /// candidate must share.
    last_primary: Option<usize>,
    /// The last progress check (ms).
    last_progress_ms: u64,
    /// Since when no writable primary answers while a fit candidate and
    /// etcd are there; whether that period was reported.
    leaderless_since: Option<(u64, bool)>,
    /// The operator's request not yet carried out or refused.
    pub request: Option<PendingRequest>,
    /// Since when the sync key names only members that may not fail over
    /// while one that may streams; whether it was reported.
    sync_unfit_since: Option<(u64, bool)>,
    /// Since when the leader key's holder has run Postgres as a replica
    /// (rule 9), with etcd up; whether it was reported.
    replica_holds_key_since: Option<(u64, bool)>,
    /// Since when the sync key names a standby that stopped confirming
    /// while another could replace it (rule 8); whether it was reported.
    silent_sync_since: Option<(u64, bool)>,
}

/// An operator's switchover or failover request in the `failover` key.
#[derive(Clone, Debug)]
pub struct PendingRequest {
    pub what: String,
    /// When it is due (its `scheduled_at`, or when it was written).
    pub due_ms: u64,
    /// Time since then with etcd up and no failure active.
    pub calm_ms: u64,
    /// It was made while the cluster was paused.
    pub paused: bool,
    /// Its `scheduled_at`: due once the leader key holder's wall clock
    /// reads it (clocks jump), not at `due_ms`.
    pub scheduled_wall_ms: Option<i64>,
    /// A failure was active at some point while the cluster was paused
    /// and the request pending: it may have taken the primary away
    /// (fencing, or a paused lock holder's Postgres stopping), and paused,
    /// nobody promotes again on their own.
    pub excused: bool,
}

/// HAProxy's check state of one server (the guide's `inter 3s fall 3
/// rise 2`). Servers start DOWN: none is routed to before it passed two
/// checks.
#[derive(Clone, Debug, Default)]
pub struct HaServer {
    pub up: bool,
    successes: u32,
    failures: u32,
}

/// The guide's HAProxy check timing.
pub const HAPROXY_INTER_MS: u64 = 3_000;
const HAPROXY_RISE: u32 = 2;
const HAPROXY_FALL: u32 = 3;

impl World {
    pub fn new(
        names: Vec<String>,
        leader_key: String,
        cfg: DynamicConfig,
        out: Outcome,
        verbose: bool,
    ) -> World {
        let n = names.len();
        World {
            pg: vec![PgModel::empty(); n],
            agent_up: vec![false; n],
            status: vec![None; n],
            commands: vec![None; n],
            cut: BTreeSet::new(),
            replies: vec![BTreeMap::new(); n],
            rewind_failed: vec![false; n],
            names,
            isolated: BTreeSet::new(),
            kv: KvModel::new(),
            etcd_down: false,
            etcd_delay_ms: 0,
            lossy: false,
            leader_key,
            cfg,
            next_branch: 1,
            acked: Vec::new(),
            out,
            hash: 0xcbf2_9ce4_8422_2325,
            start: Instant::now(),
            verbose,
            last_leader: None,
            trace: None,
            haproxy: vec![HaServer::default(); n],
            session: None,
            tags: vec![Tags::new(); n],
            frozen: BTreeSet::new(),
            etcd_cut: BTreeSet::new(),
            paused: false,
            failures_active: 0,
            checks_from_ms: 0,
            clocks: Vec::new(),
            last_primary: None,
            last_progress_ms: 0,
            leaderless_since: None,
            request: None,
            sync_unfit_since: None,
            replica_holds_key_since: None,
            silent_sync_since: None,
        }
    }

    /// True simulated time: etcd's clock and the checkers'.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn trace_hash(&self) -> u64 {
        self.hash
    }

    /// Records an event in the trace hash (and prints it when verbose),
    /// then runs the safety checkers.
    pub fn event(&mut self, text: &str) {
        let line = format!("{} {text}", self.now_ms());
        if self.verbose {
            println!("{:>9.3} {text}", self.now_ms() as f64 / 1000.0);
        }
        for b in line.as_bytes() {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        if self.trace.is_some() {
            self.record(crate::trace::What::Log { text: text.to_owned() });
            self.sample();
        }
        self.check_split_brain();
    }

    pub fn violation(&mut self, what: String) {
        let line = format!("t={:.3}s {what}", self.now_ms() as f64 / 1000.0);
        if self.verbose {
            println!("VIOLATION {line}");
        }
        if !self.out.violations.contains(&line) && self.out.violations.len() < 20 {
            self.record(crate::trace::What::Violation { text: what });
            self.out.violations.push(line);
        }
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn connected(&self, a: usize, b: usize) -> bool {
        a == b || (!self.isolated.contains(&a) && !self.isolated.contains(&b))
    }

    /// Traffic from `a` gets to `b` (no isolation, no one-way cut).
    pub fn reaches(&self, a: usize, b: usize) -> bool {
        self.connected(a, b) && !self.cut.contains(&(a, b))
    }

    pub fn branch(&mut self) -> u64 {
        self.next_branch += 1;
        self.next_branch
    }

    /// The leader key's holder now, by etcd's clock (expired leases gone).
    pub fn leader(&mut self) -> Option<String> {
        if !self.etcd_down {
            let now = self.now_ms();
            self.kv.expire(now);
        }
        let key = self.leader_key.clone();
        self.kv.holder(&key).map(|(name, _)| name)
    }

    /// Notes leader key changes (for the summary and the trace).
    pub fn watch_leader(&mut self) {
        let leader = self.leader();
        if leader != self.last_leader {
            self.event(&format!("leader key: {:?} -> {leader:?}", self.last_leader));
            self.record(crate::trace::What::LeaderKey { holder: leader.clone() });
            self.last_leader = leader;
        }
    }

    fn writable(&self, i: usize) -> bool {
        self.pg[i].process == PgProcess::RunningPrimary
    }

    /// Safety: never two nodes accepting writes at the same instant.
    fn check_split_brain(&mut self) {
        let writable: Vec<String> =
            (0..self.names.len()).filter(|i| self.writable(*i)).map(|i| self.names[i].clone()).collect();
        if writable.len() > 1 {
            self.violation(format!("split brain: {} all accept writes", writable.join(", ")));
        } else if !writable.is_empty() {
            self.last_primary = self.index(&writable[0]);
        }
    }

    /// Streams WAL from each replica's upstream, along a linear history,
    /// where the nodes can reach each other.
    pub fn replicate(&mut self) {
        let now = self.now_ms();
        for i in 0..self.names.len() {
            // A full disk takes no more WAL either.
            if self.pg[i].process != PgProcess::RunningReplica || self.pg[i].disk_full {
                self.pg[i].streaming &= !self.pg[i].disk_full;
                continue;
            }
            let upstream = self.pg[i].upstream.as_deref().and_then(|u| self.index(u));
            let source = upstream.filter(|u| {
                self.pg[*u].is_running()
                    && self.reaches(*u, i)
                    && self.pg[i].wal.is_prefix_of(&self.pg[*u].wal)
            });
            match source {
                Some(u) => {
                    let wal = self.pg[u].wal.clone();
                    let name = self.names[i].clone();
                    self.pg[i].wal = wal;
                    if self.reaches(i, u) {
                        self.replies[u].insert(name, (now, self.pg[i].wal.lsn()));
                    }
                    self.pg[i].streaming = true;
                }
                None => self.pg[i].streaming = false,
            }
        }
    }

    /// The standbys streaming from `p` right now.
    fn streaming_from(&self, p: usize) -> Vec<usize> {
        let name = &self.names[p];
        (0..self.names.len())
            .filter(|i| {
                let pg = &self.pg[*i];
                *i != p
                    && pg.process == PgProcess::RunningReplica
                    && pg.streaming
                    && pg.upstream.as_deref() == Some(name)
                    && self.reaches(p, *i)
                    && pg.wal.is_prefix_of(&self.pg[p].wal)
            })
            .collect()
    }

    /// `pg_stat_replication` on `p`.
    pub fn pg_stat_replication(&self, p: usize) -> Vec<keel_core::Standby> {
        if self.pg[p].process != PgProcess::RunningPrimary {
            return Vec::new();
        }
        let names = &self.pg[p].sync_names;
        let now = self.now_ms();
        self.streaming_from(p)
            .into_iter()
            .map(|i| {
                let name = &self.names[i];
                // What the primary heard last: a standby whose replies never
                // reached it has no reply time (the runtime's probe reads
                // that as stale) and no flush position.
                let (reply_age_ms, flush_lsn) = self.replies[p]
                    .get(name)
                    .map_or((u64::MAX, 0), |(at, lsn)| (now.saturating_sub(*at), *lsn));
                let sync_state = match (names.members.contains(name), names.quorum) {
                    (true, true) => StandbySyncState::Quorum,
                    (true, false) => StandbySyncState::Sync,
                    (false, _) => StandbySyncState::Async,
                };
                keel_core::Standby {
                    name: name.clone(),
                    streaming: true,
                    sync_state,
                    flush_lsn,
                    reply_age_ms,
                }
            })
            .collect()
    }

    /// Whether `i` answers `/primary` right now: its agent runs and its
    /// status says running primary with its lease ahead (what HAProxy's
    /// health check asks, and what liveness needs).
    fn answers_primary(&self, i: usize) -> bool {
        let now = Instant::now();
        self.agent_up[i]
            && self.status[i].as_ref().is_some_and(|s| {
                let s = s.read().unwrap_or_else(PoisonError::into_inner);
                s.running_primary && s.lease_deadline.is_some_and(|d| d > now)
            })
    }

    /// A writable primary that answers `/primary`, asked directly (the
    /// liveness checker's view, not HAProxy's).
    pub fn answering_primary(&self) -> Option<usize> {
        (0..self.names.len()).find(|i| self.writable(*i) && self.answers_primary(*i))
    }

    /// One HAProxy health check of server `i` (`option httpchk OPTIONS
    /// /primary`, `rise 2 fall 3`): UP after two successes in a row, DOWN
    /// after three failures, and a server marked down has its sessions cut
    /// (`on-marked-down shutdown-sessions`).
    pub fn haproxy_check(&mut self, i: usize) {
        let ok = self.answers_primary(i);
        let server = &mut self.haproxy[i];
        let was_up = server.up;
        if ok {
            server.failures = 0;
            server.successes += 1;
            server.up |= server.successes >= HAPROXY_RISE;
        } else {
            server.successes = 0;
            server.failures += 1;
            server.up &= server.failures < HAPROXY_FALL;
        }
        if server.up != was_up {
            let state = if server.up { "UP" } else { "DOWN" };
            if !server.up && self.session == Some(i) {
                self.session = None;
            }
            let text = format!("haproxy: {} is {state}", self.names[i]);
            self.event(&text);
        }
    }

    /// The server HAProxy sends the client's next write to: the one its
    /// session is open to while that is UP, else the first UP by name.
    pub fn routed_primary(&self) -> Option<usize> {
        self.session
            .filter(|s| self.haproxy[*s].up)
            .or_else(|| (0..self.names.len()).find(|i| self.haproxy[*i].up))
    }

    /// One client write through HAProxy, acknowledged once its
    /// synchronous standbys have it. Postgres decides whether it takes it:
    /// a server that is not a running primary refuses (a stopped one
    /// closes the session too).
    pub fn client_write(&mut self) {
        let Some(p) = self.routed_primary() else {
            self.session = None;
            self.out.writes_failed += 1;
            return;
        };
        self.session = Some(p);
        if !self.pg[p].is_running() {
            self.session = None;
        }
        if !self.writable(p) {
            self.out.writes_failed += 1;
            return;
        }
        if self.pg[p].disk_full {
            // The commit's WAL cannot be written: Postgres PANICs.
            self.pg[p].crash();
            self.session = None;
            self.out.writes_failed += 1;
            let text = format!("{} PANIC: no space left for WAL", self.names[p]);
            self.event(&text);
            return;
        }
        let names = self.pg[p].sync_names.clone();
        let standbys: Vec<usize> =
            self.streaming_from(p).into_iter().filter(|i| names.members.contains(&self.names[*i])).collect();
        // Those whose acknowledgement gets back.
        let acking = standbys.iter().filter(|i| self.reaches(**i, p)).count();
        if !names.members.is_empty() && (acking as u32) < names.num.max(1) {
            // The commit record is in the primary's WAL already; the
            // commit waits for a standby that is not there: not
            // acknowledged.
            self.pg[p].write();
            self.out.writes_failed += 1;
            return;
        }
        let (branch, lsn) = self.pg[p].write();
        let wal = self.pg[p].wal.clone();
        for s in standbys {
            self.pg[s].wal = wal.clone();
        }
        self.check_sync_key_has(p, branch, lsn);
        self.acked.push((branch, lsn));
        self.out.writes_acked += 1;
    }

    /// Safety in `synchronous_mode_strict` (rule 3): a write `p`
    /// acknowledges is on every standby its sync key names, since any of
    /// them may be promoted next. Caught when acknowledged, before a
    /// failover turns it into a lost write.
    fn check_sync_key_has(&mut self, p: usize, branch: u64, lsn: u64) {
        if !self.cfg.synchronous_mode_strict {
            return;
        }
        let key = self.leader_key.replace("/leader", "/sync");
        let Some(sync) =
            self.kv.get(&key).and_then(|kv| keel_runtime::dcs::codec::parse_sync(&kv.value, 0).ok())
        else {
            return;
        };
        if sync.leader.as_deref() != Some(self.names[p].as_str()) {
            return;
        }
        let missing: Vec<&str> = sync
            .members
            .iter()
            .filter(|m| self.index(m).is_some_and(|i| !self.pg[i].wal.contains(branch, lsn)))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let what = format!(
                "{} acknowledged a write that its sync key's {} lacks (synchronous_mode_strict)",
                self.names[p],
                missing.join(", ")
            );
            self.violation(what);
        }
    }

    /// Liveness: a writable primary that answers `/primary`.
    pub fn check_liveness(&mut self, healed_at_ms: u64, bound_ms: u64) {
        if let Some(p) = self.answering_primary() {
            self.check_streaming(p);
            return;
        }
        if self.fit_candidates().is_empty() {
            // Tags, lag or the sync key leave nobody fit to lead (as in
            // Patroni): the promise holds only with a fit candidate.
            self.event("liveness: no writable primary, and no member fit to lead");
            return;
        }
        let states: Vec<String> = (0..self.names.len())
            .map(|i| {
                format!(
                    "{}: agent {}, {:?}",
                    self.names[i],
                    if self.agent_up[i] { "up" } else { "down" },
                    self.pg[i].process
                )
            })
            .collect();
        self.violation(format!(
            "liveness: no writable primary {bound_ms} ms after faults healed at {healed_at_ms} ms ({})",
            states.join(", ")
        ));
    }

    /// Liveness, second half: every other node whose agent runs streams
    /// from the primary `p`.
    ///
    /// A node whose history really diverged from the primary's may stay
    /// stopped, waiting for the operator, unless the operator allowed keel
    /// to delete its data (`remove_data_directory_on_*`, Patroni's defaults
    /// off): that is not a stall but the configured answer.
    pub fn check_streaming(&mut self, p: usize) {
        let streaming = self.streaming_from(p);
        let may_wait = !(self.cfg.remove_data_directory_on_rewind_failure
            && self.cfg.remove_data_directory_on_diverged_timelines);
        let waits_for_operator = |w: &Self, i: usize| {
            may_wait && w.pg[i].process == PgProcess::Stopped && !w.pg[i].wal.is_prefix_of(&w.pg[p].wal)
        };
        let idle: Vec<String> = (0..self.names.len())
            .filter(|i| *i != p && self.agent_up[*i] && !streaming.contains(i))
            .filter(|i| !waits_for_operator(self, *i))
            .map(|i| {
                format!("{} ({:?}, upstream {:?})", self.names[i], self.pg[i].process, self.pg[i].upstream)
            })
            .collect();
        if !idle.is_empty() {
            let primary = self.names[p].clone();
            self.violation(format!(
                "liveness: not streaming from the primary {primary}: {}",
                idle.join(", ")
            ));
        }
    }

    /// A member fit to lead now, by what the simulation knows (not by the
    /// engine's rules): its agent runs, unfrozen and in reach of etcd; its
    /// tags let it fail over; its Postgres runs with room for WAL; its
    /// history is that of the last primary (on its timeline, with
    /// `check_timeline`), at most `maximum_lag_on_failover` behind it; and
    /// with synchronous replication, it has every acknowledged write and
    /// the sync key allows it (`sync_fit`); in failsafe mode, the
    /// `failsafe` key lists it (`failsafe_allows`).
    pub fn fit_candidates(&self) -> Vec<usize> {
        let Some(reference) = self.last_primary.map(|p| &self.pg[p]) else {
            return Vec::new();
        };
        (0..self.names.len())
            .filter(|i| {
                let pg = &self.pg[*i];
                self.agent_up[*i]
                    && !self.frozen.contains(i)
                    && !self.etcd_cut.contains(i)
                    && self.tags[*i].can_fail_over()
                    && pg.is_running()
                    && !pg.disk_full
                    && pg.wal.is_prefix_of(&reference.wal)
                    && (!self.cfg.check_timeline || pg.wal.timeline() == reference.wal.timeline())
                    && reference.wal.lsn().saturating_sub(pg.wal.lsn())
                        <= self.cfg.maximum_lag_on_failover_bytes
                    && (!self.cfg.sync_enabled() || self.sync_fit(*i))
                    && self.failsafe_allows(*i)
            })
            .collect()
    }

    /// Whether fit candidate `i` waits, by the race's rule (Patroni's and
    /// keel's), for a member that cannot lead now but whose member key
    /// says it runs, may fail over and is ahead of `i` on the same or a
    /// newer timeline: a member cut from
    /// etcd, frozen, or just dead, whose key has not expired yet (at most
    /// `ttl`). Promoting `i` then could lose what only that member has.
    fn held_back(&self, i: usize, fit: &[usize]) -> bool {
        let (position, timeline) = (self.pg[i].wal.lsn(), self.pg[i].wal.timeline());
        (0..self.names.len()).filter(|j| *j != i && !fit.contains(j)).any(|j| {
            self.member_key(j).is_some_and(|m| {
                m.is_running()
                    && m.tags.can_fail_over()
                    && u64::from(m.timeline) >= u64::from(timeline)
                    && m.lsn > position
            })
        })
    }

    /// Member `i`'s key in etcd, as keel-core reads it.
    fn member_key(&self, i: usize) -> Option<keel_core::Member> {
        let key = self.leader_key.replace("/leader", &format!("/members/{}", self.names[i]));
        keel_runtime::dcs::codec::parse_member(&self.kv.get(&key)?.value).ok()
    }

    /// Member `i`'s key in etcd says its Postgres runs: the leader sees it
    /// as a standby it could name.
    fn visible(&self, i: usize) -> bool {
        self.member_key(i).is_some_and(|m| m.is_running())
    }

    /// In failsafe mode only the members the leader last listed in the
    /// `failsafe` key may lead (Patroni's rule, and keel's): a member left
    /// out cannot have answered the old leader's failsafe pings, so the old
    /// leader may still be running as primary without etcd. An empty key
    /// restricts nobody.
    fn failsafe_allows(&self, i: usize) -> bool {
        if !self.cfg.failsafe_mode {
            return true;
        }
        let key = self.leader_key.replace("/leader", "/failsafe");
        self.kv
            .get(&key)
            .and_then(|kv| keel_runtime::dcs::codec::parse_failsafe(&kv.value).ok())
            .is_none_or(|listed| listed.is_empty() || listed.contains(&self.names[i]))
    }

    /// With synchronous replication, `i` may lead as Patroni allows it: it
    /// has every acknowledged write, and the sync key names it (as leader
    /// or standby) or names no leader. A strict key naming no standby lets
    /// nobody but its leader lead, in Patroni as in keel (the engine cannot
    /// know who holds the commits then); keel keeps the last synchronous
    /// standby named instead (issue 12 defect 5, core scenario tests).
    fn sync_fit(&self, i: usize) -> bool {
        let has_all = self.acked.iter().all(|(b, l)| self.pg[i].wal.contains(*b, *l));
        let key = self.leader_key.replace("/leader", "/sync");
        let Some(sync) =
            self.kv.get(&key).and_then(|kv| keel_runtime::dcs::codec::parse_sync(&kv.value, 0).ok())
        else {
            return has_all;
        };
        let name = &self.names[i];
        let named =
            sync.leader.is_none() || sync.leader.as_ref() == Some(name) || sync.members.contains(name);
        has_all && named
    }

    /// The last decision `i`'s agent published (empty when it is down).
    fn last_reason(&self, i: usize) -> String {
        self.status[i].as_ref().map_or_else(String::new, |s| {
            s.read().unwrap_or_else(PoisonError::into_inner).last_reason.clone()
        })
    }

    /// The `failover` key's request, if one is there.
    fn failover_request(&self) -> Option<String> {
        let key = self.leader_key.replace("/leader", "/failover");
        let kv = self.kv.get(&key)?;
        let request = keel_runtime::dcs::codec::parse_failover(&kv.value, 0).ok()?;
        let any =
            request.leader.is_some() || request.candidate.is_some() || request.scheduled_at_wall_ms.is_some();
        any.then(|| String::from_utf8_lossy(&kv.value).into_owned())
    }

    /// Liveness while it runs (every replication tick), issue 16 item 8:
    /// - no leaderless period longer than ttl + loop_wait + retry_timeout
    ///   while a fit candidate and etcd are there (not counted while every
    ///   fit candidate is `held_back` by a member key, nor while the
    ///   cluster is paused, or while a leader key holder runs: it may try
    ///   to start its Postgres for `primary_start_timeout`);
    /// - an operator's request is carried out or refused (the `failover`
    ///   key gone, a primary answering) within ttl + 2 loop_wait +
    ///   2 retry_timeout of calm (etcd up, no failure active) after it is
    ///   due;
    /// - the sync key never names only members that may not fail over for
    ///   longer than two loops while one that may streams (issue 12
    ///   defect 4).
    pub fn check_progress(&mut self) {
        let now = self.now_ms();
        let dt = now.saturating_sub(self.last_progress_ms);
        self.last_progress_ms = now;
        if now < self.checks_from_ms {
            return;
        }
        let (ttl, loop_wait, retry) = (self.cfg.ttl_ms, self.cfg.loop_wait_ms, self.cfg.retry_timeout_ms);
        let primary = self.answering_primary();
        let etcd_ok = !self.etcd_down && self.etcd_delay_ms == 0;
        let holder = self.leader();
        let holder_runs = holder
            .as_deref()
            .and_then(|h| self.index(h))
            .is_some_and(|h| self.agent_up[h] && !self.frozen.contains(&h) && !self.etcd_cut.contains(&h));
        let fit = if primary.is_none() && etcd_ok && !self.paused && !holder_runs {
            let fit = self.fit_candidates();
            let free = fit.iter().any(|i| !self.held_back(*i, &fit));
            Some(fit).filter(|_| free)
        } else {
            None
        };
        match (fit, self.leaderless_since) {
            (None, _) => self.leaderless_since = None,
            (Some(_), None) => self.leaderless_since = Some((now, false)),
            (Some(c), Some((since, false))) if now - since > ttl + loop_wait + retry + 1_000 => {
                self.leaderless_since = Some((since, true));
                let request = self.failover_request().unwrap_or_else(|| "none".to_owned());
                let could: Vec<String> =
                    c.iter().map(|i| format!("{} says {:?}", self.names[*i], self.last_reason(*i))).collect();
                let sync_key = self.leader_key.replace("/leader", "/sync");
                let sync = self
                    .kv
                    .get(&sync_key)
                    .map_or("none".into(), |kv| String::from_utf8_lossy(&kv.value).into_owned());
                let what = format!(
                    "liveness: no writable primary for over ttl + loop_wait + retry_timeout ({} ms) while etcd \
                     answered and these could lead: {} (failover key: {request}; sync key: {sync})",
                    ttl + loop_wait + retry,
                    could.join("; ")
                );
                self.violation(what);
            }
            (Some(_), Some(_)) => {}
        }
        if let Some(mut r) = self.request.take() {
            let bound = ttl + 2 * loop_wait + 2 * retry + 1_000;
            // Carried out or refused, the key is gone and a primary answers
            // again, unless the cluster is paused and a failure may have
            // taken the primary away meanwhile.
            r.excused |= self.paused && self.failures_active > 0;
            let open =
                self.failover_request().is_some() || (primary.is_none() && !(self.paused && r.excused));
            let holder = holder.as_deref().and_then(|h| self.index(h));
            let due = match (r.scheduled_wall_ms, holder.and_then(|h| self.clocks.get(h))) {
                (Some(at), Some(clock)) => clock.wall_ms() >= at,
                _ => now >= r.due_ms,
            };
            // Paused, scheduled actions wait (Patroni's
            // `should_run_scheduled_action`, and keel).
            let waits = self.paused && r.scheduled_wall_ms.is_some();
            if open && due && etcd_ok && self.failures_active == 0 && !waits {
                r.calm_ms += dt;
            }
            if !open {
                // Carried out or refused.
            } else if r.calm_ms > bound {
                let key = self.failover_request().unwrap_or_else(|| "gone".to_owned());
                let primary = if primary.is_some() { "a primary answers" } else { "no primary answers" };
                let says: Vec<String> = (0..self.names.len())
                    .map(|i| format!("{}: {:?}", self.names[i], self.last_reason(i)))
                    .collect();
                self.violation(format!(
                    "liveness: the request {} was neither carried out nor refused within {bound} ms of calm \
                     (failover key: {key}; {primary}{}; {})",
                    r.what,
                    if r.paused { "; made while paused" } else { "" },
                    says.join(", ")
                ));
            } else {
                self.request = Some(r);
            }
        }
        let primary_sees_etcd =
            primary.filter(|p| etcd_ok && !self.etcd_cut.contains(p) && !self.frozen.contains(p));
        self.check_sync_fit(primary_sees_etcd, now);
        self.check_silent_sync(primary_sees_etcd, now);
        self.check_key_holder(now);
    }

    /// Rule 9: no replica holds the leader key. The holder whose Postgres
    /// runs as a replica promotes or releases the key at its next step, so
    /// it never holds it so for longer than ttl + loop_wait + retry_timeout
    /// (a holder whose agent died or lost etcd loses the key at its TTL).
    /// Not counted while etcd is down (its leases stand still then, as a
    /// real etcd's do until a leader is elected again) or slow: with every
    /// answer late, a holder's renewal is applied but never confirmed, so
    /// it cannot promote, and nobody else could confirm a lock either
    /// (seeds 13 and 39 showed it while the checker counted that). A holder whose
    /// Postgres is down or starting may keep the key while it starts its
    /// primary again, for `primary_start_timeout` (or for as long as no
    /// other member could take over): not judged here.
    fn check_key_holder(&mut self, now: u64) {
        let etcd_ok = !self.etcd_down && self.etcd_delay_ms == 0;
        let holder = if etcd_ok { self.leader() } else { None };
        let replica =
            holder.and_then(|h| self.index(&h)).filter(|h| self.pg[*h].process == PgProcess::RunningReplica);
        let bound = self.cfg.ttl_ms + self.cfg.loop_wait_ms + self.cfg.retry_timeout_ms + 1_000;
        match (replica, self.replica_holds_key_since) {
            (None, _) => self.replica_holds_key_since = None,
            (Some(_), None) => self.replica_holds_key_since = Some((now, false)),
            (Some(h), Some((since, false))) if now - since > bound => {
                self.replica_holds_key_since = Some((since, true));
                let what = format!(
                    "{} holds the leader key as a replica for {} ms, neither promoting nor releasing it \
                     (rule 9; it says {:?})",
                    self.names[h],
                    now - since,
                    self.last_reason(h)
                );
                self.violation(what);
            }
            (Some(_), Some(_)) => {}
        }
    }

    /// Rule 8: a synchronous standby that stops confirming (its replies no
    /// longer reach the primary, or its member key is gone) is no longer
    /// named in the sync key within ttl + loop_wait + retry_timeout while a
    /// standby that may replace it streams to the primary and is heard.
    /// Counted only while the primary's agent runs and reaches etcd.
    fn check_silent_sync(&mut self, primary: Option<usize>, now: u64) {
        let silent = primary.filter(|_| self.cfg.sync_enabled()).and_then(|p| {
            let key = self.leader_key.replace("/leader", "/sync");
            let sync = keel_runtime::dcs::codec::parse_sync(&self.kv.get(&key)?.value, 0).ok()?;
            if sync.leader.as_deref() != Some(self.names[p].as_str()) {
                return None;
            }
            let streaming = self.streaming_from(p);
            let heard = |s: usize| streaming.contains(&s) && self.reaches(s, p) && self.visible(s);
            let named: Vec<usize> = sync.members.iter().filter_map(|m| self.index(m)).collect();
            let quiet = named.iter().copied().find(|m| !heard(*m))?;
            let lag_ok = |s: usize| {
                let lag = self.pg[p].wal.lsn().saturating_sub(self.pg[s].wal.lsn());
                self.cfg.maximum_lag_on_syncnode_bytes.is_none_or(|max| lag <= max)
            };
            let able = streaming
                .iter()
                .copied()
                .find(|s| !named.contains(s) && !self.tags[*s].nosync && heard(*s) && lag_ok(*s))?;
            Some((quiet, able))
        });
        let bound = self.cfg.ttl_ms + self.cfg.loop_wait_ms + self.cfg.retry_timeout_ms + 1_000;
        match (silent, self.silent_sync_since) {
            (None, _) => self.silent_sync_since = None,
            (Some(_), None) => self.silent_sync_since = Some((now, false)),
            (Some((quiet, able)), Some((since, false))) if now - since > bound => {
                self.silent_sync_since = Some((since, true));
                let what = format!(
                    "the sync key names {}, which stopped confirming, for {} ms while {} streams and could \
                     replace it (rule 8)",
                    self.names[quiet],
                    now - since,
                    self.names[able]
                );
                self.violation(what);
            }
            (Some(_), Some(_)) => {}
        }
    }

    /// Issue 12 defect 4: a member that may not fail over is never the only
    /// synchronous standby while one that may streams. Counted only while
    /// the primary's agent runs and reaches etcd: without it the leader
    /// cannot rewrite the sync key.
    fn check_sync_fit(&mut self, primary: Option<usize>, now: u64) {
        let unfit_only = primary.filter(|_| self.cfg.sync_enabled()).and_then(|p| {
            let key = self.leader_key.replace("/leader", "/sync");
            let sync = keel_runtime::dcs::codec::parse_sync(&self.kv.get(&key)?.value, 0).ok()?;
            let named: Vec<usize> = sync.members.iter().filter_map(|m| self.index(m)).collect();
            let only_unfit = sync.leader.as_deref() == Some(self.names[p].as_str())
                && !named.is_empty()
                && named.iter().all(|i| !self.tags[*i].can_fail_over());
            // Only a standby the leader can see and hear: with its member
            // key gone (cut from etcd), or its replies lost (a one-way cut
            // towards the primary), it is no candidate (rule 8).
            let able = self.streaming_from(p).into_iter().find(|s| {
                self.tags[*s].can_fail_over()
                    && !self.tags[*s].nosync
                    && !named.contains(s)
                    && self.visible(*s)
                    && self.reaches(*s, p)
            });
            only_unfit.then_some(()).and(able).map(|a| (named, a))
        });
        match (unfit_only, self.sync_unfit_since) {
            (None, _) => self.sync_unfit_since = None,
            (Some(_), None) => self.sync_unfit_since = Some((now, false)),
            (Some((named, able)), Some((since, false)))
                if now - since > 2 * self.cfg.loop_wait_ms + self.cfg.retry_timeout_ms + 1_000 =>
            {
                self.sync_unfit_since = Some((since, true));
                let named: Vec<&str> = named.iter().map(|i| self.names[*i].as_str()).collect();
                let what = format!(
                    "liveness: for {} ms the sync key names only {}, which may not fail over, while {} streams \
                     and may",
                    now - since,
                    named.join(", "),
                    self.names[able]
                );
                self.violation(what);
            }
            (Some(_), Some(_)) => {}
        }
    }

    /// At the end: no acknowledged write lost (strict mode: a violation;
    /// otherwise counted), and every replica's history is a prefix of the
    /// leader's.
    pub fn check_end(&mut self) {
        let Some(leader) = (0..self.names.len()).find(|i| self.writable(*i)) else {
            return;
        };
        let wal = self.pg[leader].wal.clone();
        let lost = self.acked.iter().filter(|(b, l)| !wal.contains(*b, *l)).count() as u64;
        if lost > 0 {
            if self.cfg.synchronous_mode_strict {
                self.violation(format!("{lost} acknowledged writes lost in synchronous_mode_strict"));
            } else {
                self.out.writes_lost_allowed += lost;
            }
        }
        for i in 0..self.names.len() {
            if i != leader
                && self.pg[i].process == PgProcess::RunningReplica
                && !self.pg[i].wal.is_prefix_of(&wal)
            {
                let mut detail = String::new();
                let _ = write!(detail, "{:?}", self.pg[i].wal.history());
                let name = self.names[i].clone();
                self.violation(format!(
                    "{name} streams nothing: its history {detail} is not a prefix of the leader's"
                ));
            }
        }
    }
}
