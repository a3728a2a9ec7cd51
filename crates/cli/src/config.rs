//! The checked configuration derived from the global flags: every value validated once, so
//! commands never see a raw string where a choice was meant.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use img_registry::ClientConfig;
use img_snapshot::{BackendChoice, StateDir, Store};

use crate::config_file;
use crate::flags::{GlobalFlags, ProgressFlag};
use crate::progress::Mode;

/// What every command runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the state lives (resolved, not yet created).
    pub state: StateDir,
    /// The snapshot backend asked for.
    pub backend: BackendChoice,
    /// `-d`: more detail in errors and reports.
    pub debug: bool,
    /// How progress is displayed (`auto` already resolved).
    pub progress: Mode,
    /// Registry client settings: img's config file plus `--insecure-registry`.
    pub registry: ClientConfig,
}

impl Config {
    /// Checks the global flags. `stderr_is_terminal` decides `--progress=auto`.
    pub fn from_flags(flags: &GlobalFlags, stderr_is_terminal: bool) -> anyhow::Result<Config> {
        let state =
            StateDir::resolve(flags.state.clone()).context("cannot resolve the state directory")?;
        let backend: BackendChoice = flags
            .backend
            .parse()
            .map_err(|msg: String| anyhow::anyhow!("invalid --backend: {msg}"))?;
        let progress = if flags.quiet {
            Mode::Quiet
        } else {
            match flags.progress {
                ProgressFlag::Auto if stderr_is_terminal => Mode::Tty,
                ProgressFlag::Auto => Mode::Plain,
                ProgressFlag::Tty => Mode::Tty,
                ProgressFlag::Plain => Mode::Plain,
                ProgressFlag::Rawjson => Mode::RawJson,
                ProgressFlag::Quiet => Mode::Quiet,
            }
        };
        let mut registry = ClientConfig::default();
        if let Some(path) = config_file::default_path() {
            config_file::load_into(&mut registry, &path)?;
        }
        for host in &flags.insecure_registries {
            check_registry_host(host)?;
            registry.insecure_registries.push(host.clone());
        }
        Ok(Config {
            state,
            backend,
            debug: flags.debug,
            progress,
            registry,
        })
    }

    /// As [`Config::from_flags`], asking whether standard error is a terminal.
    pub fn from_flags_for_this_process(flags: &GlobalFlags) -> anyhow::Result<Config> {
        Config::from_flags(flags, std::io::stderr().is_terminal())
    }

    /// Opens (creating if needed) the state directory.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        Store::open(&self.state).with_context(|| {
            format!(
                "cannot open the state directory {}",
                self.state.root().display()
            )
        })
    }
}

/// `--insecure-registry` takes a host with an optional port, as Docker's daemon option does:
/// a scheme or a path is a mistake worth reporting rather than an entry that never matches.
fn check_registry_host(host: &str) -> anyhow::Result<()> {
    let bad = host.is_empty()
        || host.contains("://")
        || host.contains('/')
        || host.chars().any(char::is_whitespace);
    if bad {
        bail!(
            "invalid --insecure-registry {host:?}: give HOST or HOST:PORT, e.g. registry.lan:5000"
        );
    }
    if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']')) {
        if !host.starts_with('[') && port.parse::<u16>().is_err() {
            bail!("invalid --insecure-registry {host:?}: the port must be a number");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::Args;

    fn config(args: &[&str], terminal: bool) -> anyhow::Result<Config> {
        let mut argv = vec!["img"];
        argv.extend_from_slice(args);
        argv.push("version");
        let args = Args::try_parse_from(argv)?;
        Config::from_flags(&args.global, terminal)
    }

    #[test]
    fn backend_names() {
        for (flag, want) in [
            ("auto", BackendChoice::Auto),
            ("overlayfs", BackendChoice::Overlayfs),
            ("native", BackendChoice::Native),
        ] {
            assert_eq!(config(&["-b", flag], false).unwrap().backend, want);
        }
        let err = config(&["--backend", "fuse"], false).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown backend \"fuse\""),
            "{err:#}"
        );
    }

    #[test]
    fn progress_auto_follows_the_terminal_and_quiet_wins() {
        // flags | stderr is a terminal | mode
        let cases: &[(&[&str], bool, Mode)] = &[
            (&[], true, Mode::Tty),
            (&[], false, Mode::Plain),
            (&["--progress", "tty"], false, Mode::Tty),
            (&["--progress=plain"], true, Mode::Plain),
            (&["--progress=rawjson"], true, Mode::RawJson),
            (&["--progress=quiet"], true, Mode::Quiet),
            (&["-q", "--progress=plain"], true, Mode::Quiet),
        ];
        for (flags, terminal, want) in cases {
            assert_eq!(
                config(flags, *terminal).unwrap().progress,
                *want,
                "{flags:?}"
            );
        }
    }

    #[test]
    fn state_flag_is_made_absolute() {
        let c = config(&["-s", "rel/state"], false).unwrap();
        assert!(c.state.root().is_absolute());
        assert!(c.state.root().ends_with("rel/state"));
    }

    #[test]
    fn insecure_registry_hosts() {
        // value | accepted
        for (host, ok) in [
            ("reg.lan", true),
            ("reg.lan:5000", true),
            ("127.0.0.1:5000", true),
            ("[::1]:5000", true),
            ("http://reg.lan", false),
            ("reg.lan/path", false),
            ("reg.lan:http", false),
            ("", false),
        ] {
            assert_eq!(check_registry_host(host).is_ok(), ok, "{host}");
        }
        let c = config(
            &["--insecure-registry", "a:1", "--insecure-registry", "b"],
            false,
        )
        .unwrap();
        assert!(c
            .registry
            .insecure_registries
            .ends_with(&["a:1".into(), "b".into()]));
    }
}
