//! The commands. Each reads the cluster once, checks what patronictl
//! checks (`_do_failover_or_switchover`, `get_members`, `remove`), asks
//! unless `--force`, and only then makes its one change.

use std::collections::BTreeSet;
use std::time::Duration;

use hyper::Method;
use keel_core::SyncMode;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::cluster::{self, Cluster};
use super::console::Console;
use super::{edit, fail, show, Command, CtlError, Format, RoleFilter, Target};
use crate::api::client::{self, HttpError, Rest};
use crate::dcs::patroni::Snapshot;
use crate::dcs::Kv;

/// How often a waiting command reads etcd again.
const POLL: Duration = Duration::from_millis(500);
/// `/switchover` and `/failover` answer once done (Patroni waits up to
/// 2 × max(10, loop_wait) s); `/restart` once Postgres is up again.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(90);
/// `GET /patroni`, as Patroni's own 2 s status requests.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
const CONFIRM_REMOVE: &str = "Yes I am aware";
/// What click's `clear()` writes on a terminal.
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[1;1H";

pub async fn dispatch<K: Kv>(
    cluster: &Cluster<K>,
    target: &Target,
    command: Command,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    let rest = &target.rest;
    match command {
        Command::List { format, extended, timestamp, watch_2s, watch, .. } => {
            // patronictl's `watching`: `-W` is every 2 s, `-w` every so
            // many seconds; the screen is cleared before each listing.
            let every = watch.or(watch_2s.then_some(2.0)).filter(|s| *s > 0.0).map(Duration::from_secs_f64);
            loop {
                if every.is_some() {
                    console.print(CLEAR_SCREEN)?;
                }
                if timestamp {
                    console.line(&jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S").to_string())?;
                }
                let snap = read(cluster, console).await?;
                console.print(&show::list(&cluster.scope, &snap, format, extended)?)?;
                match every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => return Ok(()),
                }
            }
        }
        Command::Topology { .. } => {
            let snap = read(cluster, console).await?;
            console.print(&show::topology(&cluster.scope, &snap))
        }
        Command::History { format, .. } => {
            let snap = read(cluster, console).await?;
            console.print(&show::history(&snap, format)?)
        }
        Command::ShowConfig { .. } => {
            let raw = cluster.config().await?;
            console.print(&show::yaml(&raw.value))
        }
        Command::EditConfig { set, pg, apply, replace, force, .. } => {
            let edits = Edits { set, pg, apply, replace, editor: target.editor.clone() };
            edit_config(cluster, edits, force, console).await
        }
        Command::Pause { wait, .. } => pause(cluster, true, wait, console).await,
        Command::Resume { wait, .. } => pause(cluster, false, wait, console).await,
        Command::Switchover { leader, candidate, scheduled, force, .. } => {
            let request = Request { leader, candidate, scheduled, force };
            switchover(cluster, Action::Switchover, request, rest, console).await
        }
        Command::Failover { candidate, force, .. } => {
            let request = Request { leader: None, candidate, scheduled: None, force };
            switchover(cluster, Action::Failover, request, rest, console).await
        }
        Command::Restart { members, force, pending, role, scheduled, pg_version, timeout } => {
            let snap = read(cluster, console).await?;
            let names = select_members(&cluster.scope, &snap, &members, role)?;
            let when = match scheduled {
                Some(when) => when,
                None if force => "now".to_owned(),
                None => console
                    .ask("When should the restart take place (e.g. 2026-11-26T02:00+00:00)", Some("now"))?,
            };
            let mut body = Map::new();
            if let Some(at) = parse_scheduled(&when, jiff::Timestamp::now(), "restart")? {
                body.insert("schedule".into(), json!(at));
            }
            if pending {
                body.insert("restart_pending".into(), json!(true));
            }
            if let Some(version) = pg_version {
                body.insert("postgres_version".into(), json!(version));
            }
            if let Some(seconds) = timeout {
                body.insert("timeout".into(), json!(seconds));
            }
            let body = Value::Object(body);
            post_to_members(&snap, &names, Operation::Restart, &body, force, rest, console).await
        }
        Command::Reload { members, force, role } => {
            let snap = read(cluster, console).await?;
            let names = select_members(&cluster.scope, &snap, &members, role)?;
            post_to_members(&snap, &names, Operation::Reload, &json!({}), force, rest, console).await
        }
        Command::Reinit { members, force } => {
            let snap = read(cluster, console).await?;
            if named(&cluster.scope, &snap, &members).is_empty() {
                fail!("name the members to reinitialize");
            }
            let names = select_members(&cluster.scope, &snap, &members, RoleFilter::Any)?;
            if let Some(leader) = names.iter().find(|n| Some(n.as_str()) == snap.view.leader_name()) {
                fail!("{leader} is the leader: it can not be reinitialized");
            }
            post_to_members(&snap, &names, Operation::Reinit, &json!({"force": force}), force, rest, console)
                .await
        }
        Command::Flush { args, role, force } => {
            let Some((target, members)) = args.split_last() else { fail!("flush: name the target") };
            match target.as_str() {
                "switchover" => {
                    if !named(&cluster.scope, &cluster.read().await?, members).is_empty() {
                        fail!("flush switchover takes no member names");
                    }
                    flush_switchover(cluster, rest, console).await
                }
                "restart" => {
                    let snap = read(cluster, console).await?;
                    let names = select_members(&cluster.scope, &snap, members, role)?;
                    post_to_members(&snap, &names, Operation::FlushRestart, &json!({}), force, rest, console)
                        .await
                }
                other => fail!("flush: unknown target {other:?} (restart or switchover)"),
            }
        }
        Command::Remove { .. } => remove(cluster, console).await,
    }
}

/// Reads the cluster; keys that could not be read are said on stderr.
async fn read<K: Kv>(cluster: &Cluster<K>, console: &mut Console<'_>) -> Result<Snapshot, CtlError> {
    let snap = cluster.read().await?;
    for warning in &snap.warnings {
        console.warn(warning);
    }
    Ok(snap)
}

/// What `edit-config` was asked to change.
struct Edits {
    set: Vec<String>,
    pg: Vec<String>,
    apply: Option<String>,
    replace: Option<String>,
    /// `$EDITOR`, used when nothing else is given.
    editor: Option<String>,
}

async fn edit_config<K: Kv>(
    cluster: &Cluster<K>,
    edits: Edits,
    force: bool,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    // Every argument is checked before etcd is read.
    let mut changes = edits.set.iter().map(|s| edit::parse_set(s)).collect::<Result<Vec<_>, _>>()?;
    changes.extend(edits.pg.iter().map(|p| edit::parse_pg(p)).collect::<Result<Vec<_>, _>>()?);
    let patch = edits.apply.as_deref().map(|source| read_yaml(source, console)).transpose()?;
    let replacement = edits.replace.as_deref().map(|source| read_yaml(source, console)).transpose()?;
    let interactive = changes.is_empty() && patch.is_none() && replacement.is_none();
    let raw = cluster.config().await?;
    let before = show::yaml(&raw.value);
    let mut after: Map<String, Value> = match replacement {
        Some(replacement) => replacement,
        None if interactive => run_editor(edits.editor.as_deref(), &cluster.scope, &before)?,
        None => raw.value.as_object().cloned().unwrap_or_default(),
    };
    if let Some(patch) = &patch {
        edit::merge(&mut after, patch);
    }
    for change in &changes {
        edit::apply(&mut after, change);
    }
    let after = Value::Object(after);
    let diff = edit::diff(&before, &show::yaml(&after));
    if diff.is_empty() {
        return console.line("Not changed");
    }
    console.print(&diff)?;
    cluster::check_config(&after)?;
    if !force && !console.confirm("Apply these changes?")? {
        fail!("aborted: configuration not changed");
    }
    if !cluster.write_config(&after, raw.mod_revision).await? {
        fail!(
            "config modification aborted due to concurrent changes: nothing written, run edit-config again"
        );
    }
    console.line("Configuration changed")
}

/// A YAML mapping from a file, or from stdin for `-`.
fn read_yaml(source: &str, console: &mut Console<'_>) -> Result<Map<String, Value>, CtlError> {
    if source == "-" {
        return edit::parse_patch(&console.read_all()?, "stdin");
    }
    let text = std::fs::read_to_string(source).map_err(|e| CtlError(format!("cannot read {source}: {e}")))?;
    edit::parse_patch(&text, source)
}

/// patronictl's `invoke_editor`: the configuration as YAML in a temporary
/// file, `$EDITOR` (else `vi`) on it through the shell, the file read back.
fn run_editor(editor: Option<&str>, scope: &str, before: &str) -> Result<Map<String, Value>, CtlError> {
    let editor = editor.unwrap_or("vi");
    let path = std::env::temp_dir().join(format!("keelctl-{scope}-{}.yaml", std::process::id()));
    let write = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, before.as_bytes()));
    if let Err(e) = write {
        fail!("cannot write {}: {e}", path.display());
    }
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status();
    let edited = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => fail!("the editor ({editor}) failed ({status}): configuration not changed"),
        Err(e) => fail!("cannot run the editor ({editor}): {e}"),
    }
    let edited = edited.map_err(|e| CtlError(format!("cannot read {} back: {e}", path.display())))?;
    edit::parse_patch(&edited, "the edited configuration")
}

