//! What the benchmark observes besides the writers: the leader key's
//! changes as etcd announces them, and the agents' memory and CPU.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::EventType;
use serde::Serialize;
use tokio::task::JoinHandle;

/// One change of the leader key, when the harness's watch delivered it.
#[derive(Clone, Debug)]
pub struct LeaderEvent {
    pub at: Instant,
    /// The new holder; `None` when the key was deleted (released, or its
    /// lease expired).
    pub holder: Option<String>,
}

/// A watch on the leader key: etcd deletes the key the moment it expires
/// the dead leader's lease, so the delete event's arrival is the lease
/// expiry as etcd carried it out (etcd's lessor checks for expired leases
/// every 500 ms, so this can be up to that much after `ttl`; nobody can
/// take the key before it).
pub struct LeaderWatch {
    events: Arc<Mutex<Vec<LeaderEvent>>>,
    task: JoinHandle<()>,
}

impl LeaderWatch {
    /// Returns once etcd confirmed the watch.
    pub async fn start(endpoint: &str, key: String) -> Result<LeaderWatch, String> {
        let mut client = etcd_client::Client::connect([endpoint], None).await.map_err(|e| e.to_string())?;
        let mut stream = client.watch(key, None).await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(resp))) if resp.created() => {}
            other => return Err(format!("the leader watch was not created: {other:?}")),
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let task = tokio::spawn(async move {
            // The client must live as long as its stream.
            let _client = client;
            while let Ok(Some(resp)) = stream.message().await {
                let at = Instant::now();
                let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
                for event in resp.events() {
                    let holder = match event.event_type() {
                        EventType::Delete => None,
                        EventType::Put => {
                            event.kv().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                        }
                    };
                    sink.push(LeaderEvent { at, holder });
                }
            }
        });
        Ok(LeaderWatch { events, task })
    }

    pub fn events(&self) -> Vec<LeaderEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first deletion of the key at or after `t`.
    pub fn deleted_after(&self, t: Instant) -> Option<Instant> {
        self.events().into_iter().find(|e| e.at >= t && e.holder.is_none()).map(|e| e.at)
    }

    /// The first time at or after `t` that someone other than `old` took
    /// the key.
    pub fn taken_after(&self, t: Instant, old: &str) -> Option<Instant> {
        self.events()
            .into_iter()
            .find(|e| e.at >= t && e.holder.as_deref().is_some_and(|h| h != old))
            .map(|e| e.at)
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One agent's footprint over an idle window.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    pub node: String,
    /// It held the leader key when the window began.
    pub leader: bool,
    pub pid: u32,
    /// `VmRSS` at the end of the window.
    pub rss_kib: u64,
    /// CPU time over the window, as a share of one core: the scheduler's
    /// own count in nanoseconds (`/proc/<pid>/task/*/schedstat`), summed
    /// over the agent's threads.
    pub cpu_percent: f64,
    /// The same from `utime + stime` in clock ticks, which the kernel
    /// rounds down to 10 ms each: over 60 s, ±0.03 % of a core, as much as
    /// the figure measured.
    pub cpu_ticks_percent: f64,
    /// The agent's threads changed during the window: one that ended took
    /// its time with it, and `cpu_percent` is short by that.
    pub threads_changed: bool,
    pub window_s: f64,
}

/// `VmRSS` (KiB) from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("pid {pid}: {e}"))?;
    let line =
        status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| format!("pid {pid}: no VmRSS"))?;
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("pid {pid}: bad VmRSS line {line:?}"))
}

/// `utime + stime` (clock ticks) from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("pid {pid}: {e}"))?;
    // "pid (comm) state ppid …": utime and stime are fields 14 and 15, the
    // 12th and 13th after the closing parenthesis of comm.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| format!("pid {pid}: bad stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("pid {pid}: bad stat field {i}"))
    };
    Ok(field(11)? + field(12)?)
}

/// The agent's threads and the nanoseconds each has run
/// (`/proc/<pid>/task/<tid>/schedstat`, first field).
pub fn thread_cpu_ns(pid: u32) -> Result<Vec<(u32, u64)>, String> {
    let dir = format!("/proc/{pid}/task");
    let mut threads = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let entry = entry.map_err(|e| format!("{dir}: {e}"))?;
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        // A thread that ended since the listing has no time to add.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else { continue };
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{dir}/{tid}/schedstat: {stat:?}"))?;
        threads.push((tid, ns));
    }
    threads.sort_unstable();
    Ok(threads)
}

/// Clock ticks per second (`getconf CLK_TCK`; the workspace forbids the
/// `unsafe` of `sysconf`).
pub fn clock_ticks_per_s() -> Result<u64, String> {
    let out = Command::new("getconf").arg("CLK_TCK").output().map_err(|e| format!("getconf: {e}"))?;
    String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("getconf CLK_TCK: {e}"))
}

/// Measures every `(node, pid)` over `window`, idle; `leader` names the
/// leader.
pub async fn footprint(
    agents: &[(String, u32)],
    leader: Option<&str>,
    window: Duration,
) -> Result<Vec<Footprint>, String> {
    let hz = clock_ticks_per_s()?;
    let sample = |pid: u32| Ok::<_, String>((cpu_ticks(pid)?, thread_cpu_ns(pid)?));
    let before: Vec<_> = agents.iter().map(|(_, pid)| sample(*pid)).collect::<Result<_, _>>()?;
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let window_s = start.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for ((node, pid), (ticks_before, threads_before)) in agents.iter().zip(before) {
        let (ticks, threads) = sample(*pid)?;
        let ns = |threads: &[(u32, u64)]| threads.iter().map(|(_, ns)| ns).sum::<u64>();
        let tids = |threads: &[(u32, u64)]| threads.iter().map(|(tid, _)| *tid).collect::<Vec<_>>();
        out.push(Footprint {
            node: node.clone(),
            leader: leader == Some(node.as_str()),
            pid: *pid,
            rss_kib: rss_kib(*pid)?,
            cpu_percent: ns(&threads).saturating_sub(ns(&threads_before)) as f64 / 1e9 / window_s * 100.0,
            cpu_ticks_percent: ticks.saturating_sub(ticks_before) as f64 / hz as f64 / window_s * 100.0,
            threads_changed: tids(&threads) != tids(&threads_before),
            window_s,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_footprint() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        cpu_ticks(me).unwrap();
        assert!(thread_cpu_ns(me).unwrap().iter().any(|(tid, _)| *tid == me), "the main thread");
        assert!(clock_ticks_per_s().unwrap() > 0);
        assert!(rss_kib(u32::MAX).is_err());
    }
}
