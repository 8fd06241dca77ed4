//! What every egress enforcement point (the HTTP proxy in `egress`, the
//! per-connection path in `l4`, the DNS answers in `dns`) shares on the
//! host side: name resolution, and the event each decision produces for
//! the audit log and metrics.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;

pub type Lookup<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Name resolution on the host side.
pub trait Resolve: Send + Sync {
    fn lookup<'a>(&'a self, name: &'a str) -> Lookup<'a>;
}

/// The host's resolver.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, name: &'a str) -> Lookup<'a> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// The host's resolver, with operator-set answers for some names
/// (`egress_hosts`).
pub struct HostResolver {
    pub overrides: std::collections::HashMap<String, Vec<IpAddr>>,
}

impl Resolve for HostResolver {
    fn lookup<'a>(&'a self, name: &'a str) -> Lookup<'a> {
        match self.overrides.get(name) {
            Some(ips) => Box::pin(std::future::ready(Ok(ips.clone()))),
            None => SystemResolver.lookup(name),
        }
    }
}

/// One decision the proxy made, for the audit log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub destination: String,
    pub allowed: bool,
    pub rule: Option<String>,
    pub reason: String,
}