/// `pause` / `resume`: `pause` in `config` set or removed with a
/// compare-and-swap (retried if another edit came first), then with
/// `--wait` until every member's key says the same.
async fn pause<K: Kv>(
    cluster: &Cluster<K>,
    paused: bool,
    wait: bool,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    const ATTEMPTS: usize = 3;
    // Patroni waits for the members there when the change was made.
    let members_before: BTreeSet<String> = cluster.read().await?.view.members.into_keys().collect();
    for attempt in 1..=ATTEMPTS {
        let raw = cluster.config().await?;
        let current = cluster::check_config(&raw.value)?.pause;
        match (current, paused) {
            (true, true) => fail!("Cluster is already paused"),
            (false, false) => fail!("Cluster is not paused"),
            _ => {}
        }
        let mut after = raw.value.as_object().cloned().unwrap_or_default();
        if paused {
            after.insert("pause".into(), json!(true));
        } else {
            after.remove("pause");
        }
        if cluster.write_config(&Value::Object(after), raw.mod_revision).await? {
            break;
        }
        if attempt == ATTEMPTS {
            fail!("the configuration kept changing in etcd: pause not changed");
        }
    }
    let word = if paused { "paused" } else { "resumed" };
    if wait {
        let what = if paused { "pause" } else { "resume" };
        console.line(&format!("'{what}' request sent, waiting until it is recognized by all nodes"))?;
        wait_for_pause(cluster, paused, members_before).await?;
    }
    console.line(&format!("Success: cluster management is {word}"))
}

/// Waits until every member in `members` reports `pause` as wanted in its
/// member key (Patroni's `wait_until_pause_is_applied`); a member whose key
/// expired meanwhile no longer counts.
async fn wait_for_pause<K: Kv>(
    cluster: &Cluster<K>,
    paused: bool,
    members: BTreeSet<String>,
) -> Result<(), CtlError> {
    let snap = cluster.read().await?;
    let deadline = Instant::now() + settle_time(&snap);
    loop {
        let snap = cluster.read().await?;
        let behind: Vec<&str> = members
            .iter()
            .filter(|name| snap.view.members.contains_key(*name))
            .filter(|name| snap.member_details.get(*name).map(|d| d.extras.pause) != Some(paused))
            .map(String::as_str)
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let state = if paused { "paused" } else { "resumed" };
            fail!("the cluster is {state} in etcd, but {} did not report it in time", behind.join(", "));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How long agents may take to act on a change: Patroni's API waits
/// 2 × max(10, loop_wait) s for a switchover; the lease adds ttl.
fn settle_time(snap: &Snapshot) -> Duration {
    let (ttl_ms, loop_wait_ms) =
        snap.view.config.as_ref().map_or((30_000, 10_000), |c| (c.ttl_ms, c.loop_wait_ms));
    Duration::from_millis(2 * loop_wait_ms.max(10_000) + ttl_ms)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Switchover,
    Failover,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Switchover => "switchover",
            Action::Failover => "failover",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Action::Switchover => "Switchover",
            Action::Failover => "Failover",
        }
    }
}

/// What the operator asked for on the command line.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub leader: Option<String>,
    pub candidate: Option<String>,
    pub scheduled: Option<String>,
    pub force: bool,
}

/// A checked request, ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The leader to demote (always named for a switchover).
    pub leader: Option<String>,
    pub candidate: Option<String>,
    /// ISO 8601 with offset.
    pub scheduled_at: Option<String>,
}

