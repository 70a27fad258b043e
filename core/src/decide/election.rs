//! The leader race (behaviour 5, safety rule 2, behaviour 12): with no
//! leader, a replica takes the lock only if it is the healthiest member it
//! can see. The lock's compare-and-swap settles any remaining tie.

use super::{rewind, switchover, Ctx, Verdict};
use crate::dcs::{ClusterView, SyncMode};
use crate::decision::{Action, Reason, StartAs, Unfit};
use crate::pg::PgProcess;
use crate::rank::Rank;

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
    let requested = view.failover.as_ref().and_then(|f| f.candidate.as_deref());
    let manual = requested == Some(cx.me());
    if let Some(candidate) = requested.filter(|c| *c != cx.me()) {
        if switchover::candidate_fitness(cx, view, candidate, false).is_ok() {
            let candidate = candidate.to_owned();
            return (Vec::new(), Reason::WaitingForCandidate { candidate });
        }
    }
    if switching_away {
        // The operator asked this node to step down: leave the lock to any
        // fit member, and take it back only if there is none (Patroni).
        let mut others = view.members.keys().filter(|m| *m != cx.me());
        if let Some(other) = others.find(|m| switchover::candidate_fitness(cx, view, m, false).is_ok()) {
            let candidate = other.clone();
            return (Vec::new(), Reason::WaitingForCandidate { candidate });
        }
    }
    match fitness(cx, view, manual) {
        Ok(()) => (vec![Action::AcquireLease], Reason::TakingLease),
        Err(why) => (Vec::new(), Reason::NotHealthiest { why }),
    }
}

/// Whether this node may take the lock. A requested candidate (`manual`)
/// skips the lag limit and the ranking, as the operator chose it, but never
/// the safety checks: nofailover, diverged history, synchronous membership.
pub(super) fn fitness(cx: &Ctx, view: &ClusterView, manual: bool) -> Result<(), Unfit> {
    let pg = &cx.obs.pg;
    let tags = &cx.obs.tags;
    if !tags.can_fail_over() {
        return Err(Unfit::NoFailoverTag);
    }
    // Failsafe mode: only members the leader last listed may take the lock
    // (Patroni's `/failsafe` key), for only they answered its pings.
    if !failsafe_allows(cx, view, cx.me()) {
        return Err(Unfit::NotInFailsafeSet);
    }
    if let Some(fork_lsn) = rewind::divergence(pg, &view.history, None) {
        return Err(Unfit::Diverged { fork_lsn });
    }
    let cluster_timeline = view.cluster_timeline();
    if cx.cfg.check_timeline && pg.timeline < cluster_timeline {
        return Err(Unfit::OlderTimeline { timeline: pg.timeline, cluster_timeline });
    }
    let position = pg.wal_position();
    let reference = view.optime_lsn.unwrap_or(0).max(cx.prev.last_leader_lsn);
    let lag_bytes = reference.saturating_sub(position);
    let max_bytes = cx.cfg.maximum_lag_on_failover_bytes;
    if !manual && lag_bytes > max_bytes {
        return Err(Unfit::Lagging { lag_bytes, max_bytes });
    }
    sync_fitness(cx, view)?;
    if manual {
        return Ok(());
    }
    let me = Rank { lsn: position, priority: tags.failover_priority, name: cx.me() };
    let stepping_down = view.failover.as_ref().and_then(|f| f.leader.as_deref());
    for (name, m) in &view.members {
        let rival = name != cx.me()
            && m.is_running()
            && m.tags.can_fail_over()
            && Some(name.as_str()) != stepping_down
            && failsafe_allows(cx, view, name);
        if !rival || !in_sync_set(cx, view, name) || m.timeline < pg.timeline {
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

/// In synchronous mode only a member of the sync key may win; in quorum
/// mode it must also see enough of the key's members to know it is the
/// furthest of any set that overlaps every acknowledged commit.
fn sync_fitness(cx: &Ctx, view: &ClusterView) -> Result<(), Unfit> {
    if cx.cfg.synchronous_mode == SyncMode::Off {
        return Ok(());
    }
    // No key naming a leader: no leader ever claimed it, and a leader
    // claims it before it sets `synchronous_standby_names`, so no commit
    // waited for a standby: the usual rules pick, as Patroni's
    // `is_healthiest_node` does. (Refusing left a cluster whose bootstrap
    // leader lost its lease before claiming the key leaderless forever;
    // keel-sim, seed 2814.)
    let Some(key) = view.sync.as_ref().filter(|k| k.leader.is_some()) else {
        return Ok(());
    };
    // The leader the key names has every commit it acknowledged itself
    // (Patroni's `SyncState.matches(name, check_leader=True)`).
    if key.leader.as_deref() == Some(cx.me()) {
        return Ok(());
    }
    if !key.members.contains(cx.me()) {
        return Err(Unfit::NotSyncStandby);
    }
    if cx.cfg.synchronous_mode == SyncMode::Quorum {
        let quorum = key.quorum.unwrap_or(0) as usize;
        let visible = key
            .members
            .iter()
            .filter(|m| *m == cx.me() || view.members.get(*m).is_some_and(|x| x.is_running()))
            .count();
        if quorum == 0 || visible + quorum < key.members.len() + 1 {
            let needed = (key.members.len() + 1).saturating_sub(quorum);
            return Err(Unfit::QuorumNotVisible { visible, needed });
        }
    }
    Ok(())
}

/// In failsafe mode only the members the leader last listed in `failsafe`
/// may take the lock (Patroni's `/failsafe` key): only they answer its
/// pings, so only they know whether it still holds on without etcd.
pub(super) fn failsafe_allows(cx: &Ctx, view: &ClusterView, name: &str) -> bool {
    !cx.cfg.failsafe_mode || view.failsafe.as_ref().is_none_or(|f| f.contains(name))
}

fn in_sync_set(cx: &Ctx, view: &ClusterView, name: &str) -> bool {
    let key = view.sync.as_ref().filter(|k| k.leader.is_some());
    cx.cfg.synchronous_mode == SyncMode::Off
        || key.is_none_or(|k| k.members.contains(name) || k.leader.as_deref() == Some(name))
}
