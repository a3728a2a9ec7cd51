//! The command line of `img`, as a library.
//!
//! The binary parses with [`flags::Args`]; `cargo xtask man` renders the man pages from
//! [`command`], so the pages and `--help` come from one definition and cannot drift apart.
//! Everything else of the binary (configuration, commands, progress) stays in `main.rs`'s
//! private modules.

pub mod examples;
pub mod flags;

/// The whole command line as clap sees it: `img`, its global flags and every subcommand.
pub fn command() -> clap::Command {
    <flags::Args as clap::CommandFactory>::command()
}