impl Plan {
    /// Patroni's bodies: `{leader, candidate, scheduled_at}` / `{candidate}`.
    pub fn body(&self, action: Action) -> Value {
        let mut body = Map::new();
        if action == Action::Switchover {
            body.insert("leader".into(), json!(self.leader));
        }
        if let Some(candidate) = &self.candidate {
            body.insert("candidate".into(), json!(candidate));
        }
        if let Some(at) = &self.scheduled_at {
            body.insert("scheduled_at".into(), json!(at));
        }
        Value::Object(body)
    }
}

/// patronictl's checks and prompts (`_do_failover_or_switchover`): the
/// leader, the candidate, the time, then the confirmation.
pub fn plan(
    scope: &str,
    snap: &Snapshot,
    action: Action,
    request: &Request,
    now: jiff::Timestamp,
    console: &mut Console<'_>,
) -> Result<Plan, CtlError> {
    let leader = choose_leader(scope, snap, action, request, console)?;
    let candidate = choose_candidate(scope, snap, action, request, leader.as_deref(), console)?;
    let scheduled_at = match action {
        Action::Failover => None,
        Action::Switchover => choose_time(request, now, console)?,
    };
    if scheduled_at.is_some() && snap.config.as_ref().is_some_and(|c| c.pause) {
        fail!("Can't schedule switchover in the paused mode");
    }
    let plan = Plan { leader, candidate, scheduled_at };
    if !request.force {
        confirm_plan(scope, snap, action, &plan, console)?;
    }
    Ok(plan)
}

/// The leader to demote: a switchover needs one and names it (asked,
/// default the current one); a failover takes whoever holds the key.
fn choose_leader(
    scope: &str,
    snap: &Snapshot,
    action: Action,
    request: &Request,
    console: &mut Console<'_>,
) -> Result<Option<String>, CtlError> {
    let current = snap.view.leader_name();
    if action == Action::Failover {
        return Ok(current.map(str::to_owned));
    }
    let Some(current) = current else { fail!("This cluster has no leader") };
    let leader = match &request.leader {
        Some(leader) => leader.clone(),
        None if request.force => current.to_owned(),
        None => console.ask("Primary", Some(current))?,
    };
    if leader != current {
        fail!("Member {leader} is not the leader of cluster {scope}");
    }
    Ok(Some(leader))
}

/// The candidate: any member but the leader not tagged nofailover; asked
/// for unless forced; a failover must name one.
fn choose_candidate(
    scope: &str,
    snap: &Snapshot,
    action: Action,
    request: &Request,
    leader: Option<&str>,
    console: &mut Console<'_>,
) -> Result<Option<String>, CtlError> {
    let candidates: Vec<&str> = snap
        .view
        .members
        .iter()
        .filter(|(name, m)| Some(name.as_str()) != leader && m.tags.can_fail_over())
        .map(|(name, _)| name.as_str())
        .collect();
    if candidates.is_empty() {
        fail!("No candidates found to {} to", action.word());
    }
    let candidate = match &request.candidate {
        Some(c) => Some(c.clone()),
        None if request.force => None,
        None => {
            let list = candidates.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ");
            Some(console.ask(&format!("Candidate [{list}]"), Some(""))?)
        }
    }
    .filter(|c| !c.is_empty());
    match candidate.as_deref() {
        None if action == Action::Failover => {
            fail!("Failover could be performed only to a specific candidate")
        }
        Some(c) if Some(c) == leader => fail!("{} target and source are the same.", action.title()),
        Some(c) if !candidates.contains(&c) => {
            fail!("Member {c} does not exist in cluster {scope} or is tagged as nofailover")
        }
        _ => Ok(candidate),
    }
}

/// When a switchover happens: `--scheduled`, asked for unless forced.
fn choose_time(
    request: &Request,
    now: jiff::Timestamp,
    console: &mut Console<'_>,
) -> Result<Option<String>, CtlError> {
    let when = match &request.scheduled {
        Some(when) => when.clone(),
        None if request.force => "now".to_owned(),
        None => {
            let example = now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap_or(now);
            let example = example.round(jiff::Unit::Hour).unwrap_or(example);
            console.ask(&format!("When should the switchover take place (e.g. {example})"), Some("now"))?
        }
    };
    parse_scheduled(&when, now, "switchover")
}

/// patronictl's questions: an asynchronous failover target in synchronous
/// mode may lose commits, so it is asked about first.
fn confirm_plan(
    scope: &str,
    snap: &Snapshot,
    action: Action,
    plan: &Plan,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    let view = &snap.view;
    let sync_mode = view.config.as_ref().map_or(SyncMode::Off, |c| c.synchronous_mode);
    if let (Action::Failover, Some(c)) = (action, plan.candidate.as_deref()) {
        let in_sync = view.sync.as_ref().is_some_and(|s| s.members.contains(c));
        let question = format!("Are you sure you want to failover to the asynchronous node {c}?");
        if sync_mode != SyncMode::Off && !in_sync && !console.confirm(&question)? {
            fail!("Aborting failover");
        }
    }
    let demote = plan.leader.as_ref().map_or(String::new(), |l| format!(", demoting current leader {l}"));
    let word = action.word();
    let question = match &plan.scheduled_at {
        Some(at) => format!("Are you sure you want to schedule {word} of cluster {scope} at {at}{demote}?"),
        None => format!("Are you sure you want to {word} cluster {scope}{demote}?"),
    };
    if !console.confirm(&question)? {
        fail!("Aborting {}{word}", if plan.scheduled_at.is_some() { "scheduled " } else { "" });
    }
    Ok(())
}

/// `now`, or a time with its offset, in the future.
fn parse_scheduled(when: &str, now: jiff::Timestamp, what: &str) -> Result<Option<String>, CtlError> {
    let when = when.trim();
    if when.is_empty() || when.eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    let at: jiff::Timestamp = match when.parse() {
        Ok(at) => at,
        Err(_) if when.parse::<jiff::civil::DateTime>().is_ok() => {
            fail!("scheduled time {when:?} has no timezone: add an offset, as in 2026-11-26T02:00+00:00")
        }
        Err(e) => fail!("scheduled time {when:?} is not an ISO 8601 time: {e}"),
    };
    if at <= now {
        fail!("Can't schedule {what} in the past");
    }
    Ok(Some(at.to_string()))
}

