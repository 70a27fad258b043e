//! keel's simulated etcd: a node on madsim's network serving the store of
//! `kv_model` (in the shared world, so the checkers can read it), and
//! `SimKv`, the client the agents use through keel-runtime's `Kv` trait.
//!
//! Requests travel as datagrams, so madsim's clogged links cut them like a
//! partition would: a request lost on the way is not applied; an answer
//! lost on the way back leaves the client with a timeout after etcd applied
//! it, which the agent must read as "unknown" (rule 6). The server can be
//! down (no answers at all) or slow (answers late), and it notifies
//! watchers of changes to the leader and failover keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_runtime::dcs::{Compare, Kv, KvError, Op, Range};
use madsim::net::Endpoint;
use tokio::sync::mpsc;

use super::world::{lock, Shared};

pub const ETCD_ADDR: &str = "10.0.0.1:2379";
const REQUEST_TAG: u64 = 1;
const WATCH_TAG: u64 = 2;
/// A watcher that did not renew its registration for this long is gone.
const WATCH_TTL_MS: u64 = 3_000;
/// Of 1000 answers, this many are lost after the request was applied (a
/// background fault: not in runs without faults).
const LOST_ANSWERS_PER_MILLE: u64 = 5;

/// Who watches: address -> (key suffixes, registered until, etcd ms).
type Watchers = std::sync::Mutex<BTreeMap<SocketAddr, (Vec<String>, u64)>>;

enum Call {
    RangePrefix(String),
    Txn(Vec<Compare>, Vec<Op>, Vec<Op>),
    Grant(i64),
    KeepAlive(i64),
    Revoke(i64),
    /// Tell `SocketAddr` of changes to keys ending in these suffixes.
    Watch(SocketAddr, Vec<String>),
}

enum Answer {
    Range(Range),
    Txn(bool),
    Grant(i64, i64),
    KeepAlive(i64),
    Done,
    Error(KvError),
}

/// Serves etcd on `ETCD_ADDR` until the node is killed.
pub async fn serve(world: Shared) {
    let ep = Arc::new(Endpoint::bind(ETCD_ADDR).await.expect("the etcd node has 10.0.0.1"));
    let watchers: Arc<Watchers> = Arc::default();
    // Leases expire on etcd's clock even when nobody asks; watchers hear of it.
    {
        let (ep, world, watchers) = (ep.clone(), world.clone(), watchers.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let gone = {
                    let mut w = lock(&world);
                    if w.etcd_down {
                        continue;
                    }
                    let now = w.now_ms();
                    let gone = w.kv.expire(now);
                    if !gone.is_empty() {
                        w.watch_leader();
                    }
                    gone
                };
                notify(&ep, &watchers, &world, &gone).await;
            }
        });
    }
    loop {
        let Ok((payload, from)) = ep.recv_from_raw(REQUEST_TAG).await else { continue };
        let Ok(request) = payload.downcast::<(u64, Call)>() else { continue };
        let (reply_tag, call) = *request;
        let (ep, world, watchers) = (ep.clone(), world.clone(), watchers.clone());
        tokio::spawn(async move {
            let delay = lock(&world).etcd_delay_ms;
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(madsim::rand::random::<u64>() % delay + 1)).await;
            }
            let watch = matches!(call, Call::Watch(..));
            let (answer, touched, lossy) = {
                let mut w = lock(&world);
                if w.etcd_down {
                    return;
                }
                let now = w.now_ms();
                let mut touched = w.kv.expire(now);
                let answer = match call {
                    Call::RangePrefix(prefix) => Answer::Range(w.kv.range_prefix(&prefix)),
                    Call::Txn(compares, success, failure) => match w.kv.txn(&compares, success, failure) {
                        Ok((held, keys)) => {
                            touched.extend(keys);
                            Answer::Txn(held)
                        }
                        Err(e) => Answer::Error(e),
                    },
                    Call::Grant(ttl_s) => {
                        let (id, ttl) = w.kv.grant(ttl_s, now);
                        Answer::Grant(id, ttl)
                    }
                    Call::KeepAlive(lease) => Answer::KeepAlive(w.kv.keep_alive(lease, now)),
                    Call::Revoke(lease) => match w.kv.revoke(lease) {
                        Ok(keys) => {
                            touched.extend(keys);
                            Answer::Done
                        }
                        Err(e) => Answer::Error(e),
                    },
                    Call::Watch(addr, suffixes) => {
                        watchers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(addr, (suffixes, now + WATCH_TTL_MS));
                        Answer::Done
                    }
                };
                if !touched.is_empty() {
                    w.watch_leader();
                }
                (answer, touched, w.lossy)
            };
            notify(&ep, &watchers, &world, &touched).await;
            // A watch registration has no answer; other answers may be lost.
            if watch || (lossy && madsim::rand::random::<u64>() % 1000 < LOST_ANSWERS_PER_MILLE) {
                return;
            }
            let _ = ep.send_to_raw(from, reply_tag, Box::new(answer)).await;
        });
    }
}

