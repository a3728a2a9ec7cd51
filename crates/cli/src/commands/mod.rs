//! One module per command; `run` checks the global flags and dispatches to it.

mod build;
mod completion;
mod debug_llb;
mod debug_parse;
mod doctor;
mod du;
mod inspect;
mod load;
mod login;
mod ls;
mod prune;
mod pull;
mod push;
mod rm;
mod save;
mod tag;
mod unpack;
pub mod version;

use crate::config::Config;
use crate::flags::{Args, Command, DebugCommand};

/// A command that has already said why it failed: `main` exits non-zero without printing more.
#[derive(Debug)]
pub struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the command failed")
    }
}

impl std::error::Error for Failed {}

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
            all_platforms: false,
        } => pull::run(&config, &reference, platform.as_deref()),
        Command::Pull {
            reference,
            all_platforms: true,
            ..
        } => pull::run_all_platforms(&config, &reference),
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
        Command::Ls { filters, format } => ls::run(&config, &filters, format.as_deref()),
        Command::Rm { images } => rm::run(&config, &images),
        Command::Tag { source, target } => tag::run(&config, &source, &target),
        Command::Inspect { image, platform } => inspect::run(&config, &image, platform.as_deref()),
        Command::Save {
            images,
            output,
            format,
            platform,
        } => save::run(
            &config,
            &images,
            output.as_deref(),
            format,
            platform.as_deref(),
        ),
        Command::Load { input } => load::run(&config, input.as_deref()),
        Command::Unpack {
            image,
            output,
            platform,
        } => unpack::run(&config, &image, &output, platform.as_deref()),
        Command::Du => du::run(&config),
        Command::Doctor { format, platform } => doctor::run(&config, format, platform.as_deref()),
        Command::Prune {
            all,
            keep_duration,
            keep_storage,
        } => {
            let options = prune::PruneOptions::from_flags(
                all,
                keep_duration.as_deref(),
                keep_storage.as_deref(),
            )?;
            prune::run(&config, &options)
        }
        Command::Build(flags) => build::run(&config, args.global.quiet, &flags),
        Command::Completion { shell } => completion::run(shell),
        Command::Debug(DebugCommand::Parse { file }) => {
            debug_parse::run(&debug_parse::Config::from_flag(file))
        }
        Command::Debug(DebugCommand::Backend) => {
            let pick = crate::host_check::backend_in_this_process(&config);
            println!("{}", serde_json::to_string_pretty(&pick)?);
            Ok(())
        }
        Command::Debug(DebugCommand::Llb { format, graph }) => {
            debug_llb::run(&config, format, &graph)
        }
    }
}