async fn switchover<K: Kv>(
    cluster: &Cluster<K>,
    action: Action,
    request: Request,
    rest: &Rest,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    let snap = read(cluster, console).await?;
    let plan = plan(&cluster.scope, &snap, action, &request, jiff::Timestamp::now(), console)?;
    // The leader carries it out; without a leader (failover), the candidate.
    let via = plan.leader.as_deref().or(plan.candidate.as_deref()).unwrap_or_default();
    let api_url = snap.view.members.get(via).map_or("", |m| m.api_url.as_str());
    let sent = match client::endpoint(api_url, action.word()) {
        Ok(uri) => rest.request(Method::POST, &uri, Some(&plan.body(action)), OPERATION_TIMEOUT).await,
        Err(e) => Err(e),
    };
    let why = match sent {
        Ok(answer) if answer.status == 200 || answer.status == 202 => {
            console.line(&format!("{} {}", timestamp(), answer.body))?;
            let snap = read(cluster, console).await?;
            return console.print(&show::list(&cluster.scope, &snap, Format::Pretty, false)?);
        }
        // An agent that does not serve the operation (404, 405, 501): the
        // request goes through etcd instead, as for an unreachable one.
        Ok(answer) if matches!(answer.status, 404 | 405 | 501) => {
            format!("{via}'s REST API does not serve /{} ({})", action.word(), answer.status)
        }
        Ok(answer) => fail!("{} failed, details: {}, {}", action.title(), answer.status, answer.body),
        Err(HttpError::NotSent(why) | HttpError::Lost(why)) => why,
    };
    console.line(&format!(
        "{} Could not {} using the REST API ({why}), falling back to etcd",
        timestamp(),
        action.word()
    ))?;
    through_etcd(cluster, &snap, action, &plan, console).await
}

/// patronictl's fallback: writes the `failover` key, then waits for the
/// leader to change. A request nobody acted on in time is withdrawn.
async fn through_etcd<K: Kv>(
    cluster: &Cluster<K>,
    snap: &Snapshot,
    action: Action,
    plan: &Plan,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    let revision = snap.view.failover.as_ref().map_or(0, |f| f.revision);
    let leader = if action == Action::Switchover { plan.leader.as_deref() } else { None };
    let candidate = plan.candidate.as_deref();
    if !cluster.write_failover(leader, candidate, plan.scheduled_at.as_deref(), revision).await? {
        // A REST request that timed out may have written this very request.
        let now = cluster.read().await?;
        let same = now
            .view
            .failover
            .as_ref()
            .is_some_and(|f| f.leader.as_deref() == leader && f.candidate.as_deref() == candidate);
        if !same {
            fail!("another switchover or failover request was written meanwhile: nothing changed");
        }
    }
    if let Some(at) = &plan.scheduled_at {
        return console.line(&format!("{} Switchover scheduled at {at}", timestamp()));
    }
    let old = snap.view.leader_name();
    let deadline = Instant::now() + settle_time(snap);
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        let now = cluster.read().await?;
        let ours = now
            .view
            .failover
            .as_ref()
            .filter(|f| f.leader.as_deref() == leader && f.candidate.as_deref() == candidate);
        match now.view.leader_name() {
            Some(new) if Some(new) != old => {
                let done = if action == Action::Switchover { "switched over" } else { "failed over" };
                let line = match candidate {
                    Some(c) if c != new => format!("{} to \"{new}\" instead of \"{c}\"", capitalized(done)),
                    _ => format!("Successfully {done} to \"{new}\""),
                };
                console.line(&format!(
                    "{} {line} (in {:.1} s)",
                    timestamp(),
                    started.elapsed().as_secs_f64()
                ))?;
                return console.print(&show::list(&cluster.scope, &now, Format::Pretty, false)?);
            }
            // The leader refused the request: it cleared the key and kept the lock.
            Some(same) if now.view.failover.is_none() => {
                fail!("{} refused by {same} (see its log): nothing changed", action.title());
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            let withdrawn = match ours {
                Some(request) => cluster.clear_failover(request.revision).await.unwrap_or(false),
                None => false,
            };
            let what = if withdrawn { "the request was withdrawn" } else { "check `keelctl list`" };
            fail!("the leader did not change within {:?}: {what}", settle_time(snap));
        }
    }
}

/// `flush switchover`: patronictl asks the members' APIs, the leader first,
/// to `DELETE /switchover`; if none can, it deletes the request in etcd.
async fn flush_switchover<K: Kv>(
    cluster: &Cluster<K>,
    rest: &Rest,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    let snap = read(cluster, console).await?;
    let Some(request) = snap.view.failover.as_ref().filter(|f| f.scheduled_at_wall_ms.is_some()) else {
        return console.line("No pending scheduled switchover");
    };
    let leader = snap.view.leader_name();
    let mut members: Vec<(&String, &keel_core::Member)> = snap.view.members.iter().collect();
    members.sort_by_key(|(name, _)| Some(name.as_str()) != leader);
    for (name, member) in members {
        let Ok(uri) = client::endpoint(&member.api_url, "switchover") else { continue };
        match rest.request(Method::DELETE, &uri, None, STATUS_TIMEOUT * 5).await {
            Ok(answer) if answer.status == 200 => return console.line(&format!("Success: {}", answer.body)),
            Ok(answer) if answer.status == 404 => fail!("Failed: {}", answer.body),
            Ok(answer) => console
                .line(&format!("Failed: member={name}, status_code={}, ({})", answer.status, answer.body))?,
            Err(_) => {}
        }
    }
    console.line(&format!(
        "{} Could not find any accessible member of cluster {}",
        timestamp(),
        cluster.scope
    ))?;
    if !cluster.clear_failover(request.revision).await? {
        fail!("the failover key changed meanwhile: nothing deleted");
    }
    console.line("Success: scheduled switchover deleted from etcd")
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// patronictl's timestamp before an operation's answer.
fn timestamp() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Millisecond).unwrap_or(now).to_string()
}

/// The member names of `args`: patronictl takes the cluster's name first.
fn named<'a>(scope: &str, snap: &Snapshot, args: &'a [String]) -> &'a [String] {
    match args.split_first() {
        Some((first, rest)) if first == scope && !snap.view.members.contains_key(first) => rest,
        _ => args,
    }
}

