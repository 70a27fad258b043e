//! The binding of [`Kv`] to etcd-client: every request bounded by a
//! deadline, errors sorted into unknown (unavailable) and definite.
//!
//! The agent's client also keeps a copy of its scope, fed by one etcd watch
//! ([`EtcdKv::keep_scope`]): an idle agent then reads the cluster without
//! asking etcd, as Patroni's etcd3 `KVCache` does. The copy answers a read
//! only when it is at least as recent as every answer this client has had
//! from etcd (each carries the store's revision): its own writes, and the
//! keep-alives, which the leader sends every loop and the others every
//! third of the TTL. A watch that stopped delivering is so found out as
//! soon as anything changed in etcd, and reads go to etcd until it follows
//! again. Watch progress requests are not used for this: etcd before 3.4.25
//! and 3.5.8 may answer one ahead of events it has yet to send (etcd#15220).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, ResponseHeader, TxnOp,
    WatchOptions,
};
use tracing::debug;

use super::{Compare, KeyValue, Kv, KvError, Op, Range};

/// etcd v3 through etcd-client, one request at a time, each within
/// `timeout`.
#[derive(Clone)]
pub struct EtcdKv {
    client: Client,
    timeout: Duration,
    /// A keep-alive stream per lease, kept from one renewal to the next:
    /// opening one costs a new HTTP/2 stream and two renewals (etcd-client
    /// renews once on opening), every loop, for the member lease and the
    /// leader's. The most recently renewed last; at most [`KEPT_LEASES`],
    /// so that the streams of leases given up without a revoke (a lock
    /// lost, an old lease adopted) do not pile up.
    keepers: Arc<Mutex<Vec<(i64, Keeper)>>>,
    /// The highest store revision any answer to this client carried.
    seen: Arc<AtomicI64>,
    /// The scope as the watch of [`EtcdKv::keep_scope`] keeps it.
    scope: Option<Arc<ScopeCopy>>,
}

type Keeper = (LeaseKeeper, LeaseKeepAliveStream);

/// The agent renews two leases: its member key's and, as leader, the
/// leader key's.
const KEPT_LEASES: usize = 2;

/// How long a read waits for the scope's copy to catch up with a revision
/// etcd already reported (its watch events are on their way), before it
/// asks etcd instead.
const CATCH_UP: Duration = Duration::from_millis(20);

/// The keys under one prefix, kept by a watch.
struct ScopeCopy {
    prefix: String,
    state: Mutex<CopyState>,
    /// `state.revision`, for reads waiting for the copy to catch up.
    at: tokio::sync::watch::Sender<i64>,
}

#[derive(Default)]
struct CopyState {
    kvs: BTreeMap<String, KeyValue>,
    /// Every change up to this revision is in `kvs`; 0 while the watch is
    /// not following (starting, or broken and starting again).
    revision: i64,
}

