//! The binding of [`Kv`] to etcd-client: every request bounded by a
//! deadline, errors sorted into unknown (unavailable) and definite.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper, TxnOp};

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
}

type Keeper = (LeaseKeeper, LeaseKeepAliveStream);

/// The agent renews two leases: its member key's and, as leader, the
/// leader key's.
const KEPT_LEASES: usize = 2;

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
        Ok(EtcdKv { client, timeout: opts.timeout, keepers: Arc::default() })
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

    /// Sends on `wake` whenever one of `keys` changes (the leader and
    /// failover keys), re-watching after errors, until `wake` closes. Only
    /// these keys are watched, not the scope: every agent's member and
    /// status writes would otherwise reach every agent's watch.
    pub fn spawn_watch(
        &self,
        keys: Vec<String>,
        wake: tokio::sync::mpsc::Sender<()>,
    ) -> tokio::task::JoinHandle<()> {
        let mut client = self.client.clone();
        tokio::spawn(async move {
            let Some((first, others)) = keys.split_first() else { return };
            while !wake.is_closed() {
                let mut stream = match client.watch(first.clone(), None).await {
                    Ok(stream) => stream,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let mut watching = true;
                for key in others {
                    watching &= stream.watch(key.clone(), None).await.is_ok();
                }
                while watching {
                    let Ok(Some(resp)) = stream.message().await else {
                        watching = false;
                        continue;
                    };
                    // A full channel already holds a wake-up: nothing lost.
                    if !resp.events().is_empty() && wake.try_send(()).is_err() && wake.is_closed() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}

/// One renewal on a kept stream: the lease's TTL, and the stream to keep
/// while the lease lives (none once it expired: TTL 0).
async fn renew((mut keeper, mut stream): Keeper) -> Result<(i64, Option<Keeper>), etcd_client::Error> {
    keeper.keep_alive().await?;
    match stream.message().await? {
        Some(resp) if resp.ttl() > 0 => Ok((resp.ttl(), Some((keeper, stream)))),
        Some(resp) => Ok((resp.ttl(), None)),
        None => Err(etcd_client::Error::LeaseKeepAliveError("the keep-alive stream ended".into())),
    }
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
        let mut kv = self.client.kv_client();
        let resp = self.bounded(kv.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let kvs = resp
            .kvs()
            .iter()
            .map(|k| KeyValue {
                key: String::from_utf8_lossy(k.key()).into_owned(),
                value: k.value().to_vec(),
                create_revision: k.create_revision(),
                mod_revision: k.mod_revision(),
                lease: k.lease(),
            })
            .collect();
        Ok(Range { revision, kvs })
    }

    async fn txn(&self, compares: Vec<Compare>, success: Vec<Op>, failure: Vec<Op>) -> Result<bool, KvError> {
        let txn = etcd_client::Txn::new()
            .when(compares.into_iter().map(to_compare).collect::<Vec<_>>())
            .and_then(success.into_iter().map(to_op).collect::<Vec<_>>())
            .or_else(failure.into_iter().map(to_op).collect::<Vec<_>>());
        let mut kv = self.client.kv_client();
        let resp = self.bounded(kv.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    async fn grant(&self, ttl_s: i64) -> Result<(i64, i64), KvError> {
        let mut lease = self.client.lease_client();
        let resp = self.bounded(lease.grant(ttl_s, None)).await?;
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
            Ok((ttl, Some(keeper))) => {
                self.keep(id, keeper);
                Ok(ttl)
            }
            Ok((ttl, None)) => Ok(ttl),
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
