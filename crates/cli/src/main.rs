//! `img`: a daemonless, rootless container image builder.
//!
//! The binary is thin: `flags` turns the command line into a plain struct that mirrors it,
//! `config` derives a checked configuration from the global flags and img's config file (read
//! by `config_file`), and each command lives in its own module under `commands`. Progress is
//! drawn on standard error by `progress`, on a thread of its own. Errors from the libraries
//! bubble up as `anyhow` errors and are printed here, with their chain of causes, before
//! exiting non-zero.

mod build_cache;
mod commands;
mod config;
mod config_file;
mod context;
mod graph;
mod host_check;
mod image;
mod interrupt;
mod named_context;
mod oci_layout_context;
mod progress;
mod remote_context;
mod ssh_agent;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
// The clap definition lives in the library, where `cargo xtask man` reads it too.
use img_cli::flags;

fn main() -> ExitCode {
    // First thing: `img` is also the init of every RUN step's sandbox.
    img_sandbox::maybe_run_init();
    let args = flags::Args::parse();
    // A check builds nothing, so it needs neither the host probes nor the user namespace.
    let build = matches!(&args.command, Some(flags::Command::Build(f)) if !f.checks_only());
    // `debug backend` answers for a build, so it runs where a build runs; `pull` unpacks
    // layers, which needs the ids of the user namespace.
    let in_user_namespace = build
        || matches!(
            args.command,
            Some(flags::Command::Debug(flags::DebugCommand::Backend))
                | Some(flags::Command::Pull { .. })
        );
    // The host as the user sees it, checked (or read from the cache) before entering the user
    // namespace, where every probe would answer as root; the build reads it back to name the
    // cause when RUN steps cannot work.
    let host = if build {
        config::Config::from_flags_for_this_process(&args.global)
            .ok()
            .map(|config| host_check::HostReport::cached_or_probe(&config))
    } else {
        None
    };
    // An ordinary user's build runs as root of a user namespace holding their subordinate ids
    // (returns at once for root); before any thread starts.
    if in_user_namespace {
        if let Err(err) = img_sandbox::reexec_in_user_namespace(&img_sandbox::HostPaths::default())
        {
            report(&anyhow::Error::new(err), args.global.debug);
            if let Some(host) = host {
                host.explain_step_failure();
            }
            return ExitCode::FAILURE;
        }
    }
    let debug = args.global.debug;
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is::<commands::Failed>() => ExitCode::FAILURE,
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
