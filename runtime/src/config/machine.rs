//! The checks of `keel --validate-config` that read this machine, after
//! those of the text ([`super::review`]): what Patroni's validator also
//! looks at (`validator.py`: `validate_data_dir`, `BinDirectory`), and the
//! files the agent reads before it starts (the REST API's certificate,
//! etcd's). Nothing is written, started or contacted, so it can run next to
//! a live node: unlike Patroni, the listen ports are not tried (a running
//! Postgres holds its port across keel restarts; the agent reports a port
//! it cannot bind when it starts).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, EtcdProtocol};
use crate::agent::setup::Setup;
use crate::dcs::etcd::EtcdTls;
use crate::pg::{DataDirState, PgCtl};

/// The problems and warnings of `config` on this machine, run as the user
/// who runs the check (under the packaged unit, `postgres`).
pub fn review(config: &Config) -> (Vec<ConfigError>, Vec<String>) {
    let mut problems = Vec::new();
    let setup = match Setup::new(config) {
        Ok(setup) => setup,
        Err(e) => return (vec![ConfigError::new("", e)], Vec::new()),
    };
    let bin_dir = check_bin_dir(config, &setup.ctl.bin_dir, &mut problems);
    if !config.postgresql.data_dir.as_os_str().is_empty() {
        problems.extend(check_data_dir(&setup.ctl, bin_dir.then_some(&setup.ctl.bin_dir)).err());
    }
    if let Err(e) = crate::api::tls::server_config(&config.restapi) {
        problems.push(ConfigError::new("", e));
    }
    if config.etcd3.protocol == EtcdProtocol::Https {
        problems.extend(EtcdTls::of(&config.etcd3).check().map_err(|e| ConfigError::new("", e)).err());
    }
    (problems, setup.warnings)
}

/// `bin_dir` (or keel's default when unset) holds every binary keel runs;
/// true when it does.
fn check_bin_dir(config: &Config, bin_dir: &Path, problems: &mut Vec<ConfigError>) -> bool {
    let default = match config.postgresql.bin_dir {
        Some(_) => String::new(),
        None => " (not set: keel's default)".to_string(),
    };
    let problem = |reason: String| ConfigError::new("postgresql.bin_dir", reason);
    if !bin_dir.is_dir() {
        problems.push(problem(format!("{}{default} is not a directory", bin_dir.display())));
        return false;
    }
    let missing: Vec<&str> =
        PgCtl::BINARIES.into_iter().filter(|name| !executable(&bin_dir.join(name))).collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{}{default} has no executable {}", bin_dir.display(), missing.join(", "));
    problems.push(problem(reason));
    false
}

