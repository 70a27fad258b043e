//! Physical replication slots, one per member (Patroni's `use_slots`, on by
//! default): each replica streams through a slot named after it, so the
//! leader keeps the WAL a lagging replica still needs. The leader creates
//! the slot of every member it sees; a replica names its own slot in
//! `primary_slot_name`. Slots of members that left are kept (Patroni keeps
//! them for `member_slots_ttl`), not yet dropped.
//!
//! A replica that may be promoted keeps the other members' slots too, as
//! Patroni does (on PostgreSQL 11 and later): a standby that follows a new
//! leader at once finds its slot there even before the promotion ended,
//! instead of failing and waiting `wal_retrieve_retry_interval` (5 s) to
//! try again, which in strict synchronous mode holds commits meanwhile.
//! Unlike Patroni, which creates them reserving WAL and advances them to
//! the leader's positions, keel creates them without reserving WAL, so
//! they hold none until a standby streams through them.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use crate::pg::probe::error_text;
use crate::pg::ProbeError;

/// Patroni's slot name for a member: lower case, anything but `[a-z0-9_]`
/// replaced by `_`.
pub fn slot_name(member: &str) -> String {
    member
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// Creates the missing slots of `members` (other than `me`) on the server
/// `client` is connected to (a primary or a standby), without reserving
/// WAL; returns the names created.
pub async fn ensure<'a>(
    client: &Client,
    members: impl Iterator<Item = &'a String>,
    me: &str,
) -> Result<Vec<String>, ProbeError> {
    let wanted: BTreeSet<String> = members.filter(|m| *m != me).map(|m| slot_name(m)).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let query = |e: tokio_postgres::Error| ProbeError::Query(error_text(&e));
    let rows = client
        .query("SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'physical'", &[])
        .await
        .map_err(query)?;
    let existing: BTreeSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let mut created = Vec::new();
    for slot in wanted.difference(&existing) {
        client.execute("SELECT pg_create_physical_replication_slot($1)", &[slot]).await.map_err(query)?;
        created.push(slot.clone());
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_patroni() {
        assert_eq!(slot_name("pg-node-1"), "pg_node_1");
        assert_eq!(slot_name("PG1"), "pg1");
        assert_eq!(slot_name("a.b c"), "a_b_c");
    }
}
