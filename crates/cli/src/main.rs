//! `img`: a daemonless, rootless container image builder.
//!
//! The binary is thin: `flags` turns the command line into a plain struct that mirrors it,
//! `config` derives a checked configuration from the global flags, and each command lives in
//! its own module under `commands`. Progress is drawn on standard error by `progress`, on a
//! thread of its own. Errors from the libraries bubble up as `anyhow` errors and are printed
//! here, with their chain of causes, before exiting non-zero.

mod build_cache;
mod commands;
mod config;
mod flags;
mod image;
mod local_blobs;
mod progress;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = flags::Args::parse();
    let debug = args.global.debug;
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err, debug);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error and its causes, one per line; with `-d`, also its debug form.
fn report(err: &anyhow::Error, debug: bool) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
    if debug {
        let _ = writeln!(stderr, "debug: {err:?}");
    }
}
