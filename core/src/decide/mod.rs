//! `decide`: the pure planning half of `step`. It reads the state and the
//! observation and returns the next state and the decision; `step` checks
//! invariants and swaps the state in.
//!
//! The rules are tried in a fixed order, safety first: shutdown requests
//! are remembered, fencing (rules 1 and 6) overrides everything including
//! pause, then the DCS-unknown case (rule 5), bootstrap, pause, operator
//! requests, and finally the leader or replica paths.

mod bootstrap;
mod election;
mod fencing;
mod fitness;
mod follow;
mod leader;
mod operator;
mod pause;
pub(crate) mod rewind;
mod switchover;
mod sync;

use crate::dcs::{ClusterView, DcsView, DynamicConfig};
use crate::decision::{Action, Decision, MemberStatus, Reason};
use crate::input::{ActionResult, Observation, Request};
use crate::limits::ACTIONS_MAX;
use crate::pg::DataDir;
use crate::role::Role;
use crate::state::{FailsafePromise, State};
use crate::time::drift_margin_ms;

/// The shortest wait before retrying an action that just failed.
const MIN_RETRY_MS: u64 = 100;

/// How often a leader whose sync key names fewer standbys than it wants
/// looks again while a replica could serve: a standby that connects is
/// named within this, not a `loop_wait` later (in strict mode commits wait
/// meanwhile: 10 s after every promotion with the guide's timings).
const SYNC_LOOK_AGAIN_MS: u64 = 250;

/// The next state and the decision that leads to it.
pub(crate) struct Plan {
    pub next: State,
    pub decision: Decision,
}

pub(crate) fn decide(prev: &State, obs: &Observation) -> Plan {
    let mut cx = Ctx::new(prev, obs);
    let (actions, reason) = route(&mut cx);
    cx.finish(actions, reason)
}

/// What a rule returns: the actions in order and the reason.
pub(crate) type Verdict = (Vec<Action>, Reason);

fn route(cx: &mut Ctx) -> Verdict {
    if let Some(v) = fencing::decide(cx) {
        return v;
    }
    if let Some(v) = operator::shutdown(cx) {
        return v;
    }
    let Some(view) = cx.view else {
        return fencing::dcs_unknown(cx);
    };
    if let Some(v) = bootstrap::decide(cx, view) {
        return v;
    }
    if let Some(v) = operator::request(cx, view) {
        return v;
    }
    if cx.cfg.pause {
        return pause::decide(cx, view);
    }
    if cx.holds_lease() {
        if let Some(v) = leader::decide(cx, view) {
            return v;
        }
    }
    match view.leader_name() {
        Some(leader) if leader != cx.me() => follow::decide(cx, view, leader),
        _ => election::decide(cx, view),
    }
}

/// The working context of one decision: the inputs, the effective config and
/// the next state under construction.
pub(crate) struct Ctx<'a> {
    pub prev: &'a State,
    pub obs: &'a Observation,
    /// The DCS view, unless unreachable or older than one already seen.
    pub view: Option<&'a ClusterView>,
    pub cfg: DynamicConfig,
    pub next: State,
    /// A renewal failed definitely: the lock is gone now (rule 6).
    pub lock_lost: bool,
}

