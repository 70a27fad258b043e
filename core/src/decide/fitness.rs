//! One judgement of fitness (safety rules 2 and 10): whether a member may
//! lead. The leader handing over, the candidate judging itself and the
//! bystanders waiting for it all ask [`fit_to_lead`]; they differ only in
//! what they know of the member: this node knows its own Postgres, the
//! others only what a member publishes in its key. Two predicates drifted
//! apart before: a leader handed over to a candidate that then refused
//! itself (behind `check_timeline`, or diverged), and the cluster had no
//! leader for as long as the request stood.

use super::rewind::{self, LocalHistory};
use super::Ctx;
use crate::dcs::{ClusterView, Member, SyncMode, Tags};
use crate::decision::Unfit;

/// What is known of a member that may lead.
pub(super) struct Candidate<'a> {
    pub name: &'a str,
    pub running: bool,
    pub tags: &'a Tags,
    pub history: LocalHistory<'a>,
}

impl<'a> Candidate<'a> {
    /// This node, from its own Postgres.
    pub fn me(cx: &'a Ctx) -> Candidate<'a> {
        let pg = &cx.obs.pg;
        Candidate {
            name: cx.me(),
            running: pg.is_running(),
            tags: &cx.obs.tags,
            history: LocalHistory {
                switches: &pg.history,
                origin: pg.timeline_origin.as_deref(),
                timeline: pg.timeline,
                position: pg.wal_position(),
            },
        }
    }

    /// Another member, from its member key.
    pub fn published(name: &'a str, member: &'a Member) -> Candidate<'a> {
        Candidate {
            name,
            running: member.is_running(),
            tags: &member.tags,
            history: LocalHistory {
                switches: &[],
                origin: None,
                timeline: member.timeline,
                position: member.lsn,
            },
        }
    }
}

/// Whether `c` may lead. `lag_reference` is the WAL position it is measured
/// against for `maximum_lag_on_failover`; `None` skips the lag limit (a
/// candidate the operator named: Patroni's leader checks the lag before it
/// hands over, the candidate does not check it again). The safety checks
/// are never skipped: a node that is down, tagged `nofailover`, outside the
/// failsafe set, on a diverged history, behind the cluster's timeline with
/// `check_timeline`, or outside the sync key in synchronous mode does not
/// lead.
pub(super) fn fit_to_lead(
    cx: &Ctx,
    view: &ClusterView,
    c: &Candidate,
    lag_reference: Option<u64>,
) -> Result<(), Unfit> {
    if !c.running {
        return Err(Unfit::NotRunning);
    }
    if !c.tags.can_fail_over() {
        return Err(Unfit::NoFailoverTag);
    }
    if !failsafe_allows(cx, view, c.name) {
        return Err(Unfit::NotInFailsafeSet);
    }
    if let Some(fork_lsn) = rewind::divergence_of(&c.history, &view.history, None) {
        return Err(Unfit::Diverged { fork_lsn });
    }
    let cluster_timeline = view.cluster_timeline();
    let timeline = c.history.timeline;
    if cx.cfg.check_timeline && timeline < cluster_timeline {
        return Err(Unfit::OlderTimeline { timeline, cluster_timeline });
    }
    if let Some(reference) = lag_reference {
        let lag_bytes = reference.saturating_sub(c.history.position);
        let max_bytes = cx.cfg.maximum_lag_on_failover_bytes;
        if lag_bytes > max_bytes {
            return Err(Unfit::Lagging { lag_bytes, max_bytes });
        }
    }
    if !in_sync_set(cx, view, c.name) {
        return Err(Unfit::NotSyncStandby);
    }
    Ok(())
}

/// Another member, judged from its key against `lag_reference`.
pub(super) fn member_fitness(
    cx: &Ctx,
    view: &ClusterView,
    name: &str,
    lag_reference: Option<u64>,
) -> Result<(), Unfit> {
    let Some(member) = view.members.get(name) else {
        return Err(Unfit::UnknownMember);
    };
    fit_to_lead(cx, view, &Candidate::published(name, member), lag_reference)
}

/// Whether any member but this node and `except` may lead, judged against
/// this node's position (Patroni's `is_failover_possible`).
pub(super) fn anyone_else_fit(cx: &Ctx, view: &ClusterView, except: Option<&str>) -> bool {
    let reference = Some(cx.optime());
    view.members
        .keys()
        .filter(|m| *m != cx.me() && Some(m.as_str()) != except)
        .any(|m| member_fitness(cx, view, m, reference).is_ok())
}

/// In failsafe mode only the members the leader last listed in `failsafe`
/// may take the lock (Patroni's `/failsafe` key): only they answer its
/// pings, so only they know whether it still holds on without etcd. An
/// empty key lists nobody and restricts nobody, as in Patroni (`if
/// failsafe_members and name not in failsafe_members`).
pub(super) fn failsafe_allows(cx: &Ctx, view: &ClusterView, name: &str) -> bool {
    !cx.cfg.failsafe_mode || view.failsafe.as_ref().is_none_or(|f| f.is_empty() || f.contains(name))
}

/// In synchronous mode only a member of the sync key, or the leader it
/// names, may lead (Patroni's `SyncState.matches(name, check_leader=True)`):
/// only they are known to hold every acknowledged commit. Patroni allows a
/// manual failover (not a switchover) to an asynchronous replica, and lets
/// a quorum non-voter race with one more vote; keel does neither, on
/// purpose (README, Differences from Patroni): rule 2. A key naming no
/// leader was never claimed, and a leader claims it before it sets
/// `synchronous_standby_names`, so no commit waited for a standby: the usual
/// rules pick, as Patroni's `is_healthiest_node` does. (Refusing left a
/// cluster whose bootstrap leader lost its lease before claiming the key
/// leaderless forever; keel-sim, seed 2814.)
pub(super) fn in_sync_set(cx: &Ctx, view: &ClusterView, name: &str) -> bool {
    if cx.cfg.synchronous_mode == SyncMode::Off {
        return true;
    }
    let key = view.sync.as_ref().filter(|k| k.leader.is_some());
    key.is_none_or(|k| k.members.contains(name) || k.leader.as_deref() == Some(name))
}

/// The one predicate as the invariants ask it after a step (rule 10):
/// [`fit_to_lead`] over the step's observation and the config it went by,
/// so that the check judges with the engine's own definition, not a copy.
pub(crate) struct Judge<'a> {
    cx: Ctx<'a>,
    view: &'a ClusterView,
}

impl<'a> Judge<'a> {
    pub fn new(
        prev: &'a crate::state::State,
        obs: &'a crate::input::Observation,
        next: &crate::state::State,
        view: &'a ClusterView,
    ) -> Judge<'a> {
        let cx = Ctx {
            prev,
            obs,
            view: Some(view),
            cfg: next.config.clone(),
            next: next.clone(),
            lock_lost: false,
        };
        Judge { cx, view }
    }

    /// This node, from its own Postgres.
    pub fn me(&self, lag_reference: Option<u64>) -> Result<(), Unfit> {
        fit_to_lead(&self.cx, self.view, &Candidate::me(&self.cx), lag_reference)
    }

    /// Another member, from its member key.
    pub fn member(&self, name: &str, lag_reference: Option<u64>) -> Result<(), Unfit> {
        member_fitness(&self.cx, self.view, name, lag_reference)
    }

    /// Some member other than this node may lead ([`anyone_else_fit`]).
    pub fn anyone_else(&self) -> bool {
        anyone_else_fit(&self.cx, self.view, None)
    }
}
