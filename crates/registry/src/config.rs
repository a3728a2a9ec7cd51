//! Client configuration: insecure registries, mirrors, where Docker's config lives.
//!
//! Plain settings handed in by the caller: where they come from (img's own config file, flags)
//! is the caller's business. Only Docker's `config.json` is found here by default, since its
//! place (`$DOCKER_CONFIG`, else `~/.docker`) is Docker's convention that every client follows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::reference::normalize_registry;

/// How many blobs are transferred at once by default (Docker's default is 3 for pushes and
/// 3 for pulls; 4 keeps a 2-core machine busy without starving the registry).
pub const DEFAULT_CONCURRENT_TRANSFERS: usize = 4;

/// Settings for a [`Client`](crate::Client).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Registries (`host` or `host:port`) reached over plain HTTP (after trying HTTPS without
    /// certificate verification, as Docker does). Loopback registries need not be listed.
    pub insecure_registries: Vec<String>,
    /// Pull-through mirrors per registry host, keyed as [`normalize_registry`] names it
    /// (`docker.io` -> `["localhost:5001"]`). A mirror is
    /// `host[:port]`, optionally with `http://` or `https://`. Mirrors are tried in order for
    /// pulls, then the registry itself; pushes always go to the registry.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Directory holding Docker's `config.json`; `None` means `$DOCKER_CONFIG`, else
    /// `~/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    /// The User-Agent header sent to registries.
    pub user_agent: String,
    /// How many blobs are transferred in parallel (at least 1).
    pub max_concurrent_transfers: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            mirrors: BTreeMap::new(),
            docker_config_dir: None,
            user_agent: concat!("img/", env!("CARGO_PKG_VERSION")).to_string(),
            max_concurrent_transfers: DEFAULT_CONCURRENT_TRANSFERS,
        }
    }
}

impl ClientConfig {
    /// The directory of Docker's `config.json`.
    pub(crate) fn docker_config_dir(&self) -> Option<PathBuf> {
        self.docker_config_dir
            .clone()
            .or_else(|| {
                std::env::var_os("DOCKER_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| home_dir().map(|h| h.join(".docker")))
    }

    /// Whether `registry` may be reached over plain HTTP: listed (exactly, or by host name
    /// when the entry has no port), or a loopback address as Docker allows by default.
    pub(crate) fn is_insecure(&self, registry: &str) -> bool {
        let host = host_part(registry);
        is_loopback(host)
            || self
                .insecure_registries
                .iter()
                .map(|e| normalize_registry(e))
                .any(|e| {
                    e == registry || (!e.contains(':') && e == host) || e == format!("[{host}]")
                })
    }
}

/// The host of `host[:port]`, without IPv6 brackets.
pub(crate) fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// localhost, 127.0.0.0/8 and ::1: Docker treats these as insecure registries by default.
pub(crate) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_hosts() {
        let cfg = ClientConfig {
            insecure_registries: vec!["reg.lan:5000".into(), "other.lan".into()],
            ..ClientConfig::default()
        };
        // registry | plain HTTP allowed
        for (registry, want) in [
            ("localhost:5000", true),
            ("localhost", true),
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("[::1]:5000", true),
            ("reg.lan:5000", true),
            ("reg.lan:5001", false),
            ("other.lan:7000", true),
            ("docker.io", false),
            ("10.0.0.1:5000", false),
        ] {
            assert_eq!(cfg.is_insecure(registry), want, "{registry}");
        }
    }
}
