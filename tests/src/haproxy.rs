//! HAProxy in front of a keel cluster, configured as the guide's
//! `haproxy.cfg` (`../shared/reference/patroni-guide.txt`) with its ports
//! adapted to loopback: a primary port whose servers are checked with
//! `OPTIONS /primary`, a replica port checked with `OPTIONS /replica`,
//! `inter 3s fall 3 rise 2 on-marked-down shutdown-sessions`.
//!
//! The Debian `haproxy` binary runs in the foreground (`-db`) as a child of
//! this process, with a parent-death signal, and is killed by PID when the
//! fixture is dropped. An admin socket in its scratch directory answers
//! `show stat`, so that callers can wait until HAProxy has settled.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::procs;
use crate::scratch::{free_port, Scratch};

/// The HAProxy binary: `KEEL_HAPROXY`, else Debian's.
pub fn haproxy_bin() -> PathBuf {
    std::env::var_os("KEEL_HAPROXY").map(PathBuf::from).unwrap_or_else(|| "/usr/sbin/haproxy".into())
}

/// The backend that HAProxy health-checks: one keel node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub pg_port: u16,
    pub api_port: u16,
}

/// The check timing of the guide's `default-server` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckTiming {
    pub inter: Duration,
    pub fall: u32,
    pub rise: u32,
}

impl CheckTiming {
    /// `inter 3s fall 3 rise 2`.
    pub const GUIDE: CheckTiming = CheckTiming { inter: Duration::from_secs(3), fall: 3, rise: 2 };
}

/// The listen sections of the guide, by their names there.
pub const PRIMARY: &str = "postgres_primary";
pub const REPLICAS: &str = "postgres_replicas";

pub struct Haproxy {
    /// Clients write here (the guide's 5000).
    pub primary_port: u16,
    /// Clients read here (the guide's 5001).
    pub replica_port: u16,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    socket_path: PathBuf,
    child: Option<Child>,
    _dir: Scratch,
}

/// The guide's `haproxy.cfg`, ports adapted: every server on 127.0.0.1,
/// checked on its REST port. The only addition is the admin socket (the
/// guide's troubleshooting section reads `show stat` from one too).
pub fn config(
    primary_port: u16,
    replica_port: u16,
    backends: &[Backend],
    timing: CheckTiming,
    socket: &Path,
) -> String {
    let default_server = format!(
        "default-server inter {}ms fall {} rise {} on-marked-down shutdown-sessions",
        timing.inter.as_millis(),
        timing.fall,
        timing.rise
    );
    let servers: String = backends
        .iter()
        .map(|b| format!("server {} 127.0.0.1:{} check port {}\n", b.name, b.pg_port, b.api_port))
        .collect();
    format!(
        "global
maxconn 8192
stats socket {socket} mode 600 level admin
defaults
mode tcp
timeout connect 5s
timeout client 30m
timeout server 30m
listen {PRIMARY}
bind 127.0.0.1:{primary_port}
option httpchk OPTIONS /primary
http-check expect status 200
{default_server}
{servers}listen {REPLICAS}
bind 127.0.0.1:{replica_port}
balance roundrobin
option httpchk OPTIONS /replica
http-check expect status 200
{default_server}
{servers}",
        socket = socket.display(),
    )
}

impl Haproxy {
    /// Writes the config in a scratch directory of its own and starts
    /// HAProxy on two fresh loopback ports. Panics if it does not start
    /// (its log says why).
    pub fn start(backends: &[Backend], timing: CheckTiming) -> Haproxy {
        let dir = Scratch::new("haproxy");
        let (primary_port, replica_port) = (free_port(), free_port());
        let config_path = dir.path().join("haproxy.cfg");
        let log_path = dir.path().join("haproxy.log");
        let socket_path = dir.path().join("admin.sock");
        let text = config(primary_port, replica_port, backends, timing, &socket_path);
        std::fs::write(&config_path, text).expect("write haproxy.cfg");
        let check =
            Command::new(haproxy_bin()).args(["-c", "-q", "-f"]).arg(&config_path).output().unwrap_or_else(
                |e| panic!("running {}: {e} (apt-get install haproxy)", haproxy_bin().display()),
            );
        assert!(
            check.status.success(),
            "haproxy -c refused {}: {}",
            config_path.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(&log_path).expect("create haproxy.log");
        let err = log.try_clone().expect("clone the log handle");
        // Foreground (-db: no daemon, no master process), and killed with
        // this thread should the caller die without dropping the fixture.
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "SIGKILL", "--"])
            .arg(haproxy_bin())
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting haproxy: {e}"));
        let mut haproxy = Haproxy {
            primary_port,
            replica_port,
            config_path,
            log_path,
            socket_path,
            child: Some(child),
            _dir: dir,
        };
        haproxy.wait_listening(Duration::from_secs(10));
        haproxy
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Each server's status (`UP`, `DOWN`, `UP 1/2`, `no check`, …) in
    /// `listen` ([`PRIMARY`] or [`REPLICAS`]), from `show stat`.
    pub async fn server_states(&self, listen: &str) -> Result<BTreeMap<String, String>, String> {
        let csv = self.admin("show stat").await?;
        parse_states(&csv, listen)
    }

    /// The servers `listen` routes to now (status `UP`, also `UP 1/3` while
    /// falling: HAProxy still sends it traffic).
    pub async fn up_servers(&self, listen: &str) -> Result<Vec<String>, String> {
        let states = self.server_states(listen).await?;
        Ok(states.into_iter().filter(|(_, s)| s.starts_with("UP")).map(|(n, _)| n).collect())
    }