impl ScopeCopy {
    fn new(prefix: &str) -> ScopeCopy {
        ScopeCopy {
            prefix: prefix.to_owned(),
            state: Mutex::default(),
            at: tokio::sync::watch::Sender::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CopyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: CopyState) {
        let revision = state.revision;
        *self.state() = state;
        self.at.send_replace(revision);
    }

    /// The copy starts over from `range`, a read of the whole prefix.
    fn seed(&self, range: Range) {
        let kvs = range.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        self.set(CopyState { kvs, revision: range.revision });
    }

    /// A read of the whole prefix newer than the copy replaces it; the
    /// watch's events up to its revision are then skipped as they come.
    fn refresh(&self, range: &Range) {
        let newer = {
            let state = self.state();
            state.revision > 0 && range.revision > state.revision
        };
        if newer {
            self.seed(range.clone());
        }
    }

    fn lose_step(&self) {
        self.set(CopyState::default());
    }

    /// Applies one watch response's events in order; returns the keys
    /// they changed.
    fn apply(&self, events: &[etcd_client::Event]) -> Vec<String> {
        let mut changed = Vec::new();
        let revision = {
            let mut state = self.state();
            let base = state.revision;
            for event in events {
                let Some(kv) = event.kv() else { continue };
                if base == 0 || kv.mod_revision() <= base {
                    continue;
                }
                let kv = key_value(kv);
                state.revision = state.revision.max(kv.mod_revision);
                changed.push(kv.key.clone());
                match event.event_type() {
                    EventType::Put => {
                        state.kvs.insert(kv.key.clone(), kv);
                    }
                    EventType::Delete => {
                        state.kvs.remove(&kv.key);
                    }
                }
            }
            state.revision
        };
        self.at.send_replace(revision);
        changed
    }

    /// The keys under `prefix` once the copy has caught up with `seen`,
    /// waiting at most `wait`; `None` if it does not (or is not following).
    async fn read(&self, prefix: &str, seen: i64, wait: Duration) -> Option<Range> {
        let mut at = self.at.subscribe();
        let settled = |revision: &i64| *revision == 0 || *revision >= seen;
        if !settled(&at.borrow()) {
            tokio::time::timeout(wait, at.wait_for(settled)).await.ok()?.ok()?;
        }
        let state = self.state();
        if state.revision == 0 || state.revision < seen {
            return None;
        }
        let kvs = state
            .kvs
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Some(Range { revision: state.revision, kvs })
    }
}

/// The store revision an answer's header carries (0: none).
fn revision(header: Option<&ResponseHeader>) -> i64 {
    header.map_or(0, ResponseHeader::revision)
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

/// How to reach etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per-request deadline.
    pub timeout: Duration,
    /// TLS: endpoints must then be `https://`.
    pub tls: Option<EtcdTls>,
}

/// PEM files for TLS to etcd: the CA that signed etcd's certificate, and
/// the client certificate and key when etcd asks for one.
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

impl EtcdTls {
    /// The files named in the `etcd3` section.
    pub fn of(etcd3: &crate::config::Etcd3) -> EtcdTls {
        EtcdTls { ca: etcd3.cacert.clone(), cert: etcd3.cert.clone(), key: etcd3.key.clone() }
    }

    /// Whether the files can be read and go together, as [`EtcdKv::connect`]
    /// needs them (their contents are only judged by the TLS handshake).
    pub fn check(&self) -> Result<(), String> {
        match self.options() {
            Ok(_) => Ok(()),
            Err(KvError::Rejected(why) | KvError::Unavailable(why)) => Err(why),
            Err(other) => Err(other.to_string()),
        }
    }

    fn options(&self) -> Result<etcd_client::TlsOptions, KvError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| KvError::Rejected(format!("cannot read {}: {e}", p.display())))
        };
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?))
            }
            (None, None) => {}
            _ => return Err(KvError::Rejected("etcd3 cert and key go together".into())),
        }
        Ok(tls)
    }
}

