//! Client configuration: insecure registries, mirrors, where Docker's config lives, and img's
//! own `config.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// Pull-through mirrors per registry host (`docker.io` -> `["localhost:5001"]`). A mirror is
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

/// Why img's config file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, with line and column.
        #[source]
        source: toml::de::Error,
    },
}

/// The on-disk shape of `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    #[serde(default)]
    insecure_registries: Vec<String>,
    #[serde(default)]
    registry: BTreeMap<String, RegistryEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryEntry {
    #[serde(default)]
    mirrors: Vec<String>,
    #[serde(default)]
    insecure: bool,
}

impl ClientConfig {
    /// Where img's config file is: `$XDG_CONFIG_HOME/img/config.toml`, else
    /// `~/.config/img/config.toml`.
    pub fn default_file_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home_dir().map(|h| h.join(".config")))?;
        Some(base.join("img").join("config.toml"))
    }

    /// Adds the settings of an img config file. A missing file is not an error.
    ///
    /// ```toml
    /// insecure-registries = ["registry.lan:5000"]
    ///
    /// [registry."docker.io"]
    /// mirrors = ["http://localhost:5001"]
    ///
    /// [registry."build.lan:5000"]
    /// insecure = true
    /// ```
    pub fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let file: FileConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        self.insecure_registries.extend(file.insecure_registries);
        for (name, entry) in file.registry {
            let host = normalize_registry(&name);
            if entry.insecure {
                self.insecure_registries.push(host.clone());
            }
            if !entry.mirrors.is_empty() {
                self.mirrors.entry(host).or_default().extend(entry.mirrors);
            }
        }
        Ok(())
    }

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

    #[test]
    fn reads_config_file() {
        let dir = std::env::temp_dir().join(format!("img-registry-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            "insecure-registries = [\"a.lan:1\"]\n[registry.\"docker.io\"]\nmirrors = [\"http://localhost:5001\"]\n[registry.\"b.lan\"]\ninsecure = true\n",
        )
        .unwrap();
        let mut cfg = ClientConfig::default();
        cfg.merge_file(&path).unwrap();
        assert_eq!(cfg.insecure_registries, ["a.lan:1", "b.lan"]);
        assert_eq!(cfg.mirrors["docker.io"], ["http://localhost:5001"]);

        std::fs::write(&path, "[registry.\"x\"]\nmirror = []\n").unwrap();
        let err = cfg.merge_file(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        cfg.merge_file(&dir.join("missing.toml")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
