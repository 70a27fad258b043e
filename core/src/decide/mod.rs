//! `decide`: the pure planning half of `step`. It reads the state and the
//! observation and returns the next state and the decision; `step` checks
//! invariants and swaps the state in.
//!
//! The rules are tried in a fixed order, safety first: shutdown requests
//! are remembered, the lease (rules 1 and 6, `lease.rs`) fences a primary
//! before anything else, pause included, then the DCS-unknown case (rule
//! 5), bootstrap, pause, operator requests, and finally the leader or
//! replica paths.

mod bootstrap;
mod dcs_unknown;
mod election;
pub(crate) mod fitness;
mod follow;
mod leader;
mod lease;
mod operator;
mod pause;
pub(crate) mod rewind;
mod switchover;
pub(crate) mod sync;

use crate::dcs::{ClusterView, DcsView, DynamicConfig};
use crate::decision::{Action, Decision, MemberStatus, Reason};
use crate::input::{ActionResult, Observation, Request};
use crate::limits::ACTIONS_MAX;
use crate::pg::DataDir;
use crate::role::Role;
use crate::state::{FailsafePromise, State};

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
    if let Some(v) = lease::fence(cx) {
        return v;
    }
    if let Some(v) = operator::shutdown(cx) {
        return v;
    }
    let Some(view) = cx.view else {
        return dcs_unknown::decide(cx);
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
        return leader::decide(cx, view);
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
    /// The lock is gone now, by a definite fact: a renewal failed, or the
    /// view names another holder or none (rule 6, `lease.rs`).
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
        lease::observe_holder(&mut cx);
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
            if self.prev.last_leader.as_deref() != Some(leader) {
                self.next.last_leader = Some(leader.to_owned());
                self.next.leader_changes += 1;
                // A new era: what the last leader reached may lie on a branch
                // this one's promotion cut off (a manual failover to a
                // lagging member); `status` still holds it until the new
                // leader's first renewal rewrites it.
                self.next.last_leader_lsn = 0;
                self.next.optime_before_leader = view.optime_lsn;
            }
            if let Some(m) = view.members.get(leader) {
                self.next.last_leader_lsn = self.next.last_leader_lsn.max(m.lsn);
            }
        }
        if let Some(optime) = view.optime_lsn.filter(|o| self.next.optime_before_leader != Some(*o)) {
            self.next.last_leader_lsn = self.next.last_leader_lsn.max(optime);
            self.next.optime_before_leader = None;
        }
    }

    /// Folds the previous decision's outcomes into the next state: the
    /// lease (rule 1 and 6, `lease.rs`), then the role that bootstrap,
    /// clone and rewind moved to.
    fn fold_outcomes(&mut self) {
        let obs = self.obs;
        for outcome in &obs.outcomes {
            lease::fold_outcome(self, outcome);
            match (&outcome.action, outcome.result) {
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
                let until_ms = lease::failsafe_promise_until_ms(self);
                self.next.failsafe_promise = Some(FailsafePromise { leader: leader.clone(), until_ms });
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
        let holds = lease::drop_expired(next, self.obs.now_ms);
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
        if let Some(lease_ms) = lease::wake_in_ms(self) {
            wake = wake.min(lease_ms);
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
