//! What the node observes in one step.

use serde::{Deserialize, Serialize};

use crate::dcs::{DcsView, Tags};
use crate::decision::Action;
use crate::pg::PgFacts;

/// Everything `step` may base a decision on. All explicit, all serializable:
/// a list of observations is a trace that replays to the same decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The node's own monotonic clock, in milliseconds.
    pub now_ms: u64,
    /// Wall-clock time (milliseconds since the epoch), for scheduled
    /// switchovers and display only, never for safety.
    pub wall_ms: i64,
    /// Read after the previous decision's actions were carried out, so
    /// that it shows their effect.
    pub dcs: DcsView,
    pub pg: PgFacts,
    /// This node's tags from its local configuration.
    pub tags: Tags,
    /// What became of the previous decision's actions, in order.
    pub outcomes: Vec<Outcome>,
    pub request: Option<Request>,
}

/// The result of one action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub action: Action,
    /// When the runtime sent the request (monotonic): a lease counts from
    /// here (safety rule 1).
    pub sent_at_ms: u64,
    pub result: ActionResult,
    /// For lease actions: the TTL etcd granted the lease with, when the
    /// runtime knows it. The lease never counts longer than this, whatever
    /// the config says (a TTL raised in the config after the lease was
    /// granted must not lengthen it).
    pub lease_ttl_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionResult {
    Done,
    /// A definite failure: a compare-and-swap that did not match, a command
    /// that exited non-zero.
    Failed,
    /// No answer in time: it may or may not have happened (rule 6).
    Unknown,
    /// Not attempted, because an earlier action of the same decision failed.
    Skipped,
}

/// Requests from the operator (REST API, signals) or from peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// SIGTERM: stop Postgres, release the lock if held.
    Shutdown,
    Restart,
    Reinitialize,
    /// The leader, unable to reach etcd, asks this member to confirm it as
    /// primary (Patroni's `POST /failsafe`).
    FailsafePing {
        leader: String,
    },
}