fn executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The data directory is one keel can start or create: missing (with a
/// parent this user can create it in), empty, or a cluster of the major
/// version of `bin_dir`'s `postgres` (checked when `bin_dir` is complete),
/// with its WAL directory. Anything else stops the agent, or makes it
/// clone over nothing.
fn check_data_dir(ctl: &PgCtl, bin_dir: Option<&PathBuf>) -> Result<(), ConfigError> {
    let problem = |reason: String| ConfigError::new("postgresql.data_dir", reason);
    let data_dir = &ctl.data_dir;
    match ctl.data_dir_state().map_err(|e| problem(e.to_string()))? {
        DataDirState::Empty => Ok(()),
        DataDirState::Missing => {
            // A relative data_dir is relative to the working directory.
            let parent = data_dir.ancestors().skip(1).find(|dir| dir.exists()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(problem(format!("{} is not a directory", parent.display())));
            }
            if !writable(parent) {
                let reason = format!(
                    "{} does not exist, and this user cannot create it: {} is not writable",
                    data_dir.display(),
                    parent.display()
                );
                return Err(problem(reason));
            }
            Ok(())
        }
        DataDirState::Incomplete => Err(problem(format!(
            "{} is not empty but holds no cluster (no PG_VERSION or global/pg_control): \
             the rest of a failed initdb or base backup? keel neither starts nor overwrites it; move it aside",
            data_dir.display()
        ))),
        DataDirState::Initialised => {
            if !data_dir.join("pg_wal").is_dir() {
                return Err(problem(format!("{} has no pg_wal directory", data_dir.display())));
            }
            let Some(bin_dir) = bin_dir else { return Ok(()) };
            let on_disk = std::fs::read_to_string(data_dir.join("PG_VERSION"))
                .map_err(|e| problem(format!("{}/PG_VERSION: {e}", data_dir.display())))?;
            let binaries = postgres_major_version(bin_dir).map_err(problem)?;
            if on_disk.trim() != binaries {
                let reason = format!(
                    "{} holds a PostgreSQL {} cluster, but {}/postgres is version {binaries}",
                    data_dir.display(),
                    on_disk.trim(),
                    bin_dir.display()
                );
                return Err(problem(reason));
            }
            Ok(())
        }
    }
}

/// The major version `postgres --version` reports (`postgres (PostgreSQL)
/// 15.14 (Debian 15.14-0+deb12u1)` is 15), as Patroni's
/// `get_major_version` reads it.
fn postgres_major_version(bin_dir: &Path) -> Result<String, String> {
    let postgres = bin_dir.join("postgres");
    let output = std::process::Command::new(&postgres)
        .arg("--version")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", postgres.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    major_version(&text).ok_or_else(|| format!("{} --version said {:?}", postgres.display(), text.trim()))
}

/// `15` of `postgres (PostgreSQL) 15.14 ...` (and of `15beta1`); `9.6` of
/// `... 9.6.24`.
fn major_version(version_line: &str) -> Option<String> {
    let version =
        version_line.split_whitespace().find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits = |part: &str| part.chars().take_while(char::is_ascii_digit).collect::<String>();
    let mut parts = version.split('.');
    let major = digits(parts.next()?);
    if major.parse::<u32>().ok()? >= 10 {
        return Some(major);
    }
    let minor = digits(parts.next()?);
    (!minor.is_empty()).then(|| format!("{major}.{minor}"))
}

/// Whether this process may create entries in `dir`, by its mode bits and
/// the effective user and groups of `/proc/self/status` (root may always).
fn writable(dir: &Path) -> bool {
    let (Ok(meta), Some(me)) = (dir.metadata(), Identity::of_self()) else { return false };
    let mode = meta.permissions().mode();
    if me.uid == 0 {
        return true;
    }
    if meta.uid() == me.uid {
        return mode & 0o200 != 0;
    }
    if me.gids.contains(&meta.gid()) {
        return mode & 0o020 != 0;
    }
    mode & 0o002 != 0
}

/// The effective user and groups of this process.
struct Identity {
    uid: u32,
    gids: Vec<u32>,
}

impl Identity {
    fn of_self() -> Option<Identity> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |name: &str| -> Vec<u32> {
            let line = status.lines().find_map(|line| line.strip_prefix(name)).unwrap_or_default();
            line.split_whitespace().filter_map(|id| id.parse().ok()).collect()
        };
        // `Uid:` and `Gid:` list real, effective, saved and filesystem ids.
        let uid = *field("Uid:").get(1)?;
        let mut gids = field("Groups:");
        gids.push(*field("Gid:").get(1)?);
        Some(Identity { uid, gids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A scratch directory under the system's temporary directory, removed
    /// when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("keel-machine-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A bin_dir holding `names`, each an executable script that prints
    /// `postgres (PostgreSQL) <version>`.
    fn bin_dir(root: &Path, names: &[&str], version: &str) -> PathBuf {
        let dir = root.join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        for name in names {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    fn config(bin_dir: &Path, data_dir: &Path) -> Config {
        let yaml = format!(
            "scope: s\nname: pg1\nrestapi:\n  listen: 127.0.0.1:8008\netcd3:\n  hosts: 127.0.0.1:2379\n\
             postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: {}\n  bin_dir: {}\n",
            data_dir.display(),
            bin_dir.display()
        );
        super::super::parse(&yaml, &BTreeMap::new()).unwrap().config
    }

    fn problems(config: &Config) -> Vec<String> {
        review(config).0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn complete_bin_dir_and_missing_data_dir_pass() {
        let scratch = Scratch::new("pass");
        let bin = bin_dir(&scratch.0, &PgCtl::BINARIES, "15.14");
        assert_eq!(problems(&config(&bin, &scratch.0.join("data/main"))), Vec::<String>::new());
    }

    #[test]
    fn missing_binaries_are_named_together() {
        let scratch = Scratch::new("binaries");
        let bin = bin_dir(&scratch.0, &["postgres", "pg_ctl", "initdb", "pg_controldata"], "15.14");
        let found = problems(&config(&bin, &scratch.0.join("data")));
        let expected =
            format!("postgresql.bin_dir: {} has no executable pg_basebackup, pg_rewind", bin.display());
        assert_eq!(found, [expected]);
        let absent = scratch.0.join("nowhere");
        let found = problems(&config(&absent, &scratch.0.join("data")));
        assert_eq!(found, [format!("postgresql.bin_dir: {} is not a directory", absent.display())]);
    }

    #[test]
    fn data_dir_that_is_a_file_or_a_half_made_cluster_is_a_problem() {
        let scratch = Scratch::new("datadir");
        let bin = bin_dir(&scratch.0, &PgCtl::BINARIES, "15.14");
        let file = scratch.0.join("file");
        std::fs::write(&file, "").unwrap();
        let found = problems(&config(&bin, &file));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("postgresql.data_dir: ") && found[0].contains("Not a directory"),
            "{found:?}"
        );
        let half = scratch.0.join("half");
        std::fs::create_dir_all(half.join("base")).unwrap();
        let found = problems(&config(&bin, &half));
        assert!(found[0].contains("holds no cluster"), "{found:?}");
        let under_file = file.join("main");
        let found = problems(&config(&bin, &under_file));
        assert!(found[0].starts_with("postgresql.data_dir: "), "{found:?}");
    }

    #[test]
    fn cluster_of_another_major_version_or_without_wal_is_a_problem() {
        let scratch = Scratch::new("version");
        let bin = bin_dir(&scratch.0, &PgCtl::BINARIES, "15.14 (Debian 15.14-0+deb12u1)");
        let data = scratch.0.join("data");
        std::fs::create_dir_all(data.join("global")).unwrap();
        std::fs::write(data.join("global/pg_control"), "").unwrap();
        std::fs::write(data.join("PG_VERSION"), "17\n").unwrap();
        let found = problems(&config(&bin, &data));
        assert_eq!(found, [format!("postgresql.data_dir: {} has no pg_wal directory", data.display())]);
        std::fs::create_dir(data.join("pg_wal")).unwrap();
        let found = problems(&config(&bin, &data));
        let expected = format!(
            "postgresql.data_dir: {} holds a PostgreSQL 17 cluster, but {}/postgres is version 15",
            data.display(),
            bin.display()
        );
        assert_eq!(found, [expected]);
        std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        assert_eq!(problems(&config(&bin, &data)), Vec::<String>::new());
    }

    #[test]
    fn unreadable_certificate_is_a_problem() {
        let scratch = Scratch::new("tls");
        let bin = bin_dir(&scratch.0, &PgCtl::BINARIES, "15.14");
        let mut config = config(&bin, &scratch.0.join("data"));
        config.restapi.certfile = Some(scratch.0.join("missing.pem"));
        let found = problems(&config);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("restapi.certfile"), "{found:?}");
        config.restapi.certfile = None;
        config.etcd3.protocol = EtcdProtocol::Https;
        config.etcd3.cacert = Some(scratch.0.join("ca.pem"));
        let found = problems(&config);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("ca.pem"), "{found:?}");
    }

    #[test]
    fn major_versions_read_as_patroni_reads_them() {
        assert_eq!(
            major_version("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)").as_deref(),
            Some("15")
        );
        assert_eq!(major_version("postgres (PostgreSQL) 9.6.24").as_deref(), Some("9.6"));
        assert_eq!(major_version("postgres (PostgreSQL) 17beta1").as_deref(), Some("17"));
        assert_eq!(major_version("nothing"), None);
    }

    #[test]
    fn root_may_write_anywhere_and_others_by_mode() {
        let scratch = Scratch::new("writable");
        let dir = scratch.0.join("ro");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let me = Identity::of_self().unwrap();
        assert_eq!(writable(&dir), me.uid == 0);
        assert!(writable(&scratch.0));
    }
}
