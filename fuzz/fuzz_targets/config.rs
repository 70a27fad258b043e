//! Feeds arbitrary text to the YAML loader and arbitrary bytes to the reader
//! of etcd's `config` key. Neither may panic, whatever arrives; and dynamic
//! settings that were accepted must read back the same after keel writes
//! them, since keel writes what it read back to etcd.

#![no_main]

use std::collections::BTreeMap;

use keel_runtime::config::{dynamic_from_json, parse};
use libfuzzer_sys::fuzz_target;

mod common;
use common::same;

fuzz_target!(|data: &[u8]| {
    if let Ok(settings) = dynamic_from_json(data) {
        let _ = settings.to_core();
        let written = serde_json::to_value(&settings).expect("dynamic settings always serialize");
        let reread = dynamic_from_json(written.to_string().as_bytes()).expect("what keel writes, keel reads");
        let rewritten = serde_json::to_value(&reread).expect("dynamic settings always serialize");
        assert!(same(&written, &rewritten), "a write and read changed the settings:\n{written}\n{rewritten}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(loaded) = parse(text, &BTreeMap::new()) {
            let _ = loaded.config.bootstrap.dcs.to_core();
            let _ = loaded.config.tags.to_core();
        }
    }
});
