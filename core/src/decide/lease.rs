//! The leader lease: safety rules 1 and 6 of ARCHITECTURE.md, in one place.
//!
//! **Rule 1, lease before write.** A node is writable only while it holds
//! the leader lease by its *own* monotonic clock. The lease counts from when
//! the request that took or renewed it was *sent*, for the TTL less a margin
//! for clock-rate drift (`max_clock_drift`). Before that deadline passes
//! without a confirmed renewal, the primary stops accepting writes; past it,
//! it demotes at once, in that very step, whatever else is going on (pause
//! included: a stale `pause` flag must not keep a primary writable while
//! another node, seeing the cluster resumed, promotes).
//!
//! **Rule 6, unknown is not lost.** A DCS timeout or error means "unknown":
//! the leader keeps its role until its deadline and uses the time left to
//! demote gently (a checkpoint, a clean stop) rather than crash Postgres.
//! Only a definite fact means the lock is gone now: a compare-and-swap
//! that failed, or a view in which the leader key names someone else or
//! nobody. The leader demotes only when the lease is really running out
//! (the gentle window, [`DynamicConfig::gentle_demote_ms`] before the
//! deadline), never in a step in which etcd confirmed the renewal. A
//! primary that was frozen past its lease finds its deadline behind it and
//! demotes before anything else. It takes the lock again only through the
//! race, whose one fitness predicate refuses a node behind a newer
//! timeline or on a diverged history (rules 2 and 4), or by renewing a key
//! that still names it (a compare-and-swap); and a lock holder whose
//! Postgres is a replica is judged by that predicate again before it
//! promotes ([`unfit_holder`]), for its acquire may have gone out long
//! after the race was judged.
//!
//! Everything that reads or moves `State::lease_deadline_ms` is here: the
//! arithmetic, the folding of outcomes and views into the deadline, the
//! demotion, and the wake-up at the gentle point. The other rules ask
//! [`Ctx::holds_lease`]. (The runtime bounds its I/O by the same deadline,
//! through `State::gentle_demote_in_ms` and `State::lease_remaining_ms`.)

use super::fitness::{self, Candidate};
use super::{Ctx, Verdict};
use crate::dcs::{ClusterView, DynamicConfig};
use crate::decision::{Action, DemoteMode, Reason};
use crate::input::{ActionResult, Outcome};
use crate::state::State;
use crate::time::drift_margin_ms;

/// The wait before stepping again once past the gentle point (a gentle
/// demote failed, or a renewal was confirmed too late to leave the lease
/// outside the window): soon, but not in a busy loop.
const MIN_RETRY_MS: u64 = 100;

impl DynamicConfig {
    /// How long after a renewal was sent this node may still act as leader:
    /// the TTL less the drift margin (rule 1).
    pub fn lease_validity_ms(&self) -> u64 {
        let margin = drift_margin_ms(self.ttl_ms, self.max_clock_drift_ppm);
        self.ttl_ms.saturating_sub(margin)
    }

    /// When the lease has this little time left without a confirmed renewal,
    /// the leader demotes gently while it still can (rule 6): `retry_timeout`,
    /// at most half the lease.
    pub fn gentle_demote_ms(&self) -> u64 {
        self.retry_timeout_ms.min(self.lease_validity_ms() / 2)
    }
}

impl State {
    /// Time left on the lease at `now_ms`, if one is held and not yet expired.
    pub fn lease_remaining_ms(&self, now_ms: u64) -> Option<u64> {
        self.lease_deadline_ms.filter(|d| *d > now_ms).map(|d| d - now_ms)
    }

    /// Time left at `now_ms` until the gentle demote point
    /// ([`DynamicConfig::gentle_demote_ms`] before the lease deadline), zero
    /// once past it; `None` without a lease.
    pub fn gentle_demote_in_ms(&self, now_ms: u64, cfg: &DynamicConfig) -> Option<u64> {
        self.lease_deadline_ms.map(|d| d.saturating_sub(cfg.gentle_demote_ms()).saturating_sub(now_ms))
    }
}

impl Ctx<'_> {
    /// Holds a lease whose deadline lies ahead. With a view, the leader key
    /// then names this node: a view in which it does not took the lease
    /// away when the context was built ([`observe_holder`]).
    pub fn holds_lease(&self) -> bool {
        self.next.lease_remaining_ms(self.now()).is_some()
    }
}

/// Folds one outcome of the previous decision into the lease. A lease
/// counts from when its request was sent, never for longer than the TTL
/// etcd granted it with (rule 1); only a definite failure of a renewal
/// means the lock is gone (rule 6): an unknown one changes nothing.
pub(super) fn fold_outcome(cx: &mut Ctx, outcome: &Outcome) {
    let sent = outcome.sent_at_ms.min(cx.now());
    let mut cfg = cx.cfg.clone();
    cfg.ttl_ms = cfg.ttl_ms.min(outcome.lease_ttl_ms.unwrap_or(u64::MAX));
    let validity = cfg.lease_validity_ms();
    let next = &mut cx.next;
    match (&outcome.action, outcome.result) {
        (Action::AcquireLease | Action::RenewLease { .. }, ActionResult::Done) => {
            let deadline = sent.saturating_add(validity);
            next.lease_deadline_ms = Some(next.lease_deadline_ms.map_or(deadline, |d| d.max(deadline)));
        }
        (Action::CheckFailsafe { .. }, ActionResult::Done) => {
            // Every member confirmed: none of them races until this much
            // later by its own clock (failsafe mode).
            if let Some(d) = next.lease_deadline_ms {
                next.lease_deadline_ms = Some(d.max(sent.saturating_add(validity)));
            }
        }
        (Action::RenewLease { .. }, ActionResult::Failed) => {
            next.lease_deadline_ms = None;
            cx.lock_lost = true;
        }
        // Postgres stopped being writable, or the key is gone: the lease is
        // given up. A demote that failed keeps it, so the leader can try
        // again while the lease lasts.
        (Action::Demote { .. }, ActionResult::Done | ActionResult::Unknown)
        | (Action::ReleaseLease { .. }, ActionResult::Done | ActionResult::Unknown | ActionResult::Failed) => {
            next.lease_deadline_ms = None
        }
        _ => {}
    }
}