impl<'a> Ctx<'a> {
    fn new(prev: &'a State, obs: &'a Observation) -> Ctx<'a> {
        let view = match &obs.dcs {
            DcsView::Reachable(v) if v.revision >= prev.seen_revision => Some(v),
            _ => None,
        };
        let cfg = view.and_then(|v| v.config.clone()).unwrap_or_else(|| prev.config.clone());
        let mut cx = Ctx { prev, obs, view, cfg, next: prev.clone(), lock_lost: false };
        cx.next.config = cx.cfg.clone();
        // Kept only by the rule that keeps counting it.
        cx.next.orphan_initialize_since_ms = None;
        cx.next.orphan_initialize_revision = 0;
        cx.next.candidate_wait = None;
        if let Some(v) = view {
            cx.observe_view(v);
        }
        cx.fold_outcomes();
        cx.fold_request();
        cx.note_sync_names();
        // The view is read after the previous actions ran: a key that does
        // not name this node is a definite fact, the lock is gone (rule 6).
        // A key that vanished counts too; Patroni re-creates it if nobody
        // took it, keel does not on purpose (README, Differences from
        // Patroni): every other member is racing for it in this instant.
        if view.is_some_and(|v| v.leader_name() != Some(prev.name.as_str()))
            && cx.next.lease_deadline_ms.is_some()
        {
            cx.next.lease_deadline_ms = None;
            cx.lock_lost = true;
        }
        cx
    }

    fn observe_view(&mut self, view: &ClusterView) {
        self.next.seen_revision = view.revision;
        // Whom failsafe mode must hear from: every member visible, and every
        // member the failsafe key still allows to race.
        let listed = view.failsafe.iter().flatten();
        self.next.known_members =
            view.members.keys().chain(listed).filter(|m| **m != self.prev.name).cloned().collect();
        if let Some(leader) = view.leader_name() {
            if let Some(m) = view.members.get(leader) {
                self.next.last_leader_lsn = self.next.last_leader_lsn.max(m.lsn);
            }
            if self.prev.last_leader.as_deref() != Some(leader) {
                self.next.last_leader = Some(leader.to_owned());
                self.next.leader_changes += 1;
            }
        }
        if let Some(optime) = view.optime_lsn {
            self.next.last_leader_lsn = self.next.last_leader_lsn.max(optime);
        }
    }

    /// Folds the previous decision's outcomes into the next state. A lease
    /// counts from when its request was sent (rule 1); only a definite
    /// failure of a renewal means the lock is gone (rule 6).
    fn fold_outcomes(&mut self) {
        let now = self.obs.now_ms;
        for outcome in &self.obs.outcomes {
            let sent = outcome.sent_at_ms.min(now);
            let mut cfg = self.cfg.clone();
            cfg.ttl_ms = cfg.ttl_ms.min(outcome.lease_ttl_ms.unwrap_or(u64::MAX));
            let validity = cfg.lease_validity_ms();
            match (&outcome.action, outcome.result) {
                (Action::AcquireLease | Action::RenewLease { .. }, ActionResult::Done) => {
                    // Some for exactly these outcomes.
                    if let Some(deadline) = outcome.lease_deadline_ms(&self.cfg, now) {
                        self.next.lease_deadline_ms =
                            Some(self.next.lease_deadline_ms.map_or(deadline, |d| d.max(deadline)));
                    }
                }
                (Action::CheckFailsafe { .. }, ActionResult::Done) => {
                    // Every member confirmed: none of them races until this
                    // much later by its own clock (rule 4, failsafe mode).
                    if let Some(d) = self.next.lease_deadline_ms {
                        self.next.lease_deadline_ms = Some(d.max(sent.saturating_add(validity)));
                    }
                }
                (Action::RenewLease { .. }, ActionResult::Failed) => {
                    self.next.lease_deadline_ms = None;
                    self.lock_lost = true;
                }
                // Postgres stopped being writable, or the key is gone: the
                // lease is given up. A demote that failed keeps it, so the
                // leader can try again while the lease lasts.
                (Action::Demote { .. }, ActionResult::Done | ActionResult::Unknown)
                | (
                    Action::ReleaseLease { .. },
                    ActionResult::Done | ActionResult::Unknown | ActionResult::Failed,
                ) => self.next.lease_deadline_ms = None,
                (Action::TakeInitializeKey, ActionResult::Done) => {
                    self.next.role = Role::Bootstrapping;
                }
                (Action::CloneFrom { .. } | Action::Reinitialize { .. }, ActionResult::Done) => {
                    self.next.role = Role::Replica;
                    self.next.rewind_attempted = false;
                    self.next.rewind_failed = false;
                }
                (Action::CloneFrom { .. } | Action::Reinitialize { .. }, ActionResult::Failed) => {
                    self.next.role = Role::Uninitialized;
                }
                (Action::Rewind { .. }, ActionResult::Done) => {
                    self.next.role = Role::Replica;
                    self.next.rewind_attempted = true;
                    self.next.rewind_failed = false;
                }
                (Action::Rewind { .. }, ActionResult::Failed | ActionResult::Unknown) => {
                    self.next.role = Role::Replica;
                    self.next.rewind_failed = true;
                }
                _ => {}
            }
        }
    }

    /// A primary notes when `synchronous_standby_names` changes and where
    /// its WAL stood then (rule 3): Postgres calls any listed, streaming
    /// standby `sync` however far behind it is, so one listed after some
    /// commits were acknowledged without it may lack them until its flush
    /// position passes this point.
    fn note_sync_names(&mut self) {
        let pg = &self.obs.pg;
        if !pg.is_running_primary() {
            self.next.sync_names_seen = None;
            return;
        }
        if self.prev.sync_names_seen.as_ref() != Some(&pg.sync_standby_names) {
            self.next.sync_names_seen = Some(pg.sync_standby_names.clone());
            self.next.sync_names_since_lsn = pg.wal_position();
        }
    }

    fn fold_request(&mut self) {
        match &self.obs.request {
            Some(Request::Shutdown) => self.next.shutdown = true,
            Some(Request::FailsafePing { leader }) => {
                // Promise not to race for as long as the leader's extension
                // can last, plus the drift margin in the leader's favour.
                let ttl = self.cfg.ttl_ms;
                let margin = drift_margin_ms(ttl, self.cfg.max_clock_drift_ppm);
                self.next.failsafe_promise = Some(FailsafePromise {
                    leader: leader.clone(),
                    until_ms: self.obs.now_ms.saturating_add(ttl + margin),
                });
            }
            _ => {}
        }
    }

    pub fn me(&self) -> &str {
        &self.prev.name
    }

    pub fn now(&self) -> u64 {
        self.obs.now_ms
    }

    /// Holds a lease whose deadline lies ahead.
    pub fn holds_lease(&self) -> bool {
        self.next.lease_remaining_ms(self.now()).is_some()
    }

    /// The outcome of `pred`-matching actions in the previous decision.
    pub fn outcome(&self, pred: impl Fn(&Action) -> bool) -> Option<ActionResult> {
        self.obs.outcomes.iter().find(|o| pred(&o.action)).map(|o| o.result)
    }

    pub fn optime(&self) -> u64 {
        self.obs.pg.wal_position()
    }

    /// What this node publishes in its member key.
    fn member_status(&self) -> MemberStatus {
        MemberStatus::of(self.next.role, &self.obs.pg, &self.obs.tags)
    }

    fn finish(mut self, mut actions: Vec<Action>, reason: Reason) -> Plan {
        self.settle_role(&actions);
        if let Some(view) = self.view {
            let status = self.member_status();
            let published = view.members.get(self.me()).is_some_and(|m| {
                m.role == status.role
                    && m.state == status.state
                    && m.timeline == status.timeline
                    && m.lsn == status.lsn
                    && m.tags == status.tags
            });
            if !published && !self.next.shutdown {
                // Before work that takes minutes (initdb, a base backup,
                // pg_rewind): its state shows while it runs, not once it is
                // done. The others clear an initialize key whose winner
                // does not show as initializing within a TTL, and a slow
                // initdb took longer than that (found by the end-to-end
                // tests on a loaded machine: two members ran initdb).
                let at = actions.iter().position(Action::is_long_work).unwrap_or(actions.len());
                actions.insert(at, Action::PublishMember(status));
            }
        }
        assert!(actions.len() <= ACTIONS_MAX, "planned {} actions", actions.len());
        let wake_after_ms = self.wake_after(&actions);
        Plan { next: self.next, decision: Decision { actions, reason, wake_after_ms } }
    }

    /// The role follows from the lease and the actions: the lease makes a
    /// leader, giving it up makes a replica.
    fn settle_role(&mut self, actions: &[Action]) {
        let next = &mut self.next;
        let holds = next.lease_remaining_ms(self.obs.now_ms).is_some();
        if !holds {
            next.lease_deadline_ms = None;
        }
        if next.shutdown {
            next.role = Role::Stopped;
            return;
        }
        let has_data = matches!(self.obs.pg.data, DataDir::Initialised(_));
        let repairing = actions.iter().any(|a| {
            matches!(a, Action::CloneFrom { .. } | Action::Reinitialize { .. } | Action::Rewind { .. })
        });
        next.role = match next.role {
            _ if holds => Role::Leader,
            Role::Leader => Role::Replica,
            Role::Uninitialized if has_data => Role::Replica,
            // A repair whose outcome was not reported, yet the data is there.
            Role::Cloning | Role::Rewinding if has_data && !repairing => Role::Replica,
            role => role,
        };
        if !holds || self.obs.pg.is_running() {
            next.primary_down_since_ms = None;
        }
    }

    /// A leader in synchronous mode whose sync key names fewer standbys
    /// than `synchronous_node_count` while some replica streaming from it
    /// could be named.
    fn sync_standby_wanted(&self) -> bool {
        let Some(view) = self.view else {
            return false;
        };
        if !self.cfg.sync_enabled() || !self.holds_lease() || !self.obs.pg.is_running_primary() {
            return false;
        }
        let named = view
            .sync
            .as_ref()
            .filter(|k| k.leader.as_deref() == Some(self.me()))
            .map_or(0, |k| k.members.len());
        if named >= self.cfg.synchronous_node_count as usize {
            return false;
        }
        view.members.iter().any(|(name, m)| {
            name != self.me()
                && m.is_running()
                && m.role == crate::dcs::MemberRole::Replica
                && !m.tags.nosync
                && m.tags.replicatefrom.as_deref().is_none_or(|r| r == self.me())
                && view.sync.as_ref().is_none_or(|k| !k.members.contains(name))
        })
    }

    /// Step again at once after actions that changed something (unless the
    /// same action just failed: no busy loop), else on the loop timer, and
    /// never later than the next lease or schedule boundary.
    fn wake_after(&self, actions: &[Action]) -> u64 {
        let failed_again = actions.iter().any(|a| {
            self.obs
                .outcomes
                .iter()
                .any(|o| o.action == *a && matches!(o.result, ActionResult::Failed | ActionResult::Unknown))
        });
        if actions.iter().any(|a| !a.is_routine()) && !failed_again {
            return 0;
        }
        let now = self.now();
        let mut wake = self.cfg.loop_wait_ms;
        match self.next.gentle_demote_in_ms(now, &self.cfg) {
            None => {}
            // Past that point (a gentle demote failed): retry soon, not in a
            // busy loop.
            Some(0) => wake = wake.min(MIN_RETRY_MS),
            Some(until) => wake = wake.min(until),
        }
        if self.sync_standby_wanted() {
            wake = wake.min(SYNC_LOOK_AGAIN_MS);
        }
        if let Some(p) = &self.next.failsafe_promise {
            if p.until_ms > now {
                wake = wake.min(p.until_ms - now);
            }
        }
        if let Some(since) = self.next.primary_down_since_ms {
            let end = since.saturating_add(self.cfg.primary_start_timeout_ms);
            if end > now {
                wake = wake.min(end - now);
            }
        }
        if let Some(at) = self.view.and_then(|v| v.failover.as_ref()?.scheduled_at_wall_ms) {
            let in_ms = at.saturating_sub(self.obs.wall_ms);
            if in_ms > 0 {
                wake = wake.min(in_ms as u64);
            }
        }
        wake
    }
}