    /// Waits until exactly `primary` is fully `UP` behind the primary port
    /// and exactly `replicas` behind the replica port (every other server
    /// fully `DOWN`); returns how long it took.
    pub async fn wait_settled(
        &self,
        primary: &str,
        replicas: &[String],
        timeout: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let settled = |states: &BTreeMap<String, String>, up: &[&str]| {
            states.iter().all(|(name, s)| if up.contains(&name.as_str()) { s == "UP" } else { s == "DOWN" })
        };
        let replica_names: Vec<&str> = replicas.iter().map(String::as_str).collect();
        loop {
            let last = match (self.server_states(PRIMARY).await, self.server_states(REPLICAS).await) {
                (Ok(p), Ok(r)) if settled(&p, &[primary]) && settled(&r, &replica_names) => {
                    return Ok(start.elapsed())
                }
                (Ok(p), Ok(r)) => format!("{PRIMARY}: {p:?}, {REPLICAS}: {r:?}"),
                (Err(e), _) | (_, Err(e)) => e,
            };
            if start.elapsed() > timeout {
                return Err(format!(
                    "HAProxy did not settle on primary {primary} and replicas {replicas:?} within {timeout:?}; last: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One command on the admin socket, and its whole answer.
    async fn admin(&self, command: &str) -> Result<String, String> {
        let exchange = async {
            let mut stream = tokio::net::UnixStream::connect(&self.socket_path).await?;
            stream.write_all(format!("{command}\n").as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        match tokio::time::timeout(Duration::from_secs(5), exchange).await {
            Err(_) => Err(format!("haproxy admin socket: no answer to {command:?} within 5 s")),
            Ok(Err(e)) => Err(format!("haproxy admin socket {}: {e}", self.socket_path.display())),
            Ok(Ok(raw)) => Ok(String::from_utf8_lossy(&raw).into_owned()),
        }
    }

    /// Until both ports accept connections; panics with the log otherwise.
    fn wait_listening(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let listening = [self.primary_port, self.replica_port]
                .iter()
                .all(|&p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok());
            if listening && self.socket_path.exists() {
                return;
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(exited.is_none(), "haproxy exited at start ({exited:?}):\n{}", self.log());
            assert!(Instant::now() < deadline, "haproxy not listening after {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // setpriv execs haproxy: the child's PID is haproxy's.
            procs::kill_tree(child.id());
            let _ = child.wait();
        }
    }
}

/// The `status` column of `show stat` for the servers of `listen`.
fn parse_states(csv: &str, listen: &str) -> Result<BTreeMap<String, String>, String> {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| format!("show stat: no header in {:?}", csv.chars().take(200).collect::<String>()))?;
    let columns: Vec<&str> = header.split(',').collect();
    let column = |name: &str| {
        columns.iter().position(|c| *c == name).ok_or_else(|| format!("show stat: no {name} column"))
    };
    let (px, sv, status) = (column("pxname")?, column("svname")?, column("status")?);
    let mut states = BTreeMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let get = |i: usize| fields.get(i).copied().ok_or_else(|| format!("show stat: short line {line:?}"));
        let server = get(sv)?;
        if get(px)? == listen && server != "FRONTEND" && server != "BACKEND" {
            states.insert(server.to_owned(), get(status)?.to_owned());
        }
    }
    if states.is_empty() {
        return Err(format!("show stat: no servers in {listen}"));
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_stat_statuses_are_read_by_column_name() {
        let csv = "# pxname,svname,qcur,status,weight\n\
                   postgres_primary,FRONTEND,,OPEN,\n\
                   postgres_primary,pg1,0,UP,1\n\
                   postgres_primary,pg2,0,DOWN,1\n\
                   postgres_primary,BACKEND,0,UP,1\n\
                   postgres_replicas,pg1,0,DOWN 1/2,1\n\n";
        let states = parse_states(csv, PRIMARY).unwrap();
        assert_eq!(
            states.into_iter().collect::<Vec<_>>(),
            [("pg1".into(), "UP".into()), ("pg2".into(), "DOWN".into())]
        );
        assert_eq!(parse_states(csv, REPLICAS).unwrap()["pg1"], "DOWN 1/2");
    }

    #[test]
    fn show_stat_without_header_or_servers_is_an_error() {
        assert!(parse_states("Unknown command\n", PRIMARY).is_err());
        assert!(parse_states("# pxname,svname,status\nother,pg1,UP\n", PRIMARY).is_err());
        assert!(parse_states("# pxname,svname\n", PRIMARY).unwrap_err().contains("status"));
    }

    #[test]
    fn config_keeps_the_guides_checks() {
        let backends = [Backend { name: "pg1".into(), pg_port: 7001, api_port: 8001 }];
        let text = config(5000, 5001, &backends, CheckTiming::GUIDE, Path::new("/tmp/s"));
        assert!(text.contains("option httpchk OPTIONS /primary\nhttp-check expect status 200\n"));
        assert!(text.contains("option httpchk OPTIONS /replica\n"));
        assert!(text.contains("default-server inter 3000ms fall 3 rise 2 on-marked-down shutdown-sessions"));
        assert!(text.contains("server pg1 127.0.0.1:7001 check port 8001\n"));
    }
}