impl EtcdKv {
    pub async fn connect(opts: &EtcdOptions) -> Result<EtcdKv, KvError> {
        let mut connect = ConnectOptions::new().with_connect_timeout(opts.timeout).with_timeout(opts.timeout);
        if let (Some(user), Some(password)) = (&opts.username, &opts.password) {
            connect = connect.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &opts.tls {
            connect = connect.with_tls(tls.options()?);
        }
        let client =
            tokio::time::timeout(opts.timeout, Client::connect(opts.endpoints.clone(), Some(connect)))
                .await
                .map_err(|_| KvError::Unavailable("connect timed out".into()))?
                .map_err(classify)?;
        Ok(EtcdKv {
            client,
            timeout: opts.timeout,
            keepers: Arc::default(),
            seen: Arc::default(),
            scope: None,
        })
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, KvError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(KvError::Unavailable(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    /// Notes the store revision an answer carried.
    fn saw(&self, revision: i64) {
        self.seen.fetch_max(revision, Ordering::Relaxed);
    }

    /// A read of `prefix` from etcd itself.
    async fn read(&self, prefix: &str) -> Result<Range, KvError> {
        let mut kv = self.client.kv_client();
        let resp = self.bounded(kv.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
        let revision = revision(resp.header());
        self.saw(revision);
        Ok(Range { revision, kvs: resp.kvs().iter().map(key_value).collect() })
    }
}

impl EtcdKv {
    fn keepers(&self) -> std::sync::MutexGuard<'_, Vec<(i64, Keeper)>> {
        self.keepers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many keep-alive streams are kept (at most [`KEPT_LEASES`]).
    pub fn kept_streams(&self) -> usize {
        self.keepers().len()
    }

    /// The kept stream of lease `id`, taken out.
    fn take_keeper(&self, id: i64) -> Option<Keeper> {
        let mut keepers = self.keepers();
        let at = keepers.iter().position(|(lease, _)| *lease == id)?;
        Some(keepers.remove(at).1)
    }

    /// Keeps `keeper` as the most recently renewed, dropping the oldest
    /// beyond [`KEPT_LEASES`].
    fn keep(&self, id: i64, keeper: Keeper) {
        let mut keepers = self.keepers();
        keepers.push((id, keeper));
        let excess = keepers.len().saturating_sub(KEPT_LEASES);
        keepers.drain(..excess);
    }

    /// The revision of the scope's copy (0: none kept, or its watch is not
    /// following).
    pub fn scope_revision(&self) -> i64 {
        self.scope.as_ref().map_or(0, |copy| copy.state().revision)
    }

    /// Keeps a copy of the keys under `prefix` (the scope) from now on,
    /// which reads of that prefix are then served from when it is current
    /// (see the module's comment), and sends on `wake` whenever one of
    /// `wake_keys` changes (the leader and failover keys). Follows again
    /// after errors, until `wake` closes.
    pub fn keep_scope(
        &mut self,
        prefix: &str,
        wake_keys: Vec<String>,
        wake: tokio::sync::mpsc::Sender<()>,
    ) -> tokio::task::JoinHandle<()> {
        let copy = Arc::new(ScopeCopy::new(prefix));
        self.scope = Some(copy.clone());
        let kv = self.clone();
        tokio::spawn(async move {
            while !wake.is_closed() {
                let why = kv.follow(&copy, &wake_keys, &wake).await;
                copy.lose_step();
                debug!(prefix = %copy.prefix, "the scope's watch stopped ({why}); following again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// Reads the prefix, then watches it from the next revision on,
    /// keeping `copy`; returns why it stopped.
    async fn follow(
        &self,
        copy: &ScopeCopy,
        wake_keys: &[String],
        wake: &tokio::sync::mpsc::Sender<()>,
    ) -> String {
        let start = match self.read(&copy.prefix).await {
            Ok(range) => range,
            Err(e) => return e.to_string(),
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(start.revision + 1);
        let mut client = self.client.watch_client();
        let mut stream = match self.bounded(client.watch(copy.prefix.clone(), Some(options))).await {
            Ok(stream) => stream,
            Err(e) => return e.to_string(),
        };
        copy.seed(start);
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return "the watch ended".into(),
                Err(e) => return e.to_string(),
            };
            if resp.canceled() {
                return format!("etcd cancelled the watch: {}", resp.cancel_reason());
            }
            let changed = copy.apply(resp.events());
            // A full channel already holds a wake-up: nothing lost.
            if changed.iter().any(|k| wake_keys.contains(k)) && wake.try_send(()).is_err() && wake.is_closed()
            {
                return "the agent stopped".into();
            }
        }
    }
}

/// One renewal on a kept stream.
async fn renew((mut keeper, mut stream): Keeper) -> Result<Renewed, etcd_client::Error> {
    keeper.keep_alive().await?;
    match stream.message().await? {
        Some(resp) => {
            let revision = revision(resp.header());
            let kept = (resp.ttl() > 0).then_some((keeper, stream));
            Ok(Renewed { ttl: resp.ttl(), revision, kept })
        }
        None => Err(etcd_client::Error::LeaseKeepAliveError("the keep-alive stream ended".into())),
    }
}

/// A keep-alive's answer: the lease's TTL, the store revision, and the
/// stream to keep while the lease lives (none once it expired: TTL 0).
struct Renewed {
    ttl: i64,
    revision: i64,
    kept: Option<Keeper>,
}

/// Only answers that prove the request did not happen are definite;
/// anything else (transport, timeouts, unknown codes) may have happened.
fn classify(e: etcd_client::Error) -> KvError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            let message = status.message().to_owned();
            match status.code() {
                tonic::Code::NotFound if message.contains("lease") => KvError::LeaseNotFound,
                tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
                | tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition
                | tonic::Code::OutOfRange => KvError::Rejected(message),
                _ => KvError::Unavailable(message),
            }
        }
        // etcd-client reports a keep-alive on an expired lease this way.
        E::LeaseKeepAliveError(message) if message.contains("lease not found") => KvError::LeaseNotFound,
        other => KvError::Unavailable(other.to_string()),
    }
}

fn to_compare(c: Compare) -> etcd_client::Compare {
    use etcd_client::{Compare as C, CompareOp::Equal};
    match c {
        Compare::ValueEquals { key, value } => C::value(key, Equal, value),
        Compare::CreateRevision { key, revision } => C::create_revision(key, Equal, revision),
        Compare::ModRevision { key, revision } => C::mod_revision(key, Equal, revision),
        Compare::Lease { key, lease } => C::lease(key, Equal, lease),
    }
}

fn to_op(op: Op) -> TxnOp {
    match op {
        Op::Put { key, value, lease } => {
            let opts = (lease != 0).then(|| etcd_client::PutOptions::new().with_lease(lease));
            TxnOp::put(key, value, opts)
        }
        Op::Delete { key } => TxnOp::delete(key, None),
    }
}

impl Kv for EtcdKv {
    async fn range_prefix(&self, prefix: &str) -> Result<Range, KvError> {
        let Some(copy) = self.scope.as_ref().filter(|c| prefix.starts_with(&c.prefix)) else {
            return self.read(prefix).await;
        };
        let seen = self.seen.load(Ordering::Relaxed);
        if let Some(range) = copy.read(prefix, seen, CATCH_UP.min(self.timeout)).await {
            return Ok(range);
        }
        let range = self.read(prefix).await?;
        if prefix == copy.prefix {
            copy.refresh(&range);
        }
        Ok(range)
    }

    async fn txn(&self, compares: Vec<Compare>, success: Vec<Op>, failure: Vec<Op>) -> Result<bool, KvError> {
        let txn = etcd_client::Txn::new()
            .when(compares.into_iter().map(to_compare).collect::<Vec<_>>())
            .and_then(success.into_iter().map(to_op).collect::<Vec<_>>())
            .or_else(failure.into_iter().map(to_op).collect::<Vec<_>>());
        let mut kv = self.client.kv_client();
        let resp = self.bounded(kv.txn(txn)).await?;
        self.saw(revision(resp.header()));
        Ok(resp.succeeded())
    }

    async fn grant(&self, ttl_s: i64) -> Result<(i64, i64), KvError> {
        let mut lease = self.client.lease_client();
        let resp = self.bounded(lease.grant(ttl_s, None)).await?;
        self.saw(revision(resp.header()));
        Ok((resp.id(), resp.ttl()))
    }

    async fn keep_alive(&self, id: i64) -> Result<i64, KvError> {
        // Taken out while in use, and put back only after an answer: a
        // renewal that fails or is abandoned (a deadline) drops its stream,
        // so that a late answer to it can never pass for the answer to the
        // next one.
        let kept = self.take_keeper(id);
        let once = async {
            if let Some(keeper) = kept {
                match renew(keeper).await {
                    Ok(answer) => return Ok(answer),
                    // The connection under it broke: a fresh stream, once.
                    Err(e) => tracing::debug!(lease = id, error = %e, "lease keep-alive stream broke"),
                }
            }
            let (keeper, stream) = self.client.lease_client().keep_alive(id).await?;
            renew((keeper, stream)).await
        };
        match self.bounded(once).await {
            Ok(Renewed { ttl, revision, kept }) => {
                self.saw(revision);
                if let Some(keeper) = kept {
                    self.keep(id, keeper);
                }
                Ok(ttl)
            }
            // The trait's contract: an expired lease answers 0.
            Err(KvError::LeaseNotFound) => Ok(0),
            Err(e) => Err(e),
        }
    }

    async fn revoke(&self, id: i64) -> Result<(), KvError> {
        self.take_keeper(id);
        let mut lease = self.client.lease_client();
        self.bounded(lease.revoke(id)).await.map(|_| ())
    }
}
