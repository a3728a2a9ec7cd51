//! `img`: a daemonless, rootless container image builder.
//!
//! The binary is thin: `flags` turns the command line into a plain struct that mirrors it,
//! and each command lives in its own module under `commands`, taking a checked configuration
//! derived from those flags. Errors from the libraries bubble up as `anyhow` errors and are
//! printed here, with their chain of causes, before exiting non-zero.

mod commands;
mod flags;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = flags::Args::parse();
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error and its causes, one per line.
fn report(err: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
}
