fn main() {
    img_sandbox::maybe_run_init();
}
