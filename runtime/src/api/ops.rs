//! The operations (reference section 1.3): `/switchover`, `/failover`,
//! `/restart`, `/reinitialize`, `/reload` and `/failsafe`, with Patroni's
//! request bodies, codes and messages.
//!
//! A switchover or failover is a write of the `failover` key, which
//! keel-core's leader and candidates act on (`core/src/decide/switchover.rs`
//! and `election.rs`); the handler then watches etcd for the outcome, as
//! Patroni's `poll_failover_result`. Restart, reinitialize and failsafe
//! pings go to the agent as commands and are answered with the outcome of
//! the step that carried them out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use keel_core::dcs::SyncMode;
use keel_core::{Action, ActionResult, ClusterView, MemberRole, Reason, Request};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::access::Access;
use super::body::{self, opt_bool, opt_string, refusal, text, Object, Refusal};
use super::status::SharedStatus;
use super::store::Store;
use crate::agent::command::{Command, Order, Reload, Reply};
use crate::config::{self, Auth, Config};
use crate::dcs::codec;
use crate::dcs::patroni::Snapshot;
use crate::dcs::{Compare, Op};

/// Everything the handlers share: the agent's published status, and for
/// the operations a handle on etcd and on the agent.
#[derive(Clone)]
pub struct Api {
    pub(super) status: SharedStatus,
    pub(super) access: Arc<RwLock<Access>>,
    /// Set once etcd is connected; until then operations answer 503.
    pub(super) ops: Arc<OnceLock<Ops>>,
}

/// What the operations need besides the status.
pub struct Ops {
    pub(super) store: Box<dyn Store>,
    pub(super) agent: mpsc::Sender<Command>,
    /// The config file the agent was started with, and the environment it
    /// was read with, for `POST /reload`; with the config in force.
    pub(super) reload: Option<ReloadSource>,
    /// How often a switchover's outcome is read back (Patroni: 1 s).
    pub(super) poll_interval: Duration,
    /// The task of the scheduled restart, if any.
    scheduled_restart: Mutex<Option<AbortHandle>>,
}

impl Ops {
    pub fn new(store: Box<dyn Store>, agent: mpsc::Sender<Command>) -> Ops {
        Ops {
            store,
            agent,
            reload: None,
            poll_interval: Duration::from_secs(1),
            scheduled_restart: Mutex::new(None),
        }
    }

    /// `POST /reload` re-reads `path` with `env`; `current` is in force.
    pub fn reload_from(mut self, path: PathBuf, env: BTreeMap<String, String>, current: Config) -> Ops {
        self.reload = Some(ReloadSource { path, env, current: Mutex::new(current) });
        self
    }

    /// How often a switchover's outcome is read back (tests shorten it).
    pub fn poll_every(mut self, every: Duration) -> Ops {
        self.poll_interval = every;
        self
    }
}

pub struct ReloadSource {
    pub path: PathBuf,
    pub env: BTreeMap<String, String>,
    pub current: Mutex<Config>,
}

impl Api {
    /// The read-only API: health checks and pages. The operations answer
    /// 503 until [`Api::set_operations`].
    pub fn new(status: SharedStatus) -> Api {
        Api { status, access: Arc::new(RwLock::new(Access::default())), ops: Arc::new(OnceLock::new()) }
    }

    /// Basic authentication for the unsafe methods.
    pub fn with_auth(self, auth: Option<Auth>) -> Api {
        self.access.write().unwrap_or_else(PoisonError::into_inner).auth = auth;
        self
    }

    /// Who may call the unsafe methods (`Access::from_config`).
    pub fn with_access(self, access: Access) -> Api {
        *self.access.write().unwrap_or_else(PoisonError::into_inner) = access;
        self
    }

    pub fn with_operations(self, ops: Ops) -> Api {
        self.set_operations(ops);
        self
    }

    /// Enables the operations (once: later calls change nothing), also
    /// while the server runs.
    pub fn set_operations(&self, ops: Ops) {
        let _ = self.ops.set(ops);
    }

    pub(super) fn access(&self) -> Access {
        self.access.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(super) fn ops_or_503(&self) -> Result<&Ops, Refusal> {
        self.ops.get().ok_or_else(|| refusal(StatusCode::SERVICE_UNAVAILABLE, NOT_CONNECTED))
    }
}

/// Which of Patroni's two handlers: they share the code and differ in
/// their rules and words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manual {
    Switchover,
    Failover,
}

