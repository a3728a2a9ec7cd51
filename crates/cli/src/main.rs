//! `img`: a daemonless, rootless container image builder.

fn main() {
    println!("img {}", env!("CARGO_PKG_VERSION"));
}
