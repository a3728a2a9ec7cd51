//! Credentials from Docker's `config.json` and `docker-credential-*` helpers, read and written
//! exactly where Docker reads and writes them.
//!
//! Lookup order is Docker's: `credHelpers[key]`, else `credsStore`, else the `auths` entry
//! (base64 `auth` or `username`/`password`, plus `identitytoken`). The key is the registry host,
//! except Docker Hub whose key is `https://index.docker.io/v1/`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::reference::{DOCKER_HUB, DOCKER_HUB_CONFIG_KEY};

/// A string that must never be shown: its `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A user name with its password or identity token. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: Secret,
    identity_token: Option<Secret>,
}

impl Credentials {
    /// A user name and password.
    pub fn new(username: &str, password: &str) -> Self {
        Credentials {
            username: username.to_string(),
            password: Secret::new(password),
            identity_token: None,
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn password(&self) -> &str {
        self.password.expose()
    }

    /// An OAuth2 refresh token (`identitytoken`) to use instead of the password.
    pub(crate) fn identity_token(&self) -> Option<&str> {
        self.identity_token.as_ref().map(Secret::expose)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why credentials cannot be read or stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// `config.json` exists but cannot be read.
    #[error("cannot read Docker config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON of the expected shape.
    #[error("invalid Docker config {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An `auth` field is not base64 of `user:password`.
    #[error("invalid `auth` entry for {key} in {path}: expected base64 of user:password")]
    BadAuthField {
        /// The file.
        path: PathBuf,
        /// The `auths` key.
        key: String,
    },
    /// Neither `DOCKER_CONFIG` nor `HOME` says where Docker's config lives.
    #[error("cannot locate Docker's config.json: set DOCKER_CONFIG or HOME")]
    NoConfigDir,
    /// `config.json` cannot be written.
    #[error("cannot write Docker config {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The credential helper program cannot be started.
    #[error("cannot run credential helper {program} (is it installed and in PATH?)")]
    HelperSpawn {
        /// The program (`docker-credential-NAME`).
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The credential helper failed.
    #[error("credential helper {program} {action} failed ({status}): {message}")]
    Helper {
        /// The program.
        program: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed (helpers print errors on stdout).
        message: String,
    },
    /// The credential helper printed something that is not the expected JSON.
    #[error("credential helper {program} printed invalid output")]
    HelperOutput {
        /// The program.
        program: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// The key Docker files credentials under for a registry host.
pub(crate) fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// Docker's `ConvertToHostname`: drop the scheme and anything after the host.
fn convert_to_hostname(key: &str) -> &str {
    let s = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"))
        .unwrap_or(key);
    s.split('/').next().unwrap_or(s)
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// Docker's `config.json` in one directory.
pub(crate) struct DockerConfig {
    path: PathBuf,
    raw: serde_json::Value,
    file: ConfigFile,
}

impl DockerConfig {
    /// Loads `dir/config.json`; a missing file is an empty config.
    pub(crate) fn load(dir: &Path) -> Result<Self, CredentialsError> {
        let path = dir.join("config.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => b"{}".to_vec(),
            Err(source) => return Err(CredentialsError::Read { path, source }),
        };
        let parse = |source| CredentialsError::Parse {
            path: path.clone(),
            source,
        };
        let raw: serde_json::Value = serde_json::from_slice(&bytes).map_err(parse)?;
        let file: ConfigFile = serde_json::from_value(raw.clone()).map_err(parse)?;
        Ok(DockerConfig { path, raw, file })
    }

    /// The helper responsible for `key`, if any (`credHelpers` wins over `credsStore`).
    fn helper_for(&self, key: &str) -> Option<&str> {
        self.file
            .cred_helpers
            .get(key)
            .or(self.file.creds_store.as_ref())
            .map(String::as_str)
            .filter(|h| !h.is_empty())
    }

    /// The credentials Docker would use for `registry`, if any.
    pub(crate) fn lookup(&self, registry: &str) -> Result<Option<Credentials>, CredentialsError> {
        let key = config_key(registry);
        if let Some(helper) = self.helper_for(&key) {
            return helper_get(helper, &key);
        }
        let entry = self
            .file
            .auths
            .get(&key)
            .map(|e| (key.as_str(), e))
            .or_else(|| {
                self.file
                    .auths
                    .iter()
                    .find(|(k, _)| convert_to_hostname(k) == key)
                    .map(|(k, e)| (k.as_str(), e))
            });
        let Some((found_key, entry)) = entry else {
            return Ok(None);
        };
        let (username, password) = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
            Some(auth) => {
                let bad = || CredentialsError::BadAuthField {
                    path: self.path.clone(),
                    key: found_key.to_string(),
                };
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| bad())?;
                let text = String::from_utf8(decoded).map_err(|_| bad())?;
                let (u, p) = text.split_once(':').ok_or_else(bad)?;
                (u.to_string(), p.to_string())
            }
            None => (
                entry.username.clone().unwrap_or_default(),
                entry.password.clone().unwrap_or_default(),
            ),
        };
        let identity_token = entry
            .identitytoken
            .clone()
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        if username.is_empty() && password.is_empty() && identity_token.is_none() {
            return Ok(None);
        }
        Ok(Some(Credentials {
            username,
            password: Secret::new(password),
            identity_token,
        }))
    }

    /// Stores credentials where Docker would: the helper (plus an empty `auths` entry, as
    /// Docker keeps one to remember the login), or base64 `auth` in `config.json` (mode 0600).
    pub(crate) fn store(
        &mut self,
        registry: &str,
        creds: &Credentials,
    ) -> Result<(), CredentialsError> {
        let key = config_key(registry);
        let entry = match self.helper_for(&key) {
            Some(helper) => {
                helper_store(helper, &key, creds)?;
                serde_json::json!({})
            }
            None => {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    creds.username,
                    creds.password()
                ));
                match creds.identity_token() {
                    Some(t) => serde_json::json!({ "auth": auth, "identitytoken": t }),
                    None => serde_json::json!({ "auth": auth }),
                }
            }
        };
        self.auths_mut().insert(key, entry);
        self.save()
    }

    /// Removes credentials for `registry`; returns whether any were present in the file or
    /// the helper.
    pub(crate) fn erase(&mut self, registry: &str) -> Result<bool, CredentialsError> {
        let key = config_key(registry);
        let mut erased = false;
        if let Some(helper) = self.helper_for(&key).map(str::to_string) {
            erased |= helper_erase(&helper, &key)?;
        }
        let auths = self.auths_mut();
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| **k == key || convert_to_hostname(k) == key)
            .cloned()
            .collect();
        for k in &keys {
            auths.remove(k);
        }
        if !keys.is_empty() {
            erased = true;
            self.save()?;
        }
        Ok(erased)
    }

    fn auths_mut(&mut self) -> &mut serde_json::Map<String, serde_json::Value> {
        if !self.raw.is_object() {
            self.raw = serde_json::json!({});
        }
        let obj = self.raw.as_object_mut().expect("made an object above");
        let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
        if !auths.is_object() {
            *auths = serde_json::json!({});
        }
        auths.as_object_mut().expect("made an object above")
    }

    /// Writes `config.json` atomically with mode 0600, as Docker does: it holds secrets.
    fn save(&self) -> Result<(), CredentialsError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let write_err = |source| CredentialsError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(write_err)?;
        let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut text = serde_json::to_vec_pretty(&self.raw).map_err(std::io::Error::other)?;
            text.push(b'\n');
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(write_err)
    }
}

#[derive(Serialize, Deserialize)]
struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The user name helpers use to say "the secret is an identity token".
const TOKEN_USERNAME: &str = "<token>";

fn run_helper(
    helper: &str,
    action: &'static str,
    input: &[u8],
) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>), CredentialsError> {
    let program = format!("docker-credential-{helper}");
    let spawn_err = |source| CredentialsError::HelperSpawn {
        program: program.clone(),
        source,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is not an error in itself: its exit
        // status says what happened.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    Ok((out.status, out.stdout, out.stderr))
}

fn helper_failure(
    helper: &str,
    action: &'static str,
    status: std::process::ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> CredentialsError {
    let text = if stdout.iter().any(|b| !b.is_ascii_whitespace()) {
        stdout
    } else {
        stderr
    };
    CredentialsError::Helper {
        program: format!("docker-credential-{helper}"),
        action,
        status,
        message: String::from_utf8_lossy(text).trim().to_string(),
    }
}

fn is_not_found(stdout: &[u8]) -> bool {
    String::from_utf8_lossy(stdout).contains("credentials not found")
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credentials>, CredentialsError> {
    let (status, stdout, stderr) = run_helper(helper, "get", key.as_bytes())?;
    if !status.success() {
        if is_not_found(&stdout) {
            return Ok(None);
        }
        return Err(helper_failure(helper, "get", status, &stdout, &stderr));
    }
    let creds: HelperCredentials =
        serde_json::from_slice(&stdout).map_err(|source| CredentialsError::HelperOutput {
            program: format!("docker-credential-{helper}"),
            source,
        })?;
    if creds.username == TOKEN_USERNAME {
        return Ok(Some(Credentials {
            username: String::new(),
            password: Secret::new(""),
            identity_token: Some(Secret::new(creds.secret)),
        }));
    }
    if creds.username.is_empty() && creds.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(&creds.username, &creds.secret)))
}

fn helper_store(helper: &str, key: &str, creds: &Credentials) -> Result<(), CredentialsError> {
    let (username, secret) = match creds.identity_token() {
        Some(t) => (TOKEN_USERNAME.to_string(), t.to_string()),
        None => (creds.username.clone(), creds.password().to_string()),
    };
    let input = serde_json::to_vec(&HelperCredentials {
        server_url: key.to_string(),
        username,
        secret,
    })
    .map_err(|source| CredentialsError::HelperOutput {
        program: format!("docker-credential-{helper}"),
        source,
    })?;
    let (status, stdout, stderr) = run_helper(helper, "store", &input)?;
    if !status.success() {
        return Err(helper_failure(helper, "store", status, &stdout, &stderr));
    }
    Ok(())
}

fn helper_erase(helper: &str, key: &str) -> Result<bool, CredentialsError> {
    let (status, stdout, stderr) = run_helper(helper, "erase", key.as_bytes())?;
    if !status.success() {
        if is_not_found(&stdout) {
            return Ok(false);
        }
        return Err(helper_failure(helper, "erase", status, &stdout, &stderr));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(config: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("img-registry-creds-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn reads_auths_like_docker() {
        // "user:pa:ss" base64; Docker splits at the first ':'.
        let dir = dir_with(
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
                "http://legacy.lan:5000/v1/":{"username":"u2","password":"p2"},
                "tok.lan":{"identitytoken":"refresh"}}}"#,
        );
        let cfg = DockerConfig::load(&dir).unwrap();
        let hub = cfg.lookup("docker.io").unwrap().unwrap();
        assert_eq!((hub.username(), hub.password()), ("user", "pa:ss"));
        let legacy = cfg.lookup("legacy.lan:5000").unwrap().unwrap();
        assert_eq!((legacy.username(), legacy.password()), ("u2", "p2"));
        assert_eq!(
            cfg.lookup("tok.lan").unwrap().unwrap().identity_token(),
            Some("refresh")
        );
        assert!(cfg.lookup("other.lan").unwrap().is_none());
        assert!(!format!("{hub:?}").contains("pa:ss"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stores_and_erases_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = dir_with(r#"{"auths":{},"psFormat":"table"}"#);
        let mut cfg = DockerConfig::load(&dir).unwrap();
        cfg.store("reg.lan:5000", &Credentials::new("me", "secret"))
            .unwrap();
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        assert!(text.contains("\"auth\": \"bWU6c2VjcmV0\""), "{text}");
        assert!(text.contains("psFormat"), "other keys are kept: {text}");
        let mode = std::fs::metadata(dir.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut cfg = DockerConfig::load(&dir).unwrap();
        assert_eq!(
            cfg.lookup("reg.lan:5000").unwrap().unwrap().password(),
            "secret"
        );
        assert!(cfg.erase("reg.lan:5000").unwrap());
        assert!(!cfg.erase("reg.lan:5000").unwrap());
        cfg.store("docker.io", &Credentials::new("hub", "pw"))
            .unwrap();
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        assert!(
            text.contains("\"https://index.docker.io/v1/\""),
            "Docker Hub's key: {text}"
        );
        assert!(DockerConfig::load(&dir)
            .unwrap()
            .lookup("reg.lan:5000")
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let dir = dir_with(r#"{"credHelpers":{"reg.lan":"img-test-no-such-helper"}}"#);
        let err = DockerConfig::load(&dir)
            .unwrap()
            .lookup("reg.lan")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("docker-credential-img-test-no-such-helper"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
