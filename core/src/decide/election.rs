//! The leader race (behaviour 5, safety rule 2, behaviour 12): with no
//! leader, a replica takes the lock only if it is the healthiest member it
//! can see. The lock's compare-and-swap settles any remaining tie.

use super::fitness::{self, Candidate};
use super::{Ctx, Verdict};
use crate::dcs::{ClusterView, SyncMode};
use crate::decision::{Action, Reason, StartAs, Unfit};
use crate::pg::PgProcess;
use crate::rank::Rank;
use crate::state::CandidateWait;

/// No lock held by this node and no other leader: reclaim a key that still
/// names us, or race.
pub(super) fn decide(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    let switching_away = view.failover.as_ref().and_then(|f| f.leader.as_deref()) == Some(cx.me());
    if view.leader_name() == Some(cx.me()) {
        if switching_away {
            // Demoted for a switchover whose release did not go through:
            // release again rather than take the lock back.
            let release = Action::ReleaseLease { optime_lsn: cx.optime() };
            return (vec![release], Reason::Switchover { candidate: None });
        }
        // Our key outlived our lease (an agent restart, a renewal whose
        // answer was lost): confirm it before acting as leader.
        return (vec![Action::RenewLease { optime_lsn: cx.optime() }], Reason::ReclaimingLease);
    }
    if cx.outcome(|a| *a == Action::AcquireLease) == Some(crate::input::ActionResult::Failed) {
        return (Vec::new(), Reason::LeaseTakenElsewhere);
    }
    match cx.obs.pg.process {
        PgProcess::Stopped => {
            let start = Action::StartPostgres { role: StartAs::Replica { upstream: None } };
            return (vec![start], Reason::NoLeaderStartingReadOnly);
        }
        PgProcess::Starting => return (Vec::new(), Reason::WaitingForPostgres),
        PgProcess::RunningPrimary | PgProcess::RunningReplica => {}
    }
    if let Some(p) = cx.next.failsafe_promise.as_ref().filter(|p| p.until_ms > cx.now()) {
        return (Vec::new(), Reason::FailsafePromise { leader: p.leader.clone() });
    }
    if let Some(v) = failover_request(cx, view, switching_away) {
        return v;
    }
    let manual = view.failover.as_ref().and_then(|f| f.candidate.as_deref()) == Some(cx.me());
    match fitness(cx, view, manual) {
        Ok(()) => (vec![Action::AcquireLease], Reason::TakingLease),
        Err(why) if manual => {
            // The operator named this node, but it may not lead: say why
            // and clear the request, so that the usual race runs now rather
            // than after the wait bound (rule 10).
            let clear = Action::ClearFailoverRequest { revision: failover_revision(view) };
            (vec![clear], Reason::CandidateUnfit { why })
        }
        Err(why) => (Vec::new(), Reason::NotHealthiest { why }),
    }
}

/// A switchover or failover request while nobody holds the lock: leave the
/// lock to the requested candidate (or, for a leader stepping down, to any
/// fit member) while it is fit, but not for ever. A candidate unfit by its
/// key leaves the usual race, lag limit included (Patroni drops the lag
/// check then; keel keeps the operator's bound on lost writes, on
/// purpose). A request that nobody carries out within a TTL (the candidate
/// died, or refuses itself on facts the others cannot see) is cleared, and
/// the usual race runs (rule 10).
fn failover_request(cx: &mut Ctx, view: &ClusterView, switching_away: bool) -> Option<Verdict> {
    let request = view.failover.as_ref()?;
    let waiting_for = match request.candidate.as_deref() {
        Some(c) if c == cx.me() => return None,
        Some(c) => Some(c).filter(|c| fitness::member_fitness(cx, view, c, None).is_ok()),
        None => None,
    };
    let waiting_for = waiting_for.map(str::to_owned).or_else(|| {
        // The operator asked this node to step down: leave the lock to any
        // fit member, and take it back only if there is none (Patroni).
        let mut others = view.members.keys().filter(|m| *m != cx.me());
        others.find(|m| switching_away && fitness::member_fitness(cx, view, m, None).is_ok()).cloned()
    })?;
    let now = cx.now();
    let since = cx
        .prev
        .candidate_wait
        .as_ref()
        .filter(|w| w.revision == request.revision)
        .map_or(now, |w| w.since_ms);
    let waited_ms = now - since;
    if waited_ms >= cx.cfg.ttl_ms {
        let clear = Action::ClearFailoverRequest { revision: request.revision };
        return Some((vec![clear], Reason::FailoverRequestExpired { candidate: waiting_for, waited_ms }));
    }
    cx.next.candidate_wait = Some(CandidateWait { revision: request.revision, since_ms: since });
    Some((Vec::new(), Reason::WaitingForCandidate { candidate: waiting_for }))
}