/// Sends a wake-up to every live watcher of one of `keys`.
async fn notify(ep: &Endpoint, watchers: &Watchers, world: &Shared, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let now = lock(world).now_ms();
    let targets: Vec<SocketAddr> = {
        let mut w = watchers.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|_, (_, until)| *until > now);
        w.iter()
            .filter(|(_, (suffixes, _))| {
                keys.iter().any(|k| suffixes.iter().any(|s| k.ends_with(s.as_str())))
            })
            .map(|(addr, _)| *addr)
            .collect()
    };
    for addr in targets {
        let _ = ep.send_to_raw(addr, WATCH_TAG, Box::new(())).await;
    }
}

/// keel-runtime's `Kv` over the simulated network. Every call answers
/// within `deadline` or is `Unavailable`, applied or not.
pub struct SimKv {
    ep: Arc<Endpoint>,
    etcd: SocketAddr,
    deadline: Duration,
    next_tag: AtomicU64,
}

impl SimKv {
    pub async fn connect(ip: std::net::IpAddr, deadline: Duration) -> SimKv {
        let ep =
            Endpoint::bind(SocketAddr::new(ip, 0)).await.expect("a node binds a port on its own address");
        SimKv {
            ep: Arc::new(ep),
            etcd: ETCD_ADDR.parse().expect("a socket address"),
            deadline,
            next_tag: AtomicU64::new(1 << 32),
        }
    }

    async fn call(&self, call: Call) -> Result<Answer, KvError> {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed) + 1;
        let unavailable = |why: &str| KvError::Unavailable(why.to_owned());
        self.ep
            .send_to_raw(self.etcd, REQUEST_TAG, Box::new((tag, call)))
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        let (payload, _) = tokio::time::timeout(self.deadline, self.ep.recv_from_raw(tag))
            .await
            .map_err(|_| unavailable("no answer in time"))?
            .map_err(|e| unavailable(&e.to_string()))?;
        match payload.downcast::<Answer>() {
            Ok(answer) => match *answer {
                Answer::Error(e) => Err(e),
                other => Ok(other),
            },
            Err(_) => Err(unavailable("a garbled answer")),
        }
    }

    /// Wakes `wake` when a key ending in one of `suffixes` changes, as the
    /// production etcd watch does; registers again every second.
    pub fn spawn_watch(&self, suffixes: Vec<String>, wake: mpsc::Sender<()>) {
        let ep = self.ep.clone();
        let (etcd, addr) = (self.etcd, self.ep.local_addr().expect("a bound endpoint"));
        tokio::spawn(async move {
            loop {
                let register = (u64::MAX, Call::Watch(addr, suffixes.clone()));
                let _ = ep.send_to_raw(etcd, REQUEST_TAG, Box::new(register)).await;
                let until = tokio::time::Instant::now() + Duration::from_secs(1);
                let left = || until.saturating_duration_since(tokio::time::Instant::now());
                while let Ok(Ok(_)) = tokio::time::timeout(left(), ep.recv_from_raw(WATCH_TAG)).await {
                    if wake.try_send(()).is_err() && wake.is_closed() {
                        return;
                    }
                }
            }
        });
    }
}

impl Kv for SimKv {
    async fn range_prefix(&self, prefix: &str) -> Result<Range, KvError> {
        match self.call(Call::RangePrefix(prefix.to_owned())).await? {
            Answer::Range(range) => Ok(range),
            _ => Err(KvError::Unavailable("a mismatched answer".into())),
        }
    }

    async fn txn(&self, compares: Vec<Compare>, success: Vec<Op>, failure: Vec<Op>) -> Result<bool, KvError> {
        match self.call(Call::Txn(compares, success, failure)).await? {
            Answer::Txn(held) => Ok(held),
            _ => Err(KvError::Unavailable("a mismatched answer".into())),
        }
    }

    async fn grant(&self, ttl_s: i64) -> Result<(i64, i64), KvError> {
        match self.call(Call::Grant(ttl_s)).await? {
            Answer::Grant(id, ttl) => Ok((id, ttl)),
            _ => Err(KvError::Unavailable("a mismatched answer".into())),
        }
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, KvError> {
        match self.call(Call::KeepAlive(lease)).await? {
            Answer::KeepAlive(ttl) => Ok(ttl),
            _ => Err(KvError::Unavailable("a mismatched answer".into())),
        }
    }

    async fn revoke(&self, lease: i64) -> Result<(), KvError> {
        match self.call(Call::Revoke(lease)).await? {
            Answer::Done => Ok(()),
            _ => Err(KvError::Unavailable("a mismatched answer".into())),
        }
    }
}
