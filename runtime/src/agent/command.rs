//! Commands to the agent from the REST API and signals: a keel-core
//! request or a reload, with an optional channel on which the agent
//! answers once it has acted, so that `POST /restart` answers with what
//! really happened rather than "queued".

use keel_core::{Outcome, Reason, Request, Tags};
use tokio::sync::oneshot;

use crate::config::{Auth, TagsConfig};

/// What the agent is asked to do.
#[derive(Debug)]
pub enum Order {
    /// Fed to keel-core in the next observation.
    Request(Request),
    /// Take these settings from a re-read config file (`POST /reload`).
    Reload(Reload),
}

/// What a reload changes in the running agent: the tags it publishes,
/// and the credentials its failsafe pings send to the other members.
#[derive(Clone, Debug, PartialEq)]
pub struct Reload {
    pub tags: TagsConfig,
    pub restapi_auth: Option<Auth>,
}

/// The agent's answer to one command.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The step that observed the request: its reason and the outcome of
    /// every action it planned, in order.
    Stepped { reason: Reason, outcomes: Vec<Outcome> },
    /// The reload was applied; these are the tags now published.
    Reloaded { tags: Tags },
}

#[derive(Debug)]
pub struct Command {
    pub order: Order,
    pub reply: Option<oneshot::Sender<Reply>>,
}

impl Command {
    /// A command nobody waits on (a signal).
    pub fn tell(request: Request) -> Command {
        Command { order: Order::Request(request), reply: None }
    }

    /// A command and the receiver of its answer.
    pub fn ask(order: Order) -> (Command, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        (Command { order, reply: Some(tx) }, rx)
    }
}
