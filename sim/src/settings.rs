//! Cluster settings from the command line (`--set KEY=VALUE`,
//! `--tag NODE:KEY=VALUE`, `--names A,B,C`), over the ones the seed draws.
//!
//! A setting given wins over the seed's draw; every other setting still
//! comes from the seed, so `run --seed S --set ttl=30` is seed S with the
//! guide's lease. Each value is checked here for its type (one clear line
//! for a bad one); whether the combination is one the agent accepts is
//! the agent's own configuration check, run on the simulated nodes' YAML
//! before the run starts.

use std::fmt;

/// The settings `--set` may give, with the type of their value: the
/// dynamic ones (`bootstrap.dcs`) and the two local
/// `postgresql.remove_data_directory_on_*`. Seconds and bytes as Patroni
/// writes them.
pub const KEYS: &[(&str, Kind)] = &[
    ("ttl", Kind::Int),
    ("loop_wait", Kind::Int),
    ("retry_timeout", Kind::Int),
    ("maximum_lag_on_failover", Kind::Int),
    ("synchronous_mode", Kind::SyncMode),
    ("synchronous_mode_strict", Kind::Bool),
    ("synchronous_node_count", Kind::Int),
    ("failsafe_mode", Kind::Bool),
    ("use_pg_rewind", Kind::Bool),
    ("primary_start_timeout", Kind::Int),
    ("check_timeline", Kind::Bool),
    ("max_clock_drift", Kind::Fraction),
    ("remove_data_directory_on_rewind_failure", Kind::Bool),
    ("remove_data_directory_on_diverged_timelines", Kind::Bool),
];

/// The per-node tags `--tag` may give.
pub const TAGS: &[(&str, Kind)] = &[
    ("nofailover", Kind::Bool),
    ("nosync", Kind::Bool),
    ("failover_priority", Kind::Int),
    ("sync_priority", Kind::Int),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bool,
    /// `true`, `false` or `quorum`.
    SyncMode,
    /// A fraction such as 0.01.
    Fraction,
}

/// A checked value, written back as the YAML (and the flag) spells it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Quorum,
    Fraction(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Quorum => f.write_str("quorum"),
            Value::Fraction(x) => write!(f, "{x}"),
        }
    }
}

impl Value {
    fn parse(kind: Kind, text: &str) -> Result<Value, String> {
        let bool_of = |text: &str| match text {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        match kind {
            Kind::Int => text.parse().map(Value::Int).map_err(|_| format!("{text:?} is not an integer")),
            Kind::Bool => {
                bool_of(text).map(Value::Bool).ok_or_else(|| format!("{text:?} is not true or false"))
            }
            Kind::SyncMode if text == "quorum" => Ok(Value::Quorum),
            Kind::SyncMode => {
                bool_of(text).map(Value::Bool).ok_or_else(|| format!("{text:?} is not true, false or quorum"))
            }
            Kind::Fraction => match text.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Value::Fraction(x)),
                _ => Err(format!("{text:?} is not a number")),
            },
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// One `--set KEY=VALUE`.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub key: &'static str,
    pub value: Value,
}

/// One `--tag NODE:KEY=VALUE`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tag {
    pub node: String,
    pub key: &'static str,
    pub value: Value,
}

fn key_value(text: &str, keys: &[(&'static str, Kind)]) -> Result<(&'static str, Value), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    let Some((key, kind)) = keys.iter().find(|(k, _)| *k == key) else {
        let known: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        return Err(format!("unknown key {key:?} (known: {})", known.join(", ")));
    };
    Ok((key, Value::parse(*kind, value).map_err(|e| format!("{key}: {e}"))?))
}

/// `--set`'s parser.
pub fn parse_set(text: &str) -> Result<Setting, String> {
    key_value(text, KEYS).map(|(key, value)| Setting { key, value })
}

/// `--tag`'s parser (the node name is checked against the cluster's later).
pub fn parse_tag(text: &str) -> Result<Tag, String> {
    let (node, rest) = text.split_once(':').ok_or_else(|| format!("{text:?} is not NODE:KEY=VALUE"))?;
    if node.is_empty() {
        return Err(format!("{text:?} names no node"));
    }
    key_value(rest, TAGS).map(|(key, value)| Tag { node: node.to_owned(), key, value })
}

/// `--names`' parser: one name, the characters a member name and a data
/// directory may hold.
pub fn parse_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a member name (letters, digits, - and _, at most 63)"))
    }
}

