//! One module per command; `run` checks the global flags and dispatches to it.

mod debug_parse;
mod login;
mod pull;
mod push;
pub mod version;

use anyhow::Context;
use img_registry::Reference;
use img_snapshot::{ImageRecord, Store};

use crate::config::Config;
use crate::flags::{Args, Command, DebugCommand};

/// Runs the command the command line names.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.version {
        println!("{}", version::short());
        return Ok(());
    }
    let Some(command) = args.command else {
        // clap prints the help when asked for it; with no command at all, say what to do.
        anyhow::bail!("no command given; see `img --help`");
    };
    let config = Config::from_flags_for_this_process(&args.global)?;
    match command {
        Command::Version => version::run(),
        Command::Pull {
            reference,
            platform,
        } => pull::run(&config, &reference, platform.as_deref()),
        Command::Push { reference } => push::run(&config, &reference),
        Command::Login {
            server,
            username,
            password,
            password_stdin,
        } => login::login(
            &config,
            login::LoginFlags {
                server,
                username,
                password,
                password_stdin,
            },
        ),
        Command::Logout { server } => login::logout(&config, server.as_deref()),
        Command::Debug(DebugCommand::Parse { file }) => {
            debug_parse::run(&debug_parse::Config::from_flag(file))
        }
    }
}

/// The locally stored image a reference names (names are stored fully qualified).
pub fn local_image(store: &Store, reference: &Reference) -> anyhow::Result<ImageRecord> {
    let name = reference.to_string();
    store
        .images()
        .get(&name)
        .with_context(|| format!("cannot look up {name} in the image store"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no image named {name} in the local store; pull or build it first (`img ls` lists the stored images)"
            )
        })
}
