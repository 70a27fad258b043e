//! Processes by PID: signals through `kill(1)` (the workspace forbids
//! `unsafe`, so no `libc::kill`), and what `/proc` says about them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sends `signal` (`KILL`, `TERM`, …) to every PID in `pids`; false when
/// `kill` failed for any of them (typically: already gone).
pub fn signal(pids: &[u32], signal: &str) -> bool {
    if pids.is_empty() {
        return true;
    }
    Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The process exists and is not a zombie. A zombie runs nothing: it only
/// waits for its parent (or an init that may never reap it) to collect it.
pub fn is_alive(pid: u32) -> bool {
    matches!(state(pid), Some(s) if !matches!(s, 'Z' | 'X' | 'x'))
}

/// The state letter in `/proc/<pid>/stat` (`R`, `S`, `Z`, …).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Every live process's parent, from `/proc/*/stat`.
fn parents() -> BTreeMap<u32, u32> {
    let mut parents = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return parents };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let (Some(_state), Some(ppid)) = (fields.next(), fields.next()) else { continue };
        if let Ok(ppid) = ppid.parse() {
            parents.insert(pid, ppid);
        }
    }
    parents
}

/// The children of `pid`, their children, and so on (not `pid` itself).
/// Collect them *before* killing `pid`: its orphans are reparented.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents = parents();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (&child, _) in parents.iter().filter(|(_, &p)| p == parent) {
            if !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Live processes whose command line mentions `path` (a data directory, a
/// config file under a scratch directory, …). Postgres' own children
/// rename themselves (`postgres: walwriter`), so find those with
/// [`descendants`] of the postmaster.
pub fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && is_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// The command line of `pid`, for messages.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end().to_owned())
        .unwrap_or_default()
}

/// The real uid of `pid` (`Uid:` in `/proc/<pid>/status`).
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until none of `pids` is alive, for at most `timeout`; returns
/// those still alive.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL to `pid` and everything it started, then waits (10 s at most)
/// until they are gone. Returns the PIDs that were signalled.
pub fn kill_tree(pid: u32) -> Vec<u32> {
    let mut tree = descendants(pid);
    tree.insert(0, pid);
    signal(&tree, "KILL");
    wait_gone(&tree, Duration::from_secs(10));
    tree
}

/// The PID on the first line of `<data_dir>/postmaster.pid` if that process
/// is alive (negative for a single-user backend, as Postgres writes it).
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    let pidfile = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i64 = pidfile.lines().next()?.trim().parse().ok()?;
    let pid = u32::try_from(pid.unsigned_abs()).ok()?;
    is_alive(pid).then_some(pid)
}

/// The fault "the postmaster crashes": SIGKILL to the PID in
/// `postmaster.pid`, and nothing else. Its children notice the death of
/// their postmaster and exit by themselves, as they would after a real
/// crash; this waits (10 s at most) until they have, so that whatever
/// restarts the server finds the shared memory free. Returns the PID
/// killed, or `None` when no postmaster was running.
pub fn kill_postmaster(data_dir: &Path) -> Option<u32> {
    let pid = postmaster_pid(data_dir)?;
    let mut tree = descendants(pid);
    signal(&[pid], "KILL");
    tree.insert(0, pid);
    let left = wait_gone(&tree, Duration::from_secs(10));
    assert!(!left.contains(&pid), "postmaster {pid} of {} survived SIGKILL for 10 s", data_dir.display());
    Some(pid)
}

/// PIDs of the live processes among `pids`, deduplicated.
pub fn alive(pids: impl IntoIterator<Item = u32>) -> Vec<u32> {
    pids.into_iter().filter(|&p| is_alive(p)).collect::<BTreeSet<_>>().into_iter().collect()
}
