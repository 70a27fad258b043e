//! A model of etcd as Patroni uses it: the keys under the cluster prefix,
//! revisions, leases that expire on etcd's own clock (the simulation's true
//! time, to the millisecond), compare-and-swap, and reachability.

use std::collections::{BTreeMap, BTreeSet};

use keel_core::dcs::{FailoverKey, LeaderKey, SyncKey};
use keel_core::{ClusterView, DynamicConfig, Member, MemberStatus, TimelineSwitch};

#[derive(Clone, Debug)]
pub struct EtcdModel {
    pub revision: u64,
    /// Down for everyone (outage or lost quorum).
    pub down: bool,
    /// Nodes cut off from etcd.
    pub partitioned: BTreeSet<String>,
    pub initialize: Option<String>,
    /// The revision `initialize` was last written at.
    pub initialize_revision: u64,
    pub config: Option<DynamicConfig>,
    /// Holder and the true time its lease expires.
    pub leader: Option<(String, u64, u64)>,
    pub members: BTreeMap<String, (Member, u64)>,
    pub sync: Option<SyncKey>,
    pub failover: Option<FailoverKey>,
    pub history: Vec<TimelineSwitch>,
    pub optime_lsn: Option<u64>,
    pub failsafe: Option<BTreeSet<String>>,
}

/// The answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    /// The compare of a compare-and-swap did not hold.
    CompareFailed,
    /// No answer: etcd was unreachable.
    Unreachable,
}

impl EtcdModel {
    pub fn new() -> EtcdModel {
        EtcdModel {
            revision: 1,
            down: false,
            partitioned: BTreeSet::new(),
            initialize: None,
            initialize_revision: 0,
            config: None,
            leader: None,
            members: BTreeMap::new(),
            sync: None,
            failover: None,
            history: Vec::new(),
            optime_lsn: None,
            failsafe: None,
        }
    }

    pub fn reachable(&self, node: &str) -> bool {
        !self.down && !self.partitioned.contains(node)
    }

    /// Expires leases whose time has come. Called before every request.
    pub fn tick(&mut self, now: u64) {
        if self.down {
            // Lease expiry needs a working etcd leader; real etcd also
            // renews leases when a new leader is elected.
            return;
        }
        if self.leader.as_ref().is_some_and(|(_, expiry, _)| *expiry <= now) {
            self.leader = None;
            self.revision += 1;
        }
        let before = self.members.len();
        self.members.retain(|_, (_, expiry)| *expiry > now);
        if self.members.len() != before {
            self.revision += 1;
        }
    }

    pub fn view(&self) -> ClusterView {
        ClusterView {
            revision: self.revision,
            initialize: self.initialize.clone(),
            initialize_revision: self.initialize.as_ref().map_or(0, |_| self.initialize_revision),
            config: self.config.clone(),
            leader: self
                .leader
                .as_ref()
                .map(|(name, _, rev)| LeaderKey { name: name.clone(), revision: *rev }),
            members: self.members.iter().map(|(n, (m, _))| (n.clone(), m.clone())).collect(),
            sync: self.sync.clone(),
            failover: self.failover.clone(),
            history: self.history.clone(),
            optime_lsn: self.optime_lsn,
            failsafe: self.failsafe.clone(),
        }
    }

    fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    pub fn take_initialize(&mut self) -> Reply {
        if self.initialize.is_some() {
            return Reply::CompareFailed;
        }
        self.initialize = Some(String::new());
        self.initialize_revision = self.bump();
        Reply::Ok
    }

    /// Deletes `initialize` if it is still empty and at `revision`.
    pub fn cancel_initialize(&mut self, revision: u64) -> Reply {
        if self.initialize.as_deref() != Some("") || self.initialize_revision != revision {
            return Reply::CompareFailed;
        }
        self.initialize = None;
        self.bump();
        Reply::Ok
    }

    /// Records the system identifier over an empty or absent key.
    pub fn write_initialize(&mut self, system_id: u64) -> Reply {
        if self.initialize.as_deref().is_some_and(|v| !v.is_empty()) {
            return Reply::CompareFailed;
        }
        self.initialize = Some(system_id.to_string());
        self.initialize_revision = self.bump();
        Reply::Ok
    }

    pub fn acquire(&mut self, name: &str, now: u64, ttl_ms: u64) -> Reply {
        if self.leader.is_some() {
            return Reply::CompareFailed;
        }
        let rev = self.bump();
        self.leader = Some((name.to_owned(), now + ttl_ms, rev));
        Reply::Ok
    }

    pub fn renew(&mut self, name: &str, now: u64, ttl_ms: u64, optime: u64) -> Reply {
        match &mut self.leader {
            Some((holder, expiry, _)) if holder == name => {
                *expiry = now + ttl_ms;
                self.optime_lsn = Some(optime);
                Reply::Ok
            }
            _ => Reply::CompareFailed,
        }
    }

    pub fn release(&mut self, name: &str, optime: u64) -> Reply {
        if self.leader.as_ref().is_some_and(|(holder, _, _)| holder == name) {
            self.leader = None;
            self.optime_lsn = Some(optime);
            self.bump();
            return Reply::Ok;
        }
        Reply::CompareFailed
    }

    pub fn publish(&mut self, name: &str, status: &MemberStatus, now: u64, ttl_ms: u64) {
        let member = Member {
            role: status.role,
            state: status.state,
            timeline: status.timeline,
            lsn: status.lsn,
            tags: status.tags.clone(),
            api_url: format!("http://{name}:8008/patroni"),
            conn_url: format!("postgres://{name}:5432/postgres"),
        };
        self.members.insert(name.to_owned(), (member, now + ttl_ms));
        self.bump();
    }

    /// Keeps a member key alive (the agent's lease keep-alive each loop).
    pub fn keep_alive(&mut self, name: &str, now: u64, ttl_ms: u64) {
        if let Some((_, expiry)) = self.members.get_mut(name) {
            *expiry = now + ttl_ms;
        }
    }

    pub fn write_sync(
        &mut self,
        leader: &str,
        members: BTreeSet<String>,
        quorum: Option<u32>,
        expected: Option<u64>,
    ) -> Reply {
        let current = self.sync.as_ref().map(|s| s.revision);
        if current != expected {
            return Reply::CompareFailed;
        }
        let revision = self.bump();
        self.sync = Some(SyncKey { leader: Some(leader.to_owned()), members, quorum, revision });
        Reply::Ok
    }

    pub fn clear_failover(&mut self, revision: u64) -> Reply {
        if self.failover.as_ref().is_some_and(|f| f.revision == revision) {
            self.failover = None;
            self.bump();
            return Reply::Ok;
        }
        Reply::CompareFailed
    }

    pub fn request_switchover(&mut self, leader: Option<String>, candidate: Option<String>) {
        let revision = self.bump();
        self.failover = Some(FailoverKey { leader, candidate, scheduled_at_wall_ms: None, revision });
    }
}

impl Default for EtcdModel {
    fn default() -> Self {
        EtcdModel::new()
    }
}
