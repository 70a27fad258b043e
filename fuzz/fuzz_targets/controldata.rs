//! Arbitrary text into the parsers of what Postgres prints, which must
//! answer with a value or an error and never panic: pg_controldata output
//! first, and with the same input the other small parsers of outside text
//! in `keel_runtime::pg` (LSNs, timeline history files,
//! synchronous_standby_names, conninfo). A parsed controldata is checked
//! for consistency with the facts keel-core gets from it.

#![no_main]

use keel_runtime::pg::{controldata, history, lsn, probe, sync_names};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(control) = controldata::parse_controldata(text) {
        let core = control.to_core();
        assert_eq!(core.system_id, control.system_id);
        assert_eq!(core.data_checksums, control.data_checksum_version != 0);
        let _ = control.local_timeline_lsn();
    }
    if let Ok(parsed) = lsn::parse_lsn(text) {
        assert_eq!(lsn::parse_lsn(&lsn::format_lsn(parsed)), Ok(parsed));
    }
    let _ = history::parse_history(text);
    if let Ok(names) = sync_names::parse_sync_names(text) {
        assert_eq!(sync_names::parse_sync_names(&sync_names::format_sync_names(&names)), Ok(names));
    }
    let _ = probe::parse_conninfo(text);
});
