//! The world's side of the event trace (`crate::trace`): what it records
//! and when. Recording reads the world and nothing else: no task of its
//! own, no random draw, so a traced run is the run it traces.

use keel_core::PgProcess;

use super::world::World;
use crate::faults::Fault;
use crate::trace::{Recorder, What};

impl World {
    /// Starts recording (before the nodes start).
    pub fn start_trace(&mut self, seed: u64, duration_ms: u64, config: String) {
        let mut r = Recorder::new(self.names.len());
        r.push(self.now_ms(), What::Start { seed, nodes: self.names.clone(), duration_ms, config });
        self.trace = Some(r);
    }

    /// Notes the roles and decision reasons that changed (when recording).
    pub fn sample(&mut self) {
        let Some(mut r) = self.trace.take() else {
            return;
        };
        let now = self.now_ms();
        for i in 0..self.names.len() {
            let role = if !self.agent_up[i] {
                "down"
            } else {
                match self.pg[i].process {
                    PgProcess::RunningPrimary => "primary",
                    PgProcess::RunningReplica => "replica",
                    PgProcess::Starting => "starting",
                    PgProcess::Stopped => "stopped",
                }
            };
            r.role(now, i, &self.names[i], role);
            if let Some(status) = &self.status[i] {
                let s = status.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                r.reason(now, i, &self.names[i], &s.last_reason);
            }
        }
        self.trace = Some(r);
    }

    /// Records `what` now (when recording).
    pub fn record(&mut self, what: What) {
        let now = self.now_ms();
        if let Some(r) = &mut self.trace {
            r.push(now, what);
        }
    }

    /// A fault starts (`start`) or heals.
    pub fn record_fault(&mut self, f: &Fault, start: bool) {
        if self.trace.is_none() {
            return;
        }
        let mut kind = f.kind.clone();
        let node = kind.node_mut().and_then(|n| self.names.get(*n).cloned());
        let fault = f.kind.label().to_owned();
        let detail = format!("{:?}", f.kind);
        self.record(if start {
            What::FaultStart { fault, node, detail, until_ms: f.end_ms }
        } else {
            What::FaultEnd { fault, node, detail }
        });
        self.sample();
    }

    /// One client write, recorded with its outcome and the node it went to.
    pub fn client_tick(&mut self) {
        let acked = self.out.writes_acked;
        let routed = if self.trace.is_some() { self.routed_primary() } else { None };
        self.client_write();
        if self.trace.is_some() {
            let node = routed.map(|i| self.names[i].clone());
            self.record(What::Write { ok: self.out.writes_acked > acked, node });
            self.sample();
        }
    }

    /// The closing verdict; the recorded trace as JSON lines into the
    /// outcome.
    pub fn finish_trace(&mut self) {
        if self.trace.is_none() {
            return;
        }
        self.sample();
        let violations = self.out.violations.clone();
        self.record(What::Verdict { ok: violations.is_empty(), violations });
        if let Some(r) = self.trace.take() {
            self.out.trace = r.lines();
        }
    }
}
