//! Patroni's `check_access` for the unsafe methods, in its order:
//! `restapi.allowlist` (and `allowlist_include_members`) by source address
//! → 403 `Access is denied`; over HTTPS with `verify_client` `optional` or
//! `required`, a client certificate → 403 `client certificate required`;
//! then `restapi.authentication` (see `auth`) → 401.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tracing::warn;

use super::auth;
use super::body::text;
use crate::config::{Auth, RestApi, VerifyClient};

/// The connection a request came over, set by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// TLS with a client certificate the server verified.
    pub client_cert: bool,
}

/// What `check_access` needs from `restapi`, replaced on reload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Access {
    pub auth: Option<Auth>,
    /// `restapi.allowlist`, resolved; empty allows every address.
    pub allowlist: Vec<Net>,
    /// Also allow the addresses in the members' `api_url` and `conn_url`.
    pub include_members: bool,
    /// HTTPS with `verify_client` optional or required.
    pub client_cert_needed: bool,
}

impl Access {
    /// From the config. Host names in the allowlist are resolved now, as
    /// Patroni does when it loads it; one that does not resolve is logged
    /// and left out (it could not match anyway).
    pub async fn from_config(restapi: &RestApi) -> Access {
        let mut allowlist = Vec::new();
        for entry in &restapi.allowlist {
            match Net::parse(entry) {
                Some(net) => allowlist.push(net),
                None => {
                    let resolved = resolve(entry).await;
                    if resolved.is_empty() {
                        warn!("restapi.allowlist: {entry:?} is neither an address, a network nor a resolvable host");
                    }
                    allowlist.extend(resolved.into_iter().map(Net::host));
                }
            }
        }
        let https = restapi.certfile.is_some();
        let verify = matches!(restapi.verify_client, Some(VerifyClient::Optional | VerifyClient::Required));
        Access {
            auth: restapi.authentication.clone(),
            allowlist,
            include_members: restapi.allowlist_include_members,
            client_cert_needed: https && verify,
        }
    }

    /// `None` when the request may go on, else the answer. `members` are
    /// the hosts of the members' URLs (only asked for when needed).
    pub async fn check(
        &self,
        peer: Option<Peer>,
        headers: &HeaderMap,
        members: Vec<String>,
    ) -> Option<Response> {
        if !self.allowlist.is_empty() || self.include_members {
            let ip = peer.map(|p| canonical(p.addr.ip()));
            let mut allowed = ip.is_some_and(|ip| self.allowlist.iter().any(|n| n.contains(ip)));
            if let (false, true, Some(ip)) = (allowed, self.include_members, ip) {
                for host in &members {
                    if resolve(host).await.into_iter().any(|m| canonical(m) == ip) {
                        allowed = true;
                        break;
                    }
                }
            }
            if !allowed {
                return Some(text(StatusCode::FORBIDDEN, "Access is denied"));
            }
        }
        if self.client_cert_needed && !peer.is_some_and(|p| p.client_cert) {
            return Some(text(StatusCode::FORBIDDEN, "client certificate required"));
        }
        auth::check(self.auth.as_ref(), headers)
    }
}

/// An address or a network (`10.0.0.0/8`, `::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(text: &str) -> Option<Net> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Net { addr: canonical(addr), prefix })
    }

    fn host(addr: IpAddr) -> Net {
        let addr = canonical(addr);
        Net { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses of a host name or literal (empty when it does not
/// resolve). Asynchronous: the agent shares the thread.
async fn resolve(host: &str) -> Vec<IpAddr> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match tokio::net::lookup_host((host, 0)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The host of a URL (`postgres://u@host:5432/db`, `http://host:8008/x`).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_addresses_in_their_prefix_only() {
        let net = Net::parse("10.1.0.0/16").expect("net");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("ip")), "IPv4-mapped");
        let one = Net::parse("127.0.0.1").expect("host");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        assert!(Net::parse("::1/128").expect("v6").contains("::1".parse().expect("ip")));
        assert!(Net::parse("0.0.0.0/0").expect("all").contains("8.8.8.8".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "example", "10.0.0.0/x", ""] {
            assert_eq!(Net::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn url_hosts_of_member_urls() {
        assert_eq!(url_host("http://10.0.0.5:8008/patroni").as_deref(), Some("10.0.0.5"));
        assert_eq!(url_host("postgres://u:p@db1:5432/postgres").as_deref(), Some("db1"));
        assert_eq!(url_host("https://[::1]:8008/patroni").as_deref(), Some("::1"));
        assert_eq!(url_host("http:///patroni"), None);
    }
}