/// The view is read after the previous actions ran: a leader key that does
/// not name this node is a definite fact, the lock is gone (rule 6). A key
/// that vanished counts too; Patroni re-creates it if nobody took it, keel
/// does not on purpose (README, Differences from Patroni): every other
/// member is racing for it in this instant.
pub(super) fn observe_holder(cx: &mut Ctx) {
    let named = cx.view.map(|v| v.leader_name() == Some(cx.prev.name.as_str()));
    if named == Some(false) && cx.next.lease_deadline_ms.is_some() {
        cx.next.lease_deadline_ms = None;
        cx.lock_lost = true;
    }
}

/// Until when this node promises a failsafe leader not to race: for as long
/// as the leader's extension can last, plus the drift margin in the
/// leader's favour.
pub(super) fn failsafe_promise_until_ms(cx: &Ctx) -> u64 {
    let ttl = cx.cfg.ttl_ms;
    let margin = drift_margin_ms(ttl, cx.cfg.max_clock_drift_ppm);
    cx.now().saturating_add(ttl + margin)
}

/// Demotes a running primary that has no lease, has passed its deadline,
/// has seen its lock taken, or is about to run out without a confirmed
/// renewal. Runs before every other rule.
pub(super) fn fence(cx: &mut Ctx) -> Option<Verdict> {
    if !cx.obs.pg.is_running_primary() {
        return None;
    }
    let now = cx.now();
    let immediate = |reason| Some((vec![Action::Demote { mode: DemoteMode::Immediate }], reason));
    let holder = cx.view.and_then(|v| v.leader_name()).filter(|h| *h != cx.me()).map(str::to_owned);
    let Some(deadline) = cx.next.lease_deadline_ms else {
        if cx.lock_lost {
            return immediate(Reason::LockLost { holder });
        }
        return immediate(Reason::NoLease);
    };
    if now >= deadline {
        return immediate(Reason::LeaseExpired { overdue_ms: now - deadline });
    }
    // A definite fact from the DCS: the key is gone or names someone else.
    if cx.view.is_some_and(|v| v.leader_name() != Some(cx.me())) {
        return immediate(Reason::LockLost { holder });
    }
    let remaining_ms = deadline - now;
    // Never in a step in which etcd confirmed the lease: it answers, so
    // the lease is not really running out; renew again. If that renewal is
    // not confirmed, the next step, `MIN_RETRY_MS` on, demotes.
    let confirmed = cx.obs.outcomes.iter().any(|o| {
        matches!(o.action, Action::AcquireLease | Action::RenewLease { .. }) && o.result == ActionResult::Done
    });
    if remaining_ms <= cx.cfg.gentle_demote_ms() && !confirmed {
        // On shutdown the gentle demote is the final stop.
        let mode = if cx.next.shutdown { DemoteMode::Offline } else { DemoteMode::Graceful };
        let mut actions = vec![Action::Demote { mode }];
        if cx.view.is_some() {
            actions.push(Action::ReleaseLease { optime_lsn: cx.optime() });
        }
        return Some((actions, Reason::LeaseRunningOut { remaining_ms }));
    }
    None
}

/// A lock holder whose Postgres is a replica, about to promote, that may
/// not lead on the view showing it the lock: it releases the lock instead.
/// The race judged it on an older view, and the acquire may have gone out
/// long after that decision (an agent frozen in between), while another
/// member led on a newer timeline; promoting then would fork the history
/// and drop that member's writes (rule 6: never over a newer timeline).
/// The safety checks of [`fitness::fit_to_lead`] only: the lag limit and
/// the ranking were the race's.
pub(super) fn unfit_holder(cx: &Ctx, view: &ClusterView) -> Option<Verdict> {
    let why = fitness::fit_to_lead(cx, view, &Candidate::me(cx), None).err()?;
    let release = Action::ReleaseLease { optime_lsn: cx.optime() };
    Some((vec![release], Reason::HolderUnfit { why }))
}

/// Drops a lease whose deadline has passed; whether one is still held.
pub(super) fn drop_expired(next: &mut State, now_ms: u64) -> bool {
    let holds = next.lease_remaining_ms(now_ms).is_some();
    if !holds {
        next.lease_deadline_ms = None;
    }
    holds
}

/// How long the node may sleep before the lease needs it again: until the
/// gentle point, and once past it `MIN_RETRY_MS`.
pub(super) fn wake_in_ms(cx: &Ctx) -> Option<u64> {
    match cx.next.gentle_demote_in_ms(cx.now(), &cx.cfg)? {
        0 => Some(MIN_RETRY_MS),
        until => Some(until),
    }
}
