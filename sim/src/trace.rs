//! The event trace of one madsim run (`keel-sim replay --trace FILE`): one
//! JSON object a line, each with its simulated time in ms since the
//! cluster started. It holds every fault as it starts and heals, every
//! node's role change, every change of the leader key's holder, every
//! agent's decision reason when it changes, every client write
//! (acknowledged or not), every checker violation, and a closing verdict.
//!
//! Recording only reads the simulation: a traced run takes the same path,
//! and has the same trace hash, as an untraced one. Same seed, same bytes.

use serde::{Deserialize, Serialize};

/// One line of the trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Simulated ms since the cluster started.
    pub t_ms: u64,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum What {
    /// The first line: what ran.
    Start {
        seed: u64,
        nodes: Vec<String>,
        duration_ms: u64,
        config: String,
    },
    /// A fault begins; `node` is the member it hits, if it hits one.
    FaultStart {
        fault: String,
        node: Option<String>,
        detail: String,
        until_ms: u64,
    },
    FaultEnd {
        fault: String,
        node: Option<String>,
        detail: String,
    },
    /// The node's role as its Postgres and agent show it: primary, replica,
    /// starting, stopped, or down (agent process not running).
    Role {
        node: String,
        role: String,
    },
    /// The leader key's holder changed (by etcd's clock).
    LeaderKey {
        holder: Option<String>,
    },
    /// The agent's last decision reason changed.
    Decision {
        node: String,
        reason: String,
    },
    /// A client write through the routed primary (`node`, if any).
    Write {
        ok: bool,
        node: Option<String>,
    },
    /// Anything else the simulator logs (actions and their results).
    Log {
        text: String,
    },
    /// A checker found a violation.
    Violation {
        text: String,
    },
    /// The last line: the checkers' verdict on the run.
    Verdict {
        ok: bool,
        violations: Vec<String>,
    },
}

/// The most events a trace holds (a simulated day writes about 1.8
/// million); past it, a note says the rest was dropped. The verdict is
/// always recorded.
pub const MAX_EVENTS: usize = 2_500_000;

/// Collects the trace during a run.
#[derive(Default)]
pub struct Recorder {
    pub events: Vec<TraceEvent>,
    roles: Vec<String>,
    reasons: Vec<String>,
}

impl Recorder {
    pub fn new(nodes: usize) -> Recorder {
        Recorder {
            events: Vec::new(),
            roles: vec![String::new(); nodes],
            reasons: vec![String::new(); nodes],
        }
    }

    pub fn push(&mut self, t_ms: u64, what: What) {
        if self.events.len() < MAX_EVENTS || matches!(what, What::Verdict { .. }) {
            self.events.push(TraceEvent { t_ms, what });
        } else if self.events.len() == MAX_EVENTS {
            let text = format!("trace full: events after {MAX_EVENTS} dropped");
            self.events.push(TraceEvent { t_ms, what: What::Log { text } });
        }
    }

    /// Records the node's role if it changed since the last sample.
    pub fn role(&mut self, t_ms: u64, i: usize, node: &str, role: &str) {
        if self.roles[i] != role {
            self.roles[i] = role.to_owned();
            self.push(t_ms, What::Role { node: node.to_owned(), role: role.to_owned() });
        }
    }

    /// Records the node's decision reason if it changed.
    pub fn reason(&mut self, t_ms: u64, i: usize, node: &str, reason: &str) {
        if !reason.is_empty() && self.reasons[i] != reason {
            self.reasons[i] = reason.to_owned();
            self.push(t_ms, What::Decision { node: node.to_owned(), reason: reason.to_owned() });
        }
    }

    /// The trace as JSON lines (no trailing newline per line).
    pub fn lines(&self) -> Vec<String> {
        self.events.iter().map(|e| serde_json::to_string(e).expect("trace events serialize")).collect()
    }
}

/// The trace file's text: the lines, each ended by a newline.
pub fn file_text(lines: &[String]) -> String {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// FNV-1a (64 bit) over bytes: the hash `replay` prints for a trace file.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Parses a trace's JSON lines; an unreadable line is an error naming it.
pub fn parse(text: &str) -> Result<Vec<TraceEvent>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("trace line {}: {e}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json_lines() {
        let mut r = Recorder::new(2);
        r.push(0, What::LeaderKey { holder: Some("pg1".into()) });
        r.role(5, 1, "pg2", "replica");
        r.role(6, 1, "pg2", "replica");
        r.reason(7, 0, "pg1", "no action: I hold the lease");
        r.push(9, What::Write { ok: false, node: None });
        let text = file_text(&r.lines());
        assert_eq!(text.lines().count(), 4, "an unchanged role is not recorded again");
        assert!(text.starts_with(r#"{"t_ms":0,"event":"leader-key","holder":"pg1"}"#), "{text}");
        assert_eq!(parse(&text).unwrap(), r.events);
        assert_ne!(hash(text.as_bytes()), hash(b""));
    }

    #[test]
    fn a_bad_line_is_an_error_not_a_panic() {
        let err = parse("{\"t_ms\":1,\"event\":\"log\",\"text\":\"x\"}\nnot json\n").unwrap_err();
        assert!(err.starts_with("trace line 2:"), "{err}");
        assert!(parse(r#"{"t_ms":1,"event":"nonsense"}"#).is_err());
    }
}