impl Manual {
    fn noun(self) -> &'static str {
        match self {
            Manual::Switchover => "switchover",
            Manual::Failover => "failover",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Manual::Switchover => "Switchover",
            Manual::Failover => "Failover",
        }
    }

    /// `switched` / `failed`, as Patroni's `action[:-4] + 'ed'`.
    fn past(self) -> &'static str {
        match self {
            Manual::Switchover => "switched",
            Manual::Failover => "failed",
        }
    }
}

/// `POST /switchover` and `POST /failover` (Patroni's `do_POST_failover`).
pub async fn manual(api: &Api, headers: &HeaderMap, raw: &[u8], action: Manual) -> Response {
    match manual_inner(api, headers, raw, action).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn manual_inner(
    api: &Api,
    headers: &HeaderMap,
    raw: &[u8],
    mut action: Manual,
) -> Result<Response, Refusal> {
    let ops = api.ops_or_503()?;
    let request = body::object(headers, raw, false)?;
    let leader = opt_string(&request, "leader")?;
    let candidate = match opt_string(&request, "candidate")? {
        Some(c) => Some(c),
        None => opt_string(&request, "member")?,
    };
    let scheduled_at = opt_string(&request, "scheduled_at")?;
    let snap = read(ops).await?;
    let paused = snap.config.as_ref().is_some_and(|c| c.pause);
    let bad = |message: String| Err(refusal(StatusCode::BAD_REQUEST, message));
    if action == Manual::Failover && candidate.is_none() {
        return bad("Failover could be performed only to a specific candidate".into());
    }
    if action == Manual::Switchover && leader.is_none() {
        return bad("Switchover could be performed only from a specific leader".into());
    }
    let mut scheduled_ms = None;
    if let Some(at) = &scheduled_at {
        if action == Manual::Failover {
            return bad("Failover can't be scheduled".into());
        }
        if paused {
            return bad("Can't schedule switchover in the paused state".into());
        }
        scheduled_ms = Some(parse_schedule(at, action.noun(), wall_ms())?);
    }
    if paused && candidate.is_none() {
        return bad("Switchover is possible only to a specific candidate in a paused state".into());
    }
    if action == Manual::Failover && leader.is_some() {
        // Patroni: a failover naming the leader is a switchover.
        action = Manual::Switchover;
    }
    if leader.is_some() && leader == candidate {
        return bad("Switchover target and source are the same".into());
    }
    if scheduled_ms.is_none() {
        if let Err(why) = failover_possible(&snap.view, leader.as_deref(), candidate.as_deref(), action) {
            return Err(refusal(StatusCode::PRECONDITION_FAILED, why));
        }
    }
    let value = codec::format_failover(leader.as_deref(), candidate.as_deref(), scheduled_ms);
    let key = ops.store.keys().failover();
    let put = Op::Put { key: key.clone(), value: value.clone(), lease: 0 };
    // Patroni's API writes the key unconditionally (`manual_failover`
    // without a version): the newest request wins.
    match ops.store.txn(Vec::new(), vec![put]).await {
        Ok(_) => {}
        Err(e) => {
            let message = format!("failed to write failover key into DCS: {e}");
            return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, message));
        }
    }
    if scheduled_ms.is_some() {
        return Ok(text(StatusCode::ACCEPTED, format!("{} scheduled", action.title())));
    }
    let old_leader = snap.view.leader_name().map(str::to_owned);
    let loop_wait_s = snap.config.as_ref().map_or(10, |c| c.loop_wait).max(10);
    let answer = poll_result(ops, old_leader.as_deref(), candidate.as_deref(), action, loop_wait_s).await;
    if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
        // Nobody carried the request out: withdraw it (only if it is still
        // the one written here), so that it does not fire later, when
        // nobody expects it (rule 10; the agents also clear a request
        // nobody carries out within a TTL).
        let still_ours = Compare::ValueEquals { key: key.clone(), value };
        if let Err(e) = ops.store.txn(vec![still_ours], vec![Op::Delete { key }]).await {
            warn!(error = %e, "could not withdraw the unanswered {} request", action.noun());
        }
    }
    Ok(answer)
}