fn failover_revision(view: &ClusterView) -> u64 {
    view.failover.as_ref().map_or(0, |f| f.revision)
}

/// Whether this node may take the lock: [`fitness::fit_to_lead`] on its own
/// facts, then, unless the operator named it (`manual`: the operator chose
/// it over the lag limit and the ranking), the lag limit, the quorum's
/// votes and the ranking against the others.
pub(super) fn fitness(cx: &Ctx, view: &ClusterView, manual: bool) -> Result<(), Unfit> {
    let me = Candidate::me(cx);
    let reference = cx.next.last_leader_lsn;
    fitness::fit_to_lead(cx, view, &me, (!manual).then_some(reference))?;
    if !manual {
        rank(cx, view)?;
    }
    quorum_votes(cx, view)
}

/// The race proper: no fit rival ahead of this node, and at an equal
/// position none with a higher `failover_priority` (Patroni's
/// `_is_healthiest_node`; the leader stepping down does not count). The
/// former leader's priority is ignored, and so is its position in
/// synchronous mode, where the sync standbys hold every acknowledged
/// commit: as in Patroni, a member key the dead leader left behind must
/// not hold the race up until it expires.
fn rank(cx: &Ctx, view: &ClusterView) -> Result<(), Unfit> {
    let pg = &cx.obs.pg;
    let position = pg.wal_position();
    let me = Rank { lsn: position, priority: cx.obs.tags.failover_priority, name: cx.me() };
    let stepping_down = view.failover.as_ref().and_then(|f| f.leader.as_deref());
    let sync_leader = view.sync.as_ref().and_then(|k| k.leader.as_deref());
    let former = match cx.cfg.synchronous_mode {
        SyncMode::Off => cx.prev.last_leader.as_deref(),
        _ => sync_leader,
    };
    for (name, m) in &view.members {
        let rival = name != cx.me()
            && m.is_running()
            && m.tags.can_fail_over()
            && Some(name.as_str()) != stepping_down
            && fitness::failsafe_allows(cx, view, name);
        if !rival || !fitness::in_sync_set(cx, view, name) || m.timeline < pg.timeline {
            continue;
        }
        if Some(name.as_str()) == former && (m.lsn <= position || cx.cfg.sync_enabled()) {
            continue;
        }
        // A member on a newer timeline saw a promotion this node did not.
        let other = Rank { lsn: m.lsn, priority: m.tags.failover_priority, name };
        if m.timeline > pg.timeline || other > me {
            return Err(Unfit::BehindMember { member: name.clone() });
        }
    }
    Ok(())
}

/// Quorum mode: the sync key's voters `K` with Patroni's `quorum` field
/// `q` promise that every acknowledged commit is on at least `|K| - q` of
/// them, so a candidate must see `q` other voters that are not ahead of it
/// (Patroni's `_is_healthiest_node`: a vote is a failover-capable voter
/// with Postgres running and a WAL position at or behind the candidate's).
/// The leader the key names has every commit it acknowledged itself.
fn quorum_votes(cx: &Ctx, view: &ClusterView) -> Result<(), Unfit> {
    if cx.cfg.synchronous_mode != SyncMode::Quorum {
        return Ok(());
    }
    let Some(key) = view.sync.as_ref().filter(|k| k.leader.is_some()) else {
        return Ok(());
    };
    if key.leader.as_deref() == Some(cx.me()) {
        return Ok(());
    }
    let position = cx.obs.pg.wal_position();
    let votes = key
        .members
        .iter()
        .filter(|m| *m != cx.me())
        .filter_map(|m| view.members.get(m))
        .filter(|m| m.is_running() && m.tags.can_fail_over() && m.lsn > 0 && m.lsn <= position)
        .count() as u32;
    let needed = key.votes_needed();
    if votes < needed {
        return Err(Unfit::QuorumNotVisible { votes, needed });
    }
    Ok(())
}
