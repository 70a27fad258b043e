//! Patroni's REST API, first part (reference section 1): the health checks
//! HAProxy polls, `GET /patroni`, and the read-only pages `/cluster`,
//! `/history`, `/config` and `/metrics`.
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
//! - `server`: the axum server.
//!
//! Handlers only read the shared status: a health check never opens a
//! connection to Postgres or etcd.

pub mod cluster;
pub mod health;
pub mod json;
pub mod lag;
#[cfg(feature = "io")]
pub mod metrics;
#[cfg(feature = "io")]
pub mod server;
pub mod status;

#[cfg(feature = "io")]
pub use server::{bind, serve};
pub use status::{NodeStatus, ReplicationState, SharedStatus, StepReport};
