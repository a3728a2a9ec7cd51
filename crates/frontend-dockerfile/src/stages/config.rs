//! The image config a stage describes, in the JSON shape of the OCI image config with Docker's
//! extensions (`Healthcheck`, `OnBuild`, `Shell`), which `docker inspect` and BuildKit write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `PATH` for Linux images whose base config has none (BuildKit's `system.DefaultPathEnv`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The comment BuildKit puts on every history entry of a Dockerfile build.
pub(crate) const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// An image config: the part a Dockerfile describes plus the history. `rootfs` and `created`
/// belong to the exporter, which knows the layers and the time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageConfig {
    /// `author` (set by MAINTAINER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// `architecture`.
    #[serde(default)]
    pub architecture: String,
    /// `os`.
    #[serde(default)]
    pub os: String,
    /// `variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `config`: what a container of this image runs with.
    #[serde(default)]
    pub config: ContainerConfig,
    /// `history`, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// The `config` object of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ContainerConfig {
    /// `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ExposedPorts`: `"80/tcp": {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// `Env`: `KEY=value`, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `Entrypoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `Volumes`: `"/data": {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// `WorkingDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `Labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `StopSignal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `Healthcheck` (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthcheckConfig>,
    /// `OnBuild`: trigger texts (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// `Shell` (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// `ArgsEscaped` (Docker extension, Windows only; kept when a base image has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
}

/// The empty JSON object used as the value of `ExposedPorts` and `Volumes` entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `Healthcheck`, durations in nanoseconds as Docker stores them; zero means the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct HealthcheckConfig {
    /// `["NONE"]`, `["CMD", exe, args...]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// `Interval`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    /// `Timeout`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    /// `StartPeriod`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    /// `StartInterval`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    /// `Retries`.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// `created`, RFC 3339; set by the exporter (or `SOURCE_DATE_EPOCH`), kept from base images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `created_by`: the instruction, as BuildKit words it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    /// `comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `empty_layer`: true when the instruction adds no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl HistoryEntry {
    /// An entry for an instruction of this build.
    pub(crate) fn new(created_by: String, empty_layer: bool) -> HistoryEntry {
        HistoryEntry {
            created: None,
            created_by,
            comment: Some(HISTORY_COMMENT.to_string()),
            empty_layer,
        }
    }
}

impl ContainerConfig {
    /// The value of `key` in `Env`.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .as_ref()?
            .iter()
            .find_map(|kv| match kv.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if kv == key => Some(""),
                _ => None,
            })
    }

    /// Sets `key` in `Env`, in place when it is there already (Docker keeps the order).
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }

    /// The `Env` entries as pairs.
    pub(crate) fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_docker_field_names() {
        let mut config = ContainerConfig::default();
        config.set_env("PATH", DEFAULT_PATH);
        config.set_env("A", "1");
        config.set_env("PATH", "/bin");
        config.exposed_ports = Some(BTreeMap::from([("80/tcp".to_string(), Empty {})]));
        config.healthcheck = Some(HealthcheckConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 30_000_000_000,
            retries: 3,
            ..HealthcheckConfig::default()
        });
        config.on_build = Some(vec!["RUN x".into()]);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Env": ["PATH=/bin", "A=1"],
                "ExposedPorts": {"80/tcp": {}},
                "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000u64, "Retries": 3},
                "OnBuild": ["RUN x"],
            })
        );
        assert_eq!(config.env_value("A"), Some("1"));
    }

    #[test]
    fn reads_a_docker_image_config() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/x"],"Cmd":["sh"],
            "OnBuild":null,"Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":[]},
            "history":[{"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop) CMD [\"sh\"]","empty_layer":true}]}"#;
        let image: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(image.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(image.history.len(), 1);
        assert!(image.history[0].empty_layer);
    }
}