/// The members a restart or reinit names, checked. Like patronictl, the
/// cluster's name may come first; no member named means every member.
pub fn select_members(
    scope: &str,
    snap: &Snapshot,
    args: &[String],
    role: RoleFilter,
) -> Result<Vec<String>, CtlError> {
    let members = &snap.view.members;
    let named = named(scope, snap, args);
    for name in named {
        if !members.contains_key(name) {
            fail!("{name} is not a member of cluster {scope}");
        }
    }
    let leader = snap.view.leader_name();
    let chosen: Vec<String> = members
        .keys()
        .filter(|name| named.is_empty() || named.contains(name))
        .filter(|name| match role {
            RoleFilter::Any => true,
            RoleFilter::Leader | RoleFilter::Primary => Some(name.as_str()) == leader,
            RoleFilter::Replica => Some(name.as_str()) != leader,
        })
        .cloned()
        .collect();
    if chosen.is_empty() {
        fail!("no member of cluster {scope} matches");
    }
    Ok(chosen)
}

#[derive(Clone, Copy)]
enum Operation {
    Restart,
    Reinit,
    Reload,
    /// DELETE /restart: cancel a scheduled restart.
    FlushRestart,
}

async fn post_to_members(
    snap: &Snapshot,
    names: &[String],
    operation: Operation,
    body: &Value,
    force: bool,
    rest: &Rest,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    // What the answers call it, the path, and the question's verb.
    let (word, path, verb) = match operation {
        Operation::Restart => ("restart", "restart", "restart"),
        Operation::Reinit => ("reinitialize", "reinitialize", "reinitialize"),
        Operation::Reload => ("reload", "reload", "reload"),
        Operation::FlushRestart => ("flush scheduled restart", "restart", "cancel the scheduled restart of"),
    };
    let method = match operation {
        Operation::FlushRestart => Method::DELETE,
        _ => Method::POST,
    };
    if !force
        && !console.confirm(&format!("Are you sure you want to {verb} members {}?", names.join(", ")))?
    {
        fail!("Aborting {word}");
    }
    let mut failed = Vec::new();
    for name in names {
        let api_url = snap.view.members.get(name).map_or("", |m| m.api_url.as_str());
        let sent = match client::endpoint(api_url, path) {
            Ok(uri) => {
                let body = (method == Method::POST).then_some(body);
                rest.request(method.clone(), &uri, body, OPERATION_TIMEOUT).await
            }
            Err(e) => Err(e),
        };
        let line = match (sent, operation) {
            (Ok(answer), Operation::Restart) if answer.status == 200 => {
                format!("Success: restart on member {name}")
            }
            (Ok(answer), Operation::Restart) if answer.status == 202 => {
                format!("Success: restart scheduled on member {name}")
            }
            (Ok(answer), Operation::Reinit) if answer.status == 200 => {
                format!("Success: reinitialize for member {name}")
            }
            (Ok(answer), Operation::FlushRestart) if answer.status == 200 => {
                format!("Success: flush scheduled restart for member {name}")
            }
            (Ok(answer), Operation::FlushRestart) if answer.status == 404 => {
                format!("No scheduled restart on member {name}")
            }
            (Ok(answer), Operation::Reload) if answer.status == 200 || answer.status == 202 => {
                let loop_wait_s = snap.view.config.as_ref().map_or(10, |c| c.loop_wait_ms / 1000);
                format!("Reload request received for member {name} and will be processed within {loop_wait_s} seconds")
            }
            (Ok(answer), _) => {
                failed.push(name.clone());
                format!("Failed: {word} for member {name}, status code={}, ({})", answer.status, answer.body)
            }
            (Err(e), _) => {
                failed.push(name.clone());
                format!("Failed: {word} for member {name}: {e}")
            }
        };
        console.line(&line)?;
    }
    if !failed.is_empty() {
        fail!("{word} failed on {}", failed.join(", "));
    }
    Ok(())
}

