//! The sandbox init as a program of its own, for this crate's tests and benchmarks and for
//! library users without a binary that calls `img_sandbox::maybe_run_init()`.

fn main() {
    img_sandbox::maybe_run_init();
    eprintln!("img-sandbox-init is started by img_sandbox::Sandbox, not by hand");
    std::process::exit(2);
}
