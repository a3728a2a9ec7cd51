//! Secrets for `RUN --mount=type=secret`: given by the user at build time, never part of the
//! build graph, cache keys, logs or errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use img_sandbox::SecretBytes;

use super::WorkerError;

/// Where one secret's value comes from (`--secret id=…,src=…` or `,env=…`).
#[derive(Clone)]
#[non_exhaustive]
pub enum SecretSource {
    /// The value itself.
    Bytes(SecretBytes),
    /// A file read when a step mounts the secret.
    File(PathBuf),
    /// An environment variable of the img process, read when a step mounts the secret.
    Env(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Bytes(_) => f.write_str("Bytes(<redacted>)"),
            SecretSource::File(path) => f.debug_tuple("File").field(path).finish(),
            SecretSource::Env(name) => f.debug_tuple("Env").field(name).finish(),
        }
    }
}

/// Secrets by id.
#[derive(Debug, Clone, Default)]
pub struct SecretStore(BTreeMap<String, SecretSource>);

impl SecretStore {
    /// No secrets.
    pub fn new() -> Self {
        SecretStore::default()
    }

    /// Adds secret `id`.
    pub fn with(mut self, id: impl Into<String>, source: SecretSource) -> Self {
        self.0.insert(id.into(), source);
        self
    }

    /// The value of secret `id`: `Ok(None)` when it was not provided.
    pub(crate) fn value(&self, id: &str) -> Result<Option<SecretBytes>, WorkerError> {
        match self.0.get(id) {
            None => Ok(None),
            Some(SecretSource::Bytes(bytes)) => Ok(Some(bytes.clone())),
            Some(SecretSource::File(path)) => std::fs::read(path)
                .map(|b| Some(SecretBytes::new(b)))
                .map_err(|source| WorkerError::ReadSecret {
                    id: id.to_owned(),
                    path: path.clone(),
                    source,
                }),
            Some(SecretSource::Env(name)) => {
                Ok(std::env::var_os(name).map(|v| SecretBytes::new(v.into_encoded_bytes())))
            }
        }
    }
}
