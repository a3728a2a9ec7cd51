//! `img login [-u USER] [-p PASS | --password-stdin] [SERVER]` and `img logout [SERVER]`:
//! credentials checked against the registry, then stored where Docker keeps them.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{bail, Context};
use img_registry::{normalize_registry, DOCKER_HUB};

use crate::config::Config;

/// What `img login` was given.
pub struct LoginFlags {
    pub server: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_stdin: bool,
}

pub fn login(config: &Config, flags: LoginFlags) -> anyhow::Result<()> {
    let server = flags.server.as_deref().unwrap_or(DOCKER_HUB);
    let interactive = std::io::stdin().is_terminal();
    if flags.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if flags.password_stdin && flags.username.is_none() {
        bail!("--password-stdin needs the user name from --username");
    }
    let username = match flags.username {
        Some(u) => u,
        None if interactive => prompt_username()?,
        None => {
            bail!("cannot ask for a user name: standard input is not a terminal; pass --username")
        }
    };
    let password = match (flags.password, flags.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the password from standard input")?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) if interactive => {
            rpassword::prompt_password("Password: ").context("cannot read the password")?
        }
        (None, false) => bail!(
            "cannot ask for a password: standard input is not a terminal; use --password-stdin"
        ),
    };
    if username.is_empty() {
        bail!("the user name is empty");
    }
    if password.is_empty() {
        bail!("the password is empty");
    }
    img_registry::login(server, &username, &password, &config.registry)
        .with_context(|| format!("cannot log in to {}", normalize_registry(server)))?;
    writeln!(std::io::stdout().lock(), "Login Succeeded")?;
    Ok(())
}

fn prompt_username() -> anyhow::Result<String> {
    let mut err = std::io::stderr().lock();
    write!(err, "Username: ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the user name")?;
    Ok(line.trim().to_owned())
}

pub fn logout(config: &Config, server: Option<&str>) -> anyhow::Result<()> {
    let server = normalize_registry(server.unwrap_or(DOCKER_HUB));
    let removed = img_registry::logout(&server, &config.registry)
        .with_context(|| format!("cannot log out of {server}"))?;
    let mut out = std::io::stdout().lock();
    if removed {
        writeln!(out, "Removing login credentials for {server}")?;
    } else {
        writeln!(out, "Not logged in to {server}")?;
    }
    Ok(())
}