/// What the command line sets over the seed's draws.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub set: Vec<Setting>,
    pub tags: Vec<Tag>,
    pub names: Option<Vec<String>>,
}

impl Overrides {
    /// The value `--set` gave `key` (the last one given wins).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.set.iter().rev().find(|s| s.key == key).map(|s| &s.value)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_int)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }

    /// The member names: `--names`, or pg1 .. pgN.
    pub fn member_names(&self, nodes: usize) -> Vec<String> {
        self.names.clone().unwrap_or_else(|| (1..=nodes).map(|i| format!("pg{i}")).collect())
    }

    /// Checks what the values alone cannot: the names are distinct and as
    /// many as the cluster's nodes, and every tag names one of them.
    pub fn check(&self, nodes: usize) -> Result<(), String> {
        if let Some(names) = &self.names {
            if names.len() != nodes {
                return Err(format!("--names gives {} names for a {nodes}-node cluster", names.len()));
            }
            if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
                return Err(format!("--names gives {:?} twice", dup.1));
            }
        }
        let names = self.member_names(nodes);
        if let Some(tag) = self.tags.iter().find(|t| !names.contains(&t.node)) {
            return Err(format!("--tag {}:{}: no member is named {:?}", tag.node, tag.key, tag.node));
        }
        Ok(())
    }

    /// The flags that give these settings again (for a replay command).
    pub fn flags(&self) -> String {
        let mut line = String::new();
        if let Some(names) = &self.names {
            line.push_str(&format!(" --names {}", names.join(",")));
        }
        for s in &self.set {
            line.push_str(&format!(" --set {}={}", s.key, s.value));
        }
        for t in &self.tags {
            line.push_str(&format!(" --tag {}:{}={}", t.node, t.key, t.value));
        }
        line
    }

    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_for_their_type_and_keys_for_their_name() {
        assert_eq!(parse_set("ttl=30").unwrap(), Setting { key: "ttl", value: Value::Int(30) });
        assert_eq!(parse_set("synchronous_mode=quorum").unwrap().value, Value::Quorum);
        assert_eq!(parse_set("max_clock_drift=0.01").unwrap().value, Value::Fraction(0.01));
        assert!(parse_set("ttl=thirty").unwrap_err().contains("\"thirty\" is not an integer"));
        assert!(parse_set("ttl").unwrap_err().contains("is not KEY=VALUE"));
        assert!(parse_set("tll=30").unwrap_err().starts_with("unknown key \"tll\""));
        assert!(parse_set("failsafe_mode=yes").unwrap_err().contains("not true or false"));
        let tag = parse_tag("pg2:nofailover=true").unwrap();
        assert_eq!((tag.node.as_str(), tag.key, tag.value), ("pg2", "nofailover", Value::Bool(true)));
        assert!(parse_tag("nofailover=true").is_err());
        assert!(parse_tag("pg2:clonefrom=true").unwrap_err().starts_with("unknown key"));
        assert!(parse_name("pg 1").is_err());
    }

    #[test]
    fn names_and_tags_must_fit_the_cluster_and_flags_give_them_back() {
        let o = Overrides {
            set: vec![parse_set("ttl=30").unwrap(), parse_set("ttl=40").unwrap()],
            tags: vec![parse_tag("b:failover_priority=0").unwrap()],
            names: Some(vec!["a".into(), "b".into()]),
        };
        assert_eq!(o.int("ttl"), Some(40), "the last --set of a key wins");
        assert!(o.check(2).is_ok());
        assert!(o.check(3).unwrap_err().contains("2 names for a 3-node cluster"));
        let stray = Overrides { tags: vec![parse_tag("pg9:nosync=true").unwrap()], ..Overrides::default() };
        assert!(stray.check(3).unwrap_err().contains("no member is named \"pg9\""));
        let twice = Overrides { names: Some(vec!["a".into(), "a".into()]), ..Overrides::default() };
        assert!(twice.check(2).unwrap_err().contains("\"a\" twice"));
        assert_eq!(o.flags(), " --names a,b --set ttl=30 --set ttl=40 --tag b:failover_priority=0");
    }
}
