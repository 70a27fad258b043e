//! Where the cluster is: etcd's endpoints and credentials, the scope, and
//! the REST API's credentials, from the configuration file (`-c`, else
//! `PATRONICTL_CONFIG_FILE`) and the command line, which wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{fail, Cli, CtlError};
use crate::api::client::Rest;
use crate::config::{self, Config, EtcdProtocol, RestApi};
use crate::dcs::etcd::{EtcdOptions, EtcdTls};
use crate::dcs::Keys;

/// How long one etcd request may take.
const ETCD_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything keelctl needs to reach the cluster.
#[derive(Clone, Debug)]
pub struct Target {
    pub etcd: EtcdOptions,
    pub scope: String,
    pub keys: Keys,
    /// How to reach the members' REST API: HTTP Basic credentials for the
    /// unsafe endpoints (`ctl.authentication`, else
    /// `restapi.authentication`, as patronictl) and the CA that `https`
    /// members are verified with (`ctl.cacert`, else `restapi.cafile`).
    pub rest: Rest,
    /// Things the operator should hear (the file's warnings).
    pub warnings: Vec<String>,
    /// `$EDITOR`, for `edit-config` without changes on the command line.
    pub editor: Option<String>,
}

impl Target {
    pub fn resolve(cli: &Cli, env: &BTreeMap<String, String>) -> Result<Target, CtlError> {
        let file = cli
            .config_file
            .clone()
            .or_else(|| env.get("PATRONICTL_CONFIG_FILE").filter(|p| !p.is_empty()).map(PathBuf::from));
        let (config, warnings) = match &file {
            Some(path) => {
                let loaded = config::load_for_ctl(path, env)
                    .map_err(|e| CtlError(format!("{}: {e}", path.display())))?;
                (Some(loaded.config), loaded.warnings)
            }
            None => (None, Vec::new()),
        };
        let scope = cli
            .command
            .cluster()
            .or(cli.scope.as_deref())
            .or(config.as_ref().map(|c| c.scope.as_str()))
            .unwrap_or_default()
            .to_owned();
        if scope.is_empty() {
            fail!("which cluster? give -c FILE (its scope), --scope NAME or the cluster's name");
        }
        if scope.contains('/') {
            fail!("the cluster's name must not contain '/', got {scope:?}");
        }
        let namespace = cli
            .namespace
            .clone()
            .or_else(|| config.as_ref().map(|c| c.namespace.clone()))
            .unwrap_or_else(|| config::NAMESPACE_DEFAULT.to_owned());
        let etcd = match (&cli.dcs_url, &config, &file) {
            (Some(urls), config, _) => etcd_from_url(urls, config.as_ref())?,
            (None, Some(config), Some(path)) => etcd_from_config(config, path)?,
            _ => fail!("where is etcd? give -c FILE or --dcs-url http://host:port"),
        };
        let rest = match &config {
            Some(config) => rest_of(config)?,
            None => Rest::default(),
        };
        let editor = env.get("EDITOR").filter(|e| !e.trim().is_empty()).cloned();
        Ok(Target { etcd, keys: Keys::new(&namespace, &scope), scope, rest, warnings, editor })
    }
}

/// patronictl's client settings: `ctl`'s, else the node's `restapi` ones.
/// The client certificate answers members with `verify_client`.
fn rest_of(config: &Config) -> Result<Rest, CtlError> {
    let (ctl, restapi) = (&config.ctl, &config.restapi);
    let auth = ctl.authentication.clone().or_else(|| restapi.authentication.clone());
    let cafile = ctl.cacert.clone().or_else(|| restapi.cafile.clone());
    let (certfile, keyfile) = match &ctl.certfile {
        Some(cert) => (Some(cert.clone()), ctl.keyfile.clone()),
        None => (restapi.certfile.clone(), restapi.keyfile.clone()),
    };
    if ctl.keyfile_password.is_some() {
        fail!("ctl.keyfile_password: encrypted private keys are not supported; decrypt the key");
    }
    let settings = RestApi { cafile, certfile, keyfile, ..RestApi::default() };
    let tls = crate::api::tls::client_config(&settings).map_err(CtlError)?;
    Ok(Rest { auth, tls })
}

