//! Prints what this host allows: `cargo run -p img-sandbox --example doctor [STATE_DIR]`.
//!
//! Shows the pattern every program using the default init must follow: `maybe_run_init()` is
//! the first call in `main`, because the doctor's namespace probes re-execute this program.

fn main() {
    img_sandbox::maybe_run_init();
    let state_dir = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    let report = img_sandbox::doctor(&img_sandbox::Sandbox::new(), state_dir.as_deref());
    for probe in &report.probes {
        println!("{:?}: {:?} - {}", probe.probe, probe.status, probe.detail);
        if let Some(fix) = &probe.fix {
            println!("    fix: {fix}");
        }
    }
    println!("RUN steps can work: {}", report.can_run_steps);
}
