//! One module per command; `run` dispatches the parsed command line to it.

mod debug_parse;

use crate::flags::{Args, Command, DebugCommand};

/// Runs the command the command line names.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Debug(DebugCommand::Parse { file }) => {
            debug_parse::run(&debug_parse::Config::from_flag(file))
        }
    }
}
