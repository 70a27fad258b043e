//! `CheckFailsafe` (failsafe mode, `core/src/decide/dcs_unknown.rs`): a leader
//! that cannot reach etcd asks every other member, over its REST API
//! (`POST /failsafe`, as Patroni), to confirm it. `Done` means every one of
//! them answered 200: each has then promised not to race for the leader's
//! lease time, and keel-core extends the lease from when the pings were
//! sent. Anything less (a member without a known address, a refusal, a
//! timeout) is `Failed`, and the leader demotes at its deadline.

use std::collections::BTreeSet;
use std::time::Duration;

use hyper::Method;
use keel_core::ActionResult;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tracing::warn;

use super::setup::Setup;
use super::{Agent, Engine, Postgres};
use crate::api::client::{self, Rest};
use crate::api::tls;
use crate::dcs::Kv;

impl<K: Kv, P: Postgres, E: Engine> Agent<K, P, E> {
    pub(super) async fn check_failsafe(&self, members: &BTreeSet<String>) -> ActionResult {
        // The replicas answer after their next step, which may wait up to
        // retry_timeout on etcd; the lease is the real bound (the caller
        // cuts the action at the lease deadline), less the time a gentle
        // demote needs if the answers do not come.
        let until_gentle = self.node.state().gentle_demote_in_ms(self.clock.now_ms(), self.config());
        let deadline = Duration::from_millis(until_gentle.unwrap_or(0).max(100));
        let (conn_url, api_url) = Setup::new(&self.cfg).map(|s| (s.conn_url, s.api_url)).unwrap_or_default();
        let body = json!({"name": self.cfg.name, "conn_url": conn_url, "api_url": api_url, "slots": {}});
        let tls = match tls::client_config(&self.cfg.restapi) {
            Ok(tls) => tls,
            Err(e) => {
                warn!("failsafe: {e}");
                None
            }
        };
        let rest = Rest { auth: self.cfg.restapi.authentication.clone(), tls };
        let view = self.snapshot.as_ref().map(|s| &s.view);
        let peers = members
            .iter()
            .map(|m| (m.clone(), view.and_then(|v| v.members.get(m)).map(|x| x.api_url.clone())))
            .collect();
        confirm_all(peers, &body, &rest, deadline).await
    }
}

/// Pings every peer (`(name, api_url)`) at once; `Done` only when every
/// one answered 200 within `deadline`.
pub async fn confirm_all(
    peers: Vec<(String, Option<String>)>,
    body: &Value,
    rest: &Rest,
    deadline: Duration,
) -> ActionResult {
    let mut pings = JoinSet::new();
    for (member, url) in peers {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            warn!(member, "failsafe: no known REST API address; cannot confirm");
            return ActionResult::Failed;
        };
        let uri = match client::endpoint(&url, "failsafe") {
            Ok(uri) => uri,
            Err(e) => {
                warn!(member, "failsafe: {e}; cannot confirm");
                return ActionResult::Failed;
            }
        };
        let (body, rest) = (body.clone(), rest.clone());
        pings.spawn(async move {
            // One deadline for the whole exchange (the client's bounds
            // connecting and answering each).
            let ping = rest.request(Method::POST, &uri, Some(&body), deadline);
            let answer = tokio::time::timeout(deadline, ping).await.unwrap_or_else(|_| {
                Err(client::HttpError::Lost(format!("no answer within {} ms", deadline.as_millis())))
            });
            (member, answer)
        });
    }
    let mut confirmed = true;
    while let Some(joined) = pings.join_next().await {
        match joined {
            Ok((_, Ok(answer))) if answer.status == 200 => {}
            Ok((member, Ok(answer))) => {
                warn!(member, code = answer.status, "failsafe: not confirmed");
                confirmed = false;
            }
            Ok((member, Err(e))) => {
                warn!(member, "failsafe: not confirmed: {e}");
                confirmed = false;
            }
            Err(e) => {
                warn!("failsafe: ping task failed: {e}");
                confirmed = false;
            }
        }
    }
    if confirmed {
        ActionResult::Done
    } else {
        ActionResult::Failed
    }
}
