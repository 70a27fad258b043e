//! Arbitrary text into the parsers of what Postgres prints, which must
//! answer with a value or an error and never panic: pg_controldata output
//! first, and with the same input the other small parsers of outside text
//! in `keel_runtime::pg` (LSNs, timeline history files,
//! synchronous_standby_names, conninfo, keel's timeline-origin note). A
//! parsed controldata is checked for consistency with the facts keel-core
//! gets from it; what keel writes (LSNs, synchronous_standby_names, a
//! standby's primary_conninfo, the timeline-origin note) it reads back the
//! same.

#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use keel_runtime::pg::control::{PgCtl, Upstream};
use keel_runtime::pg::{self, controldata, history, lsn, probe, sync_names};
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
    if let Ok(switches) = history::parse_history(text) {
        assert!(switches.windows(2).all(|w| w[0].timeline < w[1].timeline));
    }
    if let Ok(names) = sync_names::parse_sync_names(text) {
        assert_eq!(sync_names::parse_sync_names(&sync_names::format_sync_names(&names)), Ok(names));
    }
    let _ = probe::parse_conninfo(text);
    conninfo(text);
    timeline_origin(text);
});

/// A standby's `primary_conninfo` as keel writes it, from fields cut out
/// of the text at each `|` (host, user, password, then option names and
/// values), read back as the same keywords and values.
fn conninfo(text: &str) {
    let mut parts = text.split('|');
    let (Some(host), Some(user)) = (parts.next(), parts.next()) else { return };
    let password = parts.next().map(str::to_owned);
    let mut options = BTreeMap::new();
    while let (Some(key), Some(value)) = (parts.next(), parts.next()) {
        // libpq keywords: keel takes them from its config, where they are
        // names, not text.
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            options.insert(key.to_owned(), value.to_owned());
        }
    }
    let upstream = Upstream {
        member: "pg1".into(),
        host: host.into(),
        port: 5432,
        user: user.into(),
        password: password.clone(),
        options: options.clone(),
    };
    let mut expected: BTreeMap<String, String> = options
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "port" | "user" | "password" | "application_name"))
        .collect();
    expected.insert("host".into(), host.into());
    expected.insert("port".into(), "5432".into());
    expected.insert("user".into(), user.into());
    expected.insert("application_name".into(), "pg2".into());
    if let Some(password) = password {
        expected.insert("password".into(), password);
    }
    let written = upstream.conninfo("pg2");
    assert_eq!(probe::parse_conninfo(&written), Some(expected), "{written}");
}

/// keel's note of who started a timeline (`<timeline> <member>` on its
/// first line), for texts that start like one: the file holding the text
/// names a member for the timeline it starts with only, the rest of that
/// line; and a note keel writes for that member reads back the same. Only
/// reachable through the file, so only for those texts: the file system
/// costs more than every other parser here together.
fn timeline_origin(text: &str) {
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return;
    }
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        // tmpfs if there is one: renames on a disk file system are slow.
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        // One directory per process (libFuzzer's -jobs run several); those
        // of processes gone are removed, so at most the last run's stays.
        let prefix = "keel-fuzz-controldata-";
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix(prefix).and_then(|pid| pid.parse::<u32>().ok());
            if pid.is_some_and(|pid| !PathBuf::from(format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir
    });
    let note = dir.join(pg::TIMELINE_ORIGIN_FILE);
    std::fs::write(&note, text).expect("the note is written");
    let first = text.lines().next().unwrap_or_default();
    let Some((word, rest)) = first.split_once(' ') else {
        assert_eq!(pg::read_timeline_origin(dir, 1), None);
        return;
    };
    let Ok(timeline) = word.parse::<u32>() else { return };
    let read = pg::read_timeline_origin(dir, timeline);
    let valid = !rest.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
    assert_eq!(read.as_deref(), valid.then_some(rest), "{text:?}");
    assert_eq!(pg::read_timeline_origin(dir, timeline.wrapping_add(1)), None);
    let ctl = PgCtl::new("/nonexistent", dir);
    match pg::write_timeline_origin(&ctl, timeline, rest) {
        Ok(()) => assert_eq!(pg::read_timeline_origin(dir, timeline).as_deref(), Some(rest)),
        Err(_) => assert!(rest.is_empty() || rest.contains('\r')),
    }
}
