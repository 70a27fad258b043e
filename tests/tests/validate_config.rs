//! `keel --validate-config FILE`, the built binary as an operator (or the
//! packaged unit's `ExecStartPre`) runs it: on the example configuration
//! the Debian package ships (the guide's `patroni.yml` for PostgreSQL 15),
//! on the guide's own paths, and on broken variants. It starts nothing and
//! contacts nothing, so no etcd or Postgres is needed; PostgreSQL 15's
//! binaries are (`/usr/lib/postgresql/15/bin`, as for every test here).
//!
//! Needs the binary: `cargo build -p keel-runtime --bin keel`, then
//! `cargo test -p keel-tests --test validate_config`.

use std::path::Path;
use std::process::Command;

use keel_tests::cluster::keel_bin;
use keel_tests::scratch::Scratch;

/// `packaging/keel.yml`, installed as /etc/keel/keel.yml.
const EXAMPLE: &str = include_str!("../../packaging/keel.yml");
const EXAMPLE_DATA_DIR: &str = "  data_dir: /var/lib/postgresql/15/keel\n";

/// What `keel --validate-config` said: its exit code and stderr lines.
#[derive(Debug)]
struct Verdict {
    code: Option<i32>,
    stdout: String,
    lines: Vec<String>,
}

/// Writes `yaml` to `<dir>/keel.yml` and validates it.
fn validate(dir: &Path, yaml: &str) -> Verdict {
    let path = dir.join("keel.yml");
    std::fs::write(&path, yaml).expect("write the config");
    validate_file(&path)
}

fn validate_file(path: &Path) -> Verdict {
    let output = Command::new(keel_bin())
        .arg("--validate-config")
        .arg(path)
        // The process environment's PATRONI_* would override the file.
        .env_clear()
        .output()
        .expect("run keel --validate-config");
    let file = path.display().to_string();
    let lines = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| line.strip_prefix(&format!("{file}: ")).unwrap_or(line).to_owned())
        .collect();
    Verdict {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        lines,
    }
}

/// The example with its data directory in `dir` (the one it names is this
/// machine's business).
fn example_in(dir: &Path) -> String {
    assert!(EXAMPLE.contains(EXAMPLE_DATA_DIR), "the example names its data_dir on one line");
    EXAMPLE.replace(EXAMPLE_DATA_DIR, &format!("  data_dir: {}/data/main\n", dir.display()))
}

#[test]
fn the_packaged_example_is_valid_and_nothing_is_printed() {
    let scratch = Scratch::new("validate-example");
    let verdict = validate(scratch.path(), &example_in(scratch.path()));
    assert_eq!((verdict.code, verdict.lines.as_slice(), verdict.stdout.as_str()), (Some(0), &[][..], ""));
    assert!(!scratch.path().join("data").exists(), "validation creates nothing");
}

#[test]
fn the_guides_postgresql_17_paths_are_refused_where_it_is_not_installed() {
    let scratch = Scratch::new("validate-guide");
    // The guide's patroni.yml: the example with the guide's PostgreSQL 17
    // paths and its own password.
    let guide = EXAMPLE
        .replace(EXAMPLE_DATA_DIR, "  data_dir: /var/lib/postgresql/17/main\n")
        .replace("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/17/bin")
        .replace("CHANGE-ME", "REDACTED");
    let verdict = validate(scratch.path(), &guide);
    if Path::new("/usr/lib/postgresql/17/bin/postgres").exists() {
        assert_eq!((verdict.code, verdict.lines.as_slice()), (Some(0), &[][..]));
        return;
    }
    let bin_dir = "postgresql.bin_dir: /usr/lib/postgresql/17/bin is not a directory";
    assert_eq!((verdict.code, verdict.lines.as_slice()), (Some(1), &[bin_dir.to_owned()][..]));
}

#[test]
fn every_problem_of_a_broken_file_is_a_line_and_the_exit_code_is_one() {
    let scratch = Scratch::new("validate-broken");
    let not_a_dir = scratch.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let broken = example_in(scratch.path())
        .replace("    ttl: 30\n", "    ttl: thirty\n")
        .replace("  listen: 0.0.0.0:8008\n", "  listen: 0.0.0.0:80080\n")
        .replace("    - 10.0.0.2:2379\n", "    - 10.0.0.2:0\n")
        .replace(&format!("{}/data/main", scratch.path().display()), &not_a_dir.display().to_string())
        .replace("/usr/lib/postgresql/15/bin", "/nonexistent/bin")
        .replace("  connect_address: 10.0.0.11:5432\n", "  connect_address: 10.0.0.11:5432\n  tpyo: 1\n");
    let verdict = validate(scratch.path(), &broken);
    assert_eq!(verdict.code, Some(1), "{verdict:?}");
    let data_dir = format!("postgresql.data_dir: {}: Not a directory (os error 20)", not_a_dir.display());
    assert_eq!(
        verdict.lines,
        [
            "warning: postgresql.tpyo: unknown key, ignored",
            "bootstrap.dcs.ttl: invalid value: string \"thirty\", expected an integer",
            "restapi.listen: port must be 1..=65535, got \"80080\" in \"0.0.0.0:80080\"",
            "etcd3.hosts[1]: port must be 1..=65535, got \"0\" in \"10.0.0.2:0\"",
            "postgresql.bin_dir: /nonexistent/bin is not a directory",
            data_dir.as_str(),
        ]
    );
}

#[test]
fn warnings_alone_keep_the_exit_code_zero() {
    let scratch = Scratch::new("validate-warnings");
    let yaml = example_in(scratch.path()) + "log:\n  format: '%(message)s'\n";
    let verdict = validate(scratch.path(), &yaml);
    assert_eq!(verdict.code, Some(0), "{verdict:?}");
    assert_eq!(verdict.lines, ["warning: log.format: not honoured, keel's log lines have a fixed format"]);
}

#[test]
fn unreadable_or_unparsable_files_are_one_problem() {
    let scratch = Scratch::new("validate-unreadable");
    let missing = scratch.path().join("missing.yml");
    let verdict = validate_file(&missing);
    assert_eq!(verdict.code, Some(1));
    assert_eq!(verdict.lines.len(), 1, "{verdict:?}");
    assert!(verdict.lines[0].starts_with(&format!("cannot read {}", missing.display())), "{verdict:?}");
    let verdict = validate(scratch.path(), "scope: [unclosed\n");
    assert_eq!(verdict.code, Some(1));
    assert_eq!(verdict.lines.len(), 1, "{verdict:?}");
    assert!(verdict.lines[0].starts_with("invalid YAML at line 1"), "{verdict:?}");
}