/// Patroni's `poll_failover_result`: every `poll_interval`, up to
/// 2×max(10, loop_wait) times, read etcd; done when another member holds
/// the leader key, failed when the request is gone without that.
async fn poll_result(
    ops: &Ops,
    old_leader: Option<&str>,
    candidate: Option<&str>,
    action: Manual,
    loop_wait_s: i64,
) -> Response {
    let rounds = u64::try_from(loop_wait_s).unwrap_or(10).saturating_mul(2);
    for _ in 0..rounds {
        tokio::time::sleep(ops.poll_interval).await;
        let Ok(snap) = ops.store.read().await else { continue };
        if let Some(now) = snap.view.leader_name().filter(|n| Some(*n) != old_leader) {
            let message = match candidate {
                Some(c) if c != now => {
                    let past = capitalized(action.past());
                    format!("{past} over to \"{now}\" instead of \"{c}\"")
                }
                _ => format!("Successfully {} over to \"{now}\"", action.past()),
            };
            return text(StatusCode::OK, message);
        }
        if snap.view.failover.is_none() {
            return text(StatusCode::SERVICE_UNAVAILABLE, format!("{} failed", action.title()));
        }
    }
    text(StatusCode::SERVICE_UNAVAILABLE, format!("{} status unknown", action.title()))
}

/// Patroni's `is_failover_possible`, from the member keys rather than by
/// asking each member's API: a candidate is good when its key says it runs
/// and its tags allow failover.
fn failover_possible(
    view: &ClusterView,
    leader: Option<&str>,
    candidate: Option<&str>,
    action: Manual,
) -> Result<(), String> {
    let noun = action.noun();
    if let Some(leader) = leader {
        if view.leader_name() != Some(leader) {
            return Err("leader name does not match".into());
        }
    }
    let sync_mode = view.config.as_ref().map_or(SyncMode::Off, |c| c.synchronous_mode);
    let in_sync = |name: &str| view.sync.as_ref().is_some_and(|s| s.members.contains(name));
    let members: Vec<&String> = if let Some(candidate) = candidate {
        if action == Manual::Switchover && sync_mode == SyncMode::On && !in_sync(candidate) {
            return Err("candidate name does not match with sync_standby".into());
        }
        let found: Vec<&String> = view.members.keys().filter(|m| *m == candidate).collect();
        if found.is_empty() {
            return Err("candidate does not exists".into());
        }
        found
    } else if sync_mode == SyncMode::On {
        let found: Vec<&String> = view.members.keys().filter(|m| in_sync(m)).collect();
        if found.is_empty() {
            return Err(format!("{noun} is not possible: can not find sync_standby"));
        }
        found
    } else {
        let leader = view.leader_name();
        let found: Vec<&String> = view
            .members
            .iter()
            .filter(|(name, m)| Some(name.as_str()) != leader && !m.api_url.is_empty())
            .map(|(name, _)| name)
            .collect();
        if found.is_empty() {
            return Err(format!("{noun} is not possible: cluster does not have members except leader"));
        }
        found
    };
    let good =
        members.iter().filter_map(|m| view.members.get(*m)).any(|m| m.is_running() && m.tags.can_fail_over());
    if !good {
        return Err(format!("{noun} is not possible: no good candidates have been found"));
    }
    Ok(())
}

/// Patroni's `parse_schedule`: an ISO 8601 time with an offset, in the
/// future. 400 without an offset, 422 unparsable or past.
pub fn parse_schedule(at: &str, noun: &str, now_wall_ms: i64) -> Result<i64, Refusal> {
    match codec::parse_timestamp_ms(at) {
        Ok(ms) if ms < now_wall_ms => {
            Err(refusal(StatusCode::UNPROCESSABLE_ENTITY, format!("Cannot schedule {noun} in the past")))
        }
        Ok(ms) => Ok(ms),
        Err(_) if at.trim().parse::<jiff::civil::DateTime>().is_ok() => Err(refusal(
            StatusCode::BAD_REQUEST,
            format!("Timezone information is mandatory for the scheduled {noun}"),
        )),
        Err(_) => Err(refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
        )),
    }
}

