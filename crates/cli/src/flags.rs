//! The command line, parsed into plain data that mirrors it (no checking beyond clap's).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// img: build container images without a daemon and without root.
#[derive(Debug, Parser)]
#[command(name = "img", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for looking inside img's pipeline.
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's raw syntax tree as JSON, as Docker's parser builds it before
    /// instructions are checked and before any substitution.
    Parse {
        /// The Dockerfile to read; `-` reads standard input.
        #[arg(value_name = "FILE|-", default_value = "Dockerfile")]
        file: PathBuf,
    },
}