/// The `etcd3` section, as the agent reads it.
fn etcd_from_config(config: &Config, path: &Path) -> Result<EtcdOptions, CtlError> {
    let etcd3 = &config.etcd3;
    if etcd3.hosts.is_empty() {
        let file = path.display();
        match config.other_dcs_sections().first() {
            Some(other) => fail!(
                "{file}: no etcd3 section; keel talks to etcd v3 only, not through `{other}`: \
                 add etcd3.hosts or give --dcs-url"
            ),
            None => fail!("{file}: no etcd3 section (etcd3.hosts): add it or give --dcs-url"),
        }
    }
    let https = etcd3.protocol == EtcdProtocol::Https;
    let scheme = if https { "https" } else { "http" };
    Ok(EtcdOptions {
        endpoints: etcd3.hosts.iter().map(|h| format!("{scheme}://{h}")).collect(),
        username: etcd3.username.clone(),
        password: etcd3.password.clone(),
        timeout: ETCD_TIMEOUT,
        tls: https.then(|| tls_of(config)),
    })
}

fn tls_of(config: &Config) -> EtcdTls {
    EtcdTls::of(&config.etcd3)
}

/// `--dcs-url`: comma-separated `http://host:port`, `https://host:port`,
/// `etcd3://host:port` (patronictl's spelling, plain HTTP) or `host:port`.
/// Credentials and certificates still come from the file, if there is one.
fn etcd_from_url(urls: &str, config: Option<&Config>) -> Result<EtcdOptions, CtlError> {
    let mut endpoints = Vec::new();
    let mut https = false;
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let (scheme, address) = match url.split_once("://") {
            Some((scheme, address)) => (scheme, address),
            None => ("http", url),
        };
        let scheme = match scheme {
            "http" | "etcd3" => "http",
            "https" => {
                https = true;
                "https"
            }
            other => fail!("--dcs-url {url:?}: unknown scheme {other:?} (http, https or etcd3)"),
        };
        let address = address.trim_end_matches('/');
        if crate::agent::setup::host_port(address).is_none() {
            fail!("--dcs-url {url:?}: expected host:port after the scheme");
        }
        endpoints.push(format!("{scheme}://{address}"));
    }
    if endpoints.is_empty() {
        fail!("--dcs-url is empty");
    }
    if https && endpoints.iter().any(|e| e.starts_with("http://")) {
        fail!("--dcs-url mixes http and https endpoints");
    }
    Ok(EtcdOptions {
        endpoints,
        username: config.and_then(|c| c.etcd3.username.clone()),
        password: config.and_then(|c| c.etcd3.password.clone()),
        timeout: ETCD_TIMEOUT,
        tls: https.then(|| config.map(tls_of).unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Target, CtlError> {
        let cli = Cli::try_parse_from(args).map_err(|e| CtlError(e.to_string()))?;
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Target::resolve(&cli, &env)
    }

    #[test]
    fn dcs_url_and_scope_need_no_file() {
        let t =
            resolve(&["keelctl", "--dcs-url", "etcd3://127.0.0.1:2379", "--scope", "batman", "list"], &[])
                .unwrap();
        assert_eq!(t.etcd.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(t.keys.leader(), "/service/batman/leader");
        assert!(t.rest.auth.is_none() && t.rest.tls.is_none());
    }

    #[test]
    fn cluster_argument_replaces_the_scope() {
        let t = resolve(&["keelctl", "-d", "127.0.0.1:2379", "--scope", "a", "list", "b"], &[]).unwrap();
        assert_eq!(t.scope, "b");
    }

    #[test]
    fn missing_etcd_scope_or_bad_url_is_one_clear_error() {
        let err = resolve(&["keelctl", "--scope", "a", "list"], &[]).unwrap_err();
        assert_eq!(err.0, "where is etcd? give -c FILE or --dcs-url http://host:port");
        let err = resolve(&["keelctl", "-d", "http://127.0.0.1:2379", "list"], &[]).unwrap_err();
        assert!(err.0.starts_with("which cluster?"), "{err}");
        let err = resolve(&["keelctl", "-d", "ftp://x:1", "--scope", "a", "list"], &[]).unwrap_err();
        assert!(err.0.contains("unknown scheme \"ftp\""), "{err}");
        let err = resolve(&["keelctl", "-d", "http://nohost", "--scope", "a", "list"], &[]).unwrap_err();
        assert!(err.0.contains("expected host:port"), "{err}");
    }

    #[test]
    fn config_file_comes_from_patronictl_config_file() {
        let dir = std::env::temp_dir().join(format!("keelctl-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keel.yml");
        std::fs::write(
            &path,
            "scope: batman\nname: pg1\nrestapi:\n  listen: 127.0.0.1:8008\n  authentication:\n    username: u\n    password: p\n\
             etcd3:\n  hosts: 10.0.0.1:2379,10.0.0.2:2379\n  protocol: https\n  cacert: /ca.pem\n\
             postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /data\n",
        )
        .unwrap();
        let t = resolve(&["keelctl", "list"], &[("PATRONICTL_CONFIG_FILE", path.to_str().unwrap())]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(t.scope, "batman");
        assert_eq!(t.etcd.endpoints, ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]);
        assert_eq!(t.etcd.tls.and_then(|tls| tls.ca), Some(PathBuf::from("/ca.pem")));
        assert_eq!(t.rest.auth.map(|a| a.username), Some("u".to_owned()));
        let err = resolve(&["keelctl", "-c", "/nonexistent/keel.yml", "list"], &[]).unwrap_err();
        assert!(err.0.starts_with("/nonexistent/keel.yml: cannot read"), "{err}");
    }

    #[test]
    fn a_ctl_only_file_is_enough_and_a_missing_dcs_section_is_named() {
        let dir = std::env::temp_dir().join(format!("keelctl-ctl-only-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // patronictl.yaml: no name, no postgresql, no restapi.listen.
        let path = dir.join("patronictl.yaml");
        std::fs::write(
            &path,
            "scope: batman\nnamespace: /db/\netcd3:\n  hosts: [10.0.0.1:2379]\n\
             ctl:\n  authentication:\n    username: admin\n    password: secret\n",
        )
        .unwrap();
        let file = path.to_str().unwrap().to_owned();
        let t = resolve(&["keelctl", "-c", &file, "list"], &[]).unwrap();
        assert_eq!(t.scope, "batman");
        assert_eq!(t.keys.leader(), "/db/batman/leader");
        assert_eq!(t.etcd.endpoints, ["http://10.0.0.1:2379"]);
        assert_eq!(t.rest.auth.map(|a| a.username), Some("admin".to_owned()));

        std::fs::write(&path, "scope: batman\nconsul:\n  host: 10.0.0.1:8500\n").unwrap();
        let err = resolve(&["keelctl", "-c", &file, "list"], &[]).unwrap_err();
        assert_eq!(
            err.0,
            format!(
                "{file}: no etcd3 section; keel talks to etcd v3 only, not through `consul`: add etcd3.hosts or \
                 give --dcs-url"
            )
        );
        std::fs::write(&path, "scope: batman\n").unwrap();
        let err = resolve(&["keelctl", "-c", &file, "list"], &[]).unwrap_err();
        assert_eq!(err.0, format!("{file}: no etcd3 section (etcd3.hosts): add it or give --dcs-url"));
        // --dcs-url names etcd instead.
        let t = resolve(&["keelctl", "-c", &file, "-d", "127.0.0.1:2379", "list"], &[]).unwrap();
        assert_eq!(t.etcd.endpoints, ["http://127.0.0.1:2379"]);
        // What is there is still checked.
        std::fs::write(&path, "scope: a/b\netcd3:\n  hosts: [10.0.0.1:2379]\n").unwrap();
        let err = resolve(&["keelctl", "-c", &file, "list"], &[]).unwrap_err();
        assert_eq!(err.0, format!("{file}: scope: must not contain '/', got \"a/b\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