/// `DELETE /switchover`: removes a scheduled switchover, compare-and-swap
/// on the revision read. Patroni overwrites the key with an empty request;
/// keel deletes it, which every reader (Patroni included) takes for none.
pub async fn cancel_switchover(api: &Api) -> Response {
    let ops = match api.ops_or_503() {
        Ok(ops) => ops,
        Err(r) => return r.into_response(),
    };
    let snap = match read(ops).await {
        Ok(snap) => snap,
        Err(r) => return r.into_response(),
    };
    let Some(failover) = snap.view.failover.filter(|f| f.scheduled_at_wall_ms.is_some()) else {
        return text(StatusCode::NOT_FOUND, "no switchover is scheduled");
    };
    let key = ops.store.keys().failover();
    let revision = i64::try_from(failover.revision).unwrap_or(i64::MAX);
    let compare = Compare::ModRevision { key: key.clone(), revision };
    match ops.store.txn(vec![compare], vec![Op::Delete { key }]).await {
        Ok(true) => text(StatusCode::OK, "scheduled switchover deleted"),
        Ok(false) => text(StatusCode::CONFLICT, "the failover key changed meanwhile; nothing deleted"),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("cannot delete the failover key: {e}")),
    }
}

/// The filters of `POST /restart` (Patroni's `do_POST_restart`).
#[derive(Clone, Debug, Default, PartialEq)]
struct RestartFilter {
    restart_pending: bool,
    role: Option<String>,
    postgres_version: Option<u32>,
    timeout_s: Option<u64>,
    schedule: Option<String>,
}

fn restart_filter(request: &Object) -> Result<RestartFilter, Refusal> {
    let bad = |message: String| Err(refusal(StatusCode::BAD_REQUEST, message));
    let mut filter = RestartFilter::default();
    for (key, value) in request {
        match key.as_str() {
            "schedule" => filter.schedule = opt_string(request, key)?,
            "role" => match value.as_str() {
                Some(role @ ("primary" | "standby_leader" | "replica")) => filter.role = Some(role.into()),
                _ => {
                    return bad("PostgreSQL role should be either primary, standby_leader, or replica".into())
                }
            },
            "postgres_version" => {
                let Some(text) = value.as_str() else {
                    return bad(format!("postgres_version must be a string, not {}", body::kind(value)));
                };
                match postgres_version_to_int(text) {
                    Ok(v) => filter.postgres_version = Some(v),
                    Err(message) => return bad(message),
                }
            }
            "timeout" => {
                let seconds = match value {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().strip_suffix('s').unwrap_or(s.trim()).trim().parse().ok(),
                    _ => None,
                };
                match seconds {
                    Some(s) if s > 0 => filter.timeout_s = Some(s),
                    _ => return bad("Timeout should be a positive number of seconds".into()),
                }
            }
            "restart_pending" => filter.restart_pending = true,
            other => return bad(format!("Unknown filter for the scheduled restart: {other}")),
        }
    }
    Ok(filter)
}

/// `15.4` → 150004, `9.6.3` → 90603 (Patroni's `postgres_version_to_int`).
fn postgres_version_to_int(text: &str) -> Result<u32, String> {
    let invalid = || format!("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {text}");
    let mut parts: Vec<u32> =
        text.split('.').map(|p| p.trim().parse::<u32>().map_err(|_| invalid())).collect::<Result<_, _>>()?;
    if parts.len() < 2
        || parts.len() > 3
        || (parts.len() == 2 && parts[0] < 10)
        || parts.iter().any(|p| *p > 99)
    {
        return Err(format!("Invalid PostgreSQL major version format: {text}"));
    }
    if parts.len() == 2 {
        parts.insert(1, 0);
    }
    Ok(parts.iter().fold(0, |acc, p| acc * 100 + p))
}

/// `POST /restart`: restart Postgres in its role now, when the filters
/// match. Scheduled restarts are not supported (501).
pub async fn restart(api: &Api, headers: &HeaderMap, raw: &[u8]) -> Response {
    let run = async {
        let ops = api.ops_or_503()?;
        let request = body::object(headers, raw, true)?;
        let paused = status_paused(api);
        if paused && request.contains_key("schedule") {
            return Err(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Can't schedule restart in the paused state",
            ));
        }
        let filter = restart_filter(&request)?;
        if let Some(at) = &filter.schedule {
            let at_ms = parse_schedule(at, "restart", wall_ms())?;
            return schedule_restart(api, ops, filter.clone(), at_ms, &request);
        }
        let (code, message) = restart_now(api, ops, &filter).await;
        Ok(text(code, message))
    };
    run.await.unwrap_or_else(Refusal::into_response)
}

