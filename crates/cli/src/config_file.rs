//! img's own config file: `$XDG_CONFIG_HOME/img/config.toml`, else `~/.config/img/config.toml`.
//!
//! The CLI owns the file, its place and its shape; libraries receive plain settings (the
//! registry client a `ClientConfig`). Today it holds registry settings only:
//!
//! ```toml
//! insecure-registries = ["registry.lan:5000"]
//!
//! [registry."docker.io"]
//! mirrors = ["http://localhost:5001"]   # tried in order for pulls, then docker.io itself
//!
//! [registry."build.lan:5000"]
//! insecure = true
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use img_registry::{normalize_registry, ClientConfig};
use serde::Deserialize;

/// The on-disk shape. Unknown keys are refused, so a misspelt setting is reported rather than
/// silently doing nothing.
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

/// Where the file is looked for: `$XDG_CONFIG_HOME/img/config.toml`, else
/// `$HOME/.config/img/config.toml`; `None` when neither variable is set.
pub fn default_path() -> Option<PathBuf> {
    let base = non_empty_var("XDG_CONFIG_HOME")
        .or_else(|| non_empty_var("HOME").map(|home| home.join(".config")))?;
    Some(base.join("img").join("config.toml"))
}

/// Adds the registry settings of the file at `path` to `registry`. A missing file is not an
/// error: every setting in it is optional.
pub fn load_into(registry: &mut ClientConfig, path: &Path) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read img's config file {}", path.display()))
        }
    };
    apply(registry, &text).with_context(|| {
        format!(
            "invalid img config file {}: expected `insecure-registries = [...]` and \
             `[registry.\"HOST\"]` tables with `mirrors` and `insecure`",
            path.display()
        )
    })
}

/// Parses the file's text into `registry` (the TOML error says the line and column).
fn apply(registry: &mut ClientConfig, text: &str) -> Result<(), toml::de::Error> {
    let file: FileConfig = toml::from_str(text)?;
    registry
        .insecure_registries
        .extend(file.insecure_registries);
    for (name, entry) in file.registry {
        // `index.docker.io` and `https://index.docker.io/v1/` mean `docker.io`, as for login.
        let host = normalize_registry(&name);
        if entry.insecure {
            registry.insecure_registries.push(host.clone());
        }
        if !entry.mirrors.is_empty() {
            registry
                .mirrors
                .entry(host)
                .or_default()
                .extend(entry.mirrors);
        }
    }
    Ok(())
}

fn non_empty_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mirrors_and_insecure_registries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "insecure-registries = [\"a.lan:1\"]\n\
             [registry.\"index.docker.io\"]\nmirrors = [\"http://localhost:5001\"]\n\
             [registry.\"b.lan\"]\ninsecure = true\n",
        )
        .unwrap();
        let mut cfg = ClientConfig::default();
        load_into(&mut cfg, &path).unwrap();
        assert_eq!(cfg.insecure_registries, ["a.lan:1", "b.lan"]);
        assert_eq!(cfg.mirrors["docker.io"], ["http://localhost:5001"]);
    }

    #[test]
    fn a_missing_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ClientConfig::default();
        load_into(&mut cfg, &dir.path().join("missing.toml")).unwrap();
        assert!(cfg.insecure_registries.is_empty() && cfg.mirrors.is_empty());
    }

    #[test]
    fn a_misspelt_key_is_reported_with_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[registry.\"x\"]\nmirror = []\n").unwrap();
        let err = load_into(&mut ClientConfig::default(), &path).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("unknown field `mirror`"), "{msg}");
    }
}
