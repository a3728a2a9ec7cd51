//! The worker and exporter on real components: snapshots in a fresh state directory, RUN steps
//! in the sandbox (this binary is its own sandbox init, as the `img` binary is), images checked
//! with podman and skopeo. Runs as root.

mod backends;
mod build;
mod common;
mod consistency;
mod dockerfile;
mod hostile;
mod lazy;
mod output;
mod remote;
mod sources;

use libtest_mimic::{Arguments, Trial};

fn main() {
    // First thing: this binary is re-executed as the sandbox init of every RUN step.
    img_sandbox::maybe_run_init();
    // As `img build` does: an ordinary user's run continues as root of a user namespace
    // holding their subordinate ids (returns at once for root).
    if let Err(err) = img_sandbox::reexec_in_user_namespace(&img_sandbox::HostPaths::default()) {
        eprintln!("cannot enter a user namespace: {err}");
        std::process::exit(1);
    }
    let args = Arguments::from_args();
    let mut tests: Vec<Trial> = Vec::new();
    tests.extend(backends::tests());
    tests.extend(build::tests());
    tests.extend(output::tests());
    tests.extend(sources::tests());
    tests.extend(remote::tests());
    tests.extend(dockerfile::tests());
    tests.extend(hostile::tests());
    tests.extend(consistency::tests());
    tests.extend(lazy::tests());
    libtest_mimic::run(&args, tests).exit();
}
