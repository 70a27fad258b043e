//! Patroni's key layout: `/<namespace>/<scope>/<key>`.

/// The keys of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `namespace` as Patroni takes it (`/service/`, `service`, `/service`
    /// all mean the same).
    pub fn new(namespace: &str, scope: &str) -> Keys {
        let namespace = namespace.trim_matches('/');
        let prefix =
            if namespace.is_empty() { format!("/{scope}/") } else { format!("/{namespace}/{scope}/") };
        Keys { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn leader(&self) -> String {
        self.key("leader")
    }

    pub fn member(&self, name: &str) -> String {
        self.key(&format!("members/{name}"))
    }

    pub fn config(&self) -> String {
        self.key("config")
    }

    pub fn sync(&self) -> String {
        self.key("sync")
    }

    pub fn failover(&self) -> String {
        self.key("failover")
    }

    pub fn history(&self) -> String {
        self.key("history")
    }

    pub fn initialize(&self) -> String {
        self.key("initialize")
    }

    pub fn status(&self) -> String {
        self.key("status")
    }

    pub fn failsafe(&self) -> String {
        self.key("failsafe")
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The part of `key` after the prefix, if it is one of ours.
    pub fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_slashes_do_not_matter() {
        for ns in ["/service/", "service", "/service", "service/"] {
            assert_eq!(Keys::new(ns, "pgcluster").leader(), "/service/pgcluster/leader");
        }
        assert_eq!(Keys::new("", "c").member("pg1"), "/c/members/pg1");
    }

    #[test]
    fn relative_strips_only_our_prefix() {
        let k = Keys::new("/service/", "a");
        assert_eq!(k.relative("/service/a/members/x"), Some("members/x"));
        assert_eq!(k.relative("/service/ab/leader"), None);
    }
}