/// A restart now, when the filters match: the agent's outcome.
async fn restart_now(api: &Api, ops: &Ops, filter: &RestartFilter) -> (StatusCode, String) {
    if !restart_matches(api, filter) {
        return (StatusCode::SERVICE_UNAVAILABLE, "restart conditions are not satisfied".into());
    }
    let reply = match ask(ops, Request::Restart, filter.timeout_s.map(Duration::from_secs)).await {
        Ok(reply) => reply,
        Err(refused) => {
            let response = refused.into_response();
            return (response.status(), "restart failed: no outcome from the agent".into());
        }
    };
    match action_result(&reply, |a| *a == Action::RestartPostgres) {
        Some(ActionResult::Done) => (StatusCode::OK, "restarted successfully".into()),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "restart failed".into()),
        None => (StatusCode::SERVICE_UNAVAILABLE, format!("restart not carried out: {}", reason_of(&reply))),
    }
}

/// A restart at `at_ms` (wall clock), held by this process as Patroni's
/// `schedule_future_restart` holds it: one at a time (409), shown in
/// `GET /patroni` as `scheduled_restart`, removed by `DELETE /restart`.
/// When due, the filters are checked again and the outcome is logged.
fn schedule_restart(
    api: &Api,
    ops: &Ops,
    filter: RestartFilter,
    at_ms: i64,
    request: &Object,
) -> Result<Response, Refusal> {
    let mut slot = ops.scheduled_restart.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.as_ref().is_some_and(|task| !task.is_finished()) {
        return Err(refusal(StatusCode::CONFLICT, "Another restart is already scheduled"));
    }
    let mut shown = request.clone();
    shown.insert("schedule".into(), json!(codec::format_timestamp(at_ms)));
    api.status.write().unwrap_or_else(PoisonError::into_inner).scheduled_restart = Some(Value::Object(shown));
    let due = Duration::from_millis(u64::try_from(at_ms.saturating_sub(wall_ms())).unwrap_or(0));
    let api = api.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(due).await;
        api.status.write().unwrap_or_else(PoisonError::into_inner).scheduled_restart = None;
        if let Ok(ops) = api.ops_or_503() {
            let (code, message) = restart_now(&api, ops, &filter).await;
            if code == StatusCode::OK {
                info!("scheduled restart: {message}");
            } else {
                warn!("scheduled restart: {message}");
            }
        }
    });
    *slot = Some(task.abort_handle());
    Ok(text(StatusCode::ACCEPTED, "Restart scheduled"))
}

/// `DELETE /restart`: cancels the scheduled restart.
pub fn cancel_restart(api: &Api) -> Response {
    let Ok(ops) = api.ops_or_503() else {
        return text(StatusCode::NOT_FOUND, "no restarts are scheduled");
    };
    let task = ops.scheduled_restart.lock().unwrap_or_else(PoisonError::into_inner).take();
    match task.filter(|t| !t.is_finished()) {
        Some(task) => {
            task.abort();
            api.status.write().unwrap_or_else(PoisonError::into_inner).scheduled_restart = None;
            text(StatusCode::OK, "scheduled restart deleted")
        }
        None => text(StatusCode::NOT_FOUND, "no restarts are scheduled"),
    }
}

/// Patroni's `restart_matches`: the role, a version older than the one
/// given, and a pending restart when asked for one.
fn restart_matches(api: &Api, filter: &RestartFilter) -> bool {
    let s = api.status.read().unwrap_or_else(PoisonError::into_inner);
    let role = match s.role {
        MemberRole::Primary => "primary",
        MemberRole::Replica => "replica",
        MemberRole::Uninitialized => "uninitialized",
    };
    if filter.role.as_deref().is_some_and(|r| r != role) {
        return false;
    }
    if filter.postgres_version.is_some_and(|v| s.server_version >= v) {
        return false;
    }
    !filter.restart_pending || s.pending_restart
}

