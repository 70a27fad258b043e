//! Readers for values that Patroni itself reads leniently.
//!
//! Patroni parses most numbers with `parse_int` and most switches with
//! `parse_bool` (`patroni/utils.py`), so `"30"` is a valid `ttl` and `"on"` a
//! valid `failsafe_mode`, in the YAML file and in etcd's `config` key alike.
//! keel accepts the same spellings so that a configuration written by Patroni
//! tools never fails to load, and rejects everything else with the key's path.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Unexpected, Visitor};

/// Patroni's `parse_bool`: the spellings of a switch, case-insensitive.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// An integer, or a string holding one (`ttl: "30"`). Floats are refused:
/// every integer option counts whole seconds or bytes.
pub(crate) fn int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(IntVisitor)
}

/// Like [`int`], for options whose absence means something.
pub(crate) fn opt_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptIntVisitor)
}

/// A boolean in any of Patroni's spellings; `null` counts as false, as
/// Patroni's `bool(None)` does.
pub(crate) fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    deserializer.deserialize_any(FlagVisitor)
}

/// A list of `host:port` strings, as a YAML list or one comma-separated
/// string (Patroni's `hosts` in the `etcd`/`etcd3` sections).
pub(crate) fn host_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_any(HostListVisitor)
}

/// A path where Patroni treats the empty string as "not set" (`bin_dir: ''`,
/// `certfile: ''`).
pub(crate) fn opt_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.filter(|t| !t.is_empty()).map(PathBuf::from))
}

struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.trim().parse::<i64>().map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }
}

struct OptIntVisitor;

impl<'de> Visitor<'de> for OptIntVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<i64>, D::Error> {
        int(deserializer).map(Some)
    }
}

struct FlagVisitor;

impl<'de> Visitor<'de> for FlagVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean (true/false, on/off, yes/no, 1/0)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        parse_bool(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
    }
}

struct HostListVisitor;

impl<'de> Visitor<'de> for HostListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of host:port, or one comma-separated string of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        Ok(v.split(',').map(str::trim).filter(|h| !h.is_empty()).map(String::from).collect())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut hosts = Vec::new();
        while let Some(host) = seq.next_element::<String>()? {
            hosts.push(host.trim().to_string());
        }
        Ok(hosts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patroni_bool_spellings_parse_and_others_do_not() {
        for yes in ["on", "TRUE", "Yes", "1", " true "] {
            assert_eq!(parse_bool(yes), Some(true), "{yes}");
        }
        for no in ["off", "False", "NO", "0"] {
            assert_eq!(parse_bool(no), Some(false), "{no}");
        }
        for other in ["", "2", "enabled", "quorum"] {
            assert_eq!(parse_bool(other), None, "{other}");
        }
    }

    #[test]
    fn integer_strings_are_integers_but_floats_are_not() {
        assert_eq!(int(json!(30)).ok(), Some(30));
        assert_eq!(int(json!(-1)).ok(), Some(-1));
        assert_eq!(int(json!(" 30 ")).ok(), Some(30));
        assert!(int(json!(30.5)).is_err());
        assert!(int(json!("abc")).is_err());
        assert!(int(json!(u64::MAX)).is_err());
        assert!(int(json!(true)).is_err());
    }

    #[test]
    fn hosts_come_from_a_list_or_a_comma_separated_string() {
        let from_text = host_list(json!("a:2379, b:2379,,")).ok();
        assert_eq!(from_text, Some(vec!["a:2379".to_string(), "b:2379".to_string()]));
        let from_list = host_list(json!(["a:2379", "b:2379"])).ok();
        assert_eq!(from_list, Some(vec!["a:2379".to_string(), "b:2379".to_string()]));
        assert!(host_list(json!(5)).is_err());
    }

    #[test]
    fn empty_path_means_unset() {
        assert_eq!(opt_path(json!("")).ok(), Some(None));
        assert_eq!(opt_path(json!("/usr/bin")).ok(), Some(Some(PathBuf::from("/usr/bin"))));
    }
}
