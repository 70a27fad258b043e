//! Patroni's REST API (reference section 1): the health checks HAProxy
//! polls, `GET /patroni`, the read-only pages `/cluster`, `/history`,
//! `/config` and `/metrics`, and the operations.
//!
//! - `status`: `NodeStatus`, plain data the agent publishes after every
//!   step. The agent depends on this module only, never on HTTP types.
//! - `health`: which code each endpoint answers, as a pure function of the
//!   status, the query and the time of the request.
//! - `lag`: `lag=` values (`16kB`, `64MB`...).
//! - `json`: the node status JSON with Patroni's field names.
//! - `cluster`: `/cluster`, `/history` and `/config`, from the agent's last
//!   DCS read.
//! - `metrics`: `/metrics`, Patroni's metric names plus keel's own.
//! - `ops`, `config_edit`: the operations (section 1.3): switchover,
//!   failover, restart, reinitialize, reload, failsafe; PATCH/PUT /config;
//!   `GET /failsafe`.
//! - `access`, `auth`: Patroni's `check_access` on the unsafe methods
//!   (allowlist, client certificates, HTTP Basic); `body`: request bodies
//!   and early answers.
//! - `store`: the API's own `Send` handle on etcd.
//! - `server`: the axum server, plain or HTTPS (`tls`: rustls configs).
//! - `client`: keel's own HTTP client for members' APIs (the agent's
//!   failsafe pings, keelctl).
//!
//! Health checks and pages only read the shared status: they never open a
//! connection to Postgres or etcd. Operations read and write etcd and ask
//! the agent (`agent::command`), answering with the outcome.

#[cfg(feature = "io")]
pub mod access;
#[cfg(feature = "io")]
pub mod auth;
#[cfg(feature = "io")]
pub mod body;
#[cfg(feature = "io")]
pub mod client;
pub mod cluster;
#[cfg(feature = "io")]
pub mod config_edit;
pub mod health;
pub mod json;
pub mod lag;
#[cfg(feature = "io")]
pub mod metrics;
#[cfg(feature = "io")]
pub mod ops;
#[cfg(feature = "io")]
pub mod server;
pub mod status;
#[cfg(feature = "io")]
pub mod store;
#[cfg(all(test, feature = "io"))]
mod tests;
#[cfg(feature = "io")]
pub mod tls;

#[cfg(feature = "io")]
pub use access::Access;
#[cfg(feature = "io")]
pub use ops::{Api, Ops};
#[cfg(feature = "io")]
pub use server::{bind, serve, serve_tls};
pub use status::{NodeStatus, ReplicationState, SharedStatus, StepReport};
#[cfg(feature = "io")]
pub use store::{KvStore, Store};