/// `POST /reinitialize {force?, from_leader?}`: keel-core refuses on the
/// leader and without one; otherwise the agent stops Postgres and clones
/// the leader's data afresh, and the answer says how that went.
pub async fn reinitialize(api: &Api, headers: &HeaderMap, raw: &[u8]) -> Response {
    let run = async {
        let ops = api.ops_or_503()?;
        let request = body::object(headers, raw, true)?;
        // Accepted as Patroni's; keel never runs two actions at once, so
        // there is nothing for `force` to cancel, and it always clones
        // from the leader.
        opt_bool(&request, "force")?;
        opt_bool(&request, "from_leader")?;
        let reply = ask(ops, Request::Reinitialize, None).await?;
        if let Reply::Stepped { reason: Reason::ReinitializeRefused { why }, .. } = &reply {
            return Ok(text(StatusCode::SERVICE_UNAVAILABLE, capitalized(&why.to_string())));
        }
        Ok(match action_result(&reply, |a| matches!(a, Action::Reinitialize { .. })) {
            Some(ActionResult::Done) => text(StatusCode::OK, "reinitialized successfully"),
            Some(result) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reinitialize failed ({result:?}): {}", reason_of(&reply)),
            ),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reinitialize not carried out: {}", reason_of(&reply)),
            ),
        })
    };
    run.await.unwrap_or_else(Refusal::into_response)
}

/// `POST /reload`: re-reads the config file, and applies what can change
/// while running: the tags and the REST API's authentication. A file that
/// does not load changes nothing.
pub async fn reload(api: &Api) -> Response {
    match api.reload_config().await {
        Ok(message) => text(StatusCode::ACCEPTED, message),
        Err(failed) => text(failed.code, failed.message),
    }
}

/// Why a reload changed nothing, with the status `POST /reload` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadFailed {
    pub code: StatusCode,
    pub message: String,
}

impl Api {
    /// Reads the config file again and applies it: the one reload of
    /// `POST /reload` and of SIGHUP (Patroni's `reload_config` serves
    /// both). Answers what was applied, and what waits for the next start.
    pub async fn reload_config(&self) -> Result<String, ReloadFailed> {
        let failed = |code, message: String| ReloadFailed { code, message };
        let Some(ops) = self.ops.get() else {
            return Err(failed(StatusCode::SERVICE_UNAVAILABLE, NOT_CONNECTED.to_owned()));
        };
        let Some(source) = &ops.reload else {
            let message = "this node has no config file to reload".to_owned();
            return Err(failed(StatusCode::SERVICE_UNAVAILABLE, message));
        };
        let loaded = config::load(&source.path, &source.env).map_err(|e| {
            let message = format!("reload failed, old config kept: {}: {e}", source.path.display());
            failed(StatusCode::BAD_REQUEST, message)
        })?;
        let new = loaded.config;
        let later = {
            let current = source.current.lock().unwrap_or_else(PoisonError::into_inner);
            needs_restart(&current, &new)
        };
        let (command, answer) = Command::ask(Order::Reload(Reload {
            tags: new.tags.clone(),
            restapi_auth: new.restapi.authentication.clone(),
        }));
        let gone = || failed(StatusCode::SERVICE_UNAVAILABLE, AGENT_GONE.to_owned());
        ops.agent.send(command).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?;
        let access = Access::from_config(&new.restapi).await;
        *self.access.write().unwrap_or_else(PoisonError::into_inner) = access;
        self.status.write().unwrap_or_else(PoisonError::into_inner).member_tags = new.tags.to_member_tags();
        let mut message = "reloaded: tags, restapi.authentication and allowlist applied".to_owned();
        if !later.is_empty() {
            message.push_str(&format!("; changed, applied at the next start of keel: {}", later.join(", ")));
        }
        *source.current.lock().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(message)
    }
}

/// The sections of the local config that a reload does not apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |changed: bool, name| {
        if changed {
            out.push(name);
        }
    };
    check(
        old.scope != new.scope || old.namespace != new.namespace || old.name != new.name,
        "scope/namespace/name",
    );
    check(old.postgresql != new.postgresql, "postgresql");
    check(old.etcd3 != new.etcd3, "etcd3");
    check(old.bootstrap != new.bootstrap, "bootstrap");
    check(old.watchdog != new.watchdog, "watchdog");
    check(old.log != new.log, "log");
    let mut old_api = old.restapi.clone();
    old_api.authentication = new.restapi.authentication.clone();
    old_api.allowlist = new.restapi.allowlist.clone();
    old_api.allowlist_include_members = new.restapi.allowlist_include_members;
    check(old_api != new.restapi, "restapi (other than authentication and allowlist)");
    out
}

