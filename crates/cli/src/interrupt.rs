//! Ctrl-C during a build: the first SIGINT or SIGTERM cancels the build (the solver stops
//! running steps and returns), a second one exits at once, as `docker build` does.

use anyhow::Context;
use img_solver::CancelToken;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The exit status of a process ended by SIGINT, as shells report it.
const INTERRUPTED_EXIT: i32 = 130;

/// Cancels `token` on the first SIGINT or SIGTERM; exits the process on the second.
pub fn cancel_on_signals(token: CancelToken) -> anyhow::Result<()> {
    // signal-hook's handler only writes to a pipe; the thread below does the rest, so nothing
    // unsafe runs in signal context.
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).context("cannot install the Ctrl-C handler")?;
    std::thread::Builder::new()
        .name("img-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if token.is_cancelled() {
                    eprintln!("\ninterrupted again: exiting");
                    std::process::exit(INTERRUPTED_EXIT);
                }
                eprintln!("\ncancelling the build (Ctrl-C again to exit at once)");
                token.cancel();
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