/// `remove`: patronictl's three typed confirmations, then every key of the
/// scope deleted.
async fn remove<K: Kv>(cluster: &Cluster<K>, console: &mut Console<'_>) -> Result<(), CtlError> {
    let scope = cluster.scope.clone();
    let snap = read(cluster, console).await?;
    let view = &snap.view;
    if view.initialize.is_none() && view.members.is_empty() && view.leader.is_none() && snap.config.is_none()
    {
        fail!("cluster {scope} has no keys in etcd under {}", cluster.keys().prefix());
    }
    console.print(&show::list(&scope, &snap, Format::Pretty, false)?)?;
    if console.ask("Please confirm the cluster name to remove", None)? != scope {
        fail!("Cluster names specified do not match");
    }
    let question = format!(
        "You are about to remove all information in DCS for {scope}, please type: \"{CONFIRM_REMOVE}\""
    );
    if console.ask(&question, None)? != CONFIRM_REMOVE {
        fail!("You did not exactly type \"{CONFIRM_REMOVE}\"");
    }
    if let Some(leader) = view.leader_name() {
        let answer = console
            .ask("This cluster currently is healthy. Please specify the leader name to continue", None)?;
        if answer != leader {
            fail!("You did not specify the current leader of the cluster");
        }
    }
    let removed = cluster.remove_all().await?;
    console.line(&format!("Removed cluster {scope}: {removed} keys deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::etcd::EtcdOptions;
    use crate::dcs::mem::MemKv;
    use crate::dcs::{Keys, Op};

    const SCOPE: &str = "batman";

    fn keys() -> Keys {
        Keys::new("/service/", SCOPE)
    }

    /// A cluster in the in-memory etcd: pg1 leads, pg2 and pg3 replicate
    /// (pg3 tagged nofailover); their REST APIs listen nowhere.
    async fn seeded() -> MemKv {
        seeded_with_api("http://127.0.0.1:1/patroni").await
    }

    async fn seeded_with_api(api_url: &str) -> MemKv {
        let kv = MemKv::new();
        let k = keys();
        let member = |role: &str, tags: &str| {
            format!(
                r#"{{"role":"{role}","state":"running","timeline":1,"xlog_location":1000,"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"{api_url}","tags":{tags}}}"#
            )
        };
        let puts = [
            (k.initialize(), "7214483235493449737".to_owned()),
            (k.config(), r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"custom":{"kept":true}}"#.to_owned()),
            (k.leader(), "pg1".to_owned()),
            (k.member("pg1"), member("primary", "{}")),
            (k.member("pg2"), member("replica", "{}")),
            (k.member("pg3"), member("replica", r#"{"nofailover":true}"#)),
        ];
        let ops = puts
            .into_iter()
            .map(|(key, value)| Op::Put { key, value: value.into_bytes(), lease: 0 })
            .collect();
        assert!(kv.txn(vec![], ops, vec![]).await.unwrap());
        kv
    }

    fn target() -> Target {
        Target {
            etcd: EtcdOptions::default(),
            scope: SCOPE.into(),
            keys: keys(),
            rest: Rest::default(),
            warnings: vec![],
            // What `edit-config` without changes runs on the YAML file.
            editor: Some("sed -i -e 's/^ttl: 30$/ttl: 45/' -e '/^custom:/,/^  kept/d'".into()),
        }
    }

    /// Runs `args` (after `keelctl`) against `kv`, answering prompts with
    /// `input`; returns the result and stdout.
    async fn run(kv: &MemKv, args: &[&str], input: &str) -> (Result<(), CtlError>, String) {
        use clap::Parser;
        let cli = super::super::Cli::try_parse_from(["keelctl"].iter().chain(args)).unwrap();
        let cluster = Cluster::on(kv.clone(), keys(), SCOPE);
        let mut input = input.as_bytes();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut console = Console::new(&mut input, &mut out, &mut err);
        let result = dispatch(&cluster, &target(), cli.command, &mut console).await;
        (result, String::from_utf8(out).unwrap())
    }

    async fn config(kv: &MemKv) -> Value {
        Cluster::on(kv.clone(), keys(), SCOPE).config().await.unwrap().value
    }

    #[tokio::test]
    async fn edit_config_writes_the_edit_and_keeps_unknown_keys() {
        let kv = seeded().await;
        let (result, out) =
            run(&kv, &["edit-config", "--set", "ttl=40", "--pg", "work_mem=16MB", "--force"], "").await;
        result.unwrap();
        assert!(out.contains("-ttl: 30\n+ttl: 40\n"), "{out}");
        assert!(out.ends_with("Configuration changed\n"), "{out}");
        let after = config(&kv).await;
        assert_eq!(after["ttl"], 40);
        assert_eq!(after["postgresql"]["parameters"]["work_mem"], "16MB");
        assert_eq!(after["custom"], json!({"kept": true}));
        let (result, out) = run(&kv, &["edit-config", "--set", "ttl=40", "--force"], "").await;
        result.unwrap();
        assert_eq!(out, "Not changed\n");
    }

    #[tokio::test]
    async fn edit_config_refuses_an_invalid_result_and_a_declined_prompt() {
        let kv = seeded().await;
        let before = config(&kv).await;
        let (result, _) = run(&kv, &["edit-config", "--set", "ttl=abc", "--force"], "").await;
        let err = result.unwrap_err().0;
        assert!(err.starts_with("the configuration is invalid, nothing written: ttl:"), "{err}");
        let (result, _) = run(&kv, &["edit-config", "--set", "loop_wait=25"], "y\n").await;
        assert!(result.unwrap_err().0.contains("loop_wait + 2*retry_timeout must be <= ttl"));
        let (result, out) = run(&kv, &["edit-config", "--set", "ttl=40"], "n\n").await;
        assert_eq!(result.unwrap_err().0, "aborted: configuration not changed");
        assert!(out.ends_with("Apply these changes? [y/N]: "), "{out}");
        assert_eq!(config(&kv).await, before);
    }

    #[tokio::test]
    async fn edit_config_applies_a_yaml_document_from_stdin() {
        let kv = seeded().await;
        let (result, _) =
            run(&kv, &["edit-config", "--apply", "-", "--force"], "custom: null\nloop_wait: 5\n").await;
        result.unwrap();
        assert_eq!(config(&kv).await, json!({"ttl": 30, "loop_wait": 5, "retry_timeout": 10}));
    }

    #[tokio::test]
    async fn edit_config_without_changes_runs_the_editor_and_replace_replaces() {
        let kv = seeded().await;
        let (result, out) = run(&kv, &["edit-config"], "y\n").await;
        result.unwrap();
        assert!(out.contains("-custom:\n-  kept: true\n"), "{out}");
        assert_eq!(config(&kv).await, json!({"ttl": 45, "loop_wait": 10, "retry_timeout": 10}));
        let (result, _) = run(
            &kv,
            &["edit-config", "--replace", "-", "--force"],
            "ttl: 20\nloop_wait: 2\nretry_timeout: 5\n",
        )
        .await;
        result.unwrap();
        assert_eq!(config(&kv).await, json!({"ttl": 20, "loop_wait": 2, "retry_timeout": 5}));
    }

    #[tokio::test]
    async fn config_write_is_a_compare_and_swap_on_the_revision_read() {
        let kv = seeded().await;
        let cluster = Cluster::on(kv.clone(), keys(), SCOPE);
        let raw = cluster.config().await.unwrap();
        assert!(cluster.write_config(&json!({"ttl": 40}), raw.mod_revision).await.unwrap());
        // A second writer with the same (now stale) revision loses.
        assert!(!cluster.write_config(&json!({"ttl": 50}), raw.mod_revision).await.unwrap());
        assert_eq!(config(&kv).await, json!({"ttl": 40}));
    }

    #[tokio::test]
    async fn pause_and_resume_toggle_the_flag_once() {
        let kv = seeded().await;
        let (result, out) = run(&kv, &["pause"], "").await;
        result.unwrap();
        assert_eq!(out, "Success: cluster management is paused\n");
        assert_eq!(config(&kv).await["pause"], true);
        assert_eq!(run(&kv, &["pause"], "").await.0.unwrap_err().0, "Cluster is already paused");
        run(&kv, &["resume"], "").await.0.unwrap();
        assert!(config(&kv).await.get("pause").is_none());
        assert_eq!(run(&kv, &["resume"], "").await.0.unwrap_err().0, "Cluster is not paused");
    }

    #[tokio::test]
    async fn pause_wait_returns_once_every_member_key_reports_pause() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let kv = seeded().await;
        let published = AtomicBool::new(false);
        let waiting = async {
            let outcome = run(&kv, &["pause", "--wait"], "").await;
            (outcome, published.load(Ordering::SeqCst))
        };
        let agents = async {
            while config(&kv).await.get("pause").is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // No member key says pause yet: keelctl polls a few times.
            tokio::time::sleep(POLL * 3).await;
            // The agents' next loops: pg1 and pg2 publish pause; pg3's key
            // expires (it no longer counts).
            let k = keys();
            let paused = |role: &str| {
                format!(
                    r#"{{"role":"{role}","state":"running","api_url":"http://127.0.0.1:1/patroni","pause":true}}"#
                )
            };
            let ops = vec![
                Op::Put { key: k.member("pg1"), value: paused("primary").into_bytes(), lease: 0 },
                Op::Put { key: k.member("pg2"), value: paused("replica").into_bytes(), lease: 0 },
                Op::Delete { key: k.member("pg3") },
            ];
            published.store(true, Ordering::SeqCst);
            assert!(kv.txn(vec![], ops, vec![]).await.unwrap());
        };
        let (((result, out), published_before_return), ()) = tokio::join!(waiting, agents);
        result.unwrap();
        assert!(published_before_return, "returned before the member keys reported pause");
        assert_eq!(
            out,
            "'pause' request sent, waiting until it is recognized by all nodes\nSuccess: cluster management is paused\n"
        );
    }

    #[tokio::test]
    async fn switchover_checks_leader_and_candidate_like_patronictl() {
        let kv = seeded().await;
        let cases: [(&[&str], &str); 6] = [
            (&["--leader", "pg2", "--force"], "Member pg2 is not the leader of cluster batman"),
            (&["--candidate", "pg1", "--force"], "Switchover target and source are the same."),
            (&["--candidate", "pg3", "--force"], "Member pg3 does not exist in cluster batman or is tagged as nofailover"),
            (&["--candidate", "pg9", "--force"], "Member pg9 does not exist in cluster batman or is tagged as nofailover"),
            (&["--scheduled", "2026-11-26T02:00", "--force"], "scheduled time \"2026-11-26T02:00\" has no timezone: add an offset, as in 2026-11-26T02:00+00:00"),
            (&["--scheduled", "2020-01-01T00:00+00:00", "--force"], "Can't schedule switchover in the past"),
        ];
        for (args, expected) in cases {
            let mut argv = vec!["switchover"];
            argv.extend_from_slice(args);
            assert_eq!(run(&kv, &argv, "").await.0.unwrap_err().0, expected, "{args:?}");
        }
        let (result, _) = run(&kv, &["failover", "--force"], "").await;
        assert_eq!(result.unwrap_err().0, "Failover could be performed only to a specific candidate");
        let (result, out) = run(&kv, &["switchover"], "\npg2\nnow\nn\n").await;
        assert_eq!(result.unwrap_err().0, "Aborting switchover");
        assert!(
            out.contains("Primary [pg1]: Candidate ['pg2'] []: When should the switchover take place"),
            "{out}"
        );
        assert!(
            out.ends_with(
                "Are you sure you want to switchover cluster batman, demoting current leader pg1? [y/N]: "
            ),
            "{out}"
        );
        assert!(Cluster::on(kv.clone(), keys(), SCOPE).read().await.unwrap().view.failover.is_none());
    }

    #[tokio::test]
    async fn failover_to_an_asynchronous_node_in_synchronous_mode_is_asked_first() {
        let kv = seeded().await;
        run(&kv, &["edit-config", "--set", "synchronous_mode=on", "--force"], "").await.0.unwrap();
        let (result, out) = run(&kv, &["failover", "--candidate", "pg2"], "n\n").await;
        assert_eq!(result.unwrap_err().0, "Aborting failover");
        assert_eq!(out, "Are you sure you want to failover to the asynchronous node pg2? [y/N]: ");
        let (result, out) = run(&kv, &["failover", "--candidate", "pg2"], "y\nn\n").await;
        assert_eq!(result.unwrap_err().0, "Aborting failover");
        assert!(out.ends_with(
            "Are you sure you want to failover cluster batman, demoting current leader pg1? [y/N]: "
        ));
    }

    #[tokio::test]
    async fn switchover_without_a_reachable_api_writes_the_failover_key() {
        let kv = seeded().await;
        let at = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(2)).unwrap();
        let at = at.round(jiff::Unit::Second).unwrap().to_string();
        let (result, out) =
            run(&kv, &["switchover", "--candidate", "pg2", "--scheduled", &at, "--force"], "").await;
        result.unwrap();
        assert!(out.contains("Could not switchover using the REST API"), "{out}");
        assert!(out.contains(&format!("Switchover scheduled at {at}")), "{out}");
        let request = Cluster::on(kv.clone(), keys(), SCOPE).read().await.unwrap().view.failover.unwrap();
        assert_eq!((request.leader.as_deref(), request.candidate.as_deref()), (Some("pg1"), Some("pg2")));
        assert_eq!(
            request.scheduled_at_wall_ms,
            Some(at.parse::<jiff::Timestamp>().unwrap().as_millisecond())
        );
    }

    #[tokio::test]
    async fn flush_deletes_a_scheduled_switchover_through_etcd_when_no_api_answers() {
        let kv = seeded().await;
        assert_eq!(
            run(&kv, &["flush", "switchover"], "").await,
            (Ok(()), "No pending scheduled switchover\n".into())
        );
        let at = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(2)).unwrap().to_string();
        run(&kv, &["switchover", "--scheduled", &at, "--force"], "").await.0.unwrap();
        let (result, out) = run(&kv, &["flush", "batman", "switchover"], "").await;
        result.unwrap();
        assert!(out.ends_with("Could not find any accessible member of cluster batman\nSuccess: scheduled switchover deleted from etcd\n"), "{out}");
        assert!(Cluster::on(kv.clone(), keys(), SCOPE).read().await.unwrap().view.failover.is_none());
        let (result, _) = run(&kv, &["flush", "pg2", "switchover"], "").await;
        assert_eq!(result.unwrap_err().0, "flush switchover takes no member names");
        let (result, _) = run(&kv, &["flush", "batman", "nothing"], "").await;
        assert_eq!(result.unwrap_err().0, "flush: unknown target \"nothing\" (restart or switchover)");
        let (result, out) = run(&kv, &["flush", "pg2", "restart"], "n\n").await;
        assert_eq!(result.unwrap_err().0, "Aborting flush scheduled restart");
        assert_eq!(out, "Are you sure you want to cancel the scheduled restart of members pg2? [y/N]: ");
        let (result, _) =
            run(&kv, &["restart", "pg2", "--scheduled", "2020-01-01T00:00Z", "--force"], "").await;
        assert_eq!(result.unwrap_err().0, "Can't schedule restart in the past");
    }

    #[tokio::test]
    async fn pause_refuses_to_schedule_and_restart_names_real_members() {
        let kv = seeded().await;
        run(&kv, &["pause"], "").await.0.unwrap();
        let at = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(2)).unwrap().to_string();
        let (result, _) = run(&kv, &["switchover", "--scheduled", &at, "--force"], "").await;
        assert_eq!(result.unwrap_err().0, "Can't schedule switchover in the paused mode");
        let (result, _) = run(&kv, &["restart", "batman", "pg7", "--force"], "").await;
        assert_eq!(result.unwrap_err().0, "pg7 is not a member of cluster batman");
        let (result, _) = run(&kv, &["reinit", "pg1", "--force"], "").await;
        assert_eq!(result.unwrap_err().0, "pg1 is the leader: it can not be reinitialized");
        let (result, _) = run(&kv, &["reinit", "batman"], "").await;
        assert_eq!(result.unwrap_err().0, "name the members to reinitialize");
        let (result, out) = run(&kv, &["reload", "pg1"], "n\n").await;
        assert_eq!(result.unwrap_err().0, "Aborting reload");
        assert_eq!(out, "Are you sure you want to reload members pg1? [y/N]: ");
        let (result, out) = run(&kv, &["restart", "--role", "replica", "--force"], "").await;
        assert_eq!(result.unwrap_err().0, "restart failed on pg2, pg3");
        assert!(
            out.starts_with("Failed: restart for member pg2: http://127.0.0.1:1/restart: cannot connect"),
            "{out}"
        );
    }

    /// Plays the agents' part on the `failover` key: once it appears,
    /// `react` runs on the in-memory etcd.
    fn agents(kv: &MemKv, react: fn(&Keys) -> Vec<Op>) -> tokio::task::JoinHandle<()> {
        let kv = kv.clone();
        tokio::spawn(async move {
            let k = keys();
            loop {
                let range = kv.range_prefix(&k.failover()).await.unwrap();
                if !range.kvs.is_empty() {
                    kv.txn(vec![], react(&k), vec![]).await.unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    #[tokio::test]
    async fn switchover_through_etcd_waits_for_the_new_leader() {
        // No api_url: the REST call cannot be made, so etcd it is.
        let kv = seeded_with_api("").await;
        let agents = agents(&kv, |k| {
            let leader = Op::Put { key: k.leader(), value: b"pg2".to_vec(), lease: 0 };
            vec![Op::Delete { key: k.failover() }, leader]
        });
        let (result, out) = run(&kv, &["switchover", "--candidate", "pg2", "--force"], "").await;
        result.unwrap();
        agents.await.unwrap();
        assert!(
            out.contains(
                "Could not switchover using the REST API (api_url \"\": not a URL), falling back to etcd"
            ),
            "{out}"
        );
        assert!(out.contains("Successfully switched over to \"pg2\" (in "), "{out}");
        assert!(out.contains("| pg2    | 127.0.0.1:5432 | Leader  |"), "{out}");
    }

    #[tokio::test]
    async fn switchover_through_etcd_reports_a_refusal() {
        let kv = seeded_with_api("").await;
        let agents = agents(&kv, |k| vec![Op::Delete { key: k.failover() }]);
        let (result, _) = run(&kv, &["switchover", "--force"], "").await;
        agents.await.unwrap();
        assert_eq!(result.unwrap_err().0, "Switchover refused by pg1 (see its log): nothing changed");
    }

    #[tokio::test(start_paused = true)]
    async fn switchover_nobody_acts_on_is_withdrawn() {
        let kv = seeded_with_api("").await;
        let (result, _) = run(&kv, &["failover", "--candidate", "pg2", "--force"], "").await;
        // ttl 30 s + 2 × max(10 s, loop_wait 10 s).
        assert_eq!(result.unwrap_err().0, "the leader did not change within 50s: the request was withdrawn");
        let view = Cluster::on(kv.clone(), keys(), SCOPE).read().await.unwrap().view;
        assert_eq!((&view.failover, view.leader_name()), (&None, Some("pg1")));
    }

    #[test]
    fn select_members_takes_the_cluster_name_first_and_filters_by_role() {
        let mut snap = Snapshot::default();
        snap.view.leader = Some(keel_core::dcs::LeaderKey { name: "pg1".into(), revision: 1 });
        for name in ["pg1", "pg2", "pg3"] {
            snap.view.members.insert(name.into(), keel_core::Member::default());
        }
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            select_members(SCOPE, &snap, &args(&["batman", "pg2"]), RoleFilter::Any).unwrap(),
            ["pg2"]
        );
        assert_eq!(select_members(SCOPE, &snap, &args(&[]), RoleFilter::Replica).unwrap(), ["pg2", "pg3"]);
        assert_eq!(select_members(SCOPE, &snap, &args(&["batman"]), RoleFilter::Leader).unwrap(), ["pg1"]);
        assert!(select_members(SCOPE, &snap, &args(&["pg2"]), RoleFilter::Primary).is_err());
    }

    #[tokio::test]
    async fn remove_needs_every_typed_confirmation() {
        let kv = seeded().await;
        let wrong = [
            ("robin\n", "Cluster names specified do not match"),
            ("batman\nyes\n", "You did not exactly type \"Yes I am aware\""),
            ("batman\nYes I am aware\npg2\n", "You did not specify the current leader of the cluster"),
            ("batman\n", "no answer (end of input): aborted, nothing changed"),
        ];
        for (input, expected) in wrong {
            assert_eq!(run(&kv, &["remove", "batman"], input).await.0.unwrap_err().0, expected);
        }
        assert_eq!(kv.range_prefix(keys().prefix()).await.unwrap().kvs.len(), 6);
        let (result, out) = run(&kv, &["remove", "batman"], "batman\nYes I am aware\npg1\n").await;
        result.unwrap();
        assert!(out.contains("Please confirm the cluster name to remove: "), "{out}");
        assert!(out.ends_with("Removed cluster batman: 6 keys deleted\n"), "{out}");
        assert!(kv.range_prefix(keys().prefix()).await.unwrap().kvs.is_empty());
        let (result, _) = run(&kv, &["remove", "batman"], "").await;
        assert_eq!(result.unwrap_err().0, "cluster batman has no keys in etcd under /service/batman/");
    }
}