/// `POST /failsafe` from a leader that cannot reach etcd (Patroni's
/// `do_POST_failsafe`): a replica promises not to race for the leader's
/// lease time and answers 200 `Accepted` with its WAL position in `lsn`.
/// The promise is in keel-core's state before the answer leaves.
pub async fn failsafe(api: &Api, headers: &HeaderMap, raw: &[u8]) -> Response {
    let run = async {
        let ops = api.ops_or_503()?;
        let failsafe_mode = {
            let s = api.status.read().unwrap_or_else(PoisonError::into_inner);
            s.snapshot.as_ref().and_then(|snap| snap.config.as_ref()).is_some_and(|c| c.failsafe_mode)
        };
        if !failsafe_mode {
            return Err(refusal(StatusCode::BAD_GATEWAY, "failsafe_mode is off"));
        }
        let request = body::object(headers, raw, false)?;
        let Some(leader) = opt_string(&request, "name")? else {
            return Err(refusal(StatusCode::BAD_REQUEST, "name (the leader's member name) is required"));
        };
        if api.status.read().unwrap_or_else(PoisonError::into_inner).running_primary {
            return Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, "Running as a leader"));
        }
        ask(ops, Request::FailsafePing { leader }, None).await?;
        let s = api.status.read().unwrap_or_else(PoisonError::into_inner);
        if s.running_primary {
            return Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, "Running as a leader"));
        }
        let lsn = s.receive_lsn.max(s.replay_lsn);
        drop(s);
        let mut response = text(StatusCode::OK, "Accepted");
        response.headers_mut().insert("lsn", HeaderValue::from(lsn));
        Ok(response)
    };
    run.await.unwrap_or_else(Refusal::into_response)
}

/// `GET /failsafe`: the `failsafe` key, `{member: api_url}`, as the
/// leader wrote it; 502 when it is missing or not such an object.
pub async fn failsafe_members(api: &Api) -> Response {
    let Ok(ops) = api.ops_or_503() else {
        return text(StatusCode::BAD_GATEWAY, "failsafe topology unknown");
    };
    let stored = ops.store.get(ops.store.keys().failsafe()).await;
    let value = stored.ok().flatten().and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok());
    match value {
        Some(v @ Value::Object(_)) => body::json(StatusCode::OK, &v),
        _ => text(StatusCode::BAD_GATEWAY, "failsafe topology unknown"),
    }
}

/// Sends `request` to the agent and waits for the step that carried it
/// out, at most `limit` when given.
async fn ask(ops: &Ops, request: Request, limit: Option<Duration>) -> Result<Reply, Refusal> {
    let (command, answer) = Command::ask(Order::Request(request));
    ops.agent.send(command).await.map_err(|_| agent_gone())?;
    match limit {
        Some(limit) => match tokio::time::timeout(limit, answer).await {
            Ok(reply) => reply.map_err(|_| agent_gone()),
            Err(_) => Err(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no outcome within {} s; the action goes on", limit.as_secs()),
            )),
        },
        None => answer.await.map_err(|_| agent_gone()),
    }
}

/// What the operations answer before etcd is connected (503).
const NOT_CONNECTED: &str = "operations are not available: not connected to etcd yet";

/// What an operation answers when the agent no longer takes commands (503).
const AGENT_GONE: &str = "the agent is shutting down";

fn agent_gone() -> Refusal {
    refusal(StatusCode::SERVICE_UNAVAILABLE, AGENT_GONE)
}

fn action_result(reply: &Reply, pred: impl Fn(&Action) -> bool) -> Option<ActionResult> {
    match reply {
        Reply::Stepped { outcomes, .. } => outcomes.iter().find(|o| pred(&o.action)).map(|o| o.result),
        Reply::Reloaded { .. } => None,
    }
}

fn reason_of(reply: &Reply) -> String {
    match reply {
        Reply::Stepped { reason, .. } => reason.to_string(),
        Reply::Reloaded { .. } => "reloaded".into(),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

fn status_paused(api: &Api) -> bool {
    api.status.read().unwrap_or_else(PoisonError::into_inner).paused
}

async fn read(ops: &Ops) -> Result<Snapshot, Refusal> {
    ops.store
        .read()
        .await
        .map_err(|e| refusal(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the cluster: {e}")))
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
