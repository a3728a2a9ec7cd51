//! `login` and `logout`: check credentials against a registry, then store or erase them where
//! Docker keeps them.

use crate::config::ClientConfig;
use crate::credentials::{Credentials, CredentialsError, DockerConfig};
use crate::error::{Error, Result};
use crate::reference::normalize_registry;
use crate::transport::Transport;

/// Checks `username`/`password` against `registry` (`GET /v2/` through its auth flow; for
/// token auth, a refused token request means a wrong password) and on success stores them
/// where Docker would: the configured credential helper, else `config.json` (mode 0600).
/// On failure nothing is stored. `registry` may be written as users type it
/// (`docker.io`, `https://index.docker.io/v1/`, `localhost:5000`).
pub fn login(registry: &str, username: &str, password: &str, config: &ClientConfig) -> Result<()> {
    let registry = normalize_registry(registry);
    let creds = Credentials::new(username, password);
    let transport = Transport::new(config.clone());
    transport.set_credentials(&registry, creds.clone());
    let ep = transport.endpoint(&registry)?;
    transport.check_login(&ep)?;
    let dir = docker_dir(config)?;
    DockerConfig::load(&dir)?.store(&registry, &creds)?;
    Ok(())
}

/// Erases stored credentials for `registry` (helper and `config.json`). Returns whether any
/// were stored.
pub fn logout(registry: &str, config: &ClientConfig) -> Result<bool> {
    let registry = normalize_registry(registry);
    let dir = docker_dir(config)?;
    Ok(DockerConfig::load(&dir)?.erase(&registry)?)
}

fn docker_dir(config: &ClientConfig) -> Result<std::path::PathBuf> {
    config
        .docker_config_dir()
        .ok_or(Error::Credentials(CredentialsError::NoConfigDir))
}
