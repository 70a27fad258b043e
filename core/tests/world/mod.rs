//! A hostile world for one keel node, shared by the property tests and the
//! fuzz target: etcd comes and goes, the leader key moves, Postgres changes
//! role behind the node's back, and the outcomes of the node's own actions
//! succeed, fail or vanish at random. `run` checks the properties of issue 2
//! after every step against an oracle that knows only what the world
//! confirmed.

#![allow(dead_code)]

use keel_core::dcs::{LeaderKey, SyncKey};
use keel_core::*;

#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct Tick {
    pub advance_ms: u64,
    pub dcs_up: bool,
    pub revision_back: u64,
    pub leader: u8,
    pub process: u8,
    pub lsn: u64,
    pub timeline: u32,
    pub history_fork: Option<u64>,
    pub results: Vec<u8>,
    pub send_delay_ms: u64,
    pub sync_mode: u8,
    pub failsafe: bool,
    pub pause: bool,
    pub request: u8,
    pub data_empty: bool,
}

const NAMES: [&str; 3] = ["pg1", "pg2", "pg3"];

/// Builds the observation for `t`, given the previous decision's actions.
pub fn observe(t: &Tick, now_ms: u64, prev_now_ms: u64, revision: u64, prev: &[Action]) -> Observation {
    let mut cfg = DynamicConfig {
        ttl_ms: 10_000,
        loop_wait_ms: 2_000,
        retry_timeout_ms: 3_000,
        failsafe_mode: t.failsafe,
        pause: t.pause,
        use_pg_rewind: true,
        ..DynamicConfig::default()
    };
    cfg.synchronous_mode = [SyncMode::Off, SyncMode::On, SyncMode::Quorum][t.sync_mode as usize % 3];
    let mut view = ClusterView {
        revision: revision.saturating_sub(t.revision_back),
        initialize: Some("1".into()),
        config: Some(cfg),
        optime_lsn: Some(t.lsn / 2),
        ..ClusterView::default()
    };
    if let Some(name) = NAMES.get(t.leader as usize) {
        view.leader = Some(LeaderKey { name: (*name).into(), revision: 1 });
    }
    for (i, name) in NAMES.iter().enumerate() {
        let mut m = Member {
            state: MemberState::Running,
            timeline: t.timeline,
            lsn: t.lsn / (i as u64 + 1),
            ..Member::default()
        };
        m.tags = Tags::new();
        view.members.insert((*name).into(), m);
    }
    view.sync = Some(SyncKey {
        leader: Some("pg1".into()),
        members: ["pg2".to_owned()].into(),
        quorum: Some(1),
        revision: 2,
    });
    if let Some(fork) = t.history_fork {
        view.history = vec![TimelineSwitch { timeline: 1, fork_lsn: fork, new_leader: Some("pg2".into()) }];
    }
    let mut pg = PgFacts::empty();
    if !t.data_empty {
        pg.data = DataDir::Initialised(ControlData {
            system_id: 1,
            state: ControlState::InProduction,
            wal_log_hints: true,
            data_checksums: false,
        });
        pg.process =
            [PgProcess::Stopped, PgProcess::Starting, PgProcess::RunningPrimary, PgProcess::RunningReplica]
                [t.process as usize % 4];
        pg.timeline = t.timeline;
        pg.write_lsn = t.lsn;
        pg.receive_lsn = t.lsn;
        pg.replay_lsn = t.lsn;
    }
    let outcomes = prev
        .iter()
        .enumerate()
        .map(|(i, action)| Outcome {
            lease_ttl_ms: None,
            action: action.clone(),
            sent_at_ms: prev_now_ms + t.send_delay_ms % 3_000,
            result: [ActionResult::Done, ActionResult::Failed, ActionResult::Unknown, ActionResult::Skipped]
                [*t.results.get(i).unwrap_or(&0) as usize % 4],
        })
        .collect();
    let request = match t.request {
        0 => Some(Request::Shutdown),
        1 => Some(Request::FailsafePing { leader: "pg2".into() }),
        2 => Some(Request::Reinitialize),
        3 => Some(Request::Restart),
        _ => None,
    };
    Observation {
        now_ms,
        wall_ms: now_ms as i64,
        dcs: if t.dcs_up { DcsView::Reachable(view) } else { DcsView::Unreachable { since_ms: prev_now_ms } },
        pg,
        tags: Tags::new(),
        outcomes,
        request,
    }
}

/// Drives one node through `ticks` and checks the properties at each step
/// against an oracle that knows only what the world confirmed.
pub fn run(ticks: &[Tick]) -> Result<(), String> {
    let mut node = Node::new("pg1");
    let mut now_ms = 1_000u64;
    let mut revision = 10u64;
    let mut prev_actions: Vec<Action> = Vec::new();
    let mut confirmed_until: Option<u64> = None;
    for t in ticks {
        let prev_now = now_ms;
        now_ms += t.advance_ms % 40_000;
        revision += 1;
        let obs = observe(t, now_ms, prev_now, revision, &prev_actions);
        // The oracle: the furthest deadline any confirmed renewal allows.
        let validity = 10_000 - 100;
        for o in &obs.outcomes {
            let renews = matches!(
                o.action,
                Action::AcquireLease | Action::RenewLease { .. } | Action::CheckFailsafe { .. }
            );
            // A demote or release that went through gives the lease up.
            let gives_up = matches!(o.action, Action::Demote { .. } | Action::ReleaseLease { .. });
            if gives_up && o.result == ActionResult::Done {
                confirmed_until = None;
            }
            if renews && o.result == ActionResult::Done {
                let until = o.sent_at_ms.min(now_ms) + validity;
                confirmed_until = Some(confirmed_until.map_or(until, |c| c.max(until)));
            }
        }
        let mut twin = node.clone();
        let decision = node.step(&obs);
        let again = twin.step(&obs);
        check(decision == again, || "step is not deterministic".to_owned())?;
        check(node.state() == twin.state(), || "state is not deterministic".to_owned())?;

        let past_deadline = confirmed_until.is_none_or(|c| now_ms >= c);
        if obs.pg.is_running_primary() && past_deadline {
            check(matches!(decision.actions.first(), Some(Action::Demote { .. })), || {
                format!(
                    "writable past every confirmed lease at {now_ms}: {:?} ({})",
                    decision.actions, decision.reason
                )
            })?;
        }
        if decision.actions.contains(&Action::Promote) {
            let deadline = node.state().lease_deadline_ms;
            check(deadline.is_some_and(|d| d > now_ms), || "promote without a lease ahead".to_owned())?;
            check(!past_deadline, || "promote past every confirmed lease".to_owned())?;
        }
        if !matches!(obs.dcs, DcsView::Reachable(_)) {
            let takes = decision.actions.iter().any(|a| matches!(a, Action::Promote | Action::AcquireLease));
            check(!takes, || "took the lock or promoted without etcd".to_owned())?;
        }
        check(decision.actions.len() <= keel_core::limits::ACTIONS_MAX, || "too many actions".to_owned())?;
        prev_actions = decision.actions;
    }
    Ok(())
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}
